//! Seeded synthetic workloads: `random-<in>/<out>` prompts as token ids, and open-loop arrival
//! processes.
//!
//! Generation of one repeat (documented because the result must never drift):
//! 1. `rng = chacha(repeat_seed(base_seed, repeat), STREAM_PROMPTS)` (see [`rng`]).
//! 2. If `prefix_len > 0`, draw the shared prefix: `prefix_len` token ids.
//! 3. For each request i in `0..warmup_requests + requests` (warmup first): draw the input length
//!    uniformly in `[⌊L_in(1−r)⌋, ⌈L_in(1+r)⌉]` (at least 1), then the output length the same way
//!    from `L_out` (at least 1), then the input-length token ids. The prompt is
//!    `prefix ++ own ids` (the prefix is added on top of the input length, as vLLM's
//!    `--random-prefix-len`). Both lengths are always drawn, even when r = 0.
//! 4. A token id is `allowed[below(|allowed|)]` where `allowed` = `[0, vocab_size)` minus the
//!    special ids, ascending.
//!
//! `workload_hash` byte layout (SHA-256, `"sha256:"` + lowercase hex): the ASCII tag
//! `ferrum-bench/workload/v1`, a 0 byte, the warmup count and the measured count (u64 LE each),
//! then per request in order (warmup first): prompt length (u64 LE), each token id (u32 LE), output
//! length (u64 LE). [`combined_hash`] joins the repeats of a cell.

pub mod arrivals;
pub mod rng;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::EngineRequest;

/// Workload definition errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    /// The `random-<in>/<out>` name does not parse.
    #[error(
        "invalid workload `{0}`: expected `random-<input_len>/<output_len>`, e.g. `random-256/128`"
    )]
    BadName(String),
    /// A numeric setting is out of range.
    #[error("invalid workload setting `{key}` = {value}: {expected}")]
    OutOfRange {
        /// The setting.
        key: &'static str,
        /// Its value as given.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
}

/// Which token ids prompts may use: `[0, vocab_size)` without the special ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpace {
    /// Vocabulary size of the model.
    pub vocab_size: u32,
    /// Special token ids never placed in prompts (e.g. BOS/EOS/chat markers).
    pub special_ids: Vec<u32>,
}

impl TokenSpace {
    /// A vocabulary whose ids below `first_non_special` are special (Ferrum's bench-serve skips
    /// the first 256 ids the same way).
    pub fn with_special_prefix(vocab_size: u32, first_non_special: u32) -> TokenSpace {
        TokenSpace {
            vocab_size,
            special_ids: (0..first_non_special.min(vocab_size)).collect(),
        }
    }

    /// The allowed ids, ascending.
    fn allowed(&self) -> Vec<u32> {
        let mut special = self.special_ids.clone();
        special.sort_unstable();
        (0..self.vocab_size)
            .filter(|id| special.binary_search(id).is_err())
            .collect()
    }
}

/// Most measured (or warmup) requests per repeat.
pub const MAX_REQUESTS: usize = 1_000_000;
/// Longest input, output or prefix length, tokens.
pub const MAX_LEN: usize = 1 << 20;
/// Most prompt tokens in one repeat (warmup + measured).
pub const MAX_PROMPT_TOKENS_PER_REPEAT: usize = 100_000_000;

/// Everything that determines a workload (with a seed and repeat index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Nominal input length in tokens (excluding the shared prefix).
    pub input_len: usize,
    /// Nominal output length in tokens (exactly generated; EOS ignored).
    pub output_len: usize,
    /// vLLM-style range ratio r in [0, 1): lengths uniform in `[⌊L(1−r)⌋, ⌈L(1+r)⌉]`.
    pub range_ratio: f64,
    /// Shared prefix length in tokens prepended to every prompt (0 = none).
    pub prefix_len: usize,
    /// Measured requests per repeat.
    pub requests: usize,
    /// Warmup requests per repeat (run first, not measured).
    pub warmup_requests: usize,
}

impl WorkloadSpec {
    /// Parse `random-<in>/<out>` into input and output lengths.
    pub fn parse_name(name: &str) -> Result<(usize, usize), WorkloadError> {
        let bad = || WorkloadError::BadName(name.to_string());
        let rest = name.strip_prefix("random-").ok_or_else(bad)?;
        let (i, o) = rest.split_once('/').ok_or_else(bad)?;
        let i: usize = i.parse().map_err(|_| bad())?;
        let o: usize = o.parse().map_err(|_| bad())?;
        if i == 0 || o == 0 {
            return Err(bad());
        }
        Ok((i, o))
    }

    /// The canonical name, `random-<in>/<out>`.
    pub fn name(&self) -> String {
        format!("random-{}/{}", self.input_len, self.output_len)
    }

    /// Check ranges: lengths ≥ 1, `0 ≤ r < 1`, at least one measured request.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let range = |key, value: String, expected| {
            Err(WorkloadError::OutOfRange {
                key,
                value,
                expected,
            })
        };
        if self.input_len == 0 {
            return range("input_len", "0".into(), "expected at least 1");
        }
        if self.output_len == 0 {
            return range("output_len", "0".into(), "expected at least 1");
        }
        if !(0.0..1.0).contains(&self.range_ratio) {
            return range(
                "range_ratio",
                self.range_ratio.to_string(),
                "expected 0 <= r < 1",
            );
        }
        if self.requests == 0 {
            return range("requests", "0".into(), "expected at least 1");
        }
        for (key, value, max, expected) in [
            (
                "requests",
                self.requests,
                MAX_REQUESTS,
                "expected at most 1000000",
            ),
            (
                "warmup_requests",
                self.warmup_requests,
                MAX_REQUESTS,
                "expected at most 1000000",
            ),
            (
                "input_len",
                self.input_len,
                MAX_LEN,
                "expected at most 1048576 tokens",
            ),
            (
                "output_len",
                self.output_len,
                MAX_LEN,
                "expected at most 1048576 tokens",
            ),
            (
                "prefix_len",
                self.prefix_len,
                MAX_LEN,
                "expected at most 1048576 tokens",
            ),
        ] {
            if value > max {
                return range(key, value.to_string(), expected);
            }
        }
        // Prompts of one repeat are held in memory as u32 ids: bound their total.
        let total = (self.requests + self.warmup_requests) as u128 * self.max_prompt_len() as u128;
        if total > MAX_PROMPT_TOKENS_PER_REPEAT as u128 {
            return range(
                "requests",
                format!(
                    "{} (+{} warmup) × {} prompt tokens = {total} tokens",
                    self.requests,
                    self.warmup_requests,
                    self.max_prompt_len()
                ),
                "expected at most 100000000 prompt tokens per repeat (400 MB of token ids): use fewer requests or shorter prompts",
            );
        }
        Ok(())
    }

    /// Largest prompt length any request can have (for capacity checks and estimates).
    pub fn max_prompt_len(&self) -> usize {
        self.prefix_len + bounds(self.input_len, self.range_ratio).1
    }
}

/// `[⌊L(1−r)⌋, ⌈L(1+r)⌉]` with the low end at least 1.
fn bounds(len: usize, r: f64) -> (usize, usize) {
    let lo = ((len as f64) * (1.0 - r)).floor().max(1.0) as usize;
    let hi = ((len as f64) * (1.0 + r)).ceil() as usize;
    (lo, hi.max(lo))
}

/// The requests of one repeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The repeat's seed (`repeat_seed(base, repeat)`).
    pub seed: u64,
    /// Warmup requests (ids `0..W`), run before the measured ones and not measured.
    pub warmup: Vec<EngineRequest>,
    /// Measured requests (ids `0..N`).
    pub measured: Vec<EngineRequest>,
    /// `"sha256:…"` over this repeat's requests (layout in the module doc).
    pub hash: String,
}

/// Generate repeat `repeat` of `spec` from `base_seed` (see the module doc for the exact procedure).
/// Errors when the spec is out of range or every id is special.
pub fn generate(
    spec: &WorkloadSpec,
    tokens: &TokenSpace,
    base_seed: u64,
    repeat: u32,
) -> Result<Workload, WorkloadError> {
    spec.validate()?;
    let allowed = tokens.allowed();
    if allowed.is_empty() {
        return Err(WorkloadError::OutOfRange {
            key: "vocab_size",
            value: tokens.vocab_size.to_string(),
            expected: "expected at least one non-special token id",
        });
    }
    let seed = rng::repeat_seed(base_seed, repeat);
    let mut rng = rng::chacha(seed, rng::STREAM_PROMPTS);
    let draw_ids = |rng: &mut rand_chacha::ChaCha20Rng, n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| allowed[rng::below(rng, allowed.len() as u64) as usize])
            .collect()
    };
    let prefix = draw_ids(&mut rng, spec.prefix_len);
    let (in_lo, in_hi) = bounds(spec.input_len, spec.range_ratio);
    let (out_lo, out_hi) = bounds(spec.output_len, spec.range_ratio);
    let total = spec.warmup_requests + spec.requests;
    let mut all = Vec::with_capacity(total);
    for _ in 0..total {
        let in_len = rng::between(&mut rng, in_lo as u64, in_hi as u64) as usize;
        let out_len = rng::between(&mut rng, out_lo as u64, out_hi as u64) as usize;
        let mut prompt = Vec::with_capacity(spec.prefix_len + in_len);
        prompt.extend_from_slice(&prefix);
        prompt.extend(draw_ids(&mut rng, in_len));
        all.push((prompt, out_len));
    }
    let measured_part = all.split_off(spec.warmup_requests);
    let to_requests = |v: Vec<(Vec<u32>, usize)>| -> Vec<EngineRequest> {
        v.into_iter()
            .enumerate()
            .map(|(i, (prompt, output_tokens))| EngineRequest {
                id: i as u64,
                prompt,
                output_tokens,
            })
            .collect()
    };
    let warmup = to_requests(all);
    let measured = to_requests(measured_part);
    let hash = workload_hash(&warmup, &measured);
    Ok(Workload {
        seed,
        warmup,
        measured,
        hash,
    })
}

/// `"sha256:…"` over warmup then measured requests (layout in the module doc).
pub fn workload_hash(warmup: &[EngineRequest], measured: &[EngineRequest]) -> String {
    let mut h = Sha256::new();
    h.update(b"ferrum-bench/workload/v1\0");
    h.update((warmup.len() as u64).to_le_bytes());
    h.update((measured.len() as u64).to_le_bytes());
    for r in warmup.iter().chain(measured) {
        h.update((r.prompt.len() as u64).to_le_bytes());
        for id in &r.prompt {
            h.update(id.to_le_bytes());
        }
        h.update((r.output_tokens as u64).to_le_bytes());
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// The workload hash of a whole cell: SHA-256 over the tag `ferrum-bench/workload-set/v1`, a 0
/// byte, the repeat count (u64 LE) and each repeat's hash string (UTF-8, `\n`-terminated).
pub fn combined_hash(repeat_hashes: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(b"ferrum-bench/workload-set/v1\0");
    h.update((repeat_hashes.len() as u64).to_le_bytes());
    for r in repeat_hashes {
        h.update(r.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// The combined workload hash of `repeats` repeats (what every cell of a run shares and what
/// `merge` compares), computed without running anything.
pub fn cell_workload_hash(
    spec: &WorkloadSpec,
    tokens: &TokenSpace,
    base_seed: u64,
    repeats: u32,
) -> Result<String, WorkloadError> {
    let hashes = (0..repeats)
        .map(|r| generate(spec, tokens, base_seed, r).map(|w| w.hash))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(combined_hash(&hashes))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            input_len: 256,
            output_len: 128,
            range_ratio: 0.0,
            prefix_len: 0,
            requests: 32,
            warmup_requests: 4,
        }
    }

    fn vocab() -> TokenSpace {
        TokenSpace::with_special_prefix(151_936, 256)
    }

    #[test]
    fn exact_lengths_without_range_ratio() {
        let w = generate(&spec(), &vocab(), 1, 0).unwrap();
        assert_eq!(w.warmup.len(), 4);
        assert_eq!(w.measured.len(), 32);
        for r in w.warmup.iter().chain(&w.measured) {
            assert_eq!(r.prompt.len(), 256);
            assert_eq!(r.output_tokens, 128);
            assert!(r.prompt.iter().all(|&id| (256..151_936).contains(&id)));
        }
        assert_eq!(w.measured[3].id, 3);
    }

    #[test]
    fn range_ratio_uses_vllm_bounds() {
        assert_eq!(bounds(256, 0.0), (256, 256));
        assert_eq!(bounds(10, 0.25), (7, 13)); // ⌊7.5⌋, ⌈12.5⌉
        assert_eq!(bounds(1, 0.9), (1, 2));
        let s = WorkloadSpec {
            range_ratio: 0.5,
            requests: 400,
            ..spec()
        };
        let w = generate(&s, &vocab(), 5, 0).unwrap();
        let lens: Vec<usize> = w.measured.iter().map(|r| r.prompt.len()).collect();
        assert!(lens.iter().all(|&l| (128..=384).contains(&l)));
        assert!(lens.iter().any(|&l| l < 180) && lens.iter().any(|&l| l > 330));
        assert!(w
            .measured
            .iter()
            .all(|r| (64..=192).contains(&r.output_tokens)));
    }

    #[test]
    fn special_ids_are_never_drawn() {
        let tokens = TokenSpace {
            vocab_size: 10,
            special_ids: vec![0, 3, 9],
        };
        let s = WorkloadSpec {
            input_len: 500,
            ..spec()
        };
        let w = generate(&s, &tokens, 2, 1).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for r in &w.measured {
            seen.extend(r.prompt.iter().copied());
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![1, 2, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn shared_prefix_is_shared_and_added_on_top() {
        let s = WorkloadSpec {
            prefix_len: 16,
            input_len: 8,
            ..spec()
        };
        let w = generate(&s, &vocab(), 3, 0).unwrap();
        let p = &w.warmup[0].prompt[..16];
        assert!(w
            .measured
            .iter()
            .all(|r| r.prompt.len() == 24 && &r.prompt[..16] == p));
        assert_ne!(w.measured[0].prompt[16..], w.measured[1].prompt[16..]);
        assert_eq!(s.max_prompt_len(), 24);
    }

    #[test]
    fn same_seed_same_workload_different_repeat_different_workload() {
        let a = generate(&spec(), &vocab(), 9271, 0).unwrap();
        let b = generate(&spec(), &vocab(), 9271, 0).unwrap();
        let c = generate(&spec(), &vocab(), 9271, 1).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.hash, c.hash);
        assert_ne!(a.measured[0].prompt, c.measured[0].prompt);
        let set = combined_hash(&[a.hash.clone(), c.hash.clone()]);
        assert_ne!(set, combined_hash(&[c.hash, a.hash]));
    }

    #[test]
    fn hash_covers_ids_lengths_and_the_warmup_split() {
        let w = generate(&spec(), &vocab(), 1, 0).unwrap();
        let mut m = w.measured.clone();
        m[5].prompt[7] ^= 1;
        assert_ne!(workload_hash(&w.warmup, &m), w.hash);
        let mut m = w.measured.clone();
        m[5].output_tokens += 1;
        assert_ne!(workload_hash(&w.warmup, &m), w.hash);
        // Moving a request from warmup to measured changes the hash.
        let mut warm = w.warmup.clone();
        let moved = warm.pop().unwrap();
        let mut meas = vec![moved];
        meas.extend(w.measured.iter().cloned());
        assert_ne!(workload_hash(&warm, &meas), w.hash);
    }

    /// Golden values: any change to seeding, range mapping, draw order or hash layout fails here.
    /// Regenerate only with a deliberate, documented workload version bump.
    #[test]
    fn golden_seed_9271() {
        let w = generate(&spec(), &vocab(), 9271, 0).unwrap();
        assert_eq!(w.seed, GOLDEN_SEED);
        assert_eq!(&w.measured[0].prompt[..8], &GOLDEN_FIRST_IDS);
        assert_eq!(w.hash, GOLDEN_HASH);
    }

    const GOLDEN_SEED: u64 = 1_660_591_927_545_435_033;
    const GOLDEN_FIRST_IDS: [u32; 8] = [48468, 88357, 149496, 113588, 1004, 22265, 49923, 123523];
    const GOLDEN_HASH: &str =
        "sha256:57441d1a54217de4daa5ddfd06291d30fe873e233e8a93db88f8b6c40c5bc11b";

    #[test]
    fn names_parse() {
        assert_eq!(WorkloadSpec::parse_name("random-256/128"), Ok((256, 128)));
        assert!(WorkloadSpec::parse_name("random-256").is_err());
        assert!(WorkloadSpec::parse_name("sharegpt").is_err());
        assert!(WorkloadSpec::parse_name("random-0/5").is_err());
        assert_eq!(spec().name(), "random-256/128");
        let bad = WorkloadSpec {
            range_ratio: 1.0,
            ..spec()
        };
        assert!(generate(&bad, &vocab(), 1, 0)
            .unwrap_err()
            .to_string()
            .contains("range_ratio"));
    }
}
