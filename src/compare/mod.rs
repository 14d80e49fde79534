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
use crate::metric::{Direction, Metric, METRICS};
use crate::results::ResultsError;
use crate::stats::{judge, judge_paired, Comparison, Sample, Verdict, DEFAULT_ALPHA};

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
    /// The test behind the verdict: `welch` (independent sides) or `paired` (both sides are
    /// cells of one interleaved run: rounds paired, [`crate::stats::paired`]).
    pub method: &'static str,
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
    /// Run-time decisions of the engine that changed between the sides (e.g. the MoE decode
    /// path: batched vs per-item), from the counters both sides reported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub engine_path: Vec<PathChange>,
}

/// Counters that record a run-time decision of the engine, with their labels: shown beside the
/// config drift when they changed by more than [`PATH_CHANGE_MIN`].
pub const ENGINE_PATH_COUNTERS: &[(&str, &str)] = &[(
    "batched_decode_step_share",
    "MoE decode path: share of decode steps batched",
)];

/// Smallest change of an engine-path share worth showing (5 percentage points).
pub const PATH_CHANGE_MIN: f64 = 0.05;

/// An engine-path counter that changed between the sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathChange {
    /// Counter name.
    pub counter: String,
    /// What it means.
    pub label: String,
    /// Baseline mean over repeats.
    pub baseline: f64,
    /// Candidate mean over repeats.
    pub candidate: f64,
}

impl PathChange {
    /// `label: 100 % → 0 %`.
    pub fn line(&self) -> String {
        format!(
            "{}: {:.0} % → {:.0} %",
            self.label,
            self.baseline * 100.0,
            self.candidate * 100.0
        )
    }
}

/// A metric's value in one repeat (the per-repeat statistic its across-repeat aggregate
/// averages), for pairing by round.
pub fn repeat_value(m: &Metric, r: &crate::measure::RepeatSummary) -> Option<f64> {
    let pct = |s: &Option<crate::stats::Summary>, p99: bool| {
        s.as_ref().map(|s| if p99 { s.p99 } else { s.median })
    };
    match m.field {
        "output_tokens_per_s" => Some(r.output_tokens_per_s),
        "total_tokens_per_s" => Some(r.total_tokens_per_s),
        "request_per_s" => Some(r.request_per_s),
        "goodput_rps" => Some(r.goodput_rps),
        "steady_output_tokens_per_s" => r.steady_output_tokens_per_s,
        f => {
            let (base, stat) = f.rsplit_once('_')?;
            let p99 = match stat {
                "median" => false,
                "p99" => true,
                _ => return None,
            };
            let s = match base {
                "ttft_ms" => &r.ttft_ms,
                "tpot_ms" => &r.tpot_ms,
                "itl_ms" => &r.itl_ms,
                "e2e_ms" => &r.e2e_ms,
                "queue_ms" => &r.queue_ms,
                _ => return None,
            };
            pct(s, p99)
        }
    }
}

/// The paired rounds of a metric when both cells come from the same interleaved run.
fn paired_rounds(b: &SideCell, c: &SideCell, metric: &str) -> Option<(Vec<f64>, Vec<f64>)> {
    if b.run_id.is_none() || b.run_id != c.run_id {
        return None;
    }
    let (x, y) = (b.rounds.get(metric)?, c.rounds.get(metric)?);
    Some(crate::stats::shared_rounds(x, y))
}

fn engine_path_changes(b: &SideCell, c: &SideCell) -> Vec<PathChange> {
    ENGINE_PATH_COUNTERS
        .iter()
        .filter_map(|(key, label)| {
            let (x, y) = (*b.engine_path.get(*key)?, *c.engine_path.get(*key)?);
            ((x - y).abs() > PATH_CHANGE_MIN).then(|| PathChange {
                counter: key.to_string(),
                label: label.to_string(),
                baseline: x,
                candidate: y,
            })
        })
        .collect()
}

impl PairResult {
    /// The tests behind this pair's verdicts, in words: `welch` (independent sides) or
    /// `paired` (repeats paired by interleaved round); both when metrics differ.
    pub fn method_line(&self) -> Option<String> {
        let has = |m: &str| self.metrics.iter().any(|x| x.method == m);
        let text = match (has("paired"), has("welch")) {
            (true, false) => "paired (both cells from one interleaved run: repeats paired by round, paired t-test)",
            (false, true) => "welch (independent sides: Welch's t-test)",
            (true, true) => "paired where both cells have every round, else welch",
            (false, false) => return None,
        };
        Some(text.to_string())
    }

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
                // Two cells of one interleaved run: pair their repeats by round, so drift of
                // the machine between rounds cancels (issue 14's paired analysis).
                let paired = paired_rounds(b, c, m.name);
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
                    method: if paired.is_some() { "paired" } else { "welch" },
                    comparison: match &paired {
                        Some((x, y)) => judge_paired(x, y, m.direction, opts.alpha, threshold),
                        None => judge(sb, sc, m.direction, opts.alpha, threshold),
                    },
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
        engine_path: engine_path_changes(b, c),
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
