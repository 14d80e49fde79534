//! The `Engine` boundary: what every engine kind (the in-process reference engine, the HTTP
//! engines of [`http`]) must offer the measurement loop; [`factory`] turns `[engine] kind` into a
//! started engine.
//!
//! An engine is started for one resolved configuration, then asked to *run a set of requests*
//! under a load shape (closed loop at a concurrency, or open loop with arrival times). The engine
//! owns the load shape because an in-process engine realises it inside its own step loop, while an
//! HTTP engine realises it with concurrent client connections; either way it reports, per request,
//! monotonic timestamps of arrival, admission and every generated token, relative to the instant
//! the run started. Statistics are not computed here: `engine/` knows nothing of statistics or
//! export.

pub mod factory;
pub mod http;
pub mod instant;
pub mod reference;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One request of a run: the prompt as token ids and the exact number of tokens to generate
/// (end-of-sequence is ignored, so every successful request produces exactly that many).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRequest {
    /// Index of the request within the run (0-based, unique).
    pub id: u64,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Exact number of output tokens to generate.
    pub output_tokens: usize,
}

/// How requests are offered to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LoadSpec {
    /// Closed loop: keep `concurrency` requests in flight; the next request (in id order) arrives
    /// the moment one finishes.
    Closed {
        /// Requests in flight.
        concurrency: usize,
    },
    /// Open loop: request `i` (in id order) arrives `arrivals_s[i]` seconds after the run starts,
    /// with no cap on requests in flight.
    Open {
        /// Arrival offsets in seconds, non-decreasing, one per request.
        arrivals_s: Vec<f64>,
    },
}

/// Outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RequestStatus {
    /// Generated every requested token.
    Ok,
    /// Refused by the engine for capacity or length reasons (never admitted).
    Rejected {
        /// Why, e.g. `prompt of 900 tokens + 128 output exceeds KV capacity of 512 tokens`.
        reason: String,
    },
    /// Admitted but did not complete.
    Failed {
        /// Why.
        reason: String,
    },
}

impl RequestStatus {
    /// True for [`RequestStatus::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, RequestStatus::Ok)
    }
}

/// Timeline of one request. All times are nanoseconds on a monotonic clock since the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTrace {
    /// The request's id.
    pub id: u64,
    /// Outcome.
    pub status: RequestStatus,
    /// Number of prompt tokens.
    pub prompt_tokens: usize,
    /// When the request was offered to the engine (closed loop: when its slot freed).
    pub arrival_ns: u64,
    /// When the engine admitted it (KV reserved); `None` if never admitted.
    pub admitted_ns: Option<u64>,
    /// When each output token became available; the first one marks TTFT.
    pub token_ns: Vec<u64>,
    /// When the request finished (completed, rejected or failed).
    pub finished_ns: u64,
    /// Generated token ids (kept for correctness checks; may be empty for HTTP engines).
    pub output_ids: Vec<u32>,
}

/// A cancellation signal shared between the harness (Ctrl-C, time budget) and a running engine.
///
/// Engines poll it at their natural boundaries (the reference engine before every scheduler step,
/// an HTTP engine between stream reads) so a stop takes effect within one step rather than at the
/// end of a run, and return [`EngineError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh, not-yet-raised signal.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Wrap an existing flag (the process-wide Ctrl-C flag), so raising it cancels the run.
    pub fn from_flag(flag: Arc<AtomicBool>) -> Cancel {
        Cancel(flag)
    }

    /// Raise the signal.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the signal was raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl PartialEq for Cancel {
    /// Two signals are equal when they are the same flag (options compare by identity).
    fn eq(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancel {}

/// Options for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Record one [`StepRecord`] per scheduler step (`steps.jsonl`).
    pub record_steps: bool,
    /// Checked by the engine at every step; when raised the run ends with
    /// [`EngineError::Cancelled`].
    pub cancel: Cancel,
    /// Which part of a repeat this run is (HTTP engines send it as a correlation header).
    pub phase: RunPhase,
    /// 0-based repeat index within the cell (the `repeat` of `requests.jsonl`).
    pub repeat: u32,
}

/// The part of a repeat an engine run belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunPhase {
    /// Warmup requests: run, not measured.
    Warmup,
    /// The measured requests.
    #[default]
    Measured,
}

impl RunPhase {
    /// The value of Ferrum's `x-ferrum-benchmark-phase` header: `warmup` or `measured`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Warmup => "warmup",
            RunPhase::Measured => "measured",
        }
    }
}

/// One scheduler step of an in-process engine (`steps.jsonl`), explaining *why* a cell is fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step index within the run.
    pub step: u64,
    /// Step start, ns since run start.
    pub start_ns: u64,
    /// Step duration in ns.
    pub duration_ns: u64,
    /// Prompt tokens processed this step.
    pub prefill_tokens: usize,
    /// Decode tokens processed this step.
    pub decode_tokens: usize,
    /// Sequences that took part in this step.
    pub sequences: usize,
    /// MoE path taken by the decode part: `batched`, `per_item`, `unified` (decode tokens rode
    /// in a unified forward with prefill chunks) or `none`.
    pub moe_path: String,
    /// Distinct experts routed to in this step (summed over layers' distinct sets, averaged).
    pub distinct_experts: f64,
    /// KV blocks in use after the step.
    pub kv_blocks_in_use: usize,
    /// Requests waiting for admission after the step.
    pub waiting: usize,
    /// Requests admitted during the step.
    pub admitted: usize,
    /// Requests finished during the step.
    pub finished: usize,
}

/// Everything a run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutput {
    /// One trace per request, in id order.
    pub requests: Vec<RequestTrace>,
    /// Wall time of the run in ns (first arrival to last completion).
    pub duration_ns: u64,
    /// Engine counters (name → value), e.g. `steps`, `mean_decode_batch`.
    pub counters: BTreeMap<String, f64>,
    /// Per-step records, empty unless [`RunOptions::record_steps`].
    pub steps: Vec<StepRecord>,
}

/// Progress events emitted while a run goes on (for progress bars; never for statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// `count` output tokens were generated since the last event.
    Tokens {
        /// Newly generated tokens.
        count: usize,
    },
    /// A request finished.
    RequestDone {
        /// Its id.
        id: u64,
        /// Whether it succeeded.
        ok: bool,
    },
}

/// Static description of a started engine, recorded in results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Engine kind, e.g. `reference`.
    pub kind: String,
    /// Engine version string.
    pub version: String,
    /// Kind-specific details (instantiated dimensions, threads, URL, ...).
    pub details: BTreeMap<String, serde_json::Value>,
}

/// Engine errors. A bad configuration is distinguishable from an engine fault; capacity
/// rejections of single requests are not errors but [`RequestStatus::Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration cannot be instantiated (bad dimensions, impossible combination).
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// The engine failed while running.
    #[error("engine failure: {0}")]
    Fault(String),
    /// The run was stopped through [`RunOptions::cancel`] before it finished.
    #[error("run cancelled")]
    Cancelled,
}

/// An engine that can run request sets.
pub trait Engine: Send {
    /// What is running.
    fn info(&self) -> EngineInfo;

    /// Run `requests` under `load`, calling `progress` as tokens are produced.
    fn run(
        &mut self,
        requests: &[EngineRequest],
        load: &LoadSpec,
        options: &RunOptions,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError>;

    /// Release what the engine holds (stop a launched server: SIGINT, then SIGKILL after its
    /// grace period). Called once after the last run; engines also clean up on drop, so a
    /// panic or an early return never leaks a process. The default does nothing.
    fn shutdown(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
}
