//! The reference engine on CUDA: the shared scheduler (`scheduler::run`, KV bookkeeping,
//! counters, `steps.jsonl`) driving a [`CudaExecutor`] — or, with a two-stage
//! `selected_layer_split_plan`, two stage executors on their devices through
//! [`super::split::with_split`] — after a memory check of every device against its free VRAM.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::json;

use super::executor::CudaExecutor;
use super::gpu::Gpu;
use super::plan::check_supported;
use super::split::with_split;
use super::stages::{check_memory, map_devices, plan_stages, Stage, HANDOFF};
use crate::engine::reference::executor::Sampling;
use crate::engine::reference::knobs::{self, EngineKnobs, PipelineMode};
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

/// The reference engine on CUDA: one executor holding the whole model, or one per stage of a
/// two-stage layer split, each on its own device (or both on one).
pub struct CudaEngine {
    spec: EngineSpec,
    knobs: EngineKnobs,
    limits: Limits,
    /// One executor per stage, in stage order.
    execs: Vec<CudaExecutor>,
    /// The plan of every stage (device, layers, memory).
    stages: Vec<Stage>,
    /// Device name per stage.
    gpu_names: Vec<String>,
    /// `sm_XX` per stage.
    arches: Vec<String>,
    /// How the devices were chosen.
    device_note: String,
    /// Split pipeline mode (`batch` or `overlapped`) and microbatch size, with a split.
    split: Option<(PipelineMode, usize)>,
}

impl std::fmt::Debug for CudaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaEngine")
            .field("spec", &self.spec)
            .field("gpus", &self.gpu_names)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

impl CudaEngine {
    /// Maps the stages onto devices, checks every device's share against its free VRAM, then
    /// generates each stage's weights on its device and allocates its KV pools and workspace.
    pub fn new(spec: &EngineSpec, knobs: &EngineKnobs) -> Result<CudaEngine, EngineError> {
        spec.validate()?;
        let split_plan = knobs.layer_split.as_ref();
        let limits = kv_limits(spec, knobs)?;
        check_supported(spec, limits.pool_blocks).map_err(EngineError::Config)?;
        let rows = max_call_rows(knobs);
        let probe = crate::hardware::current().map_err(EngineError::Fault)?;
        let stage_count = if split_plan.is_some() { 2 } else { 1 };
        let map = map_devices(spec.cuda_devices.as_deref(), stage_count, probe.gpus.len())
            .map_err(EngineError::Config)?;
        let stages = plan_stages(spec, split_plan, &map.devices, limits.pool_blocks, rows)
            .map_err(EngineError::Config)?;
        // Open each device once and read its free memory before allocating anything.
        let mut free = std::collections::BTreeMap::new();
        let mut gpus: Vec<Option<Gpu>> = Vec::new();
        for st in &stages {
            let gpu = Gpu::open_with_stream(st.device, stage_count > 1)?;
            if let std::collections::btree_map::Entry::Vacant(e) = free.entry(st.device) {
                let (bytes, _total) = gpu.dev.memory().map_err(EngineError::Fault)?;
                e.insert(bytes);
            }
            gpus.push(Some(gpu));
        }
        check_memory(spec, split_plan, &stages, &|d| {
            free.get(&d).copied().unwrap_or(0)
        })
        .map_err(EngineError::Config)?;
        let sampling = Sampling::from_readback_path(&knobs.sampling_readback_path);
        let (mut execs, mut gpu_names, mut arches) = (Vec::new(), Vec::new(), Vec::new());
        for (st, gpu) in stages.iter().zip(gpus.iter_mut()) {
            let gpu = gpu
                .take()
                .ok_or_else(|| EngineError::Fault("device reused".into()))?;
            arches.push(gpu.dev.arch.clone());
            gpu_names.push(
                probe
                    .gpus
                    .get(st.device)
                    .map(|g| g.name.clone())
                    .unwrap_or_default(),
            );
            execs.push(CudaExecutor::new_part(
                gpu,
                spec,
                st.part.clone(),
                limits.pool_blocks,
                rows,
                sampling,
            )?);
        }
        let split = split_plan.map(|_| {
            let mode = match knobs.pipeline_mode {
                PipelineMode::Overlapped => PipelineMode::Overlapped,
                _ => PipelineMode::Batch,
            };
            (mode, knobs.microbatch_size.max(1))
        });
        Ok(CudaEngine {
            spec: spec.clone(),
            knobs: knobs.clone(),
            limits,
            execs,
            stages,
            gpu_names,
            arches,
            device_note: map.note,
            split,
        })
    }

    /// The stage plans (device, layers, memory), in stage order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Per stage: its device, name, layers and bytes, for the engine details.
    fn stage_details(&self) -> serde_json::Value {
        let stages: Vec<serde_json::Value> = self
            .stages
            .iter()
            .zip(&self.execs)
            .enumerate()
            .map(|(i, (st, ex))| {
                json!({
                    "stage": st.index,
                    "device": st.device,
                    "gpu": self.gpu_names.get(i),
                    "gpu_arch": self.arches.get(i),
                    "layers": [st.part.layers.start, st.part.layers.end],
                    "embedding": st.part.embed,
                    "lm_head": st.part.head,
                    "weight_bytes": ex.weight_bytes(),
                    "kv_bytes": st.memory.kv,
                    "workspace_bytes": st.memory.workspace,
                })
            })
            .collect();
        json!(stages)
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
        // The first stage's device (the only one without a split), and totals over stages.
        put("gpu", json!(self.gpu_names.first()));
        put("gpu_arch", json!(self.arches.first()));
        let weights: u64 = self.execs.iter().map(CudaExecutor::weight_bytes).sum();
        put("weight_bytes", json!(weights));
        let total = |f: fn(&Stage) -> u64| self.stages.iter().map(f).sum::<u64>();
        put("device_kv_bytes", json!(total(|s| s.memory.kv)));
        put(
            "device_workspace_bytes",
            json!(total(|s| s.memory.workspace)),
        );
        put("cuda_stages", self.stage_details());
        put("cuda_device_mapping", json!(self.device_note));
        put("kv_capacity_tokens", json!(self.limits.kv_capacity));
        put("kv_blocks_per_sequence", json!(self.limits.blocks_per_seq));
        put("kv_pool_blocks", json!(self.limits.pool_blocks));
        put(
            "pipeline_mode",
            json!(format!("{:?}", self.knobs.pipeline_mode).to_lowercase()),
        );
        match self.split {
            Some((mode, microbatch)) => {
                let b = self.stages.get(1).map(|s| s.part.layers.start);
                put("layer_split_boundary", json!(b));
                if mode == PipelineMode::Overlapped {
                    put("microbatch_size", json!(microbatch));
                }
                put("stage_handoff", json!(HANDOFF));
            }
            None => put("layer_split_boundary", json!(null)),
        }
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
            execs,
            split,
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
        let (split, stage_execs) = (*split, execs.len());
        let outcome = catch_unwind(AssertUnwindSafe(|| match (split, &mut execs[..]) {
            (None, [exec]) => scheduler::run(
                knobs, *limits, vocab, exec, requests, load, options, clock, progress,
            ),
            (Some((mode, microbatch)), [first, last]) => {
                with_split(first, last, mode, microbatch, |exec| {
                    scheduler::run(
                        knobs, *limits, vocab, exec, requests, load, options, clock, progress,
                    )
                })
            }
            _ => Err(EngineError::Fault(format!(
                "{stage_execs} CUDA stage executors for {} stage(s)",
                if split.is_some() { 2 } else { 1 }
            ))),
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
