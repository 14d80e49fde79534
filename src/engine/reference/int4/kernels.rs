//! The hand-written inner loops: AVX2+FMA intrinsics (chosen at run time when the CPU has them)
//! and portable fallbacks for every other target.

use super::{Int4Matrix, PACK_BLOCK};

#[inline(always)]
pub(super) fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 16];
    let body = n / 16 * 16;
    for (ca, cb) in a[..body].chunks_exact(16).zip(b[..body].chunks_exact(16)) {
        // Fixed-size arrays: no per-element bounds checks, so the loop vectorises.
        let ca: &[f32; 16] = ca.try_into().expect("chunk of 16");
        let cb: &[f32; 16] = cb.try_into().expect("chunk of 16");
        for l in 0..16 {
            acc[l] += ca[l] * cb[l];
        }
    }
    let mut tail = 0f32;
    for i in body..n {
        tail += a[i] * b[i];
    }
    // Pairwise reduction keeps the rounding independent of the vector width.
    let mut w = 8;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0] + tail
}

#[inline(always)]
pub(super) fn dequant_impl(w: &Int4Matrix, r0: usize, rows: usize, out: &mut [f32]) {
    let k = w.cols;
    let groups = k / w.group;
    let blocks_per_group = w.group / PACK_BLOCK;
    for r in r0..r0 + rows {
        let row_out = &mut out[(r - r0) * k..(r - r0 + 1) * k];
        let row_packed = &w.packed[r * k / 2..(r + 1) * k / 2];
        for g in 0..groups {
            let s = w.scales[r * groups + g];
            let o = w.offsets[r * groups + g];
            for b in 0..blocks_per_group {
                let blk = g * blocks_per_group + b;
                let bytes: &[u8; 16] = row_packed[blk * 16..blk * 16 + 16]
                    .try_into()
                    .expect("16 bytes");
                let dst: &mut [f32; PACK_BLOCK] = (&mut row_out
                    [blk * PACK_BLOCK..(blk + 1) * PACK_BLOCK])
                    .try_into()
                    .expect("one block");
                // Local arrays, stored once: the compiler cannot then worry that the
                // output aliases the packed bytes, and vectorises the unpacking.
                let bytes = *bytes;
                let mut vals = [0f32; PACK_BLOCK];
                for i in 0..16 {
                    let q = (bytes[i] & 0x0f) as f32;
                    vals[i] = q * s + o;
                }
                for i in 0..16 {
                    let q = (bytes[i] >> 4) as f32;
                    vals[16 + i] = q * s + o;
                }
                *dst = vals;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY (loads): i + 16 ≤ n ≤ len of both slices.
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 8)),
            _mm256_loadu_ps(pb.add(i + 8)),
            acc1,
        );
        i += 16;
    }
    let mut tail = 0f32;
    for j in i..n {
        tail += a[j] * b[j];
    }
    hsum(_mm256_add_ps(acc0, acc1)) + tail
}

/// Sum of the eight lanes, pairwise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
        + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

/// Unpacks one 16-byte block into four vectors of dequantised weights
/// (values 0–7, 8–15 from the low nibbles; 16–23, 24–31 from the high nibbles).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn unpack_block(
    bytes: *const u8,
    scale: std::arch::x86_64::__m256,
    offset: std::arch::x86_64::__m256,
) -> [std::arch::x86_64::__m256; 4] {
    use std::arch::x86_64::*;
    let raw = _mm_loadu_si128(bytes as *const __m128i);
    let mask = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(raw, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
    let f =
        |v: __m128i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), scale, offset);
    [
        f(lo),
        f(_mm_srli_si128(lo, 8)),
        f(hi),
        f(_mm_srli_si128(hi, 8)),
    ]
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dequant_avx2(w: &Int4Matrix, r0: usize, rows: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let k = w.cols;
    let groups = k / w.group;
    let blocks_per_group = w.group / PACK_BLOCK;
    for r in r0..r0 + rows {
        let row_out = &mut out[(r - r0) * k..(r - r0 + 1) * k];
        let row_packed = &w.packed[r * k / 2..(r + 1) * k / 2];
        for g in 0..groups {
            let sc = _mm256_set1_ps(w.scales[r * groups + g]);
            let of = _mm256_set1_ps(w.offsets[r * groups + g]);
            for b in 0..blocks_per_group {
                let blk = g * blocks_per_group + b;
                // In bounds: the row holds k/2 bytes and k values, blk < k/32.
                let v = unpack_block(row_packed[blk * 16..].as_ptr(), sc, of);
                let dst = row_out[blk * PACK_BLOCK..(blk + 1) * PACK_BLOCK].as_mut_ptr();
                for (q, vec) in v.iter().enumerate() {
                    _mm256_storeu_ps(dst.add(q * 8), *vec);
                }
            }
        }
    }
}

#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `Σ a[i]·b[i]`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports avx2 and fma (checked just above).
        return unsafe { dot_avx2(a, b) };
    }
    dot_impl(a, b)
}

/// Portable fused dequantise-and-dot of row `r` against `c ≤ 4` activation rows `xs`
/// (`c × cols`): each 32-value block is unpacked once and applied to every row.
pub(super) fn fused_portable(w: &Int4Matrix, r: usize, xs: &[f32], c: usize, out: &mut [f32; 4]) {
    let k = w.cols;
    let groups = k / w.group;
    let blocks_per_group = w.group / PACK_BLOCK;
    let row_packed = &w.packed[r * k / 2..(r + 1) * k / 2];
    let mut acc = [[0f32; 16]; 4];
    for g in 0..groups {
        let sc = w.scales[r * groups + g];
        let of = w.offsets[r * groups + g];
        for b in 0..blocks_per_group {
            let blk = g * blocks_per_group + b;
            let bytes = &row_packed[blk * 16..blk * 16 + 16];
            let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
            for i in 0..16 {
                lo[i] = (bytes[i] & 0x0f) as f32 * sc + of;
                hi[i] = (bytes[i] >> 4) as f32 * sc + of;
            }
            for (j, a) in acc[..c].iter_mut().enumerate() {
                let xb = &xs[j * k + blk * PACK_BLOCK..j * k + (blk + 1) * PACK_BLOCK];
                for i in 0..16 {
                    a[i] += lo[i] * xb[i] + hi[i] * xb[16 + i];
                }
            }
        }
    }
    for (j, a) in acc[..c].iter_mut().enumerate() {
        let mut wdt = 8;
        while wdt > 0 {
            for l in 0..wdt {
                a[l] += a[l + wdt];
            }
            wdt /= 2;
        }
        out[j] = a[0];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fused_avx2(w: &Int4Matrix, r: usize, xs: &[f32], c: usize, out: &mut [f32; 4]) {
    match c {
        1 => fused_avx2_c::<1>(w, r, xs, out),
        2 => fused_avx2_c::<2>(w, r, xs, out),
        3 => fused_avx2_c::<3>(w, r, xs, out),
        _ => fused_avx2_c::<4>(w, r, xs, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fused_avx2_c<const C: usize>(w: &Int4Matrix, r: usize, xs: &[f32], out: &mut [f32; 4]) {
    use std::arch::x86_64::*;
    let k = w.cols;
    let groups = k / w.group;
    let blocks_per_group = w.group / PACK_BLOCK;
    let row_packed = &w.packed[r * k / 2..(r + 1) * k / 2];
    // Two accumulators per activation row keep the FMA chains independent.
    let mut acc = [[_mm256_setzero_ps(); 2]; C];
    for g in 0..groups {
        let sc = _mm256_set1_ps(w.scales[r * groups + g]);
        let of = _mm256_set1_ps(w.offsets[r * groups + g]);
        for b in 0..blocks_per_group {
            let blk = g * blocks_per_group + b;
            let v = unpack_block(row_packed[blk * 16..].as_ptr(), sc, of);
            for (j, a) in acc.iter_mut().enumerate() {
                // In bounds: the caller asserted xs holds C rows of k values.
                let x = xs[j * k + blk * PACK_BLOCK..].as_ptr();
                a[0] = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(x), a[0]);
                a[1] = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(x.add(8)), a[1]);
                a[0] = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(x.add(16)), a[0]);
                a[1] = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(x.add(24)), a[1]);
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        out[j] = hsum(_mm256_add_ps(a[0], a[1]));
    }
}

/// Row `r` dotted with `c ≤ 4` activation rows (`xs`, `c × cols`), dequantising on the fly;
/// results in `out[..c]`. The per-row result does not depend on `c`.
pub fn fused_rows(w: &Int4Matrix, r: usize, xs: &[f32], c: usize, out: &mut [f32; 4]) {
    assert!(r < w.rows && (1..=4).contains(&c) && xs.len() >= c * w.cols);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports avx2 and fma (checked just above).
        return unsafe { fused_avx2(w, r, xs, c, out) };
    }
    fused_portable(w, r, xs, c, out)
}

/// `w · xs[j]` for `c ≤ 4` rows `xs` (`c × w.len()`), loading `w` once; results in `out[..c]`.
pub fn dot_rows(w: &[f32], xs: &[f32], c: usize, out: &mut [f32; 4]) {
    assert!((1..=4).contains(&c) && xs.len() >= c * w.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports avx2 and fma (checked just above).
        unsafe {
            match c {
                1 => dot_rows_avx2::<1>(w, xs, out),
                2 => dot_rows_avx2::<2>(w, xs, out),
                3 => dot_rows_avx2::<3>(w, xs, out),
                _ => dot_rows_avx2::<4>(w, xs, out),
            }
        }
        return;
    }
    let k = w.len();
    for j in 0..c {
        out[j] = dot_impl(w, &xs[j * k..(j + 1) * k]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2<const C: usize>(w: &[f32], xs: &[f32], out: &mut [f32; 4]) {
    use std::arch::x86_64::*;
    let k = w.len();
    let mut acc = [[_mm256_setzero_ps(); 2]; C];
    let mut i = 0;
    // In bounds: i + 16 ≤ k, and the caller asserted xs holds C rows of k values.
    while i + 16 <= k {
        let w0 = _mm256_loadu_ps(w.as_ptr().add(i));
        let w1 = _mm256_loadu_ps(w.as_ptr().add(i + 8));
        for (j, a) in acc.iter_mut().enumerate() {
            let x = xs.as_ptr().add(j * k + i);
            a[0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), a[0]);
            a[1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.add(8)), a[1]);
        }
        i += 16;
    }
    for (j, a) in acc.iter().enumerate() {
        let mut tail = 0f32;
        for t in i..k {
            tail += w[t] * xs[j * k + t];
        }
        out[j] = hsum(_mm256_add_ps(a[0], a[1])) + tail;
    }
}

/// Dequantises rows `r0..r0+rows` into `out` (`rows × cols`).
pub fn dequant_rows(w: &Int4Matrix, r0: usize, rows: usize, out: &mut [f32]) {
    assert!(r0 + rows <= w.rows && out.len() >= rows * w.cols);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports avx2 and fma (checked just above).
        return unsafe { dequant_avx2(w, r0, rows, out) };
    }
    dequant_impl(w, r0, rows, out)
}
