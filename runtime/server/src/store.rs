//! The object store: objects keyed by (data-structure id, object id), with capacity enforced.
//!
//! ```text
//! Store
//!  ├─ used: AtomicU64            bytes charged, never above capacity
//!  └─ structures: RwLock<HashMap<DsId, Arc<DataStructure>>>
//!        DataStructure { kind, inner: RwLock<DsInner { destroyed, objects: ObjectTable }> }
//!                                                   ObjectTable: ObjectId -> Arc<[u8]>,
//!                                                   open addressing (object_table.rs)
//! ```
//!
//! An object's bytes never change once stored: a write replaces the object's `Arc`. So a reader
//! may take shared handles under the read lock ([`Store::shared_objects`]) and send the bytes
//! after releasing it, straight from the store to the socket, with no copy and without holding
//! the lock while the socket blocks.
//!
//! Accounting: an object is charged `len + OBJECT_OVERHEAD_BYTES` (the overhead approximates
//! the map entry and the vector header, so a flood of empty objects also fills the server).
//! Invariant: `used` equals the sum of the charges of every object in every live data structure.
//! A write *reserves* its growth with a compare-and-swap on `used` that never passes `capacity`
//! (full → [`ErrorKind::OutOfFarMemory`], nothing changed), under the data structure's write
//! lock, then inserts; shrinking releases after the insert. Destroy takes the same write lock,
//! marks the structure destroyed and releases its charge, so a writer that raced with it (it
//! holds an `Arc` fetched before the destroy) sees `destroyed` and fails before reserving.
//!
//! Locks: the outer map lock is held only to find, create or remove a structure; each structure
//! has its own `RwLock`, so readers of one structure never wait for writers of another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::copy::prefetch;
use farmem_net::{DsId, ObjectId};

use crate::object_table::ObjectTable;

/// Bytes charged per object on top of its contents.
pub const OBJECT_OVERHEAD_BYTES: u64 = 32;

fn charge(len: usize) -> u64 {
    len as u64 + OBJECT_OVERHEAD_BYTES
}

// Every critical section leaves the maps consistent at each step (inserts and removes are
// single calls), so a poisoned lock's data is still valid: recover it instead of panicking.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Ids a batch read prefetches the table slot of before it looks them up.
const SLOT_AHEAD: usize = 8;
/// Objects a batch read has found and prefetched the bytes of before it calls back for them.
const BYTES_AHEAD: usize = 4;

struct DataStructure {
    kind: u16,
    inner: RwLock<DsInner>,
}

struct DsInner {
    destroyed: bool,
    objects: ObjectTable,
}

/// The server's objects. Shared by every connection thread.
pub struct Store {
    capacity: u64,
    used: AtomicU64,
    objects: AtomicU64,
    structures: RwLock<HashMap<DsId, Arc<DataStructure>>>,
}

impl Store {
    /// An empty store of `capacity` bytes.
    pub fn new(capacity: u64) -> Store {
        Store {
            capacity,
            used: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            structures: RwLock::new(HashMap::new()),
        }
    }

    /// Configured capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Live objects over all data structures.
    pub fn object_count(&self) -> u64 {
        self.objects.load(Ordering::Relaxed)
    }

    /// Live data structures.
    pub fn ds_count(&self) -> u64 {
        read(&self.structures).len() as u64
    }

    fn ds(&self, ds: DsId) -> Result<Arc<DataStructure>> {
        read(&self.structures).get(&ds).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("data structure {ds} does not exist on this server: create it first"),
            )
        })
    }

    fn reserve(&self, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|n| *n <= self.capacity)
            })
            .map(|_| ())
            .map_err(|used| {
                Error::new(
                    ErrorKind::OutOfFarMemory,
                    format!(
                        "memory server is full: {} needs {bytes} more bytes but {used} of {} are \
                         in use; remove objects or restart the server with a larger --capacity",
                        what(),
                        self.capacity
                    ),
                )
            })
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Creates data structure `ds` of `kind`; creating it again with the same kind is a no-op,
    /// with another kind an [`ErrorKind::InvalidArgument`] error.
    pub fn create_ds(&self, ds: DsId, kind: u16) -> Result<()> {
        let mut map = write(&self.structures);
        if let Some(existing) = map.get(&ds) {
            if existing.kind == kind {
                return Ok(());
            }
            return Err(Error::invalid(format!(
                "data structure {ds} already exists with kind {} (asked for kind {kind}): \
                 destroy it first or pick another id",
                existing.kind
            )));
        }
        map.insert(
            ds,
            Arc::new(DataStructure {
                kind,
                inner: RwLock::new(DsInner {
                    destroyed: false,
                    objects: ObjectTable::default(),
                }),
            }),
        );
        Ok(())
    }

    /// Removes every object of `ds` (the structure stays, empty) and frees their bytes; returns
    /// how many there were.
    pub fn clear_ds(&self, ds: DsId) -> Result<u64> {
        let structure = self.ds(ds)?;
        let mut inner = write(&structure.inner);
        Ok(self.free_objects(&mut inner))
    }

    /// Drops every object of a structure (its write lock held) and frees their bytes; returns
    /// how many there were.
    fn free_objects(&self, inner: &mut DsInner) -> u64 {
        let bytes: u64 = inner.objects.iter().map(|(_, v)| charge(v.len())).sum();
        let count = inner.objects.len() as u64;
        inner.objects = ObjectTable::default();
        self.release(bytes);
        self.objects.fetch_sub(count, Ordering::Relaxed);
        count
    }

    /// Destroys data structure `ds` and frees its objects.
    pub fn destroy_ds(&self, ds: DsId) -> Result<()> {
        let removed = write(&self.structures).remove(&ds);
        let Some(structure) = removed else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("cannot destroy data structure {ds}: it does not exist"),
            ));
        };
        let mut inner = write(&structure.inner);
        inner.destroyed = true;
        self.free_objects(&mut inner);
        Ok(())
    }

    /// The kind of data structure `ds`.
    pub fn ds_kind(&self, ds: DsId) -> Result<u16> {
        Ok(self.ds(ds)?.kind)
    }

    /// Calls `f` with object `object` of `ds` (`None` if absent) under the structure's read
    /// lock, so the bytes are encoded without a copy.
    pub fn with_object<R>(
        &self,
        ds: DsId,
        object: ObjectId,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        let structure = self.ds(ds)?;
        let inner = read(&structure.inner);
        Ok(f(inner.objects.get(&object).map(|v| &v[..])))
    }

    /// Calls `f` with each of `objects` of `ds` in order (`None` for absent ones), under one
    /// read lock, so a batch sees one consistent state; [`ErrorKind::NotFound`] if `ds` does
    /// not exist, even for an empty batch. The batch is software-pipelined so its cache misses
    /// overlap instead of costing one memory latency after another: the table slot of the id 8
    /// places ahead is prefetched, the id 4 places ahead is looked up and its bytes prefetched,
    /// and then `f` gets the current one.
    pub fn with_objects(
        &self,
        ds: DsId,
        objects: &[ObjectId],
        mut f: impl FnMut(Option<&[u8]>),
    ) -> Result<()> {
        let structure = self.ds(ds)?;
        let inner = read(&structure.inner);
        let table = &inner.objects;
        let mut found: std::collections::VecDeque<Option<&[u8]>> =
            std::collections::VecDeque::with_capacity(BYTES_AHEAD + 1);
        let n = objects.len();
        for i in 0..n + SLOT_AHEAD {
            if let Some(&id) = objects.get(i) {
                table.prefetch(id);
            }
            let Some(look) = i.checked_sub(SLOT_AHEAD - BYTES_AHEAD) else {
                continue;
            };
            if let Some(id) = objects.get(look) {
                let bytes = table.get(id).map(|v| &v[..]);
                if let Some(b) = bytes {
                    prefetch(b.as_ptr());
                }
                found.push_back(bytes);
            }
            // The id SLOT_AHEAD places back: looked up BYTES_AHEAD iterations ago.
            if look >= BYTES_AHEAD {
                if let Some(bytes) = found.pop_front() {
                    f(bytes);
                }
            }
        }
        debug_assert!(found.is_empty(), "every id was called back");
        Ok(())
    }

    /// Shared handles of `objects` of `ds` in order (`None` for absent ones), taken under one
    /// read lock so a batch sees one consistent state; the bytes are not copied and stay valid
    /// after the lock is gone (a later write replaces the handle, never the bytes).
    /// [`ErrorKind::NotFound`] if `ds` does not exist, even for an empty batch.
    pub fn shared_objects(&self, ds: DsId, objects: &[ObjectId]) -> Result<Vec<Option<Arc<[u8]>>>> {
        let structure = self.ds(ds)?;
        let inner = read(&structure.inner);
        Ok(objects
            .iter()
            .map(|o| inner.objects.get(o).cloned())
            .collect())
    }

    /// Calls `f` for every object of `ds` under the structure's read lock (`f` must not call
    /// back into the store for the same structure's writes).
    pub fn for_each_object(&self, ds: DsId, mut f: impl FnMut(ObjectId, &[u8])) -> Result<()> {
        let structure = self.ds(ds)?;
        let inner = read(&structure.inner);
        for (id, data) in inner.objects.iter() {
            f(id, data);
        }
        Ok(())
    }

    /// Number of objects in `ds`.
    pub fn len(&self, ds: DsId) -> Result<u64> {
        let structure = self.ds(ds)?;
        let n = read(&structure.inner).objects.len() as u64;
        Ok(n)
    }

    /// Whether `ds` holds no objects.
    pub fn is_empty(&self, ds: DsId) -> Result<bool> {
        Ok(self.len(ds)? == 0)
    }

    /// Inserts or replaces object `object` of `ds`.
    pub fn write(&self, ds: DsId, object: ObjectId, data: &[u8]) -> Result<()> {
        self.write_batch(ds, &[(object, data)])
    }

    /// Writes every `(object, data)` pair of `ds` in order, all or nothing: the net growth is
    /// reserved up front, so a full server changes nothing.
    pub fn write_batch(&self, ds: DsId, objects: &[(ObjectId, &[u8])]) -> Result<()> {
        let what = || {
            if objects.len() == 1 {
                format!(
                    "writing object {} ({} bytes) of data structure {ds}",
                    objects[0].0,
                    objects[0].1.len()
                )
            } else {
                format!(
                    "a batch write of {} objects to data structure {ds}",
                    objects.len()
                )
            }
        };
        self.put_all(
            ds,
            objects.iter().map(|(id, data)| (*id, data.len())),
            |i| Arc::from(objects[i].1),
            what,
        )
    }

    /// Creates (or overwrites) objects `first .. first + count` of `ds`, each `len` zero bytes,
    /// all or nothing like [`Store::write_batch`], charged like any object of that size; they
    /// share one zeroed buffer until each is written (objects are replaced, never changed in
    /// place), so the server's own memory does not grow with them. A run that cannot fit the
    /// capacity is refused before anything is built.
    pub fn create_zeroed(&self, ds: DsId, first: ObjectId, count: u32, len: u32) -> Result<()> {
        if first.checked_add(u64::from(count)).is_none() {
            return Err(Error::invalid(format!(
                "creating {count} objects from object {first} of data structure {ds}: the ids \
                 overflow"
            )));
        }
        let what =
            || format!("creating {count} zeroed objects of {len} bytes in data structure {ds}");
        let need = u128::from(count) * u128::from(charge(len as usize));
        if need > u128::from(self.capacity) {
            return Err(Error::new(
                ErrorKind::OutOfFarMemory,
                format!(
                    "memory server is full: {} needs {need} bytes, more than its whole capacity \
                     of {} bytes; restart the server with a larger --capacity",
                    what(),
                    self.capacity
                ),
            ));
        }
        let zeros: Arc<[u8]> = Arc::from(vec![0u8; len as usize]);
        self.put_all(
            ds,
            (0..count).map(|i| (first + u64::from(i), len as usize)),
            |_| Arc::clone(&zeros),
            what,
        )
    }

    /// Inserts or replaces the objects `ids` (id, length) of `ds` in order, the `i`-th with
    /// `value(i)`, all or nothing: the net growth is reserved up front.
    fn put_all(
        &self,
        ds: DsId,
        ids: impl ExactSizeIterator<Item = (ObjectId, usize)> + Clone,
        value: impl Fn(usize) -> Arc<[u8]>,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let structure = self.ds(ds)?;
        let mut inner = write(&structure.inner);
        if inner.destroyed {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("data structure {ds} was destroyed while the write was in progress"),
            ));
        }
        // Net charge change, counting each id's final size once (a batch may repeat an id).
        let mut final_len: HashMap<ObjectId, usize> = HashMap::with_capacity(ids.len());
        for (id, len) in ids.clone() {
            final_len.insert(id, len);
        }
        let mut grow = 0u64;
        let mut shrink = 0u64;
        let mut added = 0u64;
        for (id, len) in &final_len {
            let new = charge(*len);
            match inner.objects.get(id) {
                Some(old) => {
                    let old = charge(old.len());
                    grow += new.saturating_sub(old);
                    shrink += old.saturating_sub(new);
                }
                None => {
                    grow += new;
                    added += 1;
                }
            }
        }
        let net_grow = grow.saturating_sub(shrink);
        self.reserve(net_grow, what)?;
        for (i, (id, _)) in ids.enumerate() {
            // Replaced, never changed in place: a reader may still be sending the old bytes.
            inner.objects.insert(id, value(i));
        }
        self.release(shrink.saturating_sub(grow));
        self.objects.fetch_add(added, Ordering::Relaxed);
        Ok(())
    }

    /// Removes object `object` of `ds`; returns whether it existed.
    pub fn remove(&self, ds: DsId, object: ObjectId) -> Result<bool> {
        let structure = self.ds(ds)?;
        let mut inner = write(&structure.inner);
        match inner.objects.remove(&object) {
            Some(v) => {
                self.release(charge(v.len()));
                self.objects.fetch_sub(1, Ordering::Relaxed);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// What a remote function may see of the store: read access to objects, plus
/// [`StoreView::write_objects`] into data structures that already exist and
/// [`StoreView::clear`] of one.
pub struct StoreView<'a> {
    store: &'a Store,
}

impl<'a> StoreView<'a> {
    /// A read-only view of `store`.
    pub fn new(store: &'a Store) -> StoreView<'a> {
        StoreView { store }
    }

    /// Calls `f` with object `object` of `ds` (`None` if absent); [`ErrorKind::NotFound`] if
    /// the data structure does not exist.
    pub fn with_object<R>(
        &self,
        ds: DsId,
        object: ObjectId,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        self.store.with_object(ds, object, f)
    }

    /// Calls `f` with each of `objects` of `ds` in order (`None` for absent ones), all under
    /// one read lock, with the lookups' cache misses overlapped ([`Store::with_objects`]).
    pub fn with_objects(
        &self,
        ds: DsId,
        objects: &[ObjectId],
        f: impl FnMut(Option<&[u8]>),
    ) -> Result<()> {
        self.store.with_objects(ds, objects, f)
    }

    /// Calls `f` for every object of `ds` (in no particular order).
    pub fn for_each_object(&self, ds: DsId, f: impl FnMut(ObjectId, &[u8])) -> Result<()> {
        self.store.for_each_object(ds, f)
    }

    /// Number of objects in `ds`.
    pub fn len(&self, ds: DsId) -> Result<u64> {
        self.store.len(ds)
    }

    /// Whether `ds` holds no objects.
    pub fn is_empty(&self, ds: DsId) -> Result<bool> {
        self.store.is_empty(ds)
    }

    /// The kind code `ds` was created with.
    pub fn kind(&self, ds: DsId) -> Result<u16> {
        self.store.ds_kind(ds)
    }

    /// Writes `objects` into the existing data structure `ds`, all or nothing and charged
    /// against capacity exactly like a client's batch write (full → [`ErrorKind::OutOfFarMemory`],
    /// nothing changed).
    ///
    /// This is the one write a remote function may do: AIFM's offloaded column maps (OSDI'20
    /// §4.4) produce a new column next to the data instead of shipping it back and forth. It
    /// cannot create or destroy data structures. Never call it from inside a `with_object` /
    /// `for_each_object` callback on the same `ds`: that callback holds the structure's read
    /// lock and this waits for its write lock.
    pub fn write_objects(&self, ds: DsId, objects: &[(ObjectId, &[u8])]) -> Result<()> {
        self.store.write_batch(ds, objects)
    }

    /// Removes every object of the existing data structure `ds` and frees their bytes (the
    /// structure stays, empty); returns how many there were. For a function that owns a whole
    /// structure, such as the hash index dropping a map whose client is gone. The same lock rule
    /// as [`StoreView::write_objects`] applies.
    pub fn clear(&self, ds: DsId) -> Result<u64> {
        self.store.clear_ds(ds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipelined batch read calls back once per id, in order, with what a single read sees,
    /// for every batch length around the pipeline's depths (absent and repeated ids included).
    #[test]
    fn batch_reads_answer_every_id_in_order() {
        let s = Store::new(1 << 20);
        s.create_ds(1, 0).unwrap();
        for id in (0..200u64).step_by(3) {
            s.write(1, id, &id.to_le_bytes()).unwrap();
        }
        for n in 0..(SLOT_AHEAD + BYTES_AHEAD) * 3 {
            let ids: Vec<ObjectId> = (0..n as u64).map(|i| (i * 7) % 50).collect();
            let mut got = Vec::new();
            s.with_objects(1, &ids, |b| got.push(b.map(<[u8]>::to_vec)))
                .unwrap();
            let want: Vec<_> = ids
                .iter()
                .map(|&id| s.with_object(1, id, |b| b.map(<[u8]>::to_vec)).unwrap())
                .collect();
            assert_eq!(got, want, "batch of {n}");
        }
        assert_eq!(
            s.with_objects(9, &[], |_| ()).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn accounting_tracks_writes_replaces_removes_and_destroy() {
        let s = Store::new(10_000);
        s.create_ds(1, 7).unwrap();
        s.write(1, 1, &[0; 100]).unwrap();
        assert_eq!(s.used(), 100 + OBJECT_OVERHEAD_BYTES);
        s.write(1, 1, &[0; 40]).unwrap();
        assert_eq!(s.used(), 40 + OBJECT_OVERHEAD_BYTES);
        s.write_batch(1, &[(2, &[1; 10]), (2, &[1; 20]), (3, &[])])
            .unwrap();
        assert_eq!(s.used(), 40 + 20 + 3 * OBJECT_OVERHEAD_BYTES);
        assert_eq!(s.object_count(), 3);
        assert_eq!(
            s.with_object(1, 2, |d| d.map(<[u8]>::len)).unwrap(),
            Some(20)
        );
        assert!(s.remove(1, 2).unwrap());
        assert!(!s.remove(1, 2).unwrap());
        assert_eq!(s.used(), 40 + 2 * OBJECT_OVERHEAD_BYTES);
        s.destroy_ds(1).unwrap();
        assert_eq!((s.used(), s.object_count(), s.ds_count()), (0, 0, 0));
    }

    #[test]
    fn full_store_changes_nothing() {
        let s = Store::new(1000);
        s.create_ds(1, 0).unwrap();
        s.write(1, 1, &[5; 500]).unwrap();
        let before = s.used();
        let e = s
            .write_batch(1, &[(2, &[0; 300]), (3, &[0; 300])])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
        assert_eq!(s.used(), before);
        assert_eq!(s.len(1).unwrap(), 1);
        // Replacing with a smaller object always fits.
        s.write(1, 1, &[5; 10]).unwrap();
        s.write(1, 2, &[0; 300]).unwrap();
    }

    /// Zeroed objects read back as zeros, are charged like written ones, share one buffer
    /// until written, and a run that does not fit changes nothing.
    #[test]
    fn create_zeroed_charges_capacity_and_shares_its_zeros() {
        let s = Store::new(10_000);
        s.create_ds(1, 0).unwrap();
        s.write(1, 5, &[7; 16]).unwrap();
        s.create_zeroed(1, 4, 3, 100).unwrap();
        assert_eq!(s.used(), 3 * (100 + OBJECT_OVERHEAD_BYTES));
        assert_eq!(s.object_count(), 3, "object 5 was overwritten, not added");
        let shared = s.shared_objects(1, &[4, 5, 6, 7]).unwrap();
        for o in &shared[..3] {
            assert_eq!(o.as_deref(), Some(&[0u8; 100][..]));
        }
        assert!(shared[3].is_none());
        let (a, b) = (shared[0].as_ref().unwrap(), shared[2].as_ref().unwrap());
        assert!(Arc::ptr_eq(a, b), "the zeros are one buffer");
        s.write(1, 4, &[1; 100]).unwrap();
        assert_eq!(s.with_object(1, 6, |d| d.map(|d| d[0])).unwrap(), Some(0));

        let before = (s.used(), s.object_count());
        let e = s.create_zeroed(1, 100, 100, 100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
        let e = s.create_zeroed(1, 100, u32::MAX, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
        assert!(e.context().contains("capacity"), "{e}");
        assert_eq!(
            (s.used(), s.object_count()),
            before,
            "a refused run changes nothing"
        );
        let e = s.create_zeroed(1, u64::MAX, 2, 8).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(
            s.create_zeroed(9, 0, 1, 8).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        s.create_zeroed(1, 50, 0, 8).unwrap();
        assert_eq!(
            (s.used(), s.object_count()),
            before,
            "an empty run is a no-op"
        );
    }

    #[test]
    fn create_is_idempotent_per_kind_and_missing_ds_is_not_found() {
        let s = Store::new(1000);
        s.create_ds(4, 2).unwrap();
        s.create_ds(4, 2).unwrap();
        assert_eq!(
            s.create_ds(4, 3).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(s.write(5, 1, b"x").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(s.destroy_ds(5).unwrap_err().kind(), ErrorKind::NotFound);
    }
}
