//! `farmem-bench list`: a full scan of a `RemList<u64>` over a `TcpBackend` whose local memory is
//! 10% of the list, against raw loopback TCP streaming bandwidth measured in the same run (one
//! socket, 1 MiB writes and reads). Target: the scan reaches ≥ 50% of raw.
//!
//! The list is built by `push_back`, then scanned with `for_each_chunk`, which reads the next
//! `--depth` chunks in list order ahead through `Backend::issue_read` (uncached: AIFM's
//! don't-cache hint for data read once; AIFM §5 prefetching in remoteable containers). The
//! element iterator (`RemList::iter`, copies out, reads ahead the same way) is reported beside
//! it.
//! Servers, the raw baseline and the memory rows come from the `fetch` scenario's helpers
//! (shared with `scan` and `evac`), so the baseline is the same code in every scenario.

use std::time::Instant;

use clap::Parser;
use farmem_objects::{Config, FarMemory, RemList};

use crate::far_server::{memory_rows, FarServers};
use crate::raw_tcp::RawClient;
use crate::{median, ratio, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "list",
    about: "RemList full scan over TCP (10% local) vs raw loopback TCP bandwidth",
    run,
};

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench list",
    about = "RemList scan over TCP vs raw TCP streaming"
)]
struct Args {
    /// Run the servers in this process instead of as child processes.
    #[arg(long)]
    embedded: bool,
    /// List size in MiB (local memory is 10% of it).
    #[arg(long, default_value_t = 64)]
    mib: usize,
    /// Samples per series (the median is reported).
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Connections to the memory server.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Bytes per list chunk (64 KiB amortises the per-request cost of the TCP backend; the
    /// maximum, as chunks must fit twice in a 256 KiB region).
    #[arg(long, default_value_t = 65536)]
    chunk_bytes: usize,
    /// Chunks read ahead during a scan (the prefetch depth).
    #[arg(long, default_value_t = 16)]
    depth: usize,
}

/// The sum of `0..n` with wrapping, the scan's expected result.
fn expected_sum(n: u64) -> u64 {
    (0..n).fold(0u64, |a, x| a.wrapping_add(x))
}

fn scan_chunks(list: &RemList<u64>, fm: &FarMemory) -> Result<u64> {
    let mut s = fm.scope();
    let mut sum = 0u64;
    list.for_each_chunk(&mut s, |xs| {
        sum = xs.iter().fold(sum, |a, &x| a.wrapping_add(x));
    })?;
    Ok(sum)
}

fn scan_iter(list: &RemList<u64>) -> Result<u64> {
    list.iter().try_fold(0u64, |a, x| Ok(a.wrapping_add(x?)))
}

fn check(what: &str, got: u64, want: u64) -> Result<()> {
    if got != want {
        return Err(Error::internal(format!(
            "{what} summed {got}, expected {want}"
        )));
    }
    Ok(())
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.samples == 0 || args.mib < 8 || args.connections == 0 {
        return Err(Error::invalid(
            "--samples and --connections must be >= 1 and --mib >= 8",
        ));
    }
    let servers = FarServers::start(args.embedded, "4GiB")?;
    let bytes = args.mib << 20;
    let region = 256 << 10;
    let local = (bytes / 10) / region * region;
    let mut raw = RawClient::connect(servers.raw_addr, 1 << 20)?;
    raw.stream_bandwidth(bytes as u64)?; // warm-up

    let config = Config::builder()
        .local_bytes(local)
        .region_bytes(region)
        .chunk_bytes(args.chunk_bytes)
        .prefetch_depth(args.depth)
        .build()?;
    let fm = servers.far_memory(config, args.connections, true)?;
    let n = (bytes / 8) as u64;
    let mut list = fm.list::<u64>()?;
    let fill = Instant::now();
    {
        let mut s = fm.scope();
        for i in 0..n {
            list.push_back(i, &s)?;
            if i % 4096 == 0 {
                s.renew();
            }
        }
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let want = expected_sum(n);
    // Warm-up pass: the fill's dirty chunks have been written back, most of the list is remote.
    check("list scan", scan_chunks(&list, &fm)?, want)?;

    let before = fm.metrics();
    let (mut chunked, mut iterated, mut rawbw) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.samples {
        let t = Instant::now();
        check("list scan", scan_chunks(&list, &fm)?, want)?;
        chunked.push(bytes as f64 / t.elapsed().as_secs_f64());
        rawbw.push(raw.stream_bandwidth(bytes as u64)?);
        let t = Instant::now();
        check("list iter", scan_iter(&list)?, want)?;
        iterated.push(bytes as f64 / t.elapsed().as_secs_f64());
    }
    let after = fm.metrics();
    let (c, it, r) = (
        median(&chunked) / 1e6,
        median(&iterated) / 1e6,
        median(&rawbw) / 1e6,
    );
    let (qc, qi) = (ratio(c, r), ratio(it, r));
    let read_ahead = after.prefetches_used - before.prefetches_used;
    let misses = after.misses - before.misses;

    let mut report = Report::new("list", &["series", "MB/s", "raw TCP MB/s", "ratio"]);
    report.figure("server", if args.embedded { "embedded" } else { "process" });
    report.figure("list_bytes", bytes as u64);
    report.figure("chunk_bytes", args.chunk_bytes as u64);
    report.figure("read_ahead_depth", args.depth as u64);
    report.row(&[
        format!(
            "RemList for_each_chunk, {} B chunks, depth {}",
            args.chunk_bytes, args.depth
        ),
        format!("{c:.0}"),
        format!("{r:.0}"),
        format!("{qc:.2}"),
    ]);
    report.row(&[
        "RemList iter (copies out)".to_string(),
        format!("{it:.0}"),
        format!("{r:.0}"),
        format!("{qi:.2}"),
    ]);
    report.row(&[
        "fill by push_back".to_string(),
        format!("{:.0}", bytes as f64 / fill_s / 1e6),
        String::new(),
        String::new(),
    ]);
    report.figure_f64("list_scan_mb_per_s", c);
    report.figure_f64("list_iter_mb_per_s", it);
    report.figure_f64("raw_tcp_mb_per_s", r);
    report.figure_f64("list_scan_ratio_vs_raw", qc);
    report.figure_f64("list_iter_ratio_vs_raw", qi);
    report.figure_f64("list_fill_mb_per_s", bytes as f64 / fill_s / 1e6);
    report.figure("list_read_ahead_chunks", read_ahead);
    report.figure("list_scan_misses", misses);
    report.target(
        "list_scan_ratio_vs_raw",
        "RemList scan >= 50% of raw TCP streaming",
        qc >= 0.5,
    );
    drop(list);
    drop(fm);
    memory_rows(&mut report, local);
    report.note(format!(
        "{} MiB list, {} MiB local (10%); medians of {} samples; {read_ahead} chunks read ahead, \
         {misses} misses over all samples; raw = one socket, 1 MiB writes",
        args.mib,
        local >> 20,
        args.samples
    ));
    servers.stop();
    Ok(report)
}
