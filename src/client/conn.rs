//! The connection's state: its phase, the messages waiting to be written,
//! the batches being written and the requests on the wire, all behind one
//! lock (see `Shared::conn`).
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
//!
//! Delivery is one step: an outcome is put in its caller's slot in the same
//! critical section that removes the request from the state, so a caller
//! giving up at its deadline finds either its request still here (it times
//! out) or its outcome in the slot, never neither.
//!
//! Codes the instrument also broadcasts (`Unsolicited::Sometimes`) cannot
//! be told from their replies. Their requests are bracketed by *fences*: a
//! query whose code is never broadcast (SYSTEM_STATE_GET), written before
//! the request and answered before the request is written, and another
//! written after it. A broadcast sent before the first fence was answered
//! arrives before that answer and is an event; the key stays closed after
//! the reply until the second fence is answered, so a reply that a
//! broadcast overtook can only become an event, never another request's
//! reply. This relies on the instrument answering one connection's commands
//! in the order it receives them, as the read-back after a set already does.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadline::Deadline;
use super::slot;
use super::sync::now;
use super::wire::Wire;
use super::Reply;
use crate::codec::{CommandCode, Flags, Message, MESSAGE_LEN};
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
/// A caller to wake after the lock is released (its outcome is in its slot).
pub(crate) type Wake = slot::Wake<Outcome>;

/// What a reply is matched on: the command code and, only when requests of
/// one code may be pipelined by int32Data0 (an opt-in), that value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub code: u32,
    pub sub: Option<i32>,
}

/// Hashes reply keys: a multiply-rotate over the key's two words. The map
/// holds only keys of requests this client wrote (a peer's messages look
/// keys up, never add them), so a keyed hash against flooding buys nothing
/// and costs a little on every reply.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_i32(&mut self, i: i32) {
        self.write_u64(u64::from(i as u32));
    }

    // `Option`'s derived hash writes its discriminant as an `isize`: one
    // step, not eight bytes one at a time.
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Gates = HashMap<Key, Gate, std::hash::BuildHasherDefault<KeyHasher>>;

/// The code of the fence query: always answered, never broadcast.
pub(crate) const FENCE: CommandCode = CommandCode::SYSTEM_STATE_GET;

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

/// What kind of message an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request: its caller waits for the reply.
    Request,
    /// A message without a waiter for a reply. `flagged`: it carries
    /// TRIGGER_CALL_BACK, so the instrument may answer it; the answer is an
    /// event, and the key stays closed to requests until it came.
    Send { flagged: bool },
    /// The client's own fence query (see the module's notes).
    Fence,
}

/// A request on the wire (or being written).
struct Flight {
    id: u64,
    /// The order in which messages were handed to the wire.
    wseq: u64,
    /// `int32Data0` of the request, checked against an echo when the reply carries one.
    int0: i32,
    check_echo: bool,
    /// The write finished.
    sent: bool,
    /// `None` once the caller gave up (or for a fence): the reply is then
    /// discarded.
    waiter: Option<Waiter>,
    /// When its caller gave up (for a fence: when it was written), which
    /// starts the late-reply window.
    abandoned_at: Option<Instant>,
    fence: bool,
    /// A request of a code the instrument also broadcasts: the message of
    /// its key that came last before the fence after it was answered is its
    /// reply (an earlier one was a broadcast the reply superseded).
    broadcast: bool,
    /// The latest such message so far.
    candidate: Option<Outcome>,
}

/// A reply key's state on the current link.
#[derive(Default)]
struct Gate {
    flights: VecDeque<Flight>,
    /// Flagged sends written and not answered yet.
    raw: u32,
    /// The wire order of the oldest of them (up to `RAW_TRACKED`): an
    /// answer must have been read after its send was written.
    raw_seqs: VecDeque<u64>,
    /// When the newest of them was written, and its wire order.
    raw_at: Option<(Instant, u64)>,
    /// For a broadcast code: the wire order of its last request. The key
    /// stays closed until a fence written after it is answered.
    settle: Option<u64>,
}

impl Gate {
    fn is_empty(&self) -> bool {
        self.flights.is_empty() && self.raw == 0 && self.settle.is_none()
    }
}

/// A message waiting to be written.
pub(crate) struct Queued {
    pub id: u64,
    pub key: Key,
    pub bytes: [u8; MESSAGE_LEN],
    /// Additional data, shared so that a large payload is written without
    /// being copied under the lock.
    pub data: Option<Arc<[u8]>>,
    pub kind: Kind,
    pub int0: i32,
    pub check_echo: bool,
    /// A request of a code the instrument also broadcasts.
    pub broadcast: bool,
    pub deadline: Deadline,
    pub timeout: Duration,
    pub what: CommandCode,
    pub waiter: Option<Waiter>,
    /// A write of this entry was tried and put nothing on the wire.
    pub write_attempted: bool,
    /// The wire order when it was queued: a fence must have been written
    /// after this, and answered, before a broadcast code's request goes.
    mark: u64,
}

impl Queued {
    /// A new entry; `mark` is set when it is queued.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        key: Key,
        msg: &Message,
        data: Option<Arc<[u8]>>,
        kind: Kind,
        check_echo: bool,
        deadline: Deadline,
        timeout: Duration,
        waiter: Option<Waiter>,
    ) -> Queued {
        let mut bytes = [0u8; MESSAGE_LEN];
        msg.encode(&mut bytes);
        let broadcast = kind == Kind::Request
            && msg
                .code
                .info()
                .is_some_and(|i| i.unsolicited.possible() && !i.unsolicited.always());
        Queued {
            id,
            key,
            bytes,
            data,
            kind,
            int0: msg.int32_data0,
            check_echo,
            broadcast,
            deadline,
            timeout,
            what: msg.code,
            waiter,
            write_attempted: false,
            mark: 0,
        }
    }

    fn size(&self) -> usize {
        MESSAGE_LEN + self.data.as_ref().map_or(0, |d| d.len())
    }

    fn expects_reply(&self) -> bool {
        matches!(self.kind, Kind::Request | Kind::Fence)
    }
}

/// An entry being written on `link`.
struct Writing {
    link: u64,
    entry: Queued,
}

/// The rest of a write a caller began without waiting and could not finish:
/// the sender thread writes it before anything else on that link.
pub(crate) struct Handover {
    pub link: u64,
    /// What is left of the batch buffer.
    pub head: Vec<u8>,
    /// A large payload after it, and how much of it was already written.
    pub tail: Option<(Arc<[u8]>, usize)>,
    pub deadline: Deadline,
}

/// Unanswered flagged sends whose wire order a key remembers; beyond it
/// (a code the instrument never answers, sent again and again) only the
/// newest one's is known, which is the more cautious bound.
const RAW_TRACKED: usize = 256;

/// Additional data up to this size is copied into the batch buffer; a
/// larger payload ends the batch and is written from its own buffer, so
/// the lock is never held while megabytes are copied.
const INLINE_DATA: usize = 16 * 1024;

/// Where a reply goes.
pub(crate) enum Route {
    /// Its outcome was put in its caller's slot: wake it.
    Delivered(Wake),
    /// Kept as the reply of a broadcast code's request until the fence
    /// after it is answered; the message it replaces (a broadcast) is
    /// handed back, to be published as an event.
    Held(Option<Outcome>),
    /// Its caller gave up: discard it.
    Late,
    /// No request of this key is on the wire: an event. `answered`: the
    /// answer to a flagged send.
    Event { answered: bool },
    /// A request of this key is on the wire, but the reply echoes a
    /// different `int32Data0`: not its reply (an event).
    EchoMismatch,
    /// The answer to one of the client's fences: the requests it settled
    /// have their replies in their slots now; the second value counts the
    /// replies of requests whose callers gave up (discarded).
    Fence(Vec<Wake>, usize),
}

/// What a caller who gave up at its deadline learns.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// It timed out in this phase; nothing will be delivered.
    TimedOut(TimeoutPhase),
    /// The outcome is already in its slot.
    AlreadyDelivered,
}

/// The writer role on one link: one thread at a time writes to a link.
pub(crate) struct WriterRole {
    pub link: u64,
    pub wire: Arc<dyn Wire>,
}

/// How much may wait to be written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    pub messages: usize,
    pub bytes: usize,
}

pub(crate) struct Conn {
    pub phase: Phase,
    /// Id of the newest link (0: none yet).
    pub link: u64,
    /// The current link's write side, while it may be written to.
    wire: Option<Arc<dyn Wire>>,
    /// The current link's write side, for shutting it down.
    shutdown: Option<Arc<dyn Wire>>,
    /// The peer address of the current or last link.
    pub peer: Option<SocketAddr>,
    /// The link whose writer role is held, if any.
    writer: Option<u64>,
    handover: Option<Handover>,
    /// A reset was asked for because replies could no longer be matched.
    pub resync_requested: bool,
    pub last_error: Option<String>,
    /// Why the current link is being ended, when the client itself ended
    /// it (a failed write, a reset to resynchronise).
    pub link_end: Option<(DisconnectReason, String)>,
    /// The writers' reusable batch buffer (taken by the writer role).
    pub batch_buf: Vec<u8>,
    /// Entries expired in `take_batch`, and requests among them, not yet
    /// counted in the statistics (taken by `take_expired`).
    expired: (usize, usize),
    /// When the sender thread looks at the queue again by itself: an entry
    /// that expires sooner wakes it.
    pub sender_until: Deadline,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    writing: Vec<Writing>,
    gates: Gates,
    next_id: u64,
    /// Messages handed to the wire so far (their order).
    wseq: u64,
    /// Every message handed to the wire before this order has been answered
    /// (if it ever will be): the newest fence answered.
    fenced: u64,
    /// A fence is queued or on the wire.
    fence_out: bool,
    max_in_flight: usize,
    limits: QueueLimits,
    /// Requests whose caller gave up while they were on the wire.
    abandoned: usize,
    /// The reader is routing the messages of its last read and writes what
    /// is queued before its next read (`Shared::end_reader_batch`): a caller
    /// then queues its message instead of writing it alone, so the
    /// requests of the callers that read woke leave in one write.
    reader_busy: bool,
}

impl Conn {
    pub fn new(max_in_flight: usize, limits: QueueLimits) -> Conn {
        Conn {
            phase: Phase::Idle,
            link: 0,
            wire: None,
            shutdown: None,
            peer: None,
            writer: None,
            handover: None,
            resync_requested: false,
            last_error: None,
            link_end: None,
            batch_buf: Vec::new(),
            sender_until: Deadline::NEVER,
            expired: (0, 0),
            queue: VecDeque::new(),
            queued_bytes: 0,
            writing: Vec::new(),
            gates: Gates::default(),
            next_id: 1,
            wseq: 0,
            fenced: 0,
            fence_out: false,
            max_in_flight: max_in_flight.max(1),
            limits,
            abandoned: 0,
            reader_busy: false,
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

    /// Makes `wire` the current link (a new link id) and the phase `Up`.
    pub fn install(&mut self, wire: Arc<dyn Wire>, peer: Option<SocketAddr>) -> u64 {
        self.link += 1;
        self.phase = Phase::Up {
            link: self.link,
            writable: true,
        };
        self.peer = peer;
        self.wire = Some(wire.clone());
        self.shutdown = Some(wire);
        self.writer = None;
        self.handover = None;
        self.reader_busy = false;
        self.link_end = None;
        self.resync_requested = false;
        self.link
    }

    /// True while a write may start on the current link.
    pub fn writable(&self) -> bool {
        matches!(self.phase, Phase::Up { writable: true, .. }) && self.wire.is_some()
    }

    /// Stops writes on the current link (it is being ended).
    fn stop_writes(&mut self) {
        self.wire = None;
        self.reader_busy = false;
        if let Phase::Up { writable, .. } = &mut self.phase {
            *writable = false;
        }
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Requests and messages whose callers still wait.
    pub fn waiting(&self) -> usize {
        self.gates
            .values()
            .flat_map(|g| &g.flights)
            .filter(|f| f.waiter.is_some())
            .count()
            + self.queue.iter().filter(|q| q.kind != Kind::Fence).count()
    }

    /// Requests on the wire whose callers gave up (their replies will be discarded).
    pub fn abandoned(&self) -> usize {
        self.abandoned
    }

    /// Messages waiting to be written, and their bytes.
    pub fn queued(&self) -> (usize, usize) {
        (self.queue.len(), self.queued_bytes)
    }

    /// Checks that `size` more bytes fit in the queue (and a fence before
    /// the entry, for a request of a broadcast code).
    pub fn check_room(&self, size: usize, broadcast: bool) -> Result<()> {
        let fence = broadcast && !self.queue.iter().any(|e| e.kind == Kind::Fence);
        let size = size + if fence { MESSAGE_LEN } else { 0 };
        if self.queue.len() + usize::from(fence) >= self.limits.messages {
            return Err(Error::TooLarge {
                what: "the write queue (messages waiting to be written; the instrument is not reading or the link is down)",
                size: self.queue.len() as u64 + 1,
                limit: self.limits.messages as u64,
            });
        }
        if self.queued_bytes.saturating_add(size) > self.limits.bytes {
            return Err(Error::TooLarge {
                what: "the write queue (bytes waiting to be written; the instrument is not reading or the link is down)",
                size: self.queued_bytes.saturating_add(size) as u64,
                limit: self.limits.bytes as u64,
            });
        }
        Ok(())
    }

    /// Adds an entry at the back of the write queue. A request of a
    /// broadcast code gets a fence queued before it.
    pub fn enqueue(&mut self, mut q: Queued) {
        q.mark = self.wseq;
        if q.broadcast && !self.queue.iter().any(|e| e.kind == Kind::Fence) {
            let f = self.fence_entry();
            self.queued_bytes += f.size();
            self.queue.push_back(f);
        }
        self.queued_bytes += q.size();
        self.queue.push_back(q);
    }

    fn fence_entry(&mut self) -> Queued {
        self.fence_out = true;
        let id = self.next_id();
        let msg = Message::new(FENCE).with_flags(Flags::TRIGGER_CALL_BACK);
        let mut q = Queued::new(
            id,
            Key {
                code: FENCE.0,
                sub: None,
            },
            &msg,
            None,
            Kind::Fence,
            false,
            Deadline::NEVER,
            Duration::MAX,
            None,
        );
        q.mark = self.wseq;
        q
    }

    fn is_broadcast_key(key: &Key) -> bool {
        CommandCode(key.code)
            .info()
            .is_some_and(|i| i.unsolicited.possible() && !i.unsolicited.always())
    }

    /// Whether `q` may be written now, as far as correlation goes.
    fn eligible(&self, q: &Queued) -> bool {
        let g = self.gates.get(&q.key);
        match q.kind {
            Kind::Send { flagged: false } => true,
            // Flagged sends stack, but never go out while a request of
            // their key waits for its reply: the answer could not be told apart.
            Kind::Send { flagged: true } => g.is_none_or(|g| g.flights.is_empty()),
            Kind::Fence => g.is_none_or(Gate::is_empty),
            Kind::Request => {
                let room = if q.broadcast { 1 } else { self.max_in_flight };
                g.is_none_or(|g| {
                    g.flights.len() < room && g.raw == 0 && g.settle.is_none_or(|s| self.fenced > s)
                }) && (!q.broadcast || self.fenced > q.mark)
            }
        }
    }

    /// True if some queued entry could be written now.
    pub fn has_eligible(&self) -> bool {
        self.queue.iter().any(|q| self.eligible(q))
    }

    /// True when the sender thread has something to do now: a handed-over
    /// write, or a writable entry and a free writer role.
    pub fn needs_sender(&self) -> bool {
        if !self.writable() {
            return false;
        }
        match self.writer {
            Some(l) => self.handover.as_ref().is_some_and(|h| h.link == l),
            None => !self.reader_busy && self.has_eligible(),
        }
    }

    /// A read brought bytes: the reader routes them, then writes what
    /// callers queued meanwhile (if it can write without waiting). Returns
    /// the wire order now.
    pub fn read_returned(&mut self) -> u64 {
        self.reader_busy = self.can_try_write();
        self.wseq
    }

    /// The reader is about to read again: what is queued from now on is
    /// written by its own caller or the sender thread.
    pub fn reader_done(&mut self) {
        self.reader_busy = false;
    }

    /// True while the reader routes a read and will write the queue
    /// before its next read.
    pub fn reader_busy(&self) -> bool {
        self.reader_busy
    }

    /// True if something waits in the queue.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// True when queued entries may expire before anyone looks at the
    /// queue again: no writer will (nobody holds the role, and the reader
    /// is not about to write), and the sender thread's timer is later than
    /// the earliest deadline. The sender thread must then be woken to
    /// re-arm it.
    pub fn queue_unwatched(&self) -> bool {
        !self.queue.is_empty()
            && self.writer.is_none()
            && !self.reader_busy
            && self.expires_unseen(self.next_expiry())
    }

    /// Claims the writer role if a write can start and nobody holds it.
    pub fn claim_writer(&mut self) -> Option<WriterRole> {
        if self.writer.is_some() || !self.writable() {
            return None;
        }
        let Phase::Up { link, .. } = self.phase else {
            return None;
        };
        let wire = self.wire.clone()?;
        self.writer = Some(link);
        Some(WriterRole { link, wire })
    }

    /// Gives the writer role of `link` up (if it is still held for it).
    pub fn release(&mut self, link: u64) {
        if self.writer == Some(link) {
            self.writer = None;
        }
    }

    /// The fast path: `q` may be written by its own caller at once, without
    /// waiting, when nothing is queued before it, nobody is writing, the
    /// reader is not about to write the queue, and its key lets it go. Takes the role, registers the entry and returns
    /// its bytes; otherwise gives the entry back.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    pub fn begin_direct(
        &mut self,
        q: Queued,
    ) -> std::result::Result<(WriterRole, [u8; MESSAGE_LEN], Option<Arc<[u8]>>), Queued> {
        let fast = self.queue.is_empty()
            && !self.reader_busy
            && self.wire.as_ref().is_some_and(|w| w.can_try_write())
            && !q.broadcast
            && self.eligible(&q);
        if !fast {
            return Err(q);
        }
        let Some(role) = self.claim_writer() else {
            return Err(q);
        };
        let (bytes, data) = (q.bytes, q.data.clone());
        self.register(role.link, q);
        Ok((role, bytes, data))
    }

    /// Puts an entry on its way to the wire of `link`: a request on its
    /// gate, before its bytes leave, so a gate's flights are in wire order.
    fn register(&mut self, link: u64, mut q: Queued) {
        self.wseq += 1;
        let wseq = self.wseq;
        match q.kind {
            Kind::Request | Kind::Fence => {
                let fence = q.kind == Kind::Fence;
                let g = self.gates.entry(q.key).or_default();
                if q.broadcast {
                    g.settle = Some(wseq);
                }
                g.flights.push_back(Flight {
                    id: q.id,
                    wseq,
                    int0: q.int0,
                    check_echo: q.check_echo,
                    sent: false,
                    waiter: q.waiter.take(),
                    abandoned_at: fence.then(now),
                    fence,
                    broadcast: q.broadcast,
                    candidate: None,
                });
            }
            Kind::Send { flagged: true } => {
                let g = self.gates.entry(q.key).or_default();
                g.raw += 1;
                g.raw_at = Some((now(), wseq));
                if g.raw_seqs.len() < RAW_TRACKED {
                    g.raw_seqs.push_back(wseq);
                }
            }
            Kind::Send { flagged: false } => {}
        }
        self.writing.push(Writing { link, entry: q });
    }

    /// The fast path could not finish without waiting: the rest goes to
    /// the sender thread, which holds the role from now on.
    pub fn hand_over(&mut self, h: Handover) {
        if self.writer == Some(h.link) && self.link == h.link {
            self.handover = Some(h);
        }
    }

    /// The current link's wire, if a write that never waits is possible on it.
    pub fn can_try_write(&self) -> bool {
        self.wire.as_ref().is_some_and(|w| w.can_try_write())
    }

    /// A handed-over write for the current link, if any.
    pub fn take_handover(&mut self) -> Option<(WriterRole, Handover)> {
        let h = self.handover.take()?;
        if self.writer != Some(h.link) || self.link != h.link || !self.writable() {
            return None;
        }
        let wire = self.wire.clone()?;
        Some((WriterRole { link: h.link, wire }, h))
    }

    /// The phase a queued entry that times out is in.
    fn queued_phase(&self, q: &Queued) -> TimeoutPhase {
        if q.write_attempted {
            TimeoutPhase::Write
        } else if !matches!(self.phase, Phase::Up { .. }) {
            TimeoutPhase::LinkWait
        } else if q.expects_reply() && !self.eligible(q) {
            TimeoutPhase::KeyBusy
        } else {
            TimeoutPhase::SendLock
        }
    }

    fn remove_queued(&mut self, i: usize) -> Option<Queued> {
        let q = self.queue.remove(i)?;
        self.queued_bytes -= q.size();
        Some(q)
    }

    /// Fails the queued entries whose deadline has passed (their callers
    /// may not be polling: a detached send must not wait forever). Returns
    /// how many were dropped, and how many of them were requests.
    pub fn expire_queued(&mut self, wakes: &mut Vec<Wake>) -> (usize, usize) {
        let (mut dropped, mut requests) = (0, 0);
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].kind != Kind::Fence && self.queue[i].deadline.expired() {
                let phase = self.queued_phase(&self.queue[i]);
                if let Some(mut q) = self.remove_queued(i) {
                    dropped += 1;
                    if q.kind == Kind::Request {
                        requests += 1;
                    }
                    if let Some(w) = q.waiter.take() {
                        wakes.push(w.fill(Err(timeout_error(phase, &q))));
                    }
                }
                continue;
            }
            i += 1;
        }
        (dropped, requests)
    }

    /// Entries expired by `take_batch` since the last call, and requests
    /// among them.
    pub fn take_expired(&mut self) -> (usize, usize) {
        std::mem::take(&mut self.expired)
    }

    /// True if an entry with `deadline` expires before the sender thread
    /// looks at the queue again by itself.
    pub fn expires_unseen(&self, deadline: Deadline) -> bool {
        match (deadline.instant(), self.sender_until.instant()) {
            (Some(d), Some(u)) => d < u,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The earliest deadline of a queued entry (when the sender thread
    /// must look again).
    pub fn next_expiry(&self) -> Deadline {
        self.queue
            .iter()
            .filter(|q| q.kind != Kind::Fence)
            .fold(Deadline::NEVER, |d, q| d.min(q.deadline))
    }

    /// Takes every entry that may be written now, in queue order, into
    /// `buf` (about `max_bytes` at most, but at least one entry) for the
    /// writer of `link`, registering each request on its gate before its
    /// bytes leave. A large payload is not copied: it ends the batch and is
    /// returned as the tail to write after `buf`. Entries whose deadline
    /// has passed are failed instead. Returns the latest deadline in the
    /// batch (the write's deadline) and the tail.
    pub fn take_batch(
        &mut self,
        link: u64,
        buf: &mut Vec<u8>,
        max_bytes: usize,
        wakes: &mut Vec<Wake>,
    ) -> (Deadline, Option<Arc<[u8]>>) {
        buf.clear();
        let expired = self.expire_queued(wakes);
        self.expired.0 += expired.0;
        self.expired.1 += expired.1;
        let mut latest: Option<Deadline> = None;
        let mut tail = None;
        let mut i = 0;
        while i < self.queue.len() {
            let q = &self.queue[i];
            if !self.eligible(q) {
                if q.broadcast && !self.fence_out {
                    // Blocked until a fence is answered: send one now.
                    let f = self.fence_entry();
                    self.queued_bytes += f.size();
                    self.queue.insert(i, f);
                    continue;
                }
                i += 1;
                continue;
            }
            let data_len = q.data.as_ref().map_or(0, |d| d.len());
            let inline = data_len <= INLINE_DATA;
            let size = MESSAGE_LEN + if inline { data_len } else { 0 };
            if !buf.is_empty() && buf.len() + size > max_bytes {
                break;
            }
            let Some(q) = self.remove_queued(i) else {
                break;
            };
            buf.extend_from_slice(&q.bytes);
            match &q.data {
                Some(d) if inline => buf.extend_from_slice(d),
                Some(d) => tail = Some(d.clone()),
                None => {}
            }
            if q.kind != Kind::Fence {
                latest = Some(latest.map_or(q.deadline, |d| d.max(q.deadline)));
            }
            let broadcast = q.broadcast;
            self.register(link, q);
            if broadcast && !self.queue.iter().any(|e| e.kind == Kind::Fence) {
                // The fence after it, next in this batch.
                let f = self.fence_entry();
                self.queued_bytes += f.size();
                self.queue.insert(i, f);
            }
            if tail.is_some() {
                break;
            }
        }
        (latest.unwrap_or(Deadline::NEVER), tail)
    }

    /// Number of entries being written on `link`.
    pub fn batch_len(&self, link: u64) -> usize {
        self.writing.iter().filter(|w| w.link == link).count()
    }

    fn take_writing(&mut self, link: u64) -> Vec<Queued> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.writing.len() {
            if self.writing[i].link == link {
                out.push(self.writing.remove(i).entry);
            } else {
                i += 1;
            }
        }
        out
    }

    /// The batch of `link` was written in full: its requests are on the
    /// wire, its plain sends are done.
    pub fn batch_written(&mut self, link: u64, wakes: &mut Vec<Wake>) -> usize {
        let batch = self.take_writing(link);
        let n = batch.len();
        for mut e in batch {
            if e.expects_reply() {
                if let Some(f) = self
                    .gates
                    .get_mut(&e.key)
                    .and_then(|g| g.flights.iter_mut().find(|f| f.id == e.id))
                {
                    f.sent = true;
                }
            } else if let Some(w) = e.waiter.take() {
                wakes.push(w.fill(Ok(Delivered::Written)));
            }
        }
        n
    }

    /// Takes a flight back off its gate (its bytes never left).
    fn unregister(&mut self, e: &mut Queued) -> bool {
        match e.kind {
            Kind::Request | Kind::Fence => {
                let Some(g) = self.gates.get_mut(&e.key) else {
                    return false;
                };
                let Some(pos) = g.flights.iter().position(|f| f.id == e.id) else {
                    return false;
                };
                let f = g.flights.remove(pos).expect("position found");
                if e.broadcast && g.settle == Some(f.wseq) {
                    g.settle = None;
                }
                if g.is_empty() {
                    self.gates.remove(&e.key);
                }
                if e.kind == Kind::Fence {
                    return true;
                }
                match f.waiter {
                    Some(w) => {
                        e.waiter = Some(w);
                        true
                    }
                    None => {
                        self.abandoned -= 1;
                        false
                    }
                }
            }
            Kind::Send { flagged } => {
                if flagged {
                    if let Some(g) = self.gates.get_mut(&e.key) {
                        g.raw = g.raw.saturating_sub(1);
                        g.raw_seqs.pop_back();
                        if g.is_empty() {
                            self.gates.remove(&e.key);
                        }
                    }
                }
                e.waiter.is_some()
            }
        }
    }

    /// The write on `link` timed out before any byte left: nothing of it is
    /// on the wire, so its entries go back to the front of the queue, in
    /// order (those whose callers have given up are dropped).
    pub fn batch_unsent(&mut self, link: u64) {
        if link != self.link {
            return; // the link ended: its teardown failed them
        }
        let batch = self.take_writing(link);
        let mut back = Vec::new();
        for mut e in batch {
            if self.unregister(&mut e) {
                e.write_attempted = true;
                back.push(e);
            }
        }
        for e in back.into_iter().rev() {
            self.queued_bytes += e.size();
            self.queue.push_front(e);
        }
    }

    /// A write on `link` failed part-way or with an error: writes stop and
    /// the link must end (a partly sent message cannot be taken back). The
    /// link's teardown fails what was on it, after subscribers heard of it.
    /// Returns the wire to shut down, if `link` is still the current one.
    pub fn write_failed(&mut self, link: u64, detail: String) -> Option<Arc<dyn Wire>> {
        self.release(link);
        if link != self.link || !matches!(self.phase, Phase::Up { .. }) {
            return None;
        }
        self.handover = None;
        if self.link_end.is_none() {
            self.link_end = Some((DisconnectReason::SendFailed, detail.clone()));
            self.last_error = Some(detail);
        }
        self.stop_writes();
        self.shutdown.clone()
    }

    /// A caller gives up on request `id` at its deadline (or drops it).
    pub fn give_up(&mut self, id: u64, key: Key, now: Instant) -> GiveUp {
        if let Some(pos) = self.queue.iter().position(|q| q.id == id) {
            let phase = self.queued_phase(&self.queue[pos]);
            self.remove_queued(pos);
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
            .and_then(|g| g.flights.iter_mut().find(|f| f.id == id))
        {
            if f.waiter.take().is_some() {
                f.abandoned_at = Some(now);
                f.candidate = None;
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

    /// Messages handed to the wire so far.
    #[cfg(test)]
    pub fn wire_seq(&self) -> u64 {
        self.wseq
    }

    /// Routes a message of `key` echoing `int0`, received before the
    /// message `written_before + 1` was handed to the wire: if it is a
    /// request's reply, `outcome()` is put in its caller's slot here, in
    /// the same step that takes the request off the wire.
    pub fn route(
        &mut self,
        key: Key,
        int0: i32,
        written_before: u64,
        outcome: impl FnOnce() -> Outcome,
    ) -> Route {
        let Some(g) = self.gates.get_mut(&key) else {
            return Route::Event { answered: false };
        };
        let Some(front) = g.flights.front() else {
            if g.raw > 0 {
                let oldest = g
                    .raw_seqs
                    .front()
                    .copied()
                    .or(g.raw_at.map(|(_, w)| w))
                    .unwrap_or(0);
                if oldest > written_before {
                    // Read before that send was written: not its answer.
                    return Route::Event { answered: false };
                }
                g.raw -= 1;
                g.raw_seqs.pop_front();
                if g.is_empty() {
                    self.gates.remove(&key);
                }
                return Route::Event { answered: true };
            }
            return Route::Event { answered: false };
        };
        // An echo is "there" when the reply carries an index of the same
        // kind (1 to 4: the lasers); anything else in the field (0, a tag)
        // says nothing about whose reply it is.
        if front.check_echo && (1..=4).contains(&int0) && int0 != front.int0 {
            return Route::EchoMismatch;
        }
        if front.wseq > written_before {
            // It arrived before this request was written: a copy of an
            // earlier answer, or a broadcast; never this request's reply.
            return Route::Event { answered: false };
        }
        if front.broadcast && self.fenced <= front.wseq {
            // Not settled yet: a later message of the key may still come
            // (the reply after a broadcast). Held also when its caller gave
            // up: the last one is then its late reply, discarded.
            let front = g.flights.front_mut().expect("front exists");
            return Route::Held(front.candidate.replace(outcome()));
        }
        let f = g.flights.pop_front().expect("front exists");
        if g.is_empty() {
            self.gates.remove(&key);
        }
        if f.fence {
            let mut wakes = Vec::new();
            let late = self.fence_answered(f.wseq, &mut wakes);
            return Route::Fence(wakes, late);
        }
        match f.waiter {
            Some(w) => Route::Delivered(w.fill(outcome())),
            None => {
                self.abandoned -= 1;
                Route::Late
            }
        }
    }

    /// Everything written before fence `wseq` has been answered: a
    /// broadcast code's request written before it takes the last message of
    /// its key as its reply, and keys waiting for that open again.
    fn fence_answered(&mut self, wseq: u64, wakes: &mut Vec<Wake>) -> usize {
        self.fenced = self.fenced.max(wseq);
        self.fence_out = self.queue.iter().any(|q| q.kind == Kind::Fence)
            || self
                .gates
                .values()
                .flat_map(|g| &g.flights)
                .any(|f| f.fence);
        let fenced = self.fenced;
        let mut abandoned = 0;
        let mut late = 0;
        self.gates.retain(|key, g| {
            while g.flights.front().is_some_and(|f| {
                f.broadcast && f.wseq < fenced && (f.candidate.is_some() || f.waiter.is_none())
            }) {
                let f = g.flights.pop_front().expect("front exists");
                match (f.waiter, f.candidate) {
                    (Some(w), Some(o)) => wakes.push(w.fill(o)),
                    (None, candidate) => {
                        abandoned += 1;
                        late += usize::from(candidate.is_some());
                    }
                    _ => {}
                }
            }
            if g.settle.is_some_and(|s| s < fenced) {
                g.settle = None;
            }
            if g.raw > 0 && Conn::is_broadcast_key(key) && g.raw_at.is_some_and(|(_, w)| w < fenced)
            {
                // A broadcast code's answers cannot be counted (a broadcast
                // looks the same); the fence says they are all in.
                g.raw = 0;
                g.raw_seqs.clear();
            }
            !g.is_empty()
        });
        self.abandoned -= abandoned;
        late
    }

    /// When the link must be reset: a request stayed unanswered after its
    /// caller gave up (or a fence stayed unanswered) for longer than
    /// `window`, a request has waited behind an unanswered flagged send
    /// for that long, or more than `max_abandoned` requests are abandoned.
    /// `None`: no reset is due (or one is already under way).
    pub fn resync_due(&self, window: Duration, max_abandoned: usize) -> Option<Instant> {
        if self.resync_requested || !matches!(self.phase, Phase::Up { .. }) {
            return None;
        }
        if self.abandoned > max_abandoned {
            return Some(now());
        }
        let flights = self
            .gates
            .values()
            .flat_map(|g| &g.flights)
            .filter_map(|f| f.abandoned_at.and_then(|t| t.checked_add(window)));
        let raws = self.gates.iter().filter_map(|(k, g)| {
            let (at, _) = g.raw_at?;
            (g.raw > 0
                && self
                    .queue
                    .iter()
                    .any(|q| matches!(q.kind, Kind::Request | Kind::Fence) && q.key == *k))
            .then(|| at.checked_add(window))
            .flatten()
        });
        flights.chain(raws).min()
    }

    /// Marks the link for a reset (resynchronisation) and returns the wire
    /// to shut down.
    pub fn request_resync(&mut self, detail: String) -> Option<Arc<dyn Wire>> {
        self.resync_requested = true;
        self.link_end = Some((DisconnectReason::Resynchronised, detail.clone()));
        self.last_error = Some(detail);
        self.stop_writes();
        self.shutdown.clone()
    }

    /// Ends the current link: every request and message on it fails with
    /// `err` (the instrument will never answer on another link), and writes
    /// stop. Queued entries stay for the next link. Returns the wire to
    /// shut down.
    pub fn end_link(&mut self, err: &Error, wakes: &mut Vec<Wake>) -> Option<Arc<dyn Wire>> {
        for (_, g) in self.gates.drain() {
            for f in g.flights {
                if let Some(w) = f.waiter {
                    wakes.push(w.fill(Err(err.duplicate())));
                }
            }
        }
        let link = self.link;
        for mut e in self.take_writing(link) {
            if let Some(w) = e.waiter.take() {
                wakes.push(w.fill(Err(err.duplicate())));
            }
        }
        self.abandoned = 0;
        self.resync_requested = false;
        self.handover = None;
        self.writer = None;
        self.fence_out = self.queue.iter().any(|q| q.kind == Kind::Fence);
        // Fences are answered on the link they went out on: a queued one
        // is still useful, one on the wire died with it (above).
        self.fenced = self.wseq;
        self.stop_writes();
        self.shutdown.take()
    }

    /// Closes for good: sets the phase and fails everything that waits
    /// with `err`. Returns the wire to shut down; `None` twice if it was
    /// closed already (then `false`).
    pub fn close(
        &mut self,
        reason: DisconnectReason,
        detail: String,
        wakes: &mut Vec<Wake>,
    ) -> (bool, Option<Arc<dyn Wire>>) {
        if self.is_closed() {
            return (false, None);
        }
        let err = Error::disconnected(reason, detail.clone());
        self.phase = Phase::Closed { reason, detail };
        let wire = self.end_link(&err, wakes);
        for mut q in self.queue.drain(..) {
            if let Some(w) = q.waiter.take() {
                wakes.push(w.fill(Err(err.duplicate())));
            }
        }
        for mut w in self.writing.drain(..) {
            if let Some(w) = w.entry.waiter.take() {
                wakes.push(w.fill(Err(err.duplicate())));
            }
        }
        self.queued_bytes = 0;
        self.batch_buf = Vec::new();
        (true, wire)
    }
}

/// The timeout error of a queued entry.
pub(crate) fn timeout_error(phase: TimeoutPhase, q: &Queued) -> Error {
    let what = if q.kind == Kind::Request {
        format!("the reply to {}", q.what)
    } else {
        format!("sending {}", q.what)
    };
    Error::timeout(phase, what, q.timeout)
}

#[cfg(test)]
mod tests;
