//! Ferrum's effective configuration, resolved exactly as Ferrum resolves it.
//!
//! - [`knobs`]: the registry of `FERRUM_*` knobs (name checks, registered types);
//! - [`misread`]: values Ferrum accepts but its runtime reads differently from how they look;
//! - [`runtime`]: the runtime snapshot (entries with source and effects);
//! - [`capabilities`]: model / hardware / workload profiles;
//! - [`resolver`]: decisions and validations;
//! - [`decision`]: decision-trace types and resolver errors;
//! - [`document`]: the effective-config document and decision trace.
//!
//! [`resolve_preset`] is the entry point the commands use: it layers knob values from their
//! sources (preset `[env]` → `config_file`, the harness's own environment → `env`, `--set` →
//! `cli`, a sweep cell → `script_case`; later sources win), remembers where each value came
//! from, and runs the resolver.
//!
//! Order matters (issue 7): **Ferrum first, byte for byte** — every value reaches the resolver
//! exactly as written (never trimmed, case-folded or re-spelled), so the documents and any
//! error are Ferrum's own; **then the harness's checks** — unknown `FERRUM_*` names are errors
//! (with the closest registered name), and values Ferrum's runtime would misread are returned
//! in [`Resolution::misread`] for the commands to warn about or refuse.

pub mod capabilities;
pub mod decision;
pub mod document;
pub mod knobs;
pub mod misread;
pub mod resolver;
pub mod runtime;

use std::fmt;

pub use capabilities::{
    CompiledKernelFeatures, HardwareCapabilities, ModelCapabilities, WorkloadProfile,
};
pub use decision::{AutoConfigDecision, AutoConfigError, AutoConfigSource};
pub use document::ResolvedFerrumConfig;
pub use misread::MisreadValue;
pub use resolver::FerrumConfigBuilder;
pub use runtime::{RuntimeConfigEntry, RuntimeConfigSnapshot, RuntimeConfigSource};

use crate::preset::Preset;
use knobs::{KnobError, Registry};

/// Where a knob value came from, for error notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnobOrigin {
    /// A preset's `[env]` table.
    Preset {
        /// Preset file.
        path: String,
        /// Line.
        line: usize,
    },
    /// The harness's own environment.
    Environment,
    /// `--set KEY=VALUE`.
    Cli,
    /// A sweep cell.
    SweepCell,
}

impl fmt::Display for KnobOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnobOrigin::Preset { path, line } => write!(f, "{path}:{line} ([env])"),
            KnobOrigin::Environment => {
                write!(f, "the environment (unset it or pass --no-inherit-env)")
            }
            KnobOrigin::Cli => write!(f, "--set"),
            KnobOrigin::SweepCell => write!(f, "the sweep cell"),
        }
    }
}

/// Knob values layered on top of a preset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--set KEY=VALUE` values (source `cli`).
    pub cli: Vec<(String, String)>,
    /// Sweep-cell values (source `script_case`).
    pub script_case: Vec<(String, String)>,
    /// Take `FERRUM_*` variables from the process environment (source `env`).
    pub inherit_env: bool,
    /// Hardware profile replacing the preset's (`--hardware`).
    pub hardware: Option<String>,
    /// Downgrade unknown knob names to warnings.
    pub allow_unknown_knobs: bool,
}

/// A successful resolution.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The resolved configuration.
    pub resolved: ResolvedFerrumConfig,
    /// Warnings to show the user (inherited environment knobs, unknown knobs let through).
    pub warnings: Vec<String>,
    /// Values Ferrum accepts but its runtime reads differently from how they look (`resolve`
    /// warns; `run`/`sweep` skip the cell unless `--allow-misread-values`).
    pub misread: Vec<MisreadValue>,
}

impl Resolution {
    /// One `warning:`-ready line per misread value.
    pub fn misread_warnings(&self) -> Vec<String> {
        self.misread.iter().map(ToString::to_string).collect()
    }
}

/// Resolution failures.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A knob name is not a registered `FERRUM_*` knob (checked after Ferrum's resolver).
    #[error("{}", knob_message(origin, error))]
    Knob {
        /// Where it came from.
        origin: KnobOrigin,
        /// What is wrong.
        error: KnobError,
    },
    /// `--hardware` names no profile.
    #[error("unknown hardware profile `{name}` for --hardware: expected one of {}", HardwareCapabilities::PROFILES.join(", "))]
    UnknownHardware {
        /// The name given.
        name: String,
    },
    /// The resolver refused the configuration; Display is exactly Ferrum's.
    #[error("{error}")]
    Resolver {
        /// Ferrum's error.
        error: AutoConfigError,
        /// Where the offending value came from.
        note: String,
    },
}

impl ResolveError {
    /// A second line for the user: where the offending value came from.
    pub fn note(&self) -> Option<&str> {
        match self {
            ResolveError::Resolver { note, .. } => Some(note),
            _ => None,
        }
    }
}

/// The hardware capabilities a preset resolves with (`--hardware` replaces the profile; the
/// preset's field overrides still apply).
pub fn hardware_for(
    preset: &Preset,
    hardware: Option<&str>,
) -> Result<HardwareCapabilities, ResolveError> {
    let name = hardware.unwrap_or(&preset.hardware_profile);
    let mut capabilities =
        HardwareCapabilities::profile(name).ok_or_else(|| ResolveError::UnknownHardware {
            name: name.to_string(),
        })?;
    preset.hardware_overrides.apply(&mut capabilities);
    Ok(capabilities)
}

/// Resolve a preset with overrides.
pub fn resolve_preset(preset: &Preset, overrides: &Overrides) -> Result<Resolution, ResolveError> {
    let environment: Vec<(String, String)> = if overrides.inherit_env {
        std::env::vars()
            .filter(|(key, _)| key.starts_with("FERRUM_"))
            .collect()
    } else {
        Vec::new()
    };
    resolve_with_environment(preset, overrides, &environment)
}

/// [`resolve_preset`] with an explicit environment (tests, and callers that snapshot it once).
pub fn resolve_with_environment(
    preset: &Preset,
    overrides: &Overrides,
    environment: &[(String, String)],
) -> Result<Resolution, ResolveError> {
    let hardware = hardware_for(preset, overrides.hardware.as_deref())?;
    let mut workload = WorkloadProfile::profile(&preset.workload_profile, &hardware)
        .unwrap_or_else(|| WorkloadProfile::serving_default_for_hardware(&hardware));
    preset.workload_overrides.apply(&mut workload);

    let mut warnings = Vec::new();
    let mut sorted_env = environment.to_vec();
    sorted_env.sort();
    if !sorted_env.is_empty() {
        let names: Vec<&str> = sorted_env.iter().map(|(k, _)| k.as_str()).collect();
        warnings.push(format!(
            "using FERRUM_* variables from the environment (source `env`): {}; pass --no-inherit-env to ignore them",
            names.join(", ")
        ));
    }
    let layers = knob_layers(preset, overrides, &sorted_env);

    // Ferrum first: its snapshot keeps `FERRUM_*` names only, values untouched.
    let snapshot = RuntimeConfigSnapshot::from_entries(
        layers
            .iter()
            .filter(|(name, _, _, _)| name.starts_with("FERRUM_"))
            .map(|(name, value, source, _)| RuntimeConfigEntry::new(name, value, *source)),
    );
    let resolved = FerrumConfigBuilder::new(snapshot)
        .with_model_capabilities(preset.model.clone())
        .with_hardware_capabilities(hardware)
        .with_workload_profile(workload)
        .resolve()
        .map_err(|error| {
            let note = origin_note(&error, &layers);
            ResolveError::Resolver { error, note }
        })?;

    // Then the harness's checks: names, then values the runtime would misread.
    warnings.extend(name_warnings(&layers, overrides.allow_unknown_knobs)?);
    let misread = misread::misread_values(&resolved)
        .into_iter()
        .map(|mut value| {
            if let Some((_, _, _, origin)) = layers
                .iter()
                .rev()
                .find(|(name, _, _, _)| *name == value.key)
            {
                value.origin = Some(origin.to_string());
            }
            value
        })
        .collect();
    Ok(Resolution {
        resolved,
        warnings,
        misread,
    })
}

/// Check every knob name a preset, the environment and `--set` would give the resolver
/// (`run`/`sweep` do this before planning, so a typo stops the whole sweep up front).
/// Returns the warnings for unknown names let through by `allow_unknown_knobs`.
pub fn check_knob_names(
    preset: &Preset,
    overrides: &Overrides,
    environment: &[(String, String)],
) -> Result<Vec<String>, ResolveError> {
    let layers = knob_layers(preset, overrides, environment);
    name_warnings(&layers, overrides.allow_unknown_knobs)
}

/// One knob value as written, with the source Ferrum records and where the user wrote it.
type Layer = (String, String, RuntimeConfigSource, KnobOrigin);

/// Every knob value in precedence order (later wins): preset `[env]`, environment, `--set`,
/// sweep cell — values exactly as written.
fn knob_layers(
    preset: &Preset,
    overrides: &Overrides,
    environment: &[(String, String)],
) -> Vec<Layer> {
    let mut layers: Vec<Layer> = preset
        .env
        .iter()
        .map(|knob| {
            (
                knob.name.clone(),
                knob.value.clone(),
                RuntimeConfigSource::ConfigFile,
                KnobOrigin::Preset {
                    path: preset.path.display().to_string(),
                    line: knob.line,
                },
            )
        })
        .collect();
    for (values, source, origin) in [
        (
            environment,
            RuntimeConfigSource::Env,
            KnobOrigin::Environment,
        ),
        (
            &overrides.cli[..],
            RuntimeConfigSource::Cli,
            KnobOrigin::Cli,
        ),
        (
            &overrides.script_case[..],
            RuntimeConfigSource::ScriptCase,
            KnobOrigin::SweepCell,
        ),
    ] {
        for (name, value) in values {
            layers.push((name.clone(), value.clone(), source, origin.clone()));
        }
    }
    layers
}

fn name_warnings(layers: &[Layer], allow_unknown_knobs: bool) -> Result<Vec<String>, ResolveError> {
    let registry = Registry::global();
    let mut warnings = Vec::new();
    for (name, _, _, origin) in layers {
        match registry.check_name(name) {
            Ok(_) => {}
            Err(KnobError::Unknown { .. }) if allow_unknown_knobs => warnings.push(format!(
                "unknown knob `{name}` from {origin} passed through unchecked"
            )),
            Err(error) => {
                return Err(ResolveError::Knob {
                    origin: origin.clone(),
                    error,
                })
            }
        }
    }
    Ok(warnings)
}

fn knob_message(origin: &KnobOrigin, error: &KnobError) -> String {
    match origin {
        KnobOrigin::Preset { path, line } => format!("{path}:{line}: {error}"),
        other => format!("{error} (from {other})"),
    }
}

fn origin_note(error: &AutoConfigError, layers: &[Layer]) -> String {
    let keys = error.offending_keys();
    let found: Vec<String> = keys
        .iter()
        .filter_map(|key| {
            layers
                .iter()
                .rev()
                .find(|(name, _, _, _)| name == key)
                .map(|(name, value, _, origin)| format!("{name}={value} came from {origin}"))
        })
        .collect();
    if found.is_empty() {
        let subject = keys.first().copied().unwrap_or("the value");
        format!(
            "note: {subject} was not set explicitly; it was derived from the model/hardware/workload profiles (set it in [env] or with --set, or choose another --hardware)"
        )
    } else {
        format!("note: {}", found.join("; "))
    }
}

#[cfg(test)]
mod resolver_tests;

#[cfg(test)]
mod ferrum_fixture_tests;

#[cfg(test)]
mod parity_tests;

#[cfg(test)]
mod parity_rows_tests;
