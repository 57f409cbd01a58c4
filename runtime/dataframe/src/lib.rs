//! farmem's columnar DataFrame and AIFM's NYC-taxi analysis (AIFM §6.2).
//!
//! - [`Element`]: the plain-data types a column holds (`u8`, `u16`, `i64`, `f64`).
//! - [`ColumnStore`]: one column's storage, with the analysis operations (count, sum, min, max,
//!   mean, median, unique, histogram, filter, gather, and the histogram and unique of a row
//!   set) as overridable provided methods. **This is
//!   the plug-in point for far-memory columns:** a `RemVec`-backed column implements the six
//!   primitives and overrides the operations its memory server can run next to the data (AIFM's
//!   offload), returning identical results.
//! - [`Storage`]: a family of columns (one type per element type) plus the multi-column
//!   operations (differences, timestamp parts, haversine, grouped medians; the ones that make a
//!   column also in a `_seen` form that hands the new values over as they are made);
//!   [`LocalStorage`]
//!   keeps everything in `Vec`s, the all-local baseline; [`FarStorage`] keeps every column in
//!   far memory (`farmem_objects::RemVec`), the AIFM setting.
//! - [`DataFrame`]: named typed columns; [`load_csv`] fills one from a CSV file in parallel.
//! - [`generate`]: a seeded TLC-like taxi CSV generator (also the `taxi-gen` binary).
//! - [`taxi`]: the nine analysis steps and [`taxi::run_all`].

mod column;
mod element;
mod far;
mod far_offload;
mod field;
mod frame;
pub mod generator;
mod loader;
mod storage;
pub mod taxi;
pub mod time;

pub use column::{median_in_place, ColumnStore};
pub use element::{CmpOp, Element, RowSet};
pub use far::{FarColumn, FarElement, FarStorage, APPEND_WAIT, MIN_LOCAL_BYTES, SCAN_BATCH_ROWS};
pub use far_offload::{
    OffloadPolicy, OffloadStats, AUTO_GATHER_RESIDENT_PERCENT, AUTO_MIN_CHUNKS,
    AUTO_RESIDENT_PERCENT, MAX_RESULT_BYTES,
};
pub use farmem_error::{Error, ErrorKind, Result};
pub use frame::{AnyColumn, Categorical, ColumnType, DataFrame};
pub use generator::generate;
pub use loader::{load_csv, LoadOptions, LoadReport, Schema};
pub use storage::{
    haversine_km, BinaryOp, LocalColumn, LocalStorage, Seen, Storage, TimePart, TripCoordinates,
    EARTH_RADIUS_KM,
};
