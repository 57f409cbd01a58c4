//! One running farmem instance for an application: green-thread workers, far memory with its
//! local budget, and the memory servers it uses (one embedded in this process by default).
//!
//! Far memory reaches its servers through one backend: the embedded server or a single
//! [`servers`](SessionConfig::servers) entry through a `TcpBackend`; several entries through a
//! [`ShardedBackend`] over one `TcpBackend` per server (all with the same token and
//! [`connections`](SessionConfig::connections) each), which places each data structure on one
//! server by power of two choices (Infiniswap NSDI'17), so a container and the remote functions
//! over it stay together.
//!
//! The C ABI (`ffi/`) and the Python bindings (`python/`) both open a [`Session`]; Rust programs
//! may too, or assemble the parts themselves as `farmem-demo` does. Pieces are torn down in the
//! reverse order they were made: workers first (no green thread touches far memory after), then
//! far memory (its evacuator and connections), then the embedded server.
//!
//! ```
//! use farmem::session::{Session, SessionConfig};
//! let s = Session::start(SessionConfig { local_bytes: 4 << 20, ..SessionConfig::default() })?;
//! let sum = s.runtime().block_on({
//!     let far = s.far().clone();
//!     move || -> farmem::Result<u64> {
//!         let mut a = far.array::<u64>(1000)?;
//!         let scope = far.scope();
//!         for i in 0..1000 {
//!             a.set(i, i as u64, &scope)?;
//!         }
//!         (0..1000).map(|i| a.get(i, &scope).map(|v| *v)).sum()
//!     }
//! })?;
//! assert_eq!(sum, 499_500);
//! # Ok::<(), farmem::Error>(())
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use farmem_dataframe::{FarStorage, MIN_LOCAL_BYTES};
use farmem_error::{Error, Result};
use farmem_objects::{Backend, Config, FarMemory, ShardedBackend, TcpBackend, MAX_SHARDED_SERVERS};
use farmem_sched::Runtime;
use farmem_server::{Server, ServerConfig, ServerHandle};

/// How to open a [`Session`]. `SessionConfig::default()` is a useful start: 256 MiB of local
/// memory, an embedded server of 4 GiB, one worker per core.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionConfig {
    /// Local memory budget for far-memory objects, bytes.
    pub local_bytes: usize,
    /// Capacity of the embedded memory server, bytes (ignored with [`servers`](Self::servers)).
    pub far_bytes: u64,
    /// `host:port` of each running `farmem-server` to use. Empty starts one server inside this
    /// process on 127.0.0.1 (an ephemeral port); one entry uses that server; several spread the
    /// data structures over them (a [`ShardedBackend`], see the module note).
    pub servers: Vec<String>,
    /// The cluster token of [`servers`](Self::servers), the same for all of them (required with
    /// them). Without servers it is the embedded server's token, so other sessions or processes
    /// that know it may use that server too; `None` gives the embedded server a fresh one that
    /// nobody else learns.
    pub token: Option<Vec<u8>>,
    /// TCP connections to each memory server.
    pub connections: usize,
    /// Green-thread worker threads; 0 means one per core.
    pub workers: usize,
    /// Far-memory chunk size, bytes; 0 picks one from the local budget (4 KiB below 4 MiB,
    /// 64 KiB above, as [`FarStorage::config_for`] does).
    pub chunk_bytes: usize,
    /// Evacuator threads (at least 1).
    pub evacuator_threads: usize,
    /// How long a write that needs local memory waits for the evacuator before failing with
    /// `OutOfLocalMemory`; 2 s by default, the object layer's default too: an application's
    /// threads share the machine with the evacuator, and a busy machine should slow a write
    /// down, not fail it.
    pub alloc_wait: std::time::Duration,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            local_bytes: 256 << 20,
            far_bytes: 4 << 30,
            servers: Vec::new(),
            token: None,
            connections: 2,
            workers: 0,
            chunk_bytes: 0,
            evacuator_threads: 1,
            alloc_wait: std::time::Duration::from_secs(2),
        }
    }
}

impl SessionConfig {
    /// The [`servers`](Self::servers) a comma-separated list names (`"h1:p1,h2:p2"`, as the C
    /// ABI's `fm_config_t.server` takes it), each trimmed of spaces. An empty entry stays in
    /// (as `""`) so that [`validate`](Self::validate) rejects it instead of silently using
    /// fewer servers.
    pub fn servers_from_list(list: &str) -> Vec<String> {
        list.split(',').map(|s| s.trim().to_string()).collect()
    }

    /// Checks the fields, with a message naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.local_bytes < MIN_LOCAL_BYTES {
            return Err(Error::invalid(format!(
                "local memory of {} bytes is below the minimum of {MIN_LOCAL_BYTES}; raise local_bytes",
                self.local_bytes
            )));
        }
        if self.servers.is_empty() && self.far_bytes == 0 {
            return Err(Error::invalid(
                "far_bytes is 0: the embedded memory server needs some capacity",
            ));
        }
        if !self.servers.is_empty() && self.token.is_none() {
            return Err(Error::invalid(
                "a remote memory server needs its cluster token; set token",
            ));
        }
        if let Some(bad) = self.servers.iter().find(|s| s.trim().is_empty()) {
            return Err(Error::invalid(format!(
                "servers holds an empty address {bad:?}; give each as host:port"
            )));
        }
        if self.servers.len() > MAX_SHARDED_SERVERS {
            return Err(Error::invalid(format!(
                "servers lists {} memory servers; at most {MAX_SHARDED_SERVERS} are supported",
                self.servers.len()
            )));
        }
        if self.connections == 0 {
            return Err(Error::invalid("connections is 0; use at least 1"));
        }
        if self.evacuator_threads == 0 {
            return Err(Error::invalid("evacuator_threads is 0; use at least 1"));
        }
        if self.chunk_bytes != 0 && !self.chunk_bytes.is_power_of_two() {
            return Err(Error::invalid(format!(
                "chunk_bytes {} is not a power of two (or 0 for the default)",
                self.chunk_bytes
            )));
        }
        Ok(())
    }

    /// The far-memory configuration this session config implies: the DataFrame's choices for
    /// this budget ([`FarStorage::config_for`]: chunk, region and prefetch sizes) with the
    /// session's chunk size, evacuator threads and allocation wait, and far capacity reserved
    /// when a container grows (so a full server is `OutOfFarMemory` at creation, not at a later
    /// write-back) — containers made from a session are general-purpose.
    pub fn far_config(&self) -> Result<Config> {
        let mut c = FarStorage::config_for(self.local_bytes)?;
        if self.chunk_bytes != 0 {
            c.chunk_bytes = self.chunk_bytes;
            c.region_bytes = c.region_bytes.max(self.chunk_bytes * 4);
        }
        c.evacuator_threads = self.evacuator_threads;
        c.alloc_wait = self.alloc_wait;
        c.reserve_far_on_grow = true;
        c.validate()?;
        Ok(c)
    }
}

/// A running farmem instance: workers, far memory and (by default) an embedded memory server.
/// Dropping it (or [`close`](Session::close)) stops them in reverse order.
pub struct Session {
    // Field order is drop order: workers, then far memory, then the server.
    runtime: Option<Runtime>,
    far: Option<Arc<FarMemory>>,
    server: Option<ServerHandle>,
    config: SessionConfig,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("config", &self.config)
            .field("server", &self.server.as_ref().map(|s| s.addr()))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts workers, connects far memory, and starts the embedded server unless
    /// `config.servers` names some.
    pub fn start(config: SessionConfig) -> Result<Session> {
        config.validate()?;
        let far_config = config.far_config()?;
        let (addrs, token, server) = match config.servers.as_slice() {
            [] => {
                let token = match &config.token {
                    Some(t) => t.clone(),
                    None => {
                        format!("farmem-session-{}-{}", std::process::id(), fresh_id()).into_bytes()
                    }
                };
                let server = Server::start(ServerConfig::new(
                    "127.0.0.1:0",
                    config.far_bytes,
                    token.clone(),
                ))
                .map_err(|e| e.with_context("starting the embedded memory server"))?;
                (vec![server.addr().to_string()], token, Some(server))
            }
            addrs => (
                addrs.to_vec(),
                config.token.clone().unwrap_or_default(),
                None,
            ),
        };
        let mut tcp = addrs
            .iter()
            .map(|addr| {
                TcpBackend::connect(addr.as_str(), token.clone(), config.connections)
                    .map(|b| Arc::new(b) as Arc<dyn Backend>)
            })
            .collect::<Result<Vec<_>>>()?;
        let backend: Arc<dyn Backend> = match tcp.len() {
            1 => tcp.remove(0),
            _ => Arc::new(ShardedBackend::new(tcp)?),
        };
        let far = Arc::new(FarMemory::new(far_config, backend)?);
        let mut builder = Runtime::builder().thread_name("farmem-worker");
        if config.workers > 0 {
            builder = builder.workers(config.workers);
        }
        let runtime = builder.build()?;
        Ok(Session {
            runtime: Some(runtime),
            far: Some(far),
            server,
            config,
        })
    }

    /// The green-thread runtime.
    pub fn runtime(&self) -> &Runtime {
        // Only `close` takes it, and it consumes the session.
        self.runtime.as_ref().expect("session is open")
    }

    /// Far memory: containers are made from it (`far().array::<u64>(n)`).
    pub fn far(&self) -> &Arc<FarMemory> {
        self.far.as_ref().expect("session is open")
    }

    /// DataFrame columns in this session's far memory.
    pub fn storage(&self) -> FarStorage {
        FarStorage::from_arc(self.far().clone())
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The embedded server's address, `None` when using remote servers.
    pub fn embedded_server(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.addr())
    }

    /// Stops everything, returning the first background error far memory reported, if any.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        drop(self.runtime.take());
        let err = self.far.as_ref().and_then(|f| f.take_error());
        drop(self.far.take());
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        match err {
            Some(e) => Err(e.with_context("far memory reported a background error")),
            None => Ok(()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn fresh_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ NEXT.fetch_add(1, Ordering::Relaxed).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use farmem_error::ErrorKind;

    #[test]
    fn rejects_bad_configs_with_the_field_named() {
        let cases = [
            (
                SessionConfig {
                    local_bytes: 10,
                    ..SessionConfig::default()
                },
                "local_bytes",
            ),
            (
                SessionConfig {
                    servers: vec!["127.0.0.1:1".into()],
                    ..SessionConfig::default()
                },
                "token",
            ),
            (
                SessionConfig {
                    servers: vec!["127.0.0.1:1".into(), " ".into()],
                    token: Some(b"t".to_vec()),
                    ..SessionConfig::default()
                },
                "servers",
            ),
            (
                SessionConfig {
                    connections: 0,
                    ..SessionConfig::default()
                },
                "connections",
            ),
            (
                SessionConfig {
                    chunk_bytes: 3000,
                    ..SessionConfig::default()
                },
                "chunk_bytes",
            ),
            (
                SessionConfig {
                    far_bytes: 0,
                    ..SessionConfig::default()
                },
                "far_bytes",
            ),
        ];
        for (cfg, field) in cases {
            let e = Session::start(cfg).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains(field), "{e} should name {field}");
        }
    }

    #[test]
    fn containers_and_frames_work_and_close_reports_ok() {
        let s = Session::start(SessionConfig {
            local_bytes: 2 << 20,
            far_bytes: 64 << 20,
            workers: 2,
            ..SessionConfig::default()
        })
        .unwrap();
        assert!(s.embedded_server().is_some());
        let far = s.far().clone();
        // 4 MiB of u64s through a 2 MiB budget: most of it is remote.
        let n = 512 * 1024;
        let total = s
            .runtime()
            .block_on(move || -> Result<u64> {
                let mut v = far.vec::<u64>()?;
                let mut scope = far.scope();
                for i in 0..n {
                    v.push(i, &scope)?;
                    if i % 4096 == 0 {
                        scope.renew();
                    }
                }
                let mut t = 0;
                for i in 0..n as usize {
                    t += *v.get(i, &scope)?;
                    if i % 4096 == 0 {
                        scope.renew();
                    }
                }
                Ok(t)
            })
            .unwrap();
        assert_eq!(total, n * (n - 1) / 2);
        assert!(s.far().metrics().bytes_written_back > 0);
        s.close().unwrap();
    }

    #[test]
    fn a_remote_server_that_is_not_there_is_disconnected_not_a_hang() {
        let e = Session::start(SessionConfig {
            servers: vec!["127.0.0.1:1".into()],
            token: Some(b"t".to_vec()),
            ..SessionConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::Disconnected | ErrorKind::Io | ErrorKind::Timeout
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_comma_list_names_the_servers_and_empty_entries_are_rejected() {
        assert_eq!(
            SessionConfig::servers_from_list("127.0.0.1:1"),
            vec!["127.0.0.1:1".to_string()]
        );
        let servers = SessionConfig::servers_from_list(" a:1, b:2 ,");
        assert_eq!(
            servers,
            vec!["a:1".to_string(), "b:2".into(), String::new()]
        );
        let e = SessionConfig {
            servers,
            token: Some(b"t".to_vec()),
            ..SessionConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("empty address"), "{e}");
    }

    #[test]
    fn several_servers_share_the_containers() {
        // Two sessions' embedded servers, started with a known token, serve a third session.
        let embedded = |far_bytes| {
            Session::start(SessionConfig {
                local_bytes: MIN_LOCAL_BYTES,
                far_bytes,
                token: Some(b"session-multi".to_vec()),
                workers: 1,
                ..SessionConfig::default()
            })
            .unwrap()
        };
        let (a, b) = (embedded(32 << 20), embedded(32 << 20));
        let servers: Vec<String> = [&a, &b]
            .iter()
            .map(|s| s.embedded_server().unwrap().to_string())
            .collect();
        let s = Session::start(SessionConfig {
            local_bytes: 2 << 20,
            servers: servers.clone(),
            token: Some(b"session-multi".to_vec()),
            workers: 2,
            ..SessionConfig::default()
        })
        .unwrap();
        assert_eq!(s.embedded_server(), None);
        let far = s.far().clone();
        // Eight arrays of 1 MiB through a 2 MiB budget: most of it lives on the two servers.
        let (sums, arrays) = s
            .runtime()
            .block_on(
                move || -> Result<(Vec<u64>, Vec<farmem_objects::RemArray<u64>>)> {
                    let mut scope = far.scope();
                    let mut arrays = Vec::new();
                    for k in 0..8u64 {
                        let mut a = far.array::<u64>(128 * 1024)?;
                        let src: Vec<u64> = (0..128 * 1024).map(|i| i * k).collect();
                        a.write_slice(0, &src, &mut scope)?;
                        arrays.push(a);
                    }
                    let sums = arrays
                        .iter()
                        .map(|a| Ok(a.to_vec(&mut scope)?.iter().sum()))
                        .collect::<Result<_>>()?;
                    Ok((sums, arrays))
                },
            )
            .unwrap();
        let n = 128 * 1024u64;
        let want: Vec<u64> = (0..8).map(|k| k * n * (n - 1) / 2).collect();
        assert_eq!(sums, want);
        for (name, server) in [("a", &a), ("b", &b)] {
            let used = server.server.as_ref().unwrap().stats().used_bytes;
            assert!(used > 0, "server {name} holds no data");
        }
        drop(arrays);
        s.close().unwrap();
        // A wrong token is refused by the servers.
        let e = Session::start(SessionConfig {
            local_bytes: MIN_LOCAL_BYTES,
            servers,
            token: Some(b"wrong".to_vec()),
            ..SessionConfig::default()
        })
        .unwrap_err();
        assert_ne!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
}
