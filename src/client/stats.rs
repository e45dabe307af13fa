//! Counters the client keeps, and the snapshot [`Stats`] it hands out.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::events::SubscriberStats;

/// Lock-free request latency histogram: 8 buckets per power of two of
/// microseconds, so percentiles are within about 9 %.
pub(crate) struct Latency {
    buckets: [AtomicU64; Latency::N],
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Latency {
    const SUB: u32 = 8;
    const N: usize = 40 * Latency::SUB as usize;

    pub fn new() -> Latency {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    fn index(us: u64) -> usize {
        if us < u64::from(Latency::SUB) {
            return us as usize;
        }
        let log = 63 - us.leading_zeros();
        let sub =
            ((us >> (log + 1 - Latency::SUB.trailing_zeros() - 1)) as u32) & (Latency::SUB - 1);
        ((log - Latency::SUB.trailing_zeros() + 1) * Latency::SUB + sub).min(Latency::N as u32 - 1)
            as usize
    }

    fn lower_bound(i: usize) -> u64 {
        let sub = Latency::SUB as usize;
        if i < sub {
            return i as u64;
        }
        let shift = (i / sub) as u32 + Latency::SUB.trailing_zeros() - 1;
        let frac = (i % sub) as u64;
        (1u64 << shift) + (frac << (shift - Latency::SUB.trailing_zeros()))
    }

    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[Latency::index(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    pub fn summary(&self) -> LatencySummary {
        let count = self.count.load(Relaxed);
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let pct = |p: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let target = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= target {
                    return Latency::lower_bound(i);
                }
            }
            self.max_us.load(Relaxed)
        };
        LatencySummary {
            count,
            mean_us: self.sum_us.load(Relaxed).checked_div(count).unwrap_or(0),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            max_us: self.max_us.load(Relaxed),
        }
    }
}

/// Request round-trip latency (write to reply delivery), successful requests only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Requests measured.
    pub count: u64,
    /// Mean in microseconds.
    pub mean_us: u64,
    /// Median in microseconds (bucket lower bound, within ~9 %).
    pub p50_us: u64,
    /// 99th percentile in microseconds (bucket lower bound, within ~9 %).
    pub p99_us: u64,
    /// Maximum in microseconds.
    pub max_us: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub replies_matched: AtomicU64,
    pub late_replies_discarded: AtomicU64,
    pub unmatched_replies: AtomicU64,
    pub oversized: AtomicU64,
    pub resyncs: AtomicU64,
    pub bytes_skipped: AtomicU64,
    pub timeouts: AtomicU64,
    pub disconnects: AtomicU64,
    pub reconnect_attempts: AtomicU64,
    pub reconnects: AtomicU64,
    pub teardowns: AtomicU64,
    pub link_resyncs: AtomicU64,
    pub echo_mismatches: AtomicU64,
    pub fences: AtomicU64,
    pub sends_expired: AtomicU64,
}

/// A snapshot of the client's counters, from [`Client::stats`](crate::Client::stats).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Messages written to the command socket.
    pub messages_sent: u64,
    /// Valid messages read from the command socket.
    pub messages_received: u64,
    /// Replies handed to a waiting request.
    pub replies_matched: u64,
    /// Events put in subscriber queues (each subscriber counts once).
    pub events_delivered: u64,
    /// Events dropped from full subscriber queues, all subscribers together.
    pub events_dropped: u64,
    /// Replies that arrived after their request gave up, discarded.
    pub late_replies_discarded: u64,
    /// Messages of a reply-only code that no request was waiting for (they
    /// are still delivered to subscribers as events).
    pub unmatched_replies: u64,
    /// Messages whose additional data exceeded the limit.
    pub oversized: u64,
    /// Times the reader resynchronised after bad markers.
    pub resyncs: u64,
    /// Bytes skipped while resynchronising.
    pub bytes_skipped: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Times the connection broke or was closed.
    pub disconnects: u64,
    /// Reconnection attempts made by the connection thread.
    pub reconnect_attempts: u64,
    /// Successful reconnections.
    pub reconnects: u64,
    /// Terminal teardowns (0 while open, 1 after close: never more).
    pub teardowns: u64,
    /// Times the link was reset on purpose because a request stayed
    /// unanswered past the late-reply window (replies could no longer be
    /// matched safely).
    pub link_resyncs: u64,
    /// Replies whose echoed `int32Data0` differed from the request on the
    /// wire (treated as events, never delivered to that request).
    pub echo_mismatches: u64,
    /// Callbacks that panicked (caught and logged).
    pub callback_panics: u64,
    /// Fence queries answered: the SYSTEM_STATE_GET the client writes
    /// around a request of a code the instrument also broadcasts, so that a
    /// broadcast cannot be taken for an earlier or later request's reply.
    pub fences: u64,
    /// Queued messages dropped because their deadline passed before they
    /// could be written (the link was down or busy); their callers, if any
    /// still wait, get `Timeout`.
    pub sends_expired: u64,
    /// Messages waiting to be written right now, and their bytes (bounded by
    /// [`ClientConfig::max_queued_messages`](crate::ClientConfig::max_queued_messages)
    /// and [`max_queued_bytes`](crate::ClientConfig::max_queued_bytes)).
    pub queued_messages: usize,
    /// Bytes of the messages waiting to be written.
    pub queued_bytes: usize,
    /// Requests waiting for a reply right now.
    pub pending_requests: usize,
    /// Requests on the wire whose callers gave up: their late replies are
    /// still expected (and will be discarded); each blocks its reply key.
    pub tombstones: usize,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// Per-subscriber counters.
    pub subscribers: Vec<SubscriberStats>,
    /// Request latency.
    pub latency: LatencySummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_monotonic_and_close() {
        let mut last = 0;
        for us in [0u64, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 75_000, 1 << 30] {
            let i = Latency::index(us);
            assert!(i >= last, "{us}");
            last = i;
            let lb = Latency::lower_bound(i);
            assert!(lb <= us, "{us} lb {lb}");
            assert!(us as f64 <= (lb as f64) * 1.126 + 1.0, "{us} lb {lb}");
        }
    }

    #[test]
    fn percentiles() {
        let l = Latency::new();
        for us in 1..=100u64 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert!((46..=50).contains(&s.p50_us), "{s:?}");
        assert!((92..=99).contains(&s.p99_us), "{s:?}");
        assert_eq!(s.max_us, 100);
    }
}
