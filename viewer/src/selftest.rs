//! The scripted self-test: what a person would do in the window, driven
//! from the UI loop, with the simulator's faults injected on the way. The
//! microscopist's steps (contrast, snapshot and its TIFF, a saved position,
//! the Home confirmation, a z-stack from the editor run and stopped, a full
//! run) are clicks and typing through the window's own input (eframe's
//! input hook); the fault scenarios call the buttons' actions. Screenshots
//! of the main states are saved on the way (`<screenshot>-<state>.png`);
//! at the end it saves the main screenshot, writes a report (stdout and
//! `<screenshot>.json`) and closes the window.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eframe::egui::{self, ViewportCommand};
use flamingo_client::codec::CommandCode;
use flamingo_client::devices::LedColour;
use flamingo_client::sim::Simulator;
use flamingo_client::{Axis, ConnectionState};

use crate::app::{conn_name, Hits, Viewer};
use crate::display::Source;
use crate::model::Confirm;
use crate::panels::image::Mode;
use crate::pointer::Pointer;
use crate::timing::us;
use crate::Options;

/// One step of a clicked script.
#[derive(Clone, Copy)]
enum Do {
    /// Click the widget of this name.
    Click(&'static str),
    /// Type into the focused field.
    Type(&'static str),
    /// Press and release a key.
    Key(egui::Key),
    /// Turn the wheel over a widget (lines).
    Wheel(&'static str, f32),
    /// Point at a widget, this far from its centre.
    Hover(&'static str, f32, f32),
    /// Drag from a widget's centre by this much.
    Drag(&'static str, f32, f32),
    /// Wait until the condition holds.
    Wait(&'static str, fn(&Viewer) -> bool),
    /// Save a screenshot of this state.
    Shot(&'static str),
    /// Do this directly (what a person does with a field hard to script).
    Call(fn(&mut Viewer)),
}

/// How long a script waits for one step.
const STEP_LIMIT: Duration = Duration::from_secs(20);

/// Contrast, snapshot and its TIFF.
const ACQUIRE: &[Do] = &[
    Do::Click("contrast auto"),
    Do::Wait("manual contrast from the histogram", |v| {
        v.image.mode == Mode::Manual
            && v.image
                .shown
                .as_ref()
                .is_some_and(|s| s.window == (v.image.min, v.image.max))
    }),
    // Then auto for every frame (the simulator's pattern changes with each).
    Do::Click("contrast mode"),
    Do::Wait("the contrast menu", |v| {
        v.hits.get("contrast auto mode").is_some()
    }),
    Do::Click("contrast auto mode"),
    Do::Wait("auto contrast", |v| v.image.mode == Mode::Auto),
    Do::Click("snapshot"),
    Do::Wait("the snapshot on screen", |v| {
        v.image
            .shown
            .as_ref()
            .is_some_and(|s| matches!(s.source, Source::Snapshot(_)))
    }),
    Do::Click("save snapshot"),
    Do::Wait("the file dialog", |v| v.picker.is_some()),
    Do::Click("picker ok"),
    Do::Wait("the snapshot saved", |v| {
        v.model.camera.last_saved.is_some()
    }),
    Do::Wheel("image", 2.0),
    Do::Drag("image", -30.0, 0.0),
    Do::Hover("image", 24.0, -16.0),
    Do::Wait("zoomed, a pixel value under the cursor", |v| {
        v.image.scale.is_some() && v.image.hover.is_some()
    }),
    Do::Shot("snapshot"),
    Do::Click("zoom fit"),
    Do::Click("live"),
    Do::Wait("live frames again", |v| {
        v.image
            .shown
            .as_ref()
            .is_some_and(|s| s.source == Source::Live)
    }),
];

/// A saved position and the Home confirmation, cancelled.
const POSITIONS: &[Do] = &[
    Do::Click("position name"),
    Do::Type("cell A"),
    Do::Click("save position"),
    Do::Wait("the position saved", |v| {
        v.model.saved.iter().any(|p| p.name == "cell A")
    }),
    Do::Click("image"),
    Do::Wait("the keyboard focus on the image", |v| v.image.focused),
    Do::Key(egui::Key::ArrowRight),
    Do::Wait("a keyboard jog of X", |v| v.model.target[0].is_some()),
    Do::Key(egui::Key::Escape),
    Do::Wait("the keyboard focus released", |v| !v.image.focused),
    Do::Click("home"),
    Do::Wait("the Home confirmation", |v| {
        v.model.confirm == Some(Confirm::Home)
    }),
    Do::Shot("home-confirm"),
    Do::Click("confirm no"),
    Do::Wait("the confirmation gone", |v| v.model.confirm.is_none()),
];

/// Disconnected (the panels greyed, the last values shown), then a new
/// simulator.
const DISCONNECTED: &[Do] = &[
    Do::Click("disconnect"),
    Do::Wait("disconnected", |v| {
        v.session.is_none() && !v.model.connected()
    }),
    Do::Shot("disconnected"),
    Do::Click("start simulator"),
    Do::Wait("connected to a new simulator", |v| {
        v.model.connected() && v.model.position.is_some() && v.model.camera.pixel_um.is_some()
    }),
];

/// A z-stack from the editor, started and stopped; then the workflow file
/// given on the command line again.
const ZSTACK: &[Do] = &[
    Do::Call(|v| {
        v.zstack.planes = 400;
        v.zstack.spacing_um = 1.0;
    }),
    Do::Click("zstack use"),
    Do::Wait("the z-stack ready", |v| {
        v.model.workflow.loaded.as_deref() == Some("z-stack (editor)")
    }),
    Do::Click("workflow start"),
    Do::Wait("z-stack progress and the time left", |v| {
        v.model.workflow.progress.is_some_and(|(c, _)| c >= 100)
            && v.model.workflow.seconds_left(Instant::now()).is_some()
    }),
    Do::Shot("zstack-running"),
    Do::Click("workflow stop"),
    Do::Wait("the z-stack stopped", |v| {
        v.model.workflow.status == "stopped"
    }),
    Do::Call(|v| {
        if let Some(p) = v.opts.workflow.clone() {
            v.load_workflow(p);
        }
    }),
    Do::Wait("the workflow file loaded again", |v| {
        v.model.workflow.loaded.as_deref() != Some("z-stack (editor)")
    }),
];

/// Events in the injected flood.
const FLOOD: u64 = 20_000;
/// How long the instrument stops reading in the stall.
const STALL: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connect,
    Acquire,
    Positions,
    Actions,
    Reconnect,
    Stall,
    Flood,
    Workflow,
    Disconnected,
    AfterWorkflow,
    Screenshot,
    Done,
}

/// Library time per frame while faults were active.
#[derive(Debug, Default)]
struct FaultWindow {
    frames: u64,
    worst: Duration,
}

/// The self-test's state.
pub struct SelfTest {
    faults: bool,
    screenshot: PathBuf,
    limit: Duration,
    started: Instant,
    phase: Phase,
    since: Instant,
    step: u32,
    mark: u64,
    notes: Vec<String>,
    fault_window: FaultWindow,
    last_frames: u64,
    last_events: u64,
    /// Clicks and keys for the next frames.
    pointer: Pointer,
    /// The script of the phase, and the step at.
    at: usize,
    step_since: Instant,
    /// A screenshot asked for and not back yet.
    shot: Option<&'static str>,
    /// Screenshots saved.
    shots: Vec<PathBuf>,
    /// Clicks made.
    clicks: u32,
    /// When each phase began (seconds since the start).
    phases: Vec<(Phase, f64)>,
    /// Screenshots being written.
    saving: Vec<std::thread::JoinHandle<Result<(), String>>>,
}

impl SelfTest {
    /// A self-test with the command line's options.
    pub fn new(opts: &Options) -> SelfTest {
        SelfTest {
            faults: opts.faults,
            screenshot: opts
                .screenshot
                .clone()
                .unwrap_or_else(|| PathBuf::from("viewer-screenshot.png")),
            limit: opts.time_limit,
            started: Instant::now(),
            phase: Phase::Connect,
            since: Instant::now(),
            step: 0,
            mark: 0,
            notes: Vec::new(),
            fault_window: FaultWindow::default(),
            last_frames: 0,
            last_events: 0,
            pointer: Pointer::default(),
            at: 0,
            step_since: Instant::now(),
            shot: None,
            shots: Vec::new(),
            clicks: 0,
            phases: Vec::new(),
            saving: Vec::new(),
        }
    }

    /// Where the screenshot of a state goes: next to the main one.
    fn shot_path(&self, state: &str) -> PathBuf {
        let stem = self
            .screenshot
            .file_stem()
            .map_or("screenshot".into(), |s| s.to_string_lossy().into_owned());
        self.screenshot
            .with_file_name(format!("{stem}-{state}.png"))
    }

    /// Runs a clicked script one step per frame; true once it is done.
    /// Fails the test if a step does not happen in time.
    fn run_script(
        &mut self,
        script: &[Do],
        v: &mut Viewer,
        ctx: &egui::Context,
    ) -> Result<bool, String> {
        if self.pointer.busy() {
            return Ok(false);
        }
        if let Some(name) = self.shot {
            if let Some(image) = screenshot_event(ctx, name) {
                let path = self.shot_path(name);
                // Encoding a PNG takes tens of milliseconds: not on the UI
                // thread, whose frame times the report gives.
                let p = path.clone();
                self.saving.push(std::thread::spawn(move || {
                    save_png(&p, &image).map_err(|e| format!("cannot save {}: {e}", p.display()))
                }));
                self.shots.push(path);
                self.shot = None;
                self.next_step();
            } else if self.step_since.elapsed() > STEP_LIMIT {
                return Err(format!("the screenshot {name:?} did not come back"));
            }
            return Ok(false);
        }
        let Some(&step) = script.get(self.at) else {
            return Ok(true);
        };
        match step {
            Do::Click(name) => {
                let r = v
                    .hits
                    .get(name)
                    .ok_or_else(|| format!("{name:?} is not on screen to click"))?;
                self.pointer.click_at(r.center());
                self.clicks += 1;
                self.next_step();
            }
            Do::Type(text) => {
                self.pointer.text(text);
                self.next_step();
            }
            Do::Key(k) => {
                self.pointer.key(k, egui::Modifiers::NONE);
                self.next_step();
            }
            Do::Wheel(name, lines) | Do::Hover(name, lines, _) | Do::Drag(name, lines, _) => {
                let r = v
                    .hits
                    .get(name)
                    .ok_or_else(|| format!("{name:?} is not on screen"))?;
                match step {
                    Do::Wheel(..) => self.pointer.wheel(r.center(), lines),
                    Do::Hover(_, dx, dy) => self.pointer.move_to(r.center() + egui::vec2(dx, dy)),
                    Do::Drag(_, dx, dy) => self
                        .pointer
                        .drag(r.center(), r.center() + egui::vec2(dx, dy)),
                    _ => {}
                }
                self.next_step();
            }
            Do::Wait(what, cond) => {
                if cond(v) {
                    self.next_step();
                } else if self.step_since.elapsed() > STEP_LIMIT {
                    return Err(format!("timed out waiting for {what}"));
                }
            }
            Do::Shot(name) => {
                ctx.send_viewport_cmd(ViewportCommand::Screenshot(egui::UserData::new(name)));
                self.shot = Some(name);
                self.step_since = Instant::now();
            }
            Do::Call(f) => {
                f(v);
                self.next_step();
            }
        }
        Ok(false)
    }

    fn next_step(&mut self) {
        self.at += 1;
        self.step_since = Instant::now();
    }

    /// Runs `script`, then goes to `next`.
    fn script_phase(&mut self, script: &[Do], next: Phase, v: &mut Viewer, ctx: &egui::Context) {
        match self.run_script(script, v, ctx) {
            Ok(true) => self.go(next),
            Ok(false) => {}
            Err(why) => {
                let why = format!("{:?}: {why}", self.phase);
                self.finish(v, ctx, Some(why), None);
            }
        }
    }

    fn go(&mut self, p: Phase) {
        log::info!("self-test: {:?} -> {:?}", self.phase, p);
        self.phases.push((p, self.started.elapsed().as_secs_f64()));
        self.phase = p;
        self.since = Instant::now();
        self.step = 0;
        self.at = 0;
        self.step_since = Instant::now();
    }

    fn in_phase(&self) -> Duration {
        self.since.elapsed()
    }

    /// Input for the next frame (the window's own input, before egui sees
    /// it): clicks the self-test makes land here.
    pub fn input(&mut self, _hits: &Hits, raw: &mut egui::RawInput) {
        // Under Xvfb no window manager gives the window the keyboard focus;
        // a person typing into it has it.
        raw.focused = true;
        raw.events.extend(self.pointer.next_frame());
    }

    /// One step, once per frame (before drawing).
    pub fn step(&mut self, v: &mut Viewer, ctx: &egui::Context) {
        // Keep frames coming: the test watches the UI, not a person.
        ctx.request_repaint_after(Duration::from_millis(16));
        if matches!(self.phase, Phase::Reconnect | Phase::Stall | Phase::Flood) {
            self.fault_window.frames += v.timer.frames - self.last_frames;
            self.fault_window.worst = self.fault_window.worst.max(v.timer.last_frame);
        }
        self.last_frames = v.timer.frames;
        if self.phase != Phase::Done && self.started.elapsed() > self.limit {
            let why = format!("timed out in phase {:?} after {:?}", self.phase, self.limit);
            self.finish(v, ctx, Some(why), None);
            return;
        }
        let connected = v.model.conn == Some(ConnectionState::Connected);
        match self.phase {
            Phase::Connect => {
                let ready = connected
                    && v.model.settings.is_some()
                    && v.model.position.is_some()
                    && v.model.workflow_file.is_some()
                    && v.live_frames_shown >= 10;
                if ready {
                    // Files the test saves go next to its screenshot.
                    v.model.prefs.last_dir = self
                        .screenshot
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .map(Path::to_path_buf)
                        .or_else(|| std::env::current_dir().ok());
                    self.go(Phase::Acquire);
                }
            }
            Phase::Acquire => self.script_phase(ACQUIRE, Phase::Positions, v, ctx),
            Phase::Positions => self.script_phase(POSITIONS, Phase::Actions, v, ctx),
            Phase::Actions => self.actions(v),
            Phase::Reconnect => self.reconnect(v, connected),
            Phase::Stall => self.stall(v, connected),
            Phase::Flood => self.flood(v),
            Phase::Workflow => self.workflow(v, ctx),
            Phase::Disconnected => {
                self.script_phase(DISCONNECTED, Phase::AfterWorkflow, v, ctx);
                if self.phase == Phase::AfterWorkflow {
                    self.mark = v.live_frames_shown;
                }
            }
            Phase::AfterWorkflow => {
                if v.live_frames_shown >= self.mark + 10 && self.in_phase() > Duration::from_secs(1)
                {
                    self.go(Phase::Screenshot);
                }
            }
            Phase::Screenshot => self.screenshot(v, ctx),
            Phase::Done => {}
        }
    }

    fn sim(v: &Viewer) -> Option<std::sync::Arc<Simulator>> {
        v.session.as_ref().and_then(|s| s.sim.clone())
    }

    fn idle(v: &Viewer) -> bool {
        v.session.as_ref().is_some_and(|s| s.pending.is_empty())
            && !v.model.moving.iter().any(|&m| m)
    }

    fn actions(&mut self, v: &mut Viewer) {
        match self.step {
            0 => {
                // What a person does first: jog, move, a refused move, lasers, LED.
                v.model.jog_step[0] = 0.25;
                v.jog(Axis::X, 2.0);
                v.move_axis(Axis::Y, 20.0);
                // Further than the confirmation distance: confirmed.
                if v.model.confirm.is_some() {
                    v.confirm_yes();
                }
                // Outside the soft limits: refused in the viewer, shown as an error.
                v.move_axis(Axis::Z, 99.0);
                v.set_laser(2, 12.5);
                v.set_laser_preview(2, true);
                v.set_led(LedColour::Green, 40.0);
                v.set_led_preview(true);
                self.step = 1;
            }
            _ => {
                if Self::idle(v) && self.in_phase() > Duration::from_millis(300) {
                    let p = v.model.position.unwrap_or_default();
                    self.notes.push(format!(
                        "moved to x {:.3}, y {:.3}; laser 2 at {:?} %",
                        p.x_mm, p.y_mm, v.model.lasers[1].level
                    ));
                    self.go(if self.faults {
                        Phase::Reconnect
                    } else {
                        Phase::Workflow
                    });
                }
            }
        }
    }

    fn reconnect(&mut self, v: &mut Viewer, connected: bool) {
        let Some(sim) = Self::sim(v) else { return };
        match self.step {
            0 => {
                // The instrument drops the link before its next message.
                sim.update_faults(|f| f.close_after_messages = Some(0));
                self.step = 1;
            }
            1 => {
                // Ask something so the instrument writes (and drops the link).
                if connected {
                    v.query_positions();
                }
                if matches!(v.model.conn, Some(ConnectionState::Reconnecting { .. }))
                    || v.model.states_seen.contains(&"reconnecting")
                {
                    self.step = 2;
                }
            }
            _ => {
                if connected && self.in_phase() > Duration::from_millis(500) {
                    self.notes.push(format!(
                        "link dropped and re-established in {:.2} s",
                        self.in_phase().as_secs_f64()
                    ));
                    self.go(Phase::Stall);
                }
            }
        }
    }

    fn stall(&mut self, v: &mut Viewer, connected: bool) {
        let Some(sim) = Self::sim(v) else { return };
        match self.step {
            0 => {
                if !connected {
                    return;
                }
                // The instrument stops reading after the next message: the
                // queries below wait, the window must not.
                sim.update_faults(|f| f.stop_reading = Some(STALL));
                v.query_positions();
                v.set_laser(3, 7.5);
                v.jog(Axis::X, -1.0);
                self.mark = v.timer.frames;
                self.step = 1;
            }
            _ => {
                if self.in_phase() > STALL + Duration::from_millis(300) && Self::idle(v) {
                    self.notes.push(format!(
                        "stalled instrument ({} ms): {} UI frames drawn meanwhile",
                        STALL.as_millis(),
                        v.timer.frames - self.mark
                    ));
                    self.go(Phase::Flood);
                }
            }
        }
    }

    fn flood(&mut self, v: &mut Viewer) {
        let Some(sim) = Self::sim(v) else { return };
        match self.step {
            0 => {
                self.mark = v.model.events_total;
                sim.update_faults(|f| f.flood = Some((CommandCode::UI_SET_GAUGE_VALUE, FLOOD, 0)));
                self.step = 1;
            }
            1 => {
                let sent = sim.counters().flood_messages;
                if sent >= FLOOD {
                    self.step = 2;
                    self.since = Instant::now();
                    self.last_events = v.model.events_total;
                }
            }
            _ => {
                // Drained: nothing new for 300 ms.
                if v.model.events_total != self.last_events {
                    self.last_events = v.model.events_total;
                    self.since = Instant::now();
                } else if self.in_phase() > Duration::from_millis(300) {
                    let dropped = v.session.as_ref().map_or(0, |s| s.events.dropped());
                    self.notes.push(format!(
                        "event flood: {} events received, {} dropped by the bounded queue",
                        v.model.events_total - self.mark,
                        dropped
                    ));
                    self.go(Phase::Workflow);
                }
            }
        }
    }

    fn workflow(&mut self, v: &mut Viewer, ctx: &egui::Context) {
        match self.step {
            // A z-stack from the editor, started and stopped with clicks.
            0 => {
                if v.model.conn != Some(ConnectionState::Connected) && self.at == 0 {
                    return;
                }
                match self.run_script(ZSTACK, v, ctx) {
                    Ok(true) => {
                        self.notes.push(format!(
                            "z-stack from the editor stopped at {:?}, then {} loaded again",
                            v.model.workflow.summary.as_ref().map(|s| s.images_acquired),
                            v.model.workflow.loaded.as_deref().unwrap_or("?")
                        ));
                        self.step = 3;
                    }
                    Ok(false) => {}
                    Err(why) => self.finish(v, ctx, Some(format!("Workflow: {why}")), None),
                }
            }
            // Then a full run of the workflow file, started with a click.
            3 => {
                if v.model.conn != Some(ConnectionState::Connected) || self.pointer.busy() {
                    return;
                }
                let Some(r) = v.hits.get("workflow start") else {
                    return;
                };
                self.mark = u64::from(v.model.workflow.finished_runs);
                self.pointer.click_at(r.center());
                self.clicks += 1;
                self.step = 4;
            }
            _ => {
                let wf = &v.model.workflow;
                if u64::from(wf.finished_runs) > self.mark {
                    self.notes.push(format!(
                        "workflow {}: progress {:?}",
                        wf.status, wf.progress
                    ));
                    self.go(Phase::Disconnected);
                } else if wf.status == "failed" {
                    let why = format!(
                        "the workflow failed: {:?}",
                        v.model.errors.back().map(|e| &e.text)
                    );
                    self.finish(v, ctx, Some(why), None);
                }
            }
        }
    }

    fn screenshot(&mut self, v: &mut Viewer, ctx: &egui::Context) {
        if self.step == 0 {
            ctx.send_viewport_cmd(ViewportCommand::Screenshot(egui::UserData::new("main")));
            self.step = 1;
            return;
        }
        if let Some(image) = screenshot_event(ctx, "main") {
            let r = save_png(&self.screenshot, &image);
            let why = r
                .err()
                .map(|e| format!("cannot save {}: {e}", self.screenshot.display()));
            self.finish(v, ctx, why, Some(ctx.pixels_per_point()));
        } else if self.in_phase() > Duration::from_secs(10) {
            self.finish(v, ctx, Some("no screenshot came back".into()), None);
        }
    }

    /// Writes the report, sets the exit code and closes the window.
    fn finish(
        &mut self,
        v: &mut Viewer,
        ctx: &egui::Context,
        failure: Option<String>,
        ppp: Option<f32>,
    ) {
        self.phase = Phase::Done;
        let mut failure = failure;
        for h in self.saving.drain(..) {
            if let Ok(Err(e)) = h.join() {
                failure.get_or_insert(e);
            }
        }
        let t = &v.timer;
        let live = v
            .session
            .as_ref()
            .map(|s| s.live.status.lock().clone())
            .unwrap_or_default();
        let (cur, total) = v.model.workflow.progress.unwrap_or((0, 0));
        let dropped = v.session.as_ref().map_or(0, |s| s.events.dropped());
        let rect = |r: Option<egui::Rect>| match (r, ppp) {
            (Some(r), Some(p)) => format!(
                "[{:.0},{:.0},{:.0},{:.0}]",
                r.min.x * p,
                r.min.y * p,
                r.width() * p,
                r.height() * p
            ),
            _ => "null".into(),
        };
        let mut j = String::from("{");
        let _ = write!(
            j,
            "\"viewer_self_test\":\"{}\",\"failure\":{},\"faults\":{},\"elapsed_s\":{:.2},",
            if failure.is_none() { "ok" } else { "failed" },
            failure.as_deref().map_or("null".into(), json_str),
            self.faults,
            self.started.elapsed().as_secs_f64()
        );
        let _ = write!(
            j,
            "\"ui_frames\":{},\"lib_us_per_frame\":{{\"p50\":{:.1},\"p99\":{:.1},\"max\":{:.1}}},\"frames_over_1ms\":{},\"longest_call_us\":{:.1},\"longest_call\":{},\"fault_frames\":{},\"fault_lib_us_max\":{:.1},\"worst_ui_frame_ms\":{:.2},\"worst_ui_frame_at_s\":{:.2},",
            t.frames,
            us(t.quantile(0.5)),
            us(t.quantile(0.99)),
            us(t.worst_frame),
            t.frames_over_budget,
            us(t.worst_call),
            json_str(t.worst_call_name),
            self.fault_window.frames,
            us(self.fault_window.worst),
            t.worst_ui_frame.as_secs_f64() * 1e3,
            t.worst_ui_at.as_secs_f64(),
        );
        let over: Vec<String> = t
            .over
            .iter()
            .take(20)
            .map(|o| {
                format!(
                    "{{\"lib_us\":{:.1},\"wall_us\":{:.1},\"runq_us\":{:.1},\"call\":{},\"at_s\":{:.2}}}",
                    us(o.lib),
                    us(o.wall),
                    us(o.runq),
                    json_str(o.longest),
                    o.at.as_secs_f64()
                )
            })
            .collect();
        let _ = write!(
            j,
            "\"lib_us_net_of_preemption_max\":{:.1},\"over_budget_frames\":[{}],",
            us(t.worst_net),
            over.join(",")
        );
        let _ = write!(
            j,
            "\"live_frames_shown\":{},\"live_frames_received\":{},\"live_dropped\":{},\"workflow_current\":{},\"workflow_total\":{},\"workflow_status\":{},\"events\":{},\"events_dropped\":{},\"errors_shown\":{},\"states_seen\":[{}],\"connection\":{},",
            v.live_frames_shown,
            live.frames_total,
            live.dropped_total,
            cur,
            total,
            json_str(&v.model.workflow.status),
            v.model.events_total,
            dropped,
            v.model.errors_total,
            v.model.states_seen.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(","),
            json_str(conn_name(&v.model)),
        );
        let _ = write!(
            j,
            "\"display_conversion_ms\":{},\"phases_s\":{{{}}},\"clicks\":{},\"state_screenshots\":[{}],\"saved_file\":{},\"pixel_um\":{},\"saved_positions\":{},",
            v.image
                .convert_time()
                .map_or("null".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3)),
            self.phases
                .iter()
                .map(|(p, t)| format!("{}:{t:.2}", json_str(&format!("{p:?}"))))
                .collect::<Vec<_>>()
                .join(","),
            self.clicks,
            self.shots
                .iter()
                .map(|p| json_str(&p.display().to_string()))
                .collect::<Vec<_>>()
                .join(","),
            v.model
                .camera
                .last_saved
                .as_ref()
                .map_or("null".into(), |p| json_str(&p.display().to_string())),
            v.model
                .camera
                .pixel_um
                .map_or("null".into(), |um| format!("{um}")),
            v.model.saved.len(),
        );
        let _ = write!(
            j,
            "\"notes\":[{}],\"screenshot\":{},\"image_rect\":{},\"progress_rect\":{}}}",
            self.notes
                .iter()
                .map(|s| json_str(s))
                .collect::<Vec<_>>()
                .join(","),
            json_str(&self.screenshot.display().to_string()),
            rect(v.layout.image),
            rect(v.layout.progress),
        );
        println!("{j}");
        let side = sidecar(&self.screenshot);
        if let Err(e) = std::fs::write(&side, format!("{j}\n")) {
            eprintln!("viewer self-test: cannot write {}: {e}", side.display());
        }
        let code = if failure.is_none() { 0 } else { 1 };
        if let Some(f) = &failure {
            eprintln!("viewer self-test: FAILED: {f}");
        }
        crate::EXIT_CODE.store(code, Ordering::SeqCst);
        ctx.send_viewport_cmd(ViewportCommand::Close);
    }
}

/// The report written next to a screenshot.
pub fn sidecar(png: &Path) -> PathBuf {
    let mut s = png.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The screenshot tagged `name`, if it came back in this frame.
fn screenshot_event(
    ctx: &egui::Context,
    name: &'static str,
) -> Option<std::sync::Arc<egui::ColorImage>> {
    ctx.input(|i| {
        i.raw.events.iter().find_map(|e| match e {
            egui::Event::Screenshot {
                image, user_data, ..
            } if user_data
                .data
                .as_ref()
                .and_then(|d| d.downcast_ref::<&'static str>())
                == Some(&name) =>
            {
                Some(image.clone())
            }
            _ => None,
        })
    })
}

fn save_png(path: &Path, image: &egui::ColorImage) -> std::io::Result<()> {
    let f = std::fs::File::create(path)?;
    let mut enc = png::Encoder::new(
        std::io::BufWriter::new(f),
        image.size[0] as u32,
        image.size[1] as u32,
    );
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::High);
    let mut w = enc.write_header().map_err(std::io::Error::other)?;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    w.write_image_data(&bytes).map_err(std::io::Error::other)?;
    w.finish().map_err(std::io::Error::other)
}
