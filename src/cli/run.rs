//! `ferrum-bench run`: one cell (the preset's knobs plus `--set`), repeated and measured.

use std::path::PathBuf;

use crate::error::Error;
use crate::orchestrate;

use super::common::{self, LoadOpts, OutputOpts, ResolveOpts};

/// Options of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset file (TOML).
    pub preset: PathBuf,
    #[command(flatten)]
    resolve: ResolveOpts,
    #[command(flatten)]
    load: LoadOpts,
    #[command(flatten)]
    output: OutputOpts,
    #[command(flatten)]
    misread: common::MisreadOpts,
    #[command(flatten)]
    overlay: common::OverlayOpts,
    #[command(flatten)]
    report: super::report::AfterRunOpts,
}

/// Run one cell.
pub fn run(args: Args) -> Result<i32, Error> {
    let mut choices = common::choices(args.preset, args.resolve, args.load, &args.output);
    choices.single_cell = true;
    choices.allow_misread_values = args.misread.allow_misread_values;
    common::apply_overlay(&mut choices, &args.overlay)?;
    let stop = crate::sweep::install_ctrlc()
        .map_err(|err| Error::Usage(format!("cannot install the Ctrl-C handler: {err}")))?;
    let (_, outcome) = orchestrate::run(&choices, &stop)?;
    super::report::after_run(&outcome, &args.report);
    common::finish(outcome, args.output.format)
}
