//! What a tune writes: `tune.json` (every trial in order, the winner with its CI, the tie set,
//! the Pareto fronts, runs used) and `best.toml`, an overlay of the winner's knobs that `run`
//! and `sweep` accept with `--overlay` — plus the reader of such overlays.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::measure::LoadPoint;

use crate::results::{to_json_pretty, write_atomic, ResultsError};

use super::constraint::Constraint;
use super::driver::{Driver, Trial};
use super::strategy::StrategyKind;

/// `tune.json`'s schema version (additive changes keep it; readers accept older ones).
pub const TUNE_SCHEMA_VERSION: u32 = 1;
/// File name of the tune document.
pub const TUNE_FILE: &str = "tune.json";
/// File name of the winner's overlay.
pub const BEST_FILE: &str = "best.toml";

/// An objective value with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectiveValue {
    /// Mean over the repeats.
    pub mean: Option<f64>,
    /// 95 % CI half-width (≥ 3 repeats).
    pub ci95: Option<f64>,
    /// Repeats.
    pub repeats: usize,
}

/// A configuration in the summary sections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pick {
    /// Cell name.
    pub cell: String,
    /// Knob values.
    pub knobs: BTreeMap<String, String>,
    /// Load label.
    pub load: String,
    /// The load itself (closed-loop concurrency or open-loop rate), for `best.toml`'s `[run]`.
    pub load_point: crate::measure::LoadPoint,
    /// The objective.
    pub objective: ObjectiveValue,
    /// Whether every constraint holds.
    pub feasible: bool,
}

/// One point of a Pareto front.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParetoPoint {
    /// Cell name.
    pub cell: String,
    /// Objective mean.
    pub objective: Option<f64>,
    /// The constrained metric's mean.
    pub value: Option<f64>,
}

/// The front of the objective against one constrained metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParetoFront {
    /// The constraint (`tpot_p99<=50`).
    pub constraint: String,
    /// Its metric.
    pub metric: String,
    /// Non-dominated configurations, by the metric's value.
    pub points: Vec<ParetoPoint>,
}

/// The size of the search space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceInfo {
    /// Cells the sweep expands to.
    pub planned: usize,
    /// Removed by `exclude` rules.
    pub excluded: usize,
    /// Rejected by the resolver before any run.
    pub rejected: usize,
    /// Valid configurations searched.
    pub valid: usize,
    /// Distinct loads (concurrencies or rates) among them: > 1 when the load is searched, and
    /// then `best.toml` carries the winner's load in a `[run]` table.
    pub loads: usize,
}

/// `tune.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TuneDoc {
    /// [`TUNE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Preset name.
    pub preset: String,
    /// The strategy run (`auto` resolved).
    pub strategy: StrategyKind,
    /// The strategy asked for.
    pub strategy_requested: StrategyKind,
    /// Seed of the strategy (and of replay draws).
    pub seed: u64,
    /// Budget in runs (one run = one repeat of one cell).
    pub budget: usize,
    /// Runs used.
    pub runs_used: usize,
    /// The objective metric.
    pub objective: String,
    /// `maximize` or `minimize`.
    pub direction: String,
    /// Constraints.
    pub constraints: Vec<Constraint>,
    /// The settings `--resume` continues with.
    pub settings: super::TuneSettings,
    /// The search space.
    pub space: SpaceInfo,
    /// `RUN_DIR` of `--replay` (trials answered from its recorded repeats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// Every trial in order.
    pub trials: Vec<Trial>,
    /// The winner.
    pub best: Option<Pick>,
    /// Configurations the compare rule cannot tell apart from the winner.
    pub ties: Vec<Pick>,
    /// Objective against each constrained metric.
    pub pareto: Vec<ParetoFront>,
    /// Notes (e.g. the winner has fewer than 3 repeats).
    pub notes: Vec<String>,
    /// How the winner and the ties were decided: `welch` (back-to-back repeats, the sequential
    /// order) or `paired over N interleaved confirmation round(s)`.
    pub method: String,
    /// The interleaved confirmation rounds (finalists, seeds, round orders, per-round values,
    /// P(best), tie set), once an interleaved tune has chosen its finalists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<super::confirm::ConfirmationDoc>,
}

/// The execution loop's observer during a tune: the tuner prints one line per trial itself, so
/// this only passes notes on (stderr).
#[derive(Debug, Default)]
pub struct TuneObserver;

impl crate::execute::ExecuteObserver for TuneObserver {
    fn unit_started(&mut self, _: &crate::execute::WorkUnit, _: usize) {}
    fn on_event(&mut self, _: &crate::measure::MeasureEvent) {}
    fn cell_finished(&mut self, _: &str, _: crate::measure::CellStatus, _: &str) {}
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
    fn finish(&mut self) {}
}

/// Describe configuration `i` of the driver.
pub fn pick(driver: &Driver, i: usize) -> Pick {
    let s = driver.history.standing(i);
    let c = &driver.space.cells[i];
    Pick {
        cell: c.name.clone(),
        knobs: c.knobs.clone(),
        load: c.load.label(),
        load_point: c.load,
        objective: ObjectiveValue {
            mean: s.mean,
            ci95: s.ci95,
            repeats: s.repeats,
        },
        feasible: s.feasible,
    }
}

/// What [`summarize`] derives from the driver's state.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The winner (★ of the confirmation when there is one).
    pub best: Option<Pick>,
    /// The winner's ties.
    pub ties: Vec<Pick>,
    /// Pareto fronts.
    pub pareto: Vec<ParetoFront>,
    /// Notes.
    pub notes: Vec<String>,
    /// [`TuneDoc::method`].
    pub method: String,
    /// [`TuneDoc::confirmation`].
    pub confirmation: Option<super::confirm::ConfirmationDoc>,
}

/// Everything but the identity fields, from the driver's state.
pub fn summarize(driver: &Driver) -> Summary {
    let h = &driver.history;
    let best = driver
        .incumbent()
        .filter(|&i| h.configs[i].failure.is_none());
    let mut notes = Vec::new();
    let verdict = driver
        .confirm
        .as_ref()
        .and_then(|c| c.verdict().map(|v| (c, v)));
    if let Some(c) = &driver.confirm {
        notes.extend(c.plan.note.clone());
    }
    if let Some((c, v)) = verdict {
        if v.rounds_complete < crate::stats::MIN_REPEATS_FOR_CI {
            notes.push(format!(
                "only {} of {} confirmation round(s) complete: the paired rule needs {} to separate finalists, so no tie set is judged and no single winner is claimed",
                v.rounds_complete,
                c.plan.rounds,
                crate::stats::MIN_REPEATS_FOR_CI
            ));
        } else if v.tie_set.len() > 1 {
            notes.push(format!(
                "no single winner: {} configurations tie over the confirmation rounds (the paired compare rule cannot tell them apart); `best` is the one with the highest P(best), and any of the tie set is as good at this noise level",
                v.tie_set.len()
            ));
        }
    } else if driver.order() == crate::execute::rounds::Order::Interleaved && best.is_some() {
        notes.push("the confirmation rounds did not complete a round (budget or interrupt): winner and ties by Welch on back-to-back repeats".into());
    }
    if let Some(b) = best {
        let s = h.standing(b);
        if s.repeats < super::strategy::FINAL_REPEATS {
            notes.push(format!(
                "the winner has {} repeat(s), fewer than {}: the budget ran out before it could be confirmed; its mean has no CI",
                s.repeats,
                super::strategy::FINAL_REPEATS
            ));
        }
        if !s.feasible {
            notes.push("no configuration met every constraint: the winner is the one that missed by the least".into());
        }
    } else {
        notes.push("no configuration could be measured".into());
    }
    let ties = match verdict {
        Some((_, v)) => v
            .tie_set
            .iter()
            .filter(|&&i| Some(i) != best)
            .map(|&i| pick(driver, i))
            .collect(),
        None => best
            .map(|b| h.ties(b).into_iter().map(|i| pick(driver, i)).collect())
            .unwrap_or_default(),
    };
    let method = match verdict {
        Some((c, _)) => c.method(),
        None => "welch".to_string(),
    };
    let confirmation = driver.confirm.as_ref().map(|c| c.doc(h, &driver.space));
    let pareto = h
        .objective
        .constraints
        .iter()
        .zip(h.pareto())
        .enumerate()
        .map(|(k, (c, front))| ParetoFront {
            constraint: c.label(),
            metric: c.metric.name.to_string(),
            points: front
                .into_iter()
                .map(|i| ParetoPoint {
                    cell: driver.space.cells[i].name.clone(),
                    objective: crate::stats::mean(&h.column(i, 0)),
                    value: crate::stats::mean(&h.column(i, k + 1)),
                })
                .collect(),
        })
        .collect();
    Summary {
        best: best.map(|b| pick(driver, b)),
        ties,
        pareto,
        notes,
        method,
        confirmation,
    }
}

/// Write `doc` as `dir/tune.json` (atomically).
pub fn write_tune_json(dir: &Path, doc: &TuneDoc) -> Result<(), ResultsError> {
    let path = dir.join(TUNE_FILE);
    write_atomic(&path, to_json_pretty(doc, &path)?.as_bytes())
}

/// The overlay text of the winner: a commented `[env]` table of its knobs.
pub fn best_toml(doc: &TuneDoc) -> Option<String> {
    let best = doc.best.as_ref()?;
    let mut out = format!(
        "# ferrum-bench tune: best configuration of preset `{}` ({} {} = {}{}, {} repeat(s){}).\n# Apply with `ferrum-bench run <preset> --overlay best.toml`; load of the winner: {}.\n[env]\n",
        doc.preset,
        doc.direction,
        doc.objective,
        best.objective.mean.map_or("n/a".into(), |m| format!("{m:.3}")),
        best.objective.ci95.map_or(String::new(), |c| format!(" ± {c:.3}")),
        best.objective.repeats,
        if best.feasible { "" } else { ", infeasible" },
        best.load,
    );
    if let Some(c) = doc.confirmation.as_ref().filter(|c| c.tie_set.len() > 1) {
        // No single winner is claimed: say so where the overlay is applied, too.
        let note = format!(
            "# No single winner: this is ★ (highest P(best)) of a tie set of {} ({}; {}); any of them is as good.\n",
            c.tie_set.len(),
            c.tie_set.join(", "),
            c.method
        );
        let at = out.find("[env]\n").unwrap_or(out.len());
        out.insert_str(at, &note);
    }
    for (k, v) in &best.knobs {
        let value = if v.parse::<i64>().is_ok() {
            v.clone()
        } else {
            toml::Value::String(v.clone()).to_string()
        };
        out.push_str(&format!("{k} = {value}\n"));
    }
    // The load is part of the winner when the space searched it: `--overlay` applies it as
    // `--concurrency`/`--request-rate` would (an explicit flag wins).
    if doc.space.loads > 1 {
        match best.load_point {
            LoadPoint::Closed { concurrency } => {
                out.push_str(&format!("\n[run]\nconcurrency = {concurrency}\n"));
            }
            LoadPoint::Open { request_rate, .. } => {
                out.push_str(&format!("\n[run]\nrequest_rate = {request_rate:?}\n"));
            }
        }
    }
    Some(out)
}

/// What an overlay (`best.toml`) applies: knobs, and the load when the tune searched it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// `[env]` knobs, as `--set` would give them.
    pub env: Vec<(String, String)>,
    /// `[run] concurrency`.
    pub concurrency: Option<usize>,
    /// `[run] request_rate`.
    pub request_rate: Option<f64>,
}

/// `[run]` of an overlay: `concurrency` (1 to 100000) or `request_rate` (0.001 to 1000000).
fn overlay_run(path: &Path, run: &toml::Table, out: &mut Overlay) -> Result<(), String> {
    let file = path.display();
    for (name, v) in run {
        match (name.as_str(), v) {
            ("concurrency", toml::Value::Integer(c)) if (1..=100_000).contains(c) => {
                out.concurrency = Some(*c as usize);
            }
            ("concurrency", other) => {
                return Err(format!(
                    "--overlay {file}: [run] concurrency = {other}: expected an integer from 1 to 100000"
                ))
            }
            ("request_rate", v) => {
                let r = match v {
                    toml::Value::Float(f) => *f,
                    toml::Value::Integer(i) => *i as f64,
                    _ => f64::NAN,
                };
                if !(0.001..=1_000_000.0).contains(&r) {
                    return Err(format!(
                        "--overlay {file}: [run] request_rate = {v}: expected a number from 0.001 to 1000000"
                    ));
                }
                out.request_rate = Some(r);
            }
            (other, _) => {
                return Err(format!(
                    "--overlay {file}: unexpected key `{other}` in [run]: an overlay's [run] holds only concurrency or request_rate"
                ))
            }
        }
    }
    if out.concurrency.is_some() && out.request_rate.is_some() {
        return Err(format!(
            "--overlay {file}: [run] has both concurrency and request_rate: keep one"
        ));
    }
    Ok(())
}

/// Read an overlay (`best.toml`): a TOML file with an `[env]` table of string, integer or
/// boolean values (booleans as Ferrum's "1"/"0") and optionally a `[run]` table with the load
/// (`concurrency` or `request_rate`). The error names the file and the fix.
pub fn read_overlay(path: &Path) -> Result<Overlay, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--overlay {}: cannot read it: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        format!(
            "--overlay {}: not valid TOML: {}",
            path.display(),
            e.message()
        )
    })?;
    let mut out = Overlay::default();
    for (key, value) in &table {
        let toml::Value::Table(env) = value else {
            return Err(format!("--overlay {}: unexpected key `{key}`: an overlay holds only an [env] table and a [run] load (as tune's best.toml)", path.display()));
        };
        if key == "run" {
            overlay_run(path, env, &mut out)?;
            continue;
        }
        if key != "env" {
            return Err(format!("--overlay {}: unexpected table [{key}]: an overlay holds only an [env] table and a [run] load (as tune's best.toml)", path.display()));
        }
        for (name, v) in env {
            let value = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
                other => {
                    return Err(format!(
                        "--overlay {}: `{name}` has a {} value: use a string, integer or boolean",
                        path.display(),
                        other.type_str()
                    ))
                }
            };
            out.env.push((name.clone(), value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_accept_an_env_table_and_a_run_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.toml");
        std::fs::write(
            &p,
            "# c\n[env]\nFERRUM_A = 4\nFERRUM_B = \"x\"\nFERRUM_C = true\n",
        )
        .unwrap();
        assert_eq!(
            read_overlay(&p).unwrap(),
            Overlay {
                env: vec![
                    ("FERRUM_A".into(), "4".into()),
                    ("FERRUM_B".into(), "x".into()),
                    ("FERRUM_C".into(), "1".into())
                ],
                ..Overlay::default()
            }
        );
        std::fs::write(&p, "[env]\nFERRUM_A = 4\n[run]\nconcurrency = 16\n").unwrap();
        let o = read_overlay(&p).unwrap();
        assert_eq!((o.concurrency, o.request_rate), (Some(16), None));
        std::fs::write(&p, "[run]\nrequest_rate = 2.5\n").unwrap();
        assert_eq!(read_overlay(&p).unwrap().request_rate, Some(2.5));
        std::fs::write(&p, "[run]\nrepeats = 3\n").unwrap();
        assert!(read_overlay(&p)
            .unwrap_err()
            .contains("unexpected key `repeats` in [run]"));
        std::fs::write(&p, "[run]\nconcurrency = 0\n").unwrap();
        assert!(read_overlay(&p).unwrap_err().contains("1 to 100000"));
        std::fs::write(&p, "[run]\nconcurrency = 2\nrequest_rate = 1.0\n").unwrap();
        assert!(read_overlay(&p).unwrap_err().contains("keep one"));
        std::fs::write(&p, "[workload]\nx = 1\n").unwrap();
        assert!(read_overlay(&p)
            .unwrap_err()
            .contains("unexpected table [workload]"));
        std::fs::write(&p, "[env]\nFERRUM_A = 1.5\n").unwrap();
        assert!(read_overlay(&p).unwrap_err().contains("float"));
    }
}
