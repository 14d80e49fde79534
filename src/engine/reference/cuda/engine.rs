//! The reference engine on CUDA: the shared scheduler (`scheduler::run`, KV bookkeeping,
//! counters, `steps.jsonl`) driving a [`CudaExecutor`], after a memory check against the
//! device's free VRAM.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::json;

use super::executor::CudaExecutor;
use super::gpu::Gpu;
use super::memory::MemoryPlan;
use super::plan::check_supported;
use crate::engine::reference::executor::Sampling;
use crate::engine::reference::knobs::{self, EngineKnobs};
use crate::engine::reference::layer_split::panic_message;
use crate::engine::reference::scheduler::{self, Limits};
use crate::engine::reference::{kv_limits, EngineSpec};
use crate::engine::{
    Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, LoadSpec, RunOptions, RunOutput,
};

/// Tokens a call may carry at most: a step's decode tokens plus its prefill budget.
pub fn max_call_rows(knobs: &EngineKnobs) -> usize {
    knobs.max_batched_tokens.max(knobs.max_sequences).max(1)
}

/// The reference engine with its forward on device 0.
pub struct CudaEngine {
    spec: EngineSpec,
    knobs: EngineKnobs,
    limits: Limits,
    exec: CudaExecutor,
    gpu_name: String,
    arch: String,
    memory: MemoryPlan,
}

impl std::fmt::Debug for CudaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaEngine")
            .field("spec", &self.spec)
            .field("gpu", &self.gpu_name)
            .finish_non_exhaustive()
    }
}

impl CudaEngine {
    /// Opens the device, checks the memory plan against its free VRAM, generates the weights
    /// there and allocates the KV pools and workspace.
    pub fn new(spec: &EngineSpec, knobs: &EngineKnobs) -> Result<CudaEngine, EngineError> {
        spec.validate()?;
        if knobs.layer_split.is_some() {
            return Err(EngineError::Config(
                "a two-stage layer split (selected_layer_split_plan) is not supported by the CUDA backend yet (it runs every layer on one device): use [engine] device = \"cpu\" for split plans".to_string(),
            ));
        }
        let limits = kv_limits(spec, knobs)?;
        check_supported(spec, limits.pool_blocks).map_err(EngineError::Config)?;
        let rows = max_call_rows(knobs);
        let memory = MemoryPlan::new(spec, limits.pool_blocks, rows);
        let gpu = Gpu::open(0)?;
        let (free, _total) = gpu.dev.memory().map_err(EngineError::Fault)?;
        memory
            .check(spec, free)
            .map_err(|e| EngineError::Config(format!("CUDA device 0: {e}")))?;
        let probe = crate::hardware::current().map_err(EngineError::Fault)?;
        let gpu_name = probe
            .gpus
            .first()
            .map(|g| g.name.clone())
            .unwrap_or_default();
        let arch = gpu.dev.arch.clone();
        let sampling = Sampling::from_readback_path(&knobs.sampling_readback_path);
        let exec = CudaExecutor::new(gpu, spec, limits.pool_blocks, rows, sampling)?;
        Ok(CudaEngine {
            spec: spec.clone(),
            knobs: knobs.clone(),
            limits,
            exec,
            gpu_name,
            arch,
            memory,
        })
    }
}

impl Engine for CudaEngine {
    fn info(&self) -> EngineInfo {
        let s = &self.spec;
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
        put("dtype", json!(s.dtype.name()));
        put("device", json!(s.device.name()));
        put("gpu", json!(self.gpu_name));
        put("gpu_arch", json!(self.arch));
        put("weight_bytes", json!(self.exec.weight_bytes()));
        put("device_kv_bytes", json!(self.memory.kv));
        put("device_workspace_bytes", json!(self.memory.workspace));
        put("kv_capacity_tokens", json!(self.limits.kv_capacity));
        put("kv_blocks_per_sequence", json!(self.limits.blocks_per_seq));
        put("kv_pool_blocks", json!(self.limits.pool_blocks));
        put("layer_split_boundary", json!(null));
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
        let CudaEngine {
            spec,
            knobs,
            limits,
            exec,
            ..
        } = self;
        let vocab = spec.vocab_size;
        // The same clock as the CPU engine: wall time, or the modelled clock of the counted work
        // (its constants are the CPU's; on a GPU `wall` is the one that measures the device).
        let clock = scheduler::clock::Clock::start(
            spec,
            &spec.clock,
            scheduler::clock::noise_stream(options.repeat, options.phase),
        );
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            scheduler::run(
                knobs, *limits, vocab, exec, requests, load, options, clock, progress,
            )
        }));
        match outcome {
            Ok(result) => result,
            Err(p) => Err(EngineError::Fault(format!(
                "panic in reference engine step (CUDA): {}",
                panic_message(&*p)
            ))),
        }
    }
}
