//! Provenance captured at run time: harness version and git commit, host CPU, cores, memory, OS,
//! UTC timestamps.

use super::{HarnessInfo, HostInfo};

/// The harness's name, version and git commit *as built*: `build.rs` records `git rev-parse
/// HEAD` of the source tree at compile time (`-dirty` with local changes, `unknown` outside a
/// checkout), so a binary copied elsewhere or run after the checkout moved still names its source.
pub fn harness_info() -> HarnessInfo {
    HarnessInfo {
        name: env!("CARGO_PKG_NAME").to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("FERRUMBENCH_GIT_COMMIT").to_string(),
    }
}

/// CPU model, logical cores, memory and OS of this machine (Linux files; `unknown`/0 elsewhere);
/// `gpus` is left empty here (the manifest adds the probe's, see `Manifest::new`).
pub fn host_info() -> HostInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = field(&meminfo, "MemTotal")
        .and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let pretty = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    HostInfo {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        os: format!("{pretty} ({})", std::env::consts::ARCH),
        gpus: Vec::new(),
    }
}

/// Value of the first `key: value` line.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Current UTC time, RFC 3339 with seconds (`2026-11-22T00:50:00Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_style_fields() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nMemTotal:       24576000 kB\n";
        assert_eq!(field(text, "model name").as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(field(text, "MemTotal").as_deref(), Some("24576000 kB"));
        assert_eq!(field(text, "nothing"), None);
        let h = host_info();
        assert!(h.cores >= 1);
        assert!(!h.os.is_empty());
        let g = harness_info();
        assert_eq!(g.name, "ferrum-bench");
        assert!(!g.git_commit.is_empty());
        assert!(now_rfc3339().ends_with('Z'));
    }
}
