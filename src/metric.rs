//! The one list of metrics a user sees: name, unit, which direction is better, and where each
//! value lives in the stored statistics. The summary table's ranking, `summary.csv`, `compare`,
//! its exporters, the HTML report (and `tune`) all read metrics through [`METRICS`], so a metric
//! is named, united and judged the same way everywhere.

use serde::Serialize;

use crate::measure::CellAggregate;
use crate::results::StatsFile;
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
    /// The field of `stats.json`'s `aggregate` that holds it (`ttft_ms_median`); also the
    /// column prefix in `summary.csv` (`ttft_ms_median_mean`, `ttft_ms_median_ci95`).
    pub field: &'static str,
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

    /// The metric's aggregate in a cell's `stats.json`.
    pub fn of<'a>(&self, stats: &'a StatsFile) -> Option<&'a Aggregate> {
        (self.accessor)(&stats.aggregate)
    }

    /// The mean over repeats for a cell, if it has one.
    pub fn mean(&self, stats: &StatsFile) -> Option<f64> {
        self.of(stats).map(|a| a.mean)
    }

    /// `mean ± ci unit`, or `mean unit (no CI, n=…)`, or `–` without a value.
    pub fn format(&self, stats: &StatsFile) -> String {
        match self.of(stats) {
            Some(a) => match a.ci95.half_width() {
                Some(h) => format!(
                    "{:.*} ± {:.*} {}",
                    self.decimals, a.mean, self.decimals, h, self.unit
                ),
                None => format!(
                    "{:.*} {} (no CI, n={})",
                    self.decimals, a.mean, self.unit, a.n
                ),
            },
            None => "–".to_string(),
        }
    }

    /// True when value `a` is better than value `b` for this metric.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.direction {
            Direction::HigherIsBetter => a > b,
            Direction::LowerIsBetter => a < b,
        }
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

/// Output tokens per second: the objective cells are ranked by.
pub const OUTPUT_TOK_S: &Metric = &METRICS[0];
/// Median time to first token.
pub const TTFT_P50: &Metric = &METRICS[4];
/// Median time per output token.
pub const TPOT_P50: &Metric = &METRICS[6];
/// Median inter-token latency.
pub const ITL_P50: &Metric = &METRICS[8];
/// Median end-to-end latency.
pub const E2E_P50: &Metric = &METRICS[10];

/// Every metric, in display order. The first is the ranking metric.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "output_tok_s",
        field: "output_tokens_per_s",
        label: "output tok/s",
        unit: "tok/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 1,
        accessor: |a| a.output_tokens_per_s.as_ref(),
    },
    Metric {
        name: "total_tok_s",
        field: "total_tokens_per_s",
        label: "total tok/s",
        unit: "tok/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 1,
        accessor: |a| a.total_tokens_per_s.as_ref(),
    },
    Metric {
        name: "request_rps",
        field: "request_per_s",
        label: "requests/s",
        unit: "req/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 3,
        accessor: |a| a.request_per_s.as_ref(),
    },
    Metric {
        name: "goodput_rps",
        field: "goodput_rps",
        label: "goodput",
        unit: "req/s",
        direction: Direction::HigherIsBetter,
        kind: MetricKind::Throughput,
        decimals: 3,
        accessor: |a| a.goodput_rps.as_ref(),
    },
    Metric {
        name: "ttft_p50",
        field: "ttft_ms_median",
        label: "TTFT p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 1,
        accessor: |a| a.ttft_ms_median.as_ref(),
    },
    Metric {
        name: "ttft_p99",
        field: "ttft_ms_p99",
        label: "TTFT p99",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 1,
        accessor: |a| a.ttft_ms_p99.as_ref(),
    },
    Metric {
        name: "tpot_p50",
        field: "tpot_ms_median",
        label: "TPOT p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.tpot_ms_median.as_ref(),
    },
    Metric {
        name: "tpot_p99",
        field: "tpot_ms_p99",
        label: "TPOT p99",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.tpot_ms_p99.as_ref(),
    },
    Metric {
        name: "itl_p50",
        field: "itl_ms_median",
        label: "ITL p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.itl_ms_median.as_ref(),
    },
    Metric {
        name: "itl_p99",
        field: "itl_ms_p99",
        label: "ITL p99",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 2,
        accessor: |a| a.itl_ms_p99.as_ref(),
    },
    Metric {
        name: "e2e_p50",
        field: "e2e_ms_median",
        label: "E2E p50",
        unit: "ms",
        direction: Direction::LowerIsBetter,
        kind: MetricKind::Latency,
        decimals: 1,
        accessor: |a| a.e2e_ms_median.as_ref(),
    },
    Metric {
        name: "e2e_p99",
        field: "e2e_ms_p99",
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
        for (m, name) in [
            (OUTPUT_TOK_S, "output_tok_s"),
            (TTFT_P50, "ttft_p50"),
            (TPOT_P50, "tpot_p50"),
            (ITL_P50, "itl_p50"),
            (E2E_P50, "e2e_p50"),
        ] {
            assert_eq!(m.name, name);
        }
    }

    #[test]
    fn accessors_read_the_matching_aggregate() {
        let agg = aggregate_repeats(&[]);
        for m in METRICS {
            assert!(m.aggregate(&agg).is_none(), "{}", m.name);
        }
    }

    #[test]
    fn fields_name_the_stats_json_aggregate_member_the_accessor_reads() {
        // Give every aggregate a distinct mean through JSON, keyed by `field`, and read it back
        // through the accessor: a field naming the wrong member cannot pass.
        let mut stats: serde_json::Value =
            serde_json::from_str(include_str!("../tests/golden/stats.json")).unwrap();
        let template = stats["aggregate"]["output_tokens_per_s"].clone();
        assert!(template.is_object());
        for (i, m) in METRICS.iter().enumerate() {
            let mut a = template.clone();
            a["mean"] = serde_json::json!(1000.0 + i as f64);
            stats["aggregate"][m.field] = a;
        }
        let stats: StatsFile = serde_json::from_value(stats).unwrap();
        for (i, m) in METRICS.iter().enumerate() {
            assert_eq!(m.mean(&stats), Some(1000.0 + i as f64), "{}", m.name);
        }
        assert!(TTFT_P50.better(1.0, 2.0) && OUTPUT_TOK_S.better(2.0, 1.0));
        let half = OUTPUT_TOK_S.of(&stats).unwrap().ci95.half_width().unwrap();
        assert_eq!(
            OUTPUT_TOK_S.format(&stats),
            format!("1000.0 ± {half:.1} tok/s")
        );
    }
}
