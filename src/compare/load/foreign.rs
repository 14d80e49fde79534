//! Foreign baselines: Ferrum's `BenchReport` and vLLM's `bench serve` result JSON, mapped onto
//! [`crate::metric::METRICS`] names.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{InputFormat, Side, SideCell, SideInfo};
use crate::results::ResultsError;
use crate::stats::{Sample, MIN_REPEATS_FOR_CI};

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    cur.as_f64().filter(|x| x.is_finite())
}

fn load_label(concurrency: Option<f64>, rate: Option<f64>) -> String {
    match (concurrency, rate) {
        (Some(c), _) => format!("c{c}"),
        (None, Some(r)) => format!("r{r}"),
        _ => "c?".to_string(),
    }
}

/// BenchReport fields per metric: (metric, path of the `ScalarStats` in the report, path of the
/// per-repeat value inside a `repeat_metrics` row).
const BENCH_REPORT: [(&str, &[&str], &[&str]); 12] = [
    (
        "output_tok_s",
        &["output_throughput_tps"],
        &["output_throughput_tps"],
    ),
    (
        "total_tok_s",
        &["total_throughput_tps"],
        &["total_throughput_tps"],
    ),
    (
        "request_rps",
        &["request_throughput_rps"],
        &["request_throughput_rps"],
    ),
    ("goodput_rps", &["goodput_rps"], &["goodput_rps"]),
    ("ttft_p50", &["ttft_ms", "p50"], &["ttft_ms", "p50"]),
    ("ttft_p99", &["ttft_ms", "p99"], &["ttft_ms", "p99"]),
    ("tpot_p50", &["tpot_ms", "p50"], &["tpot_ms", "p50"]),
    ("tpot_p99", &["tpot_ms", "p99"], &["tpot_ms", "p99"]),
    ("itl_p50", &["itl_ms", "p50"], &["itl_ms", "p50"]),
    ("itl_p99", &["itl_ms", "p99"], &["itl_ms", "p99"]),
    ("e2e_p50", &["e2e_ms", "p50"], &["e2e_ms", "p50"]),
    ("e2e_p99", &["e2e_ms", "p99"], &["e2e_ms", "p99"]),
];

/// A Ferrum `BenchReport` (FERRUM_FACTS §1.5): one cell.
pub(super) fn bench_report(path: &Path, doc: &Value) -> Result<Side, ResultsError> {
    let n = num(doc, &["n_repeats"]).unwrap_or(0.0) as usize;
    let rows: Vec<&Value> = doc
        .get("repeat_metrics")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut samples = BTreeMap::new();
    for (metric, stats_path, row_path) in BENCH_REPORT {
        let sample = if !rows.is_empty() {
            let xs: Vec<f64> = rows.iter().filter_map(|r| num(r, row_path)).collect();
            if xs.len() != rows.len() {
                continue;
            }
            Sample::from_values(&xs)
        } else {
            let mut p: Vec<&str> = stats_path.to_vec();
            p.push("mean");
            num(doc, &p).map(|mean| {
                p.pop();
                p.push("stddev");
                // Ferrum omits stddev below 3 repeats and when it is exactly 0.
                let std = num(doc, &p).or((n >= MIN_REPEATS_FOR_CI).then_some(0.0));
                Sample { n, mean, std }
            })
        };
        // ITL is all zeros when any repeat lacked complete ITL evidence (FERRUM_FACTS §1.8).
        if let Some(s) = sample.filter(|s| !(metric.starts_with("itl") && s.mean == 0.0)) {
            samples.insert(metric.to_string(), s);
        }
    }
    let model = doc.get("model").and_then(Value::as_str).unwrap_or("model");
    let label = load_label(num(doc, &["concurrency"]), num(doc, &["request_rate"]));
    Ok(Side {
        info: SideInfo {
            path: path.display().to_string(),
            format: InputFormat::FerrumBenchReport,
            harness_version: None,
            harness_commit: None,
            engine: None,
            engine_commit: doc
                .get("env")
                .and_then(|e| e.get("commit_sha"))
                .and_then(Value::as_str)
                .map(String::from),
        },
        cells: vec![SideCell {
            name: format!("{model} {label}"),
            knobs: BTreeMap::new(),
            load_label: label,
            workload_hash: None,
            samples,
            engine_path: BTreeMap::new(),
            run_id: None,
            rounds: BTreeMap::new(),
            config: None,
        }],
        not_measured: Vec::new(),
    })
}

/// vLLM `bench serve` result fields per metric.
const VLLM: [(&str, &str); 12] = [
    ("output_tok_s", "output_throughput"),
    ("total_tok_s", "total_token_throughput"),
    ("request_rps", "request_throughput"),
    ("goodput_rps", "request_goodput"),
    ("ttft_p50", "median_ttft_ms"),
    ("ttft_p99", "p99_ttft_ms"),
    ("tpot_p50", "median_tpot_ms"),
    ("tpot_p99", "p99_tpot_ms"),
    ("itl_p50", "median_itl_ms"),
    ("itl_p99", "p99_itl_ms"),
    ("e2e_p50", "median_e2el_ms"),
    ("e2e_p99", "p99_e2el_ms"),
];

/// vLLM `bench serve` results: each document one run (repeat) of one cell.
pub(super) fn vllm(path: &Path, docs: &[Value]) -> Result<Side, ResultsError> {
    let mut samples = BTreeMap::new();
    for (metric, field) in VLLM {
        let xs: Vec<f64> = docs.iter().filter_map(|d| num(d, &[field])).collect();
        if xs.len() == docs.len() {
            if let Some(s) = Sample::from_values(&xs) {
                samples.insert(metric.to_string(), s);
            }
        }
    }
    if samples.is_empty() {
        return Err(ResultsError::Corrupt {
            path: path.display().to_string(),
            message: "no metric field (output_throughput, median_ttft_ms, ...) in every run".into(),
        });
    }
    let first = &docs[0];
    let label = load_label(
        num(first, &["max_concurrency"]),
        num(first, &["request_rate"]),
    );
    let model = first
        .get("model_id")
        .and_then(Value::as_str)
        .unwrap_or("vllm");
    Ok(Side {
        info: SideInfo {
            path: path.display().to_string(),
            format: InputFormat::VllmBenchServe,
            harness_version: None,
            harness_commit: None,
            engine: None,
            engine_commit: None,
        },
        cells: vec![SideCell {
            name: format!("{model} {label}"),
            knobs: BTreeMap::new(),
            load_label: label,
            workload_hash: None,
            samples,
            engine_path: BTreeMap::new(),
            run_id: None,
            rounds: BTreeMap::new(),
            config: None,
        }],
        not_measured: Vec::new(),
    })
}
