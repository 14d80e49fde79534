//! The memory check before allocating on the device: weights (from the stream plan), the paged
//! KV pool (fp16 K and V per layer) and activation workspace against free VRAM, with a clear
//! error that says how many layers would fit.

use std::ops::Range;

use super::plan::Workspace;
use super::stream::plan;
use crate::engine::reference::kv::BLOCK_SIZE;
use crate::engine::reference::spec::EngineSpec;

/// Bytes a CUDA engine instance needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// All weights.
    pub weights: u64,
    /// Weights of one decoder layer.
    pub per_layer_weights: u64,
    /// KV pool of one layer.
    pub per_layer_kv: u64,
    /// KV pools of all layers.
    pub kv: u64,
    /// Activations and scratch for `max_batched_tokens` rows.
    pub workspace: u64,
}

/// Memory kept free for the CUDA context, cuBLAS-free kernels' module images and fragmentation.
pub const HEADROOM_BYTES: u64 = 512 << 20;

impl MemoryPlan {
    /// The plan for `spec` with `pool_blocks` KV blocks per layer and up to `max_rows` tokens per
    /// forward call.
    pub fn new(spec: &EngineSpec, pool_blocks: usize, max_rows: usize) -> MemoryPlan {
        MemoryPlan::for_stage(spec, &StagePart::whole(spec), pool_blocks, max_rows)
    }

    /// The plan of one stage of a layer split: the weights of its layers (plus the embedding on
    /// the first stage, final norm and LM head on the last), its layers' KV pools, and a
    /// workspace whose logits buffers exist only on the last stage.
    pub fn for_stage(
        spec: &EngineSpec,
        part: &StagePart,
        pool_blocks: usize,
        max_rows: usize,
    ) -> MemoryPlan {
        let tensors = plan(spec);
        let weights: u64 = tensors
            .iter()
            .filter(|t| part.holds(&t.name))
            .map(|t| t.kind.device_bytes())
            .sum();
        let per_layer_weights: u64 = tensors
            .iter()
            .filter(|t| t.name.starts_with("layers.0."))
            .map(|t| t.kind.device_bytes())
            .sum();
        let kv_width = (spec.num_kv_heads * spec.head_dim) as u64;
        // K and V, fp16.
        let per_layer_kv = 2 * 2 * kv_width * (pool_blocks * BLOCK_SIZE) as u64;
        let logit_rows = if part.head { max_rows.min(1024) } else { 0 };
        let workspace = Workspace::new(spec, max_rows, logit_rows).bytes();
        MemoryPlan {
            weights,
            per_layer_weights,
            per_layer_kv,
            kv: per_layer_kv * part.layers.len() as u64,
            workspace,
        }
    }

    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.workspace
    }

    /// `Ok` when the plan fits in `free_bytes` with [`HEADROOM_BYTES`] to spare, else the error
    /// a user sees: what is needed, what is free, and how many layers would fit.
    pub fn check(&self, spec: &EngineSpec, free_bytes: u64) -> Result<(), String> {
        let need = self.total() + HEADROOM_BYTES;
        if need <= free_bytes {
            return Ok(());
        }
        let fixed = self.weights - self.per_layer_weights * spec.num_layers as u64
            + self.workspace
            + HEADROOM_BYTES;
        let per_layer = self.per_layer_weights + self.per_layer_kv;
        let layers_fit = free_bytes.saturating_sub(fixed) / per_layer.max(1);
        Err(format!(
            "the model needs {:.2} GiB on the device (weights {:.2}, KV pool {:.2}, workspace {:.2}, headroom {:.2}) but {:.2} GiB are free: set [engine] num_layers = {} or fewer (or lower FERRUM_KV_MAX_BLOCKS)",
            gib(need),
            gib(self.weights),
            gib(self.kv),
            gib(self.workspace),
            gib(HEADROOM_BYTES),
            gib(free_bytes),
            layers_fit
        ))
    }
}

/// What one stage holds of the model: a contiguous range of layers, plus the embedding (first
/// stage) and the final norm and LM head (last stage). The unsplit model is one part holding all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePart {
    /// Layers `[start, end)`.
    pub layers: Range<usize>,
    /// Holds the embedding (runs the embedding lookup).
    pub embed: bool,
    /// Holds the final norm and the LM head (computes logits and samples).
    pub head: bool,
}

impl StagePart {
    /// All of `spec`'s model.
    pub fn whole(spec: &EngineSpec) -> StagePart {
        StagePart {
            layers: 0..spec.num_layers,
            embed: true,
            head: true,
        }
    }

    /// Whether tensor `name` of the stream plan belongs to this part.
    pub fn holds(&self, name: &str) -> bool {
        match name.strip_prefix("layers.") {
            Some(rest) => rest
                .split('.')
                .next()
                .and_then(|l| l.parse::<usize>().ok())
                .is_some_and(|l| self.layers.contains(&l)),
            None if name == "embed" => self.embed,
            None => self.head,
        }
    }
}

pub(crate) fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The `num_layers = N` a memory error suggests (tests of the memory checks).
#[cfg(test)]
pub(super) fn suggested_layers(error: &str) -> usize {
    error
        .split("num_layers = ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no suggestion in {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reference::spec::{Device, EngineSpec};

    const GIB: u64 = 1 << 30;

    #[test]
    fn real_qwen3_30b_fits_a_24_gib_card_with_the_m3_kv_pool() {
        let spec = EngineSpec::resolve_for_device(None, "qwen3_moe", Device::Cuda).unwrap();
        // FERRUM_KV_MAX_BLOCKS = 2048 as in the m3 preset, 2048 batched tokens.
        let plan = MemoryPlan::new(&spec, 2048, 2048);
        assert!(
            plan.weights > 14 * GIB && plan.weights < 20 * GIB,
            "{plan:?}"
        );
        // 48 layers x 2048 blocks x 16 tokens x 4 KV heads x 128 x fp16 x (K, V) = 6 GiB.
        assert_eq!(plan.kv, 48 * 2048 * 16 * 4 * 128 * 2 * 2);
        // A 4090 with about 23.5 GiB free holds it; an 16 GiB card does not.
        let free_4090 = 25_282_281_472u64;
        let fits = plan.check(&spec, free_4090);
        let small = plan.check(&spec, 16 * GIB).unwrap_err();
        assert!(small.contains("num_layers ="), "{small}");
        // The suggested layer count really fits.
        let suggested = suggested_layers(&small);
        assert!(suggested > 0 && suggested < 48, "{suggested}");
        let mut fewer = spec.clone();
        fewer.num_layers = suggested;
        assert!(MemoryPlan::new(&fewer, 2048, 2048)
            .check(&fewer, 16 * GIB)
            .is_ok());
        let mut one_more = spec.clone();
        one_more.num_layers = suggested + 1;
        assert!(MemoryPlan::new(&one_more, 2048, 2048)
            .check(&one_more, 16 * GIB)
            .is_err());
        // With the fp16 embedding and LM head (1.16 GiB each) the full model fits a 4090.
        assert!(fits.is_ok(), "{fits:?}");
    }
}
