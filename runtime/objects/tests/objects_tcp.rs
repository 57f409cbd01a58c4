//! RemArray and RemVec over a `TcpBackend` to an embedded memory server on 127.0.0.1:0, with
//! local memory a few percent of the data: results match `Vec`, a full server is
//! `OutOfFarMemory`, green threads fetch through the relay, batches round-trip.

use std::sync::Arc;

use farmem_objects::{
    Backend, Config, ErrorKind, FarMemory, ReadRequest, TcpBackend, TcpBackendConfig, WriteRequest,
};
use farmem_server::ServerHandle;
use rand::{Rng, SeedableRng};

mod common;

use common::{small_local, start_server, tcp_backend};

const TOKEN: &str = "objects-tcp-test";

fn server(capacity: u64) -> ServerHandle {
    start_server(capacity, TOKEN)
}

fn tcp(server: &ServerHandle) -> Arc<TcpBackend> {
    tcp_backend(&server.addr().to_string(), TOKEN)
}

#[test]
fn remarray_and_remvec_match_vec_over_tcp() {
    let srv = server(64 << 20);
    let fm = FarMemory::new(small_local(), tcp(&srv)).unwrap();
    // 4 MiB of data against 128 KiB local: about 3% local.
    let n = 512 * 1024;
    let mut arr = fm.array::<u64>(n).unwrap();
    let mut model = vec![0u64; n];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut scope = fm.scope();
    for step in 0..20_000 {
        let i = rng.gen_range(0..n);
        if rng.gen_bool(0.5) {
            let v: u64 = rng.gen();
            arr.set(i, v, &scope).unwrap();
            model[i] = v;
        } else {
            assert_eq!(
                *arr.get(i, &scope).unwrap(),
                model[i],
                "element {i} at step {step}"
            );
        }
        if step % 64 == 0 {
            scope.renew();
        }
    }
    // A sequential pass (the prefetcher runs) sees every write.
    let got = arr.to_vec(&mut scope).unwrap();
    assert!(got == model, "full scan differs from the model");

    let mut v = fm.vec::<u32>().unwrap();
    let mut vmodel = Vec::new();
    for k in 0..100_000u32 {
        v.push(k.wrapping_mul(2_654_435_761), &scope).unwrap();
        vmodel.push(k.wrapping_mul(2_654_435_761));
        if k % 128 == 0 {
            scope.renew();
        }
    }
    assert_eq!(v.pop(&scope).unwrap(), vmodel.pop());
    assert!(v.to_vec(&mut scope).unwrap() == vmodel);
    drop(scope);

    let m = fm.metrics();
    assert!(
        m.misses > 0 && m.bytes_written_back > 0,
        "data went over TCP: {m:?}"
    );
    assert!(
        m.prefetches_issued > 0,
        "prefetcher issued reads through the backend: {m:?}"
    );
    assert!(fm.take_error().is_none());
    assert!(srv.stats().objects > 0);
    drop((arr, v));
    drop(fm);
    assert_eq!(
        srv.stats().objects,
        0,
        "dropped containers removed their objects"
    );
    srv.shutdown();
}

#[test]
fn full_server_is_out_of_far_memory() {
    let srv = server(256 << 10);
    let fm = FarMemory::new(small_local(), tcp(&srv)).unwrap();
    let e = fm.array::<u64>(1 << 20).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
    assert!(e.context().contains("full"), "{e}");
    let mut v = fm.vec::<u64>().unwrap();
    let s = fm.scope();
    let mut pushed = 0u64;
    let err = loop {
        match v.push(pushed, &s) {
            Ok(()) => pushed += 1,
            Err(e) => break e,
        }
        assert!(pushed < 1 << 20, "the server never filled up");
    };
    assert_eq!(err.kind(), ErrorKind::OutOfFarMemory, "{err}");
    assert_eq!(v.len() as u64, pushed);
    assert_eq!(*v.get(pushed as usize - 1, &s).unwrap(), pushed - 1);
    drop(s);
    drop(v);
    drop(fm);
    srv.shutdown();
}

/// Over TCP, zeroed objects are created on the server without their zeros on the wire: the
/// server charges them, they read back as zeros, and a run that does not fit is
/// `OutOfFarMemory` with nothing created.
#[test]
fn create_zeroed_over_tcp_charges_the_server_and_reads_back_zeros() {
    let srv = server(1 << 20);
    let b = tcp(&srv);
    b.create_zeroed(3, 10..14, 4096).unwrap();
    let mut buf = vec![9u8; 4096];
    b.read(3, 13, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
    assert_eq!(
        b.read(3, 14, &mut buf).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let stats = srv.stats();
    assert_eq!(stats.objects, 4);
    assert!(stats.used_bytes >= 4 * 4096, "{stats:?}");
    let e = b.create_zeroed(3, 100..400, 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
    assert_eq!(srv.stats().objects, 4, "a refused run creates nothing");
    b.create_zeroed(3, 20..20, 4096).unwrap();
    drop(b);
    srv.shutdown();
}

#[test]
fn backend_ops_batches_and_errors() {
    let srv = server(16 << 20);
    let b = tcp(&srv);
    let mut buf = [0u8; 8];
    assert_eq!(
        b.read(3, 1, &mut buf).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    b.remove(3, 1).unwrap();
    b.write(3, 1, &[1; 8]).unwrap();
    b.read(3, 1, &mut buf).unwrap();
    assert_eq!(buf, [1; 8]);
    let e = b.read(3, 2, &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.context().contains(&srv.addr().to_string()), "{e}");
    let mut short = [0u8; 4];
    assert_eq!(
        b.read(3, 1, &mut short).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    let data: Vec<Vec<u8>> = (0..40u8).map(|k| vec![k; 100]).collect();
    let writes: Vec<WriteRequest<'_>> = data
        .iter()
        .enumerate()
        .map(|(k, d)| WriteRequest {
            ds: (k % 3) as u16 + 10,
            obj: k as u32,
            data: d,
        })
        .collect();
    b.write_batch(&writes).unwrap();
    let mut out: Vec<Vec<u8>> = vec![vec![0u8; 100]; 40];
    let mut reads: Vec<ReadRequest<'_>> = out
        .iter_mut()
        .enumerate()
        .map(|(k, buf)| ReadRequest {
            ds: (k % 3) as u16 + 10,
            obj: k as u32,
            buf,
        })
        .collect();
    b.read_batch(&mut reads).unwrap();
    drop(reads);
    assert_eq!(out, data);
    let p = b.issue_read(10, 3, 100).unwrap();
    let mut one = vec![0u8; 100];
    p.wait(&mut one).unwrap();
    assert_eq!(one, vec![3u8; 100]);
    b.remove(10, 3).unwrap();
    assert_eq!(
        b.issue_read(10, 3, 100)
            .unwrap()
            .wait(&mut one)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    let e = TcpBackend::connect(srv.addr().to_string(), "wrong-token", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let mut bad = TcpBackendConfig::new(srv.addr().to_string(), TOKEN);
    bad.namespace = Some(1 << 50);
    assert_eq!(
        TcpBackend::with_config(&bad).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    srv.shutdown();
}

#[test]
fn two_instances_on_one_server_do_not_collide() {
    let srv = server(64 << 20);
    let fa = FarMemory::new(small_local(), tcp(&srv)).unwrap();
    let fb = FarMemory::new(small_local(), tcp(&srv)).unwrap();
    let mut a = fa.array::<u64>(64 * 1024).unwrap();
    let mut b = fb.array::<u64>(64 * 1024).unwrap();
    assert_eq!(a.ds_id(), b.ds_id(), "both use container id 0 locally");
    let (mut sa, mut sb) = (fa.scope(), fb.scope());
    for i in (0..a.len()).step_by(97) {
        a.set(i, i as u64, &sa).unwrap();
        b.set(i, !(i as u64), &sb).unwrap();
        sa.renew();
        sb.renew();
    }
    for i in (0..a.len()).step_by(97) {
        assert_eq!(*a.get(i, &sa).unwrap(), i as u64);
        assert_eq!(*b.get(i, &sb).unwrap(), !(i as u64));
        sa.renew();
        sb.renew();
    }
}

/// 16 green threads on 2 workers fetch over TCP, with and without the relay, each green thread
/// in its own chunk range or (`shared`) all in one: see the `TcpBackend` note on why green
/// threads of one worker that park in a fetch were kept apart while the object layer's
/// busy-wait blocked the worker. Sharing, a green thread finds chunks another one is fetching
/// and must park (not block its worker) until they land.
fn green_threads_fetch(relay: bool, shared: bool) {
    let srv = server(64 << 20);
    let mut c = TcpBackendConfig::new(srv.addr().to_string(), TOKEN);
    c.green_relay = relay;
    let config = Config::builder()
        .local_bytes(16 * (64 << 10))
        .region_bytes(64 << 10)
        .chunk_bytes(1024)
        .prefetch_depth(0)
        // A bound, not a timing: the fill writes 4 MiB through 1 MiB, and on a loaded machine
        // the evacuator's write-backs can outlast the default 200 ms wait for a region.
        .alloc_wait(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let fm =
        Arc::new(FarMemory::new(config, Arc::new(TcpBackend::with_config(&c).unwrap())).unwrap());
    let n = 512 * 1024; // 4 MiB over 1 MiB local
    let mut arr = fm.array::<u64>(n).unwrap();
    {
        let mut s = fm.scope();
        let src: Vec<u64> = (0..n as u64).map(|i| i * 3).collect();
        arr.write_slice(0, &src, &mut s).unwrap();
    }
    let arr = Arc::new(arr);
    let rt = farmem_sched::Runtime::builder().workers(2).build().unwrap();
    let threads = 16u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (fm, arr) = (Arc::clone(&fm), Arc::clone(&arr));
            rt.spawn(move || {
                assert!(farmem_sched::in_green_thread());
                let mut s = fm.scope();
                let span = n as u64 / threads;
                let mut x = t * 7919 + 1;
                for _ in 0..200 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Sharing: 32 chunks for all 16 green threads, so they meet on fetches.
                    let (base, range) = if shared {
                        (0, span / 8)
                    } else {
                        (t * span, span)
                    };
                    let i = (base + (x >> 20) % range) as usize;
                    assert_eq!(*arr.get(i, &s).unwrap(), i as u64 * 3);
                    s.renew();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(fm.metrics().misses > 0);
}

#[test]
fn green_threads_fetch_with_the_relay() {
    green_threads_fetch(true, false);
}

#[test]
fn green_threads_fetch_without_the_relay() {
    green_threads_fetch(false, false);
}

#[test]
fn green_threads_sharing_chunks_fetch_with_the_relay() {
    green_threads_fetch(true, true);
}
