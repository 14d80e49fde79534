//! Decision-trace types: one typed record per resolver selection, serialized exactly as Ferrum's
//! `AutoConfigDecision` (field order is part of the locked JSONL schema).

use serde::{Deserialize, Serialize};

use super::runtime::{RuntimeConfigEffect, RuntimeConfigSource};

/// Where a resolver decision came from. Serialized in snake_case exactly as Ferrum does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoConfigSource {
    /// Built-in default.
    Default,
    /// Command-line override.
    Cli,
    /// Config file / preset `[env]`.
    ConfigFile,
    /// Process environment.
    Env,
    /// Benchmark script case (sweep cell).
    ScriptCase,
    /// Model metadata.
    ModelMetadata,
    /// Derived from hardware capability (a budget was reduced to fit).
    HardwareCapability,
    /// Written back by the resolver/autosizer.
    MemoryProfile,
    /// The workload preset's default.
    WorkloadPreset,
    /// Compiled kernel feature.
    CompiledFeature,
}

impl AutoConfigSource {
    /// The decision source corresponding to a runtime entry's source.
    pub fn from_runtime(source: RuntimeConfigSource) -> Self {
        match source {
            RuntimeConfigSource::Default => AutoConfigSource::Default,
            RuntimeConfigSource::ConfigFile => AutoConfigSource::ConfigFile,
            RuntimeConfigSource::Cli => AutoConfigSource::Cli,
            RuntimeConfigSource::Env => AutoConfigSource::Env,
            RuntimeConfigSource::ScriptCase => AutoConfigSource::ScriptCase,
            RuntimeConfigSource::MemoryProfile => AutoConfigSource::MemoryProfile,
        }
    }
}

/// A candidate the resolver did not select, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedCandidate {
    /// The candidate value.
    pub value: String,
    /// Why it was not selected.
    pub reason: String,
}

/// One resolver decision (one line of `decision_trace.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoConfigDecision {
    /// Always 1.
    pub schema_version: u32,
    /// What was decided, e.g. `attention_decode_backend`.
    pub selection: String,
    /// The selected value.
    pub selected: String,
    /// Provenance of the selection.
    pub source: AutoConfigSource,
    /// The `FERRUM_*` key that decided it, when a runtime entry did.
    pub source_key: Option<String>,
    /// All candidates (scalar decisions: just the selected value).
    pub candidates: Vec<String>,
    /// Candidates not selected, with reasons.
    pub rejected: Vec<RejectedCandidate>,
    /// What the decision affects.
    pub affects: Vec<RuntimeConfigEffect>,
}

/// Resolver failure; the `Display` texts are Ferrum's exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoConfigError {
    /// A runtime value is malformed or not allowed on this model/hardware.
    #[error("{key}: invalid override: {reason}")]
    InvalidOverride {
        /// The offending `FERRUM_*` key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Individually valid values that cannot be combined.
    #[error("{selection}: unsupported combination: {reason}")]
    UnsupportedCombination {
        /// The decision that cannot be made.
        selection: String,
        /// Why.
        reason: String,
    },
}

impl AutoConfigError {
    /// The `FERRUM_*` key most responsible for the error (for "where did it come from" notes).
    pub fn offending_keys(&self) -> Vec<&str> {
        match self {
            AutoConfigError::InvalidOverride { key, .. } => vec![key.as_str()],
            AutoConfigError::UnsupportedCombination { selection, .. } => match selection.as_str() {
                "attention_prefill_mixed_backend" => {
                    vec!["FERRUM_FA2_SOURCE", "FERRUM_FA2_DIRECT_FFI"]
                }
                "moe_graph_policy" => vec!["FERRUM_MOE_GRAPH"],
                "scheduler_admission_policy" => vec!["FERRUM_ACTIVE_DECODE_PREFILL_CHUNK"],
                _ => Vec::new(),
            },
        }
    }
}
