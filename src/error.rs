//! The one error type of the crate and its [`Result`] alias.
//!
//! Every failure a caller can see is an [`Error`] variant to match on; the
//! `Display` text is written for the scientist at the instrument and, where it
//! helps, says what to try next.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::codec::CommandCode;

/// `Result<T, flamingo_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the microscope.
///
/// ```
/// use flamingo_client::Error;
/// use std::time::Duration;
///
/// let e = Error::Timeout { what: "STAGE_POSITION_GET reply".into(), after: Duration::from_millis(300) };
/// assert!(e.is_timeout());
/// assert_eq!(e.to_string(), "timed out after 0.300 s waiting for STAGE_POSITION_GET reply");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operation's deadline passed before it completed.
    Timeout {
        /// What was being waited for.
        what: String,
        /// The deadline that was given.
        after: Duration,
    },
    /// The connection is closed or broke; in-flight and later requests fail with this.
    Disconnected {
        /// Why the link went down, in words.
        reason: String,
    },
    /// The instrument answered with a status its status policy calls a refusal.
    Refused {
        /// The command that was refused.
        code: CommandCode,
        /// The status the instrument sent.
        status: u32,
    },
    /// The instrument answered with a status its status policy calls "busy".
    Busy {
        /// The command that found the instrument busy.
        code: CommandCode,
        /// The status the instrument sent.
        status: u32,
    },
    /// The peer broke the wire protocol (bad markers that could not be
    /// resynchronised, a reply of the wrong shape, a truncated message...).
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// A size field or an argument exceeds a configured limit. Nothing was allocated.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The size claimed or given, in bytes.
        size: u64,
        /// The configured limit, in bytes.
        limit: u64,
    },
    /// An argument was rejected before anything was sent.
    InvalidArgument {
        /// Which argument and why.
        what: String,
    },
    /// The TCP connection could not be established.
    Connect {
        /// The address that was tried.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// Any other I/O failure (for example writing a file the caller asked for).
    Io(io::Error),
}

impl Error {
    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
    /// True for [`Error::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected { .. })
    }
    /// Shorthand constructor for [`Error::InvalidArgument`].
    pub fn invalid(what: impl Into<String>) -> Error {
        Error::InvalidArgument { what: what.into() }
    }
    /// Shorthand constructor for [`Error::Protocol`].
    pub fn protocol(detail: impl Into<String>) -> Error {
        Error::Protocol {
            detail: detail.into(),
        }
    }
    /// Shorthand constructor for [`Error::Disconnected`].
    pub fn disconnected(reason: impl Into<String>) -> Error {
        Error::Disconnected {
            reason: reason.into(),
        }
    }
    /// Shorthand constructor for [`Error::Timeout`].
    pub fn timeout(what: impl Into<String>, after: Duration) -> Error {
        Error::Timeout {
            what: what.into(),
            after,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout { what, after } => write!(
                f,
                "timed out after {:.3} s waiting for {what}",
                after.as_secs_f64()
            ),
            Error::Disconnected { reason } => write!(
                f,
                "disconnected: {reason} (check the network and that the microscope server is running)"
            ),
            Error::Refused { code, status } => {
                write!(f, "device refused {code} (status {status})")
            }
            Error::Busy { code, status } => write!(
                f,
                "device busy: {code} was not accepted (status {status}); wait for the current operation to finish and retry"
            ),
            Error::Protocol { detail } => write!(f, "protocol error: {detail}"),
            Error::TooLarge { what, size, limit } => {
                write!(f, "{what} of {size} bytes exceeds the limit of {limit} bytes")
            }
            Error::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Error::Connect { addr, source } => write!(
                f,
                "cannot connect to {addr}: {source} (is the microscope server running and the address right?)"
            ),
            Error::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

// Conversions from the codec's own errors.

impl From<crate::codec::FrameError> for Error {
    /// A size over the limit is [`Error::TooLarge`]; a clean close, a close
    /// mid-message or a failed read all mean the link is gone, so they are
    /// [`Error::Disconnected`] (the remedy is to reconnect).
    fn from(e: crate::codec::FrameError) -> Self {
        match e {
            crate::codec::FrameError::TooLarge { size, limit } => Error::TooLarge {
                what: "additional data",
                size: size.into(),
                limit: limit.into(),
            },
            other => Error::disconnected(other.to_string()),
        }
    }
}

impl From<crate::codec::LiveHeaderError> for Error {
    /// A frame over the size limit is [`Error::TooLarge`]; an inconsistent
    /// header is [`Error::Protocol`].
    fn from(e: crate::codec::LiveHeaderError) -> Self {
        match e {
            crate::codec::LiveHeaderError::TooLarge { image_size, limit } => Error::TooLarge {
                what: "live frame",
                size: image_size.into(),
                limit: limit.into(),
            },
            other => Error::protocol(other.to_string()),
        }
    }
}

impl From<crate::codec::DecodeError> for Error {
    /// A message with bad markers is [`Error::Protocol`].
    fn from(e: crate::codec::DecodeError) -> Self {
        Error::protocol(e.to_string())
    }
}

impl From<crate::codec::TextError> for Error {
    /// Text that does not fit a message is [`Error::InvalidArgument`].
    fn from(e: crate::codec::TextError) -> Self {
        Error::invalid(e.to_string())
    }
}

impl From<crate::codec::ParseAxisError> for Error {
    /// A name that is not an axis is [`Error::InvalidArgument`].
    fn from(e: crate::codec::ParseAxisError) -> Self {
        Error::invalid(e.to_string())
    }
}
