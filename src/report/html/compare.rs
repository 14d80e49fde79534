//! `report --compare BASE CAND`: `compare`'s [`CompareReport`] as one self-contained HTML page in
//! the run report's style — both sides (with the reference engine's label when it ran), the
//! verdict rule, per pair a table of every metric (both means with CIs, the change with its CI,
//! p, threshold, verdict) beside a chart of the changes against the ±threshold band, the config
//! drift, and the cells without a pair. Like the run report it is a pure function of its input
//! (no timestamps), carries `default-src 'none'`, and reads without colour: verdicts are written
//! out and drawn as distinct marker shapes.

use std::fmt::Write;
use std::path::Path;

use super::svg::{c, esc, marker};
use crate::compare::{CompareReport, MetricResult, PairResult};
use crate::diff::config_diff_lines;
use crate::export::{decimals, fmt_change, fmt_p, fmt_side, headline, title, Exporter};
use crate::results::{write_atomic, ResultsError};
use crate::stats::Verdict;

/// HTML exporter of a comparison (the same [`Exporter`] interface as the text formats).
#[derive(Debug, Clone, Copy, Default)]
pub struct CompareHtml;

impl Exporter for CompareHtml {
    fn render(&self, r: &CompareReport) -> Result<String, ResultsError> {
        Ok(render_compare(r))
    }
}

/// Render `r` and write it atomically to `out`.
pub fn write_compare_report(r: &CompareReport, out: &Path) -> Result<(), ResultsError> {
    write_atomic(out, render_compare(r).as_bytes())
}

/// Marker shape of a verdict: shape, not colour, tells them apart.
fn shape(v: Verdict) -> &'static str {
    match v {
        Verdict::Regressed => "triangle",
        Verdict::Improved => "square",
        Verdict::Unchanged => "circle",
        Verdict::Inconclusive => "diamond",
    }
}

/// The change chart's half-range in percent: every CI bound and threshold fits, at least ±5 %.
fn half_range(metrics: &[&MetricResult]) -> f64 {
    let widest = metrics
        .iter()
        .flat_map(|m| {
            let ch = m.comparison.change;
            [
                ch.map_or(0.0, |x| x.lower.abs()),
                ch.map_or(0.0, |x| x.upper.abs()),
                m.threshold,
            ]
        })
        .filter(|v| v.is_finite())
        .fold(0.05_f64, f64::max);
    // Round up to a multiple of 5 % so the ticks are even.
    (widest * 100.0 / 5.0).ceil() * 5.0
}

/// One row per metric: the change estimate (marker by verdict) with its 95 % CI as a whisker,
/// the metric's ±threshold as a shaded band, zero as a line. Metrics without a change (too few
/// repeats) are listed with the reason instead of a marker.
fn change_chart(p: &PairResult) -> String {
    let metrics: Vec<&MetricResult> = p.metrics.iter().collect();
    let range = half_range(&metrics);
    let (left, width, row_h, top) = (150.0, 520.0, 22.0, 26.0);
    let height = top + row_h * metrics.len() as f64 + 30.0;
    let x = |pct: f64| left + (pct.clamp(-range, range) + range) / (2.0 * range) * width;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" data-chart=\"change\" data-metrics=\"{}\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"relative change per metric with 95 % CI\">",
        metrics.len(),
        c(left + width + 120.0),
        c(height),
        c(left + width + 120.0),
        c(height)
    );
    let _ = write!(
        s,
        "<text class=\"chart-title\" x=\"{}\" y=\"14\">change, candidate vs baseline (%), 95 % CI; band = ±threshold</text>",
        c(left)
    );
    for tick in [-range, -range / 2.0, 0.0, range / 2.0, range] {
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text class=\"tick\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{:+}</text>",
            c(top - 4.0),
            c(height - 24.0),
            c(height - 10.0),
            tick,
            x = c(x(tick))
        );
    }
    for (i, m) in metrics.iter().enumerate() {
        let y = top + row_h * i as f64 + row_h / 2.0;
        let t = m.threshold * 100.0;
        let _ = write!(
            s,
            "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"band\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            c(left - 8.0),
            c(y + 4.0),
            esc(&title(m)),
            c(x(-t)),
            c(y - row_h / 2.0 + 2.0),
            c(x(t) - x(-t)),
            c(row_h - 4.0)
        );
        let verdict = m.comparison.verdict;
        match m.comparison.change {
            Some(ch) => {
                let _ = write!(
                    s,
                    "<g class=\"change\" data-verdict=\"{v}\"><title>{}: {} — {v}</title><line class=\"whisker\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>{}<text class=\"legend\" x=\"{}\" y=\"{}\">{v}</text></g>",
                    esc(&title(m)),
                    esc(&fmt_change(m)),
                    c(x(ch.lower * 100.0)),
                    c(x(ch.upper * 100.0)),
                    marker(
                        shape(verdict),
                        x(ch.estimate * 100.0),
                        y,
                        5.0,
                        &format!("m-verdict v-{}", verdict.as_str())
                    ),
                    c(left + width + 8.0),
                    c(y + 4.0),
                    v = verdict.as_str(),
                    y = c(y)
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<text class=\"legend\" x=\"{}\" y=\"{}\">no change CI ({})</text>",
                    c(x(-range) + 4.0),
                    c(y + 4.0),
                    esc(m.comparison.reason.as_deref().unwrap_or("too few repeats"))
                );
            }
        }
    }
    let _ = write!(
        s,
        "<line class=\"frame\" x1=\"{z}\" y1=\"{}\" x2=\"{z}\" y2=\"{}\"/></svg>",
        c(top - 4.0),
        c(height - 24.0),
        z = c(x(0.0))
    );
    s
}

fn pair_section(out: &mut String, i: usize, p: &PairResult) {
    let _ = write!(
        out,
        "<section class=\"pair\" id=\"pair-{i}\" data-comparable=\"{}\"><h2>{}</h2>",
        p.comparable,
        esc(&p.name)
    );
    if p.baseline_cell != p.candidate_cell {
        let _ = write!(
            out,
            "<p class=\"note\">baseline cell <code>{}</code>, candidate cell <code>{}</code></p>",
            esc(&p.baseline_cell),
            esc(&p.candidate_cell)
        );
    }
    if let Some(note) = &p.note {
        let _ = write!(out, "<p class=\"note warn\">{}</p>", esc(note));
    }
    if !p.metrics.is_empty() {
        out.push_str("<table class=\"ranked verdicts\"><thead><tr><th>metric</th><th>baseline (mean ± 95 % CI)</th><th>candidate (mean ± 95 % CI)</th><th>change [95 % CI]</th><th>threshold</th><th>p (Welch)</th><th>verdict</th></tr></thead><tbody>");
        for m in &p.metrics {
            let d = decimals(m);
            let v = m.comparison.verdict.as_str();
            let _ = write!(
                out,
                "<tr data-verdict=\"{v}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">±{:.0} %</td><td class=\"num\">{}</td><td class=\"verdict v-{v}\"><strong>{v}</strong>{}</td></tr>",
                esc(&title(m)),
                esc(&fmt_side(&m.baseline, d)),
                esc(&fmt_side(&m.candidate, d)),
                esc(&fmt_change(m)),
                m.threshold * 100.0,
                esc(&fmt_p(m)),
                m.comparison
                    .reason
                    .as_ref()
                    .map(|r| format!("<br><span class=\"note\">{}</span>", esc(r)))
                    .unwrap_or_default()
            );
        }
        out.push_str("</tbody></table>");
        out.push_str(&change_chart(p));
    }
    match &p.drift {
        Some(d) if !d.is_empty() => {
            out.push_str("<div class=\"drift\" data-drift=\"true\"><h3>Config drift (baseline → candidate)</h3><p class=\"note\">The effective configurations differ: a verdict above may be caused by this change rather than by the code.</p><ul>");
            for l in config_diff_lines(d, "") {
                let _ = write!(out, "<li><code>{}</code></li>", esc(&l));
            }
            out.push_str("</ul></div>");
        }
        Some(_) => out.push_str(
            "<p class=\"note\" data-drift=\"false\">Effective configurations identical.</p>",
        ),
        None => out.push_str(
            "<p class=\"note\" data-drift=\"unknown\">No effective configuration on one side: drift unknown.</p>",
        ),
    }
    out.push_str("</section>\n");
}

/// The whole page.
pub fn render_compare(r: &CompareReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>ferrum-bench compare</title>\n<style>{}{COMPARE_CSS}</style>\n<script>window.__fbErrors=[];window.addEventListener('error',function(e){{window.__fbErrors.push(String(e.message))}});</script>\n</head>\n<body>\n<main>\n",
        super::page::CSS
    );
    let _ = write!(
        out,
        "<header id=\"compare\"><h1>ferrum-bench compare</h1><p class=\"headline\"><strong>{}</strong></p><table class=\"meta\"><tbody>",
        esc(&headline(r))
    );
    for (side, info) in [("baseline", &r.baseline), ("candidate", &r.candidate)] {
        let engine = info.engine.as_ref().map_or("–".to_string(), |e| {
            format!("{} {}", e.kind, e.version)
                + &info
                    .engine_commit
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
        });
        let _ = write!(
            out,
            "<tr><th>{side}</th><td><code>{}</code> ({:?}); harness {} <code>{}</code>; engine <strong>{}</strong>{}</td></tr>",
            esc(&info.path),
            info.format,
            esc(info.harness_version.as_deref().unwrap_or("–")),
            esc(info.harness_commit.as_deref().unwrap_or("–")),
            esc(&engine),
            info.engine
                .as_ref()
                .and_then(|e| crate::report::label::engine_note(&e.kind))
                .map(|n| format!("<br><span class=\"engine-note\">{}</span>", esc(n)))
                .unwrap_or_default()
        );
    }
    let _ = write!(
        out,
        "</tbody></table><p class=\"note\">Verdict rule: Welch's t-test at α = {}, relative change with a 95 % CI (delta method). <strong>regressed</strong> (▲) only when p &lt; α and the whole CI lies beyond the metric's threshold in the bad direction; <strong>improved</strong> (■) symmetrically; <strong>unchanged</strong> (●) when the whole CI lies within ±threshold; else <strong>inconclusive</strong> (◆).</p></header>",
        r.alpha
    );
    out.push('\n');
    out.push_str("<nav>");
    for (i, p) in r.pairs.iter().enumerate() {
        let _ = write!(out, "<a href=\"#pair-{i}\">{}</a> · ", esc(&p.name));
    }
    out.push_str("<a href=\"#unmatched\">Cells without a pair</a></nav>\n");
    for (i, p) in r.pairs.iter().enumerate() {
        pair_section(&mut out, i, p);
    }
    out.push_str("<section id=\"unmatched\"><h2>Cells without a pair</h2>");
    if r.unmatched.is_empty() {
        out.push_str("<p class=\"note\">Every cell has a pair.</p>");
    } else {
        out.push_str("<table class=\"ranked\"><thead><tr><th>side</th><th>cell</th><th>reason</th></tr></thead><tbody>");
        for u in &r.unmatched {
            let _ = write!(
                out,
                "<tr data-side=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&u.side),
                esc(&u.side),
                esc(&u.name),
                esc(&u.reason)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>\n");
    let _ = write!(
        out,
        "<footer><p>Written by ferrum-bench {} (compare schema {}). Self-contained: inline CSS and SVG, no network.</p><pre id=\"script-errors\" class=\"script-errors\"></pre></footer>\n</main>\n<script>document.getElementById('script-errors').textContent=window.__fbErrors.join('\\n');document.documentElement.setAttribute('data-report-ready','1');</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        r.schema_version
    );
    out
}

/// Styles the compare page adds to the run report's.
const COMPARE_CSS: &str = r#"
.headline{font-size:15px;margin:4px 0 10px}
.band{fill:#eef1f4;stroke:#c8d0d8;stroke-dasharray:3 2}
.m-verdict{stroke:#1b1f24;stroke-width:1.2}.v-regressed.m-verdict{fill:#b00020}.v-improved.m-verdict{fill:#1b7f3a}.v-unchanged.m-verdict{fill:#fff}.v-inconclusive.m-verdict{fill:#d8a200}
td.verdict.v-regressed strong{color:#b00020}td.verdict.v-improved strong{color:#1b7f3a}
.drift{border-left:4px solid var(--accent);padding:2px 10px;margin:8px 0}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_range_covers_every_bound_in_steps_of_five_percent() {
        use crate::compare::SideStat;
        use crate::metric::Direction;
        use crate::stats::{Comparison, RelativeChange};
        let side = SideStat {
            n: 3,
            mean: 1.0,
            std: Some(0.1),
            ci95_half_width: Some(0.2),
        };
        let m = |lower: f64, upper: f64, threshold: f64| MetricResult {
            metric: "output_tok_s".into(),
            label: "output tok/s".into(),
            unit: "tok/s".into(),
            direction: Direction::HigherIsBetter,
            threshold,
            baseline: side.clone(),
            candidate: side.clone(),
            method: "welch",
            comparison: Comparison {
                welch: None,
                change: Some(RelativeChange {
                    estimate: (lower + upper) / 2.0,
                    lower,
                    upper,
                }),
                verdict: Verdict::Inconclusive,
                reason: None,
                paired: false,
            },
        };
        assert_eq!(half_range(&[&m(-0.01, 0.01, 0.03)]), 5.0);
        assert_eq!(half_range(&[&m(-0.674, -0.313, 0.03)]), 70.0);
        assert_eq!(half_range(&[&m(0.0, 0.02, 0.08)]), 10.0);
        assert_eq!(half_range(&[]), 5.0);
        assert_eq!(shape(Verdict::Regressed), "triangle");
    }
}
