//! The connection thread: the one reader of the command socket, and the
//! owner of the connection's life after `open()`.
//!
//! It reads and routes messages until the link fails; then, under the
//! connection lock, it ends the link (its requests fail: the instrument will
//! never answer them on another link), and either closes the client or
//! reconnects with the backoff policy, waiting on the condition variable so
//! that `close()` interrupts every wait. Because one thread ends a link and
//! makes the next one, the old link's teardown can never overlap the new
//! link, and `Disconnected` always precedes `Reconnected`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{Conn, Phase};
use super::events::{Event, EventKind};
use super::shared::Shared;
use super::sync::now;
use super::sync::thread::{Builder, JoinHandle};
use super::wire::TcpWire;
use crate::codec::{hex_dump, FrameError, FrameReader};
use crate::{transport, DisconnectReason, Error, ReconnectPolicy};

/// Bytes the reader takes from the socket per read call: whatever has
/// arrived (up to this) comes in one system call, and the messages in it
/// are routed one by one.
const READ_BUFFER: usize = 64 * 1024;

/// A link that breaks sooner than this without delivering a single message
/// counts as a failed attempt: a server that accepts and closes at once
/// must not reset the backoff and the attempt count every time.
pub(crate) const STILLBORN: Duration = Duration::from_secs(2);

/// Makes `stream` the current link (under the lock), with a write side of
/// its own. Returns the read half.
pub(crate) fn install(c: &mut Conn, stream: TcpStream) -> io::Result<TcpStream> {
    let write = TcpWire::new(stream.try_clone()?);
    if transport::CLOSE_POLL.is_some() {
        stream.set_read_timeout(transport::CLOSE_POLL)?;
    }
    c.install(Arc::new(write), stream.peer_addr().ok());
    Ok(stream)
}

pub(crate) fn spawn(shared: &Arc<Shared>, stream: TcpStream) -> io::Result<JoinHandle<()>> {
    let s = shared.clone();
    Builder::new()
        .name("flamingo-conn".into())
        .spawn(move || run(s, stream))
}

fn run(shared: Arc<Shared>, stream: TcpStream) {
    super::shared::mark_thread(shared.id);
    super::shared::mark_reader(shared.id);
    if catch_unwind(AssertUnwindSafe(|| run_links(&shared, stream))).is_err() {
        log::error!("the connection thread panicked; the client is closed");
        shared.shut(
            DisconnectReason::Internal,
            "the client's connection thread failed unexpectedly (a bug: please report it)".into(),
        );
    }
}

fn run_links(shared: &Arc<Shared>, mut stream: TcpStream) {
    let mut delays = None;
    let mut attempt = 0u32;
    loop {
        let started = now();
        let (reason, detail, messages) = read_link(shared, &stream);
        drop(stream);
        let stillborn = messages == 0 && now().saturating_duration_since(started) < STILLBORN;

        let Some(policy) = link_ended(shared, reason, detail) else {
            return;
        };
        if !stillborn || delays.is_none() {
            delays = Some(policy.delays());
            attempt = 0;
        }
        let delays = delays.as_mut().expect("set above");
        match reconnect(shared, delays, &mut attempt) {
            Some(s) => stream = s,
            None => return,
        }
    }
}

/// The reader saw link's end (`reason`, `detail`): ends it under the lock.
/// Subscribers hear of it first, then every request and message on it
/// fails, in the same critical section (a caller at its deadline finds its
/// request there or its outcome in its slot, never neither). Returns the
/// reconnection policy to follow, or `None` when the client is closed.
pub(crate) fn link_ended(
    shared: &Shared,
    reason: DisconnectReason,
    detail: String,
) -> Option<ReconnectPolicy> {
    // The live stream ends with the command link, before anyone hears
    // of the loss (never under the connection lock: it joins a thread).
    shared.close_live();
    let mut wakes = Vec::new();
    let (wire, detail, policy, dropped) = {
        let mut c = shared.conn.lock();
        if c.is_closed() {
            return None; // close() failed everything already
        }
        let (reason, detail) = c.link_end.take().unwrap_or((reason, detail));
        let policy = shared
            .config
            .reconnect
            .clone()
            .or_else(|| (reason == DisconnectReason::Resynchronised).then(resync_policy));
        let detail = format!("connection to {} lost: {detail}", shared.addr);
        c.last_error = Some(detail.clone());
        shared.hub.publish_disconnect(
            Event::connection(
                shared.next_seq(),
                EventKind::Disconnected {
                    reason: detail.clone(),
                },
            ),
            reason,
        );
        let mut dropped = None;
        let wire = if policy.is_some() {
            let err = Error::disconnected(reason, detail.clone());
            let w = c.end_link(&err, &mut wakes);
            c.phase = Phase::Down {
                attempt: 0,
                retry_at: now(),
            };
            w
        } else {
            // Counted in the same step as the phase (see `Shared::shut`).
            shared.counters.teardowns.fetch_add(1, Relaxed);
            dropped = Some(shared.hub.close(
                Event::connection(
                    shared.next_seq(),
                    EventKind::Closed {
                        reason: detail.clone(),
                    },
                ),
                reason,
            ));
            c.close(reason, detail.clone(), &mut wakes).1
        };
        shared.cv.notify_all();
        (wire, detail, policy, dropped)
    };
    drop(dropped);
    if let Some(w) = wire {
        w.shutdown();
    }
    log::warn!("{detail}");
    shared.counters.disconnects.fetch_add(1, Relaxed);
    shared.wake_all(wakes);
    shared.wake();
    policy
}

/// A resynchronisation reconnects even without a configured policy: a few
/// quick attempts.
fn resync_policy() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .initial_delay(Duration::ZERO)
        .max_delay(Duration::from_millis(500))
        .max_attempts(Some(3))
}

/// Reconnects with the policy's delays. `None` when the client was closed
/// or the attempts ran out (the client is then closed).
fn reconnect(
    shared: &Arc<Shared>,
    delays: &mut crate::Delays,
    attempt: &mut u32,
) -> Option<TcpStream> {
    loop {
        let Some(delay) = delays.next() else {
            let detail = {
                let c = shared.conn.lock();
                format!(
                    "gave up reconnecting to {} after {} attempts (last error: {})",
                    shared.addr,
                    *attempt,
                    c.last_error.as_deref().unwrap_or("none")
                )
            };
            shared.shut(DisconnectReason::GaveUp, detail);
            return None;
        };
        *attempt += 1;
        let retry_at = now().checked_add(delay).unwrap_or_else(now);
        {
            let mut c = shared.conn.lock();
            if c.is_closed() {
                return None;
            }
            c.phase = Phase::Down {
                attempt: *attempt,
                retry_at,
            };
            shared.cv.notify_all();
        }
        {
            let mut c = shared.conn.lock();
            while !c.is_closed() && now() < retry_at {
                shared.cv.wait_until(&mut c, retry_at);
            }
            if c.is_closed() {
                return None;
            }
            c.phase = Phase::Connecting { attempt: *attempt };
            shared.cv.notify_all();
        }
        // After the delay, as the attempt starts.
        shared.publish(Event::connection(
            shared.next_seq(),
            EventKind::Reconnecting { attempt: *attempt },
        ));
        shared.counters.reconnect_attempts.fetch_add(1, Relaxed);
        match super::connect::connect(shared, shared.config.connect_timeout) {
            Ok(s) => {
                let installed = {
                    let mut c = shared.conn.lock();
                    if c.is_closed() {
                        return None;
                    }
                    let r = install(&mut c, s);
                    if let Err(e) = &r {
                        c.last_error = Some(e.to_string());
                    }
                    shared.cv.notify_all();
                    r
                };
                let Ok(read) = installed else { continue };
                shared.counters.reconnects.fetch_add(1, Relaxed);
                log::info!("reconnected to {} (attempt {})", shared.addr, *attempt);
                // Before this thread reads the new link, so it precedes the
                // new link's events.
                shared.publish(Event::connection(
                    shared.next_seq(),
                    EventKind::Reconnected { attempt: *attempt },
                ));
                return Some(read);
            }
            Err(e) => {
                log::warn!("reconnect attempt {} failed: {e}", *attempt);
                shared.conn.lock().last_error = Some(e.to_string());
            }
        }
    }
}

/// Retries read timeouts (only set where `CLOSE_POLL` is) until the
/// client closes, so the framing layer never sees them.
///
/// It also notes, after every read, how many messages had been handed to
/// the wire by then, and where in the stream the read ended: a message
/// whose first byte arrived in a read cannot be the reply to a message
/// handed over after that read (a message the instrument sent twice must
/// not answer the next request).
struct Patient<'a> {
    stream: &'a TcpStream,
    shared: &'a Shared,
    reads: Rc<RefCell<Reads>>,
}

/// The recent reads: where each ended in the stream, and the wire order
/// then. Only those not yet consumed by the framer are kept.
#[derive(Default)]
pub(crate) struct Reads {
    total: u64,
    ends: VecDeque<(u64, u64)>,
    /// Messages routed since the last read.
    routed: usize,
}

/// Messages the reader routes from one read before it writes what callers
/// queued meanwhile (it also does before every read).
const FLUSH_EVERY: usize = 16;

impl Reads {
    /// Notes a read of `n` bytes made when `wire_seq` messages had been
    /// handed to the wire.
    pub(crate) fn note(&mut self, n: usize, wire_seq: u64) {
        self.total += n as u64;
        self.routed = 0;
        let end = self.total;
        self.ends.push_back((end, wire_seq));
    }

    /// Counts a message routed; true every [`FLUSH_EVERY`] since the last
    /// read, when the reader writes what is queued.
    pub(crate) fn routed(&mut self) -> bool {
        self.routed += 1;
        self.routed.is_multiple_of(FLUSH_EVERY)
    }

    /// The wire order noted by the read that brought stream byte `pos`.
    pub(crate) fn written_before(&mut self, pos: u64) -> u64 {
        while self.ends.len() > 1 && self.ends.front().is_some_and(|&(end, _)| end <= pos) {
            self.ends.pop_front();
        }
        self.ends.front().map_or(0, |&(_, w)| w)
    }
}

impl Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.shared.end_reader_batch();
        loop {
            match (&mut &*self.stream).read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && !self.shared.conn.lock().is_closed() => {}
                Ok(n) => {
                    if n > 0 {
                        let w = self.shared.conn.lock().read_returned();
                        self.reads.borrow_mut().note(n, w);
                    }
                    return Ok(n);
                }
                other => return other,
            }
        }
    }
}

/// Counts the bytes the framer takes.
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) pos: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads and routes messages until the link fails. Returns why, and how
/// many messages it carried.
fn read_link(shared: &Shared, stream: &TcpStream) -> (DisconnectReason, String, u64) {
    let reads = Rc::new(RefCell::new(Reads::default()));
    let patient = Patient {
        stream,
        shared,
        reads: reads.clone(),
    };
    let mut stream = Counted {
        inner: BufReader::with_capacity(READ_BUFFER, patient),
        pos: 0,
    };
    let mut framer = FrameReader::new(shared.config.additional_data_limit);
    let mut seen = framer.stats();
    loop {
        let start = stream.pos;
        let skipped = framer.stats().bytes_skipped;
        let msg = match framer.read_message(&mut stream) {
            Ok(m) => m,
            Err(e) => return (end_reason(&e), e.to_string(), framer.stats().messages),
        };
        let now = framer.stats();
        if now.bytes_skipped != seen.bytes_skipped {
            shared
                .counters
                .bytes_skipped
                .fetch_add(now.bytes_skipped - seen.bytes_skipped, Relaxed);
            shared
                .counters
                .resyncs
                .fetch_add(now.resyncs - seen.resyncs, Relaxed);
        }
        seen = now;
        let received_at = super::sync::now();
        let seq = shared.next_seq();
        shared.counters.messages_received.fetch_add(1, Relaxed);
        let mut data = Vec::new();
        let mut failure = None;
        if msg.additional_data_len > 0 {
            match framer.read_additional(&mut stream, msg.additional_data_len, &mut data) {
                Ok(()) => {}
                Err(FrameError::TooLarge { size, limit }) => {
                    shared.counters.oversized.fetch_add(1, Relaxed);
                    log::warn!(
                        "{} announced {size} bytes of additional data, over the {limit}-byte limit; skipping it",
                        msg.code
                    );
                    failure = Some(Error::TooLarge {
                        what: "additional data",
                        size: size.into(),
                        limit: limit.into(),
                    });
                }
                Err(e) => return (end_reason(&e), e.to_string(), framer.stats().messages),
            }
        }
        if log::log_enabled!(log::Level::Debug) {
            log::debug!(
                "<- #{seq} {} status={} int0={} int1={} int2={} double={} data={}B",
                msg.code,
                msg.status,
                msg.int32_data0,
                msg.int32_data1,
                msg.int32_data2,
                msg.double_data,
                data.len()
            );
            log::trace!("<- #{seq} bytes:\n{}", hex_dump(&msg.to_bytes()));
        }
        // The message began after the bytes skipped to find it.
        let first = start + (framer.stats().bytes_skipped - skipped);
        let written_before = reads.borrow_mut().written_before(first);
        shared.route(msg, data, seq, received_at, failure, written_before);
        if reads.borrow_mut().routed() {
            shared.flush_routed();
        }
    }
}

fn end_reason(e: &FrameError) -> DisconnectReason {
    match e {
        FrameError::Closed
        | FrameError::EofMidMessage { .. }
        | FrameError::Partial { .. }
        | FrameError::Io(_) => DisconnectReason::ClosedByPeer,
        FrameError::TooLarge { .. } => DisconnectReason::Protocol,
    }
}
