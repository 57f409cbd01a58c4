//! `DerefScope`: the region of code in which references into local memory are valid
//! (AIFM §4.2, "DerefScope"; the grace periods are those of sleepable RCU, SRCU).
//!
//! # The handshake
//!
//! Every far-memory instance has a phase bit and, for each OS thread that opens scopes on it, a
//! [`ScopeSlot`] holding two counters, one per phase. Opening a scope reads the phase and
//! increments the thread's counter of that phase (one `fetch_add`, acquire-release); closing it
//! decrements the same counter. The scope remembers its phase, so scopes nest freely and green
//! threads that share a worker (and so a slot) each count on their own. Entering costs a
//! thread-local lookup, a load and one atomic on the thread's own cache line.
//!
//! The evacuator, after claiming objects (CAS of `EVACUATING` into their pointer words), flips
//! the phase (an RMW) and waits until every slot's counter of the old phase is zero: the scopes
//! older than its claim have ended; newer ones count in the new phase and are not waited on. The
//! argument, for a mutator M and the evacuator E:
//!
//! - If M read the new phase, its acquire load of the phase read E's flip, which follows E's
//!   claim: M sees `EVACUATING` and takes the slow path.
//! - If M read the old phase and its increment comes before E's read of that counter (E reads
//!   it with an RMW, so both are in one modification order), E sees M and waits for it.
//! - Otherwise M's increment reads the value E's RMW wrote, so E's claim happens-before M's later
//!   load of the pointer word, and M sees `EVACUATING`.
//!
//! Slots registered after E's snapshot register under the lock E held, so their scopes see the
//! claim. Grace periods of one instance are serialised (a lock), so a flip never lands a new
//! scope in the phase an evacuator is draining. The `loom_*` models below run these functions.
//!
//! # Waiting without spinning
//!
//! E does not poll a counter it waits on (on a small machine its yields took the CPU from the
//! very scope it waited for). After a short spin (whose checks are RMWs too, for the argument
//! above) it sets the counter's top bit, `WAITER`, with an RMW and sleeps on the slot's
//! condition variable until the count is zero. An exit is still one RMW: it reads the old
//! value, and only the exit that takes a flagged counter from one to zero takes the slot's gate
//! (a mutex) and wakes E. Both RMWs are in the counter's one modification order, so either E's
//! flag sees the count already at zero (no sleep), or the last exit sees the flag; E checks the count under the gate and leaves it only by waiting, so the
//! wake-up cannot fall between its check and its sleep. E clears the flag when it is done; a
//! straggler that entered the old phase after the flag (case three above) may cause a spurious
//! wake-up, nothing else.
//!
//! A scope that has dereferenced nothing since it was entered or renewed may step out while it
//! waits for memory (`quiescent`): it holds no reference, so the evacuator need not wait for it.
//! Leaking a scope (`mem::forget`) keeps its counter up: the evacuator gives its claims back
//! after its grace timeout instead of waiting forever, so memory pressure, not safety, is the
//! cost. A [`DerefScope`] is `!Send` (green threads stay on their worker), so it cannot leave
//! the thread whose slot it counts on.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::memory::Inner;
use crate::sync::{AtomicU64, Condvar, Mutex, Ordering};

/// Checks of a counter before an evacuator sleeps on it (well under a microsecond; under loom
/// one, which keeps the check in the models without multiplying their interleavings).
#[cfg(not(loom))]
const DRAIN_SPINS: u32 = 16;
#[cfg(loom)]
const DRAIN_SPINS: u32 = 1;

/// Set in a slot's counter by the evacuator that waits for it to drain (module note, "Waiting
/// without spinning"); the scope exit that takes the count to zero under it wakes the evacuator.
const WAITER: u64 = 1 << 63;
/// The scope count in a slot's counter (below [`WAITER`]).
const COUNT: u64 = WAITER - 1;

/// One thread's scope counters on one instance, one per phase.
#[derive(Debug)]
pub(crate) struct ScopeSlot {
    counters: [AtomicU64; 2],
    in_use: std::sync::atomic::AtomicBool,
    /// Scopes this thread has open on the instance; written only by the owning thread.
    open: std::sync::atomic::AtomicU32,
    /// Where an evacuator waiting for this slot sleeps; only the exit that drains a counter
    /// carrying [`WAITER`] takes it, so the fast path never does.
    gate: Mutex<()>,
    drained: Condvar,
}

impl ScopeSlot {
    pub(crate) fn new() -> ScopeSlot {
        ScopeSlot {
            counters: [AtomicU64::new(0), AtomicU64::new(0)],
            in_use: std::sync::atomic::AtomicBool::new(true),
            open: std::sync::atomic::AtomicU32::new(0),
            gate: Mutex::new(()),
            drained: Condvar::new(),
        }
    }

    /// Counts a scope in `phase`. The RMW orders the scope's later pointer-word loads after any
    /// evacuator read of this counter that preceded it (module note).
    #[inline]
    pub(crate) fn enter(&self, phase: usize) {
        self.counters[phase & 1].fetch_add(1, Ordering::AcqRel);
    }

    /// Ends a scope counted in `phase`; releases every read it made of local memory. The last
    /// scope of a counter an evacuator waits on wakes it.
    #[inline]
    pub(crate) fn exit(&self, phase: usize) {
        let prev = self.counters[phase & 1].fetch_sub(1, Ordering::Release);
        if prev == WAITER | 1 {
            self.wake_evacuator();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_evacuator(&self) {
        // Taking the gate orders this wake-up after the evacuator's check (it checks under the
        // gate and releases it only by waiting), so the wake-up cannot fall between the two.
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.drained.notify_all();
    }

    /// Waits until no scope counts in `phase` any more, or `deadline` passes (then `false`).
    /// Spins a few rounds (a scope that renews per chunk ends within microseconds), then flags
    /// the counter and sleeps until the exit that drains it wakes this thread.
    fn wait_drained(&self, phase: usize, deadline: Instant) -> bool {
        let counter = &self.counters[phase & 1];
        for _ in 0..DRAIN_SPINS {
            // An RMW, not a load: a load may read a zero older than a straggler's increment
            // (case three of the module note needs the straggler to read E's write).
            if counter.fetch_add(0, Ordering::AcqRel) & COUNT == 0 {
                return true;
            }
            std::hint::spin_loop();
        }
        // One RMW with the exits: either it sees the count at zero, or the exit that takes the
        // count to zero sees the flag (both are in the counter's one modification order).
        let mut drained = counter.fetch_or(WAITER, Ordering::AcqRel) & COUNT == 0;
        if !drained {
            let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                // A load suffices here: the flag RMW above already saw the scopes this waits
                // for, and every later change of the counter is an RMW in its release sequence.
                if counter.load(Ordering::Acquire) & COUNT == 0 {
                    drained = true;
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                gate = match self.drained.wait_timeout(gate, deadline - now) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
        }
        // Grace periods are serialised, so no other waiter owns the flag.
        counter.fetch_and(!WAITER, Ordering::Relaxed);
        drained
    }

    fn open_scopes(&self) -> u32 {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn add_open(&self, d: i32) {
        let v = self.open_scopes() as i32 + d;
        self.open
            .store(v.max(0) as u32, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The phase and the scope slots of one far-memory instance.
pub(crate) struct ScopeRegistry {
    id: u64,
    phase: AtomicU64,
    slots: std::sync::Mutex<Vec<Arc<ScopeSlot>>>,
    grace: std::sync::Mutex<()>,
}

static NEXT_REGISTRY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ScopeRegistry {
    pub(crate) fn new() -> ScopeRegistry {
        ScopeRegistry {
            id: NEXT_REGISTRY.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            phase: AtomicU64::new(0),
            slots: std::sync::Mutex::new(Vec::new()),
            grace: std::sync::Mutex::new(()),
        }
    }

    /// The phase new scopes count in.
    #[inline]
    pub(crate) fn phase(&self) -> usize {
        (self.phase.load(Ordering::Acquire) & 1) as usize
    }

    pub(crate) fn register(&self) -> Arc<ScopeSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots
            .iter()
            .find(|s| !s.in_use.load(std::sync::atomic::Ordering::Acquire))
        {
            s.in_use.store(true, std::sync::atomic::Ordering::Release);
            return s.clone();
        }
        let s = Arc::new(ScopeSlot::new());
        slots.push(s.clone());
        s
    }

    /// Flips the phase and waits until every scope of the old phase (every scope open when this
    /// was called) has ended, or `timeout` passed. Returns whether they all ended.
    pub(crate) fn wait_for_old_scopes(&self, timeout: Duration) -> bool {
        let _serial = self.grace.lock().unwrap_or_else(|p| p.into_inner());
        let slots: Vec<Arc<ScopeSlot>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.clone()
        };
        let old = (self.phase.fetch_add(1, Ordering::AcqRel) & 1) as usize;
        let deadline = Instant::now() + timeout;
        slots.iter().all(|slot| slot.wait_drained(old, deadline))
    }
}

/// One thread's slot on one instance.
struct ThreadEntry {
    registry: u64,
    slot: Arc<ScopeSlot>,
}

/// The calling thread's slots, one per instance it has opened scopes on.
#[derive(Default)]
struct ThreadScopes(RefCell<Vec<ThreadEntry>>);

impl ThreadScopes {
    fn slot_for(&self, registry: &ScopeRegistry) -> *const ScopeSlot {
        let mut v = self.0.borrow_mut();
        if let Some(e) = v.iter().find(|e| e.registry == registry.id) {
            return Arc::as_ptr(&e.slot);
        }
        // Forget slots of instances that are gone (only this entry holds them) and idle.
        v.retain(|e| Arc::strong_count(&e.slot) > 1 || e.slot.open_scopes() > 0);
        let slot = registry.register();
        let p = Arc::as_ptr(&slot);
        v.push(ThreadEntry {
            registry: registry.id,
            slot,
        });
        p
    }
}

impl Drop for ThreadScopes {
    fn drop(&mut self) {
        for e in self.0.get_mut().drain(..) {
            e.slot
                .in_use
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

thread_local! {
    static THREAD_SCOPES: ThreadScopes = ThreadScopes::default();
}

/// Whether the calling thread is inside a scope of any far-memory instance.
pub fn in_scope() -> bool {
    THREAD_SCOPES
        .try_with(|t| t.0.borrow().iter().any(|e| e.slot.open_scopes() > 0))
        .unwrap_or(false)
}

/// A dereference scope: references returned by container `get`s borrow it, so none outlives it,
/// and no object it dereferenced is moved or freed while it lives. Open one with
/// [`FarMemory::scope`](crate::FarMemory::scope); keep it short, or call [`renew`](Self::renew)
/// in long loops so the evacuator can make progress. Scopes nest.
pub struct DerefScope<'fm> {
    pub(crate) inner: &'fm Inner,
    /// This thread's slot on `inner`; kept alive by the thread's `ThreadScopes` entry, which is
    /// not pruned while this thread has scopes open on `inner` (this one counts).
    slot: *const ScopeSlot,
    /// The phase this scope counts in.
    phase: Cell<usize>,
    hits: Cell<u64>,
    /// Hits of earlier renewals not yet added to the shared counter.
    unflushed_hits: Cell<u64>,
    /// Slow-path dereferences since the scope was entered or renewed.
    slow_derefs: Cell<u64>,
    /// Objects read without caching live here until the scope ends.
    arena: RefCell<Vec<Box<[u64]>>>,
}

impl<'fm> DerefScope<'fm> {
    #[inline]
    pub(crate) fn enter(inner: &'fm Inner) -> DerefScope<'fm> {
        let slot = THREAD_SCOPES.with(|t| t.slot_for(&inner.scopes));
        let scope = DerefScope {
            inner,
            slot,
            phase: Cell::new(inner.scopes.phase()),
            hits: Cell::new(0),
            unflushed_hits: Cell::new(0),
            slow_derefs: Cell::new(0),
            arena: RefCell::new(Vec::new()),
        };
        let s = scope.slot();
        s.add_open(1);
        s.enter(scope.phase.get());
        scope
    }

    #[inline(always)]
    fn slot(&self) -> &ScopeSlot {
        // SAFETY: the slot is owned by an `Arc` in this thread's `ThreadScopes`, which keeps
        // entries with open scopes (this one counts), and the scope is `!Send` (raw-pointer
        // field) so it is on that thread.
        unsafe { &*self.slot }
    }

    /// Re-counts the scope in the current phase.
    fn reenter(&self) {
        let s = self.slot();
        s.exit(self.phase.get());
        let p = self.inner.scopes.phase();
        self.phase.set(p);
        s.enter(p);
    }

    /// Ends and re-opens the scope, so the evacuator may move what this scope had dereferenced.
    /// Needs `&mut self`: no reference from this scope survives it.
    pub fn renew(&mut self) {
        self.slow_derefs.set(0);
        // Hits go to the shared counter in batches: an atomic add per renewal would cost a
        // fence in tight loops.
        if self.hits.get() + self.unflushed_hits.get() >= 1 << 12 {
            self.flush_hits();
        } else {
            self.unflushed_hits
                .set(self.unflushed_hits.get() + self.hits.replace(0));
        }
        if !self.arena.get_mut().is_empty() {
            self.arena.get_mut().clear();
        }
        self.reenter();
    }

    /// Scopes the calling thread has open on this instance (1 for a lone scope).
    pub fn depth(&self) -> u32 {
        self.slot().open_scopes()
    }

    #[inline(always)]
    pub(crate) fn count_hit(&self) {
        self.hits.set(self.hits.get() + 1);
    }

    pub(crate) fn count_slow(&self) {
        self.slow_derefs.set(self.slow_derefs.get() + 1);
    }

    /// Whether this scope can hold no reference yet: nothing dereferenced since it was entered
    /// or renewed.
    pub(crate) fn is_fresh(&self) -> bool {
        self.hits.get() == 0 && self.slow_derefs.get() == 0
    }

    /// Runs `f` outside the scope: the evacuator's grace period does not wait for it. Only call
    /// it when [`is_fresh`](Self::is_fresh) holds.
    pub(crate) fn quiescent<R>(&self, f: impl FnOnce() -> R) -> R {
        debug_assert!(self.is_fresh());
        self.slot().exit(self.phase.get());
        let r = f();
        let p = self.inner.scopes.phase();
        self.phase.set(p);
        self.slot().enter(p);
        r
    }

    fn flush_hits(&self) {
        self.slow_derefs.set(0);
        let h = self.hits.replace(0) + self.unflushed_hits.replace(0);
        if h != 0 {
            crate::metrics::Counters::add(&self.inner.counters.hits, h);
        }
    }

    /// A zeroed, 8-aligned buffer of `bytes` that lives until the scope ends or renews.
    pub(crate) fn arena_buffer(&self, bytes: usize) -> *mut u8 {
        let mut b: Box<[u64]> = vec![0u64; bytes.div_ceil(8)].into_boxed_slice();
        let p = b.as_mut_ptr().cast::<u8>();
        // Moving the box into the vector does not move its heap buffer.
        self.arena.borrow_mut().push(b);
        p
    }
}

impl Drop for DerefScope<'_> {
    fn drop(&mut self) {
        self.flush_hits();
        let s = self.slot();
        s.exit(self.phase.get());
        s.add_open(-1);
    }
}

#[cfg(all(test, loom))]
mod loom_handshake {
    //! The scope/evacuator handshake under every interleaving: a mutator dereferences and writes
    //! an object inside a scope while the evacuator claims it, waits for old scopes, and then
    //! either locks, writes back and frees it (evacuator wins) or leaves it (the mutator took it
    //! back). Overwriting `data` stands for the region being reused; loom's `UnsafeCell` flags any
    //! access that races with the write-back or the reuse, and the final asserts check that the
    //! write was not lost.
    use super::{ScopeRegistry, ScopeSlot};
    use crate::pointer::{self, LocalAddr, PointerWord, RemoteId, BUSY, DIRTY, EVACUATING, HOT};
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use std::time::Duration;

    struct World {
        registry: ScopeRegistry,
        slot: std::sync::Arc<ScopeSlot>,
        word: PointerWord,
        data: UnsafeCell<u64>,
        far: UnsafeCell<u64>,
    }

    /// Every interleaving with up to three preemptions (the spin-waits need a bound).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    fn remote() -> u64 {
        pointer::remote_word(RemoteId::new(1, 1, 8).unwrap())
    }

    #[test]
    fn loom_scope_protects_against_evacuation() {
        model(|| {
            let addr = LocalAddr::new(0x1000).unwrap();
            let w0 = pointer::present_word(addr, HOT);
            let registry = ScopeRegistry::new();
            let slot = registry.register();
            let world = Arc::new(World {
                registry,
                slot,
                word: PointerWord::new_remote(RemoteId::new(1, 1, 8).unwrap()),
                data: UnsafeCell::new(5),
                far: UnsafeCell::new(0),
            });
            world.word.publish(w0);

            let m = world.clone();
            let mutator = loom::thread::spawn(move || {
                let mut wrote = false;
                let phase = m.registry.phase();
                m.slot.enter(phase);
                let mut w = m.word.load();
                loop {
                    if !pointer::is_present(w) {
                        break; // remote now: a real mutator would fetch from `far`
                    }
                    if w & BUSY != 0 {
                        // The evacuator is writing it back; it waits for nothing meanwhile.
                        loom::thread::yield_now();
                        w = m.word.load();
                        continue;
                    }
                    if w & EVACUATING == 0 {
                        if w & DIRTY == 0 {
                            match m.word.cas(w, w | DIRTY) {
                                Ok(_) => {}
                                Err(a) => {
                                    w = a;
                                    continue;
                                }
                            }
                        }
                        // Dirty is published before the write, so the evacuator must write back.
                        // SAFETY: loom checks this access against every other one.
                        m.data.with_mut(|p| unsafe { *p = 6 });
                        wrote = true;
                        break;
                    }
                    // Mutator wins: take the object back (clear EVACUATING, mark dirty).
                    let took = (w & !EVACUATING) | DIRTY | HOT;
                    match m.word.cas(w, took) {
                        Ok(_) => w = took,
                        Err(a) => w = a,
                    }
                }
                m.slot.exit(phase);
                wrote
            });

            // Evacuator: claim, grace period, then drop (writing back if dirty).
            let mut w = world.word.load();
            while let Err(a) = world.word.cas(w, w | EVACUATING) {
                w = a;
            }
            assert!(world
                .registry
                .wait_for_old_scopes(Duration::from_secs(3600)));
            let cur = world.word.load();
            let mut evacuated = false;
            if cur & EVACUATING != 0 {
                // Lock, write back (the object may be dirty), publish remote.
                if world.word.cas(cur, cur | BUSY).is_ok() {
                    // SAFETY: loom checks these accesses against every other one.
                    let v = world.data.with(|p| unsafe { *p });
                    // SAFETY: as above.
                    world.far.with_mut(|p| unsafe { *p = v });
                    world.word.publish(remote());
                    evacuated = true;
                }
            }
            if evacuated {
                // The region is reused: nobody may touch `data` from here on.
                // SAFETY: loom checks this access against every other one.
                world.data.with_mut(|p| unsafe { *p = 0xdead });
            }
            let wrote = mutator.join().unwrap();
            let final_w = world.word.load();
            // SAFETY: both threads are done.
            let far = world.far.with(|p| unsafe { *p });
            // SAFETY: as above.
            let local = world.data.with(|p| unsafe { *p });
            let value = if pointer::is_present(final_w) {
                assert!(!evacuated);
                local
            } else {
                assert!(evacuated);
                far
            };
            // The write is never lost, and nothing else appears.
            assert_eq!(value, if wrote { 6 } else { 5 });
        });
    }

    #[test]
    fn loom_grace_period_sleeps_until_the_last_old_scope_ends() {
        // Two threads with scopes of the old phase, one of them nested: the evacuator sleeps
        // on their slots (no timeout in the model) and must be woken by the exit that ends the
        // last of them; a lost wake-up is a deadlock, which loom reports. The wait must also
        // see every write the scopes made before they ended, and leave no flag behind.
        model(|| {
            let registry = Arc::new(ScopeRegistry::new());
            let data = Arc::new(UnsafeCell::new(0u64));
            let mut mutators = Vec::new();
            for nested in [false, true] {
                let slot = registry.register();
                let phase = registry.phase();
                slot.enter(phase);
                if nested {
                    slot.enter(phase);
                }
                let data = data.clone();
                mutators.push(loom::thread::spawn(move || {
                    if nested {
                        slot.exit(phase);
                        // SAFETY: loom checks this access against the evacuator's read.
                        data.with_mut(|p| unsafe { *p += 1 });
                    }
                    slot.exit(phase);
                    slot
                }));
            }
            assert!(registry.wait_for_old_scopes(Duration::from_secs(3600)));
            // SAFETY: every scope that wrote has ended (the grace period waited for it).
            assert_eq!(data.with(|p| unsafe { *p }), 1);
            for m in mutators {
                let slot = m.join().unwrap();
                assert_eq!(slot.counters[0].load(super::Ordering::Relaxed), 0);
                assert_eq!(slot.counters[1].load(super::Ordering::Relaxed), 0);
            }
        });
    }

    #[test]
    fn loom_reader_on_the_fast_path_never_sees_a_reused_region() {
        // The fast path writes nothing to the word, so only the slot handshake orders it.
        model(|| {
            let addr = LocalAddr::new(0x1000).unwrap();
            let registry = ScopeRegistry::new();
            let slot = registry.register();
            let world = Arc::new(World {
                registry,
                slot,
                word: PointerWord::new_remote(RemoteId::new(1, 1, 8).unwrap()),
                data: UnsafeCell::new(5),
                far: UnsafeCell::new(5),
            });
            world.word.publish(pointer::present_word(addr, HOT));

            let m = world.clone();
            let reader = loom::thread::spawn(move || {
                let phase = m.registry.phase();
                m.slot.enter(phase);
                let w = m.word.load();
                let seen = if w & pointer::READ_MASK == pointer::READ_HIT {
                    // SAFETY: loom checks this access against the evacuator's reuse.
                    Some(m.data.with(|p| unsafe { *p }))
                } else {
                    None
                };
                m.slot.exit(phase);
                seen
            });

            let w = world.word.load();
            world.word.cas(w, w | EVACUATING).unwrap();
            assert!(world
                .registry
                .wait_for_old_scopes(Duration::from_secs(3600)));
            let cur = world.word.load();
            if world.word.cas(cur, remote()).is_ok() {
                // SAFETY: loom checks this access against the reader's.
                world.data.with_mut(|p| unsafe { *p = 0xdead });
            }
            if let Some(v) = reader.join().unwrap() {
                assert_eq!(v, 5);
            }
        });
    }
}
