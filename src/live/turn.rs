//! One triggered frame at a time on a live stream.
//!
//! A live frame carries nothing that names the trigger it answers: a
//! snapshot can only take "the first frame after my trigger". Two snapshots
//! waiting at once on the one frame queue could take each other's frames,
//! so a caller that triggers a frame and waits for it (a snapshot) first
//! takes the stream's turn, within its own deadline, and keeps it until its
//! frame is in (or no frame will come).
//!
//! A caller that gives up after its trigger went out (its deadline passed,
//! or it was dropped) leaves its frame *owed*: it may still arrive, and the
//! next trigger's frame would be taken for it. The next holder of the turn
//! first waits for that frame (any frame counted after the abandoned
//! trigger), within its own deadline, or until the owed frame is given up
//! for lost after the client's late-reply window, as a late reply is on the
//! command port.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::LiveStream;

/// The turn's state, shared by the holders of one stream.
#[derive(Default)]
pub(crate) struct Turns {
    state: Mutex<State>,
    free: Condvar,
}

#[derive(Default)]
struct State {
    held: bool,
    owed: Option<Owed>,
}

/// A frame that an abandoned trigger may still bring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owed {
    /// Frames counted when the abandoned trigger was sent: the owed frame
    /// is any frame with a greater sequence number.
    pub(crate) after: u64,
    /// When its caller gave up.
    pub(crate) since: Instant,
}

/// The turn, held until dropped.
pub(crate) struct Turn {
    live: Arc<LiveStream>,
    /// A frame owed by an earlier holder, until settled.
    inherited: Option<Owed>,
    /// This holder's trigger is out and its frame not in: owed if dropped now.
    pending: Option<u64>,
}

impl Turns {
    /// Takes the turn, waiting for it until `until` (`None`: not at all).
    fn take(&self, until: Option<Instant>) -> Option<Option<Owed>> {
        let mut st = self.state.lock();
        while st.held {
            let until = until?;
            if self.free.wait_until(&mut st, until).timed_out() && st.held {
                return None;
            }
        }
        st.held = true;
        Some(st.owed.take())
    }

    fn give_back(&self, owed: Option<Owed>) {
        let mut st = self.state.lock();
        st.held = false;
        st.owed = owed;
        drop(st);
        self.free.notify_one();
    }
}

impl LiveStream {
    /// Takes this stream's trigger turn, waiting for it until `until`
    /// (`None`: only if it is free now).
    pub(crate) fn take_turn(self: &Arc<Self>, until: Option<Instant>) -> Option<Turn> {
        let inherited = self.turns.take(until)?;
        Some(Turn {
            live: self.clone(),
            inherited,
            pending: None,
        })
    }
}

impl Turn {
    /// The frame an earlier holder left owed, if not settled yet.
    pub(crate) fn owed(&self) -> Option<Owed> {
        self.inherited
    }

    /// Frames counted when this holder's trigger went out, while its frame
    /// is not in.
    pub(crate) fn pending(&self) -> Option<u64> {
        self.pending
    }

    /// The owed frame arrived, or is given up for lost.
    pub(crate) fn settle_owed(&mut self) {
        self.inherited = None;
    }

    /// This holder's trigger is out; frames counted then were `mark`.
    pub(crate) fn triggered(&mut self, mark: u64) {
        self.pending = Some(mark);
    }

    /// This holder's frame is in, or none will come (the trigger was refused).
    pub(crate) fn answered(&mut self) {
        self.pending = None;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let owed = match self.pending {
            Some(after) => Some(Owed {
                after,
                since: Instant::now(),
            }),
            None => self.inherited,
        };
        self.live.turns.give_back(owed);
    }
}
