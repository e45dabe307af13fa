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
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use crate::codec::{Axis, CommandCode, Message};
use crate::{Error, Result};

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
    /// The supervisor is about to make reconnection attempt `attempt`
    /// (after the policy's delay).
    Reconnecting {
        /// The attempt (1-based).
        attempt: u32,
    },
    /// The connection was re-established by the supervisor.
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
    alive: AtomicBool,
    dropped: AtomicU64,
    delivered: AtomicU64,
}

struct Sub {
    id: u64,
    codes: Option<Box<[CommandCode]>>,
    tx: Sender<Event>,
    /// Our own handle on the queue, used to drop the oldest event when full.
    rx: Receiver<Event>,
    shared: Arc<SubShared>,
}

impl Sub {
    fn wants(&self, ev: &Event) -> bool {
        match (&self.codes, ev.code()) {
            (None, _) | (_, None) => true,
            (Some(codes), Some(c)) => codes.contains(&c),
        }
    }
}

/// A subscription to events: a crossbeam [`Receiver`] (through `Deref`) with
/// its own bounded queue. Dropping it unsubscribes.
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
    /// until `timeout`. Connection loss ends the wait with `Disconnected`.
    pub fn wait_for(
        &self,
        mut pred: impl FnMut(&Event) -> bool,
        after: u64,
        timeout: Duration,
    ) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(ev) => {
                    if let EventKind::Disconnected { reason } | EventKind::Closed { reason } =
                        &ev.kind
                    {
                        return Err(Error::disconnected(reason.clone()));
                    }
                    if ev.seq > after && pred(&ev) {
                        return Ok(ev);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::timeout("the expected event", timeout))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::disconnected("the client was closed"))
                }
            }
        }
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
        self.shared.alive.store(false, Relaxed);
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
    next_id: u64,
    closed: bool,
}

/// The event fan-out: subscribers plus a short history of recent events.
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    history_cap: usize,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
}

impl Hub {
    pub fn new(history_cap: usize) -> Hub {
        Hub {
            inner: Mutex::new(HubInner {
                subs: Vec::new(),
                history: VecDeque::with_capacity(history_cap),
                next_id: 1,
                closed: false,
            }),
            history_cap,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn add(inner: &mut HubInner, codes: Option<&[CommandCode]>, depth: usize) -> Subscription {
        let (tx, rx) = bounded(depth.max(1));
        let shared = Arc::new(SubShared {
            alive: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        let id = inner.next_id;
        inner.next_id += 1;
        if !inner.closed {
            inner.subs.push(Sub {
                id,
                codes: codes.map(Into::into),
                tx,
                rx: rx.clone(),
                shared: shared.clone(),
            });
        } // else: tx is dropped here, so the receiver reports disconnection at once.
        Subscription { id, rx, shared }
    }

    pub fn subscribe(&self, codes: Option<&[CommandCode]>, depth: usize) -> Subscription {
        Hub::add(&mut self.inner.lock(), codes, depth)
    }

    /// Subscribes and, atomically with it, looks in the history for an event
    /// after `after` satisfying `pred`: no event can fall between the two.
    pub fn subscribe_and_scan(
        &self,
        depth: usize,
        after: u64,
        pred: &mut dyn FnMut(&Event) -> bool,
    ) -> (Subscription, Option<Event>) {
        let mut inner = self.inner.lock();
        let found = inner
            .history
            .iter()
            .find(|e| e.seq > after && pred(e))
            .cloned();
        let sub = Hub::add(&mut inner, None, depth);
        (sub, found)
    }

    /// Fans an event out. Never blocks: a full queue loses its oldest event.
    pub fn publish(&self, ev: Event) {
        let mut inner = self.inner.lock();
        self.publish_locked(&mut inner, ev);
    }

    fn publish_locked(&self, inner: &mut HubInner, ev: Event) {
        if inner.closed {
            return;
        }
        let mut any_dead = false;
        for sub in &inner.subs {
            if !sub.shared.alive.load(Relaxed) {
                any_dead = true;
                continue;
            }
            if !sub.wants(&ev) {
                continue;
            }
            // Counted before the hand-off, so a subscriber that reads the
            // stats after receiving an event always finds it counted.
            sub.shared.delivered.fetch_add(1, Relaxed);
            self.delivered.fetch_add(1, Relaxed);
            let mut item = ev.clone();
            loop {
                match sub.tx.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        // Drop the oldest queued event to make room.
                        if sub.rx.try_recv().is_ok() {
                            sub.shared.dropped.fetch_add(1, Relaxed);
                            self.dropped.fetch_add(1, Relaxed);
                        }
                        item = back;
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
        if any_dead {
            inner.subs.retain(|s| s.shared.alive.load(Relaxed));
        }
        if self.history_cap > 0 && !ev.kind.is_connection() {
            if inner.history.len() == self.history_cap {
                inner.history.pop_front();
            }
            inner.history.push_back(ev);
        }
    }

    /// Publishes the final event and drops every queue's sender, so each
    /// subscriber drains what is queued and then sees disconnection.
    /// Returns false if the hub was already closed.
    pub fn close(&self, last: Event) -> bool {
        let subs = {
            let mut inner = self.inner.lock();
            if inner.closed {
                return false;
            }
            self.publish_locked(&mut inner, last);
            inner.closed = true;
            inner.history.clear();
            std::mem::take(&mut inner.subs)
        };
        drop(subs);
        true
    }

    pub fn subscriber_stats(&self) -> Vec<SubscriberStats> {
        self.inner
            .lock()
            .subs
            .iter()
            .filter(|s| s.shared.alive.load(Relaxed))
            .map(|s| SubscriberStats {
                id: s.id,
                delivered: s.shared.delivered.load(Relaxed),
                dropped: s.shared.dropped.load(Relaxed),
            })
            .collect()
    }
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;
type CallbackList = Arc<Mutex<Arc<Vec<(u64, Callback)>>>>;

/// Identifies a callback registered with [`Client::on_event`](crate::Client::on_event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

/// Runs user callbacks on one dispatcher thread, never on the reader.
///
/// The callback list is copy-on-write: the thread takes a snapshot for each
/// event, so a callback may add or remove callbacks (itself included) while
/// it runs without deadlock.
pub(crate) struct Dispatcher {
    callbacks: CallbackList,
    next: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: Mutex<Option<ThreadId>>,
    pub panics: Arc<AtomicU64>,
}

impl Dispatcher {
    pub fn new() -> Dispatcher {
        Dispatcher {
            callbacks: Arc::new(Mutex::new(Arc::new(Vec::new()))),
            next: AtomicU64::new(1),
            thread: Mutex::new(None),
            thread_id: Mutex::new(None),
            panics: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Registers a callback, starting the dispatcher thread on first use.
    pub fn add(&self, hub: &Hub, depth: usize, cb: Callback) -> Result<CallbackId> {
        let id = self.next.fetch_add(1, Relaxed);
        {
            let mut cbs = self.callbacks.lock();
            let mut v: Vec<_> = cbs.as_ref().clone();
            v.push((id, cb));
            *cbs = Arc::new(v);
        }
        let mut thread = self.thread.lock();
        if thread.is_none() {
            let sub = hub.subscribe(None, depth);
            let list = self.callbacks.clone();
            let panics = self.panics.clone();
            let handle = std::thread::Builder::new()
                .name("flamingo-dispatch".into())
                .spawn(move || dispatch_loop(sub, list, panics))
                .map_err(Error::Io)?;
            *self.thread_id.lock() = Some(handle.thread().id());
            *thread = Some(handle);
        }
        Ok(CallbackId(id))
    }

    /// Removes a callback. Returns false if it was not registered. A call
    /// already running finishes; no later event reaches it.
    pub fn remove(&self, id: CallbackId) -> bool {
        let mut cbs = self.callbacks.lock();
        let before = cbs.len();
        let v: Vec<_> = cbs.iter().filter(|(i, _)| *i != id.0).cloned().collect();
        let removed = v.len() != before;
        *cbs = Arc::new(v);
        removed
    }

    /// Joins the dispatcher thread (after the hub was closed), unless called
    /// from the dispatcher thread itself (a callback dropping the last client).
    pub fn join(&self) {
        let me = std::thread::current().id();
        if *self.thread_id.lock() == Some(me) {
            return;
        }
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        // Drop the callbacks (and any client clones they captured).
        *self.callbacks.lock() = Arc::new(Vec::new());
    }
}

fn dispatch_loop(sub: Subscription, list: CallbackList, panics: Arc<AtomicU64>) {
    while let Ok(ev) = sub.recv() {
        let snapshot = list.lock().clone();
        for (_, cb) in snapshot.iter() {
            if catch_unwind(AssertUnwindSafe(|| cb(&ev))).is_err() {
                panics.fetch_add(1, Relaxed);
                log::error!(
                    "an event callback panicked on event #{} ({}); it stays registered",
                    ev.seq,
                    ev.kind.name()
                );
            }
        }
    }
    log::debug!("dispatcher thread exits");
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
        let hub = Hub::new(8);
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
        let hub = Hub::new(8);
        let s = hub.subscribe(Some(&[CommandCode::SYSTEM_STATE_IDLE]), 10);
        hub.publish(ev(1, CommandCode::UI_SET_GAUGE_VALUE));
        hub.publish(ev(2, CommandCode::SYSTEM_STATE_IDLE));
        hub.publish(Event::connection(3, EventKind::Reconnected { attempt: 1 }));
        let seqs: Vec<u64> = s.try_iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }

    #[test]
    fn dropped_subscription_is_pruned() {
        let hub = Hub::new(8);
        let s = hub.subscribe(None, 1);
        drop(s);
        hub.publish(ev(1, CommandCode::SYSTEM_STATE_IDLE));
        assert!(hub.subscriber_stats().is_empty());
    }

    #[test]
    fn history_scan_and_close() {
        let hub = Hub::new(4);
        for i in 1..=6 {
            hub.publish(ev(i, CommandCode::SYSTEM_STATE_IDLE));
        }
        let (_s, found) = hub.subscribe_and_scan(4, 4, &mut |_| true);
        assert_eq!(found.unwrap().seq, 5);
        let (_s, found) = hub.subscribe_and_scan(4, 6, &mut |_| true);
        assert!(found.is_none());
        let s = hub.subscribe(None, 4);
        assert!(hub.close(Event::connection(
            7,
            EventKind::Closed {
                reason: "bye".into()
            }
        )));
        assert!(!hub.close(Event::connection(
            8,
            EventKind::Closed {
                reason: "again".into()
            }
        )));
        assert!(matches!(s.recv().unwrap().kind, EventKind::Closed { .. }));
        assert!(s.recv().is_err());
        // Subscribing after close gives a receiver that is already disconnected.
        assert!(hub.subscribe(None, 4).recv().is_err());
    }

    #[test]
    fn wait_for_skips_older_and_ends_on_disconnect() {
        let hub = Hub::new(0);
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
}
