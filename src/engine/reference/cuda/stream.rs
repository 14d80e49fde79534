//! The weight stream on the device: which words of the seed's ChaCha8 stream each tensor takes,
//! in the CPU engine's generation order, and a host mirror of the device's block function.
//!
//! The CPU engine draws every tensor sequentially from one `ChaCha8Rng` (see `weights.rs`). ChaCha
//! is counter-based, so word `w` of the stream is word `w mod 16` of the block with counter
//! `w / 16`: the device computes any tensor independently from its first word, in parallel, and
//! gets the CPU's exact values. [`plan`] lists those first words; tests check them against the
//! CPU model and [`chacha8_block`] against `rand_chacha`.

use crate::engine::reference::spec::{Architecture, EngineSpec};

/// How a tensor's values come from its words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TensorKind {
    /// `WeightGen::int4(rows, cols, group, std)`: packed bytes, then scales, then zero points.
    Int4 {
        /// Output features.
        rows: usize,
        /// Input features.
        cols: usize,
        /// Quantisation group.
        group: usize,
        /// Target standard deviation (scales' base = std / 4.61).
        std: f32,
    },
    /// `n` values uniform in `[center - scale, center + scale)` (f32_vec: center 0; gains: 1).
    Uniform {
        /// Values.
        n: usize,
        /// Center.
        center: f32,
        /// Half-width.
        scale: f32,
    },
    /// `WeightGen::f16_vec(n, scale)`: `n` values uniform in `[-scale, scale)`, rounded to fp16
    /// (round to nearest even) and stored as fp16 on the device: the embedding and the LM head,
    /// which real GPTQ checkpoints (and Ferrum) keep in fp16.
    Fp16 {
        /// Values.
        n: usize,
        /// Half-width.
        scale: f32,
    },
}

impl TensorKind {
    /// Words of the stream the tensor consumes.
    pub fn words(&self) -> u64 {
        match *self {
            TensorKind::Int4 {
                rows, cols, group, ..
            } => {
                let bytes = (rows * cols / 2) as u64;
                let groups = (rows * (cols / group)) as u64;
                // One next_u64 (two words) per 8 packed bytes, even for a short last chunk.
                2 * bytes.div_ceil(8) + 2 * groups
            }
            TensorKind::Uniform { n, .. } | TensorKind::Fp16 { n, .. } => n as u64,
        }
    }

    /// Bytes the tensor occupies on the device (f32 values; fp16: 2 bytes a value; int4:
    /// packed + f32 scale and offset per group).
    pub fn device_bytes(&self) -> u64 {
        match *self {
            TensorKind::Int4 {
                rows, cols, group, ..
            } => (rows * cols / 2) as u64 + 8 * (rows * (cols / group)) as u64,
            TensorKind::Uniform { n, .. } => 4 * n as u64,
            TensorKind::Fp16 { n, .. } => 2 * n as u64,
        }
    }
}

/// One tensor of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// e.g. `layers.3.experts.17.down`.
    pub name: String,
    /// Values.
    pub kind: TensorKind,
    /// First word in the stream.
    pub first_word: u64,
}

/// Every tensor of `spec`'s model in generation order, with its first word.
pub fn plan(spec: &EngineSpec) -> Vec<Tensor> {
    let (h, hd, gs) = (spec.hidden_size, spec.head_dim, spec.quant_group_size);
    let q_dim = spec.num_heads * hd;
    let kv_dim = spec.num_kv_heads * hd;
    let lin_std = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
    let qwen3 = spec.architecture == Architecture::Qwen3Moe;
    let mut out: Vec<Tensor> = Vec::new();
    let mut word = 0u64;
    let mut push = |name: String, kind: TensorKind| {
        out.push(Tensor {
            name,
            kind,
            first_word: word,
        });
        word += kind.words();
    };
    let uniform = |n: usize, scale: f32| TensorKind::Uniform {
        n,
        center: 0.0,
        scale,
    };
    let gains = |n: usize| TensorKind::Uniform {
        n,
        center: 1.0,
        scale: 0.1,
    };
    let int4 = |rows: usize, cols: usize, std: f32| TensorKind::Int4 {
        rows,
        cols,
        group: gs,
        std,
    };
    let fp16 = |n: usize, scale: f32| TensorKind::Fp16 { n, scale };
    push("embed".into(), fp16(spec.vocab_size * h, 1.0));
    for l in 0..spec.num_layers {
        let p = |n: &str| format!("layers.{l}.{n}");
        push(p("input_norm"), gains(h));
        push(p("qkv"), int4(q_dim + 2 * kv_dim, h, lin_std(h)));
        if !qwen3 {
            push(p("qkv_bias"), uniform(q_dim + 2 * kv_dim, 0.1));
        } else {
            push(p("q_norm"), gains(hd));
            push(p("k_norm"), gains(hd));
        }
        push(p("o"), int4(h, q_dim, lin_std(q_dim)));
        push(p("post_norm"), gains(h));
        if qwen3 {
            let (i, e) = (spec.moe_intermediate_size, spec.num_experts);
            push(p("router"), uniform(e * h, 4.0 / (h as f32).sqrt()));
            for x in 0..e {
                push(
                    p(&format!("experts.{x}.gate_up")),
                    int4(2 * i, h, lin_std(h)),
                );
                push(p(&format!("experts.{x}.down")), int4(h, i, lin_std(i)));
            }
        } else {
            let i = spec.intermediate_size;
            push(p("mlp.gate_up"), int4(2 * i, h, lin_std(h)));
            push(p("mlp.down"), int4(h, i, lin_std(i)));
        }
    }
    push("final_norm".into(), gains(h));
    push(
        "lm_head".into(),
        fp16(spec.vocab_size * h, 3.0f32.sqrt() * lin_std(h)),
    );
    out
}

/// One ChaCha8 block (16 words) for `counter`, stream 0: the host mirror of `chacha8_block` in
/// `kernels/weights.cu`.
pub fn chacha8_block(key: &[u32; 8], counter: u64) -> [u32; 16] {
    let mut s = [0u32; 16];
    s[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    s[4..12].copy_from_slice(key);
    s[12] = counter as u32;
    s[13] = (counter >> 32) as u32;
    let mut x = s;
    let qr = |x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize| {
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(16);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(12);
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(8);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(7);
    };
    for _ in 0..4 {
        qr(&mut x, 0, 4, 8, 12);
        qr(&mut x, 1, 5, 9, 13);
        qr(&mut x, 2, 6, 10, 14);
        qr(&mut x, 3, 7, 11, 15);
        qr(&mut x, 0, 5, 10, 15);
        qr(&mut x, 1, 6, 11, 12);
        qr(&mut x, 2, 7, 8, 13);
        qr(&mut x, 3, 4, 9, 14);
    }
    std::array::from_fn(|i| x[i].wrapping_add(s[i]))
}

/// Word `w` of the stream of `key`.
pub fn stream_word(key: &[u32; 8], w: u64) -> u32 {
    chacha8_block(key, w / 16)[(w % 16) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reference::model::{Ffn, Model};
    use crate::engine::reference::spec::EngineTable;
    use crate::engine::reference::weights::WeightGen;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    #[test]
    fn host_mirror_of_the_device_block_function_is_rand_chacha() {
        let key = WeightGen::key(2026);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
        for w in 0..200u64 {
            assert_eq!(stream_word(&key, w), rng.next_u32(), "word {w}");
        }
        for w in [1_000_003u64, 77, 4_294_967_311] {
            rng.set_word_pos(u128::from(w));
            assert_eq!(stream_word(&key, w), rng.next_u32(), "word {w}");
        }
    }

    fn tiny(arch: &str) -> EngineSpec {
        let t = EngineTable {
            hidden_size: Some(64),
            num_layers: Some(2),
            num_heads: Some(4),
            num_kv_heads: Some(2),
            head_dim: Some(16),
            vocab_size: Some(96),
            quant_group_size: Some(32),
            weight_seed: Some(99),
            threads: Some(1),
            ..Default::default()
        };
        let mut t = t;
        if arch == "qwen3_moe" {
            t.num_experts = Some(4);
            t.experts_per_token = Some(2);
            t.moe_intermediate_size = Some(32);
        } else {
            t.intermediate_size = Some(96);
        }
        EngineSpec::resolve(Some(&t), arch).unwrap()
    }

    fn regenerate(
        spec: &EngineSpec,
        t: &Tensor,
    ) -> (Vec<f32>, Option<crate::engine::reference::int4::Int4Matrix>) {
        let mut g = WeightGen::at_word(spec.weight_seed, t.first_word);
        match t.kind {
            TensorKind::Uniform { n, center, scale } => {
                let v = if center == 1.0 {
                    g.gains(n, scale)
                } else {
                    g.f32_vec(n, scale)
                };
                (v, None)
            }
            TensorKind::Fp16 { n, scale } => (g.f16_vec(n, scale), None),
            TensorKind::Int4 {
                rows,
                cols,
                group,
                std,
            } => (Vec::new(), Some(g.int4(rows, cols, group, std))),
        }
    }

    #[test]
    fn plan_offsets_reproduce_every_cpu_tensor() {
        for arch in ["qwen3_moe", "qwen2"] {
            let spec = tiny(arch);
            let model = Model::new(&spec);
            let plan = plan(&spec);
            let find = |name: &str| plan.iter().find(|t| t.name == name).unwrap();
            assert_eq!(regenerate(&spec, find("embed")).0, model.embed);
            assert_eq!(regenerate(&spec, find("lm_head")).0, model.lm_head);
            assert_eq!(regenerate(&spec, find("final_norm")).0, model.final_norm);
            let l1 = &model.layers[1];
            assert_eq!(
                regenerate(&spec, find("layers.1.qkv")).1.unwrap(),
                l1.attn.qkv
            );
            assert_eq!(regenerate(&spec, find("layers.1.o")).1.unwrap(), l1.attn.o);
            assert_eq!(
                regenerate(&spec, find("layers.1.post_norm")).0,
                l1.post_norm
            );
            // The stream ends where the CPU generator ends.
            let last = plan.last().unwrap();
            let mut g = WeightGen::at_word(spec.weight_seed, last.first_word);
            let _ = g.f32_vec(spec.vocab_size * spec.hidden_size, 1.0);
            assert_eq!(g.word_pos(), last.first_word + last.kind.words());
            match &l1.ffn {
                Ffn::Moe(moe) => {
                    let down = regenerate(&spec, find("layers.1.experts.3.down")).1;
                    assert_eq!(down.unwrap(), moe.experts[3].down);
                    assert_eq!(regenerate(&spec, find("layers.1.router")).0, moe.router);
                }
                Ffn::Dense(_) => assert!(plan.iter().any(|t| t.name == "layers.1.mlp.down")),
            }
        }
    }

    #[test]
    fn real_qwen3_30b_weights_are_about_17_gib_on_the_device() {
        let spec = EngineSpec::resolve_for_device(
            None,
            "qwen3_moe",
            crate::engine::reference::spec::Device::Cuda,
        )
        .unwrap();
        let bytes: u64 = plan(&spec).iter().map(|t| t.kind.device_bytes()).sum();
        let gib = bytes as f64 / (1u64 << 30) as f64;
        assert!((15.0..20.0).contains(&gib), "{gib} GiB");
    }
}
