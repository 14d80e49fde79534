//! `ferrum-bench hardware` and `hardware.profile = "auto"` with an injected probe.

use super::{bin, repo};

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn cpu_machine_says_there_is_no_gpu() {
    let out = bin().arg("hardware").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("no CUDA device (libcuda not found)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("CPU: AMD EPYC (2 logical cores"),
        "{stdout}"
    );
    assert!(stdout.contains("resolves as: backend cpu"), "{stdout}");
}

#[test]
fn probing_this_machine_works() {
    let out = bin()
        .env_remove("FERRUMBENCH_PROBE_FILE")
        .args(["hardware", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert!(doc["cpu"]["cores"].as_u64().unwrap() >= 1);
    if doc["gpus"].as_array().unwrap().is_empty() {
        assert_eq!(doc["cuda"]["status"], "unavailable", "{doc}");
    }
}

#[test]
fn injected_rtx4090_resolves_m3_exactly_like_the_rtx4090_profile() {
    let probe = repo("tests/fixtures/probe_rtx4090.json");
    let preset = repo("presets/m3.toml");
    for (format, golden) in [
        ("json", "m3_rtx4090.effective_config.json"),
        ("jsonl", "m3_rtx4090.decision_trace.jsonl"),
    ] {
        let out = bin()
            .env("FERRUMBENCH_PROBE_FILE", &probe)
            .arg("resolve")
            .arg(&preset)
            .args(["--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let expected = std::fs::read(repo(&format!("tests/golden/{golden}"))).unwrap();
        assert!(out.stdout == expected, "{format} differs from {golden}");
    }
}

#[test]
fn injected_gpu_is_described_with_its_noise_warnings() {
    let out = bin()
        .env(
            "FERRUMBENCH_PROBE_FILE",
            repo("tests/fixtures/probe_rtx4090.json"),
        )
        .arg("hardware")
        .output()
        .unwrap();
    assert!(out.status.success());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("GPU 0: NVIDIA GeForce RTX 4090"),
        "{stdout}"
    );
    assert!(
        stdout.contains("compute capability 8.9, 128 SMs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("power limit: 450 W; persistence mode: on"),
        "{stdout}"
    );
    assert!(
        stdout.contains("backend cuda, compute capability 8.9, 24.00 GiB VRAM"),
        "{stdout}"
    );
    assert!(stderr.contains("clocks are not locked"), "{stderr}");
    assert!(stderr.contains("throttling (sw_power_cap)"), "{stderr}");
    let json = bin()
        .env(
            "FERRUMBENCH_PROBE_FILE",
            repo("tests/fixtures/probe_rtx4090.json"),
        )
        .args(["hardware", "--format", "json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["gpus"][0]["memory_total_bytes"], 25_757_220_864u64);
}

#[test]
fn unreadable_probe_file_is_a_usage_error_naming_it() {
    let out = bin()
        .env("FERRUMBENCH_PROBE_FILE", "/nonexistent/probe.json")
        .arg("hardware")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("/nonexistent/probe.json"), "{stderr}");
    assert!(stderr.contains("FERRUMBENCH_PROBE_FILE"), "{stderr}");
}
