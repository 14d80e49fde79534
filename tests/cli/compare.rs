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

/// A preset of the tiny reference engine on the modelled clock (`[engine] clock = "modelled"`):
/// the scheduler, paged KV and forward really run, but time comes from the documented cost model
/// of the work each step did, with seeded noise of ±10 % per run (and ±2.5 % per step) from
/// `clock_seed`. So the statistics below meet a known noise distribution, not the shared
/// machine's load (wall-clock timings in tests are flaky here), while the A/B difference comes
/// from the engine's real per-item vs batched MoE work.
fn modelled_preset(dir: &Path, name: &str, clock_seed: u64, concurrency: usize) -> PathBuf {
    let path = dir.join(format!("{name}-{clock_seed}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"modelled_ab\"\n[model]\nprofile = \"qwen3_30b_a3b_gptq_int4\"\n[hardware]\nprofile = \"auto\"\n[workload]\nprofile = \"m3_qwen3_30b_a3b_int4\"\n[env]\nFERRUM_KV_CAPACITY = 64\n[engine]\nhidden_size = 64\nnum_layers = 2\nnum_heads = 8\nnum_kv_heads = 2\nhead_dim = 8\nnum_experts = 16\nexperts_per_token = 4\nmoe_intermediate_size = 32\nvocab_size = 512\nquant_group_size = 32\nthreads = 1\nclock = \"modelled\"\nclock_jitter = 0.1\nclock_seed = {clock_seed}\n[run]\nworkload = \"random-16/16\"\nrequests = {}\nwarmup_requests = 2\nrepeats = 4\nseed = 7\nconcurrency = {concurrency}\n",
            2 * concurrency
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_a_comparisons_never_regress() {
    // The same configuration twice, on 3 workload seeds; 4 repeats per side and each side with
    // its own clock seed (two runs on a real machine meet different noise): the same noise
    // distribution on both sides, so any regression is a false positive of the verdict rule
    // (p < α and the whole CI beyond the threshold).
    let presets = tempfile::tempdir().unwrap();
    for seed in [1u64, 2, 3] {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let run_a = measure(
            &a,
            &modelled_preset(presets.path(), "a", 2 * seed, 8),
            seed,
            &[],
        );
        let run_b = measure(
            &b,
            &modelled_preset(presets.path(), "b", 2 * seed + 1, 8),
            seed,
            &[],
        );
        let o = bin()
            .arg("compare")
            .arg(&run_a)
            .arg(&run_b)
            .args(["--format", "json"])
            .output()
            .unwrap();
        let (stdout, stderr) = out_text(&o);
        assert_eq!(o.status.code(), Some(0), "seed {seed}: {stdout}{stderr}");
        let v = json(&stdout);
        assert_eq!(v["baseline"]["engine"]["kind"], "reference");
        assert_eq!(
            v["baseline"]["engine"]["details"]["clock"]["mode"],
            "modelled"
        );
        assert_eq!(v["counts"]["regressed"], 0, "seed {seed}: {stdout}");
        assert_eq!(v["counts"]["drifted_pairs"], 0, "seed {seed}");
        let metrics = v["pairs"][0]["metrics"].as_array().unwrap();
        assert!(metrics.len() >= 8, "{stdout}");
        // The noise is real: the sides differ, so "no regression" is a verdict, not equality.
        let tok = metrics
            .iter()
            .find(|x| x["metric"] == "output_tok_s")
            .unwrap();
        assert_ne!(tok["baseline"]["mean"], tok["candidate"]["mean"], "{tok}");
    }
}

#[test]
fn a_b_comparison_finds_the_slower_candidate_and_its_drift() {
    // At c=32, FERRUM_MOE_BATCH_THRESHOLD=64 turns batched MoE decode (experts' weights read
    // once per step for all tokens) into per-item decode (re-read per sequence): the modelled
    // clock charges the work the engine really did; ±10 % noise per run on both sides.
    let presets = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let run_a = measure(&a, &modelled_preset(presets.path(), "a", 21, 32), 11, &[]);
    let run_b = measure(
        &b,
        &modelled_preset(presets.path(), "b", 22, 32),
        11,
        &["--set", "FERRUM_MOE_BATCH_THRESHOLD=64"],
    );
    let o = bin()
        .arg("compare")
        .arg(&run_a)
        .arg(&run_b)
        .output()
        .unwrap();
    let (stdout, stderr) = out_text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("config drift"), "{stdout}");
    assert!(
        stdout.contains("entry FERRUM_MOE_BATCH_THRESHOLD: ∅ → 64 (cli)"),
        "{stdout}"
    );
    // The engine's MoE decode decision beside it: batched on the baseline, per-item on the
    // candidate.
    assert!(
        stdout.contains("engine decisions at run time")
            && stdout.contains("MoE decode path: share of decode steps batched: ")
            && stdout.contains(" → 0 %"),
        "{stdout}"
    );
    let o = bin()
        .arg("compare")
        .arg(&run_a)
        .arg(&run_b)
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
        .arg(&run_a)
        .arg(&run_b)
        .args(["--threshold", "nope=5%"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn cells_of_one_interleaved_run_are_compared_paired_by_round() {
    // Two cells swept in interleaved rounds (the hidden fake engine, seeded jitter): `compare`
    // pairs their repeats by round and says so in every format; cells of two separate runs get
    // Welch's test.
    let dir = tempfile::tempdir().unwrap();
    let preset = dir.path().join("paired.toml");
    std::fs::write(
        &preset,
        "name = \"fake_paired\"\n[engine]\nkind = \"fake\"\ntick_ms = 1.0\njitter = 0.1\njitter_seed = 3\n[run]\nworkload = \"random-16/32\"\nrequests = 16\nwarmup_requests = 2\nrepeats = 4\nseed = 7\nconcurrency = 4\n[sweep.knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [2, 64]\n",
    )
    .unwrap();
    let sweep = |root: &Path| {
        let o = bin()
            .args(["sweep"])
            .arg(&preset)
            .args(["--order", "interleaved", "--quiet", "--no-report", "--out"])
            .arg(root)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", out_text(&o).1);
        let run = std::fs::read_dir(root)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        (
            run.join("cells/c4__MOE_BATCH_THRESHOLD=2"),
            run.join("cells/c4__MOE_BATCH_THRESHOLD=64"),
        )
    };
    let (a, b) = sweep(&dir.path().join("one"));
    let cmp = |x: &Path, y: &Path, format: &str| {
        let o = bin()
            .arg("compare")
            .arg(x)
            .arg(y)
            .args(["--format", format])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", out_text(&o).1);
        out_text(&o).0
    };
    let v = json(&cmp(&a, &b, "json"));
    let metrics = v["pairs"][0]["metrics"].as_array().unwrap();
    assert!(!metrics.is_empty());
    for m in metrics {
        assert_eq!(m["method"], "paired", "{m}");
        assert_eq!(m["paired"], true, "{m}");
    }
    assert!(cmp(&a, &b, "md").contains("Test: paired"));
    assert!(cmp(&a, &b, "table").contains("test: paired"));
    // The same cell from a second run: not one run, so Welch.
    let (a2, _) = sweep(&dir.path().join("two"));
    let v = json(&cmp(&a, &a2, "json"));
    for m in v["pairs"][0]["metrics"].as_array().unwrap() {
        assert_eq!(m["method"], "welch", "{m}");
    }
    assert!(cmp(&a, &a2, "table").contains("test: welch"));
}
