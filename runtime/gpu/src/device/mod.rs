//! One interface over a GPU: device memory, pinned host memory, streams, events and compute steps.
//!
//! Every GPU mechanism of this crate (KV-cache paging, pipelined model switching,
//! oversubscription) is written against the [`Device`] trait, so it runs unchanged on
//!
//! * [`SimDevice`]: host memory acting as device memory, with a *deterministic* timing model
//!   (virtual clocks, one copy engine per direction, one compute engine) — what every test and
//!   the CI benchmarks use;
//! * [`CudaDevice`]: a real GPU through cudarc with libcuda loaded at run time (feature `cuda`;
//!   without it the same type exists and its constructor returns [`ErrorKind::Unsupported`],
//!   so callers never `#[cfg]`).
//!
//! # The model (the CUDA stream semantics, reduced to what the mechanisms need)
//!
//! ```text
//!   host ──enqueue──▶ stream A: [copy H→D]──[record e1]──[compute]──▶
//!                     stream B: [wait e1]──[compute]──▶          (B runs after e1, not before)
//!   engines:  H→D copy │ D→H copy │ D→D copy │ compute      (each runs one op at a time)
//! ```
//!
//! * Operations enqueued on one [`Stream`] run in enqueue order; operations on different streams
//!   may overlap, except that each *engine* runs one operation at a time (two streams' host→device
//!   copies share the one H→D copy engine; a copy and a compute step overlap).
//! * [`Device::record_event`] marks the point in a stream after everything enqueued so far;
//!   [`Device::wait_event`] makes later work of another stream start no earlier than that point
//!   (waiting on an event never recorded is a no-op, as in CUDA).
//! * Enqueueing never blocks; [`Device::synchronize_stream`] / [`Device::synchronize_event`]
//!   block the host until the work is done. Bytes in a destination are only defined after the
//!   copy is known complete (synchronize on it or on an event recorded after it), and a source
//!   must not be rewritten before then — the CUDA contract. [`SimDevice`] moves bytes at enqueue
//!   time, so it is never the one to catch a missing synchronize; the CUDA tests are.
//! * [`Device::elapsed`] measures between two recorded events: device time on CUDA, *virtual*
//!   time on the simulator (exact and repeatable, so the simulator's benchmarks are too; the
//!   simulator also reports its clocks in picoseconds).
//!
//! # Handles
//!
//! Buffers, streams and events are handles into a table the device owns; each carries the id of
//! the device that made it, and every operation checks the handle (right device, still live,
//! offsets and lengths inside the buffer) before touching memory, so a stale or foreign handle is
//! an [`Error`], never undefined behaviour. [`DeviceBuffer`] and [`PinnedBuffer`] are neither
//! `Clone` nor `Copy`: freeing consumes them. Dropping the device frees everything it still holds.
//!
//! # Compute steps
//!
//! A [`ComputeStep`] stands for one kernel (one layer's forward pass): it may read a range of
//! device memory, may add that range's [`checksum`] to a `u64` in device memory (so tests can
//! prove the bytes had landed before the step ran), and takes at least its nominal `work` time.
//! On CUDA it is a real kernel (hand-written PTX, `cuda_kernel.cu`) that sums the bytes on all
//! SMs and spins on `%globaltimer`; on the simulator its time is
//! `launch_overhead + max(work, read bytes / memory bandwidth)`.
//!
//! # Example
//!
//! ```
//! use farmem_gpu::device::{Device, SimConfig, SimDevice};
//!
//! let gpu = SimDevice::new(SimConfig::default())?;
//! let stream = gpu.create_stream()?;
//! let (host, dev) = (gpu.alloc_pinned(1 << 20)?, gpu.alloc(1 << 20)?);
//! gpu.write_pinned(&host, 0, &[7; 1 << 20])?;
//! let (start, end) = (gpu.create_event()?, gpu.create_event()?);
//! gpu.record_event(start, stream)?;
//! gpu.copy_to_device(stream, &host, 0, &dev, 0, 1 << 20)?;
//! gpu.copy_to_host(stream, &dev, 0, &host, 0, 1 << 20)?;
//! gpu.record_event(end, stream)?;
//! gpu.synchronize_event(end)?;
//! // Two 1 MiB copies at 12 GB/s plus 5 µs latency each, in virtual time.
//! assert_eq!(gpu.elapsed(start, end)?.as_micros(), 184);
//! # Ok::<(), farmem_gpu::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_disabled.rs"]
mod cuda;
mod sim;

pub use cuda::CudaDevice;
pub use sim::{LinkModel, SimConfig, SimDevice, SimEngine, SimOp};

/// A GPU (real or simulated): memory, pinned host memory, streams, events and compute steps.
///
/// All methods take `&self`; implementations synchronise internally, so one device can be shared
/// between threads behind an `Arc<dyn Device>`. See the module note for the ordering model.
pub trait Device: Send + Sync {
    /// A one-line description (`"simulated GPU, 16 GiB"`, `"NVIDIA H100 80GB HBM3 (CUDA 0)"`).
    fn describe(&self) -> String;

    /// Total device memory this device lets callers allocate, in bytes.
    fn capacity_bytes(&self) -> u64;

    /// Device memory currently allocated through [`Device::alloc`], in bytes.
    fn allocated_bytes(&self) -> u64;

    /// Allocates `bytes` (> 0) of device memory. Contents are unspecified until written.
    /// Fails with [`ErrorKind::OutOfDeviceMemory`] when it does not fit.
    fn alloc(&self, bytes: u64) -> Result<DeviceBuffer>;

    /// Frees a device buffer. Work still queued on it must have completed (synchronize first).
    /// A buffer of another device is refused (it stays allocated until its own device drops).
    fn free(&self, buffer: DeviceBuffer) -> Result<()>;

    /// Allocates `bytes` (> 0) of page-locked host memory, the source and target of async copies.
    fn alloc_pinned(&self, bytes: u64) -> Result<PinnedBuffer>;

    /// Frees a pinned host buffer (no copy involving it may still be in flight).
    fn free_pinned(&self, buffer: PinnedBuffer) -> Result<()>;

    /// Copies `data` into a pinned buffer at `offset` (a host-side write, immediate).
    fn write_pinned(&self, buffer: &PinnedBuffer, offset: u64, data: &[u8]) -> Result<()>;

    /// Copies `out.len()` bytes of a pinned buffer from `offset` into `out` (immediate; a copy
    /// into the buffer must be known complete first).
    fn read_pinned(&self, buffer: &PinnedBuffer, offset: u64, out: &mut [u8]) -> Result<()>;

    /// Creates a stream: a queue of operations that run in order.
    fn create_stream(&self) -> Result<Stream>;

    /// Enqueues a host→device copy of `bytes` from `src[src_offset..]` to `dst[dst_offset..]`.
    fn copy_to_device(
        &self,
        stream: Stream,
        src: &PinnedBuffer,
        src_offset: u64,
        dst: &DeviceBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<()>;

    /// Enqueues a device→host copy of `bytes` from `src[src_offset..]` to `dst[dst_offset..]`.
    fn copy_to_host(
        &self,
        stream: Stream,
        src: &DeviceBuffer,
        src_offset: u64,
        dst: &PinnedBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<()>;

    /// Enqueues a device→device copy of `bytes` (the ranges must not overlap if `src` is `dst`).
    fn copy_on_device(
        &self,
        stream: Stream,
        src: &DeviceBuffer,
        src_offset: u64,
        dst: &DeviceBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<()>;

    /// Enqueues a compute step (one kernel) on `stream`.
    fn launch(&self, stream: Stream, step: &ComputeStep<'_>) -> Result<()>;

    /// Creates an event (unrecorded).
    fn create_event(&self) -> Result<Event>;

    /// Records `event` at the current end of `stream` (re-recording moves it).
    fn record_event(&self, event: Event, stream: Stream) -> Result<()>;

    /// Makes work enqueued on `stream` after this call wait until `event` has completed.
    fn wait_event(&self, stream: Stream, event: Event) -> Result<()>;

    /// Blocks the host until `event` has completed (returns at once if it was never recorded).
    fn synchronize_event(&self, event: Event) -> Result<()>;

    /// Blocks the host until everything enqueued on `stream` has completed.
    fn synchronize_stream(&self, stream: Stream) -> Result<()>;

    /// The time between two completed events (`end` after `start`).
    fn elapsed(&self, start: Event, end: Event) -> Result<Duration>;
}

/// A live allocation of device memory. Freed by [`Device::free`] (or when its device drops).
#[derive(Debug, PartialEq, Eq)]
pub struct DeviceBuffer {
    pub(crate) device: u64,
    pub(crate) id: u64,
    pub(crate) bytes: u64,
}

impl DeviceBuffer {
    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A live allocation of pinned host memory. Freed by [`Device::free_pinned`].
#[derive(Debug, PartialEq, Eq)]
pub struct PinnedBuffer {
    pub(crate) device: u64,
    pub(crate) id: u64,
    pub(crate) bytes: u64,
}

impl PinnedBuffer {
    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A stream handle: operations enqueued on it run in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    pub(crate) device: u64,
    pub(crate) index: u32,
}

impl Stream {
    /// Its index among the streams of its device (0 for the first created).
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// An event handle: a point in a stream that other streams and the host can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub(crate) device: u64,
    pub(crate) index: u32,
}

/// A range of a device buffer.
#[derive(Clone, Copy, Debug)]
pub struct DeviceRange<'a> {
    /// The buffer.
    pub buffer: &'a DeviceBuffer,
    /// First byte of the range.
    pub offset: u64,
    /// Length of the range in bytes.
    pub bytes: u64,
}

/// One kernel: reads a device range, optionally checksums it, and takes at least `work`.
#[derive(Clone, Copy, Debug)]
pub struct ComputeStep<'a> {
    /// The device memory the step reads (a layer's weights), if any.
    pub reads: Option<DeviceRange<'a>>,
    /// Where to *add* (wrapping) the [`checksum`] of `reads`: a buffer and an 8-aligned offset of
    /// a little-endian `u64`. Ignored when `reads` is `None`.
    pub checksum_into: Option<(&'a DeviceBuffer, u64)>,
    /// The nominal compute time of the step (the layer's forward-pass cost).
    pub work: Duration,
}

/// The checksum a [`ComputeStep`] adds: the wrapping sum of `bytes`' little-endian `u32` words,
/// then of its trailing (fewer than four) bytes, as `u64`. Both backends compute exactly this.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    let mut sum = 0u64;
    for w in &mut words {
        sum = sum.wrapping_add(u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
    }
    for b in words.remainder() {
        sum = sum.wrapping_add(u64::from(*b));
    }
    sum
}

/// A fresh id for a device instance, so handles of one device are refused by another.
pub(crate) fn next_device_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Checks that `[offset, offset + len)` lies inside a buffer of `size` bytes.
pub(crate) fn check_range(what: &str, size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::invalid(format!(
            "{what}: range {offset}..{offset}+{len} is outside the buffer of {size} bytes; \
             pass an offset and length inside it"
        ))),
    }
}

/// Which way a copy moves bytes: names the copy in its error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyDirection {
    /// Pinned host memory to device memory ([`Device::copy_to_device`]).
    ToDevice,
    /// Device memory to pinned host memory ([`Device::copy_to_host`]).
    ToHost,
    /// Device memory to device memory ([`Device::copy_on_device`]).
    OnDevice,
}

/// Checks one copy's ranges the same way in every backend: `bytes` from `src_offset` of a
/// `src_size`-byte source to `dst_offset` of a `dst_size`-byte destination. A copy within one
/// buffer (`same_buffer`) must not overlap itself: CUDA leaves overlapping `cuMemcpy` undefined.
pub(crate) fn check_copy(
    direction: CopyDirection,
    (src_size, src_offset): (u64, u64),
    (dst_size, dst_offset): (u64, u64),
    bytes: u64,
    same_buffer: bool,
) -> Result<()> {
    let (source, destination) = match direction {
        CopyDirection::ToDevice => ("host→device copy source", "host→device copy destination"),
        CopyDirection::ToHost => ("device→host copy source", "device→host copy destination"),
        CopyDirection::OnDevice => (
            "device→device copy source",
            "device→device copy destination",
        ),
    };
    check_range(source, src_size, src_offset, bytes)?;
    check_range(destination, dst_size, dst_offset, bytes)?;
    // Both ends are in range, so neither sum overflows; with `bytes == 0` the test is false.
    if same_buffer && src_offset < dst_offset + bytes && dst_offset < src_offset + bytes {
        return Err(Error::invalid(format!(
            "device→device copy within one buffer overlaps ({src_offset} and {dst_offset}, \
             {bytes} bytes); copy through a second buffer"
        )));
    }
    Ok(())
}

/// Checks the `ComputeStep` ranges that do not depend on a backend.
pub(crate) fn check_step(step: &ComputeStep<'_>) -> Result<()> {
    if let Some(r) = step.reads {
        check_range("compute step input", r.buffer.bytes, r.offset, r.bytes)?;
        if step.checksum_into.is_some() && r.offset % 4 != 0 {
            return Err(Error::invalid(format!(
                "compute step input offset {} is not 4-byte aligned; a checksummed range must \
                 start on a 4-byte boundary",
                r.offset
            )));
        }
    }
    if let Some((buf, off)) = step.checksum_into {
        check_range("compute step checksum slot", buf.bytes, off, 8)?;
        if off % 8 != 0 {
            return Err(Error::invalid(format!(
                "compute step checksum offset {off} is not 8-byte aligned; use a multiple of 8"
            )));
        }
    }
    Ok(())
}

/// The error for an allocation that does not fit.
pub(crate) fn out_of_device_memory(
    device: &str,
    asked: u64,
    allocated: u64,
    capacity: u64,
) -> Error {
    Error::new(
        ErrorKind::OutOfDeviceMemory,
        format!(
            "{device}: cannot allocate {asked} bytes: {allocated} of {capacity} bytes are in use \
             ({} free); free buffers or use a smaller allocation",
            capacity.saturating_sub(allocated)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_sums_words_then_tail() {
        assert_eq!(checksum(&[]), 0);
        assert_eq!(checksum(&[1, 0, 0, 0, 2, 0, 0, 0]), 3);
        assert_eq!(checksum(&[0, 1, 0, 0, 7]), 256 + 7);
        let big = [0xffu8; 16];
        assert_eq!(checksum(&big), 4 * u64::from(u32::MAX));
    }

    #[test]
    fn ranges_are_checked_without_overflow() {
        assert!(check_range("x", 10, 2, 8).is_ok());
        assert!(check_range("x", 10, 2, 9).is_err());
        assert!(check_range("x", 10, u64::MAX, 2).is_err());
    }
}
