"""The client, raw requests and each device facade against the simulator."""

import pytest

import flamingo_client as fc
from flamingo_client import Client, Code, Message, Simulator, SystemState

from conftest import H, W

ECHO = 0x7F01  # not in the catalogue: the simulator echoes it unchanged


def test_context_manager_and_state(sim):
    with Client(sim.address) as c:
        assert c.state == "connected" and c.is_connected
        assert c.address == sim.address
    assert c.state == "closed"


def test_address_tuple(sim):
    host, port = sim.address.rsplit(":", 1)
    with Client((host, int(port))) as c:
        assert c.camera.image_size() == (W, H)


def test_raw_request_echo_fields_and_data(client):
    r = client.request(ECHO, int32_data0=5, int32_data2=-7, double_data=2.5, text="hello",
                       data=b"payload")
    assert r.message.code == ECHO
    assert (r.message.int32_data0, r.message.int32_data2) == (5, -7)
    assert r.message.double_data == 2.5
    assert r.message.text == "hello"
    assert r.data == b"payload"
    assert r.seq > 0


def test_raw_request_message_object(client):
    r = client.request(Message(Code.CAMERA_IMAGE_SIZE_GET))
    assert (r.message.int32_data0, r.message.int32_data1) == (W, H)
    assert r.message.code_name == "CAMERA_IMAGE_SIZE_GET"


def test_message_roundtrip():
    m = Message(Code.STAGE_POSITION_GET, int32_data0=2, flags=fc.TRIGGER_CALL_BACK)
    raw = m.to_bytes()
    assert len(raw) == 128 and raw[:4] == bytes([0x54, 0xE6, 0x21, 0xF3])
    assert Message.from_bytes(raw) == m


def test_stage_positions_and_move(sim, client):
    p = client.stage.positions()
    assert p.z == pytest.approx(sim.stage_positions()[2])
    stop = client.stage.move_and_wait("z", p.z + 0.25)
    assert stop.axis == "z" and stop.is_normal
    assert stop.position == pytest.approx(p.z + 0.25)
    assert client.stage.position("z") == pytest.approx(p.z + 0.25)


def test_stage_move_several_axes(client):
    stops = client.stage.move_all_and_wait({"x": 9.0, "y": 20.0})
    assert sorted(s.axis for s in stops) == ["x", "y"]
    p = client.stage.positions()
    assert (p.x, p.y) == (pytest.approx(9.0), pytest.approx(20.0))


def test_stage_velocity_and_halt(sim, client):
    client.stage.set_velocity("x", 0.5)
    with client.subscribe([Code.STAGE_MOTION_STOPPED]) as sub:
        client.stage.move_to("x", 14.0)
        client.stage.halt()
        ev = sub.get(timeout=5.0)
    assert ev.kind == "motion_stopped" and ev.axis == "x"
    assert ev.position < 14.0  # stopped short of the target


def test_stage_out_of_limits_refused(client):
    with pytest.raises(fc.RefusedError):
        client.stage.move_to("z", 1000.0)


def test_camera_queries(client):
    assert client.camera.image_size() == (W, H)
    assert 0 < client.camera.pixel_size_mm() < 0.01
    client.camera.set_exposure_us(12_345)
    assert client.camera.exposure_us() == 12_345


def test_lasers(sim, client):
    assert client.lasers.set_level(2, 11.5) == pytest.approx(11.5)
    assert client.lasers.level(2) == pytest.approx(11.5)
    assert sim.laser_level(2) == pytest.approx(11.5)
    client.lasers.preview(2, True)
    client.lasers.preview(2, False)
    client.lasers.all_off()


def test_led_and_filter_wheel(sim, client):
    client.led.set_percent("green", 40.0)
    client.led.set_level("red", 40000)
    client.led.preview(True)
    with pytest.raises(fc.InvalidArgumentError):
        client.led.set_percent("purple", 10.0)
    client.filter_wheel.set_position(3)
    assert client.filter_wheel.position() == 3


def test_system(sim, client):
    assert client.system.state() == SystemState.IDLE
    assert client.system.is_idle()
    sim.set_faults(error_state=True)
    assert client.system.state() == SystemState.ERROR
    sim.clear_faults()
    client.system.set_idle()
    client.system.wait_until_idle(timeout=5.0)


def test_settings_dict_like(client):
    s = client.settings.load()
    assert "Stage limits" in s
    assert isinstance(s["Type"], fc.Section)
    assert s.microscope_name == s["Type"]["Microscope name"]
    lo, hi = s.soft_limits("z")
    assert lo < hi
    assert s.raw.startswith("<")
    assert dict(s["Type"])  # a Mapping


def test_stats(client):
    client.camera.image_size()
    st = client.stats()
    assert st["messages_sent"] >= 1 and st["replies_matched"] >= 1


def test_reconnect_policy(sim):
    policy = fc.ReconnectPolicy(initial_delay=0.01, max_delay=0.05, max_attempts=100)
    with Client(sim.address, reconnect=policy) as c, c.subscribe() as sub:
        sim.set_faults(close_after_messages=0)
        # The next message the simulator writes closes the link; the client reconnects.
        try:
            c.camera.image_size(timeout=1.0)
        except fc.FlamingoError:
            pass
        kinds = set()
        for ev in sub.events(timeout=3.0):
            kinds.add(ev.kind)
            if ev.kind == "reconnected":
                break
        assert "reconnected" in kinds
        assert c.camera.image_size() == (W, H)
