"""The GUI's TCPConnection, as far as the socket is concerned: a plain
socket with the GUI's options, drained after connecting, and the socket
reader started on it (imported when connecting, as the GUI does)."""

import socket
import threading
from typing import Callable, List, Optional


class TCPConnection:
    def __init__(self, use_async_reader: bool = True) -> None:
        self._command_socket: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._connected = False
        self._use_async_reader = use_async_reader
        self._command_client = None
        self._listeners: List[Callable[[str], None]] = []
        self._ip: Optional[str] = None
        self._port: Optional[int] = None

    def connect(self, ip: str, port: int, timeout: float = 2.0) -> socket.socket:
        with self._lock:
            if self._connected:
                self._disconnect_unsafe()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.settimeout(timeout)
            s.connect((ip, port))
            s.settimeout(None)
            self._command_socket = s
            self._flush(s)
            self._ip, self._port, self._connected = ip, port, True
            if self._use_async_reader:
                from .socket_reader import CommandClient

                self._command_client = CommandClient(s, on_closed=self._on_reader_closed)
                self._command_client.start()
            return self._command_socket

    def _flush(self, s: socket.socket) -> int:
        n = 0
        before = s.gettimeout()
        s.settimeout(0.1)
        try:
            while True:
                try:
                    b = s.recv(4096)
                except socket.timeout:
                    break
                if not b:
                    break
                n += len(b)
        finally:
            s.settimeout(before)
        return n

    def disconnect(self) -> None:
        with self._lock:
            self._disconnect_unsafe()

    def _disconnect_unsafe(self) -> None:
        if self._command_client is not None:
            self._command_client.stop()
            self._command_client = None
        if self._command_socket is not None:
            self._command_socket.close()
            self._command_socket = None
        self._connected = False

    def send_bytes(self, data: bytes) -> None:
        with self._lock:
            if not self._connected or self._command_socket is None:
                raise ConnectionError("Not connected to microscope")
            self._command_socket.sendall(data)

    def receive_bytes(self, size: int, timeout: Optional[float] = None) -> bytes:
        with self._lock:
            if not self._connected or self._command_socket is None:
                raise ConnectionError("Not connected to microscope")
            s = self._command_socket
            if timeout is not None:
                s.settimeout(timeout)
            try:
                return s.recv(size)
            finally:
                if timeout is not None:
                    s.settimeout(None)

    def is_connected(self) -> bool:
        return self._connected

    def _on_reader_closed(self, reason: str) -> None:
        self._connected = False
        for listener in list(self._listeners):
            listener(reason)

    def add_connection_lost_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    @property
    def has_async_reader(self) -> bool:
        return self._command_client is not None and self._command_client.is_running()

    def pause_async_reader(self) -> bool:
        if self._command_client is not None and self._command_client.is_running():
            self._command_client.pause()
            return True
        return False

    def resume_async_reader(self) -> bool:
        if self._command_client is not None:
            self._command_client.resume()
            return True
        return False

    @property
    def dispatcher(self):
        return self._command_client.dispatcher if self._command_client else None

    def send_command_async(self, command_bytes: bytes, expected: int, timeout: float = 3.0):
        if not self._connected:
            raise ConnectionError("Not connected to microscope")
        return self._command_client.send_command(command_bytes, expected, timeout)

    def register_callback(self, code: int, handler) -> None:
        self._command_client.register_callback(code, handler)

    def unregister_callback(self, code: int, handler) -> None:
        if self._command_client is not None:
            self._command_client.unregister_callback(code, handler)
