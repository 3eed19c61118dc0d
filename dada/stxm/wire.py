"""The bytes of partial results: how a block's per-point moments travel (node → front) and are cached.

One *record* per channel and block: a fixed header, then the raw arrays, so the front reads them
with ``np.frombuffer`` (no copy, no parsing per point) and the cache keeps the very bytes a node
sent. A node's answer is its channels' records, each behind its channel's name.

Record layout (little-endian)::

    b"DADP" | u16 FORMAT | u16 slots | u32 points | u32 bins | u64 xxh3_64(payload) | payload
    payload = float64 values (points, bins, slots)  # Σv [, Σv·x, Σv·y about the beam centre]
              float32 valid (points, bins)           # valid-pixel counts: integers below 2**24, exact

``slots`` is 3 for channels that take first moments, else 1. An absent frame's row is NaN. The
checksum is a fast non-cryptographic hash: it guards against corruption (a torn disk write, a
damaged cache entry), not forgery. ``FORMAT`` enters every cache key of these bytes and is checked
on every read: bump it whenever their meaning changes, and entries of another format are recomputed,
never misread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import xxhash

from dada.stxm.channel import Moments

FORMAT = 2
MAGIC = b"DADP"
HEADER = struct.Struct("<4sHHIIQ")
NAME = struct.Struct("<HQ")  # a channel's name length and its record's length, in a node's answer


class WireError(ValueError):
    """Bytes that are not a record of this format (corrupt, truncated, or of another format)."""


def _size(m: Moments, slots: int) -> int:
    n, nbins = m.valid.shape
    return HEADER.size + n * nbins * (8 * slots + 4)


def _write(out: memoryview, m: Moments, slots: int) -> None:
    """A record into ``out`` (exactly its size): each array copied once, straight into place."""
    n, nbins = m.valid.shape
    nv = n * nbins * slots * 8
    payload = out[HEADER.size:]
    np.copyto(np.frombuffer(payload, dtype=np.float64, count=n * nbins * slots).reshape(n, nbins, slots),
              m.values[..., :slots])
    np.copyto(np.frombuffer(payload, dtype=np.float32, offset=nv).reshape(n, nbins), m.valid, casting="same_kind")
    HEADER.pack_into(out, 0, MAGIC, FORMAT, slots, n, nbins, xxhash.xxh3_64_intdigest(payload))


def record(m: Moments, slots: int) -> bytearray:
    """One channel's moments as a record; ``slots`` 1 keeps Σv only (channels without first moments)."""
    out = bytearray(_size(m, slots))
    _write(memoryview(out), m, slots)
    return out


def read(data: bytes | memoryview, verify: bool = True) -> Moments:
    """A record's moments as views into ``data`` (read-only; copy before writing)."""
    mv = memoryview(data)
    if len(mv) < HEADER.size:
        raise WireError(f"a partial record of {len(mv)} bytes is shorter than its header")
    magic, fmt, slots, n, nbins, digest = HEADER.unpack_from(mv)
    if magic != MAGIC or fmt != FORMAT:
        raise WireError(f"not a partial record of format {FORMAT} (magic {magic!r}, format {fmt})")
    payload = mv[HEADER.size:]
    nv = n * nbins * slots * 8
    if slots not in (1, 3) or len(payload) != nv + n * nbins * 4:
        raise WireError(f"a partial record of {n} points x {nbins} bins x {slots} slots has {len(payload)} bytes")
    if verify and xxhash.xxh3_64_intdigest(payload) != digest:
        raise WireError("a partial record's checksum does not match its bytes")
    values = np.frombuffer(payload, dtype=np.float64, count=n * nbins * slots).reshape(n, nbins, slots)
    valid = np.frombuffer(payload, dtype=np.float32, offset=nv).reshape(n, nbins)
    return Moments(values, valid, ~np.isnan(valid[:, 0]) if nbins else np.ones(n, dtype=bool))


def bundle(moments: dict[str, Moments]) -> bytearray:
    """A node's answer: every channel's record behind its name, written in one buffer (slots: as the
    moments carry them)."""
    names = {name: name.encode() for name in moments}
    sizes = {name: _size(m, m.values.shape[2]) for name, m in moments.items()}
    out = bytearray(sum(NAME.size + len(names[k]) + sizes[k] for k in moments))
    view, pos = memoryview(out), 0
    for name, m in moments.items():
        NAME.pack_into(out, pos, len(names[name]), sizes[name])
        pos += NAME.size
        out[pos:pos + len(names[name])] = names[name]
        pos += len(names[name])
        _write(view[pos:pos + sizes[name]], m, m.values.shape[2])
        pos += sizes[name]
    return out


def unbundle(body: bytes) -> Iterator[tuple[str, memoryview]]:
    """The records of a node's answer, by channel name, as views into ``body``."""
    mv, pos = memoryview(body), 0
    while pos < len(mv):
        if pos + NAME.size > len(mv):
            raise WireError("a node's answer ends inside a record's name")
        length, size = NAME.unpack_from(mv, pos)
        pos += NAME.size
        name = bytes(mv[pos:pos + length]).decode()
        pos += length
        if pos + size > len(mv):
            raise WireError(f"a node's answer ends inside the record of {name!r}")
        yield name, mv[pos:pos + size]
        pos += size
