//! The connection's state: its phase, the requests waiting to be written and
//! the requests on the wire, all behind one lock (see `Shared::conn`).
//!
//! Every method here changes the state and does no I/O, so the rules that
//! keep replies with their callers are unit-tested in microseconds, apart
//! from sockets and threads. The caller of a method holds the lock; the I/O
//! a transition calls for (writing a batch, shutting a socket down, waking
//! a caller) is done by the caller after it releases the lock.
//!
//! Correlation never guesses. Replies carry no request id: only the command
//! code (and, for some codes, an echo of `int32Data0` that the protocol does
//! not guarantee). So a *gate* per reply key admits at most
//! `max_in_flight` requests to the wire (one by default, which makes every
//! match exact); further requests of that key wait in the queue. A request
//! whose caller gave up stays on its gate as *abandoned* until its late
//! reply arrives (then discarded) or the link is reset: the key is never
//! assumed free while an answer may still come.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadline::Deadline;
use super::slot;
use super::Reply;
use crate::codec::MESSAGE_LEN;
use crate::{DisconnectReason, Error, Result, TimeoutPhase};

/// What a waiting caller receives.
pub(crate) enum Delivered {
    /// The reply to a request.
    Reply(Reply),
    /// A message sent without a reply was written in full.
    Written,
}

pub(crate) type Outcome = Result<Delivered>;
pub(crate) type Waiter = slot::Sender<Outcome>;

/// What a reply is matched on: the command code and, only when requests of
/// one code may be pipelined by int32Data0 (an opt-in), that value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub code: u32,
    pub sub: Option<i32>,
}

/// Where the connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not opened yet, or the first connection attempt failed.
    Idle,
    /// A connection attempt is under way (attempt 0 is `open()`).
    Connecting { attempt: u32 },
    /// Link `link` is up. `writable` turns false when a write failed or the
    /// link is being reset; the reader then reports the loss.
    Up { link: u64, writable: bool },
    /// The link is down; attempt `attempt` is due at `retry_at`.
    Down { attempt: u32, retry_at: Instant },
    /// Closed for good.
    Closed {
        reason: DisconnectReason,
        detail: String,
    },
}

/// A request on the wire (or being written).
struct Flight {
    id: u64,
    /// `int32Data0` of the request, checked against an echo when the reply carries one.
    int0: i32,
    check_echo: bool,
    /// The write finished.
    sent: bool,
    /// `None` once the caller gave up: the reply is then discarded.
    waiter: Option<Waiter>,
    abandoned_at: Option<Instant>,
    /// Its caller blocks on the reply and, once woken, writes what the
    /// reply let go (see `Shared::hand_off`).
    direct: bool,
}

/// A request or message waiting to be written.
pub(crate) struct Queued {
    pub id: u64,
    pub key: Key,
    pub bytes: [u8; MESSAGE_LEN],
    /// Additional data, shared so that a large payload is written without
    /// being copied under the lock.
    pub data: Option<Arc<[u8]>>,
    /// True for a request (a reply will come); false for a plain send.
    pub expects_reply: bool,
    pub int0: i32,
    pub check_echo: bool,
    pub deadline: Deadline,
    pub timeout: Duration,
    pub what: crate::codec::CommandCode,
    pub waiter: Option<Waiter>,
    /// A write of this entry was tried and put nothing on the wire.
    pub write_attempted: bool,
    /// Its caller blocks on the outcome (a blocking request).
    pub direct: bool,
}

/// An entry being written.
struct Writing {
    entry: Queued,
}

/// Additional data up to this size is copied into the batch buffer; a
/// larger payload ends the batch and is written from its own buffer, so
/// the lock is never held while megabytes are copied.
const INLINE_DATA: usize = 16 * 1024;

/// Where a reply goes.
pub(crate) enum Route {
    /// To this waiter; `true` if its caller blocks on it (and will write
    /// what the reply let go once woken).
    Deliver(Waiter, bool),
    /// Its caller gave up: discard it.
    Late,
    /// No request of this key is on the wire: an event.
    Event,
    /// A request of this key is on the wire, but the reply echoes a
    /// different `int32Data0`: not its reply (an event).
    EchoMismatch,
}

/// What a caller who gave up at its deadline learns.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// It timed out in this phase; nothing will be delivered.
    TimedOut(TimeoutPhase),
    /// The outcome was already handed over: take it from the slot.
    AlreadyDelivered,
}

/// The writer role: one thread at a time writes to a link, the others queue.
pub(crate) struct WriterRole {
    pub link: u64,
    pub stream: Arc<TcpStream>,
}

pub(crate) struct Conn {
    pub phase: Phase,
    /// Id of the newest link (0: none yet).
    pub link: u64,
    /// The current link's socket, while it may be written to.
    pub stream: Option<Arc<TcpStream>>,
    /// The current link's socket, for shutting it down.
    pub shutdown: Option<Arc<TcpStream>>,
    /// The peer address of the current or last link.
    pub peer: Option<SocketAddr>,
    pub writer_busy: bool,
    /// A reset was asked for because replies could no longer be matched.
    pub resync_requested: bool,
    pub last_error: Option<String>,
    /// Why the current link is being ended, when the client itself ended
    /// it (a failed write, a reset to resynchronise).
    pub link_end: Option<(DisconnectReason, String)>,
    /// The send timeout in force on the current link's socket.
    pub write_timeout: Option<Option<Duration>>,
    /// The writers' reusable batch buffer (taken by the writer role).
    pub batch_buf: Vec<u8>,
    queue: VecDeque<Queued>,
    writing: Vec<Writing>,
    gates: HashMap<Key, VecDeque<Flight>>,
    next_id: u64,
    max_in_flight: usize,
    /// Requests whose caller gave up while they were on the wire.
    abandoned: usize,
}

/// Entries failed by a transition, to be told outside the lock.
pub(crate) type Failed = Vec<(Waiter, Error)>;

impl Conn {
    pub fn new(max_in_flight: usize) -> Conn {
        Conn {
            phase: Phase::Idle,
            link: 0,
            stream: None,
            shutdown: None,
            peer: None,
            writer_busy: false,
            resync_requested: false,
            last_error: None,
            link_end: None,
            write_timeout: None,
            batch_buf: Vec::new(),
            queue: VecDeque::new(),
            writing: Vec::new(),
            gates: HashMap::new(),
            next_id: 1,
            max_in_flight: max_in_flight.max(1),
            abandoned: 0,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. })
    }

    /// The error a request gets when the connection cannot carry it, if so.
    pub fn down_error(&self) -> Option<Error> {
        match &self.phase {
            Phase::Closed { reason, detail } => Some(Error::disconnected(*reason, detail.clone())),
            Phase::Idle => Some(Error::disconnected(
                DisconnectReason::NotConnected,
                self.last_error.as_ref().map_or_else(
                    || "the client is not connected (call open())".to_string(),
                    |e| format!("the client is not connected (the last attempt failed: {e})"),
                ),
            )),
            _ => None,
        }
    }

    /// True while a write may start on the current link.
    pub fn writable(&self) -> bool {
        matches!(self.phase, Phase::Up { writable: true, .. }) && self.stream.is_some()
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Requests on the wire whose callers still wait.
    pub fn waiting(&self) -> usize {
        self.gates
            .values()
            .flatten()
            .filter(|f| f.waiter.is_some())
            .count()
            + self.queue.len()
    }

    /// Requests on the wire whose callers gave up (their replies will be discarded).
    pub fn abandoned(&self) -> usize {
        self.abandoned
    }

    /// Adds an entry at the back of the write queue.
    pub fn enqueue(&mut self, q: Queued) {
        self.queue.push_back(q);
    }

    fn gate_has_room(&self, key: &Key) -> bool {
        self.gates
            .get(key)
            .is_none_or(|g| g.len() < self.max_in_flight)
    }

    /// True if some queued entry could be written now.
    pub fn has_eligible(&self) -> bool {
        self.queue
            .iter()
            .any(|q| !q.expects_reply || self.gate_has_room(&q.key))
    }

    /// Claims the writer role if a write can start and nobody holds it.
    pub fn claim_writer(&mut self) -> Option<WriterRole> {
        if self.writer_busy || !self.writable() {
            return None;
        }
        let Phase::Up { link, .. } = self.phase else {
            return None;
        };
        let stream = self.stream.clone()?;
        self.writer_busy = true;
        Some(WriterRole { link, stream })
    }

    /// The phase a queued entry that times out is in.
    fn queued_phase(&self, q: &Queued) -> TimeoutPhase {
        if q.write_attempted {
            TimeoutPhase::Write
        } else if !matches!(self.phase, Phase::Up { .. }) {
            TimeoutPhase::LinkWait
        } else if q.expects_reply && !self.gate_has_room(&q.key) {
            TimeoutPhase::KeyBusy
        } else {
            TimeoutPhase::SendLock
        }
    }

    /// Takes every entry that may be written now, in queue order, into
    /// `buf` (about `max_bytes` at most, but at least one entry), and
    /// registers each request on its gate before its bytes leave, so the
    /// order of a gate's flights is the order on the wire. A large payload
    /// is not copied: it ends the batch and is returned as the tail to
    /// write after `buf`. Entries whose deadline has passed are failed
    /// instead of written. Returns the latest deadline in the batch (the
    /// write's deadline), the tail, and the expired entries to tell.
    pub fn take_batch(
        &mut self,
        buf: &mut Vec<u8>,
        max_bytes: usize,
    ) -> (Deadline, Option<Arc<[u8]>>, Failed) {
        buf.clear();
        self.writing.clear();
        let mut failed = Vec::new();
        let mut latest: Option<Deadline> = None;
        let mut tail = None;
        let mut i = 0;
        while i < self.queue.len() {
            let q = &self.queue[i];
            if q.deadline.expired() {
                let phase = self.queued_phase(q);
                if let Some(mut q) = self.queue.remove(i) {
                    if let Some(w) = q.waiter.take() {
                        failed.push((w, timeout_error(phase, &q)));
                    }
                }
                continue;
            }
            if q.expects_reply && !self.gate_has_room(&q.key) {
                i += 1;
                continue;
            }
            let data_len = q.data.as_ref().map_or(0, |d| d.len());
            let inline = data_len <= INLINE_DATA;
            let size = MESSAGE_LEN + if inline { data_len } else { 0 };
            if !buf.is_empty() && buf.len() + size > max_bytes {
                break;
            }
            let Some(mut q) = self.queue.remove(i) else {
                break;
            };
            buf.extend_from_slice(&q.bytes);
            match &q.data {
                Some(d) if inline => buf.extend_from_slice(d),
                Some(d) => tail = Some(d.clone()),
                None => {}
            }
            latest = Some(latest.map_or(q.deadline, |d| d.max(q.deadline)));
            if q.expects_reply {
                self.gates.entry(q.key).or_default().push_back(Flight {
                    id: q.id,
                    int0: q.int0,
                    check_echo: q.check_echo,
                    sent: false,
                    waiter: q.waiter.take(),
                    abandoned_at: None,
                    direct: q.direct,
                });
            }
            self.writing.push(Writing { entry: q });
            if tail.is_some() {
                break;
            }
        }
        (latest.unwrap_or(Deadline::NEVER), tail, failed)
    }

    /// Number of entries in the batch being written.
    pub fn batch_len(&self) -> usize {
        self.writing.len()
    }

    /// The batch was written in full on `link`: its requests are on the
    /// wire, its plain sends are done (their waiters are returned).
    pub fn batch_written(&mut self, link: u64) -> Vec<Waiter> {
        let mut done = Vec::new();
        let same_link = self.link == link;
        for w in self.writing.drain(..) {
            let mut e = w.entry;
            if e.expects_reply {
                if same_link {
                    if let Some(f) = self
                        .gates
                        .get_mut(&e.key)
                        .and_then(|g| g.iter_mut().find(|f| f.id == e.id))
                    {
                        f.sent = true;
                    }
                }
            } else if let Some(waiter) = e.waiter.take() {
                done.push(waiter);
            }
        }
        done
    }

    /// The batch's write timed out before any byte left: nothing of it is
    /// on the wire, so its entries go back to the front of the queue, in
    /// order (those whose callers have given up are dropped).
    pub fn batch_unsent(&mut self) {
        let mut back = Vec::new();
        for w in self.writing.drain(..) {
            let mut e = w.entry;
            if e.expects_reply {
                let Some(g) = self.gates.get_mut(&e.key) else {
                    continue; // the link was reset: already failed
                };
                let Some(pos) = g.iter().position(|f| f.id == e.id) else {
                    continue;
                };
                let f = g.remove(pos).expect("position found");
                if g.is_empty() {
                    self.gates.remove(&e.key);
                }
                if f.waiter.is_none() {
                    self.abandoned -= 1;
                    continue;
                }
                e.waiter = f.waiter;
            } else if e.waiter.is_none() {
                continue;
            }
            e.write_attempted = true;
            back.push(e);
        }
        for e in back.into_iter().rev() {
            self.queue.push_front(e);
        }
    }

    /// The batch's write failed part-way (or with an error): the link can no
    /// longer be trusted and writes stop. The batch's own requests and
    /// sends fail here, with `err` (so their callers learn why at once);
    /// other requests on the link fail when the link's teardown runs.
    pub fn batch_broken(&mut self, err: &Error) -> Failed {
        let mut failed = Vec::new();
        for w in self.writing.drain(..) {
            let mut e = w.entry;
            if e.expects_reply {
                let Some(g) = self.gates.get_mut(&e.key) else {
                    continue;
                };
                let Some(pos) = g.iter().position(|f| f.id == e.id) else {
                    continue;
                };
                let f = g.remove(pos).expect("position found");
                if g.is_empty() {
                    self.gates.remove(&e.key);
                }
                match f.waiter {
                    Some(waiter) => failed.push((waiter, clone_error(err))),
                    None => self.abandoned -= 1,
                }
            } else if let Some(waiter) = e.waiter.take() {
                failed.push((waiter, clone_error(err)));
            }
        }
        self.stream = None;
        if let Phase::Up { writable, .. } = &mut self.phase {
            *writable = false;
        }
        failed
    }

    /// A caller gives up on request `id` at its deadline (or drops it).
    pub fn give_up(&mut self, id: u64, key: Key, now: Instant) -> GiveUp {
        if let Some(pos) = self.queue.iter().position(|q| q.id == id) {
            let phase = self.queued_phase(&self.queue[pos]);
            self.queue.remove(pos);
            return GiveUp::TimedOut(phase);
        }
        if let Some(w) = self.writing.iter_mut().find(|w| w.entry.id == id) {
            if w.entry.waiter.take().is_some() {
                return GiveUp::TimedOut(TimeoutPhase::Write);
            }
        }
        if let Some(f) = self
            .gates
            .get_mut(&key)
            .and_then(|g| g.iter_mut().find(|f| f.id == id))
        {
            if f.waiter.take().is_some() {
                f.abandoned_at = Some(now);
                self.abandoned += 1;
                return GiveUp::TimedOut(if f.sent {
                    TimeoutPhase::Reply
                } else {
                    TimeoutPhase::Write
                });
            }
        }
        GiveUp::AlreadyDelivered
    }

    /// Where a reply of `key` (echoing `int0`) goes.
    pub fn route(&mut self, key: Key, int0: i32) -> Route {
        let Some(g) = self.gates.get_mut(&key) else {
            return Route::Event;
        };
        let Some(front) = g.front() else {
            return Route::Event;
        };
        // An echo is "there" when the reply carries an index of the same
        // kind (1 to 4: the lasers); anything else in the field (0, a tag)
        // says nothing about whose reply it is.
        if front.check_echo && (1..=4).contains(&int0) && int0 != front.int0 {
            return Route::EchoMismatch;
        }
        let f = g.pop_front().expect("front exists");
        if g.is_empty() {
            self.gates.remove(&key);
        }
        match f.waiter {
            Some(w) => Route::Deliver(w, f.direct),
            None => {
                self.abandoned -= 1;
                Route::Late
            }
        }
    }

    /// When the link must be reset because a request has stayed
    /// unanswered after its caller gave up for longer than `window`, or
    /// more than `max_abandoned` such requests are outstanding. `None`: no
    /// reset is due (or one is already under way).
    pub fn resync_due(&self, window: Duration, max_abandoned: usize) -> Option<Instant> {
        if self.resync_requested || !matches!(self.phase, Phase::Up { .. }) {
            return None;
        }
        if self.abandoned > max_abandoned {
            return Some(Instant::now());
        }
        self.gates
            .values()
            .flatten()
            .filter_map(|f| f.abandoned_at.and_then(|t| t.checked_add(window)))
            .min()
    }

    /// Ends the current link: every request on it fails (the instrument
    /// will never answer on another link), and writes stop. Queued entries
    /// stay for the next link unless the connection is closing. Returns the
    /// waiters to fail and the socket to shut down.
    pub fn end_link(&mut self) -> (Vec<Waiter>, Option<Arc<TcpStream>>) {
        let mut out = Vec::new();
        for (_, g) in self.gates.drain() {
            out.extend(g.into_iter().filter_map(|f| f.waiter));
        }
        self.abandoned = 0;
        self.resync_requested = false;
        self.stream = None;
        (out, self.shutdown.take())
    }

    /// Closes for good: sets the phase and hands back everything that
    /// waits, plus the socket to shut down. `None` if it was closed already.
    pub fn close(
        &mut self,
        reason: DisconnectReason,
        detail: String,
    ) -> Option<(Vec<Waiter>, Option<Arc<TcpStream>>)> {
        if self.is_closed() {
            return None;
        }
        self.phase = Phase::Closed { reason, detail };
        let (mut waiters, sock) = self.end_link();
        waiters.extend(self.queue.drain(..).filter_map(|q| q.waiter));
        for w in &mut self.writing {
            waiters.extend(w.entry.waiter.take());
        }
        Some((waiters, sock))
    }
}

/// The timeout error of a queued entry.
pub(crate) fn timeout_error(phase: TimeoutPhase, q: &Queued) -> Error {
    let what = if q.expects_reply {
        format!("the reply to {}", q.what)
    } else {
        format!("sending {}", q.what)
    };
    Error::timeout(phase, what, q.timeout)
}

/// A copy of an error handed to several waiters.
pub(crate) fn clone_error(e: &Error) -> Error {
    e.duplicate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CommandCode;

    fn key(code: u32) -> Key {
        Key { code, sub: None }
    }

    fn up(c: &mut Conn) {
        c.link += 1;
        c.phase = Phase::Up {
            link: c.link,
            writable: true,
        };
    }

    fn req(c: &mut Conn, code: u32, int0: i32) -> (u64, slot::Receiver<Outcome>) {
        let (tx, rx) = slot::channel();
        let id = c.next_id();
        c.enqueue(Queued {
            id,
            key: key(code),
            bytes: [0; MESSAGE_LEN],
            data: None,
            expects_reply: true,
            int0,
            check_echo: true,
            deadline: Deadline::NEVER,
            timeout: Duration::from_secs(1),
            what: CommandCode(code),
            waiter: Some(tx),
            write_attempted: false,
            direct: false,
        });
        (id, rx)
    }

    fn deliver(r: Route, v: u32) -> bool {
        match r {
            Route::Deliver(w, _) => {
                w.send(Ok(Delivered::Reply(Reply {
                    message: crate::codec::Message::new(CommandCode(v)),
                    data: Vec::new(),
                    seq: 0,
                    received_at: Instant::now(),
                })));
                true
            }
            _ => false,
        }
    }

    #[test]
    fn one_request_per_key_on_the_wire() {
        let mut c = Conn::new(1);
        up(&mut c);
        let mut buf = Vec::new();
        let (_a, _ra) = req(&mut c, 7, 0);
        let (_b, _rb) = req(&mut c, 7, 0);
        let (_x, _rx) = req(&mut c, 8, 0);
        c.take_batch(&mut buf, 1 << 20);
        assert_eq!(c.batch_len(), 2, "the second request of key 7 waits");
        assert_eq!(buf.len(), 2 * MESSAGE_LEN);
        c.batch_written(c.link);
        assert!(!c.has_eligible());
        assert!(deliver(c.route(key(7), 0), 7));
        assert!(c.has_eligible());
    }

    #[test]
    fn abandoned_request_blocks_its_key_until_the_late_reply() {
        let mut c = Conn::new(1);
        up(&mut c);
        let mut buf = Vec::new();
        let (a, _ra) = req(&mut c, 7, 0);
        c.take_batch(&mut buf, 1 << 20);
        c.batch_written(c.link);
        assert_eq!(
            c.give_up(a, key(7), Instant::now()),
            GiveUp::TimedOut(TimeoutPhase::Reply)
        );
        let (b, _rb) = req(&mut c, 7, 0);
        c.take_batch(&mut buf, 1 << 20);
        assert_eq!(
            c.batch_len(),
            0,
            "key 7 is blocked by the unanswered request"
        );
        assert!(c.resync_due(Duration::from_secs(10), 64).is_some());
        assert!(matches!(c.route(key(7), 0), Route::Late));
        assert_eq!(c.abandoned(), 0);
        c.take_batch(&mut buf, 1 << 20);
        assert_eq!(c.batch_len(), 1);
        c.batch_written(c.link);
        assert_eq!(
            c.give_up(b, key(7), Instant::now()),
            GiveUp::TimedOut(TimeoutPhase::Reply)
        );
    }

    #[test]
    fn huge_window_never_overflows() {
        let mut c = Conn::new(1);
        up(&mut c);
        let mut buf = Vec::new();
        let (a, _ra) = req(&mut c, 7, 0);
        c.take_batch(&mut buf, 1 << 20);
        c.give_up(a, key(7), Instant::now());
        assert_eq!(c.resync_due(Duration::MAX, 64), None);
        assert!(c.resync_due(Duration::MAX, 0).is_some(), "over the cap");
    }

    #[test]
    fn echo_is_checked_when_present() {
        let mut c = Conn::new(1);
        up(&mut c);
        let mut buf = Vec::new();
        let (_a, ra) = req(&mut c, 0x6008, 2);
        c.take_batch(&mut buf, 1 << 20);
        assert!(matches!(c.route(key(0x6008), 3), Route::EchoMismatch));
        assert!(deliver(c.route(key(0x6008), 0), 1), "no echo: still ours");
        assert!(ra.try_recv().is_ok());
        let (_b, rb) = req(&mut c, 0x6008, 2);
        c.take_batch(&mut buf, 1 << 20);
        assert!(deliver(c.route(key(0x6008), 7777), 1), "a tag is no echo");
        assert!(rb.try_recv().is_ok());
    }

    #[test]
    fn unsent_batch_goes_back_in_order() {
        let mut c = Conn::new(1);
        up(&mut c);
        let mut buf = Vec::new();
        let (a, _ra) = req(&mut c, 1, 0);
        let (b, _rb) = req(&mut c, 2, 0);
        c.take_batch(&mut buf, 1 << 20);
        c.give_up(b, key(2), Instant::now());
        c.batch_unsent();
        assert_eq!(c.abandoned(), 0, "nothing was on the wire");
        c.take_batch(&mut buf, 1 << 20);
        assert_eq!(c.batch_len(), 1);
        assert_eq!(
            c.give_up(a, key(1), Instant::now()),
            GiveUp::TimedOut(TimeoutPhase::Write)
        );
    }

    #[test]
    fn queued_phases() {
        let mut c = Conn::new(1);
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
    fn close_hands_back_every_waiter_once() {
        let mut c = Conn::new(1);
        up(&mut c);
        let mut buf = Vec::new();
        let (_a, _ra) = req(&mut c, 1, 0);
        c.take_batch(&mut buf, 1 << 20);
        let (_b, _rb) = req(&mut c, 1, 0);
        let (w, _) = c
            .close(DisconnectReason::ClosedByUser, "bye".into())
            .unwrap();
        assert_eq!(w.len(), 2);
        assert!(c
            .close(DisconnectReason::ClosedByUser, "again".into())
            .is_none());
    }
}
