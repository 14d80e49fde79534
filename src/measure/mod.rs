//! The measurement loop: run a cell's repeats on an engine (warmup first, not measured), turn the
//! engine's traces into per-request records and per-repeat summaries, and aggregate across
//! repeats. Knows nothing of files or terminals; callers observe progress through
//! [`MeasureEvent`]s.

mod aggregate;
#[cfg(test)]
pub(crate) mod fake;
mod record;
mod run;
pub mod steady;

pub use aggregate::{aggregate_repeats, CellAggregate};
pub use record::{summarize, RepeatMeta, RepeatSummary, RequestRecord};
pub use run::{
    run_cell, run_repeats, CellMeasurement, CellOutcome, CellRunSpec, CellStatus, MeasureError,
    MeasureEvent, RepeatResult,
};

use serde::{Deserialize, Serialize};

use crate::engine::LoadSpec;
use crate::workload::arrivals::{arrival_offsets, ArrivalProcess};

/// The load of a cell: closed loop at a concurrency, or open loop at a request rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoadPoint {
    /// `concurrency` requests in flight.
    Closed {
        /// Requests in flight.
        concurrency: usize,
    },
    /// Seeded arrivals at `request_rate` per second.
    Open {
        /// Mean arrival rate, requests/s.
        request_rate: f64,
        /// Gamma shape of the gaps (1 = Poisson).
        burstiness: f64,
    },
}

impl LoadPoint {
    /// Short label used in cell names: `c32`, `r2.5` (`r2.5b0.5` with burstiness ≠ 1).
    pub fn label(&self) -> String {
        match self {
            LoadPoint::Closed { concurrency } => format!("c{concurrency}"),
            LoadPoint::Open {
                request_rate,
                burstiness,
            } if *burstiness == 1.0 => format!("r{request_rate}"),
            LoadPoint::Open {
                request_rate,
                burstiness,
            } => format!("r{request_rate}b{burstiness}"),
        }
    }

    /// The engine's load for `n` measured requests of a repeat whose seed is `seed` (open-loop
    /// arrivals come from the seed's arrival stream, so they are reproducible).
    pub fn load_spec(&self, n: usize, seed: u64) -> LoadSpec {
        match *self {
            LoadPoint::Closed { concurrency } => LoadSpec::Closed { concurrency },
            LoadPoint::Open {
                request_rate,
                burstiness,
            } => LoadSpec::Open {
                arrivals_s: arrival_offsets(
                    ArrivalProcess::from_burstiness(burstiness),
                    request_rate,
                    n,
                    seed,
                ),
            },
        }
    }

    /// The load used for warmup requests: the cell's concurrency for closed loop; for open loop
    /// all warmup requests at once (closed loop at the warmup count), since warmup exists to
    /// touch every code path, not to reproduce the arrival process.
    pub fn warmup_load(&self, warmup: usize) -> LoadSpec {
        match *self {
            LoadPoint::Closed { concurrency } => LoadSpec::Closed { concurrency },
            LoadPoint::Open { .. } => LoadSpec::Closed {
                concurrency: warmup.max(1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_load_specs() {
        assert_eq!(LoadPoint::Closed { concurrency: 32 }.label(), "c32");
        let open = LoadPoint::Open {
            request_rate: 2.5,
            burstiness: 1.0,
        };
        assert_eq!(open.label(), "r2.5");
        assert_eq!(
            LoadPoint::Open {
                request_rate: 4.0,
                burstiness: 0.5
            }
            .label(),
            "r4b0.5"
        );
        match open.load_spec(5, 1) {
            LoadSpec::Open { arrivals_s } => assert_eq!(arrivals_s.len(), 5),
            other => panic!("{other:?}"),
        }
        assert_eq!(open.warmup_load(4), LoadSpec::Closed { concurrency: 4 });
    }
}
