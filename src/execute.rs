//! Running cells into a results directory. "Which cell next" is a [`CellSource`] (the planned
//! grid, a shard, a resume's remaining cells — [`PlannedCells`] — or a tuner choosing from the
//! history); "run a unit into its directory" is [`run_units`]: resolve the cell (a rejection
//! marks it `skipped`, never run), start an engine, run the unit's repeats, merge them into the
//! cell's directory, append the status to the run's status log, and tell the source. Cells the
//! manifest does not list yet are appended as they are chosen. The loop stops cleanly between
//! units when the time budget would be exceeded, and at the next engine step when the stop flag
//! (Ctrl-C) is raised; progress goes to an [`ExecuteObserver`]. Bookkeeping per unit is O(1) in
//! the number of cells: the summaries are rewritten once at the start and once at the end.
//!
//! The resolver and the engine are behind [`CellBackend`] so this loop is tested with a scripted
//! engine and phase 2 only plugs in the real ones.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::{Cancel, Engine, EngineError};
use crate::measure::{
    aggregate_repeats, run_cell, CellMeasurement, CellOutcome, CellStatus, RepeatResult,
    RepeatSummary, RequestRecord,
};
use crate::report;
use crate::results::{
    now_rfc3339, validate_cell, CellEntry, CellFiles, Manifest, ResultsError, RunDir, StatsFile,
    StatusLine,
};

pub mod observer;
pub mod rerun;
pub mod rounds;
pub mod source;

use crate::sweep::{Cell, Plan, RunSettings};
use crate::workload::TokenSpace;
pub use observer::ExecuteObserver;
pub use source::{CellSource, PlannedCells, UnitOutcome, WorkUnit};

/// A cell's resolved configuration, as the backend reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedCell {
    /// `effective_config.json` content.
    pub effective_config_json: String,
    /// `decision_trace.jsonl` content.
    pub decision_trace_jsonl: String,
    /// Token ids prompts may use for this model.
    pub tokens: TokenSpace,
}

/// Resolver and engine for the cells of a sweep.
pub trait CellBackend {
    /// Resolve `cell` (preset + `--set` + the cell's knobs). `Err(reason)` skips the cell.
    fn resolve(&mut self, cell: &Cell) -> Result<ResolvedCell, String>;
    /// Start a fresh engine for a resolved cell (knobs are read at start-up).
    fn start(
        &mut self,
        cell: &Cell,
        resolved: &ResolvedCell,
    ) -> Result<Box<dyn Engine>, EngineError>;
    /// Called after a run cell's directory was written (completed or failed): a launched
    /// server's files (`server.log`, its own effective config) join the cell. Default: nothing.
    fn finish_cell(&mut self, _cell: &Cell, _cell_dir: &std::path::Path) {}
}

/// How the loop may stop early.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExecuteOptions {
    /// Do not start a cell once the elapsed time plus the mean duration of the cells run so far
    /// would exceed this.
    pub time_budget: Option<Duration>,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecuteSummary {
    /// Cells completed in this invocation.
    pub completed: usize,
    /// Cells already complete in the directory (resume) and not rerun.
    pub already_complete: usize,
    /// Cells skipped by the resolver.
    pub skipped: usize,
    /// Cells whose engine failed.
    pub failed: usize,
    /// Ctrl-C stopped a cell.
    pub interrupted: bool,
    /// The time budget stopped the sweep between cells.
    pub budget_exhausted: bool,
    /// Cells left pending (interrupt or budget).
    pub pending: usize,
    /// Cells a resume found incomplete (corrupt or truncated files) and ran again.
    pub rerun_corrupt: usize,
    /// Flagged repeats measured again (`--rerun-noisy`).
    pub remeasured: usize,
    /// Re-measurements whose engine failed (the originals are kept).
    pub rerun_failed: usize,
    /// Re-measurements left for a `--resume` (Ctrl-C or the time budget).
    pub reruns_pending: usize,
}

/// Where and what to run: the run directory, the plan and the resolved run settings.
#[derive(Debug, Clone, Copy)]
pub struct SweepTarget<'a> {
    /// The run directory (created or opened for `--resume`).
    pub dir: &'a RunDir,
    /// The full plan (cells are looked up by key).
    pub plan: &'a Plan,
    /// Run settings.
    pub run: &'a RunSettings,
}

impl ExecuteSummary {
    /// What decides the exit code (see [`crate::error::RunVerdict`]).
    pub fn verdict(&self) -> crate::error::RunVerdict {
        crate::error::RunVerdict {
            interrupted: self.interrupted,
            failed: self.failed,
            pending: self.pending,
            measured: self.completed + self.already_complete,
        }
    }

    /// The process exit code: 130 interrupted, 3 a cell failed, 5 incomplete (cells pending or
    /// none measured), else 0 (cells the resolver skipped are a property of the sweep).
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code()
    }
}

/// Run the manifest's pending (or previously failed/interrupted) cells of `plan` into `dir`.
/// `manifest` must list the cells to run (see `Manifest::new`) and the caller must hold the
/// directory's lock; statuses are updated in `manifest` and appended to the status log after
/// every cell; the manifest and `summary.csv`/`summary.md` are rewritten at the end.
pub fn execute(
    target: SweepTarget<'_>,
    manifest: &mut Manifest,
    backend: &mut dyn CellBackend,
    stop: &Cancel,
    options: ExecuteOptions,
    progress: &mut dyn ExecuteObserver,
) -> Result<ExecuteSummary, ResultsError> {
    let mut summary = check_resumed_cells(target, manifest, progress)?;
    let cells: BTreeMap<&str, &Cell> = target
        .plan
        .cells
        .iter()
        .map(|c| (c.key.as_str(), c))
        .collect();
    let planned: Vec<&Cell> = manifest
        .cells
        .iter()
        .filter_map(|e| cells.get(e.key.as_str()).copied())
        .collect();
    // `--order interleaved` (recorded in the manifest's schedule): one repeat of every cell per
    // round, rounds shuffled with the recorded seed; otherwise whole cells in plan order.
    let mut planned_source;
    let mut adaptive_source;
    let source: &mut dyn CellSource = match &manifest.schedule {
        Some(s) if s.order == rounds::Order::Interleaved && s.auto_repeats => {
            adaptive_source = rounds::AdaptiveRounds::new(
                &planned,
                target.run.repeats,
                s.seed,
                crate::stats::pbest::seed_for_run(target.run.seed),
            );
            &mut adaptive_source
        }
        Some(s) if s.order == rounds::Order::Interleaved => {
            planned_source = rounds::interleaved_rounds(&planned, target.run.repeats, s.seed);
            &mut planned_source
        }
        _ => {
            planned_source = PlannedCells::new(planned, target.run.repeats);
            &mut planned_source
        }
    };
    let limit = manifest
        .schedule
        .as_ref()
        .and_then(|s| s.rerun_noisy)
        .unwrap_or(0);
    let mut with_reruns;
    let source: &mut dyn CellSource = if limit > 0 {
        with_reruns = rerun::WithReruns::new(source, limit);
        &mut with_reruns
    } else {
        source
    };
    run_units(
        target,
        manifest,
        backend,
        source,
        stop,
        options,
        progress,
        &mut summary,
    )?;
    Ok(summary)
}

/// Before a (resumed) run: every cell the manifest lists must be in the plan, and a cell whose
/// files do not hold up (truncated stats.json or requests.jsonl, a status that disagrees with
/// its files) is incomplete: say so, remove it so it runs again. Writes the manifest (status log
/// folded in). The returned summary counts the cells found corrupt.
pub fn check_resumed_cells(
    target: SweepTarget<'_>,
    manifest: &mut Manifest,
    progress: &mut dyn ExecuteObserver,
) -> Result<ExecuteSummary, ResultsError> {
    let SweepTarget { dir, plan, .. } = target;
    let done = dir.completed_cell_keys()?;
    let mut summary = ExecuteSummary::default();
    for entry in &manifest.cells {
        if !plan.cells.iter().any(|c| c.key == entry.key) {
            return Err(ResultsError::Resume {
                path: dir.root.display().to_string(),
                reason: format!("the run's cell `{}` is not in the current plan: the preset or sweep changed; start a new run instead", entry.name),
            });
        }
        let dir_exists = dir.cell_dir(&entry.name).is_dir();
        let mut as_complete = entry.clone();
        as_complete.status = CellStatus::Completed;
        let problem = if done.contains_key(&entry.key) {
            validate_cell(dir, &as_complete)
                .err()
                .map(|e| e.to_string())
        } else if entry.has_stats() {
            Some(if dir_exists {
                format!(
                    "`{}` has no readable stats.json",
                    dir.cell_dir(&entry.name).display()
                )
            } else {
                format!("`{}` is missing", dir.cell_dir(&entry.name).display())
            })
        } else {
            None
        };
        if let Some(problem) = problem {
            progress.note(&format!(
                "resume: cell `{}` is incomplete ({problem}); running it again",
                entry.name
            ));
            dir.remove_cell(&entry.name)?;
            summary.rerun_corrupt += 1;
        }
    }
    // The manifest on disk now matches what this invocation starts from (log folded in).
    dir.write_manifest(manifest)?;
    Ok(summary)
}

/// Run the units `source` hands out into `dir` until it has no more, Ctrl-C or the time budget
/// stops the loop. A unit whose repeats are all on disk already is reported, not rerun; a cell
/// the manifest does not list yet is appended to it as it is chosen (and the manifest rewritten,
/// so a resume knows it). Repeats of a cell measured in several units are merged into one cell
/// directory, as if they had run at once. Adds to `summary`; writes the manifest and summaries
/// at the end.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's collaborators; a struct would only rename them"
)]
pub fn run_units(
    target: SweepTarget<'_>,
    manifest: &mut Manifest,
    backend: &mut dyn CellBackend,
    source: &mut dyn CellSource,
    stop: &Cancel,
    options: ExecuteOptions,
    progress: &mut dyn ExecuteObserver,
    summary: &mut ExecuteSummary,
) -> Result<(), ResultsError> {
    let SweepTarget { dir, plan, run } = target;
    let started = Instant::now();
    let mut on_disk = dir.completed_cell_keys()?;
    let mut measured: BTreeMap<String, CellMeasurement> = BTreeMap::new();
    let mut unit_durations: Vec<Duration> = Vec::new();
    // Set once the source runs dry or hands out its first re-measurement with no Ctrl-C before:
    // the run's own units all ran, so cells measured as much as the source intends can be
    // promoted (an interrupted last unit leaves its cell `partial`).
    let mut main_done = false;
    loop {
        let Some(unit) = source.next_unit() else {
            main_done |= !summary.interrupted;
            break;
        };
        main_done |= unit.rerun && !summary.interrupted;
        let cell = &unit.cell;
        let key = cell.key.as_str();
        if !manifest.cells.iter().any(|e| e.key == key) {
            manifest.cells.push(CellEntry::pending(cell));
            dir.write_manifest(manifest)?;
        }
        if let Some(have) = repeats_on_disk(dir, &on_disk, &measured, key)? {
            if unit.rerun
                && have
                    .iter()
                    .any(|r| r.repeat == unit.first_repeat && r.superseded.is_some())
            {
                // Re-measured already (never handed out twice; kept for safety).
                continue;
            }
            if !unit.rerun && unit.covered_by(&have.iter().map(|r| r.repeat).collect::<Vec<_>>()) {
                let status = measured_status(have.len(), run.repeats);
                manifest.set_status(key, status, None);
                manifest.set_repeats(key, have.len() as u32, run.repeats);
                summary.already_complete += 1;
                progress.cell_finished(&cell.name, status, "(already complete)");
                rerun::reconcile(dir, manifest, &unit, &have)?;
                source.finished(
                    &unit,
                    UnitOutcome::Measured {
                        repeats: &have,
                        already: true,
                    },
                );
                continue;
            }
        }
        let stopped = stop.is_cancelled() || summary.interrupted;
        let over_budget = !stopped
            && options.time_budget.is_some_and(|budget| {
                let mean = unit_durations
                    .iter()
                    .sum::<Duration>()
                    .checked_div(unit_durations.len() as u32)
                    .unwrap_or_default();
                started.elapsed() + mean > budget
            });
        if stopped || over_budget {
            // A stop between cells leaves the rest pending; it is still an interruption.
            summary.interrupted |= stopped;
            summary.budget_exhausted |= over_budget;
            if unit.rerun {
                // Only re-measurements are left: every cell is measured; a resume makes them.
                summary.reruns_pending += 1 + source.drain_remaining().len();
                break;
            }
            summary.pending += 1;
            for rest in source.drain_remaining() {
                let have = repeats_on_disk(dir, &on_disk, &measured, &rest.cell.key)?;
                let covered = have.as_ref().is_some_and(|h| {
                    rest.covered_by(&h.iter().map(|r| r.repeat).collect::<Vec<_>>())
                });
                if let (true, Some(h)) = (covered, &have) {
                    let status = measured_status(h.len(), run.repeats);
                    manifest.set_status(&rest.cell.key, status, None);
                    manifest.set_repeats(&rest.cell.key, h.len() as u32, run.repeats);
                    summary.already_complete += 1;
                    progress.cell_finished(&rest.cell.name, status, "(already complete)");
                } else {
                    summary.pending += 1;
                }
            }
            break;
        }
        let unit_started = Instant::now();
        let resolved = match backend.resolve(cell) {
            Ok(r) => r,
            Err(reason) => {
                progress.cell_finished(&cell.name, CellStatus::Skipped, &reason);
                record(
                    dir,
                    manifest,
                    key,
                    CellStatus::Skipped,
                    Some(reason.clone()),
                )?;
                summary.skipped += 1;
                source.finished(&unit, UnitOutcome::Skipped { reason: &reason });
                continue;
            }
        };
        progress.unit_started(&unit, run.workload.requests);
        let mut spec = run.cell_spec(resolved.tokens.clone(), cell.load);
        spec.first_repeat = unit.first_repeat;
        spec.repeats = unit.repeats;
        spec.round = unit.round;
        let mut make = || backend.start(cell, &resolved);
        let outcome = run_cell(&mut make, &spec, stop, &mut |e| progress.on_event(e));
        // Earlier repeats of this cell (an earlier unit, or a resumed run's files).
        let earlier = match measured.remove(key) {
            Some(m) => Some(m),
            None => match on_disk.get(key) {
                Some(name) => load_measurement(dir, name)?,
                None => None,
            },
        };
        // The flagged original a re-measurement replaces.
        let original: Option<RepeatSummary> = unit
            .rerun
            .then(|| {
                earlier.as_ref().and_then(|e| {
                    e.repeats
                        .iter()
                        .find(|r| r.summary.repeat == unit.first_repeat)
                        .map(|r| r.summary.clone())
                })
            })
            .flatten();
        match (outcome, original.as_ref()) {
            (CellOutcome::Completed(m), _) => {
                let had_earlier = earlier.is_some();
                let mut m = *m;
                if let Some(original) = &original {
                    for r in &mut m.repeats {
                        r.summary.superseded = Some(Box::new(original.clone()));
                    }
                }
                let m = merge_repeats(earlier, m);
                let mut stats = StatsFile::new(plan, cell, run, &m);
                stats.workload.repeats = m.repeats.len() as u32;
                let files = CellFiles {
                    effective_config_json: &resolved.effective_config_json,
                    decision_trace_jsonl: &resolved.decision_trace_jsonl,
                    result: Some((&stats, &m)),
                };
                if had_earlier {
                    replace_cell(dir, &cell.name, files)?;
                } else {
                    dir.write_cell(&cell.name, files)?;
                }
                backend.finish_cell(cell, &dir.cell_dir(&cell.name));
                let first_engine = manifest.engine.is_none().then(|| m.engine.clone());
                if first_engine.is_some() {
                    manifest.engine.clone_from(&first_engine);
                }
                let tps = m
                    .aggregate
                    .output_tokens_per_s
                    .as_ref()
                    .map_or(0.0, |a| a.mean);
                // `partial` until the cell holds every planned repeat (interleaved rounds add
                // one per round); a source that ends early (adaptive rounds, tune) promotes
                // its cells at the end of the loop.
                let done = m.repeats.len() as u32;
                let status = measured_status(m.repeats.len(), run.repeats);
                if let Some(original) = &original {
                    let new = m
                        .repeats
                        .iter()
                        .find(|r| r.summary.repeat == unit.first_repeat)
                        .map(|r| &r.summary);
                    let rec = rerun::record(&unit, original, new, None);
                    progress.note(&rerun::note(&rec));
                    rerun::push(dir, manifest, rec)?;
                    summary.remeasured += 1;
                }
                let rerun_only = original.is_some();
                if !rerun_only {
                    progress.cell_finished(
                        &cell.name,
                        status,
                        &format!(
                            "{tps:.1} output tok/s{}{}",
                            if status == CellStatus::Partial {
                                format!(" ({done}/{} repeats)", run.repeats)
                            } else {
                                String::new()
                            },
                            drift_note(&m.engine)
                        ),
                    );
                    summary.completed += 1;
                }
                manifest.set_status(key, status, None);
                manifest.set_repeats(key, done, run.repeats);
                dir.record_status(&StatusLine {
                    key: key.to_string(),
                    status,
                    reason: None,
                    engine: first_engine,
                    repeats: Some((done, run.repeats)),
                })?;
                on_disk.insert(key.to_string(), cell.name.clone());
                let summaries: Vec<RepeatSummary> =
                    m.repeats.iter().map(|r| r.summary.clone()).collect();
                measured.insert(key.to_string(), m);
                source.finished(
                    &unit,
                    UnitOutcome::Measured {
                        repeats: &summaries,
                        already: false,
                    },
                );
            }
            (CellOutcome::Failed { reason }, Some(original)) => {
                // A failed re-measurement keeps the original; the cell stays as it was.
                if let Some(m) = earlier {
                    measured.insert(key.to_string(), m);
                }
                let rec = rerun::record(&unit, original, None, Some(reason.clone()));
                progress.note(&rerun::note(&rec));
                rerun::push(dir, manifest, rec)?;
                summary.rerun_failed += 1;
                source.finished(&unit, UnitOutcome::Failed { reason: &reason });
            }
            (CellOutcome::Interrupted, Some(_)) => {
                if let Some(m) = earlier {
                    measured.insert(key.to_string(), m);
                }
                progress.note(&format!(
                    "{}: re-measurement of repeat {} stopped by Ctrl-C; the original is kept (continue with --resume)",
                    cell.name,
                    unit.first_repeat + 1
                ));
                summary.interrupted = true;
                summary.reruns_pending += 1 + source.drain_remaining().len();
                source.finished(&unit, UnitOutcome::Interrupted);
            }
            (CellOutcome::Failed { reason }, None) => {
                // A cell with measured repeats keeps them: only a cell without any gets the
                // directory of a failed attempt.
                match earlier {
                    Some(m) => {
                        measured.insert(key.to_string(), m);
                    }
                    None => {
                        dir.write_cell(
                            &cell.name,
                            CellFiles {
                                effective_config_json: &resolved.effective_config_json,
                                decision_trace_jsonl: &resolved.decision_trace_jsonl,
                                result: None,
                            },
                        )?;
                        backend.finish_cell(cell, &dir.cell_dir(&cell.name));
                    }
                }
                progress.cell_finished(&cell.name, CellStatus::Failed, &reason);
                record(dir, manifest, key, CellStatus::Failed, Some(reason.clone()))?;
                summary.failed += 1;
                source.finished(&unit, UnitOutcome::Failed { reason: &reason });
            }
            (CellOutcome::Interrupted, None) => {
                // A cell with repeats from earlier rounds keeps them and says so (`partial`,
                // with its stats.json); only a cell without any is `interrupted`.
                let status = if let Some(m) = earlier {
                    let done = m.repeats.len() as u32;
                    manifest.set_repeats(key, done, run.repeats);
                    measured.insert(key.to_string(), m);
                    measured_status(done as usize, run.repeats)
                } else {
                    CellStatus::Interrupted
                };
                progress.cell_finished(&cell.name, CellStatus::Interrupted, "stopped by Ctrl-C");
                record(
                    dir,
                    manifest,
                    key,
                    status,
                    Some("stopped by Ctrl-C; continue with --resume".into()),
                )?;
                summary.interrupted = true;
                source.finished(&unit, UnitOutcome::Interrupted);
            }
        }
        unit_durations.push(unit_started.elapsed());
    }
    if main_done && !summary.interrupted && !summary.budget_exhausted {
        manifest.finished_at = Some(now_rfc3339());
    }
    if main_done {
        // The source handed out every unit it meant to: a cell with fewer repeats than planned
        // was measured as much as this run intends (adaptive rounds stopped, a tuner's choice).
        for c in &mut manifest.cells {
            if c.status == CellStatus::Partial {
                c.status = CellStatus::Completed;
            }
        }
    }
    checkpoint(dir, manifest)?;
    progress.finish();
    Ok(())
}

/// The repeats recorded for cell `key`: this invocation's measurement, else its `stats.json`.
fn repeats_on_disk(
    dir: &RunDir,
    on_disk: &BTreeMap<String, String>,
    measured: &BTreeMap<String, CellMeasurement>,
    key: &str,
) -> Result<Option<Vec<RepeatSummary>>, ResultsError> {
    if let Some(m) = measured.get(key) {
        return Ok(Some(m.repeats.iter().map(|r| r.summary.clone()).collect()));
    }
    match on_disk.get(key) {
        Some(name) => Ok(Some(dir.read_stats(name)?.repeats)),
        None => Ok(None),
    }
}

/// A complete cell's measurement read back from its files (`stats.json` + `requests.jsonl`), to
/// merge more repeats into it. Engine steps are not read back: a cell extended after a resume
/// keeps `steps.jsonl` only for the repeats run in the extending invocation.
fn load_measurement(dir: &RunDir, name: &str) -> Result<Option<CellMeasurement>, ResultsError> {
    let stats = dir.read_stats(name)?;
    let path = dir.cell_dir(name).join("requests.jsonl");
    let text = crate::results::read::read_text(&path)?;
    let mut records: BTreeMap<u32, Vec<RequestRecord>> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let rec: RequestRecord =
            serde_json::from_str(line).map_err(|e| ResultsError::Serialize {
                path: format!("{}:{}", path.display(), i + 1),
                message: e.to_string(),
            })?;
        records.entry(rec.repeat).or_default().push(rec);
    }
    let repeats = stats
        .repeats
        .iter()
        .map(|s| RepeatResult {
            records: records.remove(&s.repeat).unwrap_or_default(),
            summary: s.clone(),
            steps: Vec::new(),
        })
        .collect();
    Ok(Some(CellMeasurement {
        engine: stats.engine,
        repeats,
        aggregate: stats.aggregate,
        workload_hash: stats.workload.workload_hash,
    }))
}

/// `earlier` repeats of a cell joined with `new` ones (a new repeat replaces an earlier one of
/// the same index), in repeat order, with the aggregate and workload hash recomputed.
fn merge_repeats(earlier: Option<CellMeasurement>, new: CellMeasurement) -> CellMeasurement {
    let Some(earlier) = earlier else {
        return new;
    };
    let mut repeats: BTreeMap<u32, RepeatResult> = earlier
        .repeats
        .into_iter()
        .map(|r| (r.summary.repeat, r))
        .collect();
    for r in new.repeats {
        repeats.insert(r.summary.repeat, r);
    }
    let repeats: Vec<RepeatResult> = repeats.into_values().collect();
    let summaries: Vec<RepeatSummary> = repeats.iter().map(|r| r.summary.clone()).collect();
    let hashes: Vec<String> = summaries.iter().map(|s| s.workload_hash.clone()).collect();
    CellMeasurement {
        engine: new.engine,
        aggregate: aggregate_repeats(&summaries),
        workload_hash: crate::workload::combined_hash(&hashes),
        repeats,
    }
}

/// Rewrite a complete cell with more repeats. `write_cell` protects complete cells, so the old
/// directory moves aside (hidden, ignored by readers) first and is removed once the new one is
/// in place: a crash in between leaves the old files in `cells/.<name>.previous`, never a
/// half-written cell.
fn replace_cell(dir: &RunDir, name: &str, files: CellFiles<'_>) -> Result<(), ResultsError> {
    let current = dir.cell_dir(name);
    let aside = current.with_file_name(format!(".{name}.previous"));
    let io = |action: &'static str, path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| ResultsError::Io {
            action,
            path,
            source,
        }
    };
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(io("remove", &aside))?;
    }
    if current.exists() {
        std::fs::rename(&current, &aside).map_err(io("rename", &current))?;
    }
    dir.write_cell(name, files)?;
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(io("remove", &aside))?;
    }
    Ok(())
}

/// Set a cell's status in `manifest` and append it to the status log.
fn record(
    dir: &RunDir,
    manifest: &mut Manifest,
    key: &str,
    status: CellStatus,
    reason: Option<String>,
) -> Result<(), ResultsError> {
    manifest.set_status(key, status, reason.clone());
    dir.record_status(&StatusLine {
        key: key.to_string(),
        status,
        reason,
        engine: None,
        repeats: manifest
            .cells
            .iter()
            .find(|c| c.key == key)
            .and_then(|c| Some((c.repeats_done?, c.repeats_planned?))),
    })
}

/// `completed` when a cell holds every planned repeat, else `partial`.
fn measured_status(done: usize, planned: u32) -> CellStatus {
    if done >= planned as usize {
        CellStatus::Completed
    } else {
        CellStatus::Partial
    }
}

/// `; config drift: …` when a launched server resolved the cell differently from ferrum-bench.
fn drift_note(engine: &crate::engine::EngineInfo) -> String {
    let Some(drift) = engine.details.get("config_drift") else {
        return String::new();
    };
    let count = |k: &str| drift.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
    let (entries, decisions) = (count("entries"), count("decisions"));
    if entries + decisions == 0 {
        "; server config identical to ours".into()
    } else {
        format!("; config drift: {entries} entries, {decisions} decisions differ (stats.json engine.details.config_drift)")
    }
}

/// Rewrite the manifest and the summaries from what is on disk (O(cells): once per run).
pub fn checkpoint(dir: &RunDir, manifest: &Manifest) -> Result<(), ResultsError> {
    dir.write_manifest(manifest)?;
    let stats = dir.completed_stats()?;
    let rows = report::summary_rows(manifest, &stats);
    let csv = report::summary_csv(&manifest.sweep.knob_names, &rows).map_err(|e| {
        ResultsError::Serialize {
            path: dir
                .root
                .join(crate::results::SUMMARY_CSV)
                .display()
                .to_string(),
            message: e.to_string(),
        }
    })?;
    dir.write_summaries(&csv, &report::summary_markdown(manifest, &rows))
}

#[cfg(test)]
mod tests;
