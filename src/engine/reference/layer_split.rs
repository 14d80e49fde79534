//! Executing forward calls: on the calling thread (no split), or on two stage worker threads
//! that each own a contiguous range of layers and those layers' KV pools (a two-stage
//! `selected_layer_split_plan`).
//!
//! - `batch`: each forward call goes through stage 0, then stage 1, before the next call starts
//!   (one stage idles while the other works).
//! - `overlapped`: calls are cut into microbatches of at most `selected_microbatch_size`
//!   sequences; stage 0 hands microbatch `i` to stage 1 through a rendezvous channel and starts
//!   on `i + 1`, so two microbatches are in flight.
//!
//! Every item of a step belongs to a different sequence, so microbatches are independent and
//! the tokens are those of an unsplit run.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use rayon::ThreadPool;

use super::executor::{CallResult, Executor, Sampling};
use super::knobs::PipelineMode;
use super::kv::LayerKv;
use super::model::{FwdCall, FwdStats, Model};
use crate::engine::EngineError;

/// All layers on the calling thread.
struct SingleStage<'a> {
    model: &'a Model,
    kv: &'a mut [LayerKv],
    pool: &'a ThreadPool,
    sampling: Sampling,
}

impl Executor for SingleStage<'_> {
    fn execute(&mut self, calls: &[FwdCall]) -> Result<Vec<CallResult>, EngineError> {
        Ok(calls
            .iter()
            .map(|call| {
                let mut stats = FwdStats::default();
                let (model, kv) = (self.model, &mut *self.kv);
                let logits = self.pool.install(|| model.forward(kv, call, &mut stats));
                CallResult {
                    tokens: logits.iter().map(|row| self.sampling.sample(row)).collect(),
                    stats,
                }
            })
            .collect())
    }
}

/// Work travelling through the stages.
struct Job {
    id: usize,
    call: FwdCall,
    x: Vec<f32>,
    result: CallResult,
}

type Msg = Result<Job, String>;

/// Two stage workers fed through channels.
struct SplitExec {
    to_stage0: mpsc::Sender<Msg>,
    from_last: mpsc::Receiver<Msg>,
    mode: PipelineMode,
    microbatch: usize,
}

impl SplitExec {
    fn recv(&self) -> Result<Job, EngineError> {
        match self.from_last.recv() {
            Ok(Ok(job)) => Ok(job),
            Ok(Err(msg)) => Err(EngineError::Fault(msg)),
            Err(_) => Err(EngineError::Fault(
                "a layer-split stage worker stopped unexpectedly".to_string(),
            )),
        }
    }

    fn send(&self, job: Job) -> Result<(), EngineError> {
        self.to_stage0
            .send(Ok(job))
            .map_err(|_| EngineError::Fault("layer-split stage 0 is gone".to_string()))
    }
}

impl Executor for SplitExec {
    fn execute(&mut self, calls: &[FwdCall]) -> Result<Vec<CallResult>, EngineError> {
        let mut results: Vec<CallResult> = vec![CallResult::default(); calls.len()];
        let new_job = |id: usize, call: FwdCall| Job {
            id,
            call,
            x: Vec::new(),
            result: CallResult::default(),
        };
        match self.mode {
            PipelineMode::Overlapped => {
                // Job ids are (call, microbatch) in order, so sorting restores item order.
                let mut owner = Vec::new();
                for (ci, call) in calls.iter().enumerate() {
                    for chunk in call.items.chunks(self.microbatch.max(1)) {
                        let id = owner.len();
                        owner.push(ci);
                        self.send(new_job(
                            id,
                            FwdCall {
                                items: chunk.to_vec(),
                                moe: call.moe,
                            },
                        ))?;
                    }
                }
                let mut done: Vec<Job> = (0..owner.len())
                    .map(|_| self.recv())
                    .collect::<Result<_, _>>()?;
                done.sort_by_key(|j| j.id);
                for job in done {
                    let r = &mut results[owner[job.id]];
                    r.tokens.extend(job.result.tokens);
                    r.stats.merge(&job.result.stats);
                }
            }
            PipelineMode::Batch | PipelineMode::Sequential => {
                for (ci, call) in calls.iter().enumerate() {
                    self.send(new_job(ci, call.clone()))?;
                    results[ci] = self.recv()?.result;
                }
            }
        }
        Ok(results)
    }
}

/// One stage: receives jobs, runs its layers (stage 0 also embeds, the last stage also computes
/// logits and samples) and passes them on. A panic becomes an error message that travels to the caller.
fn stage_loop(
    model: &Model,
    layers: Range<usize>,
    kv: &mut [LayerKv],
    rx: mpsc::Receiver<Msg>,
    tx: StageOut,
    pool: &ThreadPool,
    sampling: Sampling,
) {
    let last = layers.end == model.spec.num_layers;
    for msg in rx {
        let out = msg.and_then(|mut job| {
            catch_unwind(AssertUnwindSafe(|| {
                pool.install(|| {
                    if layers.start == 0 {
                        job.x = model.embed_call(&job.call);
                    }
                    model.run_layers(
                        layers.clone(),
                        kv,
                        &job.call,
                        &mut job.x,
                        &mut job.result.stats,
                    );
                    if last {
                        job.result.tokens = model
                            .logits(&job.call, &job.x)
                            .iter()
                            .map(|row| sampling.sample(row))
                            .collect();
                        job.x = Vec::new();
                    }
                })
            }))
            .map_err(|p| {
                format!(
                    "panic in layer-split stage (layers {layers:?}): {}",
                    panic_message(&*p)
                )
            })
            .map(|()| job)
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

enum StageOut {
    Next(mpsc::SyncSender<Msg>),
    Done(mpsc::Sender<Msg>),
}

/// Text of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

/// How a run executes its forward calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitConfig {
    /// First layer of stage 1.
    pub boundary: usize,
    /// `batch` or `overlapped`.
    pub mode: PipelineMode,
    /// Sequences per microbatch (overlapped).
    pub microbatch: usize,
}

/// Calls `f` with an executor: inline when `split` is `None`, else backed by two scoped stage
/// threads that live until `f` returns.
pub fn with_executor<R>(
    model: &Model,
    kv: &mut [LayerKv],
    split: Option<SplitConfig>,
    pool: &ThreadPool,
    sampling: Sampling,
    f: impl FnOnce(&mut dyn Executor) -> R,
) -> R {
    let Some(cfg) = split else {
        return f(&mut SingleStage {
            model,
            kv,
            pool,
            sampling,
        });
    };
    let layers = model.spec.num_layers;
    std::thread::scope(|s| {
        let (kv0, kv1) = kv.split_at_mut(cfg.boundary);
        let (to0, rx0) = mpsc::channel::<Msg>();
        // Rendezvous: stage 0 can finish microbatch i+1 only once stage 1 took microbatch i.
        let (to1, rx1) = mpsc::sync_channel::<Msg>(0);
        let (done_tx, done_rx) = mpsc::channel::<Msg>();
        let b = cfg.boundary;
        s.spawn(move || stage_loop(model, 0..b, kv0, rx0, StageOut::Next(to1), pool, sampling));
        s.spawn(move || {
            stage_loop(
                model,
                b..layers,
                kv1,
                rx1,
                StageOut::Done(done_tx),
                pool,
                sampling,
            )
        });
        let mut exec = SplitExec {
            to_stage0: to0,
            from_last: done_rx,
            mode: cfg.mode,
            microbatch: cfg.microbatch,
        };
        // Dropping the executor closes stage 0's input; the stages then drain and exit.
        f(&mut exec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reference::model::{FwdItem, MoePath};
    use crate::engine::reference::spec::{EngineSpec, EngineTable};

    #[test]
    fn a_panicking_stage_becomes_an_engine_fault() {
        let t = EngineTable {
            hidden_size: Some(64),
            num_layers: Some(2),
            num_heads: Some(4),
            num_kv_heads: Some(2),
            intermediate_size: Some(64),
            vocab_size: Some(64),
            quant_group_size: Some(32),
            ..Default::default()
        };
        let spec = EngineSpec::resolve(Some(&t), "qwen2").unwrap();
        let model = Model::new(&spec);
        let mut kv: Vec<LayerKv> = (0..2)
            .map(|_| LayerKv::new(4, 2 * 16, spec.dtype))
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        // Position 40 needs block 2 of a one-block table: an out-of-bounds panic in stage 0.
        let bad = FwdCall {
            items: vec![FwdItem {
                blocks: vec![0],
                start_pos: 40,
                tokens: vec![1],
                want_logits: true,
            }],
            moe: MoePath::Grouped,
        };
        let split = Some(SplitConfig {
            boundary: 1,
            mode: PipelineMode::Overlapped,
            microbatch: 1,
        });
        let result = with_executor(
            &model,
            &mut kv,
            split,
            &pool,
            Sampling::DeviceArgmax,
            |exec| exec.execute(&[bad]),
        );
        match result {
            Err(EngineError::Fault(msg)) => assert!(
                msg.contains("panic in layer-split stage (layers 0..1)"),
                "{msg}"
            ),
            other => panic!("expected a fault, got {other:?}"),
        }
    }
}
