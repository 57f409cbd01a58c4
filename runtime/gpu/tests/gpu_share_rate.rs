//! The TGS rate controller's phases, driven by synthetic production-throughput signals.

use farmem_gpu::share::{RateAction, RateConfig, RateController, RatePhase};
use farmem_gpu::ErrorKind;

fn controller() -> RateController {
    RateController::new(RateConfig::default()).expect("default config is valid")
}

#[test]
fn slow_start_doubles_until_first_slowdown_then_aimd() {
    let mut c = controller();
    assert_eq!(c.phase(), RatePhase::SlowStart);
    assert_eq!(c.observe(100.0).unwrap(), RateAction::Calibrate);
    assert_eq!(c.rate(), 1.0);
    for expected in [2.0, 4.0, 8.0, 16.0, 32.0] {
        assert_eq!(c.observe(100.0).unwrap(), RateAction::Doubled);
        assert_eq!(c.rate(), expected);
        assert_eq!(c.phase(), RatePhase::SlowStart);
    }
    // Production drops 10%: back off by half and leave slow start.
    assert_eq!(c.observe(90.0).unwrap(), RateAction::Decreased);
    assert_eq!(c.rate(), 16.0);
    assert_eq!(c.phase(), RatePhase::AdditiveIncrease);
    assert_eq!(c.decreases(), 1);
    // Quiet windows now add one launch each, never double again.
    for expected in [17.0, 18.0, 19.0] {
        assert_eq!(c.observe(100.0).unwrap(), RateAction::Increased);
        assert_eq!(c.rate(), expected);
    }
    assert_eq!(c.launch_budget(), 19);
}

#[test]
fn drop_within_threshold_is_not_a_slowdown() {
    let mut c = controller();
    c.observe(100.0).unwrap();
    // 1.5% below the best, under the 2% threshold: keep growing.
    assert_eq!(c.observe(98.5).unwrap(), RateAction::Doubled);
    // 2.5% below: back off.
    assert_eq!(c.observe(97.5).unwrap(), RateAction::Decreased);
}

#[test]
fn backs_off_under_sustained_interference_and_recovers_after() {
    let mut c = controller();
    // Interference: production runs at 100 while the opportunistic rate is at most 8 launches
    // per window and at 80 above that.
    let production = |rate: f64| if rate <= 8.0 { 100.0 } else { 80.0 };
    let mut rates = Vec::new();
    for _ in 0..40 {
        let p = production(c.rate());
        c.observe(p).unwrap();
        rates.push(c.rate());
    }
    assert_eq!(
        &rates[..5],
        &[1.0, 2.0, 4.0, 8.0, 16.0],
        "slow start doubles"
    );
    assert_eq!(rates[5], 8.0, "the first slowdown halves");
    assert_eq!(c.phase(), RatePhase::AdditiveIncrease);
    assert!(c.decreases() >= 2, "it must back off repeatedly: {rates:?}");
    // Steady state oscillates around the knee: never far above it.
    let tail_max = rates[20..].iter().copied().fold(0.0, f64::max);
    assert!(
        tail_max <= 9.0,
        "rate stays near the knee of 8, got {rates:?}"
    );
    assert!(
        rates[20..].iter().all(|&r| r >= 4.0),
        "and does not collapse: {rates:?}"
    );
    // Interference stops: the rate climbs back additively past the old knee.
    let before = c.rate();
    for _ in 0..20 {
        c.observe(100.0).unwrap();
    }
    assert_eq!(c.rate(), before + 20.0);
    assert!(c.rate() > 8.0);
    assert_eq!(c.phase(), RatePhase::AdditiveIncrease);
}

#[test]
fn rate_respects_bounds() {
    let cfg = RateConfig {
        max_rate: 10.0,
        min_rate: 2.0,
        ..RateConfig::default()
    };
    let mut c = RateController::new(cfg).unwrap();
    assert_eq!(c.rate(), 2.0, "initial rate is clamped up to min_rate");
    c.observe(50.0).unwrap();
    for _ in 0..10 {
        c.observe(50.0).unwrap();
    }
    assert_eq!(c.rate(), 10.0);
    assert_eq!(
        c.phase(),
        RatePhase::AdditiveIncrease,
        "reaching the ceiling ends slow start"
    );
    for _ in 0..10 {
        c.observe(1.0).unwrap();
    }
    assert_eq!(c.rate(), 2.0);
}

#[test]
fn reference_is_a_sliding_best() {
    let cfg = RateConfig {
        reference_window: 3,
        ..RateConfig::default()
    };
    let mut c = RateController::new(cfg).unwrap();
    c.observe(100.0).unwrap();
    assert_eq!(c.reference_throughput(), Some(100.0));
    // Production's own demand halves for good: after the window the reference follows it.
    for _ in 0..3 {
        c.observe(50.0).unwrap();
    }
    assert_eq!(c.reference_throughput(), Some(50.0));
    let rate = c.rate();
    assert_ne!(c.observe(50.0).unwrap(), RateAction::Decreased);
    assert!(c.rate() > rate);
}

#[test]
fn same_inputs_same_rates() {
    let signal: Vec<f64> = (0..200).map(|i| 100.0 - ((i * 37) % 11) as f64).collect();
    let run = || {
        let mut c = controller();
        signal
            .iter()
            .map(|&s| {
                c.observe(s).unwrap();
                c.rate().to_bits()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn bad_inputs_are_errors() {
    let mut c = controller();
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        assert_eq!(
            c.observe(bad).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    for cfg in [
        RateConfig {
            decrease_factor: 1.0,
            ..RateConfig::default()
        },
        RateConfig {
            min_rate: 5.0,
            max_rate: 4.0,
            ..RateConfig::default()
        },
        RateConfig {
            reference_window: 0,
            ..RateConfig::default()
        },
        RateConfig {
            slowdown_threshold: 1.0,
            ..RateConfig::default()
        },
        RateConfig {
            additive_step: 0.0,
            ..RateConfig::default()
        },
    ] {
        assert_eq!(
            RateController::new(cfg).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
