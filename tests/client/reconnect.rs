//! Supervised reconnection: restarts, giving up by the policy, close during
//! backoff, requests during a reconnect.

use crate::common;
use crate::common::{ECHO, LONG};

use std::time::{Duration, Instant};

use common::TestServer;
use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::{Client, ClientConfig, ConnectionState, Event, EventKind, ReconnectPolicy};

fn policy() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .jitter(0.0)
}

fn next_connection_event(sub: &flamingo_client::Subscription) -> Event {
    loop {
        let e = sub.recv_timeout(LONG).expect("a connection event");
        if e.kind.is_connection() {
            return e;
        }
    }
}

#[test]
fn server_restart_on_same_port_resumes() {
    let server = TestServer::echo();
    let addr = server.addr();
    let c = Client::connect(&addr, ClientConfig::default().reconnect(policy())).unwrap();
    let events = c.subscribe();
    assert_eq!(
        c.request(Message::new(ECHO).with_int32_data2(1), LONG)
            .unwrap()
            .message
            .int32_data2,
        1
    );

    drop(server); // closes the connection and stops listening
    let e = next_connection_event(&events);
    assert!(matches!(e.kind, EventKind::Disconnected { .. }), "{e:?}");
    let _server = TestServer::echo_on(&addr);
    loop {
        let e = next_connection_event(&events);
        match e.kind {
            EventKind::Reconnecting { .. } => continue,
            EventKind::Reconnected { attempt } => {
                assert!(attempt >= 1);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(c.state(), ConnectionState::Connected);
    let r = c
        .request(Message::new(ECHO).with_int32_data2(2), LONG)
        .unwrap();
    assert_eq!(r.message.int32_data2, 2);
    let s = c.stats();
    assert_eq!(s.disconnects, 1);
    assert_eq!(s.reconnects, 1);
    assert!(s.reconnect_attempts >= 1);
    assert!(s.last_error.is_some());
}

#[test]
fn server_down_for_good_follows_the_schedule_then_gives_up() {
    let server = TestServer::echo();
    let addr = server.addr();
    let p = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(40))
        .multiplier(2.0)
        .max_delay(Duration::from_millis(160))
        .jitter(0.0)
        .max_attempts(Some(4));
    let c = Client::connect(&addr, ClientConfig::default().reconnect(p.clone())).unwrap();
    let events = c.subscribe();
    drop(server);
    let down = next_connection_event(&events);
    assert!(matches!(down.kind, EventKind::Disconnected { .. }));
    let mut attempts = Vec::new();
    let closed = loop {
        let e = next_connection_event(&events);
        match e.kind {
            EventKind::Reconnecting { attempt } => {
                attempts.push((attempt, e.received_at));
            }
            EventKind::Closed { ref reason } => break reason.clone(),
            ref other => panic!("unexpected {other:?}"),
        }
    };
    assert!(closed.contains("gave up reconnecting"), "{closed}");
    assert!(closed.contains("after 4 attempts"), "{closed}");
    assert_eq!(
        attempts.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // Each attempt waited (at least) its delay after the previous one.
    let mut prev = down.received_at;
    for ((_, at), want) in attempts.iter().zip(p.delays()) {
        let gap = at.duration_since(prev);
        assert!(
            gap + Duration::from_millis(5) >= want,
            "gap {gap:?} < delay {want:?}"
        );
        assert!(
            gap < want + Duration::from_secs(2),
            "gap {gap:?} far above {want:?}"
        );
        prev = *at;
    }
    assert!(matches!(c.state(), ConnectionState::Closed { .. }));
    assert_eq!(c.stats().reconnect_attempts, 4);
    assert!(c
        .request(Message::new(ECHO), LONG)
        .unwrap_err()
        .is_disconnected());
}

#[test]
fn close_during_backoff_returns_at_once() {
    let server = TestServer::echo();
    let p = policy().initial_delay(Duration::from_secs(30));
    let c = Client::connect(&server.addr(), ClientConfig::default().reconnect(p)).unwrap();
    let events = c.subscribe();
    server.drop_connections();
    let e = next_connection_event(&events);
    assert!(matches!(e.kind, EventKind::Disconnected { .. }));
    assert!(matches!(c.state(), ConnectionState::Reconnecting { .. }));
    let t = Instant::now();
    c.close();
    let took = t.elapsed();
    // Far below the 30 s backoff: the sleep was interrupted.
    assert!(took < Duration::from_secs(2), "close took {took:?}");
    assert!(matches!(c.state(), ConnectionState::Closed { .. }));
    assert_eq!(c.stats().teardowns, 1);
}

#[test]
fn request_during_reconnect_waits_for_the_link() {
    let server = TestServer::echo();
    let addr = server.addr();
    let c = Client::connect(&addr, ClientConfig::default().reconnect(policy())).unwrap();
    let events = c.subscribe();
    drop(server);
    next_connection_event(&events); // Disconnected
                                    // The server is down: a short request fails at its deadline, saying why.
    let e = c
        .request(Message::new(ECHO), Duration::from_millis(150))
        .unwrap_err();
    assert_eq!(
        e.timeout_phase(),
        Some(flamingo_client::TimeoutPhase::LinkWait),
        "{e}"
    );
    assert!(e.to_string().contains("connection was down"), "{e}");
    // A patient request issued now succeeds once the server is back.
    let c2 = c.clone();
    let waiter =
        std::thread::spawn(move || c2.request(Message::new(ECHO).with_int32_data2(5), LONG));
    let _server = TestServer::echo_on(&addr);
    let r = waiter.join().unwrap().unwrap();
    assert_eq!(r.message.int32_data2, 5);
}

#[test]
fn repeated_drops_reconnect_every_time() {
    let server = TestServer::echo();
    let c = Client::connect(&server.addr(), ClientConfig::default().reconnect(policy())).unwrap();
    let events = c.subscribe();
    for i in 0..20 {
        server.drop_connections();
        loop {
            if let EventKind::Reconnected { .. } = next_connection_event(&events).kind {
                break;
            }
        }
        let r = c
            .request(Message::new(ECHO).with_int32_data2(i), LONG)
            .unwrap();
        assert_eq!(r.message.int32_data2, i);
    }
    assert_eq!(c.stats().reconnects, 20);
}

#[test]
fn live_stream_is_reopened_on_demand_after_a_reconnect() {
    use flamingo_client::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig::default().image_size(32, 16)).unwrap();
    let port = sim.addr().port();
    let c = Client::connect(
        &sim.addr().to_string(),
        ClientConfig::default().reconnect(policy()),
    )
    .unwrap();
    let events = c.subscribe();
    let live = c.live(LONG).unwrap();
    c.request_checked(Message::new(CommandCode::CAMERA_SNAPSHOT_GET), LONG)
        .unwrap();
    assert_eq!(live.next_frame(LONG).unwrap().width(), 32);

    drop(sim); // the instrument restarts
    let e = next_connection_event(&events);
    assert!(matches!(e.kind, EventKind::Disconnected { .. }), "{e:?}");
    assert!(
        live.is_finished(),
        "the live stream closes with the command link"
    );
    let sim = Simulator::start(SimConfig::default().image_size(32, 16).port(port)).unwrap();
    loop {
        if let EventKind::Reconnected { .. } = next_connection_event(&events).kind {
            break;
        }
    }
    let live = c.live(LONG).unwrap();
    c.request_checked(Message::new(CommandCode::CAMERA_SNAPSHOT_GET), LONG)
        .unwrap();
    let f = live.next_frame(LONG).unwrap();
    assert_eq!((f.width(), f.height()), (32, 16));
    assert!(sim.counters().live_connections >= 1);
}

/// A server that accepts and closes at once: each reconnect "succeeds", but
/// a link that breaks without a message counts as a failed attempt, so the
/// policy's attempt limit still ends it.
#[test]
fn accept_and_close_server_exhausts_the_attempts() {
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut accepted = 0;
        for s in listener.incoming() {
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            accepted += 1;
            drop(s); // accept and close at once
        }
        accepted
    });
    let p = policy().max_attempts(Some(3));
    let c = Client::connect(&addr, ClientConfig::default().reconnect(p)).unwrap();
    let events = c.subscribe();
    let reason = loop {
        match next_connection_event(&events).kind {
            EventKind::Closed { reason } => break reason,
            _ => continue,
        }
    };
    assert!(reason.contains("gave up reconnecting"), "{reason}");
    assert!(reason.contains("after 3 attempts"), "{reason}");
    let s = c.stats();
    assert_eq!(s.reconnect_attempts, 3);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(&addr);
    let accepted = server.join().unwrap();
    assert_eq!(accepted, 4, "the first connect and three attempts");
}
