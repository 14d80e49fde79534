//! The report's `tune` section (a run directory with `tune.json`): the objective of every trial
//! against its trial number, with the incumbent as a step line. Feasible trials are filled
//! circles, infeasible ones hollow triangles, failed ones ✕ on the chart's floor labelled
//! "failed" — shapes and labels, never colour alone.
//!
//! `tune.json` is read with a tolerant schema of its own (every field optional, unknown ones
//! ignored): the report must open any tune run, including one written by an older or newer
//! `ferrum-bench`, and must not depend on the tuner's types.

use std::fmt::Write;
use std::path::Path;

use serde::Deserialize;

use super::svg::{c, esc, marker, num, polyline_points, Frame};
use crate::results::read::read_json;
use crate::results::ResultsError;

/// File name of the tune document inside a run directory.
pub const TUNE_FILE: &str = "tune.json";

/// What the report reads of `tune.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TuneData {
    /// Objective metric name.
    #[serde(default)]
    pub objective: String,
    /// `maximize` or `minimize`.
    #[serde(default)]
    pub direction: String,
    /// Strategy run.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Budget in runs.
    #[serde(default)]
    pub budget: Option<usize>,
    /// Runs used.
    #[serde(default)]
    pub runs_used: Option<usize>,
    /// Every trial in order.
    #[serde(default)]
    pub trials: Vec<TrialLine>,
}

/// One trial as the report reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TrialLine {
    /// 1-based order.
    #[serde(default)]
    pub trial: usize,
    /// Cell name.
    #[serde(default)]
    pub cell: String,
    /// Per-repeat values of this trial: objective first, then each constraint's metric.
    #[serde(default)]
    pub values: Vec<Vec<Option<f64>>>,
    /// The configuration's objective mean after this trial.
    #[serde(default)]
    pub objective_mean: Option<f64>,
    /// Whether every constraint holds after this trial.
    #[serde(default)]
    pub feasible: bool,
    /// Why the configuration could not be measured.
    #[serde(default)]
    pub failure: Option<String>,
    /// Incumbent cell after this trial.
    #[serde(default)]
    pub incumbent: Option<String>,
    /// The strategy's reason.
    #[serde(default)]
    pub reason: String,
}

/// Read `<run_dir>/tune.json` when present.
pub fn load_tune(run_dir: &Path) -> Result<Option<TuneData>, ResultsError> {
    let path = run_dir.join(TUNE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let raw = read_json(&path)?;
    serde_json::from_value(raw)
        .map(Some)
        .map_err(|e| ResultsError::Corrupt {
            path: path.display().to_string(),
            message: format!("not a tune document: {e}"),
        })
}

/// How a trial is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialKind {
    /// Measured, constraints met: filled circle.
    Feasible,
    /// Measured, a constraint missed: hollow triangle.
    Infeasible,
    /// Not measured (resolver rejection, engine failure, timeout): ✕ on the floor.
    Failed,
}

/// One point of the tune chart.
#[derive(Debug, Clone, PartialEq)]
pub struct TunePoint {
    /// Trial number (x).
    pub trial: usize,
    /// Cell name.
    pub cell: String,
    /// Mean of the objective over the repeats *this trial* measured (y); `None` for a failure.
    pub value: Option<f64>,
    /// Marker.
    pub kind: TrialKind,
}

/// The data behind the chart: a point per trial and the incumbent's objective mean after each
/// trial (the step line; `None` while there is no incumbent).
#[derive(Debug, Clone, PartialEq)]
pub struct TuneChart {
    /// One point per trial, in trial order.
    pub points: Vec<TunePoint>,
    /// `(trial, incumbent mean)` after each trial.
    pub incumbent: Vec<(usize, Option<f64>)>,
}

/// Build the chart data. A trial's own value is the mean of the objective over the repeats it
/// measured (so a re-measurement shows what it saw, not the pooled mean); the incumbent's value
/// after trial t is the pooled mean recorded by the latest trial ≤ t of the incumbent's cell.
pub fn tune_chart(trials: &[TrialLine]) -> TuneChart {
    let mut points = Vec::with_capacity(trials.len());
    let mut incumbent = Vec::with_capacity(trials.len());
    let mut latest_mean: std::collections::BTreeMap<&str, Option<f64>> = Default::default();
    for (i, t) in trials.iter().enumerate() {
        let trial = if t.trial > 0 { t.trial } else { i + 1 };
        let own: Vec<f64> = t
            .values
            .iter()
            .filter_map(|r| r.first().copied().flatten())
            .filter(|v| v.is_finite())
            .collect();
        let value = (!own.is_empty()).then(|| own.iter().sum::<f64>() / own.len() as f64);
        let kind = if t.failure.is_some() || value.is_none() {
            TrialKind::Failed
        } else if t.feasible {
            TrialKind::Feasible
        } else {
            TrialKind::Infeasible
        };
        if t.failure.is_none() {
            latest_mean.insert(t.cell.as_str(), t.objective_mean);
        }
        points.push(TunePoint {
            trial,
            cell: t.cell.clone(),
            value: if kind == TrialKind::Failed {
                None
            } else {
                value
            },
            kind,
        });
        let inc = t
            .incumbent
            .as_deref()
            .and_then(|cell| latest_mean.get(cell).copied().flatten());
        incumbent.push((trial, inc));
    }
    TuneChart { points, incumbent }
}

/// The step line's vertices: each incumbent value holds from its trial to the next trial, then
/// steps; a gap (no incumbent) breaks the line into runs. Returns the runs of `(x, y)`.
pub fn step_runs(incumbent: &[(usize, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (k, &(trial, value)) in incumbent.iter().enumerate() {
        let Some(v) = value else {
            if !current.is_empty() {
                runs.push(std::mem::take(&mut current));
            }
            continue;
        };
        let x = trial as f64;
        if let Some(&(_, prev)) = current.last() {
            if prev != v {
                current.push((x, prev));
            }
        }
        current.push((x, v));
        if k + 1 == incumbent.len() {
            // The last value holds for half a trial so a final change stays visible.
            current.push((x + 0.5, v));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Append `<section id="tune">` when the run is a tune run.
pub(super) fn tune_section(out: &mut String, tune: Option<&TuneData>) {
    let Some(tune) = tune else { return };
    out.push_str(
        "<section id=\"tune\"><h2>Tune: objective against trial number, with the incumbent</h2>",
    );
    let _ = write!(
        out,
        "<p class=\"note\">Objective <code>{}</code> ({}), strategy {}, {} of {} run(s) used, {} trial(s). A point is the mean of the repeats that trial measured; the step line is the incumbent's mean over all its repeats after each trial.</p>",
        esc(&tune.objective),
        esc(&tune.direction),
        esc(tune.strategy.as_deref().unwrap_or("–")),
        tune.runs_used.map_or("–".into(), |n| n.to_string()),
        tune.budget.map_or("–".into(), |n| n.to_string()),
        tune.trials.len()
    );
    if tune.trials.is_empty() {
        out.push_str("<p class=\"note\">No trial ran.</p></section>\n");
        return;
    }
    let chart = tune_chart(&tune.trials);
    out.push_str(&tune_svg(tune, &chart));
    out.push_str("</section>\n");
}

/// The chart as inline SVG.
fn tune_svg(tune: &TuneData, chart: &TuneChart) -> String {
    let n = chart.points.len();
    let ys: Vec<f64> = chart
        .points
        .iter()
        .filter_map(|p| p.value)
        .chain(chart.incumbent.iter().filter_map(|p| p.1))
        .collect();
    let y_hi = ys.iter().copied().fold(0.0f64, f64::max);
    let x_hi = chart
        .points
        .iter()
        .map(|p| p.trial)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (w, h) = (900.0, 380.0);
    let (frame, xt, yt) = Frame::nice(
        (70.0, 14.0, 800.0, 300.0),
        (0.0, x_hi + 0.5),
        (0.0, y_hi * 1.08),
    );
    // Trial numbers are integers: drop fractional ticks.
    let xt: Vec<f64> = xt.into_iter().filter(|v| v.fract() == 0.0).collect();
    let count = |k: TrialKind| chart.points.iter().filter(|p| p.kind == k).count();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" data-chart=\"tune\" data-trials=\"{n}\" data-feasible=\"{}\" data-infeasible=\"{}\" data-failed=\"{}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        count(TrialKind::Feasible),
        count(TrialKind::Infeasible),
        count(TrialKind::Failed),
        esc(&format!("{} against trial number", tune.objective)),
        w = c(w),
        h = c(h)
    );
    let better = if tune.direction == "minimize" {
        "lower is better"
    } else {
        "higher is better"
    };
    frame.draw_axes(
        &mut out,
        &xt,
        &yt,
        "trial",
        &format!("{} — {better}", tune.objective),
    );
    for run in step_runs(&chart.incumbent) {
        let _ = write!(
            out,
            "<polyline class=\"incumbent-line\" points=\"{}\"/>",
            polyline_points(run.iter().map(|&(x, y)| (frame.x.at(x), frame.y.at(y))))
        );
    }
    let floor = frame.top + frame.height - 8.0;
    for (p, t) in chart.points.iter().zip(&tune.trials) {
        let px = frame.x.at(p.trial as f64);
        let kind = match p.kind {
            TrialKind::Feasible => "feasible",
            TrialKind::Infeasible => "infeasible",
            TrialKind::Failed => "failed",
        };
        let tip = format!(
            "trial {} · {}\n{}{}\n{}",
            p.trial,
            p.cell,
            match p.value {
                Some(v) => format!("{}: {}", tune.objective, num(v)),
                None => "not measured".into(),
            },
            match (&t.failure, p.kind) {
                (Some(f), _) => format!("\nfailed: {f}"),
                (None, TrialKind::Infeasible) => "\ninfeasible: a constraint missed".into(),
                _ => String::new(),
            },
            t.reason
        );
        let _ = write!(
            out,
            "<g class=\"trial\" data-kind=\"{kind}\"><title>{}</title>",
            esc(&tip)
        );
        match (p.kind, p.value) {
            (TrialKind::Failed, _) | (_, None) => {
                let _ = write!(
                    out,
                    "<path class=\"m-failed\" d=\"M{} {}L{} {}M{} {}L{} {}\"/><text class=\"pt-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">failed</text>",
                    c(px - 5.0),
                    c(floor - 5.0),
                    c(px + 5.0),
                    c(floor + 5.0),
                    c(px + 5.0),
                    c(floor - 5.0),
                    c(px - 5.0),
                    c(floor + 5.0),
                    c(px),
                    c(floor - 9.0)
                );
            }
            (TrialKind::Infeasible, Some(v)) => {
                out.push_str(&marker("triangle", px, frame.y.at(v), 5.0, "m-other"));
            }
            (TrialKind::Feasible, Some(v)) => {
                out.push_str(&marker("circle", px, frame.y.at(v), 4.5, "m-front"));
            }
        }
        out.push_str("</g>");
    }
    let ly = h - 16.0;
    out.push_str(&marker("circle", 80.0, ly - 4.0, 4.0, "m-front"));
    let _ = write!(
        out,
        "<text class=\"legend\" x=\"90\" y=\"{y}\">feasible</text>{}<text class=\"legend\" x=\"170\" y=\"{y}\">infeasible</text><path class=\"m-failed\" d=\"M255 {a}L263 {b}M263 {a}L255 {b}\"/><text class=\"legend\" x=\"270\" y=\"{y}\">failed (not measured)</text><polyline class=\"incumbent-line\" points=\"410,{m} 440,{m}\"/><text class=\"legend\" x=\"446\" y=\"{y}\">incumbent (step line)</text></svg>",
        marker("triangle", 160.0, ly - 4.0, 4.0, "m-other"),
        y = c(ly),
        a = c(ly - 8.0),
        b = c(ly),
        m = c(ly - 4.0)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(
        n: usize,
        cell: &str,
        values: &[f64],
        mean: Option<f64>,
        feasible: bool,
        failure: Option<&str>,
        incumbent: Option<&str>,
    ) -> TrialLine {
        TrialLine {
            trial: n,
            cell: cell.into(),
            values: values.iter().map(|v| vec![Some(*v), Some(1.0)]).collect(),
            objective_mean: mean,
            feasible,
            failure: failure.map(str::to_string),
            incumbent: incumbent.map(str::to_string),
            reason: "r".into(),
        }
    }

    fn trials() -> Vec<TrialLine> {
        vec![
            trial(1, "a", &[100.0], Some(100.0), true, None, Some("a")),
            trial(2, "b", &[], None, false, Some("engine failed"), Some("a")),
            trial(3, "c", &[150.0], Some(150.0), false, None, Some("a")),
            trial(4, "d", &[120.0], Some(120.0), true, None, Some("d")),
            // Re-measurement of d: its own repeats average 90, the pooled mean becomes 100.
            trial(5, "d", &[80.0, 100.0], Some(100.0), true, None, Some("d")),
        ]
    }

    #[test]
    fn chart_data_marks_kinds_and_tracks_the_incumbent() {
        let chart = tune_chart(&trials());
        let kinds: Vec<TrialKind> = chart.points.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                TrialKind::Feasible,
                TrialKind::Failed,
                TrialKind::Infeasible,
                TrialKind::Feasible,
                TrialKind::Feasible
            ]
        );
        let values: Vec<Option<f64>> = chart.points.iter().map(|p| p.value).collect();
        assert_eq!(
            values,
            [Some(100.0), None, Some(150.0), Some(120.0), Some(90.0)]
        );
        assert_eq!(
            chart.incumbent,
            [
                (1, Some(100.0)),
                (2, Some(100.0)),
                (3, Some(100.0)),
                (4, Some(120.0)),
                (5, Some(100.0))
            ]
        );
    }

    #[test]
    fn step_line_steps_and_breaks_on_gaps() {
        let runs = step_runs(&[
            (1, None),
            (2, Some(10.0)),
            (3, Some(10.0)),
            (4, Some(12.0)),
            (5, None),
            (6, Some(7.0)),
        ]);
        assert_eq!(
            runs,
            vec![
                vec![(2.0, 10.0), (3.0, 10.0), (4.0, 10.0), (4.0, 12.0)],
                vec![(6.0, 7.0), (6.5, 7.0)],
            ]
        );
    }

    #[test]
    fn section_draws_one_chart_with_every_trial() {
        let tune = TuneData {
            objective: "output_tok_s".into(),
            direction: "maximize".into(),
            strategy: Some("model".into()),
            budget: Some(10),
            runs_used: Some(6),
            trials: trials(),
        };
        let mut out = String::new();
        tune_section(&mut out, Some(&tune));
        assert_eq!(out.matches("data-chart=\"tune\"").count(), 1);
        assert!(out.contains(
            "data-trials=\"5\" data-feasible=\"3\" data-infeasible=\"1\" data-failed=\"1\""
        ));
        assert_eq!(out.matches("<g class=\"trial\"").count(), 5);
        assert!(out.contains(">failed</text>") && out.contains("failed: engine failed"));
        assert!(out.matches("class=\"incumbent-line\"").count() >= 2);
        let mut none = String::new();
        tune_section(&mut none, None);
        assert!(none.is_empty(), "no tune.json, no section");
    }

    #[test]
    fn tolerant_reader_accepts_extra_and_missing_fields() {
        let t: TuneData = serde_json::from_str(
            r#"{"objective":"tpot_p99","future":1,"trials":[{"trial":1,"cell":"x","values":[[null,2.0]],"feasible":true,"new_field":[]}]}"#,
        )
        .unwrap();
        let chart = tune_chart(&t.trials);
        assert_eq!(
            chart.points[0].kind,
            TrialKind::Failed,
            "no objective value"
        );
        assert_eq!(chart.incumbent, [(1, None)]);
    }
}
