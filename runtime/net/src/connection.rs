//! One pipelined client connection: many requests in flight, responses matched by request id.
//!
//! ```text
//!  every caller thread (green or OS)
//!  ---------------------------------
//!  submit(req):  id = next_id++ ; pending[id] = slot          --- PendingTable (Mutex) ---
//!                append frame to outbox                        --- Outbox (Mutex) ---
//!                if nobody is writing: become the writer and write the whole outbox
//!  wait():       loop {
//!                  slot complete?                     -> return it
//!                  try_lock(reader):   LEADER         -> read the socket, complete every slot a
//!                                                        frame lands in (unparking its waiter),
//!                                                        until our own slot is complete; then
//!                                                        wake one follower to lead next
//!                  else:               FOLLOWER       -> queue as follower, park
//!                }
//! ```
//!
//! Who owns what:
//!
//! - **PendingTable** (`Mutex`): request id → `ResponseSlot`, and `dead`, the error that
//!   killed the connection. Invariant: once `dead` is set no slot is inserted again and every
//!   slot that was in the map has been completed with that error. `submit` checks `dead` and
//!   inserts under the same lock, so no request can be registered after the final drain.
//! - **Outbox** (`Mutex`): bytes queued for the socket and a `writing` flag. Writer coalescing
//!   by flat combining: the submitter that finds `writing == false` writes everything queued,
//!   including frames other threads appended meanwhile, in one `write` per round; everyone else
//!   only appends and returns. No writer thread, so an uncontended request costs no wake-up.
//!   A write that stalls for a tick makes the writer read and dispatch responses itself
//!   (`write_draining`): a caller may queue more than the socket buffers hold before it waits,
//!   and the server only reads on once its responses are read.
//! - **Reader** (`Mutex<FrameAssembler>`): whoever holds it is the *leader* and the only one
//!   reading the socket (leader/follower, as in ACE's half-sync/half-async reactor). A waiter
//!   whose response is not there takes the lock if it is free and reads until its own response
//!   lands, completing other slots on the way; so a lone request costs no thread hop at all
//!   (the far-memory read target is "within 1.5× of raw TCP"), and a pipelining thread finds
//!   most responses already completed by its own reads. Leaving, the leader wakes one queued
//!   follower. The socket has a short read timeout (the *tick*), so a leader notices its own
//!   deadline, and [`FrameAssembler`] keeps partial frames across ticks and across leaders. The
//!   rest of a large body is read with `MSG_WAITALL`: the leader wakes once when the body is in,
//!   not once per arriving segment (a tick still ends the wait, keeping what arrived).
//! - **ResponseSlot** (`Mutex`): the result once it lands, the waiter's
//!   `farmem_sched::park::Unparker`, and whether it is queued as a follower.
//!   Waiters park with `farmem_sched::park::park_timeout`, so on a green thread only that green
//!   thread blocks; followers park at most one tick, so a lost hand-off costs a tick, never a hang.
//!
//! - **BodyPool**: large response bodies are received in place into pooled vectors
//!   ([`crate::inbound`]); [`PendingResponse::wait_frame`] hands the body over undecoded as a
//!   [`ResponseFrame`], which the caller decodes in place (a read's objects are copied once,
//!   from the body to their destination) and which gives the vector back when dropped.
//!
//! Failure: any read or write error, end of stream or protocol violation marks the connection
//! dead and fails every pending slot with [`ErrorKind::Disconnected`] (or the protocol error)
//! at once; later submits fail immediately. Nothing waits forever: every wait also has the
//! configured request timeout ([`ErrorKind::Timeout`]).
//!
//! A leader on a plain OS thread sleeps in `recv`; a leader on a green thread reads with
//! `MSG_DONTWAIT` and parks in its worker's reactor (`farmem_sched::reactor::wait_readable`)
//! between reads, so a miss parks only that green thread and its worker runs others meanwhile
//! (see `lead`). The writer's `write` still blocks its thread, for at most a tick: it only
//! stalls when the socket buffer is full, and then it reads responses itself.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use farmem_error::{Error, ErrorKind, Result};
use farmem_sched::park::{current_unparker, park_timeout, Unparker};

use crate::body_pool::BodyPool;
use crate::frame::{
    push_frame_with, read_frame, Frame, CONNECTION_REQUEST_ID, HEADER_LEN, PROTOCOL_VERSION,
};
use crate::handshake::{Hello, HelloReply, HANDSHAKE_REQUEST_ID};
use crate::inbound::{Fill, FrameAssembler};
use crate::message::{object_spans, ErrorReply, ObjectSpans, Request, Response};
use crate::opcode::Opcode;

/// Largest outbox buffer kept between rounds; a bigger one (after a huge write) is released.
const OUTBOX_KEEP_BYTES: usize = 1 << 20;
/// Longest a leader blocks in one `read`, and a follower in one park, before re-checking its
/// deadline and whether the lead is free.
const MAX_TICK: Duration = Duration::from_millis(20);
/// How long a write may make no progress before the writer drains responses itself.
const WRITE_STALL: Duration = Duration::from_millis(2);

/// Settings of one connection (the client's pool passes its own).
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// The cluster token sent in the handshake.
    pub token: Vec<u8>,
    /// Largest frame body this side sends or accepts; the server's bound also applies.
    pub max_frame_body: u32,
    /// How long one request may wait for its response.
    pub request_timeout: Duration,
    /// How long connecting plus the handshake may take.
    pub connect_timeout: Duration,
}

/// Locks `m`, recovering the data if a thread panicked while holding it: every critical section
/// here leaves the protected state consistent at each step, so poisoning carries no meaning.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where one response lands.
struct ResponseSlot {
    state: Mutex<SlotState>,
}

struct SlotState {
    result: Option<Result<Frame>>,
    waiter: Option<Unparker>,
    /// Whether this slot is in `Shared::followers` (so it is queued at most once).
    queued: bool,
}

impl ResponseSlot {
    fn new() -> ResponseSlot {
        ResponseSlot {
            state: Mutex::new(SlotState {
                result: None,
                waiter: None,
                queued: false,
            }),
        }
    }

    fn complete(&self, result: Result<Frame>) {
        let waiter = {
            let mut s = lock(&self.state);
            s.result = Some(result);
            s.waiter.take()
        };
        if let Some(w) = waiter {
            w.unpark();
        }
    }
}

struct PendingTable {
    slots: HashMap<u64, Arc<ResponseSlot>>,
    dead: Option<Error>,
}

struct ReadSide {
    stream: TcpStream,
    assembler: FrameAssembler,
}

struct Outbox {
    buf: Vec<u8>,
    writing: bool,
}

struct Shared {
    stream: TcpStream,
    /// The read side; its holder is the leader (see the module note).
    reader: Mutex<ReadSide>,
    /// Slots whose waiters parked as followers, oldest first.
    followers: Mutex<VecDeque<Arc<ResponseSlot>>>,
    tick: Duration,
    peer: SocketAddr,
    max_body: u32,
    request_timeout: Duration,
    next_id: AtomicU64,
    pending: Mutex<PendingTable>,
    outbox: Mutex<Outbox>,
    /// Where large response bodies come from and go back to.
    bodies: Arc<BodyPool>,
}

impl Shared {
    /// Marks the connection dead with `err` and fails every pending request with it.
    fn fail_all(&self, err: Error) {
        let slots: Vec<Arc<ResponseSlot>> = {
            let mut p = lock(&self.pending);
            if p.dead.is_none() {
                p.dead = Some(err.clone());
            }
            p.slots.drain().map(|(_, s)| s).collect()
        };
        // Wakes a leader blocked in read() and fails later writes; an error means already shut.
        let _ = self.stream.shutdown(Shutdown::Both);
        for s in slots {
            s.complete(Err(err.clone()));
        }
    }

    fn dead_error(&self) -> Option<Error> {
        lock(&self.pending).dead.clone()
    }

    /// Flat-combining writer: writes the outbox until it is empty, unless another thread is
    /// already the writer (it will pick up what we appended).
    fn flush_outbox<'s>(&'s self, mut outbox: MutexGuard<'s, Outbox>) {
        if outbox.writing {
            return;
        }
        outbox.writing = true;
        let mut batch = Vec::new();
        loop {
            std::mem::swap(&mut batch, &mut outbox.buf);
            drop(outbox);
            let res = self.write_draining(&batch);
            batch.clear();
            if batch.capacity() > OUTBOX_KEEP_BYTES {
                batch = Vec::new();
            }
            outbox = lock(&self.outbox);
            if let Err(e) = res {
                outbox.buf.clear();
                outbox.writing = false;
                drop(outbox);
                self.fail_all(Error::new(
                    ErrorKind::Disconnected,
                    format!("writing to server {}: {e}", self.peer),
                ));
                return;
            }
            if outbox.buf.is_empty() {
                // Hand the (cleared) allocation back for the next round.
                outbox.buf = batch;
                outbox.writing = false;
                return;
            }
        }
    }

    /// Writes all of `data`. The socket has a send timeout of one tick: when a write makes no
    /// progress, the server is probably blocked writing responses nobody reads (a caller that
    /// queues much more than the socket buffers hold before waiting), so the writer reads and
    /// dispatches responses itself until the server reads requests again. Without this, both
    /// ends could block in `write` forever.
    fn write_draining(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            match (&self.stream).write(data) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    self.drain_once();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and dispatches one batch of responses if no leader is reading already (if one is,
    /// it drains for us).
    fn drain_once(&self) {
        let read = match self.reader.try_lock() {
            Ok(r) => r,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let mut read = read;
        // Read everything already here without blocking: we hold the read side and are the
        // only writer, so flipping the (shared) file status flag affects no one else.
        let res = read
            .stream
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the socket nonblocking to drain", e))
            .and_then(|()| {
                while self.read_some(&mut read)? {}
                Ok(())
            })
            .and_then(|()| {
                read.stream
                    .set_nonblocking(false)
                    .map_err(|e| Error::io("making the socket blocking again", e))
            });
        drop(read);
        if let Err(e) = res {
            // Marks the connection dead and shuts the socket, so the next write fails too.
            self.fail_all(e);
        }
        self.hand_off(None);
    }

    /// Completes the slot of one frame the leader read.
    fn dispatch(&self, frame: Frame) -> Result<()> {
        if !frame.header.is_response() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "server {} sent a request frame (opcode {}, id {}) to a client",
                    self.peer, frame.header.opcode, frame.header.request_id
                ),
            ));
        }
        if frame.header.request_id == CONNECTION_REQUEST_ID {
            // The server rejected the connection as a whole (it closes it next).
            return Err(match ErrorReply::decode(&frame.body) {
                Ok(r) => r.into_error(self.peer),
                Err(e) => e,
            });
        }
        let slot = lock(&self.pending).slots.remove(&frame.header.request_id);
        // A missing slot is a request whose waiter timed out or gave up: drop the response.
        if let Some(slot) = slot {
            slot.complete(Ok(frame));
        }
        Ok(())
    }

    /// One `read` (at most a tick long), then every whole frame it completed is dispatched.
    /// Returns whether any bytes arrived (`false`: the read timed out or would block).
    fn read_some(&self, read: &mut ReadSide) -> Result<bool> {
        self.read_some_with(read, Wait::Block)
    }

    /// [`read_some`](Self::read_some) with `how` for the `recv`: [`Wait::Block`] sleeps in it
    /// (up to a tick), [`Wait::DontWait`] returns `false` at once when nothing is there.
    fn read_some_with(&self, read: &mut ReadSide, how: Wait) -> Result<bool> {
        let ReadSide { stream, assembler } = read;
        match assembler.fill_with(|buf, rest_of_body| receive(stream, buf, rest_of_body, how)) {
            Ok(Fill::Idle) => return Ok(false),
            Ok(Fill::Bytes(_)) => {}
            Err(e) => {
                let in_flight = lock(&self.pending).slots.len();
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    format!(
                        "lost the connection to server {} ({in_flight} requests in flight): {e}",
                        self.peer
                    ),
                ));
            }
        }
        while let Some(frame) = assembler.next_frame()? {
            self.dispatch(frame)?;
        }
        Ok(true)
    }

    /// The leader's loop: reads until `mine` is complete, `deadline` passes or the connection
    /// dies (which completes `mine` too).
    ///
    /// A plain OS thread sleeps in `recv` (a lone request costs no thread hop). A green thread
    /// must not: that would block its worker, and every other green thread on it, for the
    /// round trip. It reads without waiting and, when nothing is there, parks in its worker's
    /// reactor until the socket is readable, so the worker runs other green threads meanwhile
    /// (AIFM §4.2: a miss parks only the green thread that missed). It still holds the read side
    /// while parked, so other waiters queue as followers as they would behind a sleeping leader.
    fn lead(&self, read: &mut ReadSide, mine: &ResponseSlot, deadline: Instant) {
        let green = farmem_sched::in_green_thread();
        loop {
            let now = Instant::now();
            if lock(&mine.state).result.is_some() || now >= deadline {
                return;
            }
            let got = if green {
                self.read_some_with(read, Wait::DontWait)
            } else {
                self.read_some(read)
            };
            match got {
                Ok(true) => {}
                Ok(false) if green => {
                    let wait = (deadline - now).min(self.tick);
                    match farmem_sched::reactor::wait_readable(&read.stream, Some(wait)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::Timeout => {}
                        // The reactor could not watch the socket: read blocking, as an OS
                        // thread does (one tick at most), rather than fail the connection.
                        Err(_) => {
                            if let Err(e) = self.read_some(read) {
                                self.fail_all(e);
                                return;
                            }
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    self.fail_all(e);
                    return;
                }
            }
        }
    }

    /// Queues `slot`'s waiter as a follower (once). Lock order: followers, then slot.
    fn enqueue_follower(&self, slot: &Arc<ResponseSlot>) {
        let mut followers = lock(&self.followers);
        let mut s = lock(&slot.state);
        if !s.queued {
            s.queued = true;
            followers.push_back(Arc::clone(slot));
        }
    }

    /// After leading: wakes the oldest follower that is still waiting so it takes the lead.
    fn hand_off(&self, me: Option<&Arc<ResponseSlot>>) {
        let mut followers = lock(&self.followers);
        while let Some(slot) = followers.pop_front() {
            let waiter = {
                let mut s = lock(&slot.state);
                s.queued = false;
                if me.is_some_and(|m| Arc::ptr_eq(&slot, m)) || s.result.is_some() {
                    None
                } else {
                    s.waiter.clone()
                }
            };
            if let Some(w) = waiter {
                drop(followers);
                w.unpark();
                return;
            }
        }
    }
}

/// One `recv` from `stream` into `buf`. For the rest of a large body (`whole`) it passes
/// `MSG_WAITALL`, so the leader sleeps until the whole body is in (one wake-up per response, not
/// one per segment that arrives); the socket's read timeout (the tick) still ends the wait, with
/// the bytes received so far, and on a nonblocking socket it returns what is there. With
/// [`Wait::DontWait`] it never sleeps: it returns what is there, or `WouldBlock`.
fn receive(stream: &TcpStream, buf: &mut [u8], whole: bool, how: Wait) -> std::io::Result<usize> {
    let flags = match (how, whole) {
        (Wait::DontWait, _) => libc::MSG_DONTWAIT,
        (Wait::Block, true) => libc::MSG_WAITALL,
        (Wait::Block, false) => return (&mut &*stream).read(buf),
    };
    // SAFETY: `buf` is a valid, writable allocation of `buf.len()` bytes for the whole call, and
    // the fd is open (borrowed from `stream`, which outlives the call); recv writes at most
    // `buf.len()` bytes into it and touches no other memory.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// How one `recv` of the leader waits for bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Sleep in `recv` up to the socket's read timeout (a tick); for OS threads.
    Block,
    /// `MSG_DONTWAIT`: return `WouldBlock` at once; for green threads, which then park in the
    /// reactor.
    DontWait,
}

/// A request in flight; [`PendingResponse::wait`] parks until its response lands.
pub struct PendingResponse {
    shared: Arc<Shared>,
    id: u64,
    opcode: Opcode,
    slot: Arc<ResponseSlot>,
    done: bool,
}

impl PendingResponse {
    /// The request id (unique on its connection).
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// Parks the calling (green or OS) thread until the response arrives, the connection dies
    /// ([`ErrorKind::Disconnected`]) or the request timeout passes ([`ErrorKind::Timeout`]),
    /// and decodes it into an owned [`Response`].
    pub fn wait(self) -> Result<Response> {
        self.wait_frame()?.decode()
    }

    /// [`wait`](Self::wait), but returns the ok response undecoded, as received, for decoding
    /// in place (an error reply is still an `Err` of its kind).
    pub fn wait_frame(mut self) -> Result<ResponseFrame> {
        let shared = Arc::clone(&self.shared);
        let deadline = Instant::now() + shared.request_timeout;
        let frame = loop {
            {
                let mut s = lock(&self.slot.state);
                if let Some(r) = s.result.take() {
                    break r;
                }
                s.waiter = Some(current_unparker());
            }
            let now = Instant::now();
            if now >= deadline {
                lock(&shared.pending).slots.remove(&self.id);
                // A stale follower entry must not absorb a hand-off.
                lock(&self.slot.state).waiter = None;
                self.done = true;
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} request {} to server {} got no response within {:?}: the server is \
                         overloaded or hung; raise request_timeout or check the server",
                        self.opcode.name(),
                        self.id,
                        shared.peer,
                        shared.request_timeout
                    ),
                ));
            }
            // Queue first, then try to lead: a leader that leaves after our failed try_lock
            // necessarily sees us in the queue (see the module note).
            shared.enqueue_follower(&self.slot);
            let read = match shared.reader.try_lock() {
                Ok(r) => Some(r),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            match read {
                Some(mut read) => {
                    // We read our own response: no need to be unparked for it.
                    lock(&self.slot.state).waiter = None;
                    shared.lead(&mut read, &self.slot, deadline);
                    drop(read);
                    shared.hand_off(Some(&self.slot));
                }
                None => {
                    park_timeout((deadline - now).min(shared.tick));
                }
            }
        };
        self.done = true;
        let frame = ResponseFrame {
            opcode: self.opcode,
            body: frame?.body_if_ok(self.shared.peer)?,
            pool: Arc::clone(&self.shared.bodies),
        };
        Ok(frame)
    }
}

impl Frame {
    /// The body of an ok response; an error reply becomes its `Err`.
    fn body_if_ok(self, peer: SocketAddr) -> Result<Vec<u8>> {
        if self.header.is_error() {
            return Err(ErrorReply::decode(&self.body)?.into_error(peer));
        }
        Ok(self.body)
    }
}

/// An ok response as received, before decoding: [`decode`](Self::decode) it into an owned
/// [`Response`], or locate a read's objects in [`body`](Self::body) with
/// [`object_spans`](Self::object_spans) and copy each one straight to where it belongs. Dropping
/// it gives the body back to its connection's pool.
pub struct ResponseFrame {
    opcode: Opcode,
    body: Vec<u8>,
    pool: Arc<BodyPool>,
}

impl ResponseFrame {
    /// The opcode of the request this answers.
    pub fn opcode(&self) -> Opcode {
        self.opcode
    }

    /// The response body (layout: [`crate::message`]).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Decodes the body into an owned [`Response`] (copying any object bytes).
    pub fn decode(&self) -> Result<Response> {
        Response::decode(self.opcode, &self.body)
    }

    /// Where each object of a read (one entry) or read-batch (one per object asked for) answer
    /// lies in [`body`](Self::body), `None` for a missing object; see
    /// [`object_spans`].
    pub fn object_spans(&self) -> Result<ObjectSpans> {
        object_spans(self.opcode, &self.body)
    }
}

impl Drop for ResponseFrame {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.body));
    }
}

impl std::fmt::Debug for ResponseFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFrame")
            .field("opcode", &self.opcode)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Drop for PendingResponse {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned without waiting: forget the slot so the map does not grow.
            lock(&self.shared.pending).slots.remove(&self.id);
        }
    }
}

/// One TCP connection to a farmem server, shared by any number of threads.
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    /// Connects to `addr`, performs the handshake and starts the reader thread.
    ///
    /// Errors: [`ErrorKind::Auth`] for a wrong token, [`ErrorKind::Protocol`] for a version
    /// mismatch, [`ErrorKind::Io`]/[`ErrorKind::Timeout`]/[`ErrorKind::Disconnected`] when the
    /// server cannot be reached.
    pub fn connect(addr: SocketAddr, config: &ConnectionConfig) -> Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, config.connect_timeout).map_err(|e| {
            Error::from(e).with_context(format!(
                "connecting to farmem server {addr} (is it running and listening there?)"
            ))
        })?;
        let io = |e: std::io::Error| Error::from(e).with_context(format!("server {addr}"));
        stream.set_nodelay(true).map_err(io)?;
        stream
            .set_read_timeout(Some(config.connect_timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(config.connect_timeout))
            .map_err(io)?;

        let mut hello = Vec::with_capacity(HEADER_LEN + 8 + config.token.len());
        push_frame_with(
            &mut hello,
            Opcode::Handshake.as_u8(),
            0,
            HANDSHAKE_REQUEST_ID,
            config.max_frame_body,
            |b| {
                Hello {
                    version: PROTOCOL_VERSION,
                    max_body: config.max_frame_body,
                    token: &config.token,
                }
                .encode(b)
            },
        )?;
        (&stream).write_all(&hello).map_err(io)?;
        let reply = read_frame(&mut &stream, config.max_frame_body)
            .map_err(|e| e.with_context(format!("handshake with server {addr}")))?;
        if reply.header.is_error() {
            return Err(ErrorReply::decode(&reply.body)?.into_error(addr));
        }
        if reply.header.opcode != Opcode::Handshake.as_u8() || !reply.header.is_response() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "server {addr} answered the handshake with opcode {} flags {:#04x}",
                    reply.header.opcode, reply.header.flags
                ),
            ));
        }
        let hello_reply = HelloReply::decode(&reply.body)?;

        let max_body = config.max_frame_body.min(hello_reply.max_body);
        let read_half = stream.try_clone().map_err(io)?;
        // The tick: how long a leader blocks in one read before re-checking its deadline.
        let tick = (config.request_timeout / 4).clamp(Duration::from_millis(1), MAX_TICK);
        // Read and send timeouts apply to the socket (both handles): a leader's read and a
        // writer's write block at most a tick and WRITE_STALL (see `lead`, `write_draining`).
        read_half.set_read_timeout(Some(tick)).map_err(io)?;
        stream
            .set_write_timeout(Some(tick.min(WRITE_STALL)))
            .map_err(io)?;
        let bodies = Arc::new(BodyPool::new());
        let shared = Arc::new(Shared {
            stream,
            reader: Mutex::new(ReadSide {
                stream: read_half,
                assembler: FrameAssembler::with_pool(max_body, Arc::clone(&bodies)),
            }),
            followers: Mutex::new(VecDeque::new()),
            tick,
            peer: addr,
            max_body,
            request_timeout: config.request_timeout,
            next_id: AtomicU64::new(HANDSHAKE_REQUEST_ID + 1),
            pending: Mutex::new(PendingTable {
                slots: HashMap::new(),
                dead: None,
            }),
            outbox: Mutex::new(Outbox {
                buf: Vec::new(),
                writing: false,
            }),
            bodies,
        });
        Ok(Connection { shared })
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The frame body bound in force (the smaller of ours and the server's).
    pub fn max_frame_body(&self) -> u32 {
        self.shared.max_body
    }

    /// Whether the connection has failed (every request on it now fails at once).
    pub fn is_dead(&self) -> bool {
        self.shared.dead_error().is_some()
    }

    /// Number of requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.pending).slots.len()
    }

    /// Queues `req` and returns without waiting; its response is claimed with
    /// [`PendingResponse::wait`]. Many submits before the waits pipeline on the connection.
    pub fn submit(&self, req: &Request<'_>) -> Result<PendingResponse> {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(ResponseSlot::new());
        {
            let mut p = lock(&shared.pending);
            if let Some(e) = &p.dead {
                return Err(e.clone());
            }
            p.slots.insert(id, Arc::clone(&slot));
        }
        let pending = PendingResponse {
            shared: Arc::clone(shared),
            id,
            opcode: req.opcode(),
            slot,
            done: false,
        };
        let mut outbox = lock(&shared.outbox);
        // On error the frame builder leaves the outbox untouched and `pending`'s drop unregisters.
        push_frame_with(
            &mut outbox.buf,
            req.opcode().as_u8(),
            0,
            id,
            shared.max_body,
            |b| req.encode(b),
        )?;
        shared.flush_outbox(outbox);
        Ok(pending)
    }

    /// Sends `req` and parks until its response: [`Connection::submit`] then
    /// [`PendingResponse::wait`].
    pub fn call(&self, req: &Request<'_>) -> Result<Response> {
        self.submit(req)?.wait()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Shuts the socket down too, so a leader blocked in read() returns at once. Pending
        // responses still held by callers keep `Shared` alive and see `Closed`.
        self.shared.fail_all(Error::new(
            ErrorKind::Closed,
            format!("the connection to server {} was closed", self.shared.peer),
        ));
    }
}
