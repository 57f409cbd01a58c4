//! farmem: a far-memory runtime.
//!
//! This facade is the crate applications (and the C and Python bindings) depend on. It
//! re-exports each subsystem under one name:
//!
//! - [`sched`]: green threads (stackful coroutines on M:N workers) that hide far-memory latency.
//! - [`gpu`]: GPU paging — the PagedAttention KV-cache block manager, PipeSwitch model
//!   switching and TGS-style oversubscription.
//!
//! Every fallible call returns [`Result`] with farmem's one [`Error`] type.

pub use farmem_error::{Error, ErrorKind, Result};
pub use farmem_gpu as gpu;
pub use farmem_sched as sched;
