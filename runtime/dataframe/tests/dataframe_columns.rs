//! Column operations and storage operations against naive models, for the local column and a
//! chunked column that only implements the required primitives; calendar arithmetic.

mod dataframe_support;

use std::collections::BTreeMap;

use dataframe_support::{check_seen, naive_epoch, naive_weekday, ChunkedStorage};
use farmem_dataframe::time::{civil_from_days, days_from_civil, format_timestamp, parse_timestamp};
use farmem_dataframe::{
    haversine_km, median_in_place, AnyColumn, BinaryOp, CmpOp, ColumnStore, DataFrame, Element,
    ErrorKind, LocalStorage, RowSet, Storage, TimePart, TripCoordinates,
};
use proptest::prelude::*;

const OPS: [CmpOp; 6] = [
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
];

fn model_cmp<T: PartialOrd>(op: CmpOp, x: &T, v: &T) -> bool {
    match op {
        CmpOp::Eq => x == v,
        CmpOp::Ne => x != v,
        CmpOp::Lt => x < v,
        CmpOp::Le => x <= v,
        CmpOp::Gt => x > v,
        CmpOp::Ge => x >= v,
    }
}

/// Checks every `ColumnStore` operation of a column of `values` on `storage` against the
/// model; `T`'s values must be totally ordered by `PartialOrd` (no NaN).
fn check_ops<T, S>(storage: &S, values: &[T], probe: T, pick: &[bool])
where
    T: Element + PartialOrd,
    T::Sum: std::fmt::Debug,
    S: Storage,
{
    let col = storage.column_from_slice(values).expect("column");
    let cmp = |a: &T, b: &T| a.partial_cmp(b).expect("no NaN");
    assert_eq!(col.len(), values.len());
    assert_eq!(col.count().unwrap(), values.len());
    assert_eq!(col.to_vec().unwrap(), values);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(col.get(i).unwrap(), *v);
    }
    assert_eq!(
        col.get(values.len()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let sum = values
        .iter()
        .fold(T::Sum::default(), |a, &v| T::accumulate(a, v));
    assert_eq!(col.sum().unwrap(), sum);
    assert_eq!(col.min().unwrap(), values.iter().copied().min_by(cmp));
    assert_eq!(col.max().unwrap(), values.iter().copied().max_by(cmp));
    let mut sorted = values.to_vec();
    sorted.sort_by(cmp);
    let n = sorted.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2].to_f64()),
        _ => Some((sorted[n / 2 - 1].to_f64() + sorted[n / 2].to_f64()) / 2.0),
    };
    assert_eq!(col.median().unwrap(), median);
    assert_eq!(
        col.mean().unwrap(),
        (n > 0).then(|| T::sum_to_f64(sum) / n as f64)
    );
    let mut hist: Vec<(T, u64)> = Vec::new();
    for v in &sorted {
        match hist.last_mut() {
            Some((last, c)) if last == v => *c += 1,
            _ => hist.push((*v, 1)),
        }
    }
    assert_eq!(col.histogram().unwrap(), hist);
    assert_eq!(
        col.unique().unwrap(),
        hist.iter().map(|(v, _)| *v).collect::<Vec<_>>()
    );
    for op in OPS {
        let rows: Vec<u32> = (0..values.len() as u32)
            .filter(|&i| model_cmp(op, &values[i as usize], &probe))
            .collect();
        assert_eq!(col.filter(op, probe).unwrap().rows(), &rows[..], "{op:?}");
        assert_eq!(col.count_where(op, probe).unwrap(), rows.len());
    }
    let rows: Vec<u32> = (0..values.len() as u32)
        .filter(|&i| pick.get(i as usize).copied().unwrap_or(false))
        .collect();
    let gathered = col
        .gather(&RowSet::from_sorted(rows.clone()).unwrap())
        .unwrap();
    let want: Vec<T> = rows.iter().map(|&i| values[i as usize]).collect();
    assert_eq!(gathered.to_vec().unwrap(), want);
    let picked = RowSet::from_sorted(rows.clone()).unwrap();
    let mut want_hist: BTreeMap<usize, (T, u64)> = BTreeMap::new();
    for &v in &want {
        let rank = sorted.partition_point(|x| cmp(x, &v).is_lt());
        want_hist.entry(rank).or_insert((v, 0)).1 += 1;
    }
    let want_hist: Vec<(T, u64)> = want_hist.into_values().collect();
    assert_eq!(col.histogram_of(&picked).unwrap(), want_hist);
    assert_eq!(
        col.unique_of(&picked).unwrap(),
        want_hist.iter().map(|(v, _)| *v).collect::<Vec<_>>()
    );
    if !values.is_empty() {
        let mut dst = vec![T::default(); values.len() - 1];
        col.copy_range(1, &mut dst).unwrap();
        assert_eq!(dst, &values[1..]);
    }
    let beyond = RowSet::from_sorted(vec![values.len() as u32]).unwrap();
    assert_eq!(
        col.gather(&beyond).err().map(|e| e.kind()),
        Some(ErrorKind::InvalidArgument)
    );
    assert_eq!(
        col.histogram_of(&beyond).err().map(|e| e.kind()),
        Some(ErrorKind::InvalidArgument)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn column_ops_match_the_model(
        ints in prop::collection::vec(-20i64..20, 0..300),
        floats in prop::collection::vec(-1e3f64..1e3, 0..300),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        pick in prop::collection::vec(any::<bool>(), 0..300),
        probe in -20i64..20,
        chunk_len in 1usize..9,
    ) {
        let chunked = ChunkedStorage { chunk_len };
        for_both(&ints, probe, &pick, &chunked);
        let fprobe = floats.first().copied().unwrap_or(0.5);
        check_ops(&LocalStorage, &floats, fprobe, &pick);
        check_ops(&chunked, &floats, fprobe, &pick);
        check_ops(&LocalStorage, &bytes, 128u8, &pick);
        check_ops(&chunked, &bytes, 128u8, &pick);
        let wide: Vec<u16> = bytes.iter().map(|&b| u16::from(b) * 257).collect();
        check_ops(&chunked, &wide, 300u16, &pick);
    }

    #[test]
    fn storage_ops_match_the_model(
        rows in prop::collection::vec(
            (0i64..4_000_000_000, -100_000i64..100_000, -90.0f64..90.0, -180.0f64..180.0,
             -90.0f64..90.0, -180.0f64..180.0, 0u8..12),
            0..200),
        chunk_len in 1usize..9,
    ) {
        let chunked = ChunkedStorage { chunk_len };
        let ts: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let delta: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let keys: Vec<u8> = rows.iter().map(|r| r.6).collect();
        let coords: Vec<[f64; 4]> = rows.iter().map(|r| [r.2, r.3, r.4, r.5]).collect();
        storage_ops(&LocalStorage, &ts, &delta, &keys, &coords);
        storage_ops(&chunked, &ts, &delta, &keys, &coords);
    }

    #[test]
    fn timestamps_round_trip_and_match_naive_calendar(secs in 0i64..4_102_444_800) {
        let mut text = Vec::new();
        format_timestamp(secs, &mut text);
        let text = String::from_utf8(text).unwrap();
        prop_assert_eq!(parse_timestamp(text.as_bytes()), Some(secs));
        prop_assert_eq!(naive_epoch(&text), secs);
        prop_assert_eq!(TimePart::Weekday.of(secs), naive_weekday(&text));
        prop_assert_eq!(TimePart::Hour.of(secs), text[11..13].parse::<u8>().unwrap());
        prop_assert_eq!(TimePart::Month.of(secs), text[5..7].parse::<u8>().unwrap());
        let days = secs.div_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        prop_assert_eq!(days_from_civil(y, m, d), days);
    }
}

fn for_both(ints: &[i64], probe: i64, pick: &[bool], chunked: &ChunkedStorage) {
    check_ops(&LocalStorage, ints, probe, pick);
    check_ops(chunked, ints, probe, pick);
}

fn storage_ops<S: Storage>(s: &S, ts: &[i64], delta: &[i64], keys: &[u8], coords: &[[f64; 4]]) {
    let a = s.column_from_slice(ts).unwrap();
    let b = s.column_from_slice(delta).unwrap();
    let sub = s.zip_i64(&a, &b, BinaryOp::Sub).unwrap().to_vec().unwrap();
    let add = s.zip_i64(&a, &b, BinaryOp::Add).unwrap().to_vec().unwrap();
    for i in 0..ts.len() {
        assert_eq!(sub[i], ts[i] - delta[i]);
        assert_eq!(add[i], ts[i] + delta[i]);
    }
    for part in [TimePart::Hour, TimePart::Weekday, TimePart::Month] {
        let got = s.timestamp_part(&a, part).unwrap().to_vec().unwrap();
        let want: Vec<u8> = ts.iter().map(|&t| part.of(t)).collect();
        assert_eq!(got, want);
    }
    let cols: Vec<S::Column<f64>> = (0..4)
        .map(|j| {
            s.column_from_slice(&coords.iter().map(|c| c[j]).collect::<Vec<_>>())
                .unwrap()
        })
        .collect();
    let dist = s
        .haversine_km(TripCoordinates {
            pickup_lat: &cols[0],
            pickup_lon: &cols[1],
            dropoff_lat: &cols[2],
            dropoff_lon: &cols[3],
        })
        .unwrap()
        .to_vec()
        .unwrap();
    check_seen(s, &a, &b, &cols);
    for (d, c) in dist.iter().zip(coords) {
        assert_eq!(d.to_bits(), haversine_km(c[0], c[1], c[2], c[3]).to_bits());
        assert!((0.0..=std::f64::consts::PI * 6371.0 + 1e-6).contains(d));
    }
    let k = s.column_from_slice(keys).unwrap();
    let mut groups: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
    for (&key, &v) in keys.iter().zip(delta) {
        groups.entry(key).or_default().push(v);
    }
    let want: Vec<(u8, f64)> = groups
        .into_iter()
        .map(|(key, mut v)| (key, median_in_place(&mut v).unwrap()))
        .collect();
    assert_eq!(s.group_median(&k, &b).unwrap(), want);
    let short = s
        .column_from_slice(&keys[..keys.len().saturating_sub(1)])
        .unwrap();
    if !keys.is_empty() {
        assert_eq!(
            s.group_median(&short, &b).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}

#[test]
fn float_order_is_total() {
    let v = [f64::NAN, 1.0, -0.0, 0.0, f64::NEG_INFINITY, -1.0];
    let col = LocalStorage.column_from_slice(&v).unwrap();
    assert_eq!(
        col.min().unwrap().map(f64::to_bits),
        Some(f64::NEG_INFINITY.to_bits())
    );
    assert!(col.max().unwrap().is_some_and(f64::is_nan));
    let u: Vec<u64> = col.unique().unwrap().iter().map(|x| x.to_bits()).collect();
    let want: Vec<u64> = [f64::NEG_INFINITY, -1.0, -0.0, 0.0, 1.0, f64::NAN]
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(u, want);
    assert_eq!(col.count_where(CmpOp::Gt, 0.0).unwrap(), 2);
}

#[test]
fn median_of_known_values() {
    assert_eq!(median_in_place(&mut [3i64, 1, 2]), Some(2.0));
    assert_eq!(median_in_place(&mut [4i64, 1, 2, 3]), Some(2.5));
    assert_eq!(median_in_place::<i64>(&mut []), None);
}

#[test]
fn row_sets_must_be_increasing() {
    assert!(RowSet::from_sorted(vec![1, 2, 5]).is_ok());
    assert_eq!(
        RowSet::from_sorted(vec![1, 1]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(RowSet::from_sorted(vec![3, 2]).is_err());
}

#[test]
fn timestamps_reject_invalid_dates() {
    for bad in [
        "2016-02-30 00:00:00",
        "2015-02-29 00:00:00",
        "2016-13-01 00:00:00",
        "2016-00-10 00:00:00",
        "2016-01-01 24:00:00",
        "2016-01-01 00:60:00",
        "2016-01-01 00:00:60",
        "2016-01-01 00:00",
        "2016/01/01 00:00:00",
        "2016-01-01 00:00:0x",
        "",
    ] {
        assert_eq!(parse_timestamp(bad.as_bytes()), None, "{bad}");
    }
    assert_eq!(
        parse_timestamp(b"2016-02-29 23:59:59"),
        Some(naive_epoch("2016-02-29 23:59:59"))
    );
    assert_eq!(parse_timestamp(b"2016-01-01T00:12:22"), Some(1_451_607_142));
}

#[test]
fn frame_columns_are_typed_and_equally_long() {
    let mut df = DataFrame::new(LocalStorage);
    assert_eq!(df.rows(), 0);
    df.add_column(
        "a",
        AnyColumn::I64(LocalStorage.column_from_slice(&[1i64, 2]).unwrap()),
    )
    .unwrap();
    let err = df
        .add_column(
            "b",
            AnyColumn::U8(LocalStorage.column_from_slice(&[1u8]).unwrap()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.context().contains("\"b\""), "{err}");
    assert_eq!(df.f64("a").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(df.i64("zz").unwrap_err().kind(), ErrorKind::NotFound);
    // The only column may be replaced by one of another length.
    df.add_column(
        "a",
        AnyColumn::I64(LocalStorage.column_from_slice(&[7i64]).unwrap()),
    )
    .unwrap();
    assert_eq!(df.rows(), 1);
    assert_eq!(df.column_names(), ["a"]);
    assert_eq!(df.i64("a").unwrap().get(0).unwrap(), 7);
}
