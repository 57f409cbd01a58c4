//! The farmem wire protocol and its pipelined TCP client. **These module docs are the spec.**
//!
//! Every farmem server (memory server / remote agent today; paging and transaction servers
//! later) speaks this one protocol, in the style of AIFM's TCP far-memory backend (OSDI'20 §5):
//! object-granular requests, many in flight per connection.
//!
//! # Connection
//!
//! 1. The client opens a TCP connection (TCP_NODELAY on both ends) and sends a **handshake**
//!    frame (opcode 1, request id 1): protocol version, the largest frame body it accepts, and
//!    the cluster token ([`handshake`]).
//! 2. The server compares the token in constant time. Wrong token: an error reply of kind
//!    [`ErrorKind::Auth`], then the server closes. Wrong version or any other first frame: an
//!    error reply of kind [`ErrorKind::Protocol`], then close. Good: a reply with the server's
//!    version and its frame-body bound. From then on each side sends frames within the smaller
//!    bound; a response that would exceed it is sent as an error reply instead.
//! 3. Then any number of requests, pipelined: the client may send request `n+1` before the
//!    response to `n` arrived. Request ids are chosen by the client, unique per connection,
//!    starting at 2. The server answers each request exactly once with a frame carrying the same
//!    opcode and request id and the `RESPONSE` flag; responses of one connection come back in
//!    request order today, but clients must match by id (a future server may reorder).
//!
//! # Frames
//!
//! A 20-byte header then the body; see [`frame`] for the layout. All integers little-endian.
//! The body bound is configuration (`max_frame_body`, default 64 MiB); a header announcing more
//! is a protocol error and the receiver closes the connection without reading the body.
//!
//! # Operations
//!
//! See [`opcode::Opcode`] for the numbers and [`message`] for every body layout: ping, stats,
//! create/destroy a data structure, read / write / remove one object, batched read / write of
//! many objects of one data structure, create a run of zeroed objects (a growing container
//! takes its capacity without sending zeros; opcode 12, added after the others: a server that
//! predates it answers it with a `Protocol` error reply), and `compute` (call a named server-side function with
//! argument bytes: the remote-agent extension point, AIFM's "computation offloading").
//!
//! # Errors
//!
//! A request that fails gets a response with flags `RESPONSE|ERROR` whose body is
//! `kind u32 | message str` ([`message::ErrorReply`]); `kind` is the stable
//! [`ErrorKind`] code, so a full server surfaces on the client as
//! [`ErrorKind::OutOfFarMemory`], an unknown function as [`ErrorKind::NotFound`]. The connection
//! stays usable after an error reply, except:
//!
//! - a header that cannot be trusted (bad magic, version, flags or length): the server sends an
//!   error reply with request id 0 ("connection-level") and closes, since the stream is out of
//!   sync;
//! - a handshake failure (see above).
//!
//! An unknown opcode or a malformed body only costs that request: its body length is known, so
//! the stream stays in sync and the server answers with a [`ErrorKind::Protocol`] reply.
//!
//! # Client
//!
//! [`Client`] is a small pool of [`Connection`]s; each connection pipelines requests from any
//! number of threads, coalesces queued frames into one write, lets one waiter at a time read
//! the socket for everyone (leader/follower: a lone request costs no thread hop) and parks the
//! others with `farmem_sched::park` (green-thread ready). When the server dies every pending
//! and later request fails with [`ErrorKind::Disconnected`]. See [`connection`] for the design.

pub mod body_pool;
pub mod client;
pub mod compute;
pub mod connection;
pub mod copy;
pub mod frame;
pub mod handshake;
pub mod hash;
pub mod inbound;
pub mod message;
pub mod opcode;
pub mod wire;

pub use client::{Client, ClientConfig};
pub use connection::{Connection, ConnectionConfig, PendingResponse, ResponseFrame};
pub use copy::copy_bytes;
pub use farmem_error::{Error, ErrorKind, Result};
pub use frame::{Frame, FrameHeader, DEFAULT_MAX_BODY, HEADER_LEN, MAGIC, PROTOCOL_VERSION};
pub use message::{DsId, ErrorReply, ObjectId, ObjectSpans, Request, Response, ServerStats};
pub use opcode::Opcode;
