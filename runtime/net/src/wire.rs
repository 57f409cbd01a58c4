//! Primitive body encoding: little-endian integers and length-prefixed byte strings.
//!
//! Every body codec is built from these. Decoding is bounds-checked: [`BodyReader`] never
//! indexes past the body, a truncated body or a length prefix larger than what is left is an
//! [`ErrorKind::Protocol`] error naming the field, and [`BodyReader::finish`] rejects trailing
//! bytes, so a body decodes to exactly one value or to an error (never to a guess).

use farmem_error::{Error, ErrorKind, Result};

/// Appends primitives to a body buffer.
pub struct BodyWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> BodyWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> BodyWriter<'a> {
        BodyWriter { out }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a `u32` length then the bytes. Lengths above `u32::MAX` cannot occur: a frame body
    /// is itself bounded by a `u32`, and the frame builder rejects it first.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        crate::copy::extend_bytes(self.out, v);
        self
    }

    /// Appends a `u32` length then the UTF-8 bytes of `s`.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
}

/// Reads primitives from a body, bounds-checked.
pub struct BodyReader<'a> {
    body: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> BodyReader<'a> {
    /// A reader over `body`; `what` names the body in errors (`"read request"`).
    pub fn new(body: &'a [u8], what: &'static str) -> BodyReader<'a> {
        BodyReader { body, pos: 0, what }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let left = self.body.len() - self.pos;
        if n > left {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{} body truncated: field {field} needs {n} bytes at offset {} but only {left} \
                     of {} remain",
                    self.what,
                    self.pos,
                    self.body.len()
                ),
            ));
        }
        let s = &self.body[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Bytes consumed so far (the offset of the next field in the body).
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self, field: &str) -> Result<u16> {
        let s = self.take(2, field)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, field: &str) -> Result<u32> {
        let s = self.take(4, field)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, field: &str) -> Result<u64> {
        let s = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads a `u32`-length-prefixed byte string, borrowed from the body.
    pub fn bytes(&mut self, field: &str) -> Result<&'a [u8]> {
        let n = self.u32(field)? as usize;
        self.take(n, field)
    }

    /// Reads a `u32`-length-prefixed UTF-8 string.
    pub fn str(&mut self, field: &str) -> Result<&'a str> {
        let raw = self.bytes(field)?;
        std::str::from_utf8(raw).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("{} field {field} is not valid UTF-8: {e}", self.what),
            )
        })
    }

    /// Reads a `u32` element count and checks that at least `min_elem_bytes` per element remain,
    /// so a forged count cannot make the decoder reserve a huge vector.
    pub fn count(&mut self, field: &str, min_elem_bytes: usize) -> Result<usize> {
        let n = self.u32(field)? as usize;
        let left = self.body.len() - self.pos;
        if n.saturating_mul(min_elem_bytes.max(1)) > left {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{} field {field} claims {n} elements but only {left} body bytes remain",
                    self.what
                ),
            ));
        }
        Ok(n)
    }

    /// Succeeds only when the whole body was consumed.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.body.len() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{} body has {} trailing bytes after offset {}",
                    self.what,
                    self.body.len() - self.pos,
                    self.pos
                ),
            ));
        }
        Ok(())
    }
}
