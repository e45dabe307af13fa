//! Command connections: the accept loop, one reader and one writer thread
//! per connection.
//!
//! The reader blocks on its socket only; it hands every reply to the writer
//! through an unbounded queue with the time it is due. The writer keeps
//! not-yet-due replies in a heap (ordered by due time, then arrival), so a
//! delayed reply never holds back the others, and applies the write-side
//! faults.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::faults::Rng;
use super::handler;
use super::shared::{ConnEntry, Shared};
use super::Received;
use crate::codec::{FrameError, FrameReader, Message, MESSAGE_LEN};
use crate::transport;

/// Whether a queued message answers a request or is unsolicited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Reply,
    Event,
    /// Replay: only the additional data, as raw bytes (recorded garbage).
    Raw,
    /// Replay: close the connection (the instrument closed it).
    Close,
}

/// A message queued for a connection's writer.
pub(crate) struct Out {
    pub msg: Message,
    pub data: Option<Arc<Vec<u8>>>,
    /// When to write it (not before).
    pub due: Instant,
    pub kind: Kind,
}

/// Accepts command connections until the simulator stops.
pub(crate) fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    let mut next_id = 1u64;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if sh.is_shutting_down() {
                    return;
                }
                log::warn!("sim: accept on the command port failed: {e}");
                if !sh.sleep(Duration::from_millis(20)) {
                    return;
                }
                continue;
            }
        };
        if sh.is_shutting_down() {
            return;
        }
        let id = next_id;
        next_id += 1;
        log::info!("sim: client {id} connected from {peer}");
        if let Err(e) = start_connection(&sh, id, stream) {
            log::warn!("sim: cannot serve command connection {id}: {e}");
        }
    }
}

fn start_connection(sh: &Arc<Shared>, id: u64, stream: TcpStream) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let writer_stream = stream.try_clone()?;
    let registry_stream = stream.try_clone()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    {
        let mut conns = sh.conns.lock();
        if sh.is_shutting_down() {
            return Ok(());
        }
        conns.insert(
            id,
            ConnEntry {
                stream: registry_stream,
                tx: Some(tx.clone()),
            },
        );
        sh.count(|c| c.connections += 1);
        if let Some(p) = &sh.replay {
            p.command_opened(id, tx.clone());
        }
        // Spawned under the registry lock so `stop` sees either both threads
        // or no connection at all.
        let sh_r = sh.clone();
        let sh_w = sh.clone();
        let ok = sh.spawn(&format!("cmd{id}-w"), move || {
            Writer::new(sh_w, id, writer_stream).run(rx)
        });
        let ok = ok.and_then(|ok| {
            if ok {
                sh.spawn(&format!("cmd{id}-r"), move || {
                    read_loop(sh_r, id, stream, tx)
                })
            } else {
                Ok(false)
            }
        });
        if !matches!(ok, Ok(true)) {
            if let Some(c) = conns.remove(&id) {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
            ok?;
        }
    }
    Ok(())
}

/// Retries the read timeouts of [`CLOSE_POLL`](crate::transport::CLOSE_POLL)
/// (Windows only; see there) until the simulator is stopping. Elsewhere the
/// reader blocks with no timeout and a shutdown wakes it.
struct StopAware<'a> {
    stream: &'a TcpStream,
    sh: &'a Shared,
}

impl std::io::Read for StopAware<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match (&mut &*self.stream).read(buf) {
                Err(e) if transport::is_poll_timeout(&e) && !self.sh.is_shutting_down() => {}
                other => return other,
            }
        }
    }
}

fn read_loop(sh: Arc<Shared>, id: u64, stream: TcpStream, tx: crossbeam_channel::Sender<Out>) {
    if transport::CLOSE_POLL.is_some() {
        let _ = stream.set_read_timeout(transport::CLOSE_POLL);
    }
    let mut stream = StopAware {
        stream: &stream,
        sh: &sh,
    };
    let conn = handler::Conn::new(id, tx);
    let mut reader = FrameReader::new(sh.cfg.max_additional_data);
    let mut data = Vec::new();
    let mut skipped = 0;
    loop {
        let msg = match reader.read_message(&mut stream) {
            Ok(m) => m,
            Err(FrameError::Closed) => {
                log::info!("sim: client {id} disconnected");
                break;
            }
            Err(e) => {
                if !sh.is_shutting_down() {
                    log::debug!("sim: command connection {id}: {e}");
                }
                break;
            }
        };
        let s = reader.stats().bytes_skipped;
        if s != skipped {
            skipped = s;
            sh.count(|c| c.protocol_errors += 1);
        }
        match reader.read_additional(&mut stream, msg.additional_data_len, &mut data) {
            Ok(()) => {}
            Err(e) => {
                if matches!(e, FrameError::TooLarge { .. }) {
                    sh.count(|c| c.protocol_errors += 1);
                }
                log::warn!("sim: command connection {id}: {e}; closing it");
                break;
            }
        }
        let data = std::mem::take(&mut data);
        log::info!("sim: client {id}: {}", describe(&msg, data.len()));
        log::debug!("sim: conn {id} received {msg:?} (+{} bytes)", data.len());
        sh.count(|c| {
            c.messages_received += 1;
            c.additional_bytes_received += data.len() as u64;
        });
        let seq = sh.record(Received {
            message: msg,
            data: data.clone(),
            at: Instant::now(),
            connection: id,
        });
        match &sh.replay {
            Some(p) => p.request(id, msg),
            None => handler::handle(&sh, &conn, msg, data),
        }
        sh.handled(seq);
        let pause = sh.faults.lock().stop_reading.take();
        if let Some(d) = pause {
            sh.count_fault(|c| c.stop_reading_pauses += 1);
            log::debug!("sim: conn {id} stops reading for {d:?}");
            if !sh.sleep(d) {
                break;
            }
        }
    }
    sh.reader_done(id);
    if let Some(p) = &sh.replay {
        p.command_closed(id);
    }
}

struct Pending {
    due: Instant,
    seq: u64,
    out: Out,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed, so the max-heap pops the earliest (due, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

struct Writer {
    sh: Arc<Shared>,
    id: u64,
    stream: TcpStream,
    rng: Rng,
    /// Messages left before `close_after_messages` closes the connection.
    countdown: Option<u64>,
}

/// Why the writer stops.
enum Stop {
    /// A fault closed the connection.
    Fault,
    Io(io::Error),
    Shutdown,
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

impl Writer {
    fn new(sh: Arc<Shared>, id: u64, stream: TcpStream) -> Writer {
        let rng = Rng::new(sh.cfg.seed.wrapping_mul(0x1000_0001).wrapping_add(id));
        Writer {
            sh,
            id,
            stream,
            rng,
            countdown: None,
        }
    }

    fn run(mut self, rx: Receiver<Out>) {
        let mut heap = BinaryHeap::new();
        let mut seq = 0u64;
        let end = 'outer: loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|p: &Pending| p.due <= now) {
                let p = heap.pop().expect("peeked");
                if let Err(stop) = self.write_out(p.out) {
                    break 'outer stop;
                }
            }
            let timer = match heap.peek() {
                Some(p) => crossbeam_channel::at(p.due),
                None => crossbeam_channel::never(),
            };
            select! {
                recv(rx) -> m => match m {
                    Ok(out) => {
                        seq += 1;
                        heap.push(Pending { due: out.due, seq, out });
                    }
                    // The reader ended and the connection left the registry.
                    Err(_) => break Stop::Shutdown,
                },
                recv(self.sh.shutdown_rx) -> _ => break Stop::Shutdown,
                recv(timer) -> _ => {}
            }
        };
        match end {
            Stop::Fault => log::debug!("sim: conn {} closed by a fault", self.id),
            Stop::Io(e) => log::debug!("sim: conn {} write failed: {e}", self.id),
            Stop::Shutdown => {}
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        self.sh.unregister(self.id);
    }

    /// Writes one message (and its additional data) with the write faults.
    fn write_out(&mut self, out: Out) -> Result<(), Stop> {
        match out.kind {
            Kind::Close => return Err(Stop::Fault),
            Kind::Raw => {
                let bytes = out.data.as_deref().map_or(&[][..], |d| d.as_slice());
                return Ok(self.write_bytes(bytes, None)?);
            }
            Kind::Reply | Kind::Event => {}
        }
        let mut msg = out.msg;
        let mut data = out.data;
        let reply = out.kind == Kind::Reply;
        let (fragment, garbage, trickle, cut, absurd) = {
            let mut f = self.sh.faults.lock();
            if let Some(n) = f.close_after_messages.take() {
                log::debug!("sim: conn {} will close after {n} more messages", self.id);
                self.countdown = Some(n);
            }
            let cut = reply && std::mem::take(&mut f.close_mid_message);
            let absurd = reply && f.absurd_additional_len == Some(msg.code);
            (
                f.fragment_writes.filter(|&n| n > 0),
                f.garbage_between.filter(|&n| n > 0),
                f.trickle_additional.filter(|t| t.0 > 0),
                cut,
                absurd,
            )
        };
        if self.countdown == Some(0) {
            self.sh.count_fault(|c| c.closed_after_messages += 1);
            return Err(Stop::Fault);
        }
        if let Some(n) = garbage {
            let k = self.rng.one_to(n);
            let junk: Vec<u8> = (0..k).map(|_| self.rng.garbage_byte()).collect();
            self.write_bytes(&junk, fragment)?;
            self.sh.count_fault(|c| {
                c.garbage_insertions += 1;
                c.garbage_bytes += k as u64;
            });
        }
        if absurd {
            msg.additional_data_len = 0x8000_0000;
            data = None;
            self.sh.count_fault(|c| c.absurd_lengths += 1);
        }
        let bytes = msg.to_bytes();
        if cut {
            self.write_bytes(&bytes[..MESSAGE_LEN / 2], None)?;
            self.sh.count_fault(|c| c.closed_mid_message += 1);
            return Err(Stop::Fault);
        }
        // Counted before the bytes go out, so a client that has read a
        // message always finds it counted.
        self.sh.count(|c| {
            if reply {
                c.replies_sent += 1;
            } else {
                c.events_sent += 1;
            }
            if fragment.is_some() {
                c.faults_injected += 1;
                c.fragmented_messages += 1;
            }
        });
        self.write_bytes(&bytes, fragment)?;
        if let Some(d) = data.as_deref().filter(|d| !d.is_empty()) {
            match trickle {
                Some((n, pause)) => {
                    self.sh.count_fault(|c| c.trickled_payloads += 1);
                    for (i, chunk) in d.chunks(n).enumerate() {
                        if i > 0 && !self.sh.sleep(pause) {
                            return Err(Stop::Shutdown);
                        }
                        self.write_bytes(chunk, fragment)?;
                    }
                }
                None => self.write_bytes(d, fragment)?,
            }
        }
        if let Some(n) = self.countdown.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.sh.count_fault(|c| c.closed_after_messages += 1);
                return Err(Stop::Fault);
            }
        }
        Ok(())
    }

    /// Writes bytes, in random fragments if asked, timing every write.
    fn write_bytes(&mut self, bytes: &[u8], fragment: Option<usize>) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match fragment {
                Some(max) => self.rng.one_to(max).min(rest.len()),
                None => rest.len(),
            };
            let t = Instant::now();
            self.stream.write_all(&rest[..n])?;
            self.stream.flush()?;
            let blocked = t.elapsed();
            self.sh.count(|c| {
                c.bytes_sent += n as u64;
                c.max_write_block = c.max_write_block.max(blocked);
            });
            rest = &rest[n..];
        }
        Ok(())
    }
}

/// A command in a few words for the log: its name and the fields it uses.
fn describe(msg: &crate::codec::Message, data: usize) -> String {
    let mut s = msg.code.to_string();
    let mut fields = Vec::new();
    if msg.int32_data0 != 0 {
        fields.push(format!("int32Data0 {}", msg.int32_data0));
    }
    if msg.int32_data1 != 0 {
        fields.push(format!("int32Data1 {}", msg.int32_data1));
    }
    if msg.double_data != 0.0 {
        fields.push(format!("doubleData {}", msg.double_data));
    }
    if data > 0 {
        fields.push(format!("{data} bytes of data"));
    }
    if !fields.is_empty() {
        s.push_str(&format!(" ({})", fields.join(", ")));
    }
    s
}
