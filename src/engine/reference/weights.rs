//! Seeded synthetic weights: the same bytes on every machine for a given seed.
//!
//! The RNG is ChaCha8 seeded with `seed_from_u64`; raw `next_u32`/`next_u64` outputs are mapped
//! to values with the small functions below (never `rand` distributions, whose algorithms may
//! change between versions). Int4 levels are raw random nibbles (uniform over 0..16) with a zero
//! point near the middle, and per-group scales chosen so that every linear layer has roughly
//! unit-variance outputs — the network then behaves like a trained one numerically (no blow-up
//! or collapse across layers), which is all a serving benchmark needs.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::int4::Int4Matrix;

/// Standard deviation of a level uniform over 0..16 around the 7.5 midpoint.
const LEVEL_STD: f32 = 4.61;

/// Deterministic weight source.
pub struct WeightGen {
    rng: ChaCha8Rng,
}

impl WeightGen {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> WeightGen {
        WeightGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A generator for `seed` positioned at 32-bit word `word` of its stream (where the CUDA
    /// backend's plan says a tensor starts).
    pub fn at_word(seed: u64, word: u64) -> WeightGen {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_word_pos(u128::from(word));
        WeightGen { rng }
    }

    /// Position in the stream, in 32-bit words consumed.
    pub fn word_pos(&self) -> u64 {
        self.rng.get_word_pos() as u64
    }

    /// The 256-bit ChaCha key `seed_from_u64` derives from `seed` (what the device generator
    /// is given).
    pub fn key(seed: u64) -> [u32; 8] {
        let bytes = ChaCha8Rng::seed_from_u64(seed).get_seed();
        std::array::from_fn(|i| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()))
    }

    /// Uniform in `[0, 1)` from the top 24 bits of one `next_u32`.
    pub fn unit01(&mut self) -> f32 {
        (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in `[-1, 1)`.
    pub fn symmetric(&mut self) -> f32 {
        self.unit01() * 2.0 - 1.0
    }

    /// `n` values uniform in `[-scale, scale)`.
    pub fn f32_vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.symmetric() * scale).collect()
    }

    /// [`WeightGen::f32_vec`] rounded to fp16 (round to nearest even), kept in f32: the
    /// embedding and the LM head, which GPTQ checkpoints store in fp16. The CUDA engine stores
    /// the same values as fp16, so both engines compute with identical weights.
    pub fn f16_vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| half::f16::from_f32(self.symmetric() * scale).to_f32())
            .collect()
    }

    /// `n` values uniform in `[1 - spread, 1 + spread)` (norm gains).
    pub fn gains(&mut self, n: usize, spread: f32) -> Vec<f32> {
        (0..n).map(|_| 1.0 + self.symmetric() * spread).collect()
    }

    /// A `rows × cols` int4 matrix whose dequantised entries have standard deviation about
    /// `std`: random nibbles, zero point 7 or 8, scales jittered ±25 % per group.
    pub fn int4(&mut self, rows: usize, cols: usize, group: usize, std: f32) -> Int4Matrix {
        let mut packed = vec![0u8; rows * cols / 2];
        for chunk in packed.chunks_mut(8) {
            let bytes = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let groups = rows * (cols / group);
        let base = std / LEVEL_STD;
        let scales: Vec<f32> = (0..groups)
            .map(|_| base * (0.75 + 0.5 * self.unit01()))
            .collect();
        let zeros: Vec<f32> = (0..groups)
            .map(|_| 7.0 + (self.rng.next_u32() & 1) as f32)
            .collect();
        Int4Matrix::from_packed(rows, cols, group, packed, scales, &zeros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_differs() {
        let a = WeightGen::new(7).int4(8, 64, 32, 0.1);
        let b = WeightGen::new(7).int4(8, 64, 32, 0.1);
        let c = WeightGen::new(8).int4(8, 64, 32, 0.1);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let deq = a.dequantize();
        let var = deq.iter().map(|v| v * v).sum::<f32>() / deq.len() as f32;
        assert!(var.sqrt() > 0.05 && var.sqrt() < 0.2, "std {}", var.sqrt());
    }
}
