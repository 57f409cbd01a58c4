//! One region of the local log and the object header (AIFM §4.3, log-structured local memory).
//!
//! ```text
//!  region (region_bytes, a power of two)
//!  +--------+------------+--------+------------+-- ... --+-----+---------+
//!  | header | data       | header | data       |         | END | unused  |
//!  +--------+------------+--------+------------+-- ... --+-----+---------+
//!  0                                              cursor ^
//!
//!  object header (16 bytes, 8-aligned; data follows at +16)
//!  +-----------------------------------+-----------------------------------+
//!  | back-pointer: address of the      | identity: remote form of the word |
//!  | PointerWord (0 = dead object)     | (ds id, object id, size) or END   |
//!  +-----------------------------------+-----------------------------------+
//! ```
//!
//! Allocation is a bump of the region's cursor. The region state packs the cursor (low 48 bits)
//! with a count of allocations still being filled in (high 16 bits), so one `fetch_add` both
//! reserves space and announces a pending writer. A reservation that crosses the end seals the
//! region: exactly one thread crosses (its old cursor is `<= region_bytes`); it writes an `END`
//! header where the free tail starts so the evacuator's walk stops there. The evacuator only walks
//! a sealed region once its pending count is zero, so every header it reads is complete. A free
//! region's cursor is parked at twice the region size, so a thread holding a stale region index
//! can never allocate in it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pointer::RemoteId;

/// Bytes of an object header.
pub(crate) const HEADER_BYTES: usize = 16;
/// The identity value that marks the end of a region's objects.
pub(crate) const END_OF_REGION: u64 = u64::MAX;

const PENDING_ONE: u64 = 1 << 48;
const CURSOR_MASK: u64 = PENDING_ONE - 1;

/// The header in front of every object in local memory.
#[repr(C)]
pub(crate) struct ObjectHeader {
    /// Address of the object's `PointerWord`, 0 once the object is dead here.
    pub backptr: AtomicU64,
    /// `RemoteId` bits, or [`END_OF_REGION`].
    pub id: AtomicU64,
}

/// Outcome of a reservation.
pub(crate) enum Reserve {
    /// Space at this offset; the pending count was raised (call [`Region::finish`]).
    At(usize),
    /// The region is full. `sealer` is true for the one thread whose reservation crossed the end
    /// (it must write the END marker at `old` and queue the region). The pending count was raised
    /// as well (call [`Region::finish`]).
    Full { sealer: bool, old: usize },
}

/// One region's allocation state.
pub(crate) struct Region {
    state: AtomicU64,
}

impl Region {
    pub(crate) fn new_free(region_bytes: usize) -> Region {
        Region {
            state: AtomicU64::new(2 * region_bytes as u64),
        }
    }

    fn set_cursor(&self, cursor: u64) {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let next = (cur & !CURSOR_MASK) | cursor;
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(a) => cur = a,
            }
        }
    }

    /// Opens a free region for allocation (cursor 0; pending counts of stale threads survive).
    pub(crate) fn open(&self) {
        self.set_cursor(0);
    }

    /// Parks the cursor out of reach: the region is free.
    pub(crate) fn close_free(&self, region_bytes: usize) {
        self.set_cursor(2 * region_bytes as u64);
    }

    /// Reserves `bytes` (header included).
    pub(crate) fn reserve(&self, bytes: usize, region_bytes: usize) -> Reserve {
        let v = self
            .state
            .fetch_add(PENDING_ONE + bytes as u64, Ordering::AcqRel);
        let old = (v & CURSOR_MASK) as usize;
        if old + bytes <= region_bytes {
            Reserve::At(old)
        } else {
            Reserve::Full {
                sealer: old <= region_bytes,
                old,
            }
        }
    }

    /// Ends a reservation: the header (and, for a fetch, the data) is complete.
    pub(crate) fn finish(&self) {
        self.state.fetch_sub(PENDING_ONE, Ordering::AcqRel);
    }

    /// Allocations still being filled in.
    pub(crate) fn pending(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> 48
    }

    /// Bytes handed out (capped at the region size).
    pub(crate) fn used(&self, region_bytes: usize) -> usize {
        ((self.state.load(Ordering::Acquire) & CURSOR_MASK) as usize).min(region_bytes)
    }
}

/// Walks the objects of a sealed region with no pending allocations: calls `f(header, data)` for
/// each object whose header is live or dead, stopping at END or the cursor.
///
/// # Safety
/// `base` is the start of a region of `region_bytes` inside the local log, sealed, with a pending
/// count of zero observed (acquire) before the call, and not freed during the call.
pub(crate) unsafe fn walk(
    base: *mut u8,
    region_bytes: usize,
    used: usize,
    mut f: impl FnMut(&ObjectHeader, *mut u8, RemoteId),
) {
    let mut off = 0usize;
    while off + HEADER_BYTES <= used.min(region_bytes) {
        // SAFETY: (1) `off + 16 <= region_bytes`, inside the region per the contract; (2) offsets
        // are 8-aligned (headers 16 bytes, data sizes multiples of 8) and the region base is
        // page-aligned; (3) every header below the cursor was written before its reservation
        // finished, which the caller observed.
        let h = unsafe { &*base.add(off).cast::<ObjectHeader>() };
        let id = h.id.load(Ordering::Acquire);
        if id == END_OF_REGION {
            break;
        }
        let rid = RemoteId::from_bits(id);
        // SAFETY: the data follows the header inside the same reservation.
        let data = unsafe { base.add(off + HEADER_BYTES) };
        f(h, data, rid);
        off += HEADER_BYTES + rid.size();
    }
}
