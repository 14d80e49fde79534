//! `ferrum-bench report`: the self-contained HTML report of a run directory, and the
//! `--no-report` option with which `sweep`, `run` and `tune` write it when they finish.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::orchestrate::Outcome;
use crate::report::html;

/// Options of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory (`results/<run_id>`).
    #[arg(required_unless_present = "compare")]
    pub run_dir: Option<PathBuf>,
    /// Instead of a run's report: the comparison of BASE and CAND (each side as for `compare`)
    /// with verdicts, CIs and config drift (default output `compare.html`).
    #[arg(long, num_args = 2, value_names = ["BASE", "CAND"], conflicts_with = "run_dir")]
    pub compare: Option<Vec<PathBuf>>,
    /// With --compare: compare pairs whose workload hashes differ.
    #[arg(long)]
    pub force: bool,
    /// Where to write the HTML file (default `<RUN_DIR>/report.html`, or `compare.html` with
    /// --compare).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Write the report and print its path.
pub fn run(args: Args) -> Result<i32, Error> {
    if args.force && args.compare.is_none() {
        return Err(Error::Usage(
            "--force applies to --compare BASE CAND only (a run's report compares nothing)".into(),
        ));
    }
    // A bare file name has an empty parent, which the atomic writer cannot open to sync: name
    // the working directory explicitly.
    let out = args.out.map(|p| match p.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new(".").join(p),
        _ => p,
    });
    let path = match (&args.compare, &args.run_dir) {
        (Some(sides), _) => {
            let opts = crate::compare::CompareOptions {
                force: args.force,
                ..Default::default()
            };
            let report = crate::compare::compare_paths(&sides[0], &sides[1], &opts)?;
            let path = out.unwrap_or_else(|| Path::new(".").join("compare.html"));
            html::write_compare_report(&report, &path)?;
            path
        }
        (None, Some(dir)) => html::write_report(dir, out.as_deref())?,
        (None, None) => {
            return Err(Error::Usage(
                "report needs a run directory, or --compare BASE CAND".into(),
            ))
        }
    };
    super::print_stdout(&format!("{}\n", path.display()))?;
    Ok(crate::error::EXIT_OK)
}

/// The report option of `sweep`, `run` and `tune`.
#[derive(Debug, Clone, clap::Args)]
pub struct AfterRunOpts {
    /// Do not write `<RUN_DIR>/report.html` when the run ends.
    #[arg(long)]
    pub no_report: bool,
}

/// After `sweep`/`run`: write `<run_dir>/report.html` (also after an interruption, for the cells
/// that finished); see [`html::write_after_run`].
pub fn after_run(outcome: &Outcome, opts: &AfterRunOpts) {
    let Outcome::Ran(ran) = outcome else { return };
    html::write_after_run(&ran.dir, opts.no_report);
}
