//! What the window shows: the instrument's state as last reported, the
//! event log and the errors. Completed operations apply themselves to it.

use std::collections::VecDeque;
use std::time::Instant;

use flamingo_client::devices::{
    LedColour, ScopeSettings, StagePosition, Workflow, WorkflowSummary,
};
use flamingo_client::{Axis, ConnectionState};

/// Lines kept in the event log.
pub const LOG_LINES: usize = 400;
/// Errors kept on screen.
pub const ERROR_LINES: usize = 6;

/// One laser's controls.
#[derive(Clone, Debug, Default)]
pub struct LaserUi {
    /// The level the instrument last reported (percent).
    pub level: Option<f64>,
    /// The level typed in.
    pub input: f64,
    /// Preview on (as last commanded successfully).
    pub preview: bool,
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
    /// The file path typed in.
    pub path: String,
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
    /// Stop events received per axis.
    pub stop_count: [u64; 4],
    /// Move-to fields.
    pub move_to: [String; 4],
    /// Jog step per axis (mm, degrees for R).
    pub jog_step: [f64; 4],
    /// Lasers 1..=4.
    pub lasers: [LaserUi; 4],
    /// LED colour.
    pub led_colour: LedColour,
    /// LED level (percent).
    pub led_percent: f64,
    /// LED preview on.
    pub led_preview: bool,
    /// Camera image size, once read.
    pub image_size: Option<(u32, u32)>,
    /// Home was clicked: homing every axis waits for a confirmation.
    pub confirm_home: bool,
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
    pub fn new(workflow_path: String) -> Model {
        Model {
            started: Instant::now(),
            conn: None,
            states_seen: Vec::new(),
            settings: None,
            position: None,
            moving: [false; 4],
            stop_count: [0; 4],
            move_to: Default::default(),
            jog_step: [0.1, 0.1, 0.01, 5.0],
            lasers: Default::default(),
            led_colour: LedColour::Red,
            led_percent: 50.0,
            led_preview: false,
            image_size: None,
            confirm_home: false,
            workflow: WorkflowUi {
                path: workflow_path,
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

    /// Records a connection state and remembers its name.
    pub fn set_conn(&mut self, s: ConnectionState) {
        let name = state_name(&s);
        if !self.states_seen.contains(&name) {
            self.states_seen.push(name);
        }
        self.conn = Some(s);
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
