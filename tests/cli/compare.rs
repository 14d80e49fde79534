//! `compare`, `diff` and `export` on the real binary: the stored v1 results fixture, A/A and A/B
//! comparisons on the reference engine (tiny scale), corrupt inputs, and snapshots of every
//! output format.

use std::path::{Path, PathBuf};

use super::{bin, repo};

const FIXTURE: &str = "tests/fixtures/results-v1/tiny";
const CELL_A: &str =
    "tests/fixtures/results-v1/tiny/cells/c4__MOE_BATCH_THRESHOLD=2__PAGED_MAX_SEQS=4";
const CELL_B: &str =
    "tests/fixtures/results-v1/tiny/cells/c4__MOE_BATCH_THRESHOLD=64__PAGED_MAX_SEQS=4";

fn out_text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Run the binary in the repository root (relative paths keep snapshots machine-independent).
fn at_repo(args: &[&str]) -> std::process::Output {
    bin().current_dir(repo("")).args(args).output().unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// Compare with a golden file; `UPDATE_GOLDEN=1` rewrites it.
fn snapshot(name: &str, got: &str) {
    let path = repo(&format!("tests/golden/compare/{name}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        got, want,
        "snapshot {name} differs; rerun with UPDATE_GOLDEN=1 if intended"
    );
}

#[test]
fn stored_v1_results_stay_readable_by_compare_and_diff() {
    let o = at_repo(&["compare", FIXTURE, FIXTURE, "--format", "json"]);
    let (stdout, stderr) = out_text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["pairs"].as_array().unwrap().len(), 4);
    assert_eq!(r["counts"]["regressed"], 0);
    assert_eq!(r["counts"]["drifted_pairs"], 0);
    assert!(r["baseline"]["harness_commit"].as_str().unwrap().len() >= 40);
    assert_eq!(r["baseline"]["engine"]["kind"], "reference");
    let o = at_repo(&["diff", FIXTURE, FIXTURE]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o).1);
}

#[test]
fn formats_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (junit, bmf) = (dir.path().join("junit.xml"), dir.path().join("bmf.json"));
    let o = bin()
        .current_dir(repo(""))
        .args(["compare", CELL_A, CELL_B, "--format", "md", "--junit"])
        .arg(&junit)
        .arg("--bmf")
        .arg(&bmf)
        .output()
        .unwrap();
    let (md, stderr) = out_text(&o);
    // Threshold 2 vs 64 on the tiny engine at c=4: whatever the verdicts, the drift is shown.
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{stderr}");
    assert!(
        md.contains("FERRUM_MOE_BATCH_THRESHOLD: 2 (script_case) → 64 (script_case)"),
        "{md}"
    );
    snapshot("a_vs_b.md", &md);
    snapshot(
        "a_vs_b.junit.xml",
        &std::fs::read_to_string(&junit).unwrap(),
    );
    snapshot("a_vs_b.bmf.json", &std::fs::read_to_string(&bmf).unwrap());
    let o = at_repo(&["compare", CELL_A, CELL_B, "--format", "json"]);
    snapshot("a_vs_b.json", &out_text(&o).0);
    let o = at_repo(&["compare", CELL_A, CELL_B]);
    let table = out_text(&o).0;
    assert!(
        !table.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );
    snapshot("a_vs_b.txt", &table);
}

#[test]
fn diff_reports_changes_and_exits_one() {
    let a = format!("{CELL_A}/decision_trace.jsonl");
    let o = at_repo(&["diff", &a, &a]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(out_text(&o).0, "no differences\n");
    let other = "tests/fixtures/results-v1/tiny/cells/c4__MOE_BATCH_THRESHOLD=2__PAGED_MAX_SEQS=2";
    let o = at_repo(&["diff", CELL_A, other]);
    let (stdout, stderr) = out_text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("entry FERRUM_PAGED_MAX_SEQS: 4 (script_case) → 2 (script_case)"),
        "{stdout}"
    );
    assert!(stdout.contains("selected_max_sequences: 4 → 2"), "{stdout}");
    let o = at_repo(&["diff", CELL_A, other, "--format", "json"]);
    let v = json(&out_text(&o).0);
    assert_eq!(v["kind"], "config");
    assert!(!v["diff"]["admission"].as_array().unwrap().is_empty());
    // A run directory against a cell is a usage error.
    let o = at_repo(&["diff", FIXTURE, CELL_A]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn exported_bench_report_compares_unchanged_with_its_cell() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.json");
    let o = bin()
        .current_dir(repo(""))
        .args(["export", CELL_A, "--ferrum-bench-report", "--out"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o).1);
    let r = json(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(r["scenario"], "closed_loop");
    assert_eq!(r["concurrency"], 4);
    assert_eq!(r["n_repeats"], 3);
    for k in ["p50", "p75", "p95", "p99"] {
        assert!(r["ttft_ms"][k]["mean"].as_f64().unwrap() > 0.0, "{k}");
    }
    assert!(r["env_hash"].as_str().unwrap().starts_with("sha256:"));
    // BenchReport as baseline against the cell it came from: throughputs match exactly.
    let o = bin()
        .current_dir(repo(""))
        .arg("compare")
        .arg(&report)
        .args([CELL_A, "--format", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = out_text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["baseline"]["format"], "ferrum_bench_report");
    let m = &v["pairs"][0]["metrics"];
    let out_tok = m
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["metric"] == "output_tok_s")
        .unwrap();
    // Same repeats on both sides: no change, p = 1; the verdict is `unchanged` or, with the wide
    // CI of three noisy repeats, `inconclusive`, never a regression.
    assert!(
        out_tok["change"]["estimate"].as_f64().unwrap().abs() < 1e-12,
        "{out_tok}"
    );
    assert_eq!(out_tok["welch"]["p"], 1.0);
    assert_ne!(out_tok["verdict"], "regressed");
}

#[test]
fn vllm_results_compare_as_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vllm.jsonl");
    let run = |tps: f64| {
        format!("{{\"backend\":\"vllm\",\"model_id\":\"m\",\"max_concurrency\":4,\"request_throughput\":{},\"output_throughput\":{tps},\"total_token_throughput\":{},\"median_ttft_ms\":10.0,\"p99_ttft_ms\":12.0,\"median_tpot_ms\":1.0,\"p99_tpot_ms\":1.5,\"median_itl_ms\":1.0,\"p99_itl_ms\":2.0,\"median_e2el_ms\":20.0,\"p99_e2el_ms\":25.0}}\n", tps / 8.0, tps * 4.0)
    };
    std::fs::write(&path, [run(1e6), run(1.01e6), run(0.99e6)].concat()).unwrap();
    let o = bin()
        .current_dir(repo(""))
        .arg("compare")
        .arg(&path)
        .args([CELL_A, "--format", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = out_text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a million tok/s baseline: the tiny cell regressed. {stderr}"
    );
    let v = json(&stdout);
    assert_eq!(v["baseline"]["format"], "vllm_bench_serve");
    let m = &v["pairs"][0]["metrics"];
    let out_tok = m
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["metric"] == "output_tok_s")
        .unwrap();
    assert_eq!(out_tok["verdict"], "regressed");
    assert_eq!(out_tok["baseline"]["n"], 3);
    assert!(
        m.as_array()
            .unwrap()
            .iter()
            .all(|x| x["metric"] != "goodput_rps"),
        "no goodput field, no goodput metric"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn expect_one_line_error(args: &[&std::ffi::OsStr], needle: &str) {
    let o = bin().args(args).output().unwrap();
    let (_, stderr) = out_text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{stderr} lacks {needle}");
}

#[test]
fn corrupt_inputs_exit_two_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    copy_dir(&repo(FIXTURE), &run);
    let good = repo(FIXTURE);
    let cell = run.join("cells/c4__MOE_BATCH_THRESHOLD=2__PAGED_MAX_SEQS=4");
    let stats = cell.join("stats.json");
    let text = std::fs::read_to_string(&stats).unwrap();
    // Truncated JSON.
    std::fs::write(&stats, &text[..text.len() / 2]).unwrap();
    expect_one_line_error(
        &[
            std::ffi::OsStr::new("compare"),
            good.as_os_str(),
            run.as_os_str(),
        ],
        "stats.json",
    );
    expect_one_line_error(
        &[
            std::ffi::OsStr::new("compare"),
            stats.as_os_str(),
            good.as_os_str(),
        ],
        "invalid JSON",
    );
    // Wrong schema_version.
    std::fs::write(
        &stats,
        text.replacen("\"schema_version\": 1", "\"schema_version\": 7", 1),
    )
    .unwrap();
    expect_one_line_error(
        &[
            std::ffi::OsStr::new("compare"),
            good.as_os_str(),
            run.as_os_str(),
        ],
        "unsupported schema_version 7",
    );
    // A missing cell file: the manifest says completed, stats.json is gone.
    std::fs::remove_file(&stats).unwrap();
    expect_one_line_error(
        &[
            std::ffi::OsStr::new("compare"),
            good.as_os_str(),
            run.as_os_str(),
        ],
        "missing: manifest.json lists cell",
    );
    // A missing path, and a truncated decision trace for diff.
    let nowhere = dir.path().join("nowhere");
    expect_one_line_error(
        &[
            std::ffi::OsStr::new("compare"),
            nowhere.as_os_str(),
            good.as_os_str(),
        ],
        "nowhere",
    );
    let trace = cell.join("decision_trace.jsonl");
    let t = std::fs::read_to_string(&trace).unwrap();
    std::fs::write(&trace, &t[..t.len() - 20]).unwrap();
    expect_one_line_error(
        &[
            std::ffi::OsStr::new("diff"),
            trace.as_os_str(),
            trace.as_os_str(),
        ],
        "decision_trace.jsonl",
    );
}

/// Run `preset` once into `root` and return the run directory.
fn measure(root: &Path, preset: &Path, seed: u64, extra: &[&str]) -> PathBuf {
    let before: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    let o = bin()
        .args(["run"])
        .arg(preset)
        .args([
            "--quiet",
            "--no-report",
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o).1);
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !before.contains(p))
        .unwrap()
}

/// A preset of the hidden `fake` engine: virtual token times with seeded noise of ±10 % per run
/// (and ±2.5 % per token), so the statistics below meet a known noise distribution, not the
/// shared machine's load — timing of real runs in tests would make them flaky. `run` is one
/// measured repeat; each run draws its own noise seed, as two invocations on a real machine
/// meet different noise.
fn fake_preset(dir: &Path, name: &str, tick_ms: f64, jitter_seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}-{jitter_seed}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"fake_ab\"\n[engine]\nkind = \"fake\"\ntick_ms = {tick_ms}\njitter = 0.1\njitter_seed = {jitter_seed}\n[run]\nworkload = \"random-16/32\"\nrequests = 32\nwarmup_requests = 4\nrepeats = 1\nseed = 7\nconcurrency = 8\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_a_comparisons_never_regress() {
    // 3 workload seeds × 4 ABBA pairs of single-repeat runs per side, every run with its own
    // noise seed: the same distribution on both sides, so any regression is a false positive of
    // the verdict rule (p < α and the whole CI beyond the 3 % threshold).
    let presets = tempfile::tempdir().unwrap();
    let mut noise_seed = 0;
    for seed in [1, 2, 3] {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for pair in 0..4 {
            let sides = if pair % 2 == 0 { [&a, &b] } else { [&b, &a] };
            for side in sides {
                noise_seed += 1;
                let preset = fake_preset(presets.path(), "aa", 1.0, noise_seed);
                measure(side, &preset, seed, &[]);
            }
        }
        let o = bin()
            .arg("compare")
            .arg(&a)
            .arg(&b)
            .args(["--format", "json"])
            .output()
            .unwrap();
        let (stdout, stderr) = out_text(&o);
        assert_eq!(o.status.code(), Some(0), "seed {seed}: {stdout}{stderr}");
        let v = json(&stdout);
        assert_eq!(v["counts"]["regressed"], 0, "seed {seed}");
        assert_eq!(v["counts"]["improved"], 0, "seed {seed}");
        assert_eq!(v["counts"]["drifted_pairs"], 0, "seed {seed}");
    }
}

#[test]
fn a_b_comparison_finds_the_slower_candidate_and_its_drift() {
    // The candidate's tokens take 25 % longer (and it carries a knob change, the drift to
    // report); ±10 % noise per run on both sides, 5 ABBA pairs.
    let presets = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let slow = ["--set", "FERRUM_MOE_BATCH_THRESHOLD=64"];
    let mut noise_seed = 100;
    for pair in 0..5 {
        let order: [bool; 2] = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for candidate in order {
            noise_seed += 1;
            if candidate {
                measure(
                    &b,
                    &fake_preset(presets.path(), "b", 1.25, noise_seed),
                    11,
                    &slow,
                );
            } else {
                measure(
                    &a,
                    &fake_preset(presets.path(), "a", 1.0, noise_seed),
                    11,
                    &[],
                );
            }
        }
    }
    let o = bin().arg("compare").arg(&a).arg(&b).output().unwrap();
    let (stdout, stderr) = out_text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("config drift"), "{stdout}");
    assert!(
        stdout.contains("entry FERRUM_MOE_BATCH_THRESHOLD: ∅ → 64 (cli)"),
        "{stdout}"
    );
    let o = bin()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let v = json(&out_text(&o).0);
    let m = v["pairs"][0]["metrics"].as_array().unwrap();
    let out_tok = m.iter().find(|x| x["metric"] == "output_tok_s").unwrap();
    assert_eq!(out_tok["verdict"], "regressed", "{out_tok}");
    // Thresholds are validated: an unknown metric is a usage error.
    let o = bin()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--threshold", "nope=5%"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
