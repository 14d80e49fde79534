//! `ferrum-bench mock-server`: an OpenAI-compatible streaming server on loopback for tests,
//! calibration of the client, and users' own CI.
//!
//! It speaks plain HTTP/1.1 (keep-alive, chunked transfer encoding) on `127.0.0.1`, serves
//! `/v1/chat/completions` and `/v1/completions` (text or token-id prompts, `stream` true or
//! false, `ignore_eos` accepted — the mock has no end-of-sequence, so every answer has exactly
//! `max_tokens` tokens — and `stream_options.include_usage`), `/health` in Ferrum's shape and
//! `/v1/models`. Text prompts count one token per whitespace-separated word.
//!
//! Timing: for a request received at `t0`, token `k` (0-based) is due at
//! `t0 + ttft + k·itl + j_k`, `j_k` uniform in `[0, jitter]` from the seeded RNG (kept
//! non-decreasing); a chunk of `tokens_per_chunk` tokens is written when its last token is due.
//! Deadlines are absolute, so lateness never accumulates; their resolution is tokio's timer,
//! 1 ms (a deadline is served at the next millisecond tick, i.e. 0–1 ms late).
//!
//! Injected failures (`fail_rate`, per request from the seeded RNG and the request's arrival
//! index): `http500` (an error status and JSON body), `drop` (the connection is closed half-way
//! through the stream), `malformed` (a non-JSON chunk half-way), `stall` (nothing more is sent
//! half-way, the connection is held open until the client gives up).

pub mod precise;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Injected failure kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// HTTP 500 with a JSON error body.
    Http500,
    /// Connection closed mid-stream.
    Drop,
    /// A non-JSON SSE chunk mid-stream.
    Malformed,
    /// Silence mid-stream with the connection held open.
    Stall,
}

impl FailureKind {
    /// Every kind, in the order of `--fail-kinds` help.
    pub const ALL: [FailureKind; 4] = [
        FailureKind::Http500,
        FailureKind::Drop,
        FailureKind::Malformed,
        FailureKind::Stall,
    ];

    /// Parse `http500`, `drop`, `malformed` or `stall`.
    pub fn parse(s: &str) -> Result<FailureKind, String> {
        match s.trim() {
            "http500" => Ok(FailureKind::Http500),
            "drop" => Ok(FailureKind::Drop),
            "malformed" => Ok(FailureKind::Malformed),
            "stall" => Ok(FailureKind::Stall),
            other => Err(format!(
                "unknown failure kind `{other}`: expected http500, drop, malformed or stall"
            )),
        }
    }
}

/// Mock server settings.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Port on 127.0.0.1 (0 = any free port, printed on stdout).
    pub port: u16,
    /// Time to first token.
    pub ttft: Duration,
    /// Inter-token latency.
    pub itl: Duration,
    /// Extra delay per token, uniform in `[0, jitter]`.
    pub jitter: Duration,
    /// Tokens per SSE chunk (≥ 1).
    pub tokens_per_chunk: usize,
    /// Probability that a request fails, in `[0, 1]`.
    pub fail_rate: f64,
    /// Failure kinds to draw from (uniformly).
    pub fail_kinds: Vec<FailureKind>,
    /// RNG seed.
    pub seed: u64,
    /// Exit the process (status 3) when this many requests have arrived: a server dying mid-cell.
    pub exit_after_requests: Option<u64>,
    /// Wait this long before binding (a model loading: connection refused until then).
    pub startup_delay: Duration,
    /// Write the process environment here (JSON object) at start-up.
    pub env_dump: Option<PathBuf>,
    /// Write an effective config here at start-up, copied from `effective_config_source` (lets
    /// tests exercise the server-artifact path of `kind = "server"`).
    pub effective_config_json: Option<PathBuf>,
    /// Source of the effective config the mock "writes".
    pub effective_config_source: Option<PathBuf>,
    /// Worker threads of the server's runtime (1: a current-thread runtime).
    pub threads: usize,
    /// Append one JSON line per completion request here: arrival index, route and the
    /// `x-ferrum-benchmark-*` correlation headers received (lets a client's tests check them).
    pub request_log: Option<PathBuf>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            port: 0,
            ttft: Duration::from_millis(50),
            itl: Duration::from_millis(10),
            jitter: Duration::ZERO,
            tokens_per_chunk: 1,
            fail_rate: 0.0,
            fail_kinds: FailureKind::ALL.to_vec(),
            seed: 0,
            exit_after_requests: None,
            startup_delay: Duration::ZERO,
            env_dump: None,
            effective_config_json: None,
            effective_config_source: None,
            request_log: None,
            threads: 1,
        }
    }
}

struct State {
    cfg: MockConfig,
    arrivals: AtomicU64,
    active: AtomicU64,
    request_log: Option<Mutex<std::fs::File>>,
    /// Serves first-token deadlines with sub-millisecond precision ([`precise`]).
    first_token_timer: precise::PreciseTimer,
}

/// Run the server until the process is killed. `on_bound` gets the bound address.
pub fn serve(cfg: MockConfig, on_bound: impl FnOnce(SocketAddr)) -> io::Result<()> {
    if let Some(path) = &cfg.env_dump {
        let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        std::fs::write(path, serde_json::to_string_pretty(&env).unwrap_or_default())?;
    }
    if let (Some(dst), Some(src)) = (&cfg.effective_config_json, &cfg.effective_config_source) {
        std::fs::copy(src, dst)?;
    }
    let request_log = match &cfg.request_log {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
        None => None,
    };
    std::thread::sleep(cfg.startup_delay);
    let rt = if cfg.threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", cfg.port)).await?;
        on_bound(listener.local_addr()?);
        let state = Arc::new(State {
            cfg,
            arrivals: AtomicU64::new(0),
            active: AtomicU64::new(0),
            request_log,
            first_token_timer: precise::PreciseTimer::start()?,
        });
        loop {
            let (sock, _) = listener.accept().await?;
            let _ = sock.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let _ = connection(sock, state).await;
            });
        }
    })
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    close: bool,
    /// `x-ferrum-benchmark-*` headers (lower-case names), in arrival order.
    correlation: Vec<(String, String)>,
}

async fn read_request(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut length = 0usize;
    let mut close = false;
    let mut head = 0usize;
    let mut correlation = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 {
            return Ok(None);
        }
        head += h.len();
        if head > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "header too large",
            ));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                length = v.trim().parse().unwrap_or(0);
            } else if k == "connection" && v.trim().eq_ignore_ascii_case("close") {
                close = true;
            } else if k.starts_with("x-ferrum-benchmark-") {
                correlation.push((k, v.trim().to_string()));
            }
        }
    }
    if length > 64 * 1024 * 1024 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).await?;
    Ok(Some(Request {
        method,
        path,
        body,
        close,
        correlation,
    }))
}

async fn respond(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    status: &str,
    body: &Value,
) -> io::Result<()> {
    let text = body.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        text.len()
    );
    w.write_all(format!("{head}{text}").as_bytes()).await
}

async fn connection(sock: TcpStream, state: Arc<State>) -> io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    while let Some(req) = read_request(&mut r).await? {
        let keep = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/health") => {
                let body = json!({
                    "status": "healthy",
                    "version": format!("ferrum-bench-mock {}", env!("CARGO_PKG_VERSION")),
                    "auto_config": null,
                    "admission": {
                        "active_requests": state.active.load(Ordering::Relaxed),
                        "queued_requests": 0,
                        "rejected_requests": 0,
                    },
                });
                respond(&mut w, "200 OK", &body).await?;
                true
            }
            ("GET", "/v1/models") => {
                respond(
                    &mut w,
                    "200 OK",
                    &json!({"object": "list", "data": [{"id": "mock", "object": "model"}]}),
                )
                .await?;
                true
            }
            ("POST", "/v1/chat/completions") => {
                generate(&mut w, &mut r, &state, &req, true).await?
            }
            ("POST", "/v1/completions") => generate(&mut w, &mut r, &state, &req, false).await?,
            _ => {
                respond(
                    &mut w,
                    "404 Not Found",
                    &json!({"error": {"message": format!("no route {} {}", req.method, req.path)}}),
                )
                .await?;
                true
            }
        };
        if !keep || req.close {
            break;
        }
    }
    Ok(())
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn prompt_tokens(body: &Value, chat: bool) -> u64 {
    let words = |s: &str| s.split_whitespace().count() as u64;
    if chat {
        body.get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .map(words)
            .sum()
    } else {
        match body.get("prompt") {
            Some(Value::String(s)) => words(s),
            Some(Value::Array(a)) => a.len() as u64,
            _ => 0,
        }
    }
}

/// One SSE event as an HTTP/1.1 chunk.
fn chunk_frame(data: &str) -> Vec<u8> {
    let payload = format!("data: {data}\n\n");
    format!("{:x}\r\n{payload}\r\n", payload.len()).into_bytes()
}

async fn write_chunk(w: &mut tokio::net::tcp::OwnedWriteHalf, data: &str) -> io::Result<()> {
    w.write_all(&chunk_frame(data)).await
}

/// Serve one completion; returns whether the connection may be reused.
async fn generate(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    state: &State,
    req: &Request,
    chat: bool,
) -> io::Result<bool> {
    let t0 = Instant::now();
    let cfg = &state.cfg;
    let index = state.arrivals.fetch_add(1, Ordering::SeqCst);
    if let Some(log) = &state.request_log {
        let headers: serde_json::Map<String, Value> = req
            .correlation
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let line = json!({"index": index, "path": req.path, "headers": headers}).to_string();
        if let Ok(mut f) = log.lock() {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
    }
    if cfg.exit_after_requests.is_some_and(|n| index + 1 >= n) {
        eprintln!(
            "mock-server: exiting after {} requests (--exit-after-requests)",
            index + 1
        );
        std::process::exit(3);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        respond(
            w,
            "400 Bad Request",
            &json!({"error": {"message": "body is not JSON"}}),
        )
        .await?;
        return Ok(true);
    };
    let max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(16)
        .min(1_000_000) as usize;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage_wanted = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let prompt = prompt_tokens(&body, chat);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let failure =
        (cfg.fail_rate > 0.0 && !cfg.fail_kinds.is_empty() && unit(&mut rng) < cfg.fail_rate)
            .then(|| cfg.fail_kinds[(rng.next_u64() % cfg.fail_kinds.len() as u64) as usize]);
    if failure == Some(FailureKind::Http500) {
        respond(
            w,
            "500 Internal Server Error",
            &json!({"error": {"message": "mock: injected HTTP 500", "type": "server_error"}}),
        )
        .await?;
        return Ok(true);
    }
    state.active.fetch_add(1, Ordering::Relaxed);
    let result = stream_tokens(
        w,
        r,
        state,
        &mut rng,
        t0,
        max_tokens,
        stream,
        usage_wanted,
        &model,
        prompt,
        chat,
        failure,
    )
    .await;
    state.active.fetch_sub(1, Ordering::Relaxed);
    result
}

#[allow(clippy::too_many_arguments)]
async fn stream_tokens(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    state: &State,
    rng: &mut ChaCha8Rng,
    t0: Instant,
    max_tokens: usize,
    stream: bool,
    usage_wanted: bool,
    model: &str,
    prompt: u64,
    chat: bool,
    failure: Option<FailureKind>,
) -> io::Result<bool> {
    let cfg = &state.cfg;
    let per_chunk = cfg.tokens_per_chunk.max(1);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": max_tokens, "total_tokens": prompt + max_tokens as u64});
    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let mut due = t0;
    let jitter_ns = cfg.jitter.as_nanos() as f64;
    if !stream {
        for k in 0..max_tokens {
            let d = t0
                + cfg.ttft
                + cfg.itl * k as u32
                + Duration::from_nanos((unit(rng) * jitter_ns) as u64);
            due = due.max(d);
        }
        tokio::time::sleep_until(due).await;
        let text = "tok ".repeat(max_tokens);
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"})
        } else {
            json!({"index": 0, "text": text, "finish_reason": "length"})
        };
        respond(w, "200 OK", &json!({"id": "mock", "object": if chat {"chat.completion"} else {"text_completion"}, "model": model, "choices": [choice], "usage": usage})).await?;
        return Ok(true);
    }
    w.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n").await?;
    if chat {
        // An initial role-only delta, as vLLM and Ferrum send: not a token.
        write_chunk(w, &json!({"id": "mock", "object": object, "model": model, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]}).to_string()).await?;
    }
    let half = max_tokens / 2;
    let mut sent = 0usize;
    // Every full chunk of a request is the same bytes: serialize it once, not per chunk (the
    // mock's CPU per token bounds the client benchmark's ceiling).
    let token_frame = |n: usize| {
        let text = "tok ".repeat(n);
        let choice = if chat {
            json!({"index": 0, "delta": {"content": text}, "finish_reason": null})
        } else {
            json!({"index": 0, "text": text, "finish_reason": null})
        };
        chunk_frame(
            &json!({"id": "mock", "object": object, "model": model, "choices": [choice]})
                .to_string(),
        )
    };
    let full_frame = token_frame(per_chunk.min(max_tokens.max(1)));
    while sent < max_tokens {
        let n = per_chunk.min(max_tokens - sent);
        for k in sent..sent + n {
            let d = t0
                + cfg.ttft
                + cfg.itl * k as u32
                + Duration::from_nanos((unit(rng) * jitter_ns) as u64);
            due = due.max(d);
        }
        if failure.is_some() && sent >= half {
            match failure {
                Some(FailureKind::Drop) => return Ok(false), // connection dropped without the terminating chunk
                Some(FailureKind::Malformed) => {
                    write_chunk(w, "{\"choices\": [ this is not json").await?;
                }
                Some(FailureKind::Stall) => {
                    // Hold the connection until the client closes it (or an hour passes).
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(3600), r.read(&mut buf)).await;
                    return Ok(false);
                }
                _ => {}
            }
        }
        if sent == 0 {
            state.first_token_timer.sleep_until(due.into_std()).await;
        } else {
            tokio::time::sleep_until(due).await;
        }
        if n == per_chunk {
            w.write_all(&full_frame).await?;
        } else {
            w.write_all(&token_frame(n)).await?;
        }
        sent += n;
    }
    let last = if chat {
        json!({"index": 0, "delta": {}, "finish_reason": "length"})
    } else {
        json!({"index": 0, "text": "", "finish_reason": "length"})
    };
    write_chunk(
        w,
        &json!({"id": "mock", "object": object, "model": model, "choices": [last]}).to_string(),
    )
    .await?;
    if usage_wanted {
        write_chunk(
            w,
            &json!({"id": "mock", "object": object, "model": model, "choices": [], "usage": usage})
                .to_string(),
        )
        .await?;
    }
    write_chunk(w, "[DONE]").await?;
    w.write_all(b"0\r\n\r\n").await?;
    Ok(true)
}
