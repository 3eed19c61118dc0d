"""The bytes of partial results: how a block's per-point accumulators travel (node → front) and are cached.

One *record* per channel and block: a fixed header, a directory naming the arrays, then the raw
arrays, so the front reads them with ``np.frombuffer`` (no copy, no parsing per point) and the cache
keeps the very bytes a node sent. A node's answer is its channels' records, each behind its
channel's name.

Record layout (little-endian)::

    b"DADP" | u16 FORMAT | u16 narrays | u32 points | u32 bins | u64 xxh3_64(directory + payload)
    directory = narrays x (8s name | 8s dtype | u32 rows | 4x)  # NUL-padded ASCII: b"sum", b"<f8"
    payload = the arrays in directory order, each (rows, bins), C order

Names are those of ``channel.ACCUMULATORS`` (``count`` always; a record holds exactly what its channel
declared). Two things make a record smaller than its arrays, because the front's cost is the bytes it
receives and copies per point: an array whose rows are all equal travels as one row (``rows`` 1: the
valid-pixel counts of a block without absent frames or saturated pixels), read back as a broadcast
view; and a float64 array whose every value float32 holds exactly (sums of photon counts below 2**24)
travels as float32. Both are exact: readers copy into the declared dtype before any arithmetic.
Wider arrays come first, so every array is aligned. An absent frame's row is NaN. The checksum is a
fast non-cryptographic hash: it guards against corruption (a torn disk write, a damaged cache entry),
not forgery. ``FORMAT`` is the layout version: it enters every cache key of these bytes and is checked
on every read. Bump it whenever their meaning changes, and entries of another layout are recomputed,
never misread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import xxhash

from dada.stxm.channel import ACCUMULATORS, Partial

FORMAT = 4  # 2: positional (Σv[, Σv·x, Σv·y]) slots; 3: named arrays; 4: equal rows once, exact float64 as float32
MAGIC = b"DADP"
HEADER = struct.Struct("<4sHHIIQ")
ENTRY = struct.Struct("<8s8sI4x")
F4, F8 = np.dtype("<f4"), np.dtype("<f8")
NAME = struct.Struct("<HQ")  # a channel's name length and its record's length, in a node's answer


class WireError(ValueError):
    """Bytes that are not a record of this format (corrupt, truncated, or of another format)."""


def _layout(m: Partial) -> list[tuple[str, np.dtype, np.ndarray]]:
    """Each array as it travels: (name, dtype, the rows written), wider dtypes first (then ACCUMULATORS' order)."""
    out = []
    for name, a in m.arrays.items():
        rows = a[:1] if a.shape[0] > 1 and bool((a == a[:1]).all()) else a  # NaN never equals: absent rows stay
        dt = np.dtype(ACCUMULATORS[name].dtype)
        with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf: unequal, so float64
            if dt == F8 and np.array_equal(rows.astype(F4), rows, equal_nan=True):
                dt = F4
        out.append((name, dt, rows))
    order = list(ACCUMULATORS)
    return sorted(out, key=lambda e: (-e[1].itemsize, order.index(e[0])))


def _size(m: Partial, layout: list[tuple[str, np.dtype, np.ndarray]]) -> int:
    return HEADER.size + ENTRY.size * len(layout) + sum(rows.size * dt.itemsize for _, dt, rows in layout)


def _write(out: memoryview, m: Partial, layout: list[tuple[str, np.dtype, np.ndarray]]) -> None:
    """A record into ``out`` (exactly its size): each array copied once, straight into place."""
    n, nbins = m["count"].shape
    body = out[HEADER.size:]
    pos = 0
    for name, dt, rows in layout:
        ENTRY.pack_into(body, pos, name.encode(), dt.str.encode(), rows.shape[0])
        pos += ENTRY.size
    for _, dt, rows in layout:
        np.copyto(np.frombuffer(body, dtype=dt, count=rows.size, offset=pos).reshape(rows.shape), rows,
                  casting="unsafe")  # exact: _layout chose float32 only where every value is held
        pos += rows.size * dt.itemsize
    HEADER.pack_into(out, 0, MAGIC, FORMAT, len(layout), n, nbins, xxhash.xxh3_64_intdigest(body))


def record(m: Partial) -> bytearray:
    """One channel's partial as a record."""
    layout = _layout(m)
    out = bytearray(_size(m, layout))
    _write(memoryview(out), m, layout)
    return out


def read(data: bytes | memoryview, verify: bool = True) -> Partial:
    """A record's partial as views into ``data`` (read-only; in the dtypes they travelled in, an array sent
    as one row broadcast to every point: copy into the declared dtype before computing with it)."""
    mv = memoryview(data)
    if len(mv) < HEADER.size:
        raise WireError(f"a partial record of {len(mv)} bytes is shorter than its header")
    magic, fmt, narrays, n, nbins, digest = HEADER.unpack_from(mv)
    if magic != MAGIC or fmt != FORMAT:
        raise WireError(f"not a partial record of layout {FORMAT} (magic {magic!r}, layout {fmt})")
    body = mv[HEADER.size:]
    if len(body) < ENTRY.size * narrays:
        raise WireError(f"a partial record of {len(mv)} bytes is shorter than its directory")
    entries: dict[str, tuple[np.dtype, int]] = {}
    for i in range(narrays):
        raw_name, raw_dtype, rows = ENTRY.unpack_from(body, i * ENTRY.size)
        name, dtype = (b.rstrip(b"\0").decode("ascii", "replace") for b in (raw_name, raw_dtype))
        declared = ACCUMULATORS[name].dtype if name in ACCUMULATORS else None
        if declared is None or dtype not in (declared, F4.str if declared == F8.str else declared) or name in entries:
            raise WireError(f"a partial record names an array {name!r} of {dtype!r}, not one of this layout")
        if rows not in (1, n):
            raise WireError(f"a partial record's array {name!r} has {rows} rows for {n} points")
        entries[name] = (np.dtype(dtype), rows)
    if "count" not in entries:
        raise WireError("a partial record has no valid-pixel counts")
    pos = ENTRY.size * narrays
    if len(body) != pos + sum(rows * nbins * dt.itemsize for dt, rows in entries.values()):
        raise WireError(f"a partial record of {n} points x {nbins} bins x {narrays} arrays has {len(mv)} bytes")
    if verify and xxhash.xxh3_64_intdigest(body) != digest:
        raise WireError("a partial record's checksum does not match its bytes")
    arrays = {}
    for name, (dt, rows) in entries.items():
        a = np.frombuffer(body, dtype=dt, count=rows * nbins, offset=pos).reshape(rows, nbins)
        arrays[name] = a if rows == n else np.broadcast_to(a, (n, nbins))
        pos += rows * nbins * dt.itemsize
    count = arrays["count"]
    return Partial(arrays, ~np.isnan(count[:, 0]) if nbins else np.ones(n, dtype=bool))


def bundle(partials: dict[str, Partial], others: dict[str, bytes] | None = None) -> bytearray:
    """A node's answer: every channel's record behind its name, written in one buffer; then ``others``
    (records of other kinds, e.g. the polar reduction's) behind theirs."""
    others = others or {}
    names = {name: name.encode() for name in [*partials, *others]}
    layouts = {name: _layout(m) for name, m in partials.items()}
    sizes = {**{name: _size(m, layouts[name]) for name, m in partials.items()},
             **{name: len(b) for name, b in others.items()}}
    out = bytearray(sum(NAME.size + len(names[k]) + sizes[k] for k in names))
    view, pos = memoryview(out), 0
    for name in names:
        NAME.pack_into(out, pos, len(names[name]), sizes[name])
        pos += NAME.size
        out[pos:pos + len(names[name])] = names[name]
        pos += len(names[name])
        if name in partials:
            _write(view[pos:pos + sizes[name]], partials[name], layouts[name])
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
