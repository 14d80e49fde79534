//! What this machine is: every visible NVIDIA GPU (through the CUDA driver API and NVML, both
//! loaded at run time so the binary builds and runs without CUDA) and the CPU facts.
//!
//! The probe never holds a CUDA context: device facts come from the driver's `cuDevice*` queries
//! and NVML, so probing before starting a server takes no device memory. A missing `libcuda` or
//! `libnvidia-ml` is a normal outcome ("no CUDA device"), never a panic: cudarc panics when a
//! library is absent, so the probe asks `is_culib_present()` first.
//!
//! `hardware.profile = "auto"` uses [`auto_capabilities`] (see [`capabilities`]); every manifest
//! records [`gpus_for_manifest`] under `host.gpus`.

pub mod capabilities;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
mod nvml;

use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use capabilities::hardware_capabilities;
pub use cpu::CpuFacts;

/// Environment variable naming a probe file (the JSON of `ferrum-bench hardware --format json`)
/// to use instead of probing this machine: resolve as if on another machine, and the hook the
/// tests inject a GPU through. Not `FERRUM_*`, so it is never mistaken for an engine knob.
pub const PROBE_FILE_ENV: &str = "FERRUMBENCH_PROBE_FILE";

/// Probe schema version (additive changes keep it).
pub const PROBE_SCHEMA_VERSION: u32 = 1;

/// One visible GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// CUDA device ordinal (after `CUDA_VISIBLE_DEVICES`).
    pub index: u32,
    /// Device name, e.g. `NVIDIA GeForce RTX 4090`.
    pub name: String,
    /// Compute capability, `major.minor`.
    pub compute_capability: String,
    /// Total device memory in bytes as the driver reports it.
    pub memory_total_bytes: u64,
    /// Free device memory in bytes (NVML; absent without NVML, since the driver API needs a
    /// context to tell).
    #[serde(default)]
    pub memory_free_bytes: Option<u64>,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Current SM clock in MHz (NVML).
    #[serde(default)]
    pub sm_clock_mhz: Option<u32>,
    /// Maximum SM clock in MHz (NVML; the driver API's value when NVML is absent).
    #[serde(default)]
    pub sm_clock_max_mhz: Option<u32>,
    /// Current memory clock in MHz (NVML).
    #[serde(default)]
    pub memory_clock_mhz: Option<u32>,
    /// Enforced power limit in watts (NVML).
    #[serde(default)]
    pub power_limit_w: Option<f64>,
    /// Persistence mode (NVML; Linux only).
    #[serde(default)]
    pub persistence_mode: Option<bool>,
    /// Whether the clocks are held by a user setting (`nvidia-smi -lgc` or application clocks):
    /// NVML reports the "applications clocks setting" clock-event reason, which `-lgc` and application clocks set. `None` without NVML.
    #[serde(default)]
    pub clocks_locked: Option<bool>,
    /// Active clock-event (throttle) reasons, NVML's names in snake case (`sw_power_cap`, ...).
    #[serde(default)]
    pub throttle_reasons: Vec<String>,
}

impl GpuInfo {
    /// `(major, minor)` of the compute capability.
    pub fn compute_capability_pair(&self) -> Option<(u32, u32)> {
        let (major, minor) = self.compute_capability.split_once('.')?;
        Some((major.trim().parse().ok()?, minor.trim().parse().ok()?))
    }

    /// Noise a user can remove: clocks not locked, or a performance-limiting throttle reason.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let label = format!("GPU {} ({})", self.index, self.name);
        if self.clocks_locked == Some(false) {
            out.push(format!(
                "{label}: clocks are not locked, so boost clocks vary between runs; lock them (e.g. `sudo nvidia-smi -i {} -lgc <MHz>,<MHz>`) for comparable numbers",
                self.index
            ));
        }
        let limiting: Vec<&str> = self
            .throttle_reasons
            .iter()
            .map(String::as_str)
            .filter(|r| PERFORMANCE_LIMITING_REASONS.contains(r))
            .collect();
        if !limiting.is_empty() {
            out.push(format!(
                "{label}: throttling ({}): results are slower and noisier than the device can be",
                limiting.join(", ")
            ));
        }
        out
    }
}

/// Clock-event reasons that lower performance (idle, application-clock and display reasons do
/// not).
pub const PERFORMANCE_LIMITING_REASONS: &[&str] = &[
    "sw_power_cap",
    "hw_slowdown",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
];

/// Whether the CUDA driver could be asked, and if not, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CudaStatus {
    /// The driver answered (possibly with zero devices).
    Available {
        /// `cuDriverGetVersion` as `major.minor`: the newest CUDA the driver supports.
        cuda_driver_version: String,
    },
    /// No usable driver.
    Unavailable {
        /// e.g. `libcuda not found`.
        reason: String,
    },
}

/// Everything the probe found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareProbe {
    /// [`PROBE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// CUDA driver status.
    pub cuda: CudaStatus,
    /// NVIDIA kernel driver version (NVML), e.g. `550.54.15`.
    #[serde(default)]
    pub driver_version: Option<String>,
    /// Why NVML facts are missing, if they are.
    #[serde(default)]
    pub nvml_error: Option<String>,
    /// Visible GPUs.
    pub gpus: Vec<GpuInfo>,
    /// The CPU.
    pub cpu: CpuFacts,
}

impl HardwareProbe {
    /// A machine with no CUDA device.
    pub fn cpu_only(reason: &str, cpu: CpuFacts) -> Self {
        Self {
            schema_version: PROBE_SCHEMA_VERSION,
            cuda: CudaStatus::Unavailable {
                reason: reason.to_string(),
            },
            driver_version: None,
            nvml_error: None,
            gpus: Vec::new(),
            cpu,
        }
    }

    /// Why there is no GPU, when there is none.
    pub fn no_gpu_reason(&self) -> Option<String> {
        if !self.gpus.is_empty() {
            return None;
        }
        Some(match &self.cuda {
            CudaStatus::Unavailable { reason } => format!("no CUDA device ({reason})"),
            CudaStatus::Available { .. } => {
                "no CUDA device (the driver reports 0 devices; check CUDA_VISIBLE_DEVICES)"
                    .to_string()
            }
        })
    }

    /// Warnings of every GPU.
    pub fn warnings(&self) -> Vec<String> {
        self.gpus.iter().flat_map(GpuInfo::warnings).collect()
    }

    /// Reads a probe file (`ferrum-bench hardware --format json`).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read probe file {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "probe file {} is not a `ferrum-bench hardware --format json` document: {e}",
                path.display()
            )
        })
    }
}

/// Probes this machine now (driver, NVML, CPU). Never panics for a missing library.
#[cfg(not(feature = "cuda"))]
pub fn probe() -> HardwareProbe {
    HardwareProbe::cpu_only(
        "this build has no CUDA support: cargo feature `cuda` is off",
        cpu::facts(),
    )
}

/// Probes this machine now (driver, NVML, CPU). Never panics for a missing library.
#[cfg(feature = "cuda")]
pub fn probe() -> HardwareProbe {
    let cpu = cpu::facts();
    let cuda = match cuda::probe() {
        Ok(found) => found,
        Err(reason) => return HardwareProbe::cpu_only(&reason, cpu),
    };
    let mut gpus = cuda.gpus;
    let (driver_version, nvml_error) = match nvml::enrich(&mut gpus) {
        Ok(driver) => (driver, None),
        Err(err) => (None, Some(err)),
    };
    HardwareProbe {
        schema_version: PROBE_SCHEMA_VERSION,
        cuda: CudaStatus::Available {
            cuda_driver_version: cuda.driver_version,
        },
        driver_version,
        nvml_error,
        gpus,
        cpu,
    }
}

/// The probe this process uses: the file named by [`PROBE_FILE_ENV`] if set, else [`probe`],
/// once per process (the driver is slow to initialise, and every cell must see the same
/// machine).
pub fn current() -> Result<&'static HardwareProbe, String> {
    static PROBE: OnceLock<Result<HardwareProbe, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| match std::env::var_os(PROBE_FILE_ENV) {
            Some(path) if !path.is_empty() => HardwareProbe::from_file(Path::new(&path))
                .map_err(|e| format!("{e} (from {PROBE_FILE_ENV})")),
            _ => Ok(probe()),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The GPUs recorded in a manifest's `host.gpus` (none when the probe failed).
pub fn gpus_for_manifest() -> Vec<GpuInfo> {
    current().map(|p| p.gpus.clone()).unwrap_or_default()
}

/// Noise warnings for a run's start (clocks not locked, throttling), one line each.
pub fn noise_warnings() -> Vec<String> {
    current().map(HardwareProbe::warnings).unwrap_or_default()
}

/// Hardware capabilities for `hardware.profile = "auto"`: this machine's probe mapped by
/// [`hardware_capabilities`]. A probe file that cannot be read falls back to the CPU profile
/// with the reason on stderr (the profile lookup has no error channel, and `hardware` reports
/// the same error).
pub fn auto_capabilities() -> crate::config::capabilities::HardwareCapabilities {
    match current() {
        Ok(probe) => hardware_capabilities(probe),
        Err(err) => {
            static ONCE: OnceLock<()> = OnceLock::new();
            ONCE.get_or_init(|| eprintln!("warning: {err}; `auto` resolves as a CPU"));
            crate::config::capabilities::HardwareCapabilities::cpu(Default::default())
        }
    }
}

#[cfg(test)]
mod tests;
