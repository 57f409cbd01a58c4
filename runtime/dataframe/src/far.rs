//! `FarStorage`: DataFrame columns in far memory, one `farmem_objects::RemVec` per column
//! (AIFM §6.2: the taxi analysis with most of the frame remote).
//!
//! # Layout
//!
//! A [`FarColumn<T>`] is a `RemVec<FarElement<T>>` plus the [`FarMemory`] it lives in.
//! [`FarElement`] is a `#[repr(transparent)]` wrapper that lets any [`Element`] be a
//! `farmem_objects::Pod`: both traits promise the same thing (plain data, every bit pattern
//! valid, alignment at most 8), so a slice of wrappers is a slice of elements and the two
//! crates' element sets cannot drift apart.
//!
//! ```text
//!   FarColumn<T> ──► RemVec<FarElement<T>> ──► chunk 0 │ chunk 1 │ ... (objects, local or remote)
//!                └─► Arc<FarMemory>   (scopes are opened on it; columns keep it alive)
//! ```
//!
//! # Caller closures run outside the scope; read-only scans run inside it
//!
//! [`ColumnStore::for_each_chunk_in`] hands the caller's closure a *local copy* of up to
//! [`SCAN_BATCH_ROWS`] rows, filled chunk by chunk inside a [`DerefScope`](farmem_objects::DerefScope) that is closed before
//! the closure runs. A caller's closure may call back into far memory (the provided `gather`
//! appends to its output column while it scans): a write that needs local memory while an
//! older scope on the same thread still pins references could wait for an evacuator that is
//! itself waiting for that scope. Copying out first means no *caller* closure ever runs inside
//! a scope, so every write path may wait for memory.
//!
//! The copy costs as much as the scan itself for the cheap aggregates, so the operations whose
//! closures only read into local state (sum, min, max, mean, histogram, histogram_of, unique,
//! filter, count_where) are overridden to run the provided code on `InScopeView`, whose chunk
//! visits hand the closure the chunk's own slice inside the scope: no closure there touches far
//! memory, so the wait above cannot arise. The row-wise operations that make a new column
//! (`zip_i64`, `haversine_km`, `timestamp_part` and `timestamp_parts`, the last computing all
//! parts in one pass) read the same rows of every input straight from their chunks inside one
//! scope (inputs of one element type have the same chunk length, so their chunks line up),
//! compute a batch into a local buffer, hand it to the caller's `Seen` closure (which aggregates
//! the new column without reading it back) and append it after the scope closes; `group_median`
//! reads its values the same way. No input is copied out. Every scan renews its scope every few
//! chunks so it never pins more than a sliver of local memory (the evacuator keeps up at a local
//! budget of a few percent of the data).
//!
//! # Scans read chunks normally
//!
//! Scans read with `RemVec::chunk`, not the don't-cache hint: the object layer leaves a
//! prefetched chunk cold on its first read, so a streamed chunk is dropped by the evacuator
//! without a copy anyway, and a don't-cache read of a chunk the prefetcher has not brought in
//! yet is a synchronous fetch that also skips the stride detector. (A streaming mode with the
//! hint for scans over half the local budget was measured after that object-layer change:
//! `farmem-demo --local 25 --far-only`, five alternating runs, nine steps 0.150–0.184 s with
//! it and 0.128–0.147 s without; step 6 65–81 ms vs 39–48 ms.)
//!
//! A new column reserves all its chunks before it is filled ([`ColumnStore::reserve`]): they
//! start fresh, so filling them fetches nothing, and with the configuration of
//! [`FarStorage::config_for`] they take far capacity at their first write-back, so creating
//! them sends nothing to the memory server either.
//!
//! # Offload
//!
//! The read-only aggregates (sum, min, max, mean, unique, histogram, filter, count_where) may
//! run on the memory server instead (AIFM's remote agent): each override first asks
//! `far_offload.rs`, which decides by the storage's [`OffloadPolicy`] and the column's
//! residency, flushes the column's dirty chunks, and calls the server's `column_at` function;
//! when it declines, the local path below runs. Both give identical results. `zip_i64` (the
//! plain form, with no `Seen` closure) may likewise make its new column on the server
//! (`far_offload.rs`, "A new column on the server").

use std::ops::Range;
use std::sync::Arc;

use farmem_error::{Error, Result};
use farmem_objects::{Config, FarMemory, Pod, RemVec};

use crate::column::{median_in_place, ColumnStore, Histogram};
use crate::element::{CmpOp, Element, RowSet};
use crate::far_offload::{Offload, OffloadPolicy, OffloadStats};
use crate::storage::{haversine_km, same_len, BinaryOp, Seen, Storage, TimePart, TripCoordinates};

/// Rows a scan copies out of far memory per closure call.
pub const SCAN_BATCH_ROWS: usize = 64 * 1024;

/// How long an append waits for the evacuator to free local memory before it fails with
/// `OutOfLocalMemory` (see [`FarStorage::config_for`]).
pub const APPEND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The smallest local budget [`FarStorage::config_for`] accepts (8 regions of 16 KiB).
pub const MIN_LOCAL_BYTES: usize = 128 << 10;

/// The fewest regions [`FarStorage::config_for`] gives a budget when it can choose the region
/// size: the open allocation regions (a few per core) and the evacuator's reserve take several.
const MIN_REGIONS: usize = 32;

/// An [`Element`] as a far-memory plain-data value; see the module note.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FarElement<T>(pub T);

// SAFETY: `Element`'s safety contract is `Pod`'s (Copy, no pointers, no drop glue, every bit
// pattern valid, alignment <= 8), and `repr(transparent)` gives the wrapper `T`'s layout.
unsafe impl<T: Element> Pod for FarElement<T> {}

fn as_elements<T: Element>(s: &[FarElement<T>]) -> &[T] {
    // SAFETY: `FarElement<T>` is `repr(transparent)` over `T`, so the slices have the same
    // layout; the lifetime is carried over from `s`.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<T>(), s.len()) }
}

fn as_far<T: Element>(s: &[T]) -> &[FarElement<T>] {
    // SAFETY: as in `as_elements`, in the other direction.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<FarElement<T>>(), s.len()) }
}

/// Columns in one far-memory instance (see the module note). Cloning shares the instance.
#[derive(Clone)]
pub struct FarStorage {
    far: Arc<FarMemory>,
    offload: Arc<Offload>,
}

impl FarStorage {
    /// Columns in `far`, with [`OffloadPolicy::Auto`].
    pub fn new(far: FarMemory) -> FarStorage {
        FarStorage::from_arc(Arc::new(far))
    }

    /// Columns in a shared `far`, with [`OffloadPolicy::Auto`].
    pub fn from_arc(far: Arc<FarMemory>) -> FarStorage {
        FarStorage {
            far,
            offload: Arc::default(),
        }
    }

    /// Where offloadable operations of this storage's columns (existing and future, and those
    /// of its clones) run from now on.
    pub fn set_offload_policy(&self, policy: OffloadPolicy) {
        self.offload.set_policy(policy);
    }

    /// The storage with `policy` set (see [`set_offload_policy`](Self::set_offload_policy)).
    pub fn with_offload_policy(self, policy: OffloadPolicy) -> FarStorage {
        self.set_offload_policy(policy);
        self
    }

    /// The current offload policy.
    pub fn offload_policy(&self) -> OffloadPolicy {
        self.offload.policy()
    }

    /// Where this storage's offloadable operations ran so far.
    pub fn offload_stats(&self) -> OffloadStats {
        self.offload.stats()
    }

    /// The far-memory instance (for metrics and configuration).
    pub fn far_memory(&self) -> &Arc<FarMemory> {
        &self.far
    }

    /// A configuration for a local budget of `local_bytes` suited to column scans: chunks of
    /// 4 KiB below 4 MiB of local memory (so a small budget still holds many regions), 64 KiB
    /// chunks above (fewer, larger fetches: one round trip per 64 KiB over TCP). Fails below
    /// [`MIN_LOCAL_BYTES`], where too few regions are left for the evacuator to keep up with
    /// appends.
    ///
    /// Regions hold 16 chunks where the budget still has [`MIN_REGIONS`] of them (1 MiB regions
    /// from 32 MiB up), else 4: a chunk is a power of two plus a 16-byte header, so a region of
    /// 4 chunks holds 3 and wastes a quarter of local memory, one of 16 holds 15
    /// (`farmem-demo --local 100` fetched 17–30 MiB in the nine steps instead of 26–30 MiB).
    ///
    /// The evacuator keeps the object layer's watermarks (start at 25% free, stop at 40%).
    /// Lower ones (5%/8%, floor 2%) held more of the frame (5 MiB fetched at 100% local) but
    /// left no room for the derived columns a step makes: the appends then waited for
    /// write-backs (step 4 took 15–45 ms instead of 5–35), and the nine steps at 25% and 5%
    /// local were slower (`farmem-demo --far-only`, medians of 3, loaded 2-core machine).
    ///
    /// The prefetcher reads ahead about 1/64 of local memory per scanned column (4 to 16
    /// chunks): with 64 KiB chunks the object layer's default depth of 64 is a 4 MiB lead per
    /// column, which at a local budget of a few percent evicts prefetched chunks before they are
    /// used (`farmem-demo` at 25% and 5% local fetched 10–20% fewer bytes and ran faster at
    /// depths 4–16 than at 64).
    ///
    /// An append that needs local memory waits up to [`APPEND_WAIT`] for the evacuator (the
    /// object layer's default is 2 s): on a loaded machine, write-backs of a full local
    /// budget of dirty chunks can take longer than that, and every append path of a column
    /// renews its scope before it waits, so waiting longer cannot deadlock.
    ///
    /// New chunks take their far capacity at their first write-back
    /// (`Config::reserve_far_on_grow` off): creating a derived column then sends nothing to the
    /// memory server (no zeros), which is most of what creating a column cost over TCP. The
    /// price is that a full memory server is reported when local memory can no longer be freed
    /// (an `OutOfFarMemory` error from the append that needed it, see
    /// `FarMemory::take_error`), not by the append that first crossed the capacity.
    pub fn config_for(local_bytes: usize) -> Result<Config> {
        if local_bytes < MIN_LOCAL_BYTES {
            return Err(Error::invalid(format!(
                "a far-memory DataFrame needs at least {MIN_LOCAL_BYTES} bytes of local memory, got {local_bytes}; raise the local budget"
            )));
        }
        let chunk = if local_bytes < 4 << 20 {
            4 << 10
        } else {
            64 << 10
        };
        // A region holds one chunk fewer than `region / chunk` (each object has a 16-byte
        // header, chunks are powers of two): 16 chunks a region use 15/16 of local memory, 4
        // chunks only 3/4. Large regions where the budget still holds enough of them.
        let region = if local_bytes / (16 * chunk) >= MIN_REGIONS {
            16 * chunk
        } else {
            4 * chunk
        };
        Config::builder()
            .local_bytes(local_bytes)
            .chunk_bytes(chunk)
            .region_bytes(region)
            .reserve_far_on_grow(false)
            .alloc_wait(APPEND_WAIT)
            .prefetch_depth((local_bytes / 64 / chunk).clamp(4, 16))
            .build()
    }
}

impl std::fmt::Debug for FarStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarStorage")
            .field("far", &self.far)
            .field("offload", &self.offload)
            .finish()
    }
}

/// One column in far memory: a remote vector and the instance it lives in.
pub struct FarColumn<T: Element> {
    // Declared first so it drops first: the vector's objects go before the instance's threads
    // stop (when this column holds the last handle to the instance).
    values: RemVec<FarElement<T>>,
    far: Arc<FarMemory>,
    offload: Arc<Offload>,
}

impl<T: Element> FarColumn<T> {
    fn new_in(far: &Arc<FarMemory>, offload: &Arc<Offload>) -> Result<FarColumn<T>> {
        Ok(FarColumn {
            values: far.vec()?,
            far: far.clone(),
            offload: offload.clone(),
        })
    }

    pub(crate) fn values(&self) -> &RemVec<FarElement<T>> {
        &self.values
    }

    pub(crate) fn values_mut(&mut self) -> &mut RemVec<FarElement<T>> {
        &mut self.values
    }

    /// A new, empty column in the same instance and storage.
    pub(crate) fn new_empty_like(&self) -> Result<FarColumn<T>> {
        FarColumn::new_in(&self.far, &self.offload)
    }

    pub(crate) fn far_memory(&self) -> &Arc<FarMemory> {
        &self.far
    }

    pub(crate) fn offload_state(&self) -> &Offload {
        &self.offload
    }

    /// Elements per chunk object (the unit of fetching and evacuation).
    pub fn chunk_len(&self) -> usize {
        self.values.chunk_len()
    }

    /// Chunks a scan dereferences per scope renewal: few enough to pin at most 1/64 of local
    /// memory, as the object layer's own scans do.
    fn renew_every(&self) -> usize {
        let chunk_bytes = self.values.chunk_len() * std::mem::size_of::<T>() + 16;
        (self.far.config().local_bytes / 64 / chunk_bytes).clamp(1, 64)
    }

    fn check_range(&self, range: &Range<usize>) -> Result<()> {
        if range.start > range.end || range.end > self.values.len() {
            return Err(Error::invalid(format!(
                "row range {range:?} out of bounds for a far-memory column of {} rows",
                self.values.len()
            )));
        }
        Ok(())
    }

    /// Calls `f(row, elements)` for consecutive pieces of rows `range` (checked by the caller),
    /// chunk by chunk in one scope renewed every few chunks; stops at `f`'s first error. `f`
    /// runs inside the scope, so it must not touch far memory (module note): only this module's
    /// closures, which read the slice into local state, are passed here.
    fn visit_in_scope(
        &self,
        range: Range<usize>,
        mut f: impl FnMut(usize, &[T]) -> Result<()>,
    ) -> Result<()> {
        let chunk_len = self.values.chunk_len();
        let every = self.renew_every();
        let mut scope = self.far.scope();
        let mut since_renew = 0;
        let mut i = range.start;
        while i < range.end {
            let c = i / chunk_len;
            let off = i - c * chunk_len;
            let chunk = self.values.chunk(c, &scope)?;
            let n = (chunk.len() - off).min(range.end - i);
            f(i, as_elements(&chunk[off..off + n]))?;
            i += n;
            since_renew += 1;
            if since_renew == every {
                scope.renew();
                since_renew = 0;
            }
        }
        Ok(())
    }
}

impl<T: Element> ColumnStore<T> for FarColumn<T> {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn get(&self, i: usize) -> Result<T> {
        let scope = self.far.scope();
        let v = self.values.get(i, &scope)?.0;
        Ok(v)
    }

    fn push(&mut self, v: T) -> Result<()> {
        let scope = self.far.scope();
        self.values.push(FarElement(v), &scope)
    }

    fn extend_from_slice(&mut self, src: &[T]) -> Result<()> {
        let mut scope = self.far.scope();
        self.values.extend_from_slice(as_far(src), &mut scope)
    }

    fn flush(&self) -> Result<()> {
        self.values.flush().map(drop)
    }

    // Creates every chunk the appends will need in one batch (one request to the memory
    // server), fresh: their first write makes them locally, with nothing fetched.
    fn reserve(&mut self, additional: usize) -> Result<()> {
        self.values.reserve(additional)
    }

    fn for_each_chunk_in<F>(&self, range: Range<usize>, mut f: F) -> Result<()>
    where
        F: FnMut(usize, &[T]) -> Result<()>,
    {
        self.check_range(&range)?;
        let mut buf = Vec::with_capacity(SCAN_BATCH_ROWS.min(range.len()));
        let mut start = range.start;
        while start < range.end {
            let end = (start + SCAN_BATCH_ROWS).min(range.end);
            buf.clear();
            self.visit_in_scope(start..end, |_, elems| {
                buf.extend_from_slice(elems);
                Ok(())
            })?;
            // The scope is closed: `f` may use far memory freely (module note).
            f(start, &buf)?;
            start = end;
        }
        Ok(())
    }

    // Visits only the chunks that hold selected rows (a sparse selection of a mostly remote
    // column fetches a few chunks, not the whole row range), in batches copied out of the scope
    // before they are appended (module note).
    fn gather(&self, rows: &RowSet) -> Result<Self> {
        let mut out = self.empty_like()?;
        let idx = rows.rows();
        let Some(&last) = idx.last() else {
            return Ok(out);
        };
        if last as usize >= self.values.len() {
            return Err(Error::invalid(format!(
                "gather: row {last} out of bounds for a column of {} rows",
                self.values.len()
            )));
        }
        out.reserve(idx.len())?;
        let chunk_len = self.values.chunk_len();
        let every = self.renew_every();
        let mut buf = Vec::with_capacity(SCAN_BATCH_ROWS.min(idx.len()));
        let mut next = 0;
        while next < idx.len() {
            buf.clear();
            {
                let mut scope = self.far.scope();
                let mut since_renew = 0;
                while next < idx.len() && buf.len() < SCAN_BATCH_ROWS {
                    let c = idx[next] as usize / chunk_len;
                    let chunk = self.values.chunk(c, &scope)?;
                    let base = c * chunk_len;
                    let end = base + chunk.len();
                    while next < idx.len()
                        && (idx[next] as usize) < end
                        && buf.len() < SCAN_BATCH_ROWS
                    {
                        buf.push(chunk[idx[next] as usize - base].0);
                        next += 1;
                    }
                    since_renew += 1;
                    if since_renew == every {
                        scope.renew();
                        since_renew = 0;
                    }
                }
            }
            out.extend_from_slice(&buf)?;
        }
        Ok(out)
    }

    fn empty_like(&self) -> Result<Self> {
        FarColumn::new_in(&self.far, &self.offload)
    }

    // The read-only aggregates: on the memory server when `far_offload` decides so, else the
    // provided code on the in-scope view (module note).
    fn sum(&self) -> Result<T::Sum> {
        if let Some(s) = self.remote_sum()? {
            return Ok(s);
        }
        InScopeView(self).sum()
    }

    fn min(&self) -> Result<Option<T>> {
        if let Some(m) = self.remote_extreme(false)? {
            return Ok(m);
        }
        InScopeView(self).min()
    }

    fn max(&self) -> Result<Option<T>> {
        if let Some(m) = self.remote_extreme(true)? {
            return Ok(m);
        }
        InScopeView(self).max()
    }

    fn mean(&self) -> Result<Option<f64>> {
        if let Some(m) = self.remote_mean()? {
            return Ok(m);
        }
        InScopeView(self).mean()
    }

    fn median(&self) -> Result<Option<f64>> {
        if let Some(m) = self.remote_median()? {
            return Ok(m);
        }
        let mut v = self.to_vec()?;
        Ok(median_in_place(&mut v))
    }

    fn unique(&self) -> Result<Vec<T>> {
        if let Some(u) = self.remote_unique()? {
            return Ok(u);
        }
        InScopeView(self).unique()
    }

    fn histogram(&self) -> Result<Vec<(T, u64)>> {
        if let Some(h) = self.remote_histogram()? {
            return Ok(h);
        }
        InScopeView(self).histogram()
    }

    // The server gathers the selected values when few rows of a remote column are selected
    // (far_offload.rs), and they are counted here; else read in scope like `histogram`.
    fn histogram_of(&self, rows: &RowSet) -> Result<Vec<(T, u64)>> {
        if let Some(values) = self.remote_gather(rows)? {
            let mut h = Histogram::default();
            h.add_all(&values);
            return h.finish();
        }
        InScopeView(self).histogram_of(rows)
    }

    fn filter(&self, op: CmpOp, value: T) -> Result<RowSet> {
        if let Some(r) = self.remote_filter(op, value)? {
            return Ok(r);
        }
        InScopeView(self).filter(op, value)
    }

    fn count_where(&self, op: CmpOp, value: T) -> Result<usize> {
        if let Some(n) = self.remote_count_where(op, value)? {
            return Ok(n);
        }
        InScopeView(self).count_where(op, value)
    }

    fn copy_range(&self, start: usize, dst: &mut [T]) -> Result<()> {
        let end = start
            .checked_add(dst.len())
            .ok_or_else(|| Error::invalid(format!("row range starting at {start} overflows")))?;
        self.check_range(&(start..end))?;
        self.visit_in_scope(start..end, |row, elems| {
            dst[row - start..row - start + elems.len()].copy_from_slice(elems);
            Ok(())
        })
    }

    fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.values.len());
        self.visit_in_scope(0..self.values.len(), |_, elems| {
            out.extend_from_slice(elems);
            Ok(())
        })?;
        Ok(out)
    }
}

/// A read-only view of a [`FarColumn`] whose chunk visits run the closure *inside* the scope on
/// the chunk's own slice, without the copy (module note). Only for the provided aggregates whose
/// closures read the slice into local state; it cannot append or make columns.
struct InScopeView<'a, T: Element>(&'a FarColumn<T>);

impl<T: Element> ColumnStore<T> for InScopeView<'_, T> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, i: usize) -> Result<T> {
        self.0.get(i)
    }

    fn push(&mut self, _v: T) -> Result<()> {
        Err(read_only_view("push"))
    }

    fn extend_from_slice(&mut self, _src: &[T]) -> Result<()> {
        Err(read_only_view("extend_from_slice"))
    }

    fn for_each_chunk_in<F>(&self, range: Range<usize>, f: F) -> Result<()>
    where
        F: FnMut(usize, &[T]) -> Result<()>,
    {
        self.0.check_range(&range)?;
        self.0.visit_in_scope(range, f)
    }

    fn empty_like(&self) -> Result<Self> {
        Err(read_only_view("empty_like"))
    }
}

fn read_only_view(what: &str) -> Error {
    Error::internal(format!(
        "{what} called on a far column's read-only in-scope view; only read-only aggregates run there"
    ))
}

impl Storage for FarStorage {
    type Column<T: Element> = FarColumn<T>;

    fn name(&self) -> &'static str {
        "far"
    }

    fn new_column<T: Element>(&self) -> Result<FarColumn<T>> {
        FarColumn::new_in(&self.far, &self.offload)
    }

    fn timestamp_part(&self, ts: &FarColumn<i64>, part: TimePart) -> Result<FarColumn<u8>> {
        self.map_in_scope([ts], |[t]: [i64; 1]| part.of(t), &mut |_| {})
    }

    // One pass over the timestamps for all the parts: a remote input is fetched once.
    fn timestamp_parts_seen(
        &self,
        ts: &FarColumn<i64>,
        parts: &[TimePart],
        seen: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<Vec<FarColumn<u8>>> {
        let mut outs = parts
            .iter()
            .map(|_| {
                let mut c = self.new_column::<u8>()?;
                c.reserve(ts.len())?;
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut res: Vec<Vec<u8>> = parts
            .iter()
            .map(|_| Vec::with_capacity(SCAN_BATCH_ROWS.min(ts.len())))
            .collect();
        let mut start = 0;
        while start < ts.len() {
            let end = (start + SCAN_BATCH_ROWS).min(ts.len());
            res.iter_mut().for_each(Vec::clear);
            ts.visit_in_scope(start..end, |_, c| {
                for (r, p) in res.iter_mut().zip(parts) {
                    r.extend(c.iter().map(|&t| p.of(t)));
                }
                Ok(())
            })?;
            for (k, (o, r)) in outs.iter_mut().zip(&res).enumerate() {
                seen(k, r);
                o.extend_from_slice(r)?;
            }
            start = end;
        }
        Ok(outs)
    }

    // Without a `Seen` closure nothing needs the new values here, so the memory server may
    // compute the column next to its inputs (far_offload's module note); the `_seen` form
    // always runs locally.
    fn zip_i64(
        &self,
        a: &FarColumn<i64>,
        b: &FarColumn<i64>,
        op: BinaryOp,
    ) -> Result<FarColumn<i64>> {
        same_len(&[a.len(), b.len()], "zip_i64")?;
        if let Some(out) = a.remote_pairwise(b, op)? {
            return Ok(out);
        }
        self.zip_i64_seen(a, b, op, &mut |_| {})
    }

    fn zip_i64_seen(
        &self,
        a: &FarColumn<i64>,
        b: &FarColumn<i64>,
        op: BinaryOp,
        seen: Seen<'_, i64>,
    ) -> Result<FarColumn<i64>> {
        same_len(&[a.len(), b.len()], "zip_i64")?;
        self.map_in_scope([a, b], |[x, y]: [i64; 2]| op.apply(x, y), seen)
    }

    fn haversine_km_seen(
        &self,
        c: TripCoordinates<'_, FarColumn<f64>>,
        seen: Seen<'_, f64>,
    ) -> Result<FarColumn<f64>> {
        let cols = [c.pickup_lat, c.pickup_lon, c.dropoff_lat, c.dropoff_lon];
        same_len(&cols.map(|c| c.len()), "haversine_km")?;
        self.map_in_scope(
            cols,
            |[a, b, d, e]: [f64; 4]| haversine_km(a, b, d, e),
            seen,
        )
    }

    // The values are read inside the scope straight from their chunks (only the `u8` keys of a
    // batch are copied out), and pushed into local groups.
    fn group_median(
        &self,
        keys: &FarColumn<u8>,
        values: &FarColumn<i64>,
    ) -> Result<Vec<(u8, f64)>> {
        same_len(&[keys.len(), values.len()], "group_median")?;
        let mut groups: Vec<Vec<i64>> = vec![Vec::new(); 256];
        let mut k = Vec::with_capacity(SCAN_BATCH_ROWS.min(keys.len()));
        let mut start = 0;
        while start < keys.len() {
            let end = (start + SCAN_BATCH_ROWS).min(keys.len());
            k.clear();
            k.resize(end - start, 0);
            keys.copy_range(start, &mut k)?;
            values.visit_in_scope(start..end, |row, vs| {
                for (&key, &v) in k[row - start..].iter().zip(vs) {
                    groups[usize::from(key)].push(v);
                }
                Ok(())
            })?;
            start = end;
        }
        Ok(groups
            .iter_mut()
            .enumerate()
            .filter_map(|(k, g)| median_in_place(g).map(|m| (k as u8, m)))
            .collect())
    }
}

impl FarStorage {
    /// A new column of `f(row of inputs)` for every row of the `N` equally long `inputs`,
    /// computed inside the scope straight from the inputs' chunks (no copy of an input) a batch
    /// at a time, each batch handed to `seen` and appended with the scope closed (module note).
    fn map_in_scope<T: Element, U: Element, const N: usize>(
        &self,
        inputs: [&FarColumn<T>; N],
        f: impl Fn([T; N]) -> U,
        seen: Seen<'_, U>,
    ) -> Result<FarColumn<U>> {
        let len = inputs.first().map_or(0, |c| c.len());
        let mut out = self.new_column::<U>()?;
        out.reserve(len)?;
        let mut res = Vec::with_capacity(SCAN_BATCH_ROWS.min(len));
        let mut start = 0;
        while start < len {
            let end = (start + SCAN_BATCH_ROWS).min(len);
            res.clear();
            visit_columns_in_scope(&self.far, inputs, start..end, |cols| {
                let n = cols.first().map_or(0, |c| c.len());
                res.extend((0..n).map(|i| f(cols.map(|c| c[i]))));
                Ok(())
            })?;
            seen(&res);
            out.extend_from_slice(&res)?;
            start = end;
        }
        Ok(out)
    }
}

/// Calls `f(pieces)` for consecutive pieces of rows `range` of `N` columns of one element type
/// in `far` (so their chunk boundaries line up), each piece holding the same rows of every
/// column, chunk by chunk inside one scope renewed every few chunks. As with
/// `FarColumn::visit_in_scope`, `f` must not touch far memory.
fn visit_columns_in_scope<T: Element, const N: usize>(
    far: &Arc<FarMemory>,
    cols: [&FarColumn<T>; N],
    range: Range<usize>,
    mut f: impl FnMut([&[T]; N]) -> Result<()>,
) -> Result<()> {
    let Some(first) = cols.first() else {
        return Ok(());
    };
    let chunk_len = first.chunk_len();
    for c in &cols {
        c.check_range(&range)?;
        if c.chunk_len() != chunk_len || !Arc::ptr_eq(&c.far, far) {
            return Err(Error::invalid(
                "columns of one row-wise operation must live in the same far memory as its storage",
            ));
        }
    }
    let every = (first.renew_every() / N).max(1);
    let mut scope = far.scope();
    let mut since_renew = 0;
    let mut i = range.start;
    while i < range.end {
        let c = i / chunk_len;
        let off = i - c * chunk_len;
        let n = (chunk_len - off).min(range.end - i);
        {
            let mut pieces: [&[T]; N] = [&[]; N];
            for (piece, col) in pieces.iter_mut().zip(cols) {
                let chunk = col.values.chunk(c, &scope)?;
                *piece = as_elements(&chunk[off..off + n]);
            }
            f(pieces)?;
        }
        i += n;
        since_renew += 1;
        if since_renew == every {
            scope.renew();
            since_renew = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
