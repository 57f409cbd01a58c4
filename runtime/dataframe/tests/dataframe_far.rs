//! `FarStorage`: the nine taxi steps against the independent computation of
//! `dataframe_steps.rs` with columns in far memory (in-process backend, and a real memory server
//! over TCP), at a local budget of a few percent of the data so the evacuator runs all along; and
//! every column and storage operation against the all-local baseline on the same elements.

#[path = "dataframe_steps.rs"]
#[allow(dead_code)]
mod steps;

use std::sync::Arc;

use farmem_dataframe::taxi;
use farmem_dataframe::{
    generate, load_csv, BinaryOp, CmpOp, ColumnStore, ErrorKind, FarStorage, LoadOptions,
    LocalColumn, LocalStorage, RowSet, Schema, Storage, TimePart, TripCoordinates,
};
use farmem_objects::{FarMemory, TcpBackend};
use farmem_server::{Server, ServerConfig, ServerHandle};
use rand::{Rng, SeedableRng};
use steps::dataframe_support::{check_seen, naive_read, TempPath};

/// Local memory for the step tests: 256 KiB against ~4 MiB of columns (30k rows), about 6%.
const SMALL_LOCAL: usize = 256 << 10;
const FAR_CAPACITY: u64 = 1 << 30;
const TOKEN: &str = "dataframe-far-test";

fn in_process(local: usize) -> FarStorage {
    let config = FarStorage::config_for(local).expect("config");
    FarStorage::new(FarMemory::in_process(config, FAR_CAPACITY).expect("far memory"))
}

fn over_tcp(local: usize) -> (ServerHandle, FarStorage) {
    let server =
        Server::start(ServerConfig::new("127.0.0.1:0", FAR_CAPACITY, TOKEN)).expect("server");
    let backend = TcpBackend::connect(server.addr().to_string(), TOKEN, 2).expect("connect");
    let config = FarStorage::config_for(local).expect("config");
    let far = FarMemory::new(config, Arc::new(backend)).expect("far memory");
    (server, FarStorage::new(far))
}

/// The frame is far bigger than local memory: the evacuator must have written chunks back and
/// scans must have fetched them again.
fn assert_went_remote(storage: &FarStorage) {
    let m = storage.far_memory().metrics();
    assert!(m.bytes_written_back > 0, "{m:?}");
    assert!(m.misses > 0, "{m:?}");
    assert!(storage.far_memory().take_error().is_none());
}

#[test]
fn nine_steps_match_an_independent_computation_in_process() {
    let path = TempPath::new("far-steps");
    generate(&path.0, steps::rows(), steps::SEED, None).expect("generate");
    let trips = naive_read(&path.0);
    let storage = in_process(SMALL_LOCAL);
    steps::check_all_steps(storage.clone(), &path.0, &trips);
    assert_went_remote(&storage);
}

#[test]
fn nine_steps_match_an_independent_computation_over_tcp() {
    let path = TempPath::new("far-tcp-steps");
    generate(&path.0, steps::rows(), steps::SEED + 2, None).expect("generate");
    let trips = naive_read(&path.0);
    let (server, storage) = over_tcp(SMALL_LOCAL);
    steps::check_all_steps(storage.clone(), &path.0, &trips);
    assert_went_remote(&storage);
    drop(storage);
    server.shutdown();
}

/// Loading ends with every cached chunk clean (`ColumnStore::flush`): read-only steps that
/// evict the loaded chunks to make room drop them and write nothing back.
#[test]
fn read_only_steps_after_a_load_write_nothing_back() {
    let path = TempPath::new("far-clean-load");
    generate(&path.0, 20_000, 5, None).expect("generate");
    let storage = in_process(SMALL_LOCAL);
    let (df, _) =
        load_csv(&path.0, &Schema::taxi(), &storage, LoadOptions::default()).expect("far load");
    let before = storage.far_memory().metrics();
    taxi::vendor_summary(&df).expect("step 1");
    taxi::passenger_histogram(&df, 1).expect("step 2");
    taxi::passenger_histogram(&df, 2).expect("step 3");
    taxi::store_and_forward(&df).expect("step 5");
    let after = storage.far_memory().metrics();
    assert!(
        after.misses > before.misses,
        "the steps fetched nothing: {after:?}"
    );
    assert_eq!(
        after.bytes_written_back, before.bytes_written_back,
        "read-only steps wrote back chunks the load left dirty"
    );
}

#[test]
fn run_all_on_far_columns_equals_the_local_run() {
    let path = TempPath::new("far-runall");
    generate(&path.0, 20_000, 11, None).expect("generate");
    let load = |s| load_csv(&path.0, &Schema::taxi(), s, LoadOptions::default());
    let (mut local, _) = load(&LocalStorage).expect("local load");
    let far_storage = in_process(SMALL_LOCAL);
    let (mut far, report) = load_csv(
        &path.0,
        &Schema::taxi(),
        &far_storage,
        LoadOptions::default(),
    )
    .expect("load");
    assert_eq!(report.rows, 20_000);
    let mut a = taxi::run_all(&mut local, &mut Vec::new()).expect("local run");
    let mut b = taxi::run_all(&mut far, &mut Vec::new()).expect("far run");
    a.timings.clear();
    b.timings.clear();
    assert_eq!(a, b);
}

/// Values with the awkward cases: negative zero, NaNs, infinities, repeats.
fn f64_values(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n)
        .map(|i| match i % 97 {
            0 => -0.0,
            1 => 0.0,
            2 => f64::NAN,
            3 => f64::INFINITY,
            4 => f64::NEG_INFINITY,
            5 => -f64::NAN,
            _ => f64::from(rng.gen_range(-500i32..500)) / 8.0,
        })
        .collect()
}

fn check_column_ops<T, S>(storage: &S, values: &[T], probe: T)
where
    T: farmem_dataframe::Element,
    S: Storage,
{
    let far = storage.column_from_slice(values).expect("far column");
    let local = LocalColumn::from_vec(values.to_vec());
    let what = T::NAME;
    assert_eq!(far.len(), local.len(), "{what}");
    assert_eq!(far.to_vec().expect("to_vec").len(), values.len());
    let same_bits = |a: Vec<T>, b: Vec<T>| {
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{what}");
    };
    same_bits(far.to_vec().expect("to_vec"), values.to_vec());
    assert_eq!(far.count().unwrap(), local.count().unwrap(), "{what}");
    assert_eq!(
        format!("{:?}", far.sum().unwrap()),
        format!("{:?}", local.sum().unwrap()),
        "{what}"
    );
    assert_eq!(
        format!("{:?}", far.min().unwrap()),
        format!("{:?}", local.min().unwrap())
    );
    assert_eq!(
        format!("{:?}", far.max().unwrap()),
        format!("{:?}", local.max().unwrap())
    );
    assert_eq!(
        format!("{:?}", far.mean().unwrap()),
        format!("{:?}", local.mean().unwrap())
    );
    assert_eq!(
        format!("{:?}", far.median().unwrap()),
        format!("{:?}", local.median().unwrap())
    );
    same_bits(far.unique().unwrap(), local.unique().unwrap());
    assert_eq!(
        format!("{:?}", far.histogram().unwrap()),
        format!("{:?}", local.histogram().unwrap()),
        "{what}"
    );
    for op in [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ] {
        let rows = far.filter(op, probe).unwrap();
        assert_eq!(rows, local.filter(op, probe).unwrap(), "{what} {op:?}");
        assert_eq!(
            far.count_where(op, probe).unwrap(),
            local.count_where(op, probe).unwrap()
        );
        let g = far.gather(&rows).unwrap();
        same_bits(g.to_vec().unwrap(), local.gather(&rows).unwrap().into_vec());
        let h = format!("{:?}", far.histogram_of(&rows).unwrap());
        assert_eq!(
            h,
            format!("{:?}", local.histogram_of(&rows).unwrap()),
            "{what} {op:?}"
        );
        let gathered = local.gather(&rows).unwrap();
        assert_eq!(h, format!("{:?}", gathered.histogram().unwrap()), "{what}");
        same_bits(
            far.unique_of(&rows).unwrap(),
            local.unique_of(&rows).unwrap(),
        );
    }
    // Single elements and ranges that straddle chunk boundaries.
    let n = values.len();
    for i in [0, 1, n / 3, n / 2 + 7, n - 1] {
        same_bits(vec![far.get(i).unwrap()], vec![values[i]]);
    }
    let mut dst = vec![T::default(); n / 2];
    far.copy_range(n / 4, &mut dst).unwrap();
    same_bits(dst, values[n / 4..n / 4 + n / 2].to_vec());
    let mut seen = Vec::new();
    far.for_each_chunk_in(n / 5..n - 3, |off, c| {
        assert_eq!(off, n / 5 + seen.len());
        seen.extend_from_slice(c);
        Ok(())
    })
    .unwrap();
    same_bits(seen, values[n / 5..n - 3].to_vec());
    // Out of range is an error naming the range, never a panic.
    assert_eq!(far.get(n).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let mut big = vec![T::default(); 4];
    let e = far.copy_range(n - 2, &mut big).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = far.for_each_chunk_in(0..n + 1, |_, _| Ok(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(far
        .gather(&RowSet::from_sorted(vec![0, n as u32]).unwrap())
        .is_err());
    // An error from the closure stops the scan and comes back unchanged.
    let mut calls = 0;
    let e = far
        .for_each_chunk(|_| {
            calls += 1;
            Err(farmem_dataframe::Error::new(ErrorKind::Timeout, "stop"))
        })
        .unwrap_err();
    assert_eq!((e.kind(), calls), (ErrorKind::Timeout, 1));
}

fn check_storage_ops<S: Storage>(storage: &S, rows: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let a: Vec<i64> = (0..rows)
        .map(|_| rng.gen_range(1_420_070_400..1_470_000_000))
        .collect();
    let b: Vec<i64> = a.iter().map(|&x| x + rng.gen_range(-60..7200)).collect();
    let coords: Vec<Vec<f64>> = (0..4)
        .map(|_| (0..rows).map(|_| rng.gen_range(-75.0..-73.0)).collect())
        .collect();
    let local = LocalStorage;
    let (fa, fb) = (
        storage.column_from_slice(&a).unwrap(),
        storage.column_from_slice(&b).unwrap(),
    );
    let (la, lb) = (
        local.column_from_slice(&a).unwrap(),
        local.column_from_slice(&b).unwrap(),
    );
    for op in [BinaryOp::Add, BinaryOp::Sub] {
        assert_eq!(
            storage.zip_i64(&fb, &fa, op).unwrap().to_vec().unwrap(),
            local.zip_i64(&lb, &la, op).unwrap().into_vec()
        );
    }
    for part in [TimePart::Hour, TimePart::Weekday, TimePart::Month] {
        assert_eq!(
            storage.timestamp_part(&fa, part).unwrap().to_vec().unwrap(),
            local.timestamp_part(&la, part).unwrap().into_vec()
        );
    }
    let fc: Vec<_> = coords
        .iter()
        .map(|c| storage.column_from_slice(c).unwrap())
        .collect();
    let lc: Vec<_> = coords
        .iter()
        .map(|c| local.column_from_slice(c).unwrap())
        .collect();
    let far_km = storage
        .haversine_km(TripCoordinates {
            pickup_lat: &fc[0],
            pickup_lon: &fc[1],
            dropoff_lat: &fc[2],
            dropoff_lon: &fc[3],
        })
        .unwrap()
        .to_vec()
        .unwrap();
    let local_km = local
        .haversine_km(TripCoordinates {
            pickup_lat: &lc[0],
            pickup_lon: &lc[1],
            dropoff_lat: &lc[2],
            dropoff_lon: &lc[3],
        })
        .unwrap()
        .into_vec();
    assert_eq!(
        far_km.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        local_km.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    check_seen(storage, &fa, &fb, &fc);
    check_seen(&local, &la, &lb, &lc);
    let fk = storage.timestamp_part(&fa, TimePart::Weekday).unwrap();
    let lk = local.timestamp_part(&la, TimePart::Weekday).unwrap();
    let fd = storage.zip_i64(&fb, &fa, BinaryOp::Sub).unwrap();
    let ld = local.zip_i64(&lb, &la, BinaryOp::Sub).unwrap();
    assert_eq!(
        storage.group_median(&fk, &fd).unwrap(),
        local.group_median(&lk, &ld).unwrap()
    );
    // Columns of different lengths are refused by name.
    let short = storage.column_from_slice(&a[..rows / 2]).unwrap();
    let Err(e) = storage.zip_i64(&fa, &short, BinaryOp::Sub) else {
        panic!("zip_i64 of columns of different lengths succeeded");
    };
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("zip_i64"), "{e}");
}

#[test]
fn every_column_operation_matches_the_local_baseline() {
    // 128 KiB of local memory against ~1.1 MiB of columns of each type.
    let storage = in_process(128 << 10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let n = 70_001;
    let u8s: Vec<u8> = (0..n).map(|_| rng.gen_range(0..9)).collect();
    check_column_ops(&storage, &u8s, 4u8);
    let u16s: Vec<u16> = (0..n).map(|_| rng.gen_range(0..3000)).collect();
    check_column_ops(&storage, &u16s, 1500u16);
    let i64s: Vec<i64> = (0..n).map(|_| rng.gen_range(-1000..1000)).collect();
    check_column_ops(&storage, &i64s, -3i64);
    check_column_ops(&storage, &f64_values(n, &mut rng), 0.0f64);
    check_storage_ops(&storage, 50_000, 9);
    assert_went_remote(&storage);
}

#[test]
fn column_operations_over_tcp_match_the_local_baseline() {
    let (server, storage) = over_tcp(128 << 10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let n = 40_000;
    let i64s: Vec<i64> = (0..n).map(|_| rng.gen_range(-1000..1000)).collect();
    check_column_ops(&storage, &i64s, 17i64);
    check_column_ops(&storage, &f64_values(n, &mut rng), -0.0f64);
    check_storage_ops(&storage, 30_000, 10);
    assert_went_remote(&storage);
    drop(storage);
    server.shutdown();
}

#[test]
fn push_and_empty_columns_behave_like_local_ones() {
    let storage = in_process(128 << 10);
    let mut c = storage.new_column::<i64>().unwrap();
    assert!(c.is_empty());
    assert_eq!(c.min().unwrap(), None);
    assert_eq!(c.median().unwrap(), None);
    assert_eq!(c.mean().unwrap(), None);
    assert!(c.histogram().unwrap().is_empty());
    assert!(c.gather(&RowSet::default()).unwrap().is_empty());
    for i in 0..5000 {
        c.push(i * 3).unwrap();
    }
    assert_eq!(c.len(), 5000);
    assert_eq!(c.get(4999).unwrap(), 4999 * 3);
    assert_eq!(c.sum().unwrap(), (0..5000i128).map(|i| i * 3).sum::<i128>());
    let e = c.empty_like().unwrap();
    assert!(e.is_empty());
}

#[test]
fn config_for_refuses_a_tiny_budget_and_picks_larger_chunks_for_large_ones() {
    let e = FarStorage::config_for(100_000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("100000"), "{e}");
    assert_eq!(
        FarStorage::config_for(1 << 20).unwrap().chunk_bytes,
        4 << 10
    );
    assert_eq!(
        FarStorage::config_for(64 << 20).unwrap().chunk_bytes,
        64 << 10
    );
    // Regions of 16 chunks where at least 32 of them fit, else 4.
    let big = FarStorage::config_for(64 << 20).unwrap();
    assert_eq!(big.region_bytes, 16 * big.chunk_bytes);
    assert!(big.regions() >= 32, "{big:?}");
    let small = FarStorage::config_for(8 << 20).unwrap();
    assert_eq!(small.region_bytes, 4 * small.chunk_bytes);
    let tiny = FarStorage::config_for(farmem_dataframe::MIN_LOCAL_BYTES).unwrap();
    assert!(tiny.regions() >= 4, "{tiny:?}");
}

#[test]
fn a_sparse_gather_fetches_only_the_chunks_it_needs() {
    // ~550 KiB of i64s against 128 KiB of local memory: most chunks are remote.
    let storage = in_process(128 << 10);
    let values: Vec<i64> = (0..70_000).map(|i| i * 7).collect();
    let col = storage.column_from_slice(&values).unwrap();
    let chunk_bytes = (col.chunk_len() * 8) as u64;
    let before = storage.far_memory().metrics().bytes_fetched;
    let rows = RowSet::from_sorted(vec![5, 6, 35_000, 69_999]).unwrap();
    let gathered = col.gather(&rows).unwrap();
    let fetched = storage.far_memory().metrics().bytes_fetched - before;
    assert_eq!(gathered.to_vec().unwrap(), vec![35, 42, 245_000, 489_993]);
    assert!(
        fetched <= 3 * chunk_bytes,
        "fetched {fetched} bytes for 3 chunks of {chunk_bytes}"
    );
}
