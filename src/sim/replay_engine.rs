//! The replay's bookkeeping: a window over the recording, which recorded
//! request each incoming request matches, and when each recorded message
//! is due on which connection (see `replay.rs` for the rules).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use super::conn::{Kind, Out};
use super::replay::{
    Input, LiveOut, Player, ReplayConfig, ReplayPace, ReplayReport, Unanswerable, MAX_LISTED,
};
use crate::codec::{CommandCode, LiveHeader, Message};
use crate::record::{
    match_key, Direction, EndCause, Entry, Pairing, Port, Record, RecordingReader,
};

/// Messages queued on one command connection's writer, at most.
const COMMAND_QUEUE: usize = 1024;
/// How often a full connection queue is looked at again.
const RETRY: Duration = Duration::from_millis(2);
/// The anchor of messages with nothing before them: the replay's start.
const START: u64 = u64::MAX;

type Key = (CommandCode, Option<i32>);

enum ReqState {
    Pending,
    Matched,
    Skipped,
}

enum Emission {
    Message {
        msg: Message,
        data: Vec<u8>,
        reply: bool,
    },
    Garbage(u64),
    Frame {
        header: LiveHeader,
        subsample: u16,
        pixels: Vec<u8>,
    },
    Raw(Vec<u8>),
    Close,
}

enum ItemKind {
    Request {
        key: Key,
        state: ReqState,
    },
    Open {
        resolved: bool,
    },
    Emit {
        anchor: u64,
        delta: Duration,
        what: Option<Emission>,
    },
    Done,
}

struct Item {
    seq: u64,
    rec_conn: u32,
    size: usize,
    kind: ItemKind,
}

impl Item {
    fn consumed(&self) -> bool {
        match &self.kind {
            ItemKind::Request { state, .. } => !matches!(state, ReqState::Pending),
            ItemKind::Open { resolved } => *resolved,
            ItemKind::Emit { what, .. } => what.is_none(),
            ItemKind::Done => true,
        }
    }
}

#[derive(Default)]
struct Anchor {
    /// When the replay reached it.
    at: Option<Instant>,
    /// It will never be reached.
    never: bool,
    /// Window items that wait on it.
    refs: u32,
    in_window: bool,
}

/// Where a recorded connection plays.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Dest {
    Command(u64),
    Live(u64),
}

/// An open replay connection (removed when it closes, which drops the
/// sender its writer waits on).
struct CommandDest {
    tx: Sender<Out>,
    opened: Instant,
}

struct LiveDest {
    tx: Sender<LiveOut>,
    opened: Instant,
}

struct Deferred {
    id: u64,
    msg: Message,
    at: Instant,
}

pub(crate) struct Engine<R> {
    reader: Option<RecordingReader<R>>,
    config: ReplayConfig,
    player: Arc<Player>,
    window: VecDeque<Item>,
    front_seq: u64,
    next_seq: u64,
    window_bytes: usize,
    anchors: HashMap<u64, Anchor>,
    pairing: Pairing<u64>,
    /// The latest recorded client message: (seq, time).
    last_client: Option<(u64, Duration)>,
    /// Per recorded connection: its port and the (seq, time) of its opening.
    rec_conns: HashMap<u32, (Port, u64, Duration)>,
    /// Recorded connections whose client had closed its side.
    client_ended: HashSet<u32>,
    /// Recorded connections whose replay connection has closed.
    closed_rec: HashSet<u32>,
    /// Times of records by seq, for anchors (request and open records).
    anchor_times: HashMap<u64, Duration>,
    rec_to_dest: HashMap<u32, Dest>,
    command_to_rec: HashMap<u64, u32>,
    unmapped_rec: [VecDeque<(u32, u64)>; 2],
    unmapped_command: VecDeque<u64>,
    unmapped_live: VecDeque<u64>,
    commands: HashMap<u64, CommandDest>,
    lives: HashMap<u64, LiveDest>,
    deferred: VecDeque<Deferred>,
}

fn port_index(p: Port) -> usize {
    match p {
        Port::Command => 0,
        Port::Live => 1,
    }
}

impl<R: Read> Engine<R> {
    pub(crate) fn new(
        reader: RecordingReader<R>,
        config: ReplayConfig,
        player: Arc<Player>,
    ) -> Engine<R> {
        let mut anchors = HashMap::new();
        anchors.insert(
            START,
            Anchor {
                at: Some(player.started),
                ..Anchor::default()
            },
        );
        Engine {
            reader: Some(reader),
            config,
            player,
            window: VecDeque::new(),
            front_seq: 0,
            next_seq: 0,
            window_bytes: 0,
            anchors,
            pairing: Pairing::new(),
            last_client: None,
            rec_conns: HashMap::new(),
            client_ended: HashSet::new(),
            closed_rec: HashSet::new(),
            anchor_times: HashMap::new(),
            rec_to_dest: HashMap::new(),
            command_to_rec: HashMap::new(),
            unmapped_rec: [VecDeque::new(), VecDeque::new()],
            unmapped_command: VecDeque::new(),
            unmapped_live: VecDeque::new(),
            commands: HashMap::new(),
            lives: HashMap::new(),
            deferred: VecDeque::new(),
        }
    }

    fn window_full(&self) -> bool {
        self.window.len() >= self.config.window_records
            || self.window_bytes >= self.config.window_bytes
    }

    /// Reads records until the window is full or the recording ends.
    fn fill(&mut self) {
        while !self.window_full() {
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            match reader.next_record() {
                Ok(Some(r)) => {
                    self.rep().records_read += 1;
                    self.ingest(r);
                }
                Ok(None) => {
                    self.reader = None;
                }
                Err(e) => {
                    log::warn!("sim: replay: {e}");
                    self.rep().problem = Some(e.to_string());
                    self.reader = None;
                }
            }
        }
    }

    fn new_anchor(&mut self, seq: u64, time: Duration) {
        self.anchors.insert(
            seq,
            Anchor {
                in_window: true,
                ..Anchor::default()
            },
        );
        self.anchor_times.insert(seq, time);
    }

    /// The anchor of an instrument message that answers no request: the
    /// latest client message, or its connection's opening if later.
    fn event_anchor(&self, rec_conn: u32) -> (u64, Duration) {
        let open = self.rec_conns.get(&rec_conn).map(|&(_, s, t)| (s, t));
        let candidates = [self.last_client, open];
        candidates
            .into_iter()
            .flatten()
            .filter(|(s, _)| self.anchors.contains_key(s))
            .max_by_key(|&(s, t)| (t, s))
            .unwrap_or((START, Duration::ZERO))
    }

    fn ingest(&mut self, r: Record) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let rec_conn = r.conn;
        let mut size = 64;
        let kind = match r.entry {
            Entry::Open { port, .. } => {
                self.rec_conns.insert(rec_conn, (port, seq, r.time));
                self.new_anchor(seq, r.time);
                // Held while the connection lasts: its events count from it.
                self.hold(seq);
                self.unmapped_rec[port_index(port)].push_back((rec_conn, seq));
                ItemKind::Open { resolved: false }
            }
            Entry::Message {
                direction: Direction::ToInstrument,
                message,
                ..
            } => {
                self.new_anchor(seq, r.time);
                let mut gone = Vec::new();
                self.pairing.request(rec_conn, &message, seq, &mut gone);
                // Held while it is the latest: later events count from it.
                self.hold(seq);
                if let Some((old, _)) = self.last_client.replace((seq, r.time)) {
                    self.release(old);
                }
                ItemKind::Request {
                    key: match_key(&message),
                    // Its connection's client is gone: it will never come.
                    state: if self.closed_rec.contains(&rec_conn) {
                        self.rep().skipped_requests += 1;
                        ReqState::Skipped
                    } else {
                        ReqState::Pending
                    },
                }
            }
            Entry::Message {
                direction: Direction::ToClient,
                message,
                data_seen,
                mut data,
            } => {
                data.resize(data_seen as usize, 0);
                size += data.len();
                let paired = self
                    .pairing
                    .reply(rec_conn, &message)
                    .filter(|(s, _)| self.anchors.contains_key(s))
                    .map(|(s, _)| s);
                let (anchor, reply) = match paired {
                    Some(s) => (s, true),
                    None => (self.event_anchor(rec_conn).0, false),
                };
                self.emit(
                    anchor,
                    r.time,
                    Emission::Message {
                        msg: message,
                        data,
                        reply,
                    },
                )
            }
            Entry::Skipped {
                direction: Direction::ToClient,
                bytes,
            } => {
                let anchor = self.event_anchor(rec_conn).0;
                self.emit(anchor, r.time, Emission::Garbage(bytes.min(1 << 20)))
            }
            Entry::Frame {
                header,
                subsample,
                pixels,
                ..
            } => {
                size += pixels.len();
                let anchor = self.event_anchor(rec_conn).0;
                self.emit(
                    anchor,
                    r.time,
                    Emission::Frame {
                        header,
                        subsample,
                        pixels,
                    },
                )
            }
            Entry::Unparsed {
                direction: Direction::ToClient,
                bytes,
                ..
            } => {
                size += bytes.len();
                let anchor = self.event_anchor(rec_conn).0;
                self.emit(anchor, r.time, Emission::Raw(bytes))
            }
            Entry::StreamEnd {
                direction: Direction::ToInstrument,
                ..
            } => {
                self.client_ended.insert(rec_conn);
                ItemKind::Done
            }
            Entry::StreamEnd {
                direction: Direction::ToClient,
                cause,
                ..
            } => {
                let mut gone = Vec::new();
                self.pairing.close(rec_conn, &mut gone);
                // Only the instrument's own closes are played: not one that
                // answered the client's close, nor the recorder's stop.
                let own = !self.client_ended.remove(&rec_conn) && cause != EndCause::Stopped;
                let kind = if own {
                    let anchor = self.event_anchor(rec_conn).0;
                    self.emit(anchor, r.time, Emission::Close)
                } else {
                    ItemKind::Done
                };
                if let Some((_, open, _)) = self.rec_conns.remove(&rec_conn) {
                    self.release(open);
                }
                kind
            }
            _ => ItemKind::Done,
        };
        self.window_bytes += size;
        self.window.push_back(Item {
            seq,
            rec_conn,
            size,
            kind,
        });
        // A recorded connection can be mapped as soon as it is known.
        self.map_connections(Instant::now());
    }

    fn hold(&mut self, anchor: u64) {
        if let Some(a) = self.anchors.get_mut(&anchor) {
            a.refs += 1;
        }
    }

    fn emit(&mut self, anchor: u64, time: Duration, what: Emission) -> ItemKind {
        let base = self.anchor_times.get(&anchor).copied().unwrap_or_default();
        if let Some(a) = self.anchors.get_mut(&anchor) {
            a.refs += 1;
        }
        ItemKind::Emit {
            anchor,
            delta: time.saturating_sub(base),
            what: Some(what),
        }
    }

    /// Pairs recorded connections with replay connections, in order.
    fn map_connections(&mut self, now: Instant) {
        while !self.unmapped_command.is_empty() && !self.unmapped_rec[0].is_empty() {
            let id = self.unmapped_command.pop_front().expect("checked");
            let (rec, seq) = self.unmapped_rec[0].pop_front().expect("checked");
            let opened = self.commands.get(&id).map_or(now, |c| c.opened);
            self.rec_to_dest.insert(rec, Dest::Command(id));
            self.command_to_rec.insert(id, rec);
            self.resolve_open(seq, opened);
        }
        while !self.unmapped_live.is_empty() && !self.unmapped_rec[1].is_empty() {
            let id = self.unmapped_live.pop_front().expect("checked");
            let (rec, seq) = self.unmapped_rec[1].pop_front().expect("checked");
            let opened = self.lives.get(&id).map_or(now, |c| c.opened);
            self.rec_to_dest.insert(rec, Dest::Live(id));
            self.resolve_open(seq, opened);
        }
    }

    fn resolve_open(&mut self, seq: u64, at: Instant) {
        if let Some(a) = self.anchors.get_mut(&seq) {
            a.at = Some(at);
        }
        if let Some(item) = self.item_mut(seq) {
            item.kind = ItemKind::Open { resolved: true };
        }
    }

    fn item_mut(&mut self, seq: u64) -> Option<&mut Item> {
        let i = seq.checked_sub(self.front_seq)? as usize;
        self.window.get_mut(i)
    }

    pub(crate) fn input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::CommandOpened(id, tx, at) => {
                self.commands.insert(id, CommandDest { tx, opened: at });
                self.unmapped_command.push_back(id);
                self.map_connections(now);
            }
            Input::LiveOpened(id, tx, at) => {
                self.lives.insert(id, LiveDest { tx, opened: at });
                self.unmapped_live.push_back(id);
                self.map_connections(now);
            }
            Input::CommandClosed(id) => {
                self.commands.remove(&id);
                self.unmapped_command.retain(|&c| c != id);
                // What its recorded connection still had to send will not
                // come: those requests are given up, with what they caused.
                if let Some(&rec) = self.command_to_rec.get(&id) {
                    self.closed_rec.insert(rec);
                    let mut skipped = 0;
                    for item in self.window.iter_mut().filter(|i| i.rec_conn == rec) {
                        if let ItemKind::Request { state, .. } = &mut item.kind {
                            if matches!(state, ReqState::Pending) {
                                *state = ReqState::Skipped;
                                skipped += 1;
                                if let Some(a) = self.anchors.get_mut(&item.seq) {
                                    a.never = true;
                                }
                            }
                        }
                    }
                    self.rep().skipped_requests += skipped;
                }
            }
            Input::LiveClosed(id) => {
                self.lives.remove(&id);
                self.unmapped_live.retain(|&c| c != id);
            }
            Input::Request(id, msg, at) => {
                self.rep().requests += 1;
                if !self.try_match(id, &msg, at) {
                    self.deferred.push_back(Deferred { id, msg, at });
                }
            }
        }
    }

    /// Matches a request with the first unmatched recorded request of its
    /// connection with the same key. False if there is none in the window.
    fn try_match(&mut self, id: u64, msg: &Message, at: Instant) -> bool {
        let Some(&rec) = self.command_to_rec.get(&id) else {
            return false;
        };
        let key = match_key(msg);
        let found = self.window.iter_mut().find(|it| {
            it.rec_conn == rec
                && matches!(&it.kind, ItemKind::Request { key: k, state: ReqState::Pending } if *k == key)
        });
        let Some(item) = found else {
            return false;
        };
        item.kind = ItemKind::Request {
            key,
            state: ReqState::Matched,
        };
        let seq = item.seq;
        if let Some(a) = self.anchors.get_mut(&seq) {
            a.at = Some(at);
        }
        self.rep().answered += 1;
        true
    }

    fn unanswerable(&mut self, d: Deferred, reason: &str) {
        let mut report = self.rep();
        report.unanswerable_total += 1;
        log::info!(
            "sim: replay cannot answer {} (int32Data0 {}) on connection {}: {reason}",
            d.msg.code,
            d.msg.int32_data0,
            d.id
        );
        if report.unanswerable.len() < MAX_LISTED {
            report.unanswerable.push(Unanswerable {
                connection: d.id,
                code: d.msg.code,
                int32_data0: d.msg.int32_data0,
                at: d.at.saturating_duration_since(self.player.started),
                reason: reason.to_string(),
            });
        }
    }

    /// Retries deferred requests; once the recording is read to its end,
    /// those still unmatched cannot be answered.
    fn retry_deferred(&mut self) {
        let waiting = std::mem::take(&mut self.deferred);
        for d in waiting {
            if !self.try_match(d.id, &d.msg, d.at) {
                self.deferred.push_back(d);
            }
        }
        if self.reader.is_none() {
            while let Some(d) = self.deferred.pop_front() {
                let reason = if self.command_to_rec.contains_key(&d.id) {
                    "the recorded connection has no further request with this code and key"
                } else {
                    "the recording has no command connection left to play on this one"
                };
                self.unanswerable(d, reason);
            }
        }
    }

    /// When a deferred request waits and the window can hold no more, the
    /// recorded requests at its front that the clients never sent are
    /// given up (with what they caused), so the replay can read on.
    fn relieve(&mut self) {
        while !self.deferred.is_empty() && self.window_full() && self.reader.is_some() {
            let Some(front) = self.window.front_mut() else {
                return;
            };
            match &mut front.kind {
                ItemKind::Request { state, .. } if matches!(state, ReqState::Pending) => {
                    *state = ReqState::Skipped;
                    let seq = front.seq;
                    self.rep().skipped_requests += 1;
                    if let Some(a) = self.anchors.get_mut(&seq) {
                        a.never = true;
                    }
                }
                ItemKind::Open { resolved } if !*resolved => {
                    *resolved = true;
                    let seq = front.seq;
                    let rec = front.rec_conn;
                    if let Some(a) = self.anchors.get_mut(&seq) {
                        a.never = true;
                    }
                    for q in &mut self.unmapped_rec {
                        q.retain(|&(c, _)| c != rec);
                    }
                }
                ItemKind::Emit { anchor, what, .. } if what.is_some() => {
                    let a = self.anchors.get(anchor);
                    let unmapped = !self.rec_to_dest.contains_key(&front.rec_conn);
                    if a.is_none_or(|a| a.never || a.at.is_none()) || unmapped {
                        *what = None;
                        let anchor = *anchor;
                        self.rep().not_sent += 1;
                        self.release(anchor);
                    } else {
                        // Waits for its time or its connection's queue.
                        return;
                    }
                }
                _ => {}
            }
            self.pop_consumed();
            self.fill();
            self.retry_deferred();
        }
    }

    fn release(&mut self, anchor: u64) {
        if let Some(a) = self.anchors.get_mut(&anchor) {
            a.refs = a.refs.saturating_sub(1);
            if a.refs == 0 && !a.in_window && anchor != START {
                self.anchors.remove(&anchor);
                self.anchor_times.remove(&anchor);
            }
        }
    }

    fn pop_consumed(&mut self) {
        while self.window.front().is_some_and(Item::consumed) {
            let item = self.window.pop_front().expect("checked");
            self.front_seq = item.seq + 1;
            self.window_bytes -= item.size;
            if let Some(a) = self.anchors.get_mut(&item.seq) {
                a.in_window = false;
                if a.refs == 0 {
                    self.anchors.remove(&item.seq);
                    self.anchor_times.remove(&item.seq);
                }
            }
        }
    }

    /// Sends what is due; returns when to look again.
    pub(crate) fn step(&mut self, now: Instant) -> Option<Instant> {
        self.fill();
        self.retry_deferred();
        self.relieve();
        let mut wake: Option<Instant> = None;
        let earliest = |t: Instant, wake: &mut Option<Instant>| {
            *wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        };
        // Connections that must not receive anything more in this pass (an
        // earlier message for them waits), to keep each connection's order.
        let mut held: HashSet<Dest> = HashSet::new();
        let fast = self.config.pace == ReplayPace::Fast;
        for i in 0..self.window.len() {
            let item = &self.window[i];
            let ItemKind::Emit {
                anchor,
                delta,
                what: Some(_),
            } = &item.kind
            else {
                continue;
            };
            let (anchor, delta) = (*anchor, *delta);
            let a = self.anchors.get(&anchor);
            let drop_it = a.is_none_or(|a| a.never);
            let Some(dest) = self.rec_to_dest.get(&item.rec_conn).copied() else {
                continue;
            };
            let opened = match dest {
                Dest::Command(id) => self.commands.get(&id).map(|c| c.opened),
                Dest::Live(id) => self.lives.get(&id).map(|c| c.opened),
            };
            let closed = opened.is_none();
            let opened = opened.unwrap_or(now);
            if drop_it || closed {
                if let ItemKind::Emit { what, .. } = &mut self.window[i].kind {
                    // A close for a connection already closed is no loss.
                    if !matches!(what.take(), Some(Emission::Close)) {
                        self.rep().not_sent += 1;
                    }
                }
                self.release(anchor);
                continue;
            }
            let Some(at) = a.and_then(|a| a.at) else {
                continue;
            };
            if held.contains(&dest) {
                continue;
            }
            let due = if fast {
                at.max(opened)
            } else {
                at.checked_add(delta).unwrap_or(at).max(opened)
            };
            if due > now {
                earliest(due, &mut wake);
                held.insert(dest);
                continue;
            }
            let ItemKind::Emit { what, .. } = &mut self.window[i].kind else {
                continue;
            };
            let emission = what.take().expect("checked");
            match self.deliver(dest, emission, now) {
                Ok(()) => self.release(anchor),
                Err(back) => {
                    if let ItemKind::Emit { what, .. } = &mut self.window[i].kind {
                        *what = Some(*back);
                    }
                    held.insert(dest);
                    earliest(now + RETRY, &mut wake);
                }
            }
        }
        self.pop_consumed();
        // Reading on may have room now.
        if !self.window_full() && self.reader.is_some() {
            earliest(now, &mut wake);
        }
        self.set_finished(self.reader.is_none() && self.window.is_empty());
        wake
    }

    /// Hands one recorded item to its connection; gives it back if the
    /// connection's queue is full.
    fn deliver(&mut self, dest: Dest, e: Emission, now: Instant) -> Result<(), Box<Emission>> {
        match dest {
            Dest::Command(id) => {
                let Some(c) = self.commands.get(&id) else {
                    return Ok(());
                };
                if c.tx.len() >= COMMAND_QUEUE {
                    return Err(Box::new(e));
                }
                let out = match e {
                    Emission::Message { msg, data, reply } => {
                        if reply {
                            self.rep().replies_sent += 1;
                        } else {
                            self.rep().events_sent += 1;
                        }
                        Out {
                            msg,
                            data: (!data.is_empty()).then(|| Arc::new(data)),
                            due: now,
                            kind: if reply { Kind::Reply } else { Kind::Event },
                        }
                    }
                    // Garbage without the start marker's first byte, as
                    // the simulator's garbage fault writes it.
                    Emission::Garbage(n) => Out {
                        msg: Message::default(),
                        data: Some(Arc::new(vec![0xA5; n as usize])),
                        due: now,
                        kind: Kind::Raw,
                    },
                    Emission::Raw(bytes) => Out {
                        msg: Message::default(),
                        data: Some(Arc::new(bytes)),
                        due: now,
                        kind: Kind::Raw,
                    },
                    Emission::Close => Out {
                        msg: Message::default(),
                        data: None,
                        due: now,
                        kind: Kind::Close,
                    },
                    Emission::Frame { .. } => return Ok(()),
                };
                let _ = c.tx.send(out);
                Ok(())
            }
            Dest::Live(id) => {
                let Some(c) = self.lives.get(&id) else {
                    return Ok(());
                };
                let (out, frame) = match e {
                    Emission::Frame {
                        header,
                        subsample,
                        pixels,
                    } => (
                        LiveOut::Frame {
                            header,
                            subsample,
                            pixels,
                        },
                        true,
                    ),
                    Emission::Raw(b) => (LiveOut::Raw(b), false),
                    Emission::Close => (LiveOut::Close, false),
                    // Nothing else is recorded on a live connection.
                    _ => return Ok(()),
                };
                // Counted before it can reach the client, so a client that
                // has the frame finds it counted.
                if frame {
                    self.rep().frames_sent += 1;
                }
                let sent = c.tx.try_send(out);
                if sent.is_err() && frame {
                    self.rep().frames_sent -= 1;
                }
                match sent {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(out)) => Err(Box::new(match out {
                        LiveOut::Frame {
                            header,
                            subsample,
                            pixels,
                        } => Emission::Frame {
                            header,
                            subsample,
                            pixels,
                        },
                        LiveOut::Raw(b) => Emission::Raw(b),
                        LiveOut::Close => Emission::Close,
                    })),
                    Err(TrySendError::Disconnected(_)) => {
                        self.rep().not_sent += 1;
                        Ok(())
                    }
                }
            }
        }
    }

    /// The report, shared with [`Simulator::replay_report`](super::Simulator::replay_report):
    /// every count is updated there before what it counts can reach a
    /// client, so a client that has seen something finds it counted.
    fn rep(&self) -> parking_lot::MutexGuard<'_, ReplayReport> {
        self.player.report.lock()
    }

    fn set_finished(&self, finished: bool) {
        let mut r = self.rep();
        if r.finished != finished {
            r.finished = finished;
            drop(r);
            self.player.finished_cv.notify_all();
        }
    }

    /// The simulator stops: requests still waiting are unanswerable.
    pub(crate) fn stop(&mut self) {
        while let Some(d) = self.deferred.pop_front() {
            self.unanswerable(d, "the replay stopped before the recording answered it");
        }
        self.set_finished(self.reader.is_none() && self.window.is_empty());
        self.player.finished_cv.notify_all();
    }
}
