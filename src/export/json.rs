//! `--format json`: the [`CompareReport`] as is (`schema_version` first).

use super::Exporter;
use crate::compare::CompareReport;

/// JSON exporter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Exporter for Json {
    fn render(&self, report: &CompareReport) -> Result<String, crate::results::ResultsError> {
        crate::results::to_json_pretty(report, std::path::Path::new("compare.json"))
    }
}
