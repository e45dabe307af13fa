//! I/O under stress:
//! the reader never pauses or blocks, one overall deadline per request,
//! timeouts never tear the stream, garbage is skipped and counted.
//!
//! Timing assertions measure from just before the call to just
//! after it returns and allow 50 ms above the deadline.

use crate::common;
use crate::common::{ECHO, LONG};

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::poll_until;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use flamingo_client::codec::{CommandCode as C, Message};
use flamingo_client::sim::{Faults, SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig, Error, EventKind, ReconnectPolicy, Reply};

/// The tolerance the issue allows above a deadline.
const SLACK: Duration = Duration::from_millis(50);
const START: [f64; 4] = common::RELIABILITY_START;

fn sim(cfg: SimConfig) -> Simulator {
    common::small_sim(cfg)
}

fn connect(sim: &Simulator, cfg: ClientConfig) -> Client {
    common::connect_registered(sim, cfg)
}

fn tagged(tag: i32) -> Message {
    Message::new(ECHO)
        .with_int32_data2(tag)
        .with_double_data(f64::from(tag) * 0.5)
}

fn has_tag(r: &Reply, tag: i32) -> bool {
    r.message.code == ECHO
        && r.message.int32_data2 == tag
        && r.message.double_data == f64::from(tag) * 0.5
}

/// Bytes that differ from one tag to the next.
fn payload(tag: i32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(tag as u32) as u8)
        .collect()
}

/// Asserts `elapsed` is within [deadline, deadline + SLACK].
fn assert_at_deadline(what: &str, elapsed: Duration, deadline: Duration) {
    eprintln!("{what}: returned after {elapsed:?} (deadline {deadline:?})");
    assert!(
        elapsed >= deadline,
        "{what}: {elapsed:?} before the deadline"
    );
    assert!(
        elapsed <= deadline + SLACK,
        "{what}: {elapsed:?}, more than {SLACK:?} after the {deadline:?} deadline"
    );
}

/// There is no pause for synchronous operations: settings loads with
/// 2 MiB of additional data (trickled in 64 KiB chunks) run concurrently
/// with position queries on four axes and a paced event flood; nothing is
/// lost, every value is right.
#[test]
fn settings_load_concurrent_with_position_queries_loses_nothing() {
    let text = payload(4, 2 << 20);
    let sim = sim(SimConfig::default().settings_text(text.clone()));
    sim.update_faults(|f| f.trickle_additional = Some((64 * 1024, Duration::from_millis(1))));
    let c = connect(&sim, ClientConfig::default().event_queue_depth(1 << 14));
    let events = c.subscribe_to(&[C::UI_SET_GAUGE_VALUE]);
    sim.update_faults(|f| f.flood = Some((C::UI_SET_GAUGE_VALUE, 5000, 5000)));
    let loads = {
        let (c, text) = (c.clone(), text.clone());
        std::thread::spawn(move || {
            for _ in 0..15 {
                let r = c
                    .request_checked(Message::new(C::COMMON_SCOPE_SETTINGS_LOAD), LONG)
                    .unwrap();
                assert!(r.data == text, "settings text intact");
            }
        })
    };
    let queries: Vec<_> = (1..=4)
        .map(|axis| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let r = c
                        .request(
                            Message::new(C::STAGE_POSITION_GET).with_int32_data0(axis),
                            LONG,
                        )
                        .unwrap();
                    assert_eq!(r.message.int32_data0, axis);
                    assert_eq!(r.message.double_data, START[axis as usize - 1]);
                }
            })
        })
        .collect();
    loads.join().unwrap();
    for q in queries {
        q.join().unwrap();
    }
    for i in 1..=5000 {
        let e = events.recv_timeout(LONG).unwrap();
        assert!(
            matches!(e.kind, EventKind::GaugeValue { current, .. } if current == i),
            "{i}: {e:?}"
        );
    }
    let s = c.stats();
    assert_eq!(s.replies_matched, 15 + 4 * 500);
    assert_eq!(
        (s.timeouts, s.late_replies_discarded, s.events_dropped),
        (0, 0, 0)
    );
    assert_eq!(sim.counters().trickled_payloads, 15);
}

/// The reader never blocks: 50,000 unsolicited events while a
/// subscriber and a callback never read; the simulator's longest single
/// write stays under 100 ms; requests keep completing; the idle subscriber
/// keeps exactly its newest 1024 events and counts the rest as dropped.
#[test]
fn flood_with_idle_consumers_never_blocks_the_instrument() {
    const EVENTS: u64 = 50_000;
    let sim = sim(SimConfig::default());
    let c = connect(&sim, ClientConfig::default()); // queue depth 1024
    let idle = c.subscribe_to(&[C::UI_SET_GAUGE_VALUE]);
    let (release_tx, release_rx) = bounded::<()>(1);
    let (entered_tx, entered_rx) = bounded::<()>(1);
    c.on_event(move |_| {
        if entered_tx.try_send(()).is_ok() {
            let _ = release_rx.recv(); // a callback stuck for the whole flood
        }
    })
    .unwrap();
    let flood_over = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let requester = {
        let (c, over, n) = (c.clone(), flood_over.clone(), requests.clone());
        std::thread::spawn(move || {
            let mut tag = 0;
            while !over.load(SeqCst) || tag < 100 {
                let r = c.request(tagged(tag), LONG).unwrap();
                assert!(has_tag(&r, tag));
                n.fetch_add(1, SeqCst);
                tag += 1;
            }
        })
    };
    sim.update_faults(|f| f.flood = Some((C::UI_SET_GAUGE_VALUE, EVENTS, 0)));
    entered_rx.recv_timeout(LONG).unwrap();
    let last = c
        .wait_for_event(
            |e| matches!(e.kind, EventKind::GaugeValue { current, .. } if current == EVENTS as i32),
            0,
            LONG,
        )
        .unwrap();
    flood_over.store(true, SeqCst);
    requester.join().unwrap();
    let k = sim.counters();
    assert_eq!(k.flood_messages, EVENTS, "{k:?}");
    assert!(
        k.max_write_block < Duration::from_millis(100),
        "the simulator blocked {:?} in one write",
        k.max_write_block
    );
    // The idle subscriber holds the newest 1024, in order, ending with the last.
    assert_eq!(idle.len(), 1024);
    assert_eq!(idle.dropped(), EVENTS - 1024);
    let kept: Vec<i32> = idle
        .try_iter()
        .map(|e| e.message.unwrap().int32_data0)
        .collect();
    assert_eq!(
        kept,
        ((EVENTS as i32 - 1023)..=EVENTS as i32).collect::<Vec<_>>()
    );
    assert!(last.seq > 0);
    let s = c.stats();
    assert_eq!(s.replies_matched, requests.load(SeqCst));
    assert!(c.is_connected());
    drop(release_tx); // the stuck callback returns, and returns at once from now on
    eprintln!(
        "{EVENTS} events, {} requests during the flood, longest simulator write {:?}, {} events dropped in all",
        requests.load(SeqCst),
        k.max_write_block,
        s.events_dropped
    );
    c.close();
}

/// One overall deadline: a reply whose 1 MiB of additional data
/// trickles in 4 KiB every 10 ms (2.6 s in all) fails with `Timeout` at the
/// 1 s deadline (+ at most 50 ms), not per chunk. The late reply is then
/// discarded and the next request gets its own.
#[test]
fn trickled_reply_fails_at_the_overall_deadline() {
    let sim = sim(SimConfig::default());
    sim.update_faults(|f| f.trickle_additional = Some((4096, Duration::from_millis(10))));
    let c = connect(&sim, ClientConfig::default());
    let data = payload(10, 1 << 20);
    let deadline = Duration::from_secs(1);
    let t = Instant::now();
    let r = c.request_with_data(tagged(10), &data, deadline);
    let took = t.elapsed();
    match r {
        Err(Error::Timeout { after, .. }) => assert_eq!(after, deadline),
        other => panic!("{other:?}"),
    }
    assert_at_deadline("trickled 1 MiB", took, deadline);
    // The stream is intact: the next request waits behind the trickle and
    // gets its own reply; the late one is discarded.
    let r = c.request(tagged(11), LONG).unwrap();
    assert!(has_tag(&r, 11));
    let s = c.stats();
    assert_eq!((s.late_replies_discarded, s.timeouts, s.resyncs), (1, 1, 0));
}

/// A loopback server that accepts one connection and reads `chunk` bytes
/// every `pause` (`chunk` 0: never reads), until dropped.
struct SlowReader {
    addr: String,
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<u64>>,
}

impl SlowReader {
    fn start(chunk: usize, pause: Duration) -> SlowReader {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped): (Sender<()>, Receiver<()>) = bounded(0);
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; chunk.max(1)];
            let mut total = 0u64;
            loop {
                match stopped.recv_timeout(pause) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return total,
                }
                if chunk > 0 {
                    s.set_read_timeout(Some(pause)).unwrap();
                    match s.read(&mut buf) {
                        Ok(0) => return total,
                        Ok(n) => total += n as u64,
                        Err(_) => {}
                    }
                }
            }
        });
        SlowReader {
            addr,
            stop: Some(stop),
            handle: Some(handle),
        }
    }
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Write side. The instrument reads slowly (64 KiB every 20 ms):
/// sending 32 MiB of additional data with a 1 s deadline gives up at the
/// deadline, not after one write timeout per partial write: the caller
/// gets `Timeout` in the write phase. A partial message cannot be taken
/// back, so its remaining bytes follow while the instrument keeps reading.
#[test]
fn write_to_a_slow_reader_fails_at_the_overall_deadline() {
    let server = SlowReader::start(64 * 1024, Duration::from_millis(20));
    let c = Client::connect(&server.addr, ClientConfig::default()).unwrap();
    let data = vec![0x5Au8; 32 << 20];
    let deadline = Duration::from_secs(1);
    let t = Instant::now();
    let r = c.request_with_data(tagged(1), &data, deadline);
    let took = t.elapsed();
    match &r {
        Err(Error::Disconnected { detail: reason, .. }) => {
            assert!(reason.contains("timed out"), "{reason}")
        }
        Err(Error::Timeout {
            phase: flamingo_client::TimeoutPhase::Write,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_at_deadline("slow reader, 32 MiB", took, deadline);
    // The instrument is still reading: the message goes on being written
    // after its caller's deadline (cut in two it would corrupt the stream),
    // and the link stays up.
    assert!(c.is_connected());
    c.close();
    assert_eq!(c.stats().teardowns, 1);
}

/// Waiting to send. While another request's 32 MiB write is stuck
/// (the instrument does not read), a small request with a 300 ms deadline
/// fails with `Timeout` at its own deadline instead of queueing behind the
/// stuck write; closing the client then ends the stuck write at once.
#[test]
fn request_behind_a_stuck_write_fails_at_its_own_deadline() {
    let server = SlowReader::start(0, Duration::from_millis(50));
    let c = Client::connect(&server.addr, ClientConfig::default()).unwrap();
    let big = {
        let c = c.clone();
        std::thread::spawn(move || {
            let r = c.request_with_data(tagged(1), &vec![1u8; 32 << 20], Duration::from_secs(60));
            (r.map(drop), Instant::now())
        })
    };
    // A gap so the big write is under way (the assertion holds either way).
    std::thread::sleep(Duration::from_millis(100));
    let deadline = Duration::from_millis(300);
    let t = Instant::now();
    let r = c.request(tagged(2), deadline);
    let took = t.elapsed();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert_at_deadline("behind a stuck write", took, deadline);
    assert!(
        c.is_connected(),
        "a small request's timeout leaves the link up"
    );
    let closed_at = Instant::now();
    c.close();
    let (r, at) = big.join().unwrap();
    assert!(r.unwrap_err().is_disconnected());
    assert!(at.duration_since(closed_at) < Duration::from_secs(5));
}

/// A timeout in the middle of a reply never tears the stream: the
/// reader keeps reading the abandoned reply to its end, so the next request
/// reads exactly its own reply. A link cut in the middle of a reply fails
/// the waiter with `Disconnected`; after the reconnect the next reply is
/// intact.
#[test]
fn timeout_mid_message_never_tears_the_next_reply() {
    let sim = sim(SimConfig::default());
    sim.update_faults(|f| f.trickle_additional = Some((1024, Duration::from_millis(5))));
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(5))
        .jitter(0.0);
    let c = connect(&sim, ClientConfig::default().reconnect(policy));
    let events = c.subscribe();
    for round in 0..5 {
        let tag = round * 2;
        // 256 KiB in 1 KiB steps: about 1.3 s; give up after 100 ms, in the
        // middle of the additional data.
        let e = c
            .request_with_data(
                tagged(tag),
                &payload(tag, 256 << 10),
                Duration::from_millis(100),
            )
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        let small = payload(tag + 1, 1000);
        let r = c.request_with_data(tagged(tag + 1), &small, LONG).unwrap();
        assert!(has_tag(&r, tag + 1) && r.data == small, "round {round}");
    }
    let s = c.stats();
    assert_eq!((s.late_replies_discarded, s.timeouts), (5, 5));
    assert_eq!((s.resyncs, s.bytes_skipped, s.disconnects), (0, 0, 0));

    // Cut after 64 bytes of a reply, then the link closes.
    sim.set_faults(Faults::none());
    poll_until("the simulator to accept", LONG, || {
        sim.open_connections() == 1
    });
    sim.update_faults(|f| f.close_mid_message = true);
    let e = c.request(tagged(100), LONG).unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    loop {
        let ev = events.recv_timeout(LONG).unwrap();
        if let EventKind::Reconnected { .. } = ev.kind {
            break;
        }
    }
    let r = c.request(tagged(101), LONG).unwrap();
    assert!(has_tag(&r, 101));
    let s = c.stats();
    assert_eq!((s.disconnects, s.reconnects, s.resyncs), (1, 1, 0));
    assert_eq!(sim.counters().closed_mid_message, 1);
}

/// Garbage before every reply (1..=40 bytes), fragmented writes, 8
/// threads: every reply correct, one resync per garbage insertion and every
/// garbage byte counted as skipped, exactly as the simulator reports.
#[test]
fn garbage_resync_counted_and_replies_correct() {
    let sim = sim(SimConfig::default().seed(17));
    sim.update_faults(|f| {
        f.garbage_between = Some(40);
        f.fragment_writes = Some(32);
    });
    let c = connect(&sim, ClientConfig::default());
    let hs: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    let tag = t * 10_000 + i;
                    let r = c.request(tagged(tag), LONG).unwrap();
                    assert!(has_tag(&r, tag), "{:?}", r.message);
                    if i % 50 == 0 {
                        let d = payload(tag, 3000);
                        let r = c.request_with_data(tagged(tag), &d, LONG).unwrap();
                        assert!(has_tag(&r, tag) && r.data == d);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let s = c.stats();
    let k = sim.counters();
    assert_eq!(s.replies_matched, 8 * 510);
    assert_eq!(k.garbage_insertions, 8 * 510);
    assert_eq!(s.resyncs, k.garbage_insertions, "one resync per insertion");
    assert_eq!(
        s.bytes_skipped, k.garbage_bytes,
        "every garbage byte skipped"
    );
    assert_eq!((s.timeouts, s.disconnects, s.unmatched_replies), (0, 0, 0));
    eprintln!(
        "{} replies, {} garbage insertions, {} bytes skipped",
        s.replies_matched, k.garbage_insertions, s.bytes_skipped
    );
}

/// Live connect. While one thread's `live()` hangs for 3 s in a
/// connect to a live port whose backlog is full, another thread's `live()`
/// with a 300 ms deadline returns at its own deadline instead of queueing
/// behind it.
#[test]
fn live_connect_behind_another_fails_at_its_own_deadline() {
    use socket2::{Domain, Socket, Type};
    // A command port P, and on P + 1 a listener with a full backlog: new
    // connections neither succeed nor get refused (their SYNs are dropped).
    let (listener, live_port, addr) = loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let at: std::net::SocketAddr = ([127, 0, 0, 1], port + 1).into();
        if s.bind(&at.into()).is_ok() && s.listen(0).is_ok() {
            break (l, s, format!("127.0.0.1:{port}"));
        }
    };
    let live_addr = live_port.local_addr().unwrap().as_socket().unwrap();
    let _queued: Vec<_> = (0..2)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&live_addr, Duration::from_millis(100)).ok()
        })
        .collect();
    let accept = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let c = Client::connect(&addr, ClientConfig::default()).unwrap();
    let _server_side = accept.join().unwrap().unwrap();
    let slow = {
        let c = c.clone();
        std::thread::spawn(move || c.live(Duration::from_secs(3)).map(drop))
    };
    std::thread::sleep(Duration::from_millis(100)); // the slow one is connecting
    let deadline = Duration::from_millis(300);
    let t = Instant::now();
    let r = c.live(deadline);
    let took = t.elapsed();
    assert!(
        matches!(r, Err(Error::Timeout { .. }) | Err(Error::Connect { .. })),
        "{r:?}"
    );
    assert_at_deadline("live connect behind another", took, deadline);
    assert!(matches!(slow.join().unwrap(), Err(Error::Connect { .. })));
}
