//! A deterministic, seeded generator of TLC-like yellow-taxi trip CSV files.
//!
//! Rows are made in blocks of [`BLOCK_ROWS`]; block `b` draws from its own RNG seeded with
//! `splitmix64(seed ^ b)`, so the bytes depend only on `(rows, seed)` and not on the number of
//! threads that made the blocks (the blocks are written in order). The RNG is rand's `StdRng`:
//! the same seed gives the same file with the same build of this crate (rand documents that
//! `StdRng`'s stream may change between its minor versions).
//!
//! Distributions (shaped after the January–June 2016 TLC files AIFM analysed):
//! - `VendorID` 1 (47%) or 2; `store_and_fwd_flag` `Y` on about 1% of vendor-1 rows (≈0.5%
//!   overall; in real files only vendor 1 stores and forwards), `N` otherwise.
//! - `passenger_count`: 1 ≈70%, 2 ≈14%, 5 ≈5%, 3, 6, 4 a few %, 0 and 7–9 rare.
//! - `trip_distance` (miles): log-normal, median 1.7, 0.5% zero.
//! - pickup: uniform day in 2016-01-01..2016-07-01, hour by a day-shaped profile; duration
//!   from distance over a log-normal speed (median 11 mph) plus a minute or two; 0.05% negative
//!   (dropoff before pickup), 0.02% a day or more.
//! - coordinates around (40.75, -73.98), dropoff displaced along a random bearing by the
//!   straight-line part of the distance; 1.5% of rows all zero, 0.05% far outliers (dropoff at
//!   0,0 or somewhere else in North America), so the haversine step finds trips over 100 km.
//! - `fare_amount` = 2.50 + 2.50/mile rounded to 0.50 (JFK flat 52.00 for `RatecodeID` 2),
//!   extra by hour, 0.50 MTA tax, 0.30 surcharge, tips on card payments, rare 5.54 tolls,
//!   `total_amount` their exact sum (all amounts are whole cents).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use farmem_error::{Error, Result};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{LogNormal, Normal};

use crate::loader::Schema;
use crate::time::{days_from_civil, format_timestamp, weekday_of, SECONDS_PER_DAY};

/// Rows per independently seeded block.
pub const BLOCK_ROWS: u64 = 16 * 1024;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Pickups per hour of day, relative (quiet before dawn, peak in the evening).
const HOUR_WEIGHTS: [f64; 24] = [
    3.5, 2.6, 1.9, 1.4, 1.0, 1.0, 2.2, 3.5, 4.2, 4.3, 4.3, 4.4, 4.7, 4.7, 4.9, 4.8, 4.3, 5.0, 6.0,
    6.2, 5.6, 5.5, 5.4, 4.6,
];
/// `passenger_count` 0..=9.
const PASSENGER_WEIGHTS: [f64; 10] = [
    0.0035, 0.70, 0.14, 0.043, 0.021, 0.05, 0.032, 0.0003, 0.0002, 0.0001,
];
const RATECODES: [(u8, f64); 7] = [
    (1, 0.972),
    (2, 0.020),
    (5, 0.004),
    (3, 0.002),
    (4, 0.0015),
    (6, 0.0001),
    (99, 0.0004),
];
const PAYMENT_WEIGHTS: [(u8, f64); 4] = [(1, 0.66), (2, 0.33), (3, 0.007), (4, 0.003)];

/// The distributions, built once per block.
struct TripModel {
    hour: WeightedIndex<f64>,
    passengers: WeightedIndex<f64>,
    ratecode: WeightedIndex<f64>,
    payment: WeightedIndex<f64>,
    distance: LogNormal<f64>,
    speed: LogNormal<f64>,
    lat: Normal<f64>,
    lon: Normal<f64>,
    first_day: i64,
}

impl TripModel {
    fn new() -> Result<TripModel> {
        let bad = |e: &dyn std::fmt::Display| Error::internal(format!("trip model: {e}"));
        Ok(TripModel {
            hour: WeightedIndex::new(HOUR_WEIGHTS).map_err(|e| bad(&e))?,
            passengers: WeightedIndex::new(PASSENGER_WEIGHTS).map_err(|e| bad(&e))?,
            ratecode: WeightedIndex::new(RATECODES.map(|r| r.1)).map_err(|e| bad(&e))?,
            payment: WeightedIndex::new(PAYMENT_WEIGHTS.map(|r| r.1)).map_err(|e| bad(&e))?,
            distance: LogNormal::new(1.7f64.ln(), 0.85).map_err(|e| bad(&e))?,
            speed: LogNormal::new(11f64.ln(), 0.35).map_err(|e| bad(&e))?,
            lat: Normal::new(40.75, 0.025).map_err(|e| bad(&e))?,
            lon: Normal::new(-73.98, 0.022).map_err(|e| bad(&e))?,
            first_day: days_from_civil(2016, 1, 1),
        })
    }

    /// Appends one CSV row (with its newline) to `out`.
    fn write_row(&self, rng: &mut StdRng, out: &mut Vec<u8>) {
        let vendor: u8 = if rng.gen_bool(0.47) { 1 } else { 2 };
        let day = self.first_day + rng.gen_range(0..182);
        let hour = self.hour.sample(rng) as i64;
        let pickup = day * SECONDS_PER_DAY + hour * 3600 + rng.gen_range(0..3600);
        let passengers = self.passengers.sample(rng) as u8;
        let miles_cents: i64 = if rng.gen_bool(0.005) {
            0
        } else {
            (self.distance.sample(rng).clamp(0.01, 60.0) * 100.0).round() as i64
        };
        let miles = miles_cents as f64 / 100.0;
        let mut duration = if miles_cents == 0 {
            rng.gen_range(0..600)
        } else {
            let mph = self.speed.sample(rng).clamp(2.0, 45.0);
            (miles / mph * 3600.0) as i64 + rng.gen_range(30..180)
        };
        let odd: f64 = rng.gen();
        if odd < 0.0005 {
            duration = -rng.gen_range(60..3600);
        } else if odd < 0.0007 {
            duration += rng.gen_range(SECONDS_PER_DAY..3 * SECONDS_PER_DAY);
        }
        let dropoff = pickup + duration;
        let ratecode = RATECODES[self.ratecode.sample(rng)].0;
        let flag = if vendor == 1 && rng.gen_bool(0.0106) {
            b'Y'
        } else {
            b'N'
        };
        let payment = PAYMENT_WEIGHTS[self.payment.sample(rng)].0;

        // Coordinates in micro-degrees, written as fixed-point text.
        let place: f64 = rng.gen();
        let (plat, plon, dlat, dlon) = if place < 0.015 {
            (0.0, 0.0, 0.0, 0.0)
        } else {
            let plat = self.lat.sample(rng);
            let plon = self.lon.sample(rng);
            if place < 0.0155 {
                if rng.gen_bool(0.5) {
                    (plat, plon, 0.0, 0.0)
                } else {
                    (
                        plat,
                        plon,
                        rng.gen_range(25.0..50.0),
                        rng.gen_range(-120.0..-75.0),
                    )
                }
            } else {
                // Straight-line part of a street route (route factor 1.3).
                let km = miles * 1.609_344 / 1.3;
                let bearing = rng.gen_range(0.0..std::f64::consts::TAU);
                let dlat = plat + km * bearing.cos() / 111.0;
                let dlon = plon + km * bearing.sin() / (111.0 * plat.to_radians().cos());
                (plat, plon, dlat, dlon)
            }
        };

        let fare = if ratecode == 2 {
            5200
        } else {
            250 + (miles_cents * 250 / 100 + 25) / 50 * 50
        };
        let weekday = weekday_of(pickup);
        let extra = if (16..20).contains(&hour) && (1..=5).contains(&weekday) {
            100
        } else if !(6..20).contains(&hour) {
            50
        } else {
            0
        };
        let mta_tax = if ratecode == 5 { 0 } else { 50 };
        let tip = if payment == 1 && rng.gen_bool(0.8) {
            (fare as f64 * rng.gen_range(0.10..0.25)).round() as i64
        } else {
            0
        };
        let tolls = if miles > 3.0 && rng.gen_bool(0.04) {
            554
        } else {
            0
        };
        let surcharge = 30;
        let total = fare + extra + mta_tax + tip + tolls + surcharge;

        put_int(out, i64::from(vendor));
        out.push(b',');
        format_timestamp(pickup, out);
        out.push(b',');
        format_timestamp(dropoff, out);
        out.push(b',');
        put_int(out, i64::from(passengers));
        out.push(b',');
        put_fixed(out, miles_cents, 2);
        out.push(b',');
        put_fixed(out, micro(plon), 6);
        out.push(b',');
        put_fixed(out, micro(plat), 6);
        out.push(b',');
        put_int(out, i64::from(ratecode));
        out.push(b',');
        out.push(flag);
        out.push(b',');
        put_fixed(out, micro(dlon), 6);
        out.push(b',');
        put_fixed(out, micro(dlat), 6);
        out.push(b',');
        put_int(out, i64::from(payment));
        for cents in [fare, extra, mta_tax, tip, tolls, surcharge, total] {
            out.push(b',');
            put_fixed(out, cents, 2);
        }
        out.push(b'\n');
    }
}

fn micro(deg: f64) -> i64 {
    (deg * 1e6).round() as i64
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes `scaled / 10^decimals` with exactly `decimals` digits after the point.
fn put_fixed(out: &mut Vec<u8>, scaled: i64, decimals: u32) {
    let p = 10u64.pow(decimals);
    let a = scaled.unsigned_abs();
    if scaled < 0 {
        out.push(b'-');
    }
    put_int(out, (a / p) as i64);
    out.push(b'.');
    let frac = a % p;
    let mut d = p / 10;
    while d > 0 {
        out.push(b'0' + (frac / d % 10) as u8);
        d /= 10;
    }
}

/// The header line of the generated (and TLC) files, with its newline.
pub fn taxi_header() -> String {
    let schema = Schema::taxi();
    let names: Vec<&str> = schema.fields().iter().map(|(n, _)| n.as_str()).collect();
    format!("{}\n", names.join(","))
}

/// The CSV text of block `block` of a file generated with `seed`, holding `rows` rows.
fn block_bytes(model: &TripModel, seed: u64, block: u64, rows: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(splitmix64(seed ^ block));
    let mut out = Vec::with_capacity(rows as usize * 200);
    for _ in 0..rows {
        model.write_row(&mut rng, &mut out);
    }
    out
}

/// Writes a TLC-like taxi CSV of `rows` rows made from `seed` to `path`, calling `progress`
/// with `(rows written, rows)`; returns the file size in bytes.
pub fn generate(
    path: &Path,
    rows: u64,
    seed: u64,
    progress: Option<&(dyn Fn(u64, u64) + Sync)>,
) -> Result<u64> {
    let model = TripModel::new()?;
    let what = || format!("writing {}", path.display());
    let file = File::create(path).map_err(|e| Error::io(what(), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let header = taxi_header();
    w.write_all(header.as_bytes())
        .map_err(|e| Error::io(what(), e))?;
    let mut bytes = header.len() as u64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let mut next = 0u64;
    while next < blocks {
        let batch: Vec<u64> = (next..blocks.min(next + threads)).collect();
        let outputs: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|&b| {
                    let n = BLOCK_ROWS.min(rows - b * BLOCK_ROWS);
                    let model = &model;
                    s.spawn(move || block_bytes(model, seed, b, n))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().map_err(|_| {
                        Error::new(
                            farmem_error::ErrorKind::Panicked,
                            "a generator thread panicked",
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for o in &outputs {
            w.write_all(o).map_err(|e| Error::io(what(), e))?;
            bytes += o.len() as u64;
        }
        next += batch.len() as u64;
        if let Some(f) = progress {
            f((next * BLOCK_ROWS).min(rows), rows);
        }
    }
    w.flush().map_err(|e| Error::io(what(), e))?;
    Ok(bytes)
}
