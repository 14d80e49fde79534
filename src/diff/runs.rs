//! Inputs of `diff`: detect what a path is (decision trace, effective config, cell directory,
//! run directory), read it, and diff like with like; run directories are diffed cell by cell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::{diff_decisions, diff_effective_configs, ConfigDiff};
use crate::results::read::{is_cell_dir, is_run_dir, read_json, read_jsonl, read_manifest_path};
use crate::results::{ResultsError, CELLS_DIR};

/// `effective_config.json` in a cell directory.
pub const EFFECTIVE_CONFIG_FILE: &str = "effective_config.json";
/// `decision_trace.jsonl` in a cell directory.
pub const DECISION_TRACE_FILE: &str = "decision_trace.jsonl";

/// What a path given to `diff` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum DiffInput {
    /// A decision trace (one decision per line).
    Trace(Vec<Value>),
    /// An effective-config document (from a file or a cell directory).
    Config(Value),
    /// A run directory.
    Run(PathBuf),
}

fn corrupt(path: &Path, message: impl Into<String>) -> ResultsError {
    ResultsError::Corrupt {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl DiffInput {
    /// Read `path`: a run directory (has `manifest.json`), a cell directory (has
    /// `effective_config.json`), a `.jsonl` decision trace, or a JSON effective config.
    pub fn read(path: &Path) -> Result<DiffInput, ResultsError> {
        if path.is_dir() {
            if is_run_dir(path) {
                return Ok(DiffInput::Run(path.to_path_buf()));
            }
            let cfg = path.join(EFFECTIVE_CONFIG_FILE);
            if cfg.is_file() || is_cell_dir(path) {
                return Ok(DiffInput::Config(read_config(&cfg)?));
            }
            return Err(corrupt(
                path,
                "neither a run directory (manifest.json) nor a cell directory (effective_config.json)",
            ));
        }
        let is_jsonl = path.extension().is_some_and(|e| e == "jsonl");
        if is_jsonl {
            let lines = read_jsonl(path)?;
            if let Some((i, _)) = lines
                .iter()
                .enumerate()
                .find(|(_, l)| l.get("selection").is_none())
            {
                return Err(corrupt(
                    path,
                    format!(
                        "decision {} has no `selection`; not a decision trace",
                        i + 1
                    ),
                ));
            }
            return Ok(DiffInput::Trace(lines));
        }
        Ok(DiffInput::Config(read_config(path)?))
    }
}

fn read_config(path: &Path) -> Result<Value, ResultsError> {
    let doc = read_json(path)?;
    if doc.get("entries").is_none() && doc.get("decisions").is_none() {
        return Err(corrupt(
            path,
            "no `entries` or `decisions`; not an effective_config.json",
        ));
    }
    Ok(doc)
}

/// One matched pair of cells and their differences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellConfigDiff {
    /// Cell name in A.
    pub a: String,
    /// Cell name in B.
    pub b: String,
    /// The differences (empty when equal).
    pub diff: ConfigDiff,
}

/// Two run directories diffed cell by cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDiff {
    /// Matched cells (by knob values and load).
    pub cells: Vec<CellConfigDiff>,
    /// Cells with a config only in A.
    pub only_in_a: Vec<String>,
    /// Cells with a config only in B.
    pub only_in_b: Vec<String>,
}

/// The result of `diff`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiffOutcome {
    /// Two traces or configs.
    Config {
        /// The differences.
        diff: ConfigDiff,
    },
    /// Two run directories.
    Runs {
        /// Cell by cell.
        runs: RunDiff,
    },
}

impl DiffOutcome {
    /// True when A and B do not differ.
    pub fn is_equal(&self) -> bool {
        match self {
            DiffOutcome::Config { diff } => diff.is_empty(),
            DiffOutcome::Runs { runs } => {
                runs.only_in_a.is_empty()
                    && runs.only_in_b.is_empty()
                    && runs.cells.iter().all(|c| c.diff.is_empty())
            }
        }
    }
}

/// The effective configs of a run's cells, by matching key (knobs + load), with cell names.
pub fn run_cell_configs(run: &Path) -> Result<BTreeMap<String, (String, Value)>, ResultsError> {
    let manifest = read_manifest_path(run)?;
    let mut out = BTreeMap::new();
    for c in &manifest.cells {
        let cfg = run
            .join(CELLS_DIR)
            .join(&c.name)
            .join(EFFECTIVE_CONFIG_FILE);
        if cfg.is_file() {
            let key = crate::compare::match_key(&c.knobs, &c.load.label());
            out.insert(key, (c.name.clone(), read_config(&cfg)?));
        }
    }
    Ok(out)
}

/// Diff two paths (see [`DiffInput::read`]).
pub fn diff_paths(a: &Path, b: &Path) -> Result<DiffOutcome, ResultsError> {
    let (ia, ib) = (DiffInput::read(a)?, DiffInput::read(b)?);
    Ok(match (ia, ib) {
        (DiffInput::Run(ra), DiffInput::Run(rb)) => DiffOutcome::Runs {
            runs: diff_runs(&run_cell_configs(&ra)?, &run_cell_configs(&rb)?),
        },
        (DiffInput::Run(_), _) | (_, DiffInput::Run(_)) => {
            return Err(ResultsError::Mismatch {
                path: format!("{} / {}", a.display(), b.display()),
                reason: "a run directory can only be diffed with another run directory".into(),
            })
        }
        (DiffInput::Config(x), DiffInput::Config(y)) => DiffOutcome::Config {
            diff: diff_effective_configs(&x, &y),
        },
        (x, y) => {
            let decisions = |i: DiffInput| match i {
                DiffInput::Trace(t) => t,
                DiffInput::Config(c) => c
                    .get("decisions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                DiffInput::Run(_) => Vec::new(),
            };
            DiffOutcome::Config {
                diff: ConfigDiff {
                    decisions: diff_decisions(&decisions(x), &decisions(y)),
                    ..ConfigDiff::default()
                },
            }
        }
    })
}

/// Diff matched cells; when each side has exactly one cell they are paired regardless.
pub fn diff_runs(
    a: &BTreeMap<String, (String, Value)>,
    b: &BTreeMap<String, (String, Value)>,
) -> RunDiff {
    if a.len() == 1 && b.len() == 1 {
        let ((_, (na, ca)), (_, (nb, cb))) = (
            a.iter().next().unwrap_or_else(|| unreachable!()),
            b.iter().next().unwrap_or_else(|| unreachable!()),
        );
        return RunDiff {
            cells: vec![CellConfigDiff {
                a: na.clone(),
                b: nb.clone(),
                diff: diff_effective_configs(ca, cb),
            }],
            only_in_a: Vec::new(),
            only_in_b: Vec::new(),
        };
    }
    let mut cells = Vec::new();
    let mut only_in_a = Vec::new();
    for (key, (na, ca)) in a {
        match b.get(key) {
            Some((nb, cb)) => cells.push(CellConfigDiff {
                a: na.clone(),
                b: nb.clone(),
                diff: diff_effective_configs(ca, cb),
            }),
            None => only_in_a.push(na.clone()),
        }
    }
    let only_in_b = b
        .iter()
        .filter(|(k, _)| !a.contains_key(*k))
        .map(|(_, (n, _))| n.clone())
        .collect();
    RunDiff {
        cells,
        only_in_a,
        only_in_b,
    }
}
