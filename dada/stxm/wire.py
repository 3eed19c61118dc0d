"""The bytes of partial results: how a block's per-point accumulators travel (node → front) and are cached.

One *record* per channel and block: a fixed header, a directory naming the arrays, then the raw
arrays, so the front reads them with ``np.frombuffer`` (no copy, no parsing per point) and the cache
keeps the very bytes a node sent. A node's answer is its channels' records, each behind its
channel's name.

Record layout (little-endian)::

    b"DADP" | u16 FORMAT | u16 narrays | u32 points | u32 bins | u64 xxh3_64(directory + payload)
    directory = narrays x (8s name | 8s dtype)  # NUL-padded ASCII: b"sum", b"<f8"
    payload = the arrays in directory order, each (points, bins), C order

Names and dtypes are those of ``channel.ACCUMULATORS`` (``count``, float32, always; a record holds
exactly what its channel declared); float64 arrays come first so every array is aligned. An absent
frame's row is NaN. The checksum is a fast non-cryptographic hash: it guards against corruption (a
torn disk write, a damaged cache entry), not forgery. ``FORMAT`` is the layout version: it enters
every cache key of these bytes and is checked on every read. Bump it whenever their meaning changes
(a new kind of array, arrays per scan rather than per point), and entries of another layout are
recomputed, never misread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import xxhash

from dada.stxm.channel import ACCUMULATORS, Partial

FORMAT = 3  # 2: positional (Σv[, Σv·x, Σv·y]) slots; 3: named arrays
MAGIC = b"DADP"
HEADER = struct.Struct("<4sHHIIQ")
ENTRY = struct.Struct("<8s8s")
NAME = struct.Struct("<HQ")  # a channel's name length and its record's length, in a node's answer


class WireError(ValueError):
    """Bytes that are not a record of this format (corrupt, truncated, or of another format)."""


def _order(names) -> list[str]:
    """Float64 arrays first (in ACCUMULATORS' order), the float32 count last: every array stays aligned."""
    return sorted(names, key=lambda n: (ACCUMULATORS[n].dtype != "<f8", list(ACCUMULATORS).index(n)))


def _size(m: Partial) -> int:
    n, nbins = m["count"].shape
    return HEADER.size + ENTRY.size * len(m.arrays) + sum(
        n * nbins * np.dtype(ACCUMULATORS[k].dtype).itemsize for k in m.arrays)


def _write(out: memoryview, m: Partial) -> None:
    """A record into ``out`` (exactly its size): each array copied once, straight into place."""
    n, nbins = m["count"].shape
    names = _order(m.arrays)
    body = out[HEADER.size:]
    pos = 0
    for name in names:
        ENTRY.pack_into(body, pos, name.encode(), ACCUMULATORS[name].dtype.encode())
        pos += ENTRY.size
    for name in names:
        dt = np.dtype(ACCUMULATORS[name].dtype)
        np.copyto(np.frombuffer(body, dtype=dt, count=n * nbins, offset=pos).reshape(n, nbins), m[name],
                  casting="same_kind")
        pos += n * nbins * dt.itemsize
    HEADER.pack_into(out, 0, MAGIC, FORMAT, len(names), n, nbins, xxhash.xxh3_64_intdigest(body))


def record(m: Partial) -> bytearray:
    """One channel's partial as a record."""
    out = bytearray(_size(m))
    _write(memoryview(out), m)
    return out


def read(data: bytes | memoryview, verify: bool = True) -> Partial:
    """A record's partial as views into ``data`` (read-only; copy before writing)."""
    mv = memoryview(data)
    if len(mv) < HEADER.size:
        raise WireError(f"a partial record of {len(mv)} bytes is shorter than its header")
    magic, fmt, narrays, n, nbins, digest = HEADER.unpack_from(mv)
    if magic != MAGIC or fmt != FORMAT:
        raise WireError(f"not a partial record of layout {FORMAT} (magic {magic!r}, layout {fmt})")
    body = mv[HEADER.size:]
    if len(body) < ENTRY.size * narrays:
        raise WireError(f"a partial record of {len(mv)} bytes is shorter than its directory")
    entries = []
    for i in range(narrays):
        name, dtype = (b.rstrip(b"\0").decode("ascii", "replace") for b in ENTRY.unpack_from(body, i * ENTRY.size))
        if name not in ACCUMULATORS or dtype != ACCUMULATORS[name].dtype or name in dict(entries):
            raise WireError(f"a partial record names an array {name!r} of {dtype!r}, not one of this layout")
        entries.append((name, np.dtype(dtype)))
    if "count" not in dict(entries):
        raise WireError("a partial record has no valid-pixel counts")
    pos = ENTRY.size * narrays
    if len(body) != pos + sum(n * nbins * dt.itemsize for _, dt in entries):
        raise WireError(f"a partial record of {n} points x {nbins} bins x {narrays} arrays has {len(mv)} bytes")
    if verify and xxhash.xxh3_64_intdigest(body) != digest:
        raise WireError("a partial record's checksum does not match its bytes")
    arrays = {}
    for name, dt in entries:
        arrays[name] = np.frombuffer(body, dtype=dt, count=n * nbins, offset=pos).reshape(n, nbins)
        pos += n * nbins * dt.itemsize
    count = arrays["count"]
    return Partial(arrays, ~np.isnan(count[:, 0]) if nbins else np.ones(n, dtype=bool))


def bundle(partials: dict[str, Partial], others: dict[str, bytes] | None = None) -> bytearray:
    """A node's answer: every channel's record behind its name, written in one buffer; then ``others``
    (records of other kinds, e.g. the polar reduction's) behind theirs."""
    others = others or {}
    names = {name: name.encode() for name in [*partials, *others]}
    sizes = {**{name: _size(m) for name, m in partials.items()}, **{name: len(b) for name, b in others.items()}}
    out = bytearray(sum(NAME.size + len(names[k]) + sizes[k] for k in names))
    view, pos = memoryview(out), 0
    for name in names:
        NAME.pack_into(out, pos, len(names[name]), sizes[name])
        pos += NAME.size
        out[pos:pos + len(names[name])] = names[name]
        pos += len(names[name])
        if name in partials:
            _write(view[pos:pos + sizes[name]], partials[name])
        else:
            out[pos:pos + sizes[name]] = others[name]
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
