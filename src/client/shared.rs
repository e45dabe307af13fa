//! What the client's handles and threads share: the connection state under
//! its one lock and condition variable, the event fan-out, the counters.
//!
//! Every change of the connection's phase happens under `conn` and is
//! followed by `cv.notify_all()`; every wait on the phase is a predicate
//! loop over `conn`, so no wake-up is lost. Nothing here runs user code
//! while holding a lock: waiters are told, events published and the waker
//! called after the lock is released.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::conn::{Conn, QueueLimits};
use super::events::{Dispatcher, Event, EventKind, Hub};
use super::stats::{Counters, Latency};
use super::sync::thread::JoinHandle;
use super::sync::{Condvar, Mutex, RwLock};
use crate::codec::{MatchKey, Message};
use crate::live::LiveStream;
use crate::{ClientConfig, DisconnectReason};

use super::conn::Key;

super::sync::thread_local! {
    /// The client whose thread this is (0: none), so a teardown started on
    /// one of a client's own threads (a callback closing the client) never
    /// waits for that thread to end.
    static OWNER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The client whose reader this thread is (0: none): only the reader's
    /// own call of the waker ends its batch (see `Shared::wake`).
    static READER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as one of client `id`'s threads.
pub(crate) fn mark_thread(id: u64) {
    OWNER.with(|o| o.set(id));
}

/// Marks the calling thread as client `id`'s reader.
pub(crate) fn mark_reader(id: u64) {
    READER.with(|r| r.set(id));
}

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// A function called when an operation completes or an event is queued.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The client's threads, joined by the teardown.
#[derive(Default)]
pub(crate) struct Threads {
    pub conn: Option<JoinHandle<()>>,
    pub sender: Option<JoinHandle<()>>,
    /// Teardowns joining threads now.
    joining: usize,
    /// Every thread has been joined.
    joined: bool,
}

pub(crate) struct Shared {
    /// Unique in the process.
    pub id: u64,
    pub addr: String,
    pub config: ClientConfig,
    pub conn: Mutex<Conn>,
    pub cv: Condvar,
    pub hub: Hub,
    pub dispatcher: Dispatcher,
    pub counters: Counters,
    pub latency: Latency,
    seq: AtomicU64,
    pub threads: Mutex<Threads>,
    /// Signalled when the teardown has joined every thread.
    joined: Condvar,
    waker: RwLock<Option<Waker>>,
    /// The live image stream, connected on demand.
    pub live: Mutex<Option<Arc<LiveStream>>>,
    /// Serialises live connects without holding `live` while connecting.
    pub live_connect: Mutex<()>,
    /// The addresses `addr` resolved to at the first connect.
    pub resolved: Mutex<Option<Vec<std::net::SocketAddr>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("addr", &self.addr).finish()
    }
}

impl Shared {
    pub fn new(addr: &str, config: ClientConfig) -> Shared {
        let in_flight = config.max_in_flight_per_key.max(1);
        let id = NEXT_CLIENT.fetch_add(1, Relaxed);
        Shared {
            id,
            addr: addr.to_string(),
            conn: Mutex::new(Conn::new(
                in_flight,
                QueueLimits {
                    messages: config.max_queued_messages.max(1),
                    bytes: config.max_queued_bytes,
                },
            )),
            cv: Condvar::new(),
            hub: Hub::new(
                config.event_history,
                config.event_history_bytes,
                config.event_queue_bytes,
            ),
            dispatcher: Dispatcher::new(id),
            counters: Counters::default(),
            latency: Latency::new(),
            seq: AtomicU64::new(0),
            threads: Mutex::new(Threads::default()),
            joined: Condvar::new(),
            waker: RwLock::new(None),
            live: Mutex::new(None),
            live_connect: Mutex::new(()),
            resolved: Mutex::new(None),
            config,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Relaxed) + 1
    }

    pub fn last_seq(&self) -> u64 {
        self.seq.load(Relaxed)
    }

    /// The gate a request or reply of `msg` belongs to. By default the
    /// command code alone: whether the instrument echoes `int32Data0` is
    /// not confirmed, so correlation must not depend on it. Only with
    /// pipelining enabled are codes whose key is `int32Data0` split by it.
    pub fn key(&self, msg: &Message) -> Key {
        let sub = (self.config.max_in_flight_per_key > 1
            && self.config.key_for(msg.code) == MatchKey::Int0)
            .then_some(msg.int32_data0);
        Key {
            code: msg.code.0,
            sub,
        }
    }

    /// Whether a reply's `int32Data0` is checked against the request's: only
    /// for codes the instrument also broadcasts (a broadcast about another
    /// laser must not answer this laser's request). For codes that are never
    /// unsolicited the one request on the wire is the only possible owner of
    /// the reply, whatever `int32Data0` carries (the echo is not confirmed).
    pub fn checks_echo(&self, msg: &Message) -> bool {
        self.config.key_for(msg.code) == MatchKey::Int0
            && msg.code.info().is_some_and(|i| i.unsolicited.possible())
    }

    /// Replaces the waker. The old one (and what it captured) is dropped
    /// after the lock is released: its `Drop` may call back into the client.
    pub fn set_waker(&self, w: Option<Waker>) {
        let old = std::mem::replace(&mut *self.waker.write(), w);
        drop(old);
    }

    /// Calls the waker, if any. Never under an internal lock.
    pub fn wake(&self) {
        let w = self.waker.read().clone();
        if let Some(w) = w {
            // The waker is the caller's code and may be slow (it should
            // not be): nothing queued may wait for it. When the reader
            // calls it mid-batch, callers stop queueing for the reader,
            // and what they queued goes out now. Only then: the batch's
            // writes call this again when they finish, and a flush here
            // on every call would write the next batch from inside that
            // call, one level of stack per batch while the queue lasts.
            if READER.with(|r| r.get()) == self.id && self.conn.lock().reader_busy() {
                self.end_reader_batch();
            }
            w();
        }
    }

    /// Publishes an event and calls the waker.
    pub fn publish(&self, ev: Event) {
        self.hub.publish(ev);
        self.wake();
    }

    /// Terminal teardown, exactly once, from any thread. Under the
    /// connection lock, subscribers get the final `Closed` event and then
    /// every waiter its error, so a caller never learns of the closing
    /// before subscribers, and a caller at its deadline finds its request
    /// or its outcome. Returns false if the client was already closed.
    pub fn shut(&self, reason: DisconnectReason, detail: String) -> bool {
        let mut wakes = Vec::new();
        let (first, wire, dropped) = {
            let mut c = self.conn.lock();
            if c.is_closed() {
                return false;
            }
            let dropped = self.hub.close(
                Event::connection(
                    self.next_seq(),
                    EventKind::Closed {
                        reason: detail.clone(),
                    },
                ),
                reason,
            );
            let (first, wire) = c.close(reason, detail, &mut wakes);
            // Counted in the same step as the phase: whoever sees the
            // client closed finds the teardown counted.
            self.counters.teardowns.fetch_add(1, Relaxed);
            self.cv.notify_all();
            (first, wire, dropped)
        };
        drop(dropped);
        if let Some(w) = wire {
            w.shutdown();
        }
        self.close_live();
        self.wake_all(wakes);
        self.wake();
        first
    }

    pub fn close_live(&self) {
        let live = self.live.lock().take();
        if let Some(l) = live {
            l.close();
        }
    }

    /// Joins every thread this client started. Every caller returns only
    /// once the teardown is complete: a second, concurrent caller waits for
    /// the first to finish joining. A caller on one of the client's own
    /// threads (a callback or the waker closing the client) joins nothing:
    /// it cannot wait for itself, and waiting for a sibling thread that may
    /// itself be closing would deadlock. The threads end by themselves; a
    /// later `close()` from another thread, or dropping the last handle
    /// there, joins them.
    pub fn join_threads(&self) {
        if OWNER.with(|o| o.get()) == self.id {
            return;
        }
        let handles: Vec<_> = {
            let mut t = self.threads.lock();
            if t.joined {
                return;
            }
            t.joining += 1;
            [t.conn.take(), t.sender.take()]
                .into_iter()
                .flatten()
                .collect()
        };
        for h in handles {
            let _ = h.join();
        }
        self.dispatcher.join();
        let mut t = self.threads.lock();
        t.joining -= 1;
        self.joined.notify_all();
        while t.joining > 0 {
            self.joined.wait(&mut t);
        }
        t.joined = true;
    }
}
