//! `farmem.Array` (fixed length) and `farmem.Vector` (growable): numeric sequences in far memory
//! with Python's sequence protocol and numpy bulk copies.
//!
//! # Shape
//!
//! Both classes hold a `Box<dyn Seq>`: one generic implementation ([`Typed`]) over the object
//! layer's `RemArray<T>` / `RemVec<T>` for each of the ten element types, chosen once at
//! construction from the dtype. Python-visible behaviour:
//!
//! - `len`, `a[i]` and `a[i] = v` (negative indices, `IndexError`), `a[start:stop:step]` returns
//!   a **numpy array** (a copy, like a slice of a Python list, not a view), `a[slice] = values`
//!   (same length, or one scalar broadcast; a Vector cannot be resized by slice assignment),
//!   iteration (fetched a block at a time), `v in a`, `to_numpy()`, `to_list()`,
//!   `from_numpy(rt, arr)`.
//! - Vector adds `append`, `extend` (numpy or any iterable), `pop([i])` (O(len - i): the tail
//!   shifts, as in a list) and `clear()`.
//!
//! # Bulk copies and the GIL
//!
//! `to_numpy`, `from_numpy`, `extend`, slices and scans run in the object layer's chunk loops
//! (one dereference per chunk, the scope renewed between chunks) with the GIL released. Data
//! going *into* far memory is first copied out of the numpy buffer in blocks of 1 MiB while the
//! GIL is held (another Python thread may write to that buffer whenever the GIL is free), then
//! written with the GIL released; data coming out is copied with the GIL released straight into
//! the buffer of a fresh numpy array that no Python code can see yet. Single-element operations
//! keep the GIL: most are local hits well under a microsecond, which releasing and re-taking
//! the GIL would about double; a miss holds it for one round trip.

use std::sync::Arc;

use farmem::objects::{DerefScope, FarMemory, RemArray, RemVec};
use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::containers::{norm_index, slice_positions, BlockCursor, Held, Subscript};
use crate::containers_dtype::{as_array, with_dtype, DType, Elem};
use crate::errors::to_py_err;
use crate::runtime::PyRuntime;

/// Elements copied per block on the way into far memory (see the module note).
const COPY_BLOCK_BYTES: usize = 1 << 20;
/// Elements fetched per block by an iterator.
const ITER_BLOCK: usize = 4096;
/// Random-access operations between scope renewals (lets the evacuator make progress).
const RENEW_EVERY: usize = 1024;

/// The container operations the object layer's `RemArray` and `RemVec` share.
trait Chunked<T: Elem>: Send + Sync {
    fn len(&self) -> usize;
    fn chunk_len(&self) -> usize;
    fn get<'s>(&'s self, i: usize, scope: &'s DerefScope<'_>) -> farmem::Result<&'s T>;
    fn set(&mut self, i: usize, v: T, scope: &DerefScope<'_>) -> farmem::Result<()>;
    fn chunk<'s>(&'s self, c: usize, scope: &'s DerefScope<'_>) -> farmem::Result<&'s [T]>;
    fn write_slice(
        &mut self,
        start: usize,
        src: &[T],
        scope: &mut DerefScope<'_>,
    ) -> farmem::Result<()>;
}

macro_rules! chunked {
    ($c:ident) => {
        impl<T: Elem> Chunked<T> for $c<T> {
            fn len(&self) -> usize {
                $c::len(self)
            }
            fn chunk_len(&self) -> usize {
                $c::chunk_len(self)
            }
            fn get<'s>(&'s self, i: usize, scope: &'s DerefScope<'_>) -> farmem::Result<&'s T> {
                $c::get(self, i, scope)
            }
            fn set(&mut self, i: usize, v: T, scope: &DerefScope<'_>) -> farmem::Result<()> {
                $c::set(self, i, v, scope)
            }
            fn chunk<'s>(&'s self, c: usize, scope: &'s DerefScope<'_>) -> farmem::Result<&'s [T]> {
                $c::chunk(self, c, scope)
            }
            fn write_slice(
                &mut self,
                start: usize,
                src: &[T],
                scope: &mut DerefScope<'_>,
            ) -> farmem::Result<()> {
                $c::write_slice(self, start, src, scope)
            }
        }
    };
}
chunked!(RemArray);
chunked!(RemVec);

/// A numeric sequence of some element type, as the Python classes use it.
pub(crate) trait Seq: Send + Sync {
    fn len(&self) -> usize;
    /// Element `i` (in range) as a Python number.
    fn get(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>>;
    /// Sets element `i` (in range) from a Python number.
    fn set(&mut self, py: Python<'_>, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()>;
    /// Elements `start..start + n` as a numpy array.
    fn read<'py>(&self, py: Python<'py>, start: usize, n: usize) -> PyResult<Bound<'py, PyAny>>;
    /// Elements at `positions` as a numpy array.
    fn gather<'py>(&self, py: Python<'py>, positions: Vec<usize>) -> PyResult<Bound<'py, PyAny>>;
    /// Elements `start..start + n` as Python numbers.
    fn read_objects(&self, py: Python<'_>, start: usize, n: usize) -> PyResult<Vec<Py<PyAny>>>;
    /// Writes `values` (array-like, or a scalar broadcast) at `positions` (`None`: all of
    /// `start..start + n`).
    fn assign(
        &mut self,
        py: Python<'_>,
        start: usize,
        n: usize,
        positions: Option<Vec<usize>>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()>;
    /// Whether some element equals `v`.
    fn contains(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<bool>;
    /// Appends (Vector only).
    fn push(&mut self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()>;
    /// Appends every value (Vector only).
    fn extend(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()>;
    /// Removes and returns element `i` (Vector only).
    fn remove(&mut self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>>;
    /// Removes every element (Vector only).
    fn clear(&mut self) -> PyResult<()>;
}

/// A sequence of `T` in far memory: the container and the instance whose scopes it needs.
struct Typed<T: Elem, C> {
    far: Arc<FarMemory>,
    c: C,
    _t: std::marker::PhantomData<fn() -> T>,
}

/// Copies `values` into far memory at `start..` in blocks (see the module note).
fn write_blocks<T: Elem, C: Chunked<T>>(
    py: Python<'_>,
    far: &FarMemory,
    c: &mut C,
    start: usize,
    values: &Bound<'_, PyArray1<T>>,
) -> PyResult<()> {
    let np = py.import("numpy")?;
    let contiguous = np.getattr("ascontiguousarray")?.call1((values,))?;
    let contiguous = contiguous.cast::<PyArray1<T>>()?;
    let ro = contiguous.readonly();
    let src = ro
        .as_slice()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let block = (COPY_BLOCK_BYTES / std::mem::size_of::<T>()).max(1);
    for (b, part) in src.chunks(block).enumerate() {
        let buf = part.to_vec();
        let at = start + b * block;
        py.detach(|| {
            let mut scope = far.scope();
            c.write_slice(at, &buf, &mut scope)
        })
        .map_err(to_py_err)?;
    }
    Ok(())
}

impl<T: Elem, C: Chunked<T>> Typed<T, C> {
    /// Copies elements `start..start + out.len()` into `out`, chunk by chunk (no GIL needed).
    fn copy_out(&self, start: usize, out: &mut [T]) -> farmem::Result<()> {
        let mut scope = self.far.scope();
        let chunk_len = self.c.chunk_len();
        let end = start + out.len();
        let mut i = start;
        while i < end {
            let ch = self.c.chunk(i / chunk_len, &scope)?;
            let off = i % chunk_len;
            let m = (ch.len() - off).min(end - i);
            out[i - start..i - start + m].copy_from_slice(&ch[off..off + m]);
            i += m;
            scope.renew();
        }
        Ok(())
    }

    fn read_vec(&self, py: Python<'_>, start: usize, n: usize) -> PyResult<Vec<T>> {
        py.detach(|| -> farmem::Result<Vec<T>> {
            let mut out = vec![zeroed::<T>(); n];
            self.copy_out(start, &mut out)?;
            Ok(out)
        })
        .map_err(to_py_err)
    }
}

impl<T: Elem, C: Chunked<T> + Grow<T>> Seq for Typed<T, C> {
    fn len(&self) -> usize {
        self.c.len()
    }

    fn get(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>> {
        let scope = self.far.scope();
        let v = *self.c.get(i, &scope).map_err(to_py_err)?;
        drop(scope);
        v.to_py(py)
    }

    fn set(&mut self, _py: Python<'_>, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = T::from_py(v)?;
        let scope = self.far.scope();
        self.c.set(i, v, &scope).map_err(to_py_err)
    }

    fn read<'py>(&self, py: Python<'py>, start: usize, n: usize) -> PyResult<Bound<'py, PyAny>> {
        // Straight into a buffer numpy allocates (numpy backs large arrays with huge pages,
        // which makes the copy several times faster than into a fresh `Vec`).
        if n == 0 {
            return Ok(PyArray1::<T>::zeros(py, [0], false).into_any());
        }
        // SAFETY: a fresh, C-contiguous 1-D array of `n` elements, uninitialised; it is filled
        // below before anything reads it and dropped unread on an error.
        let arr = unsafe { PyArray1::<T>::new(py, [n], false) };
        let data = arr.data() as usize;
        py.detach(|| {
            // SAFETY: (1) `data` points to the `n`-element buffer of `arr`, which lives until
            // this function returns (the `Bound` above holds it); (2) no one else can reach the
            // buffer: the array has not been handed to any Python code yet; (3) `T: Pod`, so
            // writing over uninitialised elements needs no drop and makes them valid.
            let out = unsafe { std::slice::from_raw_parts_mut(data as *mut T, n) };
            self.copy_out(start, out)
        })
        .map_err(to_py_err)?;
        Ok(arr.into_any())
    }

    fn gather<'py>(&self, py: Python<'py>, positions: Vec<usize>) -> PyResult<Bound<'py, PyAny>> {
        let (far, c) = (&self.far, &self.c);
        let v = py
            .detach(|| -> farmem::Result<Vec<T>> {
                let mut scope = far.scope();
                let mut out = Vec::with_capacity(positions.len());
                for (k, &i) in positions.iter().enumerate() {
                    out.push(*c.get(i, &scope)?);
                    if k % RENEW_EVERY == RENEW_EVERY - 1 {
                        scope.renew();
                    }
                }
                Ok(out)
            })
            .map_err(to_py_err)?;
        Ok(PyArray1::from_vec(py, v).into_any())
    }

    fn read_objects(&self, py: Python<'_>, start: usize, n: usize) -> PyResult<Vec<Py<PyAny>>> {
        self.read_vec(py, start, n)?
            .into_iter()
            .map(|v| v.to_py(py))
            .collect()
    }

    fn assign(
        &mut self,
        py: Python<'_>,
        start: usize,
        n: usize,
        positions: Option<Vec<usize>>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let is_scalar = values.try_iter().is_err();
        let arr = if is_scalar {
            PyArray1::from_vec(py, vec![T::from_py(values)?; n])
        } else {
            as_array::<T>(values)?
        };
        if arr.len() != n {
            return Err(PyValueError::new_err(format!(
                "cannot assign {} values to a slice of {n} elements (farmem sequences are not \
                 resized by slice assignment)",
                arr.len()
            )));
        }
        match positions {
            None => write_blocks(py, &self.far, &mut self.c, start, &arr),
            Some(pos) => {
                let vals = arr
                    .to_vec()
                    .map_err(|e| PyValueError::new_err(e.to_string()))?;
                let (far, c) = (&self.far, &mut self.c);
                py.detach(|| -> farmem::Result<()> {
                    let mut scope = far.scope();
                    for (k, (&i, &v)) in pos.iter().zip(&vals).enumerate() {
                        c.set(i, v, &scope)?;
                        if k % RENEW_EVERY == RENEW_EVERY - 1 {
                            scope.renew();
                        }
                    }
                    Ok(())
                })
                .map_err(to_py_err)
            }
        }
    }

    fn contains(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(x) = T::probe(v) else {
            return Ok(false);
        };
        let (far, c) = (&self.far, &self.c);
        py.detach(|| -> farmem::Result<bool> {
            let mut scope = far.scope();
            let chunks = c.len().div_ceil(c.chunk_len().max(1));
            for k in 0..chunks {
                if c.chunk(k, &scope)?.contains(&x) {
                    return Ok(true);
                }
                scope.renew();
            }
            Ok(false)
        })
        .map_err(to_py_err)
    }

    fn push(&mut self, _py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = T::from_py(v)?;
        let scope = self.far.scope();
        self.c.push(v, &scope).map_err(to_py_err)
    }

    fn extend(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let arr = as_array::<T>(values)?;
        let start = self.c.len();
        self.c
            .grow_to(start + arr.len(), &self.far)
            .map_err(to_py_err)?;
        let r = write_blocks(py, &self.far, &mut self.c, start, &arr);
        if r.is_err() {
            // Leave the vector as it was: no half-written tail.
            let _ = self.c.shrink_to(start, &self.far);
        }
        r
    }

    fn remove(&mut self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>> {
        let len = self.c.len();
        let v = {
            let scope = self.far.scope();
            *self.c.get(i, &scope).map_err(to_py_err)?
        };
        if i + 1 < len {
            let tail = self.read_vec(py, i + 1, len - i - 1)?;
            let (far, c) = (&self.far, &mut self.c);
            py.detach(|| {
                let mut scope = far.scope();
                c.write_slice(i, &tail, &mut scope)
            })
            .map_err(to_py_err)?;
        }
        self.c.shrink_to(len - 1, &self.far).map_err(to_py_err)?;
        v.to_py(py)
    }

    fn clear(&mut self) -> PyResult<()> {
        self.c.shrink_to(0, &self.far).map_err(to_py_err)
    }
}

/// Growing and shrinking, which only `RemVec` can (an Array refuses).
trait Grow<T: Elem> {
    fn push(&mut self, v: T, scope: &DerefScope<'_>) -> farmem::Result<()>;
    /// Adds zeroed elements up to `len`.
    fn grow_to(&mut self, len: usize, far: &FarMemory) -> farmem::Result<()>;
    /// Drops elements past `len`.
    fn shrink_to(&mut self, len: usize, far: &FarMemory) -> farmem::Result<()>;
}

fn fixed() -> farmem::Error {
    farmem::Error::invalid("an Array has a fixed length; use a Vector to append or remove")
}

impl<T: Elem> Grow<T> for RemArray<T> {
    fn push(&mut self, _: T, _: &DerefScope<'_>) -> farmem::Result<()> {
        Err(fixed())
    }
    fn grow_to(&mut self, _: usize, _: &FarMemory) -> farmem::Result<()> {
        Err(fixed())
    }
    fn shrink_to(&mut self, _: usize, _: &FarMemory) -> farmem::Result<()> {
        Err(fixed())
    }
}

impl<T: Elem> Grow<T> for RemVec<T> {
    fn push(&mut self, v: T, scope: &DerefScope<'_>) -> farmem::Result<()> {
        RemVec::push(self, v, scope)
    }

    fn grow_to(&mut self, len: usize, far: &FarMemory) -> farmem::Result<()> {
        let n = len.saturating_sub(RemVec::len(self));
        let mut scope = far.scope();
        // Zeroes in blocks, so growing never needs a buffer of the whole extension.
        let block = (COPY_BLOCK_BYTES / std::mem::size_of::<T>()).max(1);
        let zeros = vec![zeroed::<T>(); block.min(n)];
        let mut left = n;
        while left > 0 {
            let m = left.min(block);
            self.extend_from_slice(&zeros[..m], &mut scope)?;
            left -= m;
        }
        Ok(())
    }

    fn shrink_to(&mut self, len: usize, far: &FarMemory) -> farmem::Result<()> {
        if len == 0 {
            // A fresh vector frees every chunk at once.
            *self = far.vec::<T>()?;
            return Ok(());
        }
        let scope = far.scope();
        while RemVec::len(self) > len {
            self.pop(&scope)?;
        }
        Ok(())
    }
}

/// The all-zero value of `T` (every `Pod` type's bit pattern of zeroes is valid).
fn zeroed<T: Elem>() -> T {
    // SAFETY: `T: Pod` promises that every bit pattern, all zeroes in particular, is a valid `T`.
    unsafe { std::mem::zeroed() }
}

fn new_array(far: &Arc<FarMemory>, dtype: DType, len: usize) -> farmem::Result<Box<dyn Seq>> {
    with_dtype!(dtype, T => {
        let c = far.array::<T>(len)?;
        Ok(Box::new(Typed::<T, RemArray<T>> { far: far.clone(), c, _t: std::marker::PhantomData }) as Box<dyn Seq>)
    })
}

fn new_vector(far: &Arc<FarMemory>, dtype: DType) -> farmem::Result<Box<dyn Seq>> {
    with_dtype!(dtype, T => {
        let c = far.vec::<T>()?;
        Ok(Box::new(Typed::<T, RemVec<T>> { far: far.clone(), c, _t: std::marker::PhantomData }) as Box<dyn Seq>)
    })
}

/// The dtype `from_numpy` stores: `dtype` when given, else the numpy array's own.
fn dtype_for(array: &Bound<'_, PyAny>, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<DType> {
    match dtype {
        Some(d) => DType::parse(d),
        None => array_dtype(array),
    }
}

fn array_dtype(arr: &Bound<'_, PyAny>) -> PyResult<DType> {
    let dt = arr
        .getattr("dtype")
        .map_err(|_| pyo3::exceptions::PyTypeError::new_err("from_numpy expects a numpy array"))?;
    DType::parse(&dt)
}

/// The iterator of an Array or Vector: fetches `ITER_BLOCK` elements at a time.
#[pyclass(name = "SequenceIterator", module = "farmem")]
pub(crate) struct PySeqIter {
    seq: Held<Box<dyn Seq>>,
    cursor: BlockCursor,
}

#[pymethods]
impl PySeqIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        // Buffered values are copies, but a closed runtime ends iteration with Closed all the
        // same (one uncontended lock per element).
        self.seq.with(py, |_| Ok(()))?;
        let held = &self.seq;
        self.cursor.next(|pos| {
            held.with(py, |s| {
                let len = s.len();
                if pos >= len {
                    return Ok(Vec::new());
                }
                s.read_objects(py, pos, ITER_BLOCK.min(len - pos))
            })
        })
    }
}

/// The methods Array and Vector share (one `#[pymethods]` block per class, so a macro).
macro_rules! sequence_class {
    ($cls:ident, $name:literal, { $($extra:tt)* }) => {
        #[pymethods]
        impl $cls {
            fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
                self.seq.with(py, |s| Ok(s.len()))
            }

            fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                self.seq.with(py, |s| match Subscript::parse($name, key, s.len())? {
                    Subscript::One(i) => s.get(py, i),
                    Subscript::Range { start, step, len } if step == 1 => {
                        Ok(s.read(py, start as usize, len)?.unbind())
                    }
                    Subscript::Range { start, step, len } => {
                        Ok(s.gather(py, slice_positions(start, step, len))?.unbind())
                    }
                })
            }

            fn __setitem__(
                &self,
                py: Python<'_>,
                key: &Bound<'_, PyAny>,
                value: &Bound<'_, PyAny>,
            ) -> PyResult<()> {
                self.seq.with(py, |s| match Subscript::parse($name, key, s.len())? {
                    Subscript::One(i) => s.set(py, i, value),
                    Subscript::Range { start, step, len } if step == 1 => {
                        s.assign(py, start as usize, len, None, value)
                    }
                    Subscript::Range { start, step, len } => {
                        s.assign(py, 0, len, Some(slice_positions(start, step, len)), value)
                    }
                })
            }

            fn __contains__(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
                self.seq.with(py, |s| s.contains(py, value))
            }

            fn __iter__(&self, py: Python<'_>) -> PyResult<PySeqIter> {
                // Fails with Closed now rather than at the first `next`.
                self.seq.with(py, |_| Ok(()))?;
                Ok(PySeqIter {
                    seq: self.seq.clone_ref(py),
                    cursor: BlockCursor::default(),
                })
            }

            /// The element type as a `numpy.dtype`.
            #[getter]
            fn dtype<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                self.dtype.numpy_dtype(py)
            }

            /// The runtime this container lives in.
            #[getter]
            fn runtime(&self, py: Python<'_>) -> Py<PyRuntime> {
                self.seq.runtime().clone_ref(py)
            }

            /// Every element copied into a new numpy array (GIL released while copying).
            fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let arr = self.seq.with(py, |s| Ok(s.read(py, 0, s.len())?.unbind()))?;
                Ok(arr.into_bound(py))
            }

            /// Every element as a Python list.
            fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
                let items = self.seq.with(py, |s| s.read_objects(py, 0, s.len()))?;
                PyList::new(py, items)
            }

            fn __repr__(&self, py: Python<'_>) -> String {
                match self.seq.with(py, |s| Ok(s.len())) {
                    Ok(n) => format!("<farmem.{} dtype={} len={n}>", $name, self.dtype.name()),
                    Err(_) => format!("<farmem.{} dtype={} closed>", $name, self.dtype.name()),
                }
            }

            $($extra)*
        }
    };
}

/// A fixed-length array of numbers in far memory, zeroed at creation.
#[pyclass(name = "Array", module = "farmem", frozen)]
pub(crate) struct PyArrayC {
    seq: Held<Box<dyn Seq>>,
    dtype: DType,
}

impl PyArrayC {
    fn create(rt: &Bound<'_, PyRuntime>, dtype: DType, len: usize) -> PyResult<PyArrayC> {
        let far = rt.get().session()?.far().clone();
        let seq = rt
            .py()
            .detach(|| new_array(&far, dtype, len))
            .map_err(to_py_err)?;
        Ok(PyArrayC {
            seq: Held::new(rt, seq, "farmem.Array")?,
            dtype,
        })
    }
}

sequence_class!(PyArrayC, "Array", {
    #[new]
    fn new(
        runtime: &Bound<'_, PyRuntime>,
        dtype: &Bound<'_, PyAny>,
        length: i64,
    ) -> PyResult<PyArrayC> {
        let dtype = DType::parse(dtype)?;
        let len = usize::try_from(length).map_err(|_| {
            crate::errors::invalid(format!("Array length must not be negative, got {length}"))
        })?;
        PyArrayC::create(runtime, dtype, len)
    }

    /// A new Array holding a copy of the 1-D numpy array `array` (its dtype, unless `dtype`).
    #[staticmethod]
    #[pyo3(signature = (runtime, array, dtype = None))]
    fn from_numpy(
        py: Python<'_>,
        runtime: &Bound<'_, PyRuntime>,
        array: &Bound<'_, PyAny>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyArrayC> {
        let dtype = dtype_for(array, dtype)?;
        let n = array.len()?;
        let a = PyArrayC::create(runtime, dtype, n)?;
        a.seq.with(py, |s| s.assign(py, 0, n, None, array))?;
        Ok(a)
    }
});

/// A growable vector of numbers in far memory.
#[pyclass(name = "Vector", module = "farmem", frozen)]
pub(crate) struct PyVectorC {
    seq: Held<Box<dyn Seq>>,
    dtype: DType,
}

impl PyVectorC {
    fn create(rt: &Bound<'_, PyRuntime>, dtype: DType) -> PyResult<PyVectorC> {
        let far = rt.get().session()?.far().clone();
        let seq = new_vector(&far, dtype).map_err(to_py_err)?;
        Ok(PyVectorC {
            seq: Held::new(rt, seq, "farmem.Vector")?,
            dtype,
        })
    }
}

sequence_class!(PyVectorC, "Vector", {
    #[new]
    #[pyo3(signature = (runtime, dtype, values = None))]
    fn new(
        py: Python<'_>,
        runtime: &Bound<'_, PyRuntime>,
        dtype: &Bound<'_, PyAny>,
        values: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyVectorC> {
        let v = PyVectorC::create(runtime, DType::parse(dtype)?)?;
        if let Some(values) = values {
            v.seq.with(py, |s| s.extend(py, values))?;
        }
        Ok(v)
    }

    /// A new Vector holding a copy of the 1-D numpy array `array` (its dtype, unless `dtype`).
    #[staticmethod]
    #[pyo3(signature = (runtime, array, dtype = None))]
    fn from_numpy(
        py: Python<'_>,
        runtime: &Bound<'_, PyRuntime>,
        array: &Bound<'_, PyAny>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyVectorC> {
        let dtype = dtype_for(array, dtype)?;
        let v = PyVectorC::create(runtime, dtype)?;
        v.seq.with(py, |s| s.extend(py, array))?;
        Ok(v)
    }

    /// Appends `value`.
    fn append(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.seq.with(py, |s| s.push(py, value))
    }

    /// Appends every value of `values` (a numpy array or any iterable of numbers); on failure
    /// the vector is unchanged.
    fn extend(&self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        self.seq.with(py, |s| s.extend(py, values))
    }

    /// Removes and returns element `index` (default the last); `IndexError` when empty or out
    /// of range. O(len - index): the elements after it move down.
    #[pyo3(signature = (index = -1))]
    fn pop(&self, py: Python<'_>, index: isize) -> PyResult<Py<PyAny>> {
        self.seq.with(py, |s| {
            if s.len() == 0 {
                return Err(PyIndexError::new_err("pop from an empty Vector"));
            }
            let i = norm_index("Vector pop", index, s.len())?;
            s.remove(py, i)
        })
    }

    /// Removes every element (their far memory is freed).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.seq.with(py, |s| s.clear())
    }
});

/// Registers Array, Vector and their iterator.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyArrayC>()?;
    m.add_class::<PyVectorC>()?;
    m.add_class::<PySeqIter>()?;
    Ok(())
}
