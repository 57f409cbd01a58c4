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
//! The prefetch thread drains queued requests in batches, issues every read through
//! [`Backend::issue_read`](crate::Backend::issue_read) (a pipelined client sends them all), then
//! waits for each and publishes the word present with `PREFETCHED`. It takes local memory only
//! above the hard floor and drops requests when the queue is full: prefetching never makes a
//! mutator wait.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::memory::Inner;
use crate::metrics::Counters;
use crate::object::ObjectTable;
use crate::pointer::{self, LocalAddr, RemoteId, BUSY, PREFETCHED};

/// Equal strides in a row before the prefetcher starts.
const RUN_TO_TRIGGER: u32 = 2;

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
            next = next.max(self.ahead.load(Relaxed) as i64);
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

/// The prefetch thread's body.
pub(crate) fn run(inner: Arc<Inner>) {
    let slot = inner.log.prefetch_slot();
    while !inner.is_shut_down() {
        let batch = inner.take_prefetches();
        if batch.is_empty() {
            inner
                .prefetch_signal
                .wait(std::time::Duration::from_millis(20));
            continue;
        }
        let mut inflight = Vec::with_capacity(batch.len());
        for req in &batch {
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
            match inner.backend.issue_read(id.ds(), id.obj(), id.size()) {
                Ok(p) => inflight.push((word, w, id, alloc, p)),
                Err(_) => {
                    word.publish(w);
                    inner.log.finish(&alloc);
                }
            }
        }
        for (word, w, id, alloc, pending) in inflight {
            // SAFETY: `alloc.data` is a fresh reservation of `id.size()` bytes that only this
            // thread writes until the word is published.
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
                    word.publish(w);
                    false
                }
            };
            inner.log.finish(&alloc);
            if published {
                Counters::add(&inner.counters.prefetches_issued, 1);
                Counters::add(&inner.counters.bytes_fetched, id.size() as u64);
            }
        }
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
        assert_eq!(
            out,
            vec![17],
            "already-requested chunks are not asked for again"
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
