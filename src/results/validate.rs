//! Full validation of one cell of a run directory against its manifest entry: what `merge`
//! checks for every cell of every input before it writes anything.

use super::{io, CellEntry, ResultsError, RunDir, StatsFile, STATS_FILE};
use crate::measure::CellStatus;

/// `requests.jsonl`.
pub const REQUESTS_FILE: &str = "requests.jsonl";

/// Check that `entry`'s files in `dir` agree with its status. A `completed` cell needs a
/// readable `stats.json` of the current schema whose key is the entry's, and a complete
/// `requests.jsonl` (one JSON object per measured request of every repeat); any other status
/// must not hold a `stats.json`. Errors name the source file. Returns the stats of a completed
/// cell.
pub fn validate_cell(dir: &RunDir, entry: &CellEntry) -> Result<Option<StatsFile>, ResultsError> {
    let cell_dir = dir.cell_dir(&entry.name);
    let stats_path = cell_dir.join(STATS_FILE);
    let status = entry.status;
    if !entry.has_stats() {
        if stats_path.exists() {
            return Err(ResultsError::Corrupt {
                path: stats_path.display().to_string(),
                message: format!(
                    "the manifest marks cell `{}` `{}`, but it holds a stats.json; statuses and files disagree",
                    entry.name,
                    status_name(status)
                ),
            });
        }
        return Ok(None);
    }
    if !cell_dir.is_dir() {
        return Err(ResultsError::Corrupt {
            path: cell_dir.display().to_string(),
            message: format!(
                "the manifest marks cell `{}` completed, but its directory is missing",
                entry.name
            ),
        });
    }
    let stats = dir.read_stats(&entry.name)?;
    if stats.cell.key != entry.key {
        return Err(ResultsError::Corrupt {
            path: stats_path.display().to_string(),
            message: format!(
                "cell key {} does not match the manifest's {} for `{}`",
                stats.cell.key, entry.key, entry.name
            ),
        });
    }
    let requests_path = cell_dir.join(REQUESTS_FILE);
    let text = std::fs::read_to_string(&requests_path).map_err(io("read", &requests_path))?;
    let expected: usize = stats.repeats.iter().map(|r| r.expected_requests).sum();
    let mut found = 0usize;
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(_)) => found += 1,
            Ok(_) => {
                return Err(ResultsError::Corrupt {
                    path: format!("{}:{}", requests_path.display(), i + 1),
                    message: "expected one JSON object per line".into(),
                })
            }
            Err(e) => {
                return Err(ResultsError::Corrupt {
                    path: format!("{}:{}", requests_path.display(), i + 1),
                    message: e.to_string(),
                })
            }
        }
    }
    if found != expected || !(text.is_empty() || text.ends_with('\n')) {
        return Err(ResultsError::Corrupt {
            path: requests_path.display().to_string(),
            message: format!(
                "{found} request record(s) where stats.json counts {expected}: the file is truncated or does not belong to this cell"
            ),
        });
    }
    Ok(Some(stats))
}

/// The status as written in `manifest.json`.
pub fn status_name(status: CellStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"))
}
