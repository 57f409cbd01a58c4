//! A cgroup-v1 memory cgroup that holds one child under a memory limit, removed when dropped.
//!
//! The kernel-paging baseline: the all-local child runs with `memory.limit_in_bytes` set to a
//! fraction of its measured working set and swap on, so the kernel pages it at 4 KiB
//! granularity (the transparent-paging design AIFM §2 argues against). `memory.memsw.*` is left
//! alone so the limit caps resident memory only and the rest goes to swap.
//!
//! The child joins the cgroup before it runs anything: it is started as
//! `sh -c 'echo $$ > CGROUP/cgroup.procs && exec "$@"' ...`, so its first allocation is
//! already charged (a `pre_exec` hook could not safely allocate the path after `fork` in a
//! multi-threaded parent). `exec` keeps the pid, so `wait4` still measures the child itself.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Error, ErrorKind, Result};

/// Where the cgroup-v1 memory controller is mounted on these machines.
pub const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

/// Why a memory cgroup cannot be made here, or `None` when it can.
pub fn unavailable_reason(root: &Path) -> Option<String> {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (creating a memory cgroup needs root)".into());
    }
    if !root.join("memory.limit_in_bytes").exists() {
        return Some(format!(
            "no cgroup-v1 memory controller at {} (memory.limit_in_bytes missing)",
            root.display()
        ));
    }
    None
}

/// One memory cgroup under [`MEMORY_ROOT`]; `rmdir`ed when dropped.
pub struct MemoryCgroup {
    path: PathBuf,
}

impl MemoryCgroup {
    /// Creates `root/name` with `memory.limit_in_bytes = limit_bytes`.
    pub fn create(root: &Path, name: &str, limit_bytes: u64) -> Result<MemoryCgroup> {
        let path = root.join(name);
        std::fs::create_dir(&path)
            .map_err(|e| Error::io(format!("creating the cgroup {}", path.display()), e))?;
        // From here on `Drop` removes it, also when setting the limit fails.
        let cgroup = MemoryCgroup { path };
        cgroup.write("memory.limit_in_bytes", &limit_bytes.to_string())?;
        Ok(cgroup)
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let p = self.path.join(file);
        std::fs::write(&p, value)
            .map_err(|e| Error::io(format!("writing {value:?} to {}", p.display()), e))
    }

    fn read_u64(&self, file: &str) -> Result<u64> {
        let p = self.path.join(file);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
        text.trim().parse().map_err(|_| {
            Error::new(
                ErrorKind::Parse,
                format!("{} holds {:?}, not a number", p.display(), text.trim()),
            )
        })
    }

    /// The limit the kernel actually set (it rounds down to whole pages).
    pub fn limit_bytes(&self) -> Result<u64> {
        self.read_u64("memory.limit_in_bytes")
    }

    /// The cgroup's peak charge so far (resident pages and page cache), bytes.
    pub fn max_usage_bytes(&self) -> Result<u64> {
        self.read_u64("memory.max_usage_in_bytes")
    }

    /// A command that runs `program args...` inside this cgroup from its first instruction.
    pub fn command<I, S>(&self, program: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(self.path.join("cgroup.procs"))
            .arg(program)
            .args(args);
        cmd
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The child was reaped before this runs, but the kernel may take a moment to let go of
        // an exiting task; `rmdir` fails with EBUSY until then.
        for _ in 0..100 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!(
            "farmem-bench taxi: could not remove the cgroup {}; remove it with `rmdir {0}`",
            self.path.display()
        );
    }
}

/// The memory limit for `pct` percent of `working_set_bytes`, in whole 4 KiB pages, at least
/// 4 MiB (below that the child's own binary and stacks do not fit and it is killed, which
/// measures nothing).
pub fn limit_for(working_set_bytes: u64, pct: f64) -> u64 {
    let raw = (working_set_bytes as f64 * pct / 100.0) as u64;
    (raw / 4096 * 4096).max(4 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_whole_pages_of_the_fraction() {
        assert_eq!(limit_for(1 << 30, 25.0), 1 << 28);
        assert_eq!(limit_for(1_000_000_000, 10.0), 100_000_000 / 4096 * 4096);
        assert_eq!(limit_for(10 << 20, 5.0), 4 << 20, "floor of 4 MiB");
    }

    #[test]
    fn a_missing_controller_is_a_reason_not_an_error() {
        let dir = std::env::temp_dir().join(format!("farmem-taxi-nocg-{}", std::process::id()));
        let reason = unavailable_reason(&dir).expect("no controller in a temp dir");
        assert!(
            reason.contains("memory") || reason.contains("root"),
            "{reason}"
        );
    }

    #[test]
    fn a_fake_cgroup_dir_is_written_wrapped_and_removed() {
        // A plain directory stands in for the controller: the files are ordinary files there.
        let root = std::env::temp_dir().join(format!("farmem-taxi-cg-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("temp dir");
        let cg = MemoryCgroup::create(&root, "child", 8 << 20).expect("creates");
        assert_eq!(cg.limit_bytes().expect("reads"), 8 << 20);
        let cmd = cg.command(Path::new("/bin/true"), ["--x"]);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[2], root.join("child/cgroup.procs").to_string_lossy());
        assert_eq!(&args[3..], ["/bin/true", "--x"]);
        // A real cgroup directory is empty to `rmdir`; clear the stand-in files first.
        std::fs::remove_file(root.join("child/memory.limit_in_bytes")).expect("remove");
        drop(cg);
        assert!(!root.join("child").exists(), "dropped cgroup is removed");
        let _ = std::fs::remove_dir(&root);
    }
}
