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

#[test]
fn twin_check_skips_without_a_ferrum_binary_and_rejects_bad_arguments() {
    let o = clean_env(&mut Command::new("bash"))
        .arg(repo("scripts/twin-check.sh"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.starts_with("twin-check: skipped: no ferrum binary given"),
        "{stdout}"
    );
    let o = clean_env(&mut Command::new("bash"))
        .arg(repo("scripts/twin-check.sh"))
        .args(["--ferrum", "/bin/true", "--model", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json"));
}

/// A stand-in for `ferrum-bench sweep` that writes a run directory with known throughputs:
/// real = 100 + 10·i, reference = 5 × real, over the 8 cells in plan order.
const FAKE_SWEEP: &str = r#"#!/usr/bin/env bash
set -euo pipefail
preset=$2 out=$4
side=real; [[ $preset == */reference.toml ]] && side=reference
grep -q '^FERRUM_MOE_BATCH_THRESHOLD = \[1, 4, 16, 64\]' "$preset"
run=$out/r1; mkdir -p "$run/cells"
echo "cell,key,status,reason,FERRUM_MOE_BATCH_THRESHOLD,FERRUM_PAGED_MAX_SEQS,output_tok_s_mean,output_tok_s_ci95,repeats" > "$run/summary.csv"
i=0
for t in 1 4 16 64; do for s in 8 16; do
  i=$((i + 1)); v=$((100 + 10 * i)); [[ $side == reference ]] && v=$((5 * v))
  echo "c$i,k$i,completed,,$t,$s,$v,,2" >> "$run/summary.csv"
  mkdir -p "$run/cells/c$i"
  echo "{\"aggregate\": {\"output_tokens_per_s\": {\"min\": $((v - 1)), \"max\": $((v + 1))}}}" > "$run/cells/c$i/stats.json"
done; done
"#;

#[test]
fn twin_check_tables_rank_correlation_and_ratio_from_both_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("fake-bench");
    std::fs::write(&bench, FAKE_SWEEP).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bench, std::fs::Permissions::from_mode(0o755)).unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        r#"{"model_type": "qwen3_moe", "hidden_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
            "vocab_size": 848, "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 128, "max_position_embeddings": 4096}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = clean_env(&mut Command::new("bash"))
        .arg(repo("scripts/twin-check.sh"))
        .args(["--ferrum", "/bin/true", "--bench"])
        .arg(&bench)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("| 1 | 8 | 110.0 [109.0–111.0] | 8 | 550.0 [549.0–551.0] | 8 | 5.0× |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Spearman rho = +1.00, p = 0.00")
            && stdout.contains("Kendall tau-b = +1.00"),
        "{stdout}"
    );
    assert!(
        stdout.contains("geometric mean 5.0×, per cell 5.0–5.0×"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("twin.md")).unwrap(),
        stdout
    );
    let reference = std::fs::read_to_string(out.join("reference.toml")).unwrap();
    assert!(
        reference.contains(&format!("shape_from = \"{}\"", model.display())),
        "{reference}"
    );
    let real = std::fs::read_to_string(out.join("real.toml")).unwrap();
    assert!(real.contains("kind = \"server\"") && real.contains("\"/bin/true\", \"serve\""));
    assert!(real.contains("num_experts = 4") && real.contains("kv_heads = 2"));
}
