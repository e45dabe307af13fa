"""The lab GUI's real usage, through test doubles that make the GUI's calls
(tests/doubles), with ``flamingo_client.compat.install()`` swapping the
GUI's socket reader from outside: one connection, raw writes in wire order
with requests, raw reads that get the reply they wait for, callbacks on a
named thread with every dropped event counted."""

import logging
import os
import struct
import sys
import threading
import time

import pytest

from flamingo_client import Code, Message, Simulator, compat
from flamingo_client.compat import CoreSocket

from conftest import W, H, wait_until, workflow_text

DOUBLES = os.path.join(os.path.dirname(__file__), "doubles")
NAMES = ("UNSOLICITED_COMMANDS", "CommandClient", "MessageDispatcher", "ParsedMessage",
         "ProtocolCommands", "SocketReader")


def _forget_gui() -> None:
    for name in list(sys.modules):
        if name == "py2flamingo" or name.startswith("py2flamingo."):
            del sys.modules[name]


@pytest.fixture
def py2flamingo():
    """Makes the GUI double importable; leaves no trace of it or of install()."""
    _forget_gui()
    sys.path.insert(0, DOUBLES)
    yield
    compat.uninstall()
    compat.configure(event_queue_depth=10_000)
    _forget_gui()
    sys.path.remove(DOUBLES)


def _connect(sim: Simulator):
    from py2flamingo.core import TCPConnection
    from py2flamingo.services.microscope_command_service import MicroscopeCommandService

    conn = TCPConnection()
    host, port = sim.address.rsplit(":", 1)
    conn.connect(host, int(port))
    return conn, MicroscopeCommandService(conn)


@pytest.fixture
def gui(sim, py2flamingo):
    compat.install()
    conn, svc = _connect(sim)
    yield conn, svc
    conn.disconnect()


def text_of(reply: bytes) -> str:
    return reply[52:124].split(b"\0", 1)[0].decode()


def code_of(reply: bytes) -> int:
    return struct.unpack_from("<I", reply, 4)[0]


# ------------------------------------------------------------------ install


def test_install_before_the_gui_is_imported(py2flamingo):
    compat.install()
    import py2flamingo.core as core

    for name in NAMES:
        assert getattr(core, name) is getattr(compat, name), name
    assert sys.modules["py2flamingo.core.socket_reader"] is compat
    compat.uninstall()
    assert "py2flamingo.core.socket_reader" not in sys.modules or \
        sys.modules["py2flamingo.core.socket_reader"] is not compat


def test_install_after_the_gui_is_imported_and_uninstall_restores_it(py2flamingo):
    import py2flamingo.core as core
    import py2flamingo.core.socket_reader as own

    compat.install()
    for name in NAMES:
        assert getattr(core, name) is getattr(compat, name), name
    from py2flamingo.core.socket_reader import CommandClient

    assert CommandClient is compat.CommandClient
    compat.install()  # idempotent
    compat.uninstall()
    assert sys.modules["py2flamingo.core.socket_reader"] is own
    for name in NAMES:
        assert getattr(core, name) is getattr(own, name), name


def test_exports_have_the_guis_meaning():
    assert compat.ProtocolCommands.STAGE_MOTION_STOPPED == 0x6010
    assert compat.ProtocolCommands(0x3005).name == "CAMERA_WORKFLOW_STOP"
    assert compat.UNSOLICITED_COMMANDS == {0x6010, 0xA002, 0x3011, 0x9003, 0x9004, 0x9008}
    assert compat.SocketReader.MESSAGE_SIZE == 128
    d = compat.MessageDispatcher()
    q = d.register_pending_request(0x3027)
    msg = compat.ParsedMessage.from_raw(Message(0x3027, int32_data0=7).to_bytes())
    d.dispatch(msg)
    assert q.get_nowait().int32_data0 == 7
    assert d.get_stats()["responses_dispatched"] == 1


def test_environment_switch_installs_at_start_up(tmp_path):
    import subprocess

    script = ("import sys; import flamingo_client.compat as c; "
              "print(c.is_installed(), sys.modules.get('py2flamingo.core.socket_reader') is c)")
    env = dict(os.environ, FLAMINGO_CLIENT_COMPAT="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60)
    # The .pth hook only exists in an installed wheel (ci.sh); in a
    # development install it may be absent, and then nothing is installed.
    if "True True" not in out.stdout:
        pytest.skip("no start-up hook in this installation")
    env["FLAMINGO_CLIENT_COMPAT"] = "0"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "False False" in out.stdout


# ------------------------------------------------------------------ one connection


def test_one_connection_and_the_guis_socket_is_taken_over(sim, gui):
    conn, svc = gui
    assert isinstance(conn._command_socket, CoreSocket)
    assert wait_until(lambda: sim.open_connections() == 1)
    host, port = sim.address.rsplit(":", 1)
    assert conn._command_socket.getpeername() == (host, int(port))
    r = svc.query(Code.CAMERA_IMAGE_SIZE_GET)
    assert (r.int32_data0, r.int32_data1) == (W, H)
    assert sim.open_connections() == 1


def test_raw_write_then_request_keeps_wire_order(sim, gui):
    """The GUI sets a laser on its socket and reads the level back through
    the reader at once: 500 times, never stale."""
    conn, svc = gui
    stale = []
    for i in range(500):
        level = f"{(i * 7) % 100 + 0.25:.2f}"
        svc.set_laser_power(2, float(level))
        r = svc.query(Code.LASER_LEVEL_GET, [0, 0, 0, 2])
        if r is None or r.data_field.split(b"\0", 1)[0].decode() != level:
            stale.append((level, r))
    assert stale == []
    codes = [c for c in sim.received_codes() if c in (0x2001, 0x2002)]
    assert codes == [0x2001, 0x2002] * 500
    assert sim.open_connections() == 1


def test_raw_send_then_raw_read_and_receive_bytes(sim, gui):
    conn, svc = gui
    x = sim.stage_positions()[0]
    reply = svc.debug_query(Code.STAGE_POSITION_GET, axis=1)
    assert code_of(reply) == Code.STAGE_POSITION_GET
    assert struct.unpack_from("<d", reply, 40)[0] == pytest.approx(x)
    # TCPConnection.send_bytes / receive_bytes go the same way.
    from py2flamingo.services.microscope_command_service import encode

    conn.send_bytes(encode(Code.CAMERA_IMAGE_SIZE_GET, [0, 0, 0, 0, 0, 0, 0x80000000]))
    got = b""
    while len(got) < 128:
        got += conn.receive_bytes(128 - len(got), timeout=2.0)
    assert code_of(got) == Code.CAMERA_IMAGE_SIZE_GET


def test_a_new_raw_write_discards_the_unread_reply_of_the_previous_one(gui):
    conn, svc = gui
    from py2flamingo.services.microscope_command_service import encode

    conn._command_socket.sendall(encode(Code.CAMERA_IMAGE_SIZE_GET, [0, 0, 0, 0, 0, 0, 0x80000000]))
    r = conn.send_command_async(  # its reply has surely arrived after this round trip
        encode(Code.CAMERA_EXPOSURE_GET, [0, 0, 0, 0, 0, 0, 0x80000000]), Code.CAMERA_EXPOSURE_GET)
    assert r is not None
    reply = svc.debug_query(Code.STAGE_POSITION_GET, axis=2)
    assert code_of(reply) == Code.STAGE_POSITION_GET
    stats = conn._command_client.get_stats()["reader"]
    assert stats["raw_replies"] == 2 and stats["raw_bytes_discarded"] == 128


def test_a_laser_broadcast_about_another_laser_is_not_the_raw_reply(sim, gui):
    conn, svc = gui
    sim.set_faults(delay={Code.LASER_LEVEL_GET: 0.3})
    svc.set_laser_power(2, 12.5)
    t = threading.Timer(0.05, lambda: sim.broadcast(
        Message.with_text(Code.LASER_LEVEL_GET, "99.00", int32_data0=3)))
    t.start()
    reply = svc.debug_query(Code.LASER_LEVEL_GET, axis=2)
    t.join()
    assert struct.unpack_from("<i", reply, 24)[0] == 2 and text_of(reply) == "12.50"


def test_settings_read_with_the_reader_paused_while_events_flow(gui):
    """The GUI pauses the reader and reads the ack, then the text until the
    socket is quiet (select): it gets exactly the reply and its text, even
    with progress events arriving meanwhile."""
    conn, svc = gui
    from flamingo_client.simulator import Simulator as _S  # noqa: F401  (documentation)

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures",
                           "ScopeSettings.txt"), "rb") as f:
        expected = f.read()
    svc.start_workflow(workflow_text(300).encode())
    for _ in range(3):
        got = svc.load_settings_text()
        assert code_of(got["ack"]) == Code.COMMON_SCOPE_SETTINGS_LOAD
        assert struct.unpack_from("<I", got["ack"], 48)[0] == len(expected)
        assert got["text"] == expected
    assert not conn._command_client.is_paused()


def test_settings_save_and_its_ack(py2flamingo):
    with Simulator(image_size=(W, H), answer_without_flag=[0x1009, 0x3005, 0x1008]) as sim:
        compat.install()
        conn, svc = _connect(sim)
        try:
            text = b"<Type>\n  Microscope name = test\n</Type>\n"
            ack = svc.save_settings(text)
            assert code_of(ack) == Code.COMMON_SCOPE_SETTINGS_SAVE
            assert struct.unpack_from("<I", ack, 8)[0] == 0
            assert svc.load_settings_text()["text"] == text
        finally:
            conn.disconnect()


# ------------------------------------------------------------------ workflows


def _wait_idle_event(conn, timeout=10.0):
    idle = threading.Event()

    def on_idle(msg):
        idle.set()

    conn.register_callback(Code.SYSTEM_STATE_IDLE, on_idle)
    return idle, on_idle


def test_workflow_started_on_the_raw_socket_reports_through_callbacks(sim, gui):
    conn, svc = gui
    progress, stacks = [], []
    names = set()
    done = threading.Event()

    def on_progress(msg):
        progress.append((msg.int32_data0, msg.int32_data1))
        names.add(threading.current_thread().name)

    def on_stack(msg):
        stacks.append(msg.int32_data0)
        done.set()

    conn.register_callback(Code.UI_SET_GAUGE_VALUE, on_progress)
    conn.register_callback(Code.CAMERA_STACK_COMPLETE, on_stack)
    wf = workflow_text(40).replace("\n", "\r\n").encode()
    svc.start_workflow(wf)
    assert done.wait(10.0)
    assert progress and progress[-1] == (40, 40)
    assert stacks == [40]
    assert names == {"flamingo-compat-reader"}
    assert sim.workflows()[-1] == wf  # header and file as two sendall calls, sent unchanged
    assert sim.open_connections() == 1


def test_workflow_stop_read_back_without_pausing_the_reader(gui):
    """The GUI stops a workflow on its socket and reads the reply while the
    reader runs: 20 of 20 stops get their reply."""
    conn, svc = gui
    ok = 0
    for _ in range(20):
        running = threading.Event()
        idle = threading.Event()
        on_p = lambda m: running.set()  # noqa: E731
        on_i = lambda m: idle.set()  # noqa: E731
        conn.register_callback(Code.UI_SET_GAUGE_VALUE, on_p)
        conn.register_callback(Code.SYSTEM_STATE_IDLE, on_i)
        svc.start_workflow(workflow_text(100_000).encode())
        assert running.wait(5.0)
        reply = svc.stop_workflow(timeout=3.0)
        ok += code_of(reply) == Code.CAMERA_WORK_FLOW_STOP
        assert idle.wait(5.0)
        conn.unregister_callback(Code.UI_SET_GAUGE_VALUE, on_p)
        conn.unregister_callback(Code.SYSTEM_STATE_IDLE, on_i)
    assert ok == 20


# ------------------------------------------------------------------ events for a GUI


def _burst(sim, n):
    for i in range(n):
        sim.broadcast(Message(Code.UI_SET_GAUGE_VALUE, int32_data0=i, int32_data1=n))


def _settled(conn, seen):
    """Waits until every event the client received has been run by the
    callback or counted as dropped; returns (received, dropped). (A loaded
    simulator may not send every broadcast: the client's own count of what
    arrived is the reference.)"""
    cc = conn._command_client

    def done():
        s = cc.get_stats()
        return (s["client"]["messages_received"] == len(seen) + s["events_dropped"]
                and s["dispatcher"]["callbacks_dispatched"] == len(seen))

    last = -1
    for _ in range(300):
        received = cc.get_stats()["client"]["messages_received"]
        if received == last and done():
            break
        last = received
        time.sleep(0.1)
    s = cc.get_stats()
    return s["client"]["messages_received"], s["events_dropped"]


def test_event_burst_with_a_slow_callback_counts_every_drop(py2flamingo, sim, caplog):
    """3000 progress events, a 5 ms callback and a queue of 100: the events
    that did not fit are dropped, counted and logged; none is lost silently."""
    compat.configure(event_queue_depth=100)
    compat.install()
    conn, _ = _connect(sim)
    try:
        seen = []
        conn.register_callback(Code.UI_SET_GAUGE_VALUE, lambda m: (seen.append(m.int32_data0),
                                                                   time.sleep(0.005)))
        with caplog.at_level(logging.WARNING, logger="flamingo_client.compat"):
            _burst(sim, 3000)
            received, dropped = _settled(conn, seen)
        assert received > 1000 and dropped > 0
        assert len(seen) + dropped == received
        assert seen == sorted(seen)  # in order; the newest are kept
        assert any("dropped" in r.getMessage() for r in caplog.records)
    finally:
        conn.disconnect()


def test_event_burst_within_the_default_queue_loses_nothing(gui, sim):
    conn, _ = gui
    seen = []
    conn.register_callback(Code.UI_SET_GAUGE_VALUE, lambda m: (seen.append(m.int32_data0),
                                                               time.sleep(0.001)))
    _burst(sim, 3000)
    received, dropped = _settled(conn, seen)
    assert dropped == 0 and len(seen) == received > 1000
    assert seen == sorted(seen)


def test_events_without_a_handler_never_reach_python(gui, sim):
    conn, _ = gui
    got = []
    conn.register_callback(Code.STAGE_MOTION_STOPPED, got.append)
    _burst(sim, 200)
    # A loaded simulator may drop a broadcast while its queue to this client
    # is full: send the one the handler waits for until it arrives.
    for _ in range(10):
        sim.broadcast(Message(Code.STAGE_MOTION_STOPPED, int32_data0=1, status=1))
        if wait_until(lambda: len(got) >= 1, timeout=1.0):
            break
    assert wait_until(lambda: len(got) >= 1)
    time.sleep(0.2)  # let any repeat that did arrive be counted too
    stats = conn._command_client.get_stats()
    reader = stats["reader"]
    # Every other message the client received was filtered natively.
    n = len(got)
    assert reader["events_delivered"] == n
    assert reader["events_filtered"] == stats["client"]["messages_received"] - n > 0


# ------------------------------------------------------------------ link loss


def test_link_loss_reported_once_then_the_gui_reconnects(py2flamingo):
    compat.install()
    sim = Simulator(image_size=(W, H))
    port = sim.port
    conn, svc = _connect(sim)
    lost = []
    conn.add_connection_lost_listener(lost.append)
    sim.stop()
    assert wait_until(lambda: len(lost) == 1)
    with pytest.raises(ConnectionError):
        svc.set_laser_power(1, 5.0)
    assert conn._command_socket.recv(128) == b""  # reads as a closed connection
    with Simulator(image_size=(W, H), port=port) as sim2:
        conn.disconnect()
        conn.connect("127.0.0.1", port)  # the GUI's reconnect_last()
        assert svc.query(Code.CAMERA_IMAGE_SIZE_GET).int32_data0 == W
        assert wait_until(lambda: sim2.open_connections() == 1)
        conn.disconnect()
    assert len(lost) == 1
