//! `ferrum-bench resolve`: golden artifacts, formats, sources and error reporting.

use super::{bin, repo};

fn resolve(args: &[&str]) -> std::process::Output {
    bin().arg("resolve").args(args).output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(repo(&format!("tests/golden/{name}"))).unwrap()
}

#[test]
fn m3_on_rtx4090_matches_the_golden_effective_config_and_trace() {
    let preset = repo("presets/m3.toml");
    let preset = preset.to_str().unwrap();
    let json = resolve(&[preset, "--hardware", "rtx4090", "--format", "json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    assert_eq!(stdout(&json), golden("m3_rtx4090.effective_config.json"));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let selected = |name: &str| {
        doc["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["selection"] == name)
            .unwrap()["selected"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        selected("attention_prefill_mixed_backend"),
        "vllm_paged_varlen"
    );
    assert_eq!(
        selected("attention_decode_backend"),
        "vllm_paged_attn_v1_short"
    );
    assert_eq!(
        selected("moe_implementation"),
        "vllm_marlin_moe_device_route_pair_ids"
    );
    assert_eq!(selected("moe_graph_policy"), "graph_disabled");
    assert_eq!(selected("prefix_cache_policy"), "prefix_cache_disabled");
    assert_eq!(selected("sampling_readback_path"), "gpu_greedy_argmax");
    assert_eq!(selected("kv_block_count"), "2048");
    assert_eq!(selected("max_sequences"), "32");
    assert_eq!(selected("max_batched_tokens"), "2048");

    let trace = resolve(&[preset, "--hardware", "rtx4090", "--format", "jsonl"]);
    assert!(trace.status.success());
    assert_eq!(stdout(&trace), golden("m3_rtx4090.decision_trace.jsonl"));
    // The trace parses back to exactly the document's decisions.
    let from_trace: Vec<serde_json::Value> = stdout(&trace)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(serde_json::Value::Array(from_trace), doc["decisions"]);
}

#[test]
fn m3_on_this_cpu_machine_selects_the_legacy_paths() {
    let out = resolve(&[
        repo("presets/m3.toml").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), golden("m3_auto.effective_config.json"));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["backend"], "cpu");
    assert_eq!(doc["selected_attention_impl"], "legacy_paged_decode");
    assert_eq!(doc["selected_kv_layout"], "contiguous");
}

#[test]
fn layer_split_preset_resolves_batch_pipeline() {
    let out = resolve(&[
        repo("presets/qwen25_72b_2x4090.toml").to_str().unwrap(),
        "--hardware",
        "rtx4090",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        golden("qwen25_72b_rtx4090.effective_config.json")
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["selected_pipeline_mode"], "batch");
    assert_eq!(doc["selected_microbatch_size"], 16);
    assert_eq!(doc["selected_distributed_strategy"], "layer_split");
}

#[test]
fn set_and_environment_layer_with_sources_and_env_hash_follows_entries() {
    let preset = repo("presets/m3.toml");
    let preset = preset.to_str().unwrap();
    let base = resolve(&[preset, "--no-inherit-env"]);
    let doc = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_str(&stdout(out)).unwrap()
    };
    let with_set = resolve(&[preset, "--set", "FERRUM_PAGED_MAX_SEQS=16"]);
    assert!(with_set.status.success());
    let d = doc(&with_set);
    assert_eq!(d["selected_max_sequences"], 16);
    let entry = d["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "FERRUM_PAGED_MAX_SEQS")
        .unwrap()
        .clone();
    assert_eq!(entry["source"], "cli");
    assert_ne!(d["env_hash"], doc(&base)["env_hash"]);

    let env = bin()
        .args(["resolve", preset])
        .env("FERRUM_PAGED_MAX_SEQS", "8")
        .output()
        .unwrap();
    assert!(env.status.success());
    assert_eq!(doc(&env)["selected_max_sequences"], 8);
    assert!(stderr(&env).contains("warning: using FERRUM_* variables from the environment"));
    let ignored = bin()
        .args(["resolve", preset, "--no-inherit-env"])
        .env("FERRUM_PAGED_MAX_SEQS", "8")
        .output()
        .unwrap();
    assert_eq!(doc(&ignored), doc(&base));
    // --set beats the environment.
    let both = bin()
        .args(["resolve", preset, "--set", "FERRUM_PAGED_MAX_SEQS=16"])
        .env("FERRUM_PAGED_MAX_SEQS", "8")
        .output()
        .unwrap();
    assert_eq!(doc(&both)["selected_max_sequences"], 16);
}

#[test]
fn resolver_errors_exit_2_with_ferrums_text_and_the_origin() {
    let preset = repo("presets/m3.toml");
    let out = resolve(&[
        preset.to_str().unwrap(),
        "--set",
        "FERRUM_MAX_BATCHED_TOKENS=8",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: FERRUM_MAX_BATCHED_TOKENS: invalid override: must be at least FERRUM_PAGED_MAX_SEQS\nnote: FERRUM_MAX_BATCHED_TOKENS=8 came from --set\n"
    );
    assert!(stdout(&out).is_empty());
    let gpu_only = resolve(&[preset.to_str().unwrap(), "--set", "FERRUM_VLLM_MOE=1"]);
    assert_eq!(gpu_only.status.code(), Some(2));
    assert!(stderr(&gpu_only).starts_with(
        "error: FERRUM_VLLM_MOE: invalid override: vLLM Marlin MoE requires CUDA backend\n"
    ));
}

#[test]
fn bad_presets_and_knobs_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"bad\"\n[env]\nFERRUM_PAGED_MAX_SEQ = 8\n").unwrap();
    let out = resolve(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.toml:3: unknown knob `FERRUM_PAGED_MAX_SEQ` (did you mean `FERRUM_PAGED_MAX_SEQS`?)"), "{err}");

    let ok = resolve(&[path.to_str().unwrap(), "--allow-unknown-knobs"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stderr(&ok).contains("warning:"));

    std::fs::write(&path, "name = \"bad\"\n[model]\nprofile = 3\n").unwrap();
    let out = resolve(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with(&format!("error: {}:3:", path.display())));

    let missing = resolve(&["does/not/exist.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).starts_with("error: cannot read preset `does/not/exist.toml`"));

    let usage = resolve(&[
        repo("presets/m3.toml").to_str().unwrap(),
        "--set",
        "NOEQUALS",
    ]);
    assert_eq!(usage.status.code(), Some(2));
}

/// The six cases of issue 7, through the real binary: Ferrum's documents and Ferrum's error first.
#[test]
fn odd_spellings_resolve_exactly_as_ferrum_resolves_them() {
    let m3 = repo("presets/m3.toml");
    let m3 = m3.to_str().unwrap();
    let doc = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_str(&stdout(out)).unwrap()
    };
    let first_line =
        |out: &std::process::Output| stderr(out).lines().next().unwrap_or("").to_string();

    // 1. Leading zeros: kept in the entry and the scheduler decision.
    let zeros = bin()
        .args(["resolve", m3, "--format", "jsonl"])
        .env("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE", "010")
        .output()
        .unwrap();
    assert!(stdout(&zeros).contains("\"selected\":\"prefill_first_until_active:010\""));

    // 2. Mixed-case pipeline mode on the 72B layer split at 64 sequences: Ferrum's raw
    //    comparison, and a warning saying what it means.
    let split = resolve(&[
        repo("presets/qwen25_72b_2x4090.toml").to_str().unwrap(),
        "--hardware",
        "rtx4090",
        "--set",
        "FERRUM_LAYER_SPLIT_PIPELINE_MODE=Overlapped",
        "--set",
        "FERRUM_PAGED_MAX_SEQS=64",
    ]);
    let d = doc(&split);
    assert_eq!(d["selected_pipeline_mode"], "Overlapped");
    assert_eq!(d["selected_microbatch_size"], 64);
    assert!(
        first_line(&split).starts_with("warning: FERRUM_LAYER_SPLIT_PIPELINE_MODE=\"Overlapped\"")
    );

    // 3. A zero chunk not written `0`: accepted.
    let chunk = resolve(&[
        m3,
        "--set",
        "FERRUM_ACTIVE_DECODE_PREFILL_CHUNK=00",
        "--format",
        "jsonl",
    ]);
    assert!(chunk.status.success(), "{}", stderr(&chunk));
    assert!(stdout(&chunk).contains("active_decode_prefill_chunk:00"));
    assert!(stderr(&chunk).contains("warning: FERRUM_ACTIVE_DECODE_PREFILL_CHUNK=\"00\""));

    // 4. A leading space in a dtype: refused with Ferrum's message, exit 2.
    let dtype = resolve(&[m3, "--hardware", "rtx4090", "--set", "FERRUM_DTYPE= fp16"]);
    assert_eq!(dtype.status.code(), Some(2));
    assert_eq!(
        first_line(&dtype),
        "error: FERRUM_DTYPE: invalid override: dtype is not supported by hardware profile"
    );
    assert!(stdout(&dtype).is_empty());

    // 5. A bad boolean: Ferrum's parser message.
    let boolean = bin()
        .args(["resolve", m3])
        .env("FERRUM_USE_VLLM_PAGED_ATTN", "2")
        .output()
        .unwrap();
    assert_eq!(boolean.status.code(), Some(2));
    assert_eq!(
        first_line(&boolean),
        "error: FERRUM_USE_VLLM_PAGED_ATTN: invalid override: invalid boolean env value: \"2\""
    );

    // 6. Boolean spellings kept as written; a zero threshold resolves (exit 0) with a warning.
    let spelled = resolve(&[
        m3,
        "--set",
        "FERRUM_PREFIX_CACHE=on",
        "--set",
        "FERRUM_MOE_BATCH_THRESHOLD=0",
    ]);
    let d = doc(&spelled);
    let value = |key: &str| {
        d["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .unwrap()["effective_value"]
            .clone()
    };
    assert_eq!(value("FERRUM_PREFIX_CACHE"), "on");
    assert_eq!(value("FERRUM_MOE_BATCH_THRESHOLD"), "0");
    let warnings = stderr(&spelled);
    assert!(warnings.contains("warning: FERRUM_MOE_BATCH_THRESHOLD=\"0\" (from --set): Ferrum's integer parser reads it as 0, but Ferrum's model code reads the batched-decode threshold only as a positive integer written without spaces, so the engine will use 4 (its default)"), "{warnings}");
    assert!(
        warnings.contains("warning: FERRUM_PREFIX_CACHE=\"on\""),
        "{warnings}"
    );
}
