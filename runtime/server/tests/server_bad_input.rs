//! Hostile and broken clients (wrong token, garbage, huge length, unknown opcode, malformed
//! body, no handshake, half a frame) get an error reply or a closed connection, while a healthy
//! client keeps working throughout and loses nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use farmem_net::frame::{push_frame, read_frame, FrameHeader, FLAG_RESPONSE};
use farmem_net::handshake::Hello;
use farmem_net::{Client, ClientConfig, ErrorKind, ErrorReply, Frame, Opcode, PROTOCOL_VERSION};
use farmem_server::{Server, ServerConfig};

const TOKEN: &[u8] = b"bad-input-token";

fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn hello_frame(token: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    Hello {
        version: PROTOCOL_VERSION,
        max_body: 1 << 20,
        token,
    }
    .encode(&mut body);
    let mut out = Vec::new();
    push_frame(&mut out, Opcode::Handshake.as_u8(), 0, 1, &body);
    out
}

fn authed(addr: SocketAddr) -> TcpStream {
    let mut s = raw(addr);
    s.write_all(&hello_frame(TOKEN)).unwrap();
    let f = read_frame(&mut s, 1 << 20).unwrap();
    assert!(f.header.is_response() && !f.header.is_error());
    s
}

fn expect_error(s: &mut TcpStream, id: u64, kind: ErrorKind) -> Frame {
    let f = read_frame(s, 1 << 20).unwrap();
    assert!(f.header.is_error(), "expected an error reply, got {f:?}");
    assert_eq!(f.header.request_id, id);
    let r = ErrorReply::decode(&f.body).unwrap();
    assert_eq!(r.kind, kind, "{}", r.message);
    f
}

fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected the server to close, got {n} more bytes"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "expected a close, got {e}"
        ),
    }
}

/// A client that writes and reads its own objects in a loop until told to stop, checking
/// every byte; returns how many round trips it did.
fn healthy_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let c = Client::connect(addr, &ClientConfig::new(TOKEN)).unwrap();
        c.create_ds(1, 0).unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) || n < 50 {
            let obj = n % 64;
            let data = (n * 31).to_le_bytes().repeat(8);
            c.write(1, obj, &data).unwrap();
            assert_eq!(
                c.read(1, obj).unwrap(),
                Some(data),
                "healthy round trip {n}"
            );
            n += 1;
            progress.store(n, Ordering::Relaxed);
        }
        // Everything written is still there.
        for obj in 0..64u64.min(n) {
            let last = (0..n).rev().find(|k| k % 64 == obj).unwrap();
            assert_eq!(
                c.read(1, obj).unwrap(),
                Some((last * 31).to_le_bytes().repeat(8))
            );
        }
        n
    })
}

fn wait_for_progress(progress: &AtomicU64, at_least: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::Relaxed) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "the healthy client stalled"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn bad_clients_never_disturb_a_healthy_one() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 64 << 20, TOKEN)).unwrap();
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let healthy = healthy_client(addr, Arc::clone(&stop), Arc::clone(&progress));
    // The healthy client is mid-run before the first bad client arrives...
    wait_for_progress(&progress, 10);

    // Wrong token: Auth reply, then closed.
    let e = Client::connect(addr, &ClientConfig::new(b"wrong".to_vec()))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let mut s = raw(addr);
    s.write_all(&hello_frame(b"wrong")).unwrap();
    expect_error(&mut s, 1, ErrorKind::Auth);
    expect_closed(&mut s);

    // Garbage bytes instead of a handshake: connection-level Protocol error, closed.
    let mut s = raw(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let f = expect_error(&mut s, 0, ErrorKind::Protocol);
    assert!(ErrorReply::decode(&f.body)
        .unwrap()
        .message
        .contains("magic"));
    expect_closed(&mut s);

    // A valid frame that is not a handshake first: Protocol, closed.
    let mut s = raw(addr);
    let mut ping = Vec::new();
    push_frame(&mut ping, Opcode::Ping.as_u8(), 0, 5, &[]);
    s.write_all(&ping).unwrap();
    expect_error(&mut s, 5, ErrorKind::Protocol);
    expect_closed(&mut s);

    // After the handshake: an unknown opcode costs one error reply; the connection goes on.
    let mut s = authed(addr);
    let mut out = Vec::new();
    push_frame(&mut out, 200, 0, 7, b"whatever");
    push_frame(&mut out, Opcode::Read.as_u8(), 0, 8, &[1, 2, 3]); // malformed body
    push_frame(&mut out, Opcode::Read.as_u8(), FLAG_RESPONSE, 9, &[]); // a response, to a server
    push_frame(&mut out, Opcode::Ping.as_u8(), 0, 10, &[]);
    s.write_all(&out).unwrap();
    let f = expect_error(&mut s, 7, ErrorKind::Protocol);
    assert!(ErrorReply::decode(&f.body).unwrap().message.contains("200"));
    expect_error(&mut s, 8, ErrorKind::Protocol);
    expect_error(&mut s, 9, ErrorKind::Protocol);
    let pong = read_frame(&mut s, 1 << 20).unwrap();
    assert_eq!(
        (pong.header.request_id, pong.header.is_error()),
        (10, false)
    );

    // Huge length: rejected from the header alone, connection-level error, closed.
    let huge = FrameHeader {
        opcode: Opcode::Write.as_u8(),
        flags: 0,
        request_id: 11,
        body_len: u32::MAX,
    };
    s.write_all(&huge.encode()).unwrap();
    let f = expect_error(&mut s, 0, ErrorKind::Protocol);
    assert!(ErrorReply::decode(&f.body)
        .unwrap()
        .message
        .contains(&u32::MAX.to_string()));
    expect_closed(&mut s);

    // Garbage after a good handshake, and half a frame then a hang-up.
    let mut s = authed(addr);
    s.write_all(&[0xde; 40]).unwrap();
    expect_error(&mut s, 0, ErrorKind::Protocol);
    expect_closed(&mut s);
    let mut s = authed(addr);
    let mut half = Vec::new();
    push_frame(&mut half, Opcode::Write.as_u8(), 0, 12, &[0u8; 100]);
    s.write_all(&half[..30]).unwrap();
    drop(s);

    // A burst of connections that connect and vanish without a byte.
    for _ in 0..20 {
        drop(raw(addr));
    }

    // ...and still making progress after the last one left.
    wait_for_progress(&progress, progress.load(Ordering::Relaxed) + 10);
    stop.store(true, Ordering::Relaxed);
    let round_trips = healthy.join().unwrap();
    assert!(round_trips >= 50);
    // The server still serves new clients and holds exactly the healthy client's objects.
    let c = Client::connect(addr, &ClientConfig::new(TOKEN)).unwrap();
    assert_eq!(
        c.compute("count", &1u64.to_le_bytes()).unwrap(),
        64u64.min(round_trips).to_le_bytes()
    );
    assert_eq!(c.stats().unwrap().objects, 64u64.min(round_trips));
}

#[test]
fn oversized_response_is_an_error_reply_not_a_broken_stream() {
    let mut cfg = ServerConfig::new("127.0.0.1:0", 64 << 20, TOKEN);
    cfg.max_frame_body = 10_000;
    let server = Server::start(cfg).unwrap();
    let c = Client::connect(server.addr(), &ClientConfig::new(TOKEN)).unwrap();
    c.create_ds(1, 0).unwrap();
    for i in 0..4 {
        c.write(1, i, &[i as u8; 4000]).unwrap();
    }
    let e = c.read_batch(1, &[0, 1, 2, 3]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(c.read_batch(1, &[0, 1]).unwrap().len(), 2);
}

#[test]
fn responses_respect_the_client_frame_bound_too() {
    let server = Server::start(ServerConfig::new("127.0.0.1:0", 64 << 20, TOKEN)).unwrap();
    let mut cfg = ClientConfig::new(TOKEN).with_connections(1);
    cfg.max_frame_body = 5000;
    let c = Client::connect(server.addr(), &cfg).unwrap();
    c.create_ds(1, 0).unwrap();
    c.write(1, 1, &[1; 4000]).unwrap();
    let big = ClientConfig::new(TOKEN);
    Client::connect(server.addr(), &big)
        .unwrap()
        .write(1, 2, &[2; 6000])
        .unwrap();
    // The server answers with an error reply instead of a frame the client would reject.
    let e = c.read(1, 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(c.read(1, 1).unwrap(), Some(vec![1; 4000]));
    assert!(!c.connections()[0].is_dead());
}
