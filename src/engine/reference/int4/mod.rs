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
    /// The device layout: packed levels, per-(row, group) scales and offsets (`-scale · zero`).
    pub fn parts(&self) -> (&[u8], &[f32], &[f32]) {
        (&self.packed, &self.scales, &self.offsets)
    }

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
        // Rows of weights outermost, so each is fetched from memory once (then sits in L1)
        // however many activation rows there are; activation rows go in chunks of up to 4
        // whose accumulators stay in registers.
        let mut out = [0f32; 4];
        for r in r0..r1 {
            let mut m0 = 0;
            while m0 < m {
                let c = (m - m0).min(4);
                kernels::fused_rows(self, r, &x[m0 * k..(m0 + c) * k], c, &mut out);
                for (j, v) in out[..c].iter().enumerate() {
                    dst[(m0 + j) * len + (r - r0)] = *v;
                }
                m0 += c;
            }
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
            // Weight rows outermost: each is read from memory once, then reused from L1 for
            // every chunk of four activation rows.
            let mut o = [0f32; 4];
            for r in 0..len {
                let mut m0 = 0;
                while m0 < m {
                    let c = (m - m0).min(4);
                    kernels::dot_rows(&wt[r * k..(r + 1) * k], &x[m0 * k..(m0 + c) * k], c, &mut o);
                    for (j, v) in o[..c].iter().enumerate() {
                        dst[(m0 + j) * len + r] = *v;
                    }
                    m0 += c;
                }
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

mod kernels;

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
