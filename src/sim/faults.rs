//! Fault injection: what the simulator does wrong, on purpose.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::codec::CommandCode;

/// Faults to inject, changeable while the simulator runs
/// ([`Simulator::set_faults`](super::Simulator::set_faults),
/// [`Simulator::update_faults`](super::Simulator::update_faults)).
///
/// `Faults::default()` injects nothing. Fields marked *one-shot* are cleared by
/// the simulator when they fire (read them back with
/// [`Simulator::faults`](super::Simulator::faults)). Every injection is counted
/// in [`SimCounters`](super::SimCounters) (`faults_injected` plus a counter
/// per kind).
///
/// Reply faults (`delay`, `answer_late`, `never_answer`, `status_override`,
/// `absurd_additional_len`, `close_mid_message`) apply to replies only, never
/// to unsolicited events. When a reply is delayed, the activity the command
/// starts (a move, a workflow, a halt) starts when the reply is sent, so an
/// acknowledgement still precedes the events it causes.
///
/// ```
/// use flamingo_client::codec::CommandCode;
/// use flamingo_client::sim::Faults;
/// use std::time::Duration;
///
/// let f = Faults {
///     never_answer: [CommandCode::STAGE_POSITION_GET].into(),
///     fragment_writes: Some(7),
///     ..Faults::default()
/// };
/// assert!(f.is_active());
/// assert!(!Faults::default().is_active());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Replies to these codes are sent this much later. Later replies to the
    /// same code wait behind a delayed one (replies to one code always leave
    /// in request order, as on the instrument); replies to other codes and
    /// events are not held back (they may overtake the delayed reply).
    pub delay: HashMap<CommandCode, Duration>,
    /// *One-shot*: the next request with this code is answered after the
    /// duration (instead of any `delay`). Later replies to the same code wait
    /// behind it, as for `delay`.
    pub answer_late: Option<(CommandCode, Duration)>,
    /// Requests with these codes are never answered. The command is still
    /// executed (moves still move and end with `STAGE_MOTION_STOPPED`).
    pub never_answer: HashSet<CommandCode>,
    /// Replies to these codes carry this status. A non-zero status makes the
    /// simulator behave as if it had refused the command: the action is not
    /// carried out (a GET still answers with its value). An override to 0
    /// does not make an invalid command succeed.
    pub status_override: HashMap<CommandCode, u32>,
    /// Every message written on the command port is split into random chunks
    /// of 1..=n bytes, each a separate write (with `TCP_NODELAY`, a separate
    /// segment). The live port is not fragmented.
    pub fragment_writes: Option<usize>,
    /// 1..=n random bytes are written before every outgoing command-port
    /// message. They never contain `0x54` (the first byte of the start
    /// marker), so a resynchronising reader recovers every message.
    pub garbage_between: Option<usize>,
    /// *One-shot*: the next command connection that writes a message arms a
    /// countdown; it is closed after writing this many more messages (0:
    /// before writing the next one). A reconnecting client is not closed again.
    pub close_after_messages: Option<u64>,
    /// *One-shot*: the next reply is cut after 64 of its 128 bytes and the
    /// connection is closed.
    pub close_mid_message: bool,
    /// Replies to this code announce `additionalDataBytes = 0x8000_0000` and
    /// no additional data follows.
    pub absurd_additional_len: Option<CommandCode>,
    /// Additional data (settings text, echoed payloads) is written in chunks
    /// of `n` bytes with this pause between chunks.
    pub trickle_additional: Option<(usize, Duration)>,
    /// *One-shot*: the next live frame gets a header whose `image_size`
    /// (`0xFFFF_FFFF`) disagrees with its width and height, followed by 64
    /// garbage bytes and no pixels. Later frames are good again.
    pub bad_live_header: bool,
    /// *One-shot*, fires as soon as it is set: broadcast `count` unsolicited
    /// messages with this code to every connected command client, at
    /// `per_second` messages per second (0: as fast as possible). Each has
    /// status 1, `int32Data0` = 1..=count and `int32Data1` = count.
    /// Tuple: `(code, count, per_second)`.
    pub flood: Option<(CommandCode, u64, u32)>,
    /// *One-shot*: after reading its next message, a command connection stops
    /// reading from the client for this long (the client's sends back up).
    pub stop_reading: Option<Duration>,
    /// While set, `SYSTEM_STATE_GET` reports 2 (error).
    pub error_state: bool,
    /// Unsolicited events with these codes are lost: never sent (as if the
    /// instrument's broadcast went missing). The state change still happens.
    pub drop_events: HashSet<CommandCode>,
}

impl Faults {
    /// No faults (the same as `Faults::default()`).
    pub fn none() -> Faults {
        Faults::default()
    }

    /// True if any fault is set.
    pub fn is_active(&self) -> bool {
        *self != Faults::default()
    }
}

/// A small xorshift64* generator: deterministic per seed, good enough for
/// chunk sizes and garbage bytes.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        if s == 0 {
            s = 1;
        }
        Rng(s)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `1..=n` (`n >= 1`).
    pub(crate) fn one_to(&mut self, n: usize) -> usize {
        1 + (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A random byte that is never `0x54` (the first start-marker byte).
    pub(crate) fn garbage_byte(&mut self) -> u8 {
        let b = (self.next_u64() >> 32) as u8;
        if b == 0x54 {
            0x55
        } else {
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_ranges() {
        let mut r = Rng::new(0);
        for _ in 0..10_000 {
            let v = r.one_to(5);
            assert!((1..=5).contains(&v));
            assert_ne!(r.garbage_byte(), 0x54);
        }
        assert_eq!(r.one_to(1), 1);
    }
}
