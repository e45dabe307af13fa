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

/// A request or message handed to the send path.
pub(crate) struct Started {
    pub id: u64,
    pub key: Key,
    pub rx: slot::Receiver<Outcome>,
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
            c.check_room(size)?;
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
                    if c.needs_sender() {
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
        }
        Ok(Started { id, key, rx })
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
        let total = MESSAGE_LEN + data.as_ref().map_or(0, |d| d.len());
        let mut written = 0;
        let res = role.wire.try_write(bytes).and_then(|n| {
            written = n;
            match &data {
                Some(d) if n == MESSAGE_LEN => {
                    let m = role.wire.try_write(d)?;
                    written += m;
                    Ok(())
                }
                _ => Ok(()),
            }
        });
        match res {
            Ok(()) if written == total => self.finish_write(role, Ok(()), written, total),
            Ok(()) => {
                let mut c = self.conn.lock();
                if written == 0 {
                    // Nothing left: the entry waits for the sender thread.
                    c.batch_unsent(role.link);
                    c.release(role.link);
                } else {
                    let (head, tail) = if written < MESSAGE_LEN {
                        (bytes[written..].to_vec(), data)
                    } else {
                        let d = data.expect("more than the header was written");
                        (d[written - MESSAGE_LEN..].to_vec(), None)
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
            }
            Err(e) => self.finish_write(role, Err(e), written, total),
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
            if c.needs_sender() {
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
        let mut expired = 0;
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
                expired += c.expire_queued(&mut wakes);
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
                    expired = 0;
                    shared.wake_all(std::mem::take(&mut wakes));
                    c = shared.conn.lock();
                    continue;
                }
                let until = resync_at
                    .map_or(Deadline::NEVER, Deadline::at)
                    .min(c.next_expiry());
                shared.cv.wait_until(&mut c, until.wait_slice());
            }
        };
        if let Some(w) = shut {
            w.shutdown();
        }
        report_expired(shared, expired);
        shared.wake_all(wakes);
        match work {
            Work::Batch {
                role,
                buf,
                tail,
                deadline,
            } => {
                let total = buf.len() + tail.as_ref().map_or(0, |t| t.len());
                let mut written = 0;
                let res =
                    role.wire
                        .write_by(&buf, &mut written, deadline)
                        .and_then(|()| match &tail {
                            Some(t) => role.wire.write_by(t, &mut written, deadline),
                            None => Ok(()),
                        });
                shared.conn.lock().batch_buf = buf;
                shared.finish_write(role, res, written, total);
            }
            Work::Finish(role, h) => {
                let total = h.head.len() + h.tail.as_ref().map_or(0, |t| t.len());
                let mut written = 0;
                let res = role
                    .wire
                    .write_by(&h.head, &mut written, h.deadline)
                    .and_then(|()| match &h.tail {
                        Some(t) => role.wire.write_by(t, &mut written, h.deadline),
                        None => Ok(()),
                    });
                // Part of the message is on the wire already: a timeout now
                // leaves it half sent, whatever this write managed.
                let written = written.max(1);
                shared.finish_write(role, res, written, total);
            }
        }
    }
}

fn report_expired(shared: &Shared, n: usize) {
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
