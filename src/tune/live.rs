//! A tune on the engine: the driver becomes a [`CellSource`] of the execution loop. Each trial is
//! a unit of the chosen cell's next repeats; a unit whose repeats are already in the run
//! directory (a `--resume`, or cells copied from a `--reuse` directory) is answered from disk
//! without running, so a resumed tune replays its decisions and reruns no finished trial — nor
//! any finished (finalist, round) of an interleaved confirmation, found by its repeat index.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::execute::{CellSource, UnitOutcome, WorkUnit};
use crate::results::ResultsError;

use super::driver::{Answer, Driver};
use super::output::{summarize, write_tune_json, TuneDoc};
use super::strategy::Ask;

/// The tuner as a source of units.
pub struct TunerSource {
    /// The driver.
    pub driver: Driver,
    /// `tune.json` without trials and summary (filled in on every write).
    pub doc: TuneDoc,
    run_root: PathBuf,
    pending: Option<Ask>,
    /// Cells (by key) that failed in the run being resumed: answered as failures, not retried.
    known_failures: BTreeMap<String, String>,
    reused: BTreeSet<String>,
    quiet: bool,
    /// The first error writing `tune.json` or copying a reused cell (reported at the end).
    pub error: Option<ResultsError>,
}

impl TunerSource {
    /// A source writing `tune.json` into `run_root`.
    pub fn new(driver: Driver, doc: TuneDoc, run_root: &Path, quiet: bool) -> TunerSource {
        TunerSource {
            driver,
            doc,
            run_root: run_root.to_path_buf(),
            pending: None,
            known_failures: BTreeMap::new(),
            reused: BTreeSet::new(),
            quiet,
            error: None,
        }
    }

    /// Resuming: cells that failed before are failures again (never retried blindly).
    pub fn resuming(mut self, failures: BTreeMap<String, String>) -> Self {
        self.known_failures = failures;
        self
    }

    /// `--reuse`: complete cells of an earlier run (key → cell directory), copied into this run
    /// now, before the execution loop takes stock of the cells on disk, so it answers their
    /// repeats without running the engine (a cell this run already has is left alone).
    pub fn reusing(mut self, cells: BTreeMap<String, PathBuf>) -> Self {
        for (key, from) in cells {
            let Some(cell) = self.driver.space.cells.iter().find(|c| c.key == key) else {
                continue;
            };
            let dest = self.run_root.join("cells").join(&cell.name);
            if dest.exists() {
                continue;
            }
            match copy_cell(&from, &dest) {
                Ok(()) => {
                    self.reused.insert(key);
                }
                Err(e) => {
                    self.error.get_or_insert(e);
                }
            }
        }
        self
    }

    /// The document as it stands.
    pub fn current_doc(&self) -> TuneDoc {
        let mut doc = self.doc.clone();
        let summary = summarize(&self.driver);
        doc.trials.clone_from(&self.driver.trials);
        doc.runs_used = self.driver.runs_used();
        doc.best = summary.best;
        doc.ties = summary.ties;
        doc.pareto = summary.pareto;
        doc.notes = summary.notes;
        doc.method = summary.method;
        doc.confirmation = summary.confirmation;
        doc
    }

    fn save(&mut self) {
        if let Err(e) = write_tune_json(&self.run_root, &self.current_doc()) {
            self.error.get_or_insert(e);
        }
    }

    fn print_trial(&self) {
        if self.quiet {
            return;
        }
        let Some(t) = self.driver.trials.last() else {
            return;
        };
        let result = match (&t.failure, t.objective_mean) {
            (Some(f), _) => format!("infeasible: {f}"),
            (None, Some(m)) => format!(
                "{} = {m:.2} over {} repeat(s){}",
                self.doc.objective,
                t.total_repeats,
                if t.feasible {
                    ""
                } else {
                    ", violates a constraint"
                }
            ),
            (None, None) => "no value".into(),
        };
        eprintln!(
            "trial {} [runs {}/{}] {}: {result} ({}; {}) | incumbent {}",
            t.trial,
            t.runs_used,
            self.driver.budget,
            t.cell,
            t.reason,
            t.source,
            t.incumbent.as_deref().unwrap_or("none")
        );
    }
}

/// Copy a cell directory (files only, one level of subdirectories) into `dest`.
fn copy_cell(from: &Path, dest: &Path) -> Result<(), ResultsError> {
    let io = |action: &'static str, p: &Path| {
        let path = p.display().to_string();
        move |source| ResultsError::Io {
            action,
            path,
            source,
        }
    };
    let parent = dest.parent().unwrap_or(dest);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = parent.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io("remove", &partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io("create directory", &partial))?;
    for entry in std::fs::read_dir(from).map_err(io("read directory", from))? {
        let entry = entry.map_err(io("read directory", from))?;
        if entry.path().is_file() {
            std::fs::copy(entry.path(), partial.join(entry.file_name()))
                .map_err(io("copy", &entry.path()))?;
        }
    }
    std::fs::rename(&partial, dest).map_err(io("rename into", dest))
}

impl CellSource for TunerSource {
    fn next_unit(&mut self) -> Option<WorkUnit> {
        loop {
            let ask = self.driver.next_trial()?;
            let cell = self.driver.space.cells[ask.config].clone();
            if let Some(reason) = self.known_failures.get(&cell.key).cloned() {
                self.driver.record(&ask, Answer::Failed(reason), "resume");
                self.print_trial();
                self.save();
                continue;
            }
            // A confirmation repeat runs at its round's repeat index (shared by the round's
            // finalists, recorded as the repeat's `round`); a search trial continues the cell.
            let first_repeat = ask
                .round
                .unwrap_or(self.driver.history.repeats(ask.config) as u32);
            let repeats = ask.repeats as u32;
            let round = ask.round;
            self.pending = Some(ask);
            return Some(WorkUnit {
                cell,
                first_repeat,
                repeats,
                round,
                rerun: false,
            });
        }
    }

    fn finished(&mut self, unit: &WorkUnit, outcome: UnitOutcome<'_>) {
        let Some(ask) = self.pending.take() else {
            return;
        };
        let (answer, source) = match outcome {
            UnitOutcome::Measured { repeats, already } => {
                let values = repeats
                    .iter()
                    .filter(|r| (unit.first_repeat..unit.end_repeat()).contains(&r.repeat))
                    .map(|r| self.driver.history.objective.values_of(r))
                    .collect();
                let source = if !already {
                    "run"
                } else if self.reused.contains(&unit.cell.key) {
                    "reuse"
                } else {
                    "resume"
                };
                (Answer::Measured(values), source)
            }
            UnitOutcome::Skipped { reason } | UnitOutcome::Failed { reason } => {
                (Answer::Failed(reason.to_string()), "run")
            }
            UnitOutcome::Interrupted => return,
        };
        self.driver.record(&ask, answer, source);
        self.print_trial();
        self.save();
    }

    fn total_units(&self) -> Option<usize> {
        None
    }
}
