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
WF_START = 0x3004


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
    cc.send_command(cmd(Code.CAMERA_IMAGE_SIZE_GET), Code.CAMERA_IMAGE_SIZE_GET)
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
        c.camera.image_size()  # the simulator has accepted the connection
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
        def burst():
            # Bursts with quiet gaps: the GUI drains its new socket until
            # 0.1 s pass without data, which a continuous stream never allows.
            for _ in range(20):
                sim.broadcast(fc.Message(0x9004))
            time.sleep(0.15)
        daemon(cycle)
        daemon(burst)
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
            sys.exit(3)
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


# ====================================================================== the raw socket rule


def test_raw_read_never_gets_the_in_flight_reply_of_an_earlier_raw_write(sim, raw):
    """Rule: a raw read receives the reply to the latest raw write, and
    nothing else. The GUI's debug query times out (a slow instrument), the
    GUI asks again about another axis: the read must get the answer about
    that axis, not the late answer to the first query.

    FAILS: the second read gets the first query's reply (axis 1, not 2).
    The router's expectation for a raw write is "the first message of the
    code after the write" (Expect.after = last_seq at raw_send): the late
    reply to the earlier raw write, still in flight, matches it. The core
    knows both writes are flagged sends awaiting answers (their key stays
    closed); the router does not count answers owed to earlier raw writes."""
    cc, s = raw
    sim.set_faults(delay={Code.STAGE_POSITION_GET: 0.3})
    s.sendall(cmd(Code.STAGE_POSITION_GET, i0=1))
    s.settimeout(0.05)
    with pytest.raises(socket.timeout):
        s.recv(128)  # the GUI gives up on the first query
    s.sendall(cmd(Code.STAGE_POSITION_GET, i0=2))
    reply = read_exactly(s, 128, timeout=3.0)
    assert len(reply) == 128
    assert struct.unpack_from("<i", reply, 24)[0] == 2, "got the reply about axis 1"


def test_raw_read_ignores_messages_of_the_code_before_any_raw_write(sim, raw):
    """Rule: a raw read receives the reply to a raw write and nothing else;
    everything else goes to the dispatcher exactly once."""
    cc, s = raw
    got = []
    cc.register_callback(ECHO, got.append)
    sim.broadcast(Message(ECHO, int32_data2=11))
    assert wait_until(lambda: len(got) == 1)
    assert select.select([s], [], [], 0.1)[0] == []
    # The raw write's reply, and after it nothing more reaches the socket.
    s.sendall(cmd(ECHO, i2=22))
    assert field_i2(read_exactly(s, 128)) == 22
    sim.broadcast(Message(ECHO, int32_data2=33))
    assert wait_until(lambda: len(got) == 2)
    assert [m.int32_data2 for m in got] == [11, 33]
    assert select.select([s], [], [], 0.1)[0] == []


def test_raw_write_then_request_same_code_each_gets_its_own_reply(sim, raw):
    """Rule + "correlation never guesses": a raw write and, right after, a
    request of the same code, both in flight: the raw read gets the raw
    write's echo and the request its own."""
    cc, s = raw
    sim.set_faults(delay={ECHO: 0.1})
    s.sendall(cmd(ECHO, i2=1))
    r = cc.send_command(cmd(ECHO, i2=2), ECHO, 3.0)
    assert r is not None and r.int32_data2 == 2
    assert field_i2(read_exactly(s, 128)) == 1


def test_raw_message_written_one_byte_at_a_time(sim, raw):
    """sendall of a message in pieces (here, byte by byte) sends it once, whole."""
    cc, s = raw
    before = sim.received_codes().count(ECHO)
    for b in cmd(ECHO, i2=7):
        s.sendall(bytes([b]))
    assert field_i2(read_exactly(s, 128)) == 7
    assert sim.received_codes().count(ECHO) == before + 1


def test_raw_workflow_in_two_sendalls_then_request_keeps_wire_order(sim, raw):
    """README: the additional data may come in a second sendall; a raw write
    followed by a request reaches the instrument first."""
    cc, s = raw
    wf = workflow_text(3).encode()
    s.sendall(cmd(WF_START, extra=len(wf)))
    assert sim.workflows() == []  # not complete yet: nothing sent
    s.sendall(wf[:10])
    s.sendall(wf[10:])
    cc.send_command(cmd(Code.CAMERA_IMAGE_SIZE_GET), Code.CAMERA_IMAGE_SIZE_GET)
    codes = sim.received_codes()
    assert codes.index(WF_START) < len(codes) - 1
    assert codes[-1] == Code.CAMERA_IMAGE_SIZE_GET
    assert sim.workflows() == [wf]


def test_concurrent_raw_writes_all_arrive_whole(sim, raw):
    """Four threads writing whole messages raw at once: every one arrives,
    none corrupted (no bad-marker errors)."""
    cc, s = raw
    errors = []
    before = sim.received_codes().count(ECHO)

    def writer(t):
        try:
            for i in range(100):
                s.sendall(cmd(ECHO, i2=t * 1000 + i, flags=0))
        except Exception as e:  # pragma: no cover - the failure is reported below
            errors.append(e)

    ts = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert wait_until(lambda: sim.received_codes().count(ECHO) == before + 400)


def test_settimeout_and_blocking_modes_behave_as_on_a_socket(sim, raw):
    cc, s = raw
    s.settimeout(0.05)
    with pytest.raises(socket.timeout):
        s.recv(128)
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv(128)
    # A raw write that discards an unread reply restores the caller's mode.
    s.setblocking(True)
    s.sendall(cmd(ECHO, i2=1))
    assert wait_until(lambda: select.select([s], [], [], 0)[0] == [s])
    s.settimeout(0.0)
    s.sendall(cmd(ECHO, i2=2))  # discards the unread echo 1
    assert s.gettimeout() == 0.0
    s.settimeout(2.0)
    assert field_i2(read_exactly(s, 128)) == 2
    assert select.select([s], [], [], 0.05)[0] == []


def test_stop_wakes_a_raw_recv_blocked_without_timeout(sim, raw):
    """README: after the reader stops, reads return b"" as on a closed connection."""
    cc, s = raw
    got = []
    s.settimeout(None)
    t = threading.Thread(target=lambda: got.append(s.recv(128)))
    t.start()
    time.sleep(0.05)
    cc.stop()
    t.join(2.0)
    assert not t.is_alive() and got == [b""]
    with pytest.raises(ConnectionError):
        s.sendall(cmd(ECHO))


def test_link_loss_wakes_a_raw_recv_and_writes_raise_connection_error(raw, sim):
    cc, s = raw
    got = []
    s.settimeout(None)
    t = threading.Thread(target=lambda: got.append(s.recv(128)))
    t.start()
    time.sleep(0.05)
    sim.stop()
    t.join(3.0)
    assert not t.is_alive() and got == [b""]
    with pytest.raises(ConnectionError):
        s.sendall(cmd(ECHO))
    with pytest.raises(ConnectionError):
        cc.send_command(cmd(ECHO), ECHO, 1.0)


def test_reader_restarted_on_the_same_socket_works_again(sim, raw):
    """SocketReader.stop: "the socket then reads as closed; start connects again"."""
    cc, s = raw
    cc.stop()
    assert s.recv(128) == b""
    cc.start()
    s.sendall(cmd(ECHO, i2=5))
    assert field_i2(read_exactly(s, 128)) == 5
    r = cc.send_command(cmd(Code.CAMERA_IMAGE_SIZE_GET), Code.CAMERA_IMAGE_SIZE_GET)
    assert r is not None and r.int32_data0 == W
    assert wait_until(lambda: sim.open_connections() == 1)


def test_closing_the_core_socket_then_stopping_the_reader(sim):
    """The GUI closes its socket before stopping the reader: no error, no
    thread left, the instrument sees the connection go."""
    host, port = sim.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    cc = CommandClient(s)
    cc.start()
    s.close()
    with pytest.raises(OSError):
        s.sendall(cmd(ECHO))
    cc.stop()
    assert wait_until(lambda: sim.open_connections() == 0)
    assert not any(t.name == "flamingo-compat-reader" for t in threading.enumerate())


# ====================================================================== install / uninstall


def _forget_gui():
    for name in list(sys.modules):
        if name == "py2flamingo" or name.startswith("py2flamingo."):
            del sys.modules[name]


@pytest.fixture
def gui_path():
    _forget_gui()
    sys.path.insert(0, DOUBLES)
    yield
    compat.uninstall()
    compat.configure(event_queue_depth=10_000, check_workflows=True, soft_limits=False)
    _forget_gui()
    sys.path.remove(DOUBLES)


def test_uninstall_undoes_an_install_made_before_the_gui_was_imported(gui_path):
    """README: "flamingo_client.compat.uninstall() undoes it". Installed
    before the GUI is imported (the documented first way), then uninstalled:
    the GUI must use its own reader again.

    FAILS: py2flamingo.core.CommandClient (and the five other names) stay
    compat's after uninstall(). install() records only the names it rebinds
    in modules already loaded; names the GUI imported while installed are
    not tracked, so uninstall() cannot restore them: the GUI is left half
    switched (core's names compat's, a fresh socket_reader the GUI's)."""
    compat.install()
    import py2flamingo.core as core

    assert core.CommandClient is compat.CommandClient
    compat.uninstall()
    import py2flamingo.core.socket_reader as own

    assert own is not compat
    stale = [n for n in ("CommandClient", "SocketReader", "MessageDispatcher", "ParsedMessage",
                         "ProtocolCommands", "UNSOLICITED_COMMANDS")
             if getattr(core, n) is getattr(compat, n)]
    assert stale == [], f"still compat's after uninstall(): {stale}"


def test_install_uninstall_install_again(gui_path):
    import py2flamingo.core as core
    import py2flamingo.core.socket_reader as own

    for _ in range(3):
        compat.install()
        compat.install()
        assert compat.is_installed() and core.CommandClient is compat.CommandClient
        compat.uninstall()
        compat.uninstall()
        assert not compat.is_installed() and core.CommandClient is own.CommandClient
        assert sys.modules["py2flamingo.core.socket_reader"] is own


def test_uninstall_restores_the_settings_install_changed(sim, gui_path):
    """install(**settings) is "reversible": after uninstall() a reader
    started by the caller behaves as before install(soft_limits=True).

    FAILS: install() calls configure(), which changes the module's defaults
    for good; uninstall() leaves soft_limits on, so a CommandClient started
    afterwards still refuses a move the instrument accepts."""
    compat.install(soft_limits=True)
    compat.uninstall()
    cc = CommandClient(sim.address)
    cc.start()
    try:
        r = cc.send_command(cmd(0x6005, i0=3, value=5.0), 0x6005, 2.0)
        assert r is not None  # sent: soft limits are not checked any more
    finally:
        cc.stop()


# ====================================================================== events


def _connected(sim, **kw):
    """A client the simulator has surely accepted (one round trip), so its
    broadcasts reach it."""
    c = Client(sim.address, **kw)
    c.camera.image_size()
    return c


def _gauges(sim, n, code=Code.UI_SET_GAUGE_VALUE):
    for i in range(n):
        sim.broadcast(Message(code, int32_data0=i))


def test_callback_queue_depth_drops_counted_and_logged(sim, caplog):
    """README: a queue of callback_queue_depth events; when a slow callback
    lets it fill, the oldest is dropped, counted in
    stats()["callback_events_dropped"] and logged. Every event is either
    run or counted."""
    c = _connected(sim, callback_queue_depth=4)
    try:
        gate = threading.Event()
        seen = []
        c.on_event(lambda ev: (gate.wait(5), seen.append(ev.message.int32_data0 if ev.message else -1)),
                   codes=[Code.UI_SET_GAUGE_VALUE])
        with caplog.at_level(logging.WARNING, logger="flamingo_client"):
            _gauges(sim, 50)
            assert wait_until(lambda: c.stats()["messages_received"] >= 50)
            gate.set()
            assert wait_until(lambda: len(seen) + c.stats()["callback_events_dropped"] >= 50)
        st = c.stats()
        assert len(seen) + st["callback_events_dropped"] == 50
        assert st["callback_events_dropped"] >= 40 and st["callback_queue_depth"] == 4
        assert seen == sorted(seen) and seen[-1] == 49  # the newest are kept, in order
        assert any("dropped" in r.getMessage() for r in caplog.records)
    finally:
        c.close()


def test_events_filtered_natively_never_reach_the_callback(sim):
    c = _connected(sim)
    try:
        got = []
        c.on_event(got.append, codes=[Code.STAGE_MOTION_STOPPED])
        _gauges(sim, 100)
        sim.broadcast(Message(Code.STAGE_MOTION_STOPPED, int32_data0=1, status=1))
        assert wait_until(lambda: len(got) == 1)
        st = c.stats()
        assert st["callback_events_filtered"] == 100
        assert got[0].code == Code.STAGE_MOTION_STOPPED
    finally:
        c.close()


def test_filter_of_one_callback_does_not_leak_other_codes_to_it(sim):
    """Two callbacks, one filtered: the native filter passes the union; the
    filtered callback still sees only its codes."""
    c = _connected(sim)
    try:
        only_stop, every = [], []
        c.on_event(only_stop.append, codes=[Code.STAGE_MOTION_STOPPED])
        cid = c.on_event(every.append)
        _gauges(sim, 5)
        sim.broadcast(Message(Code.STAGE_MOTION_STOPPED, int32_data0=1, status=1))
        assert wait_until(lambda: len(every) >= 6)
        assert [e.code for e in only_stop] == [Code.STAGE_MOTION_STOPPED]
        assert c.remove_callback(cid)
        before = c.stats()["callback_events_filtered"]
        _gauges(sim, 5)
        assert wait_until(lambda: c.stats()["callback_events_filtered"] == before + 5)
    finally:
        c.close()


def test_callback_thread_named_and_a_raising_callback_does_not_stop_it(sim, caplog):
    c = _connected(sim)
    try:
        names, got = [], []

        def bad(ev):
            names.append(threading.current_thread().name)
            raise RuntimeError("boom")

        c.on_event(bad, codes=[Code.UI_SET_GAUGE_VALUE])
        c.on_event(lambda ev: got.append(ev.message.int32_data0), codes=[Code.UI_SET_GAUGE_VALUE])
        with caplog.at_level(logging.ERROR, logger="flamingo_client"):
            _gauges(sim, 3)
            assert wait_until(lambda: len(got) == 3)
        assert got == [0, 1, 2] and set(names) == {"flamingo-events"}
        assert sum("boom" in (r.exc_text or "") or "raised" in r.getMessage()
                   for r in caplog.records) >= 3
    finally:
        c.close()


def test_callback_that_closes_its_client(sim):
    """README: close() joins the callback thread "except when called from a
    callback"; a later close() from elsewhere must not hang, and the thread ends."""
    c = _connected(sim)
    done = threading.Event()

    def cb(ev):
        c.close()
        done.set()

    c.on_event(cb, codes=[Code.UI_SET_GAUGE_VALUE])
    _gauges(sim, 2)
    assert done.wait(3)
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 1.0
    assert c.state == "closed"
    assert wait_until(lambda: not any(t.name == "flamingo-events" for t in threading.enumerate()))
    with pytest.raises(DisconnectedError):
        c.stage.position("x")


def test_callback_that_registers_and_removes_callbacks(sim):
    c = _connected(sim)
    try:
        got = []
        ids = []

        def cb(ev):
            got.append(ev.message.int32_data0)
            if len(got) == 1:
                ids.append(c.on_event(lambda e: got.append(("inner", e.message.int32_data0)),
                                      codes=[Code.UI_SET_GAUGE_VALUE]))
            elif len(ids) == 1 and len(got) > 3:
                c.remove_callback(ids.pop())

        c.on_event(cb, codes=[Code.UI_SET_GAUGE_VALUE])
        _gauges(sim, 6)
        assert wait_until(lambda: sum(1 for g in got if not isinstance(g, tuple)) == 6)
    finally:
        c.close()


def test_a_slow_callback_delays_neither_requests_nor_subscriptions(sim):
    c = _connected(sim)
    try:
        c.on_event(lambda ev: time.sleep(0.5), codes=[Code.UI_SET_GAUGE_VALUE])
        sub = c.subscribe([Code.UI_SET_GAUGE_VALUE])
        _gauges(sim, 3)
        t0 = time.monotonic()
        for _ in range(20):
            c.camera.image_size()
        assert [sub.get(1.0).message.int32_data0 for _ in range(3)] == [0, 1, 2]
        assert time.monotonic() - t0 < 1.2  # the callbacks alone take 1.5 s
    finally:
        c.close()


def test_compat_callbacks_on_the_named_thread_and_drops_counted(sim, caplog):
    cc = CommandClient(sim.address, event_queue_depth=3)
    cc.start()
    cc.send_command(cmd(Code.CAMERA_IMAGE_SIZE_GET), Code.CAMERA_IMAGE_SIZE_GET)
    try:
        gate = threading.Event()
        seen, names = [], []
        cc.register_callback(Code.UI_SET_GAUGE_VALUE, lambda m: (
            names.append(threading.current_thread().name), gate.wait(5),
            seen.append(m.int32_data0)))
        with caplog.at_level(logging.WARNING, logger="flamingo_client.compat"):
            _gauges(sim, 30)
            assert wait_until(lambda: cc.get_stats()["client"]["messages_received"] >= 30)
            gate.set()
            assert wait_until(lambda: len(seen) + cc.get_stats()["events_dropped"] >= 30)
        assert len(seen) + cc.get_stats()["events_dropped"] == 30
        assert set(names) == {"flamingo-compat-reader"}
        assert any("dropped" in r.getMessage() for r in caplog.records)
    finally:
        cc.stop()


# ====================================================================== GIL


def _ticks_during(fn):
    """Runs fn on this thread while another Python thread counts; returns
    (ticks, seconds, what fn returned or raised)."""
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    t0 = time.monotonic()
    try:
        try:
            out = fn()
        except Exception as e:
            out = e
    finally:
        took = time.monotonic() - t0
        stop.set()
        t.join()
    return count[0], took, out


def test_gil_released_in_every_blocking_wait(sim, client):
    """README: every call that can block releases the GIL."""
    sub = client.subscribe([Code.STAGE_MOTION_STOPPED])
    run = client.workflows.start(text=workflow_text(100_000))
    sim.set_faults(delay={ECHO: 0.3})
    cc = CommandClient(sim.address)
    cc.start()
    try:
        waits = {
            "subscription.get": lambda: sub.get(0.3),
            "run.wait": lambda: run.wait(0.3),
            "wait_until_idle": lambda: client.system.wait_until_idle(timeout=0.3),
            "request delayed": lambda: client.request(ECHO, timeout=1.0),
            "compat send_command": lambda: cc.send_command(cmd(ECHO), ECHO, 1.0),
        }
        slow = {}
        for name, fn in waits.items():
            ticks, took, out = _ticks_during(fn)
            assert took >= 0.25, (name, took, out)  # it did block
            if ticks < 20:
                slow[name] = (ticks, round(took, 2), repr(out)[:80])
        assert slow == {}
    finally:
        cc.stop()
        run.stop(wait=False)


# ====================================================================== errors


class Scripted:
    """A loopback server that answers each 128-byte message with reply(msg)
    (bytes, possibly empty; None closes the connection)."""

    def __init__(self, reply):
        self.reply = reply
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            c, _ = self.listener.accept()
        except OSError:
            return
        self.conns.append(c)
        buf = b""
        while True:
            try:
                chunk = c.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 128:
                msg, buf = buf[:128], buf[128:]
                out = self.reply(msg)
                if out is None:
                    c.close()
                    return
                try:
                    c.sendall(out)
                except OSError:
                    return

    def close(self):
        self.listener.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(2)


def _with_server(reply, fn):
    srv = Scripted(reply)
    try:
        with Client(srv.address, timeout=1.0, live=False) as c:
            return fn(c)
    finally:
        srv.close()


def test_error_classes_of_the_common_failures(sim):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError) as e:
        Client(f"127.0.0.1:{port}", connect_timeout=0.5)
    assert isinstance(e.value, ConnectionError)
    c = Client(sim.address, timeout=0.2)
    try:
        sim.set_faults(never_answer=[Code.CAMERA_IMAGE_SIZE_GET])
        with pytest.raises(TimeoutError):
            c.camera.image_size()
        sim.set_faults(status_override={Code.CAMERA_EXPOSURE_SET: 3})
        with pytest.raises(FlamingoError) as e:
            c.request(Code.CAMERA_EXPOSURE_SET, int32_data0=100, checked=True)
        assert type(e.value).__name__ in ("RefusedError", "BusyError")
        assert e.value.code == Code.CAMERA_EXPOSURE_SET and e.value.status == 3
        for bad in (float("nan"), -1.0):
            with pytest.raises(ValueError):
                c.camera.image_size(timeout=bad)
        with pytest.raises(InvalidArgumentError):
            c.stage.position("w")
        sim.clear_faults()
        sim.set_faults(delay={Code.CAMERA_IMAGE_SIZE_GET: 5.0})
        threading.Timer(0.1, sim.stop).start()
        t0 = time.monotonic()
        with pytest.raises(DisconnectedError):
            c.camera.image_size(timeout=3.0)
        assert time.monotonic() - t0 < 2.0
    finally:
        c.close()


def test_a_peer_breaking_the_protocol_gives_a_typed_error():
    """Bad network input -> typed error, never a hang, a crash or another class."""
    garbage = lambda m: b"\x00" * 128  # noqa: E731 - bad markers
    out = _with_server(garbage, lambda c: _raises(lambda: c.request(ECHO, timeout=0.5)))
    assert isinstance(out, FlamingoError), out

    def huge(m):  # the reply announces 4 GB of additional data
        return m[:48] + struct.pack("<I", 0xFFFFFFFF) + m[52:]

    out = _with_server(huge, lambda c: _raises(lambda: c.request(ECHO, timeout=0.5)))
    assert isinstance(out, FlamingoError), out


def _raises(fn):
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - the class is what is checked
        return e
    return None


def test_compat_errors_are_the_sockets_errors(sim, raw):
    """README: writes after a link failure raise DisconnectedError (a
    ConnectionError, as a failed sendall would); bad bytes are refused with
    a ValueError and leave the socket usable."""
    cc, s = raw
    with pytest.raises(ValueError):
        s.sendall(b"\x01" * 128)
    s.sendall(cmd(ECHO, i2=3))
    assert field_i2(read_exactly(s, 128)) == 3
    with pytest.raises(ValueError):
        cc.send_command(b"short", ECHO)


# ====================================================================== the CLI's checks on every path

BAD_LASER = workflow_text(3, laser_percent=150.0)


def _outside_end():
    return workflow_text(3).replace(
        "  </Start Position>\n",
        "  </Start Position>\n  <End Position>\n    X (mm) = 8.0\n    Y (mm) = 20.0\n"
        "    Z (mm) = 40.0\n    Angle (degrees) = 0.0\n  </End Position>\n")


def test_every_client_start_path_checks_the_workflow(sim, client, tmp_path):
    """README, Safety: a workflow that fails `workflow check` raises
    InvalidArgumentError naming the line, and nothing is sent."""
    p = tmp_path / "bad.txt"
    p.write_text(BAD_LASER)
    for kw in ({"path": str(p)}, {"text": BAD_LASER}, {"data": BAD_LASER.encode()},
               {"data": BAD_LASER.replace("\n", "\r\n").encode()}):
        with pytest.raises(InvalidArgumentError, match="line"):
            client.workflows.start(**kw)
    assert sim.workflows() == []


def test_soft_limits_check_the_end_position_and_every_axis_of_a_multi_move(sim, client):
    client.enable_soft_limits()
    with pytest.raises(InvalidArgumentError, match="z"):
        client.workflows.start(text=_outside_end())
    before = sim.stage_positions()
    with pytest.raises(InvalidArgumentError):
        client.stage.move_all_and_wait({"x": before[0] + 0.5, "z": 5.0})
    with pytest.raises(InvalidArgumentError):
        client.stage.move_to("z", float("nan"))
    time.sleep(0.05)
    assert sim.stage_positions() == before  # nothing was sent, not even x
    assert sim.workflows() == []


def test_raw_client_requests_are_checked_too(sim, client):
    """README, Safety: with soft limits on, "every move and every workflow
    start ... is checked before anything is sent"; workflows "are checked
    before sending". compat checks what the GUI sends raw; Client.request
    and Client.send (the documented "any code, raw" path) must not be a way
    around the checks.

    FAILS: all four are sent: Client.request / Client.send of
    CAMERA_WORKFLOW_START with a laser at 150 % (the simulator receives the
    file) and of STAGE_POSITION_SET to z = 5 mm (limits 11 to 25 mm), soft
    limits on. NativeClient.request/send go straight to the core's
    request_with_data/send_with_data; only the facades and compat's
    _check_outgoing run the checks, so the Python API has a path around its
    own safety that compat (the GUI's raw socket) does not have."""
    client.enable_soft_limits()
    sent = []
    for what, fn in {
        "request workflow": lambda: client.request(WF_START, data=BAD_LASER.encode(),
                                                   timeout=1.0),
        "send workflow": lambda: client.send(WF_START, data=BAD_LASER.encode()),
        "request move": lambda: client.request(0x6005, int32_data0=3, double_data=5.0,
                                               timeout=1.0),
        "send move": lambda: client.send(0x6005, int32_data0=3, double_data=5.0),
    }.items():
        if not isinstance(_raises(fn), InvalidArgumentError):
            sent.append(what)
    assert sent == []


def test_compat_checks_every_gui_path(sim, gui_path):
    """The GUI's raw socket and send_command, both move codes, both checks."""
    compat.install(soft_limits=True)
    from py2flamingo.core import TCPConnection

    conn = TCPConnection()
    conn.connect("127.0.0.1", sim.port)
    try:
        s = conn._command_socket
        wf = BAD_LASER.encode()
        with pytest.raises(InvalidArgumentError, match="line"):
            s.sendall(cmd(WF_START, extra=len(wf)) + wf)
        with pytest.raises(InvalidArgumentError, match="line"):
            conn.send_command_async(cmd(WF_START, extra=len(wf)) + wf, WF_START)
        end = _outside_end().encode()
        with pytest.raises(InvalidArgumentError):
            s.sendall(cmd(WF_START, extra=len(end)))
            s.sendall(end)
        for code in (0x6004, 0x6005):
            with pytest.raises(InvalidArgumentError):
                s.sendall(cmd(code, i0=3, value=5.0))
            with pytest.raises(InvalidArgumentError):
                conn.send_command_async(cmd(code, i0=3, value=float("nan")), code)
        assert sim.workflows() == []
        # After the refusals the socket is in a clean state.
        s.sendall(cmd(ECHO, i2=9))
        assert field_i2(read_exactly(s, 128)) == 9
    finally:
        conn.disconnect()
