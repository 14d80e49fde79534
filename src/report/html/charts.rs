//! The charts, as inline SVG strings: objective heatmap, throughput-vs-latency scatter with the
//! Pareto front, latency CDFs (one cell, or best/median/worst overlaid) and step timelines.
//! Every series is told apart by shape, dash pattern or a text label, never by colour alone.

use std::fmt::Write;

use super::data::{cdf_points, pareto_front, Grid};
use super::svg::{c, esc, marker, num, polyline_points, Frame, Scale};
use super::timeline::Timeline;
use super::OBJECTIVE;
use crate::metric::{Direction, Metric, TPOT_P50, TTFT_P50};
use crate::results::StatsFile;

/// At most this many points per CDF curve (see [`cdf_points`]).
pub const CDF_MAX_POINTS: usize = 120;
/// Time buckets per step timeline (see [`super::timeline::timeline`]).
pub const TIMELINE_BUCKETS: usize = 240;

fn open_svg(out: &mut String, kind: &str, w: f64, h: f64, label: &str, extra: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" data-chart=\"{kind}\"{extra} viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(label),
        w = c(w),
        h = c(h)
    );
}

/// A cell the heatmap can place: its status text, stats, and whether it is the best.
pub struct HeatCell<'a> {
    /// Cell name (for the tooltip).
    pub name: &'a str,
    /// `completed`, `skipped`, `failed`, …
    pub status: &'a str,
    /// Reason for a cell that did not complete.
    pub reason: Option<&'a str>,
    /// Stats of a completed cell.
    pub stats: Option<&'a StatsFile>,
    /// Rank (1-based) among completed cells.
    pub rank: Option<usize>,
}

/// Heatmap of the objective over a two-dimensional grid: shade and printed value per cell, the
/// best cell starred and framed, hatched cells for skipped / failed ones.
pub fn heatmap(grid: &Grid, cells: &[HeatCell<'_>]) -> String {
    let cols = grid.x_values.len() as f64;
    let rows = grid.y_values.len() as f64;
    let cw = (1000.0 / cols).clamp(70.0, 150.0);
    let ch = 54.0;
    let (left, top) = (150.0, 22.0);
    let w = left + cw * cols + 20.0;
    let h = top + ch * rows + 56.0;
    let values: Vec<f64> = cells
        .iter()
        .filter_map(|hc| hc.stats.and_then(|s| OBJECTIVE.mean(s)))
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut out = String::new();
    open_svg(
        &mut out,
        "heatmap",
        w,
        h,
        &format!("{} by {} and {}", OBJECTIVE.label, grid.x_name, grid.y_name),
        &format!(" data-cells=\"{}\"", cells.len()),
    );
    for (r, row) in grid.cells.iter().enumerate() {
        let y = top + ch * r as f64;
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            c(left - 8.0),
            c(y + ch / 2.0 + 4.0),
            esc(&grid.y_values[r])
        );
        for (col, idx) in row.iter().enumerate() {
            let x = left + cw * col as f64;
            let Some(hc) = idx.and_then(|i| cells.get(i)) else {
                let _ = write!(
                    out,
                    "<rect class=\"hm-empty\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
                    c(x),
                    c(y),
                    c(cw),
                    c(ch)
                );
                continue;
            };
            let mean = hc.stats.and_then(|s| OBJECTIVE.mean(s));
            let (fill, dark) = match (mean, hc.status) {
                (Some(v), _) => {
                    let mut t = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
                    if OBJECTIVE.direction == Direction::LowerIsBetter {
                        t = 1.0 - t;
                    }
                    (shade(t), t > 0.55)
                }
                (None, "skipped") => ("url(#fb-hatch)".to_string(), false),
                (None, "failed") => ("url(#fb-cross)".to_string(), false),
                _ => ("#ffffff".to_string(), false),
            };
            let best = hc.rank == Some(1);
            let mut tip = format!("{}\nstatus: {}", hc.name, hc.status);
            if let Some(s) = hc.stats {
                for m in [OBJECTIVE, TTFT_P50, TPOT_P50] {
                    let _ = write!(tip, "\n{}: {}", m.label, m.format(s));
                }
                if let Some(rank) = hc.rank {
                    let _ = write!(tip, "\nrank {rank}");
                }
            }
            if let Some(reason) = hc.reason {
                let _ = write!(tip, "\nreason: {reason}");
            }
            let _ = write!(
                out,
                "<g class=\"hm-cell{}\" data-status=\"{}\"><title>{}</title><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
                if best { " best" } else { "" },
                esc(hc.status),
                esc(&tip),
                c(x + 1.0),
                c(y + 1.0),
                c(cw - 2.0),
                c(ch - 2.0),
                fill
            );
            let text_class = if dark { "hm-text on-dark" } else { "hm-text" };
            let (line1, line2) = match (mean, hc.stats.and_then(|s| OBJECTIVE.of(s))) {
                (Some(v), Some(a)) => (
                    format!("{}{}", if best { "★ " } else { "" }, num(v)),
                    a.ci95.half_width().map(|h| format!("± {}", num(h))),
                ),
                _ => (hc.status.to_string(), None),
            };
            let _ = write!(
                out,
                "<text class=\"{text_class}\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                c(x + cw / 2.0),
                c(y + if line2.is_some() { 24.0 } else { 31.0 }),
                esc(&line1)
            );
            if let Some(l2) = line2 {
                let _ = write!(
                    out,
                    "<text class=\"{text_class} small\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    c(x + cw / 2.0),
                    c(y + 40.0),
                    esc(&l2)
                );
            }
            out.push_str("</g>");
        }
    }
    let base = top + ch * rows;
    for (col, v) in grid.x_values.iter().enumerate() {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            c(left + cw * (col as f64 + 0.5)),
            c(base + 16.0),
            esc(v)
        );
    }
    let _ = write!(
        out,
        "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text class=\"axis-label\" x=\"{}\" y=\"{}\">{} ↓</text></svg>",
        c(left + cw * cols / 2.0),
        c(base + 38.0),
        esc(&grid.x_name),
        c(2.0),
        c(top - 8.0),
        esc(&grid.y_name)
    );
    out
}

/// Light (worst) to dark (best) blue; the printed value carries the information without colour.
fn shade(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(238.0, 24.0),
        mix(243.0, 64.0),
        mix(250.0, 128.0)
    )
}

/// One point of the Pareto scatter.
pub struct ScatterPoint<'a> {
    /// Rank (1-based) of the cell; printed beside the point.
    pub rank: usize,
    /// Cell name (tooltip).
    pub name: &'a str,
    /// The cell's stats.
    pub stats: &'a StatsFile,
}

/// Objective (y) against a latency metric (x), with 95 % CI whiskers; cells on the Pareto front
/// are filled diamonds joined by a dashed line, the others hollow circles. Returns the SVG and
/// the ranks on the front.
pub fn pareto_scatter(x_metric: &Metric, points: &[ScatterPoint<'_>]) -> (String, Vec<usize>) {
    let xy: Vec<(f64, f64, f64, f64)> = points
        .iter()
        .map(|p| {
            let x = x_metric.of(p.stats);
            let y = OBJECTIVE.of(p.stats);
            (
                x.map_or(f64::NAN, |a| a.mean),
                y.map_or(f64::NAN, |a| a.mean),
                x.and_then(|a| a.ci95.half_width()).unwrap_or(0.0),
                y.and_then(|a| a.ci95.half_width()).unwrap_or(0.0),
            )
        })
        .collect();
    // pareto_front minimises x and maximises y: orient both by their directions.
    let oriented: Vec<(f64, f64)> = xy
        .iter()
        .map(|&(x, y, _, _)| {
            let x = if x_metric.direction == Direction::LowerIsBetter {
                x
            } else {
                -x
            };
            let y = if OBJECTIVE.direction == Direction::HigherIsBetter {
                y
            } else {
                -y
            };
            (x, y)
        })
        .collect();
    let front = pareto_front(&oriented);
    let finite: Vec<&(f64, f64, f64, f64)> = xy
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    // Axes from 0 to past the largest mean: a wide interval must not squash every point into a
    // corner, so whiskers that leave the frame are cut at its edge.
    let x_hi = finite.iter().map(|p| p.0).fold(0.0f64, f64::max);
    let y_hi = finite.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let (w, h) = (594.0, 380.0);
    let (frame, xt, yt) = Frame::nice(
        (70.0, 14.0, 500.0, 300.0),
        (0.0, x_hi * 1.08),
        (0.0, y_hi * 1.08),
    );
    let x_top = xt.last().copied().unwrap_or(x_hi);
    let y_top = yt.last().copied().unwrap_or(y_hi);
    let cx = |v: f64| frame.x.at(v.clamp(0.0, x_top));
    let cy = |v: f64| frame.y.at(v.clamp(0.0, y_top));
    let mut out = String::new();
    open_svg(
        &mut out,
        "scatter",
        w,
        h,
        &format!("{} against {}", OBJECTIVE.label, x_metric.label),
        &format!(
            " data-points=\"{}\" data-front=\"{}\"",
            finite.len(),
            front.len()
        ),
    );
    frame.draw_axes(
        &mut out,
        &xt,
        &yt,
        &format!("{} ({}) — lower is better", x_metric.label, x_metric.unit),
        &format!("{} — higher is better", OBJECTIVE.label),
    );
    let at = |i: usize| (frame.x.at(xy[i].0), frame.y.at(xy[i].1));
    let _ = write!(
        out,
        "<polyline class=\"front-line\" points=\"{}\"/>",
        polyline_points(front.iter().map(|&i| at(i)))
    );
    for (i, p) in points.iter().enumerate() {
        let (x, y, xh, yh) = xy[i];
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let (px, py) = at(i);
        let on_front = front.contains(&i);
        let tip = format!(
            "#{} {}\n{}: {}\n{}: {}{}",
            p.rank,
            p.name,
            OBJECTIVE.label,
            OBJECTIVE.format(p.stats),
            x_metric.label,
            x_metric.format(p.stats),
            if on_front {
                "\non the Pareto front"
            } else {
                ""
            }
        );
        let _ = write!(
            out,
            "<g class=\"pt\" data-front=\"{on_front}\"><title>{}</title>",
            esc(&tip)
        );
        if xh > 0.0 {
            let _ = write!(
                out,
                "<line class=\"whisker\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                c(cx(x - xh)),
                c(py),
                c(cx(x + xh)),
                c(py)
            );
        }
        if yh > 0.0 {
            let _ = write!(
                out,
                "<line class=\"whisker\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                c(px),
                c(cy(y - yh)),
                c(px),
                c(cy(y + yh))
            );
        }
        if on_front {
            out.push_str(&marker("diamond", px, py, 5.5, "m-front"));
        } else {
            out.push_str(&marker("circle", px, py, 4.5, "m-other"));
        }
        let _ = write!(
            out,
            "<text class=\"pt-label{}\" x=\"{}\" y=\"{}\">{}</text></g>",
            if on_front { " strong" } else { "" },
            c(px + 7.0),
            c(py - 6.0),
            p.rank
        );
    }
    let ly = h - 16.0;
    out.push_str(&marker("diamond", 80.0, ly - 4.0, 5.0, "m-front"));
    let _ = write!(
        out,
        "<text class=\"legend\" x=\"90\" y=\"{}\">Pareto front (dashed)</text>",
        c(ly)
    );
    out.push_str(&marker("circle", 250.0, ly - 4.0, 4.0, "m-other"));
    let _ = write!(
        out,
        "<text class=\"legend\" x=\"260\" y=\"{}\">dominated · number = rank · whiskers = 95 % CI</text></svg>",
        c(ly)
    );
    let ranks = front.iter().map(|&i| points[i].rank).collect();
    (out, ranks)
}

/// A CDF series: label, samples, line style and marker shape.
pub struct CdfSeries<'a> {
    /// Legend text.
    pub label: String,
    /// Samples (ms).
    pub samples: &'a [f64],
    /// CSS class giving the dash pattern (`s-solid`, `s-dash`, `s-dot`).
    pub style: &'static str,
    /// Marker drawn on every few points and in the legend.
    pub shape: &'static str,
}

/// Empirical CDFs of one latency (x, ms) drawn as steps; p50 and p99 guides are dotted lines.
pub fn cdf_chart(
    kind: &str,
    title: &str,
    x_label: &str,
    series: &[CdfSeries<'_>],
    w: f64,
    h: f64,
) -> String {
    let curves: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| cdf_points(s.samples, CDF_MAX_POINTS))
        .collect();
    let x_max = curves
        .iter()
        .flat_map(|cv| cv.iter().map(|p| p.0))
        .fold(0.0f64, f64::max);
    // A long tail (one stalled token among thousands) would squeeze the body of the curve into
    // a corner: the axis stops a little past the largest p99 when the maximum is far beyond it,
    // and the title says so; the curve runs along the right edge there.
    let p99 = series
        .iter()
        .filter_map(|s| crate::stats::percentile(s.samples, 99.0))
        .fold(0.0f64, f64::max);
    let cut = x_max > 2.0 * p99 && p99 > 0.0;
    let x_hi = if cut { p99 * 1.15 } else { x_max };
    let title = if cut {
        format!("{title} (axis cut at {}; max {})", num(x_hi), num(x_max))
    } else {
        title.to_string()
    };
    let title = title.as_str();
    let legend_h = if series.len() > 1 {
        16.0 * series.len() as f64
    } else {
        0.0
    };
    let plot = (56.0, 22.0, w - 86.0, h - 70.0 - legend_h);
    let (frame, xt, _) = Frame::nice(plot, (0.0, x_hi), (0.0, 1.0));
    let frame = Frame {
        y: Scale::new(0.0, 1.0, plot.1 + plot.3, plot.1),
        ..frame
    };
    let mut out = String::new();
    open_svg(
        &mut out,
        kind,
        w,
        h,
        title,
        &format!(" data-series=\"{}\"", series.len()),
    );
    let _ = write!(
        out,
        "<text class=\"chart-title\" x=\"{}\" y=\"14\">{}</text>",
        c(plot.0),
        esc(title)
    );
    frame.draw_axes(
        &mut out,
        &xt,
        &[0.0, 0.25, 0.5, 0.75, 1.0],
        x_label,
        "fraction ≤ x",
    );
    for q in [0.5, 0.99] {
        let y = frame.y.at(q);
        let _ = write!(
            out,
            "<line class=\"guide\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text class=\"guide-label\" x=\"{}\" y=\"{}\">p{}</text>",
            c(plot.0),
            c(plot.0 + plot.2),
            c(plot.0 + plot.2 + 2.0),
            c(frame.y.at(q) + 3.0),
            (q * 100.0).round(),
            y = c(y)
        );
    }
    for (s, pts) in series.iter().zip(&curves) {
        if pts.is_empty() {
            continue;
        }
        let px = |x: f64| frame.x.at(x.min(x_hi));
        let mut path = vec![(px(pts[0].0), frame.y.at(0.0))];
        let mut prev = 0.0;
        for &(x, f) in pts {
            path.push((px(x), frame.y.at(prev)));
            path.push((px(x), frame.y.at(f)));
            prev = f;
        }
        let tip = format!(
            "{}: {} samples, {} points drawn",
            s.label,
            s.samples.len(),
            pts.len()
        );
        let _ = write!(
            out,
            "<g class=\"series\"><title>{}</title><polyline class=\"cdf {}\" points=\"{}\"/>",
            esc(&tip),
            s.style,
            polyline_points(path)
        );
        if series.len() > 1 {
            let every = (pts.len() / 6).max(1);
            for &(x, f) in pts.iter().step_by(every) {
                out.push_str(&marker(s.shape, px(x), frame.y.at(f), 3.5, "m-series"));
            }
        }
        out.push_str("</g>");
    }
    if series.len() > 1 {
        for (i, s) in series.iter().enumerate() {
            let y = h - legend_h + 16.0 * i as f64 + 2.0;
            let _ = write!(
                out,
                "<line class=\"cdf {}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                s.style,
                c(plot.0),
                c(y - 4.0),
                c(plot.0 + 30.0),
                c(y - 4.0)
            );
            out.push_str(&marker(s.shape, plot.0 + 15.0, y - 4.0, 3.5, "m-series"));
            let _ = write!(
                out,
                "<text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>",
                c(plot.0 + 38.0),
                c(y),
                esc(&s.label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A cell's step timeline: four lanes sharing the time axis — decode batch, MoE path (labelled
/// bands; per-item hatched), KV blocks in use, waiting requests.
pub fn timeline_chart(cell: &str, t: &Timeline) -> String {
    let (w, left, lane_h, gap) = (1180.0, 150.0, 54.0, 16.0);
    let width = w - left - 20.0;
    let top = 10.0;
    let h = top + 4.0 * (lane_h + gap) + 30.0;
    let n = t.buckets.len();
    let end_s = t.bucket_s * n as f64;
    let x = Scale::new(0.0, end_s, left, left + width);
    let bx = |k: usize| x.at((k as f64 + 0.5) * t.bucket_s);
    let mut out = String::new();
    open_svg(
        &mut out,
        "timeline",
        w,
        h,
        &format!("step timeline of {cell}"),
        &format!(" data-lanes=\"4\" data-steps=\"{}\"", t.steps),
    );
    type Get = fn(&super::timeline::Bucket) -> f64;
    let lanes: [(&str, Option<Get>); 4] = [
        ("decode batch", Some(|b| b.decode_batch)),
        ("MoE path", None),
        ("KV blocks in use", Some(|b| b.kv_blocks as f64)),
        ("waiting requests", Some(|b| b.waiting as f64)),
    ];
    for (li, (label, get)) in lanes.iter().enumerate() {
        let y0 = top + li as f64 * (lane_h + gap);
        let _ = write!(
            out,
            "<g class=\"lane\" data-lane=\"{}\"><text class=\"lane-label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            esc(label),
            c(left - 40.0),
            c(y0 + lane_h / 2.0 + 4.0),
            esc(label),
            c(left),
            c(y0),
            c(width),
            c(lane_h)
        );
        match get {
            Some(get) => {
                let max = t.buckets.iter().flatten().map(get).fold(0.0f64, f64::max);
                let y = Scale::new(0.0, max.max(1.0), y0 + lane_h, y0 + 3.0);
                let _ = write!(
                    out,
                    "<text class=\"tick\" x=\"{l}\" y=\"{}\" text-anchor=\"end\">{}</text><text class=\"tick\" x=\"{l}\" y=\"{}\" text-anchor=\"end\">0</text>",
                    c(y0 + 10.0),
                    num(max.max(1.0)),
                    c(y0 + lane_h),
                    l = c(left - 4.0)
                );
                // Gaps (no step) break the line.
                let mut run: Vec<(f64, f64)> = Vec::new();
                let flush = |run: &mut Vec<(f64, f64)>, out: &mut String| {
                    if !run.is_empty() {
                        let _ = write!(
                            out,
                            "<polyline class=\"tl-line\" points=\"{}\"/>",
                            polyline_points(run.drain(..))
                        );
                    }
                };
                for (k, b) in t.buckets.iter().enumerate() {
                    match b {
                        Some(b) => run.push((bx(k), y.at(get(b)))),
                        None => flush(&mut run, &mut out),
                    }
                }
                flush(&mut run, &mut out);
            }
            None => {
                // Merge consecutive buckets with the same path into one labelled band.
                let mut k = 0;
                while k < n {
                    let path = t.buckets[k].as_ref().map(|b| b.moe_path.as_str());
                    let mut e = k + 1;
                    while e < n && t.buckets[e].as_ref().map(|b| b.moe_path.as_str()) == path {
                        e += 1;
                    }
                    if let Some(p) = path.filter(|p| *p != "none") {
                        let (x0, x1) = (x.at(k as f64 * t.bucket_s), x.at(e as f64 * t.bucket_s));
                        let _ = write!(
                            out,
                            "<rect class=\"moe moe-{p}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{p}: {:.3}–{:.3} s</title></rect>",
                            c(x0),
                            c(y0 + 4.0),
                            c(x1 - x0),
                            c(lane_h - 8.0),
                            k as f64 * t.bucket_s,
                            e as f64 * t.bucket_s,
                            p = esc(p)
                        );
                        if x1 - x0 >= 56.0 {
                            let _ = write!(
                                out,
                                "<text class=\"moe-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                                c((x0 + x1) / 2.0),
                                c(y0 + lane_h / 2.0 + 4.0),
                                esc(p)
                            );
                        }
                    }
                    k = e;
                }
            }
        }
        out.push_str("</g>");
    }
    let base = top + 4.0 * (lane_h + gap) - gap;
    let (ticks, _, _) = super::svg::nice_ticks(0.0, end_s, 8);
    for v in ticks.into_iter().filter(|v| *v <= end_s + 1e-9) {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            c(x.at(v)),
            c(base + 14.0),
            num(v)
        );
    }
    let _ = write!(
        out,
        "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since the repeat started (s)</text></svg>",
        c(left + width / 2.0),
        c(base + 28.0)
    );
    out
}
