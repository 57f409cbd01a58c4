//! `farmem-bench scan`: a sequential scan of a `RemArray<u64>` over a `TcpBackend` whose local
//! memory is 10% of the array, against raw loopback TCP streaming bandwidth measured in the same
//! run (one socket, 1 MiB writes and reads). Target: the scan reaches ≥ 60% of raw.
//!
//! The scan is `for_each_chunk` summing every element; the stride prefetcher (AIFM §5) keeps up
//! to depth chunks in flight through `Backend::issue_read_batch` (one batch-read frame per
//! refill). Each `--variants` entry (`CHUNKxDEPTH`) is a separate far-memory instance and array,
//! so chunk size and prefetch depth can be compared in one run; the first is the one the target
//! is judged on: by default the object layer's default configuration (4 KiB chunks, depth 64).
//! The prefetcher's lead is the larger of the depth and its byte lead (1 MiB, at most 1/8 of
//! local memory: 200 chunks of 4 KiB here), so the depth matters only where chunk × depth is
//! larger. Per-chunk costs (a pointer word, a slow-path first use, a header, a server lookup,
//! evacuation) cap small chunks, which the larger-chunk variants show. Prefetch counters
//! (issued, used, misses left to the scan) are reported per variant.
//!
//! Beside the wall-clock ratio each variant reports the CPU time both sides spent per byte (this
//! process and its server children, every thread, from `/proc/*/task/*/schedstat`) and the CPU
//! efficiency `raw CPU per byte / scan CPU per byte`. On a small machine shared with other work
//! the wall-clock ratio swings with the neighbours' load, while CPU per byte does not: when
//! both transfers are CPU-bound, the efficiency is the ratio the scan reaches on a quiet machine
//! of the same core count. A note per variant splits the scans' CPU by thread name (mutator,
//! prefetch issuer and lander, evacuator, server connections) with the times each was scheduled
//! in per MiB, which tells per-chunk work from per-frame wake-ups.

use std::time::Instant;

use clap::Parser;
use farmem_objects::Config;

use super::fetch::checksum;
use crate::far_server::{memory_rows, FarServers};
use crate::raw_tcp::RawClient;
use crate::threads::{thread_cpu_ns, tree_cpu_ns, ThreadCpu};
use crate::{median, ratio, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "scan",
    about: "sequential RemArray scan over TCP (10% local) vs raw loopback TCP bandwidth",
    run,
};

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench scan",
    about = "far scan over TCP vs raw TCP streaming"
)]
struct Args {
    /// Run the servers in this process instead of as child processes.
    #[arg(long)]
    embedded: bool,
    /// Array size in MiB (local memory is 10% of it).
    #[arg(long, default_value_t = 64)]
    mib: usize,
    /// Samples per series (the median is reported).
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Connections to the memory server.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Chunk bytes × prefetch depth of each measured configuration; the first is judged.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4096x64,4096x32,16384x32,65536x8"
    )]
    variants: Vec<String>,
}

fn parse_variant(v: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::invalid(format!(
            "variant {v:?} is not CHUNK_BYTESxDEPTH, e.g. 4096x32"
        ))
    };
    let (c, d) = v.split_once('x').ok_or_else(bad)?;
    Ok((
        c.trim().parse().map_err(|_| bad())?,
        d.trim().parse().map_err(|_| bad())?,
    ))
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.samples == 0 || args.mib < 8 || args.variants.is_empty() {
        return Err(Error::invalid(
            "--samples must be >= 1, --mib >= 8, and one variant given",
        ));
    }
    let variants = args
        .variants
        .iter()
        .map(|v| parse_variant(v))
        .collect::<Result<Vec<_>>>()?;
    let servers = FarServers::start(args.embedded, "4GiB")?;
    let bytes = args.mib << 20;
    let local = bytes / 10;
    let region = 256 << 10;
    let local = local / region * region;
    let mut raw = RawClient::connect(servers.raw_addr, 1 << 20)?;
    raw.stream_bandwidth(bytes as u64)?; // warm-up

    let mut report = Report::new(
        "scan",
        &[
            "series",
            "MB/s",
            "raw TCP MB/s",
            "ratio",
            "CPU ns/B scan/raw (eff.)",
            "prefetch issued/used, misses",
        ],
    );
    report.figure("server", if args.embedded { "embedded" } else { "process" });
    report.figure("array_bytes", bytes as u64);
    let mut judged = None;
    for (k, &(chunk, depth)) in variants.iter().enumerate() {
        let config = Config::builder()
            .local_bytes(local)
            .region_bytes(region)
            .chunk_bytes(chunk)
            .prefetch_depth(depth)
            .build()?;
        let fm = servers.far_memory(config, args.connections, true)?;
        let n = bytes / 8;
        let mut arr = fm.array::<u64>(n)?;
        {
            let mut s = fm.scope();
            let block: Vec<u64> = (0..1u64 << 16).collect();
            for start in (0..n).step_by(block.len()) {
                let len = block.len().min(n - start);
                arr.write_slice(start, &block[..len], &mut s)?;
            }
        }
        let expect = {
            let per = (1u64 << 16) * ((1u64 << 16) - 1) / 2;
            per.wrapping_mul((n >> 16) as u64)
        };
        // Warm-up pass (evicts the fill's dirty chunks, starts from a remote array).
        let got = checksum(&arr, &fm)?;
        if got != expect {
            return Err(Error::internal(format!(
                "scan summed {got}, expected {expect}"
            )));
        }
        let before = fm.metrics();
        let (mut far, mut rawbw) = (Vec::new(), Vec::new());
        let (mut far_cpu, mut raw_cpu) = (Vec::new(), Vec::new());
        // CPU of the scans alone by thread name, summed over the samples.
        let mut by_thread = ThreadCpu::default();
        for _ in 0..args.samples {
            let t0 = thread_cpu_ns();
            let c0 = tree_cpu_ns();
            let t = Instant::now();
            let got = checksum(&arr, &fm)?;
            far.push(bytes as f64 / t.elapsed().as_secs_f64());
            let c1 = tree_cpu_ns();
            by_thread.add_since(t0);
            if got != expect {
                return Err(Error::internal(format!(
                    "scan summed {got}, expected {expect}"
                )));
            }
            rawbw.push(raw.stream_bandwidth(bytes as u64)?);
            let c2 = tree_cpu_ns();
            if let (Some(c0), Some(c1), Some(c2)) = (c0, c1, c2) {
                far_cpu.push(c1.saturating_sub(c0) as f64 / bytes as f64);
                raw_cpu.push(c2.saturating_sub(c1) as f64 / bytes as f64);
            }
        }
        let after = fm.metrics();
        let (f, r) = (median(&far) / 1e6, median(&rawbw) / 1e6);
        let q = ratio(f, r);
        // ns of CPU per byte moved; efficiency = raw's cost over the scan's.
        let (fc, rc) = (median(&far_cpu), median(&raw_cpu));
        let eff = ratio(rc, fc);
        let issued = after.prefetches_issued - before.prefetches_issued;
        let used = after.prefetches_used - before.prefetches_used;
        let misses = after.misses - before.misses;
        report.row(&[
            format!("scan, {chunk} B chunks, depth {depth}"),
            format!("{f:.0}"),
            format!("{r:.0}"),
            format!("{q:.2}"),
            format!("{fc:.2}/{rc:.2} ({eff:.2})"),
            format!("{issued}/{used}, {misses}"),
        ]);
        let tag = format!("c{chunk}_d{depth}");
        report.figure_f64(&format!("scan_{tag}_mb_per_s"), f);
        report.figure_f64(&format!("raw_{tag}_mb_per_s"), r);
        report.figure_f64(&format!("scan_{tag}_ratio_vs_raw"), q);
        if !far_cpu.is_empty() {
            report.figure_f64(&format!("scan_{tag}_cpu_ns_per_byte"), fc);
            report.figure_f64(&format!("raw_{tag}_cpu_ns_per_byte"), rc);
            report.figure_f64(&format!("scan_{tag}_cpu_efficiency_vs_raw"), eff);
        }
        let per_byte = |ns: i64| ns as f64 / (bytes * args.samples) as f64;
        report.note(format!(
            "{tag}: scan CPU ns/B (times run per MiB) by thread, this process and its servers: {}",
            by_thread
                .entries()
                .filter(|&(_, ns, _)| per_byte(ns) >= 0.005)
                .map(|(name, ns, runs)| {
                    let per_mib = runs as f64 * (1 << 20) as f64 / (bytes * args.samples) as f64;
                    format!("{name} {:.3} ({per_mib:.0})", per_byte(ns))
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
        report.figure(&format!("scan_{tag}_prefetches_issued"), issued);
        report.figure(&format!("scan_{tag}_prefetches_used"), used);
        report.figure(&format!("scan_{tag}_misses"), misses);
        if k == 0 {
            judged = Some(q);
            report.figure_f64("scan_ratio_vs_raw", q);
        }
        drop(arr);
        drop(fm);
    }
    let q = judged.unwrap_or(f64::NAN);
    report.target(
        "scan_ratio_vs_raw",
        "scan >= 60% of raw TCP streaming (first variant)",
        q >= 0.6,
    );
    memory_rows(&mut report, local);
    report.note(format!(
        "{} MiB array, {} MiB local (10%); medians of {} samples; raw = one socket, 1 MiB writes",
        args.mib,
        local >> 20,
        args.samples
    ));
    servers.stop();
    Ok(report)
}
