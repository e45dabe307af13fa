//! The window: panels for the connection, stage, lasers, LED, workflow,
//! live view and event log.
//!
//! Every frame, [`Viewer::poll`] takes what the library has for the UI
//! without blocking: the connection state, queued events, finished
//! operations, workflow updates and the newest display frame. The panels
//! then draw the model, and buttons submit operations (`submit_*`), whose
//! outcomes update the model when they complete.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use eframe::egui::{self, Color32, RichText, TextureHandle, TextureOptions};
use flamingo_client::devices::{LedColour, Op, SoftLimits, Workflow, WorkflowUpdate};
use flamingo_client::{Axis, Client, ConnectionState, EventKind};

use crate::live::{DisplayFrame, LiveWorker, Scaling};
use crate::model::{axis_index, state_name, LineKind, Model};
use crate::selftest::SelfTest;
use crate::session::{self, Apply, Connected, Pend, Session};
use crate::timing::{us, LibTimer, BUDGET};
use crate::Options;

/// The progress bar's fill (the self-test's checker looks for it).
pub const PROGRESS_FILL: Color32 = Color32::from_rgb(46, 160, 67);
/// Events taken from the subscription per frame at most, and the time spent
/// taking them: a flood is spread over frames instead of stalling one (the
/// subscription's bounded queue drops the oldest meanwhile, and counts them).
const EVENTS_PER_FRAME: usize = 2000;
const EVENTS_TIME_PER_FRAME: Duration = Duration::from_micros(250);
/// Stage position queries while an axis moves.
const POSITION_POLL: Duration = Duration::from_millis(100);

/// Where things were drawn, in points (for the self-test's checks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// The live image.
    pub image: Option<egui::Rect>,
    /// The workflow progress bar.
    pub progress: Option<egui::Rect>,
}

/// The application.
pub struct Viewer {
    pub(crate) opts: Options,
    pub(crate) ctx: egui::Context,
    pub(crate) model: Model,
    pub(crate) timer: LibTimer,
    pub(crate) session: Option<Session>,
    connecting: Option<(Receiver<Result<Connected, String>>, Instant)>,
    /// Work done off the UI thread (file loading), applied when done.
    jobs: Vec<Receiver<Apply>>,
    pub(crate) addr_input: String,
    texture: Option<TextureHandle>,
    pub(crate) shown: Option<ShownFrame>,
    /// Frames drawn on screen from the live view.
    pub(crate) live_frames_shown: u64,
    shown_at: Vec<Instant>,
    positions_op: bool,
    /// A stop event came: query the positions.
    positions_stale: bool,
    pub(crate) layout: Layout,
    pub(crate) selftest: Option<SelfTest>,
    /// Sessions being closed on their own threads.
    closing: Vec<std::thread::JoinHandle<()>>,
}

/// What the live panel shows about the frame on screen.
#[derive(Clone, Copy, Debug)]
pub struct ShownFrame {
    frame_number: u32,
    width: u32,
    height: u32,
    range: (u32, u32),
}

impl Viewer {
    /// Builds the viewer; connects at once if asked to.
    pub fn new(cc: &eframe::CreationContext<'_>, opts: Options) -> Viewer {
        cc.egui_ctx.set_visuals(egui::Visuals::dark());
        let mut v = Viewer {
            ctx: cc.egui_ctx.clone(),
            model: Model::new(opts.workflow.display().to_string()),
            timer: LibTimer::default(),
            session: None,
            connecting: None,
            jobs: Vec::new(),
            addr_input: opts
                .connect
                .clone()
                .unwrap_or_else(|| "127.0.0.1:53717".into()),
            texture: None,
            shown: None,
            live_frames_shown: 0,
            shown_at: Vec::new(),
            positions_op: false,
            positions_stale: false,
            layout: Layout::default(),
            selftest: opts.self_test.then(|| SelfTest::new(&opts)),
            closing: Vec::new(),
            opts,
        };
        if v.opts.sim {
            v.connect(None);
        } else if let Some(a) = v.opts.connect.clone() {
            v.connect(Some(a));
        }
        v.load_workflow();
        v
    }

    // ----- actions ---------------------------------------------------------

    /// Connects to `addr`, or starts the simulator and connects to it.
    pub fn connect(&mut self, addr: Option<String>) {
        if self.connecting.is_some() {
            return;
        }
        self.disconnect();
        let what = match &addr {
            Some(a) => format!("connecting to {a}"),
            None => "starting the simulator".to_string(),
        };
        self.model.log(LineKind::Action, what);
        self.model.set_conn(ConnectionState::Connecting);
        self.connecting = Some((
            session::connect_in_background(addr, self.ctx.clone()),
            Instant::now(),
        ));
    }

    /// Closes the session (on a thread of its own).
    pub fn disconnect(&mut self) {
        if let Some(s) = self.session.take() {
            self.model.log(LineKind::Action, "disconnecting");
            self.closing.push(s.close_in_background());
            self.model.set_conn(ConnectionState::Closed {
                reason: "closed by the user".into(),
            });
            self.positions_op = false;
        }
    }

    /// Submits an operation: `start` is the library's non-blocking
    /// `submit_*` call, `apply` what its value does to the model. Nothing is
    /// sent unless connected (a reconnecting client would hold the caller
    /// until the link is back).
    pub fn submit<T: Send + 'static>(
        &mut self,
        name: &'static str,
        what: impl Into<String>,
        start: impl FnOnce(&Client) -> flamingo_client::Result<Op<T>>,
        apply: impl FnOnce(&mut Model, T) + Send + 'static,
    ) -> bool {
        let what = what.into();
        if self.model.conn != Some(ConnectionState::Connected) {
            self.model
                .error(format!("not connected: {what} was not sent"));
            return false;
        }
        let Some(s) = self.session.as_mut() else {
            return false;
        };
        let client = &s.client;
        // Again just before sending: the state seen at the start of the
        // frame may be a frame old, and a send while the link is down waits
        // for the reconnect.
        if self.timer.time("client.state", || client.state()) != ConnectionState::Connected {
            self.model
                .error(format!("not connected: {what} was not sent"));
            return false;
        }
        match self.timer.time(name, || start(client)) {
            Ok(op) => {
                let op = op.map(|v| Box::new(move |m: &mut Model| apply(m, v)) as Apply);
                s.pending.push(Pend {
                    what,
                    op,
                    since: Instant::now(),
                    positions: false,
                });
                true
            }
            Err(e) => {
                self.model.error(format!("{what}: {e}"));
                false
            }
        }
    }

    /// Queries the four stage positions (one query in flight at a time).
    pub fn query_positions(&mut self) {
        if self.positions_op {
            return;
        }
        let stops_before = self.model.stop_count;
        let sent = self.submit(
            "stage.submit_positions",
            "the stage position query",
            |c| c.stage().submit_positions(),
            move |m, mut p| {
                // A stop event that arrived after the query went out is at
                // least as new as its answer (the two agree once the axis
                // has stopped): keep the event's position for that axis.
                if let Some(old) = m.position {
                    for (i, a) in Axis::ALL.into_iter().enumerate() {
                        if m.stop_count[i] != stops_before[i] {
                            p.set(a, old.get(a));
                        }
                    }
                }
                m.position = Some(p);
            },
        );
        if sent {
            self.positions_op = true;
            if let Some(s) = self.session.as_mut() {
                s.last_position_query = Instant::now();
                if let Some(p) = s.pending.last_mut() {
                    p.positions = true;
                }
            }
        }
    }

    /// Everything read once after connecting (and again after a reconnect).
    fn initial_queries(&mut self) {
        self.submit(
            "settings.submit_load",
            "loading the scope settings",
            |c| c.settings().submit_load(),
            |m, s| {
                let name = s.microscope_name().unwrap_or("microscope").to_string();
                m.settings = Some(s);
                m.log(LineKind::Action, format!("scope settings loaded ({name})"));
            },
        );
        self.submit(
            "camera.submit_image_size",
            "the camera image size",
            |c| c.camera().submit_image_size(),
            |m, s| m.image_size = Some((s.width, s.height)),
        );
        // A query still in flight went out on the old link: it fails.
        self.positions_op = false;
        self.query_positions();
        for laser in 1..=4u8 {
            self.submit(
                "lasers.submit_level_percent",
                format!("the level of laser {laser}"),
                move |c| c.lasers().submit_level_percent(laser),
                move |m, v| {
                    let l = &mut m.lasers[usize::from(laser - 1)];
                    l.level = Some(v);
                    l.input = v;
                },
            );
        }
    }

    /// Moves `axis` to `target` if it lies within the soft limits.
    pub fn move_axis(&mut self, axis: Axis, target: f64) {
        if !target.is_finite() {
            self.model
                .error(format!("{axis}: {target} is not a position"));
            return;
        }
        if let Some((lo, hi)) = self.model.soft_limits(axis) {
            if !(lo..=hi).contains(&target) {
                self.model.error(format!(
                    "{axis} to {target:.3} {} refused here: outside the soft limits {lo:.3} .. {hi:.3}",
                    axis.unit()
                ));
                return;
            }
        }
        let i = axis_index(axis);
        let sent = self.submit(
            "stage.submit_move_to",
            format!("moving {axis} to {target:.3} {}", axis.unit()),
            move |c| c.stage().submit_move_to(axis, target),
            move |m, ()| {
                m.log(
                    LineKind::Action,
                    format!("{axis} moving to {target:.3} {}", axis.unit()),
                )
            },
        );
        if sent {
            self.model.moving[i] = true;
        }
    }

    /// Moves `axis` by `steps` jog steps from where it is.
    pub fn jog(&mut self, axis: Axis, steps: f64) {
        let Some(p) = self.model.position else {
            self.model
                .error("the stage position is not known yet: cannot jog");
            return;
        };
        let target = p.get(axis) + steps * self.model.jog_step[axis_index(axis)];
        self.move_axis(axis, target);
    }

    /// Sets a laser's level.
    pub fn set_laser(&mut self, laser: u8, percent: f64) {
        self.submit(
            "lasers.submit_set_level_percent",
            format!("setting laser {laser} to {percent:.2} %"),
            move |c| c.lasers().submit_set_level_percent(laser, percent),
            move |m, v| {
                m.lasers[usize::from(laser - 1)].level = Some(v);
                m.log(
                    LineKind::Action,
                    format!("laser {laser} at {v:.2} % (read back)"),
                );
            },
        );
    }

    /// Turns a laser's preview on or off.
    pub fn set_laser_preview(&mut self, laser: u8, on: bool) {
        self.submit(
            "lasers.submit_preview",
            format!("laser {laser} preview {}", if on { "on" } else { "off" }),
            move |c| c.lasers().submit_preview(laser, on),
            move |m, ()| {
                m.lasers[usize::from(laser - 1)].preview = on;
                m.log(
                    LineKind::Action,
                    format!("laser {laser} preview {}", if on { "on" } else { "off" }),
                );
            },
        );
    }

    /// Sets the LED.
    pub fn set_led(&mut self, colour: LedColour, percent: f64) {
        self.submit(
            "led.submit_set_percent",
            format!("LED {colour} at {percent:.0} %"),
            move |c| c.led().submit_set_percent(colour, percent),
            move |m, ()| {
                m.led_colour = colour;
                m.led_percent = percent;
                m.log(LineKind::Action, format!("LED {colour} at {percent:.0} %"));
            },
        );
    }

    /// Turns the LED preview on or off.
    pub fn set_led_preview(&mut self, on: bool) {
        self.submit(
            "led.submit_preview",
            format!("LED preview {}", if on { "on" } else { "off" }),
            move |c| c.led().submit_preview(on),
            move |m, ()| {
                m.led_preview = on;
                m.log(
                    LineKind::Action,
                    format!("LED preview {}", if on { "on" } else { "off" }),
                );
            },
        );
    }

    /// Loads the workflow file named in the workflow panel (on a thread).
    pub fn load_workflow(&mut self) {
        let path = self.model.workflow.path.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ctx = self.ctx.clone();
        std::thread::spawn(move || {
            let r = Workflow::load(&path);
            let apply: Apply = Box::new(move |m: &mut Model| match r {
                Ok(wf) => {
                    m.workflow.planes = wf.planes();
                    let name = std::path::Path::new(&path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or(path);
                    m.log(
                        LineKind::Action,
                        format!(
                            "workflow {name} loaded ({} planes)",
                            wf.planes().unwrap_or(1)
                        ),
                    );
                    m.workflow.loaded = Some(name);
                    m.workflow.status = "ready".into();
                    m.workflow_file = Some(wf);
                }
                Err(e) => m.error(format!("cannot load the workflow {path}: {e}")),
            });
            let _ = tx.send(apply);
            ctx.request_repaint();
        });
        self.jobs.push(rx);
    }

    /// Starts the loaded workflow.
    pub fn start_workflow(&mut self) {
        let Some(wf) = self.model.workflow_file.clone() else {
            self.model.error("no workflow loaded");
            return;
        };
        if self.model.conn != Some(ConnectionState::Connected) {
            self.model
                .error("not connected: the workflow was not started");
            return;
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.run.as_ref().is_some_and(|r| !r.is_finished()) {
            self.model.error("a workflow is already running");
            return;
        }
        // The library's safety layer: the file and every position it takes
        // the stage to (start, end, angles) within the soft limits of the
        // loaded settings, checked before anything is sent.
        let limits = self
            .model
            .settings
            .as_ref()
            .map(SoftLimits::from_settings)
            .unwrap_or_default();
        let client = &s.client;
        match self.timer.time("workflows.submit_start", || {
            client.workflows().soft_limits(limits).submit_start(&wf)
        }) {
            Ok(run) => {
                s.run = Some(Box::new(run));
                s.stopping = false;
                self.model.workflow.progress = None;
                self.model.workflow.summary = None;
                self.model.workflow.status = "starting".into();
                self.model.log(LineKind::Action, "workflow started");
            }
            Err(e) => self.model.error(format!("starting the workflow: {e}")),
        }
    }

    /// Stops the running workflow.
    pub fn stop_workflow(&mut self) {
        let connected = self.model.conn == Some(ConnectionState::Connected);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(run) = s.run.as_mut() else {
            return;
        };
        if !connected {
            self.model.error("not connected: the stop was not sent");
            return;
        }
        match self.timer.time("run.submit_stop", || run.submit_stop()) {
            Ok(op) => {
                s.stopping = true;
                s.pending.push(Pend {
                    what: "stopping the workflow".into(),
                    op: op.map(|()| {
                        Box::new(|m: &mut Model| {
                            m.log(LineKind::Action, "workflow stop acknowledged")
                        }) as Apply
                    }),
                    since: Instant::now(),
                    positions: false,
                });
                self.model.workflow.status = "stopping".into();
            }
            Err(e) => self.model.error(format!("stopping the workflow: {e}")),
        }
    }

    // ----- polling ---------------------------------------------------------

    /// Takes everything the library has for the UI, without blocking.
    fn poll(&mut self) {
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
        if self.session.is_none() {
            return;
        }
        self.poll_state();
        self.poll_events();
        self.poll_ops();
        self.poll_run();
        self.poll_live();
        // Stage position while something moves.
        let due = self
            .session
            .as_ref()
            .is_some_and(|s| s.last_position_query.elapsed() >= POSITION_POLL);
        let moving = self.model.moving.iter().any(|&m| m);
        if (due && moving) || std::mem::take(&mut self.positions_stale) {
            self.query_positions();
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
                // Replies in flight were lost with the old link.
                self.model.moving = [false; 4];
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
                        m.lasers[i - 1].level = Some(*v);
                    }
                    let level = level_percent.map_or("?".into(), |v| format!("{v:.2} %"));
                    m.log(LineKind::Event, format!("laser {laser} level {level}"));
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
                }
                Ok(WorkflowUpdate::Finished(sum)) => {
                    wf.status = if sum.stopped {
                        "stopped".into()
                    } else {
                        "finished".into()
                    };
                    wf.finished_runs += 1;
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
                    self.model.error(format!("workflow: {e}"));
                }
            }
        }
    }

    fn poll_live(&mut self) {
        let Some(s) = &self.session else { return };
        // Not a library call: a channel fed by the live worker.
        if let Ok(f) = s.live.frames.try_recv() {
            self.show_frame(f);
        }
    }

    fn show_frame(&mut self, f: DisplayFrame) {
        match &mut self.texture {
            Some(t) => t.set(f.image, TextureOptions::NEAREST),
            None => {
                self.texture = Some(
                    self.ctx
                        .load_texture("live", f.image, TextureOptions::NEAREST),
                )
            }
        }
        self.shown = Some(ShownFrame {
            frame_number: f.frame_number,
            width: f.width,
            height: f.height,
            range: f.range,
        });
        self.live_frames_shown += 1;
        let now = Instant::now();
        self.shown_at.push(now);
        self.shown_at
            .retain(|t| now.duration_since(*t) < Duration::from_secs(2));
    }

    fn on_connected(&mut self, c: Connected) {
        let Connected {
            client,
            sim,
            waker,
            events,
        } = c;
        let live = match LiveWorker::start(client.clone(), self.ctx.clone(), true) {
            Ok(l) => l,
            Err(e) => {
                self.model
                    .error(format!("cannot start the live thread: {e}"));
                self.closing
                    .push(std::thread::spawn(move || client.close()));
                return;
            }
        };
        let addr = client.addr().to_string();
        self.addr_input = addr.clone();
        self.session = Some(Session {
            client,
            events,
            live,
            run: None,
            stopping: false,
            pending: Vec::new(),
            waker,
            sim,
            last_position_query: Instant::now(),
        });
        self.model.set_conn(ConnectionState::Connected);
        self.model
            .log(LineKind::Connection, format!("connected to {addr}"));
        self.initial_queries();
    }

    // ----- drawing ---------------------------------------------------------

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Flamingo Viewer");
            ui.separator();
            let (text, colour) = match &self.model.conn {
                None | Some(ConnectionState::NotConnected) => {
                    ("not connected".to_string(), Color32::GRAY)
                }
                Some(ConnectionState::Connecting) => {
                    ("connecting…".to_string(), Color32::from_rgb(230, 180, 60))
                }
                Some(ConnectionState::Connected) => (
                    format!(
                        "connected {}",
                        self.session.as_ref().map_or("", |s| s.client.addr())
                    ),
                    Color32::from_rgb(80, 200, 100),
                ),
                Some(ConnectionState::Reconnecting { attempt }) => (
                    format!("reconnecting (attempt {attempt})"),
                    Color32::from_rgb(240, 160, 40),
                ),
                Some(ConnectionState::Closed { reason }) => (
                    format!("disconnected: {reason}"),
                    Color32::from_rgb(230, 80, 80),
                ),
            };
            // A lamp and the state, always visible.
            let (r, _) = ui.allocate_exact_size(egui::vec2(14.0, 14.0), egui::Sense::hover());
            ui.painter().circle_filled(r.center(), 6.0, colour);
            ui.label(RichText::new(text).color(colour).strong());
            ui.separator();
            ui.label("Address");
            ui.add(egui::TextEdit::singleline(&mut self.addr_input).desired_width(150.0));
            let busy = self.connecting.is_some();
            if ui
                .add_enabled(!busy, egui::Button::new("Connect"))
                .clicked()
            {
                let a = self.addr_input.trim().to_string();
                self.connect(Some(a));
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Start simulator"))
                .on_hover_text("Start the embedded simulator and connect to it")
                .clicked()
            {
                self.connect(None);
            }
            if ui
                .add_enabled(self.session.is_some(), egui::Button::new("Disconnect"))
                .clicked()
            {
                self.disconnect();
            }
            if let Some(s) = self.session.as_ref().and_then(|s| s.sim.as_ref()) {
                ui.label(RichText::new(format!("simulator on {}", s.addr())).weak());
            }
        });
    }

    fn perf_line(&self, ui: &mut egui::Ui) {
        let t = &self.timer;
        // Green while no frame spent the budget in library calls, not
        // counting time the thread waited for a CPU (see `timing`).
        let worst = if t.has_sched && t.over.iter().all(|o| o.runq + BUDGET > o.lib) {
            t.worst_net
        } else {
            t.worst_frame
        };
        let colour = if worst < BUDGET {
            Color32::from_rgb(80, 200, 100)
        } else {
            Color32::from_rgb(240, 160, 40)
        };
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!(
                    "library calls per UI frame: now {:.0} µs · p99 {:.0} µs · worst {:.0} µs{}",
                    us(t.last_frame),
                    us(t.quantile(0.99)),
                    us(t.worst_frame),
                    if t.has_sched {
                        format!(" ({:.0} µs without CPU waits)", us(t.worst_net))
                    } else {
                        String::new()
                    },
                ))
                .color(colour)
                .monospace(),
            );
            ui.label(
                RichText::new(format!(
                    "· ≥ 1 ms: {} of {} frames",
                    t.frames_over_budget, t.frames,
                ))
                .monospace(),
            );
            let pending = self.session.as_ref().map_or(0, |s| s.pending.len());
            let oldest = self
                .session
                .as_ref()
                .and_then(|s| s.pending.iter().map(|p| p.since).min())
                .map_or(String::new(), |t| {
                    format!(", oldest {:.1} s", t.elapsed().as_secs_f64())
                });
            ui.label(RichText::new(format!("· ops in flight: {pending}{oldest}")).monospace());
        });
    }

    fn stage_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Stage");
        let pos = self.model.position;
        let mut actions: Vec<(Axis, Option<f64>, f64)> = Vec::new();
        egui::Grid::new("stage")
            .num_columns(6)
            .spacing([6.0, 4.0])
            .show(ui, |ui| {
                ui.label("");
                ui.label("position");
                ui.label("jog");
                ui.label("step");
                ui.label("move to");
                ui.end_row();
                for axis in Axis::ALL {
                    let i = axis_index(axis);
                    let moving = self.model.moving[i];
                    ui.label(RichText::new(axis.name().to_uppercase()).strong());
                    let p = pos.map_or("—".to_string(), |p| {
                        format!("{:9.3} {}", p.get(axis), axis.unit())
                    });
                    let mut t = RichText::new(p).monospace();
                    if moving {
                        t = t.color(Color32::from_rgb(240, 200, 80));
                    }
                    ui.label(t)
                        .on_hover_text(match self.model.soft_limits(axis) {
                            Some((lo, hi)) => {
                                format!("soft limits {lo:.3} .. {hi:.3} {}", axis.unit())
                            }
                            None => "soft limits not known yet".into(),
                        });
                    ui.horizontal(|ui| {
                        if ui.small_button("◀").clicked() {
                            actions.push((axis, None, -1.0));
                        }
                        if ui.small_button("▶").clicked() {
                            actions.push((axis, None, 1.0));
                        }
                    });
                    ui.add(
                        egui::DragValue::new(&mut self.model.jog_step[i])
                            .speed(0.01)
                            .range(0.001..=100.0)
                            .max_decimals(3),
                    );
                    ui.horizontal(|ui| {
                        ui.add(
                            egui::TextEdit::singleline(&mut self.model.move_to[i])
                                .desired_width(64.0)
                                .hint_text("target"),
                        );
                        if ui.small_button("Go").clicked() {
                            match self.model.move_to[i].trim().parse::<f64>() {
                                Ok(v) => actions.push((axis, Some(v), 0.0)),
                                Err(_) => self.model.error(format!(
                                    "{axis}: {:?} is not a number",
                                    self.model.move_to[i]
                                )),
                            }
                        }
                    });
                    ui.end_row();
                }
            });
        ui.horizontal(|ui| {
            // Homing moves all four axes at once: it needs a second click.
            if self.model.confirm_home {
                ui.label(RichText::new("Home all four axes?").strong());
                if ui.button("Yes, home").clicked() {
                    self.model.confirm_home = false;
                    self.submit(
                        "stage.submit_home",
                        "homing the stage",
                        |c| c.stage().submit_home(),
                        |m, ()| {
                            m.moving = [true; 4];
                            m.log(LineKind::Action, "homing");
                        },
                    );
                }
                if ui.button("Cancel").clicked() {
                    self.model.confirm_home = false;
                }
            } else if ui.button("Home").clicked() {
                self.model.confirm_home = true;
            }
            if ui
                .button(RichText::new("Halt").color(Color32::from_rgb(240, 90, 90)))
                .clicked()
            {
                self.submit(
                    "stage.submit_halt",
                    "halting the stage",
                    |c| c.stage().submit_halt(),
                    |m, ()| m.log(LineKind::Action, "stage halted"),
                );
            }
            if ui.button("Refresh").clicked() {
                self.query_positions();
            }
            ui.label(RichText::new(format!("{} stop events", self.model.motion_stops)).weak());
        });
        for (axis, to, steps) in actions {
            match to {
                Some(t) => self.move_axis(axis, t),
                None => self.jog(axis, steps),
            }
        }
    }

    fn timing_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("UI thread: library calls");
        ui.label(
            RichText::new(format!(
                "{} frames, {} calls; goal: no frame with ≥ {} µs in library calls",
                self.timer.frames,
                self.timer.calls,
                BUDGET.as_micros()
            ))
            .weak(),
        );
        let t = &self.timer;
        let preempted = t.over.iter().filter(|o| o.runq + BUDGET > o.lib).count();
        ui.label(
            RichText::new(format!(
                "frames ≥ 1 ms: {} ({} explained by waiting for a CPU) · worst net of that: {:.0} µs",
                t.frames_over_budget,
                preempted,
                us(t.worst_net)
            ))
            .weak(),
        );
        let mut rows: Vec<_> = self.timer.per_call.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1 .1));
        egui::Grid::new("timing")
            .num_columns(3)
            .striped(true)
            .spacing([12.0, 2.0])
            .show(ui, |ui| {
                ui.label(RichText::new("call").weak());
                ui.label(RichText::new("count").weak());
                ui.label(RichText::new("longest").weak());
                ui.end_row();
                for (name, (n, worst)) in rows.into_iter().take(8) {
                    ui.label(RichText::new(*name).monospace().small());
                    ui.label(RichText::new(n.to_string()).monospace().small());
                    ui.label(
                        RichText::new(format!("{:.0} µs", us(*worst)))
                            .monospace()
                            .small(),
                    );
                    ui.end_row();
                }
            });
    }

    fn lasers_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Lasers");
        let mut set = Vec::new();
        let mut preview = Vec::new();
        egui::Grid::new("lasers")
            .num_columns(4)
            .spacing([6.0, 4.0])
            .show(ui, |ui| {
                for (i, name) in ["405 nm", "488 nm", "561 nm", "640 nm"].iter().enumerate() {
                    let laser = i as u8 + 1;
                    let l = &mut self.model.lasers[i];
                    ui.label(format!("{laser}  {name}"));
                    ui.add(
                        egui::Slider::new(&mut l.input, 0.0..=100.0)
                            .suffix(" %")
                            .max_decimals(2),
                    );
                    if ui.small_button("Set").clicked() {
                        set.push((laser, l.input));
                    }
                    let mut on = l.preview;
                    if ui.checkbox(&mut on, "preview").changed() {
                        preview.push((laser, on));
                    }
                    ui.label(
                        RichText::new(l.level.map_or("—".into(), |v| format!("{v:.2} %")))
                            .monospace()
                            .weak(),
                    );
                    ui.end_row();
                }
            });
        for (laser, v) in set {
            self.set_laser(laser, v);
        }
        for (laser, on) in preview {
            self.set_laser_preview(laser, on);
        }
        if ui.button("All lasers off").clicked() {
            self.submit(
                "lasers.submit_all_off",
                "turning every laser off",
                |c| c.lasers().submit_all_off(),
                |m, ()| {
                    for l in &mut m.lasers {
                        l.preview = false;
                    }
                    m.log(LineKind::Action, "every laser off");
                },
            );
        }
        ui.separator();
        ui.heading("LED");
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("led colour")
                .selected_text(self.model.led_colour.to_string())
                .width(70.0)
                .show_ui(ui, |ui| {
                    for c in [
                        LedColour::Red,
                        LedColour::Green,
                        LedColour::Blue,
                        LedColour::White,
                    ] {
                        ui.selectable_value(&mut self.model.led_colour, c, c.to_string());
                    }
                });
            ui.add(egui::Slider::new(&mut self.model.led_percent, 0.0..=100.0).suffix(" %"));
            if ui.small_button("Set").clicked() {
                let (c, p) = (self.model.led_colour, self.model.led_percent);
                self.set_led(c, p);
            }
            let mut on = self.model.led_preview;
            if ui.checkbox(&mut on, "preview").changed() {
                self.set_led_preview(on);
            }
        });
    }

    fn workflow_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Workflow");
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.model.workflow.path)
                    .desired_width(220.0)
                    .hint_text("workflow file"),
            );
            if ui.button("Load").clicked() {
                self.load_workflow();
            }
        });
        let running = self
            .session
            .as_ref()
            .and_then(|s| s.run.as_ref())
            .is_some_and(|r| !r.is_finished());
        ui.horizontal(|ui| {
            let can_start = !running && self.model.workflow_file.is_some();
            if ui
                .add_enabled(can_start, egui::Button::new("▶ Start"))
                .clicked()
            {
                self.start_workflow();
            }
            if ui
                .add_enabled(running, egui::Button::new("■ Stop"))
                .clicked()
            {
                self.stop_workflow();
            }
            let wf = &self.model.workflow;
            ui.label(format!(
                "{} · {}",
                wf.loaded.as_deref().unwrap_or("no file"),
                wf.status
            ));
        });
        let wf = &self.model.workflow;
        let (frac, text) = match wf.progress {
            Some((c, t)) if t > 0 => (
                (c as f32 / t as f32).clamp(0.0, 1.0),
                format!("{c} / {t} planes"),
            ),
            _ => (0.0, "—".to_string()),
        };
        let r = ui.add(
            egui::ProgressBar::new(frac)
                .fill(PROGRESS_FILL)
                .desired_height(22.0)
                .text(text),
        );
        self.layout.progress = Some(r.rect);
        if let Some(s) = &wf.summary {
            ui.label(
                RichText::new(format!(
                    "last run: {} of {} images, {} errors, {:.2} s{}",
                    s.images_acquired,
                    s.images_expected,
                    s.errors,
                    s.duration.as_secs_f64(),
                    if s.stopped { " (stopped)" } else { "" }
                ))
                .weak(),
            );
        }
    }

    fn live_panel(&mut self, ui: &mut egui::Ui) {
        let status = self
            .session
            .as_ref()
            .map(|s| s.live.status.lock().clone())
            .unwrap_or_default();
        let shown_fps = if self.shown_at.len() >= 2 {
            let span = self.shown_at[self.shown_at.len() - 1]
                .duration_since(self.shown_at[0])
                .as_secs_f64();
            (self.shown_at.len() - 1) as f64 / span.max(1e-3)
        } else {
            0.0
        };
        ui.horizontal(|ui| {
            ui.heading("Live view");
            if let Some(s) = &self.session {
                let mut on = s.live.is_on();
                if ui.checkbox(&mut on, "on").changed() {
                    s.live.set_on(on);
                }
                let mut sc = s.live.scaling();
                egui::ComboBox::from_id_salt("scaling")
                    .selected_text(match sc {
                        Scaling::Frame => "frame's display range",
                        Scaling::Auto => "auto (min–max)",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut sc, Scaling::Frame, "frame's display range");
                        ui.selectable_value(&mut sc, Scaling::Auto, "auto (min–max)");
                    });
                if sc != s.live.scaling() {
                    s.live.set_scaling(sc);
                }
            }
            ui.label(RichText::new(format!("live: {}", status.state)).weak());
        });
        ui.horizontal_wrapped(|ui| {
            let f = self.shown;
            ui.label(
                RichText::new(match f {
                    Some(f) => format!(
                        "frame #{} · {} × {} px · display {}..{}",
                        f.frame_number, f.width, f.height, f.range.0, f.range.1
                    ),
                    None => "no frame yet".into(),
                })
                .monospace(),
            );
            ui.label(
                RichText::new(format!(
                    "· {:.1} fps received · {:.1} fps shown · {} frames · {} dropped",
                    status.fps, shown_fps, status.frames_total, status.dropped_total
                ))
                .monospace(),
            );
            if status.stats.bad_headers > 0 || status.stats.reconnects > 0 {
                ui.label(
                    RichText::new(format!(
                        "· {} bad headers · {} live reconnects",
                        status.stats.bad_headers, status.stats.reconnects
                    ))
                    .monospace(),
                );
            }
        });
        if let Some(e) = &status.error {
            ui.label(RichText::new(e).color(Color32::from_rgb(240, 120, 80)));
        }
        let avail = ui.available_size();
        match &self.texture {
            Some(t) => {
                let [w, h] = t.size();
                let scale = (avail.x / w as f32).min(avail.y / h as f32).max(0.01);
                let size = egui::vec2(w as f32 * scale, h as f32 * scale);
                let r = ui
                    .centered_and_justified(|ui| ui.image((t.id(), size)))
                    .inner;
                // The image's own rectangle, centred in the space given.
                let rect = egui::Rect::from_center_size(r.rect.center(), size);
                self.layout.image = Some(rect);
            }
            None => {
                ui.centered_and_justified(|ui| {
                    ui.label(RichText::new("no live image").weak());
                });
            }
        }
    }

    fn log_panel(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Events");
            let dropped = self.session.as_ref().map_or(0, |s| s.events.dropped());
            ui.label(
                RichText::new(format!(
                    "{} received · {} dropped by the queue (flood)",
                    self.model.events_total, dropped
                ))
                .weak(),
            );
        });
        let rows = self.model.log.len();
        let row_h = ui.text_style_height(&egui::TextStyle::Monospace);
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show_rows(ui, row_h, rows, |ui, range| {
                for line in self.model.log.range(range) {
                    let colour = match line.kind {
                        LineKind::Event => Color32::from_gray(190),
                        LineKind::Connection => Color32::from_rgb(240, 170, 60),
                        LineKind::Action => Color32::from_rgb(130, 180, 240),
                        LineKind::Error => Color32::from_rgb(240, 100, 100),
                    };
                    let mut text = format!("{:8.3}  {}", line.t, line.text);
                    if line.repeat > 0 {
                        text.push_str(&format!("  (+{} more, last: {})", line.repeat, line.detail));
                    }
                    ui.label(RichText::new(text).monospace().color(colour));
                }
            });
    }

    fn error_strip(&mut self, ui: &mut egui::Ui) {
        if self.model.errors.is_empty() {
            return;
        }
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!("⚠ {} errors", self.model.errors_total))
                    .color(Color32::from_rgb(240, 100, 100))
                    .strong(),
            );
            if ui.small_button("dismiss").clicked() {
                self.model.errors.clear();
            }
        });
        for e in self.model.errors.iter().rev().take(2) {
            ui.label(
                RichText::new(format!("{:8.3}  {}", e.t, e.text))
                    .color(Color32::from_rgb(240, 120, 120))
                    .small(),
            );
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
        EventKind::SystemIdle => String::new(),
        _ => String::new(),
    }
}

impl eframe::App for Viewer {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let t0 = Instant::now();
        self.timer.begin_frame();
        self.poll();
        if let Some(mut st) = self.selftest.take() {
            st.step(self, ctx);
            self.selftest = Some(st);
        }
        egui::TopBottomPanel::top("top").show(ctx, |ui| {
            self.top_bar(ui);
            self.perf_line(ui);
        });
        egui::TopBottomPanel::bottom("log")
            .resizable(true)
            .default_height(170.0)
            .show(ctx, |ui| {
                self.error_strip(ui);
                self.log_panel(ui);
            });
        egui::SidePanel::left("controls")
            .resizable(true)
            .default_width(430.0)
            .show(ctx, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.stage_panel(ui);
                    ui.separator();
                    self.lasers_panel(ui);
                    ui.separator();
                    self.timing_panel(ui);
                });
            });
        egui::CentralPanel::default().show(ctx, |ui| {
            self.workflow_panel(ui);
            ui.separator();
            self.live_panel(ui);
        });

        // Something in flight: look again soon even if nothing wakes us.
        let busy = self.connecting.is_some()
            || self.session.as_ref().is_some_and(|s| {
                !s.pending.is_empty() || s.run.as_ref().is_some_and(|r| !r.is_finished())
            });
        if busy {
            if let Some(d) = session::POLL_WHILE_PENDING {
                ctx.request_repaint_after(d);
            }
        }
        // Reconnecting: the state changes without an event at every attempt.
        if matches!(self.model.conn, Some(ConnectionState::Reconnecting { .. })) {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        self.closing.retain(|h| !h.is_finished());
        self.timer.end_frame(t0.elapsed());
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // The process is ending: waiting for the threads is fine here.
        if let Some(s) = self.session.take() {
            let _ = s.close_in_background().join();
        }
        for h in self.closing.drain(..) {
            let _ = h.join();
        }
    }
}

/// Name of the connection state, for the self-test report.
pub fn conn_name(m: &Model) -> &'static str {
    m.conn.as_ref().map_or("none", state_name)
}
