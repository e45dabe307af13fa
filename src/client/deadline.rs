//! [`Deadline`]: the one point in time an operation must finish by, computed
//! once from the caller's timeout and passed down to every step.

use std::time::{Duration, Instant};

use super::sync::now;

/// When an operation must be finished: an instant, or never.
///
/// Built once at the public boundary from the caller's timeout with checked
/// arithmetic, so a huge timeout (`Duration::MAX`) means "no deadline" and
/// never overflows. Every message, reply wait and event wait of the
/// operation uses the same `Deadline`; nothing restarts the clock.
///
/// ```
/// use flamingo_client::Deadline;
/// use std::time::Duration;
///
/// let d = Deadline::after(Duration::from_millis(50));
/// assert!(!d.expired());
/// assert!(d.remaining().unwrap() <= Duration::from_millis(50));
/// assert_eq!(Deadline::after(Duration::MAX), Deadline::NEVER);
/// assert_eq!(Deadline::NEVER.remaining(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: wait as long as it takes.
    pub const NEVER: Deadline = Deadline(None);

    /// `timeout` from now; [`Deadline::NEVER`] if that instant cannot be represented.
    pub fn after(timeout: Duration) -> Deadline {
        Deadline(now().checked_add(timeout))
    }

    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Deadline {
        Deadline(Some(instant))
    }

    /// The instant, or `None` for no deadline.
    pub fn instant(self) -> Option<Instant> {
        self.0
    }

    /// True once the deadline has passed (never for [`Deadline::NEVER`]).
    pub fn expired(self) -> bool {
        self.0.is_some_and(|t| now() >= t)
    }

    /// Time left (zero once passed), or `None` for no deadline.
    pub fn remaining(self) -> Option<Duration> {
        self.0.map(|t| t.saturating_duration_since(now()))
    }

    /// Time left as a timeout for calls that take one: `Duration::MAX`
    /// (no deadline) for [`Deadline::NEVER`].
    pub fn remaining_timeout(self) -> Duration {
        self.remaining().unwrap_or(Duration::MAX)
    }

    /// The earlier of the two.
    pub fn min(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (Some(a), None) | (None, Some(a)) => Deadline(Some(a)),
            (None, None) => Deadline(None),
        }
    }

    /// The later of the two.
    pub fn max(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.max(b))),
            _ => Deadline(None),
        }
    }

    /// An instant to block until in one wait call: the deadline, or for no
    /// deadline a point far enough ahead that a loop simply waits again.
    pub(crate) fn wait_slice(self) -> Instant {
        let now = now();
        self.0
            .unwrap_or_else(|| now.checked_add(Duration::from_secs(3600)).unwrap_or(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_are_no_deadline() {
        assert_eq!(Deadline::after(Duration::MAX), Deadline::NEVER);
        assert!(!Deadline::NEVER.expired());
        assert!(Deadline::NEVER.wait_slice() > Instant::now());
    }

    #[test]
    fn min_max_and_expiry() {
        let a = Deadline::after(Duration::ZERO);
        let b = Deadline::after(Duration::from_secs(60));
        assert_eq!(a.min(b), a);
        assert_eq!(a.min(Deadline::NEVER), a);
        assert_eq!(a.max(Deadline::NEVER), Deadline::NEVER);
        assert_eq!(a.max(b), b);
        assert!(a.expired());
        assert_eq!(a.remaining(), Some(Duration::ZERO));
    }
}
