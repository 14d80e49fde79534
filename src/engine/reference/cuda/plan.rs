//! Host-side plan of a CUDA forward call, computed without a device so it is unit tested on CPU
//! machines: which model shapes the kernels support, the one `i32` upload a call needs (token
//! ids, positions, KV slots, block tables, rows that want logits, MoE pair maps), the workspace
//! buffers and their sizes, the launch shape of every kernel of a call, and the host mirror of
//! the device's expert grouping (`moe_count` + `moe_offsets`).

use std::ops::Range;

use super::launch::{self, Shape};
use crate::engine::reference::kv::{slot, BLOCK_SIZE};
use crate::engine::reference::model::{FwdCall, MoePath};
use crate::engine::reference::spec::{Architecture, Dtype, EngineSpec};

/// `MAX_HEAD_DIM` in `kernels/attention.cu`.
pub const MAX_HEAD_DIM: usize = 256;
/// `MAX_TOPK` in `kernels/moe.cu`.
pub const MAX_TOPK: usize = 16;
/// Experts `moe_offsets` (one block of 1024 threads) can scan.
pub const MAX_EXPERTS: usize = 1024;

/// Why the CUDA kernels cannot run `spec` with a pool of `pool_blocks` blocks (`Ok` when they can).
pub fn check_supported(spec: &EngineSpec, pool_blocks: usize) -> Result<(), String> {
    let bad = |what: String| Err(format!("the CUDA backend cannot run this model: {what}"));
    if spec.head_dim > MAX_HEAD_DIM || spec.head_dim % 2 != 0 {
        return bad(format!(
            "head_dim {} must be even and at most {MAX_HEAD_DIM}",
            spec.head_dim
        ));
    }
    if spec.num_kv_heads == 0 || spec.num_heads % spec.num_kv_heads != 0 {
        return bad(format!(
            "num_heads {} is not a multiple of num_kv_heads {}",
            spec.num_heads, spec.num_kv_heads
        ));
    }
    if spec.architecture == Architecture::Qwen3Moe
        && (spec.num_experts > MAX_EXPERTS || spec.experts_per_token > MAX_TOPK)
    {
        return bad(format!(
            "num_experts {} / experts_per_token {} exceed the kernels' {MAX_EXPERTS} / {MAX_TOPK}",
            spec.num_experts, spec.experts_per_token
        ));
    }
    if spec.dtype != Dtype::Fp16 {
        return bad(
            "the device KV pool is fp16: set [engine] dtype = \"fp16\" (or remove it)".to_string(),
        );
    }
    if (pool_blocks as u64) * BLOCK_SIZE as u64 > i32::MAX as u64 {
        return bad(format!(
            "{pool_blocks} KV blocks exceed the kernels' i32 slot index"
        ));
    }
    Ok(())
}

/// Experts per token (0 for a dense model).
pub fn top_k(spec: &EngineSpec) -> usize {
    match spec.architecture {
        Architecture::Qwen3Moe => spec.experts_per_token,
        Architecture::Qwen2 => 0,
    }
}

/// The `i32` values a call uploads in one host→device copy, and where each part starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInts {
    /// Everything, in the order of the ranges below.
    pub data: Vec<i32>,
    /// Token id of every row (`id mod vocab`, as the CPU embeds).
    pub tokens: Range<usize>,
    /// Position of every row.
    pub pos: Range<usize>,
    /// KV slot (`block · 16 + offset`) of every row.
    pub slots: Range<usize>,
    /// Per row: where its item's block table starts inside `tables`.
    pub table_start: Range<usize>,
    /// Every item's block table, items in order.
    pub tables: Range<usize>,
    /// Last row of every item that wants logits, in item order.
    pub logit_rows: Range<usize>,
    /// Per (row, expert slot) pair `p`: its row `p / top_k` (per-item experts).
    pub pair_token: Range<usize>,
    /// Per pair: `p` (the per-item path's output row of each pair).
    pub pair_identity: Range<usize>,
}

impl CallInts {
    /// The upload of `call` for a model of `vocab` tokens and `top_k` experts per token.
    pub fn new(call: &FwdCall, vocab: usize, top_k: usize) -> CallInts {
        let m = call.num_rows();
        let mut tokens = Vec::with_capacity(m);
        let mut pos = Vec::with_capacity(m);
        let mut slots = Vec::with_capacity(m);
        let mut table_start = Vec::with_capacity(m);
        let mut tables = Vec::new();
        let mut logit_rows = Vec::new();
        let mut row = 0usize;
        for it in &call.items {
            let start = tables.len() as i32;
            tables.extend(it.blocks.iter().map(|b| *b as i32));
            for (j, t) in it.tokens.iter().enumerate() {
                let p = it.start_pos + j;
                tokens.push((*t as usize % vocab) as i32);
                pos.push(p as i32);
                slots.push(slot(&it.blocks, p) as i32);
                table_start.push(start);
            }
            row += it.tokens.len();
            if it.want_logits && !it.tokens.is_empty() {
                logit_rows.push((row - 1) as i32);
            }
        }
        let pairs = m * top_k;
        let pair_token: Vec<i32> = (0..pairs).map(|p| (p / top_k.max(1)) as i32).collect();
        let pair_identity: Vec<i32> = (0..pairs as i32).collect();
        let mut data = Vec::new();
        let mut part = |v: Vec<i32>| {
            let r = data.len()..data.len() + v.len();
            data.extend(v);
            r
        };
        CallInts {
            tokens: part(tokens),
            pos: part(pos),
            slots: part(slots),
            table_start: part(table_start),
            tables: part(tables),
            logit_rows: part(logit_rows),
            pair_token: part(pair_token),
            pair_identity: part(pair_identity),
            data,
        }
    }

    /// Rows (tokens) of the call.
    pub fn rows(&self) -> usize {
        self.tokens.len()
    }

    /// Rows whose logits are computed.
    pub fn logit_rows(&self) -> usize {
        self.logit_rows.len()
    }
}

/// Element counts of the device workspace for up to `rows` tokens and `logit_rows` logits rows
/// per call (f32 unless noted). The memory check sizes the workspace with this, and the
/// executor allocates exactly these buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workspace {
    /// Rows the buffers hold.
    pub rows: usize,
    /// Logits rows the buffers hold.
    pub logit_rows: usize,
    /// Residual stream, normed input, projection output: each `rows × hidden`.
    pub hidden: usize,
    /// Fused q|k|v rows.
    pub qkv: usize,
    /// Attention output rows (`heads × head_dim`).
    pub attn: usize,
    /// Router logits (`rows × experts`).
    pub router: usize,
    /// Per-pair routing weights; also the `i32` expert ids and pair rows (`rows × top_k`).
    pub pairs: usize,
    /// Gathered rows, expert outputs: each `pairs × hidden` (0 for dense models).
    pub pair_hidden: usize,
    /// Gate|up output (`pairs × 2I`, or `rows × 2I` dense).
    pub gate_up: usize,
    /// SwiGLU output (`pairs × I`, or `rows × I` dense).
    pub act: usize,
    /// Rows gathered for the LM head (`logit_rows × hidden`).
    pub sel: usize,
    /// Logits (`logit_rows × vocab`).
    pub logits: usize,
    /// `i32` per-layer expert counts (`layers × experts`), offsets (`experts + 1`) and cursors.
    pub expert_ints: usize,
}

impl Workspace {
    /// The buffers for `spec` at `rows` / `logit_rows`.
    pub fn new(spec: &EngineSpec, rows: usize, logit_rows: usize) -> Workspace {
        let k = top_k(spec);
        let pairs = rows * k;
        let (width, ffn_rows) = match spec.architecture {
            Architecture::Qwen3Moe => (spec.moe_intermediate_size, pairs),
            Architecture::Qwen2 => (spec.intermediate_size, rows),
        };
        let e = if k > 0 { spec.num_experts } else { 0 };
        Workspace {
            rows,
            logit_rows,
            hidden: rows * spec.hidden_size,
            qkv: rows * (spec.num_heads + 2 * spec.num_kv_heads) * spec.head_dim,
            attn: rows * spec.num_heads * spec.head_dim,
            router: rows * e,
            pairs,
            pair_hidden: pairs * spec.hidden_size,
            gate_up: ffn_rows * 2 * width,
            act: ffn_rows * width,
            sel: logit_rows * spec.hidden_size,
            logits: logit_rows * spec.vocab_size,
            expert_ints: if k > 0 {
                spec.num_layers * e + 2 * e + 1
            } else {
                0
            },
        }
    }

    /// Bytes of every buffer: 3 hidden-wide, 2 pair-hidden-wide, 3 pair-sized (weights, ids,
    /// pair rows), the rest once, plus the sampled ids and the call's `i32` upload for
    /// `rows` tokens whose block tables are at most `rows` entries each way.
    pub fn bytes(&self) -> u64 {
        let floats = 3 * self.hidden
            + self.qkv
            + self.attn
            + self.router
            + 3 * self.pairs
            + 2 * self.pair_hidden
            + self.gate_up
            + self.act
            + self.sel
            + self.logits
            + self.expert_ints
            + self.logit_rows;
        4 * (floats as u64 + self.upload_capacity() as u64)
    }

    /// `i32` values the upload buffer is first allocated for (it grows if a call needs more).
    pub fn upload_capacity(&self) -> usize {
        // tokens, pos, slots, table starts, tables (≤ one block per row plus one per item),
        // logit rows, pair tokens, pair identities.
        6 * self.rows + self.logit_rows + 2 * self.pairs
    }

    /// Whether a call with `rows` / `logit_rows` fits.
    pub fn fits(&self, rows: usize, logit_rows: usize) -> bool {
        rows <= self.rows && logit_rows <= self.logit_rows
    }
}

/// An int4 matmul launch: the kernel and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matmul {
    /// `int4_gemv` (m ≤ 8) or `int4_gemm`.
    pub kernel: &'static str,
    /// Grid and block.
    pub shape: Shape,
}

impl Matmul {
    /// `m` rows times an `n`-output matrix.
    pub fn new(n: usize, m: usize) -> Matmul {
        if launch::use_gemv(m) {
            Matmul {
                kernel: "int4_gemv",
                shape: launch::gemv(n, m),
            }
        } else {
            Matmul {
                kernel: "int4_gemm",
                shape: launch::gemm(n, m),
            }
        }
    }
}

/// Launch shapes of every kernel of one call (the same for every layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLaunches {
    /// One block per row over `hidden` (embed, RMSNorm, MoE combine).
    pub rows: Shape,
    /// Elementwise over `rows × hidden` (residual add, fp16 rounding).
    pub hidden_elems: Shape,
    /// QKV projection.
    pub qkv: Matmul,
    /// Elementwise over the qkv rows (bias add).
    pub qkv_elems: Shape,
    /// q/k norm + RoPE: grid (rows, heads + kv_heads), one warp per head.
    pub qk_rope: Shape,
    /// K/V writes: one block per row over the KV width.
    pub kv_write: Shape,
    /// Paged attention.
    pub attention: Shape,
    /// Output projection.
    pub o: Matmul,
    /// Feed-forward launches.
    pub ffn: FfnLaunches,
    /// Gather of logits rows, final norm: one block per logits row.
    pub logit_rows: Shape,
    /// LM head (`f16_gemv`).
    pub lm_head: Shape,
    /// `argmax_rows`.
    pub argmax: Shape,
}

/// Feed-forward launches of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FfnLaunches {
    /// Dense SwiGLU MLP.
    Dense {
        /// Gate|up projection.
        gate_up: Matmul,
        /// SwiGLU over `rows × I`.
        swiglu: Shape,
        /// Down projection.
        down: Matmul,
    },
    /// Routed experts.
    Moe {
        /// Router (`f32_gemv`).
        router: Shape,
        /// `router_topk`: one warp per row.
        topk: Shape,
        /// `moe_count` over the pairs.
        count: Shape,
        /// Grouped (`moe_offsets`, `moe_scatter`, `int4_gemm_grouped`) or per-pair launches.
        experts: ExpertLaunches,
        /// SwiGLU over `pairs × I`.
        swiglu: Shape,
    },
}

/// How a call's experts run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpertLaunches {
    /// Tokens grouped by expert.
    Grouped {
        /// `moe_offsets`: one block of 1024 threads.
        offsets: Shape,
        /// `moe_scatter`: one block per pair.
        scatter: Shape,
        /// Gate|up `int4_gemm_grouped`: row tiles for an expert holding every row.
        gate_up: Shape,
        /// Down `int4_gemm_grouped`.
        down: Shape,
    },
    /// Each (token, expert) pair on its own: `int4_gemv_per_pair`.
    PerPair {
        /// Gate|up.
        gate_up: Shape,
        /// Down.
        down: Shape,
    },
}

impl CallLaunches {
    /// Shapes for `rows` tokens, `logit_rows` logits rows and the call's MoE path.
    pub fn new(spec: &EngineSpec, rows: usize, logit_rows: usize, moe: MoePath) -> CallLaunches {
        let (h, hd) = (spec.hidden_size, spec.head_dim);
        let (nq, nkv) = (spec.num_heads, spec.num_kv_heads);
        let width = (nq + 2 * nkv) * hd;
        let k = top_k(spec);
        let pairs = rows * k;
        let ffn = match spec.architecture {
            Architecture::Qwen2 => {
                let i = spec.intermediate_size;
                FfnLaunches::Dense {
                    gate_up: Matmul::new(2 * i, rows),
                    swiglu: launch::elementwise((rows * i) as u64),
                    down: Matmul::new(h, rows),
                }
            }
            Architecture::Qwen3Moe => {
                let i = spec.moe_intermediate_size;
                let e = spec.num_experts;
                FfnLaunches::Moe {
                    router: launch::gemv(e, rows),
                    topk: launch::elementwise((rows * 32) as u64),
                    count: launch::elementwise(pairs as u64),
                    experts: match moe {
                        MoePath::Grouped => ExpertLaunches::Grouped {
                            offsets: Shape {
                                grid: (1, 1, 1),
                                block: (MAX_EXPERTS as u32, 1, 1),
                            },
                            scatter: launch::per_row(pairs, h),
                            // No expert holds more than every row (a token picks an expert once).
                            gate_up: launch::gemm_grouped(2 * i, rows, e),
                            down: launch::gemm_grouped(h, rows, e),
                        },
                        MoePath::PerToken => ExpertLaunches::PerPair {
                            gate_up: launch::gemv_per_pair(pairs, 2 * i),
                            down: launch::gemv_per_pair(pairs, h),
                        },
                    },
                    swiglu: launch::elementwise((pairs * i) as u64),
                }
            }
        };
        CallLaunches {
            rows: launch::per_row(rows, h),
            hidden_elems: launch::elementwise((rows * h) as u64),
            qkv: Matmul::new(width, rows),
            qkv_elems: launch::elementwise((rows * width) as u64),
            qk_rope: Shape {
                grid: (
                    u32::try_from(rows).expect("rows fit u32"),
                    u32::try_from(nq + nkv).expect("heads fit u32"),
                    1,
                ),
                block: (32, 1, 1),
            },
            kv_write: launch::per_row(rows, nkv * hd),
            attention: launch::attention(rows, nq),
            o: Matmul::new(h, rows),
            ffn,
            logit_rows: launch::per_row(logit_rows, h),
            lm_head: launch::gemv(spec.vocab_size, logit_rows),
            argmax: launch::per_row(logit_rows, 1024),
        }
    }
}

/// Host mirror of `moe_count` + `moe_offsets`: the start of every expert's rows when the pairs
/// `ids` are grouped by expert, and the total (`experts + 1` values).
pub fn expert_offsets(ids: &[i32], experts: usize) -> Vec<i32> {
    let mut counts = vec![0i32; experts];
    for id in ids {
        counts[*id as usize] += 1;
    }
    let mut offsets = Vec::with_capacity(experts + 1);
    let mut acc = 0;
    for c in counts {
        offsets.push(acc);
        acc += c;
    }
    offsets.push(acc);
    offsets
}

/// Which experts a layer used and its expert weight loads, from the layer's per-expert pair
/// counts (read back from the device): grouped calls load each used expert once, per-item calls
/// once per pair (as the CPU counts).
pub fn expert_stats(counts: &[i32], moe: MoePath) -> (Vec<bool>, u64) {
    let used: Vec<bool> = counts.iter().map(|c| *c > 0).collect();
    let loads = match moe {
        MoePath::Grouped => used.iter().filter(|u| **u).count() as u64,
        MoePath::PerToken => counts.iter().map(|c| *c as u64).sum(),
    };
    (used, loads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reference::model::FwdItem;
    use crate::engine::reference::spec::Device;

    fn call() -> FwdCall {
        FwdCall {
            items: vec![
                // A prompt chunk of 3 tokens at position 15..18: crosses from block 9 to block 2.
                FwdItem {
                    blocks: vec![9, 2, 7],
                    start_pos: 15,
                    tokens: vec![5, 100_001, 7],
                    want_logits: true,
                },
                // A non-final chunk: no logits.
                FwdItem {
                    blocks: vec![4],
                    start_pos: 0,
                    tokens: vec![1, 2],
                    want_logits: false,
                },
                // A decode token.
                FwdItem {
                    blocks: vec![3, 0],
                    start_pos: 20,
                    tokens: vec![8],
                    want_logits: true,
                },
            ],
            moe: MoePath::Grouped,
        }
    }

    #[test]
    fn call_upload_layout_holds_rows_tables_and_logit_rows() {
        let ints = CallInts::new(&call(), 1000, 2);
        let part = |r: &Range<usize>| ints.data[r.clone()].to_vec();
        assert_eq!(ints.rows(), 6);
        assert_eq!(ints.logit_rows(), 2);
        assert_eq!(part(&ints.tokens), vec![5, 1, 7, 1, 2, 8]);
        assert_eq!(part(&ints.pos), vec![15, 16, 17, 0, 1, 20]);
        // 9*16+15, then block 2 offsets 0 and 1; block 4; block 0 offset 4.
        assert_eq!(part(&ints.slots), vec![159, 32, 33, 64, 65, 4]);
        assert_eq!(part(&ints.tables), vec![9, 2, 7, 4, 3, 0]);
        assert_eq!(part(&ints.table_start), vec![0, 0, 0, 3, 3, 4]);
        // The device reads table[pos / 16] from tables + table_start: the slot again.
        let tables = part(&ints.tables);
        for r in 0..6 {
            let (p, s) = (
                ints.data[ints.pos.start + r],
                ints.data[ints.slots.start + r],
            );
            let start = ints.data[ints.table_start.start + r] as usize;
            assert_eq!(tables[start + p as usize / 16] * 16 + p % 16, s);
        }
        assert_eq!(part(&ints.logit_rows), vec![2, 5]);
        assert_eq!(
            part(&ints.pair_token),
            vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        );
        assert_eq!(part(&ints.pair_identity), (0..12).collect::<Vec<i32>>());
        // Parts are contiguous and cover the upload.
        assert_eq!(ints.tokens.start, 0);
        assert_eq!(ints.pair_identity.end, ints.data.len());
        // A dense model has no pairs.
        let dense = CallInts::new(&call(), 1000, 0);
        assert!(dense.pair_token.is_empty() && dense.pair_identity.is_empty());
    }

    fn spec(arch: &str) -> EngineSpec {
        let mut s = EngineSpec::resolve_for_device(None, arch, Device::Cuda).unwrap();
        s.num_layers = 2;
        s
    }

    #[test]
    fn workspace_sizes_follow_the_buffers() {
        let s = spec("qwen3_moe");
        let w = Workspace::new(&s, 10, 3);
        assert_eq!(w.hidden, 10 * 2048);
        assert_eq!(w.qkv, 10 * (32 + 8) * 128);
        assert_eq!(w.attn, 10 * 32 * 128);
        assert_eq!(w.router, 10 * 128);
        assert_eq!(w.pairs, 80);
        assert_eq!(w.pair_hidden, 80 * 2048);
        assert_eq!((w.gate_up, w.act), (80 * 2 * 768, 80 * 768));
        assert_eq!(w.logits, 3 * 151_936);
        assert_eq!(w.expert_ints, 2 * 128 + 2 * 128 + 1);
        assert!(w.fits(10, 3) && !w.fits(11, 3) && !w.fits(10, 4));
        // The upload of a decode batch of 3 sequences fits the first allocation.
        let decode = FwdCall {
            items: (0..3)
                .map(|i| FwdItem {
                    blocks: vec![i],
                    start_pos: 3,
                    tokens: vec![1],
                    want_logits: true,
                })
                .collect(),
            moe: MoePath::Grouped,
        };
        let up = CallInts::new(&decode, s.vocab_size, 8);
        assert!(up.data.len() <= Workspace::new(&s, 3, 3).upload_capacity());
        let q = spec("qwen2");
        let d = Workspace::new(&q, 4, 1);
        assert_eq!(
            (d.pairs, d.pair_hidden, d.router, d.expert_ints),
            (0, 0, 0, 0)
        );
        assert_eq!(d.gate_up, 4 * 2 * 29_568);
        assert!(d.bytes() > 4 * (3 * d.hidden + d.logits) as u64);
    }

    #[test]
    fn launches_pick_gemv_or_gemm_and_cover_the_call() {
        let s = spec("qwen3_moe");
        let decode = CallLaunches::new(&s, 8, 8, MoePath::PerToken);
        assert_eq!(decode.qkv.kernel, "int4_gemv");
        assert_eq!(decode.qkv.shape, launch::gemv(5120, 8));
        assert_eq!(decode.qk_rope.grid, (8, 36, 1));
        assert_eq!(decode.attention.grid, (8, 8, 1));
        assert_eq!(decode.lm_head.grid, (151_936 / 8, 1, 1));
        match &decode.ffn {
            FfnLaunches::Moe {
                experts: ExpertLaunches::PerPair { gate_up, down },
                topk,
                ..
            } => {
                assert_eq!(gate_up.grid.0 * 8, 64 * 1536);
                assert_eq!(down.grid.0 * 8, 64 * 2048);
                assert_eq!(topk.grid.0 * 8, 8);
            }
            other => panic!("{other:?}"),
        }
        let prefill = CallLaunches::new(&s, 300, 2, MoePath::Grouped);
        assert_eq!(prefill.qkv.kernel, "int4_gemm");
        assert_eq!(prefill.o.shape, launch::gemm(2048, 300));
        match &prefill.ffn {
            FfnLaunches::Moe {
                experts:
                    ExpertLaunches::Grouped {
                        gate_up, scatter, ..
                    },
                ..
            } => {
                assert_eq!(gate_up.grid, (24, 5, 128));
                assert_eq!(scatter.grid.0, 2400);
            }
            other => panic!("{other:?}"),
        }
        let dense = CallLaunches::new(&spec("qwen2"), 1, 1, MoePath::Grouped);
        assert!(matches!(dense.ffn, FfnLaunches::Dense { .. }));
    }

    #[test]
    fn expert_grouping_offsets_and_stats() {
        // 3 tokens x top-2 over 5 experts.
        let ids = [0, 3, 3, 4, 0, 1];
        assert_eq!(expert_offsets(&ids, 5), vec![0, 2, 3, 3, 5, 6]);
        let counts = [2, 1, 0, 2, 1];
        let (used, loads) = expert_stats(&counts, MoePath::Grouped);
        assert_eq!(used, vec![true, true, false, true, true]);
        assert_eq!(loads, 4);
        assert_eq!(expert_stats(&counts, MoePath::PerToken).1, 6);
    }

    #[test]
    fn unsupported_shapes_are_named() {
        let mut s = spec("qwen3_moe");
        assert!(check_supported(&s, 2048).is_ok());
        s.dtype = Dtype::Fp32;
        assert!(check_supported(&s, 2048).unwrap_err().contains("fp16"));
        s.dtype = Dtype::Fp16;
        s.head_dim = 512;
        assert!(check_supported(&s, 2048).unwrap_err().contains("head_dim"));
        s.head_dim = 128;
        s.experts_per_token = 17;
        assert!(check_supported(&s, 2048).unwrap_err().contains("17"));
        s.experts_per_token = 8;
        assert!(check_supported(&s, 1 << 28).is_err());
    }
}
