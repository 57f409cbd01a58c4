//! `RemVec<T>`: a growable remote vector of plain-data elements (AIFM §5). Same chunk layout and
//! element access as [`RemArray`](crate::RemArray); `push` adds a chunk object when the last one
//! is full (its pointer words go into a new segment, so existing words never move).

use std::sync::Arc;

use farmem_error::{Error, Result};

use crate::array::{element_access, Chunks};
use crate::memory::{Access, Inner};
use crate::pod::Pod;
use crate::scope::DerefScope;

/// A growable vector of `T` in far memory, created by [`FarMemory::vec`](crate::FarMemory::vec).
pub struct RemVec<T: Pod> {
    core: Chunks<T>,
    len: usize,
}

fn out_of_bounds(what: &str, i: usize, len: usize) -> Error {
    Error::invalid(format!(
        "index {i} out of bounds for a {what} of length {len}"
    ))
}

impl<T: Pod> RemVec<T> {
    pub(crate) fn new(inner: &Arc<Inner>) -> Result<RemVec<T>> {
        Ok(RemVec {
            core: Chunks::new(inner, None)?,
            len: 0,
        })
    }

    /// Appends `v`; creating a new chunk can fail with `OutOfFarMemory`.
    pub fn push(&mut self, v: T, scope: &DerefScope<'_>) -> Result<()> {
        let i = self.len;
        self.core.ensure_chunks((i >> self.core.shift) + 1)?;
        self.len += 1;
        self.core.set(i, v, scope).inspect_err(|_| self.len -= 1)
    }

    /// Creates the chunks that `additional` more elements need, ahead of the pushes or
    /// extends that will fill them: one batch to the backend instead of one creation each time
    /// the vector crosses into a new chunk. `OutOfFarMemory` if they do not fit. The length does
    /// not change; the chunks are fresh (their zeros are made locally on first use, not fetched).
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        let want = self.len.checked_add(additional).ok_or_else(|| {
            Error::invalid(format!(
                "reserving {additional} more elements overflows a RemVec of {} elements",
                self.len
            ))
        })?;
        self.core
            .ensure_chunks(want.div_ceil(self.core.chunk_len()))
    }

    /// Takes as its contents `len` elements that a remote function wrote into this vector's
    /// data structure on the memory server (for instance the remote agent's `Map` or
    /// `Pairwise`, through [`Backend::compute_with`](crate::Backend::compute_with) with this
    /// vector's [`ds_id`](Self::ds_id)): chunk objects `0..len.div_ceil(chunk_len)`, each
    /// full-sized. The chunks stay remote until first used, and nothing is written. Only an
    /// empty vector that never had chunks may adopt (`InvalidArgument` otherwise); a missing
    /// or short chunk shows up when it is read.
    pub fn adopt_remote(&mut self, len: usize) -> Result<()> {
        if self.len != 0 {
            return Err(Error::invalid(format!(
                "adopting {len} remote elements into a RemVec that holds {}",
                self.len
            )));
        }
        self.core
            .adopt_remote(len.div_ceil(self.core.chunk_len()))?;
        self.len = len;
        Ok(())
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self, scope: &DerefScope<'_>) -> Result<Option<T>> {
        if self.len == 0 {
            return Ok(None);
        }
        let v = *self.get(self.len - 1, scope)?;
        self.len -= 1;
        Ok(Some(v))
    }

    /// Appends every element of `src`, chunk by chunk, renewing `scope` between chunks.
    pub fn extend_from_slice(&mut self, src: &[T], scope: &mut DerefScope<'_>) -> Result<()> {
        let start = self.len;
        self.core
            .ensure_chunks((start + src.len()).div_ceil(self.core.chunk_len()))?;
        self.len += src.len();
        self.write_slice(start, src, scope)
            .inspect_err(|_| self.len = start)
    }

    element_access!("RemVec");
}

impl<T: Pod> std::fmt::Debug for RemVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemVec")
            .field("ds", &self.core.table.ds)
            .field("len", &self.len)
            .field("chunk_len", &self.core.chunk_len())
            .finish()
    }
}
