//! What the window shows: the instrument's state as last reported, the
//! event log and the errors. Completed operations apply themselves to it.
//!
//! Each instrument value is kept as the instrument reported it (`None`
//! until it has), apart from what the user is typing; panels show the
//! reported value and grey it while the link is down.

use std::collections::VecDeque;
use std::time::Instant;

use flamingo_client::devices::{
    LedColour, ScopeSettings, StagePosition, Workflow, WorkflowSummary,
};
use flamingo_client::{Axis, ConnectionState};

use crate::config::{Prefs, SavedPosition};

/// Lines kept in the event log.
pub const LOG_LINES: usize = 400;
/// Errors kept on screen.
pub const ERROR_LINES: usize = 6;

/// One laser's controls.
#[derive(Clone, Debug, Default)]
pub struct LaserUi {
    /// The level the instrument last reported (percent): read back after a
    /// set, read on connect, and from the instrument's level events.
    pub level: Option<f64>,
    /// The slider's value: follows `level` unless the user moved it.
    pub input: f64,
    /// The user moved the slider and has not set it yet.
    pub editing: bool,
    /// Preview as last acknowledged (the instrument has no query for it):
    /// `None` until set on this connection.
    pub preview: Option<bool>,
}

impl LaserUi {
    /// Records a level the instrument reported; the slider follows unless
    /// the user is moving it.
    pub fn reported(&mut self, v: f64) {
        self.level = Some(v);
        if !self.editing {
            self.input = v;
        }
    }
}

/// One line of the event log.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// Seconds since the viewer started.
    pub t: f64,
    /// The text.
    pub text: String,
    /// Connection events and errors stand out.
    pub kind: LineKind,
    /// Further events of the same kind folded into this line.
    pub repeat: u64,
    /// The last folded event, described.
    pub detail: String,
}

/// How a log line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// An instrument event.
    Event,
    /// A connection event.
    Connection,
    /// Something the user did, or its outcome.
    Action,
    /// An error.
    Error,
}

/// The workflow panel's state.
#[derive(Clone, Debug, Default)]
pub struct WorkflowUi {
    /// Where the loaded file came from (a path, or the z-stack editor).
    pub source: Option<String>,
    /// Planes in the loaded file, if it says.
    pub planes: Option<u32>,
    /// Loaded file name.
    pub loaded: Option<String>,
    /// Progress `(current, total)`.
    pub progress: Option<(i32, i32)>,
    /// What the run is doing, in words.
    pub status: String,
    /// The last run's summary.
    pub summary: Option<WorkflowSummary>,
    /// Runs that finished (for the self-test).
    pub finished_runs: u32,
    /// When the running workflow started.
    pub started_at: Option<Instant>,
    /// The first progress report of the run: when, and the plane then (the
    /// rate since gives the time left).
    pub first_progress: Option<(Instant, i32)>,
    /// The z-stack editor's last check: a summary, or why it failed.
    pub zstack_check: Option<Result<String, String>>,
    /// The z-stack editor's workflow is being checked by the instrument.
    pub zstack_checking: bool,
}

impl WorkflowUi {
    /// Seconds left at the rate since the first progress report, once
    /// there is a rate.
    pub fn seconds_left(&self, now: Instant) -> Option<f64> {
        let (c, t) = self.progress?;
        let (t0, c0) = self.first_progress?;
        let done = f64::from(c - c0);
        let dt = now.duration_since(t0).as_secs_f64();
        if done <= 0.0 || dt <= 0.0 || c >= t {
            return None;
        }
        Some(f64::from(t - c) * dt / done)
    }
}

/// The camera and filter wheel, as the instrument reports them.
#[derive(Clone, Debug, Default)]
pub struct CameraUi {
    /// Exposure in µs, as read back.
    pub exposure_us: Option<u32>,
    /// The exposure field (ms).
    pub exposure_input_ms: f64,
    /// The user changed the exposure field and has not set it.
    pub exposure_editing: bool,
    /// Pixel size on the sample (µm), from the pixel field of view.
    pub pixel_um: Option<f64>,
    /// Camera image size, once read.
    pub image_size: Option<(u32, u32)>,
    /// Filter wheel position, as read back.
    pub filter: Option<u8>,
    /// The filter wheel field.
    pub filter_input: u8,
    /// Planes of a stack acquired by the viewer (Z series saved as one TIFF).
    pub stack_planes: u32,
    /// Their spacing in µm.
    pub stack_spacing_um: f64,
    /// Where the last snapshot or stack was saved.
    pub last_saved: Option<std::path::PathBuf>,
}

/// A stage move that waits for the user's confirmation (it goes further
/// than the configured distance, or it homes every axis).
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    /// Home all four axes.
    Home,
    /// Move these axes; the text says how far.
    Move {
        /// The targets.
        targets: Vec<(Axis, f64)>,
        /// What is asked, in words.
        question: String,
    },
}

/// Everything shown.
pub struct Model {
    /// When the viewer started.
    pub started: Instant,
    /// The client's connection state (polled each frame).
    pub conn: Option<ConnectionState>,
    /// Names of the states seen ("connected", "reconnecting"...).
    pub states_seen: Vec<&'static str>,
    /// Scope settings, once loaded.
    pub settings: Option<ScopeSettings>,
    /// Stage position (from queries and stop events).
    pub position: Option<StagePosition>,
    /// Axes with a move in flight (ack sent, no stop event yet).
    pub moving: [bool; 4],
    /// The last target sent per axis (jogs while moving go on from it).
    pub target: [Option<f64>; 4],
    /// Stop events received per axis.
    pub stop_count: [u64; 4],
    /// Move-to fields.
    pub move_to: [String; 4],
    /// Jog step per axis (mm, degrees for R).
    pub jog_step: [f64; 4],
    /// Lasers 1..=4.
    pub lasers: [LaserUi; 4],
    /// LED colour chosen.
    pub led_colour: LedColour,
    /// LED level chosen (percent).
    pub led_percent: f64,
    /// The LED as last acknowledged (the instrument has no query for it).
    pub led_set: Option<(LedColour, f64)>,
    /// LED preview as last acknowledged.
    pub led_preview: Option<bool>,
    /// Camera, filter wheel and the viewer's own acquisitions.
    pub camera: CameraUi,
    /// A move or home waiting for a confirmation.
    pub confirm: Option<Confirm>,
    /// Saved stage positions.
    pub saved: Vec<SavedPosition>,
    /// The name field of "save the current position".
    pub save_name: String,
    /// Preferences (confirmation distances...).
    pub prefs: Prefs,
    /// Workflow panel.
    pub workflow: WorkflowUi,
    /// The loaded workflow file.
    pub workflow_file: Option<Workflow>,
    /// Event log, newest last.
    pub log: VecDeque<LogLine>,
    /// Events received in all.
    pub events_total: u64,
    /// Stop events received (stage).
    pub motion_stops: u64,
    /// Errors on screen, newest last.
    pub errors: VecDeque<LogLine>,
    /// Errors in all.
    pub errors_total: u64,
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model {
            started: Instant::now(),
            conn: None,
            states_seen: Vec::new(),
            settings: None,
            position: None,
            moving: [false; 4],
            target: [None; 4],
            stop_count: [0; 4],
            move_to: Default::default(),
            jog_step: [0.1, 0.1, 0.01, 5.0],
            lasers: Default::default(),
            led_colour: LedColour::Red,
            led_percent: 50.0,
            led_set: None,
            led_preview: None,
            camera: CameraUi {
                exposure_input_ms: 10.0,
                filter_input: 1,
                stack_planes: 10,
                stack_spacing_um: 2.0,
                ..CameraUi::default()
            },
            confirm: None,
            saved: Vec::new(),
            save_name: String::new(),
            prefs: Prefs::default(),
            workflow: WorkflowUi {
                status: "no workflow loaded".into(),
                ..WorkflowUi::default()
            },
            workflow_file: None,
            log: VecDeque::new(),
            events_total: 0,
            motion_stops: 0,
            errors: VecDeque::new(),
            errors_total: 0,
        }
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// True while the client is connected (instrument panels are live).
    pub fn connected(&self) -> bool {
        self.conn == Some(ConnectionState::Connected)
    }

    /// Adds a line to the event log.
    pub fn log(&mut self, kind: LineKind, text: impl Into<String>) {
        let line = LogLine {
            t: self.now(),
            text: text.into(),
            kind,
            repeat: 0,
            detail: String::new(),
        };
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// Shows an error (never a modal dialog: a line in the error strip and in
    /// the log).
    pub fn error(&mut self, text: impl Into<String>) {
        let text = text.into();
        log::warn!("{text}");
        self.errors_total += 1;
        if self.errors.len() == ERROR_LINES {
            self.errors.pop_front();
        }
        self.errors.push_back(LogLine {
            t: self.now(),
            text: text.clone(),
            kind: LineKind::Error,
            repeat: 0,
            detail: String::new(),
        });
        self.log(LineKind::Error, text);
    }

    /// The soft limits of an axis, if the settings give them.
    pub fn soft_limits(&self, axis: Axis) -> Option<(f64, f64)> {
        self.settings.as_ref()?.soft_limits(axis)
    }

    /// Where an axis is going (its last target while it moves) or is.
    pub fn heading(&self, axis: Axis) -> Option<f64> {
        let i = axis_index(axis);
        match self.target[i] {
            Some(t) if self.moving[i] => Some(t),
            _ => self.position.map(|p| p.get(axis)),
        }
    }

    /// Records a connection state and remembers its name.
    pub fn set_conn(&mut self, s: ConnectionState) {
        let name = state_name(&s);
        if !self.states_seen.contains(&name) {
            self.states_seen.push(name);
        }
        self.conn = Some(s);
    }

    /// Forgets what only the instrument can say (a new link: it is read
    /// again; what has no query shows as unknown until set).
    pub fn forget_instrument(&mut self) {
        self.moving = [false; 4];
        self.target = [None; 4];
        for l in &mut self.lasers {
            l.preview = None;
        }
        self.led_set = None;
        self.led_preview = None;
    }
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

/// A short name of a connection state.
pub fn state_name(s: &ConnectionState) -> &'static str {
    match s {
        ConnectionState::NotConnected => "not connected",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Reconnecting { .. } => "reconnecting",
        ConnectionState::Closed { .. } => "disconnected",
    }
}

/// Axis index in [`Axis::ALL`] order.
pub fn axis_index(a: Axis) -> usize {
    Axis::ALL.iter().position(|&x| x == a).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn time_left_follows_the_rate_since_the_first_report() {
        let t0 = Instant::now();
        let wf = WorkflowUi {
            progress: Some((60, 110)),
            first_progress: Some((t0, 10)),
            ..WorkflowUi::default()
        };
        // 50 planes in 5 s: 50 planes left take 5 s more.
        let left = wf.seconds_left(t0 + Duration::from_secs(5)).unwrap();
        assert!((left - 5.0).abs() < 1e-9, "{left}");
        let done = WorkflowUi {
            progress: Some((110, 110)),
            ..wf.clone()
        };
        assert_eq!(done.seconds_left(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn a_reported_level_moves_the_slider_unless_the_user_holds_it() {
        let mut l = LaserUi::default();
        l.reported(5.88);
        assert_eq!((l.level, l.input), (Some(5.88), 5.88));
        l.editing = true;
        l.input = 20.0;
        l.reported(7.0);
        assert_eq!((l.level, l.input), (Some(7.0), 20.0));
    }
}
