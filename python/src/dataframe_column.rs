//! `farmem.Column`: one named column of a `farmem.DataFrame`, with its aggregates and numpy
//! export.
//!
//! A column object holds its frame and the column's *name*, not the column: a taxi step may
//! replace a derived column (running step 4 twice makes a new `duration`), and the runtime may
//! release the frame, so every call looks the name up again under the frame's lock. The
//! aggregates are the DataFrame's own (`ColumnStore::sum`, `min`, ...): chunked scans of the far
//! column with the GIL released, exactly what the taxi steps use.
//!
//! Operations a column type has no meaning for (the sum of timestamps, the minimum of an
//! unordered categorical) raise `TypeError`, as numpy and pandas do.

use farmem::dataframe::{AnyColumn, ColumnStore, Element, FarStorage};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use super::values::ColumnValues;
use super::{dtype_name, Failure, PyDataFrame};

/// One column of a DataFrame, by name.
#[pyclass(name = "Column", module = "farmem", frozen)]
pub(crate) struct PyColumn {
    frame: Py<PyDataFrame>,
    name: String,
}

/// One aggregate value, built without the GIL.
enum Scalar {
    Int(i128),
    Float(f64),
    /// Seconds since the epoch, returned as `numpy.datetime64(..., "s")`.
    Time(i64),
    /// No value (an empty column's min, max or mean).
    Missing,
}

impl Scalar {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Scalar::Int(v) => v.into_py_any(py),
            Scalar::Float(v) => v.into_py_any(py),
            Scalar::Time(v) => Ok(py
                .import("numpy")?
                .getattr("datetime64")?
                .call1((v, "s"))?
                .unbind()),
            Scalar::Missing => Ok(py.None()),
        }
    }
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Scalar) -> Scalar {
    v.map_or(Scalar::Missing, f)
}

fn wrong_type(op: &str, col: &AnyColumn<FarStorage>, name: &str) -> Failure {
    Failure::WrongType(format!(
        "Column.{op}() is not defined for column {name:?} of dtype {}",
        dtype_name(col.column_type())
    ))
}

/// Which end of the order `extreme` looks for.
#[derive(Clone, Copy)]
enum End {
    Min,
    Max,
}

fn extreme<T: Element, C: ColumnStore<T>>(c: &C, end: End) -> farmem::Result<Option<T>> {
    match end {
        End::Min => c.min(),
        End::Max => c.max(),
    }
}

impl PyColumn {
    /// Column `name` of `frame` (the caller checked that it exists).
    pub(crate) fn new(frame: Py<PyDataFrame>, name: String) -> PyColumn {
        PyColumn { frame, name }
    }

    /// Runs `f` on the column with the GIL released (see [`PyDataFrame::with_frame`]).
    fn with_column<R, F>(&self, py: Python<'_>, f: F) -> PyResult<R>
    where
        R: Send,
        F: Send + FnOnce(&AnyColumn<FarStorage>, &str) -> Result<R, Failure>,
    {
        let name = self.name.as_str();
        self.frame
            .get()
            .with_frame(py, move |df| f(df.column(name)?, name))
    }

    fn extreme(&self, py: Python<'_>, end: End, op: &'static str) -> PyResult<Py<PyAny>> {
        self.with_column(py, move |c, name| {
            Ok(match c {
                AnyColumn::I64(c) => opt(extreme(c, end)?, |v| Scalar::Int(v.into())),
                AnyColumn::F64(c) => opt(extreme(c, end)?, Scalar::Float),
                AnyColumn::U8(c) => opt(extreme(c, end)?, |v| Scalar::Int(v.into())),
                AnyColumn::Timestamp(c) => opt(extreme(c, end)?, Scalar::Time),
                other => return Err(wrong_type(op, other, name)),
            })
        })?
        .into_py(py)
    }
}

#[pymethods]
impl PyColumn {
    /// The column's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The numpy-style dtype name (`"int64"`, `"float64"`, `"uint8"`, `"datetime64[s]"`,
    /// `"category"`).
    #[getter]
    fn dtype(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.with_column(py, |c, _| Ok(dtype_name(c.column_type())))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_column(py, |c, _| Ok(c.len()))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (dtype, rows) =
            self.with_column(py, |c, _| Ok((dtype_name(c.column_type()), c.len())))?;
        Ok(format!(
            "<farmem.Column {:?} {dtype}, {rows} rows>",
            self.name
        ))
    }

    /// Every element as a numpy array (copied out of far memory chunk by chunk, GIL released):
    /// the column's dtype, `datetime64[s]` for timestamps, `object` (str) for categoricals.
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.with_column(py, |c, _| Ok(ColumnValues::read(c)?))?
            .into_numpy(py)
    }

    /// The numpy array protocol (`numpy.asarray(column)`); the data is always copied out of
    /// far memory, so `copy=False` is refused.
    #[pyo3(signature = (dtype = None, copy = None))]
    fn __array__<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if copy == Some(false) {
            return Err(PyValueError::new_err(
                "a farmem Column lives in far memory and cannot be viewed without a copy; \
                 use copy=None or copy=True",
            ));
        }
        let arr = self.to_numpy(py)?;
        match dtype {
            Some(d) if !d.is_none() => arr.call_method1("astype", (d,)),
            _ => Ok(arr),
        }
    }

    /// Number of values (every row has one).
    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_column(py, |c, _| {
            Ok(match c {
                AnyColumn::I64(c) | AnyColumn::Timestamp(c) => c.count()?,
                AnyColumn::F64(c) => c.count()?,
                AnyColumn::U8(c) => c.count()?,
                AnyColumn::Categorical(c) => c.codes().count()?,
                AnyColumn::Categorical16(c) => c.codes().count()?,
            })
        })
    }

    /// Sum of a numeric column, added in row order (exact for integers: an `int`; a `float`
    /// for `float64`).
    fn sum(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.with_column(py, |c, name| {
            Ok(match c {
                AnyColumn::I64(c) => Scalar::Int(c.sum()?),
                AnyColumn::F64(c) => Scalar::Float(c.sum()?),
                AnyColumn::U8(c) => Scalar::Int(c.sum()?.into()),
                other => return Err(wrong_type("sum", other, name)),
            })
        })?
        .into_py(py)
    }

    /// Mean of a numeric column as a float; `None` when empty.
    fn mean(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.with_column(py, |c, name| {
            let m = match c {
                AnyColumn::I64(c) => c.mean()?,
                AnyColumn::F64(c) => c.mean()?,
                AnyColumn::U8(c) => c.mean()?,
                other => return Err(wrong_type("mean", other, name)),
            };
            Ok(opt(m, Scalar::Float))
        })?
        .into_py(py)
    }

    /// Smallest value (`numpy.datetime64` for timestamps); `None` when empty.
    fn min(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.extreme(py, End::Min, "min")
    }

    /// Largest value (`numpy.datetime64` for timestamps); `None` when empty.
    fn max(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.extreme(py, End::Max, "max")
    }

    /// The distinct values, ascending, as a numpy array (strings for a categorical column).
    fn unique<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.with_column(py, |c, _| {
            Ok(match c {
                AnyColumn::I64(c) => ColumnValues::I64(c.unique()?),
                AnyColumn::F64(c) => ColumnValues::F64(c.unique()?),
                AnyColumn::U8(c) => ColumnValues::U8(c.unique()?),
                AnyColumn::Timestamp(c) => ColumnValues::Timestamp(c.unique()?),
                AnyColumn::Categorical(c) => {
                    let present = c.codes().unique()?.into_iter().map(usize::from);
                    ColumnValues::Text(categories(c.dictionary(), present))
                }
                AnyColumn::Categorical16(c) => {
                    let present = c.codes().unique()?.into_iter().map(usize::from);
                    ColumnValues::Text(categories(c.dictionary(), present))
                }
            })
        })?
        .into_numpy(py)
    }
}

/// The categories of the codes `present`, sorted (a code outside the dictionary is skipped:
/// the loader never writes one).
fn categories(dictionary: &[String], present: impl Iterator<Item = usize>) -> Vec<String> {
    let mut out: Vec<String> = present
        .filter_map(|code| dictionary.get(code).cloned())
        .collect();
    out.sort();
    out
}
