//! `ColumnStore`: the plug-in point between the DataFrame and where a column's elements live.
//!
//! A column is a sequence of [`Element`]s reached in chunks. An implementation provides six
//! primitives (length, one element, append one, append many, visit a range chunk by chunk, make
//! an empty column of the same kind); every analysis operation (count, sum, min, max, mean,
//! median, unique, histogram, filter, gather, and the histogram and unique of a row set without
//! gathering it) is a provided method written over those
//! primitives, so the plain-`Vec` [`LocalColumn`](crate::LocalColumn) gets them for free.
//!
//! A far-memory column over `farmem_objects::RemVec` implements the primitives with
//! `RemVec::len`, `get`, `push`, `extend_from_slice` and `chunk` (one `DerefScope` per chunk
//! visit), and then **overrides** the aggregates it can run next to the data (AIFM §5, remote
//! agent offload: the memory server computes the sum, the histogram or the selected row indices
//! and returns only that result). An override must return exactly what the provided method
//! returns on the same elements: the orders are total ([`Element::total_cmp`]), the
//! accumulators are exact for integers, and floating-point sums add in row order. The
//! differential tests in `tests/dataframe_steps.rs` are generic over [`Storage`](crate::Storage)
//! so a far-memory storage runs the same checks.
//!
//! Every method returns `Result`: a far-memory column can fail (server gone, out of memory);
//! the local one never does.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Range;

use farmem_error::{Error, Result};

use crate::element::{check_row_index_range, CmpOp, Element, RowSet};

/// Rows copied per step by the provided methods that walk several columns or gather.
pub(crate) const BLOCK_ROWS: usize = 64 * 1024;

/// Storage of one column of `T`; see the module docs for the contract of the provided methods.
pub trait ColumnStore<T: Element>: Send + Sync + Sized {
    /// Number of elements.
    fn len(&self) -> usize;

    /// Element `i`; `InvalidArgument` if `i >= len()`.
    fn get(&self, i: usize) -> Result<T>;

    /// Appends `v`.
    fn push(&mut self, v: T) -> Result<()>;

    /// Appends every element of `src`, in order.
    fn extend_from_slice(&mut self, src: &[T]) -> Result<()>;

    /// Calls `f(offset, chunk)` for consecutive chunks covering `range` in order, where `chunk`
    /// holds the elements at rows `offset..offset + chunk.len()`. Stops at the first error `f`
    /// returns. `InvalidArgument` if `range` is not within `0..len()`.
    fn for_each_chunk_in<F>(&self, range: Range<usize>, f: F) -> Result<()>
    where
        F: FnMut(usize, &[T]) -> Result<()>;

    /// A new, empty column stored the same way as `self` (same far-memory instance, say).
    fn empty_like(&self) -> Result<Self>;

    /// Writes the column's elements back to where the column keeps them for good and keeps
    /// them cached, clean: a far-memory column writes its dirty local chunks to its memory
    /// server, so that evicting them later drops them instead of writing them back on the way
    /// (the CSV loader calls it once a column is complete). The default, for local columns,
    /// does nothing.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Makes room for `additional` more elements ahead of the appends that will add them (a
    /// far-memory column creates all their chunks in one request to its memory server). Only a
    /// hint: the default does nothing.
    fn reserve(&mut self, additional: usize) -> Result<()> {
        let _ = additional;
        Ok(())
    }

    /// Whether the column has no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f(chunk)` for consecutive chunks covering the whole column in order.
    fn for_each_chunk<F>(&self, mut f: F) -> Result<()>
    where
        F: FnMut(&[T]) -> Result<()>,
    {
        self.for_each_chunk_in(0..self.len(), |_, c| f(c))
    }

    /// Copies rows `start..start + dst.len()` into `dst`.
    fn copy_range(&self, start: usize, dst: &mut [T]) -> Result<()> {
        let end = start
            .checked_add(dst.len())
            .ok_or_else(|| Error::invalid(format!("row range starting at {start} overflows")))?;
        self.for_each_chunk_in(start..end, |off, c| {
            dst[off - start..off - start + c.len()].copy_from_slice(c);
            Ok(())
        })
    }

    /// All elements, in order, in a local `Vec`.
    fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each_chunk(|c| {
            out.extend_from_slice(c);
            Ok(())
        })?;
        Ok(out)
    }

    /// Number of elements (an offloadable aggregate, like the others).
    fn count(&self) -> Result<usize> {
        Ok(self.len())
    }

    /// Sum of all elements in the wide accumulator, added in row order.
    fn sum(&self) -> Result<T::Sum> {
        let mut acc = T::Sum::default();
        self.for_each_chunk(|c| {
            for &v in c {
                acc = T::accumulate(acc, v);
            }
            Ok(())
        })?;
        Ok(acc)
    }

    /// Smallest element under the total order; `None` when empty.
    fn min(&self) -> Result<Option<T>> {
        extreme(self, Ordering::Less)
    }

    /// Largest element under the total order; `None` when empty.
    fn max(&self) -> Result<Option<T>> {
        extreme(self, Ordering::Greater)
    }

    /// `sum / count` as `f64`; `None` when empty.
    fn mean(&self) -> Result<Option<f64>> {
        let n = self.len();
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(T::sum_to_f64(self.sum()?) / n as f64))
    }

    /// The median under the total order: the middle element for an odd count, the mean of the
    /// two middle ones (`(lo + hi) / 2` in `f64`) for an even count; `None` when empty.
    fn median(&self) -> Result<Option<f64>> {
        let mut v = self.to_vec()?;
        Ok(median_in_place(&mut v))
    }

    /// The distinct elements, ascending under the total order.
    fn unique(&self) -> Result<Vec<T>> {
        Ok(self.histogram()?.into_iter().map(|(v, _)| v).collect())
    }

    /// Each distinct element with its number of occurrences, ascending by element.
    fn histogram(&self) -> Result<Vec<(T, u64)>> {
        let mut h = Histogram::default();
        self.for_each_chunk(|c| {
            h.add_all(c);
            Ok(())
        })?;
        h.finish()
    }

    /// The histogram of the elements at `rows` only: what `gather(rows)?.histogram()` returns,
    /// without making the gathered column (a far one would be created, written and read once).
    fn histogram_of(&self, rows: &RowSet) -> Result<Vec<(T, u64)>> {
        let mut h = Histogram::default();
        for_each_selected(self, rows, "histogram_of", |v| {
            h.add(v);
            Ok(())
        })?;
        h.finish()
    }

    /// The distinct elements at `rows`, ascending: `gather(rows)?.unique()` without the
    /// gathered column.
    fn unique_of(&self, rows: &RowSet) -> Result<Vec<T>> {
        Ok(self
            .histogram_of(rows)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// The rows whose element `x` satisfies `x <op> value`.
    fn filter(&self, op: CmpOp, value: T) -> Result<RowSet> {
        check_row_index_range(self.len())?;
        let mut rows = Vec::new();
        self.for_each_chunk_in(0..self.len(), |off, c| {
            for (j, x) in c.iter().enumerate() {
                if op.holds(x, &value) {
                    // Fits: len() <= u32::MAX was checked above.
                    rows.push((off + j) as u32);
                }
            }
            Ok(())
        })?;
        Ok(RowSet::from_sorted_unchecked(rows))
    }

    /// Number of elements `x` with `x <op> value` (a filter that returns only its size).
    fn count_where(&self, op: CmpOp, value: T) -> Result<usize> {
        let mut n = 0;
        self.for_each_chunk(|c| {
            n += c.iter().filter(|x| op.holds(*x, &value)).count();
            Ok(())
        })?;
        Ok(n)
    }

    /// A new column (stored like `self`) holding the elements at `rows`, in order.
    fn gather(&self, rows: &RowSet) -> Result<Self> {
        let mut out = self.empty_like()?;
        if selected_span(self, rows, "gather")?.is_none() {
            return Ok(out);
        }
        out.reserve(rows.rows().len())?;
        let mut buf: Vec<T> = Vec::with_capacity(BLOCK_ROWS.min(rows.rows().len()));
        for_each_selected(self, rows, "gather", |v| {
            buf.push(v);
            if buf.len() == BLOCK_ROWS {
                out.extend_from_slice(&buf)?;
                buf.clear();
            }
            Ok(())
        })?;
        out.extend_from_slice(&buf)?;
        Ok(out)
    }
}

/// The rows from the first to the last of `rows` (`None` when it is empty);
/// `InvalidArgument` (naming `what`) for a row out of bounds of `col`.
fn selected_span<T: Element, C: ColumnStore<T>>(
    col: &C,
    rows: &RowSet,
    what: &str,
) -> Result<Option<Range<usize>>> {
    let idx = rows.rows();
    let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
        return Ok(None);
    };
    if last as usize >= col.len() {
        return Err(Error::invalid(format!(
            "{what}: row {last} out of bounds for a column of {} rows",
            col.len()
        )));
    }
    Ok(Some(first as usize..last as usize + 1))
}

/// Calls `f` with the element at each of `rows`, in order, over the chunks from the first
/// selected row to the last; stops at `f`'s first error. `InvalidArgument` (naming `what`) for
/// a row out of bounds.
fn for_each_selected<T: Element, C: ColumnStore<T>>(
    col: &C,
    rows: &RowSet,
    what: &str,
    mut f: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let Some(span) = selected_span(col, rows, what)? else {
        return Ok(());
    };
    let idx = rows.rows();
    let mut next = 0usize;
    col.for_each_chunk_in(span, |off, c| {
        let end = off + c.len();
        while next < idx.len() && (idx[next] as usize) < end {
            f(c[idx[next] as usize - off])?;
            next += 1;
        }
        Ok(())
    })
}

/// The counts behind [`ColumnStore::histogram`]: a counting array for elements with a
/// [`Element::dense_index`], a hash map for the others; one accumulator for every histogram so
/// they all return the same result for the same elements.
pub(crate) struct Histogram<T: Element> {
    dense: Vec<u64>,
    sparse: HashMap<T::Key, (T, u64)>,
}

impl<T: Element> Default for Histogram<T> {
    fn default() -> Self {
        Histogram {
            dense: Vec::new(),
            sparse: HashMap::new(),
        }
    }
}

impl<T: Element> Histogram<T> {
    pub(crate) fn add(&mut self, v: T) {
        match v.dense_index() {
            Some(i) => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, 0);
                }
                self.dense[i] += 1;
            }
            None => self.sparse.entry(v.key()).or_insert((v, 0)).1 += 1,
        }
    }

    pub(crate) fn add_all(&mut self, values: &[T]) {
        values.iter().for_each(|&v| self.add(v));
    }

    pub(crate) fn finish(self) -> Result<Vec<(T, u64)>> {
        if !self.dense.is_empty() {
            return dense_histogram(&self.dense);
        }
        let mut out: Vec<(T, u64)> = self.sparse.into_values().collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(out)
    }
}

/// Turns counts indexed by [`Element::dense_index`] into `(value, count)` pairs.
fn dense_histogram<T: Element>(dense: &[u64]) -> Result<Vec<(T, u64)>> {
    let mut out = Vec::new();
    for (i, &n) in dense.iter().enumerate().filter(|(_, &n)| n > 0) {
        let v = T::from_dense_index(i).ok_or_else(|| {
            Error::internal(format!(
                "{} gave dense index {i} but cannot map it back",
                T::NAME
            ))
        })?;
        out.push((v, n));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

fn extreme<T: Element, C: ColumnStore<T>>(col: &C, want: Ordering) -> Result<Option<T>> {
    let mut best = Extreme::new(want);
    col.for_each_chunk(|c| {
        c.iter().for_each(|&v| best.add(v));
        Ok(())
    })?;
    Ok(best.get())
}

/// The running min (`want` = `Less`) or max (`Greater`) of [`ColumnStore::min`] and
/// [`ColumnStore::max`] under the total order: the first of equal elements wins.
pub(crate) struct Extreme<T> {
    want: Ordering,
    best: Option<T>,
}

impl<T: Element> Extreme<T> {
    pub(crate) fn new(want: Ordering) -> Extreme<T> {
        Extreme { want, best: None }
    }

    pub(crate) fn add(&mut self, v: T) {
        match self.best {
            Some(b) if v.total_cmp(&b) != self.want => {}
            _ => self.best = Some(v),
        }
    }

    pub(crate) fn get(&self) -> Option<T> {
        self.best
    }
}

/// Max, min and mean of values seen batch by batch in row order, exactly as
/// [`ColumnStore::max`], [`ColumnStore::min`] and [`ColumnStore::mean`] compute them over a
/// column holding the same values (same total order, same accumulator, same addition order).
pub(crate) struct Summary<T: Element> {
    min: Extreme<T>,
    max: Extreme<T>,
    sum: T::Sum,
    count: usize,
}

impl<T: Element> Summary<T> {
    pub(crate) fn new() -> Summary<T> {
        Summary {
            min: Extreme::new(Ordering::Less),
            max: Extreme::new(Ordering::Greater),
            sum: T::Sum::default(),
            count: 0,
        }
    }

    pub(crate) fn add(&mut self, batch: &[T]) {
        for &v in batch {
            self.min.add(v);
            self.max.add(v);
            self.sum = T::accumulate(self.sum, v);
        }
        self.count += batch.len();
    }

    /// `(max, min, mean)`, each `None` when nothing was seen.
    pub(crate) fn get(&self) -> (Option<T>, Option<T>, Option<f64>) {
        let mean = (self.count > 0).then(|| T::sum_to_f64(self.sum) / self.count as f64);
        (self.max.get(), self.min.get(), mean)
    }
}

/// The median of `v` as defined by [`ColumnStore::median`]; reorders `v`.
pub fn median_in_place<T: Element>(v: &mut [T]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let (left, mid, _) = v.select_nth_unstable_by(n / 2, |a, b| a.total_cmp(b));
    let hi = *mid;
    if n % 2 == 1 {
        return Some(hi.to_f64());
    }
    let lo = left
        .iter()
        .copied()
        .max_by(|a, b| a.total_cmp(b))
        .unwrap_or(hi);
    Some((lo.to_f64() + hi.to_f64()) / 2.0)
}
