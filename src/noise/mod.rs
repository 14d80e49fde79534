//! The noise monitor: what the machine was doing while each repeat was measured, and whether
//! that repeat was measured under interference.
//!
//! Per repeat it records, over the measured run: CPU **steal** and **iowait** (share of all CPU
//! time, from `/proc/stat`), the **share of CPU time taken by other processes** (all busy time
//! minus this process's own, from `/proc/self/stat`; with a launched server the server is
//! "other", so that figure is only indicative for HTTP engines), the 1-minute **load average**,
//! the mean **CPU frequency** where readable, and the time of a short fixed **calibration
//! kernel** run just before the repeat ([`probe::calibration_ms`]).
//!
//! A repeat is **flagged** when any reading crosses its threshold ([`Thresholds::DEFAULT`]):
//!
//! | flag | threshold | why |
//! |---|---|---|
//! | `steal` | steal > 5 % of CPU time | the hypervisor ran other guests on our CPUs; a few % already moves a CPU-bound engine's throughput by more than the 3 % tie threshold |
//! | `iowait` | iowait > 10 % | the machine waited on the disk (page cache eviction, another tenant's I/O); the reference engine does no I/O while measuring, so this is someone else |
//! | `other_processes` | other processes > 20 % of all CPU time | another program used CPUs the engine wants (on 2 cores: 0.4 of a core); the engine's thread pool spans every core, so any such share slows it |
//! | `load` | 1-min load average > 1.5 × cores | runnable threads exceed the cores by half: someone waited for a CPU (the average lags by about a minute, so this flag is the least precise) |
//! | `slow_calibration` | calibration > 1.25 × the fastest in this process | the same fixed single-thread work took 25 % longer than it can: the CPU was shared or clocked down at the start of the repeat (25 % is above the kernel's own spread of a few % on a quiet machine) |
//! | `frequency_drop` | mean CPU MHz < 0.9 × the highest seen | thermal or power throttling |
//! | `gpu_throttle` | an NVIDIA GPU reports a slowdown clock-event reason at the start or end of the repeat (power cap, thermal, hardware slowdown, power brake) | the GPU ran below the clock it can hold; idle, locked application clocks and sync boost are not slowdowns |
//! | `gpu_clock_drop` | lowest SM clock < 0.9 × the highest seen | the GPU clocked down between repeats (unlocked clocks boosting and settling, or a slowdown that ended before the reading) |
//!
//! The readings go into each repeat of `stats.json` (`repeats[i].noise`) and the flags into the
//! tables; `--rerun-noisy N` re-measures flagged repeats. Readings that a machine does not
//! provide are `null` and never flag. The probe is behind [`Probe`] so tests inject signals.
//! GPU readings ([`gpu`]) come from NVML when the hardware probe found NVIDIA GPUs.

pub mod gpu;
pub mod probe;

use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

pub use probe::ProcProbe;

/// CPU time by kind, summed over all CPUs (clock ticks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice.
    pub user: u64,
    /// system + irq + softirq.
    pub system: u64,
    /// idle.
    pub idle: u64,
    /// iowait.
    pub iowait: u64,
    /// steal.
    pub steal: u64,
}

impl CpuTimes {
    /// Every tick counted.
    pub fn total(&self) -> u64 {
        self.user + self.system + self.idle + self.iowait + self.steal
    }

    fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            iowait: self.iowait.saturating_sub(earlier.iowait),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

/// What a probe reads at one instant; `None` where the machine does not tell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// `/proc/stat`'s aggregate CPU times.
    pub cpu: Option<CpuTimes>,
    /// This process's CPU time (itself and waited-for children), same ticks.
    pub own_ticks: Option<u64>,
    /// 1-minute load average.
    pub loadavg_1m: Option<f64>,
    /// Mean CPU frequency, MHz.
    pub cpu_mhz: Option<f64>,
    /// GPU clocks and clock-event reasons (`None` without NVIDIA GPUs or NVML).
    pub gpu: Option<gpu::GpuReading>,
}

/// A source of readings: the real machine ([`ProcProbe`]) or, in tests, injected signals.
pub trait Probe: Send {
    /// Read the counters now.
    fn read(&mut self) -> Reading;
    /// Run and time the calibration kernel (ms).
    fn calibrate(&mut self) -> Option<f64>;
    /// Logical CPUs.
    fn cores(&self) -> usize;
}

/// Why a repeat is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseFlag {
    /// CPU steal above the threshold.
    Steal,
    /// iowait above the threshold.
    Iowait,
    /// Other processes' CPU share above the threshold.
    OtherProcesses,
    /// Load average above the threshold.
    Load,
    /// The calibration kernel ran slow.
    SlowCalibration,
    /// The CPU clock dropped.
    FrequencyDrop,
    /// A GPU reported a slowdown reason (power cap, thermal, hardware slowdown).
    GpuThrottle,
    /// A GPU's SM clock dropped.
    GpuClockDrop,
}

impl NoiseFlag {
    /// Short name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NoiseFlag::Steal => "steal",
            NoiseFlag::Iowait => "iowait",
            NoiseFlag::OtherProcesses => "other_processes",
            NoiseFlag::Load => "load",
            NoiseFlag::SlowCalibration => "slow_calibration",
            NoiseFlag::FrequencyDrop => "frequency_drop",
            NoiseFlag::GpuThrottle => "gpu_throttle",
            NoiseFlag::GpuClockDrop => "gpu_clock_drop",
        }
    }
}

/// What the machine was doing during one repeat (`stats.json` `repeats[i].noise`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseSample {
    /// CPU steal, % of all CPU time during the repeat.
    pub steal_pct: Option<f64>,
    /// iowait, % of all CPU time.
    pub iowait_pct: Option<f64>,
    /// Busy CPU time of other processes, % of all CPU time.
    pub other_cpu_pct: Option<f64>,
    /// 1-minute load average at the end of the repeat.
    pub loadavg_1m: Option<f64>,
    /// Logical CPUs.
    pub cores: usize,
    /// Mean CPU frequency at the end of the repeat, MHz.
    pub cpu_mhz: Option<f64>,
    /// Calibration kernel time before the repeat, ms.
    pub calibration_ms: Option<f64>,
    /// The fastest calibration seen so far in this process, ms (the reference of the flag).
    pub calibration_best_ms: Option<f64>,
    /// Lowest GPU SM clock at the end of the repeat, MHz (absent without NVIDIA GPUs; older
    /// files do not have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_sm_mhz: Option<f64>,
    /// GPU slowdown reasons seen at the start or end of the repeat (absent without NVIDIA GPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_slowdown_reasons: Option<Vec<String>>,
    /// Flags raised (empty: no interference seen).
    pub flags: Vec<NoiseFlag>,
}

impl NoiseSample {
    /// Flag names joined with `+` (`steal+load`), or empty.
    pub fn flag_text(&self) -> String {
        self.flags
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Flag thresholds (see the module table for why each value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Steal, % of CPU time.
    pub steal_pct: f64,
    /// iowait, % of CPU time.
    pub iowait_pct: f64,
    /// Other processes, % of CPU time.
    pub other_cpu_pct: f64,
    /// Load average per core.
    pub load_per_core: f64,
    /// Calibration time relative to the fastest.
    pub calibration_ratio: f64,
    /// CPU frequency relative to the highest seen.
    pub frequency_ratio: f64,
    /// GPU SM clock relative to the highest seen.
    pub gpu_clock_ratio: f64,
}

impl Thresholds {
    /// The defaults documented in the module table.
    pub const DEFAULT: Thresholds = Thresholds {
        steal_pct: 5.0,
        iowait_pct: 10.0,
        other_cpu_pct: 20.0,
        load_per_core: 1.5,
        calibration_ratio: 1.25,
        frequency_ratio: 0.9,
        gpu_clock_ratio: 0.9,
    };

    /// The largest value any threshold may take (percentages stop at 100; a ratio of 100 or a
    /// load of 100 per core already means "never flag").
    pub const MAX_VALUE: f64 = 100.0;

    /// These thresholds with `KEY=VALUE[,KEY=VALUE…]` applied (`--noise-thresholds`); keys are
    /// the field names, values finite and in `0..=`[`Thresholds::MAX_VALUE`].
    pub fn with_overrides(mut self, text: &str) -> Result<Thresholds, String> {
        const KEYS: &str = "steal_pct, iowait_pct, other_cpu_pct, load_per_core, calibration_ratio, frequency_ratio, gpu_clock_ratio";
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not KEY=VALUE (keys: {KEYS})"))?;
            let (key, value) = (key.trim(), value.trim());
            let v: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && (0.0..=Self::MAX_VALUE).contains(v))
                .ok_or_else(|| {
                    format!(
                        "`{key}={value}`: expected a number from 0 to {}",
                        Self::MAX_VALUE
                    )
                })?;
            let slot = match key {
                "steal_pct" => &mut self.steal_pct,
                "iowait_pct" => &mut self.iowait_pct,
                "other_cpu_pct" => &mut self.other_cpu_pct,
                "load_per_core" => &mut self.load_per_core,
                "calibration_ratio" => &mut self.calibration_ratio,
                "frequency_ratio" => &mut self.frequency_ratio,
                "gpu_clock_ratio" => &mut self.gpu_clock_ratio,
                other => return Err(format!("unknown threshold `{other}` (keys: {KEYS})")),
            };
            *slot = v;
        }
        Ok(self)
    }
}

/// Samples repeats: [`NoiseMonitor::begin`] before a repeat (runs the calibration kernel, then
/// reads the counters), [`NoiseMonitor::end`] after it.
pub struct NoiseMonitor {
    probe: Box<dyn Probe>,
    thresholds: Thresholds,
    start: Option<Reading>,
    calibration: Option<f64>,
    best_calibration: Option<f64>,
    max_mhz: Option<f64>,
    max_gpu_mhz: Option<f64>,
}

impl std::fmt::Debug for NoiseMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseMonitor")
            .field("thresholds", &self.thresholds)
            .field("best_calibration", &self.best_calibration)
            .finish_non_exhaustive()
    }
}

impl NoiseMonitor {
    /// A monitor reading `probe` with `thresholds`.
    pub fn new(probe: Box<dyn Probe>, thresholds: Thresholds) -> NoiseMonitor {
        NoiseMonitor {
            probe,
            thresholds,
            start: None,
            calibration: None,
            best_calibration: None,
            max_mhz: None,
            max_gpu_mhz: None,
        }
    }

    /// Before a repeat: time the calibration kernel, then take the starting reading.
    pub fn begin(&mut self) {
        let c = self.probe.calibrate().filter(|x| x.is_finite() && *x > 0.0);
        if let Some(c) = c {
            self.best_calibration = Some(self.best_calibration.map_or(c, |b| b.min(c)));
        }
        self.calibration = c;
        self.start = Some(self.probe.read());
    }

    /// After a repeat: the readings over it and its flags. Without a `begin`, only the
    /// instantaneous readings (load, frequency).
    pub fn end(&mut self) -> NoiseSample {
        let now = self.probe.read();
        let start = self.start.take().unwrap_or_default();
        let pct = |part: u64, total: u64| {
            if total == 0 {
                None
            } else {
                Some(part as f64 * 100.0 / total as f64)
            }
        };
        let delta = match (start.cpu, now.cpu) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        let total = delta.map_or(0, |d| d.total());
        let steal_pct = delta.and_then(|d| pct(d.steal, total));
        let iowait_pct = delta.and_then(|d| pct(d.iowait, total));
        let other_cpu_pct = match (delta, start.own_ticks, now.own_ticks) {
            (Some(d), Some(a), Some(b)) => {
                let own = b.saturating_sub(a);
                pct((d.user + d.system).saturating_sub(own), total)
            }
            _ => None,
        };
        if let Some(m) = now.cpu_mhz {
            self.max_mhz = Some(self.max_mhz.map_or(m, |x| x.max(m)));
        }
        let cores = self.probe.cores().max(1);
        let t = &self.thresholds;
        let mut flags = Vec::new();
        let over = |x: Option<f64>, limit: f64| x.is_some_and(|x| x > limit);
        if over(steal_pct, t.steal_pct) {
            flags.push(NoiseFlag::Steal);
        }
        if over(iowait_pct, t.iowait_pct) {
            flags.push(NoiseFlag::Iowait);
        }
        if over(other_cpu_pct, t.other_cpu_pct) {
            flags.push(NoiseFlag::OtherProcesses);
        }
        if over(now.loadavg_1m, t.load_per_core * cores as f64) {
            flags.push(NoiseFlag::Load);
        }
        if let (Some(c), Some(best)) = (self.calibration, self.best_calibration) {
            if c > t.calibration_ratio * best {
                flags.push(NoiseFlag::SlowCalibration);
            }
        }
        if let (Some(m), Some(max)) = (now.cpu_mhz, self.max_mhz) {
            if m < t.frequency_ratio * max {
                flags.push(NoiseFlag::FrequencyDrop);
            }
        }
        let gpu_now = now.gpu;
        let gpu_sm_mhz = gpu_now.and_then(|g| g.sm_mhz_min);
        if let Some(m) = gpu_sm_mhz {
            self.max_gpu_mhz = Some(self.max_gpu_mhz.map_or(m, |x| x.max(m)));
        }
        let gpu_slowdown_reasons = gpu_now.map(|g| {
            let bits = g.reason_bits | start.gpu.map_or(0, |s| s.reason_bits);
            gpu::slowdown_names(bits)
        });
        if gpu_slowdown_reasons.as_ref().is_some_and(|r| !r.is_empty()) {
            flags.push(NoiseFlag::GpuThrottle);
        }
        if let (Some(m), Some(max)) = (gpu_sm_mhz, self.max_gpu_mhz) {
            if m < t.gpu_clock_ratio * max {
                flags.push(NoiseFlag::GpuClockDrop);
            }
        }
        NoiseSample {
            steal_pct,
            iowait_pct,
            other_cpu_pct,
            loadavg_1m: now.loadavg_1m,
            cores,
            cpu_mhz: now.cpu_mhz,
            calibration_ms: self.calibration.take(),
            calibration_best_ms: self.best_calibration,
            gpu_sm_mhz,
            gpu_slowdown_reasons,
            flags,
        }
    }
}

/// The process-wide monitor of the real machine: one per process so "the fastest calibration
/// seen" spans every cell of a sweep.
pub fn global() -> &'static Mutex<NoiseMonitor> {
    static MONITOR: OnceLock<Mutex<NoiseMonitor>> = OnceLock::new();
    MONITOR.get_or_init(|| Mutex::new(NoiseMonitor::new(Box::new(ProcProbe), Thresholds::DEFAULT)))
}

/// Use `thresholds` for every repeat the process-wide monitor samples from now on
/// (`--noise-thresholds`, or the ones a resumed run recorded).
pub fn set_global_thresholds(thresholds: Thresholds) {
    let mut m = global()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    m.thresholds = thresholds;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Injected signals: readings and calibration times handed out in order.
    struct Script {
        readings: VecDeque<Reading>,
        calibrations: VecDeque<f64>,
        cores: usize,
    }

    impl Probe for Script {
        fn read(&mut self) -> Reading {
            self.readings.pop_front().unwrap_or_default()
        }
        fn calibrate(&mut self) -> Option<f64> {
            self.calibrations.pop_front()
        }
        fn cores(&self) -> usize {
            self.cores
        }
    }

    fn reading(user: u64, idle: u64, iowait: u64, steal: u64, own: u64) -> Reading {
        Reading {
            cpu: Some(CpuTimes {
                user,
                system: 0,
                idle,
                iowait,
                steal,
            }),
            own_ticks: Some(own),
            loadavg_1m: Some(0.5),
            cpu_mhz: Some(3000.0),
            gpu: None,
        }
    }

    fn monitor(readings: Vec<Reading>, calibrations: Vec<f64>) -> NoiseMonitor {
        NoiseMonitor::new(
            Box::new(Script {
                readings: readings.into(),
                calibrations: calibrations.into(),
                cores: 2,
            }),
            Thresholds::DEFAULT,
        )
    }

    #[test]
    fn a_quiet_repeat_is_not_flagged() {
        // 1000 ticks: our process 900 busy, 100 idle; nothing else.
        let mut m = monitor(
            vec![reading(0, 0, 0, 0, 0), reading(900, 100, 0, 0, 900)],
            vec![3.0],
        );
        m.begin();
        let s = m.end();
        assert_eq!(s.flags, vec![]);
        assert_eq!(s.other_cpu_pct, Some(0.0));
        assert_eq!(s.steal_pct, Some(0.0));
        assert_eq!(s.calibration_ms, Some(3.0));
        assert_eq!(s.cores, 2);
    }

    #[test]
    fn injected_interference_raises_each_flag_at_its_threshold() {
        // Steal 60 of 1000 = 6 % (> 5 %), iowait 110 = 11 % (> 10 %), others 250 of 1000 busy
        // ticks beyond our 580 = 25 % (> 20 %).
        let mut m = monitor(
            vec![reading(0, 0, 0, 0, 0), reading(830, 0, 110, 60, 580)],
            vec![2.0],
        );
        m.begin();
        let s = m.end();
        assert_eq!(
            s.flags,
            vec![
                NoiseFlag::Steal,
                NoiseFlag::Iowait,
                NoiseFlag::OtherProcesses
            ]
        );
        assert!((s.steal_pct.unwrap() - 6.0).abs() < 1e-9);
        assert!((s.iowait_pct.unwrap() - 11.0).abs() < 1e-9);
        assert!((s.other_cpu_pct.unwrap() - 25.0).abs() < 1e-9);
        // Just under every threshold: no flag (5 %, 10 %, 20 % exactly are not "above").
        let mut m = monitor(
            vec![reading(0, 0, 0, 0, 0), reading(750, 100, 100, 50, 550)],
            vec![2.0],
        );
        m.begin();
        assert_eq!(m.end().flags, vec![]);
    }

    #[test]
    fn calibration_load_and_frequency_flags() {
        let quiet = |mhz: f64, load: f64| Reading {
            loadavg_1m: Some(load),
            cpu_mhz: Some(mhz),
            ..reading(0, 0, 0, 0, 0)
        };
        let mut m = monitor(
            vec![
                quiet(3000.0, 1.0),
                quiet(3000.0, 1.0),
                quiet(3000.0, 1.0),
                quiet(3000.0, 1.0),
                quiet(2600.0, 3.1),
                quiet(2600.0, 3.1),
            ],
            vec![4.0, 4.9, 5.1],
        );
        m.begin();
        assert_eq!(m.end().flags, vec![]);
        // 4.9 ms ≤ 1.25 × 4.0 = 5.0: not flagged.
        m.begin();
        assert_eq!(m.end().flags, vec![]);
        // 5.1 ms > 5.0; load 3.1 > 1.5 × 2 cores; 2600 MHz < 0.9 × 3000.
        m.begin();
        let s = m.end();
        assert_eq!(
            s.flags,
            vec![
                NoiseFlag::Load,
                NoiseFlag::SlowCalibration,
                NoiseFlag::FrequencyDrop
            ]
        );
        assert_eq!(s.flag_text(), "load+slow_calibration+frequency_drop");
        assert_eq!(s.calibration_best_ms, Some(4.0));
    }

    #[test]
    fn gpu_slowdown_reasons_and_clock_drops_flag() {
        let gpu = |mhz: f64, bits: u64| Reading {
            gpu: Some(gpu::GpuReading {
                sm_mhz_min: Some(mhz),
                reason_bits: bits,
            }),
            ..reading(0, 0, 0, 0, 0)
        };
        let mut m = monitor(
            vec![
                // Idle + locked application clocks: not a slowdown.
                gpu(2520.0, 0x1 | 0x2),
                gpu(2520.0, 0x2),
                // A power cap at the start of the repeat only still flags it.
                gpu(2520.0, 0x4),
                gpu(2400.0, 0x2),
                // 2200 < 0.9 × 2520: the clock dropped; thermal slowdown at the end.
                gpu(2500.0, 0x0),
                gpu(2200.0, 0x20),
            ],
            vec![],
        );
        m.begin();
        let s = m.end();
        assert_eq!(s.flags, vec![]);
        assert_eq!(s.gpu_sm_mhz, Some(2520.0));
        assert_eq!(s.gpu_slowdown_reasons, Some(vec![]));
        m.begin();
        let s = m.end();
        assert_eq!(s.flags, vec![NoiseFlag::GpuThrottle]);
        assert_eq!(
            s.gpu_slowdown_reasons,
            Some(vec!["sw_power_cap".to_string()])
        );
        m.begin();
        let s = m.end();
        assert_eq!(
            s.flags,
            vec![NoiseFlag::GpuThrottle, NoiseFlag::GpuClockDrop]
        );
        assert_eq!(s.flag_text(), "gpu_throttle+gpu_clock_drop");
        // Without GPUs the fields are absent from the JSON, as in files written before them.
        let mut cpu = monitor(vec![Reading::default(), Reading::default()], vec![]);
        cpu.begin();
        let json = serde_json::to_value(cpu.end()).unwrap();
        assert!(json.get("gpu_sm_mhz").is_none() && json.get("gpu_slowdown_reasons").is_none());
    }

    #[test]
    fn missing_readings_never_flag() {
        let mut m = monitor(vec![Reading::default(), Reading::default()], vec![]);
        m.begin();
        let s = m.end();
        assert_eq!(s.flags, vec![]);
        assert_eq!(
            (s.steal_pct, s.other_cpu_pct, s.calibration_ms),
            (None, None, None)
        );
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["steal_pct"].is_null());
    }

    #[test]
    fn threshold_overrides_parse_bound_and_name_the_bad_key() {
        let t = Thresholds::DEFAULT
            .with_overrides("steal_pct=10, calibration_ratio=1.5")
            .unwrap();
        assert_eq!((t.steal_pct, t.calibration_ratio), (10.0, 1.5));
        assert_eq!(t.iowait_pct, Thresholds::DEFAULT.iowait_pct);
        assert_eq!(
            Thresholds::DEFAULT.with_overrides(""),
            Ok(Thresholds::DEFAULT)
        );
        let err = |text: &str| Thresholds::DEFAULT.with_overrides(text).unwrap_err();
        assert!(
            err("steal=3").contains("unknown threshold `steal`"),
            "{}",
            err("steal=3")
        );
        assert!(err("steal_pct").contains("not KEY=VALUE"));
        for bad in [
            "steal_pct=-1",
            "steal_pct=101",
            "steal_pct=NaN",
            "steal_pct=inf",
            "steal_pct=x",
        ] {
            assert!(
                err(bad).contains("expected a number from 0 to 100"),
                "{bad}"
            );
        }
        // 0 flags every calibrated repeat: the calibration always takes > 0 ms.
        let mut m = NoiseMonitor::new(
            Box::new(Script {
                readings: VecDeque::new(),
                calibrations: VecDeque::from(vec![3.0]),
                cores: 2,
            }),
            Thresholds::DEFAULT
                .with_overrides("calibration_ratio=0")
                .unwrap(),
        );
        m.begin();
        assert_eq!(m.end().flags, vec![NoiseFlag::SlowCalibration]);
    }
}
