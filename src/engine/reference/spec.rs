//! The `[engine]` preset table and the instantiated dimensions of the reference engine.
//!
//! The reference engine runs the *architecture* of the preset's model at CPU size: it keeps what
//! drives serving behaviour (expert count and top-k, so routing spreads tokens over experts as
//! the real model does; the query:KV head ratio, so GQA reads the same share of KV) and shrinks
//! what only scales cost (hidden size, layers, expert width, vocabulary).

use serde::Deserialize;

use super::scheduler::clock::ClockSpec;
use crate::engine::EngineError;

/// `[engine]` table of a preset. Every field is optional; unset fields take the per-architecture
/// CPU-sized defaults of [`EngineSpec::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineTable {
    /// Engine kind; only `reference` (the default) exists so far.
    pub kind: Option<String>,
    /// Model width.
    pub hidden_size: Option<usize>,
    /// Decoder layers.
    pub num_layers: Option<usize>,
    /// Query heads.
    pub num_heads: Option<usize>,
    /// Key/value heads (GQA); must divide `num_heads`.
    pub num_kv_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_heads` when only those are given.
    pub head_dim: Option<usize>,
    /// Routed experts per MoE layer (`qwen3_moe` only).
    pub num_experts: Option<usize>,
    /// Experts each token is routed to (`qwen3_moe` only).
    pub experts_per_token: Option<usize>,
    /// Width of one expert's SwiGLU (`qwen3_moe` only).
    pub moe_intermediate_size: Option<usize>,
    /// Width of the dense SwiGLU MLP (`qwen2` only).
    pub intermediate_size: Option<usize>,
    /// Vocabulary size (lm_head rows).
    pub vocab_size: Option<usize>,
    /// GPTQ group size (input features per scale/zero pair); a multiple of 32.
    pub quant_group_size: Option<usize>,
    /// Seed of the synthetic weights.
    pub weight_seed: Option<u64>,
    /// Worker threads for matmuls and attention (default: available parallelism).
    pub threads: Option<usize>,
    /// Activation/KV storage: `fp32` (default) or `fp16`.
    pub dtype: Option<String>,
    /// Where the forward runs: `auto` (default), `cpu` or `cuda`.
    pub device: Option<String>,
    /// CUDA device index of each stage: one entry, or two with a two-stage layer split (e.g.
    /// `[0, 1]`, or `[0, 0]` to run both stages on one GPU). Default: stage s on device s, or
    /// every stage on device 0 when only one is visible.
    pub cuda_devices: Option<Vec<i64>>,
    /// A model directory whose `config.json` gives the dimensions (relative paths resolve
    /// against the preset's directory); see [`super::shape`].
    pub shape_from: Option<String>,
    /// Where time comes from: `wall` (default) or `modelled` (a cost model of the counted work;
    /// see [`super::scheduler::clock`]).
    pub clock: Option<String>,
    /// Relative noise of the modelled clock, 0 ≤ clock_jitter ≤ 0.5 (default 0).
    pub clock_jitter: Option<f64>,
    /// Seed of the modelled clock's noise (default 0).
    pub clock_seed: Option<u64>,
    /// The shape read from `shape_from` when the preset was loaded (its dimensions are already
    /// copied into the fields above; kept for the context length and the record).
    #[serde(skip)]
    pub shape: Option<super::shape::ModelShape>,
}

impl EngineTable {
    /// Parses a raw `[engine]` table (as kept by the preset loader) with unknown keys rejected.
    pub fn from_toml(table: &toml::Table) -> Result<EngineTable, EngineError> {
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                EngineError::Config(format!("invalid [engine] table: {}", e.message().trim()))
            })
    }
}

/// Supported architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Qwen3-MoE: GQA with per-head q/k RMSNorm, RoPE, routed SwiGLU experts.
    Qwen3Moe,
    /// Qwen2: GQA with QKV bias, RoPE, dense SwiGLU MLP.
    Qwen2,
}

impl Architecture {
    /// Name as it appears in model capabilities.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Qwen3Moe => "qwen3_moe",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// `[engine] device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// CUDA when this build can run the forward there and a device is present, else the CPU.
    Auto,
    /// The CPU backend.
    Cpu,
    /// The CUDA backend (an error when unavailable).
    Cuda,
}

impl Device {
    /// Parses `auto`, `cpu` or `cuda`.
    pub fn parse(value: &str) -> Result<Device, EngineError> {
        match value {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            other => Err(EngineError::Config(format!(
                "invalid value `{other}` for [engine] device: expected auto, cpu or cuda"
            ))),
        }
    }

    /// `auto` / `cpu` / `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }

    /// The device a run uses for this request: `cpu` stays, `auto` is the CPU unless the CUDA
    /// forward is available, `cuda` is an error naming why it is not.
    pub fn select(self) -> Result<Device, EngineError> {
        match (self, super::cuda::unavailable_reason()) {
            (Device::Cpu, _) | (Device::Auto, Some(_)) => Ok(Device::Cpu),
            (Device::Auto | Device::Cuda, None) => Ok(Device::Cuda),
            (Device::Cuda, Some(reason)) => Err(EngineError::Config(format!(
                "[engine] device = \"cuda\" cannot be used: {reason}; set device = \"cpu\" or \"auto\""
            ))),
        }
    }
}

/// Storage type of activations between layers and of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// f32 everywhere.
    Fp32,
    /// f16 storage (`half`), f32 arithmetic.
    Fp16,
}

impl Dtype {
    /// `fp32` / `fp16`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Fp16 => "fp16",
        }
    }
}

/// Fully resolved dimensions of a reference engine instance.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSpec {
    /// Architecture.
    pub architecture: Architecture,
    /// Model width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// KV heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Routed experts (0 for dense models).
    pub num_experts: usize,
    /// Experts per token (0 for dense models).
    pub experts_per_token: usize,
    /// Expert SwiGLU width (0 for dense models).
    pub moe_intermediate_size: usize,
    /// Dense MLP width (0 for MoE models).
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// GPTQ group size.
    pub quant_group_size: usize,
    /// Weight seed.
    pub weight_seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Storage dtype.
    pub dtype: Dtype,
    /// The real model's context length (the `model_max` that bounds `FERRUM_KV_CAPACITY`).
    pub max_context_len: usize,
    /// RoPE base.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// The device the forward runs on (`cpu` or `cuda`, never `auto`).
    pub device: Device,
    /// `[engine] cuda_devices`: the CUDA device of each stage, when given.
    pub cuda_devices: Option<Vec<usize>>,
    /// The `config.json` the dimensions were read from (`[engine] shape_from`), if any.
    pub shape_from: Option<std::path::PathBuf>,
    /// Where time comes from (`[engine] clock`, `clock_jitter`, `clock_seed`).
    pub clock: ClockSpec,
}

/// Validates `[engine] cuda_devices`: one or two indices (one per stage), each within
/// [`super::cuda::stages::MAX_DEVICE_INDEX`]; meaningless with `device = "cpu"`.
fn cuda_devices(list: &[i64], device: Option<&str>) -> Result<Vec<usize>, EngineError> {
    let max = super::cuda::stages::MAX_DEVICE_INDEX;
    let bad = |why: String| {
        Err(EngineError::Config(format!(
            "invalid [engine] cuda_devices = {list:?}: {why}"
        )))
    };
    if device == Some("cpu") {
        return bad(
            "it does not apply to device = \"cpu\": remove it or set device = \"cuda\"".into(),
        );
    }
    if list.is_empty() || list.len() > 2 {
        return bad(format!(
            "give 1 index (no layer split) or 2 (one per stage of a two-stage split), not {}",
            list.len()
        ));
    }
    match list.iter().find(|d| !(0..=max as i64).contains(*d)) {
        Some(d) => bad(format!("device index {d} is outside 0..={max}")),
        None => Ok(list.iter().map(|&d| d as usize).collect()),
    }
}

/// Default seed of the synthetic weights.
pub const DEFAULT_WEIGHT_SEED: u64 = 0x5eed_2026;

impl EngineSpec {
    /// Resolves the table over the defaults of `architecture` on the selected device
    /// ([`Device::select`] of `[engine] device`) and validates the result.
    pub fn resolve(
        table: Option<&EngineTable>,
        architecture: &str,
    ) -> Result<EngineSpec, EngineError> {
        let requested = match table.and_then(|t| t.device.as_deref()) {
            Some(value) => Device::parse(value)?,
            None => Device::Auto,
        };
        Self::resolve_for_device(table, architecture, requested.select()?)
    }

    /// [`EngineSpec::resolve`] on a given device: CPU-sized defaults on `cpu`, the real model's
    /// dimensions on `cuda` (see [`EngineSpec::real_dimensions`]).
    pub fn resolve_for_device(
        table: Option<&EngineTable>,
        architecture: &str,
        device: Device,
    ) -> Result<EngineSpec, EngineError> {
        let empty = EngineTable::default();
        let t = table.unwrap_or(&empty);
        if let Some(kind) = &t.kind {
            if kind != "reference" {
                return Err(EngineError::Config(format!(
                    "unknown engine kind `{kind}` in [engine]: only `reference` is available"
                )));
            }
        }
        let mut spec = match architecture {
            // Real Qwen3-30B-A3B: hidden 2048, 48 layers, 32 query heads, 4 KV heads, head_dim
            // 128, 128 experts, top-8, moe_intermediate 768, vocab 151936, context 40960,
            // GPTQ group 128. CPU size keeps 128 experts / top-8 and the 32:4 head ratio; sized so
            // a 64-request random-256/128 run at c=32 takes seconds on two cores and the default
            // 18-cell × 3-repeat m3 sweep fits in minutes (two layers: every knob acts per layer,
            // so more layers scale cost, not behaviour).
            "qwen3_moe" => EngineSpec {
                architecture: Architecture::Qwen3Moe,
                hidden_size: 256,
                num_layers: 2,
                num_heads: 32,
                num_kv_heads: 4,
                head_dim: 8,
                num_experts: 128,
                experts_per_token: 8,
                moe_intermediate_size: 128,
                intermediate_size: 0,
                // vocab/hidden = 74 as in the real model (151936/2048): the lm_head share of
                // decode work stays realistic.
                vocab_size: 18944,
                quant_group_size: 128,
                weight_seed: DEFAULT_WEIGHT_SEED,
                threads: default_threads(),
                dtype: Dtype::Fp32,
                max_context_len: 40960,
                rope_theta: 1_000_000.0,
                rms_eps: 1e-6,
                device: Device::Cpu,
                cuda_devices: None,
                shape_from: None,
                clock: ClockSpec::default(),
            },
            // Real Qwen2.5-72B: hidden 8192, 80 layers, 64 query heads, 8 KV heads, head_dim
            // 128, dense intermediate 29568, vocab 152064, context 32768, GPTQ group 128.
            // CPU size keeps the 64:8 head ratio, q width = hidden, the MLP ratio (3.6 → 896)
            // and vocab ratio (18.6 → 4864), and an even layer count for two-stage splits; per
            // token it costs about what the qwen3_moe default does.
            "qwen2" => EngineSpec {
                architecture: Architecture::Qwen2,
                hidden_size: 256,
                num_layers: 8,
                num_heads: 64,
                num_kv_heads: 8,
                head_dim: 4,
                num_experts: 0,
                experts_per_token: 0,
                moe_intermediate_size: 0,
                intermediate_size: 896,
                vocab_size: 4864,
                quant_group_size: 128,
                weight_seed: DEFAULT_WEIGHT_SEED,
                threads: default_threads(),
                dtype: Dtype::Fp32,
                max_context_len: 32768,
                rope_theta: 1_000_000.0,
                rms_eps: 1e-6,
                device: Device::Cpu,
                cuda_devices: None,
                shape_from: None,
                clock: ClockSpec::default(),
            },
            other => {
                return Err(EngineError::Config(format!(
                    "unsupported model architecture `{other}` for the reference engine: expected qwen3_moe or qwen2"
                )))
            }
        };
        if device == Device::Cuda {
            spec.real_dimensions();
        }
        let moe = spec.architecture == Architecture::Qwen3Moe;
        let arch = spec.architecture.name();
        let not_for = |field: &str| {
            EngineError::Config(format!(
                "[engine] `{field}` does not apply to architecture {arch}: remove it"
            ))
        };
        if let Some(shape) = &t.shape {
            if let Some(len) = shape.max_context_len {
                spec.max_context_len = len;
            }
            spec.shape_from = Some(shape.config_path.clone());
        }
        if let Some(v) = t.hidden_size {
            spec.hidden_size = v;
        }
        if let Some(v) = t.num_layers {
            spec.num_layers = v;
        }
        if let Some(v) = t.num_heads {
            spec.num_heads = v;
        }
        if let Some(v) = t.num_kv_heads {
            spec.num_kv_heads = v;
        }
        match t.head_dim {
            Some(v) => spec.head_dim = v,
            // Only hidden/heads given: derive the head width as the HF configs do.
            None if t.hidden_size.is_some() || t.num_heads.is_some() => {
                if spec.num_heads == 0 || spec.hidden_size % spec.num_heads != 0 {
                    return Err(EngineError::Config(format!(
                        "[engine] hidden_size {} is not divisible by num_heads {}: set head_dim explicitly",
                        spec.hidden_size, spec.num_heads
                    )));
                }
                spec.head_dim = spec.hidden_size / spec.num_heads;
            }
            None => {}
        }
        if moe {
            if let Some(v) = t.num_experts {
                spec.num_experts = v;
            }
            if let Some(v) = t.experts_per_token {
                spec.experts_per_token = v;
            }
            if let Some(v) = t.moe_intermediate_size {
                spec.moe_intermediate_size = v;
            }
            if t.intermediate_size.is_some() {
                return Err(not_for("intermediate_size"));
            }
        } else {
            if let Some(v) = t.intermediate_size {
                spec.intermediate_size = v;
            }
            for (name, set) in [
                ("num_experts", t.num_experts.is_some()),
                ("experts_per_token", t.experts_per_token.is_some()),
                ("moe_intermediate_size", t.moe_intermediate_size.is_some()),
            ] {
                if set {
                    return Err(not_for(name));
                }
            }
        }
        spec.clock = ClockSpec::from_table(t.clock.as_deref(), t.clock_jitter, t.clock_seed)?;
        if let Some(list) = &t.cuda_devices {
            spec.cuda_devices = Some(cuda_devices(list, t.device.as_deref())?);
        }
        if let Some(v) = t.vocab_size {
            spec.vocab_size = v;
        }
        if let Some(v) = t.quant_group_size {
            spec.quant_group_size = v;
        }
        if let Some(v) = t.weight_seed {
            spec.weight_seed = v;
        }
        if let Some(v) = t.threads {
            spec.threads = v;
        }
        if let Some(d) = &t.dtype {
            spec.dtype = match d.as_str() {
                "fp32" => Dtype::Fp32,
                "fp16" => Dtype::Fp16,
                other => {
                    return Err(EngineError::Config(format!(
                        "invalid value `{other}` for [engine] dtype: expected fp32 or fp16"
                    )))
                }
            };
        }
        spec.validate()?;
        Ok(spec)
    }

    /// The real model's dimensions and fp16 KV (the CUDA defaults): Qwen3-30B-A3B (hidden 2048,
    /// 48 layers, 32 query / 4 KV heads of 128, 128 experts top-8 of width 768, vocabulary
    /// 151,936) or Qwen2.5-72B (hidden 8192, 80 layers, 64 / 8 heads of 128, MLP 29,568,
    /// vocabulary 152,064); GPTQ group 128.
    pub fn real_dimensions(&mut self) {
        self.device = Device::Cuda;
        self.dtype = Dtype::Fp16;
        self.quant_group_size = 128;
        self.head_dim = 128;
        match self.architecture {
            Architecture::Qwen3Moe => {
                self.hidden_size = 2048;
                self.num_layers = 48;
                self.num_heads = 32;
                self.num_kv_heads = 4;
                self.num_experts = 128;
                self.experts_per_token = 8;
                self.moe_intermediate_size = 768;
                self.vocab_size = 151_936;
            }
            Architecture::Qwen2 => {
                self.hidden_size = 8192;
                self.num_layers = 80;
                self.num_heads = 64;
                self.num_kv_heads = 8;
                self.intermediate_size = 29_568;
                self.vocab_size = 152_064;
            }
        }
    }

    /// Checks the dimensions are instantiable.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |msg: String| Err(EngineError::Config(format!("[engine] {msg}")));
        let moe = self.architecture == Architecture::Qwen3Moe;
        let mut positive = vec![
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("quant_group_size", self.quant_group_size),
            ("threads", self.threads),
        ];
        if moe {
            positive.extend([
                ("num_experts", self.num_experts),
                ("experts_per_token", self.experts_per_token),
                ("moe_intermediate_size", self.moe_intermediate_size),
            ]);
        } else {
            positive.push(("intermediate_size", self.intermediate_size));
        }
        for (name, v) in positive {
            if v == 0 {
                return bad(format!("`{name}` must be greater than 0"));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return bad(format!(
                "num_heads {} is not a multiple of num_kv_heads {}: grouped-query attention needs whole groups",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim
            ));
        }
        if self.quant_group_size % super::int4::PACK_BLOCK != 0 {
            return bad(format!(
                "quant_group_size {} must be a multiple of 32",
                self.quant_group_size
            ));
        }
        let mut in_features = vec![
            ("hidden_size", self.hidden_size),
            ("num_heads × head_dim", self.num_heads * self.head_dim),
        ];
        if moe {
            in_features.push(("moe_intermediate_size", self.moe_intermediate_size));
            if self.experts_per_token > self.num_experts {
                return bad(format!(
                    "experts_per_token {} exceeds num_experts {}",
                    self.experts_per_token, self.num_experts
                ));
            }
        } else {
            in_features.push(("intermediate_size", self.intermediate_size));
        }
        for (name, v) in in_features {
            if v % self.quant_group_size != 0 {
                return bad(format!(
                    "quant_group_size {} does not divide {name} = {v}: choose a group size that divides every matmul's input width",
                    self.quant_group_size
                ));
            }
        }
        if self.vocab_size > u32::MAX as usize {
            return bad(format!(
                "vocab_size {} does not fit token ids (u32)",
                self.vocab_size
            ));
        }
        // Host memory bounds a CPU engine only; a CUDA engine's weights live in VRAM and are
        // checked against the device's free memory when it starts.
        if self.device == Device::Cuda {
            return Ok(());
        }
        self.check_memory(0.0)
    }

    /// Estimated bytes of the weights as the reference engine holds them: f32 embeddings,
    /// lm_head, norms and MoE routers; int4 matrices at ½ byte per weight plus an f32 scale and
    /// offset per group and output row; plus the largest matrix once in f32 while it is being
    /// generated. Computed in f64 so absurd dimensions cannot overflow.
    pub fn weight_bytes(&self) -> f64 {
        let f = |v: usize| v as f64;
        let (h, v, g) = (
            f(self.hidden_size),
            f(self.vocab_size),
            f(self.quant_group_size),
        );
        let q_width = f(self.num_heads) * f(self.head_dim);
        let kv_width = f(self.num_kv_heads) * f(self.head_dim);
        let attention = h * q_width + 2.0 * h * kv_width + q_width * h;
        let (mlp, router, largest) = match self.architecture {
            Architecture::Qwen3Moe => {
                let one = h * f(self.moe_intermediate_size);
                (
                    3.0 * f(self.num_experts) * one,
                    f(self.num_experts) * h,
                    one,
                )
            }
            Architecture::Qwen2 => {
                let one = h * f(self.intermediate_size);
                (3.0 * one, 0.0, one)
            }
        };
        let int4 = 0.5 + 8.0 / g;
        let per_layer = (attention + mlp) * int4 + router * 4.0 + 4.0 * h * 4.0;
        2.0 * v * h * 4.0 + f(self.num_layers) * per_layer + largest.max(h * q_width) * 4.0
    }

    /// Estimated bytes of a KV pool of `pool_blocks` blocks (keys and values, every layer).
    pub fn kv_bytes(&self, pool_blocks: usize) -> f64 {
        let elem = match self.dtype {
            Dtype::Fp32 => 4.0,
            Dtype::Fp16 => 2.0,
        };
        2.0 * self.num_layers as f64
            * pool_blocks as f64
            * super::kv::BLOCK_SIZE as f64
            * (self.num_kv_heads * self.head_dim) as f64
            * elem
    }

    /// Refuse, before anything is allocated, an engine whose weights plus `kv_bytes` would not
    /// fit in [`memory_limit_bytes`], with the estimate in the message.
    pub fn check_memory(&self, kv_bytes: f64) -> Result<(), EngineError> {
        let weights = self.weight_bytes();
        let total = weights + kv_bytes;
        let limit = memory_limit_bytes();
        if total.is_finite() && total <= limit as f64 {
            return Ok(());
        }
        let gib = |b: f64| b / (1u64 << 30) as f64;
        Err(EngineError::Config(format!(
            "[engine] the reference engine would need about {:.1} GiB ({:.1} GiB weights + {:.1} GiB KV cache), more than the {:.1} GiB this machine can give (80 % of its memory, at most what is available now): reduce hidden_size, num_layers, num_experts, the intermediate sizes or vocab_size (or FERRUM_PAGED_MAX_SEQS / FERRUM_KV_CAPACITY for the KV cache)",
            gib(total),
            gib(weights),
            gib(kv_bytes),
            gib(limit as f64)
        )))
    }
}

/// The most memory an engine may plan for: the smaller of 80 % of `MemTotal` and
/// `MemAvailable` (`/proc/meminfo`: other processes' memory is not ours to take), or 16 GiB
/// where neither can be read.
pub fn memory_limit_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib.saturating_mul(1024))
    };
    let total = field("MemTotal:").map(|t| t / 10 * 8);
    match (total, field("MemAvailable:")) {
        (Some(t), Some(a)) => t.min(a),
        (Some(t), None) => t,
        (None, Some(a)) => a,
        (None, None) => 16 << 30,
    }
}

/// Available parallelism (1 if unknown).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(src: &str) -> Result<EngineTable, EngineError> {
        EngineTable::from_toml(&src.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn device_cuda_is_a_clear_error_and_auto_runs_on_the_cpu_here() {
        if crate::engine::reference::cuda::unavailable_reason().is_none() {
            eprintln!("skipped: this machine can run the CUDA backend");
            return;
        }
        let cuda = table("device = \"cuda\"").unwrap();
        let err = EngineSpec::resolve(Some(&cuda), "qwen3_moe").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("[engine] device = \"cuda\" cannot be used"),
            "{msg}"
        );
        assert!(msg.contains("set device = \"cpu\" or \"auto\""), "{msg}");
        let auto = EngineSpec::resolve(Some(&table("device = \"auto\"").unwrap()), "qwen3_moe");
        assert_eq!(auto.unwrap().device, Device::Cpu);
        let bad = EngineSpec::resolve(Some(&table("device = \"gpu\"").unwrap()), "qwen2");
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("expected auto, cpu or cuda"));
    }

    #[test]
    fn cuda_defaults_are_the_real_models_and_tables_still_override() {
        let m3 = EngineSpec::resolve_for_device(None, "qwen3_moe", Device::Cuda).unwrap();
        assert_eq!(
            (
                m3.hidden_size,
                m3.num_layers,
                m3.num_heads,
                m3.num_kv_heads,
                m3.head_dim
            ),
            (2048, 48, 32, 4, 128)
        );
        assert_eq!(
            (
                m3.num_experts,
                m3.experts_per_token,
                m3.moe_intermediate_size
            ),
            (128, 8, 768)
        );
        assert_eq!(
            (m3.vocab_size, m3.quant_group_size, m3.dtype),
            (151_936, 128, Dtype::Fp16)
        );
        let q72 = EngineSpec::resolve_for_device(None, "qwen2", Device::Cuda).unwrap();
        assert_eq!(
            (q72.hidden_size, q72.num_layers, q72.intermediate_size),
            (8192, 80, 29_568)
        );
        let fewer = table("num_layers = 12").unwrap();
        let spec = EngineSpec::resolve_for_device(Some(&fewer), "qwen3_moe", Device::Cuda).unwrap();
        assert_eq!((spec.num_layers, spec.hidden_size), (12, 2048));
    }

    #[test]
    fn defaults_keep_real_routing_and_head_ratio() {
        let m3 = EngineSpec::resolve(None, "qwen3_moe").unwrap();
        assert_eq!((m3.num_experts, m3.experts_per_token), (128, 8));
        assert_eq!(m3.num_heads / m3.num_kv_heads, 32 / 4);
        let q2 = EngineSpec::resolve(None, "qwen2").unwrap();
        assert_eq!(q2.num_heads / q2.num_kv_heads, 64 / 8);
        assert_eq!(q2.num_experts, 0);
    }

    #[test]
    fn table_overrides_and_validates() {
        let t = table("hidden_size = 256\nnum_heads = 16\nnum_kv_heads = 4\nweight_seed = 9\ndtype = \"fp16\"").unwrap();
        let s = EngineSpec::resolve(Some(&t), "qwen3_moe").unwrap();
        assert_eq!(
            (s.hidden_size, s.head_dim, s.weight_seed, s.dtype),
            (256, 16, 9, Dtype::Fp16)
        );

        let err = |src: &str, arch: &str| {
            EngineSpec::resolve(Some(&table(src).unwrap()), arch)
                .unwrap_err()
                .to_string()
        };
        assert!(err("num_kv_heads = 5", "qwen3_moe").contains("not a multiple of num_kv_heads 5"));
        assert!(err("quant_group_size = 48", "qwen3_moe").contains("must be a multiple of 32"));
        assert!(err("quant_group_size = 256", "qwen3_moe").contains("does not divide"));
        assert!(err("num_experts = 8", "qwen2").contains("does not apply to architecture qwen2"));
        assert!(err("experts_per_token = 200", "qwen3_moe").contains("exceeds num_experts"));
        assert!(err("dtype = \"bf16\"", "qwen2").contains("expected fp32 or fp16"));
        assert!(err("kind = \"http\"", "qwen2").contains("unknown engine kind `http`"));
        assert!(EngineSpec::resolve(None, "llama")
            .unwrap_err()
            .to_string()
            .contains("unsupported model architecture `llama`"));
        let huge = err(
            "hidden_size = 1048576\nnum_heads = 8\nnum_kv_heads = 2",
            "qwen3_moe",
        );
        assert!(
            huge.contains("would need about") && huge.contains("GiB"),
            "{huge}"
        );
        let s = EngineSpec::resolve(None, "qwen3_moe").unwrap();
        assert!(s.weight_bytes() > 1e6 && s.weight_bytes() < 1e9);
        assert!(s.kv_bytes(1 << 40) > memory_limit_bytes() as f64);
        assert!(s.check_memory(s.kv_bytes(1 << 40)).is_err());
        assert!(table("hiden_size = 3")
            .unwrap_err()
            .to_string()
            .contains("hiden_size"));
    }
}
