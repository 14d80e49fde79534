//! Values Ferrum accepts but reads differently from how they look — the harness's checks that
//! run *after* Ferrum's resolver.
//!
//! Ferrum's resolver parses knobs with its typed parsers (`parse_bool_env_value`: trimmed,
//! case-insensitive `1/true/yes/on`; `parse_usize_env_value`: trimmed `usize`), but its model code
//! reads the same `FERRUM_*` strings again with simpler rules (`qwen3_moe_runtime_env.rs`,
//! `vllm_paged_attn.rs`): some booleans are on only for exactly `1`, others off only for exactly
//! `0`, integers are "positive `usize` without trimming, else the default". Ferrum's own
//! effective-config document also reads a few values raw (`FERRUM_KV_CAPACITY`, the GPU device
//! lists, the layer-split pipeline mode). So `FERRUM_MOE_BATCH_THRESHOLD=0` resolves fine and
//! silently runs with 4, and `FERRUM_PREFIX_CACHE=true` records "on" in nothing but runs with the
//! prefix cache off.
//!
//! [`misread_values`] looks at the entries the engine receives (after the resolver's
//! write-back) and reports every value whose runtime reading differs from its reading by Ferrum's
//! typed parser, saying what the engine will actually use. Knobs whose runtime reader is not in
//! the specification are reported only when the value does not even look like its registered
//! type ([`super::knobs::conforms`]).

use std::fmt;

use super::document::ResolvedFerrumConfig;
use super::knobs::{conforms, Registry};
use super::runtime::{parse_bool_env_value, parse_usize_env_value};

/// One value Ferrum's runtime reads differently from how it looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisreadValue {
    /// The knob.
    pub key: String,
    /// The value exactly as the engine receives it.
    pub value: String,
    /// What the engine will do with it instead, and why.
    pub explanation: String,
    /// Where the value came from (`--set`, `p.toml:12 ([env])`, …), when the user gave it.
    pub origin: Option<String>,
}

impl fmt::Display for MisreadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.key, self.value)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        write!(f, ": {}", self.explanation)
    }
}

/// How Ferrum's model code reads a knob (from `qwen3_moe_runtime_env.rs` and
/// `vllm_paged_attn.rs`).
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// On only for exactly `1`.
    ExactlyOne,
    /// On unless exactly `0`.
    UnlessZero,
    /// On only for `1`, `true`, `TRUE`, `on`, `ON` (`trueish`).
    Trueish,
    /// Off for `0`, `false`, `FALSE`, `off`, `OFF`; on for anything else.
    OffSpellingsElseOn,
    /// On whenever the variable is set, whatever its value.
    Presence,
    /// `value.parse::<usize>()` without trimming, kept when positive; else the default
    /// (`None`: the knob is ignored).
    PositiveUsize(Option<usize>),
}

/// Every knob the specification's model code reads, with its reader and what it controls.
const RUNTIME_READERS: &[(&str, Reader, &str)] = &[
    (
        "FERRUM_DECODE_OP_PROFILE",
        Reader::Presence,
        "decode-op profiling",
    ),
    (
        "FERRUM_FA2_DIRECT_FFI",
        Reader::OffSpellingsElseOn,
        "the direct FA2 FFI shim",
    ),
    ("FERRUM_FA2_SOURCE", Reader::Trueish, "source-linked FA2"),
    (
        "FERRUM_FA_LAYOUT_VARLEN",
        Reader::ExactlyOne,
        "the FA varlen layout",
    ),
    (
        "FERRUM_GREEDY_ARGMAX",
        Reader::ExactlyOne,
        "GPU greedy argmax",
    ),
    (
        "FERRUM_KV_CAPACITY",
        Reader::PositiveUsize(None),
        "the per-sequence KV capacity",
    ),
    (
        "FERRUM_MAX_BATCHED_TOKENS",
        Reader::PositiveUsize(Some(2048)),
        "the initial scratch size in tokens",
    ),
    (
        "FERRUM_METAL_PAGED_KV",
        Reader::UnlessZero,
        "Metal paged KV",
    ),
    ("FERRUM_MOE_BATCHED", Reader::UnlessZero, "batched MoE"),
    (
        "FERRUM_MOE_BATCHED_DECODE",
        Reader::UnlessZero,
        "batched MoE decode",
    ),
    (
        "FERRUM_MOE_BATCH_THRESHOLD",
        Reader::PositiveUsize(Some(4)),
        "the batched-decode threshold",
    ),
    ("FERRUM_MOE_BUCKETED", Reader::UnlessZero, "bucketed MoE"),
    ("FERRUM_MOE_GRAPH", Reader::ExactlyOne, "MoE graph capture"),
    (
        "FERRUM_MOE_HOST_ROUTE",
        Reader::ExactlyOne,
        "host MoE routing",
    ),
    (
        "FERRUM_MOE_PREFILL_THRESHOLD",
        Reader::PositiveUsize(Some(32)),
        "the grouped-prefill threshold",
    ),
    ("FERRUM_MOE_PROFILE", Reader::Presence, "MoE profiling"),
    (
        "FERRUM_PAGED_MAX_SEQS",
        Reader::PositiveUsize(Some(32)),
        "the paged-KV pool size in sequences",
    ),
    (
        "FERRUM_PREFIX_CACHE",
        Reader::ExactlyOne,
        "the prefix cache",
    ),
    (
        "FERRUM_QWEN_UNIFIED_PREFILL",
        Reader::UnlessZero,
        "unified prefill",
    ),
    (
        "FERRUM_QWEN_UNIFIED_TRACE",
        Reader::ExactlyOne,
        "unified-prefill tracing",
    ),
    ("FERRUM_RBD_PROF", Reader::Presence, "RBD profiling"),
    (
        "FERRUM_UNIFIED_GREEDY_ARGMAX",
        Reader::UnlessZero,
        "unified greedy argmax",
    ),
    (
        "FERRUM_UNIFIED_LAYER_PROF",
        Reader::UnlessZero,
        "unified layer profiling",
    ),
    (
        "FERRUM_UNIFIED_LAYER_PROF_EVERY",
        Reader::PositiveUsize(Some(16)),
        "the layer-profiling period",
    ),
    (
        "FERRUM_UNIFIED_LAYER_PROF_MAX_M",
        Reader::PositiveUsize(None),
        "the layer-profiling token limit",
    ),
    (
        "FERRUM_UNIFIED_LAYER_PROF_MIN_SEQS",
        Reader::PositiveUsize(None),
        "the layer-profiling sequence minimum",
    ),
    (
        "FERRUM_USE_VLLM_PAGED_ATTN",
        Reader::UnlessZero,
        "vLLM paged attention",
    ),
    (
        "FERRUM_VLLM_DECODE_VARLEN",
        Reader::ExactlyOne,
        "vLLM varlen decode",
    ),
    (
        "FERRUM_VLLM_MOE",
        Reader::ExactlyOne,
        "the graph-clean vLLM MoE path",
    ),
    (
        "FERRUM_VLLM_PAGED_ATTN_V1_SHORT",
        Reader::UnlessZero,
        "short-context v1 decode",
    ),
    (
        "FERRUM_VLLM_VARLEN_TILED_Q4",
        Reader::ExactlyOne,
        "tiled q4 varlen",
    ),
];

/// Knobs Ferrum's resolver or its effective-config document reads itself: the resolver is
/// their validator, so they get no registry-type check (their runtime misreadings, if any, are
/// in [`RUNTIME_READERS`] or checked explicitly).
const RESOLVER_READ: &[&str] = &[
    "FERRUM_ACTIVE_DECODE_PREFILL_CHUNK",
    "FERRUM_CUDA_DEVICE_COUNT",
    "FERRUM_DTYPE",
    "FERRUM_FA2_DIRECT_FFI_SHIM",
    "FERRUM_KV_DTYPE",
    "FERRUM_KV_MAX_BLOCKS",
    "FERRUM_LAYER_SPLIT_PIPELINE_MODE",
    "FERRUM_MAX_MODEL_LEN",
    "FERRUM_MOE_DEVICE_ROUTE",
    "FERRUM_REQUESTED_GPU_DEVICES",
    "FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE",
    "FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE",
    "FERRUM_SELECTED_DISTRIBUTED_STRATEGY",
    "FERRUM_SELECTED_GPU_DEVICES",
    "FERRUM_SELECTED_LAYER_SPLIT_PLAN",
    "FERRUM_SELECTED_LAYER_SPLIT_STAGES",
    "FERRUM_VLLM_MOE_PAIR_IDS",
];

/// Every value in `resolved`'s entries that Ferrum's runtime (or its effective-config document)
/// reads differently from how it looks, in key order.
pub fn misread_values(resolved: &ResolvedFerrumConfig) -> Vec<MisreadValue> {
    let registry = Registry::global();
    let mut found = Vec::new();
    for entry in &resolved.runtime_config.entries {
        let key = entry.key.as_str();
        let value = entry.effective_value.as_str();
        let explanation = if let Some((_, reader, what)) =
            RUNTIME_READERS.iter().find(|(name, _, _)| *name == key)
        {
            runtime_misreading(key, value, *reader, what, resolved)
        } else if RESOLVER_READ.contains(&key) {
            document_misreading(key, value, resolved)
        } else {
            registry
                .lookup(key)
                .filter(|knob| !conforms(&knob.kind, value))
                .map(|knob| {
                    format!(
                        "not a valid {} value ({}); ferrum-bench's specification does not include the code that reads it, so Ferrum will most likely use its default ({})",
                        knob.kind.label(),
                        knob.kind.expected(),
                        knob.default
                    )
                })
        };
        if let Some(explanation) = explanation {
            found.push(MisreadValue {
                key: key.to_string(),
                value: value.to_string(),
                explanation,
                origin: None,
            });
        }
    }
    found
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn runtime_misreading(
    key: &str,
    value: &str,
    reader: Reader,
    what: &str,
    resolved: &ResolvedFerrumConfig,
) -> Option<String> {
    let runtime_bool = |rule: &str, on: bool| -> Option<String> {
        // How the value looks: Ferrum's own boolean parser (the one its resolver uses).
        match parse_bool_env_value(value) {
            Ok(looks) if looks == on => None,
            Ok(looks) => Some(format!(
                "Ferrum's boolean parser reads it as {}, but its model code turns {what} on {rule}, so the engine will run with it {}",
                on_off(looks),
                on_off(on)
            )),
            Err(_) => Some(format!(
                "not a boolean; Ferrum's model code turns {what} on {rule}, so the engine will run with it {}",
                on_off(on)
            )),
        }
    };
    match reader {
        Reader::ExactlyOne => runtime_bool("only for exactly `1`", value == "1"),
        Reader::UnlessZero => runtime_bool("unless the value is exactly `0`", value != "0"),
        Reader::Trueish => runtime_bool(
            "only for `1`, `true`, `TRUE`, `on` or `ON`",
            matches!(value, "1" | "true" | "TRUE" | "on" | "ON"),
        ),
        Reader::OffSpellingsElseOn => runtime_bool(
            "unless the value is `0`, `false`, `FALSE`, `off` or `OFF`",
            !matches!(value, "0" | "false" | "FALSE" | "off" | "OFF"),
        ),
        Reader::Presence => runtime_bool("whenever it is set, whatever the value", true),
        Reader::PositiveUsize(default) => {
            let runtime = value.parse::<usize>().ok().filter(|n| *n > 0);
            let looks = parse_usize_env_value(value).ok();
            if runtime.is_some() && runtime == looks {
                return None;
            }
            let reading = match looks {
                Some(n) => format!("Ferrum's integer parser reads it as {n}, but"),
                None => "not a non-negative integer, and".to_string(),
            };
            let instead = match (key, default) {
                ("FERRUM_KV_CAPACITY", _) => {
                    let fallback = resolved
                        .model_capabilities
                        .max_context_len
                        .map(|max| format!(" = {}", max.min(512)))
                        .unwrap_or_default();
                    format!("its default KV capacity min(model max context, 512){fallback}")
                }
                (_, Some(default)) => format!("{default} (its default)"),
                (_, None) => "no value at all (the setting is ignored)".to_string(),
            };
            Some(format!(
                "{reading} Ferrum's model code reads {what} only as a positive integer written without spaces, so the engine will use {instead}"
            ))
        }
    }
}

/// Values Ferrum's resolver accepts but its effective-config document or scheduler reads raw.
fn document_misreading(key: &str, value: &str, resolved: &ResolvedFerrumConfig) -> Option<String> {
    let doc = || resolved.effective_config_document();
    match key {
        "FERRUM_LAYER_SPLIT_PIPELINE_MODE" => {
            let canonical = value.trim().to_ascii_lowercase();
            if canonical == value {
                return None;
            }
            let doc = doc();
            if doc["selected_layer_split_plan"].is_null() {
                return None;
            }
            Some(format!(
                "Ferrum's resolver accepts it as `{canonical}` (case-insensitively), but its effective config compares the raw string with `overlapped`: selected_pipeline_mode is {} and selected_microbatch_size {}{}",
                doc["selected_pipeline_mode"],
                doc["selected_microbatch_size"],
                if canonical == "overlapped" {
                    " (the whole batch, not halved as for `overlapped`), so the two stages get one microbatch and cannot overlap"
                } else {
                    ""
                }
            ))
        }
        "FERRUM_ACTIVE_DECODE_PREFILL_CHUNK" => {
            // Ferrum rejects a chunk of 0 by testing the raw decision string for a `:0` suffix,
            // so `00`, ` 0` or `+0` pass as a chunk that is in fact 0 ("0 disables").
            (parse_usize_env_value(value) == Ok(0) && value != "0").then(|| {
                format!(
                    "Ferrum's resolver rejects a chunk of 0 only when it is written exactly `0`; this value is 0, which Ferrum's scheduler treats as disabled, so the engine will run without chunking although the decision reads `active_decode_prefill_chunk:{value}`"
                )
            })
        }
        "FERRUM_CUDA_DEVICE_COUNT" => {
            value.parse::<usize>().is_err().then(|| {
                format!(
                    "Ferrum's effective config reads it as an integer without trimming and ignores it, reporting cuda_device_count {}",
                    doc()["cuda_device_count"]
                )
            })
        }
        "FERRUM_REQUESTED_GPU_DEVICES" | "FERRUM_SELECTED_GPU_DEVICES" => {
            let valid = value
                .split(',')
                .all(|part| !part.trim().is_empty() && part.trim().parse::<usize>().is_ok());
            (!valid).then(|| {
                let field = key.trim_start_matches("FERRUM_").to_ascii_lowercase();
                format!(
                    "not a comma-separated list of device numbers; Ferrum's effective config ignores it and reports {field} {}",
                    doc()[field.as_str()]
                )
            })
        }
        "FERRUM_SELECTED_LAYER_SPLIT_STAGES" => serde_json::from_str::<serde_json::Value>(value)
            .is_err()
            .then(|| {
                "not JSON; Ferrum's effective config ignores it (selected_layer_split_stages is null)"
                    .to_string()
            }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
