//! The `farmem-bench` harness: scenarios that run farmem and its baselines side by side in one
//! process run and report ratios.
//!
//! Shared machines are noisy, so absolute times mean little; ratios measured in the same run, and
//! medians over repeated samples, hold. Every scenario therefore
//!
//! 1. measures farmem and each baseline in the same run, several samples each,
//! 2. reports medians ([`median`]) and ratios between them,
//! 3. prints a readable table and, last, one line `RESULT {json}`: a flat JSON object with
//!    `"scenario"` and every figure named with its unit or meaning (`green_switch_ns`,
//!    `switch_speedup_vs_os`, `target_met_switch_ns`).
//!
//! A scenario is a [`Scenario`] registered in [`scenarios::ALL`]; it parses its own arguments.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub mod far_server;
pub mod raw_tcp;
pub mod scenarios;
pub mod threads;

pub use farmem_error::{Error, ErrorKind, Result};

/// One benchmark scenario of `farmem-bench`.
pub struct Scenario {
    /// The name on the command line (`farmem-bench sched`).
    pub name: &'static str,
    /// One line saying what it compares.
    pub about: &'static str,
    /// Runs it; `args` are the arguments after the scenario name, `args[0]` being the name.
    pub run: fn(args: &[String]) -> Result<Report>,
}

/// The figures of one scenario run: a table for people and a flat JSON object for machines.
#[derive(Debug)]
pub struct Report {
    scenario: String,
    rows: Vec<Vec<String>>,
    header: Vec<String>,
    figures: serde_json::Map<String, serde_json::Value>,
    notes: Vec<String>,
}

impl Report {
    /// An empty report for `scenario`, whose table has the given column names.
    pub fn new(scenario: &str, header: &[&str]) -> Report {
        let mut figures = serde_json::Map::new();
        figures.insert("scenario".into(), scenario.into());
        Report {
            scenario: scenario.to_string(),
            rows: Vec::new(),
            header: header.iter().map(|s| s.to_string()).collect(),
            figures,
            notes: Vec::new(),
        }
    }

    /// The scenario's name.
    pub fn scenario(&self) -> &str {
        &self.scenario
    }

    /// Adds a table row (cells already formatted).
    pub fn row<S: ToString>(&mut self, cells: &[S]) {
        self.rows
            .push(cells.iter().map(|c| c.to_string()).collect());
    }

    /// Records one named figure in the JSON result. Names carry their unit (`_ns`, `_ops_per_s`).
    pub fn figure(&mut self, name: &str, value: impl Into<serde_json::Value>) {
        self.figures.insert(name.to_string(), value.into());
    }

    /// Records a floating-point figure rounded to 3 decimals (non-finite values become null).
    pub fn figure_f64(&mut self, name: &str, value: f64) {
        let v = if value.is_finite() {
            serde_json::Value::from((value * 1000.0).round() / 1000.0)
        } else {
            serde_json::Value::Null
        };
        self.figures.insert(name.to_string(), v);
    }

    /// Records whether a target was met, as `target_met_<name>`, and notes it in the table.
    pub fn target(&mut self, name: &str, description: &str, met: bool) {
        self.figure(&format!("target_met_{name}"), met);
        self.notes.push(format!(
            "target {description}: {}",
            if met { "met" } else { "MISSED" }
        ));
    }

    /// Adds a free-text line printed under the table (a skipped series and why, a caveat).
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// A recorded figure, if present.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.figures.get(name)
    }

    /// The readable table, the notes, and last the `RESULT {json}` line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let ncols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; ncols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |out: &mut String, row: &[String]| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
        };
        let _ = writeln!(out, "farmem-bench {}", self.scenario);
        if !self.header.is_empty() {
            line(&mut out, &self.header);
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            line(&mut out, &rule);
        }
        for row in &self.rows {
            line(&mut out, row);
        }
        for n in &self.notes {
            let _ = writeln!(out, "  {n}");
        }
        let json = serde_json::Value::Object(self.figures.clone());
        let _ = writeln!(out, "RESULT {json}");
        out
    }
}

/// The median of `samples` (the mean of the middle two for an even count); NaN when empty.
pub fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `q`-quantile (0.0..=1.0) of `samples` by nearest rank; NaN when empty.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Runs `f` `samples` times and returns each run's duration divided by `ops_per_sample`, in ns.
pub fn sample_ns_per_op(samples: usize, ops_per_sample: u64, mut f: impl FnMut()) -> Vec<f64> {
    (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            elapsed_ns(t.elapsed()) / ops_per_sample.max(1) as f64
        })
        .collect()
}

/// A duration in nanoseconds as `f64`.
pub fn elapsed_ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// `a / b`, or NaN when `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantile() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&v, 1.0), 1000.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
    }

    #[test]
    fn report_ends_with_one_flat_result_line() {
        let mut r = Report::new("demo", &["what", "ns"]);
        r.row(&["green", "12.5"]);
        r.figure_f64("green_switch_ns", 12.4567);
        r.target("switch_ns", "green switch <= 100 ns", true);
        let text = r.render();
        let last = text.lines().last().unwrap_or_default();
        let json: serde_json::Value =
            serde_json::from_str(last.strip_prefix("RESULT ").expect("RESULT prefix"))
                .expect("valid json");
        assert_eq!(json["scenario"], "demo");
        assert_eq!(json["green_switch_ns"], 12.457);
        assert_eq!(json["target_met_switch_ns"], true);
        assert!(text.contains("green  12.5"));
    }
}
