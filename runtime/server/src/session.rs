//! One client connection on the server: handshake, then read a request, answer it, repeat.
//!
//! ```text
//!  socket ──BufReader(64 KiB)──> read_frame ──> dispatch ──> scratch body ──BufWriter──> socket
//!                                                     flush only when the read buffer is empty
//! ```
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

use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::frame::{
    push_frame, read_frame, Frame, CONNECTION_REQUEST_ID, FLAG_ERROR, FLAG_RESPONSE,
};
use farmem_net::handshake::{tokens_equal, Hello, HelloReply};
use farmem_net::message::encode_object;
use farmem_net::wire::BodyWriter;
use farmem_net::{ErrorReply, Opcode, Request, Response, PROTOCOL_VERSION};

use crate::server::ServerState;
use crate::store::StoreView;

/// How long a new connection may take to send its handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IO_BUFFER_BYTES: usize = 64 << 10;

struct Responder {
    out: BufWriter<TcpStream>,
    scratch: Vec<u8>,
    frame: Vec<u8>,
    max_body: u32,
}

impl Responder {
    /// Queues the response to request (`opcode`, `id`): the body in `scratch` when `result` is
    /// ok, else an error reply. A body over the frame bound becomes an error reply too.
    fn respond(&mut self, opcode: u8, id: u64, result: Result<()>) -> std::io::Result<()> {
        let result = result.and_then(|()| {
            if self.scratch.len() > self.max_body as usize {
                Err(Error::invalid(format!(
                    "the response of {} bytes exceeds the frame limit of {} bytes: ask for \
                     fewer objects per batch",
                    self.scratch.len(),
                    self.max_body
                )))
            } else {
                Ok(())
            }
        });
        let flags = match result {
            Ok(()) => FLAG_RESPONSE,
            Err(e) => {
                self.scratch.clear();
                ErrorReply::from_error(&e).encode(&mut self.scratch);
                FLAG_RESPONSE | FLAG_ERROR
            }
        };
        self.frame.clear();
        push_frame(&mut self.frame, opcode, flags, id, &self.scratch);
        self.out.write_all(&self.frame)
    }

    /// Sends a connection-level error (request id 0) and flushes; the caller closes next.
    fn fatal(&mut self, opcode: u8, err: Error) {
        self.scratch.clear();
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
        frame: Vec::with_capacity(IO_BUFFER_BYTES),
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
        resp.scratch.clear();
        let result = dispatch(&frame, state, &mut resp.scratch);
        if resp.respond(opcode, id, result).is_err() {
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
            resp.scratch.clear();
            HelloReply {
                version: PROTOCOL_VERSION,
                max_body: state.config.max_frame_body,
            }
            .encode(&mut resp.scratch);
            resp.respond(Opcode::Handshake.as_u8(), id, Ok(())).is_ok() && resp.out.flush().is_ok()
        }
        Err(e) => {
            resp.scratch.clear();
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

/// Runs one decoded request against the store, appending the ok-response body to `out`.
fn dispatch(frame: &Frame, state: &ServerState, out: &mut Vec<u8>) -> Result<()> {
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
        | Request::WriteBatch { .. } => {
            match req {
                Request::CreateDs { ds, kind } => store.create_ds(ds, kind)?,
                Request::DestroyDs { ds } => store.destroy_ds(ds)?,
                Request::Write { ds, object, data } => store.write(ds, object, data)?,
                Request::WriteBatch { ds, objects } => store.write_batch(ds, &objects)?,
                _ => {}
            }
            Response::Done.encode(out);
        }
        Request::Stats => Response::Stats(state.stats()).encode(out),
        Request::Read { ds, object } => store.with_object(ds, object, |d| encode_object(out, d))?,
        Request::Remove { ds, object } => Response::Removed(store.remove(ds, object)?).encode(out),
        Request::ReadBatch { ds, objects } => {
            BodyWriter::new(out).u32(objects.len() as u32);
            store.with_objects(ds, &objects, |d| encode_object(out, d))?;
        }
        Request::Compute { function, args } => {
            let result = state
                .functions
                .call(function, &StoreView::new(store), args)?;
            Response::Computed(result).encode(out);
        }
    }
    Ok(())
}
