//! The command-port contract under adversarial conditions: correlation never
//! guesses, no user code runs under a lock, huge timeouts mean "no
//! deadline", teardown is prompt and leaks nothing, memory stays bounded.
//! Each test is written against a behaviour that once failed.

use crate::common;
use crate::common::{ECHO, LONG};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Conn, Next, TestServer};
use crossbeam_channel::bounded;
use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{
    Axis, Client, ClientConfig, Error, ErrorKind, ReconnectPolicy, TimeoutPhase,
};

fn tagged(tag: i32) -> Message {
    Message::new(ECHO).with_int32_data2(tag)
}

/// An instrument that tags nothing itself but echoes the request, so a
/// reply carries its request's tag; `silent(tag)` decides which it drops
/// and `late(tag)` which it answers only after a pause.
fn tagging_server(
    silent: impl Fn(i32) -> bool + Send + Sync + Clone + 'static,
    late: impl Fn(i32) -> Option<Duration> + Send + Sync + Clone + 'static,
) -> TestServer {
    TestServer::start(move || {
        let (silent, late) = (silent.clone(), late.clone());
        move |m: Message, _d: Vec<u8>, c: &mut Conn| {
            let tag = m.int32_data2;
            if silent(tag) {
                return Next::Continue;
            }
            if let Some(d) = late(tag) {
                std::thread::sleep(d);
            }
            c.send(&m);
            Next::Continue
        }
    })
}

/// Runs `f` on a thread and fails the test if it does not return within
/// `limit` (a deadlock), instead of hanging the suite.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("did not return in time (deadlock or lost wake-up)")
}

#[test]
fn a_filter_may_call_back_into_the_client() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let c = common::connect_registered(&sim, ClientConfig::default());
    let c2 = c.clone();
    let sim_ref = Arc::new(sim);
    let s2 = sim_ref.clone();
    within(LONG, move || {
        let inner = c2.clone();
        let after = c2.last_seq();
        s2.broadcast(Message::new(CommandCode::SYSTEM_STATE_IDLE));
        let ev = c2
            .wait_for_event(
                |e| {
                    // Each of these takes a lock the hub or the client holds.
                    let _ = inner.stats();
                    drop(inner.subscribe());
                    let id = inner.on_event(|_| {}).unwrap();
                    inner.remove_callback(id);
                    e.code() == Some(CommandCode::SYSTEM_STATE_IDLE)
                },
                after,
                LONG,
            )
            .unwrap();
        assert!(ev.seq > after);
        // A filter that closes the client ends the wait with Disconnected.
        let closer = c2.clone();
        s2.broadcast(Message::new(CommandCode::SYSTEM_STATE_IDLE));
        let r = c2.wait_for_event(
            |_| {
                closer.close();
                false
            },
            0,
            LONG,
        );
        assert!(r.unwrap_err().is_disconnected());
    });
    c.close();
}

#[test]
fn huge_timeouts_mean_no_deadline_and_never_panic() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let cfg = ClientConfig::default()
        .request_timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .late_reply_window(Duration::MAX);
    let c = common::connect_registered(&sim, cfg);
    let m = Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET);
    c.request(m, Duration::MAX).unwrap();
    let mut op = c.submit(m, Duration::MAX).unwrap();
    assert!(op.wait_timeout(Duration::MAX).unwrap().is_ok());
    c.submit(m, Duration::MAX).unwrap().wait().unwrap();
    c.stage().timeout(Duration::MAX).position(Axis::X).unwrap();
    let here = c.stage().position(Axis::Z).unwrap();
    c.stage()
        .motion_timeout(Duration::MAX)
        .move_and_wait(Axis::Z, here + 0.01)
        .unwrap();
    c.live(Duration::MAX).unwrap();
    let after = c.last_seq();
    sim.broadcast(Message::new(CommandCode::SYSTEM_STATE_IDLE));
    c.wait_for_event(
        |e| e.code() == Some(CommandCode::SYSTEM_STATE_IDLE),
        after,
        Duration::MAX,
    )
    .unwrap();
    let sub = c.subscribe();
    sim.broadcast(Message::new(CommandCode::SYSTEM_STATE_IDLE));
    sub.wait_for(|_| true, 0, Duration::MAX).unwrap();
    c.close();
}

#[test]
fn a_timeout_with_an_endless_late_reply_window_does_not_panic() {
    let server = tagging_server(|t| t == 1, |_| None);
    let c = Client::connect(
        &server.addr(),
        ClientConfig::default().late_reply_window(Duration::MAX),
    )
    .unwrap();
    let e = c.request(tagged(1), Duration::from_millis(30)).unwrap_err();
    assert_eq!(e.timeout_phase(), Some(TimeoutPhase::Reply));
    // Another code flows; the silent key stays blocked (its reply may come).
    let other = Message::new(CommandCode(0x7001)).with_int32_data2(5);
    assert_eq!(c.request(other, LONG).unwrap().message.int32_data2, 5);
    let e = c.request(tagged(2), Duration::from_millis(30)).unwrap_err();
    assert_eq!(e.timeout_phase(), Some(TimeoutPhase::KeyBusy));
    drop(c.submit(tagged(3), Duration::from_millis(1)).unwrap());
}

#[test]
fn senders_waiting_for_the_link_wake_when_closed() {
    for _round in 0..20 {
        let server = TestServer::echo();
        let policy = ReconnectPolicy::default()
            .initial_delay(Duration::from_secs(60))
            .jitter(0.0);
        let c = Client::connect(&server.addr(), ClientConfig::default().reconnect(policy)).unwrap();
        // One round trip: the server has registered the connection, so
        // dropping it closes the link.
        c.request(tagged(0), LONG).unwrap();
        let events = c.subscribe();
        drop(server);
        loop {
            let e = events.recv_timeout(LONG).unwrap();
            if matches!(e.kind, flamingo_client::EventKind::Disconnected { .. }) {
                break;
            }
        }
        let senders: Vec<_> = (0..16)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let r = c.request(tagged(i), Duration::from_secs(30));
                    (r, t.elapsed())
                })
            })
            .collect();
        c.close();
        for s in senders {
            let (r, took) = s.join().unwrap();
            let e = r.unwrap_err();
            assert!(e.is_disconnected(), "{e}");
            assert!(
                took < Duration::from_secs(10),
                "a sender slept to its deadline"
            );
        }
    }
}

#[test]
fn a_reply_later_than_the_window_resets_the_link_and_is_never_delivered() {
    // Tag 1's reply comes 600 ms late; the window is 100 ms. The client must
    // not hand it to tag 2 (same code): it resets the link instead.
    let server = tagging_server(
        |_| false,
        |t| (t == 1).then_some(Duration::from_millis(600)),
    );
    let cfg = ClientConfig::default().late_reply_window(Duration::from_millis(100));
    let c = Client::connect(&server.addr(), cfg).unwrap();
    let events = c.subscribe();
    assert!(c.request(tagged(1), Duration::from_millis(50)).is_err());
    match c.request(tagged(2), LONG) {
        Ok(r) => assert_eq!(r.message.int32_data2, 2, "misrouted"),
        Err(e) => assert!(e.is_disconnected() || e.is_timeout(), "unexpected {e}"),
    }
    let s = c.stats();
    assert_eq!(s.link_resyncs, 1, "{s:?}");
    // The reset is published, and the client is usable again afterwards.
    let mut saw = Vec::new();
    while let Ok(e) = events.try_recv() {
        saw.push(e.kind.name());
    }
    assert!(saw.contains(&"disconnected"), "{saw:?}");
    let r = c.request(tagged(3), LONG).unwrap();
    assert_eq!(r.message.int32_data2, 3);
}

#[test]
fn lost_replies_and_floods_of_timeouts_never_misroute() {
    // Every 7th request is never answered; 8 callers share one code; some
    // time out on purpose. Every reply a caller gets must carry its tag.
    let server = tagging_server(|t| t % 7 == 0, |_| None);
    let cfg = ClientConfig::default().late_reply_window(Duration::from_millis(50));
    let c = Client::connect(&server.addr(), cfg).unwrap();
    let next = Arc::new(AtomicU64::new(1));
    let wrong = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (c, next, wrong, ok) = (c.clone(), next.clone(), wrong.clone(), ok.clone());
            std::thread::spawn(move || {
                for _ in 0..60 {
                    let tag = next.fetch_add(1, Ordering::Relaxed) as i32;
                    match c.request(tagged(tag), Duration::from_millis(40)) {
                        Ok(r) if r.message.int32_data2 == tag => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => assert!(
                            matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Disconnected),
                            "{e}"
                        ),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(wrong.load(Ordering::Relaxed), 0, "misroutes");
    assert!(ok.load(Ordering::Relaxed) > 0);
    // More than 64 timeouts on one key: still exact afterwards.
    let server = tagging_server(|t| t < 100, |_| None);
    let c = Client::connect(&server.addr(), ClientConfig::default()).unwrap();
    for t in 0..100 {
        let _ = c
            .submit(tagged(t), Duration::from_millis(1))
            .unwrap()
            .wait();
    }
    let e = c.request(tagged(100), Duration::from_millis(200));
    if let Ok(r) = e {
        assert_eq!(r.message.int32_data2, 100);
    }
}

#[test]
fn callbacks_see_the_final_closed_event() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    for _ in 0..20 {
        let c = common::connect_registered(&sim, ClientConfig::default());
        let (tx, rx) = bounded(4);
        c.on_event(move |e| {
            if matches!(e.kind, flamingo_client::EventKind::Closed { .. }) {
                let _ = tx.try_send(());
            }
        })
        .unwrap();
        c.close();
        rx.recv_timeout(LONG).expect("the callback saw Closed");
    }
}

#[test]
fn submit_returns_at_once_while_the_instrument_is_away() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(200))
        .jitter(0.0);
    let c = Client::connect(
        &sim.addr().to_string(),
        ClientConfig::default().reconnect(policy),
    )
    .unwrap();
    // The instrument stops reading: writes back up.
    sim.update_faults(|f| f.stop_reading = Some(Duration::from_secs(3)));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|i| {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                let data = vec![0u8; 256 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let _ = c.request_with_data(
                        Message::new(CommandCode(0x7100 + i)),
                        &data,
                        Duration::from_millis(300),
                    );
                }
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        let op = c.submit(tagged(i), Duration::from_secs(2));
        longest = longest.max(t.elapsed());
        drop(op);
        if i == 100 {
            sim.stop(); // and now a reconnect
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    // Generous for a loaded CI machine; blocking would take the timeout (2 s).
    assert!(
        longest < Duration::from_millis(250),
        "submit blocked {longest:?}"
    );
    c.close();
}

#[test]
fn subscriptions_cost_nothing_once_dropped() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let c = Client::connect(&sim.addr().to_string(), ClientConfig::default()).unwrap();
    for _ in 0..500 {
        drop(c.subscribe());
        let _ = c.wait_for_event(|_| false, 0, Duration::ZERO);
    }
    assert!(c.stats().subscribers.is_empty());
}

#[test]
fn close_interrupts_a_connect_attempt() {
    // A listener whose backlog is full: connects to it hang.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
        })
        .collect();
    let c = Client::new(
        &addr.to_string(),
        ClientConfig::default().connect_timeout(Duration::from_secs(5)),
    );
    let opener = {
        let c = c.clone();
        std::thread::spawn(move || c.open())
    };
    while c.state() != flamingo_client::ConnectionState::Connecting {
        std::thread::yield_now();
    }
    let t = Instant::now();
    c.close();
    let took = t.elapsed();
    let r = opener.join().unwrap();
    assert!(took < Duration::from_secs(1), "close took {took:?}");
    if let Err(e) = r {
        assert!(
            matches!(e, Error::Disconnected { .. } | Error::Connect { .. }),
            "{e}"
        );
    }
    drop((fillers, full));
}

#[test]
fn waiting_on_a_finished_op_is_an_error_not_a_spin() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let c = Client::connect(&sim.addr().to_string(), ClientConfig::default()).unwrap();
    let mut op = c
        .submit(Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET), LONG)
        .unwrap();
    let r = loop {
        if let Some(r) = op.wait_timeout(Duration::from_millis(10)) {
            break r;
        }
    };
    assert!(r.is_ok());
    let e = within(LONG, move || op.wait()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn subscribers_hear_of_a_lost_link_before_any_caller() {
    let server = tagging_server(|t| t == 1, |_| None);
    let c = Client::connect(&server.addr(), ClientConfig::default()).unwrap();
    c.request(tagged(0), LONG).unwrap(); // the server has registered the link
    let events = c.subscribe();
    let waiter = {
        let c = c.clone();
        std::thread::spawn(move || c.request(tagged(1), LONG))
    };
    while c.stats().messages_sent < 2 {
        std::thread::yield_now();
    }
    server.drop_connections();
    let e = waiter.join().unwrap().unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    // By the time the caller had its error, the event was already queued.
    let first = events.try_recv().expect("Disconnected was published first");
    assert!(
        matches!(first.kind, flamingo_client::EventKind::Disconnected { .. }),
        "{first:?}"
    );
}

#[test]
fn the_live_port_is_next_to_the_address_actually_connected() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let port = sim.addr().port();
    // "localhost" may resolve to ::1 first, where nothing listens.
    let c = Client::connect(&format!("localhost:{port}"), ClientConfig::default()).unwrap();
    let live = c.live_addr().unwrap();
    assert_eq!(live.ip(), sim.addr().ip());
    assert_eq!(live.port(), port + 1);
    c.live(LONG).unwrap();
}

#[test]
fn replies_that_carry_a_tag_instead_of_the_axis_still_reach_their_callers() {
    // The instrument writes its own sequence number into int32Data0 of
    // every position reply (no axis echo) and the position into doubleData.
    let server = TestServer::start(|| {
        let mut n = 100;
        move |m: Message, _d: Vec<u8>, c: &mut Conn| {
            n += 1;
            let pos = f64::from(m.int32_data0) * 10.0;
            c.send(&m.with_int32_data0(n).with_double_data(pos));
            Next::Continue
        }
    });
    let c = Client::connect(&server.addr(), ClientConfig::default()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let axis = [Axis::X, Axis::Y, Axis::Z, Axis::R][i % 4];
                for _ in 0..50 {
                    let p = c.stage().timeout(LONG).position(axis).unwrap();
                    assert_eq!(p, f64::from(axis.wire()) * 10.0, "axis {axis}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_broadcast_about_another_laser_never_answers_a_request() {
    // While a level query for laser 3 is on the wire, the instrument
    // broadcasts laser 2's level first, then answers.
    let server = TestServer::start(|| {
        move |m: Message, _d: Vec<u8>, c: &mut Conn| {
            if m.code == CommandCode::LASER_LEVEL_GET {
                let other = Message::new(CommandCode::LASER_LEVEL_GET)
                    .with_int32_data0(2)
                    .with_text("22.00")
                    .unwrap();
                c.send(&other);
                c.send(&m.with_text("33.00").unwrap());
            } else {
                c.send(&m);
            }
            Next::Continue
        }
    });
    let c = Client::connect(&server.addr(), ClientConfig::default()).unwrap();
    for _ in 0..20 {
        let level = c.lasers().timeout(LONG).level_percent(3).unwrap();
        assert_eq!(level, 33.0);
    }
    assert!(c.stats().echo_mismatches >= 20);
}

#[test]
fn close_returns_promptly_in_every_state() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut longest = Duration::ZERO;
    for state in 0..4 {
        let policy = ReconnectPolicy::default()
            .initial_delay(Duration::from_secs(60))
            .jitter(0.0);
        let c = common::connect_registered(&sim, ClientConfig::default().reconnect(policy));
        let _sub = c.subscribe();
        c.on_event(|_| {}).unwrap();
        c.live(LONG).unwrap();
        match state {
            // Idle, with a subscriber, a callback and the live stream.
            0 => {}
            // A request waiting for a reply that never comes.
            1 => {
                sim.update_faults(|f| {
                    f.never_answer.insert(CommandCode::SYSTEM_STATE_GET);
                });
                drop(
                    c.submit(Message::new(CommandCode::SYSTEM_STATE_GET), LONG)
                        .unwrap(),
                );
            }
            // The instrument stopped reading while a large write is under way.
            2 => {
                sim.update_faults(|f| f.stop_reading = Some(Duration::from_secs(5)));
                let big = vec![0u8; 8 << 20];
                drop(c.submit_with_data(tagged(1), &big, LONG).unwrap());
            }
            // Waiting out a reconnect delay.
            _ => {
                sim.update_faults(|f| f.close_after_messages = Some(0));
                let _ = c.request(tagged(2), Duration::from_millis(200));
            }
        }
        let t = Instant::now();
        c.close();
        longest = longest.max(t.elapsed());
        sim.set_faults(flamingo_client::sim::Faults::none());
    }
    eprintln!("longest close(): {longest:?}");
    // Generous for a loaded CI machine; the design target is 50 ms.
    assert!(longest < Duration::from_millis(500), "{longest:?}");
}
