//! Typed device facades: one intent in, the right message out, the reply
//! back as a typed value.
//!
//! Each facade is a cheap owned handle made from a [`Client`]
//! ([`Client::stage`], [`Client::camera`], [`Client::lasers`],
//! [`Client::led`], [`Client::filter_wheel`], [`Client::system`],
//! [`Client::settings`], [`Client::workflows`]). It holds a clone of the
//! client and a timeout (default [`ClientConfig::request_timeout`](crate::ClientConfig::request_timeout),
//! changed with `.timeout(d)`). Every blocking operation has one overall
//! deadline: the timeout counts from the call, across every message it sends
//! and every reply or event it waits for.
//!
//! Arguments are checked before anything is sent: a NaN or infinite
//! position, a laser index outside 1..=4, an LED level outside its range, a
//! text that does not fit... gives [`Error::InvalidArgument`]
//! and nothing goes on the wire. A workflow is checked
//! ([`Workflow::validate`]) before it starts.
//!
//! The stage's soft limits are checked before sending where you opt in:
//! [`SoftLimits`] holds them (read with [`Settings::soft_limits`]), and
//! [`Stage::soft_limits`] / [`Workflows::soft_limits`] make every move or
//! workflow start check them first ([`Error::InvalidArgument`] naming the
//! axis, the value and the limits; nothing sent). Otherwise the instrument
//! judges: it refuses with a status, which becomes [`Error::Refused`]
//! (or [`Error::Busy`] while it is busy, for example running a workflow).
//!
//! Every operation also has a non-blocking `submit_*` form returning an
//! [`Op`], for GUI threads: poll it with [`Op::try_get`] once per frame.
//!
//! ```no_run
//! # fn main() -> flamingo_client::Result<()> {
//! use flamingo_client::{Axis, Client, ClientConfig};
//!
//! let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
//! let stage = client.stage();
//! let z = stage.position(Axis::Z)?;
//! let stop = stage.move_and_wait(Axis::Z, z + 0.010)?;
//! println!("z stopped at {:.3} mm", stop.position);
//! println!("laser 2 at {:.2} %", client.lasers().level_percent(2)?);
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::codec::{CommandCode, Flags, Message};
use crate::{Client, Deadline, Error, Reply, Result};

mod camera;
mod illumination;
mod lasers;
mod limits;
mod op;
mod sections;
mod settings;
mod stage;
mod system;
mod workflow;

pub use crate::Op;
pub use camera::{Camera, ImageSize};
pub use illumination::{
    led_level_from_percent, FilterWheel, Led, LedColour, LED_LEVEL_MAX, LED_LEVEL_MIN,
};
pub use lasers::Lasers;
pub use limits::SoftLimits;
pub use sections::{Entry, Section, MAX_SECTION_DEPTH};
pub use settings::{ScopeSettings, Settings};
pub use stage::{MotionStop, Stage, StagePosition};
pub use system::{System, SystemState};
#[cfg(feature = "sim")]
pub(crate) use workflow::check_syntax;
pub use workflow::{
    StackResult, Workflow, WorkflowBuilder, WorkflowRun, WorkflowSummary, WorkflowUpdate,
    Workflows, MAX_PLANES,
};

use crate::client::Step;
use op::ReplyStep;

/// Facades. Each is cheap: a clone of the client and a timeout.
impl Client {
    /// The stage (X, Y, Z in mm; R in degrees).
    pub fn stage(&self) -> Stage {
        Stage::new(Base::new(self))
    }
    /// The camera (image size, pixel size, exposure, region of interest).
    pub fn camera(&self) -> Camera {
        Camera::new(Base::new(self))
    }
    /// The lasers (levels, preview, all off).
    pub fn lasers(&self) -> Lasers {
        Lasers::new(Base::new(self))
    }
    /// The LED.
    pub fn led(&self) -> Led {
        Led::new(Base::new(self))
    }
    /// The filter wheel.
    pub fn filter_wheel(&self) -> FilterWheel {
        FilterWheel::new(Base::new(self))
    }
    /// The system state.
    pub fn system(&self) -> System {
        System::new(Base::new(self))
    }
    /// The scope settings.
    pub fn settings(&self) -> Settings {
        Settings::new(Base::new(self))
    }
    /// Workflows (acquisitions).
    pub fn workflows(&self) -> Workflows {
        Workflows::new(Base::new(self))
    }
}

/// What every facade holds.
#[derive(Clone, Debug)]
pub(crate) struct Base {
    pub client: Client,
    pub timeout: Duration,
}

impl Base {
    pub(crate) fn new(client: &Client) -> Base {
        Base {
            client: client.clone(),
            timeout: client.config().request_timeout,
        }
    }

    /// The deadline of an operation starting now: computed once, it covers
    /// every message the operation sends and every reply or event it awaits.
    pub fn deadline(&self) -> Deadline {
        Deadline::after(self.timeout)
    }

    /// Starts a request that must be answered by `deadline` (the
    /// operation's), without writing on the calling thread.
    pub fn submit_at(&self, msg: Message, deadline: Deadline) -> Result<Op<Reply>> {
        self.client
            .request_until(msg, &[], deadline, self.timeout, blocking_call())
    }

    /// Starts a request with its own timeout `timeout` (for steps, such as
    /// polls, that have a shorter deadline than their operation).
    pub fn submit_within(
        &self,
        msg: Message,
        deadline: Deadline,
        timeout: Duration,
    ) -> Result<Op<Reply>> {
        self.client
            .request_until(msg, &[], deadline, timeout, false)
    }

    /// Sends a request whose reply status is information, not an error, and
    /// parses the reply.
    pub fn query<T: 'static>(
        &self,
        what: impl Into<String>,
        msg: Message,
        parse: impl FnOnce(Reply) -> Result<T> + Send + 'static,
    ) -> Result<Op<T>> {
        self.query_at(what, msg, self.deadline(), parse)
    }

    /// [`query`](Base::query) within an operation's `deadline`.
    pub fn query_at<T: 'static>(
        &self,
        what: impl Into<String>,
        msg: Message,
        deadline: Deadline,
        parse: impl FnOnce(Reply) -> Result<T> + Send + 'static,
    ) -> Result<Op<T>> {
        let pending = self.submit_at(msg, deadline)?;
        Ok(Op::new(
            what.into(),
            deadline,
            self.timeout,
            ReplyStep::new(pending, parse),
        ))
    }

    /// Sends a request whose reply status is checked with the code's status
    /// policy (busy, refused), then parses the reply.
    pub fn checked<T: 'static>(
        &self,
        what: impl Into<String>,
        msg: Message,
        parse: impl FnOnce(Reply) -> Result<T> + Send + 'static,
    ) -> Result<Op<T>> {
        let client = self.client.clone();
        self.query(what, msg, move |r| {
            client.check_status(&r)?;
            parse(r)
        })
    }

    /// A command acknowledged with a checked status and nothing else.
    pub fn command(&self, what: impl Into<String>, msg: Message) -> Result<Op<()>> {
        self.command_at(what, msg, self.deadline())
    }

    /// [`command`](Base::command) within an operation's `deadline`.
    pub fn command_at(
        &self,
        what: impl Into<String>,
        msg: Message,
        deadline: Deadline,
    ) -> Result<Op<()>> {
        let client = self.client.clone();
        self.query_at(what, msg, deadline, move |r| client.check_status(&r))
    }

    /// A message queued without waiting for a reply or for its write, with
    /// TRIGGER_CALL_BACK set (the instrument may or may not answer). Never
    /// blocks; a request queued after it is written after it. Returns the
    /// sequence number before the send.
    pub fn queue_flagged(&self, msg: Message, deadline: Deadline) -> Result<u64> {
        self.client.send_detached(
            msg.with_flags(msg.flags | Flags::TRIGGER_CALL_BACK),
            &[],
            deadline,
            self.timeout,
        )
    }

    /// A message sent without waiting for a reply, with TRIGGER_CALL_BACK
    /// set (the instrument may or may not answer), written by `deadline`
    /// (the operation's). Returns the sequence number before the send.
    pub fn send_flagged(&self, msg: Message, deadline: Deadline) -> Result<u64> {
        self.client.send_until(
            msg.with_flags(msg.flags | Flags::TRIGGER_CALL_BACK),
            &[],
            deadline,
            self.timeout,
        )
    }
}

/// A finite number, or an invalid-argument error naming it.
pub(crate) fn finite(what: &str, v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::invalid(format!(
            "{what} must be a finite number, not {v}"
        )))
    }
}

/// A message with `int32_data0` set.
pub(crate) fn msg0(code: CommandCode, i0: i32) -> Message {
    Message::new(code).with_int32_data0(i0)
}

thread_local! {
    /// Set while a blocking facade call builds its operation: its requests
    /// are then written on the calling thread (which blocks anyway), saving
    /// the hand-off to the sender thread that `submit_*` forms need.
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Builds an operation with `submit` and blocks on it: the blocking form of
/// every facade operation.
pub(crate) fn run<T: 'static>(submit: impl FnOnce() -> Result<Op<T>>) -> Result<T> {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.0));
        }
    }
    let restore = Restore(BLOCKING.with(|b| b.replace(true)));
    let op = submit();
    drop(restore);
    op?.wait()
}

/// True inside [`run`]: requests may be written on the calling thread.
fn blocking_call() -> bool {
    BLOCKING.with(std::cell::Cell::get)
}

/// Keeps `Step` nameable from sibling modules.
pub(crate) type BoxStep<T> = Box<dyn Step<T>>;
