//! Green threads for farmem (under construction: see the module notes as they land).

pub mod park;
pub mod sync;

pub use farmem_error::{Error, ErrorKind, Result};
