//! `farmem.HashMap`: a dict-like map whose index lives on the memory server (the object layer's
//! `RemHashMap`, AIFM's remote agent), with a bounded cache of hot entries in local memory.
//!
//! # Keys, values and their bytes
//!
//! The server stores bytes, so a map is typed at creation: `key="int"` (a signed 64-bit int,
//! stored as 8 little-endian bytes) or `key="bytes"`; `value="int"` (i64), `"float"` (f64) or
//! `"bytes"`. A key or value of another type is `TypeError`, an int outside i64 `OverflowError`
//! (`in` answers False for a key of the wrong type, as `dict` does for a key it cannot hold).
//! `bytes` keys and values also take `bytearray` and `memoryview`; `str` must be encoded first
//! (so which encoding is the caller's decision). Bools are ints (`True` is the key 1, as in a
//! dict).
//!
//! # What a dict does that this map does not
//!
//! The server's index has no key enumeration (it answers get, put, remove and count only), so
//! `iter()`, `keys()`, `values()` and `items()` raise `TypeError` rather than pretend. `len()`
//! is one round trip (the server keeps the count). Every write goes through to the server
//! before it returns (the cache never holds the only copy).

use std::sync::Arc;

use farmem::objects::RemHashMap;
use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyMemoryView, PyTuple};

use crate::containers::Held;
use crate::errors::{invalid, to_py_err};
use crate::runtime::{parse_size, PyRuntime};

/// Default local cache of a map: 1 MiB.
const DEFAULT_CACHE_BYTES: u64 = 1 << 20;

/// The Python type of a map's keys or values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bytes,
}

impl Kind {
    fn parse(what: &str, s: &str, allow_float: bool) -> PyResult<Kind> {
        match s {
            "int" => Ok(Kind::Int),
            "bytes" => Ok(Kind::Bytes),
            "float" if allow_float => Ok(Kind::Float),
            _ => Err(invalid(format!(
                "{what} type {s:?} is not supported; use {}",
                if allow_float {
                    "\"int\", \"float\" or \"bytes\""
                } else {
                    "\"int\" or \"bytes\""
                }
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Bytes => "bytes",
        }
    }

    /// The stored bytes of `v`: `Ok(None)` when `v` is not of this kind.
    fn encode(self, v: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
        match self {
            Kind::Int => {
                if v.is_instance_of::<PyFloat>() {
                    return Ok(None);
                }
                let Ok(wide) = v.extract::<i128>() else {
                    return Ok(None);
                };
                let n = i64::try_from(wide).map_err(|_| {
                    PyOverflowError::new_err(format!(
                        "{wide} does not fit an int key or value of a farmem.HashMap (64-bit signed)"
                    ))
                })?;
                Ok(Some(n.to_le_bytes().to_vec()))
            }
            Kind::Float => {
                if v.is_instance_of::<PyBytes>() || v.is_instance_of::<pyo3::types::PyString>() {
                    return Ok(None);
                }
                Ok(v.extract::<f64>().ok().map(|f| f.to_le_bytes().to_vec()))
            }
            Kind::Bytes => {
                if let Ok(b) = v.cast::<PyBytes>() {
                    Ok(Some(b.as_bytes().to_vec()))
                } else if let Ok(b) = v.cast::<PyByteArray>() {
                    Ok(Some(b.to_vec()))
                } else if v.is_instance_of::<PyMemoryView>() {
                    Ok(Some(v.call_method0("tobytes")?.extract::<Vec<u8>>()?))
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// `encode`, with `TypeError` for a value of another kind.
    fn require(self, what: &str, v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        self.encode(v)?.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "this farmem.HashMap has {} {what}s, not {}",
                self.name(),
                v.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })
    }

    fn decode(self, py: Python<'_>, b: &[u8]) -> PyResult<Py<PyAny>> {
        let fixed = |b: &[u8]| -> PyResult<[u8; 8]> {
            b.try_into().map_err(|_| {
                to_py_err(farmem::Error::internal(format!(
                    "a farmem.HashMap entry has {} bytes, expected 8",
                    b.len()
                )))
            })
        };
        Ok(match self {
            Kind::Int => i64::from_le_bytes(fixed(b)?)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            Kind::Float => f64::from_le_bytes(fixed(b)?)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            Kind::Bytes => PyBytes::new(py, b).into_any().unbind(),
        })
    }
}

type ByteMap = RemHashMap<Vec<u8>, Vec<u8>>;

/// A dict-like map in far memory: int or bytes keys; int, float or bytes values.
#[pyclass(name = "HashMap", module = "farmem", frozen)]
pub(crate) struct PyHashMapC {
    map: Held<Arc<ByteMap>>,
    key: Kind,
    value: Kind,
}

impl PyHashMapC {
    fn remote<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&ByteMap) -> farmem::Result<R> + Send,
    ) -> PyResult<R> {
        // The map is concurrent; clone the handle out of the lock so a round trip holds neither
        // the lock nor the GIL.
        let map = self.map.with(py, |m| Ok(m.clone()))?;
        py.detach(|| f(&map)).map_err(to_py_err)
    }

    fn lookup(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let k = self.key.require("key", key)?;
        match self.remote(py, move |m| m.get(&k))? {
            Some(v) => Ok(Some(self.value.decode(py, &v)?)),
            None => Ok(None),
        }
    }

    fn no_iteration(&self) -> PyErr {
        PyTypeError::new_err(
            "a farmem.HashMap cannot enumerate its keys: its index lives on the memory server, \
             which answers lookups, writes and the count only; keep the keys yourself if you \
             need to walk them",
        )
    }
}

#[pymethods]
impl PyHashMapC {
    #[new]
    #[pyo3(signature = (runtime, key = "int", value = "int", cache_size = None))]
    fn new(
        py: Python<'_>,
        runtime: &Bound<'_, PyRuntime>,
        key: &str,
        value: &str,
        cache_size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyHashMapC> {
        let key_kind = Kind::parse("key", key, false)?;
        let value_kind = Kind::parse("value", value, true)?;
        let cache = match cache_size {
            Some(c) => parse_size("cache_size", c)?,
            None => DEFAULT_CACHE_BYTES,
        };
        let cache = usize::try_from(cache)
            .map_err(|_| PyOverflowError::new_err(format!("cache_size {cache} is too large")))?;
        let far = runtime.get().session()?.far().clone();
        let map = py
            .detach(|| far.hash_map::<Vec<u8>, Vec<u8>>(cache))
            .map_err(to_py_err)?;
        Ok(PyHashMapC {
            map: Held::new(runtime, Arc::new(map), "farmem.HashMap")?,
            key: key_kind,
            value: value_kind,
        })
    }

    /// Entries in the map (one round trip: the server keeps the count).
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let n = self.remote(py, |m| m.len())?;
        usize::try_from(n).map_err(|_| PyOverflowError::new_err("map length overflows"))
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.lookup(py, key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = self.key.require("key", key)?;
        let v = self.value.require("value", value)?;
        self.remote(py, move |m| m.put(&k, &v)).map(drop)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = self.key.require("key", key)?;
        if self.remote(py, move |m| m.remove(&k))? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(k) = self.key.encode(key)? else {
            return Ok(false);
        };
        self.remote(py, move |m| m.contains_key(&k))
    }

    /// Always `TypeError`: see the class note (the server's index has no enumeration).
    fn __iter__(&self) -> PyResult<Py<PyAny>> {
        Err(self.no_iteration())
    }

    /// Always `TypeError` (no key enumeration).
    fn keys(&self) -> PyResult<Py<PyAny>> {
        Err(self.no_iteration())
    }

    /// Always `TypeError` (no key enumeration).
    fn values(&self) -> PyResult<Py<PyAny>> {
        Err(self.no_iteration())
    }

    /// Always `TypeError` (no key enumeration).
    fn items(&self) -> PyResult<Py<PyAny>> {
        Err(self.no_iteration())
    }

    /// The value of `key`, or `default` when it is absent.
    #[pyo3(signature = (key, default = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.lookup(py, key)?.or(default))
    }

    /// Removes `key` and returns its value; `default` when absent (`KeyError` without one).
    #[pyo3(signature = (key, *default))]
    fn pop(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        let k = self.key.require("key", key)?;
        let old = self.remote(py, move |m| {
            let old = m.get(&k)?;
            if old.is_some() {
                m.remove(&k)?;
            }
            Ok(old)
        })?;
        match old {
            Some(v) => self.value.decode(py, &v),
            None => match default.get_item(0) {
                Ok(d) => Ok(d.unbind()),
                Err(_) => Err(PyKeyError::new_err(key.clone().unbind())),
            },
        }
    }

    /// The value of `key`; if absent, stores `default` and returns it.
    fn setdefault(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        if let Some(v) = self.lookup(py, key)? {
            return Ok(v);
        }
        self.__setitem__(py, key, default)?;
        Ok(default.clone().unbind())
    }

    /// Stores every entry of `other` (a mapping, or an iterable of key/value pairs).
    fn update(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = {
            let items = if let Ok(d) = other.cast::<PyDict>() {
                d.items().into_any()
            } else if other.hasattr("keys")? {
                other.call_method0("items")?
            } else {
                other.clone()
            };
            let mut out = Vec::new();
            for item in items.try_iter()? {
                let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
                out.push((
                    self.key.require("key", &k)?,
                    self.value.require("value", &v)?,
                ));
            }
            out
        };
        self.remote(py, move |m| {
            pairs.iter().try_for_each(|(k, v)| m.put(k, v).map(drop))
        })
    }

    /// Key type (`"int"` or `"bytes"`).
    #[getter]
    fn key_type(&self) -> &'static str {
        self.key.name()
    }

    /// Value type (`"int"`, `"float"` or `"bytes"`).
    #[getter]
    fn value_type(&self) -> &'static str {
        self.value.name()
    }

    /// The local cache's counters: hits, misses, miss_batches, entries, bytes.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.map.with(py, |m| Ok(m.cache_stats()))?;
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("miss_batches", s.miss_batches)?;
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = match self.map.with(py, |_| Ok(())) {
            Ok(()) => "",
            Err(_) => " closed",
        };
        format!(
            "<farmem.HashMap key={} value={}{state}>",
            self.key.name(),
            self.value.name()
        )
    }
}

/// Registers HashMap.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHashMapC>()
}
