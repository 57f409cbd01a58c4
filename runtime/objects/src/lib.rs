//! farmem's object layer: object-granular far memory (AIFM, OSDI'20) with the compiler enforcing
//! what AIFM only documents.
//!
//! A [`FarMemory`] owns a budget of local memory (a log of fixed-size regions), evacuator threads
//! that keep part of it free without pausing anyone, a stride prefetcher, and a [`Backend`] that
//! holds objects remotely ([`InProcessBackend`] in-process, [`TcpBackend`] on a `farmem-server`).
//! Containers ([`RemArray`], [`RemVec`], [`RemList`] with [`RemStack`] and [`RemQueue`] over it)
//! are built of chunk objects, each named by an 8-byte [`pointer`](mod@pointer) word;
//! [`RemHashMap`] keeps its index on the memory server and caches hot entries locally. Element
//! references come out of a [`DerefScope`] and borrow it, so none can
//! outlive the grace period that keeps the evacuator from moving what a scope is using.
//!
//! ```
//! use farmem_objects::{Config, FarMemory};
//! let fm = FarMemory::in_process(Config::builder().local_bytes(1 << 20).region_bytes(64 << 10).build()?, 64 << 20)?;
//! let mut a = fm.array::<u64>(10_000)?;
//! let scope = fm.scope();
//! a.set(42, 7, &scope)?;
//! assert_eq!(*a.get(42, &scope)?, 7);
//! # Ok::<(), farmem_objects::Error>(())
//! ```
//!
//! Modules, in the order of the data flow: [`pointer`](mod@pointer) (the word), `scope` (the handshake),
//! `region` and `log` (local memory), `memory` (the slow path and the handle), `evacuator`,
//! `prefetch`, `array`, `vec`, `list`, `queue` and `hashmap` (containers), [`backend`] and
//! `tcp_backend`, `config`, `metrics`.

#![deny(unsafe_op_in_unsafe_fn)]

mod array;
pub mod backend;
mod config;
mod evacuator;
mod hashmap;
mod list;
mod log;
mod memory;
mod metrics;
mod object;
mod pod;
pub mod pointer;
mod prefetch;
mod queue;
mod region;
mod scope;
mod sharded;
mod signal;
mod sync;
mod tcp_backend;
mod vec;

pub use array::RemArray;
pub use backend::{
    Backend, InProcessBackend, PendingBatchInner, PendingRead, PendingReadInner, ReadRequest,
    WriteRequest,
};
pub use config::{Config, ConfigBuilder};
pub use farmem_error::{Error, ErrorKind, Result};
pub use hashmap::{HashCacheStats, MapBytes, RemHashMap, ENTRY_OVERHEAD_BYTES};
pub use list::{CursorMut, ListIter, RemList};
pub use memory::FarMemory;
pub use metrics::Metrics;
pub use pod::Pod;
pub use queue::{RemQueue, RemStack};
pub use scope::{in_scope, DerefScope};
pub use sharded::{ShardedBackend, MAX_SHARDED_SERVERS};
pub use tcp_backend::{TcpBackend, TcpBackendConfig};
pub use vec::RemVec;
