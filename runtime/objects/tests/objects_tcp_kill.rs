//! The memory server dies mid-run: every access then fails with a clear `Disconnected` error,
//! never a hang or a panic. Each run is bounded by a watchdog.
//!
//! Two ways to die: the embedded server shut down abruptly (every socket closed under the
//! client), and the real `farmem-server` process killed with SIGKILL. Cargo does not build the
//! binary for this crate's tests, so the second looks for it in `target/<profile>/` next to the
//! test executable and skips with a message when it is absent
//! (`cargo build -p farmem-server` first).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use farmem_objects::{Config, ErrorKind, FarMemory, TcpBackend};

mod common;

const TOKEN: &str = "objects-tcp-kill";
const WATCHDOG: Duration = Duration::from_secs(60);

fn config() -> Config {
    common::small_local_builder()
        .alloc_wait(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn backend(addr: &str) -> Arc<TcpBackend> {
    common::tcp_backend(addr, TOKEN)
}

/// Fills an array over `addr`, signals `ready`, waits for `killed`, then keeps reading until
/// an access fails; returns that error's kind and message. Runs on its own thread.
fn run_until_failure(
    addr: String,
    ready: mpsc::Sender<()>,
    killed: mpsc::Receiver<()>,
) -> (ErrorKind, String) {
    let fm = FarMemory::new(config(), backend(&addr)).unwrap();
    let n = 256 * 1024; // 2 MiB of u64 over 128 KiB local
    let mut arr = fm.array::<u64>(n).unwrap();
    let mut s = fm.scope();
    let src: Vec<u64> = (0..n as u64).collect();
    arr.write_slice(0, &src, &mut s).unwrap();
    ready.send(()).unwrap();
    killed.recv().unwrap();
    let mut i = 0usize;
    loop {
        match arr.get(i % n, &s) {
            Ok(v) => assert_eq!(*v, (i % n) as u64, "data read before the failure is right"),
            Err(e) => return (e.kind(), e.to_string()),
        }
        i += 4099;
        s.renew();
        assert!(
            i < 1 << 30,
            "accesses kept succeeding after the server died"
        );
    }
}

fn watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(v) => {
            worker.join().unwrap();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("hung for {WATCHDOG:?} after the server died")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("worker ended without a result"),
        },
    }
}

#[test]
fn embedded_server_shut_down_mid_run_gives_disconnected() {
    let srv = common::start_server(64 << 20, TOKEN);
    let addr = srv.addr().to_string();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (killed_tx, killed_rx) = mpsc::channel();
    let (kind, msg) = watchdog(move || {
        let t = std::thread::spawn(move || run_until_failure(addr, ready_tx, killed_rx));
        ready_rx.recv().unwrap();
        srv.shutdown();
        killed_tx.send(()).unwrap();
        t.join().unwrap()
    });
    assert_eq!(kind, ErrorKind::Disconnected, "{msg}");
    assert!(
        msg.contains("TCP far memory at"),
        "the message names the server: {msg}"
    );
}

/// `target/<profile>/farmem-server`, if built: the test executable is `target/<profile>/deps/…`.
fn server_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("farmem-server");
    bin.exists().then_some(bin)
}

#[test]
fn server_process_killed_mid_run_gives_disconnected() {
    let Some(bin) = server_binary() else {
        eprintln!(
            "SKIPPED server_process_killed_mid_run_gives_disconnected: no farmem-server binary \
             next to the test executable; run `cargo build -p farmem-server` (same target dir)"
        );
        return;
    };
    let token = std::env::temp_dir().join(format!("objects-tcp-kill-{}.token", std::process::id()));
    std::fs::write(&token, TOKEN).unwrap();
    let mut child = Command::new(&bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--capacity",
            "64MiB",
            "--token-file",
        ])
        .arg(&token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = std::fs::remove_file(&token);
    let addr = line
        .trim()
        .strip_prefix("farmem-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (killed_tx, killed_rx) = mpsc::channel();
    let (kind, msg) = watchdog(move || {
        let t = std::thread::spawn(move || run_until_failure(addr, ready_tx, killed_rx));
        ready_rx.recv().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed_tx.send(()).unwrap();
        t.join().unwrap()
    });
    assert_eq!(kind, ErrorKind::Disconnected, "{msg}");
}
