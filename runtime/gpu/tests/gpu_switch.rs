//! PipeSwitch on the simulated GPU: the switch runs every layer after its weights arrived, reuses
//! the one pool without allocating, and takes exactly the time the planner predicts; the optimal
//! plan beats stop-and-start and per-layer pipelining on the model's (virtual) clock.

use std::sync::Arc;
use std::time::Duration;

use farmem_gpu::device::{Device, LinkModel, SimConfig, SimDevice, SimEngine};
use farmem_gpu::switch::{
    CostModel, GroupPlan, HostModel, LayerProfile, ModelProfile, SwitchConfig, Switcher,
};
use farmem_gpu::ErrorKind;

fn sim(trace: bool) -> Arc<SimDevice> {
    Arc::new(
        SimDevice::new(SimConfig {
            capacity_bytes: 64 << 20,
            trace,
            ..SimConfig::default()
        })
        .unwrap(),
    )
}

/// A small model with uneven layers: a heavy first layer, cheap middle, big last layer.
fn small_model(name: &str) -> ModelProfile {
    let sizes = [
        (300_000, 20),
        (40_000, 80),
        (40_000, 80),
        (120_001, 30),
        (8_000, 150),
        (8_000, 150),
        (500_000, 5),
    ];
    ModelProfile {
        name: name.into(),
        layers: sizes
            .iter()
            .enumerate()
            .map(|(i, &(bytes, us))| LayerProfile {
                name: format!("{name}.{i}"),
                bytes,
                compute: Duration::from_micros(us),
            })
            .collect(),
    }
}

fn plans(cost: &CostModel, profile: &ModelProfile) -> [GroupPlan; 3] {
    let costs = cost.plan_costs(profile);
    [
        GroupPlan::optimal(&costs).unwrap(),
        GroupPlan::sequential(&costs).unwrap(),
        GroupPlan::per_layer(&costs).unwrap(),
    ]
}

#[test]
fn switches_run_every_layer_on_its_own_weights_and_match_the_prediction() {
    let sim = sim(false);
    let dev: Arc<dyn Device> = sim.clone();
    let cost = CostModel::for_sim(sim.config());
    let a = HostModel::new(dev.clone(), small_model("a"), 1).unwrap();
    let b = HostModel::new(
        dev.clone(),
        ModelProfile::uniform("b", 5, 100_000, Duration::from_micros(40)),
        2,
    )
    .unwrap();
    let pool_bytes = a.pool_bytes().max(b.pool_bytes());
    let mut switcher = Switcher::new(
        dev.clone(),
        SwitchConfig {
            pool_bytes,
            ready_events: 2,
        },
    )
    .unwrap();
    for round in 0..3 {
        for model in [&a, &b] {
            for plan in plans(&cost, model.profile()) {
                let out = switcher.switch_to(model, &plan).unwrap();
                assert_eq!(out.groups, plan.groups.len());
                assert_eq!(
                    out.startup.as_nanos() as u64,
                    plan.predicted_ps / 1000,
                    "round {round}, model {}, plan {:?}",
                    model.profile().name,
                    plan.groups
                );
            }
        }
    }
    switcher.verify_checksums().unwrap();
}

#[test]
fn a_switch_allocates_nothing_and_creates_no_stream_or_event() {
    let sim = sim(false);
    let dev: Arc<dyn Device> = sim.clone();
    let cost = CostModel::for_sim(sim.config());
    let a = HostModel::new(dev.clone(), small_model("a"), 3).unwrap();
    let b = HostModel::new(dev.clone(), small_model("b"), 4).unwrap();
    let mut switcher = Switcher::new(
        dev.clone(),
        SwitchConfig {
            pool_bytes: a.pool_bytes(),
            ready_events: 4,
        },
    )
    .unwrap();
    let before = (
        sim.allocation_count().unwrap(),
        sim.pinned_allocation_count().unwrap(),
        sim.stream_and_event_count().unwrap(),
        dev.allocated_bytes(),
    );
    for model in [&a, &b, &a, &b] {
        let plan = &plans(&cost, model.profile())[0];
        switcher.switch_to(model, plan).unwrap();
    }
    let after = (
        sim.allocation_count().unwrap(),
        sim.pinned_allocation_count().unwrap(),
        sim.stream_and_event_count().unwrap(),
        dev.allocated_bytes(),
    );
    assert_eq!(before, after);
    switcher.verify_checksums().unwrap();
    drop(switcher);
    assert_eq!(
        dev.allocated_bytes(),
        0,
        "dropping the switcher frees the pool"
    );
}

#[test]
fn every_layer_starts_after_its_group_arrived_and_groups_overlap_compute() {
    let sim = sim(true);
    let dev: Arc<dyn Device> = sim.clone();
    let cost = CostModel::for_sim(sim.config());
    let model = HostModel::new(dev.clone(), small_model("m"), 5).unwrap();
    let mut switcher = Switcher::new(
        dev.clone(),
        SwitchConfig {
            pool_bytes: model.pool_bytes(),
            ready_events: 1,
        },
    )
    .unwrap();
    let plan = GroupPlan::per_layer(&cost.plan_costs(model.profile())).unwrap();
    sim.clear_trace().unwrap();
    switcher.switch_to(&model, &plan).unwrap();
    let trace = sim.trace().unwrap();
    let copies: Vec<_> = trace
        .iter()
        .filter(|o| o.engine == SimEngine::ToDevice)
        .collect();
    let computes: Vec<_> = trace
        .iter()
        .filter(|o| o.engine == SimEngine::Compute)
        .collect();
    assert_eq!(copies.len(), 7);
    assert_eq!(computes.len(), 7);
    for (copy, compute) in copies.iter().zip(&computes) {
        assert!(
            compute.start_ps >= copy.end_ps,
            "layer ran before its weights: {copy:?} {compute:?}"
        );
    }
    // Pipelining: some layer computes while a later group is still being copied.
    assert!(computes.iter().any(|c| copies
        .iter()
        .any(|t| t.start_ps < c.end_ps && c.start_ps < t.end_ps)));
}

#[test]
fn optimal_grouping_is_near_the_bound_for_resnet_and_bert_profiles() {
    let cost = CostModel::for_sim(&SimConfig::default());
    for profile in [
        ModelProfile::resnet152_like(2e12),
        ModelProfile::bert_base_like(2e12),
    ] {
        let costs = cost.plan_costs(&profile);
        let [optimal, sequential, per_layer] = plans(&cost, &profile);
        let bound = costs.lower_bound_ps();
        assert!(optimal.predicted_ps >= bound);
        assert!(
            optimal.predicted_ps as f64 <= 1.1 * bound as f64,
            "{}: optimal {} ps vs bound {bound} ps",
            profile.name,
            optimal.predicted_ps
        );
        assert!(optimal.predicted_ps < sequential.predicted_ps);
        assert!(optimal.predicted_ps < per_layer.predicted_ps);
        assert!(optimal.groups.len() > 1 && optimal.groups.len() < profile.layers.len());
    }
}

#[test]
fn profiles_match_the_published_architectures() {
    let resnet = ModelProfile::resnet152_like(2e12);
    assert_eq!(resnet.layers.len(), 156);
    let params = resnet.weight_bytes() / 4;
    assert!(
        (58_000_000..61_000_000).contains(&params),
        "resnet params {params}"
    );
    // 11.5 GMAC = 23 GFLOP at 2 TFLOP/s ≈ 11.5 ms.
    let ms = resnet.compute().as_secs_f64() * 1e3;
    assert!((10.0..13.0).contains(&ms), "resnet compute {ms} ms");
    let bert = ModelProfile::bert_base_like(2e12);
    assert_eq!(bert.layers.len(), 50);
    let params = bert.weight_bytes() / 4;
    assert!(
        (105_000_000..112_000_000).contains(&params),
        "bert params {params}"
    );
}

#[test]
fn misuse_is_an_error() {
    let sim = sim(false);
    let dev: Arc<dyn Device> = sim.clone();
    let cost = CostModel::for_sim(sim.config());
    let small = HostModel::new(
        dev.clone(),
        ModelProfile::uniform("s", 2, 1000, Duration::ZERO),
        1,
    )
    .unwrap();
    let big = HostModel::new(
        dev.clone(),
        ModelProfile::uniform("b", 3, 100_000, Duration::ZERO),
        1,
    )
    .unwrap();
    let mut switcher = Switcher::new(
        dev.clone(),
        SwitchConfig {
            pool_bytes: small.pool_bytes(),
            ready_events: 1,
        },
    )
    .unwrap();
    let big_plan = GroupPlan::sequential(&cost.plan_costs(big.profile())).unwrap();
    let e = switcher.switch_to(&big, &big_plan).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
    // A plan for another model.
    let e = switcher.switch_to(&small, &big_plan).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // A model pinned for another device.
    let other: Arc<dyn Device> = Arc::new(SimDevice::new(SimConfig::default()).unwrap());
    let foreign = HostModel::new(
        other,
        ModelProfile::uniform("f", 2, 1000, Duration::ZERO),
        1,
    )
    .unwrap();
    let plan = GroupPlan::sequential(&cost.plan_costs(foreign.profile())).unwrap();
    assert!(switcher.switch_to(&foreign, &plan).is_err());
    // Empty or zero-byte models, and a pool that does not fit the device.
    assert!(HostModel::new(
        dev.clone(),
        ModelProfile::uniform("e", 0, 1, Duration::ZERO),
        1
    )
    .is_err());
    assert!(HostModel::new(
        dev.clone(),
        ModelProfile::uniform("z", 1, 0, Duration::ZERO),
        1
    )
    .is_err());
    let e = Switcher::new(
        dev.clone(),
        SwitchConfig {
            pool_bytes: 1 << 40,
            ready_events: 1,
        },
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
    // The switcher still works after the errors.
    let plan = GroupPlan::sequential(&cost.plan_costs(small.profile())).unwrap();
    switcher.switch_to(&small, &plan).unwrap();
    switcher.verify_checksums().unwrap();
}

#[test]
fn calibration_recovers_the_simulator_costs() {
    let link = LinkModel {
        bytes_per_sec: 10_000_000_000,
        latency_ns: 3_000,
    };
    let config = SimConfig {
        capacity_bytes: 256 << 20,
        to_device: link,
        launch_overhead_ns: 2_000,
        memory_bytes_per_sec: 500_000_000_000,
        ..SimConfig::default()
    };
    let dev = SimDevice::new(config.clone()).unwrap();
    let measured = CostModel::calibrate(&dev).unwrap();
    let exact = CostModel::for_sim(&config);
    assert_eq!(measured.copy_ps_per_byte, exact.copy_ps_per_byte);
    assert_eq!(measured.launch_ps, exact.launch_ps);
    assert_eq!(measured.read_ps_per_byte, exact.read_ps_per_byte);
    let overhead_err = measured.copy_overhead_ps.abs_diff(exact.copy_overhead_ps);
    assert!(overhead_err <= 1_000, "{measured:?} vs {exact:?}");
    assert_eq!(
        dev.allocated_bytes(),
        0,
        "calibration frees what it allocated"
    );
}
