//! [`Op`]: a typed operation in flight, for callers that must not block.

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, TryRecvError};

use crate::events::{Event, EventKind, Subscription};
use crate::{Error, Pending, Reply, Result};

/// One step of an operation. `poll` makes progress without blocking past
/// `until` (`None`: without blocking at all) and returns the outcome once
/// there is one. It is not called again after it returned `Some`.
pub(crate) trait Step<T>: Send {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<T>>;
}

/// A typed operation in flight: a request (or a command and the events that
/// complete it) that has been sent, and a way to get its typed outcome.
///
/// Every device facade has a `submit_*` form of each operation that returns
/// an `Op` at once; the blocking forms are `submit_*(..)?.wait()`.
///
/// - [`try_get`](Op::try_get) never blocks: `None` while the operation is
///   still in flight, then `Some(result)` exactly once. This is what a GUI
///   loop calls every frame.
/// - [`wait_timeout`](Op::wait_timeout) blocks at most the given time.
/// - [`wait`](Op::wait) blocks until the outcome.
///
/// Every operation has one overall deadline, fixed when it was submitted
/// (the facade's timeout): after it, the outcome is [`Error::Timeout`].
/// Dropping an unfinished `Op` abandons it: the instrument still carries the
/// command out, but its reply is discarded (never given to another request).
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Axis, Client, ClientConfig};
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let mut op = client.stage().submit_position(Axis::X)?;
/// loop {
///     // ... draw a frame ...
///     if let Some(result) = op.try_get() {
///         println!("x = {:.3} mm", result?);
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
#[must_use = "an Op does nothing unless polled or waited for; dropping it abandons the reply"]
pub struct Op<T> {
    step: Option<Box<dyn Step<T>>>,
    what: String,
    deadline: Instant,
    timeout: Duration,
}

impl<T: 'static> Op<T> {
    pub(crate) fn new(
        what: impl Into<String>,
        deadline: Instant,
        timeout: Duration,
        step: impl Step<T> + 'static,
    ) -> Op<T> {
        Op {
            step: Some(Box::new(step)),
            what: what.into(),
            deadline,
            timeout,
        }
    }

    /// An operation whose outcome is already known (nothing was sent).
    pub(crate) fn ready(what: impl Into<String>, value: T) -> Op<T>
    where
        T: Send,
    {
        Op::new(what, Instant::now(), Duration::ZERO, Ready(Some(value)))
    }

    /// What the operation does, in words (used in timeout errors).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// True once the outcome has been returned.
    pub fn is_finished(&self) -> bool {
        self.step.is_none()
    }

    /// The outcome if it is there, `None` while the operation is in flight.
    /// Never blocks. After it has returned `Some`, later calls return `None`.
    pub fn try_get(&mut self) -> Option<Result<T>> {
        self.poll(None)
    }

    /// Waits at most `d` (never past the operation's deadline) for the
    /// outcome. `None` if `d` elapsed first (or the outcome was already taken).
    pub fn wait_timeout(&mut self, d: Duration) -> Option<Result<T>> {
        let until = Instant::now().checked_add(d).unwrap_or(self.deadline);
        self.poll(Some(until))
    }

    /// Blocks until the outcome, at most until the operation's deadline.
    /// Calling it after [`try_get`](Op::try_get) returned the outcome gives
    /// an `InvalidArgument` error.
    pub fn wait(mut self) -> Result<T> {
        loop {
            if self.step.is_none() {
                return Err(Error::invalid(format!(
                    "the outcome of {} was already taken",
                    self.what
                )));
            }
            if let Some(r) = self.poll(Some(self.deadline)) {
                return r;
            }
        }
    }

    /// An operation whose outcome is `f` applied to this one's.
    pub fn map<U: 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Op<U> {
        let Op {
            step,
            what,
            deadline,
            timeout,
        } = self;
        Op {
            step: step.map(|inner| {
                Box::new(Map {
                    inner,
                    f: Some(Box::new(f)),
                }) as Box<dyn Step<U>>
            }),
            what,
            deadline,
            timeout,
        }
    }

    fn poll(&mut self, until: Option<Instant>) -> Option<Result<T>> {
        let step = self.step.as_mut()?;
        let until = until.map(|u| u.min(self.deadline));
        let r = match step.poll(until) {
            Some(r) => r,
            None if Instant::now() >= self.deadline => {
                Err(Error::timeout(self.what.clone(), self.timeout))
            }
            None => return None,
        };
        self.step = None; // drops what it held (abandons pending replies)
        Some(r)
    }
}

impl<T> fmt::Debug for Op<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op")
            .field("what", &self.what)
            .field("finished", &self.step.is_none())
            .field(
                "deadline_in",
                &self.deadline.saturating_duration_since(Instant::now()),
            )
            .finish()
    }
}

struct Ready<T>(Option<T>);

impl<T: Send> Step<T> for Ready<T> {
    fn poll(&mut self, _: Option<Instant>) -> Option<Result<T>> {
        self.0.take().map(Ok)
    }
}

type MapFn<T, U> = Box<dyn FnOnce(T) -> U + Send>;

struct Map<T, U> {
    inner: Box<dyn Step<T>>,
    f: Option<MapFn<T, U>>,
}

impl<T, U> Step<U> for Map<T, U> {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<U>> {
        let r = self.inner.poll(until)?;
        let f = self.f.take()?;
        Some(r.map(f))
    }
}

pub(crate) type ParseFn<T> = Box<dyn FnOnce(Reply) -> Result<T> + Send>;

/// One request: its reply, parsed.
pub(crate) struct ReplyStep<T> {
    pending: Pending,
    parse: Option<ParseFn<T>>,
}

impl<T> ReplyStep<T> {
    pub(crate) fn new(
        pending: Pending,
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

/// Polls or waits for a reply: `until == None` never blocks.
pub(crate) fn recv_reply(p: &mut Pending, until: Option<Instant>) -> Option<Result<Reply>> {
    match until {
        None => p.try_get(),
        Some(t) => p.wait_timeout(t.saturating_duration_since(Instant::now())),
    }
}

/// Polls or waits for the next event. Connection loss (a `Disconnected` or
/// `Closed` event, or the end of the subscription) is an error.
pub(crate) fn recv_event(sub: &Subscription, until: Option<Instant>) -> Option<Result<Event>> {
    let ev = match until {
        None => match sub.try_recv() {
            Ok(ev) => ev,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => {
                return Some(Err(Error::disconnected("the client was closed")))
            }
        },
        Some(t) => match sub.recv_deadline(t) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => {
                return Some(Err(Error::disconnected("the client was closed")))
            }
        },
    };
    match &ev.kind {
        EventKind::Disconnected { reason } | EventKind::Closed { reason } => {
            Some(Err(Error::disconnected(reason.clone())))
        }
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
