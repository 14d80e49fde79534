//! Grouped-query attention over the paged KV cache (Ferrum's "legacy paged decode" on CPU):
//! QKV projection (+ bias for qwen2), per-head q/k RMSNorm (qwen3_moe), RoPE, K/V written to
//! each token's slot through the block table, causal attention read back through the block
//! table, output projection.

use rayon::prelude::*;

use super::norm::rms_norm;
use super::{AttnWeights, FwdCall, Model};
use crate::engine::reference::kv::{slot, LayerKv};

/// Vector width the attention loops are written for (one AVX2 register of f32).
const LANES: usize = 8;

/// Attention sub-block for all rows of a call; returns `rows × hidden` (before the residual add).
pub fn attention_block(
    model: &Model,
    w: &AttnWeights,
    kv: &mut LayerKv,
    call: &FwdCall,
    rows: &[(usize, usize)],
    hn: &[f32],
) -> Vec<f32> {
    let spec = &model.spec;
    let (nq, nkv, hd) = (spec.num_heads, spec.num_kv_heads, spec.head_dim);
    let width = (nq + 2 * nkv) * hd;
    let m = rows.len();
    let mut qkv = vec![0f32; m * width];
    w.qkv.matmul(hn, m, &mut qkv);
    for (r, &(item, pos)) in rows.iter().enumerate() {
        let row = &mut qkv[r * width..(r + 1) * width];
        if let Some(b) = &w.qkv_bias {
            for (x, b) in row.iter_mut().zip(b) {
                *x += b;
            }
        }
        let (q, rest) = row.split_at_mut(nq * hd);
        let (k, v) = rest.split_at_mut(nkv * hd);
        if let (Some(qn), Some(kn)) = (&w.q_norm, &w.k_norm) {
            for head in q.chunks_exact_mut(hd) {
                rms_norm(head, qn, spec.rms_eps);
            }
            for head in k.chunks_exact_mut(hd) {
                rms_norm(head, kn, spec.rms_eps);
            }
        }
        let (cos, sin) = model.rope.tables(pos);
        model.rope.apply(q, hd, &cos, &sin);
        model.rope.apply(k, hd, &cos, &sin);
        kv.write(slot(&call.items[item].blocks, pos), k, v);
    }
    // Every K/V of the call is written before any row attends, so a prompt chunk sees its own
    // earlier tokens (causal mask = attend to positions 0..=pos).
    let group = nq / nkv;
    let mut attn = vec![0f32; m * nq * hd];
    let kv = &*kv;
    let job = |(idx, out): (usize, &mut [f32])| {
        let (r, g) = (idx / nkv, idx % nkv);
        let (item, pos) = rows[r];
        let q = &qkv[r * width + g * group * hd..r * width + (g + 1) * group * hd];
        attend(kv, &call.items[item].blocks, pos, q, g, hd, nkv, out);
    };
    let chunk = group * hd;
    let work: usize = rows.iter().map(|(_, p)| p + 1).sum::<usize>() * nq * hd;
    if work >= 1 << 15 {
        attn.par_chunks_mut(chunk).enumerate().for_each(job);
    } else {
        attn.chunks_mut(chunk).enumerate().for_each(job);
    }
    let mut out = vec![0f32; m * spec.hidden_size];
    w.o.matmul(&attn, m, &mut out);
    out
}

/// Attention of the query heads sharing KV head `g` (`q`: `group × hd`) over positions
/// `0..=pos` of a sequence, read through its block table; writes `group × hd` into `out`.
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel signature: every argument is a plain dimension or buffer"
)]
pub fn attend(
    kv: &LayerKv,
    blocks: &[u32],
    pos: usize,
    q: &[f32],
    g: usize,
    hd: usize,
    nkv: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::engine::reference::int4::has_avx2_fma() {
        // SAFETY: the CPU supports avx2 and fma (checked just above).
        return unsafe { attend_avx2(kv, blocks, pos, q, g, hd, nkv, out) };
    }
    attend_impl(kv, blocks, pos, q, g, hd, nkv, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[expect(clippy::too_many_arguments, reason = "same signature as `attend`")]
unsafe fn attend_avx2(
    kv: &LayerKv,
    blocks: &[u32],
    pos: usize,
    q: &[f32],
    g: usize,
    hd: usize,
    nkv: usize,
    out: &mut [f32],
) {
    attend_impl(kv, blocks, pos, q, g, hd, nkv, out)
}

/// The attention loop. Queries are transposed to `hd × group` so each key element updates all
/// heads of the group with one contiguous (vectorisable) loop.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "same signature as `attend`")]
fn attend_impl(
    kv: &LayerKv,
    blocks: &[u32],
    pos: usize,
    q: &[f32],
    g: usize,
    hd: usize,
    nkv: usize,
    out: &mut [f32],
) {
    let group = q.len() / hd;
    let n = pos + 1;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut qt = vec![0f32; hd * group];
    for h in 0..group {
        for d in 0..hd {
            qt[d * group + h] = q[h * hd + d] * scale;
        }
    }
    // Scores stored position-major: `scores[t · group + h]`.
    let mut scores = vec![0f32; n * group];
    let mut tmp = vec![0f32; nkv * hd];
    for t in 0..n {
        let s = slot(blocks, t);
        let krow = match kv.slice_f32(s, false) {
            Some(k) => k,
            None => {
                kv.read(s, false, &mut tmp);
                &tmp
            }
        };
        let kh = &krow[g * hd..(g + 1) * hd];
        let acc = &mut scores[t * group..(t + 1) * group];
        if group % LANES == 0 {
            // Fixed-width lanes: the compiler emits whole-register multiply-adds.
            for (c, acc) in acc.chunks_exact_mut(LANES).enumerate() {
                let mut a = [0f32; LANES];
                for (d, kd) in kh.iter().enumerate() {
                    let qv = &qt[d * group + c * LANES..d * group + (c + 1) * LANES];
                    for l in 0..LANES {
                        a[l] += qv[l] * kd;
                    }
                }
                acc.copy_from_slice(&a);
            }
        } else {
            for (d, kd) in kh.iter().enumerate() {
                for (a, qv) in acc.iter_mut().zip(&qt[d * group..(d + 1) * group]) {
                    *a += qv * kd;
                }
            }
        }
    }
    let mut max = vec![f32::NEG_INFINITY; group];
    for row in scores.chunks_exact(group) {
        for (m, v) in max.iter_mut().zip(row) {
            *m = m.max(*v);
        }
    }
    let mut sum = vec![0f32; group];
    for row in scores.chunks_exact_mut(group) {
        for ((v, m), z) in row.iter_mut().zip(&max).zip(sum.iter_mut()) {
            *v = (*v - m).exp();
            *z += *v;
        }
    }
    out.fill(0.0);
    for t in 0..n {
        let s = slot(blocks, t);
        let vrow = match kv.slice_f32(s, true) {
            Some(v) => v,
            None => {
                kv.read(s, true, &mut tmp);
                &tmp
            }
        };
        let vh = &vrow[g * hd..(g + 1) * hd];
        for h in 0..group {
            let p = scores[t * group + h];
            let oh = &mut out[h * hd..(h + 1) * hd];
            if hd % LANES == 0 {
                for (o, v) in oh.chunks_exact_mut(LANES).zip(vh.chunks_exact(LANES)) {
                    for l in 0..LANES {
                        o[l] += p * v[l];
                    }
                }
            } else {
                for (o, v) in oh.iter_mut().zip(vh) {
                    *o += p * v;
                }
            }
        }
    }
    for h in 0..group {
        let inv = 1.0 / sum[h];
        for o in &mut out[h * hd..(h + 1) * hd] {
            *o *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reference::spec::Dtype;
    use crate::engine::reference::weights::WeightGen;

    /// Plain attention over contiguous K/V arrays (`n × nkv·hd`), the textbook definition.
    fn contiguous(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n: usize,
        g: usize,
        hd: usize,
        nkv: usize,
    ) -> Vec<f32> {
        let group = q.len() / hd;
        let mut out = vec![0f32; group * hd];
        for h in 0..group {
            let qh = &q[h * hd..(h + 1) * hd];
            let s: Vec<f64> = (0..n)
                .map(|t| {
                    let kh = &k[t * nkv * hd + g * hd..t * nkv * hd + (g + 1) * hd];
                    qh.iter()
                        .zip(kh)
                        .map(|(a, b)| (*a as f64) * (*b as f64))
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let acc: f64 = (0..n)
                    .map(|t| e[t] / z * v[t * nkv * hd + g * hd + d] as f64)
                    .sum();
                out[h * hd + d] = acc as f32;
            }
        }
        out
    }

    #[test]
    fn paged_attention_equals_contiguous_reference() {
        let (nkv, hd, group, n) = (2, 16, 4, 53);
        let mut gen = WeightGen::new(11);
        let k = gen.f32_vec(n * nkv * hd, 1.0);
        let v = gen.f32_vec(n * nkv * hd, 1.0);
        // Scrambled, non-contiguous block table inside a larger pool.
        let blocks = [7u32, 2, 9, 0];
        let mut kv = LayerKv::new(10, nkv * hd, Dtype::Fp32);
        for t in 0..n {
            kv.write(
                slot(&blocks, t),
                &k[t * nkv * hd..(t + 1) * nkv * hd],
                &v[t * nkv * hd..(t + 1) * nkv * hd],
            );
        }
        for (pos, g) in [(0, 0), (15, 1), (16, 0), (52, 1)] {
            let q = gen.f32_vec(group * hd, 1.0);
            let mut got = vec![0f32; group * hd];
            attend(&kv, &blocks, pos, &q, g, hd, nkv, &mut got);
            let want = contiguous(&q, &k, &v, pos + 1, g, hd, nkv);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5, "pos {pos}: {a} vs {b}");
            }
        }
    }
}
