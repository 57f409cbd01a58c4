//! The `hash_index` remote function over the wire: put/get/remove/len through
//! `Client::compute`, a full server answers `OutOfFarMemory` and keeps its entries, malformed
//! arguments cost only their own request, concurrent writers from many connections keep the
//! count exact, and `clear` gives every byte of a map back.

use std::sync::Arc;

use farmem_net::hash::{
    decode_flag, decode_get, decode_len, HashCall, HashOp, HASH_INDEX_FUNCTION,
};
use farmem_net::{Client, ClientConfig, ErrorKind};
use farmem_server::{Server, ServerConfig};

const TOKEN: &str = "server-hash-token";

fn call(c: &Client, ds: u64, op: HashOp<'_>) -> farmem_net::Result<Vec<u8>> {
    c.compute(HASH_INDEX_FUNCTION, &HashCall { ds, op }.encode()?)
}

#[test]
fn hash_index_over_the_wire_and_full_server() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 32 << 10, TOKEN)).unwrap();
    let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    // No such data structure yet.
    let e = call(&c, 9, HashOp::Len).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    c.create_ds(9, 0).unwrap();
    assert_eq!(decode_len(&call(&c, 9, HashOp::Len).unwrap()).unwrap(), 0);
    let mut n = 0u64;
    let full = loop {
        let key = n.to_le_bytes();
        match call(
            &c,
            9,
            HashOp::Put {
                key: &key,
                value: &[7; 500],
            },
        ) {
            Ok(r) => assert!(decode_flag(&r).unwrap()),
            Err(e) => break e,
        }
        n += 1;
        assert!(n < 1000, "a 32 KiB server never filled");
    };
    assert_eq!(full.kind(), ErrorKind::OutOfFarMemory, "{full}");
    assert_eq!(decode_len(&call(&c, 9, HashOp::Len).unwrap()).unwrap(), n);
    let got = call(
        &c,
        9,
        HashOp::Get {
            key: &0u64.to_le_bytes(),
        },
    )
    .unwrap();
    assert_eq!(decode_get(&got).unwrap(), Some(&[7u8; 500][..]));
    // Garbage arguments: a protocol error for that call, the connection stays usable.
    let e = c
        .compute(HASH_INDEX_FUNCTION, b"\x09\0\0\0\0\0\0\0\x01\x07")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    let r = call(
        &c,
        9,
        HashOp::Remove {
            key: &0u64.to_le_bytes(),
        },
    )
    .unwrap();
    assert!(decode_flag(&r).unwrap());
    assert_eq!(
        decode_len(&call(&c, 9, HashOp::Len).unwrap()).unwrap(),
        n - 1
    );
    server.shutdown();
}

#[test]
fn clear_frees_a_maps_bytes_and_leaves_other_maps_alone() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 1 << 20, TOKEN)).unwrap();
    let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    c.create_ds(4, 0).unwrap();
    c.create_ds(5, 0).unwrap();
    let put = |ds: u64, k: u64| {
        let key = k.to_le_bytes();
        call(
            &c,
            ds,
            HashOp::Put {
                key: &key,
                value: &[1; 100],
            },
        )
        .unwrap();
    };
    put(5, 1);
    let one_map = server.stats();
    for k in 0..300 {
        put(4, k);
    }
    assert!(server.stats().used_bytes > one_map.used_bytes + 300 * 100);
    assert_eq!(
        decode_len(&call(&c, 4, HashOp::Clear).unwrap()).unwrap(),
        300
    );
    let after = server.stats();
    assert_eq!(
        (after.used_bytes, after.objects),
        (one_map.used_bytes, one_map.objects)
    );
    assert_eq!(decode_len(&call(&c, 4, HashOp::Len).unwrap()).unwrap(), 0);
    assert_eq!(decode_len(&call(&c, 5, HashOp::Len).unwrap()).unwrap(), 1);
    // Clearing a map that does not exist is NotFound, like every other op.
    assert_eq!(
        call(&c, 77, HashOp::Clear).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    server.shutdown();
}

#[test]
fn concurrent_writers_on_many_connections_keep_the_count() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 64 << 20, TOKEN)).unwrap();
    let addr = server.addr();
    let setup = Client::connect(addr, &ClientConfig::new(TOKEN)).unwrap();
    setup.create_ds(3, 0).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let c = Arc::new(Client::connect(addr, &ClientConfig::new(TOKEN)).unwrap());
                // Every thread puts the shared keys 0..200 (so racing puts of one key) and
                // its own keys, then removes its odd keys.
                for k in 0..200u64 {
                    let key = k.to_le_bytes();
                    call(
                        &c,
                        3,
                        HashOp::Put {
                            key: &key,
                            value: &t.to_le_bytes(),
                        },
                    )
                    .unwrap();
                    let own = (1000 * (t + 1) + k).to_le_bytes();
                    call(
                        &c,
                        3,
                        HashOp::Put {
                            key: &own,
                            value: b"x",
                        },
                    )
                    .unwrap();
                }
                for k in (1..200u64).step_by(2) {
                    let own = (1000 * (t + 1) + k).to_le_bytes();
                    assert!(
                        decode_flag(&call(&c, 3, HashOp::Remove { key: &own }).unwrap()).unwrap()
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        decode_len(&call(&setup, 3, HashOp::Len).unwrap()).unwrap(),
        200 + 4 * 100
    );
    for k in 0..200u64 {
        let r = call(
            &setup,
            3,
            HashOp::Get {
                key: &k.to_le_bytes(),
            },
        )
        .unwrap();
        let v = decode_get(&r).unwrap().unwrap();
        assert!(u64::from_le_bytes(v.try_into().unwrap()) < 4);
    }
    server.shutdown();
}
