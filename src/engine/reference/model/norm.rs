//! RMSNorm and the SwiGLU activation.

/// `out = x / rms(x) · gain` for each `width`-wide row of `x`, in place.
pub fn rms_norm_rows(x: &mut [f32], width: usize, gain: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(width) {
        rms_norm(row, gain, eps);
    }
}

/// RMSNorm of one row, in place.
pub fn rms_norm(row: &mut [f32], gain: &[f32], eps: f32) {
    let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for (v, g) in row.iter_mut().zip(gain) {
        *v = *v * inv * g;
    }
}

/// SwiGLU: rows of `gate_up` are `[gate (width) | up (width)]`; returns `silu(gate) · up`.
pub fn swiglu(gate_up: &[f32], width: usize) -> Vec<f32> {
    let rows = gate_up.len() / (2 * width);
    let mut out = vec![0f32; rows * width];
    for r in 0..rows {
        let (g, u) = gate_up[r * 2 * width..(r + 1) * 2 * width].split_at(width);
        for ((o, g), u) in out[r * width..(r + 1) * width].iter_mut().zip(g).zip(u) {
            *o = g * sigmoid(*g) * u;
        }
    }
    out
}

/// Logistic sigmoid through the inlined `exp` of non-positive arguments (vectorisable, unlike
/// libm's `expf`): `e = exp(−|x|)`, then `1/(1+e)` or `e/(1+e)` by sign.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = super::attention::exp_nonpositive(-x.abs());
    let num = if x >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms_and_swiglu_matches_definition() {
        let mut row = vec![3.0, -4.0, 0.0, 5.0];
        rms_norm(&mut row, &[1.0; 4], 0.0);
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
        for x in [-30.0f32, -3.0, -0.5, 0.0, 0.5, 3.0, 30.0] {
            assert!((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6);
        }
        let out = swiglu(&[1.0, -2.0, 3.0, 4.0], 2);
        assert!((out[0] - 3.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        assert!((out[1] - (-2.0 / (1.0 + 2.0f32.exp())) * 4.0).abs() < 1e-6);
    }
}
