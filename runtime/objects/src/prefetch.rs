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
//! The depth is the larger of the configured `prefetch_depth` (in chunks) and a lead *in bytes*,
//! [`MIN_LEAD_BYTES`] (capped at 1/8 of local memory), divided by the container's chunk size: a
//! scan streams about one lead per round trip, so what hides the round trip is the lead's bytes,
//! not its chunk count, and small chunks need proportionally more of them (4 KiB chunks get up
//! to a 256-chunk lead, refilled about 64 chunks = 256 KiB per batch frame). The detector learns
//! its container's lead in chunks from the issuer, which sees the container's chunk size on its
//! first request (the first refill of a run uses the configured depth alone).
//!
//! Prefetching has two halves, and on a scan both run on the scanning thread itself:
//!
//! - The *issuer* claims each requested chunk (busy lock and local space) and issues each run of
//!   claimed chunks of one container through
//!   [`Backend::issue_read_batch`](crate::Backend::issue_read_batch) (a pipelined client sends a
//!   run as one batch-read frame, so a scan pays one request's overhead per run, not per chunk),
//!   then queues the reads on the wire in the landing queue ([`Landing`]). It never waits for an
//!   answer, so a refill goes out as soon as it is requested. The issuer is a state ([`Issuer`],
//!   in `Inner::issuer`), not a thread: the mutator whose access asks for a refill issues it
//!   itself when the state is free ([`Issuer::try_inline`]); only when another thread holds it,
//!   or too many reads are on the wire, does the refill go to the queue of the *prefetch
//!   thread*, which also retries deferred requests.
//! - *Landing* copies a read's answer into its local space and publishes the word present with
//!   `PREFETCHED`. It happens just in time: the mutator that dereferences a chunk still on the
//!   wire lands the queued reads in order up to its own ([`land_until`]); a *lander thread* lands
//!   only reads that no mutator came for within a millisecond.
//!
//! Why on the mutator: on a small machine the wake-ups cost more than the work. Issuing on the
//! prefetch thread cost one wake-up of it per refill, and landing on a lander thread one per
//! batch answer, each a cross-CPU wake-up (an inter-processor interrupt, a virtual machine exit
//! on a VM), while the claim loop, the send and the copies cost the same on any thread; the
//! answers are in the socket by the time the scan reaches them (the lead keeps a few batches
//! ahead), so landing them in place rarely waits and leaves the chunk in the cache of the core
//! that reads it. `farmem-bench scan` (4 KiB chunks, 10% local memory, 2-vCPU VM), eight
//! alternating runs: CPU per byte 0.645 (issuer and lander threads) → 0.610 (issued inline) →
//! 0.539 ns (landed inline too), ratio to raw TCP streaming 0.56 → 0.54 → 0.65 (medians), and
//! synchronous misses 120–350 → 15 per 64 MiB. An earlier design with the issuer doing both
//! halves let a scan run past requests still queued (a tenth of its chunks became synchronous
//! misses); here a refill is never queued behind a wait, because nobody waits while issuing.
//!
//! At most `MAX_IN_FLIGHT` reads are on the wire; at shutdown, reads still queued give their
//! words back remote. The issuer takes local memory only above the hard floor and drops
//! requests when the queue is full. Prefetching makes a mutator wait only for what it needs: it
//! issues only when the issuer is free and never waits for an answer then, and it waits for an
//! answer only when landing the chunk it is about to read (and the reads issued before it).
//! When local memory is at the floor, the requests the issuer could not place are *deferred*,
//! not dropped, because a dropped request of a running scan is a
//! synchronous miss a few chunks later. Deferred requests are retried first, but only once more
//! than one region above the floor is free again: a mutator waiting for memory takes the first
//! region the evacuator frees, so retries never starve it. At most [`MAX_DEFERRED`] wait, and a
//! request for a chunk the scan has already passed (behind the detector's last access in the
//! run's direction) is dropped, deferred or not.

use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farmem_error::Error;

use crate::backend::PendingRead;
use crate::log::Allocation;
use crate::memory::Inner;
use crate::metrics::Counters;
use crate::object::ObjectTable;
use crate::pointer::{self, LocalAddr, PointerWord, RemoteId, BUSY, PREFETCHED};
use crate::signal::Signal;

/// Equal strides in a row before the prefetcher starts.
const RUN_TO_TRIGGER: u32 = 2;

/// The smallest prefetch lead in bytes (see the module note), capped at
/// [`LEAD_LOCAL_FRACTION`] of local memory. 1 MiB is chosen by `farmem-bench scan` over TCP at
/// 10% local memory with 4 KiB chunks: a 256 KiB lead (the old depth 64) spends one round trip
/// and two wake-ups per 64 KiB; 1 MiB per 256 KiB, with the lead still a few percent of any
/// sensible local budget.
pub(crate) const MIN_LEAD_BYTES: usize = 1 << 20;
/// The byte lead never exceeds local memory divided by this, so prefetched chunks do not push
/// out the ones a scan is about to use.
pub(crate) const LEAD_LOCAL_FRACTION: usize = 8;

/// The byte lead of a far-memory instance with `local_bytes` of local memory, in bytes.
pub(crate) fn lead_bytes(local_bytes: usize) -> usize {
    MIN_LEAD_BYTES.min(local_bytes / LEAD_LOCAL_FRACTION)
}

/// Most bytes one batch read carries. A batch lands all at once, so a very long one would make
/// the scan wait for its last chunk before it may use the first; 256 KiB keeps that wait to one
/// 256 KiB transfer while cutting the per-request overhead (a round trip, a wake-up on each side)
/// to one per 64 default-size chunks (the backend also splits to the frame bound).
const MAX_BATCH_BYTES: usize = 256 << 10;

/// A per-container stride detector.
#[derive(Debug, Default)]
pub(crate) struct StrideDetector {
    last: AtomicU64,
    stride: AtomicI64,
    run: AtomicU32,
    /// Furthest object already requested (for positive strides).
    ahead: AtomicU64,
    /// The byte lead in this container's objects (0 until the prefetch thread has seen one).
    lead_objects: AtomicU32,
}

impl StrideDetector {
    /// Records that this container's objects are `object_bytes` long, so its lead in chunks is
    /// `lead_bytes / object_bytes` from now on (the prefetch thread calls it per request).
    pub(crate) fn learn_lead(&self, lead_bytes: usize, object_bytes: usize) {
        let chunks = (lead_bytes / object_bytes.max(1)).min(u32::MAX as usize) as u32;
        if self.lead_objects.load(Relaxed) != chunks {
            self.lead_objects.store(chunks, Relaxed);
        }
    }

    /// Whether the run has already passed `obj` (it lies behind the last access in the stride's
    /// direction), so prefetching it would fetch a chunk nobody is about to use.
    #[cfg(test)]
    pub(crate) fn has_passed(&self, obj: u32) -> bool {
        self.position().has_passed(obj)
    }

    /// The run's last access and direction now, for checking many requests against one read
    /// of the detector (the mutator writes it on every slow path; reading it per request made
    /// its cache line travel to the prefetch thread and back for every chunk).
    pub(crate) fn position(&self) -> RunPosition {
        RunPosition {
            last: self.last.load(Relaxed),
            stride: self.stride.load(Relaxed),
        }
    }

    /// Records an access to `obj` and returns the objects to prefetch, if a stride run holds.
    /// `depth` is the configured depth in chunks (0 disables prefetching); the learned byte lead
    /// deepens it.
    pub(crate) fn observe(&self, obj: u32, depth: usize, out: &mut Vec<u32>) {
        if depth == 0 {
            return;
        }
        let depth = depth.max(self.lead_objects.load(Relaxed) as usize);
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

/// A snapshot of a stride run's position ([`StrideDetector::position`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunPosition {
    last: u64,
    stride: i64,
}

impl RunPosition {
    /// Whether the run had passed `obj` (see [`StrideDetector::has_passed`]). A snapshot a little
    /// old only lets through a request for a chunk just passed: one wasted prefetch.
    pub(crate) fn has_passed(self, obj: u32) -> bool {
        let obj = u64::from(obj);
        match self.stride {
            s if s > 0 => obj < self.last,
            s if s < 0 => obj > self.last,
            _ => false,
        }
    }
}

/// One queued prefetch.
pub(crate) struct PrefetchRequest {
    pub table: Arc<ObjectTable>,
    pub obj: u32,
}

/// One chunk whose read is on the wire: its word is busy-locked by the issuer and its local
/// space reserved until it lands.
struct InFlight {
    table: Arc<ObjectTable>,
    obj: u32,
    /// The remote word it was locked from (published back if the read fails).
    remote: u64,
    id: RemoteId,
    alloc: Allocation,
    pending: PendingRead,
    /// When its round was issued (the lander thread lands only reads older than a tick).
    issued_at: Instant,
}

// SAFETY: the only non-`Send` field is `alloc`, whose pointers address a reservation in the
// local log of `Inner`. An `InFlight` lives only in `Inner::landing` (or on the stack of the
// thread issuing or landing it), so the log outlives it; the prefetch thread gives back every
// queued read before it returns. The reservation belongs to this `InFlight` alone until `land`
// or `give_back` finishes it, so moving the `InFlight` between threads moves that exclusive
// ownership with it.
unsafe impl Send for InFlight {}

/// Most chunks in flight at once; the issuer takes no requests until the oldest land.
const MAX_IN_FLIGHT: usize = 1024;

/// How long the issuer waits before retrying requests that wait for local memory.
const DEFERRED_WAIT: Duration = Duration::from_micros(200);
/// How long the issuer waits for requests (or for room in flight) before it looks again on its
/// own: a bound, not a poll, since a queued request and the freeing of room both notify it.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How often the lander thread looks for reads that no mutator came to land, and how old a read
/// must be before it lands it (younger ones are left to the mutator that will use them).
const LANDER_TICK: Duration = Duration::from_millis(1);

/// Most requests kept waiting for local memory; later ones are dropped.
const MAX_DEFERRED: usize = 1024;

/// The reads on the wire, oldest first, and the token of whoever lands them now.
///
/// Reads land *just in time*: a mutator that dereferences a chunk whose read is on the wire
/// lands the queue's reads in order up to its own ([`land_until`]), on its own core and with no
/// thread to wake (the lead keeps their answers a few batches ahead of the scan, so they are
/// mostly in the socket already). The lander thread lands only reads nobody came for within
/// [`LANDER_TICK`], so a scan that stops never leaves local space and busy words behind for
/// long. One thread lands at a time (`busy`): the others park on `Inner::landed` as they would
/// for any fetch in flight. Issue order is landing order, the order a connection answers in.
#[derive(Default)]
pub(crate) struct Landing {
    queue: Mutex<VecDeque<InFlight>>,
    /// Held by the one thread landing now.
    busy: AtomicBool,
    /// Reads issued and not yet landed or given back.
    in_flight: AtomicUsize,
    /// Set by the prefetch thread as it stops: the lander gives back what is left and exits.
    closed: AtomicBool,
    /// Wakes the lander thread (at close).
    signal: Signal,
    /// Reads landed by mutators (the rest by the lander thread), for tests.
    by_mutators: AtomicU64,
}

impl Landing {
    fn has_room(&self) -> bool {
        self.in_flight.load(Relaxed) < MAX_IN_FLIGHT
    }

    /// Queues one round's reads (the issuer, under `Inner::issuer`, so rounds queue in issue
    /// order).
    fn push(&self, reads: &mut VecDeque<InFlight>) {
        self.in_flight.fetch_add(reads.len(), Relaxed);
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(reads);
    }

    /// The oldest read, if it was issued before `before` (any age when `None`).
    fn pop(&self, before: Option<Instant>) -> Option<InFlight> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match (q.front(), before) {
            (Some(f), Some(t)) if f.issued_at > t => None,
            (Some(_), _) => q.pop_front(),
            (None, _) => None,
        }
    }

    /// One landing pass, unless another thread is landing now (`None`): lands the queued reads
    /// in issue order (gives them back once the instance is shut down) while `more()` holds
    /// and the oldest was issued before `before` (any age when `None`). Returns how many it
    /// finished; wakes the issuer if that opened room for it.
    fn pass(
        &self,
        inner: &Inner,
        before: Option<Instant>,
        mut more: impl FnMut() -> bool,
    ) -> Option<usize> {
        if self
            .busy
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_err()
        {
            return None;
        }
        // The reads' tables are released together after the pass: the mutator clones a table's
        // `Arc` for every chunk it queues, so releasing each as its chunk landed moved the
        // count's cache line between threads once per chunk.
        let mut tables: Vec<Arc<ObjectTable>> = Vec::new();
        while more() {
            let Some(f) = self.pop(before) else {
                break;
            };
            tables.push(if inner.is_shut_down() {
                give_back(inner, f)
            } else {
                land(inner, f)
            });
        }
        let n = tables.len();
        self.busy.store(false, Release);
        if n > 0 && self.in_flight.fetch_sub(n, Relaxed) >= MAX_IN_FLIGHT {
            inner.prefetch_signal.notify();
        }
        Some(n)
    }
}

/// Lands queued prefetch reads, oldest first, until `word` is no longer a busy remote word or
/// none is queued, unless another thread is landing now; returns whether it landed any. Called
/// by a mutator that found `word` in flight (see [`Landing`]).
pub(crate) fn land_until(inner: &Inner, word: &PointerWord) -> bool {
    let landing = &inner.landing;
    if landing.queue.lock().map_or(true, |q| q.is_empty()) {
        return false;
    }
    let in_flight = || {
        let w = word.load();
        !pointer::is_present(w) && w & BUSY != 0
    };
    let n = landing.pass(inner, None, in_flight).unwrap_or(0);
    landing.by_mutators.fetch_add(n as u64, Relaxed);
    n > 0
}

/// The issuing half of the pipeline: what claims queued requests and sends them, shared by the
/// prefetch thread and by mutators that issue their own refills ([`Issuer::try_inline`]). It
/// lives in `Inner::issuer` while the prefetch thread runs; whoever holds that lock issues, so
/// reads reach the landing queue in the order they went on the wire.
pub(crate) struct Issuer {
    slot: usize,
    lead: usize,
    /// Requests that found local memory at the floor, oldest first: retried before new ones.
    deferred: Vec<PrefetchRequest>,
    /// This round's reads on the wire, queued for landing together.
    issued: VecDeque<InFlight>,
    /// Rounds issued by mutators inline (for tests).
    inline_rounds: u64,
}

impl Issuer {
    /// Whether requests wait for local memory (the prefetch thread retries them).
    fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// One round: claims and sends `batch` (after the deferred requests, when local memory has
    /// room to spare) and queues the reads on the wire for landing.
    fn round(&mut self, inner: &Inner, mut batch: Vec<PrefetchRequest>) {
        // Retry deferred requests only with room to spare above the floor: the first region the
        // evacuator frees belongs to a mutator that may be waiting for it.
        if !self.deferred.is_empty() && inner.log.free_regions() > inner.log.floor_regions + 1 {
            self.deferred.append(&mut batch);
            batch = std::mem::take(&mut self.deferred);
        }
        if batch.is_empty() {
            return;
        }
        issue(
            inner,
            self.slot,
            self.lead,
            batch,
            &mut self.issued,
            &mut self.deferred,
        );
        if !self.issued.is_empty() {
            inner.landing.push(&mut self.issued);
        }
    }

    /// Issues `objs` of `table` on the calling mutator thread, with whatever else is queued,
    /// when the issuer is free and reads have room; returns `false` (nothing done) otherwise,
    /// and the caller queues them for the prefetch thread. Issuing inline spares a scan one
    /// wake-up of the prefetch thread per refill, and that thread's CPU: on a small machine
    /// those cost more than the claim loop and the send, which are the same on either thread.
    pub(crate) fn try_inline(inner: &Inner, table: &Arc<ObjectTable>, objs: &[u32]) -> bool {
        let Ok(mut guard) = inner.issuer.try_lock() else {
            return false;
        };
        let Some(issuer) = guard.as_mut().filter(|_| inner.landing.has_room()) else {
            return false;
        };
        let mut batch = inner.take_prefetches();
        batch.extend(objs.iter().map(|&obj| PrefetchRequest {
            table: table.clone(),
            obj,
        }));
        issuer.round(inner, batch);
        issuer.inline_rounds += 1;
        let retry = issuer.has_deferred();
        drop(guard);
        if retry {
            inner.prefetch_signal.notify();
        }
        true
    }
}

/// The prefetch thread's body. It starts the lander thread ([`lander_loop`]) and then serves as
/// the *issuer* for what mutators queued rather than issued inline: it claims and sends it (in
/// batch reads) and retries deferred requests. The issuer never waits for a response, so a
/// refill goes out as soon as it is queued, however long the oldest read takes.
pub(crate) fn run(inner: Arc<Inner>) {
    let lander = {
        let inner = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("farmem-landing".into())
            .spawn(move || lander_loop(&inner))
    };
    let lander = match lander {
        Ok(h) => h,
        Err(e) => {
            inner.latch_error(Error::io("spawning the prefetch landing thread", e));
            return;
        }
    };
    *inner.issuer.lock().unwrap_or_else(|p| p.into_inner()) = Some(Issuer {
        slot: inner.log.prefetch_slot(),
        lead: lead_bytes(inner.config.local_bytes),
        deferred: Vec::new(),
        issued: VecDeque::new(),
        inline_rounds: 0,
    });
    while !inner.is_shut_down() {
        // Read before taking the queue: a request queued after the take bumps the generation,
        // so the wait below returns at once instead of sleeping on it.
        let seen = inner.prefetch_signal.generation();
        let retry = {
            let mut guard = inner.issuer.lock().unwrap_or_else(|p| p.into_inner());
            let Some(issuer) = guard.as_mut() else {
                break;
            };
            let batch = if inner.landing.has_room() {
                inner.take_prefetches()
            } else {
                Vec::new()
            };
            issuer.round(&inner, batch);
            issuer.has_deferred()
        };
        // Deferred requests are retried at the shortest interval: the evacuator frees regions
        // without signalling.
        let wait = if retry { DEFERRED_WAIT } else { IDLE_WAIT };
        inner.prefetch_signal.wait_since(seen, wait);
    }
    // No read is queued after the issuer is gone; the lander gives back what is left.
    drop(
        inner
            .issuer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
    );
    inner.landing.closed.store(true, Release);
    inner.landing.signal.notify();
    if lander.join().is_err() {
        inner.latch_error(Error::internal("the prefetch landing thread panicked"));
    }
}

/// The lander thread: every [`LANDER_TICK`] it lands the reads that have waited longer than a
/// tick for a mutator to land them (a scan lands its own, see [`Landing`]); once the prefetch
/// thread closes the queue it gives back every read still queued and returns.
fn lander_loop(inner: &Inner) {
    let landing = &inner.landing;
    loop {
        let seen = landing.signal.generation();
        if landing.closed.load(Acquire) {
            // Closed only after shutdown, so the pass gives every read back; wait out a mutator
            // landing now first.
            while landing.pass(inner, None, || true).is_none() {
                std::thread::sleep(Duration::from_micros(100));
            }
            return;
        }
        if let Some(before) = Instant::now().checked_sub(LANDER_TICK) {
            landing.pass(inner, Some(before), || true);
        }
        landing.signal.wait_since(seen, LANDER_TICK);
    }
}

/// Publishes the remote word of a read nobody will land and releases its local space; returns
/// the read's table for the caller to release.
fn give_back(inner: &Inner, f: InFlight) -> Arc<ObjectTable> {
    if let Some(word) = f.table.word(f.obj) {
        word.publish(f.remote);
    }
    inner.landed.notify();
    inner.log.finish(&f.alloc);
    f.table
}

/// Claims each requested chunk (busy lock and local space), then issues each run of claimed
/// chunks of one container as one batch read (one request's overhead per run, not per chunk).
/// Requests that find local memory at the floor go to `deferred`, in order.
fn issue(
    inner: &Inner,
    slot: usize,
    lead: usize,
    batch: Vec<PrefetchRequest>,
    inflight: &mut VecDeque<InFlight>,
    deferred: &mut Vec<PrefetchRequest>,
) {
    let mut claimed = Vec::with_capacity(batch.len());
    let mut requests = batch.into_iter();
    // The detector of the table of the previous request, read once per run of requests of one
    // table rather than per request (`RunPosition`).
    let mut seen: Option<(*const ObjectTable, RunPosition)> = None;
    while let Some(req) = requests.next() {
        let position = match seen {
            Some((t, p)) if std::ptr::eq(t, Arc::as_ptr(&req.table)) => p,
            _ => {
                req.table.stride.learn_lead(lead, req.table.object_bytes);
                let p = req.table.stride.position();
                seen = Some((Arc::as_ptr(&req.table), p));
                p
            }
        };
        if position.has_passed(req.obj) {
            continue;
        }
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
            inner.landed.notify();
            let room = MAX_DEFERRED.saturating_sub(deferred.len());
            deferred.extend(std::iter::once(req).chain(requests).take(room));
            break;
        };
        claimed.push((req, w, id, alloc));
    }
    let mut rest = claimed.into_iter().peekable();
    while let Some(first) = rest.next() {
        let ds = first.2.ds();
        let mut bytes = first.2.size();
        let mut run = vec![first];
        while let Some(c) =
            rest.next_if(|c| c.2.ds() == ds && bytes + c.2.size() <= MAX_BATCH_BYTES)
        {
            bytes += c.2.size();
            run.push(c);
        }
        let reads: Vec<(u32, usize)> = run.iter().map(|c| (c.2.obj(), c.2.size())).collect();
        match inner.backend.issue_read_batch(ds, &reads) {
            Ok(pendings) if pendings.len() == run.len() => {
                let issued_at = Instant::now();
                for ((req, remote, id, alloc), pending) in run.into_iter().zip(pendings) {
                    inflight.push_back(InFlight {
                        table: req.table,
                        obj: req.obj,
                        remote,
                        id,
                        alloc,
                        pending,
                        issued_at,
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
                inner.landed.notify();
            }
        }
    }
}

/// Waits for one read and publishes its word present with `PREFETCHED` (or remote again if the
/// read failed); returns the read's table for the caller to release.
fn land(inner: &Inner, f: InFlight) -> Arc<ObjectTable> {
    let InFlight {
        table,
        obj,
        remote,
        id,
        alloc,
        pending,
        issued_at: _,
    } = f;
    let Some(word) = table.word(obj) else {
        // The table never shrinks while its container lives, and the Arc keeps it alive.
        inner.log.finish(&alloc);
        return table;
    };
    // SAFETY: `alloc.data` is a fresh reservation of `id.size()` bytes that only this thread
    // writes until the word is published.
    let buf = unsafe { std::slice::from_raw_parts_mut(alloc.data, id.size()) };
    match (pending.wait(buf), LocalAddr::new(alloc.data as usize)) {
        (Ok(()), Ok(addr)) => {
            // SAFETY: the allocation's header is valid and ours until `finish`.
            unsafe { &*alloc.header }
                .backptr
                .store(word.addr(), std::sync::atomic::Ordering::Release);
            // Counted before the word is published, so `prefetches_used` (counted at the first
            // use) never reads ahead of it. Each counter has its own cache line (metrics note).
            Counters::add(&inner.counters.prefetches_issued, 1);
            Counters::add(&inner.counters.bytes_fetched, id.size() as u64);
            word.publish(pointer::present_word(addr, PREFETCHED));
        }
        _ => word.publish(remote),
    }
    // A mutator may be parked on this chunk (memory module note).
    inner.landed.notify();
    inner.log.finish(&alloc);
    table
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

    #[test]
    fn a_learned_byte_lead_deepens_small_chunks_only() {
        // 4 KiB chunks under a 64 KiB lead: 16 chunks beat a configured depth of 4.
        let d = StrideDetector::default();
        d.learn_lead(64 << 10, 4096);
        let mut out = Vec::new();
        for obj in 0..3 {
            d.observe(obj, 4, &mut out);
        }
        assert_eq!(out, (3..=18).collect::<Vec<u32>>());
        out.clear();
        d.observe(3, 4, &mut out);
        assert!(out.is_empty(), "lead 15 of 16 chunks: no refill yet");
        d.observe(7, 4, &mut out);
        assert!(out.is_empty(), "a new stride restarts the run");
        // Chunks as large as the lead: the configured depth stays in force.
        let d = StrideDetector::default();
        d.learn_lead(64 << 10, 64 << 10);
        out.clear();
        for obj in 0..3 {
            d.observe(obj, 4, &mut out);
        }
        assert_eq!(out, vec![3, 4, 5, 6]);
        d.observe(9, 0, &mut out);
        assert_eq!(out.len(), 4, "depth 0 still disables, whatever the lead");
    }

    #[test]
    fn a_run_knows_which_chunks_it_has_passed() {
        let d = StrideDetector::default();
        assert!(!d.has_passed(5), "no run yet");
        let mut out = Vec::new();
        for obj in [10, 12, 14] {
            d.observe(obj, 2, &mut out);
        }
        assert!(d.has_passed(13) && !d.has_passed(14) && !d.has_passed(16));
        for obj in [30, 27, 24] {
            d.observe(obj, 2, &mut out);
        }
        assert!(d.has_passed(25) && !d.has_passed(24) && !d.has_passed(3));
    }

    /// Scans at tight local memory (the prefetcher defers requests at the floor) while another
    /// thread writes: every sum is right and no write runs out of local memory.
    #[test]
    fn scans_at_tight_local_memory_stay_correct_beside_a_writer() {
        let fm = started_prefetcher();
        let n = (4 << 20) / 8;
        let mut arr = fm.array::<u64>(n).unwrap();
        let block: Vec<u64> = (0..4096).collect();
        {
            let mut s = fm.scope();
            for start in (0..n).step_by(block.len()) {
                arr.write_slice(start, &block, &mut s).unwrap();
            }
        }
        let want = (n / block.len()) as u64 * (4096 * 4095 / 2);
        let mut other = fm.array::<u64>(64 << 10).unwrap();
        std::thread::scope(|t| {
            t.spawn(|| {
                for round in 0..4u64 {
                    let mut s = fm.scope();
                    for i in (0..other.len()).step_by(509) {
                        s.renew();
                        *other.get_mut(i, &s).unwrap() = round;
                    }
                }
            });
            for _ in 0..3 {
                let mut s = fm.scope();
                let mut sum = 0u64;
                arr.for_each_chunk(&mut s, |_, xs| {
                    sum = xs.iter().fold(sum, |a, &x| a.wrapping_add(x));
                })
                .unwrap();
                assert_eq!(sum, want);
            }
        });
        let m = fm.metrics();
        assert!(m.prefetches_used <= m.prefetches_issued, "{m:?}");
        assert!(fm.take_error().is_none());
    }

    /// A far-memory instance over the in-process backend whose prefetch thread has installed its
    /// issuer (it does so as it starts).
    fn started_prefetcher() -> crate::FarMemory {
        use crate::{Config, FarMemory};
        let config = Config::builder()
            .local_bytes(1 << 20)
            .region_bytes(64 << 10)
            .chunk_bytes(4096)
            .prefetch_depth(16)
            .build()
            .unwrap();
        let fm = FarMemory::in_process(config, 64 << 20).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while fm.inner.issuer.lock().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "no issuer after 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        fm
    }

    /// A single-threaded scan issues its refills itself (the issuer is free) and lands them
    /// itself as it reaches them, and every chunk sums right.
    #[test]
    fn a_scan_issues_and_lands_its_own_refills() {
        let fm = started_prefetcher();
        let n = (4 << 20) / 8;
        let mut arr = fm.array::<u64>(n).unwrap();
        {
            let mut s = fm.scope();
            let block: Vec<u64> = (0..4096).collect();
            for start in (0..n).step_by(block.len()) {
                arr.write_slice(start, &block, &mut s).unwrap();
            }
        }
        let mut s = fm.scope();
        let mut sum = 0u64;
        arr.for_each_chunk(&mut s, |_, xs| {
            sum = xs.iter().fold(sum, |a, &x| a.wrapping_add(x));
        })
        .unwrap();
        assert_eq!(sum, (n / 4096) as u64 * (4096 * 4095 / 2));
        let inline = fm
            .inner
            .issuer
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .inline_rounds;
        assert!(inline > 0, "no refill was issued inline");
        let by_mutator = fm.inner.landing.by_mutators.load(Relaxed);
        assert!(by_mutator > 0, "the scan landed none of its reads itself");
        let m = fm.metrics();
        assert!(
            m.prefetches_used > 0 && m.prefetches_used <= m.prefetches_issued,
            "{m:?}"
        );
    }

    /// While another thread holds the issuer, a refill is not issued inline: it goes to the
    /// prefetch thread's queue, which issues it once the issuer is free.
    #[test]
    fn a_refill_goes_to_the_prefetch_thread_while_the_issuer_is_busy() {
        let fm = started_prefetcher();
        let arr = fm.array::<u64>(64 << 10).unwrap();
        let inner = &fm.inner;
        let table = inner.table(arr.ds_id()).unwrap();
        let (before, issued_before) = {
            let busy = inner.issuer.lock().unwrap();
            assert!(!Issuer::try_inline(inner, &table, &[3, 4]));
            // What a mutator does when the inline issue is refused.
            inner.queue_prefetches_for_thread(&table, &[3, 4]);
            (
                busy.as_ref().unwrap().inline_rounds,
                fm.metrics().prefetches_issued,
            )
        };
        // Nobody dereferences the chunks: the lander thread lands them once they are a tick old.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while fm.metrics().prefetches_issued < issued_before + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing issued or landed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        for obj in [3, 4] {
            let w = table.word(obj).unwrap().load();
            assert!(
                pointer::is_present(w) && w & PREFETCHED != 0,
                "chunk {obj}: {w:#x}"
            );
        }
        assert_eq!(inner.landing.by_mutators.load(Relaxed), 0);
        let after = inner.issuer.lock().unwrap().as_ref().unwrap().inline_rounds;
        assert_eq!(after, before, "the thread's round is not an inline one");
        assert!(
            Issuer::try_inline(inner, &table, &[5]),
            "a free issuer issues inline"
        );
    }

    /// Dropping the instance while reads wait in the landing queue does not hang: the lander
    /// gives them back before the log goes.
    #[test]
    fn dropping_the_instance_gives_back_reads_nobody_landed() {
        let fm = started_prefetcher();
        let arr = fm.array::<u64>(64 << 10).unwrap();
        let table = fm.inner.table(arr.ds_id()).unwrap();
        let objs: Vec<u32> = (0..32).collect();
        assert!(Issuer::try_inline(&fm.inner, &table, &objs));
        assert!(fm.inner.landing.in_flight.load(Relaxed) > 0 || fm.metrics().prefetches_issued > 0);
        drop(table);
        drop(arr);
        drop(fm);
    }

    #[test]
    fn the_byte_lead_is_capped_by_local_memory() {
        assert_eq!(lead_bytes(64 << 20), MIN_LEAD_BYTES);
        assert_eq!(lead_bytes(1 << 20), (1 << 20) / LEAD_LOCAL_FRACTION);
        assert_eq!(lead_bytes(0), 0);
    }
}
