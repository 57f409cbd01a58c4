//! The frame: the unit every farmem connection carries, a fixed 20-byte header then a body.
//!
//! ```text
//!  byte 0         4        6        7        8                        16               20
//!      +----------+--------+--------+--------+------------------------+----------------+
//!      | magic    | version| opcode | flags  | request id             | body length    |
//!      | u32 LE   | u16 LE | u8     | u8     | u64 LE                 | u32 LE         |
//!      | "FMEM"   | = 1    |        |        |                        | <= max body    |
//!      +----------+--------+--------+--------+------------------------+----------------+
//!      then `body length` bytes of body (the opcode's codec, see `message`)
//! ```
//!
//! Invariants a decoded header guarantees (checked by [`FrameHeader::decode`], which returns an
//! [`ErrorKind::Protocol`] error naming the bad value otherwise):
//!
//! - the magic is `b"FMEM"` and the version is [`PROTOCOL_VERSION`]: garbage and peers of another
//!   protocol generation are rejected at the first frame;
//! - only the known flag bits ([`FLAG_RESPONSE`], [`FLAG_ERROR`]) are set, and `ERROR` only
//!   together with `RESPONSE`;
//! - the body length is at most the configured maximum, so a peer can never make us allocate
//!   more than the limit (a "huge length" attack costs one header, not gigabytes).
//!
//! The opcode byte is *not* validated here: an unknown opcode keeps the stream in sync (its body
//! length is known), so the server answers it with an error reply and keeps the connection.
//! Request id 0 is reserved for connection-level errors (a reply to a frame whose header could
//! not be trusted); real requests start at 1.

use std::io::Read;

use farmem_error::{Error, ErrorKind, Result};

/// The four magic bytes every frame starts with, as the little-endian `u32` they encode.
pub const MAGIC: u32 = u32::from_le_bytes(*b"FMEM");
/// The protocol generation this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u16 = 1;
/// Size of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 20;
/// Default bound on a frame body (64 MiB): configuration may lower or raise it.
pub const DEFAULT_MAX_BODY: u32 = 64 << 20;
/// Request id reserved for connection-level error replies.
pub const CONNECTION_REQUEST_ID: u64 = 0;

/// Flag bit: the frame is a response (set by servers, clear on requests).
pub const FLAG_RESPONSE: u8 = 0x01;
/// Flag bit: the response body is an error reply (kind code and message), not the op's result.
pub const FLAG_ERROR: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_RESPONSE | FLAG_ERROR;

/// A decoded, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The raw opcode byte (see [`crate::Opcode::from_u8`]).
    pub opcode: u8,
    /// The flag bits ([`FLAG_RESPONSE`], [`FLAG_ERROR`]).
    pub flags: u8,
    /// Matches a response to its request; chosen by the client, echoed by the server.
    pub request_id: u64,
    /// Number of body bytes that follow the header.
    pub body_len: u32,
}

impl FrameHeader {
    /// The header's 20 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out[6] = self.opcode;
        out[7] = self.flags;
        out[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        out[16..20].copy_from_slice(&self.body_len.to_le_bytes());
        out
    }

    /// Decodes and validates a header; `max_body` is the configured bound on the body length.
    pub fn decode(bytes: &[u8; HEADER_LEN], max_body: u32) -> Result<FrameHeader> {
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != MAGIC {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "bad frame magic {magic:#010x} (expected {MAGIC:#010x}, \"FMEM\"): the peer \
                     does not speak the farmem protocol or the stream lost sync"
                ),
            ));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != PROTOCOL_VERSION {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "unsupported protocol version {version} (this build speaks {PROTOCOL_VERSION}): \
                     run client and server from the same farmem release"
                ),
            ));
        }
        let flags = bytes[7];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("frame has unknown flag bits {flags:#04x} (known: {KNOWN_FLAGS:#04x})"),
            ));
        }
        if flags & FLAG_ERROR != 0 && flags & FLAG_RESPONSE == 0 {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("frame flags {flags:#04x} mark an error that is not a response"),
            ));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[8..16]);
        let body_len = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        if body_len > max_body {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "frame body of {body_len} bytes exceeds the limit of {max_body} bytes: raise \
                     the max frame size on both ends or send smaller objects"
                ),
            ));
        }
        Ok(FrameHeader {
            opcode: bytes[6],
            flags,
            request_id: u64::from_le_bytes(id),
            body_len,
        })
    }

    /// Whether the frame is a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// Whether the frame is an error reply.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }
}

/// A whole frame: header and owned body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The validated header.
    pub header: FrameHeader,
    /// Exactly `header.body_len` bytes.
    pub body: Vec<u8>,
}

/// Reads one frame from `reader`, validating its header against `max_body`.
///
/// A clean end of stream before the first header byte and any I/O failure are
/// [`ErrorKind::Disconnected`] (or the kind of the I/O error); a bad header is
/// [`ErrorKind::Protocol`].
pub fn read_frame<R: Read>(reader: &mut R, max_body: u32) -> Result<Frame> {
    let mut raw = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut raw)
        .map_err(|e| read_error(e, "frame header"))?;
    let header = FrameHeader::decode(&raw, max_body)?;
    let mut body = vec![0u8; header.body_len as usize];
    reader
        .read_exact(&mut body)
        .map_err(|e| read_error(e, "frame body"))?;
    Ok(Frame { header, body })
}

fn read_error(e: std::io::Error, what: &str) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::new(
            ErrorKind::Disconnected,
            format!("peer closed the connection while we read a {what}"),
        )
    } else {
        Error::from(e).with_context(format!("reading a {what}"))
    }
}

/// Appends a frame (header then `body`) to `out`.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, flags: u8, request_id: u64, body: &[u8]) {
    let header = FrameHeader {
        opcode,
        flags,
        request_id,
        body_len: body.len() as u32,
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
}

/// Builds a frame in place at the end of `out`: reserves the header, lets `body` append the
/// body, then patches the length. Fails (and leaves `out` as it was) when the body exceeds
/// `max_body`; the error is [`ErrorKind::InvalidArgument`] since it is the caller's request
/// that is too big.
pub fn push_frame_with(
    out: &mut Vec<u8>,
    opcode: u8,
    flags: u8,
    request_id: u64,
    max_body: u32,
    body: impl FnOnce(&mut Vec<u8>),
) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    body(out);
    let body_len = out.len() - start - HEADER_LEN;
    if body_len > max_body as usize {
        out.truncate(start);
        return Err(Error::invalid(format!(
            "a frame body of {body_len} bytes (opcode {opcode}) exceeds the frame limit of \
             {max_body} bytes: split the request or raise max_frame_body on client and server"
        )));
    }
    let header = FrameHeader {
        opcode,
        flags,
        request_id,
        body_len: body_len as u32,
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.encode());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_fmem_on_the_wire() {
        let h = FrameHeader {
            opcode: 7,
            flags: FLAG_RESPONSE,
            request_id: 0x0102_0304_0506_0708,
            body_len: 5,
        };
        let raw = h.encode();
        assert_eq!(&raw[0..4], b"FMEM");
        assert_eq!(&raw[4..6], &[1, 0]);
        assert_eq!(raw[8], 0x08, "request id is little-endian");
        assert_eq!(FrameHeader::decode(&raw, 5), Ok(h));
    }

    #[test]
    fn push_frame_with_rejects_oversized_body_and_restores_buffer() {
        let mut out = vec![9u8; 3];
        let err = push_frame_with(&mut out, 1, 0, 1, 4, |b| b.extend_from_slice(&[0; 5]));
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::InvalidArgument));
        assert_eq!(out, vec![9u8; 3]);
        push_frame_with(&mut out, 1, 0, 1, 4, |b| b.extend_from_slice(&[0; 4])).unwrap();
        assert_eq!(out.len(), 3 + HEADER_LEN + 4);
    }
}
