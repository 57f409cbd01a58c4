//! The taxi steps' results as plain Python values (dicts, lists, ints, floats), the shapes the
//! `DataFrame` step methods document and `farmem/_farmem.pyi` types:
//!
//! | step | Rust result | Python value |
//! | --- | --- | --- |
//! | 1 `vendor_summary` | `VendorSummary` | `{"count": int, "unique": [int]}` |
//! | 2, 3 `passenger_histogram` | `PassengerHistogram` | `{passengers: trips}` ascending |
//! | 4 `trip_duration` | `DurationStats` | `{"max": int?, "min": int?, "mean": float?}` |
//! | 5 `store_and_forward` | `StoreAndForward` | `{"rows", "n_rows", "n_share", "y_vendors"}` |
//! | 6 `long_trips` | `LongTrips` | `int` |
//! | 7 `pickup_time_parts` | `PickupTimeParts` | `{"hours", "days", "months": {k: n}, "first_rows": [(str, h, d, m)]}` |
//! | 8, 9 `median_duration_by` | `DurationMedians` | `{key: median seconds (float)}` |
//!
//! Dicts are built in the Rust results' (ascending) order, so iterating one walks its keys in
//! ascending order, as `pandas.Series.sort_index()` does.

use farmem::dataframe::taxi::{
    DurationStats, PickupTimeParts, StoreAndForward, TaxiResults, VendorSummary,
};
use farmem::dataframe::time::format_timestamp;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

/// Step 1.
pub(crate) fn vendor_summary<'py>(
    py: Python<'py>,
    r: &VendorSummary,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("count", r.count)?;
    d.set_item("unique", PyList::new(py, &r.unique)?)?;
    Ok(d)
}

/// `{key: count}` in ascending key order (histograms of steps 2, 3 and 7).
pub(crate) fn counts<'py>(py: Python<'py>, counts: &[(u8, u64)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, n) in counts {
        d.set_item(k, n)?;
    }
    Ok(d)
}

/// Step 4.
pub(crate) fn duration<'py>(py: Python<'py>, r: &DurationStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("max", r.max)?;
    d.set_item("min", r.min)?;
    d.set_item("mean", r.mean)?;
    Ok(d)
}

/// Step 5.
pub(crate) fn store_and_forward<'py>(
    py: Python<'py>,
    r: &StoreAndForward,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rows", r.rows)?;
    d.set_item("n_rows", r.n_rows)?;
    d.set_item("n_share", r.n_share)?;
    d.set_item("y_vendors", PyList::new(py, &r.y_vendors)?)?;
    Ok(d)
}

/// Step 7: the three histograms and the first rows as `(pickup text, hour, day, month)`, the
/// pickup written as in the CSV (`YYYY-MM-DD HH:MM:SS`).
pub(crate) fn pickup_parts<'py>(
    py: Python<'py>,
    r: &PickupTimeParts,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("hours", counts(py, &r.hours)?)?;
    d.set_item("days", counts(py, &r.days)?)?;
    d.set_item("months", counts(py, &r.months)?)?;
    let rows = PyList::empty(py);
    for row in &r.first_rows {
        let mut text = Vec::with_capacity(19);
        format_timestamp(row.pickup, &mut text);
        let pickup = String::from_utf8_lossy(&text).into_owned();
        rows.append(PyTuple::new(
            py,
            [
                pickup.into_pyobject(py)?.into_any(),
                row.hour.into_pyobject(py)?.into_any(),
                row.day.into_pyobject(py)?.into_any(),
                row.month.into_pyobject(py)?.into_any(),
            ],
        )?)?;
    }
    d.set_item("first_rows", rows)?;
    Ok(d)
}

/// Steps 8 and 9.
pub(crate) fn medians<'py>(py: Python<'py>, medians: &[(u8, f64)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, m) in medians {
        d.set_item(k, m)?;
    }
    Ok(d)
}

/// Everything `run_all` computed: one entry per step result, named as the step methods, plus
/// `"timings"`, `{step name: seconds}` in step order.
pub(crate) fn all<'py>(py: Python<'py>, r: &TaxiResults) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("vendor_summary", vendor_summary(py, &r.vendors)?)?;
    d.set_item(
        "passengers_vendor1",
        counts(py, &r.passengers_vendor1.counts)?,
    )?;
    d.set_item(
        "passengers_vendor2",
        counts(py, &r.passengers_vendor2.counts)?,
    )?;
    d.set_item("trip_duration", duration(py, &r.duration)?)?;
    d.set_item(
        "store_and_forward",
        store_and_forward(py, &r.store_and_forward)?,
    )?;
    d.set_item("long_trips", r.long_trips.over_100km)?;
    d.set_item("pickup_time_parts", pickup_parts(py, &r.pickup_parts)?)?;
    d.set_item("median_by_day", medians(py, &r.median_by_day.medians)?)?;
    d.set_item("median_by_month", medians(py, &r.median_by_month.medians)?)?;
    let timings = PyDict::new(py);
    for (name, took) in &r.timings {
        timings.set_item(*name, took.as_secs_f64())?;
    }
    d.set_item("timings", timings)?;
    Ok(d)
}
