//! Page accounting of the shared device: production is never evicted, opportunistic pages move
//! LRU-first, and the returned moves, carried out in order on a model memory, always keep every
//! page's contents (checked under random operation sequences with proptest).

use std::collections::HashMap;

use farmem_gpu::share::{
    AllocationId, FrameId, PageLedger, PageMove, PageState, Priority, TenantId,
};
use farmem_gpu::ErrorKind;
use proptest::prelude::*;

const PAGE: u64 = 4096;

fn ledger(pages: u64) -> PageLedger {
    PageLedger::new(pages * PAGE, PAGE).unwrap()
}

fn evicted_pages(moves: &[PageMove]) -> Vec<(AllocationId, u32)> {
    moves
        .iter()
        .filter_map(|m| match *m {
            PageMove::Evict {
                allocation, page, ..
            } => Some((allocation, page)),
            _ => None,
        })
        .collect()
}

#[test]
fn production_evicts_least_recently_used_opportunistic_pages() {
    let mut l = ledger(8);
    let prod = l.add_tenant(Priority::Production);
    let opp = l.add_tenant(Priority::Opportunistic);
    let (o, moves) = l.allocate(opp, 6 * PAGE).unwrap();
    assert!(moves.is_empty());
    assert_eq!(l.tenant_pages(opp).unwrap(), (6, 0));
    // Touch pages 0 and 1 so 2 and 3 become the least recently used.
    assert!(l.access(o, 0, 2).unwrap().is_empty());
    let (_p, moves) = l.allocate(prod, 4 * PAGE).unwrap();
    assert_eq!(evicted_pages(&moves), vec![(o, 2), (o, 3)]);
    assert_eq!(l.tenant_pages(prod).unwrap(), (4, 0));
    assert_eq!(l.tenant_pages(opp).unwrap(), (4, 2));
    assert_eq!(l.free_pages(), 0);
    assert_eq!(l.stats().evicted, 2);
    l.check_invariants().unwrap();
}

#[test]
fn production_beyond_capacity_is_out_of_device_memory_and_changes_nothing() {
    let mut l = ledger(8);
    let prod = l.add_tenant(Priority::Production);
    let opp = l.add_tenant(Priority::Opportunistic);
    l.allocate(opp, 8 * PAGE).unwrap();
    l.allocate(prod, 5 * PAGE).unwrap();
    let err = l.allocate(prod, 4 * PAGE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory);
    assert!(
        err.context().contains("only 3 of the device's 8 pages"),
        "{err}"
    );
    assert_eq!(l.tenant_pages(prod).unwrap(), (5, 0));
    assert_eq!(l.tenant_pages(opp).unwrap(), (3, 5));
    // Exactly the remaining room is fine, and takes every opportunistic frame.
    l.allocate(prod, 3 * PAGE).unwrap();
    assert_eq!(l.tenant_pages(opp).unwrap(), (0, 8));
    l.check_invariants().unwrap();
}

#[test]
fn opportunistic_oversubscription_starts_on_the_host_and_faults_in() {
    let mut l = ledger(4);
    let opp = l.add_tenant(Priority::Opportunistic);
    let (a, _) = l.allocate(opp, 3 * PAGE).unwrap();
    let (b, moves) = l.allocate(opp, 3 * PAGE).unwrap();
    assert!(moves.is_empty(), "an opportunistic allocation never evicts");
    assert!(matches!(
        l.page_state(b, 0).unwrap(),
        PageState::Resident(_)
    ));
    assert!(matches!(l.page_state(b, 1).unwrap(), PageState::Evicted(_)));
    assert_eq!(l.tenant_pages(opp).unwrap(), (4, 2));
    // Fault in b[1..3]: evicts the two least recently used pages, a[0] and a[1].
    let moves = l.access(b, 1, 2).unwrap();
    assert_eq!(evicted_pages(&moves), vec![(a, 0), (a, 1)]);
    let faults = moves
        .iter()
        .filter(|m| matches!(m, PageMove::Restore { fault: true, .. }))
        .count();
    assert_eq!(faults, 2);
    assert_eq!(l.stats().faulted, 2);
    for p in 0..3 {
        assert!(matches!(
            l.page_state(b, p).unwrap(),
            PageState::Resident(_)
        ));
    }
    l.check_invariants().unwrap();
}

#[test]
fn access_never_evicts_a_page_of_the_same_access() {
    let mut l = ledger(4);
    let opp = l.add_tenant(Priority::Opportunistic);
    let (a, _) = l.allocate(opp, 8 * PAGE).unwrap();
    // a[0..4] resident, oldest. Access 2..6: 2 and 3 are resident and must stay.
    let moves = l.access(a, 2, 4).unwrap();
    assert_eq!(evicted_pages(&moves), vec![(a, 0), (a, 1)]);
    for p in 2..6 {
        assert!(matches!(
            l.page_state(a, p).unwrap(),
            PageState::Resident(_)
        ));
    }
    let err = l.access(a, 0, 5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory);
    l.check_invariants().unwrap();
}

#[test]
fn restore_brings_back_most_recently_used_pages_first() {
    let mut l = ledger(4);
    let prod = l.add_tenant(Priority::Production);
    let opp = l.add_tenant(Priority::Opportunistic);
    let (a, _) = l.allocate(opp, 4 * PAGE).unwrap();
    l.access(a, 3, 1).unwrap();
    l.access(a, 1, 1).unwrap(); // use order now: 0, 2, 3, 1
    let (p, moves) = l.allocate(prod, 3 * PAGE).unwrap();
    assert_eq!(evicted_pages(&moves), vec![(a, 0), (a, 2), (a, 3)]);
    let (q, _) = l.allocate(prod, PAGE).unwrap(); // evicts a[1] too
    assert_eq!(l.tenant_pages(opp).unwrap(), (0, 4));
    l.free(q).unwrap();
    assert_eq!(l.restorable_pages(), 1);
    let moves = l.restore(u32::MAX).unwrap();
    let restored: Vec<u32> = moves
        .iter()
        .map(|m| match *m {
            PageMove::Restore { page, fault, .. } => {
                assert!(!fault);
                page
            }
            PageMove::Evict { .. } => panic!("free never evicts"),
        })
        .collect();
    assert_eq!(restored, vec![1]);
    l.free(p).unwrap();
    assert_eq!(
        l.tenant_pages(opp).unwrap(),
        (1, 3),
        "free alone moves nothing"
    );
    let moves = l.restore(2).unwrap();
    assert_eq!(moves.len(), 2, "restore honours its limit");
    assert!(matches!(moves[0], PageMove::Restore { page: 3, .. }));
    assert!(matches!(moves[1], PageMove::Restore { page: 2, .. }));
    assert_eq!(l.restore(u32::MAX).unwrap().len(), 1);
    assert!(l.restore(u32::MAX).unwrap().is_empty());
    assert_eq!(l.tenant_pages(opp).unwrap(), (4, 0));
    assert_eq!(l.stats().restored, 4);
    l.check_invariants().unwrap();
}

#[test]
fn bad_requests_are_errors() {
    let mut l = ledger(4);
    let t = l.add_tenant(Priority::Opportunistic);
    assert_eq!(
        l.allocate(t, 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        l.allocate(TenantId(99), PAGE).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let (a, _) = l.allocate(t, 2 * PAGE).unwrap();
    assert_eq!(
        l.access(a, 1, 2).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        l.access(a, u32::MAX, 2).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    l.free(a).unwrap();
    assert_eq!(l.free(a).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(l.access(a, 0, 1).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        PageLedger::new(PAGE, 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        PageLedger::new(PAGE - 1, PAGE).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn removing_a_tenant_frees_all_its_memory() {
    let mut l = ledger(4);
    let prod = l.add_tenant(Priority::Production);
    let opp = l.add_tenant(Priority::Opportunistic);
    l.allocate(opp, 4 * PAGE).unwrap();
    l.allocate(prod, PAGE).unwrap();
    l.allocate(prod, 2 * PAGE).unwrap();
    l.remove_tenant(prod).unwrap();
    assert_eq!(l.free_pages(), 3);
    assert_eq!(l.restore(u32::MAX).unwrap().len(), 3);
    assert_eq!(l.tenant_pages(opp).unwrap(), (4, 0));
    assert_eq!(
        l.tenant_pages(prod).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    l.check_invariants().unwrap();
}

/// A model memory: which page's contents each frame and host slot holds.
#[derive(Default)]
struct ModelMemory {
    frames: HashMap<FrameId, (AllocationId, u32)>,
    slots: HashMap<u32, (AllocationId, u32)>,
}

impl ModelMemory {
    /// Carries out `moves` in order, checking each copies the page it claims to.
    fn apply(&mut self, moves: &[PageMove]) {
        for m in moves {
            match *m {
                PageMove::Evict {
                    allocation,
                    page,
                    frame,
                    slot,
                } => {
                    assert_eq!(
                        self.frames.remove(&frame),
                        Some((allocation, page)),
                        "{m:?}"
                    );
                    assert!(
                        self.slots.insert(slot.0, (allocation, page)).is_none(),
                        "{m:?}"
                    );
                }
                PageMove::Restore {
                    allocation,
                    page,
                    slot,
                    frame,
                    ..
                } => {
                    assert_eq!(
                        self.slots.remove(&slot.0),
                        Some((allocation, page)),
                        "{m:?}"
                    );
                    assert!(
                        self.frames.insert(frame, (allocation, page)).is_none(),
                        "{m:?}"
                    );
                }
            }
        }
    }

    fn place_new(&mut self, l: &PageLedger, a: AllocationId) {
        for p in 0..l.allocation_pages(a).unwrap() {
            match l.page_state(a, p).unwrap() {
                PageState::Resident(f) => assert!(self.frames.insert(f, (a, p)).is_none()),
                PageState::Evicted(s) => assert!(self.slots.insert(s.0, (a, p)).is_none()),
            }
        }
    }

    fn forget(&mut self, a: AllocationId) {
        self.frames.retain(|_, v| v.0 != a);
        self.slots.retain(|_, v| v.0 != a);
    }

    /// Every live page is exactly where the ledger says.
    fn check(&self, l: &PageLedger, live: &[(AllocationId, Priority)]) {
        let mut count = 0;
        for &(a, prio) in live {
            for p in 0..l.allocation_pages(a).unwrap() {
                count += 1;
                match l.page_state(a, p).unwrap() {
                    PageState::Resident(f) => assert_eq!(self.frames.get(&f), Some(&(a, p))),
                    PageState::Evicted(s) => {
                        assert_eq!(prio, Priority::Opportunistic, "production page evicted");
                        assert_eq!(self.slots.get(&s.0), Some(&(a, p)));
                    }
                }
            }
        }
        assert_eq!(count, self.frames.len() + self.slots.len());
    }
}

#[derive(Clone, Debug)]
enum Op {
    Allocate { production: bool, pages: u64 },
    Free { pick: usize },
    Access { pick: usize, first: u32, count: u32 },
    Restore { limit: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 1u64..6).prop_map(|(production, pages)| Op::Allocate { production, pages }),
        (0usize..64).prop_map(|pick| Op::Free { pick }),
        (0usize..64, 0u32..6, 1u32..6).prop_map(|(pick, first, count)| Op::Access {
            pick,
            first,
            count
        }),
        (0u32..8).prop_map(|limit| Op::Restore { limit }),
    ]
}

/// Proptest cases: quick by default, many more with `FARMEM_STRESS=1`.
fn cases() -> u32 {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        4096
    } else {
        256
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_sequences_keep_accounting_and_contents(ops in prop::collection::vec(op(), 1..80)) {
        let capacity = 12u64;
        let mut l = ledger(capacity);
        let prod = l.add_tenant(Priority::Production);
        let opp = l.add_tenant(Priority::Opportunistic);
        let mut mem = ModelMemory::default();
        let mut live: Vec<(AllocationId, Priority)> = Vec::new();
        let mut production_pages = 0u64;
        let mut allocated = [0u64; 2];
        for op in ops {
            match op {
                Op::Allocate { production, pages } => {
                    let (tenant, prio) = if production {
                        (prod, Priority::Production)
                    } else {
                        (opp, Priority::Opportunistic)
                    };
                    match l.allocate(tenant, pages * PAGE - 1) {
                        Ok((a, moves)) => {
                            mem.apply(&moves);
                            mem.place_new(&l, a);
                            live.push((a, prio));
                            allocated[production as usize] += pages;
                            if production {
                                production_pages += pages;
                            }
                        }
                        Err(e) => {
                            prop_assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
                            prop_assert!(production && production_pages + pages > capacity);
                        }
                    }
                }
                Op::Free { pick } => {
                    if live.is_empty() {
                        continue;
                    }
                    let (a, prio) = live.remove(pick % live.len());
                    let pages = u64::from(l.allocation_pages(a).unwrap());
                    mem.forget(a);
                    l.free(a).unwrap();
                    let production = prio == Priority::Production;
                    allocated[production as usize] -= pages;
                    if production {
                        production_pages -= pages;
                    }
                }
                Op::Restore { limit } => {
                    let expected = l.restorable_pages().min(limit);
                    let moves = l.restore(limit).unwrap();
                    prop_assert_eq!(moves.len() as u32, expected);
                    mem.apply(&moves);
                }
                Op::Access { pick, first, count } => {
                    if live.is_empty() {
                        continue;
                    }
                    let (a, prio) = live[pick % live.len()];
                    let pages = l.allocation_pages(a).unwrap();
                    match l.access(a, first, count) {
                        Ok(moves) => {
                            mem.apply(&moves);
                            for p in first..first + count {
                                prop_assert!(matches!(
                                    l.page_state(a, p).unwrap(),
                                    PageState::Resident(_)
                                ));
                            }
                        }
                        Err(e) if first + count > pages => {
                            prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                        }
                        Err(e) => {
                            prop_assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
                            prop_assert_eq!(prio, Priority::Opportunistic);
                            prop_assert!(u64::from(count) > capacity - production_pages);
                        }
                    }
                }
            }
            l.check_invariants().unwrap();
            mem.check(&l, &live);
            let (pr, pe) = l.tenant_pages(prod).unwrap();
            let (or, oe) = l.tenant_pages(opp).unwrap();
            prop_assert_eq!(pe, 0, "production is never evicted");
            prop_assert_eq!(u64::from(pr), allocated[1]);
            prop_assert_eq!(u64::from(or + oe), allocated[0]);
            prop_assert!(pr + or <= l.capacity_pages());
            prop_assert_eq!(pr + or + l.free_pages(), l.capacity_pages());
        }
    }
}
