//! The taxi steps through the C functions on a far-memory frame, against the same steps on an
//! all-local frame of the same generated CSV.

use std::ffi::{c_int, CString};

use fm::dataframe::taxi;
use fm::dataframe::{load_csv, DataFrame, LoadOptions, LocalStorage, Schema};

use super::*;
use crate::dataframe::run_all_to;

const ROWS: u64 = 6000;

struct Frames {
    rt: Rt,
    df: *mut fm_dataframe_t,
    local: DataFrame<LocalStorage>,
    path: std::path::PathBuf,
}

impl Drop for Frames {
    fn drop(&mut self) {
        // SAFETY: any handle value is allowed.
        let st = unsafe { fm_dataframe_destroy(self.df) };
        if !std::thread::panicking() {
            ok(st);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A generated CSV loaded far (through C, with a 256 KiB budget) and locally.
fn frames(name: &str) -> Frames {
    let path = temp_path(name);
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    ok(unsafe { fm_taxi_generate(c_path.as_ptr(), ROWS, 7) });
    let rt = Rt::new(256 << 10);
    let mut df = std::ptr::null_mut();
    // SAFETY: valid handle, path and out-pointer.
    ok(unsafe { fm_dataframe_load_taxi_csv(rt.0, c_path.as_ptr(), &mut df) });
    let opts = LoadOptions {
        threads: 1,
        skip_bad_rows: false,
        progress: None,
    };
    let (local, _) = load_csv(&path, &Schema::taxi(), &LocalStorage, opts).unwrap();
    Frames {
        rt,
        df,
        local,
        path,
    }
}

/// `taxi::run_all` output without the per-step times.
fn without_times(report: &[u8]) -> String {
    String::from_utf8_lossy(report)
        .lines()
        .map(|l| match (l.starts_with("== "), l.rfind(" (")) {
            (true, Some(i)) => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dataframe_each_step_matches_the_all_local_run() {
    let mut f = frames("steps.csv");
    let df = f.df;
    // SAFETY: (whole block) a live frame handle and out-buffers of the capacities passed.
    unsafe {
        let mut rows = 0u64;
        ok(fm_dataframe_rows(df, &mut rows));
        assert_eq!(rows, ROWS);
        let mut cols = 0usize;
        ok(fm_dataframe_column_count(df, &mut cols));
        assert_eq!(cols, f.local.column_names().len());
        for (i, want) in f.local.column_names().iter().enumerate() {
            let mut needed = 0usize;
            ok(fm_dataframe_column_name(
                df,
                i,
                std::ptr::null_mut(),
                0,
                &mut needed,
            ));
            assert_eq!(needed, want.len() + 1);
            let mut buf = vec![0 as std::ffi::c_char; needed];
            ok(fm_dataframe_column_name(
                df,
                i,
                buf.as_mut_ptr(),
                needed,
                std::ptr::null_mut(),
            ));
            let got = std::ffi::CStr::from_ptr(buf.as_ptr()).to_str().unwrap();
            assert_eq!(got, want);
        }
        // Truncation keeps the NUL.
        let mut small = [1 as std::ffi::c_char; 4];
        ok(fm_dataframe_column_name(
            df,
            0,
            small.as_mut_ptr(),
            4,
            std::ptr::null_mut(),
        ));
        assert_eq!(
            std::ffi::CStr::from_ptr(small.as_ptr()).to_str().unwrap(),
            "Ven"
        );
        fails(
            fm_dataframe_column_name(df, 99, small.as_mut_ptr(), 4, std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "column index 99 is out of range",
        );

        // Step 1, with the ask-then-fill protocol and a short buffer.
        let want = taxi::vendor_summary(&f.local).unwrap();
        let (mut count, mut len) = (0u64, 0usize);
        ok(fm_taxi_vendor_summary(
            df,
            &mut count,
            std::ptr::null_mut(),
            0,
            &mut len,
        ));
        assert_eq!((count, len), (want.count as u64, want.unique.len()));
        let mut unique = vec![0i64; len];
        if len > 1 {
            fails(
                fm_taxi_vendor_summary(df, &mut count, unique.as_mut_ptr(), len - 1, &mut len),
                FM_INVALID_ARGUMENT,
                &format!("pass cap >= {}", want.unique.len()),
            );
            assert_eq!(len, want.unique.len(), "*len tells the size needed");
        }
        ok(fm_taxi_vendor_summary(
            df,
            &mut count,
            unique.as_mut_ptr(),
            unique.len(),
            &mut len,
        ));
        assert_eq!(unique, want.unique);
        fails(
            fm_taxi_vendor_summary(df, &mut count, std::ptr::null_mut(), 3, &mut len),
            FM_INVALID_ARGUMENT,
            "`out` is NULL but `cap` is 3",
        );

        // Steps 2 and 3.
        for vendor in [1, 2] {
            let want = taxi::passenger_histogram(&f.local, vendor).unwrap();
            let mut pairs = vec![fm_count_pair_t::default(); 32];
            ok(fm_taxi_passenger_histogram(
                df,
                vendor,
                pairs.as_mut_ptr(),
                32,
                &mut len,
            ));
            let got: Vec<(u8, u64)> = pairs[..len]
                .iter()
                .map(|p| (p.key as u8, p.count))
                .collect();
            assert_eq!(got, want.counts, "vendor {vendor}");
        }

        // Steps 8 and 9 need the columns of 4 and 7.
        let mut medians = vec![fm_key_median_t::default(); 16];
        fails(
            fm_taxi_median_duration_by(
                df,
                c"pickup_day".as_ptr(),
                medians.as_mut_ptr(),
                16,
                &mut len,
            ),
            FM_NOT_FOUND,
            "\"duration\" is missing",
        );

        // Step 4.
        let want = taxi::trip_duration(&mut f.local).unwrap();
        let mut d = fm_duration_stats_t::default();
        ok(fm_taxi_trip_duration(df, &mut d));
        assert_eq!(d.has_values, 1);
        assert_eq!(
            (Some(d.max), Some(d.min), Some(d.mean)),
            (want.max, want.min, want.mean)
        );

        // Step 5.
        let want = taxi::store_and_forward(&f.local).unwrap();
        let mut sf = fm_store_and_forward_t::default();
        let mut y = vec![0i64; 8];
        ok(fm_taxi_store_and_forward(
            df,
            &mut sf,
            y.as_mut_ptr(),
            8,
            &mut len,
        ));
        assert_eq!(
            (sf.rows, sf.n_rows, sf.n_share),
            (want.rows as u64, want.n_rows as u64, want.n_share)
        );
        assert_eq!(&y[..len], &want.y_vendors[..]);

        // Step 6.
        let want = taxi::long_trips(&mut f.local).unwrap();
        let mut over = 0u64;
        ok(fm_taxi_long_trips(df, &mut over));
        assert_eq!(over, want.over_100km as u64);

        // Step 7, one histogram per call (each call recomputes identically).
        let want = taxi::pickup_time_parts(&mut f.local).unwrap();
        for (which, hist) in [(0, &want.hours), (1, &want.days), (2, &want.months)] {
            let mut pairs = vec![fm_count_pair_t::default(); 32];
            ok(fm_taxi_pickup_time_parts(
                df,
                which,
                pairs.as_mut_ptr(),
                32,
                &mut len,
            ));
            let got: Vec<(u8, u64)> = pairs[..len]
                .iter()
                .map(|p| (p.key as u8, p.count))
                .collect();
            assert_eq!(&got, hist, "which = {which}");
        }
        fails(
            fm_taxi_pickup_time_parts(df, 3 as c_int, std::ptr::null_mut(), 0, &mut len),
            FM_INVALID_ARGUMENT,
            "`which` is 3",
        );

        // Step 7's preview: ask for the size, a short buffer, then the rows.
        ok(fm_taxi_pickup_preview(
            df,
            std::ptr::null_mut(),
            0,
            &mut len,
        ));
        assert_eq!(len, want.first_rows.len());
        assert_eq!(len, 10, "the preview is the first 10 of {ROWS} rows");
        let mut rows = vec![fm_pickup_row_t::default(); len + 2];
        fails(
            fm_taxi_pickup_preview(df, rows.as_mut_ptr(), len - 1, &mut len),
            FM_INVALID_ARGUMENT,
            "pass cap >= 10",
        );
        assert_eq!(len, 10, "*len tells the size needed");
        assert_eq!(rows[0], fm_pickup_row_t::default(), "nothing written");
        ok(fm_taxi_pickup_preview(
            df,
            rows.as_mut_ptr(),
            rows.len(),
            &mut len,
        ));
        let got: Vec<taxi::PickupPartsRow> = rows[..len]
            .iter()
            .map(|r| taxi::PickupPartsRow {
                pickup: r.pickup,
                hour: r.hour,
                day: r.day,
                month: r.month,
            })
            .collect();
        assert_eq!(got, want.first_rows);
        assert_eq!(rows[len], fm_pickup_row_t::default(), "nothing past *len");
        fails(
            fm_taxi_pickup_preview(df, std::ptr::null_mut(), 4, &mut len),
            FM_INVALID_ARGUMENT,
            "`out` is NULL but `cap` is 4",
        );
        fails(
            fm_taxi_pickup_preview(std::ptr::null_mut(), rows.as_mut_ptr(), 12, &mut len),
            FM_INVALID_ARGUMENT,
            "`df`",
        );

        // Steps 8 and 9.
        for (key, name) in [
            (c"pickup_day", taxi::PICKUP_DAY),
            (c"pickup_month", taxi::PICKUP_MONTH),
        ] {
            let want = taxi::median_duration_by(&f.local, name).unwrap();
            ok(fm_taxi_median_duration_by(
                df,
                key.as_ptr(),
                medians.as_mut_ptr(),
                16,
                &mut len,
            ));
            let got: Vec<(u8, f64)> = medians[..len]
                .iter()
                .map(|m| (m.key as u8, m.median))
                .collect();
            assert_eq!(got, want.medians, "{name}");
        }
        fails(
            fm_taxi_median_duration_by(
                df,
                c"pickup_year".as_ptr(),
                medians.as_mut_ptr(),
                16,
                &mut len,
            ),
            FM_INVALID_ARGUMENT,
            "\"pickup_year\"",
        );
    }
    let m = f.rt.metrics();
    assert!(
        m.bytes_written_back > 0,
        "the frame never left local memory: {m:?}"
    );
}

#[test]
fn dataframe_run_all_prints_what_the_local_run_prints() {
    let mut f = frames("run_all.csv");
    let mut far = Vec::new();
    run_all_to(f.df, &mut far).unwrap();
    let mut local = Vec::new();
    taxi::run_all(&mut f.local, &mut local).unwrap();
    assert_eq!(without_times(&far), without_times(&local));
    assert!(without_times(&far).contains("== 9 median duration by month"));
    // The exported function runs the same code to stdout (checked byte for byte by the C
    // program test); here it must succeed on a frame that has run before.
    // SAFETY: a live frame handle.
    ok(unsafe { fm_taxi_run_all(f.df) });
}

#[test]
fn dataframe_load_and_generate_report_bad_paths() {
    let rt = Rt::new(256 << 10);
    let mut df = std::ptr::null_mut();
    // SAFETY: valid pointers (or NULL where tested).
    unsafe {
        fails(
            fm_dataframe_load_taxi_csv(rt.0, c"/nonexistent/taxi.csv".as_ptr(), &mut df),
            FM_IO,
            "loading /nonexistent/taxi.csv: No such file",
        );
        fails(
            fm_dataframe_load_taxi_csv(rt.0, std::ptr::null(), &mut df),
            FM_INVALID_ARGUMENT,
            "`path` is NULL",
        );
        assert!(fm_taxi_generate(c"/nonexistent/dir/x.csv".as_ptr(), 10, 1) != FM_OK);
        assert!(
            last_error().contains("/nonexistent/dir/x.csv"),
            "{}",
            last_error()
        );
        // A malformed CSV is a parse error.
        let bad = temp_path("bad.csv");
        std::fs::write(&bad, "not,a,taxi,header\n1,2,3,4\n").unwrap();
        let c = CString::new(bad.to_str().unwrap()).unwrap();
        let st = fm_dataframe_load_taxi_csv(rt.0, c.as_ptr(), &mut df);
        let _ = std::fs::remove_file(&bad);
        assert!(
            st == FM_PARSE || st == FM_INVALID_ARGUMENT,
            "status {st}: {}",
            last_error()
        );
    }
}
