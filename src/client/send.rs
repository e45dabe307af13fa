//! The send path. The connection's sender thread owns every blocking write:
//! it takes a batch of queued messages under the lock (tagged with the link
//! it is for), writes it outside the lock in one call (write combining), and
//! reports the outcome under the lock, where an outcome for another link
//! changes nothing.
//!
//! A blocking caller may write its own message on its own thread, but only
//! on a path that cannot hurt anyone: nothing is queued before it, nobody
//! is writing, its key lets it go, and the write never waits (the socket
//! takes what fits in its buffer at once). What it cannot finish goes to
//! the sender thread. So no call lasts longer, or fails, because of another
//! call's payload or deadline, and an uncontended request costs one system
//! call on the caller's thread and no hand-off.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{Handover, Key, Kind, Outcome, Queued, Wake, WriterRole};
use super::deadline::Deadline;
use super::shared::Shared;
use super::slot;
use super::sync::now;
use super::wire::is_timeout;
use crate::codec::{hex_dump, Message, MESSAGE_LEN};
use crate::{DisconnectReason, Result};

/// Bytes written per batch, about (a single larger message goes alone).
const BATCH_BYTES: usize = 64 * 1024;

/// Batches a thread other than the sender's writes (without waiting) before
/// it leaves the rest to the sender thread.
const FLUSH_BATCHES: usize = 2;

/// Batches the reader writes before a read: callers woken by the last read
/// queue their next requests while it writes, and each is on its way
/// before the reader waits for replies again (the count is bounded by the
/// callers, since none gets a reply meanwhile; the bound is for messages
/// without replies).
const READER_FLUSH_BATCHES: usize = 8;

/// A request or message handed to the send path.
pub(crate) struct Started {
    pub id: u64,
    pub key: Key,
    pub rx: slot::Receiver<Outcome>,
    /// A request (else a message without a reply).
    pub request: bool,
}

impl Shared {
    /// Queues `msg` (and `data`) for writing by `deadline`. With `direct`,
    /// the calling thread writes it at once when it can do so without
    /// waiting (see the module's notes); otherwise the sender thread does.
    /// Never blocks on the socket.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        msg: &Message,
        data: &[u8],
        deadline: Deadline,
        timeout: Duration,
        kind: Kind,
        direct: bool,
    ) -> Result<Started> {
        let key = self.key(msg);
        let (tx, rx) = slot::channel();
        // Copied before the lock is taken: a large payload is never copied
        // while other threads wait for the connection.
        let data = (!data.is_empty()).then(|| Arc::<[u8]>::from(data));
        let check_echo = kind == Kind::Request && self.checks_echo(msg);
        let size = MESSAGE_LEN + data.as_ref().map_or(0, |d| d.len());
        let (id, fast) = {
            let mut c = self.conn.lock();
            if let Some(e) = c.down_error() {
                return Err(e);
            }
            let broadcast = kind == Kind::Request
                && msg
                    .code
                    .info()
                    .is_some_and(|i| i.unsolicited.possible() && !i.unsolicited.always());
            c.check_room(size, broadcast)?;
            let id = c.next_id();
            let q = Queued::new(
                id,
                key,
                msg,
                data,
                kind,
                check_echo,
                deadline,
                timeout,
                Some(tx),
            );
            let q = if direct { c.begin_direct(q) } else { Err(q) };
            match q {
                Ok(fast) => (id, Some(fast)),
                Err(q) => {
                    c.enqueue(q);
                    // While the reader routes a read it writes the queue
                    // before reading again, and wakes the sender thread for
                    // what is left (`end_reader_batch`).
                    if c.needs_sender() || c.queue_unwatched() {
                        self.cv.notify_all();
                    }
                    (id, None)
                }
            }
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
                size - MESSAGE_LEN
            );
            let mut bytes = [0u8; MESSAGE_LEN];
            msg.encode(&mut bytes);
            log::trace!("-> bytes:\n{}", hex_dump(&bytes));
        }
        if let Some((role, bytes, data)) = fast {
            self.write_own(role, &bytes, data, deadline);
            // Others queued while this thread wrote: written now without
            // waiting, or by the sender thread.
            self.flush();
        }
        Ok(Started {
            id,
            key,
            rx,
            request: kind == Kind::Request,
        })
    }

    /// The fast path: writes the caller's own message without waiting and
    /// hands whatever the socket did not take to the sender thread.
    fn write_own(
        &self,
        role: WriterRole,
        bytes: &[u8; MESSAGE_LEN],
        data: Option<Arc<[u8]>>,
        deadline: Deadline,
    ) {
        let tail = data.map(|d| (d, 0));
        self.try_write_out(role, bytes, tail, deadline);
    }

    /// Writes what is queued without waiting, from any thread but the
    /// sender's (a caller after its own write, the reader after a reply
    /// freed a key): at most a few batches, each a write that never
    /// blocks. What the socket does not take at once goes to the sender
    /// thread, so this never waits for the instrument.
    pub(crate) fn flush(&self) {
        self.flush_from(false);
    }

    /// [`flush`](Shared::flush); `reader`: called by the reader before a
    /// read, which stops queueing callers' messages for it in the same step
    /// as it takes them (so none is left without a writer in between).
    fn flush_from(&self, reader: bool) {
        let batches = if reader {
            READER_FLUSH_BATCHES
        } else {
            FLUSH_BATCHES
        };
        for _ in 0..batches {
            let mut wakes = Vec::new();
            let (work, expired) = {
                let mut c = self.conn.lock();
                if reader {
                    c.reader_done();
                }
                let work = if c.can_try_write() && c.has_eligible() {
                    c.claim_writer().and_then(|role| {
                        let mut buf = std::mem::take(&mut c.batch_buf);
                        let (deadline, tail) =
                            c.take_batch(role.link, &mut buf, BATCH_BYTES, &mut wakes);
                        if c.batch_len(role.link) == 0 {
                            c.batch_buf = buf;
                            c.release(role.link);
                            None
                        } else {
                            Some((role, buf, tail, deadline))
                        }
                    })
                } else {
                    None
                };
                if work.is_none() && (c.needs_sender() || c.queue_unwatched()) {
                    self.cv.notify_all();
                }
                (work, c.take_expired())
            };
            report_expired(self, expired);
            self.wake_all(wakes);
            let Some((role, buf, tail, deadline)) = work else {
                return;
            };
            let done = self.try_write_out(role, &buf, tail.map(|t| (t, 0)), deadline);
            let mut c = self.conn.lock();
            if c.batch_buf.capacity() < buf.capacity() {
                c.batch_buf = buf;
            }
            if !done {
                // Handed to the sender thread (woken then), or failed.
                return;
            }
        }
        // More may be left: the sender thread goes on.
        let c = self.conn.lock();
        if c.needs_sender() || c.queue_unwatched() {
            self.cv.notify_all();
        }
    }

    /// Ends the reader's batch: what callers queued while the reader routed
    /// the last read's messages (the callers those replies woke, asking
    /// again) leaves now in one write instead of one each, and callers
    /// write their own messages again until the next read. Called by the
    /// reader before each read, and before the waker runs (it is user code
    /// and may be slow). What cannot go without waiting is the sender
    /// thread's, which is woken also when a queued entry's deadline needs
    /// watching.
    pub(crate) fn end_reader_batch(&self) {
        self.flush_from(true);
    }

    /// The reader, every few messages routed from one read: writes what is
    /// queued so far, so that a long read (a burst of events) does not hold
    /// callers' requests back until its end.
    pub(crate) fn flush_routed(&self) {
        if self.conn.lock().has_queued() {
            self.flush();
        }
    }

    /// Writes `head` and `tail` (from its offset) without waiting and
    /// reports the outcome; a partial write is handed to the sender thread.
    /// True if everything was written.
    fn try_write_out(
        &self,
        role: WriterRole,
        head: &[u8],
        tail: Option<(Arc<[u8]>, usize)>,
        deadline: Deadline,
    ) -> bool {
        let total = head.len() + tail.as_ref().map_or(0, |(t, from)| t.len() - from);
        let mut written = 0;
        let res = role.wire.try_write(head).and_then(|n| {
            written = n;
            match &tail {
                Some((t, from)) if n == head.len() => {
                    written += role.wire.try_write(&t[*from..])?;
                    Ok(())
                }
                _ => Ok(()),
            }
        });
        match res {
            Ok(()) if written == total => {
                self.finish_write(role, Ok(()), written, total);
                true
            }
            Ok(()) => {
                let mut c = self.conn.lock();
                if written == 0 {
                    // Nothing left: the entries wait for the sender thread.
                    c.batch_unsent(role.link);
                    c.release(role.link);
                } else {
                    let (head, tail) = if written < head.len() {
                        (head[written..].to_vec(), tail)
                    } else {
                        let (t, from) = tail.expect("more than the head was written");
                        (Vec::new(), Some((t, from + written - head.len())))
                    };
                    c.hand_over(Handover {
                        link: role.link,
                        head,
                        tail,
                        deadline,
                    });
                }
                if c.needs_sender() {
                    self.cv.notify_all();
                }
                false
            }
            Err(e) => {
                self.finish_write(role, Err(e), written, total);
                false
            }
        }
    }

    /// Reports a write's outcome on its link and gives the role up. An
    /// outcome for a link that has ended changes nothing of the next one.
    fn finish_write(&self, role: WriterRole, res: io::Result<()>, written: usize, total: usize) {
        let mut wakes = Vec::new();
        let mut sent = 0;
        let shut = {
            let mut c = self.conn.lock();
            let shut = match res {
                Ok(()) => {
                    sent = c.batch_written(role.link, &mut wakes);
                    c.release(role.link);
                    None
                }
                Err(e) if written == 0 && is_timeout(&e) => {
                    c.batch_unsent(role.link);
                    c.release(role.link);
                    None
                }
                Err(e) => {
                    let detail = if is_timeout(&e) {
                        format!(
                            "a write timed out with {written} of {total} bytes sent (the instrument is not reading); the connection is reset because a partly sent message cannot be taken back"
                        )
                    } else {
                        format!(
                            "writing to the instrument failed after {written} of {total} bytes: {e}"
                        )
                    };
                    c.write_failed(role.link, detail)
                }
            };
            if c.needs_sender() && !c.can_try_write() {
                self.cv.notify_all();
            }
            shut
        };
        if sent > 0 {
            self.counters.messages_sent.fetch_add(sent as u64, Relaxed);
        }
        // The reader sees the link end and reports it, then fails what was on it.
        if let Some(w) = shut {
            w.shutdown();
        }
        self.wake_all(wakes);
    }

    /// Wakes callers whose outcomes were put in their slots, then the waker.
    pub(crate) fn wake_all(&self, wakes: Vec<Wake>) {
        if wakes.is_empty() {
            return;
        }
        for w in wakes {
            w.wake();
        }
        self.wake();
    }
}

/// The sender thread: writes what callers queued, finishes writes callers
/// handed over, expires queued messages at their deadlines, and resets a
/// link whose replies can no longer be matched. Waits on the connection's
/// condition variable; uses no CPU when idle.
pub(crate) fn sender_loop(shared: Arc<Shared>) {
    super::shared::mark_thread(shared.id);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| send_queued(&shared)));
    if run.is_err() {
        log::error!("the sender thread panicked; the client is closed");
        shared.shut(
            DisconnectReason::Internal,
            "the client's sender thread failed unexpectedly (a bug: please report it)".into(),
        );
    }
}

/// What the sender thread writes next.
enum Work {
    Batch {
        role: WriterRole,
        buf: Vec<u8>,
        tail: Option<Arc<[u8]>>,
        deadline: Deadline,
    },
    Finish(WriterRole, Handover),
}

fn send_queued(shared: &Arc<Shared>) {
    let window = shared.config.late_reply_window;
    let max_unanswered = shared.config.max_unanswered;
    loop {
        let mut wakes = Vec::new();
        let mut expired = (0, 0);
        let mut shut = None;
        let work = {
            let mut c = shared.conn.lock();
            loop {
                if c.is_closed() {
                    drop(c);
                    shared.wake_all(wakes);
                    return;
                }
                let resync_at = c.resync_due(window, max_unanswered);
                if resync_at.is_some_and(|t| t <= now()) {
                    shut = resync(shared, &mut c);
                    continue;
                }
                let e = c.expire_queued(&mut wakes);
                let t = c.take_expired();
                expired = (expired.0 + e.0 + t.0, expired.1 + e.1 + t.1);
                if let Some((role, h)) = c.take_handover() {
                    break Work::Finish(role, h);
                }
                if c.has_eligible() {
                    if let Some(role) = c.claim_writer() {
                        let mut buf = std::mem::take(&mut c.batch_buf);
                        let (deadline, tail) =
                            c.take_batch(role.link, &mut buf, BATCH_BYTES, &mut wakes);
                        if c.batch_len(role.link) > 0 {
                            break Work::Batch {
                                role,
                                buf,
                                tail,
                                deadline,
                            };
                        }
                        c.batch_buf = buf;
                        c.release(role.link);
                    }
                }
                if !wakes.is_empty() || shut.is_some() {
                    // Tell those first (outside the lock), then look again.
                    drop(c);
                    if let Some(w) = shut.take() {
                        w.shutdown();
                    }
                    report_expired(shared, expired);
                    expired = (0, 0);
                    shared.wake_all(std::mem::take(&mut wakes));
                    c = shared.conn.lock();
                    continue;
                }
                let until = resync_at
                    .map_or(Deadline::NEVER, Deadline::at)
                    .min(c.next_expiry());
                c.sender_until = until;
                shared.cv.wait_until(&mut c, until.wait_slice());
                c.sender_until = Deadline::after(Duration::ZERO);
            }
        };
        if let Some(w) = shut {
            w.shutdown();
        }
        report_expired(shared, expired);
        shared.wake_all(wakes);
        let stall = shared.config.write_stall_timeout;
        match work {
            Work::Batch {
                role,
                buf,
                tail,
                deadline,
            } => {
                let tail = tail.map(|t| (t, 0));
                let total = buf.len() + tail.as_ref().map_or(0, |(t, _)| t.len());
                let mut written = 0;
                let res = write_out(
                    &*role.wire,
                    &buf,
                    &tail,
                    &mut written,
                    deadline,
                    stall,
                    false,
                );
                shared.conn.lock().batch_buf = buf;
                shared.finish_write(role, res, written, total);
            }
            Work::Finish(role, h) => {
                let total = h.head.len() + h.tail.as_ref().map_or(0, |(t, from)| t.len() - from);
                let mut written = 0;
                let res = write_out(
                    &*role.wire,
                    &h.head,
                    &h.tail,
                    &mut written,
                    h.deadline,
                    stall,
                    true,
                );
                // Part of the message was on the wire before: a failure
                // now leaves it half sent, whatever this write managed.
                let res = match res {
                    Err(e) if written == 0 && is_timeout(&e) => Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the instrument stopped reading in the middle of a message",
                    )),
                    other => other,
                };
                shared.finish_write(role, res, written, total);
            }
        }
    }
}

/// Writes `head` then `tail` (from its offset) by `deadline`. Once a
/// message has begun on the wire (`begun`, or bytes of this write left),
/// its remaining bytes must follow or the stream is corrupt: past the
/// deadline the write goes on as long as the instrument keeps reading,
/// giving up only when nothing at all was taken for `stall`. Callers whose
/// deadlines pass meanwhile have already returned with `Timeout`: no call
/// fails because another call's deadline cut a message in two.
fn write_out(
    wire: &dyn super::wire::Wire,
    head: &[u8],
    tail: &Option<(Arc<[u8]>, usize)>,
    written: &mut usize,
    deadline: Deadline,
    stall: Duration,
    begun: bool,
) -> io::Result<()> {
    let mut until = deadline;
    loop {
        let before = *written;
        let res = if *written < head.len() {
            let mut w = *written;
            let r = wire.write_by(&head[w..], &mut w, until);
            *written = w;
            r
        } else {
            Ok(())
        };
        let res = res.and_then(|()| match tail {
            Some((t, from)) => {
                let done = *written - head.len();
                let mut w = 0;
                let r = wire.write_by(&t[from + done..], &mut w, until);
                *written += w;
                r
            }
            None => Ok(()),
        });
        match res {
            Err(e) if is_timeout(&e) && (begun || *written > 0) => {
                if until != deadline && *written == before {
                    return Err(e); // nothing was taken for a whole stall window
                }
                until = Deadline::after(stall);
            }
            other => return other,
        }
    }
}

/// Counts and logs queued messages dropped at their deadline (`n`, of which
/// `requests` were requests: those are timeouts too).
fn report_expired(shared: &Shared, (n, requests): (usize, usize)) {
    if requests > 0 {
        shared.counters.timeouts.fetch_add(requests as u64, Relaxed);
    }
    if n > 0 {
        shared.counters.sends_expired.fetch_add(n as u64, Relaxed);
        log::warn!(
            "dropped {n} queued message(s) that could not be written before their deadline (the link was down or busy)"
        );
    }
}

/// Resets the current link: a request stayed unanswered past the window.
/// The reader sees the socket end and reconnects (whatever the policy).
fn resync(shared: &Shared, c: &mut super::conn::Conn) -> Option<Arc<dyn super::wire::Wire>> {
    let detail = format!(
        "a request stayed unanswered for more than {:.1} s after its caller gave up (or too many did), so later replies could not be matched safely; the connection was reset to resynchronise",
        shared.config.late_reply_window.as_secs_f64().min(1e9)
    );
    log::warn!("{detail}");
    shared.counters.link_resyncs.fetch_add(1, Relaxed);
    c.request_resync(detail)
}
