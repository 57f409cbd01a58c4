//! The block manager: block tables, reference counts, copy-on-write, prefix caching and swapping
//! (PagedAttention §4.2–4.5). The block states and the invariant are in the [module
//! notes](super); this file keeps them.
//!
//! Every mutating operation first checks that it can complete (enough free blocks, the sequence
//! exists and is where it must be) and only then mutates, so an `Err` leaves the manager exactly
//! as it was. The only errors raised after mutation began are `Internal` ones, which mean a bug.

mod invariants;

use std::collections::{HashMap, HashSet};

use farmem_error::{Error, ErrorKind, Result};

use super::pool::BlockPool;
use super::prefix_cache::{hash_block, BlockHash, PrefixCache, PrefixCacheStats};
use super::{BlockCopy, BlockId, GroupId, KvConfig, SeqId, SlotRef, TokenId};

/// Whether a prompt can be admitted now (vLLM's `AllocStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocStatus {
    /// Enough free blocks above the watermark: allocate now.
    Ok,
    /// Not now; it fits once running sequences release blocks.
    Later,
    /// Never: the prompt needs more blocks than the device has above the watermark.
    Never,
}

/// The result of [`BlockManager::allocate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The new sequence.
    pub seq: SeqId,
    /// Leading prompt tokens whose KV is already present (prefix-cache hits); the prefill only
    /// needs to compute the rest. It may equal the prompt length: the model still runs the last
    /// prompt token for its logits, rewriting the same KV (vLLM does the same).
    pub cached_tokens: usize,
}

/// The result of [`BlockManager::append_token`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Where the new token's keys and values go.
    pub slot: SlotRef,
    /// Copy-on-write: the shared last block was copied to a private one; perform this device →
    /// device copy before writing `slot`.
    pub copy: Option<BlockCopy>,
}

/// Where a sequence's blocks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residence {
    /// In the device pool: it can run.
    Device,
    /// Swapped out to the host pool: swap its group in before it runs again.
    Host,
}

#[derive(Clone, Debug)]
struct Sequence {
    group: GroupId,
    tokens: Vec<TokenId>,
    /// The block table: logical block `i` → physical block in the pool of `residence`.
    blocks: Vec<BlockId>,
    /// Chained hashes of the full blocks, `tokens.len() / block_size` of them.
    hashes: Vec<BlockHash>,
    salt: Option<u64>,
    residence: Residence,
}

/// Where a host block goes on swap-in.
#[derive(Clone, Copy)]
enum SwapInTarget {
    /// Its contents are still cached on the device: reference that block, copy nothing.
    Reuse(BlockId),
    /// A fresh device block, to be copied into.
    Fresh,
}

/// The PagedAttention KV-cache block manager (see the [module notes](super)).
#[derive(Debug, Clone)]
pub struct BlockManager {
    config: KvConfig,
    device: BlockPool,
    host: BlockPool,
    cache: PrefixCache,
    seqs: HashMap<SeqId, Sequence>,
    groups: HashMap<GroupId, Vec<SeqId>>,
    next_seq: u64,
    watermark_blocks: usize,
}

impl BlockManager {
    /// A manager with all blocks of both pools free.
    pub fn new(config: KvConfig) -> Result<BlockManager> {
        config.validate()?;
        let watermark_blocks = (config.watermark * config.num_device_blocks as f64) as usize;
        Ok(BlockManager {
            device: BlockPool::new("device", config.num_device_blocks),
            host: BlockPool::new("host", config.num_host_blocks),
            cache: PrefixCache::new(config.num_device_blocks),
            seqs: HashMap::new(),
            groups: HashMap::new(),
            next_seq: 0,
            watermark_blocks,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Device blocks admission keeps free.
    pub fn watermark_blocks(&self) -> usize {
        self.watermark_blocks
    }

    // ---- admission and allocation -----------------------------------------------------------

    /// Whether a prompt of `prompt` tokens (with `salt`) can be allocated now, counting prefix
    /// cache hits and keeping the watermark free.
    pub fn can_allocate(&self, prompt: &[TokenId], salt: Option<u64>) -> AllocStatus {
        let total = self.config.blocks_for(prompt.len());
        if prompt.is_empty() || total + self.watermark_blocks > self.config.num_device_blocks {
            return AllocStatus::Never;
        }
        let (_, hits) = self.plan_prompt(prompt, salt);
        if self.num_free_device_blocks() >= self.prompt_cost(total, &hits) + self.watermark_blocks {
            AllocStatus::Ok
        } else {
            AllocStatus::Later
        }
    }

    /// Allocates a new sequence holding `prompt` as the first sequence of the new `group`,
    /// reusing cached blocks of a matching prefix. Ignores the watermark (that is
    /// [`can_allocate`](Self::can_allocate)'s job) but never over-commits: without enough free
    /// blocks it fails with `OutOfDeviceMemory` and changes nothing.
    pub fn allocate(
        &mut self,
        group: GroupId,
        prompt: &[TokenId],
        salt: Option<u64>,
    ) -> Result<Allocation> {
        if prompt.is_empty() {
            return Err(Error::invalid(format!(
                "allocating {group}: the prompt is empty; a sequence needs at least one token"
            )));
        }
        if self.groups.contains_key(&group) {
            return Err(Error::invalid(format!(
                "allocating {group}: the group already exists; fork its sequences or use a new id"
            )));
        }
        let bs = self.config.block_size;
        let total = self.config.blocks_for(prompt.len());
        let (hashes, hits) = self.plan_prompt(prompt, salt);
        let cost = self.prompt_cost(total, &hits);
        if cost > self.num_free_device_blocks() {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!(
                    "allocating {group}: a prompt of {} tokens needs {cost} free device blocks, {} \
                     are free; free or swap out sequences first (check can_allocate)",
                    prompt.len(),
                    self.num_free_device_blocks()
                ),
            ));
        }
        let mut blocks = Vec::with_capacity(total);
        for &b in &hits {
            self.acquire_cached(b)?;
            blocks.push(b);
        }
        for i in hits.len()..total {
            let b = self.alloc_device_block()?;
            if self.config.enable_prefix_caching && i < hashes.len() {
                let parent = i.checked_sub(1).map(|p| hashes[p]);
                self.cache
                    .insert(b, hashes[i], parent, &prompt[i * bs..(i + 1) * bs], salt);
            }
            blocks.push(b);
        }
        if self.config.enable_prefix_caching {
            self.cache.stats.queries += hashes.len() as u64;
            self.cache.stats.hits += hits.len() as u64;
        }
        let seq = self.new_seq_id();
        self.seqs.insert(
            seq,
            Sequence {
                group,
                tokens: prompt.to_vec(),
                blocks,
                hashes,
                salt,
                residence: Residence::Device,
            },
        );
        self.groups.insert(group, vec![seq]);
        Ok(Allocation {
            seq,
            cached_tokens: hits.len() * bs,
        })
    }

    /// Appends one token to `seq`: a new block only when the last one is full; copy-on-write
    /// when the last block is shared with another sequence (PagedAttention §4.4).
    pub fn append_token(&mut self, seq: SeqId, token: TokenId) -> Result<AppendOutcome> {
        let bs = self.config.block_size;
        let s = self.device_seq(seq, "appending to")?;
        let pos = s.tokens.len();
        let last = s.blocks.last().copied();
        let copy = match last {
            Some(last) if pos % bs != 0 => {
                if self.device.ref_count(last) > 1 {
                    let fresh = self.alloc_device_block().map_err(|e| {
                        e.with_context(format!("copy-on-write of {last} for {seq}"))
                    })?;
                    self.release_device_block(last)?;
                    Some(BlockCopy {
                        src: last,
                        dst: fresh,
                    })
                } else {
                    None
                }
            }
            _ => {
                let fresh = self
                    .alloc_device_block()
                    .map_err(|e| e.with_context(format!("appending to {seq}")))?;
                self.seq_mut(seq)?.blocks.push(fresh);
                None
            }
        };
        let caching = self.config.enable_prefix_caching;
        let s = self
            .seqs
            .get_mut(&seq)
            .ok_or_else(|| not_found(seq, "appending to"))?;
        if let (Some(c), Some(slot)) = (copy, s.blocks.last_mut()) {
            *slot = c.dst;
        }
        s.tokens.push(token);
        let block = *s
            .blocks
            .last()
            .ok_or_else(|| Error::internal(format!("{seq} has tokens but no blocks")))?;
        if s.tokens.len() % bs == 0 {
            // The block just filled: name its contents so later prompts can share it.
            let parent = s.hashes.last().copied();
            let full = &s.tokens[s.tokens.len() - bs..];
            let h = hash_block(parent, full, s.salt);
            if caching {
                self.cache.insert(block, h, parent, full, s.salt);
            }
            s.hashes.push(h);
        }
        Ok(AppendOutcome {
            slot: SlotRef {
                block,
                offset: pos % bs,
            },
            copy,
        })
    }

    /// A new sequence in `parent`'s group sharing all of its blocks (parallel sampling, beam
    /// search; PagedAttention §4.4). Costs no block until one of them writes a shared block.
    pub fn fork(&mut self, parent: SeqId) -> Result<SeqId> {
        let child = self.device_seq(parent, "forking")?.clone();
        for &b in &child.blocks {
            self.device.incref(b)?;
        }
        let id = self.new_seq_id();
        let group = child.group;
        self.seqs.insert(id, child);
        self.groups.entry(group).or_default().push(id);
        Ok(id)
    }

    /// Frees `seq` wherever it is; its group disappears with its last sequence.
    pub fn free(&mut self, seq: SeqId) -> Result<()> {
        let s = self
            .seqs
            .remove(&seq)
            .ok_or_else(|| not_found(seq, "freeing"))?;
        // Last block first: the tail of a prefix is evicted before its head.
        for &b in s.blocks.iter().rev() {
            match s.residence {
                Residence::Device => self.release_device_block(b)?,
                Residence::Host => {
                    if self.host.decref(b)? == 0 {
                        self.host.push_free(b)?;
                    }
                }
            }
        }
        if let Some(members) = self.groups.get_mut(&s.group) {
            members.retain(|&m| m != seq);
            if members.is_empty() {
                self.groups.remove(&s.group);
            }
        }
        Ok(())
    }

    /// Frees every sequence of `group` (finished, or preempted by recompute).
    pub fn free_group(&mut self, group: GroupId) -> Result<()> {
        let members = self.group_sequences(group)?.to_vec();
        for seq in members {
            self.free(seq)?;
        }
        Ok(())
    }

    // ---- preemption: swapping -------------------------------------------------------------

    /// Whether `group`'s device blocks fit in the free host pool.
    pub fn can_swap_out(&self, group: GroupId) -> Result<bool> {
        let n = self.distinct_blocks(group, Residence::Device, "swapping out")?;
        Ok(n <= self.host.num_free())
    }

    /// Whether `group` can be swapped in now, keeping the watermark free (ignores the copies a
    /// prefix-cache reuse would save, so it may say no when a swap-in would just fit).
    pub fn can_swap_in(&self, group: GroupId) -> Result<bool> {
        let n = self.distinct_blocks(group, Residence::Host, "swapping in")?;
        Ok(n + self.watermark_blocks <= self.num_free_device_blocks())
    }

    /// Moves `group` to the host pool and returns the device → host block copies to perform
    /// (one per distinct block: blocks shared inside the group are copied once and stay shared).
    /// Fails with `OutOfLocalMemory` when the host pool lacks room.
    pub fn swap_out(&mut self, group: GroupId) -> Result<Vec<BlockCopy>> {
        let needed = self.distinct_blocks(group, Residence::Device, "swapping out")?;
        if needed > self.host.num_free() {
            return Err(Error::new(
                ErrorKind::OutOfLocalMemory,
                format!(
                    "swapping out {group}: needs {needed} host blocks, {} are free; enlarge \
                     num_host_blocks or preempt by recompute",
                    self.host.num_free()
                ),
            ));
        }
        let mut mapping: HashMap<BlockId, BlockId> = HashMap::new();
        let mut copies = Vec::with_capacity(needed);
        for seq in self.group_sequences(group)?.to_vec() {
            let device_blocks = std::mem::take(&mut self.seq_mut(seq)?.blocks);
            let mut host_blocks = Vec::with_capacity(device_blocks.len());
            for &b in &device_blocks {
                let dst = match mapping.get(&b) {
                    Some(&dst) => dst,
                    None => {
                        let dst = self.host.pop_free().ok_or_else(|| {
                            Error::internal(format!("host pool ran dry swapping out {group}"))
                        })?;
                        mapping.insert(b, dst);
                        copies.push(BlockCopy { src: b, dst });
                        dst
                    }
                };
                self.host.incref(dst)?;
                host_blocks.push(dst);
            }
            for &b in device_blocks.iter().rev() {
                self.release_device_block(b)?;
            }
            let s = self.seq_mut(seq)?;
            s.blocks = host_blocks;
            s.residence = Residence::Host;
        }
        Ok(copies)
    }

    /// Moves `group` back to the device and returns the host → device block copies to perform.
    /// A full block whose contents are still cached on the device is referenced instead of
    /// copied. Fails with `OutOfDeviceMemory` when the device lacks room.
    pub fn swap_in(&mut self, group: GroupId) -> Result<Vec<BlockCopy>> {
        let bs = self.config.block_size;
        let members = self.group_sequences(group)?.to_vec();
        let mut plan: HashMap<BlockId, SwapInTarget> = HashMap::new();
        let mut order = Vec::new();
        let mut pinned = HashSet::new();
        for &seq in &members {
            let s = self.seq_ref(seq, "swapping in")?;
            if s.residence != Residence::Host {
                return Err(Error::invalid(format!(
                    "swapping in {group}: {seq} is not swapped out"
                )));
            }
            for (i, &hb) in s.blocks.iter().enumerate() {
                if plan.contains_key(&hb) {
                    continue;
                }
                let cached = match s.hashes.get(i) {
                    Some(&h) if self.config.enable_prefix_caching => {
                        let parent = i.checked_sub(1).map(|p| s.hashes[p]);
                        self.cache
                            .lookup(h, parent, &s.tokens[i * bs..(i + 1) * bs], s.salt)
                    }
                    _ => None,
                };
                let target = match cached {
                    Some(db) => {
                        if self.cache.in_lru(db) {
                            pinned.insert(db);
                        }
                        SwapInTarget::Reuse(db)
                    }
                    None => SwapInTarget::Fresh,
                };
                plan.insert(hb, target);
                order.push(hb);
            }
        }
        let fresh = order
            .iter()
            .filter(|hb| matches!(plan.get(hb), Some(SwapInTarget::Fresh)))
            .count();
        let needed = fresh + pinned.len();
        if needed > self.num_free_device_blocks() {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!(
                    "swapping in {group}: needs {needed} free device blocks, {} are free; wait \
                     for running sequences to finish or preempt more",
                    self.num_free_device_blocks()
                ),
            ));
        }
        // Reused blocks first, so that allocating fresh ones cannot evict them.
        let mut mapping: HashMap<BlockId, BlockId> = HashMap::new();
        for &hb in &order {
            if let Some(&SwapInTarget::Reuse(db)) = plan.get(&hb) {
                self.acquire_cached(db)?;
                self.cache.stats.swap_in_reuses += 1;
                mapping.insert(hb, db);
            }
        }
        let mut copies = Vec::with_capacity(fresh);
        for &hb in &order {
            if let Some(SwapInTarget::Fresh) = plan.get(&hb) {
                let db = self.alloc_device_block()?;
                mapping.insert(hb, db);
                copies.push(BlockCopy { src: hb, dst: db });
            }
        }
        // Each distinct host block now holds one device reference; every further table
        // reference adds one.
        let mut first_use: HashSet<BlockId> = HashSet::new();
        for seq in members {
            let s = self.seq_mut(seq)?;
            let host_blocks = std::mem::take(&mut s.blocks);
            let mut device_blocks = Vec::with_capacity(host_blocks.len());
            for &hb in &host_blocks {
                let db = *mapping
                    .get(&hb)
                    .ok_or_else(|| Error::internal(format!("swap-in plan lost host {hb}")))?;
                if !first_use.insert(hb) {
                    self.device.incref(db)?;
                }
                device_blocks.push(db);
            }
            for &hb in host_blocks.iter().rev() {
                if self.host.decref(hb)? == 0 {
                    self.host.push_free(hb)?;
                }
            }
            if self.config.enable_prefix_caching {
                // Fresh copies of full blocks become shareable again.
                let s = self
                    .seqs
                    .get(&seq)
                    .ok_or_else(|| not_found(seq, "swapping in"))?;
                for (i, &h) in s.hashes.iter().enumerate() {
                    let parent = i.checked_sub(1).map(|p| s.hashes[p]);
                    let tokens = &s.tokens[i * bs..(i + 1) * bs];
                    self.cache
                        .insert(device_blocks[i], h, parent, tokens, s.salt);
                }
            }
            let s = self.seq_mut(seq)?;
            s.blocks = device_blocks;
            s.residence = Residence::Device;
        }
        Ok(copies)
    }

    /// Whether every device-resident sequence of `group` can append one token now: one block
    /// per sequence whose last block is full, and one per copy-on-write of a shared partial
    /// last block — except that when the group holds every reference to it, the last writer
    /// keeps the original.
    pub fn can_append(&self, group: GroupId) -> Result<bool> {
        let mut needed = 0;
        let mut shared_last: HashMap<BlockId, u32> = HashMap::new();
        for &seq in self.group_sequences(group)? {
            let s = self.seq_ref(seq, "checking room to append to")?;
            if s.residence != Residence::Device {
                continue;
            }
            match s.blocks.last() {
                Some(_) if s.tokens.len() % self.config.block_size == 0 => needed += 1,
                Some(&b) if self.device.ref_count(b) > 1 => *shared_last.entry(b).or_default() += 1,
                _ => {}
            }
        }
        for (b, writers) in shared_last {
            needed += writers as usize - usize::from(writers == self.device.ref_count(b));
        }
        Ok(needed <= self.num_free_device_blocks())
    }

    // ---- queries ----------------------------------------------------------------------------

    /// `seq`'s block table (device or host blocks, per [`residence`](Self::residence)).
    pub fn block_table(&self, seq: SeqId) -> Result<&[BlockId]> {
        Ok(&self.seq_ref(seq, "reading the block table of")?.blocks)
    }

    /// `seq`'s token ids, prompt and generated.
    pub fn tokens(&self, seq: SeqId) -> Result<&[TokenId]> {
        Ok(&self.seq_ref(seq, "reading the tokens of")?.tokens)
    }

    /// Where `seq`'s blocks are.
    pub fn residence(&self, seq: SeqId) -> Result<Residence> {
        Ok(self.seq_ref(seq, "locating")?.residence)
    }

    /// The group `seq` belongs to.
    pub fn group_of(&self, seq: SeqId) -> Result<GroupId> {
        Ok(self.seq_ref(seq, "finding the group of")?.group)
    }

    /// The sequences of `group`, oldest first.
    pub fn group_sequences(&self, group: GroupId) -> Result<&[SeqId]> {
        self.groups.get(&group).map(Vec::as_slice).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{group} does not exist (never allocated, or already freed)"),
            )
        })
    }

    /// The device slot holding token `position` of device-resident `seq`.
    pub fn slot(&self, seq: SeqId, position: usize) -> Result<SlotRef> {
        let s = self.device_seq(seq, "locating a slot of")?;
        if position >= s.tokens.len() {
            return Err(Error::invalid(format!(
                "{seq} has {} tokens; position {position} does not exist",
                s.tokens.len()
            )));
        }
        let bs = self.config.block_size;
        Ok(SlotRef {
            block: s.blocks[position / bs],
            offset: position % bs,
        })
    }

    /// Device blocks an allocation may take: the free list plus evictable cached blocks.
    pub fn num_free_device_blocks(&self) -> usize {
        self.device.num_free() + self.cache.lru_len()
    }

    /// Unreferenced cached device blocks (reused by prefix hits, evicted last).
    pub fn num_evictable_blocks(&self) -> usize {
        self.cache.lru_len()
    }

    /// Device blocks referenced by at least one sequence.
    pub fn num_used_device_blocks(&self) -> usize {
        self.config.num_device_blocks - self.num_free_device_blocks()
    }

    /// Free blocks of the host swap pool.
    pub fn num_free_host_blocks(&self) -> usize {
        self.host.num_free()
    }

    /// How many block tables of device-resident sequences name device block `b`.
    pub fn device_ref_count(&self, b: BlockId) -> u32 {
        self.device.ref_count(b)
    }

    /// How many block tables of swapped-out sequences name host block `b`.
    pub fn host_ref_count(&self, b: BlockId) -> u32 {
        self.host.ref_count(b)
    }

    /// Whether device block `b` is registered in the prefix cache.
    pub fn is_cached(&self, b: BlockId) -> bool {
        self.cache.is_cached(b)
    }

    /// Device blocks registered in the prefix cache (in use or evictable).
    pub fn num_cached_blocks(&self) -> usize {
        self.cache.len()
    }

    /// Live sequences (either pool).
    pub fn num_sequences(&self) -> usize {
        self.seqs.len()
    }

    /// Live groups.
    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    /// The prefix cache's counters.
    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.cache.stats
    }

    // ---- internals --------------------------------------------------------------------------

    fn new_seq_id(&mut self) -> SeqId {
        self.next_seq += 1;
        SeqId(self.next_seq - 1)
    }

    /// Hashes of the prompt's full blocks, and the device blocks of its longest cached prefix.
    fn plan_prompt(&self, prompt: &[TokenId], salt: Option<u64>) -> (Vec<BlockHash>, Vec<BlockId>) {
        let bs = self.config.block_size;
        let mut hashes: Vec<BlockHash> = Vec::with_capacity(prompt.len() / bs);
        let mut hits = Vec::new();
        for (i, chunk) in prompt.chunks_exact(bs).enumerate() {
            let parent = hashes.last().copied();
            let h = hash_block(parent, chunk, salt);
            if self.config.enable_prefix_caching && hits.len() == i {
                if let Some(b) = self.cache.lookup(h, parent, chunk, salt) {
                    hits.push(b);
                }
            }
            hashes.push(h);
        }
        (hashes, hits)
    }

    /// Free-or-evictable blocks an allocation of `total` blocks with these hits consumes: every
    /// miss, plus every hit that is evictable now (it leaves the LRU list).
    fn prompt_cost(&self, total: usize, hits: &[BlockId]) -> usize {
        total - hits.len() + hits.iter().filter(|&&b| self.cache.in_lru(b)).count()
    }

    /// A block off the free list, else the least recently used evictable one; referenced once.
    fn alloc_device_block(&mut self) -> Result<BlockId> {
        let b = match self.device.pop_free() {
            Some(b) => b,
            None => self.cache.evict_lru().ok_or_else(|| {
                Error::new(
                    ErrorKind::OutOfDeviceMemory,
                    format!(
                        "all {} device KV blocks are in use; free, swap out or recompute a \
                         sequence group first",
                        self.config.num_device_blocks
                    ),
                )
            })?,
        };
        self.device.incref(b)?;
        Ok(b)
    }

    /// References a cached block (taking it off the LRU list if it was evictable).
    fn acquire_cached(&mut self, b: BlockId) -> Result<()> {
        self.cache.lru_remove(b);
        self.device.incref(b)?;
        Ok(())
    }

    /// Drops one reference; at zero the block becomes evictable if cached, else free.
    fn release_device_block(&mut self, b: BlockId) -> Result<()> {
        if self.device.decref(b)? == 0 {
            if self.cache.is_cached(b) {
                self.cache.lru_push_back(b);
            } else {
                self.device.push_free(b)?;
            }
        }
        Ok(())
    }

    fn distinct_blocks(&self, group: GroupId, want: Residence, what: &str) -> Result<usize> {
        let mut set = HashSet::new();
        for &seq in self.group_sequences(group)? {
            let s = self.seq_ref(seq, what)?;
            if s.residence != want {
                return Err(Error::invalid(format!(
                    "{what} {group}: {seq} is on the {:?} side already",
                    s.residence
                )));
            }
            set.extend(s.blocks.iter().copied());
        }
        Ok(set.len())
    }

    fn seq_ref(&self, seq: SeqId, what: &str) -> Result<&Sequence> {
        self.seqs.get(&seq).ok_or_else(|| not_found(seq, what))
    }

    fn seq_mut(&mut self, seq: SeqId) -> Result<&mut Sequence> {
        self.seqs
            .get_mut(&seq)
            .ok_or_else(|| not_found(seq, "updating"))
    }

    fn device_seq(&self, seq: SeqId, what: &str) -> Result<&Sequence> {
        let s = self.seq_ref(seq, what)?;
        if s.residence != Residence::Device {
            return Err(Error::invalid(format!(
                "{what} {seq}: it is swapped out to the host; swap its group in first"
            )));
        }
        Ok(s)
    }
}

fn not_found(seq: SeqId, what: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("{what} {seq}: no such sequence (never allocated, or already freed)"),
    )
}
