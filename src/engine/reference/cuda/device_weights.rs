//! The model's weights generated on the device from the seed: every tensor of the stream plan
//! ([`super::stream::plan`]) computed from its first word of the seed's ChaCha8 stream by
//! `kernels/weights.cu`, so the values are the CPU engine's, bit for bit, without a host copy.
//!
//! Layout: the embedding and the LM head in fp16 (raw bits in `u16` buffers; the CPU model holds
//! the same fp16-rounded values in f32); int4 matrices as on the CPU (packed bytes, f32 scales and
//! offsets per row and group);
//! a layer's experts are stacked into one matrix per projection (expert `e`'s rows start at
//! `e · rows`), which is the layout `int4_gemm_grouped` and `int4_gemv_per_pair` index.

use cudarc::driver::CudaSlice;

use super::gpu::{Arg, Gpu};
use super::launch;
use super::memory::StagePart;
use super::stream::{plan, Tensor, TensorKind};
use crate::engine::reference::spec::EngineSpec;
use crate::engine::reference::weights::WeightGen;
use crate::engine::EngineError;

/// `LEVEL_STD` of the CPU generator (`weights.rs`): scales' base = std / 4.61.
const LEVEL_STD: f32 = 4.61;

/// An int4 matrix on the device.
pub struct DInt4 {
    /// Packed levels.
    pub packed: CudaSlice<u8>,
    /// Per (row, group) scale.
    pub scales: CudaSlice<f32>,
    /// Per (row, group) offset (`-scale · zero`).
    pub offsets: CudaSlice<f32>,
    /// Output features of one matrix (one expert's, when stacked).
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

/// Feed-forward weights of a layer.
pub enum DFfn {
    /// Router and stacked experts.
    Moe {
        /// `experts × hidden`.
        router: CudaSlice<f32>,
        /// Stacked gate|up (`experts × 2I` rows).
        gate_up: DInt4,
        /// Stacked down (`experts × hidden` rows).
        down: DInt4,
    },
    /// Dense SwiGLU.
    Dense {
        /// Gate|up.
        gate_up: DInt4,
        /// Down.
        down: DInt4,
    },
}

/// One layer on the device.
pub struct DLayer {
    /// Pre-attention norm gain.
    pub input_norm: CudaSlice<f32>,
    /// Fused QKV.
    pub qkv: DInt4,
    /// QKV bias (qwen2).
    pub qkv_bias: Option<CudaSlice<f32>>,
    /// Per-head q / k norm gains (qwen3_moe).
    pub qk_norm: Option<(CudaSlice<f32>, CudaSlice<f32>)>,
    /// Output projection.
    pub o: DInt4,
    /// Pre-FFN norm gain.
    pub post_norm: CudaSlice<f32>,
    /// Feed-forward.
    pub ffn: DFfn,
}

/// The model, or one layer-split stage's part of it, on the device.
pub struct DModel {
    /// `vocab × hidden` fp16 bits (the stage that embeds).
    pub embed: Option<CudaSlice<u16>>,
    /// Layers `first_layer..first_layer + layers.len()`.
    pub layers: Vec<DLayer>,
    /// Index of `layers[0]` in the whole model.
    pub first_layer: usize,
    /// Final norm gain and `vocab × hidden` LM head in fp16 bits (the stage that samples).
    pub head: Option<(CudaSlice<f32>, CudaSlice<u16>)>,
    /// Device bytes of these weights.
    pub bytes: u64,
}

struct Gen<'a> {
    gpu: &'a Gpu,
    key: CudaSlice<u32>,
    scratch: CudaSlice<u32>,
}

impl Gen<'_> {
    /// Words `[first, first + n)` of the stream into the buffer at `dst`.
    fn words(&self, first: u64, n: u64, dst: u64) -> Result<(), EngineError> {
        let key = self.gpu.ptr(&self.key, 0);
        self.gpu.launch(
            "chacha8_words",
            launch::chacha8_words(first, n),
            &[Arg::P(key), Arg::U(first), Arg::U(n), Arg::P(dst)],
        )
    }

    fn uniform_into(&self, t: &Tensor, dst: u64) -> Result<(), EngineError> {
        let TensorKind::Uniform { n, center, scale } = t.kind else {
            return Err(EngineError::Fault(format!("{} is not a vector", t.name)));
        };
        self.words(t.first_word, n as u64, dst)?;
        self.gpu.launch(
            "uniform_f32",
            launch::elementwise(n as u64),
            &[
                Arg::P(dst),
                Arg::U(n as u64),
                Arg::F(center),
                Arg::F(scale),
                Arg::P(dst),
            ],
        )
    }

    fn vector(&self, t: &Tensor) -> Result<CudaSlice<f32>, EngineError> {
        let TensorKind::Uniform { n, .. } = t.kind else {
            return Err(EngineError::Fault(format!("{} is not a vector", t.name)));
        };
        let out = self.gpu.zeros::<f32>(n)?;
        self.uniform_into(t, self.gpu.ptr(&out, 0))?;
        Ok(out)
    }

    /// An fp16 tensor (embedding, LM head) generated straight into fp16, without a word or f32
    /// copy of it on the device.
    fn half_vector(&self, t: &Tensor) -> Result<CudaSlice<u16>, EngineError> {
        let TensorKind::Fp16 { n, scale } = t.kind else {
            return Err(EngineError::Fault(format!(
                "{} is not an fp16 tensor",
                t.name
            )));
        };
        let out = self.gpu.zeros::<u16>(n)?;
        let key = self.gpu.ptr(&self.key, 0);
        self.gpu.launch(
            "uniform_f16",
            launch::chacha8_words(t.first_word, n as u64),
            &[
                Arg::P(key),
                Arg::U(t.first_word),
                Arg::U(n as u64),
                Arg::F(scale),
                Arg::P(self.gpu.ptr(&out, 0)),
            ],
        )?;
        Ok(out)
    }

    /// Matrix `t` into rows `[row0, row0 + rows)` of `dst`.
    fn int4_into(&mut self, t: &Tensor, dst: &DInt4, row0: usize) -> Result<(), EngineError> {
        let TensorKind::Int4 {
            rows,
            cols,
            group,
            std,
        } = t.kind
        else {
            return Err(EngineError::Fault(format!(
                "{} is not an int4 matrix",
                t.name
            )));
        };
        let bytes = rows * cols / 2;
        let groups_per_row = cols / group;
        let groups = rows * groups_per_row;
        // Packed bytes are the stream's words in little-endian order (one next_u64 per 8
        // bytes; `cols` is a multiple of 32, so there is no short last chunk).
        let packed = self.gpu.ptr(&dst.packed, row0 * cols / 2);
        self.words(t.first_word, (bytes / 4) as u64, packed)?;
        // Then one word per group for the scales and one per group for the zero points.
        if self.scratch.len() < 2 * groups {
            self.scratch = self.gpu.zeros::<u32>(2 * groups)?;
        }
        let scratch = self.gpu.ptr(&self.scratch, 0);
        self.words(
            t.first_word + (bytes / 4) as u64,
            2 * groups as u64,
            scratch,
        )?;
        self.gpu.launch(
            "int4_scales",
            launch::elementwise(groups as u64),
            &[
                Arg::P(scratch),
                Arg::P(self.gpu.ptr(&self.scratch, groups)),
                Arg::U(groups as u64),
                Arg::F(std / LEVEL_STD),
                Arg::P(self.gpu.ptr(&dst.scales, row0 * groups_per_row)),
                Arg::P(self.gpu.ptr(&dst.offsets, row0 * groups_per_row)),
            ],
        )
    }

    /// A matrix of `stack` stacked copies of `t`'s shape.
    fn alloc_int4(&self, t: &Tensor, stack: usize) -> Result<DInt4, EngineError> {
        let TensorKind::Int4 {
            rows, cols, group, ..
        } = t.kind
        else {
            return Err(EngineError::Fault(format!(
                "{} is not an int4 matrix",
                t.name
            )));
        };
        Ok(DInt4 {
            packed: self.gpu.zeros::<u8>(stack * rows * cols / 2)?,
            scales: self.gpu.zeros::<f32>(stack * rows * (cols / group))?,
            offsets: self.gpu.zeros::<f32>(stack * rows * (cols / group))?,
            rows,
            cols,
        })
    }

    fn int4(&mut self, t: &Tensor) -> Result<DInt4, EngineError> {
        let m = self.alloc_int4(t, 1)?;
        self.int4_into(t, &m, 0)?;
        Ok(m)
    }
}

impl DModel {
    /// Generates every weight of `spec` on the device.
    pub fn generate(gpu: &Gpu, spec: &EngineSpec) -> Result<DModel, EngineError> {
        DModel::generate_part(gpu, spec, &StagePart::whole(spec))
    }

    /// Generates the weights `part` holds. Every tensor comes from its own offset of the seed's
    /// stream, so a stage's layers are bit-identical to the same layers of the whole model.
    pub fn generate_part(
        gpu: &Gpu,
        spec: &EngineSpec,
        part: &StagePart,
    ) -> Result<DModel, EngineError> {
        let tensors = plan(spec);
        let bytes = tensors
            .iter()
            .filter(|t| part.holds(&t.name))
            .map(|t| t.kind.device_bytes())
            .sum();
        let by_name: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let get = |name: &str| {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| EngineError::Fault(format!("no tensor {name} in the stream plan")))
        };
        let key = gpu
            .stream()
            .clone_htod(&WeightGen::key(spec.weight_seed))
            .map_err(super::gpu::fault("upload the weight key"))?;
        let mut g = Gen {
            gpu,
            key,
            scratch: gpu.zeros::<u32>(1)?,
        };
        let embed = if part.embed {
            Some(g.half_vector(get("embed")?)?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(part.layers.len());
        for l in part.layers.clone() {
            let p = |n: &str| format!("layers.{l}.{n}");
            let input_norm = g.vector(get(&p("input_norm"))?)?;
            let qkv = g.int4(get(&p("qkv"))?)?;
            let qkv_bias = match by_name.get(p("qkv_bias").as_str()) {
                Some(t) => Some(g.vector(t)?),
                None => None,
            };
            let qk_norm = match (
                by_name.get(p("q_norm").as_str()),
                by_name.get(p("k_norm").as_str()),
            ) {
                (Some(q), Some(k)) => Some((g.vector(q)?, g.vector(k)?)),
                _ => None,
            };
            let o = g.int4(get(&p("o"))?)?;
            let post_norm = g.vector(get(&p("post_norm"))?)?;
            let ffn = if spec.num_experts > 0 && by_name.contains_key(p("router").as_str()) {
                let router = g.vector(get(&p("router"))?)?;
                let e = spec.num_experts;
                let gate_up = g.alloc_int4(get(&p("experts.0.gate_up"))?, e)?;
                let down = g.alloc_int4(get(&p("experts.0.down"))?, e)?;
                for x in 0..e {
                    g.int4_into(
                        get(&p(&format!("experts.{x}.gate_up")))?,
                        &gate_up,
                        x * gate_up.rows,
                    )?;
                    g.int4_into(get(&p(&format!("experts.{x}.down")))?, &down, x * down.rows)?;
                }
                DFfn::Moe {
                    router,
                    gate_up,
                    down,
                }
            } else {
                DFfn::Dense {
                    gate_up: g.int4(get(&p("mlp.gate_up"))?)?,
                    down: g.int4(get(&p("mlp.down"))?)?,
                }
            };
            layers.push(DLayer {
                input_norm,
                qkv,
                qkv_bias,
                qk_norm,
                o,
                post_norm,
                ffn,
            });
        }
        let head = if part.head {
            Some((
                g.vector(get("final_norm")?)?,
                g.half_vector(get("lm_head")?)?,
            ))
        } else {
            None
        };
        gpu.sync()?;
        Ok(DModel {
            embed,
            layers,
            first_layer: part.layers.start,
            head,
            bytes,
        })
    }
}
