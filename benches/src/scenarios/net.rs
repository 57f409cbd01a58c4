//! `farmem-bench net`: one object read through the farmem client against a raw TCP
//! request/response of the same sizes on loopback, and read throughput with many threads.
//!
//! Both servers run as their own processes by default (`farmem-server` from the same target
//! directory, and this binary re-run as a raw echo server), so neither shares cores with the
//! client's bookkeeping in a way the other does not; `--embedded` runs both in-process.
//!
//! The servers are started by [`crate::far_server`]; the raw baseline is [`crate::raw_tcp`]:
//! a blocking socket pair, one `write` of the request bytes and one `read_exact`
//! of the response bytes, exactly as many bytes as the farmem frames carry. The farmem target
//! (the far-memory issue's) is a read round trip within 1.5× of it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use farmem_net::{Client, ClientConfig, Request, HEADER_LEN};

use crate::far_server::{FarServers, FarServersConfig};
use crate::raw_tcp::{self, RawClient};
use crate::{median, ratio, sample_ns_per_op, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "net",
    about: "object read round trip vs raw TCP (ratio), multi-thread read throughput",
    run,
};

const TOKEN: &str = "farmem-bench-net";
const DS: u64 = 1;
const OBJECTS: u64 = 1024;

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench net",
    about = "farmem client vs raw TCP on loopback"
)]
struct Args {
    /// Run the servers in this process instead of as child processes.
    #[arg(long)]
    embedded: bool,
    /// Samples per latency series (the median is reported).
    #[arg(long, default_value_t = 7)]
    samples: usize,
    /// Round trips per latency sample.
    #[arg(long, default_value_t = 2000)]
    ops: u64,
    /// Threads reading at once in the throughput run.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Client connections to the server in the throughput run.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Requests kept in flight by one thread in the pipelined run.
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// Internal: serve the raw echo baseline and print its address (used by the parent run).
    #[arg(long, hide = true)]
    serve_raw: bool,
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.serve_raw {
        raw_tcp::serve_forever()?;
    }
    if args.samples == 0 || args.ops == 0 || args.threads == 0 || args.depth == 0 {
        return Err(Error::invalid(
            "--samples, --ops, --threads and --depth must be at least 1",
        ));
    }
    let servers = FarServers::start_with(
        args.embedded,
        &FarServersConfig {
            scenario: "net",
            token: TOKEN,
            token_stem: "farmem-bench-net",
            capacity: "1GiB",
        },
    )?;
    let client = Client::connect(
        servers.farmem_addr,
        &ClientConfig::new(TOKEN).with_connections(1),
    )?;
    client.create_ds(DS, 0)?;

    let mut report = Report::new(
        "net",
        &[
            "series",
            "object B",
            "farmem ns",
            "raw TCP ns",
            "farmem / raw",
        ],
    );
    report.figure("server", if args.embedded { "embedded" } else { "process" });
    let mut worst_ratio = 0.0f64;
    let placement = servers.pin_for_latency();
    for size in [64usize, 4096] {
        let object = vec![0x5a; size];
        for i in 0..OBJECTS {
            client.write(DS, i, &object)?;
        }
        // farmem response bytes: header + found flag + length + data.
        let response_bytes = HEADER_LEN + 1 + 4 + size;
        let mut raw = RawClient::connect(servers.raw_addr, response_bytes)?;
        // Warm up both paths (page in buffers, settle the scheduler).
        for i in 0..200 {
            client.read(DS, i % OBJECTS)?;
            raw.round_trip()?;
        }
        let mut farmem_err = None;
        let mut raw_err = None;
        let mut farmem_samples = Vec::new();
        let mut raw_samples = Vec::new();
        // Interleave the two series so drift on a noisy machine hits both alike.
        for _ in 0..args.samples {
            let mut i = 0u64;
            farmem_samples.extend(sample_ns_per_op(1, args.ops, || {
                for _ in 0..args.ops {
                    if let Err(e) = client.read(DS, i % OBJECTS) {
                        farmem_err.get_or_insert(e);
                    }
                    i += 1;
                }
            }));
            raw_samples.extend(sample_ns_per_op(1, args.ops, || {
                for _ in 0..args.ops {
                    if let Err(e) = raw.round_trip() {
                        raw_err.get_or_insert(e);
                    }
                }
            }));
        }
        if let Some(e) = farmem_err.or(raw_err) {
            return Err(e);
        }
        let (f, r) = (median(&farmem_samples), median(&raw_samples));
        let q = ratio(f, r);
        worst_ratio = worst_ratio.max(q);
        report.row(&[
            "read round trip".to_string(),
            size.to_string(),
            format!("{f:.0}"),
            format!("{r:.0}"),
            format!("{q:.2}"),
        ]);
        report.figure_f64(&format!("read_{size}b_farmem_ns"), f);
        report.figure_f64(&format!("read_{size}b_raw_tcp_ns"), r);
        report.figure_f64(&format!("read_{size}b_ratio_vs_raw"), q);
    }
    report.note(format!("round trips {}", placement.description));
    drop(placement);
    report.target(
        "read_ratio_vs_raw",
        "read round trip <= 1.5x raw TCP (64 B and 4 KiB)",
        worst_ratio <= 1.5,
    );

    // Throughput: 4 KiB objects are in place from the last latency series. Measured with the
    // configured pool and with one connection per thread (what the raw baseline has).
    let secs = Duration::from_secs_f64(args.seconds.max(0.05));
    let mut pools = vec![args.connections.max(1)];
    if args.threads != args.connections {
        pools.push(args.threads);
    }
    let mut ops = 0.0;
    for (k, conns) in pools.into_iter().enumerate() {
        let pool = Arc::new(Client::connect(
            servers.farmem_addr,
            &ClientConfig::new(TOKEN).with_connections(conns),
        )?);
        let measured = throughput(args.threads, secs, {
            let pool = Arc::clone(&pool);
            move |t, i| pool.read(DS, (t as u64 * 7919 + i) % OBJECTS).map(|_| ())
        })?;
        let mb = measured * 4096.0 / 1e6;
        report.row(&[
            format!("{} threads, {conns} conns", args.threads),
            "4096".to_string(),
            format!("{measured:.0} ops/s"),
            String::new(),
            format!("{mb:.0} MB/s"),
        ]);
        let name = if k == 0 {
            "pool".to_string()
        } else {
            "conn_per_thread".to_string()
        };
        report.figure_f64(&format!("read_4k_threads_{name}_ops_per_s"), measured);
        report.figure_f64(&format!("read_4k_threads_{name}_mb_per_s"), mb);
        ops = measured;
    }
    report.figure("throughput_threads", args.threads as u64);
    report.figure("throughput_pool_connections", args.connections as u64);

    // The same throughput through raw TCP, one connection per thread, for reference.
    let raw_addr = servers.raw_addr;
    let raw_ops = throughput(args.threads, secs, {
        let conns: Vec<std::sync::Mutex<Option<RawClient>>> = (0..args.threads)
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        let conns = Arc::new(conns);
        move |t, _| {
            let mut slot = conns[t]
                .lock()
                .map_err(|_| Error::internal("raw client lock"))?;
            if slot.is_none() {
                *slot = Some(RawClient::connect(raw_addr, HEADER_LEN + 5 + 4096)?);
            }
            match slot.as_mut() {
                Some(c) => c.round_trip(),
                None => Err(Error::internal("raw client missing")),
            }
        }
    })?;
    report.row(&[
        format!("raw TCP, {} threads", args.threads),
        "4096".to_string(),
        String::new(),
        format!("{raw_ops:.0} ops/s"),
        format!("{:.2}", ratio(ops, raw_ops)),
    ]);
    report.figure_f64("raw_4k_threads_ops_per_s", raw_ops);
    // `ops` is the last farmem series: one connection per thread, like the raw baseline.
    report.figure_f64("read_4k_threads_throughput_vs_raw", ratio(ops, raw_ops));

    // Pipelining: one thread keeps `depth` reads in flight on one connection.
    let depth = args.depth;
    let deadline = Instant::now() + secs;
    let start = Instant::now();
    let mut done = 0u64;
    while Instant::now() < deadline {
        let pending = (0..depth as u64)
            .map(|i| {
                client.submit(&Request::Read {
                    ds: DS,
                    object: (done + i) % OBJECTS,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for p in pending {
            p.wait()?;
        }
        done += depth as u64;
    }
    let piped = done as f64 / start.elapsed().as_secs_f64();
    report.row(&[
        format!("1 thread, depth {depth}"),
        "4096".to_string(),
        format!("{piped:.0} ops/s"),
        String::new(),
        format!("{:.0} MB/s", piped * 4096.0 / 1e6),
    ]);
    report.figure_f64("read_4k_pipelined_ops_per_s", piped);
    report.figure("pipeline_depth", depth as u64);
    report.note("latency: median of per-sample means; ratio = farmem / raw, same run");
    drop(client);
    servers.stop();
    Ok(report)
}

/// Runs `op(thread, i)` on `threads` threads for `secs`; returns total ops per second.
fn throughput(
    threads: usize,
    secs: Duration,
    op: impl Fn(usize, u64) -> Result<()> + Send + Sync + 'static,
) -> Result<f64> {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, stop, total) = (Arc::clone(&op), Arc::clone(&stop), Arc::clone(&total));
            std::thread::spawn(move || -> Result<()> {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i)?;
                    i += 1;
                }
                total.fetch_add(i, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| Error::internal("a throughput thread panicked"))??;
    }
    Ok(total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
