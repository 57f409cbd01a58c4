//! A C program (`tests/c/smoke.c`) compiled with the system C compiler against
//! `include/farmem.h` and linked with the `libfarmem.so` that cargo built for this test run:
//! the header compiles warning-free as C11 (and as C++17), the library links, and the
//! program's taxi report, printed by `fm_taxi_run_all`, equals `taxi::run_all` on an all-local
//! frame of the same CSV (times aside).

use std::path::{Path, PathBuf};
use std::process::Command;

use fm::dataframe::{load_csv, taxi, LoadOptions, LocalStorage, Schema};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding `libfarmem.so`: this test binary lives in its `deps/`.
///
/// `cargo test` builds no `cdylib`/`staticlib` (only linkable libraries are built for
/// integration tests), so a fresh target dir has neither: build them once with the cargo that
/// runs this test (cargo sets `CARGO`), same target dir and profile. Tests run after cargo has
/// released the build lock, so this cannot deadlock; two tests racing here serialise on it.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf();
    let missing = ["libfarmem.so", "libfarmem.a"]
        .iter()
        .any(|lib| !dir.join(lib).is_file());
    if missing {
        build_libraries(&dir);
    }
    for lib in ["libfarmem.so", "libfarmem.a"] {
        assert!(
            dir.join(lib).is_file(),
            "{} has no {lib}; cargo builds it with this test",
            dir.display()
        );
    }
    dir
}

/// `cargo build -p farmem-ffi --lib` into `dir` (`<target>/<profile>`).
fn build_libraries(dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let target = dir.parent().expect("<target>/<profile> has a parent");
    let profile = dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("the profile dir has a UTF-8 name");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "farmem-ffi", "--lib"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(manifest_dir());
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    run(&mut cmd);
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_string())
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("running {cmd:?}: {e} (a C compiler is needed: apt-get install gcc g++)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `taxi::run_all` output without the per-step times.
fn without_times(report: &str) -> String {
    report
        .lines()
        .map(|l| match (l.starts_with("== "), l.rfind(" (")) {
            (true, Some(i)) => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fresh work directory for `name`.
fn work_dir(name: &str) -> PathBuf {
    let work = std::env::temp_dir().join(format!("farmem-ffi-c-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    work
}

/// Compiles `tests/c/smoke.c` as strict C11 into `work`, linked by `link` args.
fn compile_smoke(work: &Path, link: &[String]) -> PathBuf {
    let exe = work.join("smoke");
    run(Command::new(cc())
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(manifest_dir().join("../include"))
        .arg(manifest_dir().join("tests/c/smoke.c"))
        .args(link)
        .arg("-o")
        .arg(&exe));
    exe
}

#[test]
fn c_program_links_runs_and_prints_the_local_taxi_report() {
    let lib = lib_dir();
    let work = work_dir("shared");
    let exe = compile_smoke(
        &work,
        &[
            format!("-L{}", lib.display()),
            format!("-Wl,-rpath,{}", lib.display()),
            "-lfarmem".into(),
        ],
    );
    let csv = work.join("taxi.csv");
    let out = run(Command::new(&exe).arg(&csv));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.ends_with("smoke: ok\n"), "{stdout}");
    let report = stdout
        .split_once("-- report --\n")
        .and_then(|(_, r)| r.split_once("-- end --\n"))
        .map(|(r, _)| r)
        .unwrap_or_else(|| panic!("no report in {stdout}"));

    let opts = LoadOptions {
        threads: 1,
        skip_bad_rows: false,
        progress: None,
    };
    let (mut local, _) = load_csv(&csv, &Schema::taxi(), &LocalStorage, opts).unwrap();
    let mut want = Vec::new();
    taxi::run_all(&mut local, &mut want).unwrap();
    assert_eq!(
        without_times(report),
        without_times(&String::from_utf8_lossy(&want))
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn c_program_links_the_static_library_with_the_documented_flags() {
    let work = work_dir("static");
    // The system libraries farmem.h's "Link:" line names (rustc --print native-static-libs).
    let mut link = vec![lib_dir().join("libfarmem.a").display().to_string()];
    link.extend(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"].map(String::from));
    let exe = compile_smoke(&work, &link);
    let out = run(Command::new(&exe).arg(work.join("taxi.csv")));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("smoke: ok\n"));
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn c_program_headers_compile_as_cplusplus() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    run(Command::new(cxx)
        .args([
            "-std=c++17",
            "-fsyntax-only",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-x",
            "c++",
        ])
        .arg(manifest_dir().join("../include/farmem.h")));
}
