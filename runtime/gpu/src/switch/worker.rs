//! The switcher: one device pool, an active and a standby worker, and the pipelined switch.
//!
//! Everything a switch needs is made in [`Switcher::new`]: the one device pool (PipeSwitch §4.3,
//! unified memory management: weights always land there, no allocation per switch), and two
//! workers (§4.4, active/standby: each with a copy stream, a compute stream, a ring of ready
//! events, start/done events and a checksum slot). A switch to model B
//!
//! ```text
//!   standby.copy:    wait(active.done) rec(start) [copy g1] rec(r1) [copy g2] rec(r2) ...
//!   standby.compute:                   wait(r1) [L0][L1].. wait(r2) [L..]...  rec(done)
//! ```
//!
//! 1. makes the standby's copy stream wait (on the GPU, not the host) until the active worker's
//!    last forward pass is done — the old task is over, its pool bytes may be overwritten;
//! 2. copies each group of B's layers into the pool at the layer offsets and records the group's
//!    ready event; the compute stream waits for it and runs the group's layers, each reading its
//!    weights from the pool and adding their checksum to the worker's slot;
//! 3. records `done`, waits for it, and swaps the roles: the standby is now active.
//!
//! Ready events are reused round-robin; that is safe because each group's wait is enqueued
//! before its event is recorded again (a wait captures the event's state when it is enqueued).
//! A switch allocates nothing and creates no stream or event — the tests count them.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use farmem_error::{Error, ErrorKind, Result};

use super::model::HostModel;
use super::plan::GroupPlan;
use crate::device::{ComputeStep, Device, DeviceBuffer, DeviceRange, Event, PinnedBuffer, Stream};

/// The configuration of a [`Switcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Bytes of the device pool: at least the largest model's [`HostModel::pool_bytes`].
    pub pool_bytes: u64,
    /// Ready events per worker (reused round-robin; any number of groups works).
    pub ready_events: usize,
}

/// What one switch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchOutcome {
    /// The model switched to.
    pub model: String,
    /// Start-up time: from the first copy until the last layer finished, by device events.
    pub startup: Duration,
    /// The groups used.
    pub groups: usize,
    /// The plan's predicted start-up time, ps.
    pub predicted_ps: u64,
}

struct Worker {
    copy: Stream,
    compute: Stream,
    ready: Vec<Event>,
    start: Event,
    done: Event,
    slot: DeviceBuffer,
    readback: PinnedBuffer,
    expected: u64,
}

impl Worker {
    fn new(device: &dyn Device, ready_events: usize) -> Result<Worker> {
        let copy = device.create_stream()?;
        let compute = device.create_stream()?;
        let ready = (0..ready_events)
            .map(|_| device.create_event())
            .collect::<Result<Vec<_>>>()?;
        let start = device.create_event()?;
        let done = device.create_event()?;
        let slot = device.alloc(8)?;
        let readback = device.alloc_pinned(8)?;
        device.write_pinned(&readback, 0, &[0; 8])?;
        device.copy_to_device(compute, &readback, 0, &slot, 0, 8)?;
        device.synchronize_stream(compute)?;
        Ok(Worker {
            copy,
            compute,
            ready,
            start,
            done,
            slot,
            readback,
            expected: 0,
        })
    }
}

/// Switches a device between models with pipelined transmission (PipeSwitch, OSDI'20).
pub struct Switcher {
    device: Arc<dyn Device>,
    pool: Option<DeviceBuffer>,
    workers: Vec<Worker>,
    active: usize,
    has_run: bool,
}

impl Switcher {
    /// Allocates the pool and prepares both workers.
    pub fn new(device: Arc<dyn Device>, config: SwitchConfig) -> Result<Switcher> {
        if config.ready_events == 0 {
            return Err(Error::invalid(
                "switcher: ready_events is 0; give each worker at least one ready event",
            ));
        }
        let pool = device.alloc(config.pool_bytes)?;
        let mut workers = Vec::with_capacity(2);
        for _ in 0..2 {
            match Worker::new(device.as_ref(), config.ready_events) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    let _ = device.free(pool);
                    for w in workers {
                        let _ = device.free(w.slot);
                        let _ = device.free_pinned(w.readback);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Switcher {
            device,
            pool: Some(pool),
            workers,
            active: 0,
            has_run: false,
        })
    }

    /// The device it switches.
    pub fn device(&self) -> &Arc<dyn Device> {
        &self.device
    }

    /// Switches to `model` with `plan` and runs its first forward pass; returns when it is done.
    pub fn switch_to(&mut self, model: &HostModel, plan: &GroupPlan) -> Result<SwitchOutcome> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| Error::internal("switcher used after its pool was freed"))?;
        if !Arc::ptr_eq(model.device(), &self.device) {
            return Err(Error::invalid(format!(
                "model {} was pinned for another device; load it with the switcher's device",
                model.profile().name
            )));
        }
        if model.pool_bytes() > pool.bytes() {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!(
                    "model {} needs {} pool bytes, the pool has {}; make the pool larger",
                    model.profile().name,
                    model.pool_bytes(),
                    pool.bytes()
                ),
            ));
        }
        check_plan(plan, model.profile().layers.len())?;
        let dev = self.device.as_ref();
        let weights = model.weights()?;
        let offsets = model.offsets();
        let spans = model.spans();
        let layers = &model.profile().layers;
        let previous_done = self.workers[self.active].done;
        let w = &mut self.workers[1 - self.active];
        if self.has_run {
            dev.wait_event(w.copy, previous_done)?;
        }
        dev.record_event(w.start, w.copy)?;
        for (gi, group) in plan.groups.iter().enumerate() {
            let first = offsets[group.start];
            let bytes: u64 = spans[group.clone()].iter().sum();
            dev.copy_to_device(w.copy, weights, first, pool, first, bytes)?;
            let ready = w.ready[gi % w.ready.len()];
            dev.record_event(ready, w.copy)?;
            dev.wait_event(w.compute, ready)?;
            for l in group.clone() {
                let step = ComputeStep {
                    reads: Some(DeviceRange {
                        buffer: pool,
                        offset: offsets[l],
                        bytes: layers[l].bytes,
                    }),
                    checksum_into: Some((&w.slot, 0)),
                    work: layers[l].compute,
                };
                dev.launch(w.compute, &step)?;
            }
        }
        dev.record_event(w.done, w.compute)?;
        dev.synchronize_event(w.done)?;
        let startup = dev.elapsed(w.start, w.done)?;
        w.expected = w.expected.wrapping_add(model.checksum());
        self.active = 1 - self.active;
        self.has_run = true;
        Ok(SwitchOutcome {
            model: model.profile().name.clone(),
            startup,
            groups: plan.groups.len(),
            predicted_ps: plan.predicted_ps,
        })
    }

    /// Reads both workers' checksum slots and checks them against the models they ran: proof
    /// that every layer read its own weights, fully transferred, when it ran.
    pub fn verify_checksums(&self) -> Result<()> {
        let dev = self.device.as_ref();
        for (i, w) in self.workers.iter().enumerate() {
            dev.copy_to_host(w.compute, &w.slot, 0, &w.readback, 0, 8)?;
            dev.synchronize_stream(w.compute)?;
            let mut word = [0u8; 8];
            dev.read_pinned(&w.readback, 0, &mut word)?;
            let got = u64::from_le_bytes(word);
            if got != w.expected {
                return Err(Error::internal(format!(
                    "worker {i}: layers summed to {got:#x}, the weights switched in sum to \
                     {:#x}: a layer ran before its weights arrived or read the wrong bytes",
                    w.expected
                )));
            }
        }
        Ok(())
    }
}

fn check_plan(plan: &GroupPlan, layers: usize) -> Result<()> {
    let mut next = 0;
    for g in &plan.groups {
        if g.start != next || g.end <= g.start || g.end > layers {
            return Err(bad_plan(g, next, layers));
        }
        next = g.end;
    }
    if next != layers {
        return Err(Error::invalid(format!(
            "plan covers layers 0..{next} of a {layers}-layer model; plan for this model"
        )));
    }
    Ok(())
}

fn bad_plan(g: &Range<usize>, next: usize, layers: usize) -> Error {
    Error::invalid(format!(
        "plan group {g:?} does not continue at layer {next} (model of {layers} layers); plan for \
         this model"
    ))
}

impl Drop for Switcher {
    fn drop(&mut self) {
        let dev = self.device.as_ref();
        for w in self.workers.drain(..) {
            let _ = dev.synchronize_stream(w.copy);
            let _ = dev.synchronize_stream(w.compute);
            let _ = dev.free(w.slot);
            let _ = dev.free_pinned(w.readback);
        }
        if let Some(pool) = self.pool.take() {
            let _ = dev.free(pool);
        }
    }
}
