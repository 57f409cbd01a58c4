//! `Pod`: the element types remote containers can hold.

/// Plain data: `Copy`, no pointers or references, no drop glue, every bit pattern (all zeroes in
/// particular) a valid value, alignment at most 8. Container elements are copied bytewise to and
/// from far memory and start zeroed.
///
/// # Safety
/// Implement it only for types meeting every condition above; a type with references, niches
/// (`bool`, `char`, enums, `NonZero*`), or alignment above 8 would make container reads produce
/// invalid values.
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive integer or float: every bit pattern is valid, alignment <= 8.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);

// SAFETY: an array of `Pod` has no padding between elements and keeps the element alignment.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}
