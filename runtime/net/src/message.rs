//! Body codecs of every operation: [`Request`] (client → server), [`Response`] (server →
//! client) and [`ErrorReply`] (a response with the `ERROR` flag).
//!
//! ```text
//! opcode       request body                               ok response body
//! ping         -                                          -
//! stats        -                                          6 × u64 (ServerStats, field order)
//! create-ds    ds u64 | kind u16                          -
//! destroy-ds   ds u64                                     -
//! read         ds u64 | object u64                        found u8 (0|1) [| bytes]
//! write        ds u64 | object u64 | bytes                -
//! remove       ds u64 | object u64                        existed u8 (0|1)
//! read-batch   ds u64 | n u32 | n × object u64            n u32 | n × (found u8 [| bytes])
//! write-batch  ds u64 | n u32 | n × (object u64 | bytes)  -
//! compute      function str | args bytes                  result bytes
//! create-zeroed ds u64 | first u64 | count u32 | len u32   -
//! error reply  (any opcode, flags RESPONSE|ERROR)         kind u32 (ErrorKind code) | message str
//! ```
//! `bytes`/`str` are a `u32` length then the bytes. Integers are little-endian.
//!
//! A body must decode completely (no trailing bytes); a count is checked against the bytes left
//! before anything is reserved. Requests borrow their byte strings from the frame body, so the
//! server copies object data once (into its store) and the client encodes straight from the
//! caller's slice into the connection's write buffer. On the read path the client need not own
//! each object either: [`object_spans`] locates the objects of a read or read-batch response in
//! its body, so a caller copies each one once, from the received body into its destination.

use std::ops::Range;

use farmem_error::{Error, ErrorKind, Result};

use crate::opcode::Opcode;
use crate::wire::{BodyReader, BodyWriter};

/// Identifies a data structure on a server (chosen by the client).
pub type DsId = u64;
/// Identifies an object within a data structure.
pub type ObjectId = u64;

/// One request, borrowing its byte strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Liveness check.
    Ping,
    /// Server counters.
    Stats,
    /// Create data structure `ds` of `kind` (the kind is the client's: array, hash table, ...).
    CreateDs {
        /// The new data structure's id.
        ds: DsId,
        /// The kind code (opaque to the server, checked on re-creation).
        kind: u16,
    },
    /// Destroy data structure `ds` and free its objects.
    DestroyDs {
        /// The data structure.
        ds: DsId,
    },
    /// Read one object.
    Read {
        /// The data structure.
        ds: DsId,
        /// The object.
        object: ObjectId,
    },
    /// Insert or replace one object.
    Write {
        /// The data structure.
        ds: DsId,
        /// The object.
        object: ObjectId,
        /// Its new contents.
        data: &'a [u8],
    },
    /// Remove one object.
    Remove {
        /// The data structure.
        ds: DsId,
        /// The object.
        object: ObjectId,
    },
    /// Read many objects of one data structure.
    ReadBatch {
        /// The data structure.
        ds: DsId,
        /// The objects, in the order the answers come back.
        objects: Vec<ObjectId>,
    },
    /// Write many objects of one data structure (all or nothing with respect to capacity).
    WriteBatch {
        /// The data structure.
        ds: DsId,
        /// `(object, contents)` pairs, applied in order.
        objects: Vec<(ObjectId, &'a [u8])>,
    },
    /// Call the server-side function `function` with `args`.
    Compute {
        /// The registered name.
        function: &'a str,
        /// Argument bytes (the function's own encoding).
        args: &'a [u8],
    },
    /// Create (or overwrite) objects `first .. first + count` of one data structure, each `len`
    /// zero bytes, all or nothing with respect to capacity, as a [`Request::WriteBatch`] of
    /// zeros would, without the zeros on the wire.
    CreateZeroed {
        /// The data structure.
        ds: DsId,
        /// The first object.
        first: ObjectId,
        /// How many objects.
        count: u32,
        /// Each object's length in bytes.
        len: u32,
    },
}

impl<'a> Request<'a> {
    /// The request's opcode.
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Ping => Opcode::Ping,
            Request::Stats => Opcode::Stats,
            Request::CreateDs { .. } => Opcode::CreateDs,
            Request::DestroyDs { .. } => Opcode::DestroyDs,
            Request::Read { .. } => Opcode::Read,
            Request::Write { .. } => Opcode::Write,
            Request::Remove { .. } => Opcode::Remove,
            Request::ReadBatch { .. } => Opcode::ReadBatch,
            Request::WriteBatch { .. } => Opcode::WriteBatch,
            Request::Compute { .. } => Opcode::Compute,
            Request::CreateZeroed { .. } => Opcode::CreateZeroed,
        }
    }

    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = BodyWriter::new(out);
        match self {
            Request::Ping | Request::Stats => {}
            Request::CreateDs { ds, kind } => {
                w.u64(*ds).u16(*kind);
            }
            Request::DestroyDs { ds } => {
                w.u64(*ds);
            }
            Request::Read { ds, object } | Request::Remove { ds, object } => {
                w.u64(*ds).u64(*object);
            }
            Request::Write { ds, object, data } => {
                w.u64(*ds).u64(*object).bytes(data);
            }
            Request::ReadBatch { ds, objects } => {
                w.u64(*ds).u32(objects.len() as u32);
                for o in objects {
                    w.u64(*o);
                }
            }
            Request::WriteBatch { ds, objects } => {
                w.u64(*ds).u32(objects.len() as u32);
                for (o, data) in objects {
                    w.u64(*o).bytes(data);
                }
            }
            Request::Compute { function, args } => {
                w.str(function).bytes(args);
            }
            Request::CreateZeroed {
                ds,
                first,
                count,
                len,
            } => {
                w.u64(*ds).u64(*first).u32(*count).u32(*len);
            }
        }
    }

    /// Decodes the body of a request with opcode `op`. The handshake is not a [`Request`]: it
    /// is only valid as a connection's first frame (see `handshake`).
    pub fn decode(op: Opcode, body: &'a [u8]) -> Result<Request<'a>> {
        let mut r = BodyReader::new(body, op.name());
        let req = match op {
            Opcode::Handshake => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "a handshake frame is only valid as the first frame of a connection",
                ))
            }
            Opcode::Ping => Request::Ping,
            Opcode::Stats => Request::Stats,
            Opcode::CreateDs => Request::CreateDs {
                ds: r.u64("ds")?,
                kind: r.u16("kind")?,
            },
            Opcode::DestroyDs => Request::DestroyDs { ds: r.u64("ds")? },
            Opcode::Read => Request::Read {
                ds: r.u64("ds")?,
                object: r.u64("object")?,
            },
            Opcode::Write => Request::Write {
                ds: r.u64("ds")?,
                object: r.u64("object")?,
                data: r.bytes("data")?,
            },
            Opcode::Remove => Request::Remove {
                ds: r.u64("ds")?,
                object: r.u64("object")?,
            },
            Opcode::ReadBatch => {
                let ds = r.u64("ds")?;
                let n = r.count("objects", 8)?;
                let mut objects = Vec::with_capacity(n);
                for _ in 0..n {
                    objects.push(r.u64("object")?);
                }
                Request::ReadBatch { ds, objects }
            }
            Opcode::WriteBatch => {
                let ds = r.u64("ds")?;
                let n = r.count("objects", 12)?;
                let mut objects = Vec::with_capacity(n);
                for _ in 0..n {
                    let o = r.u64("object")?;
                    objects.push((o, r.bytes("data")?));
                }
                Request::WriteBatch { ds, objects }
            }
            Opcode::Compute => Request::Compute {
                function: r.str("function")?,
                args: r.bytes("args")?,
            },
            Opcode::CreateZeroed => Request::CreateZeroed {
                ds: r.u64("ds")?,
                first: r.u64("first")?,
                count: r.u32("count")?,
                len: r.u32("len")?,
            },
        };
        r.finish()?;
        Ok(req)
    }
}

/// The server's counters, as the `stats` operation returns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Configured capacity in bytes.
    pub capacity_bytes: u64,
    /// Bytes in use (object bytes plus the per-object overhead the server charges).
    pub used_bytes: u64,
    /// Live data structures.
    pub data_structures: u64,
    /// Live objects over all data structures.
    pub objects: u64,
    /// Open client connections.
    pub connections: u64,
    /// Requests served since start (all connections).
    pub requests: u64,
}

/// A successful response, owned (the client keeps it after the frame buffer is gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Ok with no payload (ping, create, destroy, write, write-batch).
    Done,
    /// Server counters.
    Stats(ServerStats),
    /// A read: the bytes, or `None` when the object does not exist.
    Object(Option<Vec<u8>>),
    /// A remove: whether the object existed.
    Removed(bool),
    /// A batched read, in request order.
    Objects(Vec<Option<Vec<u8>>>),
    /// A compute result.
    Computed(Vec<u8>),
}

/// Appends a read response body (`found u8 [| bytes]`) without owning the data, so a server
/// can encode straight from its store.
pub fn encode_object(out: &mut Vec<u8>, data: Option<&[u8]>) {
    let mut w = BodyWriter::new(out);
    match data {
        Some(d) => {
            w.u8(1).bytes(d);
        }
        None => {
            w.u8(0);
        }
    }
}

fn decode_object(r: &mut BodyReader<'_>) -> Result<Option<Vec<u8>>> {
    Ok(decode_object_ref(r)?.map(<[u8]>::to_vec))
}

fn decode_object_ref<'a>(r: &mut BodyReader<'a>) -> Result<Option<&'a [u8]>> {
    match r.u8("found")? {
        0 => Ok(None),
        1 => Ok(Some(r.bytes("data")?)),
        other => Err(Error::new(
            ErrorKind::Protocol,
            format!("read response found flag is {other}, expected 0 or 1"),
        )),
    }
}

/// Where each object of a read or read-batch answer lies in its body (`None`: missing object).
pub type ObjectSpans = Vec<Option<Range<usize>>>;

/// Where the objects of the ok-response `body` of a `read` (one entry) or `read-batch` (one per
/// object asked for, in order) lie in `body`: `Some(range)` for an object, `None` for a missing
/// one. The same checks as [`Response::decode`] apply (no trailing bytes, counts bounded by the
/// body), but nothing is copied. Any other opcode is an [`ErrorKind::Protocol`] error.
pub fn object_spans(op: Opcode, body: &[u8]) -> Result<ObjectSpans> {
    fn span(r: &mut BodyReader<'_>) -> Result<Option<Range<usize>>> {
        Ok(decode_object_ref(r)?.map(|data| r.offset() - data.len()..r.offset()))
    }
    let mut r = BodyReader::new(body, op.name());
    let spans = match op {
        Opcode::Read => vec![span(&mut r)?],
        Opcode::ReadBatch => {
            let n = r.count("objects", 1)?;
            let mut list = Vec::with_capacity(n);
            for _ in 0..n {
                list.push(span(&mut r)?);
            }
            list
        }
        other => {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "a {} response carries no objects (only read and read-batch do)",
                    other.name()
                ),
            ))
        }
    };
    r.finish()?;
    Ok(spans)
}

impl Response {
    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Done => {}
            Response::Stats(s) => {
                BodyWriter::new(out)
                    .u64(s.capacity_bytes)
                    .u64(s.used_bytes)
                    .u64(s.data_structures)
                    .u64(s.objects)
                    .u64(s.connections)
                    .u64(s.requests);
            }
            Response::Object(o) => encode_object(out, o.as_deref()),
            Response::Removed(existed) => {
                BodyWriter::new(out).u8(u8::from(*existed));
            }
            Response::Objects(list) => {
                BodyWriter::new(out).u32(list.len() as u32);
                for o in list {
                    encode_object(out, o.as_deref());
                }
            }
            Response::Computed(bytes) => {
                BodyWriter::new(out).bytes(bytes);
            }
        }
    }

    /// Decodes the ok-response body of a request with opcode `op`.
    pub fn decode(op: Opcode, body: &[u8]) -> Result<Response> {
        let mut r = BodyReader::new(body, op.name());
        let resp = match op {
            Opcode::Handshake => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "handshake replies are decoded by handshake::HelloReply",
                ))
            }
            Opcode::Ping
            | Opcode::CreateDs
            | Opcode::DestroyDs
            | Opcode::Write
            | Opcode::WriteBatch
            | Opcode::CreateZeroed => Response::Done,
            Opcode::Stats => Response::Stats(ServerStats {
                capacity_bytes: r.u64("capacity")?,
                used_bytes: r.u64("used")?,
                data_structures: r.u64("data structures")?,
                objects: r.u64("objects")?,
                connections: r.u64("connections")?,
                requests: r.u64("requests")?,
            }),
            Opcode::Read => Response::Object(decode_object(&mut r)?),
            Opcode::Remove => match r.u8("existed")? {
                0 => Response::Removed(false),
                1 => Response::Removed(true),
                other => {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        format!("remove response existed flag is {other}, expected 0 or 1"),
                    ))
                }
            },
            Opcode::ReadBatch => {
                let n = r.count("objects", 1)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(decode_object(&mut r)?);
                }
                Response::Objects(list)
            }
            Opcode::Compute => Response::Computed(r.bytes("result")?.to_vec()),
        };
        r.finish()?;
        Ok(resp)
    }
}

/// The body of an error response: which [`ErrorKind`] and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    /// The kind, sent as its stable code.
    pub kind: ErrorKind,
    /// What failed, with the value and the remedy.
    pub message: String,
}

impl ErrorReply {
    /// The reply carrying `err`.
    pub fn from_error(err: &Error) -> ErrorReply {
        ErrorReply {
            kind: err.kind(),
            message: err.context().to_string(),
        }
    }

    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        BodyWriter::new(out)
            .u32(self.kind.code())
            .str(&self.message);
    }

    /// Decodes an error body. An unknown kind code (a newer server) becomes
    /// [`ErrorKind::ServerError`] with the code in the message.
    pub fn decode(body: &[u8]) -> Result<ErrorReply> {
        let mut r = BodyReader::new(body, "error reply");
        let code = r.u32("kind")?;
        let message = r.str("message")?.to_string();
        r.finish()?;
        Ok(match ErrorKind::from_code(code) {
            Some(kind) => ErrorReply { kind, message },
            None => ErrorReply {
                kind: ErrorKind::ServerError,
                message: format!("(unknown error kind {code}) {message}"),
            },
        })
    }

    /// The error as a farmem [`Error`], its message prefixed with `origin` (the server address).
    pub fn into_error(self, origin: impl std::fmt::Display) -> Error {
        Error::new(self.kind, format!("server {origin}: {}", self.message))
    }
}
