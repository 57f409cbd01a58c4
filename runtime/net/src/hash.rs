//! The shared encoding of hash-index calls: the `hash_index` remote function that keeps a
//! far-memory hash map's authoritative index on the memory server (AIFM's remote agent,
//! OSDI'20 §4.4: a lookup that misses locally costs one round trip in which the server searches
//! its own index, never a walk over remote buckets).
//!
//! # Layout on the server
//!
//! A map is one data structure. Its entries live in *bucket objects* named by the key's hash,
//! and one *meta object* holds the entry count:
//!
//! ```text
//!   ObjectId META_OBJECT (0xFFFF_FFFF)        count u64                  (absent = 0)
//!   ObjectId bucket_id(key) = key_hash | 1<<63 entries: { key_len u32 | value_len u32 | key | value }*
//! ```
//!
//! Bucket ids have the top bit set and the meta id has not, so they never meet. Two keys share a
//! bucket only when their 64-bit hashes are equal; the bucket then holds both entries. The
//! store's per-structure `HashMap` is the index, and it grows by itself.
//!
//! # Call encoding (`compute(HASH_INDEX_FUNCTION, args)`, little-endian)
//!
//! ```text
//!   args   = ds u64 | version u8 | op u8 | operands
//!   op 1 get     key bytes              → result: 0 (absent) | 1 value...
//!   op 2 put     key bytes, value bytes → result: 1 if the key is new, 0 if replaced
//!   op 3 remove  key bytes              → result: 1 if it was there, 0 if not
//!   op 4 len                            → result: count u64
//!   op 5 get-many  count u32, key bytes × count
//!                                       → result: count u32, then per key 0 | 1 value bytes
//!   op 6 clear                          → result: count u64 of the entries dropped
//! ```
//!
//! `clear` removes every object of the map's data structure (buckets and meta): a client sends
//! it when the last handle of its map drops, so a dropped map leaves no entries on the server.
//!
//! `bytes` is a `u32` length then the bytes ([`crate::wire`]). The data-structure id comes first
//! so the object layer's `Backend::compute` can prefix the server's id for its own `ds` (the
//! layout of the built-ins `count` and `sum_u64`).

use farmem_error::{Error, ErrorKind, Result};

use crate::message::{DsId, ObjectId};
use crate::wire::{BodyReader, BodyWriter};

/// The name the memory server registers the hash index under.
pub const HASH_INDEX_FUNCTION: &str = "hash_index";

/// Version byte of this encoding.
pub const HASH_CODEC_VERSION: u8 = 1;

/// The object holding a map's entry count.
pub const META_OBJECT: ObjectId = 0xFFFF_FFFF;

/// Set in every bucket id (and never in [`META_OBJECT`]).
pub const BUCKET_BIT: u64 = 1 << 63;

/// Largest key plus value, in bytes (a bucket must fit comfortably in a frame).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// A 64-bit hash of key bytes, the same on client and server (used for bucket ids and for the
/// client cache's shards). 8-byte words folded multiplicatively, then a splitmix64 finish so
/// every input bit reaches every output bit.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64 ^ (key.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .rotate_left(29)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w))
            .rotate_left(29)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The bucket object of `key`.
pub fn bucket_id(key: &[u8]) -> ObjectId {
    key_hash(key) | BUCKET_BIT
}

/// One hash-index operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOp<'a> {
    /// Look a key up.
    Get {
        /// The key.
        key: &'a [u8],
    },
    /// Insert or replace.
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Remove a key.
    Remove {
        /// The key.
        key: &'a [u8],
    },
    /// Count the entries.
    Len,
    /// Look many keys up in one round trip (the client coalesces concurrent misses).
    GetMany {
        /// The keys.
        keys: Vec<&'a [u8]>,
    },
    /// Drop every entry and free their bytes (the map is gone).
    Clear,
}

/// A decoded call: the server's data-structure id and the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashCall<'a> {
    /// The map's data structure on the server.
    pub ds: DsId,
    /// What to do.
    pub op: HashOp<'a>,
}

fn check_entry(key: &[u8], value: &[u8]) -> Result<()> {
    if key.len() + value.len() > MAX_ENTRY_BYTES {
        return Err(Error::invalid(format!(
            "hash-index entry of {} key bytes and {} value bytes exceeds {MAX_ENTRY_BYTES} bytes: \
             store large values in a RemVec and keep their index in the map",
            key.len(),
            value.len()
        )));
    }
    Ok(())
}

impl<'a> HashOp<'a> {
    /// The operand bytes *without* the leading data-structure id (what
    /// `Backend::compute` takes: it prefixes the id itself). Fails for an oversized entry.
    pub fn encode_body(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16);
        let w = &mut BodyWriter::new(&mut out);
        w.u8(HASH_CODEC_VERSION);
        match self {
            HashOp::Get { key } => {
                check_entry(key, &[])?;
                w.u8(1).bytes(key);
            }
            HashOp::Put { key, value } => {
                check_entry(key, value)?;
                w.u8(2).bytes(key).bytes(value);
            }
            HashOp::Remove { key } => {
                check_entry(key, &[])?;
                w.u8(3).bytes(key);
            }
            HashOp::Len => {
                w.u8(4);
            }
            HashOp::GetMany { keys } => {
                w.u8(5).u32(keys.len() as u32);
                for key in keys {
                    check_entry(key, &[])?;
                    w.bytes(key);
                }
            }
            HashOp::Clear => {
                w.u8(6);
            }
        }
        Ok(out)
    }
}

impl<'a> HashCall<'a> {
    /// The full argument bytes (data-structure id first), for callers of `Client::compute`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = self.ds.to_le_bytes().to_vec();
        out.extend_from_slice(&self.op.encode_body()?);
        Ok(out)
    }

    /// Decodes argument bytes; malformed input is an error, never a guess.
    pub fn decode(args: &'a [u8]) -> Result<HashCall<'a>> {
        let mut reader = BodyReader::new(args, "hash-index call");
        let r = &mut reader;
        let ds = r.u64("ds")?;
        let v = r.u8("version")?;
        if v != HASH_CODEC_VERSION {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "hash-index call: codec version {v}, this side speaks {HASH_CODEC_VERSION}: \
                     upgrade the older side"
                ),
            ));
        }
        let op = match r.u8("op")? {
            1 => HashOp::Get { key: r.bytes("key")? },
            2 => HashOp::Put {
                key: r.bytes("key")?,
                value: r.bytes("value")?,
            },
            3 => HashOp::Remove { key: r.bytes("key")? },
            4 => HashOp::Len,
            5 => {
                let n = r.count("keys", 4)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(r.bytes("key")?);
                }
                HashOp::GetMany { keys }
            }
            6 => HashOp::Clear,
            other => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("hash-index call: unknown op {other} (known: 1 get, 2 put, 3 remove, 4 len, 5 get-many, 6 clear)"),
                ))
            }
        };
        reader.finish()?;
        if let HashOp::Put { key, value } = &op {
            check_entry(key, value)?;
        }
        Ok(HashCall { ds, op })
    }
}

/// Decodes a `get` result: `None` when the key is absent.
pub fn decode_get(result: &[u8]) -> Result<Option<&[u8]>> {
    match result.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, value)) => Ok(Some(value)),
        _ => Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "hash-index get result of {} bytes is malformed",
                result.len()
            ),
        )),
    }
}

/// Encodes one answer of a `get-many` result (after the count).
pub fn push_many_answer(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            BodyWriter::new(out).bytes(v);
        }
    }
}

/// Decodes a `get-many` result for `expected` keys.
pub fn decode_get_many(result: &[u8], expected: usize) -> Result<Vec<Option<&[u8]>>> {
    let mut r = BodyReader::new(result, "hash-index get-many result");
    let n = r.u32("count")? as usize;
    if n != expected {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("hash-index get-many answered {n} keys, {expected} were asked"),
        ));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(match r.u8("present")? {
            0 => None,
            1 => Some(r.bytes("value")?),
            f => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("hash-index get-many: presence flag {f} is neither 0 nor 1"),
                ))
            }
        });
    }
    r.finish()?;
    Ok(out)
}

/// Decodes a `put` or `remove` result (one flag byte).
pub fn decode_flag(result: &[u8]) -> Result<bool> {
    match result {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "hash-index flag result of {} bytes is malformed",
                result.len()
            ),
        )),
    }
}

/// Decodes a `len` result.
pub fn decode_len(result: &[u8]) -> Result<u64> {
    let raw: [u8; 8] = result.try_into().map_err(|_| {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "hash-index len result has {} bytes, expected 8",
                result.len()
            ),
        )
    })?;
    Ok(u64::from_le_bytes(raw))
}

/// Iterates the `(key, value)` entries of a bucket object; a malformed bucket is an error.
pub fn bucket_entries(bucket: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8])>> {
    let mut rest = bucket;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let mut r = BodyReader::new(rest, "hash-index bucket");
            let klen = r.u32("key_len")? as usize;
            let vlen = r.u32("value_len")? as usize;
            let body = &rest[8..];
            if body.len() < klen + vlen {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "hash-index bucket truncated: entry needs {} bytes, {} remain",
                        klen + vlen,
                        body.len()
                    ),
                ));
            }
            Ok((
                &body[..klen],
                &body[klen..klen + vlen],
                &body[klen + vlen..],
            ))
        })();
        match parsed {
            Ok((k, v, next)) => {
                rest = next;
                Some(Ok((k, v)))
            }
            Err(e) => {
                rest = &[];
                Some(Err(e))
            }
        }
    })
}

/// Appends one entry to a bucket under construction.
pub fn push_entry(bucket: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    bucket.extend_from_slice(&(key.len() as u32).to_le_bytes());
    bucket.extend_from_slice(&(value.len() as u32).to_le_bytes());
    bucket.extend_from_slice(key);
    bucket.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_and_reject_garbage() {
        let calls = [
            HashOp::Get { key: b"k" },
            HashOp::Put {
                key: b"key",
                value: b"value",
            },
            HashOp::Remove { key: b"" },
            HashOp::Len,
            HashOp::GetMany {
                keys: vec![b"a", b"", b"ccc"],
            },
            HashOp::Clear,
        ];
        for op in calls {
            let call = HashCall { ds: 77, op };
            let bytes = call.encode().unwrap();
            assert_eq!(HashCall::decode(&bytes).unwrap(), call);
            assert!(HashCall::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                HashCall::decode(&longer).unwrap_err().kind(),
                ErrorKind::Protocol
            );
        }
        let mut bad = HashCall {
            ds: 1,
            op: HashOp::Len,
        }
        .encode()
        .unwrap();
        bad[8] = 9;
        assert_eq!(
            HashCall::decode(&bad).unwrap_err().kind(),
            ErrorKind::Protocol
        );
        bad[8] = HASH_CODEC_VERSION;
        bad[9] = 42;
        assert!(HashCall::decode(&bad)
            .unwrap_err()
            .context()
            .contains("op 42"));
        let huge = vec![0u8; MAX_ENTRY_BYTES + 1];
        assert_eq!(
            HashOp::Get { key: &huge }.encode_body().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn buckets_round_trip_and_hashes_spread() {
        let mut b = Vec::new();
        push_entry(&mut b, b"a", b"1");
        push_entry(&mut b, b"", b"");
        push_entry(&mut b, b"long key", &[7; 300]);
        let got: Vec<_> = bucket_entries(&b).collect::<Result<_>>().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (&b"a"[..], &b"1"[..]));
        assert_eq!(got[2].1.len(), 300);
        assert!(bucket_entries(&b[..b.len() - 1]).any(|e| e.is_err()));
        assert_eq!(decode_get(&[0]).unwrap(), None);
        assert_eq!(decode_get(&[1, 5]).unwrap(), Some(&[5u8][..]));
        assert!(decode_get(&[0, 1]).is_err());
        assert!(decode_flag(&[2]).is_err());
        assert_eq!(decode_len(&5u64.to_le_bytes()).unwrap(), 5);
        let mut many = 3u32.to_le_bytes().to_vec();
        push_many_answer(&mut many, Some(b"v"));
        push_many_answer(&mut many, None);
        push_many_answer(&mut many, Some(b""));
        let got = decode_get_many(&many, 3).unwrap();
        assert_eq!(got, vec![Some(&b"v"[..]), None, Some(&b""[..])]);
        assert!(decode_get_many(&many, 2).is_err());
        assert!(decode_get_many(&many[..many.len() - 1], 3).is_err());
        // Small integer keys differ in every byte of the hash's top bits often enough to shard.
        let tops: std::collections::HashSet<u64> = (0u64..1000)
            .map(|k| key_hash(&k.to_le_bytes()) >> 56)
            .collect();
        assert!(tops.len() > 200, "{}", tops.len());
        assert_ne!(bucket_id(b"x") & BUCKET_BIT, 0);
        assert_eq!(META_OBJECT & BUCKET_BIT, 0);
    }
}
