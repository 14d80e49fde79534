//! The in-process reference engine: Ferrum's serving mechanics (continuous batching, paged KV
//! with per-sequence reservation, batched vs per-item MoE decode, unified vs serial prefill,
//! two-stage layer split) over a CPU-sized Qwen3-MoE or Qwen2 with seeded synthetic int4 weights.
//!
//! Wiring: [`EngineSpec::resolve`] (the `[engine]` table + architecture),
//! [`EngineKnobs::from_effective_config`] (the resolved configuration), then [`start_reference`].

pub mod cuda;
pub mod executor;
pub mod int4;
pub mod knobs;
pub mod kv;
pub mod layer_split;
pub mod model;
pub mod scheduler;
pub mod shape;
pub mod spec;
pub mod weights;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::json;

pub use knobs::EngineKnobs;
pub use spec::{EngineSpec, EngineTable};

use crate::engine::{
    Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, LoadSpec, RunOptions, RunOutput,
};
use knobs::PipelineMode;
use kv::{LayerKv, BLOCK_SIZE};
use layer_split::{panic_message, SplitConfig};
use model::Model;
use scheduler::Limits;

/// Starts a reference engine for `spec` under `knobs`: on the CUDA backend when `spec.device`
/// is `cuda`, else on the CPU.
pub fn start_reference(
    spec: &EngineSpec,
    knobs: &EngineKnobs,
) -> Result<Box<dyn Engine>, EngineError> {
    if spec.device == spec::Device::Cuda {
        return cuda::start(spec, knobs);
    }
    Ok(Box::new(ReferenceEngine::new(spec, knobs)?))
}

/// The KV limits both backends size their pools with, as Ferrum's `ensure_kv` does: per-sequence
/// capacity, blocks reserved per sequence, and the pool (`FERRUM_PAGED_MAX_SEQS` reservations,
/// capped by `kv_block_count`).
pub fn kv_limits(spec: &EngineSpec, knobs: &EngineKnobs) -> Result<Limits, EngineError> {
    let model_max = knobs.model_max_context.unwrap_or(spec.max_context_len);
    let kv_capacity = knobs.kv_capacity(model_max);
    let blocks_per_seq = kv_capacity.div_ceil(BLOCK_SIZE);
    let sized = knobs.paged_max_seqs.saturating_mul(blocks_per_seq);
    let pool_blocks = knobs.kv_block_count.map_or(sized, |cap| sized.min(cap));
    if pool_blocks < blocks_per_seq {
        return Err(EngineError::Config(format!(
            "KV pool of {pool_blocks} blocks (kv_block_count) cannot hold one sequence's reservation of {blocks_per_seq} blocks (FERRUM_KV_CAPACITY = {kv_capacity} tokens): raise FERRUM_KV_MAX_BLOCKS or lower FERRUM_KV_CAPACITY"
        )));
    }
    Ok(Limits {
        kv_capacity,
        blocks_per_seq,
        pool_blocks,
    })
}

/// The reference engine: model, KV pools and worker threads.
pub struct ReferenceEngine {
    model: Model,
    knobs: EngineKnobs,
    kv: Vec<LayerKv>,
    limits: Limits,
    split: Option<SplitConfig>,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for ReferenceEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceEngine")
            .field("spec", &self.model.spec)
            .field("knobs", &self.knobs)
            .finish_non_exhaustive()
    }
}

impl ReferenceEngine {
    /// Generates the weights, sizes the KV pool as Ferrum's `ensure_kv` does and starts the
    /// worker pool.
    pub fn new(spec: &EngineSpec, knobs: &EngineKnobs) -> Result<ReferenceEngine, EngineError> {
        spec.validate()?;
        let limits = kv_limits(spec, knobs)?;
        let pool_blocks = limits.pool_blocks;
        // Estimate before allocating: an oversized pool is a clear error, not an abort.
        spec.check_memory(spec.kv_bytes(pool_blocks))?;
        let split = match &knobs.layer_split {
            Some(_) if spec.num_layers < 2 => {
                return Err(EngineError::Config(format!(
                    "a two-stage layer split needs at least 2 layers, [engine] num_layers is {}",
                    spec.num_layers
                )))
            }
            Some(plan) => Some(SplitConfig {
                boundary: plan.boundary(spec.num_layers),
                mode: if knobs.pipeline_mode == PipelineMode::Overlapped {
                    PipelineMode::Overlapped
                } else {
                    PipelineMode::Batch
                },
                microbatch: knobs.microbatch_size.max(1),
            }),
            None => None,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(spec.threads)
            .thread_name(|i| format!("ferrum-ref-{i}"))
            .build()
            .map_err(|e| {
                EngineError::Fault(format!("cannot start {} worker threads: {e}", spec.threads))
            })?;
        let model = pool.install(|| Model::new(spec));
        let width = spec.num_kv_heads * spec.head_dim;
        let kv = (0..spec.num_layers)
            .map(|_| LayerKv::new(pool_blocks, width, spec.dtype))
            .collect();
        Ok(ReferenceEngine {
            model,
            knobs: knobs.clone(),
            kv,
            limits,
            split,
            pool,
        })
    }

    /// The instantiated model.
    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl Engine for ReferenceEngine {
    fn info(&self) -> EngineInfo {
        let s = &self.model.spec;
        let mut d = BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| {
            d.insert(k.to_string(), v);
        };
        put("architecture", json!(s.architecture.name()));
        put("hidden_size", json!(s.hidden_size));
        put("num_layers", json!(s.num_layers));
        put("num_heads", json!(s.num_heads));
        put("num_kv_heads", json!(s.num_kv_heads));
        put("head_dim", json!(s.head_dim));
        put("num_experts", json!(s.num_experts));
        put("experts_per_token", json!(s.experts_per_token));
        put("moe_intermediate_size", json!(s.moe_intermediate_size));
        put("intermediate_size", json!(s.intermediate_size));
        put("vocab_size", json!(s.vocab_size));
        put("quant_group_size", json!(s.quant_group_size));
        put("weight_seed", json!(s.weight_seed));
        put("threads", json!(s.threads));
        put("dtype", json!(s.dtype.name()));
        put("device", json!(s.device.name()));
        put("weight_bytes", json!(self.model.weight_bytes()));
        put("kv_capacity_tokens", json!(self.limits.kv_capacity));
        put("kv_blocks_per_sequence", json!(self.limits.blocks_per_seq));
        put("kv_pool_blocks", json!(self.limits.pool_blocks));
        put(
            "layer_split_boundary",
            json!(self.split.map(|c| c.boundary)),
        );
        put(
            "pipeline_mode",
            json!(format!("{:?}", self.knobs.pipeline_mode).to_lowercase()),
        );
        put(
            "attention_decode_backend",
            json!(self.knobs.attention_decode_backend),
        );
        put(
            "sampling_readback_path",
            json!(self.knobs.sampling_readback_path),
        );
        put(
            "scheduler_admission_policy",
            json!(format!("{:?}", self.knobs.admission)),
        );
        put("modelled_knobs", json!(knobs::MODELLED_KNOBS));
        put("clock", s.clock.details());
        if let Some(path) = &s.shape_from {
            put("shape_from", json!(path.display().to_string()));
        }
        EngineInfo {
            kind: "reference".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            details: d,
        }
    }

    fn run(
        &mut self,
        requests: &[EngineRequest],
        load: &LoadSpec,
        options: &RunOptions,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError> {
        let ReferenceEngine {
            model,
            knobs,
            kv,
            limits,
            split,
            pool,
        } = self;
        let vocab = model.spec.vocab_size;
        let clock = scheduler::clock::Clock::start(
            &model.spec,
            &model.spec.clock,
            scheduler::clock::noise_stream(options.repeat, options.phase),
        );
        // A panic inside a model step must surface as an engine fault, not abort the process.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let sampling = executor::Sampling::from_readback_path(&knobs.sampling_readback_path);
            layer_split::with_executor(model, kv, *split, pool, sampling, |exec| {
                scheduler::run(
                    knobs, *limits, vocab, exec, requests, load, options, clock, progress,
                )
            })
        }));
        match outcome {
            Ok(result) => result,
            Err(p) => Err(EngineError::Fault(format!(
                "panic in reference engine step: {}",
                panic_message(&*p)
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
