//! Answering trials from recorded repeats instead of the engine. `--replay RUN_DIR` draws each
//! requested repeat (with replacement, with the seed) among a complete grid sweep's recorded
//! repeats of that cell, so strategies can be compared offline and deterministically (an
//! interleaved tune's confirmation round draws one recorded round for all its finalists when the
//! recording ran in interleaved rounds, keeping the drift they shared); `--reuse DIR` hands out an earlier run's repeats of a cell in order, once each, before
//! anything is measured again; `--evaluate-strategies` replays every strategy over many seeds
//! and reports how many runs each needs to first hold a configuration within 2 % of the grid's
//! best feasible objective.

use std::collections::BTreeMap;
use std::path::Path;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::measure::{CellStatus, RepeatSummary};
use crate::metric::Direction;
use crate::results::read::{read_manifest_path, read_stats_path};
use crate::results::{Manifest, ResultsError};

use super::driver::{Answer, Driver};
use super::history::{History, Objective, RepeatValues};
use super::space::Space;
use super::strategy::StrategyKind;
use crate::execute::rounds::Order;

/// Relative distance to the grid's best within which a configuration counts as found.
pub const WITHIN: f64 = 0.02;

/// What a run directory recorded for one cell.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedCell {
    /// Its measured repeats.
    Repeats(Vec<RepeatSummary>),
    /// The resolver skipped it or its engine failed.
    Failed(String),
}

/// A run directory's recorded cells, by cell name.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The run's manifest.
    pub manifest: Manifest,
    /// Recorded cells by name (pending cells are absent).
    pub cells: BTreeMap<String, RecordedCell>,
}

/// Read the manifest and every complete cell's `stats.json` of `run_dir` (only those files are
/// needed, so a recorded grid can be stored without its request records).
pub fn load_recorded(run_dir: &Path) -> Result<Recorded, ResultsError> {
    let manifest = read_manifest_path(run_dir)?;
    let mut cells = BTreeMap::new();
    for entry in &manifest.cells {
        let stats = run_dir.join("cells").join(&entry.name).join("stats.json");
        let recorded = match entry.status {
            CellStatus::Skipped | CellStatus::Failed => RecordedCell::Failed(
                entry
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", entry.status).to_lowercase()),
            ),
            _ if stats.is_file() => RecordedCell::Repeats(read_stats_path(&stats)?.repeats),
            _ => continue,
        };
        cells.insert(entry.name.clone(), recorded);
    }
    Ok(Recorded { manifest, cells })
}

/// Per configuration of `space`, the recorded repeats' values (or failure); the error lists the
/// configurations the recording lacks.
pub fn recorded_values(
    recorded: &Recorded,
    space: &Space,
    objective: &Objective,
) -> Result<Vec<Result<Vec<RepeatValues>, String>>, String> {
    let missing: Vec<&str> = space
        .cells
        .iter()
        .filter(|c| !recorded.cells.contains_key(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the recorded run has no result for {} of the {} configuration(s) (first: `{}`); replay needs a complete grid sweep of the same preset and space",
            missing.len(),
            space.len(),
            missing[0]
        ));
    }
    Ok(space
        .cells
        .iter()
        .map(|c| match &recorded.cells[&c.name] {
            RecordedCell::Repeats(r) => Ok(r.iter().map(|s| objective.values_of(s)).collect()),
            RecordedCell::Failed(reason) => Err(reason.clone()),
        })
        .collect())
}

/// Per configuration of `space`, the interleaved round of each recorded repeat (in the order of
/// [`recorded_values`]) when the recording ran in interleaved rounds (every repeat of every
/// measured cell carries one); `None` otherwise.
pub fn recorded_rounds(recorded: &Recorded, space: &Space) -> Option<Vec<Vec<u32>>> {
    let mut any = false;
    let mut out = Vec::with_capacity(space.len());
    for c in &space.cells {
        match recorded.cells.get(&c.name) {
            Some(RecordedCell::Repeats(r)) => {
                let rounds = r.iter().map(|s| s.round).collect::<Option<Vec<u32>>>()?;
                any |= !rounds.is_empty();
                out.push(rounds);
            }
            _ => out.push(Vec::new()),
        }
    }
    any.then_some(out)
}

/// Answers trials by drawing among recorded repeats.
#[derive(Debug)]
pub struct ReplayOracle {
    values: Vec<Result<Vec<RepeatValues>, String>>,
    rng: ChaCha8Rng,
    /// [`recorded_rounds`], when the recording shares rounds.
    rounds: Option<Vec<Vec<u32>>>,
    /// Tune confirmation round → the recorded round that answers it.
    drawn: BTreeMap<u32, u32>,
}

impl ReplayOracle {
    /// An oracle over `values` (from [`recorded_values`]) drawing with `seed`.
    pub fn new(values: Vec<Result<Vec<RepeatValues>, String>>, seed: u64) -> ReplayOracle {
        ReplayOracle {
            values,
            // A different stream from the strategy's, which uses the seed itself.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7265_706c_6179),
            rounds: None,
            drawn: BTreeMap::new(),
        }
    }

    /// Answer confirmation rounds from the recording's rounds ([`recorded_rounds`]).
    pub fn with_rounds(mut self, rounds: Option<Vec<Vec<u32>>>) -> ReplayOracle {
        self.rounds = rounds;
        self
    }

    /// One repeat of `config` for the tune's confirmation round `round`. From a recording in
    /// interleaved rounds every finalist of a round answers with its repeat of the *same*
    /// recorded round (drawn once per tune round with the seed), so the drift a round shared
    /// live reaches the pairing; otherwise (or when the cell lacks that round) one draw as
    /// [`ReplayOracle::answer`] makes.
    pub fn answer_round(&mut self, config: usize, round: u32) -> Answer {
        if let (Some(rounds), Ok(v)) = (&self.rounds, &self.values[config]) {
            let n = rounds.iter().flatten().max().map_or(0, |m| m + 1);
            if n > 0 {
                let rng = &mut self.rng;
                let recorded = *self
                    .drawn
                    .entry(round)
                    .or_insert_with(|| (rng.next_u64() % u64::from(n)) as u32);
                let at = rounds[config].iter().position(|&r| r == recorded);
                if let Some(x) = at.and_then(|j| v.get(j)) {
                    return Answer::Measured(vec![x.clone()]);
                }
            }
        }
        self.answer(config, 1)
    }

    /// `repeats` draws for configuration `config`.
    pub fn answer(&mut self, config: usize, repeats: usize) -> Answer {
        match &self.values[config] {
            Err(reason) => Answer::Failed(reason.clone()),
            Ok(v) if v.is_empty() => Answer::Failed("no recorded repeat".into()),
            Ok(v) => Answer::Measured(
                (0..repeats)
                    .map(|_| v[(self.rng.next_u64() % v.len() as u64) as usize].clone())
                    .collect(),
            ),
        }
    }
}

/// Run `driver` to the end answering from `oracle`; calls `after` after every trial.
pub fn replay(driver: &mut Driver, oracle: &mut ReplayOracle, after: &mut dyn FnMut(&Driver)) {
    while let Some(ask) = driver.next_trial() {
        let answer = match ask.round {
            Some(round) => oracle.answer_round(ask.config, round),
            None => oracle.answer(ask.config, ask.repeats),
        };
        driver.record(&ask, answer, "replay");
        after(driver);
    }
}

/// The recording's truth: every configuration with all its recorded repeats.
pub fn truth(values: &[Result<Vec<RepeatValues>, String>], objective: &Objective) -> History {
    let mut h = History::new(objective.clone(), values.len());
    for (i, v) in values.iter().enumerate() {
        match v {
            Ok(v) => h.configs[i].repeats.clone_from(v),
            Err(reason) => h.configs[i].failure = Some(reason.clone()),
        }
    }
    h
}

/// Whether configuration `i` is within [`WITHIN`] of the truth's best feasible objective.
pub fn within_best(truth: &History, i: usize) -> bool {
    let Some(best) = truth.incumbent() else {
        return false;
    };
    let (b, s) = (truth.standing(best), truth.standing(i));
    let (Some(bm), Some(m)) = (b.mean, s.mean) else {
        return false;
    };
    if !b.feasible || !s.feasible {
        return false;
    }
    match truth.objective.direction {
        Direction::HigherIsBetter => m >= bm * (1.0 - WITHIN),
        Direction::LowerIsBetter => m <= bm * (1.0 + WITHIN),
    }
}

/// One strategy's result over many seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRow {
    /// Strategy.
    pub strategy: StrategyKind,
    /// Median runs until the incumbent is first within 2 % (`None`: not within the budget).
    pub median_runs: Option<f64>,
    /// 90th percentile of the same (nearest rank).
    pub p90_runs: Option<f64>,
    /// Share of seeds whose incumbent got within 2 % within the budget.
    pub success_rate: f64,
    /// Share of seeds whose final pick is within 2 %.
    pub final_within_rate: f64,
    /// Median runs used.
    pub median_runs_used: f64,
    /// Median runs until the incumbent is first in the grid's tie set (`None`: not reached).
    pub median_runs_to_ties: Option<f64>,
    /// Share of seeds whose final pick is in the grid's tie set.
    pub final_in_ties_rate: f64,
}

/// Nearest-rank percentile of values where `None` is +∞; `None` when it lands on one.
fn rank_percentile(xs: &[Option<usize>], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = xs
        .iter()
        .map(|x| x.map_or(f64::INFINITY, |n| n as f64))
        .collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    let x = v[rank - 1];
    x.is_finite().then_some(x)
}

/// Replay each strategy with seeds `0..seeds` over `values` at `budget` runs, in `order` (an
/// interleaved tune's final pick is ★ of its confirmation rounds).
#[expect(
    clippy::too_many_arguments,
    reason = "the evaluation's settings; a struct would only rename them"
)]
pub fn evaluate(
    space: &Space,
    objective: &Objective,
    values: &[Result<Vec<RepeatValues>, String>],
    kinds: &[StrategyKind],
    seeds: u64,
    budget: usize,
    eta: usize,
    order: Order,
    rounds: Option<&[Vec<u32>]>,
) -> Vec<EvalRow> {
    let truth = truth(values, objective);
    evaluate_against(
        &truth, space, values, kinds, seeds, budget, eta, order, rounds,
    )
}

/// [`evaluate`] against a given truth (a synthetic grid's noise-free values) instead of the
/// recording's own means.
#[expect(
    clippy::too_many_arguments,
    reason = "the evaluation's settings; a struct would only rename them"
)]
pub fn evaluate_against(
    truth: &History,
    space: &Space,
    values: &[Result<Vec<RepeatValues>, String>],
    kinds: &[StrategyKind],
    seeds: u64,
    budget: usize,
    eta: usize,
    order: Order,
    rounds: Option<&[Vec<u32>]>,
) -> Vec<EvalRow> {
    let objective = &truth.objective;
    let tie_set: Vec<usize> = truth
        .incumbent()
        .filter(|&b| truth.standing(b).feasible)
        .map(|b| std::iter::once(b).chain(truth.ties(b)).collect())
        .unwrap_or_default();
    kinds
        .iter()
        .map(|&kind| {
            let mut hits = Vec::new();
            let mut finals = 0usize;
            let mut used = Vec::new();
            let mut tie_hits = Vec::new();
            let mut final_ties = 0usize;
            for seed in 0..seeds {
                let resolved = super::resolve_strategy(kind, space.len(), budget, order);
                let mut driver = super::new_driver(
                    space.clone(),
                    objective.clone(),
                    resolved,
                    budget,
                    seed,
                    eta,
                    order,
                );
                let mut oracle = ReplayOracle::new(values.to_vec(), seed)
                    .with_rounds(rounds.map(<[Vec<u32>]>::to_vec));
                let mut hit: Option<usize> = None;
                let mut tie_hit: Option<usize> = None;
                replay(&mut driver, &mut oracle, &mut |d| {
                    let inc = d.incumbent();
                    if hit.is_none() && inc.is_some_and(|i| within_best(truth, i)) {
                        hit = Some(d.runs_used());
                    }
                    if tie_hit.is_none() && inc.is_some_and(|i| tie_set.contains(&i)) {
                        tie_hit = Some(d.runs_used());
                    }
                });
                let inc = driver.incumbent();
                if inc.is_some_and(|i| within_best(truth, i)) {
                    finals += 1;
                }
                if inc.is_some_and(|i| tie_set.contains(&i)) {
                    final_ties += 1;
                }
                tie_hits.push(tie_hit);
                hits.push(hit);
                used.push(driver.runs_used() as f64);
            }
            used.sort_by(f64::total_cmp);
            EvalRow {
                strategy: kind,
                median_runs: rank_percentile(&hits, 0.5),
                p90_runs: rank_percentile(&hits, 0.9),
                success_rate: hits.iter().filter(|h| h.is_some()).count() as f64
                    / seeds.max(1) as f64,
                final_within_rate: finals as f64 / seeds.max(1) as f64,
                median_runs_used: crate::stats::percentile_sorted(&used, 50.0).unwrap_or(0.0),
                median_runs_to_ties: rank_percentile(&tie_hits, 0.5),
                final_in_ties_rate: final_ties as f64 / seeds.max(1) as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod synthetic;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_rounds_of_an_interleaved_recording_answer_from_one_recorded_round() {
        // Round r of the recording: config 0 measured 100·(r+1), config 1 one more.
        let values: Vec<Result<Vec<RepeatValues>, String>> = (0..2)
            .map(|c| {
                Ok((0..5)
                    .map(|r| vec![Some(100.0 * (r + 1) as f64 + c as f64)])
                    .collect())
            })
            .collect();
        let rounds = vec![vec![0, 1, 2, 3, 4], vec![0, 1, 2, 3, 4]];
        let mut o = ReplayOracle::new(values.clone(), 3).with_rounds(Some(rounds));
        let value = |a: Answer| match a {
            Answer::Measured(v) => v[0][0].unwrap(),
            Answer::Failed(e) => panic!("{e}"),
        };
        for round in 7..12 {
            let (a, b) = (
                value(o.answer_round(0, round)),
                value(o.answer_round(1, round)),
            );
            assert_eq!(b - a, 1.0, "both from the same recorded round");
            assert_eq!(value(o.answer_round(0, round)), a, "the same round again");
        }
        // Without the rounds, one independent draw.
        let mut plain = ReplayOracle::new(values, 3);
        assert!(matches!(plain.answer_round(0, 7), Answer::Measured(v) if v.len() == 1));
    }

    #[test]
    fn rank_percentiles_treat_misses_as_infinite() {
        let xs = [Some(3), Some(5), None, Some(4)];
        assert_eq!(rank_percentile(&xs, 0.5), Some(4.0));
        assert_eq!(rank_percentile(&xs, 0.9), None);
        assert_eq!(rank_percentile(&[], 0.5), None);
    }
}
