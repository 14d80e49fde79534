//! The six cases of issue 7 ("Resolver parity on every input Ferrum accepts"), each as Ferrum
//! resolves it: values kept as written, Ferrum's error first, the harness's warnings after.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::runtime::{RuntimeConfigEntry, RuntimeConfigSource};
use super::{resolve_with_environment, Overrides, ResolveError};
use crate::preset::Preset;

const M3: &str = "name = \"m3\"\n[model]\nprofile = \"qwen3_30b_a3b_gptq_int4\"\n[hardware]\nprofile = \"rtx4090\"\ncompiled_features = \"m3_fast_path_without_fa2\"\n[workload]\nprofile = \"m3_qwen3_30b_a3b_int4\"\n";

fn preset_72b() -> Preset {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/presets/qwen25_72b_2x4090.toml"
    );
    Preset::load(Path::new(path)).unwrap()
}

fn m3() -> Preset {
    Preset::parse(Path::new("m3.toml"), M3).unwrap()
}

fn with_rtx4090(overrides: Overrides) -> Overrides {
    Overrides {
        hardware: Some("rtx4090".into()),
        ..overrides
    }
}

fn cli(pairs: &[(&str, &str)]) -> Overrides {
    Overrides {
        cli: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Overrides::default()
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn entry<'a>(resolution: &'a super::Resolution, key: &str) -> &'a RuntimeConfigEntry {
    resolution.resolved.runtime_config.get(key).unwrap()
}

fn sha256_of_entries(resolution: &super::Resolution) -> String {
    let bytes = serde_json::to_vec(&resolution.resolved.runtime_config.entries).unwrap();
    format!("sha256:{:x}", Sha256::digest(bytes))
}

// ---- the six rows of the issue ----------------------------------------------------------------

#[test]
fn row1_leading_zeros_are_kept_in_the_entry_the_decision_and_the_hash() {
    let r = resolve_with_environment(
        &m3(),
        &Overrides::default(),
        &env(&[("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE", "010")]),
    )
    .unwrap();
    assert_eq!(
        entry(&r, "FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE").effective_value,
        "010"
    );
    assert_eq!(
        r.resolved.selected("scheduler_admission_policy"),
        Some("prefill_first_until_active:010")
    );
    let doc = r.resolved.effective_config_document();
    assert_eq!(doc["env_hash"], sha256_of_entries(&r));
    let ten = resolve_with_environment(
        &m3(),
        &Overrides::default(),
        &env(&[("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE", "10")]),
    )
    .unwrap();
    assert_ne!(
        doc["env_hash"],
        ten.resolved.effective_config_document()["env_hash"]
    );
    assert!(r.misread.is_empty(), "{:?}", r.misread);
}

#[test]
fn row2_mixed_case_pipeline_mode_keeps_ferrums_raw_comparison_and_is_warned_about() {
    let r = resolve_with_environment(
        &preset_72b(),
        &with_rtx4090(cli(&[
            ("FERRUM_LAYER_SPLIT_PIPELINE_MODE", "Overlapped"),
            ("FERRUM_PAGED_MAX_SEQS", "64"),
        ])),
        &[],
    )
    .unwrap();
    let doc = r.resolved.effective_config_document();
    assert_eq!(doc["selected_pipeline_mode"], "Overlapped");
    assert_eq!(doc["selected_microbatch_size"], 64);
    let lower = resolve_with_environment(
        &preset_72b(),
        &with_rtx4090(cli(&[
            ("FERRUM_LAYER_SPLIT_PIPELINE_MODE", "overlapped"),
            ("FERRUM_PAGED_MAX_SEQS", "64"),
        ])),
        &[],
    )
    .unwrap();
    assert_eq!(
        lower.resolved.effective_config_document()["selected_microbatch_size"],
        32
    );
    assert!(lower.misread.is_empty());
    let warnings = r.misread_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "FERRUM_LAYER_SPLIT_PIPELINE_MODE=\"Overlapped\" (from --set): Ferrum's resolver accepts it as `overlapped`"
        ),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("selected_microbatch_size 64"),
        "{}",
        warnings[0]
    );
}

#[test]
fn row3_a_zero_chunk_not_written_as_0_is_accepted_as_ferrum_does() {
    let r = resolve_with_environment(
        &m3(),
        &cli(&[("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK", "00")]),
        &[],
    )
    .unwrap();
    assert_eq!(
        r.resolved.selected("scheduler_admission_policy"),
        Some("active_decode_prefill_chunk:00")
    );
    assert_eq!(r.misread.len(), 1);
    assert!(r.misread[0].explanation.contains("treats as disabled"));
    // Written exactly `0`, Ferrum refuses it.
    let zero = resolve_with_environment(
        &m3(),
        &cli(&[("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK", "0")]),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        zero.to_string(),
        "scheduler_admission_policy: unsupported combination: active decode prefill chunk must be greater than zero"
    );
}

#[test]
fn row4_a_dtype_with_a_leading_space_is_refused_as_ferrum_refuses_it() {
    let err = resolve_with_environment(&m3(), &cli(&[("FERRUM_DTYPE", " fp16")]), &[]).unwrap_err();
    assert!(matches!(err, ResolveError::Resolver { .. }));
    assert_eq!(
        err.to_string(),
        "FERRUM_DTYPE: invalid override: dtype is not supported by hardware profile"
    );
    assert_eq!(err.note(), Some("note: FERRUM_DTYPE= fp16 came from --set"));
    // Case is folded by Ferrum itself.
    assert!(resolve_with_environment(&m3(), &cli(&[("FERRUM_DTYPE", "FP16")]), &[]).is_ok());
}

#[test]
fn row5_a_bad_boolean_gets_ferrums_message() {
    let err = resolve_with_environment(
        &m3(),
        &Overrides::default(),
        &env(&[("FERRUM_USE_VLLM_PAGED_ATTN", "2")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "FERRUM_USE_VLLM_PAGED_ATTN: invalid override: invalid boolean env value: \"2\""
    );
}

#[test]
fn row6_boolean_spellings_are_kept_as_written() {
    let r = resolve_with_environment(
        &m3(),
        &cli(&[("FERRUM_PREFIX_CACHE", "true"), ("FERRUM_MOE_GRAPH", "off")]),
        &env(&[("FERRUM_VLLM_MOE", "on"), ("FERRUM_GREEDY_ARGMAX", "Yes")]),
    )
    .unwrap();
    assert_eq!(entry(&r, "FERRUM_PREFIX_CACHE").effective_value, "true");
    assert_eq!(entry(&r, "FERRUM_MOE_GRAPH").effective_value, "off");
    assert_eq!(entry(&r, "FERRUM_VLLM_MOE").effective_value, "on");
    assert_eq!(
        r.resolved.selected("prefix_cache_policy"),
        Some("prefix_cache_enabled")
    );
    // Ferrum itself rewrites derived booleans that did not come from the environment.
    let set = resolve_with_environment(&m3(), &cli(&[("FERRUM_VLLM_MOE", "on")]), &[]).unwrap();
    let vllm_moe = entry(&set, "FERRUM_VLLM_MOE");
    assert_eq!(
        (vllm_moe.effective_value.as_str(), vllm_moe.source),
        ("1", RuntimeConfigSource::MemoryProfile)
    );
    // ...and the runtime misreads the spellings it does not rewrite.
    let keys: Vec<&str> = r.misread.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "FERRUM_GREEDY_ARGMAX",
            "FERRUM_PREFIX_CACHE",
            "FERRUM_VLLM_MOE"
        ]
    );
}

#[test]
fn a_typo_is_reported_after_ferrums_own_rejection() {
    let both = cli(&[
        ("FERRUM_PAGED_MAX_SEQ", "8"),
        ("FERRUM_USE_VLLM_PAGED_ATTN", "2"),
    ]);
    let err = resolve_with_environment(&m3(), &both, &[]).unwrap_err();
    assert!(matches!(err, ResolveError::Resolver { .. }), "{err}");
    let typo_only =
        resolve_with_environment(&m3(), &cli(&[("FERRUM_PAGED_MAX_SEQ", "8")]), &[]).unwrap_err();
    assert!(typo_only
        .to_string()
        .contains("did you mean `FERRUM_PAGED_MAX_SEQS`?"));
}
