//! The real `farmem-server` binary as a child process: configured from flags or a TOML file,
//! served to clients, then killed mid-run: every pending and later request gets
//! `Disconnected` promptly, never a hang (a watchdog bounds the test).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use farmem_net::{Client, ClientConfig, ErrorKind};

const TOKEN: &str = "kill-test-token";

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("farmem-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Kills the child when dropped, so a failing test leaves no server behind.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (ServerProcess, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_farmem-server"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("farmem-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (ServerProcess(child), addr)
}

fn with_watchdog(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => h.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: a client hung after the kill"),
    }
}

#[test]
fn killed_server_gives_disconnected_to_pending_and_later_requests() {
    with_watchdog(60, || {
        let dir = temp_dir("kill");
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let (mut server, addr) = spawn(&[
            "--listen",
            "127.0.0.1:0",
            "--capacity",
            "64MiB",
            "--token-file",
            token_file.to_str().unwrap(),
        ]);
        let client =
            Arc::new(Client::connect(addr, &ClientConfig::new(TOKEN).with_connections(2)).unwrap());
        client.create_ds(1, 0).unwrap();
        client.write(1, 1, &[7u8; 4096]).unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..6)
            .map(|_| {
                let c = Arc::clone(&client);
                let done = Arc::clone(&done);
                std::thread::spawn(move || loop {
                    match c.read(1, 1) {
                        Ok(v) => {
                            assert_eq!(v, Some(vec![7u8; 4096]));
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return e.kind(),
                    }
                })
            })
            .collect();
        while done.load(Ordering::Relaxed) < 200 {
            std::thread::sleep(Duration::from_millis(5));
        }
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        for w in workers {
            assert_eq!(w.join().unwrap(), ErrorKind::Disconnected);
        }
        for _ in 0..10 {
            assert_eq!(client.ping().unwrap_err().kind(), ErrorKind::Disconnected);
        }
        assert!(client.connections().iter().all(|c| c.is_dead()));
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn binary_reads_a_toml_config_and_flags_override_it() {
    let dir = temp_dir("config");
    std::fs::write(dir.join("cluster.token"), TOKEN).unwrap();
    std::fs::write(
        dir.join("server.toml"),
        "listen = \"127.0.0.1:0\"\ncapacity = \"1MiB\"\ntoken_file = \"cluster.token\"\n",
    )
    .unwrap();
    let config = dir.join("server.toml");
    let (_server, addr) = spawn(&["--config", config.to_str().unwrap(), "--capacity", "2MiB"]);
    let c = Client::connect(addr, &ClientConfig::new(TOKEN)).unwrap();
    assert_eq!(c.stats().unwrap().capacity_bytes, 2 << 20);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn binary_rejects_bad_arguments_with_a_message() {
    for args in [
        vec!["--capacity", "lots", "--token-file", "/nonexistent"],
        vec!["--capacity", "64MiB", "--token-file", "/nonexistent/token"],
        vec!["--listen", "127.0.0.1:0", "--capacity", "64MiB"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_farmem-server"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("farmem-server: "), "{args:?}: {err}");
    }
}
