//! `RemArray<T>`: a fixed-length remote array of plain-data elements, stored as chunk objects
//! (AIFM §5, remoteable containers), and the chunk-handle core it shares with
//! [`RemVec`](crate::RemVec).
//!
//! Element `i` lives in chunk `i >> shift` at slot `i & mask`; a chunk holds a power of two of
//! elements (the largest that fits `chunk_bytes`), so locating an element is a shift and a mask,
//! and the fast path of `get` is: bounds check, load the chunk's pointer word from the handle's
//! segment cache, one masked test, one branch, add the offset. Every reference returned borrows
//! both the container and the [`DerefScope`], so it can neither outlive the scope (the evacuator's
//! grace period) nor the container. Writes need `&mut self`: many threads may read one container
//! at once, but a write excludes every other reference to it, as Rust's aliasing rules require
//! (the evacuator is the only concurrent party, and it synchronises through the pointer word).
//!
//! Long scans use [`RemArray::for_each_chunk`], which dereferences each chunk once and renews the
//! scope every few chunks (pinning at most 1/64 of local memory) so the evacuator keeps up; the `_nocache` variants read remote chunks into
//! scope-owned buffers without caching them (for data read once).

use std::marker::PhantomData;
use std::sync::Arc;

use farmem_error::{Error, Result};

use crate::memory::{Access, Inner};
use crate::object::{ObjectTable, GROWABLE_SEG_SHIFT};
use crate::pod::Pod;
use crate::pointer::{self, PointerWord, READ_HIT, READ_MASK, WRITE_HIT, WRITE_MASK};
use crate::scope::DerefScope;

/// The handle-side core of a chunked container: its table and a lock-free cache of its pointer
/// word segments.
pub(crate) struct Chunks<T: Pod> {
    pub table: Arc<ObjectTable>,
    segs: Vec<*const PointerWord>,
    /// The first segment and its length, for a lookup without the `segs` indirection.
    seg0: *const PointerWord,
    seg0_len: usize,
    pub shift: u32,
    pub mask: usize,
    _t: PhantomData<T>,
}

// SAFETY: the segment pointers point into boxes owned by `table` (kept alive by the `Arc`) that
// never move; the words are atomics; element data is reached only through the scope protocol.
unsafe impl<T: Pod> Send for Chunks<T> {}
// SAFETY: as above; `&self` methods only read.
unsafe impl<T: Pod> Sync for Chunks<T> {}

impl<T: Pod> Chunks<T> {
    /// A core for a container of `fixed_chunks` chunks (one segment of pointer words), or a
    /// growable one (`None`).
    pub(crate) fn new(inner: &Arc<Inner>, fixed_chunks: Option<usize>) -> Result<Chunks<T>> {
        let size = std::mem::size_of::<T>();
        if size == 0 || std::mem::align_of::<T>() > 8 {
            return Err(Error::invalid(format!(
                "element type {} (size {size}, align {}) must be non-empty with alignment <= 8",
                std::any::type_name::<T>(),
                std::mem::align_of::<T>()
            )));
        }
        let elems = Self::chunk_len_for(inner)?;
        let object_bytes = (elems * size).div_ceil(8) * 8;
        if object_bytes > inner.config.chunk_bytes.max(8) && elems > 1 {
            return Err(Error::internal("chunk sizing overflowed chunk_bytes"));
        }
        if object_bytes + crate::region::HEADER_BYTES > inner.config.region_bytes / 2 {
            return Err(Error::invalid(format!(
                "an element of {size} bytes needs objects of {object_bytes} bytes, too big for regions of {}",
                inner.config.region_bytes
            )));
        }
        let seg_shift = match fixed_chunks {
            Some(n) => n.max(2).next_power_of_two().trailing_zeros(),
            None => GROWABLE_SEG_SHIFT,
        };
        Ok(Chunks {
            table: ObjectTable::new(inner, object_bytes, seg_shift)?,
            segs: Vec::new(),
            seg0: std::ptr::null(),
            seg0_len: 0,
            shift: elems.trailing_zeros(),
            mask: elems - 1,
            _t: PhantomData,
        })
    }

    /// Elements per chunk under `inner`'s configuration: the largest power of two that fits
    /// `chunk_bytes`.
    pub(crate) fn chunk_len_for(inner: &Inner) -> Result<usize> {
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return Err(Error::invalid(format!(
                "element type {} has size 0",
                std::any::type_name::<T>()
            )));
        }
        let per = (inner.config.chunk_bytes / size).max(1);
        Ok(1usize << (usize::BITS - 1 - per.leading_zeros()))
    }

    /// Chunks a scan dereferences per scope renewal: enough to amortise the renewal's fence,
    /// few enough to pin at most 1/64 of local memory.
    pub(crate) fn renew_every(&self) -> usize {
        let cfg = &self.table.inner.config;
        (cfg.local_bytes / 64 / (self.table.object_bytes + crate::region::HEADER_BYTES))
            .clamp(1, 64)
    }

    /// Elements per chunk.
    pub(crate) fn chunk_len(&self) -> usize {
        self.mask + 1
    }

    /// A second handle on the same objects with its own copy of the segment cache, for a
    /// container that reaches its chunks from two sides under different locks (`RemQueue`'s
    /// head and tail). A handle whose cache does not [`cover`](Self::covers) a chunk that the
    /// other created catches up with [`ensure_chunks`](Self::ensure_chunks).
    pub(crate) fn share(&self) -> Chunks<T> {
        Chunks {
            table: self.table.clone(),
            segs: self.segs.clone(),
            seg0: self.seg0,
            seg0_len: self.seg0_len,
            shift: self.shift,
            mask: self.mask,
            _t: PhantomData,
        }
    }

    /// Whether this handle's segment cache reaches chunk `c`.
    pub(crate) fn covers(&self, c: usize) -> bool {
        c < self.segs.len() << self.table.seg_shift
    }

    /// Makes chunks `0..n` of this core, which has none yet, the remote objects the backend
    /// already holds (see [`ObjectTable::adopt_remote`]).
    pub(crate) fn adopt_remote(&mut self, n: usize) -> Result<()> {
        self.table.adopt_remote(n, &mut self.segs)?;
        self.refresh_seg0();
        Ok(())
    }

    /// Makes sure `n` chunks exist (and that this handle's cache reaches them).
    pub(crate) fn ensure_chunks(&mut self, n: usize) -> Result<()> {
        self.table.grow_to(n, &mut self.segs)?;
        self.refresh_seg0();
        Ok(())
    }

    fn refresh_seg0(&mut self) {
        if let Some(&p) = self.segs.first() {
            self.seg0 = p;
            self.seg0_len = self.table.seg_len();
        }
    }

    #[inline(always)]
    fn word(&self, c: usize) -> &PointerWord {
        if c < self.seg0_len {
            // SAFETY: `seg0` is the first segment, `seg0_len` words long, alive as long as
            // `table`.
            return unsafe { &*self.seg0.add(c) };
        }
        let shift = self.table.seg_shift;
        // SAFETY: callers pass `c` below the number of chunks created, so segment `c >> shift`
        // exists in the cache and the slot is inside it; segments live as long as `table`.
        unsafe { &*self.segs[c >> shift].add(c & ((1 << shift) - 1)) }
    }

    /// The data of chunk `c` (which must exist), dereferenced for `access`.
    #[inline(always)]
    pub(crate) fn chunk_ptr(
        &self,
        c: usize,
        scope: &DerefScope<'_>,
        access: Access,
    ) -> Result<*mut T> {
        let word = self.word(c);
        let w = word.load();
        let (mask, hit) = match access {
            Access::Read | Access::ReadNoCache => (READ_MASK, READ_HIT),
            Access::Write | Access::WriteOrFail => (WRITE_MASK, WRITE_HIT),
        };
        if w & mask == hit {
            scope.count_hit();
            return Ok(pointer::addr_of(w) as *mut T);
        }
        self.slow(c, word, scope, access)
    }

    #[cold]
    #[inline(never)]
    fn slow(
        &self,
        c: usize,
        word: &PointerWord,
        scope: &DerefScope<'_>,
        access: Access,
    ) -> Result<*mut T> {
        self.table
            .inner
            .deref_slow(&self.table, c as u32, word, scope, access)
            .map(|p| p.cast::<T>())
    }

    /// Chunks among `0..n` whose data is in local memory now (a snapshot: the evacuator and the
    /// prefetcher change it concurrently).
    pub(crate) fn resident(&self, n: usize) -> usize {
        (0..n)
            .filter(|&c| pointer::is_present(self.word(c).load()))
            .count()
    }

    /// Writes chunks `0..n` (which must exist) back where far memory is behind (memory module
    /// note, "Flush"); the caller holds `&self` of the container, so nobody writes them.
    pub(crate) fn flush(&self, n: usize) -> Result<usize> {
        self.table
            .inner
            .flush_objects(&self.table, &mut (0..n).map(|c| (c as u32, self.word(c))))
    }

    /// Sets element `i` (which must exist), writing through to the backend when no local memory
    /// can be had.
    pub(crate) fn set(&mut self, i: usize, v: T, scope: &DerefScope<'_>) -> Result<()> {
        let c = i >> self.shift;
        loop {
            match self.chunk_ptr(c, scope, Access::WriteOrFail) {
                Ok(p) => {
                    // SAFETY: `p` is the chunk's data, valid for the scope; `i & mask` is inside
                    // the chunk; `&mut self` excludes other references to it.
                    unsafe { p.add(i & self.mask).write(v) };
                    return Ok(());
                }
                Err(e) if e.kind() == farmem_error::ErrorKind::OutOfLocalMemory => {
                    // SAFETY: `T: Pod` has no padding-dependent invariants; viewing it as bytes is
                    // fine.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(
                            (&v as *const T).cast::<u8>(),
                            std::mem::size_of::<T>(),
                        )
                    };
                    let off = (i & self.mask) * std::mem::size_of::<T>();
                    if self.table.inner.write_through(self.word(c), off, bytes)? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn out_of_bounds(what: &str, i: usize, len: usize) -> Error {
    Error::invalid(format!(
        "index {i} out of bounds for a {what} of length {len}"
    ))
}

macro_rules! element_access {
    ($what:literal) => {
        /// Number of elements.
        pub fn len(&self) -> usize {
            self.len
        }

        /// Whether there are no elements.
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// Elements per chunk (the unit of fetching and evacuation).
        pub fn chunk_len(&self) -> usize {
            self.core.chunk_len()
        }

        /// Number of chunks holding the elements.
        pub fn num_chunks(&self) -> usize {
            self.len.div_ceil(self.core.chunk_len())
        }

        /// Chunks whose data is in local memory now, out of [`num_chunks`](Self::num_chunks):
        /// a snapshot (the evacuator and the prefetcher change it concurrently), one load per
        /// chunk, for deciding whether an operation should run on the memory server.
        pub fn resident_chunks(&self) -> usize {
            self.core.resident(self.num_chunks())
        }

        /// Writes every dirty local chunk back to far memory and keeps it cached, now clean, so
        /// a function on the memory server (AIFM's remote agent) sees the current elements;
        /// a chunk never written is written as zeros. Returns the chunks written. Needs no
        /// `&mut`: writes take `&mut self`, so none runs during the flush (the invariant of
        /// the memory module's "Flush" note), and the evacuator is held off through the scope
        /// protocol. Errors are the backend's (`OutOfFarMemory`, `Disconnected`); chunks
        /// written before an error stay written.
        pub fn flush(&self) -> Result<usize> {
            self.core.flush(self.num_chunks())
        }

        /// The data-structure id of this container.
        pub fn ds_id(&self) -> u16 {
            self.core.table.ds
        }

        /// A reference to element `i`, valid while `scope` lives. Fetches its chunk on a miss.
        #[inline]
        pub fn get<'s>(&'s self, i: usize, scope: &'s DerefScope<'_>) -> Result<&'s T> {
            if i >= self.len {
                return Err(out_of_bounds($what, i, self.len));
            }
            let p = self
                .core
                .chunk_ptr(i >> self.core.shift, scope, Access::Read)?;
            // SAFETY: `p` is the chunk's data, valid (not moved or freed) while `scope` lives
            // (scope protocol); `i & mask` is inside the chunk; no `&mut` exists while `&self` is
            // borrowed.
            Ok(unsafe { &*p.add(i & self.core.mask) })
        }

        /// Like [`get`](Self::get), but a remote chunk is read into a scope-owned buffer instead
        /// of local memory (the don't-cache hint).
        pub fn get_nocache<'s>(&'s self, i: usize, scope: &'s DerefScope<'_>) -> Result<&'s T> {
            if i >= self.len {
                return Err(out_of_bounds($what, i, self.len));
            }
            let p = self
                .core
                .chunk_ptr(i >> self.core.shift, scope, Access::ReadNoCache)?;
            // SAFETY: as in `get`; a scope-owned buffer also lives as long as the scope.
            Ok(unsafe { &*p.add(i & self.core.mask) })
        }

        /// A mutable reference to element `i`; marks its chunk dirty. Fails with
        /// `OutOfLocalMemory` if no local memory frees up within `alloc_wait`.
        pub fn get_mut<'s>(&'s mut self, i: usize, scope: &'s DerefScope<'_>) -> Result<&'s mut T> {
            if i >= self.len {
                return Err(out_of_bounds($what, i, self.len));
            }
            let p = self
                .core
                .chunk_ptr(i >> self.core.shift, scope, Access::Write)?;
            // SAFETY: as in `get`, and `&mut self` makes this the only reference to the element.
            Ok(unsafe { &mut *p.add(i & self.core.mask) })
        }

        /// Sets element `i` (writing through to far memory if no local memory is left).
        pub fn set(&mut self, i: usize, v: T, scope: &DerefScope<'_>) -> Result<()> {
            if i >= self.len {
                return Err(out_of_bounds($what, i, self.len));
            }
            self.core.set(i, v, scope)
        }

        /// The elements of chunk `c` (the last chunk may be shorter), valid while `scope` lives.
        pub fn chunk<'s>(&'s self, c: usize, scope: &'s DerefScope<'_>) -> Result<&'s [T]> {
            self.chunk_with(c, scope, Access::Read)
        }

        /// Like [`chunk`](Self::chunk) with the don't-cache hint.
        pub fn chunk_nocache<'s>(&'s self, c: usize, scope: &'s DerefScope<'_>) -> Result<&'s [T]> {
            self.chunk_with(c, scope, Access::ReadNoCache)
        }

        fn chunk_with<'s>(
            &'s self,
            c: usize,
            scope: &'s DerefScope<'_>,
            access: Access,
        ) -> Result<&'s [T]> {
            let n = self.num_chunks();
            if c >= n {
                return Err(out_of_bounds(concat!($what, " chunk list"), c, n));
            }
            let start = c << self.core.shift;
            let len = self.core.chunk_len().min(self.len - start);
            let p = self.core.chunk_ptr(c, scope, access)?;
            // SAFETY: `len` elements of the chunk's data, valid while `scope` lives (as in `get`).
            Ok(unsafe { std::slice::from_raw_parts(p, len) })
        }

        /// The elements of chunk `c`, mutable; marks the chunk dirty.
        pub fn chunk_mut<'s>(
            &'s mut self,
            c: usize,
            scope: &'s DerefScope<'_>,
        ) -> Result<&'s mut [T]> {
            let n = self.num_chunks();
            if c >= n {
                return Err(out_of_bounds(concat!($what, " chunk list"), c, n));
            }
            let start = c << self.core.shift;
            let len = self.core.chunk_len().min(self.len - start);
            let p = self.core.chunk_ptr(c, scope, Access::Write)?;
            // SAFETY: as in `chunk`, and `&mut self` makes this the only reference.
            Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
        }

        /// Calls `f(first_index, elements)` for every chunk in order, dereferencing each chunk once
        /// and renewing `scope` every few chunks (so a scan pins at most 1/64 of local memory).
        pub fn for_each_chunk(
            &self,
            scope: &mut DerefScope<'_>,
            f: impl FnMut(usize, &[T]),
        ) -> Result<()> {
            self.scan_chunks(scope, Access::Read, f)
        }

        /// [`for_each_chunk`](Self::for_each_chunk) with the don't-cache hint: remote chunks are
        /// read without entering local memory.
        pub fn for_each_chunk_nocache(
            &self,
            scope: &mut DerefScope<'_>,
            f: impl FnMut(usize, &[T]),
        ) -> Result<()> {
            self.scan_chunks(scope, Access::ReadNoCache, f)
        }

        fn scan_chunks(
            &self,
            scope: &mut DerefScope<'_>,
            access: Access,
            mut f: impl FnMut(usize, &[T]),
        ) -> Result<()> {
            // No division in the loop: the chunk count, lengths and the renewal countdown are
            // computed once or by shifts.
            let every = self.core.renew_every();
            let mut until_renew = every;
            let chunk_len = self.core.chunk_len();
            for c in 0..self.num_chunks() {
                let start = c << self.core.shift;
                let len = chunk_len.min(self.len - start);
                let p = self.core.chunk_ptr(c, scope, access)?;
                // SAFETY: `len` elements of chunk `c`'s data, valid while `scope` lives, and the
                // slice is dead before the scope renews (it does not escape `f`).
                f(start, unsafe { std::slice::from_raw_parts(p, len) });
                until_renew -= 1;
                if until_renew == 0 {
                    scope.renew();
                    until_renew = every;
                }
            }
            Ok(())
        }

        /// An iterator over the chunks as slices, all valid while `scope` lives (for short
        /// ranges: it cannot renew the scope; prefer [`for_each_chunk`](Self::for_each_chunk)).
        pub fn chunks<'s>(
            &'s self,
            scope: &'s DerefScope<'_>,
        ) -> impl Iterator<Item = Result<&'s [T]>> + 's {
            (0..self.num_chunks()).map(move |c| self.chunk(c, scope))
        }

        /// Copies `src` into elements `start..start + src.len()`, chunk by chunk, renewing
        /// `scope` between chunks.
        pub fn write_slice(
            &mut self,
            start: usize,
            src: &[T],
            scope: &mut DerefScope<'_>,
        ) -> Result<()> {
            let end = start
                .checked_add(src.len())
                .filter(|&e| e <= self.len)
                .ok_or_else(|| out_of_bounds($what, start.saturating_add(src.len()), self.len))?;
            let mut i = start;
            while i < end {
                let c = i >> self.core.shift;
                let off = i & self.core.mask;
                let chunk = self.chunk_mut(c, scope)?;
                let n = (chunk.len() - off).min(end - i);
                chunk[off..off + n].copy_from_slice(&src[i - start..i - start + n]);
                i += n;
                scope.renew();
            }
            Ok(())
        }

        /// All elements copied into a `Vec` (renewing `scope` between chunks).
        pub fn to_vec(&self, scope: &mut DerefScope<'_>) -> Result<Vec<T>> {
            let mut out = Vec::with_capacity(self.len);
            self.for_each_chunk(scope, |_, s| out.extend_from_slice(s))?;
            Ok(out)
        }
    };
}

pub(crate) use element_access;

/// A fixed-length array of `T` in far memory, created zeroed by
/// [`FarMemory::array`](crate::FarMemory::array).
pub struct RemArray<T: Pod> {
    core: Chunks<T>,
    len: usize,
}

impl<T: Pod> RemArray<T> {
    pub(crate) fn new(inner: &Arc<Inner>, len: usize) -> Result<RemArray<T>> {
        let elems = Chunks::<T>::chunk_len_for(inner)?;
        let mut core = Chunks::new(inner, Some(len.div_ceil(elems)))?;
        core.ensure_chunks(len.div_ceil(core.chunk_len()))?;
        Ok(RemArray { core, len })
    }

    element_access!("RemArray");
}

impl<T: Pod> std::fmt::Debug for RemArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemArray")
            .field("ds", &self.core.table.ds)
            .field("len", &self.len)
            .field("chunk_len", &self.core.chunk_len())
            .finish()
    }
}
