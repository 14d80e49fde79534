//! The sweep loop with a scripted backend: skipped and failed cells, Ctrl-C then resume (no cell
//! run twice, none lost), and the time budget.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use super::*;
use crate::measure::fake::FakeEngine;
use crate::report::progress::SweepProgress;
use crate::results::PresetInfo;
use crate::sweep::{plan, RunOverrides, SweepTable};
use crate::workload::cell_workload_hash;

/// Skips cells whose name contains `skip`, makes the engine of cells containing `fail` error out,
/// raises `stop` when the `stop_at`-th engine starts, and logs every started cell.
struct Backend {
    skip: &'static str,
    fail: &'static str,
    stop_at: Option<usize>,
    stop: Option<Cancel>,
    started: Rc<RefCell<Vec<String>>>,
}

impl CellBackend for Backend {
    fn resolve(&mut self, cell: &Cell) -> Result<ResolvedCell, String> {
        if cell.name.contains(self.skip) {
            return Err("invalid auto config: max_batched_tokens < max_sequences".into());
        }
        Ok(ResolvedCell {
            effective_config_json: "{}\n".into(),
            decision_trace_jsonl: String::new(),
            tokens: TokenSpace::with_special_prefix(1000, 10),
        })
    }

    fn start(&mut self, cell: &Cell, _: &ResolvedCell) -> Result<Box<dyn Engine>, EngineError> {
        self.started.borrow_mut().push(cell.name.clone());
        if self.stop_at == Some(self.started.borrow().len()) {
            if let Some(s) = &self.stop {
                s.cancel();
            }
        }
        let mut e = FakeEngine::new(1_000_000);
        if cell.name.contains(self.fail) {
            e.fail_on_call = Some(1);
        }
        Ok(Box::new(e))
    }
}

fn setup(root: &Path) -> (RunDir, Manifest, Plan, RunSettings) {
    let run = RunSettings::resolve(
        None,
        &RunOverrides {
            requests: Some(4),
            warmup_requests: Some(1),
            repeats: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let t = SweepTable::from_file_text("concurrency = [2]\n[knobs]\nFERRUM_A = [1, 2, 3, 4]\n")
        .unwrap();
    let p = plan("m3", &run, &t, &[], &|_, v| Ok(v.to_string())).unwrap();
    let id = RunDir::new_run_id("t");
    let rd = RunDir::create(root, &id).unwrap();
    let cells = p.shard(None);
    let wh = cell_workload_hash(
        &run.workload,
        &TokenSpace::with_special_prefix(1000, 10),
        run.seed,
        run.repeats,
    )
    .unwrap();
    let m = Manifest::new(
        &id,
        PresetInfo::new("m3", Path::new("m3.toml"), "x"),
        &run,
        &p,
        &cells,
        None,
        None,
        wh,
    );
    (rd, m, p, run)
}

fn backend(started: &Rc<RefCell<Vec<String>>>) -> Backend {
    Backend {
        skip: "A=2",
        fail: "A=3",
        stop_at: None,
        stop: None,
        started: started.clone(),
    }
}

#[test]
fn skipped_and_failed_cells_are_recorded_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (rd, mut m, p, run) = setup(dir.path());
    let started = Rc::new(RefCell::new(Vec::new()));
    let mut progress = SweepProgress::new(4, true);
    let s = execute(
        SweepTarget {
            dir: &rd,
            plan: &p,
            run: &run,
        },
        &mut m,
        &mut backend(&started),
        &Cancel::new(),
        ExecuteOptions::default(),
        &mut progress,
    )
    .unwrap();
    assert_eq!(
        (s.completed, s.skipped, s.failed, s.pending, s.interrupted),
        (2, 1, 1, 0, false)
    );
    let on_disk = rd.read_manifest().unwrap();
    let status: Vec<CellStatus> = on_disk.cells.iter().map(|c| c.status).collect();
    assert_eq!(
        status,
        vec![
            CellStatus::Completed,
            CellStatus::Skipped,
            CellStatus::Failed,
            CellStatus::Completed
        ]
    );
    assert_eq!(
        on_disk.cells[1].reason.as_deref(),
        Some("invalid auto config: max_batched_tokens < max_sequences")
    );
    assert_eq!(
        on_disk.cells[2].reason.as_deref(),
        Some("repeat 1 (measured): engine failure: scripted failure")
    );
    assert!(on_disk.finished_at.is_some() && on_disk.engine.is_some());
    assert!(
        !rd.cell_dir("c2__A=2").exists(),
        "skipped cells are never run or written"
    );
    let csv = std::fs::read_to_string(rd.root.join("summary.csv")).unwrap();
    assert!(csv.contains(",skipped,invalid auto config"));
}

#[test]
fn ctrl_c_then_resume_runs_every_cell_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rd, mut m, p, run) = setup(dir.path());
    let started = Rc::new(RefCell::new(Vec::new()));
    let stop = Cancel::new();
    // Ctrl-C arrives while the second started engine (cell A=3, since A=2 is skipped) runs.
    let mut b = Backend {
        skip: "none",
        fail: "none",
        stop_at: Some(2),
        stop: Some(stop.clone()),
        started: started.clone(),
    };
    let s = execute(
        SweepTarget {
            dir: &rd,
            plan: &p,
            run: &run,
        },
        &mut m,
        &mut b,
        &stop,
        ExecuteOptions::default(),
        &mut SweepProgress::new(4, true),
    )
    .unwrap();
    assert!(s.interrupted);
    assert_eq!((s.completed, s.pending), (1, 2));
    let after = rd.read_manifest().unwrap();
    assert_eq!(after.cells[1].status, CellStatus::Interrupted);
    assert!(after.finished_at.is_none());
    assert!(
        !rd.cell_dir(&after.cells[1].name).exists(),
        "no half-written cell"
    );

    // Resume: reopen the directory and its manifest, check it is the same experiment, run again.
    let rd2 = RunDir::open(&rd.root).unwrap();
    let mut m2 = rd2.read_manifest().unwrap();
    let same_preset = PresetInfo::new("m3", Path::new("m3.toml"), "x");
    let set = m2.sweep.set.clone();
    m2.check_resumable(
        &rd2.root,
        &same_preset,
        &run,
        &m2.workload.workload_hash.clone(),
        &set,
        None,
    )
    .unwrap();
    let edited = PresetInfo::new("m3", Path::new("m3.toml"), "y");
    let err = m2
        .check_resumable(
            &rd2.root,
            &edited,
            &run,
            &m2.workload.workload_hash.clone(),
            &set,
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot resume") && err.contains("the preset changed"),
        "{err}"
    );
    let mut other_run = run.clone();
    other_run.repeats = 5;
    assert!(m2
        .check_resumable(
            &rd2.root,
            &same_preset,
            &other_run,
            &m2.workload.workload_hash.clone(),
            &set,
            None,
        )
        .is_err());
    let mut b2 = Backend {
        skip: "none",
        fail: "none",
        stop_at: None,
        stop: None,
        started: started.clone(),
    };
    let s2 = execute(
        SweepTarget {
            dir: &rd2,
            plan: &p,
            run: &run,
        },
        &mut m2,
        &mut b2,
        &Cancel::new(),
        ExecuteOptions::default(),
        &mut SweepProgress::new(4, true),
    )
    .unwrap();
    assert_eq!((s2.completed, s2.already_complete, s2.pending), (3, 1, 0));
    assert!(rd2
        .read_manifest()
        .unwrap()
        .cells
        .iter()
        .all(|c| c.status == CellStatus::Completed));
    let names = started.borrow().clone();
    // First run: A=1 completed, A=2 interrupted. Resume: A=2, A=3, A=4. A=1 never reruns.
    assert_eq!(
        names,
        vec!["c2__A=1", "c2__A=2", "c2__A=2", "c2__A=3", "c2__A=4"]
    );
    assert_eq!(rd2.completed_cell_keys().unwrap().len(), 4);
    assert_eq!(s2.exit_code(), crate::error::EXIT_OK);
}

#[test]
fn time_budget_stops_between_cells() {
    let dir = tempfile::tempdir().unwrap();
    let (rd, mut m, p, run) = setup(dir.path());
    let started = Rc::new(RefCell::new(Vec::new()));
    let opts = ExecuteOptions {
        time_budget: Some(Duration::from_nanos(1)),
    };
    let s = execute(
        SweepTarget {
            dir: &rd,
            plan: &p,
            run: &run,
        },
        &mut m,
        &mut backend(&started),
        &Cancel::new(),
        opts,
        &mut SweepProgress::new(4, true),
    )
    .unwrap();
    assert!(s.budget_exhausted);
    assert_eq!((s.completed, s.pending), (0, 4));
    assert!(started.borrow().is_empty());
    assert!(rd.read_manifest().unwrap().finished_at.is_none());
}

/// Hands out fixed units (cell index, first repeat, repeats) of the plan and logs outcomes.
struct Units {
    cells: Vec<Cell>,
    units: std::collections::VecDeque<(usize, u32, u32)>,
    seen: Vec<(String, u32, Vec<u32>, bool)>,
}

impl CellSource for Units {
    fn next_unit(&mut self) -> Option<WorkUnit> {
        let (i, first, n) = self.units.pop_front()?;
        Some(WorkUnit {
            cell: self.cells[i].clone(),
            first_repeat: first,
            repeats: n,
            round: Some(first),
            rerun: false,
        })
    }

    fn finished(&mut self, unit: &WorkUnit, outcome: UnitOutcome<'_>) {
        if let UnitOutcome::Measured { repeats, already } = outcome {
            let idx = repeats.iter().map(|r| r.repeat).collect();
            self.seen
                .push((unit.cell.name.clone(), unit.first_repeat, idx, already));
        }
    }
}

#[test]
fn units_of_repeats_append_cells_merge_into_one_directory_and_never_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (rd, _, p, mut run) = setup(dir.path());
    run.repeats = 3;
    // A manifest without cells: the source chooses them as it goes.
    let mut m = Manifest::new(
        &rd.root.file_name().unwrap().to_string_lossy(),
        PresetInfo::new("m3", Path::new("m3.toml"), "x"),
        &run,
        &p,
        &[],
        None,
        None,
        "sha256:w".into(),
    );
    let started = Rc::new(RefCell::new(Vec::new()));
    let plan_units = [(0, 0, 1), (2, 0, 1), (0, 1, 2), (2, 1, 1)];
    let mut source = Units {
        cells: p.cells.clone(),
        units: plan_units.into_iter().collect(),
        seen: Vec::new(),
    };
    let target = SweepTarget {
        dir: &rd,
        plan: &p,
        run: &run,
    };
    let mut summary = ExecuteSummary::default();
    let mut b = Backend {
        skip: "none",
        fail: "none",
        stop_at: None,
        stop: None,
        started: started.clone(),
    };
    run_units(
        target,
        &mut m,
        &mut b,
        &mut source,
        &Cancel::new(),
        ExecuteOptions::default(),
        &mut SweepProgress::new(0, true),
        &mut summary,
    )
    .unwrap();
    assert_eq!(summary.completed, 4);
    let names: Vec<String> = m.cells.iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        names,
        vec!["c2__A=1", "c2__A=3"],
        "cells appended as chosen"
    );
    let on_disk = rd.read_manifest().unwrap();
    assert_eq!(on_disk.cells.len(), 2);
    let a = rd.read_stats("c2__A=1").unwrap();
    let idx: Vec<u32> = a.repeats.iter().map(|r| r.repeat).collect();
    assert_eq!(idx, vec![0, 1, 2], "three repeats merged in order");
    assert_eq!(a.workload.repeats, 3);
    assert_eq!(a.aggregate.repeats, 3);
    let seeds: Vec<u64> = a.repeats.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, m.seeds.repeat_seeds, "the seeds of one whole run");
    let records = std::fs::read_to_string(rd.cell_dir("c2__A=1").join("requests.jsonl")).unwrap();
    assert_eq!(
        records.lines().count(),
        3 * 4,
        "every repeat's request records kept"
    );
    assert_eq!(
        source.seen[2],
        ("c2__A=1".to_string(), 1, vec![0, 1, 2], false),
        "the source sees the cell's repeats so far"
    );
    assert!(!rd.root.join("cells").join(".c2__A=1.previous").exists());

    // The same units again (a resume): every unit is on disk, no engine starts.
    let before = started.borrow().len();
    let mut again = Units {
        cells: p.cells.clone(),
        units: plan_units.into_iter().collect(),
        seen: Vec::new(),
    };
    let mut s2 = ExecuteSummary::default();
    let mut m2 = rd.read_manifest().unwrap();
    run_units(
        target,
        &mut m2,
        &mut backend(&started),
        &mut again,
        &Cancel::new(),
        ExecuteOptions::default(),
        &mut SweepProgress::new(0, true),
        &mut s2,
    )
    .unwrap();
    assert_eq!((s2.completed, s2.already_complete), (0, 4));
    assert_eq!(started.borrow().len(), before);
    assert!(again.seen.iter().all(|s| s.3));
}

#[test]
fn interleaved_rounds_resume_mid_round_without_rerunning_a_finished_cell_round() {
    use super::rounds::{Order, Schedule};
    let dir = tempfile::tempdir().unwrap();
    let (rd, mut m, p, run) = setup(dir.path());
    let cells: Vec<&Cell> = p.cells.iter().collect();
    let schedule = Schedule::new(Order::Interleaved, &cells, run.repeats, run.seed);
    let expected: Vec<String> = schedule.rounds.concat();
    m.schedule = Some(schedule);
    let started = Rc::new(RefCell::new(Vec::new()));
    let stop = Cancel::new();
    // Ctrl-C while the 6th unit runs: round 0 (4 units) and one unit of round 1 are done.
    let mut b = Backend {
        skip: "none",
        fail: "none",
        stop_at: Some(6),
        stop: Some(stop.clone()),
        started: started.clone(),
    };
    let target = SweepTarget {
        dir: &rd,
        plan: &p,
        run: &run,
    };
    let s = execute(
        target,
        &mut m,
        &mut b,
        &stop,
        ExecuteOptions::default(),
        &mut SweepProgress::new(8, true),
    )
    .unwrap();
    assert!(s.interrupted);
    assert_eq!(*started.borrow(), expected[..6], "the recorded round order");
    // Round 0 of every cell is on disk, with its round stamped.
    for name in &expected[..4] {
        let stats = rd.read_stats(name).unwrap();
        assert_eq!(stats.repeats[0].round, Some(0), "{name}");
    }
    let rd2 = RunDir::open(&rd.root).unwrap();
    let mut m2 = rd2.read_manifest().unwrap();
    assert_eq!(m2.schedule.as_ref().unwrap().order, Order::Interleaved);
    let s2 = execute(
        SweepTarget {
            dir: &rd2,
            plan: &p,
            run: &run,
        },
        &mut m2,
        &mut Backend {
            skip: "none",
            fail: "none",
            stop_at: None,
            stop: None,
            started: started.clone(),
        },
        &Cancel::new(),
        ExecuteOptions::default(),
        &mut SweepProgress::new(8, true),
    )
    .unwrap();
    assert!(!s2.interrupted && s2.pending == 0, "{s2:?}");
    // The resume ran only the interrupted unit and the two after it: no finished (cell, round)
    // ran twice.
    assert_eq!(started.borrow()[6..], expected[5..]);
    for name in &expected[..4] {
        let stats = rd2.read_stats(name).unwrap();
        let rounds: Vec<Option<u32>> = stats.repeats.iter().map(|r| r.round).collect();
        assert_eq!(rounds, vec![Some(0), Some(1)], "{name}");
    }
    assert!(rd2
        .read_manifest()
        .unwrap()
        .cells
        .iter()
        .all(|c| c.status == CellStatus::Completed));
}

/// Set the noise flags of every repeat on disk: `flagged(cell, repeat)` → flags.
fn inject_flags(rd: &RunDir, flagged: &dyn Fn(&str, u64) -> Vec<&'static str>) {
    for entry in std::fs::read_dir(rd.root.join("cells")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let path = dir.join("stats.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for r in v["repeats"].as_array_mut().unwrap() {
            let i = r["repeat"].as_u64().unwrap();
            r["noise"]["flags"] = serde_json::json!(flagged(&name, i));
        }
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
}

#[test]
fn a_failed_re_measurement_keeps_the_original_and_a_later_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rd, mut m, p, run) = setup(dir.path());
    let started = Rc::new(RefCell::new(Vec::new()));
    let target = SweepTarget {
        dir: &rd,
        plan: &p,
        run: &run,
    };
    let mut b = Backend {
        skip: "A=2",
        fail: "none",
        stop_at: None,
        stop: None,
        started: started.clone(),
    };
    // One invocation of the loop (a resume of the same directory), logging the engines started.
    let run_once = |m: &mut Manifest, b: &mut Backend| {
        started.borrow_mut().clear();
        execute(
            target,
            m,
            b,
            &Cancel::new(),
            ExecuteOptions::default(),
            &mut SweepProgress::new(4, true),
        )
        .unwrap()
    };
    run_once(&mut m, &mut b);
    // Flag repeat 1 of A=1 twice (steal+load) and repeat 0 of A=4 once; nothing else.
    inject_flags(
        &rd,
        &|name, r| match (name.contains("A=1"), name.contains("A=4"), r) {
            (true, _, 1) => vec!["steal", "load"],
            (_, true, 0) => vec!["steal"],
            _ => vec![],
        },
    );
    let mut schedule = crate::execute::rounds::Schedule::new(
        crate::execute::rounds::Order::Sequential,
        &[],
        0,
        run.seed,
    );
    schedule.rerun_noisy = Some(1);
    m.schedule = Some(schedule);
    let a1 = rd.read_stats("c2__A=1").unwrap();

    // The engine of A=1 now fails: the one re-measurement allowed (most flags first: A=1
    // repeat 1) fails, the original stays, the cell stays completed.
    b.fail = "A=1";
    let s = run_once(&mut m, &mut b);
    assert_eq!((s.remeasured, s.rerun_failed, s.completed), (0, 1, 0));
    assert_eq!(s.exit_code(), 0, "the cells are intact");
    assert_eq!(*started.borrow(), ["c2__A=1"]);
    assert_eq!(rd.read_stats("c2__A=1").unwrap(), a1, "original kept");
    let on_disk = rd.read_manifest().unwrap();
    assert_eq!(on_disk.cells[0].status, CellStatus::Completed);
    let reruns = &on_disk.schedule.as_ref().unwrap().reruns;
    assert_eq!(reruns.len(), 1);
    assert_eq!(reruns[0].outcome, super::rerun::RerunOutcome::Failed);
    assert_eq!((reruns[0].cell.as_str(), reruns[0].repeat), ("c2__A=1", 1));
    assert!(reruns[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("scripted failure"));

    // A later invocation tries it again (a failure does not use up the limit) and succeeds.
    b.fail = "none";
    let s = run_once(&mut m, &mut b);
    assert_eq!((s.remeasured, s.rerun_failed), (1, 0));
    assert_eq!(*started.borrow(), ["c2__A=1"]);
    let after = rd.read_stats("c2__A=1").unwrap();
    assert_eq!(after.repeats.len(), 2);
    let original = after.repeats[1].superseded.as_deref().unwrap();
    assert_eq!(original, &a1.repeats[1], "the flagged original, kept whole");
    assert!(after.repeats[0].superseded.is_none());
    assert_eq!(after.aggregate.remeasured_repeats, vec![1]);
    assert_eq!(after.repeats[0], a1.repeats[0], "other repeats untouched");

    // The limit (1) is used: nothing more runs, A=4's flagged repeat stays. A manifest that
    // lost the record (the process died between the cell and the manifest) gets it back from
    // the cell's files.
    m.schedule
        .as_mut()
        .unwrap()
        .reruns
        .retain(|r| r.outcome == super::rerun::RerunOutcome::Failed);
    let s = run_once(&mut m, &mut b);
    assert_eq!(s.remeasured, 0);
    assert!(started.borrow().is_empty());
    let reruns = rd.read_manifest().unwrap().schedule.unwrap().reruns;
    assert_eq!(reruns.len(), 2, "{reruns:?}");
    let back = &reruns[1];
    assert_eq!(back.outcome, super::rerun::RerunOutcome::Remeasured);
    assert_eq!((back.cell.as_str(), back.repeat), ("c2__A=1", 1));
    assert_eq!(
        back.flags_before,
        [
            crate::noise::NoiseFlag::Steal,
            crate::noise::NoiseFlag::Load
        ]
    );
}
