//! A worker: one OS thread that runs green threads from its queues, fires its timers, polls its
//! reactor, and sleeps in its poller when it has nothing to do.
//!
//! Queues of worker `i` (Shenango's per-core run queue with work stealing):
//!
//! ```text
//!   ready   VecDeque<Arc<Task>>   started, runnable; this thread only (no atomics, no lock)
//!   fresh   deque::Worker         spawned by i's green threads, never run; idle workers
//!                                 steal half of it
//!   inbox   Injector              spawned from outside the runtime, dealt round robin to
//!                                 the workers, never run; idle workers steal one at a time
//!   remote  Injector              started tasks of i woken by other threads (unpark)
//! ```
//!
//! **Pinning.** A green thread runs on the worker that first ran it, for its whole life: Rust
//! thread-locals (ours, std's, any library's) and `!Send` values on its stack would be wrong if
//! a suspended green thread resumed on another OS thread. So only *unstarted* tasks are stolen;
//! load balances at spawn time, which suits far-memory work (many short green threads).
//!
//! **Placement.** Where a green thread starts is where it stays, so a burst of spawns must be
//! spread before it starts. Spawns from outside (`Runtime::spawn`, `block_on`) are dealt round
//! robin to the inboxes: with one shared queue, the first worker to wake used to take a batch
//! and start all of it (green threads that block at once on far memory start within
//! microseconds) while the other was still waking, and kept them for their whole life. Spawns
//! from a green thread go to its own worker (locality; a sleeping worker is woken to steal).
//! Only an *idle* worker (nothing ready) steals, and it takes its own unstarted tasks first;
//! stealing an inbox task one at a time bounds how far an idle worker can skew a dealt burst.
//! An idle worker steals an inbox task even when it holds green threads blocked on far memory
//! (an earlier rule let it rob only a worker holding more green threads than itself, which
//! kept a dealt burst even but left a task dealt to a worker held by one non-yielding green
//! thread waiting for that thread: `block_on` from outside could stall behind a long
//! computation while the other worker idled).
//!
//! **One tick** of the loop: fire due timers (if any are pending), every 64th tick poll the
//! reactor without blocking (if fds are registered), move remote wake-ups to `ready`, then run
//! one green thread until it yields, blocks or ends. After a yield a `fresh` task, and every
//! 61st tick an unstarted task of this worker (`fresh`, then `inbox`), goes before `ready`, so
//! yielding green threads cannot starve new ones. A yield therefore costs
//! two stack switches, a deque push and pop and a few loads: no lock and no allocation.
//!
//! **Cooperative preemption.** Green threads are not preempted by signals. What keeps a
//! CPU-bound green thread from starving timers and I/O on its worker is [`crate::maybe_yield`]: it
//! counts calls and every 32nd call reads the clock, yielding once the green thread has run
//! longer than the configured time slice since its first check in this run. Timers and remote
//! wake-ups are then processed at the switch. Unstarted work queued behind a spinning green
//! thread is stolen by idle workers. A green thread that never calls `maybe_yield` (or any
//! blocking call) keeps its worker; that is the documented contract.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult};
use crossbeam_deque::{Steal, Worker as Deque};

use crate::reactor::Reactor;
use crate::runtime::Shared;
use crate::stack::StackPool;
use crate::task::{GreenYielder, Suspend, Task, Wake};
use crate::timer::{TimerEntry, TimerKind, Timers};

const IO_POLL_INTERVAL: u64 = 64;
const FRESH_INTERVAL: u64 = 61;

thread_local! {
    /// The worker this OS thread is, if it is one.
    pub(crate) static WORKER: Cell<*const WorkerLocal> = const { Cell::new(ptr::null()) };
    /// The green thread running on this OS thread right now, if any.
    pub(crate) static TASK: Cell<*const Task> = const { Cell::new(ptr::null()) };
    /// When the running green thread's time slice started (first `maybe_yield` check).
    pub(crate) static SLICE_START: Cell<Option<Instant>> = const { Cell::new(None) };
    pub(crate) static SLICE_CHECKS: Cell<u32> = const { Cell::new(0) };
    pub(crate) static SLICE_LEN: Cell<Duration> = const { Cell::new(Duration::from_millis(1)) };
    /// Set while the worker force-unwinds green threads at shutdown.
    pub(crate) static UNWINDING: Cell<bool> = const { Cell::new(false) };
}

/// Started tasks of one worker, so that they are unwound by it at shutdown.
#[derive(Default)]
struct Registry {
    tasks: Vec<Option<Arc<Task>>>,
    free: Vec<usize>,
}

impl Registry {
    fn insert(&mut self, task: Arc<Task>) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.tasks[i] = Some(task);
                i
            }
            None => {
                self.tasks.push(Some(task));
                self.tasks.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if let Some(s) = self.tasks.get_mut(slot) {
            if s.take().is_some() {
                self.free.push(slot);
            }
        }
    }

    fn take_all(&mut self) -> Vec<Arc<Task>> {
        self.free.clear();
        self.tasks.drain(..).flatten().collect()
    }
}

/// The state only the worker thread touches (reached from its green threads through `WORKER`).
pub(crate) struct WorkerLocal {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) ready: RefCell<VecDeque<Arc<Task>>>,
    pub(crate) fresh: Deque<Arc<Task>>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) reactor: RefCell<Reactor>,
    stacks: RefCell<StackPool>,
    live: RefCell<Registry>,
    tick: Cell<u64>,
    next_seq: Cell<u64>,
    /// The last green thread yielded: start a local unstarted one before resuming ready ones.
    prefer_fresh: Cell<bool>,
}

/// The body of worker thread `index`.
pub(crate) fn run_worker(shared: Arc<Shared>, index: usize, fresh: Deque<Arc<Task>>) {
    let config = shared.config.clone();
    let local = WorkerLocal {
        index,
        shared,
        ready: RefCell::new(VecDeque::with_capacity(256)),
        fresh,
        timers: RefCell::new(Timers::default()),
        reactor: RefCell::new(Reactor::new()),
        stacks: RefCell::new(StackPool::new(config.stack_size, config.stack_pool)),
        live: RefCell::new(Registry::default()),
        tick: Cell::new(0),
        next_seq: Cell::new(1),
        prefer_fresh: Cell::new(false),
    };
    SLICE_LEN.set(config.time_slice);
    WORKER.set(&local);
    local.run_loop();
    local.shut_down();
    WORKER.set(ptr::null());
}

impl WorkerLocal {
    fn run_loop(&self) {
        loop {
            if self.shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let tick = self.tick.get().wrapping_add(1);
            self.tick.set(tick);
            self.fire_timers();
            if tick % IO_POLL_INTERVAL == 0 && self.reactor.borrow().has_fds() {
                self.poll_io(Some(Duration::ZERO));
            }
            self.drain_remote();
            match self.next_task(tick) {
                Some(task) => self.run(task),
                None => self.idle(),
            }
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        let s = self.next_seq.get();
        self.next_seq.set(s + 1);
        s
    }

    pub(crate) fn push_ready(&self, task: Arc<Task>) {
        self.ready.borrow_mut().push_back(task);
    }

    fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let due = self.timers.borrow_mut().pop_expired(now);
            match due {
                Some(entry) => self.fire(entry),
                None => return,
            }
        }
    }

    fn fire(&self, entry: TimerEntry) {
        let task = entry.task;
        if task.wait_seq.get() != entry.seq {
            return; // the wait already ended
        }
        task.wait_seq.set(0);
        match entry.kind {
            TimerKind::Wake => {
                task.wake.set(Wake::Timeout);
                self.push_ready(task);
            }
            TimerKind::ParkTimeout => {
                if task.park.cancel_park() {
                    self.push_ready(task);
                }
            }
        }
    }

    fn poll_io(&self, timeout: Option<Duration>) {
        let mut woken = Vec::new();
        let poller = &self.shared.workers[self.index].poller;
        self.reactor.borrow_mut().poll(poller, timeout, &mut woken);
        for (task, seq) in woken {
            if task.wait_seq.get() == seq {
                task.wait_seq.set(0);
                task.wake.set(Wake::Ready);
                self.push_ready(task);
            }
        }
    }

    fn drain_remote(&self) {
        let remote = &self.shared.workers[self.index].remote;
        if remote.is_empty() {
            return;
        }
        loop {
            match remote.steal() {
                Steal::Success(t) => self.push_ready(t),
                Steal::Empty => return,
                Steal::Retry => continue,
            }
        }
    }

    fn next_task(&self, tick: u64) -> Option<Arc<Task>> {
        // After a yield, spawned-but-unstarted green threads count as runnable too, so
        // `yield_now` lets them go first (a round robin over everything this worker holds).
        // Only `fresh` there: the switch path stays one deque pop; the inbox waits for the
        // 61st tick or an empty `ready`.
        if self.prefer_fresh.replace(false) {
            if let Some(t) = self.fresh.pop() {
                return Some(t);
            }
        }
        if tick % FRESH_INTERVAL == 0 {
            if let Some(t) = self.own_fresh() {
                return Some(t);
            }
        }
        let next = self.ready.borrow_mut().pop_front();
        next.or_else(|| self.own_fresh())
            .or_else(|| self.steal_fresh())
    }

    /// An unstarted task of this worker: spawned by its green threads, then dealt to it from
    /// outside. Inbox tasks are taken one at a time, so that the rest stay in the inbox, where
    /// they are stolen one at a time too (not by the half-deque batch of `fresh`).
    fn own_fresh(&self) -> Option<Arc<Task>> {
        if let Some(t) = self.fresh.pop() {
            return Some(t);
        }
        let inbox = &self.shared.workers[self.index].inbox;
        while !inbox.is_empty() {
            match inbox.steal() {
                Steal::Success(t) => return Some(t),
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
        None
    }

    /// An unstarted task of another worker, for an idle worker only (a busy one would take
    /// work its owner is about to start): half of a `fresh` deque, else one inbox task.
    fn steal_fresh(&self) -> Option<Arc<Task>> {
        let n = self.shared.workers.len();
        for k in 1..n {
            let victim = &self.shared.workers[(self.index + k) % n];
            loop {
                match victim.stealer.steal_batch_and_pop(&self.fresh) {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
            while !victim.inbox.is_empty() {
                match victim.inbox.steal() {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        None
    }

    fn has_work(&self) -> bool {
        let me = &self.shared.workers[self.index];
        self.shared.shutdown.load(Ordering::Acquire)
            || !self.ready.borrow().is_empty()
            || !self.fresh.is_empty()
            || !me.remote.is_empty()
            || !me.inbox.is_empty()
            || self
                .shared
                .workers
                .iter()
                .any(|w| !w.stealer.is_empty() || !w.inbox.is_empty())
            || self
                .timers
                .borrow()
                .next_deadline()
                .is_some_and(|d| d <= Instant::now())
    }

    fn idle(&self) {
        let idle = &self.shared.idle;
        idle.announce_sleep(self.index);
        if !self.has_work() {
            let timeout = self
                .timers
                .borrow()
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let counters = &self.shared.workers[self.index].sleep;
            counters.begin(self.shared.nanos_since_epoch());
            self.poll_io(timeout);
            counters.end(self.shared.nanos_since_epoch());
        }
        idle.end_sleep(self.index);
    }

    /// Creates the coroutine of a task's first run; `None` when it could not start.
    fn start(&self, task: &Arc<Task>) -> Option<()> {
        // SAFETY: this worker popped `task` from a queue, so it holds the run permission.
        let entry = unsafe { task.take_entry() }?;
        let stack = self.stacks.borrow_mut().take();
        let stack = match stack {
            Ok(s) => s,
            Err(e) => {
                entry.fail(e);
                return None;
            }
        };
        task.owner.store(self.index, Ordering::Relaxed);
        task.slot.set(self.live.borrow_mut().insert(task.clone()));
        let coroutine = Coroutine::with_stack(stack, move |yielder: &GreenYielder, ()| {
            if let Some(t) = crate::green::current_task() {
                t.yielder.set(yielder);
            }
            entry.run();
        });
        // SAFETY: run permission (above); the slot is not borrowed elsewhere.
        *unsafe { task.coroutine() } = Some(coroutine);
        Some(())
    }

    fn run(&self, task: Arc<Task>) {
        // SAFETY: run permission: `task` was popped from one of this worker's queues, and a
        // started task is only ever queued to its owner (this worker).
        let started = unsafe { task.coroutine() }.is_some();
        if !started && self.start(&task).is_none() {
            return;
        }
        // SAFETY: as above; the green thread never touches its own coroutine slot, so this is
        // the only reference while it runs.
        let Some(coroutine) = (unsafe { task.coroutine() }).as_mut() else {
            return;
        };
        TASK.set(Arc::as_ptr(&task));
        SLICE_START.set(None);
        let result = catch_unwind(AssertUnwindSafe(|| coroutine.resume(())));
        TASK.set(ptr::null());
        match result {
            Ok(CoroutineResult::Yield(Suspend::Yield)) => {
                self.prefer_fresh.set(true);
                self.push_ready(task);
            }
            Ok(CoroutineResult::Yield(Suspend::Block)) => {}
            Ok(CoroutineResult::Return(())) => self.finish(&task),
            Err(payload) => {
                // Only a panic escaping the body's own catch (a panicking drop of a result)
                // lands here; the worker survives it.
                eprintln!(
                    "farmem-sched: worker {}: a green thread panicked outside its body: {}",
                    self.index,
                    crate::task::panic_message(&*payload)
                );
                self.finish(&task);
            }
        }
    }

    fn finish(&self, task: &Arc<Task>) {
        // SAFETY: run permission (see `run`); the coroutine has returned.
        let coroutine = unsafe { task.coroutine() }.take();
        if let Some(c) = coroutine {
            if c.done() {
                self.stacks.borrow_mut().give(c.into_stack());
            }
        }
        self.live.borrow_mut().remove(task.slot.get());
    }

    /// Drops unstarted tasks (their handles report `Closed`) and force-unwinds suspended
    /// green threads on this thread, so their destructors run where their thread-locals are.
    fn shut_down(&self) {
        UNWINDING.set(true);
        let poller = &self.shared.workers[self.index].poller;
        loop {
            let mut dropped = Vec::new();
            while let Some(t) = self.fresh.pop() {
                dropped.push(t);
            }
            dropped.extend(self.ready.borrow_mut().drain(..));
            self.timers.borrow_mut().clear();
            self.reactor.borrow_mut().clear(poller);
            let live = self.live.borrow_mut().take_all();
            if dropped.is_empty() && live.is_empty() {
                break;
            }
            drop(dropped);
            for task in live {
                TASK.set(Arc::as_ptr(&task));
                // SAFETY: this is the owner worker and the green thread is suspended.
                let coroutine = unsafe { task.coroutine() }.take();
                // Dropping a suspended coroutine unwinds its stack (corosensei force_unwind).
                if catch_unwind(AssertUnwindSafe(|| drop(coroutine))).is_err() {
                    eprintln!(
                        "farmem-sched: worker {}: a green thread could not be unwound at shutdown",
                        self.index
                    );
                }
                TASK.set(ptr::null());
            }
        }
        UNWINDING.set(false);
    }
}
