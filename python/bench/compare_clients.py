"""Compares the compatibility CommandClient with the GUI's original socket
client on this machine, against the simulator.

    python bench/compare_clients.py [--original PATH/TO/socket_reader.py]

``--original`` is a copy of py2flamingo/core/socket_reader.py from the
uw-loci/Flamingo_Control repository (not part of this project); without it
only the compatibility class is measured. Both clients run in this process
against one simulator on 127.0.0.1, with the same requests:

- latency: sequential send_command round trips on one code (the simulator
  echoes codes outside its catalogue);
- throughput: 8 threads sharing that code, each request tagged in
  int32Data2; a reply with another request's tag is a wrong reply, a None
  (timeout) a lost one.
"""

import argparse
import importlib.util
import socket
import statistics
import struct
import sys
import threading
import time
from typing import Any, Dict

from flamingo_client import Simulator
from flamingo_client.compat import CommandClient as CompatClient

ECHO = 0x7F01
TRIGGER = 0x8000_0000


def command(tag: int) -> bytes:
    return struct.pack("<IIIIIIiiiIdI72sI", 0xF321E654, ECHO, 0, 0, 0, 0, 0, 0, tag, TRIGGER,
                       0.0, 0, b"", 0xFEDC4321)


def connect(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=2.0)
    s.settimeout(None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def measure(cls: Any, addr: str, n_latency: int, threads: int, per_thread: int,
            timeout: float) -> Dict[str, Any]:
    sock = connect(addr)
    cc = cls(sock)
    cc.start()
    try:
        for i in range(50):  # warm-up
            cc.send_command(command(i), ECHO, timeout)
        lat = []
        bad_seq = 0
        for i in range(n_latency):
            t0 = time.perf_counter()
            r = cc.send_command(command(i), ECHO, timeout)
            lat.append(time.perf_counter() - t0)
            if r is None or r.int32_data2 != i:
                bad_seq += 1
        lat.sort()
        wrong, lost = [0], [0]
        lock = threading.Lock()

        def worker(t: int) -> None:
            w = n = 0
            for i in range(per_thread):
                tag = t * 1_000_000 + i
                r = cc.send_command(command(tag), ECHO, timeout)
                if r is None:
                    n += 1
                elif r.int32_data2 != tag:
                    w += 1
            with lock:
                wrong[0] += w
                lost[0] += n

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.perf_counter() - t0
        total = threads * per_thread
        return {
            "p50_us": lat[len(lat) // 2] * 1e6,
            "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
            "mean_us": statistics.mean(lat) * 1e6,
            "sequential_wrong_or_lost": bad_seq,
            "threads": threads,
            "requests": total,
            "correct_per_s": (total - wrong[0] - lost[0]) / elapsed,
            "wrong": wrong[0],
            "lost": lost[0],
            "elapsed_s": elapsed,
        }
    finally:
        cc.stop()
        sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", help="path of the original socket_reader.py")
    ap.add_argument("--latency", type=int, default=2000, help="sequential requests")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--per-thread", type=int, default=250)
    ap.add_argument("--timeout", type=float, default=0.5, help="send_command timeout (s)")
    a = ap.parse_args()
    clients = [("compat (Rust core)", CompatClient)]
    if a.original:
        spec = importlib.util.spec_from_file_location("original_socket_reader", a.original)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        clients.append(("original CommandClient", mod.CommandClient))
    import logging
    logging.disable(logging.WARNING)  # the original logs every timeout
    print(f"python {sys.version.split()[0]}, {a.latency} sequential requests, "
          f"{a.threads} threads x {a.per_thread} requests on one code, timeout {a.timeout} s")
    print(f"{'client':24} {'p50 us':>8} {'p99 us':>8} {'8-thr correct/s':>16} {'wrong':>6} {'lost':>6}")
    with Simulator(image_size=(64, 64)) as sim:
        for name, cls in clients:
            r = measure(cls, sim.address, a.latency, a.threads, a.per_thread, a.timeout)
            print(f"{name:24} {r['p50_us']:8.0f} {r['p99_us']:8.0f} {r['correct_per_s']:16.0f} "
                  f"{r['wrong']:6d} {r['lost']:6d}   (sequential wrong/lost: "
                  f"{r['sequential_wrong_or_lost']}, 8-thread run {r['elapsed_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
