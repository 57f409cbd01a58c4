//! Runtime configuration of a [`FarMemory`](crate::FarMemory): one struct, one builder, no
//! compile-time constants.
//!
//! Watermarks are fractions of the local regions that are free: evacuator threads wake when the
//! free fraction falls below `low_watermark` and sleep again above `high_watermark`; mutators only
//! wait for memory below `hard_floor` (AIFM §4.3, "pauseless evacuation").

use std::time::Duration;

use farmem_error::{Error, Result};

use crate::pointer::MAX_OBJECT_BYTES;

/// The configuration of one far-memory instance. Build it with [`Config::builder`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes of local memory for cached objects (rounded down to whole regions).
    pub local_bytes: usize,
    /// Bytes per region of the local log (a power of two, at least 4 KiB).
    pub region_bytes: usize,
    /// Evacuator threads.
    pub evacuator_threads: usize,
    /// Free fraction below which evacuators start.
    pub low_watermark: f64,
    /// Free fraction at which evacuators stop.
    pub high_watermark: f64,
    /// Free fraction below which mutators may not take a region (the evacuator's reserve).
    pub hard_floor: f64,
    /// How many chunks ahead the stride prefetcher reads (0 turns prefetching off). The default,
    /// 64 (a 256 KiB lead with 4 KiB chunks), is chosen by `farmem-bench scan` over TCP at 10%
    /// local memory: a scan streams about as many bytes per round trip as the lead holds, so
    /// throughput grows with it (4 KiB chunks: depth 8 → 0.12 of raw TCP, 16 → 0.17, 32 → 0.28,
    /// 64 → 0.33) until per-chunk costs cap it (128 → 0.33); the lead stays a few percent of any
    /// sensible local budget, and the prefetcher never takes memory below the hard floor.
    pub prefetch_depth: usize,
    /// Bytes per container object ("chunk"); rounded down so a chunk holds a power-of-two number
    /// of elements. The default, 4 KiB, is chosen by `farmem-bench deref`: a scan at 10% local
    /// memory runs about 2.4x faster than with 1 KiB chunks (per-object costs: a pointer word, a
    /// header, a backend lookup), while 16 KiB chunks, though faster again for scans, fetch four
    /// times more bytes per random miss. Hot dereferences do not depend on it.
    ///
    /// Rechecked with `farmem-bench scan --variants 4096x64,16384x64,65536x16` (TCP, 10% local,
    /// 2 cores, medians of 6 runs) once the evacuator stopped polling and scanned chunks stopped
    /// being copied: CPU per scanned byte 0.68 ns (4 KiB), 0.53 (16 KiB), 0.52 (64 KiB), against
    /// 0.31-0.39 for raw TCP streaming; so a CPU-bound scan reaches about 0.46, 0.68 and 0.76 of
    /// raw TCP. Larger chunks would meet the scan target, but every container that takes the
    /// default (arrays, vectors and lists, in the facade's sessions too) would fetch 4x (16x)
    /// the bytes on each random miss, which `deref`, `fetch` and `evac` do not show because
    /// they fix their chunk size; so the default stays 4 KiB and scan-heavy containers should
    /// ask for 16 KiB.
    pub chunk_bytes: usize,
    /// How long a mutator that needs local memory for a write waits for the evacuator before
    /// failing with `OutOfLocalMemory`. The default, 2 s (as `farmem::Session`'s): at 200 ms
    /// (the earlier default) `farmem-bench scan`'s fill and the 1%-local differential test
    /// failed about one run in twenty on a loaded 2-core machine, where writing back a full
    /// budget of dirty chunks can take longer; a wait ends as soon as memory frees up, so a
    /// longer bound costs nothing when the evacuator keeps up.
    pub alloc_wait: Duration,
    /// How long the evacuator waits for old scopes to end before giving its claim back.
    pub grace_timeout: Duration,
    /// Open regions that mutator threads bump-allocate into (threads are spread over them).
    pub alloc_shards: usize,
    /// When a container's new chunks take their far capacity. `true` (the default): when they
    /// are created ([`Backend::create_zeroed`](crate::Backend::create_zeroed), one batch per
    /// growth), so a full backend is `OutOfFarMemory` from the array creation, push or
    /// `reserve` that needed them. `false`: at their first write-back. Growing then costs no
    /// request at all (over TCP no zeros are sent: `farmem-bench taxi` measured about 20 ms
    /// less per 8 MiB column created), and a full backend shows up later: as `OutOfFarMemory`
    /// from a write that needs local memory the evacuator cannot free (its write-backs fail)
    /// or from a `set` that writes through, and as the failed write-back in
    /// [`FarMemory::take_error`](crate::FarMemory::take_error). Either way new chunks are made
    /// locally on first use, never fetched.
    pub reserve_far_on_grow: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            local_bytes: 64 << 20,
            region_bytes: 256 << 10,
            evacuator_threads: 1,
            low_watermark: 0.25,
            high_watermark: 0.40,
            hard_floor: 0.05,
            prefetch_depth: 64,
            chunk_bytes: 4096,
            alloc_wait: Duration::from_secs(2),
            grace_timeout: Duration::from_millis(200),
            alloc_shards: std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4)
                .min(64),
            reserve_far_on_grow: true,
        }
    }
}

impl Config {
    /// A builder starting from the defaults (64 MiB local, 256 KiB regions, 4 KiB chunks).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// Number of whole regions of local memory.
    pub fn regions(&self) -> usize {
        self.local_bytes / self.region_bytes
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<()> {
        if !self.region_bytes.is_power_of_two() || self.region_bytes < 4096 {
            return Err(Error::invalid(format!(
                "region_bytes {} must be a power of two >= 4096",
                self.region_bytes
            )));
        }
        if self.region_bytes > 1 << 30 {
            return Err(Error::invalid(format!(
                "region_bytes {} exceeds 1 GiB",
                self.region_bytes
            )));
        }
        if self.regions() < 4 {
            return Err(Error::invalid(format!(
                "local_bytes {} holds {} regions of {} bytes; need at least 4 (raise local_bytes or lower region_bytes)",
                self.local_bytes,
                self.regions(),
                self.region_bytes
            )));
        }
        if self.regions() > u32::MAX as usize / 2 {
            return Err(Error::invalid(format!(
                "too many regions: {}",
                self.regions()
            )));
        }
        if self.chunk_bytes < 8 || self.chunk_bytes > MAX_OBJECT_BYTES {
            return Err(Error::invalid(format!(
                "chunk_bytes {} must be in 8..={MAX_OBJECT_BYTES}",
                self.chunk_bytes
            )));
        }
        if self.chunk_bytes + 16 > self.region_bytes / 2 {
            return Err(Error::invalid(format!(
                "chunk_bytes {} must fit twice in a region of {} bytes (with headers)",
                self.chunk_bytes, self.region_bytes
            )));
        }
        let (f, l, h) = (self.hard_floor, self.low_watermark, self.high_watermark);
        if !(0.0 <= f && f < l && l < h && h < 1.0) {
            return Err(Error::invalid(format!(
                "watermarks must satisfy 0 <= hard_floor ({f}) < low ({l}) < high ({h}) < 1"
            )));
        }
        if self.evacuator_threads == 0 || self.evacuator_threads > 64 {
            return Err(Error::invalid(format!(
                "evacuator_threads {} must be in 1..=64",
                self.evacuator_threads
            )));
        }
        if self.alloc_shards == 0 || self.alloc_shards > 1024 {
            return Err(Error::invalid(format!(
                "alloc_shards {} must be in 1..=1024",
                self.alloc_shards
            )));
        }
        Ok(())
    }
}

/// Builder of [`Config`]; every setter is optional.
#[derive(Clone, Debug)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Local memory budget in bytes.
    pub fn local_bytes(mut self, v: usize) -> Self {
        self.0.local_bytes = v;
        self
    }
    /// Region size in bytes (power of two).
    pub fn region_bytes(mut self, v: usize) -> Self {
        self.0.region_bytes = v;
        self
    }
    /// Number of evacuator threads.
    pub fn evacuator_threads(mut self, v: usize) -> Self {
        self.0.evacuator_threads = v;
        self
    }
    /// Low and high free-memory watermarks (fractions of regions).
    pub fn watermarks(mut self, low: f64, high: f64) -> Self {
        self.0.low_watermark = low;
        self.0.high_watermark = high;
        self
    }
    /// Hard floor (fraction of regions kept for the evacuator).
    pub fn hard_floor(mut self, v: f64) -> Self {
        self.0.hard_floor = v;
        self
    }
    /// Prefetch depth in chunks (0 disables the prefetcher).
    pub fn prefetch_depth(mut self, v: usize) -> Self {
        self.0.prefetch_depth = v;
        self
    }
    /// Chunk size in bytes.
    pub fn chunk_bytes(mut self, v: usize) -> Self {
        self.0.chunk_bytes = v;
        self
    }
    /// How long a write waits for local memory before `OutOfLocalMemory`.
    pub fn alloc_wait(mut self, v: Duration) -> Self {
        self.0.alloc_wait = v;
        self
    }
    /// How long the evacuator waits for old scopes before giving its claim back.
    pub fn grace_timeout(mut self, v: Duration) -> Self {
        self.0.grace_timeout = v;
        self
    }
    /// Sets [`Config::reserve_far_on_grow`].
    pub fn reserve_far_on_grow(mut self, v: bool) -> Self {
        self.0.reserve_far_on_grow = v;
        self
    }
    /// Number of open allocation regions shared by mutator threads.
    pub fn alloc_shards(mut self, v: usize) -> Self {
        self.0.alloc_shards = v;
        self
    }
    /// The validated configuration.
    pub fn build(self) -> Result<Config> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        assert!(Config::builder().build().is_ok());
        let e = Config::builder().local_bytes(4096).build().unwrap_err();
        assert!(e.context().contains("at least 4"), "{e}");
        assert!(Config::builder().region_bytes(5000).build().is_err());
        assert!(Config::builder().watermarks(0.5, 0.4).build().is_err());
        assert!(Config::builder().hard_floor(0.3).build().is_err());
        assert!(Config::builder().chunk_bytes(1 << 20).build().is_err());
        assert!(Config::builder().evacuator_threads(0).build().is_err());
    }
}
