//! Per-request records (`requests.jsonl`) and per-repeat summaries derived from engine traces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{RequestStatus, RequestTrace, RunOutput};
use crate::stats::{Slo, Summary};

const NS_PER_MS: f64 = 1e6;

/// One measured request of one repeat: a line of `requests.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRecord {
    /// Repeat index (0-based).
    pub repeat: u32,
    /// Request id within the repeat.
    pub id: u64,
    /// `ok`, `rejected` or `failed`.
    pub status: String,
    /// Why the request was rejected or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Output tokens actually produced.
    pub output_tokens: usize,
    /// When the request was offered, ms since the run started.
    pub arrival_ms: f64,
    /// Admission − arrival in ms; `None` when never admitted.
    pub queue_ms: Option<f64>,
    /// First token − arrival in ms; `None` without any token.
    pub ttft_ms: Option<f64>,
    /// `(E2E − TTFT)/(output_tokens − 1)` in ms; `None` for fewer than two tokens.
    pub tpot_ms: Option<f64>,
    /// Finish − arrival in ms.
    pub e2e_ms: f64,
    /// Every gap between consecutive output tokens, in ms.
    pub itl_ms: Vec<f64>,
    /// Succeeded and met every SLO limit.
    pub good: bool,
}

impl RequestRecord {
    /// Derive the record of one trace of repeat `repeat` under `slo`.
    pub fn from_trace(repeat: u32, t: &RequestTrace, slo: &Slo) -> RequestRecord {
        let ms = |ns: u64| ns as f64 / NS_PER_MS;
        let since_arrival = |ns: u64| ns.saturating_sub(t.arrival_ns) as f64 / NS_PER_MS;
        let (status, reason) = match &t.status {
            RequestStatus::Ok => ("ok", None),
            RequestStatus::Rejected { reason } => ("rejected", Some(reason.clone())),
            RequestStatus::Failed { reason } => ("failed", Some(reason.clone())),
        };
        let ttft_ms = t.token_ns.first().map(|&ns| since_arrival(ns));
        let e2e_ms = since_arrival(t.finished_ns);
        let out = t.token_ns.len();
        let tpot_ms = match ttft_ms {
            Some(ttft) if out >= 2 => Some((e2e_ms - ttft) / (out - 1) as f64),
            _ => None,
        };
        let itl_ms = t
            .token_ns
            .windows(2)
            .map(|w| ms(w[1].saturating_sub(w[0])))
            .collect();
        let ok = t.status.is_ok();
        RequestRecord {
            repeat,
            id: t.id,
            status: status.to_string(),
            reason,
            prompt_tokens: t.prompt_tokens,
            output_tokens: out,
            arrival_ms: ms(t.arrival_ns),
            queue_ms: t.admitted_ns.map(since_arrival),
            ttft_ms,
            tpot_ms,
            e2e_ms,
            itl_ms,
            good: slo.is_good(ok, ttft_ms, tpot_ms, e2e_ms),
        }
    }

    /// True when the request succeeded.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// One repeat of a cell: throughput, counts and latency distributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatSummary {
    /// Repeat index (0-based).
    pub repeat: u32,
    /// The repeat's workload seed.
    pub seed: u64,
    /// The repeat's workload hash.
    pub workload_hash: String,
    /// Wall time of the measured run (first arrival to last completion), s.
    pub duration_s: f64,
    /// Measured requests offered.
    pub expected_requests: usize,
    /// Requests that generated every token.
    pub completed: usize,
    /// Requests that were admitted but failed.
    pub failed: usize,
    /// Requests the engine refused.
    pub rejected: usize,
    /// Successful requests that met the SLO.
    pub good: usize,
    /// Warmup requests run before the measured ones.
    pub warmup_requests: usize,
    /// Warmup requests that did not succeed.
    pub warmup_failed: usize,
    /// Prompt tokens of successful requests.
    pub prompt_tokens: usize,
    /// Output tokens of successful requests.
    pub output_tokens: usize,
    /// Completed requests per second.
    pub request_per_s: f64,
    /// Output tokens of successful requests per second.
    pub output_tokens_per_s: f64,
    /// Prompt + output tokens of successful requests per second.
    pub total_tokens_per_s: f64,
    /// Good requests per second (DistServe's goodput).
    pub goodput_rps: f64,
    /// Queue time (admission − arrival) of successful requests, ms.
    pub queue_ms: Option<Summary>,
    /// TTFT of successful requests, ms.
    pub ttft_ms: Option<Summary>,
    /// TPOT of successful requests with ≥ 2 tokens, ms.
    pub tpot_ms: Option<Summary>,
    /// Every inter-token gap of successful requests pooled, ms.
    pub itl_ms: Option<Summary>,
    /// E2E latency of successful requests, ms.
    pub e2e_ms: Option<Summary>,
    /// Engine counters reported for the measured run.
    pub counters: BTreeMap<String, f64>,
    /// Closed loop: output tokens/s over the window in which all C slots are busy
    /// ([`super::steady`]); absent for open loop or an empty window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_output_tokens_per_s: Option<f64>,
    /// Length of that window, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_window_s: Option<f64>,
    /// What the machine was doing during the repeat ([`crate::noise`]); absent in results
    /// written before the noise monitor existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<crate::noise::NoiseSample>,
    /// The interleaved round this repeat ran in (`--order interleaved`); absent when the cell's
    /// repeats ran back to back, so cells share no rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// The flagged measurement this repeat replaced (`--rerun-noisy`), kept whole with its noise
    /// readings; absent when the repeat was measured once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<Box<RepeatSummary>>,
}

/// Per-repeat identity handed to [`summarize`].
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatMeta {
    /// Repeat index.
    pub repeat: u32,
    /// Workload seed of the repeat.
    pub seed: u64,
    /// Workload hash of the repeat.
    pub workload_hash: String,
    /// Warmup requests run.
    pub warmup_requests: usize,
    /// Warmup requests that did not succeed.
    pub warmup_failed: usize,
}

/// Summarise a repeat. Latency statistics use successful requests only; failures and rejections
/// are counted, never averaged in. Throughputs divide by the run's `duration_ns` (0 when the
/// duration is 0, which only an empty run can have).
pub fn summarize(meta: RepeatMeta, records: &[RequestRecord], output: &RunOutput) -> RepeatSummary {
    let duration_s = output.duration_ns as f64 / 1e9;
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.is_ok()).collect();
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let collect = |f: &dyn Fn(&RequestRecord) -> Option<f64>| -> Option<Summary> {
        let xs: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
        Summary::from_samples(&xs)
    };
    let itl: Vec<f64> = ok.iter().flat_map(|r| r.itl_ms.iter().copied()).collect();
    let prompt_tokens = ok.iter().map(|r| r.prompt_tokens).sum::<usize>();
    let output_tokens = ok.iter().map(|r| r.output_tokens).sum::<usize>();
    let good = records.iter().filter(|r| r.good).count();
    RepeatSummary {
        repeat: meta.repeat,
        seed: meta.seed,
        workload_hash: meta.workload_hash,
        duration_s,
        expected_requests: records.len(),
        completed: ok.len(),
        failed: records.iter().filter(|r| r.status == "failed").count(),
        rejected: records.iter().filter(|r| r.status == "rejected").count(),
        good,
        warmup_requests: meta.warmup_requests,
        warmup_failed: meta.warmup_failed,
        prompt_tokens,
        output_tokens,
        request_per_s: per_s(ok.len() as f64),
        output_tokens_per_s: per_s(output_tokens as f64),
        total_tokens_per_s: per_s((prompt_tokens + output_tokens) as f64),
        goodput_rps: per_s(good as f64),
        queue_ms: collect(&|r| r.queue_ms),
        ttft_ms: collect(&|r| r.ttft_ms),
        tpot_ms: collect(&|r| r.tpot_ms),
        itl_ms: Summary::from_samples(&itl),
        e2e_ms: collect(&|r| Some(r.e2e_ms)),
        counters: output.counters.clone(),
        steady_output_tokens_per_s: None,
        steady_window_s: None,
        noise: None,
        round: None,
        superseded: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(
        id: u64,
        status: RequestStatus,
        arrival: u64,
        admitted: Option<u64>,
        tokens: &[u64],
        fin: u64,
    ) -> RequestTrace {
        RequestTrace {
            id,
            status,
            prompt_tokens: 10,
            arrival_ns: arrival,
            admitted_ns: admitted,
            token_ns: tokens.to_vec(),
            finished_ns: fin,
            output_ids: vec![],
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn ttft_tpot_itl_e2e_by_hand() {
        // Arrives at 10 ms, admitted at 15, tokens at 30, 40, 60, 70, finished at 70.
        // TTFT 20, E2E 60, TPOT (60−20)/3 = 13.333…, ITL 10, 20, 10, queue 5.
        let t = trace(
            0,
            RequestStatus::Ok,
            10 * MS,
            Some(15 * MS),
            &[30 * MS, 40 * MS, 60 * MS, 70 * MS],
            70 * MS,
        );
        let r = RequestRecord::from_trace(2, &t, &Slo::default());
        assert_eq!(r.ttft_ms, Some(20.0));
        assert_eq!(r.e2e_ms, 60.0);
        assert!((r.tpot_ms.unwrap() - 40.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.itl_ms, vec![10.0, 20.0, 10.0]);
        assert_eq!(r.queue_ms, Some(5.0));
        assert_eq!((r.repeat, r.output_tokens, r.status.as_str()), (2, 4, "ok"));
        assert!(r.good);
        // TPOT is not the mean ITL when the finish lags the last token.
        let t2 = trace(
            1,
            RequestStatus::Ok,
            0,
            Some(0),
            &[10 * MS, 20 * MS],
            40 * MS,
        );
        let r2 = RequestRecord::from_trace(0, &t2, &Slo::default());
        assert_eq!(r2.tpot_ms, Some(30.0));
        assert_eq!(r2.itl_ms, vec![10.0]);
        let one = RequestRecord::from_trace(
            0,
            &trace(2, RequestStatus::Ok, 0, Some(0), &[MS], MS),
            &Slo::default(),
        );
        assert_eq!(one.tpot_ms, None);
        assert!(one.itl_ms.is_empty());
    }

    #[test]
    fn failures_are_counted_but_not_in_latency_and_goodput_applies_the_slo() {
        let slo = Slo {
            ttft_ms: Some(25.0),
            tpot_ms: None,
            e2e_ms: None,
        };
        let traces = vec![
            trace(
                0,
                RequestStatus::Ok,
                0,
                Some(0),
                &[20 * MS, 30 * MS],
                30 * MS,
            ),
            trace(
                1,
                RequestStatus::Ok,
                0,
                Some(0),
                &[40 * MS, 50 * MS],
                50 * MS,
            ),
            trace(
                2,
                RequestStatus::Failed {
                    reason: "boom".into(),
                },
                0,
                Some(0),
                &[5 * MS],
                900 * MS,
            ),
            trace(
                3,
                RequestStatus::Rejected {
                    reason: "too long".into(),
                },
                0,
                None,
                &[],
                0,
            ),
        ];
        let records: Vec<_> = traces
            .iter()
            .map(|t| RequestRecord::from_trace(0, t, &slo))
            .collect();
        assert_eq!(records[3].reason.as_deref(), Some("too long"));
        assert_eq!(records[3].queue_ms, None);
        let output = RunOutput {
            requests: traces,
            duration_ns: 2_000 * MS,
            counters: BTreeMap::from([("steps".to_string(), 7.0)]),
            steps: vec![],
        };
        let meta = RepeatMeta {
            repeat: 0,
            seed: 1,
            workload_hash: "sha256:x".into(),
            warmup_requests: 2,
            warmup_failed: 0,
        };
        let s = summarize(meta, &records, &output);
        assert_eq!(
            (
                s.expected_requests,
                s.completed,
                s.failed,
                s.rejected,
                s.good
            ),
            (4, 2, 1, 1, 1)
        );
        assert_eq!(s.duration_s, 2.0);
        assert_eq!(s.request_per_s, 1.0);
        assert_eq!(s.output_tokens, 4);
        assert_eq!(s.output_tokens_per_s, 2.0);
        assert_eq!(s.total_tokens_per_s, 12.0);
        assert_eq!(s.goodput_rps, 0.5);
        let e2e = s.e2e_ms.unwrap();
        assert_eq!(
            (e2e.count, e2e.max),
            (2, 50.0),
            "failed request's 900 ms never enters"
        );
        assert_eq!(s.ttft_ms.unwrap().median, 30.0);
        assert_eq!(s.itl_ms.unwrap().count, 2);
        assert_eq!(s.counters["steps"], 7.0);
    }
}
