//! `ferrum-bench sweep`: every cell of the preset's (or a file's) sweep, resolved, run,
//! repeated and written down; resumable and shardable.

use std::path::PathBuf;

use crate::error::Error;
use crate::orchestrate;
use crate::sweep::{parse_duration, Shard};

use super::common::{self, LoadOpts, OutputOpts, ResolveOpts};

/// Options of `sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset file (TOML); with --resume, defaults to the one the run recorded.
    #[arg(required_unless_present = "resume")]
    pub preset: Option<PathBuf>,
    /// Sweep file replacing the preset's [sweep] table (see sweeps/).
    #[arg(long)]
    sweep: Option<PathBuf>,
    /// Continue a run directory with the settings its manifest recorded: only cells without a
    /// complete, valid result run.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Refuse sweeps of more cells than this (default 10000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_cells: Option<u64>,
    /// Run the deterministic shard I of N (cells i with i mod N = I-1).
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// List the cells (and the ones the resolver would skip) with a duration estimate.
    #[arg(long)]
    dry_run: bool,
    /// Run order: `interleaved` (round r runs every cell once, in a seeded order recorded in the
    /// manifest; one engine start per cell per round) or `sequential` (every repeat of a cell
    /// back to back). Default: interleaved, sequential for `[engine] kind = "server"`.
    #[arg(long, value_name = "ORDER", value_parser = parse_order)]
    order: Option<crate::execute::rounds::Order>,
    /// After the last round, measure again up to N repeats the noise monitor flagged (most
    /// flags first); each new measurement replaces its original in the statistics and the
    /// original is kept in stats.json (`superseded`). With --resume: sets the run's limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::execute::rerun::MAX_RERUN_NOISY)))]
    rerun_noisy: Option<u32>,
    /// Change the noise monitor's flag thresholds: KEY=VALUE[,KEY=VALUE…] with keys steal_pct,
    /// iowait_pct, other_cpu_pct, load_per_core, calibration_ratio, frequency_ratio,
    /// gpu_clock_ratio (values 0 to 100; recorded in the manifest, reused by --resume).
    #[arg(long, value_name = "KEY=VALUE,…", value_parser = parse_thresholds)]
    noise_thresholds: Option<crate::noise::Thresholds>,
    /// Stop cleanly between cells once this much time is used: 90s, 10m, 1h.
    #[arg(long, value_parser = parse_budget)]
    time_budget: Option<std::time::Duration>,
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

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text).map_err(|err| err.to_string())
}

fn parse_order(text: &str) -> Result<crate::execute::rounds::Order, String> {
    text.parse()
}

fn parse_thresholds(text: &str) -> Result<crate::noise::Thresholds, String> {
    crate::noise::Thresholds::DEFAULT.with_overrides(text)
}

fn parse_budget(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).map_err(|err| err.to_string())
}

/// Run the sweep.
pub fn run(args: Args) -> Result<i32, Error> {
    let mut choices = common::choices(
        args.preset.unwrap_or_default(),
        args.resolve,
        args.load,
        &args.output,
    );
    choices.max_cells = args.max_cells.map(|n| n as usize);
    choices.sweep_file = args.sweep;
    choices.allow_misread_values = args.misread.allow_misread_values;
    common::apply_overlay(&mut choices, &args.overlay)?;
    choices.resume = args.resume;
    choices.shard = args.shard;
    choices.dry_run = args.dry_run;
    choices.time_budget = args.time_budget;
    choices.order = args.order;
    choices.rerun_noisy = args.rerun_noisy;
    choices.noise_thresholds = args.noise_thresholds;
    let stop = crate::sweep::install_ctrlc()
        .map_err(|err| Error::Usage(format!("cannot install the Ctrl-C handler: {err}")))?;
    let (_, outcome) = orchestrate::run(&choices, &stop)?;
    super::report::after_run(&outcome, &args.report);
    common::finish(outcome, args.output.format)
}
