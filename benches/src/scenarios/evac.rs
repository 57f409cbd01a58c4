//! `farmem-bench evac`: latency of local-hit dereferences while the evacuator is busy (AIFM §4.3,
//! pauseless evacuation), over a `TcpBackend`.
//!
//! One thread reads random elements of a small hot `RemArray<u64>` (local and hot throughout)
//! and times every `get` on its own; meanwhile a streaming thread walks a larger array (4× local
//! memory) writing one element per chunk, so every chunk it touches is fetched, dirtied and then
//! written back and dropped by the evacuator. Reports p50/p99/p99.9/max of the timed reads, how
//! many took over 20 µs, and the regions evacuated meanwhile. Target: p99.9 ≤ 20 µs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use farmem_objects::Config;

use crate::far_server::{memory_rows, FarServers};
use crate::{quantile, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "evac",
    about: "local-hit dereference latency percentiles while the evacuator is busy (TCP backend)",
    run,
};

#[derive(Parser, Debug)]
#[command(name = "farmem-bench evac", about = "hit latency under evacuation")]
struct Args {
    /// Run the server in this process instead of as a child process.
    #[arg(long)]
    embedded: bool,
    /// Local memory in MiB.
    #[arg(long, default_value_t = 16)]
    local_mib: usize,
    /// Hot array size in KiB (read by the timed thread).
    #[arg(long, default_value_t = 512)]
    hot_kib: usize,
    /// Seconds the streaming thread runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Timed reads per scope renewal.
    #[arg(long, default_value_t = 64)]
    reads_per_scope: usize,
    /// Evacuator threads.
    #[arg(long, default_value_t = 1)]
    evacuators: usize,
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.local_mib < 4 || args.hot_kib == 0 || args.reads_per_scope == 0 {
        return Err(Error::invalid(
            "--local-mib must be >= 4, --hot-kib and --reads-per-scope >= 1",
        ));
    }
    let servers = FarServers::start(args.embedded, "2GiB")?;
    let local = args.local_mib << 20;
    let config = Config::builder()
        .local_bytes(local)
        .region_bytes(256 << 10)
        .chunk_bytes(4096)
        .prefetch_depth(16)
        .evacuator_threads(args.evacuators)
        .build()?;
    let fm = Arc::new(servers.far_memory(config, 2, true)?);
    let hot_len = (args.hot_kib << 10) / 8;
    let mut hot = fm.array::<u64>(hot_len)?;
    {
        let mut s = fm.scope();
        let src: Vec<u64> = (0..hot_len as u64).collect();
        hot.write_slice(0, &src, &mut s)?;
    }
    let stream_len = 4 * local / 8;
    let mut stream = fm.array::<u64>(stream_len)?;
    let chunk_len = stream.chunk_len();

    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicU64::new(0));
    let streamer = {
        let (fm, stop, passes) = (fm.clone(), stop.clone(), passes.clone());
        std::thread::Builder::new()
            .name("evac-bench-stream".into())
            .spawn(move || -> Result<()> {
                let mut s = fm.scope();
                while !stop.load(Ordering::Relaxed) {
                    for c in 0..stream.num_chunks() {
                        // `set` writes through when the evacuator is behind, instead of failing.
                        let v = *stream.get(c * chunk_len, &s)?;
                        stream.set(c * chunk_len, v + 1, &s)?;
                        s.renew();
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    passes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
            .map_err(|e| Error::io("spawning the streaming thread", e))?
    };

    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut wrong = 0u64;
    let mut s = fm.scope();
    // Keep the hot array hot (untimed) until the streamer has filled local memory once, so the
    // timed part runs with the evacuator in steady state.
    let warm_deadline = Instant::now() + Duration::from_secs(30);
    while passes.load(Ordering::Relaxed) == 0 && Instant::now() < warm_deadline {
        for _ in 0..args.reads_per_scope {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % hot_len as u64) as usize;
            wrong += u64::from(*hot.get(i, &s)? != i as u64);
        }
        s.renew();
    }
    let before = fm.metrics();
    let mut lat_ns: Vec<f64> = Vec::with_capacity(1 << 21);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds.max(0.1));
    let mut k = 0u64;
    while Instant::now() < deadline && lat_ns.len() < (1 << 21) {
        for _ in 0..args.reads_per_scope {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % hot_len as u64) as usize;
            let t = Instant::now();
            let v = *hot.get(i, &s)?;
            let ns = t.elapsed().as_nanos() as f64;
            // Every 4th read is kept, so the sample spans the whole run.
            if k % 4 == 0 {
                lat_ns.push(ns);
            }
            k += 1;
            wrong += u64::from(v != i as u64);
        }
        s.renew();
    }
    drop(s);
    let after_hot = fm.metrics();
    stop.store(true, Ordering::Relaxed);
    streamer
        .join()
        .map_err(|_| Error::internal("the streaming thread panicked"))??;
    let passes = passes.load(Ordering::Relaxed);
    if wrong > 0 {
        return Err(Error::internal(format!(
            "{wrong} hot reads returned a wrong value"
        )));
    }
    let (p50, p99, p999, max) = (
        quantile(&lat_ns, 0.5),
        quantile(&lat_ns, 0.99),
        quantile(&lat_ns, 0.999),
        quantile(&lat_ns, 1.0),
    );
    let evacuated = after_hot.evacuated_regions - before.evacuated_regions;
    let written_back = after_hot.bytes_written_back - before.bytes_written_back;
    let mut report = Report::new("evac", &["series", "value", "", ""]);
    report.figure("server", if args.embedded { "embedded" } else { "process" });
    report.row(&[
        format!("hot get, {} reads", lat_ns.len()),
        format!("p50 {p50:.0} ns"),
        format!("p99 {p99:.0} ns"),
        format!("p99.9 {p999:.0} ns, max {max:.0} ns"),
    ]);
    report.row(&[
        "evacuator meanwhile".to_string(),
        format!("{evacuated} regions"),
        format!("{:.1} MB written back", written_back as f64 / 1e6),
        format!("{passes} streaming passes"),
    ]);
    report.figure_f64("hit_p50_ns", p50);
    report.figure_f64("hit_p99_ns", p99);
    report.figure_f64("hit_p999_ns", p999);
    report.figure_f64("hit_max_ns", max);
    report.figure("timed_reads", lat_ns.len() as u64);
    report.figure(
        "reads_over_20us",
        lat_ns.iter().filter(|&&l| l > 20_000.0).count() as u64,
    );
    report.figure("evacuated_regions", evacuated);
    report.figure("bytes_written_back", written_back);
    report.target(
        "hit_p999_ns",
        "hit p99.9 <= 20 us while evacuating",
        p999 <= 20_000.0,
    );
    memory_rows(&mut report, local);
    report.note(
        "every 4th hot read is timed on its own (one RemArray::get, Instant overhead included), \
         after the streamer filled local memory once; peak RSS includes the 16 MiB sample buffer",
    );
    drop(hot);
    drop(fm);
    servers.stop();
    Ok(report)
}
