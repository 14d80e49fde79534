//! The resolver: runtime entries + model/hardware/workload capabilities → typed decisions.
//!
//! This reproduces Ferrum's `FerrumConfigBuilder::resolve` (the `auto_config.rs` we match): the
//! same defaults, the same validation order and error texts, the same decisions in the same
//! order with the same candidates and rejection reasons, and the same write-back of derived
//! booleans into the runtime config with source `memory_profile`. Order matters twice over: it
//! decides *which* error a user sees first, and it is the order of `decision_trace.jsonl`.

use std::collections::BTreeMap;

use super::capabilities::{
    vram_default_max_sequences, HardwareCapabilities, ModelCapabilities, WorkloadProfile, GIB,
    QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET,
};
use super::decision::{AutoConfigDecision, AutoConfigError, AutoConfigSource, RejectedCandidate};
use super::document::ResolvedFerrumConfig;
use super::runtime::{
    parse_bool_env_value, parse_usize_env_value, RuntimeConfigEffect, RuntimeConfigEntry,
    RuntimeConfigSnapshot, RuntimeConfigSource,
};

/// Tokens per KV block (Ferrum's paged-KV block size).
pub const KV_BLOCK_SIZE_TOKENS: usize = 16;
/// Default KV block target before memory caps.
pub const DEFAULT_KV_BLOCKS: usize = 2048;

/// A resolved value with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved<T> {
    value: T,
    source: AutoConfigSource,
    source_key: Option<String>,
}

impl<T> Resolved<T> {
    fn defaulted(value: T, source: AutoConfigSource) -> Self {
        Self {
            value,
            source,
            source_key: None,
        }
    }
}

/// Builder for a resolution: runtime entries plus capabilities.
#[derive(Debug, Clone)]
pub struct FerrumConfigBuilder {
    runtime_config: RuntimeConfigSnapshot,
    model: ModelCapabilities,
    hardware: HardwareCapabilities,
    workload: WorkloadProfile,
}

impl FerrumConfigBuilder {
    /// Start from runtime entries with unknown model/hardware and the serving-default workload.
    pub fn new(runtime_config: RuntimeConfigSnapshot) -> Self {
        Self {
            runtime_config,
            model: ModelCapabilities::unknown(),
            hardware: HardwareCapabilities::unknown(),
            workload: WorkloadProfile::default(),
        }
    }

    /// Set the model capabilities.
    pub fn with_model_capabilities(mut self, model: ModelCapabilities) -> Self {
        self.model = model;
        self
    }

    /// Set the hardware capabilities.
    pub fn with_hardware_capabilities(mut self, hardware: HardwareCapabilities) -> Self {
        self.hardware = hardware;
        self
    }

    /// Set the workload profile.
    pub fn with_workload_profile(mut self, workload: WorkloadProfile) -> Self {
        self.workload = workload;
        self
    }

    /// Resolve every decision, or fail with Ferrum's first validation error.
    pub fn resolve(self) -> Result<ResolvedFerrumConfig, AutoConfigError> {
        let cuda = self.is_cuda();
        let has_moe = self.model.moe.is_some();
        let gptq_like = self.model.quantization.as_deref().is_some_and(|q| {
            let q = q.to_ascii_lowercase();
            q.contains("gptq") || q.contains("int4")
        });
        let cuda_gptq_moe = cuda && has_moe && gptq_like;
        let cuda_qwen3_moe =
            cuda && has_moe && self.model.architecture.eq_ignore_ascii_case("qwen3_moe");
        let m3 = self.workload.is_m3_preset();
        let features = self.hardware.compiled_features.clone();

        let paged_attn = self.flag(
            "FERRUM_USE_VLLM_PAGED_ATTN",
            (m3 || cuda_qwen3_moe) && cuda && features.vllm_paged_attn,
            AutoConfigSource::WorkloadPreset,
        )?;
        let fa_layout = self.flag("FERRUM_FA_LAYOUT_VARLEN", false, AutoConfigSource::Default)?;
        let fa2_source = self.flag("FERRUM_FA2_SOURCE", false, AutoConfigSource::Default)?;
        let shim_present = self.entry("FERRUM_FA2_DIRECT_FFI_SHIM").is_some();
        let fa2_direct_ffi = self.flag(
            "FERRUM_FA2_DIRECT_FFI",
            shim_present,
            if shim_present {
                AutoConfigSource::Env
            } else {
                AutoConfigSource::Default
            },
        )?;
        let v1_short = self.flag(
            "FERRUM_VLLM_PAGED_ATTN_V1_SHORT",
            paged_attn.value,
            AutoConfigSource::Default,
        )?;
        let vllm_moe = self.flag(
            "FERRUM_VLLM_MOE",
            (cuda_gptq_moe || (m3 && cuda)) && features.vllm_moe_marlin,
            AutoConfigSource::WorkloadPreset,
        )?;
        let device_route = self.flag(
            "FERRUM_MOE_DEVICE_ROUTE",
            vllm_moe.value,
            AutoConfigSource::WorkloadPreset,
        )?;
        let pair_ids = self.flag(
            "FERRUM_VLLM_MOE_PAIR_IDS",
            vllm_moe.value,
            AutoConfigSource::WorkloadPreset,
        )?;
        let graph = self.flag("FERRUM_MOE_GRAPH", false, AutoConfigSource::WorkloadPreset)?;
        let greedy = self.flag(
            "FERRUM_GREEDY_ARGMAX",
            m3 && cuda && features.greedy_argmax,
            AutoConfigSource::WorkloadPreset,
        )?;
        let prefix_cache = self.flag(
            "FERRUM_PREFIX_CACHE",
            false,
            if m3 {
                AutoConfigSource::WorkloadPreset
            } else {
                AutoConfigSource::Default
            },
        )?;

        let default_seqs = self.default_max_sequences();
        let max_sequences = self.count(
            "FERRUM_PAGED_MAX_SEQS",
            default_seqs.value,
            default_seqs.source,
        )?;
        let default_blocks = self.default_kv_blocks(&max_sequences);
        let kv_blocks = self.count(
            "FERRUM_KV_MAX_BLOCKS",
            default_blocks.value,
            default_blocks.source,
        )?;
        let default_tokens = self.default_max_batched_tokens(&max_sequences, &kv_blocks);
        let max_batched_tokens = self.count(
            "FERRUM_MAX_BATCHED_TOKENS",
            default_tokens.value,
            default_tokens.source,
        )?;
        let max_model_len = self.optional_count("FERRUM_MAX_MODEL_LEN")?;

        self.validate_attention(
            paged_attn.value,
            fa_layout.value,
            fa2_source.value,
            fa2_direct_ffi.value,
            shim_present,
            v1_short.value,
        )?;
        self.validate_moe(
            vllm_moe.value,
            device_route.value,
            pair_ids.value,
            graph.value,
        )?;
        self.validate_memory(
            kv_blocks.value,
            max_sequences.value,
            max_batched_tokens.value,
            max_model_len.as_ref().map(|len| len.value),
        )?;
        self.validate_dtypes()?;
        self.validate_pipeline_mode()?;
        self.validate_sampling(greedy.value)?;

        let mut decisions = vec![
            attention_prefill_decision(&paged_attn, &fa_layout, &fa2_source, &fa2_direct_ffi),
            attention_decode_decision(&paged_attn, &v1_short),
        ];

        // Model code reads FERRUM_* values, not decisions, so derived booleans are written back
        // (Ferrum's 2026-06-10 fix). Anything not from the process environment is rewritten
        // with source `memory_profile`, as the spec version does.
        let mut runtime_config = self.runtime_config.clone();
        for (key, resolved) in [
            ("FERRUM_USE_VLLM_PAGED_ATTN", &paged_attn),
            ("FERRUM_VLLM_PAGED_ATTN_V1_SHORT", &v1_short),
            ("FERRUM_VLLM_MOE", &vllm_moe),
            ("FERRUM_MOE_DEVICE_ROUTE", &device_route),
            ("FERRUM_VLLM_MOE_PAIR_IDS", &pair_ids),
        ] {
            if resolved.source != AutoConfigSource::Env {
                runtime_config.upsert(
                    key,
                    if resolved.value { "1" } else { "0" },
                    RuntimeConfigSource::MemoryProfile,
                );
            }
        }

        decisions.push(moe_decision(&vllm_moe, &device_route, &pair_ids));
        decisions.push(graph_decision(&graph));
        decisions.push(scalar_decision(
            "kv_block_count",
            &kv_blocks,
            RuntimeConfigEffect::Memory,
        ));
        decisions.push(scalar_decision(
            "max_sequences",
            &max_sequences,
            RuntimeConfigEffect::Memory,
        ));
        decisions.push(scalar_decision(
            "max_batched_tokens",
            &max_batched_tokens,
            RuntimeConfigEffect::Performance,
        ));
        if let Some(len) = &max_model_len {
            decisions.push(scalar_decision(
                "max_model_len",
                len,
                RuntimeConfigEffect::Memory,
            ));
        }
        decisions.push(prefix_cache_decision(&prefix_cache));
        decisions.push(self.scheduler_decision()?);
        decisions.push(sampling_decision(&greedy));

        Ok(ResolvedFerrumConfig {
            schema_version: 1,
            preset: self.workload.preset.clone(),
            runtime_config,
            model_capabilities: self.model,
            hardware_capabilities: self.hardware,
            workload_profile: self.workload,
            decisions,
        })
    }

    fn entry(&self, key: &str) -> Option<&RuntimeConfigEntry> {
        self.runtime_config.get(key)
    }

    fn is_cuda(&self) -> bool {
        self.hardware.backend.eq_ignore_ascii_case("cuda")
    }

    fn is_metal(&self) -> bool {
        self.hardware.backend.eq_ignore_ascii_case("metal")
    }

    /// A boolean knob: the entry's value (Ferrum's bool spelling) or the default.
    fn flag(
        &self,
        key: &str,
        default: bool,
        default_source: AutoConfigSource,
    ) -> Result<Resolved<bool>, AutoConfigError> {
        self.entry_or(key, default, default_source, parse_bool_env_value)
    }

    /// A non-negative integer knob: the entry's value or the default.
    fn count(
        &self,
        key: &str,
        default: usize,
        default_source: AutoConfigSource,
    ) -> Result<Resolved<usize>, AutoConfigError> {
        self.entry_or(key, default, default_source, parse_usize_env_value)
    }

    fn optional_count(&self, key: &str) -> Result<Option<Resolved<usize>>, AutoConfigError> {
        match self.entry(key) {
            Some(_) => self.count(key, 0, AutoConfigSource::Default).map(Some),
            None => Ok(None),
        }
    }

    fn entry_or<T>(
        &self,
        key: &str,
        default: T,
        default_source: AutoConfigSource,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Resolved<T>, AutoConfigError> {
        let Some(entry) = self.entry(key) else {
            return Ok(Resolved::defaulted(default, default_source));
        };
        let value = parse(&entry.effective_value).map_err(|reason| invalid_owned(key, reason))?;
        Ok(Resolved {
            value,
            source: AutoConfigSource::from_runtime(entry.source),
            source_key: Some(key.to_string()),
        })
    }

    fn compute_capability_at_least(&self, major: u32, minor: u32) -> Option<bool> {
        let actual = parse_compute_capability(self.hardware.compute_capability.as_deref()?)?;
        Some(actual >= (major, minor))
    }

    fn kv_bytes_per_token(&self) -> Option<u64> {
        kv_cache_bytes_per_token(&self.model)
    }

    fn default_max_sequences(&self) -> Resolved<usize> {
        let target = self.workload.target_concurrency.max(1);
        let mut selected = target;
        // Only the M3 preset is sized to the device: a quarter of the SMs and the VRAM tier.
        if self.workload.is_m3_preset() {
            if let Some(sm_count) = self.hardware.sm_count {
                selected = selected.min((sm_count as usize / 4).max(1));
            }
            if let Some(vram) = self.hardware.vram_bytes {
                selected = selected.min(vram_default_max_sequences(vram));
            }
        }
        Resolved::defaulted(selected.max(1), budget_source(selected < target))
    }

    fn default_kv_blocks(&self, max_sequences: &Resolved<usize>) -> Resolved<usize> {
        let min_blocks = max_sequences.value.max(1).div_ceil(KV_BLOCK_SIZE_TOKENS);
        if self
            .workload
            .is_preset(QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET)
        {
            return Resolved::defaulted(1024.max(min_blocks), AutoConfigSource::WorkloadPreset);
        }
        let target = DEFAULT_KV_BLOCKS.max(min_blocks);
        let selected = match (
            self.hardware.vram_bytes,
            self.model.estimated_weight_bytes,
            self.kv_bytes_per_token(),
        ) {
            (Some(vram), Some(weights), Some(per_token)) if per_token > 0 => {
                // Keep a tenth of the device (at least 2 GiB) free beyond the weights.
                let headroom = (vram / 10).max(2 * GIB);
                let available = vram.saturating_sub(weights.saturating_add(headroom));
                let block_budget = (available / per_token) as usize / KV_BLOCK_SIZE_TOKENS;
                target.min(block_budget.max(min_blocks))
            }
            _ => target,
        };
        Resolved::defaulted(selected.max(1), budget_source(selected < target))
    }

    fn default_max_batched_tokens(
        &self,
        max_sequences: &Resolved<usize>,
        kv_blocks: &Resolved<usize>,
    ) -> Resolved<usize> {
        let seqs = max_sequences.value.max(1);
        let kv_tokens = kv_blocks
            .value
            .saturating_mul(KV_BLOCK_SIZE_TOKENS)
            .max(seqs);
        let target = if self
            .workload
            .is_preset(QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET)
        {
            1536
        } else {
            seqs.saturating_mul(64)
        };
        let reduced = max_sequences.source == AutoConfigSource::HardwareCapability
            || kv_blocks.source == AutoConfigSource::HardwareCapability;
        Resolved::defaulted(target.min(kv_tokens).max(seqs), budget_source(reduced))
    }

    fn validate_attention(
        &self,
        paged_attn: bool,
        fa_layout: bool,
        fa2_source: bool,
        fa2_direct_ffi: bool,
        shim_present: bool,
        v1_short: bool,
    ) -> Result<(), AutoConfigError> {
        let features = &self.hardware.compiled_features;
        let old_gpu = self.compute_capability_at_least(8, 0) == Some(false);
        first_invalid(&[
            (
                paged_attn && !features.vllm_paged_attn,
                "FERRUM_USE_VLLM_PAGED_ATTN",
                "vLLM paged attention is not compiled",
            ),
            (
                paged_attn && !self.is_cuda(),
                "FERRUM_USE_VLLM_PAGED_ATTN",
                "vLLM paged attention requires CUDA backend",
            ),
            (
                fa_layout && !paged_attn,
                "FERRUM_FA_LAYOUT_VARLEN",
                "FA layout requires vLLM paged attention layout",
            ),
            (
                fa2_source && !features.fa2_source,
                "FERRUM_FA2_SOURCE",
                "source-linked FA2 support is not compiled",
            ),
            (
                fa2_source && !self.is_cuda(),
                "FERRUM_FA2_SOURCE",
                "source-linked FA2 requires CUDA backend",
            ),
            (
                fa2_source && !paged_attn,
                "FERRUM_FA2_SOURCE",
                "source-linked FA2 requires vLLM paged attention layout",
            ),
            (
                fa2_source && old_gpu,
                "FERRUM_FA2_SOURCE",
                "source-linked FA2 requires CUDA compute capability >= 8.0",
            ),
            (
                fa2_direct_ffi && !features.fa2_direct_ffi,
                "FERRUM_FA2_DIRECT_FFI",
                "direct FA2 FFI shim support is not compiled",
            ),
            (
                fa2_direct_ffi && !self.is_cuda(),
                "FERRUM_FA2_DIRECT_FFI",
                "direct FA2 FFI shim requires CUDA backend",
            ),
            (
                fa2_direct_ffi && old_gpu,
                "FERRUM_FA2_DIRECT_FFI",
                "direct FA2 FFI shim requires CUDA compute capability >= 8.0",
            ),
            (
                fa2_direct_ffi && !shim_present,
                "FERRUM_FA2_DIRECT_FFI",
                "requires FERRUM_FA2_DIRECT_FFI_SHIM",
            ),
        ])?;
        if fa2_source && fa2_direct_ffi {
            return Err(unsupported(
                "attention_prefill_mixed_backend",
                "FA2 source and direct FFI shim cannot both own the prefill path",
            ));
        }
        if v1_short && !paged_attn {
            return Err(invalid(
                "FERRUM_VLLM_PAGED_ATTN_V1_SHORT",
                "short-context v1 requires vLLM paged attention",
            ));
        }
        Ok(())
    }

    fn validate_moe(
        &self,
        vllm_moe: bool,
        device_route: bool,
        pair_ids: bool,
        graph: bool,
    ) -> Result<(), AutoConfigError> {
        let features = &self.hardware.compiled_features;
        // The MoE graph knob only matters for MoE models (or the M3 preset).
        let graph = graph && (self.model.moe.is_some() || self.workload.is_m3_preset());
        first_invalid(&[
            (
                vllm_moe && !features.vllm_moe_marlin,
                "FERRUM_VLLM_MOE",
                "vLLM Marlin MoE is not compiled",
            ),
            (
                vllm_moe && !self.is_cuda(),
                "FERRUM_VLLM_MOE",
                "vLLM Marlin MoE requires CUDA backend",
            ),
            (
                device_route && !vllm_moe,
                "FERRUM_MOE_DEVICE_ROUTE",
                "device route currently requires vLLM MoE",
            ),
            (
                pair_ids && !vllm_moe,
                "FERRUM_VLLM_MOE_PAIR_IDS",
                "pair-id routing requires vLLM MoE",
            ),
            (
                graph && !self.hardware.graph_support,
                "FERRUM_MOE_GRAPH",
                "hardware/backend does not support CUDA graph replay",
            ),
            (
                graph && !features.cuda_graph,
                "FERRUM_MOE_GRAPH",
                "CUDA graph support is not compiled",
            ),
            (
                graph && !vllm_moe,
                "FERRUM_MOE_GRAPH",
                "graph decode requires the graph-clean vLLM MoE path",
            ),
        ])?;
        if graph && self.model.moe.is_some() && !self.model.graph_safe_moe {
            return Err(unsupported(
                "moe_graph_policy",
                "model MoE path is not marked graph-safe",
            ));
        }
        Ok(())
    }

    fn validate_sampling(&self, greedy: bool) -> Result<(), AutoConfigError> {
        first_invalid(&[
            (
                greedy && !self.hardware.compiled_features.greedy_argmax,
                "FERRUM_GREEDY_ARGMAX",
                "GPU argmax is not compiled",
            ),
            (
                greedy && !(self.is_cuda() || self.is_metal()),
                "FERRUM_GREEDY_ARGMAX",
                "greedy argmax requires CUDA or Metal backend",
            ),
        ])
    }

    fn validate_memory(
        &self,
        kv_blocks: usize,
        max_sequences: usize,
        max_batched_tokens: usize,
        max_model_len: Option<usize>,
    ) -> Result<(), AutoConfigError> {
        let kv_tokens = kv_blocks.saturating_mul(KV_BLOCK_SIZE_TOKENS);
        first_invalid(&[
            (
                kv_blocks == 0,
                "FERRUM_KV_MAX_BLOCKS",
                "must be greater than zero",
            ),
            (
                max_sequences == 0,
                "FERRUM_PAGED_MAX_SEQS",
                "must be greater than zero",
            ),
            (
                max_batched_tokens < max_sequences,
                "FERRUM_MAX_BATCHED_TOKENS",
                "must be at least FERRUM_PAGED_MAX_SEQS",
            ),
            (
                max_batched_tokens > kv_tokens,
                "FERRUM_MAX_BATCHED_TOKENS",
                "exceeds KV cache token capacity",
            ),
        ])?;
        let Some(len) = max_model_len else {
            return Ok(());
        };
        let model_max = self.model.max_context_len;
        first_invalid(&[
            (
                len == 0,
                "FERRUM_MAX_MODEL_LEN",
                "must be greater than zero",
            ),
            (
                model_max.is_some_and(|max| len > max),
                "FERRUM_MAX_MODEL_LEN",
                "exceeds model metadata max context length",
            ),
            (
                len > kv_tokens,
                "FERRUM_KV_MAX_BLOCKS",
                "KV cache token capacity is smaller than FERRUM_MAX_MODEL_LEN",
            ),
        ])
    }

    fn validate_dtypes(&self) -> Result<(), AutoConfigError> {
        let supported = |key: &str, list: &[String]| {
            self.entry(key).is_none_or(|entry| {
                let dtype = entry.effective_value.to_ascii_lowercase();
                list.contains(&dtype)
            })
        };
        first_invalid(&[
            (
                !supported("FERRUM_DTYPE", &self.hardware.supported_dtypes),
                "FERRUM_DTYPE",
                "dtype is not supported by hardware profile",
            ),
            (
                !supported("FERRUM_KV_DTYPE", &self.hardware.supported_kv_dtypes),
                "FERRUM_KV_DTYPE",
                "KV dtype is not supported by hardware profile",
            ),
        ])
    }

    fn validate_pipeline_mode(&self) -> Result<(), AutoConfigError> {
        let Some(entry) = self.entry("FERRUM_LAYER_SPLIT_PIPELINE_MODE") else {
            return Ok(());
        };
        match entry.effective_value.trim().to_ascii_lowercase().as_str() {
            "batch" | "overlapped" => Ok(()),
            _ => Err(invalid(
                "FERRUM_LAYER_SPLIT_PIPELINE_MODE",
                "must be batch or overlapped",
            )),
        }
    }

    /// Scheduler admission policy: an explicit active-decode chunk wins over prefill-first,
    /// which wins over the prompt-token estimate; otherwise continuous batching.
    fn scheduler_decision(&self) -> Result<AutoConfigDecision, AutoConfigError> {
        let values: BTreeMap<&str, &str> = self
            .runtime_config
            .entries
            .iter()
            .map(|entry| (entry.key.as_str(), entry.effective_value.as_str()))
            .collect();
        let numeric = |key: &str, prefix: &str| -> Result<Option<String>, AutoConfigError> {
            let Some(raw) = values.get(key) else {
                return Ok(None);
            };
            parse_usize_env_value(raw).map_err(|reason| invalid_owned(key, reason))?;
            Ok(Some(format!("{prefix}:{raw}")))
        };
        let (selected, source_key) = if let Some(selected) = numeric(
            "FERRUM_ACTIVE_DECODE_PREFILL_CHUNK",
            "active_decode_prefill_chunk",
        )? {
            (selected, Some("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK"))
        } else if let Some(selected) = numeric(
            "FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE",
            "prefill_first_until_active",
        )? {
            (selected, Some("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE"))
        } else if self
            .flag(
                "FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE",
                false,
                AutoConfigSource::Default,
            )?
            .value
        {
            (
                "prompt_token_estimate".to_string(),
                Some("FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE"),
            )
        } else {
            ("continuous_default".to_string(), None)
        };
        if source_key == Some("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK") && selected.ends_with(":0") {
            return Err(unsupported(
                "scheduler_admission_policy",
                "active decode prefill chunk must be greater than zero",
            ));
        }
        let source = source_key
            .and_then(|key| self.entry(key))
            .map(|entry| AutoConfigSource::from_runtime(entry.source))
            .unwrap_or(AutoConfigSource::Default);
        Ok(decision(
            "scheduler_admission_policy",
            &selected,
            source,
            source_key.map(str::to_string),
            &[
                "continuous_default",
                "prompt_token_estimate",
                "prefill_first_until_active",
                "active_decode_prefill_chunk",
            ],
            Vec::new(),
            vec![RuntimeConfigEffect::Performance],
        ))
    }
}

/// KV bytes per token for a model: layers × 2 (K and V) × KV heads × head dim × 2 bytes (fp16).
pub fn kv_cache_bytes_per_token(model: &ModelCapabilities) -> Option<u64> {
    (model.num_hidden_layers? as u64)
        .checked_mul(2)?
        .checked_mul(model.kv_heads? as u64)?
        .checked_mul(model.head_dim? as u64)?
        .checked_mul(2)
}

/// Parse a compute capability: `8.9` → (8, 9), `9` → (9, 0); anything else → None.
pub fn parse_compute_capability(value: &str) -> Option<(u32, u32)> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let (major, minor) = value.split_once('.').unwrap_or((value, "0"));
    Some((major.trim().parse().ok()?, minor.trim().parse().ok()?))
}

fn budget_source(reduced_by_hardware: bool) -> AutoConfigSource {
    if reduced_by_hardware {
        AutoConfigSource::HardwareCapability
    } else {
        AutoConfigSource::WorkloadPreset
    }
}

fn invalid(key: &str, reason: &str) -> AutoConfigError {
    invalid_owned(key, reason.to_string())
}

fn invalid_owned(key: &str, reason: String) -> AutoConfigError {
    AutoConfigError::InvalidOverride {
        key: key.to_string(),
        reason,
    }
}

fn unsupported(selection: &str, reason: &str) -> AutoConfigError {
    AutoConfigError::UnsupportedCombination {
        selection: selection.to_string(),
        reason: reason.to_string(),
    }
}

/// The first failing `(condition, key, reason)` check, in order.
fn first_invalid(checks: &[(bool, &str, &str)]) -> Result<(), AutoConfigError> {
    match checks.iter().find(|(failed, _, _)| *failed) {
        Some((_, key, reason)) => Err(invalid(key, reason)),
        None => Ok(()),
    }
}

fn decision(
    selection: &str,
    selected: &str,
    source: AutoConfigSource,
    source_key: Option<String>,
    candidates: &[&str],
    rejected: Vec<RejectedCandidate>,
    affects: Vec<RuntimeConfigEffect>,
) -> AutoConfigDecision {
    AutoConfigDecision {
        schema_version: 1,
        selection: selection.to_string(),
        selected: selected.to_string(),
        source,
        source_key,
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
        rejected,
        affects,
    }
}

/// Candidate list and a rejection reason for every candidate except the selected one.
fn choice(
    selection: &str,
    selected: &str,
    source: AutoConfigSource,
    source_key: Option<String>,
    options: &[(&str, &str)],
    affects: Vec<RuntimeConfigEffect>,
) -> AutoConfigDecision {
    let candidates: Vec<&str> = options.iter().map(|(value, _)| *value).collect();
    let rejected = options
        .iter()
        .filter(|(value, _)| *value != selected)
        .map(|(value, reason)| RejectedCandidate {
            value: value.to_string(),
            reason: reason.to_string(),
        })
        .collect();
    decision(
        selection,
        selected,
        source,
        source_key,
        &candidates,
        rejected,
        affects,
    )
}

fn attention_prefill_decision(
    paged_attn: &Resolved<bool>,
    fa_layout: &Resolved<bool>,
    fa2_source: &Resolved<bool>,
    fa2_direct_ffi: &Resolved<bool>,
) -> AutoConfigDecision {
    // Highest priority first: the first enabled path owns prefill.
    let owners = [
        ("fa2_source", fa2_source),
        ("fa2_direct_ffi", fa2_direct_ffi),
        ("fa_layout_varlen", fa_layout),
        ("vllm_paged_varlen", paged_attn),
    ];
    let (selected, source, source_key) = owners
        .iter()
        .find(|(_, resolved)| resolved.value)
        .map(|(name, resolved)| (*name, resolved.source, resolved.source_key.clone()))
        .unwrap_or(("legacy_paged_varlen", AutoConfigSource::Default, None));
    choice(
        "attention_prefill_mixed_backend",
        selected,
        source,
        source_key,
        &[
            ("fa2_source", "source-linked FA2 path not selected"),
            ("fa2_direct_ffi", "diagnostic direct FFI shim not selected"),
            ("fa_layout_varlen", "FA-compatible layout not selected"),
            ("vllm_paged_varlen", "vLLM paged varlen bridge not selected"),
            (
                "legacy_paged_varlen",
                "a higher-priority attention path was selected",
            ),
        ],
        vec![
            RuntimeConfigEffect::Performance,
            RuntimeConfigEffect::Memory,
        ],
    )
}

fn attention_decode_decision(
    paged_attn: &Resolved<bool>,
    v1_short: &Resolved<bool>,
) -> AutoConfigDecision {
    let (selected, source, source_key) = match (paged_attn.value, v1_short.value) {
        (true, true) => (
            "vllm_paged_attn_v1_short",
            v1_short.source,
            v1_short.source_key.clone(),
        ),
        (true, false) => (
            "vllm_paged_attn_v2",
            v1_short.source,
            v1_short.source_key.clone(),
        ),
        (false, _) => ("legacy_paged_decode", paged_attn.source, None),
    };
    choice(
        "attention_decode_backend",
        selected,
        source,
        source_key,
        &[
            (
                "vllm_paged_attn_v1_short",
                "short-context v1 decode not selected",
            ),
            ("vllm_paged_attn_v2", "v2 decode not selected"),
            ("legacy_paged_decode", "legacy decode not selected"),
        ],
        vec![RuntimeConfigEffect::Performance],
    )
}

fn moe_decision(
    vllm_moe: &Resolved<bool>,
    device_route: &Resolved<bool>,
    pair_ids: &Resolved<bool>,
) -> AutoConfigDecision {
    let selected = match (vllm_moe.value, device_route.value, pair_ids.value) {
        (true, true, true) => "vllm_marlin_moe_device_route_pair_ids",
        (true, true, false) => "vllm_marlin_moe_device_route",
        (true, false, _) => "vllm_marlin_moe",
        (false, _, _) => "legacy_moe",
    };
    choice(
        "moe_implementation",
        selected,
        vllm_moe.source,
        vllm_moe.source_key.clone(),
        &[
            (
                "vllm_marlin_moe_device_route_pair_ids",
                "pair-id device route not selected",
            ),
            (
                "vllm_marlin_moe_device_route",
                "device-route MoE not selected",
            ),
            ("vllm_marlin_moe", "vLLM Marlin MoE not selected"),
            ("legacy_moe", "legacy MoE not selected"),
        ],
        vec![RuntimeConfigEffect::Performance],
    )
}

fn graph_decision(graph: &Resolved<bool>) -> AutoConfigDecision {
    choice(
        "moe_graph_policy",
        if graph.value {
            "graph_clean_decode"
        } else {
            "graph_disabled"
        },
        graph.source,
        graph.source_key.clone(),
        &[
            ("graph_clean_decode", "graph decode not selected"),
            ("graph_disabled", "graph decode selected"),
        ],
        vec![
            RuntimeConfigEffect::Performance,
            RuntimeConfigEffect::Correctness,
        ],
    )
}

fn prefix_cache_decision(prefix_cache: &Resolved<bool>) -> AutoConfigDecision {
    choice(
        "prefix_cache_policy",
        if prefix_cache.value {
            "prefix_cache_enabled"
        } else {
            "prefix_cache_disabled"
        },
        prefix_cache.source,
        prefix_cache.source_key.clone(),
        &[
            ("prefix_cache_enabled", "prefix cache not selected"),
            ("prefix_cache_disabled", "prefix cache enabled"),
        ],
        vec![
            RuntimeConfigEffect::Correctness,
            RuntimeConfigEffect::Performance,
            RuntimeConfigEffect::Memory,
        ],
    )
}

fn sampling_decision(greedy: &Resolved<bool>) -> AutoConfigDecision {
    choice(
        "sampling_readback_path",
        if greedy.value {
            "gpu_greedy_argmax"
        } else {
            "logits_readback"
        },
        greedy.source,
        greedy.source_key.clone(),
        &[
            ("gpu_greedy_argmax", "GPU argmax not selected"),
            ("logits_readback", "logits readback not selected"),
        ],
        vec![
            RuntimeConfigEffect::Performance,
            RuntimeConfigEffect::Correctness,
        ],
    )
}

fn scalar_decision(
    selection: &str,
    value: &Resolved<usize>,
    effect: RuntimeConfigEffect,
) -> AutoConfigDecision {
    let selected = value.value.to_string();
    decision(
        selection,
        &selected,
        value.source,
        value.source_key.clone(),
        &[selected.as_str()],
        Vec::new(),
        vec![effect],
    )
}
