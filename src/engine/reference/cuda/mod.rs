//! The CUDA backend of the reference engine: the same scheduler, KV bookkeeping and counters as
//! the CPU backend (see [`super::scheduler`] and [`super::executor`]), with the forward pass in
//! `kernels/*.cu` compiled at engine start by NVRTC for the device's architecture.
//!
//! Everything here builds without CUDA (cudarc loads `libcuda`/`libnvrtc` at run time); what
//! does not need a device — kernel compilation and its register/spill check ([`kernels`]), the
//! device weight stream ([`stream`]), the memory check ([`memory`]) and launch shapes
//! ([`launch`]) — is unit tested on CPU machines.
//!
//! Status: the device executor that strings these kernels into the forward pass is not part of
//! this build yet, so `[engine] device = "cuda"` is an error that says so and `auto` runs on the
//! CPU (see README, "GPU").

#[cfg(feature = "cuda")]
pub mod device;
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod launch;
pub mod memory;
pub mod stream;

/// Why the CUDA forward cannot run in this process (`None` when it can).
pub fn unavailable_reason() -> Option<String> {
    if !cfg!(feature = "cuda") {
        return Some("this build has no CUDA backend (cargo feature `cuda` is off)".to_string());
    }
    match crate::hardware::current() {
        Err(err) => Some(err),
        Ok(probe) => Some(probe.no_gpu_reason().unwrap_or_else(|| {
            "the CUDA forward executor is not part of this build yet (its kernels compile: `ferrum-bench kernels`)".to_string()
        })),
    }
}
