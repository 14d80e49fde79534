//! The two-stage layer split of the CUDA backend: each stage on its own worker thread with its
//! own device executor (weights of its layers, their KV pools, workspace, stream), fed through
//! channels exactly as the CPU split (`layer_split.rs`) feeds its stages:
//!
//! - `batch`: every forward call goes through stage 0, then stage 1, before the next starts;
//! - `overlapped`: calls are cut into microbatches of at most `selected_microbatch_size`
//!   sequences; stage 0 hands microbatch `i` to stage 1 through a rendezvous channel and starts
//!   on `i + 1` while stage 1 works on `i`, so both devices (or both streams of one device) work.
//!
//! The hidden rows cross as a host `Vec<f32>` ([`super::stages::HANDOFF`]): stage 0 reads them
//! back after its last layer, stage 1 uploads them before its first. The machinery is generic
//! over [`StageWork`] so it is tested on the CPU with CPU-model stages; the CUDA executor
//! implements it on a device.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use crate::engine::reference::executor::{CallResult, Executor};
use crate::engine::reference::knobs::PipelineMode;
use crate::engine::reference::layer_split::panic_message;
use crate::engine::reference::model::{FwdCall, FwdStats};
use crate::engine::EngineError;

/// What a stage produced for one call or microbatch.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutput {
    /// Hidden rows (`rows × hidden`, f32) for the next stage.
    Hidden(Vec<f32>),
    /// The last stage's sampled tokens, and its logits rows when it keeps them (tests).
    Tokens {
        /// One id per row that wants logits.
        tokens: Vec<u32>,
        /// `logit rows × vocab`, or empty.
        logits: Vec<f32>,
    },
}

/// One stage of a split forward.
pub trait StageWork: Send {
    /// Runs this stage's part of `call`: from the token ids (first stage) or from `hidden`
    /// (the previous stage's rows), adding this stage's layers' expert usage to `stats`.
    fn run_stage(
        &mut self,
        call: &FwdCall,
        hidden: &[f32],
        stats: &mut FwdStats,
    ) -> Result<StageOutput, EngineError>;

    /// Layers this stage runs (for error messages).
    fn layer_range(&self) -> std::ops::Range<usize>;
}

/// Work travelling through the stages.
struct Job {
    id: usize,
    call: FwdCall,
    x: Vec<f32>,
    logits: Vec<f32>,
    result: CallResult,
}

type Msg = Result<Job, EngineError>;

/// The executor the scheduler drives: sends calls (or microbatches) to stage 0 and collects
/// them from the last stage.
pub struct SplitExec {
    to_stage0: mpsc::Sender<Msg>,
    from_last: mpsc::Receiver<Msg>,
    mode: PipelineMode,
    microbatch: usize,
    /// Logits rows of the last `execute`'s calls, in item order, when the last stage keeps them.
    pub last_logits: Vec<f32>,
}

impl SplitExec {
    fn recv(&self) -> Result<Job, EngineError> {
        match self.from_last.recv() {
            Ok(msg) => msg,
            Err(_) => Err(EngineError::Fault(
                "a CUDA layer-split stage worker stopped unexpectedly".to_string(),
            )),
        }
    }

    fn send(&self, id: usize, call: FwdCall) -> Result<(), EngineError> {
        let job = Job {
            id,
            call,
            x: Vec::new(),
            logits: Vec::new(),
            result: CallResult::default(),
        };
        self.to_stage0
            .send(Ok(job))
            .map_err(|_| EngineError::Fault("CUDA layer-split stage 0 is gone".to_string()))
    }
}

impl Executor for SplitExec {
    fn execute(&mut self, calls: &[FwdCall]) -> Result<Vec<CallResult>, EngineError> {
        let mut results: Vec<CallResult> = vec![CallResult::default(); calls.len()];
        self.last_logits.clear();
        match self.mode {
            PipelineMode::Overlapped => {
                // Job ids are (call, microbatch) in order, so sorting restores item order.
                let mut owner = Vec::new();
                for (ci, call) in calls.iter().enumerate() {
                    for chunk in call.items.chunks(self.microbatch.max(1)) {
                        let id = owner.len();
                        owner.push(ci);
                        let part = FwdCall {
                            items: chunk.to_vec(),
                            moe: call.moe,
                        };
                        self.send(id, part)?;
                    }
                }
                // Receive every microbatch before returning an error, so none is left in the
                // channel to be mistaken for the next call's.
                let got: Vec<Result<Job, EngineError>> =
                    (0..owner.len()).map(|_| self.recv()).collect();
                let mut done: Vec<Job> = got.into_iter().collect::<Result<_, _>>()?;
                done.sort_by_key(|j| j.id);
                for job in done {
                    let r = &mut results[owner[job.id]];
                    r.tokens.extend(job.result.tokens);
                    r.stats.merge(&job.result.stats);
                    self.last_logits.extend(job.logits);
                }
            }
            PipelineMode::Batch | PipelineMode::Sequential => {
                for (ci, call) in calls.iter().enumerate() {
                    self.send(ci, call.clone())?;
                    let job = self.recv()?;
                    self.last_logits.extend(job.logits);
                    results[ci] = job.result;
                }
            }
        }
        Ok(results)
    }
}

enum StageOut {
    Next(mpsc::SyncSender<Msg>),
    Done(mpsc::Sender<Msg>),
}

/// One stage worker: receives jobs, runs its stage, passes them on. A panic or an error
/// travels to the caller as the job's error.
fn stage_loop<S: StageWork + ?Sized>(stage: &mut S, rx: mpsc::Receiver<Msg>, tx: StageOut) {
    let layers = stage.layer_range();
    for msg in rx {
        let out = msg.and_then(|mut job| {
            let ran = catch_unwind(AssertUnwindSafe(|| {
                stage.run_stage(&job.call, &job.x, &mut job.result.stats)
            }))
            .unwrap_or_else(|p| {
                Err(EngineError::Fault(format!(
                    "panic in CUDA layer-split stage (layers {layers:?}): {}",
                    panic_message(&*p)
                )))
            })?;
            match ran {
                StageOutput::Hidden(x) => job.x = x,
                StageOutput::Tokens { tokens, logits } => {
                    job.result.tokens = tokens;
                    job.logits = logits;
                    job.x = Vec::new();
                }
            }
            Ok(job)
        });
        let sent = match &tx {
            StageOut::Next(s) => s.send(out).is_ok(),
            StageOut::Done(s) => s.send(out).is_ok(),
        };
        if !sent {
            return;
        }
    }
}

/// Calls `f` with an executor backed by two scoped stage threads (`first` runs the embedding
/// and the first layers, `last` the rest and the sampling) that live until `f` returns.
/// `Sequential` runs as `batch` (one call through both stages at a time).
pub fn with_split<A: StageWork, B: StageWork, R>(
    first: &mut A,
    last: &mut B,
    mode: PipelineMode,
    microbatch: usize,
    f: impl FnOnce(&mut SplitExec) -> R,
) -> R {
    std::thread::scope(|s| {
        let (to0, rx0) = mpsc::channel::<Msg>();
        // Rendezvous: stage 0 can finish microbatch i+1 only once stage 1 took microbatch i.
        let (to1, rx1) = mpsc::sync_channel::<Msg>(0);
        let (done_tx, done_rx) = mpsc::channel::<Msg>();
        s.spawn(move || stage_loop(first, rx0, StageOut::Next(to1)));
        s.spawn(move || stage_loop(last, rx1, StageOut::Done(done_tx)));
        let mut exec = SplitExec {
            to_stage0: to0,
            from_last: done_rx,
            mode,
            microbatch: microbatch.max(1),
            last_logits: Vec::new(),
        };
        // Dropping the executor closes stage 0's input; the stages then drain and exit.
        f(&mut exec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reference::executor::argmax;
    use crate::engine::reference::kv::LayerKv;
    use crate::engine::reference::model::{FwdItem, Model, MoePath};
    use crate::engine::reference::spec::{Device, Dtype, EngineSpec, EngineTable};
    use std::ops::Range;

    /// A CPU-model stage: the same role the CUDA executor plays on a device.
    struct CpuStage<'a> {
        model: &'a Model,
        layers: Range<usize>,
        kv: &'a mut [LayerKv],
        keep_logits: bool,
        fail_at: Option<usize>,
        calls: usize,
    }

    impl StageWork for CpuStage<'_> {
        fn run_stage(
            &mut self,
            call: &FwdCall,
            hidden: &[f32],
            stats: &mut FwdStats,
        ) -> Result<StageOutput, EngineError> {
            self.calls += 1;
            if self.fail_at == Some(self.calls) {
                return Err(EngineError::Fault("CUDA: launch of embed failed".into()));
            }
            let mut x = if self.layers.start == 0 {
                self.model.embed_call(call)
            } else {
                assert_eq!(hidden.len(), call.num_rows() * self.model.spec.hidden_size);
                hidden.to_vec()
            };
            self.model
                .run_layers(self.layers.clone(), self.kv, call, &mut x, stats);
            if self.layers.end < self.model.spec.num_layers {
                return Ok(StageOutput::Hidden(x));
            }
            let rows = self.model.logits(call, &x);
            Ok(StageOutput::Tokens {
                tokens: rows.iter().map(|r| argmax(r)).collect(),
                logits: if self.keep_logits {
                    rows.concat()
                } else {
                    Vec::new()
                },
            })
        }

        fn layer_range(&self) -> Range<usize> {
            self.layers.clone()
        }
    }

    fn spec() -> EngineSpec {
        let t = EngineTable {
            hidden_size: Some(64),
            num_layers: Some(3),
            num_heads: Some(4),
            num_kv_heads: Some(2),
            num_experts: Some(8),
            experts_per_token: Some(2),
            moe_intermediate_size: Some(32),
            vocab_size: Some(96),
            quant_group_size: Some(32),
            ..Default::default()
        };
        let mut s = EngineSpec::resolve_for_device(Some(&t), "qwen3_moe", Device::Cpu).unwrap();
        s.dtype = Dtype::Fp16;
        s
    }

    /// Prefill of 5 sequences, then decode steps (paths alternate).
    fn calls(step: usize, last: &[u32]) -> FwdCall {
        let items = (0..5)
            .map(|i| FwdItem {
                blocks: vec![i as u32 * 2, i as u32 * 2 + 1],
                start_pos: if step == 0 { 0 } else { 3 + i + step - 1 },
                tokens: if step == 0 {
                    (0..3 + i as u32).map(|t| (t * 7 + i as u32) % 96).collect()
                } else {
                    vec![last[i]]
                },
                want_logits: true,
            })
            .collect();
        let moe = if step % 2 == 0 {
            MoePath::Grouped
        } else {
            MoePath::PerToken
        };
        FwdCall { items, moe }
    }

    /// The split pipeline over CPU stages gives the unsplit model's logits and tokens exactly,
    /// in batch and overlapped mode (microbatches of 2 of 5 sequences), with expert stats of
    /// every layer.
    #[test]
    fn split_stages_reproduce_the_unsplit_forward_in_batch_and_overlapped_mode() {
        let spec = spec();
        let model = Model::new(&spec);
        let width = spec.num_kv_heads * spec.head_dim;
        let new_kv = || -> Vec<LayerKv> {
            (0..spec.num_layers)
                .map(|_| LayerKv::new(10, width, spec.dtype))
                .collect()
        };
        for mode in [PipelineMode::Batch, PipelineMode::Overlapped] {
            let mut whole = new_kv();
            let mut kv = new_kv();
            let (kv0, kv1) = kv.split_at_mut(1);
            let mut first = CpuStage {
                model: &model,
                layers: 0..1,
                kv: kv0,
                keep_logits: false,
                fail_at: None,
                calls: 0,
            };
            let mut last = CpuStage {
                model: &model,
                layers: 1..3,
                kv: kv1,
                keep_logits: true,
                fail_at: None,
                calls: 0,
            };
            with_split(&mut first, &mut last, mode, 2, |exec| {
                let mut tokens = vec![0u32; 5];
                for step in 0..6 {
                    let call = calls(step, &tokens);
                    let mut stats = FwdStats::default();
                    let want = model.forward(&mut whole, &call, &mut stats);
                    let got = exec.execute(std::slice::from_ref(&call)).unwrap();
                    assert_eq!(exec.last_logits, want.concat(), "{mode:?} step {step}");
                    let want_tokens: Vec<u32> = want.iter().map(|r| argmax(r)).collect();
                    assert_eq!(got[0].tokens, want_tokens, "{mode:?} step {step}");
                    assert_eq!(got[0].stats.experts, stats.experts, "{mode:?} step {step}");
                    assert!(got[0].stats.expert_loads > 0);
                    tokens = want_tokens;
                }
            });
            let per_call = if mode == PipelineMode::Overlapped {
                3
            } else {
                1
            };
            assert_eq!(first.calls, 6 * per_call, "{mode:?}");
            assert_eq!(last.calls, 6 * per_call, "{mode:?}");
        }
    }

    #[test]
    fn a_failing_or_panicking_stage_becomes_an_engine_fault() {
        let spec = spec();
        let model = Model::new(&spec);
        let width = spec.num_kv_heads * spec.head_dim;
        let mut kv: Vec<LayerKv> = (0..spec.num_layers)
            .map(|_| LayerKv::new(10, width, spec.dtype))
            .collect();
        let (kv0, kv1) = kv.split_at_mut(2);
        let mut first = CpuStage {
            model: &model,
            layers: 0..2,
            kv: kv0,
            keep_logits: false,
            fail_at: Some(2),
            calls: 0,
        };
        let mut last = CpuStage {
            model: &model,
            layers: 2..3,
            kv: kv1,
            keep_logits: false,
            fail_at: None,
            calls: 0,
        };
        with_split(&mut first, &mut last, PipelineMode::Overlapped, 4, |exec| {
            // Microbatches of 4 and 1: the second one fails on stage 0.
            match exec.execute(&[calls(0, &[0; 5])]) {
                Err(EngineError::Fault(m)) => assert!(m.contains("launch of embed"), "{m}"),
                other => panic!("expected a fault, got {other:?}"),
            }
            // Position 40 needs block 2 of a two-block table: a panic in stage 0 (layers 0..2).
            let mut bad = calls(1, &[0; 5]);
            bad.items.truncate(1);
            bad.items[0].start_pos = 40;
            match exec.execute(&[bad]) {
                Err(EngineError::Fault(m)) => assert!(
                    m.contains("panic in CUDA layer-split stage (layers 0..2)"),
                    "{m}"
                ),
                other => panic!("expected a fault, got {other:?}"),
            }
        });
    }
}
