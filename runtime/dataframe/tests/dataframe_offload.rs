//! Offloaded column operations (AIFM's remote agent): with a real memory server over TCP and a
//! local budget of about 2–3% of the data, every offloadable operation gives the same result
//! on the server (`OffloadPolicy::Always`), locally (`Never`) and on a plain `Vec`, for every
//! element type, with dirty rows appended just before the operations so the flush has work.
//! Also: `Auto` runs a cached column locally and a remote one on the server, and a backend
//! without a remote agent falls back to the local path.

use std::sync::Arc;

use farmem_dataframe::{
    CmpOp, ColumnStore, Element, FarStorage, LocalColumn, OffloadPolicy, RowSet, Storage,
    MIN_LOCAL_BYTES,
};
use farmem_objects::{FarMemory, TcpBackend};
use farmem_server::{Server, ServerConfig, ServerHandle};
use rand::{Rng, SeedableRng};

const TOKEN: &str = "dataframe-offload-test";
const FAR_CAPACITY: u64 = 1 << 30;

fn over_tcp(local: usize) -> (ServerHandle, FarStorage) {
    let server =
        Server::start(ServerConfig::new("127.0.0.1:0", FAR_CAPACITY, TOKEN)).expect("server");
    let backend = TcpBackend::connect(server.addr().to_string(), TOKEN, 2).expect("connect");
    let config = FarStorage::config_for(local).expect("config");
    let far = FarMemory::new(config, Arc::new(backend)).expect("far memory");
    (server, FarStorage::new(far))
}

/// A storage over the in-process backend (no remote agent) that asks to offload everything.
fn without_agent() -> FarStorage {
    let config = FarStorage::config_for(MIN_LOCAL_BYTES).expect("config");
    FarStorage::new(FarMemory::in_process(config, FAR_CAPACITY).expect("far"))
        .with_offload_policy(OffloadPolicy::Always)
}

/// `n` random `i64`s in `-range..range`, with `i64::MIN` and `i64::MAX` every `every` rows.
fn i64s_with_extremes(rng: &mut impl Rng, n: usize, every: usize, range: i64) -> Vec<i64> {
    (0..n)
        .map(|i| match i % every {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => rng.gen_range(-range..range),
        })
        .collect()
}

/// Results of every offloadable operation, with elements as their total-order keys (so f64
/// compares by bits: NaN payloads and -0.0 included) and sums/means by `Debug` (round-trip
/// exact; a NaN sum prints `NaN` on both sides).
#[derive(Debug, PartialEq)]
struct Results<K> {
    sum: String,
    min: Option<K>,
    max: Option<K>,
    mean: String,
    median: String,
    unique: Vec<K>,
    histogram: Vec<(K, u64)>,
    filters: Vec<Vec<u32>>,
    counts: Vec<usize>,
    /// `histogram_of` and `unique_of` every 97th row (a sparse selection).
    picked: Vec<(K, u64)>,
    picked_unique: Vec<K>,
}

fn results<T: Element, C: ColumnStore<T>>(col: &C, probes: &[T]) -> Results<T::Key> {
    let ops = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];
    let mut filters = Vec::new();
    let mut counts = Vec::new();
    let picked = RowSet::from_sorted((0..col.len() as u32).step_by(97).collect()).expect("rows");
    for &p in probes {
        for op in ops {
            filters.push(col.filter(op, p).expect("filter").rows().to_vec());
            counts.push(col.count_where(op, p).expect("count_where"));
        }
    }
    Results {
        sum: format!("{:?}", col.sum().expect("sum")),
        min: col.min().expect("min").map(T::key),
        max: col.max().expect("max").map(T::key),
        mean: format!("{:?}", col.mean().expect("mean")),
        median: format!("{:?}", col.median().expect("median")),
        unique: col
            .unique()
            .expect("unique")
            .into_iter()
            .map(T::key)
            .collect(),
        histogram: col
            .histogram()
            .expect("histogram")
            .into_iter()
            .map(|(v, n)| (v.key(), n))
            .collect(),
        filters,
        counts,
        picked: col
            .histogram_of(&picked)
            .expect("histogram_of")
            .into_iter()
            .map(|(v, n)| (v.key(), n))
            .collect(),
        picked_unique: col
            .unique_of(&picked)
            .expect("unique_of")
            .into_iter()
            .map(T::key)
            .collect(),
    }
}

/// One column of `values` far, then `dirty` appended (those rows are local and dirty when the
/// operations run), checked on the server, locally, and against a plain `Vec`.
fn check_offload<T: Element>(storage: &FarStorage, values: &[T], dirty: &[T], probes: &[T])
where
    T::Key: std::fmt::Debug,
{
    let what = T::NAME;
    let mut far = storage.column_from_slice(values).expect("far column");
    far.extend_from_slice(dirty).expect("append dirty rows");
    let all: Vec<T> = values.iter().chain(dirty).copied().collect();
    let want = results(&LocalColumn::from_vec(all), probes);

    let before = storage.offload_stats();
    storage.set_offload_policy(OffloadPolicy::Always);
    let remote = results(&far, probes);
    let after = storage.offload_stats();
    // sum, min, max, mean, median, unique, histogram, histogram_of, unique_of, and a filter and
    // a count per probe and op.
    let ops = 9 + 12 * probes.len() as u64;
    assert_eq!(
        after.offloaded - before.offloaded,
        ops,
        "{what}: every op ran on the server: {after:?}"
    );
    assert!(
        after.chunks_flushed > before.chunks_flushed,
        "{what}: the appended rows were flushed: {after:?}"
    );
    assert_eq!(remote, want, "{what}: server vs Vec");

    // Dirty again between two offloaded ops: the second must see the new rows.
    far.extend_from_slice(dirty).expect("append again");
    let all: Vec<T> = values.iter().chain(dirty).chain(dirty).copied().collect();
    let remote_sum = format!("{:?}", far.sum().expect("sum"));
    let remote_hist = far.histogram().expect("histogram");
    storage.set_offload_policy(OffloadPolicy::Never);
    let local_before = storage.offload_stats().local;
    let local = results(&far, probes);
    assert_eq!(storage.offload_stats().local - local_before, ops, "{what}");
    let want = results(&LocalColumn::from_vec(all), probes);
    assert_eq!(local, want, "{what}: local path vs Vec");
    assert_eq!(remote_sum, want.sum, "{what}: sum after a second append");
    let keys: Vec<(T::Key, u64)> = remote_hist.into_iter().map(|(v, n)| (v.key(), n)).collect();
    assert_eq!(
        keys, want.histogram,
        "{what}: histogram after a second append"
    );
    storage.set_offload_policy(OffloadPolicy::Auto);
}

#[test]
fn offloaded_ops_equal_the_local_path_and_a_vec_for_every_element_type() {
    // 128 KiB local against ~6 MiB of columns: about 2%.
    let (server, storage) = over_tcp(MIN_LOCAL_BYTES);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n = 250_000;

    let i64s = i64s_with_extremes(&mut rng, n, 1009, 1_000_000);
    // 3001 dirty rows: an odd length first, an even one after the second append (median).
    let dirty: Vec<i64> = (0..3001).map(|i| i * 17 - 9000).collect();
    check_offload(&storage, &i64s, &dirty, &[0, -5, i64::MAX]);

    let f64s: Vec<f64> = (0..n)
        .map(|i| match i % 97 {
            0 => -0.0,
            1 => 0.0,
            2 => f64::NAN,
            3 => f64::INFINITY,
            4 => f64::NEG_INFINITY,
            5 => -f64::NAN,
            _ => f64::from(rng.gen_range(-500i32..500)) / 8.0,
        })
        .collect();
    let dirty: Vec<f64> = (0..3000).map(|i| f64::from(i) * 0.37 - 100.0).collect();
    check_offload(&storage, &f64s, &dirty, &[0.0, -0.0, 12.5, f64::NAN]);

    let u8s: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    let dirty: Vec<u8> = (0..5000).map(|i| (i % 7) as u8).collect();
    check_offload(&storage, &u8s, &dirty, &[0, 128, 255]);

    let u16s: Vec<u16> = (0..n).map(|_| rng.gen_range(0..5000)).collect();
    let dirty: Vec<u16> = (0..5000).map(|i| (i % 70) as u16 + 65_000).collect();
    check_offload(&storage, &u16s, &dirty, &[0, 4999, 65_535]);

    assert!(storage.far_memory().take_error().is_none());
    drop(storage);
    server.shutdown();
}

#[test]
fn auto_offloads_remote_columns_and_scans_cached_ones_locally() {
    // 8 MiB local: a small column stays cached, a 24 MiB one is mostly remote.
    let (server, storage) = over_tcp(8 << 20);
    assert_eq!(storage.offload_policy(), OffloadPolicy::Auto);
    let small: Vec<i64> = (0..10_000).collect();
    let cached = storage.column_from_slice(&small).expect("small column");
    let s0 = storage.offload_stats();
    assert_eq!(
        cached.sum().expect("sum"),
        small.iter().map(|&v| i128::from(v)).sum()
    );
    let s1 = storage.offload_stats();
    assert_eq!(
        (s1.offloaded, s1.local - s0.local),
        (s0.offloaded, 1),
        "{s1:?}"
    );

    let big: Vec<i64> = (0..3_000_000).map(|i| (i * 7919) % 100_003).collect();
    let remote = storage.column_from_slice(&big).expect("big column");
    let want_max = big.iter().copied().max();
    assert_eq!(remote.max().expect("max"), want_max);
    let s2 = storage.offload_stats();
    assert_eq!(s2.offloaded, s1.offloaded + 1, "{s2:?}");
    assert_eq!(
        remote.count_where(CmpOp::Lt, 500).expect("count"),
        big.iter().filter(|&&v| v < 500).count()
    );
    // Auto gathers a few rows of a remote column on the server, and scans for many.
    let few = RowSet::from_sorted((0..3_000_000).step_by(1000).collect()).expect("rows");
    let want: Vec<i64> = few.rows().iter().map(|&r| big[r as usize]).collect();
    let o = storage.offload_stats().offloaded;
    assert_eq!(
        remote.unique_of(&few).expect("unique_of"),
        LocalColumn::from_vec(want).unique().expect("unique")
    );
    assert_eq!(storage.offload_stats().offloaded, o + 1);
    let many = RowSet::from_sorted((0..3_000_000).step_by(2).collect()).expect("rows");
    remote.histogram_of(&many).expect("histogram_of");
    assert_eq!(storage.offload_stats().offloaded, o + 1);
    // Auto keeps a filter local even on a remote column (far_offload's module note).
    let s3 = storage.offload_stats();
    let rows = remote.filter(CmpOp::Lt, 500).expect("filter");
    assert_eq!(rows.len(), big.iter().filter(|&&v| v < 500).count());
    let s4 = storage.offload_stats();
    assert_eq!(
        (s4.offloaded, s4.local),
        (s3.offloaded, s3.local + 1),
        "{s4:?}"
    );
    drop((cached, remote));
    drop(storage);
    server.shutdown();
}

/// The server selects the two middle elements and the client averages them: an even count
/// whose middle pair differs (where a lower median would be wrong), an odd count, one element,
/// and `f64`s whose mean of the pair is not an element.
#[test]
fn offloaded_median_averages_the_middle_pair_like_the_local_path() {
    let (server, storage) = over_tcp(MIN_LOCAL_BYTES);
    storage.set_offload_policy(OffloadPolicy::Always);
    for n in [100_000i64, 100_001, 1] {
        // Distinct, shuffled by a stride coprime to n: the middle pair differs by 2.
        let values: Vec<i64> = (0..n).map(|i| ((i * 7919) % n) * 2 - n).collect();
        let far = storage.column_from_slice(&values).expect("far column");
        let before = storage.offload_stats().offloaded;
        let got = far.median().expect("median");
        assert_eq!(storage.offload_stats().offloaded, before + 1, "n = {n}");
        let want = LocalColumn::from_vec(values)
            .median()
            .expect("local median");
        assert_eq!(got, want, "i64 median of {n} elements");
    }
    let f64s: Vec<f64> = (0..50_000).map(|i| f64::from(i) * 0.1 + 0.05).collect();
    let far = storage.column_from_slice(&f64s).expect("far column");
    let want = LocalColumn::from_vec(f64s).median().expect("local median");
    assert_eq!(
        far.median().expect("median").map(f64::to_bits),
        want.map(f64::to_bits)
    );
    drop(storage);
    server.shutdown();
}

#[test]
fn a_backend_without_a_remote_agent_runs_everything_locally() {
    let storage = without_agent();
    let values: Vec<i64> = (0..100_000).map(|i| (i * 31) % 977 - 400).collect();
    let col = storage.column_from_slice(&values).expect("column");
    let want = results(&LocalColumn::from_vec(values), &[0, 100]);
    assert_eq!(results(&col, &[0, 100]), want);
    let s = storage.offload_stats();
    assert_eq!(s.offloaded, 0, "{s:?}");
    assert_eq!(s.local, 9 + 24, "{s:?}");
    assert_eq!(s.chunks_flushed, 0, "{s:?}");
}

/// `zip_i64` on the server (`Pairwise` through `column_with`, the new column adopted remote)
/// equals the local path and a `Vec`, for both ops, with dirty rows appended to both inputs
/// just before (the flush has work) and values that wrap; the new column then serves reads and
/// offloaded aggregates like any other.
#[test]
fn zip_on_the_server_equals_the_local_path_and_a_vec() {
    use farmem_dataframe::BinaryOp;
    let (server, storage) = over_tcp(MIN_LOCAL_BYTES);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let n = 200_000;
    let a = i64s_with_extremes(&mut rng, n, 501, 1_000_000_000);
    let b: Vec<i64> = (0..n).map(|_| rng.gen_range(-5_000i64..5_000)).collect();
    let mut fa = storage.column_from_slice(&a).expect("column a");
    let mut fb = storage.column_from_slice(&b).expect("column b");
    let tail: Vec<i64> = (0..1_001).map(|i| i * 3 - 77).collect();
    fa.extend_from_slice(&tail).expect("append a");
    fb.extend_from_slice(&tail).expect("append b");
    let (a, b): (Vec<i64>, Vec<i64>) = (
        a.iter().chain(&tail).copied().collect(),
        b.iter().chain(&tail).copied().collect(),
    );
    for op in [BinaryOp::Sub, BinaryOp::Add] {
        let want: Vec<i64> = a.iter().zip(&b).map(|(&x, &y)| op.apply(x, y)).collect();

        storage.set_offload_policy(OffloadPolicy::Always);
        let s0 = storage.offload_stats();
        let remote = storage.zip_i64(&fa, &fb, op).expect("zip on the server");
        let s1 = storage.offload_stats();
        assert_eq!(
            s1.offloaded,
            s0.offloaded + 1,
            "{op:?}: ran on the server: {s1:?}"
        );
        assert_eq!(remote.len(), want.len());
        assert_eq!(
            remote.sum().expect("offloaded sum of the new column"),
            want.iter().map(|&v| i128::from(v)).sum::<i128>(),
            "{op:?}"
        );
        assert_eq!(
            remote.to_vec().expect("read back"),
            want,
            "{op:?}: server vs Vec"
        );

        storage.set_offload_policy(OffloadPolicy::Never);
        let s2 = storage.offload_stats();
        let local = storage.zip_i64(&fa, &fb, op).expect("zip locally");
        assert_eq!(storage.offload_stats().offloaded, s2.offloaded, "{op:?}");
        assert_eq!(
            local.to_vec().expect("read back"),
            want,
            "{op:?}: local vs Vec"
        );
    }
    storage.set_offload_policy(OffloadPolicy::Auto);
    assert!(storage.far_memory().take_error().is_none());
    drop((fa, fb));
    drop(storage);
    server.shutdown();
}

/// Under `Auto`, a zip of two mostly remote columns runs on the server and one of two cached
/// columns runs locally; without a remote agent it always runs locally.
#[test]
fn auto_zips_remote_columns_on_the_server_and_cached_ones_locally() {
    use farmem_dataframe::BinaryOp;
    let (server, storage) = over_tcp(8 << 20);
    let small: Vec<i64> = (0..10_000).collect();
    let (ca, cb) = (
        storage.column_from_slice(&small).expect("small a"),
        storage.column_from_slice(&small).expect("small b"),
    );
    let s0 = storage.offload_stats();
    let z = storage
        .zip_i64(&ca, &cb, BinaryOp::Add)
        .expect("zip cached");
    let s1 = storage.offload_stats();
    assert_eq!(
        (s1.offloaded, s1.local),
        (s0.offloaded, s0.local + 1),
        "{s1:?}"
    );
    assert_eq!(
        z.to_vec().expect("read"),
        small.iter().map(|v| 2 * v).collect::<Vec<_>>()
    );

    let big: Vec<i64> = (0..2_000_000).map(|i| (i * 7919) % 100_003).collect();
    let (ra, rb) = (
        storage.column_from_slice(&big).expect("big a"),
        storage.column_from_slice(&big).expect("big b"),
    );
    let z = storage
        .zip_i64(&ra, &rb, BinaryOp::Sub)
        .expect("zip remote");
    let s2 = storage.offload_stats();
    assert_eq!(s2.offloaded, s1.offloaded + 1, "{s2:?}");
    assert_eq!(z.max().expect("max"), Some(0));
    assert_eq!(z.min().expect("min"), Some(0));
    drop((ca, cb, ra, rb, z));
    drop(storage);
    server.shutdown();

    let storage = without_agent();
    let (a, b) = (
        storage.column_from_slice(&big).expect("a"),
        storage.column_from_slice(&big).expect("b"),
    );
    let z = storage
        .zip_i64(&a, &b, BinaryOp::Add)
        .expect("zip without an agent");
    assert_eq!(storage.offload_stats().offloaded, 0);
    assert_eq!(z.get(12_345).expect("get"), 2 * big[12_345]);
}
