//! The seeded taxi generator: determinism and distribution sanity.

mod dataframe_support;

use dataframe_support::{naive_epoch, naive_read, TempPath};
use farmem_dataframe::{generate, load_csv, LoadOptions, LocalStorage, Schema};

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (TempPath::new("a"), TempPath::new("b"), TempPath::new("c"));
    // More than one block, and a partial last block.
    let rows = 2 * farmem_dataframe::generator::BLOCK_ROWS + 123;
    let size = generate(&a.0, rows, 99, None).expect("a");
    generate(&b.0, rows, 99, None).expect("b");
    generate(&c.0, rows, 100, None).expect("c");
    let (x, y, z) = (
        std::fs::read(&a.0).unwrap(),
        std::fs::read(&b.0).unwrap(),
        std::fs::read(&c.0).unwrap(),
    );
    assert_eq!(x.len() as u64, size);
    assert!(x == y, "same seed must give the same bytes");
    assert!(x != z, "another seed must give other bytes");
    assert_eq!(x.iter().filter(|&&b| b == b'\n').count() as u64, rows + 1);
    // A prefix of rows is the prefix of a longer file (blocks do not depend on the row count).
    let short = TempPath::new("short");
    generate(&short.0, 1000, 99, None).expect("short");
    let s = std::fs::read(&short.0).unwrap();
    assert_eq!(&x[..s.len()], &s[..]);
}

#[test]
fn distributions_are_taxi_like() {
    let p = TempPath::new("dist");
    let calls = std::sync::atomic::AtomicU64::new(0);
    let progress = |done: u64, total: u64| {
        assert!(done <= total);
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    generate(&p.0, 40_000, 5, Some(&progress)).expect("generate");
    assert!(calls.into_inner() >= 1);
    let trips = naive_read(&p.0);
    let n = trips.len() as f64;
    let share = |f: &dyn Fn(&dataframe_support::NaiveTrip) -> bool| {
        trips.iter().filter(|t| f(t)).count() as f64 / n
    };
    let v1 = share(&|t| t.vendor == 1);
    assert!((0.45..0.49).contains(&v1), "vendor 1 share {v1}");
    assert!(trips.iter().all(|t| t.vendor == 1 || t.vendor == 2));
    let y = share(&|t| t.flag == "Y");
    assert!((0.003..0.008).contains(&y), "Y share {y}");
    assert!(trips.iter().all(|t| t.flag == "Y" || t.flag == "N"));
    let p1 = share(&|t| t.passengers == 1);
    assert!((0.67..0.73).contains(&p1), "one passenger {p1}");
    let p2 = share(&|t| t.passengers == 2);
    assert!((0.12..0.16).contains(&p2), "two passengers {p2}");
    let p5 = share(&|t| t.passengers == 5);
    assert!((0.04..0.06).contains(&p5), "five passengers {p5}");
    assert!(trips.iter().all(|t| t.passengers <= 9));
    let mut d: Vec<f64> = trips.iter().map(|t| t.distance).collect();
    d.sort_by(f64::total_cmp);
    let median = d[d.len() / 2];
    assert!((1.55..1.85).contains(&median), "median distance {median}");
    let zero = share(&|t| t.pickup_lat == 0.0 && t.pickup_lon == 0.0);
    assert!((0.01..0.02).contains(&zero), "zero coordinates {zero}");
    let near = share(&|t| (t.pickup_lat - 40.75).abs() < 0.3 && (t.pickup_lon + 73.98).abs() < 0.3);
    assert!(near > 0.97, "pickups near New York {near}");
    // Timestamps: 2016, January to June; a few negative durations, some more than a day.
    let durations: Vec<i64> = trips
        .iter()
        .map(|t| naive_epoch(&t.dropoff) - naive_epoch(&t.pickup))
        .collect();
    assert!(trips.iter().all(|t| t.pickup.starts_with("2016-0")));
    let months: std::collections::BTreeSet<&str> = trips.iter().map(|t| &t.pickup[5..7]).collect();
    assert_eq!(months.len(), 6);
    let neg = durations.iter().filter(|&&d| d < 0).count();
    let huge = durations.iter().filter(|&&d| d > 86_400).count();
    assert!((1..=80).contains(&neg), "negative durations {neg}");
    assert!((1..=40).contains(&huge), "huge durations {huge}");
    // Longer trips take longer (duration correlated with distance).
    let mean_dur = |lo: f64, hi: f64| {
        let v: Vec<i64> = trips
            .iter()
            .zip(&durations)
            .filter(|(t, &d)| t.distance >= lo && t.distance < hi && (0..86_400).contains(&d))
            .map(|(_, &d)| d)
            .collect();
        v.iter().sum::<i64>() as f64 / v.len() as f64
    };
    assert!(mean_dur(5.0, 10.0) > 2.0 * mean_dur(0.5, 1.5));
    // Money: totals are exact sums, fares follow 2.50 + 2.50/mile (JFK flat), all in cents.
    for t in &trips {
        let [fare, extra, mta, tip, tolls, surcharge, total] = t.cents;
        assert_eq!(fare + extra + mta + tip + tolls + surcharge, total);
        if t.ratecode == 2 {
            assert_eq!(fare, 5200);
        } else {
            let by_distance = 250.0 + 250.0 * t.distance;
            assert!(
                (fare as f64 - by_distance).abs() <= 26.0,
                "fare {fare} for {}",
                t.distance
            );
        }
        if t.payment != 1 {
            assert_eq!(tip, 0);
        }
    }
    // It loads with the crate's loader without a bad row.
    let (df, report) =
        load_csv(&p.0, &Schema::taxi(), &LocalStorage, LoadOptions::default()).expect("load");
    assert_eq!(report.rows, trips.len());
    assert_eq!(report.bad_rows, 0);
    assert_eq!(df.rows(), trips.len());
}
