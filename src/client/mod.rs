//! The command-port client: the public [`Client`] handle and the engine
//! behind it.
//!
//! A reply's path, socket to caller, reads in this folder: the connection
//! thread ([`thread`]) reads and frames each message and hands it to
//! [`route`], which finds the waiting request in the connection state
//! ([`conn`], one lock, one condition variable, changed only by methods
//! that do no I/O) or publishes an event ([`events`]); the request's
//! [`Op`] ([`op`]) receives it through a one-shot slot ([`slot`]).
//! Requests go out through [`send`]: queued under the lock; the sender
//! thread owns every blocking write (several messages per write call), and
//! other threads only try writes that never wait ([`wire`]).
//! [`connect`] opens sockets so that `close()` can interrupt it; [`backoff`]
//! holds the reconnection policy the connection thread follows.

mod backoff;
mod conn;
mod connect;
mod deadline;
pub(crate) mod events;
mod op;
mod route;
mod send;
mod shared;
mod slot;
mod stats;
mod sync;
mod thread;
mod wire;

#[cfg(all(test, flamingo_explore))]
mod explore;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{CommandCode, Flags, Message, StatusClass};
use crate::live::LiveStream;
use crate::{transport, ClientConfig, DisconnectReason, Error, Result, TimeoutPhase};

use conn::Phase;
use shared::Shared;

pub use backoff::{Delays, ReconnectPolicy};
pub use deadline::Deadline;
pub use events::{CallbackId, Event, EventKind, SubscriberStats, Subscription};
pub use op::Op;
pub(crate) use op::{Pending, ReplyStep, SentStep, Step};
pub use shared::Waker;
pub use stats::{LatencySummary, Stats};

/// Codes the instrument answers even when TRIGGER_CALL_BACK is not set
/// (protocol.md, known unknowns 4; the settings save is acknowledged the
/// same way).
const ANSWERED_WITHOUT_FLAG: [CommandCode; 4] = [
    CommandCode::COMMON_SCOPE_SETTINGS_SAVE,
    CommandCode::COMMON_SCOPE_SETTINGS_LOAD,
    CommandCode::CAMERA_WORK_FLOW_STOP,
    CommandCode::SYSTEM_STATE_GET,
];

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
    /// Created with [`Client::new`] and not opened yet (or the first
    /// attempt failed).
    NotConnected,
    /// The first connection attempt is under way.
    Connecting,
    /// Connected.
    Connected,
    /// The link broke; the client is reconnecting (attempt is 1-based).
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

struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.shut(
            DisconnectReason::ClosedByUser,
            "the last client handle was dropped".into(),
        );
        self.shared.join_threads();
    }
}

/// A connection to the microscope's command port.
///
/// `Client` is `Send + Sync + Clone`; clones share one connection. Any number
/// of threads may call [`request`](Client::request) at once: each blocks on
/// its own reply, with one deadline. Dropping the last clone closes the
/// connection and joins every thread the client started.
///
/// Correlation never guesses: replies carry no request id, so at most one
/// request per reply code is on the wire at a time (others wait in the
/// client, within their own deadlines), and a request whose caller gave up
/// keeps its code blocked until its late reply arrives and is discarded, or
/// the link is reset. See `protocol.md`, "Correlation".
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
        Client {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::new(addr, config)),
            }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Connects if not connected, within the configured connect timeout.
    /// Safe to call from many threads at once: exactly one connection is
    /// made; the others wait for it. After [`close`](Client::close) it
    /// fails with `Disconnected`; a `close()` from another thread
    /// interrupts it at once.
    pub fn open(&self) -> Result<()> {
        let s = self.shared();
        {
            let mut c = s.conn.lock();
            loop {
                match &c.phase {
                    Phase::Closed { .. } => return Err(c.down_error().expect("closed")),
                    Phase::Idle => break,
                    Phase::Connecting { attempt: 0 } => s.cv.wait(&mut c),
                    _ => return Ok(()),
                }
            }
            c.phase = Phase::Connecting { attempt: 0 };
            s.cv.notify_all();
        }
        let r = connect::connect(s, s.config.connect_timeout);
        let mut c = s.conn.lock();
        let res = match r {
            _ if c.is_closed() => Err(c.down_error().expect("closed")),
            Ok(stream) => self.start_threads(&mut c, stream),
            Err(e) => Err(e),
        };
        match &res {
            Ok(()) => log::info!("connected to {}", s.addr),
            Err(e) => {
                if !c.is_closed() {
                    c.phase = Phase::Idle;
                    c.last_error = Some(e.to_string());
                }
            }
        }
        s.cv.notify_all();
        res
    }

    /// Installs the first link and starts the connection and sender
    /// threads, under the connection lock so a concurrent `close()` either
    /// sees them or stops them.
    fn start_threads(&self, c: &mut conn::Conn, stream: std::net::TcpStream) -> Result<()> {
        let s = self.shared();
        let fail = |e: io::Error| Error::Connect {
            addr: s.addr.clone(),
            source: e,
        };
        let read = thread::install(c, stream).map_err(fail)?;
        let mut t = s.threads.lock();
        let spawned = thread::spawn(s, read).and_then(|conn| {
            if t.sender.is_none() {
                let sh = s.clone();
                match sync::thread::Builder::new()
                    .name("flamingo-send".into())
                    .spawn(move || send::sender_loop(sh))
                {
                    Ok(h) => t.sender = Some(h),
                    Err(e) => {
                        // The connection thread sees its link end; the
                        // teardown joins it (never under this lock).
                        if let Some(w) = c.request_resync(e.to_string()) {
                            w.shutdown();
                        }
                        t.conn = Some(conn);
                        return Err(e);
                    }
                }
            }
            Ok(conn)
        });
        match spawned {
            Ok(h) => {
                t.conn = Some(h);
                Ok(())
            }
            Err(e) => {
                if let Some(w) = c.request_resync(e.to_string()) {
                    w.shutdown();
                }
                c.link_end = None;
                Err(fail(e))
            }
        }
    }

    /// The command-port address given at creation.
    pub fn addr(&self) -> &str {
        &self.shared().addr
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.shared().config
    }

    /// Where the connection stands. Never blocks for long.
    pub fn state(&self) -> ConnectionState {
        match &self.shared().conn.lock().phase {
            Phase::Idle => ConnectionState::NotConnected,
            Phase::Connecting { attempt: 0 } => ConnectionState::Connecting,
            Phase::Connecting { attempt } | Phase::Down { attempt, .. } => {
                ConnectionState::Reconnecting {
                    attempt: (*attempt).max(1),
                }
            }
            Phase::Up { .. } => ConnectionState::Connected,
            Phase::Closed { detail, .. } => ConnectionState::Closed {
                reason: detail.clone(),
            },
        }
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// Sets (or with `None` removes) the function called whenever an
    /// operation completes or an event is queued, so an event-driven GUI
    /// can repaint: egui's `request_repaint`, a Qt signal, a GTK idle
    /// source. It runs on a client thread (usually the reader) with no
    /// lock held and must return quickly and never block: it should only
    /// post a wake-up to the UI thread, which then polls its `Op`s and
    /// subscriptions.
    ///
    /// ```
    /// # fn main() -> flamingo_client::Result<()> {
    /// # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// use flamingo_client::{Client, ClientConfig};
    ///
    /// let client = Client::connect(&sim.addr().to_string(), ClientConfig::default())?;
    /// let dirty = Arc::new(AtomicBool::new(false));
    /// let flag = dirty.clone();
    /// client.set_waker(Some(Arc::new(move || flag.store(true, Ordering::Release))));
    /// let mut op = client.camera().submit_image_size()?;
    /// // The UI thread sleeps until woken, then polls without blocking.
    /// while !dirty.swap(false, Ordering::Acquire) { std::thread::yield_now(); }
    /// # let _ = op.wait_timeout(std::time::Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn set_waker(&self, waker: Option<Waker>) {
        self.shared().set_waker(waker);
    }

    /// Sends `msg` with TRIGGER_CALL_BACK set and waits for its reply, at
    /// most `timeout` in all (waiting for its turn, writing, the reply and
    /// its additional data); `Duration::MAX` means no deadline.
    ///
    /// The reply's status is returned untouched; see
    /// [`request_checked`](Client::request_checked). Errors: `Timeout` (its
    /// [`TimeoutPhase`] says what was under way), `Disconnected` (the link
    /// broke or closed while waiting: every waiter is woken at once),
    /// `TooLarge` (the reply's additional data is over the limit),
    /// `InvalidArgument` (the code only ever arrives unsolicited, so its
    /// reply could not be told from an event).
    pub fn request(&self, msg: Message, timeout: Duration) -> Result<Reply> {
        self.request_with_data(msg, &[], timeout)
    }

    /// [`request`](Client::request) with additional data after the message
    /// (`additional_data_len` is set from `data`).
    pub fn request_with_data(&self, msg: Message, data: &[u8], timeout: Duration) -> Result<Reply> {
        self.request_until(msg, data, Deadline::after(timeout), timeout, true)?
            .wait()
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

    /// Starts a request and returns at once (it never writes to the socket
    /// on the calling thread, so it cannot block on a slow instrument, a
    /// reconnect or another thread's write); the returned [`Op`] polls or
    /// waits for the reply. For GUI threads that must never block.
    ///
    /// It is also the way to pipeline from one thread: submit several
    /// independent requests, then wait for each. They leave together (one
    /// write for the batch) and their replies usually arrive in one read,
    /// so the thread is woken about once per batch instead of once per
    /// request; with requests of distinct reply codes this is the cheapest
    /// way to ask many things over one connection.
    ///
    /// ```
    /// # fn main() -> flamingo_client::Result<()> {
    /// # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
    /// use flamingo_client::{Axis, Client, ClientConfig};
    ///
    /// let client = Client::connect(&sim.addr().to_string(), ClientConfig::default())?;
    /// let stage = client.stage();
    /// let ops = [Axis::X, Axis::Y, Axis::Z].map(|axis| stage.submit_position(axis));
    /// for op in ops {
    ///     println!("{:.3} mm", op?.wait()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn submit(&self, msg: Message, timeout: Duration) -> Result<Op<Reply>> {
        self.request_until(msg, &[], Deadline::after(timeout), timeout, false)
    }

    /// [`submit`](Client::submit) with additional data after the message.
    pub fn submit_with_data(
        &self,
        msg: Message,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Op<Reply>> {
        self.request_until(msg, data, Deadline::after(timeout), timeout, false)
    }

    /// Starts a request that must be answered by `deadline`. `direct`: the
    /// calling thread may write it itself (blocking callers); otherwise the
    /// sender thread does.
    pub(crate) fn request_until(
        &self,
        mut msg: Message,
        data: &[u8],
        deadline: Deadline,
        timeout: Duration,
        direct: bool,
    ) -> Result<Op<Reply>> {
        let s = self.shared();
        if msg.code.info().is_some_and(|i| i.unsolicited.always()) {
            return Err(Error::invalid(format!(
                "{} only arrives unsolicited, so a reply to it cannot be told from an event; use send() and wait_for_event()",
                msg.code
            )));
        }
        msg.additional_data_len = self.check_data(data)?;
        msg.flags |= Flags::TRIGGER_CALL_BACK;
        let started = s.start(&msg, data, deadline, timeout, conn::Kind::Request, direct)?;
        Ok(Op::new(
            op::What::ReplyTo(msg.code),
            deadline,
            timeout,
            ReplyStep::new(Pending::new(s.clone(), started)),
        ))
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

    /// Sends `msg` as given (flags untouched) without waiting for a reply,
    /// within the configured request timeout. Returns the sequence number
    /// of the newest message received before the send: events with a
    /// larger number arrived after it.
    pub fn send(&self, msg: Message) -> Result<u64> {
        self.send_with_data(msg, &[])
    }

    /// [`send`](Client::send) with additional data (`additional_data_len` is set from `data`).
    pub fn send_with_data(&self, msg: Message, data: &[u8]) -> Result<u64> {
        let timeout = self.config().request_timeout;
        self.send_until(msg, data, Deadline::after(timeout), timeout)
    }

    /// Sends without a reply, written by `deadline`; blocks until written.
    pub(crate) fn send_until(
        &self,
        msg: Message,
        data: &[u8],
        deadline: Deadline,
        timeout: Duration,
    ) -> Result<u64> {
        self.send_queued(msg, data, deadline, timeout, true)
    }

    /// Queues a message without a reply for the sender thread and returns
    /// at once (nothing waits for the write; a later request's reply
    /// confirms it went out, since the queue keeps its order). Returns the
    /// sequence number before the send.
    pub(crate) fn send_detached(
        &self,
        msg: Message,
        data: &[u8],
        deadline: Deadline,
        timeout: Duration,
    ) -> Result<u64> {
        self.send_queued(msg, data, deadline, timeout, false)
    }

    /// A message without a reply: written on the calling thread and waited
    /// for (`blocking`), or handed to the sender thread.
    fn send_queued(
        &self,
        mut msg: Message,
        data: &[u8],
        deadline: Deadline,
        timeout: Duration,
        blocking: bool,
    ) -> Result<u64> {
        msg.additional_data_len = self.check_data(data)?;
        let s = self.shared();
        let seq = s.last_seq();
        // A message carrying TRIGGER_CALL_BACK, or of a code the
        // instrument answers even without it, may be answered: its key
        // stays closed to requests until the answer (an event) came, so
        // the answer can never be taken for a request's reply.
        let flagged = (msg.flags.contains(Flags::TRIGGER_CALL_BACK)
            || ANSWERED_WITHOUT_FLAG.contains(&msg.code))
            && !msg.code.info().is_some_and(|i| i.unsolicited.always());
        let started = s.start(
            &msg,
            data,
            deadline,
            timeout,
            conn::Kind::Send { flagged },
            blocking,
        )?;
        if blocking {
            Op::new(
                op::What::Sending(msg.code),
                deadline,
                timeout,
                SentStep::new(Pending::new(s.clone(), started)),
            )
            .wait()?;
        }
        Ok(seq)
    }

    /// The newest sequence number handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.shared().last_seq()
    }

    /// Subscribes to every event. See [`Subscription`].
    pub fn subscribe(&self) -> Subscription {
        let s = self.shared();
        s.hub.subscribe(None, s.config.event_queue_depth)
    }

    /// Subscribes to events of the given codes (connection events always pass).
    pub fn subscribe_to(&self, codes: &[CommandCode]) -> Subscription {
        let s = self.shared();
        s.hub.subscribe(Some(codes), s.config.event_queue_depth)
    }

    /// Subscribes with a queue of its own depth (at least 1) instead of the
    /// client's [`event_queue_depth`](ClientConfig::event_queue_depth): to
    /// every event (`codes` is `None`) or to the given codes (connection
    /// events always pass). Its additional data is still bounded by
    /// [`event_queue_bytes`](ClientConfig::event_queue_bytes).
    ///
    /// ```
    /// # fn main() -> flamingo_client::Result<()> {
    /// # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
    /// use flamingo_client::codec::CommandCode;
    /// let client = flamingo_client::Client::connect(&sim.addr().to_string(), Default::default())?;
    /// let progress = client.subscribe_with_depth(Some(&[CommandCode::UI_SET_GAUGE_VALUE]), 16_384);
    /// assert_eq!(progress.dropped(), 0);
    /// # Ok(()) }
    /// ```
    pub fn subscribe_with_depth(
        &self,
        codes: Option<&[CommandCode]>,
        depth: usize,
    ) -> Subscription {
        self.shared().hub.subscribe(codes, depth.max(1))
    }

    /// Waits for the first event with sequence number above `after` that
    /// satisfies `filter`, for at most `timeout` (`Duration::MAX`: no
    /// deadline). Events that arrived before this call are still seen
    /// (from a short history) if they are newer than `after`; older ones
    /// never match, so a stale event cannot satisfy the wait. The filter
    /// runs on the calling thread with no lock held: it may call back into
    /// the client.
    pub fn wait_for_event(
        &self,
        filter: impl FnMut(&Event) -> bool,
        after: u64,
        timeout: Duration,
    ) -> Result<Event> {
        self.wait_for_event_until(filter, after, Deadline::after(timeout), timeout)
    }

    pub(crate) fn wait_for_event_until(
        &self,
        mut filter: impl FnMut(&Event) -> bool,
        after: u64,
        deadline: Deadline,
        timeout: Duration,
    ) -> Result<Event> {
        let s = self.shared();
        let (sub, recent) = s
            .hub
            .subscribe_with_history(s.config.event_queue_depth, after);
        if let Some(ev) = recent.into_iter().find(|e| filter(e)) {
            return Ok(ev);
        }
        if let Some(e) = s.conn.lock().down_error() {
            if s.hub.is_closed() {
                return Err(e);
            }
        }
        sub.wait_for_until(filter, after, deadline, timeout)
    }

    /// Runs `callback` for every event on a thread of its own (never the
    /// reader thread), with no lock held, fed by its own queue of
    /// [`event_queue_depth`](ClientConfig::event_queue_depth) events. A
    /// panicking callback is caught and logged; a slow one costs only its
    /// own queue (its oldest events are dropped and counted in
    /// [`Stats::subscribers`]), never another callback's time; a callback
    /// may call [`request`](Client::request)
    /// or [`close`](Client::close). A callback that captures a `Client`
    /// keeps the connection alive until [`close`](Client::close) is called,
    /// which drops every callback. Fails with `Disconnected` after close.
    pub fn on_event(
        &self,
        callback: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Result<CallbackId> {
        let s = self.shared();
        s.dispatcher
            .add(&s.hub, s.config.event_queue_depth, Arc::new(callback))
    }

    /// Removes a callback; returns false if it was not registered.
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        let s = self.shared();
        s.dispatcher.remove(&s.hub, id)
    }

    /// Closes the connection: idempotent, callable from any thread at any
    /// time, including during a connection attempt, and returns promptly
    /// (it interrupts connects, backoff waits and blocked writes). Every
    /// waiting request fails with `Disconnected`, subscribers receive a
    /// final [`EventKind::Closed`] (exactly once, before any caller sees
    /// the error), callbacks are dropped, and every thread the client
    /// started is joined before this returns; a concurrent `close()` waits
    /// for the one joining. Called on one of the client's own threads (a
    /// callback, the waker) it closes at once but joins nothing (those
    /// threads may be closing too); a later `close()` from another thread,
    /// or dropping the last handle there, waits for them to end.
    pub fn close(&self) {
        let s = self.shared();
        s.shut(DisconnectReason::ClosedByUser, "closed by the user".into());
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
        let s = self.shared();
        let deadline = Deadline::after(timeout);
        if !s.config.live {
            return Err(Error::invalid(
                "the live port is disabled in this client's configuration (ClientConfig::live)",
            ));
        }
        // Single flight, but within our own deadline: another thread may be
        // retrying a refused live port for much longer.
        let Some(_single) = s.live_connect.try_lock_until(deadline.wait_slice()) else {
            return Err(Error::timeout(
                TimeoutPhase::Connect,
                "the live port connection (another thread is still connecting it)",
                timeout,
            ));
        };
        if let Some(l) = s.live.lock().as_ref() {
            if !l.is_finished() {
                return Ok(l.clone());
            }
        }
        if let Some(e) = s.conn.lock().down_error() {
            return Err(e);
        }
        let addr = self.live_addr()?;
        let stream = match LiveStream::connect(addr, s.config.live_config.clone(), deadline.wait_slice())
        {
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
        if let Some(e) = s.conn.lock().down_error() {
            drop(slot);
            stream.close();
            return Err(e);
        }
        if let Some(old) = slot.replace(stream.clone()) {
            old.close();
        }
        Ok(stream)
    }

    /// The live stream if it is open, without connecting.
    pub fn live_if_open(&self) -> Option<Arc<LiveStream>> {
        self.shared()
            .live
            .lock()
            .as_ref()
            .filter(|l| !l.is_finished())
            .cloned()
    }

    /// Closes the live socket (live view stopped; the instrument may serve
    /// only one live client). The next [`live`](Client::live) reconnects.
    pub fn close_live(&self) {
        self.shared().close_live();
    }

    /// The live port address: the address the command socket is connected
    /// to (or, before any connection, the first address `addr` resolves
    /// to), with the port plus one.
    pub fn live_addr(&self) -> Result<SocketAddr> {
        let s = self.shared();
        let peer = s.conn.lock().peer;
        let cmd = match peer {
            Some(p) => p,
            None => transport::resolve(&s.addr)?[0],
        };
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
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.shared();
        let c = &s.counters;
        let (pending, tombstones, last_error, (queued_messages, queued_bytes)) = {
            let conn = s.conn.lock();
            (
                conn.waiting(),
                conn.abandoned(),
                conn.last_error.clone(),
                conn.queued(),
            )
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
            link_resyncs: c.link_resyncs.load(Relaxed),
            echo_mismatches: c.echo_mismatches.load(Relaxed),
            callback_panics: s.dispatcher.panics.load(Relaxed),
            fences: c.fences.load(Relaxed),
            sends_expired: c.sends_expired.load(Relaxed),
            queued_messages,
            queued_bytes,
            pending_requests: pending,
            tombstones,
            last_error,
            subscribers: s.hub.subscriber_stats(),
            latency: s.latency.summary(),
        }
    }
}
