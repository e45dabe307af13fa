"""A drop-in for the lab GUI's socket reader, on one connection.

The lab GUI (py2flamingo) talks to the microscope through
``py2flamingo.core.socket_reader``: a ``CommandClient`` whose background
``SocketReader`` reads the command socket and a ``MessageDispatcher`` that
routes replies and callbacks. Besides that, the GUI writes some commands
straight on the socket (``sendall``: laser levels, workflow start and stop,
settings, debug queries) and reads some replies from it (``recv``).

This module exports every name the GUI imports from ``socket_reader``
(``CommandClient``, ``SocketReader``, ``MessageDispatcher``,
``ParsedMessage``, ``ProtocolCommands``, ``UNSOLICITED_COMMANDS``) with the
same meaning, backed by the Rust core. Switch without editing the GUI::

    import flamingo_client.compat
    flamingo_client.compat.install()      # before or after py2flamingo is imported
    ...                                   # run the GUI
    flamingo_client.compat.uninstall()    # back to the GUI's own module

or set ``FLAMINGO_CLIENT_COMPAT=1`` in the environment before starting
Python (a ``.pth`` hook in the wheel calls :func:`install`).

**One connection.** When the reader starts, it takes the connected socket
it was given over: the library connects to the same address, the socket's
own TCP connection is closed, and the socket object itself (every reference
the GUI holds) becomes a :class:`CoreSocket`, a real socket whose traffic
goes through the library's connection:

- ``sendall``/``send`` parse the bytes into messages (a message and the
  additional data its header announces, which may come in a second
  ``sendall``) and write each one, flags as given, in order with everything
  else the client sends: a raw write followed by a request reaches the
  instrument first;
- ``recv`` (and ``select``, timeouts, ``settimeout``/``gettimeout``) reads
  by this **rule**: a raw read receives the reply to the latest message
  written raw, and nothing else. Replies of one code come in order on one
  connection, so answers still owed to earlier raw writes of that code come
  first: every raw write the instrument answers (flagged with
  TRIGGER_CALL_BACK, or of a code answered without the flag: 0x1008,
  0x1009, 0x3005, 0xA007) owes one answer, and each message of that code
  that arrives after such a write and that no request of the client claimed
  pays the oldest answer owed (it goes to the dispatcher). The reply is the
  first message of the same code that arrives after the latest write, that
  no request claimed and that pays no earlier write's answer, with its
  additional data right after its 128 bytes. Writing a message raw discards
  whatever of the previous reply was not read. A code that only ever
  arrives unsolicited (motion stopped, progress...) is never a raw reply;
  for LASER_LEVEL_GET, which the instrument also broadcasts, a message about
  another laser neither is the reply nor pays an earlier write's answer.
  Everything else goes to the dispatcher's callbacks, exactly once.

So an unpaused raw read (the GUI's workflow stop) gets its reply instead of
racing the reader for it, and a paused read of the settings text gets the
reply and its text and nothing else. :meth:`SocketReader.pause` has nothing
to stop: raw reads never compete with the reader.

**Callbacks** run on one Python thread named ``flamingo-compat-reader``.
Only the codes the dispatcher has handlers or pending requests for cross
into Python (filtered in the native layer); they wait in a queue of
``event_queue_depth`` events (default 10,000); if a slow handler lets it
fill, the oldest event is dropped, counted in ``get_stats()`` and logged.
"""

import contextlib
import errno
import importlib
import logging
import os
import queue
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

from .client import Client, Event, _check_outgoing
from .errors import (
    DisconnectedError,
    FlamingoTimeoutError,
    InvalidArgumentError,
    TooLargeError,
)
from .message import _LAYOUT, MESSAGE_LEN, Message, _code_name

__all__ = [
    "CommandClient",
    "SocketReader",
    "MessageDispatcher",
    "ParsedMessage",
    "ProtocolCommands",
    "UNSOLICITED_COMMANDS",
    "CoreSocket",
    "install",
    "uninstall",
    "installed",
    "is_installed",
    "configure",
]

logger = logging.getLogger("flamingo_client.compat")

START_MARKER = 0xF321E654
END_MARKER = 0xFEDC4321

#: Largest additional data a raw write may announce (the library's limit).
RAW_DATA_LIMIT = 64 * 1024 * 1024

_defaults: Dict[str, Any] = {
    "event_queue_depth": 10_000, "timeout": 3.0, "check_workflows": True, "soft_limits": False,
}

def configure(
    *,
    event_queue_depth: Optional[int] = None,
    timeout: Optional[float] = None,
    check_workflows: Optional[bool] = None,
    soft_limits: Optional[bool] = None,
) -> None:
    """Defaults for readers started from now on.

    ``event_queue_depth``: the queue of events waiting for callbacks
    (10,000). ``timeout``: the library connection's request timeout in
    seconds (raw writes wait at most that long to go out; 3). The safety
    checks of the CLI, on what the GUI sends (raw or through
    ``send_command``), refused with :class:`InvalidArgumentError` (a
    ``ValueError``) before anything is sent: ``check_workflows`` (on by
    default) checks every workflow start with the rules of ``workflow
    check``, naming the line; ``soft_limits`` (off by default) reads the
    stage's soft limits from the instrument when the reader starts and
    checks every move and workflow start against them."""
    if event_queue_depth is not None:
        if int(event_queue_depth) < 1:
            raise InvalidArgumentError("the event queue depth must be at least 1")
        _defaults["event_queue_depth"] = int(event_queue_depth)
    if timeout is not None:
        _defaults["timeout"] = float(timeout)
    if check_workflows is not None:
        _defaults["check_workflows"] = bool(check_workflows)
    if soft_limits is not None:
        _defaults["soft_limits"] = bool(soft_limits)


class ProtocolCommands(IntEnum):
    """Command codes, as the GUI's ``socket_reader`` names them."""

    STAGE_HOME = 0x6001
    STAGE_HALT = 0x6002
    STAGE_POSITION_SET_MOVE = 0x6004
    STAGE_POSITION_SET = 0x6005
    STAGE_VELOCITY_SET = 0x6006
    STAGE_POSITION_GET = 0x6008
    STAGE_SAVE_LOCATIONS_GET = 0x6009
    STAGE_SAVE_LOCATIONS_SET = 0x600A
    STAGE_WAIT_FOR_MOTION = 0x600F
    STAGE_MOTION_STOPPED = 0x6010
    SYSTEM_STATE_GET = 0xA007
    SYSTEM_STATE_IDLE = 0xA002
    SYSTEM_SCOPE_SETTINGS = 0x1007
    CAMERA_EXPOSURE_SET = 0x3001
    CAMERA_EXPOSURE_GET = 0x300A
    CAMERA_WORKFLOW_START = 0x3004
    CAMERA_WORKFLOW_STOP = 0x3005
    CAMERA_SNAPSHOT = 0x3006
    CAMERA_LIVE_VIEW_START = 0x3007
    CAMERA_LIVE_VIEW_STOP = 0x3008
    CAMERA_IMAGE_SIZE_GET = 0x3027
    CAMERA_PIXEL_SIZE_GET = 0x3042
    CAMERA_FIELD_OF_VIEW_GET = 0x3037
    LASER_LEVEL_SET = 0x2001
    LASER_LEVEL_GET = 0x2002
    LASER_PREVIEW_ENABLE = 0x2004
    LASER_PREVIEW_DISABLE = 0x2005
    LASER_ALL_DISABLE = 0x2007
    LED_SET = 0x4001
    LED_ENABLE = 0x4002
    LED_DISABLE = 0x4003
    FILTER_POSITION_SET = 0x5001
    FILTER_POSITION_GET = 0x5002
    ILLUMINATION_LEFT_ENABLE = 0x7004
    ILLUMINATION_LEFT_DISABLE = 0x7005
    ILLUMINATION_RIGHT_ENABLE = 0x7006
    ILLUMINATION_RIGHT_DISABLE = 0x7007


#: Codes the instrument sends on its own (motion stopped, idle, stack
#: complete, progress size and value, images saved).
UNSOLICITED_COMMANDS: Set[int] = {0x6010, 0xA002, 0x3011, 0x9003, 0x9004, 0x9008}

#: Unsolicited codes the GUI's dispatcher drops silently when nobody handles them.
_SILENT_DROPS = {0x9003, 0x9004, 0x6010}

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
        try:
            return ProtocolCommands(self.command_code).name
        except ValueError:
            name = _code_name(self.command_code)
            return name if not name.startswith("0x") else f"UNKNOWN_{name}"

    @property
    def double_data(self) -> float:
        """Alias of :attr:`value` (the protocol's name for the field)."""
        return self.value

    @staticmethod
    def from_raw(raw: bytes, data: Optional[bytes] = None) -> "ParsedMessage":
        """Parses the 128 bytes of a message (one ``struct.unpack``)."""
        f = _LAYOUT.unpack(raw)
        return ParsedMessage(
            bytes(raw), f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10],
            f[11], f[12], f[13], additional_data=data if data else None,
        )

    @staticmethod
    def from_message(m: Message, data: Optional[bytes]) -> "ParsedMessage":
        return ParsedMessage.from_raw(m.to_bytes(), data)


class MessageDispatcher:
    """Routes the messages the reader hands it, as the GUI's dispatcher does:
    a pending request of the code first (:meth:`register_pending_request`),
    else the callback handlers of the code, else the unsolicited queue (or a
    silent drop for progress and motion messages). Handlers run on the
    reader's thread, outside the lock; an exception is logged.

    Messages of codes with neither handlers nor pending requests are
    filtered out in the native layer and never reach Python (counted in the
    reader's ``events_filtered``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending_requests: Dict[int, "queue.Queue[ParsedMessage]"] = {}
        self._callback_handlers: Dict[int, List[Handler]] = {}
        self._unsolicited_queue: "queue.Queue[ParsedMessage]" = queue.Queue(maxsize=100)
        self._routers: "weakref.WeakSet[_Router]" = weakref.WeakSet()
        self._stats = {
            "messages_received": 0,
            "responses_dispatched": 0,
            "callbacks_dispatched": 0,
            "messages_dropped": 0,
        }

    def register_pending_request(self, command_code: int) -> "queue.Queue[ParsedMessage]":
        """A queue that receives the next message of ``command_code``."""
        q: "queue.Queue[ParsedMessage]" = queue.Queue(maxsize=1)
        with self._lock:
            if command_code in self._pending_requests:
                logger.warning("Overwriting pending request for command 0x%04X", command_code)
            self._pending_requests[int(command_code)] = q
            self._sync()
        return q

    def unregister_pending_request(self, command_code: int) -> None:
        with self._lock:
            self._pending_requests.pop(int(command_code), None)
            self._sync()

    def register_callback_handler(self, command_code: int, handler: Handler) -> None:
        with self._lock:
            self._callback_handlers.setdefault(int(command_code), []).append(handler)
            self._sync()

    def unregister_callback_handler(self, command_code: int, handler: Handler) -> None:
        with self._lock:
            try:
                self._callback_handlers.get(int(command_code), []).remove(handler)
            except ValueError:
                pass
            if not self._callback_handlers.get(int(command_code), True):
                del self._callback_handlers[int(command_code)]
            self._sync()

    def dispatch(self, message: ParsedMessage) -> None:
        """Routes one message (see the class)."""
        self._stats["messages_received"] += 1
        code = message.command_code
        handlers: List[Handler] = []
        with self._lock:
            q = self._pending_requests.pop(code, None)
            if q is not None:
                self._sync()
                try:
                    q.put_nowait(message)
                    self._stats["responses_dispatched"] += 1
                    return
                except queue.Full:
                    logger.error("Response queue full for 0x%04X", code)
            handlers = list(self._callback_handlers.get(code, ()))
        if handlers:
            for h in handlers:
                try:
                    h(message)
                    self._stats["callbacks_dispatched"] += 1
                except Exception as e:
                    logger.error("Callback handler error for 0x%04X: %s", code, e, exc_info=True)
            return
        if message.is_unsolicited and code not in _SILENT_DROPS:
            try:
                self._unsolicited_queue.put_nowait(message)
                return
            except queue.Full:
                logger.warning("Unsolicited queue full, dropping 0x%04X", code)
        self._stats["messages_dropped"] += 1

    def get_stats(self) -> Dict[str, int]:
        return dict(self._stats)

    # ---- the native filter

    def _codes(self) -> List[int]:
        return sorted(set(self._pending_requests) | set(self._callback_handlers))

    def _attach(self, router: "_Router") -> None:
        with self._lock:
            self._routers.add(router)
            router.set_codes(self._codes())

    def _sync(self) -> None:
        codes = self._codes()
        for r in list(self._routers):
            r.set_codes(codes)


# ------------------------------------------------------------------ the socket


class _Router:
    """The native router of one reader, and what its raw socket needs."""

    def __init__(self, native: Any, peer: Tuple[str, int], client: Client, checks: bool) -> None:
        self.native = native
        self.peer = peer
        # Weak: the reader thread holds this router, and must not keep a
        # client nobody else holds from being collected (and closed).
        self.client = weakref.ref(client)
        self.checks = checks
        self.consumed = 0  # bytes read from the raw socket so far
        self.lock = threading.Lock()  # one raw write at a time
        self.partial = bytearray()  # a message (and its data) not complete yet

    def set_codes(self, codes: List[int]) -> None:
        self.native.set_codes(codes)

    def write(self, sock: socket.socket, data: bytes) -> None:
        with self.lock:
            self.partial += data
            while len(self.partial) >= MESSAGE_LEN:
                start = int.from_bytes(self.partial[0:4], "little")
                end = int.from_bytes(self.partial[124:128], "little")
                if start != START_MARKER or end != END_MARKER:
                    self.partial.clear()
                    raise InvalidArgumentError(
                        "the bytes written are not a Flamingo message (bad start or end "
                        "marker); nothing was sent"
                    )
                n = int.from_bytes(self.partial[48:52], "little")
                if n > RAW_DATA_LIMIT:
                    self.partial.clear()
                    raise TooLargeError(
                        f"a message announces {n} bytes of additional data, more than the "
                        f"limit of {RAW_DATA_LIMIT}; nothing was sent"
                    )
                if len(self.partial) < MESSAGE_LEN + n:
                    return  # the rest of its data comes in a later write
                header = bytes(self.partial[:MESSAGE_LEN])
                extra = bytes(self.partial[MESSAGE_LEN:MESSAGE_LEN + n])
                del self.partial[:MESSAGE_LEN + n]
                client = self.client()
                if client is None:
                    raise DisconnectedError("the command connection is closed")
                _check_outgoing(client, self.checks, header, extra)
                self._discard(sock)
                self.native.raw_send(header, extra)

    def _discard(self, sock: socket.socket) -> None:
        """Drops the unread reply to the previous raw write (rule: a raw read
        receives the reply to the latest raw write only)."""
        left = self.native.raw_discard(self.consumed)
        if left == 0:
            return
        timeout = sock.gettimeout()
        try:
            sock.settimeout(1.0)  # they are already written: at most in transit
            while left > 0:
                chunk = socket.socket.recv(sock, min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
                self.consumed += len(chunk)
        except OSError:
            pass
        finally:
            sock.settimeout(timeout)


_routers: "weakref.WeakKeyDictionary[socket.socket, _Router]" = weakref.WeakKeyDictionary()


def _router_of(sock: socket.socket) -> _Router:
    r = _routers.get(sock)
    if r is None:
        raise DisconnectedError("the command connection is closed (the reader was stopped)")
    return r


class CoreSocket(socket.socket):
    """A command socket whose traffic goes through the library's connection
    (see the module's rule). It is a real socket (``fileno``, ``select``,
    timeouts) reading the reply to the latest raw write; writes go out as
    messages in order with the client's requests. ``getpeername`` gives the
    instrument's address. After the reader stops, writes raise
    :class:`DisconnectedError` (a ``ConnectionError``) and reads return
    ``b""``, as on a closed connection."""

    __slots__ = ()

    def sendall(self, data: Any, flags: int = 0) -> None:  # type: ignore[override]
        _router_of(self).write(self, bytes(data))

    def send(self, data: Any, flags: int = 0) -> int:  # type: ignore[override]
        b = bytes(data)
        _router_of(self).write(self, b)
        return len(b)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:  # type: ignore[override]
        data = super().recv(bufsize, flags)
        r = _routers.get(self)
        if r is not None:
            r.consumed += len(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:  # type: ignore[override]
        n = super().recv_into(buffer, nbytes, flags)
        r = _routers.get(self)
        if r is not None:
            r.consumed += n
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> Tuple[bytes, Any]:  # type: ignore[override]
        return self.recv(bufsize, flags), self.getpeername()

    def getpeername(self) -> Any:
        r = _routers.get(self)
        if r is None:
            raise OSError(errno.ENOTCONN, "the command connection is closed")
        return r.peer

    def close(self) -> None:
        _routers.pop(self, None)
        super().close()

    def __repr__(self) -> str:
        r = _routers.get(self)
        peer = f"{r.peer[0]}:{r.peer[1]}" if r is not None else "closed"
        return f"<flamingo_client.compat.CoreSocket fd={self.fileno()} instrument={peer}>"


def _peer(sock_or_addr: Union[socket.socket, str, Tuple[str, int]]) -> Tuple[str, int]:
    if isinstance(sock_or_addr, socket.socket):
        r = _routers.get(sock_or_addr)
        if r is not None:
            return r.peer
        host, port = sock_or_addr.getpeername()[:2]
        return (host, int(port))
    if isinstance(sock_or_addr, tuple):
        return (str(sock_or_addr[0]), int(sock_or_addr[1]))
    host, _, port = str(sock_or_addr).rpartition(":")
    return (host, int(port))


def _adopt(sock: socket.socket, handle: int, router: _Router) -> None:
    """Turns the caller's socket object into a CoreSocket on the raw pair and
    closes its own TCP connection (every reference the caller holds follows)."""
    timeout = sock.gettimeout()
    old = sock.detach()
    socket.socket.__init__(sock, fileno=handle)
    sock.__class__ = CoreSocket
    sock.settimeout(timeout)
    _routers[sock] = router
    with contextlib.suppress(OSError):
        socket.socket(fileno=old).close()


# ------------------------------------------------------------------ reader and client


class SocketReader:
    """The GUI's background reader, on the library's connection.

    ``SocketReader(command_socket, dispatcher, on_closed=None)``: the
    connected command socket (or ``"host:port"`` / ``(host, port)``), the
    :class:`MessageDispatcher` that gets every message no request and no raw
    read took, and ``on_closed(reason)``, called once if the link is lost
    (not after :meth:`stop`). :meth:`start` takes the socket over (see the
    module); its thread ``flamingo-compat-reader`` runs the dispatcher.
    """

    MESSAGE_SIZE = MESSAGE_LEN
    START_MARKER = START_MARKER
    END_MARKER = END_MARKER

    def __init__(
        self,
        command_socket: Union[socket.socket, str, Tuple[str, int]],
        dispatcher: MessageDispatcher,
        on_closed: Optional[Callable[[str], None]] = None,
        *,
        event_queue_depth: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self._socket = command_socket if isinstance(command_socket, socket.socket) else None
        self._address = _peer(command_socket)
        self._dispatcher = dispatcher
        self._on_closed = on_closed
        self._depth = int(event_queue_depth or _defaults["event_queue_depth"])
        self._timeout = float(timeout if timeout is not None else _defaults["timeout"])
        self._lock = threading.Lock()
        self._client: Optional[Client] = None
        self._router: Optional[_Router] = None
        self._thread: Optional[threading.Thread] = None
        self._raw_socket: Optional[socket.socket] = None
        self._stopping = False
        self._closed_notified = False
        self._paused = False
        self._final_stats: Dict[str, Any] = {}
        self._stats = {"messages_read": 0, "parse_errors": 0, "socket_errors": 0, "bytes_read": 0}

    def start(self) -> None:
        """Connects the library to the socket's peer (once), takes the socket
        over and starts delivering messages."""
        with self._lock:
            if self._client is not None:
                return
            host, port = self._address
            # The router drains the core's queue at once; a deep one absorbs
            # a burst while the router thread waits for a core.
            client = Client(f"{host}:{port}", timeout=self._timeout,
                            event_queue_depth=max(self._depth, 16_384))
            try:
                if _defaults["soft_limits"]:
                    client.enable_soft_limits()
                router = _Router(client._native.router(self._depth), self._address, client,
                                 bool(_defaults["check_workflows"]))
                handle = router.native.raw_open()
                if self._socket is not None and not isinstance(self._socket, CoreSocket):
                    _adopt(self._socket, handle, router)
                    raw = self._socket
                elif self._socket is not None:
                    # Already a CoreSocket (a second reader on it): it follows this one.
                    socket.socket.close(self._socket)
                    socket.socket.__init__(self._socket, fileno=handle)
                    _routers[self._socket] = router
                    raw = self._socket
                else:
                    raw = CoreSocket(fileno=handle)
                    _routers[raw] = router
            except BaseException:
                client.close()
                raise
            self._stopping = False
            self._client, self._router, self._raw_socket = client, router, raw
            self._dispatcher._attach(router)
            t = threading.Thread(target=_read_loop, args=(weakref.ref(self), router),
                                 name="flamingo-compat-reader", daemon=True)
            self._thread = t
            t.start()

    def stop(self) -> None:
        """Closes the library's connection and joins the reader thread. The
        socket then reads as closed; :meth:`start` connects again."""
        with self._lock:
            client, thread, raw, router = self._client, self._thread, self._raw_socket, self._router
            self._client, self._thread, self._router = None, None, None
            self._stopping = True
        if raw is not None:
            _routers.pop(raw, None)
        if client is not None:
            client.close()
        if router is not None:
            router.native.close()
            self._final_stats = dict(router.native.stats())
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def is_running(self) -> bool:
        c = self._client
        return c is not None and c.state in ("connected", "reconnecting")

    def pause(self, wait_timeout: float = 1.0) -> None:
        """Kept for the GUI: raw reads never compete with the reader (see the
        module's rule), so there is nothing to stop; returns at once."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def is_paused(self) -> bool:
        return self._paused

    @property
    def socket(self) -> Optional[socket.socket]:
        """The raw socket (the caller's own object once taken over)."""
        return self._raw_socket

    @property
    def client(self) -> Optional[Client]:
        return self._client

    def get_stats(self) -> Dict[str, Any]:
        """The GUI's reader counters, plus the native router's:
        ``events_dropped`` (the queue for callbacks was full: logged too),
        ``events_filtered`` (no handler), ``raw_replies``..."""
        d: Dict[str, Any] = dict(self._stats)
        r = self._router
        d.update(r.native.stats() if r is not None else self._final_stats)
        return d

    def _notify_closed(self, reason: str) -> None:
        if self._stopping or self._closed_notified:
            return
        self._closed_notified = True
        if self._on_closed is not None:
            try:
                self._on_closed(reason)
            except Exception as e:
                logger.error("on_closed callback raised: %s", e, exc_info=True)


def _read_loop(ref: "weakref.ReferenceType[SocketReader]", router: _Router) -> None:
    """``flamingo-compat-reader``: hands each message to the dispatcher."""
    seen_dropped = 0
    while True:
        status, raw, dropped = router.native.recv(None)
        if dropped > seen_dropped:
            logger.warning(
                "%d message(s) dropped before their callbacks ran (%d in all): "
                "handlers fell behind a full queue of %d; configure(event_queue_depth=...) "
                "or make handlers faster", dropped - seen_dropped, dropped,
                router.native.stats()["queue_depth"],
            )
            seen_dropped = dropped
        if status == 2:
            return
        if status != 0:
            continue
        reader = ref()
        if reader is None:
            return
        ev = Event._from_native(raw)
        if ev.message is None:
            if ev.kind in ("disconnected", "closed"):
                reader._notify_closed(str(ev.details.get("reason", ev.kind)))
        else:
            msg = ParsedMessage.from_message(ev.message, ev.data)
            reader._stats["messages_read"] += 1
            reader._stats["bytes_read"] += MESSAGE_LEN + len(ev.data or b"")
            reader._dispatcher.dispatch(msg)
        del reader


class CommandClient:
    """The GUI's ``CommandClient``, on the Rust core and one connection.

    ``CommandClient(command_socket, on_closed=None)``: the connected command
    socket (or ``"host:port"`` / ``(host, port)``), and ``on_closed(reason)``,
    called once when the link is lost (not after :meth:`stop`). Keywords
    ``event_queue_depth`` and ``timeout`` override :func:`configure`'s.
    """

    def __init__(
        self,
        command_socket: Union[socket.socket, str, Tuple[str, int]],
        on_closed: Optional[Callable[[str], None]] = None,
        *,
        event_queue_depth: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self._socket = command_socket if isinstance(command_socket, socket.socket) else None
        self._dispatcher = MessageDispatcher()
        self._reader = SocketReader(command_socket, self._dispatcher, on_closed,
                                    event_queue_depth=event_queue_depth, timeout=timeout)
        self._send_lock = threading.Lock()
        self._timeouts = 0

    def start(self) -> None:
        """Starts the reader (connects the library, takes the socket over)."""
        self._reader.start()

    def stop(self) -> None:
        """Stops the reader and closes the library's connection."""
        self._reader.stop()

    def is_running(self) -> bool:
        return self._reader.is_running()

    def pause(self, wait_timeout: float = 1.0) -> None:
        self._reader.pause(wait_timeout)

    def resume(self) -> None:
        self._reader.resume()

    def is_paused(self) -> bool:
        return self._reader.is_paused()

    def send_command(
        self, command_bytes: bytes, expected_response_code: int, timeout: Optional[float] = 3.0
    ) -> Optional[ParsedMessage]:
        """Sends a 128-byte command (anything after the 128 bytes is sent as
        its additional data) and returns the reply, or None on timeout.

        The reply is the one to *this* request, even with other threads
        asking the same code. When ``expected_response_code`` differs from
        the command's code, or the code only ever arrives unsolicited, the
        first message of that code after the send is returned. Raises
        :class:`DisconnectedError` (a ``ConnectionError``, as a failed
        ``sendall`` would) when the link is down.
        """
        if self._reader.client is None:
            self.start()
        client = self._reader.client
        if client is None:
            raise DisconnectedError("the command connection is closed")
        if len(command_bytes) < MESSAGE_LEN:
            raise InvalidArgumentError(
                f"a command is {MESSAGE_LEN} bytes, not {len(command_bytes)}"
            )
        raw = bytes(command_bytes[:MESSAGE_LEN])
        data = bytes(command_bytes[MESSAGE_LEN:])
        _check_outgoing(client, bool(_defaults["check_workflows"]), raw, data)
        code = int.from_bytes(raw[4:8], "little")
        expected = int(expected_response_code)
        native = client._native
        try:
            if expected == code and expected not in UNSOLICITED_COMMANDS:
                try:
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
            logger.warning("Timeout waiting for response to 0x%04X", expected)
            return None

    def register_callback(self, command_code: int, handler: Handler) -> None:
        """Calls ``handler(ParsedMessage)`` for each message of ``command_code``
        that no request and no raw read took."""
        self._dispatcher.register_callback_handler(command_code, handler)

    def unregister_callback(self, command_code: int, handler: Handler) -> None:
        self._dispatcher.unregister_callback_handler(command_code, handler)

    @property
    def dispatcher(self) -> MessageDispatcher:
        return self._dispatcher

    @property
    def client(self) -> Optional[Client]:
        """The library :class:`Client` underneath (its facades are available too)."""
        return self._reader.client

    @property
    def socket(self) -> Optional[socket.socket]:
        """The raw socket (the given socket object itself once started)."""
        return self._reader.socket

    def get_stats(self) -> Dict[str, Any]:
        """``reader`` (the reader's and the native router's counters),
        ``dispatcher``, ``client`` (the connection's), ``timeouts``, and
        ``events_dropped``: messages lost because handlers fell behind."""
        c = self._reader.client
        reader = self._reader.get_stats()
        return {
            "reader": reader,
            "dispatcher": self._dispatcher.get_stats(),
            "client": c.stats() if c is not None else {},
            "timeouts": self._timeouts,
            "events_dropped": reader.get("events_dropped", 0),
        }


# ------------------------------------------------------------------ install

_TARGET = "py2flamingo.core.socket_reader"
_EXPORTS = ("UNSOLICITED_COMMANDS", "CommandClient", "MessageDispatcher", "ParsedMessage",
            "ProtocolCommands", "SocketReader")
_install_lock = threading.Lock()
_saved: Optional[Tuple[Any, List[Tuple[Any, str, Any]]]] = None
# The defaults install(**settings) changed: name -> (value before, value set).
_settings_saved: Dict[str, Tuple[Any, Any]] = {}


def install(**settings: Any) -> None:
    """Makes py2flamingo use this module as ``py2flamingo.core.socket_reader``,
    without editing it: imports made from now on get this module, and names
    already imported from the GUI's own module (in any loaded ``py2flamingo``
    module) are rebound to this module's. Idempotent; :func:`uninstall`
    undoes it, settings included. Keywords as :func:`configure`."""
    global _saved
    this = sys.modules[__name__]
    with _install_lock:
        before = dict(_defaults)
        configure(**settings)
        for k, v in _defaults.items():
            if v != before[k]:
                first = _settings_saved[k][0] if k in _settings_saved else before[k]
                _settings_saved[k] = (first, v)
        if _saved is not None:
            return
        previous = sys.modules.get(_TARGET)
        rebound: List[Tuple[Any, str, Any]] = []
        if previous is not None and previous is not this:
            originals = {id(getattr(previous, n)): n for n in _EXPORTS if hasattr(previous, n)}
            for name, mod in list(sys.modules.items()):
                if mod is None or mod is previous or not (
                    name == "py2flamingo" or name.startswith("py2flamingo.")
                ):
                    continue
                for attr, val in list(vars(mod).items()):
                    if id(val) in originals and val is getattr(previous, originals[id(val)]):
                        rebound.append((mod, attr, val))
                        setattr(mod, attr, getattr(this, originals[id(val)]))
                    elif val is previous:
                        rebound.append((mod, attr, val))
                        setattr(mod, attr, this)
        sys.modules[_TARGET] = this
        _saved = (previous, rebound)


def uninstall() -> None:
    """Undoes :func:`install`: the GUI's own module is used again, and the
    defaults ``install(**settings)`` changed are restored (unless
    :func:`configure` changed them since). Readers already started keep
    running until stopped."""
    global _saved
    with _install_lock:
        for k, (old, set_by_install) in _settings_saved.items():
            if _defaults[k] == set_by_install:
                _defaults[k] = old
        _settings_saved.clear()
        if _saved is None:
            return
        previous, rebound = _saved
        _saved = None
        this = sys.modules[__name__]
        if sys.modules.get(_TARGET) is this:
            if previous is not None:
                sys.modules[_TARGET] = previous
            else:
                sys.modules.pop(_TARGET, None)
        for mod, attr, val in rebound:
            setattr(mod, attr, val)
        _unbind_imported_while_installed(this, previous)


def _unbind_imported_while_installed(this: Any, own: Any) -> None:
    """Names the GUI imported from the alias while it was installed (in
    ``py2flamingo`` modules loaded or run since) point at this module's
    objects: rebinds them to the GUI's own module's, importing it if it was
    never loaded (only when such names exist)."""
    objects = {id(getattr(this, n)): n for n in _EXPORTS}
    stale: List[Tuple[Any, str, Optional[str]]] = []
    for name, mod in list(sys.modules.items()):
        if mod is None or mod is this or mod is own or not (
            name == "py2flamingo" or name.startswith("py2flamingo.")
        ):
            continue
        for attr, val in list(vars(mod).items()):
            if val is this:
                stale.append((mod, attr, None))
            elif id(val) in objects and val is getattr(this, objects[id(val)]):
                stale.append((mod, attr, objects[id(val)]))
    if not stale:
        return
    if own is None:
        try:
            own = importlib.import_module(_TARGET)
        except Exception as e:  # the GUI's module cannot be loaded: say so, keep going
            logger.warning(
                "uninstall(): %d name(s) imported from %s while installed still point at "
                "flamingo_client.compat: the GUI's own module could not be imported (%s)",
                len(stale), _TARGET, e,
            )
            return
    for mod, attr, export in stale:
        if export is None:
            setattr(mod, attr, own)
        elif hasattr(own, export):
            setattr(mod, attr, getattr(own, export))


def is_installed() -> bool:
    return _saved is not None


@contextlib.contextmanager
def installed(**kw: Any) -> Iterator[None]:
    """``with installed(): ...``: :func:`install`, then :func:`uninstall`."""
    install(**kw)
    try:
        yield
    finally:
        uninstall()


def _install_from_environment() -> None:
    """Called by the wheel's ``.pth`` hook at start-up: installs when
    ``FLAMINGO_CLIENT_COMPAT`` is set to something other than 0/empty."""
    if os.environ.get("FLAMINGO_CLIENT_COMPAT", "").strip() not in ("", "0"):
        install()
