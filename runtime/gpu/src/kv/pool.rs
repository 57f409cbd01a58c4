//! One preallocated pool of KV blocks: reference counts and an O(1) free list.
//!
//! The pool knows only two facts per block: how many block tables reference it, and whether it
//! sits on the free list. A block with reference count 0 that is *not* on the free list belongs
//! to whoever took it off (the prefix cache's LRU list, for the device pool); the pool does not
//! care. `pop_free` / `push_free` are a stack, so the most recently freed block is reused first
//! (warm in the allocator's caches; order is irrelevant to correctness).

use farmem_error::{Error, Result};

use super::BlockId;

/// Reference counts and free list of one pool (device or host).
#[derive(Debug, Clone)]
pub(crate) struct BlockPool {
    /// What the pool is, for error messages ("device", "host").
    name: &'static str,
    ref_counts: Vec<u32>,
    on_free_list: Vec<bool>,
    free: Vec<BlockId>,
}

impl BlockPool {
    /// A pool of `capacity` blocks, all free.
    pub(crate) fn new(name: &'static str, capacity: usize) -> BlockPool {
        // Reverse so that block 0 is handed out first: easier to read in tests and traces.
        let free = (0..capacity as u32).rev().map(BlockId).collect();
        BlockPool {
            name,
            ref_counts: vec![0; capacity],
            on_free_list: vec![true; capacity],
            free,
        }
    }

    /// Number of blocks in the pool.
    pub(crate) fn capacity(&self) -> usize {
        self.ref_counts.len()
    }

    /// Blocks on the free list.
    pub(crate) fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Takes a block off the free list (reference count stays 0 until [`incref`](Self::incref)).
    pub(crate) fn pop_free(&mut self) -> Option<BlockId> {
        let b = self.free.pop()?;
        self.on_free_list[b.index()] = false;
        Some(b)
    }

    /// Puts an unreferenced block back on the free list.
    pub(crate) fn push_free(&mut self, b: BlockId) -> Result<()> {
        self.check(b)?;
        if self.on_free_list[b.index()] || self.ref_counts[b.index()] != 0 {
            return Err(Error::internal(format!(
                "{} pool: freeing {b} that is already free or still referenced (ref count {})",
                self.name,
                self.ref_counts[b.index()]
            )));
        }
        self.on_free_list[b.index()] = true;
        self.free.push(b);
        Ok(())
    }

    /// Whether `b` is on the free list.
    pub(crate) fn is_free(&self, b: BlockId) -> bool {
        self.on_free_list.get(b.index()).copied().unwrap_or(false)
    }

    /// The reference count of `b` (0 for an id outside the pool).
    pub(crate) fn ref_count(&self, b: BlockId) -> u32 {
        self.ref_counts.get(b.index()).copied().unwrap_or(0)
    }

    /// Adds a reference to `b`, which must not be on the free list; returns the new count.
    pub(crate) fn incref(&mut self, b: BlockId) -> Result<u32> {
        self.check(b)?;
        if self.on_free_list[b.index()] {
            return Err(Error::internal(format!(
                "{} pool: referencing {b} while it is on the free list",
                self.name
            )));
        }
        let rc = &mut self.ref_counts[b.index()];
        *rc += 1;
        Ok(*rc)
    }

    /// Drops a reference to `b`; returns the new count (the caller frees or caches it at 0).
    pub(crate) fn decref(&mut self, b: BlockId) -> Result<u32> {
        self.check(b)?;
        let rc = &mut self.ref_counts[b.index()];
        if *rc == 0 {
            return Err(Error::internal(format!(
                "{} pool: dropping a reference to unreferenced {b}",
                self.name
            )));
        }
        *rc -= 1;
        Ok(*rc)
    }

    /// The free list, for invariant checks.
    pub(crate) fn free_list(&self) -> &[BlockId] {
        &self.free
    }

    fn check(&self, b: BlockId) -> Result<()> {
        if b.index() >= self.capacity() {
            return Err(Error::internal(format!(
                "{} pool: {b} is outside the pool of {} blocks",
                self.name,
                self.capacity()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_and_refcounts() {
        let mut p = BlockPool::new("device", 2);
        let a = p.pop_free().unwrap();
        assert_eq!(a, BlockId(0));
        assert_eq!(p.incref(a).unwrap(), 1);
        assert_eq!(p.incref(a).unwrap(), 2);
        assert!(p.push_free(a).is_err(), "still referenced");
        assert_eq!(p.decref(a).unwrap(), 1);
        assert_eq!(p.decref(a).unwrap(), 0);
        assert!(p.decref(a).is_err(), "underflow is an error, not a panic");
        p.push_free(a).unwrap();
        assert!(p.push_free(a).is_err(), "double free");
        assert!(p.incref(a).is_err(), "referencing a free block");
        assert!(p.incref(BlockId(7)).is_err(), "outside the pool");
        assert_eq!(p.num_free(), 2);
        assert!(p.pop_free().is_some() && p.pop_free().is_some() && p.pop_free().is_none());
    }
}
