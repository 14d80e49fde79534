//! `ferrum-bench report`: the self-contained HTML report of a run directory, and the
//! `--no-report` option with which `sweep` and `run` write it when they finish.

use std::path::PathBuf;

use crate::error::Error;
use crate::orchestrate::Outcome;
use crate::report::html;

/// Options of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory (`results/<run_id>`).
    pub run_dir: PathBuf,
    /// Where to write the HTML file (default `<RUN_DIR>/report.html`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Write the report and print its path.
pub fn run(args: Args) -> Result<i32, Error> {
    let path = html::write_report(&args.run_dir, args.out.as_deref())?;
    super::print_stdout(&format!("{}\n", path.display()))?;
    Ok(crate::error::EXIT_OK)
}

/// The report option of `sweep` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct AfterRunOpts {
    /// Do not write `<RUN_DIR>/report.html` when the run ends.
    #[arg(long)]
    pub no_report: bool,
}

/// After `sweep`/`run`: write `<run_dir>/report.html` (also after an interruption, for the cells
/// that finished). A failure to write it is a warning, never a change of the run's exit code:
/// the results themselves are complete, and `ferrum-bench report` can be rerun.
pub fn after_run(outcome: &Outcome, opts: &AfterRunOpts) {
    let Outcome::Ran(ran) = outcome else { return };
    if opts.no_report {
        return;
    }
    match html::write_report(&ran.dir, None) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(err) => eprintln!(
            "warning: report not written ({err}); retry with `ferrum-bench report {}`",
            ran.dir.display()
        ),
    }
}
