//! `farmem-bench sched`: green-thread switch, spawn+join and channel ping-pong against OS
//! threads and tokio tasks, plus the resident memory of 100k sleeping green threads.
//!
//! Each series runs in the same process, interleaved sample by sample (green, OS, tokio, then
//! the next sample), so machine noise hits all three alike; the medians and their ratios are
//! reported.
//!
//! - **switch** (ns per switch): two green threads on ONE worker alternately `yield_now()`;
//!   2·n yields make 2·n switches. OS baseline: two threads hand a turn back and forth through
//!   a `std::sync::Mutex` + `Condvar` (each hand-over is one switch). tokio baseline: two tasks
//!   on a current-thread runtime alternately `tokio::task::yield_now().await`.
//! - **spawn+join** (ns per pair): spawn an empty green thread and join it; `std::thread`
//!   spawn + join; `tokio::spawn` + `.await`.
//! - **channel ping-pong** (ns per round trip): two green threads bounce a counter through two
//!   `farmem_sched::sync::bounded(1)` channels; std `mpsc::sync_channel(1)` between two OS
//!   threads; `tokio::sync::mpsc::channel(1)` between two tasks.
//! - **burst placement** (share): a 2-worker runtime; this OS thread spawns `--burst` green
//!   threads at once, each notes its worker and sleeps 1 ms (blocking at once, as on a
//!   far-memory miss); the figure is the busiest worker's share of the burst (0.5 = even,
//!   1.0 = all on one worker). A started green thread never changes worker, so this is how the
//!   burst's work stays split for its whole life.
//! - **sleeping** (MiB): VmRSS (`/proc/self/status`) before and once 100k green threads are all
//!   inside `sleep`, on a runtime with the default stack size; one sample, because an allocator
//!   that reuses freed task memory makes a second sample in the same process smaller.
//!
//! Targets (the scheduler issue's): green switch <= 100 ns and >= 20x faster than the OS
//! ping-pong, green spawn+join <= 2 µs, 100k sleeping green threads in <= 2 GiB.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use farmem_sched::sync::bounded;
use farmem_sched::{spawn, yield_now, Runtime};

use crate::{elapsed_ns, median, ratio, Error, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "sched",
    about: "green threads vs OS threads vs tokio: switch, spawn+join, channel; 100k sleeping RSS",
    run,
};

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench sched",
    about = "green-thread switch, spawn+join, channel ping-pong vs OS threads and tokio; RSS of sleeping green threads"
)]
struct Args {
    /// Samples per series (the median is reported; at least 5 recommended).
    #[arg(long, default_value_t = 7)]
    samples: usize,
    /// Yields per green thread / tokio task per switch sample.
    #[arg(long, default_value_t = 200_000)]
    switches: u64,
    /// Hand-overs per OS thread per switch sample (OS switches are ~100x slower).
    #[arg(long, default_value_t = 10_000)]
    os_switches: u64,
    /// Spawn+join pairs per green / tokio sample.
    #[arg(long, default_value_t = 50_000)]
    spawns: u64,
    /// Spawn+join pairs per OS-thread sample.
    #[arg(long, default_value_t = 1_000)]
    os_spawns: u64,
    /// Channel round trips per green / tokio sample.
    #[arg(long, default_value_t = 100_000)]
    round_trips: u64,
    /// Channel round trips per OS-thread sample.
    #[arg(long, default_value_t = 10_000)]
    os_round_trips: u64,
    /// Green threads spawned at once from outside per burst-placement sample (0 skips it).
    #[arg(long, default_value_t = 64)]
    burst: usize,
    /// Green threads that sleep at once in the memory run (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    sleepers: usize,
    /// Longest wait, in ms, for all sleepers to be asleep at once before RSS is read.
    #[arg(long, default_value_t = 20_000)]
    settle_ms: u64,
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    let counts = [
        args.samples,
        args.switches as usize,
        args.os_switches as usize,
        args.spawns as usize,
        args.os_spawns as usize,
        args.round_trips as usize,
        args.os_round_trips as usize,
    ];
    if counts.contains(&0) {
        return Err(Error::invalid(
            "--samples, --switches, --os-switches, --spawns, --os-spawns, --round-trips and \
             --os-round-trips must be at least 1",
        ));
    }
    let green = Runtime::builder()
        .workers(1)
        .thread_name("bench-sched")
        .build()
        .map_err(|e| e.with_context("starting the one-worker green runtime"))?;
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::io("starting tokio's current-thread runtime", e))?;

    let mut series: [[Vec<f64>; 3]; 3] = Default::default();
    for _ in 0..args.samples {
        // [what][green, os, tokio]
        series[0][0].push(green_yield_pingpong(&green, args.switches));
        series[0][1].push(os_condvar_pingpong(args.os_switches));
        series[0][2].push(tokio_yield_pingpong(&tokio_rt, args.switches));
        series[1][0].push(green_spawn_join(&green, args.spawns));
        series[1][1].push(os_spawn_join(args.os_spawns));
        series[1][2].push(tokio_spawn_join(&tokio_rt, args.spawns));
        series[2][0].push(green_channel_pingpong(&green, args.round_trips));
        series[2][1].push(os_channel_pingpong(args.os_round_trips));
        series[2][2].push(tokio_channel_pingpong(&tokio_rt, args.round_trips));
    }
    drop(green);

    let mut report = Report::new(
        "sched",
        &[
            "what",
            "green ns",
            "OS thread ns",
            "tokio ns",
            "OS/green",
            "tokio/green",
        ],
    );
    let names = [
        ("switch", "yield ping-pong, per switch"),
        ("spawn_join", "spawn + join, per pair"),
        ("channel_rtt", "channel ping-pong, per round trip"),
    ];
    let mut medians = [[0.0; 3]; 3];
    for (i, (key, label)) in names.iter().enumerate() {
        let [g, o, t] = [0, 1, 2].map(|j| median(&series[i][j]));
        medians[i] = [g, o, t];
        report.row(&[
            label.to_string(),
            format!("{g:.1}"),
            format!("{o:.1}"),
            format!("{t:.1}"),
            format!("{:.1}x", ratio(o, g)),
            format!("{:.2}x", ratio(t, g)),
        ]);
        report.figure_f64(&format!("green_{key}_ns"), g);
        report.figure_f64(&format!("os_{key}_ns"), o);
        report.figure_f64(&format!("tokio_{key}_ns"), t);
        report.figure_f64(&format!("{key}_speedup_vs_os"), ratio(o, g));
        report.figure_f64(&format!("{key}_speedup_vs_tokio"), ratio(t, g));
    }
    report.figure("samples", args.samples);
    let [switch, spawn_join, _] = medians;
    report.target("switch_ns", "green switch <= 100 ns", switch[0] <= 100.0);
    report.target(
        "switch_speedup_vs_os",
        "green switch >= 20x faster than OS ping-pong",
        ratio(switch[1], switch[0]) >= 20.0,
    );
    report.target(
        "spawn_join_ns",
        "green spawn+join <= 2 µs",
        spawn_join[0] <= 2_000.0,
    );

    if args.burst > 0 {
        burst_placement(&args, &mut report)?;
    } else {
        report.note("burst placement: skipped (--burst 0)");
    }
    if args.sleepers > 0 {
        sleeping_rss(&args, &mut report)?;
    } else {
        report.note("sleeping green threads: skipped (--sleepers 0)");
    }
    Ok(report)
}

/// The busiest worker's share of `--burst` green threads spawned at once from outside onto a
/// 2-worker runtime (median of `--samples`).
fn burst_placement(args: &Args, report: &mut Report) -> Result<()> {
    let rt = Runtime::builder()
        .workers(2)
        .thread_name("bench-burst")
        .build()
        .map_err(|e| e.with_context("starting the two-worker green runtime"))?;
    let n = args.burst;
    let mut shares = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                rt.spawn(|| {
                    let me = farmem_sched::worker_id();
                    farmem_sched::sleep(Duration::from_millis(1));
                    me
                })
            })
            .collect();
        let mut per_worker = [0usize; 2];
        for h in handles {
            let w = h
                .join()
                .map_err(|e| Error::internal(format!("a burst green thread failed: {e:?}")))?;
            match w {
                Some(w @ 0..=1) => per_worker[w] += 1,
                other => {
                    return Err(Error::internal(format!(
                        "a burst green thread ran on worker {other:?} of 2"
                    )))
                }
            }
        }
        shares.push(per_worker[0].max(per_worker[1]) as f64 / n as f64);
    }
    let share = median(&shares);
    report.figure_f64("burst_busiest_worker_share", share);
    report.note(format!(
        "burst placement: {n} green threads spawned at once from outside onto 2 workers, each \
         sleeping 1 ms: the busiest worker started {share:.3} of them (median of {}; 0.5 = \
         even)",
        args.samples
    ));
    Ok(())
}

/// ns per switch: two green threads on `rt` (one worker) each yield `n` times.
pub fn green_yield_pingpong(rt: &Runtime, n: u64) -> f64 {
    let ns = rt.block_on(move || {
        let t = Instant::now();
        let a = spawn(move || (0..n).for_each(|_| yield_now()));
        let b = spawn(move || (0..n).for_each(|_| yield_now()));
        let _ = a.join();
        let _ = b.join();
        elapsed_ns(t.elapsed())
    });
    ns / (2 * n) as f64
}

/// ns per spawn+join pair of an empty green thread on `rt`.
pub fn green_spawn_join(rt: &Runtime, n: u64) -> f64 {
    let ns = rt.block_on(move || {
        let t = Instant::now();
        for i in 0..n {
            let _ = std::hint::black_box(spawn(move || i).join());
        }
        elapsed_ns(t.elapsed())
    });
    ns / n as f64
}

/// ns per round trip: two green threads on `rt` bounce a counter through two bounded(1)
/// farmem channels `n` times.
pub fn green_channel_pingpong(rt: &Runtime, n: u64) -> f64 {
    let ns = rt.block_on(move || {
        let (ping_tx, ping_rx) = bounded::<u64>(1);
        let (pong_tx, pong_rx) = bounded::<u64>(1);
        let echo = spawn(move || {
            for v in &ping_rx {
                if pong_tx.send(v + 1).is_err() {
                    break;
                }
            }
        });
        let t = Instant::now();
        let mut v = 0;
        for _ in 0..n {
            if ping_tx.send(v).is_err() {
                break;
            }
            match pong_rx.recv() {
                Ok(r) => v = r,
                Err(_) => break,
            }
        }
        let ns = elapsed_ns(t.elapsed());
        drop(ping_tx);
        let _ = echo.join();
        assert_eq!(v, n, "the echo green thread stopped early");
        ns
    });
    ns / n as f64
}

/// ns per switch: two OS threads hand a turn back and forth through a std Mutex + Condvar.
fn os_condvar_pingpong(n: u64) -> f64 {
    let pair = Arc::new((std::sync::Mutex::new(0u64), std::sync::Condvar::new()));
    let t = Instant::now();
    let other = {
        let pair = pair.clone();
        std::thread::spawn(move || take_turns(&pair, n, 1))
    };
    take_turns(&pair, n, 0);
    let _ = other.join();
    elapsed_ns(t.elapsed()) / (2 * n) as f64
}

/// Waits for turns `parity`, `parity + 2`, ... up to `2n`, passing the turn on each time.
fn take_turns(pair: &(std::sync::Mutex<u64>, std::sync::Condvar), n: u64, parity: u64) {
    let (m, cv) = pair;
    let Ok(mut turn) = m.lock() else { return };
    for _ in 0..n {
        while *turn % 2 != parity {
            turn = match cv.wait(turn) {
                Ok(g) => g,
                Err(_) => return,
            };
        }
        *turn += 1;
        cv.notify_one();
    }
}

/// ns per `std::thread::spawn` + `join` of an empty thread.
fn os_spawn_join(n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        let _ = std::hint::black_box(std::thread::spawn(move || i).join());
    }
    elapsed_ns(t.elapsed()) / n as f64
}

/// ns per round trip between two OS threads through two std `sync_channel(1)`s.
fn os_channel_pingpong(n: u64) -> f64 {
    let (ping_tx, ping_rx) = mpsc::sync_channel::<u64>(1);
    let (pong_tx, pong_rx) = mpsc::sync_channel::<u64>(1);
    let echo = std::thread::spawn(move || {
        for v in ping_rx {
            if pong_tx.send(v + 1).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    let mut v = 0;
    for _ in 0..n {
        if ping_tx.send(v).is_err() {
            break;
        }
        match pong_rx.recv() {
            Ok(r) => v = r,
            Err(_) => break,
        }
    }
    let ns = elapsed_ns(t.elapsed());
    drop(ping_tx);
    let _ = echo.join();
    ns / n as f64
}

/// ns per switch: two tokio tasks on a current-thread runtime each `yield_now().await` n times.
fn tokio_yield_pingpong(rt: &tokio::runtime::Runtime, n: u64) -> f64 {
    let ns = rt.block_on(async move {
        let t = Instant::now();
        let task = || async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
        };
        let a = tokio::spawn(task());
        let b = tokio::spawn(task());
        let _ = a.await;
        let _ = b.await;
        elapsed_ns(t.elapsed())
    });
    ns / (2 * n) as f64
}

/// ns per `tokio::spawn` + `.await` of an empty task.
fn tokio_spawn_join(rt: &tokio::runtime::Runtime, n: u64) -> f64 {
    let ns = rt.block_on(async move {
        let t = Instant::now();
        for i in 0..n {
            let _ = std::hint::black_box(tokio::spawn(async move { i }).await);
        }
        elapsed_ns(t.elapsed())
    });
    ns / n as f64
}

/// ns per round trip between two tokio tasks through two `mpsc::channel(1)`s.
fn tokio_channel_pingpong(rt: &tokio::runtime::Runtime, n: u64) -> f64 {
    let ns = rt.block_on(async move {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let echo = tokio::spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                if pong_tx.send(v + 1).await.is_err() {
                    break;
                }
            }
        });
        let t = Instant::now();
        let mut v = 0;
        for _ in 0..n {
            if ping_tx.send(v).await.is_err() {
                break;
            }
            match pong_rx.recv().await {
                Some(r) => v = r,
                None => break,
            }
        }
        let ns = elapsed_ns(t.elapsed());
        drop(ping_tx);
        let _ = echo.await;
        ns
    });
    ns / n as f64
}

/// The process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
fn vm_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("reading /proc/self/status for VmRSS", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::internal("no parsable VmRSS line in /proc/self/status"))
}

/// Spawns `args.sleepers` green threads that all sleep at once and records the RSS growth.
fn sleeping_rss(args: &Args, report: &mut Report) -> Result<()> {
    let n = args.sleepers;
    // Each live green thread maps its stack as 2 VMAs; leave room for the rest of the process.
    if let Some(limit) = farmem_sched::max_map_count() {
        if limit < 2 * n as u64 + 10_000 {
            report.note(format!(
                "sleeping green threads: skipped: {n} need ~{} memory mappings and \
                 vm.max_map_count is {limit} (sysctl -w vm.max_map_count=262144)",
                2 * n + 10_000
            ));
            report.figure("sleeping_100k_rss_mib", serde_json::Value::Null);
            return Ok(());
        }
    }
    let rt = Runtime::builder()
        .thread_name("bench-sleep")
        .build()
        .map_err(|e| e.with_context("starting the runtime for sleeping green threads"))?;
    let sleeping = Arc::new(AtomicUsize::new(0));
    // Longer than the whole run: the sleepers are still asleep when the runtime is dropped,
    // which unwinds them (their handles then report `Closed`), so the run is not stretched.
    let sleep_for = Duration::from_secs(3600);
    let settle = Duration::from_millis(args.settle_ms);
    let before = vm_rss_kib()?;
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let sleeping = sleeping.clone();
            rt.spawn(move || {
                sleeping.fetch_add(1, Ordering::Relaxed);
                farmem_sched::sleep(sleep_for);
            })
        })
        .collect();
    while sleeping.load(Ordering::Relaxed) < n && t.elapsed() < settle {
        std::thread::sleep(Duration::from_millis(1));
    }
    let peak_sleeping = sleeping.load(Ordering::Relaxed);
    let all_asleep_after = t.elapsed();
    let during = vm_rss_kib()?;
    let t_down = Instant::now();
    drop(rt);
    let mut unexpected = 0usize;
    for h in handles {
        match h.join() {
            Err(e) if e.error().kind() == farmem_sched::ErrorKind::Closed => {}
            _ => unexpected += 1,
        }
    }
    let shutdown = t_down.elapsed();
    let mib = (during.saturating_sub(before)) as f64 / 1024.0;
    let per_thread_kib = (during.saturating_sub(before)) as f64 / n as f64;
    report.row(&[
        format!("{n} sleeping green threads"),
        format!("{mib:.1} MiB"),
        String::new(),
        String::new(),
        format!("{per_thread_kib:.1} KiB each"),
        String::new(),
    ]);
    report.note(format!(
        "sleeping: {peak_sleeping} of {n} asleep at once {:.0} ms after the first spawn; RSS \
         {:.1} -> {:.1} MiB; runtime drop unwound them in {:.0} ms (one sample: an allocator \
         reusing freed memory would make later samples smaller)",
        all_asleep_after.as_secs_f64() * 1e3,
        before as f64 / 1024.0,
        during as f64 / 1024.0,
        shutdown.as_secs_f64() * 1e3
    ));
    if unexpected > 0 {
        report.note(format!(
            "sleeping: {unexpected} green threads ended other than by the runtime's shutdown"
        ));
    }
    let key = if n == 100_000 {
        "sleeping_100k_rss_mib".to_string()
    } else {
        format!("sleeping_{n}_rss_mib")
    };
    report.figure_f64(&key, mib);
    report.figure_f64("sleeping_rss_kib_per_thread", per_thread_kib);
    report.figure("sleeping_peak_asleep", peak_sleeping);
    report.figure_f64(
        "sleeping_all_asleep_ms",
        all_asleep_after.as_secs_f64() * 1e3,
    );
    report.target(
        "sleeping_100k_rss",
        "100k sleeping green threads in <= 2 GiB",
        peak_sleeping == n && unexpected == 0 && mib * (100_000.0 / n as f64) <= 2048.0,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Vec<String> {
        std::iter::once("sched")
            .chain(extra.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn zero_counts_are_errors() {
        let e = run(&args(&["--samples", "0"])).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(run(&args(&["--switches", "0"])).is_err());
    }

    #[test]
    fn tiny_run_reports_every_figure() {
        let report = run(&args(&[
            "--samples",
            "1",
            "--switches",
            "50",
            "--os-switches",
            "5",
            "--spawns",
            "5",
            "--os-spawns",
            "2",
            "--round-trips",
            "20",
            "--os-round-trips",
            "5",
            "--sleepers",
            "200",
        ]))
        .expect("tiny sched run");
        for key in [
            "green_switch_ns",
            "os_switch_ns",
            "tokio_switch_ns",
            "switch_speedup_vs_os",
            "green_spawn_join_ns",
            "green_channel_rtt_ns",
            "tokio_channel_rtt_ns",
            "sleeping_200_rss_mib",
            "burst_busiest_worker_share",
            "target_met_switch_ns",
            "target_met_sleeping_100k_rss",
        ] {
            assert!(report.get(key).is_some(), "missing figure {key}");
        }
        assert_eq!(report.get("sleeping_peak_asleep"), Some(&200.into()));
    }
}
