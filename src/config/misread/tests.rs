//! Misread detection: each runtime reader of the spec, the document's raw reads, the registry
//! fallback, and no findings for canonical presets.

use std::path::Path;

use crate::config::{resolve_with_environment, MisreadValue, Overrides};
use crate::preset::Preset;

const CPU_M3: &str = "name = \"m3\"\n[model]\nprofile = \"qwen3_30b_a3b_gptq_int4\"\n[hardware]\nprofile = \"cpu\"\n[workload]\nprofile = \"m3_qwen3_30b_a3b_int4\"\n";

fn misread_with(set: &[(&str, &str)], env: &[(&str, &str)]) -> Vec<MisreadValue> {
    let preset = Preset::parse(Path::new("m3.toml"), CPU_M3).unwrap();
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let overrides = Overrides {
        cli: pairs(set),
        ..Overrides::default()
    };
    resolve_with_environment(&preset, &overrides, &pairs(env))
        .unwrap()
        .misread
}

fn one(key: &str, value: &str) -> Option<String> {
    let found = misread_with(&[(key, value)], &[]);
    assert!(found.len() <= 1, "{found:?}");
    found.into_iter().next().map(|m| m.to_string())
}

#[test]
fn positive_integers_name_the_value_the_engine_uses_instead() {
    let zero = one("FERRUM_MOE_BATCH_THRESHOLD", "0").unwrap();
    assert_eq!(
        zero,
        "FERRUM_MOE_BATCH_THRESHOLD=\"0\" (from --set): Ferrum's integer parser reads it as 0, but Ferrum's model code reads the batched-decode threshold only as a positive integer written without spaces, so the engine will use 4 (its default)"
    );
    let garbage = one("FERRUM_MOE_BATCH_THRESHOLD", "abc").unwrap();
    assert!(garbage.contains("not a non-negative integer"), "{garbage}");
    assert!(garbage.ends_with("will use 4 (its default)"), "{garbage}");
    let spaced = one("FERRUM_MOE_PREFILL_THRESHOLD", " 8").unwrap();
    assert!(spaced.contains("reads it as 8"), "{spaced}");
    assert!(spaced.ends_with("will use 32 (its default)"), "{spaced}");
    for fine in ["8", "+8", "010"] {
        assert_eq!(one("FERRUM_MOE_BATCH_THRESHOLD", fine), None, "{fine}");
    }
    let capacity = one("FERRUM_KV_CAPACITY", "0").unwrap();
    assert!(
        capacity.contains("min(model max context, 512) = 512"),
        "{capacity}"
    );
    let seqs = one("FERRUM_PAGED_MAX_SEQS", "16 ").unwrap();
    assert!(seqs.ends_with("will use 32 (its default)"), "{seqs}");
}

#[test]
fn booleans_follow_each_readers_own_rule() {
    let prefix = one("FERRUM_PREFIX_CACHE", "true").unwrap();
    assert!(
        prefix.contains("reads it as on, but its model code turns the prefix cache on only for exactly `1`, so the engine will run with it off"),
        "{prefix}"
    );
    assert_eq!(one("FERRUM_PREFIX_CACHE", "1"), None);
    assert_eq!(one("FERRUM_PREFIX_CACHE", "off"), None);
    let batched = one("FERRUM_MOE_BATCHED_DECODE", "false").unwrap();
    assert!(batched.ends_with("run with it on"), "{batched}");
    let garbage = one("FERRUM_MOE_BATCHED", "nope").unwrap();
    assert!(garbage.contains("not a boolean"), "{garbage}");
    let profile = one("FERRUM_MOE_PROFILE", "0").unwrap();
    assert!(profile.contains("whenever it is set"), "{profile}");
    let ffi = one("FERRUM_FA2_DIRECT_FFI", "no").unwrap();
    assert!(ffi.ends_with("run with it on"), "{ffi}");
    assert_eq!(one("FERRUM_FA2_DIRECT_FFI", "OFF"), None);
    assert_eq!(one("FERRUM_FA2_SOURCE", "false"), None);
}

#[test]
fn derived_booleans_are_misread_only_when_ferrum_does_not_rewrite_them() {
    // From --set Ferrum rewrites the value to 0 itself; from the environment it is kept.
    assert!(misread_with(&[("FERRUM_USE_VLLM_PAGED_ATTN", "off")], &[]).is_empty());
    let env = misread_with(&[], &[("FERRUM_USE_VLLM_PAGED_ATTN", "off")]);
    assert_eq!(env.len(), 1, "{env:?}");
    assert!(env[0].to_string().contains("(from the environment"));
    assert!(env[0].explanation.ends_with("run with it on"));
}

#[test]
fn values_ferrums_document_reads_raw() {
    let count = one("FERRUM_CUDA_DEVICE_COUNT", " 2").unwrap();
    assert!(count.contains("reporting cuda_device_count 0"), "{count}");
    let devices = one("FERRUM_SELECTED_GPU_DEVICES", "0,,1").unwrap();
    assert!(devices.contains("selected_gpu_devices null"), "{devices}");
    assert_eq!(one("FERRUM_SELECTED_GPU_DEVICES", " 0 , 1"), None);
    assert!(one("FERRUM_SELECTED_LAYER_SPLIT_STAGES", "[{").is_some());
    assert!(one("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK", " 0").is_some());
    assert_eq!(one("FERRUM_ACTIVE_DECODE_PREFILL_CHUNK", "064"), None);
    // Without a layer-split plan the pipeline mode is not read.
    assert_eq!(one("FERRUM_LAYER_SPLIT_PIPELINE_MODE", "Batch"), None);
}

#[test]
fn knobs_without_a_specified_reader_are_checked_against_their_registered_type() {
    let streams = one("FERRUM_MOE_STREAMS", "four").unwrap();
    assert!(streams.contains("not a valid integer value"), "{streams}");
    assert_eq!(one("FERRUM_MOE_STREAMS", " 4"), None);
    assert!(one("FERRUM_BACKEND", "tpu").is_some());
    assert_eq!(one("FERRUM_BACKEND", "CUDA"), None);
}

#[test]
fn shipped_presets_have_no_misread_values() {
    for (file, hardware) in [
        ("presets/m3.toml", None),
        ("presets/m3.toml", Some("rtx4090")),
        ("presets/qwen25_72b_2x4090.toml", Some("rtx4090")),
        ("tests/fixtures/tiny.toml", None),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let preset = Preset::load(&path).unwrap();
        let overrides = Overrides {
            hardware: hardware.map(str::to_string),
            ..Overrides::default()
        };
        let found = resolve_with_environment(&preset, &overrides, &[])
            .unwrap()
            .misread;
        assert!(found.is_empty(), "{file}: {found:?}");
    }
}
