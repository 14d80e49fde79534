//! Search strategies. Each is asked, given the history and the runs it may still use, for the
//! next trial: a configuration, how many more repeats to measure, and why. They never ask for a
//! configuration that failed (failures are recorded, not retried), and all randomness comes from
//! the seed, so a run can be resumed and a replay repeated exactly.
//!
//! - `grid`: every configuration in plan order, 3 repeats each.
//! - `random`: configurations in a seeded random order, one repeat each (random search).
//! - `halving`: successive halving over repeats (η = 3 by default): every candidate once, keep
//!   the best ⌈n/η⌉, raise the survivors to 3, 5, … repeats, until at most η finalists with ≥ 3
//!   repeats remain (irace's racing and SMAC's intensification, with repeats as the resource).
//! - `model`: model-based search on the ordinal structure of the knob values: a small random
//!   start, then the untried configuration an additive main-effects model of the measured ones
//!   predicts best (optimistic about values not tried yet), re-measuring the incumbent and close
//!   contenders before trusting a single noisy repeat.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::history::History;
use super::space::Space;

/// Repeats a configuration needs before its mean gets a 95 % CI (and it can be a winner).
pub const FINAL_REPEATS: usize = crate::stats::MIN_REPEATS_FOR_CI;

/// Default η of `halving`.
pub const DEFAULT_ETA: usize = 3;

/// Relative gap to the incumbent within which `model` re-measures a contender: about the noise
/// of one repeat on a shared machine (±10–20 %).
pub const MODEL_CLOSE: f64 = 0.10;

/// The strategies a user can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Pick by budget and space size.
    Auto,
    /// Every configuration, 3 repeats each.
    Grid,
    /// Random order, one repeat each.
    Random,
    /// Successive halving over repeats.
    Halving,
    /// Neighbourhood search around the incumbent.
    Model,
}

impl StrategyKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Auto => "auto",
            StrategyKind::Grid => "grid",
            StrategyKind::Random => "random",
            StrategyKind::Halving => "halving",
            StrategyKind::Model => "model",
        }
    }

    /// Parse a strategy name.
    pub fn parse(text: &str) -> Result<StrategyKind, String> {
        Ok(match text {
            "auto" => StrategyKind::Auto,
            "grid" => StrategyKind::Grid,
            "random" => StrategyKind::Random,
            "halving" => StrategyKind::Halving,
            "model" => StrategyKind::Model,
            other => {
                return Err(format!(
                    "unknown strategy `{other}`; use auto, grid, random, halving or model"
                ))
            }
        })
    }

    /// What `auto` becomes for a space of `n` configurations and a budget of `budget` runs: the
    /// grid when it fits (3 repeats of everything), else the model-based search, which the
    /// replay evaluation in the README shows reaching the grid's best in the fewest runs.
    pub fn resolve(self, n: usize, budget: usize) -> StrategyKind {
        match self {
            StrategyKind::Auto if budget >= n * FINAL_REPEATS => StrategyKind::Grid,
            StrategyKind::Auto => StrategyKind::Model,
            other => other,
        }
    }
}

/// The next trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// Configuration index in the space.
    pub config: usize,
    /// Repeats to add (≥ 1).
    pub repeats: usize,
    /// Set for an interleaved confirmation repeat: its round, which is also its repeat index
    /// (strategies never set it).
    pub round: Option<u32>,
    /// Why the strategy chose it.
    pub reason: String,
}

/// A search strategy.
pub trait Strategy {
    /// The next trial, using at most `left` (≥ 1) runs; `None` when the strategy is done.
    fn ask(&mut self, history: &History, space: &Space, left: usize) -> Option<Ask>;

    /// The configuration the strategy would pick now. By default the best mean
    /// ([`History::incumbent`]); `model` ranks by a posterior mean that shrinks few-repeat
    /// configurations toward what their knob values predict, so one lucky repeat does not win.
    fn incumbent(&self, history: &History, _space: &Space) -> Option<usize> {
        history.incumbent()
    }
}

/// A seeded permutation of `0..n`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Build a strategy (`kind` already resolved from `auto`).
pub fn build(kind: StrategyKind, n: usize, seed: u64, eta: usize) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::Grid | StrategyKind::Auto => Box::new(Grid { next: 0 }),
        StrategyKind::Random => Box::new(Random {
            order: permutation(n, seed),
        }),
        StrategyKind::Halving => Box::new(Halving::new(permutation(n, seed), eta)),
        StrategyKind::Model => Box::new(Model {
            order: permutation(n, seed),
        }),
    }
}

/// Every configuration in plan order, [`FINAL_REPEATS`] repeats each.
#[derive(Debug)]
pub struct Grid {
    next: usize,
}

impl Strategy for Grid {
    fn ask(&mut self, h: &History, space: &Space, left: usize) -> Option<Ask> {
        while self.next < space.len() {
            let i = self.next;
            let have = h.repeats(i);
            if h.configs[i].failure.is_some() || have >= FINAL_REPEATS {
                self.next += 1;
                continue;
            }
            return Some(Ask {
                config: i,
                repeats: (FINAL_REPEATS - have).min(left),
                round: None,
                reason: format!("grid: configuration {} of {}", i + 1, space.len()),
            });
        }
        None
    }
}

/// Untried configurations in a seeded random order, one repeat each.
#[derive(Debug)]
pub struct Random {
    order: Vec<usize>,
}

impl Strategy for Random {
    fn ask(&mut self, h: &History, _: &Space, _left: usize) -> Option<Ask> {
        let tried = self.order.iter().filter(|&&i| h.tried(i)).count();
        self.order.iter().find(|&&i| !h.tried(i)).map(|&i| Ask {
            config: i,
            repeats: 1,
            round: None,
            reason: format!("random: draw {} of {}", tried + 1, self.order.len()),
        })
    }
}

/// Successive halving over repeats.
#[derive(Debug)]
pub struct Halving {
    eta: usize,
    rung: usize,
    survivors: Vec<usize>,
}

impl Halving {
    /// Halving over `candidates` (in the order rung 0 measures them) with reduction factor `eta`.
    pub fn new(candidates: Vec<usize>, eta: usize) -> Halving {
        Halving {
            eta: eta.max(2),
            rung: 0,
            survivors: candidates,
        }
    }

    /// Repeats every survivor of rung `rung` gets: 1, 3, 5, …
    pub fn target(rung: usize) -> usize {
        1 + 2 * rung
    }

    /// The current rung and its survivors (for tests and the trial reasons).
    pub fn state(&self) -> (usize, &[usize]) {
        (self.rung, &self.survivors)
    }
}

impl Strategy for Halving {
    fn ask(&mut self, h: &History, _: &Space, left: usize) -> Option<Ask> {
        loop {
            let target = Self::target(self.rung);
            let n = self.survivors.len();
            if let Some(&i) = self
                .survivors
                .iter()
                .find(|&&i| h.configs[i].failure.is_none() && h.repeats(i) < target)
            {
                return Some(Ask {
                    config: i,
                    repeats: (target - h.repeats(i)).min(left),
                    round: None,
                    reason: format!(
                        "halving rung {}: {n} candidate(s) to {target} repeat(s)",
                        self.rung
                    ),
                });
            }
            // The rung is complete: finalists with ≥ 3 repeats end the search.
            let alive: Vec<usize> = h
                .ranking()
                .into_iter()
                .filter(|i| self.survivors.contains(i) && h.configs[*i].failure.is_none())
                .collect();
            if alive.is_empty() || (target >= FINAL_REPEATS && alive.len() <= self.eta) {
                return None;
            }
            let keep = alive.len().div_ceil(self.eta).max(1);
            self.survivors = alive[..keep].to_vec();
            self.rung += 1;
        }
    }
}

/// Model-based search on the ordinal knob structure: an additive main-effects model (each
/// knob value's mean score over the configurations measured with it; values not measured yet
/// are optimistic, the best of their axis) predicts every untried configuration; the search
/// measures the most promising one (nearest the incumbent on ties), confirms a single-repeat
/// incumbent before trusting it, and re-measures close contenders once no untried configuration
/// is predicted to beat the incumbent.
#[derive(Debug)]
pub struct Model {
    order: Vec<usize>,
}

impl Model {
    /// Configurations measured at random before the model is used.
    pub fn initial(n: usize) -> usize {
        n.div_ceil(6).clamp(2, 10).min(n)
    }

    /// Per configuration a score where higher is better: the objective's mean (negated when
    /// minimising) for feasible ones; infeasible ones below every feasible score by their
    /// violation; `None` when not measured.
    fn scores(h: &History) -> Vec<Option<f64>> {
        let n = h.configs.len();
        let standing: Vec<_> = (0..n).map(|i| h.standing(i)).collect();
        let sign = match h.objective.direction {
            crate::metric::Direction::HigherIsBetter => 1.0,
            crate::metric::Direction::LowerIsBetter => -1.0,
        };
        let feasible: Vec<f64> = standing
            .iter()
            .filter(|s| s.feasible)
            .filter_map(|s| s.mean.map(|m| sign * m))
            .collect();
        let floor = feasible.iter().copied().fold(f64::INFINITY, f64::min);
        let span = feasible.iter().copied().fold(f64::NEG_INFINITY, f64::max) - floor;
        let (floor, span) = if floor.is_finite() {
            (floor, span.max(1e-9))
        } else {
            (0.0, 1.0)
        };
        standing
            .iter()
            .map(|s| match s.mean {
                Some(m) if s.feasible => Some(sign * m),
                Some(_) if s.violation.is_finite() => {
                    Some(floor - span * (0.1 + s.violation.min(10.0)))
                }
                _ => None,
            })
            .collect()
    }

    /// Predicted score of every configuration from the main effects of the measured ones.
    fn predict(space: &Space, scores: &[Option<f64>]) -> Vec<f64> {
        let measured: Vec<(usize, f64)> = scores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        let global = measured.iter().map(|m| m.1).sum::<f64>() / measured.len().max(1) as f64;
        // effect[axis][value] = mean score of measured configs with that value − global mean.
        let effects: Vec<Vec<Option<f64>>> = space
            .axis_len
            .iter()
            .enumerate()
            .map(|(axis, &len)| {
                (0..len)
                    .map(|v| {
                        let xs: Vec<f64> = measured
                            .iter()
                            .filter(|(i, _)| space.coords[*i][axis] == v)
                            .map(|m| m.1)
                            .collect();
                        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64 - global)
                    })
                    .collect()
            })
            .collect();
        (0..space.len())
            .map(|i| {
                global
                    + effects
                        .iter()
                        .enumerate()
                        .map(|(axis, e)| {
                            e[space.coords[i][axis]].unwrap_or_else(|| {
                                // Optimism for a value never measured: the axis's best effect.
                                e.iter().flatten().copied().fold(0.0, f64::max)
                            })
                        })
                        .sum::<f64>()
            })
            .collect()
    }
}

impl Model {
    /// Posterior mean score of every feasible measured configuration (`None` otherwise): its
    /// measured mean shrunk toward the leave-one-out prediction of the knobs' main effects, by
    /// the usual normal–normal weights. The repeat noise σ² is pooled over configurations with
    /// ≥ 2 repeats (10 % of the mean before there are any); the prior spread τ² is what the
    /// residuals of the means around their predictions leave after that noise (at least 1 %
    /// of the mean, so the structure never overrides a well-measured configuration).
    pub fn posterior(h: &History, space: &Space) -> Vec<Option<f64>> {
        let n = h.configs.len();
        let scores = Self::scores(h);
        let sign = match h.objective.direction {
            crate::metric::Direction::HigherIsBetter => 1.0,
            crate::metric::Direction::LowerIsBetter => -1.0,
        };
        let feasible: Vec<usize> = (0..n)
            .filter(|&i| {
                let s = h.standing(i);
                s.feasible && s.mean.is_some()
            })
            .collect();
        if feasible.is_empty() {
            return vec![None; n];
        }
        let mean_of = |i: usize| scores[i].unwrap_or(0.0);
        let global_sum: f64 = feasible.iter().map(|&i| mean_of(i)).sum();
        let scale = (global_sum / feasible.len() as f64).abs().max(1e-9);
        // Pooled within-configuration variance of the objective (score scale = sign × value).
        let (mut ss, mut df) = (0.0, 0usize);
        for &i in &feasible {
            let xs = h.column(i, 0);
            if xs.len() >= 2 {
                let m = xs.iter().sum::<f64>() / xs.len() as f64;
                ss += xs
                    .iter()
                    .map(|x| (sign * x - sign * m).powi(2))
                    .sum::<f64>();
                df += xs.len() - 1;
            }
        }
        let sigma2 = if df > 0 {
            (ss / df as f64).max((1e-3 * scale).powi(2))
        } else {
            (0.10 * scale).powi(2)
        };
        // Per axis value: sum and count of the feasible means (for leave-one-out effects).
        let axes = space.axis_len.len();
        let mut sums: Vec<Vec<(f64, usize)>> =
            space.axis_len.iter().map(|&l| vec![(0.0, 0); l]).collect();
        for &i in &feasible {
            for (a, axis) in sums.iter_mut().enumerate().take(axes) {
                let e = &mut axis[space.coords[i][a]];
                e.0 += mean_of(i);
                e.1 += 1;
            }
        }
        let loo = |i: usize| -> Option<f64> {
            let k = feasible.len();
            if k < 2 {
                return None;
            }
            let g = (global_sum - mean_of(i)) / (k - 1) as f64;
            let mut p = g;
            for (a, axis) in sums.iter().enumerate() {
                let (s, c) = axis[space.coords[i][a]];
                if c >= 2 {
                    p += (s - mean_of(i)) / (c - 1) as f64 - g;
                }
            }
            Some(p)
        };
        let prior: Vec<Option<f64>> = (0..n)
            .map(|i| feasible.contains(&i).then(|| loo(i)).flatten())
            .collect();
        let resid: Vec<f64> = feasible
            .iter()
            .filter_map(|&i| {
                prior[i].map(|p| (mean_of(i) - p).powi(2) - sigma2 / h.repeats(i).max(1) as f64)
            })
            .collect();
        let tau2 = if resid.is_empty() {
            f64::INFINITY
        } else {
            (resid.iter().sum::<f64>() / resid.len() as f64).max((0.01 * scale).powi(2))
        };
        (0..n)
            .map(|i| {
                if !feasible.contains(&i) {
                    return None;
                }
                let m = mean_of(i);
                Some(match prior[i] {
                    Some(p) if tau2.is_finite() => {
                        let w = h.repeats(i) as f64 / sigma2;
                        (w * m + p / tau2) / (w + 1.0 / tau2)
                    }
                    _ => m,
                })
            })
            .collect()
    }

    /// The feasible configuration with the best posterior mean; without any, the history's
    /// incumbent (the infeasible one that missed by the least).
    fn posterior_incumbent(h: &History, space: &Space) -> Option<usize> {
        let post = Self::posterior(h, space);
        post.iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (i, p)))
            .fold(None::<(usize, f64)>, |acc, c| match acc {
                Some(a) if a.1 >= c.1 => Some(a),
                _ => Some(c),
            })
            .map(|(i, _)| i)
            .or_else(|| h.incumbent())
    }
}

impl Strategy for Model {
    fn incumbent(&self, h: &History, space: &Space) -> Option<usize> {
        Self::posterior_incumbent(h, space)
    }

    fn ask(&mut self, h: &History, space: &Space, left: usize) -> Option<Ask> {
        let n = space.len();
        let tried = (0..n).filter(|&i| h.tried(i)).count();
        let initial = Self::initial(n);
        if tried < initial {
            let &i = self.order.iter().find(|&&i| !h.tried(i))?;
            return Some(Ask {
                config: i,
                repeats: 1,
                round: None,
                reason: format!("model: initial random sample {} of {initial}", tried + 1),
            });
        }
        let inc = Self::posterior_incumbent(h, space)?;
        let post = Self::posterior(h, space);
        // Best first by posterior (feasible), then the history's order for the rest.
        let mut ranking: Vec<usize> = (0..n).filter(|&i| post[i].is_some()).collect();
        ranking.sort_by(|&a, &b| post[b].unwrap_or(0.0).total_cmp(&post[a].unwrap_or(0.0)));
        ranking.extend(h.ranking().into_iter().filter(|&i| post[i].is_none()));
        // A single repeat can be a lucky outlier: confirm the incumbent before building on it.
        if h.configs[inc].failure.is_none() && h.repeats(inc) < 2 {
            return Some(Ask {
                config: inc,
                repeats: 1,
                round: None,
                reason: "model: re-measure the incumbent (1 repeat so far)".into(),
            });
        }
        let mut scores = Self::scores(h);
        let predicted = Self::predict(space, &scores);
        for (s, p) in scores.iter_mut().zip(&post) {
            if p.is_some() {
                *s = *p;
            }
        }
        let inc_score = scores[inc].unwrap_or(f64::NEG_INFINITY);
        // The most promising untried configuration (nearest the incumbent, then seeded order).
        let best_untried = self
            .order
            .iter()
            .copied()
            .filter(|&i| !h.tried(i))
            .map(|i| (i, predicted[i], space.distance(inc, i)))
            .fold(None::<(usize, f64, usize)>, |acc, c| match acc {
                Some(a) if a.1 > c.1 || (a.1 == c.1 && a.2 <= c.2) => Some(a),
                _ => Some(c),
            });
        let margin = MODEL_CLOSE * inc_score.abs();
        if let Some((i, p, _)) = best_untried {
            if p > inc_score - margin {
                return Some(Ask {
                    config: i,
                    repeats: 1,
                    round: None,
                    reason: format!(
                        "model: predicted {:.1} from the knobs' main effects (incumbent {:.1})",
                        p.abs(),
                        inc_score.abs()
                    ),
                });
            }
        }
        // Nothing untried looks better: bring the incumbent and close contenders to 3 repeats.
        let contender = ranking.iter().copied().find(|&i| {
            h.configs[i].failure.is_none()
                && h.repeats(i) < FINAL_REPEATS
                && scores[i].is_some_and(|s| i == inc || s >= inc_score - margin)
        });
        if let Some(i) = contender {
            return Some(Ask {
                config: i,
                repeats: (FINAL_REPEATS - h.repeats(i)).min(left).min(2),
                round: None,
                reason: if i == inc {
                    "model: re-measure the incumbent to the final repeat count".into()
                } else {
                    format!(
                        "model: re-measure a contender within {:.0} % of the incumbent",
                        MODEL_CLOSE * 100.0
                    )
                },
            });
        }
        best_untried.map(|(i, p, _)| Ask {
            config: i,
            repeats: 1,
            round: None,
            reason: format!(
                "model: next most promising untried configuration (predicted {:.1})",
                p.abs()
            ),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
