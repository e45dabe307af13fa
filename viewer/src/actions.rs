//! What the buttons do. Every instrument operation from the UI thread is
//! the library's non-blocking form (`submit_*`), timed, and its outcome
//! applied to the model when it completes; what can only be done blocking
//! (connecting, acquisitions, file input and output) runs on other threads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use flamingo_client::devices::{LedColour, Op, SoftLimits, Workflow};
use flamingo_client::live::TiffMetadata;
use flamingo_client::{Axis, Client, ConnectionState};

use crate::app::{Snap, Viewer};
use crate::config::{self, SavedPosition};
use crate::file_picker::{FilePicker, Purpose};
use crate::live::{Acquire, LiveWorker};
use crate::model::{axis_index, Confirm, LineKind, Model};
use crate::session::{self, Apply, Connected, Pend, Session};

impl Viewer {
    // ----- connection ----------------------------------------------------

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
            self.model.forget_instrument();
            self.positions_op = false;
            self.model.workflow.started_at = None;
        }
    }

    pub(crate) fn on_connected(&mut self, c: Connected) {
        let Connected {
            client,
            sim,
            waker,
            events,
        } = c;
        let live =
            match LiveWorker::start(client.clone(), self.display.input(), self.ctx.clone(), true) {
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
        self.model.forget_instrument();
        self.model
            .log(LineKind::Connection, format!("connected to {addr}"));
        self.initial_queries();
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
        if !self.model.connected() {
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

    // ----- reading the instrument -----------------------------------------

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
    pub(crate) fn initial_queries(&mut self) {
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
            |m, s| m.camera.image_size = Some((s.width, s.height)),
        );
        self.submit(
            "camera.submit_pixel_fov_mm",
            "the pixel size",
            |c| c.camera().submit_pixel_fov_mm(),
            |m, mm| {
                // 0: the instrument does not know (saved without a size).
                m.camera.pixel_um = (mm > 0.0).then_some(mm * 1000.0);
            },
        );
        // A query still in flight went out on the old link: it fails.
        self.positions_op = false;
        self.refresh_instrument();
    }

    /// Reads again what a workflow or another client may have changed:
    /// positions, laser levels, exposure, filter wheel.
    pub fn refresh_instrument(&mut self) {
        self.query_positions();
        for laser in 1..=4u8 {
            self.submit(
                "lasers.submit_level_percent",
                format!("the level of laser {laser}"),
                move |c| c.lasers().submit_level_percent(laser),
                move |m, v| m.lasers[usize::from(laser - 1)].reported(v),
            );
        }
        self.read_exposure();
        self.read_filter();
    }

    fn read_exposure(&mut self) {
        self.submit(
            "camera.submit_exposure_us",
            "the camera exposure",
            |c| c.camera().submit_exposure_us(),
            |m, us| {
                m.camera.exposure_us = Some(us);
                if !m.camera.exposure_editing {
                    m.camera.exposure_input_ms = f64::from(us) / 1000.0;
                }
            },
        );
    }

    fn read_filter(&mut self) {
        self.submit(
            "filter_wheel.submit_position",
            "the filter wheel position",
            |c| c.filter_wheel().submit_position(),
            |m, p| {
                m.camera.filter = Some(p);
                m.camera.filter_input = p;
            },
        );
    }

    // ----- stage -----------------------------------------------------------

    /// Moves `axis` to `target` (asks first if it is far).
    pub fn move_axis(&mut self, axis: Axis, target: f64) {
        self.request_move(vec![(axis, target)]);
    }

    /// Moves several axes: targets outside the soft limits are refused here,
    /// before anything is sent; a move further than the configured distance
    /// waits for a confirmation.
    pub fn request_move(&mut self, targets: Vec<(Axis, f64)>) {
        for &(axis, target) in &targets {
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
        }
        let mut far = Vec::new();
        for &(axis, target) in &targets {
            let limit = if axis == Axis::R {
                self.model.prefs.confirm_deg
            } else {
                self.model.prefs.confirm_mm
            };
            match self.model.heading(axis) {
                Some(from) if (target - from).abs() <= limit => {}
                Some(from) => far.push(format!(
                    "{} by {:+.3} {} (from {from:.3} to {target:.3})",
                    axis.name().to_uppercase(),
                    target - from,
                    axis.unit()
                )),
                None => far.push(format!(
                    "{} to {target:.3} {} (the current position is not known)",
                    axis.name().to_uppercase(),
                    axis.unit()
                )),
            }
        }
        if far.is_empty() {
            self.send_moves(&targets);
        } else {
            self.model.confirm = Some(Confirm::Move {
                targets,
                question: format!("Move {}?", far.join(", ")),
            });
        }
    }

    /// Sends moves (already checked and, if far, confirmed).
    pub fn send_moves(&mut self, targets: &[(Axis, f64)]) {
        for &(axis, target) in targets {
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
                self.model.target[i] = Some(target);
            }
        }
    }

    /// Moves `axis` by `steps` jog steps from where it is going or is.
    pub fn jog(&mut self, axis: Axis, steps: f64) {
        let Some(from) = self.model.heading(axis) else {
            self.model
                .error("the stage position is not known yet: cannot jog");
            return;
        };
        let target = from + steps * self.model.jog_step[axis_index(axis)];
        self.move_axis(axis, target);
    }

    /// Asks for the confirmation of homing every axis.
    pub fn ask_home(&mut self) {
        self.model.confirm = Some(Confirm::Home);
    }

    /// The confirmation was given.
    pub fn confirm_yes(&mut self) {
        match self.model.confirm.take() {
            Some(Confirm::Home) => {
                let sent = self.submit(
                    "stage.submit_home",
                    "homing the stage",
                    |c| c.stage().submit_home(),
                    |m, ()| m.log(LineKind::Action, "homing"),
                );
                // Moving from now: a stop event may come before the
                // acknowledgement is taken.
                if sent {
                    self.model.moving = [true; 4];
                    self.model.target = [None; 4];
                }
            }
            Some(Confirm::Move { targets, .. }) => self.send_moves(&targets),
            None => {}
        }
    }

    /// The confirmation was refused.
    pub fn confirm_no(&mut self) {
        if let Some(c) = self.model.confirm.take() {
            let what = match c {
                Confirm::Home => "home".to_string(),
                Confirm::Move { question, .. } => question,
            };
            self.model
                .log(LineKind::Action, format!("cancelled: {what}"));
        }
    }

    /// Halts every axis.
    pub fn halt(&mut self) {
        self.submit(
            "stage.submit_halt",
            "halting the stage",
            |c| c.stage().submit_halt(),
            |m, ()| m.log(LineKind::Action, "stage halted"),
        );
    }

    // ----- saved positions ---------------------------------------------------

    /// Saves the current position under `name` (replacing one of that name).
    pub fn save_position(&mut self, name: &str) {
        let name = config::clean_name(name);
        if name.is_empty() {
            self.model.error("give the position a name first");
            return;
        }
        let Some(p) = self.model.position else {
            self.model
                .error("the stage position is not known yet: nothing to save");
            return;
        };
        let entry = SavedPosition { name, position: p };
        match self.model.saved.iter_mut().find(|s| s.name == entry.name) {
            Some(s) => *s = entry.clone(),
            None => self.model.saved.push(entry.clone()),
        }
        self.model.log(
            LineKind::Action,
            format!(
                "position {:?} saved: x {:.3}, y {:.3}, z {:.3} mm, r {:.2}°",
                entry.name, p.x_mm, p.y_mm, p.z_mm, p.r_deg
            ),
        );
        self.write_positions();
    }

    /// Forgets the saved position at `index`.
    pub fn delete_position(&mut self, index: usize) {
        if index < self.model.saved.len() {
            let p = self.model.saved.remove(index);
            self.model
                .log(LineKind::Action, format!("position {:?} deleted", p.name));
            self.write_positions();
        }
    }

    /// Goes to the saved position at `index` (all four axes).
    pub fn go_to_position(&mut self, index: usize) {
        if let Some(p) = self.model.saved.get(index).cloned() {
            self.model
                .log(LineKind::Action, format!("going to {:?}", p.name));
            self.request_move(p.position.targets().to_vec());
        }
    }

    fn write_positions(&mut self) {
        if let Some(s) = &self.store {
            s.write(config::Write::Positions(self.model.saved.clone()));
        }
    }

    /// Saves the preferences (confirmation distances, last directory).
    pub fn write_prefs(&mut self) {
        if let Some(s) = &self.store {
            s.write(config::Write::Prefs(self.model.prefs.clone()));
        }
    }

    // ----- lasers and LED ------------------------------------------------------

    /// Sets a laser's level; the level read back is shown.
    pub fn set_laser(&mut self, laser: u8, percent: f64) {
        self.submit(
            "lasers.submit_set_level_percent",
            format!("setting laser {laser} to {percent:.2} %"),
            move |c| c.lasers().submit_set_level_percent(laser, percent),
            move |m, v| {
                let l = &mut m.lasers[usize::from(laser - 1)];
                l.editing = false;
                l.reported(v);
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
                m.lasers[usize::from(laser - 1)].preview = Some(on);
                m.log(
                    LineKind::Action,
                    format!("laser {laser} preview {}", if on { "on" } else { "off" }),
                );
            },
        );
    }

    /// Turns every laser off.
    pub fn all_lasers_off(&mut self) {
        self.submit(
            "lasers.submit_all_off",
            "turning every laser off",
            |c| c.lasers().submit_all_off(),
            |m, ()| {
                for l in &mut m.lasers {
                    l.preview = Some(false);
                }
                m.log(LineKind::Action, "every laser off");
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
                m.led_set = Some((colour, percent));
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
                m.led_preview = Some(on);
                m.log(
                    LineKind::Action,
                    format!("LED preview {}", if on { "on" } else { "off" }),
                );
            },
        );
    }

    // ----- camera and filter wheel ---------------------------------------------

    /// Sets the exposure (ms); the exposure read back is shown.
    pub fn set_exposure_ms(&mut self, ms: f64) {
        let us = (ms * 1000.0).round();
        if !(us >= 1.0 && us <= f64::from(i32::MAX)) {
            self.model
                .error(format!("an exposure of {ms} ms is not possible"));
            return;
        }
        let us = us as u32;
        let sent = self.submit(
            "camera.submit_set_exposure_us",
            format!("setting the exposure to {} ms", f64::from(us) / 1000.0),
            move |c| c.camera().submit_set_exposure_us(us),
            move |m, ()| {
                m.camera.exposure_editing = false;
                m.log(
                    LineKind::Action,
                    format!("exposure set to {} ms", f64::from(us) / 1000.0),
                );
            },
        );
        if sent {
            self.read_exposure();
        }
    }

    /// Moves the filter wheel; the position read back is shown.
    pub fn set_filter(&mut self, position: u8) {
        let sent = self.submit(
            "filter_wheel.submit_set_position",
            format!("moving the filter wheel to {position}"),
            move |c| c.filter_wheel().submit_set_position(position),
            move |m, ()| m.log(LineKind::Action, format!("filter wheel to {position}")),
        );
        if sent {
            self.read_filter();
        }
    }

    /// Takes a snapshot (live view pauses for it and stays off after, so the
    /// snapshot stays on screen).
    pub fn take_snapshot(&mut self) {
        if !self.model.connected() {
            self.model
                .error("not connected: the snapshot was not taken");
            return;
        }
        let Some(s) = &self.session else { return };
        if !s.live.acquire(Acquire::Snapshot) {
            self.model
                .error("an acquisition is already running: the snapshot was not taken");
            return;
        }
        self.model.log(LineKind::Action, "taking a snapshot");
    }

    /// Acquires a Z series from the current Z and saves it as a TIFF stack
    /// at `path`.
    pub fn acquire_stack(&mut self, path: PathBuf) {
        if !self.model.connected() {
            self.model
                .error("not connected: the stack was not acquired");
            return;
        }
        let (planes, spacing) = (
            self.model.camera.stack_planes,
            self.model.camera.stack_spacing_um,
        );
        let limits = self.limits();
        let meta = self.tiff_meta();
        let Some(s) = &self.session else { return };
        if !s.live.acquire(Acquire::Stack {
            planes,
            spacing_um: spacing,
            path: path.clone(),
            meta,
            limits,
        }) {
            self.model
                .error("an acquisition is already running: the stack was not acquired");
            return;
        }
        self.model.log(
            LineKind::Action,
            format!(
                "acquiring a stack of {planes} planes {spacing} µm apart into {}",
                path.display()
            ),
        );
    }

    /// Stops a stack after the plane being taken.
    pub fn stop_stack(&mut self) {
        if let Some(s) = &self.session {
            s.live.cancel();
        }
    }

    /// The soft limits of the loaded settings (none before they are loaded).
    pub fn limits(&self) -> SoftLimits {
        self.model
            .settings
            .as_ref()
            .map(SoftLimits::from_settings)
            .unwrap_or_default()
    }

    /// The TIFF metadata of the current pixel size.
    pub fn tiff_meta(&self) -> TiffMetadata {
        match self.model.camera.pixel_um {
            Some(um) => TiffMetadata::new().with_pixel_size_um(um),
            None => TiffMetadata::new(),
        }
    }

    /// Saves the last snapshot as a TIFF file with the pixel size (on a
    /// thread).
    pub fn save_snapshot(&mut self, path: PathBuf) {
        let Some(snap) = self.snap.clone() else {
            self.model.error("no snapshot to save: take one first");
            return;
        };
        let meta = match snap.pixel_um {
            Some(um) => TiffMetadata::new().with_pixel_size_um(um),
            None => TiffMetadata::new(),
        };
        let n = snap.number;
        self.spawn_job(move || {
            let r = snap.frame.save_tiff_with(&path, &meta);
            Box::new(move |m: &mut Model| match r {
                Ok(()) => {
                    m.log(
                        LineKind::Action,
                        format!(
                            "snapshot {n} saved to {} ({})",
                            path.display(),
                            match meta.pixel_size_um {
                                Some(um) => format!("{um:.4} µm per pixel"),
                                None => "no pixel size: the instrument did not report one".into(),
                            }
                        ),
                    );
                    m.camera.last_saved = Some(path);
                }
                Err(e) => m.error(format!("saving snapshot {n}: {e}")),
            })
        });
    }

    /// Runs `work` on a thread; what it returns is applied to the model on
    /// the UI thread.
    pub fn spawn_job(&mut self, work: impl FnOnce() -> Apply + Send + 'static) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ctx = self.ctx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(work());
            ctx.request_repaint();
        });
        self.jobs.push(rx);
    }

    // ----- files -------------------------------------------------------------

    /// Opens the file dialog for `purpose`.
    pub fn open_picker(&mut self, purpose: Purpose) {
        let dir = self
            .model
            .prefs
            .last_dir
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        let name = match purpose {
            Purpose::OpenWorkflow => String::new(),
            Purpose::SaveSnapshot => format!(
                "snapshot-{}-{}.tif",
                stamp(),
                self.snap.as_ref().map_or(0, |s| s.number)
            ),
            Purpose::SaveStack => format!("stack-{}.tif", stamp()),
            Purpose::SaveWorkflow => format!("zstack-{}.txt", stamp()),
        };
        self.picker = Some(FilePicker::new(purpose, dir, name, self.ctx.clone()));
    }

    /// The file dialog gave a path.
    pub fn picked(&mut self, purpose: Purpose, path: PathBuf) {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if self.model.prefs.last_dir.as_deref() != Some(d) {
                self.model.prefs.last_dir = Some(d.to_path_buf());
                self.write_prefs();
            }
        }
        match purpose {
            Purpose::OpenWorkflow => self.load_workflow(path),
            Purpose::SaveSnapshot => self.save_snapshot(path),
            Purpose::SaveStack => self.acquire_stack(path),
            Purpose::SaveWorkflow => self.save_zstack(path),
        }
    }

    // ----- workflows -----------------------------------------------------------

    /// Loads a workflow file (on a thread).
    pub fn load_workflow(&mut self, path: PathBuf) {
        self.spawn_job(move || {
            let r = Workflow::load(&path);
            Box::new(move |m: &mut Model| match r {
                Ok(wf) => {
                    let name = file_name(&path);
                    m.log(
                        LineKind::Action,
                        format!(
                            "workflow {name} loaded ({} planes)",
                            wf.planes().unwrap_or(1)
                        ),
                    );
                    set_workflow(m, wf, name, path.display().to_string());
                }
                Err(e) => m.error(format!("cannot load the workflow {}: {e}", path.display())),
            })
        });
    }

    /// Starts the loaded workflow.
    pub fn start_workflow(&mut self) {
        let Some(wf) = self.model.workflow_file.clone() else {
            self.model.error("no workflow loaded");
            return;
        };
        if !self.model.connected() {
            self.model
                .error("not connected: the workflow was not started");
            return;
        }
        let limits = self.limits();
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
        let client = &s.client;
        match self.timer.time("workflows.submit_start", || {
            client.workflows().soft_limits(limits).submit_start(&wf)
        }) {
            Ok(run) => {
                s.run = Some(Box::new(run));
                s.stopping = false;
                let w = &mut self.model.workflow;
                w.progress = None;
                w.summary = None;
                w.status = "starting".into();
                w.started_at = Some(Instant::now());
                w.first_progress = None;
                self.model.log(LineKind::Action, "workflow started");
            }
            Err(e) => self.model.error(format!("starting the workflow: {e}")),
        }
    }

    /// Stops the running workflow.
    pub fn stop_workflow(&mut self) {
        let connected = self.model.connected();
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

    /// Builds the z-stack editor's workflow through the library's builder
    /// (which validates every value) and checks it against the soft limits
    /// of the loaded settings; then the library's `Workflows::check` checks
    /// it again against the instrument's own soft limits, read now (on a
    /// thread: it waits for the instrument), and it becomes the workflow
    /// Start runs.
    pub fn use_zstack(&mut self) {
        let (wf, summary) = match self.zstack.build(&self.model) {
            Ok(w) => w,
            Err(e) => {
                self.model.workflow.zstack_check = Some(Err(e.clone()));
                self.model.error(format!("z-stack: {e}"));
                return;
            }
        };
        let client = match &self.session {
            Some(s) if self.model.connected() => s.client.clone(),
            _ => {
                let e = "not connected: the instrument's soft limits cannot be read".to_string();
                self.model.workflow.zstack_check = Some(Err(e.clone()));
                self.model.error(format!("z-stack: {e}"));
                return;
            }
        };
        self.model.workflow.zstack_check = None;
        self.model.workflow.zstack_checking = true;
        self.spawn_job(move || {
            let r = client.workflows().check(&wf);
            Box::new(move |m: &mut Model| {
                m.workflow.zstack_checking = false;
                match r {
                    Ok(_) => {
                        m.workflow.zstack_check = Some(Ok(summary.clone()));
                        m.log(LineKind::Action, format!("z-stack ready: {summary}"));
                        set_workflow(
                            m,
                            wf,
                            "z-stack (editor)".into(),
                            "the z-stack editor".into(),
                        );
                    }
                    Err(e) => {
                        m.workflow.zstack_check = Some(Err(e.to_string()));
                        m.error(format!("z-stack: {e}"));
                    }
                }
            })
        });
    }

    /// Writes the z-stack editor's workflow to a file (on a thread).
    pub fn save_zstack(&mut self, path: PathBuf) {
        match self.zstack.build(&self.model) {
            Ok((wf, _)) => self.spawn_job(move || {
                let r = wf.save(&path);
                Box::new(move |m: &mut Model| match r {
                    Ok(()) => m.log(
                        LineKind::Action,
                        format!("z-stack workflow saved to {}", path.display()),
                    ),
                    Err(e) => m.error(format!("saving the workflow: {e}")),
                })
            }),
            Err(e) => {
                self.model.workflow.zstack_check = Some(Err(e.clone()));
                self.model.error(format!("z-stack: {e}"));
            }
        }
    }

    /// A snapshot came back from the live worker.
    pub(crate) fn snapshot_taken(&mut self, number: u32, frame: flamingo_client::live::Frame) {
        self.model.log(
            LineKind::Action,
            format!(
                "snapshot {number}: {} × {} px, exposure {} µs",
                frame.width(),
                frame.height(),
                frame.exposure_us()
            ),
        );
        self.snap = Some(Snap {
            number,
            frame,
            pixel_um: self.model.camera.pixel_um,
        });
    }
}

/// Makes `wf` the workflow Start runs.
fn set_workflow(m: &mut Model, wf: Workflow, name: String, source: String) {
    m.workflow.planes = wf.planes();
    m.workflow.loaded = Some(name);
    m.workflow.source = Some(source);
    m.workflow.status = "ready".into();
    m.workflow_file = Some(wf);
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The local date and time as `YYYYMMDD-HHMMSS` (UTC: no time zone
/// database is needed, and names still sort by time).
pub fn stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(stamp().len(), 15);
    }
}
