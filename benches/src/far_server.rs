//! Starting the memory server (`farmem-server`) for a scenario, as its own process or embedded,
//! beside the raw TCP baseline server; and the client's peak RSS against its local budget.
//!
//! Invariants: a server child is killed and reaped when its [`ChildGuard`] drops, and a token
//! file is removed when its [`TokenFile`] drops, so an error anywhere in a scenario leaves no
//! process and no file behind. A child announces its address on its first stdout line as
//! `PREFIX ADDR` ([`spawn_and_read_addr`]).
//!
//! By default both servers run as their own processes (`farmem-server` from the same target
//! directory, and `farmem-bench <scenario> --serve-raw`), so neither shares cores with the
//! client's bookkeeping in a way the other does not; `embedded` runs both in this process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use farmem_objects::{Config, FarMemory, TcpBackend, TcpBackendConfig};
use farmem_server::{Server, ServerConfig, ServerHandle};

use crate::{raw_tcp, Error, ErrorKind, Report, Result};

/// What `farmem-server` prints before its address on its first stdout line.
pub const SERVER_LISTENING_PREFIX: &str = "farmem-server listening on ";

/// Kills and reaps a child process when dropped.
pub struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A file holding a cluster token (for `farmem-server --token-file`); removed when dropped.
pub struct TokenFile(PathBuf);

impl TokenFile {
    /// Writes `token` to `{temp dir}/{stem}-{pid}.token`.
    pub fn create(stem: &str, token: &str) -> Result<TokenFile> {
        let path = std::env::temp_dir().join(format!("{stem}-{}.token", std::process::id()));
        std::fs::write(&path, token)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(TokenFile(path))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Spawns `cmd` (stdout piped, stderr inherited) and parses the address from its first stdout
/// line, which must read `{prefix}ADDR`.
pub fn spawn_and_read_addr(cmd: &mut Command, prefix: &str) -> Result<(ChildGuard, SocketAddr)> {
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

/// Starts `server_bin` as a `farmem-server` child on loopback with `capacity` (e.g. `4GiB`),
/// reading the token from `token_file`; `cmd_setup` may adjust the command first (e.g. its
/// process group).
pub fn spawn_server(
    server_bin: &Path,
    capacity: &str,
    token_file: &TokenFile,
    cmd_setup: impl FnOnce(&mut Command),
) -> Result<(ChildGuard, SocketAddr)> {
    let mut cmd = Command::new(server_bin);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--capacity",
        capacity,
        "--token-file",
    ])
    .arg(token_file.path());
    cmd_setup(&mut cmd);
    spawn_and_read_addr(&mut cmd, SERVER_LISTENING_PREFIX)
}

/// How a scenario's [`FarServers`] are named and sized.
#[derive(Clone, Copy, Debug)]
pub struct FarServersConfig<'a> {
    /// The scenario whose `--serve-raw` runs the raw server child (`farmem-bench NAME --serve-raw`).
    pub scenario: &'a str,
    /// The cluster token of the memory server.
    pub token: &'a str,
    /// The token file's name stem in the temp directory.
    pub token_stem: &'a str,
    /// The memory server's capacity (e.g. `2GiB`).
    pub capacity: &'a str,
}

/// The cluster token of the far-memory scenarios (`fetch`, `scan`, `list`, `evac`, `hashtable`).
pub const OBJECTS_TOKEN: &str = "farmem-bench-objects-tcp";

/// The memory server and the raw baseline server, as child processes or in-process.
pub struct FarServers {
    /// The memory server.
    pub farmem_addr: SocketAddr,
    /// The raw loopback server.
    pub raw_addr: SocketAddr,
    token: String,
    embedded: Option<ServerHandle>,
    children: Vec<ChildGuard>,
    _token_file: Option<TokenFile>,
}

impl FarServers {
    /// Starts both servers for the far-memory scenarios (raw child `fetch --serve-raw`, token
    /// [`OBJECTS_TOKEN`]); the memory server offers `capacity` (e.g. `2GiB`).
    pub fn start(embedded: bool, capacity: &str) -> Result<FarServers> {
        FarServers::start_with(
            embedded,
            &FarServersConfig {
                scenario: "fetch",
                token: OBJECTS_TOKEN,
                token_stem: "farmem-bench-objects",
                capacity,
            },
        )
    }

    /// Starts both servers as `config` says.
    pub fn start_with(embedded: bool, config: &FarServersConfig<'_>) -> Result<FarServers> {
        if embedded {
            let bytes = farmem_server::parse_size(config.capacity)?;
            let handle = Server::start(ServerConfig::new("127.0.0.1:0", bytes, config.token))?;
            let raw_addr = raw_tcp::spawn_in_process()?;
            return Ok(FarServers {
                farmem_addr: handle.addr(),
                raw_addr,
                token: config.token.to_string(),
                embedded: Some(handle),
                children: Vec::new(),
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
        let token_file = TokenFile::create(config.token_stem, config.token)?;
        let (farmem, farmem_addr) =
            spawn_server(&server_bin, config.capacity, &token_file, |_| {})?;
        let (raw, raw_addr) = spawn_and_read_addr(
            Command::new(&me).args([config.scenario, "--serve-raw"]),
            raw_tcp::LISTENING_PREFIX,
        )?;
        Ok(FarServers {
            farmem_addr,
            raw_addr,
            token: config.token.to_string(),
            embedded: None,
            children: vec![farmem, raw],
            _token_file: Some(token_file),
        })
    }

    /// A far-memory instance over a `TcpBackend` to the memory server.
    pub fn far_memory(&self, config: Config, connections: usize, relay: bool) -> Result<FarMemory> {
        let mut c = TcpBackendConfig::new(self.farmem_addr.to_string(), self.token.as_bytes());
        c.connections = connections;
        c.green_relay = relay;
        FarMemory::new(config, Arc::new(TcpBackend::with_config(&c)?))
    }

    /// Gives the latency series one fixed CPU placement, the same for farmem and the raw
    /// baseline: both server processes on the last CPU, the calling (measuring) thread on CPU 0,
    /// until the guard drops. Left to itself, Linux keeps each thread on the CPU it last ran on
    /// while that CPU is idle, so which pairs end up sharing a CPU is chance, and on a virtual
    /// machine a wake-up across CPUs costs some 25 µs where one on the same CPU costs a few:
    /// one run's ratio then measured the placement, not the protocol (3.5× with the farmem
    /// server across and the raw server beside the client, 1.2× with both beside it). Across
    /// CPUs is also what a memory server on another machine is like. Other threads of the client
    /// (the evacuator, prefetcher) stay free. Embedded servers, a single CPU or a failed pin
    /// leave the placement to the kernel, and the description says so.
    pub fn pin_for_latency(&self) -> LatencyPlacement {
        let free = |why: String| LatencyPlacement {
            restore: None,
            description: format!("placement: left to the kernel ({why})"),
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.embedded.is_some() {
            return free("embedded servers".into());
        }
        if cpus < 2 {
            return free("one CPU".into());
        }
        let server_cpu = (cpus - 1).min(libc::CPU_SETSIZE as usize - 1);
        // SAFETY: a zeroed cpu_set_t is a valid (empty) set.
        let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getaffinity writes at most the size passed, which is `old`'s size.
        let got =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) };
        if got != 0 {
            return free(format!(
                "reading the affinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `old` holds the affinity read above, a valid set.
        let allowed = |cpu: usize| unsafe { libc::CPU_ISSET(cpu, &old) };
        if !allowed(0) || !allowed(server_cpu) {
            return free(format!(
                "CPU 0 or {server_cpu} is outside this process's CPU set"
            ));
        }
        for child in &self.children {
            if let Err(e) = pin_process(child.0.id(), server_cpu) {
                return free(format!("pinning a server: {e}"));
            }
        }
        if let Err(e) = pin_to(0, 0) {
            return free(format!("pinning the measuring thread: {e}"));
        }
        LatencyPlacement {
            restore: Some(old),
            description: format!(
                "placement: both servers on CPU {server_cpu}, the measuring thread on CPU 0 \
                 (farmem and raw alike)"
            ),
        }
    }

    /// Stops an embedded server (child processes are killed on drop).
    pub fn stop(self) {
        if let Some(h) = self.embedded {
            h.shutdown();
        }
    }
}

/// Keeps the latency series' CPU placement until dropped (see [`FarServers::pin_for_latency`]).
pub struct LatencyPlacement {
    /// The calling thread's affinity before it was pinned, restored on drop.
    restore: Option<libc::cpu_set_t>,
    /// What the scenario prints about the placement.
    pub description: String,
}

impl Drop for LatencyPlacement {
    fn drop(&mut self) {
        if let Some(set) = self.restore.take() {
            // SAFETY: `set` is a valid cpu_set_t read by sched_getaffinity for this thread.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        }
    }
}

/// Sets the affinity of thread (or process) `tid` to the one CPU `cpu`.
fn pin_to(tid: libc::pid_t, cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it (cpu is below
    // CPU_SETSIZE, checked by the caller), and sched_setaffinity reads exactly its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Pins every thread of process `pid` to `cpu`; threads it starts later inherit the affinity of
/// the thread that starts them (a server's accept thread starts its connection threads).
fn pin_process(pid: u32, cpu: usize) -> std::io::Result<()> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: libc::pid_t = entry?
            .file_name()
            .to_string_lossy()
            .parse()
            .map_err(|_| std::io::Error::other("a /proc task name that is not a number"))?;
        match pin_to(tid, cpu) {
            // A thread that ended since the listing needs no pin.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            r => r?,
        }
    }
    Ok(())
}

/// The client's peak resident set (VmHWM of /proc/self/status) in bytes; `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Adds the client's peak RSS beside its local-memory budget to `report` (a row and the
/// figures `client_peak_rss_bytes`, `local_budget_bytes`, `client_rss_overhead_mib`).
pub fn memory_rows(report: &mut Report, local_budget: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_address_line_is_parsed_and_the_child_killed_on_drop() -> Result<()> {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'x-server listening on 127.0.0.1:4567'; exec sleep 30",
        ]);
        let (guard, addr) = spawn_and_read_addr(&mut cmd, "x-server listening on ")?;
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 4567)));
        let pid = guard.0.id();
        drop(guard);
        // Killed and reaped on drop: the pid is gone.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        Ok(())
    }

    #[test]
    fn a_server_child_gets_its_capacity_and_token_file() -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let token = TokenFile::create("farmem-bench-far-server-spawn-test", "t")?;
        // A stand-in `farmem-server`: checks its arguments, then announces an address.
        let script = std::env::temp_dir().join(format!("fake-server-{}.sh", std::process::id()));
        let body = format!(
            "#!/bin/sh\n[ \"$4\" = 3GiB ] && [ \"$6\" = {} ] && echo '{SERVER_LISTENING_PREFIX}127.0.0.1:9'\nexec sleep 30\n",
            token.path().display()
        );
        std::fs::write(&script, body).map_err(|e| Error::io("writing the fake server", e))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod the fake server", e))?;
        // Another test thread's fork may briefly hold the script open for writing (ETXTBSY):
        // retry a few times.
        let mut spawned = Err(Error::internal("not started"));
        for _ in 0..5 {
            spawned = spawn_server(&script, "3GiB", &token, |cmd| {
                cmd.stdin(Stdio::null());
            });
            if spawned.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&script);
        let (_child, addr) = spawned?;
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 9)));
        Ok(())
    }

    #[test]
    fn a_wrong_address_line_is_an_error() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello"]);
        assert!(spawn_and_read_addr(&mut cmd, "x-server listening on ").is_err());
    }

    #[test]
    fn a_token_file_holds_the_token_and_is_removed_on_drop() -> Result<()> {
        let f = TokenFile::create("farmem-bench-far-server-test", "secret")?;
        let path = f.path().to_path_buf();
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("secret")
        );
        drop(f);
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn embedded_servers_serve_far_memory_and_the_raw_baseline() -> Result<()> {
        let servers = FarServers::start(true, "64MiB")?;
        let mut raw = raw_tcp::RawClient::connect(servers.raw_addr, 4096)?;
        raw.round_trip()?;
        let config = Config::builder()
            .local_bytes(1 << 20)
            .region_bytes(128 << 10)
            .chunk_bytes(4096)
            .build()?;
        let fm = servers.far_memory(config, 1, false)?;
        drop(fm);
        servers.stop();
        Ok(())
    }

    #[test]
    fn memory_rows_report_the_budget() {
        let mut report = Report::new("t", &["series", "value", "baseline", "ratio"]);
        memory_rows(&mut report, 1 << 20);
        if peak_rss_bytes().is_some() {
            assert_eq!(
                report.get("local_budget_bytes"),
                Some(&serde_json::Value::from(1u64 << 20))
            );
            assert!(report.get("client_peak_rss_bytes").is_some());
        }
    }
}
