"""The GUI-compatible CommandClient against the simulator."""

import socket
import struct
import threading

import pytest

import flamingo_client as fc
from flamingo_client import Client, Code, Message
from flamingo_client.compat import CommandClient, ParsedMessage

from conftest import wait_until

ECHO = 0x7F01


def command(code: int, i0: int = 0, i1: int = 0, i2: int = 0, value: float = 0.0,
            flags: int = fc.TRIGGER_CALL_BACK) -> bytes:
    """A command built the way the GUI builds one: struct.pack of the 128 bytes."""
    return struct.pack("<IIIIIIiiiIdI72sI", 0xF321E654, code, 0, 0, 0, 0, i0, i1, i2, flags,
                       value, 0, b"", 0xFEDC4321)


@pytest.fixture
def cc(sim):
    host, port = sim.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    c = CommandClient(s)
    c.start()
    yield c
    c.stop()
    s.close()


def test_same_answers_as_native(sim, cc):
    with Client(sim.address) as native:
        r = cc.send_command(command(Code.CAMERA_IMAGE_SIZE_GET), Code.CAMERA_IMAGE_SIZE_GET)
        assert isinstance(r, ParsedMessage) and r.is_valid
        assert (r.int32_data0, r.int32_data1) == native.camera.image_size()
        r = cc.send_command(command(Code.STAGE_POSITION_GET, i0=3), Code.STAGE_POSITION_GET)
        assert r.value == pytest.approx(native.stage.position("z"))
        assert r.double_data == r.value
        assert r.command_name == "STAGE_POSITION_GET"
        r = cc.send_command(command(Code.COMMON_SCOPE_SETTINGS_LOAD), Code.COMMON_SCOPE_SETTINGS_LOAD)
        assert r.additional_data.decode() == native.settings.load().raw


def test_timeout_returns_none(sim, cc):
    sim.set_faults(never_answer=[Code.CAMERA_IMAGE_SIZE_GET])
    assert cc.send_command(command(Code.CAMERA_IMAGE_SIZE_GET), Code.CAMERA_IMAGE_SIZE_GET, 0.2) is None
    assert cc.get_stats()["timeouts"] == 1


def test_eight_threads_one_code_no_wrong_reply(cc):
    """8 threads share one code; each reply must carry its own request's tag."""
    wrong, missing = [], []
    per_thread = 200

    def worker(t):
        for i in range(per_thread):
            tag = t * 100_000 + i
            r = cc.send_command(command(ECHO, i2=tag), ECHO, 5.0)
            if r is None:
                missing.append(tag)
            elif r.int32_data2 != tag:
                wrong.append((tag, r.int32_data2))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [] and missing == []


def test_register_callback_for_unsolicited(cc):
    got = []
    done = threading.Event()

    def handler(msg):
        got.append(msg)
        done.set()

    cc.register_callback(Code.STAGE_MOTION_STOPPED, handler)
    r = cc.send_command(command(Code.STAGE_POSITION_SET, i0=1, value=9.25), Code.STAGE_POSITION_SET)
    assert r is not None and r.status_code == 0
    assert done.wait(5.0)
    assert got[0].command_code == Code.STAGE_MOTION_STOPPED and got[0].is_unsolicited
    assert got[0].value == pytest.approx(9.25)
    cc.unregister_callback(Code.STAGE_MOTION_STOPPED, handler)
    assert cc.dispatcher.get_stats()["callbacks_dispatched"] == 1


def test_expected_code_differs_waits_for_that_message(cc):
    r = cc.send_command(command(Code.STAGE_POSITION_SET, i0=2, value=20.5), Code.STAGE_MOTION_STOPPED, 5.0)
    assert r is not None and r.command_code == Code.STAGE_MOTION_STOPPED
    assert r.value == pytest.approx(20.5)


def test_on_closed_called_once_on_link_loss(sim):
    reasons = []
    closed = threading.Event()
    c = CommandClient(sim.address, on_closed=lambda r: (reasons.append(r), closed.set()))
    c.start()
    assert c.is_running()
    sim.stop()
    assert closed.wait(5.0)
    c.stop()
    assert len(reasons) == 1
    with pytest.raises(ConnectionError):
        c.send_command(command(ECHO), ECHO)


def test_stop_does_not_call_on_closed(sim):
    reasons = []
    c = CommandClient(sim.address, on_closed=reasons.append)
    c.start()
    c.stop()
    assert reasons == [] and not c.is_running()


def test_pause_lets_the_caller_read_its_socket(sim, cc):
    """While paused, the socket given to the constructor is the caller's to read."""
    s = cc._socket
    cc.pause()
    assert cc.is_paused()
    s.sendall(command(Code.CAMERA_IMAGE_SIZE_GET))
    buf = b""
    s.settimeout(5.0)
    while len(buf) < 128:
        buf += s.recv(128 - len(buf))
    assert Message.from_bytes(buf).int32_data0 == 64
    cc.resume()
    assert not cc.is_paused()
