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

/// The attention loop. Queries are transposed to `hd × group` and scores kept position-major
/// (`scores[t·group + h]`), so every inner loop runs across the `group` heads that share this
/// KV head — one vector register wide for the usual GQA group of 8 — and the softmax is
/// elementwise over a contiguous buffer. Slot offsets are resolved through the block table once
/// per call; f16 pools are first widened into contiguous f32 copies of this head's K and V.
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
    let width = nkv * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut qt = vec![0f32; hd * group];
    for h in 0..group {
        for d in 0..hd {
            qt[d * group + h] = q[h * hd + d] * scale;
        }
    }
    let (widened_k, widened_v);
    let (kbuf, vbuf, offs): (&[f32], &[f32], Vec<usize>) =
        match (kv.pool_f32(false), kv.pool_f32(true)) {
            (Some(k), Some(v)) => (
                k,
                v,
                (0..n).map(|t| slot(blocks, t) * width + g * hd).collect(),
            ),
            _ => {
                let mut tmp = vec![0f32; width];
                let (mut wk, mut wv) = (vec![0f32; n * hd], vec![0f32; n * hd]);
                for t in 0..n {
                    let s = slot(blocks, t);
                    kv.read(s, false, &mut tmp);
                    wk[t * hd..(t + 1) * hd].copy_from_slice(&tmp[g * hd..(g + 1) * hd]);
                    kv.read(s, true, &mut tmp);
                    wv[t * hd..(t + 1) * hd].copy_from_slice(&tmp[g * hd..(g + 1) * hd]);
                }
                widened_k = wk;
                widened_v = wv;
                (&widened_k, &widened_v, (0..n).map(|t| t * hd).collect())
            }
        };
    let mut scores = vec![0f32; n * group];
    for (t, &o) in offs.iter().enumerate() {
        let kh = &kbuf[o..o + hd];
        if group == LANES {
            // The usual GQA group of 8: the accumulator stays in one register across `d`.
            let mut a = [0f32; LANES];
            for (d, kd) in kh.iter().enumerate() {
                let qv: [f32; LANES] = qt[d * LANES..(d + 1) * LANES].try_into().expect("LANES");
                for l in 0..LANES {
                    a[l] += kd * qv[l];
                }
            }
            scores[t * LANES..(t + 1) * LANES].copy_from_slice(&a);
        } else {
            let acc = &mut scores[t * group..(t + 1) * group];
            for (d, kd) in kh.iter().enumerate() {
                axpy(acc, *kd, &qt[d * group..(d + 1) * group]);
            }
        }
    }
    let mut max = vec![f32::NEG_INFINITY; group];
    let mut sum = vec![0f32; group];
    if group == LANES {
        let (mut mx, mut sm) = ([f32::NEG_INFINITY; LANES], [0f32; LANES]);
        for row in scores.chunks_exact(LANES) {
            let row: [f32; LANES] = row.try_into().expect("LANES");
            for l in 0..LANES {
                mx[l] = if row[l] > mx[l] { row[l] } else { mx[l] };
            }
        }
        for row in scores.chunks_exact_mut(LANES) {
            let r: &mut [f32; LANES] = row.try_into().expect("LANES");
            let mut e = *r;
            for l in 0..LANES {
                e[l] = exp_nonpositive(e[l] - mx[l]);
                sm[l] += e[l];
            }
            *r = e;
        }
        max.copy_from_slice(&mx);
        sum.copy_from_slice(&sm);
    } else {
        for row in scores.chunks_exact(group) {
            for (m, v) in max.iter_mut().zip(row) {
                *m = if *v > *m { *v } else { *m };
            }
        }
        for row in scores.chunks_exact_mut(group) {
            for ((v, m), z) in row.iter_mut().zip(&max).zip(sum.iter_mut()) {
                *v = exp_nonpositive(*v - m);
                *z += *v;
            }
        }
    }
    // outᵀ[d][h] accumulates Σ_t p[t][h]·v[t][d], again across heads.
    let mut out_t = vec![0f32; hd * group];
    if group == LANES {
        // One register accumulator per `d`, streaming over positions.
        for d in 0..hd {
            let mut a = [0f32; LANES];
            for (t, &o) in offs.iter().enumerate() {
                let vd = vbuf[o + d];
                let p: [f32; LANES] = scores[t * LANES..(t + 1) * LANES]
                    .try_into()
                    .expect("LANES");
                for l in 0..LANES {
                    a[l] += vd * p[l];
                }
            }
            out_t[d * LANES..(d + 1) * LANES].copy_from_slice(&a);
        }
    } else {
        for (t, &o) in offs.iter().enumerate() {
            let p = &scores[t * group..(t + 1) * group];
            for d in 0..hd {
                axpy(&mut out_t[d * group..(d + 1) * group], vbuf[o + d], p);
            }
        }
    }
    for h in 0..group {
        let inv = 1.0 / sum[h];
        for d in 0..hd {
            out[h * hd + d] = out_t[d * group + h] * inv;
        }
    }
}

/// `dst += a · x`, in fixed-width chunks the compiler turns into whole-register multiply-adds.
#[inline(always)]
fn axpy(dst: &mut [f32], a: f32, x: &[f32]) {
    let body = dst.len() / LANES * LANES;
    for (dc, xc) in dst[..body]
        .chunks_exact_mut(LANES)
        .zip(x[..body].chunks_exact(LANES))
    {
        // Fixed-size arrays: no per-element bounds checks, so the loop vectorises.
        // Work on local copies: with no possible aliasing between the operands the loop
        // becomes one vector multiply-add instead of eight scalar load/add/store rounds.
        let dc: &mut [f32; LANES] = dc.try_into().expect("chunk of LANES");
        let xc: [f32; LANES] = xc.try_into().expect("chunk of LANES");
        let mut d = *dc;
        for l in 0..LANES {
            d[l] += a * xc[l];
        }
        *dc = d;
    }
    for (d, x) in dst[body..].iter_mut().zip(&x[body..]) {
        *d += a * x;
    }
}

/// `e^x` for `x ≤ 0` (softmax after max subtraction) as `2^(x·log2 e)`: integer part into the
/// exponent bits, fractional part by a degree-6 polynomial (relative error < 3e-6, dominated by rounding
/// `x·log2 e` in f32). Unlike libm's
/// `expf` it inlines and vectorises inside the softmax loop.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    let t = (x * std::f32::consts::LOG2_E).max(-126.0);
    // Round to nearest so the fraction is in [-0.5, 0.5), where the series converges fast.
    let i = (t + 0.5).floor();
    let f = t - i;
    // 2^f: Taylor coefficients of e^(f·ln 2).
    let p = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_11
                    + f * (0.009_618_129 + f * (0.001_333_355 + f * 0.000_154_035_3)))));
    // 2^i through the exponent bits. Adding 1.5·2^23 puts the integer `i` (in −126..=0) in the
    // low mantissa bits; this avoids a saturating float→int cast, which would not vectorise.
    let j = i + 12_582_912.0;
    let bits = j.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23;
    p * f32::from_bits(bits)
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
    fn fast_exp_matches_libm() {
        for i in 0..2000 {
            let x = -(i as f32) * 0.01;
            let (a, b) = (exp_nonpositive(x), x.exp());
            assert!((a - b).abs() <= 3e-6 * b, "{x}: {a} vs {b}");
        }
        assert!(exp_nonpositive(-1000.0) < 1e-37);
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
