//! Results you can trust under every mistake (issue 8): one test per row of the issue's table,
//! each driving the real binary at tiny scale.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use super::{bin, repo};

fn tiny() -> String {
    repo("tests/fixtures/tiny.toml").display().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Run directories (not dot-directories) under a results root.
fn run_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(root) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    // A run directory is assembled as a hidden `.<id>.partial` and renamed into place: only the
    // visible names are run directories (a waiter must not catch the one about to be renamed).
    dirs.retain(|p| {
        p.is_dir()
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });
    dirs.sort();
    dirs
}

fn only_run_dir(root: &Path) -> PathBuf {
    let dirs = run_dirs(root);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// Cell statuses as the library reads them (manifest + status log).
fn statuses(dir: &Path) -> Vec<(String, String)> {
    let rd = ferrum_bench::results::RunDir::open(dir).unwrap();
    let m = rd.read_manifest().unwrap();
    m.cells
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                serde_json::to_value(c.status)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "expected one error line, got: {err}"
    );
    lines[0].to_string()
}

/// A small sweep file: two threshold values at c=4.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn spawn(args: &[&str], root: &Path) -> Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("ferrum-bench"))
        .args(args)
        .arg("--out")
        .arg(root)
        .env_remove("FERRUM_PREFIX_CACHE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the single run directory under `root` has a manifest.
fn wait_for_manifest(root: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no manifest appeared");
        if let Some(dir) = run_dirs(root).into_iter().next() {
            if dir.join("manifest.json").is_file() {
                return dir;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = StdCommand::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

// Row 1: shards run with different knobs, environment or hardware are not one experiment.
#[test]
fn row01_merge_refuses_shards_that_ran_different_knobs() {
    let root = tempfile::tempdir().unwrap();
    let quick = ["--requests", "2", "--repeats", "1", "--quiet"];
    let a = root.path().join("a");
    let b = root.path().join("b");
    let c = root.path().join("c");
    let t = tiny();
    let run = |out: &Path, extra: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = bin();
        cmd.args(["sweep", &t, "--shard"])
            .args(extra)
            .args(quick)
            .arg("--out")
            .arg(out);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        only_run_dir(out)
    };
    let plain = run(&a, &["1/2"], None);
    let with_set = run(&b, &["2/2", "--set", "FERRUM_PREFIX_CACHE=1"], None);
    let with_env = run(&c, &["2/2"], Some(("FERRUM_PREFIX_CACHE", "1")));
    let manifest = json(&with_set.join("manifest.json"));
    assert_eq!(manifest["sweep"]["set"]["FERRUM_PREFIX_CACHE"], "1");
    assert_eq!(
        json(&with_env.join("manifest.json"))["identity"]["environment"]["FERRUM_PREFIX_CACHE"],
        "1"
    );
    let merged = root.path().join("merged");
    for (other, words) in [(&with_set, "--set"), (&with_env, "knob sources")] {
        let out = bin()
            .arg("merge")
            .arg(&plain)
            .arg(other)
            .arg("--out")
            .arg(&merged)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let line = one_line_error(&out);
        assert!(
            line.contains(words) && line.contains("FERRUM_PREFIX_CACHE"),
            "{line}"
        );
        assert!(!line.contains("RunSettings {"), "Debug output: {line}");
    }
    assert!(run_dirs(&merged).is_empty());
}

// Row 2: a flag that a sweep axis would override is an error naming the axis.
#[test]
fn row02_flags_overridden_by_a_sweep_axis_are_errors() {
    let root = tempfile::tempdir().unwrap();
    let sweep = write(
        root.path(),
        "s.toml",
        "concurrency = [2, 4]\n[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [2, 64]\n",
    );
    for flags in [
        vec!["--concurrency", "4"],
        vec!["--request-rate", "2"],
        vec!["--set", "FERRUM_MOE_BATCH_THRESHOLD=4"],
    ] {
        let out = bin()
            .args(["sweep", &tiny(), "--dry-run", "--sweep", &sweep])
            .args(&flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        let line = one_line_error(&out);
        assert!(line.contains(flags[0]) && line.contains("axis"), "{line}");
    }
}

// Row 3: values equal after canonicalisation give one cell, run once, and the run finishes.
#[test]
fn row03_duplicate_cells_are_reported_and_run_once() {
    let root = tempfile::tempdir().unwrap();
    let sweep = write(
        root.path(),
        "s.toml",
        // `"02"` would be a distinct cell: its bytes reach Ferrum's resolver as written (issue 7),
        // so its effective config and env_hash differ from `2`'s.
        "[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [2, 2]\n",
    );
    let out = bin()
        .args([
            "sweep",
            &tiny(),
            "--quiet",
            "--requests",
            "2",
            "--repeats",
            "1",
        ])
        .args(["--sweep", &sweep, "--out"])
        .arg(root.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("the same value `2`: it runs once"));
    let dir = only_run_dir(&root.path().join("r"));
    assert_eq!(
        statuses(&dir),
        [("c4__MOE_BATCH_THRESHOLD=2".into(), "completed".into())]
    );
}

// Row 4: a second writer on the same run directory is refused while the first runs.
#[test]
fn row04_a_locked_run_directory_refuses_a_second_writer() {
    let root = tempfile::tempdir().unwrap();
    let t = tiny();
    let mut first = spawn(
        &["sweep", &t, "--quiet", "--requests", "20000"],
        root.path(),
    );
    let dir = wait_for_manifest(root.path());
    let out = bin()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    signal(&first, "-KILL");
    let _ = first.wait();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(one_line_error(&out).contains("in use by another ferrum-bench process"));
    // Once the holder is gone (even by kill -9) the lock is free again: merge can take it.
    ferrum_bench::results::RunDir::open(&dir)
        .unwrap()
        .lock()
        .unwrap();
}

// Row 5: nothing measured, a budget that leaves cells pending, an empty shard: exit 5.
#[test]
fn row05_incomplete_runs_exit_5() {
    let root = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            &tiny(),
            "--quiet",
            "--set",
            "FERRUM_PAGED_MAX_SEQS=0",
            "--out",
        ])
        .arg(root.path().join("skipped"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing measured"));

    let out = bin()
        .args(["sweep", &tiny(), "--shard", "5/10", "--out"])
        .arg(root.path().join("shard"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("shard 5/10 holds none of the sweep's 4 cell(s)"));
    assert!(run_dirs(&root.path().join("shard")).is_empty());

    let budget = root.path().join("budget");
    let out = bin()
        .args([
            "sweep",
            &tiny(),
            "--quiet",
            "--requests",
            "300",
            "--repeats",
            "1",
        ])
        .args(["--time-budget", "1s", "--out"])
        .arg(&budget)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let dir = only_run_dir(&budget);
    assert!(statuses(&dir).iter().any(|(_, s)| s == "pending"));
    assert!(stderr(&out).contains(&format!("ferrum-bench sweep --resume {}", dir.display())));
}

// Rows 6 and 7: numbers beyond their bounds are one-line errors, never a panic or a hang.
#[test]
fn row06_07_out_of_bound_numbers_are_one_line_errors() {
    for args in [
        vec!["run", "--requests", "18446744073709551615"],
        vec!["run", "--requests", "4294967296"],
        vec!["run", "--warmup-requests", "4294967296"],
        vec!["run", "--repeats", "100000"],
        vec!["run", "--concurrency", "0"],
        vec!["run", "--concurrency", "1000000000"],
        vec!["run", "--request-rate", "1e-300"],
        vec!["sweep", "--request-rate", "1e-20", "--dry-run"],
        vec!["run", "--request-rate", "-1"],
        vec!["run", "--request-rate", "inf"],
    ] {
        let root = tempfile::tempdir().unwrap();
        let out = bin()
            .arg(args[0])
            .arg(tiny())
            .args(&args[1..])
            .arg("--out")
            .arg(root.path())
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let line = one_line_error(&out);
        assert!(line.contains("expected"), "{args:?}: {line}");
        assert!(run_dirs(root.path()).is_empty(), "{args:?} wrote a run");
    }
}

// Row 8: engine dimensions that cannot fit are refused with the estimate, before allocating.
#[test]
fn row08_oversized_engine_is_refused_with_its_memory_estimate() {
    let root = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(tiny())
        .unwrap()
        .replace("hidden_size = 64", "hidden_size = 10000000");
    let preset = write(root.path(), "big.toml", &text);
    let out = bin()
        .args(["run", &preset, "--out"])
        .arg(root.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = one_line_error(&out);
    assert!(
        line.contains("would need about") && line.contains("GiB"),
        "{line}"
    );
}

// Row 9: the manifest exists from the first moment; kill -9 in the first cell, then resume.
#[test]
fn row09_kill_9_in_the_first_cell_then_resume_finishes() {
    let root = tempfile::tempdir().unwrap();
    let t = tiny();
    let mut child = spawn(
        &["sweep", &t, "--quiet", "--requests", "40", "--repeats", "1"],
        root.path(),
    );
    let dir = wait_for_manifest(root.path());
    signal(&child, "-KILL");
    let _ = child.wait();
    assert!(statuses(&dir).len() == 4);
    let out = bin()
        .args(["sweep", "--quiet", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(statuses(&dir).iter().all(|(_, s)| s == "completed"));
}

/// Two shards of the tiny sweep, run for real, for the merge rows.
fn two_shards(root: &Path) -> (PathBuf, PathBuf) {
    let mut dirs = Vec::new();
    for shard in ["1/2", "2/2"] {
        let out_root = root.join(shard.replace('/', "of"));
        let out = bin()
            .args([
                "sweep",
                &tiny(),
                "--quiet",
                "--requests",
                "2",
                "--repeats",
                "1",
            ])
            .args(["--shard", shard, "--out"])
            .arg(&out_root)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        dirs.push(only_run_dir(&out_root));
    }
    (dirs[0].clone(), dirs[1].clone())
}

fn first_cell(dir: &Path) -> PathBuf {
    let mut cells: Vec<PathBuf> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cells.sort();
    cells[0].clone()
}

fn merge(a: &Path, b: &Path, out: &Path) -> Output {
    bin()
        .arg("merge")
        .arg(a)
        .arg(b)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

// Rows 10 and 11: every input file is validated before anything is written; errors name the
// source file; a failed merge leaves nothing behind.
#[test]
fn row10_11_merge_validates_inputs_and_names_the_source_file() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_shards(root.path());
    let merged = root.path().join("merged");
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 6] = [
        ("truncated stats.json", |cell| {
            let p = cell.join("stats.json");
            let text = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, &text[..text.len() / 2]).unwrap();
        }),
        ("garbage stats.json", |cell| {
            std::fs::write(cell.join("stats.json"), b"\xff\x00garbage").unwrap();
        }),
        ("schema 99", |cell| {
            let p = cell.join("stats.json");
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("\"schema_version\": 1", "\"schema_version\": 99");
            std::fs::write(&p, text).unwrap();
        }),
        ("missing cell dir", |cell| {
            std::fs::remove_dir_all(cell).unwrap();
        }),
        ("missing requests.jsonl", |cell| {
            std::fs::remove_file(cell.join("requests.jsonl")).unwrap();
        }),
        ("truncated requests.jsonl", |cell| {
            let p = cell.join("requests.jsonl");
            let text = std::fs::read_to_string(&p).unwrap();
            let first = text.lines().next().unwrap();
            std::fs::write(&p, format!("{first}\n")).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let copy = root.path().join(format!("copy-{}", what.replace(' ', "-")));
        copy_dir(&b, &copy);
        let cell = first_cell(&copy);
        damage(&cell);
        let out = merge(&a, &copy, &merged);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        let line = one_line_error(&out);
        assert!(
            line.contains(&copy.display().to_string()),
            "{what}: the error must name the source: {line}"
        );
        assert!(
            std::fs::read_dir(&merged).map_or(true, |mut d| d.next().is_none()),
            "{what}: a failed merge left files behind"
        );
    }
    // Row 11: a cell marked failed that holds stats.json.
    let copy = root.path().join("copy-failed-with-stats");
    copy_dir(&b, &copy);
    let manifest_path = copy.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        text.replacen("\"status\": \"completed\"", "\"status\": \"failed\"", 1),
    )
    .unwrap();
    let out = merge(&a, &copy, &merged);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(one_line_error(&out).contains("statuses and files disagree"));
    // The intact shards still merge.
    let out = merge(&a, &b, &merged);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(statuses(&only_run_dir(&merged)).len(), 4);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

// Row 12: a corrupt cell is "incomplete: rerun", with a message.
#[test]
fn row12_resume_reruns_a_cell_with_a_truncated_stats_json() {
    let root = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "sweep",
            &tiny(),
            "--quiet",
            "--requests",
            "2",
            "--repeats",
            "1",
            "--out",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = only_run_dir(root.path());
    let cell = first_cell(&dir);
    let p = cell.join("stats.json");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, &text[..text.len() / 3]).unwrap();
    let out = bin()
        .args(["sweep", "--quiet", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is incomplete") && err.contains("running it again"),
        "{err}"
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&p).unwrap()).is_ok()
    );
    assert!(statuses(&dir).iter().all(|(_, s)| s == "completed"));
}

// Row 13: the first Ctrl-C is acknowledged at once and stops the running cell at the next
// scheduler step; the cell is `interrupted`, the manifest whole.
#[test]
fn row13_first_ctrl_c_is_acknowledged_and_stops_the_cell_promptly() {
    let root = tempfile::tempdir().unwrap();
    let t = tiny();
    let mut child = spawn(
        &[
            "run",
            &t,
            "--quiet",
            "--requests",
            "200000",
            "--concurrency",
            "256",
            "--repeats",
            "1",
        ],
        root.path(),
    );
    let dir = wait_for_manifest(root.path());
    std::thread::sleep(Duration::from_millis(800));
    let sent = Instant::now();
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupt: stopping the running cell"),
        "{err}"
    );
    // 200,000 requests take minutes; stopping at the next step takes well under that.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(statuses(&dir), [("c256".into(), "interrupted".into())]);
    assert!(json(&dir.join("manifest.json"))["cells"][0]["status"] == "interrupted");
}

// Row 14 (3000 requests, so each cell outlasts the 1 s budget even on an idle machine): the resume hint is just `--resume DIR`; a comment added to the preset is no change.
#[test]
fn row14_resume_takes_settings_from_the_manifest_and_ignores_comments() {
    let root = tempfile::tempdir().unwrap();
    let preset = root.path().join("p.toml");
    std::fs::copy(tiny(), &preset).unwrap();
    let out = bin()
        .args(["sweep", "--quiet", "--quick", "--requests", "3000"])
        .arg(&preset)
        .args(["--time-budget", "1s", "--out"])
        .arg(root.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let hint = stderr(&out)
        .lines()
        .find_map(|l| l.split('`').nth(1).map(str::to_string))
        .unwrap();
    assert!(hint.starts_with("ferrum-bench sweep --resume "), "{hint}");
    let text = std::fs::read_to_string(&preset).unwrap();
    std::fs::write(&preset, format!("# tuned on a Tuesday\n{text}")).unwrap();
    let args: Vec<&str> = hint.split(' ').skip(1).collect();
    let out = bin().args(&args).arg("--quiet").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = only_run_dir(&root.path().join("r"));
    assert!(statuses(&dir).iter().all(|(_, s)| s == "completed"));
    assert_eq!(json(&dir.join("manifest.json"))["run"]["repeats"], 1);
    // A change of meaning still blocks it, saying what changed.
    std::fs::write(&preset, text.replace("seed = 7", "seed = 8")).unwrap();
    let out = bin().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = one_line_error(&out);
    assert!(
        line.contains("cannot resume") && line.contains("run.seed: 7 → 8"),
        "{line}"
    );
}

// Row 15: a sweep beyond the cell limit is refused at once (before expansion); the limit
// can be raised explicitly.
#[test]
fn row15_oversized_sweeps_are_refused_before_expansion() {
    let root = tempfile::tempdir().unwrap();
    let values: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    let sweep = write(
        root.path(),
        "big.toml",
        &format!(
            "[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [{0}]\nFERRUM_PAGED_MAX_SEQS = [{0}]\n",
            values.join(", ")
        ),
    );
    let out = bin()
        .args(["sweep", &tiny(), "--dry-run", "--sweep", &sweep])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = one_line_error(&out);
    assert!(
        line.contains("1000000 cells") && line.contains("--max-cells"),
        "{line}"
    );
    let small = write(
        root.path(),
        "small.toml",
        "[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [1, 2, 3]\n",
    );
    let out = bin()
        .args([
            "sweep",
            &tiny(),
            "--dry-run",
            "--max-cells",
            "2",
            "--sweep",
            &small,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args([
            "sweep",
            &tiny(),
            "--dry-run",
            "--max-cells",
            "3",
            "--sweep",
            &small,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// Smaller items of the issue.
#[test]
fn smaller_items_have_clear_one_line_messages() {
    let root = tempfile::tempdir().unwrap();
    let t = tiny();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sweep", &t, "--resume", "/nonexistent"],
            "not a ferrum-bench run directory",
        ),
        (
            vec![
                "run",
                &t,
                "--set",
                "FERRUM_PAGED_MAX_SEQS=2",
                "--set",
                "FERRUM_PAGED_MAX_SEQS=4",
            ],
            "given twice",
        ),
    ];
    for (args, words) in cases {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(one_line_error(&out).contains(words), "{}", stderr(&out));
    }
    // A bad sweep value names file:line once, without a repeated prefix.
    let sweep = write(
        root.path(),
        "s.toml",
        // Values reach Ferrum as written (issue 7); a knob name the registry does not know is
        // the sweep-value error the harness still raises at plan time.
        "[knobs]\nFERRUM_MOE_BATCH_THRESHOLDX = [2, 3]\n",
    );
    let out = bin()
        .args(["sweep", &t, "--dry-run", "--sweep", &sweep])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line = one_line_error(&out);
    assert!(line.contains(&format!("{sweep}:2:")), "{line}");
    assert_eq!(line.matches("invalid").count(), 1, "{line}");
    // --shard that disagrees with the run being resumed.
    let out = bin()
        .args([
            "sweep",
            &t,
            "--quiet",
            "--requests",
            "2",
            "--repeats",
            "1",
            "--shard",
            "1/2",
        ])
        .arg("--out")
        .arg(root.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = only_run_dir(&root.path().join("r"));
    let out = bin()
        .args(["sweep", "--shard", "2/2", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out).contains("--shard 2/2 differs"));
    // The failure reason counts repeats from 1, as progress does.
    let help = bin().args(["sweep", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(text.contains("130") && text.contains("  5 "), "{text}");
}

/// Smaller item: a preset (or sweep file) that is not UTF-8 gets a one-line error with the file,
/// line, column and byte offset of the first invalid byte, exit 2.
#[test]
fn a_non_utf8_preset_or_sweep_file_names_the_position_of_the_bad_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(tiny()).unwrap();
    let first_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut preset = bytes[..first_line].to_vec();
    preset.extend_from_slice(b"# caf\xE9\n");
    preset.extend_from_slice(&bytes[first_line..]);
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, &preset).unwrap();
    let out = bin().arg("resolve").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    let expect = format!(
        "{}:2:6: not valid UTF-8: byte offset {} holds 0xE9; save the file as UTF-8",
        path.display(),
        first_line + 5
    );
    assert!(err.contains(&expect), "{err}");

    bytes = b"[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [1, 2]\n\xFF\xFE\n".to_vec();
    let sweep = dir.path().join("sweep.toml");
    std::fs::write(&sweep, &bytes).unwrap();
    let out = bin()
        .args(["sweep", &tiny(), "--dry-run", "--sweep"])
        .arg(&sweep)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}:3:1: not valid UTF-8: byte offset 44 holds 0xFF",
            sweep.display()
        )),
        "{err}"
    );
}
