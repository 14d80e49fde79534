//! Per-cell bookkeeping benchmark (`cargo bench --bench bookkeeping`): does the cost of
//! recording a cell grow with the size of the sweep? Not a test: it asserts nothing, it reports.
//!
//! Two sweeps run through the real sweep loop (`execute::execute`, the code `sweep` runs) with an
//! instant engine: a 100-cell sweep and a 10,000-cell sweep. The 10,000-cell run directory first
//! gets its first 9,900 cells completed (run through the same loop once); then rounds alternate,
//! side by side in one process: (A) the whole 100-cell sweep, (B) the last 100 cells of the
//! 10,000-cell sweep, with 9,900 completed cells beside them on disk and 10,000 entries in the
//! manifest. Per cell, "bookkeeping" is the wall time of one loop iteration minus the time spent
//! inside the backend (resolve, engine start, the engine's run and shutdown): writing the cell
//! (files, fsyncs, rename), the manifest status, the status-log append, the progress line, and the
//! per-cell statistics. It is printed as the median and p90 per cell for A and B and the ratio of
//! medians B/A with a bootstrap 95 % interval over the interleaved rounds.
//!
//! It also times the per-invocation reading that `--resume` does (manifest + status log with one
//! line per cell, and the scan of completed cells), per cell, at both sizes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_bench::engine::instant::InstantEngine;
use ferrum_bench::engine::{
    Cancel, Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, LoadSpec, RunOptions,
    RunOutput,
};
use ferrum_bench::execute::{execute, CellBackend, ExecuteOptions, ResolvedCell, SweepTarget};
use ferrum_bench::measure::CellStatus;
use ferrum_bench::report::progress::SweepProgress;
use ferrum_bench::results::{Manifest, PresetInfo, RunDir, StatusLine};
use ferrum_bench::sweep::{plan, Cell, Plan, RunOverrides, RunSettings, SweepTable};
use ferrum_bench::workload::{cell_workload_hash, TokenSpace};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROUNDS: usize = 5;
const MEASURED_CELLS: usize = 100;
const BOOTSTRAP_SEED: u64 = 20_261_202;

/// Time spent inside the backend since the current cell began (shared with the engines).
#[derive(Default)]
struct Clock {
    /// Start of the current loop iteration (entry of `resolve`).
    iteration: Option<Instant>,
    /// Backend time within the current iteration.
    inside: Duration,
    /// Bookkeeping per finished iteration.
    samples: Vec<Duration>,
}

impl Clock {
    fn next_iteration(&mut self, now: Instant) {
        if let Some(t) = self.iteration {
            self.samples.push((now - t).saturating_sub(self.inside));
        }
        self.iteration = Some(now);
        self.inside = Duration::ZERO;
    }
}

/// The library's instant engine (every request finishes at once, tokens at virtual 1 ms steps),
/// with the time spent inside it added to the clock.
struct TimedEngine {
    inner: InstantEngine,
    clock: Arc<Mutex<Clock>>,
}

impl Engine for TimedEngine {
    fn info(&self) -> EngineInfo {
        self.inner.info()
    }

    fn run(
        &mut self,
        requests: &[EngineRequest],
        load: &LoadSpec,
        options: &RunOptions,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError> {
        let t = Instant::now();
        let out = self.inner.run(requests, load, options, progress);
        self.clock.lock().expect("clock").inside += t.elapsed();
        out
    }
}

struct Backend {
    clock: Arc<Mutex<Clock>>,
}

impl CellBackend for Backend {
    fn resolve(&mut self, cell: &Cell) -> Result<ResolvedCell, String> {
        let t = Instant::now();
        self.clock.lock().expect("clock").next_iteration(t);
        let r = ResolvedCell {
            effective_config_json: format!("{{\"cell\":\"{}\"}}\n", cell.name),
            decision_trace_jsonl: "{\"selection\":\"bench\"}\n".into(),
            tokens: tokens(),
        };
        self.clock.lock().expect("clock").inside += t.elapsed();
        Ok(r)
    }

    fn start(&mut self, _: &Cell, _: &ResolvedCell) -> Result<Box<dyn Engine>, EngineError> {
        Ok(Box::new(TimedEngine {
            inner: InstantEngine::new("bench-instant"),
            clock: self.clock.clone(),
        }))
    }
}

fn tokens() -> TokenSpace {
    TokenSpace::with_special_prefix(1000, 10)
}

fn settings() -> RunSettings {
    RunSettings::resolve(
        None,
        &RunOverrides {
            requests: Some(4),
            warmup_requests: Some(0),
            repeats: Some(1),
            concurrency: Some(1),
            ..Default::default()
        },
    )
    .expect("run settings")
}

/// A sweep of `n` cells (one knob with `n` values).
fn sweep_plan(run: &RunSettings, n: usize) -> Plan {
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let table = SweepTable::from_file_text(&format!(
        "[knobs]\nFERRUM_BENCH_CELL = [{}]\n",
        values.join(", ")
    ))
    .expect("sweep table");
    plan("bench", run, &table, &[], &|_, v| Ok(v.to_string())).expect("plan")
}

struct Sweep {
    dir: RunDir,
    manifest: Manifest,
    plan: Plan,
}

fn create(root: &Path, run: &RunSettings, n: usize) -> Sweep {
    let plan = sweep_plan(run, n);
    let cells = plan.shard(None);
    let id = RunDir::new_run_id(&format!("bench-{n}"));
    let wh = cell_workload_hash(&run.workload, &tokens(), run.seed, run.repeats).expect("hash");
    let manifest = Manifest::new(
        &id,
        PresetInfo::new("bench", Path::new("bench.toml"), "name = \"bench\"\n"),
        run,
        &plan,
        &cells,
        None,
        None,
        wh,
    );
    let dir = RunDir::create(root, &id).expect("run dir");
    dir.write_manifest(&manifest).expect("manifest");
    Sweep {
        dir,
        manifest,
        plan,
    }
}

/// Mark the cells from `from` on pending again (their directories removed), as a run that has
/// not reached them yet.
fn reset_from(s: &mut Sweep, from: usize) {
    let entries: Vec<(String, String)> = s.manifest.cells[from..]
        .iter()
        .map(|c| (c.key.clone(), c.name.clone()))
        .collect();
    for (key, name) in entries {
        s.dir.remove_cell(&name).expect("remove cell");
        s.manifest.set_status(&key, CellStatus::Pending, None);
    }
    s.manifest.finished_at = None;
    s.dir.write_manifest(&s.manifest).expect("manifest");
}

/// Run the sweep loop over every pending cell; returns per-cell bookkeeping times.
fn run_loop(s: &mut Sweep, run: &RunSettings) -> Vec<Duration> {
    let clock = Arc::new(Mutex::new(Clock::default()));
    let mut backend = Backend {
        clock: clock.clone(),
    };
    let mut progress = SweepProgress::new(s.manifest.cells.len(), true);
    let Sweep {
        dir,
        manifest,
        plan,
    } = s;
    let summary = execute(
        SweepTarget { dir, plan, run },
        manifest,
        &mut backend,
        &Cancel::new(),
        ExecuteOptions::default(),
        &mut progress,
    )
    .expect("execute");
    assert_eq!(summary.failed, 0, "{summary:?}");
    // The last iteration ends where the loop's final checkpoint begins; it is not counted (its
    // end is not observable from the backend), so n cells give n − 1 samples.
    let samples = clock.lock().expect("clock").samples.clone();
    samples
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    quantile(&s, 0.5)
}

fn ms(v: &[Duration]) -> Vec<f64> {
    v.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

/// Bootstrap 95 % interval of median(b)/median(a), resampling rounds (pairs stay together).
fn ratio_ci(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut ratios = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        for _ in 0..a.len() {
            let r = (rng.next_u32() as usize) % a.len();
            // Resample cells inside the chosen round too.
            for _ in 0..a[r].len() {
                ra.push(a[r][(rng.next_u32() as usize) % a[r].len()]);
            }
            for _ in 0..b[r].len() {
                rb.push(b[r][(rng.next_u32() as usize) % b[r].len()]);
            }
        }
        ratios.push(median(&rb) / median(&ra));
    }
    ratios.sort_by(f64::total_cmp);
    (quantile(&ratios, 0.025), quantile(&ratios, 0.975))
}

fn resume_read(s: &Sweep) -> Duration {
    let t = Instant::now();
    let m = s.dir.read_manifest().expect("read manifest");
    let done = s.dir.completed_cell_keys().expect("completed cells");
    assert_eq!(m.cells.len(), done.len());
    t.elapsed()
}

/// Append one status line per cell (as a run does) so the resume read folds a full log in.
fn log_every_cell(s: &Sweep) {
    for c in &s.manifest.cells {
        s.dir
            .record_status(&StatusLine {
                key: c.key.clone(),
                status: CellStatus::Completed,
                reason: None,
                engine: None,
                repeats: None,
            })
            .expect("status line");
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let root = tempfile::tempdir().expect("temp dir");
    let run = settings();
    println!(
        "bookkeeping benchmark: load average at start {}",
        load_average()
    );
    let t = Instant::now();
    let mut small = create(root.path(), &run, MEASURED_CELLS);
    let mut large = create(root.path(), &run, 10_000);
    // Fill the large run up to cell 9,900 through the same loop.
    reset_from(&mut large, 0);
    let fill = run_loop(&mut large, &run);
    println!(
        "filled the 10,000-cell run in {:.1} s (median bookkeeping {:.3} ms/cell over its first 10,000 cells)",
        t.elapsed().as_secs_f64(),
        median(&ms(&fill))
    );
    let (mut rounds_a, mut rounds_b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        reset_from(&mut small, 0);
        let a = ms(&run_loop(&mut small, &run));
        reset_from(&mut large, 10_000 - MEASURED_CELLS);
        let b = ms(&run_loop(&mut large, &run));
        println!(
            "round {}: median ms/cell  100-cell sweep {:.3}  10,000-cell sweep (cells 9,901-10,000) {:.3}",
            round + 1,
            median(&a),
            median(&b)
        );
        rounds_a.push(a);
        rounds_b.push(b);
    }
    let all = |r: &[Vec<f64>]| {
        let mut v: Vec<f64> = r.iter().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (all(&rounds_a), all(&rounds_b));
    let (lo, hi) = ratio_ci(&rounds_a, &rounds_b);
    println!();
    println!("| per-cell bookkeeping | median ms | p90 ms | cells timed |");
    println!("|---|---|---|---|");
    println!(
        "| 100-cell sweep | {:.3} | {:.3} | {} |",
        quantile(&a, 0.5),
        quantile(&a, 0.9),
        a.len()
    );
    println!(
        "| 10,000-cell sweep, cells 9,901-10,000 | {:.3} | {:.3} | {} |",
        quantile(&b, 0.5),
        quantile(&b, 0.9),
        b.len()
    );
    println!(
        "ratio of medians (10,000 / 100): {:.2} [95 % bootstrap {:.2}, {:.2}]",
        quantile(&b, 0.5) / quantile(&a, 0.5),
        lo,
        hi
    );

    // Resume reading, per cell: the manifest with a status line per cell, and the scan of
    // every completed cell's files.
    reset_from(&mut small, 0);
    run_loop(&mut small, &run);
    log_every_cell(&small);
    reset_from(&mut large, 10_000 - MEASURED_CELLS);
    run_loop(&mut large, &run);
    log_every_cell(&large);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        ra.push(resume_read(&small).as_secs_f64() * 1e3 / 100.0);
        rb.push(resume_read(&large).as_secs_f64() * 1e3 / 10_000.0);
    }
    println!(
        "resume read per cell (manifest + status log + completed-cell scan): 100 cells {:.4} ms, 10,000 cells {:.4} ms (medians of 3, ratio {:.2})",
        median(&ra),
        median(&rb),
        median(&rb) / median(&ra)
    );
    println!("load average at end {}", load_average());
}
