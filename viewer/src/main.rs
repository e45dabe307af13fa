//! flamingo-viewer: a desktop GUI for the Flamingo light-sheet microscope,
//! built on flamingo-client and egui/eframe: live view with contrast,
//! histogram, zoom and a scale bar; snapshots and Z series saved as
//! calibrated TIFF; the stage with saved positions, keyboard jogging and
//! confirmations; lasers, LED, exposure, filter wheel as the instrument
//! reports them; workflows from a file or the z-stack editor.
//!
//! The UI thread never blocks on the instrument: every operation goes out
//! through a facade's `submit_*` form and its `Op` is polled once per frame;
//! events come from a subscription drained with `try_recv`; what can only be
//! done blocking (connecting, opening the live port, acquisitions, files,
//! closing) runs on worker threads, and display conversion on its own.
//! Every library call made on the UI thread is timed (the developer panels
//! show it).
//!
//! Layout: `app` (the state and the frame), `actions` (what buttons do),
//! `poll` (what comes in each frame), `panels/` (one file per panel),
//! `live` (live view and acquisitions), `display` (contrast, histogram),
//! `config` (saved positions, preferences), `file_picker`, `session`,
//! `selftest` and `check` (the windowed test), `pointer` (test input),
//! `ui_tests` (the headless tests that click).
//!
//! ```text
//! flamingo-viewer                         # empty window: type an address or start the simulator
//! flamingo-viewer --sim                   # start the embedded simulator and connect to it
//! flamingo-viewer --connect 10.0.0.2:53717
//! flamingo-viewer --self-test --faults --screenshot out.png   # the windowed test (see ci.sh)
//! flamingo-viewer --check-screenshot out.png                  # checks what the self-test saved
//! ```

mod actions;
mod app;
mod check;
mod config;
mod display;
mod file_picker;
mod live;
mod model;
mod panels;
mod pointer;
mod poll;
mod selftest;
mod session;
mod timing;
#[cfg(test)]
mod ui_tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// The exit code the self-test leaves for `main` (the window closes first).
pub static EXIT_CODE: AtomicU8 = AtomicU8::new(0);

/// Command-line options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Connect to this address at start.
    pub connect: Option<String>,
    /// Start the embedded simulator at start and connect to it.
    pub sim: bool,
    /// Run the scripted self-test and exit.
    pub self_test: bool,
    /// Inject simulator faults during the self-test.
    pub faults: bool,
    /// Where the self-test saves its screenshot.
    pub screenshot: Option<PathBuf>,
    /// The self-test's overall limit.
    pub time_limit: Duration,
    /// A workflow file loaded at start.
    pub workflow: Option<PathBuf>,
    /// Show the developer panels at start.
    pub developer: bool,
    /// Where saved positions and preferences are kept (instead of the
    /// user's configuration directory).
    pub config_dir: Option<PathBuf>,
}

const USAGE: &str =
    "usage: flamingo-viewer [--sim | --connect HOST:PORT] [--workflow FILE] [--developer] [--config-dir DIR]
       flamingo-viewer --self-test [--faults] [--screenshot OUT.png] [--time-limit SECONDS]
       flamingo-viewer --check-screenshot OUT.png";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Options {
        time_limit: Duration::from_secs(60),
        ..Options::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| match it.next() {
            Some(v) => Ok(v.clone()),
            None => Err(format!("{name} needs a value")),
        };
        let r: Result<(), String> = match a.as_str() {
            "--sim" => {
                opts.sim = true;
                Ok(())
            }
            "--connect" => value(a).map(|v| opts.connect = Some(v)),
            "--self-test" => {
                opts.self_test = true;
                Ok(())
            }
            "--faults" => {
                opts.faults = true;
                Ok(())
            }
            "--screenshot" => value(a).map(|v| opts.screenshot = Some(v.into())),
            "--workflow" => value(a).map(|v| opts.workflow = Some(v.into())),
            "--config-dir" => value(a).map(|v| opts.config_dir = Some(v.into())),
            "--developer" => {
                opts.developer = true;
                Ok(())
            }
            "--time-limit" => value(a).and_then(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(|s| opts.time_limit = Duration::from_secs_f64(s))
                    .ok_or_else(|| format!("--time-limit: {v} is not a number of seconds"))
            }),
            "--check-screenshot" => {
                return match value(a) {
                    Ok(path) => check::run(&PathBuf::from(path)),
                    Err(e) => {
                        eprintln!("{e}\n{USAGE}");
                        ExitCode::from(2)
                    }
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if opts.self_test {
        opts.sim = true;
        // The test's saved positions and preferences stay with its output,
        // not in the user's configuration.
        if opts.config_dir.is_none() {
            let dir = opts
                .screenshot
                .as_deref()
                .and_then(std::path::Path::parent)
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
            opts.config_dir = Some(dir.join("selftest-config"));
        }
        // The self-test must end even if the window never draws (no display,
        // a broken GL driver): a watchdog ends the process at the limit.
        let limit = opts.time_limit + Duration::from_secs(15);
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "viewer self-test: FAILED: no result after {} s (did the window ever draw?)",
                limit.as_secs()
            );
            std::process::exit(3);
        });
    }
    let native = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("Flamingo Viewer")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 600.0]),
        // Repaints are driven by input, by the library's wake-ups and by
        // operations in flight, not by a fixed loop.
        vsync: true,
        ..Default::default()
    };
    let result = eframe::run_native(
        "Flamingo Viewer",
        native,
        Box::new(move |cc| Ok(Box::new(app::Viewer::new(cc, opts)))),
    );
    if let Err(e) = result {
        eprintln!("flamingo-viewer: cannot open the window: {e}");
        return ExitCode::from(4);
    }
    ExitCode::from(EXIT_CODE.load(Ordering::SeqCst))
}
