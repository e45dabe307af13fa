"""A drop-in for the PyQt GUI's socket client, backed by the Rust core.

The lab GUI (py2flamingo) talks to the microscope through
``py2flamingo.core.socket_reader.CommandClient``. This module offers a class
with the same interface, so the GUI switches by changing one import::

    # from .socket_reader import CommandClient
    from flamingo_client.compat import CommandClient

What changes underneath: replies are matched to the request that asked
(one FIFO per command code in wire order), so concurrent senders of one
code each get their own reply instead of overwriting each other's pending
slot; a late reply is discarded instead of being given to the next caller;
additional data is always read with its message; the reader never stalls.

The constructor takes the connected command socket as before. The core
opens its own connection to the same address (the instrument serves several
command clients) and the given socket stays the caller's: while the client
runs, it is kept drained so the instrument never finds its receive buffer
full; :meth:`CommandClient.pause` stops that drain so the caller can read the
socket synchronously, as with the original.
"""

import logging
import select
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .client import Client, Event, Subscription
from .errors import FlamingoTimeoutError, InvalidArgumentError
from .message import _LAYOUT, MESSAGE_LEN, Message, _code_name

__all__ = ["CommandClient", "ParsedMessage", "MessageDispatcher", "UNSOLICITED_COMMANDS"]

logger = logging.getLogger("flamingo_client.compat")

START_MARKER = 0xF321E654
END_MARKER = 0xFEDC4321

#: Codes the instrument sends on its own (motion stopped, idle, stack
#: complete, progress size and value, images saved).
UNSOLICITED_COMMANDS = {0x6010, 0xA002, 0x3011, 0x9003, 0x9004, 0x9008}

Handler = Callable[["ParsedMessage"], None]


@dataclass
class ParsedMessage:
    """A received message, with the field names the GUI's code uses."""

    raw_data: bytes
    start_marker: int
    command_code: int
    status_code: int
    hardware_id: int
    subsystem_id: int
    client_id: int
    int32_data0: int
    int32_data1: int
    int32_data2: int
    cmd_data_bits: int
    value: float
    additional_data_size: int
    data_field: bytes
    end_marker: int
    timestamp: float = field(default_factory=time.time)
    additional_data: Optional[bytes] = None

    @property
    def is_valid(self) -> bool:
        return self.start_marker == START_MARKER and self.end_marker == END_MARKER

    @property
    def is_unsolicited(self) -> bool:
        return self.command_code in UNSOLICITED_COMMANDS

    @property
    def command_name(self) -> str:
        name = _code_name(self.command_code)
        return name if not name.startswith("0x") else f"UNKNOWN_{name}"

    @property
    def double_data(self) -> float:
        """Alias of :attr:`value` (the protocol's name for the field)."""
        return self.value

    @staticmethod
    def from_raw(raw: bytes, data: Optional[bytes]) -> "ParsedMessage":
        """Parses the 128 bytes of a message (one ``struct.unpack``)."""
        f = _LAYOUT.unpack(raw)
        return ParsedMessage(
            raw, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11],
            f[12], f[13], additional_data=data if data else None,
        )

    @staticmethod
    def from_message(m: Message, data: Optional[bytes]) -> "ParsedMessage":
        raw = m.to_bytes()
        return ParsedMessage(
            raw_data=raw,
            start_marker=START_MARKER,
            command_code=m.code,
            status_code=m.status,
            hardware_id=m.hardware_id,
            subsystem_id=m.subsystem_id,
            client_id=m.client_id,
            int32_data0=m.int32_data0,
            int32_data1=m.int32_data1,
            int32_data2=m.int32_data2,
            cmd_data_bits=m.flags,
            value=m.double_data,
            additional_data_size=m.additional_data_len,
            data_field=raw[52:124],
            end_marker=END_MARKER,
            additional_data=data if data else None,
        )


class MessageDispatcher:
    """The callback registry (``CommandClient.dispatcher``), with the
    original's method names. Handlers run on the core's dispatcher thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: Dict[int, List[Handler]] = {}
        self._stats = {
            "messages_received": 0,
            "responses_dispatched": 0,
            "callbacks_dispatched": 0,
            "messages_dropped": 0,
        }

    def register_callback_handler(self, command_code: int, handler: Handler) -> None:
        with self._lock:
            self._handlers.setdefault(int(command_code), []).append(handler)

    def unregister_callback_handler(self, command_code: int, handler: Handler) -> None:
        with self._lock:
            try:
                self._handlers.get(int(command_code), []).remove(handler)
            except ValueError:
                pass

    def get_stats(self) -> Dict[str, int]:
        return dict(self._stats)

    def _deliver(self, ev: Event) -> None:
        if ev.message is None:
            return
        self._stats["messages_received"] += 1
        with self._lock:
            handlers = list(self._handlers.get(ev.message.code, ()))
        if not handlers:
            self._stats["messages_dropped"] += 1
            return
        msg = ParsedMessage.from_message(ev.message, ev.data)
        for h in handlers:
            try:
                h(msg)
                self._stats["callbacks_dispatched"] += 1
            except Exception:
                logger.exception("callback handler for 0x%04X raised", ev.message.code)


def _peer(sock_or_addr: Union[socket.socket, str, Tuple[str, int]]) -> str:
    if isinstance(sock_or_addr, socket.socket):
        host, port = sock_or_addr.getpeername()[:2]
        return f"{host}:{port}"
    if isinstance(sock_or_addr, tuple):
        return f"{sock_or_addr[0]}:{sock_or_addr[1]}"
    return str(sock_or_addr)


class _Drain:
    """Keeps the caller's socket read (and discarded) while not paused."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stop = threading.Event()
        self.resume = threading.Event()
        self.resume.set()
        self.paused = threading.Event()
        self.thread = threading.Thread(target=self._run, name="flamingo-compat-drain", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.resume.is_set():
                self.paused.set()
                self.resume.wait(0.1)
                continue
            self.paused.clear()
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.1)
                if ready and not self.resume.is_set():
                    continue
                if ready and not self.sock.recv(65536):
                    return
            except (OSError, ValueError):
                return

    def close(self) -> None:
        self.stop.set()
        self.resume.set()
        if self.thread is not threading.current_thread():
            self.thread.join(2.0)


class CommandClient:
    """The GUI's ``CommandClient`` interface on the Rust core.

    ``CommandClient(command_socket, on_closed=None)``: the connected command
    socket (its peer address is used; an ``"host:port"`` string or a
    ``(host, port)`` tuple works too). ``on_closed(reason)`` is called once
    when the link is lost (not after :meth:`stop`).
    """

    def __init__(
        self,
        command_socket: Union[socket.socket, str, Tuple[str, int]],
        on_closed: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._socket = command_socket if isinstance(command_socket, socket.socket) else None
        self._address = _peer(command_socket)
        self._on_closed = on_closed
        self._dispatcher = MessageDispatcher()
        self._client: Optional[Client] = None
        self._drain: Optional[_Drain] = None
        self._watcher: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._stopping = False
        self._closed_notified = False
        self._timeouts = 0
        self._finalizer: Optional[weakref.finalize] = None

    # ---- lifecycle

    def start(self) -> None:
        """Connects the core (once) and starts delivering callbacks."""
        with self._lock:
            if self._client is not None:
                return
            self._stopping = False
            client = Client(self._address)
            ref = weakref.ref(self)
            client.on_event(_weak_event(ref))
            # Link loss is watched on its own subscription (connection events
            # only): callbacks are not guaranteed to see the client's last event.
            watcher = threading.Thread(
                target=_watch, args=(client.subscribe(codes=[]), ref),
                name="flamingo-compat-watch", daemon=True,
            )
            watcher.start()
            self._client = client
            self._watcher = watcher
            if self._socket is not None:
                self._drain = _Drain(self._socket)
            self._finalizer = weakref.finalize(self, _shutdown, client, self._drain, watcher)

    def stop(self) -> None:
        """Closes the core's connection and stops the drain (joins every thread)."""
        with self._lock:
            client, drain, watcher = self._client, self._drain, self._watcher
            self._client, self._drain, self._watcher = None, None, None
            self._stopping = True
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        _shutdown(client, drain, watcher)

    def is_running(self) -> bool:
        c = self._client
        return c is not None and c.state in ("connected", "reconnecting")

    def pause(self, wait_timeout: float = 1.0) -> None:
        """Stops draining the caller's socket (returns once the drain has
        stopped reading), so the caller can read it synchronously. The
        core's own connection is not affected."""
        d = self._drain
        if d is not None:
            d.resume.clear()
            d.paused.wait(wait_timeout)

    def resume(self) -> None:
        d = self._drain
        if d is not None:
            d.resume.set()

    def is_paused(self) -> bool:
        d = self._drain
        return d is not None and not d.resume.is_set()

    # ---- requests

    def send_command(
        self, command_bytes: bytes, expected_response_code: int, timeout: Optional[float] = 3.0
    ) -> Optional[ParsedMessage]:
        """Sends a 128-byte command (anything after the 128 bytes is sent as
        its additional data) and returns the reply, or None on timeout.

        The reply is the one to *this* request. When ``expected_response_code``
        differs from the command's code, or the code only ever arrives
        unsolicited, the first message of that code after the send is returned.
        Raises :class:`DisconnectedError` (a ``ConnectionError``, as a failed
        ``sendall`` would) when the link is down.
        """
        if self._client is None:
            self.start()
        client = self._client
        assert client is not None
        if len(command_bytes) < MESSAGE_LEN:
            raise InvalidArgumentError(
                f"a command is {MESSAGE_LEN} bytes, not {len(command_bytes)}"
            )
        raw = bytes(command_bytes[:MESSAGE_LEN])
        data = bytes(command_bytes[MESSAGE_LEN:])
        code = int.from_bytes(raw[4:8], "little")
        expected = int(expected_response_code)
        native = client._native
        try:
            if expected == code and expected not in UNSOLICITED_COMMANDS:
                try:
                    # The native layer validates the markers and sends the
                    # bytes as given, with the reply-request flag set.
                    reply, extra, _ = native.request(raw, data, timeout, False)
                    self._dispatcher._stats["responses_dispatched"] += 1
                    return ParsedMessage.from_raw(reply, extra)
                except InvalidArgumentError:
                    # Bad markers raise again below; a code the core treats as
                    # unsolicited is waited for as an event.
                    pass
            after = native.send(raw, data)
            ev = Event._from_native(native.wait_for_code(expected, after, timeout))
            assert ev.message is not None
            return ParsedMessage.from_message(ev.message, ev.data)
        except FlamingoTimeoutError:
            self._timeouts += 1
            logger.warning("timeout waiting for response to 0x%04X", expected)
            return None

    # ---- callbacks

    def register_callback(self, command_code: int, handler: Handler) -> None:
        """Calls ``handler(ParsedMessage)`` for each unsolicited message of ``command_code``."""
        self._dispatcher.register_callback_handler(command_code, handler)

    def unregister_callback(self, command_code: int, handler: Handler) -> None:
        self._dispatcher.unregister_callback_handler(command_code, handler)

    @property
    def dispatcher(self) -> MessageDispatcher:
        return self._dispatcher

    @property
    def client(self) -> Optional[Client]:
        """The native :class:`Client` underneath (its facades are available too)."""
        return self._client

    def get_stats(self) -> Dict[str, Any]:
        c = self._client
        return {
            "reader": c.stats() if c is not None else {},
            "dispatcher": self._dispatcher.get_stats(),
            "timeouts": self._timeouts,
        }

    def _event(self, ev: Event) -> None:
        if ev.message is not None:
            self._dispatcher._deliver(ev)

    def _link_lost(self, reason: str) -> None:
        if self._stopping or self._closed_notified:
            return
        self._closed_notified = True
        if self._on_closed is not None:
            try:
                self._on_closed(reason)
            except Exception:
                logger.exception("on_closed callback raised")


def _weak_event(ref: "weakref.ReferenceType[CommandClient]") -> Callable[[Event], None]:
    def deliver(ev: Event) -> None:
        cc = ref()
        if cc is not None:
            cc._event(ev)

    return deliver


def _watch(sub: Subscription, ref: "weakref.ReferenceType[CommandClient]") -> None:
    """Reports the first link loss; ends when the client is closed."""
    with sub:
        for ev in sub:
            if ev.kind in ("disconnected", "closed"):
                cc = ref()
                if cc is None:
                    return
                cc._link_lost(str(ev.details.get("reason", ev.kind)))
                del cc


def _shutdown(
    client: Optional[Client], drain: Optional[_Drain], watcher: Optional[threading.Thread]
) -> None:
    if drain is not None:
        drain.close()
    if client is not None:
        client.close()
    if watcher is not None and watcher is not threading.current_thread():
        watcher.join(5.0)
