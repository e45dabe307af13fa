"""The interpreter exits with status 0, promptly, whatever threads still use
the client: each scenario runs in a fresh interpreter, several times. The
main thread returns while daemon threads are inside or between native calls;
they must neither abort the process (a thread ended by CPython while
re-taking the GIL, unwound through the extension) nor keep it alive."""

import os
import subprocess
import sys
import textwrap

import pytest

RUNS = 4

PRELUDE = textwrap.dedent(
    """
    import socket, struct, sys, threading, time
    sys.path.insert(0, {doubles!r})
    import flamingo_client as fc
    from flamingo_client import compat

    sim = fc.Simulator(image_size=(16, 16), plane_interval=0.002)
    started = threading.Barrier({threads} + 1, timeout=10)

    def daemon(fn):
        def run():
            started.wait()
            while True:
                try:
                    fn()
                except Exception:
                    pass
        threading.Thread(target=run, daemon=True).start()
    """
)

SCENARIOS = {
    # A thread polling the stage in a tight loop (every call releases the GIL).
    "polling": (2, """
        c = fc.Client(sim.address)
        daemon(lambda: c.stage.position("x"))
        daemon(lambda: c.camera.image_size())
    """),
    # A plain `for ev in sub` loop, and a callback busy in Python.
    "subscription": (1, """
        c = fc.Client(sim.address)
        c.on_event(lambda ev: sum(range(10000)))
        sub = c.subscribe()
        def loop():
            for ev in sub:
                pass
        daemon(loop)
        for i in range(200):
            sim.broadcast(fc.Message(fc.Code.UI_SET_GAUGE_VALUE, int32_data0=i))
    """),
    # A thread waiting for a long workflow, and one moving the stage.
    "workflow": (2, """
        c = fc.Client(sim.address)
        text = ("<Workflow Settings>\\n<Experiment Settings>\\n</Experiment Settings>\\n"
                "<Stack Settings>\\nNumber of planes = 100000\\n</Stack Settings>\\n"
                "<Start Position>\\nX (mm) = 8\\nY (mm) = 20\\nZ (mm) = 19\\n"
                "Angle (degrees) = 0\\n</Start Position>\\n<Illumination Source>\\n"
                "</Illumination Source>\\n</Workflow Settings>\\n")
        run = c.workflows.start(text=text)
        daemon(lambda: run.wait(None))
        daemon(lambda: c.stage.move_and_wait("x", 9.0 if time.time() % 2 < 1 else 8.0))
    """),
    # The GUI: compat on its socket, a thread doing raw queries, callbacks.
    "gui": (2, """
        compat.install()
        from py2flamingo.core import TCPConnection
        from py2flamingo.services.microscope_command_service import MicroscopeCommandService
        conn = TCPConnection()
        host, port = sim.address.rsplit(":", 1)
        conn.connect(host, int(port))
        svc = MicroscopeCommandService(conn)
        conn.register_callback(0x9004, lambda m: time.sleep(0.001))
        daemon(lambda: svc.debug_query(0x6008, axis=1))
        daemon(lambda: svc.query(0x3027))
        for i in range(200):
            sim.broadcast(fc.Message(fc.Code.UI_SET_GAUGE_VALUE, int32_data0=i))
    """),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_interpreter_exits_cleanly_with_daemon_threads_using_the_client(name):
    threads, body = SCENARIOS[name]
    doubles = os.path.join(os.path.dirname(os.path.abspath(__file__)), "doubles")
    script = PRELUDE.format(doubles=doubles, threads=threads) + textwrap.dedent(body) + (
        "\nstarted.wait()\ntime.sleep(0.2)\nprint('main done', flush=True)\n"
    )
    for run in range(RUNS):
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0 and "main done" in p.stdout, (
            f"{name} run {run}: exit status {p.returncode}\n{p.stderr[-2000:]}"
        )
        assert "FATAL" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
