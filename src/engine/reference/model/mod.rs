//! The decoder models (`qwen3_moe`, `qwen2`) and the forward pass over paged KV.
//!
//! A forward *call* runs a set of items (one per sequence: a chunk of prompt tokens or one decode
//! token, at a start position, with the sequence's block table) through a range of layers. The
//! scheduler decides how a step is cut into calls — one batched call, one call per sequence,
//! unified vs serial prefill — and that choice is what the knobs change: a call reads (and
//! dequantises) every weight it uses once, whatever its number of rows.

pub mod attention;
pub mod norm;
pub mod qwen2;
pub mod qwen3_moe;
pub mod rope;

use std::ops::Range;

use half::f16;

use super::int4::{matmul_f32, Int4Matrix};
use super::kv::LayerKv;
use super::spec::{Architecture, Dtype, EngineSpec};
use super::weights::WeightGen;
use rope::Rope;

/// Attention weights of one layer.
#[derive(Debug, Clone)]
pub struct AttnWeights {
    /// Pre-attention RMSNorm gain.
    pub input_norm: Vec<f32>,
    /// Fused q|k|v projection, `(nq + 2·nkv)·head_dim × hidden`.
    pub qkv: Int4Matrix,
    /// QKV bias (qwen2).
    pub qkv_bias: Option<Vec<f32>>,
    /// Per-head q RMSNorm gain (qwen3_moe).
    pub q_norm: Option<Vec<f32>>,
    /// Per-head k RMSNorm gain (qwen3_moe).
    pub k_norm: Option<Vec<f32>>,
    /// Output projection, `hidden × nq·head_dim`.
    pub o: Int4Matrix,
}

/// Feed-forward block of one layer.
#[derive(Debug, Clone)]
pub enum Ffn {
    /// Routed experts.
    Moe(qwen3_moe::MoeWeights),
    /// Dense SwiGLU.
    Dense(qwen2::DenseMlp),
}

/// One decoder layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Attention.
    pub attn: AttnWeights,
    /// Pre-FFN RMSNorm gain.
    pub post_norm: Vec<f32>,
    /// Feed-forward.
    pub ffn: Ffn,
}

/// A whole model with synthetic weights.
#[derive(Debug, Clone)]
pub struct Model {
    /// Dimensions.
    pub spec: EngineSpec,
    /// Token embeddings, `vocab × hidden`: fp16 values (as GPTQ checkpoints keep them, and as the
    /// CUDA engine stores them) held in f32.
    pub embed: Vec<f32>,
    /// Layers.
    pub layers: Vec<Layer>,
    /// Final RMSNorm gain.
    pub final_norm: Vec<f32>,
    /// Output head, `vocab × hidden`: fp16 values (as GPTQ checkpoints keep them, and as the CUDA
    /// engine stores them) held in f32.
    pub lm_head: Vec<f32>,
    /// RoPE tables.
    pub rope: Rope,
}

/// One sequence's part of a forward call.
#[derive(Debug, Clone, PartialEq)]
pub struct FwdItem {
    /// The sequence's block table.
    pub blocks: Vec<u32>,
    /// Position of the first token.
    pub start_pos: usize,
    /// Tokens to run (prompt chunk, or the one token being decoded).
    pub tokens: Vec<u32>,
    /// Whether logits of the last token are needed (decode, or final prompt chunk).
    pub want_logits: bool,
}

/// How routed experts are evaluated in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoePath {
    /// Tokens grouped by expert: each routed expert's weights read once for all its tokens.
    Grouped,
    /// Each token runs its own experts (weights re-read per token).
    PerToken,
}

/// A forward call.
#[derive(Debug, Clone, PartialEq)]
pub struct FwdCall {
    /// Items (at most one per sequence).
    pub items: Vec<FwdItem>,
    /// MoE evaluation.
    pub moe: MoePath,
}

impl FwdCall {
    /// `(item, position)` of every row, in row order.
    pub fn rows(&self) -> Vec<(usize, usize)> {
        self.items
            .iter()
            .enumerate()
            .flat_map(|(i, it)| (0..it.tokens.len()).map(move |j| (i, it.start_pos + j)))
            .collect()
    }

    /// Total rows (tokens).
    pub fn num_rows(&self) -> usize {
        self.items.iter().map(|it| it.tokens.len()).sum()
    }
}

/// What a forward call observed about routing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FwdStats {
    /// Per layer (absolute index): which experts received tokens.
    pub experts: Vec<Vec<bool>>,
    /// Expert weight loads: distinct experts per grouped call, one per (token, expert) otherwise.
    pub expert_loads: u64,
}

impl FwdStats {
    /// Merges another call's stats.
    pub fn merge(&mut self, other: &FwdStats) {
        if self.experts.len() < other.experts.len() {
            self.experts.resize(other.experts.len(), Vec::new());
        }
        for (mine, theirs) in self.experts.iter_mut().zip(&other.experts) {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), false);
            }
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m |= *t;
            }
        }
        self.expert_loads += other.expert_loads;
    }

    /// Distinct experts per MoE layer, averaged over layers (0 for dense models).
    pub fn mean_distinct_experts(&self) -> f64 {
        let layers: Vec<usize> = self
            .experts
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| e.iter().filter(|b| **b).count())
            .collect();
        if layers.is_empty() {
            0.0
        } else {
            layers.iter().sum::<usize>() as f64 / layers.len() as f64
        }
    }
}

impl Model {
    /// Generates a model for `spec` from its weight seed.
    pub fn new(spec: &EngineSpec) -> Model {
        let mut g = WeightGen::new(spec.weight_seed);
        let (h, hd, gs) = (spec.hidden_size, spec.head_dim, spec.quant_group_size);
        let q_dim = spec.num_heads * hd;
        let kv_dim = spec.num_kv_heads * hd;
        let embed = g.f16_vec(spec.vocab_size * h, 1.0);
        let lin_std = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
        let layers = (0..spec.num_layers)
            .map(|_| {
                let qwen3 = spec.architecture == Architecture::Qwen3Moe;
                let attn = AttnWeights {
                    input_norm: g.gains(h, 0.1),
                    qkv: g.int4(q_dim + 2 * kv_dim, h, gs, lin_std(h)),
                    qkv_bias: (!qwen3).then(|| g.f32_vec(q_dim + 2 * kv_dim, 0.1)),
                    q_norm: qwen3.then(|| g.gains(hd, 0.1)),
                    k_norm: qwen3.then(|| g.gains(hd, 0.1)),
                    o: g.int4(h, q_dim, gs, lin_std(q_dim)),
                };
                let post_norm = g.gains(h, 0.1);
                let ffn = match spec.architecture {
                    Architecture::Qwen3Moe => {
                        Ffn::Moe(qwen3_moe::MoeWeights::generate(&mut g, spec))
                    }
                    Architecture::Qwen2 => Ffn::Dense(qwen2::DenseMlp::generate(&mut g, spec)),
                };
                Layer {
                    attn,
                    post_norm,
                    ffn,
                }
            })
            .collect();
        let final_norm = g.gains(h, 0.1);
        let lm_head = g.f16_vec(spec.vocab_size * h, 3.0f32.sqrt() * lin_std(h));
        Model {
            spec: spec.clone(),
            embed,
            layers,
            final_norm,
            lm_head,
            rope: Rope::new(hd, spec.rope_theta),
        }
    }

    /// Bytes of all weights (what a full pass streams).
    pub fn weight_bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        let mut total = (self.embed.len() + self.lm_head.len() + self.final_norm.len()) * f;
        for l in &self.layers {
            total += l.attn.qkv.bytes() + l.attn.o.bytes();
            total += (l.attn.input_norm.len() + l.post_norm.len()) * f;
            total += l.attn.qkv_bias.as_ref().map_or(0, |b| b.len() * f);
            total += match &l.ffn {
                Ffn::Moe(m) => m.bytes(),
                Ffn::Dense(d) => d.bytes(),
            };
        }
        total
    }

    /// Embeddings of every row of `call` (`rows × hidden`).
    pub fn embed_call(&self, call: &FwdCall) -> Vec<f32> {
        let h = self.spec.hidden_size;
        let mut x = Vec::with_capacity(call.num_rows() * h);
        for it in &call.items {
            for t in &it.tokens {
                let t = *t as usize % self.spec.vocab_size;
                x.extend_from_slice(&self.embed[t * h..(t + 1) * h]);
            }
        }
        self.store_activations(&mut x);
        x
    }

    /// Runs layers `range` over `x` (`rows × hidden`) in place. `kv[i]` is the pool of layer
    /// `range.start + i`.
    pub fn run_layers(
        &self,
        range: Range<usize>,
        kv: &mut [LayerKv],
        call: &FwdCall,
        x: &mut [f32],
        stats: &mut FwdStats,
    ) {
        let h = self.spec.hidden_size;
        let rows = call.rows();
        let m = rows.len();
        if stats.experts.len() < self.spec.num_layers {
            stats.experts.resize(self.spec.num_layers, Vec::new());
        }
        for (li, pool) in range.zip(kv.iter_mut()) {
            let layer = &self.layers[li];
            let mut hn = x.to_vec();
            norm::rms_norm_rows(&mut hn, h, &layer.attn.input_norm, self.spec.rms_eps);
            let attn_out = attention::attention_block(self, &layer.attn, pool, call, &rows, &hn);
            for (a, b) in x.iter_mut().zip(&attn_out) {
                *a += b;
            }
            let mut hn = x.to_vec();
            norm::rms_norm_rows(&mut hn, h, &layer.post_norm, self.spec.rms_eps);
            let ffn_out = match &layer.ffn {
                Ffn::Moe(moe) => {
                    let (out, used, loads) = moe.forward(&self.spec, &hn, m, call.moe);
                    stats.experts[li] = used;
                    stats.expert_loads += loads;
                    out
                }
                Ffn::Dense(mlp) => mlp.forward(&hn, m),
            };
            for (a, b) in x.iter_mut().zip(&ffn_out) {
                *a += b;
            }
            self.store_activations(x);
        }
    }

    /// Logits of the last row of every item that wants them, in item order.
    pub fn logits(&self, call: &FwdCall, x: &[f32]) -> Vec<Vec<f32>> {
        let h = self.spec.hidden_size;
        let v = self.spec.vocab_size;
        let mut sel = Vec::new();
        let mut row = 0;
        for it in &call.items {
            row += it.tokens.len();
            if it.want_logits {
                sel.extend_from_slice(&x[(row - 1) * h..row * h]);
            }
        }
        let n = sel.len() / h;
        norm::rms_norm_rows(&mut sel, h, &self.final_norm, self.spec.rms_eps);
        let mut out = vec![0f32; n * v];
        matmul_f32(&sel, n, &self.lm_head, v, h, &mut out);
        out.chunks_exact(v).map(<[f32]>::to_vec).collect()
    }

    /// Rounds activations to the storage dtype (`fp16` keeps f16 precision between layers).
    fn store_activations(&self, x: &mut [f32]) {
        if self.spec.dtype == Dtype::Fp16 {
            for v in x.iter_mut() {
                *v = f16::from_f32(*v).to_f32();
            }
        }
    }

    /// Convenience: a whole forward over all layers (single stage).
    pub fn forward(
        &self,
        kv: &mut [LayerKv],
        call: &FwdCall,
        stats: &mut FwdStats,
    ) -> Vec<Vec<f32>> {
        let mut x = self.embed_call(call);
        self.run_layers(0..self.spec.num_layers, kv, call, &mut x, stats);
        self.logits(call, &x)
    }
}
