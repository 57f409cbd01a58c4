//! Loads a taxi CSV into local columns and runs the nine analysis steps, printing load
//! throughput and step times: `cargo run --release -p farmem-dataframe --example taxi_local --
//! PATH [THREADS]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use farmem_dataframe::{load_csv, taxi, LoadOptions, LocalStorage, Schema};
use indicatif::ProgressBar;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: taxi_local PATH [THREADS]");
        return ExitCode::FAILURE;
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let bar = ProgressBar::new(0);
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let opts = LoadOptions {
        threads,
        skip_bad_rows: false,
        progress: Some(&progress),
    };
    let start = Instant::now();
    let loaded = load_csv(&path, &Schema::taxi(), &LocalStorage, opts);
    bar.finish_and_clear();
    let (mut df, report) = match loaded {
        Ok(r) => r,
        Err(e) => {
            eprintln!("taxi_local: {e}");
            return ExitCode::FAILURE;
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "loaded {} rows ({} bytes) in {secs:.3} s: {:.1} MB/s",
        report.rows,
        report.bytes,
        report.bytes as f64 / 1e6 / secs
    );
    let t = Instant::now();
    let mut out = std::io::stdout();
    match taxi::run_all(&mut df, &mut out) {
        Ok(_) => {
            println!("nine steps: {:.3} s", t.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("taxi_local: {e}");
            ExitCode::FAILURE
        }
    }
}
