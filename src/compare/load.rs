//! The two sides of `compare`: what a path holds and how it becomes cells with per-metric
//! samples. Accepted inputs:
//!
//! - a ferrum-bench **run directory** (`manifest.json`; every completed cell, cells not measured
//!   are listed with their status), a **cell directory** (`stats.json`, plus
//!   `effective_config.json` for drift) or a **`stats.json`** file;
//! - a Ferrum **`BenchReport`** JSON (`ferrum bench-serve` output): every metric, from
//!   `repeat_metrics` when present, else from `{mean, stddev}` (no std below 3 repeats);
//! - a **vLLM `bench serve`** result JSON (`--save-result`), one run per file — or several runs
//!   as a JSON array or one object per line (`--append-result`), which become repeats.
//!   Throughputs, goodput (when recorded) and TTFT/TPOT/ITL/E2E median and p99 compare.
//!
//! Foreign inputs carry no workload hash or effective config: the pair is assumed comparable
//! (and says so) and no drift is shown.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::engine::EngineInfo;
use crate::metric::METRICS;
use crate::results::read::{
    is_cell_dir, is_run_dir, read_json, read_manifest_path, read_stats_path, read_text,
};
use crate::results::{ResultsError, StatsFile, CELLS_DIR, MANIFEST_FILE, STATS_FILE};
use crate::stats::Sample;

/// What kind of file a side came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// ferrum-bench results.
    FerrumBench,
    /// Ferrum's `BenchReport`.
    FerrumBenchReport,
    /// vLLM `bench serve` result JSON.
    VllmBenchServe,
}

/// Provenance and origin of a side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideInfo {
    /// The path given.
    pub path: String,
    /// Input format.
    pub format: InputFormat,
    /// Harness version (ferrum-bench results with a manifest).
    pub harness_version: Option<String>,
    /// Harness commit as built (ferrum-bench results with a manifest).
    pub harness_commit: Option<String>,
    /// Engine kind, version and details (ferrum-bench results).
    pub engine: Option<EngineInfo>,
    /// Engine commit when recorded (`EngineInfo.details.commit`, BenchReport `env.commit_sha`).
    pub engine_commit: Option<String>,
}

/// One cell of a side.
#[derive(Debug, Clone, PartialEq)]
pub struct SideCell {
    /// Cell name.
    pub name: String,
    /// Swept knob values.
    pub knobs: BTreeMap<String, String>,
    /// Load label (`c32`, `r2`).
    pub load_label: String,
    /// Workload hash, when recorded.
    pub workload_hash: Option<String>,
    /// Metric name → sample.
    pub samples: BTreeMap<String, Sample>,
    /// The cell's effective config, when present.
    pub config: Option<Value>,
    /// Engine-path counters ([`super::ENGINE_PATH_COUNTERS`]) averaged over repeats, when the
    /// engine reported them.
    pub engine_path: BTreeMap<String, f64>,
    /// The run the cell belongs to (`manifest.json`'s `run_id`), when read from a run.
    pub run_id: Option<String>,
    /// Metric name → value per interleaved round (index = round, `None` where the cell has no
    /// repeat in it); empty unless every repeat records its round.
    pub rounds: BTreeMap<String, Vec<Option<f64>>>,
}

impl SideCell {
    /// Matching key ([`super::match_key`]).
    pub fn match_key(&self) -> String {
        super::match_key(&self.knobs, &self.load_label)
    }

    fn from_stats(stats: &StatsFile, config: Option<Value>) -> SideCell {
        let samples = METRICS
            .iter()
            .filter_map(|m| {
                m.aggregate(&stats.aggregate)
                    .map(|a| (m.name.to_string(), Sample::from_aggregate(a)))
            })
            .collect();
        let engine_path = super::ENGINE_PATH_COUNTERS
            .iter()
            .filter_map(|(key, _)| {
                let v: Vec<f64> = stats
                    .repeats
                    .iter()
                    .filter_map(|r| r.counters.get(*key).copied())
                    .collect();
                (!v.is_empty()).then(|| (key.to_string(), v.iter().sum::<f64>() / v.len() as f64))
            })
            .collect();
        let interleaved =
            !stats.repeats.is_empty() && stats.repeats.iter().all(|r| r.round.is_some());
        let rounds = if interleaved {
            METRICS
                .iter()
                .filter_map(|m| {
                    let mut v = Vec::new();
                    for r in &stats.repeats {
                        let i = r.round.unwrap_or(r.repeat) as usize;
                        if v.len() <= i {
                            v.resize(i + 1, None);
                        }
                        v[i] = Some(super::repeat_value(m, r)?);
                    }
                    Some((m.name.to_string(), v))
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        SideCell {
            engine_path,
            run_id: None,
            rounds,
            name: stats.cell.name.clone(),
            knobs: stats.cell.knobs.clone(),
            load_label: stats.cell.load.label(),
            workload_hash: Some(stats.workload.workload_hash.clone()),
            samples,
            config,
        }
    }
}

/// A loaded side.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// Origin and provenance.
    pub info: SideInfo,
    /// Measured cells.
    pub cells: Vec<SideCell>,
    /// Cells of a run that were not measured: name → status and reason.
    pub not_measured: Vec<(String, String)>,
}

fn corrupt(path: &Path, message: impl Into<String>) -> ResultsError {
    ResultsError::Corrupt {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn engine_commit(e: &EngineInfo) -> Option<String> {
    ["commit", "git_commit"]
        .iter()
        .find_map(|k| e.details.get(*k).and_then(Value::as_str).map(String::from))
}

fn optional_config(cell_dir: &Path) -> Result<Option<Value>, ResultsError> {
    let p = cell_dir.join(crate::diff::EFFECTIVE_CONFIG_FILE);
    if p.is_file() {
        read_json(&p).map(Some)
    } else {
        Ok(None)
    }
}

impl Side {
    fn ferrum(path: &Path, engine: Option<EngineInfo>) -> SideInfo {
        SideInfo {
            path: path.display().to_string(),
            format: InputFormat::FerrumBench,
            harness_version: None,
            harness_commit: None,
            engine_commit: engine.as_ref().and_then(engine_commit),
            engine,
        }
    }

    /// Read a side from `path` (see the module doc for what it may be).
    pub fn load(path: &Path) -> Result<Side, ResultsError> {
        if path.is_dir() {
            if is_run_dir(path) {
                return Side::load_run(path);
            }
            if is_cell_dir(path) {
                return Side::load_cell(&path.join(STATS_FILE));
            }
            return Side::load_root(path);
        }
        if !path.exists() {
            return Err(ResultsError::Io {
                action: "read",
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
        let text = read_text(path)?;
        let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(whole) => {
                // One JSON object per line (vLLM --append-result)?
                let lines: Result<Vec<Value>, _> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(serde_json::from_str::<Value>)
                    .collect();
                match lines {
                    Ok(l) if l.len() > 1 => l,
                    _ => return Err(corrupt(path, format!("invalid JSON: {whole}"))),
                }
            }
        };
        let first = docs
            .first()
            .ok_or_else(|| corrupt(path, "empty JSON array"))?;
        if first.get("aggregate").is_some() && first.get("cell").is_some() {
            return Side::load_cell(path);
        }
        if first.get("n_repeats").is_some() && first.get("output_throughput_tps").is_some() {
            return foreign::bench_report(path, first);
        }
        if first.get("output_throughput").is_some() {
            return foreign::vllm(path, &docs);
        }
        Err(corrupt(
            path,
            "unrecognised JSON: expected a ferrum-bench stats.json, a Ferrum BenchReport or a vLLM bench serve result",
        ))
    }

    fn load_cell(stats_path: &Path) -> Result<Side, ResultsError> {
        let stats = read_stats_path(stats_path)?;
        let dir = stats_path.parent().unwrap_or(Path::new("."));
        let mut cell = SideCell::from_stats(&stats, optional_config(dir)?);
        let mut info = Side::ferrum(stats_path, Some(stats.engine.clone()));
        // A cell inside a run directory: take the harness provenance from the run's manifest.
        if let Some(run) = dir.parent().and_then(Path::parent) {
            if run.join(MANIFEST_FILE).is_file() {
                if let Ok(m) = read_manifest_path(run) {
                    cell.run_id = Some(m.run_id);
                    info.harness_version = Some(m.harness.version);
                    info.harness_commit = Some(m.harness.git_commit);
                }
            }
        }
        Ok(Side {
            info,
            cells: vec![cell],
            not_measured: Vec::new(),
        })
    }

    /// A directory holding several run directories (e.g. `nightly.sh`'s interleaved runs of one
    /// side): cells with the same knobs and load are pooled into one sample per metric, as if
    /// their repeats had been one run. Their workload hashes must agree.
    fn load_root(dir: &Path) -> Result<Side, ResultsError> {
        let mut runs: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| ResultsError::Io {
                action: "read directory",
                path: dir.display().to_string(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_run_dir(p))
            .collect();
        runs.sort();
        if runs.is_empty() {
            return Err(corrupt(
                dir,
                "neither a run directory (manifest.json), a complete cell directory (stats.json) nor a directory of run directories",
            ));
        }
        let mut side: Option<Side> = None;
        for run in &runs {
            let next = Side::load_run(run)?;
            let Some(acc) = side.as_mut() else {
                side = Some(next);
                continue;
            };
            acc.not_measured.extend(next.not_measured);
            for cell in next.cells {
                match acc
                    .cells
                    .iter_mut()
                    .find(|c| c.match_key() == cell.match_key())
                {
                    Some(have) => {
                        if have.workload_hash != cell.workload_hash {
                            return Err(corrupt(
                                run,
                                format!("cell `{}` ran a different workload than in the other runs under {}; pool only runs of one preset and seed", cell.name, dir.display()),
                            ));
                        }
                        for (metric, sample) in cell.samples {
                            if let Some(s) = have.samples.get_mut(&metric) {
                                *s = s.pool(&sample);
                            }
                        }
                    }
                    None => acc.cells.push(cell),
                }
            }
        }
        let mut side = side.unwrap_or_else(|| unreachable!("runs is not empty"));
        side.info.path = dir.display().to_string();
        Ok(side)
    }

    fn load_run(run: &Path) -> Result<Side, ResultsError> {
        let manifest = read_manifest_path(run)?;
        let mut cells = Vec::new();
        let mut not_measured = Vec::new();
        let mut engine = manifest.engine.clone();
        for c in &manifest.cells {
            let dir = run.join(CELLS_DIR).join(&c.name);
            let stats_path = dir.join(STATS_FILE);
            let completed = c.status == crate::measure::CellStatus::Completed;
            if completed && !stats_path.is_file() {
                return Err(corrupt(
                    &stats_path,
                    format!(
                        "missing: manifest.json lists cell `{}` as completed",
                        c.name
                    ),
                ));
            }
            if !completed {
                let status = serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                let reason = match &c.reason {
                    Some(r) => format!("{status}: {r}"),
                    None => status,
                };
                not_measured.push((c.name.clone(), reason));
                continue;
            }
            let stats = read_stats_path(&stats_path)?;
            if engine.is_none() {
                engine = Some(stats.engine.clone());
            }
            let mut cell = SideCell::from_stats(&stats, optional_config(&dir)?);
            cell.run_id = Some(manifest.run_id.clone());
            cells.push(cell);
        }
        let mut info = Side::ferrum(run, engine);
        info.harness_version = Some(manifest.harness.version.clone());
        info.harness_commit = Some(manifest.harness.git_commit.clone());
        Ok(Side {
            info,
            cells,
            not_measured,
        })
    }
}

mod foreign;
