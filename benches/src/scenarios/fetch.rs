//! `farmem-bench fetch`: one remote object fetch (a miss of a 4 KiB chunk) through `RemArray`
//! over a `TcpBackend`, against a raw TCP request/response of the same sizes on loopback, and
//! fetch throughput with many green threads at once.
//!
//! # What runs
//!
//! * **miss latency**: a `RemArray<u64>` 16× its local memory; each access reads the first element
//!   of the next chunk of a fixed random permutation, so a chunk comes back only after every other
//!   chunk was read and is remote again (the reported miss fraction checks this). The prefetcher
//!   is off. Baseline, interleaved sample by sample: a blocking socket to a raw server, one
//!   `write` of a farmem read request's bytes, one `read_exact` of a farmem read response's bytes.
//!   Target: fetch ≤ 1.5× raw.
//! * **green-thread throughput**: `--green-threads` green threads on a `farmem_sched::Runtime`
//!   read random chunks (each in its own range, yielding after each read) for `--seconds`;
//!   reported against one thread's miss rate.
//!
//! The memory server (`farmem-server`) and the raw server (this binary, `fetch --serve-raw`) run
//! as their own processes; `--embedded` runs both in this process. The helpers here
//! ([`FarServers`], [`peak_rss_bytes`], [`RawClient`]) are shared by the `scan` and `evac`
//! scenarios.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use farmem_net::HEADER_LEN;
use farmem_objects::{Config, FarMemory, RemArray, TcpBackend, TcpBackendConfig};
use farmem_server::{Server, ServerConfig, ServerHandle};

use crate::{median, ratio, Error, ErrorKind, Report, Result, Scenario};

/// The registration of this scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "fetch",
    about: "RemArray miss over TCP vs raw TCP round trip (ratio), green-thread fetch throughput",
    run,
};

/// The cluster token the benchmark servers use.
pub(crate) const TOKEN: &str = "farmem-bench-objects-tcp";
/// Bytes of a farmem read request frame (header + ds + object); the raw request has as many.
pub(crate) const RAW_REQUEST_BYTES: usize = HEADER_LEN + 16;
/// Largest single write of the raw server.
const RAW_WRITE_BYTES: usize = 1 << 20;

#[derive(Parser, Debug)]
#[command(
    name = "farmem-bench fetch",
    about = "RemArray fetch over TCP vs raw TCP"
)]
struct Args {
    /// Run the servers in this process instead of as child processes.
    #[arg(long)]
    embedded: bool,
    /// Samples per latency series (the median is reported).
    #[arg(long, default_value_t = 7)]
    samples: usize,
    /// Fetches per latency sample.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Local memory in MiB (the array is 16× this).
    #[arg(long, default_value_t = 2)]
    local_mib: usize,
    /// Connections to the memory server.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Green threads fetching at once in the throughput run.
    #[arg(long, default_value_t = 64)]
    green_threads: usize,
    /// Worker threads of the green-thread runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Turn the backend's green-thread relay off (green threads then lead the socket reads).
    #[arg(long)]
    no_relay: bool,
    /// Internal: serve the raw baseline and print its address (used by the parent run).
    #[arg(long, hide = true)]
    serve_raw: bool,
}

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if args.serve_raw {
        serve_raw_forever()?;
    }
    if args.samples == 0 || args.ops == 0 || args.green_threads == 0 || args.workers == 0 {
        return Err(Error::invalid(
            "--samples, --ops, --green-threads and --workers must be at least 1",
        ));
    }
    let servers = FarServers::start(args.embedded, "2GiB")?;
    let mut raw = RawClient::connect(servers.raw_addr, HEADER_LEN + 1 + 4 + 4096)?;
    let t = Instant::now();
    for _ in 0..args.ops {
        raw.round_trip()?;
    }
    let raw_alone_ns = t.elapsed().as_secs_f64() * 1e9 / args.ops as f64;
    let local = args.local_mib.max(1) << 20;
    let config = Config::builder()
        .local_bytes(local)
        .region_bytes(128 << 10)
        .chunk_bytes(4096)
        .prefetch_depth(0)
        .build()?;
    let fm = Arc::new(servers.far_memory(config, args.connections, !args.no_relay)?);
    let chunks = 16 * local / 4096;
    let mut arr = fm.array::<u64>(chunks * 512)?;
    {
        // Tag every chunk so a wrong fetch shows up as a wrong value.
        let mut s = fm.scope();
        for c in 0..chunks {
            arr.set(c * 512, c as u64, &s)?;
            s.renew();
        }
    }
    let arr = Arc::new(arr);
    let order = permutation(chunks, 0x9e37_79b9);
    let mut cursor = 0usize;
    let mut fetch_one = |s: &farmem_objects::DerefScope<'_>| -> Result<()> {
        let c = order[cursor % chunks];
        cursor += 1;
        let v = *arr.get(c * 512, s)?;
        if v != c as u64 {
            return Err(Error::internal(format!("chunk {c} read back {v}")));
        }
        Ok(())
    };
    // Warm-up: one pass makes every chunk remote and settles the evacuator.
    {
        let mut s = fm.scope();
        for _ in 0..chunks {
            fetch_one(&s)?;
            s.renew();
        }
    }
    for _ in 0..200 {
        raw.round_trip()?;
    }
    let (mut far_ns, mut raw_ns) = (Vec::new(), Vec::new());
    let misses_before = fm.metrics().misses;
    for _ in 0..args.samples {
        let mut s = fm.scope();
        let t = Instant::now();
        for _ in 0..args.ops {
            fetch_one(&s)?;
            s.renew();
        }
        far_ns.push(t.elapsed().as_secs_f64() * 1e9 / args.ops as f64);
        drop(s);
        let t = Instant::now();
        for _ in 0..args.ops {
            raw.round_trip()?;
        }
        raw_ns.push(t.elapsed().as_secs_f64() * 1e9 / args.ops as f64);
    }
    let miss_fraction =
        (fm.metrics().misses - misses_before) as f64 / (args.samples * args.ops) as f64;
    let (f, r) = (median(&far_ns), median(&raw_ns));
    let q = ratio(f, r);

    let mut report = Report::new("fetch", &["series", "value", "baseline", "ratio"]);
    report.figure("server", if args.embedded { "embedded" } else { "process" });
    report.row(&[
        "4 KiB chunk miss (RemArray over TCP)".to_string(),
        format!("{f:.0} ns"),
        format!("{r:.0} ns raw TCP"),
        format!("{q:.2}"),
    ]);
    report.figure_f64("miss_4k_farmem_ns", f);
    report.figure_f64("miss_4k_raw_tcp_ns", r);
    report.figure_f64("miss_4k_ratio_vs_raw", q);
    report.figure_f64("miss_fraction", miss_fraction);
    report.figure_f64("raw_tcp_before_far_memory_ns", raw_alone_ns);
    report.note(format!(
        "raw TCP round trip before the far-memory instance existed: {raw_alone_ns:.0} ns"
    ));
    report.target(
        "miss_ratio_vs_raw",
        "4 KiB fetch <= 1.5x raw TCP round trip",
        q <= 1.5,
    );

    // Throughput: many green threads fetching random chunks at once.
    let rt = farmem_sched::Runtime::builder()
        .workers(args.workers)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let misses_before = fm.metrics().misses;
    let start = Instant::now();
    let span = (chunks / args.green_threads).max(1) as u64;
    if span * (args.green_threads as u64) > chunks as u64 {
        return Err(Error::invalid(format!(
            "--green-threads {} exceeds the {chunks} chunks of the array; raise --local-mib",
            args.green_threads
        )));
    }
    let handles: Vec<_> = (0..args.green_threads as u64)
        .map(|t| {
            let (fm, arr, stop, done) = (fm.clone(), arr.clone(), stop.clone(), done.clone());
            rt.spawn(move || -> Result<()> {
                let mut s = fm.scope();
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Each green thread in its own chunk range (see the `TcpBackend` note:
                    // green threads of one worker that park in a fetch must not share chunks).
                    let c = (t * span + x % span) as usize;
                    let v = *arr.get(c * 512, &s)?;
                    if v != c as u64 {
                        return Err(Error::internal(format!("chunk {c} read back {v}")));
                    }
                    s.renew();
                    n += 1;
                    // One request per turn: a green thread whose range became local would
                    // otherwise keep its worker (cooperative scheduling) and starve the others.
                    farmem_sched::yield_now();
                }
                done.fetch_add(n, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.seconds.max(0.05)));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|e| Error::internal(format!("a fetching green thread failed: {e}")))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ops = done.load(Ordering::Relaxed) as f64 / elapsed;
    let misses = (fm.metrics().misses - misses_before) as f64 / elapsed;
    let one_thread = 1e9 / f;
    report.row(&[
        format!(
            "{} green threads on {} workers, {} conns{}",
            args.green_threads,
            args.workers,
            args.connections,
            if args.no_relay { ", no relay" } else { "" }
        ),
        format!(
            "{ops:.0} reads/s ({misses:.0} misses/s, {:.0} MB/s)",
            misses * 4096.0 / 1e6
        ),
        format!("{one_thread:.0} misses/s 1 thread"),
        format!("{:.2}", ratio(misses, one_thread)),
    ]);
    report.figure_f64("green_reads_per_s", ops);
    report.figure_f64("green_misses_per_s", misses);
    report.figure_f64("green_miss_mb_per_s", misses * 4096.0 / 1e6);
    report.figure_f64("green_speedup_vs_one_thread", ratio(misses, one_thread));
    report.figure("green_threads", args.green_threads as u64);
    report.figure("green_relay", !args.no_relay);
    drop(rt);
    memory_rows(&mut report, local);
    report.note(format!(
        "miss latency: median of {} samples of {} fetches; {:.1}% of them were misses",
        args.samples,
        args.ops,
        miss_fraction * 100.0
    ));
    drop(arr);
    drop(fm);
    servers.stop();
    Ok(report)
}

/// A random permutation of `0..n` (xorshift Fisher–Yates; deterministic per `seed`).
pub(crate) fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// The client's peak resident set (VmHWM of /proc/self/status) in bytes; `None` off Linux.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Adds the client's peak RSS beside its local-memory budget to `report`.
pub(crate) fn memory_rows(report: &mut Report, local_budget: usize) {
    let Some(hwm) = peak_rss_bytes() else {
        report.note("peak RSS: /proc/self/status not readable");
        return;
    };
    let mib = |b: f64| b / (1 << 20) as f64;
    let over = hwm as f64 - local_budget as f64;
    report.row(&[
        "client peak RSS (VmHWM)".to_string(),
        format!("{:.1} MiB", mib(hwm as f64)),
        format!("{:.1} MiB local budget", mib(local_budget as f64)),
        format!("+{:.1} MiB", mib(over)),
    ]);
    report.figure("client_peak_rss_bytes", hwm);
    report.figure("local_budget_bytes", local_budget as u64);
    report.figure_f64("client_rss_overhead_mib", mib(over));
}

/// The raw baseline's client: a fixed-size request whose first 8 bytes say how many bytes the
/// server answers with.
pub(crate) struct RawClient {
    stream: TcpStream,
    request: [u8; RAW_REQUEST_BYTES],
    response: Vec<u8>,
}

impl RawClient {
    /// Connects to the raw server; each [`round_trip`](Self::round_trip) reads `response_bytes`.
    pub(crate) fn connect(addr: SocketAddr, response_bytes: usize) -> Result<RawClient> {
        let stream = TcpStream::connect(addr).map_err(|e| Error::io("connecting raw client", e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io("raw client nodelay", e))?;
        let mut request = [0u8; RAW_REQUEST_BYTES];
        request[..8].copy_from_slice(&(response_bytes as u64).to_le_bytes());
        Ok(RawClient {
            stream,
            request,
            response: vec![0; response_bytes.min(RAW_WRITE_BYTES)],
        })
    }

    /// One request, then the whole answer read.
    pub(crate) fn round_trip(&mut self) -> Result<()> {
        self.stream
            .write_all(&self.request)
            .map_err(|e| Error::io("raw request", e))?;
        let n = self.response.len();
        self.stream
            .read_exact(&mut self.response[..n])
            .map_err(|e| Error::io("raw response", e))
    }

    /// Asks for `total` bytes and reads them in buffer-sized reads; returns bytes per second.
    pub(crate) fn stream_bandwidth(&mut self, total: u64) -> Result<f64> {
        self.request[..8].copy_from_slice(&total.to_le_bytes());
        let t = Instant::now();
        self.stream
            .write_all(&self.request)
            .map_err(|e| Error::io("raw stream request", e))?;
        let mut left = total as usize;
        while left > 0 {
            let n = left.min(self.response.len());
            let got = self
                .stream
                .read(&mut self.response[..n])
                .map_err(|e| Error::io("raw stream", e))?;
            if got == 0 {
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    "raw server closed mid-stream",
                ));
            }
            left -= got;
        }
        Ok(total as f64 / t.elapsed().as_secs_f64())
    }
}

fn serve_raw_connection(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut req = [0u8; RAW_REQUEST_BYTES];
    let block = vec![0xa5u8; RAW_WRITE_BYTES];
    while s.read_exact(&mut req).is_ok() {
        let mut n = u64::from_le_bytes([
            req[0], req[1], req[2], req[3], req[4], req[5], req[6], req[7],
        ]);
        while n > 0 {
            let k = (n as usize).min(RAW_WRITE_BYTES);
            if s.write_all(&block[..k]).is_err() {
                return;
            }
            n -= k as u64;
        }
    }
}

fn raw_listener() -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("binding raw server", e))?;
    let a = l
        .local_addr()
        .map_err(|e| Error::io("raw server address", e))?;
    Ok((l, a))
}

fn accept_raw(l: TcpListener) {
    for s in l.incoming().flatten() {
        std::thread::spawn(move || serve_raw_connection(s));
    }
}

fn serve_raw_forever() -> Result<()> {
    let (l, addr) = raw_listener()?;
    println!("raw-loopback listening on {addr}");
    std::io::stdout()
        .flush()
        .map_err(|e| Error::io("stdout", e))?;
    accept_raw(l);
    std::process::exit(0);
}

/// Kills a child server when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TokenFile(PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spawn_and_read_addr(cmd: &mut Command, prefix: &str) -> Result<(ChildGuard, SocketAddr)> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io(format!("starting {what}"), e))?;
    let stdout = child.stdout.take();
    let guard = ChildGuard(child);
    let mut line = String::new();
    if let Some(out) = stdout {
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| Error::io(format!("reading the address from {what}"), e))?;
    }
    let addr = line
        .trim()
        .strip_prefix(prefix)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            Error::internal(format!(
                "{what} printed {line:?} instead of \"{prefix}ADDR\""
            ))
        })?;
    Ok((guard, addr))
}

/// The memory server and the raw baseline server, as child processes or in-process.
pub(crate) struct FarServers {
    /// The memory server.
    pub farmem_addr: SocketAddr,
    /// The raw loopback server.
    pub raw_addr: SocketAddr,
    embedded: Option<ServerHandle>,
    _children: Vec<ChildGuard>,
    _token_file: Option<TokenFile>,
}

impl FarServers {
    /// Starts both servers; the memory server offers `capacity` (e.g. `2GiB`).
    pub(crate) fn start(embedded: bool, capacity: &str) -> Result<FarServers> {
        if embedded {
            let bytes = farmem_server::parse_size(capacity)?;
            let handle = Server::start(ServerConfig::new("127.0.0.1:0", bytes, TOKEN))?;
            let (l, raw_addr) = raw_listener()?;
            std::thread::spawn(move || accept_raw(l));
            return Ok(FarServers {
                farmem_addr: handle.addr(),
                raw_addr,
                embedded: Some(handle),
                _children: Vec::new(),
                _token_file: None,
            });
        }
        let me = std::env::current_exe().map_err(|e| Error::io("locating farmem-bench", e))?;
        let server_bin = me.with_file_name("farmem-server");
        if !server_bin.exists() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} is missing: build it next to farmem-bench with `cargo build --release -p \
                     farmem-server -p farmem-benches` (same CARGO_TARGET_DIR), or pass --embedded",
                    server_bin.display()
                ),
            ));
        }
        let token_path =
            std::env::temp_dir().join(format!("farmem-bench-objects-{}.token", std::process::id()));
        std::fs::write(&token_path, TOKEN)
            .map_err(|e| Error::io(format!("writing {}", token_path.display()), e))?;
        let token_file = TokenFile(token_path);
        let (farmem, farmem_addr) = spawn_and_read_addr(
            Command::new(&server_bin)
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--capacity",
                    capacity,
                    "--token-file",
                ])
                .arg(&token_file.0),
            "farmem-server listening on ",
        )?;
        let (raw, raw_addr) = spawn_and_read_addr(
            Command::new(&me).args(["fetch", "--serve-raw"]),
            "raw-loopback listening on ",
        )?;
        Ok(FarServers {
            farmem_addr,
            raw_addr,
            embedded: None,
            _children: vec![farmem, raw],
            _token_file: Some(token_file),
        })
    }

    /// A far-memory instance over a `TcpBackend` to the memory server.
    pub(crate) fn far_memory(
        &self,
        config: Config,
        connections: usize,
        relay: bool,
    ) -> Result<FarMemory> {
        let mut c = TcpBackendConfig::new(self.farmem_addr.to_string(), TOKEN);
        c.connections = connections;
        c.green_relay = relay;
        FarMemory::new(config, Arc::new(TcpBackend::with_config(&c)?))
    }

    /// Stops an embedded server (child processes are killed on drop).
    pub(crate) fn stop(self) {
        if let Some(h) = self.embedded {
            h.shutdown();
        }
    }
}

/// Touches `arr`'s chunks so a scan result cannot be optimised away; used by `scan`.
pub(crate) fn checksum(arr: &RemArray<u64>, fm: &FarMemory) -> Result<u64> {
    let mut s = fm.scope();
    let mut sum = 0u64;
    arr.for_each_chunk(&mut s, |_, xs| {
        sum = xs.iter().fold(sum, |a, &x| a.wrapping_add(x));
    })?;
    Ok(sum)
}
