"""Checkpoints of one partition: the engine's state, the decay detectors' state and the source offset they cover.

A checkpoint is written to the worker's changelog-backed Faust table under the partition number, and read back
when the partition is assigned again. The engine is then fed the records after the checkpoint's offset, so the
recovered state is exactly the state of a worker that never stopped.

Format `EWCP2`: header (magic, offset, length of the compressed engine), the zlib-compressed engine state, then
the zlib-compressed detector state (empty when there is none). `EWCP1` checkpoints (engine only) still load; their
detectors start fresh.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, NamedTuple

from processors.config import EngineConfig
from processors.engine import Engine

MAGIC_V1 = b"EWCP1"
MAGIC = b"EWCP2"
_HEADER_V1 = struct.Struct(">5sq")  # magic, offset of the last record the state includes (-1: none)
_HEADER = struct.Struct(">5sqQ")  # magic, offset, bytes of the compressed engine state


class Checkpoint(NamedTuple):
    """One partition's state as of a source offset."""

    offset: int
    """Offset of the last interactions record included in the state; -1 when none is."""
    engine: Engine
    """The partition's engine."""
    detectors: bytes | None = None
    """`DecayMonitor.to_bytes()` of the partition's detectors; None when the checkpoint has none."""


def encode(engine: Engine, offset: int, detectors: Any = None) -> bytes:
    """Header + zlib-compressed engine state (pickles of sets and dicts compress several-fold) + detectors."""
    state = zlib.compress(engine.to_bytes(), 1)
    monitor = zlib.compress(detectors.to_bytes(), 1) if detectors is not None else b""
    return _HEADER.pack(MAGIC, offset, len(state)) + state + monitor


def decode(config: EngineConfig, data: bytes) -> Checkpoint:
    """The checkpoint in `data`; ValueError when it is not one, or was written with other engine settings."""
    if len(data) < _HEADER_V1.size:
        raise ValueError("checkpoint too short")
    magic = data[:5]
    try:
        if magic == MAGIC_V1:
            _, offset = _HEADER_V1.unpack_from(data)
            return Checkpoint(offset, Engine.from_bytes(config, zlib.decompress(data[_HEADER_V1.size :])))
        if magic != MAGIC:
            raise ValueError(f"not an engagewatch checkpoint (magic {magic!r})")
        if len(data) < _HEADER.size:
            raise ValueError("checkpoint too short")
        _, offset, size = _HEADER.unpack_from(data)
        body = data[_HEADER.size :]
        engine = Engine.from_bytes(config, zlib.decompress(body[:size]))
        detectors = zlib.decompress(body[size:]) if len(body) > size else None
    except zlib.error as e:
        raise ValueError(f"corrupt checkpoint: {e}") from None
    return Checkpoint(offset, engine, detectors)
