//! `RemList<T>`: a double-ended remote list of plain-data elements stored in chunk objects
//! (AIFM §5, remoteable containers: the list is a sequence of far chunks, several elements each).
//!
//! # Layout and linkage
//!
//! Each chunk is one far-memory object of [`Chunks`] (the same pointer-word machinery as
//! [`RemArray`](crate::RemArray)), holding `cap` slots (the largest power of two of elements
//! that fits `chunk_bytes`). The chunks are linked by a **local index**: a `VecDeque<Span>` in
//! list order, one 12-byte span per chunk (object id, first used slot, used slots):
//!
//! ```text
//!   spans (local):  [ obj 7 | start 3 | len 5 ] [ obj 2 | start 0 | len 8 ] [ obj 9 | 0 | 2 ]
//!                          |                           |                          |
//!   chunks (far):   [ . . . a b c d e ]         [ f g h i j k l m ]        [ n o . . . . . . ]
//! ```
//!
//! Why a local index and not next/prev ids inside chunk headers: (1) a scan knows the ids of the
//! next chunks without dereferencing the current ones, so it can issue their reads ahead of time
//! (pointer chasing through far memory would serialise one round trip per chunk); (2) pops,
//! pushes and erasures at a chunk's edge change only local metadata, never dirty a chunk; and
//! (3) the index costs 12 bytes per chunk (0.3% of 4 KiB chunks) of local memory.
//!
//! # Invariants
//!
//! - Every span has `1 <= len` and `start + len <= cap`; slots outside `start..start + len` hold
//!   stale data and are never read. An emptied chunk leaves the index at once and its object id
//!   goes to a free list for reuse (its far object is kept until the list is dropped). After an
//!   erasure inside the list, two neighbours that together fill at most half a chunk are merged
//!   (when their slots allow it without shifting), so erasures do not leave long runs of sparse
//!   chunks.
//! - `len` is the sum of the spans' lengths.
//! - Writes go through the pointer word's write path (`DIRTY` set before the write), so the
//!   evacuator never loses them; every mutation takes `&mut self`.
//! - A mutation that must rewrite a chunk (insert or erase inside it) takes `&mut DerefScope`:
//!   when local memory is short it renews the scope (no reference can survive, `&mut` proves it)
//!   so that its dereference may wait for the evacuator instead of failing.
//!
//! Iteration ([`RemList::for_each_chunk`], [`RemList::iter`]) reads remote chunks **ahead**
//! (`prefetch_depth` chunks in list order) through [`Backend::issue_read`](crate::Backend) into
//! buffers it owns, without caching them (AIFM's don't-cache hint for data read once); chunks
//! already local are read in place. This is sound because iteration borrows the list shared:
//! nobody can write a chunk meanwhile, and a remote pointer word means the backend holds the
//! latest bytes (the evacuator publishes a word remote only after its write-back).

use std::collections::VecDeque;
use std::sync::Arc;

use farmem_error::{Error, ErrorKind, Result};

use crate::array::Chunks;
use crate::backend::PendingRead;
use crate::memory::{Access, FarMemory, Inner};
use crate::metrics::Counters;
use crate::pod::Pod;
use crate::pointer::{self, RemoteId};
use crate::scope::DerefScope;

/// One chunk of the list: its object id and the used slots `start..start + len`.
#[derive(Clone, Copy, Debug)]
struct Span {
    obj: u32,
    start: u32,
    len: u32,
}

/// A double-ended list of `T` in far memory, created by [`FarMemory::list`].
pub struct RemList<T: Pod> {
    core: Chunks<T>,
    spans: VecDeque<Span>,
    /// Object ids of emptied chunks, reused before new objects are created.
    free: Vec<u32>,
    len: usize,
}

impl FarMemory {
    /// An empty remote list (see [`RemList`]).
    pub fn list<T: Pod>(&self) -> Result<RemList<T>> {
        RemList::new(&self.inner)
    }
}

fn out_of_bounds(i: usize, len: usize) -> Error {
    Error::invalid(format!(
        "index {i} out of bounds for a RemList of length {len}"
    ))
}

impl<T: Pod> RemList<T> {
    pub(crate) fn new(inner: &Arc<Inner>) -> Result<RemList<T>> {
        Ok(RemList {
            core: Chunks::new(inner, None)?,
            spans: VecDeque::new(),
            free: Vec::new(),
            len: 0,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots per chunk (the unit of fetching and evacuation).
    pub fn chunk_len(&self) -> usize {
        self.core.chunk_len()
    }

    /// Chunks holding the elements now.
    pub fn num_chunks(&self) -> usize {
        self.spans.len()
    }

    /// The data-structure id of this list.
    pub fn ds_id(&self) -> u16 {
        self.core.table.ds
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.core.table.inner
    }

    /// Removes every element. Chunk objects stay in far memory for reuse until the list drops.
    pub fn clear(&mut self) {
        self.free.extend(self.spans.drain(..).map(|s| s.obj));
        self.len = 0;
    }

    /// An object id for a new chunk: a freed one, or a new object (`OutOfFarMemory` if the
    /// backend is full).
    fn alloc_chunk(&mut self) -> Result<u32> {
        if let Some(obj) = self.free.pop() {
            return Ok(obj);
        }
        let n = self.core.table.objects() as usize;
        self.core.ensure_chunks(n + 1)?;
        Ok(n as u32)
    }

    /// Writes `v` at `slot` of chunk `obj` (written through to far memory if no local memory
    /// can be had).
    fn write_slot(&mut self, obj: u32, slot: u32, v: T, scope: &DerefScope<'_>) -> Result<()> {
        let i = ((obj as usize) << self.core.shift) | slot as usize;
        self.core.set(i, v, scope)
    }

    /// Chunk `obj` dereferenced for a write of several slots; on a shortage of local memory the
    /// scope is renewed (see the module note) and the dereference waits for the evacuator.
    fn chunk_for_write(&self, obj: u32, scope: &mut DerefScope<'_>) -> Result<*mut T> {
        match self
            .core
            .chunk_ptr(obj as usize, scope, Access::WriteOrFail)
        {
            Err(e) if e.kind() == ErrorKind::OutOfLocalMemory => {
                scope.renew();
                self.core.chunk_ptr(obj as usize, scope, Access::Write)
            }
            r => r,
        }
    }

    fn read_slot<'s>(&'s self, s: Span, o: usize, scope: &'s DerefScope<'_>) -> Result<&'s T> {
        let p = self.core.chunk_ptr(s.obj as usize, scope, Access::Read)?;
        // SAFETY: `p` is the chunk's data, valid while `scope` lives (scope protocol); slot
        // `start + o` is inside the chunk (span invariant, `o < len`); no `&mut` to the list
        // exists while `&self` is borrowed.
        Ok(unsafe { &*p.add(s.start as usize + o) })
    }

    /// The chunk index and offset of element `i`, (`num_chunks`, 0) for `i >= len` (walks the local index from the nearer
    /// end).
    fn locate(&self, i: usize) -> (usize, usize) {
        if i >= self.len {
            return (self.spans.len(), 0);
        }
        if i < self.len / 2 {
            let mut left = i;
            for (k, s) in self.spans.iter().enumerate() {
                if left < s.len as usize {
                    return (k, left);
                }
                left -= s.len as usize;
            }
        } else {
            let mut right = self.len - i; // elements from i to the end
            for (k, s) in self.spans.iter().enumerate().rev() {
                if right <= s.len as usize {
                    return (k, s.len as usize - right);
                }
                right -= s.len as usize;
            }
        }
        (self.spans.len(), 0)
    }

    /// A reference to element `i`, valid while `scope` lives.
    pub fn get<'s>(&'s self, i: usize, scope: &'s DerefScope<'_>) -> Result<&'s T> {
        if i >= self.len {
            return Err(out_of_bounds(i, self.len));
        }
        let (k, o) = self.locate(i);
        self.read_slot(self.spans[k], o, scope)
    }

    /// The first element, if any.
    pub fn front<'s>(&'s self, scope: &'s DerefScope<'_>) -> Result<Option<&'s T>> {
        match self.spans.front() {
            Some(&s) => self.read_slot(s, 0, scope).map(Some),
            None => Ok(None),
        }
    }

    /// The last element, if any.
    pub fn back<'s>(&'s self, scope: &'s DerefScope<'_>) -> Result<Option<&'s T>> {
        match self.spans.back() {
            Some(&s) => self.read_slot(s, s.len as usize - 1, scope).map(Some),
            None => Ok(None),
        }
    }

    /// Appends `v`; a new chunk can fail with `OutOfFarMemory` (the list is then unchanged).
    pub fn push_back(&mut self, v: T, scope: &DerefScope<'_>) -> Result<()> {
        let cap = self.chunk_len() as u32;
        match self.spans.back().copied() {
            Some(s) if s.start + s.len < cap => {
                self.write_slot(s.obj, s.start + s.len, v, scope)?;
                if let Some(b) = self.spans.back_mut() {
                    b.len += 1;
                }
            }
            _ => {
                let obj = self.alloc_chunk()?;
                if let Err(e) = self.write_slot(obj, 0, v, scope) {
                    self.free.push(obj);
                    return Err(e);
                }
                self.spans.push_back(Span {
                    obj,
                    start: 0,
                    len: 1,
                });
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Prepends `v`; a new chunk can fail with `OutOfFarMemory` (the list is then unchanged).
    /// A new front chunk fills from its last slot down, so repeated `push_front`s stay dense.
    pub fn push_front(&mut self, v: T, scope: &DerefScope<'_>) -> Result<()> {
        let cap = self.chunk_len() as u32;
        match self.spans.front().copied() {
            Some(s) if s.start > 0 => {
                self.write_slot(s.obj, s.start - 1, v, scope)?;
                if let Some(f) = self.spans.front_mut() {
                    f.start -= 1;
                    f.len += 1;
                }
            }
            _ => {
                let obj = self.alloc_chunk()?;
                if let Err(e) = self.write_slot(obj, cap - 1, v, scope) {
                    self.free.push(obj);
                    return Err(e);
                }
                self.spans.push_front(Span {
                    obj,
                    start: cap - 1,
                    len: 1,
                });
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the last element. Changes only the local index (no chunk is dirtied).
    pub fn pop_back(&mut self, scope: &DerefScope<'_>) -> Result<Option<T>> {
        let Some(s) = self.spans.back().copied() else {
            return Ok(None);
        };
        let v = *self.read_slot(s, s.len as usize - 1, scope)?;
        if s.len == 1 {
            self.spans.pop_back();
            self.free.push(s.obj);
        } else if let Some(b) = self.spans.back_mut() {
            b.len -= 1;
        }
        self.len -= 1;
        Ok(Some(v))
    }

    /// Removes and returns the first element. Changes only the local index (no chunk is
    /// dirtied).
    pub fn pop_front(&mut self, scope: &DerefScope<'_>) -> Result<Option<T>> {
        let Some(s) = self.spans.front().copied() else {
            return Ok(None);
        };
        let v = *self.read_slot(s, 0, scope)?;
        if s.len == 1 {
            self.spans.pop_front();
            self.free.push(s.obj);
        } else if let Some(f) = self.spans.front_mut() {
            f.start += 1;
            f.len -= 1;
        }
        self.len -= 1;
        Ok(Some(v))
    }

    /// Inserts `v` so that it becomes element `i` (`i <= len`). Walks the local index to find
    /// the chunk; use a [`CursorMut`] for runs of edits at one place.
    pub fn insert(&mut self, i: usize, v: T, scope: &mut DerefScope<'_>) -> Result<()> {
        if i > self.len {
            return Err(out_of_bounds(i, self.len));
        }
        let mut c = self.cursor_mut(i)?;
        c.insert_before(v, scope)
    }

    /// Removes and returns element `i`.
    pub fn remove(&mut self, i: usize, scope: &mut DerefScope<'_>) -> Result<T> {
        if i >= self.len {
            return Err(out_of_bounds(i, self.len));
        }
        let (k, o) = self.locate(i);
        self.remove_at(k, o, scope).map(|(v, _)| v)
    }

    /// A cursor at element `i`, or at the end (past the last element) when `i == len`.
    pub fn cursor_mut(&mut self, i: usize) -> Result<CursorMut<'_, T>> {
        if i > self.len {
            return Err(out_of_bounds(i, self.len));
        }
        let (k, o) = self.locate(i);
        Ok(CursorMut {
            list: self,
            index: i,
            k,
            o,
        })
    }

    /// A cursor at the first element (at the end if the list is empty).
    pub fn cursor_front_mut(&mut self) -> CursorMut<'_, T> {
        CursorMut {
            list: self,
            index: 0,
            k: 0,
            o: 0,
        }
    }

    /// Inserts `v` before offset `o` of chunk `k` (`o <= len` of that chunk); returns the
    /// position of the inserted element.
    fn insert_at(
        &mut self,
        mut k: usize,
        mut o: usize,
        v: T,
        scope: &mut DerefScope<'_>,
    ) -> Result<(usize, usize)> {
        let cap = self.chunk_len();
        // At a chunk's front, append to the previous chunk if it has room at its end: no shift.
        if o == 0 && k > 0 {
            let p = self.spans[k - 1];
            if ((p.start + p.len) as usize) < cap {
                self.write_slot(p.obj, p.start + p.len, v, scope)?;
                self.spans[k - 1].len += 1;
                self.len += 1;
                return Ok((k - 1, p.len as usize));
            }
        }
        if self.spans[k].len as usize == cap {
            if cap == 1 {
                // One-slot chunks: the new element gets a chunk of its own.
                let obj = self.alloc_chunk()?;
                if let Err(e) = self.write_slot(obj, 0, v, scope) {
                    self.free.push(obj);
                    return Err(e);
                }
                let at = k + o;
                self.spans.insert(
                    at,
                    Span {
                        obj,
                        start: 0,
                        len: 1,
                    },
                );
                self.len += 1;
                return Ok((at, 0));
            }
            let h = self.split(k, scope)?;
            if o > h {
                k += 1;
                o -= h;
            }
        }
        let s = self.spans[k];
        let (start, len) = (s.start as usize, s.len as usize);
        let room_back = start + len < cap;
        let shift_right = room_back && (start == 0 || len - o <= o);
        let p = self.chunk_for_write(s.obj, scope)?;
        // SAFETY: `p` is chunk `k`'s data, valid while `scope` lives and dereferenced for a
        // write (dirty); `&mut self` makes these the only accesses. With `start + len < cap`
        // the slots `start + o ..= start + len` are in the chunk; otherwise `start > 0` (the
        // chunk is not full) and slots `start - 1 .. start + o` are. `ptr::copy` handles the
        // overlap.
        unsafe {
            let base = p.add(start);
            if shift_right {
                std::ptr::copy(base.add(o), base.add(o + 1), len - o);
                base.add(o).write(v);
            } else {
                std::ptr::copy(base, base.sub(1), o);
                base.add(o).sub(1).write(v);
            }
        }
        let span = &mut self.spans[k];
        if !shift_right {
            span.start -= 1;
        }
        span.len += 1;
        self.len += 1;
        Ok((k, o))
    }

    /// Splits full chunk `k`: its upper half moves to a new chunk after it. Returns the number
    /// of elements left in chunk `k`.
    fn split(&mut self, k: usize, scope: &mut DerefScope<'_>) -> Result<usize> {
        let s = self.spans[k];
        let cap = self.chunk_len();
        let h = cap / 2;
        let upper: Vec<T> = {
            let p = self.core.chunk_ptr(s.obj as usize, scope, Access::Read)?;
            // SAFETY: a full chunk: slots `0..cap` are its elements, valid while `scope` lives.
            unsafe { std::slice::from_raw_parts(p.add(h), cap - h) }.to_vec()
        };
        let obj = self.alloc_chunk()?;
        let q = match self.chunk_for_write(obj, scope) {
            Ok(q) => q,
            Err(e) => {
                self.free.push(obj);
                return Err(e);
            }
        };
        // SAFETY: `q` is the new chunk's data (`cap` slots), dereferenced for a write and valid
        // while `scope` lives; `upper` is a separate local buffer of `cap - h` elements.
        unsafe { std::ptr::copy_nonoverlapping(upper.as_ptr(), q, upper.len()) };
        self.spans[k].len = h as u32;
        self.spans.insert(
            k + 1,
            Span {
                obj,
                start: 0,
                len: (cap - h) as u32,
            },
        );
        Ok(h)
    }

    /// Removes the element at offset `o` of chunk `k`; returns it and the position of the
    /// element that followed it (possibly one past the end of its chunk: normalise it).
    fn remove_at(
        &mut self,
        k: usize,
        o: usize,
        scope: &mut DerefScope<'_>,
    ) -> Result<(T, (usize, usize))> {
        let mut follower = (k, o);
        let s = self.spans[k];
        let v = *self.read_slot(s, o, scope)?;
        let (start, len) = (s.start as usize, s.len as usize);
        let mut new = s;
        if o == 0 {
            new.start += 1;
        } else if o + 1 < len {
            let p = self.chunk_for_write(s.obj, scope)?;
            // SAFETY: `p` is the chunk's data, dereferenced for a write and valid while `scope`
            // lives; slots `start .. start + len` are in the chunk; `&mut self` makes these the
            // only accesses; `ptr::copy` handles the overlap.
            unsafe {
                let base = p.add(start);
                if o < len / 2 {
                    std::ptr::copy(base, base.add(1), o);
                    new.start += 1;
                } else {
                    std::ptr::copy(base.add(o + 1), base.add(o), len - o - 1);
                }
            }
        }
        new.len -= 1;
        if new.len == 0 {
            self.spans.remove(k);
            self.free.push(s.obj);
        } else {
            self.spans[k] = new;
            // Best effort: a failed merge leaves both chunks as they were, and the element is
            // already removed, so its value must reach the caller.
            if !matches!(self.merge_with_next(k, scope), Ok(true)) && k > 0 {
                let before = self.spans[k - 1].len as usize;
                if matches!(self.merge_with_next(k - 1, scope), Ok(true)) {
                    follower = (k - 1, before + o);
                }
            }
        }
        self.len -= 1;
        Ok((v, follower))
    }

    /// Merges chunks `k` and `k + 1` into one when together they fill at most half a chunk and
    /// the slots allow it without shifting (erasures in the middle would otherwise leave many
    /// sparse chunks); returns whether it did. The merged chunk holds chunk `k`'s elements, then
    /// chunk `k + 1`'s, at index `k`.
    fn merge_with_next(&mut self, k: usize, scope: &mut DerefScope<'_>) -> Result<bool> {
        let cap = self.chunk_len();
        let (Some(&a), Some(&b)) = (self.spans.get(k), self.spans.get(k + 1)) else {
            return Ok(false);
        };
        let (alen, blen) = (a.len as usize, b.len as usize);
        if alen + blen > cap / 2 {
            return Ok(false);
        }
        // Move `b` behind `a`'s end, or `a` before `b`'s start, whichever fits.
        let append = a.start as usize + alen + blen <= cap;
        let (from, into, dest_slot) = if append {
            (b, a, a.start as usize + alen)
        } else if b.start as usize >= alen {
            (a, b, b.start as usize - alen)
        } else {
            return Ok(false);
        };
        let moved: Vec<T> = {
            let p = self
                .core
                .chunk_ptr(from.obj as usize, scope, Access::Read)?;
            // SAFETY: slots `start .. start + len` of chunk `from`, valid while `scope` lives;
            // copied out at once.
            unsafe { std::slice::from_raw_parts(p.add(from.start as usize), from.len as usize) }
                .to_vec()
        };
        let q = self.chunk_for_write(into.obj, scope)?;
        // SAFETY: `q` is chunk `into`'s data, dereferenced for a write and valid while `scope`
        // lives; `dest_slot .. dest_slot + moved.len()` is inside the chunk and disjoint from its
        // used slots (checked above); `moved` is a separate local buffer.
        unsafe { std::ptr::copy_nonoverlapping(moved.as_ptr(), q.add(dest_slot), moved.len()) };
        let merged = Span {
            obj: into.obj,
            start: if append { a.start } else { dest_slot as u32 },
            len: (alen + blen) as u32,
        };
        self.spans[k] = merged;
        self.spans.remove(k + 1);
        self.free.push(from.obj);
        Ok(true)
    }

    /// How many chunks iteration reads ahead (the configured prefetch depth).
    fn read_ahead_depth(&self) -> usize {
        self.inner().config.prefetch_depth
    }

    /// Starts reading chunk `obj` from the backend if its pointer word is remote.
    fn issue_if_remote(&self, obj: u32) -> Result<Option<PendingRead>> {
        let word = self
            .core
            .table
            .word(obj)
            .ok_or_else(|| Error::internal(format!("list chunk {obj} has no pointer word")))?;
        let w = word.load();
        // A fresh chunk is made locally on first use: there may be nothing to read remotely.
        if pointer::is_present(w) || pointer::is_fresh(w) {
            return Ok(None);
        }
        let id = RemoteId::from_bits(w);
        let pending = self
            .inner()
            .backend
            .issue_read(id.ds(), id.obj(), id.size())?;
        Counters::add(&self.inner().counters.prefetches_issued, 1);
        Ok(Some(pending))
    }

    /// Sizes `buf` to one chunk object (once: re-zeroing it per chunk would cost a memset each).
    fn size_chunk_buf(&self, buf: &mut Vec<u64>) {
        let words = self.core.table.object_bytes / 8;
        if buf.len() != words {
            buf.clear();
            buf.resize(words, 0);
        }
    }

    /// `buf` viewed as chunk slots: at most `cap`, as many as its bytes hold.
    fn slots<'b>(&self, buf: &'b [u64]) -> &'b [T] {
        let n = self
            .chunk_len()
            .min(buf.len() * 8 / std::mem::size_of::<T>());
        // SAFETY: `n` elements fit in the buffer's bytes, which are initialised; the buffer is
        // 8-aligned (`align_of::<T>() <= 8`, checked by `Chunks::new`); `T: Pod` accepts any
        // bits.
        unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<T>(), n) }
    }

    /// Waits for a read-ahead into `buf` (sized here) and returns the chunk's slots.
    fn wait_chunk<'b>(&self, pending: PendingRead, buf: &'b mut Vec<u64>) -> Result<&'b [T]> {
        self.size_chunk_buf(buf);
        let bytes = buf.len() * 8;
        // SAFETY: `buf` holds `bytes` initialised bytes; viewing `u64`s as bytes is always valid.
        let raw = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes) };
        pending.wait(raw)?;
        // Read-aheads count as prefetches used and, not being cached, as uncached reads.
        let c = &self.inner().counters;
        Counters::add(&c.prefetches_used, 1);
        Counters::add(&c.uncached_reads, 1);
        Counters::add(&c.bytes_fetched, bytes as u64);
        Ok(self.slots(buf))
    }

    /// Calls `f` with the elements of every chunk in list order, reading remote chunks ahead
    /// (see the module note) and renewing `scope` every few local chunks.
    pub fn for_each_chunk(
        &self,
        scope: &mut DerefScope<'_>,
        mut f: impl FnMut(&[T]),
    ) -> Result<()> {
        let mut ahead = ReadAhead::new(self.read_ahead_depth());
        let mut buf = Vec::new();
        let every = self.core.renew_every();
        let mut until_renew = every;
        for k in 0..self.spans.len() {
            let s = self.spans[k];
            let (start, end) = (s.start as usize, (s.start + s.len) as usize);
            match ahead.take(self, k)? {
                Some(pending) => f(&self.wait_chunk(pending, &mut buf)?[start..end]),
                None => {
                    let p = self.core.chunk_ptr(s.obj as usize, scope, Access::Read)?;
                    // SAFETY: slots `start..end` of the chunk, valid while `scope` lives; the
                    // slice does not escape `f`, so it is dead before the scope renews.
                    f(unsafe { std::slice::from_raw_parts(p.add(start), end - start) });
                    until_renew -= 1;
                    if until_renew == 0 {
                        scope.renew();
                        until_renew = every;
                    }
                }
            }
        }
        Ok(())
    }

    /// Calls `f` on every element in order (see [`for_each_chunk`](Self::for_each_chunk)).
    pub fn for_each(&self, scope: &mut DerefScope<'_>, mut f: impl FnMut(&T)) -> Result<()> {
        self.for_each_chunk(scope, |xs| xs.iter().for_each(&mut f))
    }

    /// All elements copied into a `Vec`, in order.
    pub fn to_vec(&self, scope: &mut DerefScope<'_>) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.len);
        self.for_each_chunk(scope, |xs| out.extend_from_slice(xs))?;
        Ok(out)
    }

    /// An iterator over copies of the elements in order. It reads ahead like
    /// [`for_each_chunk`](Self::for_each_chunk) and opens a short scope of its own per local
    /// chunk, so it holds no scope between items. After an error it yields nothing more.
    pub fn iter(&self) -> ListIter<'_, T> {
        ListIter {
            list: self,
            k: 0,
            raw: Vec::new(),
            lo: 0,
            hi: 0,
            ahead: ReadAhead::new(self.read_ahead_depth()),
            failed: false,
        }
    }
}

impl<T: Pod> std::fmt::Debug for RemList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemList")
            .field("ds", &self.core.table.ds)
            .field("len", &self.len)
            .field("chunks", &self.spans.len())
            .field("chunk_len", &self.core.chunk_len())
            .finish()
    }
}

/// Reads issued ahead of a scan, one entry per chunk from the next one to be consumed
/// (`None`: the chunk was local when looked at, read it in place).
struct ReadAhead {
    pending: VecDeque<Option<PendingRead>>,
    issued: usize,
    depth: usize,
}

impl ReadAhead {
    fn new(depth: usize) -> ReadAhead {
        ReadAhead {
            pending: VecDeque::new(),
            issued: 0,
            depth,
        }
    }

    /// Issues reads up to chunk `k + depth` and returns chunk `k`'s (chunks are taken in
    /// order, `k` = number taken so far). With depth 0 nothing is read ahead.
    fn take<T: Pod>(&mut self, list: &RemList<T>, k: usize) -> Result<Option<PendingRead>> {
        if self.depth == 0 {
            return Ok(None);
        }
        let end = (k + 1 + self.depth).min(list.spans.len());
        while self.issued < end {
            let obj = list.spans[self.issued].obj;
            self.pending.push_back(list.issue_if_remote(obj)?);
            self.issued += 1;
        }
        Ok(self.pending.pop_front().flatten())
    }
}

/// An iterator over copies of a [`RemList`]'s elements (see [`RemList::iter`]).
pub struct ListIter<'a, T: Pod> {
    list: &'a RemList<T>,
    /// The next chunk to load.
    k: usize,
    /// The current chunk's slots (a copy) and the range of them still to yield.
    raw: Vec<u64>,
    lo: usize,
    hi: usize,
    ahead: ReadAhead,
    failed: bool,
}

impl<T: Pod> ListIter<'_, T> {
    fn load_next_chunk(&mut self) -> Result<()> {
        let list = self.list;
        let s = list.spans[self.k];
        let (start, end) = (s.start as usize, (s.start + s.len) as usize);
        match self.ahead.take(list, self.k)? {
            Some(pending) => {
                list.wait_chunk(pending, &mut self.raw)?;
            }
            None => {
                list.size_chunk_buf(&mut self.raw);
                let scope = DerefScope::enter(list.inner());
                let p = list.core.chunk_ptr(s.obj as usize, &scope, Access::Read)?;
                // SAFETY: (1) `p`'s slots `start..end` are the chunk's elements, valid while
                // `scope` lives, and copied out before it ends; (2) `raw` holds the whole object,
                // so slots `start..end` of it are in bounds, 8-aligned and disjoint from `p`.
                unsafe {
                    let dst = self.raw.as_mut_ptr().cast::<T>();
                    std::ptr::copy_nonoverlapping(p.add(start), dst.add(start), end - start);
                }
            }
        }
        self.k += 1;
        (self.lo, self.hi) = (start, end);
        Ok(())
    }
}

impl<T: Pod> Iterator for ListIter<'_, T> {
    type Item = Result<T>;

    #[inline]
    fn next(&mut self) -> Option<Result<T>> {
        while self.lo == self.hi {
            if self.failed || self.k == self.list.spans.len() {
                return None;
            }
            if let Err(e) = self.load_next_chunk() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        let v = *self.list.slots(&self.raw).get(self.lo)?;
        self.lo += 1;
        Some(Ok(v))
    }
}

/// A cursor into a [`RemList`] that can edit it in place: it points at an element or at the end
/// (past the last element). Moving is O(1) on the local index.
pub struct CursorMut<'a, T: Pod> {
    list: &'a mut RemList<T>,
    index: usize,
    /// Chunk and offset of the current element; (`num_chunks`, 0) at the end.
    k: usize,
    o: usize,
}

impl<T: Pod> CursorMut<'_, T> {
    /// The current element's index (`len` at the end).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the cursor is past the last element.
    pub fn is_at_end(&self) -> bool {
        self.k >= self.list.spans.len()
    }

    /// The current element, or `None` at the end.
    pub fn current<'s>(&'s self, scope: &'s DerefScope<'_>) -> Result<Option<&'s T>> {
        if self.is_at_end() {
            return Ok(None);
        }
        self.list
            .read_slot(self.list.spans[self.k], self.o, scope)
            .map(Some)
    }

    /// Replaces the current element; an error at the end.
    pub fn set_current(&mut self, v: T, scope: &DerefScope<'_>) -> Result<()> {
        if self.is_at_end() {
            return Err(Error::invalid(
                "set_current on a RemList cursor at the end; move it to an element first",
            ));
        }
        let s = self.list.spans[self.k];
        self.list
            .write_slot(s.obj, s.start + self.o as u32, v, scope)
    }

    /// Moves to the next element (or to the end); returns `false` if already at the end.
    pub fn move_next(&mut self) -> bool {
        if self.is_at_end() {
            return false;
        }
        self.index += 1;
        self.o += 1;
        if self.o == self.list.spans[self.k].len as usize {
            self.k += 1;
            self.o = 0;
        }
        true
    }

    /// Moves to the previous element; returns `false` if already at the first.
    pub fn move_prev(&mut self) -> bool {
        if self.index == 0 {
            return false;
        }
        self.index -= 1;
        if self.o > 0 {
            self.o -= 1;
        } else {
            self.k -= 1;
            self.o = self.list.spans[self.k].len as usize - 1;
        }
        true
    }

    /// Inserts `v` before the current element (at the end: appends); the cursor stays on the
    /// same element, whose index grows by one.
    pub fn insert_before(&mut self, v: T, scope: &mut DerefScope<'_>) -> Result<()> {
        if self.is_at_end() {
            self.list.push_back(v, scope)?;
            self.k = self.list.spans.len();
            self.o = 0;
        } else {
            let (k, o) = self.list.insert_at(self.k, self.o, v, scope)?;
            // The current element directly follows the inserted one.
            self.k = k;
            self.o = o + 1;
            self.normalize();
        }
        self.index += 1;
        Ok(())
    }

    /// Removes the current element and returns it (`None` at the end); the cursor moves to the
    /// element that followed it.
    pub fn remove_current(&mut self, scope: &mut DerefScope<'_>) -> Result<Option<T>> {
        if self.is_at_end() {
            return Ok(None);
        }
        let (v, (k, o)) = self.list.remove_at(self.k, self.o, scope)?;
        (self.k, self.o) = (k, o);
        self.normalize();
        Ok(Some(v))
    }

    fn normalize(&mut self) {
        if self.k < self.list.spans.len() && self.o >= self.list.spans[self.k].len as usize {
            self.k += 1;
            self.o = 0;
        }
    }
}
