//! The report's "Is there a winner?" section: P(best) of every completed cell as a bar, the tie
//! set of ★, the sentence that names the winner or says there is none, the steady-state
//! throughput beside the whole-run figure, and the repeats the noise monitor flagged. The
//! numbers come from [`crate::report::ranking`], the same code as the terminal table and
//! `summary.csv`.

use std::fmt::Write;

use super::load::RunData;
use super::svg::esc;
use crate::report::ranking::{noise_text, p_text, rank_stats, verdict_line};
use crate::results::StatsFile;

/// Append `<section id="pbest">`.
pub(super) fn pbest_section(out: &mut String, run: &RunData) {
    out.push_str("<section id=\"pbest\"><h2>Is there a winner? P(best) and the tie set</h2>");
    let done: Vec<(&str, &StatsFile)> = run
        .cells
        .iter()
        .filter_map(|c| Some((c.entry.name.as_str(), c.stats.as_ref()?)))
        .collect();
    let stats: Vec<&StatsFile> = done.iter().map(|(_, s)| *s).collect();
    let Some(pb) = rank_stats(&stats) else {
        out.push_str("<p class=\"note\">No cell completed.</p></section>\n");
        return;
    };
    let names: Vec<&str> = done.iter().map(|(n, _)| *n).collect();
    let _ = write!(
        out,
        "<p class=\"verdict\">{}</p><p class=\"note\">P(best): share of {} seeded bootstrap resamples (seed {}) in which the cell had the best mean output tok/s; {}. ≈★: not distinguishable from ★ by the verdict rule of <code>compare</code> (p ≥ {} or the change CI reaches within ±{} %). Steady: output tok/s while all C slots are busy (the whole-run figure ranks).</p>",
        esc(&verdict_line(&names, &pb)),
        pb.method.resamples,
        pb.method.seed,
        if pb.method.paired {
            "rounds resampled jointly and ties judged with the paired test, because the cells were interleaved round by round"
        } else {
            "each cell's repeats resampled on their own and ties judged with Welch's test, because the cells ran one after another (no shared rounds)"
        },
        pb.method.alpha,
        pb.method.threshold * 100.0
    );
    let mut order: Vec<usize> = (0..done.len()).collect();
    let p = |i: usize| pb.p_best.get(i).copied().flatten().unwrap_or(0.0);
    order.sort_by(|&a, &b| p(b).total_cmp(&p(a)).then_with(|| names[a].cmp(names[b])));
    out.push_str("<table class=\"pbest\"><thead><tr><th>cell</th><th>P(best)</th><th></th><th>output tok/s</th><th>steady tok/s</th><th>flagged repeats</th></tr></thead><tbody>");
    for i in order {
        let (name, s) = done[i];
        let mark = if i == pb.best {
            " ★"
        } else if pb.tie_set.contains(&i) {
            " ≈★"
        } else {
            ""
        };
        let fmt = |a: Option<&crate::stats::Aggregate>| match a {
            Some(a) => match a.ci95.half_width() {
                Some(h) => format!("{:.1} ± {:.1}", a.mean, h),
                None => format!("{:.1}", a.mean),
            },
            None => "–".into(),
        };
        let width = (p(i) * 200.0).round();
        let _ = write!(
            out,
            "<tr data-pbest-cell=\"{n}\"><td>{n}{mark}</td><td class=\"num\">{}</td><td><svg width=\"204\" height=\"12\" role=\"img\" aria-label=\"P(best) {}\"><rect x=\"0\" y=\"1\" width=\"{width}\" height=\"10\" fill=\"#4a6fa5\"/><rect x=\"0\" y=\"1\" width=\"200\" height=\"10\" fill=\"none\" stroke=\"#999\"/></svg></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            p_text(pb.p_best.get(i).copied().flatten()),
            p_text(pb.p_best.get(i).copied().flatten()),
            esc(&fmt(s.aggregate.output_tokens_per_s.as_ref())),
            esc(&fmt(s.aggregate.steady_output_tokens_per_s.as_ref())),
            esc(&noise_text(s)),
            n = esc(name),
        );
    }
    out.push_str("</tbody></table>");
    noise_table(out, &done);
    out.push_str("</section>\n");
}

/// Every repeat the noise monitor flagged, with its readings.
fn noise_table(out: &mut String, done: &[(&str, &StatsFile)]) {
    let flagged: Vec<(
        &str,
        &crate::measure::RepeatSummary,
        &crate::noise::NoiseSample,
    )> = done
        .iter()
        .flat_map(|(name, s)| {
            s.repeats.iter().filter_map(move |r| {
                let n = r.noise.as_ref()?;
                (!n.flags.is_empty()).then_some((*name, r, n))
            })
        })
        .collect();
    let monitored = done
        .iter()
        .any(|(_, s)| s.repeats.iter().any(|r| r.noise.is_some()));
    if !monitored {
        out.push_str("<p class=\"note\">No noise readings (results written before the noise monitor existed).</p>");
        return;
    }
    rerun_table(out, done);
    if flagged.is_empty() {
        out.push_str("<p class=\"note\">The noise monitor flagged no repeat.</p>");
        return;
    }
    let opt = |x: Option<f64>, d: usize| x.map_or("–".to_string(), |x| format!("{x:.d$}"));
    out.push_str("<h3>Repeats measured under interference</h3><table class=\"noise\"><thead><tr><th>cell</th><th>repeat</th><th>flags</th><th>steal %</th><th>iowait %</th><th>other processes %</th><th>load 1m</th><th>CPU MHz</th><th>calibration ms (best)</th><th>output tok/s</th></tr></thead><tbody>");
    for (name, r, n) in flagged {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} ({})</td><td class=\"num\">{:.1}</td></tr>",
            esc(name),
            r.repeat + 1,
            esc(&n.flag_text()),
            opt(n.steal_pct, 1),
            opt(n.iowait_pct, 1),
            opt(n.other_cpu_pct, 1),
            opt(n.loadavg_1m, 2),
            opt(n.cpu_mhz, 0),
            opt(n.calibration_ms, 2),
            opt(n.calibration_best_ms, 2),
            r.output_tokens_per_s
        );
    }
    out.push_str("</tbody></table>");
}

/// Every repeat `--rerun-noisy` measured again: the flagged original beside its replacement.
fn rerun_table(out: &mut String, done: &[(&str, &StatsFile)]) {
    let reruns: Vec<(
        &str,
        &crate::measure::RepeatSummary,
        &crate::measure::RepeatSummary,
    )> = done
        .iter()
        .flat_map(|(name, s)| {
            s.repeats
                .iter()
                .filter_map(move |r| Some((*name, r.superseded.as_deref()?, r)))
        })
        .collect();
    if reruns.is_empty() {
        return;
    }
    let flags = |r: &crate::measure::RepeatSummary| {
        r.noise.as_ref().map_or_else(
            || "–".to_string(),
            |n| {
                if n.flags.is_empty() {
                    "none".to_string()
                } else {
                    n.flag_text()
                }
            },
        )
    };
    out.push_str("<h3>Repeats measured again (--rerun-noisy)</h3><p class=\"note\">The new measurement replaces the flagged one in every statistic; the original stays in stats.json (<code>repeats[i].superseded</code>).</p><table class=\"noise\"><thead><tr><th>cell</th><th>repeat</th><th>flags before</th><th>output tok/s before</th><th>flags after</th><th>output tok/s after</th></tr></thead><tbody>");
    for (name, before, after) in reruns {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{:.1}</td><td>{}</td><td class=\"num\">{:.1}</td></tr>",
            esc(name),
            after.repeat + 1,
            esc(&flags(before)),
            before.output_tokens_per_s,
            esc(&flags(after)),
            after.output_tokens_per_s
        );
    }
    out.push_str("</tbody></table>");
}
