//! Fixtures the objects integration tests share: the small local-memory configuration that
//! forces evacuation with little data, an embedded memory server on 127.0.0.1:0 and a
//! `TcpBackend` to a server. Each test file passes its own token, so a client of one file can
//! never authenticate against another file's server.

// Each test file is its own crate and uses only some of these fixtures.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use farmem_objects::{Config, ConfigBuilder, TcpBackend, TcpBackendConfig};
use farmem_server::{Server, ServerConfig, ServerHandle};

/// 8 regions of 16 KiB = 128 KiB local, 1 KiB chunks, 2 allocation shards, prefetch depth 4;
/// writes wait up to 2 s for local memory. Tests adjust a setter before `build()`.
pub fn small_local_builder() -> ConfigBuilder {
    Config::builder()
        .local_bytes(8 * (16 << 10))
        .region_bytes(16 << 10)
        .chunk_bytes(1024)
        .alloc_shards(2)
        .prefetch_depth(4)
        .alloc_wait(Duration::from_secs(2))
        .grace_timeout(Duration::from_millis(50))
}

/// [`small_local_builder`] as is.
pub fn small_local() -> Config {
    small_local_builder().build().unwrap()
}

/// An embedded memory server of `capacity` bytes on 127.0.0.1:0 that accepts `token`.
pub fn start_server(capacity: u64, token: &str) -> ServerHandle {
    Server::start(ServerConfig::new("127.0.0.1:0", capacity, token)).unwrap()
}

/// A `TcpBackend` to the server at `addr` with `token` and a 10 s request timeout.
pub fn tcp_backend(addr: &str, token: &str) -> Arc<TcpBackend> {
    let mut c = TcpBackendConfig::new(addr, token);
    c.request_timeout = Duration::from_secs(10);
    Arc::new(TcpBackend::with_config(&c).unwrap())
}
