//! Frame header encode/decode: round trips of every valid header and rejection of bad ones.

use farmem_net::frame::{
    push_frame, read_frame, FrameHeader, FLAG_ERROR, FLAG_RESPONSE, HEADER_LEN, MAGIC,
};
use farmem_net::{ErrorKind, Opcode};
use proptest::prelude::*;

fn valid_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0u8),
        Just(FLAG_RESPONSE),
        Just(FLAG_RESPONSE | FLAG_ERROR)
    ]
}

proptest! {
    #[test]
    fn header_round_trips(opcode in any::<u8>(), flags in valid_flags(), id in any::<u64>(),
                          len in 0u32..=1 << 20) {
        let h = FrameHeader { opcode, flags, request_id: id, body_len: len };
        let raw = h.encode();
        prop_assert_eq!(FrameHeader::decode(&raw, 1 << 20), Ok(h));
    }

    #[test]
    fn whole_frames_round_trip_through_a_stream(
        frames in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)
    ) {
        let mut wire = Vec::new();
        for (id, body) in &frames {
            push_frame(&mut wire, Opcode::Write.as_u8(), 0, *id, body);
        }
        let mut cursor = &wire[..];
        for (id, body) in &frames {
            let f = read_frame(&mut cursor, 300).unwrap();
            prop_assert_eq!(f.header.request_id, *id);
            prop_assert_eq!(&f.body, body);
        }
        prop_assert!(cursor.is_empty());
    }

    #[test]
    fn random_bytes_never_panic_and_bad_magic_is_rejected(raw in proptest::array::uniform20(any::<u8>())) {
        let res = FrameHeader::decode(&raw, 1024);
        if u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) != MAGIC {
            prop_assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Protocol));
        }
    }

    #[test]
    fn lengths_over_the_limit_are_rejected(limit in 0u32..1 << 20, over in 1u32..1000) {
        let h = FrameHeader { opcode: 6, flags: 0, request_id: 3, body_len: limit + over };
        let e = FrameHeader::decode(&h.encode(), limit).unwrap_err();
        prop_assert_eq!(e.kind(), ErrorKind::Protocol);
        let needle = (limit + over).to_string();
        prop_assert!(e.context().contains(&needle), "{}", e);
    }
}

fn header() -> [u8; HEADER_LEN] {
    FrameHeader {
        opcode: 2,
        flags: 0,
        request_id: 9,
        body_len: 0,
    }
    .encode()
}

#[test]
fn bad_version_names_the_version() {
    let mut raw = header();
    raw[4] = 7;
    let e = FrameHeader::decode(&raw, 16).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.context().contains("version 7"), "{e}");
}

#[test]
fn unknown_flags_and_error_without_response_are_rejected() {
    let mut raw = header();
    raw[7] = 0x80;
    let e = FrameHeader::decode(&raw, 16).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.context().contains("0x80"), "{e}");
    raw[7] = FLAG_ERROR;
    assert_eq!(
        FrameHeader::decode(&raw, 16).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn huge_length_is_rejected_before_any_allocation() {
    let raw = FrameHeader {
        opcode: 7,
        flags: 0,
        request_id: 1,
        body_len: u32::MAX,
    }
    .encode();
    let e = read_frame(&mut &raw[..], 64 << 20).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.context().contains(&u32::MAX.to_string()), "{e}");
}

#[test]
fn truncated_streams_are_disconnected() {
    let mut wire = Vec::new();
    push_frame(&mut wire, 7, 0, 1, &[1, 2, 3, 4]);
    for cut in [0, 5, HEADER_LEN, HEADER_LEN + 2] {
        let e = read_frame(&mut &wire[..cut], 16).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "cut at {cut}: {e}");
    }
}
