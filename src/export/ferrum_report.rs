//! `export --ferrum-bench-report`: a cell's statistics in Ferrum's `BenchReport` JSON shape
//! (`crates/ferrum-bench-core`, FERRUM_FACTS §1.5), field order as declared there, so Ferrum's
//! `compare_bench.py` and validators read it.
//!
//! Mapping: per-repeat p50/p75/p95/p99 of TTFT, TPOT, ITL and E2E are recomputed from the cell's
//! `requests.jsonl` (successful requests; numpy-linear percentiles as Ferrum) and aggregated as
//! `{mean, stddev, ci95_hw}` across repeats, `stddev`/`ci95_hw` omitted below 3 repeats or when
//! 0 (Ferrum's rule; our t quantile is exact where Ferrum's table uses 1.96 beyond df 29).
//! Throughputs come from the per-repeat summaries. `repeat_metrics`, per-request vectors and
//! quality counters are left out (all optional in `BenchReport`). `env.commit_sha` is the
//! engine's commit when recorded, else its version; `env_hash` is Ferrum's `"sha256:"` of the
//! compact `env` JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::measure::{LoadPoint, RequestRecord};
use crate::results::read::{read_jsonl, read_stats_path};
use crate::results::{ResultsError, StatsFile, STATS_FILE};
use crate::stats::{mean, percentile, std_dev, student_t_975, MIN_REPEATS_FOR_CI};

/// `ScalarStats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalarStats {
    /// Mean across repeats.
    pub mean: f64,
    /// Sample std; omitted below 3 repeats or when 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    /// 95 % CI half-width; omitted like `stddev`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95_hw: Option<f64>,
}

impl ScalarStats {
    /// Ferrum's `from_samples`.
    pub fn from_samples(xs: &[f64]) -> ScalarStats {
        let m = mean(xs).unwrap_or(0.0);
        if xs.len() < MIN_REPEATS_FOR_CI {
            return ScalarStats {
                mean: m,
                stddev: None,
                ci95_hw: None,
            };
        }
        let s = std_dev(xs).unwrap_or(0.0);
        let hw = student_t_975(xs.len() - 1).unwrap_or(0.0) * s / (xs.len() as f64).sqrt();
        let nz = |x: f64| (x != 0.0).then_some(x);
        ScalarStats {
            mean: m,
            stddev: nz(s),
            ci95_hw: nz(hw),
        }
    }
}

/// `MetricSet`: per-repeat percentiles aggregated across repeats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSet {
    /// p50.
    pub p50: ScalarStats,
    /// p75.
    pub p75: ScalarStats,
    /// p95.
    pub p95: ScalarStats,
    /// p99.
    pub p99: ScalarStats,
}

/// `Slo` (`f64::MAX` = unbounded, Ferrum's sentinel).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FerrumSlo {
    /// TTFT limit, ms.
    pub ttft_p99_ms: f64,
    /// TPOT limit, ms.
    pub tpot_p99_ms: f64,
    /// E2E limit, ms.
    pub e2e_p99_ms: f64,
}

/// The subset of Ferrum's `Env` ferrum-bench can fill truthfully.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FerrumEnv {
    /// Engine commit (or version).
    pub commit_sha: String,
    /// Host id (CPU model, lower-case, spaces → `-`).
    pub hw_id: String,
    /// Not captured by ferrum-bench.
    pub rust: String,
    /// Compiled engine features (none recorded for the reference engine).
    pub ferrum_features: Vec<String>,
    /// The cell's `FERRUM_*` knobs (`--set` + swept).
    pub ferrum_env: BTreeMap<String, String>,
}

/// Ferrum's `BenchReport`, in declaration order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// Model string: the preset name.
    pub model: String,
    /// Backend: `cpu` for the reference engine, else the engine kind.
    pub backend: String,
    /// `closed_loop` or `open_loop`.
    pub scenario: String,
    /// Closed-loop concurrency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Open-loop rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    /// Requested input length.
    pub n_prompt: usize,
    /// Requested output length.
    pub n_gen: usize,
    /// Repeats.
    pub n_repeats: usize,
    /// Measured requests per repeat.
    pub n_requests_per_run: usize,
    /// Warmup requests per repeat.
    pub warmup_requests: usize,
    /// TTFT.
    pub ttft_ms: MetricSet,
    /// TPOT.
    pub tpot_ms: MetricSet,
    /// ITL.
    pub itl_ms: MetricSet,
    /// E2E.
    pub e2e_ms: MetricSet,
    /// Output tokens/s.
    pub output_throughput_tps: ScalarStats,
    /// Total tokens/s.
    pub total_throughput_tps: ScalarStats,
    /// Requests/s.
    pub request_throughput_rps: ScalarStats,
    /// Goodput.
    pub goodput_rps: ScalarStats,
    /// SLO.
    pub slo: FerrumSlo,
    /// Completed per repeat.
    pub completed_per_run: Vec<usize>,
    /// Expected − completed per repeat.
    pub errored_per_run: Vec<usize>,
    /// Environment.
    pub env: FerrumEnv,
    /// `"sha256:"` of the compact `env` JSON.
    pub env_hash: String,
}

fn metric_set(
    records: &[RequestRecord],
    repeats: &[u32],
    f: fn(&RequestRecord) -> Vec<f64>,
) -> MetricSet {
    let per_repeat: Vec<Vec<f64>> = repeats
        .iter()
        .map(|r| {
            records
                .iter()
                .filter(|x| x.repeat == *r && x.status == "ok")
                .flat_map(f)
                .collect()
        })
        .collect();
    let at = |q: f64| {
        let xs: Vec<f64> = per_repeat
            .iter()
            .map(|v| percentile(v, q).unwrap_or(0.0))
            .collect();
        ScalarStats::from_samples(&xs)
    };
    MetricSet {
        p50: at(50.0),
        p75: at(75.0),
        p95: at(95.0),
        p99: at(99.0),
    }
}

/// Build the report of the cell whose `stats.json` is `stats_path` (its `requests.jsonl` sits
/// beside it).
pub fn bench_report(stats_path: &Path) -> Result<BenchReport, ResultsError> {
    let stats = read_stats_path(stats_path)?;
    let dir = stats_path.parent().unwrap_or(Path::new("."));
    let req_path = dir.join("requests.jsonl");
    let records: Vec<RequestRecord> = read_jsonl(&req_path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value(v).map_err(|e| ResultsError::Corrupt {
                path: req_path.display().to_string(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(from_parts(&stats, &records))
}

/// Resolve an export input (cell directory or `stats.json`) to its `stats.json`.
pub fn stats_path_of(input: &Path) -> PathBuf {
    if input.is_dir() {
        input.join(STATS_FILE)
    } else {
        input.to_path_buf()
    }
}

fn from_parts(stats: &StatsFile, records: &[RequestRecord]) -> BenchReport {
    let repeats: Vec<u32> = stats.repeats.iter().map(|r| r.repeat).collect();
    let scalar = |f: fn(&crate::measure::RepeatSummary) -> f64| {
        ScalarStats::from_samples(&stats.repeats.iter().map(f).collect::<Vec<_>>())
    };
    let (scenario, concurrency, request_rate) = match stats.cell.load {
        LoadPoint::Closed { concurrency } => ("closed_loop", Some(concurrency as u32), None),
        LoadPoint::Open { request_rate, .. } => ("open_loop", None, Some(request_rate)),
    };
    let mut ferrum_env = stats.cell.set.clone();
    ferrum_env.extend(stats.cell.knobs.clone());
    let host = crate::results::host_info();
    let env = FerrumEnv {
        commit_sha: stats
            .engine
            .details
            .get("commit")
            .and_then(|v| v.as_str())
            .map(String::from)
            .unwrap_or_else(|| stats.engine.version.clone()),
        hw_id: host.cpu_model.to_lowercase().replace(' ', "-"),
        rust: "unknown".into(),
        ferrum_features: Vec::new(),
        ferrum_env,
    };
    let env_json = serde_json::to_vec(&env).unwrap_or_default();
    let limit = |x: Option<f64>| x.unwrap_or(f64::MAX);
    BenchReport {
        model: stats.cell.preset.clone(),
        backend: if stats.engine.kind == "reference" {
            "cpu".into()
        } else {
            stats.engine.kind.clone()
        },
        scenario: scenario.into(),
        concurrency,
        request_rate,
        n_prompt: stats.workload.spec.input_len,
        n_gen: stats.workload.spec.output_len,
        n_repeats: stats.repeats.len(),
        n_requests_per_run: stats.workload.spec.requests,
        warmup_requests: stats.workload.spec.warmup_requests,
        ttft_ms: metric_set(records, &repeats, |r| r.ttft_ms.into_iter().collect()),
        tpot_ms: metric_set(records, &repeats, |r| r.tpot_ms.into_iter().collect()),
        itl_ms: metric_set(records, &repeats, |r| r.itl_ms.clone()),
        e2e_ms: metric_set(records, &repeats, |r| vec![r.e2e_ms]),
        output_throughput_tps: scalar(|r| r.output_tokens_per_s),
        total_throughput_tps: scalar(|r| r.total_tokens_per_s),
        request_throughput_rps: scalar(|r| r.request_per_s),
        goodput_rps: scalar(|r| r.goodput_rps),
        slo: FerrumSlo {
            ttft_p99_ms: limit(stats.slo.ttft_ms),
            tpot_p99_ms: limit(stats.slo.tpot_ms),
            e2e_p99_ms: limit(stats.slo.e2e_ms),
        },
        completed_per_run: stats.repeats.iter().map(|r| r.completed).collect(),
        errored_per_run: stats
            .repeats
            .iter()
            .map(|r| r.expected_requests.saturating_sub(r.completed))
            .collect(),
        env_hash: crate::results::sha256_tagged(&env_json),
        env,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_stats_follow_ferrums_omission_rule() {
        let two = ScalarStats::from_samples(&[1.0, 3.0]);
        assert_eq!(
            two,
            ScalarStats {
                mean: 2.0,
                stddev: None,
                ci95_hw: None
            }
        );
        let same = ScalarStats::from_samples(&[2.0, 2.0, 2.0]);
        assert_eq!(serde_json::to_string(&same).unwrap(), r#"{"mean":2.0}"#);
        let three = ScalarStats::from_samples(&[10.0, 12.0, 14.0]);
        assert_eq!(three.stddev, Some(2.0));
        assert!((three.ci95_hw.unwrap() - 4.968275).abs() < 1e-5);
    }
}
