//! Paired comparison of two cells measured in the same interleaved rounds: the round is a block,
//! so a slow drift of the machine (another tenant, a thermal state, the page cache) that moves
//! every cell of a round together cancels in the within-round difference instead of looking like
//! a knob effect.
//!
//! - **Paired t-test** (Student 1908; e.g. Montgomery, *Design and Analysis of Experiments*,
//!   8th ed., §2.5.1 "The paired comparison problem", the randomized complete block design with
//!   two treatments): `d_r = b_r − a_r` over the rounds `r` in which both cells have a value,
//!   `t = d̄ / (s_d/√n)` with `n − 1` degrees of freedom, two-sided p from Student's t.
//! - **Relative change** `R − 1 = b̄/ā − 1` with a 95 % CI by the delta method for a ratio of
//!   *correlated* means (the ratio estimator; Cochran, *Sampling Techniques*, 3rd ed., §6.3):
//!   `se(R) ≈ s_e / (√n·|ā|)` with residuals `e_r = b_r − R·a_r`, so the covariance between the
//!   two cells within a round is used instead of ignored; interval `R − 1 ± t(0.975, n−1)·se`.
//!   With independent sides this reduces to the Welch/delta-method interval of
//!   [`super::difference`].
//! - The **verdict** is the same rule as `compare`'s ([`super::difference::judge`]): p < α and
//!   the whole CI beyond the threshold, or the whole CI inside ±threshold.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::difference::{verdict_rule, Comparison, RelativeChange, Verdict, Welch};
use super::MIN_REPEATS_FOR_CI;
use crate::metric::Direction;

/// Values of two cells in the rounds where both have one (a round missing on either side, e.g.
/// a failed repeat, drops out of the pairing).
pub fn shared_rounds(a: &[Option<f64>], b: &[Option<f64>]) -> (Vec<f64>, Vec<f64>) {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .unzip()
}

/// The paired t-test of `b` against `a` (equal lengths, round r of each side paired). `None`
/// below two pairs or for unequal lengths. A zero spread of the differences gives p = 1 for a
/// zero mean difference and p = 0 otherwise (as [`super::welch`] does).
pub fn paired_t(a: &[f64], b: &[f64]) -> Option<Welch> {
    let n = a.len();
    if n < 2 || b.len() != n {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let mean = super::mean(&d)?;
    let sd = super::std_dev(&d)?;
    let df = (n - 1) as f64;
    if sd <= 0.0 {
        let (t, p) = if mean == 0.0 {
            (0.0, 1.0)
        } else {
            (mean.signum() * f64::INFINITY, 0.0)
        };
        return Some(Welch { t, df, p });
    }
    let t = mean / (sd / (n as f64).sqrt());
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    Some(Welch { t, df, p })
}

/// Relative change `b̄/ā − 1` of paired rounds with its 95 % CI (ratio estimator, n−1 df).
/// `None` below two pairs or when `a`'s mean is 0 or not finite.
pub fn paired_relative_change(a: &[f64], b: &[f64]) -> Option<RelativeChange> {
    let n = a.len();
    if n < 2 || b.len() != n {
        return None;
    }
    let (ma, mb) = (super::mean(a)?, super::mean(b)?);
    if ma == 0.0 || !ma.is_finite() || !mb.is_finite() {
        return None;
    }
    let ratio = mb / ma;
    let residuals: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - ratio * x).collect();
    let se = super::std_dev(&residuals)? / ((n as f64).sqrt() * ma.abs());
    let t = if se > 0.0 {
        StudentsT::new(0.0, 1.0, (n - 1) as f64)
            .ok()?
            .inverse_cdf(0.975)
    } else {
        0.0
    };
    let estimate = ratio - 1.0;
    Some(RelativeChange {
        estimate,
        lower: estimate - t * se,
        upper: estimate + t * se,
    })
}

/// `compare`'s verdict rule on paired rounds (`a[r]` and `b[r]` measured in the same round).
/// Fewer than [`MIN_REPEATS_FOR_CI`] shared rounds is `inconclusive` with the reason.
pub fn judge_paired(
    a: &[f64],
    b: &[f64],
    direction: Direction,
    alpha: f64,
    threshold: f64,
) -> Comparison {
    let test = paired_t(a, b);
    let change = paired_relative_change(a, b);
    let inconclusive = |reason: String| Comparison {
        welch: test,
        change,
        verdict: Verdict::Inconclusive,
        reason: Some(reason),
        paired: true,
    };
    if a.len() < MIN_REPEATS_FOR_CI || a.len() != b.len() {
        return inconclusive(format!(
            "{} shared round(s); at least {MIN_REPEATS_FOR_CI} are needed",
            a.len().min(b.len())
        ));
    }
    let (Some(w), Some(c)) = (test, change) else {
        return inconclusive("the baseline mean is 0 or not finite; no relative change".into());
    };
    let mut out = verdict_rule(w, c, direction, alpha, threshold);
    out.paired = true;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{judge, Sample, DEFAULT_ALPHA};

    // A = 100, 110, 90; B = 105, 118, 93 (B better by 5, 8, 3 in rounds that drift together).
    const A: [f64; 3] = [100.0, 110.0, 90.0];
    const B: [f64; 3] = [105.0, 118.0, 93.0];

    #[test]
    fn paired_t_matches_hand_computation() {
        // d = 5, 8, 3: d̄ = 16/3, s_d² = (1/9 + 64/9 + 49/9)/2 = 19/3, s_d = 2.516611;
        // t = (16/3)/(2.516611/√3) = 3.670652, df = 2. For 2 df the t CDF has a closed form,
        // F(t) = 1/2 + t/(2√(t²+2)), so p = 1 − t/√(t²+2) = 0.066861.
        let w = paired_t(&A, &B).unwrap();
        assert!((w.t - 3.670652).abs() < 1e-6, "{}", w.t);
        assert_eq!(w.df, 2.0);
        assert!((w.p - 0.066861).abs() < 1e-6, "{}", w.p);
        // Swapping the sides flips t and keeps p.
        let r = paired_t(&B, &A).unwrap();
        assert!((r.t + w.t).abs() < 1e-12 && (r.p - w.p).abs() < 1e-12);
        // The same numbers as independent samples: the round-to-round drift (±10) swamps the
        // +5.3 difference and Welch's p is far larger.
        let welch = crate::stats::welch(
            &Sample::from_values(&A).unwrap(),
            &Sample::from_values(&B).unwrap(),
        )
        .unwrap();
        assert!(welch.p > 0.5, "{}", welch.p);
    }

    #[test]
    fn paired_relative_change_matches_hand_computation() {
        // ā = 100, b̄ = 316/3, R = 1.053333; e = b − R·a = −1/3, 2.133333, −1.8 (mean 0),
        // s_e = √(7.902222/2) = 1.987740, se = s_e/(√3·100) = 0.011476223;
        // t(0.975, 2) = 4.302653 → CI 0.053333 ± 0.049378 = [0.003955, 0.102712].
        let c = paired_relative_change(&A, &B).unwrap();
        assert!((c.estimate - 0.053333).abs() < 1e-6, "{}", c.estimate);
        assert!((c.lower - 0.003955).abs() < 1e-6, "{}", c.lower);
        assert!((c.upper - 0.102712).abs() < 1e-6, "{}", c.upper);
        assert!(paired_relative_change(&[0.0, 0.0], &[1.0, 2.0]).is_none());
        assert!(paired_relative_change(&[1.0], &[1.0]).is_none());
    }

    #[test]
    fn drift_cancels_in_the_paired_verdict_but_not_in_welch() {
        // B is 5 % better in every round; the rounds drift by ±20 %.
        let a = [1000.0, 1200.0, 800.0, 1100.0, 900.0];
        let b: Vec<f64> = a.iter().map(|x| x * 1.05).collect();
        let up = Direction::HigherIsBetter;
        let paired = judge_paired(&a, &b, up, DEFAULT_ALPHA, 0.03);
        assert_eq!(paired.verdict, Verdict::Improved, "{paired:?}");
        assert!(paired.paired);
        let welch = judge(
            &Sample::from_values(&a).unwrap(),
            &Sample::from_values(&b).unwrap(),
            up,
            DEFAULT_ALPHA,
            0.03,
        );
        assert_eq!(welch.verdict, Verdict::Inconclusive);
        assert!(!welch.paired);
    }

    #[test]
    fn edge_cases() {
        assert!(paired_t(&[1.0], &[2.0]).is_none());
        assert!(paired_t(&[1.0, 2.0], &[2.0]).is_none());
        let same = paired_t(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((same.t, same.p), (0.0, 1.0));
        let shifted = paired_t(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]).unwrap();
        assert_eq!(shifted.p, 0.0);
        let few = judge_paired(
            &[1.0, 2.0],
            &[1.0, 2.0],
            Direction::LowerIsBetter,
            0.05,
            0.05,
        );
        assert_eq!(few.verdict, Verdict::Inconclusive);
        assert!(few.reason.unwrap().contains("2 shared round(s)"));
        let (x, y) = shared_rounds(
            &[Some(1.0), None, Some(3.0), Some(4.0)],
            &[Some(2.0), Some(5.0), None, Some(f64::NAN)],
        );
        assert_eq!((x, y), (vec![1.0], vec![2.0]));
    }
}
