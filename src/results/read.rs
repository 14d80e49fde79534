//! Readers for `compare`, `diff` and `export`: a cell's or run's stored files by path, with
//! errors that name the file and what is wrong (exit code 2).
//!
//! Schema-evolution rule (README "Results that stay comparable"): `schema_version` is a *major*
//! version. Within one major version a result file only ever gains optional fields (read with
//! `#[serde(default)]`), so files written by any older `ferrum-bench` of the same major version
//! read unchanged; the stored fixture `tests/fixtures/results-v1/` is read by the tests to hold
//! every later change to that rule. A new major version keeps a reader for the previous one here
//! ([`read_stats_path`] dispatches on the version before parsing).

use std::path::Path;

use serde_json::Value;

use super::{Manifest, ResultsError, StatsFile, MANIFEST_FILE, SCHEMA_VERSION, STATS_FILE};

/// Oldest `schema_version` this build reads.
pub const OLDEST_READABLE_SCHEMA: u32 = 1;

fn corrupt(path: &Path, message: impl Into<String>) -> ResultsError {
    ResultsError::Corrupt {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Read a file to a string; a missing file is named as such.
pub fn read_text(path: &Path) -> Result<String, ResultsError> {
    std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
        action: "read",
        path: path.display().to_string(),
        source,
    })
}

/// Parse a JSON document (one value).
pub fn read_json(path: &Path) -> Result<Value, ResultsError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| corrupt(path, format!("invalid JSON: {e}")))
}

/// Parse a JSON-lines file: one object per non-empty line; errors give the line number.
pub fn read_jsonl(path: &Path) -> Result<Vec<Value>, ResultsError> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| corrupt(path, format!("line {}: invalid JSON: {e}", i + 1)))
        })
        .collect()
}

/// The `schema_version` of a parsed result document, checked against the versions this build
/// reads.
fn check_version(path: &Path, raw: &Value) -> Result<u32, ResultsError> {
    let found = match raw.get("schema_version") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| corrupt(path, format!("schema_version is `{v}`, not an integer")))?,
        None => return Err(corrupt(path, "no schema_version field")),
    };
    let found = u32::try_from(found).unwrap_or(u32::MAX);
    if !(OLDEST_READABLE_SCHEMA..=SCHEMA_VERSION).contains(&found) {
        return Err(ResultsError::Schema {
            path: path.display().to_string(),
            found,
        });
    }
    Ok(found)
}

/// Read a `stats.json` written by this or any older `ferrum-bench` of a readable major version.
pub fn read_stats_path(path: &Path) -> Result<StatsFile, ResultsError> {
    let raw = read_json(path)?;
    // Version 1 is the only major version so far; version 2 adds `if v == 1 { upgrade_v1 }` here.
    let _version = check_version(path, &raw)?;
    serde_json::from_value(raw).map_err(|e| corrupt(path, e.to_string()))
}

/// Read a run directory's `manifest.json` (same version rule as [`read_stats_path`]).
pub fn read_manifest_path(run_dir: &Path) -> Result<Manifest, ResultsError> {
    let path = run_dir.join(MANIFEST_FILE);
    let raw = read_json(&path)?;
    let _version = check_version(&path, &raw)?;
    serde_json::from_value(raw).map_err(|e| corrupt(&path, e.to_string()))
}

/// True when `dir` is a run directory (holds `manifest.json`).
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
}

/// True when `dir` is a complete cell directory (holds `stats.json`).
pub fn is_cell_dir(dir: &Path) -> bool {
    dir.join(STATS_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats.json");
        std::fs::write(&p, "{\"schema_version\": 1, \"cell\": ").unwrap();
        let e = read_stats_path(&p).unwrap_err().to_string();
        assert!(
            e.contains("stats.json") && e.contains("invalid JSON"),
            "{e}"
        );
        std::fs::write(&p, "{\"schema_version\": 99}").unwrap();
        let e = read_stats_path(&p).unwrap_err().to_string();
        assert!(e.contains("unsupported schema_version 99"), "{e}");
        std::fs::write(&p, "{\"schema_version\": \"1\"}").unwrap();
        let e = read_stats_path(&p).unwrap_err().to_string();
        assert!(e.contains("not an integer"), "{e}");
        std::fs::write(&p, "{}").unwrap();
        assert!(read_stats_path(&p)
            .unwrap_err()
            .to_string()
            .contains("no schema_version"));
        let missing = dir.path().join("nope.json");
        let e = read_stats_path(&missing).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("nope.json"), "{e}");
        let l = dir.path().join("t.jsonl");
        std::fs::write(&l, "{\"a\":1}\n\n{\"a\":\n").unwrap();
        let e = read_jsonl(&l).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
