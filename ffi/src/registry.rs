//! The handle registry: every object C holds is an entry of one global slab, and the handle C
//! gets is a token naming the slot and its generation, cast to a pointer that is never
//! dereferenced (rustls-ffi's `Castable` checks a pointer's type; here the registry also catches
//! stale and forged ones).
//!
//! ```text
//!   handle (usize):  | generation (high half) | slot index + 1 (low half) |
//!   slab[index]:     Slot { generation, entry: Option<Entry { c_type, Arc<object> }> }
//! ```
//!
//! - NULL (0) never names a slot: the low half is `index + 1`.
//! - Removing an entry bumps its slot's generation (skipping 0), so a destroyed handle, destroyed
//!   again or used later, no longer matches and is reported as stale, never as the slot's next
//!   occupant -- until the generation wraps: 2^32 reuses of one slot on 64-bit targets (2^16 on
//!   32-bit ones), which is documented as the limit of the check.
//! - An entry records the C type it was created as; looking it up as another type is an error.
//! - The slab is behind a read-write lock: lookups (every call) share it, inserts and removals
//!   take it alone. Objects are `Arc`s: a call clones the `Arc` under the lock and works on it
//!   after the lock is released, so a concurrent destroy removes the entry but frees the object only
//!   when the last call using it returns.

use std::any::Any;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fm::{Error, ErrorKind, Result};

/// An object type C holds through handles of one C type.
pub(crate) trait HandleKind: Any + Send + Sync {
    /// The C type name of its handles (`"fm_array_t"`), for messages.
    const C_TYPE: &'static str;
}

struct Entry {
    c_type: &'static str,
    object: Arc<dyn Any + Send + Sync>,
}

struct Slot {
    generation: usize,
    entry: Option<Entry>,
}

struct Slab {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

static REGISTRY: RwLock<Slab> = RwLock::new(Slab {
    slots: Vec::new(),
    free: Vec::new(),
});

const HALF: u32 = usize::BITS / 2;
const LOW_MASK: usize = (1 << HALF) - 1;

// A panic while the lock is held cannot leave the slab inconsistent (every mutation is a single
// push, pop or field store), so poisoning is ignored.

/// The slab for lookups: shared, so calls on different threads do not serialise here.
fn slab() -> RwLockReadGuard<'static, Slab> {
    REGISTRY.read().unwrap_or_else(|p| p.into_inner())
}

/// The slab for inserting and removing.
fn slab_mut() -> RwLockWriteGuard<'static, Slab> {
    REGISTRY.write().unwrap_or_else(|p| p.into_inner())
}

fn next_generation(g: usize) -> usize {
    match (g + 1) & LOW_MASK {
        0 => 1,
        n => n,
    }
}

/// Registers `object` and returns its handle.
pub(crate) fn insert<T: HandleKind>(object: Arc<T>) -> Result<usize> {
    let mut slab = slab_mut();
    let index = match slab.free.pop() {
        Some(i) => i,
        None => {
            if slab.slots.len() >= LOW_MASK - 1 {
                return Err(Error::new(
                    ErrorKind::OutOfLocalMemory,
                    format!(
                        "{} handles are open, the most this build supports; destroy some",
                        slab.slots.len()
                    ),
                ));
            }
            slab.slots.push(Slot {
                generation: 1,
                entry: None,
            });
            slab.slots.len() - 1
        }
    };
    let slot = &mut slab.slots[index];
    slot.entry = Some(Entry {
        c_type: T::C_TYPE,
        object,
    });
    Ok((slot.generation << HALF) | (index + 1))
}

/// The index of the live slot `handle` names, with an error naming `arg` otherwise.
fn find(slab: &Slab, handle: usize, arg: &str, want: &str) -> Result<usize> {
    if handle == 0 {
        return Err(Error::invalid(format!(
            "`{arg}` is NULL; pass the {want} handle its create function returned"
        )));
    }
    let (low, generation) = (handle & LOW_MASK, handle >> HALF);
    let (index, slot) = match low
        .checked_sub(1)
        .and_then(|i| Some((i, slab.slots.get(i)?)))
    {
        Some(found) => found,
        None => {
            return Err(Error::invalid(format!(
                "`{arg}` ({handle:#x}) is not a farmem handle"
            )))
        }
    };
    if slot.generation != generation || slot.entry.is_none() {
        return Err(Error::invalid(format!(
            "`{arg}` ({handle:#x}) is a stale {want} handle: it was destroyed already"
        )));
    }
    Ok(index)
}

fn downcast<T: HandleKind>(entry: &Entry, handle: usize, arg: &str) -> Result<Arc<T>> {
    entry.object.clone().downcast::<T>().map_err(|_| {
        Error::invalid(format!(
            "`{arg}` ({handle:#x}) is an {} handle, not an {}",
            entry.c_type,
            T::C_TYPE
        ))
    })
}

/// The object of `handle`, which must be a live `T` handle; `arg` names the parameter.
pub(crate) fn get<T: HandleKind>(handle: usize, arg: &str) -> Result<Arc<T>> {
    with(handle, arg, |obj: &Arc<T>| Ok(obj.clone()))
}

/// The live entry at `index` (checked by [`find`]).
fn entry(slab: &Slab, index: usize) -> Result<&Entry> {
    slab.slots[index]
        .entry
        .as_ref()
        .ok_or_else(|| Error::internal("checked entry vanished"))
}

/// Runs `f` on the object of `handle` with the registry locked for reading (so no destroy runs
/// meanwhile).
pub(crate) fn with<T: HandleKind, R>(
    handle: usize,
    arg: &str,
    f: impl FnOnce(&Arc<T>) -> Result<R>,
) -> Result<R> {
    let slab = slab();
    let index = find(&slab, handle, arg, T::C_TYPE)?;
    let obj = downcast::<T>(entry(&slab, index)?, handle, arg)?;
    f(&obj)
}

/// Removes `handle` (a live `T` handle) if `check` accepts its object, returning the object.
/// The check runs with the registry locked, so nothing can start using the object meanwhile.
pub(crate) fn remove_if<T: HandleKind>(
    handle: usize,
    arg: &str,
    check: impl FnOnce(&T) -> Result<()>,
) -> Result<Arc<T>> {
    let mut slab = slab_mut();
    let index = find(&slab, handle, arg, T::C_TYPE)?;
    let obj = downcast::<T>(entry(&slab, index)?, handle, arg)?;
    check(&obj)?;
    let slot = &mut slab.slots[index];
    slot.entry = None;
    slot.generation = next_generation(slot.generation);
    slab.free.push(index);
    Ok(obj)
}

/// Removes `handle`, a live `T` handle, returning its object.
pub(crate) fn remove<T: HandleKind>(handle: usize, arg: &str) -> Result<Arc<T>> {
    remove_if::<T>(handle, arg, |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Apple(u32);
    impl HandleKind for Apple {
        const C_TYPE: &'static str = "fm_apple_t";
    }
    struct Pear;
    impl HandleKind for Pear {
        const C_TYPE: &'static str = "fm_pear_t";
    }

    fn msg(r: Result<impl Sized>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                e.to_string()
            }
        }
    }

    #[test]
    fn live_stale_null_forged_and_wrong_type_handles() {
        let h = insert(Arc::new(Apple(7))).unwrap();
        assert_ne!(h, 0);
        assert_eq!(get::<Apple>(h, "a").unwrap().0, 7);
        assert!(msg(get::<Pear>(h, "p")).contains("is an fm_apple_t handle, not an fm_pear_t"));
        assert!(msg(get::<Apple>(0, "a")).contains("`a` is NULL"));
        assert!(msg(get::<Apple>(LOW_MASK, "a")).contains("not a farmem handle"));
        assert_eq!(remove::<Apple>(h, "a").unwrap().0, 7);
        assert!(msg(get::<Apple>(h, "a")).contains("stale fm_apple_t handle"));
        assert!(msg(remove::<Apple>(h, "a")).contains("stale"));
        // The slot is reused under a new generation: the old handle stays stale.
        let h2 = insert(Arc::new(Apple(8))).unwrap();
        assert_ne!(h, h2);
        assert!(msg(get::<Apple>(h, "a")).contains("stale"));
        assert_eq!(get::<Apple>(h2, "a").unwrap().0, 8);
        // A refused removal leaves the entry in place.
        assert!(msg(remove_if::<Apple>(h2, "a", |_| Err(Error::invalid("busy")))).contains("busy"));
        assert_eq!(remove::<Apple>(h2, "a").unwrap().0, 8);
    }

    #[test]
    fn generations_skip_zero_when_they_wrap() {
        assert_eq!(next_generation(LOW_MASK), 1);
        assert_eq!(next_generation(1), 2);
    }
}
