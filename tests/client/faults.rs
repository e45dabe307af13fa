//! The client against the simulator's faults: single reader,
//! correlation, late replies, disconnect paths, callbacks,
//! status policy and stale events, against the simulator with its faults.
//!
//! Each test asserts the exact outcome (counts, values, error variants).

use crate::common;
use crate::common::{ECHO, LONG};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use common::poll_until;
use crossbeam_channel::bounded;
use flamingo_client::codec::{CommandCode as C, Message, StatusPolicy};
use flamingo_client::sim::{Faults, SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig, Error, Event, EventKind, ReconnectPolicy, Reply};

/// A code outside the catalogue: matched by code alone, echoed by the simulator.
/// Failure bound for waits that normally end at once.
const START: [f64; 4] = common::RELIABILITY_START;

fn sim(cfg: SimConfig) -> Simulator {
    common::small_sim(cfg)
}

fn connect(sim: &Simulator, cfg: ClientConfig) -> Client {
    common::connect_registered(sim, cfg)
}

fn tagged(code: C, tag: i32) -> Message {
    Message::new(code)
        .with_int32_data2(tag)
        .with_double_data(f64::from(tag) * 0.5)
}

fn has_tag(r: &Reply, code: C, tag: i32) -> bool {
    r.message.code == code
        && r.message.int32_data2 == tag
        && r.message.double_data == f64::from(tag) * 0.5
}

/// Only the reader thread reads the socket (structural: `request`
/// blocks on its own channel). Replies to 4 threads and a paced flood of
/// 20,000 events interleave on the wire; every message the simulator wrote is
/// accounted for exactly once, as a matched reply or as an event, in order.
#[test]
fn single_reader_accounts_for_interleaved_replies_and_events() {
    const EVENTS: u64 = 20_000;
    let sim = sim(SimConfig::default());
    let c = connect(&sim, ClientConfig::default().event_queue_depth(1 << 16));
    let all = c.subscribe();
    let (started_tx, started_rx) = bounded(4);
    let flood_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (c, started_tx, flood_done) = (c.clone(), started_tx.clone(), flood_done.clone());
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                let mut i = 0;
                // Keep requesting until the flood is over (and at least 200 times).
                while i < 200 || !flood_done.load(SeqCst) {
                    let tag = t * 1_000_000 + i;
                    let r = c.request(tagged(ECHO, tag), LONG).unwrap();
                    assert!(has_tag(&r, ECHO, tag), "thread {t}: misrouted {r:?}");
                    seqs.push(r.seq);
                    if i == 10 {
                        started_tx.send(()).unwrap();
                    }
                    i += 1;
                }
                seqs
            })
        })
        .collect();
    for _ in 0..4 {
        started_rx.recv_timeout(LONG).unwrap();
    }
    // 20,000 events at 20,000 per second: about a second of interleaving.
    sim.update_faults(|f| f.flood = Some((C::UI_SET_GAUGE_VALUE, EVENTS, 20_000)));
    let mut event_seqs = Vec::with_capacity(EVENTS as usize);
    let mut next = 1;
    while next <= EVENTS as i32 {
        let e = all.recv_timeout(LONG).expect("flood event");
        match e.kind {
            EventKind::GaugeValue { current, total } => {
                assert_eq!((current, total), (next, EVENTS as i32), "events in order");
                event_seqs.push(e.seq);
                next += 1;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    flood_done.store(true, SeqCst);
    let reply_seqs: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let fence = c.request(tagged(ECHO, -1), LONG).unwrap();
    assert!(has_tag(&fence, ECHO, -1));

    let (first, last) = (event_seqs[0], *event_seqs.last().unwrap());
    let inside = reply_seqs
        .iter()
        .filter(|&&s| s > first && s < last)
        .count();
    assert!(inside > 0, "replies interleaved with the flood");
    let s = c.stats();
    let k = sim.counters();
    let replies = reply_seqs.len() as u64 + 1;
    assert_eq!(k.flood_messages, EVENTS);
    assert_eq!(k.replies_sent, replies);
    assert_eq!(k.events_sent, EVENTS);
    assert_eq!(
        s.messages_received,
        k.replies_sent + k.events_sent,
        "client stats {s:?}\nsimulator counters {k:?}"
    );
    assert_eq!(s.replies_matched, replies);
    assert_eq!(s.unmatched_replies + s.late_replies_discarded, 0);
    assert_eq!(all.dropped(), 0);
    assert!(all.is_empty(), "no event beyond the flood");
    // Every sequence number was handed out once: replies and events together
    // cover a contiguous range.
    let mut seqs: Vec<u64> = reply_seqs
        .iter()
        .chain(&event_seqs)
        .copied()
        .chain([fence.seq])
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len() as u64,
        replies + EVENTS,
        "no sequence number twice"
    );
    eprintln!("{replies} replies, {EVENTS} events, {inside} replies inside the flood's span");
}

/// 8 threads, one code, tagged replies, several requests in flight
/// per thread (submit), replies fragmented by the simulator: per-code FIFO
/// gives zero misroutes. The same with an `int32Data0`-keyed code (stage
/// position per axis, 2 threads per axis).
#[test]
fn same_code_fifo_eight_threads_zero_misroutes() {
    const PER_THREAD: i32 = 1500;
    const IN_FLIGHT: usize = 4;
    let sim = sim(SimConfig::default().seed(2));
    sim.update_faults(|f| f.fragment_writes = Some(48));
    let c = connect(&sim, ClientConfig::default());
    let misroutes = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(16));
    let mut threads = Vec::new();
    for t in 0..8 {
        let (c, misroutes, start) = (c.clone(), misroutes.clone(), start.clone());
        threads.push(std::thread::spawn(move || {
            start.wait();
            let mut window = std::collections::VecDeque::new();
            for i in 0..PER_THREAD {
                let tag = t * 1_000_000 + i;
                window.push_back((tag, c.submit(tagged(ECHO, tag), LONG).unwrap()));
                if window.len() == IN_FLIGHT || i == PER_THREAD - 1 {
                    while let Some((tag, p)) = window.pop_front() {
                        let r = p.wait().unwrap();
                        if !has_tag(&r, ECHO, tag) {
                            misroutes.fetch_add(1, SeqCst);
                        }
                    }
                }
            }
        }));
    }
    for t in 0..8 {
        let (c, misroutes, start) = (c.clone(), misroutes.clone(), start.clone());
        let axis = t % 4 + 1;
        threads.push(std::thread::spawn(move || {
            start.wait();
            for _ in 0..PER_THREAD / 2 {
                let r = c
                    .request(
                        Message::new(C::STAGE_POSITION_GET).with_int32_data0(axis),
                        LONG,
                    )
                    .unwrap();
                if r.message.int32_data0 != axis
                    || r.message.double_data != START[axis as usize - 1]
                {
                    misroutes.fetch_add(1, SeqCst);
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let total = 8 * PER_THREAD as u64 + 8 * (PER_THREAD / 2) as u64;
    assert_eq!(misroutes.load(SeqCst), 0, "misrouted replies");
    let s = c.stats();
    assert_eq!(s.replies_matched, total);
    assert_eq!(s.messages_sent, total);
    assert_eq!(
        (s.pending_requests, s.tombstones, s.late_replies_discarded),
        (0, 0, 0)
    );
    assert_eq!(s.unmatched_replies, 0);
    assert_eq!(sim.counters().fragmented_messages, total);
    eprintln!("{total} requests, 0 misroutes");
}

/// A reply that arrives after its caller timed out is discarded and
/// counted, even when the next caller of the same code is already waiting.
#[test]
fn late_reply_is_discarded_and_counted_never_handed_on() {
    let sim = sim(SimConfig::default());
    let c = connect(&sim, ClientConfig::default());
    // A is answered 300 ms late; B is sent after A gave up and its reply is
    // held behind A's (same code: the simulator keeps request order).
    sim.update_faults(|f| f.answer_late = Some((ECHO, Duration::from_millis(300))));
    let e = c
        .request(tagged(ECHO, 1), Duration::from_millis(50))
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let b = c.request(tagged(ECHO, 2), LONG).unwrap();
    assert!(has_tag(&b, ECHO, 2), "B got {:?}", b.message);
    let s = c.stats();
    assert_eq!(s.late_replies_discarded, 1);
    assert_eq!(s.timeouts, 1);
    assert_eq!(s.tombstones, 0, "the tombstone took its late reply");
    assert_eq!(sim.counters().late_replies, 1);

    // Many threads at once, each with its own code: a short request that
    // times out, then a patient one. Every late reply is discarded, never
    // handed to the patient request.
    for t in 0..8 {
        sim.update_faults(|f| {
            f.delay.insert(C(0x7700 + t), Duration::from_millis(30));
        });
    }
    let timed_out = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..8)
        .map(|t| {
            let (c, timed_out, other) = (c.clone(), timed_out.clone(), other.clone());
            std::thread::spawn(move || {
                let code = C(0x7700 + t);
                for i in 0..40 {
                    let tag = i * 2;
                    match c.request(tagged(code, tag), Duration::from_millis(10)) {
                        // Waiting for the reply timed out: a late reply follows.
                        Err(Error::Timeout {
                            phase: flamingo_client::TimeoutPhase::Reply,
                            ..
                        }) => {
                            timed_out.fetch_add(1, SeqCst);
                        }
                        // On a loaded machine the 10 ms can pass before the
                        // request is sent, or while it is being written: a
                        // late reply follows only if it went out.
                        Err(Error::Timeout { .. }) => {
                            other.fetch_add(1, SeqCst);
                        }
                        // A loaded machine may deliver the reply before the
                        // deadline is noticed: then it is the caller's own.
                        Ok(r) => assert!(has_tag(&r, code, tag), "{:?}", r.message),
                        Err(e) => panic!("{e}"),
                    }
                    let r = c.request(tagged(code, tag + 1), LONG).unwrap();
                    assert!(has_tag(&r, code, tag + 1), "misrouted: {:?}", r.message);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let n = timed_out.load(SeqCst);
    let m = other.load(SeqCst);
    let s = c.stats();
    assert_eq!(s.timeouts, 1 + n + m);
    assert!(
        (1 + n..=1 + n + m).contains(&s.late_replies_discarded),
        "every late reply discarded: {} of {} + {m}",
        s.late_replies_discarded,
        1 + n
    );
    assert_eq!((s.tombstones, s.pending_requests), (0, 0));
    eprintln!("{} late replies discarded, 0 misroutes", 1 + n);
}

/// Reader error (the instrument drops the link), user close from two
/// threads, drops of clones and a failing send, all at once, 30 times (half
/// with automatic reconnection): exactly one teardown, one Closed event (the
/// last one), and every waiting request woken once with `Disconnected`.
#[test]
fn every_disconnect_path_at_once_closes_exactly_once() {
    const SILENT: C = C(0x7778);
    for round in 0..30 {
        let sim = sim(SimConfig::default());
        // Six codes the instrument never answers: six requests on the wire.
        sim.update_faults(|f| {
            for i in 0..6 {
                f.never_answer.insert(C(SILENT.0 + i));
            }
        });
        let mut cfg = ClientConfig::default();
        if round % 2 == 1 {
            cfg = cfg.reconnect(
                ReconnectPolicy::default()
                    .initial_delay(Duration::from_millis(1))
                    .jitter(0.0),
            );
        }
        let c = connect(&sim, cfg);
        let events = c.subscribe();
        let waiters: Vec<_> = (0..6)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let r = c.request(tagged(C(SILENT.0 + i as u32), i), Duration::from_secs(30));
                    (r.map(|_| ()), t.elapsed())
                })
            })
            .collect();
        poll_until("6 requests at the simulator", LONG, || {
            sim.counters().messages_received >= 6
        });
        let go = Arc::new(Barrier::new(5));
        let mut paths = Vec::new();
        {
            // The instrument drops the link: the reader fails.
            let go1 = go.clone();
            let sim = &sim;
            std::thread::scope(|s| {
                let h = s.spawn(move || {
                    go1.wait();
                    sim.update_faults(|f| f.close_after_messages = Some(0));
                    sim.broadcast(Message::new(C::SYSTEM_STATE_IDLE));
                });
                for _ in 0..2 {
                    let (c, go) = (c.clone(), go.clone());
                    paths.push(std::thread::spawn(move || {
                        go.wait();
                        c.close();
                        None
                    }));
                }
                let (c2, go2) = (c.clone(), go.clone());
                paths.push(std::thread::spawn(move || {
                    go2.wait();
                    drop(c2);
                    None
                }));
                let (c3, go3) = (c.clone(), go.clone());
                paths.push(std::thread::spawn(move || {
                    go3.wait();
                    let until = Instant::now() + LONG;
                    loop {
                        match c3.send(tagged(SILENT, 99)) {
                            Ok(_) if Instant::now() < until => continue,
                            Ok(_) => return Some("send never failed".to_string()),
                            Err(Error::Disconnected { .. }) => return None,
                            Err(e) => return Some(format!("send failed with {e:?}")),
                        }
                    }
                }));
                h.join().unwrap();
            });
        }
        for p in paths {
            if let Some(problem) = p.join().unwrap() {
                panic!("round {round}: {problem}");
            }
        }
        for w in waiters {
            let (r, took) = w.join().unwrap();
            let e = r.unwrap_err();
            assert!(e.is_disconnected(), "round {round}: {e}");
            assert!(took < Duration::from_secs(10), "woken, not timed out");
        }
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        let closed = kinds
            .iter()
            .filter(|k| matches!(k, EventKind::Closed { .. }))
            .count();
        assert_eq!(closed, 1, "round {round}: {kinds:?}");
        assert!(
            matches!(kinds.last(), Some(EventKind::Closed { .. })),
            "Closed is last: {kinds:?}"
        );
        let disconnected = kinds
            .iter()
            .filter(|k| matches!(k, EventKind::Disconnected { .. }))
            .count();
        let s = c.stats();
        assert_eq!(s.teardowns, 1, "round {round}");
        assert!(s.disconnects <= 1 + s.reconnects, "round {round}: {s:?}");
        assert!(disconnected as u64 <= s.disconnects, "round {round}");
        assert_eq!((s.pending_requests, s.tombstones), (0, 0));
        drop(c); // the last handle: no second teardown
    }
}

/// Every way of sending after the link died gives a typed
/// `Disconnected` that says why; nothing is written, nothing panics.
#[test]
fn send_after_disconnect_is_a_typed_error() {
    let sim = sim(SimConfig::default());
    let c = connect(&sim, ClientConfig::default());
    let events = c.subscribe();
    // Send in a tight loop while the instrument drops the link: every result
    // is Ok (written before the loss was known) or Disconnected.
    let sender = {
        let c = c.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + LONG;
            let mut oks = 0u64;
            loop {
                match c.send(tagged(ECHO, 5)) {
                    Ok(_) if Instant::now() < until => oks += 1,
                    Ok(_) => panic!("send never failed: {:?}", c.state()),
                    Err(Error::Disconnected { detail: reason, .. }) => return (oks, reason),
                    Err(e) => panic!("send failed with {e:?}"),
                }
            }
        })
    };
    sim.update_faults(|f| f.close_after_messages = Some(0));
    // The client's connect can return before the simulator has accepted.
    poll_until("the simulator to accept", LONG, || {
        sim.open_connections() == 1
    });
    assert_eq!(sim.broadcast(Message::new(C::SYSTEM_STATE_IDLE)), 1);
    let (_oks, reason) = sender.join().unwrap();
    assert!(!reason.is_empty());
    let closed = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Closed { .. }))
        .expect("Closed");
    assert!(matches!(closed.kind, EventKind::Closed { ref reason } if reason.contains("lost")));
    let sent = c.stats().messages_sent;
    let check = |what: &str, r: flamingo_client::Result<()>| match r {
        Err(Error::Disconnected { detail: reason, .. }) => {
            assert!(reason.contains("lost"), "{what}: {reason}")
        }
        other => panic!("{what}: {other:?}"),
    };
    check("send", c.send(tagged(ECHO, 1)).map(drop));
    check(
        "send_with_data",
        c.send_with_data(tagged(ECHO, 1), b"abc").map(drop),
    );
    check("request", c.request(tagged(ECHO, 1), LONG).map(drop));
    check(
        "request_with_data",
        c.request_with_data(tagged(ECHO, 1), b"abc", LONG).map(drop),
    );
    check(
        "request_checked",
        c.request_checked(Message::new(C::STAGE_HALT), LONG)
            .map(drop),
    );
    check("submit", c.submit(tagged(ECHO, 1), LONG).map(drop));
    check("live", c.live(LONG).map(drop));
    check(
        "wait_for_event",
        c.wait_for_event(|_| true, c.last_seq(), LONG).map(drop),
    );
    assert_eq!(c.stats().messages_sent, sent, "nothing written");
    assert!(c.open().unwrap_err().is_disconnected());

    // While a reconnect is in progress and the instrument is away, a send
    // waits for the link until its deadline, then fails typed, saying so.
    let sim2 = self::sim(SimConfig::default());
    let cfg = ClientConfig::default()
        .request_timeout(Duration::from_millis(200))
        .reconnect(
            ReconnectPolicy::default()
                .initial_delay(Duration::from_secs(30))
                .jitter(0.0),
        );
    let c2 = connect(&sim2, cfg);
    let ev2 = c2.subscribe();
    sim2.stop();
    loop {
        let e = ev2.recv_timeout(LONG).expect("Disconnected event");
        if matches!(e.kind, EventKind::Disconnected { .. }) {
            break;
        }
    }
    let t = Instant::now();
    match c2.send(tagged(ECHO, 1)) {
        Err(e @ Error::Timeout { .. }) => {
            assert_eq!(
                e.timeout_phase(),
                Some(flamingo_client::TimeoutPhase::LinkWait)
            );
            assert!(e.to_string().contains("connection was down"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(200));
    c2.close();
}

/// Callbacks that panic, remove themselves, are removed by another
/// thread while running, block the dispatcher, or make a blocking request:
/// replies keep flowing and every callback sees exactly what it should.
#[test]
fn callbacks_cleared_panicking_blocking_or_requesting_never_stop_replies() {
    const EVENTS: i32 = 2000;
    let sim = sim(SimConfig::default());
    let c = connect(&sim, ClientConfig::default().event_queue_depth(1 << 14));
    let counted = Arc::new(AtomicUsize::new(0));
    let self_removed = Arc::new(AtomicUsize::new(0));
    let blocked = Arc::new(AtomicUsize::new(0));
    let (entered_tx, entered_rx) = bounded::<()>(1);
    let (release_tx, release_rx) = bounded::<()>(1);
    let (req_tx, req_rx) = bounded(1);
    let gauge = |e: &Event| match e.kind {
        EventKind::GaugeValue { current, .. } => Some(current),
        _ => None,
    };

    // 1. Panics on every 100th event.
    c.on_event(move |e| {
        if gauge(e).is_some_and(|i| i % 100 == 0) {
            panic!("callback bug (deliberate)")
        }
    })
    .unwrap();
    // 2. Removes itself at event 10.
    let own_id = Arc::new(OnceLock::new());
    {
        let (c2, n, id_cell) = (c.clone(), self_removed.clone(), own_id.clone());
        let id = c
            .on_event(move |e| {
                if let Some(i) = gauge(e) {
                    n.fetch_add(1, SeqCst);
                    if i == 10 {
                        assert!(c2.remove_callback(*id_cell.get().unwrap()));
                    }
                }
            })
            .unwrap();
        own_id.set(id).unwrap();
    }
    // 3. Blocks the dispatcher at event 20 until released; removed meanwhile.
    let blocker = {
        let (n, entered_tx) = (blocked.clone(), entered_tx.clone());
        c.on_event(move |e| {
            if let Some(i) = gauge(e) {
                n.fetch_add(1, SeqCst);
                if i == 20 {
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                }
            }
        })
        .unwrap()
    };
    // 4. Makes a blocking request from inside the callback at event 30.
    {
        let c2 = c.clone();
        c.on_event(move |e| {
            if gauge(e) == Some(30) {
                let r = c2.request(tagged(ECHO, 30), LONG);
                req_tx.send(r).unwrap();
            }
        })
        .unwrap();
    }
    // 5. Counts every event.
    {
        let n = counted.clone();
        c.on_event(move |e| {
            if gauge(e).is_some() {
                n.fetch_add(1, SeqCst);
            }
        })
        .unwrap();
    }
    sim.update_faults(|f| f.flood = Some((C::UI_SET_GAUGE_VALUE, EVENTS as u64, 0)));
    entered_rx.recv_timeout(LONG).unwrap();
    // The dispatcher is frozen inside callback 3: replies still flow.
    for tag in 0..200 {
        let r = c.request(tagged(ECHO, tag), LONG).unwrap();
        assert!(has_tag(&r, ECHO, tag));
    }
    // Removed by another thread while it runs: true now, no later call.
    assert!(c.remove_callback(blocker));
    assert!(!c.remove_callback(blocker));
    release_tx.send(()).unwrap();
    let r = req_rx.recv_timeout(LONG).unwrap().unwrap();
    assert!(
        has_tag(&r, ECHO, 30),
        "the callback's request got its own reply"
    );
    poll_until("the dispatcher to see every event", LONG, || {
        counted.load(SeqCst) == EVENTS as usize
    });
    assert_eq!(self_removed.load(SeqCst), 10);
    assert_eq!(blocked.load(SeqCst), 20);
    let s = c.stats();
    assert_eq!(s.callback_panics, EVENTS as u64 / 100);
    assert_eq!(s.events_dropped, 0);
    assert_eq!(s.replies_matched, 201);
    c.close();
}

/// The per-command status policy: a busy status gives `Busy`, a
/// refusal `Refused`, only where the policy says so; the informational 1 of
/// a stopped motion and of position replies is no error; a user policy
/// overrides the catalogue. The connection stays healthy throughout.
#[test]
fn status_policy_busy_refused_only_where_policy_says() {
    let sim = sim(SimConfig::default().plane_interval(Duration::from_millis(20)));
    let cfg = ClientConfig::default().status_policy(C::LED_SET, StatusPolicy::new(&[0, 1], &[]));
    let c = connect(&sim, cfg);
    let set_x = |mm: f64| {
        Message::new(C::STAGE_POSITION_SET)
            .with_int32_data0(1)
            .with_double_data(mm)
    };
    let pos_x = Message::new(C::STAGE_POSITION_GET).with_int32_data0(1);
    let led = Message::new(C::LED_SET)
        .with_int32_data0(1)
        .with_int32_data1(40_000);

    // A normal move: status 0 ack, then MotionStopped with its normal status 1.
    let ack = c.request_checked(set_x(3.0), LONG).unwrap();
    let stopped = c
        .wait_for_event(
            |e| matches!(e.kind, EventKind::MotionStopped { .. }),
            ack.seq,
            LONG,
        )
        .unwrap();
    assert!(matches!(
        stopped.kind,
        EventKind::MotionStopped { status: 1, position, .. } if position == 3.0
    ));

    sim.update_faults(|f| {
        f.status_override.insert(C::STAGE_POSITION_GET, 1);
        f.status_override.insert(C::LED_SET, 1);
    });
    let r = c.request_checked(pos_x, LONG).unwrap();
    assert_eq!((r.message.status, r.message.double_data), (1, 3.0));
    assert_eq!(c.request_checked(led, LONG).unwrap().message.status, 1);
    for (status, busy) in [(1u32, true), (2, false), (7, false)] {
        sim.update_faults(|f| {
            f.status_override.insert(C::STAGE_POSITION_SET, status);
        });
        let e = c.request_checked(set_x(4.0), LONG).unwrap_err();
        match e {
            Error::Busy { code, status: s } if busy => {
                assert_eq!((code, s), (C::STAGE_POSITION_SET, status))
            }
            Error::Refused { code, status: s } if !busy => {
                assert_eq!((code, s), (C::STAGE_POSITION_SET, status))
            }
            other => panic!("status {status}: {other:?}"),
        }
        // request() leaves the status alone.
        assert_eq!(c.request(set_x(4.0), LONG).unwrap().message.status, status);
    }
    sim.set_faults(Faults::none());
    assert_eq!(sim.counters().moves, 1, "refused moves were not executed");

    // The instrument's own busy: a workflow runs.
    let wf = b"Number of planes = 500\n".to_vec();
    c.request_with_data(Message::new(C::CAMERA_WORK_FLOW_START), &wf, LONG)
        .and_then(|r| c.check_status(&r).map(|()| r))
        .unwrap();
    for m in [set_x(5.0), Message::new(C::CAMERA_SNAPSHOT_GET)] {
        match c.request_checked(m, LONG) {
            Err(Error::Busy { status: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let stop = c
        .request_checked(Message::new(C::CAMERA_WORK_FLOW_STOP), LONG)
        .unwrap();
    c.wait_for_event(|e| e.kind == EventKind::SystemIdle, stop.seq, LONG)
        .unwrap();
    c.request_checked(set_x(5.0), LONG).unwrap();

    // Healthy all along.
    assert!(c.is_connected());
    let s = c.stats();
    assert_eq!((s.disconnects, s.timeouts, s.resyncs), (0, 0, 0));
    assert!(s.last_error.is_none());
    let r = c.request(tagged(ECHO, 13), LONG).unwrap();
    assert!(has_tag(&r, ECHO, 13));
}

/// Waits count only events after the command's acknowledgement: a
/// MotionStopped from the previous move, an idle from before a workflow, and
/// events still in the history never satisfy them; a wait that starts late
/// still finds the right event.
#[test]
fn waits_count_only_events_after_the_acknowledgement() {
    let sim = sim(SimConfig::default().plane_interval(Duration::from_millis(2)));
    let c = connect(&sim, ClientConfig::default());
    let events = c.subscribe();
    let move_x = |mm: f64| {
        Message::new(C::STAGE_POSITION_SET)
            .with_int32_data0(1)
            .with_double_data(mm)
    };
    let stopped_x = |e: &Event| {
        matches!(
            e.kind,
            EventKind::MotionStopped {
                axis: flamingo_client::Axis::X,
                ..
            }
        )
    };
    let position = |e: &Event| match e.kind {
        EventKind::MotionStopped { position, .. } => position,
        _ => f64::NAN,
    };

    // Stale MotionStopped: the first move's event is in the history.
    let a1 = c.request_checked(move_x(4.0), LONG).unwrap();
    let first = events.wait_for(stopped_x, a1.seq, LONG).unwrap();
    assert_eq!(position(&first), 4.0);
    // The second move's ack is delayed: the stale event is the newest one
    // when the wait starts.
    sim.update_faults(|f| {
        f.delay
            .insert(C::STAGE_POSITION_SET, Duration::from_millis(50));
    });
    let a2 = c.request_checked(move_x(4.5), LONG).unwrap();
    let second = c.wait_for_event(stopped_x, a2.seq, LONG).unwrap();
    assert_eq!(position(&second), 4.5);
    assert!(second.seq > a2.seq && first.seq < a2.seq);
    sim.set_faults(Faults::none());

    // Stale idle: ask for idle (the simulator broadcasts one), then run a
    // workflow; the wait returns the workflow's own final idle.
    c.send(Message::new(C::SYSTEM_STATE_IDLE)).unwrap();
    let stale_idle = events
        .wait_for(|e| e.kind == EventKind::SystemIdle, 0, LONG)
        .unwrap();
    let wf = b"Number of planes = 20\n".to_vec();
    let ack = c
        .request_with_data(Message::new(C::CAMERA_WORK_FLOW_START), &wf, LONG)
        .unwrap();
    assert_eq!(ack.message.status, 0);
    let idle = c
        .wait_for_event(|e| e.kind == EventKind::SystemIdle, ack.seq, LONG)
        .unwrap();
    assert!(idle.seq > ack.seq && stale_idle.seq < ack.seq);
    let stack = events
        .wait_for(
            |e| matches!(e.kind, EventKind::StackComplete { .. }),
            ack.seq,
            LONG,
        )
        .unwrap();
    assert!(
        matches!(
            stack.kind,
            EventKind::StackComplete {
                acquired: 20,
                expected: 20,
                ..
            }
        ),
        "{:?}",
        stack.kind
    );
    assert!(stack.seq < idle.seq, "the idle is the workflow's end");

    // A wait that starts after the workflow already ended finds its idle in
    // the history; a wait after everything that happened finds nothing.
    // 20 planes: gauge size, one laser level, 20 gauge values, stack
    // complete, images saved, idle.
    let before = sim.counters().events_sent;
    let ack = c
        .request_with_data(Message::new(C::CAMERA_WORK_FLOW_START), &wf, LONG)
        .unwrap();
    poll_until("the workflow's 25 events to be written", LONG, || {
        sim.counters().events_sent == before + 25
    });
    let fence = c.request(tagged(ECHO, 15), LONG).unwrap(); // every event is in
    let late = c
        .wait_for_event(|e| e.kind == EventKind::SystemIdle, ack.seq, LONG)
        .unwrap();
    assert!(late.seq > ack.seq && late.seq < fence.seq);
    let e = c
        .wait_for_event(
            |e| e.kind == EventKind::SystemIdle || stopped_x(e),
            fence.seq,
            Duration::from_millis(100),
        )
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
}

/// stopping the simulator while it accepts a
/// connection must not deadlock (it took its thread and connection locks in
/// opposite orders).
#[test]
fn sim_stop_racing_an_accept_does_not_deadlock() {
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        for _ in 0..300 {
            let sim = Simulator::start(SimConfig::default()).unwrap();
            let _s = std::net::TcpStream::connect(sim.addr()).unwrap();
            sim.stop();
        }
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("300 start/connect/stop cycles finish (no deadlock)");
}

/// With reconnection on: when the link drops, only the requests in
/// flight fail (typed `Disconnected`); a request issued after a failure,
/// however the loss was detected (reader or failed send), waits for the
/// reconnect and succeeds. 30 drops, 4 threads sending as fast as they can.
#[test]
fn with_reconnect_only_requests_in_flight_fail() {
    let sim = sim(SimConfig::default());
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(2))
        .jitter(0.0);
    let c = connect(&sim, ClientConfig::default().reconnect(policy));
    let events = c.subscribe();
    for drop_no in 0..30 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let (c, stop) = (c.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut failed_before = false;
                    let mut i = 0;
                    while !stop.load(SeqCst) {
                        i += 1;
                        let tag = t * 1_000_000 + i;
                        match c.request(tagged(ECHO, tag), LONG) {
                            Ok(r) => {
                                assert!(has_tag(&r, ECHO, tag));
                                failed_before = false;
                            }
                            Err(Error::Disconnected { detail: reason, .. }) => {
                                assert!(
                                    !failed_before,
                                    "drop {drop_no}: a request issued after a failure failed too: {reason}"
                                );
                                failed_before = true;
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                })
            })
            .collect();
        sim.update_faults(|f| f.close_after_messages = Some(20));
        loop {
            let e = events.recv_timeout(LONG).unwrap();
            if let EventKind::Reconnected { .. } = e.kind {
                break;
            }
        }
        stop.store(true, SeqCst);
        for h in hs {
            h.join().unwrap();
        }
    }
    assert_eq!(c.stats().reconnects, 30);
}
