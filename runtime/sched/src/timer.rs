//! Per-worker timers: a min-heap of deadlines owned by one worker thread.
//!
//! A green thread that sleeps (or parks or waits on an fd with a timeout) pushes an entry on
//! *its own worker's* heap and suspends; the worker fires due entries at every switch and, when
//! idle, sleeps in its poller no longer than until the earliest deadline. So a sleep never
//! blocks a worker, and no lock is needed: only the owner thread touches the heap.
//!
//! Entries are not removed when the wait ends early (an unpark, an fd event); they carry the
//! wait's sequence number and are ignored when it no longer matches the task's `wait_seq`.
//! The waiter reports such an early end (`note_stale`), and once more than half of a large heap
//! is stale the heap is rebuilt without them, so a loop of short waits with long timeouts
//! cannot grow it without bound (amortised O(1) per wait).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crate::task::Task;

/// What firing an entry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// End a sleep or an fd wait (with `Wake::Timeout`).
    Wake,
    /// End a `park_timeout` if the green thread is still parked.
    ParkTimeout,
}

/// One pending deadline.
pub(crate) struct TimerEntry {
    pub(crate) deadline: Instant,
    pub(crate) seq: u64,
    pub(crate) task: Arc<Task>,
    pub(crate) kind: TimerKind,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and the earliest deadline must come out first;
        // equal deadlines fire in the order they were set.
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// Heaps smaller than this are never compacted (stale entries there cost little).
const COMPACT_MIN: usize = 1024;

/// The timer heap of one worker.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<TimerEntry>,
    stale: usize,
}

impl Timers {
    /// Adds a deadline.
    pub(crate) fn insert(&mut self, deadline: Instant, seq: u64, task: Arc<Task>, kind: TimerKind) {
        self.heap.push(TimerEntry {
            deadline,
            seq,
            task,
            kind,
        });
    }

    /// Whether no deadline is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<TimerEntry> {
        if self.heap.peek()?.deadline <= now {
            self.heap.pop()
        } else {
            None
        }
    }

    /// A wait ended before its timer fired, leaving a stale entry behind.
    pub(crate) fn note_stale(&mut self) {
        self.stale += 1;
        if self.heap.len() >= COMPACT_MIN && self.stale * 2 > self.heap.len() {
            // Only this worker's green threads are in the heap, so their `wait_seq` cells are
            // ours to read.
            self.heap.retain(|e| e.task.wait_seq.get() == e.seq);
            self.stale = 0;
        }
    }

    /// How many entries the heap holds (live or stale).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops every entry (shutdown).
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.stale = 0;
    }
}
