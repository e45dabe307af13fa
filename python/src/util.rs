//! What every facade of the extension shares: library errors raised as the
//! classes of `flamingo_client.errors`, blocking calls with the GIL
//! released, timeouts in seconds, and messages from their wire bytes.

use std::time::Duration;

use flamingo_client::codec::{Message, MESSAGE_LEN};
use flamingo_client::Error;
use pyo3::prelude::*;

/// Stands for "no deadline" where the library wants an instant it can add
/// to: far beyond any session, small enough for `Instant + d`.
pub const FOREVER: Duration = Duration::from_secs(365 * 86_400);

pub type R<T> = flamingo_client::Result<T>;

/// The `flamingo_client.errors` class for a library error, and the
/// command code and status for refusals.
fn error_class(e: &Error) -> (&'static str, Option<(u32, u32)>) {
    match e {
        Error::Timeout { .. } => ("FlamingoTimeoutError", None),
        Error::Disconnected { .. } => ("DisconnectedError", None),
        Error::Refused { code, status, .. } => ("RefusedError", Some((code.0, *status))),
        Error::Busy { code, status, .. } => ("BusyError", Some((code.0, *status))),
        Error::Protocol { .. } => ("ProtocolError", None),
        Error::TooLarge { .. } => ("TooLargeError", None),
        Error::InvalidArgument { .. } => ("InvalidArgumentError", None),
        Error::Connect { .. } => ("ConnectError", None),
        Error::Io(_) => ("FlamingoIOError", None),
        _ => ("FlamingoError", None),
    }
}

/// The Python exception for a library error, looked up by name at raise time.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let (name, refusal) = error_class(&e);
    let build = || -> PyResult<PyErr> {
        let cls = py.import("flamingo_client.errors")?.getattr(name)?;
        let inst = cls.call1((e.to_string(),))?;
        if let Some((code, status)) = refusal {
            inst.setattr("code", code)?;
            inst.setattr("status", status)?;
        }
        Ok(PyErr::from_value(inst))
    };
    build().unwrap_or_else(|import_failed| import_failed)
}

/// Runs a blocking library call with the GIL released. A thread that comes
/// back while the interpreter finalises hangs in PyO3 instead of being
/// unwound through this frame (see Cargo.toml).
pub fn block<T: Send>(py: Python<'_>, f: impl FnOnce() -> R<T> + Send) -> PyResult<T> {
    py.detach(f).map_err(|e| to_py(py, e))
}

/// `InvalidArgumentError(what)`.
pub fn invalid(py: Python<'_>, what: String) -> PyErr {
    to_py(py, Error::invalid(what))
}

/// A timeout in seconds from Python: `None` means no deadline.
pub fn secs(py: Python<'_>, s: Option<f64>) -> PyResult<Duration> {
    match s {
        None => Ok(FOREVER),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(Duration::from_secs_f64(v).min(FOREVER)),
        Some(v) => Err(invalid(
            py,
            format!("a timeout must be a non-negative number of seconds or None, not {v}"),
        )),
    }
}

/// A message from its 128 wire bytes (markers checked).
pub fn decode(py: Python<'_>, bytes: &[u8]) -> PyResult<Message> {
    let arr: &[u8; MESSAGE_LEN] = bytes.try_into().map_err(|_| {
        invalid(
            py,
            format!("a message is {MESSAGE_LEN} bytes, not {}", bytes.len()),
        )
    })?;
    Message::decode(arr).map_err(|e| invalid(py, format!("not a message: {e}")))
}
