//! `farmem.DataFrame`: a taxi DataFrame whose columns live in a runtime's far memory, the nine
//! analysis steps of AIFM's NYC-taxi job (AIFM §6.2) as methods, and numpy/pandas interop.
//!
//! # Ownership and threads
//!
//! ```text
//!   PyDataFrame ──► Py<PyRuntime>        checked on every call: a closed runtime is `Closed`
//!               └─► Arc<FrameSlot> ── Mutex<Option<DataFrame<FarStorage>>>
//!                        ▲             Some: columns in the session's far memory; None: released
//!   PyRuntime.owned ─────┘ (Weak)      `Runtime.close()` releases the frame while the server is up
//!   PyColumn    ──► Py<PyDataFrame> + name   resolved on every call (steps may replace columns)
//! ```
//!
//! The frame follows the runtime's close protocol (`runtime.rs`): it is registered with
//! [`PyRuntime::own`], `close()` drops its columns (freeing their remote objects while the
//! memory server still runs), and every later call answers `farmem.Closed`.
//!
//! Every call that touches column data runs with the GIL released (`Python::detach`): it takes
//! the session `Arc` from the runtime first (so a concurrent `Runtime.close()` cannot tear the
//! session down under it; the teardown happens when the call drops its `Arc`), then locks the
//! frame *inside* the detached section. Locking only without the GIL means two Python threads
//! on one frame queue on the mutex and never deadlock against the GIL. Results are plain Rust
//! values built without the GIL and turned into Python objects after it is taken back.
//!
//! Steps run on the calling thread, as `farmem-demo` runs them: far-memory scans park the OS
//! thread on a miss, which is what a Python caller expects of a blocking call.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use farmem::dataframe::taxi;
use farmem::dataframe::{generate, load_csv, ColumnType, DataFrame, FarStorage, LoadOptions};
use farmem::dataframe::{LoadReport, Schema};
use farmem::{Error, ErrorKind};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};

use crate::errors::{closed, to_py_err};
use crate::runtime::{PyRuntime, Release};

#[path = "dataframe_column.rs"]
mod column;
#[path = "taxi.rs"]
mod taxi_results;
#[path = "dataframe_values.rs"]
mod values;

pub(crate) use column::PyColumn;
use values::ColumnValues;

/// A frame whose columns live in one session's far memory.
pub(crate) type FarFrame = DataFrame<FarStorage>;

/// Registers `DataFrame`, `Column` and `generate_taxi_csv` in the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDataFrame>()?;
    m.add_class::<PyColumn>()?;
    m.add_function(wrap_pyfunction!(generate_taxi_csv, m)?)?;
    Ok(())
}

/// Why a DataFrame call failed: a farmem error (mapped to its exception class), an operation
/// that the column's type does not have (`TypeError`, as Python does for `sum` of strings), or
/// a frame released by `Runtime.close()`.
pub(crate) enum Failure {
    /// A farmem error.
    Farmem(Error),
    /// The column's type has no such operation.
    WrongType(String),
    /// The runtime was closed and released the frame.
    Released,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Farmem(e)
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f {
            Failure::Farmem(e) => to_py_err(e),
            Failure::WrongType(m) => PyTypeError::new_err(m),
            Failure::Released => closed("farmem.DataFrame"),
        }
    }
}

/// The frame, shared with the runtime's list of objects to release on close.
struct FrameSlot {
    frame: Mutex<Option<FarFrame>>,
}

impl Release for FrameSlot {
    fn release(&self) {
        let frame = self
            .frame
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(frame);
    }
}

/// A columnar DataFrame in far memory, loaded with `DataFrame.read_csv`.
#[pyclass(name = "DataFrame", module = "farmem", frozen)]
pub(crate) struct PyDataFrame {
    runtime: Py<PyRuntime>,
    slot: Arc<FrameSlot>,
    source: String,
    report: LoadReport,
}

impl PyDataFrame {
    /// Runs `f` on the frame with the GIL released, holding the session open meanwhile.
    pub(crate) fn with_frame<R, F>(&self, py: Python<'_>, f: F) -> PyResult<R>
    where
        R: Send,
        F: Send + FnOnce(&mut FarFrame) -> Result<R, Failure>,
    {
        let session = self.runtime.bind(py).borrow().session()?;
        let slot = &self.slot;
        let out = py.detach(move || {
            // Panics are caught below, so nothing poisons the lock while holding it.
            let mut frame = slot.frame.lock().unwrap_or_else(PoisonError::into_inner);
            let out = match frame.as_mut() {
                // A panic becomes `farmem.Panicked` (an `Exception`) instead of pyo3's
                // `PanicException` (a `BaseException` that `except Exception` misses). Every
                // step adds its column last, so a panic leaves the frame as it was.
                Some(frame) => catch_unwind(AssertUnwindSafe(|| f(frame)))
                    .unwrap_or_else(|payload| Err(Failure::Farmem(panicked(payload)))),
                None => Err(Failure::Released),
            };
            drop(frame);
            // Dropped here, without the GIL: the last `Arc` of a closed runtime tears it down.
            drop(session);
            out
        });
        out.map_err(PyErr::from)
    }
}

/// The `Panicked` error for a caught panic, with its message.
fn panicked(payload: Box<dyn Any + Send>) -> Error {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    Error::new(
        ErrorKind::Panicked,
        format!("a DataFrame operation panicked: {msg}; this is a farmem bug, please report it"),
    )
}

/// The numpy-style name of a column type, as `DataFrame.dtypes` and `Column.dtype` give it.
pub(crate) fn dtype_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::I64 => "int64",
        ColumnType::F64 => "float64",
        ColumnType::U8 => "uint8",
        ColumnType::Timestamp => "datetime64[s]",
        ColumnType::Categorical | ColumnType::Categorical16 => "category",
    }
}

/// The column type a schema dtype name stands for (numpy names and farmem's short ones).
fn parse_dtype(column: &str, name: &str) -> PyResult<ColumnType> {
    Ok(match name.trim() {
        "int64" | "i64" => ColumnType::I64,
        "float64" | "f64" => ColumnType::F64,
        "uint8" | "u8" => ColumnType::U8,
        "datetime64[s]" | "datetime" | "timestamp" => ColumnType::Timestamp,
        "category" | "categorical" => ColumnType::Categorical,
        "category16" | "categorical16" => ColumnType::Categorical16,
        other => {
            return Err(PyValueError::new_err(format!(
                "column {column:?}: unknown dtype {other:?}; use one of int64, float64, uint8, \
                 datetime64[s], category (at most 256 values) or category16"
            )))
        }
    })
}

/// `schema=` of `read_csv`: `None` or `"taxi"`, or a dict of column name to dtype in file order.
fn schema_from(schema: Option<&Bound<'_, PyAny>>) -> PyResult<Schema> {
    let Some(schema) = schema else {
        return Ok(Schema::taxi());
    };
    if let Ok(name) = schema.extract::<String>() {
        return match name.as_str() {
            "taxi" => Ok(Schema::taxi()),
            other => Err(PyValueError::new_err(format!(
                "unknown schema {other:?}; pass \"taxi\" or a dict of column name to dtype"
            ))),
        };
    }
    let Ok(fields) = schema.cast::<PyDict>() else {
        return Err(PyTypeError::new_err(format!(
            "schema must be \"taxi\" or a dict of column name to dtype, not {}",
            schema.get_type().name()?
        )));
    };
    if fields.is_empty() {
        return Err(PyValueError::new_err(
            "the schema dict is empty; name every column of the file in order",
        ));
    }
    let mut parsed: Vec<(String, ColumnType)> = Vec::with_capacity(fields.len());
    for (name, dtype) in fields.iter() {
        let name: String = name.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "schema keys must be column names (str), not {name:?}"
            ))
        })?;
        let ty = parse_dtype(&name, &dtype.str()?.to_cow()?)?;
        parsed.push((name, ty));
    }
    let fields: Vec<(&str, ColumnType)> = parsed.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    Ok(Schema::new(&fields))
}

/// `farmem.IoError(ENOENT, message, path)` for a CSV path that is not a file: an `OSError` with
/// `errno` and `filename` set, as `open()` and `pandas.read_csv` report a missing file (so both
/// `except OSError` and `except farmem.FarmemError` catch it).
fn no_such_file(py: Python<'_>, path: &str) -> PyErr {
    let message = format!(
        "read_csv: {path:?} is not a file (missing, or a directory); pass the path of a CSV file"
    );
    let made = py.import("errno").and_then(|errno| {
        let enoent = errno.getattr("ENOENT")?;
        let cls = py.import("farmem._farmem")?.getattr("IoError")?;
        cls.call1((enoent, message.clone(), path))
    });
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => to_py_err(Error::new(ErrorKind::Io, message)),
    }
}

/// The key column of a grouped-median step, as the `'static` name the Rust step wants.
fn median_key(by: &str) -> PyResult<&'static str> {
    match by {
        taxi::PICKUP_DAY => Ok(taxi::PICKUP_DAY),
        taxi::PICKUP_MONTH => Ok(taxi::PICKUP_MONTH),
        other => Err(PyValueError::new_err(format!(
            "median_duration_by({other:?}): group by \"pickup_day\" (step 8) or \"pickup_month\" \
             (step 9)"
        ))),
    }
}

#[pymethods]
impl PyDataFrame {
    /// Loads a CSV file into far-memory columns of `runtime`.
    #[classmethod]
    #[pyo3(signature = (path, runtime, schema = None, *, skip_bad_rows = false, threads = 0))]
    fn read_csv(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path: PathBuf,
        runtime: Py<PyRuntime>,
        schema: Option<&Bound<'_, PyAny>>,
        skip_bad_rows: bool,
        threads: usize,
    ) -> PyResult<PyDataFrame> {
        let schema = schema_from(schema)?;
        let session = runtime.bind(py).borrow().session()?;
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(no_such_file(py, &shown));
        }
        let loaded = py.detach(|| {
            let opts = LoadOptions {
                threads,
                skip_bad_rows,
                progress: None,
            };
            let loaded = load_csv(&path, &schema, &session.storage(), opts);
            drop(session);
            loaded
        });
        let (frame, report) = loaded.map_err(to_py_err)?;
        let slot = Arc::new(FrameSlot {
            frame: Mutex::new(Some(frame)),
        });
        let weak: Weak<dyn Release> = Arc::downgrade(&slot) as Weak<dyn Release>;
        // Fails with `Closed` if the runtime closed while the file loaded; the frame drops here.
        runtime.get().own(weak)?;
        Ok(PyDataFrame {
            runtime,
            slot,
            source: shown,
            report,
        })
    }

    /// Number of rows.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_frame(py, |f| Ok(f.rows()))
    }

    /// Column names, in order (derived columns appear after the step that adds them).
    #[getter]
    fn columns(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_frame(py, |f| Ok(f.column_names().to_vec()))
    }

    /// Column name to numpy-style dtype name, in column order.
    #[getter]
    fn dtypes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let types = self.with_frame(py, |f| {
            let mut out = Vec::new();
            for name in f.column_names() {
                out.push((name.clone(), f.column(name)?.column_type()));
            }
            Ok(out)
        })?;
        let d = PyDict::new(py);
        for (name, t) in types {
            d.set_item(name, dtype_name(t))?;
        }
        Ok(d)
    }

    /// `(rows, columns)`.
    #[getter]
    fn shape(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
        self.with_frame(py, |f| Ok((f.rows(), f.column_names().len())))
    }

    /// Malformed rows skipped by `read_csv(..., skip_bad_rows=True)`.
    #[getter]
    fn bad_rows(&self) -> usize {
        self.report.bad_rows
    }

    /// The error of the first skipped row, if any row was skipped.
    #[getter]
    fn first_bad_row(&self) -> Option<String> {
        self.report.first_bad_row.clone()
    }

    /// The column `name`; `farmem.NotFound` if there is none.
    fn __getitem__(slf: &Bound<'_, Self>, name: &Bound<'_, PyAny>) -> PyResult<PyColumn> {
        let Ok(name) = name.extract::<String>() else {
            return Err(PyTypeError::new_err(format!(
                "DataFrame[...] takes a column name (str), not {}",
                name.get_type().name()?
            )));
        };
        let py = slf.py();
        let lookup = name.clone();
        slf.get().with_frame(py, move |f| {
            f.column(&lookup)?;
            Ok(())
        })?;
        Ok(PyColumn::new(slf.clone().unbind(), name))
    }

    fn __contains__(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(name) = name.extract::<String>() else {
            return Ok(false);
        };
        self.with_frame(py, move |f| Ok(f.has_column(&name)))
    }

    /// Iterates over the column names, as a pandas DataFrame does.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let names = self.columns(py)?;
        PyList::new(py, names)?.try_iter().map(Bound::into_any)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (rows, cols) = self.shape(py)?;
        Ok(format!(
            "<farmem.DataFrame {rows} rows x {cols} columns from {:?}>",
            self.source
        ))
    }

    /// Every column as a pandas DataFrame (all data is copied into local memory): integers and
    /// floats as their numpy dtypes, timestamps as `datetime64[s]`, categoricals as
    /// `pandas.Categorical` with sorted categories.
    fn to_pandas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let cols = self.with_frame(py, |f| {
            let mut out = Vec::with_capacity(f.column_names().len());
            for name in f.column_names() {
                out.push((name.clone(), ColumnValues::read(f.column(name)?)?));
            }
            Ok(out)
        })?;
        let pandas = py.import("pandas")?;
        let data = PyDict::new(py);
        for (name, values) in cols {
            data.set_item(name, values.into_pandas(py, &pandas)?)?;
        }
        pandas.getattr("DataFrame")?.call1((data,))
    }

    /// Step 1: `{"count": rows with a VendorID, "unique": [distinct VendorIDs, ascending]}`.
    fn vendor_summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.with_frame(py, |f| Ok(taxi::vendor_summary(f)?))?;
        taxi_results::vendor_summary(py, &r)
    }

    /// Steps 2 and 3: `{passenger_count: trips}` of `vendor`'s trips, ascending by count.
    fn passenger_histogram<'py>(
        &self,
        py: Python<'py>,
        vendor: i64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.with_frame(py, move |f| Ok(taxi::passenger_histogram(f, vendor)?))?;
        taxi_results::counts(py, &r.counts)
    }

    /// Step 4: adds `duration` (seconds) and returns `{"max", "min", "mean"}` of it (`None`
    /// each for an empty frame).
    fn trip_duration<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.with_frame(py, |f| Ok(taxi::trip_duration(f)?))?;
        taxi_results::duration(py, &r)
    }

    /// Step 5: `{"rows", "n_rows", "n_share", "y_vendors"}` of `store_and_fwd_flag`.
    fn store_and_forward<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.with_frame(py, |f| Ok(taxi::store_and_forward(f)?))?;
        taxi_results::store_and_forward(py, &r)
    }

    /// Step 6: adds `haversine_distance` (km) and returns how many trips exceed 100 km.
    fn long_trips(&self, py: Python<'_>) -> PyResult<usize> {
        let r = self.with_frame(py, |f| Ok(taxi::long_trips(f)?))?;
        Ok(r.over_100km)
    }

    /// Step 7: adds `pickup_hour`, `pickup_day` (0 = Sunday) and `pickup_month`; returns their
    /// histograms and the first 10 rows.
    fn pickup_time_parts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.with_frame(py, |f| Ok(taxi::pickup_time_parts(f)?))?;
        taxi_results::pickup_parts(py, &r)
    }

    /// Steps 8 (`"pickup_day"`) and 9 (`"pickup_month"`): `{key: median duration in seconds}`.
    /// Needs steps 4 and 7 first (`farmem.NotFound` names the missing column otherwise).
    fn median_duration_by<'py>(&self, py: Python<'py>, by: &str) -> PyResult<Bound<'py, PyDict>> {
        let key = median_key(by)?;
        let r = self.with_frame(py, move |f| Ok(taxi::median_duration_by(f, key)?))?;
        taxi_results::medians(py, &r.medians)
    }

    /// Runs the nine steps in order; returns every result (as the step methods give them) and
    /// `"timings"`, `{step name: seconds}`. `echo=True` also writes the text report to
    /// `sys.stdout`.
    #[pyo3(signature = (*, echo = false))]
    fn run_all<'py>(&self, py: Python<'py>, echo: bool) -> PyResult<Bound<'py, PyDict>> {
        let (r, text) = self.with_frame(py, |f| {
            let mut text = Vec::new();
            let r = taxi::run_all(f, &mut text)?;
            Ok((r, text))
        })?;
        if echo {
            py.import("sys")?
                .getattr("stdout")?
                .call_method1("write", (String::from_utf8_lossy(&text),))?;
        }
        taxi_results::all(py, &r)
    }
}

/// Writes a seeded TLC-like taxi CSV of `rows` rows to `path`; returns its size in bytes.
#[pyfunction]
#[pyo3(signature = (path, rows, seed = 42))]
fn generate_taxi_csv(py: Python<'_>, path: PathBuf, rows: u64, seed: u64) -> PyResult<u64> {
    py.detach(|| generate(&path, rows, seed, None))
        .map_err(to_py_err)
}
