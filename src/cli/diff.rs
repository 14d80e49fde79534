//! `ferrum-bench diff <A> <B>`: semantic diff of two decision traces, two effective configs (or
//! cell directories) or two run directories; exit 0 when equal, 1 when different.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::diff::{diff_paths, render_config_diff, render_run_diff, DiffOutcome};
use crate::error::{diff_exit_code, Error};

/// Output format of `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per change.
    Text,
    /// JSON.
    Json,
}

/// Options of `diff`.
#[derive(Debug, Parser)]
pub struct Args {
    /// A: decision_trace.jsonl, effective_config.json, a cell directory or a run directory.
    pub a: PathBuf,
    /// B: the same kind of input as A.
    pub b: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Diff, print, return 0 (equal) or 1 (different).
pub fn run(args: Args) -> Result<i32, Error> {
    let outcome = diff_paths(&args.a, &args.b)?;
    let text = match args.format {
        Format::Json => crate::results::to_json_pretty(&outcome, &args.b)?,
        Format::Text => match &outcome {
            DiffOutcome::Config { diff } => render_config_diff(diff),
            DiffOutcome::Runs { runs } => render_run_diff(runs),
        },
    };
    crate::cli::print_stdout(&text)?;
    Ok(diff_exit_code(outcome.is_equal()))
}
