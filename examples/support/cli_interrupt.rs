//! Ctrl-C for the `flamingo` tool. The handler only counts presses and
//! wakes whoever waits on [`receiver`]: a long command notices, undoes on
//! the instrument what it started (halts the stage, stops the workflow or
//! live view) with a short deadline, says so and exits with 130. A press
//! while no long command runs, or a second press, exits at once.
//!
//! Include it with `#[path = "support/cli_interrupt.rs"] mod cli_interrupt;`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
/// How long undoing may take before the tool gives up and exits.
pub const UNDO_DEADLINE: Duration = Duration::from_secs(3);

static PRESSES: AtomicU32 = AtomicU32::new(0);
static GUARDED: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);
static CHANNEL: OnceLock<(Sender<()>, Receiver<()>)> = OnceLock::new();

fn channel() -> &'static (Sender<()>, Receiver<()>) {
    CHANNEL.get_or_init(|| crossbeam_channel::bounded(1))
}

/// Installs the handler (once; later calls do nothing).
pub fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let _ = channel();
        let r = ctrlc::set_handler(|| {
            let n = PRESSES.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= 2 || !GUARDED.load(Ordering::SeqCst) {
                // Nothing to undo, or the user insists: leave now.
                if JSON.load(Ordering::SeqCst) {
                    eprintln!("{{\"error\":\"interrupted\",\"exit_code\":{EXIT_INTERRUPTED}}}");
                } else {
                    eprintln!("\ninterrupted");
                }
                std::process::exit(EXIT_INTERRUPTED);
            }
            let _ = channel().0.try_send(());
        });
        if let Err(e) = r {
            log::warn!("cannot install the Ctrl-C handler: {e}");
        }
    });
}

/// With `--json`, the message of an immediate exit is a JSON object.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::SeqCst);
}

/// True once Ctrl-C was pressed during a guarded command.
pub fn interrupted() -> bool {
    PRESSES.load(Ordering::SeqCst) > 0
}

/// Receives one message per (first) Ctrl-C, for `select!`.
pub fn receiver() -> Receiver<()> {
    channel().1.clone()
}

/// While it lives, the first Ctrl-C is left to the command to handle
/// (instead of exiting at once).
pub struct Guard(());

impl Guard {
    /// Starts handling Ctrl-C in the command.
    pub fn new() -> Guard {
        install();
        GUARDED.store(true, Ordering::SeqCst);
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        GUARDED.store(false, Ordering::SeqCst);
    }
}

/// The error a command returns after undoing: exit code 130, and the text
/// says what was undone (printed as "interrupted: ...").
pub fn error(undone: &str) -> flamingo_client::Error {
    flamingo_client::Error::Io(std::io::Error::new(
        std::io::ErrorKind::Interrupted,
        undone.to_string(),
    ))
}

/// The "what was undone" text of an error made by [`error`].
pub fn undone(e: &flamingo_client::Error) -> Option<String> {
    match e {
        flamingo_client::Error::Io(io) if io.kind() == std::io::ErrorKind::Interrupted => {
            Some(io.to_string())
        }
        _ => None,
    }
}
