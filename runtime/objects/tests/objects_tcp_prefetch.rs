//! Batch prefetching over TCP: `TcpBackend::issue_read_batch` lands the right bytes in request
//! order (also when a batch is split into several frames by a small frame bound), a missing
//! object fails only its own handle, and a prefetched scan of a `RemArray` matches a `Vec`.

use std::sync::Arc;
use std::time::Duration;

use farmem_objects::{Backend, Config, ErrorKind, FarMemory, TcpBackend};
use farmem_server::{Server, ServerConfig, ServerHandle};

mod common;

const TOKEN: &str = "objects-tcp-prefetch-test";

fn server(max_frame_body: Option<u32>) -> ServerHandle {
    let mut c = ServerConfig::new("127.0.0.1:0", 64 << 20, TOKEN);
    if let Some(m) = max_frame_body {
        c.max_frame_body = m;
    }
    Server::start(c).unwrap()
}

fn tcp(server: &ServerHandle) -> Arc<TcpBackend> {
    common::tcp_backend(&server.addr().to_string(), TOKEN)
}

fn object_bytes(obj: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (obj as usize * 31 + k * 7) as u8)
        .collect()
}

fn check_batch(b: &TcpBackend, objs: &[u32], len: usize) {
    let reads: Vec<(u32, usize)> = objs.iter().map(|&o| (o, len)).collect();
    let pending = b.issue_read_batch(3, &reads).unwrap();
    assert_eq!(pending.len(), objs.len());
    for (p, &o) in pending.into_iter().zip(objs) {
        let mut buf = vec![0u8; len];
        p.wait(&mut buf).unwrap();
        assert!(buf == object_bytes(o, len), "object {o} landed wrong bytes");
    }
}

#[test]
fn batch_reads_land_in_request_order_and_split_to_the_frame_bound() {
    // A 16 KiB frame bound makes the backend's budget 8 KiB: 1 KiB objects split into frames
    // of 7 objects each.
    for bound in [None, Some(16 << 10)] {
        let srv = server(bound);
        let b = tcp(&srv);
        let len = 1024;
        for o in 0..40u32 {
            b.write(3, o, &object_bytes(o, len)).unwrap();
        }
        check_batch(&b, &(0..40).collect::<Vec<_>>(), len);
        check_batch(&b, &[39, 2, 17, 2, 0], len);
        assert!(b.issue_read_batch(3, &[]).unwrap().is_empty());

        // A missing object fails its own handle (NotFound); the others still land.
        let pending = b
            .issue_read_batch(3, &[(5, len), (1000, len), (6, len)])
            .unwrap();
        let mut results = Vec::new();
        for p in pending {
            let mut buf = vec![0u8; len];
            results.push(p.wait(&mut buf).map(|()| buf));
        }
        assert!(results[0].as_ref().unwrap() == &object_bytes(5, len));
        assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
        assert!(results[2].as_ref().unwrap() == &object_bytes(6, len));

        // A wrong size is an error of that object only; a never-created container fails at once.
        let pending = b.issue_read_batch(3, &[(7, 512), (8, len)]).unwrap();
        let mut it = pending.into_iter();
        let mut small = vec![0u8; 512];
        let e = it.next().unwrap().wait(&mut small).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let mut buf = vec![0u8; len];
        it.next().unwrap().wait(&mut buf).unwrap();
        assert!(buf == object_bytes(8, len));
        assert_eq!(
            b.issue_read_batch(77, &[(0, len)]).err().map(|e| e.kind()),
            Some(ErrorKind::NotFound)
        );
        // Handles dropped without waiting leave the connection usable.
        drop(b.issue_read_batch(3, &[(1, len), (2, len)]).unwrap());
        check_batch(&b, &[3, 4], len);
    }
}

#[test]
fn prefetched_scans_match_a_vec() {
    let srv = server(None);
    let config = Config::builder()
        .local_bytes(8 * (16 << 10))
        .region_bytes(16 << 10)
        .chunk_bytes(1024)
        .alloc_shards(2)
        .prefetch_depth(32)
        .alloc_wait(Duration::from_secs(2))
        .grace_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let fm = FarMemory::new(config, tcp(&srv)).unwrap();
    // 2 MiB of data against 128 KiB local.
    let n = 256 * 1024;
    let model: Vec<u64> = (0..n as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let mut arr = fm.array::<u64>(n).unwrap();
    let mut scope = fm.scope();
    for start in (0..n).step_by(4096) {
        arr.write_slice(start, &model[start..start + 4096], &mut scope)
            .unwrap();
    }
    let before = fm.metrics();
    for pass in 0..3 {
        let got = arr.to_vec(&mut scope).unwrap();
        assert!(
            got == model,
            "prefetched scan {pass} differs from the model"
        );
    }
    let after = fm.metrics();
    assert!(
        after.prefetches_used > before.prefetches_used,
        "sequential scans must use batch-prefetched chunks ({before:?} -> {after:?})"
    );
}
