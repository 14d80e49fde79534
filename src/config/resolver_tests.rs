//! Resolver tests: one counterpart for every test of the spec's `auto_config.rs` test module,
//! plus round-trip and hash properties of the artifacts. Written independently; the expected
//! values are the spec's behaviour.

use std::collections::BTreeMap;

use super::capabilities::{
    CompiledKernelFeatures as Features, HardwareCapabilities as Hw, ModelCapabilities as Model,
    WorkloadProfile as Workload, GIB, M3_QWEN3_30B_A3B_INT4_PRESET,
    QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET,
};
use super::decision::{AutoConfigDecision, AutoConfigError, AutoConfigSource as Src};
use super::document::ResolvedFerrumConfig;
use super::resolver::{parse_compute_capability, FerrumConfigBuilder};
use super::runtime::{
    RuntimeConfigEffect, RuntimeConfigEntry, RuntimeConfigSnapshot, RuntimeConfigSource as Rs,
};

fn env(vars: &[(&str, &str)]) -> RuntimeConfigSnapshot {
    RuntimeConfigSnapshot::from_env_vars(vars.iter().copied())
}

fn sourced(vars: &[(&str, &str, Rs)]) -> RuntimeConfigSnapshot {
    RuntimeConfigSnapshot::from_entries(
        vars.iter()
            .map(|(key, value, source)| RuntimeConfigEntry::new(*key, *value, *source)),
    )
}

fn builder(runtime: RuntimeConfigSnapshot, hardware: Hw) -> FerrumConfigBuilder {
    FerrumConfigBuilder::new(runtime)
        .with_model_capabilities(Model::qwen3_30b_a3b_gptq_int4())
        .with_hardware_capabilities(hardware)
        .with_workload_profile(Workload::m3_qwen3_30b_a3b_int4())
}

fn rtx(features: Features) -> Hw {
    Hw::rtx4090_cuda(features)
}

fn fast() -> Features {
    Features::m3_fast_path_without_fa2()
}

fn m3(vars: &[(&str, &str)]) -> ResolvedFerrumConfig {
    builder(env(vars), rtx(fast())).resolve().unwrap()
}

fn cpu(features: Features) -> Hw {
    Hw::cpu(features)
}

fn selections(resolved: &ResolvedFerrumConfig) -> BTreeMap<&str, &str> {
    resolved
        .decisions
        .iter()
        .map(|d| (d.selection.as_str(), d.selected.as_str()))
        .collect()
}

fn decision<'a>(resolved: &'a ResolvedFerrumConfig, selection: &str) -> &'a AutoConfigDecision {
    resolved
        .decisions
        .iter()
        .find(|d| d.selection == selection)
        .unwrap_or_else(|| panic!("no decision {selection}"))
}

fn entry_value<'a>(resolved: &'a ResolvedFerrumConfig, key: &str) -> &'a str {
    &resolved.runtime_config.get(key).unwrap().effective_value
}

fn invalid_key(vars: &[(&str, &str)], hardware: Hw) -> String {
    match builder(env(vars), hardware).resolve() {
        Err(AutoConfigError::InvalidOverride { key, .. }) => key,
        other => panic!("expected invalid override for {vars:?}, got {other:?}"),
    }
}

fn serving_default_on_rtx(vars: &[(&str, &str)]) -> ResolvedFerrumConfig {
    let hardware = rtx(fast());
    let workload = Workload::serving_default_for_hardware(&hardware);
    FerrumConfigBuilder::new(env(vars))
        .with_model_capabilities(Model::qwen3_30b_a3b_gptq_int4())
        .with_hardware_capabilities(hardware)
        .with_workload_profile(workload)
        .resolve()
        .unwrap()
}

fn layer_split_entries(source: Rs) -> RuntimeConfigSnapshot {
    sourced(&[
        ("FERRUM_REQUESTED_GPU_DEVICES", "0,1", source),
        ("FERRUM_SELECTED_GPU_DEVICES", "0,1", source),
        ("FERRUM_CUDA_DEVICE_COUNT", "2", source),
        (
            "FERRUM_SELECTED_DISTRIBUTED_STRATEGY",
            "layer_split",
            source,
        ),
        (
            "FERRUM_SELECTED_LAYER_SPLIT_PLAN",
            "stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79",
            source,
        ),
        ("FERRUM_LAYER_SPLIT_PIPELINE_MODE", "batch", source),
        ("FERRUM_MAX_MODEL_LEN", "4096", source),
        ("FERRUM_KV_MAX_BLOCKS", "1024", source),
        ("FERRUM_KV_CAPACITY", "1024", source),
        ("FERRUM_PAGED_MAX_SEQS", "16", source),
        ("FERRUM_MAX_BATCHED_TOKENS", "1536", source),
        ("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE", "16", source),
    ])
}

#[test]
fn m3_on_rtx4090_selects_the_safe_fast_path_without_fa2() {
    let resolved = m3(&[]);
    let s = selections(&resolved);
    assert_eq!(s["attention_prefill_mixed_backend"], "vllm_paged_varlen");
    assert_eq!(s["attention_decode_backend"], "vllm_paged_attn_v1_short");
    assert_eq!(
        s["moe_implementation"],
        "vllm_marlin_moe_device_route_pair_ids"
    );
    assert_eq!(s["moe_graph_policy"], "graph_disabled");
    assert_eq!(s["prefix_cache_policy"], "prefix_cache_disabled");
    assert_eq!(s["sampling_readback_path"], "gpu_greedy_argmax");
    assert_eq!(s["kv_block_count"], "2048");
    assert_eq!(s["max_sequences"], "32");
    assert_eq!(s["max_batched_tokens"], "2048");
    assert_eq!(s["scheduler_admission_policy"], "continuous_default");
    assert_eq!(
        resolved.preset.as_deref(),
        Some(M3_QWEN3_30B_A3B_INT4_PRESET)
    );
    let order: Vec<&str> = resolved
        .decisions
        .iter()
        .map(|d| d.selection.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "attention_prefill_mixed_backend",
            "attention_decode_backend",
            "moe_implementation",
            "moe_graph_policy",
            "kv_block_count",
            "max_sequences",
            "max_batched_tokens",
            "prefix_cache_policy",
            "scheduler_admission_policy",
            "sampling_readback_path",
        ]
    );
}

#[test]
fn cuda_gptq_moe_gets_vllm_marlin_without_the_m3_preset() {
    let resolved = serving_default_on_rtx(&[]);
    assert_ne!(
        resolved.preset.as_deref(),
        Some(M3_QWEN3_30B_A3B_INT4_PRESET)
    );
    assert_eq!(
        selections(&resolved)["moe_implementation"],
        "vllm_marlin_moe_device_route_pair_ids"
    );
    assert_eq!(entry_value(&resolved, "FERRUM_VLLM_MOE"), "1");
}

#[test]
fn cuda_qwen3_moe_gets_vllm_paged_attention_without_the_m3_preset() {
    let resolved = serving_default_on_rtx(&[]);
    assert_eq!(
        selections(&resolved)["attention_decode_backend"],
        "vllm_paged_attn_v1_short"
    );
    assert_eq!(entry_value(&resolved, "FERRUM_USE_VLLM_PAGED_ATTN"), "1");
    assert_eq!(
        entry_value(&resolved, "FERRUM_VLLM_PAGED_ATTN_V1_SHORT"),
        "1"
    );
}

#[test]
fn env_opt_out_of_vllm_paged_attention_stays_as_env() {
    let resolved = serving_default_on_rtx(&[("FERRUM_USE_VLLM_PAGED_ATTN", "0")]);
    assert_eq!(
        selections(&resolved)["attention_decode_backend"],
        "legacy_paged_decode"
    );
    let entry = resolved
        .runtime_config
        .get("FERRUM_USE_VLLM_PAGED_ATTN")
        .unwrap();
    assert_eq!(entry.effective_value, "0");
    assert_eq!(entry.source, Rs::Env);
}

#[test]
fn qwen25_72b_layer_split_preset_selects_batch_tuned_defaults() {
    let resolved = FerrumConfigBuilder::new(layer_split_entries(Rs::Default))
        .with_model_capabilities(Model::qwen25_72b_gptq_int4())
        .with_hardware_capabilities(rtx(fast()))
        .with_workload_profile(Workload::qwen25_72b_gptq_int4_2x4090_layer_split())
        .resolve()
        .unwrap();
    assert_eq!(
        resolved.preset.as_deref(),
        Some(QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET)
    );
    let s = selections(&resolved);
    assert_eq!(s["kv_block_count"], "1024");
    assert_eq!(s["max_sequences"], "16");
    assert_eq!(s["max_batched_tokens"], "1536");
    assert_eq!(s["max_model_len"], "4096");
    assert_eq!(
        s["scheduler_admission_policy"],
        "prefill_first_until_active:16"
    );
    assert_eq!(
        decision(&resolved, "scheduler_admission_policy").source,
        Src::Default
    );
    let doc = resolved.effective_config_document();
    assert_eq!(doc["selected_pipeline_mode"], "batch");
    assert_eq!(doc["selected_microbatch_size"], 16);
    assert_eq!(doc["selected_kv_capacity"], 1024);
}

#[test]
fn source_fa2_owns_prefill_when_compiled_and_is_rejected_otherwise() {
    let resolved = builder(
        env(&[("FERRUM_FA2_SOURCE", "1")]),
        rtx(Features::m3_fast_path_with_source_fa2()),
    )
    .resolve()
    .unwrap();
    assert_eq!(
        selections(&resolved)["attention_prefill_mixed_backend"],
        "fa2_source"
    );
    assert_eq!(
        invalid_key(&[("FERRUM_FA2_SOURCE", "1")], rtx(fast())),
        "FERRUM_FA2_SOURCE"
    );
}

#[test]
fn m3_preset_on_cpu_falls_back_to_legacy_paths() {
    let resolved = builder(env(&[]), cpu(Features::m3_fast_path_with_source_fa2()))
        .resolve()
        .unwrap();
    let s = selections(&resolved);
    assert_eq!(s["attention_prefill_mixed_backend"], "legacy_paged_varlen");
    assert_eq!(s["attention_decode_backend"], "legacy_paged_decode");
    assert_eq!(s["moe_implementation"], "legacy_moe");
    assert_eq!(s["moe_graph_policy"], "graph_disabled");
    assert_eq!(s["sampling_readback_path"], "logits_readback");
}

#[test]
fn effective_config_records_cuda_device_selection_and_overlapped_default() {
    let stages = r#"[{"stage":0,"device":0,"layer_start":0,"layer_end":39},{"stage":1,"device":1,"layer_start":40,"layer_end":79}]"#;
    let resolved = FerrumConfigBuilder::new(sourced(&[
        ("FERRUM_REQUESTED_GPU_DEVICES", "0,1", Rs::Cli),
        ("FERRUM_SELECTED_GPU_DEVICES", "0,1", Rs::Cli),
        ("FERRUM_CUDA_DEVICE_COUNT", "2", Rs::Cli),
        (
            "FERRUM_SELECTED_DISTRIBUTED_STRATEGY",
            "layer_split",
            Rs::Cli,
        ),
        (
            "FERRUM_SELECTED_LAYER_SPLIT_PLAN",
            "stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79",
            Rs::Cli,
        ),
        ("FERRUM_SELECTED_LAYER_SPLIT_STAGES", stages, Rs::Cli),
        ("FERRUM_KV_CAPACITY", "512", Rs::Cli),
    ]))
    .with_hardware_capabilities(rtx(fast()))
    .resolve()
    .unwrap();
    let doc = resolved.effective_config_document();
    assert_eq!(doc["backend"], "cuda");
    assert_eq!(doc["requested_gpu_devices"], serde_json::json!([0, 1]));
    assert_eq!(doc["selected_gpu_devices"], serde_json::json!([0, 1]));
    assert_eq!(doc["cuda_device_count"], 2);
    assert_eq!(doc["selected_distributed_strategy"], "layer_split");
    assert_eq!(
        doc["selected_layer_split_plan"],
        "stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79"
    );
    assert_eq!(
        doc["selected_layer_split_stages"],
        serde_json::from_str::<serde_json::Value>(stages).unwrap()
    );
    assert_eq!(doc["selected_weight_placement"], "layer_split");
    assert_eq!(doc["selected_pipeline_mode"], "overlapped");
    assert_eq!(doc["selected_stage_bridge"], "host");
    let seqs = doc["selected_max_sequences"].as_u64().unwrap();
    assert_eq!(doc["selected_microbatch_size"], seqs.div_ceil(2));
    assert_eq!(
        doc["selected_admission_limit"],
        doc["selected_max_sequences"]
    );
    assert_eq!(doc["selected_kv_capacity"], 512);
}

#[test]
fn explicit_batch_pipeline_mode_keeps_whole_batch_microbatches() {
    let resolved = FerrumConfigBuilder::new(sourced(&[
        ("FERRUM_REQUESTED_GPU_DEVICES", "0,1", Rs::Cli),
        ("FERRUM_SELECTED_GPU_DEVICES", "0,1", Rs::Cli),
        (
            "FERRUM_SELECTED_DISTRIBUTED_STRATEGY",
            "layer_split",
            Rs::Cli,
        ),
        (
            "FERRUM_SELECTED_LAYER_SPLIT_PLAN",
            "stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79",
            Rs::Cli,
        ),
        ("FERRUM_LAYER_SPLIT_PIPELINE_MODE", "batch", Rs::Cli),
        ("FERRUM_PAGED_MAX_SEQS", "16", Rs::Cli),
    ]))
    .with_hardware_capabilities(rtx(fast()))
    .resolve()
    .unwrap();
    let doc = resolved.effective_config_document();
    assert_eq!(doc["selected_pipeline_mode"], "batch");
    assert_eq!(doc["selected_microbatch_size"], 16);
}

#[test]
fn unknown_pipeline_mode_is_rejected() {
    assert_eq!(
        invalid_key(
            &[("FERRUM_LAYER_SPLIT_PIPELINE_MODE", "serial")],
            rtx(fast())
        ),
        "FERRUM_LAYER_SPLIT_PIPELINE_MODE"
    );
}

#[test]
fn cuda_only_overrides_are_rejected_on_cpu_and_old_gpus() {
    let on_cpu = || cpu(Features::m3_fast_path_with_source_fa2());
    for key in [
        "FERRUM_USE_VLLM_PAGED_ATTN",
        "FERRUM_VLLM_MOE",
        "FERRUM_GREEDY_ARGMAX",
        "FERRUM_FA2_SOURCE",
    ] {
        assert_eq!(invalid_key(&[(key, "1")], on_cpu()), key);
    }
    let mut old = rtx(Features::m3_fast_path_with_source_fa2());
    old.compute_capability = Some("7.5".into());
    assert_eq!(
        invalid_key(&[("FERRUM_FA2_SOURCE", "1")], old),
        "FERRUM_FA2_SOURCE"
    );
}

#[test]
fn small_gpus_shrink_default_sequence_budget_but_not_user_values() {
    let mut small = rtx(fast());
    small.sm_count = Some(16);
    small.vram_bytes = Some(24 * GIB);
    let resolved = builder(env(&[]), small.clone()).resolve().unwrap();
    let seqs = decision(&resolved, "max_sequences");
    assert_eq!(seqs.selected, "4");
    assert_eq!(seqs.source, Src::HardwareCapability);
    let tokens = decision(&resolved, "max_batched_tokens");
    assert_eq!(tokens.selected, "256");
    assert_eq!(tokens.source, Src::HardwareCapability);

    let resolved = builder(env(&[("FERRUM_PAGED_MAX_SEQS", "16")]), small)
        .resolve()
        .unwrap();
    let seqs = decision(&resolved, "max_sequences");
    assert_eq!(seqs.selected, "16");
    assert_eq!(seqs.source, Src::Env);
    assert_eq!(seqs.source_key.as_deref(), Some("FERRUM_PAGED_MAX_SEQS"));
}

#[test]
fn low_vram_caps_m3_sequence_budget() {
    let mut low = rtx(fast());
    low.sm_count = Some(128);
    low.vram_bytes = Some(7 * GIB);
    let resolved = builder(env(&[]), low).resolve().unwrap();
    let seqs = decision(&resolved, "max_sequences");
    assert_eq!(seqs.selected, "4");
    assert_eq!(seqs.source, Src::HardwareCapability);
}

#[test]
fn kv_blocks_fit_rtx4090_and_shrink_on_constrained_vram() {
    let resolved = m3(&[]);
    assert_eq!(decision(&resolved, "kv_block_count").selected, "2048");
    assert_eq!(
        decision(&resolved, "kv_block_count").source,
        Src::WorkloadPreset
    );
    let mut constrained = rtx(fast());
    constrained.vram_bytes = Some(20 * GIB);
    let resolved = builder(env(&[]), constrained).resolve().unwrap();
    // 20 GiB − 18 GiB weights − 2 GiB headroom leaves nothing: the floor is ⌈32/16⌉ blocks.
    assert_eq!(decision(&resolved, "kv_block_count").selected, "2");
    assert_eq!(
        decision(&resolved, "kv_block_count").source,
        Src::HardwareCapability
    );
    assert_eq!(decision(&resolved, "max_batched_tokens").selected, "32");
    assert_eq!(
        decision(&resolved, "max_batched_tokens").source,
        Src::HardwareCapability
    );
}

#[test]
fn compute_capability_parsing() {
    assert_eq!(parse_compute_capability("8.9"), Some((8, 9)));
    assert_eq!(parse_compute_capability("9"), Some((9, 0)));
    assert_eq!(parse_compute_capability(" 12.0 "), Some((12, 0)));
    assert_eq!(parse_compute_capability("N/A"), None);
    assert_eq!(parse_compute_capability(""), None);
}

#[test]
fn serving_default_budgets_follow_hardware() {
    let hardware = rtx(fast());
    let workload = Workload::serving_default_for_hardware(&hardware);
    assert_eq!(workload.target_concurrency, 32);
    let resolved = FerrumConfigBuilder::new(env(&[]))
        .with_model_capabilities(Model::unknown())
        .with_hardware_capabilities(hardware)
        .with_workload_profile(workload)
        .resolve()
        .unwrap();
    assert_eq!(decision(&resolved, "max_sequences").selected, "32");
    let cpu_only = Hw {
        backend: "cpu".into(),
        supported_dtypes: vec!["fp32".into()],
        ..Hw::unknown()
    };
    assert_eq!(
        Workload::serving_default_for_hardware(&cpu_only).target_concurrency,
        1
    );
}

#[test]
fn invalid_override_matrix() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("FERRUM_USE_VLLM_PAGED_ATTN", "maybe")],
            "FERRUM_USE_VLLM_PAGED_ATTN",
        ),
        (&[("FERRUM_PREFIX_CACHE", "maybe")], "FERRUM_PREFIX_CACHE"),
        (
            &[
                ("FERRUM_FA_LAYOUT_VARLEN", "1"),
                ("FERRUM_USE_VLLM_PAGED_ATTN", "0"),
            ],
            "FERRUM_FA_LAYOUT_VARLEN",
        ),
        (&[("FERRUM_FA2_DIRECT_FFI", "1")], "FERRUM_FA2_DIRECT_FFI"),
        (
            &[("FERRUM_MOE_DEVICE_ROUTE", "1"), ("FERRUM_VLLM_MOE", "0")],
            "FERRUM_MOE_DEVICE_ROUTE",
        ),
        (
            &[("FERRUM_VLLM_MOE_PAIR_IDS", "1"), ("FERRUM_VLLM_MOE", "0")],
            "FERRUM_VLLM_MOE_PAIR_IDS",
        ),
        (
            &[("FERRUM_MOE_GRAPH", "1"), ("FERRUM_VLLM_MOE", "0")],
            "FERRUM_MOE_GRAPH",
        ),
        (&[("FERRUM_KV_MAX_BLOCKS", "0")], "FERRUM_KV_MAX_BLOCKS"),
        (&[("FERRUM_PAGED_MAX_SEQS", "0")], "FERRUM_PAGED_MAX_SEQS"),
        (
            &[
                ("FERRUM_PAGED_MAX_SEQS", "32"),
                ("FERRUM_MAX_BATCHED_TOKENS", "16"),
            ],
            "FERRUM_MAX_BATCHED_TOKENS",
        ),
        (
            &[
                ("FERRUM_KV_MAX_BLOCKS", "16"),
                ("FERRUM_MAX_BATCHED_TOKENS", "512"),
            ],
            "FERRUM_MAX_BATCHED_TOKENS",
        ),
        (&[("FERRUM_MAX_MODEL_LEN", "0")], "FERRUM_MAX_MODEL_LEN"),
        (&[("FERRUM_MAX_MODEL_LEN", "50000")], "FERRUM_MAX_MODEL_LEN"),
        (
            &[
                ("FERRUM_KV_MAX_BLOCKS", "16"),
                ("FERRUM_MAX_MODEL_LEN", "1024"),
            ],
            "FERRUM_KV_MAX_BLOCKS",
        ),
        (&[("FERRUM_DTYPE", "bf16")], "FERRUM_DTYPE"),
        (&[("FERRUM_KV_DTYPE", "fp8")], "FERRUM_KV_DTYPE"),
        (
            &[
                ("FERRUM_VLLM_PAGED_ATTN_V1_SHORT", "1"),
                ("FERRUM_USE_VLLM_PAGED_ATTN", "0"),
            ],
            "FERRUM_VLLM_PAGED_ATTN_V1_SHORT",
        ),
    ];
    for (vars, key) in cases {
        assert_eq!(invalid_key(vars, rtx(fast())), *key, "{vars:?}");
    }
    assert_eq!(
        invalid_key(&[("FERRUM_VLLM_MOE", "1")], rtx(Features::default())),
        "FERRUM_VLLM_MOE"
    );
}

#[test]
fn error_texts_are_ferrums() {
    let err = builder(env(&[("FERRUM_KV_MAX_BLOCKS", "0")]), rtx(fast()))
        .resolve()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "FERRUM_KV_MAX_BLOCKS: invalid override: must be greater than zero"
    );
    let err = builder(env(&[("FERRUM_PREFIX_CACHE", "Maybe")]), rtx(fast()))
        .resolve()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "FERRUM_PREFIX_CACHE: invalid override: invalid boolean env value: \"maybe\""
    );
    let err = builder(
        env(&[("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK", "0")]),
        rtx(fast()),
    )
    .resolve()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "scheduler_admission_policy: unsupported combination: active decode prefill chunk must be greater than zero"
    );
}

#[test]
fn max_model_len_decision_appears_only_when_requested() {
    assert!(!m3(&[])
        .decisions
        .iter()
        .any(|d| d.selection == "max_model_len"));
    let resolved = m3(&[
        ("FERRUM_KV_MAX_BLOCKS", "64"),
        ("FERRUM_MAX_MODEL_LEN", "1024"),
    ]);
    let len = decision(&resolved, "max_model_len");
    assert_eq!(len.selected, "1024");
    assert_eq!(len.source_key.as_deref(), Some("FERRUM_MAX_MODEL_LEN"));
    let order: Vec<&str> = resolved
        .decisions
        .iter()
        .map(|d| d.selection.as_str())
        .collect();
    assert_eq!(order[7], "max_model_len");
}

#[test]
fn graph_on_graph_unsafe_moe_is_an_unsupported_combination() {
    let mut model = Model::qwen3_30b_a3b_gptq_int4();
    model.graph_safe_moe = false;
    let err = FerrumConfigBuilder::new(env(&[("FERRUM_MOE_GRAPH", "1")]))
        .with_model_capabilities(model)
        .with_hardware_capabilities(rtx(fast()))
        .with_workload_profile(Workload::m3_qwen3_30b_a3b_int4())
        .resolve()
        .unwrap_err();
    assert!(matches!(
        err,
        AutoConfigError::UnsupportedCombination { ref selection, .. } if selection == "moe_graph_policy"
    ));
}

#[test]
fn scheduler_and_prefix_cache_overrides_show_in_the_trace() {
    let resolved = m3(&[("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK", "64")]);
    let scheduler = decision(&resolved, "scheduler_admission_policy");
    assert_eq!(scheduler.selected, "active_decode_prefill_chunk:64");
    assert_eq!(
        scheduler.source_key.as_deref(),
        Some("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK")
    );
    let resolved = m3(&[("FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE", "1")]);
    assert_eq!(
        decision(&resolved, "scheduler_admission_policy").selected,
        "prompt_token_estimate"
    );
    let resolved = m3(&[("FERRUM_PREFIX_CACHE", "1")]);
    let prefix = decision(&resolved, "prefix_cache_policy");
    assert_eq!(prefix.selected, "prefix_cache_enabled");
    assert_eq!(prefix.source_key.as_deref(), Some("FERRUM_PREFIX_CACHE"));
    assert_eq!(prefix.rejected[0].value, "prefix_cache_disabled");
    assert_eq!(prefix.rejected[0].reason, "prefix cache enabled");
}

#[test]
fn non_env_sources_are_preserved() {
    let resolved = builder(
        sourced(&[
            ("FERRUM_FA_LAYOUT_VARLEN", "1", Rs::ConfigFile),
            ("FERRUM_PAGED_MAX_SEQS", "48", Rs::Cli),
            (
                "FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE",
                "32",
                Rs::ScriptCase,
            ),
        ]),
        rtx(fast()),
    )
    .resolve()
    .unwrap();
    let attention = decision(&resolved, "attention_prefill_mixed_backend");
    assert_eq!(attention.selected, "fa_layout_varlen");
    assert_eq!(attention.source, Src::ConfigFile);
    assert_eq!(
        attention.source_key.as_deref(),
        Some("FERRUM_FA_LAYOUT_VARLEN")
    );
    let seqs = decision(&resolved, "max_sequences");
    assert_eq!((seqs.selected.as_str(), seqs.source), ("48", Src::Cli));
    let scheduler = decision(&resolved, "scheduler_admission_policy");
    assert_eq!(scheduler.selected, "prefill_first_until_active:32");
    assert_eq!(scheduler.source, Src::ScriptCase);
    assert_eq!(
        scheduler.source_key.as_deref(),
        Some("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE")
    );
}

#[test]
fn write_back_rewrites_non_env_sources_as_memory_profile() {
    let resolved = builder(sourced(&[("FERRUM_VLLM_MOE", "1", Rs::Cli)]), rtx(fast()))
        .resolve()
        .unwrap();
    let entry = resolved.runtime_config.get("FERRUM_VLLM_MOE").unwrap();
    assert_eq!(entry.source, Rs::MemoryProfile);
    assert_eq!(decision(&resolved, "moe_implementation").source, Src::Cli);
    // Derived values that nobody set are materialized too.
    assert_eq!(entry_value(&resolved, "FERRUM_MOE_DEVICE_ROUTE"), "1");
    let on_cpu = builder(env(&[]), cpu(Features::default()))
        .resolve()
        .unwrap();
    assert_eq!(entry_value(&on_cpu, "FERRUM_VLLM_MOE"), "0");
    assert_eq!(on_cpu.runtime_config.entries.len(), 5);
}

#[test]
fn artifacts_render_with_matching_decisions() {
    let resolved = m3(&[]);
    let doc = resolved.effective_config_document();
    assert_eq!(doc["schema_version"], 1);
    assert!(doc["env_hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(doc["entries"].is_array());
    assert_eq!(doc["model_capabilities"]["architecture"], "qwen3_moe");
    assert_eq!(doc["hardware_capabilities"]["backend"], "cuda");
    assert_eq!(
        doc["workload_profile"]["preset"],
        M3_QWEN3_30B_A3B_INT4_PRESET
    );
    assert_eq!(
        doc["decisions"].as_array().unwrap().len(),
        resolved.decisions.len()
    );
    let trace = resolved.decision_trace_jsonl();
    assert_eq!(trace.lines().count(), resolved.decisions.len());
    assert!(trace.contains("\"attention_prefill_mixed_backend\""));
}

#[test]
fn artifacts_match_the_locked_schema_shape_and_round_trip() {
    let resolved = builder(
        sourced(&[
            ("FERRUM_FA_LAYOUT_VARLEN", "1", Rs::ScriptCase),
            ("FERRUM_PAGED_MAX_SEQS", "32", Rs::Cli),
        ]),
        rtx(fast()),
    )
    .resolve()
    .unwrap();
    let doc = resolved.effective_config_document();
    let entries = doc["entries"].as_array().unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    for entry in entries {
        assert!(entry["key"].as_str().unwrap().starts_with("FERRUM_"));
        assert!(entry["effective_value"].is_string());
        assert!(matches!(
            entry["source"].as_str().unwrap(),
            "default" | "config_file" | "cli" | "env" | "script_case" | "memory_profile"
        ));
        assert!(!entry["affects"].as_array().unwrap().is_empty());
    }
    assert_eq!(doc["model_capabilities"]["quantization"], "gptq_int4");
    assert_eq!(doc["model_capabilities"]["moe"]["experts_per_token"], 8);
    assert_eq!(doc["hardware_capabilities"]["compute_capability"], "8.9");
    assert_eq!(
        doc["hardware_capabilities"]["compiled_features"]["vllm_moe_marlin"],
        true
    );
    assert_eq!(doc["workload_profile"]["target_concurrency"], 32);
    assert_eq!(doc["workload_profile"]["priority"], "throughput");
    for field in [
        "effective_max_concurrent",
        "queue_depth",
        "active_prefill",
        "active_decode",
        "current_batch_size",
        "rejected_requests_total",
        "failed_requests_total",
        "completed_requests_total",
    ] {
        assert!(doc["admission"][field].is_number(), "admission.{field}");
    }
    let trace: Vec<AutoConfigDecision> = resolved
        .decision_trace_jsonl()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(trace, resolved.decisions);
    let from_doc: Vec<AutoConfigDecision> =
        serde_json::from_value(doc["decisions"].clone()).unwrap();
    assert_eq!(from_doc, trace);
    for d in &trace {
        assert_eq!(d.schema_version, 1);
        assert!(!d.selection.trim().is_empty() && !d.selected.trim().is_empty());
        assert!(!d.candidates.is_empty() && !d.affects.is_empty());
        assert!(d
            .source_key
            .as_deref()
            .is_none_or(|k| k.starts_with("FERRUM_")));
        assert!(d
            .rejected
            .iter()
            .all(|r| !r.value.trim().is_empty() && !r.reason.trim().is_empty()));
    }
}

#[test]
fn decision_trace_lines_keep_declaration_order() {
    let line = m3(&[]).decision_trace_jsonl();
    let first = line.lines().next().unwrap();
    assert!(first.starts_with(
        r#"{"schema_version":1,"selection":"attention_prefill_mixed_backend","selected":"vllm_paged_varlen","source":"workload_preset","source_key":null,"candidates":["#
    ));
    assert!(first.ends_with(r#""affects":["performance","memory"]}"#));
}

#[test]
fn env_hash_changes_exactly_when_entries_change() {
    let base = m3(&[("FERRUM_PAGED_MAX_SEQS", "32")]);
    let same = m3(&[("FERRUM_PAGED_MAX_SEQS", "32")]);
    assert_eq!(base.runtime_env_hash(), same.runtime_env_hash());
    // Same decisions, different provenance: entries differ, so the hash differs.
    let cli = builder(
        sourced(&[("FERRUM_PAGED_MAX_SEQS", "32", Rs::Cli)]),
        rtx(fast()),
    )
    .resolve()
    .unwrap();
    assert_eq!(selections(&cli), selections(&base));
    assert_ne!(cli.runtime_env_hash(), base.runtime_env_hash());
    // A different value changes it too.
    let other = m3(&[("FERRUM_PAGED_MAX_SEQS", "16")]);
    assert_ne!(other.runtime_env_hash(), base.runtime_env_hash());
    // Changing something outside the entries (hardware field that alters no entry) does not.
    let mut hw = rtx(fast());
    hw.cuda_runtime = Some("12.4".into());
    let hw_only = builder(env(&[("FERRUM_PAGED_MAX_SEQS", "32")]), hw)
        .resolve()
        .unwrap();
    assert_eq!(hw_only.runtime_config, base.runtime_config);
    assert_eq!(hw_only.runtime_env_hash(), base.runtime_env_hash());
    // The hash is over the compact JSON of the entries array.
    let bytes = serde_json::to_vec(&base.runtime_config.entries).unwrap();
    use sha2::Digest;
    assert_eq!(
        base.runtime_env_hash(),
        format!("sha256:{:x}", sha2::Sha256::digest(bytes))
    );
}

#[test]
fn effect_lists_use_ferrum_order() {
    let resolved = m3(&[]);
    assert_eq!(
        decision(&resolved, "prefix_cache_policy").affects,
        vec![
            RuntimeConfigEffect::Correctness,
            RuntimeConfigEffect::Performance,
            RuntimeConfigEffect::Memory
        ]
    );
}
