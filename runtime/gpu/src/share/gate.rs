//! The launch gate: where the rate controller's budget meets the opportunistic tenant's kernels.
//!
//! Time is cut into control windows. In each window the opportunistic tenant may launch at most
//! [`RateController::launch_budget`] kernels, and at most `max_in_flight` at a time. At the end
//! of a window the caller reports how much work the production tenant finished in it; the gate
//! turns that into a throughput, feeds the controller, and opens the next window.
//!
//! Why an in-flight cap as well as a budget: a device engine serves kernels in submission order,
//! so a budget launched as one burst sits in front of the production tenant's next kernel and
//! delays it by the whole burst. Releasing kernels one (or a few) at a time, each when the
//! previous one completes, paces the budget over the window the way TCP's ACK clock paces a
//! congestion window (TGS §4.1 sends opportunistic kernels at a controlled rate for the same
//! reason).
//!
//! The gate holds no clock: windows are whatever the caller measures (virtual time on the
//! simulator, wall time on a GPU), which keeps it deterministic and testable.

use std::time::Duration;

use farmem_error::{Error, Result};

use super::rate::{RateAction, RateConfig, RateController};

/// Admits opportunistic kernel launches within the controller's budget (see the module notes).
#[derive(Clone, Debug)]
pub struct LaunchGate {
    controller: RateController,
    max_in_flight: u32,
    launched_in_window: u64,
    launched_total: u64,
    windows: u64,
}

impl LaunchGate {
    /// A gate whose budget follows a controller made from `config`, admitting at most
    /// `max_in_flight` (≥ 1) kernels at a time.
    pub fn new(config: RateConfig, max_in_flight: u32) -> Result<LaunchGate> {
        if max_in_flight == 0 {
            return Err(Error::invalid(
                "launch gate max_in_flight is 0; allow at least one kernel in flight",
            ));
        }
        Ok(LaunchGate {
            controller: RateController::new(config)?,
            max_in_flight,
            launched_in_window: 0,
            launched_total: 0,
            windows: 0,
        })
    }

    /// Whether one more kernel may launch now, given `in_flight` of the tenant's kernels not yet
    /// complete; if so, counts it against the window's budget.
    pub fn try_launch(&mut self, in_flight: u32) -> bool {
        if in_flight >= self.max_in_flight || self.remaining() == 0 {
            return false;
        }
        self.launched_in_window += 1;
        self.launched_total += 1;
        true
    }

    /// Launches still allowed in this window.
    pub fn remaining(&self) -> u64 {
        self.controller
            .launch_budget()
            .saturating_sub(self.launched_in_window)
    }

    /// Closes the window: the production tenant finished `production_work` units (iterations,
    /// requests, bytes) in `window`. Feeds the controller and opens the next window.
    pub fn end_window(&mut self, production_work: f64, window: Duration) -> Result<RateAction> {
        if window.is_zero() {
            return Err(Error::invalid(
                "control window of 0 ns; measure production work over a non-empty window",
            ));
        }
        let action = self
            .controller
            .observe(production_work / window.as_secs_f64())?;
        self.launched_in_window = 0;
        self.windows += 1;
        Ok(action)
    }

    /// The controller behind the budget.
    pub fn controller(&self) -> &RateController {
        &self.controller
    }

    /// Launches admitted in the current window.
    pub fn launched_in_window(&self) -> u64 {
        self.launched_in_window
    }

    /// Launches admitted since the gate was made.
    pub fn launched_total(&self) -> u64 {
        self.launched_total
    }

    /// Windows closed so far.
    pub fn windows(&self) -> u64 {
        self.windows
    }
}
