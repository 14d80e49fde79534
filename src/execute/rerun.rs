//! `--rerun-noisy N`: once the run's last round (or last cell) has run, measure again up to N
//! repeats that the noise monitor ([`crate::noise`]) flagged, and let each new measurement
//! replace the flagged one in the statistics while the original is kept whole in
//! `repeats[i].superseded` of the cell's `stats.json`.
//!
//! - **Which repeats**: every repeat with at least one flag whose cell has not re-measured it
//!   yet, most flags first, then the earliest repeat (round), then the cell's position in the
//!   run, so the choice is a pure function of what is on disk. N counts every re-measurement of
//!   the run, so a resume continues exactly the list the interrupted invocation began; a
//!   re-measurement that failed keeps its original, is recorded, and is tried again only by a
//!   later `--resume`.
//! - **The same repeat**: a re-measurement runs the repeat's own index (so its seed and prompts)
//!   and keeps its round, so it stays in the paired analysis of that round. It ran later than
//!   the round's other cells, so drift between the two moments is not cancelled for that one
//!   pair; that is why N is a small bound and every re-measurement is listed in the manifest
//!   (`schedule.reruns`) with the readings before and after.
//! - **Replace, never choose**: the new measurement replaces the original whatever the monitor
//!   says about it (its own flags are shown). Keeping whichever of the two looks better would
//!   bias the mean toward fast repeats.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::source::{CellSource, UnitOutcome, WorkUnit};
use crate::measure::RepeatSummary;
use crate::noise::NoiseFlag;
use crate::results::{Manifest, ResultsError, RunDir};
use crate::sweep::Cell;

/// The largest `--rerun-noisy` a user may ask for.
pub const MAX_RERUN_NOISY: u32 = 10_000;

/// How a re-measurement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RerunOutcome {
    /// Measured again: the new repeat replaced the original, which is kept as `superseded`.
    Remeasured,
    /// The engine failed; the original repeat is kept unchanged.
    Failed,
}

/// One re-measurement, as `manifest.json` lists it (`schedule.reruns`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunRecord {
    /// Cell name (its directory under `cells/`).
    pub cell: String,
    /// Repeat index.
    pub repeat: u32,
    /// The repeat's round (interleaved runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// How it ended.
    pub outcome: RerunOutcome,
    /// The original's noise flags (why it was re-measured).
    pub flags_before: Vec<NoiseFlag>,
    /// The new measurement's noise flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags_after: Vec<NoiseFlag>,
    /// The original's output tok/s.
    pub output_tokens_per_s_before: f64,
    /// The new measurement's output tok/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_s_after: Option<f64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn flags(r: &RepeatSummary) -> &[NoiseFlag] {
    r.noise.as_ref().map_or(&[][..], |n| &n.flags[..])
}

/// The re-measurements still to make: at most `limit` in all, minus the repeats already
/// re-measured; candidates are the flagged repeats not re-measured yet, most flags first, then
/// the earliest repeat, then the cell's position in `cells` (the order the run met them).
pub fn select(cells: &[(Cell, Vec<RepeatSummary>)], limit: u32) -> Vec<WorkUnit> {
    let done = cells
        .iter()
        .flat_map(|(_, rs)| rs)
        .filter(|r| r.superseded.is_some())
        .count();
    let left = (limit as usize).saturating_sub(done);
    let mut candidates: Vec<(usize, u32, usize, &Cell, &RepeatSummary)> = cells
        .iter()
        .enumerate()
        .flat_map(|(pos, (cell, rs))| {
            rs.iter()
                .filter(|r| r.superseded.is_none() && !flags(r).is_empty())
                .map(move |r| (usize::MAX - flags(r).len(), r.repeat, pos, cell, r))
        })
        .collect();
    candidates.sort_by_key(|c| (c.0, c.1, c.2));
    candidates
        .into_iter()
        .take(left)
        .map(|(_, _, _, cell, r)| WorkUnit {
            cell: cell.clone(),
            first_repeat: r.repeat,
            repeats: 1,
            round: r.round,
            rerun: true,
        })
        .collect()
}

/// A source that hands out `main`'s units, then the re-measurements [`select`] picks from the
/// repeats `main`'s units ended with (measured now or found on disk by a resume).
pub struct WithReruns<'a> {
    main: &'a mut dyn CellSource,
    limit: u32,
    /// Cells in the order the run met them, with their latest repeats.
    cells: Vec<(Cell, Vec<RepeatSummary>)>,
    position: BTreeMap<String, usize>,
    /// `None` while `main` still has units.
    queue: Option<VecDeque<WorkUnit>>,
}

impl std::fmt::Debug for WithReruns<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithReruns")
            .field("limit", &self.limit)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<'a> WithReruns<'a> {
    /// `main`'s units, then at most `limit` re-measurements in all.
    pub fn new(main: &'a mut dyn CellSource, limit: u32) -> WithReruns<'a> {
        WithReruns {
            main,
            limit,
            cells: Vec::new(),
            position: BTreeMap::new(),
            queue: None,
        }
    }
}

impl CellSource for WithReruns<'_> {
    fn next_unit(&mut self) -> Option<WorkUnit> {
        if self.queue.is_none() {
            if let Some(unit) = self.main.next_unit() {
                return Some(unit);
            }
            self.queue = Some(select(&self.cells, self.limit).into());
        }
        self.queue.as_mut().and_then(VecDeque::pop_front)
    }

    fn finished(&mut self, unit: &WorkUnit, outcome: UnitOutcome<'_>) {
        if !unit.rerun {
            self.main.finished(unit, outcome);
        }
        if let UnitOutcome::Measured { repeats, .. } = outcome {
            let pos = *self
                .position
                .entry(unit.cell.key.clone())
                .or_insert_with(|| {
                    self.cells.push((unit.cell.clone(), Vec::new()));
                    self.cells.len() - 1
                });
            self.cells[pos].1 = repeats.to_vec();
        }
    }

    fn drain_remaining(&mut self) -> Vec<WorkUnit> {
        match &mut self.queue {
            None => self.main.drain_remaining(),
            Some(q) => q.drain(..).collect(),
        }
    }

    fn total_units(&self) -> Option<usize> {
        self.main.total_units()
    }
}

/// The manifest's record of a re-measurement of `original` (`new` when it was measured,
/// `failure` when the engine failed).
pub fn record(
    unit: &WorkUnit,
    original: &RepeatSummary,
    new: Option<&RepeatSummary>,
    failure: Option<String>,
) -> RerunRecord {
    let flags = |r: &RepeatSummary| {
        r.noise
            .as_ref()
            .map(|n| n.flags.clone())
            .unwrap_or_default()
    };
    RerunRecord {
        cell: unit.cell.name.clone(),
        repeat: unit.first_repeat,
        round: unit.round,
        outcome: if new.is_some() {
            RerunOutcome::Remeasured
        } else {
            RerunOutcome::Failed
        },
        flags_before: flags(original),
        flags_after: new.map(flags).unwrap_or_default(),
        output_tokens_per_s_before: original.output_tokens_per_s,
        output_tokens_per_s_after: new.map(|n| n.output_tokens_per_s),
        reason: failure,
    }
}

/// One line for the user about a re-measurement.
pub fn note(rec: &RerunRecord) -> String {
    let names =
        |f: &[crate::noise::NoiseFlag]| f.iter().map(|x| x.as_str()).collect::<Vec<_>>().join("+");
    let head = format!(
        "{}: repeat {} (flagged {}, {:.1} output tok/s)",
        rec.cell,
        rec.repeat + 1,
        names(&rec.flags_before),
        rec.output_tokens_per_s_before
    );
    match (rec.output_tokens_per_s_after, &rec.reason) {
        (Some(after), _) => format!(
            "{head} re-measured: {after:.1} output tok/s{}",
            if rec.flags_after.is_empty() {
                ", not flagged".to_string()
            } else {
                format!(", flagged {} again", names(&rec.flags_after))
            }
        ),
        (None, reason) => format!(
            "{head}: re-measurement failed ({}); the original is kept",
            reason.as_deref().unwrap_or("unknown")
        ),
    }
}

/// Append a re-measurement to the manifest's schedule and write the manifest, so what the
/// manifest says ran is what ran even if the process dies next.
pub fn push(dir: &RunDir, manifest: &mut Manifest, rec: RerunRecord) -> Result<(), ResultsError> {
    if let Some(s) = &mut manifest.schedule {
        s.reruns.push(rec);
    }
    dir.write_manifest(manifest)
}

/// A resume found `have` (a cell's repeats on disk): a re-measured repeat the manifest does not
/// list (the process died between writing the cell and the manifest) is recorded now, from the
/// cell's own files, so the manifest lists every re-measurement the results contain.
pub fn reconcile(
    dir: &RunDir,
    manifest: &mut Manifest,
    unit: &WorkUnit,
    have: &[RepeatSummary],
) -> Result<(), ResultsError> {
    let Some(schedule) = &manifest.schedule else {
        return Ok(());
    };
    let missing: Vec<RerunRecord> = have
        .iter()
        .filter_map(|r| {
            let original = r.superseded.as_deref()?;
            let listed = schedule.reruns.iter().any(|x| {
                x.cell == unit.cell.name
                    && x.repeat == r.repeat
                    && x.outcome == RerunOutcome::Remeasured
            });
            let unit = WorkUnit {
                cell: unit.cell.clone(),
                first_repeat: r.repeat,
                repeats: 1,
                round: r.round,
                rerun: true,
            };
            (!listed).then(|| record(&unit, original, Some(r), None))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if let Some(s) = &mut manifest.schedule {
        s.reruns.extend(missing);
    }
    dir.write_manifest(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::source::fixtures::{cell, repeat_summary};
    use crate::execute::PlannedCells;
    use crate::noise::NoiseSample;

    fn repeat(r: u32, f: &[NoiseFlag], superseded: bool) -> RepeatSummary {
        let mut s = repeat_summary();
        s.repeat = r;
        s.round = Some(r);
        s.noise = Some(NoiseSample {
            steal_pct: None,
            iowait_pct: None,
            other_cpu_pct: None,
            loadavg_1m: None,
            cores: 2,
            cpu_mhz: None,
            calibration_ms: None,
            calibration_best_ms: None,
            gpu_sm_mhz: None,
            gpu_slowdown_reasons: None,
            flags: f.to_vec(),
        });
        if superseded {
            s.superseded = Some(Box::new(s.clone()));
        }
        s
    }

    fn picked(units: &[WorkUnit]) -> Vec<(String, u32)> {
        units
            .iter()
            .map(|u| {
                assert!(u.rerun && u.repeats == 1 && u.round == Some(u.first_repeat));
                (u.cell.name.clone(), u.first_repeat)
            })
            .collect()
    }

    #[test]
    fn most_flags_first_then_earliest_repeat_then_run_order() {
        use NoiseFlag::*;
        let cells = vec![
            (
                cell(0),
                vec![
                    repeat(0, &[], false),
                    repeat(1, &[Steal], false),
                    repeat(2, &[Load], false),
                ],
            ),
            (
                cell(1),
                vec![
                    repeat(0, &[Steal], false),
                    repeat(1, &[Steal, Load], false),
                    repeat(2, &[], false),
                ],
            ),
        ];
        assert_eq!(
            picked(&select(&cells, 10)),
            [("c1", 1), ("c1", 0), ("c0", 1), ("c0", 2)].map(|(c, r)| (c.to_string(), r))
        );
        assert_eq!(
            picked(&select(&cells, 2)),
            [("c1", 1), ("c1", 0)].map(|(c, r)| (c.to_string(), r))
        );
        assert!(select(&cells, 0).is_empty());
    }

    #[test]
    fn the_limit_counts_earlier_re_measurements_and_never_repeats_one() {
        use NoiseFlag::*;
        // c0 repeat 1 was re-measured (and is flagged again): it is not picked twice, and it
        // uses one of the 2 allowed.
        let cells = vec![(
            cell(0),
            vec![
                repeat(0, &[Steal], false),
                repeat(1, &[Steal, Load], true),
                repeat(2, &[Load], false),
            ],
        )];
        assert_eq!(picked(&select(&cells, 2)), [("c0".to_string(), 0)]);
        assert!(select(&cells, 1).is_empty());
    }

    #[test]
    fn re_measurements_follow_the_main_units_and_only_main_units_reach_main() {
        use NoiseFlag::*;
        let cells = [cell(0), cell(1)];
        let mut main = PlannedCells::new(&cells, 2);
        let mut s = WithReruns::new(&mut main, 5);
        let mut handed = Vec::new();
        while let Some(u) = s.next_unit() {
            let repeats = match (u.rerun, u.cell.index) {
                (true, _) => vec![repeat(0, &[], true), repeat(1, &[], false)],
                (false, 0) => vec![repeat(0, &[Steal], false), repeat(1, &[], false)],
                (false, _) => vec![repeat(0, &[], false), repeat(1, &[], false)],
            };
            s.finished(
                &u,
                UnitOutcome::Measured {
                    repeats: &repeats,
                    already: false,
                },
            );
            handed.push((u.cell.name.clone(), u.rerun, u.first_repeat));
        }
        assert_eq!(
            handed,
            [
                ("c0".to_string(), false, 0),
                ("c1".to_string(), false, 0),
                ("c0".to_string(), true, 0),
            ]
        );
        assert!(s.drain_remaining().is_empty());
    }
}
