//! Ferrum's hardware capabilities from a probe: what `hardware.profile = "auto"` resolves with.
//!
//! On an NVIDIA GPU (the first visible device; Ferrum's capabilities describe one device):
//! - `backend` `cuda`; `compute_capability` and `sm_count` as probed;
//! - `vram_bytes`: the driver's total rounded to the nearest GiB. The driver reports the
//!   memory left after its own reservations (an RTX 4090: 25,757,220,864 bytes, 23.99 GiB),
//!   while Ferrum's profiles state the nominal size (`rtx4090_cuda`: 24 GiB) and size the KV
//!   pool from it; rounding recovers the nominal size within 0.5 GiB and the exact bytes stay in
//!   the probe (`host.gpus`);
//! - `supported_dtypes` `fp16, fp32` (Ferrum has no bf16: `FERRUM_DTYPE=bf16` is invalid);
//!   `supported_kv_dtypes` `fp16` plus `int8` from compute capability 6.1 (the int8 dot-product
//!   instructions its int8 KV kernels need);
//! - `graph_support` from compute capability 5.0 (every device CUDA 12 drivers support);
//! - `cuda_runtime` stays absent: it is the CUDA runtime Ferrum was built against, which a
//!   device probe cannot know (Ferrum's own `rtx4090_cuda` leaves it absent too);
//! - `compiled_features`: the M3 fast path without FA2, the features of a default CUDA build of
//!   Ferrum (as the `rtx4090` profile); a preset's `compiled_features` overrides them.
//!
//! Without a GPU it is the CPU profile, exactly as before the probe existed.

use crate::config::capabilities::{CompiledKernelFeatures, HardwareCapabilities, GIB};

use super::{GpuInfo, HardwareProbe};

/// Hardware capabilities of a probed machine.
pub fn hardware_capabilities(probe: &HardwareProbe) -> HardwareCapabilities {
    match probe.gpus.first() {
        Some(gpu) => gpu_capabilities(gpu),
        None => HardwareCapabilities::cpu(CompiledKernelFeatures::default()),
    }
}

/// Capabilities of one CUDA device.
pub fn gpu_capabilities(gpu: &GpuInfo) -> HardwareCapabilities {
    let cc = gpu.compute_capability_pair().unwrap_or((0, 0));
    let mut kv_dtypes = vec!["fp16".to_string()];
    if cc >= (6, 1) {
        kv_dtypes.push("int8".to_string());
    }
    HardwareCapabilities {
        backend: "cuda".to_string(),
        cuda_runtime: None,
        compute_capability: Some(gpu.compute_capability.clone()),
        vram_bytes: Some(nominal_vram_bytes(gpu.memory_total_bytes)),
        sm_count: Some(gpu.sm_count),
        supported_dtypes: vec!["fp16".to_string(), "fp32".to_string()],
        supported_kv_dtypes: kv_dtypes,
        graph_support: cc >= (5, 0),
        compiled_features: CompiledKernelFeatures::m3_fast_path_without_fa2(),
    }
}

/// Total device memory rounded to the nearest GiB (at least 1 GiB for a non-empty device).
pub fn nominal_vram_bytes(total_bytes: u64) -> u64 {
    if total_bytes == 0 {
        return 0;
    }
    (total_bytes.saturating_add(GIB / 2) / GIB).max(1) * GIB
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::tests::rtx4090_probe;

    #[test]
    fn an_rtx4090_probe_is_the_rtx4090_profile() {
        let probe = rtx4090_probe();
        assert_eq!(
            hardware_capabilities(&probe),
            HardwareCapabilities::profile("rtx4090").unwrap()
        );
    }

    #[test]
    fn nominal_memory_rounds_to_the_nearest_gib() {
        assert_eq!(nominal_vram_bytes(25_757_220_864), 24 * GIB); // RTX 4090
        assert_eq!(nominal_vram_bytes(85_520_809_984), 80 * GIB); // H100 80GB
        assert_eq!(nominal_vram_bytes(24 * GIB + GIB / 2 - 1), 24 * GIB);
        assert_eq!(nominal_vram_bytes(24 * GIB + GIB / 2), 25 * GIB);
        assert_eq!(nominal_vram_bytes(100 << 20), GIB);
        assert_eq!(nominal_vram_bytes(0), 0);
    }

    #[test]
    fn older_devices_lose_int8_kv_and_no_gpu_is_the_cpu_profile() {
        let mut gpu = rtx4090_probe().gpus.remove(0);
        gpu.compute_capability = "6.0".to_string();
        let caps = gpu_capabilities(&gpu);
        assert_eq!(caps.supported_kv_dtypes, vec!["fp16"]);
        assert!(caps.graph_support);
        gpu.compute_capability = "garbage".to_string();
        assert!(!gpu_capabilities(&gpu).graph_support);
        let mut probe = rtx4090_probe();
        probe.gpus.clear();
        assert_eq!(
            hardware_capabilities(&probe),
            HardwareCapabilities::cpu(CompiledKernelFeatures::default())
        );
    }
}
