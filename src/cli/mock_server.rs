//! `ferrum-bench mock-server`: the OpenAI-compatible streaming mock (see `crate::mock_server`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::mock_server::{self, FailureKind, MockConfig};

/// Options of `mock-server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0: any free port; the address is printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Time to first token, ms (0..=600000).
    #[arg(long, default_value_t = 50.0)]
    pub ttft_ms: f64,
    /// Inter-token latency, ms (0..=60000).
    #[arg(long, default_value_t = 10.0)]
    pub itl_ms: f64,
    /// Extra delay per token, uniform in [0, jitter], ms (0..=60000).
    #[arg(long, default_value_t = 0.0)]
    pub jitter_ms: f64,
    /// Tokens carried by one SSE chunk (1..=4096).
    #[arg(long, default_value_t = 1)]
    pub tokens_per_chunk: usize,
    /// Probability that a request fails (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Failure kinds drawn from, comma-separated: http500, drop, malformed, stall.
    #[arg(long, default_value = "http500,drop,malformed,stall")]
    pub fail_kinds: String,
    /// RNG seed (jitter and failures).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Exit with status 3 when this many requests have arrived (simulates a crash mid-cell).
    /// Also read from FERRUM_MOCK_EXIT_AFTER_REQUESTS, so a sweep can vary it per cell.
    #[arg(long)]
    pub exit_after_requests: Option<u64>,
    /// Wait this many ms before binding the port (simulates model loading; 0..=600000).
    #[arg(long, default_value_t = 0.0)]
    pub startup_delay_ms: f64,
    /// Write the process environment to this file (JSON) at start-up.
    #[arg(long)]
    pub env_dump: Option<PathBuf>,
    /// Ferrum's flag: write an effective config here (copied from --effective-config-source).
    #[arg(long)]
    pub effective_config_json: Option<PathBuf>,
    /// File copied to --effective-config-json.
    #[arg(long)]
    pub effective_config_source: Option<PathBuf>,
    /// Append one JSON line per completion request to this file: arrival index, route and the
    /// x-ferrum-benchmark-* correlation headers received.
    #[arg(long)]
    pub request_log: Option<PathBuf>,
    /// Worker threads (1..=64; 1 = a single-threaded server). More threads raise the mock's
    /// ceiling for client benchmarks at high concurrency.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

fn ms(flag: &str, v: f64, max: f64) -> Result<Duration, Error> {
    if !v.is_finite() || !(0.0..=max).contains(&v) {
        return Err(Error::Usage(format!(
            "--{flag} {v} is out of range: give 0..={max} ms"
        )));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

/// Run the mock until killed.
pub fn run(args: Args) -> Result<i32, Error> {
    if !(1..=4096).contains(&args.tokens_per_chunk) {
        return Err(Error::Usage(format!(
            "--tokens-per-chunk {} is out of range: give 1..=4096",
            args.tokens_per_chunk
        )));
    }
    if !(1..=64).contains(&args.threads) {
        return Err(Error::Usage(format!(
            "--threads {} is out of range: give 1..=64",
            args.threads
        )));
    }
    if !(0.0..=1.0).contains(&args.fail_rate) {
        return Err(Error::Usage(format!(
            "--fail-rate {} is out of range: give a probability in 0..=1",
            args.fail_rate
        )));
    }
    let fail_kinds = args
        .fail_kinds
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(FailureKind::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Usage(format!("--fail-kinds: {e}")))?;
    if args.effective_config_json.is_some() != args.effective_config_source.is_some() {
        return Err(Error::Usage(
            "--effective-config-json and --effective-config-source go together".into(),
        ));
    }
    let exit_after_requests = match args.exit_after_requests {
        Some(n) => Some(n),
        None => match std::env::var("FERRUM_MOCK_EXIT_AFTER_REQUESTS") {
            Ok(v) => Some(v.trim().parse().map_err(|_| {
                Error::Usage(format!(
                    "FERRUM_MOCK_EXIT_AFTER_REQUESTS={v}: expected a whole number of requests"
                ))
            })?),
            Err(_) => None,
        },
    };
    let cfg = MockConfig {
        port: args.port,
        ttft: ms("ttft-ms", args.ttft_ms, 600_000.0)?,
        itl: ms("itl-ms", args.itl_ms, 60_000.0)?,
        jitter: ms("jitter-ms", args.jitter_ms, 60_000.0)?,
        tokens_per_chunk: args.tokens_per_chunk,
        fail_rate: args.fail_rate,
        fail_kinds,
        seed: args.seed,
        exit_after_requests,
        startup_delay: ms("startup-delay-ms", args.startup_delay_ms, 600_000.0)?,
        env_dump: args.env_dump,
        effective_config_json: args.effective_config_json,
        effective_config_source: args.effective_config_source,
        request_log: args.request_log,
        threads: args.threads,
    };
    mock_server::serve(cfg, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "mock-server listening on http://{addr}");
        let _ = out.flush();
    })
    .map_err(|source| Error::Io {
        action: "serve on",
        path: "127.0.0.1".into(),
        source,
    })?;
    Ok(crate::error::EXIT_OK)
}
