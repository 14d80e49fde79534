//! Statistics of a difference between two sets of repeats: Welch's t-test, the relative change
//! of the mean with a 95 % confidence interval, and the verdict rule shared by `compare` and the
//! sweep's ranking ties.
//!
//! - **Welch's t-test** (Welch 1947): `t = (x̄_B − x̄_A)/√(s²_A/n_A + s²_B/n_B)` with the
//!   Welch–Satterthwaite degrees of freedom `ν = (v_A + v_B)² / (v_A²/(n_A−1) + v_B²/(n_B−1))`,
//!   `v = s²/n`; two-sided p from `statrs`' Student t CDF (statrs has no two-sample test).
//! - **Relative change** `r = x̄_B/x̄_A − 1` with a 95 % CI by the **delta method** (first-order
//!   Taylor expansion of the ratio of two independent means; e.g. Casella & Berger, *Statistical
//!   Inference*, 2nd ed., §5.5.4): `se(x̄_B/x̄_A) ≈ |x̄_B/x̄_A|·√(v_A/x̄_A² + v_B/x̄_B²)`, interval
//!   `r ± t(0.975, ν)·se` using the same Welch ν so the interval and the test agree at small n.
//!   Fieller's (1954) exact interval differs only when the baseline mean is not far from zero
//!   relative to its error, which throughput and latency means never are.
//! - **Verdict**: `regressed` only when p < α **and** the whole CI lies beyond the threshold in
//!   the bad direction; `improved` symmetrically; `unchanged` when the whole CI lies within
//!   ±threshold; otherwise `inconclusive`. Fewer than 3 repeats on either side is
//!   `inconclusive` with the reason.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{Aggregate, MIN_REPEATS_FOR_CI};
use crate::metric::Direction;

/// Default significance level.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// The summary of one side that a two-sample test needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Repeats.
    pub n: usize,
    /// Mean over repeats.
    pub mean: f64,
    /// Sample standard deviation (n−1); `None` below 2 repeats or when the source omits it.
    pub std: Option<f64>,
}

impl Sample {
    /// From a stored across-repeat aggregate.
    pub fn from_aggregate(a: &Aggregate) -> Sample {
        Sample {
            n: a.n,
            mean: a.mean,
            std: a.std,
        }
    }

    /// From raw per-repeat values; `None` when empty.
    pub fn from_values(xs: &[f64]) -> Option<Sample> {
        Some(Sample {
            n: xs.len(),
            mean: super::mean(xs)?,
            std: super::std_dev(xs),
        })
    }

    /// Pool two samples of the same quantity into one (as if all repeats had been one set):
    /// `SS = Σ (n_i−1)s_i² + n_i(m_i − M)²`. A side of one repeat contributes no within-side
    /// variance; a side of several repeats without a std makes the pooled std unknown.
    pub fn pool(&self, other: &Sample) -> Sample {
        let n = self.n + other.n;
        if n == 0 {
            return *self;
        }
        let m = (self.n as f64 * self.mean + other.n as f64 * other.mean) / n as f64;
        let within = |s: &Sample| match (s.n, s.std) {
            (0 | 1, _) => Some(0.0),
            (k, Some(sd)) => Some((k - 1) as f64 * sd * sd),
            (_, None) => None,
        };
        let ss = within(self).zip(within(other)).map(|(a, b)| {
            a + b
                + self.n as f64 * (self.mean - m).powi(2)
                + other.n as f64 * (other.mean - m).powi(2)
        });
        Sample {
            n,
            mean: m,
            std: if n < 2 {
                None
            } else {
                ss.map(|ss| (ss / (n - 1) as f64).sqrt())
            },
        }
    }

    /// 95 % CI half-width of the mean (Student t), when n ≥ 3 and a std is known.
    pub fn ci95_half_width(&self) -> Option<f64> {
        if self.n < MIN_REPEATS_FOR_CI {
            return None;
        }
        let s = self.std?;
        Some(super::student_t_975(self.n - 1)? * s / (self.n as f64).sqrt())
    }
}

/// Result of Welch's two-sample t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Welch {
    /// The t statistic (candidate minus baseline).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Welch's t-test of `b` against `a`. `None` when either side has fewer than 2 repeats or no
/// std. Two zero-variance sides give p = 1 for equal means and p = 0 otherwise.
pub fn welch(a: &Sample, b: &Sample) -> Option<Welch> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (sa, sb) = (a.std?, b.std?);
    let (va, vb) = (sa * sa / a.n as f64, sb * sb / b.n as f64);
    let diff = b.mean - a.mean;
    let se2 = va + vb;
    if se2 <= 0.0 {
        let (t, p) = if diff == 0.0 {
            (0.0, 1.0)
        } else {
            (diff.signum() * f64::INFINITY, 0.0)
        };
        return Some(Welch {
            t,
            df: (a.n + b.n - 2) as f64,
            p,
        });
    }
    let t = diff / se2.sqrt();
    let df = se2 * se2 / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    Some(Welch { t, df, p })
}

/// The relative change `b/a − 1` with its 95 % CI (delta method, Welch df).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RelativeChange {
    /// Point estimate, e.g. −0.05 for 5 % lower.
    pub estimate: f64,
    /// Lower bound of the 95 % CI.
    pub lower: f64,
    /// Upper bound of the 95 % CI.
    pub upper: f64,
}

/// Relative change of `b` against `a`; `None` without a Welch test or when `a`'s mean is 0.
pub fn relative_change(a: &Sample, b: &Sample, w: &Welch) -> Option<RelativeChange> {
    if a.mean == 0.0 || !a.mean.is_finite() || !b.mean.is_finite() {
        return None;
    }
    let (sa, sb) = (a.std?, b.std?);
    let (va, vb) = (sa * sa / a.n as f64, sb * sb / b.n as f64);
    let ratio = b.mean / a.mean;
    let rel_var_b = if b.mean == 0.0 {
        0.0
    } else {
        vb / (b.mean * b.mean)
    };
    let se = if b.mean == 0.0 {
        vb.sqrt() / a.mean.abs()
    } else {
        ratio.abs() * (va / (a.mean * a.mean) + rel_var_b).sqrt()
    };
    let t = if se > 0.0 {
        StudentsT::new(0.0, 1.0, w.df).ok()?.inverse_cdf(0.975)
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

/// The outcome for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significantly and materially worse.
    Regressed,
    /// Significantly and materially better.
    Improved,
    /// The whole CI of the change lies within ±threshold.
    Unchanged,
    /// Neither: too few repeats, or the CI straddles the threshold.
    Inconclusive,
}

impl Verdict {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Everything `compare` reports for one metric of one pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Welch's test, when both sides have ≥ 2 repeats with a std.
    pub welch: Option<Welch>,
    /// Relative change with CI.
    pub change: Option<RelativeChange>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is `inconclusive` (or `unchanged` though significant), in words.
    pub reason: Option<String>,
    /// The test is the paired t-test over shared rounds ([`super::paired`]), not Welch's; the
    /// `welch` field then holds the paired t, its n−1 degrees of freedom and p.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paired: bool,
}

/// Apply the verdict rule to baseline `a` and candidate `b` of a metric whose better direction is
/// `direction`, at significance `alpha` and relative `threshold` (e.g. 0.03).
pub fn judge(
    a: &Sample,
    b: &Sample,
    direction: Direction,
    alpha: f64,
    threshold: f64,
) -> Comparison {
    let inconclusive = |welch, change, reason: String| Comparison {
        welch,
        change,
        verdict: Verdict::Inconclusive,
        reason: Some(reason),
        paired: false,
    };
    let few = [("baseline", a), ("candidate", b)]
        .iter()
        .filter(|(_, s)| s.n < MIN_REPEATS_FOR_CI || s.std.is_none())
        .map(|(side, s)| format!("{side} has {} repeat(s)", s.n))
        .collect::<Vec<_>>();
    let welch_result = welch(a, b);
    let change = welch_result.and_then(|w| relative_change(a, b, &w));
    if !few.is_empty() {
        return inconclusive(
            welch_result,
            change,
            format!(
                "{}; at least {MIN_REPEATS_FOR_CI} per side are needed",
                few.join(", ")
            ),
        );
    }
    let (Some(w), Some(c)) = (welch_result, change) else {
        return inconclusive(
            welch_result,
            change,
            "the baseline mean is 0 or not finite; no relative change".into(),
        );
    };
    verdict_rule(w, c, direction, alpha, threshold)
}

/// The verdict rule shared by Welch's and the paired test: `w` is the test (its p decides
/// significance), `c` the relative change with its CI.
pub(crate) fn verdict_rule(
    w: Welch,
    c: RelativeChange,
    direction: Direction,
    alpha: f64,
    threshold: f64,
) -> Comparison {
    // Express the interval as "gain": positive is better whatever the metric's direction.
    let (glo, ghi) = match direction {
        Direction::HigherIsBetter => (c.lower, c.upper),
        Direction::LowerIsBetter => (-c.upper, -c.lower),
    };
    let significant = w.p < alpha;
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let (verdict, reason) = if significant && ghi < -threshold {
        (Verdict::Regressed, None)
    } else if significant && glo > threshold {
        (Verdict::Improved, None)
    } else if glo >= -threshold && ghi <= threshold {
        (Verdict::Unchanged, None)
    } else if !significant {
        (
            Verdict::Inconclusive,
            Some(format!(
                "p = {:.3} ≥ {alpha} and the CI [{}, {}] reaches beyond ±{}",
                w.p,
                pct(c.lower),
                pct(c.upper),
                pct(threshold)
            )),
        )
    } else {
        (
            Verdict::Inconclusive,
            Some(format!(
                "significant (p = {:.3}) but the CI [{}, {}] straddles ±{}",
                w.p,
                pct(c.lower),
                pct(c.upper),
                pct(threshold)
            )),
        )
    };
    Comparison {
        welch: Some(w),
        change: Some(c),
        verdict,
        reason,
        paired: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(xs: &[f64]) -> Sample {
        Sample::from_values(xs).unwrap()
    }

    #[test]
    fn welch_matches_hand_computation() {
        // A = 10, 12, 14 (mean 12, s² = 4); B = 15, 18, 21, 24 (mean 19.5, s² = 15).
        // vA = 4/3, vB = 15/4, se² = 61/12, t = 7.5/√(61/12) = 3.326496;
        // ν = (61/12)² / ((4/3)²/2 + (15/4)²/3) = 25.840278/5.576389 = 4.633873.
        let (a, b) = (s(&[10.0, 12.0, 14.0]), s(&[15.0, 18.0, 21.0, 24.0]));
        let w = welch(&a, &b).unwrap();
        assert!((w.t - 3.326496).abs() < 1e-6, "{}", w.t);
        assert!((w.df - 4.633873).abs() < 1e-6, "{}", w.df);
        // Two-sided p = 2·∫_t^∞ f_ν(x) dx = 0.023392 (Simpson integration of the t density).
        assert!((w.p - 0.023392).abs() < 1e-5, "{}", w.p);
        // Symmetric: swapping sides flips t, keeps df and p.
        let r = welch(&b, &a).unwrap();
        assert!((r.t + w.t).abs() < 1e-12 && (r.df - w.df).abs() < 1e-12);
        assert!((r.p - w.p).abs() < 1e-12);
    }

    #[test]
    fn welch_edge_cases() {
        assert!(welch(&s(&[1.0]), &s(&[1.0, 2.0])).is_none());
        let same = welch(&s(&[5.0, 5.0, 5.0]), &s(&[5.0, 5.0, 5.0])).unwrap();
        assert_eq!((same.t, same.p), (0.0, 1.0));
        let apart = welch(&s(&[5.0, 5.0, 5.0]), &s(&[6.0, 6.0, 6.0])).unwrap();
        assert_eq!(apart.p, 0.0);
        assert!(apart.t.is_infinite() && apart.t > 0.0);
    }

    #[test]
    fn relative_change_by_delta_method() {
        // A: mean 100, s = 10, n = 4 (vA = 25); B: mean 90, s = 10, n = 4 (vB = 25).
        // ratio 0.9, se = 0.9·√(25/10000 + 25/8100) = 0.9·0.0747424 = 0.0672681;
        // ν = 50²/(2·25²/3) = 6, t(0.975, 6) = 2.446912; CI = −0.1 ± 0.164599.
        let a = Sample {
            n: 4,
            mean: 100.0,
            std: Some(10.0),
        };
        let b = Sample {
            n: 4,
            mean: 90.0,
            std: Some(10.0),
        };
        let w = welch(&a, &b).unwrap();
        assert!((w.df - 6.0).abs() < 1e-9);
        let c = relative_change(&a, &b, &w).unwrap();
        assert!((c.estimate + 0.1).abs() < 1e-12);
        assert!((c.lower - (-0.1 - 0.164599)).abs() < 1e-5, "{}", c.lower);
        assert!((c.upper - (-0.1 + 0.164599)).abs() < 1e-5, "{}", c.upper);
        let zero = Sample {
            n: 4,
            mean: 0.0,
            std: Some(1.0),
        };
        assert!(relative_change(&zero, &b, &w).is_none());
    }

    /// A sample of n = 30 with the given mean and a tiny std, so the CI is ≈ the point estimate.
    fn tight(mean: f64) -> Sample {
        Sample {
            n: 30,
            mean,
            std: Some(mean * 1e-4),
        }
    }

    #[test]
    fn verdict_rule_at_its_boundaries() {
        let up = Direction::HigherIsBetter;
        let down = Direction::LowerIsBetter;
        let j = |b: f64, d| judge(&tight(100.0), &tight(b), d, DEFAULT_ALPHA, 0.03).verdict;
        // Throughput: 4 % lower is a regression, 2.9 % lower is within the threshold.
        assert_eq!(j(96.0, up), Verdict::Regressed);
        assert_eq!(j(97.1, up), Verdict::Unchanged);
        assert_eq!(j(104.0, up), Verdict::Improved);
        assert_eq!(j(102.9, up), Verdict::Unchanged);
        // Exactly at −3 %: the CI is not *beyond* the threshold and not inside it either
        // (its lower half lies below −3 %) → inconclusive.
        assert_eq!(j(97.0, up), Verdict::Inconclusive);
        // Latency: higher is worse.
        assert_eq!(j(104.0, down), Verdict::Regressed);
        assert_eq!(j(96.0, down), Verdict::Improved);
        assert_eq!(j(101.0, down), Verdict::Unchanged);
    }

    #[test]
    fn verdict_needs_significance_and_materiality() {
        let a = s(&[100.0, 110.0, 90.0]);
        // Mean 20 % lower but very noisy: not significant, CI straddles −3 % → inconclusive.
        let b = s(&[60.0, 100.0, 80.0]);
        let c = judge(&a, &b, Direction::HigherIsBetter, 0.05, 0.03);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert!(c.reason.unwrap().contains("p = "));
        // Significant but tiny: 1 % lower with almost no noise → unchanged (inside ±3 %).
        let c = judge(
            &tight(100.0),
            &tight(99.0),
            Direction::HigherIsBetter,
            0.05,
            0.03,
        );
        assert!(c.welch.unwrap().p < 0.05);
        assert_eq!(c.verdict, Verdict::Unchanged);
        // α matters: p just above α keeps a large-looking drop inconclusive.
        let a = s(&[100.0, 101.0, 99.0]);
        let b = s(&[90.0, 99.0, 81.0]);
        let c = judge(&a, &b, Direction::HigherIsBetter, 0.05, 0.03);
        assert!(c.welch.unwrap().p > 0.05, "{:?}", c.welch);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        let c = judge(&a, &b, Direction::HigherIsBetter, 0.5, 0.03);
        assert_ne!(c.verdict, Verdict::Unchanged);
    }

    #[test]
    fn fewer_than_three_repeats_is_inconclusive_with_reason() {
        let c = judge(
            &s(&[100.0, 101.0]),
            &s(&[50.0, 51.0, 50.5]),
            Direction::HigherIsBetter,
            0.05,
            0.03,
        );
        assert_eq!(c.verdict, Verdict::Inconclusive);
        let reason = c.reason.unwrap();
        assert!(reason.contains("baseline has 2 repeat(s)"), "{reason}");
        assert!(!reason.contains("candidate"), "{reason}");
        let no_std = Sample {
            n: 5,
            mean: 1.0,
            std: None,
        };
        let c = judge(&no_std, &tight(1.0), Direction::LowerIsBetter, 0.05, 0.05);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(Verdict::Regressed.as_str(), "regressed");
    }

    #[test]
    fn pooling_equals_the_sample_of_all_values() {
        let all = s(&[1.0, 2.0, 4.0, 8.0, 16.0]);
        let pooled = s(&[1.0, 2.0]).pool(&s(&[4.0])).pool(&s(&[8.0, 16.0]));
        assert_eq!(pooled.n, 5);
        assert!((pooled.mean - all.mean).abs() < 1e-12);
        assert!((pooled.std.unwrap() - all.std.unwrap()).abs() < 1e-12);
        let singles = [3.0, 5.0, 7.0].map(|x| s(&[x]));
        let p = singles[0].pool(&singles[1]).pool(&singles[2]);
        assert_eq!((p.n, p.mean, p.std), (3, 5.0, Some(2.0)));
    }

    #[test]
    fn sample_ci_matches_aggregate() {
        let agg = crate::stats::aggregate(&[10.0, 12.0, 14.0]).unwrap();
        let s = Sample::from_aggregate(&agg);
        assert!((s.ci95_half_width().unwrap() - agg.ci95.half_width().unwrap()).abs() < 1e-12);
        assert!(Sample::from_values(&[1.0, 2.0])
            .unwrap()
            .ci95_half_width()
            .is_none());
    }
}
