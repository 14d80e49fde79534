//! Tests of the results directory: atomic writes, whole-cell writes, resume detection, golden
//! key structure of `stats.json` / `manifest.json`, summaries and merge.

use crate::engine::Cancel;
use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::measure::fake::FakeEngine;
use crate::measure::{run_repeats, CellStatus};
use crate::report;
use crate::sweep::{plan, RunOverrides, SweepTable};
use crate::workload::{cell_workload_hash, TokenSpace};

const PRESET_TEXT: &str = "name = \"m3\"\n[run]\nrequests = 6\n";

fn check(_: &str, v: &str) -> Result<String, String> {
    Ok(v.to_string())
}

fn settings() -> RunSettings {
    let o = RunOverrides {
        requests: Some(6),
        warmup_requests: Some(1),
        concurrency: Some(2),
        ..Default::default()
    };
    RunSettings::resolve(None, &o).unwrap()
}

fn the_plan(run: &RunSettings) -> Plan {
    let t = SweepTable::from_file_text(
        "[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [1, 4]\nFERRUM_PAGED_MAX_SEQS = [8, 32]\n",
    )
    .unwrap();
    plan("m3", run, &t, &[], &check).unwrap()
}

fn tokens() -> TokenSpace {
    TokenSpace::with_special_prefix(1000, 16)
}

/// Create a run directory for `shard` (None = all), run its cells with the fake engine (cells whose
/// name contains `fail_if` are recorded as failed), write everything, return the dir.
fn write_run(root: &Path, shard: Option<Shard>, preset_text: &str, fail_if: &str) -> RunDir {
    let run = settings();
    let p = the_plan(&run);
    let cells = p.shard(shard);
    let id = RunDir::new_run_id(&format!("{shard:?}"));
    let rd = RunDir::create(root, &id).unwrap();
    let wh = cell_workload_hash(&run.workload, &tokens(), run.seed, run.repeats).unwrap();
    let preset = PresetInfo::new("m3", Path::new("presets/m3.toml"), preset_text);
    let mut manifest = Manifest::new(&id, preset, &run, &p, &cells, shard, None, wh);
    rd.write_manifest(&manifest).unwrap();
    for c in &cells {
        let effective = format!("{{\"cell\":\"{}\"}}\n", c.name);
        if c.name.contains(fail_if) {
            rd.write_cell(
                &c.name,
                CellFiles {
                    effective_config_json: &effective,
                    decision_trace_jsonl: "",
                    result: None,
                },
            )
            .unwrap();
            manifest.set_status(
                &c.key,
                CellStatus::Failed,
                Some("engine failure: scripted".into()),
            );
            continue;
        }
        let mut engine = FakeEngine::new(1_000_000);
        let mut spec = run.cell_spec(tokens(), c.load);
        // Machine readings would make the golden key structure depend on timing (a run shorter
        // than one clock tick has no CPU deltas); the noise monitor has its own tests.
        spec.monitor_noise = false;
        let m = run_repeats(&mut engine, &spec, &Cancel::new(), &mut |_| {}).unwrap();
        let stats = StatsFile::new(&p, c, &run, &m);
        rd.write_cell(
            &c.name,
            CellFiles {
                effective_config_json: &effective,
                decision_trace_jsonl: "{\"selection\":\"x\"}\n",
                result: Some((&stats, &m)),
            },
        )
        .unwrap();
        manifest.engine = Some(m.engine.clone());
        manifest.set_status(&c.key, CellStatus::Completed, None);
    }
    manifest.finished_at = Some(now_rfc3339());
    rd.write_manifest(&manifest).unwrap();
    rd
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.json");
    write_atomic(&p, b"one").unwrap();
    write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_run_writes_every_file_and_resume_sees_complete_cells() {
    let dir = tempfile::tempdir().unwrap();
    let rd = write_run(
        dir.path(),
        None,
        PRESET_TEXT,
        "MOE_BATCH_THRESHOLD=4__PAGED_MAX_SEQS=32",
    );
    let m = rd.read_manifest().unwrap();
    assert_eq!(m.cells.len(), 4);
    assert!(m.run_id.len() > 16 && m.run_id.ends_with(&rd.run_id[rd.run_id.len() - 8..]));
    let done = rd.completed_cell_keys().unwrap();
    assert_eq!(done.len(), 3, "the failed cell has no stats.json");
    let name = "c2__MOE_BATCH_THRESHOLD=1__PAGED_MAX_SEQS=8";
    for f in [
        "effective_config.json",
        "decision_trace.jsonl",
        "requests.jsonl",
        "stats.json",
    ] {
        assert!(rd.cell_dir(name).join(f).is_file(), "{f}");
    }
    let requests = std::fs::read_to_string(rd.cell_dir(name).join("requests.jsonl")).unwrap();
    assert_eq!(requests.lines().count(), 6 * 3);
    let first: crate::measure::RequestRecord =
        serde_json::from_str(requests.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first.repeat, first.id, first.status.as_str()),
        (0, 0, "ok")
    );
    let failed = rd.cell_dir("c2__MOE_BATCH_THRESHOLD=4__PAGED_MAX_SEQS=32");
    assert!(failed.join("effective_config.json").is_file() && !failed.join("stats.json").exists());
    // No partial directories or temp files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(rd.root.join(CELLS_DIR))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
    // A complete cell is never overwritten; the failed one can be retried.
    let files = CellFiles {
        effective_config_json: "{}\n",
        decision_trace_jsonl: "",
        result: None,
    };
    assert!(rd.write_cell(name, files).is_err());
    rd.write_cell("c2__MOE_BATCH_THRESHOLD=4__PAGED_MAX_SEQS=32", files)
        .unwrap();
    assert_eq!(RunDir::open(&rd.root).unwrap(), rd);
    assert!(RunDir::open(dir.path()).is_err());
}

#[test]
fn newer_schema_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rd = write_run(dir.path(), None, PRESET_TEXT, "never");
    let path = rd.root.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "\"schema_version\": 1",
        "\"schema_version\": 2",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let err = rd.read_manifest().unwrap_err().to_string();
    assert!(err.starts_with("unsupported schema_version 2"), "{err}");
}

/// Replace every leaf by its JSON type and every array by the structure of its first element, so
/// golden files pin keys and types while timings and hashes may vary.
fn key_structure(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), key_structure(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.first().map(key_structure).into_iter().collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::String("null".into()),
    }
}

/// Redact values that change from run to run (timings, ids, host, commit) in a golden example.
fn redact(v: &mut serde_json::Value) {
    use serde_json::Value;
    const KEYS: [&str; 8] = [
        "run_id",
        "started_at",
        "finished_at",
        "git_commit",
        "cpu_model",
        "cores",
        "memory_bytes",
        "os",
    ];
    if let Value::Object(m) = v {
        for (k, val) in m.iter_mut() {
            if KEYS.contains(&k.as_str()) && !val.is_null() {
                *val = Value::String("<redacted>".into());
            } else {
                redact(val);
            }
        }
    } else if let Value::Array(a) = v {
        a.iter_mut().for_each(redact);
    }
}

fn check_golden(actual: &serde_json::Value, golden_file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(golden_file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut example = actual.clone();
        redact(&mut example);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, to_json_pretty(&example, &path).unwrap()).unwrap();
    }
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (mut a, mut g) = (key_structure(actual), key_structure(&golden));
    // Redacted fields are strings in the golden file; compare them as such.
    redact(&mut a);
    redact(&mut g);
    assert_eq!(a, g, "key structure of {golden_file} changed; if deliberate, bump SCHEMA_VERSION, document it in README and rerun with UPDATE_GOLDEN=1");
}

#[test]
fn stats_and_manifest_match_golden_key_structure() {
    let dir = tempfile::tempdir().unwrap();
    let rd = write_run(
        dir.path(),
        None,
        PRESET_TEXT,
        "MOE_BATCH_THRESHOLD=4__PAGED_MAX_SEQS=32",
    );
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            rd.cell_dir("c2__MOE_BATCH_THRESHOLD=1__PAGED_MAX_SEQS=8")
                .join(STATS_FILE),
        )
        .unwrap(),
    )
    .unwrap();
    check_golden(&stats, "stats.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rd.root.join(MANIFEST_FILE)).unwrap())
            .unwrap();
    // Put the failed cell first so the array's first element carries a `reason` string.
    if let Some(cells) = manifest.get_mut("cells").and_then(|c| c.as_array_mut()) {
        cells.sort_by_key(|c| c["status"] != "failed");
    }
    check_golden(&manifest, "manifest.json");
}

#[test]
fn summaries_rank_by_output_tokens_and_list_failures() {
    let dir = tempfile::tempdir().unwrap();
    let rd = write_run(
        dir.path(),
        None,
        PRESET_TEXT,
        "MOE_BATCH_THRESHOLD=4__PAGED_MAX_SEQS=32",
    );
    let m = rd.read_manifest().unwrap();
    let stats: BTreeMap<String, StatsFile> = rd
        .completed_cell_keys()
        .unwrap()
        .into_iter()
        .map(|(k, name)| (k, rd.read_stats(&name).unwrap()))
        .collect();
    let rows = report::summary_rows(&m, &stats);
    let csv = report::summary_csv(&m.sweep.knob_names, &rows).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("cell,key,status,reason,FERRUM_MOE_BATCH_THRESHOLD,FERRUM_PAGED_MAX_SEQS,load,concurrency,request_rate,repeats,output_tok_s_mean,output_tok_s_ci95"));
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.contains(",failed,engine failure: scripted,4,32,c2,2,,,"));
    let table = report::ranked_table(&rows);
    assert!(table.contains("1 ★"), "{table}");
    assert!(table.contains("engine failure: scripted"));
    // The fake engine is equally fast everywhere: 12000 tok/s with a zero-width CI.
    assert!(table.contains("2000.0 ± 0.0"), "{table}");
    let md = report::summary_markdown(&m, &rows);
    assert!(md.contains("## Cells ranked by output tok/s") && md.contains("## Cells not measured"));
    rd.write_summaries(&csv, &md).unwrap();
    assert!(rd.root.join(SUMMARY_CSV).is_file() && rd.root.join(SUMMARY_MD).is_file());
}

#[test]
fn merge_joins_shards_and_rejects_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_run(
        dir.path(),
        Some(Shard { index: 1, count: 2 }),
        PRESET_TEXT,
        "never",
    );
    let b = write_run(
        dir.path(),
        Some(Shard { index: 2, count: 2 }),
        PRESET_TEXT,
        "never",
    );
    let out = tempfile::tempdir().unwrap();
    let r = merge(&[a.root.clone(), b.root.clone()], out.path()).unwrap();
    assert_eq!((r.cells, r.completed, r.planned_cells), (4, 4, 4));
    let full = write_run(dir.path(), None, PRESET_TEXT, "never");
    let merged_keys = r.run_dir.completed_cell_keys().unwrap();
    assert_eq!(merged_keys, full.completed_cell_keys().unwrap());
    let mm = r.run_dir.read_manifest().unwrap();
    assert_eq!(mm.sweep.shard, None);
    assert!(mm.cells.windows(2).all(|w| w[0].index < w[1].index));
    assert!(r.run_dir.root.join(SUMMARY_CSV).is_file());

    // A comment is not a change of the experiment; a value is.
    let c = write_run(
        dir.path(),
        Some(Shard { index: 2, count: 2 }),
        &format!("# edited\n{PRESET_TEXT}"),
        "never",
    );
    merge(&[a.root.clone(), c.root.clone()], out.path()).unwrap();
    let d = write_run(
        dir.path(),
        Some(Shard { index: 2, count: 2 }),
        "name = \"m3\"\ndescription = \"edited\"\n",
        "never",
    );
    let err = merge(&[a.root.clone(), d.root.clone()], out.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("the preset differs"), "{err}");
    let err = merge(&[a.root.clone(), a.root.clone()], out.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("given twice"), "{err}");
    let err = merge(&[a.root.clone(), full.root.clone()], out.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("complete in both"), "{err}");
}

#[test]
fn steps_jsonl_is_written_only_when_steps_were_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = settings();
    run.record_steps = true;
    run.repeats = 2;
    let p = the_plan(&run);
    let rd = RunDir::create(dir.path(), "r").unwrap();
    let c = &p.cells[0];
    let m = run_repeats(
        &mut FakeEngine::new(1_000),
        &run.cell_spec(tokens(), c.load),
        &Cancel::new(),
        &mut |_| {},
    )
    .unwrap();
    let stats = StatsFile::new(&p, c, &run, &m);
    rd.write_cell(
        &c.name,
        CellFiles {
            effective_config_json: "{}\n",
            decision_trace_jsonl: "",
            result: Some((&stats, &m)),
        },
    )
    .unwrap();
    let steps = std::fs::read_to_string(rd.cell_dir(&c.name).join("steps.jsonl")).unwrap();
    assert_eq!(steps.lines().count(), 2 * 6);
    let last: serde_json::Value = serde_json::from_str(steps.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            last["repeat"].as_u64(),
            last["step"].as_u64(),
            last["moe_path"].as_str()
        ),
        (Some(1), Some(5), Some("none"))
    );
    let plain = dir.path().join("r").join(CELLS_DIR).join(&p.cells[1].name);
    let run2 = settings();
    let m2 = run_repeats(
        &mut FakeEngine::new(1_000),
        &run2.cell_spec(tokens(), c.load),
        &Cancel::new(),
        &mut |_| {},
    )
    .unwrap();
    let stats2 = StatsFile::new(&p, &p.cells[1], &run2, &m2);
    rd.write_cell(
        &p.cells[1].name,
        CellFiles {
            effective_config_json: "{}\n",
            decision_trace_jsonl: "",
            result: Some((&stats2, &m2)),
        },
    )
    .unwrap();
    assert!(!plain.join("steps.jsonl").exists());
}
