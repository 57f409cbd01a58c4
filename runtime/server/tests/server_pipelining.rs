//! Many OS threads share one connection to a real server; every response is matched to its
//! request (the bytes of each object encode its thread, id and version).

use std::sync::Arc;

use farmem_net::{Client, ClientConfig, Request, Response};
use farmem_server::{Server, ServerConfig};

const TOKEN: &str = "pipelining-token";

/// Scale of the runs: `FARMEM_STRESS=1` runs ten times longer.
fn scale() -> u64 {
    if std::env::var("FARMEM_STRESS").is_ok_and(|v| v == "1") {
        10
    } else {
        1
    }
}

fn payload(thread: u64, object: u64, version: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [thread, object, version] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    // Vary the size so frames of different lengths interleave in the stream.
    v.resize(24 + ((object * 7 + version) % 300) as usize, thread as u8);
    v
}

#[test]
fn threads_sharing_one_connection_get_their_own_responses() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 256 << 20, TOKEN)).unwrap();
    let client = Arc::new(
        Client::connect(server.addr(), &ClientConfig::new(TOKEN).with_connections(1)).unwrap(),
    );
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let c = Arc::clone(&client);
            std::thread::spawn(move || {
                c.create_ds(t, 0).unwrap();
                for version in 0..3 * scale() {
                    for object in 0..100u64 {
                        c.write(t, object, &payload(t, object, version)).unwrap();
                        assert_eq!(
                            c.read(t, object).unwrap(),
                            Some(payload(t, object, version))
                        );
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn deep_pipeline_from_one_thread_over_a_pool() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 256 << 20, TOKEN)).unwrap();
    let client =
        Client::connect(server.addr(), &ClientConfig::new(TOKEN).with_connections(3)).unwrap();
    client.create_ds(1, 0).unwrap();
    let data: Vec<Vec<u8>> = (0..500u64).map(|i| payload(1, i, 9)).collect();
    let writes: Vec<_> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            client
                .submit(&Request::Write {
                    ds: 1,
                    object: i as u64,
                    data: d,
                })
                .unwrap()
        })
        .collect();
    for w in writes {
        assert_eq!(w.wait().unwrap(), Response::Done);
    }
    let reads: Vec<_> = (0..500u64)
        .map(|i| client.submit(&Request::Read { ds: 1, object: i }).unwrap())
        .collect();
    for (i, r) in reads.into_iter().enumerate() {
        assert_eq!(
            r.wait().unwrap(),
            Response::Object(Some(data[i].clone())),
            "object {i}"
        );
    }
    let in_flight: usize = client.connections().iter().map(|c| c.in_flight()).sum();
    assert_eq!(in_flight, 0);
}

/// One thread queues far more than the socket buffers hold in both directions before it waits
/// for anything: the submitting writer must drain responses itself when the server stops
/// reading (the server blocks writing responses nobody reads), or both sides deadlock.
#[test]
fn deep_pipeline_of_big_objects_without_waiting_does_not_deadlock() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let server = Server::start(ServerConfig::new("127.0.0.1:0", 256 << 20, TOKEN)).unwrap();
        let client =
            Client::connect(server.addr(), &ClientConfig::new(TOKEN).with_connections(1)).unwrap();
        client.create_ds(1, 0).unwrap();
        let object = vec![0x3c; 64 << 10];
        client.write(1, 0, &object).unwrap();
        let mut pending = Vec::new();
        for i in 0..400u64 {
            pending.push(
                client
                    .submit(&Request::Write {
                        ds: 1,
                        object: i,
                        data: &object,
                    })
                    .unwrap(),
            );
            pending.push(client.submit(&Request::Read { ds: 1, object: 0 }).unwrap());
        }
        let mut reads = 0;
        for p in pending {
            if let Response::Object(Some(d)) = p.wait().unwrap() {
                assert_eq!(d, object);
                reads += 1;
            }
        }
        tx.send(reads).unwrap();
    });
    let reads = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("client and server deadlocked on full socket buffers");
    assert_eq!(reads, 400);
}

/// Large read-batch answers (received in place into pooled bodies, `MSG_WAITALL`) interleave
/// with small ones on one connection from several threads; each object is located in its body
/// with `object_spans` and matches what was written, missing objects included.
#[test]
fn large_batch_answers_are_received_in_place_among_small_ones() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 256 << 20, TOKEN)).unwrap();
    let client = Arc::new(
        Client::connect(server.addr(), &ClientConfig::new(TOKEN).with_connections(1)).unwrap(),
    );
    let big = |object: u64| -> Vec<u8> {
        // 4 KiB to 12 KiB objects, so a batch is tens to hundreds of KiB.
        let n = 4096 + (object as usize % 3) * 4096;
        (0..n).map(|k| (k as u64 * 31 + object) as u8).collect()
    };
    client.create_ds(1, 0).unwrap();
    for object in 0..64u64 {
        client.write(1, object, &big(object)).unwrap();
    }
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let c = Arc::clone(&client);
            std::thread::spawn(move || {
                for round in 0..10 * scale() {
                    // A batch of 4..=64 objects (one missing at the end), then small reads.
                    let n = 4 + ((t * 13 + round * 7) % 61);
                    let mut objects: Vec<u64> = (0..n).collect();
                    objects.push(1000 + t);
                    let batch = c
                        .submit(&Request::ReadBatch {
                            ds: 1,
                            objects: objects.clone(),
                        })
                        .unwrap();
                    let small: Vec<_> = (0..8u64)
                        .map(|o| c.submit(&Request::Read { ds: 1, object: o }).unwrap())
                        .collect();
                    let answer = batch.wait_frame().unwrap();
                    let spans = answer.object_spans().unwrap();
                    assert_eq!(spans.len(), objects.len());
                    for (o, span) in objects.iter().zip(&spans) {
                        match span {
                            Some(r) => assert_eq!(answer.body()[r.clone()], big(*o)[..]),
                            None => assert!(*o >= 1000, "object {o} is missing"),
                        }
                    }
                    assert!(spans.last().is_some_and(Option::is_none));
                    drop(answer);
                    for (o, p) in small.into_iter().enumerate() {
                        assert_eq!(
                            p.wait().unwrap(),
                            Response::Object(Some(big(o as u64))),
                            "thread {t} round {round} small read {o}"
                        );
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
