"""flamingo_client: control the Flamingo light-sheet microscope from Python.

The Rust core of flamingo-client (one reader thread per socket, replies
correlated in wire order, events fanned out without ever blocking the
reader) with a Pythonic, typed API. Every blocking call releases the GIL.

>>> from flamingo_client import Client, Simulator          # doctest: +SKIP
>>> with Simulator(image_size=(64, 48)) as sim, Client(sim.address) as scope:
...     stop = scope.stage.move_and_wait("z", 20.0)
...     image = scope.camera.snapshot().pixels               # numpy uint16, (48, 64)

``flamingo_client.compat.CommandClient`` is a drop-in for the socket client
of the lab's PyQt GUI.
"""

from .client import (
    Client,
    Event,
    Frame,
    LiveView,
    MotionStop,
    ReconnectPolicy,
    ScopeSettings,
    Section,
    StagePosition,
    Subscription,
    SoftLimits,
    SystemState,
    WorkflowRun,
    WorkflowSummary,
    WorkflowUpdate,
    check_workflow,
    save_tiff_stack,
)
from .errors import (
    BusyError,
    ConnectError,
    DisconnectedError,
    FlamingoError,
    FlamingoIOError,
    FlamingoTimeoutError,
    InvalidArgumentError,
    ProtocolError,
    RefusedError,
    TooLargeError,
)
from .message import TRIGGER_CALL_BACK, Code, Message, Reply
from .simulator import Simulator, pattern

__version__ = "0.1.0"

__all__ = [
    "Client", "Event", "Frame", "LiveView", "MotionStop", "ReconnectPolicy", "ScopeSettings",
    "Section", "StagePosition", "Subscription", "SystemState", "WorkflowRun", "WorkflowSummary",
    "WorkflowUpdate", "BusyError", "ConnectError", "DisconnectedError", "FlamingoError",
    "FlamingoIOError", "FlamingoTimeoutError", "InvalidArgumentError", "ProtocolError",
    "RefusedError", "TooLargeError", "TRIGGER_CALL_BACK", "Code", "Message", "Reply",
    "Simulator", "pattern", "check_workflow", "save_tiff_stack", "SoftLimits",
]
