"""Checkpoints of one partition's engine: the engine's state and the source offset it covers, as one value.

A checkpoint is written to the worker's changelog-backed Faust table under the partition number, and read back
when the partition is assigned again. The engine is then fed the records after the checkpoint's offset, so the
recovered state is exactly the state of a worker that never stopped.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from processors.config import EngineConfig
from processors.engine import Engine

MAGIC = b"EWCP1"
_HEADER = struct.Struct(">5sq")  # magic, offset of the last record the state includes (-1: none)


class Checkpoint(NamedTuple):
    """One partition's state as of a source offset."""

    offset: int
    """Offset of the last interactions record included in the state; -1 when none is."""
    engine: Engine
    """The partition's engine."""


def encode(engine: Engine, offset: int) -> bytes:
    """Header + zlib-compressed engine state (pickles of sets and dicts compress several-fold)."""
    return _HEADER.pack(MAGIC, offset) + zlib.compress(engine.to_bytes(), 1)


def decode(config: EngineConfig, data: bytes) -> Checkpoint:
    """The checkpoint in `data`; ValueError when it is not one, or was written with other engine settings."""
    if len(data) < _HEADER.size:
        raise ValueError("checkpoint too short")
    magic, offset = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not an engagewatch checkpoint (magic {magic!r})")
    try:
        state = zlib.decompress(data[_HEADER.size :])
    except zlib.error as e:
        raise ValueError(f"corrupt checkpoint: {e}") from None
    return Checkpoint(offset, Engine.from_bytes(config, state))
