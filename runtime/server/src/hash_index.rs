//! The server half of `RemHashMap`: the `hash_index` remote function, which keeps a far-memory
//! hash map's authoritative index next to the data (AIFM's remote agent, OSDI'20 §4.4: a
//! client's local miss costs one round trip in which the server searches its own index).
//!
//! Layout and call encoding are in [`farmem_net::hash`]: entries live in bucket objects named by
//! the key's 64-bit hash inside the map's data structure, the count in one meta object. The
//! store's per-structure `HashMap` is the index and grows by itself; every byte is charged to
//! the store's capacity like any object, so a full server answers a `put` with
//! [`ErrorKind::OutOfFarMemory`](farmem_error::ErrorKind::OutOfFarMemory) and changes nothing.
//!
//! # Concurrency
//!
//! `get` and `len` take only the store's read lock. A `put` or `remove` is a read-modify-write
//! of a bucket and the count, so mutations of one map are serialized by a striped mutex (stripe
//! = data-structure id), held across the read and the one all-or-nothing batch write of
//! (bucket, count). Readers never wait for it. Maps on different stripes mutate in parallel.
//!
//! A `remove` that empties a bucket leaves a zero-length bucket object (charged the store's
//! per-object overhead) because a remote function may write objects but not delete single ones;
//! a later `put` of a key with that hash reuses it. `clear` (sent when a client drops its map)
//! empties the whole structure through [`StoreView::clear`], under the stripe lock, so no
//! `put` of the map interleaves with it.

use std::sync::{Mutex, MutexGuard};

use farmem_error::{Error, Result};
use farmem_net::hash::{
    bucket_entries, bucket_id, push_entry, push_many_answer, HashCall, HashOp, META_OBJECT,
};
use farmem_net::DsId;

use crate::agent::RemoteFunction;
use crate::store::StoreView;

const STRIPES: usize = 64;

/// The `hash_index` remote function (registered by
/// [`FunctionRegistry::with_builtins`](crate::FunctionRegistry::with_builtins)).
pub struct HashIndex {
    stripes: Box<[Mutex<()>]>,
}

impl Default for HashIndex {
    fn default() -> HashIndex {
        HashIndex::new()
    }
}

impl HashIndex {
    /// A hash index with its mutation locks.
    pub fn new() -> HashIndex {
        HashIndex {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn lock(&self, ds: DsId) -> MutexGuard<'_, ()> {
        let i = (ds.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % STRIPES;
        // The guarded data is `()`: a poisoned stripe holds nothing inconsistent.
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn count(store: &StoreView<'_>, ds: DsId) -> Result<u64> {
    store.with_object(ds, META_OBJECT, |m| match m {
        None => Ok(0),
        Some(raw) => raw.try_into().map(u64::from_le_bytes).map_err(|_| {
            Error::internal(format!(
                "hash index of data structure {ds}: meta object has {} bytes, expected 8",
                raw.len()
            ))
        }),
    })?
}

/// `key`'s value in `bucket` (`None` if absent); a malformed bucket is a `Protocol` error.
fn find_entry<'b>(bucket: &'b [u8], key: &[u8]) -> Result<Option<&'b [u8]>> {
    for entry in bucket_entries(bucket) {
        let (k, v) = entry?;
        if k == key {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Calls `f` with `key`'s value (`None` if absent).
fn lookup<R>(
    store: &StoreView<'_>,
    ds: DsId,
    key: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> R,
) -> Result<R> {
    store.with_object(ds, bucket_id(key), |b| {
        Ok(f(find_entry(b.unwrap_or(&[]), key)?))
    })?
}

fn get(store: &StoreView<'_>, ds: DsId, key: &[u8]) -> Result<Vec<u8>> {
    lookup(store, ds, key, |v| match v {
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
        None => vec![0],
    })
}

/// The answers to `keys` in order: every bucket is found under one read lock of the structure,
/// with the lookups' memory latencies overlapped ([`StoreView::with_objects`]).
fn get_many(store: &StoreView<'_>, ds: DsId, keys: &[&[u8]]) -> Result<Vec<u8>> {
    let ids: Vec<_> = keys.iter().map(|k| bucket_id(k)).collect();
    let mut out = (keys.len() as u32).to_le_bytes().to_vec();
    let mut keys = keys.iter();
    let mut failed = None;
    store.with_objects(ds, &ids, |bucket| {
        let Some(key) = keys.next() else { return };
        if failed.is_some() {
            return;
        }
        match find_entry(bucket.unwrap_or(&[]), key) {
            Ok(v) => push_many_answer(&mut out, v),
            Err(e) => failed = Some(e),
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Rebuilds `key`'s bucket without `key` (and with `value` if given); returns the new bucket and
/// whether the key was there.
fn rebuild(
    store: &StoreView<'_>,
    ds: DsId,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(Vec<u8>, bool)> {
    store.with_object(ds, bucket_id(key), |b| {
        let old = b.unwrap_or(&[]);
        let mut out = Vec::with_capacity(old.len() + 8 + key.len() + value.map_or(0, <[u8]>::len));
        let mut found = false;
        for entry in bucket_entries(old) {
            let (k, v) = entry?;
            if k == key {
                found = true;
            } else {
                push_entry(&mut out, k, v);
            }
        }
        if let Some(v) = value {
            push_entry(&mut out, key, v);
        }
        Ok((out, found))
    })?
}

impl RemoteFunction for HashIndex {
    fn call(&self, store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
        let call = HashCall::decode(args)?;
        let ds = call.ds;
        match call.op {
            HashOp::Get { key } => get(store, ds, key),
            HashOp::GetMany { keys } => get_many(store, ds, &keys),
            HashOp::Len => Ok(count(store, ds)?.to_le_bytes().to_vec()),
            HashOp::Put { key, value } => {
                let _stripe = self.lock(ds);
                let (bucket, found) = rebuild(store, ds, key, Some(value))?;
                if found {
                    store.write_objects(ds, &[(bucket_id(key), &bucket)])?;
                } else {
                    let n = (count(store, ds)? + 1).to_le_bytes();
                    store.write_objects(ds, &[(bucket_id(key), &bucket), (META_OBJECT, &n)])?;
                }
                Ok(vec![u8::from(!found)])
            }
            HashOp::Clear => {
                let _stripe = self.lock(ds);
                let n = count(store, ds)?;
                store.clear(ds)?;
                Ok(n.to_le_bytes().to_vec())
            }
            HashOp::Remove { key } => {
                let _stripe = self.lock(ds);
                let (bucket, found) = rebuild(store, ds, key, None)?;
                if found {
                    let n = count(store, ds)?.saturating_sub(1).to_le_bytes();
                    store.write_objects(ds, &[(bucket_id(key), &bucket), (META_OBJECT, &n)])?;
                }
                Ok(vec![u8::from(found)])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use farmem_error::ErrorKind;
    use farmem_net::hash::{decode_flag, decode_get, decode_get_many, decode_len};

    fn call(h: &HashIndex, s: &Store, op: HashOp<'_>) -> Result<Vec<u8>> {
        let args = HashCall { ds: 5, op }.encode()?;
        h.call(&StoreView::new(s), &args)
    }

    #[test]
    fn put_get_remove_len_and_full_store() {
        let s = Store::new(4096);
        s.create_ds(5, 0).unwrap();
        let h = HashIndex::new();
        let put = |k: &[u8], v: &[u8]| call(&h, &s, HashOp::Put { key: k, value: v });
        assert!(decode_flag(&put(b"a", b"1").unwrap()).unwrap());
        assert!(!decode_flag(&put(b"a", b"2").unwrap()).unwrap());
        assert!(decode_flag(&put(b"b", b"3").unwrap()).unwrap());
        let g = call(&h, &s, HashOp::Get { key: b"a" }).unwrap();
        assert_eq!(decode_get(&g).unwrap(), Some(&b"2"[..]));
        let g = call(&h, &s, HashOp::Get { key: b"zz" }).unwrap();
        assert_eq!(decode_get(&g).unwrap(), None);
        let keys: Vec<&[u8]> = vec![b"b", b"zz", b"a"];
        let g = call(&h, &s, HashOp::GetMany { keys }).unwrap();
        assert_eq!(
            decode_get_many(&g, 3).unwrap(),
            vec![Some(&b"3"[..]), None, Some(&b"2"[..])]
        );
        assert_eq!(decode_len(&call(&h, &s, HashOp::Len).unwrap()).unwrap(), 2);
        assert!(decode_flag(&call(&h, &s, HashOp::Remove { key: b"a" }).unwrap()).unwrap());
        assert!(!decode_flag(&call(&h, &s, HashOp::Remove { key: b"a" }).unwrap()).unwrap());
        assert_eq!(decode_len(&call(&h, &s, HashOp::Len).unwrap()).unwrap(), 1);
        // Full server: an error of the right kind, nothing changed.
        let used = s.used();
        let e = put(b"big", &[0; 5000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
        assert_eq!(s.used(), used);
        assert_eq!(decode_len(&call(&h, &s, HashOp::Len).unwrap()).unwrap(), 1);
        // Clear drops the entries, the count and every byte they held.
        assert_eq!(
            decode_len(&call(&h, &s, HashOp::Clear).unwrap()).unwrap(),
            1
        );
        assert_eq!((s.used(), s.object_count()), (0, 0));
        assert_eq!(decode_len(&call(&h, &s, HashOp::Len).unwrap()).unwrap(), 0);
        let g = call(&h, &s, HashOp::Get { key: b"b" }).unwrap();
        assert_eq!(decode_get(&g).unwrap(), None);
        assert!(decode_flag(&put(b"b", b"4").unwrap()).unwrap());
        // Missing data structure and garbage arguments.
        let args = HashCall {
            ds: 6,
            op: HashOp::Len,
        }
        .encode()
        .unwrap();
        assert_eq!(
            h.call(&StoreView::new(&s), &args).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            h.call(&StoreView::new(&s), b"junk").unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }

    #[test]
    fn colliding_keys_share_a_bucket() {
        // Force a collision by writing a bucket that already holds another key with this hash.
        let s = Store::new(1 << 20);
        s.create_ds(5, 0).unwrap();
        let mut b = Vec::new();
        push_entry(&mut b, b"other", b"x");
        s.write(5, bucket_id(b"k"), &b).unwrap();
        s.write(5, META_OBJECT, &1u64.to_le_bytes()).unwrap();
        let h = HashIndex::new();
        call(
            &h,
            &s,
            HashOp::Put {
                key: b"k",
                value: b"v",
            },
        )
        .unwrap();
        assert_eq!(decode_len(&call(&h, &s, HashOp::Len).unwrap()).unwrap(), 2);
        let g = call(&h, &s, HashOp::Get { key: b"k" }).unwrap();
        assert_eq!(decode_get(&g).unwrap(), Some(&b"v"[..]));
        call(&h, &s, HashOp::Remove { key: b"k" }).unwrap();
        let left = s
            .with_object(5, bucket_id(b"k"), |b| b.map(<[u8]>::to_vec))
            .unwrap();
        let mut expect = Vec::new();
        push_entry(&mut expect, b"other", b"x");
        assert_eq!(left, Some(expect));
    }

    /// A get-many of many keys (longer than the store's batch pipeline) answers each key as a
    /// get does, present or not, and a malformed bucket anywhere in it fails the whole call.
    #[test]
    fn get_many_matches_get_and_fails_on_a_malformed_bucket() {
        let s = Store::new(1 << 20);
        s.create_ds(5, 0).unwrap();
        let h = HashIndex::new();
        for k in (0u32..60).step_by(2) {
            let (key, value) = (k.to_le_bytes(), [k as u8; 3]);
            call(
                &h,
                &s,
                HashOp::Put {
                    key: &key,
                    value: &value,
                },
            )
            .unwrap();
        }
        let keys: Vec<[u8; 4]> = (0u32..60).rev().map(u32::to_le_bytes).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let many = call(&h, &s, HashOp::GetMany { keys: refs.clone() }).unwrap();
        let many = decode_get_many(&many, refs.len()).unwrap();
        for (k, got) in refs.iter().zip(many) {
            let one = call(&h, &s, HashOp::Get { key: k }).unwrap();
            assert_eq!(got, decode_get(&one).unwrap(), "key {k:?}");
        }
        // A bucket whose entry claims more bytes than it has.
        s.write(5, bucket_id(b"bad"), &[9, 0, 0, 0, 9, 0, 0, 0, 1])
            .unwrap();
        let keys: Vec<&[u8]> = vec![b"a", b"bad", b"b"];
        let e = call(&h, &s, HashOp::GetMany { keys }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    }
}
