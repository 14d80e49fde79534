//! The boundary between the scheduler and a backend: the scheduler builds forward calls, an
//! [`Executor`] runs them (on CPU worker threads, CPU layer-split stages, or a CUDA device) and
//! returns the greedy token each logits-wanting item sampled, so a device backend never copies
//! logits to the host.

use super::model::{FwdCall, FwdStats};
use crate::engine::EngineError;

/// Result of one forward call.
#[derive(Debug, Clone, Default)]
pub struct CallResult {
    /// The sampled (greedy) token of each item that wanted logits, in item order.
    pub tokens: Vec<u32>,
    /// Routing statistics.
    pub stats: FwdStats,
}

/// Runs forward calls.
pub trait Executor {
    /// Runs `calls` (independent of each other) and returns their results in order.
    fn execute(&mut self, calls: &[FwdCall]) -> Result<Vec<CallResult>, EngineError>;
}

/// How the greedy token reaches the host (`sampling_readback_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// `logits_readback`: the logits row is copied out, then reduced.
    LogitsReadback,
    /// `gpu_greedy_argmax`: reduced where the logits are, only the id travels.
    DeviceArgmax,
}

impl Sampling {
    /// From the resolved `sampling_readback_path` (anything but `logits_readback` reduces in
    /// place).
    pub fn from_readback_path(path: &str) -> Self {
        if path == "logits_readback" {
            Sampling::LogitsReadback
        } else {
            Sampling::DeviceArgmax
        }
    }

    /// Samples one row.
    pub fn sample(self, row: &[f32]) -> u32 {
        match self {
            Sampling::LogitsReadback => {
                let host = row.to_vec();
                argmax(&host)
            }
            Sampling::DeviceArgmax => argmax(row),
        }
    }
}

/// Greedy argmax; the lowest index wins ties (as the device kernel does).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_on_both_paths() {
        let row = [0.5, 2.0, -1.0, 2.0];
        assert_eq!(argmax(&row), 1);
        for s in [Sampling::LogitsReadback, Sampling::DeviceArgmax] {
            assert_eq!(s.sample(&row), 1);
        }
        assert_eq!(
            Sampling::from_readback_path("logits_readback"),
            Sampling::LogitsReadback
        );
        assert_eq!(
            Sampling::from_readback_path("gpu_greedy_argmax"),
            Sampling::DeviceArgmax
        );
    }
}
