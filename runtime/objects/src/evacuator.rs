//! The pauseless evacuator (AIFM §4.3): frees local regions without stopping any mutator.
//!
//! Evacuator threads sleep until the free fraction of regions falls below the low watermark and
//! work until it is back above the high one. One pass:
//!
//! 1. **Pick** up to a few sealed regions (oldest first) whose pending allocations are done.
//! 2. **Claim**: walk each region's headers; for every live object (back-pointer set, its word
//!    present and pointing here) CAS `EVACUATING` into the word.
//! 3. **Grace period**: wait until every scope that was open at the claim has ended
//!    (`ScopeRegistry::wait_for_old_scopes`); scopes opened after the claim see `EVACUATING` and
//!    take the slow path. If old scopes outlast `grace_timeout`, give every claim back (clear the
//!    bit) and requeue the regions: the evacuator never waits forever on a leaked or long scope.
//! 4. **Move out**. For each claimed object, one CAS from the claimed word decides: if a mutator
//!    took the object back in the meantime (cleared `EVACUATING`), the CAS fails and the object
//!    stays where it is.
//!    - clean and cold (including prefetched but unused, and prefetched and read once: a
//!      prefetched object's first read does not set `HOT`): CAS to the remote form;
//!    - hot (second chance) or dirty: CAS to `EVACUATING | BUSY` (locked), then copy it to a
//!      fresh region (hot; the evacuator may use the hard-floor reserve) and publish the new
//!      address with `HOT` cleared, or write it back (dirty and cold) and publish the remote
//!      form. While the word is locked a mutator backs off; the evacuator waits for nothing in
//!      between, so that wait is one copy or one backend write long.
//!
//!    Each object that leaves zeroes its old header's back-pointer (it is dead here).
//! 5. **Free** every region none of whose objects a mutator kept; requeue the others.
//!
//! A write made inside a scope is never lost, and the evacuator never reads bytes a mutator is
//! writing: a scope older than the claim ends before step 4 reads the data; a newer one must
//! clear `EVACUATING` (and set `DIRTY`) before writing, which makes the evacuator's CAS fail, or
//! finds the word locked and waits until the object has moved.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::memory::Inner;
use crate::metrics::Counters;
use crate::object::ObjectTable;
use crate::pointer::{
    self, LocalAddr, PointerWord, RemoteId, BUSY, DIRTY, EVACUATING, HOT, PREFETCHED,
};
use crate::region::{self, ObjectHeader};

/// Regions claimed in one pass at most (one grace period covers them all).
const MAX_BATCH: usize = 8;

struct Claim<'t> {
    region: u32,
    header: &'t ObjectHeader,
    data: *mut u8,
    id: RemoteId,
    word: &'t PointerWord,
}

/// An evacuator thread's body.
pub(crate) fn run(inner: Arc<Inner>, index: usize) {
    let slot = inner.log.evacuator_slot(index);
    while !inner.is_shut_down() {
        // Read before the checks: a notify after this read ends the wait below at once.
        let seen = inner.log.evac_signal.generation();
        if inner.log.free_regions() >= inner.log.low_regions {
            inner
                .log
                .evac_signal
                .wait_since(seen, Duration::from_millis(20));
            continue;
        }
        while !inner.is_shut_down() && inner.log.free_regions() < inner.log.high_regions {
            let seen = inner.log.evac_signal.generation();
            if !evacuate_pass(&inner, slot) {
                inner
                    .log
                    .evac_signal
                    .wait_since(seen, Duration::from_millis(1));
                break;
            }
        }
    }
}

/// One pass over a batch of regions; returns whether a region was freed.
pub(crate) fn evacuate_pass(inner: &Inner, slot: usize) -> bool {
    let log = &inner.log;
    let rb = log.region_bytes;
    let want = (log.high_regions.saturating_sub(log.free_regions())).clamp(1, MAX_BATCH);
    let mut batch = Vec::new();
    let mut busy = Vec::new();
    for _ in 0..log.sealed_len() {
        if batch.len() >= want {
            break;
        }
        let Some(r) = log.pop_sealed() else { break };
        if log.region(r).pending() == 0 {
            batch.push(r);
        } else {
            busy.push(r);
        }
    }
    for r in busy {
        log.requeue(r);
    }
    if batch.is_empty() {
        return false;
    }

    // Tables stay alive (and their words valid) for the whole pass.
    let mut tables: HashMap<u16, Option<Arc<ObjectTable>>> = HashMap::new();
    let mut headers: Vec<(u32, *const ObjectHeader, *mut u8, RemoteId)> = Vec::new();
    for &r in &batch {
        let used = log.region(r).used(rb);
        // SAFETY: `r` is sealed, its pending count was seen zero (acquire) above, and only this
        // evacuator (which popped it) may free it.
        unsafe {
            region::walk(log.region_base(r), rb, used, |h, data, id| {
                if h.backptr.load(Ordering::Acquire) != 0 {
                    headers.push((r, h, data, id));
                }
            })
        };
    }
    let mut last_ds = None;
    for (_, _, _, id) in &headers {
        if last_ds != Some(id.ds()) {
            last_ds = Some(id.ds());
            tables
                .entry(id.ds())
                .or_insert_with(|| inner.table(id.ds()));
        }
    }

    // Claim. Consecutive objects mostly belong to one container: look its table up once.
    let mut claims: Vec<Claim<'_>> = Vec::with_capacity(headers.len());
    let mut last: Option<(u16, Option<&Arc<ObjectTable>>)> = None;
    for &(r, h, data, id) in &headers {
        let table = match last {
            Some((ds, t)) if ds == id.ds() => t,
            _ => {
                let t = tables.get(&id.ds()).and_then(Option::as_ref);
                last = Some((id.ds(), t));
                t
            }
        };
        let Some(table) = table else {
            continue;
        };
        let Some(word) = table.word(id.obj()) else {
            continue;
        };
        // SAFETY: the header lies in a region this pass owns (see the walk above).
        let header = unsafe { &*h };
        if header.backptr.load(Ordering::Acquire) != word.addr() {
            continue;
        }
        let mut w = word.load();
        loop {
            if !pointer::is_present(w)
                || pointer::addr_of(w) != data as usize
                || w & EVACUATING != 0
            {
                break;
            }
            match word.cas(w, w | EVACUATING) {
                Ok(_) => {
                    claims.push(Claim {
                        region: r,
                        header,
                        data,
                        id,
                        word,
                    });
                    break;
                }
                Err(a) => w = a,
            }
        }
    }

    // Grace period.
    if !inner.scopes.wait_for_old_scopes(inner.config.grace_timeout) {
        for c in &claims {
            let mut w = c.word.load();
            while pointer::is_present(w)
                && pointer::addr_of(w) == c.data as usize
                && w & EVACUATING != 0
            {
                match c.word.cas(w, w & !EVACUATING) {
                    Ok(_) => break,
                    Err(a) => w = a,
                }
            }
        }
        for r in batch {
            log.requeue(r);
        }
        return false;
    }

    // Move out. Drops are counted once per pass (a shared counter per object is a cache-line
    // transfer per object).
    let mut kept: HashSet<u32> = HashSet::new();
    let mut dropped = 0u64;
    for c in &claims {
        let w = c.word.load();
        if !pointer::is_present(w) || pointer::addr_of(w) != c.data as usize || w & EVACUATING == 0
        {
            kept.insert(c.region);
            continue;
        }
        let hot = w & HOT != 0 && w & PREFETCHED == 0;
        if !hot && w & DIRTY == 0 {
            // Clean and cold: nothing to copy, one CAS drops it.
            if c.word.cas(w, pointer::remote_word(c.id)).is_ok() {
                c.header.backptr.store(0, Ordering::Release);
                dropped += 1;
            } else {
                kept.insert(c.region);
            }
            continue;
        }
        // Lock the object for the copy or write-back: from here a mutator waits (briefly, this
        // thread waits for nothing) instead of taking the object back, so the bytes read below
        // cannot race with a write.
        let locked = w | BUSY;
        if c.word.cas(w, locked).is_err() {
            kept.insert(c.region);
            continue;
        }
        // SAFETY: (1) `c.data` holds `id.size()` bytes of an object in a region this pass owns;
        // (2) the word is locked (`BUSY`) and every scope older than the claim has ended, so no
        // thread writes these bytes while this slice lives.
        let bytes = unsafe { std::slice::from_raw_parts(c.data, c.id.size()) };
        if hot {
            if let Some(a) = log.alloc(slot, c.id, true) {
                // SAFETY: `a.data` is a fresh reservation of `id.size()` bytes, disjoint from
                // `bytes` (a different reservation), written only by this thread until published.
                unsafe {
                    farmem_net::copy::copy_nonoverlapping_bytes(bytes.as_ptr(), a.data, bytes.len())
                };
                if let Ok(addr) = LocalAddr::new(a.data as usize) {
                    // SAFETY: the allocation's header is ours until `finish`.
                    unsafe { &*a.header }
                        .backptr
                        .store(c.word.addr(), Ordering::Release);
                    c.header.backptr.store(0, Ordering::Release);
                    // Second chance: the copy starts cold.
                    c.word.publish(pointer::present_word(addr, w & DIRTY));
                    log.finish(&a);
                    Counters::add(&inner.counters.objects_moved, 1);
                    continue;
                }
                log.finish(&a);
            }
            // No room for a copy even in the reserve: evict it instead.
        }
        if w & DIRTY != 0 {
            if let Err(e) = inner.backend.write(c.id.ds(), c.id.obj(), bytes) {
                Counters::add(&inner.counters.writeback_errors, 1);
                inner.latch_error(e.with_context(format!(
                    "evacuator writing back object {} of container {}",
                    c.id.obj(),
                    c.id.ds()
                )));
                c.word.publish((w & !EVACUATING) | HOT);
                kept.insert(c.region);
                continue;
            }
            Counters::add(&inner.counters.bytes_written_back, c.id.size() as u64);
        }
        c.header.backptr.store(0, Ordering::Release);
        c.word.publish(pointer::remote_word(c.id));
        dropped += 1;
    }
    Counters::add(&inner.counters.objects_dropped, dropped);

    let mut freed = false;
    for r in batch {
        if kept.contains(&r) {
            log.requeue(r);
        } else {
            log.free_region(r);
            Counters::add(&inner.counters.evacuated_regions, 1);
            freed = true;
        }
    }
    freed
}
