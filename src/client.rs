//! The [`Client`]: one connection to the command port, shared by any number
//! of threads.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use parking_lot::{Condvar, Mutex};

use crate::codec::{hex_dump, CommandCode, Flags, MatchKey, Message, StatusClass, MESSAGE_LEN};
use crate::correlate::{Correlator, Key, Match};
use crate::events::{CallbackId, Dispatcher, Event, EventKind, Hub, Subscription};
use crate::live::LiveStream;
use crate::stats::{Counters, Latency, Stats};
use crate::{transport, ClientConfig, Error, Result};

/// A reply to a request, with its status untouched.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The reply message.
    pub message: Message,
    /// Additional data that followed it (empty if none).
    pub data: Vec<u8>,
    /// The reader's sequence number for this reply. Events with a larger
    /// number arrived after it.
    pub seq: u64,
    /// When the reader received it.
    pub received_at: Instant,
}

/// Where the connection stands, from [`Client::state`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Created with [`Client::new`] and not opened yet.
    NotConnected,
    /// A connection attempt is under way.
    Connecting,
    /// Connected.
    Connected,
    /// The link broke; the supervisor is reconnecting (attempt is 1-based).
    Reconnecting {
        /// The attempt in progress or next.
        attempt: u32,
    },
    /// Closed for good.
    Closed {
        /// Why.
        reason: String,
    },
}

type ReplySender = oneshot::Sender<Result<Reply>>;

#[derive(Default)]
struct WriterSlot {
    stream: Option<TcpStream>,
    link: u64,
    write_timeout: Option<Duration>,
}

#[derive(Default)]
struct LinkSlot {
    id: u64,
    /// A clone of the socket used only to shut it down (wakes the reader and
    /// any blocked write without taking the send mutex).
    shutdown: Option<TcpStream>,
}

/// State shared by client handles, the reader thread and the supervisor.
pub(crate) struct Shared {
    pub addr: String,
    pub config: ClientConfig,
    pending: Mutex<Correlator<ReplySender>>,
    writer: Mutex<WriterSlot>,
    link_changed: Condvar,
    link: Mutex<LinkSlot>,
    pub hub: Hub,
    dispatcher: Dispatcher,
    seq: AtomicU64,
    pub counters: Counters,
    latency: Latency,
    state: Mutex<ConnectionState>,
    closed: AtomicBool,
    last_error: Mutex<Option<String>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    connect_lock: Mutex<()>,
    next_link: AtomicU64,
    pub(crate) supervisor: crate::supervisor::SupervisorSlot,
    /// The live image stream, connected on demand.
    live: Mutex<Option<Arc<LiveStream>>>,
    /// Serialises live connects without holding `live` while connecting.
    live_connect: Mutex<()>,
}

impl Shared {
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Relaxed) + 1
    }

    fn key(&self, msg: &Message) -> Key {
        Key {
            code: msg.code.0,
            sub: match self.config.key_for(msg.code) {
                MatchKey::Code => None,
                MatchKey::Int0 => Some(msg.int32_data0),
            },
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    pub fn set_state(&self, s: ConnectionState) {
        let mut st = self.state.lock();
        if !matches!(*st, ConnectionState::Closed { .. }) {
            *st = s;
        }
    }

    pub fn set_last_error(&self, e: String) {
        *self.last_error.lock() = Some(e);
    }

    /// Called by the reader for every inbound message.
    pub fn dispatch(
        &self,
        msg: Message,
        data: Vec<u8>,
        seq: u64,
        received_at: Instant,
        failure: Option<Error>,
    ) {
        let info = msg.code.info();
        if !info.is_some_and(|i| i.unsolicited.always()) {
            let key = self.key(&msg);
            let matched = self.pending.lock().on_reply(key, received_at);
            match matched {
                Match::Deliver(tx) => {
                    let r = match failure {
                        Some(e) => Err(e),
                        None => Ok(Reply {
                            message: msg,
                            data,
                            seq,
                            received_at,
                        }),
                    };
                    // Counted before the hand-off, so a caller that reads
                    // stats() after its reply always finds it counted.
                    self.counters.replies_matched.fetch_add(1, Relaxed);
                    // One value per slot: never blocks.
                    tx.send(r);
                    return;
                }
                Match::Late => {
                    self.counters.late_replies_discarded.fetch_add(1, Relaxed);
                    log::warn!(
                        "discarded a late reply #{seq} to {} (its request had timed out)",
                        msg.code
                    );
                    return;
                }
                Match::None => {
                    if info.map_or(true, |i| !i.unsolicited.possible()) {
                        self.counters.unmatched_replies.fetch_add(1, Relaxed);
                        log::debug!(
                            "no request was waiting for {} #{seq}; delivered as an event",
                            msg.code
                        );
                    }
                }
            }
        }
        if failure.is_some() {
            return; // an oversized unsolicited message: counted and logged already
        }
        self.hub.publish(Event {
            seq,
            received_at,
            kind: EventKind::from_message(&msg),
            message: Some(msg),
            data: if data.is_empty() {
                None
            } else {
                Some(Arc::from(data))
            },
        });
    }

    /// Writes one message (and its additional data) under the send mutex,
    /// finishing by `deadline` (`timeout` is the caller's timeout, for the
    /// error). One deadline covers waiting for the send mutex (another
    /// thread's write may be stuck because the instrument stopped reading),
    /// waiting for a reconnect, and every partial write. A `waiter` is
    /// registered in the pending table under the same mutex, just before the
    /// bytes go out, so the FIFO order of waiters is exactly the order of
    /// requests on the wire. Returns the waiter's id.
    fn write(
        &self,
        msg: &Message,
        data: &[u8],
        deadline: Instant,
        timeout: Duration,
        waiter: Option<(Key, ReplySender)>,
    ) -> Result<u64> {
        let mut buf = [0u8; MESSAGE_LEN];
        msg.encode(&mut buf);
        let Some(mut w) = self.writer.try_lock_until(deadline) else {
            return Err(Error::timeout(
                format!(
                    "a chance to send {} (another message is still being written: the instrument is not reading)",
                    msg.code
                ),
                timeout,
            ));
        };
        while w.stream.is_none() {
            if self.is_closed() {
                return Err(Error::disconnected(self.down_reason()));
            }
            // Is a reconnect coming? Claimed already, or the reader has not
            // reported the loss of the current link yet (a failed send
            // cleared the writer first). The reader claims the reconnect
            // under the link lock before it takes the shutdown handle, so
            // under that lock one of the two is always visible.
            let coming = {
                let link = self.link.lock();
                self.supervisor.active()
                    || (self.config.reconnect.is_some() && link.shutdown.is_some())
            };
            if !coming {
                return Err(Error::disconnected(self.down_reason()));
            }
            // Reconnecting: wait for the link to come back, up to our deadline.
            if self.link_changed.wait_until(&mut w, deadline).timed_out() {
                return Err(Error::Disconnected {
                    reason: format!(
                        "{}; a reconnect is in progress and the link did not return before the deadline",
                        self.down_reason()
                    ),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::timeout(
                format!("a chance to send {}", msg.code),
                timeout,
            ));
        }
        let WriterSlot {
            stream: slot_stream,
            write_timeout,
            ..
        } = &mut *w;
        let stream = slot_stream.as_ref().expect("checked above");
        // The waiter's key, computed once by the caller.
        let key = waiter.as_ref().map(|(k, _)| *k);
        let id = waiter.map_or(0, |(key, tx)| self.pending.lock().register(key, tx));
        let unregister = |key: Option<Key>| {
            if let Some(key) = key {
                self.pending.lock().cancel(key, id);
            }
        };
        let mut written = 0usize;
        let res = write_by(stream, &buf, &mut written, deadline, write_timeout)
            .and_then(|()| write_by(stream, data, &mut written, deadline, write_timeout));
        match res {
            Ok(()) => {
                self.counters.messages_sent.fetch_add(1, Relaxed);
                if log::log_enabled!(log::Level::Debug) {
                    log::debug!(
                        "-> {} status={} int0={} int1={} int2={} flags={} double={} data={}B",
                        msg.code,
                        msg.status,
                        msg.int32_data0,
                        msg.int32_data1,
                        msg.int32_data2,
                        msg.flags,
                        msg.double_data,
                        data.len()
                    );
                    log::trace!("-> bytes:\n{}", hex_dump(&buf));
                }
                Ok(id)
            }
            Err(e) if written == 0 && is_timeout(&e) => {
                unregister(key);
                Err(Error::timeout(
                    format!("the instrument to accept {} (it is not reading)", msg.code),
                    timeout,
                ))
            }
            Err(e) => {
                unregister(key);
                // Part of a message may be on the wire: the stream can no
                // longer be trusted. Shut it down; the reader reports the loss.
                let _ = stream.shutdown(Shutdown::Both);
                *slot_stream = None;
                let total = MESSAGE_LEN + data.len();
                let reason = if is_timeout(&e) {
                    format!(
                        "sending {} timed out after {:.3} s with {written} of {total} bytes written (the instrument is not reading fast enough); the connection was closed because a partly sent message cannot be taken back",
                        msg.code,
                        timeout.as_secs_f64()
                    )
                } else {
                    format!("sending {} failed after {written} bytes: {e}", msg.code)
                };
                self.set_last_error(reason.clone());
                Err(Error::disconnected(reason))
            }
        }
    }

    fn down_reason(&self) -> String {
        match &*self.state.lock() {
            ConnectionState::Closed { reason } => reason.clone(),
            ConnectionState::NotConnected => "the client is not connected yet (call open())".into(),
            ConnectionState::Reconnecting { attempt } => {
                format!("the connection was lost; reconnect attempt {attempt} in progress")
            }
            _ => self
                .last_error
                .lock()
                .clone()
                .unwrap_or_else(|| "the connection is down".into()),
        }
    }

    /// Opens a new link: socket, reader thread, writer. Nothing is left
    /// behind on failure. Serialised by the caller (connect lock).
    pub fn establish(self: &Arc<Self>, announce: Option<u32>) -> Result<()> {
        let stream = transport::connect_any(
            &self.addr,
            self.config.connect_timeout,
            self.config.keepalive,
        )?;
        let fail = |e: io::Error| Error::Connect {
            addr: self.addr.clone(),
            source: e,
        };
        let read_half = stream.try_clone().map_err(fail)?;
        let shutdown_half = stream.try_clone().map_err(fail)?;
        let id = self.next_link.fetch_add(1, Relaxed) + 1;
        {
            let mut link = self.link.lock();
            if self.is_closed() {
                let _ = stream.shutdown(Shutdown::Both);
                return Err(Error::disconnected(self.down_reason()));
            }
            link.id = id;
            link.shutdown = Some(shutdown_half);
        }
        {
            let mut w = self.writer.lock();
            w.stream = Some(stream);
            w.link = id;
            w.write_timeout = None;
        }
        self.set_state(ConnectionState::Connected);
        if let Some(attempt) = announce {
            // Before the new reader starts, so it precedes the new link's events.
            self.hub.publish(Event::connection(
                self.next_seq(),
                EventKind::Reconnected { attempt },
            ));
        }
        // The reader is spawned and recorded under the readers lock, after a
        // last look at `closed`: a close() that ran since the link was
        // installed has either already taken the readers to join them (then
        // we see `closed` and undo), or will take this one too. Without this,
        // a reader started during close() outlived it.
        let mut readers = self.readers.lock();
        let spawned = if self.is_closed() {
            None
        } else {
            let shared = self.clone();
            Some(
                std::thread::Builder::new()
                    .name("flamingo-reader".into())
                    .spawn(move || crate::reader::run(shared, read_half, id)),
            )
        };
        match spawned {
            Some(Ok(h)) => {
                // Join readers of earlier links that have ended (at once).
                let (done, running): (Vec<_>, Vec<_>) =
                    readers.drain(..).partition(|h| h.is_finished());
                *readers = running;
                readers.push(h);
                drop(readers);
                for h in done {
                    let _ = h.join();
                }
            }
            failed => {
                drop(readers);
                if let Some(s) = self.link.lock().shutdown.take() {
                    let _ = s.shutdown(Shutdown::Both);
                }
                let mut w = self.writer.lock();
                if w.link == id {
                    if let Some(s) = w.stream.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                drop(w);
                return Err(match failed {
                    Some(Err(e)) => fail(e),
                    _ => Error::disconnected(self.down_reason()),
                });
            }
        }
        self.link_changed.notify_all();
        log::info!("connected to {}", self.addr);
        Ok(())
    }

    /// Called by the reader thread of link `link` when it ends.
    /// `stillborn`: the link delivered no message and lived less than
    /// [`STILLBORN`](crate::supervisor::STILLBORN).
    pub fn on_link_down(self: &Arc<Self>, link: u64, reason: String, stillborn: bool) {
        // Claim the reconnect before the writer goes, so a request arriving
        // now waits for the new link instead of failing in the gap; and
        // before the shutdown handle goes, under the link lock, so a writer
        // that finds the link cleared by a failed send sees one or the other.
        let reconnect = self.config.reconnect.is_some() && !self.is_closed();
        {
            let mut slot = self.link.lock();
            if slot.id != link {
                return;
            }
            if reconnect {
                self.supervisor.mark_needed(stillborn);
            }
            if let Some(s) = slot.shutdown.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if reconnect {
            self.set_state(ConnectionState::Reconnecting { attempt: 1 });
        }
        {
            let mut w = self.writer.lock();
            if w.link == link {
                w.stream = None;
            }
        }
        let reason = if self.is_closed() {
            self.down_reason()
        } else {
            format!("connection to {} lost: {reason}", self.addr)
        };
        if !reconnect && !self.is_closed() {
            // Without reconnection the loss is final: callers woken below
            // already see the client closed (finish() completes the teardown).
            self.set_last_error(reason.clone());
            *self.state.lock() = ConnectionState::Closed {
                reason: reason.clone(),
            };
        }
        self.fail_waiters(&reason);
        self.counters.disconnects.fetch_add(1, Relaxed);
        // The instrument may have restarted: the live socket is reopened on
        // demand once the command link is back.
        self.close_live();
        if self.is_closed() {
            return;
        }
        log::warn!("{reason}");
        self.set_last_error(reason.clone());
        self.hub.publish(Event::connection(
            self.next_seq(),
            EventKind::Disconnected {
                reason: reason.clone(),
            },
        ));
        if reconnect && crate::supervisor::request(self) {
            return;
        }
        self.finish(reason);
    }

    /// One reconnection attempt, serialised with `open()` by the connect lock.
    pub fn reconnect_once(self: &Arc<Self>, attempt: u32) -> Result<()> {
        let _g = self.connect_lock.lock();
        if self.is_closed() {
            return Err(Error::disconnected(self.down_reason()));
        }
        self.establish(Some(attempt))
    }

    pub fn notify_link_changed(&self) {
        self.link_changed.notify_all();
    }

    fn fail_waiters(&self, reason: &str) {
        let waiters = self.pending.lock().drain();
        for tx in waiters {
            tx.send(Err(Error::disconnected(reason)));
        }
    }

    /// Terminal teardown, exactly once, from any thread (the reader's too).
    /// Returns false if the client was already closed.
    pub fn finish(&self, reason: String) -> bool {
        {
            // Setting `closed` under the link lock orders it with establish().
            let mut link = self.link.lock();
            if self.closed.swap(true, Relaxed) {
                return false;
            }
            *self.state.lock() = ConnectionState::Closed {
                reason: reason.clone(),
            };
            if let Some(s) = link.shutdown.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        self.counters.teardowns.fetch_add(1, Relaxed);
        self.supervisor.wake();
        self.link_changed.notify_all();
        self.fail_waiters(&reason);
        self.close_live();
        self.hub.close(Event::connection(
            self.next_seq(),
            EventKind::Closed { reason },
        ));
        true
    }

    fn close_live(&self) {
        let live = self.live.lock().take();
        if let Some(l) = live {
            l.close();
        }
    }

    /// Joins every thread this client started, except the calling one.
    fn join_threads(&self) {
        let me = std::thread::current().id();
        let handles: Vec<_> = std::mem::take(&mut *self.readers.lock());
        for h in handles {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
        self.supervisor.join();
        self.dispatcher.join();
        // The writer's socket is closed last: a blocked write has been woken
        // by the shutdown in finish().
        self.writer.lock().stream = None;
    }
}

/// Writes all of `buf` by `deadline`: before every write call the socket's
/// write timeout is set to the time left, so partial writes to a slow reader
/// cannot each take a full timeout. `cached` is the timeout last set.
fn write_by(
    mut s: &TcpStream,
    mut buf: &[u8],
    written: &mut usize,
    deadline: Instant,
    cached: &mut Option<Duration>,
) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // SO_SNDTIMEO bounds a blocked write by the deadline. Setting it is a
        // system call, so the value in force is kept while it lies within
        // [left - left/16, left]: a blocked write then gives up at most 1/16
        // of the time left before the deadline, never after it. Requests with
        // the same timeout therefore set it once, not once per request, and
        // a write that stalls part-way is re-armed with what is left.
        let keep = cached.is_some_and(|t| t <= left && t >= left - left / 16);
        if !keep {
            let t = (left - left / 32).max(Duration::from_micros(1));
            s.set_write_timeout(Some(t))?;
            *cached = Some(t);
        }
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared
            .finish("the last client handle was dropped".into());
        self.shared.join_threads();
    }
}

/// A connection to the microscope's command port.
///
/// `Client` is `Send + Sync + Clone`; clones share one connection. Any number
/// of threads may call [`request`](Client::request) at once: each blocks on
/// its own reply channel. Dropping the last clone closes the connection and
/// joins every thread the client started.
///
/// ```
/// use flamingo_client::{Client, ClientConfig, codec::{CommandCode, Message}};
/// use std::time::Duration;
///
/// # fn main() -> flamingo_client::Result<()> {
/// # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
/// # let addr = sim.addr().to_string();
/// let client = Client::connect(&addr, ClientConfig::default())?;
/// let reply = client.request(Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET), Duration::from_secs(2))?;
/// assert!(reply.message.int32_data0 > 0);
/// client.close();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.shared.addr)
            .field("state", &self.state())
            .finish()
    }
}

impl Client {
    /// Connects to `addr` ("host:port" of the command port). Atomic: on any
    /// failure no socket or thread is left behind, and the error names the address.
    pub fn connect(addr: &str, config: ClientConfig) -> Result<Client> {
        let c = Client::new(addr, config);
        c.open()?;
        Ok(c)
    }

    /// A client for `addr` that is not connected yet; see [`open`](Client::open).
    pub fn new(addr: &str, config: ClientConfig) -> Client {
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            pending: Mutex::new(Correlator::new(
                config.late_reply_window,
                config.max_tombstones_per_key,
            )),
            writer: Mutex::new(WriterSlot::default()),
            link_changed: Condvar::new(),
            link: Mutex::new(LinkSlot::default()),
            hub: Hub::new(config.event_history),
            dispatcher: Dispatcher::new(),
            seq: AtomicU64::new(0),
            counters: Counters::default(),
            latency: Latency::new(),
            state: Mutex::new(ConnectionState::NotConnected),
            closed: AtomicBool::new(false),
            last_error: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            connect_lock: Mutex::new(()),
            next_link: AtomicU64::new(0),
            supervisor: crate::supervisor::SupervisorSlot::default(),
            live: Mutex::new(None),
            live_connect: Mutex::new(()),
            config,
        });
        Client {
            inner: Arc::new(Inner { shared }),
        }
    }

    /// Connects if not connected. Safe to call from many threads at once:
    /// exactly one connection is made; the others wait for it and return its
    /// outcome. After [`close`](Client::close) it fails with `Disconnected`.
    pub fn open(&self) -> Result<()> {
        let s = &self.inner.shared;
        let _g = s.connect_lock.lock();
        if s.is_closed() {
            return Err(Error::disconnected(s.down_reason()));
        }
        match &*s.state.lock() {
            ConnectionState::Connected | ConnectionState::Reconnecting { .. } => return Ok(()),
            _ => {}
        }
        s.set_state(ConnectionState::Connecting);
        match s.establish(None) {
            Ok(()) => Ok(()),
            Err(e) => {
                s.set_state(ConnectionState::NotConnected);
                s.set_last_error(e.to_string());
                Err(e)
            }
        }
    }

    /// The command-port address given at creation.
    pub fn addr(&self) -> &str {
        &self.inner.shared.addr
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.shared.config
    }

    /// Where the connection stands. Never blocks for long.
    pub fn state(&self) -> ConnectionState {
        self.inner.shared.state.lock().clone()
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// Sends `msg` with TRIGGER_CALL_BACK set and waits for its reply, at
    /// most `timeout` in all (writing, the reply and its additional data).
    ///
    /// The reply's status is returned untouched; see
    /// [`request_checked`](Client::request_checked). Errors: `Timeout`,
    /// `Disconnected` (the link broke or closed while waiting: every waiter is
    /// woken at once), `TooLarge` (the reply's additional data is over the
    /// limit), `InvalidArgument` (the code is one that only ever arrives
    /// unsolicited, so its reply could not be told from an event).
    pub fn request(&self, msg: Message, timeout: Duration) -> Result<Reply> {
        self.submit_inner(msg, &[], timeout)?.wait()
    }

    /// [`request`](Client::request) with additional data after the message
    /// (`additional_data_len` is set from `data`).
    pub fn request_with_data(&self, msg: Message, data: &[u8], timeout: Duration) -> Result<Reply> {
        self.submit_inner(msg, data, timeout)?.wait()
    }

    /// [`request`](Client::request), then applies the code's status policy:
    /// a busy status becomes [`Error::Busy`], a refusal [`Error::Refused`].
    pub fn request_checked(&self, msg: Message, timeout: Duration) -> Result<Reply> {
        let r = self.request(msg, timeout)?;
        self.check_status(&r)?;
        Ok(r)
    }

    /// Applies the status policy in force for the reply's code.
    pub fn check_status(&self, reply: &Reply) -> Result<()> {
        let code = reply.message.code;
        let status = reply.message.status;
        match self.config().policy_for(code).classify(status) {
            StatusClass::Ok => Ok(()),
            StatusClass::Busy => Err(Error::Busy { code, status }),
            StatusClass::Refused => Err(Error::Refused { code, status }),
        }
    }

    /// Starts a request and returns at once; the [`Pending`] handle polls or
    /// waits for the reply. For GUI threads that must never block.
    pub fn submit(&self, msg: Message, timeout: Duration) -> Result<Pending> {
        self.submit_inner(msg, &[], timeout)
    }

    fn submit_inner(&self, mut msg: Message, data: &[u8], timeout: Duration) -> Result<Pending> {
        let s = &self.inner.shared;
        if msg.code.info().is_some_and(|i| i.unsolicited.always()) {
            return Err(Error::invalid(format!(
                "{} only arrives unsolicited, so a reply to it cannot be told from an event; use send() and wait_for_event()",
                msg.code
            )));
        }
        let len = self.check_data(data)?;
        msg.additional_data_len = len;
        msg.flags |= Flags::TRIGGER_CALL_BACK;
        let start = Instant::now();
        let deadline = start + timeout;
        let key = s.key(&msg);
        let (tx, rx) = oneshot::channel();
        let id = s.write(&msg, data, deadline, timeout, Some((key, tx)))?;
        Ok(Pending {
            shared: s.clone(),
            code: msg.code,
            key,
            id,
            rx,
            start,
            deadline,
            timeout,
            done: false,
        })
    }

    fn check_data(&self, data: &[u8]) -> Result<u32> {
        let limit = self.config().additional_data_limit;
        if data.len() as u64 > u64::from(limit) {
            return Err(Error::TooLarge {
                what: "additional data to send",
                size: data.len() as u64,
                limit: limit.into(),
            });
        }
        Ok(data.len() as u32)
    }

    /// Sends `msg` as given (flags untouched) without waiting for a reply.
    /// Returns the sequence number of the newest message received before the
    /// send: events with a larger number arrived after it.
    pub fn send(&self, msg: Message) -> Result<u64> {
        self.send_with_data(msg, &[])
    }

    /// [`send`](Client::send) with additional data (`additional_data_len` is set from `data`).
    pub fn send_with_data(&self, mut msg: Message, data: &[u8]) -> Result<u64> {
        msg.additional_data_len = self.check_data(data)?;
        let s = &self.inner.shared;
        let seq = s.seq.load(Relaxed);
        let timeout = s.config.request_timeout;
        s.write(&msg, data, Instant::now() + timeout, timeout, None)?;
        Ok(seq)
    }

    /// The newest sequence number handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.seq.load(Relaxed)
    }

    /// Subscribes to every event. See [`Subscription`].
    pub fn subscribe(&self) -> Subscription {
        let s = &self.inner.shared;
        s.hub.subscribe(None, s.config.event_queue_depth)
    }

    /// Subscribes to events of the given codes (connection events always pass).
    pub fn subscribe_to(&self, codes: &[CommandCode]) -> Subscription {
        let s = &self.inner.shared;
        s.hub.subscribe(Some(codes), s.config.event_queue_depth)
    }

    /// Waits for the first event with sequence number above `after` that
    /// satisfies `filter`, for at most `timeout`. Events that arrived before
    /// this call are still seen (from a short history) if they are newer
    /// than `after`; older ones never match, so a stale event cannot satisfy
    /// the wait. The filter runs on the calling thread.
    pub fn wait_for_event(
        &self,
        mut filter: impl FnMut(&Event) -> bool,
        after: u64,
        timeout: Duration,
    ) -> Result<Event> {
        let s = &self.inner.shared;
        let (sub, found) = s
            .hub
            .subscribe_and_scan(s.config.event_queue_depth, after, &mut filter);
        if let Some(ev) = found {
            return Ok(ev);
        }
        if s.is_closed() {
            return Err(Error::disconnected(s.down_reason()));
        }
        sub.wait_for(filter, after, timeout)
    }

    /// Runs `callback` for every event on the client's dispatcher thread
    /// (started on first use; never the reader thread). A panicking callback
    /// is caught and logged; a slow one delays only other callbacks; a
    /// callback may call [`request`](Client::request). A callback that
    /// captures a `Client` keeps the connection alive until
    /// [`close`](Client::close) is called.
    pub fn on_event(
        &self,
        callback: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Result<CallbackId> {
        let s = &self.inner.shared;
        s.dispatcher
            .add(&s.hub, s.config.event_queue_depth, Arc::new(callback))
    }

    /// Removes a callback; returns false if it was not registered.
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        self.inner.shared.dispatcher.remove(id)
    }

    /// Closes the connection: idempotent, callable from any thread at any
    /// time. Every waiting request fails with `Disconnected`, subscribers
    /// receive a final [`EventKind::Closed`] (exactly once), and every thread
    /// the client started is joined before this returns (except the calling
    /// thread, when a callback closes the client).
    pub fn close(&self) {
        let s = &self.inner.shared;
        s.finish("closed by the user".into());
        s.join_threads();
    }

    /// The live image stream on command port + 1, connected on first use
    /// (and again after it ended, for example after the instrument dropped
    /// an idle live link or the command link was re-established). One
    /// deadline covers the connect. The instrument may only start listening
    /// on the live port once live view is started, so connection refusals
    /// are retried until the deadline.
    ///
    /// ```
    /// # fn main() -> flamingo_client::Result<()> {
    /// # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
    /// use flamingo_client::codec::{CommandCode, Message};
    /// use std::time::Duration;
    /// let client = flamingo_client::Client::connect(&sim.addr().to_string(), Default::default())?;
    /// let live = client.live(Duration::from_secs(2))?;
    /// client.request(Message::new(CommandCode::CAMERA_SNAPSHOT_GET), Duration::from_secs(2))?;
    /// let frame = live.next_frame(Duration::from_secs(5))?;
    /// assert!(frame.width() > 0);
    /// # Ok(()) }
    /// ```
    pub fn live(&self, timeout: Duration) -> Result<Arc<LiveStream>> {
        let s = &self.inner.shared;
        let deadline = Instant::now() + timeout;
        if !s.config.live {
            return Err(Error::invalid(
                "the live port is disabled in this client's configuration (ClientConfig::live)",
            ));
        }
        // Single flight, but within our own deadline: another thread may be
        // retrying a refused live port for much longer.
        let Some(_single) = s.live_connect.try_lock_until(deadline) else {
            return Err(Error::timeout(
                "the live port connection (another thread is still connecting it)",
                timeout,
            ));
        };
        if let Some(l) = s.live.lock().as_ref() {
            if !l.is_finished() {
                return Ok(l.clone());
            }
        }
        if s.is_closed() {
            return Err(Error::disconnected(s.down_reason()));
        }
        let addr = self.live_addr()?;
        let stream = match LiveStream::connect(addr, s.config.live_config.clone(), deadline) {
            Ok(l) => Arc::new(l),
            Err(Error::Connect { addr, source }) => {
                return Err(Error::Connect {
                    addr,
                    source: io::Error::new(
                        source.kind(),
                        format!(
                            "{source}; the live port serves one client: is another program (such as the vendor GUI) using live view?"
                        ),
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        let mut slot = s.live.lock();
        if s.is_closed() {
            drop(slot);
            stream.close();
            return Err(Error::disconnected(s.down_reason()));
        }
        if let Some(old) = slot.replace(stream.clone()) {
            old.close();
        }
        Ok(stream)
    }

    /// The live stream if it is open, without connecting.
    pub fn live_if_open(&self) -> Option<Arc<LiveStream>> {
        self.inner
            .shared
            .live
            .lock()
            .as_ref()
            .filter(|l| !l.is_finished())
            .cloned()
    }

    /// Closes the live socket (live view stopped; the instrument may serve
    /// only one live client). The next [`live`](Client::live) reconnects.
    pub fn close_live(&self) {
        self.inner.shared.close_live();
    }

    /// The live port address: the command address with its port plus one.
    pub fn live_addr(&self) -> Result<SocketAddr> {
        let s = &self.inner.shared;
        let cmd = transport::resolve(&s.addr)?[0];
        let port = cmd.port().checked_add(1).ok_or_else(|| {
            Error::invalid(format!(
                "command port {} leaves no room for the live port (port + 1)",
                cmd.port()
            ))
        })?;
        Ok(SocketAddr::new(cmd.ip(), port))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let s = &self.inner.shared;
        let c = &s.counters;
        let (pending, tombstones) = {
            let p = s.pending.lock();
            (p.waiting(), p.tombstones())
        };
        Stats {
            messages_sent: c.messages_sent.load(Relaxed),
            messages_received: c.messages_received.load(Relaxed),
            replies_matched: c.replies_matched.load(Relaxed),
            events_delivered: s.hub.delivered.load(Relaxed),
            events_dropped: s.hub.dropped.load(Relaxed),
            late_replies_discarded: c.late_replies_discarded.load(Relaxed),
            unmatched_replies: c.unmatched_replies.load(Relaxed),
            oversized: c.oversized.load(Relaxed),
            resyncs: c.resyncs.load(Relaxed),
            bytes_skipped: c.bytes_skipped.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            disconnects: c.disconnects.load(Relaxed),
            reconnect_attempts: c.reconnect_attempts.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            teardowns: c.teardowns.load(Relaxed),
            callback_panics: s.dispatcher.panics.load(Relaxed),
            pending_requests: pending,
            tombstones,
            last_error: s.last_error.lock().clone(),
            subscribers: s.hub.subscriber_stats(),
            latency: s.latency.summary(),
        }
    }
}

/// A request in flight, from [`Client::submit`]. Poll it with
/// [`try_get`](Pending::try_get) (never blocks) or block with
/// [`wait`](Pending::wait) / [`wait_timeout`](Pending::wait_timeout). The
/// request's own deadline (the timeout given to `submit`) still applies:
/// after it, the result is a `Timeout`. Dropping an unfinished `Pending`
/// abandons the request; its late reply is discarded, not given to another.
#[derive(Debug)]
pub struct Pending {
    shared: Arc<Shared>,
    code: CommandCode,
    key: Key,
    id: u64,
    rx: oneshot::Receiver<Result<Reply>>,
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    done: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("addr", &self.addr).finish()
    }
}

impl Pending {
    /// The command code of the request.
    pub fn code(&self) -> CommandCode {
        self.code
    }

    /// The reply if it has arrived, the error if the request failed or its
    /// deadline passed, or `None` (still waiting). Never blocks. After it has
    /// returned `Some`, later calls return `None`.
    pub fn try_get(&mut self) -> Option<Result<Reply>> {
        if self.done {
            return None;
        }
        match self.rx.try_recv() {
            Ok(r) => Some(self.finish(r)),
            Err(TryRecvError::Disconnected) => {
                Some(self.finish(Err(Error::disconnected(self.shared.down_reason()))))
            }
            Err(TryRecvError::Empty) if Instant::now() >= self.deadline => Some(self.give_up()),
            Err(TryRecvError::Empty) => None,
        }
    }

    /// Waits at most `d` (and never past the request's deadline). `None` if
    /// `d` elapsed first.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<Result<Reply>> {
        if self.done {
            return None;
        }
        let until = (Instant::now() + d).min(self.deadline);
        match self.rx.recv_deadline(until) {
            Ok(r) => Some(self.finish(r)),
            Err(RecvTimeoutError::Disconnected) => {
                Some(self.finish(Err(Error::disconnected(self.shared.down_reason()))))
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() >= self.deadline => {
                Some(self.give_up())
            }
            Err(RecvTimeoutError::Timeout) => None,
        }
    }

    /// Blocks until the reply arrives or the request's deadline passes.
    pub fn wait(mut self) -> Result<Reply> {
        loop {
            if let Some(r) = self.wait_timeout(self.timeout) {
                return r;
            }
        }
    }

    fn finish(&mut self, r: Result<Reply>) -> Result<Reply> {
        self.done = true;
        if r.is_ok() {
            self.shared.latency.record(self.start.elapsed());
        }
        r
    }

    fn give_up(&mut self) -> Result<Reply> {
        let abandoned = self
            .shared
            .pending
            .lock()
            .abandon(self.key, self.id, Instant::now());
        if !abandoned {
            // The reply was delivered between the timeout and the lock.
            if let Ok(r) = self.rx.try_recv() {
                return self.finish(r);
            }
        }
        self.done = true;
        self.shared.counters.timeouts.fetch_add(1, Relaxed);
        Err(Error::timeout(
            format!("the reply to {}", self.code),
            self.timeout,
        ))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.shared
                .pending
                .lock()
                .abandon(self.key, self.id, Instant::now());
        }
    }
}

/// The hand-off of one reply from the reader thread to its caller.
///
/// A one-shot slot instead of a `bounded(1)` channel: the caller parks at
/// once instead of spinning and yielding first (with many callers waiting on
/// a 2-core machine that spinning took the CPU the reader and the writers
/// needed), and the reader's `send` takes an uncontended lock and wakes the
/// caller only if it is parked. Sending never blocks. Dropping the sender
/// without sending wakes the receiver with `Disconnected`.
mod oneshot {
    use std::sync::Arc;
    use std::time::Instant;

    use crossbeam_channel::{RecvTimeoutError, TryRecvError};
    use parking_lot::{Condvar, Mutex};

    enum State<T> {
        Empty,
        Full(T),
        /// Taken, or the sender went away without sending.
        Closed,
    }

    struct Slot<T> {
        state: Mutex<State<T>>,
        ready: Condvar,
    }

    pub(crate) struct Sender<T> {
        slot: Arc<Slot<T>>,
        sent: bool,
    }

    pub(crate) struct Receiver<T> {
        slot: Arc<Slot<T>>,
    }

    pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Empty),
            ready: Condvar::new(),
        });
        (
            Sender {
                slot: slot.clone(),
                sent: false,
            },
            Receiver { slot },
        )
    }

    impl<T> Sender<T> {
        /// Puts the value in the slot and wakes the receiver. Never blocks
        /// (the lock is only ever held for a few instructions).
        pub(crate) fn send(mut self, value: T) {
            self.sent = true;
            *self.slot.state.lock() = State::Full(value);
            self.slot.ready.notify_one();
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            if !self.sent {
                let mut st = self.slot.state.lock();
                if matches!(*st, State::Empty) {
                    *st = State::Closed;
                }
                drop(st);
                self.slot.ready.notify_one();
            }
        }
    }

    fn take<T>(st: &mut State<T>) -> Option<Result<T, ()>> {
        match std::mem::replace(st, State::Closed) {
            State::Full(v) => Some(Ok(v)),
            State::Closed => Some(Err(())),
            State::Empty => {
                *st = State::Empty;
                None
            }
        }
    }

    impl<T> Receiver<T> {
        pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
            match take(&mut self.slot.state.lock()) {
                Some(Ok(v)) => Ok(v),
                Some(Err(())) => Err(TryRecvError::Disconnected),
                None => Err(TryRecvError::Empty),
            }
        }

        pub(crate) fn recv_deadline(&self, until: Instant) -> Result<T, RecvTimeoutError> {
            let mut st = self.slot.state.lock();
            loop {
                match take(&mut st) {
                    Some(Ok(v)) => return Ok(v),
                    Some(Err(())) => return Err(RecvTimeoutError::Disconnected),
                    None => {}
                }
                if self.slot.ready.wait_until(&mut st, until).timed_out() {
                    return match take(&mut st) {
                        Some(Ok(v)) => Ok(v),
                        Some(Err(())) => Err(RecvTimeoutError::Disconnected),
                        None => Err(RecvTimeoutError::Timeout),
                    };
                }
            }
        }
    }

    impl<T> std::fmt::Debug for Receiver<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("oneshot::Receiver")
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Duration;

        #[test]
        fn send_then_receive_once() {
            let (tx, rx) = channel();
            tx.send(7);
            assert_eq!(rx.try_recv(), Ok(7));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        }

        #[test]
        fn dropped_sender_disconnects_a_waiter() {
            let (tx, rx) = channel::<u8>();
            let t = std::thread::spawn(move || {
                rx.recv_deadline(Instant::now() + Duration::from_secs(10))
            });
            drop(tx);
            assert_eq!(t.join().unwrap(), Err(RecvTimeoutError::Disconnected));
        }

        #[test]
        fn wakes_a_parked_receiver_and_times_out() {
            let (tx, rx) = channel();
            let t = std::thread::spawn(move || {
                rx.recv_deadline(Instant::now() + Duration::from_secs(10))
            });
            tx.send(3u32);
            assert_eq!(t.join().unwrap(), Ok(3));
            let (_tx, rx) = channel::<u8>();
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(
                rx.recv_deadline(Instant::now() + Duration::from_millis(1)),
                Err(RecvTimeoutError::Timeout)
            );
        }
    }
}
