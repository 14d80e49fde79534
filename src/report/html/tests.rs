//! Rendering tests on a synthetic run built from the golden `manifest.json` / `stats.json`.

use super::*;
use crate::engine::StepRecord;
use crate::results::{Manifest, StatsFile, StepLine};

fn golden<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The golden examples redact host numbers as strings; give them numbers back.
    if let Some(host) = v.get_mut("host") {
        host["cores"] = 2.into();
        host["memory_bytes"] = (1u64 << 30).into();
    }
    serde_json::from_value(v).unwrap()
}

/// The golden 2×2 run: three completed cells (objective values per repeat given) and one failed.
fn run(values: &[[f64; 3]; 3], with_steps: bool) -> RunData {
    let manifest: Manifest = golden("manifest.json");
    let template: StatsFile = golden("stats.json");
    let mut entries = manifest.cells.clone();
    entries.sort_by_key(|c| c.index);
    let mut completed = 0;
    let cells = entries
        .into_iter()
        .map(|entry| {
            let done = entry.status == crate::measure::CellStatus::Completed;
            let stats = done.then(|| {
                let mut s = template.clone();
                s.cell.name = entry.name.clone();
                s.aggregate.output_tokens_per_s = crate::stats::aggregate(&values[completed]);
                let repeat = s.repeats[0].clone();
                s.repeats = values[completed]
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let mut r = repeat.clone();
                        r.repeat = i as u32;
                        r.output_tokens_per_s = v;
                        r
                    })
                    .collect();
                s
            });
            let k = completed as f64;
            completed += usize::from(done);
            let steps = (with_steps && done).then(|| {
                (0..50u64)
                    .map(|i| StepLine {
                        repeat: 0,
                        step: StepRecord {
                            step: i,
                            start_ns: i * 1_000_000,
                            duration_ns: 1_000_000,
                            prefill_tokens: 0,
                            decode_tokens: 2,
                            sequences: 2,
                            moe_path: if i < 25 { "batched" } else { "per_item" }.into(),
                            distinct_experts: 1.0,
                            kv_blocks_in_use: 3,
                            waiting: 1,
                            admitted: 0,
                            finished: 0,
                        },
                    })
                    .collect()
            });
            let samples = |base: f64| -> Vec<f64> { if done { (0..40).map(|i| base + k + i as f64).collect() } else { Vec::new() } };
            CellData {
                effective_config: Some(serde_json::json!({
                    "selected_max_sequences": entry.knobs["FERRUM_PAGED_MAX_SEQS"],
                    "entries": [{"key": "FERRUM_MOE_BATCH_THRESHOLD", "effective_value": entry.knobs["FERRUM_MOE_BATCH_THRESHOLD"]}],
                })),
                ttft_ms: samples(100.0),
                tpot_ms: samples(10.0),
                itl_ms: samples(9.0),
                steps,
                stats,
                entry,
            }
        })
        .collect();
    RunData {
        manifest,
        cells,
        tune: None,
    }
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

#[test]
fn every_section_and_chart_is_present_and_nothing_is_fetched() {
    let html = render(&run(
        &[
            [100.0, 101.0, 102.0],
            [300.0, 301.0, 302.0],
            [200.0, 202.0, 204.0],
        ],
        true,
    ));
    for id in [
        "run",
        "ranking",
        "pbest",
        "heatmap",
        "pareto",
        "not-measured",
        "config-diff",
        "distributions",
        "timelines",
    ] {
        assert_eq!(count(&html, &format!("id=\"{id}\"")), 1, "section {id}");
    }
    assert_eq!(count(&html, "data-chart=\"heatmap\""), 1);
    assert_eq!(count(&html, "data-chart=\"scatter\""), 2);
    assert_eq!(count(&html, "data-chart=\"cdf-overlay\""), 3);
    assert_eq!(count(&html, "data-chart=\"cdf\""), 9);
    assert_eq!(count(&html, "data-chart=\"timeline\""), 3);
    assert!(html.contains("data-engine-kind=\"fake\""));
    assert!(!html.contains("http://") && !html.contains("https://"));
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            assert!(
                html[i + attr.len()..].starts_with('#'),
                "non-local {attr} at {i}"
            );
        }
    }
    assert!(html.matches("url(").count() == html.matches("url(#").count());
    // The failed cell and its reason; the diff between best (SEQS=32) and worst (SEQS=8).
    assert!(html.contains("engine failure: scripted"));
    assert!(
        html.contains(
            "<code>selected_max_sequences</code></td><td>&quot;32&quot;</td><td>&quot;8&quot;</td>"
        ),
        "diff"
    );
    // Byte-for-byte reproducible.
    assert_eq!(
        html,
        render(&run(
            &[
                [100.0, 101.0, 102.0],
                [300.0, 301.0, 302.0],
                [200.0, 202.0, 204.0]
            ],
            true
        ))
    );
}

#[test]
fn ranking_marks_best_and_ties_and_the_heatmap_stars_the_best() {
    // Cell 1 (300 ± small) is best; cells 0 and 2 overlap (≈ 150 ± wide and 140 ± wide).
    let html = render(&run(
        &[
            [100.0, 150.0, 200.0],
            [300.0, 301.0, 302.0],
            [90.0, 140.0, 190.0],
        ],
        false,
    ));
    let ranks: Vec<&str> = html
        .split("<tr data-cell=")
        .skip(1)
        .map(|row| {
            let td = &row[row.find("\">").unwrap() + 2..];
            let td = &td[td.find('>').unwrap() + 1..];
            &td[..td.find("</td>").unwrap()]
        })
        .collect();
    assert_eq!(ranks, ["1 ★", "=2", "=2"]);
    assert_eq!(count(&html, "class=\"hm-cell best\""), 1);
    assert!(html.contains("★ 301"));
    assert_eq!(count(&html, "data-chart=\"timeline\""), 0);
    assert!(html.contains("run with <code>--steps</code>"));
    // Without steps the timeline section says so; the failed cell is crossed in the heatmap.
    assert!(html.contains("data-status=\"failed\"><title>"));
}

#[test]
fn pbest_section_names_the_winner_and_lists_flagged_repeats() {
    let mut data = run(
        &[
            [100.0, 101.0, 102.0],
            [300.0, 301.0, 302.0],
            [200.0, 202.0, 204.0],
        ],
        false,
    );
    let html = render(&data);
    let section = &html[html.find("<section id=\"pbest\"").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains("best: "), "{section}");
    assert!(section.contains("P(best) 1.00"), "{section}");
    assert!(section.contains("each cell's repeats resampled on their own"));
    assert!(section.contains("No noise readings"));
    // A flagged repeat appears in the interference table; rounds make the analysis paired.
    let stats = data
        .cells
        .iter_mut()
        .find_map(|c| c.stats.as_mut())
        .unwrap();
    stats.repeats[1].noise = Some(crate::noise::NoiseSample {
        steal_pct: Some(0.0),
        iowait_pct: Some(0.0),
        other_cpu_pct: Some(41.5),
        loadavg_1m: Some(3.2),
        cores: 2,
        cpu_mhz: None,
        calibration_ms: Some(4.0),
        calibration_best_ms: Some(3.0),
        gpu_sm_mhz: None,
        gpu_slowdown_reasons: None,
        flags: vec![
            crate::noise::NoiseFlag::OtherProcesses,
            crate::noise::NoiseFlag::SlowCalibration,
        ],
    });
    for c in data.cells.iter_mut().filter_map(|c| c.stats.as_mut()) {
        for r in c.repeats.iter_mut() {
            r.round = Some(r.repeat);
        }
    }
    let html = render(&data);
    assert!(html.contains("Repeats measured under interference"));
    assert!(html.contains("other_processes+slow_calibration"));
    assert!(html.contains("41.5"));
    assert!(html.contains("rounds resampled jointly"));
}

#[test]
fn a_partial_cell_is_ranked_with_its_repeats_and_labelled() {
    let mut data = run(
        &[
            [100.0, 101.0, 102.0],
            [300.0, 301.0, 302.0],
            [200.0, 202.0, 204.0],
        ],
        false,
    );
    let i = data
        .cells
        .iter()
        .position(|c| c.stats.is_some())
        .expect("a measured cell");
    let entry = &mut data.cells[i].entry;
    entry.status = crate::measure::CellStatus::Partial;
    entry.repeats_done = Some(2);
    entry.repeats_planned = Some(3);
    let name = entry.name.clone();
    let html = render(&data);
    // Still ranked (three ranked rows), labelled in its rank cell, and listed with its count.
    assert_eq!(count(&html, "<tr data-cell="), 3);
    assert_eq!(count(&html, " (partial 2/3)</td>"), 1);
    assert!(html.contains("<tr data-status=\"partial\">"));
    assert!(html.contains("2 of 3 planned repeats measured"));
    assert!(html.contains(&name));
    assert!(html.contains("1 partial"), "header counts partial cells");
}
