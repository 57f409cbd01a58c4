//! The nine steps of AIFM's NYC-taxi DataFrame analysis (AIFM §6.2, after the C++ DataFrame
//! library's taxi example), each a function over a frame loaded with [`Schema::taxi`].
//!
//! Steps 4, 6 and 7 add derived columns ([`DURATION`], [`HAVERSINE_DISTANCE`], [`PICKUP_HOUR`],
//! [`PICKUP_DAY`], [`PICKUP_MONTH`]) that later steps read: step 8 and 9 need 4 and 7 first
//! (they fail with `NotFound` naming the missing column otherwise). [`run_all`] runs them in
//! order, printing each result with its time. Every step goes through [`ColumnStore`] and
//! [`Storage`] operations only, so a far-memory frame runs them with its offloads.
//!
//! [`Schema::taxi`]: crate::Schema::taxi

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use farmem_error::{Error, Result};

use crate::column::{ColumnStore, Histogram, Summary};
use crate::element::CmpOp;
use crate::frame::{AnyColumn, DataFrame};
use crate::storage::{BinaryOp, Storage, TimePart, TripCoordinates};
use crate::time::format_timestamp;

/// Derived column: `tpep_dropoff_datetime - tpep_pickup_datetime`, seconds (step 4).
pub const DURATION: &str = "duration";
/// Derived column: haversine distance between pickup and dropoff, km (step 6).
pub const HAVERSINE_DISTANCE: &str = "haversine_distance";
/// Derived column: pickup hour of day 0..=23 (step 7).
pub const PICKUP_HOUR: &str = "pickup_hour";
/// Derived column: pickup day of week, 0 = Sunday (step 7).
pub const PICKUP_DAY: &str = "pickup_day";
/// Derived column: pickup month 1..=12 (step 7).
pub const PICKUP_MONTH: &str = "pickup_month";

/// Step 1: how many `VendorID` values there are and which.
#[derive(Clone, Debug, PartialEq)]
pub struct VendorSummary {
    /// Number of rows with a `VendorID` (all of them).
    pub count: usize,
    /// The distinct vendor ids, ascending.
    pub unique: Vec<i64>,
}

/// Steps 2 and 3: the `passenger_count` histogram of one vendor's trips.
#[derive(Clone, Debug, PartialEq)]
pub struct PassengerHistogram {
    /// The vendor.
    pub vendor: i64,
    /// `(passenger_count, trips)`, ascending by count.
    pub counts: Vec<(u8, u64)>,
}

/// Step 4: trip duration statistics (seconds; `None` for an empty frame).
#[derive(Clone, Debug, PartialEq)]
pub struct DurationStats {
    /// Longest duration.
    pub max: Option<i64>,
    /// Shortest duration (negative when a dropoff precedes its pickup).
    pub min: Option<i64>,
    /// Mean duration.
    pub mean: Option<f64>,
}

/// Step 5: the store-and-forward flag.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreAndForward {
    /// Rows in the frame.
    pub rows: usize,
    /// Rows with flag `N`.
    pub n_rows: usize,
    /// `n_rows / rows` (0 for an empty frame).
    pub n_share: f64,
    /// Distinct vendors among the rows with flag `Y`, ascending.
    pub y_vendors: Vec<i64>,
}

/// Step 6: trips whose pickup and dropoff are more than 100 km apart.
#[derive(Clone, Debug, PartialEq)]
pub struct LongTrips {
    /// Number of such trips.
    pub over_100km: usize,
}

/// One row of step 7's preview.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PickupPartsRow {
    /// Pickup time, seconds since the epoch.
    pub pickup: i64,
    /// Hour of day.
    pub hour: u8,
    /// Day of week, 0 = Sunday.
    pub day: u8,
    /// Month 1..=12.
    pub month: u8,
}

/// Step 7: pickup hour, weekday and month histograms and the first rows.
#[derive(Clone, Debug, PartialEq)]
pub struct PickupTimeParts {
    /// `(hour, trips)`, ascending.
    pub hours: Vec<(u8, u64)>,
    /// `(day of week, trips)`, ascending (0 = Sunday).
    pub days: Vec<(u8, u64)>,
    /// `(month, trips)`, ascending.
    pub months: Vec<(u8, u64)>,
    /// The first (up to) 10 rows of the three new columns.
    pub first_rows: Vec<PickupPartsRow>,
}

/// Steps 8 and 9: median trip duration per key.
#[derive(Clone, Debug, PartialEq)]
pub struct DurationMedians {
    /// The key column (`pickup_day` or `pickup_month`).
    pub key: &'static str,
    /// `(key, median duration in seconds)`, ascending by key.
    pub medians: Vec<(u8, f64)>,
}

/// Everything [`run_all`] computed, with each step's time.
#[derive(Clone, Debug, PartialEq)]
pub struct TaxiResults {
    /// Step 1.
    pub vendors: VendorSummary,
    /// Step 2 (vendor 1).
    pub passengers_vendor1: PassengerHistogram,
    /// Step 3 (vendor 2).
    pub passengers_vendor2: PassengerHistogram,
    /// Step 4.
    pub duration: DurationStats,
    /// Step 5.
    pub store_and_forward: StoreAndForward,
    /// Step 6.
    pub long_trips: LongTrips,
    /// Step 7.
    pub pickup_parts: PickupTimeParts,
    /// Step 8.
    pub median_by_day: DurationMedians,
    /// Step 9.
    pub median_by_month: DurationMedians,
    /// `(step name, wall time)` for the nine steps, in order.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Step 1: count of `VendorID` and its unique values.
pub fn vendor_summary<S: Storage>(df: &DataFrame<S>) -> Result<VendorSummary> {
    let v = df.i64("VendorID")?;
    Ok(VendorSummary {
        count: v.count()?,
        unique: v.unique()?,
    })
}

/// Steps 2–3: `passenger_count` histogram of the trips of `vendor`.
pub fn passenger_histogram<S: Storage>(
    df: &DataFrame<S>,
    vendor: i64,
) -> Result<PassengerHistogram> {
    let rows = df.i64("VendorID")?.filter(CmpOp::Eq, vendor)?;
    Ok(PassengerHistogram {
        vendor,
        counts: df.u8("passenger_count")?.histogram_of(&rows)?,
    })
}

/// Step 4: adds [`DURATION`] and returns its max, min and mean (computed as the column is made,
/// with the arithmetic of [`ColumnStore::max`], `min` and `mean`).
pub fn trip_duration<S: Storage>(df: &mut DataFrame<S>) -> Result<DurationStats> {
    let mut summary = Summary::new();
    let duration = df.storage().zip_i64_seen(
        df.timestamp("tpep_dropoff_datetime")?,
        df.timestamp("tpep_pickup_datetime")?,
        BinaryOp::Sub,
        &mut |batch| summary.add(batch),
    )?;
    let (max, min, mean) = summary.get();
    df.add_column(DURATION, AnyColumn::I64(duration))?;
    Ok(DurationStats { max, min, mean })
}

/// Step 5: share of flag `N` and the vendors of the `Y` rows.
pub fn store_and_forward<S: Storage>(df: &DataFrame<S>) -> Result<StoreAndForward> {
    let flag = df.categorical("store_and_fwd_flag")?;
    let rows = flag.codes().count()?;
    let n_rows = flag.count_equal::<u8>("N")?;
    let y_rows = flag.rows_equal::<u8>("Y")?;
    let y_vendors = df.i64("VendorID")?.unique_of(&y_rows)?;
    Ok(StoreAndForward {
        rows,
        n_rows,
        n_share: if rows == 0 {
            0.0
        } else {
            n_rows as f64 / rows as f64
        },
        y_vendors,
    })
}

/// Step 6: adds [`HAVERSINE_DISTANCE`] and counts the trips over 100 km (as the column is made).
pub fn long_trips<S: Storage>(df: &mut DataFrame<S>) -> Result<LongTrips> {
    let mut over_100km = 0;
    let distance = df.storage().haversine_km_seen(
        TripCoordinates {
            pickup_lat: df.f64("pickup_latitude")?,
            pickup_lon: df.f64("pickup_longitude")?,
            dropoff_lat: df.f64("dropoff_latitude")?,
            dropoff_lon: df.f64("dropoff_longitude")?,
        },
        &mut |batch| {
            over_100km += batch.iter().filter(|d| CmpOp::Gt.holds(*d, &100.0)).count();
        },
    )?;
    df.add_column(HAVERSINE_DISTANCE, AnyColumn::F64(distance))?;
    Ok(LongTrips { over_100km })
}

/// Step 7: adds [`PICKUP_HOUR`], [`PICKUP_DAY`], [`PICKUP_MONTH`]; their histograms (counted as
/// the columns are made) and the first 10 rows.
pub fn pickup_time_parts<S: Storage>(df: &mut DataFrame<S>) -> Result<PickupTimeParts> {
    let pickup = df.timestamp("tpep_pickup_datetime")?;
    let parts = [TimePart::Hour, TimePart::Weekday, TimePart::Month];
    let mut hists: [Histogram<u8>; 3] = Default::default();
    let [hour, day, month]: [_; 3] = df
        .storage()
        .timestamp_parts_seen(pickup, &parts, &mut |k, batch| {
            if let Some(h) = hists.get_mut(k) {
                h.add_all(batch);
            }
        })?
        .try_into()
        .map_err(|v: Vec<_>| {
            Error::internal(format!(
                "timestamp_parts returned {} columns for 3 parts",
                v.len()
            ))
        })?;
    let mut first_rows = Vec::new();
    for i in 0..pickup.len().min(10) {
        first_rows.push(PickupPartsRow {
            pickup: pickup.get(i)?,
            hour: hour.get(i)?,
            day: day.get(i)?,
            month: month.get(i)?,
        });
    }
    let [hours, days, months] = hists;
    let parts = PickupTimeParts {
        hours: hours.finish()?,
        days: days.finish()?,
        months: months.finish()?,
        first_rows,
    };
    df.add_column(PICKUP_HOUR, AnyColumn::U8(hour))?;
    df.add_column(PICKUP_DAY, AnyColumn::U8(day))?;
    df.add_column(PICKUP_MONTH, AnyColumn::U8(month))?;
    Ok(parts)
}

/// Steps 8 ([`PICKUP_DAY`]) and 9 ([`PICKUP_MONTH`]): median [`DURATION`] per key.
pub fn median_duration_by<S: Storage>(
    df: &DataFrame<S>,
    key: &'static str,
) -> Result<DurationMedians> {
    let need = |c: &str, step: &str| {
        if df.has_column(c) {
            Ok(())
        } else {
            Err(Error::new(
                farmem_error::ErrorKind::NotFound,
                format!("column {c:?} is missing; run {step} first"),
            ))
        }
    };
    need(DURATION, "trip_duration (step 4)")?;
    need(key, "pickup_time_parts (step 7)")?;
    Ok(DurationMedians {
        key,
        medians: df.storage().group_median(df.u8(key)?, df.i64(DURATION)?)?,
    })
}

/// Runs the nine steps in order on `df`, writing each result and its time to `out`.
pub fn run_all<S: Storage>(df: &mut DataFrame<S>, out: &mut dyn Write) -> Result<TaxiResults> {
    let mut timings = Vec::new();
    let mut step =
        |name: &'static str, out: &mut dyn Write, shown: &dyn fmt::Display, t: Instant| {
            let took = t.elapsed();
            timings.push((name, took));
            writeln!(
                out,
                "== {name} ({:.1} ms)\n{shown}",
                took.as_secs_f64() * 1e3
            )
            .map_err(|e| Error::io("writing the taxi report", e))
        };
    let t = Instant::now();
    let vendors = vendor_summary(df)?;
    step("1 vendor ids", out, &vendors, t)?;
    let t = Instant::now();
    let passengers_vendor1 = passenger_histogram(df, 1)?;
    step("2 passengers, vendor 1", out, &passengers_vendor1, t)?;
    let t = Instant::now();
    let passengers_vendor2 = passenger_histogram(df, 2)?;
    step("3 passengers, vendor 2", out, &passengers_vendor2, t)?;
    let t = Instant::now();
    let duration = trip_duration(df)?;
    step("4 trip duration", out, &duration, t)?;
    let t = Instant::now();
    let store_and_forward = store_and_forward(df)?;
    step("5 store and forward", out, &store_and_forward, t)?;
    let t = Instant::now();
    let long_trips = long_trips(df)?;
    step("6 haversine distance", out, &long_trips, t)?;
    let t = Instant::now();
    let pickup_parts = pickup_time_parts(df)?;
    step("7 pickup hour/day/month", out, &pickup_parts, t)?;
    let t = Instant::now();
    let median_by_day = median_duration_by(df, PICKUP_DAY)?;
    step("8 median duration by day", out, &median_by_day, t)?;
    let t = Instant::now();
    let median_by_month = median_duration_by(df, PICKUP_MONTH)?;
    step("9 median duration by month", out, &median_by_month, t)?;
    Ok(TaxiResults {
        vendors,
        passengers_vendor1,
        passengers_vendor2,
        duration,
        store_and_forward,
        long_trips,
        pickup_parts,
        median_by_day,
        median_by_month,
        timings,
    })
}

fn write_counts(f: &mut fmt::Formatter<'_>, label: &str, counts: &[(u8, u64)]) -> fmt::Result {
    write!(f, "{label}:")?;
    for (k, n) in counts {
        write!(f, " {k}={n}")?;
    }
    writeln!(f)
}

impl fmt::Display for VendorSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "VendorID values: {}", self.count)?;
        writeln!(
            f,
            "unique VendorIDs: {} {:?}",
            self.unique.len(),
            self.unique
        )
    }
}

impl fmt::Display for PassengerHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_counts(
            f,
            &format!("passenger_count of vendor {}", self.vendor),
            &self.counts,
        )
    }
}

impl fmt::Display for DurationStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.max, self.min, self.mean) {
            (Some(max), Some(min), Some(mean)) => {
                writeln!(f, "duration max {max} s, min {min} s, mean {mean:.2} s")
            }
            _ => writeln!(f, "duration: no trips"),
        }
    }
}

impl fmt::Display for StoreAndForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "store_and_fwd_flag N: {} of {} ({:.4}%)",
            self.n_rows,
            self.rows,
            self.n_share * 100.0
        )?;
        writeln!(f, "vendors with flag Y: {:?}", self.y_vendors)
    }
}

impl fmt::Display for LongTrips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "trips over 100 km: {}", self.over_100km)
    }
}

impl fmt::Display for PickupTimeParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_counts(f, "pickup_hour", &self.hours)?;
        write_counts(f, "pickup_day (0 = Sunday)", &self.days)?;
        write_counts(f, "pickup_month", &self.months)?;
        writeln!(
            f,
            "tpep_pickup_datetime  pickup_hour pickup_day pickup_month"
        )?;
        for r in &self.first_rows {
            let mut ts = Vec::new();
            format_timestamp(r.pickup, &mut ts);
            writeln!(
                f,
                "{}  {:>11} {:>10} {:>12}",
                String::from_utf8_lossy(&ts),
                r.hour,
                r.day,
                r.month
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for DurationMedians {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "median duration by {}:", self.key)?;
        for (k, m) in &self.medians {
            write!(f, " {k}={m}")?;
        }
        writeln!(f)
    }
}
