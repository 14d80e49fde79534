//! The results directory: `results/<run_id>/` with `manifest.json`, `summary.csv`, `summary.md`
//! and `cells/<cell>/{effective_config.json, decision_trace.jsonl, requests.jsonl, stats.json,
//! steps.jsonl}` (schemas in README "Results layout").
//!
//! Every file is written atomically: a temp file in the same directory, flushed, then renamed. A
//! cell is written as a whole: its files go to `cells/.<name>.partial/` which is then renamed to
//! `cells/<name>/`, so a cell directory either is complete or does not exist — Ctrl-C can never
//! leave half a cell. `stats.json` present ⇔ the cell completed.

mod files;
mod host;
mod merge;

pub use files::{
    CellEntry, CellIdentity, CellWorkload, HarnessInfo, HostInfo, Manifest, PresetInfo, SeedsInfo,
    StatsFile, SweepInfo, WorkloadInfo, SCHEMA_VERSION,
};
pub use host::{harness_info, host_info, now_rfc3339};
pub use merge::{merge, MergeReport};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::measure::CellMeasurement;
use crate::sweep::{Cell, Plan, RunSettings, Shard};
use crate::workload::{hex, rng::repeat_seed};

/// `manifest.json`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// `stats.json`.
pub const STATS_FILE: &str = "stats.json";
/// `summary.csv`.
pub const SUMMARY_CSV: &str = "summary.csv";
/// `summary.md`.
pub const SUMMARY_MD: &str = "summary.md";
/// Directory holding the cells.
pub const CELLS_DIR: &str = "cells";

/// Errors reading or writing result directories (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// File system failure on a path.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A result file does not parse.
    #[error("corrupt result file `{path}`: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A result file has an unsupported schema version.
    #[error("unsupported schema_version {found} in `{path}`: this ferrum-bench reads version {SCHEMA_VERSION}")]
    Schema {
        /// The file.
        path: String,
        /// The version found.
        found: u32,
    },
    /// Directories that cannot be merged.
    #[error("cannot merge `{path}`: {reason}")]
    Mismatch {
        /// The offending directory.
        path: String,
        /// Why.
        reason: String,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError {
    let path = path.display().to_string();
    move |source| ResultsError::Io {
        action,
        path,
        source,
    }
}

/// Write `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("rename into", path))
}

/// Pretty JSON with a trailing newline.
pub fn to_json_pretty<T: Serialize>(value: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// `"sha256:"` + hex of bytes (preset file hashes).
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// A run's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    /// `results/<run_id>`.
    pub root: PathBuf,
    /// The run id (directory name).
    pub run_id: String,
}

/// The files of one cell, as handed to [`RunDir::write_cell`].
#[derive(Debug, Clone, Copy)]
pub struct CellFiles<'a> {
    /// `effective_config.json` content (the resolver's document, pretty, newline-terminated).
    pub effective_config_json: &'a str,
    /// `decision_trace.jsonl` content.
    pub decision_trace_jsonl: &'a str,
    /// The measurement and its stats document; `None` for a failed cell (config files only).
    pub result: Option<(&'a StatsFile, &'a CellMeasurement)>,
}

impl RunDir {
    /// A new run id: UTC `YYYYMMDDTHHMMSSZ` + `-` + 8 hex chars of SHA-256(`material` + time in ns).
    pub fn new_run_id(material: &str) -> String {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let h = hex(&Sha256::digest(format!("{material}\n{nanos}").as_bytes()));
        format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &h[..8])
    }

    /// Create `results_root/<run_id>/cells/`. Fails if the run directory already exists.
    pub fn create(results_root: &Path, run_id: &str) -> Result<RunDir, ResultsError> {
        let root = results_root.join(run_id);
        std::fs::create_dir_all(results_root).map_err(io("create directory", results_root))?;
        std::fs::create_dir(&root).map_err(io("create directory", &root))?;
        std::fs::create_dir(root.join(CELLS_DIR)).map_err(io("create directory", &root))?;
        Ok(RunDir {
            root,
            run_id: run_id.to_string(),
        })
    }

    /// Open an existing run directory (it must hold `manifest.json`).
    pub fn open(path: &Path) -> Result<RunDir, ResultsError> {
        let manifest = path.join(MANIFEST_FILE);
        if !manifest.is_file() {
            return Err(ResultsError::Corrupt {
                path: path.display().to_string(),
                message: format!("no {MANIFEST_FILE}; not a ferrum-bench run directory"),
            });
        }
        let run_id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(RunDir {
            root: path.to_path_buf(),
            run_id,
        })
    }

    /// `cells/<name>`.
    pub fn cell_dir(&self, name: &str) -> PathBuf {
        self.root.join(CELLS_DIR).join(name)
    }

    /// Read and version-check `manifest.json`.
    pub fn read_manifest(&self) -> Result<Manifest, ResultsError> {
        read_versioned(&self.root.join(MANIFEST_FILE), |m: &Manifest| {
            m.schema_version
        })
    }

    /// Write `manifest.json` atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), ResultsError> {
        write_atomic(
            &self.root.join(MANIFEST_FILE),
            to_json_pretty(manifest).as_bytes(),
        )
    }

    /// Read a cell's `stats.json`.
    pub fn read_stats(&self, name: &str) -> Result<StatsFile, ResultsError> {
        read_versioned(&self.cell_dir(name).join(STATS_FILE), |s: &StatsFile| {
            s.schema_version
        })
    }

    /// Write a cell as a whole (see the module doc). Replaces an earlier incomplete directory of
    /// the same name (a failed or interrupted attempt); refuses to replace a complete one.
    pub fn write_cell(&self, name: &str, files: CellFiles<'_>) -> Result<(), ResultsError> {
        let final_dir = self.cell_dir(name);
        if final_dir.join(STATS_FILE).is_file() {
            return Err(ResultsError::Mismatch {
                path: final_dir.display().to_string(),
                reason: "the cell is already complete; refusing to overwrite it".into(),
            });
        }
        let partial = self.root.join(CELLS_DIR).join(format!(".{name}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io("remove", &partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(io("create directory", &partial))?;
        write_atomic(
            &partial.join("effective_config.json"),
            files.effective_config_json.as_bytes(),
        )?;
        write_atomic(
            &partial.join("decision_trace.jsonl"),
            files.decision_trace_jsonl.as_bytes(),
        )?;
        if let Some((stats, m)) = files.result {
            let mut requests = String::new();
            let mut steps = String::new();
            for r in &m.repeats {
                for rec in &r.records {
                    requests.push_str(&serde_json::to_string(rec).unwrap_or_default());
                    requests.push('\n');
                }
                for s in &r.steps {
                    let mut v = serde_json::json!({ "repeat": r.summary.repeat });
                    if let (Some(obj), Ok(serde_json::Value::Object(step))) =
                        (v.as_object_mut(), serde_json::to_value(s))
                    {
                        obj.extend(step);
                    }
                    steps.push_str(&v.to_string());
                    steps.push('\n');
                }
            }
            write_atomic(&partial.join("requests.jsonl"), requests.as_bytes())?;
            if !steps.is_empty() {
                write_atomic(&partial.join("steps.jsonl"), steps.as_bytes())?;
            }
            write_atomic(&partial.join(STATS_FILE), to_json_pretty(stats).as_bytes())?;
        }
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io("remove", &final_dir))?;
        }
        std::fs::rename(&partial, &final_dir).map_err(io("rename into", &final_dir))
    }

    /// Keys (→ names) of cells whose `stats.json` exists, parses and has the current schema:
    /// the cells `--resume` skips.
    pub fn completed_cell_keys(&self) -> Result<BTreeMap<String, String>, ResultsError> {
        let cells = self.root.join(CELLS_DIR);
        let mut done = BTreeMap::new();
        let entries = match std::fs::read_dir(&cells) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
            Err(e) => return Err(io("read directory", &cells)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("read directory", &cells))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().join(STATS_FILE).is_file() {
                continue;
            }
            if let Ok(stats) = self.read_stats(&name) {
                done.insert(stats.cell.key, name);
            }
        }
        Ok(done)
    }

    /// The `stats.json` of every complete cell, by cell key.
    pub fn completed_stats(&self) -> Result<BTreeMap<String, StatsFile>, ResultsError> {
        self.completed_cell_keys()?
            .into_iter()
            .map(|(key, name)| self.read_stats(&name).map(|s| (key, s)))
            .collect()
    }

    /// Write `summary.csv` and `summary.md` (rendered by `report`).
    pub fn write_summaries(&self, csv: &str, markdown: &str) -> Result<(), ResultsError> {
        write_atomic(&self.root.join(SUMMARY_CSV), csv.as_bytes())?;
        write_atomic(&self.root.join(SUMMARY_MD), markdown.as_bytes())
    }
}

fn read_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    version: fn(&T) -> u32,
) -> Result<T, ResultsError> {
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    // Check the version before the full parse so a newer file gets the clearer error.
    let raw: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ResultsError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    let found = raw
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0) as u32;
    if found != SCHEMA_VERSION {
        return Err(ResultsError::Schema {
            path: path.display().to_string(),
            found,
        });
    }
    let value: T = serde_json::from_value(raw).map_err(|e| ResultsError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    debug_assert_eq!(version(&value), SCHEMA_VERSION);
    Ok(value)
}

impl PresetInfo {
    /// Describe a preset file from its name, path and content.
    pub fn new(name: &str, path: &Path, content: &str) -> PresetInfo {
        PresetInfo {
            name: name.to_string(),
            path: path.display().to_string(),
            hash: sha256_tagged(content.as_bytes()),
            content: content.to_string(),
        }
    }
}

impl Manifest {
    /// A fresh manifest for `cells` (all `pending`), stamped with harness, host and start time.
    /// `workload_hash` is `workload::cell_workload_hash` of the run's workload.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site in phase 2; a builder would only rename the arguments"
    )]
    pub fn new(
        run_id: &str,
        preset: PresetInfo,
        run: &RunSettings,
        plan: &Plan,
        cells: &[&Cell],
        shard: Option<Shard>,
        sweep_file: Option<String>,
        workload_hash: String,
    ) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.to_string(),
            harness: harness_info(),
            host: HostInfo {
                gpus: crate::hardware::gpus_for_manifest(),
                ..host_info()
            },
            engine: None,
            preset,
            run: run.clone(),
            sweep: SweepInfo {
                mode: plan.mode,
                knob_names: plan.knob_names.clone(),
                set: plan.set.clone(),
                planned_cells: plan.cells.len(),
                excluded: plan.excluded,
                shard,
                sweep_file,
            },
            workload: WorkloadInfo {
                name: run.workload.name(),
                spec: run.workload.clone(),
                workload_hash,
            },
            seeds: SeedsInfo {
                base_seed: run.seed,
                repeat_seeds: (0..run.repeats).map(|r| repeat_seed(run.seed, r)).collect(),
            },
            started_at: now_rfc3339(),
            finished_at: None,
            cells: cells.iter().map(|c| CellEntry::pending(c)).collect(),
        }
    }

    /// Check that `--resume` continues the same experiment: same preset file, workload and run
    /// settings as recorded in this manifest.
    pub fn check_resumable(
        &self,
        dir: &Path,
        preset: &PresetInfo,
        run: &RunSettings,
        workload_hash: &str,
    ) -> Result<(), ResultsError> {
        let mismatch = |what: &str, was: &str, now: &str| {
            ResultsError::Mismatch {
            path: dir.display().to_string(),
            reason: format!("cannot resume: {what} changed (recorded `{was}`, now `{now}`); start a new run instead"),
        }
        };
        if self.preset.hash != preset.hash {
            return Err(mismatch("the preset file", &self.preset.hash, &preset.hash));
        }
        if self.workload.workload_hash != workload_hash {
            return Err(mismatch(
                "the workload",
                &self.workload.workload_hash,
                workload_hash,
            ));
        }
        if &self.run != run {
            return Err(mismatch(
                "the run settings",
                &format!("{:?}", self.run),
                &format!("{run:?}"),
            ));
        }
        Ok(())
    }

    /// Set a cell's status and reason (by key); false when the key is unknown.
    pub fn set_status(
        &mut self,
        key: &str,
        status: crate::measure::CellStatus,
        reason: Option<String>,
    ) -> bool {
        match self.cells.iter_mut().find(|c| c.key == key) {
            Some(c) => {
                c.status = status;
                c.reason = reason;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
