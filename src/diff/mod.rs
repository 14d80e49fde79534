//! Semantic diff of the engine's decisions and configuration: two decision traces, two effective
//! configs, or two run directories cell by cell. Used by `ferrum-bench diff` and, next to the
//! verdicts, by `compare` (config drift).
//!
//! Documents are read as JSON values rather than typed structs so that a trace written by an
//! older ferrum-bench (or by Ferrum itself) still diffs: decisions are keyed by `selection`,
//! entries by `key`; `selected_*` fields and `admission` fields are compared by name.

mod render;
mod runs;

pub use render::{config_diff_lines, render_config_diff, render_run_diff};
pub use runs::{
    diff_paths, diff_runs, run_cell_configs, CellConfigDiff, DiffInput, DiffOutcome, RunDiff,
    DECISION_TRACE_FILE, EFFECTIVE_CONFIG_FILE,
};

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// A scalar field that changed (`null` = absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Field name (dotted for nested fields, e.g. `memory_estimate.vram_bytes`).
    pub field: String,
    /// Value in A.
    pub old: Value,
    /// Value in B.
    pub new: Value,
}

/// An entry's value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryState {
    /// `effective_value`.
    pub value: Value,
    /// `source` (`config_file`, `env`, `cli`, `script_case`, `memory_profile`, ...).
    pub source: Value,
}

/// One `entries[]` key that was added, removed, or changed value or source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryChange {
    /// The knob.
    pub key: String,
    /// In A (`None` = added in B).
    pub old: Option<EntryState>,
    /// In B (`None` = removed in B).
    pub new: Option<EntryState>,
}

/// A rejected candidate whose reason changed, appeared or disappeared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedChange {
    /// The candidate value.
    pub value: String,
    /// Reason in A (`None` = not rejected in A).
    pub old: Option<String>,
    /// Reason in B.
    pub new: Option<String>,
}

/// Whether a decision exists on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, with differences.
    Changed,
}

/// One decision (by `selection`) that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionChange {
    /// The decision's `selection`.
    pub selection: String,
    /// Added, removed or changed.
    pub presence: Presence,
    /// `selected`, `source`, `source_key` changes (for added/removed: the side's values).
    pub fields: Vec<FieldChange>,
    /// Candidates only in B.
    pub candidates_added: Vec<String>,
    /// Candidates only in A.
    pub candidates_removed: Vec<String>,
    /// Rejected reasons that changed.
    pub rejected_changed: Vec<RejectedChange>,
}

/// Differences between two effective configs (or two decision traces: then only `decisions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConfigDiff {
    /// Entries by key.
    pub entries: Vec<EntryChange>,
    /// Decisions by selection.
    pub decisions: Vec<DecisionChange>,
    /// `selected_*` fields.
    pub selected: Vec<FieldChange>,
    /// `admission` fields (nested fields dotted).
    pub admission: Vec<FieldChange>,
}

impl ConfigDiff {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.decisions.is_empty()
            && self.selected.is_empty()
            && self.admission.is_empty()
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn by_key<'a>(items: &'a [Value], key: &str) -> BTreeMap<String, &'a Value> {
    items
        .iter()
        .filter_map(|v| text(v.get(key)).map(|k| (k, v)))
        .collect()
}

fn strings(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| text(Some(x))).collect())
        .unwrap_or_default()
}

fn rejected(v: &Value) -> BTreeMap<String, String> {
    v.get("rejected")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| Some((text(r.get("value"))?, text(r.get("reason"))?)))
                .collect()
        })
        .unwrap_or_default()
}

const DECISION_FIELDS: [&str; 3] = ["selected", "source", "source_key"];

fn field(v: Option<&Value>, name: &str) -> Value {
    v.and_then(|v| v.get(name)).cloned().unwrap_or(Value::Null)
}

/// Diff two lists of decisions (decision-trace lines or an effective config's `decisions`).
pub fn diff_decisions(a: &[Value], b: &[Value]) -> Vec<DecisionChange> {
    let (ma, mb) = (by_key(a, "selection"), by_key(b, "selection"));
    let names: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (da, db) = (ma.get(name).copied(), mb.get(name).copied());
        let presence = match (da, db) {
            (None, _) => Presence::Added,
            (_, None) => Presence::Removed,
            _ => Presence::Changed,
        };
        let fields: Vec<FieldChange> = DECISION_FIELDS
            .iter()
            .map(|f| FieldChange {
                field: (*f).to_string(),
                old: field(da, f),
                new: field(db, f),
            })
            .filter(|c| c.old != c.new)
            .collect();
        let (ca, cb) = (
            strings(da.and_then(|d| d.get("candidates"))),
            strings(db.and_then(|d| d.get("candidates"))),
        );
        let (ra, rb) = (
            da.map(rejected).unwrap_or_default(),
            db.map(rejected).unwrap_or_default(),
        );
        let rejected_values: BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
        let rejected_changed: Vec<RejectedChange> = rejected_values
            .into_iter()
            .filter(|v| ra.get(*v) != rb.get(*v))
            .map(|v| RejectedChange {
                value: v.clone(),
                old: ra.get(v).cloned(),
                new: rb.get(v).cloned(),
            })
            .collect();
        let change = DecisionChange {
            selection: name.clone(),
            presence,
            fields,
            candidates_added: cb.difference(&ca).cloned().collect(),
            candidates_removed: ca.difference(&cb).cloned().collect(),
            rejected_changed,
        };
        let differs = presence != Presence::Changed
            || !change.fields.is_empty()
            || !change.candidates_added.is_empty()
            || !change.candidates_removed.is_empty()
            || !change.rejected_changed.is_empty();
        if differs {
            out.push(change);
        }
    }
    out
}

/// Diff two `entries` lists by key (value and source).
pub fn diff_entries(a: &[Value], b: &[Value]) -> Vec<EntryChange> {
    let (ma, mb) = (by_key(a, "key"), by_key(b, "key"));
    let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    let state = |v: Option<&&Value>| {
        v.map(|e| EntryState {
            value: field(Some(e), "effective_value"),
            source: field(Some(e), "source"),
        })
    };
    keys.into_iter()
        .filter_map(|k| {
            let (old, new) = (state(ma.get(k)), state(mb.get(k)));
            (old != new).then(|| EntryChange {
                key: k.clone(),
                old,
                new,
            })
        })
        .collect()
}

/// Flatten nested objects into `prefix.key` → scalar.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn diff_maps(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<FieldChange> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (old, new) = (
                a.get(k).cloned().unwrap_or(Value::Null),
                b.get(k).cloned().unwrap_or(Value::Null),
            );
            (old != new).then(|| FieldChange {
                field: k.clone(),
                old,
                new,
            })
        })
        .collect()
}

fn array<'a>(doc: &'a Value, key: &str) -> &'a [Value] {
    doc.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Diff two effective-config documents: entries, decisions, `selected_*` and `admission`.
pub fn diff_effective_configs(a: &Value, b: &Value) -> ConfigDiff {
    let selected = |doc: &Value| -> BTreeMap<String, Value> {
        doc.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("selected_"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let admission = |doc: &Value| {
        let mut out = BTreeMap::new();
        if let Some(adm) = doc.get("admission") {
            flatten("", adm, &mut out);
        }
        out
    };
    ConfigDiff {
        entries: diff_entries(array(a, "entries"), array(b, "entries")),
        decisions: diff_decisions(array(a, "decisions"), array(b, "decisions")),
        selected: diff_maps(&selected(a), &selected(b)),
        admission: diff_maps(&admission(a), &admission(b)),
    }
}

#[cfg(test)]
mod tests;
