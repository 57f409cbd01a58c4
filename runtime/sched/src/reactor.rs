//! The fd-readiness reactor: green threads wait for a socket to become readable or writable
//! while their worker runs others (AIFM relies on Shenango's I/O path for the same effect).
//!
//! Each worker owns one `polling::Poller` (epoll), which is also what it sleeps in when idle, so
//! I/O readiness, timers and cross-thread wake-ups all end one `wait`. A started green thread is
//! pinned to its worker, so it registers on its own worker's poller and the fd table below is
//! touched by that worker thread only (no lock):
//!
//! ```text
//!   fds: HashMap<RawFd, { readers: [(task, seq)], writers: [(task, seq)] }>
//!   epoll interest of fd = readable if readers, writable if writers   (oneshot, re-armed)
//! ```
//!
//! An event wakes every waiter of the ready direction (they retry their syscall and wait again
//! on `WouldBlock`), then the fd is re-armed for the waiters left, or deleted from epoll when
//! none is left. A waiter whose timeout fired removes itself (matched by its wait sequence).
//!
//! On a plain OS thread the same functions block the thread in `poll(2)`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};
use polling::{Event, Events, Poller};

use crate::green;
use crate::task::Task;

/// Which readiness a green thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Readable (data, a pending connection, or the peer closed).
    Read,
    /// Writable (buffer space, or a finished connect).
    Write,
}

type Waiter = (Arc<Task>, u64);

#[derive(Default)]
struct FdWaiters {
    readers: Vec<Waiter>,
    writers: Vec<Waiter>,
    registered: bool,
}

/// The fd table of one worker (see the module note).
pub(crate) struct Reactor {
    fds: HashMap<RawFd, FdWaiters>,
    events: Events,
    /// Fds whose re-arm failed (closed meanwhile): their waiters are woken at the next poll.
    dead: Vec<RawFd>,
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used for the duration of one epoll_ctl call on an fd a green thread is
    // waiting on (its owner keeps it open for the wait). If it was closed meanwhile the kernel
    // answers EBADF/ENOENT, which the callers ignore; nothing here dereferences memory.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl Reactor {
    /// An empty table.
    pub(crate) fn new() -> Reactor {
        Reactor {
            fds: HashMap::new(),
            events: Events::new(),
            dead: Vec::new(),
        }
    }

    /// Whether any fd has waiters (otherwise the busy loop skips its non-blocking poll).
    pub(crate) fn has_fds(&self) -> bool {
        !self.fds.is_empty()
    }

    /// Adds a waiter for `fd` and arms epoll for it.
    pub(crate) fn register(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        dir: Direction,
        waiter: Waiter,
    ) -> io::Result<()> {
        let seq = waiter.1;
        let entry = self.fds.entry(fd).or_default();
        match dir {
            Direction::Read => entry.readers.push(waiter),
            Direction::Write => entry.writers.push(waiter),
        }
        let interest = interest(fd, entry);
        let armed = if entry.registered {
            match poller.modify(borrow(fd), interest) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => add(poller, fd, interest),
                r => r,
            }
        } else {
            match add(poller, fd, interest) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    poller.modify(borrow(fd), interest)
                }
                r => r,
            }
        };
        match armed {
            Ok(()) => {
                entry.registered = true;
                Ok(())
            }
            Err(e) => {
                self.unregister(poller, fd, dir, seq);
                Err(e)
            }
        }
    }

    /// Removes the waiter `seq` of `fd` (its timeout fired) and re-arms or deletes the fd.
    pub(crate) fn unregister(&mut self, poller: &Poller, fd: RawFd, dir: Direction, seq: u64) {
        if let Some(entry) = self.fds.get_mut(&fd) {
            let list = match dir {
                Direction::Read => &mut entry.readers,
                Direction::Write => &mut entry.writers,
            };
            list.retain(|(_, s)| *s != seq);
            self.rearm(poller, fd);
        }
    }

    fn rearm(&mut self, poller: &Poller, fd: RawFd) {
        let Some(entry) = self.fds.get_mut(&fd) else {
            return;
        };
        if entry.readers.is_empty() && entry.writers.is_empty() {
            if entry.registered {
                // Errors mean the fd was closed meanwhile (epoll dropped it already).
                let _ = poller.delete(borrow(fd));
            }
            self.fds.remove(&fd);
        } else if entry.registered && poller.modify(borrow(fd), interest(fd, entry)).is_err() {
            // The fd is gone: wake everyone so they see the error from their syscall.
            entry.registered = false;
            self.dead.push(fd);
        }
    }

    /// Waits up to `timeout` (`None`: until notified) and returns the waiters whose fd became
    /// ready, appended to `woken`.
    pub(crate) fn poll(
        &mut self,
        poller: &Poller,
        timeout: Option<Duration>,
        woken: &mut Vec<Waiter>,
    ) {
        self.events.clear();
        if poller.wait(&mut self.events, timeout).is_err() {
            // EINTR: the loop comes back here soon enough.
            return;
        }
        let ready: Vec<Event> = self.events.iter().collect();
        for ev in ready {
            let fd = ev.key as RawFd;
            let Some(entry) = self.fds.get_mut(&fd) else {
                continue;
            };
            if ev.readable {
                woken.append(&mut entry.readers);
            }
            if ev.writable {
                woken.append(&mut entry.writers);
            }
            self.rearm(poller, fd);
        }
        // An fd that could not be re-armed wakes all its waiters; they retry their syscall.
        for fd in std::mem::take(&mut self.dead) {
            if let Some(mut e) = self.fds.remove(&fd) {
                woken.append(&mut e.readers);
                woken.append(&mut e.writers);
            }
        }
    }

    /// Drops every waiter (shutdown).
    pub(crate) fn clear(&mut self, poller: &Poller) {
        self.dead.clear();
        for (fd, e) in self.fds.drain() {
            if e.registered {
                let _ = poller.delete(borrow(fd));
            }
        }
    }
}

fn interest(fd: RawFd, entry: &FdWaiters) -> Event {
    Event::new(
        fd as usize,
        !entry.readers.is_empty(),
        !entry.writers.is_empty(),
    )
}

fn add(poller: &Poller, fd: RawFd, interest: Event) -> io::Result<()> {
    // SAFETY: polling requires the fd to be deleted from the poller before it is closed, or
    // stale events may arrive. Every waiter's registration is removed before its wait returns
    // (event, timeout or shutdown), so only an fd closed by another green thread while someone
    // still waits on it can leave a stale entry; epoll drops closed fds by itself, and a stale
    // event only causes a spurious wake-up, which every caller tolerates.
    unsafe { poller.add(fd, interest) }
}

/// Parks the current green thread until `fd` is readable, or until `timeout` passes
/// (an [`ErrorKind::Timeout`] error). On an OS thread it blocks in `poll(2)`.
pub fn wait_readable(fd: impl AsFd, timeout: Option<Duration>) -> Result<()> {
    wait(fd.as_fd().as_raw_fd(), Direction::Read, timeout)
}

/// Parks the current green thread until `fd` is writable, or until `timeout` passes
/// (an [`ErrorKind::Timeout`] error). On an OS thread it blocks in `poll(2)`.
pub fn wait_writable(fd: impl AsFd, timeout: Option<Duration>) -> Result<()> {
    wait(fd.as_fd().as_raw_fd(), Direction::Write, timeout)
}

fn wait(fd: RawFd, dir: Direction, timeout: Option<Duration>) -> Result<()> {
    let what = match dir {
        Direction::Read => "readable",
        Direction::Write => "writable",
    };
    wait_io(fd, dir, timeout).map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            Error::new(
                ErrorKind::Timeout,
                format!("fd {fd} did not become {what} within {timeout:?}"),
            )
        } else {
            Error::io(format!("waiting for fd {fd} to become {what}"), e)
        }
    })
}

/// Waits for readiness of `fd`: parks the green thread, or blocks the OS thread in `poll(2)`.
/// A timeout is an `io::ErrorKind::TimedOut` error.
pub(crate) fn wait_io(fd: RawFd, dir: Direction, timeout: Option<Duration>) -> io::Result<()> {
    match green::green_wait_fd(fd, dir, timeout) {
        Some(r) => r,
        None => os_wait(fd, dir, timeout),
    }
}

/// The OS-thread fallback: `poll(2)` on one fd.
fn os_wait(fd: RawFd, dir: Direction, timeout: Option<Duration>) -> io::Result<()> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                // Round up so a sub-millisecond remainder does not spin.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1 for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(());
        }
        if n == 0 {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
