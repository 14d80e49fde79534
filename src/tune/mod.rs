//! `ferrum-bench tune`: find the best knobs of a preset's search space under latency
//! constraints in a fraction of a grid's runs, with ≥ 3 repeats and a CI for the winner, a tie
//! set of configurations the `compare` rule cannot tell apart from it, and a replay mode that
//! answers trials from a recorded grid so strategies can be compared offline.
//!
//! The pieces: [`constraint`] (`--constraint` parsing and violations), [`space`] (valid cells
//! with ordinal coordinates), [`history`] (ranking, ties, Pareto), [`strategy`] (grid, random,
//! halving, model), [`confirm`] (`--order interleaved`: the finalists' interleaved confirmation
//! rounds and their paired verdict), [`driver`] (the loop, independent of how trials are answered), [`live`]
//! (the driver as the execution loop's cell source), [`replay`] (recorded answers and the
//! strategy evaluation) and [`output`] (`tune.json`, `best.toml`, overlays).

pub mod confirm;
pub mod constraint;
pub mod driver;
pub mod history;
pub mod live;
pub mod output;
pub mod replay;
pub mod space;
pub mod strategy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::Cancel;
use crate::error::Error;
use crate::execute::rounds::Order;
use crate::execute::{check_resumed_cells, run_units, CellBackend, ExecuteOptions, SweepTarget};
use crate::measure::CellStatus;
use crate::metric::{Direction, Metric};
use crate::orchestrate::{self, Choices, Prepared, ReferenceBackend};
use crate::results::{Manifest, PresetInfo, ResultsError, RunDir};
use crate::sweep::{Plan, DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S, DEFAULT_ENGINE_START_S};

use constraint::{metric_named, Constraint};
use driver::Driver;
use history::Objective;
use output::{best_toml, SpaceInfo, TuneDoc, BEST_FILE, TUNE_FILE, TUNE_SCHEMA_VERSION};
use space::Space;
use strategy::{build, StrategyKind, FINAL_REPEATS};

/// Largest budget in runs a user may give.
pub const MAX_BUDGET_RUNS: usize = 1_000_000;
/// Largest `--seeds` of `--evaluate-strategies`.
pub const MAX_EVAL_SEEDS: u64 = 10_000;

/// `--budget`: runs or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// A number of runs (one repeat of one cell each).
    Runs(usize),
    /// Wall time.
    Seconds(u64),
}

impl Budget {
    /// Parse `40` (runs) or `90s`/`10m`/`1h` (duration).
    pub fn parse(text: &str) -> Result<Budget, String> {
        if let Ok(n) = text.trim().parse::<usize>() {
            if n == 0 || n > MAX_BUDGET_RUNS {
                return Err(format!(
                    "--budget {text}: expected 1 to {MAX_BUDGET_RUNS} runs or a duration such as 30m"
                ));
            }
            return Ok(Budget::Runs(n));
        }
        crate::sweep::parse_duration(text)
            .map(|d| Budget::Seconds(d.as_secs().max(1)))
            .map_err(|e| format!("--budget {text}: {e}; or give a number of runs"))
    }
}

/// The settings of a tune, recorded in `tune.json` so `--resume` continues the same search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneSettings {
    /// Objective metric name.
    pub objective: String,
    /// `--minimize` (else the metric's own direction, maximise for throughputs).
    pub minimize: bool,
    /// Constraints as typed.
    pub constraints: Vec<String>,
    /// `--budget` (`None`: the default, 30 % of the grid's runs).
    pub budget: Option<Budget>,
    /// `--strategy`.
    pub strategy: StrategyKind,
    /// `--seed`.
    pub seed: u64,
    /// `--eta` of halving.
    pub eta: usize,
    /// `--order` (resolved to the engine kind's default when the tune starts); absent in
    /// `tune.json` files written before the flag existed, which were sequential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct TuneChoices {
    /// Preset, `--space` (as `sweep_file`), knob sources, run overrides, `--out`, `--quiet`.
    pub base: Choices,
    /// Search settings.
    pub settings: TuneSettings,
    /// `--reuse DIR`.
    pub reuse: Option<PathBuf>,
    /// `--replay RUN_DIR`.
    pub replay: Option<PathBuf>,
    /// `--evaluate-strategies --seeds N` (with `--replay`).
    pub evaluate_seeds: Option<u64>,
    /// `--no-report`: do not write `<run_dir>/report.html` at the end.
    pub no_report: bool,
}

impl TuneSettings {
    /// The objective and constraints, validated.
    pub fn objective(&self) -> Result<Objective, Error> {
        let metric: &'static Metric =
            metric_named(&self.objective).map_err(|e| Error::Usage(format!("--objective: {e}")))?;
        let constraints = self
            .constraints
            .iter()
            .map(|c| Constraint::parse(c).map_err(|e| Error::Usage(format!("--constraint {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Objective {
            metric,
            direction: if self.minimize {
                Direction::LowerIsBetter
            } else {
                metric.direction
            },
            constraints,
        })
    }
}

/// The valid configurations of a prepared plan: cells the resolver accepts (rejections and
/// `exclude` rules are known before any run), with the counts for the user.
pub fn valid_space(prepared: &Prepared) -> (Space, SpaceInfo) {
    let mut backend = ReferenceBackend::new(prepared);
    let mut verdicts: BTreeMap<&BTreeMap<String, String>, bool> = BTreeMap::new();
    let mut cells = Vec::new();
    for cell in &prepared.plan.cells {
        let ok = *verdicts
            .entry(&cell.knobs)
            .or_insert_with(|| backend.resolve(cell).is_ok());
        if ok {
            cells.push(cell.clone());
        }
    }
    let info = SpaceInfo {
        planned: prepared.plan.cells.len(),
        excluded: prepared.plan.excluded,
        rejected: prepared.plan.cells.len() - cells.len(),
        valid: cells.len(),
        loads: {
            let mut labels: Vec<String> = cells.iter().map(|c| c.load.label()).collect();
            labels.sort();
            labels.dedup();
            labels.len()
        },
    };
    (Space::new(cells), info)
}

/// The strategy `kind` runs as, for a space of `n` configurations and `budget` runs: `auto`
/// resolves on the runs the search may use (an interleaved tune keeps [`confirm::reserve`] for
/// its confirmation rounds).
pub fn resolve_strategy(kind: StrategyKind, n: usize, budget: usize, order: Order) -> StrategyKind {
    let search = match order {
        Order::Interleaved => budget.saturating_sub(confirm::reserve(budget)),
        Order::Sequential => budget,
    };
    kind.resolve(n, search)
}

/// A driver over `space` for a tune with these settings (`kind` resolved).
pub fn new_driver(
    space: Space,
    objective: Objective,
    kind: StrategyKind,
    budget: usize,
    seed: u64,
    eta: usize,
    order: Order,
) -> Driver {
    let strategy = build(kind, space.len(), seed, eta);
    let driver = Driver::new(space, objective, strategy, budget);
    match order {
        Order::Interleaved => driver.interleaved(seed),
        Order::Sequential => driver,
    }
}

/// Budget in runs: `--budget N`, a duration converted with the planning estimate of a repeat,
/// or by default 30 % of the grid's runs (at least one finalist's repeats).
pub fn budget_runs(budget: Option<Budget>, space: &Space, prepared: &Prepared) -> usize {
    let grid = space.len() * FINAL_REPEATS;
    match budget {
        Some(Budget::Runs(n)) => n,
        Some(Budget::Seconds(s)) => {
            let cells: Vec<&crate::sweep::Cell> = space.cells.iter().collect();
            let est = Plan::estimate(
                &cells,
                &prepared.run,
                DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S,
                DEFAULT_ENGINE_START_S,
            );
            let per_run = est.as_secs_f64()
                / (space.len().max(1) as f64 * f64::from(prepared.run.repeats.max(1)));
            ((s as f64 / per_run.max(1e-3)).floor() as usize).clamp(1, MAX_BUDGET_RUNS)
        }
        None => (grid * 3 / 10).max(FINAL_REPEATS).min(grid.max(1)),
    }
}

fn space_line(info: &SpaceInfo) -> String {
    format!(
        "search space: {} valid configuration(s) ({} planned, {} excluded by rules, {} rejected by the resolver)",
        info.valid, info.planned, info.excluded, info.rejected
    )
}

fn doc_template(
    preset: &str,
    settings: &TuneSettings,
    kind: StrategyKind,
    budget: usize,
    info: SpaceInfo,
    objective: &Objective,
) -> TuneDoc {
    TuneDoc {
        schema_version: TUNE_SCHEMA_VERSION,
        preset: preset.to_string(),
        strategy: kind,
        strategy_requested: settings.strategy,
        seed: settings.seed,
        budget,
        runs_used: 0,
        objective: objective.metric.name.to_string(),
        direction: match objective.direction {
            Direction::HigherIsBetter => "maximize",
            Direction::LowerIsBetter => "minimize",
        }
        .to_string(),
        constraints: objective.constraints.clone(),
        settings: settings.clone(),
        space: info,
        replay: None,
        trials: Vec::new(),
        best: None,
        ties: Vec::new(),
        pareto: Vec::new(),
        notes: Vec::new(),
        method: "welch".into(),
        confirmation: None,
    }
}

/// Write `tune.json` and `best.toml` into `dir`.
fn write_outputs(dir: &Path, doc: &TuneDoc) -> Result<(), Error> {
    output::write_tune_json(dir, doc)?;
    if let Some(text) = best_toml(doc) {
        crate::results::write_atomic(&dir.join(BEST_FILE), text.as_bytes())?;
    }
    Ok(())
}

/// Human summary of a finished tune (stdout).
pub fn render_summary(doc: &TuneDoc, dir: &Path) -> String {
    let mut out = format!(
        "tune `{}`: strategy {} (seed {}, order {}), {} of {} run(s) used, {} trial(s); winner and ties: {}\n",
        doc.preset,
        doc.strategy.as_str(),
        doc.seed,
        doc.settings.order.unwrap_or(Order::Sequential).as_str(),
        doc.runs_used,
        doc.budget,
        doc.trials.len(),
        doc.method
    );
    if let Some(c) = &doc.confirmation {
        out.push_str(&format!(
            "confirmation: {} finalist(s), {} of {} round(s) complete: {}\n",
            c.finalists.len(),
            c.rounds_complete,
            c.rounds_planned,
            c.finalists
                .iter()
                .map(|f| format!(
                    "{} (P(best) {})",
                    f.cell,
                    crate::report::ranking::p_text(f.p_best)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let no_single_winner = doc
        .confirmation
        .as_ref()
        .is_some_and(|c| c.tie_set.len() > 1);
    match &doc.best {
        Some(b) => {
            if no_single_winner {
                out.push_str(&format!(
                    "no single winner: a tie set of {} ({}); ★ below has the highest P(best)\n",
                    doc.ties.len() + 1,
                    doc.method
                ));
            }
            out.push_str(&format!(
                "{}: {} — {} {} = {}{} over {} repeat(s){}\n",
                if no_single_winner { "★" } else { "best" },
                b.cell,
                doc.direction,
                doc.objective,
                b.objective.mean.map_or("n/a".into(), |m| format!("{m:.2}")),
                b.objective
                    .ci95
                    .map_or(String::new(), |c| format!(" ± {c:.2} (95 % CI)")),
                b.objective.repeats,
                if b.feasible {
                    ""
                } else {
                    " (violates a constraint)"
                }
            ));
            let judged = doc
                .confirmation
                .as_ref()
                .map(|c| c.rounds_complete >= crate::stats::MIN_REPEATS_FOR_CI);
            let alone = doc
                .confirmation
                .as_ref()
                .is_some_and(|c| c.finalists.len() == 1);
            if alone {
                out.push_str("ties: not judged (only the winner was confirmed: no challenger was measured or fitted in the budget)\n");
            } else if judged == Some(false) {
                out.push_str("ties: not judged (fewer than 3 complete confirmation rounds)\n");
            } else if doc.ties.is_empty() && judged == Some(true) {
                out.push_str(
                    "ties: none (the paired rule separates every other finalist from it)\n",
                );
            } else if doc.ties.is_empty() {
                out.push_str("ties: none (no other configuration with ≥ 3 repeats is statistically indistinguishable)\n");
            } else {
                out.push_str(&format!(
                    "ties (the compare rule cannot tell them from the best; the choice among them does not matter): {}\n",
                    doc.ties.iter().map(|t| t.cell.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        None => out.push_str("best: none\n"),
    }
    for n in &doc.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out.push_str(&format!(
        "wrote {} and {}\n",
        dir.join(TUNE_FILE).display(),
        dir.join(BEST_FILE).display()
    ));
    out
}

/// Render the strategy evaluation as a Markdown table.
pub fn render_evaluation(
    rows: &[replay::EvalRow],
    seeds: u64,
    budget: usize,
    grid_runs: usize,
    order: Order,
) -> String {
    let runs = |x: Option<f64>| {
        x.map_or(format!("> {budget}"), |r| {
            format!("{r:.0} ({:.0} %)", 100.0 * r / grid_runs.max(1) as f64)
        })
    };
    let mut out = format!(
        "Replay of a {grid_runs}-run grid, {seeds} seeds, budget {budget} runs, order {}; runs until the incumbent is first within 2 % of the grid's best feasible objective (and until it is first in the grid's tie set: the best plus the configurations the compare rule cannot tell apart from it):\n\n| strategy | median runs (share of grid) | p90 runs | reached within budget | final pick within 2 % | median runs to the grid's tie set | final pick in the tie set |\n|---|---|---|---|---|---|---|\n",
        order.as_str()
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} % | {:.0} % | {} | {:.0} % |\n",
            r.strategy.as_str(),
            runs(r.median_runs),
            runs(r.p90_runs),
            100.0 * r.success_rate,
            100.0 * r.final_within_rate,
            runs(r.median_runs_to_ties),
            100.0 * r.final_in_ties_rate
        ));
    }
    out
}

/// Run `tune`. Returns the exit code.
pub fn run(choices: &TuneChoices, stop: &Cancel) -> Result<i32, Error> {
    // --resume: the run's manifest supplies the preset and run settings, tune.json the search.
    let resumed = match &choices.base.resume {
        Some(path) => {
            let dir = RunDir::open(path)?;
            let lock = dir.lock()?;
            let manifest = dir.read_manifest()?;
            let settings = read_settings(&dir.root)?;
            Some((dir, lock, manifest, settings))
        }
        None => None,
    };
    let (base, mut settings) = match &resumed {
        Some((dir, _, manifest, settings)) => {
            let (c, notes) = orchestrate::resume_choices(&choices.base, dir, manifest)?;
            for n in notes {
                eprintln!("warning: {n}");
            }
            // The order is the run's (a tune.json without one was sequential).
            let mut recorded = settings.clone();
            let order = *recorded.order.get_or_insert(Order::Sequential);
            if let Some(asked) = choices.settings.order.filter(|o| *o != order) {
                return Err(Error::Results(ResultsError::Resume {
                    path: dir.root.display().to_string(),
                    reason: format!(
                        "--order {} differs from the tune's {}; resume without --order",
                        asked.as_str(),
                        order.as_str()
                    ),
                }));
            }
            (c, recorded)
        }
        None => (choices.base.clone(), choices.settings.clone()),
    };
    let objective = settings.objective()?;
    let prepared = orchestrate::prepare(&base)?;
    // `--order`, else the engine kind's default, as `sweep` does.
    let order = *settings
        .order
        .get_or_insert_with(|| Order::default_for(prepared.engines.config().kind()));
    for warning in &prepared.warnings {
        eprintln!("warning: {warning}");
    }
    let (space, info) = valid_space(&prepared);
    eprintln!("{}", space_line(&info));
    if space.is_empty() {
        return Err(Error::Usage(format!(
            "{}: the search space has no valid configuration ({} planned, {} excluded, {} rejected by the resolver): widen [sweep] or --space",
            base.preset.display(),
            info.planned,
            info.excluded,
            info.rejected
        )));
    }
    let budget = budget_runs(settings.budget, &space, &prepared);
    let kind = resolve_strategy(settings.strategy, space.len(), budget, order);
    let grid_runs = space.len() * FINAL_REPEATS;
    if let Some(replay_dir) = &choices.replay {
        let recorded = replay::load_recorded(replay_dir)?;
        let values = replay::recorded_values(&recorded, &space, &objective)
            .map_err(|e| Error::Usage(format!("--replay {}: {e}", replay_dir.display())))?;
        // An interleaved recording answers confirmation rounds round by round.
        let rounds = replay::recorded_rounds(&recorded, &space);
        if let Some(seeds) = choices.evaluate_seeds {
            let kinds = [
                StrategyKind::Grid,
                StrategyKind::Random,
                StrategyKind::Halving,
                StrategyKind::Model,
                StrategyKind::Auto,
            ];
            let rows = replay::evaluate(
                &space,
                &objective,
                &values,
                &kinds,
                seeds,
                budget,
                settings.eta,
                order,
                rounds.as_deref(),
            );
            crate::cli::print_stdout(&render_evaluation(&rows, seeds, budget, grid_runs, order))?;
            return Ok(0);
        }
        let mut driver = new_driver(
            space,
            objective.clone(),
            kind,
            budget,
            settings.seed,
            settings.eta,
            order,
        );
        let mut oracle = replay::ReplayOracle::new(values, settings.seed).with_rounds(rounds);
        replay::replay(&mut driver, &mut oracle, &mut |_| {});
        let mut doc = doc_template(
            &prepared.preset.name,
            &settings,
            kind,
            budget,
            info,
            &objective,
        );
        doc.replay = Some(replay_dir.display().to_string());
        let source = live::TunerSource::new(driver, doc, &base.out, true);
        let doc = source.current_doc();
        let run_id = RunDir::new_run_id(&format!(
            "tune-replay|{}|{}",
            prepared.workload_hash, settings.seed
        ));
        let dir = base.out.join(format!("{run_id}-replay"));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            action: "create directory",
            path: dir.display().to_string(),
            source,
        })?;
        write_outputs(&dir, &doc)?;
        crate::cli::print_stdout(&render_summary(&doc, &dir))?;
        return Ok(0);
    }
    if choices.evaluate_seeds.is_some() {
        return Err(Error::Usage(
            "--evaluate-strategies needs --replay RUN_DIR (a complete grid sweep of the preset)"
                .into(),
        ));
    }
    eprintln!(
        "strategy {} (requested {}), budget {budget} run(s) of {grid_runs} for the full grid at {FINAL_REPEATS} repeats",
        kind.as_str(),
        settings.strategy.as_str()
    );
    eprintln!("{}", order_line(order, budget));
    let preset_info = PresetInfo::new(
        &prepared.preset.name,
        &prepared.preset.path,
        &prepared.preset.source_text,
    );
    let identity = orchestrate::identity_of(&base, &prepared);
    let mut run = prepared.run.clone();
    // Trials add repeats one unit at a time; the manifest's repeat count is the finalists'.
    run.repeats = FINAL_REPEATS as u32;
    let (dir, _lock, mut manifest, failures) = match resumed {
        Some((dir, lock, manifest, _)) => {
            manifest.check_resumable(
                &dir.root,
                &preset_info,
                &prepared.run,
                &prepared.workload_hash,
                &prepared.plan.set,
                Some(&identity),
            )?;
            let failures: BTreeMap<String, String> = manifest
                .cells
                .iter()
                .filter(|c| matches!(c.status, CellStatus::Failed | CellStatus::Skipped))
                .map(|c| (c.key.clone(), c.reason.clone().unwrap_or_default()))
                .collect();
            (dir, lock, manifest, failures)
        }
        None => {
            let material = format!(
                "tune|{}|{}|{}",
                preset_info.hash, prepared.workload_hash, settings.seed
            );
            let run_id = RunDir::new_run_id(&material);
            let mut manifest = Manifest::new(
                &run_id,
                preset_info,
                &prepared.run,
                &prepared.plan,
                &[],
                None,
                prepared.sweep_file.clone(),
                prepared.workload_hash.clone(),
            );
            manifest.identity = Some(identity);
            // Interleaved: the confirmation's rounds are filled in once the finalists are known.
            if order == Order::Interleaved {
                manifest.schedule = Some(crate::execute::rounds::Schedule {
                    order,
                    seed: crate::execute::rounds::order_seed(settings.seed),
                    rounds: Vec::new(),
                    auto_repeats: false,
                    first_round: 0,
                    rerun_noisy: None,
                    reruns: Vec::new(),
                });
            }
            let (dir, lock) = RunDir::create_with_manifest(&base.out, &manifest)?;
            (dir, lock, manifest, BTreeMap::new())
        }
    };
    let reuse = match &choices.reuse {
        Some(path) => reusable_cells(path, &manifest, &space)?,
        None => BTreeMap::new(),
    };
    if !reuse.is_empty() {
        eprintln!(
            "--reuse: {} configuration(s) of the space already measured there",
            reuse.len()
        );
    }
    let driver = new_driver(
        space,
        objective.clone(),
        kind,
        budget,
        settings.seed,
        settings.eta,
        order,
    );
    let doc = doc_template(
        &prepared.preset.name,
        &settings,
        kind,
        budget,
        info,
        &objective,
    );
    let mut source = live::TunerSource::new(driver, doc, &dir.root, base.quiet)
        .resuming(failures)
        .reusing(reuse);
    let mut observer = output::TuneObserver;
    let target = SweepTarget {
        dir: &dir,
        plan: &prepared.plan,
        run: &run,
    };
    let mut summary = check_resumed_cells(target, &mut manifest, &mut observer)?;
    let mut backend =
        ReferenceBackend::new(&prepared).in_run_dir(&dir.root, &manifest.run_id, stop);
    run_units(
        target,
        &mut manifest,
        &mut backend as &mut dyn CellBackend,
        &mut source,
        stop,
        ExecuteOptions {
            time_budget: match settings.budget {
                Some(Budget::Seconds(s)) => Some(Duration::from_secs(s)),
                _ => None,
            },
        },
        &mut observer,
        &mut summary,
    )?;
    if let Some(e) = source.error.take() {
        return Err(e.into());
    }
    // The manifest records the confirmation rounds as run (finalists, seed, every order).
    if let Some(schedule) = source.driver.schedule() {
        manifest.schedule = Some(schedule);
        dir.write_manifest(&manifest)?;
    }
    let doc = source.current_doc();
    write_outputs(&dir.root, &doc)?;
    crate::cli::print_stdout(&render_summary(&doc, &dir.root))?;
    crate::report::html::write_after_run(&dir.root, choices.no_report);
    if summary.interrupted {
        eprintln!(
            "interrupted: continue with `ferrum-bench tune --resume {}`",
            dir.root.display()
        );
        return Ok(summary.exit_code());
    }
    Ok(if doc.best.is_some() { 0 } else { 3 })
}

/// The stderr line on the order and what it costs.
fn order_line(order: Order, budget: usize) -> String {
    match order {
        Order::Interleaved => {
            let reserve = confirm::reserve(budget);
            format!(
                "order: interleaved: the search keeps {reserve} run(s) for the result: up to {} finalist(s) (the incumbent and its closest challengers) measured in {} interleaved rounds, every finalist once per round in a seeded order, one engine start per finalist per round; winner and ties paired within rounds",
                (reserve / confirm::CONFIRM_ROUNDS).max(1),
                confirm::CONFIRM_ROUNDS
            )
        }
        Order::Sequential => "order: sequential: the winner is topped up to 3 back-to-back repeats (one engine start); ties by Welch".into(),
    }
}

/// The settings recorded in a tune run's `tune.json`.
fn read_settings(root: &Path) -> Result<TuneSettings, Error> {
    let path = root.join(TUNE_FILE);
    let value = crate::results::read::read_json(&path).map_err(|_| {
        Error::Results(ResultsError::Resume {
            path: root.display().to_string(),
            reason: format!("`{}` is missing or unreadable: this is not a tune run (use `sweep --resume` for sweeps)", path.display()),
        })
    })?;
    serde_json::from_value(value.get("settings").cloned().unwrap_or_default()).map_err(|e| {
        Error::Results(ResultsError::Resume {
            path: root.display().to_string(),
            reason: format!("`{}` has no readable settings: {e}", path.display()),
        })
    })
}

/// `--reuse DIR`: complete cells of an earlier sweep or tune of the same preset and workload
/// that are in the space (matched by cell key), key → directory.
fn reusable_cells(
    path: &Path,
    manifest: &Manifest,
    space: &Space,
) -> Result<BTreeMap<String, PathBuf>, Error> {
    let other = RunDir::open(path)?;
    let theirs = other.read_manifest()?;
    if theirs.workload.workload_hash != manifest.workload.workload_hash
        && theirs.workload.spec != manifest.workload.spec
    {
        return Err(Error::Usage(format!(
            "--reuse {}: that run measured another workload ({} vs {}); reuse needs the same preset and workload",
            path.display(),
            theirs.workload.name,
            manifest.workload.name
        )));
    }
    let done = other.completed_cell_keys()?;
    Ok(space
        .cells
        .iter()
        .filter_map(|c| {
            done.get(&c.key)
                .map(|name| (c.key.clone(), other.cell_dir(name)))
        })
        .collect())
}
