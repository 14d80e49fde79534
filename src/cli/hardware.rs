//! `ferrum-bench hardware`: print what the probe sees (GPUs or why there are none, the CPU, and
//! the capabilities `hardware.profile = "auto"` resolves with).

use clap::ValueEnum;

use crate::error::Error;
use crate::hardware::{self, CudaStatus, HardwareProbe};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Table,
    /// The probe document (pretty JSON; the input `FERRUMBENCH_PROBE_FILE` accepts).
    Json,
}

/// `hardware` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Runs `hardware`.
pub fn run(args: Args) -> Result<i32, Error> {
    let probe = hardware::current().map_err(Error::Usage)?;
    let text = match args.format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(probe)
                .map_err(|e| Error::Usage(format!("cannot serialise the hardware probe: {e}")))?;
            text.push('\n');
            text
        }
        Format::Table => {
            for warning in probe.warnings() {
                eprintln!("warning: {warning}");
            }
            table(probe)
        }
    };
    super::print_stdout(&text)?;
    Ok(crate::error::EXIT_OK)
}

fn table(probe: &HardwareProbe) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    match &probe.cuda {
        CudaStatus::Available {
            cuda_driver_version,
        } => line(format!(
            "CUDA driver: supports CUDA {cuda_driver_version}; NVIDIA driver {}",
            probe.driver_version.as_deref().unwrap_or("unknown")
        )),
        CudaStatus::Unavailable { .. } => {}
    }
    if let Some(reason) = probe.no_gpu_reason() {
        line(reason);
    }
    if let Some(err) = &probe.nvml_error {
        line(format!("(clocks, power and free memory unknown: {err})"));
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_string());
    for gpu in &probe.gpus {
        line(format!("GPU {}: {}", gpu.index, gpu.name));
        line(format!(
            "  compute capability {}, {} SMs",
            gpu.compute_capability, gpu.sm_count
        ));
        line(format!(
            "  memory: {} total, {} free",
            gib(gpu.memory_total_bytes),
            opt(gpu.memory_free_bytes.map(gib))
        ));
        line(format!(
            "  SM clock: {} MHz now, {} MHz max; memory clock {} MHz; clocks locked: {}",
            opt(gpu.sm_clock_mhz.map(|v| v.to_string())),
            opt(gpu.sm_clock_max_mhz.map(|v| v.to_string())),
            opt(gpu.memory_clock_mhz.map(|v| v.to_string())),
            opt(gpu
                .clocks_locked
                .map(|v| if v { "yes" } else { "no" }.to_string()))
        ));
        line(format!(
            "  power limit: {} W; persistence mode: {}; clock-event reasons: {}",
            opt(gpu.power_limit_w.map(|w| format!("{w:.0}"))),
            opt(gpu
                .persistence_mode
                .map(|v| if v { "on" } else { "off" }.to_string())),
            if gpu.throttle_reasons.is_empty() {
                "none".to_string()
            } else {
                gpu.throttle_reasons.join(", ")
            }
        ));
    }
    let cpu = &probe.cpu;
    line(format!(
        "CPU: {} ({} logical cores, {} memory, {}; vector: {})",
        cpu.model,
        cpu.cores,
        gib(cpu.memory_bytes),
        cpu.os,
        if cpu.vector_extensions.is_empty() {
            "none".to_string()
        } else {
            cpu.vector_extensions.join(", ")
        }
    ));
    let caps = hardware::hardware_capabilities(probe);
    line(format!(
        "hardware.profile = \"auto\" resolves as: backend {}{}",
        caps.backend,
        match (&caps.compute_capability, caps.vram_bytes, caps.sm_count) {
            (Some(cc), Some(vram), Some(sm)) =>
                format!(", compute capability {cc}, {} VRAM, {sm} SMs", gib(vram)),
            _ => String::new(),
        }
    ));
    out
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}
