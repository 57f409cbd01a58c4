//! `farmem-bench queue`: producers and consumers on green threads sharing one `RemQueue<u64>`
//! over a `TcpBackend` whose local memory is 10% of the queue, against an all-local
//! `std::sync::Mutex<VecDeque<u64>>` driven by the same green threads in the same run.
//!
//! A sample pre-fills the queue with half the items (untimed; the queue then outgrows local
//! memory, so the oldest chunks are remote), then times `--producers` green threads pushing the
//! other half one item at a time while `--consumers` green threads pop until every item is out.
//! Throughput counts the timed pushes and pops; the popped items' sum is checked against the
//! pushed ones. No target: the issue asks for a concurrent queue; this measures it, and running
//! two builds alternately compares queue designs (the closing note of the two-lock queue did).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use farmem_objects::{Config, RemQueue};

use crate::far_server::{memory_rows, FarServers};
use crate::{median, ratio, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "queue",
    about: "RemQueue producers/consumers (10% local) vs all-local Mutex<VecDeque>",
    run,
};

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench queue",
    about = "RemQueue producers and consumers vs all-local"
)]
struct Args {
    /// Run the memory server in this process instead of as a child process.
    #[arg(long)]
    embedded: bool,
    /// Items (u64) through the queue per sample; half are pre-filled.
    #[arg(long, default_value_t = 2_000_000)]
    items: u64,
    /// Producer green threads.
    #[arg(long, default_value_t = 8)]
    producers: u64,
    /// Consumer green threads.
    #[arg(long, default_value_t = 8)]
    consumers: u64,
    /// Workers (OS threads) of the green-thread runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Samples per series (the median is reported).
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// Connections to the memory server.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Bytes per queue chunk.
    #[arg(long, default_value_t = 16384)]
    chunk_bytes: usize,
}

/// The queue operations a series runs.
trait Fifo: Send + Sync {
    fn push(&self, v: u64) -> Result<()>;
    fn pop(&self) -> Result<Option<u64>>;
}

impl Fifo for RemQueue<u64> {
    fn push(&self, v: u64) -> Result<()> {
        RemQueue::push(self, v)
    }
    fn pop(&self) -> Result<Option<u64>> {
        RemQueue::pop(self)
    }
}

/// The all-local baseline.
struct Local(Mutex<VecDeque<u64>>);

impl Fifo for Local {
    fn push(&self, v: u64) -> Result<()> {
        self.0
            .lock()
            .map_err(|_| Error::internal("baseline lock poisoned"))?
            .push_back(v);
        Ok(())
    }
    fn pop(&self) -> Result<Option<u64>> {
        Ok(self
            .0
            .lock()
            .map_err(|_| Error::internal("baseline lock poisoned"))?
            .pop_front())
    }
}

/// One sample: pre-fill `items / 2`, then time producers and consumers moving the rest and
/// draining all. Returns timed operations per second.
fn sample(rt: &farmem_sched::Runtime, q: Arc<dyn Fifo>, args: &Args) -> Result<f64> {
    let half = args.items / 2;
    for i in 0..half {
        q.push(i)?;
    }
    let per_producer = (args.items - half) / args.producers;
    let pushed_total = half + per_producer * args.producers;
    let want_sum: u64 = (0..pushed_total).fold(0u64, |a, x| a.wrapping_add(x));
    let popped = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut handles = Vec::new();
    for p in 0..args.producers {
        let q = q.clone();
        let first = half + p * per_producer;
        handles.push(rt.spawn(move || -> Result<()> {
            for v in first..first + per_producer {
                q.push(v)?;
            }
            Ok(())
        }));
    }
    for _ in 0..args.consumers {
        let (q, popped, sum) = (q.clone(), popped.clone(), sum.clone());
        handles.push(rt.spawn(move || -> Result<()> {
            let mut local_sum = 0u64;
            while popped.load(Ordering::Acquire) < pushed_total {
                match q.pop()? {
                    Some(v) => {
                        local_sum = local_sum.wrapping_add(v);
                        popped.fetch_add(1, Ordering::AcqRel);
                    }
                    None => farmem_sched::yield_now(),
                }
            }
            sum.fetch_add(local_sum, Ordering::AcqRel);
            Ok(())
        }));
    }
    for h in handles {
        h.join()
            .map_err(|e| Error::internal(format!("a benchmark green thread panicked: {e:?}")))??;
    }
    let secs = t.elapsed().as_secs_f64();
    let got = sum.load(Ordering::Acquire);
    if got != want_sum || q.pop()?.is_some() {
        return Err(Error::internal(format!(
            "the queue returned items summing to {got}, expected {want_sum} (or kept some)"
        )));
    }
    Ok((pushed_total - half + pushed_total) as f64 / secs)
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.samples == 0
        || args.items < 10_000
        || args.producers == 0
        || args.consumers == 0
        || args.connections == 0
    {
        return Err(Error::invalid(
            "--samples, --producers, --consumers and --connections must be >= 1 and --items >= \
             10000",
        ));
    }
    let servers = FarServers::start(args.embedded, "4GiB")?;
    let rt = farmem_sched::Runtime::builder()
        .workers(args.workers)
        .build()?;
    let bytes = (args.items / 2 * 8) as usize;
    let region = 256 << 10;
    let local = (bytes / 10).max(8 * region) / region * region;
    let config = Config::builder()
        .local_bytes(local)
        .region_bytes(region)
        .chunk_bytes(args.chunk_bytes)
        .build()?;
    let fm = servers.far_memory(config, args.connections, true)?;
    let (mut far, mut base) = (Vec::new(), Vec::new());
    let before = fm.metrics();
    for _ in 0..args.samples {
        far.push(sample(&rt, Arc::new(fm.queue::<u64>()?), &args)?);
        base.push(sample(
            &rt,
            Arc::new(Local(Mutex::new(VecDeque::new()))),
            &args,
        )?);
    }
    let after = fm.metrics();
    let (t, b) = (median(&far), median(&base));
    let mut report = Report::new("queue", &["series", "ops/s", "vs all-local"]);
    report.figure("server", if args.embedded { "embedded" } else { "process" });
    report.figure("items", args.items);
    report.figure("producers", args.producers);
    report.figure("consumers", args.consumers);
    for (name, v) in [("RemQueue", t), ("all-local Mutex<VecDeque>", b)] {
        report.row(&[
            name.to_string(),
            format!("{v:.0}"),
            format!("{:.3}", ratio(v, b)),
        ]);
    }
    report.figure_f64("queue_ops_per_s", t);
    report.figure_f64("local_ops_per_s", b);
    report.figure_f64("ratio_vs_local", ratio(t, b));
    report.figure("misses", after.misses - before.misses);
    report.figure(
        "prefetches_used",
        after.prefetches_used - before.prefetches_used,
    );
    drop(fm);
    memory_rows(&mut report, local);
    report.note(format!(
        "{} items per sample ({} pre-filled, {} KiB of queue at the start), {} KiB local; {} \
         producers and {} consumers on {} workers; {} B chunks; medians of {} samples; {} \
         misses and {} prefetched chunks used over the far samples",
        args.items,
        args.items / 2,
        bytes >> 10,
        local >> 10,
        args.producers,
        args.consumers,
        args.workers,
        args.chunk_bytes,
        args.samples,
        after.misses - before.misses,
        after.prefetches_used - before.prefetches_used
    ));
    servers.stop();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run end to end on an in-process server: every item comes out (the scenario
    /// checks the popped sum and fails otherwise) and both series report a throughput.
    #[test]
    fn a_small_run_moves_every_item_and_reports_both_series() {
        let args: Vec<String> = [
            "queue",
            "--embedded",
            "--items",
            "40000",
            "--samples",
            "1",
            "--producers",
            "3",
            "--consumers",
            "5",
            "--chunk-bytes",
            "1024",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let report = run(&args).unwrap();
        for key in ["queue_ops_per_s", "local_ops_per_s", "ratio_vs_local"] {
            let v = report.get(key).and_then(|v| v.as_f64());
            assert!(v.is_some_and(|v| v > 0.0), "{key}: {v:?}");
        }
        assert_eq!(report.get("items").and_then(|v| v.as_u64()), Some(40_000));
    }

    #[test]
    fn too_few_items_is_an_invalid_argument() {
        let args: Vec<String> = ["queue", "--embedded", "--items", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = run(&args).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
    }
}
