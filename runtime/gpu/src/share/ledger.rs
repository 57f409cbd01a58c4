//! Page accounting and the eviction policy of a device shared by prioritized tenants.
//!
//! Memory oversubscription (TGS §4.2): the device's memory is cut into `capacity` equal page
//! frames. Every tenant allocation is a run of pages; each page is in exactly one place:
//!
//! ```text
//!   allocation 7 (opportunistic, 4 pages)
//!   page:   0            1            2            3
//!         Resident(f3) Evicted(h0)  Resident(f9) Evicted(h1)
//!              │            │
//!        device frame 3   host slot 0   (a page-sized host buffer the executor owns)
//! ```
//!
//! Rules, in priority order:
//!
//! 1. **Production pages are always resident.** A production allocation takes free frames, and
//!    when there are too few it evicts opportunistic pages, least recently used first. If
//!    production's own pages would exceed the capacity the request fails with
//!    [`ErrorKind::OutOfDeviceMemory`]; an opportunistic page is never a reason for that.
//! 2. **Opportunistic pages live where there is room.** A new opportunistic allocation takes the
//!    free frames there are and the rest of its pages start evicted (host-backed). Touching an
//!    evicted page ([`PageLedger::access`]) faults it in, evicting the least recently used
//!    opportunistic page that is not part of the same access when no frame is free.
//! 3. **Freed memory is given back when the caller asks.** [`PageLedger::restore`] brings
//!    evicted pages back into free frames, most recently used first. It is a call of its own,
//!    not part of [`PageLedger::free`], so that the caller paces the copies: a copy engine
//!    serves copies in order, and a burst of restores issued the moment production frees a
//!    buffer would sit in front of production's next input copy (a priority inversion). Pages
//!    not restored come back anyway when their tenant touches them.
//!
//! The ledger does no copying. Every call that moves pages returns the [`PageMove`]s, in the
//! order they must be carried out (an eviction before the restore that reuses its frame); the
//! executor ([`super::SharedDevice`]) performs each with a real copy so contents survive.
//!
//! Invariants ([`PageLedger::check_invariants`]): for each tenant, resident + evicted =
//! allocated pages; total resident pages + free frames = capacity; each frame and host slot
//! is owned by at most one page; no production page is evicted.

use std::collections::{BTreeMap, BTreeSet};

use farmem_error::{Error, ErrorKind, Result};

/// A tenant's scheduling class (TGS: production vs opportunistic jobs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Latency/throughput-critical: its pages are never evicted and its kernels never throttled.
    Production,
    /// Best effort: its pages yield to production and its kernel launches are rate controlled.
    Opportunistic,
}

/// A tenant of the shared device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub u32);

/// One allocation made by a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId(pub u64);

/// A page-sized frame of device memory, numbered from 0 at the start of the device pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u32);

/// A page-sized host buffer holding an evicted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostSlot(pub u32);

/// Where one page of an allocation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// On the device, in this frame.
    Resident(FrameId),
    /// On the host, in this slot.
    Evicted(HostSlot),
}

/// One copy the executor must perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageMove {
    /// Copy the page out of `frame` into `slot` (device → host); the frame is then free.
    Evict {
        /// The allocation the page belongs to.
        allocation: AllocationId,
        /// Page index within the allocation.
        page: u32,
        /// Where the page was.
        frame: FrameId,
        /// Where it goes.
        slot: HostSlot,
    },
    /// Copy the page out of `slot` into `frame` (host → device); the slot is then free.
    Restore {
        /// The allocation the page belongs to.
        allocation: AllocationId,
        /// Page index within the allocation.
        page: u32,
        /// Where the page was.
        slot: HostSlot,
        /// Where it goes.
        frame: FrameId,
        /// True when the tenant touched the page (a fault), false when
        /// [`PageLedger::restore`] brought it back.
        fault: bool,
    },
}

/// Counters of page traffic since the ledger was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Pages copied device → host to make room.
    pub evicted: u64,
    /// Evicted pages brought back because their tenant touched them.
    pub faulted: u64,
    /// Evicted pages brought back by [`PageLedger::restore`].
    pub restored: u64,
}

#[derive(Clone, Debug)]
struct Tenant {
    priority: Priority,
    allocations: BTreeSet<AllocationId>,
}

#[derive(Clone, Debug)]
struct Allocation {
    tenant: TenantId,
    priority: Priority,
    bytes: u64,
    pages: Vec<PageState>,
    /// Last-use stamp of each page (for the LRU indexes).
    stamps: Vec<u64>,
}

/// The page accounting of one shared device (see the module notes).
#[derive(Clone, Debug)]
pub struct PageLedger {
    page_size: u64,
    capacity: u32,
    /// Free frames; popped from the end, so the lowest-numbered frames go first.
    free_frames: Vec<FrameId>,
    /// Released host slots, reused before new ones are numbered.
    free_slots: Vec<HostSlot>,
    next_slot: u32,
    next_tenant: u32,
    next_allocation: u64,
    clock: u64,
    tenants: BTreeMap<TenantId, Tenant>,
    allocations: BTreeMap<AllocationId, Allocation>,
    /// Resident opportunistic pages by last use: the eviction order (oldest first).
    resident_lru: BTreeMap<u64, (AllocationId, u32)>,
    /// Evicted opportunistic pages by last use: the restore order (newest first).
    evicted_lru: BTreeMap<u64, (AllocationId, u32)>,
    production_resident: u32,
    stats: PageStats,
}

impl PageLedger {
    /// A ledger for a device pool of `capacity_bytes` cut into pages of `page_size` bytes.
    pub fn new(capacity_bytes: u64, page_size: u64) -> Result<PageLedger> {
        if page_size == 0 {
            return Err(Error::invalid(
                "page size is 0 bytes; use e.g. 2 MiB (2097152)",
            ));
        }
        let frames = capacity_bytes / page_size;
        let capacity = u32::try_from(frames).map_err(|_| {
            Error::invalid(format!(
                "device pool of {capacity_bytes} bytes holds {frames} pages of {page_size} \
                 bytes, more than 2^32; use a larger page size"
            ))
        })?;
        if capacity == 0 {
            return Err(Error::invalid(format!(
                "device pool of {capacity_bytes} bytes holds no page of {page_size} bytes; \
                 use a smaller page size or a larger pool"
            )));
        }
        Ok(PageLedger {
            page_size,
            capacity,
            free_frames: (0..capacity).rev().map(FrameId).collect(),
            free_slots: Vec::new(),
            next_slot: 0,
            next_tenant: 0,
            next_allocation: 0,
            clock: 0,
            tenants: BTreeMap::new(),
            allocations: BTreeMap::new(),
            resident_lru: BTreeMap::new(),
            evicted_lru: BTreeMap::new(),
            production_resident: 0,
            stats: PageStats::default(),
        })
    }

    /// Bytes per page.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Device frames in the pool.
    pub fn capacity_pages(&self) -> u32 {
        self.capacity
    }

    /// Frames no page occupies.
    pub fn free_pages(&self) -> u32 {
        self.free_frames.len() as u32
    }

    /// Host slots ever numbered (the executor's host backing never needs more buffers).
    pub fn host_slots_used(&self) -> u32 {
        self.next_slot
    }

    /// Page traffic so far.
    pub fn stats(&self) -> PageStats {
        self.stats
    }

    /// Registers a tenant.
    pub fn add_tenant(&mut self, priority: Priority) -> TenantId {
        let id = TenantId(self.next_tenant);
        self.next_tenant += 1;
        self.tenants.insert(
            id,
            Tenant {
                priority,
                allocations: BTreeSet::new(),
            },
        );
        id
    }

    /// The priority of `tenant`.
    pub fn priority(&self, tenant: TenantId) -> Result<Priority> {
        Ok(self.tenant(tenant)?.priority)
    }

    /// Allocates `bytes` (rounded up to whole pages) for `tenant`. Returns the allocation and
    /// the evictions that make room for it (production only; see the module rules).
    pub fn allocate(
        &mut self,
        tenant: TenantId,
        bytes: u64,
    ) -> Result<(AllocationId, Vec<PageMove>)> {
        let priority = self.tenant(tenant)?.priority;
        if bytes == 0 {
            return Err(Error::invalid(format!(
                "tenant {} asked for a 0-byte allocation; ask for at least one byte",
                tenant.0
            )));
        }
        let pages = bytes.div_ceil(self.page_size);
        let mut moves = Vec::new();
        let id = AllocationId(self.next_allocation);
        let state = match priority {
            Priority::Production => {
                let room = u64::from(self.capacity - self.production_resident);
                if pages > room {
                    return Err(Error::new(
                        ErrorKind::OutOfDeviceMemory,
                        format!(
                            "production tenant {} asked for {bytes} bytes ({pages} pages of {} \
                             bytes) but only {room} of the device's {} pages are not already \
                             production's; free production allocations or use a larger device",
                            tenant.0, self.page_size, self.capacity
                        ),
                    ));
                }
                let pages = pages as u32;
                while self.free_pages() < pages {
                    self.evict_lru(&mut moves)?;
                }
                let mut state = Vec::with_capacity(pages as usize);
                for _ in 0..pages {
                    state.push(PageState::Resident(self.take_frame()?));
                }
                self.production_resident += pages;
                state
            }
            Priority::Opportunistic => {
                let pages = u32::try_from(pages).map_err(|_| {
                    Error::invalid(format!(
                        "opportunistic tenant {} asked for {bytes} bytes, more than 2^32 pages",
                        tenant.0
                    ))
                })?;
                let mut state = Vec::with_capacity(pages as usize);
                for _ in 0..pages {
                    state.push(match self.free_frames.pop() {
                        Some(f) => PageState::Resident(f),
                        None => PageState::Evicted(self.take_slot()),
                    });
                }
                state
            }
        };
        self.next_allocation += 1;
        let mut stamps = Vec::with_capacity(state.len());
        for (page, s) in state.iter().enumerate() {
            let stamp = self.tick();
            stamps.push(stamp);
            if priority == Priority::Opportunistic {
                let index = match s {
                    PageState::Resident(_) => &mut self.resident_lru,
                    PageState::Evicted(_) => &mut self.evicted_lru,
                };
                index.insert(stamp, (id, page as u32));
            }
        }
        self.allocations.insert(
            id,
            Allocation {
                tenant,
                priority,
                bytes,
                pages: state,
                stamps,
            },
        );
        self.tenant_mut(tenant)?.allocations.insert(id);
        Ok((id, moves))
    }

    /// Frees `allocation`. Its frames stay free until [`restore`](Self::restore) or a fault
    /// fills them.
    pub fn free(&mut self, allocation: AllocationId) -> Result<()> {
        let alloc = self.allocations.remove(&allocation).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "allocation {} does not exist (already freed?)",
                    allocation.0
                ),
            )
        })?;
        self.tenant_mut(alloc.tenant)?
            .allocations
            .remove(&allocation);
        for (state, stamp) in alloc.pages.iter().zip(&alloc.stamps) {
            match *state {
                PageState::Resident(frame) => {
                    self.free_frames.push(frame);
                    if alloc.priority == Priority::Production {
                        self.production_resident -= 1;
                    } else {
                        self.resident_lru.remove(stamp);
                    }
                }
                PageState::Evicted(slot) => {
                    self.free_slots.push(slot);
                    self.evicted_lru.remove(stamp);
                }
            }
        }
        Ok(())
    }

    /// Frees every allocation of `tenant` and forgets it.
    pub fn remove_tenant(&mut self, tenant: TenantId) -> Result<()> {
        let allocations: Vec<AllocationId> =
            self.tenant(tenant)?.allocations.iter().copied().collect();
        for a in allocations {
            self.free(a)?;
        }
        self.tenants.remove(&tenant);
        Ok(())
    }

    /// Brings up to `limit` evicted pages back into free frames, most recently used first, and
    /// returns the restores to carry out.
    pub fn restore(&mut self, limit: u32) -> Result<Vec<PageMove>> {
        let mut moves = Vec::new();
        while moves.len() < limit as usize && !self.free_frames.is_empty() {
            let Some((_, &(allocation, page))) = self.evicted_lru.last_key_value() else {
                break;
            };
            let PageState::Evicted(slot) = self.allocation(allocation)?.pages[page as usize] else {
                return Err(Error::internal(
                    "page ledger: evicted index names a resident page",
                ));
            };
            let frame = self.take_frame()?;
            self.place(allocation, page, slot, frame, false, &mut moves)?;
        }
        Ok(moves)
    }

    /// Evicted pages that free frames could take back now (what [`restore`](Self::restore)
    /// would bring back without a limit).
    pub fn restorable_pages(&self) -> u32 {
        (self.evicted_lru.len() as u32).min(self.free_pages())
    }

    /// Marks pages `first..first + count` of `allocation` as used now, faulting in the evicted
    /// ones. Returns the evictions and restores to carry out, in order, before the tenant may
    /// touch the pages. Fails with [`ErrorKind::OutOfDeviceMemory`] when the range alone needs
    /// more frames than production leaves to opportunistic tenants.
    pub fn access(
        &mut self,
        allocation: AllocationId,
        first: u32,
        count: u32,
    ) -> Result<Vec<PageMove>> {
        let (priority, total) = {
            let a = self.allocation(allocation)?;
            (a.priority, a.pages.len() as u32)
        };
        let end = first
            .checked_add(count)
            .filter(|&e| e <= total)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "pages {first}..{} are outside allocation {} of {total} pages",
                    u64::from(first) + u64::from(count),
                    allocation.0
                ))
            })?;
        let mut moves = Vec::new();
        if priority == Priority::Production {
            return Ok(moves); // always resident; production pages are not in the LRU indexes
        }
        let room = self.capacity - self.production_resident;
        if count > room {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!(
                    "opportunistic access to {count} pages of allocation {} needs more than the \
                     {room} device pages production leaves free; touch fewer pages at a time",
                    allocation.0
                ),
            ));
        }
        // Touch the resident pages first so that they are the most recently used and no
        // eviction below picks a page of this same access.
        for page in first..end {
            if let PageState::Resident(_) = self.allocation(allocation)?.pages[page as usize] {
                self.retouch(allocation, page)?;
            }
        }
        for page in first..end {
            let PageState::Evicted(slot) = self.allocation(allocation)?.pages[page as usize] else {
                continue;
            };
            if self.free_frames.is_empty() {
                self.evict_lru(&mut moves)?;
            }
            let frame = self.take_frame()?;
            self.place(allocation, page, slot, frame, true, &mut moves)?;
        }
        Ok(moves)
    }

    /// Where page `page` of `allocation` is.
    pub fn page_state(&self, allocation: AllocationId, page: u32) -> Result<PageState> {
        let a = self.allocation(allocation)?;
        a.pages.get(page as usize).copied().ok_or_else(|| {
            Error::invalid(format!(
                "page {page} is outside allocation {} of {} pages",
                allocation.0,
                a.pages.len()
            ))
        })
    }

    /// Pages in `allocation`.
    pub fn allocation_pages(&self, allocation: AllocationId) -> Result<u32> {
        Ok(self.allocation(allocation)?.pages.len() as u32)
    }

    /// Bytes requested for `allocation`.
    pub fn allocation_bytes(&self, allocation: AllocationId) -> Result<u64> {
        Ok(self.allocation(allocation)?.bytes)
    }

    /// The tenant that owns `allocation`.
    pub fn allocation_tenant(&self, allocation: AllocationId) -> Result<TenantId> {
        Ok(self.allocation(allocation)?.tenant)
    }

    /// `(resident, evicted)` pages of `tenant`.
    pub fn tenant_pages(&self, tenant: TenantId) -> Result<(u32, u32)> {
        let mut resident = 0;
        let mut evicted = 0;
        for id in &self.tenant(tenant)?.allocations {
            for s in &self.allocation(*id)?.pages {
                match s {
                    PageState::Resident(_) => resident += 1,
                    PageState::Evicted(_) => evicted += 1,
                }
            }
        }
        Ok((resident, evicted))
    }

    /// Pages allocated by `tenant` (resident + evicted).
    pub fn tenant_allocated_pages(&self, tenant: TenantId) -> Result<u32> {
        let (r, e) = self.tenant_pages(tenant)?;
        Ok(r + e)
    }

    /// Checks every invariant of the module notes; an [`ErrorKind::Internal`] error names the
    /// first one broken. Cheap enough for tests, linear in the pages.
    pub fn check_invariants(&self) -> Result<()> {
        let broken = |what: String| Err(Error::internal(format!("page ledger: {what}")));
        let mut frames = BTreeSet::new();
        let mut slots = BTreeSet::new();
        let mut resident_total = 0u64;
        let mut production_resident = 0u64;
        let mut opp_resident = 0usize;
        let mut opp_evicted = 0usize;
        for (id, a) in &self.allocations {
            if !self
                .tenants
                .get(&a.tenant)
                .is_some_and(|t| t.allocations.contains(id))
            {
                return broken(format!("allocation {} not listed by its tenant", id.0));
            }
            if a.pages.len() as u64 != a.bytes.div_ceil(self.page_size) {
                return broken(format!("allocation {} has a wrong page count", id.0));
            }
            for (page, (s, stamp)) in a.pages.iter().zip(&a.stamps).enumerate() {
                match *s {
                    PageState::Resident(f) => {
                        resident_total += 1;
                        if f.0 >= self.capacity || !frames.insert(f) {
                            return broken(format!("frame {} owned twice or out of range", f.0));
                        }
                        if a.priority == Priority::Production {
                            production_resident += 1;
                        } else {
                            opp_resident += 1;
                            if self.resident_lru.get(stamp) != Some(&(*id, page as u32)) {
                                return broken(format!(
                                    "resident page {page} of {} not in LRU",
                                    id.0
                                ));
                            }
                        }
                    }
                    PageState::Evicted(slot) => {
                        if a.priority == Priority::Production {
                            return broken(format!("production allocation {} evicted", id.0));
                        }
                        opp_evicted += 1;
                        if slot.0 >= self.next_slot || !slots.insert(slot) {
                            return broken(format!(
                                "host slot {} owned twice or unnumbered",
                                slot.0
                            ));
                        }
                        if self.evicted_lru.get(stamp) != Some(&(*id, page as u32)) {
                            return broken(format!("evicted page {page} of {} not indexed", id.0));
                        }
                    }
                }
            }
        }
        for f in &self.free_frames {
            if !frames.insert(*f) {
                return broken(format!("free frame {} is also owned", f.0));
            }
        }
        for s in &self.free_slots {
            if !slots.insert(*s) {
                return broken(format!("free host slot {} is also owned", s.0));
            }
        }
        if frames.len() as u64 != u64::from(self.capacity) {
            return broken(format!(
                "resident {resident_total} + free {} != capacity {}",
                self.free_frames.len(),
                self.capacity
            ));
        }
        if production_resident != u64::from(self.production_resident) {
            return broken("production resident count drifted".into());
        }
        if opp_resident != self.resident_lru.len() || opp_evicted != self.evicted_lru.len() {
            return broken("LRU indexes hold stale pages".into());
        }
        Ok(())
    }

    fn tenant(&self, tenant: TenantId) -> Result<&Tenant> {
        self.tenants.get(&tenant).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("tenant {} is not registered", tenant.0),
            )
        })
    }

    fn tenant_mut(&mut self, tenant: TenantId) -> Result<&mut Tenant> {
        self.tenants.get_mut(&tenant).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("tenant {} is not registered", tenant.0),
            )
        })
    }

    fn allocation(&self, allocation: AllocationId) -> Result<&Allocation> {
        self.allocations.get(&allocation).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "allocation {} does not exist (already freed?)",
                    allocation.0
                ),
            )
        })
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn take_frame(&mut self) -> Result<FrameId> {
        self.free_frames
            .pop()
            .ok_or_else(|| Error::internal("page ledger: no free frame where one was counted"))
    }

    fn take_slot(&mut self) -> HostSlot {
        self.free_slots.pop().unwrap_or_else(|| {
            let s = HostSlot(self.next_slot);
            self.next_slot += 1;
            s
        })
    }

    /// Gives a resident opportunistic page a fresh stamp.
    fn retouch(&mut self, allocation: AllocationId, page: u32) -> Result<()> {
        let stamp = self.tick();
        let a = self
            .allocations
            .get_mut(&allocation)
            .ok_or_else(|| Error::internal("page ledger: retouch of a missing allocation"))?;
        let old = std::mem::replace(&mut a.stamps[page as usize], stamp);
        self.resident_lru.remove(&old);
        self.resident_lru.insert(stamp, (allocation, page));
        Ok(())
    }

    /// Evicts the least recently used opportunistic page to a host slot.
    fn evict_lru(&mut self, moves: &mut Vec<PageMove>) -> Result<()> {
        let (stamp, (allocation, page)) = self.resident_lru.pop_first().ok_or_else(|| {
            Error::internal("page ledger: room was counted but no opportunistic page is resident")
        })?;
        let slot = self.take_slot();
        let a = self
            .allocations
            .get_mut(&allocation)
            .ok_or_else(|| Error::internal("page ledger: LRU names a freed allocation"))?;
        let PageState::Resident(frame) = a.pages[page as usize] else {
            return Err(Error::internal("page ledger: LRU names an evicted page"));
        };
        a.pages[page as usize] = PageState::Evicted(slot);
        self.evicted_lru.insert(stamp, (allocation, page));
        self.free_frames.push(frame);
        self.stats.evicted += 1;
        moves.push(PageMove::Evict {
            allocation,
            page,
            frame,
            slot,
        });
        Ok(())
    }

    /// Puts an evicted page into `frame` and records the restore.
    fn place(
        &mut self,
        allocation: AllocationId,
        page: u32,
        slot: HostSlot,
        frame: FrameId,
        fault: bool,
        moves: &mut Vec<PageMove>,
    ) -> Result<()> {
        let stamp = self.tick();
        let a = self
            .allocations
            .get_mut(&allocation)
            .ok_or_else(|| Error::internal("page ledger: restore of a missing allocation"))?;
        let old = std::mem::replace(&mut a.stamps[page as usize], stamp);
        a.pages[page as usize] = PageState::Resident(frame);
        self.evicted_lru.remove(&old);
        self.resident_lru.insert(stamp, (allocation, page));
        self.free_slots.push(slot);
        if fault {
            self.stats.faulted += 1;
        } else {
            self.stats.restored += 1;
        }
        moves.push(PageMove::Restore {
            allocation,
            page,
            slot,
            frame,
            fault,
        });
        Ok(())
    }
}
