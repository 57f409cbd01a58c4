//! The fd reactor and the nonblocking TCP wrapper over a real loopback connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use farmem_sched::reactor::{wait_readable, wait_writable};
use farmem_sched::tcp::{TcpListener, TcpStream};
use farmem_sched::{ErrorKind, Runtime};

fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within 60 s (hang)"),
    }
}

#[test]
fn echo_over_loopback_with_one_worker() {
    // One worker: the server and the client must interleave on it, which only works if a
    // socket wait parks the green thread instead of the worker.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let got = bounded("loopback echo", move || {
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = farmem_sched::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let mut total = 0;
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        return total;
                    }
                    total += n;
                    s.write_all(&buf[..n]).unwrap();
                }
            });
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            // Larger than the socket buffers, so both sides hit WouldBlock and park.
            let msg: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
            let mut writer = c.try_clone().unwrap();
            let m2 = msg.clone();
            let w = farmem_sched::spawn(move || {
                writer.write_all(&m2).unwrap();
                writer.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut back = vec![0u8; msg.len()];
            c.read_exact(&mut back).unwrap();
            w.join().unwrap();
            assert_eq!(server.join().unwrap(), msg.len());
            back == msg
        })
    });
    assert!(got, "echoed bytes differ");
}

#[test]
fn many_connections_on_two_workers() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let served = bounded("many connections", move || {
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let served = Arc::new(AtomicUsize::new(0));
            let s2 = served.clone();
            let n = 50;
            let acceptor = farmem_sched::spawn(move || {
                let mut conns = Vec::new();
                for _ in 0..n {
                    let (mut s, _) = listener.accept().unwrap();
                    let s2 = s2.clone();
                    conns.push(farmem_sched::spawn(move || {
                        let mut b = [0u8; 8];
                        s.read_exact(&mut b).unwrap();
                        let v = u64::from_le_bytes(b) + 1;
                        s.write_all(&v.to_le_bytes()).unwrap();
                        s2.fetch_add(1, Ordering::AcqRel);
                    }));
                }
                for c in conns {
                    c.join().unwrap();
                }
            });
            let clients: Vec<_> = (0..n as u64)
                .map(|i| {
                    farmem_sched::spawn(move || {
                        let mut c = TcpStream::connect(addr).unwrap();
                        c.write_all(&i.to_le_bytes()).unwrap();
                        let mut b = [0u8; 8];
                        c.read_exact(&mut b).unwrap();
                        assert_eq!(u64::from_le_bytes(b), i + 1);
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            acceptor.join().unwrap();
            served.load(Ordering::Acquire)
        })
    });
    assert_eq!(served, 50);
}

#[test]
fn waits_time_out_with_a_timeout_error() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let e = listener
            .accept_timeout(Some(Duration::from_millis(10)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        let mut c = TcpStream::connect(addr).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let e = wait_readable(&c, Some(Duration::from_millis(10))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.context().contains("readable"), "{e}");
        wait_writable(&c, Some(Duration::from_secs(10))).unwrap();
        c.set_timeout(Some(Duration::from_millis(10)));
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap_err().kind(), ErrorKind::Timeout);
        // After the timeouts the reactor still works for the same fd.
        let mut s2 = _server_side;
        s2.write_all(b"x").unwrap();
        c.set_timeout(None);
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    });
}

#[test]
fn peer_close_is_disconnected() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let h = farmem_sched::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"abc").unwrap();
        });
        let mut c = TcpStream::connect(addr).unwrap();
        h.join().unwrap();
        let mut b = [0u8; 8];
        let e = c.read_exact(&mut b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(e.context().contains("after 3 of 8 bytes"), "{e}");
    });
}

#[test]
fn connect_to_a_closed_port_fails_cleanly() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = rt.block_on(move || TcpStream::connect(("127.0.0.1", port)).unwrap_err());
    assert!(e.context().contains("connecting to 127.0.0.1"), "{e}");
}

#[test]
fn the_wrapper_blocks_normally_on_os_threads() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    c.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    server.join().unwrap();
    let e = wait_readable(&c, Some(Duration::from_millis(5)));
    // The server closed its side: readable (EOF) rather than a timeout.
    assert!(e.is_ok(), "{e:?}");
}

#[test]
fn os_thread_waits_time_out_too() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_s, _) = listener.accept().unwrap();
    let e = wait_readable(&c, Some(Duration::from_millis(5))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let e = listener
        .accept_timeout(Some(Duration::from_millis(5)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}
