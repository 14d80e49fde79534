//! The CUDA backend of the reference engine: the same scheduler, KV bookkeeping and counters as
//! the CPU backend (see [`super::scheduler`] and [`super::executor`]), with the forward pass in
//! `kernels/*.cu` compiled at engine start by NVRTC for the device's architecture.
//!
//! Everything here builds without CUDA (cudarc loads `libcuda`/`libnvrtc` at run time); what
//! does not need a device — kernel compilation and its register/spill check ([`kernels`]), the
//! device weight stream ([`stream`]), the memory check ([`memory`]), the stages of a layer split
//! and their devices ([`stages`]) and its pipeline ([`split`]), launch shapes ([`launch`])
//! and the host-side plan of a call ([`plan`]: upload layout, workspace sizes, per-call launch
//! shapes, expert grouping) — is unit tested on CPU machines. The device parts
//! (`device_weights`, `executor`, `engine`) are checked against the CPU engine by the GPU tests
//! (`gpu_tests`, `gpu_parity`), which skip without a device.

#[cfg(feature = "cuda")]
pub mod device;
#[cfg(feature = "cuda")]
pub mod device_weights;
#[cfg(feature = "cuda")]
pub mod engine;
#[cfg(feature = "cuda")]
pub mod executor;
#[cfg(feature = "cuda")]
pub mod gpu;
#[cfg(all(test, feature = "cuda"))]
mod gpu_parity;
#[cfg(all(test, feature = "cuda"))]
mod gpu_split;
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod launch;
pub mod memory;
pub mod plan;
pub mod split;
pub mod stages;
pub mod stream;

use super::{EngineKnobs, EngineSpec};
use crate::engine::{Engine, EngineError};

/// Why the CUDA forward cannot run in this process (`None` when it can): no `cuda` feature, no
/// device (with the probe's reason), or no libnvrtc to compile the kernels.
pub fn unavailable_reason() -> Option<String> {
    #[cfg(not(feature = "cuda"))]
    {
        Some("this build has no CUDA backend (cargo feature `cuda` is off)".to_string())
    }
    #[cfg(feature = "cuda")]
    match crate::hardware::current() {
        Err(err) => Some(err),
        Ok(probe) => probe
            .no_gpu_reason()
            .or_else(|| (!kernels::nvrtc_present()).then(|| kernels::NVRTC_MISSING.to_string())),
    }
}

/// Starts the reference engine on CUDA: device 0, or the devices of a two-stage layer split
/// (see [`stages::map_devices`]).
pub fn start(spec: &EngineSpec, knobs: &EngineKnobs) -> Result<Box<dyn Engine>, EngineError> {
    #[cfg(feature = "cuda")]
    {
        Ok(Box::new(engine::CudaEngine::new(spec, knobs)?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (spec, knobs);
        Err(EngineError::Config(
            unavailable_reason().unwrap_or_default() + ": set [engine] device = \"cpu\"",
        ))
    }
}
