//! `farmem._farmem`: the Python extension module under `import farmem` (maturin's mixed
//! layout: `python/farmem/__init__.py` re-exports everything defined here).
//!
//! What lives where: `errors` (one exception class per `farmem::ErrorKind`), `runtime`
//! (`farmem.Runtime` and the close protocol every object made from a runtime follows),
//! `containers_*` (remote arrays, vectors, lists, stacks, queues and hash maps with Python's
//! protocols and numpy bulk copies), `dataframe` (`farmem.DataFrame`). The bindings see only the
//! facade crate `farmem`, as the C ABI does.

use pyo3::prelude::*;

mod containers;
mod containers_dtype;
mod containers_list;
mod containers_map;
mod containers_seq;
mod dataframe;
mod errors;
mod runtime;

pub(crate) use runtime::PyRuntime;

/// The extension module `farmem._farmem`.
#[pymodule]
fn _farmem(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<PyRuntime>()?;
    containers_seq::register(m)?;
    containers_list::register(m)?;
    containers_map::register(m)?;
    dataframe::register(m)?;
    Ok(())
}
