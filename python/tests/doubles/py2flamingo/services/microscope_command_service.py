"""What the GUI's services do with the command socket: requests through the
socket reader, and direct writes and reads on the socket itself."""

import select
import socket
import struct
import time
from typing import Any, Dict, List, Optional

TRIGGER_CALL_BACK = 0x80000000


def encode(code: int, params: Optional[List[int]] = None, value: float = 0.0,
           data: bytes = b"", additional_data_size: int = 0) -> bytes:
    """The GUI's encoder: native-order struct packing of the 128 bytes."""
    p = list(params or [0] * 7) + [0] * (7 - len(params or []))
    return struct.pack("I I I I I I I I I I d I 72s I", 0xF321E654, code, 0, *p[:7], value,
                       additional_data_size, data.ljust(72, b"\0"), 0xFEDC4321)


class MicroscopeCommandService:
    def __init__(self, connection) -> None:
        # connection: the TCPConnection (it has _command_socket, like the
        # GUI's connection service).
        self.connection = connection

    # ---- requests through the reader

    def query(self, code: int, params: Optional[List[int]] = None, timeout: float = 3.0):
        params = list(params or [0] * 7)
        params += [0] * (7 - len(params))
        params[6] = TRIGGER_CALL_BACK
        cmd = encode(code, params)
        if self.connection.has_async_reader:
            return self.connection.send_command_async(cmd, code, timeout=timeout)
        sock = self.connection._command_socket
        sock.sendall(cmd)
        return self._receive_full_bytes(sock, 128, timeout)

    # ---- direct writes on the socket (fire and forget)

    def send_fire_and_forget(self, code: int, params: List[int], data: bytes = b"") -> None:
        params = list(params) + [0] * (7 - len(params))
        params[6] = TRIGGER_CALL_BACK
        self.connection._command_socket.sendall(encode(code, params, data=data))

    def set_laser_power(self, laser: int, percent: float) -> None:
        self.send_fire_and_forget(0x2001, [0, 0, 0, laser, 0, 0, 0],
                                  f"{percent:.2f}".encode())

    def disable_all_lasers(self) -> None:
        for laser in range(1, 5):
            self.send_fire_and_forget(0x2007, [0, 0, 0, laser, 0, 0, 0])

    def start_workflow(self, workflow: bytes) -> None:
        sock = self.connection._command_socket
        sock.sendall(encode(0x3004, [0, 0, 0, 0, 0, 0, TRIGGER_CALL_BACK],
                            additional_data_size=len(workflow)))
        sock.sendall(workflow)

    # ---- direct writes, then direct reads (the reader is not paused)

    def _receive_full_bytes(self, sock: socket.socket, n: int, timeout: float) -> bytes:
        sock.settimeout(timeout)
        b = b""
        while len(b) < n:
            c = sock.recv(n - len(b))
            if not c:
                raise RuntimeError(f"Socket closed while reading (got {len(b)}/{n} bytes)")
            b += c
        return b

    def stop_workflow(self, timeout: float = 3.0) -> bytes:
        """Workflow stop: sent without the callback flag, its reply read from
        the socket while the reader runs."""
        sock = self.connection._command_socket
        sock.sendall(encode(0x3005, [0] * 7))
        reply = self._receive_full_bytes(sock, 128, timeout)
        extra = struct.unpack_from("<I", reply, 48)[0]
        if extra:
            self._receive_full_bytes(sock, extra, 3.0)
        return reply

    def debug_query(self, code: int, axis: int = 0, timeout: float = 3.0) -> bytes:
        sock = self.connection._command_socket
        before = sock.gettimeout()
        try:
            sock.sendall(encode(code, [0, 0, 0, axis, 0, 0, TRIGGER_CALL_BACK]))
            return self._receive_full_bytes(sock, 128, timeout)
        finally:
            sock.settimeout(before)

    def save_settings(self, text: bytes, timeout: float = 5.0) -> bytes:
        sock = self.connection._command_socket
        sock.sendall(encode(0x1008, [0] * 7, additional_data_size=len(text)))
        sock.sendall(text)
        return self._receive_full_bytes(sock, 128, timeout)

    # ---- the settings text, read with the reader paused

    def load_settings_text(self) -> Dict[str, Any]:
        paused = self.connection.pause_async_reader()
        sock = self.connection._command_socket
        try:
            sock.sendall(encode(0x1009, [0] * 7))
            ack = self._receive_full_bytes(sock, 128, 2.0)
            time.sleep(0.1)
            text = b""
            sock.settimeout(0.5)
            try:
                while True:
                    ready = select.select([sock], [], [], 0.05)
                    if not ready[0]:
                        break
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    text += chunk
            except socket.timeout:
                pass
            finally:
                sock.settimeout(None)
            return {"ack": ack, "text": text}
        finally:
            if paused:
                self.connection.resume_async_reader()
