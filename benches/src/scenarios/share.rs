//! `farmem-bench share`: TGS-style sharing of one GPU between a production and an opportunistic
//! tenant, on the simulated device's virtual time.
//!
//! Every figure is *virtual* time of [`SimDevice`]: exact and deterministic (the same arguments
//! print the same numbers on any machine), so the ratios do not depend on the host's noise.
//! The bytes are real (every copy and every page eviction moves real memory), only time is
//! modelled.
//!
//! The workload (all sizes and times are options):
//!
//! * **production**: a closed loop of iterations, each `copy in (6 MiB) → kernel (300 µs) → copy
//!   out (1 MiB)`, submitted step by step as a data-loading-bound job does; its compute engine
//!   sits idle during its copies. It holds a 96 MiB model in the shared pool, and every
//!   `pulse-every` (100) iterations it allocates a 16 MiB temporary for one iteration (a memory
//!   peak).
//! * **opportunistic**: kernels of 50 µs, each touching one page of its 152 MiB working set
//!   (four kernels per page, sweeping), as many as its control lets it launch. Before each
//!   launch it restores one page that production's peak evicted, so restore copies are paced
//!   like its kernels.
//!
//! The pool (256 MiB) is smaller than the two tenants' demand at production's peaks (264 MiB),
//! so each peak evicts opportunistic pages to host memory and they fault or flow back. In the
//! static split the opportunistic working set exceeds its half (128 MiB) all the time, and it
//! pages within its half: the memory a static split strands is part of what it costs.
//!
//! Four configurations, each run on a fresh device for `duration-ms` of virtual time:
//!
//! 1. *alone*: production only, the whole device;
//! 2. *uncontrolled*: both, the opportunistic tenant keeping `queue-depth` kernels queued (the
//!    compute engine serves kernels in submission order, so production's kernel waits behind
//!    the queue: time sharing without priority);
//! 3. *adaptive*: both, the opportunistic tenant behind a [`LaunchGate`] whose budget the TGS
//!    rate controller sets from production's throughput over windows of `window-iters`
//!    production iterations;
//! 4. *static split*: two half devices (half the memory, kernels take twice as long — half
//!    the SMs), production alone on one and the opportunistic tenant alone on the other.
//!
//! Samples differ in when the opportunistic tenant starts (after 0, 1, 2, … production
//! iterations); the table shows medians over samples.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use farmem_gpu::device::{
    ComputeStep, Device, DeviceBuffer, DeviceRange, Event, PinnedBuffer, SimConfig, SimDevice,
    Stream,
};
use farmem_gpu::share::{
    AllocationId, LaunchGate, PageStats, Priority, RateConfig, SharedDevice, TenantId,
};

use crate::{median, ratio, Error, Report, Result, Scenario};

/// The `share` scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "share",
    about: "TGS GPU sharing: production slowdown and opportunistic throughput, adaptive rate control vs none vs a static split (simulated GPU, virtual time)",
    run,
};

const MIB: u64 = 1 << 20;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "farmem-bench share",
    about = "TGS-style GPU sharing on the simulated device (virtual time: exact, deterministic)"
)]
struct Args {
    /// Virtual time simulated per configuration and sample, in milliseconds.
    #[arg(long, default_value_t = 400)]
    duration_ms: u64,
    /// Samples per configuration (each starts the opportunistic tenant one iteration later).
    #[arg(long, default_value_t = 3)]
    samples: u32,
    /// Shared device pool in MiB.
    #[arg(long, default_value_t = 256)]
    pool_mib: u64,
    /// Page size in KiB.
    #[arg(long, default_value_t = 1024)]
    page_kib: u64,
    /// Production model (always resident) in MiB.
    #[arg(long, default_value_t = 96)]
    prod_model_mib: u64,
    /// Production's temporary peak allocation in MiB.
    #[arg(long, default_value_t = 16)]
    prod_pulse_mib: u64,
    /// Production allocates the peak once every this many iterations (0: never).
    #[arg(long, default_value_t = 100)]
    pulse_every: u64,
    /// Production input copied host→device per iteration, KiB.
    #[arg(long, default_value_t = 6144)]
    prod_in_kib: u64,
    /// Production output copied device→host per iteration, KiB.
    #[arg(long, default_value_t = 1024)]
    prod_out_kib: u64,
    /// Production kernel time per iteration, µs.
    #[arg(long, default_value_t = 300)]
    prod_kernel_us: u64,
    /// Opportunistic working set in MiB.
    #[arg(long, default_value_t = 152)]
    opp_mib: u64,
    /// Opportunistic kernel time, µs.
    #[arg(long, default_value_t = 50)]
    opp_kernel_us: u64,
    /// Consecutive opportunistic kernels that touch the same page.
    #[arg(long, default_value_t = 4)]
    kernels_per_page: u64,
    /// Kernels the uncontrolled opportunistic tenant keeps queued.
    #[arg(long, default_value_t = 16)]
    queue_depth: u32,
    /// Production iterations per control window of the adaptive controller.
    #[arg(long, default_value_t = 4)]
    window_iters: u64,
    /// Kernels per window the controller adds after each quiet window (additive increase).
    /// Above the crate's TCP-like default of 1: a window holds some 40 opportunistic kernels,
    /// and one per window would take most of a run to climb back after each back-off.
    #[arg(long, default_value_t = 2.0)]
    additive_step: f64,
    /// Relative drop of production throughput below its recent best that counts as slowdown.
    #[arg(long, default_value_t = 0.02)]
    slowdown_threshold: f64,
}

/// Bytes a kernel reads from the page it touches (enough to prove the page is resident; the
/// kernel's time is its nominal work).
const KERNEL_READ_BYTES: u64 = 64 << 10;

fn run(args: &[String]) -> Result<Report> {
    let a = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if a.samples == 0 || a.duration_ms == 0 || a.window_iters == 0 || a.kernels_per_page == 0 {
        return Err(Error::invalid(
            "share: samples, duration-ms, window-iters and kernels-per-page must be at least 1",
        ));
    }
    if a.queue_depth == 0 {
        return Err(Error::invalid("share: queue-depth must be at least 1"));
    }
    let mut alone = Vec::new();
    let mut uncontrolled = Vec::new();
    let mut adaptive = Vec::new();
    let mut static_prod = Vec::new();
    let mut static_opp = Vec::new();
    let mut static_opp_fitting = Vec::new();
    for sample in 0..a.samples {
        let start_after = u64::from(sample);
        alone.push(simulate(&a, Half::Whole, true, None, start_after)?);
        uncontrolled.push(simulate(
            &a,
            Half::Whole,
            true,
            Some(Control::Queue(a.queue_depth)),
            start_after,
        )?);
        let rate = RateConfig {
            additive_step: a.additive_step,
            slowdown_threshold: a.slowdown_threshold,
            ..RateConfig::default()
        };
        let gate = LaunchGate::new(rate, 1)?;
        adaptive.push(simulate(
            &a,
            Half::Whole,
            true,
            Some(Control::Gate(Box::new(gate))),
            start_after,
        )?);
        static_prod.push(simulate(&a, Half::Half, true, None, start_after)?);
        static_opp.push(simulate(
            &a,
            Half::Half,
            false,
            Some(Control::Queue(a.queue_depth)),
            start_after,
        )?);
        // The same half with a working set that fits it: what the split costs in compute
        // alone, without the paging its stranded memory causes.
        let fitting = Args {
            opp_mib: a.opp_mib.min(a.pool_mib / 2),
            ..a.clone()
        };
        static_opp_fitting.push(simulate(
            &fitting,
            Half::Half,
            false,
            Some(Control::Queue(a.queue_depth)),
            start_after,
        )?);
    }
    let med =
        |runs: &[Outcome], f: fn(&Outcome) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let prod = |o: &Outcome| o.prod_iters_per_s;
    let opp = |o: &Outcome| o.opp_kernels_per_s;
    let prod_alone = med(&alone, prod);
    let prod_unc = med(&uncontrolled, prod);
    let prod_ada = med(&adaptive, prod);
    let prod_sta = med(&static_prod, prod);
    let opp_unc = med(&uncontrolled, opp);
    let opp_ada = med(&adaptive, opp);
    let opp_sta = med(&static_opp, opp);
    let opp_sta_fit = med(&static_opp_fitting, opp);
    let slowdown = |p: f64| 1.0 - ratio(p, prod_alone);
    let pages = |runs: &[Outcome], f: fn(&PageStats) -> u64| {
        median(&runs.iter().map(|o| f(&o.pages) as f64).collect::<Vec<_>>())
    };

    let mut r = Report::new(
        "share",
        &[
            "configuration",
            "prod iter/s",
            "prod slowdown",
            "opp kernels/s",
            "opp vs static",
            "evicted",
            "faulted",
            "restored",
        ],
    );
    let row = |r: &mut Report, name: &str, runs: &[Outcome], p: f64, o: Option<f64>| {
        r.row(&[
            name.to_string(),
            format!("{p:.1}"),
            format!("{:.1}%", 100.0 * slowdown(p)),
            o.map_or("-".into(), |o| format!("{o:.0}")),
            o.map_or("-".into(), |o| format!("{:.2}x", ratio(o, opp_sta))),
            format!("{:.0}", pages(runs, |s| s.evicted)),
            format!("{:.0}", pages(runs, |s| s.faulted)),
            format!("{:.0}", pages(runs, |s| s.restored)),
        ]);
    };
    row(&mut r, "production alone", &alone, prod_alone, None);
    row(
        &mut r,
        "uncontrolled sharing",
        &uncontrolled,
        prod_unc,
        Some(opp_unc),
    );
    row(
        &mut r,
        "adaptive rate control (TGS)",
        &adaptive,
        prod_ada,
        Some(opp_ada),
    );
    row(
        &mut r,
        "static split: production half",
        &static_prod,
        prod_sta,
        None,
    );
    r.row(&[
        "static split: opportunistic half".to_string(),
        "-".into(),
        "-".into(),
        format!("{opp_sta:.0}"),
        "1.00x".into(),
        format!("{:.0}", pages(&static_opp, |s| s.evicted)),
        format!("{:.0}", pages(&static_opp, |s| s.faulted)),
        format!("{:.0}", pages(&static_opp, |s| s.restored)),
    ]);

    let demand_mib = a.prod_model_mib + a.prod_pulse_mib + a.opp_mib;
    r.figure("virtual_ms_per_run", a.duration_ms);
    r.figure("samples", a.samples);
    r.figure("pool_mib", a.pool_mib);
    r.figure("peak_demand_mib", demand_mib);
    r.figure_f64("prod_alone_iters_per_s", prod_alone);
    r.figure_f64("prod_uncontrolled_iters_per_s", prod_unc);
    r.figure_f64("prod_adaptive_iters_per_s", prod_ada);
    r.figure_f64("prod_static_iters_per_s", prod_sta);
    r.figure_f64("prod_slowdown_uncontrolled", slowdown(prod_unc));
    r.figure_f64("prod_slowdown_adaptive", slowdown(prod_ada));
    r.figure_f64("prod_slowdown_static", slowdown(prod_sta));
    r.figure_f64("opp_uncontrolled_kernels_per_s", opp_unc);
    r.figure_f64("opp_adaptive_kernels_per_s", opp_ada);
    r.figure_f64("opp_static_kernels_per_s", opp_sta);
    r.figure_f64("opp_adaptive_vs_static", ratio(opp_ada, opp_sta));
    r.figure_f64("opp_static_fitting_kernels_per_s", opp_sta_fit);
    r.figure_f64(
        "opp_adaptive_vs_static_fitting",
        ratio(opp_ada, opp_sta_fit),
    );
    r.figure_f64("pages_evicted_adaptive", pages(&adaptive, |s| s.evicted));
    r.figure_f64("pages_faulted_adaptive", pages(&adaptive, |s| s.faulted));
    r.figure_f64("pages_restored_adaptive", pages(&adaptive, |s| s.restored));
    r.figure_f64(
        "pages_faulted_static_opp",
        pages(&static_opp, |s| s.faulted),
    );
    r.figure_f64(
        "controller_decreases",
        med(&adaptive, |o| o.controller_decreases as f64),
    );
    r.figure_f64(
        "controller_final_rate_per_window",
        med(&adaptive, |o| o.controller_final_rate),
    );
    r.note(format!(
        "virtual time of the simulated GPU (exact, deterministic): {} ms per run, median of {} \
         samples; pool {} MiB, peak demand {} MiB (production {}+{} MiB, opportunistic {} MiB)",
        a.duration_ms,
        a.samples,
        a.pool_mib,
        demand_mib,
        a.prod_model_mib,
        a.prod_pulse_mib,
        a.opp_mib
    ));
    r.note(format!(
        "static split with an opportunistic working set capped to its half (no paging): {:.0} \
         kernels/s; adaptive is {:.2}x that",
        opp_sta_fit,
        ratio(opp_ada, opp_sta_fit)
    ));
    r.note(format!(
        "adaptive controller: {:.0} back-offs, final budget {:.0} kernels per {}-iteration window",
        med(&adaptive, |o| o.controller_decreases as f64),
        med(&adaptive, |o| o.controller_final_rate),
        a.window_iters
    ));
    r.target(
        "prod_slowdown_adaptive",
        "production slowdown <= 5% under adaptive rate control",
        slowdown(prod_ada) <= 0.05,
    );
    r.target(
        "opp_adaptive_vs_static",
        "opportunistic throughput with the controller >= static half split (TGS: higher)",
        ratio(opp_ada, opp_sta) >= 1.0,
    );
    Ok(r)
}

/// Which device a run gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    /// The whole pool and full-speed kernels.
    Whole,
    /// Half the pool; kernels take twice their nominal work (half the SMs).
    Half,
}

/// How the opportunistic tenant's launches are governed.
enum Control {
    /// No control: keep this many kernels queued.
    Queue(u32),
    /// The TGS launch gate.
    Gate(Box<LaunchGate>),
}

/// The figures of one run.
struct Outcome {
    prod_iters_per_s: f64,
    opp_kernels_per_s: f64,
    pages: PageStats,
    controller_decreases: u64,
    controller_final_rate: f64,
}

/// Virtual time at which `event` completes, in picoseconds.
fn event_ps(dev: &SimDevice, event: Event) -> Result<u64> {
    dev.event_time_ps(event)?
        .ok_or_else(|| Error::internal("share: an event recorded just now reads as unrecorded"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    CopyIn,
    Kernel,
    CopyOut,
}

/// The production tenant: a closed loop of copy-in, kernel, copy-out iterations.
struct Production {
    tenant: TenantId,
    stream: Stream,
    event: Event,
    model: AllocationId,
    model_pages: u32,
    pulse: Option<AllocationId>,
    input_host: PinnedBuffer,
    input_dev: DeviceBuffer,
    output_dev: DeviceBuffer,
    output_host: PinnedBuffer,
    step: Step,
    next_ps: u64,
    iteration: u64,
    completed: u64,
    kernel_work: Duration,
}

impl Production {
    fn new(a: &Args, shared: &mut SharedDevice<SimDevice>, half: Half) -> Result<Production> {
        let dev = Arc::clone(shared.device());
        let stream = dev.create_stream()?;
        let tenant = shared.add_tenant(Priority::Production, stream);
        let model = shared.allocate(tenant, a.prod_model_mib * MIB)?;
        let model_pages = shared.ledger().allocation_pages(model)?;
        let in_bytes = (a.prod_in_kib << 10).max(1);
        let out_bytes = (a.prod_out_kib << 10).max(1);
        let scale = if half == Half::Half { 2 } else { 1 };
        Ok(Production {
            tenant,
            stream,
            event: dev.create_event()?,
            model,
            model_pages,
            pulse: None,
            input_host: dev.alloc_pinned(in_bytes)?,
            input_dev: dev.alloc(in_bytes)?,
            output_dev: dev.alloc(out_bytes)?,
            output_host: dev.alloc_pinned(out_bytes)?,
            step: Step::CopyOut,
            next_ps: 0,
            iteration: 0,
            completed: 0,
            kernel_work: Duration::from_micros(a.prod_kernel_us * scale),
        })
    }

    /// Starts the next iteration: the peak allocation when due, then the input copy.
    fn begin(&mut self, a: &Args, shared: &mut SharedDevice<SimDevice>) -> Result<()> {
        if a.pulse_every > 0 && a.prod_pulse_mib > 0 && self.iteration % a.pulse_every == 0 {
            self.pulse = Some(shared.allocate(self.tenant, a.prod_pulse_mib * MIB)?);
        }
        let dev = shared.device();
        let bytes = self.input_dev.bytes();
        dev.copy_to_device(self.stream, &self.input_host, 0, &self.input_dev, 0, bytes)?;
        self.record(dev, Step::CopyIn)
    }

    fn record(&mut self, dev: &SimDevice, step: Step) -> Result<()> {
        dev.record_event(self.event, self.stream)?;
        self.next_ps = event_ps(dev, self.event)?;
        self.step = step;
        Ok(())
    }

    /// The step that ended at `next_ps` is done (the host has synchronized on it): enqueue the
    /// next. Returns whether an iteration completed.
    fn advance(&mut self, a: &Args, shared: &mut SharedDevice<SimDevice>) -> Result<bool> {
        match self.step {
            Step::CopyIn => {
                let (alloc, page) = match self.pulse {
                    Some(p) => (p, 0),
                    None => (
                        self.model,
                        (self.iteration % u64::from(self.model_pages)) as u32,
                    ),
                };
                let dev = Arc::clone(shared.device());
                let page = shared.page_range(alloc, page)?;
                let reads = DeviceRange {
                    bytes: KERNEL_READ_BYTES.min(page.bytes),
                    ..page
                };
                dev.launch(
                    self.stream,
                    &ComputeStep {
                        reads: Some(reads),
                        checksum_into: None,
                        work: self.kernel_work,
                    },
                )?;
                self.record(&dev, Step::Kernel)?;
                Ok(false)
            }
            Step::Kernel => {
                let dev = Arc::clone(shared.device());
                let bytes = self.output_dev.bytes();
                dev.copy_to_host(
                    self.stream,
                    &self.output_dev,
                    0,
                    &self.output_host,
                    0,
                    bytes,
                )?;
                self.record(&dev, Step::CopyOut)?;
                Ok(false)
            }
            Step::CopyOut => {
                self.completed += 1;
                self.iteration += 1;
                if let Some(p) = self.pulse.take() {
                    shared.free(p)?;
                }
                self.begin(a, shared)?;
                Ok(true)
            }
        }
    }
}

/// The opportunistic tenant: short kernels sweeping over its working set.
struct Opportunistic {
    stream: Stream,
    events: Vec<Event>,
    /// Kernels launched and not yet seen complete: (event index, completion time).
    in_flight: VecDeque<(usize, u64)>,
    set: AllocationId,
    pages: u64,
    launched: u64,
    completed: u64,
    kernel_work: Duration,
    control: Control,
}

impl Opportunistic {
    fn new(
        a: &Args,
        shared: &mut SharedDevice<SimDevice>,
        half: Half,
        control: Control,
    ) -> Result<Opportunistic> {
        let dev = Arc::clone(shared.device());
        let stream = dev.create_stream()?;
        let tenant = shared.add_tenant(Priority::Opportunistic, stream);
        let set = shared.allocate(tenant, a.opp_mib * MIB)?;
        let pages = u64::from(shared.ledger().allocation_pages(set)?);
        let depth = match &control {
            Control::Queue(d) => *d,
            Control::Gate(_) => 1,
        };
        let events = (0..depth)
            .map(|_| dev.create_event())
            .collect::<Result<Vec<_>>>()?;
        let scale = if half == Half::Half { 2 } else { 1 };
        Ok(Opportunistic {
            stream,
            events,
            in_flight: VecDeque::new(),
            set,
            pages,
            launched: 0,
            completed: 0,
            kernel_work: Duration::from_micros(a.opp_kernel_us * scale),
            control,
        })
    }

    /// Launches as many kernels as the control allows now.
    fn fill(&mut self, a: &Args, shared: &mut SharedDevice<SimDevice>) -> Result<()> {
        loop {
            let in_flight = self.in_flight.len() as u32;
            let admitted = match &mut self.control {
                Control::Queue(depth) => in_flight < *depth,
                Control::Gate(gate) => {
                    in_flight < self.events.len() as u32 && gate.try_launch(in_flight)
                }
            };
            if !admitted {
                return Ok(());
            }
            let page = ((self.launched / a.kernels_per_page) % self.pages) as u32;
            // Pages production's peak evicted come back one per admitted launch, so their
            // copies are paced like the kernels; a page touched first is faulted in (TGS §4.2).
            shared.restore(1)?;
            shared.access(self.set, page, 1)?;
            let dev = Arc::clone(shared.device());
            let range = shared.page_range(self.set, page)?;
            let reads = DeviceRange {
                bytes: KERNEL_READ_BYTES.min(range.bytes),
                ..range
            };
            dev.launch(
                self.stream,
                &ComputeStep {
                    reads: Some(reads),
                    checksum_into: None,
                    work: self.kernel_work,
                },
            )?;
            let slot = (self.launched % self.events.len() as u64) as usize;
            dev.record_event(self.events[slot], self.stream)?;
            self.in_flight
                .push_back((slot, event_ps(&dev, self.events[slot])?));
            self.launched += 1;
        }
    }
}

/// Runs one configuration for `a.duration_ms` of virtual time. `production` says whether the
/// production tenant runs; `opportunistic` how the opportunistic tenant (if any) is governed;
/// it starts after `start_after` production iterations.
fn simulate(
    a: &Args,
    half: Half,
    production: bool,
    opportunistic: Option<Control>,
    start_after: u64,
) -> Result<Outcome> {
    let pool = match half {
        Half::Whole => a.pool_mib * MIB,
        Half::Half => a.pool_mib * MIB / 2,
    };
    let io = ((a.prod_in_kib + a.prod_out_kib) << 10) + 2 * MIB;
    let dev = Arc::new(SimDevice::new(SimConfig {
        capacity_bytes: pool + io,
        ..SimConfig::default()
    })?);
    let mut shared = SharedDevice::new(Arc::clone(&dev), pool, a.page_kib << 10)?;
    let mut prod = if production {
        Some(Production::new(a, &mut shared, half)?)
    } else {
        None
    };
    let mut opp = match opportunistic {
        Some(control) => Some(Opportunistic::new(a, &mut shared, half, control)?),
        None => None,
    };
    let horizon_ps = a.duration_ms * 1_000_000_000;
    let mut opp_started = prod.is_none() || start_after == 0;
    if let Some(p) = prod.as_mut() {
        p.begin(a, &mut shared)?;
    }
    if let (Some(o), true) = (opp.as_mut(), opp_started) {
        o.fill(a, &mut shared)?;
    }
    let mut window_start_ps = 0u64;
    let mut window_iters = 0u64;
    loop {
        let prod_next = prod.as_ref().map(|p| p.next_ps);
        let opp_next = opp
            .as_ref()
            .and_then(|o| o.in_flight.front().map(|&(_, t)| t));
        let production_first = match (prod_next, opp_next) {
            (Some(p), Some(o)) => p <= o,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if production_first {
            let Some(p) = prod.as_mut() else { break };
            if p.next_ps > horizon_ps {
                break;
            }
            let now = p.next_ps;
            dev.synchronize_event(p.event)?;
            if p.advance(a, &mut shared)? {
                window_iters += 1;
                if window_iters == a.window_iters {
                    if let Some(Opportunistic {
                        control: Control::Gate(gate),
                        ..
                    }) = opp.as_mut()
                    {
                        let window = Duration::from_nanos((now - window_start_ps) / 1000);
                        gate.end_window(window_iters as f64, window)?;
                    }
                    window_iters = 0;
                    window_start_ps = now;
                }
                opp_started |= p.completed >= start_after;
            }
            if let (Some(o), true) = (opp.as_mut(), opp_started) {
                o.fill(a, &mut shared)?;
            }
        } else {
            let Some(o) = opp.as_mut() else { break };
            let Some(&(slot, t)) = o.in_flight.front() else {
                break;
            };
            if t > horizon_ps {
                break;
            }
            dev.synchronize_event(o.events[slot])?;
            o.in_flight.pop_front();
            o.completed += 1;
            o.fill(a, &mut shared)?;
        }
    }
    let seconds = a.duration_ms as f64 / 1000.0;
    let (decreases, rate) = match opp.as_ref().map(|o| &o.control) {
        Some(Control::Gate(g)) => (g.controller().decreases(), g.controller().rate()),
        _ => (0, 0.0),
    };
    Ok(Outcome {
        prod_iters_per_s: prod.as_ref().map_or(0.0, |p| p.completed as f64 / seconds),
        opp_kernels_per_s: opp.as_ref().map_or(0.0, |o| o.completed as f64 / seconds),
        pages: shared.stats(),
        controller_decreases: decreases,
        controller_final_rate: rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_run() -> Report {
        let args: Vec<String> = [
            "share",
            "--duration-ms",
            "40",
            "--samples",
            "1",
            "--pool-mib",
            "32",
            "--prod-model-mib",
            "8",
            "--prod-pulse-mib",
            "4",
            "--pulse-every",
            "10",
            "--opp-mib",
            "24",
            "--prod-in-kib",
            "1024",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        run(&args).expect("the share scenario runs")
    }

    #[test]
    fn virtual_time_figures_are_deterministic_and_oversubscription_pages() {
        let a = small_run();
        let b = small_run();
        assert_eq!(a.render(), b.render(), "virtual time must repeat exactly");
        let figure = |name: &str| {
            a.get(name)
                .and_then(|v| v.as_f64())
                .unwrap_or_else(|| panic!("figure {name} missing"))
        };
        assert!(figure("peak_demand_mib") > figure("pool_mib"));
        assert!(figure("pages_evicted_adaptive") > 0.0, "peaks must evict");
        assert!(figure("prod_alone_iters_per_s") > 0.0);
        assert!(figure("opp_adaptive_kernels_per_s") > 0.0);
        assert!(a.get("target_met_prod_slowdown_adaptive").is_some());
        assert!(a.get("target_met_opp_adaptive_vs_static").is_some());
    }

    #[test]
    fn bad_arguments_are_errors() {
        let args: Vec<String> = ["share", "--samples", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(run(&args).is_err());
    }
}
