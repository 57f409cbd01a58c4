//! libfarmem: farmem's C ABI (`include/farmem.h`), built as `libfarmem.so` and `libfarmem.a`.
//!
//! # Why a pure C ABI (and no cxx)
//!
//! Every exported function is `extern "C"` over opaque handles, status codes and out-parameters
//! (wasmtime's `crates/c-api`, rustls-ffi), and the C++ API (`include/farmem.hpp`) is
//! header-only RAII over it. cxx was considered for "rich Rust-owned types crossing to C++": its
//! bridge generates a `.cc` file whose symbols must be compiled into the *consumer*, because a
//! `cdylib` exports only `#[no_mangle] extern "C"` symbols and hides the C++ ones of a linked
//! cxx static library. Shipping cxx would therefore mean shipping generated C++ sources plus a
//! build step in every consumer, and a second, C++-only ABI next to the C one that C, Python's
//! ctypes and other languages need anyway. No type here needs it: containers hold plain bytes,
//! results are flat structs and arrays, errors are a status plus a message (what cxx's
//! `rust::Error` would carry). So there is one ABI, checked against the headers by a test.
//!
//! # Invariants every export keeps
//!
//! - **Panic boundary** (`boundary.rs`): every body runs in `ffi_call`; a panic becomes
//!   `FM_PANICKED`, never an unwind into C.
//! - **Handles** (`registry.rs`): a handle is a slot + generation token, never a pointer that is
//!   dereferenced; NULL, stale, forged and wrong-type handles are `FM_INVALID_ARGUMENT`.
//! - **Lifetimes** (`runtime.rs`): every object and call in flight leases its runtime; a
//!   runtime refuses to be destroyed while leased.
//! - **Scopes** (`scope.rs`): an `fm_scope_t` owns its far memory, runs only on its thread and
//!   only with containers of the same far memory.
//! - **Values** (`erased.rs`): elements are bytes copied in and out of `[u8; N]` slots; C never
//!   gets a pointer into far memory.
//!
//! The names in `abi.rs` and of the exports are C's; `drift.rs` compiles bindgen's reading of
//! `include/farmem.h` against them.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
mod array;
mod boundary;
mod container;
mod dataframe;
mod erased;
mod hashmap;
mod list;
mod registry;
mod runtime;
mod scope;
mod stack_queue;
mod tasks;

pub use abi::*;
pub use array::*;
pub use dataframe::*;
pub use hashmap::*;
pub use list::*;
pub use runtime::*;
pub use scope::*;
pub use stack_queue::*;
pub use tasks::*;

#[cfg(test)]
mod drift;
#[cfg(test)]
mod tests;
