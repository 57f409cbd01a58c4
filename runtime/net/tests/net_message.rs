//! Body codecs: every request and response round-trips; truncated, padded and forged bodies are
//! protocol errors (never a panic, never a huge allocation).

use farmem_net::handshake::{Hello, HelloReply};
use farmem_net::message::object_spans;
use farmem_net::{ErrorKind, ErrorReply, Opcode, Request, Response, ServerStats};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

#[derive(Debug, Clone)]
enum OwnedRequest {
    Ping,
    Stats,
    CreateDs(u64, u16),
    DestroyDs(u64),
    Read(u64, u64),
    Write(u64, u64, Vec<u8>),
    Remove(u64, u64),
    ReadBatch(u64, Vec<u64>),
    WriteBatch(u64, Vec<(u64, Vec<u8>)>),
    Compute(String, Vec<u8>),
    CreateZeroed(u64, u64, u32, u32),
}

impl OwnedRequest {
    fn borrow(&self) -> Request<'_> {
        match self {
            OwnedRequest::Ping => Request::Ping,
            OwnedRequest::Stats => Request::Stats,
            OwnedRequest::CreateDs(ds, kind) => Request::CreateDs {
                ds: *ds,
                kind: *kind,
            },
            OwnedRequest::DestroyDs(ds) => Request::DestroyDs { ds: *ds },
            OwnedRequest::Read(ds, object) => Request::Read {
                ds: *ds,
                object: *object,
            },
            OwnedRequest::Write(ds, object, data) => Request::Write {
                ds: *ds,
                object: *object,
                data,
            },
            OwnedRequest::Remove(ds, object) => Request::Remove {
                ds: *ds,
                object: *object,
            },
            OwnedRequest::ReadBatch(ds, objects) => Request::ReadBatch {
                ds: *ds,
                objects: objects.clone(),
            },
            OwnedRequest::WriteBatch(ds, objects) => Request::WriteBatch {
                ds: *ds,
                objects: objects.iter().map(|(o, d)| (*o, &d[..])).collect(),
            },
            OwnedRequest::Compute(function, args) => Request::Compute { function, args },
            OwnedRequest::CreateZeroed(ds, first, count, len) => Request::CreateZeroed {
                ds: *ds,
                first: *first,
                count: *count,
                len: *len,
            },
        }
    }
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    prop_oneof![
        Just(OwnedRequest::Ping),
        Just(OwnedRequest::Stats),
        (any::<u64>(), any::<u16>()).prop_map(|(a, b)| OwnedRequest::CreateDs(a, b)),
        any::<u64>().prop_map(OwnedRequest::DestroyDs),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| OwnedRequest::Read(a, b)),
        (any::<u64>(), any::<u64>(), bytes()).prop_map(|(a, b, c)| OwnedRequest::Write(a, b, c)),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| OwnedRequest::Remove(a, b)),
        (any::<u64>(), proptest::collection::vec(any::<u64>(), 0..10))
            .prop_map(|(a, b)| OwnedRequest::ReadBatch(a, b)),
        (
            any::<u64>(),
            proptest::collection::vec((any::<u64>(), bytes()), 0..10)
        )
            .prop_map(|(a, b)| OwnedRequest::WriteBatch(a, b)),
        ("[a-z_0-9]{0,12}", bytes()).prop_map(|(a, b)| OwnedRequest::Compute(a, b)),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>())
            .prop_map(|(a, b, c, d)| OwnedRequest::CreateZeroed(a, b, c, d)),
    ]
}

fn response() -> impl Strategy<Value = (Opcode, Response)> {
    let obj = || proptest::option::of(bytes());
    prop_oneof![
        Just((Opcode::Ping, Response::Done)),
        Just((Opcode::WriteBatch, Response::Done)),
        Just((Opcode::CreateZeroed, Response::Done)),
        proptest::array::uniform6(any::<u64>()).prop_map(|a| (
            Opcode::Stats,
            Response::Stats(ServerStats {
                capacity_bytes: a[0],
                used_bytes: a[1],
                data_structures: a[2],
                objects: a[3],
                connections: a[4],
                requests: a[5],
            })
        )),
        obj().prop_map(|o| (Opcode::Read, Response::Object(o))),
        any::<bool>().prop_map(|b| (Opcode::Remove, Response::Removed(b))),
        proptest::collection::vec(obj(), 0..8)
            .prop_map(|l| (Opcode::ReadBatch, Response::Objects(l))),
        bytes().prop_map(|b| (Opcode::Compute, Response::Computed(b))),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(req in request()) {
        let r = req.borrow();
        let mut body = Vec::new();
        r.encode(&mut body);
        prop_assert_eq!(Request::decode(r.opcode(), &body), Ok(r.clone()));
        // Every strict prefix is a clean protocol error, and so is one trailing byte.
        for cut in 0..body.len() {
            let e = Request::decode(r.opcode(), &body[..cut]).unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::Protocol);
        }
        body.push(0);
        prop_assert_eq!(Request::decode(r.opcode(), &body).map_err(|e| e.kind()), Err(ErrorKind::Protocol));
    }

    #[test]
    fn responses_round_trip((op, resp) in response()) {
        let mut body = Vec::new();
        resp.encode(&mut body);
        prop_assert_eq!(Response::decode(op, &body), Ok(resp));
    }

    #[test]
    fn object_spans_locate_what_decode_copies((op, resp) in response()) {
        let mut body = Vec::new();
        resp.encode(&mut body);
        let owned: Option<Vec<Option<Vec<u8>>>> = match resp {
            Response::Object(o) => Some(vec![o]),
            Response::Objects(list) => Some(list),
            _ => None,
        };
        match owned {
            Some(list) => {
                let spans = object_spans(op, &body).unwrap();
                let located: Vec<Option<Vec<u8>>> =
                    spans.into_iter().map(|s| s.map(|r| body[r].to_vec())).collect();
                prop_assert_eq!(located, list);
                for cut in 0..body.len() {
                    prop_assert_eq!(
                        object_spans(op, &body[..cut]).map_err(|e| e.kind()),
                        Err(ErrorKind::Protocol)
                    );
                }
                body.push(0);
                prop_assert_eq!(object_spans(op, &body).map_err(|e| e.kind()), Err(ErrorKind::Protocol));
            }
            None => prop_assert_eq!(
                object_spans(op, &body).map_err(|e| e.kind()),
                Err(ErrorKind::Protocol),
                "only read and read-batch responses carry objects"
            ),
        }
    }

    #[test]
    fn garbage_bodies_never_panic(op in 2u8..=11, body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let op = Opcode::from_u8(op).unwrap();
        let _ = Request::decode(op, &body);
        let _ = Response::decode(op, &body);
        let _ = object_spans(op, &body);
        let _ = ErrorReply::decode(&body);
    }
}

#[test]
fn forged_batch_count_is_rejected_without_reserving() {
    let mut body = Vec::new();
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    let e = Request::decode(Opcode::ReadBatch, &body).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.context().contains(&u32::MAX.to_string()), "{e}");
}

#[test]
fn error_replies_carry_kind_and_message() {
    let mut body = Vec::new();
    ErrorReply {
        kind: ErrorKind::OutOfFarMemory,
        message: "full".into(),
    }
    .encode(&mut body);
    let e = ErrorReply::decode(&body).unwrap().into_error("127.0.0.1:9");
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
    assert_eq!(e.context(), "server 127.0.0.1:9: full");
    // A kind this build does not know becomes ServerError, keeping the code in the message.
    let mut body = Vec::new();
    body.extend_from_slice(&999u32.to_le_bytes());
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(b"hi");
    let r = ErrorReply::decode(&body).unwrap();
    assert_eq!(r.kind, ErrorKind::ServerError);
    assert!(r.message.contains("999"));
}

#[test]
fn handshake_bodies_reject_truncation_and_bad_utf8_names() {
    let mut body = Vec::new();
    Hello {
        version: 1,
        max_body: 64,
        token: b"tok",
    }
    .encode(&mut body);
    assert_eq!(
        Hello::decode(&body[..body.len() - 1]).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    assert_eq!(
        HelloReply::decode(&[1, 0]).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    let mut body = Vec::new();
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        Request::decode(Opcode::Compute, &body).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}
