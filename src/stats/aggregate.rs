//! Across-repeat aggregation: mean, sample std, Student-t 95 % CI half-width, coefficient of
//! variation, range, and MAD-based outlier flags.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{mean, std_dev};

/// Fewer repeats than this get no confidence interval (as in Ferrum's `ScalarStats`): with n = 2
/// the t quantile is 12.7 and the "interval" says nothing useful.
pub const MIN_REPEATS_FOR_CI: usize = 3;

/// Modified z-score above which a repeat is flagged (Iglewicz & Hoaglin 1993 recommend 3.5).
const OUTLIER_Z: f64 = 3.5;

/// The 95 % confidence interval of a mean over repeats, or the plain statement that there is none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Ci95 {
    /// `mean ± half_width` covers the true mean with 95 % confidence (Student t, n−1 df).
    Interval {
        /// Half-width `t·s/√n`.
        half_width: f64,
        /// The t quantile used, `t(0.975, n−1)`.
        t_critical: f64,
    },
    /// Fewer than [`MIN_REPEATS_FOR_CI`] repeats: no interval is given.
    TooFewRepeats {
        /// How many repeats there were.
        repeats: usize,
    },
}

impl Ci95 {
    /// The half-width, when there is an interval.
    pub fn half_width(&self) -> Option<f64> {
        match self {
            Ci95::Interval { half_width, .. } => Some(*half_width),
            Ci95::TooFewRepeats { .. } => None,
        }
    }
}

/// One metric across the repeats of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// Number of repeats that produced a value.
    pub n: usize,
    /// Mean over repeats.
    pub mean: f64,
    /// Sample standard deviation over repeats (n−1); `None` for a single repeat.
    pub std: Option<f64>,
    /// 95 % confidence interval of the mean.
    pub ci95: Ci95,
    /// Coefficient of variation `std/|mean|`; `None` without a std or when the mean is 0.
    pub cv: Option<f64>,
    /// Smallest repeat value.
    pub min: f64,
    /// Largest repeat value.
    pub max: f64,
    /// Indices (0-based, in input order) of repeats flagged as outliers.
    pub outliers: Vec<usize>,
}

/// `t(0.975, df)`, the two-sided 95 % Student-t quantile, from `statrs`.
/// `None` for `df == 0`.
pub fn student_t_975(df: usize) -> Option<f64> {
    if df == 0 {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, df as f64).ok()?;
    Some(t.inverse_cdf(0.975))
}

/// Aggregate one metric's per-repeat values; `None` when there are none.
pub fn aggregate(values: &[f64]) -> Option<Aggregate> {
    let n = values.len();
    let m = mean(values)?;
    let std = std_dev(values);
    let ci95 = match (std, n >= MIN_REPEATS_FOR_CI) {
        (Some(s), true) => {
            let t = student_t_975(n - 1)?;
            Ci95::Interval {
                half_width: t * s / (n as f64).sqrt(),
                t_critical: t,
            }
        }
        _ => Ci95::TooFewRepeats { repeats: n },
    };
    let cv = std.and_then(|s| if m == 0.0 { None } else { Some(s / m.abs()) });
    Some(Aggregate {
        n,
        mean: m,
        std,
        ci95,
        cv,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        outliers: outliers(values),
    })
}

/// Repeats whose modified z-score `0.6745·(x − median)/MAD` exceeds 3.5 (Iglewicz & Hoaglin).
/// When the MAD is 0 (more than half the repeats identical) the score falls back to
/// `(x − median)/(1.253314·MeanAD)` (IBM SPSS's documented fallback), so one slightly different
/// repeat among identical ones is not flagged merely because the MAD vanished. Needs ≥ 3 repeats.
fn outliers(values: &[f64]) -> Vec<usize> {
    if values.len() < MIN_REPEATS_FOR_CI {
        return Vec::new();
    }
    let med = super::percentile(values, 50.0).unwrap_or(0.0);
    let deviations: Vec<f64> = values.iter().map(|x| (x - med).abs()).collect();
    let mad = super::percentile(&deviations, 50.0).unwrap_or(0.0);
    let scale = if mad > 0.0 {
        mad / 0.6745
    } else {
        1.253314 * mean(&deviations).unwrap_or(0.0)
    };
    if scale <= 0.0 {
        return Vec::new();
    }
    deviations
        .iter()
        .enumerate()
        .filter(|(_, d)| **d / scale > OUTLIER_Z)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn t_quantiles_match_tables() {
        // Standard table values (e.g. Ferrum's student_t_975): df 1, 2, 4, 29.
        for (df, want) in [(1, 12.706), (2, 4.303), (4, 2.776), (29, 2.045)] {
            let got = student_t_975(df).unwrap();
            assert!((got - want).abs() < 1e-3, "df {df}: {got}");
        }
        assert_eq!(student_t_975(0), None);
    }

    #[test]
    fn ci_of_hand_computed_repeats() {
        // 10, 12, 14: mean 12, s = 2, t(0.975,2) = 4.302653, hw = 4.302653·2/√3 = 4.968275.
        let a = aggregate(&[10.0, 12.0, 14.0]).unwrap();
        assert_eq!(a.mean, 12.0);
        assert_eq!(a.std, Some(2.0));
        let hw = a.ci95.half_width().unwrap();
        assert!((hw - 4.968275).abs() < 1e-5, "{hw}");
        assert!((a.cv.unwrap() - 2.0 / 12.0).abs() < 1e-12);
        assert_eq!((a.min, a.max), (10.0, 14.0));
        assert!(a.outliers.is_empty());
    }

    #[test]
    fn fewer_than_three_repeats_have_no_ci() {
        let a = aggregate(&[10.0, 12.0]).unwrap();
        assert_eq!(a.ci95, Ci95::TooFewRepeats { repeats: 2 });
        assert_eq!(
            a.std.map(|s| (s * 1e9).round()),
            Some((2f64.sqrt() * 1e9).round())
        );
        let one = aggregate(&[5.0]).unwrap();
        assert_eq!(one.std, None);
        assert_eq!(one.cv, None);
        assert_eq!(one.ci95, Ci95::TooFewRepeats { repeats: 1 });
        assert!(aggregate(&[]).is_none());
        let json = serde_json::to_string(&a.ci95).unwrap();
        assert_eq!(json, r#"{"status":"too_few_repeats","repeats":2}"#);
    }

    #[test]
    fn mad_flags_a_far_repeat_only() {
        let a = aggregate(&[100.0, 101.0, 99.0, 100.5, 160.0]).unwrap();
        assert_eq!(a.outliers, vec![4]);
        // MAD = 0 fallback: one slightly different repeat among identical ones is not an outlier.
        assert!(aggregate(&[100.0, 100.0, 101.0])
            .unwrap()
            .outliers
            .is_empty());
        // ... but a far one among many identical repeats is: MeanAD = 1000/7, score ≈ 5.6.
        let b = aggregate(&[100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 1100.0]).unwrap();
        assert_eq!(b.outliers, vec![6]);
    }

    proptest! {
        #[test]
        fn ci_shrinks_as_identical_repeats_are_added(
            base in prop::collection::vec(1.0f64..1000.0, 3..8),
            copies in 2usize..5,
        ) {
            // Repeating the whole set k times keeps the spread (variance k·SS/(kn−1) ≤ SS/(n−1))
            // while n grows, so the half-width must not grow.
            let a = aggregate(&base).unwrap();
            let more: Vec<f64> = base.iter().copied().cycle().take(base.len() * copies).collect();
            let b = aggregate(&more).unwrap();
            let (ha, hb) = (a.ci95.half_width().unwrap(), b.ci95.half_width().unwrap());
            prop_assert!(hb <= ha + 1e-9 * ha.max(1.0), "{hb} > {ha}");
        }

        #[test]
        fn ci_shrinks_when_a_repeat_equal_to_the_mean_is_added(base in prop::collection::vec(1.0f64..1000.0, 3..8)) {
            let a = aggregate(&base).unwrap();
            let mut more = base.clone();
            more.push(a.mean);
            let b = aggregate(&more).unwrap();
            let (ha, hb) = (a.ci95.half_width().unwrap(), b.ci95.half_width().unwrap());
            prop_assert!(hb <= ha + 1e-9 * ha.max(1.0), "{hb} > {ha}");
        }

        #[test]
        fn mean_lies_within_min_max_and_ci_is_non_negative(xs in prop::collection::vec(-1e4f64..1e4, 1..20)) {
            let a = aggregate(&xs).unwrap();
            prop_assert!(a.min <= a.mean + 1e-9 && a.mean <= a.max + 1e-9);
            if let Some(hw) = a.ci95.half_width() { prop_assert!(hw >= 0.0); }
            prop_assert_eq!(a.ci95.half_width().is_some(), xs.len() >= 3);
        }
    }
}
