"""Snapshots and live frames reach numpy pixel-exact (the simulator's documented pattern)."""

import numpy as np
import pytest

import flamingo_client as fc
from flamingo_client import pattern

from conftest import H, W


def test_pattern_matches_documented_formula():
    p = pattern(5, 3, 9)
    for y in range(3):
        for x in range(5):
            v = ((x + 3 * y + 7 * 9) ^ (y << 6) ^ (9 << 12)) % 65536
            assert p[y, x] == v


def test_snapshot_is_pixel_exact(client):
    f = client.camera.snapshot()
    assert f.pixels.dtype == np.uint16
    assert f.pixels.shape == (H, W) == (f.height, f.width)
    np.testing.assert_array_equal(f.pixels, pattern(W, H, f.frame_number))
    f.pixels[0, 0] = 1  # owned and writable


def test_live_frames_iterator_pixel_exact(sim, client):
    with client.camera.live(frame_timeout=2.0) as live:
        assert sim.live_view_on()
        numbers = []
        for f in live.frames(count=10):
            np.testing.assert_array_equal(f.pixels, pattern(W, H, f.frame_number))
            numbers.append(f.frame_number)
        assert numbers == sorted(numbers) and len(set(numbers)) == 10
        latest = live.latest_frame()
        assert latest is not None
        np.testing.assert_array_equal(latest.pixels, pattern(W, H, latest.frame_number))
        assert client.camera.latest_frame() is not None
        assert live.stats["frames"] >= 10
    assert not sim.live_view_on()


def test_live_frame_timeout(sim, client):
    live = client.camera.live()
    live.next_frame(timeout=2.0)
    client.request(fc.Code.CAMERA_LIVE_VIEW_STOP)  # frames stop, the socket stays open
    # Frames already queued (latest wins, at most a couple) drain first.
    with pytest.raises(fc.FlamingoTimeoutError):
        for _ in range(5):
            live.next_frame(timeout=0.3)
    live.stop()
