//! The executor: a [`PageLedger`] over one pool of real device memory, whose page moves are
//! carried out as real copies through the [`Device`] trait.
//!
//! ```text
//!   device pool (one DeviceBuffer, allocated once, PipeSwitch-style)
//!   ┌────────┬────────┬────────┬─────┐        host slots (pinned, one page each, made lazily)
//!   │frame 0 │frame 1 │frame 2 │ ... │  ◄──►  [slot 0] [slot 1] ...
//!   └────────┴────────┴────────┴─────┘        evict: copy_to_host, restore: copy_to_device
//! ```
//!
//! Ordering (CUDA stream semantics, see [`crate::device`]): every page copy is enqueued on one
//! *paging stream*, in the order the ledger returned them, so an eviction always completes
//! before a restore that reuses its frame or a slot it frees. Nothing blocks the host:
//!
//! * before an eviction the paging stream waits for the work already enqueued on every
//!   opportunistic tenant's stream (a kernel may still be reading the page);
//! * after the copies, the stream of the tenant that caused them, and the streams of tenants
//!   whose pages came back, wait for the paging stream. A tenant's stream is therefore always
//!   ordered after every copy that placed its pages.
//!
//! What the caller owes (the same contract as [`Device::free`]): work touching an allocation
//! must be complete before the allocation is freed, and a tenant's kernels read a page only
//! through [`SharedDevice::page_range`] after [`SharedDevice::access`] made it resident, on the
//! stream the tenant was registered with.

use std::collections::BTreeMap;
use std::sync::Arc;

use farmem_error::{Error, ErrorKind, Result};

use super::ledger::{AllocationId, PageLedger, PageMove, PageState, PageStats, Priority, TenantId};
use crate::device::{Device, DeviceBuffer, DeviceRange, Event, PinnedBuffer, Stream};

/// One device's memory shared by prioritized tenants, oversubscribed onto host memory (TGS §4.2).
pub struct SharedDevice<D: Device + ?Sized> {
    device: Arc<D>,
    ledger: PageLedger,
    /// The whole pool; `None` only while dropping.
    pool: Option<DeviceBuffer>,
    /// Host backing of evicted pages, indexed by [`super::HostSlot`].
    slots: Vec<Option<PinnedBuffer>>,
    /// One page of pinned memory for host reads and writes.
    staging: Option<PinnedBuffer>,
    paging: Stream,
    paging_done: Event,
    /// Scratch event that orders the paging stream after a tenant stream.
    fence: Event,
    streams: BTreeMap<TenantId, Stream>,
}

impl<D: Device + ?Sized> SharedDevice<D> {
    /// Carves a pool of `pool_bytes` (rounded down to whole pages of `page_size`) out of
    /// `device` and shares it. Fails with [`ErrorKind::OutOfDeviceMemory`] if the pool does not
    /// fit the device.
    pub fn new(device: Arc<D>, pool_bytes: u64, page_size: u64) -> Result<SharedDevice<D>> {
        let ledger = PageLedger::new(pool_bytes, page_size)?;
        let pool_bytes = u64::from(ledger.capacity_pages()) * page_size;
        let pool = device.alloc(pool_bytes).map_err(|e| {
            e.with_context(format!("allocating the shared pool of {pool_bytes} bytes"))
        })?;
        // Streams and events have no free in the device API; the pinned staging buffer comes
        // last so that a failure leaves only the pool to give back.
        let made = (|| {
            let paging = device.create_stream()?;
            let paging_done = device.create_event()?;
            let fence = device.create_event()?;
            let staging = device.alloc_pinned(page_size)?;
            Ok::<_, Error>((staging, paging, paging_done, fence))
        })();
        let (staging, paging, paging_done, fence) = match made {
            Ok(parts) => parts,
            Err(e) => {
                let _ = device.free(pool);
                return Err(e);
            }
        };
        Ok(SharedDevice {
            device,
            ledger,
            pool: Some(pool),
            slots: Vec::new(),
            staging: Some(staging),
            paging,
            paging_done,
            fence,
            streams: BTreeMap::new(),
        })
    }

    /// The device underneath.
    pub fn device(&self) -> &Arc<D> {
        &self.device
    }

    /// The page accounting (read-only: every change goes through this executor).
    pub fn ledger(&self) -> &PageLedger {
        &self.ledger
    }

    /// Page traffic so far.
    pub fn stats(&self) -> PageStats {
        self.ledger.stats()
    }

    /// The stream page copies run on.
    pub fn paging_stream(&self) -> Stream {
        self.paging
    }

    /// Registers a tenant whose kernels and copies run on `stream` (made by the same device).
    pub fn add_tenant(&mut self, priority: Priority, stream: Stream) -> TenantId {
        let id = self.ledger.add_tenant(priority);
        self.streams.insert(id, stream);
        id
    }

    /// Frees every allocation of `tenant` and forgets it (its work must be complete).
    pub fn remove_tenant(&mut self, tenant: TenantId) -> Result<()> {
        self.ledger.remove_tenant(tenant)?;
        self.streams.remove(&tenant);
        Ok(())
    }

    /// Allocates `bytes` for `tenant`; a production allocation evicts opportunistic pages when
    /// memory is short. The tenant's stream is ordered after those evictions.
    pub fn allocate(&mut self, tenant: TenantId, bytes: u64) -> Result<AllocationId> {
        let (id, moves) = self.ledger.allocate(tenant, bytes)?;
        self.execute(&moves, Some(tenant))?;
        Ok(id)
    }

    /// Frees `allocation` (work touching it must be complete). Evicted pages come back into the
    /// freed frames on [`restore`](Self::restore) or when touched.
    pub fn free(&mut self, allocation: AllocationId) -> Result<()> {
        self.ledger.free(allocation)
    }

    /// Brings up to `limit` evicted pages back into free frames (most recently used first); the
    /// owners' streams are ordered after the copies. Returns how many pages were restored.
    pub fn restore(&mut self, limit: u32) -> Result<u32> {
        let moves = self.ledger.restore(limit)?;
        self.execute(&moves, None)?;
        Ok(moves.len() as u32)
    }

    /// Makes pages `first..first + count` of `allocation` resident (faulting them in) and
    /// orders the owner's stream after the copies.
    pub fn access(&mut self, allocation: AllocationId, first: u32, count: u32) -> Result<()> {
        let tenant = self.ledger.allocation_tenant(allocation)?;
        let moves = self.ledger.access(allocation, first, count)?;
        self.execute(&moves, Some(tenant))
    }

    /// The device range holding page `page` of `allocation`, for a kernel's
    /// [`ComputeStep::reads`](crate::device::ComputeStep). The page must be resident: call
    /// [`access`](Self::access) first.
    pub fn page_range(&self, allocation: AllocationId, page: u32) -> Result<DeviceRange<'_>> {
        match self.ledger.page_state(allocation, page)? {
            PageState::Resident(frame) => Ok(DeviceRange {
                buffer: self.pool()?,
                offset: u64::from(frame.0) * self.ledger.page_size(),
                bytes: self.ledger.page_size(),
            }),
            PageState::Evicted(_) => Err(Error::invalid(format!(
                "page {page} of allocation {} is evicted to host memory; call access() on it \
                 before launching a kernel that reads it",
                allocation.0
            ))),
        }
    }

    /// Writes `data` at byte `offset` of `allocation` from the host, faulting pages in as
    /// needed. Blocks until the bytes are on the device (a setup and test path, not a fast one).
    pub fn write(&mut self, allocation: AllocationId, offset: u64, data: &[u8]) -> Result<()> {
        self.host_io(
            allocation,
            offset,
            data.len() as u64,
            |me, page, page_off, done, n| {
                let staging = me.staging()?;
                let pool = me.pool()?;
                me.device
                    .write_pinned(staging, 0, &data[done as usize..(done + n) as usize])?;
                let dst = me.frame_offset(allocation, page)? + page_off;
                me.device
                    .copy_to_device(me.paging, staging, 0, pool, dst, n)?;
                me.device.synchronize_stream(me.paging)
            },
        )
    }

    /// Reads `out.len()` bytes at byte `offset` of `allocation` to the host, faulting pages in
    /// as needed. Blocks until the bytes are read.
    pub fn read(&mut self, allocation: AllocationId, offset: u64, out: &mut [u8]) -> Result<()> {
        let len = out.len() as u64;
        self.host_io(allocation, offset, len, |me, page, page_off, done, n| {
            let staging = me.staging()?;
            let pool = me.pool()?;
            let src = me.frame_offset(allocation, page)? + page_off;
            me.device
                .copy_to_host(me.paging, pool, src, staging, 0, n)?;
            me.device.synchronize_stream(me.paging)?;
            me.device
                .read_pinned(staging, 0, &mut out[done as usize..(done + n) as usize])
        })
    }

    /// Splits a host read or write into per-page pieces, faulting each page in first.
    fn host_io(
        &mut self,
        allocation: AllocationId,
        offset: u64,
        len: u64,
        mut piece: impl FnMut(&mut Self, u32, u64, u64, u64) -> Result<()>,
    ) -> Result<()> {
        let size = self.ledger.allocation_bytes(allocation)?;
        if !matches!(offset.checked_add(len), Some(end) if end <= size) {
            return Err(Error::invalid(format!(
                "bytes {offset}..{offset}+{len} are outside allocation {} of {size} bytes",
                allocation.0
            )));
        }
        let page_size = self.ledger.page_size();
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let page = (at / page_size) as u32;
            let page_off = at % page_size;
            let n = (page_size - page_off).min(len - done);
            self.access(allocation, page, 1)?;
            piece(self, page, page_off, done, n)?;
            done += n;
        }
        Ok(())
    }

    fn frame_offset(&self, allocation: AllocationId, page: u32) -> Result<u64> {
        match self.ledger.page_state(allocation, page)? {
            PageState::Resident(f) => Ok(u64::from(f.0) * self.ledger.page_size()),
            PageState::Evicted(_) => Err(Error::internal(format!(
                "page {page} of allocation {} evicted right after it was accessed",
                allocation.0
            ))),
        }
    }

    fn pool(&self) -> Result<&DeviceBuffer> {
        self.pool
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "the shared device pool was released"))
    }

    fn staging(&self) -> Result<&PinnedBuffer> {
        self.staging
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "the shared device pool was released"))
    }

    /// The pinned buffer of `slot`, made on first use.
    fn slot(&mut self, slot: u32) -> Result<&PinnedBuffer> {
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].is_none() {
            let buf = self
                .device
                .alloc_pinned(self.ledger.page_size())
                .map_err(|e| {
                    e.with_context(format!(
                        "allocating pinned host memory for evicted page slot {slot}"
                    ))
                })?;
            self.slots[i] = Some(buf);
        }
        self.slots[i]
            .as_ref()
            .ok_or_else(|| Error::internal("host slot vanished after it was made"))
    }

    /// Carries out `moves` in order on the paging stream (see the module notes on ordering).
    fn execute(&mut self, moves: &[PageMove], requester: Option<TenantId>) -> Result<()> {
        if moves.is_empty() {
            return Ok(());
        }
        let dev = Arc::clone(&self.device);
        let page_size = self.ledger.page_size();
        if moves.iter().any(|m| matches!(m, PageMove::Evict { .. })) {
            // A kernel already enqueued may still read a page about to be evicted and reused.
            for (tenant, stream) in &self.streams {
                if self.ledger.priority(*tenant)? == Priority::Opportunistic {
                    dev.record_event(self.fence, *stream)?;
                    dev.wait_event(self.paging, self.fence)?;
                }
            }
        }
        let mut wake = Vec::new();
        for m in moves {
            match *m {
                PageMove::Evict { frame, slot, .. } => {
                    self.slot(slot.0)?;
                    let (pool, host) = (self.pool()?, self.slot_ref(slot.0)?);
                    dev.copy_to_host(
                        self.paging,
                        pool,
                        u64::from(frame.0) * page_size,
                        host,
                        0,
                        page_size,
                    )?;
                }
                PageMove::Restore {
                    allocation,
                    slot,
                    frame,
                    ..
                } => {
                    // A slot never written (a page that started on the host) restores as
                    // whatever the fresh pinned buffer holds: allocation contents are
                    // unspecified until written, as with `Device::alloc`.
                    self.slot(slot.0)?;
                    let (pool, host) = (self.pool()?, self.slot_ref(slot.0)?);
                    dev.copy_to_device(
                        self.paging,
                        host,
                        0,
                        pool,
                        u64::from(frame.0) * page_size,
                        page_size,
                    )?;
                    if let Ok(owner) = self.ledger.allocation_tenant(allocation) {
                        wake.push(owner);
                    }
                }
            }
        }
        dev.record_event(self.paging_done, self.paging)?;
        wake.extend(requester);
        wake.sort();
        wake.dedup();
        for tenant in wake {
            if let Some(stream) = self.streams.get(&tenant) {
                dev.wait_event(*stream, self.paging_done)?;
            }
        }
        Ok(())
    }

    fn slot_ref(&self, slot: u32) -> Result<&PinnedBuffer> {
        self.slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::internal(format!("host slot {slot} has no buffer")))
    }
}

impl<D: Device + ?Sized> Drop for SharedDevice<D> {
    fn drop(&mut self) {
        // Copies in flight must land before their buffers go; errors cannot be reported here.
        let _ = self.device.synchronize_stream(self.paging);
        if let Some(pool) = self.pool.take() {
            let _ = self.device.free(pool);
        }
        if let Some(staging) = self.staging.take() {
            let _ = self.device.free_pinned(staging);
        }
        for slot in self.slots.drain(..).flatten() {
            let _ = self.device.free_pinned(slot);
        }
    }
}
