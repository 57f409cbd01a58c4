//! Unit tests of `far.rs` that need its private items (the in-scope view, the row-wise
//! overrides).

use super::*;

fn storage() -> Result<FarStorage> {
    Ok(FarStorage::new(FarMemory::in_process(
        FarStorage::config_for(MIN_LOCAL_BYTES)?,
        1 << 30,
    )?))
}

// Chunks take far capacity at write-back (config_for): a full backend still ends the load
// with an error of the right kind, not a hang.
#[test]
fn a_full_memory_server_is_out_of_far_memory() -> Result<()> {
    let far = FarStorage::new(FarMemory::in_process(
        FarStorage::config_for(MIN_LOCAL_BYTES)?,
        64 << 10,
    )?);
    let e = far
        .column_from_slice(&vec![1i64; 200_000])
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), farmem_error::ErrorKind::OutOfFarMemory, "{e}");
    Ok(())
}

// The in-scope view runs the provided read-only aggregates; it must refuse anything that
// would write far memory while its scope is open (module note).
#[test]
fn the_in_scope_view_refuses_writes() -> Result<()> {
    let col = storage()?.column_from_slice(&[3i64, 1, 2])?;
    let mut view = InScopeView(&col);
    for e in [
        view.push(4).unwrap_err(),
        view.extend_from_slice(&[4]).unwrap_err(),
        view.empty_like().map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(e.kind(), farmem_error::ErrorKind::Internal, "{e}");
    }
    assert_eq!(col.len(), 3);
    Ok(())
}

// A column several times the local budget, so the in-scope scans renew their scope and
// fetch remote chunks while the closure runs on the chunk's own slice.
#[test]
fn in_scope_aggregates_and_timestamp_parts_match_the_local_baseline() -> Result<()> {
    let far = storage()?;
    let values: Vec<i64> = (0..100_000i64)
        .map(|i| (i * 7919) % 10_007 - 5_000)
        .collect();
    let col = far.column_from_slice(&values)?;
    let local = crate::LocalColumn::from_vec(values.clone());
    assert_eq!(col.sum()?, local.sum()?);
    assert_eq!(col.min()?, local.min()?);
    assert_eq!(col.max()?, local.max()?);
    assert_eq!(col.mean()?, local.mean()?);
    assert_eq!(col.histogram()?, local.histogram()?);
    assert_eq!(col.unique()?, local.unique()?);
    assert_eq!(col.filter(CmpOp::Gt, 10)?, local.filter(CmpOp::Gt, 10)?);
    assert_eq!(
        col.count_where(CmpOp::Lt, -100)?,
        local.count_where(CmpOp::Lt, -100)?
    );
    let ts: Vec<i64> = (0..100_000i64).map(|i| 1_420_070_400 + i * 613).collect();
    let far_ts = far.column_from_slice(&ts)?;
    let hours = far.timestamp_part(&far_ts, TimePart::Hour)?.to_vec()?;
    let want: Vec<u8> = ts.iter().map(|&t| TimePart::Hour.of(t)).collect();
    assert_eq!(hours, want);
    assert!(far.far_memory().metrics().bytes_fetched > 0);
    Ok(())
}

// The row-wise overrides (chunks of several columns read in one scope, one pass for all
// timestamp parts, values grouped in scope) against the local storage's results.
#[test]
fn row_wise_overrides_match_the_local_storage() -> Result<()> {
    use crate::storage::{BinaryOp, TripCoordinates};
    use crate::LocalStorage;
    let far = storage()?;
    let n = 70_000i64;
    let a: Vec<i64> = (0..n).map(|i| 1_420_070_400 + i * 613).collect();
    let b: Vec<i64> = (0..n)
        .map(|i| 1_420_070_400 + i * 613 + (i * 37) % 3600)
        .collect();
    let coord = |k: i64| -> Vec<f64> {
        (0..n)
            .map(|i| 40.0 + ((i * k) % 1000) as f64 / 997.0)
            .collect()
    };
    let (fa, fb) = (far.column_from_slice(&a)?, far.column_from_slice(&b)?);
    let (la, lb) = (
        LocalStorage.column_from_slice(&a)?,
        LocalStorage.column_from_slice(&b)?,
    );
    let fz = far.zip_i64(&fb, &fa, BinaryOp::Sub)?;
    let lz = LocalStorage.zip_i64(&lb, &la, BinaryOp::Sub)?;
    assert_eq!(fz.to_vec()?, lz.to_vec()?);
    let fc: Vec<_> = [3, 5, 7, 11]
        .iter()
        .map(|&k| far.column_from_slice(&coord(k)))
        .collect::<Result<_>>()?;
    let lc: Vec<_> = [3, 5, 7, 11]
        .iter()
        .map(|&k| LocalStorage.column_from_slice(&coord(k)))
        .collect::<Result<_>>()?;
    let fd = far.haversine_km(TripCoordinates {
        pickup_lat: &fc[0],
        pickup_lon: &fc[1],
        dropoff_lat: &fc[2],
        dropoff_lon: &fc[3],
    })?;
    let ld = LocalStorage.haversine_km(TripCoordinates {
        pickup_lat: &lc[0],
        pickup_lon: &lc[1],
        dropoff_lat: &lc[2],
        dropoff_lon: &lc[3],
    })?;
    assert_eq!(fd.to_vec()?, ld.to_vec()?);
    let parts = [TimePart::Month, TimePart::Hour, TimePart::Weekday];
    let fp = far.timestamp_parts(&fa, &parts)?;
    let lp = LocalStorage.timestamp_parts(&la, &parts)?;
    assert_eq!(fp.len(), 3);
    for (f, l) in fp.iter().zip(&lp) {
        assert_eq!(f.to_vec()?, l.to_vec()?);
    }
    assert_eq!(
        far.group_median(&fp[2], &fz)?,
        LocalStorage.group_median(&lp[2], &lz)?
    );
    Ok(())
}
