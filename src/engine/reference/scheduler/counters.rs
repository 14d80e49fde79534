//! Run counters (what `stats.json` reports per repeat) and their names.

use std::collections::BTreeMap;

use super::Limits;

/// Counters accumulated over a run.
#[derive(Debug, Default)]
pub struct Counters {
    pub(super) steps: u64,
    pub(super) decode_steps: u64,
    pub(super) batched_decode_steps: u64,
    pub(super) unified_steps: u64,
    pub(super) decode_tokens: u64,
    pub(super) prefill_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) peak_kv_blocks: usize,
    pub(super) peak_running: usize,
    pub(super) blocked_by_kv: u64,
    pub(super) forward_calls: u64,
    pub(super) expert_loads: u64,
    pub(super) distinct_experts_sum: f64,
    pub(super) prefix_hit_tokens: u64,
    pub(super) rejected: u64,
}

impl Counters {
    /// The counters under their reported names, with ratios derived (0 when undefined).
    pub fn into_map(self, prefix_cache_hits: u64, limits: Limits) -> BTreeMap<String, f64> {
        let c = self;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        [
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
            ("prefix_cache_hits", prefix_cache_hits as f64),
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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_zero_when_undefined_and_derived_otherwise() {
        let limits = Limits {
            kv_capacity: 512,
            blocks_per_seq: 32,
            pool_blocks: 64,
        };
        let map = Counters::default().into_map(0, limits);
        assert_eq!(map["batched_decode_step_share"], 0.0);
        assert_eq!(map["kv_pool_blocks"], 64.0);
        assert_eq!(map.len(), 21);
        let c = Counters {
            decode_steps: 4,
            batched_decode_steps: 1,
            decode_tokens: 10,
            ..Counters::default()
        };
        let map = c.into_map(3, limits);
        assert_eq!(map["batched_decode_step_share"], 0.25);
        assert_eq!(map["mean_decode_batch"], 2.5);
        assert_eq!(map["prefix_cache_hits"], 3.0);
    }
}
