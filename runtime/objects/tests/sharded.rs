//! Far memory over several servers through a `ShardedBackend`: containers over three
//! in-process backends and over two embedded TCP memory servers match `Vec` / `HashMap` with
//! their data spread over every server, power of two choices keeps placement balanced, and a
//! dead server fails only the containers placed on it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use farmem_objects::{
    Backend, ErrorKind, FarMemory, InProcessBackend, RemArray, RemHashMap, RemVec, ShardedBackend,
};
use farmem_server::ServerHandle;
use rand::{Rng, SeedableRng};

mod common;

use common::{small_local, start_server, tcp_backend};

const TOKEN: &str = "objects-sharded-test";

fn in_process(n: usize) -> (Vec<Arc<InProcessBackend>>, Arc<ShardedBackend>) {
    let inner: Vec<Arc<InProcessBackend>> = (0..n)
        .map(|_| Arc::new(InProcessBackend::new(64 << 20)))
        .collect();
    let dyns = inner
        .iter()
        .map(|b| b.clone() as Arc<dyn Backend>)
        .collect();
    (inner, Arc::new(ShardedBackend::with_seed(dyns, 7).unwrap()))
}

fn server() -> ServerHandle {
    start_server(64 << 20, TOKEN)
}

fn over_tcp(servers: &[&ServerHandle]) -> Arc<ShardedBackend> {
    let dyns = servers
        .iter()
        .map(|s| tcp_backend(&s.addr().to_string(), TOKEN) as Arc<dyn Backend>)
        .collect();
    Arc::new(ShardedBackend::new(dyns).unwrap())
}

/// Random sets and gets on `arrays` against `models`, then a full scan of each.
fn exercise_arrays(fm: &FarMemory, arrays: &mut [RemArray<u64>], models: &mut [Vec<u64>]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut scope = fm.scope();
    for step in 0..20_000 {
        let a = rng.gen_range(0..arrays.len());
        let i = rng.gen_range(0..models[a].len());
        if rng.gen_bool(0.5) {
            let v: u64 = rng.gen();
            arrays[a].set(i, v, &scope).unwrap();
            models[a][i] = v;
        } else {
            assert_eq!(
                *arrays[a].get(i, &scope).unwrap(),
                models[a][i],
                "array {a} element {i} at step {step}"
            );
        }
        if step % 64 == 0 {
            scope.renew();
        }
    }
    for (a, (arr, model)) in arrays.iter().zip(models.iter()).enumerate() {
        assert!(arr.to_vec(&mut scope).unwrap() == *model, "array {a} scan");
    }
}

fn filled_arrays(fm: &FarMemory, count: usize, n: usize) -> (Vec<RemArray<u64>>, Vec<Vec<u64>>) {
    let mut scope = fm.scope();
    let mut arrays = Vec::new();
    let mut models = Vec::new();
    for a in 0..count {
        let model: Vec<u64> = (0..n as u64).map(|i| i * 31 + a as u64).collect();
        let mut arr = fm.array::<u64>(n).unwrap();
        arr.write_slice(0, &model, &mut scope).unwrap();
        arrays.push(arr);
        models.push(model);
    }
    (arrays, models)
}

#[test]
fn containers_over_three_in_process_backends_match_std_and_use_every_server() {
    let (inner, sharded) = in_process(3);
    let fm = FarMemory::new(small_local(), sharded.clone()).unwrap();
    // 12 arrays of 128 KiB (1.5 MiB) against 128 KiB local: most of it is remote.
    let (mut arrays, mut models) = filled_arrays(&fm, 12, 16 * 1024);
    exercise_arrays(&fm, &mut arrays, &mut models);

    let mut scope = fm.scope();
    let mut v = fm.vec::<u32>().unwrap();
    let mut vmodel = Vec::new();
    let mut list = fm.list::<u64>().unwrap();
    let mut lmodel = VecDeque::new();
    let queue = fm.queue::<u64>().unwrap();
    let mut qmodel = VecDeque::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for k in 0..60_000u64 {
        v.push(k as u32 ^ 0x5a5a, &scope).unwrap();
        vmodel.push(k as u32 ^ 0x5a5a);
        if rng.gen_bool(0.5) {
            list.push_back(k, &scope).unwrap();
            lmodel.push_back(k);
        } else {
            list.push_front(k, &scope).unwrap();
            lmodel.push_front(k);
        }
        queue.push(k * 3).unwrap();
        qmodel.push_back(k * 3);
        if k % 3 == 0 {
            assert_eq!(queue.pop().unwrap(), qmodel.pop_front());
        }
        if k % 128 == 0 {
            scope.renew();
        }
    }
    for (k, want) in vmodel.iter().enumerate() {
        assert_eq!(v.get(k, &scope).unwrap(), want, "vec element {k}");
        if k % 128 == 0 {
            scope.renew();
        }
    }
    assert_eq!(list.to_vec(&mut scope).unwrap(), Vec::from(lmodel));
    let mut drained = Vec::new();
    while let Some(x) = queue.pop().unwrap() {
        drained.push(x);
    }
    assert_eq!(drained, Vec::from(qmodel));

    let servers: Vec<usize> = arrays
        .iter()
        .map(|a| {
            sharded
                .server_of(a.ds_id())
                .expect("a written array is placed")
        })
        .collect();
    for (s, server) in inner.iter().enumerate() {
        assert!(servers.contains(&s), "no array on server {s}: {servers:?}");
        assert!(server.used_bytes() > 0, "server {s} holds nothing");
    }
    assert!(sharded.server_of(list.ds_id()).is_some());
}

#[test]
fn power_of_two_choices_balances_bytes_over_servers() {
    // 300 data structures of one 1 KiB object each, over 3 servers. Power of two choices never
    // picks the unique most loaded server, and picks the least loaded one whenever it is drawn
    // (2 draws in 3), so loads stay within a few objects of each other; random placement of
    // 300 would typically be off by ~10 per server.
    let (inner, sharded) = in_process(3);
    for ds in 0..300u16 {
        sharded.write(ds, 0, &[ds as u8; 1024]).unwrap();
    }
    let used: Vec<u64> = inner.iter().map(|b| b.used_bytes()).collect();
    assert_eq!(used.iter().sum::<u64>(), 300 * 1024);
    assert_eq!(
        used,
        sharded.placed_bytes(),
        "the client's count matches the servers'"
    );
    let (min, max) = (used.iter().min().unwrap(), used.iter().max().unwrap());
    assert!(max - min <= 6 * 1024, "unbalanced: {used:?}");

    // Over two servers both choices are always the two servers: the lighter one always wins,
    // so equal writes alternate exactly.
    let (inner, sharded) = in_process(2);
    for ds in 0..101u16 {
        sharded.write(ds, 0, &[1; 512]).unwrap();
    }
    let used: Vec<u64> = inner.iter().map(|b| b.used_bytes()).collect();
    assert_eq!(used.iter().max().unwrap() - used.iter().min().unwrap(), 512);
}

#[test]
fn containers_and_hash_maps_over_two_tcp_servers() {
    let (a, b) = (server(), server());
    let sharded = over_tcp(&[&a, &b]);
    let fm = FarMemory::new(small_local(), sharded.clone()).unwrap();
    let (mut arrays, mut models) = filled_arrays(&fm, 6, 16 * 1024);
    exercise_arrays(&fm, &mut arrays, &mut models);
    let servers: Vec<usize> = arrays
        .iter()
        .map(|a| sharded.server_of(a.ds_id()).unwrap())
        .collect();
    assert!(servers.contains(&0) && servers.contains(&1), "{servers:?}");

    // Hash maps place themselves with their first remote call (compute runs next to the data).
    let maps: Vec<RemHashMap<u64, u64>> = (0..4).map(|_| fm.hash_map(4 << 10).unwrap()).collect();
    let mut model: Vec<HashMap<u64, u64>> = vec![HashMap::new(); 4];
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for _ in 0..4000 {
        let m = rng.gen_range(0..4);
        let k = rng.gen_range(0..500u64);
        match rng.gen_range(0..3) {
            0 => {
                let v = rng.gen();
                assert_eq!(
                    maps[m].put(&k, &v).unwrap(),
                    model[m].insert(k, v).is_none()
                );
            }
            1 => assert_eq!(maps[m].get(&k).unwrap(), model[m].get(&k).copied()),
            _ => assert_eq!(maps[m].remove(&k).unwrap(), model[m].remove(&k).is_some()),
        }
    }
    for (m, map) in maps.iter().enumerate() {
        assert_eq!(map.len().unwrap(), model[m].len() as u64);
    }
    assert!(
        sharded.placed_bytes().iter().all(|&b| b > 0),
        "{:?}",
        sharded.placed_bytes()
    );
}

#[test]
fn a_dead_server_fails_only_the_containers_placed_on_it() {
    let (a, b) = (server(), server());
    let sharded = over_tcp(&[&a, &b]);
    let fm = FarMemory::new(small_local(), sharded.clone()).unwrap();
    let (arrays, models) = filled_arrays(&fm, 6, 16 * 1024);
    let mut scope = fm.scope();
    // A read pass leaves only clean chunks locally: nothing dirty is waiting for the server
    // that is about to die.
    for (arr, model) in arrays.iter().zip(&models) {
        assert!(arr.to_vec(&mut scope).unwrap() == *model);
    }
    let on: Vec<usize> = arrays
        .iter()
        .map(|a| sharded.server_of(a.ds_id()).unwrap())
        .collect();
    assert!(on.contains(&0) && on.contains(&1), "{on:?}");
    a.shutdown(); // server 0

    let check_live = |scope: &mut farmem_objects::DerefScope<'_>| {
        for (k, arr) in arrays.iter().enumerate().filter(|(k, _)| on[*k] == 1) {
            assert!(
                arr.to_vec(scope).unwrap() == models[k],
                "array {k} on the live server"
            );
        }
    };
    check_live(&mut scope);
    for (k, arr) in arrays.iter().enumerate().filter(|(k, _)| on[*k] == 0) {
        let mut failure = None;
        for (i, want) in models[k].iter().enumerate() {
            match arr.get(i, &scope) {
                Ok(v) => assert_eq!(v, want, "data read before the failure is right"),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            scope.renew();
        }
        let e = failure.unwrap_or_else(|| panic!("array {k} read fine from a dead server"));
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    }
    check_live(&mut scope);
    // A new container avoids the dead server: its placement retries on the other choice.
    let (fresh, fresh_model) = filled_arrays(&fm, 2, 16 * 1024);
    for (arr, model) in fresh.iter().zip(&fresh_model) {
        assert_eq!(sharded.server_of(arr.ds_id()), Some(1));
        assert!(arr.to_vec(&mut scope).unwrap() == *model);
    }
    drop(b);
}

/// The remote agent's `Pairwise` over a `ShardedBackend` via `compute_with`: a fresh output
/// vector is placed on its inputs' server, and the vector adopts what the server wrote; an input
/// placed on the other server makes the call `Unsupported`.
#[test]
fn compute_with_places_the_output_beside_its_inputs_and_refuses_split_inputs() {
    use farmem_net::compute::{ArithOp, ColumnCall, ColumnOp, ColumnRef, ElemType};
    let (s1, s2) = (server(), server());
    let sharded = over_tcp(&[&s1, &s2]);
    let fm = FarMemory::new(small_local(), sharded.clone()).unwrap();
    let n = 20_011usize; // a partial last chunk
    let mut scope = fm.scope();
    let mut vecs: Vec<RemVec<i64>> = Vec::new();
    // Enough vectors that two land on different servers and two on the same one.
    for k in 0..8i64 {
        let mut v = fm.vec::<i64>().unwrap();
        let vals: Vec<i64> = (0..n as i64).map(|i| i * (k + 1) - 7).collect();
        v.extend_from_slice(&vals, &mut scope).unwrap();
        v.flush().unwrap();
        vecs.push(v);
    }
    drop(scope);
    let server = |v: &RemVec<i64>| sharded.server_of(v.ds_id()).unwrap();
    let (a, b) = (0..8)
        .flat_map(|i| (0..8).map(move |j| (i, j)))
        .find(|&(i, j)| i != j && server(&vecs[i]) == server(&vecs[j]))
        .unwrap();
    let split = (0..8)
        .find(|&j| server(&vecs[j]) != server(&vecs[a]))
        .unwrap();
    let col = ColumnRef {
        ds: 0,
        elem: ElemType::I64,
        chunk_len: vecs[a].chunk_len() as u64,
        len: n as u64,
    };
    let call = ColumnCall {
        column: col,
        op: ColumnOp::Pairwise {
            op: ArithOp::Sub,
            other: col,
            dst: col,
        },
    }
    .encode();
    let fn_name = farmem_net::compute::COLUMN_WITH_FUNCTION;

    let mut dst = fm.vec::<i64>().unwrap();
    assert_eq!(sharded.server_of(dst.ds_id()), None);
    let mut not_empty = fm.vec::<i64>().unwrap();
    not_empty.push(1, &fm.scope()).unwrap();
    let e = not_empty.adopt_remote(5).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    sharded
        .compute_with(
            vecs[a].ds_id(),
            &[vecs[b].ds_id(), dst.ds_id()],
            fn_name,
            &call,
        )
        .unwrap();
    assert_eq!(sharded.server_of(dst.ds_id()), Some(server(&vecs[a])));
    dst.adopt_remote(n).unwrap();
    assert_eq!(dst.resident_chunks(), 0, "adopted chunks start remote");
    let got = dst.to_vec(&mut fm.scope()).unwrap();
    let (ka, kb) = (a as i64 + 1, b as i64 + 1);
    assert_eq!(got.len(), n);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, &v)| v == (i as i64 * ka - 7) - (i as i64 * kb - 7)),
        "the adopted vector holds what the server computed"
    );

    let other = fm.vec::<i64>().unwrap();
    let e = sharded
        .compute_with(
            vecs[a].ds_id(),
            &[vecs[split].ds_id(), other.ds_id()],
            fn_name,
            &call,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(
        sharded.server_of(other.ds_id()),
        None,
        "a refused call places nothing"
    );
}
