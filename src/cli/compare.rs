//! `ferrum-bench compare <BASELINE> <CANDIDATE>`: verdicts per cell and metric, config drift
//! beside them, in one output format on stdout plus optional JUnit / BMF files.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::compare::{compare_paths, CompareOptions};
use crate::error::{compare_exit_code, CompareOutcome, Error};
use crate::export::{Bmf, Exporter, Json, Junit, Markdown, Terminal};
use crate::metric::{Metric, METRICS};
use crate::results::write_atomic;

/// Output format of `compare` on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Coloured terminal table (colours only on a terminal).
    Table,
    /// GitHub job-summary Markdown.
    Md,
    /// JSON with `schema_version`.
    Json,
}

/// Options of `compare`.
#[derive(Debug, Parser)]
pub struct Args {
    /// Baseline: a run directory, a cell directory, a stats.json, a Ferrum BenchReport JSON or a
    /// vLLM bench serve result JSON.
    pub baseline: PathBuf,
    /// Candidate: same kinds of input as the baseline.
    pub candidate: PathBuf,
    /// Per-metric relative threshold, e.g. `tpot_p99=8%` (repeatable; percent, 0 < t ≤ 100).
    /// Defaults: 3 % for throughput metrics, 5 % for latency metrics.
    #[arg(long = "threshold", value_name = "METRIC=PCT", value_parser = parse_threshold)]
    pub thresholds: Vec<(String, f64)>,
    /// Significance level of Welch's t-test (0 < α ≤ 0.5).
    #[arg(long, default_value_t = crate::stats::DEFAULT_ALPHA, value_parser = parse_alpha)]
    pub alpha: f64,
    /// Compare pairs whose workload hashes differ.
    #[arg(long)]
    pub force: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write JUnit XML (one test case per cell × metric; regressions are failures).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write Bencher Metric Format JSON (candidate value with CI bounds).
    #[arg(long, value_name = "FILE")]
    pub bmf: Option<PathBuf>,
    /// Exit 1 when the paired cells' effective configs differ.
    #[arg(long)]
    pub fail_on_drift: bool,
    /// Exit 4 when a verdict is inconclusive (and nothing regressed).
    #[arg(long)]
    pub fail_on_inconclusive: bool,
}

fn parse_threshold(raw: &str) -> Result<(String, f64), String> {
    let (name, value) = crate::cli::parse_key_value(raw)?;
    if Metric::by_name(&name).is_none() {
        let names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        return Err(format!(
            "unknown metric `{name}`; one of: {}",
            names.join(", ")
        ));
    }
    let number = value.trim().trim_end_matches('%').trim();
    let pct: f64 = number.parse().map_err(|_| {
        format!("threshold `{value}` for {name} is not a number; write e.g. {name}=8%")
    })?;
    if !(pct > 0.0 && pct <= 100.0) {
        return Err(format!(
            "threshold {pct} % for {name} is out of range; use 0 < t ≤ 100 %"
        ));
    }
    Ok((name, pct / 100.0))
}

fn parse_alpha(raw: &str) -> Result<f64, String> {
    let a: f64 = raw
        .parse()
        .map_err(|_| format!("--alpha `{raw}` is not a number"))?;
    if !(a > 0.0 && a <= 0.5) {
        return Err(format!(
            "--alpha {a} is out of range; use 0 < α ≤ 0.5 (e.g. 0.05)"
        ));
    }
    Ok(a)
}

/// Compare, print, write the side files, return the verdict's exit code.
pub fn run(args: Args) -> Result<i32, Error> {
    let opts = CompareOptions {
        alpha: args.alpha,
        thresholds: args.thresholds.iter().cloned().collect::<BTreeMap<_, _>>(),
        force: args.force,
    };
    let report = compare_paths(&args.baseline, &args.candidate, &opts)?;
    // Side files first: a CI job gets its JUnit/BMF whatever the verdict.
    if let Some(path) = &args.junit {
        write_atomic(path, Junit.render(&report)?.as_bytes())?;
    }
    if let Some(path) = &args.bmf {
        write_atomic(path, Bmf.render(&report)?.as_bytes())?;
    }
    let text = match args.format {
        Format::Table => Terminal {
            color: std::io::stdout().is_terminal(),
        }
        .render(&report)?,
        Format::Md => Markdown.render(&report)?,
        Format::Json => Json.render(&report)?,
    };
    crate::cli::print_stdout(&text)?;
    let c = &report.counts;
    if report.pairs.is_empty() {
        eprintln!("error: no cell of the candidate pairs with a cell of the baseline (cells are matched by knob values and load)");
    } else if c.not_comparable > 0 {
        eprintln!("error: {} pair(s) not comparable (workload hash differs); rerun with the same workload and seed, or pass --force", c.not_comparable);
    }
    let outcome = CompareOutcome {
        regressed: c.regressed > 0,
        drift: c.drifted_pairs > 0,
        inconclusive: c.inconclusive > 0,
        not_comparable: c.not_comparable > 0 || report.pairs.is_empty(),
    };
    Ok(compare_exit_code(
        outcome,
        args.fail_on_drift,
        args.fail_on_inconclusive,
    ))
}
