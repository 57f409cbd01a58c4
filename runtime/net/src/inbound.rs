//! Incremental frame reassembly: turns whatever bytes one `read` returned into whole frames.
//!
//! ```text
//!  buf: [ consumed | start .. filled: received, not yet a whole frame | filled .. len: free ]
//!  direct (a large frame whose header is parsed): body[..got] received, body[got..] next
//! ```
//!
//! A `read` may stop anywhere, including inside a header, and a read timeout may interrupt the
//! stream between two reads; unlike `read_exact` on a `BufReader`, nothing is lost, because the
//! partial frame stays in the buffer until the next read completes it. That is what lets a
//! client waiter read with a short socket timeout (to notice its own deadline) and hand reading
//! over to another waiter at any moment, and it is the shape a nonblocking reactor read needs.
//!
//! Large bodies (at least [`DIRECT_BODY_BYTES`]: batch-read responses) are received *directly*:
//! once such a frame's header is parsed, the body bytes already in `buf` move into a vector from
//! the [`BodyPool`] and every later `read` goes straight into that vector's remaining part (never
//! past the frame's end), so most of a large body is copied once, by the kernel, instead of into
//! `buf` and out again. Small frames (many per `read`) still go through `buf`.
//!
//! Invariants: `start <= filled <= buf.len()`; `buf[start..filled]` never holds a whole frame
//! after [`FrameAssembler::next_frame`] returned `Ok(None)`; while `direct` holds a partial body,
//! `buf` is empty (the stream's next bytes belong to that body); the buffer grows to at most one
//! header plus the largest body allowed (`max_body`), because headers are validated before their
//! bodies are waited for.

use std::io::Read;
use std::sync::Arc;

use farmem_error::{Error, ErrorKind, Result};

use crate::body_pool::BodyPool;
use crate::frame::{Frame, FrameHeader, HEADER_LEN};

/// Initial (and minimum) buffer size: many small responses per `read`.
const INITIAL_BYTES: usize = 64 << 10;

/// Bodies at least this long are received straight into their own (pooled) vector.
pub const DIRECT_BODY_BYTES: usize = crate::body_pool::POOLED_BODY_BYTES;

/// A large frame whose body is being received in place.
struct DirectBody {
    header: FrameHeader,
    body: Vec<u8>,
    /// Body bytes received so far.
    got: usize,
}

/// Reassembles frames from a byte stream.
pub struct FrameAssembler {
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    max_body: u32,
    direct: Option<DirectBody>,
    pool: Arc<BodyPool>,
}

/// What one [`FrameAssembler::fill_from`] call saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// This many new bytes arrived.
    Bytes(usize),
    /// The read timed out or would block: no bytes, the stream is fine.
    Idle,
}

impl FrameAssembler {
    /// An empty assembler accepting bodies up to `max_body` bytes, with a pool of its own.
    pub fn new(max_body: u32) -> FrameAssembler {
        FrameAssembler::with_pool(max_body, Arc::new(BodyPool::new()))
    }

    /// An empty assembler that takes large bodies from `pool` (give them back there).
    pub fn with_pool(max_body: u32, pool: Arc<BodyPool>) -> FrameAssembler {
        FrameAssembler {
            buf: vec![0; INITIAL_BYTES],
            start: 0,
            filled: 0,
            max_body,
            direct: None,
            pool,
        }
    }

    /// The pool large bodies come from.
    pub fn pool(&self) -> &Arc<BodyPool> {
        &self.pool
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        let direct = self.direct.as_ref().map_or(0, |d| HEADER_LEN + d.got);
        self.filled - self.start + direct
    }

    /// Performs one `read` from `src`: into the body of a large frame being received in place,
    /// else into the buffer. End of stream is [`ErrorKind::Disconnected`]; a timeout or
    /// `WouldBlock` is [`Fill::Idle`].
    pub fn fill_from<R: Read>(&mut self, src: &mut R) -> Result<Fill> {
        self.fill_with(|buf, _| src.read(buf))
    }

    /// [`fill_from`](Self::fill_from) through `read(buf, rest_of_body)`, which reads into `buf`
    /// like [`Read::read`]. `rest_of_body` says that `buf` is exactly the rest of a large body
    /// (no byte past it belongs to that frame), so a socket may wait until it can fill all of
    /// `buf` (`MSG_WAITALL`): one wake-up per body instead of one per arriving segment.
    pub fn fill_with(
        &mut self,
        mut read: impl FnMut(&mut [u8], bool) -> std::io::Result<usize>,
    ) -> Result<Fill> {
        if let Some(d) = self.direct.as_mut().filter(|d| d.got < d.body.len()) {
            let got = read(&mut d.body[d.got..], true);
            if let Ok(n) = got {
                d.got += n;
            }
            return self.fill_result(got);
        }
        if self.filled == self.buf.len() {
            self.make_room();
        }
        let got = read(&mut self.buf[self.filled..], false);
        if let Ok(n) = got {
            self.filled += n;
        }
        self.fill_result(got)
    }

    fn fill_result(&self, got: std::io::Result<usize>) -> Result<Fill> {
        match got {
            Ok(0) => Err(Error::new(
                ErrorKind::Disconnected,
                format!(
                    "peer closed the connection ({} bytes of a partial frame buffered)",
                    self.buffered()
                ),
            )),
            Ok(n) => Ok(Fill::Bytes(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Fill::Idle)
            }
            Err(e) => Err(Error::from(e).with_context("reading from the connection")),
        }
    }

    /// Compacts, then grows the buffer so the frame at `start` fits (called only when full).
    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        if self.filled == self.buf.len() {
            // A frame bigger than the buffer: grow to the whole frame (its header was validated
            // by next_frame, so its length is within max_body), or at least double.
            let want = self
                .pending_frame_len()
                .unwrap_or(0)
                .max(self.buf.len() * 2);
            self.buf.resize(want, 0);
        }
    }

    fn pending_frame_len(&self) -> Option<usize> {
        let avail = &self.buf[self.start..self.filled];
        let raw: &[u8; HEADER_LEN] = avail.get(..HEADER_LEN)?.try_into().ok()?;
        let h = FrameHeader::decode(raw, self.max_body).ok()?;
        Some(HEADER_LEN + h.body_len as usize)
    }

    /// The next whole frame in the buffer, `Ok(None)` if more bytes are needed, or an
    /// [`ErrorKind::Protocol`] error for a bad header (the stream is then unusable).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if let Some(d) = &self.direct {
            if d.got < d.body.len() {
                return Ok(None);
            }
            return Ok(self.direct.take().map(|d| Frame {
                header: d.header,
                body: d.body,
            }));
        }
        let avail = &self.buf[self.start..self.filled];
        let Some(raw) = avail.get(..HEADER_LEN) else {
            self.reset_if_empty();
            return Ok(None);
        };
        let mut header_bytes = [0u8; HEADER_LEN];
        header_bytes.copy_from_slice(raw);
        let header = FrameHeader::decode(&header_bytes, self.max_body)?;
        let body_len = header.body_len as usize;
        if body_len >= DIRECT_BODY_BYTES {
            // Move what is here into the body's own vector; the rest is read straight into it.
            let have = (avail.len() - HEADER_LEN).min(body_len);
            let mut body = self.pool.take(body_len);
            body[..have].copy_from_slice(&avail[HEADER_LEN..HEADER_LEN + have]);
            self.start += HEADER_LEN + have;
            self.reset_if_empty();
            if have == body_len {
                return Ok(Some(Frame { header, body }));
            }
            self.direct = Some(DirectBody {
                header,
                body,
                got: have,
            });
            return Ok(None);
        }
        let total = HEADER_LEN + body_len;
        let Some(frame) = avail.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let body = frame.to_vec();
        self.start += total;
        self.reset_if_empty();
        Ok(Some(Frame { header, body }))
    }

    fn reset_if_empty(&mut self) {
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
            if self.buf.len() > INITIAL_BYTES * 4 {
                // Give back the memory of a one-off huge frame.
                self.buf = vec![0; INITIAL_BYTES];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::push_frame;

    /// A reader that hands out at most `chunk` bytes per read, with an idle tick between reads.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
        idle_next: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.idle_next = !self.idle_next;
            if !self.idle_next {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Feeds `wire` to `a` through a `Trickle` of `chunk` bytes per read and returns every frame
    /// assembled before the stream ends (which must read as `Disconnected`). The buffer never
    /// holds more than the whole stream.
    fn assemble_trickled(a: &mut FrameAssembler, wire: &[u8], chunk: usize) -> Vec<Frame> {
        let mut src = Trickle {
            data: wire,
            chunk,
            idle_next: false,
        };
        let mut got = Vec::new();
        loop {
            while let Some(f) = a.next_frame().unwrap() {
                got.push(f);
            }
            match a.fill_from(&mut src) {
                Ok(_) => assert!(a.buffered() <= wire.len()),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Disconnected);
                    return got;
                }
            }
        }
    }

    #[test]
    fn frames_survive_any_split_and_idle_ticks() {
        let mut wire = Vec::new();
        let bodies: Vec<Vec<u8>> = (0..50usize).map(|i| vec![i as u8; i * 37]).collect();
        for (i, b) in bodies.iter().enumerate() {
            push_frame(&mut wire, 6, 1, i as u64, b);
        }
        // One frame larger than the initial buffer forces growth.
        let big = vec![0xab; INITIAL_BYTES * 3];
        push_frame(&mut wire, 6, 1, 99, &big);
        for chunk in [1usize, 7, 20, 4096, 1 << 20] {
            let mut a = FrameAssembler::new(1 << 20);
            let got = assemble_trickled(&mut a, &wire, chunk);
            assert_eq!(got.len(), 51, "chunk {chunk}");
            for (i, f) in got.iter().take(50).enumerate() {
                assert_eq!(f.header.request_id, i as u64);
                assert_eq!(f.body, bodies[i]);
            }
            assert_eq!(got[50].body, big);
            assert_eq!(a.buffered(), 0);
        }
    }

    #[test]
    fn large_bodies_are_received_in_place_between_small_frames() {
        // Small, exactly-threshold, large and just-below-threshold bodies, interleaved.
        let sizes = [
            10,
            DIRECT_BODY_BYTES,
            3,
            DIRECT_BODY_BYTES * 5 + 17,
            0,
            DIRECT_BODY_BYTES - 1,
            DIRECT_BODY_BYTES * 2,
            DIRECT_BODY_BYTES * 2,
        ];
        let bodies: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|k| (k * 7 + i) as u8).collect())
            .collect();
        let mut wire = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            push_frame(&mut wire, 6, 1, i as u64, b);
        }
        for chunk in [1usize, 5, 999, 4096, 40_000, 1 << 20] {
            let mut a = FrameAssembler::new(1 << 20);
            let got = assemble_trickled(&mut a, &wire, chunk);
            assert_eq!(got.len(), bodies.len(), "chunk {chunk}");
            for (i, f) in got.iter().enumerate() {
                assert_eq!(f.header.request_id, i as u64, "chunk {chunk}");
                assert_eq!(f.body, bodies[i], "chunk {chunk} frame {i}");
            }
            assert_eq!(a.buffered(), 0);
            // Bodies given back are taken again for the next large frame.
            for f in got {
                a.pool().give(f.body);
            }
            assert!(a.pool().kept() > 0);
        }
    }

    #[test]
    fn end_of_stream_inside_a_large_body_is_disconnected() {
        let mut wire = Vec::new();
        push_frame(&mut wire, 6, 1, 1, &vec![9u8; DIRECT_BODY_BYTES * 2]);
        wire.truncate(wire.len() - 100);
        let mut src: &[u8] = &wire;
        let mut a = FrameAssembler::new(1 << 20);
        let err = loop {
            assert!(a.next_frame().unwrap().is_none());
            if let Err(e) = a.fill_from(&mut src) {
                break e;
            }
        };
        assert_eq!(err.kind(), ErrorKind::Disconnected);
        assert_eq!(a.buffered(), wire.len(), "{err}");
    }

    #[test]
    fn bad_header_is_a_protocol_error() {
        let mut a = FrameAssembler::new(16);
        let mut src: &[u8] = &[0x55; 40];
        a.fill_from(&mut src).unwrap();
        assert_eq!(a.next_frame().unwrap_err().kind(), ErrorKind::Protocol);
    }
}
