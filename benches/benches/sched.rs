//! Criterion regression benches of the green-thread scheduler and its channel: yield switch,
//! spawn+join, and channel ping-pong between two green threads on one worker. The side-by-side
//! comparison with OS threads and tokio is `farmem-bench sched`; these track farmem alone.

use std::time::Duration;

use criterion::Criterion;
use farmem_benches::scenarios::sched::{
    green_channel_pingpong, green_spawn_join, green_yield_pingpong,
};
use farmem_sched::Runtime;

/// The measured per-operation time of `iters` operations, from a helper that reports ns/op.
fn total(ns_per_op: f64, iters: u64) -> Duration {
    Duration::from_secs_f64(ns_per_op * iters as f64 / 1e9)
}

fn green(c: &mut Criterion) {
    let rt = match Runtime::builder().workers(1).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sched benches skipped: cannot start a farmem runtime: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("green");
    g.bench_function("yield_switch", |b| {
        b.iter_custom(|iters| total(green_yield_pingpong(&rt, iters.max(1)), iters))
    });
    g.bench_function("spawn_join", |b| {
        b.iter_custom(|iters| total(green_spawn_join(&rt, iters.max(1)), iters))
    });
    g.bench_function("channel_round_trip", |b| {
        b.iter_custom(|iters| total(green_channel_pingpong(&rt, iters.max(1)), iters))
    });
    g.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out so the generated public
// function does not trip `missing_docs`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    green(&mut c);
    c.final_summary();
}
