//! The `[sweep]` table of a preset, or a sweep file under `sweeps/` (`--sweep FILE`).
//!
//! ```toml
//! [sweep]
//! mode = "grid"                  # or "zip"; default grid
//! concurrency = [32]             # closed-loop load axis (optional)
//! request_rate = [1.0, 2.0]      # open-loop load axis (optional)
//! [sweep.knobs]                  # knob name → list of values (names sorted in cell order)
//! FERRUM_MOE_BATCH_THRESHOLD = [1, 2, 4, 8, 16, 64]
//! FERRUM_PAGED_MAX_SEQS = [8, 16, 32]
//! [[sweep.exclude]]              # a cell matching every entry of a rule is dropped
//! FERRUM_MOE_BATCH_THRESHOLD = 64
//! FERRUM_PAGED_MAX_SEQS = [8, 16]  # a list matches any of its values
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SweepError;

/// How knob lists combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMode {
    /// Cartesian product of every knob list.
    #[default]
    Grid,
    /// The i-th values of every list together (lists of length 1 are broadcast).
    Zip,
}

/// A preset's `[sweep]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepTable {
    /// `grid` (default) or `zip`; applies to knob lists. The load axis is always crossed with the
    /// knob combinations.
    pub mode: Option<SweepMode>,
    /// Closed-loop concurrencies.
    pub concurrency: Option<Vec<usize>>,
    /// Open-loop request rates (req/s), run at `[run].burstiness`.
    pub request_rate: Option<Vec<f64>>,
    /// Knob name → values (strings, integers, floats or booleans).
    pub knobs: Option<BTreeMap<String, Vec<toml::Value>>>,
    /// Exclusion rules: axis name (`concurrency`, `request_rate` or a knob) → value or list.
    pub exclude: Option<Vec<toml::Table>>,
}

impl SweepTable {
    /// Deserialize from the raw `[sweep]` table of a preset.
    pub fn from_toml(table: &toml::Table) -> Result<SweepTable, SweepError> {
        SweepTable::deserialize(toml::Value::Table(table.clone())).map_err(|e| SweepError::Table {
            table: "sweep",
            message: one_line(e.message()),
        })
    }

    /// Parse a sweep file: either a document with a `[sweep]` table or the table's keys at the top.
    pub fn from_file_text(text: &str) -> Result<SweepTable, SweepError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| SweepError::Table {
                table: "sweep",
                message: match e.span() {
                    Some(span) => format!(
                        "line {}: {}",
                        text.as_bytes()[..span.start.min(text.len())]
                            .iter()
                            .filter(|&&b| b == b'\n')
                            .count()
                            + 1,
                        one_line(e.message())
                    ),
                    None => one_line(e.message()),
                },
            })?;
        match doc.get("sweep") {
            Some(toml::Value::Table(t)) if doc.len() == 1 => SweepTable::from_toml(t),
            _ => SweepTable::from_toml(&doc),
        }
    }
}

/// A message on one line (toml's messages may span several).
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TOML scalar as the string handed to the resolver (`1`/`0` for booleans).
pub(crate) fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        // As in a preset's [env] (and Ferrum's config file): booleans are "1"/"0".
        toml::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_preset_table_and_file_forms() {
        let text = "[sweep]\nmode = \"zip\"\nconcurrency = [8, 32]\n[sweep.knobs]\nFERRUM_PAGED_MAX_SEQS = [8, 16]\n[[sweep.exclude]]\nconcurrency = 8\n";
        let t = SweepTable::from_file_text(text).unwrap();
        assert_eq!(t.mode, Some(SweepMode::Zip));
        assert_eq!(t.concurrency, Some(vec![8, 32]));
        assert_eq!(t.knobs.as_ref().unwrap()["FERRUM_PAGED_MAX_SEQS"].len(), 2);
        assert_eq!(t.exclude.as_ref().unwrap().len(), 1);
        let top = SweepTable::from_file_text("concurrency = [4]\n").unwrap();
        assert_eq!(top.concurrency, Some(vec![4]));
        let err = SweepTable::from_file_text("[sweep]\nconcurency = [4]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("concurency") && err.starts_with("invalid [sweep] table"),
            "{err}"
        );
        assert_eq!(value_text(&toml::Value::Boolean(true)), "1");
        assert_eq!(value_text(&toml::Value::Integer(4)), "4");
    }
}
