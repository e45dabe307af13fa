"""Shared fixtures: a small, fast simulator and a client connected to it."""

import os
import threading
import time
from typing import Callable, Iterator

import pytest

from flamingo_client import Client, Simulator

# Small frames keep the live tests fast; planes 1 ms apart keep workflows short.
W, H = 64, 48


@pytest.fixture
def sim() -> Iterator[Simulator]:
    s = Simulator(image_size=(W, H), live_fps=200.0, plane_interval=0.001)
    yield s
    s.stop()


@pytest.fixture
def client(sim: Simulator) -> Iterator[Client]:
    c = Client(sim.address, timeout=3.0)
    yield c
    c.close()


def os_threads() -> int:
    """Threads of this process, Python's and the library's (Linux)."""
    return len(os.listdir("/proc/self/task"))


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Polls a condition that other threads make true, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def python_threads() -> int:
    return threading.active_count()


def workflow_text(planes: int, laser_percent: float = 5.88) -> str:
    """A small workflow file that passes the CLI's ``workflow check``."""
    return (
        "<Workflow Settings>\n"
        "  <Experiment Settings>\n"
        "    Plane spacing (um) = 2.5\n"
        "    Save image drive = /media/DATA\n"
        "  </Experiment Settings>\n"
        "  <Stack Settings>\n"
        f"    Number of planes = {planes}\n"
        "  </Stack Settings>\n"
        "  <Start Position>\n"
        "    X (mm) = 8.0\n"
        "    Y (mm) = 20.0\n"
        "    Z (mm) = 19.0\n"
        "    Angle (degrees) = 0.0\n"
        "  </Start Position>\n"
        "  <Illumination Source>\n"
        f"    Laser 3 3: 561 nm MLE = {laser_percent:.2f} 1\n"
        "  </Illumination Source>\n"
        "</Workflow Settings>\n"
    )
