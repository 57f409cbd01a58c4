//! Element types of the numeric containers (`Array`, `Vector`, `List`, `Stack`, `Queue`): the
//! [`DType`] names Python code passes, and the [`Elem`] conversions between Python objects and
//! the Rust values stored in far memory.
//!
//! # Names
//!
//! A dtype is a string in Rust's spelling (`"i8"`, `"u32"`, `"f64"`: the number is *bits*) or
//! numpy's (`"int8"`, `"uint32"`, `"float64"`), or anything `numpy.dtype(...)` accepts that is
//! not a string (`numpy.int64`, `numpy.dtype("float32")`, `int`, `float`). numpy's byte-count
//! codes as strings (`"i8"` meaning int64 in numpy) are deliberately *not* accepted: `"i8"` is
//! 8 bits here, as the Rust spelling says; pass `numpy.dtype("<i8")` for numpy's meaning.
//! Non-native byte order is refused (the data is stored in native order), and so is `None`
//! (which numpy would read as float64).
//!
//! # Values
//!
//! Integers take anything with `__index__` (Python ints, bools, numpy integers); a value
//! outside the type's range is `OverflowError`, a non-integer `TypeError` (floats are not
//! truncated silently). Floats take anything with `__float__`; a finite value outside `f32`'s
//! range is `OverflowError` for `f32`.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyString};

use crate::errors::invalid;

/// The numeric element types containers hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DType {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
}

const NAMES: [(DType, &str, &str); 10] = [
    (DType::I8, "i8", "int8"),
    (DType::I16, "i16", "int16"),
    (DType::I32, "i32", "int32"),
    (DType::I64, "i64", "int64"),
    (DType::U8, "u8", "uint8"),
    (DType::U16, "u16", "uint16"),
    (DType::U32, "u32", "uint32"),
    (DType::U64, "u64", "uint64"),
    (DType::F32, "f32", "float32"),
    (DType::F64, "f64", "float64"),
];

impl DType {
    /// The dtype `obj` names (see the module note).
    pub(crate) fn parse(obj: &Bound<'_, PyAny>) -> PyResult<DType> {
        if obj.is_none() {
            // numpy reads None as float64; a container's element type is never implied.
            return Err(PyTypeError::new_err(
                "dtype is required: a string like \"i64\" or a numpy dtype, not None",
            ));
        }
        if let Ok(s) = obj.cast::<PyString>() {
            let s = s.to_str()?;
            return NAMES
                .iter()
                .find(|(_, rust, np)| s == *rust || s == *np)
                .map(|(d, _, _)| *d)
                .ok_or_else(|| {
                    invalid(format!(
                        "unknown dtype {s:?}; use one of i8, i16, i32, i64, u8, u16, u32, u64, \
                         f32, f64 (or numpy's names: int8 ... float64, or a numpy.dtype)"
                    ))
                });
        }
        let py = obj.py();
        let dt = py
            .import("numpy")?
            .getattr("dtype")?
            .call1((obj,))
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "dtype must be a string like \"i64\" or a numpy dtype, not {}",
                    obj.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
        if !dt.getattr("isnative")?.extract::<bool>()? {
            return Err(invalid(format!(
                "dtype {} is not in native byte order; convert the data with .astype(native)",
                dt.str()?
            )));
        }
        let name: String = dt.getattr("name")?.extract()?;
        NAMES
            .iter()
            .find(|(_, _, np)| name == *np)
            .map(|(d, _, _)| *d)
            .ok_or_else(|| {
                invalid(format!(
                    "dtype {name} is not supported; containers hold int8..int64, uint8..uint64, \
                     float32 and float64"
                ))
            })
    }

    /// The Rust-style name (`"i64"`).
    pub(crate) fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(d, _, _)| *d == self)
            .map_or("?", |(_, r, _)| r)
    }

    /// The numpy name (`"int64"`).
    pub(crate) fn numpy_name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(d, _, _)| *d == self)
            .map_or("?", |(_, _, n)| n)
    }

    /// The `numpy.dtype` object of this type.
    pub(crate) fn numpy_dtype<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("numpy")?
            .getattr("dtype")?
            .call1((self.numpy_name(),))
    }
}

/// A numeric element: stored in far memory (`Pod`), copied to numpy (`numpy::Element`), and
/// converted from and to Python objects.
pub(crate) trait Elem:
    farmem::objects::Pod + numpy::Element + PartialEq + for<'py> IntoPyObject<'py>
{
    /// The dtype of this type.
    const DTYPE: DType;

    /// The value of `v`: `TypeError` for a wrong type, `OverflowError` out of range.
    fn from_py(v: &Bound<'_, PyAny>) -> PyResult<Self>;

    /// The value of `v` for a membership test: `None` when no element of this type can equal
    /// it (a wrong type, an out-of-range or non-integral number), as Python's `in` answers False.
    fn probe(v: &Bound<'_, PyAny>) -> Option<Self>;

    /// `self` as a Python object.
    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

macro_rules! int_elem {
    ($($t:ty => $d:ident),*) => { $(
        impl Elem for $t {
            const DTYPE: DType = DType::$d;

            fn from_py(v: &Bound<'_, PyAny>) -> PyResult<$t> {
                if v.is_instance_of::<PyFloat>() {
                    return Err(PyTypeError::new_err(format!(
                        "a {} container holds integers, not float ({}); convert with int()",
                        DType::$d.name(), v.repr()?
                    )));
                }
                let wide: i128 = v.extract().map_err(|e: PyErr| {
                    // An exception raised by the value's own `__index__` passes through.
                    if !e.is_instance_of::<PyTypeError>(v.py()) {
                        return e;
                    }
                    PyTypeError::new_err(format!(
                        "a {} container holds integers, not {}",
                        DType::$d.name(),
                        v.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                    ))
                })?;
                <$t>::try_from(wide).map_err(|_| {
                    PyOverflowError::new_err(format!(
                        "{wide} is out of range for {} ({}..={})",
                        DType::$d.name(), <$t>::MIN, <$t>::MAX
                    ))
                })
            }

            fn probe(v: &Bound<'_, PyAny>) -> Option<$t> {
                if let Ok(f) = v.cast::<PyFloat>() {
                    let f = f.value();
                    if f.fract() != 0.0 || !f.is_finite() {
                        return None;
                    }
                    let wide = f as i128;
                    return (wide as f64 == f).then(|| <$t>::try_from(wide).ok()).flatten();
                }
                v.extract::<i128>().ok().and_then(|w| <$t>::try_from(w).ok())
            }

            fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                Ok(self.into_pyobject(py)?.into_any().unbind())
            }
        }
    )* };
}
int_elem!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16, u32 => U32, u64 => U64);

fn float_of(d: DType, v: &Bound<'_, PyAny>) -> PyResult<f64> {
    if v.is_instance_of::<PyString>() || v.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "a {} container holds numbers, not {}",
            d.name(),
            v.get_type().name()?
        )));
    }
    v.extract::<f64>().map_err(|e: PyErr| {
        // An exception raised by the value's own `__float__` passes through.
        if !e.is_instance_of::<PyTypeError>(v.py()) {
            return e;
        }
        PyTypeError::new_err(format!(
            "a {} container holds numbers, not {}",
            d.name(),
            v.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

impl Elem for f64 {
    const DTYPE: DType = DType::F64;

    fn from_py(v: &Bound<'_, PyAny>) -> PyResult<f64> {
        float_of(DType::F64, v)
    }

    fn probe(v: &Bound<'_, PyAny>) -> Option<f64> {
        float_of(DType::F64, v).ok()
    }

    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.into_pyobject(py)?.into_any().unbind())
    }
}

impl Elem for f32 {
    const DTYPE: DType = DType::F32;

    fn from_py(v: &Bound<'_, PyAny>) -> PyResult<f32> {
        let f = float_of(DType::F32, v)?;
        let n = f as f32;
        if f.is_finite() && !n.is_finite() {
            return Err(PyOverflowError::new_err(format!(
                "{f} is out of range for f32 (about ±3.4e38)"
            )));
        }
        Ok(n)
    }

    fn probe(v: &Bound<'_, PyAny>) -> Option<f32> {
        let f = float_of(DType::F32, v).ok()?;
        let n = f as f32;
        // Only a value an f32 represents exactly can equal an element.
        (f64::from(n) == f || f.is_nan()).then_some(n)
    }

    fn to_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(f64::from(self).into_pyobject(py)?.into_any().unbind())
    }
}

/// `values` as a 1-D numpy array of `T`: a numpy array (or anything numpy takes) is converted
/// with `casting="safe"` (so int64 never silently narrows to int8: `TypeError`); a Python
/// sequence is converted element by element with [`Elem::from_py`] (range checks included).
pub(crate) fn as_array<'py, T: Elem>(
    values: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<T>>> {
    let py = values.py();
    if let Ok(a) = values.cast::<PyArray1<T>>() {
        return Ok(a.clone());
    }
    let np = py.import("numpy")?;
    let is_ndarray = values.is_instance(&np.getattr("ndarray")?)?;
    if is_ndarray {
        let ndim: usize = values.getattr("ndim")?.extract()?;
        if ndim != 1 {
            return Err(invalid(format!(
                "expected a 1-D array, got one with {ndim} dimensions; flatten it with .ravel()"
            )));
        }
        let kw = pyo3::types::PyDict::new(py);
        kw.set_item("casting", "safe")?;
        let cast = values
            .call_method("astype", (T::DTYPE.numpy_name(),), Some(&kw))
            .map_err(|_| {
                let from = values
                    .getattr("dtype")
                    .and_then(|d| d.str())
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                PyTypeError::new_err(format!(
                    "cannot store a {from} array in a {} container without losing data; \
                     convert it with .astype(\"{}\") first",
                    T::DTYPE.name(),
                    T::DTYPE.numpy_name()
                ))
            })?;
        return Ok(cast.cast_into::<PyArray1<T>>()?);
    }
    if values.is_instance_of::<PyString>() || values.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "expected a sequence of numbers for a {} container, not {}",
            T::DTYPE.name(),
            values.get_type().name()?
        )));
    }
    let mut out = Vec::new();
    for item in values.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected an iterable of numbers or a numpy array, not {}",
            values
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })? {
        out.push(T::from_py(&item?)?);
    }
    Ok(PyArray1::from_vec(py, out))
}

/// `values` (as [`as_array`] takes them) copied into a `Vec`.
pub(crate) fn values_vec<T: Elem>(values: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    let arr = as_array::<T>(values)?;
    let contiguous = values
        .py()
        .import("numpy")?
        .getattr("ascontiguousarray")?
        .call1((arr,))?
        .cast_into::<PyArray1<T>>()?;
    contiguous
        .to_vec()
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// Runs `$body` with `$t` bound to the Rust type of the dtype `$d`.
macro_rules! with_dtype {
    ($d:expr, $t:ident => $body:expr) => {
        match $d {
            $crate::containers_dtype::DType::I8 => {
                type $t = i8;
                $body
            }
            $crate::containers_dtype::DType::I16 => {
                type $t = i16;
                $body
            }
            $crate::containers_dtype::DType::I32 => {
                type $t = i32;
                $body
            }
            $crate::containers_dtype::DType::I64 => {
                type $t = i64;
                $body
            }
            $crate::containers_dtype::DType::U8 => {
                type $t = u8;
                $body
            }
            $crate::containers_dtype::DType::U16 => {
                type $t = u16;
                $body
            }
            $crate::containers_dtype::DType::U32 => {
                type $t = u32;
                $body
            }
            $crate::containers_dtype::DType::U64 => {
                type $t = u64;
                $body
            }
            $crate::containers_dtype::DType::F32 => {
                type $t = f32;
                $body
            }
            $crate::containers_dtype::DType::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}
pub(crate) use with_dtype;
