//! Clocks, power, persistence, throttle reasons, free memory and the driver version from NVML
//! (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time and reports its absence as an
//! error).

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::Nvml;

use super::GpuInfo;

/// Adds NVML facts to `gpus` (matched by ordinal: NVML and CUDA enumerate in PCI order under
/// the default `CUDA_DEVICE_ORDER`; a differing name leaves that GPU untouched). Returns the
/// driver version, or why NVML could not be used.
pub fn enrich(gpus: &mut [GpuInfo]) -> Result<Option<String>, String> {
    let nvml = Nvml::init().map_err(|e| format!("NVML unavailable: {e}"))?;
    let driver = nvml.sys_driver_version().ok();
    for gpu in gpus.iter_mut() {
        let Ok(device) = nvml.device_by_index(gpu.index) else {
            continue;
        };
        if device.name().is_ok_and(|name| name != gpu.name) {
            continue;
        }
        if let Ok(memory) = device.memory_info() {
            gpu.memory_free_bytes = Some(memory.free);
        }
        gpu.sm_clock_mhz = device.clock_info(Clock::SM).ok();
        if let Ok(max) = device.max_clock_info(Clock::SM) {
            gpu.sm_clock_max_mhz = Some(max);
        }
        gpu.memory_clock_mhz = device.clock_info(Clock::Memory).ok();
        gpu.power_limit_w = device
            .power_management_limit()
            .ok()
            .map(|mw| f64::from(mw) / 1000.0);
        gpu.persistence_mode = device.is_in_persistent_mode().ok();
        if let Ok(reasons) = device.current_throttle_reasons() {
            gpu.clocks_locked =
                Some(reasons.contains(ThrottleReasons::APPLICATIONS_CLOCKS_SETTING));
            gpu.throttle_reasons = reason_names(reasons);
        }
    }
    Ok(driver)
}

/// NVML's clock-event reasons in snake case.
pub fn reason_names(reasons: ThrottleReasons) -> Vec<String> {
    [
        (ThrottleReasons::GPU_IDLE, "gpu_idle"),
        (
            ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
            "applications_clocks_setting",
        ),
        (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
        (ThrottleReasons::SYNC_BOOST, "sync_boost"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
        (
            ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
            "hw_power_brake_slowdown",
        ),
        (
            ThrottleReasons::DISPLAY_CLOCK_SETTING,
            "display_clock_setting",
        ),
    ]
    .into_iter()
    .filter(|(bit, _)| reasons.contains(*bit))
    .map(|(_, name)| name.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_named_in_bit_order() {
        let r = ThrottleReasons::SW_POWER_CAP | ThrottleReasons::GPU_IDLE;
        assert_eq!(reason_names(r), vec!["gpu_idle", "sw_power_cap"]);
        assert!(reason_names(ThrottleReasons::empty()).is_empty());
    }
}
