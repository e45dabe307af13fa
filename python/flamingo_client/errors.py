"""The exceptions of flamingo_client.

Every failure is a :class:`FlamingoError`. The subclasses also derive from
the built-in exception a Python programmer would expect, so existing
``except TimeoutError`` / ``except ConnectionError`` / ``except ValueError``
blocks keep working::

    FlamingoError
    ├── FlamingoTimeoutError   (also TimeoutError)
    ├── DisconnectedError      (also ConnectionError)
    ├── ConnectError           (also ConnectionError): the TCP connection could not be opened
    ├── RefusedError           the instrument refused the command (.code, .status)
    ├── BusyError              the instrument is busy (.code, .status)
    ├── ProtocolError          the peer broke the wire protocol
    ├── TooLargeError          a size exceeds a configured limit
    ├── InvalidArgumentError   (also ValueError): rejected before anything was sent
    └── FlamingoIOError        (also OSError): any other I/O failure
"""

from typing import Optional

__all__ = [
    "FlamingoError",
    "FlamingoTimeoutError",
    "DisconnectedError",
    "ConnectError",
    "RefusedError",
    "BusyError",
    "ProtocolError",
    "TooLargeError",
    "InvalidArgumentError",
    "FlamingoIOError",
]


class FlamingoError(Exception):
    """Base class of every error raised by flamingo_client."""


class FlamingoTimeoutError(FlamingoError, TimeoutError):
    """The operation's deadline passed before it completed."""


class DisconnectedError(FlamingoError, ConnectionError):
    """The connection is closed or broke; in-flight and later requests fail with this."""


class ConnectError(FlamingoError, ConnectionError):
    """The TCP connection could not be established (wrong address, server not running)."""


class _StatusError(FlamingoError):
    #: The command code the instrument answered.
    code: Optional[int] = None
    #: The status it sent.
    status: Optional[int] = None


class RefusedError(_StatusError):
    """The instrument answered with a status that means it refused the command.

    ``code`` and ``status`` hold the command code and the status it sent.
    """


class BusyError(_StatusError):
    """The instrument answered "busy" (for example while a workflow runs).

    ``code`` and ``status`` hold the command code and the status it sent.
    """


class ProtocolError(FlamingoError):
    """The peer broke the wire protocol (bad markers, a reply of the wrong shape...)."""


class TooLargeError(FlamingoError):
    """A size field or an argument exceeds a configured limit. Nothing was allocated."""


class InvalidArgumentError(FlamingoError, ValueError):
    """An argument was rejected before anything was sent."""


class FlamingoIOError(FlamingoError, OSError):
    """Any other I/O failure (for example a file that cannot be written)."""
