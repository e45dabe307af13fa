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

/// Which part of an operation ran out of time, in [`Error::Timeout`].
///
/// ```
/// use flamingo_client::{Error, TimeoutPhase};
/// use std::time::Duration;
///
/// let e = Error::timeout(TimeoutPhase::Reply, "the reply to STAGE_POSITION_GET", Duration::from_millis(300));
/// assert!(matches!(e, Error::Timeout { phase: TimeoutPhase::Reply, .. }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Waiting for its turn to be written: another thread's write was still
    /// in progress (the instrument is not reading fast enough).
    SendLock,
    /// Waiting because an earlier request that the instrument answers with
    /// the same reply code is still unanswered (replies carry no request id,
    /// so only one such request may be on the wire at a time).
    KeyBusy,
    /// Waiting for the link to come back (a reconnect was in progress).
    LinkWait,
    /// Writing the request: the instrument did not accept the bytes.
    Write,
    /// The request was sent; its reply did not arrive in time.
    Reply,
    /// Waiting for an event (motion stopped, system idle, workflow progress...).
    Event,
    /// Opening the TCP connection.
    Connect,
    /// Waiting for a live image frame.
    Frame,
}

impl TimeoutPhase {
    fn hint(self) -> &'static str {
        match self {
            TimeoutPhase::SendLock | TimeoutPhase::Write => {
                " (the instrument is not reading its commands: is it hung or overloaded?)"
            }
            TimeoutPhase::KeyBusy => {
                " (an earlier request of the same kind is still unanswered; the client waits for its reply or resynchronises the link)"
            }
            TimeoutPhase::LinkWait => " (the connection was down and did not come back in time)",
            TimeoutPhase::Reply | TimeoutPhase::Event => "",
            TimeoutPhase::Connect => " (is the microscope server running and the address right?)",
            TimeoutPhase::Frame => " (is live view or an acquisition running?)",
        }
    }
}

/// Why a connection ended, in [`Error::Disconnected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client was never connected ([`Client::open`](crate::Client::open) not called or failed).
    NotConnected,
    /// [`Client::close`](crate::Client::close) was called, or the last handle was dropped.
    ClosedByUser,
    /// The instrument closed or reset the connection, or the network failed.
    ClosedByPeer,
    /// Writing to the instrument failed part-way; a partly sent message
    /// cannot be taken back, so the link was reset.
    SendFailed,
    /// The link was reset on purpose to resynchronise: a request stayed
    /// unanswered longer than the late-reply window, so replies could no
    /// longer be matched safely.
    Resynchronised,
    /// The instrument broke the wire protocol beyond repair.
    Protocol,
    /// Reconnection was configured and every attempt failed.
    GaveUp,
    /// A thread of the client failed unexpectedly (a bug: please report it).
    Internal,
}

impl DisconnectReason {
    /// A short description, as used in messages.
    pub fn describe(self) -> &'static str {
        match self {
            DisconnectReason::NotConnected => "not connected",
            DisconnectReason::ClosedByUser => "closed by the user",
            DisconnectReason::ClosedByPeer => "closed by the instrument or the network",
            DisconnectReason::SendFailed => "sending failed",
            DisconnectReason::Resynchronised => "reset to resynchronise replies",
            DisconnectReason::Protocol => "protocol error",
            DisconnectReason::GaveUp => "gave up reconnecting",
            DisconnectReason::Internal => "internal failure",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The kind of an [`Error`], without its details: what callers and tests
/// match on when the fields do not matter.
///
/// ```
/// use flamingo_client::{Error, ErrorKind};
/// assert_eq!(Error::invalid("x").kind(), ErrorKind::InvalidArgument);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Timeout`].
    Timeout,
    /// [`Error::Disconnected`].
    Disconnected,
    /// [`Error::Refused`].
    Refused,
    /// [`Error::Busy`].
    Busy,
    /// [`Error::Protocol`].
    Protocol,
    /// [`Error::TooLarge`].
    TooLarge,
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::Connect`].
    Connect,
    /// [`Error::Io`].
    Io,
}

/// Everything that can go wrong talking to the microscope.
///
/// ```
/// use flamingo_client::{Error, ErrorKind, TimeoutPhase};
/// use std::time::Duration;
///
/// let e = Error::timeout(TimeoutPhase::Reply, "STAGE_POSITION_GET reply", Duration::from_millis(300));
/// assert!(e.is_timeout());
/// assert_eq!(e.kind(), ErrorKind::Timeout);
/// assert_eq!(e.to_string(), "timed out after 0.300 s waiting for STAGE_POSITION_GET reply");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operation's deadline passed before it completed.
    Timeout {
        /// Which part of the operation was under way.
        phase: TimeoutPhase,
        /// What was being waited for, in words.
        what: String,
        /// The timeout that was given.
        after: Duration,
    },
    /// The connection is closed or broke; in-flight and later requests fail with this.
    Disconnected {
        /// Why, as a value to match on.
        reason: DisconnectReason,
        /// Why, in words (what the operating system or the client saw).
        detail: String,
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
    /// The kind of error, without its details.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Disconnected { .. } => ErrorKind::Disconnected,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Connect { .. } => ErrorKind::Connect,
            Error::Io(_) => ErrorKind::Io,
        }
    }
    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
    /// True for [`Error::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected { .. })
    }
    /// The timeout phase, for [`Error::Timeout`].
    pub fn timeout_phase(&self) -> Option<TimeoutPhase> {
        match self {
            Error::Timeout { phase, .. } => Some(*phase),
            _ => None,
        }
    }
    /// The disconnect reason, for [`Error::Disconnected`].
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        match self {
            Error::Disconnected { reason, .. } => Some(*reason),
            _ => None,
        }
    }
    /// A copy of this error, for an outcome reported more than once or to
    /// several waiters (`Error` is not `Clone`: it may hold an
    /// `io::Error`, which is rebuilt from its kind and message).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Timeout { phase, what, after } => Error::timeout(*phase, what.clone(), *after),
            Error::Disconnected { reason, detail } => Error::disconnected(*reason, detail.clone()),
            Error::Refused { code, status } => Error::Refused {
                code: *code,
                status: *status,
            },
            Error::Busy { code, status } => Error::Busy {
                code: *code,
                status: *status,
            },
            Error::Protocol { detail } => Error::protocol(detail.clone()),
            Error::TooLarge { what, size, limit } => Error::TooLarge {
                what,
                size: *size,
                limit: *limit,
            },
            Error::InvalidArgument { what } => Error::invalid(what.clone()),
            Error::Connect { addr, source } => Error::Connect {
                addr: addr.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Io(e) => Error::Io(io::Error::new(e.kind(), e.to_string())),
        }
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
    pub fn disconnected(reason: DisconnectReason, detail: impl Into<String>) -> Error {
        Error::Disconnected {
            reason,
            detail: detail.into(),
        }
    }
    /// Shorthand constructor for [`Error::Timeout`].
    pub fn timeout(phase: TimeoutPhase, what: impl Into<String>, after: Duration) -> Error {
        Error::Timeout {
            phase,
            what: what.into(),
            after,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout { phase, what, after } => write!(
                f,
                "timed out after {:.3} s waiting for {what}{}",
                after.as_secs_f64(),
                phase.hint()
            ),
            Error::Disconnected { reason, detail } => match reason {
                DisconnectReason::ClosedByUser | DisconnectReason::NotConnected => {
                    write!(f, "disconnected: {detail}")
                }
                _ => write!(
                    f,
                    "disconnected: {detail} (check the network and that the microscope server is running)"
                ),
            },
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
            other => Error::disconnected(DisconnectReason::ClosedByPeer, other.to_string()),
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
