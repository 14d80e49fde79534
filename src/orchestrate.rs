//! From a preset and the user's choices to a finished results directory: load and validate
//! everything up front (preset, `[run]`, the sweep, `--set` values, the engine dimensions), plan
//! the cells, then run them through [`execute`] with the reference engine behind a
//! [`CellBackend`] that resolves each cell exactly as Ferrum would and starts a fresh engine for
//! it (Ferrum reads its knobs at start-up, so every cell gets a new engine).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::knobs::{KnobError, Registry};
use crate::config::{resolve_with_environment, Overrides};
use crate::engine::reference::knobs::EngineKnobs;
use crate::engine::reference::spec::EngineSpec;
use crate::engine::reference::start_reference;
use crate::engine::{Cancel, Engine, EngineError};
use crate::error::Error;
use crate::execute::{
    execute, CellBackend, ExecuteOptions, ExecuteSummary, ResolvedCell, SweepTarget,
};
use crate::preset::Preset;
use crate::report::{self, progress::SweepProgress, SummaryRow};
use crate::results::{Manifest, PresetInfo, RunDir};
use crate::sweep::{
    self, Cell, Plan, RunOverrides, RunSettings, Shard, SweepTable,
    DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S, DEFAULT_ENGINE_START_S,
};
use crate::workload::{cell_workload_hash, TokenSpace};

/// Token ids the reference engine treats as special (pad, BOS, EOS, unknown); prompts never
/// contain them, as vLLM's and Ferrum's random datasets skip special ids.
pub const REFERENCE_SPECIAL_IDS: u32 = 4;

/// What the user asked for (`run` and `sweep` options, already parsed).
#[derive(Debug, Clone, Default)]
pub struct Choices {
    /// Preset file.
    pub preset: PathBuf,
    /// `--sweep FILE` replacing the preset's `[sweep]`.
    pub sweep_file: Option<PathBuf>,
    /// `run`: one cell, ignoring any `[sweep]`.
    pub single_cell: bool,
    /// `--set KEY=VALUE` knobs applied to every cell (source `cli`).
    pub set: Vec<(String, String)>,
    /// `--hardware` profile.
    pub hardware: Option<String>,
    /// Take `FERRUM_*` from the environment (source `env`).
    pub inherit_env: bool,
    /// Unknown knob names are warnings.
    pub allow_unknown_knobs: bool,
    /// Overrides of `[run]`.
    pub run: RunOverrides,
    /// `--steps`: record `steps.jsonl`.
    pub record_steps: bool,
    /// Results root (`--out`, default `results`).
    pub out: PathBuf,
    /// `--resume RUN_DIR`.
    pub resume: Option<PathBuf>,
    /// `--shard I/N`.
    pub shard: Option<Shard>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--time-budget`.
    pub time_budget: Option<Duration>,
    /// `--quiet`: no progress bars, one line per cell.
    pub quiet: bool,
}

/// Everything validated and planned, before anything runs.
#[derive(Debug)]
pub struct Prepared {
    /// The preset.
    pub preset: Preset,
    /// Resolved run settings.
    pub run: RunSettings,
    /// The expanded sweep.
    pub plan: Plan,
    /// `--sweep FILE` as given.
    pub sweep_file: Option<String>,
    /// Instantiated engine dimensions.
    pub spec: EngineSpec,
    /// Token ids prompts may use.
    pub tokens: TokenSpace,
    /// Hash of every prompt and output length of every repeat.
    pub workload_hash: String,
    /// Overrides shared by every cell (the cell adds its knobs as `script_case`).
    pub base: Overrides,
    /// The `FERRUM_*` environment captured once at start.
    pub environment: Vec<(String, String)>,
    /// Warnings for the user.
    pub warnings: Vec<String>,
}

/// What a `run`/`sweep` invocation produced.
#[derive(Debug)]
pub enum Outcome {
    /// `--dry-run`: the listing to print.
    DryRun(String),
    /// Cells were run (or found complete).
    Ran(Box<Ran>),
}

/// A finished (or stopped) run.
#[derive(Debug)]
pub struct Ran {
    /// The results directory.
    pub dir: PathBuf,
    /// What happened.
    pub summary: ExecuteSummary,
    /// One row per cell.
    pub rows: Vec<SummaryRow>,
}

impl Ran {
    /// Exit code: 130 when interrupted, 3 when a cell failed, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.summary.interrupted {
            130
        } else {
            self.summary.exit_code()
        }
    }
}

/// Validate and plan.
pub fn prepare(choices: &Choices) -> Result<Prepared, Error> {
    let (preset, mut warnings) = Preset::load_with(&choices.preset, choices.allow_unknown_knobs)?;
    let mut run = RunSettings::resolve(preset.run.as_ref(), &choices.run)?;
    if choices.record_steps {
        run.record_steps = true;
    }
    let (sweep_table, sweep_file) = if choices.single_cell {
        (SweepTable::default(), None)
    } else if let Some(path) = &choices.sweep_file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            action: "read sweep file",
            path: path.display().to_string(),
            source,
        })?;
        let table = SweepTable::from_file_text(&text)
            .map_err(|err| Error::Usage(format!("{}: {err}", path.display())))?;
        (table, Some(path.display().to_string()))
    } else {
        (preset.sweep.clone().unwrap_or_default(), None)
    };
    let allow_unknown = choices.allow_unknown_knobs;
    let knob_check = |name: &str, value: &str| -> Result<String, String> {
        match Registry::global().canonical_value(name, value) {
            Ok(canonical) => Ok(canonical),
            Err(KnobError::Unknown { .. }) if allow_unknown => Ok(value.to_string()),
            Err(err) => Err(err.to_string()),
        }
    };
    let mut set = Vec::new();
    for (name, value) in &choices.set {
        let canonical = knob_check(name, value)
            .map_err(|message| Error::Usage(format!("--set {name}={value}: {message}")))?;
        set.push((name.clone(), canonical));
    }
    let plan = sweep::plan(&preset.name, &run, &sweep_table, &set, &knob_check)?;
    let spec = EngineSpec::resolve(preset.engine.as_ref(), &preset.model.architecture)?;
    let tokens = token_space(&spec);
    let workload_hash = cell_workload_hash(&run.workload, &tokens, run.seed, run.repeats)?;
    let environment: Vec<(String, String)> = if choices.inherit_env {
        std::env::vars()
            .filter(|(key, _)| key.starts_with("FERRUM_"))
            .collect()
    } else {
        Vec::new()
    };
    let base = Overrides {
        cli: set,
        script_case: Vec::new(),
        inherit_env: choices.inherit_env,
        hardware: choices.hardware.clone(),
        allow_unknown_knobs: choices.allow_unknown_knobs,
    };
    // Resolve the preset once without cell knobs: surfaces environment warnings and bad
    // `--hardware` values before anything runs (cell-specific rejections only skip cells).
    match resolve_with_environment(&preset, &base, &environment) {
        Ok(resolution) => warnings.extend(resolution.warnings),
        Err(crate::config::ResolveError::Resolver { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    // GPU noise a user can remove (unlocked clocks, throttling), from the hardware probe.
    warnings.extend(crate::hardware::noise_warnings());
    Ok(Prepared {
        preset,
        run,
        plan,
        sweep_file,
        spec,
        tokens,
        workload_hash,
        base,
        environment,
        warnings,
    })
}

/// The prompt token space of a reference engine instance.
pub fn token_space(spec: &EngineSpec) -> TokenSpace {
    TokenSpace::with_special_prefix(spec.vocab_size as u32, REFERENCE_SPECIAL_IDS)
}

/// Resolves cells with the preset and starts reference engines for them.
#[derive(Debug)]
pub struct ReferenceBackend<'a> {
    prepared: &'a Prepared,
}

impl<'a> ReferenceBackend<'a> {
    /// A backend for a prepared run.
    pub fn new(prepared: &'a Prepared) -> Self {
        Self { prepared }
    }
}

impl CellBackend for ReferenceBackend<'_> {
    fn resolve(&mut self, cell: &Cell) -> Result<ResolvedCell, String> {
        let p = self.prepared;
        let overrides = Overrides {
            script_case: cell
                .knobs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..p.base.clone()
        };
        let resolution = resolve_with_environment(&p.preset, &overrides, &p.environment).map_err(
            |err| match err.note() {
                Some(note) => format!("{err} ({})", note.trim_start_matches("note: ")),
                None => err.to_string(),
            },
        )?;
        Ok(ResolvedCell {
            effective_config_json: resolution.resolved.effective_config_json(),
            decision_trace_jsonl: resolution.resolved.decision_trace_jsonl(),
            tokens: p.tokens.clone(),
        })
    }

    fn start(
        &mut self,
        _cell: &Cell,
        resolved: &ResolvedCell,
    ) -> Result<Box<dyn Engine>, EngineError> {
        let doc: serde_json::Value = serde_json::from_str(&resolved.effective_config_json)
            .map_err(|err| EngineError::Fault(format!("effective config is not JSON: {err}")))?;
        let knobs = EngineKnobs::from_effective_config(&doc)?;
        start_reference(&self.prepared.spec, &knobs)
    }
}

/// Plan, then run (or list with `--dry-run`).
pub fn run(choices: &Choices, stop: &Cancel) -> Result<(Prepared, Outcome), Error> {
    let prepared = prepare(choices)?;
    for warning in &prepared.warnings {
        eprintln!("warning: {warning}");
    }
    let cells = prepared.plan.shard(choices.shard);
    if choices.dry_run {
        let mut backend = ReferenceBackend::new(&prepared);
        let mut to_run = Vec::new();
        let mut skipped = Vec::new();
        for cell in &cells {
            match backend.resolve(cell) {
                Ok(_) => to_run.push(*cell),
                Err(reason) => skipped.push((*cell, reason)),
            }
        }
        let estimate = Plan::estimate(
            &to_run,
            &prepared.run,
            DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S,
            DEFAULT_ENGINE_START_S,
        );
        let listing = report::dry_run_listing(&to_run, &skipped, estimate);
        return Ok((prepared, Outcome::DryRun(listing)));
    }
    let preset_info = PresetInfo::new(
        &prepared.preset.name,
        &prepared.preset.path,
        &prepared.preset.source_text,
    );
    let (dir, mut manifest) = match &choices.resume {
        Some(path) => {
            let dir = RunDir::open(path)?;
            let manifest = dir.read_manifest()?;
            manifest.check_resumable(
                &dir.root,
                &preset_info,
                &prepared.run,
                &prepared.workload_hash,
            )?;
            (dir, manifest)
        }
        None => {
            let material = format!(
                "{}|{}|{:?}",
                preset_info.hash, prepared.workload_hash, choices.shard
            );
            let run_id = RunDir::new_run_id(&material);
            let dir = RunDir::create(&choices.out, &run_id)?;
            let manifest = Manifest::new(
                &run_id,
                preset_info,
                &prepared.run,
                &prepared.plan,
                &cells,
                choices.shard,
                prepared.sweep_file.clone(),
                prepared.workload_hash.clone(),
            );
            (dir, manifest)
        }
    };
    let mut progress = SweepProgress::new(manifest.cells.len(), choices.quiet);
    let mut backend = ReferenceBackend::new(&prepared);
    let summary = execute(
        SweepTarget {
            dir: &dir,
            plan: &prepared.plan,
            run: &prepared.run,
        },
        &mut manifest,
        &mut backend,
        stop,
        ExecuteOptions {
            time_budget: choices.time_budget,
        },
        &mut progress,
    )?;
    let stats = dir.completed_stats()?;
    let rows = report::summary_rows(&manifest, &stats);
    let dir_path = dir.root.clone();
    Ok((
        prepared,
        Outcome::Ran(Box::new(Ran {
            dir: dir_path,
            summary,
            rows,
        })),
    ))
}

/// The results root used when `--out` is not given.
pub fn default_results_root() -> &'static Path {
    Path::new("results")
}
