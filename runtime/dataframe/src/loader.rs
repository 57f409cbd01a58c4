//! Parallel CSV loading into a [`DataFrame`].
//!
//! The file is cut into one byte range per thread. A line belongs to the range holding its first
//! byte: a thread whose range starts at `s` seeks to `s - 1` and drops everything up to and
//! including the first `\n` (just that byte when a line starts exactly at `s`), then parses
//! lines while their first byte is before its end, finishing the last one past the end. Each
//! thread parses into local typed builders (categoricals get a thread-local dictionary), counts
//! every line it consumed, and adds its bytes to a shared counter that drives the progress
//! callback. After all threads finish, the parts are appended to the storage's columns in file
//! order (categorical codes remapped to one dictionary), dropping each part as it goes, so the
//! peak is one copy of the data plus one column.
//!
//! A malformed row (wrong field count, unparsable field) is an `ErrorKind::Parse` error naming
//! the line number (1-based, header = line 1), the field and the value, or, with
//! [`LoadOptions::skip_bad_rows`], it is counted and skipped. Line numbers are exact because
//! every thread counts all lines it consumed and earlier ranges always run to their end.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use farmem_error::{Error, ErrorKind, Result};

use crate::column::ColumnStore;
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
    // Ranges under 64 KiB are not worth a thread.
    let body = size - data_start;
    let threads = threads.min((body / (64 * 1024)).max(1) as usize);
    // The header counts as done, so the last progress call reports the file size.
    let done = AtomicU64::new(data_start);
    let bounds: Vec<u64> = (0..=threads as u64)
        .map(|k| data_start + body * k / threads as u64)
        .collect();
    let parts: Vec<Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let (start, end) = (bounds[k], bounds[k + 1]);
                let ctx = RangeCtx {
                    path,
                    schema,
                    start,
                    data_start,
                    end,
                    size,
                    done: &done,
                    opts,
                };
                s.spawn(move || parse_range(&ctx))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Panicked,
                        "a CSV parser thread panicked",
                    ))
                })
            })
            .collect()
    });
    let mut ok_parts = Vec::with_capacity(parts.len());
    let mut lines_before = 1u64; // the header
    for part in parts {
        let part = part.map_err(|e| e.with_context(what()))?;
        if let Some((local_line, err)) = &part.error {
            return Err(Error::new(
                ErrorKind::Parse,
                format!(
                    "{}: line {}: {err}; fix the row or load with skip_bad_rows",
                    what(),
                    lines_before + local_line + 1
                ),
            ));
        }
        lines_before += part.lines;
        ok_parts.push(part);
    }
    let mut report = LoadReport {
        bytes: size,
        ..LoadReport::default()
    };
    let mut lines_before = 1u64;
    for p in &ok_parts {
        report.rows += p.rows;
        report.bad_rows += p.bad_rows;
        if let (None, Some((line, msg))) = (&report.first_bad_row, &p.first_bad) {
            report.first_bad_row = Some(format!("line {}: {msg}", lines_before + line + 1));
        }
        lines_before += p.lines;
    }
    let frame = assemble(storage, schema, ok_parts).map_err(|e| e.with_context(what()))?;
    Ok((frame, report))
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

/// Appends the parts' columns to new storage columns in file order.
fn assemble<S: Storage>(
    storage: &S,
    schema: &Schema,
    mut parts: Vec<Part>,
) -> Result<DataFrame<S>> {
    let mut frame = DataFrame::new(storage.clone());
    for (i, (name, ty)) in schema.fields.iter().enumerate() {
        let mut taken: Vec<Builder> = parts
            .iter_mut()
            .map(|p| std::mem::replace(&mut p.builders[i], Builder::U8(Vec::new())))
            .collect();
        let column = match ty {
            ColumnType::I64 | ColumnType::Timestamp => {
                let mut c = storage.new_column::<i64>()?;
                for b in &mut taken {
                    if let Builder::I64(v) | Builder::Timestamp(v) = b {
                        c.extend_from_slice(v)?;
                        *v = Vec::new();
                    }
                }
                if *ty == ColumnType::I64 {
                    AnyColumn::I64(c)
                } else {
                    AnyColumn::Timestamp(c)
                }
            }
            ColumnType::F64 => {
                let mut c = storage.new_column::<f64>()?;
                for b in &mut taken {
                    if let Builder::F64(v) = b {
                        c.extend_from_slice(v)?;
                        *v = Vec::new();
                    }
                }
                AnyColumn::F64(c)
            }
            ColumnType::U8 => {
                let mut c = storage.new_column::<u8>()?;
                for b in &mut taken {
                    if let Builder::U8(v) = b {
                        c.extend_from_slice(v)?;
                        *v = Vec::new();
                    }
                }
                AnyColumn::U8(c)
            }
            ColumnType::Categorical | ColumnType::Categorical16 => {
                let mut global = Dictionary::default();
                let limit = category_limit(*ty);
                let mut remaps = Vec::new();
                for b in &taken {
                    if let Builder::Categorical(d, _) = b {
                        let map = d
                            .entries
                            .iter()
                            .map(|e| global.intern(e.as_bytes(), limit))
                            .collect::<std::result::Result<Vec<u16>, String>>()
                            .map_err(|m| {
                                Error::new(ErrorKind::Parse, format!("column {name}: {m}"))
                            })?;
                        remaps.push(map);
                    }
                }
                let dictionary = global.entries;
                if *ty == ColumnType::Categorical {
                    let mut c = storage.new_column::<u8>()?;
                    for (b, map) in taken.iter_mut().filter_map(cat_codes).zip(&remaps) {
                        // Codes are < 256: the global dictionary was interned with that limit.
                        let v: Vec<u8> = b.iter().map(|&x| map[usize::from(x)] as u8).collect();
                        c.extend_from_slice(&v)?;
                        *b = Vec::new();
                    }
                    AnyColumn::Categorical(Categorical::new(dictionary, c))
                } else {
                    let mut c = storage.new_column::<u16>()?;
                    for (b, map) in taken.iter_mut().filter_map(cat_codes).zip(&remaps) {
                        let v: Vec<u16> = b.iter().map(|&x| map[usize::from(x)]).collect();
                        c.extend_from_slice(&v)?;
                        *b = Vec::new();
                    }
                    AnyColumn::Categorical16(Categorical::new(dictionary, c))
                }
            }
        };
        frame.add_column(name, column)?;
    }
    Ok(frame)
}

fn cat_codes(b: &mut Builder) -> Option<&mut Vec<u16>> {
    match b {
        Builder::Categorical(_, c) => Some(c),
        _ => None,
    }
}
