//! The server against a reference model: random operation sequences through the real client
//! must give the same answers as a `BTreeMap` model, including capacity accounting (full →
//! OutOfFarMemory, nothing changed); and concurrent writers racing destroy/create keep the
//! byte accounting exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use farmem_net::{Client, ClientConfig, ErrorKind};
use farmem_server::store::OBJECT_OVERHEAD_BYTES;
use farmem_server::{Server, ServerConfig, Store};
use proptest::prelude::*;

const TOKEN: &str = "model-token";
const CAPACITY: u64 = 4096;

#[derive(Clone, Debug)]
enum Op {
    Create(u64),
    Destroy(u64),
    Write(u64, u64, usize),
    Read(u64, u64),
    Remove(u64, u64),
    WriteBatch(u64, Vec<(u64, usize)>),
    ReadBatch(u64, Vec<u64>),
}

fn op() -> impl Strategy<Value = Op> {
    let ds = 0u64..3;
    let obj = 0u64..6;
    prop_oneof![
        2 => ds.clone().prop_map(Op::Create),
        1 => ds.clone().prop_map(Op::Destroy),
        4 => (ds.clone(), obj.clone(), 0usize..900).prop_map(|(d, o, n)| Op::Write(d, o, n)),
        3 => (ds.clone(), obj.clone()).prop_map(|(d, o)| Op::Read(d, o)),
        2 => (ds.clone(), obj.clone()).prop_map(|(d, o)| Op::Remove(d, o)),
        2 => (ds.clone(), proptest::collection::vec((obj.clone(), 0usize..600), 0..4))
            .prop_map(|(d, v)| Op::WriteBatch(d, v)),
        2 => (ds, proptest::collection::vec(obj, 0..5)).prop_map(|(d, v)| Op::ReadBatch(d, v)),
    ]
}

/// The model: data structures of objects; contents are `len` copies of a byte derived from the
/// op index, so stale data is detected.
type Model = BTreeMap<u64, BTreeMap<u64, Vec<u8>>>;

fn used(model: &Model) -> u64 {
    model
        .values()
        .flat_map(|m| m.values())
        .map(|v| v.len() as u64 + OBJECT_OVERHEAD_BYTES)
        .sum()
}

fn kind_of<T>(r: &farmem_net::Result<T>) -> Option<ErrorKind> {
    r.as_ref().err().map(|e| e.kind())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn server_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let server = Server::start(ServerConfig::new("127.0.0.1:0", CAPACITY, TOKEN)).unwrap();
        let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
        let mut model = Model::new();
        for (step, op) in ops.iter().enumerate() {
            let fill = step as u8;
            match op {
                Op::Create(ds) => {
                    c.create_ds(*ds, 0).unwrap();
                    model.entry(*ds).or_default();
                }
                Op::Destroy(ds) => {
                    let r = c.destroy_ds(*ds);
                    let expected = model.remove(ds).map(|_| ()).ok_or(ErrorKind::NotFound);
                    prop_assert_eq!(r.map_err(|e| e.kind()), expected);
                }
                Op::Write(ds, o, n) => {
                    let data = vec![fill; *n];
                    let r = c.write(*ds, *o, &data);
                    match model.get_mut(ds) {
                        None => prop_assert_eq!(kind_of(&r), Some(ErrorKind::NotFound)),
                        Some(m) => {
                            let old = m.get(o).map_or(0, |v| v.len() as u64 + OBJECT_OVERHEAD_BYTES);
                            let total = used(&model) - old + *n as u64 + OBJECT_OVERHEAD_BYTES;
                            if total > CAPACITY {
                                prop_assert_eq!(kind_of(&r), Some(ErrorKind::OutOfFarMemory));
                            } else {
                                prop_assert!(r.is_ok(), "{:?}", r);
                                model.get_mut(ds).unwrap().insert(*o, data);
                            }
                        }
                    }
                }
                Op::Read(ds, o) => {
                    let r = c.read(*ds, *o);
                    match model.get(ds) {
                        None => prop_assert_eq!(kind_of(&r), Some(ErrorKind::NotFound)),
                        Some(m) => prop_assert_eq!(r.unwrap(), m.get(o).cloned()),
                    }
                }
                Op::Remove(ds, o) => {
                    let r = c.remove(*ds, *o);
                    match model.get_mut(ds) {
                        None => prop_assert_eq!(kind_of(&r), Some(ErrorKind::NotFound)),
                        Some(m) => prop_assert_eq!(r.unwrap(), m.remove(o).is_some()),
                    }
                }
                Op::WriteBatch(ds, items) => {
                    let datas: Vec<Vec<u8>> = items.iter().map(|(_, n)| vec![fill; *n]).collect();
                    let pairs: Vec<(u64, &[u8])> =
                        items.iter().zip(&datas).map(|((o, _), d)| (*o, &d[..])).collect();
                    let r = c.write_batch(*ds, &pairs);
                    match model.get(ds) {
                        None => prop_assert_eq!(kind_of(&r), Some(ErrorKind::NotFound)),
                        Some(m) => {
                            let mut after = m.clone();
                            for (o, d) in &pairs {
                                after.insert(*o, d.to_vec());
                            }
                            let mut whole = model.clone();
                            whole.insert(*ds, after.clone());
                            if used(&whole) > CAPACITY {
                                prop_assert_eq!(kind_of(&r), Some(ErrorKind::OutOfFarMemory));
                            } else {
                                prop_assert!(r.is_ok(), "{:?}", r);
                                model.insert(*ds, after);
                            }
                        }
                    }
                }
                Op::ReadBatch(ds, objs) => {
                    let r = c.read_batch(*ds, objs);
                    match model.get(ds) {
                        None => prop_assert_eq!(kind_of(&r), Some(ErrorKind::NotFound)),
                        Some(m) => {
                            let expected: Vec<Option<Vec<u8>>> =
                                objs.iter().map(|o| m.get(o).cloned()).collect();
                            prop_assert_eq!(r.unwrap(), expected);
                        }
                    }
                }
            }
            let stats = c.stats().unwrap();
            prop_assert_eq!(stats.used_bytes, used(&model), "after step {} {:?}", step, op);
            prop_assert_eq!(stats.data_structures, model.len() as u64);
            prop_assert_eq!(stats.objects, model.values().map(|m| m.len() as u64).sum::<u64>());
        }
    }
}

#[test]
fn writers_racing_destroy_and_create_keep_accounting_exact() {
    let store = Arc::new(Store::new(64 << 20));
    store.create_ds(1, 0).unwrap();
    let writers: Vec<_> = (0..3u64)
        .map(|t| {
            let s = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..2000u64 {
                    // NotFound while the structure is destroyed is expected; nothing else is.
                    if let Err(e) = s.write(1, t * 10_000 + i % 50, &vec![1; (i % 300) as usize]) {
                        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                    }
                    if i % 7 == 0 {
                        let _ = s.remove(1, t * 10_000 + (i / 7) % 50);
                    }
                }
            })
        })
        .collect();
    let churn = {
        let s = Arc::clone(&store);
        std::thread::spawn(move || {
            for _ in 0..300 {
                let _ = s.destroy_ds(1);
                s.create_ds(1, 0).unwrap();
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    churn.join().unwrap();
    let mut expected = 0u64;
    let mut count = 0u64;
    store
        .for_each_object(1, |_, d| {
            expected += d.len() as u64 + OBJECT_OVERHEAD_BYTES;
            count += 1;
        })
        .unwrap();
    assert_eq!(store.used(), expected);
    assert_eq!(store.object_count(), count);
    store.destroy_ds(1).unwrap();
    assert_eq!((store.used(), store.object_count()), (0, 0));
}
