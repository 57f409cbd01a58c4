//! The KV block pools in device memory: [`DeviceBlockStore`] executes the
//! [`BlockManager`](super::BlockManager)'s copy lists as batched stream copies on a [`Device`]
//! (vLLM's cache engine, PagedAttention §4.5).
//!
//! # Layout (one allocation per pool, made once)
//!
//! ```text
//!   device (one Device::alloc):          [ block 0 ][ block 1 ] ... [ block D-1 ]
//!   host   (one Device::alloc_pinned):   [ block 0 ][ block 1 ] ... [ block H-1 ][ staging ]
//!   a block = block_size slots; a slot = slot_bytes (one token's keys and values, all layers)
//!   block b of a pool starts at byte b × block_bytes
//! ```
//!
//! The trailing *staging* block of the pinned allocation is where host-side slot writes and
//! reads (tests, debugging) pass through; the swap pool itself is only ever touched by copies.
//!
//! # Streams and ordering
//!
//! Copies run on a dedicated **copy stream**; the model's kernels run on the **compute stream**.
//! Every batch (a copy-on-write list, a swap-out, a swap-in) is fenced on both sides:
//!
//! ```text
//!   compute: ──[kernels writing KV]──(record compute_done)······(wait copies_done)──[next step]──▶
//!   copy:    ·······(wait compute_done)──[run 0][run 1]...[run k]──(record copies_done)──────────▶
//! ```
//!
//! * the copy stream waits for the compute stream, so a swap-out reads KV the previous step has
//!   finished writing;
//! * the compute stream waits for the copies, so the next step reads swapped-in or copied blocks
//!   only once they landed, and never overwrites a block a swap-out is still reading (the manager
//!   hands swapped-out device blocks straight back to its free list).
//!
//! The host never blocks on a batch; [`DeviceBlockStore::synchronize`] does, and reading the host
//! pool ([`KvStore::host_block_to`]) synchronizes first, as the device contract requires.
//!
//! # Batching
//!
//! A copy list is turned into [`CopyRun`]s by [`coalesce_copies`]: a run of block copies whose
//! sources *and* destinations are both consecutive becomes one copy. The manager allocates from a
//! LIFO free list, so a group's blocks are mostly consecutive and a swap of `N` blocks is a
//! handful of large DMA copies instead of `N` small ones (each costs a fixed setup of a few
//! microseconds). [`CopyMode::PerBlock`] turns coalescing off, for comparison.
//!
//! Semantics equal [`BlockStore`]'s sequential per-block copies exactly: the list is reordered
//! (sorted by source) only when its order cannot matter — all destinations distinct and, for
//! device → device copies, no destination also a source — and otherwise runs are only merged
//! from neighbouring entries whose merged ranges do not overlap. Every block id is checked before
//! anything is enqueued, so a bad list is an error that moves nothing.

use std::collections::HashSet;
use std::sync::Arc;

use farmem_error::{Error, ErrorKind, Result};

use super::{BlockCopy, BlockId, BlockStore, KvConfig, SlotRef};
use crate::device::{Device, DeviceBuffer, Event, PinnedBuffer, Stream};

/// The operations of a KV block store, whatever holds the bytes: [`BlockStore`] (host vectors)
/// or [`DeviceBlockStore`] (device and pinned memory). Block ids are those of the
/// [`BlockManager`](super::BlockManager) that produced the copy lists.
pub trait KvStore {
    /// Bytes per token slot.
    fn slot_bytes(&self) -> usize;

    /// Bytes per block (`slot_bytes × block_size`).
    fn block_bytes(&self) -> usize;

    /// Writes one token's KV (exactly `slot_bytes` bytes) into a device slot.
    fn write_slot(&mut self, slot: SlotRef, bytes: &[u8]) -> Result<()>;

    /// Reads one token's KV from a device slot into `out` (exactly `slot_bytes` long).
    fn read_slot_to(&self, slot: SlotRef, out: &mut [u8]) -> Result<()>;

    /// Reads a whole device block into `out` (exactly `block_bytes` long).
    fn device_block_to(&self, block: BlockId, out: &mut [u8]) -> Result<()>;

    /// Reads a whole host block into `out` (exactly `block_bytes` long).
    fn host_block_to(&self, block: BlockId, out: &mut [u8]) -> Result<()>;

    /// Performs copy-on-write copies (device → device).
    fn copy_blocks(&mut self, copies: &[BlockCopy]) -> Result<()>;

    /// Performs swap-out copies (device → host).
    fn swap_out(&mut self, copies: &[BlockCopy]) -> Result<()>;

    /// Performs swap-in copies (host → device).
    fn swap_in(&mut self, copies: &[BlockCopy]) -> Result<()>;
}

fn check_out_len(what: &str, out: &[u8], want: usize) -> Result<()> {
    if out.len() == want {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what}: the output buffer has {} bytes, it must have exactly {want}",
            out.len()
        )))
    }
}

impl KvStore for BlockStore {
    fn slot_bytes(&self) -> usize {
        BlockStore::slot_bytes(self)
    }

    fn block_bytes(&self) -> usize {
        // Every pool has block 0 (a KvConfig has at least one device block).
        self.device_block(BlockId(0)).map_or(0, <[u8]>::len)
    }

    fn write_slot(&mut self, slot: SlotRef, bytes: &[u8]) -> Result<()> {
        BlockStore::write_slot(self, slot, bytes)
    }

    fn read_slot_to(&self, slot: SlotRef, out: &mut [u8]) -> Result<()> {
        let got = self.read_slot(slot)?;
        check_out_len("reading a KV slot", out, got.len())?;
        out.copy_from_slice(got);
        Ok(())
    }

    fn device_block_to(&self, block: BlockId, out: &mut [u8]) -> Result<()> {
        let got = self.device_block(block)?;
        check_out_len("reading a device KV block", out, got.len())?;
        out.copy_from_slice(got);
        Ok(())
    }

    fn host_block_to(&self, block: BlockId, out: &mut [u8]) -> Result<()> {
        let got = self.host_block(block)?;
        check_out_len("reading a host KV block", out, got.len())?;
        out.copy_from_slice(got);
        Ok(())
    }

    fn copy_blocks(&mut self, copies: &[BlockCopy]) -> Result<()> {
        BlockStore::copy_blocks(self, copies)
    }

    fn swap_out(&mut self, copies: &[BlockCopy]) -> Result<()> {
        BlockStore::swap_out(self, copies)
    }

    fn swap_in(&mut self, copies: &[BlockCopy]) -> Result<()> {
        BlockStore::swap_in(self, copies)
    }
}

/// One coalesced copy: `blocks` consecutive blocks from `src` onwards to `dst` onwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRun {
    /// First block read.
    pub src: BlockId,
    /// First block written.
    pub dst: BlockId,
    /// Number of consecutive blocks (≥ 1).
    pub blocks: u32,
}

/// How [`DeviceBlockStore`] turns a copy list into stream copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyMode {
    /// One copy per run of consecutive blocks ([`coalesce_copies`]); the default.
    Coalesced,
    /// One copy per block (vLLM's `swap_blocks` loop), for comparison.
    PerBlock,
}

/// Coalesces a block copy list into runs (see the module note for when it reorders).
/// `same_pool` says that sources and destinations name the same pool (device → device).
pub fn coalesce_copies(copies: &[BlockCopy], same_pool: bool) -> Vec<CopyRun> {
    let mut list = copies.to_vec();
    let dsts: HashSet<BlockId> = list.iter().map(|c| c.dst).collect();
    let order_free =
        dsts.len() == list.len() && (!same_pool || list.iter().all(|c| !dsts.contains(&c.src)));
    if order_free {
        list.sort_by_key(|c| (c.src, c.dst));
    }
    let mut runs: Vec<CopyRun> = Vec::with_capacity(list.len());
    for c in list {
        if let Some(last) = runs.last_mut() {
            let n = last.blocks;
            let extends = u64::from(last.src.0) + u64::from(n) == u64::from(c.src.0)
                && u64::from(last.dst.0) + u64::from(n) == u64::from(c.dst.0);
            // Within one pool a merged run must not read what it writes (sequential copies would
            // see the new bytes, one DMA would not); in order-free lists this cannot happen.
            let disjoint = !same_pool || {
                let (s, d, m) = (
                    u64::from(last.src.0),
                    u64::from(last.dst.0),
                    u64::from(n) + 1,
                );
                s + m <= d || d + m <= s
            };
            if extends && disjoint {
                last.blocks += 1;
                continue;
            }
        }
        runs.push(CopyRun {
            src: c.src,
            dst: c.dst,
            blocks: 1,
        });
    }
    runs
}

/// The direction of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    OnDevice,
    ToHost,
    ToDevice,
}

/// The KV block pools in device memory, swapping over the copy engine (see the module note).
///
/// Generic over the device so tests can keep a `SimDevice` (and its trace) while a server uses
/// `DeviceBlockStore<dyn Device>` over an `Arc<dyn Device>`.
pub struct DeviceBlockStore<D: Device + ?Sized> {
    device: Arc<D>,
    slot_bytes: u64,
    block_bytes: u64,
    num_device_blocks: u64,
    num_host_blocks: u64,
    /// `Some` until `Drop`.
    device_pool: Option<DeviceBuffer>,
    /// The host swap pool followed by one staging block; `Some` until `Drop`.
    host_pool: Option<PinnedBuffer>,
    copy_stream: Stream,
    compute_stream: Stream,
    compute_done: Event,
    copies_done: Event,
    mode: CopyMode,
    copies_issued: u64,
}

impl<D: Device + ?Sized> DeviceBlockStore<D> {
    /// Allocates the pools for `config` with `slot_bytes` bytes per token slot on `device`, and
    /// creates its copy stream and a compute stream (see [`Self::with_compute_stream`]).
    ///
    /// Fails with `OutOfDeviceMemory` (saying the sizes) when the device pool does not fit,
    /// `OutOfLocalMemory` when the pinned pool cannot be allocated, `InvalidArgument` for sizes
    /// that make no sense. Contents are unspecified until written (as on a GPU).
    pub fn new(device: Arc<D>, config: &KvConfig, slot_bytes: usize) -> Result<Self> {
        let compute = device.create_stream()?;
        Self::with_compute_stream(device, config, slot_bytes, compute)
    }

    /// As [`Self::new`], with the stream the model's kernels run on: batches wait for the work
    /// enqueued on it, and it waits for the batches.
    pub fn with_compute_stream(
        device: Arc<D>,
        config: &KvConfig,
        slot_bytes: usize,
        compute_stream: Stream,
    ) -> Result<Self> {
        config.validate()?;
        let slot = slot_bytes as u64;
        let block_bytes = slot
            .checked_mul(config.block_size as u64)
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "KV slot of {slot_bytes} bytes × {} tokens per block is not a usable block \
                     size; use 1 or more bytes per slot",
                    config.block_size
                ))
            })?;
        let (nd, nh) = (
            config.num_device_blocks as u64,
            config.num_host_blocks as u64,
        );
        let device_bytes = nd.checked_mul(block_bytes).ok_or_else(|| {
            Error::invalid(format!(
                "{nd} device KV blocks of {block_bytes} bytes overflow 64 bits; use fewer blocks"
            ))
        })?;
        let host_bytes = (nh + 1).checked_mul(block_bytes).ok_or_else(|| {
            Error::invalid(format!(
                "{nh} host KV blocks of {block_bytes} bytes overflow 64 bits; use fewer blocks"
            ))
        })?;
        // Streams and events first: they cannot fail half-way through owning the pools.
        let copy_stream = device.create_stream()?;
        let compute_done = device.create_event()?;
        let copies_done = device.create_event()?;
        let device_pool = device.alloc(device_bytes).map_err(|e| {
            let what = format!(
                "allocating the KV device pool of {nd} blocks × {block_bytes} bytes = \
                 {device_bytes} bytes on {} ({} of {} bytes already allocated); lower \
                 num_device_blocks",
                device.describe(),
                device.allocated_bytes(),
                device.capacity_bytes()
            );
            e.with_context(what)
        })?;
        let host_pool = match device.alloc_pinned(host_bytes) {
            Ok(p) => p,
            Err(e) => {
                let _ = device.free(device_pool);
                return Err(Error::new(
                    ErrorKind::OutOfLocalMemory,
                    format!(
                        "allocating the pinned KV swap pool of {nh} blocks (+1 staging) × \
                         {block_bytes} bytes = {host_bytes} bytes: {e}; lower num_host_blocks"
                    ),
                ));
            }
        };
        Ok(DeviceBlockStore {
            device_pool: Some(device_pool),
            host_pool: Some(host_pool),
            slot_bytes: slot,
            block_bytes,
            num_device_blocks: nd,
            num_host_blocks: nh,
            copy_stream,
            compute_stream,
            compute_done,
            copies_done,
            mode: CopyMode::Coalesced,
            copies_issued: 0,
            device,
        })
    }

    /// The device.
    pub fn device(&self) -> &Arc<D> {
        &self.device
    }

    /// The stream the copies run on (record events on it to time a batch).
    pub fn copy_stream(&self) -> Stream {
        self.copy_stream
    }

    /// The stream the model's kernels run on; it waits for every batch.
    pub fn compute_stream(&self) -> Stream {
        self.compute_stream
    }

    /// The event recorded on the copy stream after the last batch.
    pub fn copies_done(&self) -> Event {
        self.copies_done
    }

    /// The device pool (the attention kernels' KV cache argument).
    pub fn device_pool(&self) -> Result<&DeviceBuffer> {
        self.device_pool
            .as_ref()
            .ok_or_else(|| Error::internal("KV device pool used after release"))
    }

    /// Bytes of device memory the pool holds.
    pub fn device_pool_bytes(&self) -> u64 {
        self.num_device_blocks * self.block_bytes
    }

    /// Bytes of pinned host memory the swap pool holds (without the staging block).
    pub fn host_pool_bytes(&self) -> u64 {
        self.num_host_blocks * self.block_bytes
    }

    /// How batches are turned into copies.
    pub fn copy_mode(&self) -> CopyMode {
        self.mode
    }

    /// Sets how batches are turned into copies.
    pub fn set_copy_mode(&mut self, mode: CopyMode) {
        self.mode = mode;
    }

    /// Stream copies issued by batches so far (slot and block reads and writes not counted).
    pub fn copies_issued(&self) -> u64 {
        self.copies_issued
    }

    /// Blocks the host until every batch enqueued so far has completed.
    pub fn synchronize(&self) -> Result<()> {
        self.device.synchronize_stream(self.copy_stream)
    }

    fn pools(&self) -> Result<(&DeviceBuffer, &PinnedBuffer)> {
        match (&self.device_pool, &self.host_pool) {
            (Some(d), Some(h)) => Ok((d, h)),
            _ => Err(Error::internal("KV pools used after release")),
        }
    }

    fn check_block(&self, what: &str, pool: &str, b: BlockId, capacity: u64) -> Result<()> {
        if u64::from(b.0) < capacity {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{what}: {pool} {b} is outside the pool of {capacity} blocks; use block ids of \
                 the BlockManager built from the same KvConfig"
            )))
        }
    }

    fn slot_offset(&self, slot: SlotRef) -> Result<u64> {
        self.check_block("KV slot", "device", slot.block, self.num_device_blocks)?;
        let slots = self.block_bytes / self.slot_bytes;
        if slot.offset as u64 >= slots {
            return Err(Error::invalid(format!(
                "slot offset {} is outside a block of {slots} slots",
                slot.offset
            )));
        }
        Ok(u64::from(slot.block.0) * self.block_bytes + slot.offset as u64 * self.slot_bytes)
    }

    fn staging_offset(&self) -> u64 {
        self.num_host_blocks * self.block_bytes
    }

    /// Makes the copy stream wait for the compute stream's work so far.
    fn fence_before(&self) -> Result<()> {
        self.device
            .record_event(self.compute_done, self.compute_stream)?;
        self.device.wait_event(self.copy_stream, self.compute_done)
    }

    /// Marks the end of a batch and makes the compute stream wait for it.
    fn fence_after(&self) -> Result<()> {
        self.device
            .record_event(self.copies_done, self.copy_stream)?;
        self.device
            .wait_event(self.compute_stream, self.copies_done)
    }

    /// Copies `bytes` from the device pool at `offset` into the staging block and waits.
    fn read_device_bytes(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let (dev, host) = self.pools()?;
        let staging = self.staging_offset();
        self.fence_before()?;
        self.device.copy_to_host(
            self.copy_stream,
            dev,
            offset,
            host,
            staging,
            out.len() as u64,
        )?;
        self.fence_after()?;
        self.device.synchronize_event(self.copies_done)?;
        self.device.read_pinned(host, staging, out)
    }

    fn batch(&mut self, dir: Direction, copies: &[BlockCopy]) -> Result<()> {
        let (what, src_pool, src_cap, dst_pool, dst_cap) = match dir {
            Direction::OnDevice => (
                "copy-on-write",
                "device",
                self.num_device_blocks,
                "device",
                self.num_device_blocks,
            ),
            Direction::ToHost => (
                "swap-out",
                "device",
                self.num_device_blocks,
                "host",
                self.num_host_blocks,
            ),
            Direction::ToDevice => (
                "swap-in",
                "host",
                self.num_host_blocks,
                "device",
                self.num_device_blocks,
            ),
        };
        for c in copies {
            self.check_block(what, src_pool, c.src, src_cap)?;
            self.check_block(what, dst_pool, c.dst, dst_cap)?;
            if dir == Direction::OnDevice && c.src == c.dst {
                return Err(Error::invalid(format!(
                    "copy-on-write from {} onto itself; source and destination must differ",
                    c.src
                )));
            }
        }
        if copies.is_empty() {
            return Ok(());
        }
        let runs = match self.mode {
            CopyMode::Coalesced => coalesce_copies(copies, dir == Direction::OnDevice),
            CopyMode::PerBlock => copies
                .iter()
                .map(|c| CopyRun {
                    src: c.src,
                    dst: c.dst,
                    blocks: 1,
                })
                .collect(),
        };
        let (dev, host) = self.pools()?;
        let (s, bb) = (self.copy_stream, self.block_bytes);
        self.fence_before()?;
        for r in &runs {
            let (src, dst, len) = (
                u64::from(r.src.0) * bb,
                u64::from(r.dst.0) * bb,
                u64::from(r.blocks) * bb,
            );
            match dir {
                Direction::OnDevice => self.device.copy_on_device(s, dev, src, dev, dst, len)?,
                Direction::ToHost => self.device.copy_to_host(s, dev, src, host, dst, len)?,
                Direction::ToDevice => self.device.copy_to_device(s, host, src, dev, dst, len)?,
            }
        }
        self.fence_after()?;
        self.copies_issued += runs.len() as u64;
        Ok(())
    }
}

impl<D: Device + ?Sized> KvStore for DeviceBlockStore<D> {
    fn slot_bytes(&self) -> usize {
        self.slot_bytes as usize
    }

    fn block_bytes(&self) -> usize {
        self.block_bytes as usize
    }

    fn write_slot(&mut self, slot: SlotRef, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != self.slot_bytes {
            return Err(Error::invalid(format!(
                "writing {slot:?}: got {} bytes, a slot holds {}",
                bytes.len(),
                self.slot_bytes
            )));
        }
        let offset = self.slot_offset(slot)?;
        let (dev, host) = self.pools()?;
        let staging = self.staging_offset();
        // The staging block is reused: the previous write through it has completed (every
        // staged transfer below ends in a synchronize).
        self.device.write_pinned(host, staging, bytes)?;
        self.fence_before()?;
        self.device.copy_to_device(
            self.copy_stream,
            host,
            staging,
            dev,
            offset,
            self.slot_bytes,
        )?;
        self.fence_after()?;
        self.device.synchronize_event(self.copies_done)
    }

    fn read_slot_to(&self, slot: SlotRef, out: &mut [u8]) -> Result<()> {
        check_out_len("reading a KV slot", out, self.slot_bytes as usize)?;
        let offset = self.slot_offset(slot)?;
        self.read_device_bytes(offset, out)
    }

    fn device_block_to(&self, block: BlockId, out: &mut [u8]) -> Result<()> {
        check_out_len("reading a device KV block", out, self.block_bytes as usize)?;
        self.check_block("reading a block", "device", block, self.num_device_blocks)?;
        self.read_device_bytes(u64::from(block.0) * self.block_bytes, out)
    }

    fn host_block_to(&self, block: BlockId, out: &mut [u8]) -> Result<()> {
        check_out_len("reading a host KV block", out, self.block_bytes as usize)?;
        self.check_block("reading a block", "host", block, self.num_host_blocks)?;
        let (_, host) = self.pools()?;
        // Swap-outs write the host pool by DMA: wait for them before the CPU reads it.
        self.synchronize()?;
        self.device
            .read_pinned(host, u64::from(block.0) * self.block_bytes, out)
    }

    fn copy_blocks(&mut self, copies: &[BlockCopy]) -> Result<()> {
        self.batch(Direction::OnDevice, copies)
    }

    fn swap_out(&mut self, copies: &[BlockCopy]) -> Result<()> {
        self.batch(Direction::ToHost, copies)
    }

    fn swap_in(&mut self, copies: &[BlockCopy]) -> Result<()> {
        self.batch(Direction::ToDevice, copies)
    }
}

impl<D: Device + ?Sized> Drop for DeviceBlockStore<D> {
    fn drop(&mut self) {
        // Queued copies and kernels may still use the pools: wait before freeing them.
        let _ = self.device.synchronize_stream(self.copy_stream);
        let _ = self.device.synchronize_stream(self.compute_stream);
        if let Some(p) = self.device_pool.take() {
            let _ = self.device.free(p);
        }
        if let Some(p) = self.host_pool.take() {
            let _ = self.device.free_pinned(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(src: u32, dst: u32) -> BlockCopy {
        BlockCopy {
            src: BlockId(src),
            dst: BlockId(dst),
        }
    }

    fn run(src: u32, dst: u32, blocks: u32) -> CopyRun {
        CopyRun {
            src: BlockId(src),
            dst: BlockId(dst),
            blocks,
        }
    }

    #[test]
    fn consecutive_sources_and_destinations_merge() {
        let list = [c(4, 0), c(5, 1), c(6, 2), c(9, 3), c(10, 7)];
        assert_eq!(
            coalesce_copies(&list, false),
            vec![run(4, 0, 3), run(9, 3, 1), run(10, 7, 1)]
        );
        assert!(coalesce_copies(&[], false).is_empty());
    }

    #[test]
    fn order_free_lists_are_sorted_first() {
        let list = [c(6, 2), c(4, 0), c(5, 1)];
        assert_eq!(coalesce_copies(&list, false), vec![run(4, 0, 3)]);
    }

    #[test]
    fn order_dependent_lists_keep_their_order() {
        // A chain within the device pool: 1 → 2 must read 1 after 0 → 1 wrote it, so the list
        // is neither sorted nor merged into one overlapping copy.
        let list = [c(0, 1), c(1, 2)];
        assert_eq!(
            coalesce_copies(&list, true),
            vec![run(0, 1, 1), run(1, 2, 1)]
        );
        // The same ids across pools do not conflict.
        assert_eq!(coalesce_copies(&list, false), vec![run(0, 1, 2)]);
        // A duplicate destination: the last copy wins, so order is kept.
        let dup = [c(3, 0), c(2, 0)];
        assert_eq!(
            coalesce_copies(&dup, false),
            vec![run(3, 0, 1), run(2, 0, 1)]
        );
    }
}
