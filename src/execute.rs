//! Running a planned sweep into a results directory: for each cell of the shard that is not
//! already complete, resolve it (a rejection marks it `skipped`, never run), start an engine, run
//! the repeats, write the cell and append its status to the run's status log — stopping cleanly
//! between cells when the time budget would be exceeded, and at the next engine step when the
//! stop flag (Ctrl-C) is raised. Bookkeeping per cell is O(1) in the number of cells: the
//! manifest and the summaries are rewritten once at the start and once at the end.
//!
//! The resolver and the engine are behind [`CellBackend`] so this loop is tested with a scripted
//! engine and phase 2 only plugs in the real ones.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::{Cancel, Engine, EngineError};
use crate::measure::{run_cell, CellOutcome, CellStatus};
use crate::report::{self, progress::SweepProgress};
use crate::results::{
    now_rfc3339, validate_cell, CellFiles, Manifest, ResultsError, RunDir, StatsFile, StatusLine,
};
use crate::sweep::{Cell, Plan, RunSettings};
use crate::workload::TokenSpace;

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
    progress: &mut SweepProgress,
) -> Result<ExecuteSummary, ResultsError> {
    let SweepTarget { dir, plan, run } = target;
    let started = Instant::now();
    let mut done = dir.completed_cell_keys()?;
    let cells: BTreeMap<&str, &Cell> = plan.cells.iter().map(|c| (c.key.as_str(), c)).collect();
    let keys: Vec<String> = manifest.cells.iter().map(|c| c.key.clone()).collect();
    let mut summary = ExecuteSummary::default();
    for entry in &manifest.cells {
        if !cells.contains_key(entry.key.as_str()) {
            return Err(ResultsError::Resume {
                path: dir.root.display().to_string(),
                reason: format!("the run's cell `{}` is not in the current plan: the preset or sweep changed; start a new run instead", entry.name),
            });
        }
        // A cell whose files do not hold up (truncated stats.json or requests.jsonl, a status
        // that disagrees with its files) is incomplete: say so, remove it, run it again.
        let dir_exists = dir.cell_dir(&entry.name).is_dir();
        let mut as_complete = entry.clone();
        as_complete.status = CellStatus::Completed;
        let problem = if done.contains_key(&entry.key) {
            validate_cell(dir, &as_complete)
                .err()
                .map(|e| e.to_string())
        } else if entry.status == CellStatus::Completed {
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
            done.remove(&entry.key);
            dir.remove_cell(&entry.name)?;
            summary.rerun_corrupt += 1;
        }
    }
    // The manifest on disk now matches what this invocation starts from (log folded in).
    dir.write_manifest(manifest)?;
    let mut cell_durations: Vec<Duration> = Vec::new();
    for key in &keys {
        let Some(cell) = cells.get(key.as_str()).copied() else {
            continue;
        };
        if done.contains_key(key) {
            manifest.set_status(key, CellStatus::Completed, None);
            summary.already_complete += 1;
            progress.cell_finished(&cell.name, CellStatus::Completed, "(already complete)");
            continue;
        }
        if stop.is_cancelled() || summary.interrupted {
            // A stop between cells leaves the rest pending; it is still an interruption.
            summary.interrupted = true;
            summary.pending += 1;
            continue;
        }
        if let Some(budget) = options.time_budget {
            let mean = cell_durations
                .iter()
                .sum::<Duration>()
                .checked_div(cell_durations.len() as u32)
                .unwrap_or_default();
            if started.elapsed() + mean > budget {
                summary.budget_exhausted = true;
                summary.pending += 1;
                continue;
            }
        }
        let cell_started = Instant::now();
        let resolved = match backend.resolve(cell) {
            Ok(r) => r,
            Err(reason) => {
                progress.cell_finished(&cell.name, CellStatus::Skipped, &reason);
                record(dir, manifest, key, CellStatus::Skipped, Some(reason))?;
                summary.skipped += 1;
                continue;
            }
        };
        progress.cell_started(&cell.name, run.repeats, run.workload.requests);
        let spec = run.cell_spec(resolved.tokens.clone(), cell.load);
        let mut make = || backend.start(cell, &resolved);
        let outcome = run_cell(&mut make, &spec, stop, &mut |e| progress.on_event(e));
        match outcome {
            CellOutcome::Completed(m) => {
                let stats = StatsFile::new(plan, cell, run, &m);
                dir.write_cell(
                    &cell.name,
                    CellFiles {
                        effective_config_json: &resolved.effective_config_json,
                        decision_trace_jsonl: &resolved.decision_trace_jsonl,
                        result: Some((&stats, &m)),
                    },
                )?;
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
                progress.cell_finished(
                    &cell.name,
                    CellStatus::Completed,
                    &format!("{tps:.1} output tok/s{}", drift_note(&m.engine)),
                );
                manifest.set_status(key, CellStatus::Completed, None);
                dir.record_status(&StatusLine {
                    key: key.clone(),
                    status: CellStatus::Completed,
                    reason: None,
                    engine: first_engine,
                })?;
                summary.completed += 1;
            }
            CellOutcome::Failed { reason } => {
                dir.write_cell(
                    &cell.name,
                    CellFiles {
                        effective_config_json: &resolved.effective_config_json,
                        decision_trace_jsonl: &resolved.decision_trace_jsonl,
                        result: None,
                    },
                )?;
                backend.finish_cell(cell, &dir.cell_dir(&cell.name));
                progress.cell_finished(&cell.name, CellStatus::Failed, &reason);
                record(dir, manifest, key, CellStatus::Failed, Some(reason))?;
                summary.failed += 1;
            }
            CellOutcome::Interrupted => {
                progress.cell_finished(&cell.name, CellStatus::Interrupted, "stopped by Ctrl-C");
                record(
                    dir,
                    manifest,
                    key,
                    CellStatus::Interrupted,
                    Some("stopped by Ctrl-C; continue with --resume".into()),
                )?;
                summary.interrupted = true;
            }
        }
        cell_durations.push(cell_started.elapsed());
    }
    if !summary.interrupted && !summary.budget_exhausted {
        manifest.finished_at = Some(now_rfc3339());
    }
    checkpoint(dir, manifest)?;
    progress.finish();
    Ok(summary)
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
    })
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
