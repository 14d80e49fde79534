//! `scripts/`: nightly.sh end to end on the reference engine (baseline = candidate binary) and
//! the Slurm array script with the array variables set by hand. (shellcheck and the YAML parse
//! of the Kubernetes manifest and workflow examples run in `.ci/run`.)

use std::path::Path;
use std::process::Command;

use super::repo;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ferrum-bench")
}

fn clean_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("FERRUM_") || key.starts_with("SLURM_") || key == "GITHUB_STEP_SUMMARY" {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn nightly_runs_end_to_end_and_exits_zero_for_the_same_binary() {
    let out = tempfile::tempdir().unwrap();
    let summary = out.path().join("step_summary.md");
    let o = clean_env(&mut Command::new("bash"))
        .arg(repo("scripts/nightly.sh"))
        .args(["--baseline", binary(), "--candidate", binary(), "--preset"])
        .arg(repo("tests/fixtures/fake_nightly.toml"))
        .arg("--out")
        .arg(out.path().join("n"))
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    // ABBA order: pair 1 baseline first, pair 2 candidate first.
    let order: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pair ")).collect();
    assert_eq!(
        order[..4],
        [
            "pair 1/3: baseline",
            "pair 1/3: candidate",
            "pair 2/3: candidate",
            "pair 2/3: baseline"
        ]
    );
    let n = out.path().join("n");
    let md = std::fs::read_to_string(n.join("summary.md")).unwrap();
    assert!(md.starts_with("# ferrum-bench compare"), "{md}");
    assert!(md.contains("0 regressed"), "{md}");
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), md);
    assert!(std::fs::read_to_string(n.join("junit.xml"))
        .unwrap()
        .contains("<testsuites"));
    let bmf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(n.join("bmf.json")).unwrap()).unwrap();
    assert!(bmf["c32"]["output_tok_s"]["value"].as_f64().unwrap() > 0.0);
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(n.join("compare.json")).unwrap()).unwrap();
    assert_eq!(
        cmp["pairs"][0]["metrics"][0]["baseline"]["n"], 3,
        "three pooled runs per side"
    );
    // Bad arguments are exit 2.
    let o = Command::new("bash")
        .arg(repo("scripts/nightly.sh"))
        .args(["--baseline", binary()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

fn slurm_task(id: u32, out: &Path) {
    let o = clean_env(&mut Command::new("bash"))
        .arg(repo("scripts/slurm/sweep_array.sh"))
        .arg(repo("tests/fixtures/tiny.toml"))
        .env("SLURM_ARRAY_TASK_ID", id.to_string())
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .env("BENCH_BIN", binary())
        .env("OUT", out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn slurm_array_tasks_run_their_shards_and_merge() {
    let out = tempfile::tempdir().unwrap();
    slurm_task(0, out.path());
    slurm_task(1, out.path());
    let shards: Vec<_> = ["shard-1-of-2", "shard-2-of-2"]
        .iter()
        .map(|s| {
            let d = out.path().join("shards").join(s);
            std::fs::read_dir(&d)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
        })
        .collect();
    let o = Command::new(binary())
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(out.path().join("merged"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&dir).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let completed = m["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "completed")
        .count();
    assert_eq!(completed, 4);
    // Outside an array (variables unset) the script refuses.
    let o = clean_env(&mut Command::new("bash"))
        .arg(repo("scripts/slurm/sweep_array.sh"))
        .arg(repo("tests/fixtures/tiny.toml"))
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
}
