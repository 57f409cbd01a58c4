//! `farmem-demo`: the README's main job. For now it shows the green-thread runtime that hides
//! far-memory latency (AIFM on Shenango): 10,000 green threads that sleep (standing in for a
//! remote fetch), yield, and report over a channel, on one worker per core, then a summary.
//!
//! Exit status 0 when every green thread reported and the checksum matches.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use farmem::sched::{self, sync, Runtime};

const GREEN_THREADS: u64 = 10_000;

fn resident_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

fn main() -> ExitCode {
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("farmem-demo: starting the runtime failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = rt.workers();
    let start = Instant::now();
    let (sum, per_worker, slept) = rt.block_on(|| {
        let (tx, rx) = sync::unbounded::<(u64, usize)>();
        let handles: Vec<_> = (0..GREEN_THREADS)
            .map(|i| {
                let tx = tx.clone();
                sched::spawn(move || {
                    // A "remote fetch": the green thread waits, its worker runs the others.
                    sched::sleep(Duration::from_millis(1 + i % 20));
                    for _ in 0..3 {
                        sched::yield_now();
                    }
                    let worker = sched::worker_id().unwrap_or(usize::MAX);
                    // The receiver lives until every sender is done.
                    let _ = tx.send((i * 2, worker));
                    1 + i % 20
                })
            })
            .collect();
        drop(tx);
        let mut sum = 0u64;
        let mut per_worker = BTreeMap::new();
        while let Ok((v, w)) = rx.recv() {
            sum += v;
            *per_worker.entry(w).or_insert(0u64) += 1;
        }
        let slept: u64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
        (sum, per_worker, slept)
    });
    let elapsed = start.elapsed();
    let expected = GREEN_THREADS * (GREEN_THREADS - 1);
    let reported: u64 = per_worker.values().sum();
    println!("farmem-demo: {GREEN_THREADS} green threads on {workers} workers");
    println!(
        "  {reported} reported over a channel; checksum {sum} (expected {expected}): {}",
        if sum == expected { "ok" } else { "MISMATCH" }
    );
    println!(
        "  {:.1} s of sleeps overlapped into {:.3} s of wall time ({:.0}x)",
        slept as f64 / 1000.0,
        elapsed.as_secs_f64(),
        slept as f64 / 1000.0 / elapsed.as_secs_f64().max(1e-9)
    );
    let spread: Vec<String> = per_worker
        .iter()
        .map(|(w, n)| format!("worker {w}: {n}"))
        .collect();
    println!("  green threads finished per worker: {}", spread.join(", "));
    if let Some(rss) = resident_mib() {
        println!("  resident memory: {rss} MiB");
    }
    if sum == expected && reported == GREEN_THREADS {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
