//! Recycled frame bodies: the vectors large response bodies are received into.
//!
//! A scan over far memory receives one batch-read response of tens or hundreds of KiB per round
//! trip. Allocating each body afresh costs a `malloc`, the zeroing `vec![0; n]` does, and, once
//! bodies pass the allocator's mmap threshold, an `mmap` plus a page fault per 4 KiB on every
//! frame. Instead the connection's [`FrameAssembler`](crate::inbound::FrameAssembler) takes
//! body vectors from a [`BodyPool`], and the caller that copied the objects out gives them back
//! (a [`ResponseFrame`](crate::connection::ResponseFrame) does so when dropped).
//!
//! Ownership: a vector is either in the pool (nobody else sees it) or owned by exactly one frame;
//! the pool is a `Mutex<Vec<Vec<u8>>>` touched only to take or give one vector, never while a
//! socket is read. The pool is bounded in count ([`KEEP_BODIES`]) and in the size of a vector it
//! keeps ([`KEEP_BODY_BYTES`]), so a burst of huge frames returns its memory to the allocator.
//! A vector keeps its length when given back, so taking it again for a frame of the same size
//! (the steady state of a scan) neither reallocates nor zeroes anything.

use std::sync::Mutex;

/// Smallest vector (capacity in bytes) a pool keeps: bodies this long and longer are pooled
/// and received in place (see `inbound`); shorter ones are cheap to allocate and would only
/// make a taker grow them.
pub const POOLED_BODY_BYTES: usize = 16 << 10;
/// Most vectors a pool keeps: about the batch answers a scan has in flight per connection
/// (a 1 MiB prefetch lead in 256 KiB batches).
pub const KEEP_BODIES: usize = 4;
/// Largest vector (capacity in bytes) a pool keeps; bigger ones are freed. With
/// [`KEEP_BODIES`] this bounds what a connection holds on to at 4 MiB (a scan: about 1 MiB).
pub const KEEP_BODY_BYTES: usize = 1 << 20;

/// A bounded pool of body vectors shared by a connection's reader and its callers.
#[derive(Debug, Default)]
pub struct BodyPool {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl BodyPool {
    /// An empty pool.
    pub fn new() -> BodyPool {
        BodyPool::default()
    }

    /// A vector of exactly `len` bytes (their contents are unspecified: the caller overwrites
    /// them). Reuses a kept vector when there is one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        // Every critical section is one push or pop: a poisoned lock still holds a valid list.
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match spare {
            Some(mut v) => {
                if v.len() >= len {
                    v.truncate(len);
                } else {
                    v.resize(len, 0);
                }
                v
            }
            None => vec![0; len],
        }
    }

    /// Gives `v` back for reuse (dropped instead when the pool is full or `v` is too big).
    pub fn give(&self, v: Vec<u8>) {
        if v.capacity() < POOLED_BODY_BYTES || v.capacity() > KEEP_BODY_BYTES {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < KEEP_BODIES {
            spare.push(v);
        }
    }

    /// Vectors kept now.
    pub fn kept(&self) -> usize {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_vectors_and_bounds_what_it_keeps() {
        let pool = BodyPool::new();
        let n = POOLED_BODY_BYTES * 2;
        let mut a = pool.take(n);
        assert_eq!(a.len(), n);
        a[n - 1] = 7;
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.kept(), 1);
        let b = pool.take(n - 10);
        assert_eq!(
            (b.len(), b.as_ptr()),
            (n - 10, ptr),
            "same allocation, shortened"
        );
        pool.give(b);
        let c = pool.take(n * 2);
        assert_eq!(c.len(), n * 2, "a kept vector grows to the asked length");
        assert_eq!(pool.kept(), 0);
        pool.give(vec![0; KEEP_BODY_BYTES + 1]);
        pool.give(vec![0; POOLED_BODY_BYTES - 1]);
        assert_eq!(pool.kept(), 0, "huge and small vectors are not kept");
        for _ in 0..KEEP_BODIES + 3 {
            pool.give(vec![1; POOLED_BODY_BYTES]);
        }
        assert_eq!(pool.kept(), KEEP_BODIES);
    }
}
