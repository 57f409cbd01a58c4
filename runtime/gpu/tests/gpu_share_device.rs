//! The shared device on the simulator: evictions and fault-ins are real copies that keep
//! contents, production is never evicted, tenant streams are ordered after page copies, and the
//! launch gate admits kernels within the controller's budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use farmem_gpu::device::{checksum, ComputeStep, Device, SimConfig, SimDevice, SimEngine};
use farmem_gpu::share::{
    AllocationId, LaunchGate, PageState, Priority, RateAction, RateConfig, SharedDevice,
};
use farmem_gpu::ErrorKind;
use proptest::prelude::*;

const PAGE: u64 = 4096;

fn sim(trace: bool) -> Arc<SimDevice> {
    Arc::new(
        SimDevice::new(SimConfig {
            capacity_bytes: 1 << 20,
            trace,
            ..SimConfig::default()
        })
        .unwrap(),
    )
}

/// Bytes that differ from page to page, so a page copied to the wrong place is caught.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

#[test]
fn eviction_and_fault_in_keep_contents() {
    let dev = sim(false);
    let mut shared = SharedDevice::new(dev.clone(), 8 * PAGE, PAGE).unwrap();
    let prod = shared.add_tenant(Priority::Production, dev.create_stream().unwrap());
    let opp = shared.add_tenant(Priority::Opportunistic, dev.create_stream().unwrap());
    let o = shared.allocate(opp, 6 * PAGE).unwrap();
    let opp_data = pattern(7, 6 * PAGE as usize);
    shared.write(o, 0, &opp_data).unwrap();
    let p = shared.allocate(prod, 4 * PAGE).unwrap();
    let prod_data = pattern(99, 4 * PAGE as usize);
    shared.write(p, 0, &prod_data).unwrap();
    assert_eq!(shared.stats().evicted, 2);
    assert_eq!(shared.ledger().tenant_pages(opp).unwrap(), (4, 2));
    // Reading all six opportunistic pages through four frames faults pages in and out.
    let mut back = vec![0u8; opp_data.len()];
    shared.read(o, 0, &mut back).unwrap();
    assert_eq!(back, opp_data);
    assert!(shared.stats().faulted >= 2);
    let mut back = vec![0u8; prod_data.len()];
    shared.read(p, 0, &mut back).unwrap();
    assert_eq!(back, prod_data);
    assert_eq!(shared.ledger().tenant_pages(prod).unwrap(), (4, 0));
    // Freeing production and restoring brings every opportunistic page back, still intact.
    shared.free(p).unwrap();
    assert_eq!(shared.restore(u32::MAX).unwrap(), 2);
    assert_eq!(shared.ledger().tenant_pages(opp).unwrap(), (6, 0));
    let mut back = vec![0u8; opp_data.len()];
    shared.read(o, 0, &mut back).unwrap();
    assert_eq!(back, opp_data);
    shared.ledger().check_invariants().unwrap();
}

#[test]
fn a_kernel_reads_the_faulted_in_bytes() {
    let dev = sim(false);
    let mut shared = SharedDevice::new(dev.clone(), 4 * PAGE, PAGE).unwrap();
    let prod_stream = dev.create_stream().unwrap();
    let opp_stream = dev.create_stream().unwrap();
    let prod = shared.add_tenant(Priority::Production, prod_stream);
    let opp = shared.add_tenant(Priority::Opportunistic, opp_stream);
    let o = shared.allocate(opp, 2 * PAGE).unwrap();
    let data = pattern(3, 2 * PAGE as usize);
    shared.write(o, 0, &data).unwrap();
    let p = shared.allocate(prod, 4 * PAGE).unwrap();
    // Everything opportunistic is on the host now; a kernel may not read it.
    assert!(matches!(
        shared.ledger().page_state(o, 1).unwrap(),
        PageState::Evicted(_)
    ));
    assert_eq!(
        shared.page_range(o, 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Production's first kernel is ordered after the two evictions.
    let evict_end_ps = dev.stream_time_ps(shared.paging_stream()).unwrap();
    assert!(dev.stream_time_ps(prod_stream).unwrap() >= evict_end_ps);
    shared.free(p).unwrap();
    shared.access(o, 1, 1).unwrap();
    let sums = dev.alloc(8).unwrap();
    let zero = dev.alloc_pinned(8).unwrap();
    dev.copy_to_device(opp_stream, &zero, 0, &sums, 0, 8)
        .unwrap();
    let range = shared.page_range(o, 1).unwrap();
    dev.launch(
        opp_stream,
        &ComputeStep {
            reads: Some(range),
            checksum_into: Some((&sums, 0)),
            work: Duration::from_micros(10),
        },
    )
    .unwrap();
    dev.copy_to_host(opp_stream, &sums, 0, &zero, 0, 8).unwrap();
    dev.synchronize_stream(opp_stream).unwrap();
    let mut word = [0u8; 8];
    dev.read_pinned(&zero, 0, &mut word).unwrap();
    assert_eq!(u64::from_le_bytes(word), checksum(&data[PAGE as usize..]));
}

#[test]
fn evictions_wait_for_queued_opportunistic_kernels_and_gate_production() {
    let dev = sim(true);
    let mut shared = SharedDevice::new(dev.clone(), 4 * PAGE, PAGE).unwrap();
    let prod_stream = dev.create_stream().unwrap();
    let opp_stream = dev.create_stream().unwrap();
    let prod = shared.add_tenant(Priority::Production, prod_stream);
    let opp = shared.add_tenant(Priority::Opportunistic, opp_stream);
    let o = shared.allocate(opp, 4 * PAGE).unwrap();
    shared.access(o, 0, 1).unwrap();
    // A long opportunistic kernel reads page 0, the least recently used page after the touches
    // below... all four pages are candidates; the eviction must wait for the kernel.
    let range = shared.page_range(o, 0).unwrap();
    dev.launch(
        opp_stream,
        &ComputeStep {
            reads: Some(range),
            checksum_into: None,
            work: Duration::from_millis(1),
        },
    )
    .unwrap();
    let kernel_end_ps = dev.stream_time_ps(opp_stream).unwrap();
    dev.clear_trace().unwrap();
    shared.allocate(prod, PAGE).unwrap();
    let trace = dev.trace().unwrap();
    let evictions: Vec<_> = trace
        .iter()
        .filter(|op| op.engine == SimEngine::ToHost)
        .collect();
    assert_eq!(evictions.len(), 1);
    assert!(evictions[0].start_ps >= kernel_end_ps, "{trace:?}");
    assert!(dev.stream_time_ps(prod_stream).unwrap() >= evictions[0].end_ps);
}

#[test]
fn restore_orders_the_owner_stream_and_removing_a_tenant_frees_its_pages() {
    let dev = sim(false);
    let mut shared = SharedDevice::new(dev.clone(), 4 * PAGE, PAGE).unwrap();
    let prod = shared.add_tenant(Priority::Production, dev.create_stream().unwrap());
    let opp_stream = dev.create_stream().unwrap();
    let opp = shared.add_tenant(Priority::Opportunistic, opp_stream);
    let o = shared.allocate(opp, 3 * PAGE).unwrap();
    let data = pattern(1, 3 * PAGE as usize);
    shared.write(o, 0, &data).unwrap();
    shared.allocate(prod, 3 * PAGE).unwrap();
    assert_eq!(shared.ledger().tenant_pages(opp).unwrap(), (1, 2));
    shared.remove_tenant(prod).unwrap();
    assert_eq!(shared.ledger().free_pages(), 3);
    assert_eq!(shared.restore(1).unwrap(), 1);
    // The owner's next kernel cannot start before the restore copy ends.
    let paged = dev.stream_time_ps(shared.paging_stream()).unwrap();
    assert!(dev.stream_time_ps(opp_stream).unwrap() >= paged);
    assert_eq!(shared.restore(u32::MAX).unwrap(), 1);
    assert_eq!(shared.restore(u32::MAX).unwrap(), 0);
    let mut back = vec![0u8; data.len()];
    shared.read(o, 0, &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(shared.stats().restored, 2);
}

#[test]
fn production_is_never_evicted_and_overflow_is_a_clear_error() {
    let dev = sim(false);
    let mut shared = SharedDevice::new(dev.clone(), 4 * PAGE, PAGE).unwrap();
    let prod = shared.add_tenant(Priority::Production, dev.create_stream().unwrap());
    let opp = shared.add_tenant(Priority::Opportunistic, dev.create_stream().unwrap());
    shared.allocate(prod, 3 * PAGE).unwrap();
    let o = shared.allocate(opp, 4 * PAGE).unwrap();
    // The opportunistic tenant cannot fault in more than the one frame left to it at once...
    assert_eq!(
        shared.access(o, 0, 2).unwrap_err().kind(),
        ErrorKind::OutOfDeviceMemory
    );
    // ...but touching pages one by one cycles them through that frame.
    for page in 0..4 {
        shared.access(o, page, 1).unwrap();
    }
    assert_eq!(shared.ledger().tenant_pages(prod).unwrap(), (3, 0));
    let err = shared.allocate(prod, 2 * PAGE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory);
    assert!(err.context().contains("production tenant"), "{err}");
    assert_eq!(shared.ledger().tenant_pages(prod).unwrap(), (3, 0));
}

#[test]
fn pool_must_fit_and_is_released_on_drop() {
    let dev = sim(false);
    let err = SharedDevice::new(dev.clone(), 2 << 20, PAGE).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory);
    assert_eq!(dev.allocated_bytes(), 0);
    {
        let mut shared = SharedDevice::new(dev.clone(), 10 * PAGE + 5, PAGE).unwrap();
        assert_eq!(shared.ledger().capacity_pages(), 10);
        assert_eq!(dev.allocated_bytes(), 10 * PAGE);
        let t = shared.add_tenant(Priority::Opportunistic, dev.create_stream().unwrap());
        let a = shared.allocate(t, 3).unwrap();
        assert_eq!(
            shared.write(a, 2, &[1, 2]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        shared.write(a, 1, &[1, 2]).unwrap();
    }
    assert_eq!(dev.allocated_bytes(), 0);
}

#[test]
fn gate_admits_the_budget_paced_by_the_in_flight_cap() {
    let mut gate = LaunchGate::new(RateConfig::default(), 2).unwrap();
    assert_eq!(gate.remaining(), 1);
    assert!(!gate.try_launch(2), "in-flight cap");
    assert!(gate.try_launch(0));
    assert!(!gate.try_launch(0), "budget of 1 spent");
    assert_eq!(
        gate.end_window(10.0, Duration::from_millis(10)).unwrap(),
        RateAction::Calibrate
    );
    assert_eq!(gate.controller().reference_throughput(), Some(1000.0));
    assert_eq!(
        gate.end_window(10.0, Duration::from_millis(10)).unwrap(),
        RateAction::Doubled
    );
    assert_eq!(gate.remaining(), 2);
    assert!(gate.try_launch(1));
    assert!(!gate.try_launch(2));
    assert!(gate.try_launch(0));
    assert!(!gate.try_launch(0));
    assert_eq!(gate.launched_total(), 3);
    // Production slows: the next window's budget halves.
    assert_eq!(
        gate.end_window(5.0, Duration::from_millis(10)).unwrap(),
        RateAction::Decreased
    );
    assert_eq!(gate.remaining(), 1);
    assert_eq!(gate.windows(), 3);
    assert_eq!(
        gate.end_window(1.0, Duration::ZERO).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        LaunchGate::new(RateConfig::default(), 0)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

fn production_holds_all(shared: &SharedDevice<SimDevice>) -> bool {
    let l = shared.ledger();
    l.tenant_pages(farmem_gpu::share::TenantId(0)).unwrap().0 == l.capacity_pages()
}

#[derive(Clone, Debug)]
enum Op {
    Allocate {
        production: bool,
        pages: u8,
    },
    Free {
        pick: usize,
    },
    Write {
        pick: usize,
        at: u16,
        len: u16,
        seed: u8,
    },
    Read {
        pick: usize,
    },
    Restore {
        limit: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 1u8..4).prop_map(|(production, pages)| Op::Allocate { production, pages }),
        (0usize..32).prop_map(|pick| Op::Free { pick }),
        (0usize..32, any::<u16>(), 1u16..600, any::<u8>()).prop_map(|(pick, at, len, seed)| {
            Op::Write {
                pick,
                at,
                len,
                seed,
            }
        }),
        (0usize..32).prop_map(|pick| Op::Read { pick }),
        (0u32..4).prop_map(|limit| Op::Restore { limit }),
    ]
}

/// Proptest cases: quick by default, many more with `FARMEM_STRESS=1`.
fn cases() -> u32 {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        1024
    } else {
        64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Random allocate/free/write/read sequences over an oversubscribed 6-page pool: every
    /// read returns what was last written, whatever evictions and fault-ins happened between.
    #[test]
    fn contents_survive_random_paging(ops in prop::collection::vec(op(), 1..60)) {
        const SMALL: u64 = 256;
        let dev = sim(false);
        let mut shared = SharedDevice::new(dev.clone(), 6 * SMALL, SMALL).unwrap();
        let prod = shared.add_tenant(Priority::Production, dev.create_stream().unwrap());
        let opp = shared.add_tenant(Priority::Opportunistic, dev.create_stream().unwrap());
        let mut live: Vec<AllocationId> = Vec::new();
        let mut model: HashMap<AllocationId, Vec<u8>> = HashMap::new();
        for op in ops {
            match op {
                Op::Allocate { production, pages } => {
                    let tenant = if production { prod } else { opp };
                    let bytes = u64::from(pages) * SMALL;
                    match shared.allocate(tenant, bytes) {
                        Ok(a) if !production && production_holds_all(&shared) => {
                            // No frame is left to opportunistic tenants: touching fails.
                            let e = shared.write(a, 0, &[0]).unwrap_err();
                            prop_assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
                            shared.free(a).unwrap();
                        }
                        Ok(a) => {
                            // Contents start unspecified: define them.
                            let init = vec![0u8; bytes as usize];
                            shared.write(a, 0, &init).unwrap();
                            model.insert(a, init);
                            live.push(a);
                        }
                        Err(e) => {
                            prop_assert!(production);
                            prop_assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
                        }
                    }
                }
                Op::Free { pick } if !live.is_empty() => {
                    let a = live.remove(pick % live.len());
                    shared.free(a).unwrap();
                    model.remove(&a);
                }
                _ if production_holds_all(&shared) => {
                    // No frame is left to opportunistic tenants: skip reads and writes until
                    // production frees memory (the allocate arm checks the error).
                }
                Op::Write { pick, at, len, seed } if !live.is_empty() => {
                    let a = live[pick % live.len()];
                    let m = model.get_mut(&a).unwrap();
                    let at = usize::from(at) % m.len();
                    let len = usize::from(len).min(m.len() - at);
                    let data = pattern(seed, len);
                    shared.write(a, at as u64, &data).unwrap();
                    m[at..at + len].copy_from_slice(&data);
                }
                Op::Restore { limit } => {
                    shared.restore(limit).unwrap();
                }
                Op::Read { pick } if !live.is_empty() => {
                    let a = live[pick % live.len()];
                    let mut out = vec![0u8; model[&a].len()];
                    shared.read(a, 0, &mut out).unwrap();
                    prop_assert_eq!(&out, &model[&a]);
                }
                _ => {}
            }
            shared.ledger().check_invariants().unwrap();
            prop_assert_eq!(shared.ledger().tenant_pages(prod).unwrap().1, 0);
        }
        for a in &live {
            if production_holds_all(&shared) {
                break;
            }
            let mut out = vec![0u8; model[a].len()];
            shared.read(*a, 0, &mut out).unwrap();
            prop_assert_eq!(&out, &model[a]);
        }
    }
}
