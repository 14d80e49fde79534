//! Which cell runs next. The execution loop asks a [`CellSource`] for the next [`WorkUnit`] —
//! a cell and the repeats of it to run — runs it, and tells the source how it ended, so a fixed
//! plan (grid, shard, resume), a tuner that chooses from the history of finished cells, or an
//! interleaved schedule of rounds all drive the same loop. A unit names repeat indices, not a
//! count, so a cell measured in parts gets exactly the repeats (and seeds) of one whole run.

use std::collections::VecDeque;

use crate::measure::RepeatSummary;
use crate::sweep::Cell;

/// One piece of work: repeats `first_repeat..first_repeat + repeats` of `cell`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkUnit {
    /// The cell (its knobs, load and directory name).
    pub cell: Cell,
    /// Index of the first repeat.
    pub first_repeat: u32,
    /// How many repeats (≥ 1).
    pub repeats: u32,
    /// The schedule's round this unit belongs to, when the source works in rounds (recorded so
    /// a resume can tell finished rounds apart); `None` for whole-cell plans.
    pub round: Option<u32>,
    /// A re-measurement of one repeat the noise monitor flagged (`--rerun-noisy`): that repeat
    /// is on disk already; the new measurement replaces it and keeps it as `superseded`.
    pub rerun: bool,
}

impl WorkUnit {
    /// All `repeats` repeats of `cell`, as a sweep runs it.
    pub fn whole(cell: &Cell, repeats: u32) -> WorkUnit {
        WorkUnit {
            cell: cell.clone(),
            first_repeat: 0,
            repeats,
            round: None,
            rerun: false,
        }
    }

    /// One past the last repeat index.
    pub fn end_repeat(&self) -> u32 {
        self.first_repeat.saturating_add(self.repeats)
    }

    /// Whether every repeat index of this unit is in `have` (e.g. the repeats on disk).
    pub fn covered_by(&self, have: &[u32]) -> bool {
        (self.first_repeat..self.end_repeat()).all(|r| have.contains(&r))
    }
}

/// How a unit ended, as its source is told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnitOutcome<'a> {
    /// The unit's repeats were measured now (`already` false) or found on disk (`already`
    /// true); `repeats` holds every measured repeat of the cell so far, in repeat order.
    Measured {
        /// All repeats of the cell recorded so far (not only this unit's).
        repeats: &'a [RepeatSummary],
        /// The repeats were already on disk (resume); nothing ran.
        already: bool,
    },
    /// The resolver rejected the cell (never run).
    Skipped {
        /// Why.
        reason: &'a str,
    },
    /// The engine failed.
    Failed {
        /// Why.
        reason: &'a str,
    },
    /// Ctrl-C stopped the unit.
    Interrupted,
}

/// Hands out the units of a run in order and learns how each ended.
pub trait CellSource {
    /// The next unit to run, or `None` when the source has nothing more.
    fn next_unit(&mut self) -> Option<WorkUnit>;
    /// How `unit` ended (adaptive sources choose their next unit from this history).
    fn finished(&mut self, _unit: &WorkUnit, _outcome: UnitOutcome<'_>) {}
    /// The units this source would still hand out, taken out of it: the loop stops early (Ctrl-C
    /// or the time budget) and reports them as pending. An adaptive source that cannot know its
    /// future returns none.
    fn drain_remaining(&mut self) -> Vec<WorkUnit> {
        Vec::new()
    }
    /// Units in total when known up front (progress), else `None`.
    fn total_units(&self) -> Option<usize> {
        None
    }
}

/// A fixed list of units in order: whole cells (the grid, a shard of it, or the cells a resume
/// continues; cells found complete on disk are reported, not rerun), or the one-repeat units of
/// interleaved rounds ([`super::rounds::interleaved_rounds`]).
#[derive(Debug, Clone)]
pub struct PlannedCells {
    queue: VecDeque<WorkUnit>,
    total: usize,
}

impl PlannedCells {
    /// Every cell of `cells`, each with all `repeats` repeats.
    pub fn new<'a>(cells: impl IntoIterator<Item = &'a Cell>, repeats: u32) -> PlannedCells {
        PlannedCells::from_units(cells.into_iter().map(|c| WorkUnit::whole(c, repeats)))
    }

    /// These units, in this order.
    pub fn from_units(units: impl IntoIterator<Item = WorkUnit>) -> PlannedCells {
        let queue: VecDeque<WorkUnit> = units.into_iter().collect();
        PlannedCells {
            total: queue.len(),
            queue,
        }
    }
}

impl CellSource for PlannedCells {
    fn next_unit(&mut self) -> Option<WorkUnit> {
        self.queue.pop_front()
    }

    fn drain_remaining(&mut self) -> Vec<WorkUnit> {
        self.queue.drain(..).collect()
    }

    fn total_units(&self) -> Option<usize> {
        Some(self.total)
    }
}

/// Fixtures shared by the execution loop's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::measure::{LoadPoint, RepeatSummary};
    use crate::sweep::Cell;

    /// Cell `i`: name `c{i}`, key `k{i}`, no knobs, closed loop at c=1.
    pub fn cell(i: usize) -> Cell {
        Cell {
            index: i,
            name: format!("c{i}"),
            key: format!("k{i}"),
            knobs: Default::default(),
            load: LoadPoint::Closed { concurrency: 1 },
        }
    }

    /// The golden `stats.json`'s first repeat, a complete summary for tests to edit.
    pub fn repeat_summary() -> RepeatSummary {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/golden/stats.json")).unwrap();
        serde_json::from_value(golden["repeats"][0].clone()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::cell;
    use super::*;

    #[test]
    fn planned_cells_hand_out_whole_cells_in_order_and_drain_the_rest() {
        let cells = [cell(0), cell(1), cell(2)];
        let mut s = PlannedCells::new(&cells, 3);
        assert_eq!(s.total_units(), Some(3));
        let first = s.next_unit().unwrap();
        assert_eq!(
            (first.cell.name.as_str(), first.first_repeat, first.repeats),
            ("c0", 0, 3)
        );
        let rest: Vec<String> = s
            .drain_remaining()
            .into_iter()
            .map(|u| u.cell.name)
            .collect();
        assert_eq!(rest, ["c1", "c2"]);
        assert!(s.next_unit().is_none());
    }

    #[test]
    fn a_unit_is_covered_only_when_every_repeat_index_is_present() {
        let u = WorkUnit {
            cell: cell(0),
            first_repeat: 1,
            repeats: 2,
            round: Some(1),
            rerun: false,
        };
        assert_eq!(u.end_repeat(), 3);
        assert!(u.covered_by(&[0, 1, 2]));
        assert!(!u.covered_by(&[0, 1]));
        assert!(!u.covered_by(&[]));
    }
}
