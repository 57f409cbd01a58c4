//! Element-size erasure: C containers hold elements of `elem_size` bytes, chosen at run time;
//! farmem's containers are generic over `T: Pod`.
//!
//! # The representation
//!
//! An element of `elem_size` bytes lives in a slot of type `[u8; N]`, where `N` is the smallest
//! size class at least `elem_size`:
//!
//! ```text
//!   1 2 4 8 16 24 32 48 64 96 128 192 256 384 512 768 1024 1536 2048 3072 4096
//! ```
//!
//! The bytes beyond `elem_size` are zero and never read back. `[u8; N]` is `Pod` (every bit
//! pattern valid, alignment 1), so the containers copy it like any element; chunk layout, hot
//! and cold tracking and evacuation are unchanged. The classes grow by at most 1.5x (2x among
//! the first four), so padding wastes less than a third of a slot for most sizes, while only 21
//! monomorphisations per container type are compiled (exact sizes 1..=4096 would be 4096).
//! Alternatives weighed: a byte container with element-aligned chunks would need a new
//! container type in `objects` for every kind (array, vec, list, stack, queue) and duplicate
//! their logic; dispatching to `[u64; N]` would round every size up to 8 bytes.
//!
//! Each container kind has an object-safe trait over byte slices (`ErasedArray`, ...)
//! implemented for the `[u8; N]` instantiation; [`by_class!`] picks the instantiation.

use fm::objects::{DerefScope, FarMemory, RemArray, RemList, RemQueue, RemStack, RemVec};
use fm::{Error, Result};

/// The slot sizes (see the module note), ascending.
pub(crate) const SIZE_CLASSES: [usize; 21] = [
    1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
];

/// The largest element size.
pub(crate) const MAX_ELEM_SIZE: usize = 4096;

/// The slot size of `elem_size`-byte elements, or why there is none.
pub(crate) fn slot_size(elem_size: usize) -> Result<usize> {
    if elem_size == 0 || elem_size > MAX_ELEM_SIZE {
        return Err(Error::invalid(format!(
            "elem_size {elem_size} is outside 1..={MAX_ELEM_SIZE}"
        )));
    }
    SIZE_CLASSES
        .iter()
        .copied()
        .find(|&c| c >= elem_size)
        .ok_or_else(|| Error::internal("no size class for a valid size"))
}

/// Calls `$f::<N>($args)` for the slot size `$slot` (one of [`SIZE_CLASSES`]).
macro_rules! by_class {
    ($slot:expr, $f:ident ( $($arg:expr),* )) => {
        match $slot {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            4 => $f::<4>($($arg),*),
            8 => $f::<8>($($arg),*),
            16 => $f::<16>($($arg),*),
            24 => $f::<24>($($arg),*),
            32 => $f::<32>($($arg),*),
            48 => $f::<48>($($arg),*),
            64 => $f::<64>($($arg),*),
            96 => $f::<96>($($arg),*),
            128 => $f::<128>($($arg),*),
            192 => $f::<192>($($arg),*),
            256 => $f::<256>($($arg),*),
            384 => $f::<384>($($arg),*),
            512 => $f::<512>($($arg),*),
            768 => $f::<768>($($arg),*),
            1024 => $f::<1024>($($arg),*),
            1536 => $f::<1536>($($arg),*),
            2048 => $f::<2048>($($arg),*),
            3072 => $f::<3072>($($arg),*),
            4096 => $f::<4096>($($arg),*),
            other => Err(Error::internal(format!("{other} is not a size class"))),
        }
    };
}

/// `value` (at most `N` bytes) in a zero-padded slot.
fn slot<const N: usize>(value: &[u8]) -> [u8; N] {
    let mut s = [0u8; N];
    s[..value.len()].copy_from_slice(value);
    s
}

/// The first `out.len()` bytes of `slot` into `out`.
fn unslot<const N: usize>(slot: &[u8; N], out: &mut [u8]) {
    let n = out.len();
    out.copy_from_slice(&slot[..n]);
}

/// A `RemArray` of some slot size. Byte slices are one element (`get`, `set`) or `elem`-byte
/// elements back to back (`read`, `write`).
pub(crate) trait ErasedArray: Send {
    fn len(&self) -> usize;
    fn get(&self, i: usize, out: &mut [u8], scope: &DerefScope<'_>) -> Result<()>;
    fn set(&mut self, i: usize, value: &[u8], scope: &DerefScope<'_>) -> Result<()>;
    fn read(
        &self,
        start: usize,
        elem: usize,
        out: &mut [u8],
        scope: &mut DerefScope<'_>,
    ) -> Result<()>;
    fn write(
        &mut self,
        start: usize,
        elem: usize,
        src: &[u8],
        scope: &mut DerefScope<'_>,
    ) -> Result<()>;
}

/// Checks that `count` elements from `start` lie inside `len`.
fn check_range(start: usize, count: usize, len: usize) -> Result<()> {
    match start.checked_add(count) {
        Some(end) if end <= len => Ok(()),
        _ => Err(Error::invalid(format!(
            "elements {start}..{start}+{count} are out of bounds for an array of length {len}"
        ))),
    }
}

/// Elements converted per batch of a bulk write (bounds the temporary slot buffer).
const WRITE_BATCH: usize = 1024;

impl<const N: usize> ErasedArray for RemArray<[u8; N]> {
    fn len(&self) -> usize {
        RemArray::len(self)
    }
    fn get(&self, i: usize, out: &mut [u8], scope: &DerefScope<'_>) -> Result<()> {
        unslot(RemArray::get(self, i, scope)?, out);
        Ok(())
    }
    fn set(&mut self, i: usize, value: &[u8], scope: &DerefScope<'_>) -> Result<()> {
        RemArray::set(self, i, slot(value), scope)
    }
    fn read(
        &self,
        start: usize,
        elem: usize,
        out: &mut [u8],
        scope: &mut DerefScope<'_>,
    ) -> Result<()> {
        let count = out.len() / elem;
        check_range(start, count, RemArray::len(self))?;
        let chunk_len = self.chunk_len();
        let mut i = start;
        while i < start + count {
            let (c, off) = (i / chunk_len, i % chunk_len);
            let chunk = self.chunk(c, scope)?;
            let n = (chunk.len() - off).min(start + count - i);
            for (k, s) in chunk[off..off + n].iter().enumerate() {
                let at = (i - start + k) * elem;
                unslot(s, &mut out[at..at + elem]);
            }
            i += n;
            // Let the evacuator move what this chunk pinned (the copy is done).
            scope.renew();
        }
        Ok(())
    }
    fn write(
        &mut self,
        start: usize,
        elem: usize,
        src: &[u8],
        scope: &mut DerefScope<'_>,
    ) -> Result<()> {
        let count = src.len() / elem;
        check_range(start, count, RemArray::len(self))?;
        let mut batch: Vec<[u8; N]> = Vec::with_capacity(count.min(WRITE_BATCH));
        for (b, part) in src.chunks(WRITE_BATCH * elem).enumerate() {
            batch.clear();
            batch.extend(part.chunks_exact(elem).map(slot::<N>));
            self.write_slice(start + b * WRITE_BATCH, &batch, scope)?;
        }
        Ok(())
    }
}

/// A `RemVec` of some slot size.
pub(crate) trait ErasedVec: Send {
    fn len(&self) -> usize;
    fn push(&mut self, value: &[u8], scope: &DerefScope<'_>) -> Result<()>;
    fn pop(&mut self, out: &mut [u8], scope: &DerefScope<'_>) -> Result<bool>;
    fn get(&self, i: usize, out: &mut [u8], scope: &DerefScope<'_>) -> Result<()>;
    fn set(&mut self, i: usize, value: &[u8], scope: &DerefScope<'_>) -> Result<()>;
}

impl<const N: usize> ErasedVec for RemVec<[u8; N]> {
    fn len(&self) -> usize {
        RemVec::len(self)
    }
    fn push(&mut self, value: &[u8], scope: &DerefScope<'_>) -> Result<()> {
        RemVec::push(self, slot(value), scope)
    }
    fn pop(&mut self, out: &mut [u8], scope: &DerefScope<'_>) -> Result<bool> {
        Ok(RemVec::pop(self, scope)?.map(|v| unslot(&v, out)).is_some())
    }
    fn get(&self, i: usize, out: &mut [u8], scope: &DerefScope<'_>) -> Result<()> {
        unslot(RemVec::get(self, i, scope)?, out);
        Ok(())
    }
    fn set(&mut self, i: usize, value: &[u8], scope: &DerefScope<'_>) -> Result<()> {
        RemVec::set(self, i, slot(value), scope)
    }
}

/// A `RemList` of some slot size.
pub(crate) trait ErasedList: Send {
    fn len(&self) -> usize;
    fn push_back(&mut self, value: &[u8], scope: &DerefScope<'_>) -> Result<()>;
    fn push_front(&mut self, value: &[u8], scope: &DerefScope<'_>) -> Result<()>;
    fn pop_back(&mut self, out: &mut [u8], scope: &DerefScope<'_>) -> Result<bool>;
    fn pop_front(&mut self, out: &mut [u8], scope: &DerefScope<'_>) -> Result<bool>;
    fn get(&self, i: usize, out: &mut [u8], scope: &DerefScope<'_>) -> Result<()>;
    fn insert(&mut self, i: usize, value: &[u8], scope: &mut DerefScope<'_>) -> Result<()>;
    fn remove(&mut self, i: usize, out: &mut [u8], scope: &mut DerefScope<'_>) -> Result<()>;
}

impl<const N: usize> ErasedList for RemList<[u8; N]> {
    fn len(&self) -> usize {
        RemList::len(self)
    }
    fn push_back(&mut self, value: &[u8], scope: &DerefScope<'_>) -> Result<()> {
        RemList::push_back(self, slot(value), scope)
    }
    fn push_front(&mut self, value: &[u8], scope: &DerefScope<'_>) -> Result<()> {
        RemList::push_front(self, slot(value), scope)
    }
    fn pop_back(&mut self, out: &mut [u8], scope: &DerefScope<'_>) -> Result<bool> {
        Ok(RemList::pop_back(self, scope)?
            .map(|v| unslot(&v, out))
            .is_some())
    }
    fn pop_front(&mut self, out: &mut [u8], scope: &DerefScope<'_>) -> Result<bool> {
        Ok(RemList::pop_front(self, scope)?
            .map(|v| unslot(&v, out))
            .is_some())
    }
    fn get(&self, i: usize, out: &mut [u8], scope: &DerefScope<'_>) -> Result<()> {
        unslot(RemList::get(self, i, scope)?, out);
        Ok(())
    }
    fn insert(&mut self, i: usize, value: &[u8], scope: &mut DerefScope<'_>) -> Result<()> {
        RemList::insert(self, i, slot(value), scope)
    }
    fn remove(&mut self, i: usize, out: &mut [u8], scope: &mut DerefScope<'_>) -> Result<()> {
        unslot(&RemList::remove(self, i, scope)?, out);
        Ok(())
    }
}

/// A `RemStack` of some slot size.
pub(crate) trait ErasedStack: Send {
    fn len(&self) -> usize;
    fn push(&mut self, value: &[u8]) -> Result<()>;
    fn pop(&mut self, out: &mut [u8]) -> Result<bool>;
    fn peek(&self, out: &mut [u8]) -> Result<bool>;
}

impl<const N: usize> ErasedStack for RemStack<[u8; N]> {
    fn len(&self) -> usize {
        RemStack::len(self)
    }
    fn push(&mut self, value: &[u8]) -> Result<()> {
        RemStack::push(self, slot(value))
    }
    fn pop(&mut self, out: &mut [u8]) -> Result<bool> {
        Ok(RemStack::pop(self)?.map(|v| unslot(&v, out)).is_some())
    }
    fn peek(&self, out: &mut [u8]) -> Result<bool> {
        Ok(RemStack::peek(self)?.map(|v| unslot(&v, out)).is_some())
    }
}

/// A `RemQueue` of some slot size (shared: every operation takes `&self`).
pub(crate) trait ErasedQueue: Send + Sync {
    fn len(&self) -> usize;
    fn push(&self, value: &[u8]) -> Result<()>;
    fn pop(&self, out: &mut [u8]) -> Result<bool>;
    fn peek(&self, out: &mut [u8]) -> Result<bool>;
}

impl<const N: usize> ErasedQueue for RemQueue<[u8; N]> {
    fn len(&self) -> usize {
        RemQueue::len(self)
    }
    fn push(&self, value: &[u8]) -> Result<()> {
        RemQueue::push(self, slot(value))
    }
    fn pop(&self, out: &mut [u8]) -> Result<bool> {
        Ok(RemQueue::pop(self)?.map(|v| unslot(&v, out)).is_some())
    }
    fn peek(&self, out: &mut [u8]) -> Result<bool> {
        Ok(RemQueue::peek(self)?.map(|v| unslot(&v, out)).is_some())
    }
}

fn new_array<const N: usize>(far: &FarMemory, len: usize) -> Result<Box<dyn ErasedArray>> {
    Ok(Box::new(far.array::<[u8; N]>(len)?))
}
fn new_vec<const N: usize>(far: &FarMemory) -> Result<Box<dyn ErasedVec>> {
    Ok(Box::new(far.vec::<[u8; N]>()?))
}
fn new_list<const N: usize>(far: &FarMemory) -> Result<Box<dyn ErasedList>> {
    Ok(Box::new(far.list::<[u8; N]>()?))
}
fn new_stack<const N: usize>(far: &FarMemory) -> Result<Box<dyn ErasedStack>> {
    Ok(Box::new(far.stack::<[u8; N]>()?))
}
fn new_queue<const N: usize>(far: &FarMemory) -> Result<Box<dyn ErasedQueue>> {
    Ok(Box::new(far.queue::<[u8; N]>()?))
}

/// A zeroed array of `len` elements of `elem_size` bytes.
pub(crate) fn array(far: &FarMemory, elem_size: usize, len: usize) -> Result<Box<dyn ErasedArray>> {
    by_class!(slot_size(elem_size)?, new_array(far, len))
}
/// An empty vector of `elem_size`-byte elements.
pub(crate) fn vec(far: &FarMemory, elem_size: usize) -> Result<Box<dyn ErasedVec>> {
    by_class!(slot_size(elem_size)?, new_vec(far))
}
/// An empty list of `elem_size`-byte elements.
pub(crate) fn list(far: &FarMemory, elem_size: usize) -> Result<Box<dyn ErasedList>> {
    by_class!(slot_size(elem_size)?, new_list(far))
}
/// An empty stack of `elem_size`-byte elements.
pub(crate) fn stack(far: &FarMemory, elem_size: usize) -> Result<Box<dyn ErasedStack>> {
    by_class!(slot_size(elem_size)?, new_stack(far))
}
/// An empty queue of `elem_size`-byte elements.
pub(crate) fn queue(far: &FarMemory, elem_size: usize) -> Result<Box<dyn ErasedQueue>> {
    by_class!(slot_size(elem_size)?, new_queue(far))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_the_smallest_class_that_fits() {
        assert_eq!(slot_size(1).unwrap(), 1);
        assert_eq!(slot_size(3).unwrap(), 4);
        assert_eq!(slot_size(17).unwrap(), 24);
        assert_eq!(slot_size(4096).unwrap(), 4096);
        for size in 1..=MAX_ELEM_SIZE {
            let c = slot_size(size).unwrap();
            assert!(c >= size && SIZE_CLASSES.contains(&c));
            // No smaller class fits.
            assert!(SIZE_CLASSES.iter().all(|&k| k >= c || k < size));
        }
        for bad in [0, MAX_ELEM_SIZE + 1, usize::MAX] {
            let e = slot_size(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("elem_size {bad}")), "{e}");
        }
    }

    #[test]
    fn slots_pad_with_zeroes_and_give_back_the_prefix() {
        let s = slot::<8>(&[1, 2, 3]);
        assert_eq!(s, [1, 2, 3, 0, 0, 0, 0, 0]);
        let mut out = [0u8; 3];
        unslot(&s, &mut out);
        assert_eq!(out, [1, 2, 3]);
    }
}
