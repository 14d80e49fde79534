//! GPTQ-style int4 weight matrices and the kernels that multiply activations by them, plus the
//! f32 matmul used for the unquantised tensors (router, lm_head).
//!
//! Layout: a matrix has `rows` output features and `cols` input features (`y = x · Wᵀ`, like a
//! linear layer). Each row stores 4-bit levels `q ∈ 0..16` in blocks of 32 values packed into 16
//! bytes (byte `i` holds value `i` in its low nibble and value `16 + i` in its high nibble, so a
//! block unpacks with two straight vector loops), and one `(scale, zero)` pair per group of
//! `group` consecutive input features: `w = scale · (q − zero)`.
//!
//! Kernels never materialise the whole f32 matrix: they dequantise one row (small M: the row is
//! then dotted with every activation row, i.e. a GEMV when M = 1) or one tile of rows (large M:
//! the tile is handed to `matrixmultiply`'s sgemm against all M rows). Either way every weight is
//! read and dequantised once per call, however many activation rows there are — which is exactly
//! what makes a batched decode cheaper than M separate per-sequence decodes.

use std::cell::RefCell;

use rayon::prelude::*;

/// Values per packed block (16 bytes).
pub const PACK_BLOCK: usize = 32;

/// Activation-row count up to which the fused row kernels are used instead of sgemm: measured on
/// AVX2/AVX-512 hardware, `matrixmultiply` only overtakes them beyond ~32 rows, because packing
/// the whole weight matrix costs more than a few rows of multiply-adds.
pub const SMALL_M: usize = 32;

/// Rows of weights dequantised per sgemm tile.
const GEMM_TILE_ROWS: usize = 64;

/// Below this many weights (rows × cols) a matmul runs on the calling thread: splitting it
/// would cost more in scheduling than it saves.
const PAR_MIN_WEIGHTS: usize = 1 << 16;

/// A packed int4 matrix with per-group scale and zero point.
#[derive(Debug, Clone, PartialEq)]
pub struct Int4Matrix {
    rows: usize,
    cols: usize,
    group: usize,
    packed: Vec<u8>,
    /// Per (row, group): `scale`.
    scales: Vec<f32>,
    /// Per (row, group): `-scale · zero`, so dequantisation is one multiply-add.
    offsets: Vec<f32>,
}

impl Int4Matrix {
    /// Builds a matrix from raw parts: `levels` are `rows × cols` values in `0..16` (row-major),
    /// `scales`/`zeros` are `rows × cols/group`. Panics on inconsistent sizes (a programming
    /// error: callers validate dimensions first).
    pub fn from_levels(
        rows: usize,
        cols: usize,
        group: usize,
        levels: &[u8],
        scales: &[f32],
        zeros: &[f32],
    ) -> Int4Matrix {
        assert!(cols % PACK_BLOCK == 0 && group % PACK_BLOCK == 0 && cols % group == 0);
        assert_eq!(levels.len(), rows * cols);
        let groups = cols / group;
        assert_eq!(scales.len(), rows * groups);
        assert_eq!(zeros.len(), rows * groups);
        let mut packed = vec![0u8; rows * cols / 2];
        for (dst, src) in packed
            .chunks_exact_mut(16)
            .zip(levels.chunks_exact(PACK_BLOCK))
        {
            for i in 0..16 {
                dst[i] = (src[i] & 0x0f) | ((src[16 + i] & 0x0f) << 4);
            }
        }
        let offsets = scales.iter().zip(zeros).map(|(s, z)| -s * z).collect();
        Int4Matrix {
            rows,
            cols,
            group,
            packed,
            scales: scales.to_vec(),
            offsets,
        }
    }

    /// Builds a matrix from packed bytes (already in the block layout described in the module
    /// doc) and per-group scales and zeros; used by the synthetic weight generator.
    pub fn from_packed(
        rows: usize,
        cols: usize,
        group: usize,
        packed: Vec<u8>,
        scales: Vec<f32>,
        zeros: &[f32],
    ) -> Int4Matrix {
        assert!(cols % PACK_BLOCK == 0 && group % PACK_BLOCK == 0 && cols % group == 0);
        assert_eq!(packed.len(), rows * cols / 2);
        assert_eq!(scales.len(), rows * (cols / group));
        let offsets = scales.iter().zip(zeros).map(|(s, z)| -s * z).collect();
        Int4Matrix {
            rows,
            cols,
            group,
            packed,
            scales,
            offsets,
        }
    }

    /// Quantises an f32 matrix (`rows × cols`, row-major) with asymmetric min/max per group.
    pub fn quantize(w: &[f32], rows: usize, cols: usize, group: usize) -> Int4Matrix {
        let groups = cols / group;
        let mut levels = vec![0u8; rows * cols];
        let mut scales = vec![0f32; rows * groups];
        let mut zeros = vec![0f32; rows * groups];
        for r in 0..rows {
            for g in 0..groups {
                let vals = &w[r * cols + g * group..r * cols + (g + 1) * group];
                let lo = vals.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = vals.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let scale = if hi > lo { (hi - lo) / 15.0 } else { 1.0 };
                let zero = (-lo / scale).round().clamp(0.0, 15.0);
                scales[r * groups + g] = scale;
                zeros[r * groups + g] = zero;
                for (j, v) in vals.iter().enumerate() {
                    let q = (v / scale + zero).round().clamp(0.0, 15.0);
                    levels[r * cols + g * group + j] = q as u8;
                }
            }
        }
        Int4Matrix::from_levels(rows, cols, group, &levels, &scales, &zeros)
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes this matrix occupies (packed levels + scales + offsets), i.e. what a kernel streams.
    pub fn bytes(&self) -> usize {
        self.packed.len() + 4 * (self.scales.len() + self.offsets.len())
    }

    /// Dequantises row `r` into `out` (`cols` values).
    pub fn dequant_row(&self, r: usize, out: &mut [f32]) {
        kernels::dequant_rows(self, r, 1, out);
    }

    /// The whole matrix in f32 (tests and diagnostics only; kernels never do this).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        kernels::dequant_rows(self, 0, self.rows, &mut out);
        out
    }

    /// `out[m × rows] = x[m × cols] · Wᵀ`, dequantising inside the kernel; tiles of rows are
    /// spread over the current rayon pool when the matrix is large enough.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(x, m, out, true)
    }

    /// [`Int4Matrix::matmul`] on the calling thread only (for callers that already parallelise
    /// across matrices, e.g. over experts).
    pub fn matmul_serial(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(x, m, out, false)
    }

    fn matmul_with(&self, x: &[f32], m: usize, out: &mut [f32], allow_parallel: bool) {
        assert_eq!(x.len(), m * self.cols);
        assert_eq!(out.len(), m * self.rows);
        if m == 0 {
            return;
        }
        let tile = match (m <= SMALL_M, allow_parallel) {
            (true, true) => self.small_tile_rows(),
            (false, true) => self.gemm_tile_rows(),
            // One thread: one big tile for sgemm (activations packed once), L1-sized otherwise.
            (true, false) => 64,
            (false, false) => ((1usize << 17) / self.cols).max(GEMM_TILE_ROWS),
        };
        let tiles = self.rows.div_ceil(tile);
        let parallel = allow_parallel && self.rows * self.cols >= PAR_MIN_WEIGHTS && tiles > 1;
        let run_tile = |t: usize, dst: &mut [f32]| {
            let r0 = t * tile;
            let r1 = (r0 + tile).min(self.rows);
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                if m <= SMALL_M {
                    self.tile_small_m(x, m, r0, r1, dst);
                } else {
                    self.tile_gemm(x, m, r0, r1, dst, &mut s);
                }
            });
        };
        if m == 1 {
            // Output is contiguous per tile: write in place.
            if parallel {
                out.par_chunks_mut(tile)
                    .enumerate()
                    .for_each(|(t, dst)| run_tile(t, dst));
            } else {
                out.chunks_mut(tile)
                    .enumerate()
                    .for_each(|(t, dst)| run_tile(t, dst));
            }
            return;
        }
        let compute = |t: usize| {
            let len = (self.rows - t * tile).min(tile);
            let mut dst = vec![0f32; m * len];
            run_tile(t, &mut dst);
            dst
        };
        let parts: Vec<Vec<f32>> = if parallel {
            (0..tiles).into_par_iter().map(compute).collect()
        } else {
            (0..tiles).map(compute).collect()
        };
        scatter_tiles(&parts, m, self.rows, tile, out);
    }

    fn gemm_tile_rows(&self) -> usize {
        // Few, large tiles: sgemm repacks the activations for every tile.
        let threads = rayon::current_num_threads().max(1);
        // ... but a dequantised tile should stay in L2 (≤ 512 KiB of f32).
        let cache_rows = ((1usize << 17) / self.cols).max(GEMM_TILE_ROWS);
        GEMM_TILE_ROWS
            .max(self.rows.div_ceil(threads * 2).next_multiple_of(16))
            .min(cache_rows)
    }

    fn small_tile_rows(&self) -> usize {
        // About 8 tiles per thread for load balance, at least 16 rows per tile.
        let threads = rayon::current_num_threads().max(1);
        self.rows.div_ceil(threads * 8).max(16)
    }

    /// Rows `r0..r1` for `m ≤ SMALL_M`: a fused dequantise-and-dot kernel per row (a GEMV for
    /// `m = 1`), each weight block unpacked once per chunk of four activation rows.
    /// `dst` is `m × (r1 − r0)`.
    fn tile_small_m(&self, x: &[f32], m: usize, r0: usize, r1: usize, dst: &mut [f32]) {
        let k = self.cols;
        let len = r1 - r0;
        // Activation rows in chunks of up to 4: each chunk's accumulators stay in registers,
        // and every weight block is dequantised once per chunk (once in total for m ≤ 4).
        let mut m0 = 0;
        while m0 < m {
            let c = (m - m0).min(4);
            let xs = &x[m0 * k..(m0 + c) * k];
            let mut out = [0f32; 4];
            for r in r0..r1 {
                kernels::fused_rows(self, r, xs, c, &mut out);
                for (j, v) in out[..c].iter().enumerate() {
                    dst[(m0 + j) * len + (r - r0)] = *v;
                }
            }
            m0 += c;
        }
    }

    /// Rows `r0..r1` for large `m`: dequantise the tile once, then one sgemm for all rows.
    fn tile_gemm(
        &self,
        x: &[f32],
        m: usize,
        r0: usize,
        r1: usize,
        dst: &mut [f32],
        s: &mut Vec<f32>,
    ) {
        let k = self.cols;
        let len = r1 - r0;
        s.resize(len * k, 0.0);
        kernels::dequant_rows(self, r0, len, &mut s[..len * k]);
        sgemm_xwt(x, m, k, &s[..len * k], len, dst);
    }
}

thread_local! {
    /// Per-thread dequantisation buffer (a tile of f32 weights), reused across calls.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Copies per-tile results (`m × tile_len` each) into `out` (`m × n`).
fn scatter_tiles(parts: &[Vec<f32>], m: usize, n: usize, tile: usize, out: &mut [f32]) {
    for (t, part) in parts.iter().enumerate() {
        let c0 = t * tile;
        let len = part.len() / m;
        for mi in 0..m {
            out[mi * n + c0..mi * n + c0 + len].copy_from_slice(&part[mi * len..(mi + 1) * len]);
        }
    }
}

/// `c[m × n] = a[m × k] · bᵀ` where `b` is `n × k` row-major, via `matrixmultiply`.
pub fn sgemm_xwt(a: &[f32], m: usize, k: usize, b: &[f32], n: usize, c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    // SAFETY: the asserts above guarantee every index the strides describe is in bounds:
    // a is m×k (row stride k), bᵀ is read as k×n with row stride 1 and column stride k inside
    // b's n×k elements, and c is m×n with row stride n. The slices do not alias (c is &mut).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `c[m × n] = a[m × k] · b` where `b` is `k × n` row-major, via `matrixmultiply`.
pub fn sgemm_nn(a: &[f32], m: usize, k: usize, b: &[f32], n: usize, c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the assert guarantees in-bounds access for a (m×k, row stride k), b (k×n, row
    // stride n) and c (m×n, row stride n); c is an exclusive borrow, so nothing aliases it.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `out[m × n] = x[m × k] · wᵀ` for an f32 weight `w` (`n × k`): dot products for small `m`,
/// sgemm tiles otherwise, split over the current rayon pool when large enough.
pub fn matmul_f32(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, out: &mut [f32]) {
    assert_eq!(x.len(), m * k);
    assert_eq!(w.len(), n * k);
    assert_eq!(out.len(), m * n);
    if m == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let tile = if m <= SMALL_M {
        n.div_ceil(threads * 8).max(16)
    } else {
        GEMM_TILE_ROWS.max(n.div_ceil(threads * 2))
    };
    let tiles = n.div_ceil(tile);
    let parallel = n * k >= PAR_MIN_WEIGHTS && tiles > 1;
    let compute = |t: usize| {
        let r0 = t * tile;
        let r1 = (r0 + tile).min(n);
        let len = r1 - r0;
        let mut dst = vec![0f32; m * len];
        let wt = &w[r0 * k..r1 * k];
        if m <= SMALL_M {
            // Each weight row is loaded once per chunk of four activation rows.
            let mut m0 = 0;
            while m0 < m {
                let c = (m - m0).min(4);
                let mut o = [0f32; 4];
                for r in 0..len {
                    kernels::dot_rows(&wt[r * k..(r + 1) * k], &x[m0 * k..(m0 + c) * k], c, &mut o);
                    for (j, v) in o[..c].iter().enumerate() {
                        dst[(m0 + j) * len + r] = *v;
                    }
                }
                m0 += c;
            }
        } else {
            sgemm_xwt(x, m, k, wt, len, &mut dst);
        }
        dst
    };
    let parts: Vec<Vec<f32>> = if parallel {
        (0..tiles).into_par_iter().map(compute).collect()
    } else {
        (0..tiles).map(compute).collect()
    };
    scatter_tiles(&parts, m, n, tile, out);
}

/// Whether the AVX2+FMA kernel variants run on this CPU.
pub fn has_avx2_fma() -> bool {
    kernels::has_avx2_fma()
}

/// Dot product with the same vector kernel the int4 path uses.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels::dot(a, b)
}

/// The hand-written inner loops: AVX2+FMA intrinsics (chosen at run time when the CPU has them)
/// and portable fallbacks for every other target.
mod kernels {
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
        let f = |v: __m128i| {
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), scale, offset)
        };
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
    pub(super) fn fused_portable(
        w: &Int4Matrix,
        r: usize,
        xs: &[f32],
        c: usize,
        out: &mut [f32; 4],
    ) {
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
    unsafe fn fused_avx2_c<const C: usize>(
        w: &Int4Matrix,
        r: usize,
        xs: &[f32],
        out: &mut [f32; 4],
    ) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        // Small deterministic LCG; the values only need to be varied, not random.
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        let num: f32 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt();
        let den: f32 = b.iter().map(|y| y * y).sum::<f32>().sqrt();
        num / den
    }

    #[test]
    fn int4_matmul_matches_f32_matmul_on_dequantised_weights() {
        let (rows, cols, group) = (200, 256, 64);
        let w = Int4Matrix::quantize(&pseudo(rows * cols, 1), rows, cols, group);
        let deq = w.dequantize();
        for m in [1, 3, 4, 5, 17, 40] {
            let x = pseudo(m * cols, 7 + m as u32);
            let mut got = vec![0f32; m * rows];
            w.matmul(&x, m, &mut got);
            let mut want = vec![0f32; m * rows];
            // Plain triple loop in f64 as the unimpeachable reference.
            for mi in 0..m {
                for r in 0..rows {
                    let mut acc = 0f64;
                    for c in 0..cols {
                        acc += deq[r * cols + c] as f64 * x[mi * cols + c] as f64;
                    }
                    want[mi * rows + r] = acc as f32;
                }
            }
            let mut via_f32 = vec![0f32; m * rows];
            matmul_f32(&x, m, &deq, rows, cols, &mut via_f32);
            assert!(
                rel_err(&got, &want) < 1e-5,
                "m={m}: {}",
                rel_err(&got, &want)
            );
            assert!(rel_err(&got, &via_f32) < 1e-5, "m={m}");
        }
    }

    #[test]
    fn portable_kernels_match_the_dispatched_ones() {
        let (rows, cols, group) = (8, 128, 64);
        let w = Int4Matrix::quantize(&pseudo(rows * cols, 5), rows, cols, group);
        let x = pseudo(4 * cols, 6);
        let (mut a, mut b) = (vec![0f32; rows * cols], vec![0f32; rows * cols]);
        kernels::dequant_impl(&w, 0, rows, &mut a);
        kernels::dequant_rows(&w, 0, rows, &mut b);
        assert!(rel_err(&a, &b) < 1e-6);
        assert!(
            (kernels::dot_impl(&a[..cols], &x[..cols]) - dot(&a[..cols], &x[..cols])).abs() < 1e-4
        );
        for r in 0..rows {
            let (mut p, mut q) = ([0f32; 4], [0f32; 4]);
            kernels::fused_portable(&w, r, &x, 4, &mut p);
            kernels::fused_rows(&w, r, &x, 4, &mut q);
            assert!(rel_err(&p, &q) < 1e-5, "row {r}");
        }
    }

    #[test]
    fn quantize_roundtrip_is_close_and_layout_is_blockwise() {
        let (rows, cols, group) = (3, 64, 32);
        let src = pseudo(rows * cols, 3);
        let w = Int4Matrix::quantize(&src, rows, cols, group);
        let deq = w.dequantize();
        // One quantisation step of a range of ~2 is 2/15; rounding error is at most half of it.
        for (a, b) in src.iter().zip(&deq) {
            assert!((a - b).abs() <= 0.5 * 2.0 / 15.0 + 1e-6);
        }
        let mut row = vec![0f32; cols];
        w.dequant_row(1, &mut row);
        assert_eq!(&row[..], &deq[cols..2 * cols]);
        assert_eq!(w.bytes(), rows * cols / 2 + 4 * 2 * rows * (cols / group));
    }
}
