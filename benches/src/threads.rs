//! CPU time by thread, of this process and of its direct children (the memory servers), from
//! `/proc/PID/task/TID/schedstat`: where a scenario's CPU goes (the mutator, the prefetcher's
//! threads, a hash map's sender, the server), so a ratio can be explained and not only quoted.
//! Everything here returns nothing where `/proc` is not readable, and the figures are left out.

use std::collections::BTreeMap;

/// CPU ns and times scheduled in, summed by thread name over measured intervals.
#[derive(Debug, Default)]
pub struct ThreadCpu {
    by_name: BTreeMap<String, (i64, i64)>,
}

impl ThreadCpu {
    /// Adds what every thread spent since `before` (a [`thread_cpu_ns`] snapshot): a thread
    /// that ended meanwhile drops out, which can only under-count.
    pub fn add_since(&mut self, before: Vec<(String, u64, u64)>) {
        for (name, ns, runs) in thread_cpu_ns() {
            let e = self.by_name.entry(name).or_default();
            e.0 += ns as i64;
            e.1 += runs as i64;
        }
        for (name, ns, runs) in before {
            let e = self.by_name.entry(name).or_default();
            e.0 -= ns as i64;
            e.1 -= runs as i64;
        }
    }

    /// `(thread name, CPU ns, times scheduled in)`, by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, i64, i64)> + '_ {
        self.by_name
            .iter()
            .map(|(name, &(ns, runs))| (name.as_str(), ns, runs))
    }
}

/// CPU time in ns spent so far by every thread of this process and of its direct children (the
/// servers), from `/proc/PID/task/TID/schedstat`; `None` where that is not readable.
pub fn tree_cpu_ns() -> Option<u64> {
    let me = std::process::id();
    let mut total = process_cpu_ns(me)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && parent_pid(pid) == Some(me) {
            total += process_cpu_ns(pid).unwrap_or(0);
        }
    }
    Some(total)
}

/// CPU ns so far and times scheduled in (the first and third fields of `schedstat`) of every live
/// thread of this process and its direct children, by thread name (`/proc/PID/task/TID/comm`; numbered names such as `farmem-server-conn-7` merge under
/// their stem); empty where `/proc` is not readable.
pub fn thread_cpu_ns() -> Vec<(String, u64, u64)> {
    let me = std::process::id();
    let mut pids = vec![me];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        pids.extend(
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != me && parent_pid(pid) == Some(me)),
        );
    }
    let mut out = Vec::new();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stem = comm
                .trim()
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
            let name = if pid == me {
                stem.to_string()
            } else {
                format!("child:{stem}")
            };
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
            if let (Some(Some(ns)), Some(Some(runs))) = (fields.next(), fields.nth(1)) {
                out.push((name, ns, runs));
            }
        }
    }
    out
}

/// The parent of `pid` (field 4 of `/proc/PID/stat`, after the parenthesised command name).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// CPU ns of every live thread of `pid` (first field of each thread's schedstat).
fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let path = task.path().join("schedstat");
        if let Some(ns) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn cpu_time_of_the_process_tree_grows_with_work() {
        let Some(before) = tree_cpu_ns() else {
            return; // no /proc here: the figures are left out, nothing to check
        };
        let snapshot = thread_cpu_ns();
        let t = Instant::now();
        let mut x = 1u64;
        while t.elapsed().as_millis() < 30 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = tree_cpu_ns().unwrap_or(0);
        assert!(after > before, "{before} -> {after} after busy work ({x})");
        assert_eq!(
            parent_pid(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        let mut by = ThreadCpu::default();
        by.add_since(snapshot);
        let busiest = by.entries().map(|(_, ns, _)| ns).max().unwrap_or(0);
        assert!(
            busiest >= 10_000_000,
            "a thread ran 30 ms busy, the most counted {busiest} ns"
        );
    }
}
