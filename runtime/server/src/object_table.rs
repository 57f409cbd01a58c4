//! `ObjectTable`: one data structure's objects, id → bytes, in an open-addressing table whose
//! slots a batch read can prefetch.
//!
//! ```text
//!   slots: [Slot; 2^k]   Slot { id: u64, bytes: Option<Arc<[u8]>> }   (24 bytes, None = empty)
//!   home(id) = (id · φ) >> (64 - k)       linear probing; at most 3/4 full; grows by doubling
//!   remove: backward shift (no tombstones), so a probe run always ends at the first empty slot
//! ```
//!
//! Why not `std::collections::HashMap`: a `get-many` of a hundred keys waits on memory for
//! each key (a table probe, then the object's bytes, each a cache miss on a large structure),
//! and std's map offers no way to start those loads early. Here
//! [`ObjectTable::prefetch`] starts the load of an id's home slot, so a batch read
//! ([`Store::with_objects`](crate::store::Store::with_objects)) prefetches slots a few ids
//! ahead, then the bytes of the ids it has found, and the misses of a batch overlap. Ids are
//! spread by one multiply (Fibonacci hashing): hash-index bucket ids are already hashes and
//! container ids are dense, and clients are trusted with the server's memory anyway, so a hash
//! that resists chosen keys would buy nothing. In `farmem-bench hashtable` (25% local, 1024
//! green threads) the memory server's CPU per lookup fell from 63 to 44 ns with this table
//! (5 alternating runs), after the batch read had already moved to one lock per batch.
//!
//! Memory: 24 bytes per slot at a load of 3/8 to 3/4, so 32 to 64 bytes of table per object
//! (std's map: about 29 to 57), within what [`OBJECT_OVERHEAD_BYTES`](crate::store::OBJECT_OVERHEAD_BYTES)
//! approximates together with the object's allocation.

use std::sync::Arc;

use farmem_net::copy::prefetch;
use farmem_net::ObjectId;

/// Fibonacci hashing's multiplier (2^64 / φ).
const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

/// Slots of a table created empty (it grows on the first insert past 3/4 of this).
const INITIAL_SLOTS: usize = 8;

#[derive(Clone, Default)]
struct Slot {
    id: ObjectId,
    bytes: Option<Arc<[u8]>>,
}

/// A data structure's objects (see the module note).
pub(crate) struct ObjectTable {
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: the shift that turns `id · φ` into a home slot.
    shift: u32,
    len: usize,
}

impl Default for ObjectTable {
    fn default() -> ObjectTable {
        ObjectTable::with_slots(INITIAL_SLOTS)
    }
}

impl ObjectTable {
    fn with_slots(n: usize) -> ObjectTable {
        debug_assert!(n.is_power_of_two() && n >= 2);
        ObjectTable {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            shift: 64 - n.trailing_zeros(),
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, id: ObjectId) -> usize {
        (id.wrapping_mul(PHI) >> self.shift) as usize
    }

    /// Where `id` is: `Ok(slot)` holding it, or `Err(slot)`, the empty slot that ends its probe
    /// run (where an insert puts it; there is always one, the table is at most 3/4 full).
    fn probe(&self, id: ObjectId) -> Result<usize, usize> {
        let mut i = self.home(id);
        loop {
            let s = &self.slots[i];
            if s.bytes.is_none() {
                return Err(i);
            }
            if s.id == id {
                return Ok(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// The slot holding `id`, if any.
    fn find(&self, id: ObjectId) -> Option<usize> {
        self.probe(id).ok()
    }

    /// Objects held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes of object `id`.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<&Arc<[u8]>> {
        self.find(*id).and_then(|i| self.slots[i].bytes.as_ref())
    }

    /// Starts loading `id`'s home slot into the cache (a later [`ObjectTable::get`] of it then
    /// usually hits).
    #[inline]
    pub(crate) fn prefetch(&self, id: ObjectId) {
        prefetch(&self.slots[self.home(id)]);
    }

    /// Inserts or replaces object `id`; returns the bytes it replaced. One probe finds the
    /// slot either way; only a growth probes again, in the new table.
    pub(crate) fn insert(&mut self, id: ObjectId, bytes: Arc<[u8]>) -> Option<Arc<[u8]>> {
        let empty = match self.probe(id) {
            Ok(i) => return self.slots[i].bytes.replace(bytes),
            Err(i) => i,
        };
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
            self.place(id, bytes);
        } else {
            self.fill(empty, id, bytes);
        }
        None
    }

    /// Puts `id`, known to be absent, at the end of its probe run.
    fn place(&mut self, id: ObjectId, bytes: Arc<[u8]>) {
        if let Err(i) = self.probe(id) {
            self.fill(i, id, bytes);
        }
    }

    fn fill(&mut self, slot: usize, id: ObjectId, bytes: Arc<[u8]>) {
        self.slots[slot] = Slot {
            id,
            bytes: Some(bytes),
        };
        self.len += 1;
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, ObjectTable::with_slots(self.slots.len() * 2));
        for s in old.slots.into_vec() {
            if let Some(b) = s.bytes {
                self.place(s.id, b);
            }
        }
    }

    /// Removes object `id`; returns its bytes. The rest of its probe run shifts back, so every
    /// id stays reachable from its home slot without tombstones.
    pub(crate) fn remove(&mut self, id: &ObjectId) -> Option<Arc<[u8]>> {
        let mut hole = self.find(*id)?;
        let removed = self.slots[hole].bytes.take();
        self.len -= 1;
        let mut next = (hole + 1) & self.mask();
        while self.slots[next].bytes.is_some() {
            let home = self.home(self.slots[next].id);
            // The entry at `next` may move back to `hole` unless its home lies after `hole`
            // (cyclically) on the way to `next`.
            if next.wrapping_sub(home) & self.mask() >= next.wrapping_sub(hole) & self.mask() {
                self.slots[hole] = std::mem::take(&mut self.slots[next]);
                hole = next;
            }
            next = (next + 1) & self.mask();
        }
        removed
    }

    /// Every object, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ObjectId, &Arc<[u8]>)> {
        self.slots
            .iter()
            .filter_map(|s| s.bytes.as_ref().map(|b| (s.id, b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u8),
        Remove(u64),
        Get(u64),
    }

    /// Ids from a small range (so operations collide and probe runs form), dense ids and
    /// hash-like ids with the top bit set, as the hash index uses.
    fn id() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..64,
            (0u64..64).prop_map(|i| i.wrapping_mul(PHI) | 1 << 63),
            any::<u64>()
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (id(), any::<u8>()).prop_map(|(i, v)| Op::Insert(i, v)),
            id().prop_map(Op::Remove),
            id().prop_map(Op::Get),
        ]
    }

    proptest! {
        /// Any sequence of inserts, removes and gets matches `HashMap`, and so do the length
        /// and the set of entries afterwards.
        #[test]
        fn matches_a_hash_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut t = ObjectTable::default();
            let mut m: HashMap<u64, u8> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(i, v) => {
                        let old = t.insert(i, Arc::from(vec![v]));
                        prop_assert_eq!(old.map(|b| b[0]), m.insert(i, v));
                    }
                    Op::Remove(i) => {
                        prop_assert_eq!(t.remove(&i).map(|b| b[0]), m.remove(&i));
                    }
                    Op::Get(i) => {
                        prop_assert_eq!(t.get(&i).map(|b| b[0]), m.get(&i).copied());
                    }
                }
                prop_assert_eq!(t.len(), m.len());
            }
            let mut got: Vec<(u64, u8)> = t.iter().map(|(i, b)| (i, b[0])).collect();
            let mut want: Vec<(u64, u8)> = m.into_iter().collect();
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn grows_past_three_quarters_and_keeps_everything() {
        let mut t = ObjectTable::default();
        for i in 0..10_000u64 {
            assert!(t.insert(i, Arc::from(i.to_le_bytes().to_vec())).is_none());
            assert!(t.len() * 4 <= t.slots.len() * 3);
        }
        for i in 0..10_000u64 {
            assert_eq!(
                t.get(&i).map(|b| b.to_vec()),
                Some(i.to_le_bytes().to_vec())
            );
            t.prefetch(i);
        }
        for i in (0..10_000u64).step_by(2) {
            assert!(t.remove(&i).is_some());
        }
        assert_eq!(t.len(), 5_000);
        assert!((0..10_000u64).all(|i| t.get(&i).is_some() == (i % 2 == 1)));
    }
}
