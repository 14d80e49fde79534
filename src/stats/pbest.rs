//! P(best) and the tie set of a ranking.
//!
//! - **P(best)**: the probability that each cell is the best on the objective, estimated by a
//!   seeded bootstrap over rounds (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
//!   ch. 6; the "probability of being best" of a ranking as in Hall & Miller, "Using the
//!   bootstrap to quantify the authority of an empirical ranking", *Ann. Statist.* 37(6B), 2009).
//!   When the cells share rounds (an interleaved run) one resample draws *round indices* with
//!   replacement and every cell takes its values from the same drawn rounds, so the block
//!   structure (machine drift shared by a round) is kept; otherwise each cell's repeats are
//!   resampled on their own. A cell's statistic in a resample is its mean; the best mean wins the
//!   resample (an exact tie splits it). P(best) = wins / resamples. With [`DEFAULT_RESAMPLES`]
//!   = 10,000 the Monte-Carlo standard error of any P is at most 0.005.
//! - **★** is the cell with the highest P(best) (ties broken by the better mean, then the lower
//!   index). The **tie set** is ★ plus every cell that the verdict rule of `compare` does not
//!   separate from it (neither `improved` nor `regressed`): paired over shared rounds, Welch
//!   otherwise. With fewer than [`MIN_REPEATS_FOR_CI`] values nothing can be separated, so no
//!   tie set is claimed (it holds only ★).

use serde::{Deserialize, Serialize};

use super::paired::{judge_paired, shared_rounds};
use super::{judge, Sample, Verdict, MIN_REPEATS_FOR_CI};
use crate::metric::Direction;
use crate::workload::rng::{below, chacha};

/// Resamples of the bootstrap by default.
pub const DEFAULT_RESAMPLES: usize = 10_000;

/// How P(best) and the tie set were computed (written beside them in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PBestMethod {
    /// The bootstrap seed.
    pub seed: u64,
    /// Resamples drawn.
    pub resamples: usize,
    /// `true`: round indices resampled jointly and ties judged with the paired test; `false`:
    /// every cell's repeats resampled on their own, ties judged with Welch's test.
    pub paired: bool,
    /// Significance level of the tie test.
    pub alpha: f64,
    /// Relative threshold of the tie test.
    pub threshold: f64,
}

/// P(best) of every cell and the tie set of the best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PBest {
    /// P(best) per input cell (same order as the input), in [0, 1]; `None` for a cell without a
    /// value.
    pub p_best: Vec<Option<f64>>,
    /// Index of ★ (highest P(best)).
    pub best: usize,
    /// Indices of the tie set (★ first, then by input order).
    pub tie_set: Vec<usize>,
    /// How it was computed.
    pub method: PBestMethod,
}

/// Inputs of [`p_best`] besides the values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PBestOptions {
    /// Bootstrap seed.
    pub seed: u64,
    /// Resamples (≥ 1).
    pub resamples: usize,
    /// Which way the objective improves.
    pub direction: Direction,
    /// Cells share rounds (round r of every cell ran in the same interleaved round).
    pub paired: bool,
    /// Significance level of the tie test.
    pub alpha: f64,
    /// Relative threshold of the tie test.
    pub threshold: f64,
}

/// P(best) and the tie set. `values[c][r]` is cell c's objective in round (repeat) r, `None`
/// when missing. `None` when no cell has a value.
pub fn p_best(values: &[Vec<Option<f64>>], opts: &PBestOptions) -> Option<PBest> {
    let present: Vec<Vec<f64>> = values
        .iter()
        .map(|v| {
            v.iter()
                .flatten()
                .copied()
                .filter(|x| x.is_finite())
                .collect()
        })
        .collect();
    let means: Vec<Option<f64>> = present.iter().map(|v| super::mean(v)).collect();
    if means.iter().all(Option::is_none) {
        return None;
    }
    let better = |x: f64, y: f64| match opts.direction {
        Direction::HigherIsBetter => x > y,
        Direction::LowerIsBetter => x < y,
    };
    let mut wins = vec![0.0f64; values.len()];
    let mut rng = chacha(opts.seed, 0);
    let resamples = opts.resamples.max(1);
    let rounds = values.iter().map(Vec::len).max().unwrap_or(0);
    let mut draw = vec![0usize; rounds];
    let mut stat = vec![None; values.len()];
    for _ in 0..resamples {
        if opts.paired {
            for d in draw.iter_mut() {
                *d = below(&mut rng, rounds as u64) as usize;
            }
        }
        for (c, cell) in values.iter().enumerate() {
            stat[c] = if opts.paired {
                let xs: Vec<f64> = draw
                    .iter()
                    .filter_map(|&r| cell.get(r).copied().flatten())
                    .filter(|x| x.is_finite())
                    .collect();
                super::mean(&xs)
            } else {
                let own = &present[c];
                if own.is_empty() {
                    None
                } else {
                    let sum: f64 = (0..own.len())
                        .map(|_| own[below(&mut rng, own.len() as u64) as usize])
                        .sum();
                    Some(sum / own.len() as f64)
                }
            };
        }
        let mut top: Option<f64> = None;
        for s in stat.iter().flatten() {
            if top.is_none_or(|t| better(*s, t)) {
                top = Some(*s);
            }
        }
        let Some(top) = top else { continue };
        let winners: Vec<usize> = (0..stat.len()).filter(|&c| stat[c] == Some(top)).collect();
        for &c in &winners {
            wins[c] += 1.0 / winners.len() as f64;
        }
    }
    let p: Vec<Option<f64>> = means
        .iter()
        .zip(&wins)
        .map(|(m, w)| m.map(|_| w / resamples as f64))
        .collect();
    // ★: highest P(best), then the better mean, then the lower index.
    let mut best = None::<usize>;
    for c in 0..values.len() {
        let (Some(pc), Some(mc)) = (p[c], means[c]) else {
            continue;
        };
        best = match best {
            None => Some(c),
            Some(b) => {
                let (pb, mb) = (p[b].unwrap_or(0.0), means[b].unwrap_or(f64::NAN));
                if pc > pb || (pc == pb && better(mc, mb)) {
                    Some(c)
                } else {
                    Some(b)
                }
            }
        };
    }
    let best = best?;
    let mut tie_set = vec![best];
    for (c, m) in means.iter().enumerate() {
        if c != best && m.is_some() && ties(values, &present, best, c, opts) {
            tie_set.push(c);
        }
    }
    Some(PBest {
        p_best: p,
        best,
        tie_set,
        method: PBestMethod {
            seed: opts.seed,
            resamples,
            paired: opts.paired,
            alpha: opts.alpha,
            threshold: opts.threshold,
        },
    })
}

/// Does the verdict rule leave cell `c` not separated from `best`?
fn ties(
    values: &[Vec<Option<f64>>],
    present: &[Vec<f64>],
    best: usize,
    c: usize,
    opts: &PBestOptions,
) -> bool {
    let comparison = if opts.paired {
        let (a, b) = shared_rounds(&values[best], &values[c]);
        if a.len() < MIN_REPEATS_FOR_CI {
            return false;
        }
        judge_paired(&a, &b, opts.direction, opts.alpha, opts.threshold)
    } else {
        let (Some(a), Some(b)) = (
            Sample::from_values(&present[best]),
            Sample::from_values(&present[c]),
        ) else {
            return false;
        };
        if a.n < MIN_REPEATS_FOR_CI || b.n < MIN_REPEATS_FOR_CI {
            return false;
        }
        judge(&a, &b, opts.direction, opts.alpha, opts.threshold)
    };
    matches!(
        comparison.verdict,
        Verdict::Unchanged | Verdict::Inconclusive
    )
}

/// A bootstrap seed derived from a run's base seed, so P(best) is reproducible from the
/// manifest alone (and differs from every workload stream).
pub fn seed_for_run(base_seed: u64) -> u64 {
    crate::workload::rng::splitmix64(base_seed ^ 0x7062_6573_7400_0000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::DEFAULT_ALPHA;

    fn opts(paired: bool) -> PBestOptions {
        PBestOptions {
            seed: 42,
            resamples: 4000,
            direction: Direction::HigherIsBetter,
            paired,
            alpha: DEFAULT_ALPHA,
            threshold: 0.03,
        }
    }

    fn cells(rows: &[&[f64]]) -> Vec<Vec<Option<f64>>> {
        rows.iter()
            .map(|r| r.iter().map(|&x| Some(x)).collect())
            .collect()
    }

    #[test]
    fn a_clearly_best_cell_has_p_near_one_and_stands_alone() {
        let v = cells(&[
            &[100.0, 102.0, 98.0, 101.0, 99.0],
            &[150.0, 151.0, 149.0, 152.0, 148.0],
            &[90.0, 91.0, 89.0, 92.0, 88.0],
        ]);
        for paired in [false, true] {
            let r = p_best(&v, &opts(paired)).unwrap();
            assert_eq!(r.best, 1);
            assert!(r.p_best[1].unwrap() > 0.999, "{:?}", r.p_best);
            assert_eq!(r.tie_set, vec![1]);
            let total: f64 = r.p_best.iter().flatten().sum();
            assert!((total - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn identical_cells_spread_the_probability_and_all_tie() {
        let row: &[f64] = &[100.0, 110.0, 90.0, 105.0, 95.0];
        let v = cells(&[row, row, row, row]);
        // Paired: every resample gives the four cells the same mean → each wins 1/4 exactly.
        let r = p_best(&v, &opts(true)).unwrap();
        for p in r.p_best.iter().flatten() {
            assert!((p - 0.25).abs() < 1e-9, "{:?}", r.p_best);
        }
        assert_eq!(r.tie_set.len(), 4);
        // Independent resampling: a spread around 1/4, no cell near 1.
        let r = p_best(&v, &opts(false)).unwrap();
        for p in r.p_best.iter().flatten() {
            assert!((0.15..0.35).contains(p), "{:?}", r.p_best);
        }
        assert_eq!(r.tie_set.len(), 4);
    }

    #[test]
    fn pairing_keeps_a_consistent_small_lead_that_drift_would_hide() {
        // Cell 1 is 3 % better than cell 0 in every round; rounds drift by ±15 %.
        let a = [1000.0, 1150.0, 850.0, 1100.0, 900.0, 1050.0];
        let b: Vec<f64> = a.iter().map(|x| x * 1.03).collect();
        let v = cells(&[&a, &b]);
        let paired = p_best(&v, &opts(true)).unwrap();
        assert_eq!(paired.best, 1);
        assert_eq!(paired.p_best[1], Some(1.0));
        let independent = p_best(&v, &opts(false)).unwrap();
        assert!(independent.p_best[1].unwrap() < 0.9, "{independent:?}");
    }

    #[test]
    fn seeded_and_reproducible_with_missing_values() {
        let v = vec![
            vec![Some(10.0), Some(12.0), None, Some(11.0)],
            vec![Some(11.0), Some(11.5), Some(12.0), Some(10.0)],
            vec![None, None, None, None],
        ];
        let a = p_best(&v, &opts(true)).unwrap();
        let b = p_best(&v, &opts(true)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.p_best[2], None);
        assert!(!a.tie_set.contains(&2));
        let mut other = opts(true);
        other.seed = 43;
        assert_ne!(p_best(&v, &other).unwrap().p_best, a.p_best);
        assert!(p_best(&[vec![None]], &opts(false)).is_none());
        assert_ne!(seed_for_run(1), seed_for_run(2));
    }

    #[test]
    fn lower_is_better_and_few_repeats_claim_no_tie() {
        let v = cells(&[&[5.0, 5.1], &[5.05, 5.0]]);
        let mut o = opts(false);
        o.direction = Direction::LowerIsBetter;
        let r = p_best(&v, &o).unwrap();
        assert_eq!(
            r.tie_set.len(),
            1,
            "fewer than 3 repeats: nothing separable, no tie claim"
        );
        let v = cells(&[&[5.0, 5.1, 5.05], &[9.0, 9.1, 9.05]]);
        let r = p_best(&v, &o).unwrap();
        assert_eq!(r.best, 0);
        assert_eq!(r.tie_set, vec![0]);
    }
}
