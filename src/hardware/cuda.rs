//! Device facts from the CUDA driver API (cudarc's `result`/`sys` layers, loaded at run time).
//! No context is created, so the probe takes no device memory.

use cudarc::driver::{result, sys};

use super::GpuInfo;

/// What the driver reports.
pub struct DriverProbe {
    /// `cuDriverGetVersion` as `major.minor`.
    pub driver_version: String,
    /// Visible devices.
    pub gpus: Vec<GpuInfo>,
}

/// Probes the driver; `Err` says why there is no CUDA (`libcuda not found`, `cuInit failed: ...`).
pub fn probe() -> Result<DriverProbe, String> {
    // SAFETY: only tries to dlopen the library by its usual names; cudarc would panic on the
    // first driver call without it.
    if !unsafe { sys::is_culib_present() } {
        return Err("libcuda not found".to_string());
    }
    result::init().map_err(|e| format!("cuInit failed: {e}"))?;
    let mut version: std::ffi::c_int = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| format!("cuDriverGetVersion failed: {e}"))?;
    let count = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
    let mut gpus = Vec::new();
    for ordinal in 0..count {
        gpus.push(device(ordinal).map_err(|e| format!("device {ordinal}: {e}"))?);
    }
    Ok(DriverProbe {
        driver_version: format_cuda_version(version),
        gpus,
    })
}

fn device(ordinal: std::ffi::c_int) -> Result<GpuInfo, cudarc::driver::DriverError> {
    use sys::CUdevice_attribute as A;
    let dev = result::device::get(ordinal)?;
    // SAFETY: `dev` is a valid device handle from cuDeviceGet.
    let attr = |a: A| unsafe { result::device::get_attribute(dev, a) };
    let major = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let sm_count = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    // kHz.
    let clock_khz = attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE).unwrap_or(0);
    // SAFETY: as above.
    let total = unsafe { result::device::total_mem(dev) }?;
    Ok(GpuInfo {
        index: ordinal as u32,
        name: result::device::get_name(dev)?,
        compute_capability: format!("{major}.{minor}"),
        memory_total_bytes: total as u64,
        memory_free_bytes: None,
        sm_count: sm_count.max(0) as u32,
        sm_clock_mhz: None,
        sm_clock_max_mhz: (clock_khz > 0).then_some((clock_khz / 1000) as u32),
        memory_clock_mhz: None,
        power_limit_w: None,
        persistence_mode: None,
        clocks_locked: None,
        throttle_reasons: Vec::new(),
    })
}

/// `12080` → `12.8` (the driver encodes `1000·major + 10·minor`).
pub fn format_cuda_version(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}
