//! One client connection on the server: handshake, then read a request, answer it, repeat.
//!
//! ```text
//!  socket ──BufReader(64 KiB)──> read_frame ──> dispatch ──> scratch frame ──BufWriter──> socket
//!                                                     flush only when the read buffer is empty
//! ```
//!
//! The response is built in place: `scratch` holds room for the frame header, the body is
//! encoded after it, and the header is patched in once the body length is known, so the frame
//! reaches the socket without another copy (a `BufWriter` passes a write larger than its buffer
//! straight through). Reads (`read`, `read-batch`) copy no object at all: `scratch` holds only
//! the header and the per-object prefixes, and one vectored write sends them interleaved with
//! the objects' bytes, shared from the store ([`Store::shared_objects`](crate::store::Store)),
//! so a scan's bytes go from the store to the socket in the kernel's one copy.
//!
//! Responses are written into a `BufWriter` and flushed only once every request already in the
//! read buffer has been answered: a client that pipelines `n` requests in one segment gets its
//! `n` answers in one write (server-side coalescing, the mirror of the client's outbox).
//!
//! Bad input never leaves this connection: an untrusted header (bad magic, version, flags or
//! length) gets a connection-level error reply (request id 0) and the connection closes; an
//! unknown opcode or malformed body gets an error reply for that request and the connection
//! goes on; a wrong token gets an [`ErrorKind::Auth`] reply and a close. The store is only
//! touched by fully decoded requests, so a bad frame cannot lose or corrupt anything.

use std::io::{BufReader, BufWriter, IoSlice, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::frame::{
    read_frame, Frame, FrameHeader, CONNECTION_REQUEST_ID, FLAG_ERROR, FLAG_RESPONSE, HEADER_LEN,
};
use farmem_net::handshake::{tokens_equal, Hello, HelloReply};
use farmem_net::wire::BodyWriter;
use farmem_net::{ErrorReply, Opcode, Request, Response, PROTOCOL_VERSION};

use crate::server::ServerState;
use crate::store::StoreView;

/// How long a new connection may take to send its handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IO_BUFFER_BYTES: usize = 64 << 10;
/// Most slices handed to one vectored write (Linux's `IOV_MAX`).
const MAX_WRITE_SLICES: usize = 1024;

/// What a dispatched request answers with.
enum Reply {
    /// The body is encoded in the responder's `scratch`.
    Encoded,
    /// A read's objects, to be sent from the store's shared bytes: one object (`read`) or a
    /// counted list (`read-batch`).
    Objects {
        counted: bool,
        list: Vec<Option<Arc<[u8]>>>,
    },
}

struct Responder {
    out: BufWriter<TcpStream>,
    /// The response frame being built: `HEADER_LEN` bytes of room for the header, then the body.
    scratch: Vec<u8>,
    max_body: u32,
}

impl Responder {
    /// Starts a response: empties `scratch` but for the room of the header. The body is
    /// appended to `scratch` after that.
    fn begin(&mut self) {
        self.scratch.clear();
        self.scratch.resize(HEADER_LEN, 0);
    }

    /// Queues the response to request (`opcode`, `id`): the body after the header room in
    /// `scratch` (see [`Responder::begin`]) when `result` is ok, else an error reply. A body over
    /// the frame bound becomes an error reply too.
    fn respond(&mut self, opcode: u8, id: u64, result: Result<()>) -> std::io::Result<()> {
        let body_len = self.scratch.len().saturating_sub(HEADER_LEN);
        let result = result.and_then(|()| {
            if self.scratch.len() < HEADER_LEN {
                Err(Error::internal(
                    "a response was built without room for its header",
                ))
            } else if body_len > self.max_body as usize {
                Err(Error::invalid(format!(
                    "the response of {body_len} bytes exceeds the frame limit of {} bytes: ask \
                     for fewer objects per batch",
                    self.max_body
                )))
            } else {
                Ok(())
            }
        });
        let flags = match result {
            Ok(()) => FLAG_RESPONSE,
            Err(e) => {
                self.begin();
                ErrorReply::from_error(&e).encode(&mut self.scratch);
                FLAG_RESPONSE | FLAG_ERROR
            }
        };
        let header = FrameHeader {
            opcode,
            flags,
            request_id: id,
            body_len: (self.scratch.len() - HEADER_LEN) as u32,
        };
        self.scratch[..HEADER_LEN].copy_from_slice(&header.encode());
        self.out.write_all(&self.scratch)
    }

    /// Queues the answer of a read (`counted == false`: exactly one object) or read-batch
    /// (`counted`) to request (`opcode`, `id`) without copying the objects: the header and the
    /// per-object prefixes (`found u8 [| len u32]`, see `farmem_net::message`) go into
    /// `scratch`, the bytes are written from `list` by one vectored write.
    fn respond_objects(
        &mut self,
        opcode: u8,
        id: u64,
        counted: bool,
        list: &[Option<Arc<[u8]>>],
    ) -> std::io::Result<()> {
        let count_bytes = if counted { 4 } else { 0 };
        let body_len = list.iter().fold(count_bytes, |n, o| {
            n + o.as_ref().map_or(1, |d| 1 + 4 + d.len())
        });
        if body_len > self.max_body as usize {
            let e = Error::invalid(format!(
                "the response of {body_len} bytes exceeds the frame limit of {} bytes: ask for \
                 fewer objects per batch",
                self.max_body
            ));
            self.begin();
            return self.respond(opcode, id, Err(e));
        }
        self.begin();
        if counted {
            BodyWriter::new(&mut self.scratch).u32(list.len() as u32);
        }
        // Prefix ends in `scratch`, one per object, before any slice borrows it.
        let mut ends = Vec::with_capacity(list.len());
        for o in list {
            match o {
                Some(d) => BodyWriter::new(&mut self.scratch).u8(1).u32(d.len() as u32),
                None => BodyWriter::new(&mut self.scratch).u8(0),
            };
            ends.push(self.scratch.len());
        }
        let header = FrameHeader {
            opcode,
            flags: FLAG_RESPONSE,
            request_id: id,
            body_len: body_len as u32,
        };
        self.scratch[..HEADER_LEN].copy_from_slice(&header.encode());
        let head = HEADER_LEN + count_bytes;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + 2 * list.len());
        parts.push(&self.scratch[..head]);
        let mut start = head;
        for (o, &end) in list.iter().zip(&ends) {
            parts.push(&self.scratch[start..end]);
            if let Some(d) = o {
                parts.push(d);
            }
            start = end;
        }
        write_all_parts(&mut self.out, &parts)
    }

    /// Sends a connection-level error (request id 0) and flushes; the caller closes next.
    fn fatal(&mut self, opcode: u8, err: Error) {
        self.begin();
        // Best effort: the peer may already be gone, and we close either way.
        let _ = self.respond(opcode, CONNECTION_REQUEST_ID, Err(err));
        let _ = self.out.flush();
    }
}

/// Serves one connection until the peer leaves, breaks the protocol fatally, or the server
/// shuts the socket down.
pub(crate) fn serve(stream: TcpStream, state: &ServerState) {
    let max_body = state.config.max_frame_body;
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    // No timeout needed after the handshake: shutdown() of the socket wakes a blocked read.
    if read_half.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err() {
        return;
    }
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, read_half);
    let mut resp = Responder {
        out: BufWriter::with_capacity(IO_BUFFER_BYTES, stream),
        scratch: Vec::with_capacity(IO_BUFFER_BYTES),
        max_body,
    };

    if !handshake(&mut reader, &mut resp, state) {
        return;
    }
    if reader.get_ref().set_read_timeout(None).is_err() {
        return;
    }

    loop {
        let frame = match read_frame(&mut reader, max_body) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == ErrorKind::Protocol {
                    resp.fatal(0, e);
                }
                return;
            }
        };
        state.requests.fetch_add(1, Ordering::Relaxed);
        let (opcode, id) = (frame.header.opcode, frame.header.request_id);
        resp.begin();
        let sent = match dispatch(&frame, state, &mut resp.scratch) {
            Ok(Reply::Objects { counted, list }) => {
                resp.respond_objects(opcode, id, counted, &list)
            }
            Ok(Reply::Encoded) => resp.respond(opcode, id, Ok(())),
            Err(e) => resp.respond(opcode, id, Err(e)),
        };
        if sent.is_err() {
            return;
        }
        if reader.buffer().is_empty() && resp.out.flush().is_err() {
            return;
        }
    }
}

/// Reads and checks the first frame; answers it. Returns whether the session may go on.
fn handshake(reader: &mut BufReader<TcpStream>, resp: &mut Responder, state: &ServerState) -> bool {
    let frame = match read_frame(reader, state.config.max_frame_body) {
        Ok(f) => f,
        Err(e) => {
            if e.kind() == ErrorKind::Protocol {
                resp.fatal(Opcode::Handshake.as_u8(), e);
            }
            return false;
        }
    };
    let checked = check_hello(&frame, &state.config.token);
    let id = frame.header.request_id;
    match checked {
        Ok(client_max_body) => {
            // Never send a response bigger than the client accepts: it becomes an error reply.
            resp.max_body = resp.max_body.min(client_max_body);
            resp.begin();
            HelloReply {
                version: PROTOCOL_VERSION,
                max_body: state.config.max_frame_body,
            }
            .encode(&mut resp.scratch);
            resp.respond(Opcode::Handshake.as_u8(), id, Ok(())).is_ok() && resp.out.flush().is_ok()
        }
        Err(e) => {
            resp.begin();
            let _ = resp.respond(Opcode::Handshake.as_u8(), id, Err(e));
            let _ = resp.out.flush();
            false
        }
    }
}

/// Validates the handshake frame; returns the client's frame-body bound.
fn check_hello(frame: &Frame, token: &[u8]) -> Result<u32> {
    if frame.header.opcode != Opcode::Handshake.as_u8() || frame.header.is_response() {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "the first frame of a connection must be a handshake request (opcode {}), got \
                 opcode {} flags {:#04x}",
                Opcode::Handshake.as_u8(),
                frame.header.opcode,
                frame.header.flags
            ),
        ));
    }
    let hello = Hello::decode(&frame.body)?;
    if hello.version != PROTOCOL_VERSION {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "client speaks protocol version {}, this server speaks {PROTOCOL_VERSION}",
                hello.version
            ),
        ));
    }
    if !tokens_equal(hello.token, token) {
        return Err(Error::new(
            ErrorKind::Auth,
            "wrong cluster token: give the client the token in the server's --token-file",
        ));
    }
    Ok(hello.max_body)
}

/// Runs one decoded request against the store, appending the ok-response body to `out` (after
/// whatever `out` already holds: the header room), or returning a read's objects to send
/// without a copy.
fn dispatch(frame: &Frame, state: &ServerState, out: &mut Vec<u8>) -> Result<Reply> {
    if frame.header.is_response() {
        return Err(Error::new(
            ErrorKind::Protocol,
            "a client sent a response frame to the server",
        ));
    }
    let op = Opcode::from_u8(frame.header.opcode)?;
    let req = Request::decode(op, &frame.body)?;
    let store = &state.store;
    match req {
        Request::Ping
        | Request::CreateDs { .. }
        | Request::DestroyDs { .. }
        | Request::Write { .. }
        | Request::WriteBatch { .. }
        | Request::CreateZeroed { .. } => {
            match req {
                Request::CreateDs { ds, kind } => store.create_ds(ds, kind)?,
                Request::DestroyDs { ds } => store.destroy_ds(ds)?,
                Request::Write { ds, object, data } => store.write(ds, object, data)?,
                Request::WriteBatch { ds, objects } => store.write_batch(ds, &objects)?,
                Request::CreateZeroed {
                    ds,
                    first,
                    count,
                    len,
                } => store.create_zeroed(ds, first, count, len)?,
                _ => {}
            }
            Response::Done.encode(out);
        }
        Request::Stats => Response::Stats(state.stats()).encode(out),
        Request::Read { ds, object } => {
            return Ok(Reply::Objects {
                counted: false,
                list: store.shared_objects(ds, &[object])?,
            })
        }
        Request::Remove { ds, object } => Response::Removed(store.remove(ds, object)?).encode(out),
        Request::ReadBatch { ds, objects } => {
            return Ok(Reply::Objects {
                counted: true,
                list: store.shared_objects(ds, &objects)?,
            })
        }
        Request::Compute { function, args } => {
            let result = state
                .functions
                .call(function, &StoreView::new(store), args)?;
            Response::Computed(result).encode(out);
        }
    }
    Ok(Reply::Encoded)
}

/// Writes every byte of `parts`, in order, with vectored writes of at most
/// [`MAX_WRITE_SLICES`] slices, resuming inside a part after a short write.
fn write_all_parts(out: &mut impl Write, parts: &[&[u8]]) -> std::io::Result<()> {
    // The first byte not yet written is parts[i][off].
    let (mut i, mut off) = (0usize, 0usize);
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len().min(MAX_WRITE_SLICES));
    loop {
        while i < parts.len() && off == parts[i].len() {
            i += 1;
            off = 0;
        }
        let Some(first) = parts.get(i) else {
            return Ok(());
        };
        slices.clear();
        slices.push(IoSlice::new(&first[off..]));
        slices.extend(
            parts[i + 1..]
                .iter()
                .take(MAX_WRITE_SLICES - 1)
                .map(|p| IoSlice::new(p)),
        );
        let mut n = match out.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 && i < parts.len() {
            let left = parts[i].len() - off;
            if n >= left {
                n -= left;
                i += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes of the first slice per call and fails every
    /// third call with `Interrupted`.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_are_written_whole_and_in_order_across_short_writes() {
        let data: Vec<Vec<u8>> = (0..(MAX_WRITE_SLICES + 40))
            .map(|i| vec![i as u8; i % 7])
            .collect();
        let parts: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let want: Vec<u8> = data.concat();
        for max in [1, 2, 5, 1 << 20] {
            let mut w = Trickle {
                got: Vec::new(),
                max,
                calls: 0,
            };
            write_all_parts(&mut w, &parts).unwrap();
            assert_eq!(w.got, want, "max {max}");
        }
        let mut w = Trickle {
            got: Vec::new(),
            max: 0,
            calls: 0,
        };
        assert_eq!(
            write_all_parts(&mut w, &parts).unwrap_err().kind(),
            std::io::ErrorKind::WriteZero
        );
        write_all_parts(&mut w, &[&[], &[]]).unwrap();
    }
}
