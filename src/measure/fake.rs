//! Test-only scripted engine (compiled only under `cfg(test)`): deterministic timestamps so
//! measurement and results tests can assert exact numbers.

use std::collections::BTreeMap;

use crate::engine::{
    Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, LoadSpec, RequestStatus,
    RequestTrace, RunOptions, RunOutput, StepRecord,
};

/// A scripted engine: request i's tokens come every `tick_ns`, starting `tick_ns` after its
/// arrival, serially within each of `concurrency` lanes. Requests whose id is in `reject` are
/// refused. Records every call so tests can check warmup handling.
pub(crate) struct FakeEngine {
    pub tick_ns: u64,
    pub reject: Vec<u64>,
    pub calls: Vec<(usize, LoadSpec)>,
    pub fail_on_call: Option<usize>,
    pub panic_on_call: Option<usize>,
}

impl FakeEngine {
    pub fn new(tick_ns: u64) -> FakeEngine {
        FakeEngine {
            tick_ns,
            reject: vec![],
            calls: vec![],
            fail_on_call: None,
            panic_on_call: None,
        }
    }
}

impl Engine for FakeEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            kind: "fake".into(),
            version: "1".into(),
            details: BTreeMap::new(),
        }
    }

    fn run(
        &mut self,
        requests: &[EngineRequest],
        load: &LoadSpec,
        options: &RunOptions,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError> {
        let call = self.calls.len();
        self.calls.push((requests.len(), load.clone()));
        if self.fail_on_call == Some(call) {
            return Err(EngineError::Fault("scripted failure".into()));
        }
        if self.panic_on_call == Some(call) {
            panic!("scripted panic");
        }
        let lanes = match load {
            LoadSpec::Closed { concurrency } => *concurrency,
            LoadSpec::Open { .. } => requests.len(),
        };
        let mut lane_free = vec![0u64; lanes.max(1)];
        let mut traces = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let lane = i % lane_free.len();
            let arrival = match load {
                LoadSpec::Open { arrivals_s } => (arrivals_s[i] * 1e9) as u64,
                LoadSpec::Closed { .. } => lane_free[lane],
            };
            if self.reject.contains(&r.id) {
                traces.push(RequestTrace {
                    id: r.id,
                    status: RequestStatus::Rejected {
                        reason: "too long".into(),
                    },
                    prompt_tokens: r.prompt.len(),
                    arrival_ns: arrival,
                    admitted_ns: None,
                    token_ns: vec![],
                    finished_ns: arrival,
                    output_ids: vec![],
                });
                progress(&EngineEvent::RequestDone {
                    id: r.id,
                    ok: false,
                });
                continue;
            }
            let token_ns: Vec<u64> = (1..=r.output_tokens as u64)
                .map(|k| arrival + k * self.tick_ns)
                .collect();
            let fin = *token_ns.last().unwrap();
            lane_free[lane] = fin;
            progress(&EngineEvent::Tokens {
                count: r.output_tokens,
            });
            progress(&EngineEvent::RequestDone { id: r.id, ok: true });
            traces.push(RequestTrace {
                id: r.id,
                status: RequestStatus::Ok,
                prompt_tokens: r.prompt.len(),
                arrival_ns: arrival,
                admitted_ns: Some(arrival),
                token_ns,
                finished_ns: fin,
                output_ids: vec![],
            });
        }
        let duration_ns = traces.iter().map(|t| t.finished_ns).max().unwrap_or(0);
        Ok(RunOutput {
            requests: traces,
            duration_ns,
            counters: BTreeMap::from([("steps".to_string(), requests.len() as f64)]),
            // One scripted step per request when steps are asked for.
            steps: if options.record_steps {
                (0..requests.len() as u64)
                    .map(|i| StepRecord {
                        step: i,
                        start_ns: i * self.tick_ns,
                        duration_ns: self.tick_ns,
                        prefill_tokens: 0,
                        decode_tokens: 1,
                        sequences: 1,
                        moe_path: "none".into(),
                        distinct_experts: 0.0,
                        kv_blocks_in_use: 1,
                        waiting: 0,
                        admitted: 0,
                        finished: 1,
                    })
                    .collect()
            } else {
                vec![]
            },
        })
    }
}
