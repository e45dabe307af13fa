"""The lab GUI's scenarios against the simulator, with either socket reader:
``flamingo_client.compat`` (installed with ``compat.install()``) or the
GUI's own ``socket_reader.py`` given by ``--original`` (loaded from a copy
outside this repository). The GUI side is the test doubles of
``tests/doubles`` (the GUI's calls on its socket), unchanged between runs.

    python bench/py2flamingo_scenarios.py                      # compat
    python bench/py2flamingo_scenarios.py --original /path/to/socket_reader.py

Prints: connections the simulator saw open, stale laser read-backs (a level
set on the socket, read back at once through the reader), workflow stops
whose unpaused read got the stop's reply, and for a burst of 3000 progress
events with a 5 ms callback: callbacks run and drops reported.
"""

import argparse
import importlib.util
import os
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "doubles"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import flamingo_client as fc  # noqa: E402
from flamingo_client import compat  # noqa: E402
from conftest import workflow_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--original", help="the GUI's socket_reader.py (default: compat)")
    ap.add_argument("--readbacks", type=int, default=500)
    ap.add_argument("--stops", type=int, default=60)
    ap.add_argument("--burst", type=int, default=3000)
    a = ap.parse_args()

    if a.original:
        spec = importlib.util.spec_from_file_location("py2flamingo.core.socket_reader", a.original)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["py2flamingo.core.socket_reader"] = mod
        spec.loader.exec_module(mod)
        label = "original"
    else:
        compat.install()
        label = "compat"
    from py2flamingo.core import TCPConnection
    from py2flamingo.services.microscope_command_service import MicroscopeCommandService

    sim = fc.Simulator(image_size=(64, 48), plane_interval=0.005)
    conn = TCPConnection()
    host, port = sim.address.rsplit(":", 1)
    conn.connect(host, int(port))
    svc = MicroscopeCommandService(conn)
    time.sleep(0.2)
    print(f"[{label}] connections open: {sim.open_connections()}")

    stale = lost = 0
    t0 = time.monotonic()
    for i in range(a.readbacks):
        level = f"{(i * 7) % 100 + 0.25:.2f}"
        svc.set_laser_power(2, float(level))
        r = svc.query(0x2002, [0, 0, 0, 2])
        if r is None:
            lost += 1
        elif r.data_field.split(b"\0", 1)[0].decode() != level:
            stale += 1
    print(f"[{label}] laser read-backs: {stale} stale, {lost} lost of {a.readbacks} "
          f"({time.monotonic() - t0:.2f} s)")

    ok = 0
    for _ in range(a.stops):
        running, idle = threading.Event(), threading.Event()
        on_p, on_i = (lambda m: running.set()), (lambda m: idle.set())
        conn.register_callback(0x9004, on_p)
        conn.register_callback(0xA002, on_i)
        svc.start_workflow(workflow_text(100_000).encode())
        running.wait(5.0)
        try:
            reply = svc.stop_workflow(timeout=3.0)
            ok += struct.unpack_from("<I", reply, 4)[0] == 0x3005
        except Exception:
            pass
        if not idle.wait(5.0):
            svc.stop_workflow(timeout=1.0) if False else None
        conn.unregister_callback(0x9004, on_p)
        conn.unregister_callback(0xA002, on_i)
        time.sleep(0.05)
    print(f"[{label}] workflow stops answered: {ok}/{a.stops}")

    seen = []
    conn.register_callback(0x9004, lambda m: (seen.append(1), time.sleep(0.005)))
    time.sleep(0.2)
    for i in range(a.burst):
        sim.broadcast(fc.Message(0x9004, int32_data0=i, int32_data1=a.burst))
    last, quiet = -1, 0
    while quiet < 20:
        time.sleep(0.1)
        quiet = quiet + 1 if len(seen) == last else 0
        last = len(seen)
    stats = conn._command_client.get_stats()
    reported = stats.get("events_dropped", stats.get("dispatcher", {}).get("messages_dropped", 0))
    print(f"[{label}] burst of {a.burst}: {len(seen)} callbacks run, {reported} reported dropped, "
          f"{a.burst - len(seen) - reported} unaccounted")
    conn.disconnect()
    sim.stop()


if __name__ == "__main__":
    main()
