//! `run_repeats` (the repeat loop on one engine) and `run_cell` (engine start + repeats, with
//! engine errors and panics turned into a failed cell instead of a failed sweep).

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::{Deserialize, Serialize};

use super::{
    aggregate_repeats, summarize, CellAggregate, LoadPoint, RepeatMeta, RepeatSummary,
    RequestRecord,
};
use crate::engine::{
    Cancel, Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, RequestStatus, RunOptions,
    RunPhase, StepRecord,
};
use crate::stats::Slo;
use crate::workload::{self, TokenSpace, WorkloadError, WorkloadSpec};

/// What a cell runs: workload, seeds, repeats, load and SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRunSpec {
    /// The workload (lengths, request counts).
    pub workload: WorkloadSpec,
    /// The token ids prompts may use (from the model).
    pub tokens: TokenSpace,
    /// Base seed; repeat r uses `repeat_seed(base_seed, r)`.
    pub base_seed: u64,
    /// Number of repeats (≥ 1) to run now.
    pub repeats: u32,
    /// Index of the first repeat to run: repeats `first_repeat..first_repeat + repeats` run, each
    /// with its own seed, so a cell measured in several parts (a tuner adding repeats, rounds)
    /// gets exactly the repeats one whole run would have.
    pub first_repeat: u32,
    /// Load shape.
    pub load: LoadPoint,
    /// Goodput SLO.
    pub slo: Slo,
    /// Ask the engine for per-step records (`steps.jsonl`).
    pub record_steps: bool,
    /// Sample the machine around every measured run with the process-wide
    /// [`crate::noise::global`] monitor (calibration kernel before, counters across).
    pub monitor_noise: bool,
    /// The interleaved round these repeats belong to (stamped on each repeat's summary).
    pub round: Option<u32>,
}

/// Progress of a cell, for progress bars and logs (never for statistics).
#[derive(Debug, Clone, PartialEq)]
pub enum MeasureEvent {
    /// A repeat's warmup begins.
    WarmupStarted {
        /// Repeat index (0-based; messages print it 1-based, as progress does).
        repeat: u32,
        /// Warmup requests.
        requests: usize,
    },
    /// A repeat's measured run begins.
    RepeatStarted {
        /// Repeat index (0-based; messages print it 1-based, as progress does).
        repeat: u32,
        /// Measured requests.
        requests: usize,
    },
    /// An engine event of the measured run.
    Engine(EngineEvent),
    /// A repeat finished.
    RepeatDone {
        /// Repeat index (0-based; messages print it 1-based, as progress does).
        repeat: u32,
        /// Its output tokens/s.
        output_tokens_per_s: f64,
    },
}

/// One finished repeat: its summary, its request records and (optionally) engine steps.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatResult {
    /// Per-repeat statistics.
    pub summary: RepeatSummary,
    /// One record per measured request.
    pub records: Vec<RequestRecord>,
    /// Engine steps of the measured run (empty unless requested).
    pub steps: Vec<StepRecord>,
}

/// Every repeat of a cell plus the aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMeasurement {
    /// The engine that ran.
    pub engine: EngineInfo,
    /// Repeats in order.
    pub repeats: Vec<RepeatResult>,
    /// Aggregate across repeats.
    pub aggregate: CellAggregate,
    /// `combined_hash` of the repeats' workload hashes.
    pub workload_hash: String,
}

/// Why a cell's measurement stopped.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The workload could not be generated.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The engine returned an error.
    #[error("repeat {} ({phase}): {source}", .repeat + 1)]
    Engine {
        /// Repeat index (0-based; messages print it 1-based, as progress does).
        repeat: u32,
        /// `start`, `warmup` or `measured`.
        phase: &'static str,
        /// The engine's error.
        #[source]
        source: EngineError,
    },
    /// The engine's output does not match the requests it was given.
    #[error("repeat {}: engine returned inconsistent output: {detail}", .repeat + 1)]
    InvalidOutput {
        /// Repeat index (0-based; messages print it 1-based, as progress does).
        repeat: u32,
        /// What is wrong.
        detail: String,
    },
    /// Not one measured request of a repeat succeeded: there is nothing to measure.
    #[error(
        "repeat {}: no request succeeded ({failed} unsuccessful); first: {first_reason}",
        .repeat + 1
    )]
    NothingSucceeded {
        /// Repeat index (0-based; messages print it 1-based, as progress does).
        repeat: u32,
        /// Unsuccessful requests.
        failed: usize,
        /// The first request's rejection or failure reason.
        first_reason: String,
    },
    /// The stop flag was raised (Ctrl-C or budget) before the cell finished.
    #[error("interrupted after {completed_repeats} complete repeat(s)")]
    Interrupted {
        /// Repeats that had finished.
        completed_repeats: u32,
    },
}

/// Final state of a cell, as recorded in the manifest.
#[derive(Debug)]
pub enum CellOutcome {
    /// Every repeat ran.
    Completed(Box<CellMeasurement>),
    /// The engine failed to start, returned an error, produced inconsistent output or panicked.
    Failed {
        /// One-line reason.
        reason: String,
    },
    /// Stopped by the stop flag; nothing of the cell is kept.
    Interrupted,
}

/// Serializable status of a cell in `manifest.json` and `summary.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Not run yet.
    Pending,
    /// Every repeat ran and `stats.json` is complete.
    Completed,
    /// The resolver rejected the cell's configuration; never run.
    Skipped,
    /// The engine failed.
    Failed,
    /// Ctrl-C stopped the cell.
    Interrupted,
    /// Some, not all, of the planned repeats are measured and `stats.json` holds them: an
    /// interleaved run stopped between rounds (Ctrl-C or `--time-budget`). The manifest's
    /// `repeats_done` / `repeats_planned` say how many; `--resume` measures the rest.
    Partial,
}

/// Run every repeat of `spec` on `engine`: per repeat generate the workload, run the warmup
/// requests (not measured), run the measured requests, derive records and the summary. The stop
/// signal is checked before every engine run and handed to the engine, which polls it every
/// step, so a stop takes effect within one scheduler step.
pub fn run_repeats(
    engine: &mut dyn Engine,
    spec: &CellRunSpec,
    stop: &Cancel,
    observer: &mut dyn FnMut(&MeasureEvent),
) -> Result<CellMeasurement, MeasureError> {
    let options = |phase: RunPhase, repeat: u32| RunOptions {
        record_steps: spec.record_steps,
        cancel: stop.clone(),
        phase,
        repeat,
    };
    let mut repeats = Vec::with_capacity(spec.repeats as usize);
    let first = spec.first_repeat;
    for repeat in first..first.saturating_add(spec.repeats) {
        let interrupted = || MeasureError::Interrupted {
            completed_repeats: repeat - first,
        };
        let w = workload::generate(&spec.workload, &spec.tokens, spec.base_seed, repeat)?;
        let mut warmup_failed = 0;
        if !w.warmup.is_empty() {
            if stop.is_cancelled() {
                return Err(interrupted());
            }
            observer(&MeasureEvent::WarmupStarted {
                repeat,
                requests: w.warmup.len(),
            });
            let out = engine
                .run(
                    &w.warmup,
                    &spec.load.warmup_load(w.warmup.len()),
                    &options(RunPhase::Warmup, repeat),
                    &mut |_| {},
                )
                .map_err(|source| engine_error(repeat, "warmup", source))?;
            warmup_failed = out.requests.iter().filter(|t| !t.status.is_ok()).count();
        }
        if stop.is_cancelled() {
            return Err(interrupted());
        }
        observer(&MeasureEvent::RepeatStarted {
            repeat,
            requests: w.measured.len(),
        });
        let load = spec.load.load_spec(w.measured.len(), w.seed);
        if spec.monitor_noise {
            lock_monitor().begin();
        }
        let out = engine
            .run(
                &w.measured,
                &load,
                &options(RunPhase::Measured, repeat),
                &mut |e| observer(&MeasureEvent::Engine(e.clone())),
            )
            .map_err(|source| engine_error(repeat, "measured", source))?;
        let noise = spec.monitor_noise.then(|| lock_monitor().end());
        check_output(repeat, &w.measured, &out.requests)?;
        if !out.requests.is_empty() && out.requests.iter().all(|t| !t.status.is_ok()) {
            let first_reason = match &out.requests[0].status {
                RequestStatus::Rejected { reason } | RequestStatus::Failed { reason } => {
                    reason.clone()
                }
                RequestStatus::Ok => String::new(),
            };
            return Err(MeasureError::NothingSucceeded {
                repeat,
                failed: out.requests.len(),
                first_reason,
            });
        }
        let records: Vec<RequestRecord> = out
            .requests
            .iter()
            .map(|t| RequestRecord::from_trace(repeat, t, &spec.slo))
            .collect();
        let meta = RepeatMeta {
            repeat,
            seed: w.seed,
            workload_hash: w.hash.clone(),
            warmup_requests: w.warmup.len(),
            warmup_failed,
        };
        let mut summary = summarize(meta, &records, &out);
        if let LoadPoint::Closed { concurrency } = spec.load {
            if let Some(steady) = super::steady::steady_state(&out.requests, concurrency) {
                summary.steady_output_tokens_per_s = Some(steady.output_tokens_per_s);
                summary.steady_window_s = Some(steady.window_s);
            }
        }
        summary.noise = noise;
        summary.round = spec.round;
        observer(&MeasureEvent::RepeatDone {
            repeat,
            output_tokens_per_s: summary.output_tokens_per_s,
        });
        repeats.push(RepeatResult {
            summary,
            records,
            steps: out.steps,
        });
    }
    let summaries: Vec<RepeatSummary> = repeats.iter().map(|r| r.summary.clone()).collect();
    let hashes: Vec<String> = summaries.iter().map(|s| s.workload_hash.clone()).collect();
    Ok(CellMeasurement {
        engine: engine.info(),
        aggregate: aggregate_repeats(&summaries),
        workload_hash: workload::combined_hash(&hashes),
        repeats,
    })
}

/// The process-wide noise monitor; a poisoned lock (a panic elsewhere while sampling) still
/// holds a usable monitor.
fn lock_monitor() -> std::sync::MutexGuard<'static, crate::noise::NoiseMonitor> {
    crate::noise::global()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The engine must answer every request exactly once, in id order, with its prompt length.
fn check_output(
    repeat: u32,
    requests: &[EngineRequest],
    traces: &[crate::engine::RequestTrace],
) -> Result<(), MeasureError> {
    let bad = |detail: String| Err(MeasureError::InvalidOutput { repeat, detail });
    if requests.len() != traces.len() {
        return bad(format!(
            "{} traces for {} requests",
            traces.len(),
            requests.len()
        ));
    }
    for (r, t) in requests.iter().zip(traces) {
        if r.id != t.id {
            return bad(format!(
                "trace for request {} where {} was expected",
                t.id, r.id
            ));
        }
        if t.status.is_ok() && t.token_ns.len() != r.output_tokens {
            return bad(format!(
                "request {} succeeded with {} tokens instead of {}",
                r.id,
                t.token_ns.len(),
                r.output_tokens
            ));
        }
    }
    Ok(())
}

/// Map an engine error of `repeat`'s `phase`: a cancelled run is an interruption (the stop signal
/// was raised mid-run), anything else an engine failure.
fn engine_error(repeat: u32, phase: &'static str, source: EngineError) -> MeasureError {
    match source {
        EngineError::Cancelled => MeasureError::Interrupted {
            completed_repeats: repeat,
        },
        source => MeasureError::Engine {
            repeat,
            phase,
            source,
        },
    }
}

/// Start an engine with `make_engine` and run the cell. Engine start errors, run errors,
/// inconsistent output and panics (in either) become [`CellOutcome::Failed`] with a one-line
/// reason so a sweep can go on; a raised stop flag gives [`CellOutcome::Interrupted`].
pub fn run_cell(
    make_engine: &mut dyn FnMut() -> Result<Box<dyn Engine>, EngineError>,
    spec: &CellRunSpec,
    stop: &Cancel,
    observer: &mut dyn FnMut(&MeasureEvent),
) -> CellOutcome {
    let result = catch_unwind(AssertUnwindSafe(
        || -> Result<CellMeasurement, MeasureError> {
            let mut engine = make_engine().map_err(|source| MeasureError::Engine {
                repeat: 0,
                phase: "start",
                source,
            })?;
            let measured = run_repeats(engine.as_mut(), spec, stop, observer);
            // Stop a launched server now rather than at drop; a failure to stop is reported
            // only when the measurement itself succeeded.
            let stopped = engine.shutdown();
            let m = measured?;
            stopped.map_err(|source| MeasureError::Engine {
                repeat: spec.first_repeat.saturating_add(spec.repeats),
                phase: "shutdown",
                source,
            })?;
            Ok(m)
        },
    ));
    match result {
        Ok(Ok(m)) => CellOutcome::Completed(Box::new(m)),
        Ok(Err(MeasureError::Interrupted { .. })) => CellOutcome::Interrupted,
        Ok(Err(MeasureError::Engine {
            phase: "start",
            source,
            ..
        })) => CellOutcome::Failed {
            reason: format!("engine did not start: {source}"),
        },
        Ok(Err(e)) => CellOutcome::Failed {
            reason: e.to_string(),
        },
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            CellOutcome::Failed {
                reason: format!("engine panicked: {msg}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{LoadSpec, RequestStatus, RequestTrace};
    use crate::measure::fake::FakeEngine;
    use crate::stats::Ci95;

    fn spec(repeats: u32) -> CellRunSpec {
        CellRunSpec {
            workload: WorkloadSpec {
                input_len: 8,
                output_len: 4,
                range_ratio: 0.0,
                prefix_len: 0,
                requests: 8,
                warmup_requests: 2,
            },
            tokens: TokenSpace::with_special_prefix(1000, 10),
            base_seed: 7,
            repeats,
            first_repeat: 0,
            load: LoadPoint::Closed { concurrency: 4 },
            slo: Slo {
                ttft_ms: Some(1.5),
                tpot_ms: None,
                e2e_ms: None,
            },
            record_steps: false,
            monitor_noise: false,
            round: None,
        }
    }

    #[test]
    fn repeats_run_warmup_first_and_measure_only_the_rest() {
        let mut engine = FakeEngine::new(1_000_000); // 1 ms per token
        let stop = Cancel::new();
        let mut events = Vec::new();
        let m = run_repeats(&mut engine, &spec(3), &stop, &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
        // 3 repeats × (warmup of 2, measured 8).
        let sizes: Vec<usize> = engine.calls.iter().map(|c| c.0).collect();
        assert_eq!(sizes, vec![2, 8, 2, 8, 2, 8]);
        assert_eq!(m.repeats.len(), 3);
        let s = &m.repeats[0].summary;
        // Closed loop c=4, 8 requests of 4 tokens at 1 ms: two waves, duration 8 ms.
        assert_eq!(s.duration_s, 0.008);
        assert_eq!(
            (s.completed, s.expected_requests, s.warmup_requests),
            (8, 8, 2)
        );
        assert_eq!(s.output_tokens_per_s, 32.0 / 0.008);
        assert_eq!(s.tpot_ms.unwrap().mean, 1.0);
        assert_eq!(s.ttft_ms.unwrap().median, 1.0);
        assert_eq!(s.itl_ms.unwrap().count, 8 * 3);
        // SLO ttft ≤ 1.5 ms: every request is good (closed loop measures from slot arrival).
        assert_eq!(s.good, 8);
        assert_eq!(m.aggregate.repeats, 3);
        let tps = m.aggregate.output_tokens_per_s.as_ref().unwrap();
        assert_eq!(tps.mean, 4000.0);
        assert!(matches!(tps.ci95, Ci95::Interval { half_width, .. } if half_width == 0.0));
        // Different repeat seeds, combined hash over the three.
        assert_ne!(m.repeats[0].summary.seed, m.repeats[1].summary.seed);
        assert!(m.workload_hash.starts_with("sha256:"));
        assert_eq!(m.engine.kind, "fake");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, MeasureEvent::RepeatDone { .. }))
                .count(),
            3
        );
        // Warmup engine events are not forwarded: 8 measured requests × 3 repeats done events.
        let done = events
            .iter()
            .filter(|e| matches!(e, MeasureEvent::Engine(EngineEvent::RequestDone { .. })))
            .count();
        assert_eq!(done, 24);
    }

    #[test]
    fn rejected_requests_are_reported_not_measured() {
        let mut engine = FakeEngine::new(1_000_000);
        engine.reject = vec![3];
        let m = run_repeats(&mut engine, &spec(1), &Cancel::new(), &mut |_| {}).unwrap();
        let r = &m.repeats[0];
        assert_eq!((r.summary.completed, r.summary.rejected), (7, 1));
        assert_eq!(r.records[3].status, "rejected");
        assert_eq!(r.summary.e2e_ms.unwrap().count, 7);
        assert_eq!(m.aggregate.unsuccessful_requests, 1);
        assert_eq!(
            m.aggregate.output_tokens_per_s.as_ref().unwrap().ci95,
            Ci95::TooFewRepeats { repeats: 1 }
        );
    }

    #[test]
    fn open_loop_uses_seeded_arrivals_and_warmup_all_at_once() {
        let mut engine = FakeEngine::new(1_000_000);
        let mut s = spec(1);
        s.load = LoadPoint::Open {
            request_rate: 100.0,
            burstiness: 1.0,
        };
        run_repeats(&mut engine, &s, &Cancel::new(), &mut |_| {}).unwrap();
        assert_eq!(engine.calls[0].1, LoadSpec::Closed { concurrency: 2 });
        let LoadSpec::Open { arrivals_s } = &engine.calls[1].1 else {
            panic!("open loop expected")
        };
        assert_eq!(arrivals_s.len(), 8);
        let mut again = FakeEngine::new(1_000_000);
        run_repeats(&mut again, &s, &Cancel::new(), &mut |_| {}).unwrap();
        assert_eq!(
            again.calls[1].1, engine.calls[1].1,
            "same seed, same arrivals"
        );
    }

    #[test]
    fn a_repeat_where_no_request_succeeds_fails_the_cell_but_partial_rejection_does_not() {
        let stop = Cancel::new();
        let mut reject_all = || -> Result<Box<dyn Engine>, EngineError> {
            let mut e = FakeEngine::new(1_000);
            e.reject = (0..10_000).collect();
            Ok(Box::new(e))
        };
        match run_cell(&mut reject_all, &spec(2), &stop, &mut |_| {}) {
            CellOutcome::Failed { reason } => {
                assert!(
                    reason.starts_with("repeat 1: no request succeeded"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        let mut reject_one = || -> Result<Box<dyn Engine>, EngineError> {
            let mut e = FakeEngine::new(1_000);
            e.reject = vec![0];
            Ok(Box::new(e))
        };
        assert!(matches!(
            run_cell(&mut reject_one, &spec(2), &stop, &mut |_| {}),
            CellOutcome::Completed(_)
        ));
    }

    #[test]
    fn engine_errors_and_panics_fail_the_cell_and_stop_interrupts_it() {
        let stop = Cancel::new();
        let mut make = || -> Result<Box<dyn Engine>, EngineError> {
            let mut e = FakeEngine::new(1_000);
            e.fail_on_call = Some(3);
            Ok(Box::new(e))
        };
        match run_cell(&mut make, &spec(3), &stop, &mut |_| {}) {
            CellOutcome::Failed { reason } => assert_eq!(
                reason,
                "repeat 2 (measured): engine failure: scripted failure"
            ),
            other => panic!("{other:?}"),
        }
        let mut make_panic = || -> Result<Box<dyn Engine>, EngineError> {
            let mut e = FakeEngine::new(1_000);
            e.panic_on_call = Some(0);
            Ok(Box::new(e))
        };
        match run_cell(&mut make_panic, &spec(1), &stop, &mut |_| {}) {
            CellOutcome::Failed { reason } => assert_eq!(reason, "engine panicked: scripted panic"),
            other => panic!("{other:?}"),
        }
        let mut make_bad = || -> Result<Box<dyn Engine>, EngineError> {
            Err(EngineError::Config("bad dims".into()))
        };
        match run_cell(&mut make_bad, &spec(1), &stop, &mut |_| {}) {
            CellOutcome::Failed { reason } => {
                assert_eq!(
                    reason,
                    "engine did not start: invalid engine configuration: bad dims"
                )
            }
            other => panic!("{other:?}"),
        }
        // Raise the stop flag after the first repeat finishes.
        let stop = Cancel::new();
        let mut make_ok =
            || -> Result<Box<dyn Engine>, EngineError> { Ok(Box::new(FakeEngine::new(1_000))) };
        let outcome = run_cell(&mut make_ok, &spec(3), &stop, &mut |e| {
            if matches!(e, MeasureEvent::RepeatDone { repeat: 0, .. }) {
                stop.cancel();
            }
        });
        assert!(matches!(outcome, CellOutcome::Interrupted));
    }

    #[test]
    fn inconsistent_engine_output_is_rejected() {
        let reqs = vec![EngineRequest {
            id: 0,
            prompt: vec![1],
            output_tokens: 2,
        }];
        let t = RequestTrace {
            id: 0,
            status: RequestStatus::Ok,
            prompt_tokens: 1,
            arrival_ns: 0,
            admitted_ns: Some(0),
            token_ns: vec![1],
            finished_ns: 1,
            output_ids: vec![],
        };
        let err = check_output(0, &reqs, &[t]).unwrap_err().to_string();
        assert!(
            err.contains("succeeded with 1 tokens instead of 2"),
            "{err}"
        );
        assert!(check_output(0, &reqs, &[]).is_err());
    }
}
