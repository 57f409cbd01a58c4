//! `RemStack<T>` and `RemQueue<T>`: a LIFO and a concurrent FIFO over a [`RemList`]
//! (AIFM §5 lists its stack and queue as thin layers over the remoteable list).
//!
//! Both move elements by value, so they open a short [`DerefScope`] of their own inside each
//! operation: no reference escapes and callers need no scope. (An operation called while the
//! caller holds a scope of its own nests inside it; under memory pressure that outer scope can
//! make a write wait for up to `alloc_wait` and fail, so prefer calling them outside scopes.)
//!
//! `RemQueue` is shared by many green threads: a first version, it serialises every operation
//! with one [`farmem_sched::sync::Mutex`] around the list. The lock parks green threads, not
//! workers, so a holder that misses and waits for its chunk lets the worker run others; it is
//! linearisable, hence strictly FIFO. Pushes touch only the tail chunk and pops only the head
//! chunk (pops never dirty a chunk), so a two-lock (head/tail) queue is the natural next step.

use std::sync::Arc;

use farmem_error::Result;
use farmem_sched::sync::Mutex;

use crate::list::RemList;
use crate::memory::{FarMemory, Inner};
use crate::pod::Pod;
use crate::scope::DerefScope;

impl FarMemory {
    /// An empty remote stack (see [`RemStack`]).
    pub fn stack<T: Pod>(&self) -> Result<RemStack<T>> {
        Ok(RemStack {
            list: RemList::new(&self.inner)?,
        })
    }

    /// An empty remote queue that many threads and green threads may share (see
    /// [`RemQueue`]).
    pub fn queue<T: Pod>(&self) -> Result<RemQueue<T>> {
        Ok(RemQueue {
            inner: self.inner.clone(),
            list: Mutex::new(RemList::new(&self.inner)?),
        })
    }
}

/// A last-in first-out stack of `T` in far memory, created by [`FarMemory::stack`].
pub struct RemStack<T: Pod> {
    list: RemList<T>,
}

impl<T: Pod> RemStack<T> {
    /// Pushes `v`; a new chunk can fail with `OutOfFarMemory` (the stack is then unchanged).
    pub fn push(&mut self, v: T) -> Result<()> {
        let inner = self.list.inner().clone();
        let scope = DerefScope::enter(&inner);
        self.list.push_back(v, &scope)
    }

    /// Pops the most recently pushed element.
    pub fn pop(&mut self) -> Result<Option<T>> {
        let inner = self.list.inner().clone();
        let scope = DerefScope::enter(&inner);
        self.list.pop_back(&scope)
    }

    /// A copy of the top element.
    pub fn peek(&self) -> Result<Option<T>> {
        let scope = DerefScope::enter(self.list.inner());
        Ok(self.list.back(&scope)?.copied())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the stack is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.list.clear();
    }
}

impl<T: Pod> std::fmt::Debug for RemStack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemStack")
            .field("list", &self.list)
            .finish()
    }
}

/// A first-in first-out queue of `T` in far memory that many threads and green threads may
/// share (`&self` methods; wrap it in an `Arc`), created by [`FarMemory::queue`]. Every
/// operation takes one green-thread mutex (see the module note).
pub struct RemQueue<T: Pod> {
    inner: Arc<Inner>,
    list: Mutex<RemList<T>>,
}

impl<T: Pod> RemQueue<T> {
    /// Appends `v` at the tail; a new chunk can fail with `OutOfFarMemory` (the queue is then
    /// unchanged).
    pub fn push(&self, v: T) -> Result<()> {
        let mut list = self.list.lock();
        let scope = DerefScope::enter(&self.inner);
        list.push_back(v, &scope)
    }

    /// Appends every element of `vs` in order under one lock acquisition (they stay adjacent).
    /// On an error the elements before the failing one stay queued (the error says how many).
    pub fn push_all(&self, vs: &[T]) -> Result<()> {
        let mut list = self.list.lock();
        let mut scope = DerefScope::enter(&self.inner);
        for (n, &v) in vs.iter().enumerate() {
            list.push_back(v, &scope).map_err(|e| {
                e.with_context(format!(
                    "queue push_all: {n} of {} elements were queued",
                    vs.len()
                ))
            })?;
            if n % 64 == 63 {
                scope.renew();
            }
        }
        Ok(())
    }

    /// Removes and returns the head element, or `None` if the queue is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        let mut list = self.list.lock();
        let scope = DerefScope::enter(&self.inner);
        list.pop_front(&scope)
    }

    /// Moves up to `max` head elements into `out` under one lock acquisition; returns how many.
    pub fn pop_into(&self, max: usize, out: &mut Vec<T>) -> Result<usize> {
        let mut list = self.list.lock();
        let mut scope = DerefScope::enter(&self.inner);
        let mut n = 0;
        while n < max {
            match list.pop_front(&scope)? {
                Some(v) => out.push(v),
                None => break,
            }
            n += 1;
            if n % 64 == 0 {
                scope.renew();
            }
        }
        Ok(n)
    }

    /// A copy of the head element.
    pub fn peek(&self) -> Result<Option<T>> {
        let list = self.list.lock();
        let scope = DerefScope::enter(&self.inner);
        Ok(list.front(&scope)?.copied())
    }

    /// Number of elements now (another thread may change it at once).
    pub fn len(&self) -> usize {
        self.list.lock().len()
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> bool {
        self.list.lock().is_empty()
    }

    /// Removes every element.
    pub fn clear(&self) {
        self.list.lock().clear();
    }
}

impl<T: Pod> std::fmt::Debug for RemQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.list.try_lock() {
            Some(list) => f.debug_struct("RemQueue").field("list", &*list).finish(),
            None => f
                .debug_struct("RemQueue")
                .field("list", &"<locked>")
                .finish(),
        }
    }
}
