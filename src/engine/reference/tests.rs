//! Engine-level tests of the reference engine: knob paths give the same greedy tokens, KV
//! limits hold, seeds are reproducible. Tiny dimensions keep the suite fast.

use serde_json::{json, Value};

use super::kv::LayerKv;
use super::model::{FwdCall, FwdItem, FwdStats, Model, MoePath};
use super::{EngineKnobs, EngineSpec, EngineTable, ReferenceEngine};
use crate::engine::{
    Engine, EngineError, EngineRequest, LoadSpec, RequestStatus, RunOptions, RunOutput,
};

fn tiny_moe(seed: u64) -> EngineSpec {
    let t = EngineTable {
        hidden_size: Some(64),
        num_layers: Some(2),
        num_heads: Some(8),
        num_kv_heads: Some(2),
        head_dim: Some(8),
        num_experts: Some(16),
        experts_per_token: Some(4),
        moe_intermediate_size: Some(32),
        vocab_size: Some(256),
        quant_group_size: Some(32),
        weight_seed: Some(seed),
        threads: Some(2),
        ..Default::default()
    };
    EngineSpec::resolve(Some(&t), "qwen3_moe").unwrap()
}

fn tiny_dense() -> EngineSpec {
    let t = EngineTable {
        hidden_size: Some(64),
        num_layers: Some(4),
        num_heads: Some(8),
        num_kv_heads: Some(1),
        head_dim: Some(8),
        intermediate_size: Some(128),
        vocab_size: Some(256),
        quant_group_size: Some(32),
        threads: Some(2),
        ..Default::default()
    };
    EngineSpec::resolve(Some(&t), "qwen2").unwrap()
}

/// An effective-config document with these entries and decisions.
fn doc(entries: &[(&str, &str)], decisions: &[(&str, &str)]) -> Value {
    json!({
        "entries": entries.iter().map(|(k, v)| json!({"key": k, "effective_value": v})).collect::<Vec<_>>(),
        "decisions": decisions.iter().map(|(s, v)| json!({"selection": s, "selected": v})).collect::<Vec<_>>(),
    })
}

fn knobs(entries: &[(&str, &str)], decisions: &[(&str, &str)]) -> EngineKnobs {
    EngineKnobs::from_effective_config(&doc(entries, decisions)).unwrap()
}

/// `n` requests with pseudo-random prompts of 20..52 tokens (ids spread over the vocabulary).
fn requests(n: usize, output: usize) -> Vec<EngineRequest> {
    (0..n)
        .map(|i| EngineRequest {
            id: i as u64,
            prompt: (0..20 + (i * 7) % 33)
                .map(|j| ((i * 131 + j * 17 + 5) % 251) as u32)
                .collect(),
            output_tokens: output,
        })
        .collect()
}

fn run(spec: &EngineSpec, k: &EngineKnobs, reqs: &[EngineRequest], load: LoadSpec) -> RunOutput {
    let mut e = ReferenceEngine::new(spec, k).unwrap();
    e.run(
        reqs,
        &load,
        &RunOptions {
            record_steps: true,
            ..RunOptions::default()
        },
        &mut |_| {},
    )
    .unwrap()
}

fn outputs(out: &RunOutput) -> Vec<Vec<u32>> {
    out.requests.iter().map(|r| r.output_ids.clone()).collect()
}

fn closed(c: usize) -> LoadSpec {
    LoadSpec::Closed { concurrency: c }
}

#[test]
fn batched_and_per_item_decode_agree_over_64_steps() {
    let spec = tiny_moe(1);
    let model = Model::new(&spec);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let bps = 8; // 128 positions per sequence
    let seqs = 8;
    let new_kv = || -> Vec<LayerKv> {
        (0..spec.num_layers)
            .map(|_| LayerKv::new(seqs * bps, spec.num_kv_heads * spec.head_dim, spec.dtype))
            .collect()
    };
    let (mut kv_a, mut kv_b) = (new_kv(), new_kv());
    let reqs = requests(seqs, 0);
    let blocks =
        |i: usize| -> Vec<u32> { (0..bps as u32).map(|b| i as u32 * bps as u32 + b).collect() };
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold(0, |b, (i, x)| if *x > v[b] { i } else { b }) as u32
    };
    let mut last = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let call = FwdCall {
            items: vec![FwdItem {
                blocks: blocks(i),
                start_pos: 0,
                tokens: r.prompt.clone(),
                want_logits: true,
            }],
            moe: MoePath::Grouped,
        };
        let la = pool.install(|| model.forward(&mut kv_a, &call, &mut FwdStats::default()));
        let lb = pool.install(|| model.forward(&mut kv_b, &call, &mut FwdStats::default()));
        assert_eq!(la, lb);
        last.push(argmax(&la[0]));
    }
    let mut max_diff = 0f32;
    for step in 0..64 {
        let items: Vec<FwdItem> = (0..seqs)
            .map(|i| FwdItem {
                blocks: blocks(i),
                start_pos: reqs[i].prompt.len() + step,
                tokens: vec![last[i]],
                want_logits: true,
            })
            .collect();
        let batched = FwdCall {
            items: items.clone(),
            moe: MoePath::Grouped,
        };
        let la = pool.install(|| model.forward(&mut kv_a, &batched, &mut FwdStats::default()));
        let lb: Vec<Vec<f32>> = items
            .into_iter()
            .map(|it| {
                let call = FwdCall {
                    items: vec![it],
                    moe: MoePath::PerToken,
                };
                pool.install(|| model.forward(&mut kv_b, &call, &mut FwdStats::default()))
                    .remove(0)
            })
            .collect();
        for i in 0..seqs {
            for (a, b) in la[i].iter().zip(&lb[i]) {
                max_diff = max_diff.max((a - b).abs());
            }
            let (ta, tb) = (argmax(&la[i]), argmax(&lb[i]));
            assert_eq!(ta, tb, "step {step} sequence {i}");
            last[i] = ta;
        }
    }
    assert!(max_diff <= 1e-4, "max logit difference {max_diff}");
}

#[test]
fn decode_threshold_switches_path_without_changing_tokens() {
    let spec = tiny_moe(2);
    let reqs = requests(8, 24);
    let a = run(
        &spec,
        &knobs(&[("FERRUM_MOE_BATCH_THRESHOLD", "4")], &[]),
        &reqs,
        closed(8),
    );
    let b = run(
        &spec,
        &knobs(&[("FERRUM_MOE_BATCH_THRESHOLD", "64")], &[]),
        &reqs,
        closed(8),
    );
    assert_eq!(outputs(&a), outputs(&b));
    assert!(a.counters["batched_decode_step_share"] > 0.5);
    assert_eq!(b.counters["batched_decode_step_share"], 0.0);
    assert!(a.counters["expert_weight_loads"] < b.counters["expert_weight_loads"]);
    assert!(a
        .requests
        .iter()
        .all(|r| r.status.is_ok() && r.output_ids.len() == 24 && r.token_ns.len() == 24));
}

#[test]
fn unified_and_serial_prefill_give_identical_tokens() {
    let spec = tiny_moe(3);
    let reqs = requests(6, 16);
    let a = run(&spec, &knobs(&[], &[]), &reqs, closed(6));
    let b = run(
        &spec,
        &knobs(&[("FERRUM_QWEN_UNIFIED_PREFILL", "0")], &[]),
        &reqs,
        closed(6),
    );
    assert_eq!(outputs(&a), outputs(&b));
    assert!(a.counters["unified_prefill_steps"] > 0.0);
    assert_eq!(b.counters["unified_prefill_steps"], 0.0);
    assert!(a.counters["forward_calls"] < b.counters["forward_calls"]);
}

#[test]
fn layer_split_batch_overlapped_and_no_split_give_identical_tokens() {
    let plan = json!("stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79");
    for spec in [tiny_dense(), tiny_moe(4)] {
        let reqs = requests(6, 20);
        let base = run(&spec, &knobs(&[], &[]), &reqs, closed(6));
        for (mode, mb) in [("batch", 6), ("overlapped", 2)] {
            let mut d = doc(&[], &[]);
            d["selected_layer_split_plan"] = plan.clone();
            d["selected_pipeline_mode"] = json!(mode);
            d["selected_microbatch_size"] = json!(mb);
            let k = EngineKnobs::from_effective_config(&d).unwrap();
            let out = run(&spec, &k, &reqs, closed(6));
            assert_eq!(
                outputs(&out),
                outputs(&base),
                "{mode} on {:?}",
                spec.architecture
            );
        }
    }
}

#[test]
fn prefix_cache_hits_on_shared_prefixes_without_changing_tokens() {
    let spec = tiny_moe(5);
    let shared: Vec<u32> = (0..40).map(|j| (j * 13 % 250) as u32).collect();
    let reqs: Vec<EngineRequest> = (0..6)
        .map(|i| {
            let mut prompt = shared.clone();
            prompt.extend((0..5 + i).map(|j| ((i * 31 + j) % 250) as u32));
            EngineRequest {
                id: i as u64,
                prompt,
                output_tokens: 12,
            }
        })
        .collect();
    // Concurrency 1: each request runs after the previous one registered the shared blocks.
    let off = run(&spec, &knobs(&[], &[]), &reqs, closed(1));
    let on = run(
        &spec,
        &knobs(&[("FERRUM_PREFIX_CACHE", "1")], &[]),
        &reqs,
        closed(1),
    );
    assert_eq!(outputs(&on), outputs(&off));
    assert_eq!(off.counters["prefix_cache_hits"], 0.0);
    // Two full shared blocks (32 of the 40 shared tokens) for each of the 5 later requests.
    assert_eq!(on.counters["prefix_cache_hits"], 10.0);
    assert!(on.counters["prefill_tokens"] < off.counters["prefill_tokens"]);
}

#[test]
fn same_seed_reproduces_and_other_seed_differs() {
    let reqs = requests(4, 16);
    let a = run(&tiny_moe(7), &knobs(&[], &[]), &reqs, closed(4));
    let b = run(&tiny_moe(7), &knobs(&[], &[]), &reqs, closed(4));
    let c = run(&tiny_moe(8), &knobs(&[], &[]), &reqs, closed(4));
    assert_eq!(outputs(&a), outputs(&b));
    assert_ne!(outputs(&a), outputs(&c));
}

#[test]
fn paged_max_seqs_bounds_sequences_holding_kv() {
    let spec = tiny_moe(9);
    let reqs = requests(8, 10);
    let k = knobs(
        &[
            ("FERRUM_PAGED_MAX_SEQS", "2"),
            ("FERRUM_KV_CAPACITY", "128"),
        ],
        &[],
    );
    let out = run(&spec, &k, &reqs, closed(8));
    let per_seq = out.counters["kv_blocks_per_sequence"] as usize;
    assert_eq!(per_seq, 8);
    assert_eq!(out.counters["kv_pool_blocks"], 16.0);
    assert!(out
        .steps
        .iter()
        .all(|s| s.kv_blocks_in_use <= 2 * per_seq && s.sequences <= 2));
    assert!(out.counters["peak_running_sequences"] <= 2.0);
    assert!(out
        .requests
        .iter()
        .all(|r| r.status.is_ok() && r.output_ids.len() == 10));

    // A kv_block_count cap below PAGED_MAX_SEQS × blocks/seq: admission waits for KV instead.
    let k = knobs(
        &[
            ("FERRUM_PAGED_MAX_SEQS", "8"),
            ("FERRUM_KV_CAPACITY", "128"),
        ],
        &[("kv_block_count", "16")],
    );
    let out = run(&spec, &k, &reqs, closed(8));
    assert!(out
        .steps
        .iter()
        .all(|s| s.kv_blocks_in_use <= 2 * per_seq && s.sequences <= 2));
    assert!(out.counters["admissions_blocked_by_kv"] > 0.0);
    assert!(out
        .requests
        .iter()
        .all(|r| r.status.is_ok() && r.output_ids.len() == 10));
}

#[test]
fn impossible_requests_are_rejected_with_reasons() {
    let spec = tiny_moe(10);
    let mut reqs = requests(3, 8);
    reqs[1].prompt = vec![1; 125];
    reqs[2].output_tokens = 60;
    let k = knobs(&[("FERRUM_KV_CAPACITY", "128")], &[("max_model_len", "64")]);
    let out = run(&spec, &k, &reqs, closed(2));
    assert!(out.requests[0].status.is_ok());
    let reason = |i: usize| match &out.requests[i].status {
        RequestStatus::Rejected { reason } => reason.clone(),
        other => panic!("request {i} not rejected: {other:?}"),
    };
    assert!(reason(1).contains("prompt of 125 tokens + 8 output exceeds KV capacity of 128 tokens"));
    assert!(reason(2).contains("exceeds max_model_len of 64 tokens"));
    assert!(out.requests[1].admitted_ns.is_none() && out.requests[1].output_ids.is_empty());
}

#[test]
fn admission_policies_change_schedules_not_tokens() {
    let spec = tiny_moe(11);
    let reqs = requests(8, 12);
    let base = run(
        &spec,
        &knobs(&[], &[("max_batched_tokens", "64")]),
        &reqs,
        closed(4),
    );
    for policy in [
        "prefill_first_until_active:4",
        "active_decode_prefill_chunk:8",
        "prompt_token_estimate",
    ] {
        let out = run(
            &spec,
            &knobs(
                &[],
                &[
                    ("max_batched_tokens", "64"),
                    ("scheduler_admission_policy", policy),
                ],
            ),
            &reqs,
            closed(4),
        );
        assert_eq!(outputs(&out), outputs(&base), "{policy}");
        assert!(
            out.steps
                .iter()
                .all(|s| s.prefill_tokens + s.decode_tokens <= 64),
            "{policy}"
        );
        if policy.starts_with("active_decode") {
            // While anything decodes, a late admission prefills at most 8 tokens per step.
            assert!(out
                .steps
                .iter()
                .filter(|s| s.decode_tokens > 0 && s.sequences == s.decode_tokens + 1)
                .all(|s| s.prefill_tokens <= 8));
        }
    }
}

#[test]
fn open_loop_honours_arrival_times_and_traces_are_monotonic() {
    let spec = tiny_moe(12);
    let reqs = requests(4, 6);
    let arrivals = vec![0.0, 0.0, 0.02, 0.05];
    let out = run(
        &spec,
        &knobs(&[], &[]),
        &reqs,
        LoadSpec::Open {
            arrivals_s: arrivals.clone(),
        },
    );
    for (r, a) in out.requests.iter().zip(&arrivals) {
        assert_eq!(r.arrival_ns, (a * 1e9) as u64);
        let adm = r.admitted_ns.unwrap();
        assert!(adm >= r.arrival_ns && r.token_ns[0] >= adm);
        assert!(r.token_ns.windows(2).all(|w| w[0] <= w[1]));
        assert!(r.finished_ns >= *r.token_ns.last().unwrap() && r.finished_ns <= out.duration_ns);
    }
    let bad = ReferenceEngine::new(&spec, &knobs(&[], &[])).unwrap().run(
        &reqs,
        &LoadSpec::Open {
            arrivals_s: vec![0.0],
        },
        &RunOptions::default(),
        &mut |_| {},
    );
    assert!(
        matches!(bad, Err(EngineError::Config(m)) if m.contains("1 arrival times for 4 requests"))
    );
}

#[test]
fn closed_loop_keeps_concurrency_and_reports_progress() {
    let spec = tiny_moe(13);
    let reqs = requests(6, 5);
    let mut e = ReferenceEngine::new(&spec, &knobs(&[], &[])).unwrap();
    let (mut tokens, mut done) = (0, 0);
    let out = e
        .run(
            &reqs,
            &closed(2),
            &RunOptions::default(),
            &mut |ev| match ev {
                crate::engine::EngineEvent::Tokens { count } => tokens += count,
                crate::engine::EngineEvent::RequestDone { ok, .. } => done += usize::from(*ok),
            },
        )
        .unwrap();
    assert_eq!((tokens, done), (30, 6));
    assert!(out.counters["peak_running_sequences"] <= 2.0);
    assert!(out.steps.is_empty());
    // Request 2 arrives exactly when an earlier one finished and freed its slot.
    let first_finish = out.requests[..2]
        .iter()
        .map(|r| r.finished_ns)
        .min()
        .unwrap();
    assert_eq!(out.requests[2].arrival_ns, first_finish);
    assert_eq!(
        (out.requests[0].arrival_ns, out.requests[1].arrival_ns),
        (0, 0)
    );
    let info = e.info();
    assert_eq!(info.kind, "reference");
    assert_eq!(info.details["num_experts"], json!(16));
    assert!(info.details["weight_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn fp16_storage_runs_and_stays_close_to_fp32() {
    let mut spec = tiny_moe(14);
    let reqs = requests(3, 8);
    let a = run(&spec, &knobs(&[], &[]), &reqs, closed(3));
    spec.dtype = super::spec::Dtype::Fp16;
    let b = run(&spec, &knobs(&[], &[]), &reqs, closed(3));
    assert!(b
        .requests
        .iter()
        .all(|r| r.status.is_ok() && r.output_ids.len() == 8));
    // Same first token for most requests: f16 rounding perturbs, it does not scramble.
    let same = a
        .requests
        .iter()
        .zip(&b.requests)
        .filter(|(x, y)| x.output_ids[0] == y.output_ids[0])
        .count();
    assert!(same >= 2);
}

#[test]
fn undersized_kv_pool_is_a_config_error() {
    let k = knobs(&[("FERRUM_KV_CAPACITY", "512")], &[("kv_block_count", "8")]);
    let err = ReferenceEngine::new(&tiny_moe(15), &k).unwrap_err();
    assert!(
        matches!(err, EngineError::Config(m) if m.contains("cannot hold one sequence's reservation of 32 blocks"))
    );
}

#[test]
fn default_specs_instantiate_and_run_split_and_unsplit() {
    for arch in ["qwen3_moe", "qwen2"] {
        let spec = EngineSpec::resolve(None, arch).unwrap();
        let reqs = requests(2, 3);
        let base = run(&spec, &knobs(&[], &[]), &reqs, closed(2));
        let mut d = doc(&[], &[]);
        d["selected_layer_split_plan"] =
            json!("stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79");
        d["selected_pipeline_mode"] = json!("overlapped");
        d["selected_microbatch_size"] = json!(1);
        let split = run(
            &spec,
            &EngineKnobs::from_effective_config(&d).unwrap(),
            &reqs,
            closed(2),
        );
        assert_eq!(outputs(&split), outputs(&base), "{arch}");
        assert!(base
            .requests
            .iter()
            .all(|r| r.status.is_ok() && r.output_ids.len() == 3));
    }
}

#[test]
fn cancellation_stops_the_run_within_a_step() {
    let spec = tiny_moe(17);
    let reqs = requests(6, 40);
    let mut e = ReferenceEngine::new(&spec, &knobs(&[], &[])).unwrap();
    let options = RunOptions::default();
    let cancel = options.cancel.clone();
    let mut tokens = 0usize;
    let out = e.run(&reqs, &closed(2), &options, &mut |ev| {
        if let crate::engine::EngineEvent::Tokens { count } = ev {
            tokens += count;
            // Raise the signal after the first decoded tokens: the run must stop at the next
            // step, long before the 240 tokens the requests ask for.
            cancel.cancel();
        }
    });
    assert!(matches!(out, Err(EngineError::Cancelled)), "{out:?}");
    assert!(
        tokens > 0 && tokens < 240,
        "{tokens} tokens before the stop"
    );
}
