//! `taxi-gen`: writes a seeded, TLC-like yellow-taxi trip CSV for the DataFrame demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// Generate a deterministic NYC-taxi-like CSV (same rows and seed give the same bytes).
#[derive(Parser, Debug)]
#[command(name = "taxi-gen", version)]
struct Args {
    /// Number of trip rows.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.rows)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |done: u64, _total: u64| bar.set_position(done);
    let start = std::time::Instant::now();
    match farmem_dataframe::generate(&args.out, args.rows, args.seed, Some(&progress)) {
        Ok(bytes) => {
            bar.finish_and_clear();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "wrote {} rows, {bytes} bytes to {} in {secs:.2} s ({:.1} MB/s)",
                args.rows,
                args.out.display(),
                bytes as f64 / 1e6 / secs
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("taxi-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
