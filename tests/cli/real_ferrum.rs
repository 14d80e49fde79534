//! Opt-in: real `ferrum serve` 0.7.7 on CPU with the tiny random-weight Qwen3-MoE of
//! `make_tiny_model.py`. Runs when `FERRUM_BIN` points at a `ferrum` binary and
//! `FERRUM_TINY_MODEL` at the model directory; otherwise it prints why it skipped and passes.
//!
//! ```bash
//! FERRUM_BIN=$HOME/.cache/ferrum-0.7.7/bin/ferrum FERRUM_TINY_MODEL=/path/tiny-qwen3-moe \
//!   cargo test --release --test cli real_ferrum -- --nocapture
//! ```

use std::path::{Path, PathBuf};

use super::bin;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn real_ferrum_two_cell_threshold_sweep_with_artifacts_and_no_drift() {
    let (Some(ferrum), Some(model)) = (
        std::env::var_os("FERRUM_BIN"),
        std::env::var_os("FERRUM_TINY_MODEL"),
    ) else {
        eprintln!("skipped: set FERRUM_BIN (a ferrum 0.7.7 binary) and FERRUM_TINY_MODEL (a directory made by make_tiny_model.py --arch qwen3_moe) to run this test");
        return;
    };
    let model = PathBuf::from(model);
    let dir = tempfile::tempdir().unwrap();
    let preset = dir.path().join("tiny-ferrum.toml");
    std::fs::write(
        &preset,
        PRESET
            .replace("@FERRUM@", &Path::new(&ferrum).display().to_string())
            .replace("@MODEL@", &model.display().to_string()),
    )
    .unwrap();
    // FERRUM_BIN itself must not reach the resolver as a knob.
    let out = bin()
        .env_remove("FERRUM_BIN")
        .env_remove("FERRUM_TINY_MODEL")
        .arg("sweep")
        .arg(&preset)
        .args(["--quiet", "--out"])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{err}");
    let root = dir.path().join("r");
    let run = std::fs::read_dir(&root)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let manifest = json(&run.join("manifest.json"));
    let cells = manifest["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        assert_eq!(c["status"], "completed", "{c}");
        let cell = run.join("cells").join(c["name"].as_str().unwrap());
        for f in [
            "server.log",
            "server_effective_config.json",
            "server_decision_trace.jsonl",
            "server_health.json",
        ] {
            assert!(cell.join(f).is_file(), "{f} missing in {}", cell.display());
        }
        let stats = json(&cell.join("stats.json"));
        let drift = &stats["engine"]["details"]["config_drift"];
        eprintln!(
            "{}: engine {} version {}, config_drift {drift}",
            c["name"], stats["engine"]["kind"], stats["engine"]["version"]
        );
        assert_eq!(drift["entries"].as_array().unwrap().len(), 0, "{drift}");
        assert_eq!(drift["decisions"].as_array().unwrap().len(), 0, "{drift}");
        let theirs = json(&cell.join("server_effective_config.json"));
        let knob = theirs["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "FERRUM_MOE_BATCH_THRESHOLD")
            .cloned();
        let want = if c["name"].as_str().unwrap().contains("THRESHOLD=2") {
            "2"
        } else {
            "4"
        };
        assert_eq!(knob.unwrap()["effective_value"], want);
    }
}

const PRESET: &str = r#"name = "tiny-ferrum"
description = "real ferrum serve 0.7.7 on CPU, tiny random-weight Qwen3-MoE"
# The tiny model as ferrum 0.7.7 sees it (its effective_config.json model_capabilities), so the
# harness resolves the same model the server does.
[model]
profile = "unknown"
architecture = "qwen3_moe"
quantization = "gptq_int4"
max_context_len = 4096
num_hidden_layers = 2
head_dim = 32
kv_heads = 2
estimated_weight_bytes = 223488
supported_dtypes = ["fp16", "fp32"]
graph_safe_moe = false
[model.moe]
num_experts = 4
experts_per_token = 2
moe_intermediate_size = 128
[hardware]
profile = "cpu"

[env]
FERRUM_PAGED_MAX_SEQS = 8
# ferrum serve 0.7.7 sets this itself on CPU (source `default`); stating it keeps both sides equal.
FERRUM_MOE_GRAPH = 0
# ferrum serve 0.7.7's CPU start-up path writes FERRUM_MAX_BATCHED_TOKENS = 2048
# (`memory_profile`) before its resolver runs; ferrum-bench models the resolver, which derives
# 512 here. Without this line config_drift reports exactly that entry and the
# max_batched_tokens decision (found by this test); pinning it checks everything else.
FERRUM_MAX_BATCHED_TOKENS = 2048

[engine]
kind = "server"
command = ["@FERRUM@", "serve", "--model", "{model}", "--backend", "cpu", "--host", "127.0.0.1",
           "--port", "{port}", "--effective-config-json", "{effective_config}",
           "--decision-trace-jsonl", "{decision_trace}"]
model = "@MODEL@"
api = "chat"
prompt = "text"
health = "ferrum"
ready_timeout = 120
request_timeout = 120
stop_grace = 10

[run]
workload = "random-32/8"
requests = 8
warmup_requests = 1
repeats = 1
seed = 9271
concurrency = 4

[sweep.knobs]
FERRUM_MOE_BATCH_THRESHOLD = [2, 4]
"#;
