//! `report.html`: one self-contained HTML file describing a run — header, ranked table with CIs
//! and ties, objective heatmap, throughput-vs-latency Pareto charts, latency CDFs, step timelines,
//! cells not measured, and the effective-config difference between the best and worst cells.
//!
//! Charts are hand-built inline SVG rather than a vendored chart library: the output is a pure
//! function of the run directory (no timestamps, no random ids), so two reports diff line by
//! line; it renders with scripting disabled, prints, and needs no licence notice or network. The
//! page carries a Content-Security-Policy of `default-src 'none'`, so even a browser that follows
//! every reference cannot fetch anything. The only script makes the ranked table sortable.
//!
//! Size: every CDF is cut to at most [`charts::CDF_MAX_POINTS`] exact points and every timeline to
//! [`charts::TIMELINE_BUCKETS`] time buckets (first repeat only), so the page grows with the number
//! of cells, not with requests or steps (see the README for measured sizes).

mod charts;
mod compare;
mod data;
mod load;
mod page;
mod pbest;
mod svg;
mod timeline;
mod tune;

pub use crate::metric::Direction;
pub use compare::{render_compare, write_compare_report, CompareHtml};
pub use data::{cdf_points, heatmap_grid, json_diff, pareto_front, tie_groups, Grid};
pub use load::{load_run, CellData, RunData};
pub use tune::{step_runs, tune_chart, TrialKind, TrialLine, TuneChart, TuneData, TunePoint};

use crate::metric::{Metric, E2E_P50, ITL_P50, OUTPUT_TOK_S, TPOT_P50, TTFT_P50};

/// The objective: what the ranking, the heatmap and the Pareto charts' y axis use (the one metric
/// list's ranking metric).
pub const OBJECTIVE: &Metric = OUTPUT_TOK_S;

/// Columns of the ranked table after the objective.
const TABLE_COLUMNS: [&Metric; 4] = [TTFT_P50, TPOT_P50, ITL_P50, E2E_P50];

/// The latency axes of the Pareto charts (throughput against each).
const PARETO_AXES: [&Metric; 2] = [TTFT_P50, TPOT_P50];
pub use timeline::{timeline, Bucket, Timeline};

use std::path::{Path, PathBuf};

use crate::results::{write_atomic, ResultsError};

/// Default file name inside the run directory.
pub const REPORT_FILE: &str = "report.html";

/// Render the report of a loaded run.
pub fn render(run: &RunData) -> String {
    page::render(run)
}

/// Read `run_dir`, render its report and write it atomically to `out` (default
/// `<run_dir>/report.html`); returns the path written.
pub fn write_report(run_dir: &Path, out: Option<&Path>) -> Result<PathBuf, ResultsError> {
    let run = load_run(run_dir)?;
    let html = render(&run);
    let path = out.map_or_else(|| run_dir.join(REPORT_FILE), Path::to_path_buf);
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// When a `sweep`, `run` or `tune` ends (also after an interruption): write
/// `<run_dir>/report.html` unless `no_report`, and say where on stderr. A failure to write it is
/// a warning, never a change of the run's exit code: the results themselves are complete, and
/// `ferrum-bench report` can be rerun.
pub fn write_after_run(run_dir: &Path, no_report: bool) {
    if no_report {
        return;
    }
    match write_report(run_dir, None) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(err) => eprintln!(
            "warning: report not written ({err}); retry with `ferrum-bench report {}`",
            run_dir.display()
        ),
    }
}

/// Completed cells in rank order (by the objective, best first; ties in the mean by name), with
/// each position's tie-group leader (see [`tie_groups`]).
pub(crate) struct Ranking {
    /// Indices into `RunData::cells`, best first.
    pub order: Vec<usize>,
    /// For each position of `order`, the position of its tie group's first cell.
    pub tie_leader: Vec<usize>,
}

impl Ranking {
    pub(crate) fn new(run: &RunData) -> Ranking {
        let mut order: Vec<usize> = (0..run.cells.len())
            .filter(|&i| {
                run.cells[i]
                    .stats
                    .as_ref()
                    .and_then(|s| OBJECTIVE.mean(s))
                    .is_some_and(f64::is_finite)
            })
            .collect();
        let mean = |i: usize| {
            run.cells[i]
                .stats
                .as_ref()
                .and_then(|s| OBJECTIVE.mean(s))
                .unwrap_or(f64::NAN)
        };
        order.sort_by(|&a, &b| {
            let (x, y) = (mean(a), mean(b));
            let ord = match OBJECTIVE.direction {
                Direction::HigherIsBetter => y.total_cmp(&x),
                Direction::LowerIsBetter => x.total_cmp(&y),
            };
            ord.then_with(|| run.cells[a].entry.name.cmp(&run.cells[b].entry.name))
        });
        let intervals: Vec<(f64, Option<f64>)> = order
            .iter()
            .map(|&i| {
                let a = run.cells[i].stats.as_ref().and_then(|s| OBJECTIVE.of(s));
                (mean(i), a.and_then(|a| a.ci95.half_width()))
            })
            .collect();
        let tie_leader = tie_groups(&intervals);
        Ranking { order, tie_leader }
    }

    /// Rank (1-based) of cell `i`, if completed.
    pub(crate) fn rank_of(&self, i: usize) -> Option<usize> {
        self.order.iter().position(|&c| c == i).map(|p| p + 1)
    }
}

#[cfg(test)]
mod tests;
