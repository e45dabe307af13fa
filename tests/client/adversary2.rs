//! Second adversarial round on the connection core's documented contract
//! (protocol.md sections 11 and 11a, the public docs of `Client`, `Op`,
//! `Subscription` and `ClientConfig`), aimed at the mechanisms added after
//! the first round: matching a message only to a request written before it
//! arrived, the fences around broadcast codes, finishing a begun message
//! past its caller's deadline, flagged sends, and teardown from the
//! client's own threads. Each test names the clause it checks. A test that
//! carries an "OBSERVED FAILURE" comment failed when it was written: it
//! documents a bug, not a flaky test.

use crate::common::{poll_until, Instrument, Link, LONG};

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use flamingo_client::codec::{CommandCode, Flags, Message};
use flamingo_client::{Client, ClientConfig, DisconnectReason, Error};

/// A code unknown to the catalogue: replies, never broadcast.
const A: CommandCode = CommandCode(0x7711);
/// Another one, for unrelated traffic.
const B: CommandCode = CommandCode(0x7712);

fn tagged(code: CommandCode, tag: i32) -> Message {
    Message::new(code).with_int32_data2(tag)
}

/// Runs `f` on a thread and fails the test if it does not return within
/// `limit` (a deadlock), instead of hanging the suite. The thread is left
/// behind when it hangs.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("did not return in time (deadlock or lost wake-up)")
}

/// Writes raw bytes on the instrument's side of a link.
fn raw(link: &Link, bytes: &[u8]) {
    let mut s = link.stream();
    s.write_all(bytes).unwrap();
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn disconnect_reason(e: &Error) -> Option<DisconnectReason> {
    match e {
        Error::Disconnected { reason, .. } => Some(*reason),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// (a) A message is matched only to a request written before it arrived

/// Clause (11, "Correlation never guesses"; conn.rs: a message "received
/// before the message was handed to the wire ... never this request's
/// reply"): an instrument sends a reply twice, and the copy's first half
/// arrives with the reply, before the next request of the code is written;
/// only its second half arrives after. A message whose first bytes arrived
/// before a request was written cannot be that request's reply.
///
/// OBSERVED FAILURE: request 2 receives the copy of reply 1 (tag 1). The
/// reader notes the wire order after *every* read (`Patient::read`), so a
/// message that straddles two reads takes the order of the read that
/// completed it, which came after request 2 was written by the reader's own
/// `flush()` (src/client/thread.rs `Patient::read` / `read_link`: the
/// order should be taken when the message's first byte was read).
#[test]
fn a_copy_split_across_reads_never_answers_the_next_request() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (m1, _) = link.read().unwrap();
    let op2 = client.submit(tagged(A, 2), LONG).unwrap();
    poll_until("request 2 to wait for its key", LONG, || {
        client.stats().queued_messages == 1
    });
    // Reply 1 and the first half of its copy, in one segment.
    let b = m1.to_bytes();
    let mut seg = b.to_vec();
    seg.extend_from_slice(&b[..64]);
    raw(&link, &seg);
    assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
    // Request 2 goes out once reply 1 freed the key.
    let (m2, _) = link.read().unwrap();
    assert_eq!(m2.int32_data2, 2);
    // The rest of the copy, then request 2's own reply.
    raw(&link, &b[64..]);
    link.send(&m2);
    let r2 = op2.wait().unwrap();
    assert_eq!(
        r2.message.int32_data2, 2,
        "request 2 was handed the copy of reply 1, which began arriving before request 2 was written"
    );
    client.close();
}

/// Clause (11, "Flagged sends": "its key stays closed to requests until the
/// answer arrives (an event, never a request's reply)"; and a message that
/// arrived before a message was written is never its answer): a reply sent
/// twice arrives, both copies in one segment; the copy arrived before the
/// flagged send queued behind the request was written. It must not count as
/// the send's answer, or the send's real answer goes to the next request.
///
/// OBSERVED FAILURE: request 2 receives the flagged send's answer (tag 3).
/// The reader writes the flagged send after routing reply 1 (its key is
/// free), then counts the copy (read before the send was written) as the
/// send's answer: `Conn::route` decrements `Gate::raw` for any message of
/// the key, without the `written_before` check it makes for requests; the
/// key reopens, request 2 is written, and the send's real answer is matched
/// to it (src/client/conn.rs `Conn::route`, the `g.raw > 0` branch).
#[test]
fn a_copy_read_before_a_flagged_send_was_written_is_never_its_answer() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (m1, _) = link.read().unwrap();
    // A flagged send of the same code waits behind request 1.
    let c = client.clone();
    let send =
        std::thread::spawn(move || c.send(tagged(A, 3).with_flags(Flags::TRIGGER_CALL_BACK)));
    poll_until("the flagged send to be queued", LONG, || {
        client.stats().queued_messages == 1
    });
    let op2 = client.submit(tagged(A, 2), LONG).unwrap();
    poll_until("request 2 to be queued", LONG, || {
        client.stats().queued_messages == 2
    });
    // Reply 1 twice, in one segment.
    let b = m1.to_bytes();
    let mut seg = b.to_vec();
    seg.extend_from_slice(&b);
    raw(&link, &seg);
    assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
    let (s, _) = link.read().unwrap();
    assert_eq!(s.int32_data2, 3, "the flagged send goes next");
    send.join().unwrap().unwrap();
    // The send's answer; then request 2 (written once the answer is in)
    // and its own reply.
    link.send(&s);
    let (m2, _) = link.read().unwrap();
    assert_eq!(m2.int32_data2, 2);
    link.send(&m2);
    let r2 = op2.wait().unwrap();
    assert_eq!(
        r2.message.int32_data2,
        2,
        "request 2 was handed the flagged send's answer; stats {:?}",
        client.stats()
    );
    client.close();
}

/// Clause (11, "Correlation never guesses"; conn.rs `Conn::route`: a
/// message that "arrived before this request was written" is "never this
/// request's reply"): while a request's 16 MiB of additional data are still
/// being written (the instrument has its header and is not reading), a
/// stray copy of the previous reply of that code arrives. The instrument
/// cannot have answered a request it has not read: the copy is not its
/// reply, and the request gets the answer sent after it was read in full.
///
/// OBSERVED FAILURE: the request returns the stray copy (tag 1) while its
/// own payload is still being written: a request is registered (given its
/// wire order) before its bytes leave, and `route` only compares that order
/// with the read's, so anything arriving during a long write matches it
/// (src/client/conn.rs `Conn::register` / `Conn::route`).
#[test]
#[ignore = "known limitation (protocol.md, section 11): a message read while a request's own bytes are still being written is matched to it; excluding it safely needs the write's completion ordered against reads"]
fn a_message_arriving_while_a_request_is_still_being_written_is_not_its_reply() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let op1 = client.submit(tagged(A, 1), LONG).unwrap();
    let (m1, _) = link.read().unwrap();
    link.send(&m1);
    assert_eq!(op1.wait().unwrap().message.int32_data2, 1);
    let c = client.clone();
    let big =
        std::thread::spawn(move || c.request_with_data(tagged(A, 2), &vec![7u8; 16 << 20], LONG));
    // The request's header has reached the instrument; its data has not.
    let mut head = [0u8; 128];
    poll_until("the request's header to arrive", LONG, || {
        link.stream().peek(&mut head).unwrap_or(0) == 128
    });
    let received = client.stats().messages_received;
    link.send(&m1); // a stray copy of reply 1
    poll_until("the client to read the copy", LONG, || {
        client.stats().messages_received > received
    });
    let (m2, n) = link.read_discarding().unwrap();
    assert_eq!((m2.int32_data2, n), (2, 16 << 20));
    link.send(&m2.with_additional_data_len(0));
    let r = big.join().unwrap().unwrap();
    assert_eq!(
        r.message.int32_data2, 2,
        "the request took a message that arrived while it was still being written"
    );
    client.close();
}

// ---------------------------------------------------------------------------
// (g) close() from the client's own threads

/// Clause (11, "Teardown": "`close()` ... is idempotent and safe from any
/// thread, including a callback, and every call returns only once the
/// teardown is complete ... one made on the client's own thread, such as a
/// callback, does not wait for itself"; within 50 ms): two callbacks close
/// the client on the same event. Every close returns, and a user's close
/// after them too.
///
/// OBSERVED FAILURE: deadlock. Each callback's `close()` joins every
/// callback thread but its own: callback 1 joins callback 2 while callback
/// 2 joins callback 1, and the user's `close()` then waits for both joins
/// forever (src/client/events.rs `Dispatcher::join`: a join from a callback
/// thread takes the handles of other callback threads that are themselves
/// inside a join).
#[test]
fn two_callbacks_closing_the_client_at_once_never_deadlock() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let closes = Arc::new(AtomicUsize::new(0));
    let dropped = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    for d in &dropped {
        let (c, closes, flag) = (client.clone(), closes.clone(), DropFlag(d.clone()));
        client
            .on_event(move |_| {
                let _keep = &flag;
                c.close();
                closes.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    // An unsolicited message: both callbacks see it and close.
    link.send(&tagged(B, 5));
    poll_until("both callbacks to call close()", LONG, || {
        closes.load(Ordering::SeqCst) >= 2 || client.stats().teardowns > 0
    });
    let c = client.clone();
    let took = within(Duration::from_secs(5), move || {
        let t = Instant::now();
        c.close();
        t.elapsed()
    });
    assert!(took < Duration::from_millis(500), "close took {took:?}");
    assert!(
        dropped.iter().all(|d| d.load(Ordering::SeqCst)),
        "a callback outlived close()"
    );
    drop(link.read());
}

/// Clause (11, "Teardown", as above; `set_waker` docs: the waker runs on a
/// client thread, "usually the reader"): the waker and a callback both close
/// the client when an event arrives. Every close returns.
///
/// OBSERVED FAILURE: deadlock. The reader (in the waker) joins the callback
/// thread, while the callback's `close()` joins the reader thread: each
/// join skips only the calling thread (src/client/shared.rs
/// `Shared::join_threads` and events.rs `Dispatcher::join`).
#[test]
fn the_waker_and_a_callback_closing_at_once_never_deadlock() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let armed = Arc::new(AtomicBool::new(false));
    let weak_closes = Arc::new(AtomicUsize::new(0));
    {
        let c = client.clone();
        let closes = weak_closes.clone();
        client
            .on_event(move |_| {
                c.close();
                closes.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    {
        // The waker holds a clone only while armed, and lets it go when it
        // closes, so nothing keeps the client alive afterwards.
        let slot = Arc::new(parking_lot::Mutex::new(Some(client.clone())));
        let armed = armed.clone();
        let closes = weak_closes.clone();
        client.set_waker(Some(Arc::new(move || {
            if !armed.load(Ordering::SeqCst) {
                return;
            }
            let c = slot.lock().take();
            if let Some(c) = c {
                c.close();
                closes.fetch_add(1, Ordering::SeqCst);
            }
        })));
    }
    armed.store(true, Ordering::SeqCst);
    link.send(&tagged(B, 5));
    poll_until("the client to close", LONG, || client.stats().teardowns > 0);
    let c = client.clone();
    let took = within(Duration::from_secs(5), move || {
        let t = Instant::now();
        c.close();
        t.elapsed()
    });
    assert!(took < Duration::from_millis(500), "close took {took:?}");
    // The callback closes on the message and again on the final event.
    assert!(
        weak_closes.load(Ordering::SeqCst) >= 2,
        "both closes returned"
    );
    drop(link.read());
}

// ---------------------------------------------------------------------------
// (b) Broadcast codes and their fences

fn laser(idx: i32, tag: i32) -> Message {
    Message::new(CommandCode::LASER_LEVEL_GET)
        .with_int32_data0(idx)
        .with_int32_data2(tag)
}

/// Reads the next message and checks its code.
fn expect(link: &mut Link, code: CommandCode) -> Message {
    let (m, _) = link.read().expect("a message");
    assert_eq!(m.code, code, "unexpected message {m:?}");
    m
}

/// Clause (11, "A caller gives up": the late reply is "discarded and
/// counted in `late_replies_discarded`"; `Op` docs: "Dropping an unfinished
/// `Op` abandons it: ... its reply is discarded"): a LASER_LEVEL_GET whose
/// caller gave up; its reply (the last message of the code before the
/// trailing fence's answer) comes late. It is discarded and counted, as for
/// any other code, not published to subscribers as if it were news.
///
/// OBSERVED FAILURE: the late reply is published as a `LaserLevel` event
/// and `late_replies_discarded` stays 0: `Conn::route` turns every message
/// of a broadcast key whose request was abandoned into an event (the
/// `front.waiter.is_none()` branch), and the abandoned flight is later
/// popped by the fence without a late reply counted (src/client/conn.rs
/// `Conn::route`, `Conn::fence_answered`).
#[test]
fn the_late_reply_of_an_abandoned_laser_query_is_discarded_not_published() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let events = client.subscribe_to(&[CommandCode::LASER_LEVEL_GET]);
    let op = client.submit(laser(2, 7), LONG).unwrap();
    let f0 = expect(&mut link, CommandCode::SYSTEM_STATE_GET);
    link.send(&f0);
    let q = expect(&mut link, CommandCode::LASER_LEVEL_GET);
    let f1 = expect(&mut link, CommandCode::SYSTEM_STATE_GET);
    drop(op); // the caller gives up before the answer
    poll_until("the request to be abandoned", LONG, || {
        client.stats().tombstones == 1
    });
    link.send(&q); // the late reply
    link.send(&f1);
    poll_until("the fence to be answered", LONG, || {
        client.stats().fences == 2
    });
    // A later request of the code is answered normally (a fence first).
    let c = client.clone();
    let next = std::thread::spawn(move || c.request(laser(2, 8), LONG));
    let f2 = expect(&mut link, CommandCode::SYSTEM_STATE_GET);
    link.send(&f2);
    let q2 = expect(&mut link, CommandCode::LASER_LEVEL_GET);
    let f3 = expect(&mut link, CommandCode::SYSTEM_STATE_GET);
    link.send(&q2);
    link.send(&f3);
    assert_eq!(next.join().unwrap().unwrap().message.int32_data2, 8);
    let published: Vec<i32> = events
        .try_iter()
        .filter_map(|e| e.message.map(|m| m.int32_data2))
        .collect();
    let s = client.stats();
    assert!(
        published.is_empty() && s.late_replies_discarded == 1,
        "late reply published as events {published:?}; late_replies_discarded {}",
        s.late_replies_discarded
    );
    client.close();
}

/// Clause (11, "Sometimes-unsolicited codes" and "Resynchronisation";
/// `request` docs: `Timeout` names the phase): a LASER_LEVEL_GET whose
/// reply came but whose trailing fence is never answered ends at its own
/// deadline (150 ms, inside the 300 ms `late_reply_window`) with a typed
/// `Timeout`; the unanswered fence then resets the link, and the next
/// query on the new link is answered.
#[test]
fn an_unanswered_trailing_fence_times_out_the_query_and_resets_the_link() {
    let inst = Instrument::new();
    let cfg = ClientConfig::default().late_reply_window(Duration::from_millis(300));
    let client = Client::connect(&inst.addr(), cfg).unwrap();
    let mut link = inst.accept();
    let c = client.clone();
    let first = std::thread::spawn(move || c.request(laser(1, 1), Duration::from_millis(150)));
    let f0 = expect(&mut link, CommandCode::SYSTEM_STATE_GET);
    link.send(&f0);
    let q = expect(&mut link, CommandCode::LASER_LEVEL_GET);
    let _f1 = expect(&mut link, CommandCode::SYSTEM_STATE_GET);
    link.send(&q); // the reply; the fence after it is never answered
    let r = first.join().unwrap();
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "expected a timeout, got {r:?}"
    );
    // The link is reset; the client reconnects by itself.
    let mut link2 = inst.accept();
    poll_until("the client to reconnect", LONG, || client.is_connected());
    let c = client.clone();
    let second = std::thread::spawn(move || c.request(laser(1, 2), LONG));
    let f2 = expect(&mut link2, CommandCode::SYSTEM_STATE_GET);
    link2.send(&f2);
    let q2 = expect(&mut link2, CommandCode::LASER_LEVEL_GET);
    let f3 = expect(&mut link2, CommandCode::SYSTEM_STATE_GET);
    link2.send(&q2);
    link2.send(&f3);
    assert_eq!(second.join().unwrap().unwrap().message.int32_data2, 2);
    assert_eq!(client.stats().link_resyncs, 1);
    drop(link);
    client.close();
}

// ---------------------------------------------------------------------------
// (c) A begun message is finished past its caller's deadline

/// Clause (`ClientConfig::write_stall_timeout`: "a partly written message
/// cannot be taken back: its remaining bytes are written even after its
/// caller's deadline, so no other call fails because a deadline cut it in
/// two"): a request with 8 MiB of data and a 200 ms deadline; the
/// instrument reads nothing for 600 ms, then everything. The caller times
/// out at its deadline; the link survives; the instrument receives the
/// message whole, then the next caller's request, which is answered.
#[test]
fn a_begun_message_is_finished_after_its_callers_deadline_and_the_link_lives() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let mut link = inst.accept();
    let t = Instant::now();
    let r = client.request_with_data(
        tagged(A, 1),
        &vec![1u8; 8 << 20],
        Duration::from_millis(200),
    );
    let took = t.elapsed();
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "expected a timeout, got {r:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "returned after {took:?}"
    );
    let c = client.clone();
    let next = std::thread::spawn(move || c.request(tagged(B, 2), LONG));
    std::thread::sleep(Duration::from_millis(400));
    let (m1, n) = link.read_discarding().unwrap();
    assert_eq!((m1.code, m1.int32_data2, n), (A, 1, 8 << 20));
    let (m2, _) = link.read().unwrap();
    assert_eq!((m2.code, m2.int32_data2), (B, 2));
    link.send(&m2);
    assert_eq!(next.join().unwrap().unwrap().message.int32_data2, 2);
    let s = client.stats();
    assert_eq!(s.disconnects, 0, "{s:?}");
    client.close();
}

/// Clause (11, "Teardown": `close()` "returns promptly (it interrupts ...
/// blocked writes)", within 50 ms): the sender thread is finishing a begun
/// message past its caller's deadline (the instrument reads nothing); a
/// `close()` interrupts it at once and every waiter fails with
/// `ClosedByUser`.
#[test]
fn close_interrupts_a_message_being_finished_past_its_deadline() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let link = inst.accept();
    let r = client.request_with_data(
        tagged(A, 1),
        &vec![1u8; 16 << 20],
        Duration::from_millis(100),
    );
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    let c = client.clone();
    let waiting = std::thread::spawn(move || c.request(tagged(B, 2), LONG));
    poll_until("the next request to queue", LONG, || {
        client.stats().queued_messages == 1
    });
    std::thread::sleep(Duration::from_millis(200)); // well inside the stall window
    let c = client.clone();
    let took = within(Duration::from_secs(5), move || {
        let t = Instant::now();
        c.close();
        t.elapsed()
    });
    assert!(took < Duration::from_millis(500), "close took {took:?}");
    let e = waiting.join().unwrap().unwrap_err();
    assert_eq!(
        disconnect_reason(&e),
        Some(DisconnectReason::ClosedByUser),
        "{e:?}"
    );
    drop(link);
}

/// Clause (`ClientConfig::write_stall_timeout`: "How long the instrument may
/// take nothing at all of a message that has begun on the wire before the
/// link is reset"): the instrument stops reading for good in the middle of a
/// message whose caller has given up; after the stall window the link is
/// reset, and a request queued behind it fails with `Disconnected
/// { SendFailed }` (without a reconnect policy) instead of waiting forever.
#[test]
fn a_stalled_begun_message_resets_the_link_after_the_stall_window() {
    let inst = Instrument::new();
    let cfg = ClientConfig::default().write_stall_timeout(Duration::from_millis(300));
    let client = Client::connect(&inst.addr(), cfg).unwrap();
    let link = inst.accept();
    let r = client.request_with_data(
        tagged(A, 1),
        &vec![1u8; 16 << 20],
        Duration::from_millis(100),
    );
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    let t = Instant::now();
    let r = client.request(tagged(B, 2), Duration::from_secs(5));
    let took = t.elapsed();
    match &r {
        Err(e) if disconnect_reason(e) == Some(DisconnectReason::SendFailed) => {}
        other => panic!("expected Disconnected {{ SendFailed }}, got {other:?}"),
    }
    assert!(took < Duration::from_secs(3), "ended after {took:?}");
    drop(link);
    client.close();
}

// ---------------------------------------------------------------------------
// (h) Per-subscription depth and byte budget

/// Clause (`subscribe_with_depth` docs: "Its additional data is still
/// bounded by `event_queue_bytes`"; 11 "Bounded queues"): a deep
/// subscription never holds more bytes of event data than the budget, and
/// its drops are counted.
#[test]
fn a_deep_subscription_is_still_bounded_by_the_byte_budget() {
    let inst = Instrument::new();
    let cfg = ClientConfig::default().event_queue_bytes(10_000);
    let client = Client::connect(&inst.addr(), cfg).unwrap();
    let mut link = inst.accept();
    let deep = client.subscribe_with_depth(Some(&[B]), 100_000);
    for i in 0..50 {
        link.send_with_data(&tagged(B, i), &[0u8; 1000]);
    }
    poll_until("every event to be published", LONG, || {
        client
            .stats()
            .subscribers
            .iter()
            .any(|s| s.id == deep.id() && s.delivered == 50)
    });
    let held: usize = deep
        .try_iter()
        .filter_map(|e| e.data.map(|d| d.len()))
        .sum();
    assert!(held <= 10_000, "held {held} bytes");
    assert!(deep.dropped() >= 40, "dropped {}", deep.dropped());
    client.close();
}

// ---------------------------------------------------------------------------
// (e) Queued messages that expire are counted

/// Clause (`Stats::sends_expired`: "Queued messages dropped because their
/// deadline passed before they could be written (the link was down or
/// busy); their callers, if any still wait, get `Timeout`"; 11 "Bounded
/// queues"): a `send()` queued while the sender thread is busy with another
/// caller's payload (the instrument is not reading) times out before it is
/// written, and is counted in `sends_expired`.
///
/// OBSERVED FAILURE: `sends_expired` stays 0 (the send is counted in
/// `timeouts`, "Requests that timed out", instead): the blocking caller
/// gives up at its deadline and takes its entry out of the queue itself,
/// which is counted as a request timeout, while only entries the sender
/// thread expires count as expired sends (src/client/op.rs
/// `Pending::give_up`, conn.rs `Conn::give_up`).
#[test]
fn a_send_that_expires_in_a_busy_queue_is_counted_as_expired() {
    let inst = Instrument::new();
    let cfg = ClientConfig::default().request_timeout(Duration::from_millis(200));
    let client = Client::connect(&inst.addr(), cfg).unwrap();
    let mut link = inst.accept();
    let c = client.clone();
    let big =
        std::thread::spawn(move || c.request_with_data(tagged(A, 1), &vec![1u8; 16 << 20], LONG));
    let mut head = [0u8; 128];
    poll_until("the payload's header to arrive", LONG, || {
        link.stream().peek(&mut head).unwrap_or(0) == 128
    });
    let r = client.send(tagged(B, 2));
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    let s = client.stats();
    let (m, _) = link.read_discarding().unwrap();
    link.send(&m.with_additional_data_len(0));
    big.join().unwrap().unwrap();
    assert_eq!(
        (s.sends_expired, s.queued_messages),
        (1, 0),
        "the expired send is not counted as expired: {s:?}"
    );
    client.close();
}
