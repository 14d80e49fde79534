//! Rotary position embeddings (rotate-half layout, as in the Qwen HF implementations).

/// Precomputed inverse frequencies for one head width.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Frequencies `theta^(-2i/head_dim)` for `i < head_dim/2`.
    pub fn new(head_dim: usize, theta: f32) -> Rope {
        let half = head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| theta.powf(-(2.0 * i as f32) / head_dim as f32))
            .collect();
        Rope { inv_freq }
    }

    /// The inverse frequencies (what the CUDA backend uploads, so both backends rotate alike).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// `(cos, sin)` tables for position `pos`.
    pub fn tables(&self, pos: usize) -> (Vec<f32>, Vec<f32>) {
        // f64 angle: positions up to the context length times small frequencies stay exact.
        self.inv_freq
            .iter()
            .map(|f| {
                let a = pos as f64 * *f as f64;
                (a.cos() as f32, a.sin() as f32)
            })
            .unzip()
    }

    /// Rotates every head (`head_dim`-wide chunk) of `x` with the given tables.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = head_dim / 2;
        for head in x.chunks_exact_mut(head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_preserves_norm_and_relative_positions() {
        let rope = Rope::new(8, 10000.0);
        let q0: Vec<f32> = (0..8).map(|i| i as f32 * 0.3 - 1.0).collect();
        let k0: Vec<f32> = (0..8).map(|i| 0.5 - i as f32 * 0.1).collect();
        let dot_at = |pq: usize, pk: usize| {
            let (mut q, mut k) = (q0.clone(), k0.clone());
            let (c, s) = rope.tables(pq);
            rope.apply(&mut q, 8, &c, &s);
            let (c, s) = rope.tables(pk);
            rope.apply(&mut k, 8, &c, &s);
            q.iter().zip(&k).map(|(a, b)| a * b).sum::<f32>()
        };
        // Scores depend only on the distance between positions.
        assert!((dot_at(5, 2) - dot_at(13, 10)).abs() < 1e-4);
        let mut q = q0.clone();
        let (c, s) = rope.tables(7);
        rope.apply(&mut q, 8, &c, &s);
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
        assert!((n(&q) - n(&q0)).abs() < 1e-4);
    }
}
