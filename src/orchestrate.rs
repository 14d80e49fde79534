//! From a preset and the user's choices to a finished results directory: load and validate
//! everything up front (preset, `[run]`, the sweep, `--set` values, the engine dimensions), plan
//! the cells, then run them through [`execute`] behind a [`CellBackend`] that resolves each cell
//! exactly as Ferrum would and starts a fresh engine of the preset's `[engine] kind` for it
//! through the [`EngineFactory`] (Ferrum reads its knobs at start-up, so every cell gets a new
//! engine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::knobs::{KnobError, Registry};
use crate::config::{check_knob_names, resolve_with_environment, Overrides};
use crate::engine::factory::{finish_stage, CellStart, EngineFactory};
use crate::engine::reference::spec::EngineSpec;
use crate::engine::{Cancel, Engine, EngineError};
use crate::error::Error;
use crate::execute::rounds::{Order, Schedule};
use crate::execute::{
    execute, CellBackend, ExecuteOptions, ExecuteSummary, ResolvedCell, SweepTarget,
};
use crate::preset::Preset;
use crate::report::{self, progress::SweepProgress, SummaryRow};
use crate::results::{json_differences, Manifest, PresetInfo, ResultsError, RunDir, RunIdentity};
use crate::sweep::{
    self, Cell, Plan, RunOverrides, RunSettings, Shard, SweepError, SweepTable,
    DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S, DEFAULT_ENGINE_START_S, DEFAULT_MAX_CELLS,
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
    /// `--allow-misread-values`: run cells with values Ferrum's runtime would misread instead of
    /// skipping them.
    pub allow_misread_values: bool,
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
    /// `--max-cells`: the sweep's cell limit (default [`DEFAULT_MAX_CELLS`]).
    pub max_cells: Option<usize>,
    /// Run settings taken as they are (resume: the manifest's), instead of resolving `[run]`
    /// and the flags.
    pub fixed_run: Option<RunSettings>,
    /// The `FERRUM_*` environment to use instead of this process's (resume: the recorded one).
    pub fixed_environment: Option<Vec<(String, String)>>,
    /// `--order`; `None`: the engine kind's default ([`Order::default_for`]).
    pub order: Option<Order>,
    /// `--repeats auto[:MAX]`: `run.repeats` is MAX and rounds stop early once the tie set of
    /// the best cell is stable (interleaved order only).
    pub auto_repeats: bool,
    /// `--rerun-noisy N`: re-measure at most N flagged repeats after the last round (a resume
    /// may set or change it; `None` keeps the run's).
    pub rerun_noisy: Option<u32>,
    /// `--noise-thresholds`: the monitor's flag thresholds (`None`: the defaults, or on a
    /// resume the ones the run recorded).
    pub noise_thresholds: Option<crate::noise::Thresholds>,
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
    /// Starts the preset's engine kind for each cell.
    pub engines: EngineFactory,
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
    /// Run cells whose values Ferrum's runtime would misread (`--allow-misread-values`).
    pub allow_misread_values: bool,
}

/// What a `run`/`sweep` invocation produced.
#[derive(Debug)]
pub enum Outcome {
    /// `--dry-run`: the listing to print.
    DryRun(String),
    /// Nothing to run (e.g. `--shard 5/10` of a 4-cell sweep): the reason, exit code 5.
    Nothing(String),
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
    /// Exit code (mapped in `error::RunVerdict`): 130 interrupted, 3 a cell failed,
    /// 5 incomplete (budget, nothing measured), else 0.
    pub fn exit_code(&self) -> i32 {
        self.summary.exit_code()
    }
}

/// Validate and plan.
pub fn prepare(choices: &Choices) -> Result<Prepared, Error> {
    let preset = Preset::load(&choices.preset)?;
    let mut warnings = Vec::new();
    let mut run = match &choices.fixed_run {
        Some(run) => run.clone(),
        None => RunSettings::resolve(preset.run.as_ref(), &choices.run).map_err(|err| {
            // Name the preset's line only when the table itself is at fault, not a flag.
            match RunSettings::resolve(preset.run.as_ref(), &RunOverrides::default()) {
                Ok(_) => Error::Sweep(err),
                Err(_) => at_table(&preset, "run", err),
            }
        })?,
    };
    if choices.record_steps {
        run.record_steps = true;
    }
    let (sweep_table, sweep_file, sweep_text) = if choices.single_cell {
        (SweepTable::default(), None, None)
    } else if let Some(path) = &choices.sweep_file {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            action: "read sweep file",
            path: path.display().to_string(),
            source,
        })?;
        let text = crate::preset::utf8_text(path, bytes)?;
        let table = SweepTable::from_file_text(&text)
            .map_err(|err| Error::Usage(format!("{}: {err}", path.display())))?;
        (
            table,
            Some(path.display().to_string()),
            Some((path.display().to_string(), text)),
        )
    } else {
        (preset.sweep.clone().unwrap_or_default(), None, None)
    };
    let sweep_source = sweep_text.unwrap_or_else(|| {
        (
            preset.path.display().to_string(),
            preset.source_text.clone(),
        )
    });
    let allow_unknown = choices.allow_unknown_knobs;
    // Names only: values reach Ferrum's resolver exactly as written.
    let knob_check = |name: &str, value: &str| -> Result<String, String> {
        match Registry::global().checked_value(name, value) {
            Ok(value) => Ok(value),
            Err(KnobError::Unknown { .. }) if allow_unknown => Ok(value.to_string()),
            Err(err) => Err(err.to_string()),
        }
    };
    let mut set: Vec<(String, String)> = Vec::new();
    for (i, (name, value)) in choices.set.iter().enumerate() {
        if let Some((_, first)) = choices.set[..i].iter().find(|(n, _)| n == name) {
            return Err(Error::Usage(format!(
                "--set {name} is given twice (`{first}` and `{value}`): give each knob once"
            )));
        }
        let canonical = knob_check(name, value)
            .map_err(|message| Error::Usage(format!("--set {name}={value}: {message}")))?;
        set.push((name.clone(), canonical));
    }
    if !choices.single_cell {
        check_axis_conflicts(choices, &sweep_table)?;
    }
    let plan = sweep::plan_with_limit(
        &preset.name,
        &run,
        &sweep_table,
        &set,
        &knob_check,
        choices.max_cells.unwrap_or(DEFAULT_MAX_CELLS),
    )
    .map_err(|err| at_sweep(&sweep_source, err))?;
    warnings.extend(plan.duplicates.iter().cloned());
    let engine_config = preset.engine.clone().unwrap_or_default();
    if !engine_config.takes_knobs() {
        let swept: Vec<&str> = plan
            .cells
            .iter()
            .flat_map(|c| c.knobs.keys())
            .chain(set.iter().map(|(k, _)| k))
            .map(String::as_str)
            .collect();
        if let Some(first) = swept.first() {
            return Err(Error::Usage(format!(
                "{}: [engine] kind = \"endpoint\" measures a server that is already running and cannot change FERRUM_* knobs at start-up, but `{first}` is swept or set: remove the knobs from [sweep] and --set (concurrency and request_rate still sweep), or use kind = \"server\" to launch one per cell",
                preset.path.display()
            )));
        }
    }
    let engines = EngineFactory::prepare(&engine_config, &preset.model.architecture)?;
    let tokens = engines.tokens().clone();
    let workload_hash = cell_workload_hash(&run.workload, &tokens, run.seed, run.repeats)?;
    let environment: Vec<(String, String)> = match &choices.fixed_environment {
        Some(env) => env.clone(),
        None if choices.inherit_env => std::env::vars()
            .filter(|(key, _)| key.starts_with("FERRUM_"))
            .collect(),
        None => Vec::new(),
    };
    let base = Overrides {
        cli: set,
        script_case: Vec::new(),
        inherit_env: choices.inherit_env,
        hardware: choices.hardware.clone(),
        allow_unknown_knobs: choices.allow_unknown_knobs,
    };
    // A typo in a knob name stops the whole run before anything starts.
    warnings.extend(check_knob_names(&preset, &base, &environment)?);
    // Resolve the preset once without cell knobs: surfaces environment warnings and bad
    // `--hardware` values before anything runs (cell-specific rejections only skip cells).
    match resolve_with_environment(&preset, &base, &environment) {
        Ok(resolution) => {
            warnings.extend(resolution.warnings.iter().cloned());
            warnings.extend(resolution.misread_warnings());
        }
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
        engines,
        tokens,
        workload_hash,
        base,
        environment,
        warnings,
        allow_misread_values: choices.allow_misread_values,
    })
}

/// The skip reason of a cell with values Ferrum's runtime would misread.
pub fn misread_reason(misread: &[String]) -> String {
    format!(
        "Ferrum's runtime would misread {}; pass --allow-misread-values to run it anyway",
        misread.join("; ")
    )
}

/// A flag that a sweep axis would override for every cell is an error naming the axis.
fn check_axis_conflicts(choices: &Choices, sweep_table: &SweepTable) -> Result<(), Error> {
    let load_axis = if sweep_table.concurrency.is_some() {
        Some("concurrency")
    } else if sweep_table.request_rate.is_some() {
        Some("request_rate")
    } else {
        None
    };
    if let Some(axis) = load_axis {
        let flag = match (choices.run.concurrency, choices.run.request_rate) {
            (Some(c), _) => Some(format!("--concurrency {c}")),
            (None, Some(r)) => Some(format!("--request-rate {r}")),
            (None, None) => None,
        };
        if let Some(flag) = flag {
            return Err(SweepError::AxisConflict {
                flag,
                axis: format!("[sweep] {axis}"),
            }
            .into());
        }
    }
    for (name, value) in &choices.set {
        if sweep_table
            .knobs
            .as_ref()
            .is_some_and(|k| k.contains_key(name))
        {
            return Err(SweepError::AxisConflict {
                flag: format!("--set {name}={value}"),
                axis: format!("[sweep.knobs] {name}"),
            }
            .into());
        }
    }
    Ok(())
}

/// `file:line: ` before an error of the preset's `[table]`.
fn at_table(preset: &Preset, table: &str, err: SweepError) -> Error {
    Error::Usage(format!(
        "{}:{}: {err}",
        preset.path.display(),
        preset.line_of_table(table)
    ))
}

/// `file:line: ` before a sweep error: the line of the offending knob's list when the error
/// names one, else of the `[sweep]` table (or line 1 of a sweep file).
fn at_sweep((path, text): &(String, String), err: SweepError) -> Error {
    let knob = match &err {
        SweepError::Knob { knob, .. } | SweepError::ZipLength { knob, .. } => Some(knob.as_str()),
        _ => None,
    };
    let line_of = |pred: &dyn Fn(&str) -> bool| {
        text.lines()
            .position(|l| pred(l.trim_start()))
            .map(|i| i + 1)
    };
    let line = knob
        .and_then(|k| {
            line_of(&|l: &str| {
                l.strip_prefix(k)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
        })
        .or_else(|| line_of(&|l: &str| l.starts_with("[sweep")))
        .unwrap_or(1);
    Error::Usage(format!("{path}:{line}: {err}"))
}

/// The prompt token space of a reference engine instance.
pub fn token_space(spec: &EngineSpec) -> TokenSpace {
    TokenSpace::with_special_prefix(spec.vocab_size as u32, REFERENCE_SPECIAL_IDS)
}

/// Resolves cells with the preset and starts engines of the preset's kind for them.
#[derive(Debug)]
pub struct ReferenceBackend<'a> {
    prepared: &'a Prepared,
    run_dir: Option<(PathBuf, String)>,
    stop: Cancel,
}

impl<'a> ReferenceBackend<'a> {
    /// A backend for a prepared run.
    pub fn new(prepared: &'a Prepared) -> Self {
        Self {
            prepared,
            run_dir: None,
            stop: Cancel::new(),
        }
    }

    /// Where server files of a cell are staged (`<run>/cells/.<cell>.server`) and the run id
    /// sent in correlation headers; `stop` aborts a server that is still loading.
    pub fn in_run_dir(mut self, root: &Path, run_id: &str, stop: &Cancel) -> Self {
        self.run_dir = Some((root.to_path_buf(), run_id.to_string()));
        self.stop = stop.clone();
        self
    }

    fn stage_dir(&self, cell: &Cell) -> PathBuf {
        let root = self
            .run_dir
            .as_ref()
            .map_or_else(std::env::temp_dir, |(root, _)| root.join("cells"));
        root.join(format!(".{}.server", cell.name))
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
        // Ferrum accepted the cell; a value its runtime would misread skips it unless allowed.
        if !p.allow_misread_values && !resolution.misread.is_empty() {
            return Err(misread_reason(&resolution.misread_warnings()));
        }
        Ok(ResolvedCell {
            effective_config_json: resolution.resolved.effective_config_json(),
            decision_trace_jsonl: resolution.resolved.decision_trace_jsonl(),
            tokens: p.tokens.clone(),
        })
    }

    fn start(
        &mut self,
        cell: &Cell,
        resolved: &ResolvedCell,
    ) -> Result<Box<dyn Engine>, EngineError> {
        let stage = self.stage_dir(cell);
        let run_id = self.run_dir.as_ref().map_or("", |(_, id)| id.as_str());
        self.prepared.engines.start(&CellStart {
            run_id,
            cell_name: &cell.name,
            effective_config_json: &resolved.effective_config_json,
            decision_trace_jsonl: &resolved.decision_trace_jsonl,
            stage_dir: &stage,
            cancel: &self.stop,
        })
    }

    fn finish_cell(&mut self, cell: &Cell, cell_dir: &Path) {
        let stage = self.stage_dir(cell);
        if let Err(err) = finish_stage(&stage, cell_dir) {
            eprintln!(
                "warning: cannot move server files from `{}` into `{}`: {err}",
                stage.display(),
                cell_dir.display()
            );
        }
    }
}

/// The settings of a `--resume`: what the run's manifest recorded, unless a flag was given
/// (a flag must then agree with the record; `check_resumable` says what changed).
pub(crate) fn resume_choices(
    choices: &Choices,
    dir: &RunDir,
    manifest: &Manifest,
) -> Result<(Choices, Vec<String>), Error> {
    let mut c = choices.clone();
    let mut notes = Vec::new();
    let refuse = |reason: String| {
        Error::Results(ResultsError::Resume {
            path: dir.root.display().to_string(),
            reason,
        })
    };
    if c.preset.as_os_str().is_empty() {
        c.preset = PathBuf::from(&manifest.preset.path);
    }
    if choices.run == RunOverrides::default() {
        c.fixed_run = Some(manifest.run.clone());
    }
    if c.set.is_empty() {
        c.set = manifest.sweep.set.clone().into_iter().collect();
    }
    match (choices.shard, manifest.sweep.shard) {
        (None, recorded) => c.shard = recorded,
        (Some(a), Some(b)) if a == b => {}
        (Some(a), recorded) => {
            return Err(refuse(format!(
                "--shard {}/{} differs from the run's {}; resume without --shard",
                a.index,
                a.count,
                recorded.map_or("(no shard)".to_string(), |s| format!(
                    "shard {}/{}",
                    s.index, s.count
                ))
            )))
        }
    }
    if c.sweep_file.is_none() {
        c.sweep_file = manifest.sweep.sweep_file.as_ref().map(PathBuf::from);
    }
    if let Some(id) = &manifest.identity {
        if c.hardware.is_none() {
            c.hardware.clone_from(&id.hardware);
        }
        c.allow_unknown_knobs |= id.allow_unknown_knobs;
        c.inherit_env = id.inherit_env;
        let current: BTreeMap<String, String> = if choices.inherit_env {
            std::env::vars()
                .filter(|(k, _)| k.starts_with("FERRUM_"))
                .collect()
        } else {
            BTreeMap::new()
        };
        if current != id.environment {
            notes.push(format!(
                "the FERRUM_* environment differs from the run's ({}); resuming with the recorded one",
                json_differences(
                    &serde_json::to_value(&id.environment).unwrap_or_default(),
                    &serde_json::to_value(&current).unwrap_or_default()
                )
                .join("; ")
            ));
        }
        c.fixed_environment = Some(id.environment.clone().into_iter().collect());
    }
    Ok((c, notes))
}

/// What the manifest records beyond the preset and the cell keys.
pub(crate) fn identity_of(choices: &Choices, prepared: &Prepared) -> RunIdentity {
    RunIdentity {
        environment: prepared.environment.iter().cloned().collect(),
        inherit_env: choices.inherit_env,
        hardware: choices.hardware.clone(),
        allow_unknown_knobs: choices.allow_unknown_knobs,
    }
}

/// Plan, then run (or list with `--dry-run`).
pub fn run(choices: &Choices, stop: &Cancel) -> Result<(Prepared, Outcome), Error> {
    // A resumed run directory is opened and locked first: its manifest supplies the settings.
    let resumed = match &choices.resume {
        Some(path) => {
            let dir = RunDir::open(path)?;
            let lock = dir.lock()?;
            let manifest = dir.read_manifest()?;
            Some((dir, lock, manifest))
        }
        None => None,
    };
    let (choices, notes) = match &resumed {
        Some((dir, _, manifest)) => resume_choices(choices, dir, manifest)?,
        None => (choices.clone(), Vec::new()),
    };
    let prepared = prepare(&choices)?;
    for warning in prepared.warnings.iter().chain(&notes) {
        eprintln!("warning: {warning}");
    }
    let cells = prepared.plan.shard(choices.shard);
    if cells.is_empty() {
        let n = prepared.plan.cells.len();
        let message = match choices.shard {
            Some(s) => format!(
                "nothing to run: shard {}/{} holds none of the sweep's {n} cell(s); use at most {n} shards",
                s.index, s.count
            ),
            None => "nothing to run: the sweep has no cells".to_string(),
        };
        return Ok((prepared, Outcome::Nothing(message)));
    }
    if choices.dry_run {
        let mut backend = ReferenceBackend::new(&prepared);
        let mut to_run = Vec::new();
        let mut skipped = Vec::new();
        // The resolver sees only the cell's knobs: cells that differ only in load share a
        // resolution, which keeps a 10,000-cell listing fast.
        let mut verdicts: BTreeMap<&BTreeMap<String, String>, Result<(), String>> = BTreeMap::new();
        for cell in &cells {
            let verdict = verdicts
                .entry(&cell.knobs)
                .or_insert_with(|| backend.resolve(cell).map(|_| ()));
            match verdict {
                Ok(()) => to_run.push(*cell),
                Err(reason) => skipped.push((*cell, reason.clone())),
            }
        }
        let estimate = Plan::estimate(
            &to_run,
            &prepared.run,
            DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S,
            DEFAULT_ENGINE_START_S,
        );
        let order = effective_order(&choices, &prepared);
        let mut listing = report::dry_run_listing(&to_run, &skipped, estimate);
        listing.push_str(&order_cost(order, to_run.len(), prepared.run.repeats));
        if let Some(n) = choices.rerun_noisy.filter(|n| *n > 0) {
            listing.push_str(&format!(
                "--rerun-noisy {n}: after the last round, up to {n} flagged repeat(s) are measured again (one engine start each)\n"
            ));
        }
        return Ok((prepared, Outcome::DryRun(listing)));
    }
    let preset_info = PresetInfo::new(
        &prepared.preset.name,
        &prepared.preset.path,
        &prepared.preset.source_text,
    );
    let identity = identity_of(&choices, &prepared);
    let (dir, _lock, mut manifest) = match resumed {
        Some((dir, lock, mut manifest)) => {
            manifest.check_resumable(
                &dir.root,
                &preset_info,
                &prepared.run,
                &prepared.workload_hash,
                &prepared.plan.set,
                Some(&identity),
            )?;
            // The order is the run's: a resume continues the recorded rounds.
            let recorded = manifest
                .schedule
                .as_ref()
                .map_or(Order::Sequential, |s| s.order);
            if let Some(asked) = choices.order.filter(|o| *o != recorded) {
                return Err(Error::Results(ResultsError::Resume {
                    path: dir.root.display().to_string(),
                    reason: format!(
                        "--order {} differs from the run's {}; resume without --order",
                        asked.as_str(),
                        recorded.as_str()
                    ),
                }));
            }
            // `--rerun-noisy` on a resume sets the run's limit (it counts every re-measurement
            // of the run, so raising it on a finished run re-measures more).
            if let (Some(n), Some(s)) = (choices.rerun_noisy, manifest.schedule.as_mut()) {
                s.rerun_noisy = (n > 0).then_some(n);
            } else if choices.rerun_noisy.is_some_and(|n| n > 0) {
                let mut s = Schedule::new(Order::Sequential, &[], 0, prepared.run.seed);
                s.rerun_noisy = choices.rerun_noisy;
                manifest.schedule = Some(s);
            }
            if choices.noise_thresholds.is_some() {
                manifest.noise_thresholds = choices.noise_thresholds;
            }
            (dir, lock, manifest)
        }
        None => {
            let material = format!(
                "{}|{}|{:?}",
                preset_info.hash, prepared.workload_hash, choices.shard
            );
            let run_id = RunDir::new_run_id(&material);
            let mut manifest = Manifest::new(
                &run_id,
                preset_info,
                &prepared.run,
                &prepared.plan,
                &cells,
                choices.shard,
                prepared.sweep_file.clone(),
                prepared.workload_hash.clone(),
            );
            manifest.identity = Some(identity);
            let order = effective_order(&choices, &prepared);
            if choices.auto_repeats && order != Order::Interleaved {
                return Err(Error::Usage(
                    "--repeats auto adds interleaved rounds: use it with --order interleaved (the default except for [engine] kind = \"server\")".into(),
                ));
            }
            let mut schedule =
                Schedule::new(order, &cells, prepared.run.repeats, prepared.run.seed);
            schedule.auto_repeats = choices.auto_repeats;
            schedule.rerun_noisy = choices.rerun_noisy.filter(|n| *n > 0);
            manifest.schedule = Some(schedule);
            manifest.noise_thresholds = choices.noise_thresholds;
            let (dir, lock) = RunDir::create_with_manifest(&choices.out, &manifest)?;
            (dir, lock, manifest)
        }
    };
    // Interleaved runs report one line per (cell, round) unit.
    let units = match &manifest.schedule {
        Some(s) if s.order == Order::Interleaved => {
            manifest.cells.len() * prepared.run.repeats as usize
        }
        _ => manifest.cells.len(),
    };
    // The thresholds the manifest records are the ones every repeat of this invocation uses.
    crate::noise::set_global_thresholds(
        manifest
            .noise_thresholds
            .unwrap_or(crate::noise::Thresholds::DEFAULT),
    );
    let mut progress = SweepProgress::new(units, choices.quiet);
    let mut backend =
        ReferenceBackend::new(&prepared).in_run_dir(&dir.root, &manifest.run_id, stop);
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

/// `--order`, else the engine kind's default.
fn effective_order(choices: &Choices, prepared: &Prepared) -> Order {
    choices
        .order
        .unwrap_or_else(|| Order::default_for(prepared.engines.config().kind()))
}

/// The `--dry-run` line on the run order and what it costs in engine starts.
fn order_cost(order: Order, cells: usize, repeats: u32) -> String {
    let rounds = repeats as usize;
    match order {
        Order::Interleaved => format!(
            "order: interleaved ({rounds} round(s), every cell once per round in a seeded order): {} engine start(s), one per cell per round (sequential: {cells}); the estimate above counts one per cell\n",
            cells * rounds
        ),
        Order::Sequential => format!(
            "order: sequential (every repeat of a cell back to back): {cells} engine start(s); --order interleaved would need {} (one per cell per round) and lets the ranking compare cells within rounds\n",
            cells * rounds
        ),
    }
}

/// The results root used when `--out` is not given.
pub fn default_results_root() -> &'static Path {
    Path::new("results")
}
