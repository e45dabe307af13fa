//! The stage: positions, moves, halt, home, velocity.

use std::time::{Duration, Instant};

use super::op::{recv_event, recv_reply, ReplyStep, Step};
use super::{finite, msg0, run, Base, BoxStep, Op, SoftLimits};
use crate::codec::{Axis, CommandCode as C};
use crate::events::{Event, EventKind, Subscription};
use crate::{Client, Deadline, Error, Op as ReplyOp, Reply, Result};

/// The default of [`Stage::motion_timeout`]: 60 s.
const DEFAULT_MOTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The position of all four axes: X, Y, Z in millimetres, R in degrees.
///
/// ```
/// use flamingo_client::devices::StagePosition;
/// use flamingo_client::Axis;
///
/// let mut p = StagePosition { x_mm: 8.0, y_mm: 20.0, z_mm: 15.0, r_deg: 0.0 };
/// p.set(Axis::Z, 15.5);
/// assert_eq!(p.get(Axis::Z), 15.5);
/// assert_eq!(p.targets()[3], (Axis::R, 0.0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StagePosition {
    /// X in millimetres.
    pub x_mm: f64,
    /// Y in millimetres.
    pub y_mm: f64,
    /// Z in millimetres.
    pub z_mm: f64,
    /// Rotation in degrees.
    pub r_deg: f64,
}

impl StagePosition {
    /// The coordinate of one axis (mm, or degrees for R).
    pub fn get(&self, axis: Axis) -> f64 {
        match axis {
            Axis::X => self.x_mm,
            Axis::Y => self.y_mm,
            Axis::Z => self.z_mm,
            Axis::R => self.r_deg,
        }
    }

    /// Sets the coordinate of one axis (mm, or degrees for R).
    pub fn set(&mut self, axis: Axis, value: f64) {
        match axis {
            Axis::X => self.x_mm = value,
            Axis::Y => self.y_mm = value,
            Axis::Z => self.z_mm = value,
            Axis::R => self.r_deg = value,
        }
    }

    /// The four axes with their coordinates, for [`Stage::move_all_and_wait`].
    pub fn targets(&self) -> [(Axis, f64); 4] {
        Axis::ALL.map(|a| (a, self.get(a)))
    }
}

/// The end of a move: one `STAGE_MOTION_STOPPED` event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MotionStop {
    /// The axis that stopped.
    pub axis: Axis,
    /// Where it stopped (mm, or degrees for R) as the instrument reports it
    /// (0.0 if it does not).
    pub position: f64,
    /// The raw status: 1 means stopped normally.
    pub status: u32,
    /// The event's sequence number.
    pub seq: u64,
}

impl MotionStop {
    /// True if the instrument reports a normal stop (status 1).
    pub fn is_normal(&self) -> bool {
        self.status == 1
    }
}

/// The stage. Made by [`Client::stage`].
///
/// X, Y and Z are in millimetres, R in degrees (see [`Axis::unit`]). Targets
/// must be finite numbers (checked before sending). With
/// [`soft_limits`](Stage::soft_limits) set, every target is also checked
/// against the stage's soft limits before anything is sent
/// ([`Error::InvalidArgument`] naming the axis, the target and the limits);
/// otherwise the instrument checks, and refuses a move outside them
/// ([`Error::Refused`]).
///
/// Two timeouts apply: [`timeout`](Stage::timeout) for requests (default
/// the client's request timeout) and [`motion_timeout`](Stage::motion_timeout)
/// for operations that wait for the stage to stop (default 60 s).
///
/// # Waiting for a move
///
/// [`move_and_wait`](Stage::move_and_wait) is race-free: it subscribes to
/// `STAGE_MOTION_STOPPED` *before* sending the move, and counts only a stop
/// event for that axis that arrives *after* the move's acknowledgement
/// (anything earlier predates the command). A move that ends before the call
/// could look for it is still seen; a stale stop (say from an earlier move
/// nobody waited for) is never taken for this one.
///
/// **Zero-length moves.** A move to where the axis already is, is sent like
/// any other: it is not short-circuited locally (the client cannot know the
/// position exactly, and another client may be moving the axis). The
/// instrument acknowledges it and reports a `STAGE_MOTION_STOPPED` for it,
/// which `move_and_wait` returns. An instrument that sent no stop event for
/// such a move would make the wait end with `Timeout`.
///
/// ```no_run
/// # fn main() -> flamingo_client::Result<()> {
/// use flamingo_client::{Axis, Client, ClientConfig};
/// use std::time::Duration;
///
/// let client = Client::connect("127.0.0.1:53717", ClientConfig::default())?;
/// let stage = client.stage().motion_timeout(Duration::from_secs(30));
/// let here = stage.positions()?;
/// println!("x {:.3} mm, r {:.2} deg", here.x_mm, here.r_deg);
/// let stop = stage.move_and_wait(Axis::X, here.x_mm + 0.5)?;
/// assert!(stop.is_normal());
/// stage.move_all_and_wait(&[(Axis::Y, 12.0), (Axis::Z, 20.0)])?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Stage {
    base: Base,
    motion_timeout: Duration,
    limits: SoftLimits,
}

impl Stage {
    pub(crate) fn new(base: Base) -> Stage {
        Stage {
            base,
            motion_timeout: DEFAULT_MOTION_TIMEOUT,
            limits: SoftLimits::none(),
        }
    }

    /// Checks every move target against `limits` before sending it (read
    /// them with [`Settings::soft_limits`](super::Settings::soft_limits)). A
    /// target outside them gives [`Error::InvalidArgument`] and nothing is
    /// sent. Homing is not checked (home is within the limits).
    ///
    /// ```
    /// # fn main() -> flamingo_client::Result<()> {
    /// use flamingo_client::devices::SoftLimits;
    /// use flamingo_client::sim::{SimConfig, Simulator};
    /// use flamingo_client::{Axis, Client, ClientConfig, Error};
    ///
    /// let sim = Simulator::start(SimConfig::default().port(0))?;
    /// let client = Client::connect(&sim.addr().to_string(), ClientConfig::default())?;
    /// let stage = client.stage().soft_limits(client.settings().soft_limits()?);
    /// match stage.move_to(Axis::Z, 5.0) {
    ///     Err(Error::InvalidArgument { what }) => assert!(what.contains("11 to 25 mm")),
    ///     other => panic!("{other:?}"),
    /// }
    /// stage.move_and_wait(Axis::Z, 20.0)?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn soft_limits(mut self, limits: SoftLimits) -> Stage {
        self.limits = limits;
        self
    }

    /// The soft limits moves are checked against (none unless
    /// [`soft_limits`](Stage::soft_limits) set them).
    pub fn limits(&self) -> &SoftLimits {
        &self.limits
    }

    /// Sets the deadline of requests (position queries, commands whose
    /// acknowledgement is all that is waited for).
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Stage {
        self.base.timeout = d;
        self
    }

    /// Sets the deadline of operations that wait for the stage to stop
    /// (`*_and_wait`), counted from the call. Default 60 s.
    #[must_use]
    pub fn motion_timeout(mut self, d: Duration) -> Stage {
        self.motion_timeout = d;
        self
    }

    /// The position of one axis (mm, or degrees for R).
    pub fn position(&self, axis: Axis) -> Result<f64> {
        run(|| self.submit_position(axis))
    }

    /// Non-blocking form of [`position`](Stage::position).
    pub fn submit_position(&self, axis: Axis) -> Result<Op<f64>> {
        self.base.query(
            format!("the position of axis {axis}"),
            msg0(C::STAGE_POSITION_GET, axis.wire()),
            move |r| parse_position(axis, &r),
        )
    }

    /// The position of all four axes. The four queries are sent back to back
    /// and answered within one deadline.
    pub fn positions(&self) -> Result<StagePosition> {
        run(|| self.submit_positions())
    }

    /// Non-blocking form of [`positions`](Stage::positions).
    pub fn submit_positions(&self) -> Result<Op<StagePosition>> {
        let deadline = self.base.deadline();
        let mut steps: Vec<BoxStep<f64>> = Vec::with_capacity(4);
        for axis in Axis::ALL {
            let pending = self
                .base
                .submit_at(msg0(C::STAGE_POSITION_GET, axis.wire()), deadline)?;
            steps.push(Box::new(ReplyStep::new(pending, move |r| {
                parse_position(axis, &r)
            })));
        }
        let op: Op<Vec<f64>> = Op::new(
            "the positions of the four axes",
            deadline,
            self.base.timeout,
            super::op::Join::new(steps),
        );
        Ok(op.map(|v| StagePosition {
            x_mm: v[0],
            y_mm: v[1],
            z_mm: v[2],
            r_deg: v[3],
        }))
    }

    /// Starts a move of `axis` to `target` (mm, or degrees for R) and returns
    /// once the instrument has accepted it, without waiting for the motion.
    /// Errors: `InvalidArgument` (NaN or infinite target, or outside the
    /// [`soft_limits`](Stage::soft_limits) set; nothing sent), `Refused`
    /// (the instrument refused, for example outside its soft limits), `Busy`
    /// (for example during a workflow), `Timeout`, `Disconnected`.
    pub fn move_to(&self, axis: Axis, target: f64) -> Result<()> {
        run(|| self.submit_move_to(axis, target))
    }

    /// Non-blocking form of [`move_to`](Stage::move_to).
    pub fn submit_move_to(&self, axis: Axis, target: f64) -> Result<Op<()>> {
        let target = check_target(axis, target)?;
        self.limits.check(axis, target)?;
        self.base.command(
            format!(
                "the acknowledgement of the move of axis {axis} to {target} {}",
                axis.unit()
            ),
            move_msg(axis, target),
        )
    }

    /// Moves `axis` to `target` and waits until that axis reports it has
    /// stopped (race-free; see [the type's documentation](Stage)). Returns
    /// the stop event. One deadline, [`motion_timeout`](Stage::motion_timeout),
    /// covers the acknowledgement and the motion.
    pub fn move_and_wait(&self, axis: Axis, target: f64) -> Result<MotionStop> {
        run(|| self.submit_move_and_wait(axis, target))
    }

    /// Non-blocking form of [`move_and_wait`](Stage::move_and_wait).
    pub fn submit_move_and_wait(&self, axis: Axis, target: f64) -> Result<Op<MotionStop>> {
        let op = self.submit_move_all_and_wait(&[(axis, target)])?;
        Ok(op.map(|mut v| v.remove(0)))
    }

    /// Moves several axes at once and waits until every one of them has
    /// stopped. Returns their stop events in the order of `targets`.
    ///
    /// Every target is checked before anything is sent; an axis may appear
    /// only once. The moves are sent back to back; if the instrument refuses
    /// one, the error is returned and the moves it accepted carry on (call
    /// [`halt`](Stage::halt) to stop them). An empty list sends nothing.
    pub fn move_all_and_wait(&self, targets: &[(Axis, f64)]) -> Result<Vec<MotionStop>> {
        run(|| self.submit_move_all_and_wait(targets))
    }

    /// Non-blocking form of [`move_all_and_wait`](Stage::move_all_and_wait).
    pub fn submit_move_all_and_wait(&self, targets: &[(Axis, f64)]) -> Result<Op<Vec<MotionStop>>> {
        for (i, &(axis, target)) in targets.iter().enumerate() {
            check_target(axis, target)?;
            self.limits.check(axis, target)?;
            if targets[..i].iter().any(|&(a, _)| a == axis) {
                return Err(Error::invalid(format!(
                    "axis {axis} appears twice in the list of moves; give each axis one target"
                )));
            }
        }
        if targets.is_empty() {
            return Ok(Op::ready("no move", Vec::new()));
        }
        let what = describe_moves(targets);
        let deadline = Deadline::after(self.motion_timeout);
        let client = &self.base.client;
        // Armed before anything is sent: no stop event can be missed.
        let sub = client.subscribe_to(&[C::STAGE_MOTION_STOPPED]);
        let mut acks = Vec::with_capacity(targets.len());
        for &(axis, target) in targets {
            acks.push(self.base.submit_within(
                move_msg(axis, target),
                deadline,
                self.motion_timeout,
            )?);
        }
        let axes = targets
            .iter()
            .enumerate()
            .map(|(i, &(a, _))| (a, i))
            .collect();
        Ok(Op::new(
            what,
            deadline,
            self.motion_timeout,
            MotionWait::new(client.clone(), sub, acks, axes),
        ))
    }

    /// Stops every axis at once (emergency stop). Returns once acknowledged.
    pub fn halt(&self) -> Result<()> {
        run(|| self.submit_halt())
    }

    /// Non-blocking form of [`halt`](Stage::halt).
    pub fn submit_halt(&self) -> Result<Op<()>> {
        self.base
            .command("the acknowledgement of STAGE_HALT", msg0(C::STAGE_HALT, 0))
    }

    /// Starts homing every axis; returns once the instrument has accepted it.
    pub fn home(&self) -> Result<()> {
        run(|| self.submit_home())
    }

    /// Non-blocking form of [`home`](Stage::home).
    pub fn submit_home(&self) -> Result<Op<()>> {
        self.base
            .command("the acknowledgement of STAGE_HOME", msg0(C::STAGE_HOME, 0))
    }

    /// Homes every axis and waits until all four report that they stopped
    /// (stop events after the acknowledgement only). Returns the stop events
    /// in the order X, Y, Z, R. Deadline: [`motion_timeout`](Stage::motion_timeout).
    pub fn home_and_wait(&self) -> Result<Vec<MotionStop>> {
        run(|| self.submit_home_and_wait())
    }

    /// Non-blocking form of [`home_and_wait`](Stage::home_and_wait).
    pub fn submit_home_and_wait(&self) -> Result<Op<Vec<MotionStop>>> {
        let deadline = Deadline::after(self.motion_timeout);
        let client = &self.base.client;
        let sub = client.subscribe_to(&[C::STAGE_MOTION_STOPPED]);
        let ack = self
            .base
            .submit_within(msg0(C::STAGE_HOME, 0), deadline, self.motion_timeout)?;
        let axes = Axis::ALL.iter().map(|&a| (a, 0)).collect();
        Ok(Op::new(
            "every axis to stop after STAGE_HOME",
            deadline,
            self.motion_timeout,
            MotionWait::new(client.clone(), sub, vec![ack], axes),
        ))
    }

    /// Sets the velocity of one axis, in mm/s (degrees/s for R). It must be
    /// a finite number above zero.
    pub fn set_velocity(&self, axis: Axis, per_second: f64) -> Result<()> {
        run(|| self.submit_set_velocity(axis, per_second))
    }

    /// Non-blocking form of [`set_velocity`](Stage::set_velocity).
    pub fn submit_set_velocity(&self, axis: Axis, per_second: f64) -> Result<Op<()>> {
        let v = finite(&format!("the velocity of axis {axis}"), per_second)?;
        if v <= 0.0 {
            return Err(Error::invalid(format!(
                "the velocity of axis {axis} must be above zero, not {v} {}/s",
                axis.unit()
            )));
        }
        self.base.command(
            format!("the acknowledgement of the velocity of axis {axis}"),
            msg0(C::STAGE_VELOCITY_SET, axis.wire()).with_double_data(v),
        )
    }
}

fn check_target(axis: Axis, target: f64) -> Result<f64> {
    finite(
        &format!("the target of axis {axis} (in {})", axis.unit()),
        target,
    )
}

fn move_msg(axis: Axis, target: f64) -> crate::codec::Message {
    msg0(C::STAGE_POSITION_SET, axis.wire()).with_double_data(target)
}

fn describe_moves(targets: &[(Axis, f64)]) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|&(a, t)| format!("{a} to {t} {}", a.unit()))
        .collect();
    format!("the stage to stop after moving {}", list.join(", "))
}

fn parse_position(axis: Axis, r: &Reply) -> Result<f64> {
    let v = r.message.double_data;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::protocol(format!(
            "the position of axis {axis} came back as {v}, which is not a number"
        )))
    }
}

/// Waits for the acknowledgements of one or more motion commands, then for
/// one stop event per axis that follows its command's acknowledgement.
struct MotionWait {
    client: Client,
    sub: Subscription,
    /// The motion commands in flight, and once acknowledged, the reply's seq.
    acks: Vec<(Option<ReplyOp<Reply>>, Option<u64>)>,
    /// Each awaited axis and the index of the command that moves it.
    axes: Vec<(Axis, usize)>,
    stops: Vec<Option<MotionStop>>,
    /// Stop events that came before the acknowledgement of their axis's
    /// command had been read (they are judged once it is).
    early: Vec<MotionStop>,
}

impl MotionWait {
    fn new(
        client: Client,
        sub: Subscription,
        acks: Vec<ReplyOp<Reply>>,
        axes: Vec<(Axis, usize)>,
    ) -> MotionWait {
        let n = axes.len();
        MotionWait {
            client,
            sub,
            acks: acks.into_iter().map(|p| (Some(p), None)).collect(),
            axes,
            stops: vec![None; n],
            early: Vec::new(),
        }
    }

    fn on_ack(&mut self, i: usize, r: Result<Reply>) -> Result<()> {
        let reply = r?;
        self.client.check_status(&reply)?;
        self.acks[i] = (None, Some(reply.seq));
        for (k, &(axis, ack)) in self.axes.iter().enumerate() {
            if ack == i && self.stops[k].is_none() {
                self.stops[k] = self
                    .early
                    .iter()
                    .find(|s| s.axis == axis && s.seq > reply.seq)
                    .copied();
            }
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event) {
        let EventKind::MotionStopped {
            axis,
            position,
            status,
        } = ev.kind
        else {
            return;
        };
        let stop = MotionStop {
            axis,
            position,
            status,
            seq: ev.seq,
        };
        let mut keep_early = false;
        for (k, &(a, ack)) in self.axes.iter().enumerate() {
            if a != axis || self.stops[k].is_some() {
                continue;
            }
            match self.acks[ack].1 {
                Some(ack_seq) if ev.seq > ack_seq => self.stops[k] = Some(stop),
                Some(_) => {} // predates the command: stale
                None => keep_early = true,
            }
        }
        if keep_early {
            self.early.push(stop);
        }
    }

    /// Reads whatever is there without blocking. `Err` ends the operation.
    fn drain(&mut self) -> Result<()> {
        for i in 0..self.acks.len() {
            if let (Some(p), None) = &mut self.acks[i] {
                if let Some(r) = recv_reply(p, None) {
                    self.on_ack(i, r)?;
                }
            }
        }
        while let Some(ev) = recv_event(&self.sub, None) {
            self.on_event(ev?);
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.stops.iter().all(Option::is_some)
    }
}

impl Step<Vec<MotionStop>> for MotionWait {
    fn poll(&mut self, until: Option<Instant>) -> Option<Result<Vec<MotionStop>>> {
        loop {
            if let Err(e) = self.drain() {
                return Some(Err(e));
            }
            if self.done() {
                return Some(Ok(self.stops.iter().flatten().copied().collect()));
            }
            let until = until?;
            if Instant::now() >= until {
                return None;
            }
            // Block on the first acknowledgement still missing (it precedes
            // its stop event in the stream), else on the next event.
            let first = self
                .acks
                .iter()
                .position(|(p, seq)| p.is_some() && seq.is_none());
            if let Some(i) = first {
                let p = self.acks[i].0.as_mut().expect("checked");
                let r = recv_reply(p, Some(until))?;
                if let Err(e) = self.on_ack(i, r) {
                    return Some(Err(e));
                }
            } else {
                match recv_event(&self.sub, Some(until))? {
                    Ok(ev) => self.on_event(ev),
                    Err(e) => return Some(Err(e)),
                }
            }
        }
    }
}
