//! Serving a recording: the simulator answers with what the instrument
//! answered when the recording was made.
//!
//! The player thread reads the recording as it goes (a bounded window of
//! records, never the whole file) and plays each recorded connection on a
//! connection of the replay: the n-th command (live) connection the replay
//! accepts plays the n-th recorded command (live) connection.
//!
//! - A request from a client is matched with the first recorded request of
//!   its connection that has the same code and key (the code, and
//!   `int32Data0` for codes matched by it: stage axis, laser index) and has
//!   not been matched yet; its recorded replies are sent after the
//!   recorded delay (or at once with [`ReplayPace::Fast`]). A request the
//!   recording cannot answer is listed in the [`ReplayReport`].
//! - Every other message from the instrument (unsolicited events), live
//!   frame, garbage run and connection close is tied to the latest thing
//!   the clients had sent before it (on any connection) or, if later, to
//!   its connection's opening, and is sent that long after the replay
//!   reaches the same point. Frames carry the recorded header and the
//!   recorded pixels, enlarged (nearest neighbour) when they were
//!   subsampled, or the simulator's test pattern when none were recorded.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use super::conn::Out;
use super::pattern::render_frame;
use super::replay_engine::Engine;
use super::shared::Shared;
use crate::codec::{CommandCode, LiveHeader, Message};
use crate::record::RecordingReader;

/// How fast recorded messages are played.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayPace {
    /// With the recorded delays: a reply that took 40 ms takes 40 ms, an
    /// event 2 s after a move comes 2 s after the replayed move.
    #[default]
    Recorded,
    /// Everything as soon as what it follows has happened.
    Fast,
}

/// How a replay is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Command port (live port = port + 1); 0 picks a free pair. Default 0.
    pub port: u16,
    /// Pace. Default [`ReplayPace::Recorded`].
    pub pace: ReplayPace,
    /// Records of the recording held at once, at most. Requests are matched
    /// within this window. Default 4096.
    pub window_records: usize,
    /// Bytes of recorded payload (additional data, pixels) held at once, at
    /// most. Default 32 MiB.
    pub window_bytes: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            port: 0,
            pace: ReplayPace::Recorded,
            window_records: 4096,
            window_bytes: 32 * 1024 * 1024,
        }
    }
}

impl ReplayConfig {
    /// Sets [`port`](ReplayConfig::port).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Sets [`pace`](ReplayConfig::pace).
    #[must_use]
    pub fn pace(mut self, pace: ReplayPace) -> Self {
        self.pace = pace;
        self
    }
    /// Sets [`window_records`](ReplayConfig::window_records) (at least 16).
    #[must_use]
    pub fn window_records(mut self, records: usize) -> Self {
        self.window_records = records.max(16);
        self
    }
    /// Sets [`window_bytes`](ReplayConfig::window_bytes).
    #[must_use]
    pub fn window_bytes(mut self, bytes: usize) -> Self {
        self.window_bytes = bytes;
        self
    }
}

/// A request the recording could not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unanswerable {
    /// The replay's command connection (1 for the first accepted).
    pub connection: u64,
    /// The request's code.
    pub code: CommandCode,
    /// Its `int32Data0`.
    pub int32_data0: i32,
    /// When it arrived, since the replay started.
    pub at: Duration,
    /// Why it could not be answered.
    pub reason: String,
}

impl fmt::Display for Unanswerable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3} s  connection {}: {} (int32Data0 {}): {}",
            self.at.as_secs_f64(),
            self.connection,
            self.code,
            self.int32_data0,
            self.reason
        )
    }
}

/// What a replay has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Requests received from the replay's clients.
    pub requests: u64,
    /// Requests matched with a recorded request.
    pub answered: u64,
    /// Requests the recording could not answer (total).
    pub unanswerable_total: u64,
    /// The first 1000 of them.
    pub unanswerable: Vec<Unanswerable>,
    /// Recorded requests the replay's clients never sent: their connection
    /// closed first, or they were given up to let the replay read on (what
    /// they caused was not sent).
    pub skipped_requests: u64,
    /// Recorded replies sent.
    pub replies_sent: u64,
    /// Recorded unsolicited messages sent.
    pub events_sent: u64,
    /// Recorded live frames sent.
    pub frames_sent: u64,
    /// Recorded messages, frames and closes not sent: what caused them was
    /// never replayed, or their connection had closed.
    pub not_sent: u64,
    /// Records read from the recording so far.
    pub records_read: u64,
    /// The whole recording has been played.
    pub finished: bool,
    /// Why reading the recording stopped early (truncated or damaged).
    pub problem: Option<String>,
}

/// Unanswerable requests listed in a report, at most.
pub(crate) const MAX_LISTED: usize = 1000;

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replayed {} of {} requests; sent {} replies, {} events, {} frames",
            self.answered, self.requests, self.replies_sent, self.events_sent, self.frames_sent
        )?;
        if self.not_sent > 0 {
            write!(
                f,
                "; {} recorded messages not sent (what caused them was not replayed)",
                self.not_sent
            )?;
        }
        if self.skipped_requests > 0 {
            write!(
                f,
                "; {} recorded requests were never sent by the clients",
                self.skipped_requests
            )?;
        }
        write!(
            f,
            "; the recording was {}",
            if self.finished {
                "played to its end"
            } else {
                "not played to its end"
            }
        )?;
        if let Some(p) = &self.problem {
            write!(f, "\nproblem: {p}")?;
        }
        if self.unanswerable_total > 0 {
            write!(
                f,
                "\n{} requests could not be answered from the recording:",
                self.unanswerable_total
            )?;
            for u in &self.unanswerable {
                write!(f, "\n  {u}")?;
            }
            if self.unanswerable_total > self.unanswerable.len() as u64 {
                write!(
                    f,
                    "\n  ... and {} more",
                    self.unanswerable_total - self.unanswerable.len() as u64
                )?;
            }
        }
        Ok(())
    }
}

/// What the connection threads tell the player.
pub(crate) enum Input {
    CommandOpened(u64, Sender<Out>, Instant),
    Request(u64, Message, Instant),
    CommandClosed(u64),
    LiveOpened(u64, Sender<LiveOut>, Instant),
    LiveClosed(u64),
}

/// What the player asks a live connection's writer to send.
pub(crate) enum LiveOut {
    Frame {
        header: LiveHeader,
        subsample: u16,
        pixels: Vec<u8>,
    },
    Raw(Vec<u8>),
    Close,
}

/// The replay's handle, shared by the simulator's threads.
pub(crate) struct Player {
    tx: Sender<Input>,
    pub(crate) report: Mutex<ReplayReport>,
    pub(crate) finished_cv: Condvar,
    live_sockets: Mutex<Vec<TcpStream>>,
    next_live: Mutex<u64>,
    pub(crate) started: Instant,
}

/// Frames queued per live connection, at most.
pub(crate) const LIVE_QUEUE: usize = 4;

impl Player {
    /// The handle and the receiving end for [`run`].
    pub(crate) fn new() -> (Arc<Player>, Receiver<Input>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let p = Player {
            tx,
            report: Mutex::new(ReplayReport::default()),
            finished_cv: Condvar::new(),
            live_sockets: Mutex::new(Vec::new()),
            next_live: Mutex::new(1),
            started: Instant::now(),
        };
        (Arc::new(p), rx)
    }

    pub(crate) fn command_opened(&self, id: u64, tx: Sender<Out>) {
        let _ = self.tx.send(Input::CommandOpened(id, tx, Instant::now()));
    }

    pub(crate) fn request(&self, id: u64, msg: Message) {
        let _ = self.tx.send(Input::Request(id, msg, Instant::now()));
    }

    pub(crate) fn command_closed(&self, id: u64) {
        let _ = self.tx.send(Input::CommandClosed(id));
    }

    /// A live client connected: starts its writer.
    pub(crate) fn live_opened(self: &Arc<Self>, sh: &Arc<Shared>, stream: TcpStream) {
        let id = {
            let mut n = self.next_live.lock();
            let id = *n;
            *n += 1;
            id
        };
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        self.live_sockets.lock().push(clone);
        let (tx, rx) = crossbeam_channel::bounded(LIVE_QUEUE);
        let (sh2, me) = (sh.clone(), self.clone());
        let started = sh.spawn(&format!("replay-live{id}"), move || {
            live_writer(&sh2, stream, rx);
            let _ = me.tx.send(Input::LiveClosed(id));
        });
        if matches!(started, Ok(true)) {
            let _ = self.tx.send(Input::LiveOpened(id, tx, Instant::now()));
        } else if let Some(s) = self.live_sockets.lock().pop() {
            // Not served (the simulator is stopping).
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Closes the live connections (the simulator is stopping).
    pub(crate) fn shutdown(&self) {
        for s in self.live_sockets.lock().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn snapshot(&self) -> ReplayReport {
        self.report.lock().clone()
    }

    /// Waits until the recording has been played to its end.
    pub(crate) fn wait_finished(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut r = self.report.lock();
        while !r.finished {
            match deadline {
                Some(d) => {
                    if self.finished_cv.wait_until(&mut r, d).timed_out() {
                        return r.finished;
                    }
                }
                None => self.finished_cv.wait(&mut r),
            }
        }
        true
    }
}

/// The player thread: reads the recording and plays it until the
/// simulator stops.
pub(crate) fn run<R: Read>(
    sh: Arc<Shared>,
    player: Arc<Player>,
    rx: Receiver<Input>,
    reader: RecordingReader<R>,
    config: ReplayConfig,
) {
    let mut engine = Engine::new(reader, config, player.clone());
    loop {
        let wake = engine.step(Instant::now());
        let timer = match wake {
            Some(t) => crossbeam_channel::at(t),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(rx) -> m => match m {
                Ok(input) => {
                    engine.input(input);
                    // Take whatever else is waiting before the next step.
                    while let Ok(more) = rx.try_recv() {
                        engine.input(more);
                    }
                }
                Err(_) => break,
            },
            recv(sh.shutdown_rx) -> _ => break,
            recv(timer) -> _ => {}
        }
    }
    engine.stop();
}

/// Writes what the player sends to one live client.
fn live_writer(sh: &Shared, mut stream: TcpStream, rx: Receiver<LiveOut>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let out = select! {
            recv(rx) -> m => match m {
                Ok(out) => out,
                Err(_) => break,
            },
            recv(sh.shutdown_rx) -> _ => break,
        };
        let written = match out {
            LiveOut::Frame {
                header,
                subsample,
                pixels,
            } => {
                pixels_for(&header, subsample, &pixels, &mut buf);
                sh.count(|c| c.frames_sent += 1);
                stream
                    .write_all(&header.to_bytes())
                    .and_then(|()| stream.write_all(&buf))
            }
            LiveOut::Raw(bytes) => stream.write_all(&bytes),
            LiveOut::Close => break,
        };
        if let Err(e) = written {
            log::debug!("sim: replay live client write failed: {e}");
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// The pixels to send with a recorded frame: the recorded ones enlarged to
/// full size, or the test pattern of the frame's number.
fn pixels_for(h: &LiveHeader, s: u16, pixels: &[u8], out: &mut Vec<u8>) {
    let (w, ht) = (h.width as usize, h.height as usize);
    if s == 0 || pixels.is_empty() {
        render_frame(h.width, h.height, h.frame_number, out);
        return;
    }
    let s = usize::from(s);
    let sub_w = w.div_ceil(s);
    out.clear();
    out.resize(w * ht * 2, 0);
    for y in 0..ht {
        let src_row = (y / s) * sub_w;
        let row = &mut out[y * w * 2..(y + 1) * w * 2];
        for x in 0..w {
            let i = (src_row + x / s) * 2;
            if let Some(p) = pixels.get(i..i + 2) {
                row[x * 2..x * 2 + 2].copy_from_slice(p);
            }
        }
    }
}

/// A read error as an `io::Error` for [`Simulator::replay_file`](super::Simulator::replay_file).
pub(crate) fn open_error(e: crate::record::RecordError) -> io::Error {
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enlarged_pixels() {
        let h = LiveHeader {
            image_size: 3 * 3 * 2,
            width: 3,
            height: 3,
            ..Default::default()
        };
        // 2 x 2 subsampled pixels: 1, 2 / 3, 4.
        let sub = [1u8, 0, 2, 0, 3, 0, 4, 0];
        let mut out = Vec::new();
        pixels_for(&h, 2, &sub, &mut out);
        let px: Vec<u8> = out.chunks(2).map(|p| p[0]).collect();
        assert_eq!(px, vec![1, 1, 2, 1, 1, 2, 3, 3, 4]);
        pixels_for(&h, 0, &[], &mut out);
        assert_eq!(out.len(), 18);
    }
}
