//! `FarMemory`: the handle that owns the local log, the evacuator and prefetch threads and the
//! backend, creates containers, and runs the slow path of every dereference.
//!
//! # The slow path (AIFM §4.1, steps 3 and 4 of the data flow)
//!
//! A dereference whose fast-path test fails comes here with the pointer word it saw:
//!
//! - present but cold, not yet dirty, just prefetched, or claimed by the evacuator: one CAS sets
//!   `HOT` (and `DIRTY` for a write) and clears `EVACUATING` and `PREFETCHED`; the first read of
//!   a prefetched object clears `PREFETCHED` without setting `HOT` (a scan's one use of a chunk
//!   earns it no second chance; its next read sets `HOT`). Clearing
//!   `EVACUATING` is the mutator winning: the evacuator's own CAS then fails and it leaves the
//!   object where it is. `DIRTY` is in the word before the caller can write, so an evacuator that
//!   wins afterwards cannot have seen the word clean (its CAS would fail).
//! - `BUSY` and present: the evacuator is moving it; back off and look again (it waits for
//!   nothing while it holds the lock, so that is one copy or one write-back long).
//! - `BUSY` and remote: a fetch is in flight, most often one of the prefetcher's batch reads.
//!   The mutator lands the prefetcher's queued reads up to this one itself (`prefetch` module
//!   note) unless another thread is landing them; otherwise, after a few checks, it parks on
//!   `Inner::landed` (a generation signal that every unlock of a busy remote word notifies: a
//!   landing, a mutator's own fetch, a write-through, a fetch given back), so a thread that
//!   catches up with another's fetch sleeps until the chunk lands instead of spinning against
//!   the thread it waits for.
//! - remote: take the busy lock (CAS), bump-allocate local space, read the object from the
//!   backend into it, write the header's back-pointer and publish the word present (release).
//!   A fresh object (remote with `FRESH`: new and all zeros) is not read: its local space is
//!   zeroed and the word is published present, hot and dirty, so its first eviction writes it
//!   out. Growing a container therefore costs no fetch of the zeros it was created with.
//!   If no local memory can be had above the hard floor, the mutator waits for the evacuator, up
//!   to `alloc_wait`. A scope that has dereferenced nothing since it was entered or renewed holds
//!   no reference, so it steps out of its slot while it waits (the evacuator's grace period does
//!   not wait for it); a scope that may hold references cannot, because the evacuator may be
//!   waiting for exactly that scope to end. So a read in such a scope is served at once,
//!   uncached, from a buffer owned by the scope; a `set` is written through to the backend; and a
//!   `get_mut` waits its `alloc_wait` and then fails with `OutOfLocalMemory`. Renewing scopes in
//!   loops (as `for_each_chunk` and `write_slice` do) keeps mutators on the waiting path.
//!   The wait ends early when a write-back has failed with `OutOfFarMemory` (latched until
//!   `take_error`): the evacuator cannot free memory then, and the writer gets that error.
//!
//! # Flush (before a remote-agent call)
//!
//! A container flush (`RemVec::flush`, `RemArray::flush`) writes every dirty local object of
//! the container to the backend and keeps it cached, now clean, so a function that runs on the
//! memory server (AIFM §4.4, remote agent) sees current data. It uses the mutator's protocol,
//! not a new one: inside a scope it takes each present dirty object back from the evacuator
//! with the same CAS as a read (clearing `EVACUATING`, so a claim made before it fails at the
//! evacuator's move-out, and a claim made after it waits for the scope), writes a batch of them
//! with one `write_batch`, then clears `DIRTY` with a CAS that only succeeds while the word
//! still points at the same copy, and ends the scope. **Invariant:** no thread writes the
//! objects during a flush, because every container write takes `&mut` of the container and a
//! flush takes `&self`; so the bytes written are the bytes of the copy, and clearing `DIRTY`
//! loses no write. A fresh object (never written) is written as zeros through
//! `write_through`, since far memory may hold nothing for it yet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use farmem_error::{Error, ErrorKind, Result};

use crate::array::RemArray;
use crate::backend::{Backend, InProcessBackend, WriteRequest};
use crate::config::Config;
use crate::log::LocalLog;
use crate::metrics::{Counters, Metrics};
use crate::object::ObjectTable;
use crate::pod::Pod;
use crate::pointer::{
    self, LocalAddr, PointerWord, RemoteId, BUSY, DIRTY, EVACUATING, HOT, MAX_DS_ID, PREFETCHED,
};
use crate::prefetch::{land_until, Issuer, Landing, PrefetchRequest};
use crate::scope::{DerefScope, ScopeRegistry};
use crate::signal::Signal;
use crate::sync::backoff;
use crate::vec::RemVec;

/// What a slow-path dereference wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// A shared read; caches the object.
    Read,
    /// A shared read that must not pollute local memory (don't-cache hint).
    ReadNoCache,
    /// A write that waits up to `alloc_wait` for local memory.
    Write,
    /// A write that fails at once without local memory (the caller writes through).
    WriteOrFail,
}

const PREFETCH_QUEUE_MAX: usize = 4096;

/// Checks of a word whose fetch is in flight before the mutator parks on `Inner::landed`.
const LANDING_SPINS: u32 = 32;
/// The longest park on a fetch in flight before the word is looked at again (a bound: every
/// unlock of a busy remote word notifies).
const LANDING_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// The state shared by a [`FarMemory`], its containers and its threads.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) log: LocalLog,
    pub(crate) counters: Counters,
    tables: Mutex<Vec<Option<Weak<ObjectTable>>>>,
    shutdown: AtomicBool,
    prefetch_queue: Mutex<Vec<PrefetchRequest>>,
    pub(crate) prefetch_signal: Signal,
    /// The prefetch pipeline's issuing state while the prefetch thread runs (`None` before it
    /// starts and after it stops); a mutator that gets it uncontended issues its own refill.
    pub(crate) issuer: Mutex<Option<Issuer>>,
    /// The prefetcher's reads on the wire, landed by the mutators that need them first.
    pub(crate) landing: Landing,
    /// Notified whenever a busy remote word is unlocked (a fetch landed, or was given back), so
    /// a mutator that finds a chunk in flight parks instead of polling it.
    pub(crate) landed: Signal,
    last_error: Mutex<Option<Error>>,
    pub(crate) scopes: ScopeRegistry,
}

impl Inner {
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Registers a table under the lowest free data-structure id.
    pub(crate) fn register_table(
        &self,
        make: impl FnOnce(u16) -> ObjectTable,
    ) -> Result<Arc<ObjectTable>> {
        let mut tables = self
            .tables
            .lock()
            .map_err(|_| Error::internal("container registry lock poisoned"))?;
        let ds = match tables.iter().position(Option::is_none) {
            Some(i) => i,
            None if (tables.len() as u64) <= MAX_DS_ID => {
                tables.push(None);
                tables.len() - 1
            }
            None => {
                return Err(Error::new(
                    ErrorKind::OutOfLocalMemory,
                    format!(
                        "all {} data-structure ids are in use; drop containers you no longer need",
                        MAX_DS_ID + 1
                    ),
                ))
            }
        };
        let table = Arc::new(make(ds as u16));
        tables[ds] = Some(Arc::downgrade(&table));
        Ok(table)
    }

    pub(crate) fn release_ds(&self, ds: u16) {
        if let Ok(mut t) = self.tables.lock() {
            if let Some(slot) = t.get_mut(ds as usize) {
                *slot = None;
            }
        }
    }

    /// The live table of data structure `ds`.
    pub(crate) fn table(&self, ds: u16) -> Option<Arc<ObjectTable>> {
        self.tables
            .lock()
            .ok()?
            .get(ds as usize)?
            .as_ref()?
            .upgrade()
    }

    pub(crate) fn latch_error(&self, e: Error) {
        if let Ok(mut l) = self.last_error.lock() {
            l.get_or_insert(e);
        }
    }

    pub(crate) fn take_prefetches(&self) -> Vec<PrefetchRequest> {
        self.prefetch_queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    /// Issues a refill inline when the prefetch issuer is free, or queues it for the prefetch
    /// thread (`prefetch` module note).
    fn queue_prefetches(&self, table: &Arc<ObjectTable>, objs: &[u32]) {
        if objs.is_empty() || self.is_shut_down() || Issuer::try_inline(self, table, objs) {
            return;
        }
        self.queue_prefetches_for_thread(table, objs);
    }

    /// Queues a refill for the prefetch thread and wakes it.
    pub(crate) fn queue_prefetches_for_thread(&self, table: &Arc<ObjectTable>, objs: &[u32]) {
        if let Ok(mut q) = self.prefetch_queue.lock() {
            for &obj in objs {
                if q.len() >= PREFETCH_QUEUE_MAX {
                    break;
                }
                q.push(PrefetchRequest {
                    table: table.clone(),
                    obj,
                });
            }
        }
        self.prefetch_signal.notify();
    }

    fn observe_stride(&self, table: &Arc<ObjectTable>, obj: u32) {
        let depth = self.config.prefetch_depth;
        if depth == 0 {
            return;
        }
        let mut objs = Vec::new();
        table.stride.observe(obj, depth, &mut objs);
        objs.retain(|&o| o < table.objects());
        self.queue_prefetches(table, &objs);
    }

    /// The slow path of a dereference of object `obj` of `table` (see the module note); returns
    /// the object's data address, valid for the life of `scope`.
    pub(crate) fn deref_slow(
        &self,
        table: &Arc<ObjectTable>,
        obj: u32,
        word: &PointerWord,
        scope: &DerefScope<'_>,
        access: Access,
    ) -> Result<*mut u8> {
        let mut round = 0u32;
        let mut deadline: Option<Instant> = None;
        let writes = matches!(access, Access::Write | Access::WriteOrFail);
        loop {
            let w = word.load();
            if pointer::is_present(w) && w & BUSY != 0 {
                // The evacuator is copying or writing back this object: one memcpy or one write.
                backoff(round);
                round += 1;
                continue;
            }
            if pointer::is_present(w) {
                let want = match access {
                    Access::Write | Access::WriteOrFail => HOT | DIRTY,
                    // A prefetched chunk's first read is the read it was fetched for, not a
                    // second chance: a scan that uses each chunk once leaves it cold and clean,
                    // so the evacuator drops it instead of copying it. The next read sets HOT.
                    Access::Read if w & PREFETCHED != 0 => 0,
                    Access::Read => HOT,
                    // The don't-cache hint leaves the object cold for the evacuator.
                    Access::ReadNoCache => 0,
                };
                let new = (w | want) & !(EVACUATING | PREFETCHED);
                if new != w {
                    if let Err(_actual) = word.cas(w, new) {
                        continue;
                    }
                    if w & EVACUATING != 0 {
                        Counters::add(&self.counters.evacuation_conflicts, 1);
                    }
                    if w & PREFETCHED != 0 {
                        Counters::add(&self.counters.prefetches_used, 1);
                        self.observe_stride(table, obj);
                    }
                }
                scope.count_hit();
                return Ok(pointer::addr_of(w) as *mut u8);
            }
            if w & BUSY != 0 {
                // A fetch is in flight, most often the prefetcher's: land its reads up to this
                // one here, unless another thread is landing them; otherwise park until a
                // landing notifies, rather than poll the word (module note).
                if land_until(self, word) {
                    continue;
                }
                if round < LANDING_SPINS {
                    std::hint::spin_loop();
                    round += 1;
                } else {
                    let seen = self.landed.generation();
                    if word.load() == w {
                        self.landed.wait_since(seen, LANDING_WAIT);
                    }
                }
                continue;
            }
            let id = RemoteId::from_bits(w);
            let fresh = pointer::is_fresh(w);
            if access == Access::ReadNoCache {
                return self.read_uncached(id, fresh, scope);
            }
            if word.try_lock_remote(w).is_err() {
                continue;
            }
            let Some(alloc) = self.log.alloc(self.log.mutator_slot(), id, false) else {
                word.publish(w);
                self.landed.notify();
                // Waiting is only safe for a scope that holds no reference yet (it steps out of
                // its slot while it waits); any other scope may be what the evacuator waits for.
                let may_wait = match access {
                    Access::Read | Access::WriteOrFail => scope.is_fresh(),
                    Access::Write => true,
                    Access::ReadNoCache => false,
                };
                let d = *deadline.get_or_insert_with(|| Instant::now() + self.config.alloc_wait);
                if may_wait && Instant::now() < d && self.far_full().is_none() {
                    let wait = || {
                        self.log.evac_signal.notify();
                        farmem_sched::park::park_timeout(std::time::Duration::from_micros(200));
                    };
                    if scope.is_fresh() {
                        scope.quiescent(wait);
                    } else {
                        wait();
                    }
                    continue;
                }
                match access {
                    Access::Read | Access::ReadNoCache => {
                        return self.read_uncached(id, fresh, scope)
                    }
                    Access::Write | Access::WriteOrFail => return Err(self.out_of_local(id)),
                }
            };
            // SAFETY: a fresh reservation of `id.size()` bytes that only this thread touches until
            // the word is published.
            let buf = unsafe { std::slice::from_raw_parts_mut(alloc.data, id.size()) };
            let fetched = if fresh {
                // A fresh object is made here, not fetched (pointer module note): its bytes are
                // zeros, and the log reuses freed regions, so write them.
                buf.fill(0);
                Ok(())
            } else {
                self.backend.read(id.ds(), id.obj(), buf)
            }
            .and_then(|()| LocalAddr::new(alloc.data as usize));
            let addr = match fetched {
                Ok(a) => a,
                Err(e) => {
                    word.publish(w);
                    self.landed.notify();
                    self.log.finish(&alloc);
                    return Err(e.with_context(format!(
                        "fetching object {} of container {}",
                        id.obj(),
                        id.ds()
                    )));
                }
            };
            // SAFETY: the allocation's header is valid and ours until `finish`.
            unsafe { &*alloc.header }
                .backptr
                .store(word.addr(), Ordering::Release);
            // A fresh object starts dirty even for a read: its first eviction writes it out, so
            // it never depends on what (if anything) its creation left in far memory.
            word.publish(pointer::present_word(
                addr,
                if writes || fresh { HOT | DIRTY } else { HOT },
            ));
            self.landed.notify();
            self.log.finish(&alloc);
            scope.count_slow();
            if fresh {
                // Nothing was fetched: no miss, and no stride for the prefetcher to follow.
                return Ok(alloc.data);
            }
            Counters::add(&self.counters.misses, 1);
            Counters::add(&self.counters.bytes_fetched, id.size() as u64);
            self.observe_stride(table, obj);
            return Ok(alloc.data);
        }
    }

    /// The latched write-back failure, if far memory is full: the evacuator cannot free local
    /// memory by writing objects back, so waiting for it is pointless.
    fn far_full(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| {
            l.as_ref()
                .filter(|e| e.kind() == ErrorKind::OutOfFarMemory)
                .map(|e| e.to_string())
        })
    }

    fn out_of_local(&self, id: RemoteId) -> Error {
        // Local memory the evacuator cannot free because far memory is full is a full far
        // memory, not a small local budget: say so (with chunks reserved at write-back, this is
        // where a full backend reaches a writer).
        if let Some(e) = self.far_full() {
            return Error::new(
                ErrorKind::OutOfFarMemory,
                format!(
                    "no local memory for object {} of container {} because the evacuator cannot write objects back: {e}; give far memory more capacity",
                    id.obj(),
                    id.ds()
                ),
            );
        }
        Error::new(
            ErrorKind::OutOfLocalMemory,
            format!(
                "no local memory for object {} of container {} ({} bytes) after waiting {:?} for the evacuator ({} of {} regions free, hard floor {}); raise local_bytes, or end or renew long scopes",
                id.obj(),
                id.ds(),
                id.size(),
                self.config.alloc_wait,
                self.log.free_regions(),
                self.log.regions(),
                self.log.floor_regions
            ),
        )
    }

    fn read_uncached(&self, id: RemoteId, fresh: bool, scope: &DerefScope<'_>) -> Result<*mut u8> {
        let p = scope.arena_buffer(id.size());
        if fresh {
            // The arena buffer is zeroed: it already holds a fresh object's bytes.
            scope.count_slow();
            Counters::add(&self.counters.uncached_reads, 1);
            return Ok(p);
        }
        // SAFETY: `p` is a fresh buffer of at least `id.size()` bytes owned by the scope.
        let buf = unsafe { std::slice::from_raw_parts_mut(p, id.size()) };
        self.backend.read(id.ds(), id.obj(), buf)?;
        scope.count_slow();
        Counters::add(&self.counters.misses, 1);
        Counters::add(&self.counters.uncached_reads, 1);
        Counters::add(&self.counters.bytes_fetched, id.size() as u64);
        Ok(p)
    }

    /// Writes `bytes` at `offset` of a remote object straight to the backend (read-modify-write
    /// under the busy lock). Returns `false` if the object turned out present (use the local copy).
    pub(crate) fn write_through(
        &self,
        word: &PointerWord,
        offset: usize,
        bytes: &[u8],
    ) -> Result<bool> {
        let mut round = 0;
        loop {
            let w = word.load();
            if pointer::is_present(w) {
                return Ok(false);
            }
            if w & BUSY != 0 {
                backoff(round);
                round += 1;
                continue;
            }
            if word.try_lock_remote(w).is_err() {
                continue;
            }
            let id = RemoteId::from_bits(w);
            let fresh = pointer::is_fresh(w);
            let mut tmp = vec![0u8; id.size()];
            let r = if fresh {
                // Its bytes are the zeros already in `tmp`.
                Ok(())
            } else {
                self.backend.read(id.ds(), id.obj(), &mut tmp)
            }
            .and_then(|()| {
                tmp[offset..offset + bytes.len()].copy_from_slice(bytes);
                self.backend.write(id.ds(), id.obj(), &tmp)
            });
            // Written: far memory now holds the object, so it is no longer fresh.
            word.publish(if r.is_ok() { w & !pointer::FRESH } else { w });
            self.landed.notify();
            r?;
            Counters::add(&self.counters.write_throughs, 1);
            Counters::add(&self.counters.bytes_written_back, id.size() as u64);
            return Ok(true);
        }
    }
}

/// Bytes of dirty chunks a container flush sends per backend batch (and holds in one scope).
pub(crate) const FLUSH_BATCH_BYTES: usize = 4 << 20;

impl Inner {
    /// Writes back the dirty local copies among `words` (objects of `table`, named by object
    /// id) and writes zeros for the fresh ones, so far memory holds every object's current bytes
    /// (a container flush before a remote-agent call; see the module note's "Flush"). Returns
    /// the number of objects written.
    ///
    /// The caller must guarantee that nobody writes these objects until this returns: a
    /// container write needs `&mut` of the container and a flush takes `&self`.
    pub(crate) fn flush_objects(
        &self,
        table: &ObjectTable,
        words: &mut dyn Iterator<Item = (u32, &PointerWord)>,
    ) -> Result<usize> {
        let mut written = 0usize;
        let mut words = words.peekable();
        while words.peek().is_some() {
            // One scope per batch: what it took back cannot move until the batch is written.
            let scope = DerefScope::enter(self);
            let mut batch: Vec<(u32, &PointerWord, usize)> = Vec::new();
            let mut bytes = 0usize;
            while bytes < FLUSH_BATCH_BYTES {
                let Some((obj, word)) = words.next() else {
                    break;
                };
                loop {
                    match self.take_back_dirty(word) {
                        Dirty::At(addr) => {
                            batch.push((obj, word, addr));
                            bytes += table.object_bytes;
                        }
                        Dirty::Fresh => {
                            // Never written: far memory may hold nothing for it yet (capacity
                            // taken at first write-back); the write-through writes its zeros.
                            // `false`: a reader made it locally meanwhile (present and dirty).
                            if !self.write_through(word, 0, &[])? {
                                continue;
                            }
                            written += 1;
                        }
                        Dirty::Clean => {}
                    }
                    break;
                }
            }
            let reqs: Vec<WriteRequest<'_>> = batch
                .iter()
                .map(|&(obj, _, addr)| WriteRequest {
                    ds: table.ds,
                    obj,
                    // SAFETY: (1) `addr` is the data of a present object of `object_bytes`
                    // bytes that `take_back_dirty` took back inside `scope`, so the evacuator
                    // neither moves nor frees it while `scope` lives (its claims wait for
                    // `scope`); (2) nobody writes it meanwhile (this function's contract).
                    data: unsafe {
                        std::slice::from_raw_parts(addr as *const u8, table.object_bytes)
                    },
                })
                .collect();
            if !reqs.is_empty() {
                self.backend.write_batch(&reqs).map_err(|e| {
                    e.with_context(format!(
                        "flushing {} dirty objects of container {}",
                        reqs.len(),
                        table.ds
                    ))
                })?;
            }
            drop(reqs);
            for &(_, word, addr) in &batch {
                mark_clean(word, addr);
            }
            written += batch.len();
            Counters::add(
                &self.counters.bytes_written_back,
                (batch.len() * table.object_bytes) as u64,
            );
            drop(scope);
        }
        Ok(written)
    }

    /// Takes a present dirty object back from the evacuator exactly as a mutator's read does
    /// (clearing `EVACUATING` makes the evacuator's move-out CAS fail), so it stays at its
    /// address while the caller's scope lives. Must run inside a scope.
    fn take_back_dirty(&self, word: &PointerWord) -> Dirty {
        let mut round = 0u32;
        loop {
            let w = word.load();
            if !pointer::is_present(w) {
                if w & BUSY != 0 {
                    // Being fetched or written through: one backend call long.
                    backoff(round);
                    round += 1;
                    continue;
                }
                return if pointer::is_fresh(w) {
                    Dirty::Fresh
                } else {
                    Dirty::Clean
                };
            }
            if w & BUSY != 0 {
                // The evacuator is copying or writing it back.
                backoff(round);
                round += 1;
                continue;
            }
            if w & DIRTY == 0 {
                return Dirty::Clean;
            }
            let new = w & !(EVACUATING | PREFETCHED);
            if new != w && word.cas(w, new).is_err() {
                continue;
            }
            return Dirty::At(pointer::addr_of(w));
        }
    }
}

/// What a flush found in a pointer word.
enum Dirty {
    /// Present and dirty at this data address (taken back from the evacuator).
    At(usize),
    /// Remote and fresh: never written, far memory may hold nothing.
    Fresh,
    /// Nothing to write: far memory is current.
    Clean,
}

/// Clears `DIRTY` of a flushed object if it is still present at `addr` (it is: the flushing
/// scope is still open). A later write sets it again on its slow path.
fn mark_clean(word: &PointerWord, addr: usize) {
    let mut w = word.load();
    while pointer::is_present(w) && pointer::addr_of(w) == addr && w & DIRTY != 0 {
        match word.cas(w, w & !DIRTY) {
            Ok(_) => return,
            Err(a) => w = a,
        }
    }
}

/// One far-memory instance: local log, evacuator and prefetch threads, backend. Containers are
/// created from it and keep its shared state alive; dropping the handle stops its threads.
pub struct FarMemory {
    pub(crate) inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl FarMemory {
    /// Starts an instance over `backend` with `config` (validated again here).
    pub fn new(config: Config, backend: Arc<dyn Backend>) -> Result<FarMemory> {
        config.validate()?;
        let inner = Arc::new(Inner {
            log: LocalLog::new(&config)?,
            config,
            backend,
            counters: Counters::default(),
            tables: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            prefetch_queue: Mutex::new(Vec::new()),
            prefetch_signal: Signal::default(),
            issuer: Mutex::new(None),
            landing: Landing::default(),
            landed: Signal::default(),
            last_error: Mutex::new(None),
            scopes: ScopeRegistry::new(),
        });
        let mut fm = FarMemory {
            inner: inner.clone(),
            threads: Vec::new(),
        };
        for i in 0..inner.config.evacuator_threads {
            let inn = inner.clone();
            let t = std::thread::Builder::new()
                .name(format!("farmem-evac-{i}"))
                .spawn(move || crate::evacuator::run(inn, i))
                .map_err(|e| Error::io("spawning an evacuator thread", e))?;
            fm.threads.push(t);
        }
        if inner.config.prefetch_depth > 0 {
            let inn = inner.clone();
            let t = std::thread::Builder::new()
                .name("farmem-prefetch".into())
                .spawn(move || crate::prefetch::run(inn))
                .map_err(|e| Error::io("spawning the prefetch thread", e))?;
            fm.threads.push(t);
        }
        Ok(fm)
    }

    /// An instance over a fresh [`InProcessBackend`] holding at most `far_capacity_bytes`.
    pub fn in_process(config: Config, far_capacity_bytes: u64) -> Result<FarMemory> {
        FarMemory::new(config, Arc::new(InProcessBackend::new(far_capacity_bytes)))
    }

    /// Opens a dereference scope on the calling thread (see [`DerefScope`]).
    #[inline]
    pub fn scope(&self) -> DerefScope<'_> {
        DerefScope::enter(&self.inner)
    }

    /// A remote array of `len` zeroed elements.
    pub fn array<T: Pod>(&self, len: usize) -> Result<RemArray<T>> {
        RemArray::new(&self.inner, len)
    }

    /// An empty remote vector.
    pub fn vec<T: Pod>(&self) -> Result<RemVec<T>> {
        RemVec::new(&self.inner)
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> Metrics {
        self.inner.counters.snapshot(
            self.inner.log.free_regions() as u64,
            self.inner.log.regions() as u64,
        )
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The first error a background thread hit since the last call (a failed write-back leaves the
    /// object local and dirty and is reported here).
    pub fn take_error(&self) -> Option<Error> {
        self.inner.last_error.lock().ok()?.take()
    }

    /// Wakes the evacuator and waits up to `timeout` until at least `regions` are free (for tests
    /// and benchmarks that want a settled state). Returns whether they are.
    pub fn wait_free_regions(&self, regions: usize, timeout: std::time::Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inner.log.free_regions() >= regions {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.inner.log.evac_signal.notify();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for FarMemory {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Release);
        self.inner.log.evac_signal.notify();
        self.inner.prefetch_signal.notify();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Queued prefetch requests hold tables (and so `Inner`) alive: drop them now.
        drop(self.inner.take_prefetches());
    }
}

impl std::fmt::Debug for FarMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarMemory")
            .field("config", &self.inner.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}
