//! `run`/`sweep` refuse cells with values Ferrum's runtime would misread (issue 7), unless
//! `--allow-misread-values`.

use super::{bin, repo};

fn tiny() -> String {
    repo("tests/fixtures/tiny.toml").display().to_string()
}

fn report(out: &std::process::Output) -> serde_json::Value {
    report_with_code(out, 0)
}

/// The JSON report of a run that exited with `code`.
fn report_with_code(out: &std::process::Output, code: i32) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn run_skips_a_zero_batch_threshold_naming_the_value_used_and_the_flag_runs_it() {
    let root = tempfile::tempdir().unwrap();
    let args = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["run", &tiny(), "--set", "FERRUM_MOE_BATCH_THRESHOLD=0"])
            .args(["--quick", "--quiet", "--format", "json", "--out"])
            .arg(root.path())
            .args(extra);
        cmd.output().unwrap()
    };
    let refused = args(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        stderr.contains("warning: FERRUM_MOE_BATCH_THRESHOLD=\"0\" (from --set):"),
        "{stderr}"
    );
    // Every cell skipped: nothing measured is not success (exit 5, issue 8).
    let doc = report_with_code(&refused, 5);
    let cell = &doc["cells"][0];
    assert_eq!(cell["status"], "skipped", "{doc}");
    let reason = cell["reason"].as_str().unwrap();
    assert!(
        reason.contains("the engine will use 4 (its default)"),
        "{reason}"
    );
    assert!(reason.contains("--allow-misread-values"), "{reason}");

    let allowed = report(&args(&["--allow-misread-values"]));
    assert_eq!(allowed["cells"][0]["status"], "completed", "{allowed}");
}

#[test]
fn sweep_skips_only_the_misread_cell() {
    let root = tempfile::tempdir().unwrap();
    let sweep = root.path().join("sweep.toml");
    std::fs::write(
        &sweep,
        "[sweep.knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [0, 2]\n",
    )
    .unwrap();
    let out = bin()
        .args(["sweep", &tiny(), "--quick", "--quiet", "--format", "json"])
        .arg("--sweep")
        .arg(&sweep)
        .arg("--out")
        .arg(root.path().join("results"))
        .output()
        .unwrap();
    let doc = report(&out);
    let mut statuses: Vec<(&str, &str)> = doc["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("c4__MOE_BATCH_THRESHOLD=0", "skipped"),
            ("c4__MOE_BATCH_THRESHOLD=2", "completed")
        ],
        "{doc}"
    );
}
