//! The steps device operations are made of: a parsed reply, several
//! steps joined, events, and a command confirmed by a barrier request.

use std::time::Instant;

use crossbeam_channel::{RecvTimeoutError, TryRecvError};

pub(crate) use crate::client::Step;
use crate::events::{Event, EventKind, Subscription};
use crate::{DisconnectReason, Error, Op, Reply, Result};

pub(crate) type ParseFn<T> = Box<dyn FnOnce(Reply) -> Result<T> + Send>;

/// One request: its reply, parsed.
pub(crate) struct ReplyStep<T> {
    pending: Op<Reply>,
    parse: Option<ParseFn<T>>,
}

impl<T> ReplyStep<T> {
    pub(crate) fn new(
        pending: Op<Reply>,
        parse: impl FnOnce(Reply) -> Result<T> + Send + 'static,
    ) -> ReplyStep<T> {
        ReplyStep {
            pending,
            parse: Some(Box::new(parse)),
        }
    }
}

impl<T> Step<T> for ReplyStep<T> {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<T>> {
        let r = recv_reply(&mut self.pending, until)?;
        let parse = self.parse.take()?;
        Some(r.and_then(parse))
    }
}

/// Several steps that must all succeed; the first error ends the whole.
pub(crate) struct Join<T> {
    steps: Vec<Option<Box<dyn Step<T>>>>,
    results: Vec<Option<T>>,
}

impl<T> Join<T> {
    pub(crate) fn new(steps: Vec<Box<dyn Step<T>>>) -> Join<T> {
        let n = steps.len();
        Join {
            steps: steps.into_iter().map(Some).collect(),
            results: (0..n).map(|_| None).collect(),
        }
    }
}

impl<T: Send> Step<Vec<T>> for Join<T> {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<Vec<T>>> {
        for (slot, out) in self.steps.iter_mut().zip(self.results.iter_mut()) {
            let Some(step) = slot else { continue };
            match step.poll(until)? {
                Ok(v) => {
                    *out = Some(v);
                    *slot = None;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(self
            .results
            .iter_mut()
            .filter_map(Option::take)
            .collect()))
    }
}

/// Polls or waits for a reply: `until == None` never blocks. Past the
/// request's own deadline it gives the request's typed timeout.
pub(crate) fn recv_reply(p: &mut Op<Reply>, until: Option<Instant>) -> Option<Result<Reply>> {
    p.poll_until(until)
}

fn closed() -> Error {
    Error::disconnected(DisconnectReason::ClosedByUser, "the client was closed")
}

/// Polls or waits for the next event. Connection loss (a `Disconnected` or
/// `Closed` event, or the end of the subscription) is an error.
pub(crate) fn recv_event(sub: &Subscription, until: Option<Instant>) -> Option<Result<Event>> {
    let ev = match until {
        None => match sub.try_recv() {
            Ok(ev) => ev,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => return Some(Err(closed())),
        },
        Some(t) => match sub.recv_deadline(t) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => return Some(Err(closed())),
        },
    };
    match &ev.kind {
        EventKind::Disconnected { .. } | EventKind::Closed { .. } => Some(Err(sub.end_error(&ev))),
        _ => Some(Ok(ev)),
    }
}

/// A command sent without a waiter (the instrument may or may not
/// acknowledge it), followed by a request that acts as a barrier: the
/// instrument answers in order, so once the barrier's reply is in, any
/// acknowledgement of the command has arrived before it. Such an
/// acknowledgement (an event on `sub`, after `after`) with a busy or refused
/// status fails the operation; otherwise the barrier's reply is parsed.
pub(crate) struct Confirmed<T> {
    client: crate::Client,
    sub: Subscription,
    after: u64,
    /// Only acknowledgements whose `int32_data0` is this count, if set.
    int0: Option<i32>,
    barrier: ReplyStep<T>,
}

impl<T> Confirmed<T> {
    pub(crate) fn new(
        client: crate::Client,
        sub: Subscription,
        after: u64,
        int0: Option<i32>,
        barrier: ReplyStep<T>,
    ) -> Confirmed<T> {
        Confirmed {
            client,
            sub,
            after,
            int0,
            barrier,
        }
    }

    fn check_acks(&self) -> Result<()> {
        while let Some(ev) = recv_event(&self.sub, None) {
            let ev = ev?;
            let Some(m) = ev.message else { continue };
            if ev.seq <= self.after || self.int0.is_some_and(|i| i != m.int32_data0) {
                continue;
            }
            self.client.check_status(&Reply {
                message: m,
                data: Vec::new(),
                seq: ev.seq,
                received_at: ev.received_at,
            })?;
        }
        Ok(())
    }
}

impl<T> Step<T> for Confirmed<T> {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<T>> {
        let r = recv_reply(&mut self.barrier.pending, until)?;
        let parse = self.barrier.parse.take()?;
        Some(r.and_then(|reply| {
            self.check_acks()?;
            parse(reply)
        }))
    }
}
