//! `farmem.List` (a deque-like list), `farmem.Stack` (LIFO) and `farmem.Queue` (FIFO) of
//! numbers in far memory, over the object layer's `RemList`, `RemStack` and `RemQueue`.
//!
//! Python counterparts, which the tests compare them with: `List` behaves like a `list` with
//! `collections.deque`'s end operations (`append`, `appendleft`, `pop`, `popleft`, `insert`,
//! `del l[i]`, `l[i]`, `l[i] = v`, iteration, `in`; `l[a:b]` returns a numpy copy); `Stack` like a
//! list used as a stack (`push`, `pop`, `peek`); `Queue` like a deque used as a FIFO (`push` at
//! the tail, `pop` from the head, `peek`). Popping an empty one raises `IndexError`, as `list`
//! and `deque` do. Stack and Queue have no iteration or indexing (the object layer offers only
//! their ends), so `iter()` and `in` raise `TypeError`.
//!
//! Indexing a List walks its local chunk index (no far-memory access), O(chunks); iteration
//! moves a cursor, a block of elements per lock acquisition.

use std::sync::Arc;

use farmem::objects::{FarMemory, RemList, RemQueue, RemStack};
use numpy::PyArray1;
use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::containers::{slice_positions, BlockCursor, Held, Subscript};
use crate::containers_dtype::{values_vec, with_dtype, DType, Elem};
use crate::errors::to_py_err;
use crate::runtime::PyRuntime;

const ITER_BLOCK: usize = 4096;
const RENEW_EVERY: usize = 64;

/// A list of some element type, as `farmem.List` uses it.
trait ListOps: Send + Sync {
    fn len(&self) -> usize;
    fn get(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>>;
    fn set(&mut self, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()>;
    fn push_back(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()>;
    fn push_front(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()>;
    fn pop_back(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>>;
    fn pop_front(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>>;
    fn insert(&mut self, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()>;
    fn remove(&mut self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>>;
    fn extend(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()>;
    /// Elements `start..start + n` (in range) as Python numbers.
    fn read_objects(&mut self, py: Python<'_>, start: usize, n: usize) -> PyResult<Vec<Py<PyAny>>>;
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
    fn gather<'py>(&self, py: Python<'py>, pos: &[usize]) -> PyResult<Bound<'py, PyAny>>;
    fn contains(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<bool>;
    fn clear(&mut self);
}

struct TypedList<T: Elem> {
    far: Arc<FarMemory>,
    list: RemList<T>,
}

impl<T: Elem> TypedList<T> {
    fn all(&self, py: Python<'_>) -> PyResult<Vec<T>> {
        let (far, list) = (&self.far, &self.list);
        py.detach(|| list.to_vec(&mut far.scope()))
            .map_err(to_py_err)
    }
}

impl<T: Elem> ListOps for TypedList<T> {
    fn len(&self) -> usize {
        self.list.len()
    }

    fn get(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>> {
        let scope = self.far.scope();
        let v = *self.list.get(i, &scope).map_err(to_py_err)?;
        drop(scope);
        v.to_py(py)
    }

    fn set(&mut self, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = T::from_py(v)?;
        let scope = self.far.scope();
        let mut cursor = self.list.cursor_mut(i).map_err(to_py_err)?;
        cursor.set_current(v, &scope).map_err(to_py_err)
    }

    fn push_back(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = T::from_py(v)?;
        let scope = self.far.scope();
        self.list.push_back(v, &scope).map_err(to_py_err)
    }

    fn push_front(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = T::from_py(v)?;
        let scope = self.far.scope();
        self.list.push_front(v, &scope).map_err(to_py_err)
    }

    fn pop_back(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let scope = self.far.scope();
        let v = self.list.pop_back(&scope).map_err(to_py_err)?;
        drop(scope);
        v.map(|v| v.to_py(py)).transpose()
    }

    fn pop_front(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let scope = self.far.scope();
        let v = self.list.pop_front(&scope).map_err(to_py_err)?;
        drop(scope);
        v.map(|v| v.to_py(py)).transpose()
    }

    fn insert(&mut self, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = T::from_py(v)?;
        let mut scope = self.far.scope();
        self.list.insert(i, v, &mut scope).map_err(to_py_err)
    }

    fn remove(&mut self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>> {
        let mut scope = self.far.scope();
        let v = self.list.remove(i, &mut scope).map_err(to_py_err)?;
        drop(scope);
        v.to_py(py)
    }

    fn extend(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let vals = values_vec::<T>(values)?;
        let (far, list) = (&self.far, &mut self.list);
        let start = list.len();
        let r = py.detach(|| -> farmem::Result<()> {
            let mut scope = far.scope();
            for (k, &v) in vals.iter().enumerate() {
                list.push_back(v, &scope)?;
                if k % RENEW_EVERY == RENEW_EVERY - 1 {
                    scope.renew();
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            // Leave the list as it was.
            let scope = far.scope();
            while list.len() > start {
                if list.pop_back(&scope).is_err() {
                    break;
                }
            }
            return Err(to_py_err(e));
        }
        Ok(())
    }

    fn read_objects(&mut self, py: Python<'_>, start: usize, n: usize) -> PyResult<Vec<Py<PyAny>>> {
        let (far, list) = (&self.far, &mut self.list);
        let vals = py
            .detach(|| -> farmem::Result<Vec<T>> {
                let mut out = Vec::with_capacity(n);
                let mut cursor = list.cursor_mut(start)?;
                let mut scope = far.scope();
                while out.len() < n {
                    match cursor.current(&scope)? {
                        Some(v) => out.push(*v),
                        None => break,
                    }
                    cursor.move_next();
                    if out.len() % RENEW_EVERY == 0 {
                        scope.renew();
                    }
                }
                Ok(out)
            })
            .map_err(to_py_err)?;
        vals.into_iter().map(|v| v.to_py(py)).collect()
    }

    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyArray1::from_vec(py, self.all(py)?).into_any())
    }

    fn gather<'py>(&self, py: Python<'py>, pos: &[usize]) -> PyResult<Bound<'py, PyAny>> {
        let all = self.all(py)?;
        let picked: Vec<T> = pos.iter().map(|&i| all[i]).collect();
        Ok(PyArray1::from_vec(py, picked).into_any())
    }

    fn contains(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(x) = T::probe(v) else {
            return Ok(false);
        };
        let (far, list) = (&self.far, &self.list);
        py.detach(|| -> farmem::Result<bool> {
            let mut found = false;
            list.for_each_chunk(&mut far.scope(), |xs| found |= xs.contains(&x))?;
            Ok(found)
        })
        .map_err(to_py_err)
    }

    fn clear(&mut self) {
        self.list.clear();
    }
}

/// A list of numbers in far memory with `list`'s indexing and `deque`'s end operations.
#[pyclass(name = "List", module = "farmem", frozen)]
pub(crate) struct PyListC {
    list: Held<Box<dyn ListOps>>,
    dtype: DType,
}

/// The iterator of a List: a cursor that fetches a block of elements at a time.
#[pyclass(name = "ListIterator", module = "farmem")]
pub(crate) struct PyListIter {
    list: Held<Box<dyn ListOps>>,
    cursor: BlockCursor,
}

#[pymethods]
impl PyListIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        // Buffered values are copies, but a closed runtime ends iteration with Closed all the
        // same (one uncontended lock per element).
        self.list.with(py, |_| Ok(()))?;
        let held = &self.list;
        self.cursor.next(|pos| {
            held.with(py, |l| {
                let len = l.len();
                if pos >= len {
                    return Ok(Vec::new());
                }
                l.read_objects(py, pos, ITER_BLOCK.min(len - pos))
            })
        })
    }
}

fn empty(what: &str) -> PyErr {
    PyIndexError::new_err(format!("pop from an empty {what}"))
}

#[pymethods]
impl PyListC {
    #[new]
    #[pyo3(signature = (runtime, dtype, values = None))]
    fn new(
        py: Python<'_>,
        runtime: &Bound<'_, PyRuntime>,
        dtype: &Bound<'_, PyAny>,
        values: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyListC> {
        let dtype = DType::parse(dtype)?;
        let far = runtime.get().session()?.far().clone();
        let ops: Box<dyn ListOps> = with_dtype!(dtype, T => {
            let list = far.list::<T>().map_err(to_py_err)?;
            Box::new(TypedList::<T> { far, list })
        });
        let l = PyListC {
            list: Held::new(runtime, ops, "farmem.List")?,
            dtype,
        };
        if let Some(values) = values {
            l.list.with(py, |x| x.extend(py, values))?;
        }
        Ok(l)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.list.with(py, |l| Ok(l.len()))
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.list
            .with(py, |l| match Subscript::parse("List", key, l.len())? {
                Subscript::One(i) => l.get(py, i),
                Subscript::Range { start, step, len } => {
                    Ok(l.gather(py, &slice_positions(start, step, len))?.unbind())
                }
            })
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.list
            .with(py, |l| match Subscript::parse("List", key, l.len())? {
                Subscript::One(i) => l.set(i, value),
                Subscript::Range { .. } => Err(PyTypeError::new_err(
                    "a farmem.List does not support slice assignment; assign elements one by one",
                )),
            })
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.list
            .with(py, |l| match Subscript::parse("List", key, l.len())? {
                Subscript::One(i) => l.remove(py, i).map(drop),
                Subscript::Range { .. } => Err(PyTypeError::new_err(
                    "a farmem.List does not support slice deletion; delete elements one by one",
                )),
            })
    }

    fn __contains__(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.list.with(py, |l| l.contains(py, value))
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<PyListIter> {
        self.list.with(py, |_| Ok(()))?;
        Ok(PyListIter {
            list: self.list.clone_ref(py),
            cursor: BlockCursor::default(),
        })
    }

    /// Appends `value` at the end.
    fn append(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.list.with(py, |l| l.push_back(value))
    }

    /// Prepends `value` at the front.
    fn appendleft(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.list.with(py, |l| l.push_front(value))
    }

    /// Removes and returns element `index` (default the last); `IndexError` when empty.
    #[pyo3(signature = (index = -1))]
    fn pop(&self, py: Python<'_>, index: isize) -> PyResult<Py<PyAny>> {
        self.list.with(py, |l| {
            let len = l.len();
            if len == 0 {
                return Err(empty("List"));
            }
            let i = crate::containers::norm_index("List pop", index, len)?;
            if i + 1 == len {
                l.pop_back(py)?.ok_or_else(|| empty("List"))
            } else if i == 0 {
                l.pop_front(py)?.ok_or_else(|| empty("List"))
            } else {
                l.remove(py, i)
            }
        })
    }

    /// Removes and returns the first element; `IndexError` when empty.
    fn popleft(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.list
            .with(py, |l| l.pop_front(py)?.ok_or_else(|| empty("List")))
    }

    /// Inserts `value` before position `index` (clamped to the ends, as `list.insert` does).
    fn insert(&self, py: Python<'_>, index: isize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.list.with(py, |l| {
            let len = l.len() as isize;
            let i = if index < 0 {
                (index + len).max(0)
            } else {
                index.min(len)
            };
            l.insert(i as usize, value)
        })
    }

    /// Appends every value of `values` (numpy array or iterable); on failure the list is
    /// unchanged.
    fn extend(&self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        self.list.with(py, |l| l.extend(py, values))
    }

    /// Removes every element.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.list.with(py, |l| {
            l.clear();
            Ok(())
        })
    }

    /// Every element copied into a new numpy array.
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let a = self.list.with(py, |l| Ok(l.to_numpy(py)?.unbind()))?;
        Ok(a.into_bound(py))
    }

    /// Every element as a Python list.
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self.list.with(py, |l| {
            let n = l.len();
            l.read_objects(py, 0, n)
        })?;
        PyList::new(py, items)
    }

    /// The element type as a `numpy.dtype`.
    #[getter]
    fn dtype<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.dtype.numpy_dtype(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.list.with(py, |l| Ok(l.len())) {
            Ok(n) => format!("<farmem.List dtype={} len={n}>", self.dtype.name()),
            Err(_) => format!("<farmem.List dtype={} closed>", self.dtype.name()),
        }
    }
}

/// The operations Stack and Queue share: push at the tail; pop and peek at their end.
trait EndOps: Send + Sync {
    fn len(&self) -> usize;
    fn push(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()>;
    fn push_all(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()>;
    fn pop(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>>;
    fn peek(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>>;
    fn clear(&mut self);
}

impl<T: Elem> EndOps for RemStack<T> {
    fn len(&self) -> usize {
        RemStack::len(self)
    }
    fn push(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        RemStack::push(self, T::from_py(v)?).map_err(to_py_err)
    }
    fn push_all(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let vals = values_vec::<T>(values)?;
        py.detach(|| vals.iter().try_for_each(|&v| RemStack::push(self, v)))
            .map_err(to_py_err)
    }
    fn pop(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        RemStack::pop(self)
            .map_err(to_py_err)?
            .map(|v| v.to_py(py))
            .transpose()
    }
    fn peek(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        RemStack::peek(self)
            .map_err(to_py_err)?
            .map(|v| v.to_py(py))
            .transpose()
    }
    fn clear(&mut self) {
        RemStack::clear(self)
    }
}

impl<T: Elem> EndOps for RemQueue<T> {
    fn len(&self) -> usize {
        RemQueue::len(self)
    }
    fn push(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        RemQueue::push(self, T::from_py(v)?).map_err(to_py_err)
    }
    fn push_all(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let vals = values_vec::<T>(values)?;
        py.detach(|| RemQueue::push_all(self, &vals))
            .map_err(to_py_err)
    }
    fn pop(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        RemQueue::pop(self)
            .map_err(to_py_err)?
            .map(|v| v.to_py(py))
            .transpose()
    }
    fn peek(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        RemQueue::peek(self)
            .map_err(to_py_err)?
            .map(|v| v.to_py(py))
            .transpose()
    }
    fn clear(&mut self) {
        RemQueue::clear(self)
    }
}

/// The methods Stack and Queue share (one `#[pymethods]` block per class, so a macro).
macro_rules! end_class {
    ($cls:ident, $name:literal, $make:ident, $doc_pop:literal) => {
        #[pymethods]
        impl $cls {
            #[new]
            #[pyo3(signature = (runtime, dtype, values = None))]
            fn new(
                py: Python<'_>,
                runtime: &Bound<'_, PyRuntime>,
                dtype: &Bound<'_, PyAny>,
                values: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<$cls> {
                let dtype = DType::parse(dtype)?;
                let far = runtime.get().session()?.far().clone();
                let ops: Box<dyn EndOps> = with_dtype!(dtype, T => {
                    Box::new(far.$make::<T>().map_err(to_py_err)?)
                });
                let c = $cls {
                    ops: Held::new(runtime, ops, concat!("farmem.", $name))?,
                    dtype,
                };
                if let Some(values) = values {
                    c.ops.with(py, |o| o.push_all(py, values))?;
                }
                Ok(c)
            }

            fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
                self.ops.with(py, |o| Ok(o.len()))
            }

            /// Adds `value` at the tail.
            fn push(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
                self.ops.with(py, |o| o.push(value))
            }

            /// Pushes every value of `values` in order.
            fn extend(&self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
                self.ops.with(py, |o| o.push_all(py, values))
            }

            #[doc = $doc_pop]
            fn pop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.ops
                    .with(py, |o| o.pop(py)?.ok_or_else(|| empty($name)))
            }

            /// The element `pop` would return, without removing it; `None` when empty.
            fn peek(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
                self.ops.with(py, |o| o.peek(py))
            }

            /// Removes every element.
            fn clear(&self, py: Python<'_>) -> PyResult<()> {
                self.ops.with(py, |o| {
                    o.clear();
                    Ok(())
                })
            }

            /// The element type as a `numpy.dtype`.
            #[getter]
            fn dtype<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                self.dtype.numpy_dtype(py)
            }

            fn __repr__(&self, py: Python<'_>) -> String {
                match self.ops.with(py, |o| Ok(o.len())) {
                    Ok(n) => format!("<farmem.{} dtype={} len={n}>", $name, self.dtype.name()),
                    Err(_) => format!("<farmem.{} dtype={} closed>", $name, self.dtype.name()),
                }
            }
        }
    };
}

/// A last-in first-out stack of numbers in far memory.
#[pyclass(name = "Stack", module = "farmem", frozen)]
pub(crate) struct PyStackC {
    ops: Held<Box<dyn EndOps>>,
    dtype: DType,
}
end_class!(
    PyStackC,
    "Stack",
    stack,
    "Removes and returns the most recently pushed element; `IndexError` when empty."
);

/// A first-in first-out queue of numbers in far memory.
#[pyclass(name = "Queue", module = "farmem", frozen)]
pub(crate) struct PyQueueC {
    ops: Held<Box<dyn EndOps>>,
    dtype: DType,
}
end_class!(
    PyQueueC,
    "Queue",
    queue,
    "Removes and returns the oldest element; `IndexError` when empty."
);

/// Registers List, Stack, Queue and the List iterator.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyListC>()?;
    m.add_class::<PyListIter>()?;
    m.add_class::<PyStackC>()?;
    m.add_class::<PyQueueC>()?;
    Ok(())
}
