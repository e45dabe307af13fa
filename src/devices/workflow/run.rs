//! Following a running workflow: [`WorkflowRun`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::codec::CommandCode as C;
use crate::devices::op::{recv_event, recv_reply};
use crate::devices::SystemState;
use crate::events::{Event, EventKind, Subscription};
use crate::{Client, Deadline, Error, Op as ReplyOp, Reply, Result};

/// The codes a run listens to.
pub(crate) const RUN_CODES: [C; 7] = [
    C::CAMERA_WORK_FLOW_START,
    C::UI_SET_GAUGE_SIZE,
    C::UI_SET_GAUGE_VALUE,
    C::CAMERA_STACK_COMPLETE,
    C::LASER_LEVEL_GET,
    C::UI_IMAGES_SAVED_TO_STORAGE,
    C::SYSTEM_STATE_IDLE,
];

/// One `CAMERA_STACK_COMPLETE` report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StackResult {
    /// Images acquired.
    pub acquired: i32,
    /// Images expected.
    pub expected: i32,
    /// Errors counted by the instrument.
    pub errors: i32,
    /// How long the stack took, as the instrument reports it.
    pub duration: Duration,
}

/// What a finished workflow did.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowSummary {
    /// Images acquired: the sum over the stack-complete reports, or the last
    /// progress value if there was none.
    pub images_acquired: u64,
    /// Images expected: the sum over the stack-complete reports, or the
    /// progress maximum if there was none.
    pub images_expected: u64,
    /// Errors reported by the instrument (sum over the stacks).
    pub errors: u64,
    /// Every stack-complete report, in order.
    pub stacks: Vec<StackResult>,
    /// Images the instrument reports as saved, if it said.
    pub images_saved: Option<i32>,
    /// From the start command to the end of the run, on this computer's clock.
    pub duration: Duration,
    /// True if the instrument acknowledged the start.
    pub acknowledged: bool,
    /// True if the run was ended by a stop request.
    pub stopped: bool,
    /// Events of this run lost because its queue overflowed (the reader
    /// never waits for a slow consumer). When non-zero, the counts above may
    /// miss stacks, so the run is not reported complete.
    pub events_lost: u64,
}

impl WorkflowSummary {
    /// True if every expected image was acquired without errors, and no
    /// event of the run was lost.
    pub fn is_complete(&self) -> bool {
        self.images_acquired >= self.images_expected
            && self.errors == 0
            && !self.stopped
            && self.events_lost == 0
    }
}

/// Something that happened in a run, from [`WorkflowRun::try_next`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum WorkflowUpdate {
    /// The instrument acknowledged the start (if it does so at all).
    Acknowledged,
    /// The run was seen running (first progress or stack report, or a busy
    /// state). Only after this can an idle state end it.
    Running,
    /// The progress maximum.
    GaugeSize {
        /// The maximum.
        total: i32,
    },
    /// Progress.
    Progress {
        /// Current value.
        current: i32,
        /// Maximum.
        total: i32,
    },
    /// A laser's level, reported during the run.
    LaserLevel {
        /// Laser 1 to 4.
        laser: i32,
        /// Its level in percent (`None` if the text was not a number).
        level_percent: Option<f64>,
    },
    /// A stack finished.
    StackComplete(StackResult),
    /// Images were saved.
    ImagesSaved {
        /// As reported (`int32Data0`).
        count: i32,
    },
    /// The run ended; the last update.
    Finished(WorkflowSummary),
}

/// A workflow that was started, from [`Workflows::start`](super::Workflows::start).
///
/// It follows the unsolicited messages of the run: progress, laser levels,
/// stack reports, and the return to idle that ends it. Only messages that
/// arrive after the start command count. An idle state ends the run only
/// once the run has been seen running (a progress or stack-complete report,
/// or a state query answering busy) or after [`stop`](WorkflowRun::stop):
/// an idle broadcast that predates the run, even one arriving just after
/// the start, does not end it.
///
/// Whether the instrument acknowledges a start is not known; both cases
/// work. An acknowledgement with a busy status ends the run with
/// [`Error::Busy`] (a refusal with [`Error::Refused`]). The first
/// acknowledgement after the start is taken as this start's, so start one
/// workflow at a time: a start sent before the previous start's
/// acknowledgement has arrived could be confused with it.
///
/// Non-blocking use (a GUI): call [`try_next`](WorkflowRun::try_next) every
/// frame. Blocking use: [`wait`](WorkflowRun::wait). Dropping the handle
/// does not stop the workflow.
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Client, ClientConfig};
/// use flamingo_client::devices::{Workflow, WorkflowUpdate};
/// use std::time::Duration;
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let mut run = client.workflows().start(&Workflow::load("ZStack.txt")?)?;
/// while let Some(update) = run.next_timeout(Duration::from_secs(60)) {
///     match update? {
///         WorkflowUpdate::Progress { current, total } => println!("{current} / {total}"),
///         WorkflowUpdate::Finished(summary) => {
///             println!("{} of {} images in {:?}", summary.images_acquired, summary.images_expected, summary.duration);
///             break;
///         }
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct WorkflowRun {
    client: Client,
    sub: Subscription,
    start_seq: u64,
    started_at: Instant,
    /// A state query in flight: sent right after the start (busy confirms
    /// the run) and again whenever a running workflow has been quiet for
    /// [`STATE_POLL`] (idle then ends it, in case the idle broadcast was lost).
    probe: Option<ReplyOp<Reply>>,
    /// Whether the probe in flight is a poll of a running workflow.
    probe_is_poll: bool,
    /// Run events received since the poll was sent.
    events_since_poll: u64,
    /// When the last event of this run arrived.
    last_activity: Instant,
    acknowledged: bool,
    ack_seen: bool,
    running: bool,
    stop_after: Option<u64>,
    gauge_total: Option<i32>,
    progress: Option<(i32, i32)>,
    stacks: Vec<StackResult>,
    images_saved: Option<i32>,
    queue: VecDeque<Result<WorkflowUpdate>>,
    /// Set when the last update has been queued.
    outcome: Option<Outcome>,
}

#[derive(Debug)]
enum Outcome {
    Finished(WorkflowSummary),
    Failed(Error),
}

impl fmt::Debug for WorkflowRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowRun")
            .field("start_seq", &self.start_seq)
            .field("acknowledged", &self.acknowledged)
            .field("running", &self.running)
            .field("progress", &self.progress)
            .field("stacks", &self.stacks.len())
            .field("finished", &self.outcome.is_some())
            .finish()
    }
}

impl WorkflowRun {
    pub(crate) fn new(
        client: Client,
        sub: Subscription,
        start_seq: u64,
        started_at: Instant,
        probe: Option<ReplyOp<Reply>>,
    ) -> WorkflowRun {
        WorkflowRun {
            client,
            sub,
            start_seq,
            started_at,
            probe,
            probe_is_poll: false,
            events_since_poll: 0,
            last_activity: started_at,
            acknowledged: false,
            ack_seen: false,
            running: false,
            stop_after: None,
            gauge_total: None,
            progress: None,
            stacks: Vec::new(),
            images_saved: None,
            queue: VecDeque::new(),
            outcome: None,
        }
    }

    /// The next update if there is one; never blocks. After the last update
    /// (`Finished` or an error) it returns `None`.
    pub fn try_next(&mut self) -> Option<Result<WorkflowUpdate>> {
        self.pump(None);
        self.queue.pop_front()
    }

    /// The next update, waiting at most `timeout`. `None` if nothing
    /// happened in that time, or after the last update.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<WorkflowUpdate>> {
        let until = Deadline::after(timeout);
        loop {
            if let Some(u) = self.queue.pop_front() {
                return Some(u);
            }
            if self.outcome.is_some() || until.expired() {
                return None;
            }
            self.pump(Some(until.wait_slice()));
        }
    }

    /// Waits until the run ends, at most `timeout`, and returns its summary.
    /// Updates not yet taken are consumed. After the end, it returns the
    /// same summary (or error) again at once.
    ///
    /// Errors: `Busy` / `Refused` (the instrument would not start it),
    /// `Disconnected`, `Timeout` (the run is still going: it is not stopped).
    pub fn wait(&mut self, timeout: Duration) -> Result<WorkflowSummary> {
        let until = Deadline::after(timeout);
        loop {
            while self.queue.pop_front().is_some() {}
            match &self.outcome {
                Some(Outcome::Finished(s)) => return Ok(s.clone()),
                Some(Outcome::Failed(e)) => return Err(dup(e)),
                None => {}
            }
            if until.expired() {
                let (done, total) = self.progress.unwrap_or((0, self.gauge_total.unwrap_or(0)));
                return Err(Error::timeout(
                    crate::TimeoutPhase::Event,
                    format!("the workflow to finish ({done} of {total} planes done so far; it is still running)"),
                    timeout,
                ));
            }
            self.pump(Some(until.wait_slice()));
        }
    }

    /// Asks the instrument to stop the workflow (`CAMERA_WORK_FLOW_STOP`) and
    /// returns once it has acknowledged. The run then ends at the next idle
    /// state, with [`WorkflowSummary::stopped`] set.
    pub fn stop(&mut self) -> Result<()> {
        self.stop_after.get_or_insert(self.client.last_seq());
        let timeout = self.client.config().request_timeout;
        self.client
            .request_checked(super::stop_msg(), timeout)
            .map(|_| ())
    }

    /// Non-blocking form of [`stop`](WorkflowRun::stop): the returned
    /// operation yields the acknowledgement.
    pub fn submit_stop(&mut self) -> Result<crate::devices::Op<()>> {
        self.stop_after.get_or_insert(self.client.last_seq());
        let base = crate::devices::Base::new(&self.client);
        base.command(
            "the acknowledgement of CAMERA_WORK_FLOW_STOP",
            super::stop_msg(),
        )
    }

    /// The sequence number of the last message received before the start was
    /// sent: only events with a larger one belong to this run.
    pub fn start_seq(&self) -> u64 {
        self.start_seq
    }

    /// True once the run has ended (its last update may not be taken yet).
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// True once the run has been seen running.
    pub fn is_running(&self) -> bool {
        self.running && self.outcome.is_none()
    }

    /// The latest progress `(current, total)`, if any was reported.
    pub fn progress(&self) -> Option<(i32, i32)> {
        self.progress
    }

    /// Time since the start command.
    pub fn elapsed(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// Events lost because this run's queue overflowed while nobody read it
    /// (the oldest are dropped; the end of the run is never lost this way
    /// unless more than the queue depth of events follow it).
    pub fn events_dropped(&self) -> u64 {
        self.sub.dropped()
    }

    /// Processes what has arrived; with `until`, waits up to then for more.
    fn pump(&mut self, until: Option<Instant>) {
        if self.outcome.is_some() {
            return;
        }
        self.drain();
        let Some(until) = until else { return };
        if self.outcome.is_some() || !self.queue.is_empty() {
            return;
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        // While the probe is out, wake now and then to look at it; while the
        // run is quiet, wake to poll the state.
        let wake = if self.probe.is_some() {
            until.min(now + Duration::from_millis(20))
        } else if self.running {
            until.min(self.last_activity + STATE_POLL)
        } else {
            until
        };
        match recv_event(&self.sub, Some(wake)) {
            None => self.maybe_poll(),
            Some(ev) => self.on_input(ev),
        }
        self.drain();
    }

    /// Sends a state query if the run has been seen running and quiet for
    /// [`STATE_POLL`].
    fn maybe_poll(&mut self) {
        if self.outcome.is_some()
            || !self.running
            || self.probe.is_some()
            || self.last_activity.elapsed() < STATE_POLL
        {
            return;
        }
        let timeout = self.client.config().request_timeout;
        match self
            .client
            .submit(super::msg0(C::SYSTEM_STATE_GET, 0), timeout)
        {
            Ok(p) => {
                self.probe = Some(p);
                self.probe_is_poll = true;
                self.events_since_poll = 0;
            }
            Err(e) => self.fail(e),
        }
        // Quiet again from now: the next poll comes one interval later.
        self.last_activity = Instant::now();
    }

    /// Handles everything available without blocking. The probe's reply is
    /// handled after the events that arrived before it.
    fn drain(&mut self) {
        let mut probe_reply = None;
        if let Some(p) = &mut self.probe {
            if let Some(r) = recv_reply(p, None) {
                self.probe = None;
                probe_reply = Some(r);
            }
        }
        self.drain_events();
        if let Some(r) = probe_reply {
            self.on_probe(r);
        }
    }

    fn drain_events(&mut self) {
        while self.outcome.is_none() {
            match recv_event(&self.sub, None) {
                None => break,
                Some(ev) => self.on_input(ev),
            }
        }
    }

    fn on_probe(&mut self, r: Result<Reply>) {
        if self.outcome.is_some() {
            return;
        }
        let poll = std::mem::take(&mut self.probe_is_poll);
        match r {
            Ok(reply) => match SystemState::from_wire(reply.message.int32_data0) {
                SystemState::Busy => self.mark_running(),
                // A poll of a quiet running workflow found the instrument
                // idle, and nothing of the run arrived since: it ended and
                // its idle broadcast was lost.
                SystemState::Idle if poll && self.running && self.events_since_poll == 0 => {
                    log::warn!("workflow run: the instrument is idle but no idle event arrived; ending the run");
                    self.finish();
                }
                _ => {}
            },
            Err(Error::Timeout { .. }) => {} // the events still tell
            Err(e) => self.fail(e),
        }
    }

    fn on_input(&mut self, ev: Result<Event>) {
        match ev {
            Ok(ev) => self.on_event(ev),
            Err(e) => self.fail(e),
        }
    }

    fn on_event(&mut self, ev: Event) {
        if self.outcome.is_some() || ev.seq <= self.start_seq {
            return;
        }
        let Some(msg) = ev.message else { return };
        self.last_activity = Instant::now();
        self.events_since_poll += 1;
        match ev.kind {
            EventKind::GaugeSize { total } => {
                self.mark_running();
                self.gauge_total = Some(total);
                self.queue
                    .push_back(Ok(WorkflowUpdate::GaugeSize { total }));
            }
            EventKind::GaugeValue { current, total } => {
                self.mark_running();
                self.progress = Some((current, total));
                self.queue
                    .push_back(Ok(WorkflowUpdate::Progress { current, total }));
            }
            EventKind::StackComplete {
                acquired,
                expected,
                errors,
                duration_us,
            } => {
                self.mark_running();
                let stack = StackResult {
                    acquired,
                    expected,
                    errors,
                    duration: Duration::try_from_secs_f64(duration_us / 1e6).unwrap_or_default(),
                };
                self.stacks.push(stack);
                self.queue
                    .push_back(Ok(WorkflowUpdate::StackComplete(stack)));
            }
            EventKind::LaserLevel {
                laser,
                level_percent,
            } => self.queue.push_back(Ok(WorkflowUpdate::LaserLevel {
                laser,
                level_percent,
            })),
            EventKind::ImagesSaved { count } => {
                self.images_saved = Some(count);
                self.queue
                    .push_back(Ok(WorkflowUpdate::ImagesSaved { count }));
            }
            EventKind::SystemIdle => {
                let after_stop = self.stop_after.is_some_and(|s| ev.seq > s);
                if self.running || after_stop {
                    self.finish();
                } else {
                    log::debug!(
                        "workflow run: ignoring idle #{} (the run was not seen running yet)",
                        ev.seq
                    );
                }
            }
            // Only the first acknowledgement after the start is ours: the
            // instrument answers in order, and a later one answers a later start.
            _ if msg.code == C::CAMERA_WORK_FLOW_START && !self.ack_seen => {
                self.ack_seen = true;
                let reply = Reply {
                    message: msg,
                    data: Vec::new(),
                    seq: ev.seq,
                    received_at: ev.received_at,
                };
                match self.client.check_status(&reply) {
                    Ok(()) => {
                        self.acknowledged = true;
                        self.queue.push_back(Ok(WorkflowUpdate::Acknowledged));
                    }
                    Err(e) => self.fail(e),
                }
            }
            _ => {}
        }
    }

    fn mark_running(&mut self) {
        if !self.running {
            self.running = true;
            self.queue.push_back(Ok(WorkflowUpdate::Running));
        }
    }

    fn summary(&self) -> WorkflowSummary {
        let sum = |f: fn(&StackResult) -> i32| -> u64 {
            self.stacks
                .iter()
                .map(|s| u64::try_from(f(s)).unwrap_or(0))
                .sum()
        };
        let (acquired, expected) = if self.stacks.is_empty() {
            let (cur, tot) = self.progress.unwrap_or((0, self.gauge_total.unwrap_or(0)));
            (
                u64::try_from(cur).unwrap_or(0),
                u64::try_from(self.gauge_total.unwrap_or(tot)).unwrap_or(0),
            )
        } else {
            (sum(|s| s.acquired), sum(|s| s.expected))
        };
        WorkflowSummary {
            images_acquired: acquired,
            images_expected: expected,
            errors: sum(|s| s.errors),
            stacks: self.stacks.clone(),
            images_saved: self.images_saved,
            duration: self.started_at.elapsed(),
            acknowledged: self.acknowledged,
            stopped: self.stop_after.is_some(),
            events_lost: self.sub.dropped(),
        }
    }

    fn finish(&mut self) {
        let s = self.summary();
        self.queue
            .push_back(Ok(WorkflowUpdate::Finished(s.clone())));
        self.outcome = Some(Outcome::Finished(s));
        self.probe = None;
    }

    fn fail(&mut self, e: Error) {
        if self.outcome.is_some() {
            return;
        }
        self.outcome = Some(Outcome::Failed(dup(&e)));
        self.queue.push_back(Err(e));
        self.probe = None;
    }

    /// Used by `start`: processes input until the probe has been answered
    /// (or `until`). Returns the run's failure, if it failed meanwhile.
    pub(crate) fn confirm(&mut self, until: Deadline) -> Result<()> {
        while self.probe.is_some() && self.outcome.is_none() && !until.expired() {
            let r = self
                .probe
                .as_mut()
                .and_then(|p| recv_reply(p, Some(until.wait_slice())));
            if let Some(r) = r {
                self.probe = None;
                self.drain_events();
                self.on_probe(r);
            }
        }
        self.drain();
        match &self.outcome {
            Some(Outcome::Failed(e)) => {
                self.queue.retain(|u| u.is_ok());
                Err(dup(e))
            }
            _ => Ok(()),
        }
    }
}

/// How long a running workflow may be quiet before its state is polled.
pub const STATE_POLL: Duration = Duration::from_secs(5);

/// A copy of an error, for outcomes reported more than once.
fn dup(e: &Error) -> Error {
    e.duplicate()
}
