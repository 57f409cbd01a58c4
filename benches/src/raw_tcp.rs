//! The raw loopback TCP baseline: a server that answers each fixed-size request with as many
//! bytes as the request asks for, and its blocking client.
//!
//! The baseline every farmem network figure is divided by (`net`, `fetch`, `scan`, `list`): one
//! `write` of a request as long as a farmem read request frame, one `read_exact` of a response as
//! long as the farmem answer, with no protocol work on either side.
//!
//! Wire format (invariant shared by [`RawClient`] and the server): every request is exactly
//! [`RAW_REQUEST_BYTES`] long and its first 8 bytes are the little-endian `u64` count of bytes
//! the server answers with; the server writes them in blocks of at most [`RAW_WRITE_BYTES`].
//!
//! The server runs in-process ([`spawn_in_process`]) or as its own process: a scenario's hidden
//! `--serve-raw` flag calls [`serve_forever`], which prints `{LISTENING_PREFIX}ADDR` first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use farmem_net::HEADER_LEN;

use crate::{Error, ErrorKind, Result};

/// Bytes of a farmem read request frame (header + ds + object); every raw request has as many.
pub const RAW_REQUEST_BYTES: usize = HEADER_LEN + 16;
/// Largest single write of the raw server (and largest read buffer of the client).
pub const RAW_WRITE_BYTES: usize = 1 << 20;
/// What a raw server child prints before its address on its first stdout line.
pub const LISTENING_PREFIX: &str = "raw-loopback listening on ";

/// The raw baseline's client: a fixed-size request whose first 8 bytes say how many bytes the
/// server answers with.
pub struct RawClient {
    stream: TcpStream,
    request: [u8; RAW_REQUEST_BYTES],
    response: Vec<u8>,
}

impl RawClient {
    /// Connects to the raw server; each [`round_trip`](Self::round_trip) reads `response_bytes`.
    pub fn connect(addr: SocketAddr, response_bytes: usize) -> Result<RawClient> {
        let stream = TcpStream::connect(addr).map_err(|e| Error::io("connecting raw client", e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io("raw client nodelay", e))?;
        let mut request = [0u8; RAW_REQUEST_BYTES];
        request[..8].copy_from_slice(&(response_bytes as u64).to_le_bytes());
        Ok(RawClient {
            stream,
            request,
            response: vec![0; response_bytes.min(RAW_WRITE_BYTES)],
        })
    }

    /// One request, then the whole answer read.
    pub fn round_trip(&mut self) -> Result<()> {
        self.stream
            .write_all(&self.request)
            .map_err(|e| Error::io("raw request", e))?;
        let n = self.response.len();
        self.stream
            .read_exact(&mut self.response[..n])
            .map_err(|e| Error::io("raw response", e))
    }

    /// Asks for `total` bytes and reads them in buffer-sized reads; returns bytes per second.
    pub fn stream_bandwidth(&mut self, total: u64) -> Result<f64> {
        self.request[..8].copy_from_slice(&total.to_le_bytes());
        let t = Instant::now();
        self.stream
            .write_all(&self.request)
            .map_err(|e| Error::io("raw stream request", e))?;
        let mut left = total as usize;
        while left > 0 {
            let n = left.min(self.response.len());
            let got = self
                .stream
                .read(&mut self.response[..n])
                .map_err(|e| Error::io("raw stream", e))?;
            if got == 0 {
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    "raw server closed mid-stream",
                ));
            }
            left -= got;
        }
        Ok(total as f64 / t.elapsed().as_secs_f64())
    }
}

/// Answers one connection's requests until the peer closes it or a write fails.
fn serve_connection(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut req = [0u8; RAW_REQUEST_BYTES];
    let block = vec![0xa5u8; RAW_WRITE_BYTES];
    while s.read_exact(&mut req).is_ok() {
        let mut n = u64::from_le_bytes([
            req[0], req[1], req[2], req[3], req[4], req[5], req[6], req[7],
        ]);
        while n > 0 {
            let k = (n as usize).min(RAW_WRITE_BYTES);
            if s.write_all(&block[..k]).is_err() {
                return;
            }
            n -= k as u64;
        }
    }
}

/// Binds the raw server to an ephemeral loopback port.
fn bind() -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("binding raw server", e))?;
    let a = l
        .local_addr()
        .map_err(|e| Error::io("raw server address", e))?;
    Ok((l, a))
}

/// Serves every accepted connection on its own thread, for as long as `l` accepts.
fn accept_forever(l: TcpListener) {
    for s in l.incoming().flatten() {
        std::thread::spawn(move || serve_connection(s));
    }
}

/// Starts a raw server on a background thread of this process; returns its address.
pub fn spawn_in_process() -> Result<SocketAddr> {
    let (l, addr) = bind()?;
    std::thread::spawn(move || accept_forever(l));
    Ok(addr)
}

/// Runs a raw server as this whole process (a scenario's `--serve-raw`): prints
/// `{LISTENING_PREFIX}ADDR`, serves until killed, never returns `Ok`.
pub fn serve_forever() -> Result<()> {
    let (l, addr) = bind()?;
    println!("{LISTENING_PREFIX}{addr}");
    std::io::stdout()
        .flush()
        .map_err(|e| Error::io("stdout", e))?;
    accept_forever(l);
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_answers_with_the_requested_byte_count() -> Result<()> {
        let addr = spawn_in_process()?;
        let mut small = RawClient::connect(addr, HEADER_LEN + 5 + 4096)?;
        for _ in 0..3 {
            small.round_trip()?;
        }
        // Larger than one server write: the answer comes in several blocks.
        let mut big = RawClient::connect(addr, RAW_WRITE_BYTES)?;
        big.round_trip()?;
        let bytes_per_s = big.stream_bandwidth(3 * RAW_WRITE_BYTES as u64 + 17)?;
        assert!(bytes_per_s > 0.0);
        // The stream left nothing unread: the next round trip still lines up.
        big.round_trip()?;
        Ok(())
    }
}
