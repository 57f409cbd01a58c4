//! CSV loading: malformed rows (errors naming line and field, or skipped and counted), header
//! checks, thread-count invariance, line endings, progress, and corrupted files never panic.

mod dataframe_support;

use dataframe_support::TempPath;
use farmem_dataframe::{
    generate, load_csv, ColumnStore, ColumnType, DataFrame, ErrorKind, LoadOptions, LocalStorage,
    Schema,
};
use proptest::prelude::*;

/// A generated taxi file of `rows` rows, returned as lines (header first).
fn taxi_lines(rows: u64, seed: u64) -> Vec<String> {
    let p = TempPath::new("src");
    generate(&p.0, rows, seed, None).expect("generate");
    std::fs::read_to_string(&p.0)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write(tag: &str, lines: &[String], ending: &str) -> TempPath {
    let p = TempPath::new(tag);
    let mut text = lines.join(ending);
    text.push_str(ending);
    std::fs::write(&p.0, text).expect("write");
    p
}

fn opts(threads: usize, skip: bool) -> LoadOptions<'static> {
    LoadOptions {
        threads,
        skip_bad_rows: skip,
        progress: None,
    }
}

fn load(
    p: &TempPath,
    threads: usize,
    skip: bool,
) -> farmem_dataframe::Result<(DataFrame<LocalStorage>, farmem_dataframe::LoadReport)> {
    load_csv(&p.0, &Schema::taxi(), &LocalStorage, opts(threads, skip))
}

fn set_field(line: &str, field: usize, value: &str) -> String {
    let mut f: Vec<&str> = line.split(',').collect();
    f[field] = value;
    f.join(",")
}

/// Each corruption: (field index or None for the whole line, replacement, field name in error).
const CORRUPTIONS: &[(Option<usize>, &str, &str)] = &[
    (Some(0), "x1", "VendorID"),
    (Some(1), "2016-02-30 10:00:00", "tpep_pickup_datetime"),
    (Some(2), "2016-01-01 24:00:00", "tpep_dropoff_datetime"),
    (Some(3), "300", "passenger_count"),
    (Some(4), "1.2.3", "trip_distance"),
    (Some(6), "", "pickup_latitude"),
    (Some(18), "12,5", "fields"),
    (None, "1,2,3", "fields"),
];

#[test]
fn a_malformed_row_is_an_error_naming_its_line_and_field_with_any_thread_count() {
    // ~1 MB, so 4 threads each get a range; corrupt a line deep in the file.
    let lines = taxi_lines(8000, 11);
    for &(field, value, name) in CORRUPTIONS {
        for line_no in [2usize, 4321, 8001] {
            let mut bad = lines.clone();
            bad[line_no - 1] = match field {
                Some(f) => set_field(&bad[line_no - 1], f, value),
                None => value.to_string(),
            };
            let p = write("bad", &bad, "\n");
            for threads in [1, 4] {
                let err = load(&p, threads, false)
                    .err()
                    .expect("malformed row must fail");
                assert_eq!(err.kind(), ErrorKind::Parse, "{err}");
                let msg = err.to_string();
                assert!(msg.contains(&format!("line {line_no}:")), "{msg}");
                assert!(msg.contains(name), "{msg}");
            }
        }
    }
}

#[test]
fn skip_bad_rows_counts_and_drops_exactly_the_bad_rows() {
    let lines = taxi_lines(8000, 12);
    let mut bad = lines.clone();
    let bad_lines = [3usize, 1000, 4000, 4001, 7999];
    for (i, &l) in bad_lines.iter().enumerate() {
        let (field, value, _) = CORRUPTIONS[i % CORRUPTIONS.len()];
        bad[l - 1] = match field {
            Some(f) => set_field(&bad[l - 1], f, value),
            None => value.to_string(),
        };
    }
    let p = write("skip", &bad, "\n");
    let good: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !bad_lines.contains(&(i + 1)))
        .map(|(_, l)| l.clone())
        .collect();
    let clean = write("clean", &good, "\n");
    let (want, _) = load(&clean, 1, false).expect("clean loads");
    for threads in [1, 2, 5] {
        let (df, report) = load(&p, threads, true).expect("skipping loads");
        assert_eq!(report.bad_rows, bad_lines.len());
        assert_eq!(report.rows, 8000 - bad_lines.len());
        let first = report.first_bad_row.expect("first bad row");
        assert!(first.starts_with("line 3:"), "{first}");
        assert_frames_equal(&df, &want);
    }
}

fn assert_frames_equal(a: &DataFrame<LocalStorage>, b: &DataFrame<LocalStorage>) {
    assert_eq!(a.column_names(), b.column_names());
    assert_eq!(a.rows(), b.rows());
    for (name, ty) in Schema::taxi().fields() {
        match ty {
            ColumnType::I64 => assert_eq!(a.i64(name).unwrap(), b.i64(name).unwrap(), "{name}"),
            ColumnType::Timestamp => {
                assert_eq!(a.timestamp(name).unwrap(), b.timestamp(name).unwrap())
            }
            ColumnType::F64 => {
                let (x, y) = (
                    a.f64(name).unwrap().as_slice(),
                    b.f64(name).unwrap().as_slice(),
                );
                assert!(
                    x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{name}"
                );
            }
            ColumnType::U8 => assert_eq!(a.u8(name).unwrap(), b.u8(name).unwrap(), "{name}"),
            _ => {
                let (x, y) = (a.categorical(name).unwrap(), b.categorical(name).unwrap());
                let decode =
                    |c: &farmem_dataframe::Categorical<farmem_dataframe::LocalColumn<u8>>| {
                        c.codes()
                            .as_slice()
                            .iter()
                            .map(|&k| c.dictionary()[usize::from(k)].clone())
                            .collect::<Vec<_>>()
                    };
                assert_eq!(decode(x), decode(y), "{name}");
            }
        }
    }
}

#[test]
fn thread_count_line_endings_and_trailing_blanks_do_not_change_the_frame() {
    let lines = taxi_lines(6000, 13);
    let p = write("lf", &lines, "\n");
    let (want, report) = load(&p, 1, false).expect("load");
    assert_eq!(report.rows, 6000);
    for threads in [2, 3, 7, 0] {
        let (df, _) = load(&p, threads, false).expect("load");
        assert_frames_equal(&df, &want);
    }
    let crlf = write("crlf", &lines, "\r\n");
    let (df, _) = load(&crlf, 3, false).expect("crlf");
    assert_frames_equal(&df, &want);
    // No final newline, and blank lines at the end.
    let p2 = TempPath::new("nofinal");
    std::fs::write(&p2.0, lines.join("\n")).expect("write");
    assert_frames_equal(&load(&p2, 4, false).expect("no final newline").0, &want);
    let p3 = TempPath::new("blank");
    std::fs::write(&p3.0, format!("{}\n\n\n", lines.join("\n"))).expect("write");
    assert_frames_equal(&load(&p3, 4, false).expect("blank lines").0, &want);
}

#[test]
fn the_header_must_match_the_schema() {
    let mut lines = taxi_lines(10, 14);
    let p = write("hdr-ok", &lines, "\n");
    assert!(load(&p, 1, false).is_ok());
    lines[0] = lines[0].to_lowercase();
    let p = write("hdr-case", &lines, "\n");
    assert!(
        load(&p, 1, false).is_ok(),
        "header names are case-insensitive"
    );
    lines[0] = lines[0].replace("passenger_count", "passengers");
    let p = write("hdr-bad", &lines, "\n");
    let err = load(&p, 1, false).err().expect("wrong header");
    assert_eq!(err.kind(), ErrorKind::Parse);
    assert!(err.to_string().contains("passenger_count"), "{err}");
    lines[0] = "VendorID,PULocationID".into();
    let p = write("hdr-short", &lines, "\n");
    assert!(load(&p, 1, false)
        .err()
        .is_some_and(|e| e.kind() == ErrorKind::Parse));
    let empty = TempPath::new("empty");
    std::fs::write(&empty.0, "").expect("write");
    assert_eq!(
        load(&empty, 1, false).err().map(|e| e.kind()),
        Some(ErrorKind::Parse)
    );
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let missing = TempPath::new("missing");
    let err = load(&missing, 1, false).err().expect("missing file");
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains(&missing.0.display().to_string()),
        "{err}"
    );
}

#[test]
fn integer_fields_accept_a_zero_fraction_and_categories_must_be_utf8() {
    let mut lines = taxi_lines(3, 15);
    lines[1] = set_field(&lines[1], 3, "2.0");
    let p = write("frac", &lines, "\n");
    let (df, _) = load(&p, 1, false).expect("2.0 is an integer");
    assert_eq!(df.u8("passenger_count").unwrap().get(0).unwrap(), 2);
    lines[1] = set_field(&lines[1], 3, "2.5");
    let p = write("frac-bad", &lines, "\n");
    assert!(load(&p, 1, false).is_err());
    let p = TempPath::new("utf8");
    let mut bytes = lines[0].clone().into_bytes();
    bytes.push(b'\n');
    let row = set_field(&lines[2], 8, "@");
    bytes.extend(
        row.as_bytes()
            .iter()
            .map(|&b| if b == b'@' { 0xff } else { b }),
    );
    bytes.push(b'\n');
    std::fs::write(&p.0, bytes).expect("write");
    let err = load(&p, 1, false).err().expect("invalid utf-8 category");
    assert!(err.to_string().contains("store_and_fwd_flag"), "{err}");
}

#[test]
fn progress_reaches_the_file_size() {
    let lines = taxi_lines(8000, 16);
    let p = write("progress", &lines, "\n");
    let size = std::fs::metadata(&p.0).expect("size").len();
    let max = std::sync::atomic::AtomicU64::new(0);
    let calls = std::sync::atomic::AtomicU64::new(0);
    let progress = |done: u64, total: u64| {
        assert_eq!(total, size);
        assert!(done <= total);
        max.fetch_max(done, std::sync::atomic::Ordering::Relaxed);
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let o = LoadOptions {
        threads: 3,
        skip_bad_rows: false,
        progress: Some(&progress),
    };
    load_csv(&p.0, &Schema::taxi(), &LocalStorage, o).expect("load");
    assert_eq!(max.into_inner(), size);
    assert!(calls.into_inner() >= 3);
}

#[test]
fn categoricals_merge_dictionaries_across_threads() {
    let schema = Schema::new(&[("city", ColumnType::Categorical), ("n", ColumnType::I64)]);
    let mut text = String::from("city,n\n");
    let cities = ["Paris", "Oslo", "Lima", "Kyiv", "Pune"];
    for i in 0..40_000usize {
        // Later ranges see the cities in another first-seen order.
        let c = if i < 20_000 {
            cities[i % 2]
        } else {
            cities[4 - i % 5]
        };
        text.push_str(&format!("{c},{i}\n"));
    }
    let p = TempPath::new("cats");
    std::fs::write(&p.0, &text).expect("write");
    for threads in [1, 4] {
        let (df, _) = load_csv(&p.0, &schema, &LocalStorage, opts(threads, false)).expect("load");
        let cat = df.categorical("city").expect("city");
        for (i, &code) in cat.codes().as_slice().iter().enumerate() {
            let want = if i < 20_000 {
                cities[i % 2]
            } else {
                cities[4 - i % 5]
            };
            assert_eq!(cat.dictionary()[usize::from(code)], want);
        }
        assert_eq!(cat.count_equal::<u8>("Lima").unwrap(), 4000);
        assert_eq!(cat.count_equal::<u8>("Rome").unwrap(), 0);
    }
    // More than 256 categories need 16-bit codes.
    let mut text = String::from("city,n\n");
    for i in 0..300 {
        text.push_str(&format!("c{i},{i}\n"));
    }
    std::fs::write(&p.0, &text).expect("write");
    let err = load_csv(&p.0, &schema, &LocalStorage, opts(1, false))
        .err()
        .expect("257th");
    assert!(err.to_string().contains("Categorical16"), "{err}");
    let wide = Schema::new(&[("city", ColumnType::Categorical16), ("n", ColumnType::I64)]);
    let (df, _) = load_csv(&p.0, &wide, &LocalStorage, opts(1, false)).expect("u16 codes");
    assert!(matches!(
        df.column("city").unwrap(),
        farmem_dataframe::AnyColumn::Categorical16(c) if c.dictionary().len() == 300
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Flipping, deleting or inserting bytes anywhere never panics: the load succeeds (maybe
    /// skipping rows) or returns an error.
    #[test]
    fn corrupted_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..40),
        skip in any::<bool>(),
        threads in 1usize..4,
    ) {
        static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(|| {
            let mut t = taxi_lines(1500, 17).join("\n");
            t.push('\n');
            t.into_bytes()
        });
        let mut bytes = base.clone();
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        let p = TempPath::new("fuzz");
        std::fs::write(&p.0, &bytes).expect("write");
        match load(&p, threads, skip) {
            Ok((df, report)) => {
                prop_assert_eq!(df.rows(), report.rows);
                if !skip { prop_assert_eq!(report.bad_rows, 0); }
            }
            Err(e) => prop_assert!(matches!(e.kind(), ErrorKind::Parse), "{}", e),
        }
    }
}
