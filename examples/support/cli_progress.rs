//! A one-line progress bar on stderr, `[#####.....] 40/100`, for workflow
//! progress. On a terminal it is redrawn in place (at most 20 times a
//! second); when stderr is redirected (a log file, CI) only the final state
//! is printed, once, so logs do not fill with carriage returns.
//!
//! Include it with `#[path = "support/cli_progress.rs"] mod cli_progress;`.
#![allow(dead_code)]

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Bar width in characters, between the brackets.
pub const BAR_WIDTH: usize = 30;
const REDRAW_EVERY: Duration = Duration::from_millis(50);

/// Renders `[#####.....] current/total` (just `current` when the total is
/// unknown, i.e. not positive). `current` is clamped to `0..=total` for the bar.
pub fn render(label: &str, current: i64, total: i64, width: usize) -> String {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label} ")
    };
    if total <= 0 {
        return format!("{label}[{}] {current}", "?".repeat(width));
    }
    let done = current.clamp(0, total) as u128 * width as u128 / total as u128;
    let done = done as usize;
    format!(
        "{label}[{}{}] {current}/{total}",
        "#".repeat(done),
        ".".repeat(width - done)
    )
}

/// A progress bar on stderr.
pub struct Progress {
    label: String,
    current: i64,
    total: i64,
    tty: bool,
    last_draw: Option<Instant>,
    last_len: usize,
    finished: bool,
}

impl Progress {
    /// A bar with a label (for example the workflow file name). Draws nothing yet.
    pub fn new(label: impl Into<String>) -> Progress {
        Progress {
            label: label.into(),
            current: 0,
            total: 0,
            tty: std::io::stderr().is_terminal(),
            last_draw: None,
            last_len: 0,
            finished: false,
        }
    }

    /// The progress maximum (from `UI_SET_GAUGE_SIZE`).
    pub fn set_total(&mut self, total: i64) {
        self.total = total;
        self.draw(false);
    }

    /// Progress (from `UI_SET_GAUGE_VALUE`); a positive `total` replaces the maximum.
    pub fn set(&mut self, current: i64, total: i64) {
        self.current = current;
        if total > 0 {
            self.total = total;
        }
        self.draw(false);
    }

    /// The current value.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The maximum (0 if not known yet).
    pub fn total(&self) -> i64 {
        self.total
    }

    fn draw(&mut self, force: bool) {
        if !self.tty || self.finished {
            return;
        }
        let now = Instant::now();
        if !force && self.last_draw.is_some_and(|t| now - t < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(now);
        let line = render(&self.label, self.current, self.total, BAR_WIDTH);
        let pad = self.last_len.saturating_sub(line.len());
        self.last_len = line.len();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        let _ = err.flush();
    }

    /// Draws the final state and ends the line. Idempotent; also done on drop.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        if self.tty {
            self.draw(true);
            eprintln!();
        } else {
            eprintln!(
                "{}",
                render(&self.label, self.current, self.total, BAR_WIDTH)
            );
        }
        self.finished = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error path: end the line so the error message starts on its own line.
        if !self.finished && self.tty && self.last_draw.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bars() {
        assert_eq!(render("", 40, 100, 10), "[####......] 40/100");
        assert_eq!(render("z", 0, 5, 5), "z [.....] 0/5");
        assert_eq!(render("", 7, 5, 5), "[#####] 7/5");
        assert_eq!(render("", -1, 5, 5), "[.....] -1/5");
        assert_eq!(render("", 3, 0, 4), "[????] 3");
        assert_eq!(
            render("", i64::MAX, i64::MAX, 4),
            "[####] 9223372036854775807/9223372036854775807"
        );
    }
}
