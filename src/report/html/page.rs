//! The page: sections in reading order, inline CSS (screen and print) and the one small script.

use std::fmt::Write;

use super::charts::{self, CdfSeries, HeatCell, ScatterPoint, CDF_MAX_POINTS, TIMELINE_BUCKETS};
use super::data::{heatmap_grid, json_diff};
use super::load::{CellData, RunData};
use super::svg::{esc, num};
use super::timeline::timeline;
use super::Ranking;
use super::{OBJECTIVE, PARETO_AXES, TABLE_COLUMNS};
use crate::measure::CellStatus;

fn status_text(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Pending => "pending",
        CellStatus::Completed => "completed",
        CellStatus::Partial => "partial",
        CellStatus::Skipped => "skipped",
        CellStatus::Failed => "failed",
        CellStatus::Interrupted => "interrupted",
    }
}

/// "2 of 3 planned repeats measured …" for a `partial` cell.
fn partial_note(entry: &crate::results::CellEntry) -> Option<String> {
    (entry.status == CellStatus::Partial).then(|| {
        format!(
            "{} of {} planned repeats measured (ranked with those; --resume measures the rest){}",
            entry.repeats_done.map_or("some".into(), |n| n.to_string()),
            entry
                .repeats_planned
                .map_or("the".into(), |n| n.to_string()),
            entry
                .reason
                .as_deref()
                .map_or(String::new(), |r| format!("; {r}"))
        )
    })
}

fn short_knob(name: &str) -> &str {
    name.strip_prefix("FERRUM_").unwrap_or(name)
}

/// Render the whole page.
pub fn render(run: &RunData) -> String {
    let ranking = Ranking::new(run);
    let m = &run.manifest;
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>ferrum-bench report {}</title>\n<style>{CSS}</style>\n<script>{HEAD_JS}</script>\n</head>\n<body>\n",
        esc(&m.run_id)
    );
    // Shared SVG patterns (skipped / failed heatmap cells, per-item MoE bands).
    out.push_str("<svg class=\"defs\" width=\"0\" height=\"0\" aria-hidden=\"true\"><defs><pattern id=\"fb-hatch\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"8\" height=\"8\" fill=\"#fff\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#999\" stroke-width=\"3\"/></pattern><pattern id=\"fb-cross\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\"><rect width=\"8\" height=\"8\" fill=\"#fff\"/><path d=\"M0 0L8 8M8 0L0 8\" stroke=\"#b55\" stroke-width=\"1.5\"/></pattern></defs></svg>\n");
    out.push_str("<main>\n");
    header(&mut out, run);
    let _ = writeln!(
        out,
        "<nav><a href=\"#ranking\">Ranking</a> · <a href=\"#pbest\">P(best)</a>{} · <a href=\"#heatmap\">Heatmap</a> · <a href=\"#pareto\">Pareto front</a> · <a href=\"#not-measured\">Cells not measured</a> · <a href=\"#config-diff\">Best vs worst config</a> · <a href=\"#distributions\">Latency CDFs</a> · <a href=\"#timelines\">Step timelines</a></nav>",
        if run.tune.is_some() {
            " · <a href=\"#tune\">Tune trials</a>"
        } else {
            ""
        }
    );
    ranking_section(&mut out, run, &ranking);
    super::pbest::pbest_section(&mut out, run);
    super::tune::tune_section(&mut out, run.tune.as_ref());
    heatmap_section(&mut out, run, &ranking);
    pareto_section(&mut out, run, &ranking);
    not_measured_section(&mut out, run);
    config_diff_section(&mut out, run, &ranking);
    distributions_section(&mut out, run, &ranking);
    timelines_section(&mut out, run, &ranking);
    let _ = write!(
        out,
        "<footer><p>Written by {} {} from <code>{}</code>. Self-contained: inline CSS, SVG and script, no network. CDFs show at most {CDF_MAX_POINTS} exact points of each empirical CDF (min and max always kept); timelines are cut into {TIMELINE_BUCKETS} time buckets (mean decode batch, peak KV blocks and waiting, dominant MoE path per bucket).</p><pre id=\"script-errors\" class=\"script-errors\"></pre></footer>\n</main>\n<script>{BODY_JS}</script>\n</body>\n</html>\n",
        esc(&m.harness.name),
        esc(&m.harness.version),
        esc(&m.run_id)
    );
    out
}

fn header(out: &mut String, run: &RunData) {
    let m = &run.manifest;
    let _ = write!(
        out,
        "<header id=\"run\"><h1>ferrum-bench run <code>{}</code></h1>",
        esc(&m.run_id)
    );
    match &m.engine {
        Some(e) => {
            let _ = write!(
                out,
                "<p class=\"engine-kind\" data-engine-kind=\"{k}\">engine: <strong>{k}</strong> {v}</p>",
                k = esc(&e.kind),
                v = esc(&e.version)
            );
            if let Some(note) = crate::report::label::engine_note(&e.kind) {
                let _ = write!(out, "<p class=\"engine-note\">{}</p>", esc(note));
            }
        }
        None => out.push_str("<p class=\"engine-kind\" data-engine-kind=\"none\">engine: <strong>none started</strong></p>"),
    }
    let count = |s: CellStatus| run.cells.iter().filter(|c| c.entry.status == s).count();
    let load = match m.run.load {
        crate::measure::LoadPoint::Closed { concurrency } => {
            format!("closed loop, concurrency {concurrency}")
        }
        crate::measure::LoadPoint::Open {
            request_rate,
            burstiness,
        } => {
            format!("open loop, {request_rate} req/s, burstiness {burstiness}")
        }
    };
    let rows: Vec<(&str, String)> = vec![
        ("preset", format!("{} — {} ({})", m.preset.name, m.preset.path, m.preset.hash)),
        (
            "workload",
            format!(
                "{} — {} measured + {} warmup requests per repeat; hash {}",
                m.workload.name, m.workload.spec.requests, m.workload.spec.warmup_requests, m.workload.workload_hash
            ),
        ),
        ("load", load),
        ("repeats", format!("{} per cell, base seed {}", m.run.repeats, m.seeds.base_seed)),
        (
            "cells",
            format!(
                "{} planned ({} mode, swept: {}) — {} completed, {} partial, {} skipped, {} failed, {} interrupted, {} pending",
                m.sweep.planned_cells,
                serde_json::to_value(m.sweep.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                if m.sweep.knob_names.is_empty() { "nothing".to_string() } else { m.sweep.knob_names.join(", ") },
                count(CellStatus::Completed),
                count(CellStatus::Partial),
                count(CellStatus::Skipped),
                count(CellStatus::Failed),
                count(CellStatus::Interrupted),
                count(CellStatus::Pending)
            ),
        ),
        ("harness", format!("{} {} (git {})", m.harness.name, m.harness.version, m.harness.git_commit)),
        (
            "engine",
            m.engine.as_ref().map_or("–".to_string(), |e| format!("{} {}", e.kind, e.version)),
        ),
        (
            "host",
            format!(
                "{}, {} cores, {:.1} GiB, {}",
                m.host.cpu_model,
                m.host.cores,
                m.host.memory_bytes as f64 / (1u64 << 30) as f64,
                m.host.os
            ),
        ),
        ("started", m.started_at.clone()),
        ("finished", m.finished_at.clone().unwrap_or_else(|| "not finished (interrupted or still running)".into())),
    ];
    out.push_str("<table class=\"meta\">");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    out.push_str("</table>");
    if let Some(e) = &m.engine {
        if !e.details.is_empty() {
            out.push_str("<div class=\"engine-details\"><strong>engine details:</strong> ");
            for (k, v) in &e.details {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                let _ = write!(out, "<span><b>{}</b> {}</span> ", esc(k), esc(&v));
            }
            out.push_str("</div>");
        }
    }
    if (m.run.repeats as usize) < crate::stats::MIN_REPEATS_FOR_CI {
        out.push_str("<p class=\"warn\">⚠ fewer than 3 repeats: no confidence intervals, so ties cannot be assessed.</p>");
    }
    out.push_str("</header>\n");
}

fn ranking_section(out: &mut String, run: &RunData, ranking: &Ranking) {
    let knobs = &run.manifest.sweep.knob_names;
    let _ = write!(
        out,
        "<section id=\"ranking\"><h2>Cells ranked by {} (mean ± 95 % CI over repeats)</h2>",
        esc(OBJECTIVE.label)
    );
    if ranking.order.is_empty() {
        out.push_str("<p class=\"note\">No cell completed.</p></section>\n");
        return;
    }
    out.push_str("<table class=\"ranked sortable\"><thead><tr><th>rank</th>");
    if knobs.is_empty() {
        out.push_str("<th>cell</th>");
    }
    for k in knobs {
        let _ = write!(
            out,
            "<th class=\"knob\" title=\"{}\">{}</th>",
            esc(k),
            esc(short_knob(k))
        );
    }
    let _ = write!(
        out,
        "<th>load</th><th>{} ({})</th>",
        esc(OBJECTIVE.label),
        esc(OBJECTIVE.unit)
    );
    for col in TABLE_COLUMNS {
        let _ = write!(out, "<th>{} ({})</th>", esc(col.label), esc(col.unit));
    }
    out.push_str("<th>CV</th><th>unsuccessful</th></tr></thead><tbody>");
    for (pos, &i) in ranking.order.iter().enumerate() {
        let cell = &run.cells[i];
        let Some(s) = cell.stats.as_ref() else {
            continue;
        };
        let leader = ranking.tie_leader[pos];
        let tied = leader != pos || ranking.tie_leader.get(pos + 1) == Some(&pos);
        let rank_text = format!(
            "{}{}{}{}",
            if tied { "=" } else { "" },
            leader + 1,
            if pos == 0 { " ★" } else { "" },
            match (
                cell.entry.status,
                cell.entry.repeats_done,
                cell.entry.repeats_planned
            ) {
                (CellStatus::Partial, Some(d), Some(p)) => format!(" (partial {d}/{p})"),
                (CellStatus::Partial, _, _) => " (partial)".into(),
                _ => String::new(),
            }
        );
        let _ = write!(
            out,
            "<tr data-cell=\"{}\" title=\"{}\"{}><td data-v=\"{}\">{}</td>",
            esc(&cell.entry.name),
            esc(&cell.entry.name),
            if pos == 0 { " class=\"best\"" } else { "" },
            pos + 1,
            esc(&rank_text)
        );
        if knobs.is_empty() {
            let _ = write!(out, "<td data-v=\"{0}\">{0}</td>", esc(&cell.entry.name));
        }
        for k in knobs {
            let v = cell.entry.knobs.get(k).map_or("", String::as_str);
            let _ = write!(out, "<td data-v=\"{0}\">{0}</td>", esc(v));
        }
        let _ = write!(
            out,
            "<td data-v=\"{0}\">{0}</td>",
            esc(&cell.entry.load.label())
        );
        for col in std::iter::once(OBJECTIVE).chain(TABLE_COLUMNS) {
            let v = col.mean(s).map_or(String::new(), |v| v.to_string());
            let text = match col.of(s) {
                Some(a) => match a.ci95.half_width() {
                    Some(h) => format!("{:.*} ± {:.*}", col.decimals, a.mean, col.decimals, h),
                    None => format!("{:.*}", col.decimals, a.mean),
                },
                None => "–".into(),
            };
            let _ = write!(
                out,
                "<td class=\"num\" data-v=\"{}\">{}</td>",
                esc(&v),
                esc(&text)
            );
        }
        let cv = OBJECTIVE.of(s).and_then(|a| a.cv);
        let _ = write!(
            out,
            "<td class=\"num\" data-v=\"{}\">{}</td><td class=\"num\" data-v=\"{u}\">{u}</td></tr>",
            cv.map_or(String::new(), |v| v.to_string()),
            cv.map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0)),
            u = s.aggregate.unsuccessful_requests
        );
    }
    out.push_str("</tbody></table>");
    out.push_str("<p class=\"note\">★ best. “=N”: the cell's 95 % CI overlaps that of rank N, the first of its group, so this run does not order them. Click a column header to sort.</p></section>\n");
}

fn heatmap_section(out: &mut String, run: &RunData, ranking: &Ranking) {
    out.push_str("<section id=\"heatmap\"><h2>Objective heatmap</h2>");
    let knobs = &run.manifest.sweep.knob_names;
    let coords: Vec<Vec<(String, String)>> = run
        .cells
        .iter()
        .map(|c| {
            let mut v: Vec<(String, String)> = knobs
                .iter()
                .map(|k| (k.clone(), c.entry.knobs.get(k).cloned().unwrap_or_default()))
                .collect();
            v.push(("load".to_string(), c.entry.load.label()));
            v
        })
        .collect();
    match heatmap_grid(&coords) {
        Some(grid) => {
            let cells: Vec<HeatCell<'_>> = run
                .cells
                .iter()
                .enumerate()
                .map(|(i, c)| HeatCell {
                    name: &c.entry.name,
                    status: status_text(c.entry.status),
                    reason: c.entry.reason.as_deref(),
                    stats: c.stats.as_ref(),
                    rank: ranking.rank_of(i),
                })
                .collect();
            let _ = write!(
                out,
                "<p class=\"note\">{} (mean, ± 95 % CI) for each {} × {}; darker is better, ★ marks the best cell, hatched cells were skipped (diagonal) or failed (crossed). Hover a cell for TTFT and TPOT.</p>",
                esc(OBJECTIVE.label),
                esc(&grid.x_name),
                esc(&grid.y_name)
            );
            out.push_str(&charts::heatmap(&grid, &cells));
        }
        None => out.push_str("<p class=\"note\">No heatmap: it needs a run whose cells vary in exactly two dimensions (two knobs, or a knob and the load).</p>"),
    }
    out.push_str("</section>\n");
}

fn pareto_section(out: &mut String, run: &RunData, ranking: &Ranking) {
    out.push_str("<section id=\"pareto\"><h2>Throughput against latency: the Pareto front</h2>");
    let points: Vec<ScatterPoint<'_>> = ranking
        .order
        .iter()
        .enumerate()
        .filter_map(|(pos, &i)| {
            let c = &run.cells[i];
            c.stats.as_ref().map(|s| ScatterPoint {
                rank: pos + 1,
                name: &c.entry.name,
                stats: s,
            })
        })
        .collect();
    if points.is_empty() {
        out.push_str("<p class=\"note\">No completed cell.</p></section>\n");
        return;
    }
    out.push_str("<p class=\"note\">A cell is on the front when no other cell has both higher throughput and lower latency. Numbers are ranks.</p><div class=\"row\">");
    for axis in PARETO_AXES {
        let (svg, front) = charts::pareto_scatter(axis, &points);
        let _ = write!(
            out,
            "<figure>{svg}<figcaption>Pareto front against {}: rank{} {}</figcaption></figure>",
            esc(axis.label),
            if front.len() == 1 { "" } else { "s" },
            front
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out.push_str("</div></section>\n");
}

fn not_measured_section(out: &mut String, run: &RunData) {
    out.push_str("<section id=\"not-measured\"><h2>Cells not measured</h2>");
    let others: Vec<&CellData> = run
        .cells
        .iter()
        .filter(|c| c.entry.status != CellStatus::Completed)
        .collect();
    if others.is_empty() {
        out.push_str("<p class=\"note\">None: every cell completed.</p></section>\n");
        return;
    }
    out.push_str("<table class=\"others\"><thead><tr><th>cell</th><th>status</th><th>reason</th></tr></thead><tbody>");
    for c in others {
        let st = status_text(c.entry.status);
        let _ = write!(
            out,
            "<tr data-status=\"{st}\"><td>{}</td><td><strong>{st}</strong></td><td>{}</td></tr>",
            esc(&c.entry.name),
            esc(&partial_note(&c.entry).unwrap_or_else(|| c
                .entry
                .reason
                .clone()
                .unwrap_or_default()))
        );
    }
    out.push_str("</tbody></table></section>\n");
}

fn config_diff_section(out: &mut String, run: &RunData, ranking: &Ranking) {
    out.push_str(
        "<section id=\"config-diff\"><h2>Effective configuration: best cell against worst</h2>",
    );
    let (Some(&best), Some(&worst)) = (ranking.order.first(), ranking.order.last()) else {
        out.push_str("<p class=\"note\">Needs at least two completed cells.</p></section>\n");
        return;
    };
    let (b, w) = (&run.cells[best], &run.cells[worst]);
    match (&b.effective_config, &w.effective_config) {
        _ if best == worst => out.push_str("<p class=\"note\">Needs at least two completed cells.</p>"),
        (Some(bc), Some(wc)) => {
            let diff = json_diff(bc, wc);
            let _ = write!(
                out,
                "<p class=\"note\">{} differing value(s) in <code>effective_config.json</code> between the best cell <code>{}</code> and the worst <code>{}</code>.</p><table class=\"diff\"><thead><tr><th>path</th><th>best</th><th>worst</th></tr></thead><tbody>",
                diff.len(),
                esc(&b.entry.name),
                esc(&w.entry.name)
            );
            for (path, x, y) in &diff {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(path),
                    esc(x.as_deref().unwrap_or("(absent)")),
                    esc(y.as_deref().unwrap_or("(absent)"))
                );
            }
            out.push_str("</tbody></table>");
        }
        _ => out.push_str("<p class=\"note\">The effective configuration of the best or the worst cell is missing.</p>"),
    }
    out.push_str("</section>\n");
}

fn distributions_section(out: &mut String, run: &RunData, ranking: &Ranking) {
    out.push_str("<section id=\"distributions\"><h2>Latency distributions (successful requests, all repeats pooled)</h2>");
    if ranking.order.is_empty() {
        out.push_str("<p class=\"note\">No completed cell.</p></section>\n");
        return;
    }
    type Samples = fn(&CellData) -> &[f64];
    let metrics: [(&str, &str, Samples); 3] = [
        ("TTFT", "TTFT (ms)", |c| &c.ttft_ms),
        ("TPOT", "TPOT (ms)", |c| &c.tpot_ms),
        ("ITL", "ITL (ms)", |c| &c.itl_ms),
    ];
    if ranking.order.len() >= 2 {
        let n = ranking.order.len();
        let mut picks = vec![(0, "best", "s-solid", "circle")];
        if n >= 3 {
            picks.push((n / 2, "median rank", "s-dash", "square"));
        }
        picks.push((n - 1, "worst", "s-dot", "triangle"));
        out.push_str("<h3>Best, median-ranked and worst cells</h3><p class=\"note\">");
        for (k, &(pos, what, _, _)) in picks.iter().enumerate() {
            let _ = write!(
                out,
                "{}#{} ({what}): <code>{}</code>",
                if k > 0 { " · " } else { "" },
                pos + 1,
                esc(&run.cells[ranking.order[pos]].entry.name)
            );
        }
        out.push_str("</p><div class=\"row\">");
        for (name, label, get) in metrics {
            let series: Vec<CdfSeries<'_>> = picks
                .iter()
                .map(|&(pos, what, style, shape)| {
                    let c = &run.cells[ranking.order[pos]];
                    CdfSeries {
                        label: format!("#{} ({what})", pos + 1),
                        samples: get(c),
                        style,
                        shape,
                    }
                })
                .collect();
            out.push_str(&charts::cdf_chart(
                "cdf-overlay",
                &format!("{name} CDF"),
                label,
                &series,
                392.0,
                290.0,
            ));
        }
        out.push_str("</div>");
    }
    out.push_str("<h3>Every cell, in rank order</h3>");
    for (pos, &i) in ranking.order.iter().enumerate() {
        let c = &run.cells[i];
        let _ = write!(out, "<div class=\"cell-card\" data-cell=\"{}\"><h4>#{} <code>{}</code></h4><div class=\"row\">", esc(&c.entry.name), pos + 1, esc(&c.entry.name));
        for (name, label, get) in metrics {
            let samples = get(c);
            let title = match (
                crate::stats::percentile(samples, 50.0),
                crate::stats::percentile(samples, 99.0),
            ) {
                (Some(p50), Some(p99)) => format!("{name}: p50 {} · p99 {} ms", num(p50), num(p99)),
                _ => format!("{name}: no samples"),
            };
            let series = [CdfSeries {
                label: name.to_string(),
                samples,
                style: "s-solid",
                shape: "circle",
            }];
            out.push_str(&charts::cdf_chart(
                "cdf", &title, label, &series, 384.0, 220.0,
            ));
        }
        out.push_str("</div></div>");
    }
    out.push_str("</section>\n");
}

fn timelines_section(out: &mut String, run: &RunData, ranking: &Ranking) {
    out.push_str("<section id=\"timelines\"><h2>Step timelines (first repeat)</h2>");
    let with_steps: Vec<(usize, &CellData)> = ranking
        .order
        .iter()
        .enumerate()
        .map(|(pos, &i)| (pos, &run.cells[i]))
        .filter(|(_, c)| c.steps.as_ref().is_some_and(|s| !s.is_empty()))
        .collect();
    if with_steps.is_empty() {
        out.push_str("<p class=\"note\">No <code>steps.jsonl</code>: run with <code>--steps</code> to record the engine's steps.</p></section>\n");
        return;
    }
    out.push_str("<p class=\"note\">Per step of the engine: decode batch size (mean per time bucket), the MoE path of the decode part (labelled bands; per-item decode hatched, unified decode dotted), KV blocks in use and requests waiting for admission (peak per bucket).</p>");
    for (pos, c) in with_steps {
        let steps = c.steps.as_deref().unwrap_or_default();
        let first = steps.iter().map(|s| s.repeat).min().unwrap_or(0);
        let records: Vec<crate::engine::StepRecord> = steps
            .iter()
            .filter(|s| s.repeat == first)
            .map(|s| s.step.clone())
            .collect();
        if let Some(t) = timeline(&records, TIMELINE_BUCKETS) {
            let _ = write!(
                out,
                "<div class=\"cell-card\" data-cell=\"{}\"><h4>#{} <code>{}</code> — repeat {first}, {} steps</h4>{}</div>",
                esc(&c.entry.name),
                pos + 1,
                esc(&c.entry.name),
                t.steps,
                charts::timeline_chart(&c.entry.name, &t)
            );
        }
    }
    out.push_str("</section>\n");
}

const HEAD_JS: &str = "window.__fbErrors=[];window.addEventListener('error',function(e){window.__fbErrors.push(String(e.message));var p=document.getElementById('script-errors');if(p){p.textContent=window.__fbErrors.join('\\n');}});";

const BODY_JS: &str = r#"(function(){
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('thead th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=th.getAttribute('data-dir')!=='asc';
      th.setAttribute('data-dir',asc?'asc':'desc');
      var rows=Array.prototype.slice.call(t.tBodies[0].rows);
      rows.sort(function(a,b){
        var x=a.cells[i].getAttribute('data-v')||'',y=b.cells[i].getAttribute('data-v')||'';
        var nx=parseFloat(x),ny=parseFloat(y);
        var r=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;
        return asc?r:-r;
      });
      rows.forEach(function(r){t.tBodies[0].appendChild(r);});
    });
  });
});
document.getElementById('script-errors').textContent=window.__fbErrors.join('\n');
document.documentElement.setAttribute('data-report-ready','1');
})();"#;

pub(super) const CSS: &str = r#"
:root{--ink:#1b1f24;--muted:#5b6570;--line:#d0d7de;--accent:#184080}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:#fff}
main{max-width:1240px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}h4{font-size:13px;margin:10px 0 4px;font-weight:600}
code{font:12px/1.3 ui-monospace,"DejaVu Sans Mono",monospace}
.engine-kind{display:inline-block;margin:4px 0 10px;padding:4px 12px;border:2px solid var(--accent);border-radius:4px;font-size:16px;text-transform:none}
.engine-kind strong{text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;margin:6px 0}
th,td{border:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600}
table.meta th{width:110px}table.meta td{font-size:13px}
table.ranked{font-size:13px}table.ranked th.knob{word-break:break-all;max-width:130px}table.ranked td:first-child{white-space:nowrap}
table.ranked td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.ranked tr.best td{font-weight:700;background:#eef3fb}
table.sortable th{cursor:pointer}
table.diff td{font:12px ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
.note{color:var(--muted);margin:4px 0 8px}.warn{font-weight:600}
nav{margin:8px 0;padding:6px 0;border-top:1px solid var(--line);border-bottom:1px solid var(--line)}
nav a{color:var(--accent)}
.engine-note{margin:0 0 10px;font-size:13px;font-style:italic}
.engine-details{font-size:12px;margin:6px 0;color:var(--muted)}
.engine-details span{display:inline-block;margin:0 10px 0 0;word-break:break-all}.engine-details b{color:var(--ink)}
.row{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figcaption{color:var(--muted);font-size:12px}
.cell-card{border:1px solid var(--line);border-radius:4px;padding:4px 8px;margin:8px 0;break-inside:avoid;page-break-inside:avoid}
svg.chart{max-width:100%;height:auto;font-family:inherit}
svg.defs{position:absolute}
.tick{font-size:11px;fill:var(--muted)}.axis-label{font-size:12px;fill:var(--ink)}
.chart-title{font-size:12px;font-weight:600;fill:var(--ink)}
.legend{font-size:11px;fill:var(--ink)}
.grid{stroke:#e6e9ec;stroke-width:1}.frame{fill:none;stroke:#9aa4ae;stroke-width:1}
.guide{stroke:#8a949e;stroke-dasharray:2 3}.guide-label{font-size:10px;fill:var(--muted)}
.cdf{fill:none;stroke:var(--accent);stroke-width:1.6}.s-dash{stroke-dasharray:7 4;stroke:#7a3b00}.s-dot{stroke-dasharray:2 3;stroke:#333;stroke-width:2}
.m-series{fill:#fff;stroke:var(--ink);stroke-width:1.2}
.front-line{fill:none;stroke:var(--ink);stroke-width:1.4;stroke-dasharray:6 4}
.m-front{fill:var(--ink);stroke:var(--ink)}.m-other{fill:#fff;stroke:#56606a;stroke-width:1.5}
.whisker{stroke:#8a949e;stroke-width:1}
.incumbent-line{fill:none;stroke:var(--ink);stroke-width:2}.m-failed{fill:none;stroke:#a00;stroke-width:2}
.pt-label{font-size:10px;fill:var(--muted)}.pt-label.strong{font-weight:700;fill:var(--ink)}
.hm-cell rect{stroke:#fff;stroke-width:1}.hm-cell.best rect{stroke:#000;stroke-width:3}
.hm-empty{fill:#fafafa;stroke:#eee}
.hm-text{font-size:14px;font-weight:600;fill:#1b1f24}.hm-text.small{font-size:11px;font-weight:400}.hm-text.on-dark{fill:#fff}
.lane-label{font-size:12px;fill:var(--ink)}
.tl-line{fill:none;stroke:var(--accent);stroke-width:1.3}
.moe{stroke:#333;stroke-width:.5}.moe-batched{fill:#9db4d8}.moe-per_item{fill:url(#fb-cross)}.moe-unified{fill:#e8e0c8}
.moe-label{font-size:11px;fill:#111}
.script-errors:empty{display:none}.script-errors{color:#a00;font-weight:700}
footer{margin-top:30px;color:var(--muted);font-size:12px}
@media print{nav{display:none}main{max-width:none;padding:0}h2{break-after:avoid}svg.chart{break-inside:avoid}table.ranked tr.best td{background:none}}
"#;
