//! `--format md`: GitHub job-summary Markdown — headline, one table per pair, drift beside it,
//! unmatched cells.

use super::{decimals, fmt_change, fmt_p, fmt_side, headline, title, verdict_text, Exporter};
use crate::compare::CompareReport;
use crate::diff::config_diff_lines;
use crate::stats::Verdict;

/// Markdown exporter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Markdown;

fn esc(s: &str) -> String {
    s.replace('|', "\\|")
}

fn icon(v: Verdict) -> &'static str {
    match v {
        Verdict::Regressed => "🔴",
        Verdict::Improved => "🟢",
        Verdict::Unchanged => "⚪",
        Verdict::Inconclusive => "🟡",
    }
}

impl Exporter for Markdown {
    fn render(&self, r: &CompareReport) -> Result<String, crate::results::ResultsError> {
        let mut md = String::from("# ferrum-bench compare\n\n");
        md.push_str(&format!("**{}**\n\n", headline(r)));
        for (side, info) in [("baseline", &r.baseline), ("candidate", &r.candidate)] {
            md.push_str(&format!(
                "- {side}: `{}` ({:?}); harness {} `{}`; engine {}\n",
                info.path,
                info.format,
                info.harness_version.as_deref().unwrap_or("–"),
                info.harness_commit.as_deref().unwrap_or("–"),
                info.engine
                    .as_ref()
                    .map(|e| format!("{} {}", e.kind, e.version))
                    .unwrap_or_else(|| "–".into())
                    + &info
                        .engine_commit
                        .as_ref()
                        .map(|c| format!(" (`{c}`)"))
                        .unwrap_or_default()
            ));
        }
        md.push_str(&format!(
            "\nVerdict rule: Welch's t-test at α = {}, relative change with a 95 % CI (delta method); `regressed` only when p < α and the whole CI lies beyond the metric's threshold in the bad direction.\n",
            r.alpha
        ));
        for p in &r.pairs {
            md.push_str(&format!("\n## {}\n\n", esc(&p.name)));
            if let Some(note) = &p.note {
                md.push_str(&format!("> {}\n\n", esc(note)));
            }
            if !p.metrics.is_empty() {
                md.push_str("| metric | baseline | candidate | change [95 % CI] | threshold | p | verdict |\n|---|---|---|---|---|---|---|\n");
                for m in &p.metrics {
                    let d = decimals(m);
                    md.push_str(&format!(
                        "| {} | {} | {} | {} | ±{:.0} % | {} | {} {}{} |\n",
                        title(m),
                        fmt_side(&m.baseline, d),
                        fmt_side(&m.candidate, d),
                        fmt_change(m),
                        m.threshold * 100.0,
                        fmt_p(m),
                        icon(m.comparison.verdict),
                        verdict_text(m.comparison.verdict),
                        m.comparison
                            .reason
                            .as_ref()
                            .map(|r| format!(" ({})", esc(r)))
                            .unwrap_or_default()
                    ));
                }
            }
            if let Some(method) = p.method_line() {
                md.push_str(&format!("\nTest: {method}.\n"));
            }
            match &p.drift {
                Some(d) if !d.is_empty() => {
                    md.push_str("\n**Config drift** (baseline → candidate):\n\n");
                    for l in config_diff_lines(d, "- ") {
                        md.push_str(&format!("{}\n", l.replace('`', "'")));
                    }
                }
                Some(_) => md.push_str("\nEffective configs identical.\n"),
                None => md.push_str("\nNo effective config on one side: drift unknown.\n"),
            }
            if !p.engine_path.is_empty() {
                md.push_str("\n**Engine decisions at run time** (baseline → candidate):\n\n");
                for c in &p.engine_path {
                    md.push_str(&format!("- {}\n", c.line()));
                }
            }
        }
        if !r.unmatched.is_empty() {
            md.push_str("\n## Cells without a pair\n\n| side | cell | reason |\n|---|---|---|\n");
            for u in &r.unmatched {
                md.push_str(&format!(
                    "| {} | {} | {} |\n",
                    u.side,
                    esc(&u.name),
                    esc(&u.reason)
                ));
            }
        }
        Ok(md)
    }
}
