//! Config drift: where the server's own `effective_config.json` / `decision_trace.jsonl` differ
//! from ferrum-bench's resolution of the same cell.
//!
//! Entries are compared by key on their effective value (the source legitimately differs: the
//! harness records a sweep value as `script_case`, the server sees it as `env`); decisions are
//! compared by `selection` on the `selected` value. Both lists are empty when the two agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One key whose value differs (`None` = absent on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftItem {
    /// Entry key (`FERRUM_*`) or decision `selection`.
    pub key: String,
    /// ferrum-bench's value.
    pub harness: Option<String>,
    /// The server's value.
    pub server: Option<String>,
}

/// The `config_drift` section of `stats.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDrift {
    /// Runtime entries that differ.
    pub entries: Vec<DriftItem>,
    /// Decisions that differ.
    pub decisions: Vec<DriftItem>,
}

impl ConfigDrift {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.decisions.is_empty()
    }
}

fn entries_of(doc: &Value) -> BTreeMap<String, String> {
    doc.get("entries")
        .or_else(|| doc.pointer("/runtime_config/entries"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e.get("key")?.as_str()?.to_string(),
                e.get("effective_value")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

fn decisions_of(jsonl: &str, doc: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let from_lines: Vec<Value> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let list = if from_lines.is_empty() {
        doc.get("decisions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    } else {
        from_lines
    };
    for d in list {
        if let (Some(sel), Some(val)) = (
            d.get("selection").and_then(Value::as_str),
            d.get("selected").and_then(Value::as_str),
        ) {
            out.insert(sel.to_string(), val.to_string());
        }
    }
    out
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<DriftItem> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| DriftItem {
            key: k.clone(),
            harness: a.get(k).cloned(),
            server: b.get(k).cloned(),
        })
        .collect()
}

/// Compare the harness's resolution with the server's. `Err` when the server's effective config
/// is not JSON (the caller records that instead of a drift).
pub fn compute(
    harness_config: &str,
    harness_trace: &str,
    server_config: &str,
    server_trace: &str,
) -> Result<ConfigDrift, String> {
    let ours: Value = serde_json::from_str(harness_config)
        .map_err(|e| format!("harness effective config is not JSON: {e}"))?;
    let theirs: Value = serde_json::from_str(server_config)
        .map_err(|e| format!("server effective config is not JSON: {e}"))?;
    Ok(ConfigDrift {
        entries: diff(&entries_of(&ours), &entries_of(&theirs)),
        decisions: diff(
            &decisions_of(harness_trace, &ours),
            &decisions_of(server_trace, &theirs),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ferrum's effective_config.json keeps the entries at the top level.
    const OURS: &str = r#"{"entries":[
        {"key":"FERRUM_MOE_BATCH_THRESHOLD","effective_value":"4","source":"script_case"},
        {"key":"FERRUM_PAGED_MAX_SEQS","effective_value":"8","source":"config_file"}],
        "decisions":[]}"#;

    #[test]
    fn identical_configs_have_no_drift_even_when_sources_differ() {
        let theirs = OURS.replace("script_case", "env");
        let trace = "{\"selection\":\"kv_dtype\",\"selected\":\"fp16\"}\n";
        let d = compute(OURS, trace, &theirs, trace).unwrap();
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn differing_missing_and_extra_keys_are_listed() {
        let theirs = r#"{"runtime_config":{"entries":[
            {"key":"FERRUM_MOE_BATCH_THRESHOLD","effective_value":"8","source":"env"},
            {"key":"FERRUM_KV_CAPACITY","effective_value":"512","source":"memory_profile"}]}}"#;
        let d = compute(
            OURS,
            "{\"selection\":\"a\",\"selected\":\"x\"}",
            theirs,
            "{\"selection\":\"a\",\"selected\":\"y\"}\n{\"selection\":\"b\",\"selected\":\"z\"}",
        )
        .unwrap();
        let keys: Vec<&str> = d.entries.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "FERRUM_KV_CAPACITY",
                "FERRUM_MOE_BATCH_THRESHOLD",
                "FERRUM_PAGED_MAX_SEQS"
            ]
        );
        assert_eq!(d.entries[1].harness.as_deref(), Some("4"));
        assert_eq!(d.entries[1].server.as_deref(), Some("8"));
        assert_eq!(d.entries[2].server, None);
        assert_eq!(d.decisions.len(), 2);
        assert!(compute(OURS, "", "not json", "").is_err());
    }
}
