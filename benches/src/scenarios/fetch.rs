//! `farmem-bench fetch`: one remote object fetch (a miss of a 4 KiB chunk) through `RemArray`
//! over a `TcpBackend`, against a raw TCP request/response of the same sizes on loopback, and
//! fetch throughput with many green threads at once.
//!
//! # What runs
//!
//! * **miss latency**: a `RemArray<u64>` 16× its local memory; each access reads the first element
//!   of the next chunk of a fixed random permutation, so a chunk comes back only after every other
//!   chunk was read and is remote again (the reported miss fraction checks this). The prefetcher
//!   is off. Baseline, interleaved sample by sample: a blocking socket to a raw server, one
//!   `write` of a farmem read request's bytes, one `read_exact` of a farmem read response's bytes.
//!   Target: fetch ≤ 1.5× raw.
//! * **green-thread throughput**: `--green-threads` green threads on a `farmem_sched::Runtime`
//!   read random chunks (each in its own range, yielding after each read) for `--seconds`;
//!   reported against one thread's miss rate.
//!
//! The memory server (`farmem-server`) and the raw server (this binary, `fetch --serve-raw`) run
//! as their own processes; `--embedded` runs both in this process (see [`crate::far_server`] and
//! [`crate::raw_tcp`]). The other far-memory scenarios start their raw server child through this
//! scenario's `--serve-raw`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use farmem_net::HEADER_LEN;
use farmem_objects::{Config, FarMemory, RemArray};

use crate::far_server::{memory_rows, FarServers};
use crate::raw_tcp::{self, RawClient};
use crate::{median, ratio, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "fetch",
    about: "RemArray miss over TCP vs raw TCP round trip (ratio), green-thread fetch throughput",
    run,
};

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench fetch",
    about = "RemArray fetch over TCP vs raw TCP"
)]
struct Args {
    /// Run the servers in this process instead of as child processes.
    #[arg(long)]
    embedded: bool,
    /// Samples per latency series (the median is reported).
    #[arg(long, default_value_t = 7)]
    samples: usize,
    /// Fetches per latency sample.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Local memory in MiB (the array is 16× this).
    #[arg(long, default_value_t = 2)]
    local_mib: usize,
    /// Connections to the memory server.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Green threads fetching at once in the throughput run.
    #[arg(long, default_value_t = 64)]
    green_threads: usize,
    /// Worker threads of the green-thread runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Turn the backend's green-thread relay off (green threads then lead the socket reads).
    #[arg(long)]
    no_relay: bool,
    /// Internal: serve the raw baseline and print its address (used by the parent run).
    #[arg(long, hide = true)]
    serve_raw: bool,
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.serve_raw {
        raw_tcp::serve_forever()?;
    }
    if args.samples == 0 || args.ops == 0 || args.green_threads == 0 || args.workers == 0 {
        return Err(Error::invalid(
            "--samples, --ops, --green-threads and --workers must be at least 1",
        ));
    }
    let servers = FarServers::start(args.embedded, "2GiB")?;
    let mut raw = RawClient::connect(servers.raw_addr, HEADER_LEN + 1 + 4 + 4096)?;
    // Pinned only while this thread measures: threads it starts inherit its affinity, and the
    // far-memory instance's threads must stay free.
    let placement = servers.pin_for_latency();
    let t = Instant::now();
    for _ in 0..args.ops {
        raw.round_trip()?;
    }
    let raw_alone_ns = t.elapsed().as_secs_f64() * 1e9 / args.ops as f64;
    drop(placement);
    let local = args.local_mib.max(1) << 20;
    let config = Config::builder()
        .local_bytes(local)
        .region_bytes(128 << 10)
        .chunk_bytes(4096)
        .prefetch_depth(0)
        .build()?;
    let fm = Arc::new(servers.far_memory(config, args.connections, !args.no_relay)?);
    let chunks = 16 * local / 4096;
    let mut arr = fm.array::<u64>(chunks * 512)?;
    {
        // Tag every chunk so a wrong fetch shows up as a wrong value.
        let mut s = fm.scope();
        for c in 0..chunks {
            arr.set(c * 512, c as u64, &s)?;
            s.renew();
        }
    }
    let arr = Arc::new(arr);
    let order = permutation(chunks, 0x9e37_79b9);
    let mut cursor = 0usize;
    let mut fetch_one = |s: &farmem_objects::DerefScope<'_>| -> Result<()> {
        let c = order[cursor % chunks];
        cursor += 1;
        let v = *arr.get(c * 512, s)?;
        if v != c as u64 {
            return Err(Error::internal(format!("chunk {c} read back {v}")));
        }
        Ok(())
    };
    // Warm-up: one pass makes every chunk remote and settles the evacuator.
    {
        let mut s = fm.scope();
        for _ in 0..chunks {
            fetch_one(&s)?;
            s.renew();
        }
    }
    let placement = servers.pin_for_latency();
    for _ in 0..200 {
        raw.round_trip()?;
    }
    let (mut far_ns, mut raw_ns) = (Vec::new(), Vec::new());
    let misses_before = fm.metrics().misses;
    for _ in 0..args.samples {
        let mut s = fm.scope();
        let t = Instant::now();
        for _ in 0..args.ops {
            fetch_one(&s)?;
            s.renew();
        }
        far_ns.push(t.elapsed().as_secs_f64() * 1e9 / args.ops as f64);
        drop(s);
        let t = Instant::now();
        for _ in 0..args.ops {
            raw.round_trip()?;
        }
        raw_ns.push(t.elapsed().as_secs_f64() * 1e9 / args.ops as f64);
    }
    let placed = placement.description.clone();
    drop(placement);
    let miss_fraction =
        (fm.metrics().misses - misses_before) as f64 / (args.samples * args.ops) as f64;
    let (f, r) = (median(&far_ns), median(&raw_ns));
    let q = ratio(f, r);

    let mut report = Report::new("fetch", &["series", "value", "baseline", "ratio"]);
    report.figure("server", if args.embedded { "embedded" } else { "process" });
    report.row(&[
        "4 KiB chunk miss (RemArray over TCP)".to_string(),
        format!("{f:.0} ns"),
        format!("{r:.0} ns raw TCP"),
        format!("{q:.2}"),
    ]);
    report.figure_f64("miss_4k_farmem_ns", f);
    report.figure_f64("miss_4k_raw_tcp_ns", r);
    report.figure_f64("miss_4k_ratio_vs_raw", q);
    report.figure_f64("miss_fraction", miss_fraction);
    report.figure_f64("raw_tcp_before_far_memory_ns", raw_alone_ns);
    report.note(format!(
        "raw TCP round trip before the far-memory instance existed: {raw_alone_ns:.0} ns"
    ));
    report.note(format!("miss latency {placed}"));
    report.target(
        "miss_ratio_vs_raw",
        "4 KiB fetch <= 1.5x raw TCP round trip",
        q <= 1.5,
    );

    // Throughput: many green threads fetching random chunks at once.
    let rt = farmem_sched::Runtime::builder()
        .workers(args.workers)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let misses_before = fm.metrics().misses;
    let start = Instant::now();
    let span = (chunks / args.green_threads).max(1) as u64;
    if span * (args.green_threads as u64) > chunks as u64 {
        return Err(Error::invalid(format!(
            "--green-threads {} exceeds the {chunks} chunks of the array; raise --local-mib",
            args.green_threads
        )));
    }
    let handles: Vec<_> = (0..args.green_threads as u64)
        .map(|t| {
            let (fm, arr, stop, done) = (fm.clone(), arr.clone(), stop.clone(), done.clone());
            rt.spawn(move || -> Result<()> {
                let mut s = fm.scope();
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Each green thread in its own chunk range (see the `TcpBackend` note:
                    // green threads of one worker that park in a fetch must not share chunks).
                    let c = (t * span + x % span) as usize;
                    let v = *arr.get(c * 512, &s)?;
                    if v != c as u64 {
                        return Err(Error::internal(format!("chunk {c} read back {v}")));
                    }
                    s.renew();
                    n += 1;
                    // One request per turn: a green thread whose range became local would
                    // otherwise keep its worker (cooperative scheduling) and starve the others.
                    farmem_sched::yield_now();
                }
                done.fetch_add(n, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.seconds.max(0.05)));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|e| Error::internal(format!("a fetching green thread failed: {e}")))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ops = done.load(Ordering::Relaxed) as f64 / elapsed;
    let misses = (fm.metrics().misses - misses_before) as f64 / elapsed;
    let one_thread = 1e9 / f;
    report.row(&[
        format!(
            "{} green threads on {} workers, {} conns{}",
            args.green_threads,
            args.workers,
            args.connections,
            if args.no_relay { ", no relay" } else { "" }
        ),
        format!(
            "{ops:.0} reads/s ({misses:.0} misses/s, {:.0} MB/s)",
            misses * 4096.0 / 1e6
        ),
        format!("{one_thread:.0} misses/s 1 thread"),
        format!("{:.2}", ratio(misses, one_thread)),
    ]);
    report.figure_f64("green_reads_per_s", ops);
    report.figure_f64("green_misses_per_s", misses);
    report.figure_f64("green_miss_mb_per_s", misses * 4096.0 / 1e6);
    report.figure_f64("green_speedup_vs_one_thread", ratio(misses, one_thread));
    report.figure("green_threads", args.green_threads as u64);
    report.figure("green_relay", !args.no_relay);
    drop(rt);
    memory_rows(&mut report, local);
    report.note(format!(
        "miss latency: median of {} samples of {} fetches; {:.1}% of them were misses",
        args.samples,
        args.ops,
        miss_fraction * 100.0
    ));
    drop(arr);
    drop(fm);
    servers.stop();
    Ok(report)
}

/// A random permutation of `0..n` (xorshift Fisher–Yates; deterministic per `seed`).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Touches `arr`'s chunks so a scan result cannot be optimised away; used by `scan`.
pub(crate) fn checksum(arr: &RemArray<u64>, fm: &FarMemory) -> Result<u64> {
    let mut s = fm.scope();
    let mut sum = 0u64;
    arr.for_each_chunk(&mut s, |_, xs| {
        sum = xs.iter().fold(sum, |a, &x| a.wrapping_add(x));
    })?;
    Ok(sum)
}
