//! `ferrum-bench tune`: search the preset's `[sweep]` space (or `--space FILE`) for the best
//! configuration under `--constraint`s within a budget of runs; `--replay` answers trials from a
//! recorded grid, `--evaluate-strategies` compares strategies on it.

use std::path::PathBuf;

use crate::error::Error;
use crate::tune::strategy::{StrategyKind, DEFAULT_ETA};
use crate::tune::{self, Budget, TuneChoices, TuneSettings, MAX_EVAL_SEEDS};

use super::common::{self, LoadOpts, OutputOpts, ResolveOpts};

/// Options of `tune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset file (TOML); with --resume, defaults to the one the run recorded.
    #[arg(required_unless_present = "resume")]
    pub preset: Option<PathBuf>,
    /// Search space file replacing the preset's [sweep] table (same format as --sweep files).
    #[arg(long, value_name = "FILE")]
    space: Option<PathBuf>,
    /// Metric to optimise (see `compare --help` for the list), e.g. output_tok_s, tpot_p99.
    #[arg(long, value_name = "METRIC", default_value = "output_tok_s")]
    objective: String,
    /// Minimise the objective (default: the metric's own better direction).
    #[arg(long)]
    minimize: bool,
    /// A bound a configuration must meet, e.g. 'tpot_p99<=50' (operators <, <=, >, >=); repeat
    /// for several.
    #[arg(long = "constraint", value_name = "METRIC OP LIMIT")]
    constraints: Vec<String>,
    /// Runs to spend (one run = one repeat of one cell) or a duration such as 30m; default: 30 %
    /// of the grid's runs at 3 repeats.
    #[arg(long, value_name = "RUNS|DURATION", value_parser = Budget::parse)]
    budget: Option<Budget>,
    /// Search strategy.
    #[arg(long, default_value = "auto", value_parser = StrategyKind::parse)]
    strategy: StrategyKind,
    /// Seed of the strategy's random choices (and of replay draws).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How the result is confirmed: `interleaved` (the finalists — the incumbent and its
    /// closest challengers — run in 3 rounds, each finalist once per round in a seeded order,
    /// one engine start per finalist per round; winner and ties paired within rounds) or
    /// `sequential` (the winner topped up to 3 back-to-back repeats; ties by Welch). Default:
    /// interleaved, sequential for `[engine] kind = "server"`.
    #[arg(long, value_name = "ORDER", value_parser = parse_order)]
    order: Option<crate::execute::rounds::Order>,
    /// Reduction factor of halving: keep the best 1/η each rung.
    #[arg(long, default_value_t = DEFAULT_ETA as u64, value_parser = clap::value_parser!(u64).range(2..=10))]
    eta: u64,
    /// Continue an interrupted tune (its tune.json supplies the search settings); no finished
    /// trial runs again.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["replay", "reuse"])]
    resume: Option<PathBuf>,
    /// Answer configurations already measured by an earlier sweep or tune of the same preset and
    /// workload from that run directory.
    #[arg(long, value_name = "DIR")]
    reuse: Option<PathBuf>,
    /// Answer every trial from a complete grid sweep's recorded repeats (drawn with the seed)
    /// instead of running the engine.
    #[arg(long, value_name = "RUN_DIR")]
    replay: Option<PathBuf>,
    /// With --replay: replay every strategy over --seeds seeds and print how many runs each
    /// needs to get within 2 % of the grid's best.
    #[arg(long, requires = "replay")]
    evaluate_strategies: bool,
    /// Seeds of --evaluate-strategies.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=MAX_EVAL_SEEDS))]
    seeds: u64,
    #[command(flatten)]
    resolve: ResolveOpts,
    #[command(flatten)]
    output: OutputOpts,
    #[command(flatten)]
    misread: common::MisreadOpts,
    #[command(flatten)]
    report: super::report::AfterRunOpts,
}

fn parse_order(text: &str) -> Result<crate::execute::rounds::Order, String> {
    text.parse()
}

/// Run the tune.
pub fn run(args: Args) -> Result<i32, Error> {
    let mut base = common::choices(
        args.preset.unwrap_or_default(),
        args.resolve,
        LoadOpts::default(),
        &args.output,
    );
    base.sweep_file = args.space;
    base.allow_misread_values = args.misread.allow_misread_values;
    base.resume = args.resume;
    let choices = TuneChoices {
        base,
        settings: TuneSettings {
            objective: args.objective,
            minimize: args.minimize,
            constraints: args.constraints,
            budget: args.budget,
            strategy: args.strategy,
            seed: args.seed,
            eta: args.eta as usize,
            order: args.order,
        },
        reuse: args.reuse,
        replay: args.replay,
        evaluate_seeds: args.evaluate_strategies.then_some(args.seeds),
        no_report: args.report.no_report,
    };
    let stop = crate::sweep::install_ctrlc()
        .map_err(|err| Error::Usage(format!("cannot install the Ctrl-C handler: {err}")))?;
    tune::run(&choices, &stop)
}
