//! `--bmf FILE`: Bencher Metric Format — `{cell: {metric: {value, lower_value, upper_value}}}`
//! for the candidate side (mean and its 95 % CI bounds), so `bencher run --file` can track the
//! series and apply its own thresholds.

use serde_json::{json, Map, Value};

use super::Exporter;
use crate::compare::CompareReport;

/// BMF exporter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bmf;

impl Exporter for Bmf {
    fn render(&self, r: &CompareReport) -> Result<String, crate::results::ResultsError> {
        let mut root = Map::new();
        for p in &r.pairs {
            let mut metrics = Map::new();
            for m in &p.metrics {
                let (lo, hi) = m.candidate.bounds();
                let mut v = json!({ "value": m.candidate.mean });
                if m.candidate.ci95_half_width.is_some() {
                    v["lower_value"] = json!(lo);
                    v["upper_value"] = json!(hi);
                }
                metrics.insert(m.metric.clone(), v);
            }
            root.insert(p.candidate_cell.clone(), Value::Object(metrics));
        }
        crate::results::to_json_pretty(&Value::Object(root), std::path::Path::new("bmf.json"))
    }
}
