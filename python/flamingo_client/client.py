"""The Pythonic client: :class:`Client` and its device facades."""

import atexit
import enum
import itertools
import logging
import math
import struct
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from . import _native
from .errors import DisconnectedError, FlamingoTimeoutError, InvalidArgumentError
from .message import Message, Reply, build_message

__all__ = [
    "Client",
    "ReconnectPolicy",
    "Event",
    "Subscription",
    "Frame",
    "LiveView",
    "MotionStop",
    "StagePosition",
    "SystemState",
    "Section",
    "ScopeSettings",
    "WorkflowUpdate",
    "WorkflowSummary",
    "WorkflowRun",
    "SoftLimits",
    "check_workflow",
    "save_tiff_stack",
]

logger = logging.getLogger("flamingo_client")

Address = Union[str, Tuple[str, int]]
AxisLike = Union[str, int]
Timeout = Optional[float]

# The step in which iterators that wait "forever" return to Python, so
# Ctrl-C (KeyboardInterrupt) is seen.
_SLICE = 0.25

_AXES = {"x": 1, "y": 2, "z": 3, "r": 4}
_COLOURS = {"red": 0, "green": 1, "blue": 2, "white": 3}


def _axis(a: AxisLike) -> int:
    if isinstance(a, str):
        try:
            return _AXES[a.lower()]
        except KeyError:
            raise InvalidArgumentError(f"axis must be x, y, z or r, not {a!r}") from None
    return int(a)


def _colour(c: Union[str, int]) -> int:
    if isinstance(c, str):
        try:
            return _COLOURS[c.lower()]
        except KeyError:
            raise InvalidArgumentError(
                f"LED colour must be red, green, blue or white, not {c!r}"
            ) from None
    return int(c)


def _address(addr: Address) -> str:
    if isinstance(addr, tuple):
        host, port = addr
        return f"{host}:{port}"
    return str(addr)


# Clients still open at interpreter exit are closed first, so no library
# thread waits for the GIL while Python shuts down.
_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()
# How long interpreter exit waits, in all, for idle callback threads to end.
_EXIT_JOIN_S = 0.5


@atexit.register
def _close_all() -> None:
    # Daemon threads may still run Python code here (a callback blocked on
    # a lock, say): the native side of every client is torn down first, and
    # only a callback thread that runs no callback is waited for, briefly.
    clients = list(_open_clients)
    for c in clients:
        c._native.close()
    deadline = time.monotonic() + _EXIT_JOIN_S
    for c in clients:
        t = c._callback_thread
        if t is None or t is threading.current_thread() or c._in_callback:
            continue
        t.join(max(0.0, deadline - time.monotonic()))


_WORKFLOW_START = 0x3004
_MOVES = (0x6004, 0x6005)  # STAGE_POSITION_SET and the vendor GUI's slider variant


def _check_outgoing(client: "Client", check_workflows: bool, header: bytes, data: bytes) -> None:
    """The CLI's checks on a message about to be sent as given (the raw
    paths: :meth:`Client.request`, :meth:`Client.send` and the compatibility
    socket), as the facades do them: a workflow start is checked with the
    rules of ``workflow check`` (``check_workflows``) and, once soft limits
    are on, against them; so is a move's target. Raises
    :class:`InvalidArgumentError`; nothing has been sent."""
    code = int.from_bytes(header[4:8], "little")
    if code != _WORKFLOW_START and code not in _MOVES:
        return
    limits = client.soft_limits
    if code == _WORKFLOW_START and (check_workflows or limits is not None):
        _native.workflow_check(data, None if limits is None else limits._to_native())
    elif code in _MOVES and limits is not None:
        axis = int.from_bytes(header[24:28], "little", signed=True)
        target = struct.unpack_from("<d", header, 40)[0]
        if 1 <= axis <= 4:
            name = "xyzr"[axis - 1]
            lim = limits.get(name)
            unit = "degrees" if name == "r" else "mm"
            if lim is not None and not (math.isfinite(target) and lim[0] <= target <= lim[1]):
                raise InvalidArgumentError(
                    f"{name} target {target:g} {unit} is outside the stage's soft limits for "
                    f"{name}, {lim[0]:g} to {lim[1]:g} {unit}; nothing was sent"
                )


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class ReconnectPolicy:
    """Automatic reconnection after the link breaks: exponential backoff with
    jitter. Attempt n waits ``min(initial_delay * multiplier**n, max_delay)``
    seconds, scaled by a random factor in ``[1 - jitter, 1 + jitter]``.
    ``max_attempts=None`` retries forever."""

    initial_delay: float = 0.1
    max_delay: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: Optional[int] = None


@dataclass(frozen=True)
class Event:
    """An unsolicited message, or a connection event.

    ``kind`` is one of ``motion_stopped``, ``system_idle``,
    ``stack_complete``, ``gauge_size``, ``gauge_value``, ``images_saved``,
    ``laser_level``, ``unknown``, ``disconnected``, ``reconnecting``,
    ``reconnected``, ``closed``. ``details`` holds the kind's values (for
    ``motion_stopped``: ``axis``, ``position``, ``status``), also readable as
    attributes (``event.axis``).
    """

    kind: str
    seq: int
    message: Optional[Message]
    data: Optional[bytes]
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> Optional[int]:
        """The command code, for message events."""
        return self.message.code if self.message is not None else None

    def __getattr__(self, name: str) -> Any:
        details = self.__dict__.get("details", {})
        if name in details:
            return details[name]
        raise AttributeError(name)

    @staticmethod
    def _from_native(t: Any) -> "Event":
        kind, seq, msg, data, details = t
        return Event(kind, seq, Message.from_bytes(msg) if msg is not None else None, data, details)


@dataclass(frozen=True)
class StagePosition:
    """Where the stage is: X, Y, Z in mm, R in degrees."""

    x: float
    y: float
    z: float
    r: float

    def __getitem__(self, axis: AxisLike) -> float:
        return (self.x, self.y, self.z, self.r)[_axis(axis) - 1]


@dataclass(frozen=True)
class SoftLimits:
    """The range each stage axis must stay within (mm; degrees for R), and
    the camera's field of view on the sample in mm (it places the tiles of a
    tiled workflow). An axis without limits is not checked. Read them from
    the instrument with ``scope.settings.soft_limits()``; checking them is
    opt-in (:meth:`Client.enable_soft_limits`, :func:`check_workflow`)."""

    axes: Dict[str, Tuple[float, float]]
    field_of_view_mm: Optional[Tuple[float, float]] = None

    def get(self, axis: AxisLike) -> Optional[Tuple[float, float]]:
        """``(min, max)`` of an axis, if known."""
        return self.axes.get("xyzr"[_axis(axis) - 1])

    def _to_native(self) -> Tuple[List[Tuple[int, float, float]], Optional[Tuple[float, float]]]:
        axes = [(_axis(a), float(lo), float(hi)) for a, (lo, hi) in self.axes.items()]
        fov = self.field_of_view_mm
        return axes, None if fov is None else (float(fov[0]), float(fov[1]))

    @staticmethod
    def _from_native(t: Any) -> "SoftLimits":
        axes, fov = t
        return SoftLimits({a: (lo, hi) for a, lo, hi in axes}, None if fov is None else tuple(fov))


@dataclass(frozen=True)
class MotionStop:
    """The end of a move: the axis, where it stopped, the raw status (1 =
    stopped normally) and the event's sequence number."""

    axis: str
    position: float
    status: int
    seq: int

    @property
    def is_normal(self) -> bool:
        return self.status == 1


class SystemState(enum.IntEnum):
    """What the instrument reports for its state."""

    IDLE = 0
    BUSY = 1
    ERROR = 2


@dataclass(frozen=True, eq=False)
class Frame:
    """One camera image. ``pixels`` is a numpy ``uint16`` array of shape
    ``(height, width)``, row-major, made from one copy of the received bytes
    (no per-pixel loop); it is writable and owned by this frame."""

    pixels: np.ndarray
    frame_number: int
    timestamp_ms: int
    exposure_us: int
    sequence: int
    #: Width (= height) of a pixel on the sample in microns, when known
    #: (frames from :meth:`Camera.snapshot` and live view carry the camera's).
    pixel_size_um: Optional[float] = None

    def save_tiff(self, path: str, *, pixel_size_um: Optional[float] = None) -> None:
        """Saves the frame as a 16-bit TIFF file (replacing any file there)
        with the library's encoder. The pixel size (argument, else
        :attr:`pixel_size_um`) goes into the resolution tags and the ImageJ
        description, in microns, so ImageJ/Fiji and tifffile show real units.
        Raises :class:`FlamingoIOError` naming the path if it cannot be written."""
        size = pixel_size_um if pixel_size_um is not None else self.pixel_size_um
        _native.save_tiff(str(path), self._parts(), None if size is None else float(size))

    def _parts(self) -> Tuple[int, int, int, int, int, bytes]:
        px = np.ascontiguousarray(self.pixels, dtype="<u2")
        return (self.width, self.height, int(self.frame_number), int(self.timestamp_ms),
                int(self.exposure_us), px.tobytes())

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @staticmethod
    def _from_native(t: Any, pixel_size_um: Optional[float] = None) -> "Frame":
        w, h, number, ts, exposure, seq, buf = t
        pixels = np.frombuffer(buf, dtype="<u2").reshape(h, w)
        return Frame(pixels, number, ts, exposure, seq, pixel_size_um)


def save_tiff_stack(
    path: str,
    frames: Iterable[Frame],
    *,
    pixel_size_um: Optional[float] = None,
    z_spacing_um: Optional[float] = None,
) -> int:
    """Saves frames as one multi-page 16-bit TIFF file (a stack), with the
    pixel size (argument, else the first frame's) and the plane spacing in
    microns (ImageJ then shows a Z stack). Returns the number of pages."""
    fs = list(frames)
    if not fs:
        raise InvalidArgumentError("a TIFF stack needs at least one frame")
    size = pixel_size_um if pixel_size_um is not None else fs[0].pixel_size_um
    return _native.save_tiff_stack(
        str(path), [f._parts() for f in fs], None if size is None else float(size),
        None if z_spacing_um is None else float(z_spacing_um),
    )


# ------------------------------------------------------------------ client


class Client:
    """One connection to the microscope's command port, shared by any number
    of threads. Every blocking call releases the GIL.

    >>> with Client("127.0.0.1:53717", timeout=3.0) as scope:   # doctest: +SKIP
    ...     print(scope.stage.positions())

    ``address`` is ``"host:port"`` or ``(host, port)`` of the command port;
    live images use port + 1. ``timeout`` is the default deadline of every
    operation (seconds); ``connect_timeout`` the time allowed to connect;
    ``reconnect`` a :class:`ReconnectPolicy` (or ``True`` for the default
    one) to reconnect automatically after the link breaks; ``live=False``
    never uses the live port. ``event_queue_depth`` bounds each
    subscription's queue, ``callback_queue_depth`` (default: the same) the
    queue of events waiting for :meth:`on_event` callbacks; when one is full
    its oldest event is dropped, counted and logged.

    Raises :class:`ConnectError` if the connection cannot be opened.
    """

    def __init__(
        self,
        address: Address,
        *,
        timeout: float = 3.0,
        connect_timeout: float = 2.0,
        reconnect: Union[ReconnectPolicy, bool, None] = None,
        live: bool = True,
        event_queue_depth: int = 1024,
        callback_queue_depth: Optional[int] = None,
    ) -> None:
        policy = ReconnectPolicy() if reconnect is True else (reconnect or None)
        rp = None
        if isinstance(policy, ReconnectPolicy):
            rp = (
                float(policy.initial_delay),
                float(policy.max_delay),
                float(policy.multiplier),
                float(policy.jitter),
                policy.max_attempts,
            )
        self._native = _native.NativeClient(
            _address(address), connect_timeout, timeout, live, event_queue_depth, rp
        )
        self._callbacks: Dict[int, Tuple[Callable[[Event], Any], Optional[frozenset]]] = {}
        self._callbacks_lock = threading.Lock()
        self._callback_queue_depth = int(callback_queue_depth or event_queue_depth)
        self._router: Any = None
        self._callback_thread: Optional[threading.Thread] = None
        # True while the callback thread runs callbacks (read at exit).
        self._in_callback = False
        self._next_callback_id = itertools.count(1)
        self._pixel_size_um: Optional[float] = None
        self.stage = Stage(self)
        self.camera = Camera(self)
        self.lasers = Lasers(self)
        self.led = Led(self)
        self.filter_wheel = FilterWheel(self)
        self.system = System(self)
        self.settings = Settings(self)
        self.workflows = Workflows(self)
        _open_clients.add(self)

    # ---- connection

    @property
    def address(self) -> str:
        """The command port address given at creation."""
        return self._native.addr

    @property
    def state(self) -> str:
        """``connected``, ``reconnecting``, ``closed``, ``not_connected`` or ``connecting``."""
        return self._native.state()

    @property
    def is_connected(self) -> bool:
        return self.state == "connected"

    def close(self) -> None:
        """Closes the connection: idempotent. Waiting calls fail with
        :class:`DisconnectedError`; subscriptions end after a last ``closed``
        event; every library thread, and the callback thread, is joined
        before this returns (except when called from a callback)."""
        self._native.close()
        t = self._callback_thread
        if t is not None and t is not threading.current_thread():
            t.join(5.0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.address!r}, state={self.state!r})"

    def stats(self) -> Dict[str, Any]:
        """Counters: messages sent and received, replies matched, events
        delivered and dropped, late replies discarded, timeouts,
        disconnects... and, once a callback was registered, those of the
        callback queue (``callback_events_delivered``, ``_dropped``,
        ``_filtered``, ``callback_queue_depth``)."""
        d = dict(self._native.stats())
        r = self._router
        if r is not None:
            for k, v in r.stats().items():
                if k.startswith("events_"):
                    d["callback_" + k] = v
            d["callback_queue_depth"] = self._callback_queue_depth
        return d

    # ---- safety

    @property
    def soft_limits(self) -> Optional[SoftLimits]:
        """The soft limits moves and workflow starts are checked against, or
        None when the checks are off (the default)."""
        t = self._native.soft_limits()
        return SoftLimits._from_native(t) if t is not None else None

    def enable_soft_limits(
        self, limits: Optional[SoftLimits] = None, *, timeout: Timeout = None
    ) -> SoftLimits:
        """Opt-in safety, as the CLI's: from now on every stage move and
        every workflow start (start, end, angles, every tile) is checked
        against ``limits`` (default: read now from the instrument's settings,
        with the camera's field of view) before anything is sent; a target
        outside them raises :class:`InvalidArgumentError` naming the axis,
        the value and the limits. Returns the limits in force."""
        if limits is None:
            limits = self.settings.soft_limits(timeout=timeout)
        self._native.set_soft_limits(limits._to_native())
        return limits

    def disable_soft_limits(self) -> None:
        """Turns the soft-limit checks off (the instrument still refuses
        moves outside its limits)."""
        self._native.set_soft_limits(None)

    # ---- raw requests

    def request(
        self,
        code_or_message: Union[int, Message],
        *,
        data: bytes = b"",
        timeout: Timeout = None,
        checked: bool = False,
        **fields: Any,
    ) -> Reply:
        """Sends any command and waits for its reply.

        ``code_or_message`` is a :class:`Message` or a command code with
        message fields as keywords (``int32_data0=3``, ``double_data=1.5``,
        ``text="11.50"``...). ``data`` is sent as additional data after the
        message. With ``checked=True`` a busy or refusing status raises
        :class:`BusyError` / :class:`RefusedError`; otherwise the status is
        returned untouched in ``reply.message.status``.

        The CLI's checks apply here too: a workflow start (its file in
        ``data``) is checked with the rules of ``workflow check``, and once
        :meth:`enable_soft_limits` turned them on, it and every move
        (STAGE_POSITION_SET) are checked against the limits; a failure
        raises :class:`InvalidArgumentError` and nothing is sent.
        """
        msg = build_message(code_or_message, dict(fields))
        header = msg.to_bytes()
        _check_outgoing(self, True, header, bytes(data))
        return Reply._from_native(
            self._native.request(header, bytes(data), timeout, checked)
        )

    def send(
        self, code_or_message: Union[int, Message], *, data: bytes = b"", **fields: Any
    ) -> int:
        """Sends a message as given (flags untouched) without waiting. Returns
        the sequence number before the send: events with a larger one came after it.
        Checked as :meth:`request` is."""
        msg = build_message(code_or_message, dict(fields))
        header = msg.to_bytes()
        _check_outgoing(self, True, header, bytes(data))
        return self._native.send(header, bytes(data))

    # ---- events

    def subscribe(self, codes: Optional[Iterable[int]] = None) -> "Subscription":
        """A subscription to every event, or to events of ``codes``
        (connection events always pass). Each has its own bounded queue; when
        it is full, the oldest event is dropped (:attr:`Subscription.dropped`)."""
        native = self._native.subscribe(None if codes is None else [int(c) for c in codes])
        return Subscription(native)

    def on_event(
        self, callback: Callable[[Event], Any], codes: Optional[Iterable[int]] = None
    ) -> int:
        """Calls ``callback(event)`` for every event (or those of ``codes``;
        connection events always pass) on one Python thread named
        ``flamingo-events``, in arrival order. Events are filtered by code in
        the native layer: others never cross into Python. They wait in a
        queue of ``callback_queue_depth`` events; when a slow callback lets
        it fill, the oldest event is dropped, counted
        (``stats()["callback_events_dropped"]``) and logged. A callback may
        call the client (requests, moves...). An exception in a callback is
        logged and does not stop later events. Returns an id for
        :meth:`remove_callback`. The thread holds the client weakly: a
        callback that refers to the client does not keep it alive."""
        wanted = None if codes is None else frozenset(int(c) for c in codes)
        with self._callbacks_lock:
            cid = next(self._next_callback_id)
            self._callbacks[cid] = (callback, wanted)
            if self._router is None:
                self._router = self._native.router(self._callback_queue_depth)
                self._sync_codes()
                t = threading.Thread(
                    target=_callback_loop, args=(weakref.ref(self), self._router),
                    name="flamingo-events", daemon=True,
                )
                self._callback_thread = t
                t.start()
            else:
                self._sync_codes()
        return cid

    def remove_callback(self, callback_id: int) -> bool:
        """Removes a callback; False if it was not registered."""
        with self._callbacks_lock:
            found = self._callbacks.pop(callback_id, None) is not None
            if found and self._router is not None:
                self._sync_codes()
            return found

    def _sync_codes(self) -> None:
        """Tells the native filter which codes the callbacks want (under the lock)."""
        sets = [w for _, w in self._callbacks.values()]
        if any(w is None for w in sets):
            self._router.set_codes(None)
        else:
            self._router.set_codes(sorted(set().union(*sets)) if sets else [])

    def _dispatch(self, raw: Any) -> None:
        ev = Event._from_native(raw)
        with self._callbacks_lock:
            targets = list(self._callbacks.values())
        self._in_callback = True
        try:
            for cb, wanted in targets:
                if wanted is not None and ev.code is not None and ev.code not in wanted:
                    continue
                try:
                    cb(ev)
                except Exception:
                    logger.exception("event callback %r raised", cb)
        finally:
            self._in_callback = False


def _callback_loop(ref: "weakref.ReferenceType[Client]", router: Any) -> None:
    """The ``flamingo-events`` thread: runs callbacks until the client closes."""
    seen_dropped = 0
    while True:
        status, raw, dropped = router.recv(None)
        if dropped > seen_dropped:
            logger.warning(
                "%d event(s) dropped for callbacks (%d in all): callbacks fell behind "
                "a full queue; raise callback_queue_depth or make callbacks faster",
                dropped - seen_dropped, dropped,
            )
            seen_dropped = dropped
        if status == 2:
            return
        if status != 0:
            continue
        client = ref()
        if client is None:
            return
        client._dispatch(raw)
        del client


class Subscription:
    """Events as an iterable. ``for event in sub:`` runs until the client is
    closed (the last event is then ``closed``); :meth:`get` waits with a
    timeout, :meth:`poll` never blocks, :meth:`events` stops after a quiet
    ``timeout``. Closing (or the ``with`` block's end) unsubscribes."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def get(self, timeout: Timeout = None) -> Event:
        """The next event, waiting at most ``timeout`` seconds (None: no limit).

        Raises :class:`FlamingoTimeoutError`, or :class:`DisconnectedError`
        once the client is closed and every queued event was taken."""
        while True:
            step = timeout if timeout is not None else _SLICE
            status, ev = self._native.recv(step)
            if status == 0:
                return Event._from_native(ev)
            if status == 2:
                raise DisconnectedError("the subscription ended: the client was closed")
            if timeout is not None:
                raise FlamingoTimeoutError(f"no event within {timeout:.3f} s")

    def poll(self) -> Optional[Event]:
        """The next event if one is queued; never blocks."""
        status, ev = self._native.recv(0.0)
        return Event._from_native(ev) if status == 0 else None

    def events(self, timeout: float) -> Iterator[Event]:
        """Yields events until none arrives within ``timeout`` seconds or the client closes."""
        while True:
            status, ev = self._native.recv(timeout)
            if status != 0:
                return
            yield Event._from_native(ev)

    def __iter__(self) -> Iterator[Event]:
        while True:
            status, ev = self._native.recv(_SLICE)
            if status == 0:
                yield Event._from_native(ev)
            elif status == 2:
                return

    @property
    def dropped(self) -> int:
        """Events dropped because this subscription's queue was full."""
        return self._native.dropped()

    def close(self) -> None:
        """Unsubscribes."""
        self._native.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Facade:
    def __init__(self, client: Client) -> None:
        # A weak reference: facades must not keep a collected client alive.
        self._client_ref = weakref.ref(client)

    @property
    def _n(self) -> Any:
        c = self._client_ref()
        if c is None:
            raise DisconnectedError("the client was garbage-collected")
        return c._native


# ------------------------------------------------------------------ stage


class Stage(_Facade):
    """The stage: X, Y, Z in mm, R in degrees. Axes are ``"x"``, ``"y"``,
    ``"z"``, ``"r"`` (or 1 to 4). ``timeout`` is the deadline of the request
    (default: the client's); ``motion_timeout`` that of waiting for the stop."""

    def position(self, axis: AxisLike, *, timeout: Timeout = None) -> float:
        """The position of one axis."""
        return self._n.stage_position(_axis(axis), timeout)

    def positions(self, *, timeout: Timeout = None) -> StagePosition:
        """The position of every axis."""
        return StagePosition(*self._n.stage_positions(timeout))

    def move_to(self, axis: AxisLike, target: float, *, timeout: Timeout = None) -> None:
        """Starts a move and returns once it is acknowledged."""
        self._n.stage_move_to(_axis(axis), float(target), timeout)

    def move_and_wait(
        self,
        axis: AxisLike,
        target: float,
        *,
        timeout: Timeout = None,
        motion_timeout: float = 60.0,
    ) -> MotionStop:
        """Moves and waits for *this* move's stop (race-free)."""
        return MotionStop(
            *self._n.stage_move_and_wait(_axis(axis), float(target), timeout, motion_timeout)
        )

    def move_all_and_wait(
        self,
        targets: Union[Mapping[AxisLike, float], Sequence[Tuple[AxisLike, float]]],
        *,
        timeout: Timeout = None,
        motion_timeout: float = 60.0,
    ) -> List[MotionStop]:
        """Moves several axes at once (``{"x": 9.0, "y": 20.0}``) and waits for every stop."""
        items = targets.items() if isinstance(targets, Mapping) else targets
        ts = [(_axis(a), float(v)) for a, v in items]
        return [
            MotionStop(*s) for s in self._n.stage_move_all_and_wait(ts, timeout, motion_timeout)
        ]

    def halt(self, *, timeout: Timeout = None) -> None:
        """Stops every axis."""
        self._n.stage_halt(timeout)

    def home_and_wait(
        self, *, timeout: Timeout = None, motion_timeout: float = 60.0
    ) -> List[MotionStop]:
        """Moves every axis home and waits for every stop."""
        return [MotionStop(*s) for s in self._n.stage_home_and_wait(timeout, motion_timeout)]

    def set_velocity(self, axis: AxisLike, per_second: float, *, timeout: Timeout = None) -> None:
        """Sets an axis's velocity: mm/s, or degrees/s for R."""
        self._n.stage_set_velocity(_axis(axis), float(per_second), timeout)


# ------------------------------------------------------------------ camera


class LiveView:
    """Live view, from :meth:`Camera.live`. Iterate it for frames
    (each waited for at most ``frame_timeout``), or show :meth:`latest_frame`
    from a GUI timer. Leaving the ``with`` block (or :meth:`stop`) stops live
    view and closes the live socket."""

    def __init__(
        self, camera: "Camera", native: Any, frame_timeout: float,
        pixel_size_um: Optional[float] = None,
    ) -> None:
        self._camera = camera
        self._native = native
        self._pixel_size_um = pixel_size_um
        self.frame_timeout = frame_timeout
        self._stopped = False

    def next_frame(self, timeout: Timeout = 2.0) -> Frame:
        """The next frame, waiting at most ``timeout`` seconds
        (:class:`FlamingoTimeoutError` otherwise)."""
        return Frame._from_native(self._native.next_frame(timeout), self._pixel_size_um)

    def latest_frame(self) -> Optional[Frame]:
        """The newest frame received, if any; never blocks."""
        t = self._native.latest_frame()
        return Frame._from_native(t, self._pixel_size_um) if t is not None else None

    def frames(self, timeout: Timeout = None, count: Optional[int] = None) -> Iterator[Frame]:
        """Yields frames (at most ``count``), each waited for at most
        ``timeout`` seconds (default :attr:`frame_timeout`): a longer gap
        raises :class:`FlamingoTimeoutError`. Ends when live view is stopped."""
        t = self.frame_timeout if timeout is None else timeout
        n = 0
        while count is None or n < count:
            if self._stopped:
                return
            try:
                yield self.next_frame(t)
            except DisconnectedError:
                if self._stopped:
                    return
                raise
            n += 1

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    @property
    def stats(self) -> Dict[str, int]:
        """Frames and bytes received, frames dropped (latest wins)."""
        frames, nbytes, dropped = self._native.stats()
        return {"frames": frames, "bytes": nbytes, "dropped": dropped}

    def stop(self, *, timeout: Timeout = None) -> None:
        """Stops live view and closes the live socket. Idempotent."""
        if not self._stopped:
            self._stopped = True
            self._camera.live_stop(timeout=timeout)

    def __enter__(self) -> "LiveView":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stop()
        except DisconnectedError:
            pass


class Camera(_Facade):
    """The camera: image size, pixel size, exposure, snapshots and live view."""

    def image_size(self, *, timeout: Timeout = None) -> Tuple[int, int]:
        """``(width, height)`` in pixels."""
        return tuple(self._n.camera_image_size(timeout))  # type: ignore[return-value]

    def pixel_size_mm(self, *, timeout: Timeout = None) -> float:
        """The pixel's field of view, in mm."""
        return self._n.camera_pixel_size_mm(timeout)

    def pixel_size_um(self, *, timeout: Timeout = None) -> Optional[float]:
        """The pixel size on the sample in microns (None if the camera
        reports none), asked once per client and then remembered."""
        c = self._client_ref()
        if c is None:
            raise DisconnectedError("the client was garbage-collected")
        if c._pixel_size_um is None:
            mm = self._n.camera_pixel_size_mm(timeout)
            c._pixel_size_um = mm * 1000.0 if mm > 0 else 0.0
        return c._pixel_size_um or None

    def exposure_us(self, *, timeout: Timeout = None) -> int:
        """The exposure time in µs."""
        return self._n.camera_exposure_us(timeout)

    def set_exposure_us(self, us: int, *, timeout: Timeout = None) -> None:
        """Sets the exposure time in µs (> 0)."""
        if us <= 0:
            raise InvalidArgumentError(f"exposure must be positive, not {us} µs")
        self._n.camera_set_exposure_us(int(us), timeout)

    def snapshot(self, *, timeout: Timeout = None) -> Frame:
        """Takes one image and returns it (do not run live view meanwhile),
        with the camera's pixel size in :attr:`Frame.pixel_size_um`, so
        ``scope.camera.snapshot().save_tiff("a.tif")`` writes real units."""
        size = self.pixel_size_um(timeout=timeout)
        return Frame._from_native(self._n.camera_snapshot(timeout), size)

    def save_snapshot(self, path: str, *, timeout: Timeout = None) -> Frame:
        """Takes one image and saves it as a TIFF file with the pixel size."""
        f = self.snapshot(timeout=timeout)
        f.save_tiff(path)
        return f

    def live(self, *, timeout: Timeout = None, frame_timeout: float = 2.0) -> LiveView:
        """Starts live view and returns it (a context manager). Its frames
        carry the camera's pixel size."""
        size = self.pixel_size_um(timeout=timeout)
        return LiveView(self, self._n.camera_live_start(timeout), frame_timeout, size)

    def live_stop(self, *, timeout: Timeout = None) -> None:
        """Stops live view and closes the live socket."""
        self._n.camera_live_stop(timeout)

    def latest_frame(self) -> Optional[Frame]:
        """The newest live frame, if live view is open; never blocks."""
        t = self._n.camera_latest_frame()
        return Frame._from_native(t) if t is not None else None


# ------------------------------------------------------------------ lasers, LED, filter wheel


class Lasers(_Facade):
    """Lasers 1 to 4: levels in percent, preview, all off."""

    def level(self, laser: int, *, timeout: Timeout = None) -> float:
        """A laser's level in percent."""
        return self._n.laser_level(int(laser), timeout)

    def set_level(self, laser: int, percent: float, *, timeout: Timeout = None) -> float:
        """Sets a laser's level (0 to 100 %) and returns the level read back."""
        return self._n.laser_set_level(int(laser), float(percent), timeout)

    def preview(self, laser: int, on: bool = True, *, timeout: Timeout = None) -> None:
        """Turns a laser's preview on or off."""
        self._n.laser_preview(int(laser), bool(on), timeout)

    def all_off(self, *, timeout: Timeout = None) -> None:
        """Turns every laser off."""
        self._n.laser_all_off(timeout)


class Led(_Facade):
    """The transmitted-light LED; colours ``red``, ``green``, ``blue``, ``white``."""

    def set_percent(self, colour: Union[str, int], percent: float, *, timeout: Timeout = None) -> None:
        """Sets a colour's level in percent (0 to 100)."""
        self._n.led_set_percent(_colour(colour), float(percent), timeout)

    def set_level(self, colour: Union[str, int], level: int, *, timeout: Timeout = None) -> None:
        """Sets a colour's raw DAC level (32000 to 65534)."""
        self._n.led_set_level(_colour(colour), int(level), timeout)

    def preview(self, on: bool = True, *, timeout: Timeout = None) -> None:
        """Turns the LED preview on or off."""
        self._n.led_preview(bool(on), timeout)


class FilterWheel(_Facade):
    """The filter wheel, positions 1 to 8."""

    def position(self, *, timeout: Timeout = None) -> int:
        return self._n.filter_position(timeout)

    def set_position(self, position: int, *, timeout: Timeout = None) -> None:
        self._n.filter_set_position(int(position), timeout)


# ------------------------------------------------------------------ system, settings


class System(_Facade):
    """The instrument's state."""

    def state(self, *, timeout: Timeout = None) -> Union[SystemState, int]:
        """:class:`SystemState` (or the raw value if it is not a known one)."""
        v = self._n.system_state(timeout)
        try:
            return SystemState(v)
        except ValueError:
            return v

    def is_idle(self, *, timeout: Timeout = None) -> bool:
        return self.state(timeout=timeout) == SystemState.IDLE

    def set_idle(self, *, timeout: Timeout = None) -> None:
        """Asks the instrument to return to idle (clears an error state)."""
        self._n.system_set_idle(timeout)

    def wait_until_idle(self, timeout: Timeout = 60.0) -> None:
        """Returns once the instrument is idle; :class:`FlamingoTimeoutError` after ``timeout``."""
        self._n.system_wait_until_idle(timeout)


class Section(Mapping[str, str]):
    """A ``<Name> ... </Name>`` section of a settings or workflow file: a
    read-only mapping of its ``key = value`` lines (first wins), with nested
    sections in :attr:`sections`."""

    def __init__(self, name: str, entries: List[Tuple[str, str]], sections: List["Section"]):
        self.name = name
        self.entries = entries
        self._map: Dict[str, str] = {}
        for k, v in entries:
            self._map.setdefault(k, v)
        self.sections: Dict[str, "Section"] = {}
        for s in sections:
            self.sections.setdefault(s.name, s)

    @staticmethod
    def _from_native(t: Any) -> "Section":
        name, entries, subs = t
        return Section(name, list(entries), [Section._from_native(s) for s in subs])

    def __getitem__(self, key: str) -> str:
        return self._map[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def get_float(self, key: str) -> Optional[float]:
        """A value as a number (thousands separators accepted), if numeric."""
        v = self._map.get(key)
        if v is None:
            return None
        try:
            return float(v.replace(",", ""))
        except ValueError:
            return None

    def find(self, name: str) -> Optional["Section"]:
        """The first section named ``name`` at any depth below this one."""
        for s in self.sections.values():
            if s.name == name:
                return s
            found = s.find(name)
            if found is not None:
                return found
        return None

    def __repr__(self) -> str:
        return f"Section({self.name!r}, {len(self)} entries, {len(self.sections)} sections)"


class ScopeSettings(Mapping[str, Section]):
    """The instrument's ScopeSettings.txt, parsed: a read-only mapping of its
    top-level sections (``settings["Type"]["Microscope name"]``), with the
    raw text in :attr:`raw`."""

    def __init__(self, raw: str, sections: List[Section], limits: Dict[str, Tuple[float, float]],
                 home: Dict[str, float], name: Optional[str]):
        self.raw = raw
        self._sections: Dict[str, Section] = {}
        for s in sections:
            self._sections.setdefault(s.name, s)
        self._limits = limits
        self._home = home
        self.microscope_name = name

    def __getitem__(self, key: str) -> Section:
        return self._sections[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sections)

    def __len__(self) -> int:
        return len(self._sections)

    def soft_limits(self, axis: AxisLike) -> Optional[Tuple[float, float]]:
        """An axis's ``(min, max)`` soft limits."""
        return self._limits.get("xyzr"[_axis(axis) - 1])

    def home(self, axis: AxisLike) -> Optional[float]:
        """An axis's home position."""
        return self._home.get("xyzr"[_axis(axis) - 1])

    def find(self, name: str) -> Optional[Section]:
        """The first section named ``name`` at any depth."""
        for s in self._sections.values():
            if s.name == name:
                return s
            found = s.find(name)
            if found is not None:
                return found
        return None


class Settings(_Facade):
    """The scope settings."""

    def load(self, *, timeout: Timeout = None) -> ScopeSettings:
        """Loads and parses ScopeSettings.txt from the instrument."""
        raw, tree, limits, home, name = self._n.settings_load(timeout)
        return ScopeSettings(
            raw.decode("utf-8", "replace"),
            [Section._from_native(t) for t in tree],
            dict(limits), dict(home), name,
        )

    def soft_limits(self, *, timeout: Timeout = None) -> SoftLimits:
        """The stage's soft limits from the instrument's settings, with the
        camera's field of view when it reports it."""
        return SoftLimits._from_native(self._n.settings_soft_limits(timeout))


# ------------------------------------------------------------------ workflows


@dataclass(frozen=True)
class WorkflowSummary:
    """What a finished workflow did. ``stacks`` holds one
    ``(acquired, expected, errors, duration_s)`` per stack report."""

    images_acquired: int
    images_expected: int
    errors: int
    images_saved: Optional[int]
    duration: float
    acknowledged: bool
    stopped: bool
    complete: bool
    stacks: List[Tuple[int, int, int, float]]


@dataclass(frozen=True)
class WorkflowUpdate:
    """Something that happened in a run. ``kind`` is ``acknowledged``,
    ``running``, ``gauge_size``, ``progress``, ``laser_level``,
    ``stack_complete``, ``images_saved`` or ``finished`` (the last, with
    :attr:`summary`). Values are in ``details`` and readable as attributes
    (``update.current``, ``update.total``)."""

    kind: str
    details: Dict[str, Any]

    @property
    def summary(self) -> Optional[WorkflowSummary]:
        s = self.details.get("summary")
        return WorkflowSummary(**s) if s is not None else None

    def __getattr__(self, name: str) -> Any:
        details = self.__dict__.get("details", {})
        if name in details:
            return details[name]
        raise AttributeError(name)


class WorkflowRun:
    """A started workflow. Iterate :meth:`updates` for progress, or :meth:`wait`.
    :attr:`summary` is set once the run has ended, whichever way that was
    seen (the last update, :meth:`wait` or :meth:`stop`)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def summary(self) -> Optional[WorkflowSummary]:
        """What the run did, once it has ended (None before)."""
        s = self._native.summary()
        return WorkflowSummary(**s) if s is not None else None

    def updates(self, timeout: float = 60.0) -> Iterator[WorkflowUpdate]:
        """Yields every update until the run finishes (the last has kind
        ``finished``). A gap of more than ``timeout`` seconds raises
        :class:`FlamingoTimeoutError` (the workflow is not stopped)."""
        while True:
            t = self._native.next_update(timeout)
            if t is None:
                if self._native.is_finished():
                    return
                raise FlamingoTimeoutError(f"no workflow update within {timeout:.3f} s")
            u = WorkflowUpdate(t[0], t[1])
            yield u
            if u.kind == "finished":
                return

    def __iter__(self) -> Iterator[WorkflowUpdate]:
        return self.updates()

    def wait(self, timeout: Timeout = 600.0) -> WorkflowSummary:
        """Waits for the end, at most ``timeout`` seconds (None: no limit), and
        returns the summary. :class:`FlamingoTimeoutError` if the run is still
        going then (it is not stopped)."""
        s = self._native.wait(timeout)
        if s is None:
            p = self.progress
            done = f" ({p[0]} of {p[1]} planes so far)" if p else ""
            raise FlamingoTimeoutError(
                f"the workflow did not finish within {timeout:.3f} s{done}; it is still running"
            )
        return WorkflowSummary(**s)

    def stop(self, *, wait: bool = True, timeout: Timeout = 30.0) -> Optional[WorkflowSummary]:
        """Asks the instrument to stop and, with ``wait`` (the default), waits
        for the run to end (at most ``timeout`` seconds) and returns its
        summary, ``stopped`` set; :attr:`summary` holds it from then on.
        Updates not yet taken are consumed by that wait. ``wait=False``
        returns once the instrument has acknowledged the stop."""
        self._native.stop()
        if not wait:
            return None
        return self.wait(timeout)

    @property
    def progress(self) -> Optional[Tuple[int, int]]:
        """The latest ``(current, total)``, if reported."""
        return self._native.progress()

    @property
    def is_finished(self) -> bool:
        return self._native.is_finished()


def _workflow_bytes(path: Optional[str], text: Optional[str], data: Optional[bytes]) -> bytes:
    if sum(x is not None for x in (path, text, data)) != 1:
        raise InvalidArgumentError("give exactly one of path, text or data")
    if path is not None:
        with open(path, "rb") as f:
            return f.read()
    if text is not None:
        return text.encode("utf-8")
    return bytes(data)  # type: ignore[arg-type]


def check_workflow(
    path: Optional[str] = None,
    *,
    text: Optional[str] = None,
    data: Optional[bytes] = None,
    limits: Optional[SoftLimits] = None,
) -> None:
    """Checks a workflow file with the rules of the CLI's ``workflow check``
    (structure, sections, numbers, laser levels 0 to 100...) and, with
    ``limits``, every position it takes the stage to. Raises
    :class:`InvalidArgumentError` naming the line (or the axis, value and
    limits) and what to fix; nothing is sent anywhere."""
    _native.workflow_check(
        _workflow_bytes(path, text, data), None if limits is None else limits._to_native()
    )


class Workflows(_Facade):
    """Workflows (acquisitions)."""

    def check(
        self, path: Optional[str] = None, *, text: Optional[str] = None,
        data: Optional[bytes] = None, timeout: Timeout = None,
    ) -> SoftLimits:
        """Checks a workflow as the CLI's ``workflow check`` does, against the
        instrument's own soft limits (read now), without starting it.
        Returns those limits; raises :class:`InvalidArgumentError`."""
        raw = _workflow_bytes(path, text, data)
        return SoftLimits._from_native(self._n.workflow_check(raw, timeout))

    def start(
        self,
        path: Optional[str] = None,
        *,
        text: Optional[str] = None,
        data: Optional[bytes] = None,
        timeout: Timeout = None,
    ) -> WorkflowRun:
        """Starts a workflow from a file (``path``), its ``text`` or raw
        ``data`` (bytes sent unchanged, CRLF preserved) and returns the run.

        The file is first checked as the CLI's ``workflow check`` does (and
        against the soft limits once :meth:`Client.enable_soft_limits` turned
        them on); a file that fails is not sent and raises
        :class:`InvalidArgumentError` naming the line or the axis."""
        raw = _workflow_bytes(path, text, data)
        return WorkflowRun(self._n.workflow_start(raw, timeout))

    def stop(self, *, timeout: Timeout = None) -> None:
        """Stops the running workflow."""
        self._n.workflow_stop(timeout)
