//! `--constraint 'tpot_p99<=50'`: a bound on one metric of the shared metric list, with the
//! operators vLLM's `--sla-params` uses (`<`, `<=`, `>`, `>=`). A trial meets a constraint when
//! the mean over its repeats satisfies it (vLLM's rule); its violation is `actual/limit − 1` in
//! the bad direction (Optuna's convention), so infeasible trials rank by how far they missed.

use serde::Serialize;

use crate::metric::{Metric, METRICS};

/// Comparison operator of a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    /// The operator as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One constraint: `metric op limit`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Constraint {
    /// The metric (from [`METRICS`]).
    #[serde(serialize_with = "metric_name")]
    pub metric: &'static Metric,
    /// The operator.
    pub op: Op,
    /// The limit, in the metric's unit.
    pub limit: f64,
}

fn metric_name<S: serde::Serializer>(m: &&'static Metric, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name)
}

/// Largest absolute limit accepted (a bound on every number a user types).
pub const MAX_LIMIT: f64 = 1e12;

/// The metric called `name`; a trailing `_ms` is accepted for millisecond metrics
/// (`tpot_p99_ms`). The error lists the valid names.
pub fn metric_named(name: &str) -> Result<&'static Metric, String> {
    let found = Metric::by_name(name).or_else(|| {
        name.strip_suffix("_ms")
            .and_then(Metric::by_name)
            .filter(|m| m.unit == "ms")
    });
    found.ok_or_else(|| {
        format!(
            "unknown metric `{name}`; valid metrics: {}",
            METRICS
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

impl Constraint {
    /// Parse `METRIC OP LIMIT`, e.g. `tpot_p99<=50` (spaces allowed around the operator).
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let pos = text
            .find(['<', '>'])
            .ok_or_else(|| format!("constraint `{text}` has no operator; write e.g. `tpot_p99<=50` (operators <, <=, >, >=)"))?;
        let (name, rest) = text.split_at(pos);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let name = name.trim();
        let metric = metric_named(name).map_err(|e| format!("constraint `{text}`: {e}"))?;
        let limit: f64 = value.trim().parse().map_err(|_| {
            format!(
                "constraint `{text}`: `{}` is not a number; write e.g. `{}{}50`",
                value.trim(),
                metric.name,
                op.as_str()
            )
        })?;
        if !limit.is_finite() || limit.abs() > MAX_LIMIT {
            return Err(format!(
                "constraint `{text}`: the limit must be a finite number within ±{MAX_LIMIT:e}"
            ));
        }
        Ok(Constraint { metric, op, limit })
    }

    /// Whether `value` satisfies the constraint.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::Lt => value < self.limit,
            Op::Le => value <= self.limit,
            Op::Gt => value > self.limit,
            Op::Ge => value >= self.limit,
        }
    }

    /// How far `value` misses the limit, relative to it (0 when it holds): `value/limit − 1`
    /// for upper bounds, `limit/value − 1` for lower bounds (∞ when the value is 0); a limit of
    /// 0 uses the absolute excess.
    pub fn violation(&self, value: f64) -> f64 {
        if self.holds(value) {
            return 0.0;
        }
        let upper = matches!(self.op, Op::Lt | Op::Le);
        let (over, under) = if upper {
            (value, self.limit)
        } else {
            (self.limit, value)
        };
        if under.abs() < f64::EPSILON {
            return if upper {
                (over - under).abs()
            } else {
                f64::INFINITY
            };
        }
        // A value exactly at a strict limit misses by nothing measurable; still infeasible.
        (over / under - 1.0).abs().max(f64::MIN_POSITIVE)
    }

    /// `metric op limit` as typed.
    pub fn label(&self) -> String {
        format!("{}{}{}", self.metric.name, self.op.as_str(), self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_parses_and_compares() {
        for (text, op, ok, bad) in [
            ("tpot_p99<=50", Op::Le, 50.0, 50.1),
            ("tpot_p99 < 50", Op::Lt, 49.9, 50.0),
            ("output_tok_s>=100", Op::Ge, 100.0, 99.0),
            ("output_tok_s > 100", Op::Gt, 100.5, 100.0),
        ] {
            let c = Constraint::parse(text).unwrap();
            assert_eq!(c.op, op, "{text}");
            assert!(c.holds(ok), "{text} should hold for {ok}");
            assert!(!c.holds(bad), "{text} should fail for {bad}");
        }
    }

    #[test]
    fn a_millisecond_suffix_is_accepted_for_latency_metrics_only() {
        assert_eq!(
            Constraint::parse("tpot_p99_ms<=50").unwrap().metric.name,
            "tpot_p99"
        );
        assert!(Constraint::parse("output_tok_s_ms>=1").is_err());
    }

    #[test]
    fn an_unknown_metric_is_an_error_naming_the_valid_ones() {
        let err = Constraint::parse("tpot_p999<=50").unwrap_err();
        assert!(err.contains("unknown metric `tpot_p999`"), "{err}");
        assert!(
            err.contains("tpot_p99") && err.contains("output_tok_s"),
            "{err}"
        );
    }

    #[test]
    fn malformed_constraints_say_what_to_write() {
        assert!(Constraint::parse("tpot_p99=50")
            .unwrap_err()
            .contains("no operator"));
        assert!(Constraint::parse("tpot_p99<=fast")
            .unwrap_err()
            .contains("not a number"));
        assert!(Constraint::parse("tpot_p99<=inf")
            .unwrap_err()
            .contains("finite"));
        assert!(Constraint::parse("tpot_p99<=1e13").is_err());
    }

    #[test]
    fn violation_is_relative_and_zero_when_met() {
        let c = Constraint::parse("tpot_p99<=50").unwrap();
        assert_eq!(c.violation(40.0), 0.0);
        assert!((c.violation(60.0) - 0.2).abs() < 1e-12);
        let g = Constraint::parse("output_tok_s>=100").unwrap();
        assert!((g.violation(80.0) - 0.25).abs() < 1e-12);
        assert_eq!(g.violation(0.0), f64::INFINITY);
        assert!(c.violation(70.0) > c.violation(60.0));
    }
}
