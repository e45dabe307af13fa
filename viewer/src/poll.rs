//! Taking what the library and the viewer's threads have for the UI, once
//! per frame, without blocking: `try_recv`, `try_get` and `try_next` only.

use std::time::{Duration, Instant};

use flamingo_client::devices::WorkflowUpdate;
use flamingo_client::{ConnectionState, EventKind};

use crate::app::Viewer;
use crate::display::Source;
use crate::live::Acquired;
use crate::model::{axis_index, LineKind};

/// Events taken from the subscription per frame at most, and the time spent
/// taking them: a flood is spread over frames instead of stalling one (the
/// subscription's bounded queue drops the oldest meanwhile, and counts them).
const EVENTS_PER_FRAME: usize = 2000;
const EVENTS_TIME_PER_FRAME: Duration = Duration::from_micros(250);
/// Stage position queries while an axis moves.
const POSITION_POLL: Duration = Duration::from_millis(100);

impl Viewer {
    /// Takes everything the library has for the UI, without blocking.
    pub(crate) fn poll(&mut self) {
        // Connecting thread finished?
        if let Some((rx, _)) = &self.connecting {
            if let Ok(r) = rx.try_recv() {
                self.connecting = None;
                match r {
                    Ok(c) => self.on_connected(c),
                    Err(e) => {
                        self.model.set_conn(ConnectionState::NotConnected);
                        self.model.error(format!("connection failed: {e}"));
                    }
                }
            }
        }
        // Background jobs.
        let mut done = Vec::new();
        self.jobs.retain(|rx| match rx.try_recv() {
            Ok(a) => {
                done.push(a);
                false
            }
            Err(crossbeam_channel::TryRecvError::Empty) => true,
            Err(_) => false,
        });
        for a in done {
            a(&mut self.model);
        }
        if let Some(store) = &self.store {
            while let Ok(r) = store.results.try_recv() {
                if let Err(e) = r {
                    self.model.error(e);
                }
            }
        }
        self.poll_display();
        if self.session.is_none() {
            return;
        }
        self.poll_state();
        self.poll_events();
        self.poll_ops();
        self.poll_run();
        self.poll_acquired();
        // Stage position while something moves.
        let due = self
            .session
            .as_ref()
            .is_some_and(|s| s.last_position_query.elapsed() >= POSITION_POLL);
        let moving = self.model.moving.iter().any(|&m| m);
        if (due && moving) || std::mem::take(&mut self.positions_stale) {
            self.query_positions();
        }
        if self.model.connected() && std::mem::take(&mut self.refresh_due) {
            self.refresh_instrument();
        }
    }

    fn poll_state(&mut self) {
        let Some(s) = &self.session else { return };
        let st = self.timer.time("client.state", || s.client.state());
        let was = self.model.conn.clone();
        if was.as_ref() != Some(&st) {
            let up_again = st == ConnectionState::Connected
                && matches!(was, Some(ConnectionState::Reconnecting { .. }));
            self.model.set_conn(st);
            if up_again {
                // Replies in flight were lost with the old link, and the
                // instrument may have changed meanwhile: read it again.
                self.model.forget_instrument();
                self.initial_queries();
            }
        }
    }

    fn poll_events(&mut self) {
        let Some(s) = &self.session else { return };
        let mut n = 0;
        let t0 = Instant::now();
        loop {
            if n >= EVENTS_PER_FRAME || t0.elapsed() >= EVENTS_TIME_PER_FRAME {
                // More may be queued: take them in the next frame.
                self.ctx.request_repaint();
                break;
            }
            let Ok(ev) = self.timer.time("events.try_recv", || s.events.try_recv()) else {
                break;
            };
            n += 1;
            let m = &mut self.model;
            m.events_total += 1;
            match &ev.kind {
                EventKind::MotionStopped {
                    axis,
                    position,
                    status,
                } => {
                    m.motion_stops += 1;
                    let i = axis_index(*axis);
                    m.moving[i] = false;
                    m.stop_count[i] += 1;
                    if let Some(p) = m.position.as_mut() {
                        p.set(*axis, *position);
                    }
                    // The instrument may leave the position out of the
                    // event (0.0): confirm with a query.
                    self.positions_stale = true;
                    m.log(
                        LineKind::Event,
                        format!(
                            "stage {axis} stopped at {position:.3} {} (status {status})",
                            axis.unit()
                        ),
                    );
                }
                EventKind::Disconnected { reason } => {
                    m.log(LineKind::Connection, format!("disconnected: {reason}"))
                }
                EventKind::Reconnecting { attempt } => m.log(
                    LineKind::Connection,
                    format!("reconnecting (attempt {attempt})"),
                ),
                EventKind::Reconnected { attempt } => m.log(
                    LineKind::Connection,
                    format!("reconnected (attempt {attempt})"),
                ),
                EventKind::Closed { reason } => {
                    m.log(LineKind::Connection, format!("closed: {reason}"))
                }
                EventKind::LaserLevel {
                    laser,
                    level_percent,
                } => {
                    if let (Some(v), Ok(i @ 1..=4)) = (level_percent, usize::try_from(*laser)) {
                        m.lasers[i - 1].reported(*v);
                    }
                    let level = level_percent.map_or("?".into(), |v| format!("{v:.2} %"));
                    m.log(LineKind::Event, format!("laser {laser} level {level}"));
                }
                EventKind::SystemIdle => {
                    // A workflow (this viewer's or another client's) ended:
                    // it may have changed lasers, exposure, filter, stage.
                    self.refresh_due = true;
                    m.log(LineKind::Event, "system_idle");
                }
                other => {
                    let name = other.name();
                    // Repeated events (progress, a flood) share one line.
                    match m.log.back_mut() {
                        Some(last)
                            if last.kind == LineKind::Event && last.text.starts_with(name) =>
                        {
                            last.repeat += 1;
                            last.detail = describe(other);
                        }
                        _ => m.log(LineKind::Event, format!("{name} {}", describe(other))),
                    }
                }
            }
        }
    }

    fn poll_ops(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut i = 0;
        while i < s.pending.len() {
            let p = &mut s.pending[i];
            match self.timer.time("op.try_get", || p.op.try_get()) {
                None => i += 1,
                Some(r) => {
                    let p = s.pending.swap_remove(i);
                    if p.positions {
                        self.positions_op = false;
                    }
                    match r {
                        Ok(apply) => apply(&mut self.model),
                        Err(e) => self.model.error(format!("{}: {e}", p.what)),
                    }
                }
            }
        }
    }

    fn poll_run(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(run) = s.run.as_mut() else { return };
        let t0 = Instant::now();
        for i in 0.. {
            if i >= EVENTS_PER_FRAME || t0.elapsed() >= EVENTS_TIME_PER_FRAME {
                self.ctx.request_repaint();
                break;
            }
            let Some(u) = self.timer.time("run.try_next", || run.try_next()) else {
                break;
            };
            let wf = &mut self.model.workflow;
            match u {
                Ok(WorkflowUpdate::Acknowledged) => wf.status = "acknowledged".into(),
                Ok(WorkflowUpdate::Running) => wf.status = "running".into(),
                Ok(WorkflowUpdate::GaugeSize { total }) => wf.progress = Some((0, total)),
                Ok(WorkflowUpdate::Progress { current, total }) => {
                    wf.progress = Some((current, total));
                    wf.status = "running".into();
                    if wf.first_progress.is_none() {
                        wf.first_progress = Some((Instant::now(), current));
                    }
                }
                Ok(WorkflowUpdate::Finished(sum)) => {
                    wf.status = if sum.stopped {
                        "stopped".into()
                    } else {
                        "finished".into()
                    };
                    wf.finished_runs += 1;
                    wf.started_at = None;
                    let line = format!(
                        "workflow {}: {} of {} images, {} errors, {:.2} s",
                        wf.status,
                        sum.images_acquired,
                        sum.images_expected,
                        sum.errors,
                        sum.duration.as_secs_f64()
                    );
                    wf.summary = Some(sum);
                    self.model.log(LineKind::Action, line);
                }
                Ok(_) => {}
                Err(e) => {
                    wf.status = "failed".into();
                    wf.started_at = None;
                    self.model.error(format!("workflow: {e}"));
                }
            }
        }
    }

    fn poll_acquired(&mut self) {
        let Some(s) = &self.session else { return };
        // Not a library call: a channel fed by the live worker.
        let Ok(a) = s.live.results.try_recv() else {
            return;
        };
        match a {
            Acquired::Snapshot(Ok((n, frame))) => self.snapshot_taken(n, frame),
            Acquired::Snapshot(Err(e)) => self.model.error(format!("snapshot: {e}")),
            Acquired::Stack(Ok(d)) => {
                self.model.log(
                    LineKind::Action,
                    format!(
                        "stack {}: {} planes, z {:.4} to {:.4} mm, saved to {}",
                        if d.stopped { "stopped" } else { "done" },
                        d.planes,
                        d.z.0,
                        d.z.1,
                        d.path.display()
                    ),
                );
                self.model.camera.last_saved = Some(d.path);
            }
            Acquired::Stack(Err(e)) => self.model.error(format!("stack: {e}")),
        }
    }

    fn poll_display(&mut self) {
        // Not a library call: a channel fed by the display thread.
        if let Ok(f) = self.display.frames.try_recv() {
            if f.source == Source::Live {
                self.live_frames_shown += 1;
                let now = Instant::now();
                self.shown_at.push(now);
                self.shown_at
                    .retain(|t| now.duration_since(*t) < Duration::from_secs(2));
            }
            let ctx = self.ctx.clone();
            self.image.show(&ctx, f);
        }
    }
}

/// A short description of an event's content, for the log.
fn describe(k: &EventKind) -> String {
    match k {
        EventKind::GaugeSize { total } => format!("total {total}"),
        EventKind::GaugeValue { current, total } => format!("{current} / {total}"),
        EventKind::StackComplete {
            acquired,
            expected,
            errors,
            ..
        } => format!("{acquired} of {expected} images, {errors} errors"),
        EventKind::ImagesSaved { count } => format!("{count}"),
        _ => String::new(),
    }
}
