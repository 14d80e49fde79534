//! The workload's random numbers: seed derivation and our own documented mappings from raw
//! ChaCha20 output to integers and floats, so generated workloads are identical on every machine
//! and across versions of `rand` (whose distributions do not promise value stability).
//!
//! - Seeds: a `u64` is expanded to ChaCha20's 32-byte key with four SplitMix64 outputs written
//!   little-endian (not `seed_from_u64`, whose expansion belongs to `rand_core`).
//! - Streams: prompts use ChaCha stream 0, arrival times stream 1, so changing the load never
//!   changes the prompts.
//! - Per-repeat seed: `repeat_seed(base, r) = splitmix64(base ^ splitmix64(r + 1))`.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// ChaCha stream used for prompt token ids and lengths.
pub const STREAM_PROMPTS: u64 = 0;
/// ChaCha stream used for open-loop arrival times.
pub const STREAM_ARRIVALS: u64 = 1;

/// One step of SplitMix64 (Steele, Lea & Flood 2014) applied to `x`: a bijective 64-bit mixer.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of repeat `repeat` (0-based) of a cell whose base seed is `base`. Every cell and
/// every commit uses the same function, so repeat r always sees the same prompts.
pub fn repeat_seed(base: u64, repeat: u32) -> u64 {
    splitmix64(base ^ splitmix64(u64::from(repeat) + 1))
}

/// A ChaCha20 generator keyed by `seed` (SplitMix64 expansion, see the module doc) on `stream`.
pub fn chacha(seed: u64, stream: u64) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    let mut state = seed;
    for chunk in key.chunks_exact_mut(8) {
        state = splitmix64(state);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    let mut rng = ChaCha20Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

/// Uniform integer in `[0, n)` by Lemire's multiply-and-reject method (2019) on `next_u64`;
/// unbiased. `n == 0` returns 0 without drawing.
pub fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Uniform integer in `[lo, hi]` (inclusive), via [`below`]. Requires `lo <= hi`.
pub fn between(rng: &mut impl RngCore, lo: u64, hi: u64) -> u64 {
    lo + below(rng, hi - lo + 1)
}

/// Uniform float in the open interval (0, 1): `((next_u64 >> 11) + 0.5) · 2⁻⁵³`. Never 0, so
/// `ln` of it is finite.
pub fn open_unit(rng: &mut impl RngCore) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// Standard normal by the Box–Muller transform on two [`open_unit`] draws (cosine branch only,
/// so each call consumes exactly two `u64`s).
pub fn standard_normal(rng: &mut impl RngCore) -> f64 {
    let u1 = open_unit(rng);
    let u2 = open_unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(shape, scale=1) by Marsaglia & Tsang (2000); for shape < 1 the boost
/// `G(a) = G(a+1)·U^(1/a)`. Written here rather than taken from `rand_distr` so the values never
/// change under us. Requires `shape > 0`.
pub fn gamma(rng: &mut impl RngCore, shape: f64) -> f64 {
    if shape < 1.0 {
        let g = gamma(rng, shape + 1.0);
        return g * open_unit(rng).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = open_unit(rng);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_vector() {
        // Reference: SplitMix64 seeded with 0 yields 0xE220A8397B1DCDAF as its first output.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn repeat_seeds_differ_and_are_stable() {
        let s: Vec<u64> = (0..4).map(|r| repeat_seed(42, r)).collect();
        for i in 0..s.len() {
            for j in i + 1..s.len() {
                assert_ne!(s[i], s[j]);
            }
        }
        assert_eq!(repeat_seed(42, 0), repeat_seed(42, 0));
        assert_ne!(repeat_seed(42, 0), repeat_seed(43, 0));
    }

    #[test]
    fn streams_are_independent() {
        let mut a = chacha(7, STREAM_PROMPTS);
        let mut b = chacha(7, STREAM_ARRIVALS);
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = chacha(1, 0);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(below(&mut rng, 1), 0);
        assert_eq!(between(&mut rng, 5, 5), 5);
    }

    #[test]
    fn gamma_has_the_right_mean_and_variance() {
        // Gamma(k, 1) has mean k and variance k.
        for shape in [0.5, 1.0, 4.0] {
            let mut rng = chacha(3, 0);
            let xs: Vec<f64> = (0..40_000).map(|_| gamma(&mut rng, shape)).collect();
            let m = xs.iter().sum::<f64>() / xs.len() as f64;
            let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64;
            assert!(
                (m - shape).abs() < 0.05 * shape.max(1.0),
                "shape {shape}: mean {m}"
            );
            assert!(
                (v - shape).abs() < 0.1 * shape.max(1.0),
                "shape {shape}: var {v}"
            );
        }
    }
}
