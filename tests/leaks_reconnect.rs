//! Resource accounting: thread and file-descriptor counts return to their
//! baseline after failed connects, half-open servers, and 100 reconnect
//! cycles. One test in this binary, so nothing else runs beside it.

#![cfg(target_os = "linux")]

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::TestServer;
use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::{Client, ClientConfig, EventKind, ReconnectPolicy};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn snapshot() -> (usize, usize) {
    (count("/proc/self/task"), count("/proc/self/fd"))
}

#[test]
fn no_leaks_on_failed_connects_half_open_servers_and_reconnect_cycles() {
    let base = snapshot();

    // 1. Refused ports.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = format!("127.0.0.1:{port}");
    for _ in 0..1000 {
        assert!(Client::connect(&refused, ClientConfig::default()).is_err());
    }
    assert_eq!(snapshot(), base, "after 1000 refused connects");

    // 2. A server that accepts and closes at once: connect succeeds, the link
    //    then breaks; the client closes itself.
    let closer = TestServer::start(|| |_m, _d, _c: &mut common::Conn| common::Next::Close);
    let with_server = snapshot();
    for _ in 0..50 {
        let c = Client::connect(&closer.addr(), ClientConfig::default()).unwrap();
        let _ = c.request(Message::new(CommandCode(0x7777)), Duration::from_secs(5));
        c.close();
    }
    // 3. A server that accepts and never answers.
    let mute = TestServer::start(|| |_m, _d, _c: &mut common::Conn| common::Next::Continue);
    for _ in 0..50 {
        let c = Client::connect(&mute.addr(), ClientConfig::default()).unwrap();
        let e = c
            .request(Message::new(CommandCode(0x7777)), Duration::from_millis(5))
            .unwrap_err();
        assert!(e.is_timeout());
        drop(c);
    }
    drop(mute);
    drop(closer);
    // Server-side worker threads may still be winding down; wait for them.
    wait_for_baseline(base, "after half-open servers");
    let _ = with_server;

    // 4. 100 disconnect/reconnect cycles.
    let server = TestServer::echo();
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(1))
        .jitter(0.0);
    let c = Client::connect(&server.addr(), ClientConfig::default().reconnect(policy)).unwrap();
    let events = c.subscribe();
    for i in 0..100 {
        server.drop_connections();
        loop {
            let e = events.recv_timeout(Duration::from_secs(20)).unwrap();
            if let EventKind::Reconnected { .. } = e.kind {
                break;
            }
        }
        let r = c
            .request(
                Message::new(CommandCode(0x7777)).with_int32_data2(i),
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("cycle {i}: {e}; stats {:?}", c.stats()));
        assert_eq!(r.message.int32_data2, i);
    }
    assert_eq!(c.stats().reconnects, 100);
    drop(events);
    c.close();
    drop(c);
    drop(server);
    wait_for_baseline(base, "after 100 reconnect cycles");
}

/// Threads that have been joined are gone at once; server threads in the
/// test harness exit asynchronously, so allow them a bounded time.
fn wait_for_baseline(base: (usize, usize), what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = snapshot();
        if now == base {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("{what}: threads/fds {now:?}, baseline {base:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
