//! `NativeRouter`: what Python callbacks and the compatibility socket need
//! from the client's event stream, done without the GIL.
//!
//! One thread per router (`flamingo-py-router`) drains a core subscription of
//! every event as fast as the events come (so the core's own queue never
//! overflows) and routes each one:
//!
//! - **raw replies**: the raw socket receives the reply to the latest
//!   message written raw (`raw_send`), and nothing else. Replies of one code
//!   come in order on one connection, so answers still owed to earlier raw
//!   writes of the same code come first: each raw write the instrument
//!   answers (flagged with TRIGGER_CALL_BACK, or of a code answered without
//!   the flag) owes one answer, and each message of that code that no
//!   request claimed and that arrived after such a write pays the oldest
//!   one (it goes to Python's events, as any other message). The first
//!   such message after the latest write once the earlier ones are paid is
//!   its reply. Its 128 bytes and additional data are written to a loopback
//!   socket pair whose other end Python holds as a real socket
//!   (`raw_open`), so `recv`, timeouts and `select` behave as on any
//!   socket. A new raw write discards the unread bytes of the previous
//!   reply. For a code the instrument also broadcasts with an index in
//!   `int32Data0` (LASER_LEVEL_GET), a message about another index neither
//!   is the reply nor pays an earlier write's answer.
//! - **events** for Python: message events whose code is in the wanted set
//!   (all codes, or the codes Python's callbacks ask for; it can change at
//!   any time), and every connection event, go to a bounded queue of
//!   `depth` events. When it is full the oldest message event is dropped and
//!   counted; Python logs the count. Other events are counted as filtered.
//!   Should this thread ever fall behind the core's queue (the client's
//!   `event_queue_depth`), the core drops the oldest there: those are
//!   counted in the same total.
//!
//! The thread never calls Python, so no thread of this crate ever takes the
//! GIL on its own: callbacks run on a Python thread that waits in `recv`.

use std::collections::{HashSet, VecDeque};
use std::io::{self, ErrorKind, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Select, Sender, TryRecvError};
use flamingo_client::codec::{CommandCode, Flags, MatchKey, Message, MESSAGE_LEN};
use flamingo_client::{Client, Event, EventKind, Subscription};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::event_tuple;
use crate::util::{block, decode, secs};

/// How often pending raw bytes are retried while the pair is full.
const FLUSH_TICK: Duration = Duration::from_millis(5);
/// Largest raw reply kept for reading (message and additional data): the
/// library's default additional-data limit plus the message.
const RAW_LIMIT: usize = 64 * 1024 * 1024 + MESSAGE_LEN;
/// Time allowed to set up the loopback pair.
const PAIR_TIMEOUT: Duration = Duration::from_secs(2);
/// Most answers kept owed to earlier raw writes: past that, the oldest is
/// forgotten (the core resets a link whose answers stay missing long before).
const OWED_LIMIT: usize = 1024;
/// Codes the instrument answers even without TRIGGER_CALL_BACK (as the
/// core's `send` counts them).
const ANSWERED_WITHOUT_FLAG: [CommandCode; 4] = [
    CommandCode::COMMON_SCOPE_SETTINGS_SAVE,
    CommandCode::COMMON_SCOPE_SETTINGS_LOAD,
    CommandCode::CAMERA_WORK_FLOW_STOP,
    CommandCode::SYSTEM_STATE_GET,
];

/// The reply a raw write waits for.
#[derive(Clone, Copy)]
struct Expect {
    code: u32,
    int0: i32,
    /// Check the echoed `int32Data0` (codes the instrument also broadcasts).
    echo: bool,
    /// Only messages received after this sequence number can be the reply.
    after: u64,
    /// The instrument answers it (flagged, or a code answered without the
    /// flag): once a later raw write replaces it, its answer is still owed.
    owes: bool,
}

impl Expect {
    fn matches(&self, ev: &Event, m: &Message) -> bool {
        m.code.0 == self.code
            && ev.seq > self.after
            && !(self.echo && m.int32_data0 != self.int0 && (1..=4).contains(&m.int32_data0))
    }
}

#[derive(Default)]
struct Raw {
    /// Our end of the pair (non-blocking); Python reads the other.
    pair: Option<TcpStream>,
    /// The latest raw write's reply, not come yet.
    expect: Option<Expect>,
    /// Answers still owed to earlier raw writes, oldest first.
    owed: VecDeque<Expect>,
    /// Reply bytes not yet written into the pair (it was full).
    pending: VecDeque<u8>,
    /// Bytes written into the pair since it was opened.
    written: u64,
    replies: u64,
    bytes_discarded: u64,
    overflows: u64,
    /// Messages that paid an answer owed to an earlier raw write.
    earlier_answers: u64,
}

impl Raw {
    /// A new raw write replaces the latest one: its answer, if the
    /// instrument gives one, is still to come and must not be its reply.
    fn supersede(&mut self) {
        if let Some(x) = self.expect.take() {
            if x.owes {
                if self.owed.len() >= OWED_LIMIT {
                    self.owed.pop_front();
                }
                self.owed.push_back(x);
            }
        }
    }

    /// A message of a code some earlier raw write still waits an answer
    /// for pays the oldest such answer (true): it is not the latest
    /// write's reply.
    fn pays_earlier(&mut self, ev: &Event, m: &Message) -> bool {
        match self.owed.iter().position(|x| x.matches(ev, m)) {
            Some(i) => {
                self.owed.remove(i);
                self.earlier_answers += 1;
                true
            }
            None => false,
        }
    }

    /// The link changed: no answer can come on another one.
    fn forget(&mut self) {
        self.expect = None;
        self.owed.clear();
    }

    fn flush(&mut self) {
        let Some(pair) = self.pair.as_mut() else {
            return;
        };
        while !self.pending.is_empty() {
            let (chunk, _) = self.pending.as_slices();
            match pair.write(chunk) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                    self.written += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    // Python closed its end: nobody will read raw replies.
                    self.bytes_discarded += self.pending.len() as u64;
                    self.pending.clear();
                    self.pair = None;
                    break;
                }
            }
        }
    }

    fn take(&mut self, m: &Message, data: Option<&[u8]>) {
        self.expect = None;
        let data = data.unwrap_or_default();
        if self.pending.len() + MESSAGE_LEN + data.len() > RAW_LIMIT {
            self.overflows += 1;
            return;
        }
        self.replies += 1;
        self.pending.extend(m.to_bytes());
        self.pending.extend(data);
        self.flush();
    }
}

struct State {
    wanted: Option<HashSet<u32>>,
    queue: VecDeque<Event>,
    depth: usize,
    delivered: u64,
    dropped: u64,
    filtered: u64,
    core_dropped: u64,
    ended: bool,
    raw: Raw,
    /// The core's queue of events for this router (`None` once it ended).
    sub: Option<Subscription>,
}

impl State {
    /// Routes, in order, every event the core has queued for this router:
    /// on the router thread, and on a raw write's thread, so that a reply
    /// that reached the core before the write is routed as one that came
    /// before it. False once the client closed the subscription.
    fn drain(&mut self) -> bool {
        let Some(sub) = self.sub.take() else {
            return false;
        };
        let open = loop {
            match sub.try_recv() {
                Ok(ev) => self.route(ev),
                Err(TryRecvError::Empty) => break true,
                Err(TryRecvError::Disconnected) => break false,
            }
        };
        self.core_dropped = sub.dropped();
        self.sub = Some(sub);
        open
    }

    fn push(&mut self, ev: Event) {
        if self.queue.len() >= self.depth {
            // The oldest message event goes; connection events (a handful
            // per link) are kept so a lost link is always reported.
            if let Some(i) = self.queue.iter().position(|e| e.message.is_some()) {
                self.queue.remove(i);
                self.dropped += 1;
            }
        }
        self.queue.push_back(ev);
    }

    fn route(&mut self, ev: Event) {
        let Some(m) = ev.message else {
            if matches!(
                ev.kind,
                EventKind::Disconnected { .. } | EventKind::Reconnected { .. }
            ) {
                // A reply cannot come on another link.
                self.raw.forget();
            }
            self.push(ev);
            return;
        };
        if !self.raw.pays_earlier(&ev, &m) && self.raw.expect.is_some_and(|x| x.matches(&ev, &m)) {
            self.raw.take(&m, ev.data.as_deref());
            return;
        }
        let wanted = self.wanted.as_ref().is_none_or(|w| w.contains(&m.code.0));
        if wanted {
            self.push(ev);
        } else {
            self.filtered += 1;
        }
    }
}

struct Inner {
    state: Mutex<State>,
    ready: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `events` is a clone of the subscription's receiver: this thread waits
/// on it for events and takes them (under the state's lock) from the
/// subscription in the state.
fn run(inner: Arc<Inner>, events: Receiver<Event>, stop: Receiver<()>) {
    loop {
        let tick = if inner.lock().raw.pending.is_empty() {
            Duration::from_secs(3600)
        } else {
            FLUSH_TICK
        };
        let mut sel = Select::new();
        let on_event = sel.recv(&events);
        sel.recv(&stop);
        match sel.ready_timeout(tick) {
            Ok(i) if i == on_event => {
                // Everything already queued is routed under one lock.
                let open = inner.lock().drain();
                inner.ready.notify_all();
                if !open {
                    break;
                }
            }
            // Stopped: a message, or the sender dropped.
            Ok(_) => break,
            Err(_) => inner.lock().raw.flush(),
        }
    }
    let mut st = inner.lock();
    let sub = st.sub.take();
    if let Some(sub) = &sub {
        st.core_dropped = sub.dropped();
    }
    st.ended = true;
    // The raw socket then reads what was written, then end of file, as a
    // closed connection does.
    st.raw.forget();
    st.raw.pair = None;
    drop(st);
    inner.ready.notify_all();
    drop(sub);
}

/// A connected loopback pair: (ours, theirs). The accepted end must be the
/// one we connected: another local process cannot slip in.
fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let ours = TcpStream::connect(listener.local_addr()?)?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + PAIR_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((theirs, peer)) if peer == ours.local_addr()? => {
                theirs.set_nonblocking(false)?;
                theirs.set_nodelay(true)?;
                ours.set_nodelay(true)?;
                ours.set_nonblocking(true)?;
                return Ok((ours, theirs));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(unix)]
fn into_handle(s: TcpStream) -> i64 {
    use std::os::unix::io::IntoRawFd;
    i64::from(s.into_raw_fd())
}

#[cfg(windows)]
fn into_handle(s: TcpStream) -> i64 {
    use std::os::windows::io::IntoRawSocket;
    // A SOCKET handle; the values Windows hands out fit in i64.
    s.into_raw_socket() as i64
}

/// Events for Python callbacks and raw replies for the compatibility socket.
#[pyclass(module = "flamingo_client._native", frozen)]
pub struct NativeRouter {
    client: Client,
    inner: Arc<Inner>,
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl NativeRouter {
    pub fn start(client: &Client, depth: usize) -> flamingo_client::Result<NativeRouter> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                wanted: None,
                queue: VecDeque::new(),
                depth,
                delivered: 0,
                dropped: 0,
                filtered: 0,
                core_dropped: 0,
                ended: false,
                raw: Raw::default(),
                sub: None,
            }),
            ready: Condvar::new(),
        });
        let sub = client.subscribe();
        let events = sub.receiver().clone();
        inner.lock().sub = Some(sub);
        let (tx, rx) = bounded(1);
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name("flamingo-py-router".into())
            .spawn(move || run(i, events, rx))
            .map_err(flamingo_client::Error::Io)?;
        Ok(NativeRouter {
            client: client.clone(),
            inner,
            stop: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn shut(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for NativeRouter {
    fn drop(&mut self) {
        Python::attach(|py| py.detach(|| self.shut()));
    }
}

#[pymethods]
impl NativeRouter {
    /// The next event for Python: (status, event, events dropped so far,
    /// here or in the core's queue before this router took them); status 0
    /// event, 1 timeout, 2 ended (the client or the router closed and every
    /// queued event was taken).
    #[pyo3(signature = (timeout))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(u8, Option<Py<PyAny>>, u64)> {
        let t = secs(py, timeout)?;
        let (status, ev, dropped) = py.detach(|| {
            let deadline = Instant::now() + t;
            let mut st = self.inner.lock();
            loop {
                let dropped = st.dropped + st.core_dropped;
                if let Some(ev) = st.queue.pop_front() {
                    st.delivered += 1;
                    return (0, Some(ev), dropped);
                }
                if st.ended {
                    return (2, None, dropped);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (1, None, dropped);
                }
                st = self
                    .inner
                    .ready
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        });
        let ev = ev.map(|e| event_tuple(py, &e)).transpose()?;
        Ok((status, ev, dropped))
    }

    /// The message codes Python wants (None: all). Connection events always pass.
    #[pyo3(signature = (codes))]
    fn set_codes(&self, codes: Option<Vec<u32>>) {
        self.inner.lock().wanted = codes.map(|c| c.into_iter().collect());
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = self.inner.lock();
        let d = PyDict::new(py);
        d.set_item("events_delivered", st.delivered)?;
        d.set_item("events_dropped", st.dropped + st.core_dropped)?;
        d.set_item("events_filtered", st.filtered)?;
        d.set_item("events_queued", st.queue.len())?;
        d.set_item("queue_depth", st.depth)?;
        d.set_item("core_events_dropped", st.core_dropped)?;
        d.set_item("raw_replies", st.raw.replies)?;
        d.set_item("raw_bytes_discarded", st.raw.bytes_discarded)?;
        d.set_item("raw_replies_too_large", st.raw.overflows)?;
        d.set_item("raw_answers_to_earlier_writes", st.raw.earlier_answers)?;
        d.set_item("raw_answers_owed", st.raw.owed.len())?;
        Ok(d)
    }

    /// Stops routing (queued events can still be taken). Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.shut());
    }

    /// Opens the loopback pair and returns the OS handle of the end Python
    /// reads (a file descriptor, or a SOCKET on Windows), once.
    fn raw_open(&self, py: Python<'_>) -> PyResult<i64> {
        if self.inner.lock().raw.pair.is_some() {
            return Err(crate::util::invalid(
                py,
                "the raw socket of this router is already open".into(),
            ));
        }
        let (ours, theirs) = block(py, || pair().map_err(flamingo_client::Error::Io))?;
        self.inner.lock().raw.pair = Some(ours);
        Ok(into_handle(theirs))
    }

    /// Stops waiting for the previous raw write's reply (its answer, if the
    /// instrument gives one, is still owed) and discards raw bytes nobody
    /// read. `consumed` is how many bytes Python has read from its end so
    /// far; returns how many are still in the pair (Python reads and drops
    /// exactly those).
    fn raw_discard(&self, consumed: u64) -> u64 {
        let mut st = self.inner.lock();
        st.drain();
        let raw = &mut st.raw;
        raw.supersede();
        let in_pair = raw.written.saturating_sub(consumed);
        raw.bytes_discarded += in_pair + raw.pending.len() as u64;
        raw.pending.clear();
        drop(st);
        self.inner.ready.notify_all();
        in_pair
    }

    /// Writes a raw message (flags as given) in order with everything else
    /// the client sends, and waits for its reply on the raw socket (unless
    /// its code only ever arrives unsolicited). Returns the sequence number
    /// before the send.
    fn raw_send(&self, py: Python<'_>, msg: &[u8], data: &[u8]) -> PyResult<u64> {
        let m = decode(py, msg)?;
        let info = m.code.info();
        let mut st = self.inner.lock();
        st.drain();
        st.raw.supersede();
        if !info.is_some_and(|i| i.unsolicited.always()) {
            let echo =
                info.is_some_and(|i| i.match_key == MatchKey::Int0 && i.unsolicited.possible());
            st.raw.expect = Some(Expect {
                code: m.code.0,
                int0: m.int32_data0,
                echo,
                after: self.client.last_seq(),
                owes: m.flags.contains(Flags::TRIGGER_CALL_BACK)
                    || ANSWERED_WITHOUT_FLAG.contains(&m.code),
            });
        }
        drop(st);
        block(py, || self.client.send_with_data(m, data)).inspect_err(|_| {
            let mut st = self.inner.lock();
            if st.raw.expect.is_some_and(|x| x.code == m.code.0) {
                st.raw.expect = None;
            }
        })
    }
}
