//! Coalesced misses of one `RemHashMap` (flat combining, Hendler et al., SPAA'10), sent by the
//! map's sender thread.
//!
//! ```text
//!   green thread: miss ──push──▶ queue [m1 m2 m3 ...] ──(notify an idle sender, or start one)
//!                 park until its Miss holds an answer
//!   sender thread: loop { wait while the queue is empty (exit after SENDER_IDLE_EXIT);
//!                         take ≤ COMBINE_BATCH_KEYS from the front;
//!                         one get-many round trip (blocks this OS thread only);
//!                         put each answer in its Miss, unpark the waiters at once,
//!                         pass the found values to the map's fill }
//! ```
//!
//! Why an OS thread and not a green leader: a green thread that leads the round trip stops
//! issuing its own lookups while it waits; an OS sender blocks in the socket read directly, and
//! the only wake-ups per trip are the server's and the sender's own. While a batch is out, new
//! misses queue and go in the next batch, taken as soon as the answers are handed out and the
//! found values filled, with no wake-up then; a miss waits about one and a half trips on
//! average. The sender lets go of a batch's misses before it wakes their waiters (their
//! unparkers move out of the misses, the fill's keys are copied), so each waiter frees its own
//! miss on its own worker. At most `max_senders` per
//! map: on a loopback link the trips' CPU bounds throughput, so fewer, fuller trips win over more
//! in flight.
//!
//! **Senders live only while the map misses.** The first miss that finds no idle sender starts
//! one (up to the map's maximum); a sender that has waited [`SENDER_IDLE_EXIT`] with nothing
//! queued exits. So a process may hold many maps without an OS thread each: only maps that are
//! missing now have one. The exit and the start are decided under the queue lock (`running`,
//! `idle`), so a miss queued as a sender leaves is seen by it or starts a new one.
//!
//! The queue's state lives under one mutex; a waiter's answer lands in its own `Miss` (written
//! once, then published by an atomic state, so neither side takes a lock for it) and the
//! waiter is woken through its `Unparker` (a token: an unpark before the park is not lost). The
//! park has no timeout: a timed park costs a green thread a timer entry and two clock reads on
//! every miss, and it would buy nothing, because a waiter leaves only with its answer anyway.
//! Every miss a sender takes is answered, with an error if the round trip fails or `send`
//! panics, and a miss nobody took is answered when its map's last sender fails to start. After
//! [`MissCombiner::close`] senders exit once the queue is empty, so no queued miss is left
//! unanswered; the map's farewell (the server-side `clear`) runs on the last sender to exit, or
//! on a thread of its own when none is running, so dropping a map never waits for a round trip.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use farmem_error::{Error, Result};
use farmem_sched::park::{current_unparker, park, Unparker};

/// Most keys in one `get-many` batch. With 1024 green threads missing, a cap of 128 was reached
/// on nearly every trip (123 keys per trip), so misses waited several trips; at 512 a batch
/// takes whatever queued during the last trip.
const COMBINE_BATCH_KEYS: usize = 512;
/// Most key bytes in one batch (keeps frames small).
const COMBINE_BATCH_BYTES: usize = 256 << 10;
/// How long a sender waits for a miss before it exits (the next miss starts another).
pub(super) const SENDER_IDLE_EXIT: Duration = Duration::from_millis(100);

/// The answer to one miss: the value's bytes, `None` when the key is absent.
pub(super) type MissAnswer = Result<Option<MissValue>>;

/// One value of a batch's answer: a span of the shared answer body, so a batch costs one
/// allocation however many values it carries (not one per value, allocated on the sender and
/// freed on the waiter's worker).
#[derive(Debug)]
pub(super) struct MissValue {
    body: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl MissValue {
    /// The value's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.body[self.start..self.end]
    }
}

/// A batch's answers: the body they were decoded from, and per key, in order, the span of the
/// body holding its value (`None`: absent).
pub(super) struct BatchAnswers {
    /// The answer body.
    pub(super) body: Arc<Vec<u8>>,
    /// Per key asked, the value's byte range within `body`.
    pub(super) spans: Vec<Option<std::ops::Range<usize>>>,
}

/// One `get-many` round trip: the answers to `keys`, in order.
pub(super) type SendBatch = dyn Fn(&[&[u8]]) -> Result<BatchAnswers> + Send + Sync;

/// A value a batch found, with what its miss carried for the fill: the key's hash and the
/// epoch its shard had when the miss was queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Found<'a> {
    /// The key asked.
    pub(super) key: &'a [u8],
    /// The hash the miss was queued with.
    pub(super) hash: u64,
    /// The epoch the miss was queued with.
    pub(super) epoch: u64,
    /// The value the server answered.
    pub(super) value: &'a [u8],
}

/// What a sender does with a batch's found values once it has woken their waiters: the map fills
/// its cache (one thread filling from values still in its own cache, instead of every waiter
/// taking a shard's lock after its wake-up). After the wake-ups, so the fill is off the misses'
/// latency: a waiter that looks its key up again at once may miss it once more.
pub(super) type FillBatch = dyn Fn(&[Found<'_>]) + Send + Sync;

/// Keys up to this long are kept inside their queued miss (no allocation per miss).
const INLINE_KEY_BYTES: usize = 32;

/// A queued miss's key: inline when short (the common 8-byte keys), else on the heap.
enum KeyBuf {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    Heap(Box<[u8]>),
}

impl KeyBuf {
    fn new(key: &[u8]) -> KeyBuf {
        if key.len() <= INLINE_KEY_BYTES {
            let mut bytes = [0u8; INLINE_KEY_BYTES];
            bytes[..key.len()].copy_from_slice(key);
            KeyBuf::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KeyBuf::Heap(key.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            KeyBuf::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyBuf::Heap(b) => b,
        }
    }
}

/// What the last sender to exit runs (the map's `clear` on the server).
pub(super) type Farewell = Box<dyn FnOnce() + Send>;

/// One queued miss: its key, its hash and epoch (for the fill), where its answer lands, and who
/// to wake.
struct Miss {
    key: KeyBuf,
    hash: u64,
    epoch: u64,
    /// [`EMPTY`], [`WRITING`] (one answerer won it), [`ANSWERED`].
    state: AtomicU8,
    /// Written only by the answerer that moved `state` to `WRITING`, before it stores
    /// `ANSWERED` (release); read only by the waiter, after it loads `ANSWERED` (acquire).
    answer: UnsafeCell<Option<MissAnswer>>,
    /// Taken by the answerer that won `state`, before it stores `ANSWERED` (the waiter never
    /// reads it): the answerer wakes the waiter with it, so it holds no clone of its own.
    waker: UnsafeCell<Option<Unparker>>,
}

/// `Miss::state`: no answer yet.
const EMPTY: u8 = 0;
/// `Miss::state`: an answer is being written.
const WRITING: u8 = 1;
/// `Miss::state`: the answer is in.
const ANSWERED: u8 = 2;

// SAFETY: `answer` is written by one thread (the answerer that won `state`), before the release
// store of `ANSWERED`, and read only by the waiter after the acquire load that saw it; `waker`
// is taken only by that answerer; no other access exists (see `answer` and `take`).
unsafe impl Sync for Miss {}

impl Miss {
    /// Puts `answer` in and returns the waiter's unparker, unless the miss was answered
    /// already (every miss is answered once; a second answer is dropped rather than racing the
    /// first). Wakes nobody: the caller unparks the waiter, one by one or a batch at once.
    #[must_use = "the waiter stays parked until its unparker is used"]
    fn answer(&self, answer: MissAnswer) -> Option<Unparker> {
        self.state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // SAFETY: this thread won `state`, so it is the only one to touch `answer` and `waker`
        // until `ANSWERED` below, after which only the waiter reads `answer`.
        let waker = unsafe {
            *self.answer.get() = Some(answer);
            (*self.waker.get()).take()
        };
        self.state.store(ANSWERED, Ordering::Release);
        waker
    }

    /// Answers and wakes the waiter.
    fn set(&self, answer: MissAnswer) {
        if let Some(w) = self.answer(answer) {
            w.unpark();
        }
    }

    /// The answer, once it is in; called only by the miss's own waiter.
    fn take(&self) -> Option<MissAnswer> {
        if self.state.load(Ordering::Acquire) != ANSWERED {
            return None;
        }
        // SAFETY: `ANSWERED` was stored after the last write of `answer` (release, acquired
        // above) and nothing writes it after; only the waiter, this caller, reads it.
        unsafe { (*self.answer.get()).take() }
    }
}

#[derive(Default)]
struct Queue {
    misses: VecDeque<Arc<Miss>>,
    /// Senders waiting for misses.
    idle: usize,
    /// The map is gone: senders exit once the queue is empty.
    closed: bool,
    /// Senders running (started and not yet exited).
    running: usize,
    /// Run once, after `close`, by the last sender to exit (or by `close` when none runs).
    farewell: Option<Farewell>,
}

/// How a map's senders are started (set once by [`MissCombiner::start`]).
struct SenderSpec {
    max: usize,
    name: String,
    send: Arc<SendBatch>,
    fill: Arc<FillBatch>,
}

/// The miss queue of one map, its counters, and the condition its senders wait on.
#[derive(Default)]
pub(super) struct MissCombiner {
    queue: Mutex<Queue>,
    work: Condvar,
    spec: OnceLock<SenderSpec>,
    batches: AtomicU64,
    trip_nanos: AtomicU64,
}

impl MissCombiner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every critical section leaves the queue valid: recover a poisoned lock.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Batches sent so far.
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Nanoseconds the batches' round trips took, summed.
    pub(super) fn trip_nanos(&self) -> u64 {
        self.trip_nanos.load(Ordering::Relaxed)
    }

    /// Sender threads running now (at most the `max_senders` given to `start`).
    #[cfg(test)]
    pub(super) fn senders_running(&self) -> usize {
        self.queue().running
    }

    /// Sets how misses are answered: through `send`, on up to `max_senders` sender threads
    /// named `name`, started as misses need them (module note), each batch's found values passed
    /// to `fill` after their waiters are woken; after [`MissCombiner::close`], `farewell` runs
    /// once.
    /// Starts no thread yet. Calling it twice is an internal error.
    pub(super) fn start(
        &self,
        max_senders: usize,
        name: &str,
        send: Arc<SendBatch>,
        fill: Arc<FillBatch>,
        farewell: Farewell,
    ) -> Result<()> {
        self.spec
            .set(SenderSpec {
                max: max_senders.max(1),
                name: name.to_string(),
                send,
                fill,
            })
            .map_err(|_| Error::internal("hash map miss senders configured twice"))?;
        self.queue().farewell = Some(farewell);
        Ok(())
    }

    /// Lets the senders exit (once nothing is queued); runs the farewell on a thread of its own
    /// when no sender is running to run it.
    pub(super) fn close(&self) {
        let farewell = {
            let mut q = self.queue();
            q.closed = true;
            if q.running == 0 {
                q.farewell.take()
            } else {
                None
            }
        };
        self.work.notify_all();
        if let Some(f) = farewell {
            let name = self.spec.get().map_or("farmem-map", |s| &s.name);
            // The closure moves into the thread only if the spawn succeeds; if it fails, the
            // farewell is lost with it, as when a server that is gone dropped the entries.
            let _ = std::thread::Builder::new()
                .name(format!("{name}-bye"))
                .spawn(f);
        }
    }

    /// Looks `key` up through the senders, sharing a round trip with concurrent misses; parks
    /// the calling green (or OS) thread until the answer is in. `hash` and `epoch` go to the
    /// fill with the value, if one is found.
    pub(super) fn fetch(self: &Arc<Self>, key: &[u8], hash: u64, epoch: u64) -> MissAnswer {
        let Some(spec) = self.spec.get() else {
            return Err(Error::internal("hash map miss queue used before start"));
        };
        let me = Arc::new(Miss {
            key: KeyBuf::new(key),
            hash,
            epoch,
            state: AtomicU8::new(EMPTY),
            answer: UnsafeCell::new(None),
            waker: UnsafeCell::new(Some(current_unparker())),
        });
        let (wake, start) = {
            let mut q = self.queue();
            if q.closed {
                return Err(Error::internal("hash map miss queue used after close"));
            }
            q.misses.push_back(me.clone());
            if q.idle > 0 {
                (true, false)
            } else if q.running < spec.max {
                q.running += 1;
                (false, true)
            } else {
                (false, false)
            }
        };
        if wake {
            self.work.notify_one();
        }
        if start {
            let me2 = self.clone();
            let spawned = std::thread::Builder::new()
                .name(spec.name.clone())
                .spawn(move || me2.serve());
            if let Err(e) = spawned {
                let e = Error::io("starting a hash map miss sender thread", e);
                let orphans: Vec<Arc<Miss>> = {
                    let mut q = self.queue();
                    q.running -= 1;
                    if q.running == 0 {
                        q.misses.drain(..).collect()
                    } else {
                        Vec::new()
                    }
                };
                for m in orphans {
                    m.set(Err(e.clone()));
                }
            }
        }
        loop {
            if let Some(r) = me.take() {
                return r;
            }
            park();
        }
    }

    /// A sender thread: waits for misses, sends what is queued as one batch, answers it, again.
    /// Exits after [`SENDER_IDLE_EXIT`] without a miss, or once the queue is empty after close.
    fn serve(&self) {
        let Some(spec) = self.spec.get() else {
            return;
        };
        let (send, fill) = (&*spec.send, &*spec.fill);
        loop {
            let batch: Vec<Arc<Miss>> = {
                let mut q = self.queue();
                while q.misses.is_empty() {
                    if q.closed {
                        q.running -= 1;
                        let farewell = if q.running == 0 {
                            q.farewell.take()
                        } else {
                            None
                        };
                        drop(q);
                        if let Some(f) = farewell {
                            f();
                        }
                        return;
                    }
                    q.idle += 1;
                    let (g, waited) = self
                        .work
                        .wait_timeout(q, SENDER_IDLE_EXIT)
                        .unwrap_or_else(|p| p.into_inner());
                    q = g;
                    q.idle -= 1;
                    if waited.timed_out() && q.misses.is_empty() && !q.closed {
                        // Idle: leave; the next miss that finds no idle sender starts one.
                        q.running -= 1;
                        return;
                    }
                }
                let mut bytes = 0;
                let mut n = 0;
                for m in q.misses.iter().take(COMBINE_BATCH_KEYS) {
                    let len = m.key.bytes().len();
                    if n > 0 && bytes + len > COMBINE_BATCH_BYTES {
                        break;
                    }
                    bytes += len;
                    n += 1;
                }
                q.misses.drain(..n).collect()
            };
            self.batches.fetch_add(1, Ordering::Relaxed);
            let keys: Vec<&[u8]> = batch.iter().map(|m| m.key.bytes()).collect();
            let sent = Instant::now();
            // A panicking `send` fails its batch instead of leaving the waiters parked forever.
            let answers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| send(&keys)))
                .unwrap_or_else(|_| {
                    Err(Error::internal(
                        "a hash map miss batch panicked on its way to the server",
                    ))
                });
            let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.trip_nanos.fetch_add(nanos, Ordering::Relaxed);
            let answers = answers.and_then(|a| {
                if a.spans.len() != batch.len() {
                    return Err(Error::internal(format!(
                        "hash map miss batch of {} keys got {} answers",
                        batch.len(),
                        a.spans.len()
                    )));
                }
                match a
                    .spans
                    .iter()
                    .flatten()
                    .find(|r| r.start > r.end || r.end > a.body.len())
                {
                    Some(r) => Err(Error::internal(format!(
                        "hash map miss answer spans bytes {r:?} of a {}-byte body",
                        a.body.len()
                    ))),
                    None => Ok(a),
                }
            });
            // Answer every miss first, copying what the fill needs of it, so that this thread
            // lets go of the misses before their waiters run: each waiter then frees its own
            // miss, on its own worker, instead of this thread freeing memory of another's arena.
            let mut wakers = Vec::with_capacity(batch.len());
            let mut keys = Vec::new();
            let mut filled = Vec::new();
            let body = match answers {
                Ok(a) => {
                    for (m, span) in batch.iter().zip(a.spans) {
                        if let Some(value) = &span {
                            let start = keys.len();
                            keys.extend_from_slice(m.key.bytes());
                            filled.push((start..keys.len(), m.hash, m.epoch, value.clone()));
                        }
                        wakers.extend(m.answer(Ok(span.map(|r| MissValue {
                            body: a.body.clone(),
                            start: r.start,
                            end: r.end,
                        }))));
                    }
                    Some(a.body)
                }
                Err(e) => {
                    for m in &batch {
                        wakers.extend(m.answer(Err(e.clone())));
                    }
                    None
                }
            };
            drop(batch);
            Unparker::unpark_all(wakers);
            if let Some(body) = body {
                let found: Vec<Found<'_>> = filled
                    .into_iter()
                    .map(|(key, hash, epoch, value)| Found {
                        key: &keys[key],
                        hash,
                        epoch,
                        value: &body[value],
                    })
                    .collect();
                // A panicking fill leaves entries uncached, never a waiter unanswered.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(&found)));
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Answers built from per-key values the way the map's sender builds them from a body.
    fn answers(values: Vec<Option<Vec<u8>>>) -> BatchAnswers {
        let mut body = Vec::new();
        let spans = values
            .into_iter()
            .map(|v| {
                v.map(|v| {
                    body.extend_from_slice(&v);
                    body.len() - v.len()..body.len()
                })
            })
            .collect();
        BatchAnswers {
            body: Arc::new(body),
            spans,
        }
    }

    fn echo(keys: &[&[u8]]) -> Result<BatchAnswers> {
        Ok(answers(
            keys.iter()
                .map(|k| (k[0] % 3 != 0).then(|| vec![k[0]; 2]))
                .collect(),
        ))
    }

    /// A fill that keeps nothing.
    fn no_fill() -> Arc<FillBatch> {
        Arc::new(|_: &[Found<'_>]| ())
    }

    /// The value bytes of a miss's answer.
    fn got(a: MissAnswer) -> Result<Option<Vec<u8>>> {
        a.map(|v| v.map(|v| v.bytes().to_vec()))
    }

    /// A combiner over [`echo`] with up to `senders` senders, and where its farewell reports.
    fn started(senders: usize) -> (Arc<MissCombiner>, std::sync::mpsc::Receiver<()>) {
        let c = Arc::new(MissCombiner::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let farewell = Box::new(move || tx.send(()).unwrap_or(()));
        c.start(senders, "test-miss", Arc::new(echo), no_fill(), farewell)
            .unwrap();
        (c, rx)
    }

    /// Polls `cond` for up to 10 s (thread exits are asynchronous).
    fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Misses from many OS threads are answered with their own key's answer, batched, by at
    /// most the configured number of senders; the farewell runs once, after close.
    #[test]
    fn answers_every_waiter_and_says_farewell_once_after_close() {
        let (c, rx) = started(2);
        assert_eq!(c.senders_running(), 0, "no sender before the first miss");
        let askers: Vec<_> = (0..16u8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        let k = t.wrapping_mul(50).wrapping_add(i);
                        let want = (k % 3 != 0).then(|| vec![k; 2]);
                        assert_eq!(got(c.fetch(&[k], 0, 0)).unwrap(), want, "key {k}");
                        assert!(c.senders_running() <= 2);
                    }
                })
            })
            .collect();
        for a in askers {
            a.join().unwrap();
        }
        let batches = c.batches();
        assert!((1..=16 * 50).contains(&batches), "{batches}");
        assert!(rx.try_recv().is_err(), "no farewell before close");
        c.close();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the farewell runs after close");
        eventually("every sender exited", || c.senders_running() == 0);
        assert!(rx.try_recv().is_err(), "the farewell runs once");
        assert!(
            c.fetch(&[1], 0, 0).is_err(),
            "a closed queue answers at once"
        );
    }

    /// An idle sender exits; the next miss starts another; a close with no sender running
    /// still runs the farewell.
    #[test]
    fn idle_senders_exit_and_the_next_miss_starts_one() {
        let (c, rx) = started(1);
        assert_eq!(got(c.fetch(&[4], 0, 0)).unwrap(), Some(vec![4, 4]));
        assert_eq!(c.senders_running(), 1);
        eventually("the idle sender exited", || c.senders_running() == 0);
        assert_eq!(
            got(c.fetch(&[5], 0, 0)).unwrap(),
            Some(vec![5, 5]),
            "a new sender"
        );
        eventually("the second sender exited", || c.senders_running() == 0);
        assert!(c.fetch(&[3], 0, 0).unwrap().is_none());
        eventually("the third sender exited", || c.senders_running() == 0);
        c.close();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the farewell runs with no sender running");
        assert!(c
            .start(1, "again", Arc::new(echo), no_fill(), Box::new(|| ()))
            .is_err());
    }

    #[test]
    fn a_failed_batch_fails_each_of_its_misses() {
        let c = Arc::new(MissCombiner::default());
        let send = |keys: &[&[u8]]| -> Result<BatchAnswers> {
            match keys.first().map(|k| k.first()) {
                Some(None) => Err(Error::internal("refused")),
                Some(Some(1)) => Ok(answers(vec![None; keys.len() + 1])), // one answer too many
                _ => Ok(BatchAnswers {
                    body: Arc::new(vec![0; 4]),
                    spans: keys.iter().map(|_| Some(2..9)).collect(), // past the body
                }),
            }
        };
        c.start(1, "test-miss", Arc::new(send), no_fill(), Box::new(|| ()))
            .unwrap();
        assert!(c
            .fetch(&[], 0, 0)
            .unwrap_err()
            .context()
            .contains("refused"));
        assert!(c
            .fetch(&[1], 0, 0)
            .unwrap_err()
            .context()
            .contains("answers"));
        assert!(c.fetch(&[2], 0, 0).unwrap_err().context().contains("spans"));
        c.close();
    }

    /// A `send` that panics fails its batch's misses (they do not park forever) and the
    /// sender goes on serving.
    #[test]
    fn a_panicking_batch_fails_its_misses_and_the_sender_goes_on() {
        let c = Arc::new(MissCombiner::default());
        let send = |keys: &[&[u8]]| -> Result<BatchAnswers> {
            assert!(
                keys.iter().all(|k| k != &[0u8]),
                "key 0 makes the test send panic"
            );
            Ok(answers(keys.iter().map(|k| Some(k.to_vec())).collect()))
        };
        c.start(1, "test-miss", Arc::new(send), no_fill(), Box::new(|| ()))
            .unwrap();
        let e = c.fetch(&[0], 0, 0).unwrap_err();
        assert!(e.context().contains("panicked"), "{e}");
        assert_eq!(got(c.fetch(&[7], 0, 0)).unwrap(), Some(vec![7]));
        c.close();
    }

    /// The fill gets every found value (not the absent keys) with the hash and epoch its miss
    /// was queued with; a panicking fill still answers the waiters and the sender goes on.
    #[test]
    fn found_values_go_to_the_fill_with_their_hash_and_epoch() {
        let c = Arc::new(MissCombiner::default());
        /// A filled value: key, hash, epoch, value.
        type Filled = (Vec<u8>, u64, u64, Vec<u8>);
        let filled: Arc<Mutex<Vec<Filled>>> = Arc::default();
        let log = filled.clone();
        let fill = move |found: &[Found<'_>]| {
            assert!(
                found.iter().all(|f| f.key != [7u8]),
                "key 7 makes the test fill panic"
            );
            let mut log = log.lock().unwrap();
            log.extend(
                found
                    .iter()
                    .map(|f| (f.key.to_vec(), f.hash, f.epoch, f.value.to_vec())),
            );
        };
        c.start(
            1,
            "test-miss",
            Arc::new(echo),
            Arc::new(fill),
            Box::new(|| ()),
        )
        .unwrap();
        for k in [1u8, 2, 3, 4, 7, 8] {
            let want = (k % 3 != 0).then(|| vec![k; 2]);
            assert_eq!(got(c.fetch(&[k], 100 + u64::from(k), 7)).unwrap(), want);
        }
        // The fill runs after the waiters are woken: wait for the last batch's.
        eventually("key 8 was filled", || {
            filled.lock().unwrap().iter().any(|f| f.0 == [8])
        });
        let log = filled.lock().unwrap().clone();
        let want: Vec<_> = [1u8, 2, 4, 8]
            .iter()
            .map(|&k| (vec![k], 100 + u64::from(k), 7, vec![k; 2]))
            .collect();
        assert_eq!(
            log, want,
            "found values in order; absent 3 and panicking 7's batch not"
        );
        c.close();
    }

    #[test]
    fn a_miss_before_start_is_an_error() {
        let c = Arc::new(MissCombiner::default());
        assert!(c.fetch(&[1], 0, 0).is_err());
        c.close();
    }
}
