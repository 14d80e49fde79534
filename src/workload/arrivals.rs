//! Open-loop arrival processes (seeded): Poisson, or gamma-distributed gaps with a burstiness
//! factor as in vLLM's `--burstiness` (shape = burstiness, mean gap = 1/rate; burstiness 1 is
//! Poisson, below 1 burstier, above 1 more regular).

use serde::{Deserialize, Serialize};

use super::rng::{self, STREAM_ARRIVALS};

/// How inter-arrival gaps are distributed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ArrivalProcess {
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma gaps with shape `burstiness` and scale `1/(rate·burstiness)`.
    Gamma {
        /// The gamma shape; must be > 0.
        burstiness: f64,
    },
}

impl ArrivalProcess {
    /// `Poisson` for burstiness 1 (the same process, and the cheaper exact sampler), else `Gamma`.
    pub fn from_burstiness(burstiness: f64) -> ArrivalProcess {
        if burstiness == 1.0 {
            ArrivalProcess::Poisson
        } else {
            ArrivalProcess::Gamma { burstiness }
        }
    }
}

/// Arrival offsets in seconds for `n` requests at `rate_per_s`, drawn from ChaCha stream
/// [`STREAM_ARRIVALS`] of `seed`. The first request arrives at 0; request i at the sum of the
/// first i gaps (so the schedule does not start with an idle gap). Non-decreasing.
/// Requires `rate_per_s > 0` and a positive burstiness (checked by the caller's settings).
pub fn arrival_offsets(process: ArrivalProcess, rate_per_s: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rng::chacha(seed, STREAM_ARRIVALS);
    let mut out = Vec::with_capacity(n);
    let mut t = 0.0;
    for i in 0..n {
        if i > 0 {
            let gap = match process {
                // Inverse CDF of the exponential: −ln(U)/rate with U in (0, 1).
                ArrivalProcess::Poisson => -rng::open_unit(&mut rng).ln() / rate_per_s,
                ArrivalProcess::Gamma { burstiness } => {
                    rng::gamma(&mut rng, burstiness) / (rate_per_s * burstiness)
                }
            };
            t += gap;
        }
        out.push(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_gap(xs: &[f64]) -> f64 {
        xs.last().unwrap() / (xs.len() - 1) as f64
    }

    #[test]
    fn poisson_and_gamma_have_mean_gap_one_over_rate() {
        let p = arrival_offsets(ArrivalProcess::Poisson, 4.0, 20_001, 9);
        assert!((mean_gap(&p) - 0.25).abs() < 0.01, "{}", mean_gap(&p));
        let g = arrival_offsets(ArrivalProcess::Gamma { burstiness: 0.5 }, 4.0, 20_001, 9);
        assert!((mean_gap(&g) - 0.25).abs() < 0.015, "{}", mean_gap(&g));
        assert_eq!(p[0], 0.0);
        assert!(p.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn burstiness_changes_gap_spread() {
        // CV of gamma gaps is 1/√shape: bursty (0.25) ≈ 2, regular (4) ≈ 0.5.
        let cv = |b: f64| {
            let xs = arrival_offsets(ArrivalProcess::Gamma { burstiness: b }, 1.0, 10_001, 5);
            let gaps: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
            crate::stats::std_dev(&gaps).unwrap() / crate::stats::mean(&gaps).unwrap()
        };
        assert!(cv(0.25) > 1.7 && cv(4.0) < 0.6);
    }

    #[test]
    fn same_seed_same_schedule() {
        let a = arrival_offsets(ArrivalProcess::Poisson, 2.0, 50, 77);
        assert_eq!(a, arrival_offsets(ArrivalProcess::Poisson, 2.0, 50, 77));
        assert_ne!(a, arrival_offsets(ArrivalProcess::Poisson, 2.0, 50, 78));
        assert_eq!(
            ArrivalProcess::from_burstiness(1.0),
            ArrivalProcess::Poisson
        );
    }
}
