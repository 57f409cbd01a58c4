//! The objects of one container: its data-structure id and its pointer words.
//!
//! An [`ObjectTable`] is shared (`Arc`) by the container handle, the evacuator (while it works on
//! a region holding the container's objects) and the prefetch thread, and registered by id in its
//! [`Inner`](crate::memory::Inner) as a `Weak`, which is how the evacuator goes from an object
//! header's identity back to the pointer word. Pointer words live in fixed segments that never
//! move (a vector may grow by adding segments), so an object header's back-pointer stays valid as
//! long as the table lives. The handle caches the segment addresses so the fast path reads no
//! lock; the shared side ([`ObjectTable::word`], used per chunk by the prefetch, landing and
//! evacuator threads) reads the first segment's address from an atomic set once it exists, so
//! a fixed-size container (one segment) is never looked up under the segments' lock, whose
//! read-lock RMW otherwise bounced between those threads for every chunk.
//! The stride detector, written by the mutator on every slow path, has cache lines of its own
//! (away from the `Arc` counts and the fields the other threads read).
//!
//! When the last `Arc` goes, the table removes its objects from the backend and gives its
//! data-structure id back; its local copies become dead space that the evacuator reclaims.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crossbeam_utils::CachePadded;
use std::sync::{Arc, RwLock};

use farmem_error::{Error, Result};

use crate::memory::Inner;
use crate::pointer::{PointerWord, RemoteId, MAX_OBJ_ID};
use crate::prefetch::StrideDetector;

/// log2 of pointer words per segment of a growable table.
pub(crate) const GROWABLE_SEG_SHIFT: u32 = 10;

/// The shared half of a container (see the module note).
pub(crate) struct ObjectTable {
    pub inner: Arc<Inner>,
    pub ds: u16,
    pub object_bytes: usize,
    segments: RwLock<Vec<Box<[PointerWord]>>>,
    /// log2 of pointer words per segment (a fixed-size container uses one segment).
    pub seg_shift: u32,
    objects: AtomicU32,
    /// The first segment's words (null until it exists); written once, under the segments'
    /// write lock and before `objects` is raised past 0.
    seg0: AtomicPtr<PointerWord>,
    pub stride: CachePadded<StrideDetector>,
}

impl ObjectTable {
    /// A table with no objects yet, registered under a fresh data-structure id.
    pub(crate) fn new(
        inner: &Arc<Inner>,
        object_bytes: usize,
        seg_shift: u32,
    ) -> Result<Arc<ObjectTable>> {
        inner.register_table(|ds| ObjectTable {
            inner: inner.clone(),
            ds,
            object_bytes,
            segments: RwLock::new(Vec::new()),
            seg_shift,
            objects: AtomicU32::new(0),
            seg0: AtomicPtr::new(std::ptr::null_mut()),
            stride: CachePadded::new(StrideDetector::default()),
        })
    }

    /// Objects created so far.
    pub(crate) fn objects(&self) -> u32 {
        self.objects.load(Ordering::Acquire)
    }

    /// Creates objects up to `total` and appends new segment addresses to `cache`. Unless the
    /// configuration defers it (`Config::reserve_far_on_grow`), the backend takes their far
    /// capacity now ([`Backend::create_zeroed`](crate::Backend::create_zeroed), one batch for
    /// all of them), so running out of far memory shows up here, not during evacuation. Their
    /// pointer words start fresh, so the first dereference makes the zeros locally instead of
    /// fetching them. On failure no object is created (those the backend did take are removed
    /// again).
    ///
    /// A `cache` that another handle of this table left behind (see
    /// [`Chunks::share`](crate::array::Chunks)) is brought up to date instead.
    pub(crate) fn grow_to(&self, total: usize, cache: &mut Vec<*const PointerWord>) -> Result<()> {
        let have = self.objects() as usize;
        if total <= have {
            if cache.len() << self.seg_shift < total {
                let segs = self
                    .segments
                    .read()
                    .map_err(|_| Error::internal("object table lock poisoned"))?;
                extend_cache(&segs, cache);
            }
            return Ok(());
        }
        check_object_count(total)?;
        let created = if self.inner.config.reserve_far_on_grow {
            self.inner
                .backend
                .create_zeroed(self.ds, have as u32..total as u32, self.object_bytes)
        } else {
            // Capacity is taken at the first write-back (`Config::reserve_far_on_grow`).
            Ok(())
        };
        if let Err(e) = created {
            for obj in have..total {
                let _ = self.inner.backend.remove(self.ds, obj as u32);
            }
            return Err(e.with_context(format!(
                "creating objects {have}..{total} of container {}",
                self.ds
            )));
        }
        self.add_objects(total, cache, false)
    }

    /// Makes objects `0..total` of this table, which has none yet, exist as the **remote**
    /// objects the backend already holds (a remote function wrote them, e.g. the agent's
    /// `Map`): their pointer words start remote, so the first dereference fetches them. Nothing
    /// is created on the backend.
    pub(crate) fn adopt_remote(
        &self,
        total: usize,
        cache: &mut Vec<*const PointerWord>,
    ) -> Result<()> {
        if self.objects() != 0 {
            return Err(Error::invalid(format!(
                "container {} already has {} objects: only an empty one adopts remote objects",
                self.ds,
                self.objects()
            )));
        }
        check_object_count(total)?;
        self.add_objects(total, cache, true)
    }

    /// Raises the object count to `total`, adding segments as needed. With `remote` the new
    /// objects' words start remote, else fresh; words past `total` in a new segment always
    /// start fresh. (Only a table with no segment yet adopts remote objects, so every remote
    /// word is a new one.)
    fn add_objects(
        &self,
        total: usize,
        cache: &mut Vec<*const PointerWord>,
        remote: bool,
    ) -> Result<()> {
        let mut segs = self
            .segments
            .write()
            .map_err(|_| Error::internal("object table lock poisoned"))?;
        let seg_len = self.seg_len();
        while segs.len() * seg_len < total {
            let base = segs.len() * seg_len;
            let seg: Box<[PointerWord]> = (0..seg_len)
                .map(|k| {
                    let obj = (base + k).min(MAX_OBJ_ID as usize) as u32;
                    let id = RemoteId::new(self.ds, obj, self.object_bytes)?;
                    Ok(if remote && base + k < total {
                        PointerWord::new_remote(id)
                    } else {
                        PointerWord::new_fresh(id)
                    })
                })
                .collect::<Result<_>>()?;
            segs.push(seg);
        }
        if let Some(first) = segs.first() {
            // Published before `objects` (release below): a reader that sees an object of the
            // first segment exist sees this pointer.
            self.seg0
                .store(first.as_ptr().cast_mut(), Ordering::Release);
        }
        extend_cache(&segs, cache);
        self.objects.store(total as u32, Ordering::Release);
        Ok(())
    }

    /// Pointer words per segment.
    pub(crate) fn seg_len(&self) -> usize {
        1 << self.seg_shift
    }

    /// The pointer word of object `obj`, if it exists.
    pub(crate) fn word(&self, obj: u32) -> Option<&PointerWord> {
        if obj >= self.objects() {
            return None;
        }
        if (obj as usize) >> self.seg_shift == 0 {
            let seg0 = self.seg0.load(Ordering::Acquire);
            if !seg0.is_null() {
                // SAFETY: (1) `seg0` is the first segment, `seg_len()` words boxed and never moved
                // or freed before the table drops; (2) `obj < seg_len()`; (3) `self` is borrowed
                // for the returned lifetime.
                return Some(unsafe { &*seg0.add(obj as usize) });
            }
        }
        let segs = self.segments.read().ok()?;
        let p: *const PointerWord = segs
            .get(obj as usize >> self.seg_shift)?
            .get(obj as usize & (self.seg_len() - 1))?;
        // SAFETY: segments are boxed, never moved and never freed before the table drops; `self`
        // is borrowed for the returned lifetime.
        Some(unsafe { &*p })
    }
}

/// An error unless `total` objects have ids that fit.
fn check_object_count(total: usize) -> Result<()> {
    if total > 0 && total - 1 > MAX_OBJ_ID as usize {
        return Err(Error::invalid(format!(
            "container needs {total} objects, more than {}; use larger chunks",
            MAX_OBJ_ID + 1
        )));
    }
    Ok(())
}

/// Appends the addresses of the segments `cache` lacks.
fn extend_cache(segs: &[Box<[PointerWord]>], cache: &mut Vec<*const PointerWord>) {
    while cache.len() < segs.len() {
        cache.push(segs[cache.len()].as_ptr());
    }
}

impl Drop for ObjectTable {
    fn drop(&mut self) {
        // Local copies need no care: the registry's `Weak` no longer upgrades, so the evacuator
        // treats them as dead and frees their regions (a later table that reuses this id cannot
        // match them: its words are present at other addresses).
        for obj in 0..self.objects() {
            let _ = self.inner.backend.remove(self.ds, obj);
        }
        self.inner.release_ds(self.ds);
    }
}
