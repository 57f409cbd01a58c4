//! Column element types and the row selections that filters produce.
//!
//! [`Element`] is the closed set of plain-data types a column can hold: `u8` (flags, small
//! counts, categorical codes), `u16` (wide categorical codes), `i64` (integers and timestamps in
//! seconds since the epoch) and `f64`. It is an `unsafe trait` with the same contract as
//! `farmem_objects::Pod` (every bit pattern valid, no pointers, alignment at most 8), so a
//! far-memory column can store `Element`s in a `RemVec` through a `#[repr(transparent)]` wrapper
//! without this crate's element set and the object layer's drifting apart.
//!
//! Ordering is total everywhere (`f64` uses `total_cmp`: `-0.0 < 0.0`, NaN above +inf), so min,
//! max, median, unique and histograms are deterministic and a server-side implementation can
//! reproduce them bit for bit.

use std::cmp::Ordering;
use std::fmt::{Debug, Display};
use std::hash::Hash;

use farmem_error::{Error, Result};

/// A plain-data value a column can hold.
///
/// # Safety
/// Implement only for types that are `Copy`, contain no pointers or references, have no drop
/// glue, accept every bit pattern (all zeroes in particular) as a valid value and have alignment
/// at most 8: far-memory columns copy elements bytewise to and from memory servers.
pub unsafe trait Element:
    Copy + Send + Sync + Default + PartialEq + Debug + Display + 'static
{
    /// The type name used in messages (`"i64"`).
    const NAME: &'static str;
    /// A hashable key with the same total order as [`Element::total_cmp`].
    type Key: Ord + Hash + Copy + Send;
    /// The accumulator of [`sum`](crate::ColumnStore::sum): wide enough not to overflow on any
    /// column that fits in memory (`i128` for `i64`, `u64` for the small integers).
    type Sum: Copy + Default + PartialEq + Debug + Send;

    /// The total-order key of `self`.
    fn key(self) -> Self::Key;
    /// Total order over all values (for `f64`, [`f64::total_cmp`]).
    fn total_cmp(&self, other: &Self) -> Ordering;
    /// `self` as `f64` (exact for the small integers, rounded for large `i64`).
    fn to_f64(self) -> f64;
    /// `acc + self` in the accumulator type.
    fn accumulate(acc: Self::Sum, v: Self) -> Self::Sum;
    /// The accumulator as `f64` (for means).
    fn sum_to_f64(sum: Self::Sum) -> f64;
    /// A dense index `< 65536` for small types, so histograms can use a counting array.
    fn dense_index(self) -> Option<usize>;
    /// The value whose [`dense_index`](Element::dense_index) is `i`, for the small types.
    fn from_dense_index(i: usize) -> Option<Self>;

    /// The accumulator holding the exact integer sum `sum` (what a memory server's offloaded
    /// sum returns for an integer column); `None` for a float type or when it does not fit.
    fn sum_from_i128(sum: i128) -> Option<Self::Sum> {
        let _ = sum;
        None
    }

    /// The accumulator holding the row-order float sum `sum` (an offloaded sum of an `f64`
    /// column); `None` for an integer type.
    fn sum_from_f64(sum: f64) -> Option<Self::Sum> {
        let _ = sum;
        None
    }
}

macro_rules! small_uint_element {
    ($t:ty) => {
        // SAFETY: a primitive unsigned integer: every bit pattern valid, no pointers, align <= 8.
        unsafe impl Element for $t {
            const NAME: &'static str = stringify!($t);
            type Key = $t;
            type Sum = u64;
            fn key(self) -> $t {
                self
            }
            fn total_cmp(&self, other: &Self) -> Ordering {
                self.cmp(other)
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn accumulate(acc: u64, v: $t) -> u64 {
                acc + u64::from(v)
            }
            fn sum_to_f64(sum: u64) -> f64 {
                sum as f64
            }
            fn dense_index(self) -> Option<usize> {
                Some(usize::from(self))
            }
            fn from_dense_index(i: usize) -> Option<$t> {
                <$t>::try_from(i).ok()
            }
            fn sum_from_i128(sum: i128) -> Option<u64> {
                u64::try_from(sum).ok()
            }
        }
    };
}
small_uint_element!(u8);
small_uint_element!(u16);

// SAFETY: a primitive integer: every bit pattern valid, no pointers, alignment 8.
unsafe impl Element for i64 {
    const NAME: &'static str = "i64";
    type Key = i64;
    type Sum = i128;
    fn key(self) -> i64 {
        self
    }
    fn total_cmp(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn accumulate(acc: i128, v: i64) -> i128 {
        acc + i128::from(v)
    }
    fn sum_to_f64(sum: i128) -> f64 {
        sum as f64
    }
    fn dense_index(self) -> Option<usize> {
        None
    }
    fn from_dense_index(_: usize) -> Option<Self> {
        None
    }
    fn sum_from_i128(sum: i128) -> Option<i128> {
        Some(sum)
    }
}

// SAFETY: a primitive float: every bit pattern is some f64 (NaNs included), alignment 8.
unsafe impl Element for f64 {
    const NAME: &'static str = "f64";
    type Key = i64;
    type Sum = f64;
    fn key(self) -> i64 {
        // The key trick of `f64::total_cmp`: flip the magnitude bits of negatives so that the
        // signed integer order of the bits is the total order of the floats.
        let bits = self.to_bits() as i64;
        bits ^ ((((bits >> 63) as u64) >> 1) as i64)
    }
    fn total_cmp(&self, other: &Self) -> Ordering {
        f64::total_cmp(self, other)
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn accumulate(acc: f64, v: f64) -> f64 {
        acc + v
    }
    fn sum_to_f64(sum: f64) -> f64 {
        sum
    }
    fn dense_index(self) -> Option<usize> {
        None
    }
    fn from_dense_index(_: usize) -> Option<Self> {
        None
    }
    fn sum_from_f64(sum: f64) -> Option<f64> {
        Some(sum)
    }
}

/// A comparison of each element against a constant, for [`filter`](crate::ColumnStore::filter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `x == v`
    Eq,
    /// `x != v`
    Ne,
    /// `x < v`
    Lt,
    /// `x <= v`
    Le,
    /// `x > v`
    Gt,
    /// `x >= v`
    Ge,
}

impl CmpOp {
    /// Whether `x <op> v` holds, under the element's total order.
    pub fn holds<T: Element>(self, x: &T, v: &T) -> bool {
        let o = x.total_cmp(v);
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// The rows a filter selected: strictly increasing row indices.
///
/// Indices are `u32` to halve the memory of large selections; a column longer than `u32::MAX`
/// rows cannot be filtered (an `InvalidArgument` error says so).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowSet {
    rows: Vec<u32>,
}

impl RowSet {
    /// A selection from strictly increasing row indices; fails if they are not.
    pub fn from_sorted(rows: Vec<u32>) -> Result<RowSet> {
        if let Some(w) = rows.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::invalid(format!(
                "row indices must be strictly increasing, found {} then {}",
                w[0], w[1]
            )));
        }
        Ok(RowSet { rows })
    }

    /// Builds a selection from indices the caller pushes in increasing order (no check).
    pub(crate) fn from_sorted_unchecked(rows: Vec<u32>) -> RowSet {
        RowSet { rows }
    }

    /// The selected row indices, increasing.
    pub fn rows(&self) -> &[u32] {
        &self.rows
    }

    /// Number of selected rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is selected.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Checks that a column of `len` rows can be addressed by a [`RowSet`].
pub(crate) fn check_row_index_range(len: usize) -> Result<()> {
    if len > u32::MAX as usize {
        return Err(Error::invalid(format!(
            "a column of {len} rows is too long to filter: row selections hold u32 indices \
             (at most {} rows); split the data into several frames",
            u32::MAX
        )));
    }
    Ok(())
}
