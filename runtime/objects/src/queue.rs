//! `RemStack<T>` and `RemQueue<T>`: a LIFO over a [`RemList`] and a concurrent FIFO over the
//! same chunk objects (AIFM §5 lists its stack and queue as thin layers over the remoteable
//! list).
//!
//! Both move elements by value, so they open a short [`DerefScope`] of their own inside each
//! operation: no reference escapes and callers need no scope. (An operation called while the
//! caller holds a scope of its own nests inside it; under memory pressure that outer scope can
//! make a write wait for up to `alloc_wait` and fail, so prefer calling them outside scopes.)
//!
//! # `RemQueue`: a two-lock queue of chunks
//!
//! Many green threads share a `RemQueue`. As in Michael and Scott's two-lock queue (PODC'96),
//! pushes take only the **tail** lock and pops only the **head** lock, so a producer and a
//! consumer never wait for each other, not even while one of them waits a round trip for its
//! chunk. Both locks are [`farmem_sched::sync::Mutex`]es: a holder that waits for far memory
//! parks its green thread, and its worker runs others.
//!
//! ```text
//!   tail lock: the chunk being filled, slots 0..filled written
//!   head lock: the run of slots it takes elements from next (obj, next..end)
//!   handoff (std mutex, a few instructions, never held across a far access or a park):
//!     full:  filled chunks the head has not reached, each from its first untaken slot
//!     tail chunk: its id, slots published (written), slots taken by the head
//!     free:  ids of chunks the head emptied, for the tail to fill again
//! ```
//!
//! - **Push** writes the element into the tail chunk's next slot, then publishes it (raises
//!   `published` under the handoff lock). A full tail chunk is handed to `full` (from its first
//!   untaken slot) when the next push starts a new one, from `free` or newly created.
//! - **Pop** takes elements from its run; when the run is used up it takes the oldest `full`
//!   chunk, or else borrows the tail chunk's published, untaken slots (`taken = published`):
//!   so a queue shorter than a chunk still never takes the tail lock to pop.
//! - **Ownership of a chunk**: the tail writes only unpublished slots, the head reads only
//!   published, untaken ones, so the two never touch the same slot. Slots are written and taken
//!   in order, so the side that takes a chunk's last slot (the head, ending a run at the chunk's
//!   end) is the last to use it and frees it. When that chunk is still the tail's, the head
//!   also drops it from the handoff, and the tail's next push starts a new chunk.
//! - Each side keeps its own handle of the chunks (with its own cache of pointer-word segments);
//!   only the tail creates chunks, and the head's handle catches up when a run names a chunk
//!   its cache does not reach yet.
//!
//! Pops never dirty a chunk (AIFM's queue neither): the evacuator writes a chunk back only for
//! what pushes wrote into it. As in `RemList`, a reused chunk that was sent away is fetched
//! again for its first write, stale contents and all (no write-only dereference exists yet).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};

use farmem_error::Result;
use farmem_sched::sync::Mutex;

use crate::array::Chunks;
use crate::list::RemList;
use crate::memory::{Access, FarMemory, Inner};
use crate::pod::Pod;
use crate::scope::DerefScope;

impl FarMemory {
    /// An empty remote stack (see [`RemStack`]).
    pub fn stack<T: Pod>(&self) -> Result<RemStack<T>> {
        Ok(RemStack {
            list: RemList::new(&self.inner)?,
        })
    }

    /// An empty remote queue that many threads and green threads may share (see
    /// [`RemQueue`]).
    pub fn queue<T: Pod>(&self) -> Result<RemQueue<T>> {
        let core = Chunks::new(&self.inner, None)?;
        Ok(RemQueue {
            inner: self.inner.clone(),
            head: Mutex::new(Head {
                core: core.share(),
                run: None,
            }),
            tail: Mutex::new(Tail {
                core,
                obj: None,
                filled: 0,
            }),
            handoff: std::sync::Mutex::new(Handoff::default()),
            len: AtomicUsize::new(0),
        })
    }
}

/// A last-in first-out stack of `T` in far memory, created by [`FarMemory::stack`].
pub struct RemStack<T: Pod> {
    list: RemList<T>,
}

impl<T: Pod> RemStack<T> {
    /// Pushes `v`; a new chunk can fail with `OutOfFarMemory` (the stack is then unchanged).
    pub fn push(&mut self, v: T) -> Result<()> {
        let inner = self.list.inner().clone();
        let scope = DerefScope::enter(&inner);
        self.list.push_back(v, &scope)
    }

    /// Pops the most recently pushed element.
    pub fn pop(&mut self) -> Result<Option<T>> {
        let inner = self.list.inner().clone();
        let scope = DerefScope::enter(&inner);
        self.list.pop_back(&scope)
    }

    /// A copy of the top element.
    pub fn peek(&self) -> Result<Option<T>> {
        let scope = DerefScope::enter(self.list.inner());
        Ok(self.list.back(&scope)?.copied())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the stack is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.list.clear();
    }
}

impl<T: Pod> std::fmt::Debug for RemStack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemStack")
            .field("list", &self.list)
            .finish()
    }
}

/// A first-in first-out queue of `T` in far memory that many threads and green threads may
/// share (`&self` methods; wrap it in an `Arc`), created by [`FarMemory::queue`]. Pushes and pops
/// take different locks (see the module note); every operation is linearisable, so the queue is
/// strictly FIFO.
pub struct RemQueue<T: Pod> {
    inner: Arc<Inner>,
    head: Mutex<Head<T>>,
    tail: Mutex<Tail<T>>,
    handoff: std::sync::Mutex<Handoff>,
    /// Elements pushed and not popped: raised before an element is published, so it never
    /// runs below the number a pop can find.
    len: AtomicUsize,
}

/// Slots `next..end` of chunk `obj`, published and not yet taken by a pop.
#[derive(Clone, Copy, Debug)]
struct Run {
    obj: u32,
    next: u32,
    end: u32,
}

/// The push side (under the tail lock).
struct Tail<T: Pod> {
    core: Chunks<T>,
    /// The chunk being filled: `None` before the first push and after a `clear`.
    obj: Option<u32>,
    /// Its slots written so far (`0..filled`), all published.
    filled: u32,
}

/// The pop side (under the head lock).
struct Head<T: Pod> {
    core: Chunks<T>,
    /// The slots it takes elements from next; `None` once used up.
    run: Option<Run>,
}

/// What the two sides hand each other (see the module note).
#[derive(Default)]
struct Handoff {
    /// Filled chunks the head has not reached, oldest first, each ending at the chunk's end.
    full: VecDeque<Run>,
    /// The tail's chunk, if any.
    tail_obj: Option<u32>,
    /// Its slots written, `0..published`.
    published: u32,
    /// Its slots the head has taken, `0..taken` (`taken <= published`).
    taken: u32,
    /// Chunks the head emptied, for the tail to reuse.
    free: Vec<u32>,
}

impl<T: Pod> RemQueue<T> {
    fn handoff(&self) -> MutexGuard<'_, Handoff> {
        // Nothing under this lock can panic halfway through an update.
        self.handoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn chunk_len(&self, core: &Chunks<T>) -> u32 {
        core.chunk_len() as u32
    }

    /// Appends `v` at the tail; a new chunk can fail with `OutOfFarMemory` (the queue is then
    /// unchanged).
    pub fn push(&self, v: T) -> Result<()> {
        let mut tail = self.tail.lock();
        let scope = DerefScope::enter(&self.inner);
        self.push_locked(&mut tail, v, &scope)
    }

    /// Appends every element of `vs` in order under one lock acquisition (they stay adjacent).
    /// On an error the elements before the failing one stay queued (the error says how many).
    pub fn push_all(&self, vs: &[T]) -> Result<()> {
        let mut tail = self.tail.lock();
        let mut scope = DerefScope::enter(&self.inner);
        for (n, &v) in vs.iter().enumerate() {
            self.push_locked(&mut tail, v, &scope).map_err(|e| {
                e.with_context(format!(
                    "queue push_all: {n} of {} elements were queued",
                    vs.len()
                ))
            })?;
            if n % 64 == 63 {
                scope.renew();
            }
        }
        Ok(())
    }

    fn push_locked(&self, tail: &mut Tail<T>, v: T, scope: &DerefScope<'_>) -> Result<()> {
        let cap = self.chunk_len(&tail.core);
        let shift = tail.core.shift;
        match tail.obj {
            Some(obj) if tail.filled < cap => {
                tail.core
                    .set(((obj as usize) << shift) | tail.filled as usize, v, scope)?;
                tail.filled += 1;
                self.len.fetch_add(1, Ordering::AcqRel);
                self.handoff().published = tail.filled;
            }
            _ => {
                let obj = self.new_chunk(tail)?;
                if let Err(e) = tail.core.set((obj as usize) << shift, v, scope) {
                    self.handoff().free.push(obj);
                    return Err(e);
                }
                self.len.fetch_add(1, Ordering::AcqRel);
                let mut h = self.handoff();
                if let Some(old) = h.tail_obj {
                    // The old chunk is full. Unless the head has taken all of it (it frees the
                    // chunk when its run ends), the rest waits in `full`.
                    let taken = h.taken;
                    if taken < cap {
                        h.full.push_back(Run {
                            obj: old,
                            next: taken,
                            end: cap,
                        });
                    }
                }
                h.tail_obj = Some(obj);
                h.published = 1;
                h.taken = 0;
                drop(h);
                tail.obj = Some(obj);
                tail.filled = 1;
            }
        }
        Ok(())
    }

    /// A chunk for the tail to fill: one the head emptied, or a new object.
    fn new_chunk(&self, tail: &mut Tail<T>) -> Result<u32> {
        if let Some(obj) = self.handoff().free.pop() {
            return Ok(obj);
        }
        let n = tail.core.table.objects() as usize;
        tail.core.ensure_chunks(n + 1)?;
        Ok(n as u32)
    }

    /// The head's current run, taking the next one from the handoff when it has none.
    fn current_run(&self, head: &mut Head<T>) -> Option<Run> {
        if head.run.is_none() {
            let mut h = self.handoff();
            head.run = match h.full.pop_front() {
                Some(run) => Some(run),
                None => match h.tail_obj {
                    Some(obj) if h.taken < h.published => {
                        let run = Run {
                            obj,
                            next: h.taken,
                            end: h.published,
                        };
                        h.taken = h.published;
                        Some(run)
                    }
                    _ => None,
                },
            };
        }
        head.run
    }

    /// The element in the head run's next slot (not taken).
    fn read_next(&self, head: &mut Head<T>, run: Run, scope: &DerefScope<'_>) -> Result<T> {
        if !head.core.covers(run.obj as usize) {
            head.core.ensure_chunks(run.obj as usize + 1)?;
        }
        let p = head.core.chunk_ptr(run.obj as usize, scope, Access::Read)?;
        // SAFETY: `p` is the chunk's data, valid while `scope` lives (scope protocol); slot
        // `next` is inside the chunk (`next < end <= chunk_len`), was written before it was
        // published and is not written again before the head takes it (module note); read by
        // value, so no reference to the chunk outlives this line.
        Ok(unsafe { p.add(run.next as usize).read() })
    }

    /// Marks the head run's next slot taken; a run ending at the chunk's end frees the chunk.
    fn advance(&self, head: &mut Head<T>, run: Run) {
        if run.next + 1 < run.end {
            head.run = Some(Run {
                next: run.next + 1,
                ..run
            });
            return;
        }
        head.run = None;
        if run.end == self.chunk_len(&head.core) {
            let mut h = self.handoff();
            if h.tail_obj == Some(run.obj) {
                // The tail filled this chunk and has not moved on yet: it is no longer the
                // chunk the head may borrow from (the tail's next push starts a new one).
                h.tail_obj = None;
                h.published = 0;
                h.taken = 0;
            }
            h.free.push(run.obj);
        }
    }

    fn pop_locked(&self, head: &mut Head<T>, scope: &DerefScope<'_>) -> Result<Option<T>> {
        let Some(run) = self.current_run(head) else {
            return Ok(None);
        };
        let v = self.read_next(head, run, scope)?;
        self.advance(head, run);
        self.len.fetch_sub(1, Ordering::AcqRel);
        Ok(Some(v))
    }

    /// Removes and returns the head element, or `None` if the queue is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        let mut head = self.head.lock();
        let scope = DerefScope::enter(&self.inner);
        self.pop_locked(&mut head, &scope)
    }

    /// Moves up to `max` head elements into `out` under one lock acquisition; returns how many.
    pub fn pop_into(&self, max: usize, out: &mut Vec<T>) -> Result<usize> {
        let mut head = self.head.lock();
        let mut scope = DerefScope::enter(&self.inner);
        let mut n = 0;
        while n < max {
            match self.pop_locked(&mut head, &scope)? {
                Some(v) => out.push(v),
                None => break,
            }
            n += 1;
            if n % 64 == 0 {
                scope.renew();
            }
        }
        Ok(n)
    }

    /// A copy of the head element.
    pub fn peek(&self) -> Result<Option<T>> {
        let mut head = self.head.lock();
        let scope = DerefScope::enter(&self.inner);
        match self.current_run(&mut head) {
            Some(run) => self.read_next(&mut head, run, &scope).map(Some),
            None => Ok(None),
        }
    }

    /// Number of elements now (another thread may change it at once).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every element (takes both locks, head first). Chunk objects stay in far memory
    /// for reuse until the queue drops.
    pub fn clear(&self) {
        let mut head = self.head.lock();
        let mut tail = self.tail.lock();
        let cap = self.chunk_len(&head.core);
        // Every published element goes as a pop would take it, unread: a run that ends at its
        // chunk's end frees the chunk.
        while let Some(run) = self.current_run(&mut head) {
            self.advance(
                &mut head,
                Run {
                    next: run.end - 1,
                    ..run
                },
            );
        }
        let mut h = self.handoff();
        if let Some(obj) = h.tail_obj.take() {
            // Not full: a full one was freed above, with its last run, and left the handoff.
            debug_assert!(h.published < cap);
            h.free.push(obj);
        }
        h.published = 0;
        h.taken = 0;
        tail.obj = None;
        tail.filled = 0;
        self.len.store(0, Ordering::Release);
    }
}

impl<T: Pod> std::fmt::Debug for RemQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.handoff();
        f.debug_struct("RemQueue")
            .field("len", &self.len())
            .field("full_chunks", &h.full.len())
            .field("free_chunks", &h.free.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::sync::mpsc;
    use std::time::Duration;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::Config;

    /// 6 local regions of 4 KiB (24 KiB) against a queue that grows to about 60k `u64`s
    /// (480 KiB): local memory is about 5% of the data at its peak.
    fn small_memory() -> FarMemory {
        let config = Config::builder()
            .local_bytes(6 * 4096)
            .region_bytes(4096)
            .chunk_bytes(256) // 32 elements per chunk
            .alloc_shards(1)
            .build()
            .unwrap();
        FarMemory::in_process(config, 64 << 20).unwrap()
    }

    /// The chunk bookkeeping is whole: no chunk is free twice, and none is free while the head,
    /// the handoff or the tail still holds it.
    fn check_chunks<T: Pod>(q: &RemQueue<T>) {
        let head = q.head.try_lock().expect("head lock free");
        let tail = q.tail.try_lock().expect("tail lock free");
        let h = q.handoff();
        let mut free = h.free.clone();
        free.sort_unstable();
        let n = free.len();
        free.dedup();
        assert_eq!(free.len(), n, "a chunk is free twice: {:?}", h.free);
        let mut used: Vec<u32> = h.full.iter().map(|r| r.obj).collect();
        used.extend(head.run.map(|r| r.obj));
        used.extend(h.tail_obj);
        for obj in used {
            assert!(
                free.binary_search(&obj).is_err(),
                "chunk {obj} is free and in use"
            );
        }
        let cap = tail.core.chunk_len() as u32;
        if h.tail_obj.is_some() {
            assert_eq!(
                tail.obj, h.tail_obj,
                "tail and handoff agree on the tail chunk"
            );
            assert_eq!(tail.filled, h.published, "every written slot is published");
        } else if let Some(obj) = tail.obj {
            // The head took all of the tail's full chunk and freed it.
            assert_eq!(tail.filled, cap);
            assert!(free.binary_search(&obj).is_ok());
        }
        assert!(h.taken <= h.published);
        let held = head.run.map_or(0, |r| (r.end - r.next) as usize)
            + h.full
                .iter()
                .map(|r| (r.end - r.next) as usize)
                .sum::<usize>()
            + (h.published - h.taken) as usize;
        assert_eq!(held, q.len(), "the runs hold exactly len() elements");
        let created = tail.core.table.objects() as usize;
        assert!(free.iter().all(|&o| (o as usize) < created));
    }

    /// Random pushes, batch pushes, pops, batch pops, peeks and clears against a `VecDeque`,
    /// with the queue far larger than local memory, so chunks are written back and fetched.
    #[test]
    fn queue_matches_a_vecdeque_under_random_operations() {
        let fm = small_memory();
        let q = fm.queue::<u64>().unwrap();
        let mut model = VecDeque::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut next = 0u64;
        for step in 0..60_000 {
            // Grows for the first half (pushes outnumber pops), drains in the second.
            let push_bias = if step < 30_000 { 6 } else { 3 };
            match rng.gen_range(0..10) {
                r if r < push_bias => {
                    if rng.gen_bool(0.2) {
                        let vs: Vec<u64> = (next..next + rng.gen_range(1..80)).collect();
                        next += vs.len() as u64;
                        q.push_all(&vs).unwrap();
                        model.extend(vs);
                    } else {
                        q.push(next).unwrap();
                        model.push_back(next);
                        next += 1;
                    }
                }
                7 => {
                    let max = rng.gen_range(0..70);
                    let mut got = Vec::new();
                    let n = q.pop_into(max, &mut got).unwrap();
                    let want: Vec<u64> = model.drain(..max.min(model.len())).collect();
                    assert_eq!(n, want.len());
                    assert_eq!(got, want, "pop_into at step {step}");
                }
                8 => assert_eq!(q.peek().unwrap(), model.front().copied(), "peek at {step}"),
                9 if rng.gen_ratio(1, 2000) => {
                    q.clear();
                    model.clear();
                }
                _ => assert_eq!(q.pop().unwrap(), model.pop_front(), "pop at step {step}"),
            }
            assert_eq!(q.len(), model.len());
            if step % 97 == 0 {
                check_chunks(&q);
            }
        }
        while let Some(v) = q.pop().unwrap() {
            assert_eq!(Some(v), model.pop_front());
        }
        assert!(model.is_empty() && q.is_empty());
        check_chunks(&q);
        let m = fm.metrics();
        assert!(
            m.evacuated_regions > 0,
            "local memory was never short: {m:?}"
        );
        assert!(m.bytes_fetched > 0, "no chunk was ever fetched back: {m:?}");
    }

    /// A queue that never holds more than a chunk's worth: every pop borrows the tail chunk's
    /// published slots, and chunks are recycled, never leaked or freed twice.
    #[test]
    fn a_short_queue_pops_from_the_tail_chunk_and_recycles_chunks() {
        let fm = small_memory();
        let q = fm.queue::<u32>().unwrap();
        for i in 0..10_000u32 {
            q.push(i).unwrap();
            if i % 3 == 2 {
                for j in i - 2..=i {
                    assert_eq!(q.pop().unwrap(), Some(j));
                }
                assert_eq!(q.pop().unwrap(), None);
                check_chunks(&q);
            }
        }
        let tail = q.tail.try_lock().unwrap();
        assert!(
            tail.core.table.objects() <= 2,
            "a queue of at most 3 elements needs two chunks, it made {}",
            tail.core.table.objects()
        );
    }

    /// The two locks are independent: a pop finishes while a push holds the tail lock (even
    /// when the only elements are in the tail chunk), and a push, even one that starts a new
    /// chunk, finishes while a pop holds the head lock.
    #[test]
    fn pushes_and_pops_do_not_wait_for_each_other() {
        let fm = small_memory();
        let q = Arc::new(fm.queue::<u64>().unwrap());
        let chunk = 32u64;
        q.push_all(&(0..chunk + 5).collect::<Vec<_>>()).unwrap();
        // Within a generous bound: a queue that takes the other side's lock never answers.
        let within = Duration::from_secs(60);
        let tail_held = q.tail.lock();
        let (tx, rx) = mpsc::channel();
        let q2 = q.clone();
        std::thread::spawn(move || {
            let got: Vec<u64> = (0..chunk + 5).map(|_| q2.pop().unwrap().unwrap()).collect();
            tx.send(got).unwrap();
        });
        let got = rx
            .recv_timeout(within)
            .expect("a pop waited for the tail lock");
        assert_eq!(got, (0..chunk + 5).collect::<Vec<_>>());
        drop(tail_held);

        let head_held = q.head.lock();
        let (tx, rx) = mpsc::channel();
        let q2 = q.clone();
        std::thread::spawn(move || {
            q2.push_all(&(100..100 + 3 * chunk).collect::<Vec<_>>())
                .unwrap();
            tx.send(()).unwrap();
        });
        rx.recv_timeout(within)
            .expect("a push waited for the head lock");
        drop(head_held);
        assert_eq!(q.len(), 3 * chunk as usize);
        assert_eq!(q.pop().unwrap(), Some(100));
    }
}
