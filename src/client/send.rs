//! The send path: requests are queued under the connection lock and written
//! by whichever thread holds the writer role, several per write call.
//!
//! A caller of a blocking request takes the writer role itself when nobody
//! holds it, so an uncontended request costs one write system call on the
//! caller's thread and no hand-off. While it writes, other callers queue
//! their requests; it writes those too, in one call per batch (write
//! combining), before giving the role up. A caller that must not block (a
//! GUI's `submit`) only queues: the connection's sender thread writes for
//! it. The sender thread also writes what waited for a reply key to free,
//! or for the link to return, and resets a link whose replies can no
//! longer be matched.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, Delivered, Key, Outcome, Queued, WriterRole};
use super::deadline::Deadline;
use super::shared::{shutdown, Shared};
use super::slot;
use crate::codec::{hex_dump, Message, MESSAGE_LEN};
use crate::{DisconnectReason, Error, Result};

/// Bytes written per batch, about (a single larger message goes alone).
const BATCH_BYTES: usize = 64 * 1024;

/// Batches a caller writes for others before handing the rest to the
/// sender thread, so that its own reply is not kept waiting.
const CALLER_BATCHES: usize = 4;

/// A request or message handed to the send path.
pub(crate) struct Started {
    pub id: u64,
    pub key: Key,
    pub rx: slot::Receiver<Outcome>,
}

impl Shared {
    /// Queues `msg` (and `data`) for writing by `deadline`. With `direct`,
    /// the calling thread writes it (and whatever else is queued) when no
    /// other thread is writing; otherwise it returns at once and the sender
    /// thread writes it.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        msg: &Message,
        data: &[u8],
        deadline: Deadline,
        timeout: Duration,
        expects_reply: bool,
        direct: bool,
    ) -> Result<Started> {
        let mut bytes = [0u8; MESSAGE_LEN];
        msg.encode(&mut bytes);
        let key = self.key(msg);
        let (tx, rx) = slot::channel();
        let (id, role) = {
            let mut c = self.conn.lock();
            if let Some(e) = c.down_error() {
                return Err(e);
            }
            let id = c.next_id();
            c.enqueue(Queued {
                id,
                key,
                bytes,
                data: (!data.is_empty()).then(|| Arc::<[u8]>::from(data)),
                expects_reply,
                int0: msg.int32_data0,
                check_echo: self.checks_echo(msg),
                deadline,
                timeout,
                what: msg.code,
                waiter: Some(tx),
                write_attempted: false,
                direct,
            });
            let role = if direct { c.claim_writer() } else { None };
            if role.is_none() && !c.writer_busy && c.writable() {
                self.cv.notify_all(); // the sender thread writes it
            }
            (id, role)
        };
        if log::log_enabled!(log::Level::Debug) {
            log::debug!(
                "-> {} status={} int0={} int1={} int2={} flags={} double={} data={}B",
                msg.code,
                msg.status,
                msg.int32_data0,
                msg.int32_data1,
                msg.int32_data2,
                msg.flags,
                msg.double_data,
                data.len()
            );
            log::trace!("-> bytes:\n{}", hex_dump(&bytes));
        }
        if let Some(role) = role {
            self.write_batches(role, deadline, CALLER_BATCHES);
        }
        Ok(Started { id, key, rx })
    }

    /// Holds the writer role: writes batches until the queue has nothing
    /// writable, `rounds` batches were written, or a write failed. A write
    /// never runs past `cap` (the calling thread's own deadline).
    pub(crate) fn write_batches(&self, role: WriterRole, cap: Deadline, rounds: usize) {
        let mut buf = std::mem::take(&mut self.conn.lock().batch_buf);
        let mut sndtimeo = None;
        for round in 0.. {
            let (deadline, n, tail, expired) = {
                let mut c = self.conn.lock();
                if round == 0 {
                    sndtimeo = c.write_timeout.take().flatten();
                }
                if round >= rounds || c.link != role.link || !c.writable() {
                    self.release(&mut c, buf, sndtimeo);
                    return;
                }
                let (deadline, tail, expired) = c.take_batch(&mut buf, BATCH_BYTES);
                let n = c.batch_len();
                if n == 0 {
                    self.release(&mut c, buf, sndtimeo);
                    drop(c);
                    self.tell(expired);
                    return;
                }
                (deadline, n, tail, expired)
            };
            self.tell(expired);
            let mut written = 0;
            let until = deadline.min(cap);
            let res =
                write_by(&role.stream, &buf, &mut written, until, &mut sndtimeo).and_then(|()| {
                    match &tail {
                        Some(t) => write_by(&role.stream, t, &mut written, until, &mut sndtimeo),
                        None => Ok(()),
                    }
                });
            let mut c = self.conn.lock();
            match res {
                Ok(()) => {
                    let done = c.batch_written(role.link);
                    drop(c);
                    self.counters.messages_sent.fetch_add(n as u64, Relaxed);
                    if !done.is_empty() {
                        for w in done {
                            w.send(Ok(Delivered::Written));
                        }
                        self.wake();
                    }
                }
                Err(e) if written == 0 && is_timeout(&e) => {
                    // Nothing left: the entries wait for a later write.
                    c.batch_unsent();
                    self.release(&mut c, buf, sndtimeo);
                    return;
                }
                Err(e) => {
                    let total = buf.len() + tail.as_ref().map_or(0, |t| t.len());
                    let detail = if is_timeout(&e) {
                        format!(
                            "a write timed out with {written} of {total} bytes sent (the instrument is not reading); the connection is reset because a partly sent message cannot be taken back"
                        )
                    } else {
                        format!("writing to the instrument failed after {written} of {total} bytes: {e}")
                    };
                    let err = Error::disconnected(DisconnectReason::SendFailed, detail.clone());
                    let failed = c.batch_broken(&err);
                    if c.link == role.link && c.link_end.is_none() {
                        c.link_end = Some((DisconnectReason::SendFailed, detail.clone()));
                        c.last_error = Some(detail);
                    }
                    self.release(&mut c, buf, sndtimeo);
                    drop(c);
                    // The reader sees the link end and reports it.
                    shutdown(&role.stream);
                    self.tell(failed);
                    return;
                }
            }
        }
    }

    /// Called by a blocking caller woken with its reply: if the reply let a
    /// queued request go (its key is free now), this thread writes it, as
    /// it is awake anyway; the sender thread would cost another wake-up.
    /// Never writes past `cap`, the caller's own deadline.
    pub(crate) fn hand_off(&self, cap: Deadline) {
        let role = {
            let mut c = self.conn.lock();
            if c.has_eligible() {
                c.claim_writer()
            } else {
                None
            }
        };
        if let Some(role) = role {
            self.write_batches(role, cap, 1);
        }
    }

    /// Gives the writer role up (under the lock, so a request queued
    /// meanwhile is never stranded: the sender thread is woken for it).
    fn release(&self, c: &mut Conn, buf: Vec<u8>, sndtimeo: Option<Duration>) {
        c.writer_busy = false;
        c.batch_buf = buf;
        c.write_timeout = Some(sndtimeo);
        if c.writable() && c.has_eligible() {
            self.cv.notify_all();
        }
    }
}

/// The sender thread: writes what callers queued without writing it
/// themselves, and resets a link whose replies can no longer be matched.
/// Waits on the connection's condition variable; uses no CPU when idle.
pub(crate) fn sender_loop(shared: Arc<Shared>) {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| send_queued(&shared)));
    if run.is_err() {
        log::error!("the sender thread panicked; the client is closed");
        shared.shut(
            DisconnectReason::Internal,
            "the client's sender thread failed unexpectedly (a bug: please report it)".into(),
        );
    }
}

fn send_queued(shared: &Arc<Shared>) {
    let window = shared.config.late_reply_window;
    let max_unanswered = shared.config.max_unanswered;
    loop {
        let role = {
            let mut c = shared.conn.lock();
            loop {
                if c.is_closed() {
                    return;
                }
                let resync_at = c.resync_due(window, max_unanswered);
                if resync_at.is_some_and(|t| t <= Instant::now()) {
                    resync(shared, &mut c);
                    continue;
                }
                if c.has_eligible() {
                    if let Some(role) = c.claim_writer() {
                        break role;
                    }
                }
                let until = resync_at.map_or(Deadline::NEVER, Deadline::at);
                shared.cv.wait_until(&mut c, until.wait_slice());
            }
        };
        shared.write_batches(role, Deadline::NEVER, usize::MAX);
    }
}

/// Resets the current link: a request stayed unanswered past the window.
/// The reader sees the socket end and reconnects (whatever the policy).
fn resync(shared: &Shared, c: &mut Conn) {
    c.resync_requested = true;
    let detail = format!(
        "a request stayed unanswered for more than {:.1} s after its caller gave up (or too many did), so later replies could not be matched safely; the connection was reset to resynchronise",
        shared.config.late_reply_window.as_secs_f64().min(1e9)
    );
    log::warn!("{detail}");
    c.link_end = Some((DisconnectReason::Resynchronised, detail.clone()));
    c.last_error = Some(detail);
    c.stream = None;
    if let super::conn::Phase::Up { writable, .. } = &mut c.phase {
        *writable = false;
    }
    shared.counters.link_resyncs.fetch_add(1, Relaxed);
    if let Some(s) = &c.shutdown {
        shutdown(s);
    }
}

/// Writes all of `buf` by `deadline`: before every write call the socket's
/// send timeout is set to the time left, so partial writes to a slow reader
/// cannot each take a full timeout. `cached` is the timeout in force.
fn write_by(
    mut s: &TcpStream,
    mut buf: &[u8],
    written: &mut usize,
    deadline: Deadline,
    cached: &mut Option<Duration>,
) -> io::Result<()> {
    while !buf.is_empty() {
        match deadline.remaining() {
            Some(left) if left.is_zero() => return Err(io::ErrorKind::TimedOut.into()),
            Some(left) => {
                // Setting the timeout is a system call: the value in force
                // is kept while it lies within [left - left/16, left], so a
                // blocked write gives up at most 1/16 of the time left
                // before the deadline, never after it.
                let keep = cached.is_some_and(|t| t <= left && t >= left - left / 16);
                if !keep {
                    let t = (left - left / 32).max(Duration::from_micros(1));
                    s.set_write_timeout(Some(t))?;
                    *cached = Some(t);
                }
            }
            None => {
                if cached.is_some() {
                    s.set_write_timeout(None)?;
                    *cached = None;
                }
            }
        }
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
