//! The column-call codec: every call and result round-trips, and malformed bytes are errors
//! (truncation at any point, unknown tags, trailing bytes, wrong version, nonsense arguments).

use farmem_net::compute::{
    ArithOp, CmpOp, ColumnCall, ColumnOp, ColumnRef, ColumnResult, ElemType, Scalar,
    COLUMN_CODEC_VERSION,
};
use farmem_net::ErrorKind;
use proptest::prelude::*;

fn elem() -> impl Strategy<Value = ElemType> {
    prop::sample::select(ElemType::ALL.to_vec())
}

fn column() -> impl Strategy<Value = ColumnRef> {
    (any::<u64>(), elem(), 1..u64::MAX, any::<u64>()).prop_map(|(ds, elem, chunk_len, len)| {
        ColumnRef {
            ds,
            elem,
            chunk_len,
            len,
        }
    })
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<u64>().prop_map(Scalar::U64),
        any::<i64>().prop_map(Scalar::I64),
        any::<u64>().prop_map(|b| Scalar::F64(f64::from_bits(b))),
    ]
}

fn cmp() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Ge,
        CmpOp::Gt,
    ])
}

fn arith() -> impl Strategy<Value = ArithOp> {
    prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div])
}

fn op() -> impl Strategy<Value = ColumnOp> {
    prop_oneof![
        Just(ColumnOp::Count),
        Just(ColumnOp::Sum),
        Just(ColumnOp::Min),
        Just(ColumnOp::Max),
        Just(ColumnOp::Mean),
        Just(ColumnOp::Median),
        Just(ColumnOp::MedianPair),
        Just(ColumnOp::Unique),
        Just(ColumnOp::Histogram),
        prop::collection::btree_set(any::<i64>(), 2..10).prop_map(|s| ColumnOp::Buckets {
            edges: s.into_iter().map(Scalar::I64).collect()
        }),
        (cmp(), scalar()).prop_map(|(cmp, value)| ColumnOp::Filter { cmp, value }),
        (cmp(), scalar()).prop_map(|(cmp, value)| ColumnOp::CountWhere { cmp, value }),
        prop::collection::vec(any::<u64>(), 0..20).prop_map(|indices| ColumnOp::Gather { indices }),
        (arith(), scalar(), column()).prop_map(|(op, value, dst)| ColumnOp::Map { op, value, dst }),
        (arith(), column(), column()).prop_map(|(op, other, dst)| ColumnOp::Pairwise {
            op,
            other,
            dst
        }),
    ]
}

fn result() -> impl Strategy<Value = ColumnResult> {
    prop_oneof![
        any::<u64>().prop_map(ColumnResult::Count),
        any::<i128>().prop_map(ColumnResult::IntSum),
        any::<u64>().prop_map(|b| ColumnResult::FloatSum(f64::from_bits(b))),
        prop::option::of(scalar()).prop_map(ColumnResult::Scalar),
        prop::option::of(any::<u64>().prop_map(f64::from_bits)).prop_map(ColumnResult::Mean),
        prop::collection::vec(scalar(), 0..20).prop_map(ColumnResult::Values),
        prop::collection::vec((scalar(), any::<u64>()), 0..20).prop_map(ColumnResult::ValueCounts),
        prop::collection::vec(any::<u64>(), 0..20).prop_map(ColumnResult::BucketCounts),
        prop::collection::vec(any::<u64>(), 0..20).prop_map(ColumnResult::Indices),
    ]
}

proptest! {
    #[test]
    fn calls_round_trip_and_every_truncation_fails(column in column(), op in op()) {
        let call = ColumnCall { column, op };
        let bytes = call.encode();
        let back = ColumnCall::decode(&bytes).unwrap();
        // Bit-level comparison: f64 NaN scalars compare by bits (Scalar's PartialEq).
        prop_assert_eq!(&back, &call);
        prop_assert_eq!(back.encode(), bytes.clone());
        for cut in 0..bytes.len() {
            let e = ColumnCall::decode(&bytes[..cut]).unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::Protocol, "cut at {}: {}", cut, e);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(ColumnCall::decode(&longer).unwrap_err().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn results_round_trip_and_every_truncation_fails(result in result()) {
        let bytes = result.encode();
        let back = ColumnResult::decode(&bytes).unwrap();
        // f64 results may hold NaN, so compare re-encodings (bit-exact).
        prop_assert_eq!(back.encode(), bytes.clone());
        for cut in 0..bytes.len() {
            let e = ColumnResult::decode(&bytes[..cut]).unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::Protocol, "cut at {}: {}", cut, e);
        }
        let mut longer = bytes;
        longer.push(7);
        prop_assert_eq!(ColumnResult::decode(&longer).unwrap_err().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = ColumnCall::decode(&bytes);
        let _ = ColumnResult::decode(&bytes);
    }
}

fn col(elem: ElemType) -> ColumnRef {
    ColumnRef {
        ds: 9,
        elem,
        chunk_len: 4,
        len: 10,
    }
}

#[test]
fn known_layout_of_a_filter_call() {
    let call = ColumnCall {
        column: col(ElemType::U16),
        op: ColumnOp::Filter {
            cmp: CmpOp::Ge,
            value: Scalar::U64(300),
        },
    };
    let mut want = vec![COLUMN_CODEC_VERSION];
    want.extend_from_slice(&9u64.to_le_bytes());
    want.push(2); // U16
    want.extend_from_slice(&4u64.to_le_bytes());
    want.extend_from_slice(&10u64.to_le_bytes());
    want.extend_from_slice(&[10, 5, 1]); // Filter, Ge, U64 tag
    want.extend_from_slice(&300u64.to_le_bytes());
    assert_eq!(call.encode(), want);
    assert_eq!(col(ElemType::U16).chunk_count(), 3);
}

#[test]
fn bad_tags_versions_and_arguments_are_rejected() {
    let good = ColumnCall {
        column: col(ElemType::I64),
        op: ColumnOp::Sum,
    }
    .encode();
    let patch = |at: usize, v: u8| {
        let mut b = good.clone();
        b[at] = v;
        ColumnCall::decode(&b).unwrap_err()
    };
    assert_eq!(patch(0, 2).kind(), ErrorKind::Protocol); // version
    assert_eq!(patch(9, 0).kind(), ErrorKind::Protocol); // elem code
    assert_eq!(patch(9, 7).kind(), ErrorKind::Protocol);
    assert_eq!(patch(good.len() - 1, 0).kind(), ErrorKind::Protocol); // op tag
    assert_eq!(patch(good.len() - 1, 16).kind(), ErrorKind::Protocol);
    let mut zero_chunk = col(ElemType::U8);
    zero_chunk.chunk_len = 0;
    let e = ColumnCall::decode(
        &ColumnCall {
            column: zero_chunk,
            op: ColumnOp::Count,
        }
        .encode(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("chunk_len 0"), "{e}");
    for edges in [
        vec![Scalar::U64(1)],
        vec![Scalar::U64(3), Scalar::U64(3)],
        vec![Scalar::F64(1.0), Scalar::F64(-1.0)],
    ] {
        let e = ColumnCall::decode(
            &ColumnCall {
                column: col(ElemType::U8),
                op: ColumnOp::Buckets { edges },
            }
            .encode(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    // A forged count cannot make the decoder allocate: it is checked against the bytes left.
    let mut gather = ColumnCall {
        column: col(ElemType::U8),
        op: ColumnOp::Gather { indices: vec![] },
    }
    .encode();
    let n = gather.len();
    gather[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        ColumnCall::decode(&gather).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    let mut scalar = ColumnResult::Scalar(Some(Scalar::U64(1))).encode();
    scalar[3] = 9; // scalar tag
    assert_eq!(
        ColumnResult::decode(&scalar).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    scalar[2] = 2; // present flag
    assert_eq!(
        ColumnResult::decode(&scalar).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn scalars_order_totally_and_compare_by_bits() {
    use std::cmp::Ordering;
    assert_eq!(Scalar::F64(f64::NAN), Scalar::F64(f64::NAN));
    assert_ne!(Scalar::F64(0.0), Scalar::F64(-0.0));
    assert_eq!(
        Scalar::F64(-0.0).total_cmp(&Scalar::F64(0.0)),
        Ordering::Less
    );
    assert_ne!(Scalar::U64(1), Scalar::I64(1));
    assert!(CmpOp::Le.accepts(Ordering::Equal) && !CmpOp::Lt.accepts(Ordering::Equal));
    assert!(CmpOp::Ne.accepts(Ordering::Less) && !CmpOp::Eq.accepts(Ordering::Greater));
}
