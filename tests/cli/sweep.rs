//! `ferrum-bench sweep` and `run` on the real reference engine at tiny size.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{bin, repo, run_dir};

fn tiny() -> String {
    repo("tests/fixtures/tiny.toml").display().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn statuses(dir: &Path) -> Vec<(String, String)> {
    json(&dir.join("manifest.json"))["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn sweep_runs_every_cell_and_writes_every_file() {
    let root = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["sweep", &tiny(), "--quiet", "--steps", "--out"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = run_dir(root.path());
    let names: Vec<String> = statuses(&dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "c4__MOE_BATCH_THRESHOLD=2__PAGED_MAX_SEQS=2",
            "c4__MOE_BATCH_THRESHOLD=2__PAGED_MAX_SEQS=4",
            "c4__MOE_BATCH_THRESHOLD=64__PAGED_MAX_SEQS=2",
            "c4__MOE_BATCH_THRESHOLD=64__PAGED_MAX_SEQS=4",
        ]
    );
    assert!(statuses(&dir).iter().all(|(_, s)| s == "completed"));
    for name in &names {
        let cell = dir.join("cells").join(name);
        for file in [
            "effective_config.json",
            "decision_trace.jsonl",
            "requests.jsonl",
            "stats.json",
            "steps.jsonl",
        ] {
            assert!(cell.join(file).is_file(), "{name}/{file}");
        }
        let effective = json(&cell.join("effective_config.json"));
        let seqs = if name.ends_with("SEQS=2") { 2 } else { 4 };
        assert_eq!(effective["selected_max_sequences"], seqs);
        let entry = effective["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "FERRUM_PAGED_MAX_SEQS")
            .unwrap()
            .clone();
        assert_eq!(entry["source"], "script_case");
        let stats = json(&cell.join("stats.json"));
        assert_eq!(stats["repeats"].as_array().unwrap().len(), 2);
        let requests = std::fs::read_to_string(cell.join("requests.jsonl")).unwrap();
        assert_eq!(requests.lines().count(), 12, "6 requests × 2 repeats");
        // The knobs change real work: the sequence budget bounds the running sequences.
        for step in std::fs::read_to_string(cell.join("steps.jsonl"))
            .unwrap()
            .lines()
        {
            let step: serde_json::Value = serde_json::from_str(step).unwrap();
            assert!(step["sequences"].as_u64().unwrap() <= seqs);
        }
    }
    for file in ["manifest.json", "summary.csv", "summary.md"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    // Reference-engine numbers say whose they are, in the table and in summary.md.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("engine: reference: ferrum-bench's model of Ferrum"),
        "{table}"
    );
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        md.contains("- engine: reference ") && md.contains("> engine: reference: ferrum-bench's model of Ferrum's serving mechanics, not Ferrum."),
        "{md}"
    );
    let manifest = json(&dir.join("manifest.json"));
    assert_eq!(manifest["seeds"]["base_seed"], 7);
    assert_eq!(manifest["engine"]["kind"], "reference");
    assert!(manifest["finished_at"].is_string());
    // Nothing half-written is left behind.
    let leftovers: Vec<_> = walk(&dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            // `.lock` is the run directory's writer lock and stays (see README).
            (name.starts_with('.') && name != ".lock") || name.ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn rejected_cells_are_skipped_and_impossible_requests_fail_the_cell() {
    let root = tempfile::tempdir().unwrap();
    let sweep = repo("tests/fixtures/mixed_outcomes.toml");
    let out = bin()
        .args(["sweep", &tiny(), "--quiet", "--sweep"])
        .arg(&sweep)
        .arg("--out")
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let dir = run_dir(root.path());
    let manifest = json(&dir.join("manifest.json"));
    let cells = manifest["cells"].as_array().unwrap();
    let status: Vec<&str> = cells
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["completed", "skipped", "failed"]);
    assert_eq!(
        cells[1]["reason"],
        "FERRUM_MAX_BATCHED_TOKENS: invalid override: must be at least FERRUM_PAGED_MAX_SEQS (FERRUM_MAX_BATCHED_TOKENS=3 came from the sweep cell)"
    );
    let failed = cells[2]["reason"].as_str().unwrap();
    assert!(failed.contains("no request succeeded"), "{failed}");
    // Skipped cells are never run: no directory. Failed cells keep their configuration.
    let skipped_dir = dir.join("cells").join(cells[1]["name"].as_str().unwrap());
    assert!(!skipped_dir.exists());
    let failed_dir = dir.join("cells").join(cells[2]["name"].as_str().unwrap());
    assert!(failed_dir.join("effective_config.json").is_file());
    assert!(!failed_dir.join("stats.json").exists());
    // The final table lists skipped and failed cells with their reasons.
    let table = stdout(&out);
    assert!(table.contains("skipped"), "{table}");
    assert!(table.contains("failed"), "{table}");
}

#[test]
fn dry_run_lists_cells_and_skips_without_running() {
    let root = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["sweep", &tiny(), "--dry-run", "--sweep"])
        .arg(repo("tests/fixtures/mixed_outcomes.toml"))
        .arg("--out")
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.contains("2 cell(s) to run"), "{listing}");
    assert!(
        listing.contains("1 cell(s) skipped by the resolver"),
        "{listing}"
    );
    assert!(
        listing.contains("must be at least FERRUM_PAGED_MAX_SEQS"),
        "{listing}"
    );
    assert!(listing.contains("estimated"), "{listing}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

fn cell_keys(dir: &Path) -> BTreeSet<String> {
    json(&dir.join("manifest.json"))["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "completed")
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn shards_merge_into_the_unsharded_cell_set() {
    let whole = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["sweep", &tiny(), "--quiet", "--repeats", "1", "--out"])
        .arg(whole.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = cell_keys(&run_dir(whole.path()));
    assert_eq!(expected.len(), 4);

    let mut shard_dirs = Vec::new();
    for shard in ["1/2", "2/2"] {
        let root = tempfile::tempdir().unwrap();
        let out = bin()
            .args([
                "sweep",
                &tiny(),
                "--quiet",
                "--repeats",
                "1",
                "--shard",
                shard,
            ])
            .arg("--out")
            .arg(root.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let dir = run_dir(root.path());
        assert_eq!(cell_keys(&dir).len(), 2);
        shard_dirs.push((root, dir));
    }
    let merged_root = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("merge")
        .arg(&shard_dirs[0].1)
        .arg(&shard_dirs[1].1)
        .arg("--out")
        .arg(merged_root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cell_keys(&run_dir(merged_root.path())), expected);
}

#[test]
fn ctrl_c_stops_cleanly_and_resume_finishes_without_rerunning_cells() {
    // Interleaved rounds (the default): round 1 measures every cell once, so a cell is `partial`
    // (1 of 2 repeats) until round 2; the resume must run only the (cell, round)s not on disk.
    let root = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("ferrum-bench"));
    cmd.args([
        "sweep",
        &tiny(),
        "--quiet",
        "--requests",
        "200",
        "--order",
        "interleaved",
        "--out",
    ])
    .arg(root.path())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Wait until the first unit is measured, then interrupt while later units are running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let dir = loop {
        assert!(std::time::Instant::now() < deadline, "no unit measured");
        if let Ok(mut entries) = std::fs::read_dir(root.path()) {
            if let Some(Ok(entry)) = entries.next() {
                // Statuses are appended to status.jsonl during the run (the manifest is
                // rewritten at the start and the end).
                let log = entry.path().join("status.jsonl");
                if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"partial\"")) {
                    break entry.path();
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130));
    let before = statuses(&dir);
    let manifest = json(&dir.join("manifest.json"));
    // The manifest says what ran: a measured cell is `partial` with repeats_done/planned until it
    // holds every planned repeat; the cell running at the signal is interrupted (or partial when
    // it has an earlier round); the rest stay pending.
    assert!(
        before
            .iter()
            .all(|(_, s)| ["completed", "partial", "interrupted", "pending"].contains(&s.as_str())),
        "{before:?}"
    );
    assert!(
        before.iter().any(|(_, s)| s != "completed"),
        "the interrupt came too late to test anything: {before:?}"
    );
    let mut units_before = 0;
    let mut first_rounds = Vec::new();
    for c in manifest["cells"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let stats = dir.join("cells").join(name).join("stats.json");
        match c["status"].as_str().unwrap() {
            "partial" | "completed" => {
                let done = c["repeats_done"].as_u64().unwrap();
                assert_eq!(c["repeats_planned"], 2, "{c}");
                let held = json(&stats)["repeats"].as_array().unwrap().clone();
                assert_eq!(held.len() as u64, done, "{name}");
                assert_eq!(c["status"] == "completed", done == 2, "{c}");
                units_before += done;
                first_rounds.push((name.to_string(), held));
            }
            _ => assert!(
                !stats.exists(),
                "{name}: no stats.json without a measured repeat"
            ),
        }
    }
    assert!(units_before >= 1);

    let out = bin()
        .args(["sweep", &tiny(), "--quiet", "--requests", "200", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = statuses(&dir);
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|(_, s)| s == "completed"), "{after:?}");
    // Repeats measured before the interrupt were not measured again: they are byte-identical.
    for (name, held) in &first_rounds {
        let now = json(&dir.join("cells").join(name).join("stats.json"))["repeats"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(now.len(), 2, "{name}");
        for r in held {
            assert!(now.contains(r), "{name}: repeat {} was rerun", r["repeat"]);
        }
    }
    // Only the missing (cell, round)s ran: 4 cells × 2 rounds in all.
    let ran = stderr(&out)
        .lines()
        .filter(|l| l.contains("output tok/s") && !l.contains("already complete"))
        .count() as u64;
    assert_eq!(ran, 8 - units_before, "{}", stderr(&out));
}

#[test]
fn run_measures_one_cell_open_loop_with_json_output() {
    let root = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            &tiny(),
            "--request-rate",
            "40",
            "--repeats",
            "1",
            "--format",
            "json",
            "--out",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0]["status"], "completed");
    assert_eq!(cells[0]["name"], "r40");
    assert!(
        cells[0]["aggregate"]["output_tokens_per_s"]["mean"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let dir = PathBuf::from(report["run_dir"].as_str().unwrap());
    let records = std::fs::read_to_string(dir.join("cells/r40/requests.jsonl")).unwrap();
    // Open loop: arrivals are spread out by the seeded schedule, not all at zero.
    let arrivals: Vec<f64> = records
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["arrival_ms"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
    assert!(arrivals.last().unwrap() > &10.0, "{arrivals:?}");
}

#[test]
fn bad_sweep_inputs_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sweep.knobs]\nFERRUM_PAGED_MAX_SEQ = [8]\n").unwrap();
    let out = bin()
        .args(["sweep", &tiny(), "--dry-run", "--sweep"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("did you mean `FERRUM_PAGED_MAX_SEQS`"),
        "{err}"
    );

    std::fs::write(&bad, "[sweep.knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [0]\n").unwrap();
    let out = bin()
        .args(["sweep", &tiny(), "--dry-run", "--sweep"])
        .arg(&bad)
        .output()
        .unwrap();
    // Ferrum accepts a threshold of 0 but its runtime reads it as 4: the cell is skipped.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("the engine will use 4 (its default)"),
        "{}",
        stdout(&out)
    );

    let out = bin()
        .args(["sweep", &tiny(), "--dry-run", "--shard", "3/2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = bin()
        .args(["sweep", &tiny(), "--resume"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
