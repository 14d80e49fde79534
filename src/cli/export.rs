//! `ferrum-bench export <CELL> --ferrum-bench-report [--out FILE]`: a cell's statistics in
//! Ferrum's `BenchReport` JSON shape.

use std::path::PathBuf;

use clap::Parser;

use crate::error::{Error, EXIT_OK};
use crate::export::ferrum_report::{bench_report, stats_path_of};
use crate::results::{to_json_pretty, write_atomic};

/// Options of `export`.
#[derive(Debug, Parser)]
pub struct Args {
    /// A cell directory (results/<run_id>/cells/<cell>) or its stats.json.
    pub cell: PathBuf,
    /// Write Ferrum's BenchReport JSON (the only export format so far; required).
    #[arg(long, required = true)]
    pub ferrum_bench_report: bool,
    /// Output file (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Export one cell.
pub fn run(args: Args) -> Result<i32, Error> {
    let report = bench_report(&stats_path_of(&args.cell))?;
    let json = to_json_pretty(&report, args.out.as_deref().unwrap_or(&args.cell))?;
    match &args.out {
        Some(path) => write_atomic(path, json.as_bytes())?,
        None => crate::cli::print_stdout(&json)?,
    }
    Ok(EXIT_OK)
}
