//! `ferrum-bench resolve`: print the effective configuration, decision trace or a summary.
//!
//! stdout is exactly what Ferrum writes for the same inputs (values reach the resolver as
//! written); a rejection prints Ferrum's error first. Unknown knob names are errors after that,
//! and values Ferrum's runtime would misread are `warning:` lines on stderr (exit 0).

use std::path::PathBuf;

use clap::ValueEnum;

use crate::config::{resolve_preset, Overrides, ResolvedFerrumConfig};
use crate::error::{Error, EXIT_OK};
use crate::preset::Preset;

use super::common::ResolveOpts;

/// Output formats of `resolve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The effective-config document (Ferrum's `effective_config.json`).
    Json,
    /// The decision trace (Ferrum's `decision_trace.jsonl`).
    Jsonl,
    /// A readable summary.
    Table,
}

/// Options of `resolve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset file (TOML).
    pub preset: PathBuf,
    #[command(flatten)]
    resolve: ResolveOpts,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Run `resolve`.
pub fn run(args: Args) -> Result<i32, Error> {
    let opts = args.resolve;
    let preset = Preset::load(&args.preset)?;
    let resolution = resolve_preset(
        &preset,
        &Overrides {
            cli: opts.set,
            script_case: Vec::new(),
            inherit_env: !opts.no_inherit_env,
            hardware: opts.hardware,
            allow_unknown_knobs: opts.allow_unknown_knobs,
        },
    )?;
    // Ferrum's documents go to stdout unchanged; the harness's findings go to stderr.
    let mut warnings = resolution.warnings.clone();
    warnings.extend(resolution.misread_warnings());
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    let resolved = &resolution.resolved;
    let text = match args.format {
        Format::Json => resolved.effective_config_json(),
        Format::Jsonl => resolved.decision_trace_jsonl(),
        Format::Table => summary(resolved),
    };
    super::print_stdout(&text)?;
    Ok(EXIT_OK)
}

fn summary(resolved: &ResolvedFerrumConfig) -> String {
    let doc = resolved.effective_config_document();
    let mut out = String::new();
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    out.push_str(&format!(
        "preset {}  backend {}  model {}  env_hash {}\n\n",
        show(&doc["preset"]),
        show(&doc["backend"]),
        show(&doc["model_capabilities"]["architecture"]),
        show(&doc["env_hash"]),
    ));
    let width = resolved
        .decisions
        .iter()
        .map(|d| d.selection.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let selected_width = resolved
        .decisions
        .iter()
        .map(|d| d.selected.len())
        .max()
        .unwrap_or(8)
        .max(8);
    out.push_str(&format!(
        "{:<width$}  {:<selected_width$}  {:<19}  source_key\n",
        "selection", "selected", "source"
    ));
    for d in &resolved.decisions {
        let source = serde_json::to_value(d.source)
            .map(|v| show(&v))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<width$}  {:<selected_width$}  {:<19}  {}\n",
            d.selection,
            d.selected,
            source,
            d.source_key.as_deref().unwrap_or("-")
        ));
    }
    out.push_str("\nentries:\n");
    for entry in &resolved.runtime_config.entries {
        out.push_str(&format!(
            "  {}={}  ({})\n",
            entry.key,
            entry.effective_value,
            entry.source.as_str()
        ));
    }
    out.push_str(&format!(
        "\nadmission: max_sequences {}  kv_block_count {}  kv_capacity_tokens {}  max_batched_tokens {}  policy {}\n",
        show(&doc["admission"]["max_sequences"]),
        show(&doc["admission"]["kv_block_count"]),
        show(&doc["admission"]["kv_capacity_tokens"]),
        show(&doc["admission"]["max_batched_tokens"]),
        show(&doc["admission"]["scheduler_policy"]),
    ));
    out
}
