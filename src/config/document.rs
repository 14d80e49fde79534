//! The resolved configuration and its two artifacts: the effective-config document
//! (`effective_config.json`) and the decision trace (`decision_trace.jsonl`).
//!
//! Ferrum builds the document with `serde_json::json!` into a `serde_json::Value` whose maps are
//! ordered by key, so every object in `effective_config.json` (top level, capabilities,
//! admission, entries, decisions) lists its keys in sorted order; the decision trace serializes
//! each decision struct directly and so keeps declaration order. [`canonical`] enforces the
//! sorted order regardless of serde_json features enabled elsewhere in the dependency graph.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::capabilities::{HardwareCapabilities, ModelCapabilities, WorkloadProfile};
use super::decision::AutoConfigDecision;
use super::resolver::{kv_cache_bytes_per_token, KV_BLOCK_SIZE_TOKENS};
use super::runtime::RuntimeConfigSnapshot;

/// The resolver's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedFerrumConfig {
    /// Always 1.
    pub schema_version: u32,
    /// Ferrum runtime preset of the workload, if any.
    pub preset: Option<String>,
    /// Runtime entries, including values the resolver wrote back.
    pub runtime_config: RuntimeConfigSnapshot,
    /// Model capabilities used.
    pub model_capabilities: ModelCapabilities,
    /// Hardware capabilities used.
    pub hardware_capabilities: HardwareCapabilities,
    /// Workload profile used.
    pub workload_profile: WorkloadProfile,
    /// Decisions in resolution order.
    pub decisions: Vec<AutoConfigDecision>,
}

impl ResolvedFerrumConfig {
    /// `"sha256:"` + lowercase hex SHA-256 of the compact JSON of the runtime entries.
    pub fn runtime_env_hash(&self) -> String {
        // Entries serialize infallibly (strings and unit enums only).
        let bytes = serde_json::to_vec(&self.runtime_config.entries).unwrap_or_default();
        let digest = Sha256::digest(bytes);
        format!("sha256:{digest:x}")
    }

    /// The decision trace: one compact JSON decision per line, in resolution order.
    pub fn decision_trace_jsonl(&self) -> String {
        let mut out = String::new();
        for decision in &self.decisions {
            // Decisions serialize infallibly (strings, integers and unit enums only).
            out.push_str(&serde_json::to_string(decision).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// The selected value of a decision.
    pub fn selected(&self, selection: &str) -> Option<&str> {
        self.decisions
            .iter()
            .find(|decision| decision.selection == selection)
            .map(|decision| decision.selected.as_str())
    }

    fn selected_usize(&self, selection: &str) -> Option<usize> {
        self.selected(selection)?.parse().ok()
    }

    fn runtime_value(&self, key: &str) -> Option<String> {
        self.runtime_config
            .get(key)
            .map(|entry| entry.effective_value.clone())
    }

    fn runtime_usize(&self, key: &str) -> Option<usize> {
        self.runtime_value(key)?.parse().ok()
    }

    /// A comma-separated list of device ids; any empty or non-numeric part voids the list.
    fn runtime_csv_usize(&self, key: &str) -> Option<Vec<usize>> {
        self.runtime_value(key)?
            .split(',')
            .map(|part| {
                let part = part.trim();
                (!part.is_empty()).then_some(part)?.parse().ok()
            })
            .collect()
    }

    /// The effective-config document, as Ferrum's `effective_config_document()`.
    pub fn effective_config_document(&self) -> Value {
        let backend = self.hardware_capabilities.backend.as_str();
        let cuda = backend.eq_ignore_ascii_case("cuda");
        let default_devices = cuda.then(|| vec![0usize]);
        let requested_devices = self
            .runtime_csv_usize("FERRUM_REQUESTED_GPU_DEVICES")
            .or_else(|| default_devices.clone());
        let selected_devices = self
            .runtime_csv_usize("FERRUM_SELECTED_GPU_DEVICES")
            .or_else(|| requested_devices.clone())
            .or_else(|| default_devices.clone());
        let cuda_device_count = self
            .runtime_usize("FERRUM_CUDA_DEVICE_COUNT")
            .or_else(|| cuda.then(|| selected_devices.as_ref().map_or(1, Vec::len)))
            .unwrap_or(0);
        let multi_device = selected_devices.as_ref().is_some_and(|d| d.len() > 1);
        let strategy = self
            .runtime_value("FERRUM_SELECTED_DISTRIBUTED_STRATEGY")
            .unwrap_or_else(|| {
                match (multi_device, cuda) {
                    (true, _) => "layer_split",
                    (false, true) => "single_gpu",
                    (false, false) => "none",
                }
                .to_string()
            });
        let split_plan = self.runtime_value("FERRUM_SELECTED_LAYER_SPLIT_PLAN");
        let split_stages: Option<Value> = self
            .runtime_value("FERRUM_SELECTED_LAYER_SPLIT_STAGES")
            .and_then(|raw| serde_json::from_str(&raw).ok());
        let stage_count = split_stages
            .as_ref()
            .and_then(|stages| stages.as_array().map(Vec::len))
            .or_else(|| {
                split_plan
                    .as_ref()
                    .and(selected_devices.as_ref().map(Vec::len))
            });
        let pipeline_mode = match &split_plan {
            Some(_) => self
                .runtime_value("FERRUM_LAYER_SPLIT_PIPELINE_MODE")
                .unwrap_or_else(|| {
                    // Two stages overlap microbatches by default; more stages run whole batches.
                    if stage_count == Some(2) {
                        "overlapped".to_string()
                    } else {
                        "batch".to_string()
                    }
                }),
            None => "sequential".to_string(),
        };
        let max_sequences = self.selected_usize("max_sequences");
        let microbatch = match &split_plan {
            Some(_) => max_sequences.map(|seqs| {
                if pipeline_mode == "overlapped" {
                    seqs.div_ceil(2).max(1)
                } else {
                    seqs
                }
            }),
            None => Some(1),
        };
        let split = split_plan.is_some();
        canonical(json!({
            "schema_version": 1,
            "preset": self.preset,
            "env_hash": self.runtime_env_hash(),
            "backend": backend,
            "requested_gpu_devices": requested_devices,
            "selected_gpu_devices": selected_devices,
            "cuda_device_count": cuda_device_count,
            "selected_distributed_strategy": strategy,
            "selected_layer_split_plan": split_plan,
            "selected_layer_split_stages": split_stages,
            "selected_pipeline_mode": pipeline_mode,
            "selected_microbatch_size": microbatch,
            "selected_stage_bridge": split.then_some("host"),
            "selected_weight_placement": if split { "layer_split" } else { "single_device" },
            "selected_kv_layout": if backend.eq_ignore_ascii_case("cpu") { "contiguous" } else { "paged" },
            "selected_attention_impl": self.selected("attention_decode_backend"),
            "selected_graph_mode": self.selected("moe_graph_policy"),
            "selected_max_sequences": max_sequences,
            "selected_max_model_len": self.selected_usize("max_model_len"),
            "selected_kv_capacity": self.runtime_usize("FERRUM_KV_CAPACITY"),
            "selected_max_batched_tokens": self.selected_usize("max_batched_tokens"),
            "selected_admission_limit": max_sequences,
            "entries": self.runtime_config.entries,
            "model_capabilities": self.model_capabilities,
            "hardware_capabilities": self.hardware_capabilities,
            "workload_profile": self.workload_profile,
            "admission": self.admission_summary_document(),
            "decisions": self.decisions,
        }))
    }

    /// The admission summary block (counters are zero at startup).
    pub fn admission_summary_document(&self) -> Value {
        let max_sequences = self.selected_usize("max_sequences");
        let kv_blocks = self.selected_usize("kv_block_count");
        let kv_tokens = kv_blocks.map(|blocks| blocks.saturating_mul(KV_BLOCK_SIZE_TOKENS));
        let kv_bytes_per_token = kv_cache_bytes_per_token(&self.model_capabilities);
        let kv_capacity_bytes = match (kv_tokens, kv_bytes_per_token) {
            (Some(tokens), Some(per_token)) => (tokens as u64).checked_mul(per_token),
            _ => None,
        };
        canonical(json!({
            "schema_version": 1,
            "backend": self.hardware_capabilities.backend,
            "model_architecture": self.model_capabilities.architecture,
            "scheduler_policy": self.selected("scheduler_admission_policy").unwrap_or("unknown"),
            "effective_max_concurrent": max_sequences,
            "queue_depth": 0u64,
            "active_prefill": 0u64,
            "active_decode": 0u64,
            "current_batch_size": 0u64,
            "rejected_requests_total": 0u64,
            "failed_requests_total": 0u64,
            "completed_requests_total": 0u64,
            "max_sequences": max_sequences,
            "kv_block_count": kv_blocks,
            "kv_block_size_tokens": KV_BLOCK_SIZE_TOKENS,
            "kv_capacity_tokens": kv_tokens,
            "max_model_length": self.selected_usize("max_model_len"),
            "max_batched_tokens": self.selected_usize("max_batched_tokens"),
            "memory_estimate": {
                "vram_bytes": self.hardware_capabilities.vram_bytes,
                "estimated_weight_bytes": self.model_capabilities.estimated_weight_bytes,
                "kv_bytes_per_token": kv_bytes_per_token,
                "kv_capacity_bytes": kv_capacity_bytes,
            },
        }))
    }

    /// `effective_config.json` as written: pretty-printed document plus a trailing newline.
    pub fn effective_config_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.effective_config_document()).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Rebuild every object of `value` with its keys in sorted order.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut sorted = Map::new();
            for (key, value) in entries {
                sorted.insert(key, canonical(value));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}
