//! Coalesced, pipelined misses of one `RemHashMap` (flat combining, Hendler et al., SPAA'10).
//!
//! ```text
//!   miss ──push──▶ queue [m1 m2 m3 ...]        leaders (≤ MAX_LEADERS, each one green thread)
//!                   │ fewer than MAX_LEADERS?   ┌─ take ≤ COMBINE_BATCH_KEYS from the front
//!                   └─ yes: this miss leads ──▶ │  one get-many round trip (parks)
//!                      no: park until Done      │  hand each waiter its answer, unpark it
//!                          or handed the Lead   └─ again while the queue is non-empty, at most
//!                                                  COMBINE_ROUNDS times, then hand the lead to
//!                                                  the front waiter (or stop: leaders -= 1)
//! ```
//!
//! Every miss waits for one round trip that carries it, and up to `MAX_LEADERS` such trips are
//! out at once: a miss that arrives while a batch is out starts its own batch rather than
//! waiting for the earlier one to come back first (with a single leader a miss waited 1.5 trips
//! on average). Many green threads still share each trip, which is what bounds throughput on a
//! loopback link: a round trip's syscalls and thread hops cost far more than one more key in a
//! frame.
//!
//! The queue's state lives under one mutex; a waiter's answer lands in its own `Miss` and the
//! waiter is woken through its `Unparker` (a token: an unpark before the park is not lost; the
//! park still has a timeout so a bug can cost latency, never a hang). A leader's own miss may be
//! carried by another leader's batch, so after leading a miss waits again until it is answered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use farmem_error::{Error, Result};
use farmem_sched::park::{current_unparker, park_timeout, Unparker};

/// Most keys in one `get-many` batch.
const COMBINE_BATCH_KEYS: usize = 128;
/// Most key bytes in one batch (keeps frames small).
const COMBINE_BATCH_BYTES: usize = 256 << 10;
/// Batches a leader sends before handing the lead to the oldest waiter.
const COMBINE_ROUNDS: usize = 8;
/// Most batches out at once (one per leader).
const MAX_LEADERS: usize = 2;
/// How long a waiting miss parks between checks (a lost wake-up costs at most this).
const COMBINE_TICK: Duration = Duration::from_millis(5);

/// The answer to one miss: the value's bytes, `None` when the key is absent.
pub(super) type MissAnswer = Result<Option<Vec<u8>>>;

/// One `get-many` round trip: the answers to `keys`, in order.
pub(super) type SendBatch<'a> = dyn Fn(&[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> + 'a;

enum MissState {
    Waiting,
    /// This waiter leads now (handed over by a leader that used up its rounds).
    Lead,
    Done(MissAnswer),
}

/// One queued miss: its key, where its answer lands, and who to wake.
struct Miss {
    key: Box<[u8]>,
    state: Mutex<MissState>,
    waker: Unparker,
}

impl Miss {
    fn set(&self, state: MissState) {
        // A poisoned lock still holds a valid `MissState`: overwrite it.
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.waker.unpark();
    }

    fn take(&self) -> MissState {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *st {
            MissState::Waiting => MissState::Waiting,
            _ => std::mem::replace(&mut *st, MissState::Waiting),
        }
    }
}

#[derive(Default)]
struct Queue {
    leaders: usize,
    misses: VecDeque<Arc<Miss>>,
}

/// The miss queue of one map and its counters.
#[derive(Default)]
pub(super) struct MissCombiner {
    queue: Mutex<Queue>,
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

    /// Looks `key` up through `send` (one `get-many` round trip for many keys, answering each
    /// in order), sharing the round trip with concurrent misses.
    pub(super) fn fetch(&self, key: &[u8], send: &SendBatch<'_>) -> MissAnswer {
        let me = Arc::new(Miss {
            key: key.into(),
            state: Mutex::new(MissState::Waiting),
            waker: current_unparker(),
        });
        let mut lead = {
            let mut q = self.queue();
            q.misses.push_back(me.clone());
            let lead = q.leaders < MAX_LEADERS;
            q.leaders += usize::from(lead);
            lead
        };
        loop {
            if lead {
                self.lead(send);
                lead = false;
            }
            match me.take() {
                MissState::Done(r) => return r,
                MissState::Lead => lead = true,
                MissState::Waiting => {
                    park_timeout(COMBINE_TICK);
                }
            }
        }
    }

    /// Sends queued misses in batches until the queue is empty or `COMBINE_ROUNDS` batches went
    /// out, then hands the lead on (or gives it up when nothing is queued).
    fn lead(&self, send: &SendBatch<'_>) {
        for _ in 0..COMBINE_ROUNDS {
            let batch: Vec<Arc<Miss>> = {
                let mut q = self.queue();
                if q.misses.is_empty() {
                    q.leaders -= 1;
                    return;
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
                        m.set(MissState::Done(Ok(v)));
                    }
                }
                Err(e) => {
                    for m in &batch {
                        m.set(MissState::Done(Err(e.clone())));
                    }
                }
            }
        }
        let mut q = self.queue();
        match q.misses.front() {
            Some(next) => next.set(MissState::Lead),
            None => q.leaders -= 1,
        }
    }
}
