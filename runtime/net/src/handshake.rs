//! The handshake: the first frame of every connection proves the client belongs to the cluster.
//!
//! ```text
//! request  (opcode 1, request id 1):  version u16 | client max body u32 | token bytes
//! response (ok):                      version u16 | server max body u32
//! response (error):                   error reply, kind Auth (wrong token) or Protocol
//! ```
//!
//! The server accepts no other opcode before a successful handshake, answers a wrong token with
//! an [`ErrorKind::Auth`] error reply and closes the connection. The token comparison is
//! constant-time in the token's contents ([`tokens_equal`]) so response timing does not reveal
//! how many leading bytes were right. Each side announces the largest frame body it accepts, and
//! each sends at most the smaller of the two bounds (a response too big for the client becomes
//! an error reply instead of a frame the client would have to reject).

use farmem_error::{Error, ErrorKind, Result};

use crate::wire::{BodyReader, BodyWriter};

/// Longest cluster token accepted (bytes); longer ones are refused before comparing.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The request id of the handshake frame (ids of later requests start after it).
pub const HANDSHAKE_REQUEST_ID: u64 = 1;

/// The client's opening frame body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Protocol version the client speaks.
    pub version: u16,
    /// The largest frame body the client accepts.
    pub max_body: u32,
    /// The cluster token.
    pub token: &'a [u8],
}

impl<'a> Hello<'a> {
    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        BodyWriter::new(out)
            .u16(self.version)
            .u32(self.max_body)
            .bytes(self.token);
    }

    /// Decodes a handshake body.
    pub fn decode(body: &'a [u8]) -> Result<Hello<'a>> {
        let mut r = BodyReader::new(body, "handshake request");
        let version = r.u16("version")?;
        let max_body = r.u32("max body")?;
        let token = r.bytes("token")?;
        r.finish()?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::new(
                ErrorKind::Auth,
                format!(
                    "cluster token of {} bytes is longer than {MAX_TOKEN_LEN}",
                    token.len()
                ),
            ));
        }
        Ok(Hello {
            version,
            max_body,
            token,
        })
    }
}

/// The server's answer to a good handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloReply {
    /// Protocol version the server speaks.
    pub version: u16,
    /// The largest frame body the server accepts.
    pub max_body: u32,
}

impl HelloReply {
    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        BodyWriter::new(out).u16(self.version).u32(self.max_body);
    }

    /// Decodes a handshake reply body.
    pub fn decode(body: &[u8]) -> Result<HelloReply> {
        let mut r = BodyReader::new(body, "handshake reply");
        let version = r.u16("version")?;
        let max_body = r.u32("max body")?;
        r.finish()?;
        Ok(HelloReply { version, max_body })
    }
}

/// Compares two tokens in time that depends only on their lengths, not on where they differ.
pub fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() {
        let mut buf = Vec::new();
        Hello {
            version: 1,
            max_body: 1 << 20,
            token: b"secret",
        }
        .encode(&mut buf);
        assert_eq!(
            Hello::decode(&buf),
            Ok(Hello {
                version: 1,
                max_body: 1 << 20,
                token: b"secret"
            })
        );
        let mut buf = Vec::new();
        HelloReply {
            version: 1,
            max_body: 99,
        }
        .encode(&mut buf);
        assert_eq!(HelloReply::decode(&buf).map(|r| r.max_body), Ok(99));
    }

    #[test]
    fn overlong_token_is_auth_error() {
        let token = vec![7u8; MAX_TOKEN_LEN + 1];
        let mut buf = Vec::new();
        Hello {
            version: 1,
            max_body: 1 << 20,
            token: &token,
        }
        .encode(&mut buf);
        assert_eq!(
            Hello::decode(&buf).map_err(|e| e.kind()),
            Err(ErrorKind::Auth)
        );
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_equal(b"abc", b"abc"));
        assert!(!tokens_equal(b"abc", b"abd"));
        assert!(!tokens_equal(b"abc", b"ab"));
        assert!(tokens_equal(b"", b""));
    }
}
