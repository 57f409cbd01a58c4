//! Parallel CSV loading into a [`DataFrame`], streamed into the storage's columns.
//!
//! The file is cut into byte ranges of up to 2 MiB (at least four per parser thread). A line
//! belongs to the range holding its first byte: a parser whose range starts at `s` seeks to
//! `s - 1` and drops everything up to and including the first `\n` (just that byte when a line
//! starts exactly at `s`), then parses lines while their first byte is before its end, finishing
//! the last one past the end. Parser threads claim ranges in file order and parse each into
//! local typed builders (categoricals get a per-range dictionary), count every line they
//! consumed, and add its bytes to a shared counter that drives the progress callback.
//!
//! The loading thread meanwhile takes the parsed ranges in file order and appends each to the
//! storage's columns (categorical codes remapped to one dictionary per column), dropping it as
//! it goes. A parser runs at most two ranges per thread ahead of the last range appended
//! ([`RangeQueue`]), so the local memory a load holds is a few ranges, not a copy of the file's
//! data: a far-memory frame stays near its local budget while it loads.
//!
//! A malformed row (wrong field count, unparsable field) is an `ErrorKind::Parse` error naming
//! the line number (1-based, header = line 1), the field and the value, or, with
//! [`LoadOptions::skip_bad_rows`], it is counted and skipped. Line numbers are exact because
//! every thread counts all lines it consumed and earlier ranges always run to their end.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use farmem_error::{Error, ErrorKind, Result};

use crate::column::ColumnStore;
use crate::element::Element;
use crate::field::{parse_field, shown, type_text, Staged};
use crate::frame::{AnyColumn, Categorical, ColumnType, DataFrame};
use crate::storage::Storage;

/// The columns a CSV file must have, in order, with their types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    fields: Vec<(String, ColumnType)>,
}

impl Schema {
    /// A schema from `(name, type)` pairs in file order.
    pub fn new(fields: &[(&str, ColumnType)]) -> Schema {
        Schema {
            fields: fields.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        }
    }

    /// The fields, in file order.
    pub fn fields(&self) -> &[(String, ColumnType)] {
        &self.fields
    }

    /// The NYC TLC yellow-trip schema of 2015 – mid-2016 (with coordinates), as AIFM used.
    pub fn taxi() -> Schema {
        use ColumnType::*;
        Schema::new(&[
            ("VendorID", I64),
            ("tpep_pickup_datetime", Timestamp),
            ("tpep_dropoff_datetime", Timestamp),
            ("passenger_count", U8),
            ("trip_distance", F64),
            ("pickup_longitude", F64),
            ("pickup_latitude", F64),
            ("RatecodeID", U8),
            ("store_and_fwd_flag", Categorical),
            ("dropoff_longitude", F64),
            ("dropoff_latitude", F64),
            ("payment_type", U8),
            ("fare_amount", F64),
            ("extra", F64),
            ("mta_tax", F64),
            ("tip_amount", F64),
            ("tolls_amount", F64),
            ("improvement_surcharge", F64),
            ("total_amount", F64),
        ])
    }
}

/// How to load a file.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// Parser threads; 0 means one per available core.
    pub threads: usize,
    /// Count and skip malformed rows instead of failing on the first one.
    pub skip_bad_rows: bool,
    /// Called from the parser threads with `(bytes parsed so far, file size)`.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

/// What a load found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Rows loaded.
    pub rows: usize,
    /// Malformed rows skipped (only with `skip_bad_rows`).
    pub bad_rows: usize,
    /// The error of the first skipped row, for the user to look at.
    pub first_bad_row: Option<String>,
    /// File size in bytes.
    pub bytes: u64,
}

/// Loads the CSV file at `path`, whose header must name `schema`'s fields in order
/// (case-insensitively), into a frame on `storage`.
pub fn load_csv<S: Storage>(
    path: &Path,
    schema: &Schema,
    storage: &S,
    opts: LoadOptions<'_>,
) -> Result<(DataFrame<S>, LoadReport)> {
    let what = || format!("loading {}", path.display());
    let file = File::open(path).map_err(|e| Error::io(what(), e))?;
    let size = file.metadata().map_err(|e| Error::io(what(), e))?.len();
    let data_start = check_header(file, schema).map_err(|e| e.with_context(what()))?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let body = size - data_start;
    let threads = threads.min((body / MIN_RANGE_BYTES).max(1) as usize);
    let range_bytes =
        (body / (threads as u64 * RANGES_PER_THREAD)).clamp(MIN_RANGE_BYTES, MAX_RANGE_BYTES);
    let ranges = body.div_ceil(range_bytes).max(1);
    // The header counts as done, so the last progress call reports the file size.
    let done = AtomicU64::new(data_start);
    let ctx = |k: u64| RangeCtx {
        path,
        schema,
        start: data_start + (k * range_bytes).min(body),
        data_start,
        end: data_start + ((k + 1) * range_bytes).min(body),
        size,
        done: &done,
        opts,
    };
    let queue = RangeQueue::new(ranges, threads as u64 * 2);
    let mut sink = FrameSink::new(storage, schema)?;
    let mut report = LoadReport {
        bytes: size,
        ..LoadReport::default()
    };
    let appended: Result<()> = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| queue.work(|k| parse_range(&ctx(k))));
        }
        let mut lines_before = 1u64; // the header
        let mut append_all = || {
            for k in 0..ranges {
                let part = queue.take(k)?;
                if let Some((local_line, err)) = &part.error {
                    return Err(Error::new(
                        ErrorKind::Parse,
                        format!(
                            "line {}: {err}; fix the row or load with skip_bad_rows",
                            lines_before + local_line + 1
                        ),
                    ));
                }
                report.rows += part.rows;
                report.bad_rows += part.bad_rows;
                if let (None, Some((line, msg))) = (&report.first_bad_row, &part.first_bad) {
                    report.first_bad_row = Some(format!("line {}: {msg}", lines_before + line + 1));
                }
                lines_before += part.lines;
                sink.append(part)?;
                queue.appended(k);
            }
            Ok(())
        };
        let r = append_all();
        // Wakes the parsers (on an error, they stop without parsing the rest).
        queue.stop();
        r
    });
    appended.map_err(|e| e.with_context(what()))?;
    let frame = sink.finish().map_err(|e| e.with_context(what()))?;
    Ok((frame, report))
}

/// Smallest byte range a parser takes (smaller ones are not worth the seek and the buffer).
const MIN_RANGE_BYTES: u64 = 64 * 1024;
/// Largest byte range: bounds the parsed rows waiting in local memory (see [`RangeQueue`]).
const MAX_RANGE_BYTES: u64 = 2 << 20;
/// Ranges per parser thread, at least: small files still exercise several ranges per thread.
const RANGES_PER_THREAD: u64 = 4;

/// The byte ranges of a load: parser threads claim them in file order, and the loading thread
/// takes the parsed parts in file order and appends them to the columns. A parser may run at
/// most `window` ranges ahead of the last part appended, so the parsed rows waiting in local
/// memory stay within `window` ranges (a few MiB) however large the file: the frame streams
/// into its storage instead of being held whole in local builders first.
struct RangeQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
    ranges: u64,
    window: u64,
}

struct QueueState {
    /// The next range to claim.
    next: u64,
    /// Ranges whose parts have been appended (all of `0..appended`).
    appended: u64,
    /// Parsed parts not yet appended, by range.
    ready: BTreeMap<u64, Result<Part>>,
    stopped: bool,
}

impl RangeQueue {
    fn new(ranges: u64, window: u64) -> RangeQueue {
        RangeQueue {
            state: Mutex::new(QueueState {
                next: 0,
                appended: 0,
                ready: BTreeMap::new(),
                stopped: false,
            }),
            changed: Condvar::new(),
            ranges,
            window: window.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, QueueState>) -> MutexGuard<'a, QueueState> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// A parser thread's loop: claims ranges in order and parses them until none is left or
    /// the load stops. A panic while parsing becomes that range's error, so the loading thread
    /// never waits for a part that will not come.
    fn work(&self, parse: impl Fn(u64) -> Result<Part>) {
        loop {
            let k = {
                let mut g = self.lock();
                loop {
                    if g.stopped || g.next >= self.ranges {
                        return;
                    }
                    if g.next < g.appended + self.window {
                        g.next += 1;
                        break g.next - 1;
                    }
                    g = self.wait(g);
                }
            };
            let part = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(k)))
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Panicked,
                        "a CSV parser thread panicked",
                    ))
                });
            self.lock().ready.insert(k, part);
            self.changed.notify_all();
        }
    }

    /// Waits for range `k`'s part (every range below `k` was taken already).
    fn take(&self, k: u64) -> Result<Part> {
        let mut g = self.lock();
        loop {
            if let Some(p) = g.ready.remove(&k) {
                return p;
            }
            g = self.wait(g);
        }
    }

    /// Range `k`'s part is in the columns: parsers may run one range further.
    fn appended(&self, k: u64) {
        self.lock().appended = k + 1;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// Reads the header line, compares it with `schema`, returns the offset of the first data byte.
fn check_header(file: File, schema: &Schema) -> Result<u64> {
    let mut reader = BufReader::new(file.take(1 << 20));
    let mut line = Vec::new();
    let n = reader
        .read_until(b'\n', &mut line)
        .map_err(|e| Error::io("reading the header", e))?;
    if n == 0 {
        return Err(Error::new(
            ErrorKind::Parse,
            "the file is empty; expected a header line",
        ));
    }
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_start_matches('\u{feff}').trim_end();
    let names: Vec<&str> = text.split(',').map(str::trim).collect();
    let expected: Vec<&str> = schema.fields.iter().map(|(n, _)| n.as_str()).collect();
    if names.len() != expected.len() {
        return Err(Error::new(
            ErrorKind::Parse,
            format!(
                "line 1: the header has {} columns, the schema {} ({expected:?}); \
                 is this a file of another layout?",
                names.len(),
                expected.len()
            ),
        ));
    }
    for (i, (got, want)) in names.iter().zip(&expected).enumerate() {
        if !got.eq_ignore_ascii_case(want) {
            return Err(Error::new(
                ErrorKind::Parse,
                format!(
                    "line 1: header column {} is {got:?}, expected {want:?}",
                    i + 1
                ),
            ));
        }
    }
    Ok(n as u64)
}

struct RangeCtx<'a> {
    path: &'a Path,
    schema: &'a Schema,
    start: u64,
    data_start: u64,
    end: u64,
    size: u64,
    done: &'a AtomicU64,
    opts: LoadOptions<'a>,
}

/// One thread's parsed rows.
struct Part {
    builders: Vec<Builder>,
    rows: usize,
    lines: u64,
    bad_rows: usize,
    first_bad: Option<(u64, String)>,
    /// The first malformed row when not skipping: (line index in this range, message).
    error: Option<(u64, String)>,
}

enum Builder {
    I64(Vec<i64>),
    F64(Vec<f64>),
    U8(Vec<u8>),
    Timestamp(Vec<i64>),
    Categorical(Dictionary, Vec<u16>),
}

#[derive(Default)]
struct Dictionary {
    entries: Vec<String>,
    codes: HashMap<Vec<u8>, u16>,
}

impl Dictionary {
    fn intern(&mut self, value: &[u8], max: usize) -> std::result::Result<u16, String> {
        if let Some(&c) = self.codes.get(value) {
            return Ok(c);
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| format!("{:?} is not valid UTF-8", String::from_utf8_lossy(value)))?;
        if self.entries.len() >= max {
            return Err(format!(
                "{text:?} would be category number {} of at most {max}; \
                 declare the column Categorical16",
                max + 1
            ));
        }
        let c = self.entries.len() as u16;
        self.entries.push(text.to_string());
        self.codes.insert(value.to_vec(), c);
        Ok(c)
    }
}

fn category_limit(ty: ColumnType) -> usize {
    if ty == ColumnType::Categorical16 {
        1 << 16
    } else {
        1 << 8
    }
}

fn parse_range(ctx: &RangeCtx<'_>) -> Result<Part> {
    let schema = &ctx.schema.fields;
    let mut part = Part {
        builders: schema
            .iter()
            .map(|(_, t)| match t {
                ColumnType::I64 => Builder::I64(Vec::new()),
                ColumnType::F64 => Builder::F64(Vec::new()),
                ColumnType::U8 => Builder::U8(Vec::new()),
                ColumnType::Timestamp => Builder::Timestamp(Vec::new()),
                ColumnType::Categorical | ColumnType::Categorical16 => {
                    Builder::Categorical(Dictionary::default(), Vec::new())
                }
            })
            .collect(),
        rows: 0,
        lines: 0,
        bad_rows: 0,
        first_bad: None,
        error: None,
    };
    if ctx.start >= ctx.end {
        return Ok(part);
    }
    let io = |e| Error::io(format!("reading {}", ctx.path.display()), e);
    let mut file = File::open(ctx.path).map_err(io)?;
    let mut pos = ctx.start;
    let mut line: Vec<u8> = Vec::with_capacity(512);
    let mut reader;
    if ctx.start > ctx.data_start {
        file.seek(SeekFrom::Start(ctx.start - 1)).map_err(io)?;
        reader = BufReader::with_capacity(1 << 20, file);
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        pos = ctx.start - 1 + n as u64;
    } else {
        file.seek(SeekFrom::Start(ctx.start)).map_err(io)?;
        reader = BufReader::with_capacity(1 << 20, file);
    }
    let mut staged: Vec<Staged> = Vec::with_capacity(schema.len());
    let mut reported = ctx.start;
    while pos < ctx.end {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        let local_line = part.lines;
        part.lines += 1;
        let capped = pos.min(ctx.end);
        if capped - reported >= 1 << 20 {
            report_progress(ctx, capped - reported);
            reported = capped;
        }
        let mut l: &[u8] = &line;
        while let [rest @ .., b'\n' | b'\r'] = l {
            l = rest;
        }
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(msg) = parse_row(l, schema, &mut staged, &mut part.builders) {
            if ctx.opts.skip_bad_rows {
                part.bad_rows += 1;
                if part.first_bad.is_none() {
                    part.first_bad = Some((local_line, msg));
                }
                continue;
            }
            part.error = Some((local_line, msg));
            break;
        }
        part.rows += 1;
    }
    report_progress(ctx, pos.min(ctx.end).saturating_sub(reported));
    Ok(part)
}

fn report_progress(ctx: &RangeCtx<'_>, bytes: u64) {
    let total = ctx.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if let Some(f) = ctx.opts.progress {
        f(total, ctx.size);
    }
}

/// Parses one line into `staged`, then pushes it into the builders; on error nothing is pushed.
fn parse_row(
    l: &[u8],
    schema: &[(String, ColumnType)],
    staged: &mut Vec<Staged>,
    builders: &mut [Builder],
) -> std::result::Result<(), String> {
    staged.clear();
    // A row with the wrong number of fields is reported as such, not as its first odd field;
    // the count is only taken once something went wrong, so good rows are split once.
    let count_error = || {
        let found = l.iter().filter(|&&c| c == b',').count() + 1;
        (found != schema.len()).then(|| format!("expected {} fields, found {found}", schema.len()))
    };
    let mut off = 0;
    for (i, field) in l.split(|&c| c == b',').enumerate() {
        let Some((name, ty)) = schema.get(i) else {
            return Err(count_error().unwrap_or_default());
        };
        match parse_field(*ty, field, off) {
            Some(v) => staged.push(v),
            None => {
                return Err(count_error().unwrap_or_else(|| {
                    format!(
                        "field {name} (column {}): cannot parse {:?} as {}",
                        i + 1,
                        shown(field),
                        type_text(*ty)
                    )
                }))
            }
        }
        off += field.len() + 1;
    }
    if let Some(e) = count_error().filter(|_| staged.len() != schema.len()) {
        return Err(e);
    }
    // Categories first: interning is the only step that can still fail.
    let mut codes = [0u16; 8];
    let mut n_cat = 0;
    for (i, s) in staged.iter().enumerate() {
        if let (Staged::Cat(a, b), Builder::Categorical(dict, _)) = (s, &mut builders[i]) {
            let code = dict
                .intern(&l[*a..*b], category_limit(schema[i].1))
                .map_err(|m| format!("field {} (column {}): {m}", schema[i].0, i + 1))?;
            if n_cat == codes.len() {
                return Err("more than 8 categorical columns are not supported".into());
            }
            codes[n_cat] = code;
            n_cat += 1;
        }
    }
    let mut n_cat = 0;
    for (s, b) in staged.iter().zip(builders.iter_mut()) {
        match (s, b) {
            (Staged::I(v), Builder::I64(c) | Builder::Timestamp(c)) => c.push(*v),
            (Staged::F(v), Builder::F64(c)) => c.push(*v),
            (Staged::U(v), Builder::U8(c)) => c.push(*v),
            (Staged::Cat(..), Builder::Categorical(_, c)) => {
                c.push(codes[n_cat]);
                n_cat += 1;
            }
            _ => return Err("internal: staged value does not match its builder".into()),
        }
    }
    Ok(())
}

/// The columns a load appends to, in schema order.
struct FrameSink<S: Storage> {
    storage: S,
    columns: Vec<(String, SinkColumn<S>)>,
}

enum SinkColumn<S: Storage> {
    I64(S::Column<i64>),
    Timestamp(S::Column<i64>),
    F64(S::Column<f64>),
    U8(S::Column<u8>),
    /// The global dictionary, interned with the column type's category limit.
    Categorical(Dictionary, S::Column<u8>),
    Categorical16(Dictionary, S::Column<u16>),
}

impl<S: Storage> SinkColumn<S> {
    /// [`ColumnStore::flush`] of the column (the codes of a categorical).
    fn flush(&self) -> Result<()> {
        match self {
            SinkColumn::I64(c) | SinkColumn::Timestamp(c) => c.flush(),
            SinkColumn::F64(c) => c.flush(),
            SinkColumn::U8(c) | SinkColumn::Categorical(_, c) => c.flush(),
            SinkColumn::Categorical16(_, c) => c.flush(),
        }
    }
}

/// Appends `v` to `c`, creating its chunks first in one request (see `ColumnStore::reserve`).
fn append_to<T: Element, C: ColumnStore<T>>(c: &mut C, v: &[T]) -> Result<()> {
    c.reserve(v.len())?;
    c.extend_from_slice(v)
}

impl<S: Storage> FrameSink<S> {
    fn new(storage: &S, schema: &Schema) -> Result<FrameSink<S>> {
        let columns = schema
            .fields
            .iter()
            .map(|(name, ty)| {
                let c = match ty {
                    ColumnType::I64 => SinkColumn::I64(storage.new_column()?),
                    ColumnType::Timestamp => SinkColumn::Timestamp(storage.new_column()?),
                    ColumnType::F64 => SinkColumn::F64(storage.new_column()?),
                    ColumnType::U8 => SinkColumn::U8(storage.new_column()?),
                    ColumnType::Categorical => {
                        SinkColumn::Categorical(Dictionary::default(), storage.new_column()?)
                    }
                    ColumnType::Categorical16 => {
                        SinkColumn::Categorical16(Dictionary::default(), storage.new_column()?)
                    }
                };
                Ok((name.clone(), c))
            })
            .collect::<Result<_>>()?;
        Ok(FrameSink {
            storage: storage.clone(),
            columns,
        })
    }

    /// Appends one range's rows to every column (categorical codes remapped to the column's
    /// dictionary), freeing each builder as it goes.
    fn append(&mut self, part: Part) -> Result<()> {
        for ((name, column), builder) in self.columns.iter_mut().zip(part.builders) {
            match (column, builder) {
                (
                    SinkColumn::I64(c) | SinkColumn::Timestamp(c),
                    Builder::I64(v) | Builder::Timestamp(v),
                ) => append_to(c, &v)?,
                (SinkColumn::F64(c), Builder::F64(v)) => append_to(c, &v)?,
                (SinkColumn::U8(c), Builder::U8(v)) => append_to(c, &v)?,
                (SinkColumn::Categorical(global, c), Builder::Categorical(d, v)) => {
                    let map = remap(name, global, &d, 1 << 8)?;
                    // Codes are < 256: the global dictionary was interned with that limit.
                    let v: Vec<u8> = v.iter().map(|&x| map[usize::from(x)] as u8).collect();
                    append_to(c, &v)?
                }
                (SinkColumn::Categorical16(global, c), Builder::Categorical(d, v)) => {
                    let map = remap(name, global, &d, 1 << 16)?;
                    let v: Vec<u16> = v.iter().map(|&x| map[usize::from(x)]).collect();
                    append_to(c, &v)?
                }
                _ => {
                    return Err(Error::internal(format!(
                        "column {name}: parsed values do not match the column type"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The frame, every column flushed ([`ColumnStore::flush`]): a far-memory frame leaves
    /// loading with its cached chunks clean, so the analysis that evicts them to make room
    /// for what it reads next drops them instead of writing them back first.
    fn finish(self) -> Result<DataFrame<S>> {
        let mut frame = DataFrame::new(self.storage);
        for (name, c) in self.columns {
            c.flush()
                .map_err(|e| e.with_context(format!("flushing column {name}")))?;
            let column = match c {
                SinkColumn::I64(c) => AnyColumn::I64(c),
                SinkColumn::Timestamp(c) => AnyColumn::Timestamp(c),
                SinkColumn::F64(c) => AnyColumn::F64(c),
                SinkColumn::U8(c) => AnyColumn::U8(c),
                SinkColumn::Categorical(d, c) => {
                    AnyColumn::Categorical(Categorical::new(d.entries, c))
                }
                SinkColumn::Categorical16(d, c) => {
                    AnyColumn::Categorical16(Categorical::new(d.entries, c))
                }
            };
            frame.add_column(&name, column)?;
        }
        Ok(frame)
    }
}

/// The code in `global` of each entry of a range's dictionary `local`.
fn remap(
    name: &str,
    global: &mut Dictionary,
    local: &Dictionary,
    limit: usize,
) -> Result<Vec<u16>> {
    local
        .entries
        .iter()
        .map(|e| global.intern(e.as_bytes(), limit))
        .collect::<std::result::Result<Vec<u16>, String>>()
        .map_err(|m| Error::new(ErrorKind::Parse, format!("column {name}: {m}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn empty_part(lines: u64) -> Part {
        Part {
            builders: Vec::new(),
            rows: 0,
            lines,
            bad_rows: 0,
            first_bad: None,
            error: None,
        }
    }

    // The streaming bound: no parser starts a range more than `window` ranges past the last
    // one appended, however slow the appends are, and parts come out in file order.
    #[test]
    fn parsers_never_run_more_than_the_window_ahead_of_the_appends() {
        let (ranges, window) = (40u64, 3u64);
        let queue = RangeQueue::new(ranges, window);
        let appended = AtomicU64::new(0);
        let too_far = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    queue.work(|k| {
                        if k >= appended.load(Ordering::Acquire) + window {
                            too_far.store(true, Ordering::Release);
                        }
                        Ok(empty_part(k))
                    })
                });
            }
            for k in 0..ranges {
                let part = queue.take(k).expect("part");
                assert_eq!(part.lines, k, "parts come in file order");
                std::thread::sleep(std::time::Duration::from_micros(200));
                appended.store(k + 1, Ordering::Release);
                queue.appended(k);
            }
            queue.stop();
        });
        assert!(!too_far.load(Ordering::Acquire));
    }

    #[test]
    fn a_panicking_parser_is_an_error_not_a_hang() {
        let queue = RangeQueue::new(4, 2);
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                queue.work(|k| {
                    if k == 1 {
                        panic!("parser bug");
                    }
                    Ok(empty_part(k))
                })
            });
            let r = (|| -> Result<()> {
                for k in 0..4 {
                    queue.take(k)?;
                    queue.appended(k);
                }
                Ok(())
            })();
            queue.stop();
            r
        });
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Panicked);
    }
}
