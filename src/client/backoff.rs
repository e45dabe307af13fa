//! The reconnection backoff policy: one place for every delay and limit.

use std::time::Duration;

/// Exponential backoff with jitter for reconnecting (followed by the
/// client's connection thread, and by the live reader).
///
/// Attempt `n` (0-based) waits `min(initial_delay * multiplier^n, max_delay)`,
/// scaled by a random factor in `[1 - jitter, 1 + jitter]`, before
/// connecting. The jitter source is a small seeded generator, so a policy
/// with a fixed [`seed`](ReconnectPolicy::seed) gives the same sequence every time.
///
/// ```
/// use flamingo_client::ReconnectPolicy;
/// use std::time::Duration;
///
/// let p = ReconnectPolicy::default()
///     .initial_delay(Duration::from_millis(100))
///     .multiplier(2.0)
///     .max_delay(Duration::from_millis(500))
///     .jitter(0.0)
///     .max_attempts(Some(5));
/// let d: Vec<u64> = p.delays().map(|d| d.as_millis() as u64).collect();
/// assert_eq!(d, vec![100, 200, 400, 500, 500]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt. Default 100 ms.
    pub initial_delay: Duration,
    /// Upper bound of any delay. Default 10 s.
    pub max_delay: Duration,
    /// Growth factor between attempts. Default 2.0.
    pub multiplier: f64,
    /// Relative jitter, 0.0 to 1.0. Default 0.2 (±20 %).
    pub jitter: f64,
    /// Attempts before giving up; `None` retries forever. Default `None`.
    pub max_attempts: Option<u32>,
    /// Seed of the jitter generator. Default 0x5EED.
    pub seed: u64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: None,
            seed: 0x5EED,
        }
    }
}

impl ReconnectPolicy {
    /// Sets [`initial_delay`](ReconnectPolicy::initial_delay).
    #[must_use]
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }
    /// Sets [`max_delay`](ReconnectPolicy::max_delay).
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }
    /// Sets [`multiplier`](ReconnectPolicy::multiplier) (values below 1 count as 1).
    #[must_use]
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = if m.is_finite() { m.max(1.0) } else { 1.0 };
        self
    }
    /// Sets [`jitter`](ReconnectPolicy::jitter), clamped to 0..=1.
    #[must_use]
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = if j.is_finite() {
            j.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }
    /// Sets [`max_attempts`](ReconnectPolicy::max_attempts).
    #[must_use]
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets [`seed`](ReconnectPolicy::seed).
    #[must_use]
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }

    /// The delays before each attempt, in order; finite if `max_attempts` is set.
    pub fn delays(&self) -> Delays {
        Delays {
            policy: self.clone(),
            attempt: 0,
            rng: self.seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// Iterator over a policy's delays, from [`ReconnectPolicy::delays`].
#[derive(Clone, Debug)]
pub struct Delays {
    policy: ReconnectPolicy,
    attempt: u32,
    rng: u64,
}

impl Delays {
    /// Attempts handed out so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// splitmix64: small, seeded, good enough for jitter.
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for Delays {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if let Some(max) = self.policy.max_attempts {
            if self.attempt >= max {
                return None;
            }
        }
        let p = &self.policy;
        let base = p.initial_delay.as_secs_f64() * p.multiplier.powi(self.attempt.min(1000) as i32);
        let base = base.min(p.max_delay.as_secs_f64());
        let jitter = p.jitter;
        let factor = if jitter > 0.0 {
            1.0 + jitter * (2.0 * self.next_unit() - 1.0)
        } else {
            1.0
        };
        self.attempt += 1;
        Some(Duration::from_secs_f64((base * factor).max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded_and_deterministic() {
        let p = ReconnectPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .jitter(0.5)
            .max_attempts(Some(20))
            .seed(42);
        let a: Vec<Duration> = p.delays().collect();
        let b: Vec<Duration> = p.delays().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 20);
        for (i, d) in a.iter().enumerate() {
            let base = (0.1 * 2f64.powi(i as i32)).min(10.0);
            let s = d.as_secs_f64();
            assert!(
                s >= base * 0.5 - 1e-9 && s <= base * 1.5 + 1e-9,
                "{i}: {s} vs {base}"
            );
        }
        let c: Vec<Duration> = p.clone().seed(43).delays().collect();
        assert_ne!(a, c);
    }

    #[test]
    fn unlimited_and_clamps() {
        let p = ReconnectPolicy::default().multiplier(0.1).jitter(7.0);
        assert_eq!(p.multiplier, 1.0);
        assert_eq!(p.jitter, 1.0);
        assert_eq!(ReconnectPolicy::default().delays().take(1000).count(), 1000);
    }
}
