//! The device abstraction on the simulated GPU: bytes really move, the timing model is the one
//! the module note describes (asserted on the model's virtual times, never on wall-clock time),
//! and every misuse is an error.

use std::time::Duration;

use farmem_gpu::device::{
    checksum, ComputeStep, CudaDevice, Device, DeviceRange, LinkModel, SimConfig, SimDevice,
    SimEngine,
};
use farmem_gpu::ErrorKind;

/// A device with round numbers: 1 byte/ns (1 GB/s) copies with 100 ns latency, 10 ns launches.
fn round_config() -> SimConfig {
    let link = LinkModel {
        bytes_per_sec: 1_000_000_000,
        latency_ns: 100,
    };
    SimConfig {
        capacity_bytes: 1 << 20,
        to_device: link,
        to_host: link,
        on_device: LinkModel {
            bytes_per_sec: 10_000_000_000,
            latency_ns: 10,
        },
        launch_overhead_ns: 10,
        memory_bytes_per_sec: 10_000_000_000,
        trace: true,
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn copies_move_bytes_both_ways_and_on_device() {
    let dev = SimDevice::new(round_config()).unwrap();
    let s = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(4096).unwrap();
    let back = dev.alloc_pinned(4096).unwrap();
    let a = dev.alloc(4096).unwrap();
    let b = dev.alloc(4096).unwrap();
    let data = pattern(4096, 7);
    dev.write_pinned(&host, 0, &data).unwrap();
    dev.copy_to_device(s, &host, 0, &a, 0, 4096).unwrap();
    dev.copy_on_device(s, &a, 1000, &b, 0, 2000).unwrap();
    dev.copy_on_device(s, &a, 0, &a, 2048, 1000).unwrap();
    dev.copy_to_host(s, &b, 0, &back, 0, 2000).unwrap();
    dev.copy_to_host(s, &a, 2048, &back, 2000, 1000).unwrap();
    dev.synchronize_stream(s).unwrap();
    let mut out = vec![0u8; 3000];
    dev.read_pinned(&back, 0, &mut out).unwrap();
    assert_eq!(&out[..2000], &data[1000..3000]);
    assert_eq!(&out[2000..], &data[..1000]);
}

#[test]
fn out_of_capacity_is_out_of_device_memory_with_sizes() {
    let dev = SimDevice::new(round_config()).unwrap();
    let a = dev.alloc(768 << 10).unwrap();
    assert_eq!(dev.allocated_bytes(), 768 << 10);
    let err = dev.alloc(512 << 10).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory);
    assert!(err.context().contains("524288"), "{err}");
    assert!(err.context().contains("1048576"), "{err}");
    dev.free(a).unwrap();
    assert_eq!(dev.allocated_bytes(), 0);
    let b = dev.alloc(1 << 20).unwrap();
    assert_eq!(b.bytes(), 1 << 20);
    assert_eq!(dev.alloc(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let dev = SimDevice::new(round_config()).unwrap();
    let other = SimDevice::new(round_config()).unwrap();
    let s = dev.create_stream().unwrap();
    let foreign_stream = other.create_stream().unwrap();
    let host = dev.alloc_pinned(64).unwrap();
    let buf = dev.alloc(64).unwrap();
    // Out-of-range copies, including an offset that would overflow.
    let e = dev.copy_to_device(s, &host, 0, &buf, 1, 64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = dev
        .copy_to_host(s, &buf, u64::MAX, &host, 0, 2)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(dev.write_pinned(&host, 60, &[0; 8]).is_err());
    // Overlapping copy within one buffer.
    assert!(dev.copy_on_device(s, &buf, 0, &buf, 8, 16).is_err());
    // A handle of another device.
    let e = dev
        .copy_to_device(foreign_stream, &host, 0, &buf, 0, 8)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let foreign = other.alloc(64).unwrap();
    assert!(dev.free(foreign).is_err());
    // Misaligned checksum slot.
    let step = ComputeStep {
        reads: Some(DeviceRange {
            buffer: &buf,
            offset: 0,
            bytes: 16,
        }),
        checksum_into: Some((&buf, 20)),
        work: Duration::ZERO,
    };
    assert_eq!(
        dev.launch(s, &step).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Measuring an unrecorded event.
    let e0 = dev.create_event().unwrap();
    let e1 = dev.create_event().unwrap();
    assert!(dev.elapsed(e0, e1).is_err());
    // Zero bandwidth config.
    let mut bad = round_config();
    bad.to_host.bytes_per_sec = 0;
    assert!(SimDevice::new(bad).is_err());
}

#[test]
fn compute_step_checksums_what_it_reads() {
    let dev = SimDevice::new(round_config()).unwrap();
    let s = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(1003).unwrap();
    let weights = dev.alloc(1003).unwrap();
    let slot = dev.alloc(16).unwrap();
    let data = pattern(1003, 3);
    dev.write_pinned(&host, 0, &data).unwrap();
    let zero = dev.alloc_pinned(16).unwrap();
    dev.copy_to_device(s, &zero, 0, &slot, 0, 16).unwrap();
    dev.copy_to_device(s, &host, 0, &weights, 0, 1003).unwrap();
    for range in [(0u64, 1003u64), (4, 999)] {
        dev.launch(
            s,
            &ComputeStep {
                reads: Some(DeviceRange {
                    buffer: &weights,
                    offset: range.0,
                    bytes: range.1,
                }),
                checksum_into: Some((&slot, 8)),
                work: Duration::from_nanos(50),
            },
        )
        .unwrap();
    }
    dev.copy_to_host(s, &slot, 8, &zero, 0, 8).unwrap();
    dev.synchronize_stream(s).unwrap();
    let mut word = [0u8; 8];
    dev.read_pinned(&zero, 0, &mut word).unwrap();
    let want = checksum(&data).wrapping_add(checksum(&data[4..]));
    assert_eq!(u64::from_le_bytes(word), want);
}

#[test]
fn one_stream_is_ordered_and_times_follow_the_model() {
    let dev = SimDevice::new(round_config()).unwrap();
    let s = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(1000).unwrap();
    let buf = dev.alloc(1000).unwrap();
    let start = dev.create_event().unwrap();
    let end = dev.create_event().unwrap();
    dev.record_event(start, s).unwrap();
    dev.copy_to_device(s, &host, 0, &buf, 0, 1000).unwrap(); // 100 + 1000 ns
    dev.launch(
        s,
        &ComputeStep {
            reads: None,
            checksum_into: None,
            work: Duration::from_nanos(500),
        },
    )
    .unwrap(); // 10 + 500 ns
    dev.copy_to_host(s, &buf, 0, &host, 0, 1000).unwrap(); // 1100 ns
    dev.record_event(end, s).unwrap();
    dev.synchronize_event(end).unwrap();
    assert_eq!(dev.elapsed(start, end).unwrap(), Duration::from_nanos(2710));
    assert_eq!(dev.host_time_ps().unwrap(), 2_710_000);
    let trace = dev.trace().unwrap();
    assert_eq!(trace.len(), 3);
    for w in trace.windows(2) {
        assert!(w[1].start_ps >= w[0].end_ps, "stream order broken: {w:?}");
    }
}

#[test]
fn copies_share_one_engine_while_compute_overlaps() {
    let dev = SimDevice::new(round_config()).unwrap();
    let s1 = dev.create_stream().unwrap();
    let s2 = dev.create_stream().unwrap();
    let s3 = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(2000).unwrap();
    let buf = dev.alloc(2000).unwrap();
    dev.copy_to_device(s1, &host, 0, &buf, 0, 1000).unwrap(); // 0..1100
    dev.copy_to_device(s2, &host, 1000, &buf, 1000, 1000)
        .unwrap(); // waits: 1100..2200
    dev.launch(
        s3,
        &ComputeStep {
            reads: None,
            checksum_into: None,
            work: Duration::from_nanos(990),
        },
    )
    .unwrap(); // overlaps: 0..1000
    dev.copy_to_host(s3, &buf, 0, &host, 0, 100).unwrap(); // D→H engine free: 1000..1200
    assert_eq!(dev.stream_time_ps(s1).unwrap(), 1_100_000);
    assert_eq!(dev.stream_time_ps(s2).unwrap(), 2_200_000);
    assert_eq!(dev.stream_time_ps(s3).unwrap(), 1_200_000);
    let trace = dev.trace().unwrap();
    let engines: Vec<SimEngine> = trace.iter().map(|o| o.engine).collect();
    assert_eq!(
        engines,
        [
            SimEngine::ToDevice,
            SimEngine::ToDevice,
            SimEngine::Compute,
            SimEngine::ToHost
        ]
    );
}

#[test]
fn events_order_work_across_streams() {
    let dev = SimDevice::new(round_config()).unwrap();
    let copy = dev.create_stream().unwrap();
    let compute = dev.create_stream().unwrap();
    let host = dev.alloc_pinned(1000).unwrap();
    let buf = dev.alloc(1000).unwrap();
    let ready = dev.create_event().unwrap();
    let never = dev.create_event().unwrap();
    dev.wait_event(compute, never).unwrap(); // never recorded: no-op
    assert_eq!(dev.stream_time_ps(compute).unwrap(), 0);
    dev.copy_to_device(copy, &host, 0, &buf, 0, 1000).unwrap(); // ends at 1100
    dev.record_event(ready, copy).unwrap();
    assert_eq!(dev.event_time_ps(ready).unwrap(), Some(1_100_000));
    dev.wait_event(compute, ready).unwrap();
    dev.launch(
        compute,
        &ComputeStep {
            reads: Some(DeviceRange {
                buffer: &buf,
                offset: 0,
                bytes: 1000,
            }),
            checksum_into: None,
            work: Duration::from_nanos(10),
        },
    )
    .unwrap();
    let last = *dev.trace().unwrap().last().unwrap();
    assert_eq!(last.engine, SimEngine::Compute);
    assert_eq!(last.start_ps, 1_100_000);
    // max(work 10 ns, 1000 B at 10 B/ns = 100 ns) + 10 ns launch.
    assert_eq!(last.end_ps, 1_210_000);
    // After the host synchronizes, new work starts no earlier than the host clock.
    dev.synchronize_stream(compute).unwrap();
    let late = dev.create_stream().unwrap();
    assert_eq!(dev.stream_time_ps(late).unwrap(), 1_210_000);
}

#[test]
fn the_model_is_deterministic() {
    let run = || {
        let dev = SimDevice::new(round_config()).unwrap();
        let streams: Vec<_> = (0..3).map(|_| dev.create_stream().unwrap()).collect();
        let host = dev.alloc_pinned(4096).unwrap();
        let buf = dev.alloc(4096).unwrap();
        for i in 0..30u64 {
            let s = streams[(i % 3) as usize];
            dev.copy_to_device(s, &host, 0, &buf, 0, 100 * (i + 1))
                .unwrap();
            dev.launch(
                s,
                &ComputeStep {
                    reads: None,
                    checksum_into: None,
                    work: Duration::from_nanos(37 * i),
                },
            )
            .unwrap();
        }
        let ops = dev.trace().unwrap();
        ops.iter()
            .map(|o| (o.stream.index(), o.engine, o.bytes, o.start_ps, o.end_ps))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn cuda_device_reports_unsupported_or_works() {
    // Without the `cuda` feature, or without a driver, the constructor is a clean error.
    match CudaDevice::new(0) {
        Ok(dev) => assert!(dev.capacity_bytes() > 0),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(!e.context().is_empty());
        }
    }
}

#[test]
fn one_device_is_shared_between_threads() {
    let dev = std::sync::Arc::new(SimDevice::new(round_config()).unwrap());
    let workers: Vec<_> = (0..4u8)
        .map(|t| {
            let dev = dev.clone();
            std::thread::spawn(move || {
                let s = dev.create_stream().unwrap();
                let host = dev.alloc_pinned(1024).unwrap();
                let buf = dev.alloc(1024).unwrap();
                for round in 0..50u8 {
                    let data = pattern(1024, t.wrapping_mul(50).wrapping_add(round));
                    dev.write_pinned(&host, 0, &data).unwrap();
                    dev.copy_to_device(s, &host, 0, &buf, 0, 1024).unwrap();
                    dev.copy_to_host(s, &buf, 0, &host, 0, 1024).unwrap();
                    dev.synchronize_stream(s).unwrap();
                    let mut out = vec![0u8; 1024];
                    dev.read_pinned(&host, 0, &mut out).unwrap();
                    assert_eq!(out, data, "thread {t} round {round}");
                }
                dev.free(buf).unwrap();
                dev.free_pinned(host).unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(dev.allocated_bytes(), 0);
    assert_eq!(dev.stream_and_event_count().unwrap().0, 4);
}
