//! Running a planned sweep into a results directory: for each cell of the shard that is not
//! already complete, resolve it (a rejection marks it `skipped`, never run), start an engine, run
//! the repeats, write the cell and update the manifest and summaries — stopping cleanly between
//! cells when the stop flag (Ctrl-C) is raised or the time budget would be exceeded.
//!
//! The resolver and the engine are behind [`CellBackend`] so this loop is tested with a scripted
//! engine and phase 2 only plugs in the real ones.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::{Cancel, Engine, EngineError};
use crate::measure::{run_cell, CellOutcome, CellStatus};
use crate::report::{self, progress::SweepProgress};
use crate::results::{now_rfc3339, CellFiles, Manifest, ResultsError, RunDir, StatsFile};
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
    /// The process exit code for this outcome: 3 when any cell failed, else 0 (skipped cells are
    /// a property of the sweep, not a failure). An interruption is reported by the caller.
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 {
            crate::error::EXIT_ENGINE
        } else {
            crate::error::EXIT_OK
        }
    }
}

/// Run the manifest's pending (or previously failed/interrupted) cells of `plan` into `dir`.
/// `manifest` must list the cells to run (see `Manifest::new`); its statuses are updated and it is
/// rewritten after every cell, with `summary.csv`/`summary.md`.
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
    let done = dir.completed_cell_keys()?;
    let cells: BTreeMap<&str, &Cell> = plan.cells.iter().map(|c| (c.key.as_str(), c)).collect();
    let keys: Vec<String> = manifest.cells.iter().map(|c| c.key.clone()).collect();
    let mut summary = ExecuteSummary::default();
    let mut cell_durations: Vec<Duration> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(cell) = cells.get(key.as_str()).copied() else {
            return Err(ResultsError::Mismatch {
                path: dir.root.display().to_string(),
                reason: format!("manifest cell `{}` is not in the current plan; was the preset or sweep changed?", manifest.cells[i].name),
            });
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
                manifest.set_status(key, CellStatus::Skipped, Some(reason));
                summary.skipped += 1;
                checkpoint(dir, manifest)?;
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
                if manifest.engine.is_none() {
                    manifest.engine = Some(m.engine.clone());
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
                manifest.set_status(key, CellStatus::Failed, Some(reason));
                summary.failed += 1;
            }
            CellOutcome::Interrupted => {
                progress.cell_finished(&cell.name, CellStatus::Interrupted, "stopped by Ctrl-C");
                manifest.set_status(
                    key,
                    CellStatus::Interrupted,
                    Some("stopped by Ctrl-C; rerun with --resume".into()),
                );
                summary.interrupted = true;
            }
        }
        cell_durations.push(cell_started.elapsed());
        checkpoint(dir, manifest)?;
    }
    if !summary.interrupted && !summary.budget_exhausted {
        manifest.finished_at = Some(now_rfc3339());
    }
    checkpoint(dir, manifest)?;
    progress.finish();
    Ok(summary)
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

/// Rewrite the manifest and the summaries from what is on disk.
pub fn checkpoint(dir: &RunDir, manifest: &Manifest) -> Result<(), ResultsError> {
    dir.write_manifest(manifest)?;
    let stats = dir.completed_stats()?;
    let rows = report::summary_rows(manifest, &stats);
    let csv = report::summary_csv(&manifest.sweep.knob_names, &rows).map_err(|e| {
        ResultsError::Corrupt {
            path: dir.root.display().to_string(),
            message: format!("cannot render summary.csv: {e}"),
        }
    })?;
    dir.write_summaries(&csv, &report::summary_markdown(manifest, &rows))
}

#[cfg(test)]
mod tests;
