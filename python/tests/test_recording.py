"""Recordings: a session recorded through the proxy, read back as plain values."""

import pytest

from flamingo_client import Client, Code, FlamingoIOError, Simulator
from flamingo_client.recording import Recorder, load_recording, read_recording

from conftest import H, W


def test_a_recorded_session_reads_back(sim, tmp_path):
    path = tmp_path / "session.flrec"
    with Recorder(sim.address, path, pixels=4) as rec:
        with Client(rec.address) as scope:
            assert scope.camera.image_size() == (W, H)
            scope.camera.snapshot()
        stats = rec.stats()
    assert stats["messages"] >= 4 and stats["frames"] == 1
    records = load_recording(path)
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "meta" and kinds[-1] == "end"
    assert records[0]["meta"]["upstream"] == sim.address
    messages = [r for r in records if r["kind"] == "message"]
    first, reply = messages[0], messages[1]
    assert first["direction"] == "to_instrument"
    assert first["message"].code == Code.CAMERA_IMAGE_SIZE_GET
    assert reply["direction"] == "to_client"
    assert (reply["message"].int32_data0, reply["message"].int32_data1) == (W, H)
    assert reply["time"] >= first["time"] >= 0.0
    assert len(first["raw"]) == 128
    (frame,) = [r for r in records if r["kind"] == "frame"]
    assert (frame["header"]["width"], frame["header"]["height"]) == (W, H)
    assert frame["pixels"].shape == (-(-H // 4), -(-W // 4))
    opens = [r for r in records if r["kind"] == "open"]
    assert {r["port"] for r in opens} == {"command", "live"}


def test_a_truncated_recording_raises_with_the_offset(sim, tmp_path):
    path = tmp_path / "s.flrec"
    with Recorder(sim.address, path) as rec:
        with Client(rec.address) as scope:
            scope.camera.image_size()
    data = path.read_bytes()
    cut = tmp_path / "cut.flrec"
    cut.write_bytes(data[:-10])
    seen = []
    with pytest.raises(FlamingoIOError) as info:
        for r in read_recording(cut):
            seen.append(r["kind"])
    assert "truncated at byte" in str(info.value)
    # The end record (20 + 24 + 4 bytes) is the one cut.
    assert info.value.offset == len(data) - 48
    assert seen and seen[0] == "meta" and "end" not in seen
    with pytest.raises(FlamingoIOError, match="not a flamingo recording"):
        (tmp_path / "junk").write_bytes(b"hello")
        list(read_recording(tmp_path / "junk"))
