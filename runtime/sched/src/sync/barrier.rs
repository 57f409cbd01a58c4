//! A reusable barrier: `n` green threads wait until all `n` have arrived, generation after
//! generation.
//!
//! Design: under one internal lock, the number arrived in the current generation, the
//! generation number, and the parked waiters of this generation. The `n`-th arrival is the
//! leader: it starts the next generation (arrived back to 0, generation + 1), takes the waiter
//! list and wakes all of them after releasing the lock. Because a generation's list is taken
//! whole by its own leader, a fast thread that re-enters `wait` for the next generation joins
//! the new list and can never be woken by (or wake) the previous one.

use std::fmt;

use super::shim::{self, Arc, InnerLock};
use super::waiter::{Waiter, NOTIFIED};

struct State {
    arrived: usize,
    generation: u64,
    waiters: Vec<Arc<Waiter>>,
}

/// Blocks `parties` green threads until all have called [`Barrier::wait`]; reusable.
pub struct Barrier {
    parties: usize,
    state: InnerLock<State>,
}

/// What [`Barrier::wait`] returns: whether this thread was the generation's leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
    generation: u64,
}

impl BarrierWaitResult {
    /// `true` for exactly one thread per generation (the last to arrive).
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Which generation this wait belonged to (0 for the first).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Barrier {
    /// A barrier for `parties` threads; 0 is treated as 1 (every wait returns at once).
    pub fn new(parties: usize) -> Barrier {
        Barrier {
            parties: parties.max(1),
            state: InnerLock::new(State {
                arrived: 0,
                generation: 0,
                waiters: Vec::new(),
            }),
        }
    }

    /// How many threads each generation waits for.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Parks until `parties` threads (this one included) have arrived in this generation.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut st = shim::lock(&self.state);
        let generation = st.generation;
        st.arrived += 1;
        if st.arrived == self.parties {
            st.arrived = 0;
            st.generation += 1;
            let waiters = std::mem::take(&mut st.waiters);
            drop(st);
            for w in waiters {
                w.notify(NOTIFIED);
            }
            return BarrierWaitResult {
                leader: true,
                generation,
            };
        }
        let node = Arc::new(Waiter::new());
        st.waiters.push(node.clone());
        drop(st);
        node.wait();
        BarrierWaitResult {
            leader: false,
            generation,
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = shim::lock(&self.state);
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("arrived", &st.arrived)
            .field("generation", &st.generation)
            .finish()
    }
}
