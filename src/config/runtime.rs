//! Runtime configuration snapshot: the `FERRUM_*` entries an engine starts with, each with its
//! effective value, where it came from and what it affects.
//!
//! Mirrors Ferrum's `RuntimeConfigSnapshot` (ferrum-types `runtime_config.rs`, FERRUM_FACTS §5.2):
//! entries are kept sorted by key, the later of two entries for one key wins, and `affects` is
//! inferred from the key name with Ferrum's substring rules so that `effective_config.json` and
//! its `env_hash` come out byte-identical to Ferrum's.

use serde::{Deserialize, Serialize};

/// Where a runtime value came from. Serialized in snake_case exactly as Ferrum does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeConfigSource {
    /// A built-in default.
    Default,
    /// A preset / config file (`[env]` of a ferrum-bench preset).
    ConfigFile,
    /// A command-line override (`--set`).
    Cli,
    /// The process environment.
    Env,
    /// A benchmark script case (a sweep cell's value).
    ScriptCase,
    /// Written back by the resolver or the memory autosizer.
    MemoryProfile,
}

impl RuntimeConfigSource {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeConfigSource::Default => "default",
            RuntimeConfigSource::ConfigFile => "config_file",
            RuntimeConfigSource::Cli => "cli",
            RuntimeConfigSource::Env => "env",
            RuntimeConfigSource::ScriptCase => "script_case",
            RuntimeConfigSource::MemoryProfile => "memory_profile",
        }
    }
}

/// What a knob affects. The declaration order is the sort order Ferrum uses in `affects` arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeConfigEffect {
    /// Output may change.
    Correctness,
    /// Speed may change.
    Performance,
    /// Memory footprint may change.
    Memory,
    /// Diagnostics only.
    Diagnostics,
}

impl RuntimeConfigEffect {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeConfigEffect::Correctness => "correctness",
            RuntimeConfigEffect::Performance => "performance",
            RuntimeConfigEffect::Memory => "memory",
            RuntimeConfigEffect::Diagnostics => "diagnostics",
        }
    }
}

/// One `FERRUM_*` entry. Field order is part of the locked schema (it feeds `env_hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfigEntry {
    /// Full knob name, e.g. `FERRUM_PAGED_MAX_SEQS`.
    pub key: String,
    /// The value as the engine sees it.
    pub effective_value: String,
    /// Provenance.
    pub source: RuntimeConfigSource,
    /// Inferred effects, sorted and de-duplicated.
    pub affects: Vec<RuntimeConfigEffect>,
}

impl RuntimeConfigEntry {
    /// An entry whose `affects` is inferred from the key.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        source: RuntimeConfigSource,
    ) -> Self {
        let key = key.into();
        let affects = infer_effects(&key);
        Self {
            key,
            effective_value: value.into(),
            source,
            affects,
        }
    }
}

/// The set of entries an engine starts with, sorted by key with one entry per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfigSnapshot {
    /// Entries sorted by key.
    pub entries: Vec<RuntimeConfigEntry>,
}

impl RuntimeConfigSnapshot {
    /// Snapshot of environment-style pairs: only `FERRUM_`-prefixed names are kept, with source
    /// `env` (as Ferrum's `from_env_vars`).
    pub fn from_env_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_entries(vars.into_iter().filter_map(|(key, value)| {
            let key = key.into();
            key.starts_with("FERRUM_")
                .then(|| RuntimeConfigEntry::new(key, value, RuntimeConfigSource::Env))
        }))
    }

    /// Snapshot of explicit entries; for a repeated key the later entry wins.
    pub fn from_entries<I: IntoIterator<Item = RuntimeConfigEntry>>(entries: I) -> Self {
        let mut snapshot = Self::default();
        for entry in entries {
            snapshot.upsert_entry(entry);
        }
        snapshot
    }

    /// Insert or replace `key` with an inferred-effects entry.
    pub fn upsert(&mut self, key: &str, value: &str, source: RuntimeConfigSource) {
        self.upsert_entry(RuntimeConfigEntry::new(key, value, source));
    }

    /// Insert or replace an entry, keeping the entries sorted by key.
    pub fn upsert_entry(&mut self, entry: RuntimeConfigEntry) {
        match self
            .entries
            .binary_search_by(|existing| existing.key.as_str().cmp(entry.key.as_str()))
        {
            Ok(index) => self.entries[index] = entry,
            Err(index) => self.entries.insert(index, entry),
        }
    }

    /// The entry for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&RuntimeConfigEntry> {
        self.entries.iter().find(|entry| entry.key == key)
    }
}

/// Ferrum's `infer_effects`: substring rules on the key name (FERRUM_FACTS §5.2).
pub fn infer_effects(key: &str) -> Vec<RuntimeConfigEffect> {
    let has = |needles: &[&str]| needles.iter().any(|needle| key.contains(needle));
    let mut effects = Vec::new();
    if has(&[
        "DIAG",
        "PROF",
        "TRACE",
        "DUMP",
        "LOG_CONFIG",
        "CAPTURE",
        "DEBUG",
    ]) {
        effects.push(RuntimeConfigEffect::Diagnostics);
    }
    if has(&[
        "KV",
        "BATCHED_TOKENS",
        "PAGED_MAX_SEQS",
        "MODEL_LEN",
        "STATE_MAX_SLOTS",
        "MEMORY",
    ]) {
        effects.push(RuntimeConfigEffect::Memory);
    }
    if has(&[
        "PREFIX_CACHE",
        "MODEL_PATH",
        "MODEL_LEN",
        "NATIVE",
        "ARTIFACT",
        "SPEC_",
        "REF_",
        "DTYPE",
    ]) {
        effects.push(RuntimeConfigEffect::Correctness);
    }
    if effects.is_empty()
        || has(&[
            "MOE", "VLLM", "MARLIN", "PAGED", "GRAPH", "SCHED", "BATCH", "ATTN", "FLASH", "CUDA",
            "TRITON", "GREEDY", "FA",
        ])
    {
        effects.push(RuntimeConfigEffect::Performance);
    }
    effects.sort();
    effects.dedup();
    effects
}

/// Ferrum's boolean spelling: trimmed, case-insensitive `1|true|yes|on` / `0|false|no|off`.
/// The error text is Ferrum's, quoting the normalised value.
pub fn parse_bool_env_value(raw: &str) -> Result<bool, String> {
    let normalized = raw.trim().to_ascii_lowercase();
    match normalized.as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("invalid boolean env value: {normalized:?}")),
    }
}

/// Ferrum's non-negative integer spelling: trimmed decimal `usize`. The error text is Ferrum's,
/// quoting the raw (untrimmed) value.
pub fn parse_usize_env_value(raw: &str) -> Result<usize, String> {
    raw.trim()
        .parse::<usize>()
        .map_err(|_| format!("invalid integer env value: {raw:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RuntimeConfigEffect::*;

    #[test]
    fn effects_follow_ferrum_substring_rules() {
        assert_eq!(
            infer_effects("FERRUM_PAGED_MAX_SEQS"),
            vec![Performance, Memory]
        );
        assert_eq!(
            infer_effects("FERRUM_MAX_BATCHED_TOKENS"),
            vec![Performance, Memory]
        );
        assert_eq!(infer_effects("FERRUM_KV_CAPACITY"), vec![Memory]);
        assert_eq!(infer_effects("FERRUM_BACKEND"), vec![Performance]);
        assert_eq!(infer_effects("FERRUM_PREFIX_CACHE"), vec![Correctness]);
        assert_eq!(infer_effects("FERRUM_KV_DTYPE"), vec![Correctness, Memory]);
        assert_eq!(
            infer_effects("FERRUM_MAX_MODEL_LEN"),
            vec![Correctness, Memory]
        );
        assert_eq!(infer_effects("FERRUM_DECODE_OP_PROFILE"), vec![Diagnostics]);
        assert_eq!(
            infer_effects("FERRUM_BATCH_DECODE_PROF"),
            vec![Performance, Diagnostics]
        );
        assert_eq!(
            infer_effects("FERRUM_DEBUG_SPEC_POS"),
            vec![Correctness, Diagnostics]
        );
        assert_eq!(infer_effects("FERRUM_TP"), vec![Performance]);
        assert_eq!(infer_effects("FERRUM_MOE_GRAPH"), vec![Performance]);
    }

    #[test]
    fn bool_parsing_accepts_exactly_ferrums_spellings() {
        for raw in ["1", "true", " TRUE ", "yes", "On"] {
            assert_eq!(parse_bool_env_value(raw), Ok(true), "{raw}");
        }
        for raw in ["0", "false", "No", " off"] {
            assert_eq!(parse_bool_env_value(raw), Ok(false), "{raw}");
        }
        assert_eq!(
            parse_bool_env_value(" Maybe "),
            Err("invalid boolean env value: \"maybe\"".to_string())
        );
        assert!(parse_bool_env_value("").is_err());
        assert!(parse_bool_env_value("2").is_err());
    }

    #[test]
    fn integer_parsing_quotes_the_raw_value() {
        assert_eq!(parse_usize_env_value(" 32 "), Ok(32));
        assert_eq!(parse_usize_env_value("0"), Ok(0));
        assert_eq!(
            parse_usize_env_value(" -1"),
            Err("invalid integer env value: \" -1\"".to_string())
        );
        assert!(parse_usize_env_value("abc").is_err());
        assert!(parse_usize_env_value("").is_err());
    }

    #[test]
    fn snapshot_is_sorted_and_later_entries_win() {
        let snapshot = RuntimeConfigSnapshot::from_entries([
            RuntimeConfigEntry::new("FERRUM_Z", "1", RuntimeConfigSource::Default),
            RuntimeConfigEntry::new("FERRUM_A", "1", RuntimeConfigSource::Default),
            RuntimeConfigEntry::new("FERRUM_Z", "2", RuntimeConfigSource::Cli),
        ]);
        let keys: Vec<_> = snapshot.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["FERRUM_A", "FERRUM_Z"]);
        assert_eq!(snapshot.get("FERRUM_Z").unwrap().effective_value, "2");
        assert_eq!(
            snapshot.get("FERRUM_Z").unwrap().source,
            RuntimeConfigSource::Cli
        );
    }

    #[test]
    fn env_snapshot_keeps_only_ferrum_names() {
        let snapshot = RuntimeConfigSnapshot::from_env_vars([("PATH", "/bin"), ("FERRUM_TP", "1")]);
        assert_eq!(snapshot.entries.len(), 1);
        assert_eq!(snapshot.entries[0].source, RuntimeConfigSource::Env);
    }

    #[test]
    fn entry_serializes_in_locked_field_order() {
        let entry =
            RuntimeConfigEntry::new("FERRUM_KV_CAPACITY", "512", RuntimeConfigSource::Default);
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"key":"FERRUM_KV_CAPACITY","effective_value":"512","source":"default","affects":["memory"]}"#
        );
    }
}
