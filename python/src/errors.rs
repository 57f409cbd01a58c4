//! Python exception classes, one per [`farmem::ErrorKind`], and the conversion of a farmem
//! [`Error`](farmem::Error) into the matching Python exception.
//!
//! # The hierarchy
//!
//! ```text
//!   Exception
//!   └── farmem.FarmemError            every farmem failure; `.code` is the C status code
//!       ├── InvalidArgument           also ValueError
//!       ├── OutOfLocalMemory          also MemoryError
//!       ├── OutOfFarMemory            also MemoryError
//!       ├── OutOfDeviceMemory         also MemoryError
//!       ├── Unsupported               also NotImplementedError
//!       ├── IoError                   also OSError
//!       ├── ProtocolError
//!       ├── AuthError                 also PermissionError
//!       ├── ServerError
//!       ├── Disconnected              also ConnectionError
//!       ├── Timeout                   also TimeoutError
//!       ├── NotFound                  also LookupError
//!       ├── Closed                    also RuntimeError
//!       ├── Panicked
//!       ├── ParseError                also ValueError
//!       └── InternalError
//! ```
//!
//! Each class also derives from the built-in exception a Python programmer would catch for that
//! failure, so `except ValueError` keeps working around farmem calls, while `except
//! farmem.FarmemError` catches every farmem failure. `NotFound` is a `LookupError`, not a
//! `KeyError`: `KeyError` quotes its message when printed, and a missing key of a farmem
//! `HashMap` raises a plain `KeyError` anyway (the dict protocol), not `NotFound`. The classes
//! are built once per process (a [`PyOnceLock`]) with `type(name, bases, namespace)`, because
//! PyO3's `create_exception!` allows one base only.
//!
//! The table [`KINDS`] is the one place that names them; a new [`farmem::ErrorKind`] that is
//! missing from it converts to `InternalError` (never a panic), and `test_errors.py` checks
//! that every class is exported.

use farmem::ErrorKind;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// One exception class: its kind, its Python name, the built-in it also derives from, and its
/// docstring.
struct KindClass {
    kind: ErrorKind,
    name: &'static str,
    builtin: Option<&'static str>,
    doc: &'static str,
}

/// Every kind's class, in C status-code order.
const KINDS: [KindClass; 16] = [
    KindClass {
        kind: ErrorKind::InvalidArgument,
        name: "InvalidArgument",
        builtin: Some("ValueError"),
        doc: "An argument was out of range, malformed or inconsistent with others.",
    },
    KindClass {
        kind: ErrorKind::OutOfLocalMemory,
        name: "OutOfLocalMemory",
        builtin: Some("MemoryError"),
        doc: "The local-memory budget is exhausted.",
    },
    KindClass {
        kind: ErrorKind::OutOfFarMemory,
        name: "OutOfFarMemory",
        builtin: Some("MemoryError"),
        doc: "The memory servers have no room left for the data.",
    },
    KindClass {
        kind: ErrorKind::OutOfDeviceMemory,
        name: "OutOfDeviceMemory",
        builtin: Some("MemoryError"),
        doc: "The (real or simulated) GPU has no room left.",
    },
    KindClass {
        kind: ErrorKind::Unsupported,
        name: "Unsupported",
        builtin: Some("NotImplementedError"),
        doc: "The operation needs a feature or hardware this build or machine lacks.",
    },
    KindClass {
        kind: ErrorKind::Io,
        name: "IoError",
        builtin: Some("OSError"),
        doc: "An operating-system call failed.",
    },
    KindClass {
        kind: ErrorKind::Protocol,
        name: "ProtocolError",
        builtin: None,
        doc: "A peer broke the wire protocol.",
    },
    KindClass {
        kind: ErrorKind::Auth,
        name: "AuthError",
        builtin: Some("PermissionError"),
        doc: "The cluster token was wrong or missing.",
    },
    KindClass {
        kind: ErrorKind::ServerError,
        name: "ServerError",
        builtin: None,
        doc: "The memory server reported a failure of its own.",
    },
    KindClass {
        kind: ErrorKind::Disconnected,
        name: "Disconnected",
        builtin: Some("ConnectionError"),
        doc: "A connection was lost or a peer went away.",
    },
    KindClass {
        kind: ErrorKind::Timeout,
        name: "Timeout",
        builtin: Some("TimeoutError"),
        doc: "A deadline passed before the operation finished.",
    },
    KindClass {
        kind: ErrorKind::NotFound,
        name: "NotFound",
        builtin: Some("LookupError"),
        doc: "A named thing (object, function, file) does not exist.",
    },
    KindClass {
        kind: ErrorKind::Closed,
        name: "Closed",
        builtin: Some("RuntimeError"),
        doc: "The runtime (or an object made from it) was already closed.",
    },
    KindClass {
        kind: ErrorKind::Panicked,
        name: "Panicked",
        builtin: None,
        doc: "farmem code panicked; the message carries the panic payload.",
    },
    KindClass {
        kind: ErrorKind::Parse,
        name: "ParseError",
        builtin: Some("ValueError"),
        doc: "The data in a file was malformed (for example a CSV row).",
    },
    KindClass {
        kind: ErrorKind::Internal,
        name: "InternalError",
        builtin: None,
        doc: "An invariant inside farmem was violated: a bug, reported instead of a crash.",
    },
];

/// The base class and one class per entry of [`KINDS`], same order.
struct Classes {
    base: Py<PyType>,
    kinds: Vec<Py<PyType>>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: Bound<'py, PyTuple>,
    doc: &str,
    code: u32,
) -> PyResult<Bound<'py, PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "farmem")?;
    ns.set_item("__doc__", doc)?;
    ns.set_item("code", code)?;
    let ty = py
        .import("builtins")?
        .getattr("type")?
        .call1((name, bases, ns))?;
    Ok(ty.cast_into::<PyType>()?)
}

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let exception = builtins.getattr("Exception")?;
        let base = make_class(
            py,
            "FarmemError",
            PyTuple::new(py, [exception])?,
            "Base class of every farmem failure; `code` is the C status code of its kind (0 here).",
            0,
        )?;
        let mut kinds = Vec::with_capacity(KINDS.len());
        for k in &KINDS {
            let mut bases = vec![base.clone().into_any()];
            if let Some(b) = k.builtin {
                bases.push(builtins.getattr(b)?);
            }
            let ty = make_class(py, k.name, PyTuple::new(py, bases)?, k.doc, k.kind.code())?;
            kinds.push(ty.unbind());
        }
        Ok(Classes {
            base: base.unbind(),
            kinds,
        })
    })
}

/// Adds `FarmemError` and every kind's class to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let c = classes(py)?;
    m.add("FarmemError", c.base.bind(py))?;
    for (k, ty) in KINDS.iter().zip(&c.kinds) {
        m.add(k.name, ty.bind(py))?;
    }
    Ok(())
}

/// The Python class of `kind` (`InternalError` for a kind this table does not know yet).
fn class_of(py: Python<'_>, kind: ErrorKind) -> PyResult<Bound<'_, PyType>> {
    let c = classes(py)?;
    let i = KINDS
        .iter()
        .position(|k| k.kind == kind)
        .or_else(|| KINDS.iter().position(|k| k.kind == ErrorKind::Internal))
        .ok_or_else(|| PyRuntimeError::new_err("farmem: the exception table has no Internal"))?;
    Ok(c.kinds[i].bind(py).clone())
}

/// The Python exception for a farmem error: the class of its kind, with the error's full
/// message (`"closed: ..."`).
pub(crate) fn to_py_err(e: farmem::Error) -> PyErr {
    Python::attach(|py| match class_of(py, e.kind()) {
        Ok(ty) => PyErr::from_type(ty, e.to_string()),
        Err(lookup) => lookup,
    })
}

/// A `farmem.Closed` error saying what was used after its runtime closed.
pub(crate) fn closed(what: &str) -> PyErr {
    to_py_err(farmem::Error::new(
        ErrorKind::Closed,
        format!("{what} was used after its Runtime was closed; open a new farmem.Runtime"),
    ))
}

/// A `farmem.InvalidArgument` (also a `ValueError`) with `msg`.
pub(crate) fn invalid(msg: impl Into<String>) -> PyErr {
    to_py_err(farmem::Error::invalid(msg))
}
