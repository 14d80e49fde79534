//! The preset's `[run]` table (`RunTable`), command-line overrides, and the resolved
//! `RunSettings` a cell runs with.

use serde::{Deserialize, Serialize};

use super::SweepError;
use crate::measure::{CellRunSpec, LoadPoint};
use crate::stats::Slo;
use crate::workload::{TokenSpace, WorkloadSpec};

/// Default nominal input length (tokens).
pub const DEFAULT_INPUT_LEN: usize = 256;
/// Default output length (tokens).
pub const DEFAULT_OUTPUT_LEN: usize = 128;
/// Default measured requests per repeat: one full wave at c=32 keeps the default 18-cell m3 sweep
/// (×3 repeats) under 10 minutes on 2 CPU cores at ~1000–3000 output tok/s.
pub const DEFAULT_REQUESTS: usize = 32;
/// Default warmup requests per repeat.
pub const DEFAULT_WARMUP_REQUESTS: usize = 4;
/// Default repeats per cell (the minimum that yields a confidence interval).
pub const DEFAULT_REPEATS: u32 = 3;
/// Default base seed (Ferrum's release gate seed, `docs/release/GATES.md`).
pub const DEFAULT_SEED: u64 = 9271;
/// Default closed-loop concurrency.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// `--quick`: measured requests per repeat.
pub const QUICK_REQUESTS: usize = 12;
/// `--quick`: warmup requests per repeat.
pub const QUICK_WARMUP_REQUESTS: usize = 1;
/// Most repeats per cell.
pub const MAX_REPEATS: u32 = 1_000;
/// Largest closed-loop concurrency.
pub const MAX_CONCURRENCY: usize = 100_000;
/// Smallest open-loop rate (req/s): one request per 1000 s; slower would make a run of a few
/// requests last days (and the estimate overflow).
pub const MIN_REQUEST_RATE: f64 = 1e-3;
/// Largest open-loop rate (req/s).
pub const MAX_REQUEST_RATE: f64 = 1e6;
/// Smallest gamma shape of open-loop gaps.
pub const MIN_BURSTINESS: f64 = 1e-3;
/// Largest gamma shape of open-loop gaps.
pub const MAX_BURSTINESS: f64 = 1e3;
/// Largest SLO limit, ms (about 11.6 days).
const MAX_SLO_MS: f64 = 1e9;

/// `[run.slo]`: goodput limits in ms (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloTable {
    /// TTFT limit, ms.
    pub ttft_ms: Option<f64>,
    /// TPOT limit, ms.
    pub tpot_ms: Option<f64>,
    /// E2E limit, ms.
    pub e2e_ms: Option<f64>,
}

/// A preset's `[run]` table. Every field is optional; defaults are the `DEFAULT_*` constants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTable {
    /// `random-<in>/<out>`; alternative to `input_len` + `output_len` (not both).
    pub workload: Option<String>,
    /// Nominal input length (default 256).
    pub input_len: Option<usize>,
    /// Output length (default 128).
    pub output_len: Option<usize>,
    /// vLLM range ratio (default 0 = exact lengths).
    pub range_ratio: Option<f64>,
    /// Shared prefix length (default 0).
    pub prefix_len: Option<usize>,
    /// Measured requests per repeat (default 32).
    pub requests: Option<usize>,
    /// Warmup requests per repeat (default 4).
    pub warmup_requests: Option<usize>,
    /// Repeats per cell (default 3).
    pub repeats: Option<u32>,
    /// Base seed (default 9271).
    pub seed: Option<u64>,
    /// Closed-loop concurrency (default 32); exclusive with `request_rate`.
    pub concurrency: Option<usize>,
    /// Open-loop rate in requests/s; exclusive with `concurrency`.
    pub request_rate: Option<f64>,
    /// Gamma shape of open-loop gaps (default 1 = Poisson).
    pub burstiness: Option<f64>,
    /// Goodput SLO.
    pub slo: Option<SloTable>,
    /// Record per-step engine records (`steps.jsonl`, default false).
    pub record_steps: Option<bool>,
}

impl RunTable {
    /// Deserialize from the raw `[run]` table of a preset (`path` names the file in errors).
    pub fn from_toml(table: &toml::Table) -> Result<RunTable, SweepError> {
        RunTable::deserialize(toml::Value::Table(table.clone())).map_err(|e| SweepError::Table {
            table: "run",
            message: e.message().trim().replace('\n', " "),
        })
    }
}

/// Command-line overrides of `[run]` (the `run`/`sweep` flags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOverrides {
    /// `--concurrency C` (switches to closed loop).
    pub concurrency: Option<usize>,
    /// `--request-rate R` (switches to open loop).
    pub request_rate: Option<f64>,
    /// `--requests N`.
    pub requests: Option<usize>,
    /// `--warmup-requests N`.
    pub warmup_requests: Option<usize>,
    /// `--repeats R`.
    pub repeats: Option<u32>,
    /// `--seed S`.
    pub seed: Option<u64>,
    /// `--quick`: 12 requests, 1 warmup, 1 repeat (explicit flags above still win).
    pub quick: bool,
}

/// Resolved run settings of a cell (before the sweep's load axis replaces `load`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Workload shape.
    pub workload: WorkloadSpec,
    /// Repeats per cell.
    pub repeats: u32,
    /// Base seed.
    pub seed: u64,
    /// Default load (used when the sweep has no load axis).
    pub load: LoadPoint,
    /// Gamma shape of open-loop gaps, also used by a sweep's `request_rate` axis.
    pub burstiness: f64,
    /// Goodput SLO.
    pub slo: Slo,
    /// Record per-step engine records.
    pub record_steps: bool,
}

impl RunSettings {
    /// Defaults ← `[run]` table ← command-line overrides, validated.
    pub fn resolve(
        table: Option<&RunTable>,
        overrides: &RunOverrides,
    ) -> Result<RunSettings, SweepError> {
        let t = table.cloned().unwrap_or_default();
        let invalid =
            |key: &'static str, value: String, expected: &'static str| SweepError::Setting {
                key,
                value,
                expected,
            };
        let (mut input_len, mut output_len) = (DEFAULT_INPUT_LEN, DEFAULT_OUTPUT_LEN);
        if let Some(name) = &t.workload {
            if t.input_len.is_some() || t.output_len.is_some() {
                return Err(invalid(
                    "workload",
                    name.clone(),
                    "give either `workload` or `input_len`/`output_len`, not both",
                ));
            }
            (input_len, output_len) =
                WorkloadSpec::parse_name(name).map_err(|e| SweepError::Workload(e.to_string()))?;
        }
        input_len = t.input_len.unwrap_or(input_len);
        output_len = t.output_len.unwrap_or(output_len);
        let (quick_requests, quick_warmup, quick_repeats) = if overrides.quick {
            (Some(QUICK_REQUESTS), Some(QUICK_WARMUP_REQUESTS), Some(1))
        } else {
            (None, None, None)
        };
        let workload = WorkloadSpec {
            input_len,
            output_len,
            range_ratio: t.range_ratio.unwrap_or(0.0),
            prefix_len: t.prefix_len.unwrap_or(0),
            requests: overrides
                .requests
                .or(quick_requests)
                .or(t.requests)
                .unwrap_or(DEFAULT_REQUESTS),
            warmup_requests: overrides
                .warmup_requests
                .or(quick_warmup)
                .or(t.warmup_requests)
                .unwrap_or(DEFAULT_WARMUP_REQUESTS),
        };
        workload
            .validate()
            .map_err(|e| SweepError::Workload(e.to_string()))?;
        let repeats = overrides
            .repeats
            .or(quick_repeats)
            .or(t.repeats)
            .unwrap_or(DEFAULT_REPEATS);
        if !(1..=MAX_REPEATS).contains(&repeats) {
            return Err(invalid(
                "repeats",
                repeats.to_string(),
                "expected 1 to 1000",
            ));
        }
        let burstiness = t.burstiness.unwrap_or(1.0);
        if !(MIN_BURSTINESS..=MAX_BURSTINESS).contains(&burstiness) {
            return Err(invalid(
                "burstiness",
                burstiness.to_string(),
                "expected a number from 0.001 to 1000",
            ));
        }
        if t.concurrency.is_some() && t.request_rate.is_some() {
            return Err(invalid(
                "request_rate",
                format!("{:?}", t.request_rate),
                "give either `concurrency` or `request_rate` in [run], not both",
            ));
        }
        // A command-line load flag replaces whatever load the table chose.
        let load = match (overrides.concurrency, overrides.request_rate) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "request_rate",
                    "given with --concurrency".into(),
                    "use either --concurrency or --request-rate",
                ))
            }
            (Some(c), None) => LoadPoint::Closed { concurrency: c },
            (None, Some(r)) => LoadPoint::Open {
                request_rate: r,
                burstiness,
            },
            (None, None) => match t.request_rate {
                Some(r) => LoadPoint::Open {
                    request_rate: r,
                    burstiness,
                },
                None => LoadPoint::Closed {
                    concurrency: t.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
                },
            },
        };
        validate_load(&load)?;
        let slo_t = t.slo.unwrap_or_default();
        let slo = Slo {
            ttft_ms: slo_t.ttft_ms,
            tpot_ms: slo_t.tpot_ms,
            e2e_ms: slo_t.e2e_ms,
        };
        for (key, v) in [
            ("slo.ttft_ms", slo.ttft_ms),
            ("slo.tpot_ms", slo.tpot_ms),
            ("slo.e2e_ms", slo.e2e_ms),
        ] {
            if let Some(v) = v {
                if !(v > 0.0 && v <= MAX_SLO_MS) {
                    return Err(invalid(
                        key,
                        v.to_string(),
                        "expected a positive number of milliseconds, at most 1e9",
                    ));
                }
            }
        }
        Ok(RunSettings {
            workload,
            repeats,
            seed: overrides.seed.or(t.seed).unwrap_or(DEFAULT_SEED),
            load,
            burstiness,
            slo,
            record_steps: t.record_steps.unwrap_or(false),
        })
    }

    /// The measurement spec of one cell at `load`, with the model's token space.
    pub fn cell_spec(&self, tokens: TokenSpace, load: LoadPoint) -> CellRunSpec {
        CellRunSpec {
            workload: self.workload.clone(),
            tokens,
            base_seed: self.seed,
            repeats: self.repeats,
            first_repeat: 0,
            load,
            slo: self.slo,
            record_steps: self.record_steps,
            monitor_noise: true,
            round: None,
        }
    }
}

/// Concurrency in 1..=[`MAX_CONCURRENCY`]; rate in [`MIN_REQUEST_RATE`]..=[`MAX_REQUEST_RATE`].
pub(crate) fn validate_load(load: &LoadPoint) -> Result<(), SweepError> {
    match *load {
        LoadPoint::Closed { concurrency } if !(1..=MAX_CONCURRENCY).contains(&concurrency) => {
            Err(SweepError::Setting {
                key: "concurrency",
                value: concurrency.to_string(),
                expected: "expected 1 to 100000",
            })
        }
        LoadPoint::Open { request_rate, .. }
            if !(MIN_REQUEST_RATE..=MAX_REQUEST_RATE).contains(&request_rate) =>
        {
            Err(SweepError::Setting {
                key: "request_rate",
                value: format!("{request_rate:?}"),
                expected: "expected 0.001 to 1000000 requests per second",
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_then_table_then_flags() {
        let d = RunSettings::resolve(None, &RunOverrides::default()).unwrap();
        assert_eq!(
            (
                d.workload.input_len,
                d.workload.output_len,
                d.workload.requests
            ),
            (256, 128, 32)
        );
        assert_eq!(
            (d.repeats, d.seed, d.load),
            (3, 9271, LoadPoint::Closed { concurrency: 32 })
        );
        let t = RunTable::from_toml(&table("workload = \"random-64/32\"\nrequests = 10\nrequest_rate = 2.0\n[slo]\nttft_ms = 500.0\n")).unwrap();
        let s = RunSettings::resolve(Some(&t), &RunOverrides::default()).unwrap();
        assert_eq!(
            (
                s.workload.input_len,
                s.workload.output_len,
                s.workload.requests
            ),
            (64, 32, 10)
        );
        assert_eq!(
            s.load,
            LoadPoint::Open {
                request_rate: 2.0,
                burstiness: 1.0
            }
        );
        assert_eq!(s.slo.ttft_ms, Some(500.0));
        let o = RunOverrides {
            concurrency: Some(4),
            requests: Some(5),
            quick: true,
            ..Default::default()
        };
        let q = RunSettings::resolve(Some(&t), &o).unwrap();
        assert_eq!(q.load, LoadPoint::Closed { concurrency: 4 });
        assert_eq!(
            (q.workload.requests, q.workload.warmup_requests, q.repeats),
            (5, QUICK_WARMUP_REQUESTS, 1)
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = RunTable::from_toml(&table("concurency = 4"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurency") && err.contains("[run]"), "{err}");
        let t = RunTable {
            concurrency: Some(0),
            ..Default::default()
        };
        assert!(RunSettings::resolve(Some(&t), &RunOverrides::default())
            .unwrap_err()
            .to_string()
            .contains("`concurrency`"));
        let t = RunTable {
            workload: Some("random-1/1".into()),
            input_len: Some(3),
            ..Default::default()
        };
        assert!(RunSettings::resolve(Some(&t), &RunOverrides::default()).is_err());
        let t = RunTable {
            range_ratio: Some(1.5),
            ..Default::default()
        };
        assert!(RunSettings::resolve(Some(&t), &RunOverrides::default())
            .unwrap_err()
            .to_string()
            .contains("range_ratio"));
        let o = RunOverrides {
            concurrency: Some(1),
            request_rate: Some(1.0),
            ..Default::default()
        };
        assert!(RunSettings::resolve(None, &o).is_err());
    }
}
