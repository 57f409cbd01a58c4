//! farmem: a far-memory runtime.
//!
//! This facade is the crate applications (and the C and Python bindings) depend on. It
//! re-exports each subsystem under one name:
//!
//! - [`sched`]: green threads (stackful coroutines on M:N workers) that hide far-memory latency.
//! - [`objects`]: object-granular far memory (AIFM): `FarMemory`, `DerefScope`, remote
//!   containers, the in-process and TCP backends.
//! - [`dataframe`]: the columnar DataFrame, local or in far memory (`FarStorage`), and the
//!   nine-step NYC-taxi analysis the `farmem-demo` binary runs.
//! - [`server`]: the memory server and remote agent, embeddable (`Server::start`).
//! - [`net`]: the wire protocol and its pipelined client.
//! - [`gpu`]: GPU paging — the PagedAttention KV-cache block manager, PipeSwitch model
//!   switching and TGS-style oversubscription.
//!
//! - [`session`]: one running instance for an application — workers, far memory and an
//!   embedded memory server — what the C and Python bindings open.
//!
//! Every fallible call returns [`Result`] with farmem's one [`Error`] type.

pub use farmem_dataframe as dataframe;
pub use farmem_error::{Error, ErrorKind, Result};
pub use farmem_gpu as gpu;
pub use farmem_net as net;
pub use farmem_objects as objects;
pub use farmem_sched as sched;
pub use farmem_server as server;
pub mod session;
pub use session::{Session, SessionConfig};
