//! The taxi benchmark's child processes: one taxi run per process, its `TAXI {json}` line, its
//! peak RSS from `wait4`, a time limit, and Ctrl-C.
//!
//! Every series runs the analysis in a fresh process so that each has its own address space
//! and its own peak RSS (`ru_maxrss` from `wait4`, the same measure for every series), and so
//! that the kernel-paging series can be put in a memory cgroup alone. A child runs in its own
//! process group: a terminal's Ctrl-C reaches only `farmem-bench`, whose handler sets
//! [`interrupted`]; the wait loop then kills the child's group and returns an
//! error, so every cleanup guard up the stack (cgroup, swap, memory server)
//! runs its `Drop`.
//!
//! The all-local child can be this binary itself (`farmem-bench taxi --child-all-local`, see
//! [`serve_all_local`]) when `farmem-demo` is not built: it loads the same CSV into
//! [`LocalStorage`] and prints the same `TAXI` line.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use farmem_dataframe::{load_csv, taxi, LoadOptions, LocalStorage, Schema};

use crate::far_server::{spawn_server, ChildGuard, TokenFile};
use crate::{Error, ErrorKind, Result};

/// The figures one taxi child printed on its `TAXI {json}` line.
#[derive(Clone, Debug, PartialEq)]
pub struct TaxiRun {
    /// `"farmem"` or `"all-local"`.
    pub mode: String,
    /// Rows loaded.
    pub rows: u64,
    /// The local-memory fraction the child was given, percent.
    pub local_pct: f64,
    /// The child's local-memory budget in bytes, when it has one.
    pub local_budget_bytes: Option<u64>,
    /// Seconds spent loading the CSV (not part of the compared time).
    pub load_s: f64,
    /// Seconds of each of the nine steps.
    pub steps_s: Vec<f64>,
    /// Seconds of the nine steps together: the compared time.
    pub total_steps_s: f64,
    /// A digest of the nine results; equal digests mean identical results.
    pub results_digest: String,
    /// The peak RSS the child measured itself, if it reported one.
    pub peak_rss_bytes: Option<u64>,
    /// The nine steps' seconds of an all-local pass the same farmem child ran right after its
    /// farmem pass (`local_total_steps_s`), when it ran one: a paired baseline.
    pub paired_local_steps_s: Option<f64>,
}

/// Parses the last `TAXI {json}` line of a child's stdout.
pub fn parse_taxi_line(stdout: &str) -> Result<TaxiRun> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("TAXI "))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Parse,
                format!(
                    "the taxi child printed no `TAXI {{json}}` line; its output ended with {:?}",
                    tail(stdout, 400)
                ),
            )
        })?;
    let bad = |what: &str| {
        Error::new(
            ErrorKind::Parse,
            format!("the taxi child's TAXI line has {what}: {line}"),
        )
    };
    let json: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad(&format!("invalid JSON ({e})")))?;
    let num = |k: &str| json.get(k).and_then(serde_json::Value::as_f64);
    let need = |k: &str| num(k).ok_or_else(|| bad(&format!("no number `{k}`")));
    let steps_s: Vec<f64> = json
        .get("steps_s")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("no array `steps_s`"))?
        .iter()
        .map(|v| v.as_f64().ok_or_else(|| bad("a non-number in `steps_s`")))
        .collect::<Result<_>>()?;
    if steps_s.len() != 9 {
        return Err(bad(&format!("{} step times instead of 9", steps_s.len())));
    }
    let digest = match json.get("results_digest") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v @ serde_json::Value::Number(_)) => v.to_string(),
        _ => return Err(bad("no `results_digest`")),
    };
    Ok(TaxiRun {
        mode: json
            .get("mode")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("no string `mode`"))?
            .to_string(),
        rows: need("rows")? as u64,
        local_pct: num("local_pct").unwrap_or(100.0),
        local_budget_bytes: json
            .get("local_budget_bytes")
            .and_then(serde_json::Value::as_u64),
        load_s: need("load_s")?,
        total_steps_s: num("total_steps_s").unwrap_or_else(|| steps_s.iter().sum()),
        steps_s,
        results_digest: digest,
        peak_rss_bytes: json
            .get("peak_rss_bytes")
            .and_then(serde_json::Value::as_u64),
        paired_local_steps_s: num("local_total_steps_s"),
    })
}

/// The last `max` characters of `s`.
fn tail(s: &str, max: usize) -> &str {
    let n = s.chars().count();
    match s.char_indices().nth(n.saturating_sub(max)) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set [`interrupted`] instead of killing the process, so that
/// the benchmark's cleanup guards run.
pub fn install_interrupt_handler() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let handler: extern "C" fn(libc::c_int) = on_signal;
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only stores to an atomic, which
        // is async-signal-safe; replacing the disposition of these signals affects only this
        // process, which checks `interrupted()` in every wait loop.
        let previous = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            return Err(Error::io(
                format!("installing the handler for signal {signal}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Whether Ctrl-C (or SIGTERM/SIGHUP) arrived since [`install_interrupt_handler`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn interrupted_error() -> Error {
    Error::internal(
        "interrupted by a signal; the child was killed and the swap, cgroup and server are \
         cleaned up on the way out",
    )
}

/// How one child process ended.
#[derive(Debug)]
pub struct ChildOutcome {
    /// Its stdout.
    pub stdout: String,
    /// The tail of its stderr.
    pub stderr_tail: String,
    /// `true` when it exited with status 0.
    pub success: bool,
    /// `true` when it was killed for running past its time limit.
    pub timed_out: bool,
    /// The signal that ended it, if one did (SIGKILL from a memory cgroup is its OOM killer).
    pub signal: Option<i32>,
    /// Its peak resident set (`ru_maxrss` of `wait4`), bytes.
    pub maxrss_bytes: u64,
    /// Wall time from spawn to exit.
    pub wall_s: f64,
}

impl ChildOutcome {
    /// The child's `TAXI` figures, or an error with its stderr when it failed.
    pub fn taxi_run(&self, what: &str) -> Result<TaxiRun> {
        if !self.success {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "{what} failed; its stderr ended with: {}",
                    self.stderr_tail.trim()
                ),
            ));
        }
        parse_taxi_line(&self.stdout).map_err(|e| e.with_context(what.to_string()))
    }
}

fn read_all_in_thread<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Kills the process group `pid` leads.
fn kill_group(pid: libc::pid_t) {
    // SAFETY: `kill` has no memory-safety preconditions. `-pid` names the process group the
    // child leads: it was spawned with `process_group(0)` and every caller runs this before
    // reaping it, so the id cannot have been reused by another process.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Blocks in `wait4` until `pid` exits; returns its status and rusage.
fn wait4_blocking(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage)> {
    loop {
        match wait4(pid, 0)? {
            Some(done) => return Ok(done),
            None => continue,
        }
    }
}

/// `wait4(pid, options)`: `Some((status, rusage))` once the child was reaped.
fn wait4(pid: libc::pid_t, options: libc::c_int) -> Result<Option<(libc::c_int, libc::rusage)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct of integers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid, writable, properly aligned locals that outlive the
    // call; `pid` is our own unreaped child.
    let r = unsafe { libc::wait4(pid, &mut status, options, &mut usage) };
    if r == pid {
        return Ok(Some((status, usage)));
    }
    if r == 0 {
        return Ok(None);
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::Interrupted {
        return Ok(None);
    }
    Err(Error::io(format!("waiting for child {pid}"), err))
}

/// Runs `cmd` to completion (or `limit`), capturing its output and its peak RSS.
pub fn run_child(mut cmd: Command, limit: Duration) -> Result<ChildOutcome> {
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(format!("starting {what}"), e))?;
    let stdout = read_all_in_thread(child.stdout.take());
    let stderr = read_all_in_thread(child.stderr.take());
    let pid = child.id() as libc::pid_t;
    // From here the child is reaped with `wait4` (for its rusage), never through `Child`.
    let mut timed_out = false;
    let (status, usage) = loop {
        if interrupted() {
            kill_group(pid);
            let _ = wait4_blocking(pid);
            return Err(interrupted_error());
        }
        if start.elapsed() > limit {
            kill_group(pid);
            timed_out = true;
            break wait4_blocking(pid)?;
        }
        match wait4(pid, libc::WNOHANG) {
            Ok(Some(done)) => break done,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                kill_group(pid);
                let _ = wait4_blocking(pid);
                return Err(e);
            }
        }
    };
    let wall_s = start.elapsed().as_secs_f64();
    // The taxi children start no processes of their own, so the pipes close with the child.
    drop(child);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 && !timed_out;
    Ok(ChildOutcome {
        stdout,
        stderr_tail: tail(&stderr, 2000).to_string(),
        success,
        timed_out,
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        // Linux reports `ru_maxrss` in KiB.
        maxrss_bytes: (usage.ru_maxrss.max(0) as u64) * 1024,
        wall_s,
    })
}

/// A `farmem-server` child with its token file; killed and removed when dropped (fields drop
/// in order: the server first, then its token file).
pub struct MemoryServer {
    _child: ChildGuard,
    token_file: TokenFile,
    addr: SocketAddr,
}

impl MemoryServer {
    /// Starts `server_bin` on loopback with `capacity` (e.g. `4GiB`) and a fresh token file, in
    /// its own process group (a terminal's Ctrl-C reaches only `farmem-bench`).
    pub fn start(server_bin: &Path, capacity: &str, token: &str) -> Result<MemoryServer> {
        let token_file = TokenFile::create("farmem-bench-taxi", token)?;
        let (child, addr) = spawn_server(server_bin, capacity, &token_file, |cmd| {
            cmd.stdin(Stdio::null()).process_group(0);
        })?;
        Ok(MemoryServer {
            _child: child,
            token_file,
            addr,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file holding the cluster token, for `--token-file`.
    pub fn token_file(&self) -> &Path {
        self.token_file.path()
    }
}

/// FNV-1a 64: a stable digest of the results' text (std's hasher may change between releases).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The all-local child (`farmem-bench taxi --child-all-local --csv PATH`): loads `csv` into
/// [`LocalStorage`], runs the nine steps, and prints the `TAXI {json}` line `farmem-demo
/// --all-local --json` prints. Its digest is FNV-1a over the nine results' printed text.
pub fn serve_all_local(csv: &Path) -> Result<()> {
    let t = Instant::now();
    let (mut df, loaded) = load_csv(csv, &Schema::taxi(), &LocalStorage, LoadOptions::default())?;
    let load_s = t.elapsed().as_secs_f64();
    let mut printed = Vec::new();
    let results = taxi::run_all(&mut df, &mut printed)?;
    let steps_s: Vec<f64> = results
        .timings
        .iter()
        .map(|(_, d)| d.as_secs_f64())
        .collect();
    let total: f64 = steps_s.iter().sum();
    // The printed text holds each step's time after its name: digest only the results.
    let text = format!(
        "{}{}{}{}{}{}{}{}{}",
        results.vendors,
        results.passengers_vendor1,
        results.passengers_vendor2,
        results.duration,
        results.store_and_forward,
        results.long_trips,
        results.pickup_parts,
        results.median_by_day,
        results.median_by_month
    );
    let json = serde_json::json!({
        "mode": "all-local",
        "rows": loaded.rows,
        "local_pct": 100.0,
        "local_budget_bytes": serde_json::Value::Null,
        "load_s": load_s,
        "steps_s": steps_s,
        "total_steps_s": total,
        "results_digest": format!("{:016x}", fnv1a64(text.as_bytes())),
        "peak_rss_bytes": serde_json::Value::Null,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "TAXI {json}").map_err(|e| Error::io("writing the TAXI line", e))?;
    out.flush()
        .map_err(|e| Error::io("writing the TAXI line", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"TAXI {"mode":"farmem","rows":1000,"local_pct":25,"local_budget_bytes":4096,"load_s":0.5,"steps_s":[1,2,3,4,5,6,7,8,9],"total_steps_s":45,"results_digest":"abc","peak_rss_bytes":8192}"#;

    #[test]
    fn parses_the_last_taxi_line() {
        let out = format!("== step 1\nTAXI {{\"bogus\":1}}\nnoise\n{GOOD}\n");
        let run = parse_taxi_line(&out).expect("parses");
        assert_eq!(run.mode, "farmem");
        assert_eq!(run.rows, 1000);
        assert_eq!(run.local_pct, 25.0);
        assert_eq!(run.local_budget_bytes, Some(4096));
        assert_eq!(run.steps_s, (1..=9).map(f64::from).collect::<Vec<_>>());
        assert_eq!(run.total_steps_s, 45.0);
        assert_eq!(run.results_digest, "abc");
        assert_eq!(run.peak_rss_bytes, Some(8192));
        assert_eq!(run.paired_local_steps_s, None);
        let paired =
            parse_taxi_line(&GOOD.replace('}', r#","local_total_steps_s":9}"#)).expect("parses");
        assert_eq!(paired.paired_local_steps_s, Some(9.0));
    }

    #[test]
    fn rejects_missing_or_malformed_lines() {
        let e = parse_taxi_line("hello\n").expect_err("no TAXI line");
        assert_eq!(e.kind(), ErrorKind::Parse);
        assert!(parse_taxi_line("TAXI {not json").is_err());
        let eight = GOOD.replace("[1,2,3,4,5,6,7,8,9]", "[1,2,3,4,5,6,7,8]");
        assert!(parse_taxi_line(&eight)
            .expect_err("8 steps")
            .to_string()
            .contains("8 step times"));
        let no_digest = GOOD.replace(r#""results_digest":"abc","#, "");
        assert!(parse_taxi_line(&no_digest).is_err());
    }

    #[test]
    fn total_defaults_to_the_sum_of_steps() {
        let line = GOOD.replace(r#""total_steps_s":45,"#, "");
        assert_eq!(parse_taxi_line(&line).expect("parses").total_steps_s, 45.0);
    }

    #[test]
    fn fnv1a64_matches_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_fake_child_is_parsed_with_its_peak_rss() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("echo 'progress'; echo '{GOOD}'")]);
        let out = run_child(cmd, Duration::from_secs(30)).expect("sh runs");
        assert!(out.success && !out.timed_out);
        assert!(out.maxrss_bytes > 0, "wait4 reports a peak RSS");
        assert_eq!(out.taxi_run("fake").expect("parses").rows, 1000);
    }

    #[test]
    fn a_failing_child_reports_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'no csv here' >&2; exit 3"]);
        let out = run_child(cmd, Duration::from_secs(30)).expect("sh runs");
        assert!(!out.success);
        assert_eq!(out.signal, None, "exited, not signalled");
        let e = out.taxi_run("fake").expect_err("failed child");
        assert!(e.to_string().contains("no csv here"), "{e}");
    }

    #[test]
    fn a_child_past_its_limit_is_killed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]);
        let out = run_child(cmd, Duration::from_millis(200)).expect("sh runs");
        assert!(out.timed_out && !out.success);
        assert_eq!(out.signal, Some(libc::SIGKILL));
    }
}
