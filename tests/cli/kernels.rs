#![cfg(feature = "cuda")]
//! `ferrum-bench kernels`: every CUDA kernel compiles with NVRTC for sm_80, sm_89 and sm_90
//! with zero register spills (`ptxas -v`), no GPU needed.
//!
//! libnvrtc and ptxas come from the PyPI wheels (`scripts/cuda-tools.sh`, which `.ci/run` runs).
//! Under CI (`CI` set) missing tools fail the test; in a plain local `cargo test` they skip it
//! with a message, because the README's test command must pass on a fresh clone without Python
//! wheels, and CI is where the check is enforced.

use std::path::PathBuf;

use super::bin;

/// `(libnvrtc directory, ptxas)`, from the environment `scripts/cuda-tools.sh` prints or its
/// default venv.
fn tools() -> Option<(PathBuf, PathBuf)> {
    if let (Some(lib), Some(ptxas)) = (
        std::env::var_os("FERRUMBENCH_NVRTC_LIB_DIR"),
        std::env::var_os("FERRUMBENCH_PTXAS"),
    ) {
        let (lib, ptxas) = (PathBuf::from(lib), PathBuf::from(ptxas));
        if lib.join("libnvrtc.so.12").exists() && ptxas.exists() {
            return Some((lib, ptxas));
        }
    }
    let venv = std::env::var_os("FERRUMBENCH_CUDA_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/ferrum-bench/cuda-tools"))
        })?;
    let lib_dir = std::fs::read_dir(venv.join("lib")).ok()?;
    for entry in lib_dir.flatten() {
        let nvidia = entry.path().join("site-packages/nvidia");
        let lib = nvidia.join("cuda_nvrtc/lib");
        let ptxas = nvidia.join("cuda_nvcc/bin/ptxas");
        if lib.join("libnvrtc.so.12").exists() && ptxas.exists() {
            return Some((lib, ptxas));
        }
    }
    None
}

fn tools_or_skip() -> Option<(PathBuf, PathBuf)> {
    let found = tools();
    if found.is_none() {
        let msg = "libnvrtc/ptxas not found: run `eval \"$(bash scripts/cuda-tools.sh)\"`";
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg} (required under CI)"
        );
        eprintln!("skipped: {msg}");
    }
    found
}

#[test]
fn every_kernel_compiles_for_three_arches_without_spills() {
    let Some((lib, ptxas)) = tools_or_skip() else {
        return;
    };
    let out = bin()
        .env("LD_LIBRARY_PATH", &lib)
        .args(["kernels", "--format", "json", "--ptxas"])
        .arg(&ptxas)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    // 6 kernel files x sm_80, sm_89, sm_90.
    assert_eq!(reports.len(), 18);
    let mut kernels = 0;
    for r in reports {
        assert!(r["cubin_bytes"].as_u64().unwrap() > 0, "{r}");
        for k in r["kernels"].as_array().unwrap() {
            kernels += 1;
            assert_eq!(k["spill_stores"], 0, "{r}");
            assert_eq!(k["spill_loads"], 0, "{r}");
            assert!(k["registers"].as_u64().unwrap() > 0, "{k}");
        }
    }
    // Every entry point of the forward, for every arch.
    assert_eq!(kernels, 26 * 3);
}

#[test]
fn a_kernel_that_does_not_compile_fails_with_the_nvrtc_log() {
    let Some((lib, ptxas)) = tools_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.cu"),
        "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }\n",
    )
    .unwrap();
    let out = bin()
        .env("LD_LIBRARY_PATH", &lib)
        .args(["kernels", "--arch", "sm_89", "--ptxas"])
        .arg(&ptxas)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.cu (sm_89): NVRTC compile error"),
        "{stderr}"
    );
    assert!(stderr.contains("undefined_name"), "{stderr}");
}

#[test]
fn a_spilling_kernel_is_a_negative_verdict() {
    let Some((lib, ptxas)) = tools_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 512 live values under the register cap of `__launch_bounds__(1024, 2)` must spill.
    std::fs::write(
        dir.path().join("spill.cu"),
        r#"extern "C" __global__ void __launch_bounds__(1024, 2) spill(const float* x, float* y, int n) {
    float v[512];
#pragma unroll
    for (int i = 0; i < 512; ++i) v[i] = x[i * n + threadIdx.x];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 512; ++i) s += v[i] * v[511 - i];
    y[threadIdx.x] = s;
}
"#,
    )
    .unwrap();
    let out = bin()
        .env("LD_LIBRARY_PATH", &lib)
        .args(["kernels", "--arch", "sm_89", "--ptxas"])
        .arg(&ptxas)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("register spill: spill.cu (sm_89) spill"),
        "{stderr}"
    );
}
