//! The CUDA executor: the whole forward of a call on the device, mirroring the CPU model
//! (`model/`) step by step — embedding, per layer RMSNorm, int4 QKV (+ bias for qwen2), per-head
//! q/k RMSNorm and RoPE, K/V into the paged fp16 pool, paged attention, output projection,
//! residual, RMSNorm, router softmax/top-k and experts (grouped by expert, or per (token,
//! expert) pair) or the dense MLP, residual, fp16 rounding of the stored activations; then the
//! final norm, the LM head and the greedy argmax on the device. Only the sampled ids (or, for
//! `sampling_readback_path = logits_readback`, the logits rows) and the per-layer expert counts
//! come back to the host, after which the stream is idle: the scheduler's step timestamp is
//! taken after the device finished.

use cudarc::driver::CudaSlice;

use super::device_weights::{DFfn, DInt4, DModel};
use super::gpu::{fault, Arg, Gpu};
use super::memory::StagePart;
use super::plan::{
    check_supported, expert_stats, top_k, CallInts, CallLaunches, ExpertLaunches, FfnLaunches,
    Matmul, Workspace,
};
use super::split::{StageOutput, StageWork};
use crate::engine::reference::executor::{argmax, CallResult, Executor, Sampling};
use crate::engine::reference::kv::BLOCK_SIZE;
use crate::engine::reference::model::rope::Rope;
use crate::engine::reference::model::{FwdCall, FwdStats};
use crate::engine::reference::spec::{Architecture, Dtype, EngineSpec};
use crate::engine::EngineError;

/// Device buffers of a call, sized by [`Workspace`].
struct Buffers {
    size: Workspace,
    x: CudaSlice<f32>,
    hn: CudaSlice<f32>,
    tmp: CudaSlice<f32>,
    qkv: CudaSlice<f32>,
    attn: CudaSlice<f32>,
    router: CudaSlice<f32>,
    pair_w: CudaSlice<f32>,
    ids: CudaSlice<i32>,
    pair_row: CudaSlice<i32>,
    x_sorted: CudaSlice<f32>,
    y: CudaSlice<f32>,
    gate_up: CudaSlice<f32>,
    act: CudaSlice<f32>,
    sel: CudaSlice<f32>,
    logits: CudaSlice<f32>,
    sampled: CudaSlice<u32>,
    expert_ints: CudaSlice<i32>,
    upload: CudaSlice<i32>,
}

impl Buffers {
    fn new(gpu: &Gpu, size: Workspace) -> Result<Buffers, EngineError> {
        Ok(Buffers {
            size,
            x: gpu.zeros(size.hidden)?,
            hn: gpu.zeros(size.hidden)?,
            tmp: gpu.zeros(size.hidden)?,
            qkv: gpu.zeros(size.qkv)?,
            attn: gpu.zeros(size.attn)?,
            router: gpu.zeros(size.router)?,
            pair_w: gpu.zeros(size.pairs)?,
            ids: gpu.zeros(size.pairs)?,
            pair_row: gpu.zeros(size.pairs)?,
            x_sorted: gpu.zeros(size.pair_hidden)?,
            y: gpu.zeros(size.pair_hidden)?,
            gate_up: gpu.zeros(size.gate_up)?,
            act: gpu.zeros(size.act)?,
            sel: gpu.zeros(size.sel)?,
            logits: gpu.zeros(size.logits)?,
            sampled: gpu.zeros(size.logit_rows)?,
            expert_ints: gpu.zeros(size.expert_ints)?,
            upload: gpu.zeros(size.upload_capacity())?,
        })
    }
}

/// The executor: device, weights, KV pools, workspace — of the whole model, or of one stage of
/// a layer split (its layers, plus the embedding on the first stage and the LM head on the last).
pub struct CudaExecutor {
    gpu: Gpu,
    spec: EngineSpec,
    part: StagePart,
    model: DModel,
    /// Per layer of `part`: K and V pools, `blocks × 16 × kv_heads·head_dim` fp16.
    kv: Vec<(CudaSlice<u16>, CudaSlice<u16>)>,
    inv_freq: CudaSlice<f32>,
    buf: Buffers,
    sampling: Sampling,
    /// Keep the logits rows of the last call on the host (tests).
    pub keep_logits: bool,
    /// Logits rows of the last call when `keep_logits` is set (`logit rows × vocab`).
    pub last_logits: Vec<f32>,
}

impl CudaExecutor {
    /// Generates `spec`'s weights on `gpu`, allocates a KV pool of `pool_blocks` blocks per layer
    /// and a workspace for calls of up to `rows` tokens.
    pub fn new(
        gpu: Gpu,
        spec: &EngineSpec,
        pool_blocks: usize,
        rows: usize,
        sampling: Sampling,
    ) -> Result<CudaExecutor, EngineError> {
        let whole = StagePart::whole(spec);
        CudaExecutor::new_part(gpu, spec, whole, pool_blocks, rows, sampling)
    }

    /// [`CudaExecutor::new`] for the layers and tensors of `part` only (one layer-split stage):
    /// its weights, its layers' KV pools, and a workspace with logits buffers only when it holds
    /// the LM head.
    pub fn new_part(
        gpu: Gpu,
        spec: &EngineSpec,
        part: StagePart,
        pool_blocks: usize,
        rows: usize,
        sampling: Sampling,
    ) -> Result<CudaExecutor, EngineError> {
        check_supported(spec, pool_blocks).map_err(EngineError::Config)?;
        let model = DModel::generate_part(&gpu, spec, &part)?;
        let width = spec.num_kv_heads * spec.head_dim;
        let kv = part
            .layers
            .clone()
            .map(|_| {
                let n = pool_blocks * BLOCK_SIZE * width;
                Ok((gpu.zeros::<u16>(n)?, gpu.zeros::<u16>(n)?))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        // The CPU's f32 inverse frequencies, so both backends rotate by the same angles.
        let inv_freq = gpu
            .stream()
            .clone_htod(Rope::new(spec.head_dim, spec.rope_theta).inv_freq())
            .map_err(fault("upload RoPE frequencies"))?;
        let logit_rows = if part.head { rows.min(1024) } else { 0 };
        let buf = Buffers::new(&gpu, Workspace::new(spec, rows, logit_rows))?;
        gpu.sync()?;
        Ok(CudaExecutor {
            gpu,
            spec: spec.clone(),
            part,
            model,
            kv,
            inv_freq,
            buf,
            sampling,
            keep_logits: false,
            last_logits: Vec::new(),
        })
    }

    /// Device bytes of the weights.
    pub fn weight_bytes(&self) -> u64 {
        self.model.bytes
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn p<T>(&self, s: &CudaSlice<T>, offset: usize) -> Arg {
        Arg::P(self.gpu.ptr(s, offset))
    }

    /// `y = x · Wᵀ` for `m` rows (W: `rows × cols`).
    fn matmul(&self, mm: Matmul, x: Arg, m: usize, w: &DInt4, y: Arg) -> Result<(), EngineError> {
        self.gpu.launch(
            mm.kernel,
            mm.shape,
            &[
                x,
                Arg::I(m as i32),
                Arg::I(w.cols as i32),
                self.p(&w.packed, 0),
                self.p(&w.scales, 0),
                self.p(&w.offsets, 0),
                Arg::I(w.rows as i32),
                Arg::I(self.spec.quant_group_size as i32),
                y,
            ],
        )
    }

    fn rms_norm(
        &self,
        shape: super::launch::Shape,
        x: Arg,
        gain: &CudaSlice<f32>,
        out: Arg,
    ) -> Result<(), EngineError> {
        self.gpu.launch(
            "rms_norm",
            shape,
            &[
                x,
                self.p(gain, 0),
                Arg::I(self.spec.hidden_size as i32),
                Arg::F(self.spec.rms_eps),
                out,
            ],
        )
    }

    fn round_if_fp16(&self, l: &CallLaunches, m: usize) -> Result<(), EngineError> {
        if self.spec.dtype != Dtype::Fp16 {
            return Ok(());
        }
        let n = (m * self.spec.hidden_size) as u64;
        self.gpu.launch(
            "round_f16",
            l.hidden_elems,
            &[self.p(&self.buf.x, 0), Arg::U(n)],
        )
    }

    /// Layers and tensors this executor holds.
    pub fn part(&self) -> &StagePart {
        &self.part
    }

    /// Grows the workspace when a call needs more than it holds.
    fn ensure(&mut self, ints: &CallInts) -> Result<(), EngineError> {
        // Only the stage with the LM head needs logits buffers.
        let n = if self.part.head { ints.logit_rows() } else { 0 };
        let m = ints.rows();
        if !self.buf.size.fits(m, n) {
            let rows = m.max(self.buf.size.rows);
            let size = Workspace::new(&self.spec, rows, n.max(self.buf.size.logit_rows));
            self.gpu.sync()?;
            self.buf = Buffers::new(&self.gpu, size)?;
        }
        if self.buf.upload.len() < ints.data.len() {
            self.buf.upload = self.gpu.zeros(ints.data.len().next_power_of_two())?;
        }
        let mut dst = self.buf.upload.slice_mut(..ints.data.len());
        self.gpu
            .stream()
            .memcpy_htod(&ints.data, &mut dst)
            .map_err(fault("upload the call's token ids and block tables"))
    }

    /// One call through the whole model on the device (an executor holding every layer).
    pub fn forward(&mut self, call: &FwdCall) -> Result<CallResult, EngineError> {
        let mut stats = FwdStats::default();
        match self.run_part(call, &[], &mut stats)? {
            StageOutput::Tokens { tokens, .. } => Ok(CallResult { tokens, stats }),
            StageOutput::Hidden(_) => Err(EngineError::Fault(
                "forward of a layer-split stage without the LM head".to_string(),
            )),
        }
    }

    /// This executor's part of a call: embedding (or `hidden`, the previous stage's rows, as
    /// the residual stream), its layers, and the LM head and sampling when it holds them (else
    /// the hidden rows read back for the next stage). Expert usage of its layers goes to `stats`.
    pub fn run_part(
        &mut self,
        call: &FwdCall,
        hidden: &[f32],
        stats: &mut FwdStats,
    ) -> Result<StageOutput, EngineError> {
        let spec = self.spec.clone();
        let k = top_k(&spec);
        let ints = CallInts::new(call, spec.vocab_size, k);
        let (m, n) = (ints.rows(), ints.logit_rows());
        if stats.experts.len() < spec.num_layers {
            stats.experts.resize(spec.num_layers, Vec::new());
        }
        self.last_logits.clear();
        let h = spec.hidden_size;
        if m == 0 {
            return Ok(if self.part.head {
                StageOutput::Tokens {
                    tokens: Vec::new(),
                    logits: Vec::new(),
                }
            } else {
                StageOutput::Hidden(Vec::new())
            });
        }
        self.ensure(&ints)?;
        if self.model.embed.is_none() {
            if hidden.len() != m * h {
                return Err(EngineError::Fault(format!(
                    "layer-split stage (layers {:?}) got {} hidden values for {m} rows of {h}",
                    self.part.layers,
                    hidden.len()
                )));
            }
            let mut dst = self.buf.x.slice_mut(..m * h);
            self.gpu
                .stream()
                .memcpy_htod(hidden, &mut dst)
                .map_err(fault("upload the previous stage's hidden rows"))?;
        }
        if k > 0 {
            self.gpu
                .stream()
                .memset_zeros(&mut self.buf.expert_ints)
                .map_err(fault("clear the expert counts"))?;
        }
        let l = CallLaunches::new(&spec, m, n, call.moe);
        let up = |r: &std::ops::Range<usize>| self.p(&self.buf.upload, r.start);
        let hd = spec.head_dim;
        let (nq, nkv) = (spec.num_heads, spec.num_kv_heads);
        let (q_dim, kv_dim) = (nq * hd, nkv * hd);
        let width = q_dim + 2 * kv_dim;
        let b = &self.buf;
        let (x, hn, tmp) = (self.p(&b.x, 0), self.p(&b.hn, 0), self.p(&b.tmp, 0));
        let g = &self.gpu;
        if let Some(embed) = &self.model.embed {
            g.launch(
                "embed_f16",
                l.rows,
                &[up(&ints.tokens), self.p(embed, 0), Arg::I(h as i32), x],
            )?;
            self.round_if_fp16(&l, m)?;
        }
        let first = self.model.first_layer;
        for (i, layer) in self.model.layers.iter().enumerate() {
            // Global layer index: the expert counts are laid out per layer of the whole model.
            let li = first + i;
            self.rms_norm(l.rows, x, &layer.input_norm, hn)?;
            let qkv = self.p(&b.qkv, 0);
            self.matmul(l.qkv, hn, m, &layer.qkv, qkv)?;
            if let Some(bias) = &layer.qkv_bias {
                g.launch(
                    "add_bias_rows",
                    l.qkv_elems,
                    &[qkv, self.p(bias, 0), Arg::U(m as u64), Arg::I(width as i32)],
                )?;
            }
            let (qn, kn, norm) = match &layer.qk_norm {
                Some((q, kk)) => (self.p(q, 0), self.p(kk, 0), 1),
                None => (Arg::P(0), Arg::P(0), 0),
            };
            g.launch(
                "qk_norm_rope",
                l.qk_rope,
                &[
                    qkv,
                    up(&ints.pos),
                    Arg::I(width as i32),
                    Arg::I(nq as i32),
                    Arg::I(nkv as i32),
                    Arg::I(hd as i32),
                    qn,
                    kn,
                    Arg::I(norm),
                    Arg::F(spec.rms_eps),
                    self.p(&self.inv_freq, 0),
                ],
            )?;
            let (kp, vp) = &self.kv[i];
            g.launch(
                "kv_write",
                l.kv_write,
                &[
                    self.p(&b.qkv, q_dim),
                    self.p(&b.qkv, q_dim + kv_dim),
                    up(&ints.slots),
                    Arg::I(kv_dim as i32),
                    Arg::I(width as i32),
                    self.p(kp, 0),
                    self.p(vp, 0),
                ],
            )?;
            let attn = self.p(&b.attn, 0);
            g.launch(
                "paged_attention",
                l.attention,
                &[
                    qkv,
                    Arg::I(width as i32),
                    up(&ints.pos),
                    up(&ints.table_start),
                    up(&ints.tables),
                    self.p(kp, 0),
                    self.p(vp, 0),
                    Arg::I(nq as i32),
                    Arg::I(nkv as i32),
                    Arg::I(hd as i32),
                    Arg::F(1.0 / (hd as f32).sqrt()),
                    attn,
                ],
            )?;
            self.matmul(l.o, attn, m, &layer.o, tmp)?;
            let hidden_n = Arg::U((m * h) as u64);
            g.launch("add_inplace", l.hidden_elems, &[x, tmp, hidden_n])?;
            self.rms_norm(l.rows, x, &layer.post_norm, hn)?;
            match (&layer.ffn, &l.ffn) {
                (
                    DFfn::Dense { gate_up, down },
                    FfnLaunches::Dense {
                        gate_up: gu_l,
                        swiglu,
                        down: down_l,
                    },
                ) => {
                    let (gu, act) = (self.p(&b.gate_up, 0), self.p(&b.act, 0));
                    self.matmul(*gu_l, hn, m, gate_up, gu)?;
                    let i = spec.intermediate_size;
                    g.launch(
                        "swiglu",
                        *swiglu,
                        &[gu, Arg::U(m as u64), Arg::I(i as i32), act],
                    )?;
                    self.matmul(*down_l, act, m, down, tmp)?;
                    g.launch("add_inplace", l.hidden_elems, &[x, tmp, hidden_n])?;
                }
                (
                    DFfn::Moe {
                        router,
                        gate_up,
                        down,
                    },
                    FfnLaunches::Moe {
                        router: router_l,
                        topk,
                        count,
                        experts,
                        swiglu,
                    },
                ) => {
                    let e = spec.num_experts;
                    let i = spec.moe_intermediate_size;
                    let pairs = m * k;
                    let (rl, ids, pw) = (
                        self.p(&b.router, 0),
                        self.p(&b.ids, 0),
                        self.p(&b.pair_w, 0),
                    );
                    g.launch(
                        "f32_gemv",
                        *router_l,
                        &[
                            hn,
                            Arg::I(m as i32),
                            Arg::I(h as i32),
                            self.p(router, 0),
                            Arg::I(e as i32),
                            rl,
                        ],
                    )?;
                    g.launch(
                        "router_topk",
                        *topk,
                        &[
                            rl,
                            Arg::I(m as i32),
                            Arg::I(e as i32),
                            Arg::I(k as i32),
                            ids,
                            pw,
                        ],
                    )?;
                    let counts = self.p(&b.expert_ints, li * e);
                    g.launch("moe_count", *count, &[ids, Arg::I(pairs as i32), counts])?;
                    let (gu, act, y) = (self.p(&b.gate_up, 0), self.p(&b.act, 0), self.p(&b.y, 0));
                    let expert_args = |xin: Arg, kin: usize, w: &DInt4, out: Arg| {
                        [
                            xin,
                            Arg::I(kin as i32),
                            self.p(&w.packed, 0),
                            self.p(&w.scales, 0),
                            self.p(&w.offsets, 0),
                            Arg::I(w.rows as i32),
                            Arg::I(spec.quant_group_size as i32),
                            out,
                        ]
                    };
                    let swiglu_args = [gu, Arg::U(pairs as u64), Arg::I(i as i32), act];
                    let rows_of_pairs = match experts {
                        ExpertLaunches::Grouped {
                            offsets,
                            scatter,
                            gate_up: gu_l,
                            down: down_l,
                        } => {
                            let base = spec.num_layers * e;
                            let (offs, cursor) = (
                                self.p(&b.expert_ints, base),
                                self.p(&b.expert_ints, base + e + 1),
                            );
                            let (xs, prow) = (self.p(&b.x_sorted, 0), self.p(&b.pair_row, 0));
                            g.launch(
                                "moe_offsets",
                                *offsets,
                                &[counts, Arg::I(e as i32), offs, cursor],
                            )?;
                            g.launch(
                                "moe_scatter",
                                *scatter,
                                &[
                                    ids,
                                    Arg::I(pairs as i32),
                                    Arg::I(k as i32),
                                    hn,
                                    Arg::I(h as i32),
                                    cursor,
                                    prow,
                                    xs,
                                ],
                            )?;
                            let [a0, a1, rest @ ..] = expert_args(xs, h, gate_up, gu);
                            let grouped = |a0, a1, rest: [Arg; 6]| {
                                let mut v = vec![a0, offs, a1];
                                v.extend(rest);
                                v
                            };
                            g.launch("int4_gemm_grouped", *gu_l, &grouped(a0, a1, rest))?;
                            g.launch("swiglu", *swiglu, &swiglu_args)?;
                            let [a0, a1, rest @ ..] = expert_args(act, i, down, y);
                            g.launch("int4_gemm_grouped", *down_l, &grouped(a0, a1, rest))?;
                            prow
                        }
                        ExpertLaunches::PerPair {
                            gate_up: gu_l,
                            down: down_l,
                        } => {
                            let per_pair = |tokens: Arg, args: [Arg; 8]| {
                                let mut v = vec![args[0], tokens, ids, Arg::I(pairs as i32)];
                                v.extend_from_slice(&args[1..]);
                                v
                            };
                            let ident = up(&ints.pair_identity);
                            g.launch(
                                "int4_gemv_per_pair",
                                *gu_l,
                                &per_pair(up(&ints.pair_token), expert_args(hn, h, gate_up, gu)),
                            )?;
                            g.launch("swiglu", *swiglu, &swiglu_args)?;
                            g.launch(
                                "int4_gemv_per_pair",
                                *down_l,
                                &per_pair(ident, expert_args(act, i, down, y)),
                            )?;
                            ident
                        }
                    };
                    g.launch(
                        "moe_combine",
                        l.rows,
                        &[y, rows_of_pairs, pw, Arg::I(k as i32), Arg::I(h as i32), x],
                    )?;
                }
                _ => {
                    return Err(EngineError::Fault(
                        "feed-forward weights and launches disagree".to_string(),
                    ))
                }
            }
            self.round_if_fp16(&l, m)?;
        }
        let out = if self.part.head {
            let tokens = self.sample(&l, &ints)?;
            let logits = if self.keep_logits {
                self.last_logits.clone()
            } else {
                Vec::new()
            };
            StageOutput::Tokens { tokens, logits }
        } else {
            // The hand-off: the residual stream after this stage's last layer, to the host.
            let x = self
                .gpu
                .stream()
                .clone_dtoh(&self.buf.x.slice(..m * h))
                .map_err(fault("read the hidden rows for the next stage"))?;
            StageOutput::Hidden(x)
        };
        if k > 0 && spec.architecture == Architecture::Qwen3Moe {
            let e = spec.num_experts;
            let layers = &self.part.layers;
            let counts = self
                .gpu
                .stream()
                .clone_dtoh(&self.buf.expert_ints.slice(layers.start * e..layers.end * e))
                .map_err(fault("read the expert counts"))?;
            for (i, c) in counts.chunks_exact(e).enumerate() {
                let (used, loads) = expert_stats(c, call.moe);
                stats.experts[layers.start + i] = used;
                stats.expert_loads += loads;
            }
        }
        // Everything of this call has run before the scheduler takes its step timestamp.
        self.gpu.sync()?;
        Ok(out)
    }

    /// Final norm, LM head and greedy sampling of the rows that want logits.
    fn sample(&mut self, l: &CallLaunches, ints: &CallInts) -> Result<Vec<u32>, EngineError> {
        let n = ints.logit_rows();
        if n == 0 {
            return Ok(Vec::new());
        }
        let (h, v) = (self.spec.hidden_size, self.spec.vocab_size);
        let Some((final_norm, lm_head)) = &self.model.head else {
            return Err(EngineError::Fault(
                "sampling on a layer-split stage without the LM head".to_string(),
            ));
        };
        let b = &self.buf;
        let g = &self.gpu;
        let sel = self.p(&b.sel, 0);
        g.launch(
            "embed",
            l.logit_rows,
            &[
                self.p(&b.upload, ints.logit_rows.start),
                self.p(&b.x, 0),
                Arg::I(h as i32),
                sel,
            ],
        )?;
        self.rms_norm(l.logit_rows, sel, final_norm, sel)?;
        let logits = self.p(&b.logits, 0);
        g.launch(
            "f16_gemv",
            l.lm_head,
            &[
                sel,
                Arg::I(n as i32),
                Arg::I(h as i32),
                self.p(lm_head, 0),
                Arg::I(v as i32),
                logits,
            ],
        )?;
        let host_logits = |this: &Self| {
            this.gpu
                .stream()
                .clone_dtoh(&this.buf.logits.slice(..n * v))
                .map_err(fault("read the logits"))
        };
        if self.keep_logits {
            self.last_logits = host_logits(self)?;
        }
        match self.sampling {
            Sampling::LogitsReadback => {
                let rows = if self.keep_logits {
                    self.last_logits.clone()
                } else {
                    host_logits(self)?
                };
                Ok(rows.chunks_exact(v).map(argmax).collect())
            }
            Sampling::DeviceArgmax => {
                g.launch(
                    "argmax_rows",
                    l.argmax,
                    &[logits, Arg::I(v as i32), self.p(&b.sampled, 0)],
                )?;
                g.stream()
                    .clone_dtoh(&b.sampled.slice(..n))
                    .map_err(fault("read the sampled ids"))
            }
        }
    }
}

impl Executor for CudaExecutor {
    fn execute(&mut self, calls: &[FwdCall]) -> Result<Vec<CallResult>, EngineError> {
        calls.iter().map(|c| self.forward(c)).collect()
    }
}

impl StageWork for CudaExecutor {
    fn run_stage(
        &mut self,
        call: &FwdCall,
        hidden: &[f32],
        stats: &mut FwdStats,
    ) -> Result<StageOutput, EngineError> {
        self.run_part(call, hidden, stats)
    }

    fn layer_range(&self) -> std::ops::Range<usize> {
        self.part.layers.clone()
    }
}
