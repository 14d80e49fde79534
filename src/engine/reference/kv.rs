//! Paged KV cache: 16-token blocks, a free-list allocator with reference counts, per-sequence
//! block tables, and optional prefix sharing of full prompt blocks.
//!
//! Sizing follows Ferrum's `ensure_kv`: the pool has `FERRUM_PAGED_MAX_SEQS × ⌈kv_capacity/16⌉`
//! blocks (here additionally capped by the resolved `kv_block_count`), and a sequence reserves
//! all `⌈kv_capacity/16⌉` blocks of its capacity when it is admitted, not as it grows. With the
//! prefix cache on, the leading full blocks of a prompt that another sequence already computed
//! are shared (reference-counted) instead of reserved and recomputed.

use std::collections::{HashMap, VecDeque};

use half::f16;

use super::spec::Dtype;

/// Tokens per KV block.
pub const BLOCK_SIZE: usize = 16;

/// Storage of one layer's K or V pool.
#[derive(Debug, Clone)]
enum KvBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// One layer's K and V pools: `blocks × 16` slots of `num_kv_heads × head_dim` values.
#[derive(Debug, Clone)]
pub struct LayerKv {
    k: KvBuf,
    v: KvBuf,
    width: usize,
}

impl LayerKv {
    /// Pools for `blocks` blocks of `width`-wide slots.
    pub fn new(blocks: usize, width: usize, dtype: Dtype) -> LayerKv {
        let n = blocks * BLOCK_SIZE * width;
        let make = || match dtype {
            Dtype::Fp32 => KvBuf::F32(vec![0.0; n]),
            Dtype::Fp16 => KvBuf::F16(vec![f16::ZERO; n]),
        };
        LayerKv {
            k: make(),
            v: make(),
            width,
        }
    }

    /// Stores K and V of one token at `slot`.
    pub fn write(&mut self, slot: usize, k: &[f32], v: &[f32]) {
        let w = self.width;
        for (buf, src) in [(&mut self.k, k), (&mut self.v, v)] {
            match buf {
                KvBuf::F32(d) => d[slot * w..(slot + 1) * w].copy_from_slice(src),
                KvBuf::F16(d) => {
                    for (o, s) in d[slot * w..(slot + 1) * w].iter_mut().zip(src) {
                        *o = f16::from_f32(*s);
                    }
                }
            }
        }
    }

    /// Reads the K (`value = false`) or V (`value = true`) slot into `out`.
    pub fn read(&self, slot: usize, value: bool, out: &mut [f32]) {
        let w = self.width;
        match if value { &self.v } else { &self.k } {
            KvBuf::F32(d) => out.copy_from_slice(&d[slot * w..(slot + 1) * w]),
            KvBuf::F16(d) => {
                for (o, s) in out.iter_mut().zip(&d[slot * w..(slot + 1) * w]) {
                    *o = s.to_f32();
                }
            }
        }
    }

    /// The whole K or V pool when stored as f32 (slot `s` starts at `s × width`).
    pub fn pool_f32(&self, value: bool) -> Option<&[f32]> {
        match if value { &self.v } else { &self.k } {
            KvBuf::F32(d) => Some(d),
            KvBuf::F16(_) => None,
        }
    }

    /// The K or V slot as an f32 slice when stored as f32 (fast path, no copy).
    pub fn slice_f32(&self, slot: usize, value: bool) -> Option<&[f32]> {
        let w = self.width;
        match if value { &self.v } else { &self.k } {
            KvBuf::F32(d) => Some(&d[slot * w..(slot + 1) * w]),
            KvBuf::F16(_) => None,
        }
    }
}

/// Physical slot of position `pos` for a sequence with block table `blocks`.
pub fn slot(blocks: &[u32], pos: usize) -> usize {
    blocks[pos / BLOCK_SIZE] as usize * BLOCK_SIZE + pos % BLOCK_SIZE
}

/// Blocks a reservation obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The block table: shared prefix blocks first, then fresh ones.
    pub blocks: Vec<u32>,
    /// Leading blocks shared from the prefix cache (their tokens need no prefill).
    pub shared_blocks: usize,
}

/// A cached prefix block.
#[derive(Debug, Clone)]
struct CachedBlock {
    block: u32,
    parent: u64,
    tokens: Vec<u32>,
}

/// Block allocator for all layers (every layer uses the same block indices).
#[derive(Debug)]
pub struct BlockPool {
    total: usize,
    free: Vec<u32>,
    refcount: Vec<u32>,
    prefix_enabled: bool,
    /// Chain key → cached block.
    cache: HashMap<u64, CachedBlock>,
    /// Cached blocks in least-recently-used order (front = oldest).
    lru: VecDeque<u32>,
    /// Cached blocks by block id → key.
    cached_key: HashMap<u32, u64>,
    /// Prefix blocks served from the cache.
    pub hits: u64,
}

impl BlockPool {
    /// A pool of `total` blocks.
    pub fn new(total: usize, prefix_enabled: bool) -> BlockPool {
        BlockPool {
            total,
            // Popped from the back: block 0 is handed out first.
            free: (0..total as u32).rev().collect(),
            refcount: vec![0; total],
            prefix_enabled,
            cache: HashMap::new(),
            lru: VecDeque::new(),
            cached_key: HashMap::new(),
            hits: 0,
        }
    }

    /// Pool size in blocks.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Blocks held by sequences (cached blocks no sequence uses count as free).
    pub fn in_use(&self) -> usize {
        self.total - self.free.len() - self.idle_cached()
    }

    fn idle_cached(&self) -> usize {
        self.lru
            .iter()
            .filter(|b| self.refcount[**b as usize] == 1)
            .count()
    }

    /// Reserves `blocks_needed` blocks for a sequence with `prompt`, sharing cached prefix blocks
    /// when enabled. Returns `None` (and changes nothing) if the pool cannot supply them.
    pub fn reserve(&mut self, prompt: &[u32], blocks_needed: usize) -> Option<Reservation> {
        let mut shared = Vec::new();
        if self.prefix_enabled {
            // At least one prompt token must be prefilled to produce the first output's logits,
            // and it must land in a block of this sequence's own.
            let max_shared = prompt.len().saturating_sub(1) / BLOCK_SIZE;
            let mut parent = 0u64;
            for j in 0..max_shared.min(blocks_needed) {
                let toks = &prompt[j * BLOCK_SIZE..(j + 1) * BLOCK_SIZE];
                let key = chain_key(parent, toks);
                match self.cache.get(&key) {
                    Some(c) if c.parent == parent && c.tokens == toks => shared.push(c.block),
                    _ => break,
                }
                parent = key;
            }
        }
        let fresh = blocks_needed - shared.len();
        let evictable = self
            .lru
            .iter()
            .filter(|b| self.refcount[**b as usize] == 1 && !shared.contains(b))
            .count();
        if self.free.len() + evictable < fresh {
            return None;
        }
        for b in &shared {
            self.refcount[*b as usize] += 1;
            self.touch(*b);
        }
        self.hits += shared.len() as u64;
        let mut blocks = shared.clone();
        for _ in 0..fresh {
            if self.free.is_empty() {
                self.evict_one();
            }
            let b = self.free.pop().expect("capacity was checked above");
            self.refcount[b as usize] = 1;
            blocks.push(b);
        }
        Some(Reservation {
            blocks,
            shared_blocks: shared.len(),
        })
    }

    /// Offers full prompt block `j` (already written) of a sequence to the prefix cache.
    pub fn register_prefix_block(&mut self, prompt: &[u32], j: usize, block: u32) {
        if !self.prefix_enabled || (j + 1) * BLOCK_SIZE > prompt.len() {
            return;
        }
        let mut parent = 0u64;
        for i in 0..j {
            parent = chain_key(parent, &prompt[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE]);
        }
        let toks = &prompt[j * BLOCK_SIZE..(j + 1) * BLOCK_SIZE];
        let key = chain_key(parent, toks);
        if self.cache.contains_key(&key) || self.cached_key.contains_key(&block) {
            return;
        }
        // The cache holds its own reference so the block outlives the sequence.
        self.refcount[block as usize] += 1;
        self.cache.insert(
            key,
            CachedBlock {
                block,
                parent,
                tokens: toks.to_vec(),
            },
        );
        self.cached_key.insert(block, key);
        self.lru.push_back(block);
    }

    /// Returns a sequence's blocks.
    pub fn release(&mut self, blocks: &[u32]) {
        for b in blocks {
            let rc = &mut self.refcount[*b as usize];
            *rc -= 1;
            if *rc == 0 {
                self.free.push(*b);
            }
        }
    }

    fn touch(&mut self, block: u32) {
        if let Some(i) = self.lru.iter().position(|b| *b == block) {
            self.lru.remove(i);
            self.lru.push_back(block);
        }
    }

    fn evict_one(&mut self) {
        let i = self
            .lru
            .iter()
            .position(|b| self.refcount[*b as usize] == 1)
            .expect("an idle cached block exists when free blocks run out");
        let b = self.lru.remove(i).expect("index from position");
        if let Some(key) = self.cached_key.remove(&b) {
            self.cache.remove(&key);
        }
        self.refcount[b as usize] = 0;
        self.free.push(b);
    }
}

/// FNV-1a over the parent key and the block's tokens: a stable chain key for a token prefix.
fn chain_key(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ parent;
    for t in tokens {
        for b in t.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_release_and_exhaustion() {
        let mut pool = BlockPool::new(6, false);
        let a = pool.reserve(&[1; 20], 3).unwrap();
        let b = pool.reserve(&[2; 20], 3).unwrap();
        assert_eq!(pool.in_use(), 6);
        assert!(pool.reserve(&[3; 5], 1).is_none());
        pool.release(&a.blocks);
        assert_eq!(pool.in_use(), 3);
        let c = pool.reserve(&[3; 5], 3).unwrap();
        assert!(c.blocks.iter().all(|x| !b.blocks.contains(x)));
    }

    #[test]
    fn prefix_blocks_are_shared_refcounted_and_evicted_when_idle() {
        let mut pool = BlockPool::new(6, true);
        let prompt: Vec<u32> = (0..40).collect();
        let a = pool.reserve(&prompt, 3).unwrap();
        assert_eq!(a.shared_blocks, 0);
        pool.register_prefix_block(&prompt, 0, a.blocks[0]);
        pool.register_prefix_block(&prompt, 1, a.blocks[1]);
        let b = pool.reserve(&prompt, 3).unwrap();
        assert_eq!((b.shared_blocks, &b.blocks[..2]), (2, &a.blocks[..2]));
        assert_eq!(pool.hits, 2);
        assert_eq!(pool.in_use(), 4);
        pool.release(&a.blocks);
        pool.release(&b.blocks);
        // Both cached blocks are idle now and count as free.
        assert_eq!(pool.in_use(), 0);
        // A different prompt needing the whole pool evicts them.
        let c = pool.reserve(&[9; 90], 6).unwrap();
        assert_eq!(c.shared_blocks, 0);
        let d = pool.reserve(&prompt, 1);
        assert!(d.is_none());
    }

    #[test]
    fn f16_storage_roundtrips_within_half_precision() {
        let mut kv = LayerKv::new(2, 4, Dtype::Fp16);
        kv.write(
            slot(&[1, 0], 3),
            &[0.1, -2.0, 3.5, 0.0],
            &[1.0, 2.0, 3.0, 4.0],
        );
        let mut out = [0f32; 4];
        kv.read(19, false, &mut out);
        assert!((out[0] - 0.1).abs() < 1e-3 && out[1] == -2.0);
        kv.read(19, true, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
        assert!(kv.slice_f32(19, true).is_none());
    }
}
