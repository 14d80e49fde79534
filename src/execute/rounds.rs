//! Interleaved rounds (`--order interleaved`): round r runs every cell once (its repeat r), in a
//! seeded random order, before round r + 1 starts. A slow drift of a shared machine then lands
//! on every cell of a round alike instead of on whole cells, and the ranking compares cells
//! within rounds ([`crate::stats::paired`]). `sequential` keeps the old order (every repeat of
//! cell 1, then cell 2, …).
//!
//! - **Order of a round**: a Fisher–Yates shuffle of the cells driven by ChaCha20 keyed with
//!   `order_seed(base_seed)`, stream `2 + r` (stream 0 and 1 are the prompts and arrivals), so it
//!   is a pure function of the run's base seed and the round: a resume recomputes exactly the
//!   order the manifest recorded.
//! - **Cost**: a unit is one repeat of one cell, and every unit starts a fresh engine (Ferrum
//!   reads its knobs at start-up), so interleaving costs `cells × repeats` engine starts instead
//!   of `cells`. That is cheap for the in-process reference engine and expensive for a launched
//!   server that loads a model, hence the default per engine kind ([`Order::default_for`]).
//! - **Resume**: the loop answers a (cell, round) whose repeat is already on disk without
//!   running it, so an interrupted sweep resumes mid-round.
//! - **Shards** split cells (the plan's `--shard`), never rounds: each shard interleaves its own
//!   cells over every round.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::source::{CellSource, PlannedCells, WorkUnit};
use crate::sweep::Cell;
use crate::workload::rng::{below, chacha, splitmix64};

/// The order units run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Round by round, every cell once per round, shuffled per round.
    Interleaved,
    /// Every repeat of a cell back to back, cells in plan order.
    Sequential,
}

impl Order {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Interleaved => "interleaved",
            Order::Sequential => "sequential",
        }
    }

    /// The default for an engine kind: `sequential` for a launched server (each start loads a
    /// model), `interleaved` for everything that starts in-process or is already running.
    pub fn default_for(engine_kind: &str) -> Order {
        if engine_kind == "server" {
            Order::Sequential
        } else {
            Order::Interleaved
        }
    }
}

impl std::str::FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> Result<Order, String> {
        match s {
            "interleaved" => Ok(Order::Interleaved),
            "sequential" => Ok(Order::Sequential),
            other => Err(format!(
                "unknown order `{other}`: expected interleaved or sequential"
            )),
        }
    }
}

/// The run's schedule as recorded in `manifest.json` (`schedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// `interleaved` or `sequential`.
    pub order: Order,
    /// Seed of the round orders (interleaved).
    pub seed: u64,
    /// Cell names of every round in the order they run (interleaved; empty for sequential).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Vec<String>>,
    /// `--repeats auto[:MAX]`: rounds are added until the tie set of the best cell stops
    /// changing ([`AdaptiveRounds`]); `rounds` then lists the orders of up to MAX rounds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_repeats: bool,
    /// `--rerun-noisy N`: after the last round, at most N repeats the noise monitor flagged are
    /// measured again, in all (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_noisy: Option<u32>,
    /// Every re-measurement made, in the order it ran ([`super::rerun`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reruns: Vec<super::rerun::RerunRecord>,
    /// Round index (= repeat index) of `rounds[0]`: 0 for a sweep; a tune's interleaved
    /// confirmation rounds follow its search repeats, so they start later.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_round: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Schedule {
    /// The schedule of `cells` over `repeats` rounds for a run whose base seed is `base_seed`.
    pub fn new(order: Order, cells: &[&Cell], repeats: u32, base_seed: u64) -> Schedule {
        let seed = order_seed(base_seed);
        let rounds = match order {
            Order::Sequential => Vec::new(),
            Order::Interleaved => (0..repeats)
                .map(|r| {
                    round_order(cells.len(), seed, r)
                        .into_iter()
                        .map(|i| cells[i].name.clone())
                        .collect()
                })
                .collect(),
        };
        Schedule {
            order,
            seed,
            rounds,
            auto_repeats: false,
            rerun_noisy: None,
            reruns: Vec::new(),
            first_round: 0,
        }
    }
}

/// The round-order seed of a run (distinct from the workload and bootstrap seeds).
pub fn order_seed(base_seed: u64) -> u64 {
    splitmix64(base_seed ^ 0x6f72_6465_7200_0000)
}

/// The order of `n` cells in round `round`: a seeded Fisher–Yates permutation of `0..n`.
pub fn round_order(n: usize, seed: u64, round: u32) -> Vec<usize> {
    let mut rng = chacha(seed, 2 + u64::from(round));
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = below(&mut rng, (i + 1) as u64) as usize;
        v.swap(i, j);
    }
    v
}

/// One repeat of each cell per round, rounds in turn: `repeats` rounds over `cells`, each round
/// shuffled with `seed`.
pub fn interleaved_rounds(cells: &[&Cell], repeats: u32, seed: u64) -> PlannedCells {
    PlannedCells::from_units((0..repeats).flat_map(|r| {
        round_order(cells.len(), seed, r)
            .into_iter()
            .map(move |i| WorkUnit {
                cell: cells[i].clone(),
                first_repeat: r,
                repeats: 1,
                round: Some(r),
                rerun: false,
            })
    }))
}

/// Fewest rounds before `--repeats auto` may stop (the fewest that give a confidence interval).
pub const AUTO_MIN_ROUNDS: u32 = 3;
/// The round limit of `--repeats auto` without `:MAX`.
pub const AUTO_DEFAULT_MAX: u32 = 10;

/// `--repeats auto[:MAX]`: interleaved rounds, added one at a time until the **tie set of the
/// best cell stops changing** — after round k ≥ [`AUTO_MIN_ROUNDS`], P(best) and the tie set are
/// computed over rounds 1..k (paired, seeded as the final ranking is); when ★ and its tie set are
/// the same cells as after round k − 1 the sweep stops — or MAX rounds (or `--time-budget`) are
/// reached. One more round can only move the ranking by one repeat per cell; a tie set that
/// survived that unchanged is what the ranking will report.
#[derive(Debug, Clone)]
pub struct AdaptiveRounds {
    cells: Vec<Cell>,
    seed: u64,
    pbest_seed: u64,
    max_rounds: u32,
    started_rounds: u32,
    queue: VecDeque<WorkUnit>,
    values: std::collections::BTreeMap<String, std::collections::BTreeMap<u32, f64>>,
    previous: Option<Vec<String>>,
    /// Why the source stopped adding rounds, once it has.
    pub stopped: Option<String>,
}

impl AdaptiveRounds {
    /// Up to `max_rounds` rounds over `cells`, orders from `seed`, P(best) seeded with
    /// `pbest_seed`.
    pub fn new(cells: &[&Cell], max_rounds: u32, seed: u64, pbest_seed: u64) -> AdaptiveRounds {
        AdaptiveRounds {
            cells: cells.iter().map(|c| (*c).clone()).collect(),
            seed,
            pbest_seed,
            max_rounds,
            started_rounds: 0,
            queue: VecDeque::new(),
            values: Default::default(),
            previous: None,
            stopped: None,
        }
    }

    /// ★ and its tie set over the rounds measured so far, as sorted cell keys.
    fn tie_set(&self) -> Option<Vec<String>> {
        let keys: Vec<&String> = self.values.keys().collect();
        let rounds = self.started_rounds as usize;
        let values: Vec<Vec<Option<f64>>> = keys
            .iter()
            .map(|k| {
                (0..rounds)
                    .map(|r| self.values[*k].get(&(r as u32)).copied())
                    .collect()
            })
            .collect();
        let metric = crate::metric::Metric::ranking();
        let pb = crate::stats::p_best(
            &values,
            &crate::stats::PBestOptions {
                seed: self.pbest_seed,
                resamples: crate::stats::pbest::DEFAULT_RESAMPLES,
                direction: metric.direction,
                paired: true,
                alpha: crate::stats::DEFAULT_ALPHA,
                threshold: metric.default_threshold(),
            },
        )?;
        let mut set: Vec<String> = pb.tie_set.iter().map(|&i| keys[i].clone()).collect();
        set.sort();
        set.insert(0, keys[pb.best].clone());
        Some(set)
    }
}

impl CellSource for AdaptiveRounds {
    fn next_unit(&mut self) -> Option<WorkUnit> {
        if self.queue.is_empty() {
            if self.stopped.is_some() {
                return None;
            }
            let done = self.started_rounds;
            if done >= AUTO_MIN_ROUNDS {
                let now = self.tie_set();
                if now.is_some() && now == self.previous {
                    self.stopped = Some(format!(
                        "the tie set of the best cell did not change in round {done}"
                    ));
                    return None;
                }
                self.previous = now;
            }
            if done >= self.max_rounds {
                self.stopped = Some(format!("reached {} rounds", self.max_rounds));
                return None;
            }
            let refs: Vec<&Cell> = self.cells.iter().collect();
            for i in round_order(refs.len(), self.seed, done) {
                self.queue.push_back(WorkUnit {
                    cell: refs[i].clone(),
                    first_repeat: done,
                    repeats: 1,
                    round: Some(done),
                    rerun: false,
                });
            }
            self.started_rounds += 1;
        }
        self.queue.pop_front()
    }

    fn finished(&mut self, unit: &WorkUnit, outcome: super::source::UnitOutcome<'_>) {
        if let super::source::UnitOutcome::Measured { repeats, .. } = outcome {
            let cell = self.values.entry(unit.cell.key.clone()).or_default();
            for r in repeats {
                cell.insert(r.round.unwrap_or(r.repeat), r.output_tokens_per_s);
            }
        }
    }

    fn drain_remaining(&mut self) -> Vec<WorkUnit> {
        self.stopped.get_or_insert_with(|| "stopped early".into());
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::source::fixtures::{cell, repeat_summary};

    #[test]
    fn round_order_is_a_seeded_permutation() {
        let a = round_order(18, 7, 0);
        assert_eq!(a, round_order(18, 7, 0), "deterministic from the seed");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..18).collect::<Vec<_>>());
        assert_ne!(a, round_order(18, 7, 1), "rounds differ");
        assert_ne!(a, round_order(18, 8, 0), "seeds differ");
        assert_eq!(round_order(0, 1, 0), Vec::<usize>::new());
        assert_eq!(round_order(1, 1, 5), vec![0]);
    }

    #[test]
    fn interleaved_source_runs_every_cell_once_per_round() {
        let cells = [cell(0), cell(1), cell(2)];
        let refs: Vec<&Cell> = cells.iter().collect();
        let mut s = interleaved_rounds(&refs, 3, 11);
        assert_eq!(s.total_units(), Some(9));
        let mut units = Vec::new();
        while let Some(u) = s.next_unit() {
            units.push(u);
        }
        for (r, round) in units.chunks(3).enumerate() {
            let mut names: Vec<&str> = round.iter().map(|u| u.cell.name.as_str()).collect();
            assert!(round.iter().all(|u| u.first_repeat == r as u32
                && u.repeats == 1
                && u.round == Some(r as u32)));
            names.sort_unstable();
            assert_eq!(names, ["c0", "c1", "c2"]);
        }
        // The manifest's record matches what the source hands out.
        let schedule = Schedule::new(Order::Interleaved, &refs, 3, 5);
        let mut s = interleaved_rounds(&refs, 3, schedule.seed);
        for round in &schedule.rounds {
            for name in round {
                assert_eq!(&s.next_unit().unwrap().cell.name, name);
            }
        }
        assert!(Schedule::new(Order::Sequential, &refs, 3, 5)
            .rounds
            .is_empty());
    }

    /// Feed a source measured values: `value(cell_index, round)`.
    fn drive(s: &mut AdaptiveRounds, value: impl Fn(usize, u32) -> f64) -> u32 {
        let mut rounds = 0;
        while let Some(u) = s.next_unit() {
            rounds = rounds.max(u.first_repeat + 1);
            let mut summary = repeat_summary();
            summary.repeat = u.first_repeat;
            summary.round = u.round;
            summary.output_tokens_per_s = value(u.cell.index, u.first_repeat);
            s.finished(
                &u,
                crate::execute::UnitOutcome::Measured {
                    repeats: &[summary],
                    already: false,
                },
            );
        }
        rounds
    }

    #[test]
    fn auto_repeats_stop_when_the_tie_set_is_stable_or_at_max() {
        let cells = [cell(0), cell(1), cell(2)];
        let refs: Vec<&Cell> = cells.iter().collect();
        // Cell 1 is clearly best from the start: the tie set {1} is the same after rounds 3
        // and 4 → stop after 4 rounds.
        let mut s = AdaptiveRounds::new(&refs, 10, 1, 2);
        let clear = |c: usize, r: u32| {
            100.0 * (c as f64 + 1.0) * if c == 1 { 2.0 } else { 1.0 } + f64::from(r % 2)
        };
        assert_eq!(drive(&mut s, clear), 4);
        assert!(s
            .stopped
            .as_deref()
            .unwrap()
            .contains("did not change in round 4"));
        // Noise that keeps reshuffling the tie set runs to MAX.
        let mut s = AdaptiveRounds::new(&refs, 6, 1, 2);
        // Each round a different cell leads by a margin that dwarfs every earlier round, so ★
        // follows the latest round and changes every time.
        let flip = |c: usize, r: u32| {
            if c == (r as usize) % 3 {
                10f64.powi(r as i32 + 2)
            } else {
                1.0
            }
        };
        assert_eq!(drive(&mut s, flip), 6);
        assert_eq!(s.stopped.as_deref(), Some("reached 6 rounds"));
    }

    #[test]
    fn defaults_and_parsing() {
        assert_eq!(Order::default_for("reference"), Order::Interleaved);
        assert_eq!(Order::default_for("fake"), Order::Interleaved);
        assert_eq!(Order::default_for("server"), Order::Sequential);
        assert_eq!("sequential".parse::<Order>(), Ok(Order::Sequential));
        assert!("random"
            .parse::<Order>()
            .unwrap_err()
            .contains("interleaved or sequential"));
    }
}
