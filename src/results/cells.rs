//! Readers for a cell's detail files (`requests.jsonl`, `steps.jsonl`, `effective_config.json`),
//! so that consumers such as the HTML report never spell the layout themselves: a change of file
//! names or places stays in `results/`.

use std::path::Path;

use serde::Deserialize;

use super::{ResultsError, RunDir};
use crate::engine::StepRecord;
use crate::measure::RequestRecord;

/// A cell's per-request records (one JSON object per line).
pub const REQUESTS_FILE: &str = "requests.jsonl";
/// A cell's per-step records (only with `--steps`).
pub const STEPS_FILE: &str = "steps.jsonl";
/// A cell's effective-config document.
pub const EFFECTIVE_CONFIG_FILE: &str = "effective_config.json";

/// One line of `steps.jsonl`: the repeat it belongs to and the engine's step record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StepLine {
    /// Repeat index (0-based).
    pub repeat: u32,
    /// The step.
    #[serde(flatten)]
    pub step: StepRecord,
}

/// `Ok(None)` when the file does not exist (an optional file, or a cell that did not complete).
fn read_optional(path: &Path) -> Result<Option<String>, ResultsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ResultsError::Io {
            action: "read",
            path: path.display().to_string(),
            source,
        }),
    }
}

fn parse_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<Vec<T>, ResultsError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| ResultsError::Corrupt {
                path: path.display().to_string(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

impl RunDir {
    /// A cell's `requests.jsonl`; `None` when the cell has none (skipped or failed cells).
    pub fn read_requests(&self, name: &str) -> Result<Option<Vec<RequestRecord>>, ResultsError> {
        let path = self.cell_dir(name).join(REQUESTS_FILE);
        read_optional(&path)?
            .map(|text| parse_lines(&path, &text))
            .transpose()
    }

    /// A cell's `steps.jsonl`; `None` when steps were not recorded.
    pub fn read_steps(&self, name: &str) -> Result<Option<Vec<StepLine>>, ResultsError> {
        let path = self.cell_dir(name).join(STEPS_FILE);
        read_optional(&path)?
            .map(|text| parse_lines(&path, &text))
            .transpose()
    }

    /// A cell's `effective_config.json` as a JSON value; `None` when absent (a cell the resolver
    /// skipped has no directory).
    pub fn read_effective_config(
        &self,
        name: &str,
    ) -> Result<Option<serde_json::Value>, ResultsError> {
        let path = self.cell_dir(name).join(EFFECTIVE_CONFIG_FILE);
        read_optional(&path)?
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| ResultsError::Corrupt {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_none_and_bad_lines_name_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), "r").unwrap();
        assert_eq!(run.read_requests("c").unwrap(), None);
        assert_eq!(run.read_steps("c").unwrap(), None);
        assert_eq!(run.read_effective_config("c").unwrap(), None);
        let cell = run.cell_dir("c");
        std::fs::create_dir_all(&cell).unwrap();
        let step = r#"{"repeat":1,"step":0,"start_ns":0,"duration_ns":5,"prefill_tokens":3,"decode_tokens":0,"sequences":1,"moe_path":"none","distinct_experts":2.0,"kv_blocks_in_use":1,"waiting":0,"admitted":1,"finished":0}"#;
        std::fs::write(cell.join(STEPS_FILE), format!("{step}\n\n")).unwrap();
        let steps = run.read_steps("c").unwrap().unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!((steps[0].repeat, steps[0].step.prefill_tokens), (1, 3));
        std::fs::write(cell.join(REQUESTS_FILE), "{\"repeat\":0}\nnot json\n").unwrap();
        let err = run.read_requests("c").unwrap_err().to_string();
        assert!(
            err.contains("requests.jsonl") && err.contains("line 1"),
            "{err}"
        );
    }
}
