"""How the result cache keeps a computed answer: its arrays and attributes, exact, in one buffer.

Layout: u32 header length, a JSON header (the attributes, which data answered; each array's name, dtype,
shape), then each
array's raw bytes in order. No zip container and no per-member CRC: the cache levels checksum
whole values themselves. ``dada.cache.keys.RESULT_FORMAT`` names this layout in every key.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from dada.endpoint import Result

LENGTH = struct.Struct("<I")


def dump(result: Result) -> bytearray:
    """One copy of each array, straight into the buffer (arrays are often views: no contiguous copy first)."""
    arrays = result.arrays
    head = json.dumps({"attrs": result.attrs, "source": result.source,
                       "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()]}).encode()
    out = bytearray(LENGTH.size + len(head) + sum(a.nbytes for a in arrays.values()))
    LENGTH.pack_into(out, 0, len(head))
    pos = LENGTH.size + len(head)
    out[LENGTH.size:pos] = head
    for a in arrays.values():
        np.copyto(np.frombuffer(out, dtype=a.dtype, count=a.size, offset=pos).reshape(a.shape), a)
        pos += a.nbytes
    return out


def load(data: bytes | memoryview) -> Result:
    """The result, its arrays read-only views of ``data`` (no copy: results are never written again)."""
    mv = memoryview(data)
    (n,) = LENGTH.unpack_from(mv)
    head = json.loads(bytes(mv[LENGTH.size:LENGTH.size + n]))
    pos, arrays = LENGTH.size + n, {}
    for name, dtype, shape in head["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(mv, dtype=dt, count=count, offset=pos).reshape(shape)
        pos += count * dt.itemsize
    if pos != len(mv):
        raise ValueError(f"a stored result of {len(mv)} bytes holds {pos}")
    return Result(arrays, head["attrs"], source=head.get("source"))
