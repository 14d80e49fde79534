//! TOML presets: model + hardware + workload + knob values (+ the `[engine]`, `[run]` and
//! `[sweep]` tables that later stages read). Loading validates everything it can name a line
//! for: unknown keys or tables, unknown profiles, malformed byte sizes. `[env]` values are kept
//! exactly as written (a TOML string byte for byte; an integer in decimal; a boolean as `1`/`0`,
//! as Ferrum's own config file emits them): knob names and values are checked when the preset is
//! resolved, after Ferrum's resolver has seen them (see [`crate::config`]).
//!
//! ```toml
//! name = "m3"
//! description = "Qwen3-30B-A3B GPTQ-int4 on one RTX 4090 at c=32"
//! [model]
//! profile = "qwen3_30b_a3b_gptq_int4"
//! [hardware]
//! profile = "auto"
//! compiled_features = "m3_fast_path_without_fa2"
//! [workload]
//! profile = "m3_qwen3_30b_a3b_int4"
//! [env]
//! FERRUM_PAGED_MAX_SEQS = 32
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::capabilities::{
    CompiledKernelFeatures, HardwareCapabilities, ModelCapabilities, MoeCapabilities,
    WorkloadPriority, WorkloadProfile,
};
use crate::engine::factory::EngineConfig;
use crate::engine::reference::shape::{self, ModelShape};
use crate::sweep::{RunTable, SweepTable};

/// Preset loading errors; every message names the file (and line when known) and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    /// The file could not be read.
    #[error("cannot read preset `{path}`: {source}")]
    Read {
        /// Path given.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or table, or wrong value type.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// toml's message plus the fix.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and the fix.
        message: String,
    },
}

/// One knob value from the preset's `[env]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetKnob {
    /// Knob name.
    pub name: String,
    /// The value as written: a TOML string unchanged, an integer in decimal, a boolean as
    /// `1`/`0`.
    pub value: String,
    /// Line in the preset file.
    pub line: usize,
}

/// A loaded preset.
#[derive(Debug, Clone)]
pub struct Preset {
    /// Path it was loaded from.
    pub path: PathBuf,
    /// Exact file content (recorded in results and hashed).
    pub source_text: String,
    /// Short name used in result paths.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Model capabilities (profile plus field overrides).
    pub model: ModelCapabilities,
    /// Hardware profile name (`auto` when not given).
    pub hardware_profile: String,
    /// Hardware field overrides, applied on top of whichever profile is finally used.
    pub hardware_overrides: HardwareOverrides,
    /// Workload profile name (`serving_default` when not given).
    pub workload_profile: String,
    /// Workload field overrides.
    pub workload_overrides: WorkloadOverrides,
    /// `[env]` knob values in file order.
    pub env: Vec<PresetKnob>,
    /// `[engine]` table: the engine kind and its fields (reference dimensions, server command,
    /// endpoint URL), validated at load.
    pub engine: Option<EngineConfig>,
    /// `[run]` table: workload, load, repeats, seed, SLO.
    pub run: Option<RunTable>,
    /// `[sweep]` table: knob lists, load axes, exclusions.
    pub sweep: Option<SweepTable>,
}

/// Hardware fields a preset may override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardwareOverrides {
    backend: Option<String>,
    cuda_runtime: Option<String>,
    compute_capability: Option<String>,
    vram_bytes: Option<u64>,
    sm_count: Option<u32>,
    supported_dtypes: Option<Vec<String>>,
    supported_kv_dtypes: Option<Vec<String>>,
    graph_support: Option<bool>,
    compiled_features: Option<CompiledKernelFeatures>,
}

impl HardwareOverrides {
    /// Apply the overrides to a profile.
    pub fn apply(&self, hardware: &mut HardwareCapabilities) {
        set(&mut hardware.backend, &self.backend);
        set_some(&mut hardware.cuda_runtime, &self.cuda_runtime);
        set_some(&mut hardware.compute_capability, &self.compute_capability);
        set_some(&mut hardware.vram_bytes, &self.vram_bytes);
        set_some(&mut hardware.sm_count, &self.sm_count);
        set(&mut hardware.supported_dtypes, &self.supported_dtypes);
        set(&mut hardware.supported_kv_dtypes, &self.supported_kv_dtypes);
        set(&mut hardware.graph_support, &self.graph_support);
        set(&mut hardware.compiled_features, &self.compiled_features);
    }
}

/// Workload fields a preset may override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadOverrides {
    preset: Option<String>,
    serving_mode: Option<String>,
    target_concurrency: Option<usize>,
    prompt_length_class: Option<String>,
    output_length_class: Option<String>,
    priority: Option<WorkloadPriority>,
}

impl WorkloadOverrides {
    /// Apply the overrides to a profile.
    pub fn apply(&self, workload: &mut WorkloadProfile) {
        set_some(&mut workload.preset, &self.preset);
        set(&mut workload.serving_mode, &self.serving_mode);
        set(&mut workload.target_concurrency, &self.target_concurrency);
        set(&mut workload.prompt_length_class, &self.prompt_length_class);
        set(&mut workload.output_length_class, &self.output_length_class);
        set(&mut workload.priority, &self.priority);
    }
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *target = value.clone();
    }
}

fn set_some<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        target.clone_from(value);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    name: Spanned<String>,
    description: Option<String>,
    model: Option<ModelTable>,
    hardware: Option<HardwareTable>,
    workload: Option<WorkloadTable>,
    env: Option<BTreeMap<String, Spanned<toml::Value>>>,
    engine: Option<Spanned<toml::Table>>,
    run: Option<RunTable>,
    sweep: Option<SweepTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelTable {
    profile: Option<Spanned<String>>,
    architecture: Option<String>,
    quantization: Option<String>,
    max_context_len: Option<usize>,
    num_hidden_layers: Option<usize>,
    head_dim: Option<usize>,
    kv_heads: Option<usize>,
    estimated_weight_bytes: Option<Spanned<toml::Value>>,
    supported_dtypes: Option<Vec<String>>,
    graph_safe_moe: Option<bool>,
    moe: Option<Spanned<MoeTable>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoeTable {
    num_experts: Option<usize>,
    experts_per_token: Option<usize>,
    moe_intermediate_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HardwareTable {
    profile: Option<Spanned<String>>,
    backend: Option<String>,
    cuda_runtime: Option<String>,
    compute_capability: Option<String>,
    vram_bytes: Option<Spanned<toml::Value>>,
    sm_count: Option<u32>,
    supported_dtypes: Option<Vec<String>>,
    supported_kv_dtypes: Option<Vec<String>>,
    graph_support: Option<bool>,
    compiled_features: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadTable {
    profile: Option<Spanned<String>>,
    preset: Option<String>,
    serving_mode: Option<String>,
    target_concurrency: Option<usize>,
    prompt_length_class: Option<String>,
    output_length_class: Option<String>,
    priority: Option<WorkloadPriority>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureTable {
    cuda: Option<bool>,
    vllm_paged_attn: Option<bool>,
    vllm_moe_marlin: Option<bool>,
    cuda_graph: Option<bool>,
    greedy_argmax: Option<bool>,
    fa2_source: Option<bool>,
    fa2_direct_ffi: Option<bool>,
}

/// The file's bytes as text, or a one-line error naming the file, the line, the column and the
/// byte offset of the first invalid UTF-8 sequence (TOML files must be UTF-8; a preset saved as
/// Latin-1 or UTF-16 is the usual cause).
pub fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, PresetError> {
    String::from_utf8(bytes).map_err(|err| {
        let bytes = err.as_bytes();
        let at = err.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Columns count characters; the prefix up to `at` is valid UTF-8 by construction.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        let bad_len = err.utf8_error().error_len().unwrap_or(bytes.len() - at);
        let shown: Vec<String> = bytes[at..at + bad_len.clamp(1, 4)]
            .iter()
            .map(|b| format!("0x{b:02X}"))
            .collect();
        PresetError::Syntax {
            path: path.display().to_string(),
            line,
            column,
            message: format!(
                "not valid UTF-8: byte offset {at} holds {}; save the file as UTF-8",
                shown.join(" ")
            ),
        }
    })
}

impl Preset {
    /// Load and validate a preset file (knob names are checked when it is resolved).
    pub fn load(path: &Path) -> Result<Preset, PresetError> {
        let bytes = std::fs::read(path).map_err(|source| PresetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let text = utf8_text(path, bytes)?;
        Self::parse(path, &text)
    }

    /// Parse preset text (`path` is used in messages and recorded).
    pub fn parse(path: &Path, text: &str) -> Result<Preset, PresetError> {
        let ctx = Ctx { path, text };
        let file: PresetFile = toml::from_str(text).map_err(|err| ctx.syntax(&err))?;
        let name = file.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(ctx.invalid(
                file.name.span(),
                format!("invalid preset name `{name}`: use letters, digits, `_`, `-` or `.` (it names result directories)"),
            ));
        }
        let model = ctx.model(file.model)?;
        let (hardware_profile, hardware_overrides) = ctx.hardware(file.hardware)?;
        let (workload_profile, workload_overrides) = ctx.workload(file.workload)?;
        let mut env = Vec::new();
        let mut entries: Vec<_> = file.env.unwrap_or_default().into_iter().collect();
        entries.sort_by_key(|(_, value)| value.span().start);
        for (name, value) in entries {
            let line = ctx.line_of(value.span().start);
            let value = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                // Ferrum's config file emits booleans as "1"/"0".
                toml::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
                other => {
                    return Err(ctx.invalid(
                        value.span(),
                        format!(
                            "`{name}` in [env] has a {} value: use a string, integer or boolean",
                            other.type_str()
                        ),
                    ))
                }
            };
            env.push(PresetKnob { name, value, line });
        }
        let engine = match file.engine {
            Some(table) => {
                let mut config = EngineConfig::from_toml(table.get_ref())
                    .map_err(|message| ctx.invalid(table.span(), message))?;
                // `shape_from` reads a file, so it is applied here, where the preset's own
                // directory (the base of a relative path) is known.
                if let EngineConfig::Reference(t) = &mut config {
                    if let Some(from) = t.shape_from.clone() {
                        ModelShape::load(&shape::resolve_dir(&from, path))
                            .and_then(|s| s.apply(t, &model.architecture))
                            .map_err(|message| ctx.invalid(table.span(), message))?;
                    }
                }
                Some(config)
            }
            None => None,
        };
        Ok(Preset {
            path: path.to_path_buf(),
            source_text: text.to_string(),
            name,
            description: file.description.unwrap_or_default(),
            model,
            hardware_profile,
            hardware_overrides,
            workload_profile,
            workload_overrides,
            env,
            engine,
            run: file.run,
            sweep: file.sweep,
        })
    }

    /// Line of `key` inside `[table]` (for messages about tables read by later stages).
    pub fn line_of_table(&self, table: &str) -> usize {
        let header = format!("[{table}]");
        self.source_text
            .lines()
            .position(|line| line.trim() == header)
            .map_or(1, |index| index + 1)
    }
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.line_col(offset).0
    }

    fn syntax(&self, err: &toml::de::Error) -> PresetError {
        let (line, column) = err.span().map_or((1, 1), |span| self.line_col(span.start));
        let message = err.message().trim().replace('\n', " ");
        let fix = if message.contains("unknown field") {
            "; remove or rename the key (see README \"Presets\")"
        } else if message.contains("missing field") {
            "; add it"
        } else {
            ""
        };
        PresetError::Syntax {
            path: self.path.display().to_string(),
            line,
            column,
            message: format!("{message}{fix}"),
        }
    }

    fn invalid(&self, span: std::ops::Range<usize>, message: String) -> PresetError {
        PresetError::Invalid {
            path: self.path.display().to_string(),
            line: self.line_of(span.start),
            message,
        }
    }

    fn profile<T>(
        &self,
        what: &str,
        name: &Spanned<String>,
        lookup: impl Fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Result<T, PresetError> {
        lookup(name.get_ref()).ok_or_else(|| {
            self.invalid(
                name.span(),
                format!(
                    "unknown {what} profile `{}`: expected one of {}",
                    name.get_ref(),
                    names.join(", ")
                ),
            )
        })
    }

    fn model(&self, table: Option<ModelTable>) -> Result<ModelCapabilities, PresetError> {
        let Some(table) = table else {
            return Ok(ModelCapabilities::unknown());
        };
        let mut model = match &table.profile {
            Some(name) => self.profile(
                "model",
                name,
                ModelCapabilities::profile,
                ModelCapabilities::PROFILES,
            )?,
            None => ModelCapabilities::unknown(),
        };
        set(&mut model.architecture, &table.architecture);
        set_some(&mut model.quantization, &table.quantization);
        set_some(&mut model.max_context_len, &table.max_context_len);
        set_some(&mut model.num_hidden_layers, &table.num_hidden_layers);
        set_some(&mut model.head_dim, &table.head_dim);
        set_some(&mut model.kv_heads, &table.kv_heads);
        if let Some(bytes) = &table.estimated_weight_bytes {
            model.estimated_weight_bytes = Some(self.bytes("estimated_weight_bytes", bytes)?);
        }
        set(&mut model.supported_dtypes, &table.supported_dtypes);
        set(&mut model.graph_safe_moe, &table.graph_safe_moe);
        if let Some(moe) = &table.moe {
            let base = model.moe.clone();
            let spec = moe.get_ref();
            let num_experts = spec.num_experts.or(base.as_ref().map(|m| m.num_experts));
            let experts_per_token = spec
                .experts_per_token
                .or(base.as_ref().map(|m| m.experts_per_token));
            let (Some(num_experts), Some(experts_per_token)) = (num_experts, experts_per_token)
            else {
                return Err(self.invalid(
                    moe.span(),
                    "[model.moe] needs num_experts and experts_per_token (the profile has no MoE to inherit them from)".to_string(),
                ));
            };
            if experts_per_token == 0 || experts_per_token > num_experts {
                return Err(self.invalid(
                    moe.span(),
                    format!("[model.moe] experts_per_token = {experts_per_token} must be between 1 and num_experts = {num_experts}"),
                ));
            }
            model.moe = Some(MoeCapabilities {
                num_experts,
                experts_per_token,
                moe_intermediate_size: spec
                    .moe_intermediate_size
                    .or(base.and_then(|m| m.moe_intermediate_size)),
            });
        }
        Ok(model)
    }

    fn hardware(
        &self,
        table: Option<HardwareTable>,
    ) -> Result<(String, HardwareOverrides), PresetError> {
        let Some(table) = table else {
            return Ok(("auto".to_string(), HardwareOverrides::default()));
        };
        let profile = match &table.profile {
            Some(name) => {
                self.profile(
                    "hardware",
                    name,
                    HardwareCapabilities::profile,
                    HardwareCapabilities::PROFILES,
                )?;
                name.get_ref().clone()
            }
            None => "auto".to_string(),
        };
        let vram_bytes = match &table.vram_bytes {
            Some(value) => Some(self.bytes("vram_bytes", value)?),
            None => None,
        };
        let compiled_features = match &table.compiled_features {
            Some(value) => Some(self.features(value)?),
            None => None,
        };
        Ok((
            profile,
            HardwareOverrides {
                backend: table.backend,
                cuda_runtime: table.cuda_runtime,
                compute_capability: table.compute_capability,
                vram_bytes,
                sm_count: table.sm_count,
                supported_dtypes: table.supported_dtypes,
                supported_kv_dtypes: table.supported_kv_dtypes,
                graph_support: table.graph_support,
                compiled_features,
            },
        ))
    }

    fn workload(
        &self,
        table: Option<WorkloadTable>,
    ) -> Result<(String, WorkloadOverrides), PresetError> {
        let Some(table) = table else {
            return Ok(("serving_default".to_string(), WorkloadOverrides::default()));
        };
        let cpu = HardwareCapabilities::cpu(CompiledKernelFeatures::default());
        let profile = match &table.profile {
            Some(name) => {
                self.profile(
                    "workload",
                    name,
                    |n| WorkloadProfile::profile(n, &cpu),
                    WorkloadProfile::PROFILES,
                )?;
                name.get_ref().clone()
            }
            None => "serving_default".to_string(),
        };
        Ok((
            profile,
            WorkloadOverrides {
                preset: table.preset,
                serving_mode: table.serving_mode,
                target_concurrency: table.target_concurrency,
                prompt_length_class: table.prompt_length_class,
                output_length_class: table.output_length_class,
                priority: table.priority,
            },
        ))
    }

    fn features(
        &self,
        value: &Spanned<toml::Value>,
    ) -> Result<CompiledKernelFeatures, PresetError> {
        match value.get_ref() {
            toml::Value::String(name) => CompiledKernelFeatures::named(name).ok_or_else(|| {
                self.invalid(
                    value.span(),
                    format!(
                        "unknown compiled_features set `{name}`: expected one of {} or a table of booleans",
                        CompiledKernelFeatures::NAMES.join(", ")
                    ),
                )
            }),
            toml::Value::Table(table) => {
                let spec: FeatureTable = toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|err: toml::de::Error| {
                        self.invalid(
                            value.span(),
                            format!("[hardware.compiled_features]: {}", err.message().trim()),
                        )
                    })?;
                let flag = |v: Option<bool>| v.unwrap_or(false);
                Ok(CompiledKernelFeatures {
                    cuda: flag(spec.cuda),
                    vllm_paged_attn: flag(spec.vllm_paged_attn),
                    vllm_moe_marlin: flag(spec.vllm_moe_marlin),
                    cuda_graph: flag(spec.cuda_graph),
                    greedy_argmax: flag(spec.greedy_argmax),
                    fa2_source: flag(spec.fa2_source),
                    fa2_direct_ffi: flag(spec.fa2_direct_ffi),
                })
            }
            other => Err(self.invalid(
                value.span(),
                format!(
                    "compiled_features is a {}: use a set name such as \"m3_fast_path_without_fa2\" or a table of booleans",
                    other.type_str()
                ),
            )),
        }
    }

    fn bytes(&self, key: &str, value: &Spanned<toml::Value>) -> Result<u64, PresetError> {
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => Some(*n as u64),
            toml::Value::String(text) => parse_byte_size(text),
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.invalid(
                value.span(),
                format!(
                    "invalid byte size for `{key}`: use an integer number of bytes or a string like \"24GiB\", \"512MiB\" or \"40GB\""
                ),
            )
        })
    }
}

/// Parse `"24GiB"`, `"1.5 GiB"`, `"512MiB"`, `"40GB"` (decimal units), `"1024"` or `"1024B"`.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes.fract() == 0.0 && bytes < u64::MAX as f64)
        .then_some(bytes as u64)
}

#[cfg(test)]
mod tests;
