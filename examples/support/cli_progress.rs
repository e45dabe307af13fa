//! A one-line progress bar on stderr, `[#####.....] 40/100  ETA 12 s`, for
//! workflow progress, and a one-line status ([`StatusLine`]) for other long
//! work. On a terminal they are redrawn in place (at most 20 times a
//! second); when stderr is redirected (a log file, CI) the bar prints only
//! its final state, once, and the status line prints nothing, so logs do
//! not fill with carriage returns.
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
    /// When the first progress value arrived, and that value: the rate is
    /// measured from there (the start-up before it does not count).
    first: Option<(Instant, i64)>,
}

/// The time left at the rate seen so far: from `(t0, v0)` to `(now, current)`.
pub fn eta(first: (Instant, i64), now: Instant, current: i64, total: i64) -> Option<Duration> {
    let (t0, v0) = first;
    let done = current - v0;
    if done <= 0 || total <= current {
        return None;
    }
    let per_item = now.saturating_duration_since(t0).as_secs_f64() / done as f64;
    Some(Duration::from_secs_f64(per_item * (total - current) as f64))
}

/// `12 s`, `3 min 05 s`, `2 h 04 min`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
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
            first: None,
        }
    }

    /// A bar that never draws (for `--json`, where stderr carries JSON only).
    pub fn hidden(label: impl Into<String>) -> Progress {
        let mut p = Progress::new(label);
        p.tty = false;
        p.finished = true;
        p
    }

    /// The progress maximum (from `UI_SET_GAUGE_SIZE`).
    pub fn set_total(&mut self, total: i64) {
        self.total = total;
        self.draw(false);
    }

    /// Progress (from `UI_SET_GAUGE_VALUE`); a positive `total` replaces the maximum.
    pub fn set(&mut self, current: i64, total: i64) {
        if self.first.is_none() {
            self.first = Some((Instant::now(), current));
        }
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
        let mut line = render(&self.label, self.current, self.total, BAR_WIDTH);
        if let Some(left) = self
            .first
            .and_then(|f| eta(f, now, self.current, self.total))
        {
            line.push_str(&format!("  ETA {}", format_duration(left)));
        }
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

/// One line of status on stderr, redrawn in place on a terminal (at most
/// twice a second); nothing when stderr is not a terminal or it is hidden.
pub struct StatusLine {
    tty: bool,
    last_draw: Option<Instant>,
    last_len: usize,
}

impl StatusLine {
    /// Draws on a terminal unless `hidden`.
    pub fn new(hidden: bool) -> StatusLine {
        StatusLine {
            tty: !hidden && std::io::stderr().is_terminal(),
            last_draw: None,
            last_len: 0,
        }
    }

    /// True if anything will be drawn (callers can skip building the text).
    pub fn visible(&self) -> bool {
        self.tty
    }

    /// True if a redraw is due.
    pub fn due(&self) -> bool {
        self.tty
            && self
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(500))
    }

    /// Replaces the line.
    pub fn show(&mut self, line: &str) {
        if !self.tty {
            return;
        }
        self.last_draw = Some(Instant::now());
        let pad = self.last_len.saturating_sub(line.len());
        self.last_len = line.len();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        let _ = err.flush();
    }

    /// Ends the line (if anything was drawn).
    pub fn finish(&mut self) {
        if self.tty && self.last_draw.take().is_some() {
            eprintln!();
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_durations() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(eta((t0, 0), t1, 10, 30), Some(Duration::from_secs(20)));
        assert_eq!(eta((t0, 5), t1, 10, 30), Some(Duration::from_secs(40)));
        assert_eq!(eta((t0, 10), t1, 10, 30), None);
        assert_eq!(eta((t0, 0), t1, 30, 30), None);
        assert_eq!(format_duration(Duration::from_secs(12)), "12 s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(format_duration(Duration::from_secs(7440)), "2 h 04 min");
    }

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
