//! Across-repeat aggregate of a cell (the `aggregate` object of `stats.json`).

use serde::{Deserialize, Serialize};

use super::RepeatSummary;
use crate::stats::{aggregate, Aggregate, Summary};

/// Each key metric across the repeats of a cell. Latency metrics aggregate the per-repeat median
/// and p99 (mean ± CI *of the per-repeat percentile*, as Ferrum's `MetricSet` does); a metric is
/// `None` when no repeat had a value (e.g. every request failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellAggregate {
    /// Repeats aggregated.
    pub repeats: usize,
    /// Failed + rejected requests over all repeats (always reported).
    pub unsuccessful_requests: usize,
    /// Output tokens/s.
    pub output_tokens_per_s: Option<Aggregate>,
    /// Prompt + output tokens/s.
    pub total_tokens_per_s: Option<Aggregate>,
    /// Completed requests/s.
    pub request_per_s: Option<Aggregate>,
    /// Good requests/s under the SLO.
    pub goodput_rps: Option<Aggregate>,
    /// Per-repeat TTFT median, ms.
    pub ttft_ms_median: Option<Aggregate>,
    /// Per-repeat TTFT p99, ms.
    pub ttft_ms_p99: Option<Aggregate>,
    /// Per-repeat TPOT median, ms.
    pub tpot_ms_median: Option<Aggregate>,
    /// Per-repeat TPOT p99, ms.
    pub tpot_ms_p99: Option<Aggregate>,
    /// Per-repeat ITL median, ms.
    pub itl_ms_median: Option<Aggregate>,
    /// Per-repeat ITL p99, ms.
    pub itl_ms_p99: Option<Aggregate>,
    /// Per-repeat E2E median, ms.
    pub e2e_ms_median: Option<Aggregate>,
    /// Per-repeat E2E p99, ms.
    pub e2e_ms_p99: Option<Aggregate>,
    /// Closed loop: output tokens/s over the window in which all C slots are busy (see
    /// `measure::steady`), beside the whole-run `output_tokens_per_s`, which ranks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_output_tokens_per_s: Option<Aggregate>,
    /// Repeats the noise monitor flagged (indices), absent when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noisy_repeats: Vec<u32>,
    /// Repeats measured again by `--rerun-noisy` (indices; their flagged originals are in
    /// `repeats[i].superseded`), absent when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remeasured_repeats: Vec<u32>,
}

/// Aggregate the repeats of a cell.
pub fn aggregate_repeats(repeats: &[RepeatSummary]) -> CellAggregate {
    let scalar = |f: fn(&RepeatSummary) -> f64| {
        let xs: Vec<f64> = repeats.iter().map(f).collect();
        aggregate(&xs)
    };
    let pct = |f: fn(&RepeatSummary) -> Option<Summary>, p: fn(&Summary) -> f64| {
        let xs: Vec<f64> = repeats
            .iter()
            .filter_map(|r| f(r).as_ref().map(p))
            .collect();
        aggregate(&xs)
    };
    CellAggregate {
        repeats: repeats.len(),
        unsuccessful_requests: repeats.iter().map(|r| r.failed + r.rejected).sum(),
        output_tokens_per_s: scalar(|r| r.output_tokens_per_s),
        total_tokens_per_s: scalar(|r| r.total_tokens_per_s),
        request_per_s: scalar(|r| r.request_per_s),
        goodput_rps: scalar(|r| r.goodput_rps),
        ttft_ms_median: pct(|r| r.ttft_ms, |s| s.median),
        ttft_ms_p99: pct(|r| r.ttft_ms, |s| s.p99),
        tpot_ms_median: pct(|r| r.tpot_ms, |s| s.median),
        tpot_ms_p99: pct(|r| r.tpot_ms, |s| s.p99),
        itl_ms_median: pct(|r| r.itl_ms, |s| s.median),
        itl_ms_p99: pct(|r| r.itl_ms, |s| s.p99),
        e2e_ms_median: pct(|r| r.e2e_ms, |s| s.median),
        e2e_ms_p99: pct(|r| r.e2e_ms, |s| s.p99),
        steady_output_tokens_per_s: aggregate(
            &repeats
                .iter()
                .filter_map(|r| r.steady_output_tokens_per_s)
                .collect::<Vec<f64>>(),
        ),
        noisy_repeats: repeats
            .iter()
            .filter(|r| r.noise.as_ref().is_some_and(|n| !n.flags.is_empty()))
            .map(|r| r.repeat)
            .collect(),
        remeasured_repeats: repeats
            .iter()
            .filter(|r| r.superseded.is_some())
            .map(|r| r.repeat)
            .collect(),
    }
}
