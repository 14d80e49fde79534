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
//! - `model`: a neighbourhood search on the ordinal structure of the knob values: a small random
//!   start, then the untried neighbours (one step along one knob) of the incumbent, re-measuring
//!   the incumbent and close contenders before trusting a single noisy repeat.

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
    /// Why the strategy chose it.
    pub reason: String,
}

/// A search strategy.
pub trait Strategy {
    /// The next trial, using at most `left` (≥ 1) runs; `None` when the strategy is done.
    fn ask(&mut self, history: &History, space: &Space, left: usize) -> Option<Ask>;
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

/// Neighbourhood search around the incumbent on the ordinal knob structure.
#[derive(Debug)]
pub struct Model {
    order: Vec<usize>,
}

impl Model {
    /// Configurations measured at random before the search starts from the best of them.
    pub fn initial(n: usize) -> usize {
        n.div_ceil(6).clamp(2, 10).min(n)
    }
}

impl Strategy for Model {
    fn ask(&mut self, h: &History, space: &Space, left: usize) -> Option<Ask> {
        let n = space.len();
        let tried = (0..n).filter(|&i| h.tried(i)).count();
        let untried = |i: &&usize| !h.tried(**i);
        let initial = Self::initial(n);
        if tried < initial {
            let &i = self.order.iter().find(untried)?;
            return Some(Ask {
                config: i,
                repeats: 1,
                reason: format!("model: initial random sample {} of {initial}", tried + 1),
            });
        }
        let ranking = h.ranking();
        let inc = *ranking.first()?;
        let inc_mean = h.standing(inc).mean;
        // A single repeat can be a lucky outlier: confirm the incumbent before moving around it.
        if h.configs[inc].failure.is_none() && h.repeats(inc) < 2 {
            return Some(Ask {
                config: inc,
                repeats: 1,
                reason: "model: re-measure the incumbent (1 repeat so far)".into(),
            });
        }
        // Untried neighbours of the incumbent, nearest first, ties in the seeded order.
        let nearest = |max_d: usize| {
            self.order
                .iter()
                .filter(untried)
                .map(|&i| (space.distance(inc, i), i))
                .filter(|&(d, _)| d <= max_d)
                .min_by_key(|&(d, _)| d)
        };
        if let Some((_, i)) = nearest(1) {
            return Some(Ask {
                config: i,
                repeats: 1,
                reason: format!(
                    "model: neighbour of the incumbent `{}`",
                    space.cells[inc].name
                ),
            });
        }
        // Close contenders (and the incumbent) to the final repeat count.
        let close = |i: usize| match (h.standing(i).mean, inc_mean) {
            (Some(m), Some(b)) if b.abs() > 0.0 => ((b - m) / b).abs() <= MODEL_CLOSE,
            _ => false,
        };
        let contender = ranking.iter().copied().find(|&i| {
            h.configs[i].failure.is_none()
                && h.repeats(i) < FINAL_REPEATS
                && (i == inc || (h.standing(i).feasible == h.standing(inc).feasible && close(i)))
        });
        if let Some(i) = contender {
            return Some(Ask {
                config: i,
                repeats: (FINAL_REPEATS - h.repeats(i)).min(left).min(2),
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
        nearest(usize::MAX).map(|(d, i)| Ask {
            config: i,
            repeats: 1,
            reason: format!("model: nearest untried configuration (distance {d})"),
        })
    }
}

#[cfg(test)]
mod tests;
