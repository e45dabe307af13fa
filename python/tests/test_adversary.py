"""Adversarial tests of the documented contract (python/README.md, compat's
module docstring): interpreter exit in every state a thread can be in, the
raw socket rule, install()/uninstall(), event delivery, the GIL, error
classes, and the CLI's checks on every path that starts a workflow or a move.

Each test names the clause it checks. Against the simulator, and scripted
loopback servers where the simulator cannot misbehave the way needed."""

import logging
import math
import os
import select
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import flamingo_client as fc
from flamingo_client import (
    Client,
    Code,
    ConnectError,
    DisconnectedError,
    FlamingoError,
    FlamingoTimeoutError,
    InvalidArgumentError,
    Message,
    ReconnectPolicy,
    Simulator,
    compat,
)
from flamingo_client.compat import CommandClient, CoreSocket

from conftest import W, H, wait_until, workflow_text

DOUBLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "doubles")
ECHO = 0x7F01  # unknown to the library: the simulator echoes it back
FLAG = fc.TRIGGER_CALL_BACK


def cmd(code, i0=0, i1=0, i2=0, value=0.0, flags=FLAG, extra=0, text=b""):
    """128 bytes, packed the way the GUI packs them."""
    return struct.pack("<IIIIIIiiiIdI72sI", 0xF321E654, code, 0, 0, 0, 0, i0, i1, i2, flags,
                       value, extra, text, 0xFEDC4321)


def field_i2(reply: bytes) -> int:
    return struct.unpack_from("<i", reply, 32)[0]


def read_exactly(sock, n, timeout=2.0):
    sock.settimeout(timeout)
    b = b""
    while len(b) < n:
        c = sock.recv(n - len(b))
        if not c:
            break
        b += c
    return b


@pytest.fixture
def raw(sim):
    """A compat CommandClient started on a plain socket: (client, CoreSocket)."""
    host, port = sim.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    cc = CommandClient(s)
    cc.start()
    assert isinstance(s, CoreSocket)
    yield cc, s
    cc.stop()
    s.close()


# ====================================================================== exit

EXIT_PRELUDE = textwrap.dedent(
    """
    import socket, struct, sys, threading, time
    sys.path.insert(0, {doubles!r})
    import flamingo_client as fc
    from flamingo_client import compat
    FLAG = 0x80000000
    def cmd(code, i0=0, i2=0, flags=FLAG):
        return struct.pack("<IIIIIIiiiIdI72sI", 0xF321E654, code, 0, 0, 0, 0, i0, 0, i2,
                           flags, 0.0, 0, b"", 0xFEDC4321)
    sim = fc.Simulator(image_size=(16, 16), plane_interval=0.002, live_fps=200.0)
    ready = threading.Event()
    def daemon(fn):
        def run():
            while True:
                try:
                    fn()
                except Exception:
                    pass
        threading.Thread(target=run, daemon=True).start()
    """
)

# Each scenario leaves daemon threads in one state; the main thread then
# returns (ready is set by the scenario once its threads are in that state).
EXIT_SCENARIOS = {
    # A request waiting for a reply that comes 30 s later.
    "mid_request": """
        sim.set_faults(delay={0x3027: 30.0})
        c = fc.Client(sim.address, timeout=60.0)
        def q():
            ready.set()
            c.camera.image_size()
        daemon(q)
    """,
    # A callback blocked in Python (a GUI callback waiting on a lock).
    "callback_blocked": """
        c = fc.Client(sim.address)
        never = threading.Event()
        c.on_event(lambda ev: (ready.set(), never.wait()), codes=[0x9004])
        sim.broadcast(fc.Message(0x9004, int32_data0=1))
    """,
    # A callback that calls back into the client, event after event.
    "callback_calls_client": """
        c = fc.Client(sim.address)
        c.on_event(lambda ev: (ready.set(), c.stage.position("x"), c.camera.image_size()),
                   codes=[0x9004])
        def burst():
            sim.broadcast(fc.Message(0x9004, int32_data0=1))
            time.sleep(0.001)
        daemon(burst)
    """,
    # The GUI's thread in a raw recv without a timeout, no reply coming.
    "raw_recv_no_timeout": """
        sim.set_faults(never_answer=[0x7F01])
        s = socket.create_connection(("127.0.0.1", sim.port))
        cc = compat.CommandClient(s)
        cc.start()
        s.sendall(cmd(0x7F01))
        def r():
            ready.set()
            s.settimeout(None)
            s.recv(128)
        daemon(r)
    """,
    # The GUI's debug queries: raw write, raw recv with a short timeout, in a loop.
    "raw_recv_timeout": """
        s = socket.create_connection(("127.0.0.1", sim.port))
        cc = compat.CommandClient(s)
        cc.start()
        def r():
            s.sendall(cmd(0x6008, i0=1))
            s.settimeout(0.005)
            ready.set()
            s.recv(128)
        daemon(r)
        daemon(lambda: cc.send_command(cmd(0x3027), 0x3027, 1.0))
    """,
    # The link is down and the client reconnects; threads keep asking.
    "reconnecting": """
        c = fc.Client(sim.address, timeout=0.5,
                      reconnect=fc.ReconnectPolicy(initial_delay=0.01, max_delay=0.05))
        c.stage.position("x")
        sim.stop()
        def q():
            if c.state == "reconnecting":
                ready.set()
            c.stage.position("x")
        daemon(q)
        daemon(lambda: c.subscribe().get(0.05))
    """,
    # Threads opening, using and closing clients while the main thread returns.
    "closing": """
        shared = fc.Client(sim.address)
        def cycle():
            c = fc.Client(sim.address)
            c.on_event(lambda ev: None)
            ready.set()
            c.stage.position("x")
            c.close()
        daemon(cycle)
        daemon(cycle)
        daemon(lambda: (shared.stage.position("y"), shared.close()))
    """,
    # The GUI disconnecting and reconnecting in a loop (compat's stop/start).
    "compat_reconnect": """
        compat.install()
        from py2flamingo.core import TCPConnection
        conn = TCPConnection()
        def cycle():
            conn.connect("127.0.0.1", sim.port)
            conn.register_callback(0x9004, lambda m: None)
            ready.set()
            conn.disconnect()
        daemon(cycle)
        daemon(lambda: sim.broadcast(fc.Message(0x9004)))
    """,
    # Live view in a thread.
    "live": """
        c = fc.Client(sim.address)
        live = c.camera.live()
        def f():
            live.next_frame(1.0)
            ready.set()
        daemon(f)
    """,
}


def _exit_script(body: str) -> str:
    return EXIT_PRELUDE.format(doubles=DOUBLES) + textwrap.dedent(body) + textwrap.dedent(
        """
        if not ready.wait(10):
            print("scenario never got ready", flush=True)
        time.sleep(0.1)
        print("main done", flush=True)
        """
    )


EXIT_RUNS = 3
EXIT_BUDGET_S = 3.0  # "never hangs": the process is gone this long after main returns


def test_interpreter_exit_in_every_state():
    """README, Interpreter exit: never aborts and never hangs, whatever
    threads still use the client. Every scenario, EXIT_RUNS fresh
    interpreters each (run in parallel to stay within the time budget)."""
    procs = []
    for name, body in sorted(EXIT_SCENARIOS.items()):
        for run in range(EXIT_RUNS):
            p = subprocess.Popen([sys.executable, "-c", _exit_script(body)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append((name, run, p))
    failures = []
    for name, run, p in procs:
        try:
            out, err = p.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            failures.append(f"{name} run {run}: hung (killed after 40 s)")
            continue
        bad = [w for w in ("FATAL", "Fatal Python error", "panicked") if w in err]
        if p.returncode != 0 or "main done" not in out or bad:
            failures.append(f"{name} run {run}: status {p.returncode} {out!r} {err[-600:]!r}")
    assert failures == []


@pytest.mark.parametrize("name", ["callback_blocked", "mid_request", "raw_recv_no_timeout"])
def test_interpreter_exit_is_prompt(name):
    """README: interpreter exit never hangs. Time from the main thread's
    return to the end of the process, with a thread stuck in that state.

    FAILS (callback_blocked): the exit takes 5.1 s. The atexit hook
    (client._close_all) calls Client.close(), which joins the
    ``flamingo-events`` thread with ``t.join(5.0)``; a callback blocked in
    Python (a GUI callback waiting on a lock or a queue) holds every exit
    for 5 s, per client with such a callback."""
    script = _exit_script(EXIT_SCENARIOS[name])
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # Wait for "main done", then time the exit.
    line = p.stdout.readline()
    assert "main done" in line, p.stderr.read()[-1000:]
    t0 = time.monotonic()
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"{name}: still running 30 s after the main thread returned")
    took = time.monotonic() - t0
    assert p.returncode == 0, err[-1000:]
    assert took < EXIT_BUDGET_S, f"{name}: exit took {took:.1f} s after the main thread returned"
