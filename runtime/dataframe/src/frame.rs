//! `DataFrame`: named, typed columns of equal length over one [`Storage`].
//!
//! Columns are typed once, at load time, from a [`Schema`](crate::Schema); the typed accessors
//! (`i64`, `f64`, `u8`, `timestamp`, `categorical`) fail with `NotFound` or `InvalidArgument`
//! naming the column, so analysis code never guesses. A categorical column is a small local
//! dictionary of strings plus a column of codes (`u8`, or `u16` for more than 256 categories):
//! only the codes go to far memory.

use std::collections::HashMap;

use farmem_error::{Error, ErrorKind, Result};

use crate::column::ColumnStore;
use crate::element::{CmpOp, Element, RowSet};
use crate::storage::Storage;

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// 64-bit signed integers.
    I64,
    /// 64-bit floats.
    F64,
    /// Small unsigned integers (0..=255) or flags.
    U8,
    /// `YYYY-MM-DD HH:MM:SS` text stored as seconds since the epoch (`i64`).
    Timestamp,
    /// Strings from a small dictionary, stored as `u8` codes (at most 256 categories).
    Categorical,
    /// Strings from a dictionary of up to 65536 entries, stored as `u16` codes.
    Categorical16,
}

/// A categorical column: a local dictionary and a column of codes indexing it.
pub struct Categorical<C> {
    dictionary: Vec<String>,
    codes: C,
}

impl<C> Categorical<C> {
    /// A categorical column from its dictionary and codes (each code must index `dictionary`).
    pub fn new(dictionary: Vec<String>, codes: C) -> Categorical<C> {
        Categorical { dictionary, codes }
    }

    /// The categories, indexed by code.
    pub fn dictionary(&self) -> &[String] {
        &self.dictionary
    }

    /// The code column.
    pub fn codes(&self) -> &C {
        &self.codes
    }

    /// The code of `category`, if it occurs in the dictionary.
    pub fn code_of(&self, category: &str) -> Option<usize> {
        self.dictionary.iter().position(|c| c == category)
    }

    /// The rows whose category is `category` (empty if it never occurs).
    pub fn rows_equal<T>(&self, category: &str) -> Result<RowSet>
    where
        T: Element + TryFrom<usize>,
        C: ColumnStore<T>,
    {
        match self.code_of(category).and_then(|c| T::try_from(c).ok()) {
            Some(code) => self.codes.filter(CmpOp::Eq, code),
            None => Ok(RowSet::default()),
        }
    }

    /// Number of rows whose category is `category`.
    pub fn count_equal<T>(&self, category: &str) -> Result<usize>
    where
        T: Element + TryFrom<usize>,
        C: ColumnStore<T>,
    {
        match self.code_of(category).and_then(|c| T::try_from(c).ok()) {
            Some(code) => self.codes.count_where(CmpOp::Eq, code),
            None => Ok(0),
        }
    }
}

/// One column of any type.
pub enum AnyColumn<S: Storage> {
    /// An `i64` column.
    I64(S::Column<i64>),
    /// An `f64` column.
    F64(S::Column<f64>),
    /// A `u8` column.
    U8(S::Column<u8>),
    /// A timestamp column (seconds since the epoch).
    Timestamp(S::Column<i64>),
    /// A categorical column with `u8` codes.
    Categorical(Categorical<S::Column<u8>>),
    /// A categorical column with `u16` codes.
    Categorical16(Categorical<S::Column<u16>>),
}

impl<S: Storage> AnyColumn<S> {
    /// The column's type.
    pub fn column_type(&self) -> ColumnType {
        match self {
            AnyColumn::I64(_) => ColumnType::I64,
            AnyColumn::F64(_) => ColumnType::F64,
            AnyColumn::U8(_) => ColumnType::U8,
            AnyColumn::Timestamp(_) => ColumnType::Timestamp,
            AnyColumn::Categorical(_) => ColumnType::Categorical,
            AnyColumn::Categorical16(_) => ColumnType::Categorical16,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            AnyColumn::I64(c) | AnyColumn::Timestamp(c) => c.len(),
            AnyColumn::F64(c) => c.len(),
            AnyColumn::U8(c) => c.len(),
            AnyColumn::Categorical(c) => c.codes.len(),
            AnyColumn::Categorical16(c) => c.codes.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Named columns of equal length over one storage.
pub struct DataFrame<S: Storage> {
    storage: S,
    names: Vec<String>,
    columns: Vec<AnyColumn<S>>,
    index: HashMap<String, usize>,
}

macro_rules! typed_getter {
    ($(#[$doc:meta])* $fn:ident, $variant:ident, $t:ty, $ty:expr) => {
        $(#[$doc])*
        pub fn $fn(&self, name: &str) -> Result<&S::Column<$t>> {
            match self.column(name)? {
                AnyColumn::$variant(c) => Ok(c),
                other => Err(wrong_type(name, other.column_type(), $ty)),
            }
        }
    };
}

fn wrong_type(name: &str, found: ColumnType, wanted: ColumnType) -> Error {
    Error::invalid(format!(
        "column {name:?} has type {found:?}, not {wanted:?}; check the schema"
    ))
}

impl<S: Storage> DataFrame<S> {
    /// An empty frame on `storage`.
    pub fn new(storage: S) -> DataFrame<S> {
        DataFrame {
            storage,
            names: Vec::new(),
            columns: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The storage the columns live in.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Number of rows (0 for a frame without columns).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.len())
    }

    /// Column names, in order.
    pub fn column_names(&self) -> &[String] {
        &self.names
    }

    /// Adds (or replaces) column `name`; its length must equal [`rows`](Self::rows) unless the
    /// frame has no other column.
    pub fn add_column(&mut self, name: &str, column: AnyColumn<S>) -> Result<()> {
        let others = self.columns.len() - usize::from(self.index.contains_key(name));
        if others > 0 && column.len() != self.rows() {
            return Err(Error::invalid(format!(
                "column {name:?} has {} rows but the frame has {}; columns must be equally long",
                column.len(),
                self.rows()
            )));
        }
        match self.index.get(name) {
            Some(&i) => self.columns[i] = column,
            None => {
                self.index.insert(name.to_string(), self.columns.len());
                self.names.push(name.to_string());
                self.columns.push(column);
            }
        }
        Ok(())
    }

    /// Column `name` of any type; `NotFound` if there is none.
    pub fn column(&self, name: &str) -> Result<&AnyColumn<S>> {
        self.index
            .get(name)
            .map(|&i| &self.columns[i])
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no column {name:?}; the frame has {:?}", self.names),
                )
            })
    }

    /// Whether column `name` exists.
    pub fn has_column(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    typed_getter!(
        /// The `i64` column `name`.
        i64, I64, i64, ColumnType::I64
    );
    typed_getter!(
        /// The `f64` column `name`.
        f64, F64, f64, ColumnType::F64
    );
    typed_getter!(
        /// The `u8` column `name`.
        u8, U8, u8, ColumnType::U8
    );
    typed_getter!(
        /// The timestamp column `name` (seconds since the epoch).
        timestamp, Timestamp, i64, ColumnType::Timestamp
    );

    /// The categorical (`u8` codes) column `name`.
    pub fn categorical(&self, name: &str) -> Result<&Categorical<S::Column<u8>>> {
        match self.column(name)? {
            AnyColumn::Categorical(c) => Ok(c),
            other => Err(wrong_type(
                name,
                other.column_type(),
                ColumnType::Categorical,
            )),
        }
    }
}
