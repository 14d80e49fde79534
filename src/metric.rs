//! The one list of metrics a user sees: name, unit, which direction is better, and where each
//! value lives in the stored statistics. The summary table's ranking, `compare`, its exporters,
//! and (later) `tune` and the HTML report all read metrics through [`METRICS`], so a metric is
//! named, united and judged the same way everywhere.

use serde::Serialize;

use crate::measure::CellAggregate;
use crate::stats::Aggregate;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger is better (throughputs).
    HigherIsBetter,
    /// Smaller is better (latencies).
    LowerIsBetter,
}

/// Family of a metric; sets its default regression threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Tokens or requests per second.
    Throughput,
    /// Milliseconds.
    Latency,
}

/// Default relative threshold of throughput metrics: 3 % (the Ferrum release gate's −3 %).
pub const DEFAULT_THROUGHPUT_THRESHOLD: f64 = 0.03;
/// Default relative threshold of latency metrics: 5 % (the Ferrum release gate's TPOT +5 %).
pub const DEFAULT_LATENCY_THRESHOLD: f64 = 0.05;

/// One metric of a cell.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Stable identifier used on the command line (`--threshold tpot_p99=8%`) and in exports.
    pub name: &'static str,
    /// Short human label for tables.
    pub label: &'static str,
    /// Unit (`tok/s`, `req/s`, `ms`).
    pub unit: &'static str,
    /// Which way is better.
    pub direction: Direction,
    /// Throughput or latency.
    pub kind: MetricKind,
    /// Decimal places shown in tables.
    pub decimals: usize,
    /// Where the across-repeat aggregate lives in `stats.json`'s `aggregate`.
    pub accessor: fn(&CellAggregate) -> Option<&Aggregate>,
}

impl Metric {
    /// The metric's across-repeat aggregate in a cell's stored statistics.
    pub fn aggregate<'a>(&self, a: &'a CellAggregate) -> Option<&'a Aggregate> {
        (self.accessor)(a)
    }

    /// The default relative threshold for this metric's kind.
    pub fn default_threshold(&self) -> f64 {
        match self.kind {
            MetricKind::Throughput => DEFAULT_THROUGHPUT_THRESHOLD,
            MetricKind::Latency => DEFAULT_LATENCY_THRESHOLD,
        }
    }

    /// Look a metric up by [`Metric::name`].
    pub fn by_name(name: &str) -> Option<&'static Metric> {
        METRICS.iter().find(|m| m.name == name)
    }

    /// The metric the sweep ranks by (output tokens/s).
    pub fn ranking() -> &'static Metric {
        &METRICS[0]
    }
}

/// Every metric, in display order. The first is the ranking metric.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "output_tok_s",
        label: "output tok/s",
        unit: "tok/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 1,
        accessor: |a| a.output_tokens_per_s.as_ref(),
    },
    Metric {
        name: "total_tok_s",
        label: "total tok/s",
        unit: "tok/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 1,
        accessor: |a| a.total_tokens_per_s.as_ref(),
    },
    Metric {
        name: "request_rps",
        label: "requests/s",
        unit: "req/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 3,
        accessor: |a| a.request_per_s.as_ref(),
    },
    Metric {
        name: "goodput_rps",
        label: "goodput",
        unit: "req/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 3,
        accessor: |a| a.goodput_rps.as_ref(),
    },
    Metric {
        name: "ttft_p50",
        label: "TTFT p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 1,
        accessor: |a| a.ttft_ms_median.as_ref(),
    },
    Metric {
        name: "ttft_p99",
        label: "TTFT p99",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 1,
        accessor: |a| a.ttft_ms_p99.as_ref(),
    },
    Metric {
        name: "tpot_p50",
        label: "TPOT p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.tpot_ms_median.as_ref(),
    },
    Metric {
        name: "tpot_p99",
        label: "TPOT p99",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.tpot_ms_p99.as_ref(),
    },
    Metric {
        name: "itl_p50",
        label: "ITL p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.itl_ms_median.as_ref(),
    },
    Metric {
        name: "itl_p99",
        label: "ITL p99",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.itl_ms_p99.as_ref(),
    },
    Metric {
        name: "e2e_p50",
        label: "E2E p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 1,
        accessor: |a| a.e2e_ms_median.as_ref(),
    },
    Metric {
        name: "e2e_p99",
        label: "E2E p99",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 1,
        accessor: |a| a.e2e_ms_p99.as_ref(),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::aggregate_repeats;

    #[test]
    fn names_are_unique_and_directions_follow_kind() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for m in METRICS {
            let want = match m.kind {
                MetricKind::Throughput => Direction::HigherIsBetter,
                MetricKind::Latency => Direction::LowerIsBetter,
            };
            assert_eq!(m.direction, want, "{}", m.name);
            assert_eq!(m.unit == "ms", m.kind == MetricKind::Latency, "{}", m.name);
        }
        assert_eq!(Metric::ranking().name, "output_tok_s");
        assert_eq!(
            Metric::by_name("tpot_p99").unwrap().default_threshold(),
            0.05
        );
        assert_eq!(
            Metric::by_name("output_tok_s").unwrap().default_threshold(),
            0.03
        );
        assert!(Metric::by_name("nope").is_none());
    }

    #[test]
    fn accessors_read_the_matching_aggregate() {
        let agg = aggregate_repeats(&[]);
        for m in METRICS {
            assert!(m.aggregate(&agg).is_none(), "{}", m.name);
        }
    }
}
