//! Command line: clap derive types and dispatch. Only this module touches clap; every
//! subcommand's options live in their own file and call into the library.

use clap::{Parser, Subcommand};

use crate::error::Error;

pub mod merge;

/// `ferrum-bench`: benchmark and autotune the Ferrum LLM inference engine.
#[derive(Debug, Parser)]
#[command(name = "ferrum-bench", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join the result directories of several shards or partial runs into one.
    Merge(merge::Args),
}

/// Parse `std::env::args`, run, print any error as one line on stderr, return the exit code.
pub fn main_entry() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

fn dispatch(command: Command) -> Result<i32, Error> {
    match command {
        Command::Merge(args) => merge::run(args),
    }
}
