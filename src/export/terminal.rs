//! The terminal table: one `tabled` table per pair with coloured verdicts (ANSI colours only when
//! asked, i.e. when stdout is a terminal), drift lines under it, unmatched cells last.

use tabled::builder::Builder;
use tabled::settings::Style;

use super::{decimals, fmt_change, fmt_p, fmt_side, headline, title, verdict_text, Exporter};
use crate::compare::CompareReport;
use crate::diff::config_diff_lines;
use crate::stats::Verdict;

/// Terminal exporter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    /// Colour verdicts with ANSI escapes.
    pub color: bool,
}

impl Terminal {
    fn paint(&self, v: Verdict) -> String {
        let text = verdict_text(v);
        if !self.color {
            return text.to_string();
        }
        let code = match v {
            Verdict::Regressed => "31;1",
            Verdict::Improved => "32;1",
            Verdict::Unchanged => "2",
            Verdict::Inconclusive => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

impl Exporter for Terminal {
    fn render(&self, r: &CompareReport) -> Result<String, crate::results::ResultsError> {
        let mut out = format!(
            "baseline:  {}\ncandidate: {}\n",
            r.baseline.path, r.candidate.path
        );
        for p in &r.pairs {
            out.push_str(&format!("\n{}\n", p.name));
            if let Some(note) = &p.note {
                out.push_str(&format!("  note: {note}\n"));
            }
            if !p.metrics.is_empty() {
                let mut b = Builder::default();
                b.push_record([
                    "metric",
                    "baseline",
                    "candidate",
                    "change [95 % CI]",
                    "p",
                    "verdict",
                ]);
                for m in &p.metrics {
                    let d = decimals(m);
                    b.push_record([
                        title(m),
                        fmt_side(&m.baseline, d),
                        fmt_side(&m.candidate, d),
                        fmt_change(m),
                        fmt_p(m),
                        self.paint(m.comparison.verdict),
                    ]);
                }
                out.push_str(&b.build().with(Style::rounded()).to_string());
                out.push('\n');
                if let Some(method) = p.method_line() {
                    out.push_str(&format!("  test: {method}\n"));
                }
                for m in &p.metrics {
                    if let (Verdict::Inconclusive, Some(reason)) =
                        (m.comparison.verdict, &m.comparison.reason)
                    {
                        out.push_str(&format!("  {}: inconclusive: {reason}\n", m.label));
                    }
                }
            }
            if let Some(d) = &p.drift {
                if !d.is_empty() {
                    out.push_str("  config drift (baseline → candidate):\n");
                    for l in config_diff_lines(d, "    ") {
                        out.push_str(&l);
                        out.push('\n');
                    }
                }
            }
            if !p.engine_path.is_empty() {
                out.push_str("  engine decisions at run time (baseline → candidate):\n");
                for c in &p.engine_path {
                    out.push_str(&format!("    {}\n", c.line()));
                }
            }
        }
        for u in &r.unmatched {
            out.push_str(&format!(
                "unmatched {} cell {}: {}\n",
                u.side, u.name, u.reason
            ));
        }
        out.push_str(&format!("\n{}\n", headline(r)));
        Ok(out)
    }
}
