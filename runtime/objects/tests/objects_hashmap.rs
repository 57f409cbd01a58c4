//! RemHashMap over a `TcpBackend` to an embedded memory server on 127.0.0.1:0: differential
//! against `std::collections::HashMap` with the local cache at a few percent of the data,
//! concurrent green threads, growth while readers read, and clear error kinds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use farmem_objects::{
    Backend, Config, ErrorKind, FarMemory, RemHashMap, TcpBackend, TcpBackendConfig,
};
use farmem_server::{Server, ServerConfig, ServerHandle};
use rand::{Rng, SeedableRng};

const TOKEN: &str = "objects-hashmap-test";

fn server(capacity: u64) -> ServerHandle {
    Server::start(ServerConfig::new("127.0.0.1:0", capacity, TOKEN)).unwrap()
}

fn tcp(server: &ServerHandle, green_relay: bool) -> Arc<dyn Backend> {
    let mut c = TcpBackendConfig::new(server.addr().to_string(), TOKEN);
    c.request_timeout = Duration::from_secs(20);
    c.green_relay = green_relay;
    Arc::new(TcpBackend::with_config(&c).unwrap())
}

#[test]
fn differential_against_std_hashmap_with_a_small_cache() {
    let srv = server(64 << 20);
    let keys = 3000u64;
    // ~100-byte values: ~330 KB of data; the cache gets 3% of it.
    let map: RemHashMap<u64, Vec<u8>> = RemHashMap::new(tcp(&srv, false), 10 << 10).unwrap();
    let mut model: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for step in 0..6000u32 {
        // Skewed keys (a square of a uniform draw) so some are hot and the cache has work.
        let u: f64 = rng.gen();
        let k = (u * u * keys as f64) as u64;
        match rng.gen_range(0..100) {
            0..=49 => assert_eq!(
                map.get(&k).unwrap(),
                model.get(&k).cloned(),
                "get {k} at {step}"
            ),
            50..=79 => {
                let v: Vec<u8> = (0..rng.gen_range(50..150)).map(|_| rng.gen()).collect();
                let new = map.put(&k, &v).unwrap();
                assert_eq!(new, model.insert(k, v).is_none(), "put {k} at {step}");
            }
            80..=96 => {
                assert_eq!(
                    map.remove(&k).unwrap(),
                    model.remove(&k).is_some(),
                    "remove {k}"
                );
            }
            _ => assert_eq!(map.len().unwrap(), model.len() as u64, "len at {step}"),
        }
    }
    for k in 0..keys {
        assert_eq!(
            map.get(&k).unwrap(),
            model.get(&k).cloned(),
            "final get {k}"
        );
    }
    let stats = map.cache_stats();
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    assert!(stats.bytes <= 10 << 10, "{stats:?}");
    // A clone is the same map.
    let other = map.clone();
    assert_eq!(other.len().unwrap(), model.len() as u64);
    assert_eq!(other.is_empty().unwrap(), model.is_empty());
}

#[test]
fn differential_with_pod_values_in_fixed_size_slots() {
    // Pod keys and values take the cache's fixed-slot store; evictions, replacements and
    // removals must keep every cached entry equal to the model's.
    let srv = server(64 << 20);
    let map: RemHashMap<u64, [u64; 4]> = RemHashMap::new(tcp(&srv, false), 6 << 10).unwrap();
    let mut model: HashMap<u64, [u64; 4]> = HashMap::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for step in 0..6000u64 {
        let u: f64 = rng.gen();
        let k = (u * u * 2000.0) as u64;
        match rng.gen_range(0..100) {
            0..=59 => assert_eq!(
                map.get(&k).unwrap(),
                model.get(&k).copied(),
                "get {k} at {step}"
            ),
            60..=84 => {
                let v = [step, k, rng.gen(), 7];
                assert_eq!(map.put(&k, &v).unwrap(), model.insert(k, v).is_none());
            }
            _ => assert_eq!(map.remove(&k).unwrap(), model.remove(&k).is_some()),
        }
    }
    for k in 0..2000 {
        assert_eq!(
            map.get(&k).unwrap(),
            model.get(&k).copied(),
            "final get {k}"
        );
    }
    let stats = map.cache_stats();
    assert!(
        stats.hits > 0 && stats.misses > 0 && stats.entries > 50,
        "{stats:?}"
    );
    assert!(stats.bytes <= 6 << 10, "{stats:?}");
}

#[test]
fn dropping_the_last_handle_frees_the_maps_bytes_on_the_server() {
    let srv = server(64 << 20);
    let backend = tcp(&srv, false);
    let map: RemHashMap<u64, [u8; 100]> = RemHashMap::new(backend.clone(), 4 << 10).unwrap();
    let empty = srv.stats();
    for k in 0..500u64 {
        map.put(&k, &[k as u8; 100]).unwrap();
    }
    let full = srv.stats();
    assert!(full.used_bytes >= empty.used_bytes + 500 * 100, "{full:?}");
    let other = map.clone();
    drop(map);
    assert_eq!(
        other.get(&7).unwrap(),
        Some([7; 100]),
        "a clone keeps the map alive"
    );
    drop(other);
    // The clear goes out after the drop, from the map's sender thread or a thread of its own
    // when none runs: wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while srv.stats().used_bytes != empty.used_bytes && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = srv.stats();
    assert_eq!(
        (after.used_bytes, after.objects),
        (empty.used_bytes, empty.objects),
        "{after:?}"
    );
    // The backend and the server are fine for the next map.
    let next: RemHashMap<u64, u64> = RemHashMap::new(backend, 0).unwrap();
    assert!(next.put(&1, &2).unwrap());
}

#[test]
fn string_keys_pod_values_and_a_far_memory_constructor() {
    let srv = server(16 << 20);
    let fm = FarMemory::new(
        Config::builder()
            .local_bytes(4 * (16 << 10))
            .region_bytes(16 << 10)
            .build()
            .unwrap(),
        tcp(&srv, false),
    )
    .unwrap();
    let map = fm.hash_map::<String, [u64; 4]>(4 << 10).unwrap();
    let a = fm.hash_map::<String, [u64; 4]>(4 << 10).unwrap();
    for i in 0..200u64 {
        assert!(map
            .put(&format!("key-{i}"), &[i, i + 1, i + 2, i + 3])
            .unwrap());
    }
    // Two maps on one backend are separate.
    assert_eq!(a.len().unwrap(), 0);
    assert_eq!(a.get(&"key-1".to_string()).unwrap(), None);
    for i in 0..200u64 {
        assert_eq!(
            map.get(&format!("key-{i}")).unwrap(),
            Some([i, i + 1, i + 2, i + 3])
        );
    }
    assert!(map.contains_key(&"key-7".to_string()).unwrap());
    assert!(!map.contains_key(&"nope".to_string()).unwrap());
    assert_eq!(map.len().unwrap(), 200);
}

#[test]
fn concurrent_green_threads_read_write_and_remove() {
    let srv = server(64 << 20);
    let map: RemHashMap<u64, u64> = RemHashMap::new(tcp(&srv, true), 8 << 10).unwrap();
    // Keys below 1000 are shared and read-only; each thread owns a range above.
    for k in 0..1000u64 {
        map.put(&k, &(k * 7)).unwrap();
    }
    let rt = farmem_sched::Runtime::builder().workers(2).build().unwrap();
    let threads = 24u64;
    let per = 60u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let map = map.clone();
            rt.spawn(move || {
                let base = 10_000 * (t + 1);
                let mut x = t * 7919 + 1;
                for i in 0..per {
                    assert!(map.put(&(base + i), &(base + i + 1)).unwrap());
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let shared = (x >> 33) % 1000;
                    assert_eq!(map.get(&shared).unwrap(), Some(shared * 7));
                }
                for i in 0..per {
                    assert_eq!(map.get(&(base + i)).unwrap(), Some(base + i + 1));
                    assert!(!map.put(&(base + i), &(base + i + 2)).unwrap());
                    assert_eq!(map.get(&(base + i)).unwrap(), Some(base + i + 2));
                    if i % 2 == 0 {
                        assert!(map.remove(&(base + i)).unwrap());
                        assert_eq!(map.get(&(base + i)).unwrap(), None);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(map.len().unwrap(), 1000 + threads * per / 2);
    for t in 0..threads {
        let base = 10_000 * (t + 1);
        for i in 0..per {
            let want = (i % 2 == 1).then_some(base + i + 2);
            assert_eq!(map.get(&(base + i)).unwrap(), want);
        }
    }
}

#[test]
fn uncached_misses_from_many_green_threads_share_round_trips() {
    // No cache: every get is a miss, so the sender thread batches them and answers every
    // waiter with its own key's value.
    let srv = server(64 << 20);
    let map: RemHashMap<u64, u64> = RemHashMap::new(tcp(&srv, true), 0).unwrap();
    for k in 0..500u64 {
        map.put(&k, &(k ^ 0xabcd)).unwrap();
    }
    let rt = farmem_sched::Runtime::builder().workers(2).build().unwrap();
    let handles: Vec<_> = (0..48u64)
        .map(|t| {
            let map = map.clone();
            rt.spawn(move || {
                for i in 0..150u64 {
                    let k = (t * 131 + i * 7) % 600; // keys 500.. are absent
                    let want = (k < 500).then_some(k ^ 0xabcd);
                    assert_eq!(map.get(&k).unwrap(), want, "key {k}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = map.cache_stats();
    assert_eq!(stats.hits, 0);
    assert_eq!(stats.misses, 48 * 150);
    assert!(
        stats.miss_batches >= 1 && stats.miss_batches <= stats.misses,
        "{stats:?}"
    );
    assert_eq!(stats.entries, 0);
}

#[test]
fn grows_from_1k_while_readers_verify() {
    // 1k → 60k entries in the default (debug CI) run, 1k → 10M with FARMEM_STRESS=1.
    let target: u64 = if std::env::var_os("FARMEM_STRESS").is_some() {
        10_000_000
    } else {
        60_000
    };
    let srv = server(8 << 30);
    let map: RemHashMap<u64, u64> = RemHashMap::new(tcp(&srv, false), 64 << 10).unwrap();
    let value = |k: u64| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 5;
    for k in 0..1000u64 {
        map.put(&k, &value(k)).unwrap();
    }
    let writers = 4u64;
    // progress[w]: writer w has inserted every key w, w + writers, ... below this one.
    let progress: Arc<Vec<AtomicU64>> =
        Arc::new((0..writers).map(|w| AtomicU64::new(1000 + w)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (map, progress, done, reads) =
                (map.clone(), progress.clone(), done.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(r);
                while !done.load(Ordering::Acquire) {
                    let w = rng.gen_range(0..writers);
                    let below = progress[w as usize].load(Ordering::Acquire);
                    let k = if rng.gen_bool(0.5) {
                        rng.gen_range(0..1000)
                    } else {
                        let steps = (below - 1000) / writers;
                        if steps == 0 {
                            continue;
                        }
                        1000 + w + writers * rng.gen_range(0..steps)
                    };
                    assert_eq!(map.get(&k).unwrap(), Some(value(k)), "key {k}");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let writer_threads: Vec<_> = (0..writers)
        .map(|w| {
            let (map, progress) = (map.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut k = 1000 + w;
                while k < target {
                    assert!(map.put(&k, &value(k)).unwrap());
                    k += writers;
                    progress[w as usize].store(k, Ordering::Release);
                }
            })
        })
        .collect();
    for t in writer_threads {
        t.join().unwrap();
    }
    done.store(true, Ordering::Release);
    for t in readers {
        t.join().unwrap();
    }
    assert_eq!(map.len().unwrap(), target);
    assert!(reads.load(Ordering::Relaxed) > 0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for _ in 0..500 {
        let k = rng.gen_range(0..target);
        assert_eq!(map.get(&k).unwrap(), Some(value(k)));
    }
}

#[test]
fn errors_have_clear_kinds() {
    // A backend without a remote agent.
    let fm = FarMemory::in_process(Config::default(), 1 << 20).unwrap();
    let e = fm.hash_map::<u64, u64>(1024).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);

    // A full server: OutOfFarMemory, and the failed put changed nothing.
    let srv = server(64 << 10);
    let map: RemHashMap<u64, Vec<u8>> = RemHashMap::new(tcp(&srv, false), 4 << 10).unwrap();
    let mut stored = 0u64;
    let err = loop {
        match map.put(&stored, &vec![stored as u8; 1000]) {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 1000, "a 64 KiB server never filled");
    };
    assert_eq!(err.kind(), ErrorKind::OutOfFarMemory, "{err}");
    assert!(stored > 10);
    assert_eq!(map.len().unwrap(), stored);
    assert_eq!(map.get(&stored).unwrap(), None);
    assert_eq!(map.get(&0).unwrap(), Some(vec![0u8; 1000]));
    // Removing makes room again.
    assert!(map.remove(&0).unwrap());
    assert!(map.put(&stored, &vec![1u8; 500]).unwrap());

    // An oversized entry is refused before it is sent.
    let e = map.put(&1, &vec![0u8; 2 << 20]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);

    // The server goes away: Disconnected, not a hang or a panic.
    srv.shutdown();
    let e = map.get(&123_456).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::Closed),
        "{e}"
    );
}
