//! [`Op`]: the one type for an operation in flight, whether a raw request
//! ([`Client::submit`](crate::Client::submit)) or a device operation (a
//! command and the replies and events that complete it).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Delivered, GiveUp, Key, Outcome};
use super::deadline::Deadline;
use super::shared::Shared;
use super::slot::{self, RecvError};
use super::sync::now;
use super::Reply;
use crate::{DisconnectReason, Error, Result, TimeoutPhase};

/// One step of an operation. `poll` makes progress without blocking past
/// `until` (`None`: without blocking at all) and returns the outcome once
/// there is one. It is not called again after it returned `Some`.
pub(crate) trait Step<T>: Send {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<T>>;

    /// Called once when the operation's deadline has passed without an
    /// outcome: the step gives up and says how (a typed timeout), or
    /// returns an outcome that arrived at the last moment. `None`: the
    /// operation reports a generic timeout.
    fn expire(&mut self, _what: &str, _after: Duration) -> Option<Result<T>> {
        None
    }
}

/// A typed operation in flight: a request (or a command and the events that
/// complete it) that has been started, and a way to get its typed outcome.
///
/// [`Client::submit`](crate::Client::submit) returns an `Op<Reply>`; every
/// device facade has a `submit_*` form of each operation returning an `Op`
/// at once; the blocking forms wait for the same operations.
///
/// - [`try_get`](Op::try_get) never blocks: `None` while the operation is
///   in flight, then `Some(result)` exactly once. This is what a GUI loop
///   calls every frame.
/// - [`wait_timeout`](Op::wait_timeout) blocks at most the given time.
/// - [`wait`](Op::wait) blocks until the outcome. Waiting on an operation
///   whose outcome was already taken returns an `InvalidArgument` error at
///   once.
///
/// Every operation has one overall deadline, fixed when it was started (the
/// timeout given, or the facade's): after it, the outcome is
/// [`Error::Timeout`], whose [`TimeoutPhase`] says what was under way.
/// Dropping an unfinished `Op` abandons it: the instrument may still carry
/// the command out, but its reply is discarded (never given to another
/// request).
///
/// ```
/// # fn main() -> flamingo_client::Result<()> {
/// # let sim = flamingo_client::sim::Simulator::start(Default::default())?;
/// use flamingo_client::{Axis, Client, ClientConfig};
///
/// let client = Client::connect(&sim.addr().to_string(), ClientConfig::default())?;
/// let mut op = client.stage().submit_position(Axis::X)?;
/// let x = loop {
///     // ... draw a frame ...
///     if let Some(result) = op.try_get() {
///         break result?;
///     }
/// #   std::thread::yield_now();
/// };
/// println!("x = {x:.3} mm");
/// assert!(op.try_get().is_none(), "the outcome is handed out once");
/// # Ok(()) }
/// ```
#[must_use = "an Op does nothing unless polled or waited for; dropping it abandons the reply"]
pub struct Op<T> {
    step: Option<Box<dyn Step<T>>>,
    what: What,
    /// `what` formatted, once asked for.
    what_text: std::cell::OnceCell<String>,
    deadline: Deadline,
    timeout: Duration,
}

/// What an operation does, in words: formatted only when asked for (an
/// error, [`Op::what`]), so a request costs no formatting when it succeeds.
pub(crate) enum What {
    Text(String),
    /// "the reply to CODE".
    ReplyTo(crate::codec::CommandCode),
    /// "sending CODE".
    Sending(crate::codec::CommandCode),
}

impl What {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            What::Text(s) => std::borrow::Cow::Borrowed(s),
            What::ReplyTo(c) => std::borrow::Cow::Owned(format!("the reply to {c}")),
            What::Sending(c) => std::borrow::Cow::Owned(format!("sending {c}")),
        }
    }
}

impl From<String> for What {
    fn from(s: String) -> What {
        What::Text(s)
    }
}

impl From<&str> for What {
    fn from(s: &str) -> What {
        What::Text(s.to_string())
    }
}

impl<T: 'static> Op<T> {
    pub(crate) fn new(
        what: impl Into<What>,
        deadline: Deadline,
        timeout: Duration,
        step: impl Step<T> + 'static,
    ) -> Op<T> {
        Op {
            step: Some(Box::new(step)),
            what: what.into(),
            what_text: std::cell::OnceCell::new(),
            deadline,
            timeout,
        }
    }

    /// An operation whose outcome is already known (nothing was sent).
    pub(crate) fn ready(what: impl Into<What>, value: T) -> Op<T>
    where
        T: Send,
    {
        Op::new(what, Deadline::NEVER, Duration::ZERO, Ready(Some(value)))
    }

    /// What the operation does, in words (used in timeout errors).
    pub fn what(&self) -> &str {
        match &self.what {
            What::Text(s) => s,
            w => self.what_text.get_or_init(|| w.text().into_owned()),
        }
    }

    /// The operation's deadline.
    pub fn deadline(&self) -> Deadline {
        self.deadline
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
    /// outcome. `None` if `d` elapsed first (or the outcome was already
    /// taken).
    pub fn wait_timeout(&mut self, d: Duration) -> Option<Result<T>> {
        let until = Deadline::after(d).min(self.deadline);
        self.poll(Some(until.wait_slice()))
    }

    /// Blocks until the outcome, at most until the operation's deadline.
    /// Calling it after [`try_get`](Op::try_get) returned the outcome gives
    /// an `InvalidArgument` error at once.
    pub fn wait(mut self) -> Result<T> {
        loop {
            if self.step.is_none() {
                return Err(Error::invalid(format!(
                    "the outcome of {} was already taken",
                    self.what.text()
                )));
            }
            let until = self.deadline.wait_slice();
            if let Some(r) = self.poll(Some(until)) {
                return r;
            }
        }
    }

    /// An operation whose outcome is `f` applied to this one's.
    pub fn map<U: 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Op<U> {
        let Op {
            step,
            what,
            what_text,
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
            what_text,
            deadline,
            timeout,
        }
    }

    /// Polls (`until == None`) or waits until `until` (never past the
    /// deadline); at the deadline the step gives up with its typed timeout.
    pub(crate) fn poll_until(&mut self, until: Option<Instant>) -> Option<Result<T>> {
        self.poll(until)
    }

    fn poll(&mut self, until: Option<Instant>) -> Option<Result<T>> {
        let step = self.step.as_mut()?;
        let until = until.map(|u| match self.deadline.instant() {
            Some(d) => u.min(d),
            None => u,
        });
        let r = match step.poll(until) {
            Some(r) => r,
            None if self.deadline.expired() => {
                let what = self.what.text();
                step.expire(&what, self.timeout).unwrap_or_else(|| {
                    Err(Error::timeout(
                        TimeoutPhase::Reply,
                        what.into_owned(),
                        self.timeout,
                    ))
                })
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
            .field("what", &self.what.text())
            .field("finished", &self.step.is_none())
            .field("deadline_in", &self.deadline.remaining())
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

    fn expire(&mut self, what: &str, after: Duration) -> Option<Result<U>> {
        let r = self.inner.expire(what, after)?;
        let f = self.f.take()?;
        Some(r.map(f))
    }
}

/// One request's outcome, from the send path: the reply, or for a plain
/// send, that it was written.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    id: u64,
    key: Key,
    rx: slot::Receiver<Outcome>,
    start: Instant,
    done: bool,
    request: bool,
}

impl Pending {
    pub(crate) fn new(shared: Arc<Shared>, started: super::send::Started) -> Pending {
        Pending {
            shared,
            id: started.id,
            key: started.key,
            rx: started.rx,
            start: now(),
            done: false,
            request: started.request,
        }
    }

    fn finish(&mut self, r: std::result::Result<Outcome, RecvError>) -> Option<Result<Delivered>> {
        let r = match r {
            Ok(o) => o,
            Err(RecvError::Empty) => return None,
            Err(RecvError::Closed) => Err(self.closed_error()),
        };
        self.done = true;
        if matches!(r, Ok(Delivered::Reply(_))) {
            self.shared
                .latency
                .record(now().saturating_duration_since(self.start));
        }
        Some(r)
    }

    fn closed_error(&self) -> Error {
        self.shared.conn.lock().down_error().unwrap_or_else(|| {
            Error::disconnected(DisconnectReason::ClosedByPeer, "the link ended")
        })
    }

    /// Polls or waits (`until`) for the outcome.
    pub(crate) fn poll_outcome(&mut self, until: Option<Instant>) -> Option<Result<Delivered>> {
        if self.done {
            return None;
        }
        let r = match until {
            None => self.rx.try_recv(),
            Some(t) => self.rx.recv_until(t),
        };
        self.finish(r)
    }

    /// Gives up at the deadline: the typed timeout, or the outcome if it
    /// was handed over between the deadline and now (never both).
    pub(crate) fn give_up(&mut self, what: &str, after: Duration) -> Result<Delivered> {
        self.done = true;
        let g = self.abandon();
        match g {
            GiveUp::TimedOut(phase) => {
                let c = &self.shared.counters;
                let counter = if self.request {
                    &c.timeouts
                } else {
                    // A message without a reply that could not be written
                    // by its deadline.
                    &c.sends_expired
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(Error::timeout(phase, what.to_string(), after))
            }
            GiveUp::AlreadyDelivered => {
                // The outcome was put in the slot in the same step that
                // took the request off the wire: it is there now.
                self.done = false;
                self.finish(self.rx.try_recv())
                    .unwrap_or_else(|| Err(self.closed_error()))
            }
        }
    }
}

impl Pending {
    /// Gives the request up in the connection state. A request abandoned
    /// on the wire starts the late-reply window, so the sender thread (which
    /// resets a link whose window ran out) is woken to re-arm its timer.
    fn abandon(&self) -> GiveUp {
        let mut c = self.shared.conn.lock();
        let g = c.give_up(self.id, self.key, now());
        if matches!(
            g,
            GiveUp::TimedOut(TimeoutPhase::Reply | TimeoutPhase::Write)
        ) {
            self.shared.cv.notify_all();
        }
        g
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.abandon();
        }
    }
}

/// A request's reply as an operation step.
pub(crate) struct ReplyStep {
    pending: Pending,
}

impl ReplyStep {
    pub(crate) fn new(pending: Pending) -> ReplyStep {
        ReplyStep { pending }
    }
}

fn into_reply(r: Result<Delivered>) -> Result<Reply> {
    match r? {
        Delivered::Reply(r) => Ok(r),
        Delivered::Written => Err(Error::protocol(
            "a request completed without a reply (internal mix-up of a send and a request)",
        )),
    }
}

impl Step<Reply> for ReplyStep {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<Reply>> {
        self.pending.poll_outcome(until).map(into_reply)
    }

    fn expire(&mut self, what: &str, after: Duration) -> Option<Result<Reply>> {
        Some(into_reply(self.pending.give_up(what, after)))
    }
}

/// A plain send's completion as an operation step.
pub(crate) struct SentStep {
    pending: Pending,
}

impl SentStep {
    pub(crate) fn new(pending: Pending) -> SentStep {
        SentStep { pending }
    }
}

impl Step<()> for SentStep {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<()>> {
        self.pending.poll_outcome(until).map(|r| r.map(|_| ()))
    }

    fn expire(&mut self, what: &str, after: Duration) -> Option<Result<()>> {
        Some(self.pending.give_up(what, after).map(|_| ()))
    }
}
