"""The names the GUI's core package imports from its socket reader."""

from .socket_reader import (
    UNSOLICITED_COMMANDS,
    CommandClient,
    MessageDispatcher,
    ParsedMessage,
    ProtocolCommands,
    SocketReader,
)
from .tcp_connection import TCPConnection

__all__ = [
    "TCPConnection", "SocketReader", "MessageDispatcher", "CommandClient", "ParsedMessage",
    "ProtocolCommands", "UNSOLICITED_COMMANDS",
]
