//! The listener and the handle: [`Server::start`] binds, spawns the accept thread and returns a
//! [`ServerHandle`] with the bound address and a clean shutdown.
//!
//! Threading: one accept thread, one OS thread per connection (see `session`). A memory server
//! holds few, long-lived connections (clients pool 1–8 per server), so a thread each is cheap,
//! keeps a slow or hostile client from delaying anyone else without any fairness logic, and
//! lets blocking reads wake on `shutdown`. When `farmem-sched`'s reactor lands, a polling loop
//! over nonblocking sockets can replace it without touching the protocol code.
//!
//! Shutdown: set `stopping`, wake the accept thread with a loopback connect, join it, then
//! `shutdown(Both)` every open connection's socket (their blocked reads return) and wait (bounded)
//! until every connection thread has deregistered itself.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::frame::{push_frame, CONNECTION_REQUEST_ID, FLAG_ERROR, FLAG_RESPONSE};
use farmem_net::{ErrorReply, Opcode, ServerStats};

use crate::agent::FunctionRegistry;
use crate::config::ServerConfig;
use crate::session;
use crate::store::Store;

/// How long shutdown waits for connection threads to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map is updated by single insert/remove calls: still consistent after a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// State shared by the accept thread and every connection thread.
pub(crate) struct ServerState {
    pub(crate) config: ServerConfig,
    pub(crate) store: Store,
    pub(crate) functions: FunctionRegistry,
    pub(crate) requests: AtomicU64,
    stopping: AtomicBool,
    open: Mutex<HashMap<u64, TcpStream>>,
    closed: Condvar,
}

impl ServerState {
    pub(crate) fn stats(&self) -> ServerStats {
        ServerStats {
            capacity_bytes: self.store.capacity(),
            used_bytes: self.store.used(),
            data_structures: self.store.ds_count(),
            objects: self.store.object_count(),
            connections: lock(&self.open).len() as u64,
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// The memory server (entry points only; the running server is a [`ServerHandle`]).
pub struct Server;

impl Server {
    /// Starts a server with the built-in remote functions.
    pub fn start(config: ServerConfig) -> Result<ServerHandle> {
        Server::start_with_functions(config, FunctionRegistry::with_builtins())
    }

    /// Starts a server offering `functions` to `compute` requests.
    pub fn start_with_functions(
        config: ServerConfig,
        functions: FunctionRegistry,
    ) -> Result<ServerHandle> {
        config.validate()?;
        let listener = TcpListener::bind(&config.listen)
            .map_err(|e| Error::io(format!("binding the server to {}", config.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let state = Arc::new(ServerState {
            store: Store::new(config.capacity_bytes),
            config,
            functions,
            requests: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            closed: Condvar::new(),
        });
        let accept_state = Arc::clone(&state);
        let acceptor = std::thread::Builder::new()
            .name(format!("farmem-server-accept-{addr}"))
            .spawn(move || accept_loop(listener, accept_state))
            .map_err(|e| Error::io("spawning the accept thread", e))?;
        Ok(ServerHandle {
            addr,
            state,
            acceptor: Some(acceptor),
        })
    }
}

/// A running server. Dropping it shuts the server down.
pub struct ServerHandle {
    addr: SocketAddr,
    state: Arc<ServerState>,
    acceptor: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server is bound to (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters.
    pub fn stats(&self) -> ServerStats {
        self.state.stats()
    }

    /// Blocks until the server stops (for the binary: forever, until killed).
    pub fn wait(mut self) {
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }

    /// Stops accepting, closes every connection and waits for their threads (bounded).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.state.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); it sees `stopping` and returns.
        let wake_ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(wake_ip, self.addr.port()),
            Duration::from_secs(1),
        );
        let _ = acceptor.join();
        let mut open = lock(&self.state.open);
        for s in open.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while !open.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            open = self
                .state
                .closed
                .wait_timeout(open, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes a connection from the open map when its thread ends, even by panic.
struct OpenGuard<'a> {
    state: &'a ServerState,
    id: u64,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        lock(&self.state.open).remove(&self.id);
        self.state.closed.notify_all();
    }
}

fn accept_loop(listener: TcpListener, state: Arc<ServerState>) {
    let mut next_id = 0u64;
    for incoming in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = incoming else {
            // EMFILE and friends: back off briefly rather than spin, then keep serving.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        {
            let mut open = lock(&state.open);
            if open.len() >= state.config.max_connections {
                drop(open);
                refuse(stream, state.config.max_connections);
                continue;
            }
            next_id += 1;
            open.insert(next_id, registered);
        }
        let id = next_id;
        let conn_state = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name(format!("farmem-server-conn-{id}"))
            .spawn(move || {
                let _guard = OpenGuard {
                    state: &conn_state,
                    id,
                };
                session::serve(stream, &conn_state);
            });
        if spawned.is_err() {
            // The closure (and its stream) was dropped: the client sees the close.
            lock(&state.open).remove(&id);
        }
    }
}

fn refuse(mut stream: TcpStream, max: usize) {
    let mut body = Vec::new();
    ErrorReply {
        kind: ErrorKind::ServerError,
        message: format!(
            "the server already has {max} connections (max_connections): close some or raise \
             the limit"
        ),
    }
    .encode(&mut body);
    let mut frame = Vec::new();
    push_frame(
        &mut frame,
        Opcode::Handshake.as_u8(),
        FLAG_RESPONSE | FLAG_ERROR,
        CONNECTION_REQUEST_ID,
        &body,
    );
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = stream.write_all(&frame);
}
