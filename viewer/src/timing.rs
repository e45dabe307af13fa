//! Timing of the library calls made on the UI thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The goal: no UI frame spends this long in library calls.
pub const BUDGET: Duration = Duration::from_millis(1);

const BUCKET_US: u128 = 2;
const BUCKETS: usize = 5000;

/// Times every library call made on the UI thread, per frame and overall.
#[derive(Debug, Default)]
pub struct LibTimer {
    /// Library time of the frame being drawn (sum of its calls).
    frame_total: Duration,
    /// Longest single call of the frame being drawn, and its name.
    frame_longest: Duration,
    frame_longest_name: &'static str,
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
    /// Histogram of per-frame library times, for percentiles: 2 µs buckets
    /// up to 10 ms, the last bucket holding everything above.
    hist: Vec<u64>,
    /// Longest whole UI frame (everything `update` does).
    pub worst_ui_frame: Duration,
    /// When that frame was (since the first frame).
    pub worst_ui_at: Duration,
    /// Per call name: calls and the longest.
    pub per_call: BTreeMap<&'static str, (u64, Duration)>,
    /// Where the frame started: time, and the thread's CPU and run-queue
    /// times then.
    frame_start: Option<(Instant, Option<Sched>)>,
    /// Frames whose library time reached [`BUDGET`], explained.
    pub over: Vec<OverFrame>,
    /// The largest per-frame library time minus the time the UI thread
    /// spent waiting for a CPU in that frame (preempted by other threads).
    pub worst_net: Duration,
    /// True once the scheduler times could be read (Linux).
    pub has_sched: bool,
    /// When the first frame began.
    first: Option<Instant>,
}

/// The UI thread's scheduler time (Linux `/proc/thread-self/schedstat`).
#[derive(Clone, Copy, Debug)]
struct Sched {
    runq: Duration,
}

/// The second field of schedstat: nanoseconds spent waiting on a run queue.
fn sched() -> Option<Sched> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let runq = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(Sched {
        runq: Duration::from_nanos(runq),
    })
}

/// A frame that spent [`BUDGET`] or more in library calls, and how long the
/// UI thread waited for a CPU during it (runnable but preempted: the machine
/// is busy). The kernel adds a wait to the thread's run-queue time when the
/// thread gets the CPU back, so a wait that ended within the frame counts in
/// full. (Its CPU time is accounted lazily, so "blocked" time cannot be
/// derived from it reliably.)
#[derive(Clone, Copy, Debug)]
pub struct OverFrame {
    /// Library time of the frame.
    pub lib: Duration,
    /// Whole frame.
    pub wall: Duration,
    /// Waiting for a CPU during the frame.
    pub runq: Duration,
    /// The frame's longest call.
    pub longest: &'static str,
    /// When (since the first frame).
    pub at: Duration,
}

impl LibTimer {
    /// Runs `f` (one library call) and accounts its duration.
    pub fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let r = f();
        let d = t0.elapsed();
        self.calls += 1;
        self.frame_total += d;
        if d > self.frame_longest {
            self.frame_longest = d;
            self.frame_longest_name = name;
        }
        let e = self.per_call.entry(name).or_default();
        e.0 += 1;
        e.1 = e.1.max(d);
        if d > self.worst_call {
            self.worst_call = d;
            self.worst_call_name = name;
        }
        r
    }

    /// Starts the accounting of one frame.
    pub fn begin_frame(&mut self) {
        self.frame_longest_name = "";
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.frame_start = Some((now, sched()));
    }

    /// Closes the accounting of one frame. `ui` is the whole frame's time.
    pub fn end_frame(&mut self, ui: Duration) {
        if let Some((t0, Some(s0))) = self.frame_start.take() {
            let wall = t0.elapsed();
            if let Some(s1) = sched() {
                self.has_sched = true;
                let runq = s1.runq.saturating_sub(s0.runq);
                self.worst_net = self.worst_net.max(self.frame_total.saturating_sub(runq));
                if self.frame_total >= BUDGET {
                    self.over.push(OverFrame {
                        lib: self.frame_total,
                        wall,
                        runq,
                        longest: self.frame_longest_name,
                        at: self.first.map_or(Duration::ZERO, |f| t0.duration_since(f)),
                    });
                }
            }
        }
        self.frames += 1;
        self.last_frame = self.frame_total;
        self.worst_frame = self.worst_frame.max(self.frame_total);
        self.frames_over_budget += u64::from(self.frame_total >= BUDGET);
        if self.hist.is_empty() {
            self.hist = vec![0; BUCKETS];
        }
        let b = (self.frame_total.as_micros() / BUCKET_US) as usize;
        self.hist[b.min(BUCKETS - 1)] += 1;
        if ui > self.worst_ui_frame {
            self.worst_ui_frame = ui;
            self.worst_ui_at = self
                .first
                .map_or(Duration::ZERO, |f| f.elapsed().saturating_sub(ui));
        }
        self.frame_total = Duration::ZERO;
        self.frame_longest = Duration::ZERO;
    }

    /// The `q` quantile (0..=1) of per-frame library time, to 2 µs (the
    /// upper edge of its bucket, capped by the worst frame).
    pub fn quantile(&self, q: f64) -> Duration {
        let n: u64 = self.hist.iter().sum();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((n - 1) as f64 * q).round() as u64;
        let mut seen = 0;
        for (i, c) in self.hist.iter().enumerate() {
            seen += c;
            if seen > rank {
                let edge = Duration::from_micros((i as u64 + 1) * BUCKET_US as u64);
                return edge.min(self.worst_frame);
            }
        }
        self.worst_frame
    }
}

/// Microseconds, for display.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_accumulate_their_calls_and_quantiles_follow() {
        let mut t = LibTimer::default();
        for i in 0..100u64 {
            t.begin_frame();
            t.time("a", || {
                std::thread::sleep(Duration::from_micros(if i == 99 { 1500 } else { 0 }))
            });
            t.time("b", || ());
            t.end_frame(Duration::from_millis(1));
        }
        assert_eq!(t.frames, 100);
        assert_eq!(t.calls, 200);
        assert_eq!(t.frames_over_budget, 1);
        assert!(t.worst_frame >= Duration::from_micros(1500));
        assert_eq!(t.worst_call_name, "a");
        assert_eq!(t.per_call["b"].0, 100);
        assert!(t.quantile(0.5) < Duration::from_micros(500));
        assert_eq!(t.quantile(1.0), t.worst_frame);
        if t.has_sched {
            assert_eq!(t.over.len(), 1);
            assert_eq!(t.over[0].longest, "a");
        }
    }
}
