//! `farmem.Runtime`: one [`farmem::Session`] (workers, far memory, an embedded memory server by
//! default) behind a Python object, and the close protocol every object made from it follows.
//!
//! # States and who owns what
//!
//! ```text
//!   Runtime ── session: Mutex<Option<Arc<Session>>> ── Some: open   None: closed (for good)
//!           └─ owned:   Mutex<Vec<Weak<dyn Release>>>   objects made from this runtime
//! ```
//!
//! - Every object made from a runtime (containers, DataFrames) holds a `Py<PyRuntime>` (so the
//!   runtime outlives it) and asks [`PyRuntime::session`] for the session on every call; after
//!   `close()` that is `farmem.Closed`.
//! - An object whose far-memory data should go away with the runtime registers a
//!   [`Release`] handle ([`PyRuntime::own`]). `close()` first releases every live one (their
//!   remote objects are freed while the server is still up), then stops the session: workers,
//!   far memory, then the embedded server. A released object answers `Closed` from then on.
//! - `close()` is idempotent; a closed runtime never reopens. Dropping the last reference to a
//!   runtime that was never closed closes it the same way.
//! - `close()` never frees memory under an operation running on another thread (with the GIL
//!   released): a container operation holds its object's lock, which `close()` waits for; an
//!   operation that holds its own `Arc` of the session keeps the session running until it
//!   drops it (then `close()` cannot report the session's last background error).
//!
//! Locks: `close()` takes the runtime's locks and then each owned object's lock, and always with
//! the GIL released (`py.detach`), so a thread that holds an object lock while detached can
//! always finish. `Drop` shuts down with the GIL held, which is safe for the same reason from the
//! other side: it runs only once no object holds the runtime (each holds a `Py<PyRuntime>`), so
//! no object lock can be held then.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use farmem::session::{Session, SessionConfig};
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::errors::{closed, invalid, to_py_err};

/// Something that holds far-memory data of a runtime and drops it when the runtime closes.
pub(crate) trait Release: Send + Sync {
    /// Drops the far-memory data now; later calls on the owner fail with `Closed`.
    fn release(&self);
}

/// A farmem runtime: far memory with a local budget, over an embedded memory server (default)
/// or running `farmem-server`s (several: each container lives on one, placed by power of two
/// choices).
#[pyclass(name = "Runtime", module = "farmem", frozen)]
pub(crate) struct PyRuntime {
    session: Mutex<Option<Arc<Session>>>,
    owned: Mutex<Vec<Weak<dyn Release>>>,
    config: SessionConfig,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data valid, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PyRuntime {
    /// The open session, or `farmem.Closed`.
    pub(crate) fn session(&self) -> PyResult<Arc<Session>> {
        lock(&self.session)
            .as_ref()
            .cloned()
            .ok_or_else(|| closed("farmem.Runtime"))
    }

    /// The embedded server's address while the runtime is open and uses one.
    fn embedded_server(&self) -> Option<String> {
        lock(&self.session)
            .as_ref()
            .and_then(|s| s.embedded_server())
            .map(|a| a.to_string())
    }

    /// Whether `close()` has run.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.session).is_none()
    }

    /// Registers `obj` to be released when this runtime closes (fails with `Closed` if it
    /// already has).
    pub(crate) fn own(&self, obj: Weak<dyn Release>) -> PyResult<()> {
        // Hold the session lock so a concurrent close either sees this object or ran first.
        let session = lock(&self.session);
        if session.is_none() {
            return Err(closed("farmem.Runtime"));
        }
        let mut owned = lock(&self.owned);
        if owned.len() >= 64 && owned.len().is_power_of_two() {
            owned.retain(|w| w.strong_count() > 0);
        }
        owned.push(obj);
        Ok(())
    }

    /// Releases every owned object, then stops the session. Runs without the GIL.
    fn shut_down(&self) -> farmem::Result<()> {
        let session = lock(&self.session).take();
        let owned = std::mem::take(&mut *lock(&self.owned));
        for obj in owned.iter().filter_map(Weak::upgrade) {
            obj.release();
        }
        match session.map(Arc::try_unwrap) {
            Some(Ok(s)) => s.close(),
            // Another thread's operation still holds the session; it stops when that ends.
            Some(Err(_)) | None => Ok(()),
        }
    }
}

impl Drop for PyRuntime {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// Parses a byte size: an int, or a string such as `"64KiB"`, `"1.5GiB"`, `"4GB"`, `"4096"`.
/// Binary units (`K`, `KiB`, `M`, `MiB`, ...) are powers of 1024, SI units (`kB`, `MB`, ...)
/// powers of 1000; units are case-insensitive.
pub(crate) fn parse_size(what: &str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int or a size string like \"256MiB\", not bool"
        )));
    }
    if let Ok(n) = v.extract::<i128>() {
        return u64::try_from(n).map_err(|_| {
            if n < 0 {
                invalid(format!("{what} must not be negative, got {n}"))
            } else {
                PyOverflowError::new_err(format!("{what} of {n} bytes does not fit in 64 bits"))
            }
        });
    }
    let Ok(s) = v.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int or a size string like \"256MiB\", not {}",
            v.get_type().name()?
        )));
    };
    parse_size_str(what, s.to_str()?)
}

fn parse_size_str(what: &str, text: &str) -> PyResult<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num = num.replace('_', "");
    let bad = || {
        invalid(format!(
            "{what} {text:?} is not a size; write an int or a number with a unit, like \"256MiB\""
        ))
    };
    if num.is_empty() {
        return Err(bad());
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(invalid(format!(
                "{what} {text:?} has an unknown unit {other:?}; use B, KiB, MiB, GiB, TiB (or kB, MB, GB, TB)"
            )))
        }
    };
    let bytes = if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| bad())?;
        let b = (f * mult as f64).round();
        if !(0.0..1.8e19).contains(&b) {
            return Err(bad());
        }
        b as u64
    } else {
        let n: u64 = num.parse().map_err(|_| bad())?;
        n.checked_mul(mult).ok_or_else(|| {
            PyOverflowError::new_err(format!("{what} {text:?} does not fit in 64 bits"))
        })?
    };
    Ok(bytes)
}

fn to_usize(what: &str, v: u64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| PyOverflowError::new_err(format!("{what} {v} is too large")))
}

fn count_arg(what: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| invalid(format!("{what} must not be negative, got {v}")))
}

fn format_size(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (u, m) in UNITS {
        if b >= m && b & (m - 1) == 0 {
            return format!("{}{u}", b / m);
        }
    }
    format!("{b}B")
}

/// The `servers=` argument: a list (or other sequence) of `host:port` strings.
fn server_list(list: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let wrong = || -> PyResult<PyErr> {
        Ok(PyTypeError::new_err(format!(
            "servers must be a list of 'host:port' strings, not {} (use server= for one)",
            list.get_type().name()?
        )))
    };
    if list.is_instance_of::<PyString>() || list.is_instance_of::<PyBytes>() {
        return Err(wrong()?);
    }
    match list.extract::<Vec<String>>() {
        Ok(v) => Ok(v),
        Err(_) => Err(wrong()?),
    }
}

#[pymethods]
impl PyRuntime {
    /// Opens a runtime: far memory with `local_memory` of local budget, over an embedded memory
    /// server of `far_memory` (or the `farmem-server`s at `servers`, all with `token`;
    /// `server="host:port"` is short for `servers=["host:port"]`). Without servers, `token` is
    /// the embedded server's token, so other runtimes knowing it may use that server too.
    #[new]
    #[pyo3(signature = (local_memory = None, far_memory = None, server = None, token = None, workers = 0, connections = 2, chunk_size = None, evacuator_threads = 1, *, servers = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        local_memory: Option<&Bound<'_, PyAny>>,
        far_memory: Option<&Bound<'_, PyAny>>,
        server: Option<String>,
        token: Option<&Bound<'_, PyAny>>,
        workers: i64,
        connections: i64,
        chunk_size: Option<&Bound<'_, PyAny>>,
        evacuator_threads: i64,
        servers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyRuntime> {
        let mut config = SessionConfig::default();
        if let Some(v) = local_memory {
            config.local_bytes = to_usize("local_memory", parse_size("local_memory", v)?)?;
        }
        if let Some(v) = far_memory {
            config.far_bytes = parse_size("far_memory", v)?;
        }
        if let Some(v) = chunk_size {
            config.chunk_bytes = to_usize("chunk_size", parse_size("chunk_size", v)?)?;
        }
        config.token = match token {
            None => None,
            Some(t) => {
                if let Ok(b) = t.cast::<PyBytes>() {
                    Some(b.as_bytes().to_vec())
                } else if let Ok(s) = t.cast::<PyString>() {
                    Some(s.to_str()?.as_bytes().to_vec())
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "token must be str or bytes, not {}",
                        t.get_type().name()?
                    )));
                }
            }
        };
        config.servers = match (server, servers) {
            (Some(_), Some(_)) => {
                return Err(PyTypeError::new_err(
                    "give either server= (one address) or servers= (a list), not both",
                ))
            }
            (Some(one), None) => vec![one],
            (None, Some(list)) => server_list(list)?,
            (None, None) => Vec::new(),
        };
        config.workers = count_arg("workers", workers)?;
        config.connections = count_arg("connections", connections)?;
        config.evacuator_threads = count_arg("evacuator_threads", evacuator_threads)?;
        let start = config.clone();
        let session = py
            .detach(move || Session::start(start))
            .map_err(to_py_err)?;
        Ok(PyRuntime {
            session: Mutex::new(Some(Arc::new(session))),
            owned: Mutex::new(Vec::new()),
            config,
        })
    }

    /// Frees every container made from this runtime and stops it. Safe to call twice.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.shut_down()).map_err(to_py_err)
    }

    /// Whether the runtime has been closed.
    #[getter]
    fn closed(&self) -> bool {
        self.is_closed()
    }

    /// Local memory budget, bytes.
    #[getter]
    fn local_memory(&self) -> usize {
        self.config.local_bytes
    }

    /// Capacity of the embedded memory server, bytes.
    #[getter]
    fn far_memory(&self) -> u64 {
        self.config.far_bytes
    }

    /// `host:port` of the memory server (the embedded one's ephemeral port by default); `None`
    /// with several servers (see `servers`) or once an embedded server is closed.
    #[getter]
    fn server(&self) -> Option<String> {
        match self.config.servers.as_slice() {
            [one] => Some(one.clone()),
            [] => self.embedded_server(),
            _ => None,
        }
    }

    /// `host:port` of every memory server far memory uses, in the order given (the embedded
    /// server's alone by default; empty once an embedded server is closed).
    #[getter]
    fn servers(&self) -> Vec<String> {
        if self.config.servers.is_empty() {
            self.embedded_server().into_iter().collect()
        } else {
            self.config.servers.clone()
        }
    }

    /// Far-memory chunk size in bytes (the unit of fetching and evacuation).
    #[getter]
    fn chunk_size(&self) -> PyResult<usize> {
        Ok(self.session()?.far().config().chunk_bytes)
    }

    /// Counters of far memory as a dict: hits, misses, bytes fetched and written back, ...
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.session()?.far().metrics();
        let d = PyDict::new(py);
        for (k, v) in [
            ("hits", m.hits),
            ("misses", m.misses),
            ("bytes_fetched", m.bytes_fetched),
            ("bytes_written_back", m.bytes_written_back),
            ("evacuated_regions", m.evacuated_regions),
            ("objects_moved", m.objects_moved),
            ("objects_dropped", m.objects_dropped),
            ("evacuation_conflicts", m.evacuation_conflicts),
            ("prefetches_issued", m.prefetches_issued),
            ("prefetches_used", m.prefetches_used),
            ("uncached_reads", m.uncached_reads),
            ("write_throughs", m.write_throughs),
            ("writeback_errors", m.writeback_errors),
            ("free_regions", m.free_regions),
            ("total_regions", m.total_regions),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __enter__(slf: Py<PyRuntime>) -> PyResult<Py<PyRuntime>> {
        if slf.get().is_closed() {
            return Err(closed("farmem.Runtime"));
        }
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.is_closed() { "closed" } else { "open" };
        let server = match (self.config.servers.as_slice(), self.embedded_server()) {
            ([], Some(a)) => format!("embedded server {a}"),
            ([], None) => "embedded server".to_string(),
            ([one], _) => format!("server={one:?}"),
            (many, _) => format!("servers={many:?}"),
        };
        format!(
            "<farmem.Runtime {state} local_memory={} far_memory={} {server}>",
            format_size(self.config.local_bytes as u64),
            format_size(self.config.far_bytes),
        )
    }
}
