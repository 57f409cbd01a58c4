//! The client of one memory server: a small pool of pipelined [`Connection`]s and one typed
//! method per operation.
//!
//! Requests are spread round-robin over the pool (more connections means more reader threads
//! and socket buffers working in parallel; the object layer sizes it with `connections`). A dead
//! connection is skipped while another one is alive; when all are dead every call fails with
//! [`ErrorKind::Disconnected`] at once. Reconnection is not automatic: a lost server means lost
//! far memory, which the layer above must decide how to handle.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};

use crate::connection::{Connection, ConnectionConfig, PendingResponse};
use crate::frame::DEFAULT_MAX_BODY;
use crate::message::{DsId, ObjectId, Request, Response, ServerStats};

/// Client settings (runtime configuration, never compile-time constants).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The cluster token (must equal the server's).
    pub token: Vec<u8>,
    /// Connections to open to the server (at least 1).
    pub connections: usize,
    /// Largest frame body this client sends or accepts.
    pub max_frame_body: u32,
    /// How long one request may wait for its response.
    pub request_timeout: Duration,
    /// How long connecting plus the handshake may take, per connection.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Defaults (2 connections, 64 MiB frames, 30 s request timeout, 5 s connect timeout) with
    /// the given token.
    pub fn new(token: impl Into<Vec<u8>>) -> ClientConfig {
        ClientConfig {
            token: token.into(),
            connections: 2,
            max_frame_body: DEFAULT_MAX_BODY,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The same config with `n` connections.
    pub fn with_connections(mut self, n: usize) -> ClientConfig {
        self.connections = n;
        self
    }

    /// The same config with request timeout `d`.
    pub fn with_request_timeout(mut self, d: Duration) -> ClientConfig {
        self.request_timeout = d;
        self
    }
}

/// A client of one farmem memory server.
pub struct Client {
    addr: SocketAddr,
    connections: Vec<Connection>,
    next: AtomicUsize,
}

fn unexpected(op: &str, resp: Response) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("server answered a {op} request with an unexpected response {resp:?}"),
    )
}

impl Client {
    /// Connects `config.connections` connections to the server at `addr`.
    pub fn connect(addr: impl ToSocketAddrs, config: &ClientConfig) -> Result<Client> {
        if config.connections == 0 {
            return Err(Error::invalid(
                "ClientConfig.connections is 0: a client needs at least one connection",
            ));
        }
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| Error::io("resolving the server address", e))?
            .next()
            .ok_or_else(|| Error::invalid("the server address resolved to nothing"))?;
        let conn_config = ConnectionConfig {
            token: config.token.clone(),
            max_frame_body: config.max_frame_body,
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
        };
        let connections = (0..config.connections)
            .map(|_| Connection::connect(addr, &conn_config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Client {
            addr,
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pool's connections.
    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    /// The next connection in round-robin order, skipping dead ones while a live one exists.
    pub fn connection(&self) -> &Connection {
        let n = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let c = &self.connections[(start + i) % n];
            if !c.is_dead() {
                return c;
            }
        }
        // All dead: any of them answers every request with its Disconnected error.
        &self.connections[start % n]
    }

    /// Queues `req` on the next connection without waiting (pipelining from one thread).
    pub fn submit(&self, req: &Request<'_>) -> Result<PendingResponse> {
        self.connection().submit(req)
    }

    /// Sends `req` and parks until the response.
    pub fn call(&self, req: &Request<'_>) -> Result<Response> {
        self.connection().call(req)
    }

    fn call_done(&self, op: &str, req: &Request<'_>) -> Result<()> {
        match self.call(req)? {
            Response::Done => Ok(()),
            other => Err(unexpected(op, other)),
        }
    }

    /// Round trip with no work on the server.
    pub fn ping(&self) -> Result<()> {
        self.call_done("ping", &Request::Ping)
    }

    /// The server's counters.
    pub fn stats(&self) -> Result<ServerStats> {
        match self.call(&Request::Stats)? {
            Response::Stats(s) => Ok(s),
            other => Err(unexpected("stats", other)),
        }
    }

    /// Creates data structure `ds` of `kind` (idempotent for the same kind; another kind is an
    /// [`ErrorKind::InvalidArgument`] error).
    pub fn create_ds(&self, ds: DsId, kind: u16) -> Result<()> {
        self.call_done("create-ds", &Request::CreateDs { ds, kind })
    }

    /// Destroys data structure `ds`, freeing its objects ([`ErrorKind::NotFound`] if absent).
    pub fn destroy_ds(&self, ds: DsId) -> Result<()> {
        self.call_done("destroy-ds", &Request::DestroyDs { ds })
    }

    /// Reads one object: its bytes, or `None` if it does not exist.
    pub fn read(&self, ds: DsId, object: ObjectId) -> Result<Option<Vec<u8>>> {
        match self.call(&Request::Read { ds, object })? {
            Response::Object(o) => Ok(o),
            other => Err(unexpected("read", other)),
        }
    }

    /// Inserts or replaces one object ([`ErrorKind::OutOfFarMemory`] when the server is full).
    pub fn write(&self, ds: DsId, object: ObjectId, data: &[u8]) -> Result<()> {
        self.call_done("write", &Request::Write { ds, object, data })
    }

    /// Removes one object; returns whether it existed.
    pub fn remove(&self, ds: DsId, object: ObjectId) -> Result<bool> {
        match self.call(&Request::Remove { ds, object })? {
            Response::Removed(b) => Ok(b),
            other => Err(unexpected("remove", other)),
        }
    }

    /// Reads many objects of `ds` in one frame; answers are in the order of `objects`.
    pub fn read_batch(&self, ds: DsId, objects: &[ObjectId]) -> Result<Vec<Option<Vec<u8>>>> {
        let req = Request::ReadBatch {
            ds,
            objects: objects.to_vec(),
        };
        match self.call(&req)? {
            Response::Objects(list) if list.len() == objects.len() => Ok(list),
            other => Err(unexpected("read-batch", other)),
        }
    }

    /// Writes many objects of `ds` in one frame (all or nothing with respect to capacity).
    pub fn write_batch(&self, ds: DsId, objects: &[(ObjectId, &[u8])]) -> Result<()> {
        let req = Request::WriteBatch {
            ds,
            objects: objects.to_vec(),
        };
        self.call_done("write-batch", &req)
    }

    /// Calls the server-side function `function` with `args` and returns its result bytes
    /// ([`ErrorKind::NotFound`] if no such function is registered).
    pub fn compute(&self, function: &str, args: &[u8]) -> Result<Vec<u8>> {
        match self.call(&Request::Compute { function, args })? {
            Response::Computed(r) => Ok(r),
            other => Err(unexpected("compute", other)),
        }
    }
}
