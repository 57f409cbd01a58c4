//! Where a far column's read-only operation runs: on the client over its chunks, or on the
//! memory server next to the data (AIFM OSDI'20 §4.4, remote agent: only the result crosses
//! the network).
//!
//! # The decision
//!
//! [`OffloadPolicy`] (one per [`FarStorage`](crate::FarStorage), shared by its columns):
//!
//! - `Never`: every operation runs locally (the chunked scans of `far.rs`).
//! - `Always`: every offloadable operation goes to the server (tests and benchmarks).
//! - `Auto` (default): to the server when most of the column is remote, i.e. fewer than
//!   [`AUTO_RESIDENT_PERCENT`] of its chunks are in local memory (`RemVec::resident_chunks`,
//!   one load per chunk); locally when it is cached, where a scan costs no fetch. A column of
//!   fewer than [`AUTO_MIN_CHUNKS`] chunks also runs locally: fetching a few chunks costs less
//!   than the call's fixed price (flush, round trip, a server scan on one connection thread);
//!   on the 2-core loopback box, offloading the taxi analysis's small `u8` columns made steps 2,
//!   3, 5 and 7 slower.
//!
//! `Auto` never offloads a filter: its result is a row index per selected row, up to as many
//! bytes as the column itself, and the server builds and encodes it row by row; the taxi
//! frame's `VendorID == v` filter (about half the rows) took 2–3x as long offloaded as fetched
//! and filtered locally, at 5% and at 25% local memory alike (`taxi_profile ... always` vs
//! `never`). `Always` still offloads filters.
//!
//! Either way only when the backend has a remote agent: the first offload asks the backend
//! once (a `column_at` call with empty arguments, before any flush); `Unsupported` (the
//! in-process backend) marks the storage agent-less and every later operation runs locally
//! without asking again. An operation whose result could exceed
//! [`MAX_RESULT_BYTES`] (a filter or histogram of millions of rows, bounded by one response
//! frame) also runs locally.
//!
//! # The call
//!
//! 1. **Flush** the column (`RemVec::flush`): dirty local chunks are written back and stay
//!    cached, so the server sees every element. `&self` suffices: a column write needs `&mut`.
//! 2. `Backend::compute(ds, "column_at", call)`: the backend prepends the server's id of the
//!    column's data structure (the object layer's ids are not the server's), and the server's
//!    `column_at` function runs the call on that structure ([`farmem_net::compute`]).
//! 3. **Convert** the result into the local method's type. The server's semantics were written
//!    to match the local ones bit for bit (total orders, exact integer sums, f64 summed in row
//!    order from 0.0, mean = sum / len), so every result is identical to the local path's; the
//!    differential tests in `tests/dataframe_offload.rs` check it for every element type.
//!
//! Offloaded: sum, min, max, mean, median, unique, histogram, filter, count_where, and the gather
//! behind `histogram_of` and `unique_of` (the server's `Gather` returns the selected values;
//! the histogram is counted locally). `Auto` offloads that gather only when its call and result
//! (an index and a value per row) are under a quarter of the column's bytes, and unless
//! [`AUTO_GATHER_RESIDENT_PERCENT`] of the column is local (a few rows spread over the column
//! touch most of its chunks, so anything short of an almost cached column means fetching most
//! of it): the taxi analysis's step 5 reads the vendors of the 0.5% of rows flagged `Y`, which
//! otherwise fetches the whole 8 MB `VendorID` column when it is remote. `median` is
//! offloaded as `MedianPair`: the server selects the two middle elements and the client
//! averages them as the local path does (the server's own `Median` is the lower median, which
//! is not the DataFrame's). Not offloaded: `count` (it is the column's length, known locally),
//! `gather`, the row-wise operations other than `zip_i64` (the server has no timestamp parts
//! or haversine), every `_seen` form (its closure needs the new values here), and
//! `group_median` (it reads two columns).
//!
//! # A new column on the server: `zip_i64`
//!
//! [`Storage::zip_i64`](crate::Storage::zip_i64) of a far storage may compute `a[i] op b[i]`
//! where its inputs are (the agent's `Pairwise`), writing a new column that never crosses the
//! network: locally it would fetch both inputs and later write the output back, three columns'
//! worth of traffic. The decision is the aggregates' (`Auto`: the inputs' residency, counted
//! over both, below [`AUTO_RESIDENT_PERCENT`], and at least [`AUTO_MIN_CHUNKS`] chunks). Then:
//!
//! 1. Flush both inputs; make an empty output column in the same instance.
//! 2. `Backend::compute_with(a, [b, out], "column_with", call)`: the backend prefixes the
//!    server's ids of all three structures (a sharded backend places the new one on the inputs'
//!    server, and refuses inputs on two servers with `Unsupported`, which runs this zip
//!    locally). The server writes the output's chunks full-sized, like the client's own.
//! 3. The output adopts them (`RemVec::adopt_remote`): its chunks start remote and are fetched
//!    on first use, so reading it, or offloading an aggregate of it, behaves like any column.
//!    On a failure after the call started, the chunks the server wrote are removed again.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::compute::{
    self as wire, ColumnCall, ColumnOp, ColumnRef, ColumnResult, ElemType, Scalar,
    COLUMN_AT_FUNCTION, COLUMN_WITH_FUNCTION,
};

use crate::element::{CmpOp, Element, RowSet};
use crate::far::FarColumn;
use crate::storage::BinaryOp;

/// Where a [`FarStorage`](crate::FarStorage)'s offloadable operations run (module note).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OffloadPolicy {
    /// On the memory server when most of the column is remote, else locally.
    #[default]
    Auto,
    /// On the memory server whenever the backend has a remote agent.
    Always,
    /// Always locally.
    Never,
}

impl OffloadPolicy {
    /// The policy's name as [`FromStr`](std::str::FromStr) reads it (`"auto"`).
    pub fn name(self) -> &'static str {
        match self {
            OffloadPolicy::Auto => "auto",
            OffloadPolicy::Always => "always",
            OffloadPolicy::Never => "never",
        }
    }

    fn code(self) -> u8 {
        match self {
            OffloadPolicy::Auto => 0,
            OffloadPolicy::Always => 1,
            OffloadPolicy::Never => 2,
        }
    }

    fn from_code(c: u8) -> OffloadPolicy {
        match c {
            1 => OffloadPolicy::Always,
            2 => OffloadPolicy::Never,
            _ => OffloadPolicy::Auto,
        }
    }
}

impl std::str::FromStr for OffloadPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<OffloadPolicy> {
        match s {
            "auto" => Ok(OffloadPolicy::Auto),
            "always" => Ok(OffloadPolicy::Always),
            "never" => Ok(OffloadPolicy::Never),
            _ => Err(Error::invalid(format!(
                "unknown offload policy {s:?}: use auto, always or never"
            ))),
        }
    }
}

/// Counts of where the offloadable operations of one storage ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Operations the memory server ran.
    pub offloaded: u64,
    /// Offloadable operations that ran locally (policy, residency, no agent, result size).
    pub local: u64,
    /// Chunks written back by the flushes before offloaded operations.
    pub chunks_flushed: u64,
}

/// Bytes an offloaded gather moves per row, at most: its index in the call, its value (a tagged
/// scalar) in the result.
const GATHER_BYTES_PER_ROW: usize = 8 + 9;

/// `Auto` offloads a gather of few rows unless at least this percentage of the column's chunks
/// are local (module note).
pub const AUTO_GATHER_RESIDENT_PERCENT: usize = 90;

/// `Auto` offloads when fewer than this percentage of a column's chunks are local.
pub const AUTO_RESIDENT_PERCENT: usize = 50;

/// `Auto` runs columns of fewer chunks than this locally (module note).
pub const AUTO_MIN_CHUNKS: usize = 32;

/// The largest result an operation may bring back from the server (well within the protocol's
/// default 64 MiB frame body); an operation that could return more runs locally.
pub const MAX_RESULT_BYTES: usize = 16 << 20;

const AGENT_UNKNOWN: u8 = 0;
const AGENT_ABSENT: u8 = 1;
const AGENT_PRESENT: u8 = 2;

/// The offload state shared by a storage and its columns.
#[derive(Debug, Default)]
pub(crate) struct Offload {
    policy: AtomicU8,
    /// Whether the backend has a remote agent: [`AGENT_UNKNOWN`] until the first offload
    /// asks it, then [`AGENT_ABSENT`] or [`AGENT_PRESENT`] for good.
    agent: AtomicU8,
    offloaded: AtomicU64,
    local: AtomicU64,
    flushed: AtomicU64,
}

impl Offload {
    pub(crate) fn policy(&self) -> OffloadPolicy {
        OffloadPolicy::from_code(self.policy.load(Ordering::Relaxed))
    }

    pub(crate) fn set_policy(&self, p: OffloadPolicy) {
        self.policy.store(p.code(), Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> OffloadStats {
        OffloadStats {
            offloaded: self.offloaded.load(Ordering::Relaxed),
            local: self.local.load(Ordering::Relaxed),
            chunks_flushed: self.flushed.load(Ordering::Relaxed),
        }
    }

    fn ran_locally<R>(&self) -> Result<Option<R>> {
        self.local.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }
}

/// The wire type of element type `T`, if the server's column function knows it.
fn elem_type<T: Element>() -> Option<ElemType> {
    let e = match T::NAME {
        "u8" => ElemType::U8,
        "u16" => ElemType::U16,
        "i64" => ElemType::I64,
        "f64" => ElemType::F64,
        _ => return None,
    };
    (e.size() == std::mem::size_of::<T>()).then_some(e)
}

/// `v` as a wire scalar of `elem`'s domain (its little-endian bytes, zero-extended).
fn to_scalar<T: Element>(v: T, elem: ElemType) -> Scalar {
    let mut raw = [0u8; 8];
    let n = std::mem::size_of::<T>().min(8);
    // SAFETY: `T: Element` is plain data without padding-dependent invariants, so its `n` bytes
    // may be read; `raw` has room for them.
    unsafe { std::ptr::copy_nonoverlapping((&v as *const T).cast::<u8>(), raw.as_mut_ptr(), n) };
    let bits = u64::from_le_bytes(raw);
    match elem {
        ElemType::F64 => Scalar::F64(f64::from_bits(bits)),
        ElemType::I64 => Scalar::I64(bits as i64),
        _ => Scalar::U64(bits),
    }
}

/// The element of `elem` that the server's scalar `s` names; an error when it is of another
/// domain or does not fit (a server that broke the codec's contract).
fn from_scalar<T: Element>(s: Scalar, elem: ElemType) -> Result<T> {
    let bits = match (s, elem.domain()) {
        (Scalar::U64(v), wire::Domain::Unsigned) => v,
        (Scalar::I64(v), wire::Domain::Signed) => v as u64,
        (Scalar::F64(v), wire::Domain::Float) => v.to_bits(),
        _ => return Err(bad_result(format!("{s:?} for a {elem:?} column"))),
    };
    let n = std::mem::size_of::<T>();
    if n < 8 && bits >> (8 * n) != 0 {
        return Err(bad_result(format!("{s:?} does not fit a {elem:?} element")));
    }
    let mut v = T::default();
    // SAFETY: `T: Element` accepts every bit pattern; `n <= 8` bytes of `bits` (little endian,
    // the low bytes first) are written over `v`'s `n` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bits.to_le_bytes().as_ptr(),
            (&mut v as *mut T).cast::<u8>(),
            n.min(8),
        )
    };
    Ok(v)
}

fn bad_result(what: String) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("offloaded column operation: the memory server returned {what}; upgrade it"),
    )
}

fn wire_cmp(op: CmpOp) -> wire::CmpOp {
    match op {
        CmpOp::Eq => wire::CmpOp::Eq,
        CmpOp::Ne => wire::CmpOp::Ne,
        CmpOp::Lt => wire::CmpOp::Lt,
        CmpOp::Le => wire::CmpOp::Le,
        CmpOp::Gt => wire::CmpOp::Gt,
        CmpOp::Ge => wire::CmpOp::Ge,
    }
}

/// Bytes a result of `count` (value, count) pairs or values takes at most.
fn histogram_bytes<T: Element>(len: usize) -> usize {
    let distinct = match std::mem::size_of::<T>() {
        1 => 256,
        2 => 65_536,
        _ => len,
    };
    distinct.min(len).saturating_mul(17)
}

impl<T: Element> FarColumn<T> {
    /// Runs `op` on the memory server when the policy and the column's residency say so
    /// (module note); `Ok(None)` means: run it locally. `result_bytes` bounds the result's size.
    fn offload(
        &self,
        op: impl FnOnce(ElemType) -> ColumnOp,
        result_bytes: usize,
    ) -> Result<Option<ColumnResult>> {
        self.offload_when(op, result_bytes, AUTO_RESIDENT_PERCENT)
    }

    /// [`offload`](Self::offload), where `Auto` runs locally from `auto_resident_percent` of
    /// the column's chunks local.
    fn offload_when(
        &self,
        op: impl FnOnce(ElemType) -> ColumnOp,
        result_bytes: usize,
        auto_resident_percent: usize,
    ) -> Result<Option<ColumnResult>> {
        let ctl = self.offload_state();
        let Some(elem) = elem_type::<T>() else {
            return ctl.ran_locally();
        };
        if !self.runs_remotely(&[], result_bytes, auto_resident_percent) {
            return ctl.ran_locally();
        }
        let values = self.values();
        let backend = self.far_memory().backend();
        let flushed = values.flush()?;
        ctl.flushed.fetch_add(flushed as u64, Ordering::Relaxed);
        let call = ColumnCall {
            // `column_at` places the column at the data structure the backend names.
            column: ColumnRef {
                ds: 0,
                elem,
                chunk_len: values.chunk_len() as u64,
                len: values.len() as u64,
            },
            op: op(elem),
        };
        match backend.compute(values.ds_id(), COLUMN_AT_FUNCTION, &call.encode()) {
            Ok(bytes) => {
                ctl.offloaded.fetch_add(1, Ordering::Relaxed);
                ColumnResult::decode(&bytes).map(Some)
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                ctl.agent.store(AGENT_ABSENT, Ordering::Relaxed);
                ctl.ran_locally()
            }
            Err(e) => Err(e.with_context(format!(
                "offloading {:?} of a {} column of {} rows",
                call.op,
                T::NAME,
                values.len()
            ))),
        }
    }

    /// Whether an operation over this column and `others` (its further inputs) runs on the
    /// server (module note): by the policy, under `Auto` by the inputs' residency (counted
    /// over all of them), and only where the backend has a remote agent (asked once). The
    /// caller has checked that the element type has a wire type, and counts a local run when
    /// this says no.
    fn runs_remotely(
        &self,
        others: &[&FarColumn<T>],
        result_bytes: usize,
        auto_resident_percent: usize,
    ) -> bool {
        let ctl = self.offload_state();
        let values = self.values();
        if values.is_empty()
            || ctl.agent.load(Ordering::Relaxed) == AGENT_ABSENT
            || result_bytes > MAX_RESULT_BYTES
        {
            return false;
        }
        match ctl.policy() {
            OffloadPolicy::Never => return false,
            OffloadPolicy::Always => {}
            OffloadPolicy::Auto => {
                let inputs = std::iter::once(self).chain(others.iter().copied());
                let (chunks, resident) = inputs.fold((0, 0), |(c, r), col| {
                    (
                        c + col.values().num_chunks(),
                        r + col.values().resident_chunks(),
                    )
                });
                if values.num_chunks() < AUTO_MIN_CHUNKS
                    || resident * 100 >= chunks * auto_resident_percent
                {
                    return false;
                }
            }
        }
        if ctl.agent.load(Ordering::Relaxed) == AGENT_UNKNOWN {
            // Ask once, before flushing for nothing: a backend without a remote agent answers
            // `Unsupported`; one with it refuses the empty arguments (a protocol error).
            let probe =
                self.far_memory()
                    .backend()
                    .compute(values.ds_id(), COLUMN_AT_FUNCTION, &[]);
            let unsupported = matches!(&probe, Err(e) if e.kind() == ErrorKind::Unsupported);
            let agent = if unsupported {
                AGENT_ABSENT
            } else {
                AGENT_PRESENT
            };
            ctl.agent.store(agent, Ordering::Relaxed);
            if unsupported {
                return false;
            }
        }
        true
    }

    /// `self[i] <op> other[i]` for every row, computed on the memory server into a new column
    /// that stays there (the agent's `Pairwise`, through `column_with`), if it runs there:
    /// `Ok(None)` means run it locally. The inputs must have equal lengths (the caller checks)
    /// and live in the same instance. Under `Auto` the inputs' residency decides, counted over
    /// both; the new column's chunks start remote, so nothing but the call crosses the network.
    pub(crate) fn remote_pairwise(
        &self,
        other: &FarColumn<T>,
        op: BinaryOp,
    ) -> Result<Option<FarColumn<T>>> {
        let ctl = self.offload_state();
        let (Some(elem), true) = (
            elem_type::<T>(),
            std::sync::Arc::ptr_eq(self.far_memory(), other.far_memory())
                && self.values().chunk_len() == other.values().chunk_len()
                && self.values().len() == other.values().len(),
        ) else {
            return ctl.ran_locally();
        };
        if !self.runs_remotely(&[other], 16, AUTO_RESIDENT_PERCENT) {
            return ctl.ran_locally();
        }
        let mut flushed = self.values().flush()?;
        flushed += other.values().flush()?;
        ctl.flushed.fetch_add(flushed as u64, Ordering::Relaxed);
        let mut out = self.new_empty_like()?;
        let len = self.values().len();
        let shape = ColumnRef {
            ds: 0,
            elem,
            chunk_len: self.values().chunk_len() as u64,
            len: len as u64,
        };
        let call = ColumnCall {
            column: shape,
            op: ColumnOp::Pairwise {
                op: match op {
                    BinaryOp::Add => wire::ArithOp::Add,
                    BinaryOp::Sub => wire::ArithOp::Sub,
                },
                other: shape,
                dst: shape,
            },
        };
        let backend = self.far_memory().backend();
        let dst = out.values().ds_id();
        let ran = backend
            .compute_with(
                self.values().ds_id(),
                &[other.values().ds_id(), dst],
                COLUMN_WITH_FUNCTION,
                &call.encode(),
            )
            .and_then(|bytes| ColumnResult::decode(&bytes));
        let failed = |e: Error| {
            // Chunks the server wrote before failing are not the new column's (it has none):
            // take them away again.
            for c in 0..len.div_ceil(self.values().chunk_len()) as u32 {
                let _ = backend.remove(dst, c);
            }
            e
        };
        match ran {
            Ok(ColumnResult::Count(n)) if n == len as u64 => {
                out.values_mut().adopt_remote(len).map_err(failed)?;
                ctl.offloaded.fetch_add(1, Ordering::Relaxed);
                Ok(Some(out))
            }
            Ok(r) => Err(failed(bad_result(format!(
                "{r:?} for a {len}-row pairwise"
            )))),
            // Refused without running: the inputs are on two servers (a sharded backend). The
            // agent is there, so only this op runs locally.
            Err(e) if e.kind() == ErrorKind::Unsupported => ctl.ran_locally(),
            Err(e) => Err(failed(e).with_context(format!(
                "offloading {op:?} of two {} columns of {len} rows",
                T::NAME
            ))),
        }
    }

    /// The sum on the server, if it runs there.
    pub(crate) fn remote_sum(&self) -> Result<Option<T::Sum>> {
        Ok(match self.offload(|_| ColumnOp::Sum, 32)? {
            None => None,
            Some(ColumnResult::IntSum(s)) => Some(T::sum_from_i128(s).ok_or_else(|| {
                bad_result(format!("the integer sum {s} for a {} column", T::NAME))
            })?),
            Some(ColumnResult::FloatSum(s)) => Some(T::sum_from_f64(s).ok_or_else(|| {
                bad_result(format!("the float sum {s} for a {} column", T::NAME))
            })?),
            Some(r) => return Err(bad_result(format!("{r:?} for a sum"))),
        })
    }

    /// The smallest (`max == false`) or largest element on the server, if it runs there.
    pub(crate) fn remote_extreme(&self, max: bool) -> Result<Option<Option<T>>> {
        let op = if max { ColumnOp::Max } else { ColumnOp::Min };
        let Some(elem) = elem_type::<T>() else {
            return self.offload_state().ran_locally();
        };
        Ok(match self.offload(|_| op, 32)? {
            None => None,
            Some(ColumnResult::Scalar(s)) => Some(s.map(|s| from_scalar(s, elem)).transpose()?),
            Some(r) => return Err(bad_result(format!("{r:?} for a min or max"))),
        })
    }

    /// The mean on the server, if it runs there.
    pub(crate) fn remote_mean(&self) -> Result<Option<Option<f64>>> {
        Ok(match self.offload(|_| ColumnOp::Mean, 32)? {
            None => None,
            Some(ColumnResult::Mean(m)) => Some(m),
            Some(r) => return Err(bad_result(format!("{r:?} for a mean"))),
        })
    }

    /// The median on the server, if it runs there: the server selects the two middle
    /// elements (`MedianPair`) and they are combined here exactly as
    /// [`median_in_place`](crate::column::median_in_place) does, so the result is the local
    /// one bit for bit.
    pub(crate) fn remote_median(&self) -> Result<Option<Option<f64>>> {
        let Some(elem) = elem_type::<T>() else {
            return self.offload_state().ran_locally();
        };
        Ok(match self.offload(|_| ColumnOp::MedianPair, 64)? {
            None => None,
            Some(ColumnResult::Values(v)) => match v.as_slice() {
                [] => Some(None),
                [lo, hi] => {
                    let (lo, hi): (T, T) = (from_scalar(*lo, elem)?, from_scalar(*hi, elem)?);
                    Some(Some(if self.values().len() % 2 == 1 {
                        hi.to_f64()
                    } else {
                        (lo.to_f64() + hi.to_f64()) / 2.0
                    }))
                }
                _ => return Err(bad_result(format!("{} values for a median pair", v.len()))),
            },
            Some(r) => return Err(bad_result(format!("{r:?} for a median pair"))),
        })
    }

    /// The distinct elements, ascending, on the server, if it runs there.
    pub(crate) fn remote_unique(&self) -> Result<Option<Vec<T>>> {
        let Some(elem) = elem_type::<T>() else {
            return self.offload_state().ran_locally();
        };
        Ok(
            match self.offload(
                |_| ColumnOp::Unique,
                histogram_bytes::<T>(self.values().len()),
            )? {
                None => None,
                Some(ColumnResult::Values(v)) => Some(
                    v.into_iter()
                        .map(|s| from_scalar(s, elem))
                        .collect::<Result<_>>()?,
                ),
                Some(r) => return Err(bad_result(format!("{r:?} for unique"))),
            },
        )
    }

    /// The histogram on the server, if it runs there.
    pub(crate) fn remote_histogram(&self) -> Result<Option<Vec<(T, u64)>>> {
        let Some(elem) = elem_type::<T>() else {
            return self.offload_state().ran_locally();
        };
        Ok(
            match self.offload(
                |_| ColumnOp::Histogram,
                histogram_bytes::<T>(self.values().len()),
            )? {
                None => None,
                Some(ColumnResult::ValueCounts(v)) => Some(
                    v.into_iter()
                        .map(|(s, n)| Ok((from_scalar(s, elem)?, n)))
                        .collect::<Result<_>>()?,
                ),
                Some(r) => return Err(bad_result(format!("{r:?} for a histogram"))),
            },
        )
    }

    /// The elements at `rows`, in order, gathered on the server, if it runs there: under
    /// `Auto` only when the call moves far less than the column and the column is not almost
    /// all local (module note). Rows out of bounds run locally, which reports them.
    pub(crate) fn remote_gather(&self, rows: &RowSet) -> Result<Option<Vec<T>>> {
        let Some(elem) = elem_type::<T>() else {
            return self.offload_state().ran_locally();
        };
        let idx = rows.rows();
        let len = self.values().len();
        let call_bytes = idx.len().saturating_mul(GATHER_BYTES_PER_ROW);
        let few = call_bytes <= len.saturating_mul(std::mem::size_of::<T>()) / 4;
        if idx.last().map_or(true, |&r| r as usize >= len)
            || (self.offload_state().policy() == OffloadPolicy::Auto && !few)
        {
            return self.offload_state().ran_locally();
        }
        let indices = idx.iter().map(|&r| u64::from(r)).collect();
        let op = |_| ColumnOp::Gather { indices };
        Ok(
            match self.offload_when(op, call_bytes, AUTO_GATHER_RESIDENT_PERCENT)? {
                None => None,
                Some(ColumnResult::Values(v)) if v.len() == idx.len() => Some(
                    v.into_iter()
                        .map(|s| from_scalar(s, elem))
                        .collect::<Result<_>>()?,
                ),
                Some(r) => {
                    return Err(bad_result(format!(
                        "{r:?} for a gather of {} rows",
                        idx.len()
                    )))
                }
            },
        )
    }

    /// The rows with `x <op> value`, selected on the server, if it runs there.
    pub(crate) fn remote_filter(&self, op: CmpOp, value: T) -> Result<Option<RowSet>> {
        if self.offload_state().policy() == OffloadPolicy::Auto {
            // Auto keeps filters local (module note).
            return self.offload_state().ran_locally();
        }
        let rows_bytes = self.values().len().saturating_mul(8);
        let r = self.offload(
            |elem| ColumnOp::Filter {
                cmp: wire_cmp(op),
                value: to_scalar(value, elem),
            },
            rows_bytes,
        )?;
        Ok(match r {
            None => None,
            Some(ColumnResult::Indices(rows)) => {
                let rows = rows
                    .into_iter()
                    .map(|r| {
                        u32::try_from(r)
                            .map_err(|_| bad_result(format!("row index {r} beyond u32")))
                    })
                    .collect::<Result<Vec<u32>>>()?;
                Some(RowSet::from_sorted(rows).map_err(|e| bad_result(e.to_string()))?)
            }
            Some(r) => return Err(bad_result(format!("{r:?} for a filter"))),
        })
    }

    /// The number of rows with `x <op> value`, counted on the server, if it runs there.
    pub(crate) fn remote_count_where(&self, op: CmpOp, value: T) -> Result<Option<usize>> {
        let r = self.offload(
            |elem| ColumnOp::CountWhere {
                cmp: wire_cmp(op),
                value: to_scalar(value, elem),
            },
            32,
        )?;
        Ok(match r {
            None => None,
            Some(ColumnResult::Count(n)) => {
                Some(usize::try_from(n).map_err(|_| bad_result(format!("a count of {n} rows")))?)
            }
            Some(r) => return Err(bad_result(format!("{r:?} for a count"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip_every_element_type() -> Result<()> {
        let u8e = elem_type::<u8>().ok_or_else(|| Error::internal("u8"))?;
        assert_eq!(from_scalar::<u8>(to_scalar(200u8, u8e), u8e)?, 200);
        let u16e = elem_type::<u16>().ok_or_else(|| Error::internal("u16"))?;
        assert_eq!(
            from_scalar::<u16>(to_scalar(65_000u16, u16e), u16e)?,
            65_000
        );
        let i = elem_type::<i64>().ok_or_else(|| Error::internal("i64"))?;
        assert_eq!(from_scalar::<i64>(to_scalar(-5i64, i), i)?, -5);
        let f = elem_type::<f64>().ok_or_else(|| Error::internal("f64"))?;
        let back = from_scalar::<f64>(to_scalar(-0.0f64, f), f)?;
        assert_eq!(back.to_bits(), (-0.0f64).to_bits());
        // A value that does not fit, or of another domain, is the server's protocol error.
        assert_eq!(
            from_scalar::<u8>(Scalar::U64(256), u8e).unwrap_err().kind(),
            ErrorKind::Protocol
        );
        assert_eq!(
            from_scalar::<i64>(Scalar::F64(1.0), i).unwrap_err().kind(),
            ErrorKind::Protocol
        );
        assert_eq!("always".parse::<OffloadPolicy>()?, OffloadPolicy::Always);
        assert!("sometimes".parse::<OffloadPolicy>().is_err());
        Ok(())
    }
}
