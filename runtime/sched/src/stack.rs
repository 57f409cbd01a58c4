//! Green-thread stacks: guarded, mapped on first run, pooled per worker.
//!
//! Each stack is a corosensei `DefaultStack`: one `mmap` of `size + 1 page`, the lowest page
//! left `PROT_NONE` as a guard (a stack overflow faults instead of corrupting a neighbour).
//! That costs **two memory mappings (VMAs) per live stack**, and Linux caps a process at
//! `vm.max_map_count` mappings (65530 by default), so at most ~32k guarded stacks can exist at
//! once with the default setting. What farmem does about it:
//!
//! - a stack is taken only when a green thread first *runs*, not when it is spawned, so queued
//!   but unstarted green threads cost only their task allocation;
//! - a finished green thread's stack goes back to its worker's pool (up to a configured count)
//!   and is reused without any syscall, which keeps spawn cheap;
//! - when `mmap`/`mprotect` fails, the green thread is not started and its `JoinHandle` reports
//!   an [`ErrorKind::OutOfLocalMemory`] error that names `vm.max_map_count` and the fix.
//!
//! A green thread that overflows its stack hits the guard page and the process dies with
//! SIGSEGV (no message: Rust's overflow reporter only knows OS-thread guard pages); size stacks
//! with [`crate::Builder::stack_size`] for deep C++ call chains.
//!
//! Mapping stacks in batches does not help here: guard and usable pages alternate, so the
//! kernel cannot merge neighbouring mappings, and a batch costs the same number of VMAs.

use corosensei::stack::DefaultStack;
use farmem_error::{Error, ErrorKind, Result};

/// The stacks one worker keeps for reuse.
pub(crate) struct StackPool {
    free: Vec<DefaultStack>,
    size: usize,
    keep: usize,
}

impl StackPool {
    /// A pool of `size`-byte stacks keeping at most `keep` free ones.
    pub(crate) fn new(size: usize, keep: usize) -> StackPool {
        StackPool {
            free: Vec::new(),
            size,
            keep,
        }
    }

    /// A stack from the pool, or a freshly mapped one.
    pub(crate) fn take(&mut self) -> Result<DefaultStack> {
        match self.free.pop() {
            Some(stack) => Ok(stack),
            None => DefaultStack::new(self.size).map_err(|e| stack_map_error(self.size, e)),
        }
    }

    /// Returns a stack whose green thread finished; unmapped when the pool is full.
    pub(crate) fn give(&mut self, stack: DefaultStack) {
        if self.free.len() < self.keep {
            self.free.push(stack);
        }
    }

    /// How many free stacks the pool holds.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }
}

/// The current `vm.max_map_count`, if readable.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn stack_map_error(size: usize, err: std::io::Error) -> Error {
    let limit = max_map_count()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "unknown".into());
    // Counting the live mappings tells the two causes of ENOMEM apart for the reader.
    let live = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Error::new(
        ErrorKind::OutOfLocalMemory,
        format!(
            "mapping a {size}-byte green-thread stack failed ({err}); each live green thread \
             costs 2 memory mappings and the process has {live} of vm.max_map_count = {limit}: \
             if that is the limit, raise it (`sysctl -w vm.max_map_count=262144`) or run fewer \
             green threads at once; otherwise the process is out of address space or memory: \
             lower the stack size (Builder::stack_size)"
        ),
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use corosensei::stack::Stack;

    #[test]
    fn stacks_are_reused_up_to_the_pool_size() {
        let mut pool = StackPool::new(64 * 1024, 1);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        let a_base = a.base().get();
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.len(), 1, "the second stack is unmapped, not kept");
        assert_eq!(
            pool.take().unwrap().base().get(),
            a_base,
            "the kept stack is reused"
        );
    }

    #[test]
    fn map_failure_names_the_limit_and_the_fix() {
        let e = stack_map_error(4096, std::io::Error::from_raw_os_error(libc::ENOMEM));
        assert_eq!(e.kind(), ErrorKind::OutOfLocalMemory);
        assert!(e.context().contains("vm.max_map_count"), "{e}");
        assert!(e.context().contains("sysctl -w vm.max_map_count="), "{e}");
    }
}
