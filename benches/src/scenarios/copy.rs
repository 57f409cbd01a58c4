//! `farmem-bench copy`: `farmem_net::copy_bytes` against `copy_from_slice` (glibc `memcpy`)
//! for one object size, with the source 5 bytes into a page (an object after a read answer's
//! prefix) and the destination at several distances past it modulo a page, among them the few
//! bytes at which `rep movsb` slows down on some CPUs (`farmem_net::copy` module note).
//! Both copy hot buffers (the same source and destination again and again), so the figures are
//! cache bandwidth, not memory bandwidth.
//!
//! Reports GB/s per distance, the slowest cell of each, and the ratio of the slowest cells
//! (`copy_bytes` ÷ `memcpy`; above 1 means `copy_bytes` has the better worst case).

use std::time::Instant;

use clap::Parser;

use crate::{median, ratio, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "copy",
    about: "farmem's copy_bytes vs memcpy over source/destination alignments (GB/s)",
    run,
};

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench copy",
    about = "copy_bytes vs memcpy at every destination alignment"
)]
struct Args {
    /// Bytes per copy (an object size: 4096 is the default chunk).
    #[arg(long, default_value_t = 4096)]
    bytes: usize,
    /// Samples per cell (the median is reported).
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Bytes copied per sample.
    #[arg(long, default_value_t = 256 << 20)]
    volume: usize,
}

/// GB/s of `copy` over `volume` bytes in copies of `src.len()` bytes.
fn bandwidth(volume: usize, src: &[u8], dst: &mut [u8], copy: fn(&mut [u8], &[u8])) -> f64 {
    let reps = (volume / src.len()).max(1);
    let t = Instant::now();
    for _ in 0..reps {
        copy(dst, std::hint::black_box(src));
        std::hint::black_box(&mut *dst);
    }
    (reps * src.len()) as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn memcpy(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(src);
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.bytes == 0 || args.samples == 0 || args.volume < args.bytes {
        return Err(Error::invalid(
            "--bytes and --samples must be >= 1 and --volume >= --bytes",
        ));
    }
    // Over-allocated so that every offset below fits; both bases are page-aligned by hand, so
    // the distance modulo a page is the offset difference.
    let mut src_buf = vec![0x5au8; args.bytes + 8192];
    let mut dst_buf = vec![0u8; args.bytes + 8192];
    let align = |p: *const u8| (4096 - p as usize % 4096) % 4096;
    let (sa, da) = (align(src_buf.as_ptr()) + 5, align(dst_buf.as_ptr()) + 5);
    src_buf
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);

    let mut report = Report::new(
        "copy",
        &["destination past source", "memcpy GB/s", "copy_bytes GB/s"],
    );
    let (mut worst_memcpy, mut worst_ours) = (f64::MAX, f64::MAX);
    for d_off in [0usize, 3, 8, 11, 16, 24, 32, 64, 2048] {
        {
            let src = &src_buf[sa..sa + args.bytes];
            let dst = &mut dst_buf[da + d_off..da + d_off + args.bytes];
            let (mut m, mut o) = (Vec::new(), Vec::new());
            for _ in 0..args.samples {
                m.push(bandwidth(args.volume, src, dst, memcpy));
                o.push(bandwidth(args.volume, src, dst, farmem_net::copy_bytes));
            }
            if dst != src {
                return Err(Error::internal("copy_bytes copied the wrong bytes"));
            }
            let (m, o) = (median(&m), median(&o));
            worst_memcpy = worst_memcpy.min(m);
            worst_ours = worst_ours.min(o);
            report.row(&[format!("{d_off} B"), format!("{m:.1}"), format!("{o:.1}")]);
        }
    }
    report.figure("bytes", args.bytes as u64);
    report.figure_f64("memcpy_worst_gb_per_s", worst_memcpy);
    report.figure_f64("copy_bytes_worst_gb_per_s", worst_ours);
    report.figure_f64(
        "worst_case_ratio_copy_bytes_vs_memcpy",
        ratio(worst_ours, worst_memcpy),
    );
    report.note(format!(
        "slowest cell: memcpy {worst_memcpy:.1} GB/s, copy_bytes {worst_ours:.1} GB/s; \
         {} B per copy, hot buffers, medians of {} samples",
        args.bytes, args.samples
    ));
    Ok(report)
}
