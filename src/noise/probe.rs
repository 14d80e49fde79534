//! Reading the machine: `/proc/stat` (CPU time by kind, all CPUs), `/proc/self/stat` (this
//! process's CPU time), `/proc/loadavg`, the CPU frequency (`cpufreq` in sysfs, else
//! `/proc/cpuinfo`) and the calibration kernel. Parsers are pure functions of the file text so
//! tests feed them constructed text; anything unreadable is `None`, never an error (a machine
//! without `/proc` simply has no noise readings).

use std::time::Instant;

use super::{CpuTimes, Probe, Reading};

/// The real machine (Linux `/proc` and sysfs).
#[derive(Debug, Default)]
pub struct ProcProbe;

impl Probe for ProcProbe {
    fn read(&mut self) -> Reading {
        Reading {
            cpu: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_proc_stat(&t)),
            own_ticks: std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|t| parse_self_stat(&t)),
            loadavg_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|t| parse_loadavg(&t)),
            cpu_mhz: sysfs_mhz().or_else(|| {
                std::fs::read_to_string("/proc/cpuinfo")
                    .ok()
                    .and_then(|t| parse_cpuinfo_mhz(&t))
            }),
            gpu: super::gpu::read(),
        }
    }

    fn calibrate(&mut self) -> Option<f64> {
        Some(calibration_ms())
    }

    fn cores(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The aggregate `cpu` line of `/proc/stat` (clock ticks): user nice system idle iowait irq
/// softirq steal [guest guest_nice] (guest time is already inside user/nice).
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        user: at(0) + at(1),
        system: at(2) + at(5) + at(6),
        idle: at(3),
        iowait: at(4),
        steal: at(7),
    })
}

/// utime + stime + cutime + cstime of `/proc/self/stat` (fields 14–17, clock ticks). The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after the last
/// `)`.
pub fn parse_self_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')' comes field 3 (state) at index 0, so field k is at index k − 3.
    let sum = (14..=17)
        .map(|k| f.get(k - 3).and_then(|x| x.parse::<i64>().ok()))
        .collect::<Option<Vec<i64>>>()?
        .into_iter()
        .sum::<i64>();
    u64::try_from(sum).ok()
}

/// The 1-minute load average.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite())
}

/// Mean of the `cpu MHz` lines of `/proc/cpuinfo`.
pub fn parse_cpuinfo_mhz(text: &str) -> Option<f64> {
    let xs: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse().ok())
        .collect();
    crate::stats::mean(&xs).filter(|x| *x > 0.0)
}

/// Mean current frequency over `/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq` (kHz).
fn sysfs_mhz() -> Option<f64> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    let xs: Vec<f64> = dir
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("cpu") && n[3..].chars().all(|c| c.is_ascii_digit()) && n.len() > 3
        })
        .filter_map(|e| {
            std::fs::read_to_string(e.path().join("cpufreq/scaling_cur_freq"))
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|khz| khz / 1000.0)
        .collect();
    crate::stats::mean(&xs).filter(|x| *x > 0.0)
}

/// Iterations of one calibration pass (about 2–4 ms on a current x86 core).
pub const CALIBRATION_ITERATIONS: u64 = 2_000_000;

/// The calibration kernel: a fixed dependent chain of integer (xorshift64) and floating-point
/// (multiply-add) work on one thread, no memory traffic beyond registers, so its time depends
/// only on how much CPU this thread got and at what clock. Three passes, the median is returned
/// (one pass preempted once does not decide).
pub fn calibration_ms() -> f64 {
    let mut times = [0.0f64; 3];
    for t in &mut times {
        let started = Instant::now();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut acc = 0.0f64;
        for _ in 0..std::hint::black_box(CALIBRATION_ITERATIONS) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            acc = acc.mul_add(0.999_999, (x >> 40) as f64 * 1e-9);
        }
        std::hint::black_box((x, acc));
        *t = started.elapsed().as_secs_f64() * 1e3;
    }
    times.sort_by(f64::total_cmp);
    times[1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 50 2 25 500 10 1 1 3 0 0\nintr 1\n";
        let c = parse_proc_stat(stat).unwrap();
        assert_eq!(
            (c.user, c.system, c.idle, c.iowait, c.steal),
            (105, 55, 1000, 20, 7)
        );
        assert_eq!(c.total(), 105 + 55 + 1000 + 20 + 7);
        // An old kernel without steal: 0.
        assert_eq!(parse_proc_stat("cpu 1 2 3 4 5\n").unwrap().steal, 0);
        assert!(parse_proc_stat("intr 1\n").is_none());
        // A command name with spaces and a ')' in it.
        let own = "1234 (my (odd) prog) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17";
        // fields 14..=17 = utime 11, stime 12, cutime 13, cstime 14.
        assert_eq!(parse_self_stat(own), Some(11 + 12 + 13 + 14));
        assert!(parse_self_stat("garbage").is_none());
        assert_eq!(parse_loadavg("1.52 0.80 0.40 2/300 999\n"), Some(1.52));
        assert_eq!(
            parse_cpuinfo_mhz("cpu MHz\t\t: 2000.0\nx\ncpu MHz\t\t: 3000.000\n"),
            Some(2500.0)
        );
        assert_eq!(parse_cpuinfo_mhz("model name: x\n"), None);
    }

    #[test]
    fn calibration_kernel_returns_a_positive_time() {
        // Only that it runs and is finite: its value depends on the machine.
        let ms = calibration_ms();
        assert!(ms.is_finite() && ms > 0.0);
    }
}
