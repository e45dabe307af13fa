//! Unsolicited messages as typed events, and their fan-out to subscribers.
//!
//! Every message the reader cannot match to a waiting request becomes an
//! [`Event`] with the reader's sequence number. Each [`Subscription`] has its
//! own bounded queue; when a subscriber falls behind, its *oldest* event is
//! dropped and counted for it alone. Publishing never blocks the reader.

use std::collections::VecDeque;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use super::deadline::Deadline;
use crate::codec::{Axis, CommandCode, Message};
use crate::{DisconnectReason, Error, Result, TimeoutPhase};

/// What an event means. Built from the raw [`Message`] by [`EventKind::from_message`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// STAGE_MOTION_STOPPED: a move of `axis` ended at `position` (mm or degrees).
    MotionStopped {
        /// The axis that stopped.
        axis: Axis,
        /// Where it stopped, if the instrument reports it (0.0 otherwise).
        position: f64,
        /// The raw status (1 = stopped normally).
        status: u32,
    },
    /// SYSTEM_STATE_IDLE: the instrument returned to idle.
    SystemIdle,
    /// CAMERA_STACK_COMPLETE: a stack finished.
    StackComplete {
        /// Images acquired.
        acquired: i32,
        /// Images expected.
        expected: i32,
        /// Errors counted by the instrument.
        errors: i32,
        /// Duration of the stack in microseconds.
        duration_us: f64,
    },
    /// UI_SET_GAUGE_SIZE: the progress maximum.
    GaugeSize {
        /// The maximum.
        total: i32,
    },
    /// UI_SET_GAUGE_VALUE: progress.
    GaugeValue {
        /// Current value.
        current: i32,
        /// Maximum.
        total: i32,
    },
    /// UI_IMAGES_SAVED_TO_STORAGE: images were written.
    ImagesSaved {
        /// `int32Data0` as sent (its meaning is not documented by the vendor).
        count: i32,
    },
    /// LASER_LEVEL_GET broadcast: a laser's level (percent), as text in the buffer.
    LaserLevel {
        /// Laser index (1-4).
        laser: i32,
        /// The level in percent, or `None` if the text is not a number.
        level_percent: Option<f64>,
    },
    /// Any other message; see [`Event::message`].
    Unknown,
    /// The connection broke.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Reconnection attempt `attempt` starts (after the policy's delay).
    Reconnecting {
        /// The attempt (1-based).
        attempt: u32,
    },
    /// The connection was re-established (published before any event of
    /// the new link).
    Reconnected {
        /// Which attempt succeeded (1-based).
        attempt: u32,
    },
    /// The client was closed for good. Delivered exactly once, last.
    Closed {
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// Interprets an inbound message.
    ///
    /// ```
    /// use flamingo_client::codec::{Axis, CommandCode, Message};
    /// use flamingo_client::EventKind;
    ///
    /// let m = Message::new(CommandCode::STAGE_MOTION_STOPPED).with_int32_data0(3).with_status(1);
    /// assert!(matches!(EventKind::from_message(&m), EventKind::MotionStopped { axis: Axis::Z, status: 1, .. }));
    /// ```
    pub fn from_message(m: &Message) -> EventKind {
        match m.code {
            CommandCode::STAGE_MOTION_STOPPED => match Axis::from_wire(m.int32_data0) {
                Some(axis) => EventKind::MotionStopped {
                    axis,
                    position: m.double_data,
                    status: m.status,
                },
                None => EventKind::Unknown,
            },
            CommandCode::SYSTEM_STATE_IDLE => EventKind::SystemIdle,
            CommandCode::CAMERA_STACK_COMPLETE => EventKind::StackComplete {
                acquired: m.int32_data0,
                expected: m.int32_data1,
                errors: m.int32_data2,
                duration_us: m.double_data,
            },
            CommandCode::UI_SET_GAUGE_SIZE => EventKind::GaugeSize {
                total: m.int32_data0,
            },
            CommandCode::UI_SET_GAUGE_VALUE => EventKind::GaugeValue {
                current: m.int32_data0,
                total: m.int32_data1,
            },
            CommandCode::UI_IMAGES_SAVED_TO_STORAGE => EventKind::ImagesSaved {
                count: m.int32_data0,
            },
            CommandCode::LASER_LEVEL_GET => EventKind::LaserLevel {
                laser: m.int32_data0,
                level_percent: m.text().value.trim().parse().ok(),
            },
            _ => EventKind::Unknown,
        }
    }

    /// A short snake_case name, as used by the CLI's JSON output
    /// ("motion_stopped", "system_idle", "stack_complete", "gauge_size",
    /// "gauge_value", "images_saved", "laser_level", "unknown",
    /// "disconnected", "reconnecting", "reconnected", "closed").
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MotionStopped { .. } => "motion_stopped",
            EventKind::SystemIdle => "system_idle",
            EventKind::StackComplete { .. } => "stack_complete",
            EventKind::GaugeSize { .. } => "gauge_size",
            EventKind::GaugeValue { .. } => "gauge_value",
            EventKind::ImagesSaved { .. } => "images_saved",
            EventKind::LaserLevel { .. } => "laser_level",
            EventKind::Unknown => "unknown",
            EventKind::Disconnected { .. } => "disconnected",
            EventKind::Reconnecting { .. } => "reconnecting",
            EventKind::Reconnected { .. } => "reconnected",
            EventKind::Closed { .. } => "closed",
        }
    }

    /// True for connection events (disconnected, reconnecting, reconnected, closed).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            EventKind::Disconnected { .. }
                | EventKind::Reconnecting { .. }
                | EventKind::Reconnected { .. }
                | EventKind::Closed { .. }
        )
    }
}

/// One event: an unsolicited (or unmatched) message, or a connection event.
#[derive(Clone, Debug)]
pub struct Event {
    /// Sequence number given by the reader. Replies and events share one
    /// sequence, so an event with a larger number arrived after a reply with
    /// a smaller one.
    pub seq: u64,
    /// When the reader received it.
    pub received_at: Instant,
    /// Its meaning.
    pub kind: EventKind,
    /// The raw message (`None` for connection events).
    pub message: Option<Message>,
    /// Additional data that followed the message, if any.
    pub data: Option<Arc<[u8]>>,
}

impl Event {
    /// The command code, for message events.
    pub fn code(&self) -> Option<CommandCode> {
        self.message.map(|m| m.code)
    }

    pub(crate) fn connection(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            received_at: Instant::now(),
            kind,
            message: None,
            data: None,
        }
    }
}

struct SubShared {
    dropped: AtomicU64,
    delivered: AtomicU64,
    /// Why recent links ended, and why the client closed, by the sequence
    /// number of their connection event: a wait ended by one reports it.
    reasons: Mutex<VecDeque<(u64, DisconnectReason)>>,
}

struct Sub {
    id: u64,
    codes: Option<Box<[CommandCode]>>,
    tx: Sender<Event>,
    /// Our own handle on the queue, used to drop the oldest event when full.
    rx: Receiver<Event>,
    depth: usize,
    /// Bytes of additional data its queue may hold.
    max_bytes: usize,
    /// Sizes of the events sent to its queue, oldest first, as long as they
    /// may still be queued: the receiver takes from the front, so the last
    /// `rx.len()` of them are the ones still there.
    sizes: VecDeque<usize>,
    /// The sum of `sizes`.
    bytes: usize,
    shared: Arc<SubShared>,
}

impl Sub {
    /// Forgets the sizes of events the subscriber has taken.
    fn trim(&mut self) {
        let queued = self.rx.len();
        while self.sizes.len() > queued {
            if let Some(n) = self.sizes.pop_front() {
                self.bytes -= n;
            }
        }
    }

    /// Drops the oldest queued event (counted). False if none was left.
    fn drop_oldest(&mut self) -> bool {
        if self.rx.try_recv().is_err() {
            return false;
        }
        if let Some(n) = self.sizes.pop_front() {
            self.bytes -= n;
        }
        self.shared.dropped.fetch_add(1, Relaxed);
        true
    }

    fn wants(&self, ev: &Event) -> bool {
        match (&self.codes, ev.code()) {
            (None, _) | (_, None) => true,
            (Some(codes), Some(c)) => codes.contains(&c),
        }
    }
}

/// A subscription to events: a crossbeam [`Receiver`] (through `Deref`) with
/// its own bounded queue. Dropping it unsubscribes at once.
///
/// The queue holds at most the client's
/// [`event_queue_depth`](crate::ClientConfig::event_queue_depth) events;
/// when it is full the *oldest* is dropped (and counted in
/// [`dropped`](Subscription::dropped)), so the reader never waits for a slow
/// subscriber. Memory is taken as events arrive, not reserved up front.
///
/// Blocking semantics are the receiver's: `recv()` blocks until an event
/// arrives or the client is closed (then it returns `Err` once the queue is
/// drained: the last event is always [`EventKind::Closed`]). `try_recv()`
/// never blocks, which is what a GUI loop wants.
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// let client = flamingo_client::Client::connect("127.0.0.1:53717", Default::default())?;
/// let events = client.subscribe();
/// while let Ok(ev) = events.try_recv() {
///     println!("{} #{}", ev.kind.name(), ev.seq);
/// }
/// # Ok(()) }
/// ```
pub struct Subscription {
    id: u64,
    rx: Receiver<Event>,
    shared: Arc<SubShared>,
    hub: Weak<Mutex<HubInner>>,
}

impl Subscription {
    /// Events dropped from this subscription's queue because it was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Relaxed)
    }

    /// An id unique within the client, as shown in [`Stats::subscribers`](crate::Stats).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The underlying receiver (also reachable through `Deref`), for `select!`.
    pub fn receiver(&self) -> &Receiver<Event> {
        &self.rx
    }

    /// Waits for the first event with `seq > after` that satisfies `pred`,
    /// until `timeout` (`Duration::MAX`: no deadline). Connection loss ends
    /// the wait with `Disconnected`. The predicate runs on the calling
    /// thread, under no lock of the client's.
    pub fn wait_for(
        &self,
        pred: impl FnMut(&Event) -> bool,
        after: u64,
        timeout: Duration,
    ) -> Result<Event> {
        self.wait_for_until(pred, after, Deadline::after(timeout), timeout)
    }

    pub(crate) fn wait_for_until(
        &self,
        mut pred: impl FnMut(&Event) -> bool,
        after: u64,
        deadline: Deadline,
        timeout: Duration,
    ) -> Result<Event> {
        loop {
            match self.rx.recv_deadline(deadline.wait_slice()) {
                Ok(ev) => {
                    if ev.kind.is_connection()
                        && !matches!(
                            ev.kind,
                            EventKind::Reconnecting { .. } | EventKind::Reconnected { .. }
                        )
                    {
                        return Err(self.end_error(&ev));
                    }
                    if ev.seq > after && pred(&ev) {
                        return Ok(ev);
                    }
                }
                Err(RecvTimeoutError::Timeout) if deadline.expired() => {
                    return Err(Error::timeout(
                        TimeoutPhase::Event,
                        "the expected event",
                        timeout,
                    ))
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::disconnected(
                        DisconnectReason::ClosedByUser,
                        "the client was closed",
                    ))
                }
            }
        }
    }
}

impl Subscription {
    /// The error a wait ended by `ev` (a `Disconnected` or `Closed` event)
    /// reports: its reason and words.
    pub(crate) fn end_error(&self, ev: &Event) -> Error {
        let words = match &ev.kind {
            EventKind::Disconnected { reason } | EventKind::Closed { reason } => reason.clone(),
            _ => "the connection ended".to_string(),
        };
        Error::disconnected(self.reason_for(ev.seq), words)
    }

    /// Why the link or the client ended, for its connection event `seq`.
    fn reason_for(&self, seq: u64) -> DisconnectReason {
        self.shared
            .reasons
            .lock()
            .iter()
            .find(|(s, _)| *s == seq)
            .map_or(DisconnectReason::ClosedByPeer, |(_, r)| *r)
    }
}

impl Deref for Subscription {
    type Target = Receiver<Event>;
    fn deref(&self) -> &Receiver<Event> {
        &self.rx
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Removed at once, so an abandoned subscription holds no queue.
        let removed = self.hub.upgrade().and_then(|hub| {
            let mut inner = hub.lock();
            let pos = inner.subs.iter().position(|s| s.id == self.id)?;
            Some(inner.subs.swap_remove(pos))
        });
        // Its queued events are dropped here, outside the hub's lock.
        drop(removed);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("queued", &self.rx.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// What a closed hub lets go of, dropped outside every lock.
pub(crate) struct Closing {
    _subs: Vec<Sub>,
    _history: VecDeque<Event>,
}

/// Per-subscriber counters, in [`Stats`](crate::Stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// The subscription's id.
    pub id: u64,
    /// Events put in its queue.
    pub delivered: u64,
    /// Events dropped because its queue was full.
    pub dropped: u64,
}

struct HubInner {
    subs: Vec<Sub>,
    history: VecDeque<Event>,
    history_bytes: usize,
    next_id: u64,
    closed: bool,
}

/// The event fan-out: subscribers plus a short history of recent events.
pub(crate) struct Hub {
    inner: Arc<Mutex<HubInner>>,
    history_cap: usize,
    history_bytes_cap: usize,
    queue_bytes_cap: usize,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
}

impl Hub {
    pub fn new(history_cap: usize, history_bytes_cap: usize, queue_bytes_cap: usize) -> Hub {
        Hub {
            inner: Arc::new(Mutex::new(HubInner {
                subs: Vec::new(),
                history: VecDeque::new(),
                history_bytes: 0,
                next_id: 1,
                closed: false,
            })),
            history_cap,
            history_bytes_cap,
            queue_bytes_cap,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn add(
        &self,
        inner: &mut HubInner,
        codes: Option<&[CommandCode]>,
        depth: usize,
    ) -> Subscription {
        // Unbounded in type, bounded by `depth` in `publish`: crossbeam's
        // unbounded queue allocates in small blocks as events arrive, where
        // a bounded one reserves every slot up front.
        let (tx, rx) = unbounded();
        let shared = Arc::new(SubShared {
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            reasons: Mutex::new(VecDeque::new()),
        });
        let id = inner.next_id;
        inner.next_id += 1;
        if !inner.closed {
            inner.subs.push(Sub {
                id,
                codes: codes.map(Into::into),
                tx,
                rx: rx.clone(),
                depth: depth.max(1),
                max_bytes: self.queue_bytes_cap,
                sizes: VecDeque::new(),
                bytes: 0,
                shared: shared.clone(),
            });
        } // else: tx is dropped here, so the receiver reports disconnection at once.
        Subscription {
            id,
            rx,
            shared,
            hub: Arc::downgrade(&self.inner),
        }
    }

    pub fn subscribe(&self, codes: Option<&[CommandCode]>, depth: usize) -> Subscription {
        let mut inner = self.inner.lock();
        self.add(&mut inner, codes, depth)
    }

    /// Subscribes and, atomically with it, copies the recent events newer
    /// than `after`: no event can fall between the two. The caller scans
    /// the copy with its own filter, outside the lock.
    pub fn subscribe_with_history(&self, depth: usize, after: u64) -> (Subscription, Vec<Event>) {
        let mut inner = self.inner.lock();
        let recent = inner
            .history
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        let sub = self.add(&mut inner, None, depth);
        (sub, recent)
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Removes subscription `id` (its receiver then reports disconnection
    /// once drained). False if it was not there. Its queue is dropped
    /// outside the lock.
    pub fn unsubscribe(&self, id: u64) -> bool {
        let removed = {
            let mut inner = self.inner.lock();
            let pos = inner.subs.iter().position(|s| s.id == id);
            pos.map(|p| inner.subs.swap_remove(p))
        };
        removed.is_some()
    }

    /// Fans an event out. Never blocks: a full queue loses its oldest event.
    pub fn publish(&self, ev: Event) {
        let mut inner = self.inner.lock();
        self.publish_locked(&mut inner, ev);
    }

    fn note_reason(inner: &HubInner, seq: u64, reason: DisconnectReason) {
        for sub in &inner.subs {
            let mut r = sub.shared.reasons.lock();
            r.push_back((seq, reason));
            while r.len() > 16 {
                r.pop_front();
            }
        }
    }

    /// Publishes a link's `Disconnected` event and remembers why it ended.
    pub fn publish_disconnect(&self, ev: Event, reason: DisconnectReason) {
        let mut inner = self.inner.lock();
        Hub::note_reason(&inner, ev.seq, reason);
        self.publish_locked(&mut inner, ev);
    }

    fn publish_locked(&self, inner: &mut HubInner, ev: Event) {
        if inner.closed {
            return;
        }
        let size = ev.data.as_ref().map_or(0, |d| d.len());
        for sub in &mut inner.subs {
            if !sub.wants(&ev) {
                continue;
            }
            // Counted before the hand-off, so a subscriber that reads the
            // stats after receiving an event always finds it counted.
            sub.shared.delivered.fetch_add(1, Relaxed);
            self.delivered.fetch_add(1, Relaxed);
            // Only the hub sends, under its lock, so the queue cannot grow
            // between the checks and the send.
            sub.trim();
            if size > sub.max_bytes {
                // Larger than the whole budget: never held, only counted.
                sub.shared.dropped.fetch_add(1, Relaxed);
                self.dropped.fetch_add(1, Relaxed);
                log::warn!(
                    "an event of {size} bytes of additional data is over a subscription's {}-byte budget; dropped for it",
                    sub.max_bytes
                );
                continue;
            }
            while sub.rx.len() >= sub.depth || (sub.bytes > 0 && sub.bytes + size > sub.max_bytes) {
                if !sub.drop_oldest() {
                    break;
                }
                self.dropped.fetch_add(1, Relaxed);
            }
            sub.sizes.push_back(size);
            sub.bytes += size;
            let _ = sub.tx.send(ev.clone());
        }
        if self.history_cap > 0 && !ev.kind.is_connection() {
            let mut ev = ev;
            let bytes = ev.data.as_ref().map_or(0, |d| d.len());
            if bytes > self.history_bytes_cap {
                ev.data = None; // kept, but without a payload over the budget
            } else {
                inner.history_bytes += bytes;
            }
            inner.history.push_back(ev);
            while inner.history.len() > self.history_cap
                || inner.history_bytes > self.history_bytes_cap
            {
                let Some(old) = inner.history.pop_front() else {
                    break;
                };
                inner.history_bytes -= old.data.as_ref().map_or(0, |d| d.len());
            }
        }
    }

    /// Publishes the final event and lets go of every queue's sender, so
    /// each subscriber drains what is queued and then sees disconnection.
    /// Returns what the caller drops once it has released its locks (`None`
    /// if the hub was already closed).
    pub fn close(&self, last: Event, reason: DisconnectReason) -> Option<Closing> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return None;
        }
        Hub::note_reason(&inner, last.seq, reason);
        self.publish_locked(&mut inner, last);
        inner.closed = true;
        inner.history_bytes = 0;
        Some(Closing {
            _subs: std::mem::take(&mut inner.subs),
            _history: std::mem::take(&mut inner.history),
        })
    }

    pub fn subscriber_stats(&self) -> Vec<SubscriberStats> {
        self.inner
            .lock()
            .subs
            .iter()
            .map(|s| SubscriberStats {
                id: s.id,
                delivered: s.shared.delivered.load(Relaxed),
                dropped: s.shared.dropped.load(Relaxed),
            })
            .collect()
    }

    /// Events kept in the history and the bytes of data they hold.
    #[cfg(test)]
    fn history_size(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.history.len(), inner.history_bytes)
    }
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// Identifies a callback registered with [`Client::on_event`](crate::Client::on_event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

/// Runs user callbacks, never on the reader: each callback has its own
/// subscription (a bounded, drop-oldest queue) and its own thread, so an
/// event reaches a callback with one hand-off, and a slow callback costs
/// only its own queue (its drops are counted in its subscriber statistics),
/// never another callback's latency or the reader's time.
///
/// The threads' lives are tied to the teardown: [`join`](Dispatcher::join)
/// closes the dispatcher under the same lock that starting a thread takes,
/// so a thread is either started before (and then joined) or refused.
pub(crate) struct Dispatcher {
    /// The client it belongs to (see `shared::mark_thread`).
    owner: u64,
    next: AtomicU64,
    workers: Mutex<Workers>,
    /// Signalled when a join has finished, for concurrent joins.
    joined: Condvar,
    pub panics: Arc<AtomicU64>,
}

/// The callback threads, under the dispatcher's lock.
#[derive(Default)]
struct Workers {
    threads: Vec<Worker>,
    /// Set by the first join: no thread is started after it.
    closed: bool,
    /// Joins waiting for threads (outside the lock).
    joining: usize,
}

struct Worker {
    id: u64,
    /// The subscription feeding it (removed to stop it).
    sub: u64,
    /// Set when the callback is removed: no later event reaches it, even
    /// one already in its queue.
    stop: Arc<AtomicBool>,
    /// Until a join takes it.
    handle: Option<JoinHandle<()>>,
    /// A join from this thread (a callback closing the client) must not
    /// wait for itself.
    thread: ThreadId,
}

fn closed_error() -> Error {
    Error::disconnected(
        DisconnectReason::ClosedByUser,
        "the client is closed: no event will come",
    )
}

impl Dispatcher {
    pub fn new(owner: u64) -> Dispatcher {
        Dispatcher {
            owner,
            next: AtomicU64::new(1),
            workers: Mutex::new(Workers::default()),
            joined: Condvar::new(),
            panics: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Registers a callback on a thread of its own. Fails once the hub is
    /// closed or the dispatcher joined (nothing would ever call it); the
    /// refused callback is dropped outside every lock.
    pub fn add(&self, hub: &Hub, depth: usize, cb: Callback) -> Result<CallbackId> {
        let id = self.next.fetch_add(1, Relaxed);
        let mut workers = self.workers.lock();
        if workers.closed || hub.is_closed() {
            drop(workers);
            drop(cb);
            return Err(closed_error());
        }
        // Started under the lock: a join either comes after this and joins
        // the thread, or came before and refused it.
        let sub = hub.subscribe(None, depth);
        let sub_id = sub.id();
        let panics = self.panics.clone();
        let owner = self.owner;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("flamingo-callback-{id}"))
            .spawn(move || {
                super::shared::mark_thread(owner);
                callback_loop(sub, cb, panics, &stopped)
            });
        match spawned {
            Ok(handle) => {
                workers.threads.push(Worker {
                    id,
                    sub: sub_id,
                    stop,
                    thread: handle.thread().id(),
                    handle: Some(handle),
                });
                Ok(CallbackId(id))
            }
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Removes a callback. Returns false if it was not registered. A call
    /// already running finishes; no later event reaches it. Never waits
    /// (a callback may remove itself): its thread ends by itself and drops
    /// the callback, outside every lock.
    pub fn remove(&self, hub: &Hub, id: CallbackId) -> bool {
        let sub = {
            let w = self.workers.lock();
            match w
                .threads
                .iter()
                .find(|t| t.id == id.0 && t.handle.is_some())
            {
                Some(t) if !t.stop.swap(true, Relaxed) => t.sub,
                _ => return false,
            }
        };
        hub.unsubscribe(sub);
        true
    }

    /// Closes the dispatcher (no thread starts after this) and joins its
    /// threads, after the hub was closed. Every call returns only once the
    /// threads have ended, and with them every callback and what it
    /// captured: a concurrent call waits for the join in progress. The
    /// exception is a call from a callback thread itself (a callback
    /// closing the client): it cannot wait for itself, and its thread ends
    /// by itself once the callback returns.
    pub fn join(&self) {
        let me = std::thread::current().id();
        let mut w = self.workers.lock();
        w.closed = true;
        if w.threads.iter().any(|t| t.thread == me) {
            // A callback closing the client: its siblings may be closing
            // too; a join from outside the callbacks joins them all.
            return;
        }
        let handles: Vec<_> = w
            .threads
            .iter_mut()
            .filter_map(|t| t.handle.take())
            .collect();
        w.joining += 1;
        drop(w);
        // The threads drop their callbacks when they end, under no lock.
        for h in handles {
            let _ = h.join();
        }
        let mut w = self.workers.lock();
        w.joining -= 1;
        self.joined.notify_all();
        while w.joining > 0 {
            self.joined.wait(&mut w);
        }
    }
}

fn callback_loop(sub: Subscription, cb: Callback, panics: Arc<AtomicU64>, stop: &AtomicBool) {
    while let Ok(ev) = sub.recv() {
        if stop.load(Relaxed) {
            break;
        }
        if catch_unwind(AssertUnwindSafe(|| cb(&ev))).is_err() {
            panics.fetch_add(1, Relaxed);
            log::error!(
                "an event callback panicked on event #{} ({}); it stays registered",
                ev.seq,
                ev.kind.name()
            );
        }
    }
    // Closed, or the callback was removed, and every event was delivered:
    // the callback (and what it captured) goes here, outside every lock.
    drop(cb);
    log::debug!("callback thread exits");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, code: CommandCode) -> Event {
        Event {
            seq,
            received_at: Instant::now(),
            kind: EventKind::from_message(&Message::new(code)),
            message: Some(Message::new(code)),
            data: None,
        }
    }

    #[test]
    fn drop_oldest_per_subscriber() {
        let hub = Hub::new(8, 1 << 20, 1 << 30);
        let slow = hub.subscribe(None, 2);
        let fast = hub.subscribe(None, 100);
        for i in 1..=5 {
            hub.publish(ev(i, CommandCode::UI_SET_GAUGE_VALUE));
        }
        assert_eq!(slow.dropped(), 3);
        assert_eq!(fast.dropped(), 0);
        let seqs: Vec<u64> = slow.try_iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        assert_eq!(fast.try_iter().count(), 5);
    }

    #[test]
    fn code_filter_passes_connection_events() {
        let hub = Hub::new(8, 1 << 20, 1 << 30);
        let s = hub.subscribe(Some(&[CommandCode::SYSTEM_STATE_IDLE]), 10);
        hub.publish(ev(1, CommandCode::UI_SET_GAUGE_VALUE));
        hub.publish(ev(2, CommandCode::SYSTEM_STATE_IDLE));
        hub.publish(Event::connection(3, EventKind::Reconnected { attempt: 1 }));
        let seqs: Vec<u64> = s.try_iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }

    #[test]
    fn dropped_subscription_is_removed_at_once() {
        let hub = Hub::new(8, 1 << 20, 1 << 30);
        for _ in 0..500 {
            let s = hub.subscribe(None, 1024);
            drop(s);
        }
        assert!(hub.subscriber_stats().is_empty());
    }

    #[test]
    fn history_keeps_payloads_within_its_byte_budget() {
        let hub = Hub::new(256, 1000, 1 << 30);
        for i in 1..=32 {
            let mut e = ev(i, CommandCode::UI_SET_GAUGE_VALUE);
            e.data = Some(Arc::from(vec![0u8; 400]));
            hub.publish(e);
        }
        let (n, bytes) = hub.history_size();
        assert_eq!(n, 2, "older events with payloads are let go");
        assert!(bytes <= 1000);
        let mut big = ev(33, CommandCode::UI_SET_GAUGE_VALUE);
        big.data = Some(Arc::from(vec![0u8; 5000]));
        hub.publish(big);
        let (_s, recent) = hub.subscribe_with_history(4, 32);
        assert!(
            recent[0].data.is_none(),
            "kept without its oversized payload"
        );
    }

    #[test]
    fn history_scan_and_close() {
        let hub = Hub::new(4, 1 << 20, 1 << 30);
        for i in 1..=6 {
            hub.publish(ev(i, CommandCode::SYSTEM_STATE_IDLE));
        }
        let (_s, found) = hub.subscribe_with_history(4, 4);
        assert_eq!(found[0].seq, 5);
        let (_s, found) = hub.subscribe_with_history(4, 6);
        assert!(found.is_empty());
        let s = hub.subscribe(None, 4);
        assert!(hub
            .close(
                Event::connection(
                    7,
                    EventKind::Closed {
                        reason: "bye".into()
                    }
                ),
                DisconnectReason::ClosedByUser
            )
            .is_some());
        assert!(hub
            .close(
                Event::connection(
                    8,
                    EventKind::Closed {
                        reason: "again".into()
                    }
                ),
                DisconnectReason::ClosedByUser
            )
            .is_none());
        assert!(matches!(s.recv().unwrap().kind, EventKind::Closed { .. }));
        assert!(s.recv().is_err());
        // Subscribing after close gives a receiver that is already disconnected.
        assert!(hub.subscribe(None, 4).recv().is_err());
    }

    #[test]
    fn wait_for_skips_older_and_ends_on_disconnect() {
        let hub = Hub::new(0, 1 << 20, 1 << 30);
        let s = hub.subscribe(None, 16);
        hub.publish(ev(1, CommandCode::SYSTEM_STATE_IDLE));
        hub.publish(ev(2, CommandCode::UI_SET_GAUGE_VALUE));
        hub.publish(ev(3, CommandCode::SYSTEM_STATE_IDLE));
        let got = s
            .wait_for(
                |e| e.kind == EventKind::SystemIdle,
                1,
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(got.seq, 3);
        hub.publish(Event::connection(
            4,
            EventKind::Disconnected { reason: "x".into() },
        ));
        assert!(s
            .wait_for(|_| true, 3, Duration::from_secs(5))
            .unwrap_err()
            .is_disconnected());
    }

    /// Runs `f` on its own thread; panics if it does not return in time
    /// (a deadlock, for example a drop under a lock it takes again).
    fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("returned in time")
    }

    /// Calls `on_drop` when dropped: what a callback captured.
    struct OnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }

    fn closed_event() -> Event {
        Event::connection(
            99,
            EventKind::Closed {
                reason: "bye".into(),
            },
        )
    }

    #[test]
    fn a_joined_dispatcher_refuses_callbacks_and_drops_them_outside_its_locks() {
        let hub = Arc::new(Hub::new(4, 1 << 20, 1 << 30));
        let d = Arc::new(Dispatcher::new(0));
        let _ = hub.close(closed_event(), DisconnectReason::ClosedByUser);
        d.join();
        // The captured value re-enters the dispatcher when dropped: under
        // one of its locks that would deadlock.
        let reentered = within({
            let (hub, d) = (hub.clone(), d.clone());
            move || {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let captured = {
                    let (hub, d) = (hub.clone(), d.clone());
                    OnDrop(Some(Box::new(move || {
                        let again = d.add(&hub, 4, Arc::new(|_| {}));
                        let _ = tx.send(again.is_err());
                    })))
                };
                let r = d.add(
                    &hub,
                    4,
                    Arc::new(move |_| {
                        let _ = &captured;
                    }),
                );
                (r.is_err(), rx.try_recv())
            }
        });
        assert_eq!(reentered, (true, Ok(true)));
        assert!(d.workers.lock().threads.is_empty(), "no thread was started");
    }

    #[test]
    fn an_add_racing_the_teardown_is_refused_or_joined() {
        for hub_closed_first in [false, true] {
            let hub = Arc::new(Hub::new(4, 1 << 20, 1 << 30));
            let d = Arc::new(Dispatcher::new(0));
            let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
            // Both threads queue on the dispatcher's lock, then race for it.
            let held = d.workers.lock();
            let flag = dropped.clone();
            let captured = OnDrop(Some(Box::new(move || flag.store(true, Relaxed))));
            let adder = {
                let (hub, d) = (hub.clone(), d.clone());
                std::thread::spawn(move || {
                    d.add(
                        &hub,
                        4,
                        Arc::new(move |_| {
                            let _ = &captured;
                        }),
                    )
                    .is_ok()
                })
            };
            if hub_closed_first {
                let _ = hub.close(closed_event(), DisconnectReason::ClosedByUser);
            }
            let closer = {
                let (hub, d) = (hub.clone(), d.clone());
                std::thread::spawn(move || {
                    let _ = hub.close(closed_event(), DisconnectReason::ClosedByUser);
                    d.join();
                })
            };
            drop(held);
            let added = adder.join().unwrap();
            closer.join().unwrap();
            assert!(
                dropped.load(Relaxed),
                "added: {added}: the callback outlived the teardown"
            );
            let w = d.workers.lock();
            assert!(w.threads.iter().all(|t| t.handle.is_none()) && w.closed && w.joining == 0);
        }
    }

    #[test]
    fn a_slow_callback_costs_only_its_own_queue() {
        let hub = Arc::new(Hub::new(4, 1 << 20, 1 << 30));
        let d = Dispatcher::new(0);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        let (fast_tx, fast_rx) = crossbeam_channel::unbounded();
        d.add(
            &hub,
            2,
            Arc::new(move |_| {
                let _ = release_rx.recv_timeout(Duration::from_secs(20));
            }),
        )
        .unwrap();
        d.add(
            &hub,
            100,
            Arc::new(move |e: &Event| {
                let _ = fast_tx.send(e.seq);
            }),
        )
        .unwrap();
        for i in 1..=10 {
            hub.publish(ev(i, CommandCode::UI_SET_GAUGE_VALUE));
        }
        // The fast callback sees every event while the slow one is stuck.
        let seen: Vec<u64> = (0..10)
            .map(|_| fast_rx.recv_timeout(Duration::from_secs(20)).unwrap())
            .collect();
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
        let dropped: u64 = hub.subscriber_stats().iter().map(|s| s.dropped).sum();
        assert!(
            dropped >= 7,
            "the slow callback's queue dropped its oldest: {dropped}"
        );
        drop(release_tx);
        let _ = hub.close(closed_event(), DisconnectReason::ClosedByUser);
        d.join();
    }

    #[test]
    fn a_second_join_waits_for_the_first() {
        let hub = Arc::new(Hub::new(4, 1 << 20, 1 << 30));
        let d = Arc::new(Dispatcher::new(0));
        let (inside_tx, inside_rx) = crossbeam_channel::bounded(1);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        d.add(
            &hub,
            4,
            Arc::new(move |_| {
                let _ = inside_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(20));
            }),
        )
        .unwrap();
        let _ = hub.close(closed_event(), DisconnectReason::ClosedByUser);
        inside_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let (done_tx, done_rx) = crossbeam_channel::bounded(2);
        let joiners: Vec<_> = (0..2)
            .map(|_| {
                let (d, done_tx) = (d.clone(), done_tx.clone());
                std::thread::spawn(move || {
                    d.join();
                    done_tx.send(()).unwrap();
                })
            })
            .collect();
        // Both are waiting: the first on the thread, the second on the first.
        while d.workers.lock().joining == 0 {
            std::thread::yield_now();
        }
        assert!(done_rx.try_recv().is_err(), "a join returned early");
        release_tx.send(()).unwrap();
        for j in joiners {
            j.join().unwrap();
        }
        assert_eq!(done_rx.try_iter().count(), 2);
    }
}
