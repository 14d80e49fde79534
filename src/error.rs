//! The crate's top-level error and the one place where outcomes become exit codes.
//!
//! Each boundary has its own `thiserror` enum (presets, resolver, engine, results, ...); this enum
//! wraps them so the CLI can map any failure to the documented exit code:
//! 0 ok, 1 negative verdict (e.g. a regression), 2 usage/config error, 3 a cell failed,
//! 4 inconclusive comparison (only with `compare --fail-on-inconclusive`), 5 incomplete (time
//! budget, empty shard, nothing measured), 130 interrupted.

use crate::config::ResolveError;
use crate::engine::EngineError;
use crate::preset::PresetError;
use crate::results::ResultsError;
use crate::sweep::SweepError;
use crate::workload::WorkloadError;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the command worked but its verdict is negative (regression, failed gate).
pub const EXIT_NEGATIVE: i32 = 1;
/// Exit code: bad usage, bad preset, bad knob value, invalid combination, corrupt result files.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the engine failed.
pub const EXIT_ENGINE: i32 = 3;
/// Exit code: `compare --fail-on-inconclusive` found inconclusive verdicts (and no regression).
pub const EXIT_INCONCLUSIVE: i32 = 4;
/// Exit code: interrupted (Ctrl-C), as a shell reports SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code: nothing failed, but the run is incomplete: the time budget stopped it with cells
/// pending, the shard held no cell, or no cell was measured (every cell skipped).
pub const EXIT_INCOMPLETE: i32 = 5;

/// How a `run`/`sweep` ended, reduced to what decides its exit code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunVerdict {
    /// Ctrl-C stopped it.
    pub interrupted: bool,
    /// Cells that failed (engine error, panic, no request succeeded).
    pub failed: usize,
    /// Planned cells of this shard left pending (time budget).
    pub pending: usize,
    /// Cells with results (this invocation or an earlier one, on resume).
    pub measured: usize,
}

impl RunVerdict {
    /// The documented exit code, in priority order: 130 interrupted, 3 any cell failed,
    /// 5 incomplete (cells pending, or not one cell measured), else 0.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            EXIT_INTERRUPTED
        } else if self.failed > 0 {
            EXIT_ENGINE
        } else if self.pending > 0 || self.measured == 0 {
            EXIT_INCOMPLETE
        } else {
            EXIT_OK
        }
    }
}

/// The exit-code table printed by `--help` and mirrored in the README.
pub const EXIT_CODE_HELP: &str = "Exit codes:
  0    every planned cell completed or was skipped by the resolver, and at least one completed
  1    negative verdict (compare: a regression)
  2    bad input: usage, preset, knob value, result directory, run directory in use
  3    a cell failed (engine error, panic, or no request succeeded)
  4    inconclusive (compare)
  5    incomplete: stopped by the time budget, empty shard, or nothing measured
  130  interrupted (Ctrl-C)";

/// Any failure of a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Usage error with a one-line message that names the offending input and the fix.
    #[error("{0}")]
    Usage(String),
    /// A preset could not be loaded.
    #[error(transparent)]
    Preset(#[from] PresetError),
    /// The configuration could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Engine failure or engine configuration error.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Bad run settings, sweep definition, shard or time budget.
    #[error(transparent)]
    Sweep(#[from] SweepError),
    /// Bad workload definition.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// Unreadable, corrupt or unmergeable result directories.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// I/O failure on a named path.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What was attempted (`read`, `write`, `create directory`, ...).
        action: &'static str,
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Io { .. } | Error::Preset(_) | Error::Resolve(_) => EXIT_USAGE,
            Error::Sweep(_) | Error::Workload(_) | Error::Results(_) => EXIT_USAGE,
            Error::Engine(EngineError::Config(_)) => EXIT_USAGE,
            Error::Engine(EngineError::Fault(_)) => EXIT_ENGINE,
            Error::Engine(EngineError::Cancelled) => EXIT_INTERRUPTED,
        }
    }

    /// An optional second line for the user (e.g. where an offending value came from).
    pub fn note(&self) -> Option<&str> {
        match self {
            Error::Resolve(err) => err.note(),
            _ => None,
        }
    }
}

/// What a `compare` found, for [`compare_exit_code`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompareOutcome {
    /// Some metric of some pair is `regressed`.
    pub regressed: bool,
    /// Some pair's effective configs differ.
    pub drift: bool,
    /// Some metric is `inconclusive`.
    pub inconclusive: bool,
    /// Some pair is not comparable (workload hash differs) or nothing could be paired.
    pub not_comparable: bool,
}

/// Exit code of `compare` (and of the `diff` equality test via `different`):
/// 2 when inputs could not be compared, else 1 on a regression (or drift with `fail_on_drift`),
/// else 4 on inconclusive verdicts with `fail_on_inconclusive`, else 0.
pub fn compare_exit_code(
    o: CompareOutcome,
    fail_on_drift: bool,
    fail_on_inconclusive: bool,
) -> i32 {
    if o.not_comparable {
        EXIT_USAGE
    } else if o.regressed || (fail_on_drift && o.drift) {
        EXIT_NEGATIVE
    } else if fail_on_inconclusive && o.inconclusive {
        EXIT_INCONCLUSIVE
    } else {
        EXIT_OK
    }
}

/// Exit code of `diff`: 0 when equal, 1 when different (like `diff(1)`).
pub fn diff_exit_code(equal: bool) -> i32 {
    if equal {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_exit_codes_by_precedence() {
        let o = CompareOutcome::default();
        assert_eq!(compare_exit_code(o, true, true), EXIT_OK);
        let inc = CompareOutcome {
            inconclusive: true,
            ..o
        };
        assert_eq!(compare_exit_code(inc, false, false), EXIT_OK);
        assert_eq!(compare_exit_code(inc, false, true), EXIT_INCONCLUSIVE);
        let drift = CompareOutcome {
            drift: true,
            inconclusive: true,
            ..o
        };
        assert_eq!(compare_exit_code(drift, false, true), EXIT_INCONCLUSIVE);
        assert_eq!(compare_exit_code(drift, true, true), EXIT_NEGATIVE);
        let reg = CompareOutcome {
            regressed: true,
            inconclusive: true,
            ..o
        };
        assert_eq!(compare_exit_code(reg, false, true), EXIT_NEGATIVE);
        let nc = CompareOutcome {
            not_comparable: true,
            regressed: true,
            ..o
        };
        assert_eq!(compare_exit_code(nc, false, false), EXIT_USAGE);
        assert_eq!((diff_exit_code(true), diff_exit_code(false)), (0, 1));
    }
}
