"""The loopback simulator, for test suites that run without hardware."""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from . import _native
from .message import Message

__all__ = ["Simulator", "pattern"]


def pattern(width: int, height: int, frame_number: int) -> np.ndarray:
    """The documented test pattern of every simulated frame, as a
    ``(height, width)`` uint16 array: pixel ``(x, y)`` of frame ``f`` is
    ``((x + 3*y + 7*f) XOR (y << 6) XOR (f << 12)) mod 65536`` in wrapping
    32-bit arithmetic."""
    f = np.uint32(frame_number & 0xFFFFFFFF)
    y = np.arange(height, dtype=np.uint32)[:, None]
    x = np.arange(width, dtype=np.uint32)[None, :]
    with np.errstate(over="ignore"):
        a = x + y * np.uint32(3) + f * np.uint32(7)
        v = a ^ (y << np.uint32(6)) ^ (f << np.uint32(12))
    return (v & np.uint32(0xFFFF)).astype(np.uint16)


class Simulator:
    """An in-process simulator of the microscope on 127.0.0.1 (command port
    and live port = command port + 1), serving the real wire protocol.

    >>> with Simulator(image_size=(64, 48)) as sim:     # doctest: +SKIP
    ...     with Client(sim.address) as scope:
    ...         print(scope.camera.image_size())
    (64, 48)

    ``port=0`` picks a free pair of ports. ``plane_interval`` is the time
    between workflow planes, ``stage_velocity`` is ``(mm/s, deg/s)``,
    ``settings_text`` replaces the ScopeSettings.txt the simulator serves;
    ``answer_without_flag`` lists the codes answered without TRIGGER_CALL_BACK
    (default: settings load and workflow stop, as the instrument is reported to).
    Frames carry :func:`pattern`. Unknown codes are echoed back unchanged.
    """

    def __init__(
        self,
        *,
        image_size: Tuple[int, int] = (2048, 2048),
        live_fps: float = 30.0,
        plane_interval: float = 0.001,
        stage_velocity: Tuple[float, float] = (20.0, 360.0),
        laser_set_acks: bool = False,
        port: int = 0,
        settings_text: Optional[bytes] = None,
        answer_without_flag: Optional[Iterable[int]] = None,
    ) -> None:
        w, h = image_size
        self._native = _native.NativeSimulator(
            int(w), int(h), float(live_fps), float(plane_interval),
            (float(stage_velocity[0]), float(stage_velocity[1])), bool(laser_set_acks), int(port),
            None if settings_text is None else bytes(settings_text),
            None if answer_without_flag is None else [int(c) for c in answer_without_flag],
        )

    @classmethod
    def start(cls, **config: Any) -> "Simulator":
        """Starts a simulator (same keywords as the constructor)."""
        return cls(**config)

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"`` of the command port."""
        return self._native.addr

    @property
    def live_address(self) -> str:
        return self._native.live_addr

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def set_faults(
        self,
        *,
        delay: Optional[Mapping[int, float]] = None,
        never_answer: Iterable[int] = (),
        status_override: Optional[Mapping[int, int]] = None,
        error_state: bool = False,
        close_after_messages: Optional[int] = None,
        drop_events: Iterable[int] = (),
        stop_reading: Optional[float] = None,
        answer_late: Optional[Tuple[int, float]] = None,
    ) -> None:
        """Replaces the active faults: ``delay`` replies to codes (seconds),
        ``never_answer`` codes, ``status_override`` a code's reply status,
        ``error_state`` (the state reads "error"), ``close_after_messages``
        (drop the connection after N more messages, once), ``drop_events``
        (lose these broadcasts), ``stop_reading`` (stop reading the client
        for N seconds, once), ``answer_late`` ((code, seconds), once)."""
        self._native.set_faults(
            {int(k): float(v) for k, v in (delay or {}).items()},
            [int(c) for c in never_answer],
            {int(k): int(v) for k, v in (status_override or {}).items()},
            bool(error_state),
            close_after_messages,
            [int(c) for c in drop_events],
            stop_reading,
            (int(answer_late[0]), float(answer_late[1])) if answer_late else None,
        )

    def clear_faults(self) -> None:
        """Removes every fault."""
        self.set_faults()

    def stop(self) -> None:
        """Closes every socket (clients see the link drop) and joins every
        simulator thread. Idempotent."""
        self._native.stop()

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- inspection

    def received_codes(self) -> List[int]:
        """Codes of the messages received so far, in order."""
        return self._native.received_codes()

    def open_connections(self) -> int:
        return self._native.open_connections()

    def stage_positions(self) -> Tuple[float, float, float, float]:
        return tuple(self._native.stage_positions())  # type: ignore[return-value]

    def laser_level(self, laser: int) -> Optional[float]:
        return self._native.laser_level(int(laser))

    def live_view_on(self) -> bool:
        return self._native.live_view_on()

    def workflows(self) -> List[bytes]:
        """Every workflow file received, in order."""
        return self._native.workflows()

    def broadcast(self, message: Message) -> int:
        """Sends an unsolicited message to every connected client."""
        return self._native.broadcast(message.to_bytes())

    def counters(self) -> Dict[str, int]:
        c = self._native.counters()
        keys = ("connections", "messages_received", "replies_sent", "events_sent", "frames_sent")
        return dict(zip(keys, c))
