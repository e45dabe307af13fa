//! Command-line parsing, help texts and exit codes of the `flamingo` tool.
//! Hand-written (no parser dependency): global options, then one command
//! with its own options. Every mistake is an [`Error::InvalidArgument`]
//! whose text says what to type instead.
//!
//! Include it with `#[path = "support/cli_args.rs"] mod cli_args;`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use flamingo_client::{Axis, Error};

/// The default command port address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:53717";
/// The default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// The default port of `sim`.
pub const DEFAULT_SIM_PORT: u16 = 53717;
/// The longest duration accepted for `--timeout` and `--for` (one day).
pub const MAX_SECS: f64 = 86_400.0;
/// The most frames `live --frames` accepts.
pub const MAX_FRAMES: u64 = 1_000_000;

/// Options given before the command.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// The command port, "host:port".
    pub addr: String,
    /// Deadline of each request.
    pub timeout: Duration,
    /// One JSON object per line on stdout.
    pub json: bool,
    /// Number of `-v`.
    pub verbose: u8,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            addr: DEFAULT_ADDR.into(),
            timeout: DEFAULT_TIMEOUT,
            json: false,
            verbose: 0,
        }
    }
}

/// A command and its checked arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `state`
    State,
    /// `image-size`
    ImageSize,
    /// `position`
    Position,
    /// `move --axis A --to V [--wait]`
    Move {
        /// The axis.
        axis: Axis,
        /// The target (mm, or degrees for r).
        to: f64,
        /// Wait for the motion to stop.
        wait: bool,
    },
    /// `settings --out FILE`
    Settings {
        /// Where to write the settings text.
        out: PathBuf,
    },
    /// `snapshot --out FILE`
    Snapshot {
        /// Where to save the image (.tif, .tiff or .png).
        out: PathBuf,
    },
    /// `live --frames N`
    Live {
        /// Frames to receive.
        frames: u64,
    },
    /// `workflow FILE [--wait]`
    Workflow {
        /// The workflow file.
        file: PathBuf,
        /// Wait for completion with a progress bar.
        wait: bool,
    },
    /// `watch --for SECS`
    Watch {
        /// How long to watch.
        duration: Duration,
    },
    /// `sim [--port P]`
    Sim {
        /// Command port (0: any free pair).
        port: u16,
    },
    /// `demo`
    Demo,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// Run a command.
    Run(Global, Command),
    /// Print this help text on stdout and exit 0.
    Help(String),
}

/// Exit code of a usage mistake or invalid argument.
pub const EXIT_USAGE: i32 = 2;

/// The exit code for an error, by kind (see the top-level help).
pub fn exit_code(e: &Error) -> i32 {
    match e {
        Error::InvalidArgument { .. } => EXIT_USAGE,
        Error::Connect { .. } => 3,
        Error::Timeout { .. } => 4,
        Error::Disconnected { .. } => 5,
        Error::Busy { .. } | Error::Refused { .. } => 6,
        Error::TooLarge { .. } => 7,
        Error::Protocol { .. } => 8,
        _ => 1,
    }
}

struct CommandInfo {
    name: &'static str,
    summary: &'static str,
    help: &'static str,
}

const COMMANDS: &[CommandInfo] = &[
    CommandInfo {
        name: "state",
        summary: "Show the system state (idle, busy or error)",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] state

Asks the microscope for its system state.

Output:   System state: idle (0)
JSON:     {\"state\":\"idle\"|\"busy\"|\"error\"|\"unknown\",\"code\":N}

Example:  flamingo --addr 192.168.1.2:53717 state
",
    },
    CommandInfo {
        name: "image-size",
        summary: "Show the camera image size in pixels",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] image-size

Asks the camera for its image size (width x height in pixels).

JSON:     {\"width\":W,\"height\":H}
",
    },
    CommandInfo {
        name: "position",
        summary: "Show the stage position (x, y, z in mm; r in degrees)",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] position

Reads the position of the four stage axes: x, y, z in millimetres and the
rotation r in degrees.

JSON:     {\"x\":MM,\"y\":MM,\"z\":MM,\"r\":DEG}
",
    },
    CommandInfo {
        name: "move",
        summary: "Move one stage axis (--axis x|y|z|r --to VALUE [--wait])",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] move --axis x|y|z|r --to VALUE [--wait]

Moves one stage axis to an absolute position: millimetres for x, y and z,
degrees for r. Without --wait the command returns once the microscope has
accepted the move; with --wait it returns when the axis has stopped (at most
60 s). A target outside the stage's soft limits is refused by the microscope
(exit code 6).

Options:
  --axis x|y|z|r   The axis to move (required)
  --to VALUE       The target position, for example 12.5 or -90 (required)
  --wait           Wait until the axis has stopped

JSON:     {\"axis\":\"x\",\"target\":VALUE,\"stopped\":true|false,\"elapsed_ms\":N}

Example:  flamingo move --axis z --to 20.25 --wait
",
    },
    CommandInfo {
        name: "settings",
        summary: "Save the microscope's settings file (--out FILE)",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] settings --out FILE

Downloads the microscope's settings (ScopeSettings.txt) and writes them to
FILE exactly as received.

Options:
  --out FILE   Where to write the settings (required; replaced if it exists)

JSON:     {\"bytes\":N}

Example:  flamingo settings --out ScopeSettings.txt
",
    },
    CommandInfo {
        name: "snapshot",
        summary: "Take one image and save it as 16-bit TIFF or PNG (--out FILE)",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] snapshot --out FILE.tif|FILE.png

Takes one camera image and saves it as a 16-bit grayscale image that Fiji /
ImageJ opens. The format follows the file name: .tif or .tiff gives TIFF,
.png gives PNG. Pixel values are saved unchanged.

Options:
  --out FILE   Where to save the image (required; replaced if it exists)

JSON:     {\"width\":W,\"height\":H,\"path\":\"...\"}

Example:  flamingo snapshot --out C:\\Data\\snap.tif
",
    },
    CommandInfo {
        name: "live",
        summary: "Receive live-view frames and report the frame rate (--frames N)",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] live --frames N

Starts live view, receives N frames, stops live view and reports the frame
rate and data rate measured between the first and the last frame. Frames
the tool could not take in time are counted as dropped. Each frame must
arrive within the --timeout.

Options:
  --frames N   Frames to receive, 1 to 1000000 (required)

JSON:     {\"frames\":N,\"dropped\":D,\"fps\":F,\"mb_per_s\":M}
          (MB = 1 000 000 bytes; fps and mb_per_s are null for one frame)

Example:  flamingo live --frames 100
",
    },
    CommandInfo {
        name: "workflow",
        summary: "Start a workflow file (FILE [--wait])",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] workflow FILE [--wait]

Sends a workflow file (for example ZStack.txt, as saved by the microscope
software) and starts it. With --wait, shows a progress bar on stderr and
returns when the microscope reports the workflow finished.

Options:
  --wait   Wait for the workflow to finish, with a progress bar

JSON:     {\"sent_bytes\":N,\"completed\":true|false,\"images\":N}
          (completed is false without --wait, and when the run was stopped,
          reported errors or acquired fewer images than expected)

Example:  flamingo workflow ZStack.txt --wait
",
    },
    CommandInfo {
        name: "watch",
        summary: "Print the microscope's events for a while (--for SECS)",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] watch --for SECS

Prints every event the microscope sends on its own (end of a stage move,
workflow progress, images saved, laser levels...) for SECS seconds, one line
per event.

Options:
  --for SECS   How long to watch, for example 10 or 0.5 (required)

JSON:     one object per event, with an \"event\" key:
          \"motion_stopped\" (\"axis\",\"position\",\"status\"), \"system_idle\",
          \"stack_complete\" (\"acquired\",\"expected\",\"errors\",\"duration_us\"),
          \"gauge_size\" (\"total\"), \"gauge_value\" (\"current\",\"total\"),
          \"images_saved\" (\"count\"), \"laser_level\" (\"laser\",\"level_percent\"),
          \"unknown\" (\"code\",\"name\"); every event also has \"elapsed_ms\"
          (since the watch started).
",
    },
    CommandInfo {
        name: "sim",
        summary: "Run the microscope simulator until interrupted ([--port P])",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] sim [--port P]

Runs the built-in microscope simulator on 127.0.0.1: commands on port P,
live images on P+1. Prints `listening on 127.0.0.1:P` and runs until
interrupted (Ctrl-C). Connect to it from another window, for example with
`flamingo --addr 127.0.0.1:P state`.

Options:
  --port P   Command port [default: 53717]; 0 picks a free pair of ports

Example:  flamingo sim --port 0
",
    },
    CommandInfo {
        name: "demo",
        summary: "Run a full session against a built-in simulator",
        help: "\
Usage: flamingo [GLOBAL OPTIONS] demo

Starts the built-in simulator (512 x 512 camera) inside this program and
runs a full session against it: system state, image size, stage position, a
move with wait, a snapshot saved as TIFF in the temporary directory, two
seconds of live view, a Z-stack workflow with a progress bar, and the events
seen. Needs no microscope; --addr is ignored. Takes a few seconds.
",
    },
];

/// The top-level help text.
pub fn top_help() -> String {
    let mut s = String::from(
        "\
flamingo: control a Flamingo light-sheet microscope from the command line

Usage: flamingo [GLOBAL OPTIONS] COMMAND [OPTIONS]
   or: cargo run --release --example flamingo -- [GLOBAL OPTIONS] COMMAND [OPTIONS]

Commands:
",
    );
    for c in COMMANDS {
        s.push_str(&format!("  {:<12} {}\n", c.name, c.summary));
    }
    s.push_str(&format!(
        "  {:<12} {}\n",
        "help", "Show this help, or a command's help (help COMMAND)"
    ));
    s.push_str(
        "
Global options (put them before the command):
  --addr HOST:PORT   The microscope's command port; live images use PORT+1
                     [default: 127.0.0.1:53717]
  --timeout SECS     Time allowed for connecting and for each request, for
                     example 0.3 [default: 3]
  --json             Print each result as one JSON object per line (for scripts)
  -v, -vv, -vvv      Log more on stderr (info, debug, trace); RUST_LOG, when
                     set, takes precedence
  -h, --help         Show help; `flamingo COMMAND --help` shows a command's help

Exit codes:
  0  success
  1  other error (for example a file that cannot be written)
  2  invalid argument or usage error
  3  cannot connect to the microscope
  4  timed out waiting for the microscope
  5  disconnected (the connection was lost)
  6  device busy, or the device refused the command
  7  a size exceeds a limit
  8  protocol error (the microscope sent something unexpected)
Errors are printed as one line on stderr, starting with \"error: \".

Examples:
  flamingo demo
  flamingo --addr 192.168.1.2:53717 state
  flamingo --json position
  flamingo move --axis z --to 20.25 --wait
  flamingo snapshot --out snap.tif
  flamingo workflow ZStack.txt --wait
",
    );
    s
}

/// The help text of `command`, if it exists.
pub fn command_help(command: &str) -> Option<String> {
    COMMANDS.iter().find(|c| c.name == command).map(|c| {
        format!(
            "flamingo {}: {}\n\n{}\nGlobal options (--addr, --timeout, --json, -v) go before the command; see `flamingo --help`.\n",
            c.name, c.summary, c.help
        )
    })
}

fn invalid(what: impl Into<String>) -> Error {
    Error::invalid(what)
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Parsed, Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut g = Global::default();
    let mut i = 0;
    // Global options.
    let command = loop {
        let Some(arg) = args.get(i) else {
            return Err(invalid(
                "no command given (try `flamingo --help`, or `flamingo demo` for a tour)",
            ));
        };
        i += 1;
        let (name, inline) = split_inline(arg);
        match name {
            "-h" | "--help" => return Ok(Parsed::Help(top_help())),
            "--json" => {
                no_inline(name, inline)?;
                g.json = true;
            }
            "--addr" => {
                let v = value(name, inline, &args, &mut i)?;
                g.addr = parse_addr(&v)?;
            }
            "--timeout" => {
                let v = value(name, inline, &args, &mut i)?;
                g.timeout = parse_secs(name, &v, false)?;
            }
            "--verbose" => g.verbose = g.verbose.saturating_add(1),
            v if v.len() > 1 && v.starts_with('-') && v[1..].bytes().all(|b| b == b'v') => {
                g.verbose = g.verbose.saturating_add((v.len() - 1) as u8);
            }
            o if o.starts_with('-') => {
                return Err(invalid(format!(
                    "unknown global option {o:?} (see `flamingo --help`)"
                )))
            }
            _ => break arg.clone(),
        }
    };
    let rest = &args[i..];
    if command == "help" {
        return match rest.first() {
            None => Ok(Parsed::Help(top_help())),
            Some(c) => command_help(c)
                .map(Parsed::Help)
                .ok_or_else(|| unknown_command(c)),
        };
    }
    if command_help(&command).is_none() {
        return Err(unknown_command(&command));
    }
    let opts = match CommandArgs::parse(&command, rest)? {
        Some(o) => o,
        None => return Ok(Parsed::Help(command_help(&command).expect("known command"))),
    };
    let cmd = build(&command, opts)?;
    Ok(Parsed::Run(g, cmd))
}

fn unknown_command(c: &str) -> Error {
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    invalid(format!(
        "unknown command {c:?}; the commands are: {} (see `flamingo --help`)",
        names.join(", ")
    ))
}

/// `--name=value` → ("--name", Some("value")).
fn split_inline(arg: &str) -> (&str, Option<&str>) {
    match arg.strip_prefix("--").and_then(|r| r.split_once('=')) {
        Some((n, v)) => (&arg[..n.len() + 2], Some(v)),
        None => (arg, None),
    }
}

fn no_inline(name: &str, inline: Option<&str>) -> Result<(), Error> {
    match inline {
        Some(_) => Err(invalid(format!("option {name} takes no value"))),
        None => Ok(()),
    }
}

fn value(
    name: &str,
    inline: Option<&str>,
    args: &[String],
    i: &mut usize,
) -> Result<String, Error> {
    if let Some(v) = inline {
        return Ok(v.to_string());
    }
    match args.get(*i) {
        Some(v) => {
            *i += 1;
            Ok(v.clone())
        }
        None => Err(invalid(format!("option {name} needs a value"))),
    }
}

/// The options and positional arguments given to one command.
#[derive(Default)]
struct CommandArgs {
    values: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
    positional: Vec<String>,
}

/// The options each command accepts: (name, takes a value).
fn command_options(command: &str) -> &'static [(&'static str, bool)] {
    match command {
        "move" => &[("--axis", true), ("--to", true), ("--wait", false)],
        "settings" | "snapshot" => &[("--out", true)],
        "live" => &[("--frames", true)],
        "workflow" => &[("--wait", false)],
        "watch" => &[("--for", true)],
        "sim" => &[("--port", true)],
        _ => &[],
    }
}

fn positional_count(command: &str) -> usize {
    usize::from(command == "workflow")
}

impl CommandArgs {
    /// `None` when help was asked for.
    fn parse(command: &str, args: &[String]) -> Result<Option<CommandArgs>, Error> {
        let known = command_options(command);
        let mut out = CommandArgs::default();
        let mut i = 0;
        let mut only_positional = false;
        while let Some(arg) = args.get(i) {
            i += 1;
            if only_positional || !arg.starts_with('-') || arg == "-" {
                out.positional.push(arg.clone());
                continue;
            }
            if arg == "--" {
                only_positional = true;
                continue;
            }
            let (name, inline) = split_inline(arg);
            if name == "-h" || name == "--help" {
                return Ok(None);
            }
            let Some(&(opt, takes)) = known.iter().find(|(n, _)| *n == name) else {
                let global = matches!(name, "--addr" | "--timeout" | "--json" | "--verbose")
                    || (name.len() > 1 && name[1..].bytes().all(|b| b == b'v'));
                return Err(if global {
                    invalid(format!(
                        "{name} is a global option: put it before the command, as in `flamingo {name}{} {command} ...`",
                        if matches!(name, "--addr" | "--timeout") { " VALUE" } else { "" }
                    ))
                } else {
                    invalid(format!(
                        "unknown option {name:?} for `{command}` (see `flamingo {command} --help`)"
                    ))
                });
            };
            if out.values.iter().any(|(n, _)| *n == opt) || out.flags.contains(&opt) {
                return Err(invalid(format!("option {opt} is given twice")));
            }
            if takes {
                let v = value(opt, inline, args, &mut i)?;
                out.values.push((opt, v));
            } else {
                no_inline(opt, inline)?;
                out.flags.push(opt);
            }
        }
        let want = positional_count(command);
        if out.positional.len() > want {
            return Err(invalid(format!(
                "unexpected argument {:?} for `{command}` (see `flamingo {command} --help`)",
                out.positional[want]
            )));
        }
        Ok(Some(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, command: &str, name: &str) -> Result<&str, Error> {
        self.get(name).ok_or_else(|| {
            invalid(format!(
                "`{command}` needs {name} (see `flamingo {command} --help`)"
            ))
        })
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }
}

fn build(command: &str, a: CommandArgs) -> Result<Command, Error> {
    Ok(match command {
        "state" => Command::State,
        "image-size" => Command::ImageSize,
        "position" => Command::Position,
        "move" => {
            let axis: Axis = a.required(command, "--axis")?.parse()?;
            let to = parse_f64("--to", a.required(command, "--to")?)?;
            Command::Move {
                axis,
                to,
                wait: a.flag("--wait"),
            }
        }
        "settings" => Command::Settings {
            out: parse_path("--out", a.required(command, "--out")?)?,
        },
        "snapshot" => {
            let out = parse_path("--out", a.required(command, "--out")?)?;
            check_image_extension(&out)?;
            Command::Snapshot { out }
        }
        "live" => Command::Live {
            frames: parse_count("--frames", a.required(command, "--frames")?, 1, MAX_FRAMES)?,
        },
        "workflow" => {
            let file = a.positional.first().ok_or_else(|| {
                invalid("`workflow` needs a workflow FILE (see `flamingo workflow --help`)")
            })?;
            Command::Workflow {
                file: parse_path("FILE", file)?,
                wait: a.flag("--wait"),
            }
        }
        "watch" => Command::Watch {
            duration: parse_secs("--for", a.required(command, "--for")?, true)?,
        },
        "sim" => Command::Sim {
            port: match a.get("--port") {
                None => DEFAULT_SIM_PORT,
                Some(p) => parse_count("--port", p, 0, 65534)? as u16,
            },
        },
        "demo" => Command::Demo,
        other => return Err(unknown_command(other)),
    })
}

/// Checks "host:port" (a name, an IPv4 address or a bracketed IPv6
/// address, and a port from 1 to 65534 so that PORT+1 exists).
pub fn parse_addr(s: &str) -> Result<String, Error> {
    let bad = |why: &str| {
        invalid(format!(
            "--addr {s:?} {why}; give HOST:PORT, for example 192.168.1.2:53717"
        ))
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad("has an IPv6 address without brackets ([::1]:53717)"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad("has a port that is not a number from 1 to 65534"))?;
    if port == 0 || port == u16::MAX {
        return Err(bad(
            "has a port that is not from 1 to 65534 (the live port is PORT+1)",
        ));
    }
    Ok(s.to_string())
}

/// A duration in seconds: a finite, non-negative number (zero only when
/// `allow_zero`), at most [`MAX_SECS`].
pub fn parse_secs(name: &str, s: &str, allow_zero: bool) -> Result<Duration, Error> {
    let v: f64 = s.trim().parse().map_err(|_| {
        invalid(format!(
            "{name} {s:?} is not a number of seconds (for example 3 or 0.5)"
        ))
    })?;
    if !v.is_finite() {
        return Err(invalid(format!(
            "{name} {s:?} is not a finite number of seconds"
        )));
    }
    if v < 0.0 || (v == 0.0 && !allow_zero) {
        return Err(invalid(format!(
            "{name} {s:?} must be {} 0 seconds",
            if allow_zero { "at least" } else { "more than" }
        )));
    }
    if v > MAX_SECS {
        return Err(invalid(format!(
            "{name} {s:?} is too long (at most {MAX_SECS} seconds)"
        )));
    }
    let d = Duration::from_secs_f64(v);
    if d.is_zero() && !allow_zero {
        return Err(invalid(format!("{name} {s:?} is too short")));
    }
    Ok(d)
}

/// A finite number.
pub fn parse_f64(name: &str, s: &str) -> Result<f64, Error> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(invalid(format!(
            "{name} {s:?} is not a finite number (for example 12.5 or -90)"
        ))),
    }
}

/// A whole number in `min..=max`.
pub fn parse_count(name: &str, s: &str, min: u64, max: u64) -> Result<u64, Error> {
    match s.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(invalid(format!(
            "{name} {s:?} is not a whole number from {min} to {max}"
        ))),
    }
}

fn parse_path(name: &str, s: &str) -> Result<PathBuf, Error> {
    if s.trim().is_empty() {
        return Err(invalid(format!("{name} is an empty file name")));
    }
    Ok(PathBuf::from(s))
}

/// Snapshots are saved as .tif, .tiff or .png.
pub fn check_image_extension(path: &std::path::Path) -> Result<(), Error> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("tif" | "tiff" | "png") => Ok(()),
        _ => Err(invalid(format!(
            "--out {:?} must end in .tif, .tiff or .png (the image format follows the file name)",
            path.display().to_string()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(Global, Command), Error> {
        match parse(args.iter().copied())? {
            Parsed::Run(g, c) => Ok((g, c)),
            Parsed::Help(h) => panic!("unexpected help: {h}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(e) => {
                assert_eq!(exit_code(&e), EXIT_USAGE, "{e}");
                e.to_string()
            }
            Ok(p) => panic!("expected an error for {args:?}, got {p:?}"),
        }
    }

    #[test]
    fn globals_and_defaults() {
        let (g, c) = run(&["state"]).unwrap();
        assert_eq!(g, Global::default());
        assert_eq!(c, Command::State);
        let (g, c) = run(&[
            "--addr",
            "10.0.0.2:6000",
            "--timeout=0.3",
            "--json",
            "-vv",
            "image-size",
        ])
        .unwrap();
        assert_eq!(g.addr, "10.0.0.2:6000");
        assert_eq!(g.timeout, Duration::from_millis(300));
        assert!(g.json);
        assert_eq!(g.verbose, 2);
        assert_eq!(c, Command::ImageSize);
        let (g, _) = run(&["-v", "--verbose", "-v", "position"]).unwrap();
        assert_eq!(g.verbose, 3);
        assert_eq!(
            run(&["--addr", "[::1]:53717", "state"]).unwrap().0.addr,
            "[::1]:53717"
        );
    }

    #[test]
    fn commands() {
        assert_eq!(
            run(&["move", "--axis", "R", "--to", "-90.5", "--wait"])
                .unwrap()
                .1,
            Command::Move {
                axis: Axis::R,
                to: -90.5,
                wait: true
            }
        );
        assert_eq!(
            run(&["move", "--to=3", "--axis=x"]).unwrap().1,
            Command::Move {
                axis: Axis::X,
                to: 3.0,
                wait: false
            }
        );
        assert_eq!(
            run(&["workflow", "--wait", "ZStack.txt"]).unwrap().1,
            Command::Workflow {
                file: "ZStack.txt".into(),
                wait: true
            }
        );
        assert_eq!(
            run(&["workflow", "--", "-odd name.txt"]).unwrap().1,
            Command::Workflow {
                file: "-odd name.txt".into(),
                wait: false
            }
        );
        assert_eq!(
            run(&["snapshot", "--out", "a.TIF"]).unwrap().1,
            Command::Snapshot {
                out: "a.TIF".into()
            }
        );
        assert_eq!(
            run(&["live", "--frames", "5"]).unwrap().1,
            Command::Live { frames: 5 }
        );
        assert_eq!(
            run(&["watch", "--for", "0"]).unwrap().1,
            Command::Watch {
                duration: Duration::ZERO
            }
        );
        assert_eq!(run(&["sim"]).unwrap().1, Command::Sim { port: 53717 });
        assert_eq!(
            run(&["sim", "--port", "0"]).unwrap().1,
            Command::Sim { port: 0 }
        );
        assert_eq!(run(&["demo"]).unwrap().1, Command::Demo);
        assert_eq!(
            run(&["settings", "--out", "s.txt"]).unwrap().1,
            Command::Settings {
                out: "s.txt".into()
            }
        );
    }

    #[test]
    fn help_everywhere() {
        for args in [&["--help"][..], &["-h"], &["help"], &["--json", "--help"]] {
            match parse(args.iter().copied()).unwrap() {
                Parsed::Help(h) => assert!(h.contains("Exit codes"), "{args:?}"),
                p => panic!("{p:?}"),
            }
        }
        for c in COMMANDS {
            for args in [
                vec![c.name, "--help"],
                vec!["help", c.name],
                vec![c.name, "-h"],
            ] {
                match parse(args.iter().copied()).unwrap() {
                    Parsed::Help(h) => {
                        assert!(
                            h.contains(&format!("flamingo [GLOBAL OPTIONS] {}", c.name)),
                            "{h}"
                        )
                    }
                    p => panic!("{p:?}"),
                }
            }
        }
        // Help wins over missing required options.
        assert!(matches!(
            parse(["move", "--axis", "q", "--help"]).unwrap(),
            Parsed::Help(_)
        ));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(err(&[]).contains("no command"));
        assert!(err(&["stat"]).contains("unknown command \"stat\""));
        assert!(err(&["--bogus", "state"]).contains("unknown global option"));
        assert!(err(&["state", "--json"]).contains("global option"));
        assert!(err(&["state", "--timeout", "1"]).contains("before the command"));
        assert!(err(&["state", "extra"]).contains("unexpected argument"));
        assert!(err(&["move", "--axis", "q", "--to", "1"]).contains("axis \"q\""));
        assert!(err(&["move", "--axis", "x"]).contains("needs --to"));
        assert!(err(&["move", "--axis", "x", "--to", "NaN"]).contains("finite"));
        assert!(err(&["move", "--axis", "x", "--to", "1", "--to", "2"]).contains("twice"));
        assert!(err(&["move", "--axis"]).contains("needs a value"));
        assert!(err(&["move", "--axis", "x", "--to", "1", "--wait=yes"]).contains("no value"));
        for t in ["-1", "NaN", "inf", "abc", "0", "", "1e9"] {
            assert!(err(&["--timeout", t, "state"]).contains("--timeout"), "{t}");
        }
        assert!(err(&["watch", "--for", "-0.5"]).contains("--for"));
        assert!(err(&["watch"]).contains("needs --for"));
        assert!(err(&["live", "--frames", "0"]).contains("--frames"));
        assert!(err(&["live", "--frames", "-3"]).contains("--frames"));
        assert!(err(&["snapshot", "--out", "a.jpg"]).contains(".png"));
        assert!(err(&["snapshot"]).contains("needs --out"));
        assert!(err(&["workflow"]).contains("FILE"));
        assert!(err(&["sim", "--port", "65535"]).contains("--port"));
        for a in ["localhost", ":53717", "h:0", "h:65535", "h:x", "::1:53717"] {
            assert!(err(&["--addr", a, "state"]).contains("--addr"), "{a}");
        }
        assert!(err(&["help", "nope"]).contains("unknown command"));
    }

    #[test]
    fn exit_codes_by_kind() {
        use std::io;
        assert_eq!(exit_code(&Error::invalid("x")), 2);
        let connect = Error::Connect {
            addr: "a".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(exit_code(&connect), 3);
        assert_eq!(
            exit_code(&Error::timeout(
                flamingo_client::TimeoutPhase::Reply,
                "x",
                Duration::from_secs(1)
            )),
            4
        );
        assert_eq!(
            exit_code(&Error::disconnected(
                flamingo_client::DisconnectReason::ClosedByPeer,
                "x"
            )),
            5
        );
        let code = flamingo_client::codec::CommandCode::STAGE_POSITION_SET;
        assert_eq!(exit_code(&Error::Busy { code, status: 1 }), 6);
        assert_eq!(exit_code(&Error::Refused { code, status: 2 }), 6);
        let big = Error::TooLarge {
            what: "x",
            size: 2,
            limit: 1,
        };
        assert_eq!(exit_code(&big), 7);
        assert_eq!(exit_code(&Error::protocol("x")), 8);
        assert_eq!(exit_code(&Error::Io(io::Error::other("x"))), 1);
    }
}
