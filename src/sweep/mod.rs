//! Sweeps: the `[run]` and `[sweep]` tables, cell expansion (grid or zip over knob lists, crossed
//! with the load axis), `exclude` rules, cell identity (readable name + stable key), sharding,
//! duration estimates, time budgets and the Ctrl-C stop flag.
//!
//! Phase-2 flow: `RunSettings::resolve` → `plan` → for each cell of `Plan::shard` not already
//! complete (`results::RunDir::completed_cell_keys`): resolve the cell's knobs (a rejection makes
//! it `skipped`), `measure::run_cell`, write its files; stop between cells when the stop flag is
//! raised or the budget is spent.

mod budget;
mod interrupt;
mod plan;
mod settings;
mod table;

pub use budget::{parse_duration, Shard};
pub use interrupt::{install_ctrlc, StopFlag};
pub use plan::{
    cell_key, plan, plan_with_limit, Cell, Plan, DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S,
    DEFAULT_ENGINE_START_S, DEFAULT_MAX_CELLS,
};
pub use settings::{
    RunOverrides, RunSettings, RunTable, SloTable, DEFAULT_CONCURRENCY, DEFAULT_INPUT_LEN,
    DEFAULT_OUTPUT_LEN, DEFAULT_REPEATS, DEFAULT_REQUESTS, DEFAULT_SEED, DEFAULT_WARMUP_REQUESTS,
    MAX_BURSTINESS, MAX_CONCURRENCY, MAX_REPEATS, MAX_REQUEST_RATE, MIN_BURSTINESS,
    MIN_REQUEST_RATE, QUICK_REQUESTS, QUICK_WARMUP_REQUESTS,
};
pub use table::{SweepMode, SweepTable};

/// Errors in run settings, sweep definitions, shards and budgets (exit code 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    /// The table does not deserialize (unknown key, wrong type).
    #[error("invalid [{table}] table: {message}")]
    Table {
        /// `run` or `sweep`.
        table: &'static str,
        /// toml's message.
        message: String,
    },
    /// A setting is out of range.
    #[error("invalid value `{value}` for `{key}`: {expected}")]
    Setting {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// The workload definition is invalid.
    #[error("{0}")]
    Workload(String),
    /// A knob value of the sweep was rejected by the knob registry.
    #[error("invalid sweep value `{value}` for `{knob}`: {message}")]
    Knob {
        /// Knob name.
        knob: String,
        /// Value as written.
        value: String,
        /// The registry's message.
        message: String,
    },
    /// Zip mode with lists of different lengths.
    #[error("sweep mode `zip` needs lists of equal length (or length 1): `{knob}` has {len}, expected {expected}")]
    ZipLength {
        /// Offending knob.
        knob: String,
        /// Its list length.
        len: usize,
        /// The common length.
        expected: usize,
    },
    /// An `exclude` rule names something that is not a sweep axis.
    #[error("exclude rule {rule} names `{key}`, which is not a sweep axis (axes: {axes})")]
    ExcludeKey {
        /// Rule index (0-based).
        rule: usize,
        /// The key.
        key: String,
        /// The sweep's axes.
        axes: String,
    },
    /// `--shard` does not parse.
    #[error("invalid shard `{0}`: expected I/N with 1 <= I <= N, e.g. `--shard 1/2`")]
    Shard(String),
    /// `--time-budget` does not parse.
    #[error(
        "invalid duration `{0}`: expected a positive duration of at most 30 days, as seconds with an optional unit s, m or h, e.g. `90s`, `10m`, `1h`"
    )]
    Duration(String),
    /// Every cell was excluded.
    #[error("the sweep has no cells: every combination is excluded")]
    Empty,
    /// The sweep expands to more cells than the limit.
    #[error("the sweep expands to {cells} cells, more than the limit of {limit}: narrow the knob lists, or raise the limit with --max-cells {cells}")]
    TooManyCells {
        /// Cells the sweep would have (saturating).
        cells: u128,
        /// The limit.
        limit: usize,
    },
    /// A command-line flag that a sweep axis would silently override.
    #[error("{flag} conflicts with the sweep's `{axis}` axis, which sets it for every cell: remove the flag, edit the axis (or use --sweep with another file), or measure one cell with `run`")]
    AxisConflict {
        /// The flag as given.
        flag: String,
        /// The sweep axis.
        axis: String,
    },
}
