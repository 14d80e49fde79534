//! An engine that answers at once: every request gets its tokens at virtual 1 ms steps from its
//! arrival at 0, all requests concurrently. It exists for code that measures or exercises
//! ferrum-bench's own bookkeeping — shard/merge tests, the fuzz tests, `cargo bench --bench
//! bookkeeping` — where an engine's time would only hide the harness's; it says nothing about an
//! inference engine.

use std::collections::BTreeMap;

use super::{
    Engine, EngineError, EngineEvent, EngineInfo, EngineRequest, LoadSpec, RequestStatus,
    RequestTrace, RunOptions, RunOutput,
};

/// Virtual time between two tokens of a request.
const TOKEN_NS: u64 = 1_000_000;

/// See the module doc. `kind` is what [`Engine::info`] reports.
#[derive(Debug, Clone)]
pub struct InstantEngine {
    kind: String,
}

impl InstantEngine {
    /// An instant engine reporting itself as `kind`.
    pub fn new(kind: &str) -> InstantEngine {
        InstantEngine { kind: kind.into() }
    }
}

impl Engine for InstantEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            kind: self.kind.clone(),
            version: "1".into(),
            details: BTreeMap::new(),
        }
    }

    fn run(
        &mut self,
        requests: &[EngineRequest],
        _load: &LoadSpec,
        _options: &RunOptions,
        _progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<RunOutput, EngineError> {
        let traces: Vec<RequestTrace> = requests
            .iter()
            .map(|r| {
                let token_ns: Vec<u64> =
                    (1..=r.output_tokens as u64).map(|k| k * TOKEN_NS).collect();
                RequestTrace {
                    id: r.id,
                    status: RequestStatus::Ok,
                    prompt_tokens: r.prompt.len(),
                    arrival_ns: 0,
                    admitted_ns: Some(0),
                    finished_ns: token_ns.last().copied().unwrap_or(0),
                    token_ns,
                    output_ids: Vec::new(),
                }
            })
            .collect();
        Ok(RunOutput {
            duration_ns: traces.iter().map(|t| t.finished_ns).max().unwrap_or(0),
            requests: traces,
            counters: BTreeMap::new(),
            steps: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_one_virtual_millisecond_apart() {
        let reqs: Vec<EngineRequest> = (0..3)
            .map(|i| EngineRequest {
                id: i,
                prompt: vec![1; 4],
                output_tokens: i as usize + 1,
            })
            .collect();
        let out = InstantEngine::new("t")
            .run(
                &reqs,
                &LoadSpec::Closed { concurrency: 1 },
                &RunOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(
            out.requests[2].token_ns,
            vec![1_000_000, 2_000_000, 3_000_000]
        );
        assert_eq!(out.duration_ns, 3_000_000);
        assert_eq!(InstantEngine::new("t").info().kind, "t");
    }
}
