//! Coalesced misses of one `RemHashMap` (flat combining, Hendler et al., SPAA'10), sent by the
//! map's own sender thread.
//!
//! ```text
//!   green thread: miss ──push──▶ queue [m1 m2 m3 ...] ──(notify if the sender is idle)
//!                 park until its Miss holds an answer
//!   sender thread: loop { wait while the queue is empty;
//!                         take ≤ COMBINE_BATCH_KEYS from the front;
//!                         one get-many round trip (blocks this OS thread only);
//!                         put each answer in its Miss, unpark its waiter }
//! ```
//!
//! Why an OS thread and not a green leader: a green thread that waits on a `TcpBackend` needs
//! the backend's relay thread (one more wake-up per trip) and, while leading, stops issuing
//! its own lookups; an OS sender blocks in the socket read directly and the only wake-ups per
//! trip are the server's and the sender's own. While a batch is out, new misses queue and go
//! in the next batch, taken as soon as the answer is handed out, with no wake-up then; a miss
//! waits about one and a half trips on average. One sender per map: on a loopback link the
//! trips' CPU bounds throughput, so fewer, fuller trips win over more in flight.
//!
//! The queue's state lives under one mutex; a waiter's answer lands in its own `Miss` and the
//! waiter is woken through its `Unparker` (a token: an unpark before the park is not lost; the
//! park still has a timeout so a bug can cost latency, never a hang). The sender exits after
//! [`MissCombiner::close`] once the queue is empty, so no queued miss is left unanswered; the
//! last one to exit runs the map's farewell (the server-side `clear`), so dropping a map never
//! waits for a round trip.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use farmem_error::{Error, Result};
use farmem_sched::park::{current_unparker, park_timeout, Unparker};

/// Most keys in one `get-many` batch.
const COMBINE_BATCH_KEYS: usize = 128;
/// Most key bytes in one batch (keeps frames small).
const COMBINE_BATCH_BYTES: usize = 256 << 10;
/// How long a waiting miss parks between checks (a lost wake-up costs at most this).
const COMBINE_TICK: Duration = Duration::from_millis(5);

/// The answer to one miss: the value's bytes, `None` when the key is absent.
pub(super) type MissAnswer = Result<Option<Vec<u8>>>;

/// One `get-many` round trip: the answers to `keys`, in order.
pub(super) type SendBatch = dyn Fn(&[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> + Send + Sync;

/// What the last sender to exit runs (the map's `clear` on the server).
pub(super) type Farewell = Box<dyn FnOnce() + Send>;

/// One queued miss: its key, where its answer lands, and who to wake.
struct Miss {
    key: Box<[u8]>,
    answer: Mutex<Option<MissAnswer>>,
    waker: Unparker,
}

impl Miss {
    fn set(&self, answer: MissAnswer) {
        // A poisoned lock still holds a valid `Option`: overwrite it.
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
        self.waker.unpark();
    }

    fn take(&self) -> Option<MissAnswer> {
        self.answer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[derive(Default)]
struct Queue {
    misses: VecDeque<Arc<Miss>>,
    /// Senders waiting for misses.
    idle: usize,
    /// The map is gone: senders exit once the queue is empty.
    closed: bool,
    /// Senders still running.
    running: usize,
    /// Run by the last sender to exit.
    farewell: Option<Farewell>,
}

/// The miss queue of one map, its counters, and the condition its senders wait on.
#[derive(Default)]
pub(super) struct MissCombiner {
    queue: Mutex<Queue>,
    work: Condvar,
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

    /// Starts `senders` sender threads that answer the queued misses through `send`; they exit
    /// after [`MissCombiner::close`], and the last one to go runs `farewell`.
    pub(super) fn start(
        self: &Arc<Self>,
        senders: usize,
        name: &str,
        send: Arc<SendBatch>,
        farewell: Farewell,
    ) -> Result<Vec<std::thread::JoinHandle<()>>> {
        {
            let mut q = self.queue();
            q.running += senders;
            q.farewell = Some(farewell);
        }
        (0..senders)
            .map(|i| {
                let (me, send) = (self.clone(), send.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || me.serve(&*send))
                    .map_err(|e| Error::io("spawning a hash map miss sender thread", e))
            })
            .collect()
    }

    /// Lets the senders exit (once nothing is queued).
    pub(super) fn close(&self) {
        self.queue().closed = true;
        self.work.notify_all();
    }

    /// Looks `key` up through the senders, sharing a round trip with concurrent misses; parks
    /// the calling green (or OS) thread until the answer is in.
    pub(super) fn fetch(&self, key: &[u8]) -> MissAnswer {
        let me = Arc::new(Miss {
            key: key.into(),
            answer: Mutex::new(None),
            waker: current_unparker(),
        });
        let wake = {
            let mut q = self.queue();
            if q.closed {
                return Err(Error::internal("hash map miss queue used after close"));
            }
            q.misses.push_back(me.clone());
            q.idle > 0
        };
        if wake {
            self.work.notify_one();
        }
        loop {
            if let Some(r) = me.take() {
                return r;
            }
            park_timeout(COMBINE_TICK);
        }
    }

    /// A sender thread: waits for misses, sends what is queued as one batch, answers it, again.
    fn serve(&self, send: &SendBatch) {
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
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.idle -= 1;
                }
                let mut bytes = 0;
                let mut n = 0;
                for m in q.misses.iter().take(COMBINE_BATCH_KEYS) {
                    if n > 0 && bytes + m.key.len() > COMBINE_BATCH_BYTES {
                        break;
                    }
                    bytes += m.key.len();
                    n += 1;
                }
                q.misses.drain(..n).collect()
            };
            self.batches.fetch_add(1, Ordering::Relaxed);
            let keys: Vec<&[u8]> = batch.iter().map(|m| &*m.key).collect();
            let sent = Instant::now();
            let answers = send(&keys);
            let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.trip_nanos.fetch_add(nanos, Ordering::Relaxed);
            let answers = answers.and_then(|values| {
                if values.len() == batch.len() {
                    Ok(values)
                } else {
                    Err(Error::internal(format!(
                        "hash map miss batch of {} keys got {} answers",
                        batch.len(),
                        values.len()
                    )))
                }
            });
            match answers {
                Ok(values) => {
                    for (m, v) in batch.iter().zip(values) {
                        m.set(Ok(v));
                    }
                }
                Err(e) => {
                    for m in &batch {
                        m.set(Err(e.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Misses from many OS threads are answered with their own key's answer, batched, and the
    /// sender exits after `close`.
    #[test]
    fn answers_every_waiter_and_exits_on_close() {
        let c = Arc::new(MissCombiner::default());
        let send = |keys: &[&[u8]]| -> Result<Vec<Option<Vec<u8>>>> {
            Ok(keys
                .iter()
                .map(|k| (k[0] % 3 != 0).then(|| vec![k[0]; 2]))
                .collect())
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let farewell = Box::new(move || tx.send(()).unwrap_or(()));
        let senders = c.start(2, "test-miss", Arc::new(send), farewell).unwrap();
        let askers: Vec<_> = (0..16u8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        let k = t.wrapping_mul(50).wrapping_add(i);
                        let want = (k % 3 != 0).then(|| vec![k; 2]);
                        assert_eq!(c.fetch(&[k]).unwrap(), want, "key {k}");
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
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(
            rx.try_iter().count(),
            1,
            "the last sender says farewell once"
        );
        assert!(c.fetch(&[1]).is_err(), "a closed queue answers at once");
    }

    #[test]
    fn a_failed_batch_fails_each_of_its_misses() {
        let c = Arc::new(MissCombiner::default());
        let send = |keys: &[&[u8]]| -> Result<Vec<Option<Vec<u8>>>> {
            if keys.iter().any(|k| k.is_empty()) {
                Err(Error::internal("refused"))
            } else {
                Ok(vec![None; keys.len() + 1]) // one answer too many
            }
        };
        let senders = c
            .start(1, "test-miss", Arc::new(send), Box::new(|| ()))
            .unwrap();
        assert!(c.fetch(&[]).unwrap_err().context().contains("refused"));
        assert!(c.fetch(&[1]).unwrap_err().context().contains("answers"));
        c.close();
        for s in senders {
            s.join().unwrap();
        }
    }
}
