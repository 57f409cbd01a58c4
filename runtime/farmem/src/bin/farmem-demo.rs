//! `farmem-demo`: the README's main job, AIFM's NYC-taxi analysis (AIFM §6.2) with most of the
//! DataFrame in far memory.
//!
//! 1. Generate (or reuse) a seeded taxi CSV under `target/taxi-data/`, keyed by rows and seed.
//! 2. Start an embedded memory server on 127.0.0.1 (or use `--server ADDR`), load the file into
//!    far-memory columns with local memory at `--local PCT` of the working set (the bytes of
//!    every column the analysis holds, derived ones included), run the nine steps, printing each
//!    result and its time.
//! 3. Run the same steps on all-local columns and print both times side by side with the ratio
//!    per step, and whether the results are identical.
//!
//! `--all-local` runs only the local run, `--far-only` only the far one; `--json` ends the output with one line
//! `TAXI {json}` for benchmarks (`farmem-bench` runs this binary as a child with these flags).
//! `peak_rss_bytes` is the process's VmHWM when the measured run ended: with the embedded server
//! the far data lives in this process too (`server_in_process` says so), so only `--server`
//! gives the client's true footprint. Exit status 1 on any error or when results differ.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use farmem::dataframe::taxi::{self, TaxiResults};
use farmem::dataframe::{
    generate, load_csv, ColumnType, DataFrame, FarStorage, LoadOptions, LocalStorage,
    OffloadPolicy, Schema, Storage, MIN_LOCAL_BYTES,
};
use farmem::objects::{Backend, FarMemory, TcpBackend};
use farmem::server::{Server, ServerConfig, ServerHandle};
use farmem::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// Bytes per row of the columns the nine steps add (duration and distance `i64`/`f64`, then
/// hour, weekday and month `u8`).
const DERIVED_BYTES_PER_ROW: u64 = 8 + 8 + 1 + 1 + 1;

/// AIFM's NYC-taxi DataFrame analysis on far memory, side by side with an all-local run.
#[derive(Parser, Debug)]
#[command(name = "farmem-demo", version)]
struct Args {
    /// Trip rows to generate (ignored with --csv).
    #[arg(long, default_value_t = 2_000_000)]
    rows: u64,
    /// Local memory as a percentage of the working set (0 < PCT <= 100).
    #[arg(long, default_value_t = 25.0)]
    local: f64,
    /// Load this taxi CSV instead of generating one.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Use the memory server at ADDR (host:port) instead of an embedded one.
    #[arg(long, conflicts_with = "all_local")]
    server: Option<String>,
    /// File holding the cluster token of --server.
    #[arg(long, requires = "server")]
    token_file: Option<PathBuf>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only run the all-local baseline.
    #[arg(long)]
    all_local: bool,
    /// Only run on far memory (no baseline, so a benchmark's peak RSS of this process is the
    /// far run's alone).
    #[arg(long, conflicts_with = "all_local")]
    far_only: bool,
    /// End with one line `TAXI {json}` of the measured run.
    #[arg(long)]
    json: bool,
    /// Where the far run's offloadable column operations run: `auto` (on the memory server
    /// when most of a column is remote), `always` or `never` (always locally).
    #[arg(long, default_value = "auto")]
    offload: OffloadPolicy,
}

/// What one run measured.
struct Run {
    load_s: f64,
    results: TaxiResults,
    peak_rss: u64,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("farmem-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_args(args: &Args) -> Result<()> {
    if !(args.local > 0.0 && args.local <= 100.0) {
        return Err(Error::invalid(format!(
            "--local {} is not a percentage in (0, 100]; pass e.g. --local 25",
            args.local
        )));
    }
    if args.csv.is_none() && args.rows == 0 {
        return Err(Error::invalid("--rows 0: generate at least one row"));
    }
    if args.server.is_some() && args.token_file.is_none() {
        return Err(Error::invalid(
            "--server needs --token-file FILE holding the server's cluster token",
        ));
    }
    Ok(())
}

/// Returns whether the results were identical (always true for `--all-local`).
fn run(args: &Args) -> Result<bool> {
    check_args(args)?;
    let (path, rows) = data_file(args)?;
    let working_set = rows * (schema_bytes_per_row() + DERIVED_BYTES_PER_ROW);
    println!(
        "farmem-demo: {rows} trips from {}; working set {}",
        path.display(),
        mib(working_set)
    );
    if args.all_local {
        let local = run_local(&path, true)?;
        report_json(args, "local", rows, 100.0, working_set, &local, None);
        return Ok(true);
    }
    let budget = ((working_set as f64 * args.local / 100.0) as usize).max(MIN_LOCAL_BYTES);
    let (far, server_in_process) = run_far(args, &path, working_set, budget)?;
    if args.far_only {
        report_json(args, "far", rows, args.local, budget as u64, &far, None);
        return Ok(true);
    }
    println!("\nall-local baseline (same steps, results not repeated):");
    let local = run_local(&path, false)?;
    let identical = strip(&far.results) == strip(&local.results);
    print_side_by_side(&far, &local, budget, working_set);
    println!(
        "results identical: {}",
        if identical { "yes" } else { "NO" }
    );
    report_json(
        args,
        "far",
        rows,
        args.local,
        budget as u64,
        &far,
        Some((&local, identical, server_in_process)),
    );
    Ok(identical)
}

/// The data file and its row count: `--csv`, or the generated file for `--rows` and `--seed`
/// (generated once, then reused).
fn data_file(args: &Args) -> Result<(PathBuf, u64)> {
    if let Some(p) = &args.csv {
        if !p.is_file() {
            return Err(Error::new(
                farmem::ErrorKind::NotFound,
                format!(
                    "--csv {}: no such file; pass a taxi CSV or leave --csv out to generate one",
                    p.display()
                ),
            ));
        }
        return Ok((p.clone(), count_rows(p)?));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/taxi-data");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let path = dir.join(format!("taxi-{}-{}.csv", args.rows, args.seed));
    if path.is_file() {
        return Ok((path, args.rows));
    }
    // Write under a private name and rename, so a concurrent run never reads half a file.
    let tmp = dir.join(format!(
        ".taxi-{}-{}.{}.tmp",
        args.rows,
        args.seed,
        std::process::id()
    ));
    let bar = bar(args.rows, "generating", "rows");
    let progress = |done: u64, _: u64| bar.set_position(done);
    let t = Instant::now();
    let written = generate(&tmp, args.rows, args.seed, Some(&progress));
    bar.finish_and_clear();
    let bytes = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))?;
    println!(
        "generated {} ({}) in {:.1} s",
        path.display(),
        mib(bytes),
        t.elapsed().as_secs_f64()
    );
    Ok((path, args.rows))
}

/// Data lines of a CSV (lines after the header, a last line without newline included).
fn count_rows(path: &Path) -> Result<u64> {
    use std::io::Read;
    let what = || format!("counting the rows of {}", path.display());
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(what(), e))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(what(), e))?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok((lines + u64::from(last != b'\n')).saturating_sub(1))
}

fn schema_bytes_per_row() -> u64 {
    Schema::taxi()
        .fields()
        .iter()
        .map(|(_, t)| match t {
            ColumnType::I64 | ColumnType::F64 | ColumnType::Timestamp => 8,
            ColumnType::U8 | ColumnType::Categorical => 1,
            ColumnType::Categorical16 => 2,
        })
        .sum()
}

fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} {unit} (eta {{eta}})");
    b.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

fn load<S: Storage>(path: &Path, storage: &S, label: &str) -> Result<(DataFrame<S>, f64)> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    let bar = bar(size, label, "bytes");
    let progress = |done: u64, _: u64| bar.set_position(done);
    let opts = LoadOptions {
        threads: 0,
        skip_bad_rows: false,
        progress: Some(&progress),
    };
    let t = Instant::now();
    let loaded = load_csv(path, &Schema::taxi(), storage, opts);
    bar.finish_and_clear();
    let (df, report) = loaded?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{label}: {} rows ({}) in {secs:.2} s",
        report.rows,
        mib(report.bytes)
    );
    Ok((df, secs))
}

/// The far run; returns it and whether the memory server ran inside this process.
fn run_far(args: &Args, path: &Path, working_set: u64, budget: usize) -> Result<(Run, bool)> {
    // Far memory must hold the frame plus the columns steps create and drop (gathers).
    let capacity = working_set * 2 + (256 << 20);
    let (backend, server): (Arc<dyn Backend>, Option<ServerHandle>) = match &args.server {
        Some(addr) => {
            // check_args made sure the token file is there.
            let token_file = args.token_file.as_deref().unwrap_or(Path::new(""));
            let token = farmem::server::config::read_token_file(token_file)?;
            (Arc::new(TcpBackend::connect(addr.clone(), token, 2)?), None)
        }
        None => {
            let token = format!("farmem-demo-{}", std::process::id());
            let server = Server::start(ServerConfig::new("127.0.0.1:0", capacity, token.clone()))?;
            let backend = TcpBackend::connect(server.addr().to_string(), token, 2)?;
            (Arc::new(backend), Some(server))
        }
    };
    let where_ = match &server {
        Some(s) => format!("embedded memory server at {}", s.addr()),
        None => format!("memory server at {}", args.server.as_deref().unwrap_or("?")),
    };
    println!(
        "far memory: {where_}; local memory {} ({}% of the working set)",
        mib(budget as u64),
        args.local
    );
    let far = FarMemory::new(FarStorage::config_for(budget)?, backend)?;
    let storage = FarStorage::new(far).with_offload_policy(args.offload);
    let (mut df, load_s) = load(path, &storage, "loading into far memory")?;
    let mut out = std::io::stdout();
    let results = taxi::run_all(&mut df, &mut out)?;
    let peak_rss = peak_rss_bytes();
    let m = storage.far_memory().metrics();
    println!(
        "far memory traffic: {} fetched, {} written back, {} misses, {} prefetched",
        mib(m.bytes_fetched),
        mib(m.bytes_written_back),
        m.misses,
        m.prefetches_issued
    );
    let o = storage.offload_stats();
    println!(
        "offload ({:?}): {} column operations on the memory server, {} locally, {} chunks flushed",
        storage.offload_policy(),
        o.offloaded,
        o.local,
        o.chunks_flushed
    );
    if let Some(e) = storage.far_memory().take_error() {
        return Err(e.with_context("far memory reported a background error"));
    }
    drop(df);
    drop(storage);
    let in_process = server.is_some();
    if let Some(s) = server {
        s.shutdown();
    }
    Ok((
        Run {
            load_s,
            results,
            peak_rss,
        },
        in_process,
    ))
}

fn run_local(path: &Path, print: bool) -> Result<Run> {
    let (mut df, load_s) = load(path, &LocalStorage, "loading into local memory")?;
    let results = if print {
        taxi::run_all(&mut df, &mut std::io::stdout())?
    } else {
        taxi::run_all(&mut df, &mut std::io::sink())?
    };
    Ok(Run {
        load_s,
        results,
        peak_rss: peak_rss_bytes(),
    })
}

fn strip(r: &TaxiResults) -> TaxiResults {
    let mut r = r.clone();
    r.timings.clear();
    r
}

fn step_secs(r: &TaxiResults) -> Vec<f64> {
    r.timings.iter().map(|(_, d)| d.as_secs_f64()).collect()
}

fn print_side_by_side(far: &Run, local: &Run, budget: usize, working_set: u64) {
    println!(
        "\n{:<30} {:>12} {:>12} {:>8}",
        format!(
            "step (local {} of {})",
            mib(budget as u64),
            mib(working_set)
        ),
        "far ms",
        "local ms",
        "ratio"
    );
    let row = |name: &str, f: f64, l: f64| {
        println!(
            "{name:<30} {:>12.1} {:>12.1} {:>7.2}x",
            f * 1e3,
            l * 1e3,
            f / l.max(1e-9)
        )
    };
    row("load", far.load_s, local.load_s);
    for ((name, f), (_, l)) in far.results.timings.iter().zip(&local.results.timings) {
        row(name, f.as_secs_f64(), l.as_secs_f64());
    }
    let (f, l) = (
        step_secs(&far.results).iter().sum::<f64>(),
        step_secs(&local.results).iter().sum::<f64>(),
    );
    row("nine steps", f, l);
}

/// The nine results as printed (without times): what `results_digest` hashes.
fn results_text(r: &TaxiResults) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{}{}{}{}{}{}{}{}{}",
        r.vendors,
        r.passengers_vendor1,
        r.passengers_vendor2,
        r.duration,
        r.store_and_forward,
        r.long_trips,
        r.pickup_parts,
        r.median_by_day,
        r.median_by_month
    );
    s
}

/// FNV-1a, 64 bits: stable across runs, builds and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn report_json(
    args: &Args,
    mode: &str,
    rows: u64,
    local_pct: f64,
    budget: u64,
    run: &Run,
    baseline: Option<(&Run, bool, bool)>,
) {
    if !args.json {
        return;
    }
    let steps = step_secs(&run.results);
    let mut j = serde_json::json!({
        "mode": mode,
        "rows": rows,
        "local_pct": local_pct,
        "local_budget_bytes": budget,
        "load_s": run.load_s,
        "steps_s": steps,
        "total_steps_s": steps.iter().sum::<f64>(),
        "results_digest": format!("{:016x}", fnv1a(results_text(&run.results).as_bytes())),
        "peak_rss_bytes": run.peak_rss,
    });
    if let Some((local, identical, server_in_process)) = baseline {
        let ls = step_secs(&local.results);
        j["local_load_s"] = serde_json::json!(local.load_s);
        j["local_steps_s"] = serde_json::json!(ls);
        j["local_total_steps_s"] = serde_json::json!(ls.iter().sum::<f64>());
        j["results_identical"] = serde_json::json!(identical);
        j["server_in_process"] = serde_json::json!(server_in_process);
    }
    println!("TAXI {j}");
}

/// The process's peak resident set (VmHWM), 0 if /proc is unreadable.
fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
