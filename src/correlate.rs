//! The pending-request table: which waiter gets which reply.
//!
//! Pure logic, no I/O and no threads, so every rule is unit-tested here.
//!
//! The protocol has no request ids: a reply only echoes its command code (and,
//! for some codes, a key such as the stage axis in `int32Data0`). Replies to
//! one key come back in the order the requests were sent, so each key has a
//! FIFO of waiters. A waiter that gives up (timeout, or its `Pending` dropped)
//! leaves a *tombstone* in its place: the next reply for that key is its late
//! reply and is discarded, never handed to the next waiter. Tombstones expire
//! after a window and at most `max_tombstones` are kept per key, so a reply
//! that never comes does not poison the key forever.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What a reply is matched on: the command code, plus `int32Data0` for codes
/// whose match key is [`MatchKey::Int0`](crate::codec::MatchKey::Int0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub code: u32,
    pub sub: Option<i32>,
}

enum Entry<T> {
    Waiting {
        id: u64,
        waiter: T,
    },
    Tombstone {
        #[cfg_attr(not(test), allow(dead_code))]
        id: u64,
        expires: Instant,
    },
}

/// The outcome of offering a reply to the table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Match<T> {
    /// The oldest live waiter for the key: hand the reply to it.
    Deliver(T),
    /// The reply is the late answer to a request that gave up: discard it.
    Late,
    /// Nobody is waiting for this key: it is an event.
    None,
}

pub(crate) struct Correlator<T> {
    queues: HashMap<Key, VecDeque<Entry<T>>>,
    next_id: u64,
    window: Duration,
    max_tombstones: usize,
    /// Tombstones removed without a late reply arriving (expired or evicted).
    pub expired_tombstones: u64,
}

impl<T> Correlator<T> {
    pub fn new(window: Duration, max_tombstones: usize) -> Self {
        Correlator {
            queues: HashMap::new(),
            next_id: 1,
            window,
            max_tombstones: max_tombstones.max(1),
            expired_tombstones: 0,
        }
    }

    /// Adds a waiter at the back of `key`'s FIFO; returns its id.
    pub fn register(&mut self, key: Key, waiter: T) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.queues
            .entry(key)
            .or_default()
            .push_back(Entry::Waiting { id, waiter });
        id
    }

    /// Removes a waiter whose request was never written (nothing will answer it).
    pub fn cancel(&mut self, key: Key, id: u64) -> Option<T> {
        let q = self.queues.get_mut(&key)?;
        let pos = q
            .iter()
            .position(|e| matches!(e, Entry::Waiting { id: i, .. } if *i == id))?;
        match q.remove(pos) {
            Some(Entry::Waiting { waiter, .. }) => Some(waiter),
            _ => None,
        }
    }

    /// Turns a waiter that gave up into a tombstone. Returns false if the
    /// waiter is no longer in the table (its reply was delivered meanwhile).
    pub fn abandon(&mut self, key: Key, id: u64, now: Instant) -> bool {
        let Some(q) = self.queues.get_mut(&key) else {
            return false;
        };
        let Some(e) = q
            .iter_mut()
            .find(|e| matches!(e, Entry::Waiting { id: i, .. } if *i == id))
        else {
            return false;
        };
        *e = Entry::Tombstone {
            id,
            expires: now + self.window,
        };
        // Bound the tombstones per key: evict the oldest beyond the cap.
        let mut stones = q
            .iter()
            .filter(|e| matches!(e, Entry::Tombstone { .. }))
            .count();
        while stones > self.max_tombstones {
            if let Some(pos) = q.iter().position(|e| matches!(e, Entry::Tombstone { .. })) {
                q.remove(pos);
                self.expired_tombstones += 1;
            }
            stones -= 1;
        }
        true
    }

    /// Offers a reply for `key` arriving at `now`.
    pub fn on_reply(&mut self, key: Key, now: Instant) -> Match<T> {
        let Some(q) = self.queues.get_mut(&key) else {
            return Match::None;
        };
        loop {
            match q.pop_front() {
                None => return Match::None,
                Some(Entry::Waiting { waiter, .. }) => return Match::Deliver(waiter),
                Some(Entry::Tombstone { expires, .. }) if expires <= now => {
                    self.expired_tombstones += 1;
                }
                Some(Entry::Tombstone { .. }) => return Match::Late,
            }
        }
    }

    /// True if any waiter (not tombstone) is registered for `key`.
    #[cfg(test)]
    pub fn has_waiter(&self, key: Key) -> bool {
        self.queues
            .get(&key)
            .is_some_and(|q| q.iter().any(|e| matches!(e, Entry::Waiting { .. })))
    }

    /// Removes every waiter and tombstone, returning the waiters (to fail them).
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        for (_, q) in self.queues.drain() {
            for e in q {
                if let Entry::Waiting { waiter, .. } = e {
                    out.push(waiter);
                }
            }
        }
        out
    }

    /// Number of live waiters (for stats and tests).
    pub fn waiting(&self) -> usize {
        self.queues
            .values()
            .flatten()
            .filter(|e| matches!(e, Entry::Waiting { .. }))
            .count()
    }

    /// Number of tombstones (for stats and tests).
    pub fn tombstones(&self) -> usize {
        self.queues
            .values()
            .flatten()
            .filter(|e| matches!(e, Entry::Tombstone { .. }))
            .count()
    }

    #[cfg(test)]
    fn ids(&self, key: Key) -> Vec<u64> {
        self.queues
            .get(&key)
            .map(|q| {
                q.iter()
                    .map(|e| match e {
                        Entry::Waiting { id, .. } | Entry::Tombstone { id, .. } => *id,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Key = Key {
        code: 0x6008,
        sub: Some(1),
    };
    const K2: Key = Key {
        code: 0x6008,
        sub: Some(2),
    };

    fn table() -> Correlator<&'static str> {
        Correlator::new(Duration::from_secs(10), 4)
    }

    #[test]
    fn fifo_per_key() {
        let mut t = table();
        let now = Instant::now();
        t.register(K, "a");
        t.register(K2, "x");
        t.register(K, "b");
        assert_eq!(t.on_reply(K, now), Match::Deliver("a"));
        assert_eq!(t.on_reply(K2, now), Match::Deliver("x"));
        assert_eq!(t.on_reply(K, now), Match::Deliver("b"));
        assert_eq!(t.on_reply(K, now), Match::None);
        assert_eq!(t.on_reply(Key { code: 1, sub: None }, now), Match::None);
    }

    #[test]
    fn late_reply_goes_to_tombstone_not_next_waiter() {
        let mut t = table();
        let now = Instant::now();
        let a = t.register(K, "a");
        assert!(t.abandon(K, a, now));
        t.register(K, "b");
        assert_eq!(t.on_reply(K, now), Match::Late);
        assert_eq!(t.on_reply(K, now), Match::Deliver("b"));
    }

    #[test]
    fn abandon_after_delivery_reports_false() {
        let mut t = table();
        let now = Instant::now();
        let a = t.register(K, "a");
        assert_eq!(t.on_reply(K, now), Match::Deliver("a"));
        assert!(!t.abandon(K, a, now));
        assert_eq!(t.tombstones(), 0);
    }

    #[test]
    fn tombstones_expire() {
        let mut t = table();
        let now = Instant::now();
        let a = t.register(K, "a");
        t.abandon(K, a, now);
        t.register(K, "b");
        // After the window the stone no longer claims the reply.
        assert_eq!(
            t.on_reply(K, now + Duration::from_secs(11)),
            Match::Deliver("b")
        );
        assert_eq!(t.expired_tombstones, 1);
    }

    #[test]
    fn tombstones_bounded_per_key() {
        let mut t = table();
        let now = Instant::now();
        for _ in 0..10 {
            let id = t.register(K, "x");
            t.abandon(K, id, now);
        }
        assert_eq!(t.tombstones(), 4);
        assert_eq!(t.expired_tombstones, 6);
        // The newest four survive, in order.
        assert_eq!(t.ids(K), vec![7, 8, 9, 10]);
    }

    #[test]
    fn abandon_in_middle_keeps_order() {
        let mut t = table();
        let now = Instant::now();
        t.register(K, "a");
        let b = t.register(K, "b");
        t.register(K, "c");
        t.abandon(K, b, now);
        assert_eq!(t.on_reply(K, now), Match::Deliver("a"));
        assert_eq!(t.on_reply(K, now), Match::Late);
        assert_eq!(t.on_reply(K, now), Match::Deliver("c"));
    }

    #[test]
    fn cancel_and_drain() {
        let mut t = table();
        let now = Instant::now();
        let a = t.register(K, "a");
        t.register(K, "b");
        let c = t.register(K2, "c");
        t.abandon(K2, c, now);
        assert_eq!(t.cancel(K, a), Some("a"));
        assert_eq!(t.cancel(K, a), None);
        assert!(t.has_waiter(K));
        assert!(!t.has_waiter(K2));
        assert_eq!(t.waiting(), 1);
        let mut d = t.drain();
        d.sort();
        assert_eq!(d, vec!["b"]);
        assert_eq!(t.waiting() + t.tombstones(), 0);
    }
}
