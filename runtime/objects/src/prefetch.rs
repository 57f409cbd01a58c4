//! The stride prefetcher: spots runs of equal strides in a container's chunk misses and has the
//! prefetch thread read the next chunks ahead (AIFM §5, "prefetching in remoteable containers").
//!
//! The detector lives in the container's shared table and is fed on slow paths only (misses and
//! the first use of a prefetched chunk, which the `PREFETCHED` bit routes to the slow path), so a
//! scan that the prefetcher keeps ahead of still feeds it. Its state is a handful of relaxed
//! atomics: a lost update among racing threads costs a prefetch, never correctness, because the
//! prefetch thread takes each chunk through the same busy-lock protocol as a miss and skips chunks
//! that are already present or being fetched.
//!
//! A positive-stride run is refilled in runs: once the lead (chunks requested beyond the current
//! one) falls below three quarters of the depth, the detector asks for everything up to a full
//! depth at once.
//!
//! The prefetch thread is a pipeline. Each round it drains the queue, claims each chunk (busy
//! lock and local space), issues each run of claimed chunks of one container through
//! [`Backend::issue_read_batch`](crate::Backend::issue_read_batch) (a pipelined client sends a
//! run as one batch-read frame, so a scan pays one request's overhead per run, not per chunk),
//! and then lands only the oldest read in flight (waits for it and publishes the word present
//! with `PREFETCHED`) before looking at the queue again: new runs go out while older ones are
//! still on the wire. At shutdown, reads still in flight give their words back remote. It takes
//! local memory only above the hard floor and drops requests when the queue is full: prefetching
//! never makes a mutator wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::backend::PendingRead;
use crate::log::Allocation;
use crate::memory::Inner;
use crate::metrics::Counters;
use crate::object::ObjectTable;
use crate::pointer::{self, LocalAddr, RemoteId, BUSY, PREFETCHED};

/// Equal strides in a row before the prefetcher starts.
const RUN_TO_TRIGGER: u32 = 2;

/// Most chunks one batch read carries. A batch lands all at once, so a very long one would make
/// the scan wait for its last chunk before it may use the first; 32 (a default-depth refill is
/// about half that) keeps that wait short while cutting the per-request overhead by the run
/// length (the backend also splits to the frame bound).
const MAX_BATCH_OBJECTS: usize = 32;

/// A per-container stride detector.
#[derive(Debug, Default)]
pub(crate) struct StrideDetector {
    last: AtomicU64,
    stride: AtomicI64,
    run: AtomicU32,
    /// Furthest object already requested (for positive strides).
    ahead: AtomicU64,
}

impl StrideDetector {
    /// Records an access to `obj` and returns the objects to prefetch, if a stride run holds.
    pub(crate) fn observe(&self, obj: u32, depth: usize, out: &mut Vec<u32>) {
        if depth == 0 {
            return;
        }
        let obj = u64::from(obj);
        let last = self.last.swap(obj, Relaxed);
        let s = obj as i64 - last as i64;
        if s != 0 && s == self.stride.load(Relaxed) {
            let run = self.run.fetch_add(1, Relaxed).saturating_add(1);
            if run < RUN_TO_TRIGGER {
                return;
            }
        } else {
            self.stride.store(s, Relaxed);
            self.run.store(1, Relaxed);
            self.ahead.store(obj, Relaxed);
            return;
        }
        let mut next = obj as i64;
        if s > 0 {
            let ahead = self.ahead.load(Relaxed) as i64;
            // Refill only once the lead has fallen below three quarters of the depth: requests
            // then go out in runs of about depth/4 chunks, which the prefetch thread sends as
            // one batch read, instead of one chunk per access (one request per chunk), while
            // the lead (what hides the round trip) stays near the full depth.
            if ahead - obj as i64 >= s * (depth as i64 - depth as i64 / 4).max(1) {
                return;
            }
            next = next.max(ahead);
        }
        let end = obj as i64 + s * depth as i64;
        loop {
            next += s;
            if (s > 0 && next > end) || (s < 0 && next < end) || next < 0 || next > u32::MAX as i64
            {
                break;
            }
            out.push(next as u32);
        }
        if s > 0 {
            if let Some(&m) = out.last() {
                self.ahead.fetch_max(u64::from(m), Relaxed);
            }
        }
    }
}

/// One queued prefetch.
pub(crate) struct PrefetchRequest {
    pub table: Arc<ObjectTable>,
    pub obj: u32,
}

/// One chunk whose read is on the wire: its word is busy-locked by the prefetch thread and its
/// local space reserved until it lands.
struct InFlight {
    table: Arc<ObjectTable>,
    obj: u32,
    /// The remote word it was locked from (published back if the read fails).
    remote: u64,
    id: RemoteId,
    alloc: Allocation,
    pending: PendingRead,
}

/// Most chunks in flight at once; the thread stops taking requests until the oldest land.
const MAX_IN_FLIGHT: usize = 1024;

/// The prefetch thread's body: a pipeline. Each round it issues whatever is queued (in batch
/// reads), then lands only the *oldest* read in flight before looking at the queue again, so new
/// requests go out while older ones are still on the wire and the scan's lead never drains to
/// zero between rounds.
pub(crate) fn run(inner: Arc<Inner>) {
    let slot = inner.log.prefetch_slot();
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    while !inner.is_shut_down() {
        let batch = if inflight.len() < MAX_IN_FLIGHT {
            inner.take_prefetches()
        } else {
            Vec::new()
        };
        if batch.is_empty() && inflight.is_empty() {
            inner
                .prefetch_signal
                .wait(std::time::Duration::from_millis(20));
            continue;
        }
        issue(&inner, slot, batch, &mut inflight);
        if let Some(f) = inflight.pop_front() {
            land(&inner, f);
        }
    }
    // Shutting down: give every chunk still on the wire back to its remote word.
    for f in inflight {
        if let Some(word) = f.table.word(f.obj) {
            word.publish(f.remote);
        }
        inner.log.finish(&f.alloc);
    }
}

/// Claims each requested chunk (busy lock and local space), then issues each run of claimed
/// chunks of one container as one batch read (one request's overhead per run, not per chunk).
fn issue(
    inner: &Inner,
    slot: usize,
    batch: Vec<PrefetchRequest>,
    inflight: &mut VecDeque<InFlight>,
) {
    let mut claimed = Vec::with_capacity(batch.len());
    for req in batch {
        let Some(word) = req.table.word(req.obj) else {
            continue;
        };
        let w = word.load();
        if pointer::is_present(w) || w & BUSY != 0 {
            continue;
        }
        if word.try_lock_remote(w).is_err() {
            continue;
        }
        let id = RemoteId::from_bits(w);
        let Some(alloc) = inner.log.alloc(slot, id, false) else {
            word.publish(w);
            break;
        };
        claimed.push((req, w, id, alloc));
    }
    let mut rest = claimed.into_iter().peekable();
    while let Some(first) = rest.next() {
        let ds = first.2.ds();
        let mut run = vec![first];
        while run.len() < MAX_BATCH_OBJECTS {
            match rest.next_if(|c| c.2.ds() == ds) {
                Some(c) => run.push(c),
                None => break,
            }
        }
        let reads: Vec<(u32, usize)> = run.iter().map(|c| (c.2.obj(), c.2.size())).collect();
        match inner.backend.issue_read_batch(ds, &reads) {
            Ok(pendings) if pendings.len() == run.len() => {
                for ((req, remote, id, alloc), pending) in run.into_iter().zip(pendings) {
                    inflight.push_back(InFlight {
                        table: req.table,
                        obj: req.obj,
                        remote,
                        id,
                        alloc,
                        pending,
                    });
                }
            }
            _ => {
                for (req, w, _, alloc) in run {
                    if let Some(word) = req.table.word(req.obj) {
                        word.publish(w);
                    }
                    inner.log.finish(&alloc);
                }
            }
        }
    }
}

/// Waits for one read and publishes its word present with `PREFETCHED` (or remote again if the
/// read failed).
fn land(inner: &Inner, f: InFlight) {
    let InFlight {
        table,
        obj,
        remote,
        id,
        alloc,
        pending,
    } = f;
    let Some(word) = table.word(obj) else {
        // The table never shrinks while its container lives, and the Arc keeps it alive.
        inner.log.finish(&alloc);
        return;
    };
    // SAFETY: `alloc.data` is a fresh reservation of `id.size()` bytes that only this thread
    // writes until the word is published.
    let buf = unsafe { std::slice::from_raw_parts_mut(alloc.data, id.size()) };
    let published = match (pending.wait(buf), LocalAddr::new(alloc.data as usize)) {
        (Ok(()), Ok(addr)) => {
            // SAFETY: the allocation's header is valid and ours until `finish`.
            unsafe { &*alloc.header }
                .backptr
                .store(word.addr(), std::sync::atomic::Ordering::Release);
            word.publish(pointer::present_word(addr, PREFETCHED));
            true
        }
        _ => {
            word.publish(remote);
            false
        }
    };
    inner.log.finish(&alloc);
    if published {
        Counters::add(&inner.counters.prefetches_issued, 1);
        Counters::add(&inner.counters.bytes_fetched, id.size() as u64);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn detector_triggers_after_a_run_and_does_not_repeat_requests() {
        let d = StrideDetector::default();
        let mut out = Vec::new();
        d.observe(10, 4, &mut out);
        d.observe(11, 4, &mut out);
        assert!(out.is_empty(), "one stride is not a run");
        d.observe(12, 4, &mut out);
        assert_eq!(out, vec![13, 14, 15, 16]);
        out.clear();
        d.observe(13, 4, &mut out);
        assert!(
            out.is_empty(),
            "no refill while the lead is at least 3/4 of the depth"
        );
        d.observe(14, 4, &mut out);
        assert_eq!(
            out,
            vec![17, 18],
            "a refill asks for a run, never for already-requested chunks"
        );
        out.clear();
        d.observe(40, 4, &mut out);
        d.observe(38, 4, &mut out);
        d.observe(36, 4, &mut out);
        assert_eq!(out, vec![34, 32, 30, 28], "negative strides work");
        out.clear();
        d.observe(7, 0, &mut out);
        assert!(out.is_empty(), "depth 0 disables");
    }
}
