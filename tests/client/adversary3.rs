//! Third adversarial round, aimed at the reader's batch window (the reader
//! marks itself busy when a read returns bytes; until its next read callers
//! queue their requests and the reader writes them: `Conn::read_returned`,
//! `Shared::end_reader_batch`, `flush_routed`). Each test names the
//! guarantee it checks. A test that carries an "OBSERVED FAILURE" comment
//! failed when it was written: it documents a bug, not a flaky test.

use crate::common::{poll_until, Instrument, Link, LONG};

use std::cell::Cell;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::{
    Client, ClientConfig, DisconnectReason, Error, ReconnectPolicy, TimeoutPhase,
};

/// A code unknown to the catalogue: replies, never broadcast.
const A: CommandCode = CommandCode(0x7721);
/// Another one, for unrelated traffic.
const B: CommandCode = CommandCode(0x7722);
/// A third, for events.
const EV: CommandCode = CommandCode(0x7723);

fn tagged(code: CommandCode, tag: i32) -> Message {
    Message::new(code).with_int32_data2(tag)
}

/// Reads and throws away everything the client writes until the link ends.
fn drain(mut link: Link) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        while link.read_discarding().is_some() {
            n += 1;
        }
        n
    })
}

std::thread_local! {
    /// The lowest and highest stack address at which this thread called
    /// the waker.
    static SPAN: Cell<(usize, usize)> = const { Cell::new((usize::MAX, 0)) };
}

/// Guarantee (the crate docs of `set_waker`: the waker is called "when an
/// operation completes or an event is queued"; memory bounded by
/// configuration): calling the waker costs a bounded amount of stack,
/// however many messages are queued. The client calls the waker after it
/// wrote a batch of plain sends; if calling the waker writes the next
/// batch, whose completion calls the waker again, the stack grows by a
/// few frames per batch while the queue stays full, until a thread
/// overflows its stack and the process aborts.
///
/// OBSERVED FAILURE (before the fix): the waker ran hundreds of kilobytes
/// deeper in the stack than its first call on the same thread.
/// `Shared::wake` called `end_reader_batch` (a flush) before the waker on
/// every thread, and the flush's finished write calls `wake_all` -> `wake`
/// again (src/client/shared.rs `wake`, src/client/send.rs `finish_write`).
#[test]
fn the_waker_is_called_at_a_bounded_stack_depth_under_a_stream_of_sends() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let link = inst.accept();
    let (go, went) = bounded::<()>(1);
    let drained = std::thread::spawn(move || {
        went.recv().unwrap();
        drain(link).join().unwrap()
    });
    let worst = Arc::new(AtomicUsize::new(0));
    let w = worst.clone();
    client.set_waker(Some(Arc::new(move || {
        let here = 0u8;
        let at = std::hint::black_box(&here) as *const u8 as usize;
        SPAN.with(|s| {
            let (lo, hi) = s.get();
            let (lo, hi) = (lo.min(at), hi.max(at));
            s.set((lo, hi));
            w.fetch_max(hi - lo, Ordering::Relaxed);
        });
    })));
    // The instrument stops reading: the client's writes fill the socket,
    // the sender thread blocks in a write, and every other send queues.
    // Each send carries more than a batch inlines, so each is a batch of
    // its own.
    let data = Arc::new(vec![7u8; 20 * 1024]);
    let n = 400;
    let senders: Vec<_> = (0..n)
        .map(|t| {
            let (c, data) = (client.clone(), data.clone());
            std::thread::spawn(move || {
                c.send_with_data(tagged(A, t), &data).unwrap();
            })
        })
        .collect();
    // Every send is queued, or on the wire (one is in the sender
    // thread's blocked write).
    poll_until("the sends to queue", LONG, || {
        let s = client.stats();
        s.queued_messages as u64 + s.messages_sent + 1 >= n as u64
    });
    assert!(
        client.stats().queued_messages > 100,
        "the socket took most sends"
    );
    go.send(()).unwrap();
    for s in senders {
        s.join().unwrap();
    }
    client.close();
    drained.join().unwrap();
    let worst = worst.load(Ordering::Relaxed);
    eprintln!("deepest waker call: {worst} bytes below the shallowest on its thread");
    assert!(
        worst < 64 * 1024,
        "the waker was called {worst} bytes deeper in the stack than before on the same thread: \
         each written batch calls the waker, which writes the next batch"
    );
}

/// Runs `f` on a thread and fails the test if it does not return within
/// `limit` (a deadlock or a lost wake-up), instead of hanging the suite.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("did not return in time (deadlock or lost wake-up)")
}

fn spawn_call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn reconnecting() -> ClientConfig {
    ClientConfig {
        reconnect: Some(ReconnectPolicy::default().initial_delay(Duration::ZERO)),
        ..ClientConfig::default()
    }
}

fn on_reader_thread() -> bool {
    std::thread::current().name() == Some("flamingo-conn")
}

/// `n` events of code [`EV`] in one buffer (tags `first..first + n`).
fn events(first: i32, n: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(n as usize * 128);
    for t in first..first + n {
        b.extend_from_slice(&tagged(EV, t).to_bytes());
    }
    b
}

/// An instrument with one client connected and an unending stream of EV
/// events on the link (stopped through `stop`), the client subscribed to
/// them before the first one.
struct Streaming {
    inst: Instrument,
    client: Client,
    link: Link,
    stop: Arc<AtomicBool>,
    stream: std::thread::JoinHandle<u64>,
    sub: flamingo_client::Subscription,
}

fn streaming(config: ClientConfig) -> Streaming {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), config).unwrap();
    let link = inst.accept();
    let sub = client.subscribe_to(&[EV]);
    let stop = Arc::new(AtomicBool::new(false));
    let stream = event_stream(link.stream().try_clone().unwrap(), stop.clone());
    Streaming {
        inst,
        client,
        link,
        stop,
        stream,
        sub,
    }
}

/// A thread writing bursts of events on `stream` until `stop` is set (or
/// the link ends); returns how many it wrote. Its writes wait at most
/// 50 ms at a time and it looks at `stop` between them, so it ends at once
/// when told, even when the client has closed and the kernel keeps the
/// write blocked (a closed peer that advertised a zero window is probed,
/// not reset, for up to about 100 s).
fn event_stream(stream: TcpStream, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = stream;
        s.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut n = 0u64;
        let burst = events(1, 256);
        let end = Instant::now() + LONG;
        'bursts: while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            // The whole burst or nothing more: a partial message would
            // be garbage on the wire.
            let mut sent = 0;
            while sent < burst.len() {
                match s.write(&burst[sent..]) {
                    Ok(0) => break 'bursts,
                    Ok(k) => sent += k,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if stop.load(Ordering::SeqCst) || Instant::now() >= end {
                            break 'bursts;
                        }
                    }
                    Err(_) => break 'bursts,
                }
            }
            n += 256;
        }
        n
    })
}

/// Guarantee (the crate docs of `set_waker` and protocol.md on the send
/// side: the waker must not block, but "nothing queued may wait for it"):
/// the reader runs the waker right after routing a reply that freed a key;
/// while the waker stalls on the reader's thread, the request that waited
/// for that key, and a request made meanwhile by another thread, are on
/// the wire.
#[test]
fn a_waker_stalled_on_the_reader_holds_back_no_queued_request() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let armed = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = bounded::<()>(1);
    let (release, released) = bounded::<()>(1);
    {
        let armed = armed.clone();
        client.set_waker(Some(Arc::new(move || {
            if on_reader_thread() && armed.swap(false, Ordering::SeqCst) {
                let _ = entered_tx.send(());
                let _ = released.recv_timeout(LONG);
            }
        })));
    }
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (m1, _) = link.read().unwrap();
    let op2 = client.submit(tagged(A, 2), LONG).unwrap();
    poll_until("request 2 to wait for its key", LONG, || {
        client.stats().queued_messages == 1
    });
    armed.store(true, Ordering::SeqCst);
    link.send(&m1);
    entered
        .recv_timeout(LONG)
        .expect("the reader ran the waker");
    // The reader is in the waker: request 2 went out before it.
    let (m2, _) = link
        .read()
        .expect("request 2 was written before the waker ran");
    assert_eq!(m2.int32_data2, 2);
    // A request made while the reader is still in the waker goes out too.
    let c = client.clone();
    let call3 = spawn_call(move || c.request(tagged(B, 3), LONG));
    let (m3, _) = link
        .read()
        .expect("request 3 was written while the waker stalled");
    assert_eq!(m3.int32_data2, 3);
    release.send(()).unwrap();
    link.send(&m2);
    link.send(&m3);
    assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
    assert_eq!(op2.wait().unwrap().message.int32_data2, 2);
    let r3 = call3.recv_timeout(LONG).unwrap().unwrap();
    assert_eq!(r3.message.int32_data2, 3);
    client.close();
}

/// Guarantee (a request goes out promptly while the link is writable; the
/// reader writes what callers queued "every 16 messages routed from one
/// read"): while an unending stream of events keeps the reader routing, a
/// request made mid-stream reaches the instrument before the stream ends,
/// and gets its own reply.
#[test]
fn a_request_goes_out_while_a_stream_of_events_keeps_the_reader_busy() {
    let Streaming {
        inst: _inst,
        client,
        mut link,
        stop,
        stream,
        sub,
    } = streaming(ClientConfig::default());
    sub.recv_timeout(LONG).expect("the events flow");
    let op = client.submit(tagged(B, 9), LONG).unwrap();
    let (m, _) = link.read().expect("the request reaches the instrument");
    let still_streaming = !stream.is_finished();
    stop.store(true, Ordering::SeqCst);
    let sent = stream.join().unwrap();
    assert!(
        still_streaming,
        "the request reached the instrument only after {sent} events ended"
    );
    assert_eq!(m.int32_data2, 9);
    link.send(&m);
    assert_eq!(op.wait().unwrap().message.int32_data2, 9);
    client.close();
}

/// Guarantee (no request is stranded in the queue): a request queued
/// behind its key is freed by a reply that arrives in one read with a
/// long run of events; it goes out, and each caller gets its own reply.
#[test]
fn a_request_freed_by_a_reply_amid_events_goes_out() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (m1, _) = link.read().unwrap();
    let op2 = client.submit(tagged(A, 2), LONG).unwrap();
    poll_until("request 2 to wait for its key", LONG, || {
        client.stats().queued_messages == 1
    });
    let mut seg = events(1, 7);
    seg.extend_from_slice(&m1.to_bytes());
    seg.extend_from_slice(&events(100, 300));
    link.stream().write_all(&seg).unwrap();
    let (m2, _) = link.read().expect("request 2 goes out");
    assert_eq!(m2.int32_data2, 2);
    link.send(&m2);
    assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
    assert_eq!(op2.wait().unwrap().message.int32_data2, 2);
    client.close();
}

/// Guarantees (no caller gets another's reply; a request on a link that
/// ends fails with `Disconnected`, one still queued goes out on the next
/// link): the reply that frees a key arrives in the same segment as the
/// link's end; the request that waited for the key is either written on
/// the dying link (and fails) or on the next one (and gets its reply).
#[test]
fn a_reply_whose_segment_also_ends_the_link() {
    for round in 0..20 {
        let inst = Instrument::new();
        let client = Client::connect(&inst.addr(), reconnecting()).unwrap();
        let mut link = inst.accept();
        let op1 = client.submit(tagged(A, 1), LONG).unwrap();
        let (m1, _) = link.read().unwrap();
        let op2 = client.submit(tagged(A, 2), LONG).unwrap();
        poll_until("request 2 to wait for its key", LONG, || {
            client.stats().queued_messages == 1
        });
        let mut seg = m1.to_bytes().to_vec();
        seg.extend_from_slice(&events(1, 40));
        link.stream().write_all(&seg).unwrap();
        link.close();
        let second = std::thread::spawn(move || {
            let mut l = inst.accept();
            while let Some((m, _)) = l.read() {
                l.send(&m);
            }
        });
        assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
        match op2.wait() {
            Ok(r) => assert_eq!(r.message.int32_data2, 2, "round {round}"),
            Err(Error::Disconnected { .. }) => {}
            Err(e) => panic!("round {round}: request 2 failed with {e}"),
        }
        poll_until("the reconnect", LONG, || client.stats().reconnects == 1);
        client.close();
        second.join().unwrap();
    }
}

/// Guarantee (every call returns by its one deadline, with `Timeout`
/// naming the right phase, or with its own reply): many callers with short
/// deadlines make requests of one key while events keep the reader
/// routing; the instrument answers only every other request.
#[test]
fn callers_with_deadlines_while_the_reader_routes_events() {
    let Streaming {
        inst: _inst,
        client,
        link,
        stop,
        stream,
        ..
    } = streaming(ClientConfig::default());
    let writer = Arc::new(parking_lot::Mutex::new(link.stream().try_clone().unwrap()));
    let answerer = {
        let w = writer.clone();
        let mut link = link;
        std::thread::spawn(move || {
            let mut n = 0;
            while let Some((m, _)) = link.read() {
                n += 1;
                if m.int32_data2 % 2 == 0 {
                    let _ = w.lock().write_all(&m.to_bytes());
                }
            }
            n
        })
    };
    let late = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..8)
        .map(|t| {
            let (c, late) = (client.clone(), late.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let tag = t * 100 + i;
                    let timeout = Duration::from_millis(40);
                    let started = Instant::now();
                    let r = c.request(tagged(if t % 2 == 0 { A } else { B }, tag), timeout);
                    let took = started.elapsed();
                    if took > timeout + Duration::from_secs(1) {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                    match r {
                        Ok(reply) => assert_eq!(reply.message.int32_data2, tag),
                        // Write: the deadline passed while another thread
                        // (the reader, the sender, a caller) was writing the
                        // batch the request was in (a loaded machine can
                        // preempt it that long).
                        Err(Error::Timeout { phase, .. }) => assert!(
                            matches!(
                                phase,
                                TimeoutPhase::Reply
                                    | TimeoutPhase::KeyBusy
                                    | TimeoutPhase::SendLock
                                    | TimeoutPhase::Write
                            ),
                            "tag {tag}: {phase:?}"
                        ),
                        Err(e) => panic!("tag {tag}: {e}"),
                    }
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    stream.join().unwrap();
    client.close();
    let _ = writer.lock().shutdown(std::net::Shutdown::Both);
    answerer.join().unwrap();
    assert_eq!(
        late.load(Ordering::Relaxed),
        0,
        "calls returned long after their deadline"
    );
}

/// Guarantee (`close()` from any thread in any state returns promptly,
/// every waiter fails with `Disconnected`): the client is closed while a
/// stream of events keeps its reader routing and requests are queued.
#[test]
fn close_while_the_reader_routes_a_stream_of_events() {
    let Streaming {
        inst: _inst,
        client,
        mut link,
        stop,
        stream,
        sub,
    } = streaming(ClientConfig::default());
    sub.recv_timeout(LONG).expect("the events flow");
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (_m1, _) = link.read().unwrap();
    let op2 = client.submit(tagged(A, 2), LONG).unwrap();
    let c = client.clone();
    let took = within(LONG, move || {
        let t = Instant::now();
        c.close();
        t.elapsed()
    });
    assert!(took < Duration::from_secs(2), "close() took {took:?}");
    for op in [op1, op2] {
        match op.wait() {
            Err(Error::Disconnected { reason, .. }) => {
                assert_eq!(reason, DisconnectReason::ClosedByUser)
            }
            other => panic!("a waiting request ended with {other:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    stream.join().unwrap();
}

/// Guarantees (a large payload is written in full or the link ends; no
/// caller gets another's reply): requests with payloads larger than the
/// socket takes at once wait for their key while the reader routes the
/// reply that frees it; the reader's write of them is partial and the
/// sender thread finishes it.
#[test]
fn payloads_queued_for_the_reader_are_finished_by_the_sender() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (m1, _) = link.read().unwrap();
    let big = vec![0x5au8; 6 << 20];
    let op2 = client.submit_with_data(tagged(A, 2), &big, LONG).unwrap();
    let op3 = client.submit_with_data(tagged(A, 3), &big, LONG).unwrap();
    poll_until("requests 2 and 3 to wait for their key", LONG, || {
        client.stats().queued_messages == 2
    });
    let mut seg = m1.to_bytes().to_vec();
    seg.extend_from_slice(&events(1, 50));
    link.stream().write_all(&seg).unwrap();
    for tag in [2, 3] {
        let (m, n) = link.read_discarding().expect("the request arrives whole");
        assert_eq!((m.int32_data2, n), (tag, big.len() as u64));
        link.send(&m.with_additional_data_len(0));
    }
    assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
    assert_eq!(op2.wait().unwrap().message.int32_data2, 2);
    assert_eq!(op3.wait().unwrap().message.int32_data2, 3);
    client.close();
}

/// Guarantees (a request queued while the link is down goes out on the
/// next link; no caller gets another's reply): a link ends in the middle of
/// a stream of events while callers keep making requests; after the
/// reconnect every request either fails with `Disconnected` (it was on the
/// lost link) or gets its own reply.
#[test]
fn a_link_lost_mid_stream_while_requests_queue() {
    let Streaming {
        inst,
        client,
        link,
        stop,
        stream,
        sub,
    } = streaming(reconnecting());
    sub.recv_timeout(LONG).expect("the events flow");
    let callers: Vec<_> = (0..6)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                for i in 0..30 {
                    let tag = t * 100 + i;
                    let code = if t % 2 == 0 { A } else { B };
                    match c.request(tagged(code, tag), LONG) {
                        Ok(r) => {
                            assert_eq!(r.message.int32_data2, tag);
                            got += 1;
                        }
                        Err(Error::Disconnected { .. }) => {}
                        Err(e) => panic!("tag {tag}: {e}"),
                    }
                }
                got
            })
        })
        .collect();
    // The first link answers a few requests, then ends mid-stream.
    let mut link = link;
    for _ in 0..10 {
        let (m, _) = link.read().unwrap();
        link.send(&m);
    }
    link.close();
    stop.store(true, Ordering::SeqCst);
    stream.join().unwrap();
    let second = std::thread::spawn(move || {
        let mut l = inst.accept();
        while let Some((m, _)) = l.read() {
            l.send(&m);
        }
    });
    let got: usize = callers.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(got >= 150, "only {got} of 180 requests were answered");
    client.close();
    second.join().unwrap();
}

/// Echoes every message (the same code, `int32Data0` and tag) on `writer`
/// until the link ends; returns how many it answered.
fn echo_on(
    mut link: Link,
    writer: Arc<parking_lot::Mutex<TcpStream>>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        while let Some((m, _)) = link.read() {
            n += 1;
            if writer.lock().write_all(&m.to_bytes()).is_err() {
                break;
            }
        }
        n
    })
}

/// Guarantee (broadcast-code fences: a request of a code the instrument
/// also broadcasts is bracketed by fence queries, and gets its own reply):
/// requests of such a code (one per laser, from several threads) and the
/// fences they need are answered among a stream of events, so each fence
/// answer and each reply lands in a busy window of the reader.
#[test]
fn fenced_requests_amid_a_stream_of_events_get_their_own_replies() {
    let Streaming {
        inst: _inst,
        client,
        link,
        stop,
        stream,
        ..
    } = streaming(ClientConfig::default());
    let writer = Arc::new(parking_lot::Mutex::new(link.stream().try_clone().unwrap()));
    let echo = echo_on(link, writer.clone());
    let callers: Vec<_> = (1..=4)
        .map(|laser| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    let tag = laser * 100 + i;
                    let m = Message::new(CommandCode::LASER_LEVEL_GET)
                        .with_int32_data0(laser)
                        .with_int32_data2(tag);
                    let r = c.request(m, LONG).unwrap();
                    assert_eq!(
                        (r.message.int32_data0, r.message.int32_data2),
                        (laser, tag),
                        "laser {laser} got another request's reply"
                    );
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    assert!(client.stats().fences > 0, "the requests were fenced");
    stop.store(true, Ordering::SeqCst);
    stream.join().unwrap();
    client.close();
    let _ = writer.lock().shutdown(std::net::Shutdown::Both);
    echo.join().unwrap();
}

/// Guarantee (a flagged send's answer is an event, never a request's
/// reply; its key stays closed to requests until the answer came): each
/// thread sends a flagged message and then makes a request of the same
/// code, while a stream of events keeps the reader routing; the
/// instrument answers both. Every request gets its own reply.
#[test]
fn flagged_sends_and_requests_of_their_code_amid_a_stream_of_events() {
    let Streaming {
        inst: _inst,
        client,
        link,
        stop,
        stream,
        ..
    } = streaming(ClientConfig::default());
    let writer = Arc::new(parking_lot::Mutex::new(link.stream().try_clone().unwrap()));
    let echo = echo_on(link, writer.clone());
    let callers: Vec<_> = [A, B]
        .into_iter()
        .enumerate()
        .map(|(t, code)| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..30 {
                    let tag = t as i32 * 1000 + i;
                    c.send(
                        tagged(code, -tag - 1)
                            .with_flags(flamingo_client::codec::Flags::TRIGGER_CALL_BACK),
                    )
                    .unwrap();
                    let r = c.request(tagged(code, tag), LONG).unwrap();
                    assert_eq!(
                        r.message.int32_data2, tag,
                        "a request was handed a flagged send's answer"
                    );
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    stream.join().unwrap();
    client.close();
    let _ = writer.lock().shutdown(std::net::Shutdown::Both);
    echo.join().unwrap();
}

/// Guarantee (`close()` from any thread, in any state, exactly once; every
/// waiter fails with `Disconnected`): the waker closes the client from the
/// reader's thread, in the middle of routing a read that freed a key a
/// queued request waited for; a later `close()` elsewhere (which joins the
/// client's threads) returns, and the teardown ran once.
#[test]
fn the_waker_closes_the_client_from_the_reader_mid_batch() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let armed = Arc::new(AtomicBool::new(false));
    {
        let (armed, c) = (armed.clone(), client.clone());
        client.set_waker(Some(Arc::new(move || {
            if on_reader_thread() && armed.swap(false, Ordering::SeqCst) {
                c.close();
            }
        })));
    }
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (m1, _) = link.read().unwrap();
    let op2 = client.submit(tagged(A, 2), LONG).unwrap();
    let op3 = client.submit(tagged(A, 3), LONG).unwrap();
    poll_until("requests 2 and 3 to wait for their key", LONG, || {
        client.stats().queued_messages == 2
    });
    armed.store(true, Ordering::SeqCst);
    // The reply (whose delivery runs the waker) comes first in the read.
    let mut seg = m1.to_bytes().to_vec();
    seg.extend_from_slice(&events(100, 200));
    link.stream().write_all(&seg).unwrap();
    assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
    for op in [op2, op3] {
        match op.wait() {
            Err(Error::Disconnected { reason, .. }) => {
                assert_eq!(reason, DisconnectReason::ClosedByUser)
            }
            Ok(r) => panic!(
                "a request was answered after close: {}",
                r.message.int32_data2
            ),
            Err(e) => panic!("a waiting request ended with {e}"),
        }
    }
    let c = client.clone();
    within(LONG, move || c.close());
    client.set_waker(None);
    assert_eq!(client.stats().teardowns, 1);
}
