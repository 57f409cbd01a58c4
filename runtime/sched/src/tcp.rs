//! Nonblocking TCP for green threads: a socket operation that would block parks only the green
//! thread on its worker's reactor (see [`crate::reactor`]) and retries when the socket is ready.
//!
//! The sockets are always in nonblocking mode; on a plain OS thread the same wait blocks the
//! OS thread in `poll(2)`, which gives ordinary blocking behaviour. `connect` is nonblocking
//! too (`EINPROGRESS`, then wait for writability and read `SO_ERROR`), so a worker never blocks
//! on the network, including a slow handshake. An optional I/O timeout bounds every wait.

use std::io::{self, Read, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};

use crate::reactor::{wait_io, Direction};

/// A TCP connection whose blocking operations park the calling green thread.
#[derive(Debug)]
pub struct TcpStream {
    inner: std::net::TcpStream,
    timeout: Option<Duration>,
}

fn io_err(what: impl std::fmt::Display, e: io::Error) -> Error {
    let err = Error::from(e);
    let kind = err.kind();
    Error::new(kind, format!("{what}: {}", err.context()))
}

impl TcpStream {
    /// Connects to the first address of `addr` that accepts, without blocking the worker.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<TcpStream> {
        Self::connect_with(addr, None)
    }

    /// Like [`TcpStream::connect`], giving up on each address after `timeout`.
    pub fn connect_timeout(addr: impl ToSocketAddrs, timeout: Duration) -> Result<TcpStream> {
        Self::connect_with(addr, Some(timeout))
    }

    fn connect_with(addr: impl ToSocketAddrs, timeout: Option<Duration>) -> Result<TcpStream> {
        let addrs = addr
            .to_socket_addrs()
            .map_err(|e| io_err("resolving the address to connect to", e))?;
        let mut last = None;
        for a in addrs {
            match connect_one(&a, timeout) {
                Ok(s) => {
                    return Ok(TcpStream {
                        inner: s,
                        timeout: None,
                    })
                }
                Err(e) => last = Some(io_err(format!("connecting to {a}"), e)),
            }
        }
        Err(last.unwrap_or_else(|| Error::invalid("connect: the address resolved to nothing")))
    }

    /// Wraps a connected std stream (switching it to nonblocking mode).
    pub fn from_std(stream: std::net::TcpStream) -> Result<TcpStream> {
        stream
            .set_nonblocking(true)
            .map_err(|e| io_err("making a TCP stream nonblocking", e))?;
        Ok(TcpStream {
            inner: stream,
            timeout: None,
        })
    }

    /// Bounds every wait of later reads and writes (`None`: wait forever). A wait that times out
    /// fails with [`ErrorKind::Timeout`].
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The underlying std stream (nonblocking).
    pub fn as_std(&self) -> &std::net::TcpStream {
        &self.inner
    }

    /// The remote address.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        self.inner
            .peer_addr()
            .map_err(|e| io_err("reading the peer address", e))
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner
            .local_addr()
            .map_err(|e| io_err("reading the local address", e))
    }

    /// Sets `TCP_NODELAY` (small far-memory requests should not wait for Nagle).
    pub fn set_nodelay(&self, nodelay: bool) -> Result<()> {
        self.inner
            .set_nodelay(nodelay)
            .map_err(|e| io_err("setting TCP_NODELAY", e))
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> Result<()> {
        self.inner
            .shutdown(how)
            .map_err(|e| io_err("shutting down a TCP stream", e))
    }

    /// A second handle to the same socket (for example one green thread reading, one writing).
    pub fn try_clone(&self) -> Result<TcpStream> {
        Ok(TcpStream {
            inner: self
                .inner
                .try_clone()
                .map_err(|e| io_err("duplicating a TCP stream", e))?,
            timeout: self.timeout,
        })
    }

    fn describe(&self) -> String {
        match self.inner.peer_addr() {
            Ok(a) => a.to_string(),
            Err(_) => format!("fd {}", self.inner.as_raw_fd()),
        }
    }

    /// Runs one nonblocking `op` on the socket, parking until it is ready in `direction`
    /// (within the I/O timeout) whenever it would block, and retrying after signals.
    fn retry_io(
        &self,
        direction: Direction,
        mut op: impl FnMut(&std::net::TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            match op(&self.inner) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_io(self.inner.as_raw_fd(), direction, self.timeout)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    fn read_io(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.retry_io(Direction::Read, |mut s| s.read(buf))
    }

    fn write_io(&self, buf: &[u8]) -> io::Result<usize> {
        self.retry_io(Direction::Write, |mut s| s.write(buf))
    }

    /// Reads what is available (at least one byte, or 0 at end of stream), parking until then.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.read_io(buf)
            .map_err(|e| io_err(format!("reading from {}", self.describe()), e))
    }

    /// Writes some of `buf`, parking until the socket accepts at least one byte.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize> {
        self.write_io(buf)
            .map_err(|e| io_err(format!("writing to {}", self.describe()), e))
    }

    /// Reads exactly `buf.len()` bytes; the peer closing first is [`ErrorKind::Disconnected`].
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.transfer_all(Direction::Read, len, |done| self.read_io(&mut buf[done..]))
    }

    /// Writes all of `buf`.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        self.transfer_all(Direction::Write, buf.len(), |done| {
            self.write_io(&buf[done..])
        })
    }

    /// Repeats `step` (one read or write of the bytes from offset `done` on) until `len` bytes
    /// have moved; `direction` words the errors. A step moving 0 bytes means the peer is gone.
    fn transfer_all(
        &self,
        direction: Direction,
        len: usize,
        mut step: impl FnMut(usize) -> io::Result<usize>,
    ) -> Result<()> {
        let mut done = 0;
        while done < len {
            match step(done) {
                Ok(0) => {
                    let stopped = match direction {
                        Direction::Read => "closed the connection",
                        Direction::Write => "stopped accepting data",
                    };
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("{} {stopped} after {done} of {len} bytes", self.describe()),
                    ));
                }
                Ok(n) => done += n,
                Err(e) => {
                    let peer = self.describe();
                    let what = match direction {
                        Direction::Read => format!("reading {len} bytes from {peer} (got {done})"),
                        Direction::Write => format!("writing {len} bytes to {peer} (sent {done})"),
                    };
                    return Err(io_err(what, e));
                }
            }
        }
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_io(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_io(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// A TCP listener whose `accept` parks the calling green thread.
#[derive(Debug)]
pub struct TcpListener {
    inner: std::net::TcpListener,
}

impl TcpListener {
    /// Binds to `addr` (port 0 picks a free port; see [`TcpListener::local_addr`]).
    pub fn bind(addr: impl ToSocketAddrs) -> Result<TcpListener> {
        let inner =
            std::net::TcpListener::bind(addr).map_err(|e| io_err("binding a TCP listener", e))?;
        inner
            .set_nonblocking(true)
            .map_err(|e| io_err("making a TCP listener nonblocking", e))?;
        Ok(TcpListener { inner })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner
            .local_addr()
            .map_err(|e| io_err("reading the listener address", e))
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> Result<(TcpStream, SocketAddr)> {
        self.accept_timeout(None)
    }

    /// Waits for the next connection at most `timeout` ([`ErrorKind::Timeout`] after that).
    pub fn accept_timeout(&self, timeout: Option<Duration>) -> Result<(TcpStream, SocketAddr)> {
        let what = || match self.inner.local_addr() {
            Ok(a) => format!("accepting on {a}"),
            Err(_) => "accepting a connection".to_string(),
        };
        loop {
            match self.inner.accept() {
                Ok((s, peer)) => return Ok((TcpStream::from_std(s)?, peer)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_io(self.inner.as_raw_fd(), Direction::Read, timeout)
                        .map_err(|e| io_err(what(), e))?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(what(), e)),
            }
        }
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// A nonblocking `connect(2)` that parks (or blocks an OS thread) until the handshake ends.
fn connect_one(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<std::net::TcpStream> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns; the stream closes it on every path.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for this call.
    let rc = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
        wait_io(fd, Direction::Write, timeout)?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok(stream)
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
