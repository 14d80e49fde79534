//! The knob registry: every `FERRUM_*` knob the spec files read plus Ferrum's registered knobs,
//! with type, default, effects, meaning and which part of ferrum-bench reads it.
//!
//! The table lives in `data/knobs.tsv` (embedded at compile time) so that it can be reviewed and
//! diffed as data. The registry checks *names* (a typo in a sweep wastes GPU hours, and Ferrum
//! ignores unknown names); it never rewrites a value. Values reach Ferrum's resolver exactly as
//! written, and what Ferrum's runtime would read differently from how a value looks is reported
//! after resolution by [`super::misread`], which uses [`conforms`] for knobs whose runtime reader
//! is not part of the specification.

use std::sync::OnceLock;

use serde::Serialize;

use super::runtime::{
    infer_effects, parse_bool_env_value, parse_usize_env_value, RuntimeConfigEffect,
};

const REGISTRY_TSV: &str = include_str!("../../data/knobs.tsv");

/// Value type of a knob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "values")]
pub enum KnobType {
    /// Ferrum's boolean spellings (`1/0`, `true/false`, `yes/no`, `on/off`).
    Bool,
    /// Non-negative integer.
    Integer,
    /// Positive integer (Ferrum's model code silently replaces 0 or garbage with the default).
    PositiveInteger,
    /// Free-form string.
    String,
    /// One of a fixed set (case-insensitive).
    Enum(Vec<String>),
    /// Comma-separated non-negative integers.
    Csv,
    /// A JSON document.
    Json,
    /// A filesystem path.
    Path,
    /// A decimal number.
    Float,
    /// Empty (auto), `0` or `1`.
    Tristate,
    /// A URL.
    Url,
}

impl KnobType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "bool" => KnobType::Bool,
            "integer" => KnobType::Integer,
            "positive_integer" => KnobType::PositiveInteger,
            "string" => KnobType::String,
            "csv" => KnobType::Csv,
            "json" => KnobType::Json,
            "path" => KnobType::Path,
            "float" => KnobType::Float,
            "tristate" => KnobType::Tristate,
            "url" => KnobType::Url,
            other => KnobType::Enum(
                other
                    .strip_prefix("enum:")?
                    .split('|')
                    .map(str::to_string)
                    .collect(),
            ),
        })
    }

    /// Short name for tables.
    pub fn label(&self) -> String {
        match self {
            KnobType::Bool => "bool".into(),
            KnobType::Integer => "integer".into(),
            KnobType::PositiveInteger => "positive integer".into(),
            KnobType::String => "string".into(),
            KnobType::Enum(values) => format!("enum({})", values.join("|")),
            KnobType::Csv => "csv list".into(),
            KnobType::Json => "json".into(),
            KnobType::Path => "path".into(),
            KnobType::Float => "float".into(),
            KnobType::Tristate => "tri-state".into(),
            KnobType::Url => "url".into(),
        }
    }

    /// The accepted form, for error messages.
    pub fn expected(&self) -> String {
        match self {
            KnobType::Bool => {
                "expected 0 or 1 (Ferrum's parser also takes true/false, yes/no, on/off)".into()
            }
            KnobType::Integer => "expected a non-negative decimal integer".into(),
            KnobType::PositiveInteger => "expected a positive decimal integer".into(),
            KnobType::Enum(values) => format!("expected one of {}", values.join(", ")),
            KnobType::Csv => "expected comma-separated non-negative integers such as `0,1`".into(),
            KnobType::Json => "expected a JSON value".into(),
            KnobType::Float => "expected a decimal number".into(),
            KnobType::Tristate => "expected empty (auto), 0 or 1".into(),
            KnobType::String | KnobType::Path | KnobType::Url => {
                "expected a non-empty value".into()
            }
        }
    }
}

/// Which part of ferrum-bench reads a knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KnobReaders {
    /// The resolver reads it.
    Resolver,
    /// The reference engine reads it.
    Engine,
    /// Both.
    ResolverAndEngine,
    /// Recorded only: neither models it.
    None,
}

impl KnobReaders {
    /// Short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            KnobReaders::Resolver => "resolver",
            KnobReaders::Engine => "engine",
            KnobReaders::ResolverAndEngine => "resolver+engine",
            KnobReaders::None => "recorded only",
        }
    }
}

/// One registered knob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Knob {
    /// Full name, e.g. `FERRUM_PAGED_MAX_SEQS` (a trailing `_` marks a prefix family).
    pub name: String,
    /// Ferrum registry scope: runtime, benchmark, build, debug, test.
    pub scope: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: KnobType,
    /// Default, as Ferrum's registry states it.
    pub default: String,
    /// Stability / read phase, e.g. `default/start`.
    pub stability: String,
    /// What it affects, as Ferrum records it in `effective_config.json`.
    pub affects: Vec<RuntimeConfigEffect>,
    /// Who reads it in ferrum-bench.
    pub readers: KnobReaders,
    /// One-line meaning.
    pub meaning: String,
}

/// Knob name or value errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnobError {
    /// Not a registered `FERRUM_*` name.
    #[error("unknown knob `{name}`{}; run `ferrum-bench knobs` for the list, or pass --allow-unknown-knobs", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    Unknown {
        /// The name given.
        name: String,
        /// Closest registered name.
        suggestion: Option<String>,
    },
    /// Not a `FERRUM_*` name at all.
    #[error("`{name}` is not a Ferrum knob: knob names start with FERRUM_")]
    NotAKnob {
        /// The name given.
        name: String,
    },
}

/// The embedded registry.
#[derive(Debug)]
pub struct Registry {
    knobs: Vec<Knob>,
}

impl Registry {
    /// The registry embedded in the binary.
    pub fn global() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            Registry::parse(REGISTRY_TSV).expect("data/knobs.tsv is validated by unit tests")
        })
    }

    /// Parse the TSV table (comment lines start with `#`).
    pub fn parse(text: &str) -> Result<Registry, String> {
        let mut knobs = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split('\t').collect();
            let [name, scope, kind, default, stability, readers, meaning] = cells[..] else {
                return Err(format!("data/knobs.tsv:{}: expected 7 columns", index + 1));
            };
            let kind = KnobType::parse(kind)
                .ok_or_else(|| format!("data/knobs.tsv:{}: unknown type `{kind}`", index + 1))?;
            let readers = match readers {
                "resolver" => KnobReaders::Resolver,
                "engine" => KnobReaders::Engine,
                "resolver+engine" => KnobReaders::ResolverAndEngine,
                "-" => KnobReaders::None,
                other => {
                    return Err(format!(
                        "data/knobs.tsv:{}: unknown readers `{other}`",
                        index + 1
                    ))
                }
            };
            let name = format!("FERRUM_{name}");
            knobs.push(Knob {
                affects: infer_effects(&name),
                name,
                scope: scope.to_string(),
                kind,
                default: default.to_string(),
                stability: stability.to_string(),
                readers,
                meaning: meaning.to_string(),
            });
        }
        knobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Registry { knobs })
    }

    /// All knobs, sorted by name.
    pub fn knobs(&self) -> &[Knob] {
        &self.knobs
    }

    /// The knob called `name` (prefix families match any suffix).
    pub fn lookup(&self, name: &str) -> Option<&Knob> {
        self.knobs
            .binary_search_by(|knob| knob.name.as_str().cmp(name))
            .ok()
            .map(|index| &self.knobs[index])
            .or_else(|| {
                self.knobs.iter().find(|knob| {
                    knob.name.ends_with('_')
                        && name.len() > knob.name.len()
                        && name.starts_with(&knob.name)
                })
            })
    }

    /// The registered name closest to `name` (Jaro-Winkler on the part after `FERRUM_`).
    pub fn suggest(&self, name: &str) -> Option<&str> {
        let wanted = name.strip_prefix("FERRUM_").unwrap_or(name);
        self.knobs
            .iter()
            .map(|knob| {
                let candidate = knob.name.strip_prefix("FERRUM_").unwrap_or(&knob.name);
                (strsim::jaro_winkler(wanted, candidate), knob.name.as_str())
            })
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name)
    }

    /// The registered knob called `name`, or why `name` is not one (with the closest name).
    pub fn check_name(&self, name: &str) -> Result<&Knob, KnobError> {
        if !name.starts_with("FERRUM_") {
            return Err(KnobError::NotAKnob {
                name: name.to_string(),
            });
        }
        self.lookup(name).ok_or_else(|| KnobError::Unknown {
            name: name.to_string(),
            suggestion: self.suggest(name).map(str::to_string),
        })
    }

    /// Check the name of `name=raw` and return the value **unchanged**: values are never
    /// trimmed, case-folded or re-spelled before Ferrum's resolver sees them.
    pub fn checked_value(&self, name: &str, raw: &str) -> Result<String, KnobError> {
        self.check_name(name).map(|_| raw.to_string())
    }

    /// Kept for callers written when values were canonicalised: now exactly
    /// [`Registry::checked_value`] (name check, value returned as written).
    pub fn canonical_value(&self, name: &str, raw: &str) -> Result<String, KnobError> {
        self.checked_value(name, raw)
    }
}

/// [`Registry::checked_value`] against the embedded registry.
pub fn checked_value(name: &str, raw: &str) -> Result<String, KnobError> {
    Registry::global().checked_value(name, raw)
}

/// [`Registry::canonical_value`] against the embedded registry (name check only).
pub fn canonical_value(name: &str, raw: &str) -> Result<String, KnobError> {
    Registry::global().checked_value(name, raw)
}

/// Whether `raw` reads as a value of `kind` under Ferrum's own typed parsers
/// (`parse_bool_env_value`, `parse_usize_env_value`, `parse_path_env_value`, the tri-state rule):
/// trimmed, booleans and enums case-insensitive. Used for knobs whose runtime reader is not in
/// the specification, to say that a value does not even look like its registered type.
pub fn conforms(kind: &KnobType, raw: &str) -> bool {
    let trimmed = raw.trim();
    match kind {
        KnobType::Bool => parse_bool_env_value(raw).is_ok(),
        KnobType::Integer => parse_usize_env_value(raw).is_ok(),
        KnobType::PositiveInteger => parse_usize_env_value(raw).is_ok_and(|n| n > 0),
        KnobType::Enum(values) => values.contains(&trimmed.to_ascii_lowercase()),
        KnobType::Csv => trimmed
            .split(',')
            .all(|part| parse_usize_env_value(part).is_ok()),
        KnobType::Json => serde_json::from_str::<serde_json::Value>(raw).is_ok(),
        KnobType::Float => trimmed.parse::<f64>().is_ok_and(f64::is_finite),
        KnobType::Tristate => trimmed.is_empty() || parse_bool_env_value(raw).is_ok(),
        KnobType::Path => !trimmed.is_empty(),
        KnobType::String | KnobType::Url => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_registry_parses_and_has_every_spec_knob() {
        let registry = Registry::parse(REGISTRY_TSV).unwrap();
        assert_eq!(registry.knobs().len(), 186);
        // Every FERRUM_* name the specification files read must be registered.
        for name in [
            "FERRUM_USE_VLLM_PAGED_ATTN",
            "FERRUM_FA2_DIRECT_FFI_SHIM",
            "FERRUM_SELECTED_LAYER_SPLIT_STAGES",
            "FERRUM_MOE_BATCH_THRESHOLD",
            "FERRUM_MOE_BATCHED_DECODE",
            "FERRUM_QWEN_UNIFIED_PREFILL",
            "FERRUM_UNIFIED_LAYER_PROF_MIN_SEQS",
            "FERRUM_METAL_PAGED_KV",
            "FERRUM_KV_CAPACITY",
            "FERRUM_SCHED_PROMPT_TOKEN_ESTIMATE",
        ] {
            assert!(registry.lookup(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn prefix_families_match_dynamic_suffixes() {
        let registry = Registry::global();
        assert!(registry.lookup("FERRUM_MATRIX_ARGS_C1").is_some());
        assert!(registry.lookup("FERRUM_MATRIX_ARGS_").is_some());
        assert!(registry.lookup("FERRUM_MATRIX").is_none());
    }

    #[test]
    fn unknown_names_get_the_closest_suggestion() {
        let err = canonical_value("FERRUM_PAGED_MAX_SEQ", "8").unwrap_err();
        assert_eq!(
            err,
            KnobError::Unknown {
                name: "FERRUM_PAGED_MAX_SEQ".into(),
                suggestion: Some("FERRUM_PAGED_MAX_SEQS".into())
            }
        );
        assert!(err
            .to_string()
            .contains("did you mean `FERRUM_PAGED_MAX_SEQS`?"));
        let err = canonical_value("FERRUM_ZZZZZZZZZZZZZZZZZZ", "1").unwrap_err();
        assert!(matches!(
            err,
            KnobError::Unknown {
                suggestion: None,
                ..
            }
        ));
        assert!(matches!(
            canonical_value("PAGED_MAX_SEQS", "8").unwrap_err(),
            KnobError::NotAKnob { .. }
        ));
    }

    #[test]
    fn values_are_never_rewritten_only_names_are_checked() {
        for raw in [
            "0",
            "abc",
            " 04 ",
            "true",
            "OFF",
            "",
            "\u{a0}8",
            "Overlapped",
        ] {
            assert_eq!(
                checked_value("FERRUM_MOE_BATCH_THRESHOLD", raw).unwrap(),
                raw
            );
            assert_eq!(canonical_value("FERRUM_PREFIX_CACHE", raw).unwrap(), raw);
        }
        assert!(checked_value("FERRUM_PAGED_MAX_SEQ", "8").is_err());
    }

    #[test]
    fn conformance_follows_ferrums_typed_parsers() {
        let kind = |name: &str| Registry::global().lookup(name).unwrap().kind.clone();
        let bool_kind = kind("FERRUM_PREFIX_CACHE");
        for ok in ["1", " TRUE ", "off", "Yes"] {
            assert!(conforms(&bool_kind, ok), "{ok:?}");
        }
        for bad in ["2", "", "maybe"] {
            assert!(!conforms(&bool_kind, bad), "{bad:?}");
        }
        let int = KnobType::Integer;
        assert!(conforms(&int, " 010 "));
        assert!(
            conforms(&int, "+5"),
            "Rust's usize parser takes a leading +"
        );
        assert!(!conforms(&int, "-1"));
        assert!(!conforms(&int, "99999999999999999999999"));
        assert!(!conforms(&KnobType::PositiveInteger, "0"));
        let mode = kind("FERRUM_LAYER_SPLIT_PIPELINE_MODE");
        assert!(conforms(&mode, " Overlapped"));
        assert!(!conforms(&mode, "serial"));
        assert!(conforms(&KnobType::Csv, "0, 1"));
        assert!(!conforms(&KnobType::Csv, "0,,1"));
        assert!(!conforms(&KnobType::Json, "[{"));
        assert!(conforms(&KnobType::Tristate, ""));
        assert!(!conforms(&KnobType::Path, "  "));
        assert!(!conforms(&KnobType::Float, "inf"));
    }

    #[test]
    fn engine_readers_are_exactly_the_knobs_the_reference_engine_models() {
        let registry = Registry::global();
        let registered_engine: std::collections::BTreeSet<&str> = registry
            .knobs()
            .iter()
            .filter(|k| {
                matches!(
                    k.readers,
                    KnobReaders::Engine | KnobReaders::ResolverAndEngine
                )
            })
            .map(|k| k.name.as_str())
            .collect();
        let modelled: std::collections::BTreeSet<&str> =
            crate::engine::reference::knobs::MODELLED_KNOBS
                .iter()
                .copied()
                // Read by Ferrum HEAD's scheduler but absent from Ferrum's registry.
                .filter(|name| *name != "FERRUM_SCHED_PREFILL_STEP_CHUNK")
                .collect();
        assert_eq!(registered_engine, modelled);
    }

    #[test]
    fn readers_are_recorded() {
        let registry = Registry::global();
        assert_eq!(
            registry
                .lookup("FERRUM_MOE_BATCH_THRESHOLD")
                .unwrap()
                .readers,
            KnobReaders::Engine
        );
        assert_eq!(
            registry.lookup("FERRUM_PAGED_MAX_SEQS").unwrap().readers,
            KnobReaders::ResolverAndEngine
        );
        assert_eq!(
            registry.lookup("FERRUM_VLLM_MOE").unwrap().readers,
            KnobReaders::Resolver
        );
        assert_eq!(
            registry.lookup("FERRUM_MOE_STREAMS").unwrap().readers,
            KnobReaders::None
        );
    }
}
