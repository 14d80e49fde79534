//! `tune`: a deterministic live tune on the hidden fake engine (a constraint that excludes the
//! fastest configuration, ties, outputs, `--overlay` with the searched load, `--resume` rerunning
//! no finished trial, `--reuse` of an earlier sweep, a duration `--budget`), a real Ctrl-C and
//! `--resume` on the tiny reference engine, a live tune on it (structure only), replay of the
//! recorded m3 grid and the strategy evaluation, and usage errors. Tests that depend on today's
//! trial sequence pin `--order sequential`; `--order interleaved` (the default here) is tested on
//! the fake engine: confirmation rounds in `tune.json` and the manifest, a paired tie set, and a
//! resume mid-confirmation that reruns no finished (finalist, round).

use std::path::{Path, PathBuf};

use super::{bin, repo, run_dir};

/// Fake engine (virtual time: request_rps and output tok/s scale exactly with concurrency) over
/// concurrency 1, 2, 4 × two knob values that do not change it.
const FAKE: &str = "name = \"faketune\"\n[model]\nprofile = \"qwen3_30b_a3b_gptq_int4\"\n[hardware]\nprofile = \"auto\"\n[workload]\nprofile = \"m3_qwen3_30b_a3b_int4\"\n[engine]\nkind = \"fake\"\ntick_ms = 1\n[run]\nworkload = \"random-8/5\"\nrequests = 8\nwarmup_requests = 1\nrepeats = 1\nseed = 3\nconcurrency = 1\n[sweep]\nconcurrency = [1, 2, 4]\n[sweep.knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [2, 64]\n";

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ok(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{err}");
    err
}

fn fake_tune(dir: &Path) -> (PathBuf, PathBuf) {
    let preset = dir.join("fake.toml");
    std::fs::write(&preset, FAKE).unwrap();
    let out = bin()
        .arg("tune")
        .arg(&preset)
        .args([
            "--strategy",
            "grid",
            "--budget",
            "18",
            "--constraint",
            "request_rps<=500",
            "--order",
            "sequential",
            "--quiet",
            "--out",
        ])
        .arg(dir.join("r"))
        .output()
        .unwrap();
    let err = ok(&out);
    assert!(
        err.contains("search space: 6 valid configuration(s)"),
        "{err}"
    );
    (preset, run_dir(&dir.join("r")))
}

#[test]
fn a_constraint_excludes_the_fastest_configuration_and_the_winner_comes_with_ties_and_an_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let (preset, run) = fake_tune(dir.path());
    let doc = json(&run.join("tune.json"));
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["runs_used"], 18);
    assert_eq!(doc["strategy"], "grid");
    // `--order sequential`: today's behaviour, ties by Welch, no confirmation rounds.
    assert_eq!(doc["settings"]["order"], "sequential");
    assert_eq!(doc["method"], "welch");
    assert!(doc.get("confirmation").is_none());
    let trials = doc["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    for t in trials {
        for key in ["cell", "knobs", "repeats", "values", "feasible", "reason"] {
            assert!(!t[key].is_null(), "trial lacks {key}: {t}");
        }
    }
    // c4 is the fastest but misses request_rps<=500; c2 is the best feasible load.
    let c4: Vec<&serde_json::Value> = trials.iter().filter(|t| t["load"] == "c4").collect();
    assert_eq!(c4.len(), 2);
    assert!(c4
        .iter()
        .all(|t| t["feasible"] == false && t["violation"].as_f64().unwrap() > 0.0));
    let best = &doc["best"];
    assert_eq!(best["load"], "c2", "{best}");
    assert_eq!(best["objective"]["repeats"], 3);
    assert!(best["objective"]["mean"].as_f64().unwrap() > 0.0);
    assert!(!best["objective"]["ci95"].is_null());
    // The other c2 configuration measures the same: the compare rule cannot separate it.
    let ties: Vec<&str> = doc["ties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["load"].as_str().unwrap())
        .collect();
    assert!(ties.contains(&"c2"), "{ties:?}");
    assert!(
        !ties.contains(&"c4"),
        "an infeasible configuration is never a tie"
    );
    assert_eq!(doc["pareto"][0]["metric"], "request_rps");
    // Per-cell results as a sweep writes them.
    assert!(run.join("manifest.json").is_file() && run.join("summary.csv").is_file());
    assert!(json(&run.join("manifest.json")).get("schedule").is_none());
    assert!(trials.iter().all(|t| t.get("round").is_none()));
    let cell = best["cell"].as_str().unwrap();
    assert!(run.join("cells").join(cell).join("stats.json").is_file());
    // best.toml is an [env] overlay that run accepts.
    let best_toml = std::fs::read_to_string(run.join("best.toml")).unwrap();
    assert!(
        best_toml.contains("[env]") && best_toml.contains("FERRUM_MOE_BATCH_THRESHOLD"),
        "{best_toml}"
    );
    let out = bin()
        .arg("run")
        .arg(&preset)
        .arg("--overlay")
        .arg(run.join("best.toml"))
        .args(["--quiet", "--out"])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    ok(&out);
    let m = json(&run_dir(&dir.path().join("o")).join("manifest.json"));
    assert_eq!(
        m["sweep"]["set"]["FERRUM_MOE_BATCH_THRESHOLD"],
        best["knobs"]["FERRUM_MOE_BATCH_THRESHOLD"]
    );
    // Concurrency was searched, so best.toml carries the winner's load (c2), and --overlay
    // applies it instead of the preset's concurrency = 1.
    assert!(
        best_toml.contains("[run]\nconcurrency = 2\n"),
        "{best_toml}"
    );
    let cells = m["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1);
    assert!(
        cells[0]["name"].as_str().unwrap().starts_with("c2"),
        "{cells:?}"
    );
    // An explicit --concurrency wins over the overlay's load.
    let out = bin()
        .arg("run")
        .arg(&preset)
        .arg("--overlay")
        .arg(run.join("best.toml"))
        .args(["--concurrency", "4", "--quiet", "--out"])
        .arg(dir.path().join("o4"))
        .output()
        .unwrap();
    ok(&out);
    let m = json(&run_dir(&dir.path().join("o4")).join("manifest.json"));
    assert!(
        m["cells"][0]["name"].as_str().unwrap().starts_with("c4"),
        "{m}"
    );
}

#[test]
fn resume_answers_finished_trials_from_disk_and_reruns_only_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = fake_tune(dir.path());
    let before = json(&run.join("tune.json"));
    // As if Ctrl-C had stopped the last trial before its cell was written.
    let last = before["trials"].as_array().unwrap().last().unwrap()["cell"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_dir_all(run.join("cells").join(&last)).unwrap();
    let out = bin()
        .arg("tune")
        .arg("--resume")
        .arg(&run)
        .arg("--quiet")
        .output()
        .unwrap();
    ok(&out);
    let after = json(&run.join("tune.json"));
    let sources: Vec<(String, String)> = after["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["cell"].as_str().unwrap().to_string(),
                t["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(sources.len(), 6);
    for (cell, source) in &sources {
        let want = if *cell == last { "run" } else { "resume" };
        assert_eq!(source, want, "{cell}: {sources:?}");
    }
    assert_eq!(after["best"]["cell"], before["best"]["cell"]);
    assert_eq!(after["runs_used"], 18);
}

#[test]
fn a_live_tune_on_the_reference_engine_writes_its_outputs_and_run_accepts_the_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("tune")
        .arg(repo("tests/fixtures/tiny.toml"))
        .args([
            "--budget",
            "3",
            "--strategy",
            "random",
            "--seed",
            "5",
            "--order",
            "sequential",
            "--quiet",
            "--out",
        ])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    ok(&out);
    let run = run_dir(&dir.path().join("r"));
    let doc = json(&run.join("tune.json"));
    assert_eq!(doc["runs_used"], 3);
    assert_eq!(
        doc["best"]["objective"]["repeats"], 3,
        "the winner is confirmed"
    );
    assert!(doc["trials"].as_array().unwrap().len() >= 2);
    let out = bin()
        .arg("run")
        .arg(repo("tests/fixtures/tiny.toml"))
        .arg("--overlay")
        .arg(run.join("best.toml"))
        .args([
            "--requests",
            "2",
            "--warmup-requests",
            "0",
            "--repeats",
            "1",
            "--quiet",
            "--out",
        ])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    ok(&out);
}

#[test]
fn replay_of_the_recorded_m3_grid_is_deterministic_and_evaluates_every_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let replay = |out: &str| {
        let o = bin()
            .current_dir(repo(""))
            .args([
                "tune",
                "presets/m3.toml",
                "--replay",
                "tests/fixtures/tune-grid",
                "--seed",
                "3",
                "--out",
            ])
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        ok(&o);
        json(&run_dir(&dir.path().join(out)).join("tune.json"))
    };
    let (a, b) = (replay("a"), replay("b"));
    assert_eq!(a["trials"], b["trials"], "same seed, same trials");
    assert!(a["trials"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["source"] == "replay"));
    assert!(
        a["runs_used"].as_u64().unwrap() <= 17,
        "default budget: 30 % of 54 runs"
    );
    let o = bin()
        .current_dir(repo(""))
        .args([
            "tune",
            "presets/m3.toml",
            "--replay",
            "tests/fixtures/tune-grid",
            "--evaluate-strategies",
            "--seeds",
            "5",
        ])
        .output()
        .unwrap();
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    for s in [
        "| grid |",
        "| random |",
        "| halving |",
        "| model |",
        "| auto |",
    ] {
        assert!(table.contains(s), "{table}");
    }
}

#[test]
fn bad_tune_arguments_are_one_line_errors_with_exit_two() {
    let o = bin()
        .current_dir(repo(""))
        .args([
            "tune",
            "presets/m3.toml",
            "--constraint",
            "tpot_p999<=50",
            "--replay",
            "tests/fixtures/tune-grid",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown metric `tpot_p999`") && err.contains("tpot_p99"),
        "{err}"
    );
    let o = bin()
        .current_dir(repo(""))
        .args(["tune", "presets/m3.toml", "--evaluate-strategies"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = bin()
        .current_dir(repo(""))
        .args(["tune", "presets/m3.toml", "--budget", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// (cell, source, first_repeat) of every trial of a `tune.json`.
fn trial_sources(doc: &serde_json::Value) -> Vec<(String, String, u64)> {
    doc["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["cell"].as_str().unwrap().to_string(),
                t["source"].as_str().unwrap().to_string(),
                t["first_repeat"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn reuse_answers_cells_an_earlier_sweep_measured_without_running_them() {
    let dir = tempfile::tempdir().unwrap();
    let preset = dir.path().join("fake.toml");
    std::fs::write(&preset, FAKE).unwrap();
    // An earlier sweep of the same preset and workload, 3 repeats per cell.
    let out = bin()
        .arg("sweep")
        .arg(&preset)
        .args(["--repeats", "3", "--quiet", "--no-report", "--out"])
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    ok(&out);
    let sweep = run_dir(&dir.path().join("s"));
    let out = bin()
        .arg("tune")
        .arg(&preset)
        .args([
            "--strategy",
            "grid",
            "--budget",
            "18",
            "--order",
            "sequential",
        ])
        .args(["--constraint", "request_rps<=500", "--reuse"])
        .arg(&sweep)
        .args(["--quiet", "--out"])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let err = ok(&out);
    assert!(
        err.contains("--reuse: 6 configuration(s) of the space already measured there"),
        "{err}"
    );
    let run = run_dir(&dir.path().join("r"));
    let doc = json(&run.join("tune.json"));
    let trials = trial_sources(&doc);
    assert_eq!(trials.len(), 6);
    assert!(
        trials.iter().all(|(_, source, _)| source == "reuse"),
        "{trials:?}"
    );
    assert_eq!(doc["runs_used"], 18);
    // The cells are the sweep's, copied byte for byte: no engine ran for them.
    for (cell, _, _) in &trials {
        let ours = std::fs::read(run.join("cells").join(cell).join("stats.json")).unwrap();
        let theirs = std::fs::read(sweep.join("cells").join(cell).join("stats.json")).unwrap();
        assert_eq!(ours, theirs, "{cell}");
    }
    // The same best as a tune that measures everything itself.
    std::fs::create_dir_all(dir.path().join("f")).unwrap();
    let (_, fresh) = fake_tune(&dir.path().join("f"));
    assert_eq!(
        doc["best"]["load"],
        json(&fresh.join("tune.json"))["best"]["load"]
    );
}

#[test]
fn a_duration_budget_parses_with_bounds_and_stops_the_tune() {
    let dir = tempfile::tempdir().unwrap();
    let preset = dir.path().join("fake.toml");
    std::fs::write(&preset, FAKE).unwrap();
    for bad in ["0s", "0", "1000001", "5x", "31d"] {
        let o = bin()
            .arg("tune")
            .arg(&preset)
            .args(["--budget", bad])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "--budget {bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("--budget"), "--budget {bad}: {err}");
    }
    // 30 s converts to runs with the planning estimate (the fake engine is instant, so the
    // conversion, not the clock, is what stops it: no assertion on real time).
    let o = bin()
        .arg("tune")
        .arg(&preset)
        .args([
            "--budget",
            "30s",
            "--strategy",
            "random",
            "--order",
            "sequential",
            "--quiet",
            "--out",
        ])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    ok(&o);
    let doc = json(&run_dir(&dir.path().join("r")).join("tune.json"));
    assert_eq!(
        doc["settings"]["budget"]["seconds"], 30,
        "{}",
        doc["settings"]
    );
    let budget = doc["budget"].as_u64().unwrap();
    let used = doc["runs_used"].as_u64().unwrap();
    assert!(budget >= 1 && used <= budget, "{used} of {budget}");
    assert!(
        budget < 18,
        "30 s is fewer runs than the 18-run grid: {budget}"
    );
    assert!(doc["best"]["objective"]["repeats"].as_u64().unwrap() >= 3);
}

#[test]
fn resume_after_a_real_ctrl_c_reruns_no_finished_trial() {
    // The tiny reference engine with enough requests per repeat that the interrupt lands while
    // later trials run (the fake engine is instant). Nothing here asserts on timings.
    let dir = tempfile::tempdir().unwrap();
    let preset = dir.path().join("tiny.toml");
    let text = std::fs::read_to_string(repo("tests/fixtures/tiny.toml"))
        .unwrap()
        .replace("\nrequests = 6\n", "\nrequests = 200\n");
    std::fs::write(&preset, text).unwrap();
    let root = dir.path().join("r");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ferrum-bench"))
        .arg("tune")
        .arg(&preset)
        .args([
            "--strategy",
            "grid",
            "--budget",
            "12",
            "--order",
            "sequential",
        ])
        .args(["--quiet", "--out"])
        .arg(&root)
        .env(
            "FERRUMBENCH_PROBE_FILE",
            repo("tests/fixtures/probe_cpu.json"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let run = loop {
        assert!(std::time::Instant::now() < deadline, "no trial finished");
        let found = std::fs::read_dir(&root)
            .ok()
            .and_then(|mut e| e.next())
            .and_then(Result::ok)
            .map(|e| e.path());
        if let Some(run) = found {
            let doc = std::fs::read_to_string(run.join("tune.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            if doc.is_some_and(|d| d["trials"].as_array().is_some_and(|t| !t.is_empty())) {
                break run;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let before = trial_sources(&json(&run.join("tune.json")));
    assert!(!before.is_empty());
    assert!(
        before.len() < 4,
        "the interrupt came too late to test anything: {before:?}"
    );
    let stamps: Vec<std::time::SystemTime> = before
        .iter()
        .map(|(cell, _, _)| {
            std::fs::metadata(run.join("cells").join(cell).join("stats.json"))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let out = bin()
        .arg("tune")
        .arg("--resume")
        .arg(&run)
        .arg("--quiet")
        .output()
        .unwrap();
    ok(&out);
    let after = trial_sources(&json(&run.join("tune.json")));
    assert_eq!(after.len(), 4, "{after:?}");
    // Every trial finished before the interrupt is answered from disk, in the same order.
    for (i, (cell, _, first)) in before.iter().enumerate() {
        assert_eq!(
            (&after[i].0, after[i].1.as_str(), after[i].2),
            (cell, "resume", *first),
            "{after:?}"
        );
        let stamp = std::fs::metadata(run.join("cells").join(cell).join("stats.json"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(stamp, stamps[i], "{cell} was measured again");
    }
    assert!(
        after[before.len()..].iter().all(|(_, s, _)| s == "run"),
        "{after:?}"
    );
}

/// An interleaved grid tune of the fake preset: 6 configurations × 3 repeats = 18 runs of search,
/// then the 6 runs the reserve keeps: the two identical c2 configurations in 3 rounds.
fn interleaved_tune(dir: &Path) -> PathBuf {
    let preset = dir.join("fake.toml");
    std::fs::write(&preset, FAKE).unwrap();
    let out = bin()
        .arg("tune")
        .arg(&preset)
        .args([
            "--strategy",
            "grid",
            "--budget",
            "24",
            "--order",
            "interleaved",
        ])
        .args(["--constraint", "request_rps<=500", "--seed", "7", "--out"])
        .arg(dir.join("r"))
        .output()
        .unwrap();
    let err = ok(&out);
    assert!(
        err.contains("order: interleaved: the search keeps 6 run(s)"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("winner and ties: paired over 3 interleaved confirmation round(s)")
            && stdout.contains("no single winner: a tie set of 2"),
        "{stdout}"
    );
    run_dir(&dir.join("r"))
}

#[test]
fn interleaved_tune_confirms_the_finalists_in_rounds_recorded_in_tune_json_and_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let run = interleaved_tune(dir.path());
    let doc = json(&run.join("tune.json"));
    assert_eq!(doc["settings"]["order"], "interleaved");
    assert_eq!(doc["runs_used"], 24);
    assert_eq!(
        doc["method"],
        "paired over 3 interleaved confirmation round(s)"
    );
    let c = &doc["confirmation"];
    let finalists: Vec<&str> = c["finalists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cell"].as_str().unwrap())
        .collect();
    assert_eq!(finalists.len(), 2, "{c}");
    assert!(finalists.iter().all(|f| f.starts_with("c2")), "{c}");
    assert_eq!(c["first_round"], 3, "after the grid's 3 repeats");
    assert_eq!(
        (c["rounds_planned"].as_u64(), c["rounds_complete"].as_u64()),
        (Some(3), Some(3))
    );
    // Every round runs every finalist once.
    let orders = c["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 3);
    for o in orders {
        let mut names: Vec<&str> = o
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        names.sort_unstable();
        let mut want = finalists.clone();
        want.sort_unstable();
        assert_eq!(names, want);
    }
    // The two c2 configurations measure the same: a tie set of both, no single winner.
    assert_eq!(c["tie_set"].as_array().unwrap().len(), 2);
    assert_eq!(c["single_winner"], false);
    assert_eq!(doc["ties"].as_array().unwrap().len(), 1);
    assert!(doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().starts_with("no single winner")));
    let best_toml = std::fs::read_to_string(run.join("best.toml")).unwrap();
    assert!(best_toml.contains("# No single winner"), "{best_toml}");
    // The confirmation trials: one repeat each, in the recorded round orders, at the round's
    // repeat index.
    let confirm: Vec<(String, u64, u64)> = doc["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["round"].is_null())
        .map(|t| {
            assert_eq!(t["repeats"], 1);
            (
                t["cell"].as_str().unwrap().to_string(),
                t["round"].as_u64().unwrap(),
                t["first_repeat"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = orders
        .iter()
        .enumerate()
        .flat_map(|(r, o)| {
            o.as_array()
                .unwrap()
                .iter()
                .map(move |n| (n.as_str().unwrap().to_string(), 3 + r as u64, 3 + r as u64))
        })
        .collect();
    assert_eq!(confirm, want);
    // The manifest's schedule holds the same rounds; the finalists' stats.json mark them.
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["schedule"]["order"], "interleaved");
    assert_eq!(m["schedule"]["first_round"], 3);
    assert_eq!(&m["schedule"]["rounds"], &c["orders"]);
    assert_eq!(m["schedule"]["seed"], c["seed"]);
    let stats = json(&run.join("cells").join(finalists[0]).join("stats.json"));
    let rounds: Vec<Option<u64>> = stats["repeats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["round"].as_u64())
        .collect();
    assert_eq!(rounds, vec![None, None, None, Some(3), Some(4), Some(5)]);
    // The same seed gives the same rounds.
    std::fs::create_dir_all(dir.path().join("again")).unwrap();
    let again = json(&interleaved_tune(&dir.path().join("again")).join("tune.json"));
    assert_eq!(again["confirmation"], doc["confirmation"]);
}

/// Drop repeat `repeat` from a cell's files, as if the run had stopped before it finished.
fn drop_repeat(cell: &Path, repeat: u64) {
    let path = cell.join("stats.json");
    let mut stats = json(&path);
    stats["repeats"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["repeat"] != repeat);
    std::fs::write(&path, serde_json::to_string_pretty(&stats).unwrap()).unwrap();
    let path = cell.join("requests.jsonl");
    let kept: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["repeat"] != repeat)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, kept).unwrap();
}

#[test]
fn resume_mid_confirmation_reruns_no_finished_finalist_round() {
    let dir = tempfile::tempdir().unwrap();
    let run = interleaved_tune(dir.path());
    let before = json(&run.join("tune.json"));
    // As if Ctrl-C had come during the last confirmation round: its repeats are not on disk.
    for t in before["trials"].as_array().unwrap() {
        if t["round"] == 5 {
            drop_repeat(&run.join("cells").join(t["cell"].as_str().unwrap()), 5);
        }
    }
    // Another order than the tune's is refused.
    let o = bin()
        .args(["tune", "--resume"])
        .arg(&run)
        .args(["--order", "sequential", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--order sequential differs from the tune's interleaved"),
        "{err}"
    );
    let out = bin()
        .args(["tune", "--resume"])
        .arg(&run)
        .arg("--quiet")
        .output()
        .unwrap();
    ok(&out);
    let after = json(&run.join("tune.json"));
    let trials = after["trials"].as_array().unwrap();
    assert_eq!(trials.len(), before["trials"].as_array().unwrap().len());
    for t in trials {
        let want = if t["round"] == 5 { "run" } else { "resume" };
        assert_eq!(t["source"], want, "{t}");
    }
    assert_eq!(after["confirmation"], before["confirmation"]);
    assert_eq!(after["runs_used"], 24);
}

#[test]
fn a_bad_order_is_a_one_line_error_with_exit_two() {
    let o = bin()
        .current_dir(repo(""))
        .args(["tune", "presets/m3.toml", "--order", "random"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains("--order") && first.contains("expected interleaved or sequential"),
        "{err}"
    );
}
