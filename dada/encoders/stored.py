"""How the result cache keeps a computed answer: its arrays and attributes, exact, in one buffer.

Layout: u32 header length, a JSON header (the attributes; each array's name, dtype, shape), then each
array's raw bytes in order. No zip container and no per-member CRC: the cache levels checksum
whole values themselves. ``dada.cache.keys.RESULT_FORMAT`` names this layout in every key.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from dada.endpoint import Result

LENGTH = struct.Struct("<I")


def size(result: Result) -> int:
    """About how many bytes ``dump`` makes (for the cache writer's bound)."""
    return sum(a.nbytes for a in result.arrays.values()) + 4096


def dump(result: Result) -> bytes:
    arrays = {k: np.ascontiguousarray(a) for k, a in result.arrays.items()}
    head = json.dumps({"attrs": result.attrs,
                       "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()]}).encode()
    return b"".join([LENGTH.pack(len(head)), head, *(a.tobytes() for a in arrays.values())])


def load(data: bytes | memoryview) -> Result:
    mv = memoryview(data)
    (n,) = LENGTH.unpack_from(mv)
    head = json.loads(bytes(mv[LENGTH.size:LENGTH.size + n]))
    pos, arrays = LENGTH.size + n, {}
    for name, dtype, shape in head["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(mv, dtype=dt, count=count, offset=pos).reshape(shape).copy()
        pos += count * dt.itemsize
    if pos != len(mv):
        raise ValueError(f"a stored result of {len(mv)} bytes holds {pos}")
    return Result(arrays, head["attrs"])
