//! CPU facts: model, logical cores, memory, OS (the manifest's host fields) plus the vector
//! extensions the reference engine's CPU kernels can use.

use serde::{Deserialize, Serialize};

/// The CPU side of a probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuFacts {
    /// CPU model (`/proc/cpuinfo` `model name`), or `unknown`.
    pub model: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Physical memory in bytes, 0 if unknown.
    pub memory_bytes: u64,
    /// OS and architecture.
    pub os: String,
    /// Vector extensions detected at run time (`avx2`, `fma`, `avx512f`, `neon`).
    #[serde(default)]
    pub vector_extensions: Vec<String>,
}

/// Facts of this machine.
pub fn facts() -> CpuFacts {
    let host = crate::results::host_info();
    CpuFacts {
        model: host.cpu_model,
        cores: host.cores,
        memory_bytes: host.memory_bytes,
        os: host.os,
        vector_extensions: vector_extensions(),
    }
}

fn vector_extensions() -> Vec<String> {
    let mut out: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            out.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            out.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            out.push("avx512f");
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            out.push("neon");
        }
    }
    out.into_iter().map(str::to_string).collect()
}
