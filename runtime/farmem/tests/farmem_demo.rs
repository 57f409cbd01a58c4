//! `farmem-demo` as a child process, the way the benchmark runs it: the far run and the local
//! run agree, the `TAXI {json}` line carries every documented field, and bad flags or paths are
//! clear errors with a non-zero exit status.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const DEMO: &str = env!("CARGO_BIN_EXE_farmem-demo");

struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        TempFile(
            std::env::temp_dir().join(format!("farmem-demo-test-{}-{tag}.csv", std::process::id())),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn demo(args: &[&str]) -> Output {
    Command::new(DEMO)
        .args(args)
        .output()
        .expect("run farmem-demo")
}

fn taxi_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("TAXI "))
        .unwrap_or_else(|| panic!("no TAXI line at the end of\n{stdout}"));
    serde_json::from_str(line).expect("TAXI json")
}

#[test]
fn far_and_local_runs_agree_and_report_json() {
    let csv = TempFile::new("agree");
    farmem::dataframe::generate(&csv.0, 20_000, 3, None).expect("generate");
    let path = csv.0.to_str().expect("utf-8 temp path");
    let far = demo(&["--csv", path, "--local", "5", "--json"]);
    let stdout = String::from_utf8_lossy(&far.stdout);
    assert!(
        far.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&far.stderr)
    );
    assert!(stdout.contains("results identical: yes"), "{stdout}");
    for step in 1..=9 {
        assert!(
            stdout.contains(&format!("== {step} ")),
            "step {step} in\n{stdout}"
        );
    }
    let j = taxi_json(&far);
    assert_eq!(j["mode"], "far");
    assert_eq!(j["rows"], 20_000);
    assert_eq!(j["local_pct"], 5.0);
    assert_eq!(j["results_identical"], true);
    assert_eq!(j["steps_s"].as_array().map(Vec::len), Some(9));
    assert!(j["local_budget_bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(j["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(j["load_s"].as_f64().is_some() && j["total_steps_s"].as_f64().is_some());

    let far_only = demo(&["--csv", path, "--local", "5", "--far-only", "--json"]);
    assert!(far_only.status.success());
    assert!(!String::from_utf8_lossy(&far_only.stdout).contains("results identical"));
    let f = taxi_json(&far_only);
    assert_eq!(f["mode"], "far");
    assert_eq!(f["results_digest"], j["results_digest"]);
    assert!(f.get("results_identical").is_none());

    let local = demo(&["--csv", path, "--all-local", "--json"]);
    assert!(local.status.success());
    let l = taxi_json(&local);
    assert_eq!(l["mode"], "local");
    assert_eq!(l["local_pct"], 100.0);
    assert_eq!(l["results_digest"], j["results_digest"]);
    assert!(l.get("results_identical").is_none());
}

#[test]
fn bad_flags_and_paths_fail_with_a_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["--local", "0"], "--local 0"),
        (&["--local", "150"], "percentage"),
        (&["--csv", "/nonexistent/farmem/trips.csv"], "no such file"),
        (&["--server", "127.0.0.1:1"], "--token-file"),
        (&["--rows", "many"], "invalid value"),
    ];
    for (args, want) in cases {
        let out = demo(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // --token-file only makes sense with --server; --server excludes --all-local.
    assert!(!demo(&["--token-file", "/tmp/t"]).status.success());
    assert!(!demo(&["--server", "127.0.0.1:1", "--all-local"])
        .status
        .success());
}

#[test]
fn an_unreachable_server_is_an_error() {
    let token = TempFile::new("token");
    std::fs::write(&token.0, "secret\n").expect("token file");
    let csv = TempFile::new("unreachable");
    farmem::dataframe::generate(&csv.0, 100, 1, None).expect("generate");
    // Port 1 on loopback: nothing listens there.
    let out = demo(&[
        "--csv",
        csv.0.to_str().expect("utf-8"),
        "--server",
        "127.0.0.1:1",
        "--token-file",
        token.0.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_given_server_and_token_file_are_used() {
    let server = farmem::server::Server::start(farmem::server::ServerConfig::new(
        "127.0.0.1:0",
        1 << 30,
        "demo-secret",
    ))
    .expect("server");
    let token = TempFile::new("given-token");
    std::fs::write(&token.0, "demo-secret\n").expect("token file");
    let csv = TempFile::new("given");
    farmem::dataframe::generate(&csv.0, 5_000, 9, None).expect("generate");
    let addr = server.addr().to_string();
    let out = demo(&[
        "--csv",
        csv.0.to_str().expect("utf-8"),
        "--server",
        &addr,
        "--token-file",
        token.0.to_str().expect("utf-8"),
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("memory server at {addr}")),
        "{stdout}"
    );
    let j = taxi_json(&out);
    assert_eq!(j["results_identical"], true);
    assert_eq!(j["server_in_process"], false);
    assert!(server.stats().requests > 0);
    // A wrong token is refused by the server, and the demo says so.
    std::fs::write(&token.0, "wrong\n").expect("token file");
    let out = demo(&[
        "--csv",
        csv.0.to_str().expect("utf-8"),
        "--server",
        &addr,
        "--token-file",
        token.0.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    server.shutdown();
}
