//! Which recorded message answers which recorded request: the one rule
//! the facts report and the replay share.
//!
//! A message from the instrument answers the oldest request of the same
//! code on the same connection that is still waiting, except that codes
//! that are always unsolicited answer nothing, and for codes matched by
//! `int32Data0` (stage axis, laser index) a waiting request with the same
//! `int32Data0` is preferred to an older one. The code alone decides
//! otherwise, so a reply that does not echo its request's `int32Data0`
//! still pairs with it (and the facts report can say it did not echo).
//!
//! A request sent without `TRIGGER_CALL_BACK` waits only until the next
//! request of its code on its connection: if that comes first, the
//! unflagged request counts as unanswered. Flagged requests wait until
//! answered or their connection ends. At most [`MAX_WAITING`] requests wait
//! per code and connection (older ones are given up), for at most
//! [`MAX_KEYS`] codes and connections.

use std::collections::{HashMap, VecDeque};

use crate::codec::{CommandCode, Flags, MatchKey, Message};

/// Requests waiting per code and connection, at most.
pub(crate) const MAX_WAITING: usize = 256;
/// (connection, code) pairs with requests waiting, at most: a damaged
/// stream full of made-up codes cannot grow the table without bound.
pub(crate) const MAX_KEYS: usize = 16_384;

/// The key replay matches requests by: the code, and `int32Data0` for
/// codes matched by it.
pub(crate) fn match_key(m: &Message) -> (CommandCode, Option<i32>) {
    let int0 = m.code.info().is_some_and(|i| i.match_key == MatchKey::Int0);
    (m.code, int0.then_some(m.int32_data0))
}

struct Waiting<T> {
    int0: i32,
    flagged: bool,
    value: T,
}

/// Requests waiting for their replies, per connection and code.
pub(crate) struct Pairing<T> {
    waiting: HashMap<(u32, CommandCode), VecDeque<Waiting<T>>>,
}

/// Why a request stopped waiting without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// Unflagged, and another request of its code came first.
    Superseded,
    /// Its connection ended.
    Closed,
    /// Too many requests of its code were waiting.
    Overflow,
}

impl<T> Pairing<T> {
    pub(crate) fn new() -> Pairing<T> {
        Pairing {
            waiting: HashMap::new(),
        }
    }

    /// A request from a client on `conn`. Returns the requests that stop
    /// waiting because of it, with whether each was flagged.
    pub(crate) fn request(
        &mut self,
        conn: u32,
        m: &Message,
        value: T,
        out: &mut Vec<(T, bool, GaveUp)>,
    ) {
        let flagged = m.flags.contains(Flags::TRIGGER_CALL_BACK);
        if self.waiting.len() >= MAX_KEYS && !self.waiting.contains_key(&(conn, m.code)) {
            out.push((value, flagged, GaveUp::Overflow));
            return;
        }
        let q = self.waiting.entry((conn, m.code)).or_default();
        let mut i = 0;
        while i < q.len() {
            if q[i].flagged {
                i += 1;
            } else {
                let w = q.remove(i).expect("index checked");
                out.push((w.value, false, GaveUp::Superseded));
            }
        }
        if q.len() >= MAX_WAITING {
            if let Some(w) = q.pop_front() {
                out.push((w.value, w.flagged, GaveUp::Overflow));
            }
        }
        q.push_back(Waiting {
            int0: m.int32_data0,
            flagged,
            value,
        });
    }

    /// A message from the instrument on `conn`: the request it answers
    /// (with whether that request was flagged), if any.
    pub(crate) fn reply(&mut self, conn: u32, m: &Message) -> Option<(T, bool)> {
        if m.code.info().is_some_and(|i| i.unsolicited.always()) {
            return None;
        }
        let q = self.waiting.get_mut(&(conn, m.code))?;
        let by_int0 = match_key(m).1.is_some();
        let at = if by_int0 {
            q.iter().position(|w| w.int0 == m.int32_data0).unwrap_or(0)
        } else {
            0
        };
        let w = q.remove(at)?;
        if q.is_empty() {
            self.waiting.remove(&(conn, m.code));
        }
        Some((w.value, w.flagged))
    }

    /// `conn` ended: every request still waiting on it gives up.
    pub(crate) fn close(&mut self, conn: u32, out: &mut Vec<(T, bool, GaveUp)>) {
        let keys: Vec<_> = self
            .waiting
            .keys()
            .filter(|(c, _)| *c == conn)
            .copied()
            .collect();
        for k in keys {
            if let Some(q) = self.waiting.remove(&k) {
                out.extend(q.into_iter().map(|w| (w.value, w.flagged, GaveUp::Closed)));
            }
        }
    }

    /// Every request still waiting, on any connection.
    pub(crate) fn drain(&mut self, out: &mut Vec<(T, bool, GaveUp)>) {
        for (_, q) in self.waiting.drain() {
            out.extend(q.into_iter().map(|w| (w.value, w.flagged, GaveUp::Closed)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CommandCode as C;

    fn req(code: C, int0: i32, flagged: bool) -> Message {
        let m = Message::new(code).with_int32_data0(int0);
        if flagged {
            m.with_flags(Flags::TRIGGER_CALL_BACK)
        } else {
            m
        }
    }

    #[test]
    fn fifo_per_code_and_int0_preferred() {
        let mut p = Pairing::new();
        let mut gone = Vec::new();
        p.request(1, &req(C::STAGE_POSITION_GET, 1, true), "x", &mut gone);
        p.request(1, &req(C::STAGE_POSITION_GET, 3, true), "z", &mut gone);
        // An echoing reply for Z pairs with Z, even though X is older.
        let r = p.reply(1, &req(C::STAGE_POSITION_GET, 3, true));
        assert_eq!(r, Some(("z", true)));
        // A reply that echoes nothing pairs with the oldest.
        let r = p.reply(1, &req(C::STAGE_POSITION_GET, 0, true));
        assert_eq!(r, Some(("x", true)));
        assert_eq!(p.reply(1, &req(C::STAGE_POSITION_GET, 0, true)), None);
        // Other connections and always-unsolicited codes pair with nothing.
        p.request(1, &req(C::SYSTEM_STATE_GET, 0, true), "s", &mut gone);
        assert_eq!(p.reply(2, &req(C::SYSTEM_STATE_GET, 0, true)), None);
        p.request(1, &req(C::STAGE_MOTION_STOPPED, 0, true), "m", &mut gone);
        assert_eq!(p.reply(1, &req(C::STAGE_MOTION_STOPPED, 0, true)), None);
        assert!(gone.is_empty());
    }

    #[test]
    fn unflagged_requests_wait_only_for_the_next_one() {
        let mut p = Pairing::new();
        let mut gone = Vec::new();
        p.request(1, &req(C::SYSTEM_STATE_GET, 0, false), 1, &mut gone);
        p.request(1, &req(C::SYSTEM_STATE_GET, 0, true), 2, &mut gone);
        assert_eq!(gone, vec![(1, false, GaveUp::Superseded)]);
        assert_eq!(
            p.reply(1, &req(C::SYSTEM_STATE_GET, 0, true)),
            Some((2, true))
        );
        p.request(1, &req(C::CAMERA_WORK_FLOW_STOP, 0, false), 3, &mut gone);
        assert_eq!(
            p.reply(1, &req(C::CAMERA_WORK_FLOW_STOP, 0, false)),
            Some((3, false))
        );
        p.request(1, &req(C::SYSTEM_STATE_GET, 0, true), 4, &mut gone);
        gone.clear();
        p.close(1, &mut gone);
        assert_eq!(gone, vec![(4, true, GaveUp::Closed)]);
    }
}
