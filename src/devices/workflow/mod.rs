//! Workflows: the files that describe an acquisition, starting them, and
//! following a run to its end.

use std::time::{Duration, Instant};

use super::{msg0, run as run_op, Base, Op, Settings, SoftLimits};
use crate::codec::{CommandCode as C, Flags, Message};
use crate::Result;

mod builder;
mod file;
mod run;

pub use builder::WorkflowBuilder;
#[cfg(feature = "sim")]
pub(crate) use file::check_syntax;
pub use file::{Workflow, MAX_PLANES};
pub use run::{StackResult, WorkflowRun, WorkflowSummary, WorkflowUpdate};

/// Starts and stops workflows. Made by [`Client::workflows`](crate::Client::workflows).
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
/// use flamingo_client::devices::WorkflowBuilder;
/// use std::time::Duration;
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let here = client.stage().positions()?;
/// let wf = WorkflowBuilder::z_stack(here, 50, 2.5).laser(2, 10.0).build()?;
/// let mut run = client.workflows().start(&wf)?;
/// let summary = run.wait(Duration::from_secs(600))?;
/// println!("{} of {} images, {} errors, {:.1} s",
///     summary.images_acquired, summary.images_expected, summary.errors,
///     summary.duration.as_secs_f64());
/// # Ok(()) }
/// ```
///
/// Every start is checked first: [`Workflow::validate`] always, and the
/// stage's soft limits ([`SoftLimits::check_workflow`]: start, end, angles,
/// every tile) once [`soft_limits`](Workflows::soft_limits) set them.
/// [`check`](Workflows::check) does both against the instrument's own
/// settings without starting anything.
#[derive(Clone, Debug)]
pub struct Workflows {
    base: Base,
    limits: SoftLimits,
}

impl Workflows {
    pub(crate) fn new(base: Base) -> Workflows {
        Workflows {
            base,
            limits: SoftLimits::none(),
        }
    }

    /// Checks every workflow against `limits` before starting it (read them
    /// with [`Settings::soft_limits`]): a workflow that would take the stage
    /// outside them gives [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// and nothing is sent.
    ///
    /// ```
    /// # fn main() -> flamingo_client::Result<()> {
    /// use flamingo_client::devices::Workflow;
    /// use flamingo_client::sim::{SimConfig, Simulator};
    /// use flamingo_client::{Client, ClientConfig, Error};
    ///
    /// let sim = Simulator::start(SimConfig::default().port(0))?;
    /// let client = Client::connect(&sim.addr().to_string(), ClientConfig::default())?;
    /// let workflows = client.workflows().soft_limits(client.settings().soft_limits()?);
    /// let mut wf = Workflow::load("fixtures/ZStack.txt")?;
    /// wf.set("Start Position", "Z (mm)", "5")?;
    /// match workflows.start(&wf) {
    ///     Err(Error::InvalidArgument { what }) => assert!(what.contains("z 5 mm at the workflow's start position")),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(sim.workflows().is_empty());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn soft_limits(mut self, limits: SoftLimits) -> Workflows {
        self.limits = limits;
        self
    }

    /// Checks `workflow` as a start would, against the instrument's own soft
    /// limits (read now with [`Settings::soft_limits`]), without starting
    /// it. Returns the limits it was checked against.
    ///
    /// Errors: `InvalidArgument` (the file has mistakes, checked before
    /// anything is sent, or it leaves the soft limits), and those of
    /// reading the settings.
    pub fn check(&self, workflow: &Workflow) -> Result<SoftLimits> {
        workflow.validate()?;
        let limits = Settings::new(self.base.clone()).soft_limits()?;
        limits.check_workflow(workflow)?;
        Ok(limits)
    }

    /// Sets the deadline of [`start`](Workflows::start)'s confirmation and of
    /// [`stop`](Workflows::stop).
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Workflows {
        self.base.timeout = d;
        self
    }

    /// Starts `workflow` (`CAMERA_WORK_FLOW_START` with the file as
    /// additional data) and returns the run once the instrument has taken
    /// the command in: a state query sent right after it has been answered
    /// (busy confirms the run), or the facade's timeout passed (a busy
    /// instrument may not answer; the run is returned anyway and its events
    /// tell the rest).
    ///
    /// Errors: `InvalidArgument` if the file fails [`Workflow::validate`] or
    /// the [`soft_limits`](Workflows::soft_limits) set (nothing sent), `Busy`
    /// or `Refused` if the instrument acknowledges the start with such a
    /// status before that, `TooLarge` if the file exceeds the client's
    /// additional-data limit (nothing sent), `Disconnected`.
    pub fn start(&self, workflow: &Workflow) -> Result<WorkflowRun> {
        let deadline = self.base.deadline();
        let mut run = self.submit_start(workflow)?;
        run.confirm(deadline)?;
        Ok(run)
    }

    /// Non-blocking form of [`start`](Workflows::start): sends the start and
    /// returns the run at once. A refusal shows up as the run's first error.
    /// The checks of [`start`](Workflows::start) come first.
    pub fn submit_start(&self, workflow: &Workflow) -> Result<WorkflowRun> {
        if self.limits.is_empty() {
            workflow.validate()?;
        } else {
            self.limits.check_workflow(workflow)?;
        }
        let client = &self.base.client;
        let started_at = Instant::now();
        // Armed before the start goes out: nothing it causes can be missed.
        let sub = client.subscribe_to(&run::RUN_CODES);
        let msg = Message::new(C::CAMERA_WORK_FLOW_START).with_flags(Flags::TRIGGER_CALL_BACK);
        let deadline = self.base.deadline();
        let start_seq =
            client.send_detached(msg, workflow.as_bytes(), deadline, self.base.timeout)?;
        let probe = self
            .base
            .submit_at(msg0(C::SYSTEM_STATE_GET, 0), deadline)
            .map_err(|e| log::debug!("workflow start: state probe not sent: {e}"))
            .ok();
        Ok(WorkflowRun::new(
            client.clone(),
            sub,
            start_seq,
            started_at,
            probe,
        ))
    }

    /// Stops the running workflow (`CAMERA_WORK_FLOW_STOP`); returns once
    /// acknowledged. With a [`WorkflowRun`] at hand, prefer
    /// [`WorkflowRun::stop`], which also lets the run end as stopped.
    pub fn stop(&self) -> Result<()> {
        run_op(|| self.submit_stop())
    }

    /// Non-blocking form of [`stop`](Workflows::stop).
    pub fn submit_stop(&self) -> Result<Op<()>> {
        self.base
            .command("the acknowledgement of CAMERA_WORK_FLOW_STOP", stop_msg())
    }
}

pub(crate) fn stop_msg() -> Message {
    Message::new(C::CAMERA_WORK_FLOW_STOP)
}
