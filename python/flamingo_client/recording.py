"""Recordings of the wire traffic (``flamingo record``) as plain Python values.

A recording holds every command-port message between clients and the
instrument (both directions), every live-frame header and, optionally,
subsampled pixels, each with its time and connection (the format is
section 14 of protocol.md).

>>> from flamingo_client.recording import read_recording        # doctest: +SKIP
>>> for r in read_recording("session.flrec"):
...     if r["kind"] == "message" and r["direction"] == "to_client":
...         print(f'{r["time"]:.3f} s  {r["message"].code_name}')

Each record is a dict with ``time`` (seconds since the recording started),
``conn`` (1, 2... in the order clients connected; 0 for the whole recording)
and ``kind``, plus:

- ``"meta"``: ``meta`` (a dict: ``tool``, ``upstream``, ``started_unix_ms``...);
- ``"open"``: ``port`` (``"command"`` or ``"live"``), ``peer``;
- ``"message"``: ``direction`` (``"to_instrument"`` or ``"to_client"``),
  ``message`` (a :class:`~flamingo_client.message.Message`), ``raw`` (its
  128 bytes), ``data`` (additional data as recorded), ``data_seen``;
- ``"skipped"``: ``direction``, ``bytes`` (bytes that were not a message);
- ``"frame"``: ``header`` (a dict of the 10 live-header fields),
  ``subsample``, ``pixels_seen``, ``pixels`` (a numpy ``uint16`` array of
  shape ``(ceil(height/s), ceil(width/s))``, or None without pixels);
- ``"unparsed"``: ``direction``, ``reason``, ``bytes``;
- ``"stream_end"``: ``direction``, ``cause`` (``"closed"``, ``"failed"``,
  ``"stopped"``), ``bytes``, ``detail``;
- ``"note"``: ``text``;
- ``"end"``: ``records``, ``dropped_records``, ``dropped_bytes``.

A truncated or damaged file raises :class:`~flamingo_client.errors.FlamingoIOError`
once the records before the damage have been yielded; its ``offset``
attribute is the byte offset of the damaged record.
"""

import os
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Type, Union

import numpy as np

from . import _native
from .message import Message

__all__ = ["read_recording", "load_recording", "Recorder"]

PathLike = Union[str, "os.PathLike[str]"]


def _plain(r: Dict[str, Any]) -> Dict[str, Any]:
    kind = r["kind"]
    if kind == "message":
        raw = r.pop("message")
        r["raw"] = raw
        r["message"] = Message.from_bytes(raw)
    elif kind == "frame":
        s = r["subsample"]
        h = r["header"]
        if s > 0:
            rows = -(-h["height"] // s)
            cols = -(-h["width"] // s)
            r["pixels"] = np.frombuffer(r["pixels"], dtype="<u2").reshape(rows, cols)
        else:
            r["pixels"] = None
    return r


def read_recording(path: PathLike) -> Iterator[Dict[str, Any]]:
    """Yields the records of a recording one at a time (memory stays small
    whatever the file's size)."""
    rec = _native.NativeRecording(os.fspath(path))
    while True:
        r = rec.next_record()
        if r is None:
            return
        yield _plain(r)


def load_recording(path: PathLike) -> List[Dict[str, Any]]:
    """Every record of a recording, as a list."""
    return list(read_recording(path))


class Recorder:
    """The recording proxy (``flamingo record``) in this process: clients
    connect to :attr:`address` instead of the instrument at ``upstream``;
    every byte is forwarded unchanged both ways (command and live port) and
    recorded into ``path``.

    >>> with Simulator() as sim, Recorder(sim.address, "s.flrec") as rec:   # doctest: +SKIP
    ...     with Client(rec.address) as scope:
    ...         scope.camera.image_size()

    ``listen`` is ``"HOST:PORT"`` (port 0: a free pair); ``pixels = n``
    also records every n-th pixel of every n-th row of live frames.
    """

    def __init__(
        self, upstream: str, path: PathLike, *, listen: str = "127.0.0.1:0", pixels: int = 0
    ) -> None:
        self._native: Optional[Any] = _native.NativeRecorder(
            listen, upstream, os.fspath(path), int(pixels)
        )

    @property
    def address(self) -> str:
        """Where clients connect: ``"127.0.0.1:PORT"`` (live images on PORT+1)."""
        assert self._native is not None
        return str(self._native.address())

    def stats(self) -> Dict[str, int]:
        """Connections, messages, frames, records written, records dropped..."""
        assert self._native is not None
        return dict(self._native.stats())

    def stop(self) -> Dict[str, int]:
        """Closes every connection and finishes the file; returns the counters."""
        assert self._native is not None
        return dict(self._native.stop())

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()
