//! The `[engine]` tables of the HTTP engine kinds: `server` (launched per cell) and `endpoint`
//! (an already-running server), parsed with unknown keys rejected and every number bounded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which OpenAI route the client streams from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `/v1/chat/completions` (the only route on which Ferrum honours `ignore_eos`).
    Chat,
    /// `/v1/completions`.
    Completions,
}

/// How prompts are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptMode {
    /// Text that the tokenizer re-encodes to exactly the requested length.
    Text,
    /// The token ids themselves (completions only; vLLM and llama.cpp accept them, Ferrum not).
    TokenIds,
}

/// How readiness is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthMode {
    /// `GET /health` answers 200 with a JSON body whose `status` is `healthy` (Ferrum).
    Ferrum,
    /// `GET /health` answers 200 (vLLM, SGLang; llama.cpp answers 503 while loading).
    Http200,
}

/// `[engine] kind = "server"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTable {
    /// Always `server`.
    pub kind: String,
    /// argv, never a shell string; placeholders `{model}`, `{port}`, `{effective_config}`,
    /// `{decision_trace}`, `{cell_dir}`.
    pub command: Vec<String>,
    /// Model path (or name) handed to the command as `{model}`.
    pub model: String,
    /// Name sent as the request `model` (default: the last path component of `model`, which is
    /// what `ferrum serve` 0.7.7 expects).
    pub served_model_name: Option<String>,
    /// `tokenizer.json` (default: `<model>/tokenizer.json` when it exists).
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size for token-id prompts when there is no tokenizer.
    pub vocab_size: Option<u32>,
    /// `chat` (default) or `completions`.
    pub api: Option<Api>,
    /// `text` (default) or `token_ids`.
    pub prompt: Option<PromptMode>,
    /// `ferrum` (default) or `http200`.
    pub health: Option<HealthMode>,
    /// Seconds to wait for readiness (default 600, at most 7200).
    pub ready_timeout: Option<f64>,
    /// Seconds one request may take before it fails as a timeout (default 600, at most 7200).
    pub request_timeout: Option<f64>,
    /// Seconds between SIGINT and SIGKILL when the server is stopped (default 10, at most 600).
    pub stop_grace: Option<f64>,
    /// Extra environment variables for the server (names must not start with `FERRUM_`: knobs
    /// go through `[env]`, `--set` and the sweep so that they are resolved and recorded).
    pub extra_env: Option<BTreeMap<String, String>>,
}

/// `[engine] kind = "endpoint"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointTable {
    /// Always `endpoint`.
    pub kind: String,
    /// e.g. `http://127.0.0.1:8000` (loopback or any host the user points at).
    pub base_url: String,
    /// Request `model`.
    pub model: String,
    /// `chat` (default) or `completions`.
    pub api: Option<Api>,
    /// `text` (default) or `token_ids`.
    pub prompt: Option<PromptMode>,
    /// `tokenizer.json` for text prompts.
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size for token-id prompts when there is no tokenizer.
    pub vocab_size: Option<u32>,
    /// Name of the environment variable holding the API key (the key is never written anywhere).
    pub api_key_env: Option<String>,
    /// Seconds one request may take (default 600, at most 7200).
    pub request_timeout: Option<f64>,
}

/// Largest vocabulary accepted (well above any real model's 152k).
pub const MAX_VOCAB: u32 = 10_000_000;

/// Checked seconds: `Some(v)` must be finite, > 0 and ≤ `max`.
pub fn seconds(
    field: &str,
    value: Option<f64>,
    default: f64,
    max: f64,
) -> Result<Duration, String> {
    let v = value.unwrap_or(default);
    if !v.is_finite() || v <= 0.0 || v > max {
        return Err(format!(
            "[engine] {field} = {v} is out of range: give seconds in (0, {max}]"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Checked vocabulary size.
pub fn vocab(value: Option<u32>) -> Result<Option<u32>, String> {
    match value {
        Some(v) if !(2..=MAX_VOCAB).contains(&v) => Err(format!(
            "[engine] vocab_size = {v} is out of range: give 2..={MAX_VOCAB}"
        )),
        other => Ok(other),
    }
}
