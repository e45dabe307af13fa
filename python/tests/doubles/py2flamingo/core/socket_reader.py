"""Stand-in for the GUI's own socket reader: one thread reads the command
socket itself and fills one reply slot per command code; callbacks run on
that thread; pause() stops it reading so the caller can read the socket."""

import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Dict, List, Optional

UNSOLICITED_COMMANDS = {0x6010, 0xA002, 0x3011, 0x9003, 0x9004, 0x9008}


class ProtocolCommands(IntEnum):
    STAGE_MOTION_STOPPED = 0x6010
    SYSTEM_STATE_IDLE = 0xA002
    CAMERA_WORKFLOW_STOP = 0x3005
    LASER_LEVEL_GET = 0x2002


@dataclass
class ParsedMessage:
    raw_data: bytes
    command_code: int
    status_code: int
    int32_data0: int
    int32_data1: int
    value: float
    additional_data_size: int
    data_field: bytes
    timestamp: float = field(default_factory=time.time)
    additional_data: Optional[bytes] = None

    @staticmethod
    def parse(b: bytes) -> "ParsedMessage":
        f = struct.unpack("<IIIIIIiiiIdI72sI", b)
        return ParsedMessage(b, f[1], f[2], f[6], f[7], f[10], f[11], f[12])


class MessageDispatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Dict[int, "queue.Queue[ParsedMessage]"] = {}
        self._handlers: Dict[int, List[Callable[[ParsedMessage], None]]] = {}

    def register_pending_request(self, code: int) -> "queue.Queue[ParsedMessage]":
        q: "queue.Queue[ParsedMessage]" = queue.Queue(maxsize=1)
        with self._lock:
            self._pending[code] = q  # a second waiter of the code replaces the first
        return q

    def unregister_pending_request(self, code: int) -> None:
        with self._lock:
            self._pending.pop(code, None)

    def register_callback_handler(self, code: int, h: Callable[[ParsedMessage], None]) -> None:
        with self._lock:
            self._handlers.setdefault(code, []).append(h)

    def unregister_callback_handler(self, code: int, h: Callable[[ParsedMessage], None]) -> None:
        with self._lock:
            if h in self._handlers.get(code, []):
                self._handlers[code].remove(h)

    def dispatch(self, m: ParsedMessage) -> None:
        with self._lock:
            q = self._pending.pop(m.command_code, None)
            hs = list(self._handlers.get(m.command_code, ()))
        if q is not None:
            q.put_nowait(m)
            return
        for h in hs:
            try:
                h(m)
            except Exception:
                pass

    def get_stats(self) -> Dict[str, int]:
        return {}


class SocketReader:
    def __init__(self, sock: socket.socket, dispatcher: MessageDispatcher,
                 on_closed: Optional[Callable[[str], None]] = None) -> None:
        self._sock, self._dispatcher, self._on_closed = sock, dispatcher, on_closed
        self._running = False
        self._go = threading.Event()
        self._go.set()
        self._idle = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="SocketReader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self._go.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def is_running(self) -> bool:
        return self._running

    def pause(self, wait_timeout: float = 1.0) -> None:
        self._idle.clear()
        self._go.clear()
        self._idle.wait(wait_timeout)

    def resume(self) -> None:
        self._go.set()

    def is_paused(self) -> bool:
        return not self._go.is_set()

    def _exactly(self, n: int) -> Optional[bytes]:
        b = b""
        while len(b) < n:
            try:
                c = self._sock.recv(n - len(b))
            except socket.timeout:
                if not b:
                    return None
                continue
            if not c:
                return b""
            b += c
        return b

    def _loop(self) -> None:
        self._sock.settimeout(0.5)
        while self._running:
            if not self._go.is_set():
                self._idle.set()
                self._go.wait(0.5)
                continue
            try:
                b = self._exactly(128)
            except OSError:
                break
            if b is None:
                continue
            if b == b"":
                if self._on_closed:
                    self._on_closed("remote closed connection")
                break
            m = ParsedMessage.parse(b)
            if m.additional_data_size:
                m.additional_data = self._exactly(m.additional_data_size)
            self._dispatcher.dispatch(m)


class CommandClient:
    def __init__(self, sock: socket.socket, on_closed: Optional[Callable[[str], None]] = None):
        self._socket = sock
        self._dispatcher = MessageDispatcher()
        self._reader = SocketReader(sock, self._dispatcher, on_closed)
        self._send_lock = threading.Lock()

    def start(self) -> None:
        self._reader.start()

    def stop(self) -> None:
        self._reader.stop()

    def is_running(self) -> bool:
        return self._reader.is_running()

    def pause(self) -> None:
        self._reader.pause()

    def resume(self) -> None:
        self._reader.resume()

    def is_paused(self) -> bool:
        return self._reader.is_paused()

    def send_command(self, b: bytes, expected: int, timeout: float = 3.0) -> Optional[ParsedMessage]:
        q = self._dispatcher.register_pending_request(expected)
        try:
            with self._send_lock:
                self._socket.sendall(b)
            try:
                return q.get(timeout=timeout)
            except queue.Empty:
                return None
        finally:
            self._dispatcher.unregister_pending_request(expected)

    def register_callback(self, code: int, h: Callable[[ParsedMessage], None]) -> None:
        self._dispatcher.register_callback_handler(code, h)

    def unregister_callback(self, code: int, h: Callable[[ParsedMessage], None]) -> None:
        self._dispatcher.unregister_callback_handler(code, h)

    @property
    def dispatcher(self) -> MessageDispatcher:
        return self._dispatcher

    def get_stats(self) -> Dict[str, Dict[str, int]]:
        return {"reader": {}, "dispatcher": {}}
