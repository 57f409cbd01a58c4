//! What a running green thread does to its worker: yield, park, sleep, wait for an fd, spawn,
//! and the wake-ups that queue it again. Everything here runs on the worker's OS thread, inside
//! the green thread (reached through the `WORKER`/`TASK` thread-locals the worker loop sets).
//!
//! Every blocking call follows one pattern: record what would wake the green thread (a token
//! state, a timer entry, a reactor waiter, each tagged with a fresh `wait_seq`), suspend with
//! `Suspend::Block`, and on resumption clear `wait_seq` so that any other, slower wake source
//! finds itself stale. A green thread is only ever queued by the one wake source that won.
//!
//! Rust thread-locals seen from green-thread code belong to the *worker* OS thread: every green
//! thread on a worker shares them, and (pinning) they stay the same across a suspension.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::reactor::Direction;
use crate::runtime::Shared;
use crate::task::{Suspend, Task, Wake};
use crate::timer::TimerKind;
use crate::worker::{WorkerLocal, SLICE_CHECKS, SLICE_LEN, SLICE_START, TASK, UNWINDING, WORKER};

const SLICE_CHECK_INTERVAL: u32 = 32;

/// Whether a shutdown force-unwind is in progress on this thread.
pub(crate) fn is_unwinding() -> bool {
    UNWINDING.get()
}

/// The running green thread, if the caller is one.
pub(crate) fn current_task<'a>() -> Option<&'a Task> {
    let t = TASK.get();
    // SAFETY: TASK points at a task whose `Arc` the worker holds for the whole run, and it is
    // reset before that `Arc` can be released; green-thread code only runs inside the run.
    (!t.is_null()).then(|| unsafe { &*t })
}

/// The worker and green thread of the caller, if it is a green thread.
fn with_green<R>(f: impl FnOnce(&WorkerLocal, &Task) -> R) -> Option<R> {
    let task = current_task()?;
    let w = WORKER.get();
    if w.is_null() {
        return None;
    }
    // SAFETY: WORKER points at the `WorkerLocal` on this thread's stack for the whole worker
    // loop, and green threads only run inside that loop.
    Some(f(unsafe { &*w }, task))
}

/// An owning handle to the running green thread.
fn current_arc(task: &Task) -> Arc<Task> {
    let p: *const Task = task;
    // SAFETY: `task` is the running green thread, reached through TASK, which the worker set
    // from `Arc::as_ptr` of an `Arc` it holds for the whole run; incrementing the strong count
    // before `from_raw` makes the new `Arc` an extra owner.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// Switches back to the worker; `false` (without switching) during a shutdown unwind.
fn suspend(task: &Task, how: Suspend) -> bool {
    if UNWINDING.get() {
        return false;
    }
    let y = task.yielder.get();
    if y.is_null() {
        return false;
    }
    // SAFETY: `yielder` was set at the start of this coroutine from the `&Yielder` corosensei
    // passed to its body, which lives on the coroutine's stack for its whole life, and we are
    // running on that coroutine (TASK == task) on its owner thread.
    unsafe { (*y).suspend(how) };
    true
}

/// Whether the caller is a green thread.
pub(crate) fn in_green() -> bool {
    !TASK.get().is_null()
}

/// The index of the worker the caller runs on, if it is a worker thread.
pub(crate) fn worker_index() -> Option<usize> {
    let w = WORKER.get();
    // SAFETY: see `with_green`.
    (!w.is_null()).then(|| unsafe { (*w).index })
}

/// Yields the running green thread; `false` if the caller is not one.
pub(crate) fn green_yield() -> bool {
    with_green(|_, t| {
        suspend(t, Suspend::Yield);
    })
    .is_some()
}

/// The time-slice check of [`crate::maybe_yield`].
pub(crate) fn green_maybe_yield() -> bool {
    if TASK.get().is_null() {
        return false;
    }
    let n = SLICE_CHECKS.get().wrapping_add(1);
    SLICE_CHECKS.set(n);
    if n % SLICE_CHECK_INTERVAL != 0 {
        return false;
    }
    let now = Instant::now();
    match SLICE_START.get() {
        None => {
            SLICE_START.set(Some(now));
            false
        }
        Some(start) if now.duration_since(start) >= SLICE_LEN.get() => green_yield(),
        Some(_) => false,
    }
}

/// The running green thread as an unpark target.
pub(crate) fn current_green() -> Option<Arc<Task>> {
    current_task().map(current_arc)
}

/// `park()` on a green thread; `false` if the caller is not one.
pub(crate) fn green_park() -> bool {
    with_green(|_, t| {
        if t.park.begin_park() {
            if !suspend(t, Suspend::Block) {
                t.park.cancel_park();
            }
            t.park.finish_park();
        }
    })
    .is_some()
}

/// `park_timeout()` on a green thread; `None` if the caller is not one.
pub(crate) fn green_park_timeout(timeout: Duration) -> Option<bool> {
    with_green(|w, t| {
        if t.park.try_take_token() {
            return true;
        }
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            // Effectively forever.
            if t.park.begin_park() {
                if !suspend(t, Suspend::Block) {
                    t.park.cancel_park();
                }
                return t.park.finish_park();
            }
            return true;
        };
        let seq = w.next_seq();
        t.wait_seq.set(seq);
        w.timers
            .borrow_mut()
            .insert(deadline, seq, current_arc(t), TimerKind::ParkTimeout);
        if !t.park.begin_park() {
            t.wait_seq.set(0);
            w.timers.borrow_mut().note_stale();
            return true;
        }
        if !suspend(t, Suspend::Block) {
            t.park.cancel_park();
        }
        // The timer clears `wait_seq` when it fires; still set means it is now stale.
        if t.wait_seq.replace(0) != 0 {
            w.timers.borrow_mut().note_stale();
        }
        t.park.finish_park()
    })
}

/// `sleep()` on a green thread; `false` if the caller is not one.
pub(crate) fn green_sleep(duration: Duration) -> bool {
    with_green(|w, t| {
        let Some(deadline) = Instant::now().checked_add(duration) else {
            // A sleep past the end of time: block until shutdown.
            suspend(t, Suspend::Block);
            return;
        };
        let seq = w.next_seq();
        t.wait_seq.set(seq);
        t.wake.set(Wake::Pending);
        w.timers
            .borrow_mut()
            .insert(deadline, seq, current_arc(t), TimerKind::Wake);
        suspend(t, Suspend::Block);
        t.wait_seq.set(0);
    })
    .is_some()
}

/// Waits for fd readiness on a green thread; `None` if the caller is not one.
pub(crate) fn green_wait_fd(
    fd: RawFd,
    dir: Direction,
    timeout: Option<Duration>,
) -> Option<std::io::Result<()>> {
    with_green(|w, t| {
        let poller = &w.shared.workers[w.index].poller;
        let seq = w.next_seq();
        t.wait_seq.set(seq);
        t.wake.set(Wake::Pending);
        if let Err(e) = w
            .reactor
            .borrow_mut()
            .register(poller, fd, dir, (current_arc(t), seq))
        {
            t.wait_seq.set(0);
            return Err(e);
        }
        if let Some(deadline) = timeout.and_then(|d| Instant::now().checked_add(d)) {
            w.timers
                .borrow_mut()
                .insert(deadline, seq, current_arc(t), TimerKind::Wake);
        }
        let suspended = suspend(t, Suspend::Block);
        t.wait_seq.set(0);
        if timeout.is_some() && t.wake.get() != Wake::Timeout {
            w.timers.borrow_mut().note_stale();
        }
        match (suspended, t.wake.get()) {
            (true, Wake::Ready) => Ok(()),
            (true, Wake::Timeout) => {
                w.reactor.borrow_mut().unregister(poller, fd, dir, seq);
                Err(std::io::ErrorKind::TimedOut.into())
            }
            _ => {
                w.reactor.borrow_mut().unregister(poller, fd, dir, seq);
                Err(std::io::Error::other("the farmem runtime is shutting down"))
            }
        }
    })
}

/// Queues a woken (started) green thread on its owner worker.
pub(crate) fn schedule_woken(task: Arc<Task>) {
    let mut notify = Notify::default();
    queue_woken(task, &mut notify);
    notify.send();
}

/// The workers a batch of wake-ups may have to notify: each (runtime, worker) once, checked
/// after the whole batch is queued (one fence per worker, not one per wake-up). The first is
/// held inline, so a single wake-up allocates nothing.
#[derive(Default)]
pub(crate) struct Notify {
    first: Option<(Arc<Shared>, usize)>,
    more: Vec<(Arc<Shared>, usize)>,
}

impl Notify {
    /// Notes `owner` of `shared`; returns the runtime (held here, so the caller may move the
    /// task that named it).
    fn add(&mut self, shared: &Arc<Shared>, owner: usize) -> &Shared {
        let same = |(s, o): &(Arc<Shared>, usize)| *o == owner && Arc::ptr_eq(s, shared);
        if self.first.as_ref().is_some_and(same) {
            return &self.first.as_ref().expect("just matched").0;
        }
        if self.first.is_none() {
            return &self.first.insert((shared.clone(), owner)).0;
        }
        let i = match self.more.iter().position(same) {
            Some(i) => i,
            None => {
                self.more.push((shared.clone(), owner));
                self.more.len() - 1
            }
        };
        &self.more[i].0
    }

    /// Wakes each noted worker that sleeps. Its queue was pushed before this call, and
    /// `needs_notify` fences before it reads the sleep flag, so a worker that announced its
    /// sleep before the fence is woken and one that announces it later sees the push.
    pub(crate) fn send(self) {
        for (shared, owner) in self.first.into_iter().chain(self.more) {
            if shared.idle.needs_notify(owner) {
                shared.notify(owner);
            }
        }
    }
}

/// Queues a woken (started) green thread on its owner worker: on its ready queue when called
/// from that worker, else on its remote queue, noting in `notify` that it may sleep.
pub(crate) fn queue_woken(task: Arc<Task>, notify: &mut Notify) {
    let owner = task.owner.load(Ordering::Relaxed);
    let w = WORKER.get();
    if !w.is_null() {
        // SAFETY: see `with_green`.
        let local = unsafe { &*w };
        if local.index == owner && Arc::ptr_eq(&local.shared, &task.shared) {
            if let Ok(mut ready) = local.ready.try_borrow_mut() {
                ready.push_back(task);
                return;
            }
        }
    }
    if task.shared.shutdown.load(Ordering::Acquire) || owner >= task.shared.workers.len() {
        return; // the workers are gone or going; the task is unwound by its owner
    }
    let shared = notify.add(&task.shared, owner);
    shared.workers[owner].remote.push(task);
}

/// Queues a new green thread. From a worker of `shared`: on that worker's `fresh` deque (idle
/// workers steal half of it), waking a sleeping worker to do so. From anywhere else: dealt
/// round robin to the workers' inboxes, so that a burst of outside spawns is spread evenly
/// before any of it starts (a started green thread never moves); the chosen worker is woken if
/// it sleeps, else a sleeping one is, which may steal it if the chosen one stays busy.
pub(crate) fn spawn_task(shared: &Arc<Shared>, task: Arc<Task>) {
    let w = WORKER.get();
    // SAFETY: see `with_green`.
    let local = (!w.is_null()).then(|| unsafe { &*w });
    if let Some(local) = local.filter(|l| Arc::ptr_eq(&l.shared, shared)) {
        local.fresh.push(task);
    } else {
        let i = shared.next_inbox.fetch_add(1, Ordering::Relaxed) % shared.workers.len();
        shared.workers[i].inbox.push(task);
        if shared.idle.needs_notify(i) {
            shared.notify(i);
            return;
        }
    }
    if let Some(i) = shared.idle.sleeper() {
        shared.notify(i);
    }
}

/// The runtime the calling worker thread belongs to.
pub(crate) fn current_shared() -> Option<Arc<Shared>> {
    let w = WORKER.get();
    // SAFETY: see `with_green`.
    (!w.is_null()).then(|| unsafe { (*w).shared.clone() })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::park;
    use crate::runtime::Runtime;

    #[test]
    fn early_ended_timed_waits_do_not_pile_up_in_the_timer_heap() {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (waits, heap_len) = rt.block_on(|| {
            let mut woken = 0;
            for _ in 0..5000 {
                let me = park::current_unparker();
                let _ = crate::spawn(move || me.unpark());
                // Unparked long before the timeout: its timer entry becomes stale.
                if park::park_timeout(Duration::from_secs(1000)) {
                    woken += 1;
                }
            }
            let len = with_green(|w, _| w.timers.borrow().len()).unwrap_or(usize::MAX);
            (woken, len)
        });
        assert_eq!(waits, 5000);
        assert!(
            heap_len <= 2048,
            "{heap_len} timer entries kept for 5000 finished waits"
        );
    }
}
