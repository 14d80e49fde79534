//! `ferrum-bench merge DIR… [--out RESULTS_ROOT]`: join result directories (e.g. the shards of a
//! sweep run with `--shard I/N` on several machines) into a new run directory.

use std::path::PathBuf;

use clap::Parser;

use crate::error::{Error, EXIT_OK};
use crate::results;

/// Options of `merge`.
#[derive(Debug, Parser)]
pub struct Args {
    /// Run directories to merge (each holds a manifest.json); at least two.
    #[arg(required = true, num_args = 2..)]
    pub dirs: Vec<PathBuf>,
    /// Results root under which the merged run directory is created.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

/// Merge, print the new directory on stdout and a one-line summary on stderr.
pub fn run(args: Args) -> Result<i32, Error> {
    let report = results::merge(&args.dirs, &args.out)?;
    eprintln!(
        "merged {} cell(s) ({} completed) of {} planned from {} directories",
        report.cells,
        report.completed,
        report.planned_cells,
        args.dirs.len()
    );
    if report.cells < report.planned_cells {
        eprintln!(
            "warning: {} planned cell(s) are in none of the merged directories",
            report.planned_cells - report.cells
        );
    }
    println!("{}", report.run_dir.root.display());
    Ok(EXIT_OK)
}
