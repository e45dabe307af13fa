//! Failed connects: no socket or thread
//! leaks on failed connects and failed "handshakes". Extends tests/leaks_reconnect.rs
//! (1000 refused `Client::connect`, 50 accept-and-close, 50 never-answer, 100
//! reconnect cycles) with what it does not cover: 1000 `open()` retries on
//! one client, 1000 accept-and-close and 1000 never-answer servers (close()
//! and drop), connect timeouts against a full backlog, supervised reconnects
//! that give up, and failing live connects. The only test in this binary, so
//! the process-wide counts are not disturbed by other tests.

#![cfg(target_os = "linux")]

mod common;
use common::ECHO;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{proc_counts, wait_for_counts};
use flamingo_client::codec::Message;
use flamingo_client::{Client, ClientConfig, Error, ReconnectPolicy};

const N: usize = 1000;

/// A listener thread that accepts connections and either drops each at
/// once (`hold` false) or keeps the newest one open without ever reading
/// or answering (`hold` true).
struct Server {
    addr: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<usize>>,
}

impl Server {
    fn start(hold: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut held = None;
            let mut accepted = 0;
            for conn in listener.incoming() {
                if s.load(SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                accepted += 1;
                if hold {
                    held = Some(conn); // the previous one is closed here
                }
            }
            drop(held);
            accepted
        });
        Server {
            addr,
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, SeqCst);
        let _ = TcpStream::connect(&self.addr);
        self.handle.take().unwrap().join().unwrap()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 1000 connect attempts each against a refused port, a server that
/// accepts and closes at once, and one that accepts and never answers, plus
/// connect timeouts, supervised reconnects that give up and failing live
/// connects: thread and file-descriptor counts return to the baseline.
#[test]
fn failed_connects_and_handshakes_leak_nothing() {
    let base = proc_counts();

    // 1. One client retrying open() against a refused port, as an
    //    application waiting for the instrument to boot does; then the
    //    instrument appears on that port and the next open() connects.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let c = Client::new(&addr, ClientConfig::default());
    for i in 0..N {
        match c.open() {
            Err(Error::Connect { .. }) => {}
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    wait_for_counts(base, "after 1000 refused open() calls");
    let listener = TcpListener::bind(&addr).unwrap();
    c.open().unwrap();
    let (_server_side, _) = listener.accept().unwrap();
    assert!(c.is_connected());
    c.close();
    drop((c, listener, _server_side));
    wait_for_counts(base, "after the instrument appeared");

    // 2. A server that accepts and closes at once: the connect succeeds, the
    //    link dies; every request fails typed. Every 10th client has a
    //    reconnect policy: it is closed after its first reconnect (a server
    //    that accepts and drops is reconnected to forever, see
    //    RELIABILITY.md).
    let closer = Server::start(false);
    let mut disconnected = 0;
    for i in 0..N {
        let mut cfg = ClientConfig::default();
        if i % 10 == 0 {
            cfg = cfg.reconnect(
                ReconnectPolicy::default()
                    .initial_delay(Duration::from_millis(1))
                    .jitter(0.0)
                    .max_attempts(Some(2)),
            );
        }
        match Client::connect(&closer.addr, cfg) {
            Ok(c) => {
                let events = c.subscribe();
                match c.request(Message::new(ECHO), Duration::from_secs(5)) {
                    Err(Error::Disconnected { .. }) => disconnected += 1,
                    other => panic!("attempt {i}: {other:?}"),
                }
                if i % 10 == 0 {
                    // Let the supervisor reconnect (and lose the link) once.
                    loop {
                        let e = events.recv_timeout(Duration::from_secs(10)).unwrap();
                        if let flamingo_client::EventKind::Reconnected { .. } = e.kind {
                            break;
                        }
                    }
                }
                c.close();
            }
            Err(Error::Connect { .. }) => {}
            Err(e) => panic!("attempt {i}: {e:?}"),
        }
    }
    let accepted = closer.stop();
    assert!(accepted >= N + N / 10, "{accepted}");
    wait_for_counts(base, "after 1000 accept-and-close connections");

    // 3. A server that accepts and never answers: requests time out; half
    //    the clients are closed, half just dropped.
    let mute = Server::start(true);
    for i in 0..N {
        let c = Client::connect(&mute.addr, ClientConfig::default()).unwrap();
        let e = c
            .request(Message::new(ECHO), Duration::from_millis(1))
            .unwrap_err();
        assert!(e.is_timeout(), "attempt {i}: {e}");
        if i % 2 == 0 {
            c.close();
        }
        drop(c);
    }
    // 4. Live connects that fail: the mute server's port + 1 is closed.
    let c = Client::connect(&mute.addr, ClientConfig::default()).unwrap();
    for i in 0..100 {
        match c.live(Duration::from_millis(5)) {
            Err(Error::Connect { .. }) | Err(Error::Timeout { .. }) => {}
            other => panic!("live attempt {i}: {other:?}"),
        }
    }
    drop(c);
    mute.stop();
    wait_for_counts(
        base,
        "after 1000 never-answering connections and 100 live failures",
    );

    // 5. Connect timeouts: a listener whose backlog is full drops new SYNs.
    let full = {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        s.listen(0).unwrap();
        let l: TcpListener = s.into();
        l
    };
    let full_addr = full.local_addr().unwrap();
    let queued: Vec<TcpStream> = (0..2)
        .filter_map(|_| TcpStream::connect_timeout(&full_addr, Duration::from_millis(100)).ok())
        .collect();
    let cfg = ClientConfig::default().connect_timeout(Duration::from_millis(10));
    let mut timed_out = 0;
    for i in 0..100 {
        match Client::connect(&full_addr.to_string(), cfg.clone()) {
            Err(Error::Timeout { .. }) => timed_out += 1,
            Err(Error::Connect { .. }) => {}
            Ok(_) => {} // the kernel found room after all: closed by drop
            Err(e) => panic!("attempt {i}: {e:?}"),
        }
    }
    drop((queued, full));
    wait_for_counts(base, "after 100 connect timeouts");
    eprintln!(
        "{N} refused open() calls, {N} accept-and-close ({disconnected} requests Disconnected, \
         {accepted} accepts including reconnects), {N} never-answer, 100 live failures, \
         {timed_out}/100 connect timeouts: threads and fds back to {base:?}"
    );
    assert!(timed_out > 0, "the full backlog produced connect timeouts");
}
