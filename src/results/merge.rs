//! `merge`: join the result directories of several shards (or several partial runs of one sweep)
//! into a new run directory. Directories must be the same experiment — preset (by meaning), run
//! settings, workload, `--set` knobs, knob sources and sweep — and every cell must be whole; a
//! cell complete in two directories is an error (it would be counted twice).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    io, json_differences, preset_meaning_differs, validate_cell, write_atomic, Manifest,
    ResultsError, RunDir, StatsFile, CELLS_DIR, STATS_FILE,
};
use crate::measure::CellStatus;
use crate::report;

/// What `merge` produced.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    /// The new run directory.
    pub run_dir: RunDir,
    /// Cells in the merged manifest.
    pub cells: usize,
    /// Of which completed.
    pub completed: usize,
    /// Cells of the full plan (from the manifests).
    pub planned_cells: usize,
}

/// Merge `dirs` into a new run directory under `results_root`.
///
/// Every input is checked fully before anything is written: it must be a run directory not in
/// use by a writer, of the same experiment as the first (same preset meaning, run settings,
/// workload, `--set` knobs, knob sources and sweep — only the cells may differ), and every cell
/// must agree with its status ([`super::validate_cell`]). Errors name the *source* file. The
/// output is built as `.<run_id>.partial/` and renamed into place at the end, so a failed merge
/// leaves nothing behind.
pub fn merge(dirs: &[PathBuf], results_root: &Path) -> Result<MergeReport, ResultsError> {
    let mut inputs: Vec<(RunDir, Manifest)> = Vec::new();
    let mut locks = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for d in dirs {
        let rd = RunDir::open(d)?;
        let canonical = std::fs::canonicalize(d).map_err(io("resolve", d))?;
        if !seen.insert(canonical) {
            return Err(ResultsError::Mismatch {
                path: d.display().to_string(),
                reason: "the directory is given twice".into(),
            });
        }
        locks.push(rd.lock()?);
        let m = rd.read_manifest()?;
        inputs.push((rd, m));
    }
    let Some((first_dir, first)) = inputs.first() else {
        return Err(ResultsError::Mismatch {
            path: String::new(),
            reason: "no directories given".into(),
        });
    };
    let (first_dir, first) = (first_dir.clone(), first.clone());
    for (rd, m) in &inputs[1..] {
        if let Some(what) = experiment_difference(&first, m) {
            return Err(ResultsError::Mismatch {
                path: rd.root.display().to_string(),
                reason: format!(
                    "it is not the same experiment as `{}`: {what}; only the swept cells may differ",
                    first_dir.root.display()
                ),
            });
        }
    }

    // Validate every cell of every input before writing anything.
    let mut input_stats: Vec<BTreeMap<String, StatsFile>> = Vec::new();
    for (rd, m) in &inputs {
        let mut stats = BTreeMap::new();
        for c in &m.cells {
            if let Some(s) = validate_cell(rd, c)? {
                stats.insert(c.key.clone(), s);
            }
        }
        input_stats.push(stats);
    }

    // Union of cells by key: a completed entry wins over any other status.
    let mut chosen: BTreeMap<String, (usize, crate::results::CellEntry)> = BTreeMap::new();
    for (i, (rd, m)) in inputs.iter().enumerate() {
        for c in &m.cells {
            match chosen.get(&c.key) {
                Some((j, prev))
                    if prev.status == CellStatus::Completed
                        && c.status == CellStatus::Completed =>
                {
                    return Err(ResultsError::Mismatch {
                        path: rd.root.display().to_string(),
                        reason: format!(
                            "cell `{}` is complete in both this directory and `{}`; merge one of them",
                            c.name,
                            inputs[*j].0.root.display()
                        ),
                    });
                }
                Some((_, prev)) if prev.status == CellStatus::Completed => {}
                Some((_, prev))
                    if c.status == CellStatus::Pending && prev.status != CellStatus::Pending => {}
                _ => {
                    chosen.insert(c.key.clone(), (i, c.clone()));
                }
            }
        }
    }

    let ids: Vec<&str> = inputs.iter().map(|(rd, _)| rd.run_id.as_str()).collect();
    let run_id = RunDir::new_run_id(&format!("merge:{}", ids.join(",")));
    std::fs::create_dir_all(results_root).map_err(io("create directory", results_root))?;
    let partial = results_root.join(format!(".{run_id}.partial"));
    let final_root = results_root.join(&run_id);
    let built = build(
        &inputs,
        &input_stats,
        &chosen,
        &first,
        RunDir {
            root: partial.clone(),
            run_id: run_id.clone(),
        },
    );
    let manifest = match built.and_then(|m| {
        std::fs::rename(&partial, &final_root).map_err(io("rename into", &final_root))?;
        super::sync_dir(results_root)?;
        Ok(m)
    }) {
        Ok(m) => m,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(err);
        }
    };
    drop(locks);
    Ok(MergeReport {
        completed: manifest
            .cells
            .iter()
            .filter(|c| c.status == CellStatus::Completed)
            .count(),
        cells: manifest.cells.len(),
        planned_cells: manifest.sweep.planned_cells,
        run_dir: RunDir {
            root: final_root,
            run_id,
        },
    })
}

/// Write the merged directory into `out` (the partial directory).
fn build(
    inputs: &[(RunDir, Manifest)],
    input_stats: &[BTreeMap<String, StatsFile>],
    chosen: &BTreeMap<String, (usize, crate::results::CellEntry)>,
    first: &Manifest,
    out: RunDir,
) -> Result<Manifest, ResultsError> {
    std::fs::create_dir(&out.root).map_err(io("create directory", &out.root))?;
    std::fs::create_dir(out.root.join(CELLS_DIR)).map_err(io("create directory", &out.root))?;
    let mut stats: BTreeMap<String, StatsFile> = BTreeMap::new();
    let mut cells = Vec::new();
    for (i, entry) in chosen.values() {
        let src = inputs[*i].0.cell_dir(&entry.name);
        if src.is_dir() {
            copy_cell(&src, &out, &entry.name)?;
        }
        if let Some(s) = input_stats[*i].get(&entry.key) {
            stats.insert(entry.key.clone(), s.clone());
        }
        cells.push(entry.clone());
    }
    cells.sort_by_key(|c| c.index);

    let mut manifest = first.clone();
    manifest.run_id = out.run_id.clone();
    manifest.sweep.shard = None;
    manifest.engine = inputs.iter().find_map(|(_, m)| m.engine.clone());
    manifest.started_at = inputs
        .iter()
        .map(|(_, m)| m.started_at.clone())
        .min()
        .unwrap_or_default();
    manifest.finished_at = if inputs.iter().all(|(_, m)| m.finished_at.is_some()) {
        inputs
            .iter()
            .filter_map(|(_, m)| m.finished_at.clone())
            .max()
    } else {
        None
    };
    manifest.cells = cells;
    out.write_manifest(&manifest)?;
    let rows = report::summary_rows(&manifest, &stats);
    let csv = report::summary_csv(&manifest.sweep.knob_names, &rows).map_err(|e| {
        ResultsError::Serialize {
            path: out.root.join(super::SUMMARY_CSV).display().to_string(),
            message: e.to_string(),
        }
    })?;
    out.write_summaries(&csv, &report::summary_markdown(&manifest, &rows))?;
    Ok(manifest)
}

/// What makes `b` a different experiment from `a`, in words; `None` when only cells differ.
fn experiment_difference(a: &Manifest, b: &Manifest) -> Option<String> {
    let diff = |x: serde_json::Value, y: serde_json::Value| -> Option<String> {
        let d = json_differences(&x, &y);
        (!d.is_empty()).then(|| d.join("; "))
    };
    if let Some(how) = preset_meaning_differs(&a.preset.content, &b.preset.content) {
        return Some(format!("the preset differs ({how})"));
    }
    if let Some(how) = diff(json(&a.sweep.set), json(&b.sweep.set)) {
        return Some(format!("the `--set` knobs differ ({how})"));
    }
    if a.identity != b.identity {
        return Some(match (&a.identity, &b.identity) {
            (Some(x), Some(y)) => format!(
                "the knob sources differ ({})",
                diff(json(x), json(y)).unwrap_or_default()
            ),
            _ => "the knob sources (environment, --hardware) are recorded in only one of them (written by an older ferrum-bench), so they cannot be compared".into(),
        });
    }
    if let Some(how) = diff(json(&a.run), json(&b.run)) {
        return Some(format!("the run settings differ ({how})"));
    }
    if a.workload.workload_hash != b.workload.workload_hash {
        return Some(format!(
            "the workload differs ({} → {})",
            a.workload.workload_hash, b.workload.workload_hash
        ));
    }
    let sweep_shape = |m: &Manifest| {
        serde_json::json!({
            "mode": m.sweep.mode,
            "knob_names": m.sweep.knob_names,
            "planned_cells": m.sweep.planned_cells,
            "excluded": m.sweep.excluded,
            "sweep_file": m.sweep.sweep_file,
        })
    };
    if let Some(how) = diff(sweep_shape(a), sweep_shape(b)) {
        return Some(format!("the sweep differs ({how})"));
    }
    None
}

/// A value as JSON for comparison (`Null` on a serialisation failure, which then compares
/// unequal to any real value).
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Copy a cell directory file by file into `out`, through the same partial-then-rename path as
/// `write_cell`, with `stats.json` last.
fn copy_cell(src: &Path, out: &RunDir, name: &str) -> Result<(), ResultsError> {
    let partial = out.root.join(CELLS_DIR).join(format!(".{name}.partial"));
    std::fs::create_dir_all(&partial).map_err(io("create directory", &partial))?;
    let mut names: Vec<String> = std::fs::read_dir(src)
        .map_err(io("read directory", src))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort_by_key(|n| (n == STATS_FILE, n.clone()));
    for n in names {
        let from = src.join(&n);
        let bytes = std::fs::read(&from).map_err(io("read", &from))?;
        write_atomic(&partial.join(&n), &bytes)?;
    }
    let dest = out.cell_dir(name);
    std::fs::rename(&partial, &dest).map_err(io("rename into", &dest))
}
