//! A multi-producer multi-consumer channel whose blocking ends park green threads.
//!
//! Design: one internal lock over the whole channel state, held for a few instructions per
//! operation and never across a park:
//!
//! ```text
//!   Chan { state: InnerLock<{ queue: VecDeque<T>, capacity: Option<usize>,
//!                             senders, receivers,            // live handle counts
//!                             recv_waiters, send_waiters }> } // FIFO Waiter queues
//! ```
//!
//! - `send` pushes when there is room (always, unbounded) and pops one receive-waiter to wake;
//!   `recv` pops a message and, bounded, one send-waiter to wake. A woken thread always re-checks
//!   the state under the lock, so a message taken by a barging receiver only sends the woken one
//!   back to sleep, and a timed-out waiter that was popped concurrently re-checks before
//!   reporting a timeout (no message or wake-up is lost).
//! - Disconnection: the last `Sender` dropping wakes every receive-waiter; receivers drain what
//!   is queued, then get [`RecvError`]. The last `Receiver` dropping wakes every send-waiter and
//!   drops the queued messages (outside the lock: their `Drop` may do anything); senders get
//!   their message back in [`SendError`].
//! - A woken waiter that finds its message (or slot) taken by a barging thread re-queues at the
//!   front, so no waiter starves behind a stream of newcomers.
//! - `bounded(0)` is treated as capacity 1 (there is no rendezvous mode).
//!
//! The lock makes the channel linearizable and simple to reason about; a green-thread ping-pong
//! costs two uncontended lock round trips per message, well below a park.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use farmem_error::{Error, ErrorKind};

use super::shim::{self, Arc, InnerGuard, InnerLock};
use super::waiter::{deadline_after, Waiter, NOTIFIED, WAITING};

struct State<T> {
    queue: VecDeque<T>,
    capacity: Option<usize>,
    senders: usize,
    receivers: usize,
    recv_waiters: VecDeque<Arc<Waiter>>,
    send_waiters: VecDeque<Arc<Waiter>>,
}

impl<T> State<T> {
    fn has_room(&self) -> bool {
        self.capacity.map_or(true, |c| self.queue.len() < c)
    }
}

struct Chan<T> {
    state: InnerLock<State<T>>,
}

/// The sending half of a channel; clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of a channel; clone it for more consumers (each message goes to one).
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

/// A channel holding at most `capacity` messages: `send` parks while it is full.
/// A `capacity` of 0 is treated as 1.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    new_channel(Some(capacity.max(1)))
}

/// A channel without a capacity limit: `send` never blocks.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new_channel(None)
}

fn new_channel<T>(capacity: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: InnerLock::new(State {
            queue: VecDeque::new(),
            capacity,
            senders: 1,
            receivers: 1,
            recv_waiters: VecDeque::new(),
            send_waiters: VecDeque::new(),
        }),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// Removes `node` from `queue` if still there; `true` if it was (so nobody popped it).
fn unqueue(queue: &mut VecDeque<Arc<Waiter>>, node: &Arc<Waiter>) -> bool {
    match queue.iter().position(|w| Arc::ptr_eq(w, node)) {
        Some(pos) => {
            queue.remove(pos);
            true
        }
        None => false,
    }
}

/// How long a blocking call may park.
#[derive(Clone, Copy)]
enum Block {
    No,
    Forever,
    Until(Instant),
}

/// Which end a blocked call belongs to: it parks in that end's waiter queue.
#[derive(Clone, Copy)]
enum Side {
    Send,
    Recv,
}

impl<T> State<T> {
    fn waiters(&mut self, side: Side) -> &mut VecDeque<Arc<Waiter>> {
        match side {
            Side::Send => &mut self.send_waiters,
            Side::Recv => &mut self.recv_waiters,
        }
    }
}

impl<T> Chan<T> {
    /// Queues the caller in `side`'s waiters, releases `st` and parks until woken or `block`'s
    /// deadline; the caller then re-checks the channel. `false`, without parking, when `block`
    /// allows no (more) waiting: the caller reports "full" or "timed out". `node` is the
    /// caller's waiter, kept across its retries.
    fn park(
        &self,
        mut st: InnerGuard<'_, State<T>>,
        side: Side,
        block: Block,
        node: &mut Option<Arc<Waiter>>,
    ) -> bool {
        let deadline = match block {
            Block::No => return false,
            Block::Forever => None,
            Block::Until(d) if Instant::now() >= d => return false,
            Block::Until(d) => Some(d),
        };
        // A woken waiter that lost its message/slot to a barging thread goes back to the
        // front, so bargers cannot starve it.
        let requeue = node.is_some();
        let n = node.get_or_insert_with(|| Arc::new(Waiter::new())).clone();
        n.reset();
        if requeue {
            st.waiters(side).push_front(n.clone());
        } else {
            st.waiters(side).push_back(n.clone());
        }
        drop(st);
        match deadline {
            None => {
                n.wait();
            }
            Some(d) => {
                if n.wait_until(d) == WAITING && !unqueue(shim::lock(&self.state).waiters(side), &n)
                {
                    // The other end popped the node at the deadline and is about to notify
                    // it; let that land before the node is reset and re-queued.
                    n.wait();
                }
                // Either way the caller re-checks the channel, then times out.
            }
        }
        true
    }
}

impl<T> Sender<T> {
    /// Sends `message`, parking while a bounded channel is full. Fails, giving the message
    /// back, when every [`Receiver`] has been dropped.
    pub fn send(&self, message: T) -> Result<(), SendError<T>> {
        // Blocking forever, the only failure is disconnection (`Full` cannot come back).
        self.send_inner(message, Block::Forever)
            .map_err(|(TrySendError::Full(m) | TrySendError::Disconnected(m))| SendError(m))
    }

    /// Sends without blocking: fails with [`TrySendError::Full`] when there is no room.
    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        self.send_inner(message, Block::No)
    }

    /// Sends, parking at most `timeout` while the channel is full.
    pub fn send_timeout(&self, message: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_inner(message, Block::Until(deadline_after(timeout)))
            .map_err(|e| match e {
                TrySendError::Full(m) => SendTimeoutError::Timeout(m),
                TrySendError::Disconnected(m) => SendTimeoutError::Disconnected(m),
            })
    }

    /// Sends, blocking as `block` allows; `Full` means "still full when allowed to stop".
    fn send_inner(&self, message: T, block: Block) -> Result<(), TrySendError<T>> {
        let mut node: Option<Arc<Waiter>> = None;
        loop {
            let mut st = shim::lock(&self.chan.state);
            if st.receivers == 0 {
                return Err(TrySendError::Disconnected(message));
            }
            if st.has_room() {
                st.queue.push_back(message);
                let wake = st.recv_waiters.pop_front();
                drop(st);
                if let Some(w) = wake {
                    w.notify(NOTIFIED);
                }
                return Ok(());
            }
            if !self.chan.park(st, Side::Send, block, &mut node) {
                return Err(TrySendError::Full(message));
            }
        }
    }

    /// Whether every [`Receiver`] has been dropped (sends would fail).
    pub fn is_disconnected(&self) -> bool {
        shim::lock(&self.chan.state).receivers == 0
    }

    /// Messages queued right now (a snapshot).
    pub fn len(&self) -> usize {
        shim::lock(&self.chan.state).queue.len()
    }

    /// Whether no message is queued right now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity of a bounded channel; `None` when unbounded.
    pub fn capacity(&self) -> Option<usize> {
        shim::lock(&self.chan.state).capacity
    }
}

impl<T> Receiver<T> {
    /// Receives the next message, parking while the channel is empty. Fails once the channel
    /// is empty and every [`Sender`] has been dropped.
    pub fn recv(&self) -> Result<T, RecvError> {
        // Blocking forever, the only failure is disconnection.
        self.recv_inner(Block::Forever).map_err(|_| RecvError)
    }

    /// Receives without blocking.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_inner(Block::No).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Receives, parking at most `timeout` while the channel is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_inner(Block::Until(deadline_after(timeout)))
    }

    /// A blocking iterator over received messages; it ends when the channel disconnects.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { receiver: self }
    }

    /// Receives, blocking as `block` allows; `Timeout` means "still empty when allowed to stop".
    fn recv_inner(&self, block: Block) -> Result<T, RecvTimeoutError> {
        let mut node: Option<Arc<Waiter>> = None;
        loop {
            let mut st = shim::lock(&self.chan.state);
            if let Some(m) = st.queue.pop_front() {
                let wake = st.send_waiters.pop_front();
                drop(st);
                if let Some(w) = wake {
                    w.notify(NOTIFIED);
                }
                return Ok(m);
            }
            if st.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            if !self.chan.park(st, Side::Recv, block, &mut node) {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Whether every [`Sender`] has been dropped (receives fail once the queue is drained).
    pub fn is_disconnected(&self) -> bool {
        shim::lock(&self.chan.state).senders == 0
    }

    /// Messages queued right now (a snapshot).
    pub fn len(&self) -> usize {
        shim::lock(&self.chan.state).queue.len()
    }

    /// Whether no message is queued right now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Blocking iterator of a [`Receiver`] (see [`Receiver::iter`]).
pub struct Iter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        shim::lock(&self.chan.state).senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        shim::lock(&self.chan.state).receivers += 1;
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = shim::lock(&self.chan.state);
        st.senders -= 1;
        if st.senders > 0 {
            return;
        }
        let waiters = std::mem::take(&mut st.recv_waiters);
        drop(st);
        for w in waiters {
            w.notify(NOTIFIED);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = shim::lock(&self.chan.state);
        st.receivers -= 1;
        if st.receivers > 0 {
            return;
        }
        let waiters = std::mem::take(&mut st.send_waiters);
        let undelivered = std::mem::take(&mut st.queue);
        drop(st);
        for w in waiters {
            w.notify(NOTIFIED);
        }
        drop(undelivered);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

const NO_RECEIVERS: &str = "sending on a channel whose receivers have all been dropped; \
     keep a Receiver alive for as long as producers send";
const NO_SENDERS: &str = "receiving on an empty channel whose senders have all been dropped; \
     the producers are done";

/// [`Sender::send`] failed because every receiver is gone; holds the unsent message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// [`Sender::try_send`] failed; holds the unsent message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The bounded channel is full right now.
    Full(T),
    /// Every receiver is gone.
    Disconnected(T),
}

/// [`Sender::send_timeout`] failed; holds the unsent message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// The channel stayed full until the timeout passed.
    Timeout(T),
    /// Every receiver is gone.
    Disconnected(T),
}

/// [`Receiver::recv`] failed: the channel is empty and every sender is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvError;

/// [`Receiver::try_recv`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message is queued right now.
    Empty,
    /// The channel is empty and every sender is gone.
    Disconnected,
}

/// [`Receiver::recv_timeout`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// No message arrived before the timeout passed.
    Timeout,
    /// The channel is empty and every sender is gone.
    Disconnected,
}

impl<T> SendError<T> {
    /// The message that could not be sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NO_RECEIVERS)
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full bounded channel"),
            TrySendError::Disconnected(_) => f.write_str(NO_RECEIVERS),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => {
                f.write_str("sending timed out: the bounded channel stayed full")
            }
            SendTimeoutError::Disconnected(_) => f.write_str(NO_RECEIVERS),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NO_SENDERS)
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => f.write_str(NO_SENDERS),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => {
                f.write_str("receiving timed out: no message arrived in time")
            }
            RecvTimeoutError::Disconnected => f.write_str(NO_SENDERS),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}
impl<T> std::error::Error for TrySendError<T> {}
impl<T> std::error::Error for SendTimeoutError<T> {}
impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Error {
        Error::new(ErrorKind::Closed, e.to_string())
    }
}

impl<T> From<SendTimeoutError<T>> for Error {
    fn from(e: SendTimeoutError<T>) -> Error {
        let kind = match e {
            SendTimeoutError::Timeout(_) => ErrorKind::Timeout,
            SendTimeoutError::Disconnected(_) => ErrorKind::Closed,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        Error::new(ErrorKind::Closed, e.to_string())
    }
}

impl From<RecvTimeoutError> for Error {
    fn from(e: RecvTimeoutError) -> Error {
        let kind = match e {
            RecvTimeoutError::Timeout => ErrorKind::Timeout,
            RecvTimeoutError::Disconnected => ErrorKind::Closed,
        };
        Error::new(kind, e.to_string())
    }
}
