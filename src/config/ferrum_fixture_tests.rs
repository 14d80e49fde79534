//! Byte-for-byte comparison with artifacts written by the real Ferrum 0.7.7 engine (see
//! `tests/golden/ferrum-0.7.7-cpu/README.md` for how they were produced).

use super::capabilities::{
    CompiledKernelFeatures, HardwareCapabilities, ModelCapabilities, MoeCapabilities,
    WorkloadProfile,
};
use super::resolver::FerrumConfigBuilder;
use super::runtime::{RuntimeConfigEntry, RuntimeConfigSnapshot, RuntimeConfigSource};

/// What `ferrum serve` derived from the tiny model's metadata.
fn tiny_qwen3_moe() -> ModelCapabilities {
    ModelCapabilities {
        architecture: "qwen3_moe".into(),
        quantization: Some("gptq_int4".into()),
        moe: Some(MoeCapabilities {
            num_experts: 4,
            experts_per_token: 2,
            moe_intermediate_size: Some(128),
        }),
        max_context_len: Some(4096),
        num_hidden_layers: Some(2),
        head_dim: Some(32),
        kv_heads: Some(2),
        estimated_weight_bytes: Some(223_488),
        supported_dtypes: vec!["fp16".into(), "fp32".into()],
        graph_safe_moe: false,
    }
}

/// Resolve `env` (source `env`) plus the two entries `ferrum serve` adds on its own: the MoE
/// graph default (`default`) and the memory autosizer's batched-token budget (`memory_profile`).
fn resolve_like_ferrum_serve(env: &[(&str, &str)]) -> super::ResolvedFerrumConfig {
    let mut entries = vec![
        RuntimeConfigEntry::new(
            "FERRUM_MAX_BATCHED_TOKENS",
            "2048",
            RuntimeConfigSource::MemoryProfile,
        ),
        RuntimeConfigEntry::new("FERRUM_MOE_GRAPH", "0", RuntimeConfigSource::Default),
    ];
    entries.extend(
        env.iter()
            .map(|(k, v)| RuntimeConfigEntry::new(*k, *v, RuntimeConfigSource::Env)),
    );
    let hardware = HardwareCapabilities::cpu(CompiledKernelFeatures::default());
    let workload = WorkloadProfile::serving_default_for_hardware(&hardware);
    FerrumConfigBuilder::new(RuntimeConfigSnapshot::from_entries(entries))
        .with_model_capabilities(tiny_qwen3_moe())
        .with_hardware_capabilities(hardware)
        .with_workload_profile(workload)
        .resolve()
        .unwrap()
}

#[test]
fn defaults_match_real_ferrum_byte_for_byte() {
    let resolved = resolve_like_ferrum_serve(&[
        ("FERRUM_PAGED_MAX_SEQS", "8"),
        ("FERRUM_MOE_BATCH_THRESHOLD", "4"),
    ]);
    assert_eq!(
        resolved.decision_trace_jsonl(),
        include_str!("../../tests/golden/ferrum-0.7.7-cpu/defaults/decision_trace.jsonl")
    );
    assert_eq!(
        resolved.effective_config_json(),
        include_str!("../../tests/golden/ferrum-0.7.7-cpu/defaults/effective_config.json")
    );
}

#[test]
fn explicit_knobs_match_real_ferrum_byte_for_byte() {
    let resolved = resolve_like_ferrum_serve(&[
        ("FERRUM_PAGED_MAX_SEQS", "4"),
        ("FERRUM_PREFIX_CACHE", "1"),
        ("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE", "2"),
        ("FERRUM_MAX_MODEL_LEN", "1024"),
        ("FERRUM_KV_MAX_BLOCKS", "512"),
        ("FERRUM_KV_CAPACITY", "1024"),
    ]);
    assert_eq!(
        resolved.decision_trace_jsonl(),
        include_str!("../../tests/golden/ferrum-0.7.7-cpu/knobs/decision_trace.jsonl")
    );
    assert_eq!(
        resolved.effective_config_json(),
        include_str!("../../tests/golden/ferrum-0.7.7-cpu/knobs/effective_config.json")
    );
}

#[test]
fn refused_configuration_has_ferrums_message() {
    let hardware = HardwareCapabilities::cpu(CompiledKernelFeatures::default());
    let error = FerrumConfigBuilder::new(RuntimeConfigSnapshot::from_env_vars([
        ("FERRUM_PAGED_MAX_SEQS", "8"),
        ("FERRUM_MAX_BATCHED_TOKENS", "4"),
    ]))
    .with_model_capabilities(tiny_qwen3_moe())
    .with_workload_profile(WorkloadProfile::serving_default_for_hardware(&hardware))
    .with_hardware_capabilities(hardware)
    .resolve()
    .unwrap_err();
    // Ferrum prints this after "invalid auto config: ".
    assert_eq!(
        error.to_string(),
        "FERRUM_MAX_BATCHED_TOKENS: invalid override: must be at least FERRUM_PAGED_MAX_SEQS"
    );
}
