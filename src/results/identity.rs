//! What makes two runs (or a run and its resumption) the same experiment, and how a difference
//! is said in words.
//!
//! A cell's identity is everything that changes what runs: knobs from every source (preset
//! `[env]`, the `FERRUM_*` environment, `--set`, the cell), the hardware profile, the `[engine]`
//! table, the workload and the load. The cell key covers the cell's own knobs, `--set`, the
//! load, workload and seed; [`RunIdentity`] records the rest in the manifest, and the preset
//! (which holds `[env]`, `[hardware]`, `[engine]`) is compared by meaning — parsed TOML, so a
//! comment or reformatting is not a change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The parts of a run's identity that live outside the preset and the cell key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunIdentity {
    /// `FERRUM_*` variables taken from the environment (empty with `--no-inherit-env`).
    pub environment: BTreeMap<String, String>,
    /// Whether the environment was inherited at all.
    pub inherit_env: bool,
    /// `--hardware`, when it replaced the preset's profile.
    pub hardware: Option<String>,
    /// `--allow-unknown-knobs`.
    pub allow_unknown_knobs: bool,
}

/// Whether two preset texts differ in meaning (parsed TOML), and if so, where, in words.
/// Texts that do not parse are compared byte for byte.
pub fn preset_meaning_differs(recorded: &str, current: &str) -> Option<String> {
    match (
        recorded.parse::<toml::Table>(),
        current.parse::<toml::Table>(),
    ) {
        (Ok(a), Ok(b)) => {
            let (a, b) = (
                serde_json::to_value(a).unwrap_or_default(),
                serde_json::to_value(b).unwrap_or_default(),
            );
            let diffs = json_differences(&a, &b);
            (!diffs.is_empty()).then(|| diffs.join("; "))
        }
        _ => (recorded != current).then(|| "the file's text".to_string()),
    }
}

/// Every leaf where `a` and `b` differ, as `path: A → B` lines (at most 5, then a count).
/// Paths are dotted keys (`run.load.concurrency`, `env.FERRUM_PAGED_MAX_SEQS`); an absent side
/// reads `(absent)`.
pub fn json_differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    if out.len() > 5 {
        let more = out.len() - 5;
        out.truncate(5);
        out.push(format!("and {more} more"));
    }
    out
}

fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => walk(&p, va, vb, out),
                    (Some(va), None) => out.push(format!("{p}: {} → (absent)", short(va))),
                    (None, Some(vb)) => out.push(format!("{p}: (absent) → {}", short(vb))),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(format!(
            "{}: {} → {}",
            if path.is_empty() { "value" } else { path },
            short(a),
            short(b)
        )),
        _ => {}
    }
}

/// A value as compact JSON, cut to 60 characters.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_formatting_are_not_changes_but_values_are() {
        let a = "name = \"m3\"\n[env]\nFERRUM_PAGED_MAX_SEQS = 32\n";
        let b = "# a comment\nname   =   \"m3\"\n\n[env]\nFERRUM_PAGED_MAX_SEQS = 32 # same\n";
        assert_eq!(preset_meaning_differs(a, b), None);
        let c = "name = \"m3\"\n[env]\nFERRUM_PAGED_MAX_SEQS = 16\n";
        assert_eq!(
            preset_meaning_differs(a, c).unwrap(),
            "env.FERRUM_PAGED_MAX_SEQS: 32 → 16"
        );
        assert_eq!(
            preset_meaning_differs("x = [", "x = [").as_deref(),
            None,
            "unparseable but equal text"
        );
    }

    #[test]
    fn differences_name_paths_and_absent_sides() {
        let a = serde_json::json!({"set": {"FERRUM_PREFIX_CACHE": "1"}, "n": 1});
        let b = serde_json::json!({"set": {}, "n": 2});
        assert_eq!(
            json_differences(&a, &b),
            ["n: 1 → 2", "set.FERRUM_PREFIX_CACHE: \"1\" → (absent)"]
        );
    }
}
