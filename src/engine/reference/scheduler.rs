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

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::knobs::{AdmissionPolicy, EngineKnobs};
use super::kv::{BlockPool, BLOCK_SIZE};
use super::layer_split::Executor;
use super::model::{FwdCall, FwdItem, FwdStats, MoePath};
use crate::engine::{
    EngineError, EngineEvent, EngineRequest, LoadSpec, RequestStatus, RequestTrace, RunOptions,
    RunOutput, StepRecord,
};

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
struct Seq {
    req: usize,
    blocks: Vec<u32>,
    prefilled: usize,
    generated: Vec<u32>,
    chunk_limit: Option<usize>,
    registered: usize,
}

/// Per-request bookkeeping.
struct Track {
    arrival_ns: Option<u64>,
    admitted_ns: Option<u64>,
    token_ns: Vec<u64>,
    finished_ns: Option<u64>,
    status: Option<RequestStatus>,
}

/// Counters accumulated over a run.
#[derive(Default)]
struct Counters {
    steps: u64,
    decode_steps: u64,
    batched_decode_steps: u64,
    unified_steps: u64,
    decode_tokens: u64,
    prefill_tokens: u64,
    output_tokens: u64,
    peak_kv_blocks: usize,
    peak_running: usize,
    blocked_by_kv: u64,
    forward_calls: u64,
    expert_loads: u64,
    distinct_experts_sum: f64,
    prefix_hit_tokens: u64,
    rejected: u64,
}

/// Runs `requests` to completion.
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
    progress: &mut dyn FnMut(&EngineEvent),
) -> Result<RunOutput, EngineError> {
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
    let arrival_at = |i: usize| -> u64 {
        match load {
            LoadSpec::Open { arrivals_s } => (arrivals_s[i].max(0.0) * 1e9) as u64,
            LoadSpec::Closed { .. } => 0,
        }
    };
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    let mut pool = BlockPool::new(limits.pool_blocks, knobs.prefix_cache);
    let mut tracks: Vec<Track> = (0..n)
        .map(|_| Track {
            arrival_ns: None,
            admitted_ns: None,
            token_ns: Vec::new(),
            finished_ns: None,
            status: None,
        })
        .collect();
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut next_arrival = 0usize;
    // Closed loop: when each free slot freed (all at run start initially). A request takes the
    // oldest free slot and its arrival time is the moment that slot freed, so time spent
    // finishing the step that freed it counts against the request, as a client would see it.
    let mut free_slots: VecDeque<u64> = match concurrency {
        Some(cc) => std::iter::repeat_n(0, cc.min(n.max(1))).collect(),
        None => VecDeque::new(),
    };
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut running: Vec<Seq> = Vec::new();
    let mut finished = 0usize;
    let mut c = Counters::default();
    let mut steps: Vec<StepRecord> = Vec::new();

    while finished < n {
        // A stop (Ctrl-C, time budget) takes effect before the next step, not at the end of the
        // run: a long run at high concurrency would otherwise keep the user waiting for minutes.
        if options.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        // Arrivals (a rejection frees a closed-loop slot at once, so loop until stable).
        let mut finished_now = Vec::new();
        loop {
            let t = now();
            // Open loop: the scheduled time (the engine may notice it only at a step boundary,
            // and that wait is part of the request's latency).
            let arrival = match concurrency {
                _ if next_arrival >= n => None,
                Some(_) => free_slots.pop_front(),
                None => Some(arrival_at(next_arrival)).filter(|a| *a <= t),
            };
            let Some(arrival) = arrival else {
                break;
            };
            let i = next_arrival;
            next_arrival += 1;
            tracks[i].arrival_ns = Some(arrival);
            match reject_reason(&requests[i], knobs, limits) {
                Some(reason) => {
                    tracks[i].status = Some(RequestStatus::Rejected { reason });
                    tracks[i].finished_ns = Some(t);
                    c.rejected += 1;
                    if concurrency.is_some() {
                        free_slots.push_back(t);
                    }
                    finished += 1;
                    finished_now.push(i);
                }
                None if requests[i].output_tokens == 0 => {
                    tracks[i].admitted_ns = Some(t);
                    tracks[i].status = Some(RequestStatus::Ok);
                    tracks[i].finished_ns = Some(t);
                    if concurrency.is_some() {
                        free_slots.push_back(t);
                    }
                    finished += 1;
                    finished_now.push(i);
                }
                None => waiting.push_back(i),
            }
        }
        for i in finished_now {
            progress(&EngineEvent::RequestDone {
                id: requests[i].id,
                ok: tracks[i].status.as_ref().is_some_and(RequestStatus::is_ok),
            });
        }
        if finished >= n {
            break;
        }
        if running.is_empty() && waiting.is_empty() {
            // Open loop with nothing to do: wait for the next arrival.
            // Sleep in short slices so a cancellation is noticed promptly.
            let wait = arrival_at(next_arrival).saturating_sub(now());
            std::thread::sleep(Duration::from_nanos(wait.min(20_000_000)));
            continue;
        }

        // Admission.
        let step_start = now();
        let decoding_before = running
            .iter()
            .filter(|s| s.prefilled == requests[s.req].prompt.len())
            .count();
        let mut admitted = 0usize;
        let mut blocked = false;
        while let Some(&i) = waiting.front() {
            if running.len() >= knobs.max_sequences {
                break;
            }
            let prompt = &requests[i].prompt;
            if knobs.admission == AdmissionPolicy::PromptTokenEstimate {
                let pending: usize = running
                    .iter()
                    .map(|s| requests[s.req].prompt.len() - s.prefilled)
                    .sum();
                let budget = knobs.max_batched_tokens.saturating_sub(decoding_before);
                if pending > 0 && pending + prompt.len() > budget {
                    break;
                }
            }
            let Some(res) = pool.reserve(prompt, limits.blocks_per_seq) else {
                blocked = true;
                break;
            };
            waiting.pop_front();
            let shared_tokens = res.shared_blocks * BLOCK_SIZE;
            c.prefix_hit_tokens += shared_tokens as u64;
            let chunk_limit = match knobs.admission {
                AdmissionPolicy::ActiveDecodePrefillChunk(limit) if decoding_before > 0 => {
                    Some(limit)
                }
                AdmissionPolicy::PrefillFirstUntilActive { step_chunk, .. } => step_chunk,
                _ => None,
            };
            tracks[i].admitted_ns = Some(step_start);
            running.push(Seq {
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
            c.blocked_by_kv += 1;
        }
        c.peak_running = c.peak_running.max(running.len());
        c.peak_kv_blocks = c.peak_kv_blocks.max(pool.in_use());

        // Step composition.
        let is_decoding = |s: &Seq| s.prefilled == requests[s.req].prompt.len();
        let decoding: Vec<usize> = (0..running.len())
            .filter(|&k| is_decoding(&running[k]))
            .collect();
        let prefilling: Vec<usize> = (0..running.len())
            .filter(|&k| !is_decoding(&running[k]))
            .collect();
        let prefill_only = match knobs.admission {
            AdmissionPolicy::PrefillFirstUntilActive { until, .. } => {
                decoding.len() < until && !prefilling.is_empty()
            }
            _ => false,
        };
        let decode_part: Vec<usize> = if prefill_only { Vec::new() } else { decoding };
        let mut budget = knobs.max_batched_tokens.saturating_sub(decode_part.len());
        let mut prefill_part: Vec<(usize, usize)> = Vec::new();
        for k in prefilling {
            let s = &running[k];
            let remaining = requests[s.req].prompt.len() - s.prefilled;
            let chunk = remaining
                .min(budget)
                .min(s.chunk_limit.unwrap_or(usize::MAX));
            if chunk == 0 {
                break;
            }
            budget -= chunk;
            prefill_part.push((k, chunk));
        }
        let decode_item = |s: &Seq| FwdItem {
            blocks: s.blocks.clone(),
            start_pos: requests[s.req].prompt.len() + s.generated.len() - 1,
            tokens: vec![*s
                .generated
                .last()
                .expect("a decoding sequence has sampled a token")],
            want_logits: true,
        };
        let prefill_item = |s: &Seq, chunk: usize| {
            let p = &requests[s.req].prompt;
            FwdItem {
                blocks: s.blocks.clone(),
                start_pos: s.prefilled,
                tokens: p[s.prefilled..s.prefilled + chunk]
                    .iter()
                    .map(|t| t % vocab as u32)
                    .collect(),
                want_logits: s.prefilled + chunk == p.len(),
            }
        };
        let prefill_moe = |rows: usize| {
            if rows >= knobs.moe_prefill_threshold {
                MoePath::Grouped
            } else {
                MoePath::PerToken
            }
        };
        // (call, sequence index per item)
        let mut calls: Vec<(FwdCall, Vec<usize>)> = Vec::new();
        let mut moe_path = "none";
        let unified = !prefill_part.is_empty()
            && knobs.qwen_unified_prefill
            && !(decode_part.is_empty() && prefill_part.len() == 1);
        if unified {
            let mut items: Vec<FwdItem> = decode_part
                .iter()
                .map(|&k| decode_item(&running[k]))
                .collect();
            items.extend(
                prefill_part
                    .iter()
                    .map(|&(k, chunk)| prefill_item(&running[k], chunk)),
            );
            let rows = items.iter().map(|it| it.tokens.len()).sum();
            let owners = decode_part
                .iter()
                .copied()
                .chain(prefill_part.iter().map(|p| p.0))
                .collect();
            calls.push((
                FwdCall {
                    items,
                    moe: prefill_moe(rows),
                },
                owners,
            ));
            c.unified_steps += 1;
            if !decode_part.is_empty() {
                moe_path = "unified";
            }
        } else {
            if !decode_part.is_empty() {
                c.decode_steps += 1;
                if knobs.batched_decode(decode_part.len()) {
                    c.batched_decode_steps += 1;
                    moe_path = "batched";
                    let items = decode_part
                        .iter()
                        .map(|&k| decode_item(&running[k]))
                        .collect();
                    calls.push((
                        FwdCall {
                            items,
                            moe: MoePath::Grouped,
                        },
                        decode_part.clone(),
                    ));
                } else {
                    moe_path = "per_item";
                    for &k in &decode_part {
                        calls.push((
                            FwdCall {
                                items: vec![decode_item(&running[k])],
                                moe: MoePath::PerToken,
                            },
                            vec![k],
                        ));
                    }
                }
            }
            for &(k, chunk) in &prefill_part {
                calls.push((
                    FwdCall {
                        items: vec![prefill_item(&running[k], chunk)],
                        moe: prefill_moe(chunk),
                    },
                    vec![k],
                ));
            }
        }
        if unified && !decode_part.is_empty() {
            c.decode_steps += 1;
        }

        // Execute and sample.
        let fwd: Vec<FwdCall> = calls.iter().map(|(call, _)| call.clone()).collect();
        let results = exec.execute(&fwd)?;
        c.forward_calls += fwd.len() as u64;
        let t_done = now();
        let mut stats = FwdStats::default();
        let mut new_tokens = 0usize;
        let prefill_tokens: usize = prefill_part.iter().map(|p| p.1).sum();
        for ((call, owners), res) in calls.iter().zip(&results) {
            stats.merge(&res.stats);
            let mut logits = res.logits.iter();
            for (item, &k) in call.items.iter().zip(owners) {
                let s = &mut running[k];
                let plen = requests[s.req].prompt.len();
                if s.prefilled < plen {
                    s.prefilled += item.tokens.len();
                    // Offer newly completed full prompt blocks to the prefix cache.
                    while (s.registered + 1) * BLOCK_SIZE <= s.prefilled {
                        pool.register_prefix_block(
                            &requests[s.req].prompt,
                            s.registered,
                            s.blocks[s.registered],
                        );
                        s.registered += 1;
                    }
                }
                if item.want_logits {
                    let row = logits.next().ok_or_else(|| {
                        EngineError::Fault("forward returned too few logits rows".to_string())
                    })?;
                    let tok = sample(row, &knobs.sampling_readback_path);
                    s.generated.push(tok);
                    tracks[s.req].token_ns.push(t_done);
                    new_tokens += 1;
                }
            }
        }
        // Retire finished sequences.
        let mut done_now = Vec::new();
        running.retain(|s| {
            if s.generated.len() >= requests[s.req].output_tokens {
                pool.release(&s.blocks);
                done_now.push((s.req, s.generated.clone()));
                false
            } else {
                true
            }
        });
        for (i, toks) in &done_now {
            tracks[*i].status = Some(RequestStatus::Ok);
            tracks[*i].finished_ns = Some(t_done);
            outputs[*i] = toks.clone();
            if concurrency.is_some() {
                free_slots.push_back(t_done);
            }
            finished += 1;
        }
        c.steps += 1;
        c.decode_tokens += decode_part.len() as u64;
        c.prefill_tokens += prefill_tokens as u64;
        c.output_tokens += new_tokens as u64;
        c.expert_loads += stats.expert_loads;
        let distinct = stats.mean_distinct_experts();
        c.distinct_experts_sum += distinct;
        if options.record_steps {
            steps.push(StepRecord {
                step: c.steps - 1,
                start_ns: step_start,
                duration_ns: t_done - step_start,
                prefill_tokens,
                decode_tokens: decode_part.len(),
                sequences: decode_part.len() + prefill_part.len(),
                moe_path: moe_path.to_string(),
                distinct_experts: distinct,
                kv_blocks_in_use: pool.in_use(),
                waiting: waiting.len(),
                admitted,
                finished: done_now.len(),
            });
        }
        if new_tokens > 0 {
            progress(&EngineEvent::Tokens { count: new_tokens });
        }
        for (i, _) in &done_now {
            progress(&EngineEvent::RequestDone {
                id: requests[*i].id,
                ok: true,
            });
        }
        if decode_part.is_empty() && prefill_part.is_empty() && done_now.is_empty() && admitted == 0
        {
            return Err(EngineError::Fault(format!(
                "scheduler stalled: {} running, {} waiting, {} of {} KV blocks in use",
                running.len(),
                waiting.len(),
                pool.in_use(),
                pool.total()
            )));
        }
    }

    let duration_ns = now();
    let requests_out = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let t = &tracks[i];
            RequestTrace {
                id: r.id,
                status: t.status.clone().unwrap_or(RequestStatus::Failed {
                    reason: "run ended before completion".to_string(),
                }),
                prompt_tokens: r.prompt.len(),
                arrival_ns: t.arrival_ns.unwrap_or(duration_ns),
                admitted_ns: t.admitted_ns,
                token_ns: t.token_ns.clone(),
                finished_ns: t.finished_ns.unwrap_or(duration_ns),
                output_ids: outputs[i].clone(),
            }
        })
        .collect();
    let mut counters = BTreeMap::new();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    for (k, v) in [
        ("steps", c.steps as f64),
        ("decode_steps", c.decode_steps as f64),
        ("batched_decode_steps", c.batched_decode_steps as f64),
        (
            "batched_decode_step_share",
            ratio(c.batched_decode_steps as f64, c.decode_steps as f64),
        ),
        ("unified_prefill_steps", c.unified_steps as f64),
        (
            "mean_decode_batch",
            ratio(c.decode_tokens as f64, c.decode_steps as f64),
        ),
        ("decode_tokens", c.decode_tokens as f64),
        ("prefill_tokens", c.prefill_tokens as f64),
        ("output_tokens", c.output_tokens as f64),
        ("peak_kv_blocks", c.peak_kv_blocks as f64),
        ("peak_running_sequences", c.peak_running as f64),
        ("admissions_blocked_by_kv", c.blocked_by_kv as f64),
        ("prefix_cache_hits", pool.hits as f64),
        ("prefix_cache_hit_tokens", c.prefix_hit_tokens as f64),
        ("forward_calls", c.forward_calls as f64),
        ("expert_weight_loads", c.expert_loads as f64),
        (
            "mean_distinct_experts",
            ratio(c.distinct_experts_sum, c.steps as f64),
        ),
        ("rejected_requests", c.rejected as f64),
        ("kv_pool_blocks", limits.pool_blocks as f64),
        ("kv_blocks_per_sequence", limits.blocks_per_seq as f64),
        ("kv_capacity_tokens", limits.kv_capacity as f64),
    ] {
        counters.insert(k.to_string(), v);
    }
    Ok(RunOutput {
        requests: requests_out,
        duration_ns,
        counters,
        steps,
    })
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

/// Greedy argmax (lowest index wins ties). `logits_readback` first copies the row out, as a
/// device→host readback would; `gpu_greedy_argmax` reduces in place.
fn sample(row: &[f32], readback_path: &str) -> u32 {
    let argmax = |r: &[f32]| {
        let mut best = 0usize;
        for (i, v) in r.iter().enumerate() {
            if *v > r[best] {
                best = i;
            }
        }
        best as u32
    };
    if readback_path == "logits_readback" {
        let host = row.to_vec();
        argmax(&host)
    } else {
        argmax(row)
    }
}
