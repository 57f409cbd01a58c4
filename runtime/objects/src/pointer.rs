//! The pointer word: 8 bytes of metadata per far-memory object (AIFM §4.1, "remoteable pointer").
//!
//! Every object of a container has one [`PointerWord`]. It is the single point of truth for where
//! the object lives, and the single atomic that the mutator and the evacuator race on: every state
//! change is one compare-and-swap, so for any two conflicting transitions exactly one wins.
//!
//! ```text
//!  present (P = 1): the object is in local memory
//!   63                                            16 15      8 7 6 5 4 3 2 1 0
//!  +------------------------------------------------+---------+-+-+-+-+-+-+-+-+
//!  |        local address of the object's data      |  zero   |0|F|B|S|E|D|H|P|
//!  +------------------------------------------------+---------+-+-+-+-+-+-+-+-+
//!
//!  remote (P = 0): the object is in far memory
//!   63                    36 35          24 23               8 7 6 5 4 3 2 1 0
//!  +------------------------+--------------+------------------+-+-+-+-+-+-+-+-+
//!  |  object id (28 bits)   | ds id (12)   | size / 8 (16)    |0|F|B|S|0|N|0|0|
//!  +------------------------+--------------+------------------+-+-+-+-+-+-+-+-+
//!
//!  P present     H hot (touched since the evacuator last looked; second chance; the first
//!                read of a prefetched object only clears F, so a chunk a scan reads once
//!                stays cold and the evacuator drops it rather than copies it)
//!  D dirty       E evacuating (the evacuator has claimed it; a mutator may take it back)
//!  S shared      (reserved for objects shared between containers; no container sets it yet)
//!  B busy        (locked: a thread is fetching it or writing it through (remote), or the
//!                evacuator is copying or writing it back (present, with E); others back off)
//!  F prefetched  (brought in by the prefetcher and not yet used; the first use counts it and
//!                clears F, setting H only for a write)
//!  N fresh       (remote form only, the bit of D: a new object whose bytes are all zeros and
//!                have never been written by the program; far memory holds zeros for it or,
//!                with `Config::reserve_far_on_grow` off, nothing yet. The first dereference
//!                makes it locally, present and dirty, with no fetch, so its first eviction
//!                writes it out. AIFM allocates new objects in local memory in the same way.)
//! ```
//!
//! The fast path of a dereference is one load, one masked test and one branch: a read succeeds
//! when `word & (P|H|E|F) == P|H` (the mask for a write adds `D`), and the data address is
//! `word >> 16`. Anything else (remote, cold, evacuating, not yet dirty) takes the slow path, which
//! fixes the state with a CAS and retries. Local addresses must fit in 48 bits (x86-64 and
//! AArch64 user space do); [`LocalAddr::new`] checks it.
//!
//! The remote form doubles as the object's identity: the object header in local memory stores it
//! (with the flags cleared), so the evacuator can turn a present word back into a remote one
//! without asking the container.
//!
//! This module is pure safe code over one atomic and is Miri-friendly (no raw pointers).

use farmem_error::{Error, Result};

use crate::sync::{AtomicU64, Ordering};

/// Present: the object is in local memory and bits 16.. hold its data address.
pub const PRESENT: u64 = 1 << 0;
/// Hot: touched since the evacuator last looked at it (second-chance replacement).
pub const HOT: u64 = 1 << 1;
/// Dirty: written since it was last fetched; must be written back before it is dropped.
pub const DIRTY: u64 = 1 << 2;
/// Evacuating: claimed by the evacuator; a mutator that sees it clears it and keeps the object.
pub const EVACUATING: u64 = 1 << 3;
/// Shared between containers (reserved; no container sets it yet).
pub const SHARED: u64 = 1 << 4;
/// Busy: locked by a fetch or write-through (remote) or an evacuator move (present); others
/// back off.
pub const BUSY: u64 = 1 << 5;
/// Prefetched and not yet used.
pub const PREFETCHED: u64 = 1 << 6;
/// Fresh (remote form only; the bit [`DIRTY`] has in the present form): the object is new and
/// all zeros, so a dereference makes it locally instead of fetching it (module note).
pub const FRESH: u64 = DIRTY;

/// All flag bits.
pub const FLAGS: u64 = 0xff;
/// The fast-path mask of a read: present, hot, not evacuating, not just prefetched.
pub const READ_MASK: u64 = PRESENT | HOT | EVACUATING | PREFETCHED;
/// The value `word & READ_MASK` must have for a read hit.
pub const READ_HIT: u64 = PRESENT | HOT;
/// The fast-path mask of a write: a read hit that is also already dirty.
pub const WRITE_MASK: u64 = READ_MASK | DIRTY;
/// The value `word & WRITE_MASK` must have for a write hit.
pub const WRITE_HIT: u64 = PRESENT | HOT | DIRTY;

const ADDR_SHIFT: u32 = 16;
const SIZE_SHIFT: u32 = 8;
const DS_SHIFT: u32 = 24;
const OBJ_SHIFT: u32 = 36;

/// The largest data-structure id (12 bits).
pub const MAX_DS_ID: u64 = (1 << 12) - 1;
/// The largest object id (28 bits).
pub const MAX_OBJ_ID: u64 = (1 << 28) - 1;
/// The largest object size in bytes (16 bits of 8-byte units).
pub const MAX_OBJECT_BYTES: usize = ((1 << 16) - 1) * 8;

/// A local data address that fits the pointer word (48 bits, 8-byte aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(u64);

impl LocalAddr {
    /// Checks that `addr` fits in 48 bits and is 8-byte aligned.
    pub fn new(addr: usize) -> Result<LocalAddr> {
        let a = addr as u64;
        if a >> 48 != 0 || a % 8 != 0 || a == 0 {
            return Err(Error::unsupported(format!(
                "local address {addr:#x} does not fit a pointer word (needs 48 bits, 8-aligned, non-null)"
            )));
        }
        Ok(LocalAddr(a))
    }

    /// The address as an integer.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// The identity of a remote object: data-structure id, object id and size, packed as the remote
/// form of a pointer word (flags cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteId(u64);

impl RemoteId {
    /// Packs an identity; fails when a field is out of its bit range or `size` is not a multiple
    /// of 8.
    pub fn new(ds: u16, obj: u32, size: usize) -> Result<RemoteId> {
        if u64::from(ds) > MAX_DS_ID {
            return Err(Error::invalid(format!(
                "data-structure id {ds} exceeds {MAX_DS_ID}; drop unused containers"
            )));
        }
        if u64::from(obj) > MAX_OBJ_ID {
            return Err(Error::invalid(format!(
                "object id {obj} exceeds {MAX_OBJ_ID}; use larger chunks"
            )));
        }
        if size == 0 || size % 8 != 0 || size > MAX_OBJECT_BYTES {
            return Err(Error::invalid(format!(
                "object size {size} must be a non-zero multiple of 8 up to {MAX_OBJECT_BYTES}"
            )));
        }
        Ok(RemoteId(
            (u64::from(obj) << OBJ_SHIFT)
                | (u64::from(ds) << DS_SHIFT)
                | (((size / 8) as u64) << SIZE_SHIFT),
        ))
    }

    /// Rebuilds an identity from its packed form (as stored in an object header).
    pub fn from_bits(bits: u64) -> RemoteId {
        RemoteId(bits & !FLAGS)
    }

    /// The packed form (flags cleared).
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The data-structure id.
    pub fn ds(self) -> u16 {
        ((self.0 >> DS_SHIFT) & MAX_DS_ID) as u16
    }

    /// The object id.
    pub fn obj(self) -> u32 {
        ((self.0 >> OBJ_SHIFT) & MAX_OBJ_ID) as u32
    }

    /// The object size in bytes.
    pub fn size(self) -> usize {
        (((self.0 >> SIZE_SHIFT) & 0xffff) * 8) as usize
    }
}

/// Whether a remote word value names a fresh (all-zero, never fetched) object.
#[inline]
pub fn is_fresh(w: u64) -> bool {
    !is_present(w) && w & FRESH != 0
}

/// Whether a word value is present.
#[inline(always)]
pub fn is_present(w: u64) -> bool {
    w & PRESENT != 0
}

/// The local data address of a present word value.
#[inline(always)]
pub fn addr_of(w: u64) -> usize {
    (w >> ADDR_SHIFT) as usize
}

/// A present word value with `flags` for the data at `addr`.
#[inline]
pub fn present_word(addr: LocalAddr, flags: u64) -> u64 {
    (addr.0 << ADDR_SHIFT) | (flags & FLAGS) | PRESENT
}

/// The remote word value of `id` with no flags.
#[inline]
pub fn remote_word(id: RemoteId) -> u64 {
    id.0
}

/// One object's pointer word (see the module note for the layout and the states).
#[derive(Debug)]
#[repr(transparent)]
pub struct PointerWord(AtomicU64);

impl PointerWord {
    /// A word for an object that lives remotely as `id`.
    pub fn new_remote(id: RemoteId) -> PointerWord {
        PointerWord(AtomicU64::new(remote_word(id)))
    }

    /// A word for a new object whose bytes are all zeros (see [`FRESH`]).
    pub fn new_fresh(id: RemoteId) -> PointerWord {
        PointerWord(AtomicU64::new(remote_word(id) | FRESH))
    }

    /// The current value (acquire: a present value makes the data written before it visible).
    #[inline(always)]
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// One CAS from `current` to `new`; `Err(actual)` when someone else changed it first.
    #[inline]
    pub fn cas(&self, current: u64, new: u64) -> std::result::Result<u64, u64> {
        self.0
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Publishes `new` unconditionally; only the holder of [`BUSY`] may do this.
    #[inline]
    pub fn publish(&self, new: u64) {
        self.0.store(new, Ordering::Release);
    }

    /// The address of this word, as stored in object headers (the back-pointer).
    pub fn addr(&self) -> u64 {
        self as *const PointerWord as u64
    }

    /// Tries to take the busy lock of a remote word: `Ok(locked value)` or `Err(actual)`.
    pub fn try_lock_remote(&self, current: u64) -> std::result::Result<u64, u64> {
        debug_assert!(!is_present(current) && current & BUSY == 0);
        self.cas(current, current | BUSY).map(|_| current | BUSY)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn remote_id_round_trips_every_field_at_its_limits() {
        let id = RemoteId::new(MAX_DS_ID as u16, MAX_OBJ_ID as u32, MAX_OBJECT_BYTES).unwrap();
        assert_eq!(id.ds() as u64, MAX_DS_ID);
        assert_eq!(id.obj() as u64, MAX_OBJ_ID);
        assert_eq!(id.size(), MAX_OBJECT_BYTES);
        assert_eq!(id.bits() & FLAGS, 0);
        let id = RemoteId::new(3, 77, 4096).unwrap();
        assert_eq!((id.ds(), id.obj(), id.size()), (3, 77, 4096));
        assert_eq!(RemoteId::from_bits(id.bits() | BUSY | HOT), id);
        assert!(RemoteId::new(4096, 0, 8).is_err());
        assert!(RemoteId::new(0, 1 << 28, 8).is_err());
        assert!(RemoteId::new(0, 0, 12).is_err());
        assert!(RemoteId::new(0, 0, 0).is_err());
    }

    #[test]
    fn present_word_fast_path_masks() {
        let a = LocalAddr::new(0x7fff_ffff_f000).unwrap();
        let w = present_word(a, HOT);
        assert_eq!(addr_of(w), 0x7fff_ffff_f000);
        assert_eq!(w & READ_MASK, READ_HIT);
        assert_ne!(
            w & WRITE_MASK,
            WRITE_HIT,
            "clean word must take the write slow path"
        );
        assert_eq!(present_word(a, HOT | DIRTY) & WRITE_MASK, WRITE_HIT);
        assert_ne!(present_word(a, HOT | EVACUATING) & READ_MASK, READ_HIT);
        assert_ne!(present_word(a, PREFETCHED) & READ_MASK, READ_HIT);
        assert_ne!(
            present_word(a, 0) & READ_MASK,
            READ_HIT,
            "cold takes the slow path"
        );
        let r = remote_word(RemoteId::new(1, 2, 8).unwrap());
        assert_ne!(r & READ_MASK, READ_HIT);
        assert!(LocalAddr::new(1 << 48).is_err());
        assert!(LocalAddr::new(0x1004).is_err());
    }

    #[test]
    fn fresh_is_a_remote_state_only() {
        let id = RemoteId::new(1, 2, 64).unwrap();
        let w = PointerWord::new_fresh(id).load();
        assert!(is_fresh(w) && !is_present(w));
        assert_eq!(RemoteId::from_bits(w), id, "the identity ignores the flag");
        assert_ne!(w & READ_MASK, READ_HIT, "a fresh word takes the slow path");
        assert!(!is_fresh(remote_word(id)));
        let a = LocalAddr::new(0x1000).unwrap();
        assert!(
            !is_fresh(present_word(a, HOT | DIRTY)),
            "the bit means dirty once present"
        );
    }

    #[test]
    fn busy_lock_is_exclusive() {
        let id = RemoteId::new(1, 2, 64).unwrap();
        let w = PointerWord::new_remote(id);
        let cur = w.load();
        let locked = w.try_lock_remote(cur).unwrap();
        assert_eq!(locked & BUSY, BUSY);
        assert!(w.cas(cur, cur | BUSY).is_err(), "second locker must lose");
        w.publish(cur);
        assert_eq!(w.load(), cur);
    }
}

#[cfg(all(test, loom))]
mod loom_fresh {
    //! A fresh word under every interleaving: a mutator that writes the new object races the
    //! prefetcher, which may lock the remote word first and bring in the zeros the backend holds
    //! for it. Whoever makes the object local, the mutator's write lands in the one local copy
    //! (loom's `UnsafeCell` flags two threads touching the bytes at once) and the word ends
    //! dirty, so the evacuator writes it back instead of dropping it.
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    struct World {
        word: PointerWord,
        data: UnsafeCell<u64>,
    }

    #[test]
    fn loom_fresh_object_write_is_kept_whoever_makes_it_local() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let id = RemoteId::new(1, 1, 8).unwrap();
            let world = Arc::new(World {
                word: PointerWord::new_fresh(id),
                data: UnsafeCell::new(0xdead),
            });
            let addr = LocalAddr::new(0x1000).unwrap();

            let p = world.clone();
            let prefetcher = loom::thread::spawn(move || {
                let w = p.word.load();
                if is_present(w) || w & BUSY != 0 {
                    return;
                }
                if p.word.try_lock_remote(w).is_ok() {
                    // The backend holds zeros for a fresh object.
                    // SAFETY: loom checks this access against every other one.
                    p.data.with_mut(|d| unsafe { *d = 0 });
                    p.word.publish(present_word(addr, PREFETCHED));
                }
            });

            // The mutator's slow path for a write (memory.rs), then the write itself.
            loop {
                let w = world.word.load();
                if is_present(w) && w & BUSY == 0 {
                    let new = (w | HOT | DIRTY) & !(EVACUATING | PREFETCHED);
                    if world.word.cas(w, new).is_err() {
                        continue;
                    }
                    break;
                }
                if w & BUSY != 0 {
                    loom::thread::yield_now();
                    continue;
                }
                if world.word.try_lock_remote(w).is_err() {
                    continue;
                }
                assert!(is_fresh(w), "nobody writes the object back in this model");
                // SAFETY: loom checks this access against every other one.
                world.data.with_mut(|d| unsafe { *d = 0 });
                world.word.publish(present_word(addr, HOT | DIRTY));
                break;
            }
            // SAFETY: loom checks this access against the prefetcher's.
            world.data.with_mut(|d| unsafe { *d = 7 });
            prefetcher.join().unwrap();
            let w = world.word.load();
            assert!(
                is_present(w) && w & DIRTY != 0,
                "the write must be written back"
            );
            // SAFETY: both threads are done.
            assert_eq!(world.data.with(|d| unsafe { *d }), 7);
        });
    }
}
