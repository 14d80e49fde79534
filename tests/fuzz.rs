//! Property tests ("fuzzing") of every input ferrum-bench reads: arbitrary bytes and
//! structure-aware mutations fed to the preset parser, the sweep table and planner, the result
//! readers (manifest + status log, stats, requests) and `merge`. The property: no panic, and
//! every rejection is a one-line error. Case counts are bounded so CI stays fast; raise them with
//! `PROPTEST_CASES=…` for a longer hunt.

use std::path::{Path, PathBuf};

use ferrum_bench::config::knobs::Registry;
use ferrum_bench::engine::instant::InstantEngine;
use ferrum_bench::engine::Cancel;
use ferrum_bench::measure::{run_repeats, CellStatus};
use ferrum_bench::preset::Preset;
use ferrum_bench::results::{
    merge, validate_cell, CellFiles, Manifest, PresetInfo, RunDir, StatsFile,
};
use ferrum_bench::sweep::{plan, RunOverrides, RunSettings, Shard, SweepTable};
use ferrum_bench::workload::{cell_workload_hash, TokenSpace};
use proptest::prelude::*;

const TINY: &str = include_str!("fixtures/tiny.toml");

fn one_line(message: &str) -> bool {
    !message.trim().is_empty() && !message.contains('\n')
}

/// Structure-aware mutation of a text: delete, duplicate or replace a line, or replace one
/// byte, or insert arbitrary text.
fn mutate(text: &str, op: u8, at: usize, payload: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let i = at % lines.len();
    match op % 5 {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => lines[i] = payload.to_string(),
        3 => {
            // Replace the value of a `key = value` line.
            if let Some((k, _)) = lines[i].split_once('=') {
                lines[i] = format!("{k}= {payload}");
            }
        }
        _ => lines.insert(i, payload.to_string()),
    }
    lines.join("\n")
}

/// Values that hit bounds and types: numbers at the edges, strings, arrays, tables.
fn payload() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551615".to_string()),
        Just("4294967296".to_string()),
        Just("1e-300".to_string()),
        Just("1e300".to_string()),
        Just("nan".to_string()),
        Just("\"02\"".to_string()),
        Just("[2, \"02\", 2]".to_string()),
        Just("[]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("[sweep.knobs]".to_string()),
        Just("[[sweep.exclude]]".to_string()),
        "[ -~]{0,40}",
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
    ]
}

fn check_preset(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("fuzz.toml");
    if let Err(err) = Preset::parse(path, text) {
        let msg = err.to_string();
        prop_assert!(one_line(&msg), "preset error is not one line: {msg:?}");
    }
    Ok(())
}

fn check_sweep(text: &str) -> Result<(), TestCaseError> {
    match SweepTable::from_file_text(text) {
        Err(err) => {
            let msg = err.to_string();
            prop_assert!(one_line(&msg), "sweep error is not one line: {msg:?}");
        }
        Ok(table) => {
            let run = RunSettings::resolve(None, &RunOverrides::default()).unwrap();
            let check = |name: &str, value: &str| -> Result<String, String> {
                Registry::global()
                    .canonical_value(name, value)
                    .map_err(|e| e.to_string())
            };
            if let Err(err) = plan("fuzz", &run, &table, &[], &check) {
                let msg = err.to_string();
                prop_assert!(one_line(&msg), "plan error is not one line: {msg:?}");
            }
        }
    }
    Ok(())
}

const SWEEP: &str = "mode = \"grid\"\nconcurrency = [2, 4]\n[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [1, 2, 64]\nFERRUM_PAGED_MAX_SEQS = [8, 16]\n[[exclude]]\nFERRUM_MOE_BATCH_THRESHOLD = 64\nconcurrency = 2\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn preset_parser_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_preset(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn preset_parser_mutations(op in any::<u8>(), at in any::<usize>(), p in payload(), op2 in any::<u8>(), at2 in any::<usize>()) {
        let once = mutate(TINY, op, at, &p);
        check_preset(&once)?;
        check_preset(&mutate(&once, op2, at2, &p))?;
    }

    #[test]
    fn sweep_table_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_sweep(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn sweep_table_mutations(op in any::<u8>(), at in any::<usize>(), p in payload(), op2 in any::<u8>(), at2 in any::<usize>()) {
        let once = mutate(SWEEP, op, at, &p);
        check_sweep(&once)?;
        check_sweep(&mutate(&once, op2, at2, &p))?;
    }
}

/// A complete two-cell shard written through the library.
fn write_shard(root: &Path, shard: Shard) -> PathBuf {
    let run = RunSettings::resolve(
        None,
        &RunOverrides {
            requests: Some(3),
            repeats: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let sweep =
        SweepTable::from_file_text("[knobs]\nFERRUM_PAGED_MAX_SEQS = [8, 16, 32, 64]\n").unwrap();
    let p = plan("m3", &run, &sweep, &[], &|_, v| Ok(v.to_string())).unwrap();
    let cells = p.shard(Some(shard));
    let tokens = TokenSpace::with_special_prefix(500, 10);
    let id = format!("run-{}", shard.index);
    let rd = RunDir::create(root, &id).unwrap();
    let wh = cell_workload_hash(&run.workload, &tokens, run.seed, run.repeats).unwrap();
    let preset = PresetInfo::new("m3", Path::new("m3.toml"), "name = \"m3\"\n");
    let mut manifest = Manifest::new(&id, preset, &run, &p, &cells, Some(shard), None, wh);
    for c in &cells {
        let m = run_repeats(
            &mut InstantEngine::new("test"),
            &run.cell_spec(tokens.clone(), c.load),
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
        manifest.set_status(&c.key, CellStatus::Completed, None);
    }
    rd.write_manifest(&manifest).unwrap();
    rd.root
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Mutate one file of a run directory: truncate, flip a byte, splice in a JSON value, replace
/// with arbitrary bytes, or (for the status log) append a line.
fn damage(path: &Path, op: u8, at: usize, bytes: &[u8], json_value: &str) {
    let mut data = std::fs::read(path).unwrap_or_default();
    let n = data.len().max(1);
    match op % 6 {
        0 => data.truncate(at % n),
        1 => {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] ^= bytes.first().copied().unwrap_or(0xff) | 1;
            }
        }
        2 => {
            // Replace the value after the k-th `:` with a JSON value (type confusion).
            let text = String::from_utf8_lossy(&data).into_owned();
            let colons: Vec<usize> = text.match_indices(':').map(|(i, _)| i).collect();
            if let Some(&c) = colons.get(at % colons.len().max(1)) {
                let rest = &text[c + 1..];
                let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
                data = format!("{}: {json_value}{}", &text[..c], &rest[end..]).into_bytes();
            }
        }
        3 => data = bytes.to_vec(),
        4 => {
            let _ = std::fs::remove_file(path);
            return;
        }
        _ => data.extend_from_slice(bytes),
    }
    std::fs::write(path, data).unwrap();
}

fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551616".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("99".to_string()),
        Just("\"completed\"".to_string()),
        Just("\"failed\"".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Result readers and merge on a damaged input: no panic; errors are one line; a failed
    /// merge leaves nothing in its output root.
    #[test]
    fn result_readers_and_merge_survive_damage(
        which in any::<usize>(),
        op in any::<u8>(),
        at in any::<usize>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        value in json_value(),
        also_log in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let a = write_shard(&base, Shard { index: 1, count: 2 });
        let b = write_shard(&base, Shard { index: 2, count: 2 });
        let damaged = tmp.path().join("damaged");
        copy_dir(&b, &damaged);
        let targets = files(&damaged);
        let target = &targets[which % targets.len()];
        damage(target, op, at, &bytes, &value);
        if also_log {
            let mut log = std::fs::read(damaged.join("status.jsonl")).unwrap_or_default();
            log.extend_from_slice(&bytes);
            log.push(b'\n');
            std::fs::write(damaged.join("status.jsonl"), log).unwrap();
        }
        if let Ok(rd) = RunDir::open(&damaged) {
            match rd.read_manifest() {
                Ok(m) => {
                    for c in &m.cells {
                        if let Err(e) = validate_cell(&rd, c) {
                            prop_assert!(one_line(&e.to_string()), "{e}");
                        }
                        if let Err(e) = rd.read_stats(&c.name) {
                            prop_assert!(one_line(&e.to_string()), "{e}");
                        }
                    }
                }
                Err(e) => prop_assert!(one_line(&e.to_string()), "{e}"),
            }
            if let Err(e) = rd.completed_cell_keys() {
                prop_assert!(one_line(&e.to_string()), "{e}");
            }
        }
        let out = tmp.path().join("merged");
        match merge(&[a.clone(), damaged.clone()], &out) {
            Ok(report) => prop_assert!(report.run_dir.root.join("manifest.json").is_file()),
            Err(e) => {
                prop_assert!(one_line(&e.to_string()), "{e}");
                let left = std::fs::read_dir(&out).map_or(0, |d| d.count());
                prop_assert_eq!(left, 0, "a failed merge left files behind");
            }
        }
    }
}
