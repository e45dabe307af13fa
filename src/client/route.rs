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
    /// never blocks (the lock is held for a table look-up and for putting
    /// the reply in its caller's slot).
    pub(crate) fn route(
        &self,
        msg: Message,
        data: Vec<u8>,
        seq: u64,
        received_at: Instant,
        failure: Option<Error>,
        written_before: u64,
    ) {
        let info = msg.code.info();
        let mut answered = false;
        if !info.is_some_and(|i| i.unsolicited.always()) {
            let key = self.key(&msg);
            let mut data = Some(data);
            let mut fail_copy = failure.as_ref().map(Error::duplicate);
            let (route, sender) = {
                let mut c = self.conn.lock();
                let r = c.route(key, msg.int32_data0, written_before, || {
                    match fail_copy.take() {
                        Some(e) => Err(e),
                        None => Ok(Delivered::Reply(Reply {
                            message: msg,
                            data: data.take().unwrap_or_default(),
                            seq,
                            received_at,
                        })),
                    }
                });
                // A freed key may let a queued message go: the sender
                // thread writes it, whichever outcome freed the key.
                (r, c.needs_sender())
            };
            if sender {
                // Written now without waiting (the reader never blocks on
                // a write), or by the sender thread.
                self.flush();
            }
            match route {
                Route::Delivered(wake) => {
                    self.counters.replies_matched.fetch_add(1, Relaxed);
                    wake.wake();
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
                Route::Fence(wakes, late) => {
                    self.counters.fences.fetch_add(1, Relaxed);
                    self.counters
                        .late_replies_discarded
                        .fetch_add(late as u64, Relaxed);
                    self.counters
                        .replies_matched
                        .fetch_add(wakes.len() as u64, Relaxed);
                    self.wake_all(wakes);
                    return;
                }
                Route::Held(displaced) => {
                    // A message of the key came after it: the one kept
                    // before was a broadcast, published now as an event.
                    if let Some(Ok(Delivered::Reply(r))) = displaced {
                        self.publish_message(r.message, r.data, r.seq, r.received_at, None, false);
                    }
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
                Route::Event { answered: a } => {
                    answered = a;
                    if !a && info.is_none_or(|i| !i.unsolicited.possible()) {
                        self.counters.unmatched_replies.fetch_add(1, Relaxed);
                        log::debug!(
                            "no request was waiting for {} #{seq}; delivered as an event",
                            msg.code
                        );
                    }
                }
            }
            return self.publish_message(
                msg,
                data.unwrap_or_default(),
                seq,
                received_at,
                failure,
                answered,
            );
        }
        self.publish_message(msg, data, seq, received_at, failure, answered);
    }

    fn publish_message(
        &self,
        msg: Message,
        data: Vec<u8>,
        seq: u64,
        received_at: Instant,
        failure: Option<Error>,
        _answered: bool,
    ) {
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
