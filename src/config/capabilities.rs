//! Capabilities the resolver decides from: the model, the hardware (with the kernel features the
//! engine was compiled with) and the workload profile.
//!
//! Field names, serde names and the built-in profiles mirror Ferrum's `auto_config.rs`
//! constructors (`qwen3_30b_a3b_gptq_int4`, `rtx4090_cuda`, `m3_fast_path_without_fa2`, ...), so
//! the capability blocks of `effective_config.json` are Ferrum's.

use serde::{Deserialize, Serialize};

/// One GiB in bytes.
pub const GIB: u64 = 1024 * 1024 * 1024;

/// Model facts the resolver needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCapabilities {
    /// Architecture, e.g. `qwen3_moe` or `qwen2`.
    pub architecture: String,
    /// Quantization, e.g. `gptq_int4`.
    pub quantization: Option<String>,
    /// Mixture-of-experts shape, if any.
    pub moe: Option<MoeCapabilities>,
    /// Maximum context length from model metadata.
    pub max_context_len: Option<usize>,
    /// Transformer layers.
    pub num_hidden_layers: Option<usize>,
    /// Attention head dimension.
    pub head_dim: Option<usize>,
    /// Key/value heads.
    pub kv_heads: Option<usize>,
    /// Estimated weight bytes on the device.
    pub estimated_weight_bytes: Option<u64>,
    /// Activation dtypes the model supports.
    pub supported_dtypes: Vec<String>,
    /// Whether the MoE path is safe to capture in a CUDA graph.
    pub graph_safe_moe: bool,
}

/// Mixture-of-experts shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoeCapabilities {
    /// Experts per MoE layer.
    pub num_experts: usize,
    /// Experts routed per token (top-k).
    pub experts_per_token: usize,
    /// Expert FFN width.
    pub moe_intermediate_size: Option<usize>,
}

impl ModelCapabilities {
    /// Nothing known: every optional fact absent.
    pub fn unknown() -> Self {
        Self {
            architecture: "unknown".to_string(),
            quantization: None,
            moe: None,
            max_context_len: None,
            num_hidden_layers: None,
            head_dim: None,
            kv_heads: None,
            estimated_weight_bytes: None,
            supported_dtypes: strings(&["fp16", "fp32"]),
            graph_safe_moe: false,
        }
    }

    /// Qwen3-30B-A3B GPTQ-Int4 ("M3"): 48 layers, 128 experts top-8, 4 KV heads of 128.
    pub fn qwen3_30b_a3b_gptq_int4() -> Self {
        Self {
            architecture: "qwen3_moe".to_string(),
            quantization: Some("gptq_int4".to_string()),
            moe: Some(MoeCapabilities {
                num_experts: 128,
                experts_per_token: 8,
                moe_intermediate_size: Some(768),
            }),
            max_context_len: Some(40960),
            num_hidden_layers: Some(48),
            head_dim: Some(128),
            kv_heads: Some(4),
            estimated_weight_bytes: Some(18 * GIB),
            supported_dtypes: strings(&["fp16"]),
            graph_safe_moe: false,
        }
    }

    /// Qwen2.5-72B GPTQ-Int4: dense, 80 layers, 8 KV heads of 128.
    pub fn qwen25_72b_gptq_int4() -> Self {
        Self {
            architecture: "qwen2".to_string(),
            quantization: Some("gptq_int4".to_string()),
            moe: None,
            max_context_len: Some(32_768),
            num_hidden_layers: Some(80),
            head_dim: Some(128),
            kv_heads: Some(8),
            estimated_weight_bytes: Some(39 * GIB),
            supported_dtypes: strings(&["fp16"]),
            graph_safe_moe: false,
        }
    }

    /// A built-in model profile by name.
    pub fn profile(name: &str) -> Option<Self> {
        match name {
            "qwen3_30b_a3b_gptq_int4" => Some(Self::qwen3_30b_a3b_gptq_int4()),
            "qwen25_72b_gptq_int4" => Some(Self::qwen25_72b_gptq_int4()),
            "unknown" => Some(Self::unknown()),
            _ => None,
        }
    }

    /// Names accepted by [`ModelCapabilities::profile`].
    pub const PROFILES: &'static [&'static str] =
        &["qwen3_30b_a3b_gptq_int4", "qwen25_72b_gptq_int4", "unknown"];
}

/// Kernel features compiled into the engine binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledKernelFeatures {
    /// CUDA backend.
    pub cuda: bool,
    /// vLLM paged attention kernels.
    pub vllm_paged_attn: bool,
    /// vLLM Marlin MoE kernels.
    pub vllm_moe_marlin: bool,
    /// CUDA graph capture.
    pub cuda_graph: bool,
    /// GPU greedy argmax.
    pub greedy_argmax: bool,
    /// Source-linked FlashAttention-2.
    pub fa2_source: bool,
    /// Direct FFI FlashAttention-2 shim.
    pub fa2_direct_ffi: bool,
}

impl CompiledKernelFeatures {
    /// The M3 fast path without FlashAttention-2.
    pub fn m3_fast_path_without_fa2() -> Self {
        Self {
            cuda: true,
            vllm_paged_attn: true,
            vllm_moe_marlin: true,
            cuda_graph: true,
            greedy_argmax: true,
            fa2_source: false,
            fa2_direct_ffi: false,
        }
    }

    /// The M3 fast path with source-linked FlashAttention-2.
    pub fn m3_fast_path_with_source_fa2() -> Self {
        Self {
            fa2_source: true,
            ..Self::m3_fast_path_without_fa2()
        }
    }

    /// A built-in feature set by name.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "m3_fast_path_without_fa2" => Some(Self::m3_fast_path_without_fa2()),
            "m3_fast_path_with_source_fa2" => Some(Self::m3_fast_path_with_source_fa2()),
            "none" => Some(Self::default()),
            _ => None,
        }
    }

    /// Names accepted by [`CompiledKernelFeatures::named`].
    pub const NAMES: &'static [&'static str] = &[
        "m3_fast_path_without_fa2",
        "m3_fast_path_with_source_fa2",
        "none",
    ];
}

/// Hardware facts the resolver needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareCapabilities {
    /// `cuda`, `metal`, `cpu` or `unknown`.
    pub backend: String,
    /// CUDA runtime version.
    pub cuda_runtime: Option<String>,
    /// CUDA compute capability, e.g. `8.9`.
    pub compute_capability: Option<String>,
    /// Device memory in bytes.
    pub vram_bytes: Option<u64>,
    /// Streaming multiprocessors.
    pub sm_count: Option<u32>,
    /// Activation dtypes.
    pub supported_dtypes: Vec<String>,
    /// KV cache dtypes.
    pub supported_kv_dtypes: Vec<String>,
    /// Whether graph replay is supported.
    pub graph_support: bool,
    /// Kernel features compiled in.
    pub compiled_features: CompiledKernelFeatures,
}

impl HardwareCapabilities {
    /// Nothing known.
    pub fn unknown() -> Self {
        Self {
            backend: "unknown".to_string(),
            cuda_runtime: None,
            compute_capability: None,
            vram_bytes: None,
            sm_count: None,
            supported_dtypes: strings(&["fp16", "fp32"]),
            supported_kv_dtypes: strings(&["fp16"]),
            graph_support: false,
            compiled_features: CompiledKernelFeatures::default(),
        }
    }

    /// One RTX 4090 (compute capability 8.9, 24 GiB, 128 SMs).
    pub fn rtx4090_cuda(features: CompiledKernelFeatures) -> Self {
        Self {
            backend: "cuda".to_string(),
            cuda_runtime: None,
            compute_capability: Some("8.9".to_string()),
            vram_bytes: Some(24 * GIB),
            sm_count: Some(128),
            supported_dtypes: strings(&["fp16", "fp32"]),
            supported_kv_dtypes: strings(&["fp16", "int8"]),
            graph_support: true,
            compiled_features: features,
        }
    }

    /// A CPU backend: fp32 activations, fp16 KV, no graphs (the spec's CPU test hardware).
    pub fn cpu(features: CompiledKernelFeatures) -> Self {
        Self {
            backend: "cpu".to_string(),
            supported_dtypes: strings(&["fp32"]),
            supported_kv_dtypes: strings(&["fp16"]),
            compiled_features: features,
            ..Self::unknown()
        }
    }

    /// A built-in hardware profile by name, with its default compiled features (`rtx4090`: the
    /// M3 fast path without FA2; the others: none). `auto` is this machine, from the hardware
    /// probe (`crate::hardware::auto_capabilities`: a CUDA profile on an NVIDIA GPU, else `cpu`).
    pub fn profile(name: &str) -> Option<Self> {
        match name {
            "rtx4090" => Some(Self::rtx4090_cuda(
                CompiledKernelFeatures::m3_fast_path_without_fa2(),
            )),
            "cpu" => Some(Self::cpu(CompiledKernelFeatures::default())),
            "auto" => Some(crate::hardware::auto_capabilities()),
            "unknown" => Some(Self::unknown()),
            _ => None,
        }
    }

    /// Names accepted by [`HardwareCapabilities::profile`].
    pub const PROFILES: &'static [&'static str] = &["rtx4090", "cpu", "unknown", "auto"];
}

/// What the workload cares about most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadPriority {
    /// Time to first token / per-token latency.
    Latency,
    /// Aggregate tokens per second.
    Throughput,
    /// Neither extreme.
    Balanced,
}

/// The serving workload the configuration is resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadProfile {
    /// Ferrum runtime preset name, if the workload is one.
    pub preset: Option<String>,
    /// `openai_chat`, `bench_serve`, ...
    pub serving_mode: String,
    /// Concurrency the configuration is sized for.
    pub target_concurrency: usize,
    /// Prompt length class, e.g. `random_256`.
    pub prompt_length_class: String,
    /// Output length class, e.g. `random_128`.
    pub output_length_class: String,
    /// Priority.
    pub priority: WorkloadPriority,
}

/// Ferrum's M3 runtime preset name.
pub const M3_QWEN3_30B_A3B_INT4_PRESET: &str = "m3_qwen3_30b_a3b_int4";
/// Ferrum's Qwen2.5-72B two-GPU layer-split runtime preset name.
pub const QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET: &str =
    "qwen25_72b_gptq_int4_2x4090_layer_split";

impl WorkloadProfile {
    /// Plain OpenAI-chat serving at concurrency 1.
    pub fn serving_default() -> Self {
        Self {
            preset: None,
            serving_mode: "openai_chat".to_string(),
            target_concurrency: 1,
            prompt_length_class: "unknown".to_string(),
            output_length_class: "unknown".to_string(),
            priority: WorkloadPriority::Balanced,
        }
    }

    /// [`WorkloadProfile::serving_default`] with the concurrency a CUDA/Metal device's memory
    /// class supports (≥ 20 GiB → 32, ≥ 12 → 16, ≥ 8 → 8, else 4; unknown memory → 4); CPU and
    /// other backends keep 1.
    pub fn serving_default_for_hardware(hardware: &HardwareCapabilities) -> Self {
        let mut profile = Self::serving_default();
        let accelerator = hardware.backend.eq_ignore_ascii_case("cuda")
            || hardware.backend.eq_ignore_ascii_case("metal");
        if accelerator {
            profile.target_concurrency = hardware
                .vram_bytes
                .map(vram_default_max_sequences)
                .unwrap_or(4)
                .max(1);
        }
        profile
    }

    /// The M3 benchmark workload: random 256/128 at c=32, throughput first.
    pub fn m3_qwen3_30b_a3b_int4() -> Self {
        Self::bench_serve_preset(M3_QWEN3_30B_A3B_INT4_PRESET, 32)
    }

    /// The Qwen2.5-72B layer-split benchmark workload: random 256/128 at c=16.
    pub fn qwen25_72b_gptq_int4_2x4090_layer_split() -> Self {
        Self::bench_serve_preset(QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET, 16)
    }

    fn bench_serve_preset(preset: &str, target_concurrency: usize) -> Self {
        Self {
            preset: Some(preset.to_string()),
            serving_mode: "bench_serve".to_string(),
            target_concurrency,
            prompt_length_class: "random_256".to_string(),
            output_length_class: "random_128".to_string(),
            priority: WorkloadPriority::Throughput,
        }
    }

    /// A built-in workload profile by name; `serving_default` follows the hardware as
    /// [`WorkloadProfile::serving_default_for_hardware`].
    pub fn profile(name: &str, hardware: &HardwareCapabilities) -> Option<Self> {
        match name {
            "serving_default" => Some(Self::serving_default_for_hardware(hardware)),
            M3_QWEN3_30B_A3B_INT4_PRESET => Some(Self::m3_qwen3_30b_a3b_int4()),
            QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET => {
                Some(Self::qwen25_72b_gptq_int4_2x4090_layer_split())
            }
            _ => None,
        }
    }

    /// Names accepted by [`WorkloadProfile::profile`].
    pub const PROFILES: &'static [&'static str] = &[
        "serving_default",
        M3_QWEN3_30B_A3B_INT4_PRESET,
        QWEN25_72B_GPTQ_INT4_2X4090_LAYER_SPLIT_PRESET,
    ];

    /// Whether this is the named Ferrum preset.
    pub fn is_preset(&self, preset: &str) -> bool {
        self.preset.as_deref() == Some(preset)
    }

    /// Whether this is the M3 preset.
    pub fn is_m3_preset(&self) -> bool {
        self.is_preset(M3_QWEN3_30B_A3B_INT4_PRESET)
    }
}

impl Default for WorkloadProfile {
    fn default() -> Self {
        Self::serving_default()
    }
}

/// Default sequence budget for a device memory size (Ferrum's VRAM tiers).
pub fn vram_default_max_sequences(vram_bytes: u64) -> usize {
    match vram_bytes {
        bytes if bytes >= 20 * GIB => 32,
        bytes if bytes >= 12 * GIB => 16,
        bytes if bytes >= 8 * GIB => 8,
        _ => 4,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vram_capacity_tiers_are_monotonic() {
        assert_eq!(vram_default_max_sequences(24 * GIB), 32);
        assert_eq!(vram_default_max_sequences(16 * GIB), 16);
        assert_eq!(vram_default_max_sequences(8 * GIB), 8);
        assert_eq!(vram_default_max_sequences(6 * GIB), 4);
    }

    #[test]
    fn accelerator_serving_default_follows_memory_and_cpu_keeps_one() {
        let gpu = HardwareCapabilities::rtx4090_cuda(CompiledKernelFeatures::default());
        assert_eq!(
            WorkloadProfile::serving_default_for_hardware(&gpu).target_concurrency,
            32
        );
        let mut unknown_memory = gpu.clone();
        unknown_memory.vram_bytes = None;
        assert_eq!(
            WorkloadProfile::serving_default_for_hardware(&unknown_memory).target_concurrency,
            4
        );
        let cpu = HardwareCapabilities::cpu(CompiledKernelFeatures::default());
        assert_eq!(
            WorkloadProfile::serving_default_for_hardware(&cpu).target_concurrency,
            1
        );
    }

    #[test]
    fn named_profiles_resolve() {
        for name in ModelCapabilities::PROFILES {
            assert!(ModelCapabilities::profile(name).is_some(), "{name}");
        }
        for name in HardwareCapabilities::PROFILES {
            assert!(HardwareCapabilities::profile(name).is_some(), "{name}");
        }
        for name in CompiledKernelFeatures::NAMES {
            assert!(CompiledKernelFeatures::named(name).is_some(), "{name}");
        }
        let cpu = HardwareCapabilities::profile("cpu").unwrap();
        for name in WorkloadProfile::PROFILES {
            assert!(WorkloadProfile::profile(name, &cpu).is_some(), "{name}");
        }
        assert!(ModelCapabilities::profile("llama").is_none());
    }

    #[test]
    fn serde_names_match_ferrum() {
        let value = serde_json::to_value(WorkloadProfile::m3_qwen3_30b_a3b_int4()).unwrap();
        assert_eq!(value["priority"], "throughput");
        assert_eq!(value["preset"], "m3_qwen3_30b_a3b_int4");
        let features = serde_json::to_value(CompiledKernelFeatures::default()).unwrap();
        assert_eq!(features.as_object().unwrap().len(), 7);
    }
}
