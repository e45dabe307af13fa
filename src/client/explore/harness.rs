//! One scenario run on one schedule: a real `Client` (the real `Shared`,
//! sender thread, routing and link teardown) on in-memory links, an
//! instrument per link, caller threads, and the invariants checked on the
//! outcome of every call and at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::instrument::{self, Behaviour};
use super::link::{Link, MemWire, Reader};
use crate::client::shared::{mark_thread, Shared};
use crate::client::sync::shuttled::{self, elapsed};
use crate::client::sync::thread::{self, Builder, JoinHandle};
use crate::client::{send, Client, Inner};
use crate::codec::{CommandCode, FrameError, FrameReader, Message};
use crate::{ClientConfig, DisconnectReason, Error};

/// How a call is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum How {
    /// `request_with_data`: blocking, may write its own message.
    Request,
    /// `submit_with_data` then `wait`: only the sender thread writes it.
    Submit,
    /// `send_with_data`: no reply, blocks until written.
    Send,
    /// `send_with_data` with TRIGGER_CALL_BACK: the instrument answers it,
    /// and the answer is an event, never a request's reply.
    FlaggedSend,
    /// `submit_with_data`, then the `Op` is dropped at once: the request is
    /// abandoned and its reply must be discarded.
    Abandon,
}

/// One call a caller thread makes. `tag` is unique in the scenario (> 0).
#[derive(Clone, Debug)]
pub(super) struct Call {
    pub tag: i32,
    pub code: CommandCode,
    pub int0: i32,
    pub how: How,
    pub timeout: Duration,
    pub data: usize,
}

impl Call {
    pub fn request(tag: i32, code: CommandCode, timeout_ms: u64) -> Call {
        Call {
            tag,
            code,
            int0: 0,
            how: How::Request,
            timeout: Duration::from_millis(timeout_ms),
            data: 0,
        }
    }

    pub fn how(mut self, how: How) -> Call {
        self.how = how;
        self
    }

    pub fn int0(mut self, v: i32) -> Call {
        self.int0 = v;
        self
    }

    pub fn data(mut self, n: usize) -> Call {
        self.data = n;
        self
    }
}

/// A scenario: the client's configuration, the instrument's behaviour, the
/// calls, the disruptions, and which outcomes are allowed.
#[derive(Clone)]
pub(super) struct Scenario {
    pub config: ClientConfig,
    pub behaviour: Behaviour,
    /// Bytes the client-to-instrument pipe holds (a socket's buffers).
    pub down_cap: usize,
    /// One list of calls per caller thread.
    pub callers: Vec<Vec<Call>>,
    /// Tags that may time out (their reply is late, dropped or stuck
    /// behind such a one); any other timeout is a failure.
    pub may_time_out: Vec<i32>,
    /// A reset to resynchronise is expected (a reply is dropped).
    pub resync_ok: bool,
    /// A thread cuts the first link at a point the schedule chooses.
    pub cut: bool,
    /// Threads that each send a broadcast of this code about this index.
    pub broadcasts: Vec<(CommandCode, i32)>,
    /// A thread moves time on (to the next deadline, at most 1 s) this
    /// many times while other threads can run (as if they were
    /// descheduled): timeouts, partial writes and resets
    /// may then happen anywhere, so only correlation, justified
    /// disconnects, the probe and the teardown are checked.
    pub jumps: usize,
    /// The link has writes that never wait (false: as on Windows).
    pub try_write: bool,
    /// Threads that call `close()` at a point the schedule chooses.
    pub closers: usize,
    /// A thread polls the client's state and checks that once it reads
    /// `Closed`, `stats().teardowns` is 1 (what tests that poll
    /// `is_connected()` rely on).
    pub watch_teardown: bool,
    /// Links the run may open (reconnects + 1).
    pub max_links: u64,
    /// After the calls, a fresh request must succeed (no wedged link).
    pub probe: bool,
    /// A waker is set (it yields: the schedule may run anything while the
    /// client's threads are in it).
    pub waker: bool,
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            config: ClientConfig::default(),
            behaviour: Behaviour::default(),
            down_cap: 512,
            callers: Vec::new(),
            may_time_out: Vec::new(),
            resync_ok: false,
            cut: false,
            broadcasts: Vec::new(),
            watch_teardown: false,
            jumps: 0,
            try_write: true,
            closers: 0,
            max_links: 4,
            probe: true,
            waker: false,
        }
    }
}

/// What the schedules of one test did, summed (to see that the
/// interesting outcomes do occur).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tally {
    pub schedules: u64,
    pub replies: u64,
    pub broadcasts_as_replies: u64,
    pub timeouts: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    pub resyncs: u64,
    pub virtual_ms: u64,
}

std::thread_local! {
    static TALLY: std::cell::Cell<Tally> = std::cell::Cell::new(Tally::default());
}

fn tally(f: impl FnOnce(&mut Tally)) {
    TALLY.with(|t| {
        let mut v = t.get();
        f(&mut v);
        t.set(v);
    });
}

/// The tally so far, reset.
pub(super) fn take_tally() -> Tally {
    TALLY.with(|t| t.replace(Tally::default()))
}

/// The code of the final probe (no scenario uses it otherwise).
const PROBE: CommandCode = CommandCode::CAMERA_IMAGE_SIZE_GET;
const PROBE_TAG: i32 = 1_000_000;

/// What the harness shares with its threads.
struct World {
    sc: Scenario,
    behaviour: Arc<Behaviour>,
    links: std::sync::Mutex<Vec<Arc<Link>>>,
    instruments: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Link ends the reader has seen, and those whose teardown
    /// (`link_ended`) has finished. A `Disconnected` is justified only by a
    /// link end seen before the call returned and not finished before it
    /// began, or by a `close()`.
    ends_seen: AtomicU64,
    ends_done: AtomicU64,
    closing: AtomicBool,
    /// A logical clock of harness steps (ordering within one instant).
    ticks: AtomicU64,
    /// Broadcasts sent (code, index), with the tick after each.
    broadcast_at: std::sync::Mutex<Vec<(CommandCode, i32, u64)>>,
    /// Replies handed to their callers.
    replies: AtomicU64,
    violations: std::sync::Mutex<Vec<String>>,
}

impl World {
    fn violation(&self, v: String) {
        self.violations.lock().expect("harness lock").push(v);
    }

    fn new_link(self: &Arc<World>) -> Arc<Link> {
        let mut links = self.links.lock().expect("harness lock");
        let link = Link::new(links.len() as u64 + 1, self.sc.down_cap);
        links.push(link.clone());
        drop(links);
        let (l, b) = (link.clone(), self.behaviour.clone());
        let h = Builder::new()
            .name(format!("instrument-{}", link.id))
            .spawn(move || instrument::serve(l, b))
            .expect("spawn");
        self.instruments.lock().expect("harness lock").push(h);
        link
    }

    fn link_count(&self) -> u64 {
        self.links.lock().expect("harness lock").len() as u64
    }

    fn first_link(&self) -> Arc<Link> {
        self.links.lock().expect("harness lock")[0].clone()
    }
}

/// Runs `sc` once (on the schedule shuttle chose) and panics with every
/// invariant it broke.
pub(super) fn run(sc: &Scenario) {
    let clock = shuttled::start(Duration::from_secs(3600));
    let world = Arc::new(World {
        behaviour: Arc::new(sc.behaviour.clone()),
        sc: sc.clone(),
        links: Default::default(),
        instruments: Default::default(),
        ends_seen: AtomicU64::new(0),
        ends_done: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        ticks: AtomicU64::new(1),
        broadcast_at: Default::default(),
        replies: AtomicU64::new(0),
        violations: Default::default(),
    });
    let shared = Arc::new(Shared::new("in-memory instrument", sc.config.clone()));
    let link = world.new_link();
    shared.conn.lock().install(
        Arc::new(MemWire {
            link: link.clone(),
            try_write: sc.try_write,
        }),
        None,
    );
    let sender = {
        let s = shared.clone();
        Builder::new()
            .name("flamingo-send".into())
            .spawn(move || send::sender_loop(s))
            .expect("spawn")
    };
    let reader = {
        let (s, w) = (shared.clone(), world.clone());
        Builder::new()
            .name("flamingo-conn".into())
            .spawn(move || read_links(s, w, link))
            .expect("spawn")
    };
    let core_done: Arc<Vec<Box<dyn Fn() -> bool + Send + Sync>>> = Arc::new(vec![
        Box::new(sender.finished_flag()),
        Box::new(reader.finished_flag()),
    ]);
    {
        let mut t = shared.threads.lock();
        t.sender = Some(sender);
        t.conn = Some(reader);
    }
    let client = Client {
        inner: Arc::new(Inner {
            shared: shared.clone(),
        }),
    };

    if sc.waker {
        client.set_waker(Some(Arc::new(shuttle::thread::yield_now)));
    }
    let mut others = Vec::new();
    if sc.cut {
        let w = world.clone();
        others.push(thread::spawn(move || {
            pause();
            w.first_link().cut();
        }));
    }
    for &(code, index) in &sc.broadcasts {
        let w = world.clone();
        others.push(thread::spawn(move || {
            pause();
            instrument::broadcast(&w.first_link(), code, index);
            let t = w.ticks.fetch_add(1, Relaxed);
            w.broadcast_at
                .lock()
                .expect("harness lock")
                .push((code, index, t));
        }));
    }
    if sc.watch_teardown {
        let (c, w) = (client.clone(), world.clone());
        others.push(thread::spawn(move || loop {
            if matches!(c.state(), crate::ConnectionState::Closed { .. }) {
                let n = c.stats().teardowns;
                if n != 1 {
                    w.violation(format!(
                        "state() said Closed while stats().teardowns was {n}"
                    ));
                }
                return;
            }
            shuttle::thread::yield_now();
        }));
    }
    if sc.jumps > 0 {
        let n = sc.jumps;
        others.push(thread::spawn(move || {
            for _ in 0..n {
                pause();
                shuttled::jump(Duration::from_secs(1));
            }
        }));
    }
    for _ in 0..sc.closers {
        let (c, w, done) = (client.clone(), world.clone(), core_done.clone());
        others.push(thread::spawn(move || {
            pause();
            close_and_check(&c, &w, &done);
        }));
    }
    let callers: Vec<_> = sc
        .callers
        .iter()
        .map(|calls| {
            let (c, w, calls) = (client.clone(), world.clone(), calls.clone());
            thread::spawn(move || {
                for call in &calls {
                    make_call(&c, &w, call);
                }
            })
        })
        .collect();
    for h in callers.into_iter().chain(others) {
        h.join().expect("a harness thread panicked");
    }

    if sc.probe && !shared.conn.lock().is_closed() {
        // Long enough for a key blocked by a dropped reply to be freed by a
        // reset to resynchronise.
        let wait = sc.config.late_reply_window + Duration::from_secs(5);
        let probe = Call::request(PROBE_TAG, PROBE, wait.as_millis() as u64);
        make_call(&client, &world, &probe);
    }
    close_and_check(&client, &world, &core_done);
    drop(client);
    let instruments = std::mem::take(&mut *world.instruments.lock().expect("harness lock"));
    for h in instruments {
        h.join().expect("an instrument thread panicked");
    }
    // No reply lost: every reply the reader matched to a request reached
    // its caller (an abandoned request's may be dropped with its `Op`).
    let matched = shared.counters.replies_matched.load(Relaxed);
    let taken = world.replies.load(Relaxed);
    let abandons = sc.callers.iter().flatten().any(|c| c.how == How::Abandon);
    if matched != taken && !(abandons && matched > taken) {
        world.violation(format!(
            "the reader matched {matched} replies but callers received {taken}"
        ));
    }
    tally(|t| {
        t.schedules += 1;
        t.reconnects += world.link_count() - 1;
        t.resyncs += shared.counters.link_resyncs.load(Relaxed);
        t.virtual_ms += elapsed().as_millis() as u64;
    });
    shuttled::stop(clock);
    let v = world.violations.lock().expect("harness lock").clone();
    if !v.is_empty() {
        panic!(
            "{} invariant(s) broken on schedule #{}:\n  {}",
            v.len(),
            shuttled::runs(),
            v.join("\n  ")
        );
    }
}

/// Lets the schedule choose when a disruption happens: a random number of
/// scheduling points first.
fn pause() {
    use shuttle::rand::Rng;
    let n = shuttle::rand::thread_rng().gen_range(0..24);
    for _ in 0..n {
        shuttle::thread::yield_now();
    }
}

/// `close()`, then: every core thread has ended, and no time passed.
fn close_and_check(c: &Client, w: &World, done: &[Box<dyn Fn() -> bool + Send + Sync>]) {
    w.closing.store(true, Relaxed);
    let t0 = elapsed();
    c.close();
    if !done.iter().all(|f| f()) {
        w.violation("close() returned while a client thread was still running".into());
    }
    let took = elapsed() - t0;
    if !took.is_zero() && w.sc.jumps == 0 {
        w.violation(format!("close() took {took:?} (waited for time to pass)"));
    }
}

/// Makes one call and checks its outcome.
fn make_call(c: &Client, w: &World, call: &Call) {
    let msg = Message::new(call.code)
        .with_int32_data0(call.int0)
        .with_int32_data1(call.tag);
    let data = vec![0x5a; call.data];
    let timeout = match call.how {
        How::Send | How::FlaggedSend => c.config().request_timeout,
        _ => call.timeout,
    };
    let flagged = msg.with_flags(crate::codec::Flags::TRIGGER_CALL_BACK);
    let done0 = w.ends_done.load(Relaxed);
    let t0 = w.ticks.fetch_add(1, Relaxed);
    let started = elapsed();
    let res = match call.how {
        How::Request => c.request_with_data(msg, &data, timeout).map(Some),
        How::Submit => c
            .submit_with_data(msg, &data, timeout)
            .and_then(|op| op.wait())
            .map(Some),
        How::Send => c.send_with_data(msg, &data).map(|_| None),
        How::FlaggedSend => c.send_with_data(flagged, &data).map(|_| None),
        How::Abandon => c.submit_with_data(msg, &data, timeout).map(|op| {
            drop(op);
            None
        }),
    };
    // A request of a code the instrument also broadcasts returns when the
    // fence written after it is answered (its reply may be superseded until
    // then), not at the instant its reply arrived.
    let broadcast_code = call
        .code
        .info()
        .is_some_and(|i| i.unsolicited.possible() && !i.unsolicited.always());
    let strict = w.sc.jumps == 0 && !broadcast_code;
    let ended = elapsed();
    let seen1 = w.ends_seen.load(Relaxed);
    let deadline = started + timeout;
    let who = format!(
        "call {} ({:?} {} at {started:?})",
        call.tag, call.how, call.code
    );
    if strict && ended > deadline {
        w.violation(format!(
            "{who} returned at {ended:?}, after its deadline {deadline:?}"
        ));
    }
    match res {
        Ok(Some(r)) => {
            tally(|t| t.replies += 1);
            w.replies.fetch_add(1, Relaxed);
            let m = r.message;
            if m.code == call.code && m.int32_data1 == instrument::BROADCAST_TAG {
                // A broadcast of the quantity asked for, sent while the
                // request was on its way, may stand for its reply
                // (protocol.md); one sent before the call began may not
                // (a scenario broadcasts a code and index at most once),
                // nor one about another laser where the echo is checked.
                tally(|t| t.broadcasts_as_replies += 1);
                let sent = w.broadcast_at.lock().expect("harness lock").clone();
                let echo = c.shared().checks_echo(&msg);
                if echo && m.int32_data0 != call.int0 {
                    w.violation(format!(
                        "{who} got the broadcast about index {} as its reply",
                        m.int32_data0
                    ));
                }
                if sent
                    .iter()
                    .any(|&(c, i, b)| c == m.code && i == m.int32_data0 && b < t0)
                {
                    w.violation(format!(
                        "{who} got a broadcast sent before the call began (a stale twin)"
                    ));
                }
            } else if m.code != call.code || m.int32_data1 != call.tag {
                w.violation(format!(
                    "{who} got another's reply: {} tagged {}",
                    m.code, m.int32_data1
                ));
            }
            let arrived = r
                .received_at
                .saturating_duration_since(shuttled::now() - elapsed());
            if strict && ended != arrived {
                w.violation(format!(
                    "{who} returned at {ended:?}, {:?} after its reply arrived",
                    ended.saturating_sub(arrived)
                ));
            }
        }
        Ok(None) => {}
        Err(Error::Timeout { phase, .. }) => {
            tally(|t| t.timeouts += 1);
            if ended < deadline {
                w.violation(format!("{who} timed out ({phase:?}) early, at {ended:?}"));
            }
            if strict && !w.sc.may_time_out.contains(&call.tag) {
                w.violation(format!(
                    "{who} timed out ({phase:?}) although the instrument answers it at once: a lost reply or a wedged key"
                ));
            }
        }
        Err(Error::Disconnected { reason, detail }) => {
            tally(|t| t.disconnects += 1);
            // A client closed by a link loss (no reconnect policy) fails
            // every later call; the loss itself is checked by the reader.
            let closed = w.closing.load(Relaxed) || c.shared().conn.lock().is_closed();
            if seen1 == done0 && !closed {
                w.violation(format!(
                    "{who} got Disconnected({reason:?}: {detail}) at {ended:?} on a healthy link"
                ));
            }
        }
        Err(Error::TooLarge { .. })
            if w.sc.behaviour.oversized.iter().any(|(t, _)| *t == call.tag) =>
        {
            // The reply, over the limit: matched and delivered as an error.
            w.replies.fetch_add(1, Relaxed);
        }
        Err(e) => w.violation(format!("{who} failed unexpectedly: {e}")),
    }
}

/// The connection thread's part: reads and routes messages until the link
/// ends, ends it with the real `link_ended`, and reconnects (a new link at
/// once) while the policy says so.
fn read_links(shared: Arc<Shared>, w: Arc<World>, mut link: Arc<Link>) {
    mark_thread(shared.id);
    crate::client::shared::mark_reader(shared.id);
    loop {
        let detail = read_link(&shared, &link);
        let (closed, reset) = {
            let c = shared.conn.lock();
            (c.is_closed(), c.link_end.clone())
        };
        if !link.was_cut() && !closed && w.sc.jumps == 0 {
            match reset {
                Some((DisconnectReason::Resynchronised, _)) if w.sc.resync_ok => {}
                Some((r, d)) => w.violation(format!(
                    "the client reset link {} ({r:?}: {d}) although the instrument was healthy",
                    link.id
                )),
                None => w.violation(format!("link {} ended with no cause", link.id)),
            }
        }
        w.ends_seen.fetch_add(1, Relaxed);
        let policy =
            super::super::thread::link_ended(&shared, DisconnectReason::ClosedByPeer, detail);
        w.ends_done.fetch_add(1, Relaxed);
        if policy.is_none() {
            return;
        }
        if w.link_count() >= w.sc.max_links {
            w.violation(format!("more than {} links were needed", w.sc.max_links));
            shared.shut(DisconnectReason::GaveUp, "too many links".into());
            return;
        }
        let next = w.new_link();
        {
            let mut c = shared.conn.lock();
            if c.is_closed() {
                drop(c);
                next.cut();
                return;
            }
            c.install(
                Arc::new(MemWire {
                    link: next.clone(),
                    try_write: w.sc.try_write,
                }),
                None,
            );
            shared.cv.notify_all();
        }
        link = next;
    }
}

/// Reads and routes one link's messages until it ends.
fn read_link(shared: &Shared, link: &Link) -> String {
    // As the real reader: each read notes the wire order then, and a
    // message is matched against the read that brought its first byte.
    let reads = std::rc::Rc::new(std::cell::RefCell::new(
        super::super::thread::Reads::default(),
    ));
    let noted = reads.clone();
    let conn = &shared.conn;
    let mut r = super::super::thread::Counted {
        inner: Noting {
            r: Reader {
                pipe: link.up.clone(),
                max: usize::MAX,
            },
            shared,
            note: move |n| noted.borrow_mut().note(n, conn.lock().read_returned()),
        },
        pos: 0,
    };
    let mut framer = FrameReader::new(shared.config.additional_data_limit);
    loop {
        let start = r.pos;
        let skipped = framer.stats().bytes_skipped;
        let msg = match framer.read_message(&mut r) {
            Ok(m) => m,
            Err(e) => return e.to_string(),
        };
        let seq = shared.next_seq();
        let mut data = Vec::new();
        let mut failure = None;
        if msg.additional_data_len > 0 {
            match framer.read_additional(&mut r, msg.additional_data_len, &mut data) {
                Ok(()) => {}
                Err(FrameError::TooLarge { size, limit }) => {
                    failure = Some(Error::TooLarge {
                        what: "additional data",
                        size: size.into(),
                        limit: limit.into(),
                    });
                }
                Err(e) => return e.to_string(),
            }
        }
        let first = start + (framer.stats().bytes_skipped - skipped);
        let written_before = reads.borrow_mut().written_before(first);
        shared.route(msg, data, seq, shuttled::now(), failure, written_before);
        if reads.borrow_mut().routed() {
            shared.flush_routed();
        }
    }
}

/// A reader that reports every read that returned bytes.
struct Noting<'a, F: FnMut(usize)> {
    r: Reader,
    /// As the real reader, it writes what callers queued while it routed
    /// the last read before it reads again.
    shared: &'a Shared,
    note: F,
}

impl<F: FnMut(usize)> std::io::Read for Noting<'_, F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.shared.end_reader_batch();
        let n = self.r.read(out)?;
        if n > 0 {
            (self.note)(n);
        }
        Ok(n)
    }
}
