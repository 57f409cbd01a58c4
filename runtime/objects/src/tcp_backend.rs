//! Far memory over TCP: a [`Backend`] that keeps objects on a `farmem-server` through the
//! pipelined [`farmem_net::Client`] (AIFM's TCP backend, OSDI'20 §5).
//!
//! # Naming on the server
//!
//! The object layer names objects by (`ds: u16`, `obj: u32`); the wire protocol by
//! (`DsId: u64`, `ObjectId: u64`). One server may serve many far-memory instances, so each
//! backend owns a *namespace* (48 bits, distinct per process and instance by default) and maps
//!
//! ```text
//!   server DsId = namespace << 16 | ds          server ObjectId = obj
//! ```
//!
//! A data structure is created on the server (`create-ds`, kind [`OBJECT_CHUNKS_KIND`]) the first
//! time this backend writes to it; a bitmap of the 65,536 possible `ds` ids remembers which exist,
//! so a read of a never-created one answers `NotFound` without a round trip. Creation is
//! idempotent on the server, so two threads racing to create cost one extra round trip, nothing
//! else.
//!
//! # Errors (the same kinds as [`InProcessBackend`](crate::InProcessBackend))
//!
//! | situation                                    | kind                          |
//! | -------------------------------------------- | ----------------------------- |
//! | the server is full (its error reply)         | `OutOfFarMemory`              |
//! | server died / connection reset / EOF         | `Disconnected` (every pending and later call, at once) |
//! | the object or data structure does not exist  | `NotFound`                    |
//! | stored size differs from the requested size  | `InvalidArgument`             |
//! | no response within `request_timeout`         | `Timeout`                     |
//! | our connection object was closed under a call| `Disconnected`                |
//!
//! Every error carries the server address and the object in its context. Nothing retries or
//! reconnects: lost far memory is lost data, which the layer above must decide about.
//!
//! # Waiting, and green threads
//!
//! Every call is a request plus `PendingResponse::wait`, and the client waits through
//! `farmem_sched::park`: on a farmem green thread only that green thread parks while its worker
//! runs others. The waiter that finds the socket's read side free becomes the *leader* and reads
//! until its own response lands; on a green thread it reads without blocking and parks in its
//! worker's reactor between reads (see `farmem_net::connection`), so a miss never blocks the
//! worker and a worker keeps as many fetches in flight as it has green threads (AIFM §4.2).
//!
//! Optionally ([`TcpBackendConfig::green_relay`], off by default) green threads hand their
//! waits to a **relay thread** per connection instead: the green thread submits its request,
//! queues the pending response to the relay and parks; the relay (an OS thread) waits on the
//! responses in submission order, which is the order the server answers a connection in, and
//! unparks each green thread. That keeps socket reads off the workers at the cost of one thread
//! hop per green-thread fetch. It predates the reactor-parked leader, when a green leader blocked
//! its whole worker in `read`; `farmem-bench fetch` runs the green-thread throughput with it
//! (default) or without it (`--no-relay`), and on 2 cores the two measure alike (95K–151K reads
//! per second each, noisy), so it stays an option. OS threads always wait directly (no hop: the
//! lone-request latency stays that of the client).

//! # Batches and prefetching
//!
//! `read_batch` and `write_batch` send one frame per data structure (split to respect the frame
//! bound), all submitted before any is waited on. [`Backend::issue_read`] submits the read and
//! returns at once, so the prefetch issuer keeps as many reads in flight as its batch holds;
//! [`Backend::issue_read_batch`] sends a prefetch batch as one batch-read frame (split to the
//! frame bound) whose response is collected once and shared by the batch's handles.
//!
//! Every read lands with one copy in this process: the client receives a large answer straight
//! into a pooled body ([`farmem_net::ResponseFrame`]), and each object is copied from there into
//! its destination (the object's local memory) after `object_spans` located it, never through
//! an owned per-object vector.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::{
    Client, ClientConfig, Connection, DsId, ObjectSpans, PendingResponse, Request, Response,
    ResponseFrame,
};
use farmem_sched::park::{current_unparker, park_timeout, Unparker};

use crate::backend::{
    Backend, PendingBatchInner, PendingRead, PendingReadInner, ReadRequest, WriteRequest,
};

/// The data-structure kind code this backend creates its structures with on the server.
pub const OBJECT_CHUNKS_KIND: u16 = 0x0b1c;

/// Largest namespace (48 bits: the server id keeps 16 bits for the object layer's `ds`).
const MAX_NAMESPACE: u64 = (1 << 48) - 1;

/// How long a green thread parks between checks of its relayed response (a lost wake-up costs
/// at most this; the relay always unparks).
const RELAY_TICK: Duration = Duration::from_millis(20);

/// Settings of a [`TcpBackend`] (runtime configuration).
#[derive(Clone, Debug)]
pub struct TcpBackendConfig {
    /// The memory server's address (`host:port`).
    pub addr: String,
    /// The cluster token (must equal the server's).
    pub token: Vec<u8>,
    /// Connections to the server (at least 1); more connections means more socket buffers and
    /// relay threads working in parallel.
    pub connections: usize,
    /// How long one request may wait for its response before failing with `Timeout`.
    pub request_timeout: Duration,
    /// This instance's namespace on the server (`None`: one unique to this process and
    /// instance). Two instances given the same namespace see each other's objects.
    pub namespace: Option<u64>,
    /// Relay waits of green threads through a per-connection OS thread (off by default; see
    /// the module note for what it trades).
    pub green_relay: bool,
}

impl TcpBackendConfig {
    /// Defaults (2 connections, 30 s request timeout, a fresh namespace, green relay off).
    pub fn new(addr: impl Into<String>, token: impl Into<Vec<u8>>) -> TcpBackendConfig {
        TcpBackendConfig {
            addr: addr.into(),
            token: token.into(),
            connections: 2,
            request_timeout: Duration::from_secs(30),
            namespace: None,
            green_relay: false,
        }
    }
}

/// A fresh namespace: the process id and a per-process counter, so instances in one process and
/// processes on one machine do not collide on a shared server.
fn fresh_namespace() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ((u64::from(std::process::id()) << 16) ^ n) & MAX_NAMESPACE
}

/// A [`Backend`] keeping objects on a farmem memory server over TCP (see the module note).
pub struct TcpBackend {
    client: Client,
    namespace: u64,
    /// One bit per object-layer `ds`: created on the server.
    created: Box<[AtomicU64]>,
    /// Relay senders, one per connection (empty when the relay is off).
    relays: Vec<Mutex<Sender<RelayJob>>>,
    next: AtomicUsize,
}

impl TcpBackend {
    /// Connects `connections` connections to the server at `addr` with `token`.
    pub fn connect(
        addr: impl Into<String>,
        token: impl Into<Vec<u8>>,
        connections: usize,
    ) -> Result<TcpBackend> {
        let mut config = TcpBackendConfig::new(addr, token);
        config.connections = connections;
        TcpBackend::with_config(&config)
    }

    /// Connects as `config` says.
    pub fn with_config(config: &TcpBackendConfig) -> Result<TcpBackend> {
        let namespace = match config.namespace {
            Some(n) if n > MAX_NAMESPACE => {
                return Err(Error::invalid(format!(
                    "TcpBackendConfig.namespace {n:#x} exceeds 48 bits; pick one below {MAX_NAMESPACE:#x}"
                )))
            }
            Some(n) => n,
            None => fresh_namespace(),
        };
        let client_config = ClientConfig::new(config.token.clone())
            .with_connections(config.connections)
            .with_request_timeout(config.request_timeout);
        let client = Client::connect(config.addr.as_str(), &client_config).map_err(|e| {
            e.with_context(format!("TCP far memory: connecting to {}", config.addr))
        })?;
        let mut relays = Vec::new();
        if config.green_relay {
            for i in 0..client.connections().len() {
                let (tx, rx) = channel();
                std::thread::Builder::new()
                    .name(format!("farmem-tcp-relay-{i}"))
                    .spawn(move || relay_loop(rx))
                    .map_err(|e| Error::io("spawning a TCP far-memory relay thread", e))?;
                relays.push(Mutex::new(tx));
            }
        }
        Ok(TcpBackend {
            client,
            namespace,
            created: (0..(1usize << 16) / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
            relays,
            next: AtomicUsize::new(0),
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.client.addr()
    }

    /// This backend's namespace on the server.
    pub fn namespace(&self) -> u64 {
        self.namespace
    }

    /// The underlying client (for server stats and raw requests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn server_ds(&self, ds: u16) -> DsId {
        self.namespace << 16 | u64::from(ds)
    }

    fn is_created(&self, ds: u16) -> bool {
        self.created[usize::from(ds) / 64].load(Ordering::Acquire) & (1 << (ds % 64)) != 0
    }

    fn ensure_created(&self, ds: u16) -> Result<()> {
        if self.is_created(ds) {
            return Ok(());
        }
        self.client
            .create_ds(self.server_ds(ds), OBJECT_CHUNKS_KIND)
            .map_err(|e| self.fail(e, format!("creating container {ds}")))?;
        self.created[usize::from(ds) / 64].fetch_or(1 << (ds % 64), Ordering::AcqRel);
        Ok(())
    }

    /// Maps a client error onto the object layer's kinds and says where it happened.
    fn fail(&self, e: Error, what: impl std::fmt::Display) -> Error {
        let e = match e.kind() {
            // Only our own drop closes a connection; to a caller the server is gone.
            ErrorKind::Closed => Error::new(ErrorKind::Disconnected, e.context()),
            _ => e,
        };
        e.with_context(format!("TCP far memory at {}: {what}", self.client.addr()))
    }

    /// The connection for the next request and its index: the first live idle one, else the
    /// next live one round robin. Idle-first keeps a lone fetcher on one warm socket (a miss
    /// then costs the round trip of one connection, not of alternating sockets whose reader
    /// side went cold), while concurrent callers and batches still spread over the pool.
    fn pick(&self) -> (usize, &Connection) {
        let conns = self.client.connections();
        if let Some((i, c)) = conns
            .iter()
            .enumerate()
            .find(|(_, c)| c.in_flight() == 0 && !c.is_dead())
        {
            return (i, c);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..conns.len() {
            let i = (start + k) % conns.len();
            if !conns[i].is_dead() {
                return (i, &conns[i]);
            }
        }
        let i = start % conns.len();
        (i, &conns[i])
    }

    /// Sends `req` and waits for its response, undecoded (through the relay on a green thread).
    fn call_frame(&self, req: &Request<'_>) -> Result<ResponseFrame> {
        let (i, conn) = self.pick();
        let pending = conn.submit(req)?;
        match self.relays.get(i) {
            Some(relay) if farmem_sched::in_green_thread() => relayed_wait(relay, pending),
            _ => pending.wait_frame(),
        }
    }

    /// Sends `req` and waits for its decoded response.
    fn call(&self, req: &Request<'_>) -> Result<Response> {
        self.call_frame(req)?.decode()
    }

    fn read_object(&self, ds: u16, obj: u32, buf: &mut [u8]) -> Result<()> {
        if !self.is_created(ds) {
            return Err(not_found(ds, obj));
        }
        let req = Request::Read {
            ds: self.server_ds(ds),
            object: u64::from(obj),
        };
        copy_answer(ds, obj, &self.call_frame(&req)?, buf)
    }
}

fn not_found(ds: u16, obj: u32) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("object ({ds}, {obj}) was never written to this TCP far memory"),
    )
}

fn unexpected(op: &str, resp: &Response) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("the server answered a {op} request with {resp:?}"),
    )
}

/// Copies the object of a read's answer straight from the received body into `buf`.
fn copy_answer(ds: u16, obj: u32, answer: &ResponseFrame, buf: &mut [u8]) -> Result<()> {
    let spans = answer.object_spans()?;
    let found = spans.first().cloned().flatten();
    copy_object(ds, obj, found.map(|r| &answer.body()[r]), buf)
}

/// Copies a read's answer into `buf`, checking the size as the in-process backend does.
fn copy_object(ds: u16, obj: u32, found: Option<&[u8]>, buf: &mut [u8]) -> Result<()> {
    match found {
        Some(data) if data.len() == buf.len() => {
            farmem_net::copy_bytes(buf, data);
            Ok(())
        }
        Some(data) => Err(Error::invalid(format!(
            "object ({ds}, {obj}) has {} bytes on the server, read asked for {}",
            data.len(),
            buf.len()
        ))),
        None => Err(not_found(ds, obj)),
    }
}

impl Backend for TcpBackend {
    fn read(&self, ds: u16, obj: u32, buf: &mut [u8]) -> Result<()> {
        self.read_object(ds, obj, buf)
            .map_err(|e| self.fail(e, format!("reading object ({ds}, {obj})")))
    }

    fn write(&self, ds: u16, obj: u32, data: &[u8]) -> Result<()> {
        self.ensure_created(ds)?;
        let req = Request::Write {
            ds: self.server_ds(ds),
            object: u64::from(obj),
            data,
        };
        match self.call(&req) {
            Ok(Response::Done) => Ok(()),
            Ok(other) => Err(unexpected("write", &other)),
            Err(e) => Err(e),
        }
        .map_err(|e| {
            self.fail(
                e,
                format!("writing object ({ds}, {obj}) of {} bytes", data.len()),
            )
        })
    }

    fn remove(&self, ds: u16, obj: u32) -> Result<()> {
        if !self.is_created(ds) {
            return Ok(());
        }
        let req = Request::Remove {
            ds: self.server_ds(ds),
            object: u64::from(obj),
        };
        match self.call(&req) {
            Ok(Response::Removed(_)) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Ok(other) => Err(unexpected("remove", &other)),
            Err(e) => Err(e),
        }
        .map_err(|e| self.fail(e, format!("removing object ({ds}, {obj})")))
    }

    /// One `create-zeroed` request: the server takes the capacity and shares one zeroed buffer
    /// among the objects, so growing a container sends no zeros (the default wrote them all, and
    /// encoding them held a frame's worth of zeros in the connection's buffer: `farmem-bench
    /// scan`'s client peak RSS over its budget fell from 44 to 9 MiB with this).
    fn create_zeroed(&self, ds: u16, objs: std::ops::Range<u32>, len: usize) -> Result<()> {
        if objs.is_empty() {
            return Ok(());
        }
        let what = || {
            format!(
                "creating objects {}..{} of {ds}, {len} bytes each",
                objs.start, objs.end
            )
        };
        let len32 = u32::try_from(len)
            .map_err(|_| Error::invalid(format!("{}: objects are at most 4 GiB", what())))?;
        self.ensure_created(ds)?;
        let req = Request::CreateZeroed {
            ds: self.server_ds(ds),
            first: u64::from(objs.start),
            count: objs.end - objs.start,
            len: len32,
        };
        match self.call(&req) {
            Ok(Response::Done) => Ok(()),
            Ok(other) => Err(unexpected("create-zeroed", &other)),
            Err(e) => Err(e),
        }
        .map_err(|e| self.fail(e, what()))
    }

    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        // One frame per run of requests of one data structure, every frame sent before any wait.
        let budget = self.frame_budget();
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        let mut bytes = 0usize;
        for (i, r) in reqs.iter().enumerate() {
            let cost = r.buf.len() + 16;
            if i > start && (r.ds != reqs[start].ds || bytes + cost > budget) {
                groups.push((start, i));
                start = i;
                bytes = 0;
            }
            bytes += cost;
        }
        if start < reqs.len() {
            groups.push((start, reqs.len()));
        }
        let mut pending = Vec::with_capacity(groups.len());
        for &(a, b) in &groups {
            let ds = reqs[a].ds;
            if !self.is_created(ds) {
                return Err(self.fail(not_found(ds, reqs[a].obj), "batch read"));
            }
            let req = Request::ReadBatch {
                ds: self.server_ds(ds),
                objects: reqs[a..b].iter().map(|r| u64::from(r.obj)).collect(),
            };
            pending.push(
                self.pick()
                    .1
                    .submit(&req)
                    .map_err(|e| self.fail(e, "submitting a batch read"))?,
            );
        }
        for (p, &(a, b)) in pending.into_iter().zip(&groups) {
            let answer = p
                .wait_frame()
                .map_err(|e| self.fail(e, format!("batch read of {} objects", b - a)))?;
            let spans = batch_spans(&answer, b - a).map_err(|e| self.fail(e, "batch read"))?;
            for (r, span) in reqs[a..b].iter_mut().zip(spans) {
                copy_object(r.ds, r.obj, span.map(|s| &answer.body()[s]), r.buf)
                    .map_err(|e| self.fail(e, "batch read"))?;
            }
        }
        Ok(())
    }

    fn write_batch(&self, reqs: &[WriteRequest<'_>]) -> Result<()> {
        let budget = self.frame_budget();
        let mut pending = Vec::new();
        let mut start = 0;
        while start < reqs.len() {
            let ds = reqs[start].ds;
            let mut end = start;
            let mut bytes = 0usize;
            while end < reqs.len()
                && reqs[end].ds == ds
                && (end == start || bytes + reqs[end].data.len() + 12 <= budget)
            {
                bytes += reqs[end].data.len() + 12;
                end += 1;
            }
            self.ensure_created(ds)?;
            let req = Request::WriteBatch {
                ds: self.server_ds(ds),
                objects: reqs[start..end]
                    .iter()
                    .map(|r| (u64::from(r.obj), r.data))
                    .collect(),
            };
            let n = end - start;
            pending.push((
                n,
                self.pick()
                    .1
                    .submit(&req)
                    .map_err(|e| self.fail(e, "submitting a batch write"))?,
            ));
            start = end;
        }
        let mut first_err = None;
        for (n, p) in pending {
            let r = match p.wait() {
                Ok(Response::Done) => Ok(()),
                Ok(other) => Err(unexpected("write-batch", &other)),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                first_err.get_or_insert(self.fail(e, format!("batch write of {n} objects")));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn issue_read(&self, ds: u16, obj: u32, len: usize) -> Result<PendingRead> {
        if !self.is_created(ds) {
            return Err(self.fail(not_found(ds, obj), "prefetch"));
        }
        let req = Request::Read {
            ds: self.server_ds(ds),
            object: u64::from(obj),
        };
        let pending = self
            .pick()
            .1
            .submit(&req)
            .map_err(|e| self.fail(e, format!("issuing a read of object ({ds}, {obj})")))?;
        Ok(PendingRead::new(Box::new(InFlightRead {
            pending,
            target: PrefetchTarget {
                ds,
                obj,
                len,
                addr: self.client.addr(),
            },
        })))
    }

    fn issue_read_batch(&self, ds: u16, reads: &[(u32, usize)]) -> Result<Vec<PendingRead>> {
        let Some(&(first, _)) = reads.first() else {
            return Ok(Vec::new());
        };
        if !self.is_created(ds) {
            return Err(self.fail(not_found(ds, first), "batch prefetch"));
        }
        // One batch-read frame per run that fits the frame budget, each landed once and shared
        // by its objects' handles.
        let budget = self.frame_budget();
        let mut out = Vec::with_capacity(reads.len());
        let mut start = 0;
        while start < reads.len() {
            let mut end = start;
            let mut bytes = 0usize;
            while end < reads.len() && (end == start || bytes + reads[end].1 + 16 <= budget) {
                bytes += reads[end].1 + 16;
                end += 1;
            }
            let group = &reads[start..end];
            let req = Request::ReadBatch {
                ds: self.server_ds(ds),
                objects: group.iter().map(|&(obj, _)| u64::from(obj)).collect(),
            };
            let pending = self.pick().1.submit(&req).map_err(|e| {
                self.fail(
                    e,
                    format!("issuing a batch read of {} objects of {ds}", group.len()),
                )
            })?;
            let landing: Arc<dyn PendingBatchInner> = Arc::new(BatchLanding {
                state: Mutex::new(LandingState {
                    pending: Some(pending),
                    landed: None,
                }),
                ds,
                objects: group.to_vec(),
                addr: self.client.addr(),
            });
            out.extend((0..group.len()).map(|index| PendingRead::of_batch(landing.clone(), index)));
            start = end;
        }
        Ok(out)
    }

    fn compute(&self, ds: u16, function: &str, args: &[u8]) -> Result<Vec<u8>> {
        self.ensure_created(ds)?;
        let mut full = Vec::with_capacity(8 + args.len());
        full.extend_from_slice(&self.server_ds(ds).to_le_bytes());
        full.extend_from_slice(args);
        self.compute_full(ds, function, &full)
    }

    fn compute_with(&self, ds: u16, with: &[u16], function: &str, args: &[u8]) -> Result<Vec<u8>> {
        let count = u8::try_from(1 + with.len()).map_err(|_| {
            Error::invalid(format!(
                "remote function {function}: {} data structures, at most 255",
                1 + with.len()
            ))
        })?;
        let mut full = Vec::with_capacity(1 + 8 * usize::from(count) + args.len());
        full.push(count);
        for d in std::iter::once(ds).chain(with.iter().copied()) {
            self.ensure_created(d)?;
            full.extend_from_slice(&self.server_ds(d).to_le_bytes());
        }
        full.extend_from_slice(args);
        self.compute_full(ds, function, &full)
    }
}

impl TcpBackend {
    /// Sends a compute request whose arguments already carry the server's ids.
    fn compute_full(&self, ds: u16, function: &str, full: &[u8]) -> Result<Vec<u8>> {
        let req = Request::Compute {
            function,
            args: full,
        };
        match self.call(&req) {
            Ok(Response::Computed(r)) => Ok(r),
            Ok(other) => Err(unexpected("compute", &other)),
            Err(e) => Err(e),
        }
        .map_err(|e| {
            self.fail(
                e,
                format!("remote function {function} on data structure {ds}"),
            )
        })
    }

    /// Payload bytes one batch frame may carry: half the negotiated bound, leaving room for the
    /// per-object framing.
    fn frame_budget(&self) -> usize {
        let bound = self
            .client
            .connections()
            .iter()
            .map(Connection::max_frame_body)
            .min()
            .unwrap_or(farmem_net::DEFAULT_MAX_BODY);
        (bound as usize / 2).max(1)
    }
}

impl std::fmt::Debug for TcpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpBackend")
            .field("addr", &self.client.addr())
            .field("namespace", &self.namespace)
            .field("connections", &self.client.connections().len())
            .field("green_relay", &!self.relays.is_empty())
            .finish()
    }
}

/// The object a prefetch handle collects, and where from.
struct PrefetchTarget {
    ds: u16,
    obj: u32,
    /// Bytes the read was issued for.
    len: usize,
    addr: SocketAddr,
}

impl PrefetchTarget {
    /// Names the object and server in a failure of `action`; a connection closed under the
    /// wait reads as `Disconnected`, like every other lost-server error of this backend.
    fn error(&self, action: &str, e: Error) -> Error {
        let e = match e.kind() {
            ErrorKind::Closed => Error::new(ErrorKind::Disconnected, e.context()),
            _ => e,
        };
        e.with_context(format!(
            "TCP far memory at {}: {action} object ({}, {})",
            self.addr, self.ds, self.obj
        ))
    }

    /// Checks that the collecting buffer is as long as the read was issued for.
    fn check_buf(&self, buf: &[u8]) -> Result<()> {
        if buf.len() == self.len {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "prefetch of object ({}, {}) was issued for {} bytes, collected into {}",
            self.ds,
            self.obj,
            self.len,
            buf.len()
        )))
    }
}

/// A prefetch read on the wire.
struct InFlightRead {
    pending: PendingResponse,
    target: PrefetchTarget,
}

impl PendingReadInner for InFlightRead {
    fn wait(self: Box<Self>, buf: &mut [u8]) -> Result<()> {
        let target = &self.target;
        let ctx = |e: Error| target.error("prefetching", e);
        target.check_buf(buf)?;
        let answer = self.pending.wait_frame().map_err(ctx)?;
        copy_answer(target.ds, target.obj, &answer, buf).map_err(ctx)
    }
}

/// Where the `expected` objects of a batch-read answer lie in its body.
fn batch_spans(answer: &ResponseFrame, expected: usize) -> Result<ObjectSpans> {
    let spans = answer.object_spans()?;
    if spans.len() != expected {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "the server answered a read-batch of {expected} objects with {}",
                spans.len()
            ),
        ));
    }
    Ok(spans)
}

/// One batch-read frame on the wire, shared by the handles of its objects
/// ([`PendingRead::of_batch`], no allocation per object): the first handle waited on collects
/// the response, every handle then takes its own object out of it.
struct BatchLanding {
    state: Mutex<LandingState>,
    ds: u16,
    /// Objects asked for, in order, with the bytes each was issued for (the answer must list
    /// as many).
    objects: Vec<(u32, usize)>,
    addr: SocketAddr,
}

struct LandingState {
    /// The response still to collect (`None` once collected).
    pending: Option<PendingResponse>,
    /// The collected answer as received, and where each object lies in it; each handle copies
    /// its object from there straight into its destination. The body goes back to the
    /// connection's pool when the last handle is done.
    landed: Option<Result<(ResponseFrame, ObjectSpans)>>,
}

impl PendingBatchInner for BatchLanding {
    fn wait_one(&self, index: usize, buf: &mut [u8]) -> Result<()> {
        let Some(&(obj, len)) = self.objects.get(index) else {
            return Err(Error::internal(format!(
                "object {index} of a batch read of {} objects",
                self.objects.len()
            )));
        };
        let target = PrefetchTarget {
            ds: self.ds,
            obj,
            len,
            addr: self.addr,
        };
        let ctx = |e: Error| target.error("batch-prefetching", e);
        target.check_buf(buf)?;
        // The waits of one batch come from one thread in order, so holding the lock across the
        // collection blocks nobody else; a poisoned lock still holds a consistent state.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.landed.is_none() {
            let landed = match state.pending.take() {
                Some(p) => p.wait_frame().and_then(|answer| {
                    let spans = batch_spans(&answer, self.objects.len())?;
                    Ok((answer, spans))
                }),
                None => Err(Error::internal("a batch read was collected twice")),
            };
            state.landed = Some(landed);
        }
        match state.landed.as_ref() {
            Some(Ok((answer, spans))) => {
                let found = spans.get(index).cloned().flatten();
                copy_object(target.ds, target.obj, found.map(|s| &answer.body()[s]), buf)
                    .map_err(ctx)
            }
            Some(Err(e)) => Err(ctx(e.clone())),
            None => Err(ctx(Error::internal("a batch read landed nothing"))),
        }
    }
}

/// Where a relay thread leaves one green thread's response.
struct RelaySlot {
    state: Mutex<RelayState>,
}

struct RelayState {
    result: Option<Result<ResponseFrame>>,
    waiter: Option<Unparker>,
}

struct RelayJob {
    pending: PendingResponse,
    slot: Arc<RelaySlot>,
}

/// A relay thread: waits on queued responses in submission order and wakes their green threads.
/// Exits when the backend (every sender) is gone.
fn relay_loop(jobs: Receiver<RelayJob>) {
    while let Ok(job) = jobs.recv() {
        let result = job.pending.wait_frame();
        let waiter = {
            let mut s = job.slot.state.lock().unwrap_or_else(|p| p.into_inner());
            s.result = Some(result);
            s.waiter.take()
        };
        if let Some(w) = waiter {
            w.unpark();
        }
    }
}

/// Hands `pending` to the relay and parks the calling green thread until its response is in.
fn relayed_wait(
    relay: &Mutex<Sender<RelayJob>>,
    pending: PendingResponse,
) -> Result<ResponseFrame> {
    let slot = Arc::new(RelaySlot {
        state: Mutex::new(RelayState {
            result: None,
            waiter: None,
        }),
    });
    let job = RelayJob {
        pending,
        slot: Arc::clone(&slot),
    };
    let sent = relay.lock().unwrap_or_else(|p| p.into_inner()).send(job);
    if let Err(back) = sent {
        // The relay thread is gone (it cannot be while the backend lives, but never hang).
        return back.0.pending.wait_frame();
    }
    loop {
        {
            // The relay's poisoned lock still holds a consistent slot: recover it.
            let mut s = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = s.result.take() {
                return r;
            }
            s.waiter = Some(current_unparker());
        }
        park_timeout(RELAY_TICK);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_distinct_and_fit_48_bits() {
        let a = fresh_namespace();
        let b = fresh_namespace();
        assert_ne!(a, b);
        assert!(a <= MAX_NAMESPACE && b <= MAX_NAMESPACE);
    }

    #[test]
    fn copy_object_checks_size_and_presence() {
        let mut buf = [0u8; 4];
        copy_object(1, 2, Some(&[1, 2, 3, 4]), &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        let e = copy_object(1, 2, Some(&[1]), &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.context().contains("1 bytes"), "{e}");
        assert_eq!(
            copy_object(1, 2, None, &mut buf).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
