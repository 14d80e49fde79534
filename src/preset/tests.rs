//! Preset parsing and source-precedence tests.

use std::path::Path;

use super::*;
use crate::config::{
    resolve_with_environment, AutoConfigSource, Overrides, ResolveError, RuntimeConfigSource,
};

fn parse(text: &str) -> Result<Preset, PresetError> {
    Preset::parse(Path::new("p.toml"), text)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const M3: &str = r#"
name = "m3"
description = "test"
[model]
profile = "qwen3_30b_a3b_gptq_int4"
[hardware]
profile = "auto"
compiled_features = "m3_fast_path_without_fa2"
[workload]
profile = "m3_qwen3_30b_a3b_int4"
[env]
FERRUM_PAGED_MAX_SEQS = 32
FERRUM_PREFIX_CACHE = false
FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE = " 010"
"#;

#[test]
fn a_full_preset_parses_with_knob_values_as_written() {
    let preset = parse(M3).unwrap();
    assert_eq!(preset.name, "m3");
    assert_eq!(preset.model.architecture, "qwen3_moe");
    assert_eq!(preset.hardware_profile, "auto");
    assert_eq!(preset.workload_profile, "m3_qwen3_30b_a3b_int4");
    let env: Vec<(&str, &str, usize)> = preset
        .env
        .iter()
        .map(|k| (k.name.as_str(), k.value.as_str(), k.line))
        .collect();
    assert_eq!(
        env,
        [
            ("FERRUM_PAGED_MAX_SEQS", "32", 12),
            // A TOML boolean is written as Ferrum's config file writes it.
            ("FERRUM_PREFIX_CACHE", "0", 13),
            // A string is kept byte for byte.
            ("FERRUM_SCHED_PREFILL_FIRST_UNTIL_ACTIVE", " 010", 14),
        ]
    );
}

#[test]
fn syntax_errors_and_unknown_keys_name_file_and_line() {
    assert_eq!(
        err("name = \"x\"\nbogus = 1\n"),
        "p.toml:2:1: unknown field `bogus`, expected one of `name`, `description`, `model`, `hardware`, `workload`, `env`, `engine`, `run`, `sweep`; remove or rename the key (see README \"Presets\")"
    );
    let message = err("name = \"x\"\n[model]\nprofil = \"unknown\"\n");
    assert!(
        message.starts_with("p.toml:3:1: unknown field `profil`"),
        "{message}"
    );
    let message = err("name = \"x\"\n[extra]\n");
    assert!(message.starts_with("p.toml:2:"), "{message}");
    assert!(message.contains("unknown field `extra`"), "{message}");
    let message = err("name = \"x\"\n[model\n");
    assert!(message.starts_with("p.toml:2:"), "{message}");
    let message = err("description = \"no name\"\n");
    assert!(message.contains("missing field `name`"), "{message}");
    let message = err("name = \"x\"\n[workload]\ntarget_concurrency = \"many\"\n");
    assert!(message.starts_with("p.toml:3:"), "{message}");
}

#[test]
fn unknown_profiles_list_the_choices() {
    assert_eq!(
        err("name = \"x\"\n[hardware]\nprofile = \"rtx5090\"\n"),
        "p.toml:3: unknown hardware profile `rtx5090`: expected one of rtx4090, cpu, unknown, auto"
    );
    assert!(err("name = \"x\"\n[model]\nprofile = \"llama\"\n")
        .contains("unknown model profile `llama`"));
    assert!(
        err("name = \"x\"\n[workload]\nprofile = \"chat\"\n").contains("unknown workload profile")
    );
    assert!(
        err("name = \"x\"\n[hardware]\ncompiled_features = \"fast\"\n")
            .contains("unknown compiled_features set `fast`")
    );
    assert!(
        err("name = \"x\"\n[hardware]\ncompiled_features = { cuda = true, turbo = true }\n")
            .contains("unknown field `turbo`")
    );
}

#[test]
fn knob_names_are_checked_at_resolution_with_the_line_and_the_fix() {
    // Loading keeps every value; names are checked after Ferrum's resolver has run.
    let typo = parse("name = \"x\"\n[env]\nFERRUM_PAGED_MAX_SEQ = 8\n").unwrap();
    assert_eq!(
        resolve_with_environment(&typo, &Overrides::default(), &[])
            .unwrap_err()
            .to_string(),
        "p.toml:3: unknown knob `FERRUM_PAGED_MAX_SEQ` (did you mean `FERRUM_PAGED_MAX_SEQS`?); run `ferrum-bench knobs` for the list, or pass --allow-unknown-knobs"
    );
    let zero = parse("name = \"x\"\n[env]\nFERRUM_MOE_BATCH_THRESHOLD = 0\n").unwrap();
    assert_eq!(zero.env[0].value, "0");
    assert!(err("name = \"x\"\n[env]\nFERRUM_PAGED_MAX_SEQS = [1]\n").contains("has a array value"));
    let unknown = parse("name = \"x\"\n[env]\nFERRUM_NOT_A_KNOB = 1\n").unwrap();
    let allowed = resolve_with_environment(
        &unknown,
        &Overrides {
            allow_unknown_knobs: true,
            ..Overrides::default()
        },
        &[],
    )
    .unwrap();
    assert_eq!(allowed.warnings.len(), 1);
    assert!(allowed.warnings[0].contains("p.toml:3 ([env])"));
}

#[test]
fn byte_sizes_accept_integers_and_units() {
    assert_eq!(parse_byte_size("24GiB"), Some(24 << 30));
    assert_eq!(parse_byte_size("1.5 GiB"), Some(3 << 29));
    assert_eq!(parse_byte_size("512MiB"), Some(512 << 20));
    assert_eq!(parse_byte_size("40GB"), Some(40_000_000_000));
    assert_eq!(parse_byte_size("1024"), Some(1024));
    assert_eq!(parse_byte_size("24 gigs"), None);
    assert_eq!(parse_byte_size("-1GiB"), None);
    let preset = parse("name = \"x\"\n[hardware]\nprofile = \"rtx4090\"\nvram_bytes = \"16GiB\"\n[model]\nestimated_weight_bytes = 1000\n").unwrap();
    assert_eq!(preset.model.estimated_weight_bytes, Some(1000));
    assert!(err("name = \"x\"\n[hardware]\nvram_bytes = \"lots\"\n")
        .starts_with("p.toml:3: invalid byte size for `vram_bytes`"));
}

#[test]
fn fields_override_profiles_and_unknown_profile_fields_stay_absent() {
    let preset = parse(
        "name = \"x\"\n[model]\nprofile = \"qwen3_30b_a3b_gptq_int4\"\nnum_hidden_layers = 24\n[model.moe]\nexperts_per_token = 4\n",
    )
    .unwrap();
    assert_eq!(preset.model.num_hidden_layers, Some(24));
    let moe = preset.model.moe.unwrap();
    assert_eq!((moe.num_experts, moe.experts_per_token), (128, 4));
    let unknown = parse("name = \"x\"\n[model]\nprofile = \"unknown\"\n").unwrap();
    assert_eq!(unknown.model.head_dim, None);
    assert!(err("name = \"x\"\n[model.moe]\nnum_experts = 8\n")
        .contains("needs num_experts and experts_per_token"));
}

#[test]
fn later_tables_are_kept_for_later_stages() {
    let preset = parse("name = \"x\"\n[engine]\nkind = \"reference\"\n[run]\nseed = 1\n[sweep]\nconcurrency = [1]\n").unwrap();
    assert_eq!(preset.engine.unwrap().kind(), "reference");
    assert_eq!(preset.run.unwrap().seed, Some(1));
    assert_eq!(preset.sweep.unwrap().concurrency, Some(vec![1]));
    assert!(err("name = \"x\"\nengine = 3\n").contains("invalid type"));
    // Unknown keys in the later tables are reported with their line too.
    assert!(
        err("name = \"x\"\n[run]\nseeds = 1\n").starts_with("p.toml:3:1: unknown field `seeds`")
    );
    // `[engine]` is parsed by kind after the file: its errors name the table's line.
    let engine = err("name = \"x\"\n[engine]\nlayers = 2\n");
    assert!(
        engine.starts_with("p.toml:2: invalid [engine] table: unknown field `layers`"),
        "{engine}"
    );
    assert!(err("name = \"x\"\n[sweep]\nFERRUM_PAGED_MAX_SEQS = [8]\n")
        .starts_with("p.toml:3:1: unknown field `FERRUM_PAGED_MAX_SEQS`"));
}

fn resolve(
    overrides: &Overrides,
    environment: &[(&str, &str)],
) -> Result<crate::config::Resolution, ResolveError> {
    let environment: Vec<(String, String)> = environment
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    resolve_with_environment(&parse(M3).unwrap(), overrides, &environment)
}

fn seqs(resolution: &crate::config::Resolution) -> (String, AutoConfigSource, RuntimeConfigSource) {
    let d = resolution
        .resolved
        .decisions
        .iter()
        .find(|d| d.selection == "max_sequences")
        .unwrap();
    let entry = resolution
        .resolved
        .runtime_config
        .get("FERRUM_PAGED_MAX_SEQS")
        .unwrap();
    (d.selected.clone(), d.source, entry.source)
}

#[test]
fn precedence_is_script_case_over_cli_over_env_over_config_file() {
    let plain = resolve(&Overrides::default(), &[]).unwrap();
    assert_eq!(
        seqs(&plain),
        (
            "32".into(),
            AutoConfigSource::ConfigFile,
            RuntimeConfigSource::ConfigFile
        )
    );
    let env_only = resolve(&Overrides::default(), &[("FERRUM_PAGED_MAX_SEQS", "24")]).unwrap();
    assert_eq!(
        seqs(&env_only),
        ("24".into(), AutoConfigSource::Env, RuntimeConfigSource::Env)
    );
    assert!(env_only.warnings[0].contains("FERRUM_PAGED_MAX_SEQS"));
    let cli = Overrides {
        cli: vec![("FERRUM_PAGED_MAX_SEQS".into(), "16".into())],
        ..Overrides::default()
    };
    let with_cli = resolve(&cli, &[("FERRUM_PAGED_MAX_SEQS", "24")]).unwrap();
    assert_eq!(
        seqs(&with_cli),
        ("16".into(), AutoConfigSource::Cli, RuntimeConfigSource::Cli)
    );
    let cell = Overrides {
        script_case: vec![("FERRUM_PAGED_MAX_SEQS".into(), "8".into())],
        ..cli
    };
    let with_cell = resolve(&cell, &[("FERRUM_PAGED_MAX_SEQS", "24")]).unwrap();
    assert_eq!(
        seqs(&with_cell),
        (
            "8".into(),
            AutoConfigSource::ScriptCase,
            RuntimeConfigSource::ScriptCase
        )
    );
}

#[test]
fn hardware_flag_replaces_the_profile() {
    let on_cpu = resolve(&Overrides::default(), &[]).unwrap();
    assert_eq!(on_cpu.resolved.hardware_capabilities.backend, "cpu");
    let on_gpu = resolve(
        &Overrides {
            hardware: Some("rtx4090".into()),
            ..Overrides::default()
        },
        &[],
    )
    .unwrap();
    assert_eq!(
        on_gpu.resolved.selected("attention_decode_backend"),
        Some("vllm_paged_attn_v1_short")
    );
    let bad = resolve(
        &Overrides {
            hardware: Some("tpu".into()),
            ..Overrides::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(bad
        .to_string()
        .starts_with("unknown hardware profile `tpu` for --hardware"));
}

#[test]
fn resolver_errors_keep_ferrums_text_and_say_where_the_value_came_from() {
    let cli = Overrides {
        cli: vec![("FERRUM_KV_MAX_BLOCKS".into(), "0".into())],
        ..Overrides::default()
    };
    let error = resolve(&cli, &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "FERRUM_KV_MAX_BLOCKS: invalid override: must be greater than zero"
    );
    assert_eq!(
        error.note(),
        Some("note: FERRUM_KV_MAX_BLOCKS=0 came from --set")
    );
    let error = resolve(
        &Overrides {
            cli: vec![("FERRUM_MAX_BATCHED_TOKENS".into(), "8".into())],
            ..Overrides::default()
        },
        &[],
    )
    .unwrap_err();
    assert_eq!(
        error.note(),
        Some("note: FERRUM_MAX_BATCHED_TOKENS=8 came from --set")
    );
    let error = resolve(&Overrides::default(), &[("FERRUM_VLLM_MOE", "1")]).unwrap_err();
    assert!(error.note().unwrap().contains("came from the environment"));
    let knob = resolve(
        &Overrides {
            cli: vec![("FERRUM_MOE_BATCH_TRESHOLD".into(), "4".into())],
            ..Overrides::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(knob.to_string().ends_with("(from --set)"), "{knob}");
}

#[test]
fn unknown_knobs_from_any_source_are_errors_unless_allowed() {
    let cli = Overrides {
        cli: vec![("FERRUM_MOE_BATCH_TRESHOLD".into(), "4".into())],
        ..Overrides::default()
    };
    let error = resolve(&cli, &[]).unwrap_err().to_string();
    assert!(
        error.contains("did you mean `FERRUM_MOE_BATCH_THRESHOLD`?"),
        "{error}"
    );
    let allowed = resolve(
        &Overrides {
            allow_unknown_knobs: true,
            ..cli
        },
        &[],
    )
    .unwrap();
    assert!(allowed
        .warnings
        .iter()
        .any(|w| w.contains("FERRUM_MOE_BATCH_TRESHOLD")));
    assert!(allowed
        .resolved
        .runtime_config
        .get("FERRUM_MOE_BATCH_TRESHOLD")
        .is_some());
}

#[test]
fn non_utf8_bytes_are_reported_with_line_column_and_byte_offset() {
    let bytes = b"name = \"x\"\ndescription = \"caf\xE9 au lait\"\n".to_vec();
    let e = super::utf8_text(std::path::Path::new("p.toml"), bytes)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "p.toml:2:19: not valid UTF-8: byte offset 29 holds 0xE9; save the file as UTF-8"
    );
    // A multi-byte character before the bad byte counts as one column.
    let bytes = "é = 1\n".bytes().chain([0xFF, b'\n']).collect::<Vec<u8>>();
    let e = super::utf8_text(std::path::Path::new("q.toml"), bytes)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "q.toml:2:1: not valid UTF-8: byte offset 7 holds 0xFF; save the file as UTF-8"
    );
    let ok = super::utf8_text(std::path::Path::new("q.toml"), "é = 1\n".into()).unwrap();
    assert_eq!(ok, "é = 1\n");
}

#[test]
fn shape_from_resolves_against_the_preset_directory_and_errors_name_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("models/tiny");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        r#"{"model_type": "qwen3_moe", "hidden_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
            "vocab_size": 848, "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 128, "max_position_embeddings": 4096}"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("presets")).unwrap();
    let preset_path = dir.path().join("presets/twin.toml");
    let text = |engine: &str| {
        format!(
            "name = \"t\"\n[model]\nprofile = \"qwen3_30b_a3b_gptq_int4\"\n[engine]\n{engine}\n"
        )
    };
    let load = |engine: &str| Preset::parse(&preset_path, &text(engine));
    let p = load("shape_from = \"../models/tiny\"\nweight_seed = 3").unwrap();
    let t = p
        .engine
        .as_ref()
        .unwrap()
        .reference_table()
        .unwrap()
        .clone();
    assert_eq!(
        (t.hidden_size, t.num_experts, t.weight_seed),
        (Some(128), Some(4), Some(3))
    );
    let spec = crate::engine::reference::EngineSpec::resolve(Some(&t), "qwen3_moe").unwrap();
    assert_eq!((spec.max_context_len, spec.vocab_size), (4096, 848));
    assert_eq!(
        spec.shape_from,
        Some(dir.path().join("presets/../models/tiny/config.json"))
    );
    // An explicit key may repeat the file's value, not contradict it.
    assert!(load("shape_from = \"../models/tiny\"\nnum_layers = 2").is_ok());
    let e = load("shape_from = \"../models/tiny\"\nnum_layers = 4")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("twin.toml:4:") && e.contains("num_layers = 4 contradicts shape_from"),
        "{e}"
    );
    let e = load("shape_from = \"missing\"").unwrap_err().to_string();
    assert!(
        e.contains("presets/missing/config.json") && e.contains("cannot read"),
        "{e}"
    );
    // The [model] architecture must be the file's.
    let e = Preset::parse(
        &preset_path,
        "name = \"t\"\n[model]\nprofile = \"qwen25_72b_gptq_int4\"\n[engine]\nshape_from = \"../models/tiny\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("model_type `qwen3_moe`"), "{e}");
    // Only the reference engine takes a shape.
    let e = load("kind = \"fake\"\nshape_from = \"../models/tiny\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("shape_from"), "{e}");
}
