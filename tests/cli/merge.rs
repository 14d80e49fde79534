//! `ferrum-bench merge`: shards written through the library merge into the unsharded cell set;
//! mismatched presets are refused with exit code 2.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use ferrum_bench::engine::instant::InstantEngine;
use ferrum_bench::measure::{run_repeats, CellStatus};
use ferrum_bench::results::{CellFiles, Manifest, PresetInfo, RunDir, StatsFile};
use ferrum_bench::sweep::{plan, RunOverrides, RunSettings, Shard, SweepTable};
use ferrum_bench::workload::{cell_workload_hash, TokenSpace};

fn write_shard(root: &Path, shard: Option<Shard>, preset_text: &str) -> PathBuf {
    let run = RunSettings::resolve(
        None,
        &RunOverrides {
            requests: Some(4),
            repeats: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let sweep = SweepTable::from_file_text(
        "concurrency = [2, 4]\n[knobs]\nFERRUM_PAGED_MAX_SEQS = [8, 16]\n",
    )
    .unwrap();
    let p = plan("m3", &run, &sweep, &[], &|_, v| Ok(v.to_string())).unwrap();
    let cells = p.shard(shard);
    let tokens = TokenSpace::with_special_prefix(500, 10);
    let id = RunDir::new_run_id(&format!("{shard:?}"));
    let rd = RunDir::create(root, &id).unwrap();
    let wh = cell_workload_hash(&run.workload, &tokens, run.seed, run.repeats).unwrap();
    let preset = PresetInfo::new("m3", Path::new("presets/m3.toml"), preset_text);
    let mut manifest = Manifest::new(&id, preset, &run, &p, &cells, shard, None, wh);
    for c in &cells {
        let m = run_repeats(
            &mut InstantEngine::new("test"),
            &run.cell_spec(tokens.clone(), c.load),
            &ferrum_bench::engine::Cancel::new(),
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

#[test]
fn merged_shards_equal_the_unsharded_cell_set() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_shard(
        dir.path(),
        Some(Shard { index: 1, count: 2 }),
        "name = \"m3\"\n",
    );
    let b = write_shard(
        dir.path(),
        Some(Shard { index: 2, count: 2 }),
        "name = \"m3\"\n",
    );
    let full = write_shard(dir.path(), None, "name = \"m3\"\n");
    let out = dir.path().join("merged");
    let assert = Command::cargo_bin("ferrum-bench")
        .unwrap()
        .args([
            "merge",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "merged 4 cell(s) (4 completed) of 4 planned",
        ));
    let merged = PathBuf::from(String::from_utf8_lossy(&assert.get_output().stdout).trim());
    let merged = RunDir::open(&merged).unwrap();
    let full = RunDir::open(&full).unwrap();
    assert_eq!(
        merged.completed_cell_keys().unwrap(),
        full.completed_cell_keys().unwrap()
    );
    assert!(merged.root.join("summary.csv").is_file());
}

#[test]
fn mismatched_presets_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_shard(
        dir.path(),
        Some(Shard { index: 1, count: 2 }),
        "name = \"m3\"\n",
    );
    let b = write_shard(
        dir.path(),
        Some(Shard { index: 2, count: 2 }),
        "name = \"m4\"\n",
    );
    Command::cargo_bin("ferrum-bench")
        .unwrap()
        .args([
            "merge",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            dir.path().join("m").to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "the preset differs (name: \"m3\" → \"m4\")",
        ));
}
