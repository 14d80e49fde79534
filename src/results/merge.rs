//! `merge`: join the result directories of several shards (or several partial runs of one sweep)
//! into a new run directory. Directories must share the preset file hash, the workload hash and
//! the run settings; a cell complete in two directories is an error (it would be counted twice).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{io, write_atomic, Manifest, ResultsError, RunDir, StatsFile, CELLS_DIR, STATS_FILE};
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
pub fn merge(dirs: &[PathBuf], results_root: &Path) -> Result<MergeReport, ResultsError> {
    let mut inputs: Vec<(RunDir, Manifest)> = Vec::new();
    for d in dirs {
        let rd = RunDir::open(d)?;
        let m = rd.read_manifest()?;
        inputs.push((rd, m));
    }
    let Some((_, first)) = inputs.first() else {
        return Err(ResultsError::Mismatch {
            path: String::new(),
            reason: "no directories given".into(),
        });
    };
    let first = first.clone();
    for (rd, m) in &inputs[1..] {
        let mismatch = |what: &str, a: &str, b: &str| ResultsError::Mismatch {
            path: rd.root.display().to_string(),
            reason: format!(
                "{what} differs from `{}`: `{b}` vs `{a}`",
                inputs[0].0.root.display()
            ),
        };
        if m.preset.hash != first.preset.hash {
            return Err(mismatch("preset hash", &first.preset.hash, &m.preset.hash));
        }
        if m.workload.workload_hash != first.workload.workload_hash {
            return Err(mismatch(
                "workload hash",
                &first.workload.workload_hash,
                &m.workload.workload_hash,
            ));
        }
        if m.run != first.run {
            return Err(mismatch(
                "run settings",
                &format!("{:?}", first.run),
                &format!("{:?}", m.run),
            ));
        }
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
                            "cell `{}` is complete in both this directory and `{}`",
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
    let out = RunDir::create(results_root, &run_id)?;
    let mut stats: BTreeMap<String, StatsFile> = BTreeMap::new();
    let mut cells = Vec::new();
    for (i, entry) in chosen.values() {
        let src = inputs[*i].0.cell_dir(&entry.name);
        if src.is_dir() {
            copy_cell(&src, &out, &entry.name)?;
        }
        if entry.status == CellStatus::Completed {
            stats.insert(entry.key.clone(), out.read_stats(&entry.name)?);
        }
        cells.push(entry.clone());
    }
    cells.sort_by_key(|c| c.index);

    let mut manifest = first.clone();
    manifest.run_id = run_id;
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
        ResultsError::Corrupt {
            path: out.root.display().to_string(),
            message: format!("cannot render summary.csv: {e}"),
        }
    })?;
    out.write_summaries(&csv, &report::summary_markdown(&manifest, &rows))?;
    Ok(MergeReport {
        completed: manifest
            .cells
            .iter()
            .filter(|c| c.status == CellStatus::Completed)
            .count(),
        cells: manifest.cells.len(),
        planned_cells: manifest.sweep.planned_cells,
        run_dir: out,
    })
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
