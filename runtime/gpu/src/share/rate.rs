//! Adaptive rate control of the opportunistic tenant's kernel launches.
//!
//! Adaptive rate control (TGS §4.1): the opportunistic tenant's kernel launch rate is governed
//! like a TCP congestion window, and the "loss" signal is a drop in the *production* tenant's
//! measured throughput. The controller never looks at the device itself, only at one number per
//! control window, so the same controller drives the simulated device and a real GPU.
//!
//! ```text
//!            no slowdown: rate *= 2                 no slowdown: rate += additive_step
//!           ┌──────────┐                           ┌──────────┐
//!           ▼          │   first slowdown, or      ▼          │
//!     ┌────────────┐───┘   rate >= ceiling   ┌─────────────────┐───┘
//!     │ SlowStart  │ ─────────────────────►  │ AdditiveIncrease│
//!     └────────────┘                         └─────────────────┘
//!                                              │ slowdown: rate *= decrease_factor
//!                                              └──► (stays AdditiveIncrease)
//! ```
//!
//! *Slowdown* means: the production throughput of this window is below
//! `(1 - slowdown_threshold) ×` the best production throughput seen in the last
//! `reference_window` windows (the window before this one included, this one excluded). A
//! sliding best rather than an all-time best lets the reference follow a production job whose
//! own demand changes; a window long enough to span many decrease/increase cycles keeps the
//! reference from drifting down to the interfered level.
//!
//! The state is the rate (launches per control window, a real number so that additive steps
//! smaller than one launch accumulate), the phase, and the reference history. Everything is
//! plain arithmetic on the inputs: the same sequence of observations gives the same sequence of
//! rates, bit for bit.

use std::collections::VecDeque;

use farmem_error::{Error, Result};

/// Constants of the [`RateController`]. [`RateConfig::default`] documents each default.
#[derive(Clone, Debug, PartialEq)]
pub struct RateConfig {
    /// Launches per window granted before the first observation. Default 1: start cautious,
    /// slow start finds the headroom within log2(max_rate) windows.
    pub initial_rate: f64,
    /// The rate never goes below this. Default 1: the opportunistic tenant keeps making some
    /// progress and keeps probing, so the controller notices when interference stops.
    pub min_rate: f64,
    /// The rate never goes above this. Default 4096 launches per window: far more than a
    /// window can hold on any device this crate models, so the cap only bounds arithmetic.
    pub max_rate: f64,
    /// Launches per window added after each window without slowdown in additive increase.
    /// Default 1, as TCP's one segment per round trip.
    pub additive_step: f64,
    /// Factor applied to the rate on a slowdown. Default 0.5, as TCP Reno.
    pub decrease_factor: f64,
    /// Tolerated relative drop of production throughput below its recent best before the
    /// controller backs off. Default 0.02: backing off at a 2% drop keeps the production
    /// slowdown within the 5% TGS aims for, with room for one window of lag.
    pub slowdown_threshold: f64,
    /// How many past windows the reference ("recent best") throughput is taken over.
    /// Default 64 windows.
    pub reference_window: usize,
}

impl Default for RateConfig {
    fn default() -> RateConfig {
        RateConfig {
            initial_rate: 1.0,
            min_rate: 1.0,
            max_rate: 4096.0,
            additive_step: 1.0,
            decrease_factor: 0.5,
            slowdown_threshold: 0.02,
            reference_window: 64,
        }
    }
}

impl RateConfig {
    /// Checks that the constants make a controller that can move: positive finite bounds in
    /// order, a decrease factor in (0, 1), a threshold in [0, 1), a non-empty window.
    pub fn validate(&self) -> Result<()> {
        let finite_pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "rate controller {name} is {v}; it must be a positive finite number"
                )))
            }
        };
        finite_pos("min_rate", self.min_rate)?;
        finite_pos("max_rate", self.max_rate)?;
        finite_pos("initial_rate", self.initial_rate)?;
        finite_pos("additive_step", self.additive_step)?;
        if self.min_rate > self.max_rate {
            return Err(Error::invalid(format!(
                "rate controller min_rate {} exceeds max_rate {}; make min_rate <= max_rate",
                self.min_rate, self.max_rate
            )));
        }
        if !(self.decrease_factor > 0.0 && self.decrease_factor < 1.0) {
            return Err(Error::invalid(format!(
                "rate controller decrease_factor is {}; it must lie strictly between 0 and 1",
                self.decrease_factor
            )));
        }
        if !(self.slowdown_threshold >= 0.0 && self.slowdown_threshold < 1.0) {
            return Err(Error::invalid(format!(
                "rate controller slowdown_threshold is {}; it must lie in [0, 1)",
                self.slowdown_threshold
            )));
        }
        if self.reference_window == 0 {
            return Err(Error::invalid(
                "rate controller reference_window is 0; it must hold at least one window",
            ));
        }
        Ok(())
    }
}

/// Where the controller is in its life (see the module picture).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RatePhase {
    /// Doubling the rate every quiet window, until the first slowdown or the ceiling.
    SlowStart,
    /// Additive increase, multiplicative decrease.
    AdditiveIncrease,
}

/// What one observation made the controller do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateAction {
    /// The first observation only sets the reference; the rate is unchanged.
    Calibrate,
    /// No slowdown in slow start: the rate doubled.
    Doubled,
    /// No slowdown in additive increase: the rate grew by one step.
    Increased,
    /// Production slowed down: the rate was cut by the decrease factor.
    Decreased,
}

/// Throttles the opportunistic tenant from the production tenant's throughput (TGS §4.1).
#[derive(Clone, Debug)]
pub struct RateController {
    config: RateConfig,
    rate: f64,
    phase: RatePhase,
    /// Production throughput of the last `reference_window` windows, oldest first.
    history: VecDeque<f64>,
    decreases: u64,
}

impl RateController {
    /// A controller in slow start at `config.initial_rate` (clamped into the bounds).
    pub fn new(config: RateConfig) -> Result<RateController> {
        config.validate()?;
        let rate = config.initial_rate.clamp(config.min_rate, config.max_rate);
        Ok(RateController {
            history: VecDeque::with_capacity(config.reference_window),
            config,
            rate,
            phase: RatePhase::SlowStart,
            decreases: 0,
        })
    }

    /// Feeds the production tenant's throughput over the last control window (any unit, the
    /// same every time: iterations per second, bytes per window) and returns what the controller
    /// did. Read the new rate with [`rate`](Self::rate) or [`launch_budget`](Self::launch_budget).
    pub fn observe(&mut self, production_throughput: f64) -> Result<RateAction> {
        if !(production_throughput.is_finite() && production_throughput >= 0.0) {
            return Err(Error::invalid(format!(
                "production throughput {production_throughput} is not a finite non-negative \
                 number; measure it as work done over a non-empty window"
            )));
        }
        let action = match self.reference_throughput() {
            None => RateAction::Calibrate,
            Some(best) if production_throughput < best * (1.0 - self.config.slowdown_threshold) => {
                self.rate = (self.rate * self.config.decrease_factor).max(self.config.min_rate);
                self.phase = RatePhase::AdditiveIncrease;
                self.decreases += 1;
                RateAction::Decreased
            }
            Some(_) => match self.phase {
                RatePhase::SlowStart => {
                    self.rate = (self.rate * 2.0).min(self.config.max_rate);
                    if self.rate >= self.config.max_rate {
                        self.phase = RatePhase::AdditiveIncrease;
                    }
                    RateAction::Doubled
                }
                RatePhase::AdditiveIncrease => {
                    self.rate = (self.rate + self.config.additive_step).min(self.config.max_rate);
                    RateAction::Increased
                }
            },
        };
        if self.history.len() == self.config.reference_window {
            self.history.pop_front();
        }
        self.history.push_back(production_throughput);
        Ok(action)
    }

    /// The allowed opportunistic launches per control window, as a real number.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The allowed opportunistic launches in the next control window (the rate rounded down,
    /// at least one whenever `min_rate >= 1`).
    pub fn launch_budget(&self) -> u64 {
        self.rate.floor() as u64
    }

    /// The current phase.
    pub fn phase(&self) -> RatePhase {
        self.phase
    }

    /// The best production throughput over the reference window; `None` before the first
    /// observation.
    pub fn reference_throughput(&self) -> Option<f64> {
        self.history.iter().copied().reduce(f64::max)
    }

    /// How many times the controller has backed off.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// The constants it runs with.
    pub fn config(&self) -> &RateConfig {
        &self.config
    }
}
