//! The system state: idle, busy, error.

use std::fmt;
use std::time::{Duration, Instant};

use super::op::{recv_event, recv_reply, Step};
use super::{msg0, run, Base, Op};
use crate::codec::CommandCode as C;
use crate::events::{EventKind, Subscription};
use crate::{Deadline, Error, Op as ReplyOp, Reply, Result};

/// How often [`System::wait_until_idle`] asks for the state while it waits
/// for the idle broadcast (in case that broadcast is lost).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What `SYSTEM_STATE_GET` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemState {
    /// 0: idle, ready for a command.
    Idle,
    /// 1: busy (a workflow, a snapshot...).
    Busy,
    /// 2: in error.
    Error,
    /// Any other value, as sent.
    Unknown(i32),
}

impl SystemState {
    /// The state for a wire value (`int32Data0`).
    pub const fn from_wire(v: i32) -> SystemState {
        match v {
            0 => SystemState::Idle,
            1 => SystemState::Busy,
            2 => SystemState::Error,
            n => SystemState::Unknown(n),
        }
    }

    /// The wire value.
    pub const fn wire(self) -> i32 {
        match self {
            SystemState::Idle => 0,
            SystemState::Busy => 1,
            SystemState::Error => 2,
            SystemState::Unknown(n) => n,
        }
    }
}

impl fmt::Display for SystemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemState::Idle => f.write_str("idle"),
            SystemState::Busy => f.write_str("busy"),
            SystemState::Error => f.write_str("error"),
            SystemState::Unknown(n) => write!(f, "unknown ({n})"),
        }
    }
}

/// The system as a whole. Made by [`Client::system`](crate::Client::system).
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
/// use flamingo_client::devices::SystemState;
/// use std::time::Duration;
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let system = client.system();
/// if system.state()? == SystemState::Error {
///     system.set_idle()?;
/// }
/// system.wait_until_idle(Duration::from_secs(60))?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct System {
    base: Base,
}

impl System {
    pub(crate) fn new(base: Base) -> System {
        System { base }
    }

    /// Sets the deadline of [`state`](System::state) and
    /// [`set_idle`](System::set_idle).
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> System {
        self.base.timeout = d;
        self
    }

    /// The current state.
    pub fn state(&self) -> Result<SystemState> {
        run(|| self.submit_state())
    }

    /// Non-blocking form of [`state`](System::state).
    pub fn submit_state(&self) -> Result<Op<SystemState>> {
        self.base
            .query("the system state", msg0(C::SYSTEM_STATE_GET, 0), |r| {
                Ok(SystemState::from_wire(r.message.int32_data0))
            })
    }

    /// Asks the instrument to return to idle (`SYSTEM_STATE_IDLE`, which it
    /// does not answer) and waits until it is: an idle broadcast after the
    /// request, or a state query answered after it that reports idle.
    pub fn set_idle(&self) -> Result<()> {
        run(|| self.submit_set_idle())
    }

    /// Non-blocking form of [`set_idle`](System::set_idle).
    pub fn submit_set_idle(&self) -> Result<Op<()>> {
        let deadline = self.base.deadline();
        let client = &self.base.client;
        let sub = client.subscribe_to(&[C::SYSTEM_STATE_IDLE]);
        let after = self
            .base
            .queue_flagged(msg0(C::SYSTEM_STATE_IDLE, 0), deadline)?;
        let wait = IdleWait::new(self.base.clone(), sub, after, self.base.timeout, deadline)?;
        Ok(Op::new(
            "the system to become idle after SYSTEM_STATE_IDLE",
            deadline,
            self.base.timeout,
            wait,
        ))
    }

    /// Waits until the system is idle, at most `timeout`: returns at once if
    /// a state query reports idle, else at the next idle broadcast (the state
    /// is also asked again every 0.5 s, in case a broadcast is lost).
    pub fn wait_until_idle(&self, timeout: Duration) -> Result<()> {
        run(|| self.submit_wait_until_idle(timeout))
    }

    /// Non-blocking form of [`wait_until_idle`](System::wait_until_idle).
    pub fn submit_wait_until_idle(&self, timeout: Duration) -> Result<Op<()>> {
        let deadline = Deadline::after(timeout);
        let client = &self.base.client;
        let sub = client.subscribe_to(&[C::SYSTEM_STATE_IDLE]);
        let after = client.last_seq();
        let wait = IdleWait::new(
            self.base.clone(),
            sub,
            after,
            self.base.timeout.min(timeout),
            deadline,
        )?;
        Ok(Op::new(
            "the system to become idle",
            deadline,
            timeout,
            wait,
        ))
    }
}

/// Waits for an idle broadcast after `after`, or a state reply saying idle.
struct IdleWait {
    base: Base,
    sub: Subscription,
    after: u64,
    query: Option<ReplyOp<Reply>>,
    query_timeout: Duration,
    /// The operation's deadline: no poll outlives it.
    deadline: Deadline,
    next_query: Instant,
}

impl IdleWait {
    fn new(
        base: Base,
        sub: Subscription,
        after: u64,
        query_timeout: Duration,
        deadline: Deadline,
    ) -> Result<IdleWait> {
        let mut w = IdleWait {
            base,
            sub,
            after,
            query: None,
            query_timeout,
            deadline,
            next_query: Instant::now(),
        };
        w.query = Some(w.poll_state()?);
        w.next_query = Instant::now() + POLL_INTERVAL;
        Ok(w)
    }

    /// A state query with its own shorter deadline, within the operation's.
    fn poll_state(&self) -> Result<ReplyOp<Reply>> {
        let d = Deadline::after(self.query_timeout).min(self.deadline);
        self.base
            .submit_within(msg0(C::SYSTEM_STATE_GET, 0), d, self.query_timeout)
    }

    /// Handles a state reply; `Ok(true)` when idle.
    fn on_reply(&mut self, r: Result<crate::Reply>) -> Result<bool> {
        self.query = None;
        self.next_query = Instant::now() + POLL_INTERVAL;
        match r {
            Ok(reply) => Ok(SystemState::from_wire(reply.message.int32_data0) == SystemState::Idle),
            // A busy instrument may not answer a poll in time: keep waiting
            // for the broadcast (the operation's own deadline still applies).
            Err(Error::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads what is there without blocking; `Ok(true)` when idle.
    fn drain(&mut self) -> Result<bool> {
        while let Some(ev) = recv_event(&self.sub, None) {
            let ev = ev?;
            if ev.seq > self.after && ev.kind == EventKind::SystemIdle {
                return Ok(true);
            }
        }
        if let Some(p) = &mut self.query {
            if let Some(r) = recv_reply(p, None) {
                return self.on_reply(r);
            }
        } else if Instant::now() >= self.next_query {
            self.query = Some(self.poll_state()?);
        }
        Ok(false)
    }
}

impl Step<()> for IdleWait {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<()>> {
        loop {
            match self.drain() {
                Ok(true) => return Some(Ok(())),
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
            let until = until?;
            let now = Instant::now();
            if now >= until {
                return None;
            }
            // Wake for the next event, or to look at the query again.
            let wake = until.min(if self.query.is_some() {
                now + Duration::from_millis(20)
            } else {
                self.next_query
            });
            match recv_event(&self.sub, Some(wake)) {
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(ev)) if ev.seq > self.after && ev.kind == EventKind::SystemIdle => {
                    return Some(Ok(()));
                }
                _ => {}
            }
        }
    }
}
