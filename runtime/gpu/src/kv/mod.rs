//! KV-cache block manager for LLM serving, after vLLM's PagedAttention (SOSP'23) and its v1
//! automatic prefix caching.
//!
//! # The idea
//!
//! The attention keys and values of a sequence (its *KV cache*) grow by one token per decoding
//! step and their final length is unknown. Reserving a contiguous chunk of the maximum length per
//! request wastes most of the GPU memory (PagedAttention §3). Instead the memory is cut into
//! fixed-size **blocks** of `block_size` token slots (16 by default), preallocated once; every
//! sequence has a **block table** mapping its logical blocks to physical ones, like a page table:
//!
//! ```text
//!   sequence 7 tokens:  [t0 .. t15][t16 .. t31][t32 t33 _ _ ...]     logical blocks 0, 1, 2
//!   block table:             5          9           2               physical device blocks
//!   device pool:   [0][1][2][3][4][5][6][7][8][9] ...   free list: 0 1 3 4 6 7 8 ...
//! ```
//!
//! # States of a physical device block (the invariant every operation keeps)
//!
//! ```text
//!            allocate                      last table reference dropped
//!   FREE ───────────────▶ IN USE (ref ≥ 1) ──────────────────────────────▶ FREE        (not cached)
//!     ▲                    │        ▲       ──────────────────────────────▶ EVICTABLE   (cached)
//!     │   evict (free      │        │ prefix-cache hit / swap-in reuse           │
//!     └── list empty) ─────┼────────┴───────────────────────────────────────────┘
//! ```
//!
//! * **free**: on the free list, reference count 0, not in the prefix cache;
//! * **in use**: reference count = the number of block tables (of device-resident sequences)
//!   naming it, ≥ 1; never on the free list nor in the LRU list;
//! * **evictable**: reference count 0 but its contents are still registered in the prefix cache
//!   under their chained hash; kept in LRU order and reused only when the free list is empty.
//!
//! A block is in exactly one state; [`BlockManager::check_invariants`] verifies all of this (and
//! the host pool's reference counts) and the property tests call it after every operation.
//!
//! # Who owns what
//!
//! * [`BlockManager`] owns every block table, both pools' reference counts and the prefix cache.
//!   It is pure bookkeeping: it never touches KV bytes. Operations that need bytes moved return
//!   the moves to perform — [`BlockCopy`] lists for copy-on-write (device → device), swap-out
//!   (device → host) and swap-in (host → device) — and the caller's executor performs them before
//!   the next model step reads those blocks.
//! * [`KvStore`] executes those lists. [`BlockStore`] does it over two `Vec<u8>` pools (the
//!   reference the tests compare against); [`DeviceBlockStore`] does it on a real or simulated
//!   GPU (`crate::device`): one device allocation for the block pool, one pinned host
//!   allocation for the swap pool, and batched stream copies fenced against the compute stream.
//! * [`Scheduler`] is a continuous-batching scheduler (vLLM/Orca iteration-level scheduling) over
//!   a [`BlockManager`]: waiting, running and swapped queues, preemption by swap or recompute.
//!
//! Every operation costs O(1) per block it touches (free list, hash map, intrusive LRU list).
//! Impossible requests return an [`Error`] — `OutOfDeviceMemory`, `OutOfLocalMemory`
//! (the host swap pool, a pool sized by configuration), `InvalidArgument` or `NotFound` — and
//! leave the manager unchanged; nothing in this module panics on caller input.

mod device_store;
mod manager;
mod pool;
mod prefix_cache;
pub mod scheduler;
mod storage;

use std::fmt;

use farmem_error::{Error, Result};

pub use device_store::{coalesce_copies, CopyMode, CopyRun, DeviceBlockStore, KvStore};
pub use manager::{AllocStatus, Allocation, AppendOutcome, BlockManager, Residence};
pub use prefix_cache::{hash_block, BlockHash, PrefixCacheStats};
pub use scheduler::{
    synthetic_token, PreemptionMode, Request, Scheduler, SchedulerConfig, SchedulerStats,
    StepOutcome,
};
pub use storage::BlockStore;

/// A token id of the model's vocabulary.
pub type TokenId = u32;

/// A physical block of one pool (device or host): its index in that pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub u32);

impl BlockId {
    /// The block's index in its pool.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.0)
    }
}

/// A sequence (one generation stream), assigned by the [`BlockManager`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(pub u64);

impl fmt::Display for SeqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sequence {}", self.0)
    }
}

/// A sequence group: one request and all the sequences it samples (parallel sampling, beams).
/// Chosen by the caller (typically the request id); swapping works on whole groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}", self.0)
    }
}

/// One block-sized copy to perform: copy-on-write (device → device), swap-out (device → host) or
/// swap-in (host → device); which pools `src` and `dst` name is fixed by the operation that
/// returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockCopy {
    /// The block read.
    pub src: BlockId,
    /// The block written.
    pub dst: BlockId,
}

/// Where a token's keys and values live: a device block and the slot (token offset) inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotRef {
    /// The physical device block.
    pub block: BlockId,
    /// The token's offset inside the block, `0..block_size`.
    pub offset: usize,
}

/// Configuration of a [`BlockManager`]: the pools' sizes and the policies.
#[derive(Clone, Debug, PartialEq)]
pub struct KvConfig {
    /// Token slots per block (vLLM's default is 16).
    pub block_size: usize,
    /// Blocks preallocated on the device.
    pub num_device_blocks: usize,
    /// Blocks of the host swap pool.
    pub num_host_blocks: usize,
    /// Fraction of device blocks admission keeps free so that running sequences can grow without
    /// immediate preemption (vLLM's watermark, default 0.01).
    pub watermark: f64,
    /// Reuse full blocks of identical prompt prefixes (vLLM v1 automatic prefix caching).
    pub enable_prefix_caching: bool,
}

impl KvConfig {
    /// Defaults (16-token blocks, 1% watermark, prefix caching on) for the given pool sizes.
    pub fn new(num_device_blocks: usize, num_host_blocks: usize) -> KvConfig {
        KvConfig {
            block_size: 16,
            num_device_blocks,
            num_host_blocks,
            watermark: 0.01,
            enable_prefix_caching: true,
        }
    }

    /// Checks that the sizes and fractions make sense.
    pub fn validate(&self) -> Result<()> {
        if self.block_size == 0 || self.block_size > 1 << 16 {
            return Err(Error::invalid(format!(
                "KV block size {} tokens is out of range; use 1..=65536 (16 is typical)",
                self.block_size
            )));
        }
        if self.num_device_blocks == 0 || self.num_device_blocks > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "{} device KV blocks is out of range; use 1..=2^32-1",
                self.num_device_blocks
            )));
        }
        if self.num_host_blocks > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "{} host KV blocks is out of range; use at most 2^32-1",
                self.num_host_blocks
            )));
        }
        if !(0.0..1.0).contains(&self.watermark) {
            return Err(Error::invalid(format!(
                "KV watermark {} is not a fraction in [0, 1); 0.01 is typical",
                self.watermark
            )));
        }
        Ok(())
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }
}
