//! The farmem memory server and remote agent.
//!
//! A memory server offers far memory to farmem clients over the protocol of `farmem-net`: it
//! stores objects by (data-structure id, object id) up to a configured capacity
//! ([`store`]), and runs named functions next to the data for the `compute` operation
//! ([`agent`], AIFM's remote agent, OSDI'20 §4.4).
//!
//! Run it as a process (`farmem-server --listen 0.0.0.0:7070 --capacity 2GiB --token-file
//! cluster.token`, or `--config server.toml`, see [`config`]) or embed it:
//!
//! ```
//! use farmem_server::{Server, ServerConfig};
//! use farmem_net::{Client, ClientConfig};
//!
//! let server = Server::start(ServerConfig::new("127.0.0.1:0", 64 << 20, "token")).unwrap();
//! let client = Client::connect(server.addr(), &ClientConfig::new("token")).unwrap();
//! client.create_ds(1, 0).unwrap();
//! client.write(1, 42, b"hello").unwrap();
//! assert_eq!(client.read(1, 42).unwrap().as_deref(), Some(&b"hello"[..]));
//! server.shutdown();
//! ```
//!
//! Threading and shutdown are described in [`server`], the per-connection protocol handling and
//! how bad input is contained in `session`.

pub mod agent;
pub mod columns;
pub mod config;
pub mod hash_index;
mod object_table;
pub mod server;
mod session;
pub mod store;

pub use agent::{FunctionRegistry, RemoteFunction};
pub use config::{parse_size, ServerConfig};
pub use farmem_error::{Error, ErrorKind, Result};
pub use server::{Server, ServerHandle};
pub use store::{Store, StoreView};
