"""The bytes of partial results: how a block's per-point accumulators travel (node → front) and are cached.

One *record* per channel and block: a fixed header, a directory naming the arrays, then the raw
arrays, so the front reads them with ``np.frombuffer`` (no copy, no parsing per point) and the cache
keeps the very bytes a node sent. A node's answer is its channels' records, each behind its
channel's name.

Record layout (little-endian)::

    b"DADP" | u16 FORMAT | u16 narrays | u32 points | u32 bins | u64 xxh3_64(directory + payload)
    directory = narrays x (8s name | 8s dtype | u32 rows | u32 patches)  # NUL-padded ASCII: b"sum", b"<f8"
    payload = the arrays in directory order: rows x bins values (C order); with patches, one row, then
              the patched values, then their u32 flat indices (row x bins + bin), padded to 8 bytes

Names are those of ``channel.ACCUMULATORS`` (``count`` always; a record holds exactly what its channel
declared). Three things make a record smaller than its arrays, because the front's cost is the bytes it
receives and copies per point: an array whose rows are all equal travels as one row (``rows`` 1: the
valid-pixel counts of a block without absent frames or saturated pixels), read back as a broadcast
view; an array whose rows differ from one row in a few values travels as that row and the values that
differ (``patches``: the counts of a block whose frames saturate a few pixels, about half of a record's
bytes otherwise); and a float64 array whose every value float32 holds exactly (sums of photon counts
below 2**24) travels as float32. All are exact, bit for bit (rows are compared as bit patterns, so NaN
and -0.0 are kept): readers copy into the declared dtype before any arithmetic. Wider arrays come
first, so every array is aligned. An absent frame's row is NaN. The checksum is a fast non-cryptographic
hash: it guards against corruption (a torn disk write, a damaged cache entry), not forgery. ``FORMAT``
is the layout version: it enters every cache key of these bytes and is checked on every read. Bump it
whenever their meaning changes, and entries of another layout are recomputed, never misread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import xxhash

from dada.stxm.channel import ACCUMULATORS, Partial

FORMAT = 5  # 2: positional slots; 3: named arrays; 4: equal rows once, exact float64 as float32; 5: patches
MAGIC = b"DADP"
HEADER = struct.Struct("<4sHHIIQ")
ENTRY = struct.Struct("<8s8sII")
F4, F8 = np.dtype("<f4"), np.dtype("<f8")
NAME = struct.Struct("<HQ")  # a channel's name length and its record's length, in a node's answer


class WireError(ValueError):
    """Bytes that are not a record of this format (corrupt, truncated, or of another format)."""


class _Array:
    """One array as it travels: its dtype, the rows written (all, or one), and the patched values and their
    flat indices when one row is written for rows that differ from it in a few places."""

    __slots__ = ("name", "dtype", "rows", "values", "at")

    def __init__(self, name: str, dtype: np.dtype, rows: np.ndarray, values: np.ndarray | None = None,
                 at: np.ndarray | None = None) -> None:
        self.name, self.dtype, self.rows, self.values, self.at = name, dtype, rows, values, at

    @property
    def patches(self) -> int:
        return 0 if self.at is None else self.at.size

    @property
    def nbytes(self) -> int:
        return _nbytes(self.dtype, self.rows.shape[0], self.rows.shape[1], self.patches)


def _nbytes(dt: np.dtype, rows: int, nbins: int, patches: int) -> int:
    """Payload bytes of an array: its rows, and its patches' values and indices padded to 8 bytes."""
    size = rows * nbins * dt.itemsize
    return size if not patches else size + -(-patches * (dt.itemsize + 4) // 8) * 8


def _bits(a: np.ndarray) -> np.ndarray:
    """The values' bit patterns: equal exactly when the values are the same bits (NaN, -0.0 included)."""
    return a.view(np.dtype(f"<u{a.dtype.itemsize}"))


def _travelling(name: str, a: np.ndarray) -> _Array:
    """How an array travels: every row; one row (all equal); one row and its patches (a few values differ,
    patched when that takes under half the bytes); float64 as float32 where float32 holds every value."""
    dt = np.dtype(ACCUMULATORS[name].dtype)
    if dt == F8:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range: inf, unequal, so float64
            narrow = a.astype(F4)
        if np.array_equal(narrow, a, equal_nan=True):
            a, dt = narrow, F4
    a = np.ascontiguousarray(a, dtype=dt)
    n, nbins = a.shape
    if n < 2:
        return _Array(name, dt, a)
    bits = _bits(a)
    if bool((bits == bits[:1]).all()):
        return _Array(name, dt, a[:1])
    if n * nbins >= 2**32:
        return _Array(name, dt, a)
    with np.errstate(invalid="ignore"):
        base = np.fmax.reduce(a, axis=0, keepdims=True) if dt.kind == "f" else a.max(axis=0, keepdims=True)
    at = np.flatnonzero(bits != _bits(base))
    if _nbytes(dt, 1, nbins, at.size) * 2 > a.nbytes:
        return _Array(name, dt, a)
    return _Array(name, dt, base, a.reshape(-1)[at], at.astype("<u4"))


def _layout(m: Partial) -> list[_Array]:
    """Each array as it travels, wider dtypes first (then ACCUMULATORS' order)."""
    order = list(ACCUMULATORS)
    return sorted((_travelling(name, a) for name, a in m.arrays.items()),
                  key=lambda e: (-e.dtype.itemsize, order.index(e.name)))


def _size(layout: list[_Array]) -> int:
    return HEADER.size + ENTRY.size * len(layout) + sum(e.nbytes for e in layout)


def _write(out: memoryview, m: Partial, layout: list[_Array]) -> None:
    """A record into ``out`` (exactly its size): each array copied once, straight into place."""
    n, nbins = m["count"].shape
    body = out[HEADER.size:]
    pos = 0
    for e in layout:
        ENTRY.pack_into(body, pos, e.name.encode(), e.dtype.str.encode(), e.rows.shape[0], e.patches)
        pos += ENTRY.size
    for e in layout:
        start = pos
        np.copyto(np.frombuffer(body, dtype=e.dtype, count=e.rows.size, offset=pos).reshape(e.rows.shape), e.rows)
        pos += e.rows.size * e.dtype.itemsize
        if e.patches:
            np.frombuffer(body, dtype=e.dtype, count=e.patches, offset=pos)[:] = e.values
            pos += e.patches * e.dtype.itemsize
            np.frombuffer(body, dtype="<u4", count=e.patches, offset=pos)[:] = e.at
        pos = start + e.nbytes
    HEADER.pack_into(out, 0, MAGIC, FORMAT, len(layout), n, nbins, xxhash.xxh3_64_intdigest(body))


def record(m: Partial) -> bytearray:
    """One channel's partial as a record."""
    layout = _layout(m)
    out = bytearray(_size(layout))
    _write(memoryview(out), m, layout)
    return out


def read(data: bytes | memoryview, verify: bool = True) -> Partial:
    """A record's partial as views into ``data`` (read-only; in the dtypes they travelled in, an array sent
    as one row broadcast to every point, a patched one written out: copy into the declared dtype before
    computing with it)."""
    mv = memoryview(data)
    if len(mv) < HEADER.size:
        raise WireError(f"a partial record of {len(mv)} bytes is shorter than its header")
    magic, fmt, narrays, n, nbins, digest = HEADER.unpack_from(mv)
    if magic != MAGIC or fmt != FORMAT:
        raise WireError(f"not a partial record of layout {FORMAT} (magic {magic!r}, layout {fmt})")
    body = mv[HEADER.size:]
    if len(body) < ENTRY.size * narrays:
        raise WireError(f"a partial record of {len(mv)} bytes is shorter than its directory")
    entries: dict[str, tuple[np.dtype, int, int]] = {}
    for i in range(narrays):
        raw_name, raw_dtype, rows, patches = ENTRY.unpack_from(body, i * ENTRY.size)
        name, dtype = (b.rstrip(b"\0").decode("ascii", "replace") for b in (raw_name, raw_dtype))
        declared = ACCUMULATORS[name].dtype if name in ACCUMULATORS else None
        if declared is None or dtype not in (declared, F4.str if declared == F8.str else declared) or name in entries:
            raise WireError(f"a partial record names an array {name!r} of {dtype!r}, not one of this layout")
        if rows not in (1, n) or (patches and rows != 1):
            raise WireError(f"a partial record's array {name!r} has {rows} rows and {patches} patches for {n} points")
        entries[name] = (np.dtype(dtype), rows, patches)
    if "count" not in entries:
        raise WireError("a partial record has no valid-pixel counts")
    pos = ENTRY.size * narrays
    if len(body) != pos + sum(_nbytes(dt, rows, nbins, patches) for dt, rows, patches in entries.values()):
        raise WireError(f"a partial record of {n} points x {nbins} bins x {narrays} arrays has {len(mv)} bytes")
    if verify and xxhash.xxh3_64_intdigest(body) != digest:
        raise WireError("a partial record's checksum does not match its bytes")
    arrays = {}
    for name, (dt, rows, patches) in entries.items():
        a = np.frombuffer(body, dtype=dt, count=rows * nbins, offset=pos).reshape(rows, nbins)
        if patches:
            values = np.frombuffer(body, dtype=dt, count=patches, offset=pos + nbins * dt.itemsize)
            at = np.frombuffer(body, dtype="<u4", count=patches, offset=pos + (nbins + patches) * dt.itemsize)
            if int(at.max()) >= n * nbins:
                raise WireError(f"a partial record's array {name!r} patches a value beyond its {n} x {nbins}")
            a = np.repeat(a, n, axis=0)
            a.reshape(-1)[at] = values
        arrays[name] = a if a.shape[0] == n else np.broadcast_to(a, (n, nbins))
        pos += _nbytes(dt, rows, nbins, patches)
    count = arrays["count"]
    return Partial(arrays, ~np.isnan(count[:, 0]) if nbins else np.ones(n, dtype=bool))


def bundle(partials: dict[str, Partial], others: dict[str, bytes] | None = None) -> bytearray:
    """A node's answer: every channel's record behind its name, written in one buffer; then ``others``
    (records of other kinds, e.g. the polar reduction's) behind theirs."""
    others = others or {}
    names = {name: name.encode() for name in [*partials, *others]}
    layouts = {name: _layout(m) for name, m in partials.items()}
    sizes = {**{name: _size(layouts[name]) for name, m in partials.items()},
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
