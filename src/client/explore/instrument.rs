//! The instrument's side of an in-memory link: it reads what the client
//! writes and answers every message that asks for a reply with the same
//! code, echoing `int32Data0` and tagging the reply with the request's
//! `int32Data1` (the caller's tag), so a misrouted reply is always seen.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::link::{Link, Reader};
use crate::client::sync::shuttled::{elapsed, sleep};
use crate::codec::{CommandCode, Flags, FrameReader, Message, MESSAGE_LEN};

/// The tag of an unsolicited broadcast.
pub(super) const BROADCAST_TAG: i32 = -1;

/// How the instrument misbehaves (by default: answers everything at once).
#[derive(Clone, Default)]
pub(super) struct Behaviour {
    /// Tags never answered.
    pub drop: Vec<i32>,
    /// Tags answered only when virtual time reaches the given point (the
    /// instrument answers in order, so later replies wait too).
    pub answer_at: Vec<(i32, Duration)>,
    /// Tags answered with this much additional data (over the client's limit).
    pub oversized: Vec<(i32, u32)>,
    /// A slow reader: pauses this long after every read of at most `read_max` bytes.
    pub read_delay: Option<Duration>,
    pub read_max: usize,
}

/// A reader that pauses (virtual time) after every read.
struct Slow {
    inner: Reader,
    delay: Option<Duration>,
}

impl io::Read for Slow {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        if let (Some(d), true) = (self.delay, n > 0) {
            sleep(d);
        }
        Ok(n)
    }
}

/// Serves one link until it ends.
pub(super) fn serve(link: Arc<Link>, b: Arc<Behaviour>) {
    let mut r = Slow {
        inner: Reader {
            pipe: link.down.clone(),
            max: if b.read_max == 0 {
                usize::MAX
            } else {
                b.read_max
            },
        },
        delay: b.read_delay,
    };
    let mut framer = FrameReader::new(u32::MAX);
    let mut data = Vec::new();
    loop {
        let Ok(msg) = framer.read_frame(&mut r, &mut data) else {
            return;
        };
        if !msg.flags.contains(Flags::TRIGGER_CALL_BACK) {
            continue;
        }
        let tag = msg.int32_data1;
        if b.drop.contains(&tag) {
            continue;
        }
        if let Some(&(_, at)) = b.answer_at.iter().find(|(t, _)| *t == tag) {
            sleep(at.saturating_sub(elapsed()));
        }
        let extra = b
            .oversized
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(0, |(_, n)| *n);
        let reply = Message::new(msg.code)
            .with_int32_data0(msg.int32_data0)
            .with_int32_data1(tag)
            .with_additional_data_len(extra);
        let mut bytes = reply.to_bytes().to_vec();
        bytes.resize(MESSAGE_LEN + extra as usize, 0);
        if link.up.put_whole(&bytes).is_err() {
            return;
        }
    }
}

/// Sends one unsolicited broadcast of `code` about `index` (a laser).
pub(super) fn broadcast(link: &Link, code: CommandCode, index: i32) {
    let msg = Message::new(code)
        .with_int32_data0(index)
        .with_int32_data1(BROADCAST_TAG);
    let _ = link.up.put_whole(&msg.to_bytes());
}
