use super::*;
use crate::codec::CommandCode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A wire that records nothing and counts shutdowns.
#[derive(Default)]
struct NullWire {
    shut: AtomicUsize,
}

impl Wire for NullWire {
    fn write_by(&self, buf: &[u8], written: &mut usize, _: Deadline) -> std::io::Result<()> {
        *written += buf.len();
        Ok(())
    }
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn can_try_write(&self) -> bool {
        true
    }
    fn shutdown(&self) {
        self.shut.fetch_add(1, Ordering::Relaxed);
    }
}

impl Conn {
    /// Routes a message received after everything written so far.
    fn route_now(&mut self, key: Key, int0: i32, outcome: impl FnOnce() -> Outcome) -> Route {
        let w = self.wire_seq();
        self.route(key, int0, w, outcome)
    }
}

fn key(code: u32) -> Key {
    Key { code, sub: None }
}

fn limits() -> QueueLimits {
    QueueLimits {
        messages: 1000,
        bytes: 1 << 30,
    }
}

fn conn() -> Conn {
    let mut c = Conn::new(1, limits());
    up(&mut c);
    c
}

fn up(c: &mut Conn) -> Arc<NullWire> {
    let w = Arc::new(NullWire::default());
    c.install(w.clone(), None);
    w
}

fn entry(
    c: &mut Conn,
    msg: Message,
    kind: Kind,
    deadline: Deadline,
) -> (u64, slot::Receiver<Outcome>) {
    let (tx, rx) = slot::channel();
    let id = c.next_id();
    let check = kind == Kind::Request && msg.code == CommandCode::LASER_LEVEL_GET;
    c.enqueue(Queued::new(
        id,
        key(msg.code.0),
        &msg,
        None,
        kind,
        check,
        deadline,
        Duration::from_secs(1),
        Some(tx),
    ));
    (id, rx)
}

fn req(c: &mut Conn, code: u32, int0: i32) -> (u64, slot::Receiver<Outcome>) {
    entry(
        c,
        Message::new(CommandCode(code)).with_int32_data0(int0),
        Kind::Request,
        Deadline::NEVER,
    )
}

/// Writes one batch in full on the current link; returns its length.
fn write_batch(c: &mut Conn) -> usize {
    let role = c.claim_writer().expect("role");
    let mut buf = Vec::new();
    let mut wakes = Vec::new();
    c.take_batch(role.link, &mut buf, 1 << 20, &mut wakes);
    let n = c.batch_written(role.link, &mut wakes);
    c.release(role.link);
    n
}

fn reply(v: u32) -> Outcome {
    Ok(Delivered::Reply(Reply {
        message: Message::new(CommandCode(v)),
        data: Vec::new(),
        seq: 0,
        received_at: Instant::now(),
    }))
}

fn delivered(r: Route) -> bool {
    matches!(r, Route::Delivered(_))
}

fn got(rx: &slot::Receiver<Outcome>) -> Option<u32> {
    match rx.try_recv() {
        Ok(Ok(Delivered::Reply(r))) => Some(r.message.code.0),
        _ => None,
    }
}

#[test]
fn one_request_per_key_on_the_wire() {
    let mut c = conn();
    let (_a, _ra) = req(&mut c, 7, 0);
    let (_b, _rb) = req(&mut c, 7, 0);
    let (_x, _rx) = req(&mut c, 8, 0);
    assert_eq!(write_batch(&mut c), 2, "the second request of key 7 waits");
    assert!(!c.has_eligible());
    assert!(delivered(c.route_now(key(7), 0, || reply(7))));
    assert!(c.has_eligible());
    assert!(c.needs_sender(), "a freed key wakes the sender thread");
}

#[test]
fn a_message_received_before_a_request_was_written_is_not_its_reply() {
    let mut c = conn();
    let (_a, ra) = req(&mut c, 7, 1);
    write_batch(&mut c);
    let read_at = c.wire_seq();
    assert!(delivered(c.route(key(7), 0, read_at, || reply(1))));
    assert_eq!(got(&ra), Some(1));
    // The next request goes out while the rest of that read is routed.
    let (_b, rb) = req(&mut c, 7, 2);
    write_batch(&mut c);
    // A copy of the first reply, from the same read: not the second's.
    assert!(matches!(
        c.route(key(7), 0, read_at, || reply(1)),
        Route::Event { .. }
    ));
    assert!(delivered(c.route_now(key(7), 0, || reply(2))));
    assert_eq!(got(&rb), Some(2));
}

#[test]
fn a_key_freed_by_an_error_reply_lets_the_next_request_go() {
    let mut c = conn();
    let (_a, ra) = req(&mut c, 7, 0);
    let (_b, _rb) = req(&mut c, 7, 0);
    write_batch(&mut c);
    let r = c.route_now(key(7), 0, || {
        Err(Error::TooLarge {
            what: "additional data",
            size: 10,
            limit: 1,
        })
    });
    assert!(delivered(r));
    assert!(matches!(ra.try_recv(), Ok(Err(Error::TooLarge { .. }))));
    assert!(c.needs_sender());
}

#[test]
fn abandoned_request_blocks_its_key_until_the_late_reply() {
    let mut c = conn();
    let (a, _ra) = req(&mut c, 7, 0);
    write_batch(&mut c);
    assert_eq!(
        c.give_up(a, key(7), Instant::now()),
        GiveUp::TimedOut(TimeoutPhase::Reply)
    );
    let (b, _rb) = req(&mut c, 7, 0);
    assert_eq!(
        write_batch(&mut c),
        0,
        "key 7 is blocked by the unanswered request"
    );
    assert!(c.resync_due(Duration::from_secs(10), 64).is_some());
    assert!(matches!(c.route_now(key(7), 0, || reply(7)), Route::Late));
    assert_eq!(c.abandoned(), 0);
    assert_eq!(write_batch(&mut c), 1);
    assert_eq!(
        c.give_up(b, key(7), Instant::now()),
        GiveUp::TimedOut(TimeoutPhase::Reply)
    );
}

#[test]
fn delivery_and_removal_are_one_step() {
    let mut c = conn();
    let (a, ra) = req(&mut c, 7, 0);
    write_batch(&mut c);
    let wake = c.route_now(key(7), 0, || reply(7));
    // The caller reaches its deadline before it is woken: its outcome is
    // already in the slot.
    assert_eq!(
        c.give_up(a, key(7), Instant::now()),
        GiveUp::AlreadyDelivered
    );
    assert_eq!(got(&ra), Some(7));
    drop(wake);
}

#[test]
fn huge_window_never_overflows() {
    let mut c = conn();
    let (a, _ra) = req(&mut c, 7, 0);
    write_batch(&mut c);
    c.give_up(a, key(7), Instant::now());
    assert_eq!(c.resync_due(Duration::MAX, 64), None);
    assert!(c.resync_due(Duration::MAX, 0).is_some(), "over the cap");
}

#[test]
fn echo_is_checked_when_present() {
    let mut c = conn();
    let (_a, ra) = req(&mut c, 0x6008, 2);
    write_batch(&mut c);
    assert!(
        delivered(c.route_now(key(0x6008), 3, || reply(1))),
        "no echo check: never broadcast"
    );
    assert!(got(&ra).is_some());
}

#[test]
fn an_old_links_writer_cannot_touch_the_new_link() {
    let mut c = conn();
    let (_a, _ra) = req(&mut c, 7, 0);
    let old = c.claim_writer().unwrap();
    let mut buf = Vec::new();
    let mut wakes = Vec::new();
    c.take_batch(old.link, &mut buf, 1 << 20, &mut wakes);
    // The link ends and the next one comes up while the old write is stuck.
    let err = Error::disconnected(DisconnectReason::ClosedByPeer, "gone");
    c.end_link(&err, &mut wakes);
    let new_wire = up(&mut c);
    // The old writer fails now: nothing changes on the new link.
    assert!(c.write_failed(old.link, "broken pipe".into()).is_none());
    c.batch_unsent(old.link);
    c.release(old.link);
    assert!(c.writable());
    assert!(c.link_end.is_none());
    let (_b, _rb) = req(&mut c, 8, 0);
    assert_eq!(write_batch(&mut c), 1, "the new link is written");
    assert_eq!(new_wire.shut.load(Ordering::Relaxed), 0);
}

#[test]
fn unsent_batch_goes_back_in_order() {
    let mut c = conn();
    let (a, _ra) = req(&mut c, 1, 0);
    let (b, _rb) = req(&mut c, 2, 0);
    let role = c.claim_writer().unwrap();
    let mut buf = Vec::new();
    let mut wakes = Vec::new();
    c.take_batch(role.link, &mut buf, 1 << 20, &mut wakes);
    c.give_up(b, key(2), Instant::now());
    c.batch_unsent(role.link);
    c.release(role.link);
    assert_eq!(c.abandoned(), 0, "nothing was on the wire");
    assert_eq!(write_batch(&mut c), 1);
    assert_eq!(
        c.give_up(a, key(1), Instant::now()),
        GiveUp::TimedOut(TimeoutPhase::Reply)
    );
}

#[test]
fn queued_phases() {
    let mut c = Conn::new(1, limits());
    let (a, _ra) = req(&mut c, 1, 0);
    c.phase = Phase::Down {
        attempt: 1,
        retry_at: Instant::now(),
    };
    assert_eq!(
        c.give_up(a, key(1), Instant::now()),
        GiveUp::TimedOut(TimeoutPhase::LinkWait)
    );
    up(&mut c);
    let (b, _rb) = req(&mut c, 1, 0);
    assert_eq!(
        c.give_up(b, key(1), Instant::now()),
        GiveUp::TimedOut(TimeoutPhase::SendLock)
    );
    assert_eq!(
        c.give_up(b, key(1), Instant::now()),
        GiveUp::AlreadyDelivered
    );
}

#[test]
fn close_fails_every_waiter_once() {
    let mut c = conn();
    let (_a, ra) = req(&mut c, 1, 0);
    write_batch(&mut c);
    let (_b, rb) = req(&mut c, 1, 0);
    let mut wakes = Vec::new();
    assert!(
        c.close(DisconnectReason::ClosedByUser, "bye".into(), &mut wakes)
            .0
    );
    assert_eq!(wakes.len(), 2);
    assert!(matches!(ra.try_recv(), Ok(Err(e)) if e.is_disconnected()));
    assert!(matches!(rb.try_recv(), Ok(Err(e)) if e.is_disconnected()));
    assert!(
        !c.close(DisconnectReason::ClosedByUser, "again".into(), &mut wakes)
            .0
    );
}

#[test]
fn queue_is_bounded_and_detached_sends_expire() {
    let mut c = Conn::new(
        1,
        QueueLimits {
            messages: 2,
            bytes: 1 << 20,
        },
    );
    let past = Deadline::after(Duration::ZERO);
    let msg = Message::new(CommandCode::LASER_LEVEL_SET);
    let (_a, ra) = entry(&mut c, msg, Kind::Send { flagged: true }, past);
    drop(ra); // detached: nobody waits
    let (_b, _rb) = entry(&mut c, msg, Kind::Send { flagged: true }, past);
    assert!(
        c.check_room(MESSAGE_LEN, false).is_err(),
        "two messages is the limit"
    );
    let mut wakes = Vec::new();
    assert_eq!(c.expire_queued(&mut wakes), (2, 0));
    assert_eq!(c.queued(), (0, 0));
    assert!(c.check_room(MESSAGE_LEN, false).is_ok());
}

#[test]
fn a_flagged_send_keeps_its_key_from_requests_until_answered() {
    let mut c = conn();
    let code = CommandCode::CAMERA_IMAGE_SIZE_GET;
    let (_s, _rs) = entry(
        &mut c,
        Message::new(code),
        Kind::Send { flagged: true },
        Deadline::NEVER,
    );
    assert_eq!(write_batch(&mut c), 1);
    let (_r, rr) = req(&mut c, code.0, 0);
    assert_eq!(
        write_batch(&mut c),
        0,
        "the send's answer could be taken for the request's"
    );
    assert!(matches!(
        c.route_now(key(code.0), 0, || reply(1)),
        Route::Event { answered: true }
    ));
    assert_eq!(write_batch(&mut c), 1);
    assert!(delivered(c.route_now(key(code.0), 0, || reply(2))));
    assert_eq!(got(&rr), Some(2));
}

fn fence_answered(r: Route) -> Vec<Wake> {
    match r {
        Route::Fence(w, _) => w,
        _ => panic!("not a fence"),
    }
}

#[test]
fn broadcast_codes_are_fenced_on_both_sides() {
    let mut c = conn();
    let laser = CommandCode::LASER_LEVEL_GET.0;
    let fence = key(FENCE.0);
    let (_a, ra) = req(&mut c, laser, 2);
    // First the fence alone: the request waits for its answer.
    assert_eq!(write_batch(&mut c), 1);
    // A broadcast about laser 2 from before the fence: an event.
    assert!(matches!(
        c.route_now(key(laser), 2, || reply(10)),
        Route::Event { .. }
    ));
    assert!(fence_answered(c.route_now(fence, 0, || reply(0))).is_empty());
    // Now the request, and a fence after it, in one batch.
    assert_eq!(write_batch(&mut c), 2);
    // A stale broadcast just before the reply, then the reply: the last
    // one before the fence's answer is the reply.
    assert!(matches!(
        c.route_now(key(laser), 2, || reply(10)),
        Route::Held(None)
    ));
    assert!(matches!(
        c.route_now(key(laser), 2, || reply(50)),
        Route::Held(Some(_))
    ));
    assert_eq!(got(&ra), None, "not before the fence after it is answered");
    assert_eq!(fence_answered(c.route_now(fence, 0, || reply(0))).len(), 1);
    assert_eq!(got(&ra), Some(50));
    // A second request: its own fence first (written after it was queued,
    // after whatever its caller sent before, such as a set).
    let (_b, rb) = req(&mut c, laser, 2);
    assert_eq!(write_batch(&mut c), 1);
    assert!(matches!(
        c.route_now(key(laser), 2, || reply(99)),
        Route::Event { .. }
    ));
    fence_answered(c.route_now(fence, 0, || reply(0)));
    assert_eq!(write_batch(&mut c), 2, "the request and its fence");
    assert!(matches!(
        c.route_now(key(laser), 2, || reply(51)),
        Route::Held(None)
    ));
    fence_answered(c.route_now(fence, 0, || reply(0)));
    assert_eq!(got(&rb), Some(51));
    assert!(c.has_eligible() || c.queued().0 == 0);
}

#[test]
fn the_fast_path_writes_only_when_nothing_waits_before_it() {
    let mut c = conn();
    let (tx, _rx) = slot::channel();
    let id = c.next_id();
    let msg = Message::new(CommandCode(7));
    let q = Queued::new(
        id,
        key(7),
        &msg,
        None,
        Kind::Request,
        false,
        Deadline::NEVER,
        Duration::MAX,
        Some(tx),
    );
    let (role, _, _) = c.begin_direct(q).ok().expect("fast path");
    // Another caller meanwhile: the role is taken, so it queues.
    let (tx2, _rx2) = slot::channel();
    let id2 = c.next_id();
    let q2 = Queued::new(
        id2,
        key(8),
        &msg,
        None,
        Kind::Request,
        false,
        Deadline::NEVER,
        Duration::MAX,
        Some(tx2),
    );
    let q2 = c.begin_direct(q2).err().expect("queued");
    c.enqueue(q2);
    let mut wakes = Vec::new();
    c.batch_written(role.link, &mut wakes);
    c.release(role.link);
    assert!(
        c.needs_sender(),
        "the sender thread writes the other caller's message"
    );
}
