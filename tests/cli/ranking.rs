//! Interleaved rounds, P(best) and the noise monitor from the binary, on the hidden `fake` engine
//! (deterministic virtual times: nothing here depends on how fast the machine is).

use std::path::Path;

use super::{bin, run_dir};

const PRESET: &str = "name = \"rank\"\n[model]\nprofile = \"qwen3_30b_a3b_gptq_int4\"\n[hardware]\nprofile = \"auto\"\n[workload]\nprofile = \"m3_qwen3_30b_a3b_int4\"\n[engine]\nkind = \"fake\"\ntick_ms = 1\n[run]\nworkload = \"random-8/4\"\nrequests = 6\nwarmup_requests = 1\nrepeats = 3\nseed = 5\nconcurrency = 2\n[sweep]\n[sweep.knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [1, 2, 4]\n";

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sweep(dir: &Path, args: &[&str]) -> std::process::Output {
    let preset = dir.join("rank.toml");
    std::fs::write(&preset, PRESET).unwrap();
    bin()
        .arg("sweep")
        .arg(&preset)
        .args(["--quiet", "--no-report", "--out"])
        .arg(dir.join("r"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn interleaved_rounds_are_recorded_and_the_ranking_reports_p_best() {
    let dir = tempfile::tempdir().unwrap();
    let out = sweep(dir.path(), &["--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_dir(&dir.path().join("r"));
    let manifest = json(&run.join("manifest.json"));
    let schedule = &manifest["schedule"];
    assert_eq!(
        schedule["order"], "interleaved",
        "the default for this engine kind"
    );
    let rounds = schedule["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    for round in rounds {
        let mut names: Vec<&str> = round
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names.len(), 3);
        names.dedup();
        assert_eq!(names.len(), 3, "every cell once per round");
    }
    // Every repeat carries its round, its steady-state figure and noise readings.
    let cell = rounds[0][0].as_str().unwrap();
    let stats = json(&run.join("cells").join(cell).join("stats.json"));
    for (r, rep) in stats["repeats"].as_array().unwrap().iter().enumerate() {
        assert_eq!(rep["round"], r);
        assert!(rep["noise"]["flags"].is_array(), "{rep}");
        assert!(rep["steady_output_tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    // The JSON report: P(best) per cell summing to 1, the tie set and the method (paired).
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ranking = &report["ranking"];
    assert_eq!(ranking["method"]["paired"], true);
    assert!(!ranking["tie_set"].as_array().unwrap().is_empty());
    let total: f64 = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["p_best"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .contains(",p_best,tie_with_best,"));
    // The same seed gives the same round order.
    let again = tempfile::tempdir().unwrap();
    assert_eq!(sweep(again.path(), &[]).status.code(), Some(0));
    let m2 = json(&run_dir(&again.path().join("r")).join("manifest.json"));
    assert_eq!(m2["schedule"], manifest["schedule"]);
}

#[test]
fn sequential_order_dry_run_cost_and_resume_refuses_another_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = sweep(dir.path(), &["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("order: interleaved (3 round(s)") && text.contains("9 engine start(s)"),
        "{text}"
    );
    let out = sweep(dir.path(), &["--order", "sequential"]);
    assert_eq!(out.status.code(), Some(0));
    let run = run_dir(&dir.path().join("r"));
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(manifest["schedule"]["order"], "sequential");
    assert!(manifest["schedule"].get("rounds").is_none());
    let cell = manifest["cells"][0]["name"].as_str().unwrap();
    let stats = json(&run.join("cells").join(cell).join("stats.json"));
    assert!(stats["repeats"][0].get("round").is_none());
    let out = bin()
        .args(["sweep", "--resume"])
        .arg(&run)
        .args(["--order", "interleaved", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--order interleaved differs from the run's sequential"),
        "{err}"
    );
    let out = sweep(dir.path(), &["--order", "random"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected interleaved or sequential"));
}

/// Flags made deterministic: `calibration_ratio=0` flags every repeat (`slow_calibration`: the
/// calibration kernel always takes > 0 ms) and no other reading can flag.
const THRESHOLDS: &str = "calibration_ratio=0,steal_pct=100,iowait_pct=100,other_cpu_pct=100,load_per_core=100,frequency_ratio=0,gpu_clock_ratio=0";

/// `--rerun-noisy` on deterministic flags (see [`THRESHOLDS`]).
#[test]
fn rerun_noisy_remeasures_flagged_repeats_keeps_the_originals_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = sweep(
        dir.path(),
        &["--noise-thresholds", THRESHOLDS, "--rerun-noisy", "4"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("--rerun-noisy: 4 flagged repeat(s) re-measured"),
        "{err}"
    );
    let run = run_dir(&dir.path().join("r"));
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(manifest["noise_thresholds"]["calibration_ratio"], 0.0);
    assert_eq!(manifest["schedule"]["rerun_noisy"], 4);
    let first_round: Vec<String> = manifest["schedule"]["rounds"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let reruns = |m: &serde_json::Value| -> Vec<(String, u64)> {
        m["schedule"]["reruns"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        assert_eq!(r["outcome"], "remeasured", "{r}");
                        assert_eq!(r["flags_before"][0], "slow_calibration", "{r}");
                        assert!(r["output_tokens_per_s_after"].as_f64().unwrap() > 0.0);
                        (
                            r["cell"].as_str().unwrap().to_string(),
                            r["repeat"].as_u64().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // One flag each: the earliest repeats first, cells in the order the run met them.
    let expected: Vec<(String, u64)> = vec![
        (first_round[0].clone(), 0),
        (first_round[1].clone(), 0),
        (first_round[2].clone(), 0),
        (first_round[0].clone(), 1),
    ];
    assert_eq!(reruns(&manifest), expected);
    let stats = json(&run.join("cells").join(&first_round[0]).join("stats.json"));
    let repeats = stats["repeats"].as_array().unwrap();
    assert_eq!(repeats.len(), 3, "a re-measurement replaces, never adds");
    for (i, r) in repeats.iter().enumerate() {
        let original = &r["superseded"];
        assert_eq!(!original.is_null(), i < 2, "repeat {i}: {r}");
        if i < 2 {
            assert_eq!(original["repeat"], i);
            assert_eq!(original["seed"], r["seed"], "the same repeat: same prompts");
            assert_eq!(original["round"], r["round"]);
            assert_eq!(original["noise"]["flags"][0], "slow_calibration");
        }
    }
    assert_eq!(
        stats["aggregate"]["remeasured_repeats"],
        serde_json::json!([0, 1])
    );
    let summary = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert!(summary.contains("3/3 (slow_calibration) ↻2"), "{summary}");

    // A resume raising the limit re-measures the next ones on the same list, nothing twice; the
    // recorded thresholds are reused.
    let resume = |extra: &[&str]| {
        bin()
            .args(["sweep", "--resume"])
            .arg(&run)
            .args(["--quiet", "--no-report"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = resume(&["--rerun-noisy", "6"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = json(&run.join("manifest.json"));
    let mut expected6 = expected.clone();
    expected6.push((first_round[1].clone(), 1));
    expected6.push((first_round[2].clone(), 1));
    assert_eq!(reruns(&manifest), expected6);
    assert_eq!(manifest["schedule"]["rerun_noisy"], 6);
    let out = resume(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        reruns(&json(&run.join("manifest.json"))),
        expected6,
        "limit reached"
    );

    // Bounds and bad values: exit 2 with the key named.
    let out = sweep(dir.path(), &["--rerun-noisy", "10001"]);
    assert_eq!(out.status.code(), Some(2));
    let out = sweep(dir.path(), &["--noise-thresholds", "steal=3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown threshold `steal`"));
    let out = sweep(dir.path(), &["--noise-thresholds", "steal_pct=200"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a number from 0 to 100"));
}
