//! `ferrum-bench knobs`.

use super::bin;

#[test]
fn json_lists_every_registered_knob_with_type_and_readers() {
    let out = bin().args(["knobs", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let knobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(knobs.len(), 186);
    let threshold = knobs
        .iter()
        .find(|k| k["name"] == "FERRUM_MOE_BATCH_THRESHOLD")
        .unwrap();
    assert_eq!(threshold["type"]["kind"], "positive_integer");
    assert_eq!(threshold["readers"], "engine");
    assert_eq!(threshold["affects"], serde_json::json!(["performance"]));
}

#[test]
fn table_can_be_filtered() {
    let out = bin()
        .args(["knobs", "--filter", "paged_max"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FERRUM_PAGED_MAX_SEQS"));
    assert!(text.ends_with("1 knobs\n"), "{text}");
}
