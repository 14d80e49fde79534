//! The metrics the HTML report shows, in ONE table: name, label, unit, direction and the accessor
//! into `stats.json`'s aggregate. When the crate gains a shared metric list, this module is the
//! only place to switch over.

use crate::results::StatsFile;
use crate::stats::Aggregate;

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Larger values are better (throughput).
    HigherIsBetter,
    /// Smaller values are better (latency).
    LowerIsBetter,
}

/// One metric of a cell's aggregate.
#[derive(Debug, Clone, Copy)]
pub struct ReportMetric {
    /// Stable identifier (used in `data-*` attributes).
    pub name: &'static str,
    /// Column / axis label.
    pub label: &'static str,
    /// Unit shown after values.
    pub unit: &'static str,
    /// Which way is better.
    pub direction: Direction,
    /// Decimals shown.
    pub decimals: usize,
    /// Accessor into the stored statistics.
    pub get: fn(&StatsFile) -> Option<&Aggregate>,
}

impl ReportMetric {
    /// The mean of the metric for a cell, if it has one.
    pub fn mean(&self, stats: &StatsFile) -> Option<f64> {
        (self.get)(stats).map(|a| a.mean)
    }

    /// `mean ± ci unit` (or `mean unit (no CI, n=…)`).
    pub fn format(&self, stats: &StatsFile) -> String {
        match (self.get)(stats) {
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

    /// True when `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.direction {
            Direction::HigherIsBetter => a > b,
            Direction::LowerIsBetter => a < b,
        }
    }
}

/// Output tokens per second: the objective cells are ranked by.
pub const OUTPUT_TPS: ReportMetric = ReportMetric {
    name: "output_tok_s",
    label: "output tok/s",
    unit: "tok/s",
    direction: Direction::HigherIsBetter,
    decimals: 1,
    get: |s| s.aggregate.output_tokens_per_s.as_ref(),
};

/// Median time to first token.
pub const TTFT_P50: ReportMetric = ReportMetric {
    name: "ttft_ms_median",
    label: "TTFT p50",
    unit: "ms",
    direction: Direction::LowerIsBetter,
    decimals: 1,
    get: |s| s.aggregate.ttft_ms_median.as_ref(),
};

/// Median time per output token.
pub const TPOT_P50: ReportMetric = ReportMetric {
    name: "tpot_ms_median",
    label: "TPOT p50",
    unit: "ms",
    direction: Direction::LowerIsBetter,
    decimals: 2,
    get: |s| s.aggregate.tpot_ms_median.as_ref(),
};

/// Median inter-token latency.
pub const ITL_P50: ReportMetric = ReportMetric {
    name: "itl_ms_median",
    label: "ITL p50",
    unit: "ms",
    direction: Direction::LowerIsBetter,
    decimals: 2,
    get: |s| s.aggregate.itl_ms_median.as_ref(),
};

/// Median end-to-end latency.
pub const E2E_P50: ReportMetric = ReportMetric {
    name: "e2e_ms_median",
    label: "E2E p50",
    unit: "ms",
    direction: Direction::LowerIsBetter,
    decimals: 1,
    get: |s| s.aggregate.e2e_ms_median.as_ref(),
};

/// The objective: what the ranking, the heatmap and the Pareto charts' y axis use.
pub const OBJECTIVE: ReportMetric = OUTPUT_TPS;

/// Columns of the ranked table after the objective.
pub const TABLE_COLUMNS: [ReportMetric; 4] = [TTFT_P50, TPOT_P50, ITL_P50, E2E_P50];

/// The latency axes of the Pareto charts (throughput against each).
pub const PARETO_AXES: [ReportMetric; 2] = [TTFT_P50, TPOT_P50];
