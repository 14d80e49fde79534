//! Plain-text rendering of config diffs: one line per change, `old → new`, sources in brackets.

use serde_json::Value;

use super::{ConfigDiff, EntryState, FieldChange, Presence, RunDiff};

fn v(x: &Value) -> String {
    match x {
        Value::Null => "∅".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn entry(e: &Option<EntryState>) -> String {
    match e {
        Some(s) => format!("{} ({})", v(&s.value), v(&s.source)),
        None => "∅".to_string(),
    }
}

fn field(c: &FieldChange) -> String {
    format!("{}: {} → {}", c.field, v(&c.old), v(&c.new))
}

/// Lines describing a config diff, each indented by `indent`; empty when there is no difference.
pub fn config_diff_lines(d: &ConfigDiff, indent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in &d.entries {
        out.push(format!(
            "{indent}entry {}: {} → {}",
            e.key,
            entry(&e.old),
            entry(&e.new)
        ));
    }
    for dc in &d.decisions {
        let mut parts: Vec<String> = dc.fields.iter().map(field).collect();
        if !dc.candidates_added.is_empty() {
            parts.push(format!("candidates +[{}]", dc.candidates_added.join(", ")));
        }
        if !dc.candidates_removed.is_empty() {
            parts.push(format!(
                "candidates −[{}]",
                dc.candidates_removed.join(", ")
            ));
        }
        for r in &dc.rejected_changed {
            parts.push(format!(
                "rejected {}: {} → {}",
                r.value,
                r.old.as_deref().unwrap_or("∅"),
                r.new.as_deref().unwrap_or("∅")
            ));
        }
        let tag = match dc.presence {
            Presence::Added => " (added)",
            Presence::Removed => " (removed)",
            Presence::Changed => "",
        };
        out.push(format!(
            "{indent}decision {}{tag}: {}",
            dc.selection,
            parts.join("; ")
        ));
    }
    for c in &d.selected {
        out.push(format!("{indent}{}", field(c)));
    }
    for c in &d.admission {
        out.push(format!("{indent}admission.{}", field(c)));
    }
    out
}

/// Text for `diff` of two configs or traces.
pub fn render_config_diff(d: &ConfigDiff) -> String {
    if d.is_empty() {
        return "no differences\n".to_string();
    }
    let mut s = config_diff_lines(d, "").join("\n");
    s.push('\n');
    s
}

/// Text for `diff` of two run directories.
pub fn render_run_diff(r: &RunDiff) -> String {
    let mut s = String::new();
    for c in &r.cells {
        let title = if c.a == c.b {
            c.a.clone()
        } else {
            format!("{} ↔ {}", c.a, c.b)
        };
        if c.diff.is_empty() {
            s.push_str(&format!("{title}: no differences\n"));
        } else {
            s.push_str(&format!("{title}:\n"));
            for l in config_diff_lines(&c.diff, "  ") {
                s.push_str(&l);
                s.push('\n');
            }
        }
    }
    for n in &r.only_in_a {
        s.push_str(&format!("only in A: {n}\n"));
    }
    for n in &r.only_in_b {
        s.push_str(&format!("only in B: {n}\n"));
    }
    s
}
