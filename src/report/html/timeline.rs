//! A cell's step timeline (from `steps.jsonl`) downsampled into equal time buckets, so a run of
//! thousands of steps draws as a few hundred points: each step holds its state over
//! `[start, start + duration)`, and each bucket takes, over the steps overlapping it, the
//! overlap-weighted mean decode batch, the maximum KV blocks in use and waiting requests (peaks
//! stay visible), and the MoE path that covers most of it.

use crate::engine::StepRecord;

/// One time bucket. `None` buckets (no step overlaps them) are gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Overlap-weighted mean decode batch size (decode tokens per step).
    pub decode_batch: f64,
    /// Largest KV block count in use.
    pub kv_blocks: usize,
    /// Largest number of waiting requests.
    pub waiting: usize,
    /// MoE path covering most of the bucket.
    pub moe_path: String,
}

/// The downsampled timeline of one repeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Bucket width in seconds.
    pub bucket_s: f64,
    /// Buckets from time 0.
    pub buckets: Vec<Option<Bucket>>,
    /// Steps summarised.
    pub steps: usize,
}

/// Downsample `steps` (any order) into at most `max_buckets` buckets over `[0, end of the last
/// step)`; with fewer steps than `max_buckets`, one bucket per step's worth of time is still used
/// (bucket count = `max_buckets`) so the time axis is uniform. `None` without steps.
pub fn timeline(steps: &[StepRecord], max_buckets: usize) -> Option<Timeline> {
    let end_ns = steps.iter().map(|s| s.start_ns + s.duration_ns).max()?;
    if max_buckets == 0 || end_ns == 0 {
        return None;
    }
    let n = max_buckets;
    let width = end_ns as f64 / n as f64;
    // Per bucket: weighted decode sum, covered time, max kv, max waiting, time per path.
    struct Acc {
        decode: f64,
        covered: f64,
        kv: usize,
        waiting: usize,
        paths: Vec<(String, f64)>,
    }
    let mut acc: Vec<Option<Acc>> = (0..n).map(|_| None).collect();
    for s in steps {
        let (a, b) = (s.start_ns as f64, (s.start_ns + s.duration_ns) as f64);
        let first = ((a / width) as usize).min(n - 1);
        let last = if b > a {
            (((b / width).ceil() as usize).max(first + 1) - 1).min(n - 1)
        } else {
            first
        };
        for (k, slot) in acc.iter_mut().enumerate().take(last + 1).skip(first) {
            let (lo, hi) = (k as f64 * width, (k + 1) as f64 * width);
            // A zero-length step still counts, with a tiny weight, in the bucket it falls in.
            let overlap = (b.min(hi) - a.max(lo)).max(if b > a { 0.0 } else { 1e-9 });
            if overlap <= 0.0 {
                continue;
            }
            let e = slot.get_or_insert_with(|| Acc {
                decode: 0.0,
                covered: 0.0,
                kv: 0,
                waiting: 0,
                paths: Vec::new(),
            });
            e.decode += s.decode_tokens as f64 * overlap;
            e.covered += overlap;
            e.kv = e.kv.max(s.kv_blocks_in_use);
            e.waiting = e.waiting.max(s.waiting);
            match e.paths.iter_mut().find(|(p, _)| *p == s.moe_path) {
                Some((_, t)) => *t += overlap,
                None => e.paths.push((s.moe_path.clone(), overlap)),
            }
        }
    }
    let buckets = acc
        .into_iter()
        .map(|a| {
            a.map(|a| {
                let moe_path = a
                    .paths
                    .iter()
                    .max_by(|x, y| x.1.total_cmp(&y.1).then_with(|| y.0.cmp(&x.0)))
                    .map(|(p, _)| p.clone())
                    .unwrap_or_default();
                Bucket {
                    decode_batch: a.decode / a.covered,
                    kv_blocks: a.kv,
                    waiting: a.waiting,
                    moe_path,
                }
            })
        })
        .collect();
    Some(Timeline {
        bucket_s: width / 1e9,
        buckets,
        steps: steps.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(
        start_ms: u64,
        dur_ms: u64,
        decode: usize,
        path: &str,
        kv: usize,
        waiting: usize,
    ) -> StepRecord {
        StepRecord {
            step: 0,
            start_ns: start_ms * 1_000_000,
            duration_ns: dur_ms * 1_000_000,
            prefill_tokens: 0,
            decode_tokens: decode,
            sequences: decode,
            moe_path: path.to_string(),
            distinct_experts: 0.0,
            kv_blocks_in_use: kv,
            waiting,
            admitted: 0,
            finished: 0,
        }
    }

    #[test]
    fn buckets_weight_by_overlap_keep_peaks_and_leave_gaps() {
        // 0–30 ms: batch 2 batched; 30–40: batch 8 per_item; 40–60 idle; 60–80: batch 4.
        let steps = [
            step(0, 30, 2, "batched", 5, 3),
            step(30, 10, 8, "per_item", 9, 0),
            step(60, 20, 4, "batched", 6, 1),
        ];
        let t = timeline(&steps, 4).unwrap(); // 20 ms buckets
        assert!((t.bucket_s - 0.020).abs() < 1e-12);
        assert_eq!(t.steps, 3);
        let b0 = t.buckets[0].as_ref().unwrap();
        assert_eq!((b0.decode_batch, b0.kv_blocks, b0.waiting), (2.0, 5, 3));
        let b1 = t.buckets[1].as_ref().unwrap();
        // 10 ms at 2 + 10 ms at 8 → 5; peaks 9 and 3; tie on time → name order (batched).
        assert_eq!((b1.decode_batch, b1.kv_blocks, b1.waiting), (5.0, 9, 3));
        assert_eq!(b1.moe_path, "batched");
        assert_eq!(t.buckets[2], None);
        let b3 = t.buckets[3].as_ref().unwrap();
        assert_eq!((b3.decode_batch, b3.moe_path.as_str()), (4.0, "batched"));
        assert_eq!(timeline(&[], 4), None);
    }

    #[test]
    fn many_steps_fit_the_bucket_budget() {
        let steps: Vec<StepRecord> = (0..5000)
            .map(|i| {
                step(
                    i,
                    1,
                    (i % 7) as usize,
                    if i % 2 == 0 { "batched" } else { "per_item" },
                    1,
                    0,
                )
            })
            .collect();
        let t = timeline(&steps, 200).unwrap();
        assert_eq!(t.buckets.len(), 200);
        assert!(t.buckets.iter().all(|b| b.is_some()));
    }
}
