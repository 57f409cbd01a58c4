//! The `column` remote function, differentially: for every op and element type the server's
//! result (through a real `Client`) equals a plain-`Vec` computation here, on random data written
//! as chunks with a partial last chunk or a full-sized one with garbage past `len`. Malformed and
//! hostile calls get errors and the server keeps serving.

use std::cmp::Ordering;

use farmem_net::compute::{
    call_column, ArithOp, CmpOp, ColumnCall, ColumnOp, ColumnRef, ColumnResult, Domain, ElemType,
    Scalar, COLUMN_FUNCTION,
};
use farmem_net::{Client, ClientConfig, ErrorKind};
use farmem_server::{FunctionRegistry, Server, ServerConfig, ServerHandle, StoreView};

const TOKEN: &str = "columns-token";

fn start() -> (ServerHandle, Client) {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 64 << 20, TOKEN)).unwrap();
    let client = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    (server, client)
}

/// SplitMix64: deterministic test data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn width_mask(elem: ElemType) -> u64 {
    match elem.size() {
        8 => u64::MAX,
        s => (1u64 << (8 * s)) - 1,
    }
}

/// A random value of `elem`'s domain: few distinct values half the time (so unique and the
/// histogram have repeats), full-range otherwise; f64 includes -0.0, 0.0, infinities.
fn random_value(rng: &mut Rng, elem: ElemType) -> Scalar {
    let r = rng.next();
    let small = rng.next() % 2 == 0;
    match elem.domain() {
        Domain::Unsigned => Scalar::U64(if small { r % 5 } else { r } & width_mask(elem)),
        Domain::Signed => Scalar::I64(if small { (r % 7) as i64 - 3 } else { r as i64 }),
        Domain::Float => Scalar::F64(match r % 10 {
            0 => -0.0,
            1 => 0.0,
            2 => f64::INFINITY,
            3 => 1.5,
            _ => (r as i64 as f64) / 1e15,
        }),
    }
}

fn bits(s: Scalar) -> u64 {
    match s {
        Scalar::U64(v) => v,
        Scalar::I64(v) => v as u64,
        Scalar::F64(v) => v.to_bits(),
    }
}

fn encode(elem: ElemType, values: &[Scalar]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| bits(*v).to_le_bytes()[..elem.size()].to_vec())
        .collect()
}

fn decode(elem: ElemType, bytes: &[u8]) -> Vec<Scalar> {
    bytes
        .chunks_exact(elem.size())
        .map(|e| {
            let mut b = [0u8; 8];
            b[..e.len()].copy_from_slice(e);
            let v = u64::from_le_bytes(b);
            match elem.domain() {
                Domain::Unsigned => Scalar::U64(v),
                Domain::Signed => Scalar::I64(v as i64),
                Domain::Float => Scalar::F64(f64::from_bits(v)),
            }
        })
        .collect()
}

/// Writes `values` as a column of `ds`; with `garbage`, the last chunk is full-sized with
/// random elements past `len`.
fn write_column(
    c: &Client,
    rng: &mut Rng,
    ds: u64,
    elem: ElemType,
    chunk_len: u64,
    values: &[Scalar],
    garbage: bool,
) -> ColumnRef {
    c.create_ds(ds, 0).unwrap();
    let chunks: Vec<Vec<u8>> = values
        .chunks(chunk_len as usize)
        .map(|chunk| {
            let mut chunk = chunk.to_vec();
            while garbage && (chunk.len() as u64) < chunk_len {
                chunk.push(random_value(rng, elem));
            }
            encode(elem, &chunk)
        })
        .collect();
    let pairs: Vec<(u64, &[u8])> = chunks
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u64, &b[..]))
        .collect();
    if !pairs.is_empty() {
        c.write_batch(ds, &pairs).unwrap();
    }
    ColumnRef {
        ds,
        elem,
        chunk_len,
        len: values.len() as u64,
    }
}

fn call(c: &Client, column: ColumnRef, op: ColumnOp) -> farmem_net::Result<ColumnResult> {
    call_column(c, &ColumnCall { column, op })
}

fn read_column(c: &Client, col: &ColumnRef) -> Vec<Scalar> {
    let ids: Vec<u64> = (0..col.chunk_count()).collect();
    let mut out = Vec::new();
    for chunk in c.read_batch(col.ds, &ids).unwrap() {
        out.extend(decode(col.elem, &chunk.unwrap()));
    }
    out.truncate(col.len as usize);
    out
}

/// The plain-`Vec` reference for `a op b` in the element's domain, narrowed to its width.
fn arith(elem: ElemType, op: ArithOp, a: Scalar, b: Scalar) -> Option<Scalar> {
    Some(match (a, b) {
        (Scalar::U64(a), Scalar::U64(b)) => Scalar::U64(
            match op {
                ArithOp::Add => a.wrapping_add(b),
                ArithOp::Sub => a.wrapping_sub(b),
                ArithOp::Mul => a.wrapping_mul(b),
                ArithOp::Div => a.checked_div(b)?,
            } & width_mask(elem),
        ),
        (Scalar::I64(a), Scalar::I64(b)) => Scalar::I64(match op {
            ArithOp::Add => a.wrapping_add(b),
            ArithOp::Sub => a.wrapping_sub(b),
            ArithOp::Mul => a.wrapping_mul(b),
            ArithOp::Div => a.checked_div(b).or((b != 0).then(|| a.wrapping_div(b)))?,
        }),
        (Scalar::F64(a), Scalar::F64(b)) => Scalar::F64(match op {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div => a / b,
        }),
        _ => unreachable!("test mixes domains"),
    })
}

fn as_i128(s: Scalar) -> Option<i128> {
    match s {
        Scalar::U64(v) => Some(v as i128),
        Scalar::I64(v) => Some(v as i128),
        Scalar::F64(_) => None,
    }
}

fn as_f64(s: Scalar) -> f64 {
    match s {
        Scalar::U64(v) => v as f64,
        Scalar::I64(v) => v as f64,
        Scalar::F64(v) => v,
    }
}

/// Asserts bit-exact equality (f64 results compared by their encoding).
fn same(got: ColumnResult, want: ColumnResult, what: &str) {
    assert_eq!(
        got.encode(),
        want.encode(),
        "{what}: got {got:?}, want {want:?}"
    );
}

fn check_all_ops(c: &Client, rng: &mut Rng, col: ColumnRef, values: &[Scalar], next_ds: &mut u64) {
    let what = |op: &str| {
        format!(
            "{op} on {:?} len {} chunk {}",
            col.elem, col.len, col.chunk_len
        )
    };
    let mut sorted = values.to_vec();
    sorted.sort_by(Scalar::total_cmp);
    let n = values.len();

    same(
        call(c, col, ColumnOp::Count).unwrap(),
        ColumnResult::Count(n as u64),
        &what("count"),
    );
    let float = col.elem == ElemType::F64;
    let int_sum: i128 = values.iter().filter_map(|v| as_i128(*v)).sum();
    let float_sum = values.iter().fold(0.0f64, |acc, v| acc + as_f64(*v));
    same(
        call(c, col, ColumnOp::Sum).unwrap(),
        if float {
            ColumnResult::FloatSum(float_sum)
        } else {
            ColumnResult::IntSum(int_sum)
        },
        &what("sum"),
    );
    let total = if float { float_sum } else { int_sum as f64 };
    same(
        call(c, col, ColumnOp::Mean).unwrap(),
        ColumnResult::Mean((n > 0).then(|| total / n as f64)),
        &what("mean"),
    );
    same(
        call(c, col, ColumnOp::Min).unwrap(),
        ColumnResult::Scalar(sorted.first().copied()),
        &what("min"),
    );
    same(
        call(c, col, ColumnOp::Max).unwrap(),
        ColumnResult::Scalar(sorted.last().copied()),
        &what("max"),
    );
    same(
        call(c, col, ColumnOp::Median).unwrap(),
        ColumnResult::Scalar(sorted.get(n.saturating_sub(1) / 2).copied()),
        &what("median"),
    );
    same(
        call(c, col, ColumnOp::MedianPair).unwrap(),
        ColumnResult::Values(if n == 0 {
            Vec::new()
        } else {
            vec![sorted[(n - 1) / 2], sorted[n / 2]]
        }),
        &what("median pair"),
    );
    let mut unique = sorted.clone();
    unique.dedup();
    same(
        call(c, col, ColumnOp::Unique).unwrap(),
        ColumnResult::Values(unique.clone()),
        &what("unique"),
    );
    let hist: Vec<(Scalar, u64)> = unique
        .iter()
        .map(|u| (*u, values.iter().filter(|v| *v == u).count() as u64))
        .collect();
    same(
        call(c, col, ColumnOp::Histogram).unwrap(),
        ColumnResult::ValueCounts(hist),
        &what("histogram"),
    );
    if unique.len() >= 3 {
        let edges = vec![
            unique[0],
            unique[unique.len() / 2],
            unique[unique.len() - 1],
        ];
        let counts: Vec<u64> = edges
            .windows(2)
            .map(|w| {
                values
                    .iter()
                    .filter(|v| {
                        v.total_cmp(&w[0]) != Ordering::Less && v.total_cmp(&w[1]) == Ordering::Less
                    })
                    .count() as u64
            })
            .collect();
        same(
            call(c, col, ColumnOp::Buckets { edges }).unwrap(),
            ColumnResult::BucketCounts(counts),
            &what("buckets"),
        );
    }

    // Filters against a present value and a random one, every comparison.
    let probes = [
        values.get(n / 3).copied(),
        Some(random_value(rng, col.elem)),
    ];
    for value in probes.into_iter().flatten() {
        for cmp in [
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Ge,
            CmpOp::Gt,
        ] {
            let rows: Vec<u64> = (0..n as u64)
                .filter(|&i| cmp.accepts(values[i as usize].total_cmp(&value)))
                .collect();
            same(
                call(c, col, ColumnOp::CountWhere { cmp, value }).unwrap(),
                ColumnResult::Count(rows.len() as u64),
                &what("count_where"),
            );
            same(
                call(c, col, ColumnOp::Filter { cmp, value }).unwrap(),
                ColumnResult::Indices(rows),
                &what("filter"),
            );
        }
    }

    if n > 0 {
        let mut indices: Vec<u64> = (0..20).map(|_| rng.next() % n as u64).collect();
        indices.extend([0, n as u64 - 1]);
        let want = indices.iter().map(|&i| values[i as usize]).collect();
        same(
            call(c, col, ColumnOp::Gather { indices }).unwrap(),
            ColumnResult::Values(want),
            &what("gather"),
        );
    }

    // Map with every arithmetic op into a fresh column, read back through the client.
    for op in [ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div] {
        let value = loop {
            let v = random_value(rng, col.elem);
            if op != ArithOp::Div || as_f64(v) != 0.0 {
                break v;
            }
        };
        let dst = ColumnRef {
            ds: *next_ds,
            ..col
        };
        *next_ds += 1;
        c.create_ds(dst.ds, 0).unwrap();
        same(
            call(c, col, ColumnOp::Map { op, value, dst }).unwrap(),
            ColumnResult::Count(n as u64),
            &what("map"),
        );
        let want: Vec<Scalar> = values
            .iter()
            .map(|a| arith(col.elem, op, *a, value).unwrap())
            .collect();
        assert_eq!(
            read_column(c, &dst),
            want,
            "{} {op:?} {value:?}",
            what("map")
        );
    }

    // Pairwise Sub (dropoff − pickup) against a second random column of the same shape.
    let other_values: Vec<Scalar> = (0..n).map(|_| random_value(rng, col.elem)).collect();
    let other = write_column(
        c,
        rng,
        *next_ds,
        col.elem,
        col.chunk_len,
        &other_values,
        false,
    );
    let dst = ColumnRef {
        ds: *next_ds + 1,
        ..col
    };
    *next_ds += 2;
    c.create_ds(dst.ds, 0).unwrap();
    same(
        call(
            c,
            col,
            ColumnOp::Pairwise {
                op: ArithOp::Sub,
                other,
                dst,
            },
        )
        .unwrap(),
        ColumnResult::Count(n as u64),
        &what("pairwise"),
    );
    let want: Vec<Scalar> = values
        .iter()
        .zip(&other_values)
        .map(|(a, b)| arith(col.elem, ArithOp::Sub, *a, *b).unwrap())
        .collect();
    assert_eq!(read_column(c, &dst), want, "{}", what("pairwise sub"));
}

#[test]
fn every_op_and_element_type_matches_a_plain_vec() {
    let (server, c) = start();
    let mut rng = Rng(0x5EED);
    let mut next_ds = 1000;
    let mut ds = 1;
    for elem in ElemType::ALL {
        // (chunk_len, len, garbage past len): partial last chunk, full-sized with garbage,
        // exactly full, single short chunk, empty.
        for (chunk_len, len, garbage) in [
            (7, 50, false),
            (7, 50, true),
            (16, 64, false),
            (1000, 3, true),
            (5, 0, false),
        ] {
            let values: Vec<Scalar> = (0..len).map(|_| random_value(&mut rng, elem)).collect();
            let col = write_column(&c, &mut rng, ds, elem, chunk_len, &values, garbage);
            ds += 1;
            check_all_ops(&c, &mut rng, col, &values, &mut next_ds);
        }
    }
    server.shutdown();
}

#[test]
fn map_in_place_and_integer_division_by_zero() {
    let (server, c) = start();
    let mut rng = Rng(7);
    let values: Vec<Scalar> = (0..20).map(|i| Scalar::U64(i * 20)).collect();
    let col = write_column(&c, &mut rng, 1, ElemType::U8, 6, &values, false);
    // In place: dst = the input column; u8 wraps (19 * 20 + 100 = 480 → 224).
    let map = ColumnOp::Map {
        op: ArithOp::Add,
        value: Scalar::U64(100),
        dst: col,
    };
    assert_eq!(call(&c, col, map).unwrap(), ColumnResult::Count(20));
    let got = read_column(&c, &col);
    assert_eq!(got[19], Scalar::U64(224));
    assert_eq!(got[0], Scalar::U64(100));
    let div0 = ColumnOp::Map {
        op: ArithOp::Div,
        value: Scalar::U64(0),
        dst: col,
    };
    let e = call(&c, col, div0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("division by zero"), "{e}");
    server.shutdown();
}

#[test]
fn malformed_and_hostile_calls_are_errors_and_the_server_keeps_serving() {
    let mut functions = FunctionRegistry::with_builtins();
    functions
        .register(
            "boom",
            |_: &StoreView<'_>, _: &[u8]| -> farmem_net::Result<Vec<u8>> { panic!("boom") },
        )
        .unwrap();
    let server =
        Server::start_with_functions(ServerConfig::new("127.0.0.1:0", 1 << 20, TOKEN), functions)
            .unwrap();
    let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    let mut rng = Rng(3);
    let values: Vec<Scalar> = (0..10).map(Scalar::U64).collect();
    let good = write_column(&c, &mut rng, 1, ElemType::U16, 4, &values, false);
    let kind = |col: ColumnRef, op: ColumnOp| call(&c, col, op).unwrap_err();

    // Garbage argument bytes.
    for args in [&b""[..], b"\x01", b"\x02garbage", &[0xff; 40]] {
        let e = c.compute(COLUMN_FUNCTION, args).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{args:?}: {e}");
    }
    // Absent data structure, even for an empty column.
    let e = kind(
        ColumnRef {
            ds: 77,
            len: 0,
            ..good
        },
        ColumnOp::Count,
    );
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // Absent chunk within len: named.
    c.remove(1, 1).unwrap();
    let e = kind(good, ColumnOp::Sum);
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.context().contains("chunk 1"), "{e}");
    c.write(1, 1, &encode(ElemType::U16, &values[4..8]))
        .unwrap();
    // Wrong element size versus chunk bytes: 8 bytes of u16 data read as u64 is 1 element,
    // but an odd-length chunk is not a whole number of u16s.
    c.write(1, 2, b"\x01\x02\x03").unwrap();
    let e = kind(good, ColumnOp::Max);
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.context().contains("chunk 2"), "{e}");
    c.write(1, 2, &encode(ElemType::U16, &values[8..])).unwrap();
    // More elements in a chunk than chunk_len says (wrong chunk_len).
    let e = kind(
        ColumnRef {
            chunk_len: 2,
            len: 4,
            ..good
        },
        ColumnOp::Sum,
    );
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // len beyond the chunks: the last chunk is too short, the next absent.
    let e = kind(ColumnRef { len: 11, ..good }, ColumnOp::Sum);
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // Huge lengths fail on the first missing or short chunk, without allocating.
    for op in [
        ColumnOp::Median,
        ColumnOp::MedianPair,
        ColumnOp::Unique,
        ColumnOp::Sum,
    ] {
        let e = kind(
            ColumnRef {
                len: u64::MAX,
                chunk_len: 1,
                ..good
            },
            op.clone(),
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let e = kind(
            ColumnRef {
                len: u64::MAX,
                chunk_len: u64::MAX,
                ..good
            },
            op,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    // Scalar of the wrong domain, gather out of bounds, shape mismatch, absent dst.
    let e = kind(
        good,
        ColumnOp::Filter {
            cmp: CmpOp::Eq,
            value: Scalar::I64(1),
        },
    );
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = kind(
        good,
        ColumnOp::Gather {
            indices: vec![1, 10],
        },
    );
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.context().contains("10"), "{e}");
    let dst = ColumnRef {
        ds: 2,
        elem: ElemType::U32,
        ..good
    };
    c.create_ds(2, 0).unwrap();
    let e = kind(
        good,
        ColumnOp::Map {
            op: ArithOp::Add,
            value: Scalar::U64(1),
            dst,
        },
    );
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = kind(
        good,
        ColumnOp::Pairwise {
            op: ArithOp::Sub,
            other: good,
            dst: ColumnRef { ds: 3, ..good },
        },
    );
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // A write that does not fit the server is OutOfFarMemory, not a crash.
    let big: Vec<Scalar> = (0..80_000).map(Scalar::U64).collect();
    let big_col = write_column(&c, &mut rng, 4, ElemType::U64, 4096, &big, false);
    c.create_ds(5, 0).unwrap();
    let e = kind(
        big_col,
        ColumnOp::Map {
            op: ArithOp::Add,
            value: Scalar::U64(1),
            dst: ColumnRef { ds: 5, ..big_col },
        },
    );
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
    // A panicking function costs only its call.
    assert_eq!(
        c.compute("boom", b"").unwrap_err().kind(),
        ErrorKind::Panicked
    );

    // Still serving, with the right answers.
    c.ping().unwrap();
    assert_eq!(
        call(&c, good, ColumnOp::Sum).unwrap(),
        ColumnResult::IntSum(45)
    );
    assert_eq!(
        call(&c, good, ColumnOp::Median).unwrap(),
        ColumnResult::Scalar(Some(Scalar::U64(4)))
    );
    server.shutdown();
}

#[test]
fn a_result_larger_than_a_frame_is_an_error_and_the_connection_stays_usable() {
    let mut config = ServerConfig::new("127.0.0.1:0", 16 << 20, TOKEN);
    config.max_frame_body = 64 << 10;
    let server = Server::start(config).unwrap();
    let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    let mut rng = Rng(11);
    let zeros = vec![Scalar::U64(0); 20_000];
    let col = write_column(&c, &mut rng, 1, ElemType::U8, 4096, &zeros, false);
    // 20 000 row indices are 160 KB: more than the 64 KiB frame bound.
    let all = ColumnOp::Filter {
        cmp: CmpOp::Eq,
        value: Scalar::U64(0),
    };
    let e = call(&c, col, all).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.context().contains("exceeds the frame limit"), "{e}");
    let some = ColumnOp::CountWhere {
        cmp: CmpOp::Eq,
        value: Scalar::U64(0),
    };
    assert_eq!(call(&c, col, some).unwrap(), ColumnResult::Count(20_000));
    server.shutdown();
}
