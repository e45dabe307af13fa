"""The GIL is released during blocking calls; closing and garbage collection
leave no thread behind."""

import gc
import threading
import time

import pytest

from flamingo_client import Client, Code, Simulator
from flamingo_client.compat import CommandClient

from conftest import os_threads, python_threads, wait_until


def test_gil_released_during_blocking_move(client):
    """A Python thread keeps ticking while the main thread waits for a move."""
    client.stage.set_velocity("z", 1.0)  # mm/s: 0.5 mm takes about 0.5 s
    start = client.stage.position("z")
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        began = time.monotonic()
        client.stage.move_and_wait("z", start + 0.5, motion_timeout=10.0)
        ended = time.monotonic()
    finally:
        stop.set()
        t.join()
    during = [x for x in ticks if began < x < ended]
    assert ended - began >= 0.3
    # At 10 ms per tick, a released GIL gives dozens of ticks during the move.
    assert len(during) >= 10, f"only {len(during)} ticks in {ended - began:.2f} s"


def test_gil_released_while_waiting_for_a_reply(sim, client):
    sim.set_faults(delay={Code.CAMERA_IMAGE_SIZE_GET: 0.4})
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        client.camera.image_size(timeout=3.0)
    finally:
        stop.set()
        t.join()
    assert count[0] > 1000


def _full_session(addr: str) -> Client:
    c = Client(addr)
    c.on_event(lambda ev: None)
    c.subscribe()
    with c.camera.live() as live:
        live.next_frame(timeout=2.0)
    c.stage.move_and_wait("x", 9.0)
    return c


def test_close_leaves_no_threads(sim):
    base_os, base_py = os_threads(), python_threads()
    c = _full_session(sim.address)
    assert os_threads() > base_os
    c.close()
    assert python_threads() <= base_py
    # The client's threads are joined by close(); the simulator's per-connection
    # threads end once it sees the connection close.
    assert wait_until(lambda: os_threads() <= base_os), (os_threads(), base_os)


def test_garbage_collection_leaves_no_threads(sim):
    base = os_threads()
    c = _full_session(sim.address)
    # A callback that refers to the client forms a cycle only through Python objects.
    c.on_event(lambda ev: c.state)
    del c
    gc.collect()
    assert wait_until(lambda: os_threads() <= base), (os_threads(), base)
    assert wait_until(lambda: sim.open_connections() == 0)


def test_simulator_stop_leaves_no_threads():
    base = os_threads()
    s = Simulator(image_size=(8, 8))
    with Client(s.address) as c:
        c.camera.image_size()
    s.stop()
    assert wait_until(lambda: os_threads() <= base), (os_threads(), base)


def test_compat_stop_and_gc_leave_no_threads(sim):
    base_os, base_py = os_threads(), python_threads()
    cc = CommandClient(sim.address)
    cc.start()
    cc.register_callback(0x6010, lambda m: None)
    cc.stop()
    assert python_threads() <= base_py
    cc2 = CommandClient(sim.address)
    cc2.start()
    del cc2
    gc.collect()
    assert wait_until(lambda: os_threads() <= base_os), (os_threads(), base_os)


def test_interpreter_exit_with_open_client_does_not_hang(tmp_path):
    """A script that never closes its client, simulator, live view or
    callback still exits promptly and cleanly."""
    import subprocess
    import sys

    script = tmp_path / "leave_open.py"
    script.write_text(
        "from flamingo_client import Client, Simulator\n"
        "sim = Simulator(image_size=(32, 32), live_fps=100)\n"
        "c = Client(sim.address)\n"
        "c.on_event(lambda ev: None)\n"
        "sub = c.subscribe()\n"
        "live = c.camera.live()\n"
        "live.next_frame(2.0)\n"
        "c.stage.move_to('x', 9.0)\n"
        "print('done')\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "done"
