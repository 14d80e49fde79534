//! Pure statistics: percentiles, per-repeat summaries, across-repeat aggregation with confidence
//! intervals and outlier flags, and the goodput predicate. No I/O, no clocks.
//!
//! Conventions (so numbers compare with vLLM, SGLang and Ferrum's own `ferrum-bench-core`):
//! - percentiles use linear interpolation between closest ranks, position `q/100·(n−1)`, which is
//!   numpy's default `method="linear"` (Hyndman & Fan 1996, definition 7);
//! - standard deviations are sample deviations (divisor n−1);
//! - a 95 % confidence interval of a mean over repeats is `t(0.975, n−1)·s/√n` (Student t,
//!   quantile from `statrs`), and is only given for n ≥ 3 repeats (Ferrum's rule);
//! - outliers among repeats use the modified z-score of Iglewicz & Hoaglin (1993).

mod aggregate;
pub mod difference;
pub mod paired;
pub mod pbest;
mod percentile;

pub use aggregate::{aggregate, student_t_975, Aggregate, Ci95, MIN_REPEATS_FOR_CI};
pub use difference::{
    judge, welch, Comparison, RelativeChange, Sample, Verdict, Welch, DEFAULT_ALPHA,
};
pub use paired::{judge_paired, paired_relative_change, paired_t, shared_rounds};
pub use pbest::{p_best, PBest, PBestMethod, PBestOptions};
pub use percentile::{percentile, percentile_sorted, Summary};

use serde::{Deserialize, Serialize};

/// Service-level objective for goodput: a request is *good* when it succeeded and meets every
/// limit that is set. Unset limits do not constrain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Time-to-first-token limit in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Time-per-output-token limit in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    /// End-to-end latency limit in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
}

impl Slo {
    /// True when no limit is set (goodput then equals request throughput).
    pub fn is_unbounded(&self) -> bool {
        self.ttft_ms.is_none() && self.tpot_ms.is_none() && self.e2e_ms.is_none()
    }

    /// The goodput predicate. `tpot_ms` is `None` when the request produced fewer than two tokens,
    /// in which case the TPOT limit cannot be violated (DistServe / vLLM / Ferrum all skip it).
    /// A failed request is never good; a successful request without a first token (zero output)
    /// fails any TTFT limit.
    pub fn is_good(
        &self,
        ok: bool,
        ttft_ms: Option<f64>,
        tpot_ms: Option<f64>,
        e2e_ms: f64,
    ) -> bool {
        if !ok {
            return false;
        }
        let ttft_ok = match (self.ttft_ms, ttft_ms) {
            (None, _) => true,
            (Some(limit), Some(v)) => v <= limit,
            (Some(_), None) => false,
        };
        let tpot_ok = match (self.tpot_ms, tpot_ms) {
            (Some(limit), Some(v)) => v <= limit,
            _ => true,
        };
        let e2e_ok = self.e2e_ms.is_none_or(|limit| e2e_ms <= limit);
        ttft_ok && tpot_ok && e2e_ok
    }
}

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// Sample standard deviation (divisor n−1); `None` for fewer than two values.
pub fn std_dev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodput_predicate_checks_every_given_limit() {
        let slo = Slo {
            ttft_ms: Some(100.0),
            tpot_ms: Some(10.0),
            e2e_ms: Some(1000.0),
        };
        assert!(slo.is_good(true, Some(100.0), Some(10.0), 1000.0));
        assert!(
            !slo.is_good(false, Some(1.0), Some(1.0), 1.0),
            "failed requests are never good"
        );
        assert!(!slo.is_good(true, Some(100.1), Some(10.0), 500.0));
        assert!(!slo.is_good(true, Some(50.0), Some(10.5), 500.0));
        assert!(!slo.is_good(true, Some(50.0), Some(5.0), 1000.5));
        // Single-token output: TPOT undefined, limit cannot be violated.
        assert!(slo.is_good(true, Some(50.0), None, 60.0));
        // No first token: cannot meet a TTFT limit.
        assert!(!slo.is_good(true, None, None, 60.0));
        let unbounded = Slo::default();
        assert!(unbounded.is_unbounded());
        assert!(unbounded.is_good(true, None, None, 1e12));
    }

    #[test]
    fn mean_and_sample_std_match_hand_computation() {
        // 2,4,4,4,5,5,7,9: mean 5, sum of squares 32, sample variance 32/7.
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&xs), Some(5.0));
        let s = std_dev(&xs).unwrap();
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(std_dev(&[1.0]), None);
        assert_eq!(mean(&[]), None);
    }
}
