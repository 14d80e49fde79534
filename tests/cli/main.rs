//! Integration tests: drive the real `ferrum-bench` binary. One test binary, one module per
//! command.

mod compare;
mod hardware;
mod http;
mod kernels;
mod knobs;
mod merge;
mod misread;
mod ranking;
mod real_ferrum;
mod report;
mod resolve;
mod scripts;
mod sweep;
mod trust;
mod tune;

use assert_cmd::Command;

/// The binary under test, with a clean `FERRUM_*` environment and a CPU-only hardware probe
/// (`tests/fixtures/probe_cpu.json`) so results are hermetic on GPU machines too.
pub fn bin() -> Command {
    let mut cmd = Command::cargo_bin("ferrum-bench").expect("binary built");
    cmd.env(
        "FERRUMBENCH_PROBE_FILE",
        repo("tests/fixtures/probe_cpu.json"),
    );
    for (key, _) in std::env::vars() {
        if key.starts_with("FERRUM_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Path of a file in the repository.
pub fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The single run directory under a results root (after the run finished).
pub fn run_dir(root: &std::path::Path) -> std::path::PathBuf {
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}
