//! What a device charges for the operations of a switch: the inputs of the grouping planner.
//!
//! For the simulator the costs are read off its configuration and are exact. For any device
//! (a real GPU) [`CostModel::calibrate`] measures them with events: back-to-back copies of two
//! sizes give the per-byte time (slope) and per-copy overhead (intercept), back-to-back empty
//! compute steps give the launch cost, and a checksumming step over a large range gives the
//! read time per byte — the profiling PipeSwitch does once per model and GPU before planning.

use std::time::Duration;

use farmem_error::Result;

use super::model::{layer_span, ModelProfile};
use super::plan::PlanCosts;
use crate::device::{ComputeStep, Device, DeviceRange, SimConfig};

/// A device's costs for switching, in picoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostModel {
    /// Host→device copy time per byte.
    pub copy_ps_per_byte: u64,
    /// Fixed cost of one host→device copy (latency, and the ready event recorded after it).
    pub copy_overhead_ps: u64,
    /// Fixed cost of one compute step (kernel launch, back to back on a stream).
    pub launch_ps: u64,
    /// Device-memory read time per byte of a compute step.
    pub read_ps_per_byte: u64,
}

/// Bytes of the large calibration copy and read.
const CALIBRATION_BYTES: u64 = 64 << 20;
/// Bytes of the small calibration copy.
const SMALL_BYTES: u64 = 4096;
/// Repetitions of each small operation.
const REPEATS: u32 = 32;

/// `a / b` rounded to the nearest integer (`b` > 0).
fn div_round(a: u64, b: u64) -> u64 {
    (a + b / 2) / b
}

impl CostModel {
    /// The exact costs of a [`SimDevice`](crate::device::SimDevice) with `config`.
    pub fn for_sim(config: &SimConfig) -> CostModel {
        CostModel {
            copy_ps_per_byte: config.to_device.ps_per_byte(),
            copy_overhead_ps: config.to_device.latency_ns.saturating_mul(1000),
            launch_ps: config.launch_overhead_ns.saturating_mul(1000),
            read_ps_per_byte: config.memory_ps_per_byte(),
        }
    }

    /// Measures the costs of `device` with events (allocates and frees 128 MiB of device and
    /// 64 MiB of pinned memory for the duration of the call).
    pub fn calibrate(device: &dyn Device) -> Result<CostModel> {
        let stream = device.create_stream()?;
        let (e0, e1) = (device.create_event()?, device.create_event()?);
        let host = device.alloc_pinned(CALIBRATION_BYTES)?;
        let dev = device.alloc(CALIBRATION_BYTES)?;
        let slot = device.alloc(8)?;
        let result = (|| {
            let timed = |f: &dyn Fn() -> Result<()>| -> Result<u64> {
                device.record_event(e0, stream)?;
                f()?;
                device.record_event(e1, stream)?;
                device.synchronize_event(e1)?;
                Ok(u64::try_from(device.elapsed(e0, e1)?.as_nanos()).unwrap_or(u64::MAX) * 1000)
            };
            // Warm-up: first-touch and JIT costs stay out of the figures.
            device.copy_to_device(stream, &host, 0, &dev, 0, CALIBRATION_BYTES)?;
            device.synchronize_stream(stream)?;
            let small = timed(&|| {
                for _ in 0..REPEATS {
                    device.copy_to_device(stream, &host, 0, &dev, 0, SMALL_BYTES)?;
                }
                Ok(())
            })? / u64::from(REPEATS);
            let big =
                timed(&|| device.copy_to_device(stream, &host, 0, &dev, 0, CALIBRATION_BYTES))?;
            let copy_ps_per_byte =
                div_round(big.saturating_sub(small), CALIBRATION_BYTES - SMALL_BYTES).max(1);
            let copy_overhead_ps = small.saturating_sub(SMALL_BYTES * copy_ps_per_byte);
            let empty = ComputeStep {
                reads: None,
                checksum_into: None,
                work: Duration::ZERO,
            };
            let launch_ps = timed(&|| {
                for _ in 0..REPEATS {
                    device.launch(stream, &empty)?;
                }
                Ok(())
            })? / u64::from(REPEATS);
            let read = ComputeStep {
                reads: Some(DeviceRange {
                    buffer: &dev,
                    offset: 0,
                    bytes: CALIBRATION_BYTES,
                }),
                checksum_into: Some((&slot, 0)),
                work: Duration::ZERO,
            };
            let read_all = timed(&|| device.launch(stream, &read))?;
            let read_ps_per_byte =
                div_round(read_all.saturating_sub(launch_ps), CALIBRATION_BYTES).max(1);
            Ok(CostModel {
                copy_ps_per_byte,
                copy_overhead_ps,
                launch_ps,
                read_ps_per_byte,
            })
        })();
        device.synchronize_stream(stream)?;
        device.free(slot)?;
        device.free(dev)?;
        device.free_pinned(host)?;
        result
    }

    /// The planner's inputs for a model with `profile` on a device with these costs.
    pub fn plan_costs(&self, profile: &ModelProfile) -> PlanCosts {
        let compute_ps = profile
            .layers
            .iter()
            .map(|l| {
                let work = u64::try_from(l.compute.as_nanos())
                    .unwrap_or(u64::MAX)
                    .saturating_mul(1000);
                self.launch_ps
                    .saturating_add(work.max(l.bytes.saturating_mul(self.read_ps_per_byte)))
            })
            .collect();
        PlanCosts {
            span_bytes: profile.layers.iter().map(|l| layer_span(l.bytes)).collect(),
            compute_ps,
            group_overhead_ps: self.copy_overhead_ps,
            copy_ps_per_byte: self.copy_ps_per_byte,
        }
    }
}
