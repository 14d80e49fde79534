use serde_json::json;

use super::*;

fn decision(selection: &str, selected: &str, source: &str) -> Value {
    json!({
        "schema_version": 1, "selection": selection, "selected": selected, "source": source,
        "source_key": null, "candidates": ["a", "b", "c"],
        "rejected": [{"value": "b", "reason": "b not selected"}, {"value": "c", "reason": "c not selected"}],
        "affects": ["performance"]
    })
}

#[test]
fn equal_traces_have_no_diff() {
    let t = vec![decision("x", "a", "default"), decision("y", "a", "default")];
    assert!(diff_decisions(&t, &t).is_empty());
    let doc = json!({"entries": [], "decisions": t, "selected_max_sequences": 32, "admission": {"max_sequences": 32}});
    assert!(diff_effective_configs(&doc, &doc).is_empty());
}

#[test]
fn each_decision_field_is_reported() {
    let a = vec![decision("x", "a", "default")];
    // selected
    let d = diff_decisions(&a, &[decision("x", "b", "default")]);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].presence, Presence::Changed);
    assert_eq!(
        d[0].fields,
        vec![FieldChange {
            field: "selected".into(),
            old: json!("a"),
            new: json!("b")
        }]
    );
    // source
    let d = diff_decisions(&a, &[decision("x", "a", "cli")]);
    assert_eq!(d[0].fields[0].field, "source");
    // source_key
    let mut b = decision("x", "a", "default");
    b["source_key"] = json!("FERRUM_X");
    let d = diff_decisions(&a, &[b]);
    assert_eq!(d[0].fields[0].field, "source_key");
    assert_eq!(d[0].fields[0].old, Value::Null);
    // candidates added / removed
    let mut b = decision("x", "a", "default");
    b["candidates"] = json!(["a", "c", "d"]);
    let d = diff_decisions(&a, &[b]);
    assert_eq!(d[0].candidates_added, vec!["d".to_string()]);
    assert_eq!(d[0].candidates_removed, vec!["b".to_string()]);
    assert!(d[0].fields.is_empty());
    // rejected reason changed, added, removed
    let mut b = decision("x", "a", "default");
    b["rejected"] =
        json!([{"value": "b", "reason": "b unsupported"}, {"value": "d", "reason": "new"}]);
    let d = diff_decisions(&a, &[b]);
    let r = &d[0].rejected_changed;
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(
        (
            r[0].value.as_str(),
            r[0].old.as_deref(),
            r[0].new.as_deref()
        ),
        ("b", Some("b not selected"), Some("b unsupported"))
    );
    assert_eq!((r[1].value.as_str(), r[1].new.as_deref()), ("c", None));
    assert_eq!((r[2].value.as_str(), r[2].old.as_deref()), ("d", None));
}

#[test]
fn decisions_added_and_removed() {
    let a = vec![decision("x", "a", "default")];
    let b = vec![decision("y", "a", "default")];
    let d = diff_decisions(&a, &b);
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0].selection.as_str(), d[0].presence),
        ("x", Presence::Removed)
    );
    assert_eq!(
        (d[1].selection.as_str(), d[1].presence),
        ("y", Presence::Added)
    );
    assert_eq!(
        d[1].fields[0],
        FieldChange {
            field: "selected".into(),
            old: Value::Null,
            new: json!("a")
        }
    );
}

#[test]
fn entries_added_removed_and_changed() {
    let e = |k: &str, v: &str, s: &str| json!({"key": k, "effective_value": v, "source": s, "affects": ["performance"]});
    let a = vec![
        e("FERRUM_A", "1", "config_file"),
        e("FERRUM_B", "2", "cli"),
        e("FERRUM_C", "3", "env"),
    ];
    let b = vec![
        e("FERRUM_A", "1", "config_file"),
        e("FERRUM_B", "64", "cli"),
        e("FERRUM_C", "3", "cli"),
        e("FERRUM_D", "4", "script_case"),
    ];
    let mut a2 = a.clone();
    a2.push(e("FERRUM_E", "5", "env"));
    let d = diff_entries(&a2, &b);
    let keys: Vec<&str> = d.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["FERRUM_B", "FERRUM_C", "FERRUM_D", "FERRUM_E"]);
    assert_eq!(d[0].old.as_ref().unwrap().value, json!("2"));
    assert_eq!(d[0].new.as_ref().unwrap().value, json!("64"));
    // source-only change is a change
    assert_eq!(d[1].old.as_ref().unwrap().source, json!("env"));
    assert_eq!(d[1].new.as_ref().unwrap().source, json!("cli"));
    assert!(d[2].old.is_none() && d[2].new.is_some());
    assert!(d[3].old.is_some() && d[3].new.is_none());
}

#[test]
fn selected_and_admission_fields() {
    let a = json!({"selected_max_sequences": 32, "selected_layer_split_plan": null,
        "admission": {"max_sequences": 32, "memory_estimate": {"vram_bytes": 1}}, "backend": "cpu"});
    let b = json!({"selected_max_sequences": 16, "selected_layer_split_plan": "two",
        "admission": {"max_sequences": 16, "memory_estimate": {"vram_bytes": 2}}, "backend": "cpu"});
    let d = diff_effective_configs(&a, &b);
    let sel: Vec<&str> = d.selected.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(sel, ["selected_layer_split_plan", "selected_max_sequences"]);
    let adm: Vec<&str> = d.admission.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(adm, ["max_sequences", "memory_estimate.vram_bytes"]);
    assert!(!d.is_empty());
    let text = render_config_diff(&d);
    assert!(text.contains("selected_max_sequences: 32 → 16"), "{text}");
    assert!(text.contains("memory_estimate.vram_bytes: 1 → 2"), "{text}");
}

#[test]
fn golden_effective_configs_diff_by_hardware() {
    let read = |p: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(format!("{}/tests/golden/{p}", env!("CARGO_MANIFEST_DIR")))
                .unwrap(),
        )
        .unwrap()
    };
    let (a, b) = (
        read("m3_rtx4090.effective_config.json"),
        read("m3_auto.effective_config.json"),
    );
    assert!(diff_effective_configs(&a, &a).is_empty());
    let d = diff_effective_configs(&a, &b);
    assert!(!d.is_empty());
    assert!(
        !d.decisions.is_empty(),
        "cuda vs cpu must change some decision"
    );
}
