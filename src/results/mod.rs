//! The results directory: `results/<run_id>/` with `manifest.json`, `summary.csv`, `summary.md`
//! and `cells/<cell>/{effective_config.json, decision_trace.jsonl, requests.jsonl, stats.json,
//! steps.jsonl}` (schemas in README "Results layout").
//!
//! Every file is written atomically: a temp file in the same directory, flushed, then renamed. A
//! cell is written as a whole: its files go to `cells/.<name>.partial/` which is then renamed to
//! `cells/<name>/`, so a cell directory either is complete or does not exist — Ctrl-C can never
//! leave half a cell. `stats.json` present ⇔ the cell completed.
//!
//! A run directory is born whole: it is built as `.<run_id>.partial/` holding a manifest with
//! every cell `pending`, then renamed into place. Status changes go to an append-only
//! `status.jsonl` (see [`runlog`]) so per-cell bookkeeping is O(1); the manifest is rewritten
//! when the run starts and ends. A writer holds `.lock` (advisory, exclusive) for its lifetime.

mod cells;
mod files;
mod host;
mod identity;
mod merge;
pub mod read;
pub mod runlog;
mod validate;

pub use cells::{StepLine, EFFECTIVE_CONFIG_FILE, REQUESTS_FILE, STEPS_FILE};
pub use files::{
    CellEntry, CellIdentity, CellWorkload, HarnessInfo, HostInfo, Manifest, PresetInfo, SeedsInfo,
    StatsFile, SweepInfo, WorkloadInfo, SCHEMA_VERSION,
};
pub use host::{harness_info, host_info, now_rfc3339};
pub use identity::{json_differences, preset_meaning_differs, RunIdentity};
pub use merge::{merge, MergeReport};
pub use runlog::{RunLock, StatusLine};
pub use validate::validate_cell;

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
    /// A run directory that cannot be resumed as asked.
    #[error("cannot resume `{path}`: {reason}")]
    Resume {
        /// The run directory.
        path: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The path is not a run directory.
    #[error("`{path}` is not a ferrum-bench run directory: {why}")]
    NotRunDir {
        /// The path given.
        path: String,
        /// What is missing.
        why: String,
    },
    /// Another process is writing the run directory.
    #[error("run directory `{path}` is in use by another ferrum-bench process (it holds `{path}/.lock`); wait for it to finish or stop it, then retry")]
    Locked {
        /// The run directory.
        path: String,
    },
    /// A result could not be serialised (never written as file content).
    #[error("cannot serialise `{path}`: {message}")]
    Serialize {
        /// The file that was to be written.
        path: String,
        /// serde's message.
        message: String,
    },
    /// Writing would destroy a complete result.
    #[error("refusing to overwrite `{path}`: {reason}")]
    Overwrite {
        /// The path.
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

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename, then
/// fsync of the directory so the rename itself survives a power loss. On any error the temp
/// file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io("rename into", path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    sync_dir(dir)
}

/// fsync a directory (its entries: renames, creations). A no-op where directories cannot be
/// opened for syncing.
pub fn sync_dir(dir: &Path) -> Result<(), ResultsError> {
    #[cfg(unix)]
    {
        let d = std::fs::File::open(dir).map_err(io("open directory", dir))?;
        d.sync_all().map_err(io("sync directory", dir))?;
    }
    let _ = dir;
    Ok(())
}

/// Pretty JSON with a trailing newline; a serialisation failure is an error naming `path` (the
/// file it was meant for), never file content.
pub fn to_json_pretty<T: Serialize>(value: &T, path: &Path) -> Result<String, ResultsError> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| ResultsError::Serialize {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    s.push('\n');
    Ok(s)
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

    /// Create a run directory born whole: `results_root/.<run_id>.partial/` gets `cells/`, the
    /// lock and `manifest` (every cell `pending`), then is renamed to `results_root/<run_id>/`.
    /// A crash before the rename leaves only a dot-directory; after it, the manifest exists.
    pub fn create_with_manifest(
        results_root: &Path,
        manifest: &Manifest,
    ) -> Result<(RunDir, RunLock), ResultsError> {
        let run_id = manifest.run_id.as_str();
        std::fs::create_dir_all(results_root).map_err(io("create directory", results_root))?;
        let partial = results_root.join(format!(".{run_id}.partial"));
        let root = results_root.join(run_id);
        if root.exists() {
            return Err(ResultsError::Overwrite {
                path: root.display().to_string(),
                reason: "a run directory of that id already exists".into(),
            });
        }
        let built = (|| {
            std::fs::create_dir(&partial).map_err(io("create directory", &partial))?;
            std::fs::create_dir(partial.join(CELLS_DIR))
                .map_err(io("create directory", &partial))?;
            let lock = RunLock::acquire(&partial)?;
            let path = partial.join(MANIFEST_FILE);
            write_atomic(&path, to_json_pretty(manifest, &path)?.as_bytes())?;
            std::fs::rename(&partial, &root).map_err(io("rename into", &root))?;
            sync_dir(results_root)?;
            Ok(lock)
        })();
        match built {
            Ok(lock) => Ok((
                RunDir {
                    root,
                    run_id: run_id.to_string(),
                },
                lock,
            )),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&partial);
                Err(err)
            }
        }
    }

    /// Take the exclusive writer lock of this run directory (see [`runlog`]).
    pub fn lock(&self) -> Result<RunLock, ResultsError> {
        RunLock::acquire(&self.root)
    }

    /// Record a cell's new status: one appended line of `status.jsonl` (O(1) per cell).
    pub fn record_status(&self, line: &StatusLine) -> Result<(), ResultsError> {
        runlog::append_status(&self.root, line)
    }

    /// Open an existing run directory (it must hold `manifest.json`).
    pub fn open(path: &Path) -> Result<RunDir, ResultsError> {
        let manifest = path.join(MANIFEST_FILE);
        if !path.is_dir() {
            return Err(ResultsError::NotRunDir {
                path: path.display().to_string(),
                why: "no such directory".into(),
            });
        }
        if !manifest.is_file() {
            return Err(ResultsError::NotRunDir {
                path: path.display().to_string(),
                why: format!("it holds no {MANIFEST_FILE}"),
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

    /// Read and version-check `manifest.json`, with the status log (`status.jsonl`) applied:
    /// the current status of every cell.
    pub fn read_manifest(&self) -> Result<Manifest, ResultsError> {
        let mut manifest = read_versioned(&self.root.join(MANIFEST_FILE), |m: &Manifest| {
            m.schema_version
        })?;
        for line in runlog::read_status_log(&self.root)? {
            manifest.apply_status(&line);
        }
        Ok(manifest)
    }

    /// Write `manifest.json` atomically, then empty the status log it now includes.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), ResultsError> {
        let path = self.root.join(MANIFEST_FILE);
        write_atomic(&path, to_json_pretty(manifest, &path)?.as_bytes())?;
        runlog::clear_status_log(&self.root)
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
        // Only a complete, readable cell is protected; a corrupt one is an incomplete attempt.
        if final_dir.join(STATS_FILE).is_file() && self.read_stats(name).is_ok() {
            return Err(ResultsError::Overwrite {
                path: final_dir.display().to_string(),
                reason: "the cell is already complete".into(),
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
            let requests_path = partial.join("requests.jsonl");
            let steps_path = partial.join("steps.jsonl");
            let fail = |path: &Path, e: serde_json::Error| ResultsError::Serialize {
                path: path.display().to_string(),
                message: e.to_string(),
            };
            for r in &m.repeats {
                for rec in &r.records {
                    let line = serde_json::to_string(rec).map_err(|e| fail(&requests_path, e))?;
                    requests.push_str(&line);
                    requests.push('\n');
                }
                for s in &r.steps {
                    let mut v = serde_json::json!({ "repeat": r.summary.repeat });
                    let step = serde_json::to_value(s).map_err(|e| fail(&steps_path, e))?;
                    if let (Some(obj), serde_json::Value::Object(step)) = (v.as_object_mut(), step)
                    {
                        obj.extend(step);
                    }
                    steps.push_str(&v.to_string());
                    steps.push('\n');
                }
            }
            write_atomic(&requests_path, requests.as_bytes())?;
            if !steps.is_empty() {
                write_atomic(&steps_path, steps.as_bytes())?;
            }
            let stats_path = partial.join(STATS_FILE);
            write_atomic(&stats_path, to_json_pretty(stats, &stats_path)?.as_bytes())?;
        }
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io("remove", &final_dir))?;
        }
        std::fs::rename(&partial, &final_dir).map_err(io("rename into", &final_dir))?;
        sync_dir(&self.root.join(CELLS_DIR))
    }

    /// Remove a cell's directory (an incomplete or corrupt attempt about to be run again).
    pub fn remove_cell(&self, name: &str) -> Result<(), ResultsError> {
        let path = self.cell_dir(name);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
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
            identity: None,
            cell_index: Default::default(),
            schedule: None,
            noise_thresholds: None,
        }
    }

    /// Check that `--resume` continues the same experiment: the preset means the same (parsed
    /// TOML, so comments do not matter), and the workload, run settings, `--set` knobs and the
    /// recorded identity (environment, hardware) are unchanged. The error says what changed.
    pub fn check_resumable(
        &self,
        dir: &Path,
        preset: &PresetInfo,
        run: &RunSettings,
        workload_hash: &str,
        set: &BTreeMap<String, String>,
        identity: Option<&RunIdentity>,
    ) -> Result<(), ResultsError> {
        let changed = |what: &str, how: String| ResultsError::Resume {
            path: dir.display().to_string(),
            reason: format!(
                "{what} changed since the run started ({how}); start a new run instead"
            ),
        };
        if let Some(how) = preset_meaning_differs(&self.preset.content, &preset.content) {
            return Err(changed("the preset", how));
        }
        if &self.run != run {
            let diffs = json_differences(
                &serde_json::to_value(&self.run).unwrap_or_default(),
                &serde_json::to_value(run).unwrap_or_default(),
            );
            return Err(changed("the run settings", diffs.join("; ")));
        }
        if self.workload.workload_hash != workload_hash {
            return Err(changed(
                "the workload",
                format!("{} → {workload_hash}", self.workload.workload_hash),
            ));
        }
        if &self.sweep.set != set {
            let diffs = json_differences(
                &serde_json::to_value(&self.sweep.set).unwrap_or_default(),
                &serde_json::to_value(set).unwrap_or_default(),
            );
            return Err(changed("--set", diffs.join("; ")));
        }
        if let (Some(was), Some(now)) = (&self.identity, identity) {
            if was != now {
                let diffs = json_differences(
                    &serde_json::to_value(was).unwrap_or_default(),
                    &serde_json::to_value(now).unwrap_or_default(),
                );
                return Err(changed("the knob sources", diffs.join("; ")));
            }
        }
        Ok(())
    }

    /// Apply one status-log line (unknown keys are ignored: the log may outlive a plan change
    /// only through a hand edit, and a status for no cell changes nothing).
    pub fn apply_status(&mut self, line: &StatusLine) {
        self.set_status(&line.key, line.status, line.reason.clone());
        if let Some((done, planned)) = line.repeats {
            self.set_repeats(&line.key, done, planned);
        }
        if self.engine.is_none() {
            self.engine.clone_from(&line.engine);
        }
    }

    /// Record how many repeats a cell holds and how many the run plans (by key).
    pub fn set_repeats(&mut self, key: &str, done: u32, planned: u32) {
        if let Some(c) = self
            .cell_index
            .position(&self.cells, key)
            .and_then(|i| self.cells.get_mut(i))
        {
            c.repeats_done = Some(done);
            c.repeats_planned = Some(planned);
        }
    }

    /// Set a cell's status and reason (by key); false when the key is unknown.
    pub fn set_status(
        &mut self,
        key: &str,
        status: crate::measure::CellStatus,
        reason: Option<String>,
    ) -> bool {
        match self
            .cell_index
            .position(&self.cells, key)
            .and_then(|i| self.cells.get_mut(i))
        {
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
