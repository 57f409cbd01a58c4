//! GPU paging for farmem: three mechanisms that move memory between a GPU and its host.
//!
//! | module | idea | from |
//! | --- | --- | --- |
//! | [`device`] | one trait over device memory, pinned host memory, streams, events and compute steps; a deterministic simulated device and a CUDA backend (feature `cuda`) | |
//! | [`kv`] | KV-cache block manager: fixed-size blocks, block tables, copy-on-write sharing, prefix caching, swap and recompute | vLLM PagedAttention (SOSP'23) |
//! | [`switch`] | pipelined host→GPU model switching with optimal layer grouping and one pre-allocated pool | PipeSwitch (OSDI'20) |
//! | [`share`] | memory oversubscription between a production and an opportunistic tenant with adaptive rate control | TGS (NSDI'23) |
//!
//! The crate does not depend on the far-memory crates. Errors are farmem's shared
//! [`Error`].

pub mod device;
pub mod kv;
pub mod share;
pub mod switch;

pub use farmem_error::{Error, ErrorKind, Result};
