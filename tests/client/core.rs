//! Client core against a scripted loopback server: correlation, late replies,
//! events, disconnects, teardown and callbacks.

use crate::common;
use crate::common::{ECHO, LONG};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Conn, Next, TestServer};
use crossbeam_channel::bounded;
use flamingo_client::codec::{CommandCode, Flags, Message};
use flamingo_client::{Client, ClientConfig, ConnectionState, Error, EventKind, TimeoutPhase};

fn client(addr: &str) -> Client {
    Client::connect(addr, ClientConfig::default()).unwrap()
}

fn tagged(tag: i32) -> Message {
    Message::new(ECHO)
        .with_int32_data2(tag)
        .with_double_data(f64::from(tag))
}

#[test]
fn same_code_concurrency_zero_misroutes() {
    let server = TestServer::echo();
    let c = client(&server.addr());
    let misroutes = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            let misroutes = misroutes.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let tag = t * 1_000_000 + i;
                    let r = c.request(tagged(tag), LONG).unwrap();
                    if r.message.int32_data2 != tag || r.message.double_data != f64::from(tag) {
                        misroutes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(misroutes.load(Ordering::Relaxed), 0);
    let s = c.stats();
    assert_eq!(s.replies_matched, 8000);
    assert_eq!(s.late_replies_discarded, 0);
    assert_eq!(s.pending_requests, 0);
    assert!(s.latency.count == 8000 && s.latency.p50_us > 0);
}

#[test]
fn late_reply_is_discarded_not_misrouted() {
    // The instrument answers request 1 only after a pause, long after its
    // caller gave up. Request 2 (same code) must not be answered with it:
    // it waits until the late reply arrived and was discarded, then gets
    // its own.
    let server = TestServer::start(|| {
        move |m: Message, _d: Vec<u8>, c: &mut Conn| {
            if m.int32_data2 == 1 {
                std::thread::sleep(Duration::from_millis(300));
            }
            c.send(&m);
            Next::Continue
        }
    });
    let c = client(&server.addr());
    let e = c.request(tagged(1), Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.timeout_phase(), Some(TimeoutPhase::Reply), "{e}");
    assert_eq!(c.stats().tombstones, 1, "the key stays blocked");
    let b = c.request(tagged(2), LONG).unwrap();
    assert_eq!(b.message.int32_data2, 2);
    let s = c.stats();
    assert_eq!(s.late_replies_discarded, 1);
    assert_eq!(s.timeouts, 1);
    assert_eq!(s.tombstones, 0);
}

#[test]
fn pipelined_opt_in_still_discards_a_late_reply() {
    // With pipelining enabled, the instrument holds request 1 until
    // request 2 arrives, then answers both: 1's reply is late and is
    // discarded, 2 gets its own.
    let server = TestServer::start(|| {
        let mut held: Option<Message> = None;
        move |m: Message, _d: Vec<u8>, c: &mut Conn| {
            match held.take() {
                None => held = Some(m),
                Some(a) => {
                    c.send(&a);
                    c.send(&m);
                }
            }
            Next::Continue
        }
    });
    let c = Client::connect(
        &server.addr(),
        ClientConfig::default().max_in_flight_per_key(8),
    )
    .unwrap();
    let e = c
        .request(tagged(1), Duration::from_millis(100))
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let b = c.request(tagged(2), LONG).unwrap();
    assert_eq!(b.message.int32_data2, 2);
    let s = c.stats();
    assert_eq!(s.late_replies_discarded, 1);
    assert_eq!(s.tombstones, 0);
}

#[test]
fn events_interleaved_with_replies_all_delivered() {
    // Around every reply the server sends an unsolicited event before and after.
    let server = TestServer::start(|| {
        |m: Message, _d: Vec<u8>, c: &mut Conn| {
            let tag = m.int32_data2;
            c.send(&Message::new(CommandCode::UI_SET_GAUGE_VALUE).with_int32_data0(2 * tag));
            c.send(&m);
            c.send(&Message::new(CommandCode::UI_SET_GAUGE_VALUE).with_int32_data0(2 * tag + 1));
            Next::Continue
        }
    });
    let cfg = ClientConfig::default().event_queue_depth(4096);
    let c = Client::connect(&server.addr(), cfg).unwrap();
    let events = c.subscribe();
    let slow = c.subscribe_to(&[CommandCode::UI_SET_GAUGE_VALUE]);
    for tag in 0..500 {
        let r = c.request(tagged(tag), LONG).unwrap();
        assert_eq!(r.message.int32_data2, tag);
    }
    // The last "after" event was written before the last reply returned? No:
    // after it. Wait for it explicitly, then count.
    c.wait_for_event(
        |e| matches!(e.kind, EventKind::GaugeValue { current: 999, .. }),
        0,
        LONG,
    )
    .unwrap();
    let got: Vec<i32> = events
        .try_iter()
        .filter_map(|e| match e.kind {
            EventKind::GaugeValue { current, .. } => Some(current),
            _ => None,
        })
        .collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(events.dropped(), 0);
    // The slow subscriber (depth 4096 here too, so nothing dropped) saw the same.
    assert_eq!(slow.try_iter().count(), 1000);
    assert_eq!(c.stats().replies_matched, 500);
}

#[test]
fn slow_subscriber_loses_only_its_oldest_events() {
    let server = TestServer::start(|| {
        |m: Message, _d: Vec<u8>, c: &mut Conn| {
            for i in 0..50 {
                c.send(&Message::new(CommandCode::UI_SET_GAUGE_VALUE).with_int32_data0(i));
            }
            c.send(&m);
            Next::Continue
        }
    });
    let cfg = ClientConfig::default().event_queue_depth(8);
    let c = Client::connect(&server.addr(), cfg).unwrap();
    let slow = c.subscribe();
    for tag in 0..20 {
        assert_eq!(
            c.request(tagged(tag), LONG).unwrap().message.int32_data2,
            tag
        );
    }
    // 1000 events went to a queue of 8 that nobody read.
    assert_eq!(slow.len(), 8);
    assert_eq!(slow.dropped(), 992);
    let kept: Vec<i32> = slow
        .try_iter()
        .map(|e| e.message.unwrap().int32_data0)
        .collect();
    assert_eq!(kept, (42..50).collect::<Vec<_>>(), "the newest survive");
    let s = c.stats();
    assert_eq!(s.events_dropped, 992);
    assert_eq!(s.subscribers.len(), 1);
    assert_eq!(s.subscribers[0].dropped, 992);
}

#[test]
fn server_closes_mid_message_wakes_all_waiters() {
    let (tx, rx) = bounded::<()>(16);
    let server = TestServer::start(move || {
        let tx = tx.clone();
        let mut n = 0;
        move |_m: Message, _d: Vec<u8>, c: &mut Conn| {
            n += 1;
            let _ = tx.send(());
            if n == 4 {
                // Half a message, then close.
                let half = Message::new(ECHO).to_bytes();
                c.send_raw(&half[..60]);
                return Next::Close;
            }
            Next::Continue
        }
    });
    let c = client(&server.addr());
    let closed_at = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                // Distinct codes: all four are on the wire at once.
                let msg = Message::new(CommandCode(0x7100 + i as u32)).with_int32_data2(i);
                let e = c.request(msg, Duration::from_secs(30)).unwrap_err();
                (e, Instant::now())
            })
        })
        .collect();
    for _ in 0..4 {
        rx.recv_timeout(LONG).unwrap();
    }
    *closed_at.lock() = Some(Instant::now());
    for w in waiters {
        let (e, at) = w.join().unwrap();
        assert!(e.is_disconnected(), "{e}");
        let since = at.saturating_duration_since(closed_at.lock().unwrap());
        // Woken by the close, not by the 30 s timeout.
        assert!(since < Duration::from_secs(5), "{since:?}");
    }
    assert!(matches!(c.state(), ConnectionState::Closed { .. }));
    let e = c.request(tagged(9), LONG).unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    assert!(e.to_string().contains("lost"), "{e}");
}

#[test]
fn close_from_many_threads_during_requests() {
    // Every request is answered, in order; 8 threads keep requests in flight
    // while 8 others close.
    let server = TestServer::echo();
    let c = client(&server.addr());
    let events = c.subscribe();
    let start = Arc::new(Barrier::new(16));
    let mut hs = Vec::new();
    for i in 0..8 {
        let (c, start) = (c.clone(), start.clone());
        hs.push(std::thread::spawn(move || {
            start.wait();
            for j in 0..50 {
                match c.request(tagged(i * 100 + j), Duration::from_secs(10)) {
                    Ok(r) => assert_eq!(r.message.int32_data2, i * 100 + j),
                    Err(Error::Disconnected { .. }) => return,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }));
    }
    for _ in 0..8 {
        let (c, start) = (c.clone(), start.clone());
        hs.push(std::thread::spawn(move || {
            start.wait();
            c.close();
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let s = c.stats();
    assert_eq!(s.teardowns, 1);
    assert_eq!(s.pending_requests, 0);
    let closed: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Closed { .. }))
        .collect();
    assert_eq!(closed.len(), 1, "closed notification exactly once");
    c.close();
    assert_eq!(c.stats().teardowns, 1);
}

#[test]
fn callbacks_panicking_sleeping_and_requesting_do_not_stop_replies() {
    let server = TestServer::start(|| {
        |m: Message, _d: Vec<u8>, c: &mut Conn| {
            if m.code == ECHO && m.int32_data0 == 1 {
                c.send(&Message::new(CommandCode::SYSTEM_STATE_IDLE));
            }
            c.send(&m);
            Next::Continue
        }
    });
    let c = client(&server.addr());
    let (done_tx, done_rx) = bounded(4);
    c.on_event(|_| panic!("callback bug")).unwrap();
    c.on_event(|_| std::thread::sleep(Duration::from_millis(300)))
        .unwrap();
    let c2 = c.clone();
    let tx = done_tx.clone();
    c.on_event(move |e| {
        if e.kind == EventKind::SystemIdle {
            // A blocking request from inside a callback.
            let r = c2.request(tagged(77), Duration::from_secs(10));
            let _ = tx.send(r.map(|r| r.message.int32_data2));
        }
    })
    .unwrap();
    // Trigger an event, then keep requesting while callbacks run.
    c.request(tagged(0).with_int32_data0(1), LONG).unwrap();
    for tag in 0..50 {
        assert_eq!(
            c.request(tagged(tag), LONG).unwrap().message.int32_data2,
            tag
        );
    }
    assert_eq!(done_rx.recv_timeout(LONG).unwrap().unwrap(), 77);
    // Each callback runs on its own thread: the panicking one may still be
    // on its way.
    common::poll_until("the panicking callback to run", LONG, || {
        c.stats().callback_panics == 1
    });
    // The callbacks hold a clone; close() still tears everything down.
    c.close();
}

#[test]
fn submit_and_poll_without_blocking() {
    let (tx, rx) = bounded::<Message>(1);
    let gate = Arc::new(parking_lot::Mutex::new(Some(tx)));
    let server = TestServer::start(move || {
        let gate = gate.clone();
        move |m: Message, _d: Vec<u8>, _c: &mut Conn| {
            if let Some(tx) = gate.lock().take() {
                let _ = tx.send(m);
            }
            Next::Continue
        }
    });
    let c = client(&server.addr());
    let mut p = c.submit(tagged(5), LONG).unwrap();
    assert!(p.try_get().is_none());
    // The server saw the request with TRIGGER_CALL_BACK set.
    let seen = rx.recv_timeout(LONG).unwrap();
    assert!(seen.flags.contains(Flags::TRIGGER_CALL_BACK));
    assert!(p.wait_timeout(Duration::from_millis(10)).is_none());
    // Deadline passes: the poll reports the timeout.
    let mut p2 = c.submit(tagged(6), Duration::from_millis(1)).unwrap();
    let r = loop {
        if let Some(r) = p2.wait_timeout(Duration::from_millis(50)) {
            break r;
        }
    };
    // Same code as the request on the wire: it never left the client.
    assert_eq!(r.unwrap_err().timeout_phase(), Some(TimeoutPhase::KeyBusy));
    drop(p);
    assert_eq!(c.stats().pending_requests, 0);
    assert_eq!(
        c.stats().tombstones,
        1,
        "only the written request awaits its reply"
    );
}

#[test]
fn stale_event_never_satisfies_a_later_wait() {
    let server = TestServer::start(|| {
        |m: Message, _d: Vec<u8>, c: &mut Conn| {
            // Idle, then the reply, then idle again.
            c.send(&Message::new(CommandCode::SYSTEM_STATE_IDLE).with_int32_data0(1));
            c.send(&m);
            c.send(&Message::new(CommandCode::SYSTEM_STATE_IDLE).with_int32_data0(2));
            Next::Continue
        }
    });
    let c = client(&server.addr());
    let ack = c.request(tagged(1), LONG).unwrap();
    let ev = c
        .wait_for_event(|e| e.kind == EventKind::SystemIdle, ack.seq, LONG)
        .unwrap();
    assert_eq!(ev.message.unwrap().int32_data0, 2);
    assert!(ev.seq > ack.seq);
}

#[test]
fn unsolicited_only_codes_are_refused_by_request() {
    let server = TestServer::echo();
    let c = client(&server.addr());
    let e = c
        .request(Message::new(CommandCode::STAGE_MOTION_STOPPED), LONG)
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    assert_eq!(c.stats().messages_sent, 0);
}

#[test]
fn status_policy_classifies_without_touching_request() {
    let server = TestServer::start(|| {
        |m: Message, _d: Vec<u8>, c: &mut Conn| {
            c.send(&m.with_status(m.int32_data1 as u32));
            Next::Continue
        }
    });
    let c = client(&server.addr());
    let halt = |status: i32| Message::new(CommandCode::STAGE_HALT).with_int32_data1(status);
    assert_eq!(c.request(halt(7), LONG).unwrap().message.status, 7);
    assert!(c.request_checked(halt(0), LONG).is_ok());
    assert!(matches!(
        c.request_checked(halt(1), LONG),
        Err(Error::Busy { status: 1, .. })
    ));
    assert!(matches!(
        c.request_checked(halt(2), LONG),
        Err(Error::Refused { status: 2, .. })
    ));
    // Position replies carry 1 normally: informational.
    let pos = Message::new(CommandCode::STAGE_POSITION_GET)
        .with_int32_data0(1)
        .with_int32_data1(1);
    assert_eq!(c.request_checked(pos, LONG).unwrap().message.status, 1);
    assert!(c.is_connected(), "a refusal leaves the link healthy");
}

#[test]
fn additional_data_in_both_directions_and_limit() {
    let server = TestServer::start(|| {
        |m: Message, d: Vec<u8>, c: &mut Conn| {
            if m.int32_data0 == 1 {
                // An absurd length claim with no data behind it.
                c.send(&m.with_additional_data_len(0x8000_0000));
            } else {
                c.send_with_data(&m, &d);
            }
            Next::Continue
        }
    });
    let cfg = ClientConfig::default().additional_data_limit(1 << 20);
    let c = Client::connect(&server.addr(), cfg).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let r = c.request_with_data(tagged(3), &payload, LONG).unwrap();
    assert_eq!(r.data, payload);
    let e = c.request(tagged(4).with_int32_data0(1), LONG).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooLarge {
                size: 0x8000_0000,
                ..
            }
        ),
        "{e}"
    );
    // The stream resynchronised: the next reply is intact.
    let r = c.request(tagged(5), LONG).unwrap();
    assert_eq!(r.message.int32_data2, 5);
    let s = c.stats();
    assert_eq!(s.oversized, 1);
    // The too-large send is refused before anything is written.
    let big = vec![0u8; (1 << 20) + 1];
    let e = c.request_with_data(tagged(6), &big, LONG).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

#[test]
fn garbage_between_messages_is_skipped_and_counted() {
    let server = TestServer::start(|| {
        |m: Message, _d: Vec<u8>, c: &mut Conn| {
            c.send_raw(b"\x00\x01garbage\xff");
            c.send(&m);
            Next::Continue
        }
    });
    let c = client(&server.addr());
    for tag in 0..10 {
        assert_eq!(
            c.request(tagged(tag), LONG).unwrap().message.int32_data2,
            tag
        );
    }
    let s = c.stats();
    assert_eq!(s.resyncs, 10);
    assert_eq!(s.bytes_skipped, 100);
}

#[test]
fn connect_failure_is_typed_and_names_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let e = Client::connect(&addr, ClientConfig::default()).unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&addr), "{e}");
}

#[test]
fn open_is_single_flight_and_close_is_final() {
    let server = TestServer::echo();
    let c = Client::new(&server.addr(), ClientConfig::default());
    assert_eq!(c.state(), ConnectionState::NotConnected);
    assert!(c.request(tagged(1), LONG).unwrap_err().is_disconnected());
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || c.open())
        })
        .collect();
    for h in hs {
        h.join().unwrap().unwrap();
    }
    assert_eq!(c.request(tagged(1), LONG).unwrap().message.int32_data2, 1);
    c.close();
    assert!(c.open().unwrap_err().is_disconnected());
    assert!(c.send(tagged(2)).unwrap_err().is_disconnected());
}
