//! GPU clocks and clock-event (throttle) reasons for the noise monitor, read through NVML when
//! the hardware probe found NVIDIA GPUs. A GPU that lowers its SM clock (power cap, thermal
//! slowdown, a hardware brake) during a repeat makes that repeat slower for reasons that have
//! nothing to do with the knobs, exactly like CPU steal does on the host.
//!
//! Readings are reduced to what the flags need, so [`super::Reading`] stays a plain value: the
//! lowest SM clock across the GPUs and the union of NVML's reason bits. Reason bits are NVML's
//! `nvmlClocksEventReasons` values (stable across driver versions).

/// NVML's clock-event reason bits and their snake-case names, in bit order.
pub const REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// The reasons that mean "the GPU ran slower than it could" (power cap, thermal, hardware
/// slowdown or power brake). Idle, locked application clocks, sync boost and display settings are
/// not interference.
pub const SLOWDOWN_BITS: u64 = 0x4 | 0x8 | 0x20 | 0x40 | 0x80;

/// One reading of every visible GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuReading {
    /// Lowest current SM clock across the GPUs, MHz.
    pub sm_mhz_min: Option<f64>,
    /// Union of the GPUs' current clock-event reason bits.
    pub reason_bits: u64,
}

/// Names of the slowdown reasons among `bits`, in bit order.
pub fn slowdown_names(bits: u64) -> Vec<String> {
    REASONS
        .iter()
        .filter(|(bit, _)| bits & bit & SLOWDOWN_BITS != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// Read the GPUs now: `None` without NVIDIA GPUs (the hardware probe found none) or without NVML.
pub fn read() -> Option<GpuReading> {
    let gpus = crate::hardware::current().ok()?.gpus.len();
    if gpus == 0 {
        return None;
    }
    read_nvml(gpus)
}

#[cfg(feature = "cuda")]
fn read_nvml(gpus: usize) -> Option<GpuReading> {
    use nvml_wrapper::enum_wrappers::device::Clock;
    use nvml_wrapper::Nvml;
    use std::sync::OnceLock;
    // NVML is initialised once per process (loading the library and attaching to the driver
    // takes milliseconds; a reading is taken around every repeat).
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    let nvml = NVML.get_or_init(|| Nvml::init().ok()).as_ref()?;
    let mut out = GpuReading::default();
    for index in 0..gpus as u32 {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        if let Ok(mhz) = device.clock_info(Clock::SM) {
            let mhz = f64::from(mhz);
            out.sm_mhz_min = Some(out.sm_mhz_min.map_or(mhz, |m| m.min(mhz)));
        }
        if let Ok(reasons) = device.current_throttle_reasons() {
            out.reason_bits |= reasons.bits();
        }
    }
    Some(out)
}

#[cfg(not(feature = "cuda"))]
fn read_nvml(_gpus: usize) -> Option<GpuReading> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slowdown_reasons_are_named() {
        assert_eq!(
            slowdown_names(0x1 | 0x2 | 0x4 | 0x40),
            vec!["sw_power_cap", "hw_thermal_slowdown"]
        );
        assert!(slowdown_names(0x1 | 0x2 | 0x10 | 0x100).is_empty());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn reason_bits_match_nvml() {
        use nvml_wrapper::bitmasks::device::ThrottleReasons as R;
        let nvml = [
            (R::GPU_IDLE, "gpu_idle"),
            (
                R::APPLICATIONS_CLOCKS_SETTING,
                "applications_clocks_setting",
            ),
            (R::SW_POWER_CAP, "sw_power_cap"),
            (R::HW_SLOWDOWN, "hw_slowdown"),
            (R::SYNC_BOOST, "sync_boost"),
            (R::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
            (R::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
            (R::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake_slowdown"),
            (R::DISPLAY_CLOCK_SETTING, "display_clock_setting"),
        ];
        for ((bit, name), (nbit, nname)) in REASONS.iter().zip(nvml) {
            assert_eq!((*bit, *name), (nbit.bits(), nname));
        }
    }
}
