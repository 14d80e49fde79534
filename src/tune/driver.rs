//! The tuning loop independent of how a trial is answered: ask the strategy, record the answer
//! in the history, and at the end make sure the winner has ≥ 3 repeats (the budget keeps room
//! for that top-up) — or, in `--order interleaved`, decide the winner in interleaved
//! confirmation rounds of the finalists ([`super::confirm`]; the budget keeps room for those).
//! Live runs, `--resume`, `--reuse` and `--replay` all answer trials for the same driver, so a
//! replay exercises exactly the decisions a live tune makes.

use serde::Serialize;

use crate::execute::rounds::Order;

use super::confirm::{self, Confirmation};
use super::history::{History, Objective, RepeatValues};
use super::space::Space;
use super::strategy::{Ask, Strategy, FINAL_REPEATS};

/// How a trial was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The repeats were measured (or found): their values.
    Measured(Vec<RepeatValues>),
    /// The configuration cannot be measured (rejection, engine failure, timeout).
    Failed(String),
}

/// One trial as `tune.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// 1-based order.
    pub trial: usize,
    /// Configuration index in the space.
    #[serde(skip)]
    pub config: usize,
    /// Cell name (the directory under `cells/`).
    pub cell: String,
    /// Knob values.
    pub knobs: std::collections::BTreeMap<String, String>,
    /// Load label (e.g. `c32`).
    pub load: String,
    /// First repeat index measured by this trial.
    pub first_repeat: usize,
    /// Repeats this trial added.
    pub repeats: usize,
    /// Repeats of the configuration after this trial.
    pub total_repeats: usize,
    /// The interleaved confirmation round this repeat ran in (its repeat index, shared by every
    /// finalist of the round, as `stats.json` records it); absent for search trials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// Per-repeat values of this trial: objective first, then each constraint's metric.
    pub values: Vec<RepeatValues>,
    /// The configuration's objective mean after this trial.
    pub objective_mean: Option<f64>,
    /// Whether the configuration meets every constraint after this trial.
    pub feasible: bool,
    /// Total relative constraint violation (0 when feasible; null for a failure).
    pub violation: Option<f64>,
    /// Why it could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The strategy's reason for choosing it.
    pub reason: String,
    /// Runs used after this trial.
    pub runs_used: usize,
    /// Incumbent cell after this trial.
    pub incumbent: Option<String>,
    /// Where the answer came from: `run`, `resume`, `reuse` or `replay`.
    pub source: String,
}

/// The loop's state.
pub struct Driver {
    /// The space.
    pub space: Space,
    /// What is known.
    pub history: History,
    /// Budget in runs.
    pub budget: usize,
    /// Trials so far.
    pub trials: Vec<Trial>,
    strategy: Box<dyn Strategy>,
    strategy_done: bool,
    order: Order,
    seed: u64,
    /// The confirmation rounds, once an interleaved tune has chosen its finalists.
    pub confirm: Option<Confirmation>,
}

impl Driver {
    /// A driver over `space` with `strategy` and a budget of `budget` runs.
    pub fn new(
        space: Space,
        objective: Objective,
        strategy: Box<dyn Strategy>,
        budget: usize,
    ) -> Driver {
        let n = space.len();
        Driver {
            space,
            history: History::new(objective, n),
            budget,
            trials: Vec::new(),
            strategy,
            strategy_done: false,
            order: Order::Sequential,
            seed: 0,
            confirm: None,
        }
    }

    /// Decide the result in interleaved confirmation rounds (`--order interleaved`), round
    /// orders and P(best) seeded from the tune's `seed`. Without this the driver is sequential:
    /// the incumbent is topped up to the final repeat count and ties use Welch.
    pub fn interleaved(mut self, seed: u64) -> Driver {
        self.order = Order::Interleaved;
        self.seed = seed;
        self
    }

    /// `interleaved` or `sequential`.
    pub fn order(&self) -> Order {
        self.order
    }

    /// Runs used.
    pub fn runs_used(&self) -> usize {
        self.history.runs()
    }

    /// The configuration the tune would pick now: ★ of the confirmation rounds once one is
    /// complete, else what the strategy would pick (see [`Strategy::incumbent`]).
    pub fn incumbent(&self) -> Option<usize> {
        if let Some(v) = self.confirm.as_ref().and_then(Confirmation::verdict) {
            return Some(v.best);
        }
        self.strategy.incumbent(&self.history, &self.space)
    }

    /// The next trial, or `None` when the tune is done (budget spent, strategy finished and the
    /// winner has its final repeats).
    pub fn next_trial(&mut self) -> Option<Ask> {
        let left = self.budget.saturating_sub(self.runs_used());
        if left == 0 {
            return None;
        }
        if self.order == Order::Interleaved {
            return self.next_interleaved(left);
        }
        // Keep room to bring the current incumbent to the final repeat count.
        let reserve = self
            .incumbent()
            .filter(|&i| self.history.configs[i].failure.is_none())
            .map_or(0, |i| FINAL_REPEATS.saturating_sub(self.history.repeats(i)));
        if !self.strategy_done && left > reserve {
            match self
                .strategy
                .ask(&self.history, &self.space, left - reserve)
            {
                Some(ask) => return Some(ask),
                None => self.strategy_done = true,
            }
        }
        let inc = self.incumbent()?;
        let have = self.history.repeats(inc);
        (self.history.configs[inc].failure.is_none() && have < FINAL_REPEATS).then(|| Ask {
            config: inc,
            repeats: (FINAL_REPEATS - have).min(left),
            round: None,
            reason: format!("finalist: the incumbent to {FINAL_REPEATS} repeats"),
        })
    }

    /// The next trial of an interleaved tune: the strategy's until the reserve, then the
    /// confirmation rounds.
    fn next_interleaved(&mut self, left: usize) -> Option<Ask> {
        if self.confirm.is_none() {
            let reserve = confirm::reserve(self.budget);
            if !self.strategy_done && left > reserve {
                match self
                    .strategy
                    .ask(&self.history, &self.space, left - reserve)
                {
                    Some(ask) => return Some(ask),
                    None => self.strategy_done = true,
                }
            }
            let inc = self
                .strategy
                .incumbent(&self.history, &self.space)
                .filter(|&i| self.history.configs[i].failure.is_none())?;
            let plan = confirm::choose(&self.history, inc, left);
            // Round r of every finalist is the same repeat index, past every repeat they have.
            let first_round = plan
                .finalists
                .iter()
                .map(|&f| self.history.repeats(f))
                .max()
                .unwrap_or(0);
            self.confirm = Some(Confirmation::new(plan, first_round, self.seed));
        }
        let c = self.confirm.as_ref()?;
        let (pos, r) = c.next(&self.history)?;
        let k = c.plan.finalists.len();
        Some(Ask {
            config: c.plan.finalists[pos],
            repeats: 1,
            round: Some((c.first_round + r) as u32),
            reason: format!(
                "confirmation round {} of {}: {k} finalist(s) in a seeded order",
                r + 1,
                c.plan.rounds
            ),
        })
    }

    /// The manifest's `schedule` of an interleaved tune (its confirmation rounds once chosen).
    pub fn schedule(&self) -> Option<crate::execute::rounds::Schedule> {
        if self.order != Order::Interleaved {
            return None;
        }
        Some(match &self.confirm {
            Some(c) => c.schedule(&self.space),
            None => crate::execute::rounds::Schedule {
                order: Order::Interleaved,
                seed: crate::execute::rounds::order_seed(self.seed),
                rounds: Vec::new(),
                auto_repeats: false,
                first_round: 0,
                rerun_noisy: None,
                reruns: Vec::new(),
            },
        })
    }

    /// Record the answer to `ask` (from `source`).
    pub fn record(&mut self, ask: &Ask, answer: Answer, source: &str) {
        let i = ask.config;
        let first_repeat = ask.round.map_or(self.history.repeats(i), |r| r as usize);
        let (values, failure) = match answer {
            Answer::Measured(v) => (v, None),
            Answer::Failed(reason) => (Vec::new(), Some(reason)),
        };
        self.history.configs[i]
            .repeats
            .extend(values.iter().cloned());
        if failure.is_some() {
            self.history.configs[i].failure.clone_from(&failure);
        }
        if let (Some(c), Some(_)) = (self.confirm.as_mut(), ask.round) {
            if let Some((pos, r)) = c.slot(i, first_repeat) {
                let value = values.first().and_then(|v| v.first().copied().flatten());
                c.record(&self.history, pos, r, value);
            }
        }
        let standing = self.history.standing(i);
        let cell = &self.space.cells[i];
        let incumbent = self.incumbent().map(|b| self.space.cells[b].name.clone());
        self.trials.push(Trial {
            trial: self.trials.len() + 1,
            config: i,
            cell: cell.name.clone(),
            knobs: cell.knobs.clone(),
            load: cell.load.label(),
            first_repeat,
            repeats: values.len(),
            total_repeats: standing.repeats,
            round: ask.round,
            values,
            objective_mean: standing.mean,
            feasible: standing.feasible,
            violation: standing.violation.is_finite().then_some(standing.violation),
            failure,
            reason: ask.reason.clone(),
            runs_used: self.history.runs(),
            incumbent,
            source: source.to_string(),
        });
    }
}
