//! `Storage`: a family of columns (all local, or all in one far-memory instance) and the
//! operations that read several columns at once.
//!
//! A [`DataFrame`](crate::DataFrame) is generic over one `Storage`. The storage names its column
//! type for every element type (a generic associated type), creates empty columns, and runs the
//! element-wise operations of the taxi analysis: differences of two `i64` columns, parts of a
//! timestamp, haversine distance from four coordinate columns, and medians grouped by a key.
//! Each has a provided implementation that walks its inputs in blocks of rows through
//! [`ColumnStore::copy_range`]; a far-memory storage overrides the ones its memory server can
//! run next to the data (AIFM §5, offloaded DataFrame operators), returning identical results.
//!
//! The operations that make a new column have a `_seen` form that also hands each batch of new
//! values to a closure ([`Seen`]) while they are still local: an analysis that aggregates the
//! new column (the max, min and mean of the trip durations, the histograms of the pickup hours)
//! does it in the same pass, instead of reading back a column that a far-memory storage may
//! already have evacuated. The plain form is the `_seen` form with a closure that ignores the
//! values; a storage overrides the `_seen` form.
//!
//! [`LocalStorage`] keeps everything in plain `Vec`s: the all-local ideal baseline.

use std::ops::Range;

use farmem_error::{Error, Result};

use crate::column::{median_in_place, ColumnStore, BLOCK_ROWS};
use crate::element::Element;
use crate::time;

/// An element-wise operation on two `i64` columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b` (wrapping).
    Add,
    /// `a - b` (wrapping), e.g. trip duration = dropoff - pickup.
    Sub,
}

impl BinaryOp {
    /// `a <op> b`.
    pub fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            BinaryOp::Add => a.wrapping_add(b),
            BinaryOp::Sub => a.wrapping_sub(b),
        }
    }
}

/// A part of a timestamp (seconds since the epoch, wall clock read as UTC; see [`time`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimePart {
    /// Hour of day, 0..=23.
    Hour,
    /// Day of week, 0 = Sunday .. 6 = Saturday.
    Weekday,
    /// Month, 1..=12.
    Month,
}

impl TimePart {
    /// The part of `ts`.
    pub fn of(self, ts: i64) -> u8 {
        match self {
            TimePart::Hour => time::hour_of(ts),
            TimePart::Weekday => time::weekday_of(ts),
            TimePart::Month => time::month_of(ts),
        }
    }
}

/// Where an operation that makes a new column hands over its values as it makes them: called
/// with consecutive batches in row order, together covering the column (module note).
pub type Seen<'a, T> = &'a mut dyn FnMut(&[T]);

/// Mean Earth radius in km used by [`haversine_km`] (as in AIFM's taxi analysis).
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// Great-circle distance in km between two points in degrees, AIFM's formula term for term
/// (so a server-side implementation written the same way gets the same bits).
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let to_rad = std::f64::consts::PI / 180.0;
    let d_lat = (lat2 - lat1) * to_rad;
    let d_lon = (lon2 - lon1) * to_rad;
    let lat1 = lat1 * to_rad;
    let lat2 = lat2 * to_rad;
    let a = (d_lat / 2.0).sin().powi(2) + (d_lon / 2.0).sin().powi(2) * lat1.cos() * lat2.cos();
    EARTH_RADIUS_KM * 2.0 * a.sqrt().asin()
}

/// The coordinate columns of a trip, in degrees, for [`Storage::haversine_km`].
pub struct TripCoordinates<'a, C> {
    /// Pickup latitude.
    pub pickup_lat: &'a C,
    /// Pickup longitude.
    pub pickup_lon: &'a C,
    /// Dropoff latitude.
    pub dropoff_lat: &'a C,
    /// Dropoff longitude.
    pub dropoff_lon: &'a C,
}

/// Where a DataFrame's columns live; see the module docs.
pub trait Storage: Clone + Send + Sync + 'static {
    /// The column type for elements of type `T`.
    type Column<T: Element>: ColumnStore<T>;

    /// A short name for reports (`"local"`).
    fn name(&self) -> &'static str;

    /// A new, empty column.
    fn new_column<T: Element>(&self) -> Result<Self::Column<T>>;

    /// A new column holding `src`.
    fn column_from_slice<T: Element>(&self, src: &[T]) -> Result<Self::Column<T>> {
        let mut c = self.new_column()?;
        c.reserve(src.len())?;
        c.extend_from_slice(src)?;
        Ok(c)
    }

    /// `a[i] <op> b[i]` for every row.
    fn zip_i64(
        &self,
        a: &Self::Column<i64>,
        b: &Self::Column<i64>,
        op: BinaryOp,
    ) -> Result<Self::Column<i64>> {
        self.zip_i64_seen(a, b, op, &mut |_| {})
    }

    /// [`zip_i64`](Self::zip_i64), also handing every new value to `seen` (module note).
    fn zip_i64_seen(
        &self,
        a: &Self::Column<i64>,
        b: &Self::Column<i64>,
        op: BinaryOp,
        seen: Seen<'_, i64>,
    ) -> Result<Self::Column<i64>> {
        same_len(&[a.len(), b.len()], "zip_i64")?;
        let mut out = self.new_column()?;
        out.reserve(a.len())?;
        let (mut xa, mut xb, mut res) = (Vec::new(), Vec::new(), Vec::new());
        for rows in blocks(a.len()) {
            read_block(a, &rows, &mut xa)?;
            read_block(b, &rows, &mut xb)?;
            res.clear();
            res.extend(xa.iter().zip(&xb).map(|(&x, &y)| op.apply(x, y)));
            seen(&res);
            out.extend_from_slice(&res)?;
        }
        Ok(out)
    }

    /// `part(ts[i])` for every row.
    fn timestamp_part(&self, ts: &Self::Column<i64>, part: TimePart) -> Result<Self::Column<u8>> {
        let mut out = self.new_column()?;
        out.reserve(ts.len())?;
        let mut res = Vec::new();
        ts.for_each_chunk(|c| {
            res.clear();
            res.extend(c.iter().map(|&t| part.of(t)));
            out.extend_from_slice(&res)
        })?;
        Ok(out)
    }

    /// One column per entry of `parts`, each `part(ts[i])` for every row (as
    /// [`timestamp_part`](Self::timestamp_part) for each part; a storage may compute them in
    /// one pass over `ts`).
    fn timestamp_parts(
        &self,
        ts: &Self::Column<i64>,
        parts: &[TimePart],
    ) -> Result<Vec<Self::Column<u8>>> {
        self.timestamp_parts_seen(ts, parts, &mut |_, _| {})
    }

    /// [`timestamp_parts`](Self::timestamp_parts), also handing every new value to `seen`
    /// with the index of its part in `parts` (module note; each part's values in row order).
    fn timestamp_parts_seen(
        &self,
        ts: &Self::Column<i64>,
        parts: &[TimePart],
        seen: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<Vec<Self::Column<u8>>> {
        let mut outs = Vec::with_capacity(parts.len());
        for (k, &p) in parts.iter().enumerate() {
            let col = self.timestamp_part(ts, p)?;
            col.for_each_chunk(|c| {
                seen(k, c);
                Ok(())
            })?;
            outs.push(col);
        }
        Ok(outs)
    }

    /// [`haversine_km`] of every row's pickup and dropoff coordinates.
    fn haversine_km(
        &self,
        coords: TripCoordinates<'_, Self::Column<f64>>,
    ) -> Result<Self::Column<f64>> {
        self.haversine_km_seen(coords, &mut |_| {})
    }

    /// [`haversine_km`](Self::haversine_km), also handing every new value to `seen` (module
    /// note).
    fn haversine_km_seen(
        &self,
        coords: TripCoordinates<'_, Self::Column<f64>>,
        seen: Seen<'_, f64>,
    ) -> Result<Self::Column<f64>> {
        let cols = [
            coords.pickup_lat,
            coords.pickup_lon,
            coords.dropoff_lat,
            coords.dropoff_lon,
        ];
        same_len(&cols.map(|c| c.len()), "haversine_km")?;
        let mut out = self.new_column()?;
        out.reserve(cols[0].len())?;
        let mut bufs: [Vec<f64>; 4] = Default::default();
        let mut res = Vec::new();
        for rows in blocks(cols[0].len()) {
            for (c, buf) in cols.iter().zip(bufs.iter_mut()) {
                read_block(*c, &rows, buf)?;
            }
            res.clear();
            res.extend(
                (0..rows.len())
                    .map(|i| haversine_km(bufs[0][i], bufs[1][i], bufs[2][i], bufs[3][i])),
            );
            seen(&res);
            out.extend_from_slice(&res)?;
        }
        Ok(out)
    }

    /// For every distinct key, the median (as [`ColumnStore::median`]) of the values in rows
    /// with that key; ascending by key.
    fn group_median(
        &self,
        keys: &Self::Column<u8>,
        values: &Self::Column<i64>,
    ) -> Result<Vec<(u8, f64)>> {
        same_len(&[keys.len(), values.len()], "group_median")?;
        let mut groups: Vec<Vec<i64>> = vec![Vec::new(); 256];
        let (mut xk, mut xv) = (Vec::new(), Vec::new());
        for rows in blocks(keys.len()) {
            read_block(keys, &rows, &mut xk)?;
            read_block(values, &rows, &mut xv)?;
            for (&k, &v) in xk.iter().zip(&xv) {
                groups[usize::from(k)].push(v);
            }
        }
        Ok(groups
            .iter_mut()
            .enumerate()
            .filter_map(|(k, g)| median_in_place(g).map(|m| (k as u8, m)))
            .collect())
    }
}

/// Row ranges of at most [`BLOCK_ROWS`] covering `0..len`.
fn blocks(len: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len)
        .step_by(BLOCK_ROWS)
        .map(move |s| s..(s + BLOCK_ROWS).min(len))
}

fn read_block<T: Element, C: ColumnStore<T>>(
    col: &C,
    rows: &Range<usize>,
    buf: &mut Vec<T>,
) -> Result<()> {
    buf.clear();
    buf.resize(rows.len(), T::default());
    col.copy_range(rows.start, buf)
}

pub(crate) fn same_len(lens: &[usize], what: &str) -> Result<()> {
    if lens.windows(2).any(|w| w[0] != w[1]) {
        return Err(Error::invalid(format!(
            "{what}: input columns have different lengths {lens:?}; they must come from one frame"
        )));
    }
    Ok(())
}

/// Columns in plain local `Vec`s: the all-local ideal baseline.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalStorage;

/// A column in a local `Vec`; every [`ColumnStore`] operation runs on the slice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalColumn<T> {
    values: Vec<T>,
}

impl<T: Element> LocalColumn<T> {
    /// A column holding `values`.
    pub fn from_vec(values: Vec<T>) -> LocalColumn<T> {
        LocalColumn { values }
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        &self.values
    }

    /// The elements, giving up the column.
    pub fn into_vec(self) -> Vec<T> {
        self.values
    }
}

impl<T: Element> ColumnStore<T> for LocalColumn<T> {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn get(&self, i: usize) -> Result<T> {
        self.values.get(i).copied().ok_or_else(|| {
            Error::invalid(format!(
                "row {i} out of bounds for a column of {} rows",
                self.values.len()
            ))
        })
    }

    fn push(&mut self, v: T) -> Result<()> {
        self.values.push(v);
        Ok(())
    }

    fn reserve(&mut self, additional: usize) -> Result<()> {
        self.values.reserve(additional);
        Ok(())
    }

    fn extend_from_slice(&mut self, src: &[T]) -> Result<()> {
        self.values.extend_from_slice(src);
        Ok(())
    }

    fn for_each_chunk_in<F>(&self, range: Range<usize>, mut f: F) -> Result<()>
    where
        F: FnMut(usize, &[T]) -> Result<()>,
    {
        let start = range.start;
        let chunk = self.values.get(range.clone()).ok_or_else(|| {
            Error::invalid(format!(
                "row range {range:?} out of bounds for a column of {} rows",
                self.values.len()
            ))
        })?;
        if chunk.is_empty() {
            return Ok(());
        }
        f(start, chunk)
    }

    fn empty_like(&self) -> Result<Self> {
        Ok(LocalColumn { values: Vec::new() })
    }

    fn copy_range(&self, start: usize, dst: &mut [T]) -> Result<()> {
        let src = start
            .checked_add(dst.len())
            .and_then(|end| self.values.get(start..end))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "rows {start}..+{} out of bounds for a column of {} rows",
                    dst.len(),
                    self.values.len()
                ))
            })?;
        dst.copy_from_slice(src);
        Ok(())
    }

    fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.values.clone())
    }
}

impl Storage for LocalStorage {
    type Column<T: Element> = LocalColumn<T>;

    fn name(&self) -> &'static str {
        "local"
    }

    fn new_column<T: Element>(&self) -> Result<LocalColumn<T>> {
        Ok(LocalColumn { values: Vec::new() })
    }

    fn column_from_slice<T: Element>(&self, src: &[T]) -> Result<LocalColumn<T>> {
        Ok(LocalColumn::from_vec(src.to_vec()))
    }

    // The baseline skips the block copies of the provided version: it zips the slices.
    fn zip_i64_seen(
        &self,
        a: &LocalColumn<i64>,
        b: &LocalColumn<i64>,
        op: BinaryOp,
        seen: Seen<'_, i64>,
    ) -> Result<LocalColumn<i64>> {
        same_len(&[a.len(), b.len()], "zip_i64")?;
        let out: Vec<i64> = a
            .values
            .iter()
            .zip(&b.values)
            .map(|(&x, &y)| op.apply(x, y))
            .collect();
        seen(&out);
        Ok(LocalColumn::from_vec(out))
    }

    fn haversine_km_seen(
        &self,
        c: TripCoordinates<'_, LocalColumn<f64>>,
        seen: Seen<'_, f64>,
    ) -> Result<LocalColumn<f64>> {
        let cols = [c.pickup_lat, c.pickup_lon, c.dropoff_lat, c.dropoff_lon];
        same_len(&cols.map(|c| c.len()), "haversine_km")?;
        let (a, b, d, e) = (
            &c.pickup_lat.values,
            &c.pickup_lon.values,
            &c.dropoff_lat.values,
            &c.dropoff_lon.values,
        );
        let out: Vec<f64> = (0..a.len())
            .map(|i| haversine_km(a[i], b[i], d[i], e[i]))
            .collect();
        seen(&out);
        Ok(LocalColumn::from_vec(out))
    }
}
