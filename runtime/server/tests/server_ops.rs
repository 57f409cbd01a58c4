//! Every operation through a real client against an embedded server: objects, batches,
//! capacity (full → OutOfFarMemory, nothing lost), stats, the Compute op and shutdown.

use farmem_net::{Client, ClientConfig, ErrorKind};
use farmem_server::agent::ds_arg;
use farmem_server::store::OBJECT_OVERHEAD_BYTES;
use farmem_server::{FunctionRegistry, Server, ServerConfig, StoreView};

const TOKEN: &str = "ops-token";

fn start(capacity: u64) -> (farmem_server::ServerHandle, Client) {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", capacity, TOKEN)).unwrap();
    let client = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    (server, client)
}

#[test]
fn objects_round_trip_and_missing_ones_are_none() {
    let (server, c) = start(1 << 20);
    c.ping().unwrap();
    c.create_ds(1, 3).unwrap();
    c.create_ds(1, 3).unwrap();
    assert_eq!(
        c.create_ds(1, 4).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(c.read(1, 10).unwrap(), None);
    c.write(1, 10, b"ten").unwrap();
    c.write(1, 11, b"").unwrap();
    assert_eq!(c.read(1, 10).unwrap().as_deref(), Some(&b"ten"[..]));
    assert_eq!(c.read(1, 11).unwrap().as_deref(), Some(&b""[..]));
    c.write(1, 10, b"TEN!").unwrap();
    assert_eq!(c.read(1, 10).unwrap().as_deref(), Some(&b"TEN!"[..]));
    assert!(c.remove(1, 10).unwrap());
    assert!(!c.remove(1, 10).unwrap());
    assert_eq!(c.read(1, 10).unwrap(), None);
    let e = c.read(2, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.context().contains("data structure 2"), "{e}");
    assert_eq!(c.write(2, 1, b"x").unwrap_err().kind(), ErrorKind::NotFound);
    server.shutdown();
}

#[test]
fn batches_read_and_write_many_objects() {
    let (_server, c) = start(1 << 20);
    c.create_ds(7, 0).unwrap();
    let data: Vec<Vec<u8>> = (0..100u64).map(|i| vec![i as u8; i as usize]).collect();
    let pairs: Vec<(u64, &[u8])> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u64, &d[..]))
        .collect();
    c.write_batch(7, &pairs).unwrap();
    let ids: Vec<u64> = (0..105).rev().collect();
    let got = c.read_batch(7, &ids).unwrap();
    for (id, obj) in ids.iter().zip(&got) {
        if *id < 100 {
            assert_eq!(obj.as_deref(), Some(&data[*id as usize][..]), "object {id}");
        } else {
            assert_eq!(obj, &None);
        }
    }
    assert_eq!(c.read_batch(7, &[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
}

#[test]
fn full_server_is_out_of_far_memory_and_loses_nothing() {
    let object = 4096usize;
    let per = object as u64 + OBJECT_OVERHEAD_BYTES;
    let (server, c) = start(per * 10);
    c.create_ds(1, 0).unwrap();
    for i in 0..10u64 {
        c.write(1, i, &vec![i as u8; object]).unwrap();
    }
    let e = c.write(1, 10, &vec![0; object]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
    assert!(
        e.context().contains("--capacity"),
        "message says what to do: {e}"
    );
    let batch: Vec<(u64, &[u8])> = vec![(0, &[1u8; 8][..]), (20, &[0u8; 8000][..])];
    assert_eq!(
        c.write_batch(1, &batch).unwrap_err().kind(),
        ErrorKind::OutOfFarMemory
    );
    for i in 0..10u64 {
        assert_eq!(
            c.read(1, i).unwrap(),
            Some(vec![i as u8; object]),
            "object {i} intact"
        );
    }
    let stats = c.stats().unwrap();
    assert_eq!(
        (stats.used_bytes, stats.capacity_bytes, stats.objects),
        (per * 10, per * 10, 10)
    );
    // Freeing space makes room again.
    assert!(c.remove(1, 3).unwrap());
    c.write(1, 10, &vec![7; object]).unwrap();
    c.destroy_ds(1).unwrap();
    assert_eq!(c.stats().unwrap().used_bytes, 0);
    assert_eq!(server.stats().data_structures, 0);
}

#[test]
fn stats_count_connections_and_requests() {
    let (server, c) = start(1 << 20);
    let before = c.stats().unwrap();
    assert_eq!(
        before.connections, 2,
        "the default pool has two connections"
    );
    for _ in 0..5 {
        c.ping().unwrap();
    }
    let after = c.stats().unwrap();
    assert_eq!(after.requests, before.requests + 6);
    drop(c);
    // Connection threads deregister when the client leaves.
    for _ in 0..500 {
        if server.stats().connections == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server.stats().connections, 0);
}

#[test]
fn compute_runs_builtins_and_registered_functions_next_to_the_data() {
    let mut functions = FunctionRegistry::with_builtins();
    functions
        .register("max_len", |store: &StoreView<'_>, args: &[u8]| {
            let ds = ds_arg("max_len", args)?;
            let mut max = 0u64;
            store.for_each_object(ds, |_, d| max = max.max(d.len() as u64))?;
            Ok(max.to_le_bytes().to_vec())
        })
        .unwrap();
    functions
        .register(
            "explode",
            |_: &StoreView<'_>, _: &[u8]| -> farmem_server::Result<Vec<u8>> {
                panic!("remote function bug")
            },
        )
        .unwrap();
    let server =
        Server::start_with_functions(ServerConfig::new("127.0.0.1:0", 1 << 20, TOKEN), functions)
            .unwrap();
    let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    c.create_ds(9, 1).unwrap();
    let mut expected = 0u64;
    for i in 0..50u64 {
        let words: Vec<u8> = (0..i % 5)
            .flat_map(|w| (i * 100 + w).to_le_bytes())
            .collect();
        expected += (0..i % 5).map(|w| i * 100 + w).sum::<u64>();
        c.write(9, i, &words).unwrap();
    }
    let ds = 9u64.to_le_bytes();
    assert_eq!(c.compute("count", &ds).unwrap(), 50u64.to_le_bytes());
    assert_eq!(c.compute("sum_u64", &ds).unwrap(), expected.to_le_bytes());
    assert_eq!(c.compute("max_len", &ds).unwrap(), 32u64.to_le_bytes());
    let e = c.compute("median", &ds).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.context().contains("count") && e.context().contains("max_len"),
        "{e}"
    );
    assert_eq!(
        c.compute("count", b"short").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        c.compute("count", &77u64.to_le_bytes()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let e = c.compute("explode", b"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
    // The connection and the server survive the panic.
    assert_eq!(c.compute("count", &ds).unwrap(), 50u64.to_le_bytes());
}

#[test]
fn shutdown_disconnects_clients_promptly() {
    let (server, c) = start(1 << 20);
    c.ping().unwrap();
    server.shutdown();
    let e = c.ping().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn invalid_configs_are_refused_at_start() {
    let e = Server::start(ServerConfig::new("127.0.0.1:0", 1 << 20, ""))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = Server::start(ServerConfig::new("256.0.0.1:0", 1 << 20, "t"))
        .err()
        .unwrap();
    assert!(e.context().contains("256.0.0.1"), "{e}");
}

#[test]
fn max_connections_refuses_extra_clients_with_a_clear_error() {
    let mut cfg = ServerConfig::new("127.0.0.1:0", 1 << 20, TOKEN);
    cfg.max_connections = 2;
    let server = Server::start(cfg).unwrap();
    let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    let e = Client::connect(server.addr(), &ClientConfig::new(TOKEN).with_connections(1))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::ServerError, "{e}");
    assert!(e.context().contains("max_connections"), "{e}");
    c.ping().unwrap();
}
