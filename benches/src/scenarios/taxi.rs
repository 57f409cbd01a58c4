//! `farmem-bench taxi`: AIFM's NYC-taxi analysis (AIFM §6.2) with a fraction of its working set
//! local, three ways side by side: farmem (objects in a memory server, the rest fetched at object
//! granularity), all-local (everything in `Vec`s, the 1.0 line), and the kernel's own paging
//! (the all-local program in a cgroup whose memory limit is the same fraction, swap on).
//!
//! Every series is a separate child process on the same CSV, so each has its own address space,
//! its own peak RSS (the child's VmHWM at the end of its measured run where it reports one,
//! else `wait4`'s `ru_maxrss`: the same high-water mark) and, for kernel paging, its own memory
//! cgroup:
//!
//! ```text
//!   farmem-bench taxi
//!        │
//!        ├─ warm-up: all-local child ─────────> working set W = its peak RSS, reference digest
//!        └─ for each sample, for each fraction p:
//!             farmem-demo --local p --server ADDR --json        farmem series (a fresh
//!                                                                farmem-server per run)
//!             farmem-demo --local p --all-local --json          all-local series
//!             sh -c 'join cgroup(limit p·W); exec all-local'    kernel-paging series (swap on)
//! ```
//!
//! Only the nine steps are compared (each child reports `load_s` apart). The all-local baseline
//! is the median of every all-local run of the sweep, so each slowdown divides by a figure
//! measured in the same run, interleaved with it. Cleanup is by guards (`MemoryServer`,
//! `MemoryCgroup`, `SwapSpace`) whose `Drop` runs on errors and on Ctrl-C too (a signal
//! handler turns the signal into an error, see `child`).
//!
//! When `farmem-demo` is not built, the farmem series is skipped and this binary serves as the
//! all-local child itself (`--child-all-local`); when the machine has no cgroup-v1 memory
//! controller, no root or no swap, the kernel series is skipped; the report says why.

mod cgroup;
mod child;
mod plot;
mod swap;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;

use self::cgroup::MemoryCgroup;
use self::child::{run_child, ChildOutcome, MemoryServer, TaxiRun};
use self::swap::SwapSpace;
use crate::{median, ratio, Error, ErrorKind, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "taxi",
    about: "taxi analysis at 5-100% local memory: farmem vs all-local vs kernel paging (plot)",
    run,
};

const TOKEN: &str = "farmem-bench-taxi";
/// The limit for a farmem or all-local child; only a hung child gets near it.
const CHILD_LIMIT: Duration = Duration::from_secs(900);

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench taxi",
    about = "the nine taxi steps at several local-memory fractions: farmem vs all-local vs the \
             kernel's paging under a cgroup limit"
)]
struct Args {
    /// Trip rows of the generated CSV (ignored with an existing --csv).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Local-memory fractions to run, percent of the working set, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [5.0, 10.0, 25.0, 50.0, 100.0])]
    local: Vec<f64>,
    /// The taxi CSV; generated (and kept for reuse) when absent. Default: OUT/taxi-ROWS-sSEED.csv.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Where the table (CSV, JSON) and the PNG go.
    #[arg(long, default_value = "bench-out/taxi")]
    out: PathBuf,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Runs of each series at each fraction (medians are reported).
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// Seconds a kernel-paging child may run before it is killed and reported as timed out.
    #[arg(long, default_value_t = 150.0)]
    kernel_timeout_s: f64,
    /// Tries of a kernel-paging run that its cgroup's OOM killer ends (memcg reclaim under a
    /// tight limit gives up now and then) before it is reported as failed.
    #[arg(long, default_value_t = 3)]
    kernel_attempts: u32,
    /// Skip the kernel-paging series.
    #[arg(long)]
    no_kernel: bool,
    /// Skip the farmem series (and use this binary as the all-local child).
    #[arg(long)]
    no_farmem: bool,
    /// Where the farmem series' offloadable column operations run (`farmem-demo --offload`):
    /// auto, always or never.
    #[arg(long, default_value = "auto")]
    offload: farmem_dataframe::OffloadPolicy,
    /// Internal: run the all-local analysis of --csv and print its `TAXI {json}` line.
    #[arg(long, hide = true)]
    child_all_local: bool,
}

/// One child run's figures, as the summary needs them.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    /// Seconds of the nine steps; infinite when the child did not finish.
    steps_s: f64,
    load_s: f64,
    peak_rss_bytes: u64,
    budget_bytes: Option<u64>,
    /// `None` when the child did not finish.
    digest: Option<String>,
}

impl Sample {
    fn from_outcome(run: &TaxiRun, out: &ChildOutcome, budget: Option<u64>) -> Sample {
        Sample {
            steps_s: run.total_steps_s,
            load_s: run.load_s,
            // The child's own VmHWM at the end of its measured run when it reports one:
            // `farmem-demo` without `--all-local` runs an all-local pass after the farmem one,
            // which `wait4`'s `ru_maxrss` (the same high-water mark, process-wide) would include.
            peak_rss_bytes: match run.peak_rss_bytes {
                Some(b) if b > 0 => b,
                _ => out.maxrss_bytes,
            },
            budget_bytes: budget.or(run.local_budget_bytes),
            digest: Some(run.results_digest.clone()),
        }
    }

    /// A run that did not finish (time limit, OOM kill): infinitely slow, no results.
    fn unfinished(out: &ChildOutcome, budget: Option<u64>) -> Sample {
        Sample {
            steps_s: f64::INFINITY,
            load_s: f64::NAN,
            peak_rss_bytes: out.maxrss_bytes,
            budget_bytes: budget,
            digest: None,
        }
    }
}

/// The medians of one series at one fraction.
#[derive(Clone, Debug, PartialEq)]
struct SeriesSummary {
    steps_s: f64,
    load_s: f64,
    /// The largest peak RSS among the samples.
    peak_rss_bytes: u64,
    budget_bytes: Option<u64>,
    /// Steps time over the all-local baseline.
    slowdown: f64,
    /// Every finished sample's digest equals the reference digest.
    identical: bool,
    /// Samples that did not finish (time limit or OOM kill).
    unfinished: usize,
}

fn summarize(samples: &[Sample], baseline_steps_s: f64, reference: &str) -> Option<SeriesSummary> {
    if samples.is_empty() {
        return None;
    }
    let steps: Vec<f64> = samples.iter().map(|s| s.steps_s).collect();
    let loads: Vec<f64> = samples
        .iter()
        .map(|s| s.load_s)
        .filter(|l| l.is_finite())
        .collect();
    let steps_s = median(&steps);
    Some(SeriesSummary {
        steps_s,
        load_s: median(&loads),
        peak_rss_bytes: samples.iter().map(|s| s.peak_rss_bytes).max().unwrap_or(0),
        budget_bytes: samples.iter().find_map(|s| s.budget_bytes),
        slowdown: ratio(steps_s, baseline_steps_s),
        identical: samples
            .iter()
            .filter_map(|s| s.digest.as_deref())
            .all(|d| d == reference),
        unfinished: samples.iter().filter(|s| s.digest.is_none()).count(),
    })
}

/// Everything measured at one local fraction.
#[derive(Clone, Debug, Default)]
struct FractionRuns {
    pct: f64,
    farmem: Vec<Sample>,
    all_local: Vec<Sample>,
    kernel: Vec<Sample>,
    /// Farmem steps over the same child's own all-local pass, per farmem run.
    paired_slowdowns: Vec<f64>,
}

/// A figure-name-safe form of a percentage (`12.5` → `12_5`).
fn pct_key(pct: f64) -> String {
    format!("{pct}").replace('.', "_")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The default CSV for `rows` and `seed` in `out`.
fn default_csv(out: &Path, rows: u64, seed: u64) -> PathBuf {
    out.join(format!("taxi-{rows}-s{seed}.csv"))
}

/// How to start an all-local child: `farmem-demo --all-local`, or this binary.
enum AllLocal {
    Demo(PathBuf),
    This(PathBuf),
}

impl AllLocal {
    fn argv(&self, csv: &Path, pct: f64) -> (PathBuf, Vec<OsString>) {
        match self {
            AllLocal::Demo(demo) => (
                demo.clone(),
                vec![
                    "--csv".into(),
                    csv.into(),
                    "--local".into(),
                    format!("{pct}").into(),
                    "--all-local".into(),
                    "--json".into(),
                ],
            ),
            AllLocal::This(me) => (
                me.clone(),
                vec![
                    "taxi".into(),
                    "--child-all-local".into(),
                    "--csv".into(),
                    csv.into(),
                ],
            ),
        }
    }

    fn command(&self, csv: &Path, pct: f64) -> Command {
        let (program, args) = self.argv(csv, pct);
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    }
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.child_all_local {
        let code = match args.csv.as_deref().map(child::serve_all_local) {
            Some(Ok(())) => 0,
            Some(Err(e)) => {
                eprintln!("farmem-bench taxi --child-all-local: {e}");
                1
            }
            None => {
                eprintln!("farmem-bench taxi --child-all-local needs --csv PATH");
                2
            }
        };
        std::process::exit(code);
    }
    if args.samples == 0
        || args.local.is_empty()
        || args.local.iter().any(|p| !(*p > 0.0 && *p <= 100.0))
    {
        return Err(Error::invalid(format!(
            "--local must list fractions in (0, 100] (got {:?}) and --samples must be at least 1",
            args.local
        )));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::io(format!("creating {}", args.out.display()), e))?;
    let mut report = Report::new(
        "taxi",
        &[
            "local %",
            "farmem s",
            "farmem x",
            "farmem RSS MiB",
            "budget MiB",
            "overhead MiB",
            "all-local s",
            "kernel s",
            "kernel x",
            "kernel limit MiB",
            "kernel RSS MiB",
            "kernel/farmem",
            "identical",
        ],
    );

    let csv = args
        .csv
        .clone()
        .unwrap_or_else(|| default_csv(&args.out, args.rows, args.seed));
    if csv.exists() {
        report.note(format!("CSV: reused {}", csv.display()));
    } else {
        // Written under another name first: an interrupted generation never leaves a short
        // file under the name a later run would reuse.
        let partial = csv.with_extension("csv.partial");
        let bytes = farmem_dataframe::generate(&partial, args.rows, args.seed, None)?;
        std::fs::rename(&partial, &csv).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", partial.display(), csv.display()),
                e,
            )
        })?;
        report.note(format!(
            "CSV: generated {} rows, {bytes} bytes into {}",
            args.rows,
            csv.display()
        ));
    }
    // From here on Ctrl-C must unwind through the cleanup guards instead of killing us.
    child::install_interrupt_handler()?;
    let csv_bytes = std::fs::metadata(&csv)
        .map_err(|e| Error::io(format!("reading {}", csv.display()), e))?
        .len();

    let me = std::env::current_exe().map_err(|e| Error::io("locating farmem-bench", e))?;
    let demo_bin = me.with_file_name("farmem-demo");
    let server_bin = me.with_file_name("farmem-server");
    let build_hint = "build them next to farmem-bench with `cargo build --release -p farmem \
                      -p farmem-server -p farmem-benches` (same CARGO_TARGET_DIR)";
    let farmem_on = !args.no_farmem;
    if farmem_on && (!demo_bin.exists() || !server_bin.exists()) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} or {} is missing: {build_hint}, or pass --no-farmem to run the baselines only",
                demo_bin.display(),
                server_bin.display()
            ),
        ));
    }
    let all_local = if farmem_on {
        AllLocal::Demo(demo_bin.clone())
    } else {
        report.note("farmem series: skipped (--no-farmem); all-local child: farmem-bench itself");
        AllLocal::This(me.clone())
    };
    // Far memory for the farmem child, generously sized (the data is smaller than the CSV).
    let capacity = (4 * csv_bytes).max(1 << 30).to_string();

    // Warm-up: fills the page cache with the CSV and measures the working set the fractions
    // are taken of, and the reference results.
    let warm = run_child(all_local.command(&csv, 100.0), CHILD_LIMIT)?;
    let warm_run = warm.taxi_run("the warm-up all-local run")?;
    let working_set = warm.maxrss_bytes.max(warm_run.peak_rss_bytes.unwrap_or(0));
    let reference = warm_run.results_digest.clone();
    report.figure("rows", warm_run.rows);
    report.figure("csv_bytes", csv_bytes);
    report.figure("working_set_bytes", working_set);

    let swap = if args.no_kernel {
        report.note("kernel paging series: skipped (--no-kernel)");
        None
    } else if let Some(why) = cgroup::unavailable_reason(Path::new(cgroup::MEMORY_ROOT)) {
        report.note(format!("kernel paging series: skipped, {why}"));
        None
    } else {
        // Room for the whole working set plus slack: at 5% nearly all of it is swapped out.
        match SwapSpace::at_least(working_set + (256 << 20), &args.out) {
            Ok(s) => {
                report.note(format!("kernel paging series: swap on {}", s.describe()));
                Some(s)
            }
            Err(e) => {
                report.note(format!("kernel paging series: skipped, {e}"));
                None
            }
        }
    };

    let mut fractions: Vec<FractionRuns> = args
        .local
        .iter()
        .map(|&pct| FractionRuns {
            pct,
            ..FractionRuns::default()
        })
        .collect();
    let kernel_limit = Duration::from_secs_f64(args.kernel_timeout_s.max(1.0));
    let mut raw_runs = Vec::new();
    for sample in 0..args.samples {
        for f in fractions.iter_mut() {
            let pct = f.pct;
            if farmem_on {
                // A fresh server per run: every run starts from empty far memory, and nothing a
                // run leaves behind (or a crash leaves half-written) counts against the next.
                let server = MemoryServer::start(&server_bin, &capacity, TOKEN)?;
                let mut cmd = Command::new(&demo_bin);
                cmd.arg("--csv")
                    .arg(&csv)
                    .args(["--local", &format!("{pct}"), "--server"])
                    .arg(server.addr().to_string())
                    .arg("--token-file")
                    .arg(server.token_file())
                    .arg("--offload")
                    .arg(args.offload.name())
                    .arg("--json");
                let out = run_child(cmd, CHILD_LIMIT)?;
                drop(server);
                let run = out.taxi_run(&format!("the farmem run at {pct}% local"))?;
                raw_runs.push(raw_json("farmem", pct, sample, &out, Some(&run), None));
                f.farmem.push(Sample::from_outcome(&run, &out, None));
                if let Some(local) = run.paired_local_steps_s {
                    f.paired_slowdowns.push(ratio(run.total_steps_s, local));
                }
            }
            let out = run_child(all_local.command(&csv, pct), CHILD_LIMIT)?;
            let run = out.taxi_run(&format!("the all-local run at {pct}%"))?;
            raw_runs.push(raw_json("all-local", pct, sample, &out, Some(&run), None));
            f.all_local.push(Sample::from_outcome(&run, &out, None));
            if swap.is_some() {
                for attempt in 1..=args.kernel_attempts {
                    let name = format!("farmem-taxi-{}-{}", std::process::id(), raw_runs.len());
                    let k =
                        kernel_attempt(&all_local, &csv, pct, working_set, &name, kernel_limit)?;
                    let mut raw =
                        raw_json("kernel", pct, sample, &k.out, k.run.as_ref(), Some(k.limit));
                    raw["cgroup_max_usage_bytes"] = k.charged.into();
                    raw["oom_killed"] = k.oom.into();
                    raw["attempt"] = attempt.into();
                    raw_runs.push(raw);
                    let what = format!("kernel paging at {pct}% (limit {:.0} MiB)", mib(k.limit));
                    if let Some(run) = &k.run {
                        if attempt > 1 {
                            report.note(format!("{what}: finished on attempt {attempt}"));
                        }
                        f.kernel
                            .push(Sample::from_outcome(run, &k.out, Some(k.limit)));
                        break;
                    }
                    if k.oom && attempt < args.kernel_attempts {
                        continue;
                    }
                    report.note(if k.oom {
                        format!("{what}: OOM-killed by its memory cgroup ({attempt} attempts)")
                    } else {
                        format!(
                            "{what}: killed after the {:.0} s limit",
                            kernel_limit.as_secs_f64()
                        )
                    });
                    f.kernel.push(Sample::unfinished(&k.out, Some(k.limit)));
                    break;
                }
            }
        }
    }
    drop(swap);

    let all_local_steps: Vec<f64> = fractions
        .iter()
        .flat_map(|f| f.all_local.iter().map(|s| s.steps_s))
        .collect();
    let baseline = median(&all_local_steps);
    report.figure_f64("all_local_steps_s", baseline);
    report.figure_f64("all_local_load_s", warm_run.load_s);
    let mut lines = [
        plot::Line {
            name: "farmem".into(),
            points: Vec::new(),
            rgb: (0, 90, 200),
        },
        plot::Line {
            name: "kernel paging (cgroup + swap)".into(),
            points: Vec::new(),
            rgb: (200, 40, 40),
        },
    ];
    let mut csv_text = String::from(
        "local_pct,series,steps_s,slowdown_vs_all_local,load_s,peak_rss_bytes,budget_bytes,\
         overhead_bytes,results_identical,unfinished\n",
    );
    let mut all_identical = true;
    // (local %, farmem slowdown, farmem speedup over kernel paging) for the targets.
    let mut per_fraction: Vec<(f64, f64, f64)> = Vec::new();
    for f in &fractions {
        let key = pct_key(f.pct);
        let fm = summarize(&f.farmem, baseline, &reference);
        let al = summarize(&f.all_local, baseline, &reference);
        let kp = summarize(&f.kernel, baseline, &reference);
        for (name, s) in [("farmem", &fm), ("all-local", &al), ("kernel", &kp)] {
            let Some(s) = s else { continue };
            let overhead = s.budget_bytes.map(|b| s.peak_rss_bytes as i64 - b as i64);
            let _ = writeln!(
                csv_text,
                "{},{name},{:.6},{:.4},{:.6},{},{},{},{},{}",
                f.pct,
                s.steps_s,
                s.slowdown,
                s.load_s,
                s.peak_rss_bytes,
                s.budget_bytes.map_or(String::new(), |b| b.to_string()),
                overhead.map_or(String::new(), |o| o.to_string()),
                s.identical,
                s.unfinished
            );
            let series = name.replace('-', "_");
            report.figure_f64(&format!("{series}_{key}pct_steps_s"), s.steps_s);
            report.figure_f64(&format!("{series}_{key}pct_slowdown"), s.slowdown);
            report.figure(
                &format!("{series}_{key}pct_peak_rss_bytes"),
                s.peak_rss_bytes,
            );
            if let Some(o) = overhead {
                report.figure(&format!("{series}_{key}pct_overhead_bytes"), o);
            }
        }
        if let Some(s) = &fm {
            all_identical &= s.identical;
            lines[0].points.push((f.pct, s.slowdown));
            report.figure_f64(&format!("farmem_{key}pct_load_s"), s.load_s);
            if !f.paired_slowdowns.is_empty() {
                report.figure_f64(
                    &format!("farmem_{key}pct_paired_slowdown"),
                    median(&f.paired_slowdowns),
                );
            }
        }
        if let Some(s) = &kp {
            lines[1].points.push((f.pct, s.slowdown));
            report.figure(&format!("kernel_{key}pct_unfinished"), s.unfinished as u64);
        }
        let speedup = match (&fm, &kp) {
            (Some(a), Some(b)) => ratio(b.steps_s, a.steps_s),
            _ => f64::NAN,
        };
        if !speedup.is_nan() {
            // Infinite (kernel paging never finished) is recorded as null.
            report.figure_f64(&format!("farmem_{key}pct_speedup_vs_kernel"), speedup);
        }
        if let Some(s) = &fm {
            per_fraction.push((f.pct, s.slowdown, speedup));
        }
        let cell = |v: Option<f64>, digits: usize| match v {
            Some(x) if x.is_infinite() => "failed".to_string(),
            Some(x) if x.is_finite() => format!("{x:.digits$}"),
            _ => "-".to_string(),
        };
        report.row(&[
            format!("{}", f.pct),
            cell(fm.as_ref().map(|s| s.steps_s), 3),
            cell(fm.as_ref().map(|s| s.slowdown), 2),
            cell(fm.as_ref().map(|s| mib(s.peak_rss_bytes)), 0),
            cell(fm.as_ref().and_then(|s| s.budget_bytes).map(mib), 0),
            cell(
                fm.as_ref().and_then(|s| {
                    s.budget_bytes
                        .map(|b| (s.peak_rss_bytes as f64 - b as f64) / (1 << 20) as f64)
                }),
                0,
            ),
            cell(al.as_ref().map(|s| s.steps_s), 3),
            cell(kp.as_ref().map(|s| s.steps_s), 3),
            cell(kp.as_ref().map(|s| s.slowdown), 2),
            cell(kp.as_ref().and_then(|s| s.budget_bytes).map(mib), 0),
            cell(kp.as_ref().map(|s| mib(s.peak_rss_bytes)), 0),
            cell(Some(speedup), 2),
            match (&fm, &kp) {
                (Some(a), Some(b)) => format!("{}/{}", a.identical, b.identical),
                (Some(a), None) => a.identical.to_string(),
                (None, Some(b)) => format!("-/{}", b.identical),
                (None, None) => "-".into(),
            },
        ]);
    }
    let at = |pct: f64| per_fraction.iter().find(|p| p.0 == pct).copied();
    if farmem_on {
        report.target(
            "results_identical",
            "farmem results identical to all-local at every fraction",
            all_identical,
        );
        if let Some((_, slowdown, speedup)) = at(25.0) {
            report.target(
                "slowdown_25pct",
                "farmem at 25% local <= 1.25x all-local",
                slowdown <= 1.25,
            );
            if !speedup.is_nan() {
                report.target(
                    "vs_kernel_25pct",
                    "farmem at 25% local >= 3x faster than kernel paging",
                    speedup >= 3.0,
                );
            }
        }
        if let Some((_, slowdown, _)) = at(5.0) {
            report.target(
                "slowdown_5pct",
                "farmem at 5% local <= 2x all-local",
                slowdown <= 2.0,
            );
        }
    }
    report.note("x = nine-step time / median all-local nine-step time of this run (loading apart)");
    report
        .note("farmem_<p>pct_paired_slowdown: farmem steps / the same child's own all-local pass");
    report.note(
        "overhead = farmem child's peak RSS (its VmHWM after the farmem run) - its local budget",
    );
    report.note(format!(
        "kernel limit = p x the all-local child's peak RSS ({:.0} MiB); farmem budget = p x \
         farmem-demo's data working set",
        mib(working_set)
    ));

    let png = args.out.join("taxi-slowdown.png");
    let shown: Vec<plot::Line> = lines.into_iter().filter(|l| !l.points.is_empty()).collect();
    let title = format!("NYC taxi, nine steps, {} rows", warm_run.rows);
    match plot::draw_slowdown(&png, &title, &shown, true) {
        Ok(true) => report.note(format!("plot: {}", png.display())),
        Ok(false) => report.note(format!(
            "plot: {} (no TrueType font found: drawn without text)",
            png.display()
        )),
        Err(e) => report.note(format!("plot: not drawn, {e}")),
    }
    let csv_out = args.out.join("taxi.csv");
    std::fs::write(&csv_out, csv_text)
        .map_err(|e| Error::io(format!("writing {}", csv_out.display()), e))?;
    let json_out = args.out.join("taxi.json");
    let rendered = report.render();
    let figures: serde_json::Value = rendered
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("RESULT "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(serde_json::Value::Null);
    let json = serde_json::json!({ "figures": figures, "runs": raw_runs });
    std::fs::write(&json_out, format!("{json:#}\n"))
        .map_err(|e| Error::io(format!("writing {}", json_out.display()), e))?;
    report.note(format!(
        "table: {} and {}",
        csv_out.display(),
        json_out.display()
    ));
    Ok(report)
}

/// One kernel-paging attempt and how it ended.
struct KernelAttempt {
    out: ChildOutcome,
    /// The child's figures; `None` when it was killed (time limit or OOM).
    run: Option<TaxiRun>,
    /// The cgroup limit the kernel set, bytes.
    limit: u64,
    /// The cgroup's peak charge, bytes.
    charged: Option<u64>,
    /// Killed by the cgroup's OOM killer.
    oom: bool,
}

/// Runs the all-local child in a fresh memory cgroup `name` limited to `pct`% of `working_set`.
fn kernel_attempt(
    all_local: &AllLocal,
    csv: &Path,
    pct: f64,
    working_set: u64,
    name: &str,
    time_limit: Duration,
) -> Result<KernelAttempt> {
    let limit = cgroup::limit_for(working_set, pct);
    let cg = MemoryCgroup::create(Path::new(cgroup::MEMORY_ROOT), name, limit)?;
    let limit = cg.limit_bytes().unwrap_or(limit);
    let (program, argv) = all_local.argv(csv, pct);
    let out = run_child(cg.command(&program, argv), time_limit)?;
    let charged = cg.max_usage_bytes().ok();
    drop(cg);
    // A SIGKILL we did not send is the cgroup's OOM killer: memcg reclaim could not keep up at
    // this limit and the kernel gave up on the job. A result of the baseline, not an error.
    let oom = out.signal == Some(libc::SIGKILL) && !out.timed_out;
    let run = if out.timed_out || oom {
        None
    } else {
        Some(out.taxi_run(&format!(
            "the kernel-paging run at {pct}% (cgroup limit {limit} bytes)"
        ))?)
    };
    Ok(KernelAttempt {
        out,
        run,
        limit,
        charged,
        oom,
    })
}

/// One child run as a JSON object for `taxi.json`.
fn raw_json(
    series: &str,
    pct: f64,
    sample: usize,
    out: &ChildOutcome,
    run: Option<&TaxiRun>,
    cgroup_limit: Option<u64>,
) -> serde_json::Value {
    serde_json::json!({
        "series": series,
        "local_pct": pct,
        "sample": sample,
        "wall_s": out.wall_s,
        "maxrss_bytes": out.maxrss_bytes,
        "timed_out": out.timed_out,
        "cgroup_limit_bytes": cgroup_limit,
        "load_s": run.map(|r| r.load_s),
        "steps_s": run.map(|r| r.steps_s.clone()),
        "total_steps_s": run.map(|r| r.total_steps_s),
        "results_digest": run.map(|r| r.results_digest.clone()),
        "local_budget_bytes": run.and_then(|r| r.local_budget_bytes),
        "child_peak_rss_bytes": run.and_then(|r| r.peak_rss_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(steps: f64, rss: u64, digest: &str) -> Sample {
        Sample {
            steps_s: steps,
            load_s: 0.5,
            peak_rss_bytes: rss,
            budget_bytes: Some(100),
            digest: Some(digest.into()),
        }
    }

    #[test]
    fn summary_takes_medians_and_compares_digests() {
        let s = summarize(
            &[
                sample(3.0, 10, "d"),
                sample(1.0, 30, "d"),
                sample(2.0, 20, "d"),
            ],
            1.0,
            "d",
        )
        .expect("summary");
        assert_eq!(s.steps_s, 2.0);
        assert_eq!(s.slowdown, 2.0);
        assert_eq!(s.peak_rss_bytes, 30);
        assert_eq!(s.budget_bytes, Some(100));
        assert!(s.identical);
        assert_eq!(s.unfinished, 0);
        let odd = summarize(&[sample(1.0, 1, "d"), sample(1.0, 1, "x")], 1.0, "d").expect("s");
        assert!(!odd.identical, "one differing digest is not identical");
        assert!(summarize(&[], 1.0, "d").is_none());
    }

    #[test]
    fn unfinished_runs_count_as_infinitely_slow() {
        let out = ChildOutcome {
            stdout: String::new(),
            stderr_tail: String::new(),
            success: false,
            timed_out: true,
            signal: Some(libc::SIGKILL),
            maxrss_bytes: 4096,
            wall_s: 9.0,
        };
        let slow = Sample::unfinished(&out, Some(8192));
        let s = summarize(&[slow.clone(), slow, sample(1.0, 1, "d")], 2.0, "d").expect("s");
        assert!(s.steps_s.is_infinite() && s.slowdown.is_infinite());
        assert_eq!(s.unfinished, 2);
        assert!(s.identical, "timed-out runs have no digest to differ");
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(pct_key(5.0), "5");
        assert_eq!(pct_key(12.5), "12_5");
        assert_eq!(
            default_csv(Path::new("o"), 1000, 7),
            Path::new("o/taxi-1000-s7.csv")
        );
        let (prog, argv) = AllLocal::Demo("d".into()).argv(Path::new("t.csv"), 25.0);
        assert_eq!(prog, Path::new("d"));
        assert_eq!(
            argv,
            ["--csv", "t.csv", "--local", "25", "--all-local", "--json"]
        );
        let (_, argv) = AllLocal::This("me".into()).argv(Path::new("t.csv"), 25.0);
        assert_eq!(argv, ["taxi", "--child-all-local", "--csv", "t.csv"]);
    }

    #[test]
    fn args_parse_fraction_lists() {
        let a = Args::try_parse_from(["taxi", "--local", "5,25", "--rows", "10"]).expect("args");
        assert_eq!(a.local, [5.0, 25.0]);
        assert_eq!(a.rows, 10);
        let d = Args::try_parse_from(["taxi"]).expect("defaults");
        assert_eq!(d.local, [5.0, 10.0, 25.0, 50.0, 100.0]);
    }
}
