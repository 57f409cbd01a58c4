//! The shared device on a real GPU. Ignored by default (CI has no GPU); run with
//! `cargo test -p farmem-gpu --features cuda --test gpu_share_cuda -- --ignored`. Each test
//! returns early, saying why, when no CUDA device can be opened.
//!
//! On a GPU, copies and kernels really run asynchronously, so a missing ordering between the
//! paging stream and a tenant's stream shows up as wrong bytes or a wrong checksum: that is
//! what these tests look for (contents, never timings).

use std::sync::Arc;
use std::time::Duration;

use farmem_gpu::device::{checksum, ComputeStep, Device};
use farmem_gpu::share::{PageState, Priority, SharedDevice};

mod cuda_support;
use cuda_support::{gpu, pattern};

const PAGE: u64 = 2 << 20;

#[test]
#[ignore = "needs a CUDA GPU"]
fn eviction_and_fault_in_keep_contents_on_a_gpu() {
    let Some(dev) = gpu().map(Arc::new) else {
        return;
    };
    let mut shared = SharedDevice::new(dev.clone(), 8 * PAGE, PAGE).unwrap();
    let prod = shared.add_tenant(Priority::Production, dev.create_stream().unwrap());
    let opp = shared.add_tenant(Priority::Opportunistic, dev.create_stream().unwrap());
    let o = shared.allocate(opp, 6 * PAGE).unwrap();
    let opp_data = pattern(6 * PAGE as usize, 7);
    shared.write(o, 0, &opp_data).unwrap();
    let p = shared.allocate(prod, 5 * PAGE).unwrap();
    let prod_data = pattern(5 * PAGE as usize, 11);
    shared.write(p, 0, &prod_data).unwrap();
    assert_eq!(shared.ledger().tenant_pages(opp).unwrap(), (3, 3));
    let mut back = vec![0u8; opp_data.len()];
    shared.read(o, 0, &mut back).unwrap();
    assert!(back == opp_data, "opportunistic contents changed by paging");
    let mut back = vec![0u8; prod_data.len()];
    shared.read(p, 0, &mut back).unwrap();
    assert!(back == prod_data, "production contents changed");
    shared.free(p).unwrap();
    shared.restore(u32::MAX).unwrap();
    let mut back = vec![0u8; opp_data.len()];
    shared.read(o, 0, &mut back).unwrap();
    assert!(back == opp_data, "contents changed by restore");
}

/// A queued opportunistic kernel reads a page; production's allocation evicts that page and
/// production overwrites the frame on its own stream. The kernel must still see the old bytes
/// (the eviction waited for it), the evicted copy must hold them too, and production's bytes
/// must land (its stream waited for the eviction).
#[test]
#[ignore = "needs a CUDA GPU"]
fn eviction_is_ordered_between_tenant_streams_on_a_gpu() {
    let Some(dev) = gpu().map(Arc::new) else {
        return;
    };
    let mut shared = SharedDevice::new(dev.clone(), 2 * PAGE, PAGE).unwrap();
    let prod_stream = dev.create_stream().unwrap();
    let opp_stream = dev.create_stream().unwrap();
    let prod = shared.add_tenant(Priority::Production, prod_stream);
    let opp = shared.add_tenant(Priority::Opportunistic, opp_stream);
    let o = shared.allocate(opp, 2 * PAGE).unwrap();
    let old = pattern(2 * PAGE as usize, 3);
    shared.write(o, 0, &old).unwrap();

    let sums = dev.alloc(8).unwrap();
    let host8 = dev.alloc_pinned(8).unwrap();
    dev.write_pinned(&host8, 0, &[0; 8]).unwrap();
    dev.copy_to_device(opp_stream, &host8, 0, &sums, 0, 8)
        .unwrap();
    // A long kernel first, so the reading kernel is still queued when production allocates.
    dev.launch(
        opp_stream,
        &ComputeStep {
            reads: None,
            checksum_into: None,
            work: Duration::from_millis(50),
        },
    )
    .unwrap();
    shared.access(o, 0, 2).unwrap();
    for page in 0..2 {
        let range = shared.page_range(o, page).unwrap();
        dev.launch(
            opp_stream,
            &ComputeStep {
                reads: Some(range),
                checksum_into: Some((&sums, 0)),
                work: Duration::ZERO,
            },
        )
        .unwrap();
    }

    let p = shared.allocate(prod, 2 * PAGE).unwrap();
    assert!(matches!(
        shared.ledger().page_state(o, 0).unwrap(),
        PageState::Evicted(_)
    ));
    let new = pattern(2 * PAGE as usize, 5);
    let staging = dev.alloc_pinned(2 * PAGE).unwrap();
    dev.write_pinned(&staging, 0, &new).unwrap();
    for page in 0..2u32 {
        let range = shared.page_range(p, page).unwrap();
        dev.copy_to_device(
            prod_stream,
            &staging,
            u64::from(page) * PAGE,
            range.buffer,
            range.offset,
            PAGE,
        )
        .unwrap();
    }
    dev.synchronize_stream(prod_stream).unwrap();
    dev.copy_to_host(opp_stream, &sums, 0, &host8, 0, 8)
        .unwrap();
    dev.synchronize_stream(opp_stream).unwrap();
    let mut word = [0u8; 8];
    dev.read_pinned(&host8, 0, &mut word).unwrap();
    assert_eq!(
        u64::from_le_bytes(word),
        checksum(&old),
        "the queued kernel read bytes production wrote after the eviction"
    );
    let mut back = vec![0u8; new.len()];
    shared.read(p, 0, &mut back).unwrap();
    assert!(back == new, "production's bytes did not land");
    shared.free(p).unwrap();
    let mut back = vec![0u8; old.len()];
    shared.read(o, 0, &mut back).unwrap();
    assert!(back == old, "the evicted copy lost the old bytes");
}
