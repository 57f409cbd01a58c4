//! Bulk byte copies that stay fast whatever the two buffers' alignment.
//!
//! Every object farmem moves is copied at least once in this process: from a received answer
//! into its local space (a miss, a prefetch landing, a list read-ahead), between regions (the
//! evacuator keeping a hot object), into a frame (a write-back). glibc's `memcpy` copies large
//! blocks with `rep movsb` on CPUs that advertise fast string moves, and on the AMD EPYC
//! machines farmem is measured on, that instruction drops from 50–90 GB/s to about 3 GB/s when
//! the destination lies a few bytes (1 to about 31) past the source modulo 4096
//! (`farmem-bench copy` prints the table). Our buffers land there by chance: heap buffers of
//! the same size class sit at the same page offsets, and an object in a read answer follows a
//! 5-byte prefix. So whether a run's copies were fast depended on its heap layout:
//! `farmem-bench list` measured 0.50 vs 0.62 of raw TCP over twelve alternating runs after a
//! change that only moved allocations.
//!
//! [`copy_bytes`] keeps `memcpy` where it is fast (copies under 512 bytes, and any other
//! distance between the buffers) and copies the hostile distances with 32-byte unaligned vector
//! loads and stores (AVX2 where the CPU has it, 16-byte SSE2 otherwise), which run at 50–80
//! GB/s there (`farmem-bench copy`, 4 KiB and 64 KiB copies). Other architectures use `memcpy`.

/// Hints the CPU to start loading the cache line at `p` (no-op off x86-64). Used where a
/// lookup knows its next addresses before it can read them (the server's batched object
/// lookups, a hash map's cache probe), so their cache misses overlap.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address, and reads nothing
    // into the program. (Newer compilers consider the intrinsic safe; the MSRV does not.)
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Copies below this many bytes always use `memcpy` (short copies do not use `rep movsb`).
const VECTOR_MIN_BYTES: usize = 512;
/// Destinations less than this far past the source, modulo a page, take the vector path.
const HOSTILE_DISTANCE: usize = 64;

/// Copies `src` into `dst`, as `dst.copy_from_slice(src)` does, at the same speed whatever the
/// buffers' alignment (module note).
///
/// # Panics
///
/// If the lengths differ (like `copy_from_slice`).
#[inline]
pub fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_bytes: destination and source lengths differ"
    );
    // SAFETY: both slices are valid for `len` bytes, and a `&mut` cannot overlap a `&`.
    unsafe { copy_nonoverlapping_bytes(src.as_ptr(), dst.as_mut_ptr(), src.len()) }
}

/// Appends `src` to `out`, as `out.extend_from_slice(src)` does, through [`copy_bytes`] (a
/// frame's object bytes: a write-back's chunk going into the connection's buffer).
#[inline]
pub fn extend_bytes(out: &mut Vec<u8>, src: &[u8]) {
    out.reserve(src.len());
    let at = out.len();
    // SAFETY: `reserve` made room for `src.len()` bytes past `at`; `src` cannot overlap `out`'s
    // spare capacity (it is borrowed shared while `out` is borrowed mutably); every byte up to
    // the new length is written before `set_len`.
    unsafe {
        copy_nonoverlapping_bytes(src.as_ptr(), out.as_mut_ptr().add(at), src.len());
        out.set_len(at + src.len());
    }
}

/// [`copy_bytes`] on raw pointers: copies `len` bytes from `src` to `dst`.
///
/// # Safety
///
/// As [`std::ptr::copy_nonoverlapping`]: `src` valid for reads and `dst` for writes of `len`
/// bytes, and the two ranges do not overlap.
#[inline]
pub unsafe fn copy_nonoverlapping_bytes(src: *const u8, dst: *mut u8, len: usize) {
    let ahead = (dst as usize).wrapping_sub(src as usize) % 4096;
    if len >= VECTOR_MIN_BYTES && ahead != 0 && ahead < HOSTILE_DISTANCE {
        // SAFETY: forwarded from the caller.
        unsafe { vector_copy(src, dst, len) }
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn vector_copy(src: *const u8, dst: *mut u8, len: usize) {
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above); pointers forwarded from the caller.
        unsafe { copy_avx2(src, dst, len) }
    } else {
        // SAFETY: SSE2 is part of x86_64; pointers forwarded from the caller.
        unsafe { copy_sse2(src, dst, len) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn vector_copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
}

/// Defines `$name`: a copy in steps of four `$vec` unaligned loads and stores (`$load`,
/// `$store`, each `size_of::<$vec>()` bytes), then `memcpy` for the tail, compiled with target
/// feature `$feature`.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_copy_fn {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $vec:ident, $load:ident, $store:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $feature)]
        unsafe fn $name(src: *const u8, dst: *mut u8, len: usize) {
            use std::arch::x86_64::{$load, $store, $vec};
            const STEP: usize = 4 * std::mem::size_of::<$vec>();
            let mut i = 0;
            while i + STEP <= len {
                // SAFETY: `i + STEP <= len`, so every access is inside both ranges; the
                // intrinsics take unaligned pointers.
                unsafe {
                    let s = src.add(i).cast::<$vec>();
                    let d = dst.add(i).cast::<$vec>();
                    let a = $load(s);
                    let b = $load(s.add(1));
                    let c = $load(s.add(2));
                    let e = $load(s.add(3));
                    $store(d, a);
                    $store(d.add(1), b);
                    $store(d.add(2), c);
                    $store(d.add(3), e);
                }
                i += STEP;
            }
            // SAFETY: the tail `i..len` is inside both ranges.
            unsafe { std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), len - i) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
vector_copy_fn!(
    /// 128 bytes per step in 32-byte AVX2 loads and stores.
    copy_avx2,
    "avx2",
    __m256i,
    _mm256_loadu_si256,
    _mm256_storeu_si256
);

#[cfg(target_arch = "x86_64")]
vector_copy_fn!(
    /// 64 bytes per step in 16-byte SSE2 loads and stores (SSE2 is baseline on x86_64).
    copy_sse2,
    "sse2",
    __m128i,
    _mm_loadu_si128,
    _mm_storeu_si128
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length class, source alignment and distance between the buffers (among them the
    /// distances that take the vector path) copies exactly the source bytes and nothing past
    /// the destination range.
    #[test]
    fn copies_exactly_at_every_alignment_distance_and_length() {
        let lens = [0, 1, 31, 64, 127, 511, 512, 513, 640, 4096, 4099, 65_541];
        for len in lens {
            // Source at `so`, destination a whole number of pages plus `ahead` past it.
            let gap = (len / 4096 + 1) * 4096;
            let mut buf = vec![0u8; 2 * gap + 8192];
            for so in [0, 1, 5, 9, 63] {
                for ahead in [0, 1, 3, 8, 11, 31, 63, 64, 100, 2048] {
                    buf.iter_mut()
                        .enumerate()
                        .for_each(|(i, b)| *b = (i * 7 + 3) as u8);
                    let want: Vec<u8> = buf[so..so + len].to_vec();
                    let d = so + gap + ahead;
                    let before: Vec<u8> = buf[d - 1..d].to_vec();
                    let after: Vec<u8> = buf[d + len..d + len + 1].to_vec();
                    let (head, tail) = buf.split_at_mut(d);
                    copy_bytes(&mut tail[..len], &head[so..so + len]);
                    assert_eq!(
                        &buf[d..d + len],
                        &want[..],
                        "len {len} src {so} ahead {ahead}"
                    );
                    assert_eq!(&buf[d - 1..d], &before[..]);
                    assert_eq!(&buf[d + len..d + len + 1], &after[..]);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_sse2_path_copies_exactly_too() {
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        for (len, so, d_off) in [(4096, 5, 8), (4099, 9, 16), (700, 1, 0), (64, 0, 3)] {
            let mut dst = vec![0u8; len + 32];
            // SAFETY: both ranges are inside their vectors and distinct allocations.
            unsafe { copy_sse2(src.as_ptr().add(so), dst.as_mut_ptr().add(d_off), len) };
            assert_eq!(&dst[d_off..d_off + len], &src[so..so + len]);
        }
    }

    /// `extend_bytes` gives what `extend_from_slice` gives, whichever path the distance takes.
    #[test]
    fn extend_bytes_matches_extend_from_slice() {
        let src: Vec<u8> = (0..9000u32).map(|i| (i * 31 + 1) as u8).collect();
        for (prefix, len) in [
            (0usize, 0usize),
            (3, 700),
            (5, 4096),
            (11, 8000),
            (100, 511),
        ] {
            let mut ours = vec![7u8; prefix];
            let mut std_way = ours.clone();
            extend_bytes(&mut ours, &src[..len]);
            std_way.extend_from_slice(&src[..len]);
            assert_eq!(ours, std_way);
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn different_lengths_panic_like_copy_from_slice() {
        copy_bytes(&mut [0u8; 4], &[1u8; 5]);
    }
}
