//! Column operations offloaded to the remote agent: the wire encoding shared by client and server.
//!
//! AIFM's remote agent (OSDI'20 §4.4) runs aggregates, filters and gathers next to the data so
//! only results cross the network. This module is the **spec** of the calls the memory server's
//! `column` function ([`COLUMN_FUNCTION`]) accepts; client and server both encode and decode
//! through it, so they cannot drift.
//!
//! # Columns
//!
//! A far-memory column is one data structure: object id `i` is chunk `i`, holding `chunk_len`
//! elements of one [`ElemType`] stored contiguously little-endian. A [`ColumnRef`] names it:
//! `ds`, `elem`, `chunk_len` (elements per chunk, > 0) and `len` (elements in the column).
//! Elements at index ≥ `len` (garbage in a full-sized last chunk) are ignored. A chunk within
//! `len` that is absent is a [`ErrorKind::NotFound`] error naming it; a chunk whose byte length
//! is not a whole number of elements, holds more than `chunk_len` elements, or is too short for
//! `len`, is an [`ErrorKind::InvalidArgument`] error.
//!
//! # Values and ordering
//!
//! Values cross the wire as a [`Scalar`] in the element's domain: `u8..u64` → `U64`, `i64` →
//! `I64`, `f64` → `F64`; a scalar of another domain is an `InvalidArgument` error. `f64` is
//! ordered by IEEE total order ([`f64::total_cmp`]: `-0.0 < 0.0`, NaNs at the ends) for `Min`,
//! `Max`, `Median`, `Unique`, `Histogram` and `Filter`, and two `f64`s are equal when their bits
//! are, so a client reproduces every result with `sort_by(f64::total_cmp)` and bit equality.
//!
//! # Operations ([`ColumnOp`]) and their results ([`ColumnResult`])
//!
//! | op | result |
//! | --- | --- |
//! | `Count` | `Count(len)` after checking every chunk is present and well-formed |
//! | `Sum` | integers: `IntSum(i128)`, exact (overflow of i128 is an error); `f64`: `FloatSum`, added sequentially in index order starting from `0.0` |
//! | `Min` / `Max` | `Scalar(None)` for an empty column |
//! | `Mean` | `Mean(sum as f64 / len as f64)` with `Sum`'s sum; `None` when empty |
//! | `Median` | the **lower median**: element `(len-1)/2` of the sorted column (no averaging, exact for every type) |
//! | `MedianPair` | `Values`: elements `(len-1)/2` and `len/2` of the sorted column (the same element twice for an odd `len`; empty for an empty column), from which a client forms a median that averages the middle pair without the server choosing its arithmetic |
//! | `Unique` | `Values`: the distinct values, ascending |
//! | `Histogram` | `ValueCounts`: (value, count) per distinct value, ascending |
//! | `Buckets { edges }` | `BucketCounts`: `edges.len()-1` counts, value `v` in bucket `i` when `edges[i] <= v < edges[i+1]`; values outside are not counted; edges must ascend strictly |
//! | `Filter { cmp, value }` | `Indices`: ascending row indices `i < len` with `col[i] cmp value` |
//! | `CountWhere { cmp, value }` | `Count` of those rows |
//! | `Gather { indices }` | `Values` in request order; an index ≥ `len` is an error |
//! | `Map { op, value, dst }` | writes `dst[i] = col[i] op value`; returns `Count(len)` |
//! | `Pairwise { op, other, dst }` | writes `dst[i] = col[i] op other[i]`; returns `Count(len)` |
//!
//! `Map` and `Pairwise` need `dst` (and `other`) to have the column's `elem`, `chunk_len` and
//! `len`; `dst`'s data structure must exist. Integer arithmetic wraps modulo the element width
//! (so `u8` stays `u8`), division by zero is an error; `f64` follows IEEE. Every output chunk
//! is as long as the input chunk it is computed from, its elements past `len` zeros: a client
//! that writes its chunk objects full-sized (the object layer does) reads the output back as a
//! column of its own.
//!
//! # Layout
//!
//! All integers little-endian. A call's argument bytes (`compute("column", args)`):
//!
//! ```text
//! args   = version u8 (=1) | column | op_tag u8 | op fields
//! column = ds u64 | elem u8 | chunk_len u64 | len u64
//! scalar = tag u8 (1 U64, 2 I64, 3 F64) | 8 bytes (u64 / i64 / f64 bits)
//! op     = 1 Count | 2 Sum | 3 Min | 4 Max | 5 Mean | 6 Median | 7 Unique | 8 Histogram
//!        | 9 Buckets   count u32 | scalar*
//!        | 10 Filter   cmp u8 | scalar          (cmp: 1 Lt 2 Le 3 Eq 4 Ne 5 Ge 6 Gt)
//!        | 11 CountWhere cmp u8 | scalar
//!        | 12 Gather   count u32 | u64*
//!        | 13 Map      map_op u8 | scalar | column   (map_op: 1 Add 2 Sub 3 Mul 4 Div)
//!        | 14 Pairwise pair_op u8 | column | column  (other, dst; pair_op as map_op)
//!        | 15 MedianPair
//! result = version u8 (=1) | tag u8 | fields
//!        | 1 Count u64 | 2 IntSum i128 | 3 FloatSum f64 | 4 Scalar present u8 [scalar]
//!        | 5 Mean present u8 [f64] | 6 Values count u32 | scalar* | 7 ValueCounts count u32
//!        | (scalar | u64)* | 8 BucketCounts count u32 | u64* | 9 Indices count u32 | u64*
//! ```
//!
//! Results travel in one response frame: a result larger than the connection's frame-body
//! bound (a `Filter` or `Gather` of millions of rows) comes back as an error reply, and the
//! connection stays usable; split such a call over smaller columns or fewer indices.
//!
//! Decoding is strict: a truncated body, an unknown tag, a wrong version or trailing bytes is an
//! [`ErrorKind::Protocol`] error; a well-formed call that makes no sense (chunk_len 0, unsorted
//! bucket edges) is [`ErrorKind::InvalidArgument`] at decode time.

use std::cmp::Ordering;

use farmem_error::{Error, ErrorKind, Result};

use crate::client::Client;
use crate::message::DsId;
use crate::wire::{BodyReader, BodyWriter};

/// Name under which memory servers register the column function.
pub const COLUMN_FUNCTION: &str = "column";

/// Name under which memory servers register the column function **at a data structure**: the
/// same call and result as [`COLUMN_FUNCTION`], with the arguments prefixed by the server's id of
/// the input column's data structure (u64 LE), which is what `Backend::compute` of the object
/// layer prepends (it maps its own data-structure ids to the server's, so a client of the object
/// layer does not know the server's id):
///
/// ```text
/// args = ds u64 | column call (as for COLUMN_FUNCTION; its input column's ds is ignored)
/// ```
///
/// The call runs with its input column's `ds` replaced by the prefix. `Map` and `Pairwise` are
/// refused (`InvalidArgument`): their other columns would need the server's ids, which only
/// [`COLUMN_FUNCTION`] callers have.
pub const COLUMN_AT_FUNCTION: &str = "column_at";

/// Name under which memory servers register the column function **with data structures**: the
/// same call and result as [`COLUMN_FUNCTION`], with every column it names placed at a data
/// structure whose server id prefixes the arguments, as `Backend::compute_with` of the object
/// layer sends them. This is how a client of the object layer runs `Map` and `Pairwise`:
///
/// ```text
/// args = count u8 | ds u64 * count | column call (as for COLUMN_FUNCTION)
/// ```
///
/// `count` is the number of columns the call names, in the order input, `other` (`Pairwise`),
/// `dst` (`Map` and `Pairwise`): 1 for a single-column operation, 2 for `Map`, 3 for
/// `Pairwise`. The call's own `ds` fields are replaced by the prefix.
pub const COLUMN_WITH_FUNCTION: &str = "column_with";

/// Version byte that opens every column call and result.
pub const COLUMN_CODEC_VERSION: u8 = 1;

/// Element type of a column; the discriminant is the wire code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ElemType {
    /// `u8`.
    U8 = 1,
    /// `u16`.
    U16 = 2,
    /// `u32`.
    U32 = 3,
    /// `u64`.
    U64 = 4,
    /// `i64`.
    I64 = 5,
    /// `f64`.
    F64 = 6,
}

/// The value domain an element type is widened into for computation and on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Unsigned integers, as `u64`.
    Unsigned,
    /// Signed integers, as `i64`.
    Signed,
    /// Floating point, as `f64`.
    Float,
}

impl ElemType {
    /// Every element type.
    pub const ALL: [ElemType; 6] = [
        ElemType::U8,
        ElemType::U16,
        ElemType::U32,
        ElemType::U64,
        ElemType::I64,
        ElemType::F64,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::U8 => 1,
            ElemType::U16 => 2,
            ElemType::U32 => 4,
            ElemType::U64 | ElemType::I64 | ElemType::F64 => 8,
        }
    }

    /// The domain its values live in.
    pub fn domain(self) -> Domain {
        match self {
            ElemType::U8 | ElemType::U16 | ElemType::U32 | ElemType::U64 => Domain::Unsigned,
            ElemType::I64 => Domain::Signed,
            ElemType::F64 => Domain::Float,
        }
    }

    /// The type of wire code `code`.
    pub fn from_code(code: u8) -> Result<ElemType> {
        ElemType::ALL
            .into_iter()
            .find(|e| *e as u8 == code)
            .ok_or_else(|| protocol(format!("unknown element type code {code} (known: 1..=6)")))
    }
}

/// A value in a column's domain.
#[derive(Clone, Copy, Debug)]
pub enum Scalar {
    /// Unsigned integer value.
    U64(u64),
    /// Signed integer value.
    I64(i64),
    /// Floating-point value.
    F64(f64),
}

impl Scalar {
    /// The domain of the value.
    pub fn domain(self) -> Domain {
        match self {
            Scalar::U64(_) => Domain::Unsigned,
            Scalar::I64(_) => Domain::Signed,
            Scalar::F64(_) => Domain::Float,
        }
    }

    /// Total order within one domain (f64 by [`f64::total_cmp`]); across domains by domain.
    pub fn total_cmp(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::U64(a), Scalar::U64(b)) => a.cmp(b),
            (Scalar::I64(a), Scalar::I64(b)) => a.cmp(b),
            (Scalar::F64(a), Scalar::F64(b)) => a.total_cmp(b),
            (a, b) => (a.tag()).cmp(&b.tag()),
        }
    }

    fn tag(self) -> u8 {
        match self {
            Scalar::U64(_) => 1,
            Scalar::I64(_) => 2,
            Scalar::F64(_) => 3,
        }
    }

    fn bits(self) -> u64 {
        match self {
            Scalar::U64(v) => v,
            Scalar::I64(v) => v as u64,
            Scalar::F64(v) => v.to_bits(),
        }
    }
}

/// Bit equality (so NaN equals itself and `-0.0 != 0.0`), matching the column ops' semantics.
impl PartialEq for Scalar {
    fn eq(&self, other: &Scalar) -> bool {
        self.tag() == other.tag() && self.bits() == other.bits()
    }
}

/// A far-memory column: one data structure of fixed-size chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnRef {
    /// Data structure holding the chunks (object id = chunk index).
    pub ds: DsId,
    /// Element type.
    pub elem: ElemType,
    /// Elements per chunk (> 0).
    pub chunk_len: u64,
    /// Elements in the column; elements at index ≥ `len` are ignored.
    pub len: u64,
}

impl ColumnRef {
    /// Number of chunks that hold elements below `len` (0 for `chunk_len` 0, which decoding
    /// rejects).
    pub fn chunk_count(&self) -> u64 {
        if self.chunk_len == 0 {
            return 0;
        }
        self.len.div_ceil(self.chunk_len)
    }
}

/// Comparison of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CmpOp {
    /// `<`.
    Lt = 1,
    /// `<=`.
    Le = 2,
    /// `==` (bit equality for f64).
    Eq = 3,
    /// `!=`.
    Ne = 4,
    /// `>=`.
    Ge = 5,
    /// `>`.
    Gt = 6,
}

impl CmpOp {
    /// Whether an element ordered `ord` against the filter value passes.
    pub fn accepts(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Ge => ord != Ordering::Less,
            CmpOp::Gt => ord == Ordering::Greater,
        }
    }

    fn from_code(code: u8) -> Result<CmpOp> {
        Ok(match code {
            1 => CmpOp::Lt,
            2 => CmpOp::Le,
            3 => CmpOp::Eq,
            4 => CmpOp::Ne,
            5 => CmpOp::Ge,
            6 => CmpOp::Gt,
            _ => {
                return Err(protocol(format!(
                    "unknown comparison code {code} (known: 1..=6)"
                )))
            }
        })
    }
}

/// Arithmetic of `Map` (column op scalar) and `Pairwise` (column op column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ArithOp {
    /// `a + b` (wrapping for integers).
    Add = 1,
    /// `a - b` (wrapping for integers; e.g. dropoff − pickup).
    Sub = 2,
    /// `a * b` (wrapping for integers).
    Mul = 3,
    /// `a / b` (integer division by zero is an error).
    Div = 4,
}

impl ArithOp {
    fn from_code(code: u8) -> Result<ArithOp> {
        Ok(match code {
            1 => ArithOp::Add,
            2 => ArithOp::Sub,
            3 => ArithOp::Mul,
            4 => ArithOp::Div,
            _ => {
                return Err(protocol(format!(
                    "unknown arithmetic code {code} (known: 1..=4)"
                )))
            }
        })
    }
}

/// One column operation (see the module docs for semantics).
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnOp {
    /// Number of elements.
    Count,
    /// Exact integer sum or sequential f64 sum.
    Sum,
    /// Smallest element.
    Min,
    /// Largest element.
    Max,
    /// Arithmetic mean.
    Mean,
    /// Lower median.
    Median,
    /// The two middle elements of the sorted column (lower, upper).
    MedianPair,
    /// Sorted distinct values.
    Unique,
    /// Count per distinct value.
    Histogram,
    /// Count per bucket `[edges[i], edges[i+1])`.
    Buckets {
        /// Strictly ascending bucket edges (at least two).
        edges: Vec<Scalar>,
    },
    /// Ascending row indices whose element compares `cmp` to `value`.
    Filter {
        /// Comparison.
        cmp: CmpOp,
        /// Right-hand side.
        value: Scalar,
    },
    /// Number of rows `Filter` would return.
    CountWhere {
        /// Comparison.
        cmp: CmpOp,
        /// Right-hand side.
        value: Scalar,
    },
    /// Elements at `indices`, in order.
    Gather {
        /// Row indices (< len).
        indices: Vec<u64>,
    },
    /// Writes `dst[i] = col[i] op value`.
    Map {
        /// Arithmetic.
        op: ArithOp,
        /// Right-hand side.
        value: Scalar,
        /// Output column (same elem, chunk_len, len).
        dst: ColumnRef,
    },
    /// Writes `dst[i] = col[i] op other[i]`.
    Pairwise {
        /// Arithmetic.
        op: ArithOp,
        /// Right-hand column (same elem, chunk_len, len).
        other: ColumnRef,
        /// Output column (same elem, chunk_len, len).
        dst: ColumnRef,
    },
}

/// A column call: the column and what to do with it.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnCall {
    /// Input column.
    pub column: ColumnRef,
    /// Operation.
    pub op: ColumnOp,
}

/// Result of a column call.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnResult {
    /// Count, CountWhere, and elements written by Map / Pairwise.
    Count(u64),
    /// Exact sum of an integer column.
    IntSum(i128),
    /// Sequential sum of an f64 column.
    FloatSum(f64),
    /// Min / Max / Median; `None` for an empty column.
    Scalar(Option<Scalar>),
    /// Mean; `None` for an empty column.
    Mean(Option<f64>),
    /// Unique (ascending), Gather (request order) or MedianPair (lower, upper).
    Values(Vec<Scalar>),
    /// Histogram: (value, count), ascending by value.
    ValueCounts(Vec<(Scalar, u64)>),
    /// Buckets: one count per bucket.
    BucketCounts(Vec<u64>),
    /// Filter: ascending row indices.
    Indices(Vec<u64>),
}

fn protocol(msg: String) -> Error {
    Error::new(ErrorKind::Protocol, format!("column call: {msg}"))
}

fn put_scalar(w: &mut BodyWriter<'_>, s: Scalar) {
    w.u8(s.tag()).u64(s.bits());
}

fn get_scalar(r: &mut BodyReader<'_>, field: &str) -> Result<Scalar> {
    let tag = r.u8(field)?;
    let bits = r.u64(field)?;
    Ok(match tag {
        1 => Scalar::U64(bits),
        2 => Scalar::I64(bits as i64),
        3 => Scalar::F64(f64::from_bits(bits)),
        _ => {
            return Err(protocol(format!(
                "{field}: unknown scalar tag {tag} (known: 1..=3)"
            )))
        }
    })
}

fn put_column(w: &mut BodyWriter<'_>, c: &ColumnRef) {
    w.u64(c.ds).u8(c.elem as u8).u64(c.chunk_len).u64(c.len);
}

fn get_column(r: &mut BodyReader<'_>, field: &str) -> Result<ColumnRef> {
    let ds = r.u64(field)?;
    let elem = ElemType::from_code(r.u8(field)?)?;
    let chunk_len = r.u64(field)?;
    let len = r.u64(field)?;
    if chunk_len == 0 {
        return Err(Error::invalid(format!(
            "column call: {field} (data structure {ds}) has chunk_len 0: chunks hold at least one \
             element"
        )));
    }
    Ok(ColumnRef {
        ds,
        elem,
        chunk_len,
        len,
    })
}

fn check_version(r: &mut BodyReader<'_>) -> Result<()> {
    let v = r.u8("version")?;
    if v != COLUMN_CODEC_VERSION {
        return Err(protocol(format!(
            "codec version {v}, this side speaks {COLUMN_CODEC_VERSION}: upgrade the older side"
        )));
    }
    Ok(())
}

impl ColumnCall {
    /// The argument bytes for `compute(COLUMN_FUNCTION, ..)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let w = &mut BodyWriter::new(&mut out);
        w.u8(COLUMN_CODEC_VERSION);
        put_column(w, &self.column);
        match &self.op {
            ColumnOp::Count => {
                w.u8(1);
            }
            ColumnOp::Sum => {
                w.u8(2);
            }
            ColumnOp::Min => {
                w.u8(3);
            }
            ColumnOp::Max => {
                w.u8(4);
            }
            ColumnOp::Mean => {
                w.u8(5);
            }
            ColumnOp::Median => {
                w.u8(6);
            }
            ColumnOp::Unique => {
                w.u8(7);
            }
            ColumnOp::Histogram => {
                w.u8(8);
            }
            ColumnOp::Buckets { edges } => {
                w.u8(9).u32(edges.len() as u32);
                for e in edges {
                    put_scalar(w, *e);
                }
            }
            ColumnOp::Filter { cmp, value } => {
                w.u8(10).u8(*cmp as u8);
                put_scalar(w, *value);
            }
            ColumnOp::CountWhere { cmp, value } => {
                w.u8(11).u8(*cmp as u8);
                put_scalar(w, *value);
            }
            ColumnOp::Gather { indices } => {
                w.u8(12).u32(indices.len() as u32);
                for i in indices {
                    w.u64(*i);
                }
            }
            ColumnOp::Map { op, value, dst } => {
                w.u8(13).u8(*op as u8);
                put_scalar(w, *value);
                put_column(w, dst);
            }
            ColumnOp::Pairwise { op, other, dst } => {
                w.u8(14).u8(*op as u8);
                put_column(w, other);
                put_column(w, dst);
            }
            ColumnOp::MedianPair => {
                w.u8(15);
            }
        }
        out
    }

    /// Decodes argument bytes; malformed input is an error, never a guess.
    pub fn decode(args: &[u8]) -> Result<ColumnCall> {
        let mut reader = BodyReader::new(args, "column call");
        let r = &mut reader;
        check_version(r)?;
        let column = get_column(r, "column")?;
        let tag = r.u8("op")?;
        let op = match tag {
            1 => ColumnOp::Count,
            2 => ColumnOp::Sum,
            3 => ColumnOp::Min,
            4 => ColumnOp::Max,
            5 => ColumnOp::Mean,
            6 => ColumnOp::Median,
            7 => ColumnOp::Unique,
            8 => ColumnOp::Histogram,
            9 => {
                let n = r.count("edges", 9)?;
                let mut edges = Vec::with_capacity(n);
                for _ in 0..n {
                    edges.push(get_scalar(r, "edge")?);
                }
                if edges.len() < 2 {
                    return Err(Error::invalid(format!(
                        "column call: Buckets needs at least two edges, got {}",
                        edges.len()
                    )));
                }
                if let Some(w) = edges
                    .windows(2)
                    .position(|w| w[0].total_cmp(&w[1]) != Ordering::Less)
                {
                    return Err(Error::invalid(format!(
                        "column call: bucket edges must ascend strictly, but edge {w} ({:?}) is not \
                         below edge {} ({:?})",
                        edges[w],
                        w + 1,
                        edges[w + 1]
                    )));
                }
                ColumnOp::Buckets { edges }
            }
            10 | 11 => {
                let cmp = CmpOp::from_code(r.u8("cmp")?)?;
                let value = get_scalar(r, "value")?;
                if tag == 10 {
                    ColumnOp::Filter { cmp, value }
                } else {
                    ColumnOp::CountWhere { cmp, value }
                }
            }
            12 => {
                let n = r.count("indices", 8)?;
                let mut indices = Vec::with_capacity(n);
                for _ in 0..n {
                    indices.push(r.u64("index")?);
                }
                ColumnOp::Gather { indices }
            }
            13 => {
                let op = ArithOp::from_code(r.u8("map op")?)?;
                let value = get_scalar(r, "value")?;
                let dst = get_column(r, "dst")?;
                ColumnOp::Map { op, value, dst }
            }
            14 => {
                let op = ArithOp::from_code(r.u8("pairwise op")?)?;
                let other = get_column(r, "other")?;
                let dst = get_column(r, "dst")?;
                ColumnOp::Pairwise { op, other, dst }
            }
            15 => ColumnOp::MedianPair,
            _ => return Err(protocol(format!("unknown op tag {tag} (known: 1..=15)"))),
        };
        reader.finish()?;
        Ok(ColumnCall { column, op })
    }
}

impl ColumnResult {
    /// The result bytes the server returns.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        let w = &mut BodyWriter::new(&mut out);
        w.u8(COLUMN_CODEC_VERSION);
        match self {
            ColumnResult::Count(n) => {
                w.u8(1).u64(*n);
            }
            ColumnResult::IntSum(s) => {
                let bits = *s as u128;
                w.u8(2).u64(bits as u64).u64((bits >> 64) as u64);
            }
            ColumnResult::FloatSum(s) => {
                w.u8(3).u64(s.to_bits());
            }
            ColumnResult::Scalar(s) => {
                w.u8(4).u8(s.is_some() as u8);
                if let Some(s) = s {
                    put_scalar(w, *s);
                }
            }
            ColumnResult::Mean(m) => {
                w.u8(5).u8(m.is_some() as u8);
                if let Some(m) = m {
                    w.u64(m.to_bits());
                }
            }
            ColumnResult::Values(v) => {
                w.u8(6).u32(v.len() as u32);
                for s in v {
                    put_scalar(w, *s);
                }
            }
            ColumnResult::ValueCounts(v) => {
                w.u8(7).u32(v.len() as u32);
                for (s, n) in v {
                    put_scalar(w, *s);
                    w.u64(*n);
                }
            }
            ColumnResult::BucketCounts(v) => {
                w.u8(8).u32(v.len() as u32);
                for n in v {
                    w.u64(*n);
                }
            }
            ColumnResult::Indices(v) => {
                w.u8(9).u32(v.len() as u32);
                for n in v {
                    w.u64(*n);
                }
            }
        }
        out
    }

    /// Decodes result bytes; malformed input is a [`ErrorKind::Protocol`] error.
    pub fn decode(bytes: &[u8]) -> Result<ColumnResult> {
        let mut reader = BodyReader::new(bytes, "column result");
        let r = &mut reader;
        check_version(r)?;
        let tag = r.u8("result tag")?;
        let present = |r: &mut BodyReader<'_>| -> Result<bool> {
            match r.u8("present")? {
                0 => Ok(false),
                1 => Ok(true),
                p => Err(protocol(format!("present flag {p}, expected 0 or 1"))),
            }
        };
        let u64s = |r: &mut BodyReader<'_>| -> Result<Vec<u64>> {
            let n = r.count("values", 8)?;
            (0..n).map(|_| r.u64("value")).collect()
        };
        let res = match tag {
            1 => ColumnResult::Count(r.u64("count")?),
            2 => {
                let lo = r.u64("sum")? as u128;
                let hi = r.u64("sum")? as u128;
                ColumnResult::IntSum((lo | (hi << 64)) as i128)
            }
            3 => ColumnResult::FloatSum(f64::from_bits(r.u64("sum")?)),
            4 => ColumnResult::Scalar(if present(r)? {
                Some(get_scalar(r, "value")?)
            } else {
                None
            }),
            5 => ColumnResult::Mean(if present(r)? {
                Some(f64::from_bits(r.u64("mean")?))
            } else {
                None
            }),
            6 => {
                let n = r.count("values", 9)?;
                ColumnResult::Values(
                    (0..n)
                        .map(|_| get_scalar(r, "value"))
                        .collect::<Result<_>>()?,
                )
            }
            7 => {
                let n = r.count("value counts", 17)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push((get_scalar(r, "value")?, r.u64("count")?));
                }
                ColumnResult::ValueCounts(v)
            }
            8 => ColumnResult::BucketCounts(u64s(r)?),
            9 => ColumnResult::Indices(u64s(r)?),
            _ => return Err(protocol(format!("unknown result tag {tag} (known: 1..=9)"))),
        };
        reader.finish()?;
        Ok(res)
    }
}

impl ColumnCall {
    /// Decodes the arguments of [`COLUMN_AT_FUNCTION`]: the data-structure prefix, then a call
    /// whose input column is placed at that data structure. `Map` and `Pairwise` are refused.
    pub fn decode_at(args: &[u8]) -> Result<ColumnCall> {
        let (prefix, body) = args.split_at_checked(8).ok_or_else(|| {
            protocol(format!(
                "{COLUMN_AT_FUNCTION} arguments start with a data-structure id (8 bytes), got {} \
                 bytes",
                args.len()
            ))
        })?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(prefix);
        let mut call = ColumnCall::decode(body)?;
        if matches!(call.op, ColumnOp::Map { .. } | ColumnOp::Pairwise { .. }) {
            return Err(Error::invalid(format!(
                "{COLUMN_AT_FUNCTION} runs single-column operations; Map and Pairwise name other \
                 columns by the server's ids: call {COLUMN_FUNCTION} with them"
            )));
        }
        call.column.ds = u64::from_le_bytes(raw);
        Ok(call)
    }
}

impl ColumnCall {
    /// The columns the call names, in [`COLUMN_WITH_FUNCTION`]'s order: input, `other`, `dst`.
    pub fn columns_mut(&mut self) -> Vec<&mut ColumnRef> {
        let mut cols = vec![&mut self.column];
        match &mut self.op {
            ColumnOp::Map { dst, .. } => cols.push(dst),
            ColumnOp::Pairwise { other, dst, .. } => {
                cols.push(other);
                cols.push(dst);
            }
            _ => {}
        }
        cols
    }

    /// Decodes the arguments of [`COLUMN_WITH_FUNCTION`]: the count, the data-structure ids,
    /// then a call whose columns are placed at them in order.
    pub fn decode_with(args: &[u8]) -> Result<ColumnCall> {
        let (&count, rest) = args
            .split_first()
            .ok_or_else(|| protocol(format!("{COLUMN_WITH_FUNCTION} arguments are empty")))?;
        let ids_len = usize::from(count) * 8;
        let (ids, body) = rest.split_at_checked(ids_len).ok_or_else(|| {
            protocol(format!(
                "{COLUMN_WITH_FUNCTION} arguments announce {count} data-structure ids ({ids_len}                  bytes) but only {} bytes follow",
                rest.len()
            ))
        })?;
        let mut call = ColumnCall::decode(body)?;
        let mut cols = call.columns_mut();
        if cols.len() != usize::from(count) {
            return Err(Error::invalid(format!(
                "{COLUMN_WITH_FUNCTION}: the call names {} columns but {count} data-structure                  ids were given",
                cols.len()
            )));
        }
        for (col, id) in cols.iter_mut().zip(ids.chunks_exact(8)) {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(id);
            col.ds = u64::from_le_bytes(raw);
        }
        Ok(call)
    }
}

/// Runs `call` on the server behind `client` (its `column` function) and decodes the result.
pub fn call_column(client: &Client, call: &ColumnCall) -> Result<ColumnResult> {
    let bytes = client.compute(COLUMN_FUNCTION, &call.encode())?;
    ColumnResult::decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(ds: DsId) -> ColumnCall {
        ColumnCall {
            column: ColumnRef {
                ds,
                elem: ElemType::I64,
                chunk_len: 8,
                len: 20,
            },
            op: ColumnOp::Sum,
        }
    }

    /// `input + 1` written to `dst`.
    fn map_of(input: DsId, dst: DsId) -> ColumnCall {
        ColumnCall {
            op: ColumnOp::Map {
                op: ArithOp::Add,
                value: Scalar::I64(1),
                dst: sum_of(dst).column,
            },
            ..sum_of(input)
        }
    }

    #[test]
    fn column_at_takes_the_data_structure_from_its_prefix() {
        let mut args = 0x1_0005u64.to_le_bytes().to_vec();
        args.extend_from_slice(&sum_of(0).encode());
        assert_eq!(ColumnCall::decode_at(&args).unwrap(), sum_of(0x1_0005));
        // Too short for the prefix, or a malformed call after it: protocol errors.
        for bad in [&args[..5], &args[..12]] {
            assert_eq!(
                ColumnCall::decode_at(bad).unwrap_err().kind(),
                ErrorKind::Protocol
            );
        }
        // Map names another column by the server's id: refused.
        let map = map_of(0, 3);
        let mut args = 7u64.to_le_bytes().to_vec();
        args.extend_from_slice(&map.encode());
        let e = ColumnCall::decode_at(&args).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }

    fn with_args(ids: &[u64], call: &ColumnCall) -> Vec<u8> {
        let mut args = vec![ids.len() as u8];
        for id in ids {
            args.extend_from_slice(&id.to_le_bytes());
        }
        args.extend_from_slice(&call.encode());
        args
    }

    #[test]
    fn column_with_places_every_named_column_from_its_prefix() {
        let pairwise = |input, other, dst| ColumnCall {
            op: ColumnOp::Pairwise {
                op: ArithOp::Sub,
                other: sum_of(other).column,
                dst: sum_of(dst).column,
            },
            ..sum_of(input)
        };
        let args = with_args(&[10, 11, 12], &pairwise(0, 0, 0));
        assert_eq!(
            ColumnCall::decode_with(&args).unwrap(),
            pairwise(10, 11, 12)
        );
        let map = map_of(0, 0);
        assert_eq!(
            ColumnCall::decode_with(&with_args(&[20, 21], &map)).unwrap(),
            map_of(20, 21)
        );
        assert_eq!(
            ColumnCall::decode_with(&with_args(&[5], &sum_of(0))).unwrap(),
            sum_of(5)
        );
        // A count that does not match the columns the call names.
        for (ids, call) in [(&[1u64][..], &map), (&[1, 2][..], &sum_of(0))] {
            let e = ColumnCall::decode_with(&with_args(ids, call)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
        // Empty, or fewer id bytes than announced: protocol errors.
        for bad in [&[][..], &args[..9]] {
            assert_eq!(
                ColumnCall::decode_with(bad).unwrap_err().kind(),
                ErrorKind::Protocol
            );
        }
    }
}
