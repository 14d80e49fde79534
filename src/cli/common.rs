//! Options shared by `run` and `sweep`.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::error::Error;
use crate::orchestrate::{Choices, Outcome, Ran};
use crate::report;
use crate::sweep::RunOverrides;

/// How the preset is resolved.
#[derive(Debug, Clone, clap::Args)]
pub struct ResolveOpts {
    /// Override a knob (source `cli`; repeatable): `--set FERRUM_MAX_BATCHED_TOKENS=1024`.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Hardware profile replacing the preset's: rtx4090, cpu, unknown, auto.
    #[arg(long)]
    pub hardware: Option<String>,
    /// Ignore FERRUM_* variables in this process's environment.
    #[arg(long)]
    pub no_inherit_env: bool,
    /// Warn about unknown FERRUM_* names instead of failing.
    #[arg(long)]
    pub allow_unknown_knobs: bool,
}

/// What `run` and `sweep` do with values Ferrum's runtime would misread.
#[derive(Debug, Clone, clap::Args)]
pub struct MisreadOpts {
    /// Run cells with values Ferrum accepts but its runtime reads differently from how they
    /// look (e.g. FERRUM_MOE_BATCH_THRESHOLD=0 runs as 4) instead of skipping them.
    #[arg(long)]
    pub allow_misread_values: bool,
}

/// Workload and load overrides of the preset's `[run]` table.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoadOpts {
    /// Closed loop with C requests in flight (1 to 100000).
    #[arg(long, conflicts_with = "request_rate", allow_negative_numbers = true)]
    pub concurrency: Option<usize>,
    /// Open loop at R requests/s, 0.001 to 1000000 (Poisson, or gamma with the preset's burstiness).
    #[arg(long, allow_negative_numbers = true)]
    pub request_rate: Option<f64>,
    /// Measured requests per repeat (1 to 1000000).
    #[arg(long, allow_negative_numbers = true)]
    pub requests: Option<usize>,
    /// Warmup requests per repeat (run, not measured; at most 1000000).
    #[arg(long, allow_negative_numbers = true)]
    pub warmup_requests: Option<usize>,
    /// Repeats per cell (1 to 1000), or `auto[:MAX]` (sweep, interleaved): add rounds until the
    /// tie set of the best cell stops changing, at least 3 and at most MAX (default 10).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_repeats)]
    pub repeats: Option<RepeatsArg>,
    /// Base seed of the workload and arrivals.
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Fewer requests (12 + 1 warmup) and one repeat: a smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Record one line per engine step in each cell's steps.jsonl.
    #[arg(long)]
    pub steps: bool,
}

/// `--repeats N` or `--repeats auto[:MAX]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatsArg {
    /// Exactly N repeats per cell.
    Fixed(u32),
    /// Adaptive rounds, at most MAX.
    Auto(u32),
}

fn parse_repeats(text: &str) -> Result<RepeatsArg, String> {
    let bad = || format!("`{text}`: expected a number of repeats (1 to 1000) or auto[:MAX]");
    match text.strip_prefix("auto") {
        Some("") => Ok(RepeatsArg::Auto(crate::execute::rounds::AUTO_DEFAULT_MAX)),
        Some(rest) => {
            let max: u32 = rest
                .strip_prefix(':')
                .and_then(|m| m.parse().ok())
                .ok_or_else(bad)?;
            if !(crate::execute::rounds::AUTO_MIN_ROUNDS..=1000).contains(&max) {
                return Err(format!(
                    "`{text}`: MAX must be 3 to 1000 (auto needs at least 3 rounds)"
                ));
            }
            Ok(RepeatsArg::Auto(max))
        }
        None => text
            .parse::<u32>()
            .map(RepeatsArg::Fixed)
            .map_err(|_| bad()),
    }
}

/// Output options.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputOpts {
    /// Results root; each run gets `<out>/<run_id>/`.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// No progress bars: one plain line per cell on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Final report on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Final report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Ranked table.
    Table,
    /// JSON object with the run directory and one entry per cell.
    Json,
}

/// Fill the shared parts of [`Choices`].
pub fn choices(
    preset: PathBuf,
    resolve: ResolveOpts,
    load: LoadOpts,
    output: &OutputOpts,
) -> Choices {
    Choices {
        preset,
        set: resolve.set,
        hardware: resolve.hardware,
        inherit_env: !resolve.no_inherit_env,
        allow_unknown_knobs: resolve.allow_unknown_knobs,
        run: RunOverrides {
            concurrency: load.concurrency,
            request_rate: load.request_rate,
            requests: load.requests,
            warmup_requests: load.warmup_requests,
            repeats: load.repeats.map(|r| match r {
                RepeatsArg::Fixed(n) | RepeatsArg::Auto(n) => n,
            }),
            seed: load.seed,
            quick: load.quick,
        },
        auto_repeats: matches!(load.repeats, Some(RepeatsArg::Auto(_))),
        record_steps: load.steps,
        out: output.out.clone(),
        quiet: output.quiet,
        ..Choices::default()
    }
}

/// Print the outcome and return the exit code.
pub fn finish(outcome: Outcome, format: Format) -> Result<i32, Error> {
    match outcome {
        Outcome::DryRun(listing) => {
            super::print_stdout(&listing)?;
            Ok(crate::error::EXIT_OK)
        }
        Outcome::Nothing(message) => {
            eprintln!("{message}");
            Ok(crate::error::EXIT_INCOMPLETE)
        }
        Outcome::Ran(ran) => {
            let text = match format {
                Format::Table => table_report(&ran),
                Format::Json => json_report(&ran),
            };
            super::print_stdout(&text)?;
            // The manifest records every setting, so the hint needs nothing but the directory.
            if ran.summary.interrupted {
                eprintln!(
                    "interrupted: finish the remaining cells with `ferrum-bench sweep --resume {}`",
                    ran.dir.display()
                );
            } else if ran.summary.budget_exhausted && ran.summary.pending == 0 {
                eprintln!(
                    "time budget reached: every cell is measured, {} re-measurement(s) of flagged repeats left; continue with `ferrum-bench sweep --resume {}`",
                    ran.summary.reruns_pending,
                    ran.dir.display()
                );
            } else if ran.summary.budget_exhausted {
                eprintln!(
                    "time budget reached: {} cell(s) left; continue with `ferrum-bench sweep --resume {}`",
                    ran.summary.pending,
                    ran.dir.display()
                );
            } else if ran.summary.completed + ran.summary.already_complete == 0 {
                eprintln!(
                    "nothing measured: no cell completed (see the reasons above); exit code 5"
                );
            }
            if ran.summary.remeasured + ran.summary.rerun_failed > 0 {
                eprintln!(
                    "--rerun-noisy: {} flagged repeat(s) re-measured{} (manifest.json schedule.reruns; originals in stats.json repeats[i].superseded)",
                    ran.summary.remeasured,
                    if ran.summary.rerun_failed > 0 {
                        format!(", {} failed and kept their originals", ran.summary.rerun_failed)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(ran.exit_code())
        }
    }
}

fn table_report(ran: &Ran) -> String {
    format!(
        "{}\nresults: {}\n",
        report::ranked_table(&ran.rows),
        ran.dir.display()
    )
}

fn json_report(ran: &Ran) -> String {
    // P(best) and the tie set over the completed cells (see report::ranking).
    let done: Vec<&report::SummaryRow> = ran.rows.iter().filter(|r| r.stats.is_some()).collect();
    let stats: Vec<&crate::results::StatsFile> =
        done.iter().filter_map(|r| r.stats.as_ref()).collect();
    let pb = report::ranking::rank_stats(&stats);
    let cells: Vec<serde_json::Value> = ran
        .rows
        .iter()
        .map(|row| {
            let aggregate = row.stats.as_ref().map(|s| &s.aggregate);
            let pos = done.iter().position(|d| d.key == row.key);
            let p_best = pos.and_then(|i| pb.as_ref()?.p_best.get(i).copied().flatten());
            let tie = pos.is_some_and(|i| pb.as_ref().is_some_and(|pb| pb.tie_set.contains(&i)));
            serde_json::json!({
                "name": row.name,
                "key": row.key,
                "status": row.status,
                "reason": row.reason,
                "knobs": row.knobs,
                "load": row.load,
                "aggregate": aggregate,
                "p_best": p_best,
                "tie_with_best": tie,
            })
        })
        .collect();
    let ranking = pb.as_ref().map(|pb| {
        serde_json::json!({
            "objective": crate::metric::Metric::ranking().name,
            "best": done.get(pb.best).map(|r| r.name.clone()),
            "tie_set": pb.tie_set.iter().filter_map(|&i| done.get(i).map(|r| r.name.clone())).collect::<Vec<_>>(),
            "single_winner": pb.tie_set.len() == 1,
            "method": pb.method,
        })
    });
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "run_dir": ran.dir.display().to_string(),
        "completed": ran.summary.completed,
        "already_complete": ran.summary.already_complete,
        "skipped": ran.summary.skipped,
        "failed": ran.summary.failed,
        "interrupted": ran.summary.interrupted,
        "pending": ran.summary.pending,
        "remeasured": ran.summary.remeasured,
        "rerun_failed": ran.summary.rerun_failed,
        "reruns_pending": ran.summary.reruns_pending,
        "ranking": ranking,
        "cells": cells,
    }))
    .unwrap_or_default();
    text.push('\n');
    text
}

/// `--overlay FILE` of `run` and `sweep`: the `[env]` table (and `[run]` load) of a tune's
/// `best.toml`.
#[derive(Debug, Clone, clap::Args)]
pub struct OverlayOpts {
    /// Apply the [env] knobs of FILE (e.g. a tune's best.toml) as if given with --set, and its
    /// [run] load as --concurrency/--request-rate; an explicit flag wins.
    #[arg(long, value_name = "FILE")]
    pub overlay: Option<PathBuf>,
}

/// Add the overlay's knobs to `choices.set` (after the explicit `--set` ones, which win).
pub fn apply_overlay(choices: &mut Choices, opts: &OverlayOpts) -> Result<(), Error> {
    let Some(path) = &opts.overlay else {
        return Ok(());
    };
    let overlay = crate::tune::output::read_overlay(path).map_err(Error::Usage)?;
    for (name, value) in overlay.env {
        if !choices.set.iter().any(|(n, _)| *n == name) {
            choices.set.push((name, value));
        }
    }
    // The winner's load (a tune that searched concurrency): as --concurrency/--request-rate,
    // unless one of those flags was given.
    let load_given = choices.run.concurrency.is_some() || choices.run.request_rate.is_some();
    if !load_given {
        choices.run.concurrency = overlay.concurrency;
        choices.run.request_rate = overlay.request_rate;
    }
    Ok(())
}
