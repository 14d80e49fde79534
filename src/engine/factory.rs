//! Engine selection as one layer: `[engine] kind` → a validated [`EngineConfig`] (at preset load)
//! → an [`EngineFactory`] (once per run: tokenizer loaded, token space fixed) → a started engine
//! per cell ([`EngineFactory::start`]). The run/sweep code calls [`EngineFactory::start`] without
//! knowing kinds.
//!
//! Kinds: `reference` (the in-process engine, the default), `server` (a server launched per cell,
//! see [`http::server`]), `endpoint` (an already-running server) and the hidden `fake` (a
//! deterministic scripted engine for CLI tests of everything around the engine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::json;

use super::http::client::Target;
use super::http::config::{self, Api, EndpointTable, HealthMode, PromptMode, ServerTable};
use super::http::prompt::TextPrompts;
use super::http::server::{self, Placeholders, ServerProcess};
use super::http::{drift, HttpEngine};
use super::reference::{spec::EngineTable, start_reference, EngineKnobs, EngineSpec};
use super::{
    Cancel, Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, LoadSpec, RequestStatus,
    RequestTrace, RunOptions, RunOutput,
};
use crate::workload::TokenSpace;

/// `[engine] kind = "fake"` (hidden): request i's tokens arrive every `tick_ms` after its
/// arrival, lanes of `concurrency` requests in closed loop; nothing sleeps, so CLI tests of
/// everything around the engine are instant and deterministic. `jitter` adds seeded noise
/// (a per-run speed factor and a smaller per-token one) so statistical tests of `compare` get a
/// known noise distribution instead of the shared machine's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeTable {
    /// Always `fake`.
    pub kind: String,
    /// Milliseconds per token (default 1, at most 1000).
    pub tick_ms: Option<f64>,
    /// Vocabulary of prompt ids (default 1000).
    pub vocab_size: Option<u32>,
    /// Fail every run with this message (tests of failed cells).
    pub fail: Option<String>,
    /// Relative noise, 0 ≤ jitter ≤ 0.5 (default 0): each run's ticks are scaled by a factor
    /// drawn uniformly from 1 ± jitter, and each token's by 1 ± jitter/4.
    pub jitter: Option<f64>,
    /// Seed of the jitter's RNG (default 0); recorded in the engine details.
    pub jitter_seed: Option<u64>,
}

/// A parsed `[engine]` table.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per preset, built once per run: boxing would only add indirection"
)]
pub enum EngineConfig {
    /// The in-process reference engine.
    Reference(EngineTable),
    /// A server launched per cell.
    Server(Box<ServerTable>),
    /// An already-running server.
    Endpoint(Box<EndpointTable>),
    /// The scripted test engine.
    Fake(FakeTable),
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::Reference(EngineTable::default())
    }
}

fn parse<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| format!("invalid [engine] table: {}", e.message().trim()))
}

impl EngineConfig {
    /// Parse a raw `[engine]` table by its `kind` (default `reference`).
    pub fn from_toml(table: &toml::Table) -> Result<EngineConfig, String> {
        let kind = match table.get("kind") {
            None => "reference",
            Some(toml::Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(format!(
                    "[engine] kind must be a string, got a {}",
                    other.type_str()
                ))
            }
        };
        let cfg = match kind {
            "reference" => EngineConfig::Reference(parse(table)?),
            "server" => EngineConfig::Server(Box::new(parse(table)?)),
            "endpoint" => EngineConfig::Endpoint(Box::new(parse(table)?)),
            "fake" => EngineConfig::Fake(parse(table)?),
            other => {
                return Err(format!(
                "unknown engine kind `{other}` in [engine]: expected reference, server or endpoint"
            ))
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that need no file system.
    fn validate(&self) -> Result<(), String> {
        match self {
            EngineConfig::Server(t) => {
                if t.command.is_empty() || t.command[0].trim().is_empty() {
                    return Err("[engine] command must be a non-empty argv list, e.g. [\"ferrum\", \"serve\", \"--model\", \"{model}\", \"--port\", \"{port}\"]".into());
                }
                if !t.command.iter().any(|a| a.contains("{port}")) {
                    return Err("[engine] command must pass the port: add \"{port}\" (each cell gets a free loopback port)".into());
                }
                config::seconds("ready_timeout", t.ready_timeout, 600.0, 7200.0)?;
                config::seconds("request_timeout", t.request_timeout, 600.0, 7200.0)?;
                config::seconds("stop_grace", t.stop_grace, 10.0, 600.0)?;
                config::vocab(t.vocab_size)?;
                for name in t.extra_env.iter().flat_map(|m| m.keys()) {
                    if name.starts_with("FERRUM_") {
                        return Err(format!("[engine] extra_env must not set `{name}`: put knobs in [env], --set or the sweep so that they are resolved and recorded"));
                    }
                    if name.is_empty() || name.contains('=') {
                        return Err(format!("[engine] extra_env has an invalid name `{name}`"));
                    }
                }
                check_modes(t.api, t.prompt)
            }
            EngineConfig::Endpoint(t) => {
                if !(t.base_url.starts_with("http://") || t.base_url.starts_with("https://")) {
                    return Err(format!(
                        "[engine] base_url `{}` must start with http:// (or https://)",
                        t.base_url
                    ));
                }
                if t.base_url.starts_with("https://") {
                    return Err("[engine] base_url: https is not supported (the client is built without TLS); use http:// on loopback or a tunnel".into());
                }
                config::seconds("request_timeout", t.request_timeout, 600.0, 7200.0)?;
                config::vocab(t.vocab_size)?;
                check_modes(t.api, t.prompt)
            }
            EngineConfig::Fake(t) => {
                if let Some(ms) = t.tick_ms {
                    if !(ms.is_finite() && ms > 0.0 && ms <= 1000.0) {
                        return Err(format!(
                            "[engine] tick_ms = {ms} is out of range: give (0, 1000]"
                        ));
                    }
                }
                if let Some(j) = t.jitter {
                    if !(j.is_finite() && (0.0..=0.5).contains(&j)) {
                        return Err(format!(
                            "[engine] jitter = {j} is out of range: give [0, 0.5]"
                        ));
                    }
                }
                config::vocab(t.vocab_size).map(|_| ())
            }
            EngineConfig::Reference(_) => Ok(()),
        }
    }

    /// The kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineConfig::Reference(_) => "reference",
            EngineConfig::Server(_) => "server",
            EngineConfig::Endpoint(_) => "endpoint",
            EngineConfig::Fake(_) => "fake",
        }
    }

    /// The reference engine's table, for that kind.
    pub fn reference_table(&self) -> Option<&EngineTable> {
        match self {
            EngineConfig::Reference(t) => Some(t),
            _ => None,
        }
    }

    /// Whether cells may set `FERRUM_*` knobs (false for an already-running server).
    pub fn takes_knobs(&self) -> bool {
        !matches!(self, EngineConfig::Endpoint(_))
    }
}

fn check_modes(api: Option<Api>, prompt: Option<PromptMode>) -> Result<(), String> {
    if api.unwrap_or(Api::Chat) == Api::Chat && prompt == Some(PromptMode::TokenIds) {
        return Err("[engine] prompt = \"token_ids\" needs api = \"completions\": chat messages are text (use prompt = \"text\" with a tokenizer)".into());
    }
    Ok(())
}

/// What a cell hands the factory.
#[derive(Debug, Clone, Copy)]
pub struct CellStart<'a> {
    /// Run id (correlation header).
    pub run_id: &'a str,
    /// Cell name (correlation header, log lines).
    pub cell_name: &'a str,
    /// The harness's `effective_config.json` for the cell.
    pub effective_config_json: &'a str,
    /// The harness's `decision_trace.jsonl` for the cell.
    pub decision_trace_jsonl: &'a str,
    /// Staging directory for server files (moved into the cell directory when it is written).
    pub stage_dir: &'a Path,
    /// Raised by Ctrl-C.
    pub cancel: &'a Cancel,
}

/// Everything validated once per run; starts an engine per cell.
#[derive(Debug)]
pub struct EngineFactory {
    config: EngineConfig,
    reference: Option<EngineSpec>,
    prompts: Option<Arc<TextPrompts>>,
    tokens: TokenSpace,
}

/// Ferrum's bench-serve draws random prompt ids from `[min(256, V−1), V−1]`.
fn http_token_space(vocab: u32) -> TokenSpace {
    TokenSpace::with_special_prefix(vocab, 256.min(vocab - 1))
}

fn load_prompts(
    tokenizer: Option<&PathBuf>,
    default_dir: Option<&str>,
    prompt: PromptMode,
) -> Result<Option<Arc<TextPrompts>>, EngineError> {
    let path = match (tokenizer, default_dir) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(dir)) => {
            let p = Path::new(dir).join("tokenizer.json");
            if !p.is_file() && prompt == PromptMode::Text {
                return Err(EngineError::Config(format!(
                    "[engine] prompt = \"text\" needs the model's tokenizer, but `{}` does not exist: set [engine] model to the model directory or tokenizer = \"<path>/tokenizer.json\"",
                    p.display()
                )));
            }
            p.is_file().then_some(p)
        }
        (None, None) => None,
    };
    match path {
        Some(p) => TextPrompts::load(&p).map(|t| Some(Arc::new(t))).map_err(EngineError::Config),
        None if prompt == PromptMode::Text => Err(EngineError::Config(
            "[engine] prompt = \"text\" needs a tokenizer: set tokenizer = \"<dir>/tokenizer.json\" (or use api = \"completions\", prompt = \"token_ids\" with vocab_size)".into(),
        )),
        None => Ok(None),
    }
}

fn vocab_of(prompts: &Option<Arc<TextPrompts>>, vocab: Option<u32>) -> Result<u32, EngineError> {
    match (vocab, prompts) {
        (Some(v), _) => Ok(v),
        (None, Some(p)) => Ok(p.vocab_size()),
        (None, None) => Err(EngineError::Config(
            "[engine] token-id prompts need vocab_size (or a tokenizer)".into(),
        )),
    }
}

impl EngineFactory {
    /// Validate and load what every cell shares (reference dimensions or the tokenizer).
    pub fn prepare(
        config: &EngineConfig,
        architecture: &str,
    ) -> Result<EngineFactory, EngineError> {
        let (reference, prompts, tokens) = match config {
            EngineConfig::Reference(t) => {
                let spec = EngineSpec::resolve(Some(t), architecture)?;
                let tokens = crate::orchestrate::token_space(&spec);
                (Some(spec), None, tokens)
            }
            EngineConfig::Server(t) => {
                let prompt = t.prompt.unwrap_or(PromptMode::Text);
                let prompts = load_prompts(t.tokenizer.as_ref(), Some(&t.model), prompt)?;
                let v = vocab_of(&prompts, t.vocab_size)?;
                (None, prompts, http_token_space(v))
            }
            EngineConfig::Endpoint(t) => {
                let prompt = t.prompt.unwrap_or(PromptMode::Text);
                let prompts = load_prompts(t.tokenizer.as_ref(), None, prompt)?;
                let v = vocab_of(&prompts, t.vocab_size)?;
                (None, prompts, http_token_space(v))
            }
            EngineConfig::Fake(t) => (None, None, http_token_space(t.vocab_size.unwrap_or(1000))),
        };
        Ok(EngineFactory {
            config: config.clone(),
            reference,
            prompts,
            tokens,
        })
    }

    /// The prompt token space of this engine.
    pub fn tokens(&self) -> &TokenSpace {
        &self.tokens
    }

    /// The engine configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Start a fresh engine for one cell.
    pub fn start(&self, cell: &CellStart<'_>) -> Result<Box<dyn Engine>, EngineError> {
        match &self.config {
            EngineConfig::Reference(_) => {
                let doc: serde_json::Value = serde_json::from_str(cell.effective_config_json)
                    .map_err(|e| {
                        EngineError::Fault(format!("effective config is not JSON: {e}"))
                    })?;
                let knobs = EngineKnobs::from_effective_config(&doc)?;
                let spec = self
                    .reference
                    .as_ref()
                    .ok_or_else(|| EngineError::Fault("reference engine not prepared".into()))?;
                start_reference(spec, &knobs)
            }
            EngineConfig::Fake(t) => Ok(Box::new(FakeEngine {
                tick_ns: (t.tick_ms.unwrap_or(1.0) * 1e6) as u64,
                fail: t.fail.clone(),
                jitter: t.jitter.unwrap_or(0.0),
                jitter_seed: t.jitter_seed.unwrap_or(0),
                rng: ChaCha8Rng::seed_from_u64(t.jitter_seed.unwrap_or(0)),
            })),
            EngineConfig::Endpoint(t) => {
                let api_key = match &t.api_key_env {
                    Some(name) => Some(std::env::var(name).map_err(|_| {
                        EngineError::Config(format!(
                            "[engine] api_key_env names `{name}`, which is not set in the environment"
                        ))
                    })?),
                    None => None,
                };
                let api = t.api.unwrap_or(Api::Chat);
                let target = Target {
                    url: route(&t.base_url, api),
                    api,
                    prompt: t.prompt.unwrap_or(PromptMode::Text),
                    model: t.model.clone(),
                    api_key,
                    request_timeout: config::seconds(
                        "request_timeout",
                        t.request_timeout,
                        600.0,
                        7200.0,
                    )
                    .map_err(EngineError::Config)?,
                    headers: correlation(cell),
                };
                let info = EngineInfo {
                    kind: "endpoint".into(),
                    version: "unknown".into(),
                    details: BTreeMap::from([
                        ("base_url".into(), json!(t.base_url)),
                        ("model".into(), json!(t.model)),
                        ("api".into(), json!(format!("{api:?}").to_lowercase())),
                    ]),
                };
                let mut engine = HttpEngine::new(target, self.prompts.clone(), info)?;
                if let Some(v) = probe_version(&engine, &t.base_url) {
                    engine.info_mut().version = v;
                }
                Ok(Box::new(engine))
            }
            EngineConfig::Server(t) => Ok(Box::new(self.start_server(t, cell)?)),
        }
    }

    fn start_server(
        &self,
        t: &ServerTable,
        cell: &CellStart<'_>,
    ) -> Result<ServerEngine, EngineError> {
        let cfg_err = EngineError::Config;
        std::fs::create_dir_all(cell.stage_dir).map_err(|e| {
            EngineError::Fault(format!("cannot create `{}`: {e}", cell.stage_dir.display()))
        })?;
        let port = server::free_port()?;
        let stage = std::fs::canonicalize(cell.stage_dir).unwrap_or(cell.stage_dir.to_path_buf());
        let ph = Placeholders {
            model: t.model.clone(),
            port,
            cell_dir: stage.clone(),
        };
        let argv: Vec<String> = t.command.iter().map(|a| ph.apply(a)).collect();
        let mut env: Vec<(String, String)> = server_env(cell.effective_config_json)?;
        for name in server::ENV_ALLOW_LIST {
            if let Ok(v) = std::env::var(name) {
                env.push((name.to_string(), v));
            }
        }
        for (k, v) in t.extra_env.iter().flatten() {
            env.push((k.clone(), v.clone()));
        }
        let grace = config::seconds("stop_grace", t.stop_grace, 10.0, 600.0).map_err(cfg_err)?;
        let ready =
            config::seconds("ready_timeout", t.ready_timeout, 600.0, 7200.0).map_err(cfg_err)?;
        let request_timeout = config::seconds("request_timeout", t.request_timeout, 600.0, 7200.0)
            .map_err(cfg_err)?;
        let mut process = ServerProcess::launch(&argv, &stage, &env, grace)?;
        let base = format!("http://127.0.0.1:{port}");
        let api = t.api.unwrap_or(Api::Chat);
        let model = t.served_model_name.clone().unwrap_or_else(|| {
            Path::new(&t.model)
                .file_name()
                .map_or(t.model.clone(), |n| n.to_string_lossy().into_owned())
        });
        let target = Target {
            url: route(&base, api),
            api,
            prompt: t.prompt.unwrap_or(PromptMode::Text),
            model: model.clone(),
            api_key: None,
            request_timeout,
            headers: correlation(cell),
        };
        let mut details = BTreeMap::from([
            ("command".into(), json!(argv)),
            ("port".into(), json!(port)),
            ("model".into(), json!(t.model)),
            ("served_model_name".into(), json!(model)),
            ("api".into(), json!(format!("{api:?}").to_lowercase())),
            ("pid".into(), json!(process.pid())),
            (
                "env_keys".into(),
                json!(env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()),
            ),
        ]);
        let mut http = HttpEngine::new(
            target,
            self.prompts.clone(),
            EngineInfo {
                kind: "server".into(),
                version: "unknown".into(),
                details: BTreeMap::new(),
            },
        )?;
        let health = {
            let rt = super::http::runtime()?;
            let client = super::http::http_client(4)?;
            let started = std::time::Instant::now();
            let h = process.wait_ready(
                &rt,
                &client,
                &format!("{base}/health"),
                t.health.unwrap_or(HealthMode::Ferrum),
                ready,
                cell.cancel,
            )?;
            details.insert(
                "ready_after_s".into(),
                json!(started.elapsed().as_secs_f64()),
            );
            h
        };
        let _ = std::fs::write(
            stage.join(server::SERVER_HEALTH),
            serde_json::to_string_pretty(&health).unwrap_or_default(),
        );
        let version = health
            .get("version")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| command_version(&t.command[0]))
            .unwrap_or_else(|| "unknown".into());
        let server_cfg = std::fs::read_to_string(stage.join(server::SERVER_EFFECTIVE_CONFIG)).ok();
        if let Some(cfg) = server_cfg {
            let trace = std::fs::read_to_string(stage.join(server::SERVER_DECISION_TRACE))
                .unwrap_or_default();
            match drift::compute(
                cell.effective_config_json,
                cell.decision_trace_jsonl,
                &cfg,
                &trace,
            ) {
                Ok(d) => {
                    details.insert("config_drift".into(), json!(d));
                }
                Err(e) => {
                    details.insert("config_drift_error".into(), json!(e));
                }
            }
        }
        *http.info_mut() = EngineInfo {
            kind: "server".into(),
            version,
            details,
        };
        Ok(ServerEngine {
            http,
            process,
            health_url: format!("{base}/health"),
        })
    }
}

fn route(base: &str, api: Api) -> String {
    let base = base.trim_end_matches('/');
    match api {
        Api::Chat => format!("{base}/v1/chat/completions"),
        Api::Completions => format!("{base}/v1/completions"),
    }
}

/// Ferrum's optional correlation headers (visible ASCII only; anything else is replaced by `_`).
fn correlation(cell: &CellStart<'_>) -> Vec<(String, String)> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect()
    };
    vec![
        ("x-ferrum-benchmark-run-id".into(), clean(cell.run_id)),
        ("x-ferrum-benchmark-cell-id".into(), clean(cell.cell_name)),
    ]
}

/// The cell's `FERRUM_*` entries that came from the user (preset `[env]`, environment, `--set`,
/// sweep), with their values exactly as resolved. Values the resolver derived itself are not
/// passed: the server derives them again, and a difference shows up as config drift.
pub fn server_env(effective_config_json: &str) -> Result<Vec<(String, String)>, EngineError> {
    let doc: serde_json::Value = serde_json::from_str(effective_config_json)
        .map_err(|e| EngineError::Fault(format!("effective config is not JSON: {e}")))?;
    // Ferrum's effective_config.json keeps the entries at the top level.
    Ok(doc
        .get("entries")
        .or_else(|| doc.pointer("/runtime_config/entries"))
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter(|e| {
            matches!(
                e.get("source").and_then(|s| s.as_str()),
                Some("config_file" | "cli" | "env" | "script_case")
            )
        })
        .filter_map(|e| {
            Some((
                e.get("key")?.as_str()?.to_string(),
                e.get("effective_value")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

/// `program --version`, first line, with a 5 s limit.
fn command_version(program: &str) -> Option<String> {
    let mut child = std::process::Command::new(program)
        .arg("--version")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// `/health` `version` of an endpoint, if it answers within 2 s.
fn probe_version(_engine: &HttpEngine, base: &str) -> Option<String> {
    let rt = super::http::runtime().ok()?;
    let client = super::http::http_client(1).ok()?;
    let url = format!("{}/health", base.trim_end_matches('/'));
    let text = rt.block_on(async {
        let resp = client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        resp.text().await.ok()
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("version")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// A launched server and the client bound to it.
#[derive(Debug)]
pub struct ServerEngine {
    http: HttpEngine,
    process: ServerProcess,
    health_url: String,
}

/// How long a server whose connections failed may take to either answer `/health` again or
/// show its exit (generous: a loaded machine can delay the exit's visibility by seconds).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

impl Engine for ServerEngine {
    fn info(&self) -> EngineInfo {
        self.http.info()
    }

    fn run(
        &mut self,
        requests: &[EngineRequest],
        load: &LoadSpec,
        options: &RunOptions,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError> {
        if let Some(status) = self.process.exited() {
            return Err(self.died(status));
        }
        let out = self.http.run(requests, load, options, progress)?;
        // Requests that failed because the server died are not a measurement: fail the cell
        // with the server's own last words. Connection failures may come from a server whose
        // exit is not visible yet (see `ServerProcess::settle`): then wait for it to show.
        let connection_failures = out
            .counters
            .get(super::http::client::FailKind::Connection.counter())
            .copied()
            .unwrap_or(0.0);
        if connection_failures > 0.0 {
            let (rt, client) = self.http.runtime_and_client();
            match self
                .process
                .settle(rt, client, &self.health_url, SETTLE_LIMIT)
            {
                Ok(()) => {}
                Err(server::Settled::Exited(status)) => return Err(self.died(status)),
                Err(server::Settled::NotAnswering(limit)) => {
                    return Err(EngineError::Fault(format!(
                        "server stopped answering: /health refused connections for {:.0} s after {connection_failures} request(s) failed on the connection; last lines of server.log: {}",
                        limit.as_secs_f64(),
                        self.process.log_tail(8)
                    )))
                }
            }
        } else if let Some(status) = self.process.exited() {
            return Err(self.died(status));
        }
        Ok(out)
    }

    fn shutdown(&mut self) -> Result<(), EngineError> {
        self.process.stop();
        Ok(())
    }
}

impl ServerEngine {
    fn died(&self, status: std::process::ExitStatus) -> EngineError {
        EngineError::Fault(format!(
            "server exited with {status} during the cell; last lines of server.log: {}",
            self.process.log_tail(8)
        ))
    }
}

/// Move the server's files from the staging directory into the written cell directory (never
/// replacing a file the harness wrote) and remove the staging directory.
pub fn finish_stage(stage: &Path, cell_dir: &Path) -> std::io::Result<()> {
    if !stage.is_dir() {
        return Ok(());
    }
    if cell_dir.is_dir() {
        for entry in std::fs::read_dir(stage)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let to = cell_dir.join(entry.file_name());
                if !to.exists() {
                    std::fs::rename(entry.path(), to)?;
                }
            }
        }
    }
    std::fs::remove_dir_all(stage)
}

/// The hidden scripted engine (see [`FakeTable`]).
#[derive(Debug)]
struct FakeEngine {
    tick_ns: u64,
    fail: Option<String>,
    jitter: f64,
    jitter_seed: u64,
    /// One stream per engine, so successive runs (warm-up, repeats) draw different factors.
    rng: ChaCha8Rng,
}

impl FakeEngine {
    /// A factor uniform in 1 ± `spread`.
    fn factor(&mut self, spread: f64) -> f64 {
        if spread == 0.0 {
            return 1.0;
        }
        // 53 random bits → a uniform in [0, 1).
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        1.0 + spread * (2.0 * u - 1.0)
    }
}

impl Engine for FakeEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            kind: "fake".into(),
            version: "1".into(),
            details: BTreeMap::from([
                ("tick_ns".into(), json!(self.tick_ns)),
                ("jitter".into(), json!(self.jitter)),
                ("jitter_seed".into(), json!(self.jitter_seed)),
            ]),
        }
    }

    fn run(
        &mut self,
        requests: &[EngineRequest],
        load: &LoadSpec,
        options: &RunOptions,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError> {
        if options.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        if let Some(msg) = &self.fail {
            return Err(EngineError::Fault(msg.clone()));
        }
        let lanes = match load {
            LoadSpec::Closed { concurrency } => (*concurrency).max(1),
            LoadSpec::Open { .. } => requests.len().max(1),
        };
        let mut lane_free = vec![0u64; lanes];
        let mut traces = Vec::with_capacity(requests.len());
        let run_tick = self.tick_ns as f64 * self.factor(self.jitter);
        for (i, r) in requests.iter().enumerate() {
            let lane = i % lanes;
            let arrival = match load {
                LoadSpec::Open { arrivals_s } => (arrivals_s[i] * 1e9) as u64,
                LoadSpec::Closed { .. } => lane_free[lane],
            };
            let mut at = arrival;
            let token_ns: Vec<u64> = (0..r.output_tokens)
                .map(|_| {
                    at += (run_tick * self.factor(self.jitter / 4.0)).round().max(1.0) as u64;
                    at
                })
                .collect();
            let fin = token_ns.last().copied().unwrap_or(arrival);
            lane_free[lane] = fin;
            progress(&EngineEvent::Tokens {
                count: r.output_tokens,
            });
            progress(&EngineEvent::RequestDone { id: r.id, ok: true });
            traces.push(RequestTrace {
                id: r.id,
                status: RequestStatus::Ok,
                prompt_tokens: r.prompt.len(),
                arrival_ns: arrival,
                admitted_ns: Some(arrival),
                token_ns,
                finished_ns: fin,
                output_ids: Vec::new(),
            });
        }
        Ok(RunOutput {
            duration_ns: traces.iter().map(|t| t.finished_ns).max().unwrap_or(0),
            requests: traces,
            counters: BTreeMap::new(),
            steps: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn kinds_parse_and_bad_tables_explain_the_fix() {
        assert_eq!(
            EngineConfig::from_toml(&table("")).unwrap().kind(),
            "reference"
        );
        assert_eq!(
            EngineConfig::from_toml(&table("kind = \"fake\""))
                .unwrap()
                .kind(),
            "fake"
        );
        let server = "kind = \"server\"\ncommand = [\"x\", \"{port}\"]\nmodel = \"/m\"";
        assert_eq!(
            EngineConfig::from_toml(&table(server)).unwrap().kind(),
            "server"
        );
        let err = |t: &str| EngineConfig::from_toml(&table(t)).unwrap_err();
        assert!(err("kind = \"vllm\"").contains("unknown engine kind `vllm`"));
        assert!(err("kind = \"server\"\ncommand = [\"x\"]\nmodel = \"/m\"").contains("{port}"));
        assert!(err("kind = \"server\"\ncommand = []\nmodel = \"/m\"").contains("non-empty argv"));
        assert!(err(&format!("{server}\nready_timeout = 0")).contains("out of range"));
        assert!(err(&format!("{server}\nextra_env = {{ FERRUM_X = \"1\" }}")).contains("[env]"));
        assert!(err(&format!("{server}\nbogus = 1")).contains("unknown field"));
        assert!(err(&format!("{server}\nprompt = \"token_ids\"")).contains("completions"));
        assert!(
            err("kind = \"endpoint\"\nbase_url = \"localhost:1\"\nmodel = \"m\"")
                .contains("http://")
        );
        let ep = EngineConfig::from_toml(&table(
            "kind = \"endpoint\"\nbase_url = \"http://127.0.0.1:1\"\nmodel = \"m\"",
        ))
        .unwrap();
        assert!(!ep.takes_knobs());
    }

    #[test]
    fn server_env_passes_user_entries_exactly_and_not_derived_ones() {
        let doc = r#"{"entries":[
            {"key":"FERRUM_A","effective_value":"1","source":"script_case"},
            {"key":"FERRUM_B","effective_value":"x y","source":"config_file"},
            {"key":"FERRUM_C","effective_value":"9","source":"memory_profile"},
            {"key":"FERRUM_D","effective_value":"2","source":"cli"}]}"#;
        assert_eq!(
            server_env(doc).unwrap(),
            vec![
                ("FERRUM_A".to_string(), "1".to_string()),
                ("FERRUM_B".to_string(), "x y".to_string()),
                ("FERRUM_D".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn text_prompts_without_tokenizer_are_refused_and_token_ids_need_a_vocab() {
        let ep = EngineConfig::from_toml(&table(
            "kind = \"endpoint\"\nbase_url = \"http://127.0.0.1:1\"\nmodel = \"m\"",
        ))
        .unwrap();
        let e = EngineFactory::prepare(&ep, "qwen3_moe")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a tokenizer"), "{e}");
        let ids = EngineConfig::from_toml(&table(
            "kind = \"endpoint\"\nbase_url = \"http://127.0.0.1:1\"\nmodel = \"m\"\napi = \"completions\"\nprompt = \"token_ids\"",
        ))
        .unwrap();
        assert!(EngineFactory::prepare(&ids, "x")
            .unwrap_err()
            .to_string()
            .contains("vocab_size"));
    }
}
