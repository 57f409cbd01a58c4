//! The operations of the protocol, one byte each in the frame header.
//!
//! Numbers are stable wire values: a new operation appends a new number, an old one is never
//! reused. A response carries the opcode of its request.

use farmem_error::{Error, ErrorKind, Result};

/// One protocol operation.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// First frame of every connection: protocol version and cluster token.
    Handshake = 1,
    /// Liveness check; empty body both ways.
    Ping = 2,
    /// Server counters (capacity, bytes used, objects, connections, requests).
    Stats = 3,
    /// Create a data structure (id, kind).
    CreateDs = 4,
    /// Destroy a data structure and free all its objects.
    DestroyDs = 5,
    /// Read one object: bytes or not-found.
    Read = 6,
    /// Write (insert or replace) one object.
    Write = 7,
    /// Remove one object; says whether it existed.
    Remove = 8,
    /// Read many objects of one data structure in one frame (scans).
    ReadBatch = 9,
    /// Write many objects of one data structure in one frame.
    WriteBatch = 10,
    /// Call a named server-side function (the remote agent) with argument bytes.
    Compute = 11,
    /// Create a run of objects of one data structure, each that many zero bytes, without
    /// sending the zeros (a container growing takes its far capacity).
    CreateZeroed = 12,
}

impl Opcode {
    /// Every opcode, in wire-number order.
    pub const ALL: [Opcode; 12] = [
        Opcode::Handshake,
        Opcode::Ping,
        Opcode::Stats,
        Opcode::CreateDs,
        Opcode::DestroyDs,
        Opcode::Read,
        Opcode::Write,
        Opcode::Remove,
        Opcode::ReadBatch,
        Opcode::WriteBatch,
        Opcode::Compute,
        Opcode::CreateZeroed,
    ];

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The opcode of wire byte `byte`, or an [`ErrorKind::Protocol`] error naming it.
    pub fn from_u8(byte: u8) -> Result<Opcode> {
        Opcode::ALL
            .iter()
            .copied()
            .find(|op| op.as_u8() == byte)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "unknown opcode {byte} (this build knows 1..={}): the peer runs a newer \
                         or different protocol",
                        Opcode::ALL.len()
                    ),
                )
            })
    }

    /// A short name for messages (`"read"`).
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Handshake => "handshake",
            Opcode::Ping => "ping",
            Opcode::Stats => "stats",
            Opcode::CreateDs => "create-ds",
            Opcode::DestroyDs => "destroy-ds",
            Opcode::Read => "read",
            Opcode::Write => "write",
            Opcode::Remove => "remove",
            Opcode::ReadBatch => "read-batch",
            Opcode::WriteBatch => "write-batch",
            Opcode::Compute => "compute",
            Opcode::CreateZeroed => "create-zeroed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_and_unknown_is_protocol_error() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op.as_u8()), Ok(op));
        }
        for bad in [0u8, 13, 200, 255] {
            let e = Opcode::from_u8(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol);
            assert!(e.context().contains(&bad.to_string()), "{e}");
        }
    }
}
