//! Percentiles (numpy's default linear interpolation) and the per-repeat latency summary.

use serde::{Deserialize, Serialize};

use super::{mean, std_dev};

/// Percentile `q` (0–100) of already sorted, finite values: position `h = q/100·(n−1)`, result
/// `x[⌊h⌋] + (h−⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`, exactly numpy's `percentile(..., method="linear")`.
/// `None` for an empty slice; `q` is clamped to [0, 100].
pub fn percentile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let q = q.clamp(0.0, 100.0);
    let h = q / 100.0 * (n - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = h - lo as f64;
    Some(sorted[lo] + frac * (sorted[hi] - sorted[lo]))
}

/// Percentile `q` (0–100) of unsorted values (sorted on a copy); see [`percentile_sorted`].
pub fn percentile(xs: &[f64], q: f64) -> Option<f64> {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, q)
}

/// Distribution summary of one metric within one repeat (successful requests only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (= p50 by linear interpolation).
    pub median: f64,
    /// Sample standard deviation (n−1); 0 when there is a single sample.
    pub std: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarise samples; `None` when there are none (e.g. every request failed).
    pub fn from_samples(xs: &[f64]) -> Option<Summary> {
        let mut sorted = xs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let p = |q: f64| percentile_sorted(&sorted, q);
        Some(Summary {
            count: sorted.len(),
            mean: mean(&sorted)?,
            median: p(50.0)?,
            // A single sample has no spread; 0 rather than a missing value keeps the schema flat.
            std: std_dev(&sorted).unwrap_or(0.0),
            p90: p(90.0)?,
            p95: p(95.0)?,
            p99: p(99.0)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1,2,3,4], [0,25,50,90,99,100]) = [1, 1.75, 2.5, 3.7, 3.97, 4]
        let xs = [4.0, 1.0, 3.0, 2.0];
        let expect = [
            (0.0, 1.0),
            (25.0, 1.75),
            (50.0, 2.5),
            (90.0, 3.7),
            (99.0, 3.97),
            (100.0, 4.0),
        ];
        for (q, want) in expect {
            let got = percentile(&xs, q).unwrap();
            assert!((got - want).abs() < 1e-12, "p{q}: got {got}, want {want}");
        }
        // numpy.percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 1000], 95) = 550.0
        let ys: Vec<f64> = (1..=10)
            .map(|i| f64::from(i) * 10.0)
            .chain([1000.0])
            .collect();
        assert!((percentile(&ys, 95.0).unwrap() - 550.0).abs() < 1e-9);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_of_hand_computed_sample() {
        let s = Summary::from_samples(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.mean, 3.0);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.std, 2.0);
        // h = 0.9·2 = 1.8 → 3 + 0.8·2 = 4.6
        assert!((s.p90 - 4.6).abs() < 1e-12);
        assert!((s.p99 - 4.96).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 5.0));
        assert_eq!(Summary::from_samples(&[]), None);
        assert_eq!(Summary::from_samples(&[2.0]).unwrap().std, 0.0);
    }

    proptest! {
        #[test]
        fn percentile_is_monotone_in_q(
            xs in prop::collection::vec(-1e6f64..1e6, 1..60),
            a in 0f64..100.0,
            b in 0f64..100.0,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let plo = percentile(&xs, lo).unwrap();
            let phi = percentile(&xs, hi).unwrap();
            prop_assert!(plo <= phi + 1e-9 * phi.abs().max(1.0));
        }

        #[test]
        fn percentile_stays_within_min_and_max(
            xs in prop::collection::vec(-1e6f64..1e6, 1..60),
            q in 0f64..=100.0,
        ) {
            let p = percentile(&xs, q).unwrap();
            let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(p >= min - 1e-9 && p <= max + 1e-9);
        }

        #[test]
        fn percentile_ignores_input_order(mut xs in prop::collection::vec(-1e3f64..1e3, 1..40), q in 0f64..=100.0) {
            let before = percentile(&xs, q).unwrap();
            xs.reverse();
            prop_assert_eq!(before, percentile(&xs, q).unwrap());
        }
    }
}
