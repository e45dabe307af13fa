//! Command-line parsing, help texts and exit codes of the `flamingo` tool,
//! with clap (derive). Global options are accepted before or after the
//! command; mistakes become an [`Error::InvalidArgument`] whose text says
//! what to type instead (clap's own wording is translated, so messages stay
//! those of the tool), with typo suggestions.
//!
//! Include it with `#[path = "support/cli_args.rs"] mod cli_args;`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use flamingo_client::codec::CommandCode;
use flamingo_client::sim::Faults;
use flamingo_client::{Axis, Error};

#[path = "cli_record_args.rs"]
mod cli_record_args;
pub use cli_record_args::{FactsArgs, RecordArgs, ReplayArgs};

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

/// `home` without `--axis` or `--yes`.
pub const HOME_NEEDS_YES: &str =
    "`home` moves every axis of the stage at once; add --yes to confirm, \
     or home one axis with --axis x|y|z|r";

/// Exit code of a usage mistake or invalid argument.
pub const EXIT_USAGE: i32 = 2;
/// Exit code after Ctrl-C (128 + SIGINT, the shell convention).
pub const EXIT_INTERRUPTED: i32 = 130;

/// The whole command line.
#[derive(Parser, Clone, Debug, PartialEq)]
#[command(
    name = "flamingo",
    version,
    about = "flamingo: control a Flamingo light-sheet microscope from the command line",
    override_usage = "flamingo [GLOBAL OPTIONS] COMMAND [OPTIONS]\n       cargo run --release --example flamingo -- [GLOBAL OPTIONS] COMMAND [OPTIONS]",
    after_help = TOP_AFTER_HELP,
    subcommand_required = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after the command.
#[derive(Args, Clone, Debug, PartialEq)]
#[command(next_help_heading = "Global options (before or after the command)")]
pub struct Global {
    /// The microscope's command port (else FLAMINGO_ADDR, else the config file); live images use PORT+1
    #[arg(long, global = true, value_name = "HOST:PORT", default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    pub addr: String,
    /// Time allowed for connecting and for each request, for example 0.3
    #[arg(long, global = true, value_name = "SECS", allow_negative_numbers = true, default_value = "3", value_parser = |s: &str| parse_secs("--timeout", s, false))]
    pub timeout: Duration,
    /// Print each result as one JSON object per line (errors as one JSON object on stderr)
    #[arg(long, global = true)]
    pub json: bool,
    /// Log more on stderr (-v info, -vv debug, -vvv trace); RUST_LOG, when set, takes precedence
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Where `addr` came from (`--addr` when given; else filled in from
    /// FLAMINGO_ADDR or the config file before connecting).
    #[arg(skip)]
    pub addr_from: Source,
    /// Where `timeout` came from.
    #[arg(skip)]
    pub timeout_from: Source,
}

/// Where a global setting came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    #[default]
    Default,
    /// The command line.
    CommandLine,
    /// An environment variable (its name).
    Env(&'static str),
    /// The config file (its path and line).
    File(PathBuf, usize),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::CommandLine => f.write_str("the command line"),
            Source::Env(name) => write!(f, "the environment variable {name}"),
            Source::File(p, line) => write!(f, "{} line {line}", p.display()),
        }
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            addr: DEFAULT_ADDR.into(),
            timeout: DEFAULT_TIMEOUT,
            json: false,
            verbose: 0,
            addr_from: Source::Default,
            timeout_from: Source::Default,
        }
    }
}

/// A command and its checked arguments.
#[derive(Subcommand, Clone, Debug, PartialEq)]
pub enum Command {
    /// Show the system state (idle, busy or error)
    #[command(after_help = "\
Output:   System state: idle (0)
JSON:     {\"state\":\"idle\"|\"busy\"|\"error\"|\"unknown\",\"code\":N}

Example:  flamingo --addr 192.168.1.2:53717 state")]
    State,
    /// Show the camera image size in pixels
    #[command(after_help = "JSON:     {\"width\":W,\"height\":H}")]
    ImageSize,
    /// Show the stage position (x, y, z in mm; r in degrees)
    #[command(after_help = "JSON:     {\"x\":MM,\"y\":MM,\"z\":MM,\"r\":DEG}")]
    Position,
    /// Move one stage axis (--axis x|y|z|r --to VALUE [--wait])
    #[command(
        long_about = "Moves one stage axis to an absolute position: millimetres for x, y and z,\n\
degrees for r. The target is first checked against the stage's soft limits\n\
from the microscope's settings; a target outside them is refused before\n\
anything is sent (exit code 2). Without --wait the command returns once the\n\
microscope has accepted the move; with --wait it returns when the axis has\n\
stopped (at most 60 s). Ctrl-C during --wait halts the stage.",
        after_help = "\
JSON:     {\"axis\":\"x\",\"target\":VALUE,\"stopped\":true|false,\"elapsed_ms\":N}

Example:  flamingo move --axis z --to 20.25 --wait"
    )]
    Move {
        /// The axis to move
        #[arg(long, value_name = "x|y|z|r", value_parser = parse_axis)]
        axis: Axis,
        /// The target position, for example 12.5 or -90
        #[arg(long, value_name = "VALUE", allow_negative_numbers = true, value_parser = |s: &str| parse_f64("--to", s))]
        to: f64,
        /// Wait until the axis has stopped
        #[arg(long)]
        wait: bool,
    },
    /// Stop stage motion now (all axes, or one with --axis)
    #[command(
        long_about = "Stops stage motion. Without --axis, every axis stops at once (the instrument's\n\
halt). With --axis, only that axis is stopped: it is sent to the position it\n\
has reached, and the other axes keep moving.",
        after_help = "\
JSON:     {\"halted\":\"all\"} or {\"halted\":\"z\",\"position\":MM}

Example:  flamingo halt"
    )]
    Halt {
        /// Stop only this axis
        #[arg(long, value_name = "x|y|z|r", value_parser = parse_axis)]
        axis: Option<Axis>,
    },
    /// Save the microscope's settings file (--out FILE)
    #[command(
        long_about = "Downloads the microscope's settings (ScopeSettings.txt) and writes them to\n\
FILE exactly as received.",
        after_help = "\
JSON:     {\"bytes\":N}

Example:  flamingo settings --out ScopeSettings.txt"
    )]
    Settings {
        /// Where to write the settings (replaced if it exists)
        #[arg(long, value_name = "FILE", value_parser = |s: &str| parse_path("--out", s))]
        out: PathBuf,
    },
    /// Take one image and save it as 16-bit TIFF or PNG (--out FILE)
    #[command(
        long_about = "Takes one camera image and saves it as a 16-bit grayscale image that Fiji /\n\
ImageJ opens. The format follows the file name: .tif or .tiff gives TIFF, .png\n\
gives PNG. Pixel values are saved unchanged.",
        after_help = "\
JSON:     {\"width\":W,\"height\":H,\"path\":\"...\"}

Example:  flamingo snapshot --out C:\\Data\\snap.tif"
    )]
    Snapshot {
        /// Where to save the image: .tif, .tiff or .png (replaced if it exists)
        #[arg(long, value_name = "FILE", value_parser = parse_image_path)]
        out: PathBuf,
        /// Take N images and save them as one multi-page TIFF stack (needs a .tif file)
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=511))]
        count: u32,
    },
    /// Receive live-view frames and report the frame rate (--frames N or --for SECS)
    #[command(
        long_about = "Starts live view, receives N frames (or frames for SECS seconds), stops live\n\
view and reports the frame rate and data rate measured between the first and\n\
the last frame. On a terminal the rates are shown on stderr while it runs.\n\
Frames the tool could not take in time are counted as dropped. Each frame must\n\
arrive within the --timeout. Ctrl-C stops live view.",
        after_help = "\
JSON:     {\"frames\":N,\"dropped\":D,\"fps\":F,\"mb_per_s\":M}
          (MB = 1 000 000 bytes; fps and mb_per_s are null for one frame)

Examples: flamingo live --frames 100
          flamingo live --for 10"
    )]
    Live {
        /// Frames to receive, 1 to 1000000
        #[arg(long, value_name = "N", allow_negative_numbers = true, required_unless_present = "duration", conflicts_with = "duration", value_parser = |s: &str| parse_count("--frames", s, 1, MAX_FRAMES))]
        frames: Option<u64>,
        /// How long to receive, for example 10 or 0.5
        #[arg(long = "for", value_name = "SECS", allow_negative_numbers = true, value_parser = |s: &str| parse_secs("--for", s, false))]
        duration: Option<Duration>,
    },
    /// Start a workflow file (FILE [--wait]), or check / stop one
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        override_usage = "flamingo [GLOBAL OPTIONS] workflow FILE [--wait]\n       flamingo [GLOBAL OPTIONS] workflow check FILE\n       flamingo [GLOBAL OPTIONS] workflow stop",
        long_about = "Checks a workflow file (for example ZStack.txt, as saved by the microscope\n\
software), sends it and starts it. A file with mistakes is refused before\n\
anything is sent, with the line of the mistake. With --wait, shows a progress\n\
bar with the time left on stderr and returns when the microscope reports the\n\
workflow finished; Ctrl-C stops the workflow.",
        after_help = "\
JSON:     {\"sent_bytes\":N,\"completed\":true|false,\"images\":N}
          (completed is false without --wait, and when the run was stopped,
          reported errors or acquired fewer images than expected)

Examples: flamingo workflow ZStack.txt --wait
          flamingo workflow check ZStack.txt
          flamingo workflow stop"
    )]
    Workflow {
        /// `check` or `stop`.
        #[command(subcommand)]
        action: Option<WorkflowAction>,
        /// The workflow file
        #[arg(value_name = "FILE", required = true, value_parser = |s: &str| parse_path("FILE", s))]
        file: Option<PathBuf>,
        /// Wait for the workflow to finish, with a progress bar
        #[arg(long)]
        wait: bool,
    },
    /// Switch lasers on or off, set or show their power (lasers set 2 10, lasers off)
    #[command(
        subcommand_value_name = "ACTION",
        after_help = "\
Lasers are numbered 1 to 4 (LINE); power is in percent.

Examples: flamingo lasers set 2 10
          flamingo lasers on 2
          flamingo lasers level
          flamingo lasers off 2
          flamingo lasers off"
    )]
    Lasers {
        /// What to do with the lasers.
        #[command(subcommand)]
        action: LasersAction,
    },
    /// Set the LED colour and power, or switch it off (led green 40, led off)
    #[command(
        subcommand_value_name = "COLOUR",
        after_help = "\
JSON:     {\"led\":\"green\",\"percent\":P} or {\"led\":\"off\"}

Examples: flamingo led green 40
          flamingo led off"
    )]
    Led {
        /// The colour, or off.
        #[command(subcommand)]
        action: LedAction,
    },
    /// Show the filter wheel position, or turn it (filter 3)
    #[command(
        long_about = "Without POSITION, shows the filter wheel position and its filter (from the\n\
microscope's settings). With POSITION (1 to 8), turns the wheel there and reads\n\
the position back.",
        after_help = "\
JSON:     {\"filter\":N,\"description\":\"525/50\"|null}

Examples: flamingo filter
          flamingo filter 3"
    )]
    Filter {
        /// The position to turn to, 1 to 8
        #[arg(value_name = "POSITION", allow_negative_numbers = true, value_parser = |s: &str| parse_count("POSITION", s, 1, 8).map(|p| p as u8))]
        position: Option<u8>,
    },
    /// Show the camera exposure time, or set it (exposure 10ms)
    #[command(
        long_about = "Without TIME, shows the camera exposure time. With TIME, sets it and reads it\n\
back. TIME needs a unit: us (or µs), ms or s, for example 10ms, 9002us or 0.5s.",
        after_help = "\
JSON:     {\"exposure_us\":N}

Examples: flamingo exposure
          flamingo exposure 10ms"
    )]
    Exposure {
        /// The exposure time with its unit, for example 10ms (1 us to 60 s)
        #[arg(value_name = "TIME", value_parser = parse_exposure)]
        time: Option<u32>,
    },
    /// Home one stage axis (--axis z) or every axis (--yes)
    #[command(
        long_about = "Sends stage axes to their home positions (from the microscope's settings) and\n\
waits until they have stopped (at most 60 s). With --axis, only that axis\n\
moves. Homing every axis moves the whole stage at once, so it needs --yes to\n\
confirm. Ctrl-C while homing halts the stage.",
        after_help = "\
JSON:     {\"homed\":\"z\",\"position\":MM,\"elapsed_ms\":N} or
          {\"homed\":\"all\",\"x\":MM,\"y\":MM,\"z\":MM,\"r\":DEG,\"elapsed_ms\":N}

Examples: flamingo home --axis z
          flamingo home --yes"
    )]
    Home {
        /// Home only this axis
        #[arg(long, value_name = "x|y|z|r", value_parser = parse_axis)]
        axis: Option<Axis>,
        /// Confirm homing every axis at once
        #[arg(long, conflicts_with = "axis")]
        yes: bool,
    },
    /// Everything at once: state, position, camera, lasers, LED, filter, connection
    #[command(
        visible_alias = "info",
        long_about = "Shows in one call the system state, the stage position and soft limits, the\n\
camera (image size, pixel size, exposure), the laser powers, the LED and the\n\
filter wheel, and the connection (addresses, round trip). The LED cannot be\n\
read from the microscope: its colour and switch are those stored in the\n\
microscope's settings. A part the microscope does not answer is shown as\n\
unknown (null in JSON) with a warning.",
        after_help = "\
JSON:     {\"state\":...,\"code\":N,\"x\":MM,\"y\":MM,\"z\":MM,\"r\":DEG,
          \"width\":W,\"height\":H,\"pixel_um\":U,\"exposure_us\":N,
          \"laser1\":P,...,\"laser4\":P,\"led\":\"green\",\"led_on\":false,
          \"filter\":N,\"filter_description\":\"...\",\"microscope\":\"...\",
          \"soft_limits\":\"...\",\"addr\":\"...\",\"live_addr\":\"...\",
          \"round_trip_ms\":T}

Example:  flamingo status"
    )]
    Status,
    /// Show where the microscope address comes from, or save it (config save)
    #[command(
        long_about = "Shows the settings the tool uses (the microscope address and timeout) and\n\
where each comes from: --addr / --timeout, the environment variable\n\
FLAMINGO_ADDR, the config file, or the default. `config save` writes the\n\
address and timeout in use to the config file, so later commands need no\n\
--addr.\n\
\n\
The config file (FLAMINGO_CONFIG overrides its location):\n\
  Windows  %APPDATA%\\flamingo\\config.txt\n\
  macOS    ~/Library/Application Support/flamingo/config.txt\n\
  Linux    $XDG_CONFIG_HOME/flamingo/config.txt (~/.config/flamingo/config.txt)\n\
It holds `key = value` lines: addr = HOST:PORT, timeout = SECS; # starts a comment.",
        after_help = "\
JSON:     {\"config_file\":\"...\",\"exists\":true|false,\"addr\":\"...\",
          \"addr_from\":\"...\",\"timeout_s\":S,\"timeout_from\":\"...\"}
          (config save adds \"saved\":true)

Examples: flamingo config
          flamingo --addr 192.168.1.2:53717 config save"
    )]
    Config {
        /// `save`.
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// Set the system idle (clears an error state)
    #[command(
        long_about = "Asks the microscope to return to idle, which clears an error state, and waits\n\
until it reports idle. A running workflow keeps it busy: stop it first with\n\
`flamingo workflow stop`.",
        after_help = "JSON:     {\"state\":\"idle\"}"
    )]
    Idle,
    /// Print the microscope's events for a while (--for SECS)
    #[command(
        long_about = "Prints every event the microscope sends on its own (end of a stage move,\n\
workflow progress, images saved, laser levels...) for SECS seconds, one line\n\
per event. On a terminal, progress ticks are shown as one updating line (--all\n\
prints every one); with --json or when the output is not a terminal, every\n\
event is printed.",
        after_help = "\
JSON:     one object per event, with an \"event\" key:
          \"motion_stopped\" (\"axis\",\"position\",\"status\"), \"system_idle\",
          \"stack_complete\" (\"acquired\",\"expected\",\"errors\",\"duration_us\"),
          \"gauge_size\" (\"total\"), \"gauge_value\" (\"current\",\"total\"),
          \"images_saved\" (\"count\"), \"laser_level\" (\"laser\",\"level_percent\"),
          \"unknown\" (\"code\",\"name\"); every event also has \"elapsed_ms\"
          (since the watch started)."
    )]
    Watch {
        /// How long to watch, for example 10 or 0.5
        #[arg(long = "for", value_name = "SECS", allow_negative_numbers = true, value_parser = |s: &str| parse_secs("--for", s, true))]
        duration: Duration,
        /// Print every progress tick as its own line, also on a terminal
        #[arg(long)]
        all: bool,
    },
    /// Run the microscope simulator until interrupted ([--port P] [--fault NAME[=ARG]]...)
    #[command(
        long_about = "Runs the built-in microscope simulator on 127.0.0.1: commands on port P, live\n\
images on P+1. Prints `listening on 127.0.0.1:P` (with --json:\n\
{\"addr\":...,\"live_addr\":...}) and runs until interrupted (Ctrl-C). Connect to\n\
it from another window, for example with `flamingo --addr 127.0.0.1:P state`.\n\
Faults make it misbehave on purpose, to rehearse failures.",
        after_help = SIM_AFTER_HELP
    )]
    Sim(SimArgs),
    /// Run a full session against a built-in simulator
    #[command(
        long_about = "Starts the built-in simulator (512 x 512 camera) inside this program and runs\n\
a full session against it: system state, image size, stage position, a move\n\
with wait, a snapshot saved as TIFF in the temporary directory, two seconds of\n\
live view, a Z-stack workflow with a progress bar, and the events seen. Needs\n\
no microscope; --addr is ignored. Takes a few seconds."
    )]
    Demo,
    /// Record the traffic between a client and the microscope (--out FILE)
    #[command(long_about = cli_record_args::RECORD_ABOUT, after_help = cli_record_args::RECORD_AFTER_HELP)]
    Record(RecordArgs),
    /// Serve a recording as a simulated microscope (FILE)
    #[command(long_about = cli_record_args::REPLAY_ABOUT, after_help = cli_record_args::REPLAY_AFTER_HELP)]
    Replay(ReplayArgs),
    /// Report what a recording shows about the protocol's open questions (FILE)
    #[command(long_about = cli_record_args::FACTS_ABOUT, after_help = cli_record_args::FACTS_AFTER_HELP)]
    Facts(FactsArgs),
}

/// `workflow check FILE`, `workflow stop`.
#[derive(Subcommand, Clone, Debug, PartialEq)]
pub enum WorkflowAction {
    /// Check a workflow file without sending anything
    #[command(
        long_about = "Checks a workflow file without sending anything: its mistakes (with the line),\n\
then that every position it takes the stage to (start, end, angles, every\n\
tile) is within the stage's soft limits. The limits come from --settings (a\n\
saved ScopeSettings.txt, no microscope needed), else from the microscope at\n\
--addr if it answers; otherwise they are not checked (a warning says so).",
        after_help = "\
JSON:     {\"valid\":true,\"planes\":N,\"limits_checked\":true|false,\"soft_limits\":\"...\"}

Examples: flamingo workflow check ZStack.txt
          flamingo workflow check ZStack.txt --settings ScopeSettings.txt"
    )]
    Check {
        /// The workflow file
        #[arg(value_name = "FILE", value_parser = |s: &str| parse_path("FILE", s))]
        file: PathBuf,
        /// Take the soft limits from this saved settings file instead of the microscope
        #[arg(long, value_name = "SETTINGS", value_parser = |s: &str| parse_path("--settings", s))]
        settings: Option<PathBuf>,
    },
    /// Stop the running workflow and wait until the microscope is idle
    #[command(after_help = "JSON:     {\"workflow\":\"stopped\"}")]
    Stop,
}

/// `lasers off|on|set|level`.
#[derive(Subcommand, Clone, Debug, PartialEq)]
pub enum LasersAction {
    /// Switch every laser off, or only LINE's live-view output
    #[command(after_help = "JSON:     {\"lasers\":\"off\"} or {\"laser\":N,\"on\":false}")]
    Off {
        /// Only this laser, 1 to 4
        #[arg(value_name = "LINE", allow_negative_numbers = true, value_parser = parse_line)]
        line: Option<u8>,
    },
    /// Switch laser LINE on for live view
    #[command(after_help = "JSON:     {\"laser\":N,\"on\":true}")]
    On {
        /// The laser, 1 to 4
        #[arg(value_name = "LINE", allow_negative_numbers = true, value_parser = parse_line)]
        line: u8,
    },
    /// Set laser LINE's power in percent (lasers set 2 10)
    #[command(
        after_help = "JSON:     {\"laser\":N,\"percent\":P}   (P as the microscope reports it back)"
    )]
    Set {
        /// The laser, 1 to 4
        #[arg(value_name = "LINE", allow_negative_numbers = true, value_parser = parse_line)]
        line: u8,
        /// The power in percent, 0 to 100
        #[arg(value_name = "PERCENT", allow_negative_numbers = true, value_parser = |s: &str| parse_percent("PERCENT", s))]
        percent: f64,
    },
    /// Show the power of every laser, or of LINE
    #[command(
        after_help = "JSON:     {\"laser1\":P,\"laser2\":P,\"laser3\":P,\"laser4\":P} or {\"laser\":N,\"percent\":P}"
    )]
    Level {
        /// Only this laser, 1 to 4
        #[arg(value_name = "LINE", allow_negative_numbers = true, value_parser = parse_line)]
        line: Option<u8>,
    },
}

/// `led red|green|blue|white PERCENT`, `led off`.
#[derive(Subcommand, Clone, Debug, PartialEq)]
pub enum LedAction {
    /// Switch the LED on in red at PERCENT
    Red(LedPower),
    /// Switch the LED on in green at PERCENT
    Green(LedPower),
    /// Switch the LED on in blue at PERCENT
    Blue(LedPower),
    /// Switch the LED on in white at PERCENT
    White(LedPower),
    /// Switch the LED off
    Off,
}

/// The power of `led COLOUR PERCENT`.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct LedPower {
    /// The power in percent, 0 to 100
    #[arg(value_name = "PERCENT", allow_negative_numbers = true, value_parser = |s: &str| parse_percent("PERCENT", s))]
    pub percent: f64,
}

/// `config save`.
#[derive(Subcommand, Clone, Debug, PartialEq)]
pub enum ConfigAction {
    /// Write the address and timeout in use to the config file
    Save,
}

/// Options of `sim`.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct SimArgs {
    /// Command port; 0 picks a free pair of ports
    #[arg(long, value_name = "P", allow_negative_numbers = true, default_value_t = DEFAULT_SIM_PORT, value_parser = |s: &str| parse_count("--port", s, 0, 65534).map(|p| p as u16))]
    pub port: u16,
    /// Camera image size in pixels [default: 2048x2048]
    #[arg(long, value_name = "WxH", value_parser = parse_image_size)]
    pub image_size: Option<(u32, u32)>,
    /// Live view frame rate in frames per second, 0.1 to 1000 [default: 30]
    #[arg(long, value_name = "FPS", allow_negative_numbers = true, value_parser = parse_fps)]
    pub fps: Option<f64>,
    /// Workflow speed: milliseconds per plane [default: 1]
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = |s: &str| parse_ms("--plane-ms", s))]
    pub plane_ms: Option<Duration>,
    /// A fault to inject (repeatable); see the list below
    #[arg(long = "fault", value_name = "NAME[=ARG]", value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
}

const TOP_AFTER_HELP: &str = "\
Exit codes:
  0    success
  1    other error (for example a file that cannot be written)
  2    invalid argument or usage error (also: a move or a workflow outside the
       soft limits, a workflow file with mistakes, home of every axis without
       --yes)
  3    cannot connect to the microscope
  4    timed out waiting for the microscope
  5    disconnected (the connection was lost)
  6    device busy, or the device refused the command (also: still not idle
       after `idle`)
  7    a size exceeds a limit
  8    protocol error (the microscope sent something unexpected)
  130  interrupted by Ctrl-C (after undoing what the command started)
Errors are printed as one line on stderr, starting with \"error: \" (with --json:
one JSON object {\"error\":MESSAGE,\"exit_code\":N}).

Ctrl-C during a long command (move --wait, home, workflow --wait, live, watch,
snapshot) undoes on the microscope what the command started (halts the stage,
stops the workflow, stops live view), says so, and exits with 130; a second
Ctrl-C exits at once.

The microscope's address: --addr, else the environment variable FLAMINGO_ADDR,
else the config file (see `flamingo config --help`), else 127.0.0.1:53717.

Examples:
  flamingo demo
  flamingo --addr 192.168.1.2:53717 config save
  flamingo status
  flamingo position --json
  flamingo move --axis z --to 20.25 --wait
  flamingo lasers set 2 10
  flamingo snapshot --out snap.tif
  flamingo workflow ZStack.txt --wait
  flamingo halt
  flamingo help move";

const SIM_AFTER_HELP: &str = "\
Faults (--fault NAME[=ARG], repeatable; CODE is a command name such as
STAGE_POSITION_SET or a number such as 0x6005):
  delay=CODE:MS                 answer CODE this much later
  answer-late=CODE:MS           answer the next CODE request this much later (once)
  never-answer=CODE             never answer CODE (the command still acts)
  status=CODE:STATUS            answer CODE with this status (non-zero: refused)
  fragment-writes=N             split every message into writes of 1..=N bytes
  garbage-between=N             write 1..=N garbage bytes before every message
  close-after-messages=N        close the next connection after N messages (once)
  close-mid-message             cut the next reply in half and close (once)
  absurd-additional-len=CODE    answer CODE announcing 2 GB of data that never comes
  trickle-additional=BYTES:MS   send additional data BYTES at a time, MS apart
  bad-live-header               send one corrupt live frame header (once)
  flood=CODE:COUNT[:PER_SEC]    broadcast COUNT unsolicited CODE messages (once)
  stop-reading=MS               stop reading a connection for MS after its next message (once)
  error-state                   report the error state to SYSTEM_STATE_GET
  drop-events=CODE              never send unsolicited CODE events

Examples: flamingo sim --port 0
          flamingo sim --image-size 512x512 --fps 50 --plane-ms 20
          flamingo sim --fault never-answer=SYSTEM_STATE_GET --fault error-state";

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run a command.
    Run(Global, Command),
    /// Print this (help or version) text on stdout and exit 0; clap renders
    /// it, with colour only on a terminal.
    Help(clap::Error),
}

impl Parsed {
    /// The help or version text, without colour (for tests).
    pub fn help_text(&self) -> Option<String> {
        match self {
            Parsed::Help(e) => Some(e.render().to_string()),
            Parsed::Run(..) => None,
        }
    }
}

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
        Error::Io(io) if io.kind() == std::io::ErrorKind::Interrupted => EXIT_INTERRUPTED,
        _ => 1,
    }
}

/// The clap command (for help rendering and checks).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Parsed, Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args = help_after_command(args.into_iter().map(Into::into).collect());
    let argv = std::iter::once("flamingo".to_string()).chain(args.iter().cloned());
    let matches = command().try_get_matches_from(argv);
    let result = matches.and_then(|m| {
        let mut cli = Cli::from_arg_matches(&m)?;
        let given = |id: &str| {
            // Global options are recorded where they were typed: at the top
            // or in a (sub)command's matches.
            let mut m = Some(&m);
            while let Some(mm) = m {
                if mm.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                    return true;
                }
                m = mm.subcommand().map(|(_, sub)| sub);
            }
            false
        };
        if given("addr") {
            cli.global.addr_from = Source::CommandLine;
        }
        if given("timeout") {
            cli.global.timeout_from = Source::CommandLine;
        }
        Ok(cli)
    });
    match result {
        Ok(cli) => {
            if let Command::Snapshot { out, count } = &cli.command {
                check_image_extension(out)?;
                check_stack_extension(out, *count)?;
            }
            if let Command::Home {
                axis: None,
                yes: false,
            } = &cli.command
            {
                return Err(invalid(HOME_NEEDS_YES));
            }
            Ok(Parsed::Run(cli.global, cli.command))
        }
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Ok(Parsed::Help(e))
        }
        Err(e) => Err(usage_error(&e, &args)),
    }
}

/// `-h COMMAND...` / `--help COMMAND...` asks for the command's help: the
/// flag moves after the command words (clap would show the top-level help).
fn help_after_command(mut args: Vec<String>) -> Vec<String> {
    let is_help = |a: &String| a == "-h" || a == "--help";
    let Some(h) = args.iter().position(is_help) else {
        return args;
    };
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            return args;
        }
        if a == "--addr" || a == "--timeout" {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            if i > h && a != "help" {
                args.remove(h);
                args.push("--help".into());
            }
            return args;
        }
        i += 1;
    }
    args
}

/// The command named on the line (the first word that is not an option or
/// an option's value), for messages.
fn command_word(args: &[String]) -> Option<&str> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--addr" || a == "--timeout" {
            i += 1;
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

fn context_str(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(v) => v.first().map(|s| s.to_string()),
        ContextValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn context_all(e: &clap::Error, kind: ContextKind) -> Vec<String> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::StyledStrs(v)) => v.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// `--to <VALUE>` -> `--to`.
fn option_name(arg: &str) -> &str {
    arg.split([' ', '=']).next().unwrap_or(arg)
}

/// The commands of top-level command `cmd` (`lasers`: off, on, set,
/// level), if it has any.
fn subcommand_names(cmd: &str) -> Option<Vec<String>> {
    let c = command();
    let sub = c.find_subcommand(cmd)?;
    let names: Vec<String> = sub
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != "help")
        .collect();
    (!names.is_empty()).then_some(names)
}

/// "a, b or c".
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn command_names() -> Vec<String> {
    command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// Translates clap's error into the tool's wording.
fn usage_error(e: &clap::Error, args: &[String]) -> Error {
    let cmd = command_word(args).unwrap_or("flamingo");
    let see = if command_names().iter().any(|n| n == cmd) {
        format!("see `flamingo {cmd} --help`")
    } else {
        "see `flamingo --help`".to_string()
    };
    let arg = context_str(e, ContextKind::InvalidArg).unwrap_or_default();
    let did_you_mean = |kind: ContextKind, typed: &str| {
        // clap may offer several; the closest (fewest edits) are enough.
        let all = context_all(e, kind);
        let typed = typed.trim_start_matches('-');
        let best = all
            .iter()
            .map(|s| edit_distance(s.trim_start_matches('-'), typed))
            .min();
        let s: Vec<String> = all
            .iter()
            .filter(|s| Some(edit_distance(s.trim_start_matches('-'), typed)) == best)
            .cloned()
            .collect();
        if s.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", s.join(" or "))
        }
    };
    let what = match e.kind() {
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            if cmd == "flamingo" {
                "no command given (try `flamingo --help`, or `flamingo demo` for a tour)".into()
            } else {
                match subcommand_names(cmd) {
                    Some(subs) => format!("`{cmd}` needs a command: {} ({see})", or_list(&subs)),
                    None => format!("`{cmd}` needs a command ({see})"),
                }
            }
        }
        ErrorKind::InvalidSubcommand
            if subcommand_names(cmd).is_some()
                && context_str(e, ContextKind::InvalidSubcommand).as_deref() != Some(cmd) =>
        {
            // A mistake in a command's own command (`lasers of`).
            let bad = context_str(e, ContextKind::InvalidSubcommand).unwrap_or_default();
            let subs = subcommand_names(cmd).unwrap_or_default();
            format!(
                "unknown command {bad:?} for `{cmd}`{}; `{cmd}` has: {} ({see})",
                did_you_mean(ContextKind::SuggestedSubcommand, &bad),
                subs.join(", ")
            )
        }
        ErrorKind::InvalidSubcommand => {
            let bad = context_str(e, ContextKind::InvalidSubcommand).unwrap_or_default();
            format!(
                "unknown command {bad:?}{}; the commands are: {} (see `flamingo --help`)",
                did_you_mean(ContextKind::SuggestedSubcommand, &bad),
                command_names()
                    .into_iter()
                    .filter(|n| n != "help")
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        ErrorKind::MissingRequiredArgument => {
            let missing = context_all(e, ContextKind::InvalidArg);
            let names: Vec<&str> = missing.iter().map(|m| option_name(m)).collect();
            if names.contains(&"<FILE>") {
                format!("`{cmd}` needs a workflow FILE ({see})")
            } else {
                format!("`{cmd}` needs {} ({see})", names.join(" and "))
            }
        }
        ErrorKind::ArgumentConflict => {
            let prior = context_str(e, ContextKind::PriorArg).unwrap_or_default();
            if option_name(&prior) == option_name(&arg) {
                format!("option {} is given twice", option_name(&arg))
            } else {
                format!(
                    "give {} or {}, not both ({see})",
                    option_name(&prior),
                    option_name(&arg)
                )
            }
        }
        ErrorKind::UnknownArgument => {
            let bad = context_str(e, ContextKind::InvalidArg).unwrap_or_default();
            if bad.starts_with('-') {
                let hint = did_you_mean(ContextKind::SuggestedArg, &bad);
                let at = |word: &str| args.iter().position(|a| option_name(a) == word);
                let before_command = match (at(option_name(&bad)), at(cmd)) {
                    (Some(b), Some(c)) => b < c,
                    _ => cmd == "flamingo",
                };
                if before_command {
                    format!("unknown global option {bad:?}{hint} (see `flamingo --help`)")
                } else {
                    format!("unknown option {bad:?} for `{cmd}`{hint} ({see})")
                }
            } else if cmd == "flamingo" {
                format!("unknown command {bad:?} (see `flamingo --help`)")
            } else {
                format!("unexpected argument {bad:?} for `{cmd}` ({see})")
            }
        }
        ErrorKind::ValueValidation => {
            match std::error::Error::source(e).and_then(|s| s.downcast_ref::<Error>()) {
                Some(Error::InvalidArgument { what }) => what.clone(),
                _ => first_line(e),
            }
        }
        ErrorKind::InvalidValue => {
            let value = context_str(e, ContextKind::InvalidValue).unwrap_or_default();
            if value.is_empty() {
                format!("option {} needs a value", option_name(&arg))
            } else {
                first_line(e)
            }
        }
        ErrorKind::TooManyValues => {
            format!("option {} takes no value", option_name(&arg))
        }
        ErrorKind::NoEquals => format!("option {} needs a value", option_name(&arg)),
        _ => first_line(e),
    };
    Error::invalid(what)
}

/// clap's own message, first line, without its "error: " prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn invalid(what: impl Into<String>) -> Error {
    Error::invalid(what)
}

fn parse_axis(s: &str) -> Result<Axis, Error> {
    Ok(s.parse()?)
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

/// Milliseconds: a finite number from 0 to one day.
fn parse_ms(name: &str, s: &str) -> Result<Duration, Error> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_SECS * 1000.0).contains(&v) => {
            Ok(Duration::from_secs_f64(v / 1000.0))
        }
        _ => Err(invalid(format!(
            "{name} {s:?} is not a number of milliseconds from 0 to {}",
            MAX_SECS * 1000.0
        ))),
    }
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

/// A laser line, 1 to 4.
fn parse_line(s: &str) -> Result<u8, Error> {
    match s.trim().parse::<u8>() {
        Ok(v) if (1..=4).contains(&v) => Ok(v),
        _ => Err(invalid(format!(
            "laser {s:?} is not one of the lasers 1, 2, 3 or 4"
        ))),
    }
}

/// A power in percent, 0 to 100.
pub fn parse_percent(name: &str, s: &str) -> Result<f64, Error> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(invalid(format!(
            "{name} {s:?} is not a power from 0 to 100 percent"
        ))),
    }
}

/// The most `exposure` accepts: 60 s, in µs.
pub const MAX_EXPOSURE_US: u32 = 60_000_000;

/// An exposure time with its unit (`10ms`, `9002us`, `9002µs`, `0.5s`), in
/// whole microseconds from 1 to [`MAX_EXPOSURE_US`].
pub fn parse_exposure(s: &str) -> Result<u32, Error> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "us" | "µs" | "μs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "" => {
            return Err(invalid(format!(
                "exposure {s:?} has no unit: write for example {t}ms or {t}us"
            )))
        }
        other => {
            return Err(invalid(format!(
                "exposure {s:?} has an unknown unit {other:?}: use us, ms or s (for example 10ms)"
            )))
        }
    };
    let us = number.parse::<f64>().ok().map(|v| (v * scale).round());
    match us {
        Some(us) if (1.0..=f64::from(MAX_EXPOSURE_US)).contains(&us) => Ok(us as u32),
        _ => Err(invalid(format!(
            "exposure {s:?} is not a time from 1us to 60s (for example 10ms)"
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

fn parse_image_path(s: &str) -> Result<PathBuf, Error> {
    let p = parse_path("--out", s)?;
    check_image_extension(&p)?;
    Ok(p)
}

fn parse_image_size(s: &str) -> Result<(u32, u32), Error> {
    let bad = || {
        invalid(format!(
            "--image-size {s:?} is not WIDTHxHEIGHT with each from 1 to 8192, for example 512x512"
        ))
    };
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=8192).contains(v))
    };
    Ok((side(w).ok_or_else(bad)?, side(h).ok_or_else(bad)?))
}

fn parse_fps(s: &str) -> Result<f64, Error> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.1..=1000.0).contains(&v) => Ok(v),
        _ => Err(invalid(format!(
            "--fps {s:?} is not a frame rate from 0.1 to 1000"
        ))),
    }
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

/// A stack of several images is only possible in a TIFF file.
pub fn check_stack_extension(path: &std::path::Path, count: u32) -> Result<(), Error> {
    let tiff = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
    if count > 1 && !tiff {
        return Err(Error::invalid(format!(
            "--count {count} saves a multi-page stack, which needs a .tif file, not {}",
            path.display()
        )));
    }
    Ok(())
}

// ------------------------------------------------------------ sim faults

/// One `--fault NAME[=ARG]` of `sim`: a [`Faults`] field and its value.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultSpec {
    /// `delay=CODE:MS`
    Delay(CommandCode, Duration),
    /// `answer-late=CODE:MS`
    AnswerLate(CommandCode, Duration),
    /// `never-answer=CODE`
    NeverAnswer(CommandCode),
    /// `status=CODE:STATUS`
    Status(CommandCode, u32),
    /// `fragment-writes=N`
    FragmentWrites(usize),
    /// `garbage-between=N`
    GarbageBetween(usize),
    /// `close-after-messages=N`
    CloseAfterMessages(u64),
    /// `close-mid-message`
    CloseMidMessage,
    /// `absurd-additional-len=CODE`
    AbsurdAdditionalLen(CommandCode),
    /// `trickle-additional=BYTES:MS`
    TrickleAdditional(usize, Duration),
    /// `bad-live-header`
    BadLiveHeader,
    /// `flood=CODE:COUNT[:PER_SEC]`
    Flood(CommandCode, u64, u32),
    /// `stop-reading=MS`
    StopReading(Duration),
    /// `error-state`
    ErrorState,
    /// `drop-events=CODE`
    DropEvents(CommandCode),
}

/// The fault names, as typed.
pub const FAULT_NAMES: &[&str] = &[
    "delay",
    "answer-late",
    "never-answer",
    "status",
    "fragment-writes",
    "garbage-between",
    "close-after-messages",
    "close-mid-message",
    "absurd-additional-len",
    "trickle-additional",
    "bad-live-header",
    "flood",
    "stop-reading",
    "error-state",
    "drop-events",
];

impl FaultSpec {
    /// Sets this fault in `f`.
    pub fn apply(&self, f: &mut Faults) {
        match *self {
            FaultSpec::Delay(c, d) => {
                f.delay.insert(c, d);
            }
            FaultSpec::AnswerLate(c, d) => f.answer_late = Some((c, d)),
            FaultSpec::NeverAnswer(c) => {
                f.never_answer.insert(c);
            }
            FaultSpec::Status(c, s) => {
                f.status_override.insert(c, s);
            }
            FaultSpec::FragmentWrites(n) => f.fragment_writes = Some(n),
            FaultSpec::GarbageBetween(n) => f.garbage_between = Some(n),
            FaultSpec::CloseAfterMessages(n) => f.close_after_messages = Some(n),
            FaultSpec::CloseMidMessage => f.close_mid_message = true,
            FaultSpec::AbsurdAdditionalLen(c) => f.absurd_additional_len = Some(c),
            FaultSpec::TrickleAdditional(n, d) => f.trickle_additional = Some((n, d)),
            FaultSpec::BadLiveHeader => f.bad_live_header = true,
            FaultSpec::Flood(c, n, r) => f.flood = Some((c, n, r)),
            FaultSpec::StopReading(d) => f.stop_reading = Some(d),
            FaultSpec::ErrorState => f.error_state = true,
            FaultSpec::DropEvents(c) => {
                f.drop_events.insert(c);
            }
        }
    }
}

/// A command code by name (`STAGE_HALT`, any case) or number (`24581`, `0x6005`).
pub fn parse_code(s: &str) -> Result<CommandCode, Error> {
    let t = s.trim();
    if let Some(c) = CommandCode::from_name(&t.to_ascii_uppercase()) {
        return Ok(c);
    }
    let n = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse::<u32>().ok(),
    };
    n.map(CommandCode).ok_or_else(|| {
        invalid(format!(
            "{s:?} is not a command name (such as STAGE_POSITION_SET) or number (such as 0x6005)"
        ))
    })
}

fn parse_fault(s: &str) -> Result<FaultSpec, Error> {
    let (name, arg) = match s.split_once('=') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (s.trim(), None),
    };
    let usage = |form: &str| invalid(format!("--fault {s:?}: write it as {form}"));
    let need = |form: &str| arg.filter(|a| !a.is_empty()).ok_or_else(|| usage(form));
    let none = |spec: FaultSpec| match arg {
        Some(_) => Err(usage(name)),
        None => Ok(spec),
    };
    let two = |form: &str| -> Result<(&str, &str), Error> {
        need(form)?.split_once(':').ok_or_else(|| usage(form))
    };
    let ms = |v: &str, form: &str| parse_ms("--fault", v).map_err(|_| usage(form));
    let num = |v: &str, form: &str, min: u64| {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|&n| n >= min)
            .ok_or_else(|| usage(form))
    };
    Ok(match name {
        "delay" | "answer-late" => {
            let form = format!("{name}=CODE:MS");
            let (c, d) = two(&form)?;
            let (c, d) = (parse_code(c)?, ms(d, &form)?);
            if name == "delay" {
                FaultSpec::Delay(c, d)
            } else {
                FaultSpec::AnswerLate(c, d)
            }
        }
        "never-answer" => FaultSpec::NeverAnswer(parse_code(need("never-answer=CODE")?)?),
        "status" => {
            let form = "status=CODE:STATUS";
            let (c, st) = two(form)?;
            FaultSpec::Status(parse_code(c)?, num(st, form, 0)? as u32)
        }
        "fragment-writes" => {
            let form = "fragment-writes=N (N at least 1)";
            FaultSpec::FragmentWrites(num(need(form)?, form, 1)? as usize)
        }
        "garbage-between" => {
            let form = "garbage-between=N (N at least 1)";
            FaultSpec::GarbageBetween(num(need(form)?, form, 1)? as usize)
        }
        "close-after-messages" => {
            let form = "close-after-messages=N";
            FaultSpec::CloseAfterMessages(num(need(form)?, form, 0)?)
        }
        "close-mid-message" => none(FaultSpec::CloseMidMessage)?,
        "absurd-additional-len" => {
            FaultSpec::AbsurdAdditionalLen(parse_code(need("absurd-additional-len=CODE")?)?)
        }
        "trickle-additional" => {
            let form = "trickle-additional=BYTES:MS";
            let (n, d) = two(form)?;
            FaultSpec::TrickleAdditional(num(n, form, 1)? as usize, ms(d, form)?)
        }
        "bad-live-header" => none(FaultSpec::BadLiveHeader)?,
        "flood" => {
            let form = "flood=CODE:COUNT[:PER_SEC]";
            let mut parts = need(form)?.split(':');
            let c = parse_code(parts.next().unwrap_or(""))?;
            let n = num(parts.next().ok_or_else(|| usage(form))?, form, 1)?;
            let r = match parts.next() {
                Some(r) => num(r, form, 0)? as u32,
                None => 0,
            };
            if parts.next().is_some() {
                return Err(usage(form));
            }
            FaultSpec::Flood(c, n, r)
        }
        "stop-reading" => FaultSpec::StopReading(ms(need("stop-reading=MS")?, "stop-reading=MS")?),
        "error-state" => none(FaultSpec::ErrorState)?,
        "drop-events" => FaultSpec::DropEvents(parse_code(need("drop-events=CODE")?)?),
        other => {
            let close: Vec<&str> = FAULT_NAMES
                .iter()
                .copied()
                .filter(|n| similar(n, other))
                .collect();
            let hint = if close.is_empty() {
                String::new()
            } else {
                format!(" (did you mean {}?)", close.join(" or "))
            };
            return Err(invalid(format!(
                "unknown fault {other:?}{hint}; the faults are: {} (see `flamingo sim --help`)",
                FAULT_NAMES.join(", ")
            )));
        }
    })
}

/// A typo away: edit distance at most 2, or one contains the other.
fn similar(a: &str, b: &str) -> bool {
    (b.len() >= 3 && (a.contains(b) || b.contains(a))) || edit_distance(a, b) <= 2
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(Global, Command), Error> {
        match parse(args.iter().copied())? {
            Parsed::Run(g, c) => Ok((g, c)),
            Parsed::Help(h) => panic!("unexpected help: {}", h.render()),
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

    fn help(args: &[&str]) -> String {
        parse(args.iter().copied())
            .unwrap()
            .help_text()
            .unwrap_or_else(|| panic!("no help for {args:?}"))
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
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
        // After the command too.
        let (g, c) = run(&["state", "--json", "--addr", "10.0.0.2:6000", "-v"]).unwrap();
        assert!(g.json);
        assert_eq!(g.addr, "10.0.0.2:6000");
        assert_eq!(g.verbose, 1);
        assert_eq!(c, Command::State);
        let (g, _) = run(&["workflow", "stop", "--timeout", "1"]).unwrap();
        assert_eq!(g.timeout, Duration::from_secs(1));
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
                action: None,
                file: Some("ZStack.txt".into()),
                wait: true
            }
        );
        assert_eq!(
            run(&["workflow", "--", "-odd name.txt"]).unwrap().1,
            Command::Workflow {
                action: None,
                file: Some("-odd name.txt".into()),
                wait: false
            }
        );
        assert_eq!(
            run(&["workflow", "check", "a.txt"]).unwrap().1,
            Command::Workflow {
                action: Some(WorkflowAction::Check {
                    file: "a.txt".into(),
                    settings: None
                }),
                file: None,
                wait: false
            }
        );
        assert_eq!(
            run(&["workflow", "stop"]).unwrap().1,
            Command::Workflow {
                action: Some(WorkflowAction::Stop),
                file: None,
                wait: false
            }
        );
        assert_eq!(
            run(&["snapshot", "--out", "a.TIF"]).unwrap().1,
            Command::Snapshot {
                out: "a.TIF".into(),
                count: 1
            }
        );
        assert_eq!(
            run(&["live", "--frames", "5"]).unwrap().1,
            Command::Live {
                frames: Some(5),
                duration: None
            }
        );
        assert_eq!(
            run(&["live", "--for", "2.5"]).unwrap().1,
            Command::Live {
                frames: None,
                duration: Some(Duration::from_millis(2500))
            }
        );
        assert_eq!(
            run(&["watch", "--for", "0"]).unwrap().1,
            Command::Watch {
                duration: Duration::ZERO,
                all: false
            }
        );
        assert_eq!(run(&["halt"]).unwrap().1, Command::Halt { axis: None });
        assert_eq!(
            run(&["halt", "--axis", "z"]).unwrap().1,
            Command::Halt {
                axis: Some(Axis::Z)
            }
        );
        assert_eq!(
            run(&["lasers", "off"]).unwrap().1,
            Command::Lasers {
                action: LasersAction::Off { line: None }
            }
        );
        assert_eq!(run(&["idle"]).unwrap().1, Command::Idle);
        assert_eq!(
            run(&["lasers", "set", "2", "10.5"]).unwrap().1,
            Command::Lasers {
                action: LasersAction::Set {
                    line: 2,
                    percent: 10.5
                }
            }
        );
        assert_eq!(
            run(&["lasers", "level"]).unwrap().1,
            Command::Lasers {
                action: LasersAction::Level { line: None }
            }
        );
        assert_eq!(
            run(&["led", "white", "5"]).unwrap().1,
            Command::Led {
                action: LedAction::White(LedPower { percent: 5.0 })
            }
        );
        assert_eq!(
            run(&["filter", "8"]).unwrap().1,
            Command::Filter { position: Some(8) }
        );
        assert_eq!(
            run(&["exposure", "9002us"]).unwrap().1,
            Command::Exposure { time: Some(9002) }
        );
        assert_eq!(
            run(&["exposure", "0.5s"]).unwrap().1,
            Command::Exposure {
                time: Some(500_000)
            }
        );
        assert_eq!(
            run(&["home", "--axis", "z"]).unwrap().1,
            Command::Home {
                axis: Some(Axis::Z),
                yes: false
            }
        );
        assert_eq!(run(&["info"]).unwrap().1, Command::Status);
        assert_eq!(
            run(&["config", "save"]).unwrap().1,
            Command::Config {
                action: Some(ConfigAction::Save)
            }
        );
        // Where the address came from.
        let (g, _) = run(&["state"]).unwrap();
        assert_eq!(g.addr_from, Source::Default);
        let (g, _) = run(&["state", "--addr", "10.0.0.2:6000"]).unwrap();
        assert_eq!(g.addr_from, Source::CommandLine);
        assert_eq!(g.timeout_from, Source::Default);
        let (g, _) = run(&["--timeout", "1", "lasers", "off"]).unwrap();
        assert_eq!(g.timeout_from, Source::CommandLine);
        let Command::Sim(s) = run(&["sim"]).unwrap().1 else {
            panic!()
        };
        assert_eq!(s.port, 53717);
        assert!(s.faults.is_empty() && s.image_size.is_none());
        let Command::Sim(s) = run(&[
            "sim",
            "--port",
            "0",
            "--image-size",
            "64x48",
            "--fps",
            "50",
            "--plane-ms",
            "2.5",
            "--fault",
            "never-answer=system_state_get",
            "--fault",
            "status=stage_position_set:2",
            "--fault=error-state",
        ])
        .unwrap()
        .1
        else {
            panic!()
        };
        assert_eq!(s.port, 0);
        assert_eq!(s.image_size, Some((64, 48)));
        assert_eq!(s.fps, Some(50.0));
        assert_eq!(s.plane_ms, Some(Duration::from_micros(2500)));
        let mut f = Faults::default();
        for spec in &s.faults {
            spec.apply(&mut f);
        }
        assert!(f.never_answer.contains(&CommandCode::SYSTEM_STATE_GET));
        assert_eq!(
            f.status_override.get(&CommandCode::STAGE_POSITION_SET),
            Some(&2)
        );
        assert!(f.error_state);
        assert_eq!(run(&["demo"]).unwrap().1, Command::Demo);
        assert_eq!(
            run(&["settings", "--out", "s.txt"]).unwrap().1,
            Command::Settings {
                out: "s.txt".into()
            }
        );
    }

    #[test]
    fn every_fault_kind_parses() {
        for (arg, check) in [
            ("delay=STAGE_HALT:250", "delay"),
            ("answer-late=0x6005:10", "answer_late"),
            ("fragment-writes=7", "fragment_writes"),
            ("garbage-between=3", "garbage_between"),
            ("close-after-messages=0", "close_after_messages"),
            ("close-mid-message", "close_mid_message"),
            ("absurd-additional-len=COMMON_SCOPE_SETTINGS_LOAD", "absurd"),
            ("trickle-additional=16:5", "trickle"),
            ("bad-live-header", "bad_live_header"),
            ("flood=0x9004:100:1000", "flood"),
            ("flood=0x9004:100", "flood"),
            ("stop-reading=500", "stop_reading"),
            ("drop-events=SYSTEM_STATE_IDLE", "drop_events"),
        ] {
            let spec = parse_fault(arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
            let mut f = Faults::default();
            spec.apply(&mut f);
            assert!(f.is_active(), "{arg} ({check}) set nothing");
        }
        for bad in [
            "nope",
            "delay",
            "delay=STAGE_HALT",
            "delay=NOT_A_CODE:5",
            "fragment-writes=0",
            "error-state=1",
            "flood=0x9004",
        ] {
            assert!(parse_fault(bad).is_err(), "{bad}");
        }
        let e = parse_fault("eror-state").unwrap_err().to_string();
        assert!(e.contains("did you mean error-state?"), "{e}");
    }

    #[test]
    fn help_everywhere() {
        for args in [&["--help"][..], &["-h"], &["help"], &["--json", "--help"]] {
            let h = help(args);
            assert!(h.contains("Exit codes"), "{args:?}: {h}");
        }
        for c in command().get_subcommands() {
            let name = c.get_name();
            if name == "help" {
                continue;
            }
            for args in [vec![name, "--help"], vec!["help", name], vec![name, "-h"]] {
                let h = help(&args);
                assert!(h.contains("Usage: flamingo"), "{h}");
                assert!(h.contains(&format!(" {name}")), "{h}");
            }
        }
        assert!(help(&["-h", "move"]).contains("Usage: flamingo move"));
        assert!(help(&["--json", "--help", "lasers", "set"]).contains("Usage: flamingo lasers set"));
        let h = help(&["help", "workflow", "check"]);
        assert!(h.contains("without sending"), "{h}");
        // Help wins over missing required options.
        assert!(help(&["move", "--to", "1", "--help"]).contains("--axis"));
        let v = help(&["--version"]);
        assert!(v.starts_with("flamingo "), "{v}");
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(err(&[]).contains("no command"));
        let stat = err(&["stat"]);
        assert!(stat.contains("unknown command \"stat\""), "{stat}");
        assert!(stat.contains("did you mean state?"), "{stat}");
        assert!(err(&["--bogus", "state"]).contains("unknown global option"));
        let w = err(&["move", "--axis", "x", "--to", "1", "--wiat"]);
        assert!(
            w.contains("unknown option \"--wiat\" for `move` (did you mean --wait?)"),
            "{w}"
        );
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
        assert!(err(&["live"]).contains("needs --frames"));
        assert!(err(&["live", "--frames", "3", "--for", "1"]).contains("not both"));
        assert!(err(&["snapshot", "--out", "a.jpg"]).contains(".png"));
        assert!(err(&["snapshot"]).contains("needs --out"));
        assert!(err(&["workflow"]).contains("FILE"));
        assert!(err(&["workflow", "check"]).contains("FILE"));
        assert!(err(&["lasers"]).contains("needs a command: off, on, set or level"));
        assert!(err(&["lasers", "foo"]).contains("`lasers` has: off, on, set, level"));
        assert!(err(&["home"]).contains("add --yes"));
        assert!(err(&["exposure", "5"]).contains("no unit"));
        assert!(err(&["lasers", "on"]).contains("LINE"));
        assert!(err(&["sim", "--port", "65535"]).contains("--port"));
        assert!(err(&["sim", "--image-size", "0x5"]).contains("--image-size"));
        assert!(err(&["sim", "--fault", "nope"]).contains("unknown fault"));
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
        let code = CommandCode::STAGE_POSITION_SET;
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
        let int = Error::Io(io::Error::new(io::ErrorKind::Interrupted, "x"));
        assert_eq!(exit_code(&int), 130);
    }
}
