//! `[engine] shape_from = "path/to/model"`: the reference engine's dimensions read from a model
//! directory's Hugging Face `config.json` (Qwen3-MoE or Qwen2), so the reference engine and a
//! real engine serving that directory run the same shape without numbers copied by hand.
//!
//! Only dimensions are taken (widths, layer and head counts, experts, vocabulary, GPTQ group,
//! context length). The weights stay the reference engine's seeded synthetic int4 weights, and
//! nothing else in the directory is read. Explicit `[engine]` dimension keys may repeat a value
//! of the file but not contradict it: a silent override would defeat "the same shape", and a
//! smaller shape is had by dropping `shape_from` and writing the dimensions out.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::spec::EngineTable;

/// Dimensions read from a model directory's `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelShape {
    /// The `config.json` read (the preset's `shape_from` resolved, plus `config.json`).
    pub config_path: PathBuf,
    /// `model_type`: `qwen3_moe` or `qwen2`.
    pub architecture: String,
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `num_hidden_layers`.
    pub num_layers: usize,
    /// `num_attention_heads`.
    pub num_heads: usize,
    /// `num_key_value_heads` (defaults to `num_attention_heads`, as in transformers).
    pub num_kv_heads: usize,
    /// `head_dim`, or `hidden_size / num_attention_heads` when absent.
    pub head_dim: usize,
    /// `num_experts` (`qwen3_moe`).
    pub num_experts: Option<usize>,
    /// `num_experts_per_tok` (`qwen3_moe`).
    pub experts_per_token: Option<usize>,
    /// `moe_intermediate_size` (`qwen3_moe`).
    pub moe_intermediate_size: Option<usize>,
    /// `intermediate_size` (`qwen2`; a Qwen3-MoE's dense width is not used by any layer).
    pub intermediate_size: Option<usize>,
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `quantization_config.group_size` when the model is GPTQ-quantised.
    pub quant_group_size: Option<usize>,
    /// `max_position_embeddings`: the context length that bounds `FERRUM_KV_CAPACITY`.
    pub max_context_len: Option<usize>,
}

/// The largest value taken for any dimension: far above any real model (Qwen2.5-72B's MLP is
/// 29,568 wide, vocabularies ~152k), low enough that products of two cannot overflow.
const MAX_DIMENSION: u64 = 1 << 24;

/// The directory `shape_from` names, resolved against the preset's directory when relative.
pub fn resolve_dir(shape_from: &str, preset_path: &Path) -> PathBuf {
    let p = Path::new(shape_from);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let base = preset_path.parent().unwrap_or(Path::new(""));
    base.join(p)
}

impl ModelShape {
    /// Reads `<dir>/config.json` (or `dir` itself when it names a `.json` file). Errors name the
    /// file and the key and say what to fix.
    pub fn load(dir: &Path) -> Result<ModelShape, String> {
        let path = if dir.extension().is_some_and(|e| e == "json") && !dir.is_dir() {
            dir.to_path_buf()
        } else {
            dir.join("config.json")
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "[engine] shape_from: cannot read `{}`: {e} (shape_from names a model directory holding a Hugging Face config.json)",
                path.display()
            )
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "[engine] shape_from: `{}` is not valid JSON: {e}",
                path.display()
            )
        })?;
        Self::from_json(&doc, path)
    }

    /// Reads the dimensions from a parsed `config.json` (`path` is used in messages).
    pub fn from_json(doc: &Value, path: PathBuf) -> Result<ModelShape, String> {
        let file = path.display().to_string();
        let fail = |key: &str, what: String| -> String {
            format!("[engine] shape_from: `{file}` key `{key}` {what}")
        };
        let Some(obj) = doc.as_object() else {
            return Err(format!(
                "[engine] shape_from: `{file}` is not a JSON object (expected a Hugging Face config.json)"
            ));
        };
        let dim = |key: &str| -> Result<Option<usize>, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=MAX_DIMENSION).contains(&n) => Ok(Some(n as usize)),
                    _ => Err(fail(
                        key,
                        format!("is {v}: expected a whole number from 1 to {MAX_DIMENSION}"),
                    )),
                },
            }
        };
        let need = |key: &str| -> Result<usize, String> {
            dim(key)?.ok_or_else(|| fail(key, "is missing".to_string()))
        };
        let architecture = match obj.get("model_type").and_then(Value::as_str) {
            Some(t @ ("qwen3_moe" | "qwen2")) => t.to_string(),
            Some(other) => {
                return Err(fail(
                    "model_type",
                    format!("is `{other}`: the reference engine runs qwen3_moe or qwen2 models"),
                ))
            }
            None => return Err(fail("model_type", "is missing or not a string".to_string())),
        };
        let moe = architecture == "qwen3_moe";
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        let head_dim = match dim("head_dim")? {
            Some(h) => h,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(fail(
                    "head_dim",
                    format!("is missing and hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"),
                ))
            }
        };
        let quant_group_size = match obj.get("quantization_config") {
            None | Some(Value::Null) => None,
            Some(q) => match q.get("group_size") {
                None | Some(Value::Null) => None,
                Some(g) => match g.as_u64() {
                    Some(n) if (1..=MAX_DIMENSION).contains(&n) => Some(n as usize),
                    _ => {
                        return Err(fail(
                            "quantization_config.group_size",
                            format!("is {g}: the reference engine needs a positive GPTQ group size (per-channel -1 is not modelled); set [engine] quant_group_size after removing shape_from"),
                        ))
                    }
                },
            },
        };
        if moe {
            // The reference engine's layers are all MoE; a model with dense layers in between
            // would run a different shape.
            if let Some(step) = dim("decoder_sparse_step")? {
                if step != 1 {
                    return Err(fail(
                        "decoder_sparse_step",
                        format!(
                            "is {step}: the reference engine makes every layer an MoE layer (1)"
                        ),
                    ));
                }
            }
            if let Some(layers) = obj.get("mlp_only_layers").and_then(Value::as_array) {
                if !layers.is_empty() {
                    return Err(fail(
                        "mlp_only_layers",
                        "is not empty: the reference engine makes every layer an MoE layer"
                            .to_string(),
                    ));
                }
            }
        }
        Ok(ModelShape {
            architecture,
            hidden_size,
            num_layers: need("num_hidden_layers")?,
            num_heads,
            num_kv_heads: dim("num_key_value_heads")?.unwrap_or(num_heads),
            head_dim,
            num_experts: if moe {
                Some(need("num_experts")?)
            } else {
                None
            },
            experts_per_token: if moe {
                Some(need("num_experts_per_tok")?)
            } else {
                None
            },
            moe_intermediate_size: if moe {
                Some(need("moe_intermediate_size")?)
            } else {
                None
            },
            intermediate_size: if moe {
                None
            } else {
                Some(need("intermediate_size")?)
            },
            vocab_size: need("vocab_size")?,
            quant_group_size,
            max_context_len: dim("max_position_embeddings")?,
            config_path: path,
        })
    }

    /// The `(key, value)` pairs this shape sets in `[engine]`, by `[engine]` key name.
    pub fn dimensions(&self) -> Vec<(&'static str, usize)> {
        let mut out = vec![
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
        ];
        let optional = [
            ("num_experts", self.num_experts),
            ("experts_per_token", self.experts_per_token),
            ("moe_intermediate_size", self.moe_intermediate_size),
            ("intermediate_size", self.intermediate_size),
            ("quant_group_size", self.quant_group_size),
        ];
        out.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        out
    }

    /// Fills `table`'s dimensions from this shape. An explicit key equal to the file's value is
    /// accepted; a different one is an error naming both (decided: the file wins nowhere
    /// silently, and neither does the table). `model_architecture` is the preset's
    /// `[model] architecture`, which must be the file's `model_type`.
    pub fn apply(self, table: &mut EngineTable, model_architecture: &str) -> Result<(), String> {
        let file = self.config_path.display().to_string();
        if model_architecture != self.architecture {
            return Err(format!(
                "[engine] shape_from: `{file}` has model_type `{}` but [model] architecture is `{model_architecture}`: set [model] architecture = \"{}\" (the resolver and the engine must see the same model)",
                self.architecture, self.architecture
            ));
        }
        for (key, value) in self.dimensions() {
            let slot = match key {
                "hidden_size" => &mut table.hidden_size,
                "num_layers" => &mut table.num_layers,
                "num_heads" => &mut table.num_heads,
                "num_kv_heads" => &mut table.num_kv_heads,
                "head_dim" => &mut table.head_dim,
                "vocab_size" => &mut table.vocab_size,
                "num_experts" => &mut table.num_experts,
                "experts_per_token" => &mut table.experts_per_token,
                "moe_intermediate_size" => &mut table.moe_intermediate_size,
                "intermediate_size" => &mut table.intermediate_size,
                "quant_group_size" => &mut table.quant_group_size,
                other => unreachable!("dimension `{other}` has no [engine] key"),
            };
            match *slot {
                Some(explicit) if explicit != value => {
                    return Err(format!(
                        "[engine] {key} = {explicit} contradicts shape_from: `{file}` gives {key} = {value}: remove {key} from [engine] (or remove shape_from and write every dimension)"
                    ))
                }
                _ => *slot = Some(value),
            }
        }
        table.shape = Some(self);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tiny_moe() -> Value {
        json!({
            "model_type": "qwen3_moe", "hidden_size": 128, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 32, "vocab_size": 848, "max_position_embeddings": 4096,
            "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 128,
            "decoder_sparse_step": 1, "mlp_only_layers": [],
            "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}
        })
    }

    fn shape(doc: &Value) -> Result<ModelShape, String> {
        ModelShape::from_json(doc, PathBuf::from("/m/config.json"))
    }

    #[test]
    fn qwen3_moe_config_fills_every_dimension() {
        let s = shape(&tiny_moe()).unwrap();
        let mut t = EngineTable::default();
        s.apply(&mut t, "qwen3_moe").unwrap();
        assert_eq!(
            (t.hidden_size, t.num_layers, t.num_heads, t.num_kv_heads),
            (Some(128), Some(2), Some(4), Some(2))
        );
        assert_eq!(
            (t.head_dim, t.num_experts, t.experts_per_token),
            (Some(32), Some(4), Some(2))
        );
        assert_eq!(
            (
                t.moe_intermediate_size,
                t.vocab_size,
                t.quant_group_size,
                t.intermediate_size
            ),
            (Some(128), Some(848), Some(128), None)
        );
        assert_eq!(t.shape.as_ref().unwrap().max_context_len, Some(4096));
    }

    #[test]
    fn qwen2_config_derives_head_dim_and_defaults_kv_heads() {
        let doc = json!({
            "model_type": "qwen2", "hidden_size": 256, "intermediate_size": 896,
            "num_hidden_layers": 4, "num_attention_heads": 8, "vocab_size": 4864
        });
        let s = shape(&doc).unwrap();
        assert_eq!((s.head_dim, s.num_kv_heads), (32, 8));
        assert_eq!(
            (s.intermediate_size, s.num_experts, s.quant_group_size),
            (Some(896), None, None)
        );
        let mut t = EngineTable::default();
        s.apply(&mut t, "qwen2").unwrap();
        assert_eq!(
            (t.intermediate_size, t.num_experts, t.quant_group_size),
            (Some(896), None, None)
        );
    }

    #[test]
    fn equal_explicit_keys_pass_and_different_ones_name_both() {
        let mut t = EngineTable {
            num_layers: Some(2),
            weight_seed: Some(7),
            ..Default::default()
        };
        shape(&tiny_moe())
            .unwrap()
            .apply(&mut t, "qwen3_moe")
            .unwrap();
        assert_eq!(t.weight_seed, Some(7));
        let mut t = EngineTable {
            num_layers: Some(1),
            ..Default::default()
        };
        let err = shape(&tiny_moe())
            .unwrap()
            .apply(&mut t, "qwen3_moe")
            .unwrap_err();
        assert!(
            err.contains("num_layers = 1 contradicts shape_from")
                && err.contains("/m/config.json")
                && err.contains("num_layers = 2"),
            "{err}"
        );
        let err = shape(&tiny_moe())
            .unwrap()
            .apply(&mut EngineTable::default(), "qwen2")
            .unwrap_err();
        assert!(
            err.contains("model_type `qwen3_moe`") && err.contains("[model] architecture"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_name_the_file_and_key() {
        let with = |key: &str, v: Value| {
            let mut d = tiny_moe();
            d[key] = v;
            shape(&d).unwrap_err()
        };
        let without = |key: &str| {
            let mut d = tiny_moe();
            d.as_object_mut().unwrap().remove(key);
            shape(&d).unwrap_err()
        };
        let e = without("num_experts");
        assert!(
            e.contains("/m/config.json") && e.contains("`num_experts` is missing"),
            "{e}"
        );
        assert!(with("hidden_size", json!(-3)).contains("`hidden_size` is -3"));
        assert!(with("hidden_size", json!("big")).contains("expected a whole number"));
        assert!(with("vocab_size", json!(1u64 << 40)).contains("`vocab_size`"));
        assert!(with("model_type", json!("llama")).contains("is `llama`"));
        assert!(with("decoder_sparse_step", json!(2)).contains("`decoder_sparse_step` is 2"));
        assert!(with("mlp_only_layers", json!([0])).contains("`mlp_only_layers`"));
        assert!(with("quantization_config", json!({"group_size": -1}))
            .contains("`quantization_config.group_size` is -1"));
        let mut d = tiny_moe();
        d.as_object_mut().unwrap().remove("head_dim");
        assert_eq!(shape(&d).unwrap().head_dim, 32);
        assert!(shape(&json!([1]))
            .unwrap_err()
            .contains("not a JSON object"));
    }

    #[test]
    fn load_reads_a_directory_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelShape::load(dir.path()).unwrap_err();
        assert!(
            err.contains("cannot read") && err.contains("config.json"),
            "{err}"
        );
        std::fs::write(dir.path().join("config.json"), "{ nope").unwrap();
        assert!(ModelShape::load(dir.path())
            .unwrap_err()
            .contains("is not valid JSON"));
        std::fs::write(dir.path().join("config.json"), tiny_moe().to_string()).unwrap();
        assert_eq!(ModelShape::load(dir.path()).unwrap().hidden_size, 128);
        assert_eq!(
            resolve_dir("m", Path::new("/p/presets/x.toml")),
            PathBuf::from("/p/presets/m")
        );
        assert_eq!(
            resolve_dir("/abs", Path::new("x.toml")),
            PathBuf::from("/abs")
        );
    }
}
