//! Timing of the library calls made on the UI thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The goal: no UI frame spends this long in library calls.
pub const BUDGET: Duration = Duration::from_millis(1);

/// Times every library call made on the UI thread, per frame and overall.
#[derive(Debug, Default)]
pub struct LibTimer {
    /// Library time of the frame being drawn (sum of its calls).
    frame_total: Duration,
    /// Longest single call of the frame being drawn.
    frame_longest: Duration,
    /// Library time of the last finished frame.
    pub last_frame: Duration,
    /// The largest per-frame library time so far.
    pub worst_frame: Duration,
    /// The longest single call so far, and what it was.
    pub worst_call: Duration,
    /// What the longest call was.
    pub worst_call_name: &'static str,
    /// Frames whose library time reached [`BUDGET`].
    pub frames_over_budget: u64,
    /// Frames drawn.
    pub frames: u64,
    /// Library calls timed.
    pub calls: u64,
    /// Per-frame library times, for percentiles (bounded).
    samples: Vec<Duration>,
    /// Longest whole UI frame (everything `update` does).
    pub worst_ui_frame: Duration,
    /// Per call name: calls and the longest.
    pub per_call: BTreeMap<&'static str, (u64, Duration)>,
}

impl LibTimer {
    /// Runs `f` (one library call) and accounts its duration.
    pub fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let r = f();
        let d = t0.elapsed();
        self.calls += 1;
        self.frame_total += d;
        self.frame_longest = self.frame_longest.max(d);
        let e = self.per_call.entry(name).or_default();
        e.0 += 1;
        e.1 = e.1.max(d);
        if d > self.worst_call {
            self.worst_call = d;
            self.worst_call_name = name;
        }
        r
    }

    /// Closes the accounting of one frame. `ui` is the whole frame's time.
    pub fn end_frame(&mut self, ui: Duration) {
        self.frames += 1;
        self.last_frame = self.frame_total;
        self.worst_frame = self.worst_frame.max(self.frame_total);
        self.frames_over_budget += u64::from(self.frame_total >= BUDGET);
        if self.samples.len() < 1_000_000 {
            self.samples.push(self.frame_total);
        }
        self.worst_ui_frame = self.worst_ui_frame.max(ui);
        self.frame_total = Duration::ZERO;
        self.frame_longest = Duration::ZERO;
    }

    /// The `q` quantile (0..=1) of per-frame library time.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let i = ((s.len() - 1) as f64 * q).round() as usize;
        s[i.min(s.len() - 1)]
    }
}

/// Microseconds, for display.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
