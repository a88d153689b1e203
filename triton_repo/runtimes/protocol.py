"""The framing both ends of an artifact worker speak over its stdin/stdout pipes.

A message is a JSON header and a set of named arrays, each sent as a frame: 8 bytes of little-endian
length, then the bytes (the arrays as an .npz archive, pickling refused). Only the standard library and
numpy, so the worker runs in any environment that has an inference runtime.
"""

from __future__ import annotations

import io
import json
import struct
from typing import BinaryIO

import numpy as np

_LENGTH = struct.Struct("<Q")


class ChannelClosed(EOFError):
    """The other end went away mid-message (it exited or crashed)."""


def _write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise ChannelClosed(f"channel closed with {remaining} of {size} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: BinaryIO) -> bytes:
    (size,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))
    return _read_exactly(stream, size)


def send(stream: BinaryIO, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    _write_frame(stream, json.dumps(header).encode())
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        _write_frame(stream, buffer.getvalue())
    else:
        _write_frame(stream, b"")
    stream.flush()


def receive(stream: BinaryIO) -> tuple[dict, dict[str, np.ndarray]]:
    header = json.loads(_read_frame(stream))
    payload = _read_frame(stream)
    if not payload:
        return header, {}
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return header, {name: archive[name] for name in archive.files}
