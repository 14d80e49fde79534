//! Resolver parity on every input Ferrum accepts (issue 7): a property test over generated
//! presets, environments and `--set` values with odd spellings (the six reported cases are in
//! `parity_rows_tests.rs`).
//!
//! The property test has two oracles, because each catches what the other cannot:
//! - **differential**: the harness pipeline (preset text → [`Preset::parse`] → layering →
//!   [`resolve_with_environment`]) must produce exactly what the resolver produces when handed
//!   the raw strings directly — same documents byte for byte, or the same error. This fails as
//!   soon as anything between the user and the resolver trims, folds, re-spells, drops or
//!   pre-validates a value (the bug of issue 7), whatever our resolver does.
//! - **independent model**: a minimal re-statement of Ferrum's acceptance rules per knob, written
//!   from the spec text (`auto_config.rs`, `runtime_config.rs` as summarised in FERRUM_FACTS
//!   §5.2), not from our resolver: the first typed-parse failure in Ferrum's read order must be
//!   the error, accepted values must appear verbatim in the entries and decision strings, and
//!   an accepted configuration must satisfy every per-value rule. This fails if our resolver
//!   drifts from Ferrum's parsing, which the differential oracle cannot see.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use sha2::{Digest, Sha256};

use super::capabilities::WorkloadProfile;
use super::resolver::FerrumConfigBuilder;
use super::runtime::{RuntimeConfigEntry, RuntimeConfigSnapshot, RuntimeConfigSource};
use super::{hardware_for, resolve_with_environment, Overrides, ResolveError};
use crate::preset::Preset;

// ---- the property test ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Bool,
    Count,
    Dtype,
    Mode,
    Csv,
    Json,
    Raw,
}

/// Every knob Ferrum's resolver or effective-config document reads, plus one the model code
/// reads (to exercise the misread path alongside).
const KNOBS: &[(&str, Class)] = &[
    ("FERRUM_USE_VLLM_PAGED_ATTN", Class::Bool),
    ("FERRUM_FA_LAYOUT_VARLEN", Class::Bool),
    ("FERRUM_FA2_SOURCE", Class::Bool),
    ("FERRUM_FA2_DIRECT_FFI", Class::Bool),
    ("FERRUM_VLLM_PAGED_ATTN_V1_SHORT", Class::Bool),
    ("FERRUM_VLLM_MOE", Class::Bool),
    ("FERRUM_MOE_DEVICE_ROUTE", Class::Bool),
    ("FERRUM_VLLM_MOE_PAIR_IDS", Class::Bool),
    ("FERRUM_MOE_GRAPH", Class::Bool),
    ("FERRUM_GREEDY_ARGMAX", Class::Bool),
    ("FERRUM_PREFIX_CACHE", Class::Bool),
    ("FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE", Class::Bool),
    ("FERRUM_PAGED_MAX_SEQS", Class::Count),
    ("FERRUM_KV_MAX_BLOCKS", Class::Count),
    ("FERRUM_MAX_BATCHED_TOKENS", Class::Count),
    ("FERRUM_MAX_MODEL_LEN", Class::Count),
    ("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK", Class::Count),
    ("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE", Class::Count),
    ("FERRUM_KV_CAPACITY", Class::Count),
    ("FERRUM_CUDA_DEVICE_COUNT", Class::Count),
    ("FERRUM_MOE_BATCH_THRESHOLD", Class::Count),
    ("FERRUM_DTYPE", Class::Dtype),
    ("FERRUM_KV_DTYPE", Class::Dtype),
    ("FERRUM_LAYER_SPLIT_PIPELINE_MODE", Class::Mode),
    ("FERRUM_REQUESTED_GPU_DEVICES", Class::Csv),
    ("FERRUM_SELECTED_GPU_DEVICES", Class::Csv),
    ("FERRUM_SELECTED_LAYER_SPLIT_STAGES", Class::Json),
    ("FERRUM_FA2_DIRECT_FFI_SHIM", Class::Raw),
    ("FERRUM_SELECTED_DISTRIBUTED_STRATEGY", Class::Raw),
    ("FERRUM_SELECTED_LAYER_SPLIT_PLAN", Class::Raw),
];

/// Ferrum's read order of the typed values parsed before any validation (auto_config.rs
/// `resolve`): eleven booleans, then four integers.
const EARLY_BOOLS: &[&str] = &[
    "FERRUM_USE_VLLM_PAGED_ATTN",
    "FERRUM_FA_LAYOUT_VARLEN",
    "FERRUM_FA2_SOURCE",
    "FERRUM_FA2_DIRECT_FFI",
    "FERRUM_VLLM_PAGED_ATTN_V1_SHORT",
    "FERRUM_VLLM_MOE",
    "FERRUM_MOE_DEVICE_ROUTE",
    "FERRUM_VLLM_MOE_PAIR_IDS",
    "FERRUM_MOE_GRAPH",
    "FERRUM_GREEDY_ARGMAX",
    "FERRUM_PREFIX_CACHE",
];
const EARLY_COUNTS: &[&str] = &[
    "FERRUM_PAGED_MAX_SEQS",
    "FERRUM_KV_MAX_BLOCKS",
    "FERRUM_MAX_BATCHED_TOKENS",
    "FERRUM_MAX_MODEL_LEN",
];
/// Derived booleans Ferrum writes back as `1`/`0` unless they came from the environment.
const WRITTEN_BACK: &[&str] = &[
    "FERRUM_USE_VLLM_PAGED_ATTN",
    "FERRUM_VLLM_PAGED_ATTN_V1_SHORT",
    "FERRUM_VLLM_MOE",
    "FERRUM_MOE_DEVICE_ROUTE",
    "FERRUM_VLLM_MOE_PAIR_IDS",
];

fn base_values(class: Class) -> Vec<&'static str> {
    match class {
        Class::Bool => vec![
            "1", "0", "1", "0", "true", "false", "yes", "no", "on", "off", "2", "", "maybe",
        ],
        Class::Count => vec![
            "0",
            "1",
            "2",
            "4",
            "8",
            "16",
            "32",
            "64",
            "512",
            "1024",
            "1536",
            "2048",
            "4096",
            "99999999999999999999999",
            "18446744073709551615",
            "-1",
            "abc",
            "",
            "4.0",
        ],
        Class::Dtype => vec!["fp16", "fp32", "bf16", "int8", "fp8", ""],
        Class::Mode => vec!["batch", "overlapped", "serial", ""],
        Class::Csv => vec!["0", "0,1", "1,0", "0,,1", " 1 , 0", "x"],
        Class::Json => vec!["[]", "[{\"stage\":0},{\"stage\":1}]", "[{", "null"],
        Class::Raw => vec![
            "/tmp/shim.so",
            "layer_split",
            "single_gpu",
            "stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79",
        ],
    }
}

/// An odd spelling of `base`: what users type.
fn spell(base: &str, transform: u8, mask: u32) -> String {
    let case = |upper_first: bool| -> String {
        base.chars()
            .enumerate()
            .map(|(i, c)| {
                if (mask >> (i % 32)) & 1 == u32::from(upper_first) {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    match transform {
        0..=3 => base.to_string(),
        4 => format!(" {base}"),
        5 => format!("{base} "),
        6 => format!("\t{base}\n"),
        7 => format!("\u{a0}{base}"),
        8 => format!("{base}\u{3000}"),
        9 => format!("\u{2003}{base}\u{2003}"),
        10 => format!("\u{200b}{base}"),
        11 => format!("0{base}"),
        12 => format!("000{base}"),
        13 => format!("+{base}"),
        14 => base.to_ascii_uppercase(),
        15 => case(true),
        16 => case(false),
        17 => String::new(),
        _ => format!("{base}{}", mask % 1000),
    }
}

#[derive(Debug, Clone)]
struct Assignment {
    knob: usize,
    /// 0: preset `[env]` string, 1: preset `[env]` typed (integer/boolean) when possible,
    /// 2: environment, 3: `--set`.
    source: u8,
    value: String,
}

#[derive(Debug, Clone)]
struct Case {
    scenario: u8,
    assignments: Vec<Assignment>,
    typo: bool,
}

fn assignment() -> impl Strategy<Value = Assignment> {
    (0..KNOBS.len()).prop_flat_map(|knob| {
        let bases = base_values(KNOBS[knob].1);
        (
            Just(knob),
            0u8..4,
            proptest::sample::select(bases),
            0u8..20,
            any::<u32>(),
        )
            .prop_map(|(knob, source, base, transform, mask)| Assignment {
                knob,
                source,
                value: spell(base, transform, mask),
            })
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u8..5,
        proptest::collection::vec(assignment(), 0..6),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(scenario, assignments, typo)| Case {
            scenario,
            assignments,
            typo,
        })
}

/// TOML basic string with every control character escaped.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the case's preset `[env]` says, as TOML lines, and the raw strings Ferrum's config file
/// would hand over for them (a TOML integer in decimal, a boolean as `1`/`0`).
fn preset_env(case: &Case) -> (BTreeMap<String, (String, String)>, String) {
    let mut env: BTreeMap<String, (String, String)> = BTreeMap::new();
    let base_72b: &[(&str, &str)] = &[
        ("FERRUM_REQUESTED_GPU_DEVICES", "\"0,1\""),
        ("FERRUM_SELECTED_GPU_DEVICES", "\"0,1\""),
        ("FERRUM_CUDA_DEVICE_COUNT", "2"),
        ("FERRUM_SELECTED_DISTRIBUTED_STRATEGY", "\"layer_split\""),
        (
            "FERRUM_SELECTED_LAYER_SPLIT_PLAN",
            "\"stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79\"",
        ),
        ("FERRUM_LAYER_SPLIT_PIPELINE_MODE", "\"batch\""),
        ("FERRUM_MAX_MODEL_LEN", "4096"),
        ("FERRUM_KV_MAX_BLOCKS", "1024"),
        ("FERRUM_PAGED_MAX_SEQS", "16"),
    ];
    if case.scenario == 3 {
        for (key, toml) in base_72b {
            let raw = toml.trim_matches('"').to_string();
            env.insert(key.to_string(), (toml.to_string(), raw));
        }
    }
    for a in case.assignments.iter().filter(|a| a.source <= 1) {
        let key = KNOBS[a.knob].0.to_string();
        let typed = a.source == 1;
        let (toml, raw) = match a.value.as_str() {
            "true" | "1" if typed && KNOBS[a.knob].1 == Class::Bool => {
                ("true".to_string(), "1".to_string())
            }
            "false" | "0" if typed && KNOBS[a.knob].1 == Class::Bool => {
                ("false".to_string(), "0".to_string())
            }
            v if typed
                && !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_digit())
                && (v == "0" || !v.starts_with('0'))
                && v.parse::<i64>().is_ok() =>
            {
                (v.to_string(), v.to_string())
            }
            v => (toml_string(v), v.to_string()),
        };
        env.insert(key, (toml, raw));
    }
    let mut text = String::from("[env]\n");
    for (key, (toml, _)) in &env {
        text.push_str(&format!("{key} = {toml}\n"));
    }
    (env, text)
}

fn preset_text(case: &Case, env_text: &str) -> String {
    let (model, hardware, features, workload) = match case.scenario {
        0 => (
            "qwen3_30b_a3b_gptq_int4",
            "rtx4090",
            "m3_fast_path_without_fa2",
            "m3_qwen3_30b_a3b_int4",
        ),
        1 => (
            "qwen3_30b_a3b_gptq_int4",
            "rtx4090",
            "m3_fast_path_with_source_fa2",
            "m3_qwen3_30b_a3b_int4",
        ),
        2 => (
            "qwen3_30b_a3b_gptq_int4",
            "cpu",
            "none",
            "m3_qwen3_30b_a3b_int4",
        ),
        3 => (
            "qwen25_72b_gptq_int4",
            "rtx4090",
            "m3_fast_path_without_fa2",
            "qwen25_72b_gptq_int4_2x4090_layer_split",
        ),
        _ => ("unknown", "unknown", "none", "serving_default"),
    };
    format!(
        "name = \"prop\"\n[model]\nprofile = \"{model}\"\n[hardware]\nprofile = \"{hardware}\"\ncompiled_features = \"{features}\"\n[workload]\nprofile = \"{workload}\"\n{env_text}"
    )
}

/// Ferrum's boolean parser, restated from the spec: trim, ASCII-lowercase, four spellings each.
fn oracle_bool(raw: &str) -> Result<bool, String> {
    let normalized = raw.trim().to_ascii_lowercase();
    if ["1", "true", "yes", "on"].contains(&normalized.as_str()) {
        Ok(true)
    } else if ["0", "false", "no", "off"].contains(&normalized.as_str()) {
        Ok(false)
    } else {
        Err(format!("invalid boolean env value: {normalized:?}"))
    }
}

/// Ferrum's integer parser, restated from the spec: trim, `usize`, the raw value quoted.
fn oracle_usize(raw: &str) -> Result<usize, String> {
    raw.trim()
        .parse::<usize>()
        .map_err(|_| format!("invalid integer env value: {raw:?}"))
}

#[derive(Default)]
struct Tally {
    accepted: Cell<u32>,
    rejected: Cell<u32>,
    early_parse_errors: Cell<u32>,
    odd_spellings_accepted: Cell<u32>,
    typos_reported_after_ferrum: Cell<u32>,
}

fn check(case: &Case, tally: &Tally) -> Result<(), String> {
    let (preset_raw, env_text) = preset_env(case);
    let text = preset_text(case, &env_text);
    let preset = Preset::parse(Path::new("prop.toml"), &text).map_err(|e| e.to_string())?;
    // The environment is a map (one value per name); `--set` may repeat a name (last wins).
    let mut environment: BTreeMap<String, String> = BTreeMap::new();
    let mut set: Vec<(String, String)> = Vec::new();
    for a in &case.assignments {
        let key = KNOBS[a.knob].0.to_string();
        match a.source {
            2 => {
                environment.insert(key, a.value.clone());
            }
            3 => set.push((key, a.value.clone())),
            _ => {}
        }
    }
    if case.typo {
        set.push(("FERRUM_PAGED_MAX_SEQ".into(), "8".into()));
    }
    let environment: Vec<(String, String)> = environment.into_iter().collect();
    let overrides = Overrides {
        cli: set.clone(),
        ..Overrides::default()
    };
    let pipeline = resolve_with_environment(&preset, &overrides, &environment);

    // Direct: the raw strings, straight into the resolver, in precedence order.
    let mut raw_layers: Vec<(String, String, RuntimeConfigSource)> = Vec::new();
    for (key, (_, raw)) in &preset_raw {
        raw_layers.push((key.clone(), raw.clone(), RuntimeConfigSource::ConfigFile));
    }
    for (key, value) in &environment {
        raw_layers.push((key.clone(), value.clone(), RuntimeConfigSource::Env));
    }
    for (key, value) in &set {
        raw_layers.push((key.clone(), value.clone(), RuntimeConfigSource::Cli));
    }
    let hardware = hardware_for(&preset, None).map_err(|e| e.to_string())?;
    let workload = WorkloadProfile::profile(&preset.workload_profile, &hardware).unwrap();
    let direct = FerrumConfigBuilder::new(RuntimeConfigSnapshot::from_entries(
        raw_layers
            .iter()
            .map(|(k, v, s)| RuntimeConfigEntry::new(k.as_str(), v.as_str(), *s)),
    ))
    .with_model_capabilities(preset.model.clone())
    .with_hardware_capabilities(hardware.clone())
    .with_workload_profile(workload)
    .resolve();

    // Oracle 1: differential.
    let resolution = match (&pipeline, &direct) {
        (Ok(got), Ok(want)) => {
            if case.typo {
                return Err("a typo'd knob name was accepted".into());
            }
            if got.resolved.effective_config_json() != want.effective_config_json() {
                return Err("effective_config.json differs from the direct resolver's".into());
            }
            if got.resolved.decision_trace_jsonl() != want.decision_trace_jsonl() {
                return Err("decision_trace.jsonl differs from the direct resolver's".into());
            }
            got
        }
        (Err(ResolveError::Resolver { error, .. }), Err(want)) => {
            if error != want {
                return Err(format!("error `{error}` instead of Ferrum's `{want}`"));
            }
            tally.rejected.set(tally.rejected.get() + 1);
            return oracle_rejection(
                case,
                &preset_raw,
                &environment,
                &set,
                &error.to_string(),
                tally,
            );
        }
        (Err(ResolveError::Knob { .. }), Ok(_)) if case.typo => {
            tally
                .typos_reported_after_ferrum
                .set(tally.typos_reported_after_ferrum.get() + 1);
            return Ok(());
        }
        (got, want) => {
            return Err(format!(
                "harness {:?} but resolver {:?}",
                got.as_ref().map(|_| "accepted").map_err(|e| e.to_string()),
                want.as_ref().map(|_| "accepted").map_err(|e| e.to_string())
            ))
        }
    };
    tally.accepted.set(tally.accepted.get() + 1);
    oracle_acceptance(case, &raw_layers, &hardware, resolution, tally)
}

/// The effective (highest-precedence) raw value and source of each key.
fn effective(
    raw_layers: &[(String, String, RuntimeConfigSource)],
) -> BTreeMap<&str, (&str, RuntimeConfigSource)> {
    raw_layers
        .iter()
        .map(|(k, v, s)| (k.as_str(), (v.as_str(), *s)))
        .collect()
}

/// Oracle 2 on a rejection: if a typed value read before any validation fails Ferrum's parser,
/// the error is exactly that parse error (the first in Ferrum's read order).
fn oracle_rejection(
    _case: &Case,
    preset_raw: &BTreeMap<String, (String, String)>,
    environment: &[(String, String)],
    set: &[(String, String)],
    message: &str,
    tally: &Tally,
) -> Result<(), String> {
    let mut layers: Vec<(String, String, RuntimeConfigSource)> = Vec::new();
    for (k, (_, raw)) in preset_raw {
        layers.push((k.clone(), raw.clone(), RuntimeConfigSource::ConfigFile));
    }
    for (k, v) in environment.iter().chain(set) {
        layers.push((k.clone(), v.clone(), RuntimeConfigSource::Cli));
    }
    let values = effective(&layers);
    if let Some(expected) = first_early_parse_error(&values) {
        tally
            .early_parse_errors
            .set(tally.early_parse_errors.get() + 1);
        if message != expected {
            return Err(format!(
                "Ferrum's first parse error is `{expected}`, got `{message}`"
            ));
        }
    }
    Ok(())
}

fn first_early_parse_error(values: &BTreeMap<&str, (&str, RuntimeConfigSource)>) -> Option<String> {
    for key in EARLY_BOOLS {
        if let Some((raw, _)) = values.get(key) {
            if let Err(reason) = oracle_bool(raw) {
                return Some(format!("{key}: invalid override: {reason}"));
            }
        }
    }
    for key in EARLY_COUNTS {
        if let Some((raw, _)) = values.get(key) {
            if let Err(reason) = oracle_usize(raw) {
                return Some(format!("{key}: invalid override: {reason}"));
            }
        }
    }
    None
}

/// Oracle 2 on an acceptance: every per-value rule of Ferrum holds and nothing was rewritten.
fn oracle_acceptance(
    case: &Case,
    raw_layers: &[(String, String, RuntimeConfigSource)],
    hardware: &super::HardwareCapabilities,
    resolution: &super::Resolution,
    tally: &Tally,
) -> Result<(), String> {
    let values = effective(raw_layers);
    if let Some(expected) = first_early_parse_error(&values) {
        return Err(format!("accepted although Ferrum fails with `{expected}`"));
    }
    let resolved = &resolution.resolved;
    // Nothing rewritten: every value is in the entries byte for byte, except the derived
    // booleans Ferrum itself writes back as 1/0 when they did not come from the environment.
    for (key, (raw, source)) in &values {
        let entry = resolved
            .runtime_config
            .get(key)
            .ok_or_else(|| format!("{key} missing from the entries"))?;
        let expected = if WRITTEN_BACK.contains(key) && *source != RuntimeConfigSource::Env {
            if oracle_bool(raw).map_err(|e| format!("{key}: {e}"))? {
                "1"
            } else {
                "0"
            }
        } else {
            raw
        };
        if entry.effective_value != expected {
            return Err(format!(
                "{key}: entry {:?}, Ferrum writes {expected:?}",
                entry.effective_value
            ));
        }
        if *raw != raw.trim() || raw.is_empty() || raw.starts_with('0') || raw.starts_with('+') {
            tally
                .odd_spellings_accepted
                .set(tally.odd_spellings_accepted.get() + 1);
        }
    }
    for (key, list) in [
        ("FERRUM_DTYPE", &hardware.supported_dtypes),
        ("FERRUM_KV_DTYPE", &hardware.supported_kv_dtypes),
    ] {
        if let Some((raw, _)) = values.get(key) {
            // Lower-cased, never trimmed.
            if !list.contains(&raw.to_ascii_lowercase()) {
                return Err(format!("{key}={raw:?} accepted but not in {list:?}"));
            }
        }
    }
    let doc = resolved.effective_config_document();
    if let Some((raw, _)) = values.get("FERRUM_LAYER_SPLIT_PIPELINE_MODE") {
        let mode = raw.trim().to_ascii_lowercase();
        if mode != "batch" && mode != "overlapped" {
            return Err(format!("pipeline mode {raw:?} accepted"));
        }
        if values.contains_key("FERRUM_SELECTED_LAYER_SPLIT_PLAN") {
            let seqs = doc["selected_max_sequences"].as_u64().unwrap_or(0);
            let microbatch = if *raw == "overlapped" {
                seqs.div_ceil(2).max(1)
            } else {
                seqs
            };
            if doc["selected_pipeline_mode"] != *raw
                || doc["selected_microbatch_size"] != microbatch
            {
                return Err(format!(
                    "pipeline {raw:?}: document says {} / {}",
                    doc["selected_pipeline_mode"], doc["selected_microbatch_size"]
                ));
            }
        }
    }
    let policy = resolved
        .selected("scheduler_admission_policy")
        .unwrap_or_default();
    let expected_policy = if let Some((raw, _)) = values.get("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK") {
        oracle_usize(raw)?;
        if *raw == "0" {
            return Err("active decode prefill chunk `0` accepted".into());
        }
        format!("active_decode_prefill_chunk:{raw}")
    } else if let Some((raw, _)) = values.get("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE") {
        oracle_usize(raw)?;
        format!("prefill_first_until_active:{raw}")
    } else if let Some((raw, _)) = values.get("FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE") {
        if oracle_bool(raw)? {
            "prompt_token_estimate".to_string()
        } else {
            "continuous_default".to_string()
        }
    } else {
        "continuous_default".to_string()
    };
    if policy != expected_policy {
        return Err(format!(
            "scheduler {policy:?}, Ferrum selects {expected_policy:?}"
        ));
    }
    if let Some((raw, _)) = values.get("FERRUM_PAGED_MAX_SEQS") {
        let seqs = oracle_usize(raw)?.to_string();
        if resolved.selected("max_sequences") != Some(seqs.as_str()) {
            return Err(format!("max_sequences for {raw:?}"));
        }
    }
    let bytes = serde_json::to_vec(&resolved.runtime_config.entries).unwrap();
    if doc["env_hash"] != format!("sha256:{:x}", Sha256::digest(bytes)) {
        return Err("env_hash is not the SHA-256 of the entries".into());
    }
    let _ = case;
    Ok(())
}

#[test]
fn the_harness_never_accepts_what_ferrum_rejects_nor_rewrites_what_it_accepts() {
    const CASES: u32 = 4000;
    let tally = Tally::default();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        rng_seed: RngSeed::Fixed(0x0007_F3A1),
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |case| {
        check(&case, &tally).map_err(|reason| TestCaseError::fail(format!("{reason}\n{case:?}")))
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    eprintln!(
        "parity: {CASES} cases: {} accepted, {} rejected by Ferrum ({} at a typed parse), {} typos reported after Ferrum accepted, {} odd spellings accepted verbatim",
        tally.accepted.get(),
        tally.rejected.get(),
        tally.early_parse_errors.get(),
        tally.typos_reported_after_ferrum.get(),
        tally.odd_spellings_accepted.get()
    );
    // Not vacuous: both outcomes, early parse errors, odd spellings and typos all occur often.
    let (accepted, rejected) = (tally.accepted.get(), tally.rejected.get());
    assert_eq!(
        accepted + rejected + tally.typos_reported_after_ferrum.get(),
        CASES
    );
    assert!(accepted > CASES / 10, "only {accepted} accepted");
    assert!(rejected > CASES / 10, "only {rejected} rejected");
    assert!(tally.early_parse_errors.get() > CASES / 20);
    assert!(tally.odd_spellings_accepted.get() > CASES / 20);
    assert!(tally.typos_reported_after_ferrum.get() > 0);
}
