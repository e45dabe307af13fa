//! Where an inbound message goes: to the request waiting for it, to the
//! discard pile (the late reply of a request whose caller gave up), or to
//! the event subscribers.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::conn::{Delivered, Route};
use super::events::{Event, EventKind};
use super::shared::Shared;
use super::Reply;
use crate::codec::Message;
use crate::Error;

impl Shared {
    /// Routes one message read from the socket. Called by the reader only;
    /// never blocks (the lock is held for a table look-up).
    pub(crate) fn route(
        &self,
        msg: Message,
        data: Vec<u8>,
        seq: u64,
        received_at: Instant,
        failure: Option<Error>,
    ) {
        let info = msg.code.info();
        if !info.is_some_and(|i| i.unsolicited.always()) {
            let key = self.key(&msg);
            let route = {
                let mut c = self.conn.lock();
                let r = c.route(key, msg.int32_data0);
                // A freed reply key may let a queued request go out: its
                // blocking caller writes it once woken, else the sender thread.
                if matches!(r, Route::Deliver(_, false) | Route::Late)
                    && !c.writer_busy
                    && c.writable()
                    && c.has_eligible()
                {
                    self.cv.notify_all();
                }
                r
            };
            match route {
                Route::Deliver(w, _) => {
                    // Counted before the hand-off, so a caller that reads
                    // stats() after its reply always finds it counted.
                    self.counters.replies_matched.fetch_add(1, Relaxed);
                    w.send(match failure {
                        Some(e) => Err(e),
                        None => Ok(Delivered::Reply(Reply {
                            message: msg,
                            data,
                            seq,
                            received_at,
                        })),
                    });
                    self.wake();
                    return;
                }
                Route::Late => {
                    self.counters.late_replies_discarded.fetch_add(1, Relaxed);
                    log::warn!(
                        "discarded a late reply #{seq} to {} (its caller had given up)",
                        msg.code
                    );
                    return;
                }
                Route::EchoMismatch => {
                    self.counters.echo_mismatches.fetch_add(1, Relaxed);
                    log::debug!(
                        "{} #{seq} echoes int32Data0 = {}, not the request's: delivered as an event",
                        msg.code,
                        msg.int32_data0
                    );
                }
                Route::Event => {
                    if info.is_none_or(|i| !i.unsolicited.possible()) {
                        self.counters.unmatched_replies.fetch_add(1, Relaxed);
                        log::debug!(
                            "no request was waiting for {} #{seq}; delivered as an event",
                            msg.code
                        );
                    }
                }
            }
        }
        if failure.is_some() {
            return; // an oversized unsolicited message: counted and logged already
        }
        self.publish(Event {
            seq,
            received_at,
            kind: EventKind::from_message(&msg),
            message: Some(msg),
            data: if data.is_empty() {
                None
            } else {
                Some(Arc::from(data))
            },
        });
    }
}
