//! The continuous-batching step loop: arrivals (closed or open loop), admission against the
//! paged KV pool under the resolved admission policy, step construction from decode tokens plus
//! prefill chunks within `max_batched_tokens`, greedy sampling, retirement.
//!
//! How a step becomes forward calls (the knob semantics, after Ferrum's Qwen3-MoE model API):
//! - pure decode of M sequences: batched (one call, experts grouped) iff `FERRUM_MOE_BATCHED` and
//!   `FERRUM_MOE_BATCHED_DECODE` are on and `M ≥ FERRUM_MOE_BATCH_THRESHOLD`; otherwise one call
//!   per sequence with per-token experts (weights re-read for every sequence);
//! - a step with prefill chunks and `FERRUM_QWEN_UNIFIED_PREFILL` on (and more than a single
//!   lone prefill): one unified call for decode tokens and chunks together;
//! - otherwise the decode part as above, then one call per prefill chunk (serial prefill).
//!
//! Prefill-bearing calls group experts when they carry at least `FERRUM_MOE_PREFILL_THRESHOLD`
//! tokens, else run experts per token.
//!
//! Time comes from a [`clock::Clock`]: the wall clock, or a cost model of the work each step's
//! calls did (`[engine] clock = "modelled"`).

pub mod clock;
mod compose;
mod counters;

use std::collections::VecDeque;
use std::time::Duration;

use super::executor::Executor;
use super::knobs::{AdmissionPolicy, EngineKnobs};
use super::kv::{BlockPool, BLOCK_SIZE};
use super::model::FwdStats;
use crate::engine::{
    EngineError, EngineEvent, EngineRequest, LoadSpec, RequestStatus, RequestTrace, RunOptions,
    RunOutput, StepRecord,
};
use clock::Clock;
use compose::{compose, Step};
use counters::Counters;

/// Static limits of a run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per-sequence KV capacity in tokens (Ferrum's `kv_capacity`).
    pub kv_capacity: usize,
    /// Blocks each sequence reserves on admission.
    pub blocks_per_seq: usize,
    /// Blocks in the pool.
    pub pool_blocks: usize,
}

/// An admitted sequence.
#[derive(Debug)]
pub struct Seq {
    req: usize,
    blocks: Vec<u32>,
    prefilled: usize,
    generated: Vec<u32>,
    chunk_limit: Option<usize>,
    registered: usize,
}

/// Running sequences with their requests.
struct Sequences<'a> {
    requests: &'a [EngineRequest],
    running: &'a [Seq],
}

impl Sequences<'_> {
    /// Whether sequence `k` has its whole prompt in the KV cache.
    fn is_decoding(&self, k: usize) -> bool {
        let s = &self.running[k];
        s.prefilled == self.requests[s.req].prompt.len()
    }
}

/// Per-request bookkeeping.
#[derive(Default)]
struct Track {
    arrival_ns: Option<u64>,
    admitted_ns: Option<u64>,
    token_ns: Vec<u64>,
    finished_ns: Option<u64>,
    status: Option<RequestStatus>,
}

/// Runs `requests` to completion on `exec`: the step loop every backend shares, timed by
/// `clock`.
#[expect(
    clippy::too_many_arguments,
    reason = "the Engine::run arguments plus the engine's static state, passed straight through"
)]
pub fn run(
    knobs: &EngineKnobs,
    limits: Limits,
    vocab: usize,
    exec: &mut dyn Executor,
    requests: &[EngineRequest],
    load: &LoadSpec,
    options: &RunOptions,
    clock: Clock,
    progress: &mut dyn FnMut(&EngineEvent),
) -> Result<RunOutput, EngineError> {
    let mut state = RunState::new(knobs, limits, vocab, requests, load, clock)?;
    while state.finished < requests.len() {
        // A stop (Ctrl-C, time budget) takes effect before the next step, not at the end of the
        // run: a long run at high concurrency would otherwise keep the user waiting for minutes.
        if options.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        for i in state.arrivals() {
            progress(&EngineEvent::RequestDone {
                id: requests[i].id,
                ok: state.tracks[i]
                    .status
                    .as_ref()
                    .is_some_and(RequestStatus::is_ok),
            });
        }
        if state.finished >= requests.len() {
            break;
        }
        if state.running.is_empty() && state.waiting.is_empty() {
            // Open loop with nothing to do: wait for the next arrival (a modelled clock jumps
            // there), in short slices so a cancellation is noticed promptly.
            let next = state.arrival_at(state.next_arrival);
            if state.clock.is_modelled() {
                state.clock.jump_to(next);
            } else {
                let wait = next.saturating_sub(state.now());
                std::thread::sleep(Duration::from_nanos(wait.min(20_000_000)));
            }
            continue;
        }
        state.step(exec, options.record_steps, progress)?;
    }
    Ok(state.finish())
}

/// Everything a run mutates.
struct RunState<'a> {
    knobs: &'a EngineKnobs,
    limits: Limits,
    vocab: usize,
    requests: &'a [EngineRequest],
    load: &'a LoadSpec,
    /// Closed-loop concurrency; `None` for open loop.
    concurrency: Option<usize>,
    clock: Clock,
    pool: BlockPool,
    tracks: Vec<Track>,
    outputs: Vec<Vec<u32>>,
    next_arrival: usize,
    /// Closed loop: when each free slot freed (all at run start initially). A request takes the
    /// oldest free slot and its arrival time is the moment that slot freed, so time spent
    /// finishing the step that freed it counts against the request, as a client would see it.
    free_slots: VecDeque<u64>,
    waiting: VecDeque<usize>,
    running: Vec<Seq>,
    finished: usize,
    counters: Counters,
    steps: Vec<StepRecord>,
}

impl<'a> RunState<'a> {
    fn new(
        knobs: &'a EngineKnobs,
        limits: Limits,
        vocab: usize,
        requests: &'a [EngineRequest],
        load: &'a LoadSpec,
        clock: Clock,
    ) -> Result<Self, EngineError> {
        let n = requests.len();
        let concurrency = match load {
            LoadSpec::Closed { concurrency } if *concurrency == 0 => {
                return Err(EngineError::Config(
                    "closed-loop concurrency must be at least 1".to_string(),
                ))
            }
            LoadSpec::Closed { concurrency } => Some(*concurrency),
            LoadSpec::Open { arrivals_s } => {
                if arrivals_s.len() != n {
                    return Err(EngineError::Config(format!(
                        "open-loop load has {} arrival times for {n} requests",
                        arrivals_s.len()
                    )));
                }
                None
            }
        };
        Ok(RunState {
            knobs,
            limits,
            vocab,
            requests,
            load,
            concurrency,
            clock,
            pool: BlockPool::new(limits.pool_blocks, knobs.prefix_cache),
            tracks: (0..n).map(|_| Track::default()).collect(),
            outputs: vec![Vec::new(); n],
            next_arrival: 0,
            free_slots: match concurrency {
                Some(cc) => std::iter::repeat_n(0, cc.min(n.max(1))).collect(),
                None => VecDeque::new(),
            },
            waiting: VecDeque::new(),
            running: Vec::new(),
            finished: 0,
            counters: Counters::default(),
            steps: Vec::new(),
        })
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn arrival_at(&self, i: usize) -> u64 {
        match self.load {
            LoadSpec::Open { arrivals_s } => (arrivals_s[i].max(0.0) * 1e9) as u64,
            LoadSpec::Closed { .. } => 0,
        }
    }

    /// Closed loop: a finished request frees its slot at `t`.
    fn free_slot(&mut self, t: u64) {
        if self.concurrency.is_some() {
            self.free_slots.push_back(t);
        }
    }

    /// Takes arrivals into the waiting queue (a rejection frees a closed-loop slot at once, so
    /// loops until stable); returns the requests that finished on arrival.
    fn arrivals(&mut self) -> Vec<usize> {
        let n = self.requests.len();
        let mut finished_now = Vec::new();
        loop {
            let t = self.now();
            // Open loop: the scheduled time (the engine may notice it only at a step boundary,
            // and that wait is part of the request's latency).
            let arrival = match self.concurrency {
                _ if self.next_arrival >= n => None,
                Some(_) => self.free_slots.pop_front(),
                None => Some(self.arrival_at(self.next_arrival)).filter(|a| *a <= t),
            };
            let Some(arrival) = arrival else {
                break;
            };
            let i = self.next_arrival;
            self.next_arrival += 1;
            self.tracks[i].arrival_ns = Some(arrival);
            match reject_reason(&self.requests[i], self.knobs, self.limits) {
                Some(reason) => {
                    self.tracks[i].status = Some(RequestStatus::Rejected { reason });
                    self.tracks[i].finished_ns = Some(t);
                    self.counters.rejected += 1;
                    self.free_slot(t);
                    self.finished += 1;
                    finished_now.push(i);
                }
                None if self.requests[i].output_tokens == 0 => {
                    self.tracks[i].admitted_ns = Some(t);
                    self.tracks[i].status = Some(RequestStatus::Ok);
                    self.tracks[i].finished_ns = Some(t);
                    self.free_slot(t);
                    self.finished += 1;
                    finished_now.push(i);
                }
                None => self.waiting.push_back(i),
            }
        }
        finished_now
    }

    /// Admits waiting requests under the sequence limit, the admission policy and the KV pool;
    /// returns how many were admitted.
    fn admit(&mut self, step_start: u64) -> usize {
        let (knobs, requests) = (self.knobs, self.requests);
        let decoding_before = (0..self.running.len())
            .filter(|&k| {
                Sequences {
                    requests,
                    running: &self.running,
                }
                .is_decoding(k)
            })
            .count();
        let mut admitted = 0usize;
        let mut blocked = false;
        while let Some(&i) = self.waiting.front() {
            if self.running.len() >= knobs.max_sequences {
                break;
            }
            let prompt = &requests[i].prompt;
            if knobs.admission == AdmissionPolicy::PromptTokenEstimate {
                let pending: usize = self
                    .running
                    .iter()
                    .map(|s| requests[s.req].prompt.len() - s.prefilled)
                    .sum();
                let budget = knobs.max_batched_tokens.saturating_sub(decoding_before);
                if pending > 0 && pending + prompt.len() > budget {
                    break;
                }
            }
            let Some(res) = self.pool.reserve(prompt, self.limits.blocks_per_seq) else {
                blocked = true;
                break;
            };
            self.waiting.pop_front();
            let shared_tokens = res.shared_blocks * BLOCK_SIZE;
            self.counters.prefix_hit_tokens += shared_tokens as u64;
            let chunk_limit = match knobs.admission {
                AdmissionPolicy::ActiveDecodePrefillChunk(limit) if decoding_before > 0 => {
                    Some(limit)
                }
                AdmissionPolicy::PrefillFirstUntilActive { step_chunk, .. } => step_chunk,
                _ => None,
            };
            self.tracks[i].admitted_ns = Some(step_start);
            self.running.push(Seq {
                req: i,
                blocks: res.blocks,
                prefilled: shared_tokens,
                generated: Vec::new(),
                chunk_limit,
                registered: res.shared_blocks,
            });
            admitted += 1;
        }
        if blocked {
            self.counters.blocked_by_kv += 1;
        }
        let c = &mut self.counters;
        c.peak_running = c.peak_running.max(self.running.len());
        c.peak_kv_blocks = c.peak_kv_blocks.max(self.pool.in_use());
        admitted
    }

    /// One step: admit, compose, execute, apply the sampled tokens, retire, record.
    fn step(
        &mut self,
        exec: &mut dyn Executor,
        record_steps: bool,
        progress: &mut dyn FnMut(&EngineEvent),
    ) -> Result<(), EngineError> {
        let step_start = self.now();
        let admitted = self.admit(step_start);
        let step = compose(self.knobs, self.vocab, self.requests, &self.running);
        let fwd: Vec<_> = step.calls.iter().map(|(call, _)| call.clone()).collect();
        let results = exec.execute(&fwd)?;
        self.clock.step_done(&fwd, &results);
        let t_done = self.now();
        let mut stats = FwdStats::default();
        let mut new_tokens = 0usize;
        for ((call, owners), res) in step.calls.iter().zip(&results) {
            stats.merge(&res.stats);
            let mut tokens = res.tokens.iter();
            for (item, &k) in call.items.iter().zip(owners) {
                let s = &mut self.running[k];
                let prompt = &self.requests[s.req].prompt;
                if s.prefilled < prompt.len() {
                    s.prefilled += item.tokens.len();
                    // Offer newly completed full prompt blocks to the prefix cache.
                    while (s.registered + 1) * BLOCK_SIZE <= s.prefilled {
                        self.pool.register_prefix_block(
                            prompt,
                            s.registered,
                            s.blocks[s.registered],
                        );
                        s.registered += 1;
                    }
                }
                if item.want_logits {
                    let tok = *tokens.next().ok_or_else(|| {
                        EngineError::Fault("forward returned too few sampled tokens".to_string())
                    })?;
                    s.generated.push(tok);
                    self.tracks[s.req].token_ns.push(t_done);
                    new_tokens += 1;
                }
            }
        }
        let done_now = self.retire(t_done);
        self.count(&step, &stats, fwd.len(), new_tokens);
        if record_steps {
            self.steps.push(StepRecord {
                step: self.counters.steps - 1,
                start_ns: step_start,
                duration_ns: t_done - step_start,
                prefill_tokens: step.prefill_tokens(),
                decode_tokens: step.decode.len(),
                sequences: step.decode.len() + step.prefill.len(),
                moe_path: step.moe_path.to_string(),
                distinct_experts: stats.mean_distinct_experts(),
                kv_blocks_in_use: self.pool.in_use(),
                waiting: self.waiting.len(),
                admitted,
                finished: done_now.len(),
            });
        }
        if new_tokens > 0 {
            progress(&EngineEvent::Tokens { count: new_tokens });
        }
        for i in &done_now {
            progress(&EngineEvent::RequestDone {
                id: self.requests[*i].id,
                ok: true,
            });
        }
        if step.decode.is_empty() && step.prefill.is_empty() && done_now.is_empty() && admitted == 0
        {
            return Err(EngineError::Fault(format!(
                "scheduler stalled: {} running, {} waiting, {} of {} KV blocks in use",
                self.running.len(),
                self.waiting.len(),
                self.pool.in_use(),
                self.pool.total()
            )));
        }
        Ok(())
    }

    /// Retires sequences that generated all their tokens; returns their requests.
    fn retire(&mut self, t_done: u64) -> Vec<usize> {
        let mut done = Vec::new();
        let (requests, pool) = (self.requests, &mut self.pool);
        self.running.retain_mut(|s| {
            if s.generated.len() >= requests[s.req].output_tokens {
                pool.release(&s.blocks);
                done.push((s.req, std::mem::take(&mut s.generated)));
                false
            } else {
                true
            }
        });
        let mut ids = Vec::with_capacity(done.len());
        for (i, toks) in done {
            self.tracks[i].status = Some(RequestStatus::Ok);
            self.tracks[i].finished_ns = Some(t_done);
            self.outputs[i] = toks;
            self.free_slot(t_done);
            self.finished += 1;
            ids.push(i);
        }
        ids
    }

    fn count(&mut self, step: &Step, stats: &FwdStats, calls: usize, new_tokens: usize) {
        let c = &mut self.counters;
        c.forward_calls += calls as u64;
        if !step.decode.is_empty() {
            c.decode_steps += 1;
        }
        if step.batched_decode {
            c.batched_decode_steps += 1;
        }
        if step.unified {
            c.unified_steps += 1;
        }
        c.steps += 1;
        c.decode_tokens += step.decode.len() as u64;
        c.prefill_tokens += step.prefill_tokens() as u64;
        c.output_tokens += new_tokens as u64;
        c.expert_loads += stats.expert_loads;
        c.distinct_experts_sum += stats.mean_distinct_experts();
    }

    /// The run's output: per-request traces, counters, step records.
    fn finish(self) -> RunOutput {
        let duration_ns = self.now();
        let requests = self
            .requests
            .iter()
            .zip(self.tracks)
            .zip(self.outputs)
            .map(|((r, t), output_ids)| RequestTrace {
                id: r.id,
                status: t.status.unwrap_or(RequestStatus::Failed {
                    reason: "run ended before completion".to_string(),
                }),
                prompt_tokens: r.prompt.len(),
                arrival_ns: t.arrival_ns.unwrap_or(duration_ns),
                admitted_ns: t.admitted_ns,
                token_ns: t.token_ns,
                finished_ns: t.finished_ns.unwrap_or(duration_ns),
                output_ids,
            })
            .collect();
        RunOutput {
            requests,
            duration_ns,
            counters: self.counters.into_map(self.pool.hits, self.limits),
            steps: self.steps,
        }
    }
}

/// Why a request can never run, if so.
fn reject_reason(r: &EngineRequest, knobs: &EngineKnobs, limits: Limits) -> Option<String> {
    let (p, o) = (r.prompt.len(), r.output_tokens);
    if p == 0 {
        return Some("empty prompt: at least one prompt token is needed".to_string());
    }
    if p + o > limits.kv_capacity {
        return Some(format!(
            "prompt of {p} tokens + {o} output exceeds KV capacity of {} tokens (FERRUM_KV_CAPACITY)",
            limits.kv_capacity
        ));
    }
    if let Some(max) = knobs.max_model_len {
        if p + o > max {
            return Some(format!(
                "prompt of {p} tokens + {o} output exceeds max_model_len of {max} tokens"
            ));
        }
    }
    None
}
