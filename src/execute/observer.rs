//! What the execution loop reports while it runs, behind a trait so the loop never depends on a
//! concrete display: `sweep` draws progress bars ([`SweepProgress`]), `tune` prints trials and
//! its incumbent, tests record calls.

use crate::measure::{CellStatus, MeasureEvent};
use crate::report::progress::SweepProgress;

use super::source::WorkUnit;

/// Receives the loop's progress.
pub trait ExecuteObserver {
    /// A unit starts: `unit.repeats × requests_per_repeat` measured requests will follow.
    fn unit_started(&mut self, unit: &WorkUnit, requests_per_repeat: usize);
    /// A measurement event of the running unit.
    fn on_event(&mut self, event: &MeasureEvent);
    /// A cell (unit) ended with `status`; `detail` is a one-line result or reason.
    fn cell_finished(&mut self, name: &str, status: CellStatus, detail: &str);
    /// A note for the user (e.g. a resume found a corrupt cell).
    fn note(&mut self, line: &str);
    /// The loop is done.
    fn finish(&mut self);
}

impl ExecuteObserver for SweepProgress {
    fn unit_started(&mut self, unit: &WorkUnit, requests_per_repeat: usize) {
        self.cell_started(&unit.cell.name, unit.repeats, requests_per_repeat);
    }

    fn on_event(&mut self, event: &MeasureEvent) {
        SweepProgress::on_event(self, event);
    }

    fn cell_finished(&mut self, name: &str, status: CellStatus, detail: &str) {
        SweepProgress::cell_finished(self, name, status, detail);
    }

    fn note(&mut self, line: &str) {
        SweepProgress::note(self, line);
    }

    fn finish(&mut self) {
        SweepProgress::finish(self);
    }
}
