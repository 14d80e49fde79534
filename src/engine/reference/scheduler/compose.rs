//! Step composition: which running sequences decode, which prefill how many tokens, and how the
//! step becomes forward calls (batched vs per-item decode, unified vs serial prefill, grouped vs
//! per-token MoE for prefill) — the knob semantics of the module docs.

use super::{Seq, Sequences};
use crate::engine::reference::knobs::{AdmissionPolicy, EngineKnobs};
use crate::engine::reference::model::{FwdCall, FwdItem, MoePath};
use crate::engine::EngineRequest;

/// One step's forward calls with, per call, the running-sequence index of each item.
#[derive(Debug, Default)]
pub struct Step {
    /// `(call, owner per item)`.
    pub calls: Vec<(FwdCall, Vec<usize>)>,
    /// Decoding sequences in this step.
    pub decode: Vec<usize>,
    /// `(sequence, chunk)` prefill parts.
    pub prefill: Vec<(usize, usize)>,
    /// `none`, `unified`, `batched` or `per_item` (the decode path, for `steps.jsonl`).
    pub moe_path: &'static str,
    /// One unified call carried decode tokens and prefill chunks.
    pub unified: bool,
    /// The decode part ran as one batched call.
    pub batched_decode: bool,
}

impl Step {
    /// Prefill tokens in the step.
    pub fn prefill_tokens(&self) -> usize {
        self.prefill.iter().map(|p| p.1).sum()
    }
}

/// Builds the step for `running` under `knobs`.
pub fn compose(
    knobs: &EngineKnobs,
    vocab: usize,
    requests: &[EngineRequest],
    running: &[Seq],
) -> Step {
    let seqs = Sequences { requests, running };
    let decoding: Vec<usize> = (0..running.len())
        .filter(|&k| seqs.is_decoding(k))
        .collect();
    let prefilling: Vec<usize> = (0..running.len())
        .filter(|&k| !seqs.is_decoding(k))
        .collect();
    let prefill_only = match knobs.admission {
        AdmissionPolicy::PrefillFirstUntilActive { until, .. } => {
            decoding.len() < until && !prefilling.is_empty()
        }
        _ => false,
    };
    let decode: Vec<usize> = if prefill_only { Vec::new() } else { decoding };
    let mut budget = knobs.max_batched_tokens.saturating_sub(decode.len());
    let mut prefill: Vec<(usize, usize)> = Vec::new();
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
        prefill.push((k, chunk));
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
    let mut step = Step {
        moe_path: "none",
        ..Step::default()
    };
    step.unified = !prefill.is_empty()
        && knobs.qwen_unified_prefill
        && !(decode.is_empty() && prefill.len() == 1);
    if step.unified {
        let mut items: Vec<FwdItem> = decode.iter().map(|&k| decode_item(&running[k])).collect();
        items.extend(
            prefill
                .iter()
                .map(|&(k, chunk)| prefill_item(&running[k], chunk)),
        );
        let rows = items.iter().map(|it| it.tokens.len()).sum();
        let owners = decode
            .iter()
            .copied()
            .chain(prefill.iter().map(|p| p.0))
            .collect();
        step.calls.push((
            FwdCall {
                items,
                moe: prefill_moe(rows),
            },
            owners,
        ));
        if !decode.is_empty() {
            step.moe_path = "unified";
        }
    } else {
        if !decode.is_empty() {
            if knobs.batched_decode(decode.len()) {
                step.batched_decode = true;
                step.moe_path = "batched";
                let items = decode.iter().map(|&k| decode_item(&running[k])).collect();
                step.calls.push((
                    FwdCall {
                        items,
                        moe: MoePath::Grouped,
                    },
                    decode.clone(),
                ));
            } else {
                step.moe_path = "per_item";
                for &k in &decode {
                    step.calls.push((
                        FwdCall {
                            items: vec![decode_item(&running[k])],
                            moe: MoePath::PerToken,
                        },
                        vec![k],
                    ));
                }
            }
        }
        for &(k, chunk) in &prefill {
            step.calls.push((
                FwdCall {
                    items: vec![prefill_item(&running[k], chunk)],
                    moe: prefill_moe(chunk),
                },
                vec![k],
            ));
        }
    }
    step.decode = decode;
    step.prefill = prefill;
    step
}
