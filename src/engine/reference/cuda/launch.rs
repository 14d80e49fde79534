//! Launch shapes of the kernels in `kernels/*.cu` (grid and block dimensions), computed on the
//! host so they are unit tested without a device.

/// Threads per block for the warp-per-row kernels.
pub const WARP_ROW_THREADS: u32 = 256;
/// Rows of activations one `int4_gemv` / `f32_gemv` / `f16_gemv` launch handles (`GEMV_MAX_M`).
pub const GEMV_MAX_M: usize = 8;
/// Tile of `int4_gemm` (`TM` = `TN`).
pub const GEMM_TILE: u32 = 64;

/// A launch: grid and block dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Grid (x, y, z).
    pub grid: (u32, u32, u32),
    /// Block (x, y, z).
    pub block: (u32, u32, u32),
}

fn blocks_for(items: u64, per_block: u64) -> u32 {
    u32::try_from(items.div_ceil(per_block).max(1)).expect("grid fits u32")
}

/// `int4_gemv`/`f32_gemv`/`f16_gemv`: one warp per output feature; `m` rows in launches of 8 (grid y).
pub fn gemv(n: usize, m: usize) -> Shape {
    let warps_per_block = u64::from(WARP_ROW_THREADS / 32);
    Shape {
        grid: (
            blocks_for(n as u64, warps_per_block),
            blocks_for(m as u64, GEMV_MAX_M as u64),
            1,
        ),
        block: (WARP_ROW_THREADS, 1, 1),
    }
}

/// Whether a call with `m` activation rows uses the GEMV path (else the tiled GEMM).
pub fn use_gemv(m: usize) -> bool {
    m <= GEMV_MAX_M
}

/// `int4_gemm`: 64 x 64 tiles, 256 threads.
pub fn gemm(n: usize, m: usize) -> Shape {
    Shape {
        grid: (
            blocks_for(n as u64, u64::from(GEMM_TILE)),
            blocks_for(m as u64, u64::from(GEMM_TILE)),
            1,
        ),
        block: (256, 1, 1),
    }
}

/// `int4_gemm_grouped`: row tiles sized for the busiest expert, one z-slice per expert.
pub fn gemm_grouped(n: usize, max_rows_per_expert: usize, experts: usize) -> Shape {
    Shape {
        grid: (
            blocks_for(n as u64, u64::from(GEMM_TILE)),
            blocks_for(max_rows_per_expert as u64, u64::from(GEMM_TILE)),
            u32::try_from(experts).expect("experts fit u32"),
        ),
        block: (256, 1, 1),
    }
}

/// `int4_gemv_per_pair`: one warp per (pair, output feature).
pub fn gemv_per_pair(pairs: usize, n: usize) -> Shape {
    Shape {
        grid: (
            blocks_for((pairs * n) as u64, u64::from(WARP_ROW_THREADS / 32)),
            1,
            1,
        ),
        block: (WARP_ROW_THREADS, 1, 1),
    }
}

/// `paged_attention`: grid (tokens, head groups), 4 warps (heads) per block.
pub fn attention(tokens: usize, heads: usize) -> Shape {
    Shape {
        grid: (
            u32::try_from(tokens).expect("tokens fit u32"),
            blocks_for(heads as u64, 4),
            1,
        ),
        block: (128, 1, 1),
    }
}

/// Row kernels (`rms_norm`, `embed`, `argmax_rows`, `moe_combine`): one block per row, threads
/// a multiple of 32 up to 1024 and at most the row width rounded up.
pub fn per_row(rows: usize, width: usize) -> Shape {
    let threads = (width.div_ceil(32) * 32).clamp(32, 1024) as u32;
    Shape {
        grid: (u32::try_from(rows).expect("rows fit u32"), 1, 1),
        block: (threads, 1, 1),
    }
}

/// Elementwise kernels over `n` values, 256 threads per block.
pub fn elementwise(n: u64) -> Shape {
    Shape {
        grid: (blocks_for(n, 256), 1, 1),
        block: (256, 1, 1),
    }
}

/// `chacha8_words` and `uniform_f16`: one thread per 16-word ChaCha block touched by words
/// `[first, first + n)`.
pub fn chacha8_words(first: u64, n: u64) -> Shape {
    let blocks = if n == 0 {
        0
    } else {
        (first + n - 1) / 16 - first / 16 + 1
    };
    Shape {
        grid: (blocks_for(blocks, 256), 1, 1),
        block: (256, 1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_every_output_exactly_once_or_more() {
        // Real m3 shapes: qkv (32 + 2*4) * 128 = 5120 outputs of 2048 inputs.
        let s = gemv(5120, 1);
        assert_eq!(s.grid, (640, 1, 1));
        assert_eq!(s.block.0 / 32 * s.grid.0, 5120);
        assert_eq!(gemv(5121, 9).grid, (641, 2, 1));
        assert!(use_gemv(8) && !use_gemv(9));
        assert_eq!(gemm(2048, 130).grid, (32, 3, 1));
        assert_eq!(gemm_grouped(1536, 65, 128).grid, (24, 2, 128));
        assert_eq!(gemv_per_pair(8, 1536).grid, (1536, 1, 1));
        assert_eq!(attention(3, 32).grid, (3, 8, 1));
        assert_eq!(per_row(4, 2048).block, (1024, 1, 1));
        assert_eq!(per_row(4, 100).block, (128, 1, 1));
        assert_eq!(per_row(4, 1).block, (32, 1, 1));
        assert_eq!(elementwise(0).grid, (1, 1, 1));
        assert_eq!(elementwise(257).grid, (2, 1, 1));
    }

    #[test]
    fn chacha_launch_counts_blocks_touched() {
        // Words 15..17 touch blocks 0 and 1.
        assert_eq!(chacha8_words(15, 2).grid.0, 1);
        let blocks = |first: u64, n: u64| (first + n - 1) / 16 - first / 16 + 1;
        assert_eq!(blocks(15, 2), 2);
        assert_eq!(blocks(0, 16), 1);
        assert_eq!(blocks(0, 17), 2);
        // 1 GiB of words = 16M blocks = 65536 launches of 256 threads.
        assert_eq!(chacha8_words(0, 1 << 28).grid.0, 65536);
    }
}
