//! HTTP engines: an OpenAI-compatible streaming server measured through a precise client, either
//! launched per cell ([`server`], `[engine] kind = "server"`) or already running (`endpoint`).
//!
//! [`HttpEngine`] owns a single-threaded tokio runtime and a reqwest client (no proxy, no
//! retries, HTTP/1.1 over loopback) and implements [`Engine::run`]: prompts are prepared and
//! serialized before the clock starts, then the [`client`] driver realises the load shape; the
//! cancel signal is polled every 20 ms and, when raised, every in-flight request is dropped
//! (its connection closed) before `run` returns [`EngineError::Cancelled`].

pub mod client;
pub mod config;
pub mod drift;
pub mod prompt;
pub mod server;
pub mod sse;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::engine::{
    Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, LoadSpec, RunOptions, RunOutput,
};
use client::{Outcome, PromptBody, Target};
use config::PromptMode;
use prompt::TextPrompts;

/// How often a run checks the cancel signal.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// A client bound to one server.
pub struct HttpEngine {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    target: Arc<Target>,
    prompts: Option<Arc<TextPrompts>>,
    info: EngineInfo,
}

impl std::fmt::Debug for HttpEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEngine")
            .field("url", &self.target.url)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A current-thread runtime: timers, sockets and parsing on the calling thread, so timestamps
/// are not delayed by cross-thread wake-ups.
pub fn runtime() -> Result<tokio::runtime::Runtime, EngineError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| EngineError::Fault(format!("cannot start the client runtime: {e}")))
}

/// The reqwest client every HTTP engine uses.
pub fn http_client(pool: usize) -> Result<reqwest::Client, EngineError> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(pool)
        .build()
        .map_err(|e| EngineError::Fault(format!("cannot build the HTTP client: {e}")))
}

impl HttpEngine {
    /// An engine streaming to `target`.
    pub fn new(
        target: Target,
        prompts: Option<Arc<TextPrompts>>,
        info: EngineInfo,
    ) -> Result<HttpEngine, EngineError> {
        if target.prompt == PromptMode::Text && prompts.is_none() {
            return Err(EngineError::Config(
                "text prompts need a tokenizer: set [engine] tokenizer".into(),
            ));
        }
        Ok(HttpEngine {
            rt: runtime()?,
            client: http_client(1024)?,
            target: Arc::new(target),
            prompts,
            info,
        })
    }

    /// The runtime and HTTP client this engine runs on (for the server kind's health probes).
    pub fn runtime_and_client(&self) -> (&tokio::runtime::Runtime, &reqwest::Client) {
        (&self.rt, &self.client)
    }

    /// Mutable access to the recorded info (the server kind adds version and drift).
    pub fn info_mut(&mut self) -> &mut EngineInfo {
        &mut self.info
    }

    fn prepare(&self, requests: &[EngineRequest]) -> Result<Vec<client::Prepared>, EngineError> {
        requests
            .iter()
            .map(|r| {
                let (prompt, count) = match (&self.target.prompt, &self.prompts) {
                    (PromptMode::Text, Some(p)) => {
                        let (text, n) = p.build(&r.prompt).map_err(EngineError::Fault)?;
                        (PromptBody::Text(text), n)
                    }
                    _ => (PromptBody::Ids(r.prompt.clone()), r.prompt.len()),
                };
                let body = client::request_body(&self.target, &prompt, r.output_tokens);
                Ok(client::Prepared {
                    id: r.id,
                    body: Arc::new(body.to_string().into_bytes()),
                    prompt_tokens: count,
                    max_tokens: r.output_tokens,
                })
            })
            .collect()
    }
}

/// Ferrum's per-run correlation headers: `x-ferrum-benchmark-phase` (`warmup` | `measured`)
/// and `x-ferrum-benchmark-repeat-index` (0-based, the `repeat` of `requests.jsonl`). The run
/// and cell ids come with the engine's target; `x-ferrum-benchmark-request-index` (the request's
/// 0-based index within the run) is set per request.
pub fn run_headers(options: &RunOptions) -> [(String, String); 2] {
    [
        (
            "x-ferrum-benchmark-phase".into(),
            options.phase.as_str().into(),
        ),
        (
            "x-ferrum-benchmark-repeat-index".into(),
            options.repeat.to_string(),
        ),
    ]
}

/// Per-run counters: failures by kind, output-count provenance, prompt tokens seen by the client
/// and by the server (the difference is the chat template), transport coalescing, send lag.
pub fn counters(outcomes: &[Outcome]) -> BTreeMap<String, f64> {
    let mut c = BTreeMap::new();
    for kind in [
        client::FailKind::HttpStatus,
        client::FailKind::Connection,
        client::FailKind::Timeout,
        client::FailKind::MalformedStream,
        client::FailKind::StreamError,
        client::FailKind::BadOutput,
    ] {
        let n = outcomes.iter().filter(|o| o.failure == Some(kind)).count();
        c.insert(kind.counter().to_string(), n as f64);
    }
    let n = outcomes.len().max(1) as f64;
    let usage = outcomes.iter().filter(|o| o.count_from_usage).count();
    c.insert("output_count_from_usage".into(), usage as f64);
    c.insert(
        "output_count_from_stream_chunks".into(),
        (outcomes.len() - usage) as f64,
    );
    c.insert(
        "transport_coalesced_requests".into(),
        outcomes.iter().filter(|o| o.coalesced).count() as f64,
    );
    let client_mean = outcomes
        .iter()
        .map(|o| o.trace.prompt_tokens as f64)
        .sum::<f64>()
        / n;
    c.insert("client_prompt_tokens_mean".into(), client_mean);
    let server: Vec<(f64, f64)> = outcomes
        .iter()
        .filter_map(|o| {
            o.server_prompt_tokens
                .map(|s| (s as f64, o.trace.prompt_tokens as f64))
        })
        .collect();
    if !server.is_empty() {
        let m = server.len() as f64;
        c.insert(
            "server_prompt_tokens_mean".into(),
            server.iter().map(|(s, _)| s).sum::<f64>() / m,
        );
        c.insert(
            "server_minus_client_prompt_tokens_mean".into(),
            server.iter().map(|(s, cl)| s - cl).sum::<f64>() / m,
        );
    }
    let lag_max = outcomes.iter().map(|o| o.send_lag_ns).max().unwrap_or(0);
    c.insert("max_send_lag_ms".into(), lag_max as f64 / 1e6);
    c
}

impl Engine for HttpEngine {
    fn info(&self) -> EngineInfo {
        self.info.clone()
    }

    fn run(
        &mut self,
        requests: &[EngineRequest],
        load: &LoadSpec,
        options: &RunOptions,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError> {
        let prepared = self.prepare(requests)?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = options.cancel.clone();
        // Per-run correlation headers on top of the engine's run and cell ids.
        let mut target = (*self.target).clone();
        target.headers.extend(run_headers(options));
        let (client, target, load) = (self.client.clone(), Arc::new(target), load.clone());
        let start = Instant::now();
        let outcomes = self.rt.block_on(async move {
            let mut driver =
                tokio::spawn(client::drive(client, target, prepared, load, start, tx));
            let mut tick = tokio::time::interval(CANCEL_POLL);
            loop {
                tokio::select! {
                    joined = &mut driver => {
                        while let Ok(ev) = rx.try_recv() {
                            progress(&ev);
                        }
                        return joined.map_err(|e| EngineError::Fault(format!("client task failed: {e}")));
                    }
                    Some(ev) = rx.recv() => progress(&ev),
                    _ = tick.tick() => {
                        if cancel.is_cancelled() {
                            // Aborting the driver drops its JoinSet, which aborts every request
                            // task and closes their connections.
                            driver.abort();
                            let _ = driver.await;
                            return Err(EngineError::Cancelled);
                        }
                    }
                }
            }
        })?;
        let duration_ns = outcomes
            .iter()
            .map(|o| o.trace.finished_ns)
            .max()
            .unwrap_or(0)
            .saturating_sub(
                outcomes
                    .iter()
                    .map(|o| o.trace.arrival_ns)
                    .min()
                    .unwrap_or(0),
            );
        Ok(RunOutput {
            counters: counters(&outcomes),
            requests: outcomes.into_iter().map(|o| o.trace).collect(),
            duration_ns,
            steps: Vec::new(),
        })
    }
}
