//! The simulated GPU: host memory acting as device memory, with a deterministic timing model.
//!
//! Bytes really move (a copy copies, a compute step really reads and checksums its input) at
//! *enqueue* time; only time is modelled. Time is kept in integer picoseconds and every
//! bandwidth is turned into a whole number of picoseconds per byte at construction, so durations
//! add exactly (a copy of `a + b` bytes takes exactly as long as copies of `a` and `b` minus one
//! latency) — which lets the PipeSwitch planner predict the simulator to the picosecond. Each
//! stream has a virtual clock (the time its last
//! operation ends), each engine has a busy-until time, and the host has a clock that advances
//! only when it synchronizes. An operation of duration `d` enqueued on stream `s` that runs on
//! engine `e` gets
//!
//! ```text
//!   start = max(clock[s], busy[e], host)        end = start + d
//!   clock[s] = end                              busy[e] = end
//! ```
//!
//! with four engines: H→D copy, D→H copy, D→D copy and compute (a kernel is taken to occupy the
//! whole GPU, so two streams' kernels serialize; copies in different directions and compute
//! overlap, as on a GPU with two copy engines). Engines serve operations in enqueue order, so a
//! later-enqueued copy never overtakes an earlier one: simpler than a real scheduler, and
//! deterministic. Durations:
//!
//! * a copy of `n` bytes on a link: `latency + n × ps_per_byte(link)`;
//! * a compute step: `launch_overhead + max(work, read bytes × ps_per_byte(memory))`.
//!
//! Events record the stream's clock; `wait_event` raises the waiting stream's clock to the event's
//! time; synchronizing raises the host clock to the stream's or event's time. Every figure the
//! simulator reports is therefore exact and repeatable, and tests may assert on the *model's*
//! times (that is not a wall-clock assertion).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};

use super::{
    check_copy, check_range, check_step, checksum, next_device_id, out_of_device_memory,
    ComputeStep, CopyDirection, Device, DeviceBuffer, Event, PinnedBuffer, Stream,
};

/// A copy link's model: fixed latency plus bytes over bandwidth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkModel {
    /// Sustained bandwidth in bytes per second (> 0).
    pub bytes_per_sec: u64,
    /// Fixed cost per copy in nanoseconds (DMA setup, doorbell).
    pub latency_ns: u64,
}

impl LinkModel {
    /// The whole picoseconds per byte the simulator uses for this link (at least 1).
    pub fn ps_per_byte(&self) -> u64 {
        ps_per_byte(self.bytes_per_sec)
    }

    /// The modelled duration of a copy of `bytes`, in picoseconds.
    pub fn copy_ps(&self, bytes: u64) -> u64 {
        (self.latency_ns.saturating_mul(1000))
            .saturating_add(bytes.saturating_mul(self.ps_per_byte()))
    }
}

/// `1e12 / bytes_per_sec` rounded to the nearest whole picosecond, at least 1.
pub(crate) fn ps_per_byte(bytes_per_sec: u64) -> u64 {
    let bps = bytes_per_sec.max(1);
    ((1_000_000_000_000 + bps / 2) / bps).max(1)
}

/// The configuration of a [`SimDevice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Device memory callers may allocate, in bytes.
    pub capacity_bytes: u64,
    /// Host→device link (pinned memory over PCIe).
    pub to_device: LinkModel,
    /// Device→host link.
    pub to_host: LinkModel,
    /// Device→device copies.
    pub on_device: LinkModel,
    /// Fixed cost of launching a compute step, in nanoseconds.
    pub launch_overhead_ns: u64,
    /// Device-memory read bandwidth of a compute step, bytes per second (> 0).
    pub memory_bytes_per_sec: u64,
    /// Whether to keep a [`SimOp`] trace of every operation (tests; costs memory).
    pub trace: bool,
}

impl Default for SimConfig {
    /// A 16 GiB GPU on PCIe 3.0 ×16 (the V100 testbed of PipeSwitch): 12 GB/s pinned copies each
    /// way with 5 µs latency, 900 GB/s on-device bandwidth, 4 µs kernel launch.
    fn default() -> SimConfig {
        SimConfig {
            capacity_bytes: 16 << 30,
            to_device: LinkModel {
                bytes_per_sec: 12_000_000_000,
                latency_ns: 5_000,
            },
            to_host: LinkModel {
                bytes_per_sec: 12_000_000_000,
                latency_ns: 5_000,
            },
            on_device: LinkModel {
                bytes_per_sec: 900_000_000_000,
                latency_ns: 2_000,
            },
            launch_overhead_ns: 4_000,
            memory_bytes_per_sec: 900_000_000_000,
            trace: false,
        }
    }
}

impl SimConfig {
    /// The whole picoseconds per byte a compute step takes to read device memory.
    pub fn memory_ps_per_byte(&self) -> u64 {
        ps_per_byte(self.memory_bytes_per_sec)
    }

    /// The modelled duration of a compute step that reads `read_bytes` with nominal `work`, in ps.
    pub fn compute_ps(&self, read_bytes: u64, work: Duration) -> u64 {
        let work_ps = u64::try_from(work.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_mul(1000);
        let read_ps = read_bytes.saturating_mul(ps_per_byte(self.memory_bytes_per_sec));
        self.launch_overhead_ns
            .saturating_mul(1000)
            .saturating_add(work_ps.max(read_ps))
    }
}

/// The engine an operation ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimEngine {
    /// The host→device copy engine.
    ToDevice,
    /// The device→host copy engine.
    ToHost,
    /// The device→device copy engine.
    OnDevice,
    /// The compute engine (kernels).
    Compute,
}

impl SimEngine {
    fn index(self) -> usize {
        match self {
            SimEngine::ToDevice => 0,
            SimEngine::ToHost => 1,
            SimEngine::OnDevice => 2,
            SimEngine::Compute => 3,
        }
    }
}

/// One operation as the simulator scheduled it (kept when [`SimConfig::trace`] is on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOp {
    /// The stream it was enqueued on.
    pub stream: Stream,
    /// The engine it ran on.
    pub engine: SimEngine,
    /// Bytes copied or read.
    pub bytes: u64,
    /// Virtual start time, ps.
    pub start_ps: u64,
    /// Virtual end time, ps.
    pub end_ps: u64,
}

struct SimState {
    buffers: HashMap<u64, Vec<u8>>,
    pinned: HashMap<u64, Vec<u8>>,
    next_id: u64,
    allocated: u64,
    allocations: u64,
    pinned_allocations: u64,
    stream_clock: Vec<u64>,
    event_time: Vec<Option<u64>>,
    engine_busy: [u64; 4],
    host_ps: u64,
    trace: Vec<SimOp>,
}

/// One end of a copy: a buffer in device memory or in pinned host memory.
#[derive(Clone, Copy)]
enum CopyEnd<'a> {
    Device(&'a DeviceBuffer),
    Pinned(&'a PinnedBuffer),
}

impl CopyEnd<'_> {
    /// The buffer's size in bytes.
    fn bytes(self) -> u64 {
        match self {
            CopyEnd::Device(buf) => buf.bytes,
            CopyEnd::Pinned(buf) => buf.bytes,
        }
    }

    /// Whether both ends name one buffer (ids are unique only within one table).
    fn same_buffer(self, other: CopyEnd<'_>) -> bool {
        match (self, other) {
            (CopyEnd::Device(a), CopyEnd::Device(b)) => a.id == b.id,
            (CopyEnd::Pinned(a), CopyEnd::Pinned(b)) => a.id == b.id,
            _ => false,
        }
    }

    /// The buffer's bytes in the simulator's tables (`None` once freed).
    fn memory(self, st: &mut SimState) -> Option<&mut Vec<u8>> {
        match self {
            CopyEnd::Device(buf) => st.buffers.get_mut(&buf.id),
            CopyEnd::Pinned(buf) => st.pinned.get_mut(&buf.id),
        }
    }
}

/// A deterministic simulated GPU (see the module note for the timing model).
pub struct SimDevice {
    id: u64,
    config: SimConfig,
    state: Mutex<SimState>,
}

impl SimDevice {
    /// A simulated device with `config`. Zero bandwidths are refused.
    pub fn new(config: SimConfig) -> Result<SimDevice> {
        for (name, bw) in [
            ("to_device.bytes_per_sec", config.to_device.bytes_per_sec),
            ("to_host.bytes_per_sec", config.to_host.bytes_per_sec),
            ("on_device.bytes_per_sec", config.on_device.bytes_per_sec),
            ("memory_bytes_per_sec", config.memory_bytes_per_sec),
        ] {
            if bw == 0 {
                return Err(Error::invalid(format!(
                    "simulated device: {name} is 0; give a bandwidth above 0 bytes/s"
                )));
            }
        }
        Ok(SimDevice {
            id: next_device_id(),
            config,
            state: Mutex::new(SimState {
                buffers: HashMap::new(),
                pinned: HashMap::new(),
                next_id: 1,
                allocated: 0,
                allocations: 0,
                pinned_allocations: 0,
                stream_clock: Vec::new(),
                event_time: Vec::new(),
                engine_busy: [0; 4],
                host_ps: 0,
                trace: Vec::new(),
            }),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The host's virtual clock: the latest time the host synchronized on, ps.
    pub fn host_time_ps(&self) -> Result<u64> {
        Ok(self.state()?.host_ps)
    }

    /// The virtual time at which everything enqueued on `stream` so far ends, ps.
    pub fn stream_time_ps(&self, stream: Stream) -> Result<u64> {
        let st = self.state()?;
        let i = self.stream_index(&st, stream)?;
        Ok(st.stream_clock[i])
    }

    /// The virtual time `event` was recorded at (ps), or `None` if never recorded.
    pub fn event_time_ps(&self, event: Event) -> Result<Option<u64>> {
        let st = self.state()?;
        let i = self.event_index(&st, event)?;
        Ok(st.event_time[i])
    }

    /// How many device allocations were ever made (frees do not decrease it).
    pub fn allocation_count(&self) -> Result<u64> {
        Ok(self.state()?.allocations)
    }

    /// How many pinned host allocations were ever made.
    pub fn pinned_allocation_count(&self) -> Result<u64> {
        Ok(self.state()?.pinned_allocations)
    }

    /// How many streams and events were ever created, as `(streams, events)`.
    pub fn stream_and_event_count(&self) -> Result<(usize, usize)> {
        let st = self.state()?;
        Ok((st.stream_clock.len(), st.event_time.len()))
    }

    /// The operations scheduled so far (empty unless [`SimConfig::trace`] is on).
    pub fn trace(&self) -> Result<Vec<SimOp>> {
        Ok(self.state()?.trace.clone())
    }

    /// Forgets the trace kept so far.
    pub fn clear_trace(&self) -> Result<()> {
        self.state()?.trace.clear();
        Ok(())
    }

    fn state(&self) -> Result<MutexGuard<'_, SimState>> {
        self.state
            .lock()
            .map_err(|_| Error::internal("simulated device state poisoned by a panicking thread"))
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

    fn stream_index(&self, st: &SimState, stream: Stream) -> Result<usize> {
        self.check_device("stream", stream.device)?;
        let i = stream.index as usize;
        if i < st.stream_clock.len() {
            Ok(i)
        } else {
            Err(Error::invalid(format!(
                "stream {i} does not exist on this device"
            )))
        }
    }

    fn event_index(&self, st: &SimState, event: Event) -> Result<usize> {
        self.check_device("event", event.device)?;
        let i = event.index as usize;
        if i < st.event_time.len() {
            Ok(i)
        } else {
            Err(Error::invalid(format!(
                "event {i} does not exist on this device"
            )))
        }
    }

    fn check_buffer(&self, st: &SimState, buf: &DeviceBuffer) -> Result<()> {
        self.check_device("device buffer", buf.device)?;
        if st.buffers.contains_key(&buf.id) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("device buffer {} was already freed", buf.id),
            ))
        }
    }

    fn check_pinned(&self, st: &SimState, buf: &PinnedBuffer) -> Result<()> {
        self.check_device("pinned buffer", buf.device)?;
        if st.pinned.contains_key(&buf.id) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("pinned buffer {} was already freed", buf.id),
            ))
        }
    }

    /// Schedules an operation of `duration_ps` on `engine` after everything `stream` waits for.
    fn schedule(
        &self,
        st: &mut SimState,
        stream: usize,
        engine: SimEngine,
        bytes: u64,
        duration_ps: u64,
    ) {
        let e = engine.index();
        let start = st.stream_clock[stream]
            .max(st.engine_busy[e])
            .max(st.host_ps);
        let end = start.saturating_add(duration_ps);
        st.stream_clock[stream] = end;
        st.engine_busy[e] = end;
        if self.config.trace {
            st.trace.push(SimOp {
                stream: Stream {
                    device: self.id,
                    index: stream as u32,
                },
                engine,
                bytes,
                start_ps: start,
                end_ps: end,
            });
        }
    }

    /// Checks that a copy's end is a live buffer of this device.
    fn check_end(&self, st: &SimState, end: CopyEnd<'_>) -> Result<()> {
        match end {
            CopyEnd::Device(buf) => self.check_buffer(st, buf),
            CopyEnd::Pinned(buf) => self.check_pinned(st, buf),
        }
    }

    /// The one copy path behind `copy_to_device`, `copy_to_host` and `copy_on_device`: they
    /// differ only in which memory each end lives in and in the engine and link that time them.
    fn copy(
        &self,
        stream: Stream,
        direction: CopyDirection,
        (src, src_offset): (CopyEnd<'_>, u64),
        (dst, dst_offset): (CopyEnd<'_>, u64),
        bytes: u64,
    ) -> Result<()> {
        let mut st = self.state()?;
        let s = self.stream_index(&st, stream)?;
        self.check_end(&st, src)?;
        self.check_end(&st, dst)?;
        let same_buffer = src.same_buffer(dst);
        check_copy(
            direction,
            (src.bytes(), src_offset),
            (dst.bytes(), dst_offset),
            bytes,
            same_buffer,
        )?;
        let st = &mut *st;
        let (from_range, to_at) = (at(src_offset)..at(src_offset + bytes), at(dst_offset));
        if same_buffer {
            if let Some(mem) = src.memory(st) {
                mem.copy_within(from_range, to_at);
            }
        } else {
            // Take the destination's bytes out of their table for the copy, so the source (which
            // may live in the same table) can be borrowed beside them without a temporary copy.
            let mut to = dst.memory(st).map(std::mem::take);
            if let (Some(to), Some(from)) = (to.as_mut(), src.memory(st)) {
                to[to_at..to_at + from_range.len()].copy_from_slice(&from[from_range]);
            }
            if let (Some(to), Some(slot)) = (to, dst.memory(st)) {
                *slot = to;
            }
        }
        let (engine, link) = match direction {
            CopyDirection::ToDevice => (SimEngine::ToDevice, &self.config.to_device),
            CopyDirection::ToHost => (SimEngine::ToHost, &self.config.to_host),
            CopyDirection::OnDevice => (SimEngine::OnDevice, &self.config.on_device),
        };
        self.schedule(st, s, engine, bytes, link.copy_ps(bytes));
        Ok(())
    }

    fn host_buffer(bytes: u64, what: &str) -> Result<Vec<u8>> {
        let n = usize::try_from(bytes).map_err(|_| {
            Error::invalid(format!("{what} of {bytes} bytes exceeds the address space"))
        })?;
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| {
            Error::new(
                ErrorKind::OutOfLocalMemory,
                format!("{what}: host memory for {bytes} bytes is not available; allocate less"),
            )
        })?;
        v.resize(n, 0);
        Ok(v)
    }

    fn positive(bytes: u64, what: &str) -> Result<()> {
        if bytes == 0 {
            Err(Error::invalid(format!(
                "{what}: size 0; allocate at least one byte"
            )))
        } else {
            Ok(())
        }
    }
}

/// `usize` view of an offset already checked against a buffer that lives in host memory.
fn at(x: u64) -> usize {
    // In range: every offset is checked against a Vec's length (a usize) before use.
    x as usize
}

impl Device for SimDevice {
    fn describe(&self) -> String {
        format!(
            "simulated GPU, {} MiB, H→D {:.1} GB/s",
            self.config.capacity_bytes >> 20,
            self.config.to_device.bytes_per_sec as f64 / 1e9
        )
    }

    fn capacity_bytes(&self) -> u64 {
        self.config.capacity_bytes
    }

    fn allocated_bytes(&self) -> u64 {
        self.state().map(|s| s.allocated).unwrap_or(0)
    }

    fn alloc(&self, bytes: u64) -> Result<DeviceBuffer> {
        Self::positive(bytes, "device allocation")?;
        let mut st = self.state()?;
        let cap = self.config.capacity_bytes;
        if bytes > cap.saturating_sub(st.allocated) {
            return Err(out_of_device_memory(
                "simulated GPU",
                bytes,
                st.allocated,
                cap,
            ));
        }
        let mem = Self::host_buffer(bytes, "simulated device allocation")?;
        let id = st.next_id;
        st.next_id += 1;
        st.buffers.insert(id, mem);
        st.allocated += bytes;
        st.allocations += 1;
        Ok(DeviceBuffer {
            device: self.id,
            id,
            bytes,
        })
    }

    fn free(&self, buffer: DeviceBuffer) -> Result<()> {
        let mut st = self.state()?;
        self.check_buffer(&st, &buffer)?;
        st.buffers.remove(&buffer.id);
        st.allocated -= buffer.bytes;
        Ok(())
    }

    fn alloc_pinned(&self, bytes: u64) -> Result<PinnedBuffer> {
        Self::positive(bytes, "pinned allocation")?;
        let mem = Self::host_buffer(bytes, "pinned host allocation")?;
        let mut st = self.state()?;
        let id = st.next_id;
        st.next_id += 1;
        st.pinned.insert(id, mem);
        st.pinned_allocations += 1;
        Ok(PinnedBuffer {
            device: self.id,
            id,
            bytes,
        })
    }

    fn free_pinned(&self, buffer: PinnedBuffer) -> Result<()> {
        let mut st = self.state()?;
        self.check_pinned(&st, &buffer)?;
        st.pinned.remove(&buffer.id);
        Ok(())
    }

    fn write_pinned(&self, buffer: &PinnedBuffer, offset: u64, data: &[u8]) -> Result<()> {
        let mut st = self.state()?;
        self.check_pinned(&st, buffer)?;
        check_range("pinned write", buffer.bytes, offset, data.len() as u64)?;
        if let Some(mem) = st.pinned.get_mut(&buffer.id) {
            mem[at(offset)..at(offset) + data.len()].copy_from_slice(data);
        }
        Ok(())
    }

    fn read_pinned(&self, buffer: &PinnedBuffer, offset: u64, out: &mut [u8]) -> Result<()> {
        let st = self.state()?;
        self.check_pinned(&st, buffer)?;
        check_range("pinned read", buffer.bytes, offset, out.len() as u64)?;
        if let Some(mem) = st.pinned.get(&buffer.id) {
            out.copy_from_slice(&mem[at(offset)..at(offset) + out.len()]);
        }
        Ok(())
    }

    fn create_stream(&self) -> Result<Stream> {
        let mut st = self.state()?;
        let index = u32::try_from(st.stream_clock.len())
            .map_err(|_| Error::invalid("simulated device: too many streams (2^32)"))?;
        let now = st.host_ps;
        st.stream_clock.push(now);
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
        self.copy(
            stream,
            CopyDirection::ToDevice,
            (CopyEnd::Pinned(src), src_offset),
            (CopyEnd::Device(dst), dst_offset),
            bytes,
        )
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
        self.copy(
            stream,
            CopyDirection::ToHost,
            (CopyEnd::Device(src), src_offset),
            (CopyEnd::Pinned(dst), dst_offset),
            bytes,
        )
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
        self.copy(
            stream,
            CopyDirection::OnDevice,
            (CopyEnd::Device(src), src_offset),
            (CopyEnd::Device(dst), dst_offset),
            bytes,
        )
    }

    fn launch(&self, stream: Stream, step: &ComputeStep<'_>) -> Result<()> {
        check_step(step)?;
        let mut st = self.state()?;
        let s = self.stream_index(&st, stream)?;
        let mut read_bytes = 0;
        if let Some(r) = step.reads {
            self.check_buffer(&st, r.buffer)?;
            read_bytes = r.bytes;
            if let Some((out, off)) = step.checksum_into {
                self.check_buffer(&st, out)?;
                let sum = st
                    .buffers
                    .get(&r.buffer.id)
                    .map(|m| checksum(&m[at(r.offset)..at(r.offset + r.bytes)]))
                    .unwrap_or(0);
                if let Some(mem) = st.buffers.get_mut(&out.id) {
                    let slot = &mut mem[at(off)..at(off) + 8];
                    let mut word = [0u8; 8];
                    word.copy_from_slice(slot);
                    let v = u64::from_le_bytes(word).wrapping_add(sum);
                    slot.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        let d = self.config.compute_ps(read_bytes, step.work);
        self.schedule(&mut st, s, SimEngine::Compute, read_bytes, d);
        Ok(())
    }

    fn create_event(&self) -> Result<Event> {
        let mut st = self.state()?;
        let index = u32::try_from(st.event_time.len())
            .map_err(|_| Error::invalid("simulated device: too many events (2^32)"))?;
        st.event_time.push(None);
        Ok(Event {
            device: self.id,
            index,
        })
    }

    fn record_event(&self, event: Event, stream: Stream) -> Result<()> {
        let mut st = self.state()?;
        let s = self.stream_index(&st, stream)?;
        let e = self.event_index(&st, event)?;
        // An event recorded on an idle stream completes when the host enqueues it.
        let t = st.stream_clock[s].max(st.host_ps);
        st.event_time[e] = Some(t);
        Ok(())
    }

    fn wait_event(&self, stream: Stream, event: Event) -> Result<()> {
        let mut st = self.state()?;
        let s = self.stream_index(&st, stream)?;
        let e = self.event_index(&st, event)?;
        if let Some(t) = st.event_time[e] {
            st.stream_clock[s] = st.stream_clock[s].max(t);
        }
        Ok(())
    }

    fn synchronize_event(&self, event: Event) -> Result<()> {
        let mut st = self.state()?;
        let e = self.event_index(&st, event)?;
        if let Some(t) = st.event_time[e] {
            st.host_ps = st.host_ps.max(t);
        }
        Ok(())
    }

    fn synchronize_stream(&self, stream: Stream) -> Result<()> {
        let mut st = self.state()?;
        let s = self.stream_index(&st, stream)?;
        st.host_ps = st.host_ps.max(st.stream_clock[s]);
        Ok(())
    }

    fn elapsed(&self, start: Event, end: Event) -> Result<Duration> {
        let st = self.state()?;
        let a = self.event_index(&st, start)?;
        let b = self.event_index(&st, end)?;
        match (st.event_time[a], st.event_time[b]) {
            (Some(t0), Some(t1)) if t1 >= t0 => Ok(Duration::from_nanos((t1 - t0) / 1000)),
            (Some(t0), Some(t1)) => Err(Error::invalid(format!(
                "elapsed: end event (at {t1} ps) precedes start event (at {t0} ps); swap them"
            ))),
            _ => Err(Error::invalid(
                "elapsed: an event was never recorded; record both events before measuring",
            )),
        }
    }
}
