//! Reading a run directory into what the report draws, through `results::RunDir`'s readers only.

use std::path::Path;

use crate::results::{CellEntry, Manifest, ResultsError, RunDir, StatsFile, StepLine};

/// A cell as the report sees it.
#[derive(Debug, Clone)]
pub struct CellData {
    /// The manifest's line for the cell (name, key, knobs, load, status, reason).
    pub entry: CellEntry,
    /// `stats.json` of a completed cell.
    pub stats: Option<StatsFile>,
    /// Latency samples of successful requests, all repeats pooled: TTFT, TPOT, ITL (ms).
    pub ttft_ms: Vec<f64>,
    /// TPOT samples (ms).
    pub tpot_ms: Vec<f64>,
    /// ITL samples (ms).
    pub itl_ms: Vec<f64>,
    /// `steps.jsonl`, when recorded.
    pub steps: Option<Vec<StepLine>>,
    /// `effective_config.json`, when the cell was resolved and ran (or failed).
    pub effective_config: Option<serde_json::Value>,
}

/// A run as the report sees it: the manifest and its cells in plan order.
#[derive(Debug, Clone)]
pub struct RunData {
    /// `manifest.json`.
    pub manifest: Manifest,
    /// Every manifest cell, sorted by plan index.
    pub cells: Vec<CellData>,
    /// `tune.json` of a tune run.
    pub tune: Option<super::tune::TuneData>,
}

/// Read a run directory. Files of cells that did not complete are read when present.
pub fn load_run(path: &Path) -> Result<RunData, ResultsError> {
    let dir = RunDir::open(path)?;
    let manifest = dir.read_manifest()?;
    let mut entries = manifest.cells.clone();
    entries.sort_by_key(|c| c.index);
    let mut cells = Vec::with_capacity(entries.len());
    for entry in entries {
        // `partial` cells hold a stats.json with the repeats measured so far.
        let completed = entry.has_stats();
        let stats = if completed {
            Some(dir.read_stats(&entry.name)?)
        } else {
            None
        };
        let (mut ttft_ms, mut tpot_ms, mut itl_ms) = (Vec::new(), Vec::new(), Vec::new());
        let steps = if completed {
            for r in dir.read_requests(&entry.name)?.unwrap_or_default() {
                if !r.is_ok() {
                    continue;
                }
                ttft_ms.extend(r.ttft_ms);
                tpot_ms.extend(r.tpot_ms);
                itl_ms.extend(r.itl_ms);
            }
            dir.read_steps(&entry.name)?
        } else {
            None
        };
        let effective_config = dir.read_effective_config(&entry.name)?;
        cells.push(CellData {
            entry,
            stats,
            ttft_ms,
            tpot_ms,
            itl_ms,
            steps,
            effective_config,
        });
    }
    let tune = super::tune::load_tune(path)?;
    Ok(RunData {
        manifest,
        cells,
        tune,
    })
}
