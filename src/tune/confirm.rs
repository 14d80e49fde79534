//! Interleaved confirmation rounds (`tune --order interleaved`, the default for in-process
//! engines). The search itself is unchanged — the strategy still measures configurations one
//! trial at a time — but the *result* is decided by a small interleaved experiment at the end:
//!
//! - **Finalists.** When the strategy is done or the budget reaches the reserve
//!   ([`reserve`]), the incumbent and its closest challengers become finalists: feasible
//!   configurations in its Welch tie set or within [`CLOSE`] of its mean, best first (the
//!   runner-up when none is that close, so the winner is always checked against someone), at
//!   most [`MAX_FINALISTS`] and at most what the runs left allow at [`CONFIRM_ROUNDS`] rounds
//!   each (never fewer than the incumbent alone; fewer rounds when even that does not fit).
//! - **Rounds.** Round r measures every finalist once, in the seeded order
//!   [`round_order`]`(K, seed, r)` with `seed = order_seed(tune seed)`. All finalists run round r
//!   as the *same repeat index* (`first_round + r`, one past the most repeats any finalist has),
//!   which is also the `round` their repeats carry in `stats.json`: the rounds pair across
//!   finalists, the report's per-round values never collide with the search's repeats, and a
//!   resume finds a finished (finalist, round) on disk by its repeat index.
//! - **Verdict.** ★ is the feasible finalist with the highest P(best) over the confirmation
//!   rounds ([`crate::stats::p_best`], rounds resampled jointly, seeded); the tie set is ★ plus
//!   every finalist the paired `compare` rule ([`crate::stats::paired`]) cannot separate from
//!   it. Machine drift between rounds cancels in the within-round differences. A tie set of
//!   several members claims no single winner.

use serde::Serialize;

use crate::execute::rounds::{order_seed, round_order, Order, Schedule};
use crate::stats::pbest::{p_best, seed_for_run, PBestOptions, DEFAULT_RESAMPLES};

use super::history::History;
use super::space::Space;

/// Rounds of the confirmation (the fewest that give a paired CI).
pub const CONFIRM_ROUNDS: usize = crate::stats::MIN_REPEATS_FOR_CI;
/// Most finalists.
pub const MAX_FINALISTS: usize = 4;
/// Finalists the reserve keeps room for where the budget allows.
pub const MIN_FINALISTS: usize = 2;
/// Relative gap to the incumbent's mean within which a configuration is a close challenger
/// (the `model` strategy's closeness margin, about one repeat's noise on a shared machine).
pub const CLOSE: f64 = super::strategy::MODEL_CLOSE;

/// Runs an interleaved tune keeps for its confirmation: room for [`MIN_FINALISTS`] ×
/// [`CONFIRM_ROUNDS`], one more finalist per further 4 × [`CONFIRM_ROUNDS`] runs of budget up to
/// [`MAX_FINALISTS`]; never more than half the budget (the search needs runs too) unless that is
/// less than the incumbent's own rounds, and always at least one run for the search.
pub fn reserve(budget: usize) -> usize {
    let k = (budget / (4 * CONFIRM_ROUNDS)).clamp(MIN_FINALISTS, MAX_FINALISTS);
    let cap = (budget / 2).max(CONFIRM_ROUNDS.min(budget.saturating_sub(1)));
    (k * CONFIRM_ROUNDS).min(cap)
}

/// The finalists and rounds a confirmation with `left` runs gets, from the history now.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalPlan {
    /// Configuration indices, the incumbent first, then challengers best first.
    pub finalists: Vec<usize>,
    /// Rounds (≤ [`CONFIRM_ROUNDS`]).
    pub rounds: usize,
    /// Why there are fewer finalists or rounds than wanted, when there are.
    pub note: Option<String>,
}

/// Choose the finalists for incumbent `inc` with `left` (≥ 1) runs.
pub fn choose(h: &History, inc: usize, left: usize) -> FinalPlan {
    let s_inc = h.standing(inc);
    let close_to = |i: usize| -> bool {
        let (Some(m), Some(mi)) = (h.standing(i).mean, s_inc.mean) else {
            return false;
        };
        (m - mi).abs() <= CLOSE * mi.abs()
    };
    let welch_ties = h.ties(inc);
    let challengers: Vec<usize> = h
        .ranking()
        .into_iter()
        .filter(|&i| i != inc && h.configs[i].failure.is_none())
        .filter(|&i| s_inc.feasible && h.standing(i).feasible)
        .collect();
    let mut close: Vec<usize> = challengers
        .iter()
        .copied()
        .filter(|&i| welch_ties.contains(&i) || close_to(i))
        .collect();
    if close.is_empty() {
        // Nobody is close: confirm against the runner-up anyway.
        close.extend(challengers.first().copied());
    }
    let fit = left / CONFIRM_ROUNDS;
    let wanted = (1 + close.len()).min(MAX_FINALISTS);
    let k = wanted.min(fit).max(1);
    let rounds = CONFIRM_ROUNDS.min(left);
    let mut notes = Vec::new();
    if k < wanted {
        notes.push(format!(
            "{k} finalist(s) of the {wanted} wanted: {left} run(s) left allow {k} at {CONFIRM_ROUNDS} round(s) each"
        ));
    }
    if rounds < CONFIRM_ROUNDS {
        notes.push(format!(
            "{rounds} confirmation round(s) instead of {CONFIRM_ROUNDS}: only {left} run(s) left"
        ));
    }
    let mut finalists = vec![inc];
    finalists.extend(close.into_iter().take(k - 1));
    FinalPlan {
        finalists,
        rounds,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// ★ and the tie set of the confirmation so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfirmVerdict {
    /// ★: configuration index.
    pub best: usize,
    /// The tie set as configuration indices, ★ first.
    pub tie_set: Vec<usize>,
    /// P(best) per finalist (in finalist order); `None` for one not in the verdict.
    pub p_best: Vec<Option<f64>>,
    /// Rounds every live finalist has a value in.
    pub rounds_complete: usize,
}

/// The confirmation of an interleaved tune.
#[derive(Debug, Clone)]
pub struct Confirmation {
    /// The plan (finalists, rounds, note).
    pub plan: FinalPlan,
    /// Repeat index (= round label) of round 0.
    pub first_round: usize,
    /// Seed of the round orders.
    pub seed: u64,
    /// Seed of the P(best) bootstrap.
    pub pbest_seed: u64,
    /// Per round the positions (into `plan.finalists`) in the order they run.
    pub orders: Vec<Vec<usize>>,
    /// `[finalist][round]`: the objective measured, once measured.
    pub values: Vec<Vec<Option<f64>>>,
    /// `[finalist][round]`: answered (measured or failed).
    pub answered: Vec<Vec<bool>>,
    verdict: Option<ConfirmVerdict>,
}

impl Confirmation {
    /// A confirmation of `plan` whose round 0 is repeat `first_round`, seeded from the tune's
    /// seed.
    pub fn new(plan: FinalPlan, first_round: usize, tune_seed: u64) -> Confirmation {
        let seed = order_seed(tune_seed);
        let k = plan.finalists.len();
        let orders = (0..plan.rounds)
            .map(|r| round_order(k, seed, r as u32))
            .collect();
        Confirmation {
            first_round,
            seed,
            pbest_seed: seed_for_run(tune_seed),
            orders,
            values: vec![vec![None; plan.rounds]; k],
            answered: vec![vec![false; plan.rounds]; k],
            plan,
            verdict: None,
        }
    }

    /// The next (finalist position, round) to measure: rounds in turn, each in its order;
    /// finalists that failed are skipped.
    pub fn next(&self, h: &History) -> Option<(usize, usize)> {
        for (r, order) in self.orders.iter().enumerate() {
            for &pos in order {
                let config = self.plan.finalists[pos];
                if !self.answered[pos][r] && h.configs[config].failure.is_none() {
                    return Some((pos, r));
                }
            }
        }
        None
    }

    /// The (position, round) of a repeat of `config` at repeat index `repeat`, if it is one of
    /// this confirmation's.
    pub fn slot(&self, config: usize, repeat: usize) -> Option<(usize, usize)> {
        let pos = self.plan.finalists.iter().position(|&f| f == config)?;
        let r = repeat.checked_sub(self.first_round)?;
        (r < self.plan.rounds).then_some((pos, r))
    }

    /// Record the answer of a slot and recompute the verdict.
    pub fn record(&mut self, h: &History, pos: usize, round: usize, value: Option<f64>) {
        self.answered[pos][round] = true;
        self.values[pos][round] = value;
        self.verdict = self.compute(h);
    }

    /// The verdict once the first round is complete.
    pub fn verdict(&self) -> Option<&ConfirmVerdict> {
        self.verdict.as_ref()
    }

    fn compute(&self, h: &History) -> Option<ConfirmVerdict> {
        let live: Vec<usize> = (0..self.plan.finalists.len())
            .filter(|&p| h.configs[self.plan.finalists[p]].failure.is_none())
            .collect();
        let rounds_complete = (0..self.plan.rounds)
            .take_while(|&r| live.iter().all(|&p| self.answered[p][r]))
            .count();
        if rounds_complete == 0 {
            return None;
        }
        // Only feasible finalists can win (feasibility on all of a finalist's repeats).
        let eligible: Vec<usize> = live
            .into_iter()
            .filter(|&p| h.standing(self.plan.finalists[p]).feasible)
            .filter(|&p| self.values[p].iter().any(Option::is_some))
            .collect();
        let values: Vec<Vec<Option<f64>>> =
            eligible.iter().map(|&p| self.values[p].clone()).collect();
        let metric = h.objective.metric;
        let pb = p_best(
            &values,
            &PBestOptions {
                seed: self.pbest_seed,
                resamples: DEFAULT_RESAMPLES,
                direction: h.objective.direction,
                paired: true,
                alpha: crate::stats::DEFAULT_ALPHA,
                threshold: metric.default_threshold(),
            },
        )?;
        let mut p = vec![None; self.plan.finalists.len()];
        for (e, &pos) in eligible.iter().enumerate() {
            p[pos] = pb.p_best[e];
        }
        Some(ConfirmVerdict {
            best: self.plan.finalists[eligible[pb.best]],
            tie_set: pb
                .tie_set
                .iter()
                .map(|&e| self.plan.finalists[eligible[e]])
                .collect(),
            p_best: p,
            rounds_complete,
        })
    }

    /// How the winner was chosen, for the outputs.
    pub fn method(&self) -> String {
        format!(
            "paired over {} interleaved confirmation round(s)",
            self.verdict.as_ref().map_or(0, |v| v.rounds_complete)
        )
    }

    /// The manifest's `schedule` of this confirmation.
    pub fn schedule(&self, space: &Space) -> Schedule {
        Schedule {
            order: Order::Interleaved,
            seed: self.seed,
            rounds: self
                .orders
                .iter()
                .map(|o| {
                    o.iter()
                        .map(|&p| space.cells[self.plan.finalists[p]].name.clone())
                        .collect()
                })
                .collect(),
            auto_repeats: false,
            first_round: self.first_round as u32,
            rerun_noisy: None,
            reruns: Vec::new(),
        }
    }

    /// The confirmation as `tune.json` writes it.
    pub fn doc(&self, h: &History, space: &Space) -> ConfirmationDoc {
        let verdict = self.verdict.as_ref();
        let name = |i: usize| space.cells[i].name.clone();
        ConfirmationDoc {
            method: self.method(),
            seed: self.seed,
            pbest_seed: self.pbest_seed,
            first_round: self.first_round,
            rounds_planned: self.plan.rounds,
            rounds_complete: verdict.map_or(0, |v| v.rounds_complete),
            orders: self.schedule(space).rounds,
            finalists: self
                .plan
                .finalists
                .iter()
                .enumerate()
                .map(|(pos, &i)| FinalistDoc {
                    cell: name(i),
                    values: self.values[pos].clone(),
                    mean: crate::stats::mean(
                        &self.values[pos]
                            .iter()
                            .flatten()
                            .copied()
                            .collect::<Vec<_>>(),
                    ),
                    p_best: verdict.and_then(|v| v.p_best[pos]),
                    feasible: h.standing(i).feasible,
                    failure: h.configs[i].failure.clone(),
                })
                .collect(),
            tie_set: verdict
                .map_or_else(Vec::new, |v| v.tie_set.iter().map(|&i| name(i)).collect()),
            single_winner: verdict.is_some_and(|v| {
                v.tie_set.len() == 1 && v.rounds_complete >= crate::stats::MIN_REPEATS_FOR_CI
            }),
            note: self.plan.note.clone(),
        }
    }
}

/// One finalist in `tune.json`'s `confirmation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinalistDoc {
    /// Cell name.
    pub cell: String,
    /// Objective per confirmation round (`null` until measured).
    pub values: Vec<Option<f64>>,
    /// Mean over the confirmation rounds.
    pub mean: Option<f64>,
    /// P(best) over the confirmation rounds.
    pub p_best: Option<f64>,
    /// Whether it meets every constraint (on all its repeats).
    pub feasible: bool,
    /// Why it could not be measured, when it failed during the confirmation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// `tune.json`'s `confirmation` (interleaved tunes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfirmationDoc {
    /// `paired over N interleaved confirmation round(s)`.
    pub method: String,
    /// Seed of the round orders (`round_order(K, seed, r)`).
    pub seed: u64,
    /// Seed of the P(best) bootstrap.
    pub pbest_seed: u64,
    /// Repeat index (and `round` label in `stats.json`) of round 1.
    pub first_round: usize,
    /// Rounds planned.
    pub rounds_planned: usize,
    /// Rounds every finalist has a value in.
    pub rounds_complete: usize,
    /// Per round the finalists' cell names in the order they ran.
    pub orders: Vec<Vec<String>>,
    /// The finalists, the search's incumbent first.
    pub finalists: Vec<FinalistDoc>,
    /// ★ and the finalists the paired compare rule cannot separate from it.
    pub tie_set: Vec<String>,
    /// Whether the tie set holds only ★ over ≥ 3 complete rounds (else no single winner is
    /// claimed: with fewer rounds the paired rule cannot separate anyone).
    pub single_winner: bool,
    /// Why there are fewer finalists or rounds than wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests;
