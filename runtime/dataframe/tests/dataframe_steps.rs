//! The nine taxi steps against an independent computation from a naively parsed CSV, for every
//! column storage (local `Vec`s and a chunked store using only the provided operations;
//! `dataframe_far.rs` runs the same checks on far-memory columns).

pub(crate) mod dataframe_support;

use std::collections::{BTreeMap, BTreeSet};

use dataframe_support::{
    naive_epoch, naive_read, naive_weekday, ChunkedStorage, NaiveTrip, TempPath,
};
use farmem_dataframe::taxi::{self, PickupPartsRow};
use farmem_dataframe::{
    generate, load_csv, DataFrame, ErrorKind, LoadOptions, LocalStorage, Schema, Storage,
};

/// Rows of the generated file: 30k by default, 1M with `FARMEM_STRESS=1`.
pub(crate) fn rows() -> u64 {
    if std::env::var("FARMEM_STRESS").is_ok_and(|v| v == "1") {
        1_000_000
    } else {
        30_000
    }
}
pub(crate) const SEED: u64 = 7;

fn naive_haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    // AIFM's formula, term by term.
    let d_lat = (lat2 - lat1) * std::f64::consts::PI / 180.0;
    let d_lon = (lon2 - lon1) * std::f64::consts::PI / 180.0;
    let l1 = lat1 * std::f64::consts::PI / 180.0;
    let l2 = lat2 * std::f64::consts::PI / 180.0;
    let a = (d_lat / 2.0).sin().powi(2) + (d_lon / 2.0).sin().powi(2) * l1.cos() * l2.cos();
    6371.0 * (2.0 * a.sqrt().asin())
}

fn naive_median(v: &mut [i64]) -> f64 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    }
}

fn histogram(keys: impl Iterator<Item = u8>) -> Vec<(u8, u64)> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_insert(0u64) += 1;
    }
    m.into_iter().collect()
}

fn load<S: Storage>(storage: &S, path: &std::path::Path, threads: usize) -> DataFrame<S> {
    let opts = LoadOptions {
        threads,
        ..LoadOptions::default()
    };
    let (df, report) = load_csv(path, &Schema::taxi(), storage, opts).expect("load");
    assert_eq!(report.rows as u64, rows());
    assert_eq!(report.bad_rows, 0);
    df
}

/// The nine steps on `storage` against the naive computation (also run by `dataframe_far.rs`
/// with far-memory columns).
pub(crate) fn check_all_steps<S: Storage>(storage: S, path: &std::path::Path, trips: &[NaiveTrip]) {
    let mut df = load(&storage, path, 3);
    let name = storage.name();

    // Step 1.
    let s1 = taxi::vendor_summary(&df).expect("step 1");
    assert_eq!(s1.count, trips.len(), "{name}");
    let vendors: Vec<i64> = trips
        .iter()
        .map(|t| t.vendor)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(s1.unique, vendors, "{name}");

    // Steps 2-3.
    for vendor in [1, 2] {
        let h = taxi::passenger_histogram(&df, vendor).expect("step 2/3");
        let want = histogram(
            trips
                .iter()
                .filter(|t| t.vendor == vendor)
                .map(|t| t.passengers),
        );
        assert_eq!(h.counts, want, "{name} vendor {vendor}");
    }

    // Step 4.
    let durations: Vec<i64> = trips
        .iter()
        .map(|t| naive_epoch(&t.dropoff) - naive_epoch(&t.pickup))
        .collect();
    let s4 = taxi::trip_duration(&mut df).expect("step 4");
    assert_eq!(s4.max, durations.iter().copied().max(), "{name}");
    assert_eq!(s4.min, durations.iter().copied().min(), "{name}");
    let sum: i128 = durations.iter().map(|&d| i128::from(d)).sum();
    assert_eq!(s4.mean, Some(sum as f64 / durations.len() as f64), "{name}");
    assert!(
        s4.min.is_some_and(|m| m < 0),
        "the generator makes a few negative durations"
    );

    // Step 5.
    let s5 = taxi::store_and_forward(&df).expect("step 5");
    let n = trips.iter().filter(|t| t.flag == "N").count();
    assert_eq!(s5.rows, trips.len());
    assert_eq!(s5.n_rows, n, "{name}");
    assert_eq!(s5.n_share, n as f64 / trips.len() as f64);
    let y_vendors: Vec<i64> = trips
        .iter()
        .filter(|t| t.flag == "Y")
        .map(|t| t.vendor)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(!y_vendors.is_empty());
    assert_eq!(s5.y_vendors, y_vendors, "{name}");

    // Step 6.
    let over = trips
        .iter()
        .filter(|t| {
            naive_haversine(t.pickup_lat, t.pickup_lon, t.dropoff_lat, t.dropoff_lon) > 100.0
        })
        .count();
    let s6 = taxi::long_trips(&mut df).expect("step 6");
    assert_eq!(s6.over_100km, over, "{name}");
    assert!(over > 0, "the generator makes far outliers");

    // Step 7.
    let hours: Vec<u8> = trips
        .iter()
        .map(|t| t.pickup[11..13].parse().unwrap())
        .collect();
    let days: Vec<u8> = trips.iter().map(|t| naive_weekday(&t.pickup)).collect();
    let months: Vec<u8> = trips
        .iter()
        .map(|t| t.pickup[5..7].parse().unwrap())
        .collect();
    let s7 = taxi::pickup_time_parts(&mut df).expect("step 7");
    assert_eq!(s7.hours, histogram(hours.iter().copied()), "{name}");
    assert_eq!(s7.days, histogram(days.iter().copied()), "{name}");
    assert_eq!(s7.months, histogram(months.iter().copied()), "{name}");
    let first: Vec<PickupPartsRow> = (0..10)
        .map(|i| PickupPartsRow {
            pickup: naive_epoch(&trips[i].pickup),
            hour: hours[i],
            day: days[i],
            month: months[i],
        })
        .collect();
    assert_eq!(s7.first_rows, first, "{name}");

    // Steps 8-9.
    for (key, keys) in [(taxi::PICKUP_DAY, &days), (taxi::PICKUP_MONTH, &months)] {
        let mut groups: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
        for (k, d) in keys.iter().zip(&durations) {
            groups.entry(*k).or_default().push(*d);
        }
        let want: Vec<(u8, f64)> = groups
            .into_iter()
            .map(|(k, mut v)| (k, naive_median(&mut v)))
            .collect();
        let got = taxi::median_duration_by(&df, key).expect("step 8/9");
        assert_eq!(got.medians, want, "{name} {key}");
    }
}

#[test]
fn nine_steps_match_an_independent_computation_on_every_storage() {
    let path = TempPath::new("steps");
    generate(&path.0, rows(), SEED, None).expect("generate");
    let trips = naive_read(&path.0);
    assert_eq!(trips.len() as u64, rows());
    check_all_steps(LocalStorage, &path.0, &trips);
    check_all_steps(ChunkedStorage { chunk_len: 997 }, &path.0, &trips);
}

#[test]
fn run_all_agrees_across_storages_and_prints_every_step() {
    let path = TempPath::new("runall");
    generate(&path.0, rows(), SEED + 1, None).expect("generate");
    let mut local = load(&LocalStorage, &path.0, 2);
    let mut chunked = load(&ChunkedStorage { chunk_len: 4096 }, &path.0, 1);
    let mut out = Vec::new();
    let a = taxi::run_all(&mut local, &mut out).expect("local run");
    let b = taxi::run_all(&mut chunked, &mut Vec::new()).expect("chunked run");
    assert_eq!(a.timings.len(), 9);
    let strip = |mut r: taxi::TaxiResults| {
        r.timings.clear();
        r
    };
    assert_eq!(strip(a), strip(b));
    let text = String::from_utf8(out).expect("utf8 report");
    for step in 1..=9 {
        assert!(
            text.contains(&format!("== {step} ")),
            "step {step} missing in\n{text}"
        );
    }
    assert!(text.contains("trips over 100 km"));
}

#[test]
fn later_steps_name_the_missing_derived_column() {
    let path = TempPath::new("order");
    generate(&path.0, 100, 3, None).expect("generate");
    let (df, _) = load_csv(
        &path.0,
        &Schema::taxi(),
        &LocalStorage,
        LoadOptions::default(),
    )
    .expect("load");
    let err = taxi::median_duration_by(&df, taxi::PICKUP_DAY).expect_err("needs step 4");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.context().contains("duration"), "{err}");
}

#[test]
fn steps_on_an_empty_frame_return_empty_results() {
    let path = TempPath::new("empty");
    std::fs::write(&path.0, farmem_dataframe::generator::taxi_header()).expect("write");
    let (mut df, report) = load_csv(
        &path.0,
        &Schema::taxi(),
        &LocalStorage,
        LoadOptions::default(),
    )
    .expect("load");
    assert_eq!(report.rows, 0);
    let r = taxi::run_all(&mut df, &mut Vec::new()).expect("run on empty");
    assert_eq!(r.vendors.count, 0);
    assert_eq!(r.duration.mean, None);
    assert_eq!(r.store_and_forward.n_share, 0.0);
    assert!(r.median_by_day.medians.is_empty());
}
