//! The runtime: its configuration, its workers, and the entry points from OS threads.
//!
//! `Runtime::builder().workers(n).stack_size(b).build()?` starts `n` worker threads (one per
//! core by default). [`Runtime::block_on`] runs a closure as a green thread and blocks the
//! calling OS thread until it returns; [`Runtime::spawn`] and the free [`crate::spawn`] start
//! green threads. Dropping the `Runtime` shuts it down: workers stop taking work, unstarted
//! green threads are dropped and suspended ones are unwound on their own worker (their
//! `JoinHandle`s report [`ErrorKind::Closed`]), then the worker threads are joined.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Stealer, Worker as Deque};
use farmem_error::{Error, ErrorKind, Result};
use polling::Poller;

use crate::idle::Idle;
use crate::task::{self, JoinHandle, Task};
use crate::{green, worker};

const MIN_STACK: usize = 16 * 1024;
const MAX_STACK: usize = 1 << 30;
const MAX_WORKERS: usize = 1024;

/// The runtime's configuration (see [`Builder`]).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) stack_size: usize,
    pub(crate) stack_pool: usize,
    pub(crate) time_slice: Duration,
}

/// What every worker and every green thread of one runtime share.
pub(crate) struct Shared {
    pub(crate) workers: Box<[WorkerShared]>,
    /// Round-robin cursor: the worker whose inbox gets the next spawn from outside.
    pub(crate) next_inbox: AtomicUsize,
    pub(crate) idle: Idle,
    pub(crate) shutdown: AtomicBool,
    pub(crate) config: Config,
    /// When the runtime was built: the origin of the workers' sleep timestamps.
    pub(crate) epoch: Instant,
}

/// The parts of worker `i` other threads reach.
pub(crate) struct WorkerShared {
    /// Unstarted green threads spawned from outside the runtime and dealt to this worker.
    pub(crate) inbox: Injector<Arc<Task>>,
    /// Started green threads of this worker woken by other threads.
    pub(crate) remote: Injector<Arc<Task>>,
    /// Steals unstarted green threads from this worker's `fresh` deque.
    pub(crate) stealer: Stealer<Arc<Task>>,
    /// The worker's reactor, also what it sleeps in.
    pub(crate) poller: Poller,
    /// The worker's sleep counters ([`Runtime::stats`]).
    pub(crate) sleep: SleepCounters,
}

/// One worker's sleep counters, written only by the worker and read by [`Runtime::stats`] as
/// one consistent snapshot (a seqlock: `seq` is odd while the worker changes them), so a
/// sleep under way counts up to the moment of reading, and no sleep counts twice or not at
/// all between two snapshots.
#[derive(Default)]
pub(crate) struct SleepCounters {
    seq: AtomicU64,
    /// Sleeps begun.
    sleeps: AtomicU64,
    /// Nanoseconds of the sleeps ended.
    slept_nanos: AtomicU64,
    /// While asleep: when the sleep began, in nanoseconds since the runtime's `epoch`, plus
    /// one; 0 while awake.
    since: AtomicU64,
}

impl SleepCounters {
    /// Runs the worker's change `f` of the counters as one seqlock write (Boehm, MSPC'12, as
    /// the hash map's cache does).
    fn write(&self, f: impl FnOnce()) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        f();
        self.seq.store(s + 2, Ordering::Release);
    }

    /// The worker begins a sleep `at` nanoseconds after the epoch.
    pub(crate) fn begin(&self, at: u64) {
        self.write(|| {
            let n = self.sleeps.load(Ordering::Relaxed);
            self.sleeps.store(n + 1, Ordering::Relaxed);
            self.since.store(at.saturating_add(1), Ordering::Relaxed);
        });
    }

    /// The worker's sleep ends `at` nanoseconds after the epoch.
    pub(crate) fn end(&self, at: u64) {
        self.write(|| {
            let since = self.since.load(Ordering::Relaxed);
            let slept = at.saturating_sub(since.saturating_sub(1));
            let total = self.slept_nanos.load(Ordering::Relaxed);
            self.slept_nanos
                .store(total.saturating_add(slept), Ordering::Relaxed);
            self.since.store(0, Ordering::Relaxed);
        });
    }

    /// Sleeps begun and nanoseconds slept as of `now` (nanoseconds after the epoch, taken
    /// after the call begins).
    fn read(&self, now: impl Fn() -> u64) -> (u64, u64) {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let sleeps = self.sleeps.load(Ordering::Relaxed);
            let slept = self.slept_nanos.load(Ordering::Relaxed);
            let since = self.since.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                let ongoing = match since {
                    0 => 0,
                    s => now().saturating_sub(s - 1),
                };
                return (sleeps, slept.saturating_add(ongoing));
            }
        }
    }
}

/// What the workers of a [`Runtime`] have done since it was built ([`Runtime::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Times a worker went to sleep: it had nothing to run (every green thread it holds blocked
    /// or done) and nothing to steal.
    pub sleeps: u64,
    /// Time the workers spent asleep, summed over the workers, a sleep under way counted up to
    /// the call. Against `workers × elapsed` it says how much of the runtime's capacity found
    /// nothing to run, as when every green thread waits on far memory.
    pub asleep: Duration,
}

impl Shared {
    /// Nanoseconds since the runtime was built.
    pub(crate) fn nanos_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Wakes worker `i` from its poller.
    pub(crate) fn notify(&self, i: usize) {
        // A failed notify (eventfd full) means a notification is already pending.
        let _ = self.workers[i].poller.notify();
    }
}

/// Configures a [`Runtime`].
#[derive(Clone, Debug)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: usize,
    stack_pool: usize,
    time_slice: Duration,
    name: String,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            workers: None,
            stack_size: 256 * 1024,
            stack_pool: 1024,
            time_slice: Duration::from_millis(1),
            name: "farmem-worker".into(),
        }
    }
}

impl Builder {
    /// Number of worker OS threads (default: one per available core).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = Some(n);
        self
    }

    /// Usable bytes of each green-thread stack, plus one guard page (default 256 KiB). Only the
    /// pages a green thread touches become resident.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// How many finished stacks each worker keeps for reuse (default 1024).
    pub fn stack_pool(mut self, stacks: usize) -> Builder {
        self.stack_pool = stacks;
        self
    }

    /// How long a green thread may run before [`crate::maybe_yield`] yields (default 1 ms).
    pub fn time_slice(mut self, slice: Duration) -> Builder {
        self.time_slice = slice;
        self
    }

    /// Name prefix of the worker threads (default `farmem-worker`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Builder {
        self.name = name.into();
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<Runtime> {
        let workers = match self.workers {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if workers == 0 || workers > MAX_WORKERS {
            return Err(Error::invalid(format!(
                "workers = {workers}: a runtime needs between 1 and {MAX_WORKERS} workers"
            )));
        }
        if !(MIN_STACK..=MAX_STACK).contains(&self.stack_size) {
            return Err(Error::invalid(format!(
                "stack_size = {} bytes: green-thread stacks must be between {MIN_STACK} and \
                 {MAX_STACK} bytes",
                self.stack_size
            )));
        }
        let config = Config {
            workers,
            stack_size: self.stack_size,
            stack_pool: self.stack_pool,
            time_slice: self.time_slice,
        };
        let mut deques = Vec::with_capacity(workers);
        let mut worker_shared = Vec::with_capacity(workers);
        for i in 0..workers {
            let deque = Deque::new_fifo();
            let poller = Poller::new()
                .map_err(|e| Error::io(format!("creating the epoll reactor of worker {i}"), e))?;
            worker_shared.push(WorkerShared {
                inbox: Injector::new(),
                remote: Injector::new(),
                stealer: deque.stealer(),
                poller,
                sleep: SleepCounters::default(),
            });
            deques.push(deque);
        }
        let shared = Arc::new(Shared {
            workers: worker_shared.into_boxed_slice(),
            next_inbox: AtomicUsize::new(0),
            idle: Idle::new(workers),
            shutdown: AtomicBool::new(false),
            config,
            epoch: Instant::now(),
        });
        let mut rt = Runtime {
            shared: shared.clone(),
            threads: Vec::with_capacity(workers),
        };
        for (i, deque) in deques.into_iter().enumerate() {
            let s = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .spawn(move || worker::run_worker(s, i, deque))
                .map_err(|e| Error::io(format!("starting worker thread {i}"), e))?;
            rt.threads.push(handle);
        }
        Ok(rt)
    }
}

/// A set of worker threads running green threads (see the module note).
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<ThreadHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.shared.config.workers)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with one worker per core and default settings.
    pub fn new() -> Result<Runtime> {
        Builder::default().build()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.config.workers
    }

    /// The workers' counters so far, summed over the workers (read without stopping them).
    pub fn stats(&self) -> RuntimeStats {
        let mut stats = RuntimeStats::default();
        for w in self.shared.workers.iter() {
            let (sleeps, nanos) = w.sleep.read(|| self.shared.nanos_since_epoch());
            stats.sleeps += sleeps;
            stats.asleep += Duration::from_nanos(nanos);
        }
        stats
    }

    /// Starts `f` as a green thread of this runtime.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_on(&self.shared, f)
    }

    /// Runs `f` as a green thread and blocks the calling OS thread until it returns, then
    /// returns its value. A panic in `f` is re-raised here. Called from a green thread, it
    /// parks only that green thread.
    ///
    /// # Panics
    /// Re-raises `f`'s panic; panics with the error's message if `f` could not run at all
    /// (no stack could be mapped; see [`Runtime::try_block_on`] to get that as an error).
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.try_block_on(f) {
            Ok(v) => v,
            Err(e) if e.is_panic() => match e.into_panic() {
                Some(payload) => std::panic::resume_unwind(payload),
                None => panic!("farmem green thread panicked"),
            },
            Err(e) => panic!("farmem block_on: {e}"),
        }
    }

    /// Like [`Runtime::block_on`] but returns a panic or start failure as a [`task::JoinError`].
    pub fn try_block_on<F, T>(&self, f: F) -> std::result::Result<T, task::JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f).join()
    }
}

/// Spawns `f` on `shared`.
pub(crate) fn spawn_on<F, T>(shared: &Arc<Shared>, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (entry, handle) = task::entry(f);
    green::spawn_task(shared, Task::new(shared.clone(), entry));
    handle
}

/// Starts `f` as a green thread of the runtime the caller runs on.
///
/// # Panics
/// Outside a green thread (or worker) of a farmem runtime; use [`try_spawn`] or
/// [`Runtime::spawn`] there.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match try_spawn(f) {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    }
}

/// Like [`spawn`], but outside a runtime returns an [`ErrorKind::InvalidArgument`] error.
pub fn try_spawn<F, T>(f: F) -> Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match green::current_shared() {
        Some(shared) => Ok(spawn_on(&shared, f)),
        None => Err(Error::new(
            ErrorKind::InvalidArgument,
            "farmem_sched::spawn called outside a farmem green thread: use Runtime::spawn, or \
             call it from code running inside Runtime::block_on",
        )),
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for i in 0..self.shared.workers.len() {
            self.shared.notify(i);
        }
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            // Dropped from one of its own green threads: that worker cannot be joined from
            // itself; it exits on its own once the green thread returns.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Break the Task -> Shared -> queue -> Task cycles of anything still queued.
        for w in self.shared.workers.iter() {
            while !w.inbox.is_empty() {
                let _ = w.inbox.steal();
            }
            while !w.remote.is_empty() {
                let _ = w.remote.steal();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A sleep under way counts up to the moment of reading; an ended one counts its length
    /// once.
    #[test]
    fn sleep_counters_count_ended_and_ongoing_sleeps() {
        let c = SleepCounters::default();
        assert_eq!(c.read(|| 50), (0, 0));
        c.begin(100);
        assert_eq!(c.read(|| 150), (1, 50));
        c.end(200);
        assert_eq!(c.read(|| 250), (1, 100));
        c.begin(300);
        assert_eq!(c.read(|| 350), (2, 150));
        c.end(400);
        assert_eq!(c.read(|| 1000), (2, 200));
    }
}
