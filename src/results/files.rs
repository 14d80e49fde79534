//! The serialized result types: `manifest.json` and `stats.json` (both carry `schema_version`).
//! Exporters and `merge` depend only on these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::EngineInfo;
use crate::measure::{CellAggregate, CellMeasurement, CellStatus, LoadPoint, RepeatSummary};
use crate::stats::Slo;
use crate::sweep::{Cell, Plan, RunSettings, Shard, SweepMode};
use crate::workload::WorkloadSpec;

/// Version of `manifest.json` and `stats.json`; bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// `manifest.json`: what ran, where, with which inputs, and each cell's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Directory name under `results/`.
    pub run_id: String,
    /// The harness that wrote it.
    pub harness: HarnessInfo,
    /// The machine.
    pub host: HostInfo,
    /// The engine (kind, version, details) once one has started.
    pub engine: Option<EngineInfo>,
    /// The preset file.
    pub preset: PresetInfo,
    /// Resolved `[run]` settings.
    pub run: RunSettings,
    /// The sweep as expanded.
    pub sweep: SweepInfo,
    /// Workload identity.
    pub workload: WorkloadInfo,
    /// Seeds used.
    pub seeds: SeedsInfo,
    /// UTC start, RFC 3339.
    pub started_at: String,
    /// UTC end, RFC 3339; `None` while running or after an interruption.
    pub finished_at: Option<String>,
    /// Every cell of the plan (or of this shard) with its status.
    pub cells: Vec<CellEntry>,
    /// Knob sources outside the preset and the cell keys: the inherited `FERRUM_*`
    /// environment, `--hardware`, `--allow-unknown-knobs`. Absent in manifests written before
    /// it was recorded (those are read as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<super::RunIdentity>,
    /// Cell key → position in `cells` (not serialized): keeps `set_status` O(1) so per-cell
    /// bookkeeping does not grow with the number of cells.
    #[serde(skip)]
    pub(crate) cell_index: CellIndex,
    /// `--order` and the seeded order of every round (absent in manifests written before
    /// interleaving existed: those ran sequentially).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::execute::rounds::Schedule>,
    /// The noise monitor's flag thresholds when `--noise-thresholds` changed them (absent: the
    /// documented defaults, as in every manifest written before the flag existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_thresholds: Option<crate::noise::Thresholds>,
}

/// A lookup cache from cell key to its position in [`Manifest::cells`]. It is a cache, not
/// data: it is checked on every hit and rebuilt on a miss, so edits of the public `cells` vector
/// never make it wrong; it takes no part in equality.
#[derive(Debug, Clone, Default)]
pub struct CellIndex(std::collections::HashMap<String, usize>);

impl PartialEq for CellIndex {
    fn eq(&self, _: &CellIndex) -> bool {
        true
    }
}

impl CellIndex {
    /// Position of `key` in `cells`, rebuilding the cache when it is missing or stale.
    pub fn position(&mut self, cells: &[CellEntry], key: &str) -> Option<usize> {
        if let Some(&i) = self.0.get(key) {
            if cells.get(i).is_some_and(|c| c.key == key) {
                return Some(i);
            }
        }
        self.0 = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key.clone(), i))
            .collect();
        self.0.get(key).copied()
    }
}

/// Harness identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessInfo {
    /// `ferrum-bench`.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// `git rev-parse` of the harness source (`-dirty` suffix with local changes), or `unknown`.
    pub git_commit: String,
}

/// Host description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// CPU model (`/proc/cpuinfo` `model name`), or `unknown`.
    pub cpu_model: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Physical memory in bytes (`/proc/meminfo` `MemTotal`), 0 if unknown.
    pub memory_bytes: u64,
    /// OS name and version (`/etc/os-release` `PRETTY_NAME`, else `std::env::consts::OS`) and arch.
    pub os: String,
    /// Visible GPUs from the hardware probe (empty without CUDA; absent in older manifests).
    #[serde(default)]
    pub gpus: Vec<crate::hardware::GpuInfo>,
}

/// The preset as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetInfo {
    /// Preset `name`.
    pub name: String,
    /// Path given on the command line.
    pub path: String,
    /// `"sha256:"` of the file content.
    pub hash: String,
    /// The file content.
    pub content: String,
}

/// The expanded sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepInfo {
    /// Grid or zip.
    pub mode: SweepMode,
    /// Swept knob names.
    pub knob_names: Vec<String>,
    /// `--set` knobs applied to every cell.
    pub set: BTreeMap<String, String>,
    /// Number of cells in the full plan.
    pub planned_cells: usize,
    /// Combinations removed by `exclude` rules.
    pub excluded: usize,
    /// `--shard`, if any.
    pub shard: Option<Shard>,
    /// `--sweep FILE`, if any.
    pub sweep_file: Option<String>,
}

/// Workload identity shared by every cell of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadInfo {
    /// `random-<in>/<out>`.
    pub name: String,
    /// The full spec.
    pub spec: WorkloadSpec,
    /// `combined_hash` of every repeat (identical for every cell); runs compare only when equal.
    pub workload_hash: String,
}

/// Seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedsInfo {
    /// Base seed.
    pub base_seed: u64,
    /// `repeat_seed(base, r)` for r = 0, 1, …
    pub repeat_seeds: Vec<u64>,
}

/// A cell's line in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellEntry {
    /// Plan index.
    pub index: usize,
    /// Directory name under `cells/`.
    pub name: String,
    /// Stable cell key.
    pub key: String,
    /// Knob assignment.
    pub knobs: BTreeMap<String, String>,
    /// Load.
    pub load: LoadPoint,
    /// Status.
    pub status: CellStatus,
    /// Why skipped, failed or interrupted.
    pub reason: Option<String>,
    /// Repeats `stats.json` holds (a cell with measurements; absent in older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats_done: Option<u32>,
    /// Repeats the run plans for the cell (with `--repeats auto:MAX`, MAX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats_planned: Option<u32>,
}

impl CellEntry {
    /// Whether the cell holds a `stats.json`: `completed`, or `partial` (some repeats).
    pub fn has_stats(&self) -> bool {
        matches!(self.status, CellStatus::Completed | CellStatus::Partial)
    }

    /// A `pending` entry for a planned cell.
    pub fn pending(cell: &Cell) -> CellEntry {
        CellEntry {
            index: cell.index,
            name: cell.name.clone(),
            key: cell.key.clone(),
            knobs: cell.knobs.clone(),
            load: cell.load,
            status: CellStatus::Pending,
            reason: None,
            repeats_done: None,
            repeats_planned: None,
        }
    }
}

/// `stats.json` of a cell: identity, workload, per-repeat summaries and the aggregate. Written
/// last; its presence means the cell is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsFile {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Which cell.
    pub cell: CellIdentity,
    /// Workload and seeds.
    pub workload: CellWorkload,
    /// Goodput SLO.
    pub slo: Slo,
    /// The engine that ran.
    pub engine: EngineInfo,
    /// One entry per repeat.
    pub repeats: Vec<RepeatSummary>,
    /// Across repeats.
    pub aggregate: CellAggregate,
}

/// Identity of a cell inside `stats.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellIdentity {
    /// Stable key.
    pub key: String,
    /// Directory name.
    pub name: String,
    /// Preset name.
    pub preset: String,
    /// `--set` knobs.
    pub set: BTreeMap<String, String>,
    /// Swept knobs.
    pub knobs: BTreeMap<String, String>,
    /// Load.
    pub load: LoadPoint,
}

/// Workload of a cell inside `stats.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellWorkload {
    /// `random-<in>/<out>`.
    pub name: String,
    /// The spec.
    pub spec: WorkloadSpec,
    /// Combined workload hash.
    pub workload_hash: String,
    /// Base seed.
    pub base_seed: u64,
    /// Number of repeats requested.
    pub repeats: u32,
}

impl StatsFile {
    /// Build the stats document of `cell` from its measurement.
    pub fn new(plan: &Plan, cell: &Cell, run: &RunSettings, m: &CellMeasurement) -> StatsFile {
        StatsFile {
            schema_version: SCHEMA_VERSION,
            cell: CellIdentity {
                key: cell.key.clone(),
                name: cell.name.clone(),
                preset: plan.preset.clone(),
                set: plan.set.clone(),
                knobs: cell.knobs.clone(),
                load: cell.load,
            },
            workload: CellWorkload {
                name: run.workload.name(),
                spec: run.workload.clone(),
                workload_hash: m.workload_hash.clone(),
                base_seed: run.seed,
                repeats: run.repeats,
            },
            slo: run.slo,
            engine: m.engine.clone(),
            repeats: m.repeats.iter().map(|r| r.summary.clone()).collect(),
            aggregate: m.aggregate.clone(),
        }
    }
}
