//! `--junit FILE`: JUnit XML, one test case per cell × metric; `regressed` is a failure,
//! `inconclusive` is skipped, a pair that is not comparable is one error case.

use super::{fmt_change, fmt_p, Exporter};
use crate::compare::CompareReport;
use crate::stats::Verdict;

/// JUnit exporter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Junit;

/// Escape XML attribute/text content.
fn x(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

impl Exporter for Junit {
    fn render(&self, r: &CompareReport) -> Result<String, crate::results::ResultsError> {
        let mut cases = String::new();
        let (mut tests, mut failures, mut skipped, mut errors) = (0, 0, 0, 0);
        for p in &r.pairs {
            if !p.comparable {
                tests += 1;
                errors += 1;
                cases.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"comparable\">\n      <error message=\"{}\"/>\n    </testcase>\n",
                    x(&p.name),
                    x(p.note.as_deref().unwrap_or("not comparable"))
                ));
                continue;
            }
            for m in &p.metrics {
                tests += 1;
                let detail = format!(
                    "{}: baseline {:.4} → candidate {:.4} {}; change {}; p {}; threshold ±{:.1} %",
                    m.metric,
                    m.baseline.mean,
                    m.candidate.mean,
                    m.unit,
                    fmt_change(m),
                    fmt_p(m),
                    m.threshold * 100.0
                );
                let body = match m.comparison.verdict {
                    Verdict::Regressed => {
                        failures += 1;
                        format!(
                            "      <failure message=\"regressed\">{}</failure>\n",
                            x(&detail)
                        )
                    }
                    Verdict::Inconclusive => {
                        skipped += 1;
                        format!(
                            "      <skipped message=\"inconclusive: {}\"/>\n",
                            x(m.comparison.reason.as_deref().unwrap_or(""))
                        )
                    }
                    v => format!(
                        "      <system-out>{}: {}</system-out>\n",
                        v.as_str(),
                        x(&detail)
                    ),
                };
                cases.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"{}\">\n{body}    </testcase>\n",
                    x(&p.name),
                    x(&m.metric)
                ));
            }
        }
        Ok(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"ferrum-bench compare\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n  <testsuite name=\"compare\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n</testsuites>\n"
        ))
    }
}
