//! Knob values the reference engine acts on, read from Ferrum's effective-config document.
//!
//! Entries are parsed exactly as Ferrum's Qwen3-MoE runtime reads them (see
//! `qwen3_moe_runtime_env.rs`): booleans that default on are off only for the exact value `0`,
//! `FERRUM_PREFIX_CACHE` is on only for exactly `1`, and integer knobs are "positive usize, else
//! the default" — so `FERRUM_MOE_BATCH_THRESHOLD=0` silently means 4, as in Ferrum. Resolver
//! decisions (`kv_block_count`, `max_sequences`, `max_batched_tokens`, `max_model_len`,
//! `scheduler_admission_policy`, attention/sampling) and the `selected_*` layer-split fields are
//! taken as resolved. Every other knob is resolved and recorded by the config layer but does not
//! change the reference engine's work; [`MODELLED_KNOBS`] lists the ones that do.

use std::collections::HashMap;

use serde_json::Value;

use crate::engine::EngineError;

/// `FERRUM_*` entries whose values change what the reference engine does.
pub const MODELLED_KNOBS: &[&str] = &[
    "FERRUM_MOE_BATCHED",
    "FERRUM_MOE_BATCHED_DECODE",
    "FERRUM_MOE_BATCH_THRESHOLD",
    "FERRUM_MOE_PREFILL_THRESHOLD",
    "FERRUM_QWEN_UNIFIED_PREFILL",
    "FERRUM_PREFIX_CACHE",
    "FERRUM_PAGED_MAX_SEQS",
    "FERRUM_KV_CAPACITY",
    "FERRUM_KV_MAX_BLOCKS",
    "FERRUM_MAX_BATCHED_TOKENS",
    "FERRUM_MAX_MODEL_LEN",
    "FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE",
    "FERRUM_SCHED_PREFILL_STEP_CHUNK",
    "FERRUM_ACTIVE_DECODE_PREFILL_CHUNK",
    "FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE",
    "FERRUM_LAYER_SPLIT_PIPELINE_MODE",
    "FERRUM_SELECTED_LAYER_SPLIT_PLAN",
    "FERRUM_GREEDY_ARGMAX",
];

/// Ferrum's default KV capacity when `FERRUM_KV_CAPACITY` is unset.
pub const DEFAULT_KV_CAPACITY: usize = 512;

/// How waiting requests are admitted and how prefill is interleaved with decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionPolicy {
    /// `continuous_default`: admit in arrival order whenever a sequence slot and KV are free;
    /// every step carries all decode tokens plus prefill chunks (arrival order) up to the
    /// batched-token budget.
    ContinuousDefault,
    /// `prefill_first_until_active:N[+prefill_step_chunk:C]`: admission as `continuous_default`,
    /// but while fewer than `N` sequences are decoding and some admitted sequence is still
    /// prefilling, steps are prefill-only (decodes pause) so the batch fills up to `N` before
    /// decoding resumes; each sequence's prefill chunk per step is at most `C` tokens when given.
    /// `N = 0` disables (behaves as `continuous_default`).
    PrefillFirstUntilActive {
        /// Target number of active sequences.
        until: usize,
        /// Per-sequence prefill chunk per step.
        step_chunk: Option<usize>,
    },
    /// `active_decode_prefill_chunk:N`: a request admitted while some sequence is decoding has
    /// its prefill split into chunks of at most `N` tokens per step, so running decodes are not
    /// stalled behind a long prompt; requests admitted into an idle engine prefill at full budget.
    ActiveDecodePrefillChunk(usize),
    /// `prompt_token_estimate`: admission uses the prompt lengths as the work estimate — a
    /// request is admitted only if its prompt, plus all not-yet-prefilled prompt tokens of
    /// admitted sequences, fits this step's prefill budget (the first waiting request is always
    /// admissible into an empty prefill queue), so requests do not hold KV while queued for prefill.
    PromptTokenEstimate,
}

impl AdmissionPolicy {
    /// Parses a `scheduler_admission_policy` decision value.
    pub fn parse(s: &str) -> Result<AdmissionPolicy, EngineError> {
        let bad = || {
            EngineError::Config(format!(
                "unknown scheduler_admission_policy `{s}`: expected continuous_default, prefill_first_until_active:N, active_decode_prefill_chunk:N or prompt_token_estimate"
            ))
        };
        let mut parts = s.split('+');
        let head = parts.next().unwrap_or("");
        let mut step_chunk = None;
        for extra in parts {
            match extra.split_once(':') {
                Some(("prefill_step_chunk", n)) => {
                    step_chunk = Some(n.trim().parse::<usize>().map_err(|_| bad())?)
                }
                _ => return Err(bad()),
            }
        }
        let policy = match head.split_once(':') {
            None if head == "continuous_default" => AdmissionPolicy::ContinuousDefault,
            None if head == "prompt_token_estimate" => AdmissionPolicy::PromptTokenEstimate,
            // The decision carries the knob's value as written; Ferrum's resolver accepted it
            // with its trimming integer parser, and the scheduler reads it the same way.
            Some(("prefill_first_until_active", n)) => {
                let until = n.trim().parse::<usize>().map_err(|_| bad())?;
                if until == 0 {
                    AdmissionPolicy::ContinuousDefault
                } else {
                    AdmissionPolicy::PrefillFirstUntilActive {
                        until,
                        step_chunk: step_chunk.filter(|c| *c > 0),
                    }
                }
            }
            // `00` or ` 0` pass Ferrum's `:0` check; a chunk of 0 disables chunking.
            Some(("active_decode_prefill_chunk", n)) => match n.trim().parse::<usize>() {
                Err(_) => return Err(bad()),
                Ok(0) => AdmissionPolicy::ContinuousDefault,
                Ok(n) => AdmissionPolicy::ActiveDecodePrefillChunk(n),
            },
            _ => return Err(bad()),
        };
        Ok(policy)
    }
}

/// Layer-split pipeline mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineMode {
    /// No split: one stage.
    Sequential,
    /// Whole forward call through stage 0, then stage 1.
    Batch,
    /// Microbatches pipelined: stage 0 works on microbatch i+1 while stage 1 does i.
    Overlapped,
}

/// A two-stage layer split, as fractions of the real model's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSplitPlan {
    /// The plan string, e.g. `stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79`.
    pub plan: String,
    /// Layers of the real model in stage 0.
    pub stage0_layers: usize,
    /// Total layers of the real model.
    pub total_layers: usize,
}

impl LayerSplitPlan {
    /// Parses a plan string; the reference engine models exactly two stages.
    pub fn parse(plan: &str) -> Result<LayerSplitPlan, EngineError> {
        let bad = |why: &str| {
            EngineError::Config(format!("invalid selected_layer_split_plan `{plan}`: {why}"))
        };
        let mut ranges = Vec::new();
        for stage in plan.split(';').filter(|s| !s.trim().is_empty()) {
            let layers = stage
                .split(':')
                .find_map(|p| p.strip_prefix("layers="))
                .ok_or_else(|| bad("a stage lacks `layers=A-B`"))?;
            let (a, b) = layers
                .split_once('-')
                .ok_or_else(|| bad("layers must be `A-B`"))?;
            let a: usize = a
                .trim()
                .parse()
                .map_err(|_| bad("layer bound is not an integer"))?;
            let b: usize = b
                .trim()
                .parse()
                .map_err(|_| bad("layer bound is not an integer"))?;
            if b < a {
                return Err(bad("layer range is reversed"));
            }
            ranges.push((a, b));
        }
        if ranges.len() != 2 {
            return Err(bad("the reference engine runs exactly two stages"));
        }
        if ranges[0].0 != 0 || ranges[1].0 != ranges[0].1 + 1 {
            return Err(bad("stages must cover consecutive layers starting at 0"));
        }
        Ok(LayerSplitPlan {
            plan: plan.to_string(),
            stage0_layers: ranges[0].1 + 1,
            total_layers: ranges[1].1 + 1,
        })
    }

    /// First engine layer of stage 1 for an engine with `num_layers` layers: the real split
    /// point scaled to the CPU-sized layer count, keeping at least one layer per stage.
    pub fn boundary(&self, num_layers: usize) -> usize {
        let scaled = (self.stage0_layers * num_layers + self.total_layers / 2) / self.total_layers;
        scaled.clamp(1, num_layers.saturating_sub(1).max(1))
    }
}

/// Everything the reference engine takes from the resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineKnobs {
    /// `FERRUM_MOE_BATCHED` (on unless `0`).
    pub moe_batched: bool,
    /// `FERRUM_MOE_BATCHED_DECODE` (on unless `0`).
    pub moe_batched_decode: bool,
    /// `FERRUM_MOE_BATCH_THRESHOLD` (positive, else 4): decode batches of at least this many
    /// sequences run batched.
    pub moe_batch_threshold: usize,
    /// `FERRUM_MOE_PREFILL_THRESHOLD` (positive, else 32): prefill forwards of at least this many
    /// tokens group MoE tokens by expert; smaller ones run experts per token.
    pub moe_prefill_threshold: usize,
    /// `FERRUM_QWEN_UNIFIED_PREFILL` (on unless `0`): one forward for all of a step's items.
    pub qwen_unified_prefill: bool,
    /// `FERRUM_PREFIX_CACHE` (on only for `1`).
    pub prefix_cache: bool,
    /// `FERRUM_PAGED_MAX_SEQS` (positive, else 32): sequences the paged pool is sized for.
    pub paged_max_seqs: usize,
    /// `FERRUM_KV_CAPACITY` when positive.
    pub kv_capacity_override: Option<usize>,
    /// `model_capabilities.max_context_len` when the document has it.
    pub model_max_context: Option<usize>,
    /// `kv_block_count` decision: cap on the paged pool.
    pub kv_block_count: Option<usize>,
    /// `max_sequences` decision: sequences running at once.
    pub max_sequences: usize,
    /// `max_batched_tokens` decision: tokens per step.
    pub max_batched_tokens: usize,
    /// `max_model_len` decision: longer requests are rejected.
    pub max_model_len: Option<usize>,
    /// `scheduler_admission_policy` decision.
    pub admission: AdmissionPolicy,
    /// `attention_decode_backend` decision (recorded; the CPU engine runs paged decode attention).
    pub attention_decode_backend: String,
    /// `sampling_readback_path` decision: `logits_readback` copies each logits row out before the
    /// argmax; `gpu_greedy_argmax` takes the argmax in place.
    pub sampling_readback_path: String,
    /// `selected_layer_split_plan`.
    pub layer_split: Option<LayerSplitPlan>,
    /// `selected_pipeline_mode`.
    pub pipeline_mode: PipelineMode,
    /// `selected_microbatch_size`: sequences per microbatch in overlapped mode.
    pub microbatch_size: usize,
}

impl Default for EngineKnobs {
    fn default() -> Self {
        EngineKnobs::from_effective_config(&serde_json::json!({})).expect("empty document is valid")
    }
}

impl EngineKnobs {
    /// Reads the knobs from an effective-config document.
    pub fn from_effective_config(doc: &Value) -> Result<EngineKnobs, EngineError> {
        let entries: HashMap<&str, &str> = doc
            .get("entries")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some((e.get("key")?.as_str()?, e.get("effective_value")?.as_str()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let decisions: HashMap<&str, &str> = doc
            .get("decisions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| {
                        Some((d.get("selection")?.as_str()?, d.get("selected")?.as_str()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let on_unless_zero = |k: &str| entries.get(k) != Some(&"0");
        let positive = |k: &str| {
            entries
                .get(k)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|v| *v > 0)
        };
        let decision_usize = |sel: &str| -> Result<Option<usize>, EngineError> {
            decisions
                .get(sel)
                .map(|v| {
                    v.parse::<usize>().map_err(|_| {
                        EngineError::Config(format!("decision `{sel}` has non-numeric value `{v}`"))
                    })
                })
                .transpose()
        };
        let paged_max_seqs = positive("FERRUM_PAGED_MAX_SEQS").unwrap_or(32);
        let max_sequences = decision_usize("max_sequences")?.unwrap_or(paged_max_seqs);
        let max_batched_tokens = decision_usize("max_batched_tokens")?
            .or_else(|| positive("FERRUM_MAX_BATCHED_TOKENS"))
            .unwrap_or(2048);
        if max_sequences == 0 || max_batched_tokens == 0 {
            return Err(EngineError::Config(
                "max_sequences and max_batched_tokens must be greater than 0".to_string(),
            ));
        }
        let admission = match decisions.get("scheduler_admission_policy") {
            Some(s) => AdmissionPolicy::parse(s)?,
            None => AdmissionPolicy::ContinuousDefault,
        };
        let layer_split = match doc.get("selected_layer_split_plan") {
            Some(Value::String(p)) => Some(LayerSplitPlan::parse(p)?),
            _ => None,
        };
        // Ferrum validates the mode case-insensitively but copies the raw string into
        // `selected_pipeline_mode` (`Overlapped` keeps the whole batch as one microbatch, which
        // `selected_microbatch_size` already says); read the mode as Ferrum validated it.
        let mode = doc
            .get("selected_pipeline_mode")
            .and_then(Value::as_str)
            .map(|m| m.trim().to_ascii_lowercase());
        let pipeline_mode = match mode.as_deref() {
            None | Some("sequential") => PipelineMode::Sequential,
            Some("batch") => PipelineMode::Batch,
            Some("overlapped") => PipelineMode::Overlapped,
            Some(other) => {
                return Err(EngineError::Config(format!(
                    "invalid selected_pipeline_mode `{other}`: expected sequential, batch or overlapped"
                )))
            }
        };
        let pipeline_mode = match (&layer_split, pipeline_mode) {
            (None, _) => PipelineMode::Sequential,
            (Some(_), PipelineMode::Sequential) => PipelineMode::Batch,
            (Some(_), m) => m,
        };
        let microbatch_size = doc
            .get("selected_microbatch_size")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .filter(|v| *v > 0)
            .unwrap_or(match pipeline_mode {
                PipelineMode::Overlapped => max_sequences.div_ceil(2).max(1),
                _ => max_sequences,
            });
        let string_decision =
            |sel: &str, default: &str| decisions.get(sel).unwrap_or(&default).to_string();
        Ok(EngineKnobs {
            moe_batched: on_unless_zero("FERRUM_MOE_BATCHED"),
            moe_batched_decode: on_unless_zero("FERRUM_MOE_BATCHED_DECODE"),
            moe_batch_threshold: positive("FERRUM_MOE_BATCH_THRESHOLD").unwrap_or(4),
            moe_prefill_threshold: positive("FERRUM_MOE_PREFILL_THRESHOLD").unwrap_or(32),
            qwen_unified_prefill: on_unless_zero("FERRUM_QWEN_UNIFIED_PREFILL"),
            prefix_cache: entries
                .get("FERRUM_PREFIX_CACHE")
                .is_some_and(|v| *v == "1"),
            paged_max_seqs,
            kv_capacity_override: positive("FERRUM_KV_CAPACITY"),
            model_max_context: doc
                .pointer("/model_capabilities/max_context_len")
                .and_then(Value::as_u64)
                .map(|v| v as usize),
            kv_block_count: decision_usize("kv_block_count")?,
            max_sequences,
            max_batched_tokens,
            max_model_len: decision_usize("max_model_len")?,
            admission,
            attention_decode_backend: string_decision(
                "attention_decode_backend",
                "legacy_paged_decode",
            ),
            sampling_readback_path: string_decision("sampling_readback_path", "logits_readback"),
            layer_split,
            pipeline_mode,
            microbatch_size,
        })
    }

    /// Ferrum's `kv_capacity(model_max)`: `FERRUM_KV_CAPACITY` capped by the model's context,
    /// else `min(model_max, 512)`.
    pub fn kv_capacity(&self, model_max: usize) -> usize {
        self.kv_capacity_override
            .map(|cap| cap.min(model_max))
            .unwrap_or_else(|| model_max.min(DEFAULT_KV_CAPACITY))
    }

    /// Whether a pure-decode step of `m` sequences runs the batched path (Ferrum's
    /// `decode_batch` gate plus the batched-decode switch).
    pub fn batched_decode(&self, m: usize) -> bool {
        self.moe_batched && self.moe_batched_decode && m >= self.moe_batch_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(entries: &[(&str, &str)], decisions: &[(&str, &str)]) -> Value {
        json!({
            "entries": entries.iter().map(|(k, v)| json!({"key": k, "effective_value": v, "source": "cli"})).collect::<Vec<_>>(),
            "decisions": decisions.iter().map(|(s, v)| json!({"selection": s, "selected": v})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn parses_entries_exactly_like_ferrum_runtime() {
        let k = EngineKnobs::from_effective_config(&doc(&[], &[])).unwrap();
        assert!(k.moe_batched && k.moe_batched_decode && k.qwen_unified_prefill && !k.prefix_cache);
        assert_eq!(
            (
                k.moe_batch_threshold,
                k.moe_prefill_threshold,
                k.paged_max_seqs
            ),
            (4, 32, 32)
        );
        assert_eq!((k.max_sequences, k.max_batched_tokens), (32, 2048));
        assert_eq!(k.kv_capacity(40960), 512);
        assert_eq!(k.admission, AdmissionPolicy::ContinuousDefault);

        let k = EngineKnobs::from_effective_config(&doc(
            &[
                ("FERRUM_MOE_BATCH_THRESHOLD", "0"),
                ("FERRUM_MOE_PREFILL_THRESHOLD", "abc"),
                ("FERRUM_MOE_BATCHED", "false"),
                ("FERRUM_MOE_BATCHED_DECODE", "0"),
                ("FERRUM_QWEN_UNIFIED_PREFILL", "0"),
                ("FERRUM_PREFIX_CACHE", "true"),
                ("FERRUM_PAGED_MAX_SEQS", "2"),
                ("FERRUM_KV_CAPACITY", "4096"),
            ],
            &[
                ("max_sequences", "2"),
                ("max_batched_tokens", "64"),
                ("kv_block_count", "100"),
            ],
        ))
        .unwrap();
        // `false` is not `0`: still on, as in Ferrum; `true` is not `1`: prefix cache stays off.
        assert!(
            k.moe_batched && !k.moe_batched_decode && !k.qwen_unified_prefill && !k.prefix_cache
        );
        assert_eq!(
            (
                k.moe_batch_threshold,
                k.moe_prefill_threshold,
                k.paged_max_seqs
            ),
            (4, 32, 2)
        );
        assert_eq!((k.kv_capacity(1024), k.kv_capacity(8192)), (1024, 4096));
        assert_eq!(
            (k.max_sequences, k.max_batched_tokens, k.kv_block_count),
            (2, 64, Some(100))
        );
        assert!(!k.batched_decode(8));
    }

    #[test]
    fn parses_admission_policies_and_layer_split() {
        assert_eq!(
            AdmissionPolicy::parse("prefill_first_until_active:32+prefill_step_chunk:64").unwrap(),
            AdmissionPolicy::PrefillFirstUntilActive {
                until: 32,
                step_chunk: Some(64)
            }
        );
        assert_eq!(
            AdmissionPolicy::parse("prefill_first_until_active:0").unwrap(),
            AdmissionPolicy::ContinuousDefault
        );
        assert_eq!(
            AdmissionPolicy::parse("active_decode_prefill_chunk:128").unwrap(),
            AdmissionPolicy::ActiveDecodePrefillChunk(128)
        );
        assert_eq!(
            AdmissionPolicy::parse("prompt_token_estimate").unwrap(),
            AdmissionPolicy::PromptTokenEstimate
        );
        // Values as written by the user reach the decision string unchanged (issue 7).
        assert_eq!(
            AdmissionPolicy::parse("prefill_first_until_active: 010").unwrap(),
            AdmissionPolicy::PrefillFirstUntilActive {
                until: 10,
                step_chunk: None
            }
        );
        assert_eq!(
            AdmissionPolicy::parse("active_decode_prefill_chunk:00").unwrap(),
            AdmissionPolicy::ContinuousDefault
        );
        assert!(AdmissionPolicy::parse("active_decode_prefill_chunk:x").is_err());
        assert!(AdmissionPolicy::parse("fastest")
            .unwrap_err()
            .to_string()
            .contains("unknown scheduler_admission_policy `fastest`"));

        let mut d = doc(&[], &[("max_sequences", "16")]);
        d["selected_layer_split_plan"] =
            json!("stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79");
        d["selected_pipeline_mode"] = json!("overlapped");
        d["selected_microbatch_size"] = json!(8);
        let k = EngineKnobs::from_effective_config(&d).unwrap();
        let mut raw_mode = d.clone();
        raw_mode["selected_pipeline_mode"] = json!("Overlapped");
        raw_mode["selected_microbatch_size"] = json!(16);
        let quirk = EngineKnobs::from_effective_config(&raw_mode).unwrap();
        assert_eq!(
            (quirk.pipeline_mode, quirk.microbatch_size),
            (PipelineMode::Overlapped, 16)
        );
        let plan = k.layer_split.clone().unwrap();
        assert_eq!(
            (plan.stage0_layers, plan.total_layers, plan.boundary(8)),
            (40, 80, 4)
        );
        assert_eq!(
            (k.pipeline_mode, k.microbatch_size),
            (PipelineMode::Overlapped, 8)
        );
        d["selected_layer_split_plan"] = json!("stage0:cuda:0:layers=0-39");
        assert!(EngineKnobs::from_effective_config(&d)
            .unwrap_err()
            .to_string()
            .contains("exactly two stages"));
    }
}
