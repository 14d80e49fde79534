//! Exporters of a [`CompareReport`]: one file per format behind one trait (hyperfine's
//! pattern) — the coloured terminal table, GitHub job-summary Markdown, JSON, JUnit XML and
//! Bencher Metric Format — plus the Ferrum `BenchReport` writer for a cell
//! ([`ferrum_report`]).

mod bmf;
pub mod ferrum_report;
mod json;
mod junit;
mod markdown;
mod terminal;

pub use bmf::Bmf;
pub use json::Json;
pub use junit::Junit;
pub use markdown::Markdown;
pub use terminal::Terminal;

use crate::compare::{CompareReport, MetricResult, SideStat};
use crate::stats::Verdict;

/// Renders a comparison into one output format.
pub trait Exporter {
    /// The rendered document; a serialisation failure is an error, never document content.
    fn render(&self, report: &CompareReport) -> Result<String, crate::results::ResultsError>;
}

/// `mean ± hw` with the metric's decimals (`mean (n=2)` without a CI).
pub(crate) fn fmt_side(s: &SideStat, decimals: usize) -> String {
    match s.ci95_half_width {
        Some(h) => format!("{:.*} ± {:.*}", decimals, s.mean, decimals, h),
        None => format!("{:.*} (n={})", decimals, s.mean, s.n),
    }
}

/// `+4.1 % [+1.0, +7.2]` or `–`.
pub(crate) fn fmt_change(m: &MetricResult) -> String {
    match m.comparison.change {
        Some(c) => format!(
            "{:+.1} % [{:+.1}, {:+.1}]",
            c.estimate * 100.0,
            c.lower * 100.0,
            c.upper * 100.0
        ),
        None => "–".to_string(),
    }
}

/// `0.012` or `–`.
pub(crate) fn fmt_p(m: &MetricResult) -> String {
    match m.comparison.welch {
        Some(w) if w.p < 0.001 => "<0.001".to_string(),
        Some(w) => format!("{:.3}", w.p),
        None => "–".to_string(),
    }
}

/// `output tok/s`, `TTFT p50 ms`: the label, with the unit unless the label already ends in it.
pub(crate) fn title(m: &MetricResult) -> String {
    if m.label.ends_with(&m.unit) {
        m.label.clone()
    } else {
        format!("{} {}", m.label, m.unit)
    }
}

/// Decimal places of a metric by name.
pub(crate) fn decimals(m: &MetricResult) -> usize {
    crate::metric::Metric::by_name(&m.metric).map_or(2, |x| x.decimals)
}

/// One-line verdict summary of a report.
pub(crate) fn headline(r: &CompareReport) -> String {
    let c = &r.counts;
    format!(
        "{} regressed, {} improved, {} unchanged, {} inconclusive over {} pair(s); {} not comparable, {} with config drift, {} unmatched",
        c.regressed,
        c.improved,
        c.unchanged,
        c.inconclusive,
        r.pairs.len(),
        c.not_comparable,
        c.drifted_pairs,
        c.unmatched
    )
}

/// Emoji-free verdict marker for text formats.
pub(crate) fn verdict_text(v: Verdict) -> &'static str {
    v.as_str()
}

#[cfg(test)]
mod tests;
