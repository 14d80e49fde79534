//! What a tuner knows: per configuration the repeats measured so far (objective and constrained
//! metrics per repeat) or why it failed, and the ranking every strategy and the report share —
//! feasible configurations by the objective's mean, then infeasible ones by how far they missed
//! (failures last), the tie set by the `compare` verdict rule, and the Pareto front.

use serde::Serialize;

use crate::measure::{aggregate_repeats, RepeatSummary};
use crate::metric::{Direction, Metric};
use crate::stats::difference::{judge, Sample, Verdict, DEFAULT_ALPHA};

use super::constraint::Constraint;

/// What the tune optimises: one metric, maximised or minimised, under constraints.
#[derive(Debug, Clone)]
pub struct Objective {
    /// The metric.
    pub metric: &'static Metric,
    /// Which way is better (the metric's own direction unless `--minimize`/`--maximize`).
    pub direction: Direction,
    /// Constraints every feasible configuration meets.
    pub constraints: Vec<Constraint>,
}

impl Objective {
    /// The metric values a repeat contributes: objective first, then each constraint's metric.
    pub fn values_of(&self, repeat: &RepeatSummary) -> Vec<Option<f64>> {
        let agg = aggregate_repeats(std::slice::from_ref(repeat));
        std::iter::once(self.metric)
            .chain(self.constraints.iter().map(|c| c.metric))
            .map(|m| m.aggregate(&agg).map(|a| a.mean))
            .collect()
    }

    /// `a` is better than `b` (strictly) in the objective's direction.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.direction {
            Direction::HigherIsBetter => a > b,
            Direction::LowerIsBetter => a < b,
        }
    }
}

/// One measured repeat of a configuration: the values of [`Objective::values_of`].
pub type RepeatValues = Vec<Option<f64>>;

/// A configuration's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigRecord {
    /// Measured repeats, in repeat order.
    pub repeats: Vec<RepeatValues>,
    /// Why the configuration cannot be measured (resolver rejection, engine failure); such a
    /// configuration is never asked for again.
    pub failure: Option<String>,
}

/// How a configuration stands now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    /// Repeats measured.
    pub repeats: usize,
    /// Mean of the objective over the repeats (`None` without a measurement).
    pub mean: Option<f64>,
    /// 95 % CI half-width of that mean (≥ 3 repeats).
    pub ci95: Option<f64>,
    /// Whether every constraint holds on the means.
    pub feasible: bool,
    /// Sum of the constraints' relative violations (0 when feasible; ∞ on failure).
    pub violation: f64,
}

/// Every configuration's record, indexed like the search space.
#[derive(Debug, Clone)]
pub struct History {
    /// The objective and constraints.
    pub objective: Objective,
    /// One record per configuration of the space.
    pub configs: Vec<ConfigRecord>,
}

impl History {
    /// An empty history of `n` configurations.
    pub fn new(objective: Objective, n: usize) -> History {
        History {
            objective,
            configs: vec![ConfigRecord::default(); n],
        }
    }

    /// Runs (repeats) measured in total.
    pub fn runs(&self) -> usize {
        self.configs.iter().map(|c| c.repeats.len()).sum()
    }

    /// Repeats of configuration `i`.
    pub fn repeats(&self, i: usize) -> usize {
        self.configs[i].repeats.len()
    }

    /// Whether `i` was measured or failed.
    pub fn tried(&self, i: usize) -> bool {
        !self.configs[i].repeats.is_empty() || self.configs[i].failure.is_some()
    }

    /// Per-repeat values of metric column `col` (0 = objective) of configuration `i`.
    pub fn column(&self, i: usize, col: usize) -> Vec<f64> {
        self.configs[i]
            .repeats
            .iter()
            .filter_map(|r| r.get(col).copied().flatten())
            .collect()
    }

    /// The objective sample of configuration `i`.
    pub fn sample(&self, i: usize) -> Option<Sample> {
        Sample::from_values(&self.column(i, 0))
    }

    /// Where configuration `i` stands.
    pub fn standing(&self, i: usize) -> Standing {
        let c = &self.configs[i];
        let sample = self.sample(i);
        if c.failure.is_some() || sample.is_none() {
            return Standing {
                repeats: c.repeats.len(),
                mean: sample.map(|s| s.mean),
                ci95: None,
                feasible: false,
                violation: f64::INFINITY,
            };
        }
        let mut violation = 0.0;
        for (k, constraint) in self.objective.constraints.iter().enumerate() {
            let xs = self.column(i, k + 1);
            violation += match crate::stats::mean(&xs) {
                Some(m) => constraint.violation(m),
                None => f64::INFINITY,
            };
        }
        Standing {
            repeats: c.repeats.len(),
            mean: sample.map(|s| s.mean),
            ci95: sample.and_then(|s| s.ci95_half_width()),
            feasible: violation == 0.0,
            violation,
        }
    }

    /// Configurations with a measurement or failure, best first: feasible ones by the
    /// objective's mean, then infeasible ones by total violation, failures last. Ties keep the
    /// space's order (deterministic).
    pub fn ranking(&self) -> Vec<usize> {
        let mut tried: Vec<(usize, Standing)> = (0..self.configs.len())
            .filter(|&i| self.tried(i))
            .map(|i| (i, self.standing(i)))
            .collect();
        tried.sort_by(|(ia, a), (ib, b)| {
            use std::cmp::Ordering;
            let class = |s: &Standing| {
                if s.feasible {
                    0
                } else if s.violation.is_finite() {
                    1
                } else {
                    2
                }
            };
            class(a)
                .cmp(&class(b))
                .then_with(|| match class(a) {
                    0 => {
                        let (x, y) = (a.mean.unwrap_or(f64::NAN), b.mean.unwrap_or(f64::NAN));
                        if self.objective.better(x, y) {
                            Ordering::Less
                        } else if self.objective.better(y, x) {
                            Ordering::Greater
                        } else {
                            Ordering::Equal
                        }
                    }
                    1 => a.violation.total_cmp(&b.violation),
                    _ => Ordering::Equal,
                })
                .then(ia.cmp(ib))
        });
        tried.into_iter().map(|(i, _)| i).collect()
    }

    /// The current best configuration (first of [`History::ranking`]).
    pub fn incumbent(&self) -> Option<usize> {
        self.ranking().first().copied()
    }

    /// Feasible configurations with ≥ 3 repeats that the `compare` rule cannot tell apart from
    /// `best` (verdict `unchanged` or `inconclusive` at the metric's default threshold), `best`
    /// excluded.
    pub fn ties(&self, best: usize) -> Vec<usize> {
        let Some(b) = self.sample(best) else {
            return Vec::new();
        };
        let metric = self.objective.metric;
        (0..self.configs.len())
            .filter(|&i| i != best)
            .filter(|&i| {
                let s = self.standing(i);
                s.feasible && s.repeats >= crate::stats::MIN_REPEATS_FOR_CI
            })
            .filter(|&i| {
                let Some(c) = self.sample(i) else {
                    return false;
                };
                let v = judge(
                    &b,
                    &c,
                    self.objective.direction,
                    DEFAULT_ALPHA,
                    metric.default_threshold(),
                )
                .verdict;
                matches!(v, Verdict::Unchanged | Verdict::Inconclusive)
            })
            .collect()
    }

    /// Per constraint: the measured configurations not dominated in (objective, that constraint's
    /// metric), each better in its own direction; sorted by the constrained metric's mean.
    pub fn pareto(&self) -> Vec<Vec<usize>> {
        let measured: Vec<usize> = (0..self.configs.len())
            .filter(|&i| self.configs[i].failure.is_none() && !self.configs[i].repeats.is_empty())
            .collect();
        self.objective
            .constraints
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let point = |i: usize| {
                    (
                        crate::stats::mean(&self.column(i, 0)),
                        crate::stats::mean(&self.column(i, k + 1)),
                    )
                };
                let better2 = |a: f64, b: f64| match c.metric.direction {
                    Direction::HigherIsBetter => a > b,
                    Direction::LowerIsBetter => a < b,
                };
                let mut front: Vec<(usize, f64)> = measured
                    .iter()
                    .filter_map(|&i| match point(i) {
                        (Some(o), Some(m)) => Some((i, o, m)),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .iter()
                    .filter(|&&(i, o, m)| {
                        !measured.iter().any(|&j| {
                            if j == i {
                                return false;
                            }
                            let (Some(oj), Some(mj)) = point(j) else {
                                return false;
                            };
                            let no_worse = !self.objective.better(o, oj) && !better2(m, mj);
                            no_worse && (self.objective.better(oj, o) || better2(mj, m))
                        })
                    })
                    .map(|&(i, _, m)| (i, m))
                    .collect();
                front.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                front.into_iter().map(|(i, _)| i).collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objective(constraint: Option<&str>) -> Objective {
        Objective {
            metric: Metric::by_name("output_tok_s").unwrap(),
            direction: Direction::HigherIsBetter,
            constraints: constraint
                .map(|c| vec![Constraint::parse(c).unwrap()])
                .unwrap_or_default(),
        }
    }

    /// A history whose configuration i has the given (objective, tpot) repeats.
    fn history(points: &[&[(f64, f64)]], constraint: Option<&str>) -> History {
        let mut h = History::new(objective(constraint), points.len());
        for (i, reps) in points.iter().enumerate() {
            h.configs[i].repeats = reps
                .iter()
                .map(|&(o, t)| {
                    let mut v = vec![Some(o)];
                    if constraint.is_some() {
                        v.push(Some(t));
                    }
                    v
                })
                .collect();
        }
        h
    }

    #[test]
    fn infeasible_configurations_rank_after_feasible_ones_by_how_far_they_missed() {
        // 0: fast but misses tpot<=50 by 40 %; 1: slow, feasible; 2: misses by 10 %;
        // 3: failed; 4: feasible and fastest among the feasible.
        let mut h = history(
            &[
                &[(300.0, 70.0)],
                &[(100.0, 40.0)],
                &[(250.0, 55.0)],
                &[],
                &[(150.0, 50.0)],
            ],
            Some("tpot_p99<=50"),
        );
        h.configs[3].failure = Some("engine did not start".into());
        assert_eq!(h.ranking(), vec![4, 1, 2, 0, 3]);
        assert_eq!(h.incumbent(), Some(4));
        let s = h.standing(0);
        assert!(!s.feasible && (s.violation - 0.4).abs() < 1e-9);
        assert!(h.standing(3).violation.is_infinite());
    }

    #[test]
    fn minimising_reverses_the_order_of_feasible_configurations() {
        let mut h = history(&[&[(10.0, 0.0)], &[(5.0, 0.0)]], None);
        assert_eq!(h.ranking(), vec![0, 1]);
        h.objective.direction = Direction::LowerIsBetter;
        assert_eq!(h.ranking(), vec![1, 0]);
    }

    #[test]
    fn ties_are_the_configurations_the_compare_rule_cannot_separate_from_the_best() {
        let h = history(
            &[
                &[(100.0, 0.0), (102.0, 0.0), (98.0, 0.0)],
                &[(99.0, 0.0), (101.0, 0.0), (100.0, 0.0)],
                &[(60.0, 0.0), (61.0, 0.0), (59.0, 0.0)],
                &[(103.0, 0.0)],
            ],
            None,
        );
        let best = h.incumbent().unwrap();
        assert_eq!(best, 3, "a single fast repeat leads the ranking");
        assert_eq!(
            h.ties(0),
            vec![1],
            "clearly slower and 1-repeat configs are no ties"
        );
    }

    #[test]
    fn the_pareto_front_keeps_only_undominated_points() {
        let h = history(
            &[
                &[(100.0, 40.0)],
                &[(200.0, 60.0)],
                &[(90.0, 50.0)], // dominated by 0
                &[(150.0, 45.0)],
            ],
            Some("tpot_p99<=50"),
        );
        assert_eq!(h.pareto(), vec![vec![0, 3, 1]]);
    }
}
