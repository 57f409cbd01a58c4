//! The pipelined client against a scripted in-test server: responses matched by id even when
//! the server answers out of order, many threads on one connection, auth failure, a server
//! that dies with requests in flight, timeouts and oversized requests.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use farmem_net::frame::{push_frame, read_frame, Frame, FLAG_ERROR, FLAG_RESPONSE};
use farmem_net::handshake::{Hello, HelloReply};
use farmem_net::{
    Client, ClientConfig, ErrorKind, ErrorReply, Opcode, Request, Response, PROTOCOL_VERSION,
};

const TOKEN: &[u8] = b"net-test-token";

/// What the scripted server does after the handshake.
#[derive(Clone, Copy)]
enum Script {
    /// Answers reads with bytes encoding (ds, object), replying to each burst in reverse order.
    ReverseEcho,
    /// Reads `n` requests, answers none, closes.
    DieAfter(usize),
    /// Reads requests and never answers (until the client leaves).
    Silent,
    /// Answers the first request with a connection-level Protocol error (request id 0).
    ConnectionError,
    /// Holds every request until `n` have arrived on the connection, then answers them all
    /// (like `ReverseEcho`) and every later one at once.
    AnswerAfter(usize),
}

fn echo_payload(ds: u64, object: u64) -> Vec<u8> {
    let mut v = ds.to_le_bytes().to_vec();
    v.extend_from_slice(&object.to_le_bytes());
    v
}

fn reply(out: &mut Vec<u8>, req: &Frame, flags: u8, body: &[u8]) {
    push_frame(
        out,
        req.header.opcode,
        FLAG_RESPONSE | flags,
        req.header.request_id,
        body,
    );
}

fn serve(stream: TcpStream, script: Script) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let Ok(hello) = read_frame(&mut r, 1 << 20) else {
        return;
    };
    let h = Hello::decode(&hello.body).unwrap();
    let mut out = Vec::new();
    if h.token != TOKEN {
        let mut body = Vec::new();
        ErrorReply {
            kind: ErrorKind::Auth,
            message: "wrong token".into(),
        }
        .encode(&mut body);
        reply(&mut out, &hello, FLAG_ERROR, &body);
        let _ = w.write_all(&out);
        return;
    }
    let mut body = Vec::new();
    HelloReply {
        version: PROTOCOL_VERSION,
        max_body: 1 << 16,
    }
    .encode(&mut body);
    reply(&mut out, &hello, 0, &body);
    w.write_all(&out).unwrap();
    let mut seen = 0usize;
    let mut held = Vec::new();
    loop {
        let mut burst = std::mem::take(&mut held);
        loop {
            match read_frame(&mut r, 1 << 20) {
                Ok(f) => burst.push(f),
                Err(_) => return,
            }
            seen += 1;
            if r.buffer().is_empty() {
                break;
            }
        }
        let mut out = Vec::new();
        match script {
            Script::Silent => continue,
            Script::DieAfter(n) => {
                if seen >= n {
                    return;
                }
                continue;
            }
            Script::ConnectionError => {
                let mut body = Vec::new();
                ErrorReply {
                    kind: ErrorKind::Protocol,
                    message: "bad stream".into(),
                }
                .encode(&mut body);
                push_frame(&mut out, 0, FLAG_RESPONSE | FLAG_ERROR, 0, &body);
                let _ = w.write_all(&out);
                return;
            }
            Script::AnswerAfter(n) if seen < n => {
                held = burst;
                continue;
            }
            Script::AnswerAfter(_) | Script::ReverseEcho => {}
        }
        for f in burst.iter().rev() {
            let op = Opcode::from_u8(f.header.opcode).unwrap();
            let mut body = Vec::new();
            match Request::decode(op, &f.body).unwrap() {
                Request::Read { ds, object } => {
                    Response::Object(Some(echo_payload(ds, object))).encode(&mut body)
                }
                _ => Response::Done.encode(&mut body),
            }
            reply(&mut out, f, 0, &body);
        }
        if w.write_all(&out).is_err() {
            return;
        }
    }
}

fn scripted_server(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve(s, script));
        }
    });
    addr
}

/// Runs `f` on a thread and fails the test if it does not finish in 30 s (no hang, ever).
fn with_watchdog(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => h.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: the client hung"),
    }
}

#[test]
fn many_threads_share_one_connection_and_get_their_own_responses() {
    with_watchdog(|| {
        let addr = scripted_server(Script::ReverseEcho);
        let client =
            Arc::new(Client::connect(addr, &ClientConfig::new(TOKEN).with_connections(1)).unwrap());
        assert_eq!(
            client.connections()[0].max_frame_body(),
            1 << 16,
            "server bound applies"
        );
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let c = Arc::clone(&client);
                std::thread::spawn(move || {
                    for i in 0..300u64 {
                        let got = c.read(t, i).unwrap();
                        assert_eq!(got, Some(echo_payload(t, i)), "thread {t} request {i}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(client.connections()[0].in_flight(), 0);
    });
}

#[test]
fn one_thread_pipelines_and_waits_in_any_order() {
    with_watchdog(|| {
        let addr = scripted_server(Script::ReverseEcho);
        let client = Client::connect(addr, &ClientConfig::new(TOKEN).with_connections(3)).unwrap();
        let pending: Vec<_> = (0..64u64)
            .map(|i| {
                (
                    i,
                    client.submit(&Request::Read { ds: 5, object: i }).unwrap(),
                )
            })
            .collect();
        for (i, p) in pending.into_iter().rev() {
            assert_eq!(
                p.wait().unwrap(),
                Response::Object(Some(echo_payload(5, i)))
            );
        }
        client.ping().unwrap();
    });
}

/// AIFM §4.2: a green thread waiting for its response parks only itself. With one worker, the
/// first green thread to wait leads the socket reads; the server answers only once the second
/// green thread's request is in too, which that thread can only send if the leader's wait left
/// the worker free. A leader that blocked its worker in `recv` would time out here.
#[test]
fn a_green_thread_leading_the_reads_leaves_its_worker_to_other_green_threads() {
    with_watchdog(|| {
        let addr = scripted_server(Script::AnswerAfter(2));
        let cfg = ClientConfig::new(TOKEN)
            .with_connections(1)
            .with_request_timeout(Duration::from_secs(5));
        let client = Arc::new(Client::connect(addr, &cfg).unwrap());
        let rt = farmem_sched::Runtime::builder().workers(1).build().unwrap();
        let got = rt.block_on(move || {
            let tasks: Vec<_> = (0..2u64)
                .map(|i| {
                    let c = Arc::clone(&client);
                    farmem_sched::spawn(move || c.read(7, i))
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>()
        });
        for (i, r) in got.into_iter().enumerate() {
            assert_eq!(r.unwrap().as_deref(), Some(&echo_payload(7, i as u64)[..]));
        }
    });
}

#[test]
fn wrong_token_is_an_auth_error() {
    let addr = scripted_server(Script::ReverseEcho);
    let err = Client::connect(addr, &ClientConfig::new(b"not-the-token".to_vec()))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

#[test]
fn connection_refused_is_reported_with_the_address() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = Client::connect(addr, &ClientConfig::new(TOKEN))
        .err()
        .unwrap();
    assert!(err.context().contains(&addr.to_string()), "{err}");
}

#[test]
fn server_death_fails_pending_and_later_requests_with_disconnected() {
    with_watchdog(|| {
        let addr = scripted_server(Script::DieAfter(40));
        let client =
            Arc::new(Client::connect(addr, &ClientConfig::new(TOKEN).with_connections(1)).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = Arc::clone(&client);
                std::thread::spawn(move || {
                    let pending: Vec<_> = (0..10)
                        .map(|i| c.submit(&Request::Read { ds: t, object: i }))
                        .collect();
                    for p in pending {
                        let kind = match p {
                            Ok(p) => p.wait().unwrap_err().kind(),
                            Err(e) => e.kind(),
                        };
                        assert_eq!(kind, ErrorKind::Disconnected);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let e = client.read(1, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(client.connections()[0].is_dead());
    });
}

#[test]
fn silent_server_times_out_and_late_state_is_clean() {
    with_watchdog(|| {
        let addr = scripted_server(Script::Silent);
        let cfg = ClientConfig::new(TOKEN)
            .with_connections(1)
            .with_request_timeout(Duration::from_millis(200));
        let client = Client::connect(addr, &cfg).unwrap();
        let e = client.ping().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert_eq!(
            client.connections()[0].in_flight(),
            0,
            "timed-out slot is forgotten"
        );
    });
}

#[test]
fn every_waiter_times_out_on_a_silent_server_leader_and_followers_alike() {
    with_watchdog(|| {
        let addr = scripted_server(Script::Silent);
        let cfg = ClientConfig::new(TOKEN)
            .with_connections(1)
            .with_request_timeout(Duration::from_millis(150));
        let client = Arc::new(Client::connect(addr, &cfg).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = Arc::clone(&client);
                std::thread::spawn(move || c.read(t, t).unwrap_err().kind())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), ErrorKind::Timeout);
        }
        assert_eq!(client.connections()[0].in_flight(), 0);
    });
}

#[test]
fn connection_level_error_fails_everything_with_its_kind() {
    with_watchdog(|| {
        let addr = scripted_server(Script::ConnectionError);
        let client = Client::connect(addr, &ClientConfig::new(TOKEN).with_connections(1)).unwrap();
        let e = client.ping().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        assert!(e.context().contains("bad stream"), "{e}");
    });
}

#[test]
fn oversized_request_is_refused_locally_and_the_connection_survives() {
    with_watchdog(|| {
        let addr = scripted_server(Script::ReverseEcho);
        let client = Client::connect(addr, &ClientConfig::new(TOKEN).with_connections(1)).unwrap();
        let big = vec![0u8; (1 << 16) + 1];
        let e = client.write(1, 1, &big).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(client.connections()[0].in_flight(), 0);
        assert_eq!(client.read(2, 3).unwrap(), Some(echo_payload(2, 3)));
    });
}

#[test]
fn zero_connections_is_invalid() {
    let err = Client::connect("127.0.0.1:1", &ClientConfig::new(TOKEN).with_connections(0))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}
