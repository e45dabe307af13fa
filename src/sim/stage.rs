//! The stage model: four axes moving at constant velocity, and the thread
//! that ends moves with `STAGE_MOTION_STOPPED`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::shared::Shared;
use super::SimConfig;
use crate::codec::{CommandCode, Message};

/// Stage axis X (mm), as sent in `int32Data0`.
pub const AXIS_X: i32 = 1;
/// Stage axis Y (mm).
pub const AXIS_Y: i32 = 2;
/// Stage axis Z (mm).
pub const AXIS_Z: i32 = 3;
/// Stage axis R (degrees).
pub const AXIS_R: i32 = 4;

#[derive(Clone, Copy, Debug)]
struct Motion {
    from: f64,
    to: f64,
    start: Instant,
    arrive: Instant,
}

#[derive(Clone, Debug)]
pub(crate) struct AxisState {
    pos: f64,
    pub velocity: f64,
    pub min: f64,
    pub max: f64,
    pub home: f64,
    motion: Option<Motion>,
}

impl AxisState {
    pub(crate) fn position_at(&self, t: Instant) -> f64 {
        match self.motion {
            None => self.pos,
            Some(m) if t <= m.start => m.from,
            Some(m) if t >= m.arrive => m.to,
            Some(m) => {
                let f = (t - m.start).as_secs_f64() / (m.arrive - m.start).as_secs_f64();
                m.from + (m.to - m.from) * f
            }
        }
    }

    pub(crate) fn is_moving(&self) -> bool {
        self.motion.is_some()
    }
}

pub(crate) struct StageModel {
    pub axes: [AxisState; 4],
    halt_at: Option<Instant>,
}

/// Index 0..4 of axis `n` (1..=4).
pub(crate) fn axis_index(n: i32) -> Option<usize> {
    (1..=4).contains(&n).then(|| (n - 1) as usize)
}

impl StageModel {
    pub(crate) fn new(cfg: &SimConfig) -> StageModel {
        let axis = |i: usize| AxisState {
            pos: cfg.start_position[i],
            velocity: if i == 3 {
                cfg.rotary_velocity
            } else {
                cfg.linear_velocity
            },
            min: cfg.limits[i].0,
            max: cfg.limits[i].1,
            home: cfg.home[i],
            motion: None,
        };
        StageModel {
            axes: [axis(0), axis(1), axis(2), axis(3)],
            halt_at: None,
        }
    }

    /// True if `target` is a finite position within the soft limits of axis `i`.
    pub(crate) fn target_ok(&self, i: usize, target: f64) -> bool {
        let a = &self.axes[i];
        target.is_finite() && target >= a.min && target <= a.max
    }

    /// Starts moving axis `i` to `target` at `start` (replacing any move in progress).
    pub(crate) fn begin_move(&mut self, i: usize, target: f64, start: Instant) {
        let a = &mut self.axes[i];
        let from = a.position_at(start);
        let v = if a.velocity.is_finite() && a.velocity > 0.0 {
            a.velocity
        } else {
            1.0
        };
        let secs = ((target - from).abs() / v).min(1.0e6);
        a.pos = from;
        a.motion = Some(Motion {
            from,
            to: target,
            start,
            arrive: start + Duration::from_secs_f64(secs),
        });
    }

    /// Schedules a halt of every moving axis at `at`.
    pub(crate) fn halt(&mut self, at: Instant) {
        self.halt_at = Some(at);
    }

    fn next_event(&self) -> Option<Instant> {
        self.axes
            .iter()
            .filter_map(|a| a.motion.map(|m| m.arrive))
            .chain(self.halt_at)
            .min()
    }

    /// Ends halts and moves due at `now`; returns the `(axis, position)` of
    /// each axis that stopped.
    fn advance(&mut self, now: Instant) -> Vec<(i32, f64)> {
        let mut stopped = Vec::new();
        if self.halt_at.is_some_and(|t| t <= now) {
            self.halt_at = None;
            for (i, a) in self.axes.iter_mut().enumerate() {
                if a.motion.is_some() {
                    a.pos = a.position_at(now);
                    a.motion = None;
                    stopped.push((i as i32 + 1, a.pos));
                }
            }
        }
        for (i, a) in self.axes.iter_mut().enumerate() {
            if let Some(m) = a.motion {
                if m.arrive <= now {
                    a.pos = m.to;
                    a.motion = None;
                    stopped.push((i as i32 + 1, a.pos));
                }
            }
        }
        stopped
    }
}

/// The stage thread: sleeps until the next arrival or halt (or a wake-up
/// after a new move), then broadcasts `STAGE_MOTION_STOPPED` per stopped axis.
pub(crate) fn run(sh: Arc<Shared>, wake: Receiver<()>) {
    loop {
        let now = Instant::now();
        let (stopped, next) = {
            let mut s = sh.stage.lock();
            let stopped = s.advance(now);
            (stopped, s.next_event())
        };
        for (axis, pos) in stopped {
            log::debug!("sim: axis {axis} stopped at {pos}");
            sh.broadcast(
                Message::new(CommandCode::STAGE_MOTION_STOPPED)
                    .with_status(1)
                    .with_int32_data0(axis)
                    .with_double_data(pos),
            );
        }
        let timer = match next {
            Some(t) => crossbeam_channel::at(t),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(wake) -> r => if r.is_err() { return },
            recv(sh.shutdown_rx) -> _ => return,
            recv(timer) -> _ => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_and_arrival() {
        let mut s = StageModel::new(&SimConfig::default().stage_velocity(10.0, 100.0));
        let t0 = Instant::now();
        s.axes[0].pos = 2.0;
        s.begin_move(0, 4.0, t0);
        let mid = s.axes[0].position_at(t0 + Duration::from_millis(100));
        assert!((mid - 3.0).abs() < 1e-9, "{mid}");
        assert_eq!(s.next_event(), Some(t0 + Duration::from_millis(200)));
        assert!(s.advance(t0 + Duration::from_millis(199)).is_empty());
        assert_eq!(s.advance(t0 + Duration::from_millis(200)), vec![(1, 4.0)]);
        assert!(!s.axes[0].is_moving());
        assert!(!s.target_ok(0, f64::NAN));
        assert!(!s.target_ok(0, 0.5));
        assert!(s.target_ok(3, -720.0));
    }

    #[test]
    fn halt_stops_midway() {
        let mut s = StageModel::new(&SimConfig::default().stage_velocity(10.0, 100.0));
        let t0 = Instant::now();
        s.axes[1].pos = 10.0;
        s.begin_move(1, 20.0, t0);
        s.halt(t0 + Duration::from_millis(500));
        let st = s.advance(t0 + Duration::from_millis(500));
        assert_eq!(st.len(), 1);
        assert!((st[0].1 - 15.0).abs() < 1e-9);
        assert_eq!(s.next_event(), None);
    }
}
