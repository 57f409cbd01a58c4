//! Swap space for the kernel-paging baseline, turned off and undone when dropped.
//!
//! Order of preference: swap the machine already has (used as it is, never touched), then
//! `/dev/zram0` when it is unused (`disksize` 0 and not in `/proc/swaps`; compressed swap in
//! RAM, the fastest swap a machine without a fast SSD has, so the baseline is not handicapped),
//! then a swap file (`fallocate`, `mkswap`, `swapon`) next to the benchmark's output. Only swap
//! this process turned on is ever turned off: `/proc/swaps` is read before anything is touched
//! and a device or file already listed there is left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, ErrorKind, Result};

/// One line of `/proc/swaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapEntry {
    /// The device or file.
    pub filename: String,
    /// Size in KiB.
    pub size_kib: u64,
    /// Used KiB.
    pub used_kib: u64,
}

/// Parses `/proc/swaps` text (a header line, then `Filename Type Size Used Priority`).
pub fn parse_proc_swaps(text: &str) -> Vec<SwapEntry> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some(SwapEntry {
                filename: f[0].to_string(),
                size_kib: f[2].parse().ok()?,
                used_kib: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn active_swaps() -> Result<Vec<SwapEntry>> {
    let text =
        std::fs::read_to_string("/proc/swaps").map_err(|e| Error::io("reading /proc/swaps", e))?;
    Ok(parse_proc_swaps(&text))
}

/// What the swap in use is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapKind {
    /// Swap the machine already had, left as it was.
    Existing(String),
    /// `/dev/zram0`, sized, formatted and turned on by this run.
    Zram,
    /// A swap file made by this run.
    File(PathBuf),
}

/// Swap for the benchmark's lifetime; what this run turned on is turned off when dropped.
pub struct SwapSpace {
    kind: SwapKind,
    /// Whether `swapon` succeeded (so `Drop` must `swapoff`).
    on: bool,
}

const ZRAM: &str = "/dev/zram0";
const ZRAM_SYS: &str = "/sys/block/zram0";

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("running {program} {}", args.join(" ")), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Io,
            format!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

impl SwapSpace {
    /// Swap of at least `bytes`: existing swap with that much free, else zram, else a swap file
    /// in `file_dir`. The error says why none could be had.
    pub fn at_least(bytes: u64, file_dir: &Path) -> Result<SwapSpace> {
        let swaps = active_swaps()?;
        let free_kib: u64 = swaps
            .iter()
            .map(|s| s.size_kib - s.used_kib.min(s.size_kib))
            .sum();
        if free_kib * 1024 >= bytes {
            let names: Vec<&str> = swaps.iter().map(|s| s.filename.as_str()).collect();
            return Ok(SwapSpace {
                kind: SwapKind::Existing(names.join(", ")),
                on: false,
            });
        }
        let zram_err = match Self::zram(bytes, &swaps) {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        Self::file(bytes, file_dir).map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "no swap: zram: {}; swap file: {}",
                    zram_err.context(),
                    e.context()
                ),
            )
        })
    }

    fn zram(bytes: u64, swaps: &[SwapEntry]) -> Result<SwapSpace> {
        let disksize = Path::new(ZRAM_SYS).join("disksize");
        let size = std::fs::read_to_string(&disksize).map_err(|e| {
            Error::io(
                format!(
                    "reading {} (is the zram module loaded?)",
                    disksize.display()
                ),
                e,
            )
        })?;
        if size.trim() != "0" || swaps.iter().any(|s| s.filename == ZRAM) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{ZRAM} is already in use (disksize {}); left alone",
                    size.trim()
                ),
            ));
        }
        std::fs::write(&disksize, bytes.to_string())
            .map_err(|e| Error::io(format!("writing {bytes} to {}", disksize.display()), e))?;
        // From here `Drop` resets the device, also when mkswap or swapon fail.
        let mut swap = SwapSpace {
            kind: SwapKind::Zram,
            on: false,
        };
        run("mkswap", &[ZRAM])?;
        run("swapon", &[ZRAM])?;
        swap.on = true;
        Ok(swap)
    }

    fn file(bytes: u64, dir: &Path) -> Result<SwapSpace> {
        let path = dir.join(format!("farmem-taxi-{}.swap", std::process::id()));
        let p = path.to_string_lossy().into_owned();
        if path.exists() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{p} already exists; left alone"),
            ));
        }
        let mut swap = SwapSpace {
            kind: SwapKind::File(path.clone()),
            on: false,
        };
        run("fallocate", &["-l", &bytes.to_string(), &p])?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod 600 {p}"), e))?;
        run("mkswap", &[&p])?;
        run("swapon", &[&p])?;
        swap.on = true;
        Ok(swap)
    }

    /// A short description for the report.
    pub fn describe(&self) -> String {
        match &self.kind {
            SwapKind::Existing(names) => format!("the machine's swap ({names})"),
            SwapKind::Zram => format!("{ZRAM} (compressed, in RAM)"),
            SwapKind::File(p) => format!("swap file {}", p.display()),
        }
    }
}

impl Drop for SwapSpace {
    fn drop(&mut self) {
        let target = match &self.kind {
            SwapKind::Existing(_) => return,
            SwapKind::Zram => ZRAM.to_string(),
            SwapKind::File(p) => p.to_string_lossy().into_owned(),
        };
        if self.on {
            if let Err(e) = run("swapoff", &[&target]) {
                eprintln!("farmem-bench taxi: {e}; turn it off with `swapoff {target}`");
            }
        }
        match &self.kind {
            SwapKind::Zram => {
                let reset = Path::new(ZRAM_SYS).join("reset");
                if let Err(e) = std::fs::write(&reset, "1") {
                    eprintln!(
                        "farmem-bench taxi: resetting {ZRAM} failed ({e}); run `echo 1 > {}`",
                        reset.display()
                    );
                }
            }
            SwapKind::File(p) => {
                let _ = std::fs::remove_file(p);
            }
            SwapKind::Existing(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_swaps() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/zram0                              partition\t524284\t\t1024\t\t-2\n\
                    /swapfile file 1048572 0 -3\n";
        let s = parse_proc_swaps(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].filename, "/dev/zram0");
        assert_eq!((s[0].size_kib, s[0].used_kib), (524284, 1024));
        assert_eq!(s[1].filename, "/swapfile");
        assert!(parse_proc_swaps("Filename Type Size Used Priority\n").is_empty());
    }
}
