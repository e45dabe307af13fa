"""Every library error maps to its Python class, and each class to its built-in base."""

import pytest

import flamingo_client as fc
from flamingo_client import Client, Code, Simulator

HIERARCHY = [
    (fc.FlamingoTimeoutError, TimeoutError),
    (fc.DisconnectedError, ConnectionError),
    (fc.ConnectError, ConnectionError),
    (fc.InvalidArgumentError, ValueError),
    (fc.FlamingoIOError, OSError),
    (fc.RefusedError, fc.FlamingoError),
    (fc.BusyError, fc.FlamingoError),
    (fc.ProtocolError, fc.FlamingoError),
    (fc.TooLargeError, fc.FlamingoError),
]


@pytest.mark.parametrize("cls,builtin", HIERARCHY)
def test_hierarchy(cls, builtin):
    assert issubclass(cls, fc.FlamingoError)
    assert issubclass(cls, builtin)
    e = cls("message")
    assert str(e) == "message"


def test_timeout(sim, client):
    sim.set_faults(never_answer=[Code.CAMERA_IMAGE_SIZE_GET])
    with pytest.raises(fc.FlamingoTimeoutError) as ei:
        client.camera.image_size(timeout=0.2)
    assert isinstance(ei.value, TimeoutError)
    assert "timed out" in str(ei.value)


def test_disconnected(sim, client):
    sim.stop()
    with pytest.raises(fc.DisconnectedError) as ei:
        client.camera.image_size(timeout=2.0)
    assert isinstance(ei.value, ConnectionError)


def test_closed_client_raises_disconnected(client):
    client.close()
    with pytest.raises(fc.DisconnectedError):
        client.stage.positions()


def test_connect_error():
    s = Simulator(image_size=(8, 8))
    addr = s.address
    s.stop()
    with pytest.raises(fc.ConnectError) as ei:
        Client(addr, connect_timeout=1.0)
    assert addr in str(ei.value)


def test_refused_has_code_and_status(sim, client):
    sim.set_faults(status_override={Code.FILTER_POSITION_SET: 2})
    with pytest.raises(fc.RefusedError) as ei:
        client.filter_wheel.set_position(3)
    assert ei.value.code == Code.FILTER_POSITION_SET
    assert ei.value.status == 2


def test_busy(sim, client):
    sim.set_faults(status_override={Code.CAMERA_EXPOSURE_SET: 1})
    with pytest.raises(fc.BusyError) as ei:
        client.camera.set_exposure_us(5000)
    assert ei.value.status == 1


def test_protocol_error():
    with Simulator(image_size=(8, 8), settings_text=b"") as sim, Client(sim.address) as c:
        with pytest.raises(fc.ProtocolError):
            c.settings.load()


def test_too_large(client):
    big = bytes(64 * 1024 * 1024 + 1)
    with pytest.raises(fc.TooLargeError):
        client.request(0x7F01, data=big, timeout=1.0)


def test_invalid_argument_is_value_error(sim, client):
    before = len(sim.received_codes())
    with pytest.raises(ValueError):
        client.lasers.set_level(9, 10.0)
    with pytest.raises(fc.InvalidArgumentError):
        client.stage.move_to("q", 1.0)
    with pytest.raises(fc.InvalidArgumentError):
        client.stage.move_to("x", float("nan"))
    with pytest.raises(fc.InvalidArgumentError):
        client.camera.image_size(timeout=-1.0)
    assert len(sim.received_codes()) == before  # nothing was sent
