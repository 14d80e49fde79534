//! Qwen2's dense SwiGLU MLP (its attention is the shared GQA block with QKV bias).

use super::norm::swiglu;
use crate::engine::reference::int4::Int4Matrix;
use crate::engine::reference::spec::EngineSpec;
use crate::engine::reference::weights::WeightGen;

/// Dense MLP weights.
#[derive(Debug, Clone)]
pub struct DenseMlp {
    /// Fused gate|up, `2·intermediate × hidden`.
    pub gate_up: Int4Matrix,
    /// Down projection, `hidden × intermediate`.
    pub down: Int4Matrix,
    width: usize,
}

impl DenseMlp {
    /// Synthetic weights.
    pub fn generate(g: &mut WeightGen, spec: &EngineSpec) -> DenseMlp {
        let (h, i, gs) = (
            spec.hidden_size,
            spec.intermediate_size,
            spec.quant_group_size,
        );
        DenseMlp {
            gate_up: g.int4(2 * i, h, gs, 1.0 / (h as f32).sqrt()),
            down: g.int4(h, i, gs, 1.0 / (i as f32).sqrt()),
            width: i,
        }
    }

    /// Bytes streamed per pass.
    pub fn bytes(&self) -> usize {
        self.gate_up.bytes() + self.down.bytes()
    }

    /// `down(silu(gate(x)) · up(x))` for `m` rows.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut gu = vec![0f32; m * 2 * self.width];
        self.gate_up.matmul(x, m, &mut gu);
        let act = swiglu(&gu, self.width);
        let mut out = vec![0f32; m * self.down.rows()];
        self.down.matmul(&act, m, &mut out);
        out
    }
}
