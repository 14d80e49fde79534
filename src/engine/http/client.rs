//! The streaming client: request bodies, one streamed request, and the closed/open-loop driver.
//!
//! Timing rules (documented in the README):
//! - every time is `Instant` on the client, relative to the run's start;
//! - an *output event* is an SSE chunk whose first choice carries non-empty `delta.content`
//!   (chat) or `text` (completions), else `reasoning` / `reasoning_content` (as Ferrum's
//!   bench-serve); TTFT is the arrival of the first one;
//! - the output count is `usage.completion_tokens` when the server sends it (`usage`), else the
//!   number of events (`stream_chunks`);
//! - tokens are mapped onto events so that the first token is the first event and the remaining
//!   `N − 1` tokens are spread evenly, in order, over the remaining events; a chunk carrying
//!   several tokens gives them all its arrival time (ITL 0 inside a chunk, the whole gap at the
//!   chunk boundary), so ITL sums to `e2e − TTFT` and the mean ITL equals TPOT;
//! - a request succeeds only with HTTP 2xx, a well-formed stream, exactly one `[DONE]`, no error
//!   payload and an output count equal to `max_tokens` (ignore_eos is sent; a different count is
//!   a *bad output*, counted as a failure).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::config::{Api, PromptMode};
use super::sse::{excerpt, SseItem, SseParser};
use crate::engine::{EngineEvent, LoadSpec, RequestStatus, RequestTrace};

/// Where and how requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Full URL of the streaming route.
    pub url: String,
    /// Route kind.
    pub api: Api,
    /// Prompt form.
    pub prompt: PromptMode,
    /// Request `model`.
    pub model: String,
    /// `Authorization: Bearer` value, when configured (never written anywhere).
    pub api_key: Option<String>,
    /// Per-request limit.
    pub request_timeout: Duration,
    /// Ferrum correlation headers sent with every request (name, value); visible ASCII only.
    pub headers: Vec<(String, String)>,
}

/// The prompt of one request, ready to send.
#[derive(Debug, Clone)]
pub enum PromptBody {
    /// Text (chat or completions).
    Text(String),
    /// Token ids (completions only).
    Ids(Vec<u32>),
}

/// JSON body of one streaming request.
pub fn request_body(target: &Target, prompt: &PromptBody, max_tokens: usize) -> Value {
    let mut body = json!({
        "model": target.model,
        "max_tokens": max_tokens,
        "stream": true,
        "stream_options": { "include_usage": true },
        "ignore_eos": true,
        "temperature": 0.0,
    });
    let prompt_value = match prompt {
        PromptBody::Text(t) => json!(t),
        PromptBody::Ids(ids) => json!(ids),
    };
    match target.api {
        Api::Chat => body["messages"] = json!([{ "role": "user", "content": prompt_value }]),
        Api::Completions => body["prompt"] = prompt_value,
    }
    body
}

/// Why a request failed (a counter name per kind in the run's counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// Non-2xx status.
    HttpStatus,
    /// Connect error, reset or closed connection.
    Connection,
    /// No complete answer within `request_timeout`.
    Timeout,
    /// Not SSE, not JSON, missing or duplicate `[DONE]`.
    MalformedStream,
    /// An error payload inside the stream.
    StreamError,
    /// Output count differs from `max_tokens` despite ignore_eos.
    BadOutput,
}

impl FailKind {
    /// Counter name.
    pub fn counter(self) -> &'static str {
        match self {
            FailKind::HttpStatus => "failed_http_status",
            FailKind::Connection => "failed_connection",
            FailKind::Timeout => "failed_timeout",
            FailKind::MalformedStream => "failed_malformed_stream",
            FailKind::StreamError => "failed_stream_error",
            FailKind::BadOutput => "failed_bad_output",
        }
    }
}

/// What one request produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The trace handed to the measurement layer.
    pub trace: RequestTrace,
    /// `usage.prompt_tokens`, when sent.
    pub server_prompt_tokens: Option<u64>,
    /// Output count came from `usage` (else from counting events).
    pub count_from_usage: bool,
    /// Some network read carried more than one output event.
    pub coalesced: bool,
    /// Failure kind, if failed.
    pub failure: Option<FailKind>,
    /// Actual send time minus scheduled arrival (ns).
    pub send_lag_ns: u64,
}

/// One request ready to go.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Request id.
    pub id: u64,
    /// Serialized body.
    pub body: bytes_body::Body,
    /// Client-side prompt token count.
    pub prompt_tokens: usize,
    /// `max_tokens`.
    pub max_tokens: usize,
}

/// Body bytes shared cheaply between the driver and the request task.
pub mod bytes_body {
    use std::sync::Arc;
    /// Immutable request body.
    pub type Body = Arc<Vec<u8>>;
}

fn ns_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

struct Stream {
    events: Vec<u64>,
    usage_completion: Option<u64>,
    usage_prompt: Option<u64>,
    done: usize,
    coalesced: bool,
}

/// Spread `n` tokens over `events` (see the module doc).
pub fn token_times(events: &[u64], n: usize) -> Vec<u64> {
    if n == 0 || events.is_empty() {
        return Vec::new();
    }
    if n <= events.len() {
        return events[..n].to_vec();
    }
    let mut out = Vec::with_capacity(n);
    out.push(events[0]);
    let rest = events.len() - 1;
    for k in 0..n - 1 {
        let idx = if rest == 0 { 0 } else { 1 + k * rest / (n - 1) };
        out.push(events[idx]);
    }
    out
}

fn has_text(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// The fields of a streamed chunk the client reads, borrowed from the payload where possible.
/// Deserializing into this skips every other field without building a tree, which is the
/// client's main CPU cost per token (`scripts/bench_client.py` reports CPU per 1,000 tokens).
#[derive(serde::Deserialize)]
struct ChunkDoc<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceDoc<'a>>>,
    #[serde(default)]
    usage: Option<UsageDoc>,
}

#[derive(serde::Deserialize)]
struct ChoiceDoc<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaDoc<'a>>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct DeltaDoc<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct UsageDoc {
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens: Option<u64>,
}

fn non_empty(s: &Option<std::borrow::Cow<'_, str>>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

/// The typed fast path of [`on_data`]: `None` when the payload needs the general path (it
/// mentions `error`, or a field has a type the typed form does not accept), so both paths give
/// the same answer for every payload.
fn on_data_fast(data: &str, api: Api, s: &mut Stream) -> Option<bool> {
    if data.contains("\"error\"") {
        return None;
    }
    let doc: ChunkDoc = serde_json::from_str(data).ok()?;
    if let Some(u) = doc.usage {
        s.usage_completion = u.completion_tokens;
        s.usage_prompt = u.prompt_tokens;
    }
    let Some(choice) = doc.choices.as_deref().and_then(<[ChoiceDoc]>::first) else {
        return Some(false);
    };
    Some(match api {
        Api::Chat => choice.delta.as_ref().is_some_and(|d| {
            non_empty(&d.content) || non_empty(&d.reasoning) || non_empty(&d.reasoning_content)
        }),
        Api::Completions => non_empty(&choice.text),
    })
}

/// Interpret one SSE data payload: `Ok(true)` when it is an output event.
fn on_data(data: &str, api: Api, s: &mut Stream) -> Result<bool, (FailKind, String)> {
    if let Some(event) = on_data_fast(data, api, s) {
        return Ok(event);
    }
    on_data_general(data, api, s)
}

/// [`on_data`] over a `serde_json::Value` tree: any JSON shape, error payloads.
fn on_data_general(data: &str, api: Api, s: &mut Stream) -> Result<bool, (FailKind, String)> {
    let v: Value = serde_json::from_str(data).map_err(|e| {
        (
            FailKind::MalformedStream,
            format!(
                "malformed stream: chunk is not JSON ({e}): {}",
                excerpt(data)
            ),
        )
    })?;
    if let Some(err) = v.get("error") {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err((
            FailKind::StreamError,
            format!("error in stream: {}", excerpt(&msg)),
        ));
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        s.usage_completion = u.get("completion_tokens").and_then(Value::as_u64);
        s.usage_prompt = u.get("prompt_tokens").and_then(Value::as_u64);
    }
    let Some(choice) = v.pointer("/choices/0") else {
        return Ok(false);
    };
    let event = match api {
        Api::Chat => {
            let d = choice.get("delta");
            has_text(d.and_then(|d| d.get("content")))
                || has_text(d.and_then(|d| d.get("reasoning")))
                || has_text(d.and_then(|d| d.get("reasoning_content")))
        }
        Api::Completions => has_text(choice.get("text")),
    };
    Ok(event)
}

/// Stream one request. `arrival_ns` is when it was due; the send time is taken here.
pub async fn stream_one(
    client: &reqwest::Client,
    target: &Target,
    req: &Prepared,
    start: Instant,
    arrival_ns: u64,
    progress: &mpsc::UnboundedSender<EngineEvent>,
) -> Outcome {
    let send_ns = ns_since(start);
    let mut s = Stream {
        events: Vec::with_capacity(req.max_tokens),
        usage_completion: None,
        usage_prompt: None,
        done: 0,
        coalesced: false,
    };
    let work = stream_inner(client, target, req, start, &mut s, progress);
    let result = match tokio::time::timeout(target.request_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err((
            FailKind::Timeout,
            format!(
                "timeout: no complete answer within {:.1} s ({} output events received)",
                target.request_timeout.as_secs_f64(),
                s.events.len()
            ),
        )),
    };
    let finished_ns = ns_since(start);
    let count_from_usage = s.usage_completion.is_some();
    let count = s.usage_completion.map_or(s.events.len(), |n| n as usize);
    let result = result.and_then(|()| {
        if s.done != 1 {
            return Err((
                FailKind::MalformedStream,
                format!("malformed stream: {} [DONE] markers instead of 1", s.done),
            ));
        }
        if count != req.max_tokens || s.events.is_empty() {
            return Err((
                FailKind::BadOutput,
                format!(
                    "bad output: {count} output tokens ({}, {} events) instead of max_tokens = {} despite ignore_eos",
                    if count_from_usage { "usage" } else { "stream_chunks" },
                    s.events.len(),
                    req.max_tokens
                ),
            ));
        }
        Ok(())
    });
    let (status, failure, token_ns) = match result {
        Ok(()) => (RequestStatus::Ok, None, token_times(&s.events, count)),
        Err((kind, reason)) => (
            RequestStatus::Failed { reason },
            Some(kind),
            s.events.clone(),
        ),
    };
    let _ = progress.send(EngineEvent::RequestDone {
        id: req.id,
        ok: failure.is_none(),
    });
    Outcome {
        trace: RequestTrace {
            id: req.id,
            status,
            prompt_tokens: req.prompt_tokens,
            arrival_ns,
            admitted_ns: Some(send_ns),
            token_ns,
            finished_ns,
            output_ids: Vec::new(),
        },
        server_prompt_tokens: s.usage_prompt,
        count_from_usage,
        coalesced: s.coalesced,
        failure,
        send_lag_ns: send_ns.saturating_sub(arrival_ns),
    }
}

fn connection_reason(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        msg.push_str(": ");
        msg.push_str(&inner.to_string());
        src = inner.source();
    }
    if e.is_connect() {
        format!("connection refused or failed: {msg}")
    } else {
        format!("connection reset or closed: {msg}")
    }
}

async fn stream_inner(
    client: &reqwest::Client,
    target: &Target,
    req: &Prepared,
    start: Instant,
    s: &mut Stream,
    progress: &mpsc::UnboundedSender<EngineEvent>,
) -> Result<(), (FailKind, String)> {
    let mut builder = client
        .post(&target.url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("x-ferrum-benchmark-request-index", req.id.to_string());
    for (name, value) in &target.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if let Some(key) = &target.api_key {
        builder = builder.bearer_auth(key);
    }
    let mut resp = builder
        .body(req.body.as_ref().clone())
        .send()
        .await
        .map_err(|e| (FailKind::Connection, connection_reason(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err((
            FailKind::HttpStatus,
            format!("HTTP {}: {}", status.as_u16(), excerpt(body.trim())),
        ));
    }
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| (FailKind::Connection, connection_reason(&e)))?;
        let Some(bytes) = chunk else { break };
        let now = ns_since(start);
        items.clear();
        parser.feed(&bytes, &mut items);
        let before = s.events.len();
        for item in items.drain(..) {
            match item {
                SseItem::Done => s.done += 1,
                SseItem::Malformed(m) => {
                    return Err((FailKind::MalformedStream, format!("malformed stream: {m}")))
                }
                SseItem::Data(d) => {
                    if s.done > 0 {
                        return Err((
                            FailKind::MalformedStream,
                            "malformed stream: data after [DONE]".into(),
                        ));
                    }
                    if on_data(&d, target.api, s)? {
                        s.events.push(now);
                    }
                }
            }
        }
        let new = s.events.len() - before;
        if new > 1 {
            s.coalesced = true;
        }
        if new > 0 {
            let _ = progress.send(EngineEvent::Tokens { count: new });
        }
    }
    items.clear();
    parser.finish(&mut items);
    for item in items {
        match item {
            SseItem::Done => s.done += 1,
            SseItem::Malformed(m) => {
                return Err((FailKind::MalformedStream, format!("malformed stream: {m}")))
            }
            SseItem::Data(d) => {
                if on_data(&d, target.api, s)? {
                    s.events.push(ns_since(start));
                }
            }
        }
    }
    Ok(())
}

/// Drive `requests` under `load` to completion; returns outcomes in id order.
pub async fn drive(
    client: reqwest::Client,
    target: Arc<Target>,
    requests: Vec<Prepared>,
    load: LoadSpec,
    start: Instant,
    progress: mpsc::UnboundedSender<EngineEvent>,
) -> Vec<Outcome> {
    let n = requests.len();
    let mut set: JoinSet<(usize, Outcome)> = JoinSet::new();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut keep = |joined: Result<(usize, Outcome), tokio::task::JoinError>| {
        if let Ok((i, out)) = joined {
            outcomes[i] = Some(out);
        }
    };
    match load {
        LoadSpec::Closed { concurrency } => {
            let permits = Arc::new(Semaphore::new(concurrency.max(1)));
            for (i, req) in requests.into_iter().enumerate() {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let arrival = ns_since(start);
                let (client, target, progress) = (client.clone(), target.clone(), progress.clone());
                set.spawn(async move {
                    let out = stream_one(&client, &target, &req, start, arrival, &progress).await;
                    drop(permit);
                    (i, out)
                });
                // Reap finished tasks as we go so the set stays at about `concurrency` entries.
                while let Some(joined) = set.try_join_next() {
                    keep(joined);
                }
            }
        }
        LoadSpec::Open { arrivals_s } => {
            for (i, req) in requests.into_iter().enumerate() {
                let due =
                    Duration::from_secs_f64(arrivals_s.get(i).copied().unwrap_or(0.0).max(0.0));
                // Absolute schedule: lateness of one send never shifts the following ones.
                tokio::time::sleep_until((start + due).into()).await;
                let arrival = due.as_nanos() as u64;
                let (client, target, progress) = (client.clone(), target.clone(), progress.clone());
                set.spawn(async move {
                    (
                        i,
                        stream_one(&client, &target, &req, start, arrival, &progress).await,
                    )
                });
                while let Some(joined) = set.try_join_next() {
                    keep(joined);
                }
            }
        }
    }
    while let Some(joined) = set.join_next().await {
        keep(joined);
    }
    outcomes.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_spread_over_events_keep_first_and_last() {
        assert_eq!(token_times(&[10, 20, 30], 3), vec![10, 20, 30]);
        // 5 tokens over 3 events: first token alone, 4 spread over the 2 later events.
        assert_eq!(token_times(&[10, 20, 30], 5), vec![10, 20, 20, 30, 30]);
        assert_eq!(token_times(&[10], 3), vec![10, 10, 10]);
        assert_eq!(token_times(&[10, 20, 30], 2), vec![10, 20]);
        assert!(token_times(&[], 2).is_empty());
    }

    fn target(api: Api) -> Target {
        Target {
            url: "http://127.0.0.1:1/v1/chat/completions".into(),
            api,
            prompt: PromptMode::Text,
            model: "m".into(),
            api_key: None,
            request_timeout: Duration::from_secs(1),
            headers: vec![],
        }
    }

    #[test]
    fn bodies_ask_for_streamed_greedy_fixed_length_output() {
        let chat = request_body(&target(Api::Chat), &PromptBody::Text("hi".into()), 16);
        assert_eq!(chat["messages"][0]["content"], "hi");
        assert_eq!(chat["max_tokens"], 16);
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["ignore_eos"], true);
        assert_eq!(chat["temperature"], 0.0);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        let comp = request_body(&target(Api::Completions), &PromptBody::Ids(vec![5, 6]), 4);
        assert_eq!(comp["prompt"], json!([5, 6]));
        assert!(comp.get("messages").is_none());
    }

    fn fresh() -> Stream {
        Stream {
            events: vec![],
            usage_completion: None,
            usage_prompt: None,
            done: 0,
            coalesced: false,
        }
    }

    #[test]
    fn the_typed_fast_path_agrees_with_the_general_path() {
        let payloads = [
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":"\u0041\n"}}]}"#,
            r#"{"choices":[{"delta":{"content":""}}]}"#,
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning":"r"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"r","content":null}}]}"#,
            r#"{"choices":[{"delta":{}}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#,
            r#"{"choices":[],"usage":{"completion_tokens":4.5}}"#,
            r#"{"choices":[],"usage":7}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[1]}"#,
            r#"{"choices":[{"delta":"text"}]}"#,
            r#"{"choices":[{"delta":{"content":7}}]}"#,
            r#"{"choices":[{"text":"x"},{"text":5}]}"#,
            r#"{"choices":[{"text":"x","delta":{"content":"y"}}]}"#,
            r#"{"choices":[{"text":""}]}"#,
            r#"{"choices":[{"text":"a"}],"choices":[]}"#,
            r#"[1,2]"#,
            r#"{}"#,
        ];
        for api in [Api::Chat, Api::Completions] {
            for p in payloads {
                let (mut fast, mut general) = (fresh(), fresh());
                let got = on_data(p, api, &mut fast);
                let want = on_data_general(p, api, &mut general);
                assert_eq!(got, want, "{p} ({api:?})");
                assert_eq!(
                    (fast.usage_prompt, fast.usage_completion),
                    (general.usage_prompt, general.usage_completion),
                    "{p}"
                );
            }
        }
        // The common token chunk takes the fast path.
        assert_eq!(
            on_data_fast(payloads[0], Api::Chat, &mut fresh()),
            Some(true)
        );
    }

    #[test]
    fn chunk_interpretation() {
        let mut s = Stream {
            events: vec![],
            usage_completion: None,
            usage_prompt: None,
            done: 0,
            coalesced: false,
        };
        let chat = |d: &str, s: &mut Stream| on_data(d, Api::Chat, s);
        assert_eq!(
            chat(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#, &mut s),
            Ok(false)
        );
        assert_eq!(
            chat(r#"{"choices":[{"delta":{"content":""}}]}"#, &mut s),
            Ok(false)
        );
        assert_eq!(
            chat(r#"{"choices":[{"delta":{"content":"a"}}]}"#, &mut s),
            Ok(true)
        );
        assert_eq!(
            chat(
                r#"{"choices":[{"delta":{"reasoning_content":"r"}}]}"#,
                &mut s
            ),
            Ok(true)
        );
        assert_eq!(
            chat(
                r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#,
                &mut s
            ),
            Ok(false)
        );
        assert_eq!((s.usage_prompt, s.usage_completion), (Some(9), Some(4)));
        assert_eq!(
            on_data(r#"{"choices":[{"text":"x"}]}"#, Api::Completions, &mut s),
            Ok(true)
        );
        assert_eq!(
            chat("{oops", &mut s).unwrap_err().0,
            FailKind::MalformedStream
        );
        let err = chat(r#"{"error":{"message":"overloaded"}}"#, &mut s).unwrap_err();
        assert_eq!(
            err,
            (FailKind::StreamError, "error in stream: overloaded".into())
        );
    }
}
