//! Qwen3-MoE's routed SwiGLU experts: router softmax, top-k with renormalised weights
//! (`norm_topk_prob`), and two ways to evaluate the experts.
//!
//! - Grouped (Ferrum's batched MoE path): tokens are bucketed by expert, and each routed expert
//!   runs one int4 matmul over all of its tokens, so its weights are read and dequantised once per
//!   call however many tokens chose it.
//! - Per token (the legacy loop): every token runs its own `k` experts with GEMVs, re-reading an
//!   expert's weights for every token that picked it.
//!
//! Both accumulate a token's expert outputs in increasing expert id, so they agree to rounding.

use rayon::prelude::*;

use super::attention::exp_nonpositive;
use super::norm::swiglu;
use super::MoePath;
use crate::engine::reference::int4::{matmul_f32, Int4Matrix};
use crate::engine::reference::spec::EngineSpec;
use crate::engine::reference::weights::WeightGen;

/// One expert.
#[derive(Debug, Clone)]
pub struct Expert {
    /// Fused gate|up, `2·moe_intermediate × hidden`.
    pub gate_up: Int4Matrix,
    /// Down projection, `hidden × moe_intermediate`.
    pub down: Int4Matrix,
}

/// Router and experts of one layer.
#[derive(Debug, Clone)]
pub struct MoeWeights {
    /// Router, `num_experts × hidden` (f32: GPTQ checkpoints keep the gate unquantised).
    pub router: Vec<f32>,
    /// Experts.
    pub experts: Vec<Expert>,
    top_k: usize,
    width: usize,
}

impl MoeWeights {
    /// Synthetic weights.
    pub fn generate(g: &mut WeightGen, spec: &EngineSpec) -> MoeWeights {
        let (h, i, gs, e) = (
            spec.hidden_size,
            spec.moe_intermediate_size,
            spec.quant_group_size,
            spec.num_experts,
        );
        // A wider router spread gives a peaked, token-dependent routing like a trained gate.
        let router = g.f32_vec(e * h, 4.0 / (h as f32).sqrt());
        let experts = (0..e)
            .map(|_| Expert {
                gate_up: g.int4(2 * i, h, gs, 1.0 / (h as f32).sqrt()),
                down: g.int4(h, i, gs, 1.0 / (i as f32).sqrt()),
            })
            .collect();
        MoeWeights {
            router,
            experts,
            top_k: spec.experts_per_token,
            width: i,
        }
    }

    /// Bytes of router and all experts.
    pub fn bytes(&self) -> usize {
        self.router.len() * 4
            + self
                .experts
                .iter()
                .map(|x| x.gate_up.bytes() + x.down.bytes())
                .sum::<usize>()
    }

    /// Bytes of one expert.
    pub fn expert_bytes(&self) -> usize {
        self.experts
            .first()
            .map_or(0, |x| x.gate_up.bytes() + x.down.bytes())
    }

    /// Top-k experts of each of `m` rows: `(expert, weight)` sorted by expert id.
    pub fn route(&self, x: &[f32], m: usize) -> Vec<Vec<(usize, f32)>> {
        let e = self.experts.len();
        let h = self.router.len() / e;
        let mut logits = vec![0f32; m * e];
        matmul_f32(x, m, &self.router, e, h, &mut logits);
        logits
            .chunks_exact(e)
            .map(|row| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let probs: Vec<f32> = row.iter().map(|v| exp_nonpositive(v - max)).collect();
                let mut idx: Vec<usize> = (0..e).collect();
                // The k most probable (ties broken by lower id, a total order, so the chosen
                // set is deterministic), then in id order for a fixed summation order.
                if self.top_k < e {
                    idx.select_nth_unstable_by(self.top_k - 1, |a, b| {
                        probs[*b].total_cmp(&probs[*a]).then(a.cmp(b))
                    });
                }
                let mut top: Vec<(usize, f32)> =
                    idx[..self.top_k].iter().map(|i| (*i, probs[*i])).collect();
                top.sort_by_key(|t| t.0);
                let z: f32 = top.iter().map(|t| t.1).sum();
                for t in &mut top {
                    t.1 /= z;
                }
                top
            })
            .collect()
    }

    /// One expert over `m` rows. `split` lets the matmuls use the pool themselves (when few
    /// experts run at once); otherwise the experts are the unit of parallelism.
    fn expert_forward(&self, ex: usize, x: &[f32], m: usize, split: bool) -> Vec<f32> {
        let e = &self.experts[ex];
        let mut gu = vec![0f32; m * 2 * self.width];
        let mut out = vec![0f32; m * e.down.rows()];
        if split {
            e.gate_up.matmul(x, m, &mut gu);
            let act = swiglu(&gu, self.width);
            e.down.matmul(&act, m, &mut out);
        } else {
            e.gate_up.matmul_serial(x, m, &mut gu);
            let act = swiglu(&gu, self.width);
            e.down.matmul_serial(&act, m, &mut out);
        }
        out
    }

    /// MoE output for `m` rows; also returns which experts were used and the number of expert
    /// weight loads.
    pub fn forward(
        &self,
        spec: &EngineSpec,
        x: &[f32],
        m: usize,
        path: MoePath,
    ) -> (Vec<f32>, Vec<bool>, u64) {
        let h = spec.hidden_size;
        let routes = self.route(x, m);
        let mut used = vec![false; self.experts.len()];
        for r in &routes {
            for (e, _) in r {
                used[*e] = true;
            }
        }
        let mut out = vec![0f32; m * h];
        match path {
            MoePath::Grouped => {
                let mut buckets: Vec<Vec<(usize, f32)>> = vec![Vec::new(); self.experts.len()];
                for (row, r) in routes.iter().enumerate() {
                    for (e, w) in r {
                        buckets[*e].push((row, *w));
                    }
                }
                let active: Vec<usize> = (0..self.experts.len())
                    .filter(|e| !buckets[*e].is_empty())
                    .collect();
                let split = active.len() < 2 * rayon::current_num_threads();
                let results: Vec<Vec<f32>> = active
                    .par_iter()
                    .map(|e| {
                        let rows = &buckets[*e];
                        let mut xe = Vec::with_capacity(rows.len() * h);
                        for (row, _) in rows {
                            xe.extend_from_slice(&x[row * h..(row + 1) * h]);
                        }
                        self.expert_forward(*e, &xe, rows.len(), split)
                    })
                    .collect();
                // Experts in increasing id: each row accumulates in the same order as per-token.
                for (e, res) in active.iter().zip(&results) {
                    for (j, (row, w)) in buckets[*e].iter().enumerate() {
                        for (o, v) in out[row * h..(row + 1) * h]
                            .iter_mut()
                            .zip(&res[j * h..(j + 1) * h])
                        {
                            *o += w * v;
                        }
                    }
                }
                (out, used, active.len() as u64)
            }
            MoePath::PerToken => {
                for (row, r) in routes.iter().enumerate() {
                    let xr = &x[row * h..(row + 1) * h];
                    let results: Vec<Vec<f32>> = r
                        .par_iter()
                        .map(|(e, _)| self.expert_forward(*e, xr, 1, false))
                        .collect();
                    for ((_, w), res) in r.iter().zip(&results) {
                        for (o, v) in out[row * h..(row + 1) * h].iter_mut().zip(res) {
                            *o += w * v;
                        }
                    }
                }
                (out, used, (m * self.top_k) as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_and_per_token_experts_agree_and_routing_is_normalised() {
        let table = crate::engine::reference::spec::EngineTable {
            hidden_size: Some(64),
            num_heads: Some(8),
            num_kv_heads: Some(1),
            num_experts: Some(16),
            experts_per_token: Some(4),
            moe_intermediate_size: Some(32),
            quant_group_size: Some(32),
            vocab_size: Some(64),
            ..Default::default()
        };
        let spec = EngineSpec::resolve(Some(&table), "qwen3_moe").unwrap();
        let moe = MoeWeights::generate(&mut WeightGen::new(3), &spec);
        let m = 9;
        let x = WeightGen::new(4).f32_vec(m * 64, 1.0);
        let routes = moe.route(&x, m);
        for r in &routes {
            assert_eq!(r.len(), 4);
            assert!((r.iter().map(|t| t.1).sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let (a, used_a, loads_a) = moe.forward(&spec, &x, m, MoePath::Grouped);
        let (b, used_b, loads_b) = moe.forward(&spec, &x, m, MoePath::PerToken);
        assert_eq!(used_a, used_b);
        assert_eq!(loads_a, used_a.iter().filter(|u| **u).count() as u64);
        assert_eq!(loads_b, 36);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5);
        }
    }
}
