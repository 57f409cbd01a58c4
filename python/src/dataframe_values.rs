//! Column data copied out of far memory, and its numpy and pandas forms.
//!
//! A [`ColumnValues`] is filled with the GIL released (each far column is read chunk by chunk,
//! one `DerefScope` per few chunks, by `ColumnStore::to_vec`), then handed to numpy without a
//! second copy (`PyArray::from_vec` adopts the `Vec`'s buffer). Timestamps become a
//! `datetime64[s]` view of the `int64` seconds; categoricals become strings (numpy) or a
//! `pandas.Categorical` whose categories are sorted, as `astype("category")` makes them.

use farmem::dataframe::{AnyColumn, ColumnStore, FarStorage};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The elements of one column, local.
pub(crate) enum ColumnValues {
    /// `int64`.
    I64(Vec<i64>),
    /// `float64`.
    F64(Vec<f64>),
    /// `uint8`.
    U8(Vec<u8>),
    /// Seconds since the epoch, shown as `datetime64[s]`.
    Timestamp(Vec<i64>),
    /// A dictionary (in the loader's order) and codes indexing it.
    Categorical {
        /// The categories, indexed by code.
        dictionary: Vec<String>,
        /// One code per row.
        codes: Codes,
    },
    /// Plain strings (the distinct values of a categorical column).
    Text(Vec<String>),
}

/// The codes of a categorical column (`u8` up to 256 categories, `u16` above).
pub(crate) enum Codes {
    /// `u8` codes.
    U8(Vec<u8>),
    /// `u16` codes.
    U16(Vec<u16>),
}

impl Codes {
    fn into_numpy<'py>(self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self {
            Codes::U8(v) => v.into_pyarray(py).into_any(),
            Codes::U16(v) => v.into_pyarray(py).into_any(),
        }
    }
}

impl ColumnValues {
    /// Copies every element of `col` out of far memory (call without the GIL).
    pub(crate) fn read(col: &AnyColumn<FarStorage>) -> farmem::Result<ColumnValues> {
        Ok(match col {
            AnyColumn::I64(c) => ColumnValues::I64(c.to_vec()?),
            AnyColumn::F64(c) => ColumnValues::F64(c.to_vec()?),
            AnyColumn::U8(c) => ColumnValues::U8(c.to_vec()?),
            AnyColumn::Timestamp(c) => ColumnValues::Timestamp(c.to_vec()?),
            AnyColumn::Categorical(c) => ColumnValues::Categorical {
                dictionary: c.dictionary().to_vec(),
                codes: Codes::U8(c.codes().to_vec()?),
            },
            AnyColumn::Categorical16(c) => ColumnValues::Categorical {
                dictionary: c.dictionary().to_vec(),
                codes: Codes::U16(c.codes().to_vec()?),
            },
        })
    }

    /// A 1-d numpy array: the column's dtype, `datetime64[s]` for timestamps, `object` (str)
    /// for categoricals and text.
    pub(crate) fn into_numpy<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            ColumnValues::I64(v) => v.into_pyarray(py).into_any(),
            ColumnValues::F64(v) => v.into_pyarray(py).into_any(),
            ColumnValues::U8(v) => v.into_pyarray(py).into_any(),
            ColumnValues::Timestamp(v) => v
                .into_pyarray(py)
                .call_method1("view", ("datetime64[s]",))?,
            ColumnValues::Categorical { dictionary, codes } => {
                object_array(py, dictionary)?.call_method1("take", (codes.into_numpy(py),))?
            }
            ColumnValues::Text(v) => object_array(py, v)?,
        })
    }

    /// The pandas form: numpy arrays as [`into_numpy`](Self::into_numpy) gives them, except
    /// categoricals, which become a `pandas.Categorical` with sorted categories.
    pub(crate) fn into_pandas<'py>(
        self,
        py: Python<'py>,
        pandas: &Bound<'py, PyModule>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ColumnValues::Categorical { dictionary, codes } = self else {
            return self.into_numpy(py);
        };
        // rank[old code] = position of that category in sorted order.
        let mut order: Vec<usize> = (0..dictionary.len()).collect();
        order.sort_by(|&a, &b| dictionary[a].cmp(&dictionary[b]));
        let mut rank = vec![0i32; dictionary.len()];
        for (pos, &code) in order.iter().enumerate() {
            // At most 65536 categories (u16 codes), so a position fits in i32.
            rank[code] = pos as i32;
        }
        let sorted: Vec<&str> = order.iter().map(|&c| dictionary[c].as_str()).collect();
        let new_codes = rank
            .into_pyarray(py)
            .call_method1("take", (codes.into_numpy(py),))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("categories", sorted)?;
        pandas
            .getattr("Categorical")?
            .call_method("from_codes", (new_codes,), Some(&kwargs))
    }
}

/// A numpy `object` array of Python strings.
fn object_array<'py, S: AsRef<str>>(py: Python<'py>, items: Vec<S>) -> PyResult<Bound<'py, PyAny>> {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", "object")?;
    py.import("numpy")?
        .getattr("array")?
        .call((items,), Some(&kwargs))
}
