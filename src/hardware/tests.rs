//! Probe tests: the injected RTX 4090 probe (the same file the CLI test injects), warnings,
//! reasons, and a real probe of this machine.

use super::*;

/// A recorded-shape RTX 4090 probe (driver-reported memory of a 24 GB card, clocks unlocked,
/// power-capped).
pub fn rtx4090_probe() -> HardwareProbe {
    serde_json::from_str(include_str!("../../tests/fixtures/probe_rtx4090.json"))
        .expect("fixture parses")
}

#[test]
fn probe_round_trips_through_json() {
    let probe = rtx4090_probe();
    let text = serde_json::to_string(&probe).unwrap();
    assert_eq!(serde_json::from_str::<HardwareProbe>(&text).unwrap(), probe);
    assert_eq!(probe.gpus[0].compute_capability_pair(), Some((8, 9)));
    assert_eq!(probe.no_gpu_reason(), None);
}

#[test]
fn unlocked_and_power_capped_gpu_warns_twice() {
    let probe = rtx4090_probe();
    let warnings = probe.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("clocks are not locked"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("throttling (sw_power_cap)"),
        "{}",
        warnings[1]
    );
    let mut quiet = probe.gpus[0].clone();
    quiet.clocks_locked = Some(true);
    quiet.throttle_reasons = vec!["gpu_idle".into(), "applications_clocks_setting".into()];
    assert!(quiet.warnings().is_empty());
    // Unknown lock state (no NVML) is not reported as unlocked.
    quiet.clocks_locked = None;
    assert!(quiet.warnings().is_empty());
}

#[test]
fn cpu_only_probe_says_why() {
    let probe = HardwareProbe::cpu_only("libcuda not found", cpu::facts());
    assert_eq!(
        probe.no_gpu_reason().as_deref(),
        Some("no CUDA device (libcuda not found)")
    );
    let mut zero = probe.clone();
    zero.cuda = CudaStatus::Available {
        cuda_driver_version: "12.8".into(),
    };
    assert!(zero.no_gpu_reason().unwrap().contains("0 devices"));
}

#[test]
fn probing_this_machine_never_panics() {
    let probe = probe();
    assert!(probe.cpu.cores >= 1);
    match &probe.cuda {
        CudaStatus::Unavailable { reason } => {
            assert!(probe.gpus.is_empty());
            assert!(!reason.is_empty());
        }
        CudaStatus::Available {
            cuda_driver_version,
        } => assert!(cuda_driver_version.contains('.')),
    }
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_versions_format_like_nvidia_smi() {
    assert_eq!(cuda::format_cuda_version(12080), "12.8");
    assert_eq!(cuda::format_cuda_version(12040), "12.4");
    assert_eq!(cuda::format_cuda_version(11020), "11.2");
}

#[test]
fn bad_probe_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.json");
    std::fs::write(&path, "{}").unwrap();
    let err = HardwareProbe::from_file(&path).unwrap_err();
    assert!(err.contains("probe.json"), "{err}");
    let err = HardwareProbe::from_file(&dir.path().join("missing.json")).unwrap_err();
    assert!(err.contains("cannot read"), "{err}");
}
