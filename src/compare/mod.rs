//! `compare`: noise-aware verdicts between a baseline and a candidate. Each side is a run
//! directory, a cell directory or a `stats.json` (or, as baseline, a Ferrum `BenchReport` or a
//! vLLM `bench serve` result; see [`load`]). Cells are paired by knob values and load; when each
//! side holds exactly one cell they are paired regardless. For every pair and metric of
//! [`crate::metric::METRICS`] the result carries both means with CIs, the relative change with
//! its CI, Welch's p and the verdict ([`crate::stats::judge`]), and next to them the config drift
//! between the paired cells' effective configs ([`crate::diff`]).
//!
//! [`compare_paths`] returns a serialisable [`CompareReport`] that the exporters (and the HTML
//! report) render; it never prints.

pub mod load;

pub use load::{InputFormat, Side, SideCell};

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::diff::{diff_effective_configs, ConfigDiff};
use crate::metric::{Direction, METRICS};
use crate::results::ResultsError;
use crate::stats::{judge, Comparison, Sample, Verdict, DEFAULT_ALPHA};

/// Version of the `compare --format json` document.
pub const COMPARE_SCHEMA_VERSION: u32 = 1;

/// The key cells are matched by: knob values (sorted) and load label. Neither the seed nor
/// `--set` enter it, so a candidate run with `--set` still pairs with its baseline.
pub fn match_key(knobs: &BTreeMap<String, String>, load_label: &str) -> String {
    let knobs: Vec<String> = knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{load_label}|{}", knobs.join(","))
}

/// Options of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Significance level of Welch's test.
    pub alpha: f64,
    /// Per-metric relative thresholds overriding the defaults (metric name → fraction).
    pub thresholds: BTreeMap<String, f64>,
    /// Compare pairs whose workload hashes differ.
    pub force: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: DEFAULT_ALPHA,
            thresholds: BTreeMap::new(),
            force: false,
        }
    }
}

/// Mean and CI of one side of one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideStat {
    /// Repeats.
    pub n: usize,
    /// Mean over repeats.
    pub mean: f64,
    /// Sample std, when known.
    pub std: Option<f64>,
    /// 95 % CI half-width (n ≥ 3).
    pub ci95_half_width: Option<f64>,
}

impl SideStat {
    fn of(s: &Sample) -> SideStat {
        SideStat {
            n: s.n,
            mean: s.mean,
            std: s.std,
            ci95_half_width: s.ci95_half_width(),
        }
    }

    /// `[mean − hw, mean + hw]`, or the mean twice without a CI.
    pub fn bounds(&self) -> (f64, f64) {
        let hw = self.ci95_half_width.unwrap_or(0.0);
        (self.mean - hw, self.mean + hw)
    }
}

/// One metric of one pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricResult {
    /// [`crate::metric::Metric::name`].
    pub metric: String,
    /// Table label.
    pub label: String,
    /// Unit.
    pub unit: String,
    /// Which way is better.
    pub direction: Direction,
    /// Relative threshold used (fraction).
    pub threshold: f64,
    /// Baseline mean and CI.
    pub baseline: SideStat,
    /// Candidate mean and CI.
    pub candidate: SideStat,
    /// Test, change and verdict.
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A matched pair of cells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairResult {
    /// Display name (the candidate's cell name; both when they differ).
    pub name: String,
    /// Baseline cell name.
    pub baseline_cell: String,
    /// Candidate cell name.
    pub candidate_cell: String,
    /// False when the workload hashes differ (and `--force` was not given).
    pub comparable: bool,
    /// Why not comparable, or a note (e.g. a workload hash that cannot be checked).
    pub note: Option<String>,
    /// Per metric (empty when not comparable); metrics missing on either side are left out.
    pub metrics: Vec<MetricResult>,
    /// Effective-config differences between the paired cells; `None` when a side has no config.
    pub drift: Option<ConfigDiff>,
}

impl PairResult {
    /// True when the paired cells' effective configs differ.
    pub fn has_drift(&self) -> bool {
        self.drift.as_ref().is_some_and(|d| !d.is_empty())
    }
}

/// A cell present on one side only, or not measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unmatched {
    /// `baseline` or `candidate`.
    pub side: String,
    /// Cell name.
    pub name: String,
    /// Why it has no pair (`no matching cell`, or the cell's status and reason).
    pub reason: String,
}

/// Counts over all pairs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `regressed` verdicts.
    pub regressed: usize,
    /// `improved` verdicts.
    pub improved: usize,
    /// `unchanged` verdicts.
    pub unchanged: usize,
    /// `inconclusive` verdicts.
    pub inconclusive: usize,
    /// Pairs not comparable.
    pub not_comparable: usize,
    /// Pairs whose configs drifted.
    pub drifted_pairs: usize,
    /// Cells without a pair.
    pub unmatched: usize,
}

/// The whole comparison, as rendered by every exporter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareReport {
    /// [`COMPARE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Significance level used.
    pub alpha: f64,
    /// Baseline side.
    pub baseline: load::SideInfo,
    /// Candidate side.
    pub candidate: load::SideInfo,
    /// Matched pairs.
    pub pairs: Vec<PairResult>,
    /// Cells without a pair (never dropped).
    pub unmatched: Vec<Unmatched>,
    /// Totals.
    pub counts: Counts,
}

/// Load both sides and compare them.
pub fn compare_paths(
    baseline: &Path,
    candidate: &Path,
    opts: &CompareOptions,
) -> Result<CompareReport, ResultsError> {
    let b = Side::load(baseline)?;
    let c = Side::load(candidate)?;
    Ok(compare(&b, &c, opts))
}

fn compare_pair(b: &SideCell, c: &SideCell, opts: &CompareOptions) -> PairResult {
    let name = if b.name == c.name {
        c.name.clone()
    } else {
        format!("{} ↔ {}", b.name, c.name)
    };
    let (comparable, note) = match (&b.workload_hash, &c.workload_hash) {
        (Some(x), Some(y)) if x != y && !opts.force => (
            false,
            Some(format!(
                "not comparable: workload hash {x} ≠ {y} (different workload or seed); --force compares anyway"
            )),
        ),
        (Some(x), Some(y)) if x != y => (
            true,
            Some(format!("workload hash {x} ≠ {y}; compared because of --force")),
        ),
        (None, _) | (_, None) => (
            true,
            Some("workload hash not recorded on one side; the workloads are assumed equal".into()),
        ),
        _ => (true, None),
    };
    let metrics = if comparable {
        METRICS
            .iter()
            .filter_map(|m| {
                let (sb, sc) = (b.samples.get(m.name)?, c.samples.get(m.name)?);
                let threshold = opts
                    .thresholds
                    .get(m.name)
                    .copied()
                    .unwrap_or_else(|| m.default_threshold());
                Some(MetricResult {
                    metric: m.name.to_string(),
                    label: m.label.to_string(),
                    unit: m.unit.to_string(),
                    direction: m.direction,
                    threshold,
                    baseline: SideStat::of(sb),
                    candidate: SideStat::of(sc),
                    comparison: judge(sb, sc, m.direction, opts.alpha, threshold),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let drift = match (&b.config, &c.config) {
        (Some(x), Some(y)) => Some(diff_effective_configs(x, y)),
        _ => None,
    };
    PairResult {
        name,
        baseline_cell: b.name.clone(),
        candidate_cell: c.name.clone(),
        comparable,
        note,
        metrics,
        drift,
    }
}

/// Compare two loaded sides.
pub fn compare(b: &Side, c: &Side, opts: &CompareOptions) -> CompareReport {
    let mut pairs = Vec::new();
    let mut unmatched = Vec::new();
    if b.cells.len() == 1 && c.cells.len() == 1 {
        pairs.push(compare_pair(&b.cells[0], &c.cells[0], opts));
    } else {
        let ckeys: BTreeMap<String, &SideCell> =
            c.cells.iter().map(|x| (x.match_key(), x)).collect();
        let bkeys: BTreeMap<String, &SideCell> =
            b.cells.iter().map(|x| (x.match_key(), x)).collect();
        for cell in &b.cells {
            match ckeys.get(&cell.match_key()) {
                Some(other) => pairs.push(compare_pair(cell, other, opts)),
                None => unmatched.push(Unmatched {
                    side: "baseline".into(),
                    name: cell.name.clone(),
                    reason: "no candidate cell with the same knobs and load".into(),
                }),
            }
        }
        for cell in &c.cells {
            if !bkeys.contains_key(&cell.match_key()) {
                unmatched.push(Unmatched {
                    side: "candidate".into(),
                    name: cell.name.clone(),
                    reason: "no baseline cell with the same knobs and load".into(),
                });
            }
        }
    }
    for (side, s) in [("baseline", b), ("candidate", c)] {
        for (name, reason) in &s.not_measured {
            unmatched.push(Unmatched {
                side: side.into(),
                name: name.clone(),
                reason: reason.clone(),
            });
        }
    }
    let mut counts = Counts {
        unmatched: unmatched.len(),
        ..Counts::default()
    };
    for p in &pairs {
        if !p.comparable {
            counts.not_comparable += 1;
        }
        if p.has_drift() {
            counts.drifted_pairs += 1;
        }
        for m in &p.metrics {
            match m.comparison.verdict {
                Verdict::Regressed => counts.regressed += 1,
                Verdict::Improved => counts.improved += 1,
                Verdict::Unchanged => counts.unchanged += 1,
                Verdict::Inconclusive => counts.inconclusive += 1,
            }
        }
    }
    CompareReport {
        schema_version: COMPARE_SCHEMA_VERSION,
        alpha: opts.alpha,
        baseline: b.info.clone(),
        candidate: c.info.clone(),
        pairs,
        unmatched,
        counts,
    }
}

#[cfg(test)]
mod tests;
