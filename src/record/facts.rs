//! What a recording shows about the protocol's open points (protocol.md,
//! section 13), computed in one streaming pass in bounded memory.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use super::format::{Direction, Entry, Port, Record};
use super::pairing::{GaveUp, Pairing};
use super::reader::{RecordError, RecordingReader};
use crate::codec::{CommandCode, Flags, Message, MESSAGE_LEN};

/// How long after one connection received a message an identical message
/// on another connection still counts as the same broadcast.
pub const BROADCAST_WINDOW: Duration = Duration::from_secs(1);
/// Replies later than this (the client's default request timeout) are
/// counted as late.
pub const LATE_AFTER: Duration = Duration::from_secs(3);
/// Distinct status values kept per code.
const MAX_STATUSES: usize = 16;
/// Messages remembered for the broadcast comparison, at most.
const MAX_RECENT: usize = 65_536;
/// Codes reported one by one, at most (a damaged stream can make up any
/// number); messages of further codes are only counted.
pub const MAX_CODES: usize = 4096;

/// Reply latencies of one code: exact count, minimum, maximum and mean,
/// and percentiles from a histogram of 10 buckets per decade (1 µs to
/// 1000 s), so a percentile is within about 26 % of the true value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latency {
    /// Replies measured.
    pub count: u64,
    /// The shortest.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    total: Duration,
    buckets: Vec<u64>,
}

const BUCKETS_PER_DECADE: f64 = 10.0;
const BUCKETS: usize = 92;

impl Default for Latency {
    fn default() -> Self {
        Latency {
            count: 0,
            min: Duration::MAX,
            max: Duration::ZERO,
            total: Duration::ZERO,
            buckets: vec![0; BUCKETS],
        }
    }
}

impl Latency {
    fn bucket(d: Duration) -> usize {
        let us = d.as_secs_f64() * 1e6;
        if us < 1.0 {
            0
        } else {
            ((us.log10() * BUCKETS_PER_DECADE) as usize + 1).min(BUCKETS - 1)
        }
    }

    /// The upper bound of bucket `i`.
    fn upper(i: usize) -> Duration {
        Duration::from_secs_f64(10f64.powf(i as f64 / BUCKETS_PER_DECADE) * 1e-6)
    }

    /// Adds one measurement.
    pub fn add(&mut self, d: Duration) {
        self.count += 1;
        self.min = self.min.min(d);
        self.max = self.max.max(d);
        self.total = self.total.saturating_add(d);
        self.buckets[Latency::bucket(d)] += 1;
    }

    /// The mean, if anything was measured.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| self.total / self.count.min(u64::from(u32::MAX)) as u32)
    }

    /// The `p`-th percentile (0 to 100): the upper bound of the histogram
    /// bucket it falls in, clamped to the measured minimum and maximum.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Latency::upper(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// What a recording shows about one command code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeFacts {
    /// The code.
    pub code: CommandCode,
    /// Messages of this code sent by clients.
    pub sent: u64,
    /// Of those, sent without `TRIGGER_CALL_BACK`.
    pub sent_unflagged: u64,
    /// Messages of this code from the instrument that answered a request
    /// (paired by the rule of the module documentation).
    pub replies: u64,
    /// Replies whose `int32Data0` equals their request's non-zero
    /// `int32Data0`.
    pub echo_same: u64,
    /// Replies whose `int32Data0` differs from their request's non-zero
    /// `int32Data0`.
    pub echo_differs: u64,
    /// Replies to requests whose `int32Data0` was 0 (nothing to echo).
    pub echo_untested: u64,
    /// Reply latency (request to reply, as seen at the recorder).
    pub latency: Latency,
    /// Replies later than [`LATE_AFTER`].
    pub late: u64,
    /// Flagged requests that were never answered (their connection ended,
    /// or too many waited).
    pub unanswered: u64,
    /// Unflagged requests that were answered (the next message of the code
    /// from the instrument came before the next request of the code).
    pub unflagged_answered: u64,
    /// Unflagged requests that were not.
    pub unflagged_unanswered: u64,
    /// Messages of this code from the instrument that answered no request.
    pub unsolicited: u64,
    /// Of those, how many arrived while another command connection was open.
    pub unsolicited_others_open: u64,
    /// Of those, how many another connection also received (an identical
    /// message within [`BROADCAST_WINDOW`]).
    pub unsolicited_seen_elsewhere: u64,
    /// Replies that another command connection also received (identical,
    /// within [`BROADCAST_WINDOW`]).
    pub replies_seen_elsewhere: u64,
    /// Status values of the instrument's messages of this code, with counts
    /// (the first 16 distinct values).
    pub statuses: BTreeMap<u32, u64>,
    /// Messages from the instrument that carried additional data.
    pub with_data: u64,
    /// The most additional data one of them carried.
    pub max_data: u32,
}

impl CodeFacts {
    /// The library's name of the code, if it is in the catalogue.
    pub fn name(&self) -> Option<&'static str> {
        self.code.name()
    }
}

/// What a recording shows about the protocol's open points: per code,
/// whether replies echo `int32Data0`, which messages arrive unsolicited and
/// whether other connections receive them too, reply latencies, answers to
/// messages sent without `TRIGGER_CALL_BACK`, and codes outside the
/// catalogue.
///
/// Built in one pass ([`Facts::read`], or [`Facts::add`] record by
/// record), in memory bounded by the number of distinct codes.
///
/// ```
/// use flamingo_client::record::{Facts, Proxy, ProxyConfig};
/// use flamingo_client::sim::{SimConfig, Simulator};
/// use flamingo_client::{Axis, Client};
///
/// let sim = Simulator::start(SimConfig::default().image_size(64, 48))?;
/// let path = std::env::temp_dir().join(format!("doc-facts-{}.flrec", std::process::id()));
/// let proxy = Proxy::create(ProxyConfig::new("127.0.0.1:0".parse()?, sim.addr()), &path)?;
/// let client = Client::connect(&proxy.addr().to_string(), Default::default())?;
/// client.stage().position(Axis::Y)?;
/// client.close();
/// proxy.stop()?;
///
/// let facts = Facts::from_file(&path)?;
/// let pos = &facts.codes[&0x6008];
/// assert_eq!((pos.sent, pos.replies, pos.echo_same), (1, 1, 1)); // the axis is echoed
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The recording's metadata (`tool`, `upstream`, ...).
    pub meta: Vec<(String, String)>,
    /// Records read.
    pub records: u64,
    /// Time of the last record.
    pub duration: Duration,
    /// The recording ended with its end record.
    pub finished: bool,
    /// Why reading stopped early (a truncated or damaged file), if it did:
    /// the report covers the records before that point.
    pub problem: Option<String>,
    /// Command connections.
    pub command_connections: u64,
    /// Live connections.
    pub live_connections: u64,
    /// Messages from clients.
    pub messages_to_instrument: u64,
    /// Messages from the instrument.
    pub messages_to_client: u64,
    /// Bytes between messages that were skipped to find the next start
    /// marker: (from clients, from the instrument).
    pub skipped_bytes: (u64, u64),
    /// Live frames.
    pub frames: u64,
    /// Live connections whose stream stopped making sense (a bad header).
    pub live_unparsed: u64,
    /// Connection directions that ended with an error (a reset).
    pub failed_streams: u64,
    /// Records the recorder could not write (from its end record).
    pub dropped_records: u64,
    /// Per code (by value), every code seen in either direction (the first
    /// [`MAX_CODES`]).
    pub codes: BTreeMap<u32, CodeFacts>,
    /// Messages of codes beyond the first [`MAX_CODES`] (not in `codes`).
    pub other_code_messages: u64,
    #[doc(hidden)]
    state: Scan,
}

/// The working state of one pass.
#[derive(Clone, Debug, Default, PartialEq)]
struct Scan {
    pairing: PairingState,
    ports: HashMap<u32, Port>,
    open_command: HashSet<u32>,
    recent: VecDeque<Recent>,
    next_recent: u64,
    by_bytes: HashMap<[u8; MESSAGE_LEN], VecDeque<u64>>,
    finished_scan: bool,
    /// Where the facts of codes beyond [`MAX_CODES`] go (discarded).
    scratch: CodeFacts,
}

#[derive(Clone, Debug, PartialEq)]
struct Recent {
    id: u64,
    time: Duration,
    conn: u32,
    bytes: [u8; MESSAGE_LEN],
    reply: bool,
    others_open: bool,
    elsewhere: bool,
}

/// A request waiting for its reply.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sent {
    code: CommandCode,
    time: Duration,
    int0: i32,
}

/// [`Pairing`] is not `Clone`/`PartialEq`; it is wrapped to keep [`Facts`]
/// comparable (two pairings compare equal: the state is transient).
#[derive(Default)]
struct PairingState(Option<Pairing<Sent>>);

impl Clone for PairingState {
    fn clone(&self) -> Self {
        PairingState(None)
    }
}
impl PartialEq for PairingState {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl std::fmt::Debug for PairingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pairing")
    }
}

impl Facts {
    /// An empty report, to [`add`](Facts::add) records to.
    pub fn new() -> Facts {
        Facts::default()
    }

    /// Reads a recording to its end (or to the first problem, kept in
    /// [`problem`](Facts::problem)) and returns the report.
    pub fn read<R: Read>(mut reader: RecordingReader<R>) -> Facts {
        let mut f = Facts::new();
        loop {
            match reader.next_record() {
                Ok(Some(r)) => f.add(&r),
                Ok(None) => break,
                Err(e) => {
                    f.problem = Some(e.to_string());
                    break;
                }
            }
        }
        f.finished = reader.finished();
        f.finish();
        f
    }

    /// Opens and reads a recording file. Fails only if the file cannot be
    /// opened or is not a recording; later problems are kept in
    /// [`problem`](Facts::problem).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Facts, RecordError> {
        Ok(Facts::read(RecordingReader::open(path)?))
    }

    /// The facts of code `c`; beyond [`MAX_CODES`] codes, a scratch entry
    /// that is not reported (and the message is counted as another code's).
    fn code(&mut self, c: CommandCode) -> &mut CodeFacts {
        if self.overflows(c) {
            let scratch = &mut self.state.scratch;
            *scratch = CodeFacts {
                code: c,
                ..CodeFacts::default()
            };
            return scratch;
        }
        self.codes.entry(c.0).or_insert_with(|| CodeFacts {
            code: c,
            ..CodeFacts::default()
        })
    }

    /// Takes one record into account.
    pub fn add(&mut self, r: &Record) {
        self.records += 1;
        self.duration = self.duration.max(r.time);
        self.expire(r.time);
        match &r.entry {
            Entry::Meta(kv) => self.meta.clone_from(kv),
            Entry::Open { port, .. } => {
                self.state.ports.insert(r.conn, *port);
                match port {
                    Port::Command => {
                        self.command_connections += 1;
                        self.state.open_command.insert(r.conn);
                    }
                    Port::Live => self.live_connections += 1,
                }
            }
            Entry::Message {
                direction,
                message,
                data_seen,
                ..
            } => {
                if let std::collections::hash_map::Entry::Vacant(e) = self.state.ports.entry(r.conn)
                {
                    // Its open record was lost: it is a command connection.
                    e.insert(Port::Command);
                    self.command_connections += 1;
                    self.state.open_command.insert(r.conn);
                }
                match direction {
                    Direction::ToInstrument => self.sent(r, message),
                    Direction::ToClient => self.received(r, message, *data_seen),
                }
            }
            Entry::Skipped { direction, bytes } => match direction {
                Direction::ToInstrument => self.skipped_bytes.0 += bytes,
                Direction::ToClient => self.skipped_bytes.1 += bytes,
            },
            Entry::Frame { .. } => self.frames += 1,
            Entry::Unparsed { .. } => self.live_unparsed += 1,
            Entry::StreamEnd {
                cause, direction, ..
            } => {
                if *cause == super::format::EndCause::Failed {
                    self.failed_streams += 1;
                }
                // A command connection can answer nothing more once the
                // instrument's side has ended.
                if *direction == Direction::ToClient
                    && self.state.ports.get(&r.conn) == Some(&Port::Command)
                {
                    self.state.open_command.remove(&r.conn);
                    let mut gone = Vec::new();
                    self.pairing().close(r.conn, &mut gone);
                    self.gave_up(gone);
                }
            }
            Entry::End {
                dropped_records, ..
            } => {
                self.dropped_records = *dropped_records;
                self.finished = true;
            }
            Entry::Note(_) | Entry::Unknown { .. } => {}
        }
    }

    /// True if `c` is beyond the codes reported one by one.
    fn overflows(&self, c: CommandCode) -> bool {
        self.codes.len() >= MAX_CODES && !self.codes.contains_key(&c.0)
    }

    fn pairing(&mut self) -> &mut Pairing<Sent> {
        self.state.pairing.0.get_or_insert_with(Pairing::new)
    }

    fn sent(&mut self, r: &Record, m: &Message) {
        self.messages_to_instrument += 1;
        if self.overflows(m.code) {
            self.other_code_messages += 1;
        }
        let c = self.code(m.code);
        c.sent += 1;
        if !m.flags.contains(Flags::TRIGGER_CALL_BACK) {
            c.sent_unflagged += 1;
        }
        let mut gone = Vec::new();
        let sent = Sent {
            code: m.code,
            time: r.time,
            int0: m.int32_data0,
        };
        self.pairing().request(r.conn, m, sent, &mut gone);
        self.gave_up(gone);
    }

    /// Requests that stopped waiting without a reply.
    fn gave_up(&mut self, gone: Vec<(Sent, bool, GaveUp)>) {
        for (sent, flagged, _) in gone {
            let c = self.code(sent.code);
            if flagged {
                c.unanswered += 1;
            } else {
                c.unflagged_unanswered += 1;
            }
        }
    }

    fn received(&mut self, r: &Record, m: &Message, data_seen: u32) {
        self.messages_to_client += 1;
        if self.overflows(m.code) {
            self.other_code_messages += 1;
        }
        let paired = self.pairing().reply(r.conn, m);
        let others_open = self.state.open_command.len() > 1;
        let c = self.code(m.code);
        if c.statuses.len() < MAX_STATUSES || c.statuses.contains_key(&m.status) {
            *c.statuses.entry(m.status).or_default() += 1;
        }
        if m.additional_data_len > 0 {
            c.with_data += 1;
            c.max_data = c.max_data.max(data_seen);
        }
        match paired {
            Some((sent, flagged)) => {
                c.replies += 1;
                let latency = r.time.saturating_sub(sent.time);
                c.latency.add(latency);
                if latency > LATE_AFTER {
                    c.late += 1;
                }
                if !flagged {
                    c.unflagged_answered += 1;
                }
                if sent.int0 == 0 {
                    c.echo_untested += 1;
                } else if sent.int0 == m.int32_data0 {
                    c.echo_same += 1;
                } else {
                    c.echo_differs += 1;
                }
            }
            None => {
                c.unsolicited += 1;
                if others_open {
                    c.unsolicited_others_open += 1;
                }
            }
        }
        self.remember(r, m, paired.is_some(), others_open);
    }

    /// Keeps the message for the broadcast comparison and marks an
    /// identical one received by another connection.
    fn remember(&mut self, r: &Record, m: &Message, reply: bool, others_open: bool) {
        let bytes = m.to_bytes();
        let s = &mut self.state;
        let mut elsewhere = false;
        if let Some(ids) = s.by_bytes.get(&bytes) {
            let first = s.recent.front().map_or(0, |e| e.id);
            for &id in ids {
                let Some(e) = s.recent.get_mut((id - first) as usize) else {
                    continue;
                };
                if e.conn != r.conn && r.time.saturating_sub(e.time) <= BROADCAST_WINDOW {
                    e.elsewhere = true;
                    elsewhere = true;
                }
            }
        }
        if s.recent.len() >= MAX_RECENT {
            self.retire_oldest();
        }
        let s = &mut self.state;
        let id = s.next_recent;
        s.next_recent += 1;
        s.recent.push_back(Recent {
            id,
            time: r.time,
            conn: r.conn,
            bytes,
            reply,
            others_open,
            elsewhere,
        });
        s.by_bytes.entry(bytes).or_default().push_back(id);
    }

    /// Retires remembered messages older than the broadcast window.
    fn expire(&mut self, now: Duration) {
        while self
            .state
            .recent
            .front()
            .is_some_and(|e| now.saturating_sub(e.time) > BROADCAST_WINDOW)
        {
            self.retire_oldest();
        }
    }

    fn retire_oldest(&mut self) {
        let Some(e) = self.state.recent.pop_front() else {
            return;
        };
        if let Some(ids) = self.state.by_bytes.get_mut(&e.bytes) {
            ids.pop_front();
            if ids.is_empty() {
                self.state.by_bytes.remove(&e.bytes);
            }
        }
        if e.elsewhere {
            let code = CommandCode(u32::from_le_bytes(
                e.bytes[4..8].try_into().expect("4 bytes"),
            ));
            let c = self.code(code);
            if e.reply {
                c.replies_seen_elsewhere += 1;
            } else if e.others_open {
                c.unsolicited_seen_elsewhere += 1;
            }
        }
    }

    /// Ends the pass: remembered messages are counted, requests still
    /// waiting count as unanswered. Called by [`read`](Facts::read); call
    /// it after the last [`add`](Facts::add).
    pub fn finish(&mut self) {
        if self.state.finished_scan {
            return;
        }
        self.state.finished_scan = true;
        while !self.state.recent.is_empty() {
            self.retire_oldest();
        }
        let mut gone = Vec::new();
        self.pairing().drain(&mut gone);
        self.gave_up(gone);
    }

    /// Codes outside the library's catalogue.
    pub fn unknown_codes(&self) -> impl Iterator<Item = &CodeFacts> {
        self.codes.values().filter(|c| c.code.info().is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conn: u32, ms: u64, direction: Direction, m: Message) -> Record {
        Record {
            time: Duration::from_millis(ms),
            conn,
            entry: Entry::Message {
                direction,
                message: m,
                data_seen: 0,
                data: Vec::new(),
            },
        }
    }

    #[test]
    fn made_up_codes_do_not_grow_the_report_without_bound() {
        let mut f = Facts::new();
        for c in 0..(MAX_CODES as u32 + 100) {
            f.add(&msg(
                1,
                0,
                Direction::ToClient,
                Message::new(CommandCode(c)),
            ));
        }
        f.finish();
        assert_eq!(f.codes.len(), MAX_CODES);
        assert_eq!(f.other_code_messages, 100);
    }

    #[test]
    fn latency_percentiles_stay_within_a_bucket() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.add(Duration::from_micros(us));
        }
        let p50 = l.percentile(50.0).unwrap().as_secs_f64() * 1e6;
        assert!((500.0..=500.0 * 1.26).contains(&p50), "{p50}");
        assert_eq!(l.percentile(100.0), Some(Duration::from_micros(1000)));
        assert_eq!(l.min, Duration::from_micros(1));
        assert!(Latency::default().percentile(50.0).is_none());
    }

    #[test]
    fn late_replies_count_and_a_second_reply_is_unsolicited() {
        use crate::codec::{CommandCode as C, Flags};
        let req = Message::new(C::SYSTEM_STATE_GET).with_flags(Flags::TRIGGER_CALL_BACK);
        let mut f = Facts::new();
        f.add(&Record {
            time: Duration::ZERO,
            conn: 1,
            entry: Entry::Open {
                port: Port::Command,
                peer: "x".into(),
            },
        });
        f.add(&msg(1, 0, Direction::ToInstrument, req));
        f.add(&msg(1, 4000, Direction::ToClient, req));
        f.add(&msg(1, 4001, Direction::ToClient, req));
        f.finish();
        let c = &f.codes[&C::SYSTEM_STATE_GET.0];
        assert_eq!((c.replies, c.late, c.unsolicited), (1, 1, 1));
        assert_eq!(c.latency.max, Duration::from_secs(4));
    }
}
