//! The scheduler's clock: `wall` (an [`Instant`], the default) or `modelled` (`[engine] clock`).
//!
//! In modelled mode the scheduler, the paged KV pool and the real forward all still run (the
//! tokens are real); only *time* comes from a cost model of the work each step's forward calls
//! did, counted from the calls themselves and from the routing statistics the forward returned
//! ([`FwdStats::expert_loads`]): so the difference between batched and per-item MoE decode comes
//! from the weights each path actually reads, not from a rule about any knob. Timings are then a
//! function of the inputs alone (identical with jitter off), which lets tests assert statistical
//! verdicts without meeting the shared machine's noise; `clock_jitter` adds seeded noise of a
//! known distribution (a per-run speed factor uniform in 1 ± jitter and a per-step one in
//! 1 ± jitter/4, as the hidden `fake` engine does).
//!
//! The cost of one forward call (additive: no overlap of memory traffic and arithmetic is
//! assumed, as on a CPU that dequantises int4 weights in its inner loop):
//!
//! ```text
//! call_ns = CALL_OVERHEAD_NS + (weight_bytes + kv_bytes) / BYTES_PER_NS + flops / FLOPS_PER_NS
//! step_ns = STEP_OVERHEAD_NS + Σ call_ns
//! ```
//!
//! - `weight_bytes`: per layer the attention projections (int4: ½ byte per weight plus an f32
//!   scale and offset per group and row), the norms and the MoE router (f32) or dense MLP (int4),
//!   read once per call whatever its row count; every routed expert's three int4 matrices once
//!   per *load* the forward counted (once per call for all its tokens on the grouped path, once
//!   per token and expert on the per-token path); the f32 lm_head once per call that samples;
//!   one f32 embedding row per token.
//! - `kv_bytes`: keys and values read by attention (every earlier position of each row, every
//!   layer) plus the row's own keys and values written.
//! - `flops`: 2 per multiply-add of every row through every projection, its routed experts and
//!   the router; attention's 4·(positions)·q-width per row and layer; the lm_head per sampled row.

use std::time::Instant;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::reference::executor::CallResult;
use crate::engine::reference::model::FwdCall;
use crate::engine::reference::spec::{Architecture, Dtype, EngineSpec};
use crate::engine::{EngineError, RunPhase};

/// Fixed overhead of one scheduler step (admission, composition, sampling, bookkeeping), ns.
pub const STEP_OVERHEAD_NS: f64 = 20_000.0;
/// Fixed overhead of one forward call (dispatch, activation buffers, thread fan-out), ns.
pub const CALL_OVERHEAD_NS: f64 = 10_000.0;
/// Memory bandwidth the forward streams weights and KV at, bytes per ns (= GB/s).
pub const BYTES_PER_NS: f64 = 17.0;
/// Arithmetic rate, floating-point operations per ns (= GFLOP/s).
pub const FLOPS_PER_NS: f64 = 26.0;
/// Largest accepted `clock_jitter`.
pub const MAX_JITTER: f64 = 0.5;

/// `[engine] clock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockMode {
    /// Wall-clock time of the real forward (the default).
    #[default]
    Wall,
    /// Time from the cost model of the counted work.
    Modelled,
}

impl ClockMode {
    /// `wall` / `modelled`.
    pub fn name(self) -> &'static str {
        match self {
            ClockMode::Wall => "wall",
            ClockMode::Modelled => "modelled",
        }
    }
}

/// The resolved clock settings of a reference engine.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClockSpec {
    /// Wall or modelled.
    pub mode: ClockMode,
    /// Relative noise of the modelled clock, 0 ≤ jitter ≤ [`MAX_JITTER`].
    pub jitter: f64,
    /// Seed of the jitter's RNG.
    pub seed: u64,
}

impl ClockSpec {
    /// Validates `[engine] clock`, `clock_jitter` and `clock_seed`.
    pub fn from_table(
        clock: Option<&str>,
        jitter: Option<f64>,
        seed: Option<u64>,
    ) -> Result<ClockSpec, EngineError> {
        let mode = match clock {
            None | Some("wall") => ClockMode::Wall,
            Some("modelled") => ClockMode::Modelled,
            Some(other) => {
                return Err(EngineError::Config(format!(
                    "invalid value `{other}` for [engine] clock: expected wall or modelled"
                )))
            }
        };
        if mode == ClockMode::Wall && (jitter.is_some() || seed.is_some()) {
            return Err(EngineError::Config(
                "[engine] clock_jitter and clock_seed apply only to clock = \"modelled\": set clock = \"modelled\" or remove them".to_string(),
            ));
        }
        let jitter = jitter.unwrap_or(0.0);
        if !(jitter.is_finite() && (0.0..=MAX_JITTER).contains(&jitter)) {
            return Err(EngineError::Config(format!(
                "[engine] clock_jitter = {jitter} is out of range: give [0, {MAX_JITTER}]"
            )));
        }
        Ok(ClockSpec {
            mode,
            jitter,
            seed: seed.unwrap_or(0),
        })
    }

    /// The settings and cost-model constants, for the engine details written to results.
    pub fn details(&self) -> serde_json::Value {
        match self.mode {
            ClockMode::Wall => serde_json::json!({ "mode": "wall" }),
            ClockMode::Modelled => serde_json::json!({
                "mode": "modelled",
                "jitter": self.jitter,
                "seed": self.seed,
                "step_overhead_ns": STEP_OVERHEAD_NS,
                "call_overhead_ns": CALL_OVERHEAD_NS,
                "bytes_per_ns": BYTES_PER_NS,
                "flops_per_ns": FLOPS_PER_NS,
            }),
        }
    }
}

/// Work one forward call did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// Weight bytes streamed.
    pub weight_bytes: f64,
    /// KV bytes read and written by attention.
    pub kv_bytes: f64,
    /// Floating-point operations.
    pub flops: f64,
}

impl Work {
    /// Modelled duration of the call, ns.
    pub fn ns(&self) -> f64 {
        CALL_OVERHEAD_NS
            + (self.weight_bytes + self.kv_bytes) / BYTES_PER_NS
            + self.flops / FLOPS_PER_NS
    }
}

/// Per-model sizes the cost model needs, computed once per engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostShape {
    layers: f64,
    hidden: f64,
    vocab: f64,
    /// Bytes of one layer's weights read once per call (attention, norms, router or dense MLP).
    layer_bytes: f64,
    /// Multiply-adds per row and layer outside attention scores (projections, router, MLP or
    /// the routed experts of one token).
    layer_macs_per_row: f64,
    /// Bytes of one expert's three int4 matrices.
    expert_bytes: f64,
    /// K+V bytes of one position in one layer.
    kv_bytes_per_pos: f64,
    /// Query width (heads × head_dim).
    q_width: f64,
}

impl CostShape {
    /// The sizes of `spec`.
    pub fn new(spec: &EngineSpec) -> CostShape {
        let f = |v: usize| v as f64;
        let h = f(spec.hidden_size);
        let q = f(spec.num_heads * spec.head_dim);
        let kv = f(spec.num_kv_heads * spec.head_dim);
        let int4 = 0.5 + 8.0 / f(spec.quant_group_size);
        let attn_params = h * (q + 2.0 * kv) + q * h;
        let norms = 2.0 * h * 4.0;
        let (ffn_bytes, ffn_macs, expert_bytes) = match spec.architecture {
            Architecture::Qwen3Moe => {
                let one = 3.0 * h * f(spec.moe_intermediate_size);
                let router = f(spec.num_experts) * h;
                (
                    router * 4.0,
                    router + f(spec.experts_per_token) * one,
                    one * int4,
                )
            }
            Architecture::Qwen2 => {
                let mlp = 3.0 * h * f(spec.intermediate_size);
                (mlp * int4, mlp, 0.0)
            }
        };
        let elem = match spec.dtype {
            Dtype::Fp32 => 4.0,
            Dtype::Fp16 => 2.0,
        };
        CostShape {
            layers: f(spec.num_layers),
            hidden: h,
            vocab: f(spec.vocab_size),
            layer_bytes: attn_params * int4 + norms + ffn_bytes,
            layer_macs_per_row: attn_params + ffn_macs,
            expert_bytes,
            kv_bytes_per_pos: 2.0 * kv * elem,
            q_width: q,
        }
    }

    /// The work `call` did; `expert_loads` is what its forward counted.
    pub fn work(&self, call: &FwdCall, expert_loads: u64) -> Work {
        let rows = call.num_rows() as f64;
        let sampled = call.items.iter().filter(|it| it.want_logits).count() as f64;
        // Σ over rows of the positions attended (row at position p sees p + 1 keys).
        let attended: f64 = call
            .items
            .iter()
            .map(|it| {
                let (s, n) = (it.start_pos as f64, it.tokens.len() as f64);
                n * s + n * (n + 1.0) / 2.0
            })
            .sum();
        let head_bytes = if sampled > 0.0 {
            self.vocab * self.hidden * 4.0 + self.hidden * 4.0
        } else {
            0.0
        };
        Work {
            weight_bytes: self.layers * self.layer_bytes
                + expert_loads as f64 * self.expert_bytes
                + head_bytes
                + rows * self.hidden * 4.0,
            kv_bytes: self.layers * self.kv_bytes_per_pos * (attended + rows),
            flops: 2.0 * rows * self.layers * self.layer_macs_per_row
                + 4.0 * self.layers * attended * self.q_width
                + 2.0 * sampled * self.vocab * self.hidden,
        }
    }
}

/// The clock of one run.
#[derive(Debug)]
pub enum Clock {
    /// Wall time since the run started.
    Wall(Instant),
    /// Modelled time (boxed: the RNG state is large, the wall variant is one `Instant`).
    Modelled(Box<Modelled>),
}

/// State of a modelled clock.
#[derive(Debug)]
pub struct Modelled {
    now_ns: u64,
    shape: CostShape,
    jitter: f64,
    run_factor: f64,
    rng: ChaCha8Rng,
}

/// The noise stream of a run: one per (repeat, phase), so the repeats of a cell differ, its
/// warm-up differs from its measured run, and the same repeat of the same seed repeats itself
/// exactly whether the engine was started once per cell or once per round.
pub fn noise_stream(repeat: u32, phase: RunPhase) -> u64 {
    let measured = u64::from(phase == RunPhase::Measured);
    (u64::from(repeat) << 1) | measured
}

/// A factor uniform in 1 ± `spread` (1 when `spread` is 0, drawing nothing).
fn factor(rng: &mut ChaCha8Rng, spread: f64) -> f64 {
    if spread == 0.0 {
        return 1.0;
    }
    // 53 random bits → a uniform in [0, 1).
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    1.0 + spread * (2.0 * u - 1.0)
}

impl Clock {
    /// The clock of a run whose noise is drawn from `stream` of the seed (see
    /// [`noise_stream`]).
    pub fn start(spec: &EngineSpec, clock: &ClockSpec, stream: u64) -> Clock {
        match clock.mode {
            ClockMode::Wall => Clock::Wall(Instant::now()),
            ClockMode::Modelled => {
                let mut rng = ChaCha8Rng::seed_from_u64(clock.seed);
                rng.set_stream(stream);
                let run_factor = factor(&mut rng, clock.jitter);
                Clock::Modelled(Box::new(Modelled {
                    now_ns: 0,
                    shape: CostShape::new(spec),
                    jitter: clock.jitter,
                    run_factor,
                    rng,
                }))
            }
        }
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        match self {
            Clock::Wall(start) => start.elapsed().as_nanos() as u64,
            Clock::Modelled(m) => m.now_ns,
        }
    }

    /// Whether time is modelled (idle waits jump instead of sleeping).
    pub fn is_modelled(&self) -> bool {
        matches!(self, Clock::Modelled(_))
    }

    /// Modelled: jumps to `t` if it lies ahead (an open-loop idle wait). Wall: nothing.
    pub fn jump_to(&mut self, t: u64) {
        if let Clock::Modelled(m) = self {
            m.now_ns = m.now_ns.max(t);
        }
    }

    /// Modelled: advances by the cost of a step that ran `calls` with `results`. Wall: nothing
    /// (the forward took its real time).
    pub fn step_done(&mut self, calls: &[FwdCall], results: &[CallResult]) {
        if let Clock::Modelled(m) = self {
            let work: f64 = calls
                .iter()
                .zip(results)
                .map(|(c, r)| m.shape.work(c, r.stats.expert_loads).ns())
                .sum();
            let noise = m.run_factor * factor(&mut m.rng, m.jitter / 4.0);
            let ns = ((STEP_OVERHEAD_NS + work) * noise).round().max(1.0);
            m.now_ns = m.now_ns.saturating_add(ns as u64);
        }
    }
}

#[cfg(test)]
mod tests;
