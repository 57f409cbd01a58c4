//! Shared by the `dataframe_*` tests: a second column storage that implements only the six
//! required `ColumnStore` primitives over small chunks (so every provided operation, and every
//! chunk boundary, is exercised exactly as a far-memory column would see it), temp files, and
//! a naive CSV reader that shares no code with the crate's loader.

#![allow(dead_code)]

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use farmem_dataframe::{
    BinaryOp, ColumnStore, Element, Error, Result, Storage, TimePart, TripCoordinates,
};

/// Columns as a list of chunks of at most `chunk_len` elements; only the required methods.
#[derive(Clone, Copy, Debug)]
pub struct ChunkedStorage {
    pub chunk_len: usize,
}

pub struct ChunkedColumn<T> {
    chunk_len: usize,
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Element> ColumnStore<T> for ChunkedColumn<T> {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Result<T> {
        if i >= self.len {
            return Err(Error::invalid(format!(
                "row {i} out of bounds ({})",
                self.len
            )));
        }
        Ok(self.chunks[i / self.chunk_len][i % self.chunk_len])
    }

    fn push(&mut self, v: T) -> Result<()> {
        match self.chunks.last_mut() {
            Some(c) if c.len() < self.chunk_len => c.push(v),
            _ => {
                let mut c = Vec::with_capacity(self.chunk_len);
                c.push(v);
                self.chunks.push(c);
            }
        }
        self.len += 1;
        Ok(())
    }

    fn extend_from_slice(&mut self, src: &[T]) -> Result<()> {
        for &v in src {
            self.push(v)?;
        }
        Ok(())
    }

    fn for_each_chunk_in<F>(&self, range: Range<usize>, mut f: F) -> Result<()>
    where
        F: FnMut(usize, &[T]) -> Result<()>,
    {
        if range.start > range.end || range.end > self.len {
            return Err(Error::invalid(format!("range {range:?} out of bounds")));
        }
        let mut i = range.start;
        while i < range.end {
            let c = &self.chunks[i / self.chunk_len];
            let off = i % self.chunk_len;
            let n = (c.len() - off).min(range.end - i);
            f(i, &c[off..off + n])?;
            i += n;
        }
        Ok(())
    }

    fn empty_like(&self) -> Result<Self> {
        Ok(ChunkedColumn {
            chunk_len: self.chunk_len,
            chunks: Vec::new(),
            len: 0,
        })
    }
}

impl Storage for ChunkedStorage {
    type Column<T: Element> = ChunkedColumn<T>;

    fn name(&self) -> &'static str {
        "chunked"
    }

    fn new_column<T: Element>(&self) -> Result<ChunkedColumn<T>> {
        Ok(ChunkedColumn {
            chunk_len: self.chunk_len.max(1),
            chunks: Vec::new(),
            len: 0,
        })
    }
}

/// A fresh path in the temp dir (removed on drop).
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(tag: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!(
            "farmem-dataframe-{}-{tag}-{n}.csv",
            std::process::id()
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One trip as the test reads it: the raw text fields of a line split on commas.
pub struct NaiveTrip {
    pub vendor: i64,
    pub pickup: String,
    pub dropoff: String,
    pub passengers: u8,
    pub distance: f64,
    pub pickup_lon: f64,
    pub pickup_lat: f64,
    pub flag: String,
    pub dropoff_lon: f64,
    pub dropoff_lat: f64,
    pub cents: [i64; 7],
    pub ratecode: u8,
    pub payment: u8,
}

fn cents(s: &str) -> i64 {
    let (d, c) = s.split_once('.').expect("amount with a point");
    d.parse::<i64>().expect("dollars") * 100 + c.parse::<i64>().expect("cents")
}

/// Reads a taxi CSV with `str::lines` and `split(',')`.
pub fn naive_read(path: &std::path::Path) -> Vec<NaiveTrip> {
    let text = std::fs::read_to_string(path).expect("read csv");
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 19, "line {l}");
            NaiveTrip {
                vendor: f[0].parse().expect("vendor"),
                pickup: f[1].to_string(),
                dropoff: f[2].to_string(),
                passengers: f[3].parse().expect("passengers"),
                distance: f[4].parse().expect("distance"),
                pickup_lon: f[5].parse().expect("lon"),
                pickup_lat: f[6].parse().expect("lat"),
                ratecode: f[7].parse().expect("ratecode"),
                flag: f[8].to_string(),
                dropoff_lon: f[9].parse().expect("lon"),
                dropoff_lat: f[10].parse().expect("lat"),
                payment: f[11].parse().expect("payment"),
                cents: [
                    cents(f[12]),
                    cents(f[13]),
                    cents(f[14]),
                    cents(f[15]),
                    cents(f[16]),
                    cents(f[17]),
                    cents(f[18]),
                ],
            }
        })
        .collect()
}

/// Seconds since the epoch of `YYYY-MM-DD HH:MM:SS`, by counting days year by year and month
/// by month (deliberately not the crate's closed-form calendar arithmetic).
pub fn naive_epoch(ts: &str) -> i64 {
    let n = |r: Range<usize>| ts[r].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0i64;
    for yy in 1970..y {
        days += if leap(yy) { 366 } else { 365 };
    }
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    for md in &month_days[..(m - 1) as usize] {
        days += md;
    }
    days += d - 1;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Day of week (0 = Sunday) by Sakamoto's method.
pub fn naive_weekday(ts: &str) -> u8 {
    let n = |r: Range<usize>| ts[r].parse::<i64>().expect("digits");
    let (mut y, m, d) = (n(0..4), n(5..7), n(8..10));
    let t = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    if m < 3 {
        y -= 1;
    }
    ((y + y / 4 - y / 100 + y / 400 + t[(m - 1) as usize] + d) % 7) as u8
}

/// The `_seen` forms hand over exactly the new column's values, in row order.
pub fn check_seen<S: Storage>(
    storage: &S,
    a: &S::Column<i64>,
    b: &S::Column<i64>,
    coords: &[S::Column<f64>],
) {
    let mut seen = Vec::new();
    let zipped = storage
        .zip_i64_seen(b, a, BinaryOp::Sub, &mut |batch| {
            seen.extend_from_slice(batch)
        })
        .unwrap();
    assert_eq!(seen, zipped.to_vec().unwrap());
    let parts = [TimePart::Month, TimePart::Hour];
    let mut seen: [Vec<u8>; 2] = Default::default();
    let cols = storage
        .timestamp_parts_seen(a, &parts, &mut |k, batch| seen[k].extend_from_slice(batch))
        .unwrap();
    assert_eq!(cols.len(), 2);
    for (col, s) in cols.iter().zip(&seen) {
        assert_eq!(&col.to_vec().unwrap(), s);
    }
    let mut seen = Vec::new();
    let km = storage
        .haversine_km_seen(
            TripCoordinates {
                pickup_lat: &coords[0],
                pickup_lon: &coords[1],
                dropoff_lat: &coords[2],
                dropoff_lon: &coords[3],
            },
            &mut |batch| seen.extend(batch.iter().map(|x| x.to_bits())),
        )
        .unwrap();
    let want: Vec<u64> = km.to_vec().unwrap().iter().map(|x| x.to_bits()).collect();
    assert_eq!(seen, want);
}
