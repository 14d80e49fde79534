//! Command line: clap derive types and dispatch. Only this module touches clap; every
//! subcommand's options live in their own file and call into the library.

mod common;
mod compare;
mod diff;
mod export;
mod hardware;
#[cfg(feature = "cuda")]
mod kernels;
mod knobs;
pub mod merge;
mod mock_server;
mod report;
mod resolve;
mod run;
mod sweep;
mod tune;

use clap::{Parser, Subcommand};

use crate::error::Error;

/// `ferrum-bench`: benchmark and autotune the Ferrum LLM inference engine.
#[derive(Debug, Parser)]
#[command(name = "ferrum-bench", version, about, long_about = None, after_help = crate::error::EXIT_CODE_HELP)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every cell of a sweep on the preset's engine and write results.
    #[command(after_help = engine_help())]
    Sweep(sweep::Args),
    /// Run one cell (the preset plus --set) on the preset's engine and write results.
    #[command(after_help = engine_help())]
    Run(run::Args),
    /// Search the preset's knob space for the best configuration under latency constraints.
    #[command(after_help = crate::error::EXIT_CODE_HELP)]
    Tune(tune::Args),
    /// Resolve a preset into Ferrum's effective configuration and decision trace.
    Resolve(resolve::Args),
    /// List every registered FERRUM_* knob.
    Knobs(knobs::Args),
    /// Join the result directories of several shards or partial runs into one.
    Merge(merge::Args),
    /// Noise-aware regression verdicts between a baseline and a candidate result.
    Compare(compare::Args),
    /// Semantic diff of two decision traces, effective configs or run directories.
    Diff(diff::Args),
    /// Write a cell's statistics in another tool's format (Ferrum's BenchReport).
    Export(export::Args),
    /// Write the self-contained HTML report of a run directory.
    Report(report::Args),
    /// Serve an OpenAI-compatible streaming mock on loopback (tests, calibration, CI).
    MockServer(mock_server::Args),
    /// Probe this machine: every visible GPU (or why there is none) and the CPU.
    Hardware(hardware::Args),
    /// Compile every CUDA kernel with NVRTC and check registers and spills with ptxas.
    #[cfg(feature = "cuda")]
    Kernels(kernels::Args),
}

/// `sweep`/`run` help epilogue: which engine runs, whose numbers they are, and the exit codes.
fn engine_help() -> String {
    format!(
        "Engine: [engine] kind in the preset: `reference` (the default: ferrum-bench's in-process model of Ferrum's serving mechanics; its numbers are NOT Ferrum's), `server` (launches e.g. `ferrum serve` per cell: real Ferrum numbers) or `endpoint` (a running server). Tables, summary.md and report.html label reference-engine results as such.\n\n{}",
        crate::error::EXIT_CODE_HELP
    )
}

/// Parse `std::env::args`, run, print any error as one line on stderr, return the exit code.
pub fn main_entry() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return if err.use_stderr() {
                crate::error::EXIT_USAGE
            } else {
                crate::error::EXIT_OK
            };
        }
    };
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            if let Some(note) = err.note() {
                eprintln!("{note}");
            }
            err.exit_code()
        }
    }
}

fn dispatch(command: Command) -> Result<i32, Error> {
    match command {
        Command::Sweep(args) => sweep::run(args),
        Command::Run(args) => run::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Resolve(args) => resolve::run(args),
        Command::Knobs(args) => knobs::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Export(args) => export::run(args),
        Command::Report(args) => report::run(args),
        Command::MockServer(args) => mock_server::run(args),
        Command::Hardware(args) => hardware::run(args),
        #[cfg(feature = "cuda")]
        Command::Kernels(args) => kernels::run(args),
    }
}

/// Parse `KEY=VALUE` for `--set`.
pub(crate) fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{raw}`"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, got `{raw}`"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Write to stdout; a closed pipe (e.g. `| head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(Error::Io {
            action: "write",
            path: "<stdout>".into(),
            source,
        }),
    }
}
