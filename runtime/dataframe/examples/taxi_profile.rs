//! Profiling harness for the taxi steps on far memory: loads a taxi CSV into far-memory columns
//! (an embedded memory server over TCP, as `farmem-demo` does), then runs the nine steps
//! `--repeat` times so a sampling profiler sees the steps rather than the load.
//!
//! `cargo run --release -p farmem-dataframe --example taxi_profile -- CSV PCT REPEAT [OFFLOAD]`
//! (PCT: local memory, percent of the working set; OFFLOAD: `auto`, the default, `always` or
//! `never`)

use std::sync::Arc;
use std::time::Instant;

use farmem_dataframe::taxi;
use farmem_dataframe::{load_csv, FarStorage, LoadOptions, OffloadPolicy, Schema};
use farmem_error::{Error, Result};
use farmem_objects::{FarMemory, TcpBackend};
use farmem_server::{Server, ServerConfig};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (csv, pct, repeat, offload) = match args.as_slice() {
        [_, csv, pct, repeat] => (csv, pct, repeat, "auto"),
        [_, csv, pct, repeat, offload] => (csv, pct, repeat, offload.as_str()),
        _ => {
            return Err(Error::invalid(
                "usage: taxi_profile CSV LOCAL_PCT REPEAT [auto|always|never]",
            ))
        }
    };
    let offload: OffloadPolicy = offload.parse()?;
    let pct: f64 = pct
        .parse()
        .map_err(|_| Error::invalid(format!("LOCAL_PCT {pct:?} is not a number")))?;
    let repeat: usize = repeat
        .parse()
        .map_err(|_| Error::invalid(format!("REPEAT {repeat:?} is not a number")))?;
    let size = std::fs::metadata(csv)
        .map_err(|e| Error::io(format!("reading {csv}"), e))?
        .len();
    // A generated taxi file holds about 132 bytes of text per row and the frame about 143 bytes
    // of columns (with the derived ones): estimate the working set from the file size.
    let working_set = size * 143 / 132;
    let budget = (working_set as f64 * pct / 100.0) as usize;
    let token = "taxi-profile".to_string();
    let server = Server::start(ServerConfig::new(
        "127.0.0.1:0",
        working_set * 4 + (256 << 20),
        token.clone(),
    ))?;
    let backend = Arc::new(TcpBackend::connect(server.addr().to_string(), token, 2)?);
    let far = FarMemory::new(FarStorage::config_for(budget)?, backend)?;
    let storage = FarStorage::new(far).with_offload_policy(offload);
    let t = Instant::now();
    let (mut df, _) = load_csv(
        std::path::Path::new(csv),
        &Schema::taxi(),
        &storage,
        LoadOptions::default(),
    )?;
    eprintln!("load {:.3} s", t.elapsed().as_secs_f64());
    let mut sink = std::io::sink();
    let mut totals = [0.0f64; 9];
    let cpu0 = cpu_ticks();
    for _ in 0..repeat {
        let r = taxi::run_all(&mut df, &mut sink)?;
        for (k, (_, d)) in r.timings.iter().enumerate() {
            totals[k] += d.as_secs_f64() * 1e3 / repeat as f64;
        }
    }
    let cpu = (cpu_ticks() - cpu0) as f64 * 10.0 / repeat as f64;
    eprintln!(
        "process CPU per run of the nine steps (all threads, embedded server included): {cpu:.0} ms"
    );
    eprintln!(
        "mean step ms: {}  total {:.1}",
        totals
            .iter()
            .map(|t| format!("{t:.1}"))
            .collect::<Vec<_>>()
            .join(" "),
        totals.iter().sum::<f64>()
    );
    eprintln!("{:?}", storage.far_memory().metrics());
    drop(df);
    drop(storage);
    server.shutdown();
    Ok(())
}

/// User + system CPU time of this process so far, in clock ticks (1/100 s on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}
