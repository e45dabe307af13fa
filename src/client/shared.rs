//! What the client's handles and threads share: the connection state under
//! its one lock and condition variable, the event fan-out, the counters.
//!
//! Every change of the connection's phase happens under `conn` and is
//! followed by `cv.notify_all()`; every wait on the phase is a predicate
//! loop over `conn`, so no wake-up is lost. Nothing here runs user code
//! while holding a lock: waiters are told, events published and the waker
//! called after the lock is released.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use super::conn::{Conn, Failed, Waiter};
use super::events::{Dispatcher, Event, EventKind, Hub};
use super::stats::{Counters, Latency};
use crate::codec::{MatchKey, Message};
use crate::live::LiveStream;
use crate::{ClientConfig, DisconnectReason, Error};

use super::conn::Key;

/// A function called when an operation completes or an event is queued.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The client's threads, joined by the teardown.
#[derive(Default)]
pub(crate) struct Threads {
    pub conn: Option<JoinHandle<()>>,
    pub sender: Option<JoinHandle<()>>,
}

pub(crate) struct Shared {
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
    waker: RwLock<Option<Waker>>,
    /// The live image stream, connected on demand.
    pub live: Mutex<Option<Arc<LiveStream>>>,
    /// Serialises live connects without holding `live` while connecting.
    pub live_connect: Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("addr", &self.addr).finish()
    }
}

impl Shared {
    pub fn new(addr: &str, config: ClientConfig) -> Shared {
        let in_flight = config.max_in_flight_per_key.max(1);
        Shared {
            addr: addr.to_string(),
            conn: Mutex::new(Conn::new(in_flight)),
            cv: Condvar::new(),
            hub: Hub::new(config.event_history, config.event_history_bytes),
            dispatcher: Dispatcher::new(),
            counters: Counters::default(),
            latency: Latency::new(),
            seq: AtomicU64::new(0),
            threads: Mutex::new(Threads::default()),
            waker: RwLock::new(None),
            live: Mutex::new(None),
            live_connect: Mutex::new(()),
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

    pub fn set_waker(&self, w: Option<Waker>) {
        *self.waker.write() = w;
    }

    /// Calls the waker, if any. Never under an internal lock.
    pub fn wake(&self) {
        let w = self.waker.read().clone();
        if let Some(w) = w {
            w();
        }
    }

    /// Tells waiters their outcome (outside the lock), then the waker.
    pub fn tell(&self, failed: Failed) {
        if failed.is_empty() {
            return;
        }
        for (w, e) in failed {
            w.send(Err(e));
        }
        self.wake();
    }

    fn fail_all(&self, waiters: Vec<Waiter>, reason: DisconnectReason, detail: &str) {
        if waiters.is_empty() {
            return;
        }
        for w in waiters {
            w.send(Err(Error::disconnected(reason, detail)));
        }
        self.wake();
    }

    /// Publishes an event and calls the waker.
    pub fn publish(&self, ev: Event) {
        self.hub.publish(ev);
        self.wake();
    }

    /// Terminal teardown, exactly once, from any thread. Subscribers get
    /// the final `Closed` event before any waiter learns of the closing.
    /// Returns false if the client was already closed.
    pub fn shut(&self, reason: DisconnectReason, detail: String) -> bool {
        let taken = {
            let mut c = self.conn.lock();
            let taken = c.close(reason, detail.clone());
            self.cv.notify_all();
            taken
        };
        let Some((waiters, sock)) = taken else {
            return false;
        };
        if let Some(s) = sock {
            shutdown(&s);
        }
        self.after_close(&detail);
        self.fail_all(waiters, reason, &detail);
        true
    }

    /// What follows the state's change to closed: the final event and the
    /// live stream. Callbacks still receive the events queued for them,
    /// `Closed` last; the dispatcher thread then drops them (outside every
    /// lock, with whatever they captured, perhaps a client handle).
    pub fn after_close(&self, detail: &str) {
        self.counters.teardowns.fetch_add(1, Relaxed);
        self.close_live();
        self.hub.close(Event::connection(
            self.next_seq(),
            EventKind::Closed {
                reason: detail.to_string(),
            },
        ));
        self.wake();
    }

    /// Ends link `link` after its reader saw it fail. Fails the link's
    /// requests after publishing `Disconnected` (when `announce`).
    pub fn end_link(&self, waiters: Vec<Waiter>, reason: DisconnectReason, detail: &str) {
        self.counters.disconnects.fetch_add(1, Relaxed);
        self.close_live();
        self.fail_all(waiters, reason, detail);
    }

    pub fn close_live(&self) {
        let live = self.live.lock().take();
        if let Some(l) = live {
            l.close();
        }
    }

    /// Joins every thread this client started, except the calling one.
    pub fn join_threads(&self) {
        let me = std::thread::current().id();
        let (conn, sender) = {
            let mut t = self.threads.lock();
            (t.conn.take(), t.sender.take())
        };
        for h in [conn, sender].into_iter().flatten() {
            if h.thread().id() == me {
                continue; // this thread is finishing the teardown itself
            }
            let _ = h.join();
        }
        self.dispatcher.join();
    }
}

/// Shuts a socket down both ways: wakes its reader and any blocked writer.
pub(crate) fn shutdown(s: &TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Both);
}
