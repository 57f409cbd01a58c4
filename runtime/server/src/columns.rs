//! The `column` remote function: aggregates, filters, gathers and maps over far-memory columns,
//! run next to the data (AIFM's remote agent, OSDI'20 §4.4: only results cross the network).
//!
//! The call and result encodings, and the exact semantics of every op, are specified in
//! [`farmem_net::compute`]; this module is the server half. Design:
//!
//! - **Streaming in chunk order.** A column is chunks `0..chunk_count` of one data structure;
//!   every op walks them in id order with [`StoreView::with_object`], one read lock per chunk,
//!   and never copies a chunk except where it must (`Pairwise` copies the right-hand chunk so it
//!   does not hold two locks at once). Only `Median` and `MedianPair` collect the column's values (it needs a
//!   sort); `Unique` and `Histogram` count distinct values (a dense array for `u8`/`u16`, else a
//!   hash map keyed by the value's bits) and sort only the distinct ones; nothing is ever
//!   pre-allocated from a client-supplied length, so a forged `len` fails on the first absent
//!   chunk instead of allocating.
//! - **Domains.** Elements are widened to `u64` / `i64` / `f64` ([`farmem_net::compute::Domain`])
//!   by the `Value` trait, so one generic implementation serves all six element types; map
//!   results are narrowed back by truncation, which is wrapping arithmetic modulo the width.
//! - **Writes** (`Map`, `Pairwise`) compute an output chunk under the input chunk's read lock,
//!   as long as the input chunk's object (elements past `len` written as zeros, so a client's
//!   fixed-size chunk objects read back whole; never sized from the client's `chunk_len`),
//!   release it, then store the chunk with [`StoreView::write_objects`] (never under a read lock,
//!   so `dst` may equal the input). A failure half-way (server full) leaves the chunks before it
//!   written; the call's error says which chunk failed.
//! - **Bad requests** are errors that name the column, chunk and value; a panic is contained by
//!   the registry ([`crate::agent::FunctionRegistry::call`]), so the server keeps serving.

use std::cmp::Ordering;

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::compute::{
    ArithOp, ColumnCall, ColumnOp, ColumnRef, ColumnResult, Domain, ElemType, Scalar,
};

use crate::store::StoreView;

/// The registered `column` function: decodes a [`ColumnCall`], runs it, encodes the result.
pub fn column(store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
    let call = ColumnCall::decode(args)?;
    Ok(run(store, &call)?.encode())
}

/// The registered `column_at` function ([`farmem_net::compute::COLUMN_AT_FUNCTION`]): the
/// same call, its input column placed at the data structure whose id prefixes the arguments
/// (what a client's `Backend::compute` sends).
pub fn column_at(store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
    let call = ColumnCall::decode_at(args)?;
    Ok(run(store, &call)?.encode())
}

/// The registered `column_with` function ([`farmem_net::compute::COLUMN_WITH_FUNCTION`]): the
/// same call, every column it names placed at the data structures whose ids prefix the
/// arguments (what a client's `Backend::compute_with` sends).
pub fn column_with(store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
    let call = ColumnCall::decode_with(args)?;
    Ok(run(store, &call)?.encode())
}

/// Runs a decoded call against `store`.
pub fn run(store: &StoreView<'_>, call: &ColumnCall) -> Result<ColumnResult> {
    match call.column.elem.domain() {
        Domain::Unsigned => run_typed::<u64>(store, call),
        Domain::Signed => run_typed::<i64>(store, call),
        Domain::Float => run_typed::<f64>(store, call),
    }
}

/// A column element widened into its domain.
trait Value: Copy {
    /// Reads one element of `bytes.len()` bytes (its element size).
    fn decode(bytes: &[u8]) -> Self;
    /// Total order (f64: IEEE total order, equal exactly when the bits are).
    fn order(&self, other: &Self) -> Ordering;
    /// The value of `s` if it is in this domain.
    fn from_scalar(s: Scalar) -> Option<Self>;
    /// As a wire scalar.
    fn to_scalar(self) -> Scalar;
    /// Exact integer value (`None` for f64).
    fn as_i128(self) -> Option<i128>;
    /// As f64 (for f64 sums).
    fn as_f64(self) -> f64;
    /// The element's bits as a `u64`; stored narrowed to the element's width (its low bytes,
    /// little-endian), which is wrapping arithmetic modulo the width.
    fn bits(self) -> u64;
    /// `self op rhs`; wrapping for integers, integer division by zero is an error.
    fn arith(self, op: ArithOp, rhs: Self) -> Result<Self>;
}

fn div_by_zero() -> Error {
    Error::invalid("column map: integer division by zero: filter out zero divisors first")
}

impl Value for u64 {
    fn bits(self) -> u64 {
        self
    }
    fn decode(bytes: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        u64::from_le_bytes(b)
    }
    fn order(&self, other: &u64) -> Ordering {
        self.cmp(other)
    }
    fn from_scalar(s: Scalar) -> Option<u64> {
        match s {
            Scalar::U64(v) => Some(v),
            _ => None,
        }
    }
    fn to_scalar(self) -> Scalar {
        Scalar::U64(self)
    }
    fn as_i128(self) -> Option<i128> {
        Some(self as i128)
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn arith(self, op: ArithOp, rhs: u64) -> Result<u64> {
        Ok(match op {
            ArithOp::Add => self.wrapping_add(rhs),
            ArithOp::Sub => self.wrapping_sub(rhs),
            ArithOp::Mul => self.wrapping_mul(rhs),
            ArithOp::Div => self.checked_div(rhs).ok_or_else(div_by_zero)?,
        })
    }
}

impl Value for i64 {
    fn bits(self) -> u64 {
        self as u64
    }
    fn decode(bytes: &[u8]) -> i64 {
        u64::decode(bytes) as i64
    }
    fn order(&self, other: &i64) -> Ordering {
        self.cmp(other)
    }
    fn from_scalar(s: Scalar) -> Option<i64> {
        match s {
            Scalar::I64(v) => Some(v),
            _ => None,
        }
    }
    fn to_scalar(self) -> Scalar {
        Scalar::I64(self)
    }
    fn as_i128(self) -> Option<i128> {
        Some(self as i128)
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn arith(self, op: ArithOp, rhs: i64) -> Result<i64> {
        Ok(match op {
            ArithOp::Add => self.wrapping_add(rhs),
            ArithOp::Sub => self.wrapping_sub(rhs),
            ArithOp::Mul => self.wrapping_mul(rhs),
            ArithOp::Div => {
                if rhs == 0 {
                    return Err(div_by_zero());
                }
                self.wrapping_div(rhs)
            }
        })
    }
}

impl Value for f64 {
    fn bits(self) -> u64 {
        self.to_bits()
    }
    fn decode(bytes: &[u8]) -> f64 {
        f64::from_bits(u64::decode(bytes))
    }
    fn order(&self, other: &f64) -> Ordering {
        self.total_cmp(other)
    }
    fn from_scalar(s: Scalar) -> Option<f64> {
        match s {
            Scalar::F64(v) => Some(v),
            _ => None,
        }
    }
    fn to_scalar(self) -> Scalar {
        Scalar::F64(self)
    }
    fn as_i128(self) -> Option<i128> {
        None
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn arith(self, op: ArithOp, rhs: f64) -> Result<f64> {
        Ok(match op {
            ArithOp::Add => self + rhs,
            ArithOp::Sub => self - rhs,
            ArithOp::Mul => self * rhs,
            ArithOp::Div => self / rhs,
        })
    }
}

fn scalar_in<V: Value>(col: &ColumnRef, s: Scalar, what: &str) -> Result<V> {
    V::from_scalar(s).ok_or_else(|| {
        Error::invalid(format!(
            "column {}: {what} {s:?} is not in the column's domain: a {:?} column takes a {:?} \
             scalar",
            col.ds,
            col.elem,
            col.elem.domain()
        ))
    })
}

/// Runs `f` on the bytes of chunk `c`'s elements below `len` (under the chunk's read lock),
/// after checking the chunk is present and well-formed.
fn with_chunk<R>(
    store: &StoreView<'_>,
    col: &ColumnRef,
    c: u64,
    f: impl FnOnce(&[u8]) -> Result<R>,
) -> Result<R> {
    with_chunk_sized(store, col, c, |bytes, _| f(bytes))
}

/// [`with_chunk`], also telling `f` the chunk object's whole length in bytes (elements past
/// `len` included), which an output chunk copies.
fn with_chunk_sized<R>(
    store: &StoreView<'_>,
    col: &ColumnRef,
    c: u64,
    f: impl FnOnce(&[u8], usize) -> Result<R>,
) -> Result<R> {
    let size = col.elem.size();
    let first = c.saturating_mul(col.chunk_len);
    let want = col.chunk_len.min(col.len.saturating_sub(first));
    store.with_object(col.ds, c, |data| {
        let Some(data) = data else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "column {}: chunk {c} (rows {first}..{}) is absent on the server: write back \
                     (flush) dirty chunks before offloading, or check len {}",
                    col.ds,
                    first.saturating_add(want),
                    col.len
                ),
            ));
        };
        if data.len() % size != 0 {
            return Err(Error::invalid(format!(
                "column {}: chunk {c} is {} bytes, not a whole number of {:?} elements ({size} \
                 bytes each): wrong element type?",
                col.ds,
                data.len(),
                col.elem
            )));
        }
        let held = (data.len() / size) as u64;
        if held > col.chunk_len {
            return Err(Error::invalid(format!(
                "column {}: chunk {c} holds {held} {:?} elements, more than chunk_len {}: wrong \
                 chunk_len or element type?",
                col.ds, col.elem, col.chunk_len
            )));
        }
        if held < want {
            return Err(Error::invalid(format!(
                "column {}: chunk {c} holds {held} elements but len {} needs {want} from it: len \
                 is beyond the column's data",
                col.ds, col.len
            )));
        }
        // `want <= held`, so this is within `data` and fits usize.
        f(&data[..want as usize * size], data.len())
    })?
}

/// Calls `f(row, value)` for every element below `len`, in row order.
fn for_each<V: Value>(
    store: &StoreView<'_>,
    col: &ColumnRef,
    mut f: impl FnMut(u64, V) -> Result<()>,
) -> Result<()> {
    // An absent data structure is NotFound even for an empty column.
    store.len(col.ds)?;
    let size = col.elem.size();
    for c in 0..col.chunk_count() {
        let first = c * col.chunk_len;
        with_chunk(store, col, c, |bytes| match size {
            1 => visit_fixed::<V, 1>(bytes, first, &mut f),
            2 => visit_fixed::<V, 2>(bytes, first, &mut f),
            4 => visit_fixed::<V, 4>(bytes, first, &mut f),
            8 => visit_fixed::<V, 8>(bytes, first, &mut f),
            _ => Err(Error::internal(format!("element size {size}"))),
        })?;
    }
    Ok(())
}

/// Calls `f(first + i, element i)` for a chunk's elements of a constant size `N` (one load
/// each; see [`arith_chunk`]).
fn visit_fixed<V: Value, const N: usize>(
    bytes: &[u8],
    first: u64,
    f: &mut impl FnMut(u64, V) -> Result<()>,
) -> Result<()> {
    for (i, e) in bytes.chunks_exact(N).enumerate() {
        f(first + i as u64, V::decode(e))?;
    }
    Ok(())
}

fn collect_sorted<V: Value>(store: &StoreView<'_>, col: &ColumnRef) -> Result<Vec<V>> {
    let mut values = collect::<V>(store, col)?;
    values.sort_unstable_by(V::order);
    Ok(values)
}

/// The column's elements in row order.
fn collect<V: Value>(store: &StoreView<'_>, col: &ColumnRef) -> Result<Vec<V>> {
    let mut values = Vec::new();
    for_each(store, col, |_, v: V| {
        values.push(v);
        Ok(())
    })?;
    Ok(values)
}

/// Elements `(len-1)/2` and `len/2` of the sorted column (`None` when empty), by selection
/// rather than a whole sort: one `select_nth_unstable` for the upper one, and for an even length
/// the largest element below it.
fn middle_pair<V: Value>(store: &StoreView<'_>, col: &ColumnRef) -> Result<Option<(V, V)>> {
    let mut values = collect::<V>(store, col)?;
    let n = values.len();
    if n == 0 {
        return Ok(None);
    }
    let (below, hi, _) = values.select_nth_unstable_by(n / 2, V::order);
    let hi = *hi;
    let lo = if n % 2 == 1 {
        hi
    } else {
        below.iter().copied().max_by(V::order).unwrap_or(hi)
    };
    Ok(Some((lo, hi)))
}

/// Each distinct value of the column with its count, ascending. Values are distinct when their
/// bits differ (the codec's equality); small types count into a dense array, the others into a
/// hash map whose distinct values alone are sorted, so a column with few distinct values is not
/// sorted whole.
fn value_counts<V: Value>(store: &StoreView<'_>, col: &ColumnRef) -> Result<Vec<(V, u64)>> {
    let size = col.elem.size();
    if size <= 2 && col.elem.domain() == Domain::Unsigned {
        let mut dense = vec![0u64; 1 << (8 * size)];
        for_each(store, col, |_, v: V| {
            if let Scalar::U64(x) = v.to_scalar() {
                if let Some(n) = dense.get_mut(x as usize) {
                    *n += 1;
                }
            }
            Ok(())
        })?;
        return Ok(dense
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .filter_map(|(x, &n)| V::from_scalar(Scalar::U64(x as u64)).map(|v| (v, n)))
            .collect());
    }
    let mut counts: std::collections::HashMap<u64, (V, u64)> = std::collections::HashMap::new();
    for_each(store, col, |_, v: V| {
        let bits = match v.to_scalar() {
            Scalar::U64(x) => x,
            Scalar::I64(x) => x as u64,
            Scalar::F64(x) => x.to_bits(),
        };
        counts.entry(bits).or_insert((v, 0)).1 += 1;
        Ok(())
    })?;
    let mut out: Vec<(V, u64)> = counts.into_values().collect();
    out.sort_unstable_by(|a, b| a.0.order(&b.0));
    Ok(out)
}

fn check_same_shape(col: &ColumnRef, other: &ColumnRef, role: &str) -> Result<()> {
    if other.elem != col.elem || other.chunk_len != col.chunk_len || other.len != col.len {
        return Err(Error::invalid(format!(
            "column {}: {role} column {} must match its element type, chunk_len and len \
             ({:?}, {}, {}), got ({:?}, {}, {})",
            col.ds,
            other.ds,
            col.elem,
            col.chunk_len,
            col.len,
            other.elem,
            other.chunk_len,
            other.len
        )));
    }
    Ok(())
}

/// Writes one output chunk, naming it when that fails.
fn store_chunk(store: &StoreView<'_>, dst: &ColumnRef, c: u64, bytes: &[u8]) -> Result<()> {
    store
        .write_objects(dst.ds, &[(c, bytes)])
        .map_err(|e| e.with_context(format!("writing chunk {c} of output column {}", dst.ds)))
}

fn run_typed<V: Value>(store: &StoreView<'_>, call: &ColumnCall) -> Result<ColumnResult> {
    let col = &call.column;
    let size = col.elem.size();
    Ok(match &call.op {
        ColumnOp::Count => {
            for_each(store, col, |_, _: V| Ok(()))?;
            ColumnResult::Count(col.len)
        }
        ColumnOp::Sum | ColumnOp::Mean => {
            let (int, float) = sum::<V>(store, col)?;
            if call.op == ColumnOp::Sum {
                match int {
                    Some(s) => ColumnResult::IntSum(s),
                    None => ColumnResult::FloatSum(float),
                }
            } else if col.len == 0 {
                ColumnResult::Mean(None)
            } else {
                let total = int.map_or(float, |s| s as f64);
                ColumnResult::Mean(Some(total / col.len as f64))
            }
        }
        ColumnOp::Min | ColumnOp::Max => {
            let want = if call.op == ColumnOp::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let mut best: Option<V> = None;
            for_each(store, col, |_, v: V| {
                if best.map_or(true, |b| v.order(&b) == want) {
                    best = Some(v);
                }
                Ok(())
            })?;
            ColumnResult::Scalar(best.map(V::to_scalar))
        }
        ColumnOp::Median => {
            let values = collect_sorted::<V>(store, col)?;
            let mid = values.len().saturating_sub(1) / 2;
            ColumnResult::Scalar(values.get(mid).map(|v| v.to_scalar()))
        }
        ColumnOp::MedianPair => ColumnResult::Values(
            middle_pair::<V>(store, col)?
                .map(|(lo, hi)| vec![lo.to_scalar(), hi.to_scalar()])
                .unwrap_or_default(),
        ),
        ColumnOp::Unique => ColumnResult::Values(
            value_counts::<V>(store, col)?
                .into_iter()
                .map(|(v, _)| v.to_scalar())
                .collect(),
        ),
        ColumnOp::Histogram => ColumnResult::ValueCounts(
            value_counts::<V>(store, col)?
                .into_iter()
                .map(|(v, n)| (v.to_scalar(), n))
                .collect(),
        ),
        ColumnOp::Buckets { edges } => {
            let edges: Vec<V> = edges
                .iter()
                .map(|e| scalar_in::<V>(col, *e, "bucket edge"))
                .collect::<Result<_>>()?;
            let mut counts = vec![0u64; edges.len().saturating_sub(1)];
            for_each(store, col, |_, v: V| {
                // Number of edges <= v: bucket i holds edges[i] <= v < edges[i+1].
                let above = edges.partition_point(|e| e.order(&v) != Ordering::Greater);
                if above > 0 && above < edges.len() {
                    counts[above - 1] += 1;
                }
                Ok(())
            })?;
            ColumnResult::BucketCounts(counts)
        }
        ColumnOp::Filter { cmp, value } | ColumnOp::CountWhere { cmp, value } => {
            let value = scalar_in::<V>(col, *value, "filter value")?;
            let mut rows = Vec::new();
            let mut count = 0u64;
            let keep_rows = matches!(call.op, ColumnOp::Filter { .. });
            for_each(store, col, |row, v: V| {
                if cmp.accepts(v.order(&value)) {
                    count += 1;
                    if keep_rows {
                        rows.push(row);
                    }
                }
                Ok(())
            })?;
            if keep_rows {
                ColumnResult::Indices(rows)
            } else {
                ColumnResult::Count(count)
            }
        }
        ColumnOp::Gather { indices } => {
            store.len(col.ds)?;
            let mut values = Vec::with_capacity(indices.len());
            for &row in indices {
                if row >= col.len {
                    return Err(Error::invalid(format!(
                        "column {}: gather index {row} is out of bounds for len {}",
                        col.ds, col.len
                    )));
                }
                let (c, at) = (row / col.chunk_len, (row % col.chunk_len) as usize);
                let v = with_chunk(store, col, c, |bytes| {
                    Ok(V::decode(&bytes[at * size..(at + 1) * size]))
                })?;
                values.push(v.to_scalar());
            }
            ColumnResult::Values(values)
        }
        ColumnOp::Map { op, value, dst } => {
            check_same_shape(col, dst, "map output")?;
            let value = scalar_in::<V>(col, *value, "map operand")?;
            store.len(col.ds)?;
            store.len(dst.ds)?;
            for c in 0..col.chunk_count() {
                let out = with_chunk_sized(store, col, c, |bytes, whole| {
                    let mut out = vec![0u8; whole];
                    arith_chunk(size, *op, bytes, Rhs::Scalar(value), &mut out)?;
                    Ok(out)
                })?;
                store_chunk(store, dst, c, &out)?;
            }
            ColumnResult::Count(col.len)
        }
        ColumnOp::Pairwise { op, other, dst } => {
            check_same_shape(col, other, "right-hand")?;
            check_same_shape(col, dst, "pairwise output")?;
            store.len(col.ds)?;
            store.len(other.ds)?;
            store.len(dst.ds)?;
            for c in 0..col.chunk_count() {
                let rhs = with_chunk(store, other, c, |bytes| Ok(bytes.to_vec()))?;
                let out = with_chunk_sized(store, col, c, |bytes, whole| {
                    let mut out = vec![0u8; whole];
                    arith_chunk::<V>(size, *op, bytes, Rhs::Column(&rhs), &mut out)?;
                    Ok(out)
                })?;
                store_chunk(store, dst, c, &out)?;
            }
            ColumnResult::Count(col.len)
        }
    })
}

/// The right-hand side of `Map` (one value) or `Pairwise` (a chunk's bytes, as long as the
/// left-hand chunk's elements below `len`).
enum Rhs<'a, V> {
    Scalar(V),
    Column(&'a [u8]),
}

/// `out[i] = lhs[i] op rhs[i]` over one chunk's elements of `size` bytes (1, 2, 4 or 8):
/// dispatched once per chunk to a loop whose element size is a constant, so decoding and
/// encoding an element are one load and one store (the generic per-element path cost about as
/// much as the arithmetic's whole scan). `out` is at least as long as `lhs`; its bytes past
/// `lhs` are left as they are.
fn arith_chunk<V: Value>(
    size: usize,
    op: ArithOp,
    lhs: &[u8],
    rhs: Rhs<'_, V>,
    out: &mut [u8],
) -> Result<()> {
    match size {
        1 => arith_fixed::<V, 1>(op, lhs, rhs, out),
        2 => arith_fixed::<V, 2>(op, lhs, rhs, out),
        4 => arith_fixed::<V, 4>(op, lhs, rhs, out),
        8 => arith_fixed::<V, 8>(op, lhs, rhs, out),
        _ => Err(Error::internal(format!("element size {size}"))),
    }
}

fn arith_fixed<V: Value, const N: usize>(
    op: ArithOp,
    lhs: &[u8],
    rhs: Rhs<'_, V>,
    out: &mut [u8],
) -> Result<()> {
    let outs = out.chunks_exact_mut(N);
    match rhs {
        Rhs::Scalar(value) => {
            for (a, o) in lhs.chunks_exact(N).zip(outs) {
                let v = V::decode(a).arith(op, value)?;
                o.copy_from_slice(&v.bits().to_le_bytes()[..N]);
            }
        }
        Rhs::Column(rhs) => {
            for ((a, b), o) in lhs.chunks_exact(N).zip(rhs.chunks_exact(N)).zip(outs) {
                let v = V::decode(a).arith(op, V::decode(b))?;
                o.copy_from_slice(&v.bits().to_le_bytes()[..N]);
            }
        }
    }
    Ok(())
}

/// Exact i128 sum for integers (`(Some(sum), _)`), sequential f64 sum in row order otherwise.
fn sum<V: Value>(store: &StoreView<'_>, col: &ColumnRef) -> Result<(Option<i128>, f64)> {
    let float = col.elem == ElemType::F64;
    let mut int = 0i128;
    let mut fsum = 0.0f64;
    for_each(store, col, |row, v: V| {
        match v.as_i128() {
            Some(x) if !float => {
                int = int.checked_add(x).ok_or_else(|| {
                    Error::invalid(format!(
                        "column {}: the sum overflows i128 at row {row}",
                        col.ds
                    ))
                })?;
            }
            _ => fsum += v.as_f64(),
        }
        Ok(())
    })?;
    Ok(if float {
        (None, fsum)
    } else {
        (Some(int), fsum)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    // What a client's `Backend::compute` sends: the server's id of the column's data structure,
    // then the call (whose own ds the client does not know).
    #[test]
    fn column_at_runs_on_the_prefixed_data_structure() {
        let store = Store::new(1 << 20);
        store.create_ds(42, 0).unwrap();
        let chunk: Vec<u8> = [5i64, -2, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        store.write(42, 0, &chunk).unwrap();
        let call = ColumnCall {
            column: ColumnRef {
                ds: 0,
                elem: ElemType::I64,
                chunk_len: 3,
                len: 3,
            },
            op: ColumnOp::Sum,
        };
        let mut args = 42u64.to_le_bytes().to_vec();
        args.extend_from_slice(&call.encode());
        let view = StoreView::new(&store);
        let out = column_at(&view, &args).unwrap();
        assert_eq!(
            ColumnResult::decode(&out).unwrap(),
            ColumnResult::IntSum(12)
        );
        // The same bytes without the prefix are not a `column_at` call.
        assert!(column_at(&view, &call.encode()).is_err());
        // Through the registry, under its name.
        let r = crate::agent::FunctionRegistry::with_builtins();
        let out = r
            .call(farmem_net::compute::COLUMN_AT_FUNCTION, &view, &args)
            .unwrap();
        assert_eq!(
            ColumnResult::decode(&out).unwrap(),
            ColumnResult::IntSum(12)
        );
    }

    fn i64s(vs: &[i64]) -> Vec<u8> {
        vs.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    // What a client's `Backend::compute_with` sends for `Pairwise`: three server ids, then the
    // call. The output chunks are as long as the input's (full-sized objects, as the object
    // layer writes them), zeros past `len`.
    #[test]
    fn column_with_runs_pairwise_on_the_prefixed_data_structures() {
        let store = Store::new(1 << 20);
        for ds in [42, 43, 44] {
            store.create_ds(ds, 0).unwrap();
        }
        // 5 rows in chunks of 3; the last chunk object is full-sized with garbage past len.
        store.write(42, 0, &i64s(&[10, 20, 30])).unwrap();
        store.write(42, 1, &i64s(&[40, 50, 777])).unwrap();
        store.write(43, 0, &i64s(&[1, 2, 3])).unwrap();
        store.write(43, 1, &i64s(&[4, 5, 888])).unwrap();
        let col = ColumnRef {
            ds: 0,
            elem: ElemType::I64,
            chunk_len: 3,
            len: 5,
        };
        let call = ColumnCall {
            column: col,
            op: ColumnOp::Pairwise {
                op: ArithOp::Sub,
                other: col,
                dst: col,
            },
        };
        let mut args = vec![3u8];
        for id in [42u64, 43, 44] {
            args.extend_from_slice(&id.to_le_bytes());
        }
        args.extend_from_slice(&call.encode());
        let view = StoreView::new(&store);
        let r = crate::agent::FunctionRegistry::with_builtins();
        let out = r
            .call(farmem_net::compute::COLUMN_WITH_FUNCTION, &view, &args)
            .unwrap();
        assert_eq!(ColumnResult::decode(&out).unwrap(), ColumnResult::Count(5));
        let chunk = |obj| {
            view.with_object(44, obj, |d| d.map(|d| d.to_vec()))
                .unwrap()
        };
        assert_eq!(chunk(0), Some(i64s(&[9, 18, 27])));
        assert_eq!(
            chunk(1),
            Some(i64s(&[36, 45, 0])),
            "full-sized, zero past len"
        );
    }
}
