//! The CUDA backend: a real GPU through cudarc's driver API, libcuda loaded at run time.
//!
//! * Construction first asks cudarc whether libcuda can be loaded
//!   (`cudarc::driver::sys::is_culib_present`): cudarc *panics* on the first driver call when it
//!   cannot, so without the check a machine with no driver would abort instead of getting an
//!   [`ErrorKind::Unsupported`].
//! * Memory is plain `cuMemAlloc` device memory (never managed memory: oversubscribing managed
//!   memory can hang a GPU) and `cuMemHostAlloc` page-locked host memory, so copies are true
//!   asynchronous DMA.
//! * Streams are non-blocking (no implicit synchronisation with the legacy default stream);
//!   events are created with timing enabled.
//! * A [`ComputeStep`] launches `farmem_compute_step` from the PTX in `cuda_kernel.ptx` (source:
//!   `cuda_kernel.cu`), JIT-compiled by the driver at construction — no nvrtc needed. The grid is
//!   one block of 256 threads per SM, so all threads are resident at once and the spin ends
//!   together.
//!
//! The device keeps a table of every handle it gave out (id → raw driver object) behind one mutex;
//! every call validates handles and ranges against it before any driver call, which is what makes
//! the raw pointer arithmetic below sound. Blocking calls (synchronize) release the mutex first.
//! The context is bound to the calling thread on every call (a cheap check), so the device may
//! be used from any thread.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::{sys, CudaContext};
use farmem_error::{Error, ErrorKind, Result};

use super::{
    check_copy, check_range, check_step, next_device_id, out_of_device_memory, ComputeStep,
    CopyDirection, Device, DeviceBuffer, Event, PinnedBuffer, Stream,
};

/// The PTX of the compute-step kernel (see `cuda_kernel.cu`).
const KERNEL_PTX: &str = include_str!("cuda_kernel.ptx");
/// Its entry point.
const KERNEL_NAME: &str = "farmem_compute_step";
/// Threads per block of the compute-step kernel.
const BLOCK_THREADS: u32 = 256;

struct CudaState {
    buffers: HashMap<u64, (sys::CUdeviceptr, u64)>,
    pinned: HashMap<u64, (*mut u8, u64)>,
    streams: Vec<sys::CUstream>,
    events: Vec<(sys::CUevent, bool)>,
    allocated: u64,
    next_id: u64,
}

/// A CUDA GPU (feature `cuda`).
pub struct CudaDevice {
    id: u64,
    ordinal: usize,
    name: String,
    capacity: u64,
    sm_count: u32,
    module: sys::CUmodule,
    function: sys::CUfunction,
    state: Mutex<CudaState>,
    // Last: dropped after `Drop::drop` has released everything made in the context.
    ctx: Arc<CudaContext>,
}

// SAFETY: the raw driver handles (module, function, streams, events, device and pinned
// pointers) are process-wide driver objects, valid from any thread once the context is bound —
// which every method does first. The mutable tables are only reached through the `Mutex`, and
// `module`/`function` are never mutated after construction.
unsafe impl Send for CudaDevice {}
// SAFETY: see `Send`: shared access goes through the mutex or reads immutable handles, and the
// CUDA driver API is thread-safe.
unsafe impl Sync for CudaDevice {}

fn driver(what: &str, err: DriverError) -> Error {
    let kind = if err.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        ErrorKind::OutOfDeviceMemory
    } else {
        ErrorKind::Io
    };
    Error::new(kind, format!("CUDA {what} failed: {err:?}"))
}

/// Whether libcuda can be loaded (cudarc panics on driver calls when it cannot).
fn libcuda_present() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate library names and closes
    // what it opened; it has no preconditions (it is `unsafe` because loading a library runs its
    // initialisers, which for libcuda is the intended effect).
    unsafe { sys::is_culib_present() }
}

impl CudaDevice {
    /// Opens GPU `ordinal`: its primary context, the compute-step kernel (JIT from PTX).
    /// [`ErrorKind::Unsupported`] when libcuda is missing or no such GPU exists.
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        let count = Self::device_count()?;
        if ordinal >= count {
            return Err(Error::unsupported(format!(
                "CUDA device {ordinal} does not exist: the driver sees {count} GPU(s); pass an \
                 ordinal below {count}"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver("context creation", e))?;
        let name = ctx.name().map_err(|e| driver("device name query", e))?;
        let capacity = ctx.total_mem().map_err(|e| driver("memory query", e))? as u64;
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver("SM count query", e))?;
        let image = CString::new(KERNEL_PTX)
            .map_err(|_| Error::internal("compute-step PTX contains a NUL byte"))?;
        // SAFETY: `image` is a NUL-terminated PTX text that lives across the call; the context
        // was bound to this thread by `CudaContext::new`.
        let module = unsafe { result::module::load_data(image.as_ptr().cast()) }
            .map_err(|e| driver("loading the compute-step PTX", e))?;
        let fname = CString::new(KERNEL_NAME)
            .map_err(|_| Error::internal("kernel name contains a NUL byte"))?;
        // SAFETY: `module` was just loaded and is not unloaded before `Drop`.
        let function = match unsafe { result::module::get_function(module, fname) } {
            Ok(f) => f,
            Err(e) => {
                // SAFETY: `module` is loaded and nothing else refers to it yet.
                let _ = unsafe { result::module::unload(module) };
                return Err(driver("finding the compute-step kernel", e));
            }
        };
        Ok(CudaDevice {
            id: next_device_id(),
            ordinal,
            name,
            capacity,
            sm_count: u32::try_from(sm_count.max(1)).unwrap_or(1),
            module,
            function,
            state: Mutex::new(CudaState {
                buffers: HashMap::new(),
                pinned: HashMap::new(),
                streams: Vec::new(),
                events: Vec::new(),
                allocated: 0,
                next_id: 1,
            }),
            ctx,
        })
    }

    /// The number of CUDA GPUs; [`ErrorKind::Unsupported`] when libcuda cannot be loaded.
    pub fn device_count() -> Result<usize> {
        if !libcuda_present() {
            return Err(Error::unsupported(
                "CUDA device: libcuda could not be loaded (no NVIDIA driver on this machine, or \
                 it is not on the library path); run on a GPU machine or use the simulated device",
            ));
        }
        result::init().map_err(|e| {
            Error::unsupported(format!("CUDA device: driver initialisation failed: {e:?}"))
        })?;
        let n = result::device::get_count().map_err(|e| driver("device count", e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver("binding the context to this thread", e))
    }

    fn state(&self) -> Result<MutexGuard<'_, CudaState>> {
        self.bind()?;
        self.state
            .lock()
            .map_err(|_| Error::internal("CUDA device state poisoned by a panicking thread"))
    }

    fn check_device(&self, what: &str, device: u64) -> Result<()> {
        if device == self.id {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{what} belongs to another device (id {device}, this is {}); use handles of the \
                 device that made them",
                self.id
            )))
        }
    }

    fn stream(&self, st: &CudaState, stream: Stream) -> Result<sys::CUstream> {
        self.check_device("stream", stream.device)?;
        st.streams
            .get(stream.index as usize)
            .copied()
            .ok_or_else(|| Error::invalid(format!("stream {} does not exist", stream.index)))
    }

    fn event(&self, st: &CudaState, event: Event) -> Result<(sys::CUevent, bool)> {
        self.check_device("event", event.device)?;
        st.events
            .get(event.index as usize)
            .copied()
            .ok_or_else(|| Error::invalid(format!("event {} does not exist", event.index)))
    }

    fn device_ptr(&self, st: &CudaState, buf: &DeviceBuffer) -> Result<sys::CUdeviceptr> {
        self.check_device("device buffer", buf.device)?;
        st.buffers.get(&buf.id).map(|(p, _)| *p).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("device buffer {} was already freed", buf.id),
            )
        })
    }

    fn host_ptr(&self, st: &CudaState, buf: &PinnedBuffer) -> Result<*mut u8> {
        self.check_device("pinned buffer", buf.device)?;
        st.pinned.get(&buf.id).map(|(p, _)| *p).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("pinned buffer {} was already freed", buf.id),
            )
        })
    }
}

/// `usize` of a size already checked against a live allocation (which fits the address space).
fn len(x: u64) -> usize {
    x as usize
}

impl Device for CudaDevice {
    fn describe(&self) -> String {
        format!(
            "{} (CUDA {}, {} MiB, {} SMs)",
            self.name,
            self.ordinal,
            self.capacity >> 20,
            self.sm_count
        )
    }

    fn capacity_bytes(&self) -> u64 {
        self.capacity
    }

    fn allocated_bytes(&self) -> u64 {
        self.state.lock().map(|s| s.allocated).unwrap_or(0)
    }

    fn alloc(&self, bytes: u64) -> Result<DeviceBuffer> {
        if bytes == 0 {
            return Err(Error::invalid(
                "device allocation: size 0; allocate at least one byte",
            ));
        }
        let mut st = self.state()?;
        let n = usize::try_from(bytes).map_err(|_| {
            Error::invalid(format!("device allocation of {bytes} bytes is too big"))
        })?;
        // SAFETY: the context is bound (`state()`); `n` > 0. The pointer is recorded in the table
        // and freed exactly once (by `free` or `Drop`).
        let ptr = unsafe { result::malloc_sync(n) }.map_err(|e| {
            if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                out_of_device_memory(&self.name, bytes, st.allocated, self.capacity)
            } else {
                driver("cuMemAlloc", e)
            }
        })?;
        let id = st.next_id;
        st.next_id += 1;
        st.buffers.insert(id, (ptr, bytes));
        st.allocated += bytes;
        Ok(DeviceBuffer {
            device: self.id,
            id,
            bytes,
        })
    }

    fn free(&self, buffer: DeviceBuffer) -> Result<()> {
        let mut st = self.state()?;
        let ptr = self.device_ptr(&st, &buffer)?;
        st.buffers.remove(&buffer.id);
        st.allocated -= buffer.bytes;
        // SAFETY: `ptr` came from `malloc_sync` and was just removed from the table, so it is
        // freed once; the caller guarantees no queued work still uses it (trait contract).
        unsafe { result::free_sync(ptr) }.map_err(|e| driver("cuMemFree", e))
    }

    fn alloc_pinned(&self, bytes: u64) -> Result<PinnedBuffer> {
        if bytes == 0 {
            return Err(Error::invalid(
                "pinned allocation: size 0; allocate at least one byte",
            ));
        }
        let mut st = self.state()?;
        let n = usize::try_from(bytes).map_err(|_| {
            Error::invalid(format!("pinned allocation of {bytes} bytes is too big"))
        })?;
        // SAFETY: context bound; the memory is only ever accessed as bytes (any bit pattern is
        // valid) and is freed once, by `free_pinned` or `Drop`.
        let ptr = unsafe { result::malloc_host(n, 0) }.map_err(|e| {
            Error::new(
                ErrorKind::OutOfLocalMemory,
                format!("cuMemHostAlloc of {bytes} pinned bytes failed: {e:?}; pin less memory"),
            )
        })?;
        let id = st.next_id;
        st.next_id += 1;
        st.pinned.insert(id, (ptr.cast::<u8>(), bytes));
        Ok(PinnedBuffer {
            device: self.id,
            id,
            bytes,
        })
    }

    fn free_pinned(&self, buffer: PinnedBuffer) -> Result<()> {
        let mut st = self.state()?;
        let ptr = self.host_ptr(&st, &buffer)?;
        st.pinned.remove(&buffer.id);
        // SAFETY: `ptr` came from `malloc_host` and was just removed from the table (freed once);
        // no copy may still use it (trait contract).
        unsafe { result::free_host(ptr.cast::<c_void>()) }.map_err(|e| driver("cuMemFreeHost", e))
    }

    fn write_pinned(&self, buffer: &PinnedBuffer, offset: u64, data: &[u8]) -> Result<()> {
        let st = self.state()?;
        let ptr = self.host_ptr(&st, buffer)?;
        check_range("pinned write", buffer.bytes, offset, data.len() as u64)?;
        // SAFETY: (1) `ptr` is a live pinned allocation of `buffer.bytes` bytes (table lookup under
        // the lock); (2) `offset + data.len()` is inside it (checked above); (3) `data` is a
        // distinct Rust slice, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.add(len(offset)), data.len());
        }
        Ok(())
    }

    fn read_pinned(&self, buffer: &PinnedBuffer, offset: u64, out: &mut [u8]) -> Result<()> {
        let st = self.state()?;
        let ptr = self.host_ptr(&st, buffer)?;
        check_range("pinned read", buffer.bytes, offset, out.len() as u64)?;
        // SAFETY: as in `write_pinned`: live allocation, range checked, `out` is a distinct slice.
        unsafe {
            std::ptr::copy_nonoverlapping(ptr.add(len(offset)), out.as_mut_ptr(), out.len());
        }
        Ok(())
    }

    fn create_stream(&self) -> Result<Stream> {
        let mut st = self.state()?;
        let s = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(|e| driver("cuStreamCreate", e))?;
        let index = st.streams.len() as u32;
        st.streams.push(s);
        Ok(Stream {
            device: self.id,
            index,
        })
    }

    fn copy_to_device(
        &self,
        stream: Stream,
        src: &PinnedBuffer,
        src_offset: u64,
        dst: &DeviceBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<()> {
        let st = self.state()?;
        let s = self.stream(&st, stream)?;
        let from = self.host_ptr(&st, src)?;
        let to = self.device_ptr(&st, dst)?;
        check_copy(
            CopyDirection::ToDevice,
            (src.bytes, src_offset),
            (dst.bytes, dst_offset),
            bytes,
            false,
        )?;
        // SAFETY: (1) both allocations are live (table lookups under the lock) and the ranges lie
        // inside them (checked above); (2) the slice is only read by the DMA engine, and the trait
        // contract forbids rewriting or freeing the source before the copy completes.
        unsafe {
            let slice = std::slice::from_raw_parts(from.add(len(src_offset)), len(bytes));
            result::memcpy_htod_async(to + dst_offset, slice, s)
        }
        .map_err(|e| driver("cuMemcpyHtoDAsync", e))
    }

    fn copy_to_host(
        &self,
        stream: Stream,
        src: &DeviceBuffer,
        src_offset: u64,
        dst: &PinnedBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<()> {
        let st = self.state()?;
        let s = self.stream(&st, stream)?;
        let from = self.device_ptr(&st, src)?;
        let to = self.host_ptr(&st, dst)?;
        check_copy(
            CopyDirection::ToHost,
            (src.bytes, src_offset),
            (dst.bytes, dst_offset),
            bytes,
            false,
        )?;
        // SAFETY: (1) both allocations are live and the ranges inside them (checked above);
        // (2) the host range is written by DMA later; the contract forbids reading it (other than
        // through `read_pinned` after synchronizing) or freeing it before the copy completes, and
        // the slice made here does not outlive this call.
        unsafe {
            let slice = std::slice::from_raw_parts_mut(to.add(len(dst_offset)), len(bytes));
            result::memcpy_dtoh_async(slice, from + src_offset, s)
        }
        .map_err(|e| driver("cuMemcpyDtoHAsync", e))
    }

    fn copy_on_device(
        &self,
        stream: Stream,
        src: &DeviceBuffer,
        src_offset: u64,
        dst: &DeviceBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<()> {
        let st = self.state()?;
        let s = self.stream(&st, stream)?;
        let from = self.device_ptr(&st, src)?;
        let to = self.device_ptr(&st, dst)?;
        check_copy(
            CopyDirection::OnDevice,
            (src.bytes, src_offset),
            (dst.bytes, dst_offset),
            bytes,
            src.id == dst.id,
        )?;
        // SAFETY: both device allocations are live and both ranges lie inside them (checked).
        unsafe { result::memcpy_dtod_async(to + dst_offset, from + src_offset, len(bytes), s) }
            .map_err(|e| driver("cuMemcpyDtoDAsync", e))
    }

    fn launch(&self, stream: Stream, step: &ComputeStep<'_>) -> Result<()> {
        check_step(step)?;
        let st = self.state()?;
        let s = self.stream(&st, stream)?;
        let (mut input, mut input_len, mut out): (u64, u64, u64) = (0, 0, 0);
        if let Some(r) = step.reads {
            input = self.device_ptr(&st, r.buffer)? + r.offset;
            input_len = r.bytes;
            if let Some((buf, off)) = step.checksum_into {
                out = self.device_ptr(&st, buf)? + off;
            }
        }
        let mut spin_ns = u64::try_from(step.work.as_nanos()).unwrap_or(u64::MAX);
        let mut params: [*mut c_void; 4] = [
            (&mut input as *mut u64).cast(),
            (&mut input_len as *mut u64).cast(),
            (&mut out as *mut u64).cast(),
            (&mut spin_ns as *mut u64).cast(),
        ];
        // SAFETY: (1) `function` is `farmem_compute_step(u64 in, u64 len, u64 out, u64 spin)`
        // from the module loaded in `new` and unloaded only in `Drop`; (2) `params` points at four
        // u64 locals that live across the call (the driver copies them at launch); (3) `in..in+len`
        // and the 8 bytes at `out` lie inside live device allocations (`check_step` and the table
        // lookups above), and `out` is 8-aligned (allocations are 256-aligned, offset checked).
        unsafe {
            result::launch_kernel(
                self.function,
                (self.sm_count, 1, 1),
                (BLOCK_THREADS, 1, 1),
                0,
                s,
                &mut params,
            )
        }
        .map_err(|e| driver("launching the compute step", e))
    }

    fn create_event(&self) -> Result<Event> {
        let mut st = self.state()?;
        let e = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map_err(|e| driver("cuEventCreate", e))?;
        let index = st.events.len() as u32;
        st.events.push((e, false));
        Ok(Event {
            device: self.id,
            index,
        })
    }

    fn record_event(&self, event: Event, stream: Stream) -> Result<()> {
        let mut st = self.state()?;
        let s = self.stream(&st, stream)?;
        let (e, _) = self.event(&st, event)?;
        // SAFETY: `e` and `s` are live handles of this context (destroyed only in `Drop`).
        unsafe { result::event::record(e, s) }.map_err(|e| driver("cuEventRecord", e))?;
        st.events[event.index as usize].1 = true;
        Ok(())
    }

    fn wait_event(&self, stream: Stream, event: Event) -> Result<()> {
        let st = self.state()?;
        let s = self.stream(&st, stream)?;
        let (e, _) = self.event(&st, event)?;
        // SAFETY: live stream and event handles of this context.
        unsafe { result::stream::wait_event(s, e, sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT) }
            .map_err(|e| driver("cuStreamWaitEvent", e))
    }

    fn synchronize_event(&self, event: Event) -> Result<()> {
        let (e, _) = {
            let st = self.state()?;
            self.event(&st, event)?
        };
        // SAFETY: a live event handle (events are destroyed only in `Drop`, which cannot run
        // while `&self` is borrowed); the lock is released so other threads can enqueue.
        unsafe { result::event::synchronize(e) }.map_err(|e| driver("cuEventSynchronize", e))
    }

    fn synchronize_stream(&self, stream: Stream) -> Result<()> {
        let s = {
            let st = self.state()?;
            self.stream(&st, stream)?
        };
        // SAFETY: a live stream handle (destroyed only in `Drop`); lock released, as above.
        unsafe { result::stream::synchronize(s) }.map_err(|e| driver("cuStreamSynchronize", e))
    }

    fn elapsed(&self, start: Event, end: Event) -> Result<Duration> {
        let st = self.state()?;
        let (a, ra) = self.event(&st, start)?;
        let (b, rb) = self.event(&st, end)?;
        if !(ra && rb) {
            return Err(Error::invalid(
                "elapsed: an event was never recorded; record both events before measuring",
            ));
        }
        // SAFETY: two live, recorded events of this context.
        let ms = unsafe { result::event::elapsed(a, b) }
            .map_err(|e| driver("cuEventElapsedTime (is the end event complete?)", e))?;
        if ms < 0.0 {
            return Err(Error::invalid(format!(
                "elapsed: end event precedes start event by {} ms; swap them",
                -ms
            )));
        }
        Ok(Duration::from_secs_f64(f64::from(ms) / 1e3))
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_err() {
            return;
        }
        let _ = self.ctx.synchronize();
        let st = match self.state.get_mut() {
            Ok(st) => st,
            Err(poisoned) => poisoned.into_inner(),
        };
        // SAFETY (all blocks below): the context is bound and synchronized, so no queued work
        // uses these objects; each handle is in the table once and is released once here.
        for (e, _) in st.events.drain(..) {
            // SAFETY: see above.
            let _ = unsafe { result::event::destroy(e) };
        }
        for s in st.streams.drain(..) {
            // SAFETY: see above.
            let _ = unsafe { result::stream::destroy(s) };
        }
        for (_, (p, _)) in st.buffers.drain() {
            // SAFETY: see above.
            let _ = unsafe { result::free_sync(p) };
        }
        for (_, (p, _)) in st.pinned.drain() {
            // SAFETY: see above.
            let _ = unsafe { result::free_host(p.cast::<c_void>()) };
        }
        // SAFETY: every launch using the module has completed (synchronized above).
        let _ = unsafe { result::module::unload(self.module) };
    }
}
