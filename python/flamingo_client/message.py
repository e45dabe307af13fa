"""The 128-byte control message and the command codes."""

import enum
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional

from . import _native
from .errors import InvalidArgumentError

__all__ = ["Message", "Reply", "Code", "TRIGGER_CALL_BACK", "MESSAGE_LEN"]

#: Size of every control message, in bytes.
MESSAGE_LEN = 128
#: Start and end markers of every message.
START_MARKER = 0xF321E654
END_MARKER = 0xFEDC4321
#: The flag that asks the instrument to answer (cmdDataBits0 bit 31).
TRIGGER_CALL_BACK = 0x8000_0000

# start, code, status, hardwareID, subsystemID, clientID, int32Data0..2,
# cmdDataBits0, doubleData, addDataBytes, 72-byte buffer, end.
_LAYOUT = struct.Struct("<IIIIIIiiiIdI72sI")
assert _LAYOUT.size == MESSAGE_LEN

#: Every command code the library knows, by name (``Code.STAGE_POSITION_GET``...).
Code = enum.IntEnum("Code", dict(_native.command_codes()))  # type: ignore[misc]
Code.__doc__ = "Command codes of the Flamingo protocol (the library's catalogue)."


def _code_name(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"0x{code:04X}"


@dataclass(frozen=True)
class Message:
    """One control message, with the protocol's field names.

    ``text`` is the 72-byte buffer up to its first NUL byte, decoded as UTF-8.
    """

    code: int
    status: int = 0
    hardware_id: int = 0
    subsystem_id: int = 0
    client_id: int = 0
    int32_data0: int = 0
    int32_data1: int = 0
    int32_data2: int = 0
    flags: int = 0
    double_data: float = 0.0
    additional_data_len: int = 0
    buffer: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if len(self.buffer) > 72:
            raise InvalidArgumentError(
                f"the message buffer holds 72 bytes, not {len(self.buffer)}"
            )

    @staticmethod
    def with_text(code: int, text: str, **fields: Any) -> "Message":
        """A message whose buffer carries ``text`` (at most 72 bytes of UTF-8, no NUL)."""
        raw = text.encode("utf-8")
        if b"\0" in raw or len(raw) > 72:
            raise InvalidArgumentError(
                f"text of {len(raw)} bytes does not fit the 72-byte buffer, or contains NUL"
            )
        return Message(code, buffer=raw, **fields)

    @property
    def text(self) -> str:
        """The buffer up to its first NUL, as text (invalid UTF-8 replaced)."""
        return self.buffer.split(b"\0", 1)[0].decode("utf-8", "replace")

    @property
    def code_name(self) -> str:
        """The code's catalogue name, or its hex value."""
        return _code_name(self.code)

    def to_bytes(self) -> bytes:
        """The 128 bytes on the wire."""
        try:
            return _LAYOUT.pack(
                START_MARKER, self.code, self.status, self.hardware_id, self.subsystem_id,
                self.client_id, self.int32_data0, self.int32_data1, self.int32_data2,
                self.flags, self.double_data, self.additional_data_len,
                self.buffer.ljust(72, b"\0"), END_MARKER,
            )
        except struct.error as e:
            raise InvalidArgumentError(f"a message field is out of range: {e}") from None

    @staticmethod
    def from_bytes(raw: bytes) -> "Message":
        """Parses 128 bytes (markers checked)."""
        if len(raw) != MESSAGE_LEN:
            raise InvalidArgumentError(f"a message is 128 bytes, not {len(raw)}")
        f = _LAYOUT.unpack(raw)
        if f[0] != START_MARKER or f[-1] != END_MARKER:
            raise InvalidArgumentError("bad start or end marker")
        return Message(
            code=f[1], status=f[2], hardware_id=f[3], subsystem_id=f[4], client_id=f[5],
            int32_data0=f[6], int32_data1=f[7], int32_data2=f[8], flags=f[9],
            double_data=f[10], additional_data_len=f[11], buffer=f[12].rstrip(b"\0"),
        )

    def replace(self, **fields: Any) -> "Message":
        """A copy with some fields changed."""
        return replace(self, **fields)


@dataclass(frozen=True)
class Reply:
    """A reply to :meth:`Client.request`: the message, its additional data, and
    the reader's sequence number (events with a larger one arrived later)."""

    message: Message
    data: bytes
    seq: int

    @staticmethod
    def _from_native(t: Any) -> "Reply":
        return Reply(Message.from_bytes(t[0]), t[1], t[2])


def build_message(code_or_message: Any, fields: Dict[str, Any]) -> Message:
    """A Message from a code and fields, or a Message as given (fields applied)."""
    if isinstance(code_or_message, Message):
        return code_or_message.replace(**fields) if fields else code_or_message
    text: Optional[str] = fields.pop("text", None)
    if text is not None:
        return Message.with_text(int(code_or_message), text, **fields)
    return Message(int(code_or_message), **fields)
