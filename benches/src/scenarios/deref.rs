//! `farmem-bench deref`: the cost of a far-memory dereference (AIFM §4.1) against plain `Vec`.
//!
//! # What runs (one process, same data, interleaved samples)
//!
//! * **hot random reads**: `RemArray<u64>` whose chunks are all local and hot (local memory is 4×
//!   the array), read at precomputed random indices inside one `DerefScope` renewed every 1024
//!   reads, against `Vec<u64>` at the same indices. Target: ≤ 3× the `Vec` time per read.
//! * **chunked iteration**: `RemArray::for_each_chunk` summing every element (one dereference
//!   per chunk) against `Vec::iter().sum()`. Target: ≤ 1.2× the `Vec` time.
//! * **far scan**: `for_each_chunk` over an array whose local memory is 10% of its size, on the
//!   in-process backend, with and without the stride prefetcher, and for several chunk sizes
//!   (the chunk-size choice: small chunks pay per-object costs — a pointer word, a header, a
//!   backend lookup and a scope renewal per chunk — large ones fetch more than a random access
//!   needs). Reports MB/s and the hit, miss and prefetch counters of the default configuration.
//!
//! Medians over `--samples` samples (each iteration sample is the best of three passes, for
//! both sides); ratios are taken between medians measured in this run.

use std::time::Instant;

use clap::Parser;
use farmem_error::Result;
use farmem_objects::{Config, FarMemory, Metrics, RemArray};

use crate::{elapsed_ns, median, ratio, Report, Scenario};

/// The `deref` scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "deref",
    about: "RemArray dereference, chunked iteration and far scan vs Vec",
    run,
};

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench deref",
    about = "RemArray dereference cost vs Vec"
)]
struct Args {
    /// Elements (u64) of the hot array.
    #[arg(long, default_value_t = 1 << 20)]
    len: usize,
    /// Random reads per sample.
    #[arg(long, default_value_t = 2_000_000)]
    reads: usize,
    /// Samples per series.
    #[arg(long, default_value_t = 9)]
    samples: usize,
    /// Size of the far-scan array in MiB (local memory is 10% of it).
    #[arg(long, default_value_t = 64)]
    scan_mib: usize,
    /// Chunk size in bytes of the hot array and the default far scan.
    #[arg(long, default_value_t = 4096)]
    chunk_bytes: usize,
    /// Prefetch depth (chunks) of the far scan.
    #[arg(long, default_value_t = 16)]
    prefetch_depth: usize,
    /// Chunk sizes (bytes) the far scan is also measured with.
    #[arg(long, value_delimiter = ',', default_value = "1024,4096,16384")]
    chunk_sweep: Vec<usize>,
}

fn indices(n: usize, len: usize) -> Vec<usize> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % len as u64) as usize
        })
        .collect()
}

/// The summing kernel both iteration series use, so they differ only in how they reach the data.
#[inline(never)]
fn sum_slice(s: &[u64]) -> u64 {
    s.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

fn hot_memory(len: usize, chunk_bytes: usize) -> Result<FarMemory> {
    let local = (len * 8 * 4).next_power_of_two().max(8 << 20);
    let cfg = Config::builder()
        .local_bytes(local)
        .region_bytes(1 << 20)
        .chunk_bytes(chunk_bytes)
        .prefetch_depth(0)
        .build()?;
    FarMemory::in_process(cfg, (len as u64 * 8) * 2 + (64 << 20))
}

fn fill(fm: &FarMemory, a: &mut RemArray<u64>) -> Result<Vec<u64>> {
    let src: Vec<u64> = (0..a.len() as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9))
        .collect();
    let mut s = fm.scope();
    a.write_slice(0, &src, &mut s)?;
    Ok(src)
}

struct ScanResult {
    mb_per_s: f64,
    metrics: Metrics,
}

fn delta(a: Metrics, b: Metrics) -> Metrics {
    Metrics {
        hits: b.hits - a.hits,
        misses: b.misses - a.misses,
        bytes_fetched: b.bytes_fetched - a.bytes_fetched,
        bytes_written_back: b.bytes_written_back - a.bytes_written_back,
        evacuated_regions: b.evacuated_regions - a.evacuated_regions,
        objects_moved: b.objects_moved - a.objects_moved,
        objects_dropped: b.objects_dropped - a.objects_dropped,
        evacuation_conflicts: b.evacuation_conflicts - a.evacuation_conflicts,
        prefetches_issued: b.prefetches_issued - a.prefetches_issued,
        prefetches_used: b.prefetches_used - a.prefetches_used,
        uncached_reads: b.uncached_reads - a.uncached_reads,
        write_throughs: b.write_throughs - a.write_throughs,
        writeback_errors: b.writeback_errors - a.writeback_errors,
        free_regions: b.free_regions,
        total_regions: b.total_regions,
    }
}

fn far_scan(
    scan_bytes: usize,
    chunk_bytes: usize,
    depth: usize,
    samples: usize,
) -> Result<ScanResult> {
    let len = scan_bytes / 8;
    let region = 256 << 10;
    let local = (scan_bytes / 10).max(8 * region) / region * region;
    let cfg = Config::builder()
        .local_bytes(local)
        .region_bytes(region)
        .chunk_bytes(chunk_bytes)
        .prefetch_depth(depth)
        .build()?;
    let fm = FarMemory::in_process(cfg, scan_bytes as u64 * 2 + (64 << 20))?;
    let mut a = fm.array::<u64>(len)?;
    let src = fill(&fm, &mut a)?;
    let expect: u64 = src.iter().fold(0u64, |s, &x| s.wrapping_add(x));
    drop(src);
    let before = fm.metrics();
    let mut mbs = Vec::new();
    for _ in 0..samples {
        let mut s = fm.scope();
        let mut sum = 0u64;
        let t = Instant::now();
        a.for_each_chunk(&mut s, |_, c| {
            sum = c.iter().fold(sum, |s, &x| s.wrapping_add(x));
        })?;
        let secs = t.elapsed().as_secs_f64();
        if sum != expect {
            return Err(farmem_error::Error::internal(format!(
                "far scan summed {sum}, expected {expect}"
            )));
        }
        mbs.push(scan_bytes as f64 / 1e6 / secs);
    }
    Ok(ScanResult {
        mb_per_s: median(&mbs),
        metrics: delta(before, fm.metrics()),
    })
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    let samples = args.samples.max(1);
    let mut report = Report::new("deref", &["series", "farmem", "Vec", "ratio"]);

    // Hot random reads and chunked iteration.
    let fm = hot_memory(args.len, args.chunk_bytes)?;
    let mut arr = fm.array::<u64>(args.len)?;
    let v = fill(&fm, &mut arr)?;
    {
        // Make every chunk local and hot before timing.
        let mut s = fm.scope();
        arr.for_each_chunk(&mut s, |_, _| {})?;
        arr.for_each_chunk(&mut s, |_, _| {})?;
    }
    let idx = indices(args.reads, args.len);
    let (mut rem_ns, mut vec_ns, mut rem_it, mut vec_it) = (vec![], vec![], vec![], vec![]);
    let mut check = 0u64;
    for _ in 0..samples {
        let t = Instant::now();
        let mut s = fm.scope();
        let mut sum = 0u64;
        for block in idx.chunks(1024) {
            for &i in block {
                sum = sum.wrapping_add(*arr.get(i, &s)?);
            }
            s.renew();
        }
        drop(s);
        rem_ns.push(elapsed_ns(t.elapsed()) / idx.len() as f64);
        check ^= std::hint::black_box(sum);

        let t = Instant::now();
        let mut sum = 0u64;
        for &i in &idx {
            sum = sum.wrapping_add(v[i]);
        }
        vec_ns.push(elapsed_ns(t.elapsed()) / idx.len() as f64);
        check ^= std::hint::black_box(sum);

        // Iteration passes are short: take the best of three per sample for both sides, so a
        // neighbour's burst on a shared machine does not land in one series only.
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let mut s = fm.scope();
            let mut sum = 0u64;
            arr.for_each_chunk(&mut s, |_, c| sum = sum.wrapping_add(sum_slice(c)))?;
            drop(s);
            best = best.min(elapsed_ns(t.elapsed()) / args.len as f64);
            check ^= std::hint::black_box(sum);
        }
        rem_it.push(best);

        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let sum = sum_slice(&v);
            best = best.min(elapsed_ns(t.elapsed()) / args.len as f64);
            check ^= std::hint::black_box(sum);
        }
        vec_it.push(best);
    }
    if check != 0 {
        return Err(farmem_error::Error::internal(
            "RemArray and Vec disagreed on a sum",
        ));
    }
    let hot_m = fm.metrics();
    let (r_ns, v_ns) = (median(&rem_ns), median(&vec_ns));
    let (ri_ns, vi_ns) = (median(&rem_it), median(&vec_it));
    let random_ratio = ratio(r_ns, v_ns);
    let iter_ratio = ratio(ri_ns, vi_ns);
    report.row(&[
        format!("random read, hot ({} u64), ns/read", args.len),
        format!("{r_ns:.2}"),
        format!("{v_ns:.2}"),
        format!("{random_ratio:.2}x"),
    ]);
    report.row(&[
        "chunked iteration, ns/element".to_string(),
        format!("{ri_ns:.3}"),
        format!("{vi_ns:.3}"),
        format!("{iter_ratio:.2}x"),
    ]);
    report.figure_f64("hot_random_read_ns", r_ns);
    report.figure_f64("vec_random_read_ns", v_ns);
    report.figure_f64("hot_random_read_ratio_vs_vec", random_ratio);
    report.figure_f64("chunked_iter_ns_per_elem", ri_ns);
    report.figure_f64("vec_iter_ns_per_elem", vi_ns);
    report.figure_f64("chunked_iter_ratio_vs_vec", iter_ratio);
    report.figure("hot_misses", hot_m.misses);
    report.figure("hot_uncached_reads", hot_m.uncached_reads);
    report.target(
        "hot_random_read_ratio",
        "hot RemArray random read <= 3x Vec",
        random_ratio <= 3.0,
    );
    report.target(
        "chunked_iter_ratio",
        "chunked iteration <= 1.2x Vec iteration",
        iter_ratio <= 1.2,
    );
    drop((arr, v, fm));

    // Far scans at 10% local memory.
    let scan_bytes = args.scan_mib << 20;
    let main = far_scan(
        scan_bytes,
        args.chunk_bytes,
        args.prefetch_depth,
        samples.min(5),
    )?;
    let nopf = far_scan(scan_bytes, args.chunk_bytes, 0, samples.min(5))?;
    let m = main.metrics;
    report.row(&[
        format!(
            "far scan, {} MiB, 10% local, prefetch {}, MB/s",
            args.scan_mib, args.prefetch_depth
        ),
        format!("{:.0}", main.mb_per_s),
        "-".into(),
        "-".into(),
    ]);
    report.row(&[
        "far scan, prefetch off, MB/s".to_string(),
        format!("{:.0}", nopf.mb_per_s),
        "-".into(),
        format!("{:.2}x with prefetch", ratio(main.mb_per_s, nopf.mb_per_s)),
    ]);
    report.note(format!(
        "far scan counters (all samples): hits {} misses {} prefetches issued {} used {} uncached {} evacuated regions {} fetched {} MiB",
        m.hits,
        m.misses,
        m.prefetches_issued,
        m.prefetches_used,
        m.uncached_reads,
        m.evacuated_regions,
        m.bytes_fetched >> 20
    ));
    report.figure_f64("far_scan_mb_per_s", main.mb_per_s);
    report.figure_f64("far_scan_no_prefetch_mb_per_s", nopf.mb_per_s);
    report.figure("far_scan_hits", m.hits);
    report.figure("far_scan_misses", m.misses);
    report.figure("far_scan_prefetches_issued", m.prefetches_issued);
    report.figure("far_scan_prefetches_used", m.prefetches_used);
    report.figure("far_scan_uncached_reads", m.uncached_reads);
    report.figure("far_scan_evacuated_regions", m.evacuated_regions);
    for &cb in &args.chunk_sweep {
        let r = far_scan(scan_bytes, cb, args.prefetch_depth, samples.min(3))?;
        report.row(&[
            format!("far scan, chunk {cb} B, MB/s"),
            format!("{:.0}", r.mb_per_s),
            "-".into(),
            "-".into(),
        ]);
        report.figure_f64(&format!("far_scan_chunk_{cb}_mb_per_s"), r.mb_per_s);
    }
    Ok(report)
}
