//! The `cmdDataBits0` flag word.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// The `cmdDataBits0` flag word of a [`Message`](crate::codec::Message).
///
/// A transparent wrapper around the raw `u32`: unknown bits are kept, so a
/// message round-trips bit for bit.
///
/// ```
/// use flamingo_client::codec::Flags;
///
/// let f = Flags::TRIGGER_CALL_BACK | Flags::SAVE_TO_DISK;
/// assert!(f.contains(Flags::TRIGGER_CALL_BACK));
/// assert!(!f.contains(Flags::MAX_PROJECTION));
/// assert_eq!(f.bits(), 0x8000_0008);
/// assert_eq!(f.to_string(), "TRIGGER_CALL_BACK|SAVE_TO_DISK");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u32);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// Bit 31: asks the instrument to send a reply. The client sets it on every request.
    pub const TRIGGER_CALL_BACK: Flags = Flags(0x8000_0000);
    /// Asks for time-remaining information (workflows).
    pub const EXPERIMENT_TIME_REMAINING: Flags = Flags(0x0000_0001);
    /// Stage positions are buffered for a multi-position run.
    pub const STAGE_POSITIONS_IN_BUFFER: Flags = Flags(0x0000_0002);
    /// Compute a maximum-intensity projection of the stack.
    pub const MAX_PROJECTION: Flags = Flags(0x0000_0004);
    /// Save the images rather than only streaming them.
    pub const SAVE_TO_DISK: Flags = Flags(0x0000_0008);
    /// Suppress stage updates to the client during moves.
    pub const STAGE_NOT_UPDATE_CLIENT: Flags = Flags(0x0000_0010);
    /// The run is a Z sweep / Z stack.
    pub const STAGE_ZSWEEP: Flags = Flags(0x0000_0020);

    const NAMED: [(Flags, &'static str); 7] = [
        (Flags::TRIGGER_CALL_BACK, "TRIGGER_CALL_BACK"),
        (
            Flags::EXPERIMENT_TIME_REMAINING,
            "EXPERIMENT_TIME_REMAINING",
        ),
        (
            Flags::STAGE_POSITIONS_IN_BUFFER,
            "STAGE_POSITIONS_IN_BUFFER",
        ),
        (Flags::MAX_PROJECTION, "MAX_PROJECTION"),
        (Flags::SAVE_TO_DISK, "SAVE_TO_DISK"),
        (Flags::STAGE_NOT_UPDATE_CLIENT, "STAGE_NOT_UPDATE_CLIENT"),
        (Flags::STAGE_ZSWEEP, "STAGE_ZSWEEP"),
    ];

    /// Wraps a raw flag word, keeping unknown bits.
    pub const fn from_bits(bits: u32) -> Flags {
        Flags(bits)
    }
    /// The raw flag word.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// True if every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// True if no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// `self` with the bits of `other` added.
    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// `self` with the bits of `other` cleared.
    #[must_use]
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}
impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}
impl BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}
impl Not for Flags {
    type Output = Flags;
    fn not(self) -> Flags {
        Flags(!self.0)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut rest = self.0;
        let mut first = true;
        for (flag, name) in Flags::NAMED {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#010x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_unknown_bits() {
        assert_eq!(Flags::from_bits(0x100).to_string(), "0x00000100");
        assert_eq!(
            (Flags::STAGE_ZSWEEP | Flags::from_bits(0x100)).to_string(),
            "STAGE_ZSWEEP|0x00000100"
        );
        assert_eq!(Flags::NONE.to_string(), "0");
    }

    #[test]
    fn with_without() {
        let f = Flags::NONE
            .with(Flags::MAX_PROJECTION)
            .with(Flags::SAVE_TO_DISK);
        assert_eq!(f.without(Flags::MAX_PROJECTION), Flags::SAVE_TO_DISK);
        assert!(!(f & !Flags::SAVE_TO_DISK).contains(Flags::SAVE_TO_DISK));
    }
}
