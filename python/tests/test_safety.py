"""Parity with the CLI's safety: workflows checked before sending (line
numbers in the error), soft limits as an opt-in check, the summary after a
stop, TIFF files with the pixel size."""

import os
import struct
import sys

import pytest

import flamingo_client as fc
from flamingo_client import Client, InvalidArgumentError, SoftLimits, compat

from conftest import W, H, wait_until, workflow_text

DOUBLES = os.path.join(os.path.dirname(__file__), "doubles")


def test_a_workflow_the_cli_would_refuse_is_not_sent(sim, client):
    bad = workflow_text(5, laser_percent=150.0)
    with pytest.raises(InvalidArgumentError) as e:
        client.workflows.start(text=bad)
    line = bad.splitlines().index("    Laser 3 3: 561 nm MLE = 150.00 1") + 1
    assert f"line {line}" in str(e.value) and "0 to 100" in str(e.value)
    assert sim.workflows() == []
    with pytest.raises(InvalidArgumentError, match="line 1"):
        fc.check_workflow(text="garbage\n")
    fc.check_workflow(text=workflow_text(5))


def test_soft_limits_are_opt_in(sim, client):
    limits = client.settings.soft_limits()
    assert limits.get("z") == pytest.approx((11.0, 25.0))
    assert client.soft_limits is None
    outside = workflow_text(5).replace("Z (mm) = 19.0", "Z (mm) = 5.0")
    with pytest.raises(InvalidArgumentError, match="z 5 mm"):
        fc.check_workflow(text=outside, limits=limits)
    with pytest.raises(InvalidArgumentError, match="z 5 mm"):
        client.workflows.check(text=outside)
    assert client.workflows.check(text=workflow_text(5)).get("x") == limits.get("x")

    client.enable_soft_limits()
    assert client.soft_limits == limits
    with pytest.raises(InvalidArgumentError, match="11 to 25 mm"):
        client.stage.move_to("z", 5.0)
    with pytest.raises(InvalidArgumentError, match="z 5 mm"):
        client.workflows.start(text=outside)
    assert sim.workflows() == []
    client.stage.move_and_wait("z", 20.0)
    client.enable_soft_limits(SoftLimits({"z": (19.0, 19.5)}))
    with pytest.raises(InvalidArgumentError):
        client.stage.move_to("z", 20.0)
    client.disable_soft_limits()
    assert client.soft_limits is None
    client.stage.move_and_wait("z", 21.0)


def test_summary_is_there_after_stop():
    with fc.Simulator(image_size=(8, 8), plane_interval=0.01) as sim, Client(sim.address) as c:
        run = c.workflows.start(text=workflow_text(10_000))
        for u in run.updates(timeout=10.0):
            if u.kind == "progress":
                break
        assert run.summary is None
        s = run.stop()
        assert s is not None and s.stopped and run.summary == s
        assert run.is_finished and run.wait(1.0) == s


def test_summary_after_the_last_update(client):
    run = client.workflows.start(text=workflow_text(10))
    kinds = [u.kind for u in run.updates(timeout=10.0)]
    assert kinds[-1] == "finished"
    assert run.summary is not None and run.summary.images_acquired == 10


def _tiff_tags(data: bytes) -> dict:
    """The tags of a little-endian TIFF's first page: {tag: (type, count, value or offset)}."""
    assert data[:4] == b"II*\0"
    ifd = struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<H", data, ifd)[0]
    tags = {}
    for i in range(n):
        tag, typ, count, value = struct.unpack_from("<HHII", data, ifd + 2 + 12 * i)
        tags[tag] = (typ, count, value)
    return tags


def _rational(data: bytes, offset: int) -> float:
    num, den = struct.unpack_from("<II", data, offset)
    return num / den


def test_snapshot_saved_as_tiff_with_the_pixel_size(tmp_path, client):
    um = client.camera.pixel_size_um()
    assert um and um > 0
    path = tmp_path / "snap.tif"
    f = client.camera.save_snapshot(str(path))
    assert f.pixel_size_um == pytest.approx(um)
    data = path.read_bytes()
    tags = _tiff_tags(data)
    assert tags[256][2] == W and tags[257][2] == H and tags[258][2] == 16
    # Pixels per micron (ResolutionUnit "none"; the unit is in ImageJ's description).
    assert tags[296][2] == 1
    assert _rational(data, tags[282][2]) == pytest.approx(1 / um, rel=1e-6)
    assert b"unit=micron" in data
    offset = tags[273][2]
    pixels = struct.unpack_from(f"<{W * H}H", data, offset)
    assert list(pixels) == f.pixels.ravel().tolist()
    # Another size on demand, and a stack.
    f.save_tiff(str(tmp_path / "b.tif"), pixel_size_um=0.5)
    assert _rational((tmp_path / "b.tif").read_bytes(),
                     _tiff_tags((tmp_path / "b.tif").read_bytes())[282][2]) == pytest.approx(2.0)
    assert fc.save_tiff_stack(str(tmp_path / "s.tif"), [f, f, f], z_spacing_um=2.5) == 3
    assert b"spacing=2.5" in (tmp_path / "s.tif").read_bytes()
    with pytest.raises(fc.FlamingoIOError, match="cannot write TIFF"):
        f.save_tiff(str(tmp_path / "no" / "such" / "dir.tif"))


# ------------------------------------------------------------------ compat


@pytest.fixture
def gui_module():
    for name in list(sys.modules):
        if name.startswith("py2flamingo"):
            del sys.modules[name]
    sys.path.insert(0, DOUBLES)
    yield
    compat.uninstall()
    compat.configure(check_workflows=True, soft_limits=False)
    for name in list(sys.modules):
        if name.startswith("py2flamingo"):
            del sys.modules[name]
    sys.path.remove(DOUBLES)


def _gui(sim):
    from py2flamingo.core import TCPConnection
    from py2flamingo.services.microscope_command_service import MicroscopeCommandService, encode

    conn = TCPConnection()
    host, port = sim.address.rsplit(":", 1)
    conn.connect(host, int(port))
    return conn, MicroscopeCommandService(conn), encode


def test_compat_checks_the_guis_workflow_starts(sim, gui_module):
    compat.install()
    conn, svc, _ = _gui(sim)
    try:
        with pytest.raises(InvalidArgumentError, match="0 to 100"):
            svc.start_workflow(workflow_text(5, laser_percent=150.0).encode())
        svc.start_workflow(workflow_text(5).encode())
        assert wait_until(lambda: len(sim.workflows()) == 1)
    finally:
        conn.disconnect()


def test_compat_soft_limits_opt_in(sim, gui_module):
    compat.install(soft_limits=True)
    conn, svc, encode = _gui(sim)
    try:
        move = encode(0x6004, [0, 0, 0, 3, 0, 0, 0x80000000], value=5.0)
        with pytest.raises(InvalidArgumentError, match="z target 5 mm"):
            conn._command_socket.sendall(move)
        with pytest.raises(InvalidArgumentError, match="outside"):
            conn.send_command_async(move, 0x6004)
        ok = encode(0x6004, [0, 0, 0, 3, 0, 0, 0x80000000], value=20.0)
        assert conn.send_command_async(ok, 0x6004).status_code == 0
        outside = workflow_text(5).replace("Z (mm) = 19.0", "Z (mm) = 5.0")
        with pytest.raises(InvalidArgumentError, match="z 5 mm"):
            svc.start_workflow(outside.encode())
        assert sim.workflows() == []
    finally:
        conn.disconnect()
