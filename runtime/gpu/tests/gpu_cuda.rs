//! The CUDA backend on a real GPU. Ignored by default (CI has no GPU); `run-cuda-tests.sh` runs
//! them with `--features cuda -- --ignored`. Each test also returns early, saying why, when no
//! CUDA device can be opened, so running them on a machine without a GPU is not a failure.
//!
//! Contents are checked, never timings: on a GPU a missing synchronisation shows up as wrong bytes
//! or a wrong checksum, which is what these tests look for.
//!
//! Without the `cuda` feature `CudaDevice` is uninhabited, so rustc sees code after a
//! `CudaDevice::new(..).unwrap()` as unreachable; the tests still compile there (and return at
//! once), hence the allow.
#![cfg_attr(not(feature = "cuda"), allow(unreachable_code, unused_variables))]

use std::sync::Arc;
use std::time::Duration;

use farmem_gpu::device::{checksum, ComputeStep, CudaDevice, Device, DeviceRange};
use farmem_gpu::switch::{CostModel, GroupPlan, HostModel, ModelProfile, SwitchConfig, Switcher};
use farmem_gpu::ErrorKind;

mod cuda_support;
use cuda_support::{gpu, pattern};

fn read_u64(dev: &dyn Device, buf: &farmem_gpu::device::DeviceBuffer) -> u64 {
    let s = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(8).unwrap();
    dev.copy_to_host(s, buf, 0, &host, 0, 8).unwrap();
    dev.synchronize_stream(s).unwrap();
    let mut w = [0u8; 8];
    dev.read_pinned(&host, 0, &mut w).unwrap();
    dev.free_pinned(host).unwrap();
    u64::from_le_bytes(w)
}

fn zeroed_slot(dev: &dyn Device) -> farmem_gpu::device::DeviceBuffer {
    let s = dev.create_stream().unwrap();
    let slot = dev.alloc(8).unwrap();
    let zero = dev.alloc_pinned(8).unwrap();
    dev.write_pinned(&zero, 0, &[0; 8]).unwrap();
    dev.copy_to_device(s, &zero, 0, &slot, 0, 8).unwrap();
    dev.synchronize_stream(s).unwrap();
    dev.free_pinned(zero).unwrap();
    slot
}

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_copies_move_bytes_both_ways_and_on_device() {
    let Some(dev) = gpu() else { return };
    let n = 64 << 20;
    let data = pattern(n, 11);
    let s = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(n as u64).unwrap();
    let back = dev.alloc_pinned(n as u64).unwrap();
    let a = dev.alloc(n as u64).unwrap();
    let b = dev.alloc(n as u64).unwrap();
    dev.write_pinned(&host, 0, &data).unwrap();
    dev.copy_to_device(s, &host, 0, &a, 0, n as u64).unwrap();
    dev.copy_on_device(s, &a, 12_345, &b, 0, (n - 12_345) as u64)
        .unwrap();
    dev.copy_to_host(s, &b, 0, &back, 7, (n - 12_345) as u64)
        .unwrap();
    dev.synchronize_stream(s).unwrap();
    let mut out = vec![0u8; n - 12_345];
    dev.read_pinned(&back, 7, &mut out).unwrap();
    assert!(out == data[12_345..], "bytes differ after H→D, D→D, D→H");
    dev.free(a).unwrap();
    dev.free(b).unwrap();
    assert_eq!(dev.allocated_bytes(), 0);
}

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_compute_step_checksums_like_the_host() {
    let Some(dev) = gpu() else { return };
    let s = dev.create_stream().unwrap();
    for (len, seed) in [(1003usize, 1u64), (4, 2), ((32 << 20) + 3, 3)] {
        let data = pattern(len, seed);
        let host = dev.alloc_pinned(len as u64).unwrap();
        let buf = dev.alloc(len as u64).unwrap();
        let slot = zeroed_slot(&dev);
        dev.write_pinned(&host, 0, &data).unwrap();
        dev.copy_to_device(s, &host, 0, &buf, 0, len as u64)
            .unwrap();
        let step = ComputeStep {
            reads: Some(DeviceRange {
                buffer: &buf,
                offset: 0,
                bytes: len as u64,
            }),
            checksum_into: Some((&slot, 0)),
            work: Duration::from_micros(50),
        };
        dev.launch(s, &step).unwrap();
        dev.launch(s, &step).unwrap();
        dev.synchronize_stream(s).unwrap();
        let want = checksum(&data).wrapping_mul(2);
        assert_eq!(read_u64(&dev, &slot), want, "length {len}");
        dev.free(buf).unwrap();
        dev.free(slot).unwrap();
        dev.free_pinned(host).unwrap();
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_events_order_work_across_streams() {
    let Some(dev) = gpu() else { return };
    let n = 8 << 20;
    let (old, new) = (pattern(n, 5), pattern(n, 6));
    let producer = dev.create_stream().unwrap();
    let consumer = dev.create_stream().unwrap();
    let host_old = dev.alloc_pinned(n as u64).unwrap();
    let host_new = dev.alloc_pinned(n as u64).unwrap();
    let buf = dev.alloc(n as u64).unwrap();
    let slot = zeroed_slot(&dev);
    dev.write_pinned(&host_old, 0, &old).unwrap();
    dev.write_pinned(&host_new, 0, &new).unwrap();
    dev.copy_to_device(producer, &host_old, 0, &buf, 0, n as u64)
        .unwrap();
    dev.synchronize_stream(producer).unwrap();
    let (start, ready) = (dev.create_event().unwrap(), dev.create_event().unwrap());
    dev.record_event(start, producer).unwrap();
    // 20 ms of "compute" delays the new bytes; without the wait the consumer would see old ones.
    let spin = ComputeStep {
        reads: None,
        checksum_into: None,
        work: Duration::from_millis(20),
    };
    dev.launch(producer, &spin).unwrap();
    dev.copy_to_device(producer, &host_new, 0, &buf, 0, n as u64)
        .unwrap();
    dev.record_event(ready, producer).unwrap();
    dev.wait_event(consumer, ready).unwrap();
    let step = ComputeStep {
        reads: Some(DeviceRange {
            buffer: &buf,
            offset: 0,
            bytes: n as u64,
        }),
        checksum_into: Some((&slot, 0)),
        work: Duration::ZERO,
    };
    dev.launch(consumer, &step).unwrap();
    dev.synchronize_stream(consumer).unwrap();
    assert_eq!(
        read_u64(&dev, &slot),
        checksum(&new),
        "consumer ran before the event"
    );
    let took = dev.elapsed(start, ready).unwrap();
    eprintln!("spin + 8 MiB copy took {took:?} of device time");
}

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_errors_instead_of_panics() {
    let Some(dev) = gpu() else { return };
    let e = dev.alloc(dev.capacity_bytes() + (1 << 30)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory, "{e}");
    assert!(e.context().contains("bytes"), "{e}");
    let s = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(64).unwrap();
    let buf = dev.alloc(64).unwrap();
    assert!(dev.copy_to_device(s, &host, 0, &buf, 32, 64).is_err());
    assert!(dev.copy_on_device(s, &buf, 0, &buf, 8, 16).is_err());
    // A buffer of another device instance (same GPU) is refused, not dereferenced.
    let twin = CudaDevice::new(0).unwrap();
    let foreign = twin.alloc(64).unwrap();
    let e = dev.copy_on_device(s, &foreign, 0, &buf, 0, 8).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(dev.free(foreign).is_err());
    assert!(CudaDevice::new(1 << 20).is_err(), "no GPU has that ordinal");
    dev.free(buf).unwrap();
    dev.free_pinned(host).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_pipelined_switch_runs_every_layer_on_its_weights() {
    let Some(dev) = gpu() else { return };
    let dev: Arc<dyn Device> = Arc::new(dev);
    let cost = CostModel::calibrate(dev.as_ref()).unwrap();
    eprintln!("calibrated: {cost:?}");
    let resnet = HostModel::new(dev.clone(), ModelProfile::resnet152_like(2e12), 7).unwrap();
    let bert = HostModel::new(dev.clone(), ModelProfile::bert_base_like(2e12), 8).unwrap();
    let pool_bytes = resnet.pool_bytes().max(bert.pool_bytes());
    let mut switcher = Switcher::new(
        dev.clone(),
        SwitchConfig {
            pool_bytes,
            ready_events: 8,
        },
    )
    .unwrap();
    for model in [&resnet, &bert, &resnet] {
        let costs = cost.plan_costs(model.profile());
        for plan in [
            GroupPlan::optimal(&costs).unwrap(),
            GroupPlan::sequential(&costs).unwrap(),
            GroupPlan::per_layer(&costs).unwrap(),
        ] {
            let out = switcher.switch_to(model, &plan).unwrap();
            eprintln!(
                "{}: {} groups, {:?} (predicted {:?})",
                out.model,
                out.groups,
                out.startup,
                Duration::from_nanos(out.predicted_ps / 1000)
            );
        }
    }
    switcher.verify_checksums().unwrap();
}
