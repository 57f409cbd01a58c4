//! [`CudaDevice`] in a build without the `cuda` feature: the same public API, every constructor
//! returns [`ErrorKind::Unsupported`](farmem_error::ErrorKind::Unsupported), so callers never
//! `#[cfg]`. The type has no values, so its [`Device`] methods can never run.

use std::time::Duration;

use farmem_error::{Error, Result};

use super::{ComputeStep, Device, DeviceBuffer, Event, PinnedBuffer, Stream};

/// A CUDA GPU. This build has no CUDA backend: [`CudaDevice::new`] always fails.
#[derive(Debug)]
pub enum CudaDevice {}

fn disabled() -> Error {
    Error::unsupported(
        "CUDA device: farmem-gpu was built without the `cuda` feature; rebuild with \
         `--features cuda` (and run on a machine with an NVIDIA driver)",
    )
}

impl CudaDevice {
    /// Always [`ErrorKind::Unsupported`](farmem_error::ErrorKind::Unsupported) in this build.
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        let _ = ordinal;
        Err(disabled())
    }

    /// Always [`ErrorKind::Unsupported`](farmem_error::ErrorKind::Unsupported) in this build.
    pub fn device_count() -> Result<usize> {
        Err(disabled())
    }

    /// The device's ordinal (unreachable: no value of this type exists).
    pub fn ordinal(&self) -> usize {
        match *self {}
    }
}

impl Device for CudaDevice {
    fn describe(&self) -> String {
        match *self {}
    }
    fn capacity_bytes(&self) -> u64 {
        match *self {}
    }
    fn allocated_bytes(&self) -> u64 {
        match *self {}
    }
    fn alloc(&self, _bytes: u64) -> Result<DeviceBuffer> {
        match *self {}
    }
    fn free(&self, _buffer: DeviceBuffer) -> Result<()> {
        match *self {}
    }
    fn alloc_pinned(&self, _bytes: u64) -> Result<PinnedBuffer> {
        match *self {}
    }
    fn free_pinned(&self, _buffer: PinnedBuffer) -> Result<()> {
        match *self {}
    }
    fn write_pinned(&self, _buffer: &PinnedBuffer, _offset: u64, _data: &[u8]) -> Result<()> {
        match *self {}
    }
    fn read_pinned(&self, _buffer: &PinnedBuffer, _offset: u64, _out: &mut [u8]) -> Result<()> {
        match *self {}
    }
    fn create_stream(&self) -> Result<Stream> {
        match *self {}
    }
    fn copy_to_device(
        &self,
        _stream: Stream,
        _src: &PinnedBuffer,
        _src_offset: u64,
        _dst: &DeviceBuffer,
        _dst_offset: u64,
        _bytes: u64,
    ) -> Result<()> {
        match *self {}
    }
    fn copy_to_host(
        &self,
        _stream: Stream,
        _src: &DeviceBuffer,
        _src_offset: u64,
        _dst: &PinnedBuffer,
        _dst_offset: u64,
        _bytes: u64,
    ) -> Result<()> {
        match *self {}
    }
    fn copy_on_device(
        &self,
        _stream: Stream,
        _src: &DeviceBuffer,
        _src_offset: u64,
        _dst: &DeviceBuffer,
        _dst_offset: u64,
        _bytes: u64,
    ) -> Result<()> {
        match *self {}
    }
    fn launch(&self, _stream: Stream, _step: &ComputeStep<'_>) -> Result<()> {
        match *self {}
    }
    fn create_event(&self) -> Result<Event> {
        match *self {}
    }
    fn record_event(&self, _event: Event, _stream: Stream) -> Result<()> {
        match *self {}
    }
    fn wait_event(&self, _stream: Stream, _event: Event) -> Result<()> {
        match *self {}
    }
    fn synchronize_event(&self, _event: Event) -> Result<()> {
        match *self {}
    }
    fn synchronize_stream(&self, _stream: Stream) -> Result<()> {
        match *self {}
    }
    fn elapsed(&self, _start: Event, _end: Event) -> Result<Duration> {
        match *self {}
    }
}
