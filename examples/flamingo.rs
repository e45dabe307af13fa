//! `flamingo`: one command-line tool for the Flamingo microscope.
//!
//! ```text
//! cargo run --release --example flamingo -- [GLOBAL OPTIONS] COMMAND [OPTIONS]
//! cargo run --release --example flamingo -- --help
//! cargo run --release --example flamingo -- demo
//! ```
//!
//! Install it with `cargo install --locked --path . --example flamingo --profile dist`
//! (the release build without debug information).
//!
//! Commands: status (info), state, image-size, position, move, home, halt,
//! settings, snapshot, live, workflow (FILE, check, stop), lasers (set,
//! level, on, off), led, filter, exposure, idle, watch, config, sim, demo,
//! record, replay, facts.
//! Global options go before or after the command; the microscope's address
//! comes from `--addr`, `FLAMINGO_ADDR` or the config file (`flamingo
//! config`). `--json` prints each
//! result as one JSON object per line; errors are one `error: ...` line on
//! stderr (one JSON object with `--json`) and a non-zero exit code that
//! tells the kind of failure (see `--help`). Ctrl-C during a long command
//! undoes on the instrument what it started and exits with 130.

#[path = "support/cli_args.rs"]
mod cli_args;
#[path = "support/cli_config.rs"]
mod cli_config;
#[path = "support/cli_demo.rs"]
mod cli_demo;
#[path = "support/cli_devices.rs"]
mod cli_devices;
#[path = "support/cli_facts.rs"]
mod cli_facts;
#[path = "support/cli_interrupt.rs"]
mod cli_interrupt;
#[path = "support/cli_json.rs"]
mod cli_json;
#[path = "support/cli_progress.rs"]
mod cli_progress;
#[path = "support/cli_record.rs"]
mod cli_record;
#[path = "support/cli_status.rs"]
mod cli_status;
#[path = "support/image_io.rs"]
mod image_io;

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use flamingo_client::codec::{CommandCode as C, Message};
use flamingo_client::devices::{
    Camera, ImageSize, SoftLimits, SystemState, Workflow, WorkflowUpdate,
};
use flamingo_client::live::{Frame, LiveStream};
use flamingo_client::sim::{Faults, SimConfig, Simulator};
use flamingo_client::{Axis, Client, ClientConfig, Error, Event, EventKind, Result};

use cli_args::{Command, ConfigAction, Global, Parsed, SimArgs, Source, WorkflowAction};
use cli_json::JsonObject;
use cli_progress::{Progress, StatusLine};

/// How long `move --wait` and `home` wait for the stage to stop.
const MOTION_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a workflow wait lasts.
const WORKFLOW_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Bytes of a live frame header.
const LIVE_HEADER_BYTES: u64 = 40;
/// How often long waits look for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);

fn main() {
    let raw: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Known before parsing, so that even a usage error comes out as JSON.
    let json = raw.iter().take_while(|a| *a != "--").any(|a| a == "--json");
    let code = match real_main() {
        Ok(()) => 0,
        Err(e) => {
            // Everything (clients, simulators, live streams) is dropped by now.
            print_error(&e, json);
            cli_args::exit_code(&e)
        }
    };
    let _ = io::stdout().flush();
    std::process::exit(code);
}

/// One line on stderr: `error: ...` (`interrupted: ...` after Ctrl-C), or
/// with `--json` one object with the same words and the exit code.
fn print_error(e: &Error, json: bool) {
    let text = match cli_interrupt::undone(e) {
        Some(undone) => format!("interrupted: {undone}"),
        None => match hint(e) {
            Some(h) => format!("{e}: {h}"),
            None => match port_hint(e) {
                Some(h) => format!("{e}; {h}"),
                None => e.to_string(),
            },
        },
    };
    let interrupted = cli_interrupt::undone(e).is_some();
    let mut err = io::stderr().lock();
    if json {
        let o = JsonObject::new()
            .str("error", &text)
            .int("exit_code", cli_args::exit_code(e));
        let _ = writeln!(err, "{o}");
    } else if interrupted {
        let _ = writeln!(err, "{text}");
    } else if colour(&io::stderr()) {
        let _ = writeln!(err, "\x1b[1;31merror:\x1b[0m {text}");
    } else {
        let _ = writeln!(err, "error: {text}");
    }
}

/// Colour only on a terminal, and never with NO_COLOR set.
fn colour(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The address connected to, for hints.
static CONNECTED_TO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Set when a command timed out without a single message from the peer.
static NOTHING_ANSWERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A request that got no answer at all may have gone to the live image
/// port (PORT+1) by mistake: it accepts connections but answers nothing.
fn port_hint(e: &Error) -> Option<String> {
    let Error::Timeout { phase, .. } = e else {
        return None;
    };
    if *phase != flamingo_client::TimeoutPhase::Reply
        || !NOTHING_ANSWERED.load(std::sync::atomic::Ordering::SeqCst)
    {
        return None;
    }
    let addr = CONNECTED_TO.get()?;
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let below = port.checked_sub(1).filter(|p| *p > 0)?;
    Some(format!(
        "nothing answered on {addr}: is it the microscope's command port? Live images use \
         the port after it, so if {port} is the live port, use --addr {host}:{below}"
    ))
}

/// What usually causes a refusal.
fn hint(e: &Error) -> Option<&'static str> {
    match e {
        Error::Busy {
            code: C::SYSTEM_STATE_IDLE,
            ..
        } => Some(
            "the microscope is still busy after the idle request: a workflow is running \
         (stop it with `flamingo workflow stop`)",
        ),
        Error::Refused { code, .. } => Some(match *code {
            C::SYSTEM_STATE_IDLE => {
                "the microscope still reports an error after the idle request; check the \
         hardware and its software (see `flamingo status`)"
            }
            C::STAGE_POSITION_SET | C::STAGE_POSITION_SET_SLIDER => {
                "usually the target is outside the stage's soft limits, or the stage is not ready \
                 (homing, or in an error state: see `flamingo state`, `flamingo idle` clears it)"
            }
            C::CAMERA_WORK_FLOW_START => {
                "usually the workflow file is one the microscope cannot read, or it asks for \
                 hardware or values the microscope does not have (check it with `flamingo workflow check FILE`)"
            }
            _ => {
                "usually a value is out of range for this microscope, or it is in an error state \
                 (see `flamingo state`; `flamingo idle` clears it)"
            }
        }),
        _ => None,
    }
}

fn real_main() -> Result<()> {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string().map_err(|a| {
                Error::invalid(format!(
                    "argument {a:?} is not valid Unicode; rename the file or use another path"
                ))
            })
        })
        .collect::<Result<Vec<String>>>()?;
    let (global, command) = match cli_args::parse(args)? {
        Parsed::Help(text) => {
            // Help and --version on stdout, coloured only on a terminal.
            let _ = text.print();
            return Ok(());
        }
        Parsed::Run(g, c) => (g, c),
    };
    init_logging(global.verbose);
    cli_interrupt::set_json(global.json);
    let out = Out { json: global.json };
    let mut global = global;
    let env = |name: &str| std::env::var_os(name);
    match command {
        Command::Sim(args) => run_sim(&args, &out),
        Command::Demo => cli_demo::run(&out, global.timeout),
        Command::Config { action } => {
            cli_config::apply(&mut global, &env)?;
            out.result(&config(&global, action, &env)?);
            Ok(())
        }
        Command::Record(args) => {
            cli_config::apply(&mut global, &env)?;
            cli_record::record(&args, &global, &out)
        }
        Command::Replay(args) => cli_record::replay(&args, &out),
        Command::Facts(args) => cli_facts::run(&args, &out),
        Command::Workflow {
            action: Some(WorkflowAction::Check { file, settings }),
            ..
        } => {
            let (wf, label) = read_workflow(&file)?;
            cli_config::apply(&mut global, &env)?;
            out.result(&workflow_check(
                &global,
                &out,
                wf,
                label,
                settings.as_deref(),
            )?);
            Ok(())
        }
        command => {
            cli_config::apply(&mut global, &env)?;
            // Input files are read and checked before connecting: a mistake
            // in them is reported as such, whatever the state of the network.
            let workflow_file = match &command {
                Command::Workflow {
                    file: Some(file), ..
                } => Some(read_workflow(file)?),
                _ => None,
            };
            let _ = CONNECTED_TO.set(global.addr.clone());
            let client = connect(&global)?;
            let result = run_command(&client, &global, &out, command, workflow_file);
            if result.as_ref().is_err_and(Error::is_timeout)
                && client.stats().messages_received == 0
            {
                NOTHING_ANSWERED.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            client.close();
            result
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Error,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .format_timestamp_millis()
        .try_init();
}

/// Connects with `--timeout` as the connect and per-request deadline.
pub fn connect(g: &Global) -> Result<Client> {
    let config = ClientConfig::default()
        .request_timeout(g.timeout)
        .connect_timeout(g.timeout);
    Client::connect(&g.addr, config)
}

fn run_command(
    client: &Client,
    g: &Global,
    out: &Out,
    command: Command,
    workflow_file: Option<(Workflow, String)>,
) -> Result<()> {
    let t = g.timeout;
    match (command, workflow_file) {
        (Command::State, _) => out.result(&system_state(client, t)?),
        (Command::ImageSize, _) => out.result(&image_size(client, t)?),
        (Command::Position, _) => out.result(&positions(client, t)?),
        (Command::Move { axis, to, wait }, _) => {
            check_soft_limits(client, t, axis, to, out)?;
            out.result(&move_axis(client, t, axis, to, wait)?)
        }
        (Command::Halt { axis }, _) => out.result(&halt(client, t, axis)?),
        (Command::Settings { out: path }, _) => out.result(&save_settings(client, t, &path)?),
        (Command::Snapshot { out: path, count }, _) => {
            out.result(&snapshot(client, t, &path, count)?)
        }
        (Command::Live { frames, duration }, _) => {
            let until = match (frames, duration) {
                (_, Some(d)) => LiveUntil::Duration(d),
                (Some(n), None) => LiveUntil::Frames(n),
                (None, None) => return Err(Error::invalid("`live` needs --frames or --for")),
            };
            out.result(&live(client, t, until, !out.json)?)
        }
        (
            Command::Workflow {
                action: Some(WorkflowAction::Stop),
                ..
            },
            _,
        ) => out.result(&workflow_stop(client, t)?),
        (Command::Workflow { wait, .. }, Some((file, label))) => {
            // The library's safety layer: the file stays within the stage's
            // soft limits (start, end, every tile), checked before sending.
            let limits = soft_limits(client, t, out, "the workflow is sent unchecked")?;
            out.result(&workflow(
                client, t, &file, &label, wait, !out.json, limits,
            )?)
        }
        (Command::Lasers { action }, _) => out.result(&*cli_devices::lasers(client, t, action)?),
        (Command::Led { action }, _) => out.result(&cli_devices::led(client, t, action)?),
        (Command::Filter { position }, _) => out.result(&cli_devices::filter(client, t, position)?),
        (Command::Exposure { time }, _) => out.result(&cli_devices::exposure(client, t, time)?),
        (Command::Home { axis, yes }, _) => out.result(&cli_devices::home(client, t, axis, yes)?),
        (Command::Status, _) => out.result(&cli_status::status(client, t, out)?),
        (Command::Idle, _) => out.result(&cli_devices::idle(client, t)?),
        (Command::Watch { duration, all }, _) => watch(client, duration, all, out)?,
        (command, _) => {
            return Err(Error::invalid(format!(
                "internal: {command:?} cannot run here"
            )))
        }
    }
    Ok(())
}

/// Reads and checks a workflow file; returns it with its file name.
fn read_workflow(path: &Path) -> Result<(Workflow, String)> {
    let label = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let bytes = std::fs::read(path).map_err(|e| {
        Error::invalid(format!("cannot read workflow file {}: {e}", path.display()))
    })?;
    let file = Workflow::from_bytes(bytes)
        .and_then(|w| w.validate().map(|()| w))
        .map_err(|e| match e {
            Error::InvalidArgument { what } => {
                Error::invalid(format!("workflow file {}: {what}", path.display()))
            }
            e => e,
        })?;
    Ok((file, label))
}

/// A result that is just a sentence (and its JSON).
struct Done {
    json: JsonObject,
    human: String,
}

impl Report for Done {
    fn json(&self) -> JsonObject {
        self.json.clone()
    }
    fn human(&self) -> String {
        self.human.clone()
    }
}

/// `workflow check`.
struct CheckReport {
    label: String,
    planes: Option<u32>,
    /// The soft limits the file was checked against, and where they came
    /// from; `None`: not checked (no settings to hand).
    limits: Option<(SoftLimits, String)>,
}

impl Report for CheckReport {
    fn json(&self) -> JsonObject {
        let o = JsonObject::new()
            .bool("valid", true)
            .int("planes", self.planes.unwrap_or(0))
            .bool("limits_checked", self.limits.is_some());
        match &self.limits {
            Some((l, _)) => o.str("soft_limits", &l.to_string()),
            None => o,
        }
    }
    fn human(&self) -> String {
        let limits = match &self.limits {
            Some((l, from)) => format!("within the stage's soft limits ({l}, from {from})"),
            None => "soft limits not checked".into(),
        };
        format!(
            "{}: a valid workflow ({}), {limits}; nothing was sent",
            self.label,
            plural(u64::from(self.planes.unwrap_or(0)), "plane"),
        )
    }
}

/// "1 plane", "2 planes".
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `workflow check FILE [--settings FILE]`: the file's mistakes, then the
/// soft limits (the library's check): from a saved settings file, else from
/// the microscope when it answers, else a warning that they were not
/// checked.
fn workflow_check(
    g: &Global,
    out: &Out,
    wf: Workflow,
    label: String,
    settings: Option<&Path>,
) -> Result<CheckReport> {
    let limits = match settings {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                Error::invalid(format!("cannot read settings file {}: {e}", path.display()))
            })?;
            let s = flamingo_client::devices::ScopeSettings::from_bytes(&bytes)?;
            Some((SoftLimits::from_settings(&s), path.display().to_string()))
        }
        None => match connect(g) {
            Ok(client) => {
                let r = client.settings().timeout(g.timeout).soft_limits();
                client.close();
                match r {
                    Ok(l) => Some((l, format!("the microscope at {}", g.addr))),
                    Err(e) => {
                        out.warn(&format!(
                            "soft limits not checked: cannot read them from the microscope at {} ({e})",
                            g.addr
                        ));
                        None
                    }
                }
            }
            Err(e) => {
                out.warn(&format!(
                    "soft limits not checked: {e}; give --settings ScopeSettings.txt to check them offline"
                ));
                None
            }
        },
    };
    if let Some((l, _)) = &limits {
        l.check_workflow(&wf).map_err(|e| match e {
            Error::InvalidArgument { what } => {
                Error::invalid(format!("workflow file {label}: {what}"))
            }
            e => e,
        })?;
    }
    Ok(CheckReport {
        label,
        planes: wf.planes(),
        limits,
    })
}

/// `config`: the address and timeout in use and where they come from;
/// `config save` writes them to the config file.
fn config(
    g: &Global,
    action: Option<ConfigAction>,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Done> {
    let path = cli_config::config_path(env).ok_or_else(|| {
        Error::invalid(
            "no place for a config file: set FLAMINGO_CONFIG to a file path (or HOME / APPDATA)",
        )
    })?;
    let saved = matches!(action, Some(ConfigAction::Save));
    if saved {
        cli_config::save(&path, &g.addr, g.timeout)?;
    }
    let exists = path.exists();
    let from = |s: &Source| match s {
        Source::File(..) if saved => "the config file".to_string(),
        s => s.to_string(),
    };
    let mut json = JsonObject::new()
        .str("config_file", &path.to_string_lossy())
        .bool("exists", exists)
        .str("addr", &g.addr)
        .str("addr_from", &from(&g.addr_from))
        .num("timeout_s", g.timeout.as_secs_f64())
        .str("timeout_from", &from(&g.timeout_from));
    if saved {
        json = json.bool("saved", true);
    }
    let mut human = format!(
        "Microscope address: {} (from {})\nTimeout: {} s (from {})\nConfig file: {}{}",
        g.addr,
        from(&g.addr_from),
        g.timeout.as_secs_f64(),
        from(&g.timeout_from),
        path.display(),
        if exists { "" } else { " (none yet)" }
    );
    if saved {
        human.push_str(&format!(
            "\nSaved: later commands use {} without --addr",
            g.addr
        ));
    }
    Ok(Done { json, human })
}

// ---------------------------------------------------------------- output

/// Where results go: human-readable text or one JSON object per line.
pub struct Out {
    /// `--json` was given.
    pub json: bool,
}

/// A result that can be shown both ways.
pub trait Report {
    /// The JSON object (keys as documented in the help).
    fn json(&self) -> JsonObject;
    /// The human-readable text (one or more lines, no trailing newline).
    fn human(&self) -> String;
}

impl Out {
    /// Prints a result: its JSON line with `--json`, its text otherwise.
    pub fn result(&self, r: &dyn Report) {
        if self.json {
            self.text(&r.json().to_string());
        } else {
            self.text(&r.human());
        }
    }

    /// A warning on stderr: `warning: ...`, or `{"warning":...}` with `--json`.
    pub fn warn(&self, text: &str) {
        if self.json {
            eprintln!("{}", JsonObject::new().str("warning", text));
        } else {
            eprintln!("warning: {text}");
        }
    }

    /// Prints one line (or block) on stdout. A closed stdout (for example
    /// piped into `head`) is not an error.
    pub fn text(&self, s: &str) {
        let mut o = io::stdout().lock();
        let _ = writeln!(o, "{}", s.trim_end_matches('\n'));
        let _ = o.flush();
    }
}

// ---------------------------------------------------------------- state

/// `state`.
pub struct StateReport {
    /// The wire value (0 idle, 1 busy, 2 error).
    pub code: i32,
}

impl StateReport {
    /// "idle", "busy", "error" or "unknown".
    pub fn name(&self) -> &'static str {
        match SystemState::from_wire(self.code) {
            SystemState::Idle => "idle",
            SystemState::Busy => "busy",
            SystemState::Error => "error",
            SystemState::Unknown(_) => "unknown",
        }
    }
}

impl Report for StateReport {
    fn json(&self) -> JsonObject {
        JsonObject::new()
            .str("state", self.name())
            .int("code", self.code)
    }
    fn human(&self) -> String {
        format!("System state: {} ({})", self.name(), self.code)
    }
}

/// Asks for the system state.
pub fn system_state(client: &Client, t: Duration) -> Result<StateReport> {
    let state = client.system().timeout(t).state()?;
    Ok(StateReport { code: state.wire() })
}

// ---------------------------------------------------------------- image size

/// `image-size`.
pub struct SizeReport {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

impl Report for SizeReport {
    fn json(&self) -> JsonObject {
        JsonObject::new()
            .int("width", self.width)
            .int("height", self.height)
    }
    fn human(&self) -> String {
        format!("Camera image size: {} x {} pixels", self.width, self.height)
    }
}

/// Asks the camera for its image size.
pub fn image_size(client: &Client, t: Duration) -> Result<SizeReport> {
    let ImageSize { width, height } = client.camera().timeout(t).image_size()?;
    Ok(SizeReport { width, height })
}

// ---------------------------------------------------------------- position

/// `position`: x, y, z (mm) and r (degrees).
pub struct PositionReport(pub [f64; 4]);

impl Report for PositionReport {
    fn json(&self) -> JsonObject {
        Axis::ALL.iter().fold(JsonObject::new(), |o, a| {
            o.num(a.name(), self.0[axis_index(*a)])
        })
    }
    fn human(&self) -> String {
        let mut s = String::from("Stage position:");
        for a in Axis::ALL {
            s.push_str(&format!(
                "\n  {}  {:>10.4} {}",
                a.name(),
                self.0[axis_index(a)],
                a.unit()
            ));
        }
        s
    }
}

fn axis_index(a: Axis) -> usize {
    (a.wire() - 1) as usize
}

/// Reads the four axes.
pub fn positions(client: &Client, t: Duration) -> Result<PositionReport> {
    let p = client.stage().timeout(t).positions()?;
    Ok(PositionReport(Axis::ALL.map(|a| p.get(a))))
}

// ---------------------------------------------------------------- move

/// `move`.
pub struct MoveReport {
    /// The axis moved.
    pub axis: Axis,
    /// The target.
    pub target: f64,
    /// Where the axis stopped, with `--wait`.
    pub stopped_at: Option<f64>,
    /// From sending the move to its acknowledgement, or (with `--wait`) to the stop.
    pub elapsed: Duration,
}

impl Report for MoveReport {
    fn json(&self) -> JsonObject {
        JsonObject::new()
            .str("axis", self.axis.name())
            .num("target", self.target)
            .bool("stopped", self.stopped_at.is_some())
            .int("elapsed_ms", self.elapsed.as_millis() as u64)
    }
    fn human(&self) -> String {
        let unit = self.axis.unit();
        match self.stopped_at {
            Some(p) => format!(
                "Moved {} to {} {unit}: stopped at {p:.4} {unit} after {} ms",
                self.axis,
                self.target,
                self.elapsed.as_millis()
            ),
            None => format!(
                "Move of {} to {} {unit} accepted after {} ms (not waiting for it to stop; add --wait)",
                self.axis,
                self.target,
                self.elapsed.as_millis()
            ),
        }
    }
}

/// Refuses a target outside the stage's soft limits (read from the
/// microscope's settings; the library's check) before anything is sent.
/// Settings that cannot be read or give no limits for the axis: a warning,
/// and the move is sent unchecked (the microscope still enforces its limits).
pub fn check_soft_limits(
    client: &Client,
    t: Duration,
    axis: Axis,
    target: f64,
    out: &Out,
) -> Result<()> {
    let Some(limits) = soft_limits(client, t, out, "the move is sent unchecked")? else {
        return Ok(());
    };
    if limits.get(axis).is_none() {
        out.warn(&format!(
            "the microscope's settings give no soft limits for {axis}; the move is sent unchecked"
        ));
        return Ok(());
    }
    limits.check(axis, target).map_err(nothing_sent)
}

/// The soft limits from the microscope's settings; `None` (after a warning
/// ending in `unchecked`) if they cannot be read. A lost connection is an
/// error.
pub fn soft_limits(
    client: &Client,
    t: Duration,
    out: &Out,
    unchecked: &str,
) -> Result<Option<SoftLimits>> {
    match client.settings().timeout(t).soft_limits() {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.is_disconnected() => Err(e),
        Err(e) => {
            out.warn(&format!(
                "cannot read the soft limits from the microscope's settings ({e}); {unchecked}"
            ));
            Ok(None)
        }
    }
}

/// An invalid argument found before sending says so.
fn nothing_sent(e: Error) -> Error {
    match e {
        Error::InvalidArgument { what } => Error::invalid(format!("{what}; nothing was sent")),
        e => e,
    }
}

/// Moves one axis; with `wait`, until its `STAGE_MOTION_STOPPED` (at most
/// [`MOTION_TIMEOUT`] for the acknowledgement and the motion together).
/// Ctrl-C during the wait halts the stage.
pub fn move_axis(
    client: &Client,
    t: Duration,
    axis: Axis,
    target: f64,
    wait: bool,
) -> Result<MoveReport> {
    let stage = client.stage().timeout(t).motion_timeout(MOTION_TIMEOUT);
    let t0 = Instant::now();
    let stopped_at = if wait {
        let _guard = cli_interrupt::Guard::new();
        let mut op = stage.submit_move_and_wait(axis, target)?;
        loop {
            if let Some(r) = op.wait_timeout(POLL) {
                break Some(r?.position);
            }
            if cli_interrupt::interrupted() {
                return Err(cli_interrupt::error(&halt_now(client, "the move")));
            }
        }
    } else {
        stage.move_to(axis, target)?;
        None
    };
    Ok(MoveReport {
        axis,
        target,
        stopped_at,
        elapsed: t0.elapsed(),
    })
}

/// Halts every axis (after Ctrl-C); says what happened.
fn halt_now(client: &Client, what: &str) -> String {
    match client.stage().timeout(cli_interrupt::UNDO_DEADLINE).halt() {
        Ok(()) => format!("halted the stage ({what} was stopped)"),
        Err(e) => format!("tried to halt the stage, but: {e}"),
    }
}

// ---------------------------------------------------------------- halt

/// `halt`.
pub struct HaltReport {
    /// The axis stopped alone, and where; `None`: every axis.
    pub axis: Option<(Axis, f64)>,
}

impl Report for HaltReport {
    fn json(&self) -> JsonObject {
        match self.axis {
            None => JsonObject::new().str("halted", "all"),
            Some((a, p)) => JsonObject::new().str("halted", a.name()).num("position", p),
        }
    }
    fn human(&self) -> String {
        match self.axis {
            None => "Stage halted: every axis was told to stop".into(),
            Some((a, p)) => format!("Stage axis {a} stopped at {p:.4} {}", a.unit()),
        }
    }
}

/// Stops every axis (the instrument's halt), or one axis by sending it to
/// where it is now.
pub fn halt(client: &Client, t: Duration, axis: Option<Axis>) -> Result<HaltReport> {
    let stage = client.stage().timeout(t);
    match axis {
        None => {
            stage.halt()?;
            Ok(HaltReport { axis: None })
        }
        Some(a) => {
            let here = stage.position(a)?;
            stage.move_to(a, here)?;
            Ok(HaltReport {
                axis: Some((a, here)),
            })
        }
    }
}

// ---------------------------------------------------------------- settings

/// `settings`.
pub struct SettingsReport {
    /// Bytes written.
    pub bytes: usize,
    /// Where.
    pub path: PathBuf,
}

impl Report for SettingsReport {
    fn json(&self) -> JsonObject {
        JsonObject::new().int("bytes", self.bytes as u64)
    }
    fn human(&self) -> String {
        format!(
            "Saved the microscope settings ({} bytes) to {}",
            self.bytes,
            self.path.display()
        )
    }
}

/// Downloads the settings text and writes it to `path` unchanged.
pub fn save_settings(client: &Client, t: Duration, path: &Path) -> Result<SettingsReport> {
    let reply = client.request_checked(Message::new(C::COMMON_SCOPE_SETTINGS_LOAD), t)?;
    if reply.data.is_empty() {
        return Err(Error::protocol(
            "the microscope answered COMMON_SCOPE_SETTINGS_LOAD without the settings text",
        ));
    }
    std::fs::write(path, &reply.data).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot write settings file {}: {e}", path.display()),
        ))
    })?;
    Ok(SettingsReport {
        bytes: reply.data.len(),
        path: path.to_path_buf(),
    })
}

// ---------------------------------------------------------------- snapshot

/// `snapshot`.
pub struct SnapshotReport {
    /// Images taken (several: one TIFF stack).
    pub images: u32,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Where the image was saved.
    pub path: PathBuf,
    /// Mean pixel value.
    pub mean: f64,
    /// From the request to the frame.
    pub elapsed: Duration,
}

impl Report for SnapshotReport {
    fn json(&self) -> JsonObject {
        JsonObject::new()
            .int("width", self.width)
            .int("height", self.height)
            .str("path", &self.path.to_string_lossy())
            .int("images", self.images)
    }
    fn human(&self) -> String {
        if self.images > 1 {
            return format!(
                "Saved a stack of {} {} x {} 16-bit images to {} (mean value of the last {:.1}, taken in {} ms)",
                self.images,
                self.width,
                self.height,
                self.path.display(),
                self.mean,
                self.elapsed.as_millis()
            );
        }
        format!(
            "Saved a {} x {} 16-bit snapshot to {} (mean value {:.1}, taken in {} ms)",
            self.width,
            self.height,
            self.path.display(),
            self.mean,
            self.elapsed.as_millis()
        )
    }
}

/// Closes the client's live socket when dropped (on every path).
struct CloseLive<'a>(&'a Client);

impl Drop for CloseLive<'_> {
    fn drop(&mut self) {
        self.0.close_live();
    }
}

/// Takes `count` images and saves them (format by extension; several
/// images as one TIFF stack). TIFF files carry the camera's pixel size.
pub fn snapshot(client: &Client, t: Duration, path: &Path, count: u32) -> Result<SnapshotReport> {
    cli_args::check_image_extension(path)?;
    cli_args::check_stack_extension(path, count)?;
    let t0 = Instant::now();
    let _close = CloseLive(client);
    let tiff = !path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    // The pixel size makes Fiji show microns; an instrument that does not
    // report it gives a file without it.
    let meta = if tiff {
        let fov = client.camera().timeout(t).pixel_fov_mm().unwrap_or(0.0);
        flamingo_client::live::TiffMetadata::from_pixel_fov_mm(fov)
    } else {
        Default::default()
    };
    let mut stack = None;
    let mut last = None;
    for _ in 0..count {
        let frame = take_snapshot(client, t)?;
        if count > 1 {
            let writer = match stack.as_mut() {
                Some(w) => w,
                None => stack.insert(
                    flamingo_client::live::TiffStackWriter::create(path, meta)
                        .map_err(Error::Io)?,
                ),
            };
            writer.push(&frame).map_err(Error::Io)?;
        }
        last = Some(frame);
    }
    let frame = last.expect("count is at least 1");
    let elapsed = t0.elapsed();
    match stack {
        Some(w) => {
            w.finish().map_err(Error::Io)?;
        }
        None if tiff => frame.save_tiff_with(path, &meta).map_err(Error::Io)?,
        None => image_io::save_image(&frame, path).map_err(Error::Io)?,
    }
    Ok(SnapshotReport {
        width: frame.width(),
        height: frame.height(),
        path: path.to_path_buf(),
        mean: mean(&frame),
        elapsed,
        images: count,
    })
}

/// One snapshot, abandoned (and the live connection closed) on Ctrl-C.
fn take_snapshot(client: &Client, t: Duration) -> Result<flamingo_client::live::Frame> {
    let _guard = cli_interrupt::Guard::new();
    let mut op = client.camera().timeout(t).submit_snapshot()?;
    loop {
        if let Some(r) = op.wait_timeout(POLL) {
            return r.map_err(|e| on_live_timeout(e, "the snapshot image", client));
        }
        if cli_interrupt::interrupted() {
            client.close_live();
            return Err(cli_interrupt::error(
                "abandoned the snapshot and closed the live image connection",
            ));
        }
    }
}

/// Says where a missing image was expected, and the usual cause.
fn on_live_timeout(e: Error, what: &str, client: &Client) -> Error {
    match (e, client.live_if_open()) {
        (Error::Timeout { phase, after, .. }, Some(live)) => Error::timeout(
            phase,
            format!(
                "{what} on the live port {} (is another program using live view?)",
                live.addr()
            ),
            after,
        ),
        (e, _) => e,
    }
}

fn mean(frame: &Frame) -> f64 {
    let n = frame.pixel_count().max(1) as f64;
    frame.pixels().iter().map(|&p| f64::from(p)).sum::<f64>() / n
}

// ---------------------------------------------------------------- live

/// When `live` stops.
#[derive(Clone, Copy, Debug)]
pub enum LiveUntil {
    /// After this many frames.
    Frames(u64),
    /// After this long.
    Duration(Duration),
}

/// `live`.
pub struct LiveReport {
    /// Frames taken.
    pub frames: u64,
    /// Frames dropped by the stream because they were not taken in time.
    pub dropped: u64,
    /// Frames per second received between the first and the last frame taken.
    pub fps: Option<f64>,
    /// Megabytes (10^6) per second over the same window.
    pub mb_per_s: Option<f64>,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
}

impl Report for LiveReport {
    fn json(&self) -> JsonObject {
        JsonObject::new()
            .int("frames", self.frames)
            .int("dropped", self.dropped)
            .opt_num("fps", self.fps.map(round2))
            .opt_num("mb_per_s", self.mb_per_s.map(round2))
    }
    fn human(&self) -> String {
        let rate = match (self.fps, self.mb_per_s) {
            (Some(f), Some(m)) => format!("{f:.1} frames/s, {m:.1} MB/s"),
            _ => "rate not measurable from one frame".into(),
        };
        format!(
            "Live view: {} frame{} of {} x {} received, {rate}, {} dropped",
            self.frames,
            if self.frames == 1 { "" } else { "s" },
            self.width,
            self.height,
            self.dropped
        )
    }
}

/// Frames/s and MB/s received from frame `a` to frame `b`.
fn rates(a: &Frame, b: &Frame) -> (Option<f64>, Option<f64>) {
    let window = b
        .received_at()
        .duration_since(a.received_at())
        .as_secs_f64();
    let received = b.sequence().saturating_sub(a.sequence());
    if received > 0 && window > 0.0 {
        let frame_bytes = LIVE_HEADER_BYTES + b.as_bytes().len() as u64;
        (
            Some(received as f64 / window),
            Some((received * frame_bytes) as f64 / window / 1e6),
        )
    } else {
        (None, None)
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Live view on for as long as it lives: dropping it (on an error path)
/// stops live view and closes the live socket, best effort.
struct LiveView {
    camera: Camera,
    on: bool,
}

impl LiveView {
    fn start(camera: Camera) -> Result<(LiveView, Arc<LiveStream>)> {
        let view = LiveView { camera, on: true };
        let stream = view.camera.live_start()?;
        Ok((view, stream))
    }

    fn stop(mut self) -> Result<()> {
        self.on = false;
        self.camera.live_stop()
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        if self.on {
            let _ = self.camera.live_stop();
        }
    }
}

/// Starts live view, takes frames until `until`, stops live view. With
/// `progress`, the rates so far are shown on stderr (on a terminal).
/// Ctrl-C stops live view.
pub fn live(client: &Client, t: Duration, until: LiveUntil, progress: bool) -> Result<LiveReport> {
    let _guard = cli_interrupt::Guard::new();
    let (view, stream) = LiveView::start(client.camera().timeout(t))?;
    let end = match until {
        LiveUntil::Duration(d) => Some(Instant::now() + d),
        LiveUntil::Frames(_) => None,
    };
    let mut status = StatusLine::new(!progress);
    let mut first: Option<Frame> = None;
    let mut last: Option<Frame> = None;
    let mut taken = 0u64;
    // When the current frame wait started (each frame gets the timeout).
    let mut waiting_since = Instant::now();
    loop {
        if cli_interrupt::interrupted() {
            drop(stream);
            status.finish();
            let undone = match view.stop() {
                Ok(()) => format!("stopped live view after {taken} frames"),
                Err(e) => format!("tried to stop live view, but: {e}"),
            };
            return Err(cli_interrupt::error(&undone));
        }
        let frame_left = t.saturating_sub(waiting_since.elapsed());
        let wait = match (until, end) {
            (LiveUntil::Frames(n), _) if taken >= n => break,
            (_, Some(end)) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(frame_left)
            }
            _ => frame_left,
        };
        match stream.next_frame(wait.min(POLL)) {
            Ok(frame) => {
                taken += 1;
                waiting_since = Instant::now();
                if first.is_none() {
                    first = Some(frame.clone());
                }
                if status.due() {
                    if let Some(a) = &first {
                        let (fps, mbs) = rates(a, &frame);
                        status.show(&format!(
                            "live: {taken} frames, {:.1} frames/s, {:.1} MB/s",
                            fps.unwrap_or(0.0),
                            mbs.unwrap_or(0.0)
                        ));
                    }
                }
                last = Some(frame);
            }
            Err(e) if e.is_timeout() && end.is_some_and(|end| Instant::now() >= end) => break,
            Err(e) if e.is_timeout() && waiting_since.elapsed() < t => {}
            Err(e) if e.is_timeout() => {
                return Err(on_live_timeout(
                    Error::timeout(flamingo_client::TimeoutPhase::Frame, "a live frame", t),
                    "a live frame",
                    client,
                ))
            }
            Err(e) => return Err(on_live_timeout(e, "a live frame", client)),
        }
    }
    status.finish();
    let dropped = stream.stats().dropped;
    drop(stream);
    view.stop()?;
    let (mut fps, mut mb_per_s, mut width, mut height) = (None, None, 0, 0);
    if let (Some(a), Some(b)) = (&first, &last) {
        width = b.width();
        height = b.height();
        (fps, mb_per_s) = rates(a, b);
    }
    if taken == 0 {
        return Err(Error::timeout(
            flamingo_client::TimeoutPhase::Frame,
            "a live frame",
            t,
        ));
    }
    Ok(LiveReport {
        frames: taken,
        dropped,
        fps,
        mb_per_s,
        width,
        height,
    })
}

// ---------------------------------------------------------------- workflow

/// `workflow`.
pub struct WorkflowReport {
    /// Bytes of the workflow file sent.
    pub sent_bytes: usize,
    /// The run finished with every image acquired (false without `--wait`).
    pub completed: bool,
    /// Whether we waited for the end.
    pub waited: bool,
    /// Images acquired (from the stack-complete statistics, else the
    /// images-saved notice).
    pub images: u64,
    /// Images expected, if the microscope said.
    pub expected: Option<u64>,
    /// From the start to the end (or to the acknowledgement without `--wait`).
    pub elapsed: Duration,
}

impl Report for WorkflowReport {
    fn json(&self) -> JsonObject {
        JsonObject::new()
            .int("sent_bytes", self.sent_bytes as u64)
            .bool("completed", self.completed)
            .int("images", self.images)
    }
    fn human(&self) -> String {
        if !self.waited {
            return format!(
                "Workflow started ({} bytes sent); not waiting for it to finish (add --wait)",
                self.sent_bytes
            );
        }
        let of = self
            .expected
            .map(|e| format!(" of {e}"))
            .unwrap_or_default();
        format!(
            "Workflow {} in {:.1} s: {}{of} images acquired ({} bytes sent)",
            if self.completed {
                "completed"
            } else {
                "ended incomplete"
            },
            self.elapsed.as_secs_f64(),
            self.images,
            self.sent_bytes
        )
    }
}

/// Sends a workflow file and starts it; with `wait`, follows its progress
/// (a bar with the time left on stderr, with `progress`) until the
/// microscope reports it finished (see `WorkflowRun` for the rule: the
/// return to idle once the run was seen running), for at most
/// [`WORKFLOW_LIMIT`]. Ctrl-C during the wait stops the workflow.
#[allow(clippy::too_many_arguments)]
pub fn workflow(
    client: &Client,
    t: Duration,
    file: &Workflow,
    label: &str,
    wait: bool,
    progress: bool,
    limits: Option<SoftLimits>,
) -> Result<WorkflowReport> {
    let t0 = Instant::now();
    let _guard = wait.then(cli_interrupt::Guard::new);
    let workflows = client
        .workflows()
        .timeout(t)
        .soft_limits(limits.unwrap_or_default());
    let mut run = workflows.start(file).map_err(|e| match e {
        Error::InvalidArgument { what } => {
            Error::invalid(format!("workflow file {label}: {what}; nothing was sent"))
        }
        e => e,
    })?;
    let mut report = WorkflowReport {
        sent_bytes: file.as_bytes().len(),
        completed: false,
        waited: wait,
        images: 0,
        expected: None,
        elapsed: t0.elapsed(),
    };
    if !wait {
        return Ok(report);
    }
    let mut bar = if progress {
        Progress::new(label)
    } else {
        Progress::hidden(label)
    };
    let until = Instant::now() + WORKFLOW_LIMIT;
    let summary = loop {
        if cli_interrupt::interrupted() {
            bar.finish();
            let undone = match run.stop() {
                Ok(()) => match run.wait(cli_interrupt::UNDO_DEADLINE) {
                    Ok(s) => format!(
                        "stopped the workflow ({} of {} images acquired)",
                        s.images_acquired, s.images_expected
                    ),
                    Err(e) => format!("asked the workflow to stop; it has not ended yet: {e}"),
                },
                Err(e) => format!("tried to stop the workflow, but: {e}"),
            };
            return Err(cli_interrupt::error(&undone));
        }
        let left = until.saturating_duration_since(Instant::now());
        match run.next_timeout(left.min(POLL)) {
            Some(Ok(WorkflowUpdate::GaugeSize { total })) => bar.set_total(total.into()),
            Some(Ok(WorkflowUpdate::Progress { current, total })) => {
                bar.set(current.into(), total.into())
            }
            Some(Ok(WorkflowUpdate::Finished(summary))) => break summary,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None if run.is_finished() || left.is_zero() => {
                // The end, or nothing more before the limit: the run's own
                // summary or timeout error.
                break run.wait(Duration::ZERO)?;
            }
            None => {}
        }
    };
    bar.finish();
    report.elapsed = t0.elapsed();
    report.completed = summary.is_complete();
    report.images = summary.images_acquired;
    report.expected = Some(summary.images_expected);
    Ok(report)
}

/// `workflow stop`: stops the running workflow and waits until the
/// microscope is idle (at most the timeout).
fn workflow_stop(client: &Client, t: Duration) -> Result<Done> {
    client.workflows().timeout(t).stop()?;
    client.system().timeout(t).wait_until_idle(t)?;
    Ok(Done {
        json: JsonObject::new().str("workflow", "stopped"),
        human: "Workflow stopped; the system is idle".into(),
    })
}

// ---------------------------------------------------------------- watch

/// One event as a JSON object (`elapsed_ms` since `t0`).
pub fn event_json(ev: &Event, t0: Instant) -> JsonObject {
    let o = JsonObject::new()
        .str("event", ev.kind.name())
        .str("what", event_word(&ev.kind));
    let o = match &ev.kind {
        EventKind::MotionStopped {
            axis,
            position,
            status,
        } => o
            .str("axis", axis.name())
            .num("position", *position)
            .int("status", *status),
        EventKind::StackComplete {
            acquired,
            expected,
            errors,
            duration_us,
        } => o
            .int("acquired", *acquired)
            .int("expected", *expected)
            .int("errors", *errors)
            .num("duration_us", *duration_us),
        EventKind::GaugeSize { total } => o.int("total", *total),
        EventKind::GaugeValue { current, total } => o.int("current", *current).int("total", *total),
        EventKind::ImagesSaved { count } => o.int("count", *count),
        EventKind::LaserLevel {
            laser,
            level_percent,
        } => o
            .int("laser", *laser)
            .opt_num("level_percent", *level_percent),
        EventKind::Unknown => match ev.code() {
            Some(c) => o.int("code", c.0).str("name", &c.to_string()),
            None => o.null("code"),
        },
        _ => o,
    };
    o.int(
        "elapsed_ms",
        ev.received_at.saturating_duration_since(t0).as_millis() as u64,
    )
}

/// An event kind in the words of the human output.
pub fn event_word(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::MotionStopped { .. } => "stage stopped",
        EventKind::SystemIdle => "system idle",
        EventKind::StackComplete { .. } => "stack complete",
        EventKind::GaugeSize { .. } => "progress maximum",
        EventKind::GaugeValue { .. } => "progress",
        EventKind::ImagesSaved { .. } => "images saved",
        EventKind::LaserLevel { .. } => "laser level",
        EventKind::Unknown => "other message",
        _ => "connection",
    }
}

/// One event as a readable line.
pub fn event_human(ev: &Event, t0: Instant) -> String {
    let at = ev.received_at.saturating_duration_since(t0).as_secs_f64();
    let what = match &ev.kind {
        EventKind::MotionStopped {
            axis,
            position,
            status,
        } => format!(
            "stage {axis} stopped at {position:.4} {} (status {status})",
            axis.unit()
        ),
        EventKind::SystemIdle => "system is idle".into(),
        EventKind::StackComplete {
            acquired,
            expected,
            errors,
            duration_us,
        } => format!(
            "stack complete: {acquired} of {}, {}, {:.2} s",
            plural((*expected).max(0) as u64, "image"),
            plural((*errors).max(0) as u64, "error"),
            duration_us / 1e6
        ),
        EventKind::GaugeSize { total } => format!("progress maximum {total}"),
        EventKind::GaugeValue { current, total } => format!("progress {current}/{total}"),
        EventKind::ImagesSaved { count } => format!("images saved to storage ({count})"),
        EventKind::LaserLevel {
            laser,
            level_percent: Some(p),
        } => format!("laser {laser} level {p:.2} %"),
        EventKind::LaserLevel {
            laser,
            level_percent: None,
        } => format!("laser {laser} level unreadable"),
        EventKind::Unknown => match ev.code() {
            Some(c) => format!("other message {c} (code {} / {:#06x})", c.0, c.0),
            None => "other message".into(),
        },
        other => other.name().replace('_', " "),
    };
    format!("{at:>8.3} s  {what}")
}

/// Prints every event until `duration` has passed. On a terminal (and
/// without `all` or `--json`), progress ticks share one updating line.
/// Ctrl-C ends the watch early (it started nothing to undo).
fn watch(client: &Client, duration: Duration, all: bool, out: &Out) -> Result<()> {
    let _guard = cli_interrupt::Guard::new();
    let events = client.subscribe();
    let t0 = Instant::now();
    let end = t0 + duration;
    let ticks_inline = !all && !out.json && io::stdout().is_terminal();
    if !out.json {
        out.text(&format!(
            "Watching events from {} for {:.1} s...",
            client.addr(),
            duration.as_secs_f64()
        ));
    }
    let mut n = 0u64;
    // Length of the progress line being redrawn, if one is open.
    let mut tick_line: Option<usize> = None;
    let end_tick_line = |open: &mut Option<usize>| {
        if open.take().is_some() {
            let mut o = io::stdout().lock();
            let _ = writeln!(o);
            let _ = o.flush();
        }
    };
    loop {
        if cli_interrupt::interrupted() {
            end_tick_line(&mut tick_line);
            return Err(cli_interrupt::error(&format!(
                "stopped watching after {n} events (nothing to undo)"
            )));
        }
        let ev = match events.recv_timeout(end.saturating_duration_since(Instant::now()).min(POLL))
        {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) if Instant::now() >= end => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::disconnected(
                    flamingo_client::DisconnectReason::ClosedByUser,
                    "the client was closed",
                ))
            }
        };
        match &ev.kind {
            EventKind::Disconnected { reason } | EventKind::Closed { reason } => {
                return Err(Error::disconnected(
                    flamingo_client::DisconnectReason::ClosedByPeer,
                    reason.clone(),
                ))
            }
            k if k.is_connection() => continue,
            _ => {}
        }
        n += 1;
        if out.json {
            out.text(&event_json(&ev, t0).to_string());
        } else if ticks_inline && matches!(ev.kind, EventKind::GaugeValue { .. }) {
            let line = event_human(&ev, t0);
            let pad = tick_line.unwrap_or(0).saturating_sub(line.len());
            let mut o = io::stdout().lock();
            let _ = write!(o, "\r{line}{}", " ".repeat(pad));
            let _ = o.flush();
            tick_line = Some(line.len());
        } else {
            end_tick_line(&mut tick_line);
            out.text(&event_human(&ev, t0));
        }
    }
    end_tick_line(&mut tick_line);
    if !out.json {
        let dropped = events.dropped();
        let note = if dropped > 0 {
            format!(" ({dropped} more were dropped: too many to print)")
        } else {
            String::new()
        };
        out.text(&format!("{}{note}", plural(n, "event")));
    }
    Ok(())
}

// ---------------------------------------------------------------- sim

/// The simulator configuration `sim`'s options ask for.
pub fn sim_config(args: &SimArgs) -> SimConfig {
    let mut cfg = SimConfig::default().port(args.port);
    if let Some((w, h)) = args.image_size {
        cfg = cfg.image_size(w, h);
    }
    if let Some(fps) = args.fps {
        cfg = cfg.live_fps(fps);
    }
    if let Some(d) = args.plane_ms {
        cfg = cfg.plane_interval(d);
    }
    let mut faults = Faults::default();
    for f in &args.faults {
        f.apply(&mut faults);
    }
    cfg.faults(faults)
}

/// Runs the simulator until Ctrl-C, then stops it (exit code 130).
fn run_sim(args: &SimArgs, out: &Out) -> Result<()> {
    let port = args.port;
    let guard = cli_interrupt::Guard::new();
    let interrupts = cli_interrupt::receiver();
    let sim = Simulator::start(sim_config(args)).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot start the simulator on port {port}: {e}"),
        ))
    })?;
    let addr = sim.addr();
    if out.json {
        out.text(
            &JsonObject::new()
                .str("addr", &addr.to_string())
                .str("live_addr", &sim.live_addr().to_string())
                .to_string(),
        );
    } else {
        out.text(&format!("listening on {addr}"));
        eprintln!(
            "simulator running: commands on {addr}, live images on {}; press Ctrl-C to stop",
            sim.live_addr()
        );
    }
    // Until the process is interrupted.
    let _ = interrupts.recv();
    sim.stop();
    drop(guard);
    let c = sim.counters();
    Err(cli_interrupt::error(&format!(
        "stopped the simulator after serving {}, {} and {}",
        plural(c.connections, "client connection"),
        plural(c.messages_received, "command"),
        plural(c.frames_sent, "live image"),
    )))
}
