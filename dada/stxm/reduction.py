"""The polar reduction of a scan: per point, counts in radial bins x fine sectors, kept per block, so that
later darkfield, radial, azimuthal and dpc requests on its grid are answered without reading a frame.

What is kept (integer frames only; float frames have no exact sums and are never reduced):

* per point and block, point-major as the kernels write them: Σv per radial bin x fine sector (``counts``, uint16
  or uint32, the smallest holding the block), Σv, Σv·col and Σv·row per radial bin (``radial``, int64, about pixel
  (0, 0): integers, so the disc's centre of mass comes out as the kernels give it), and the saturated pixels per
  cell, sparse (point, cell, count): they are few. Read r-major (views, no copy): ``cells`` (nr, ns, points),
  ``rings`` (nr, points) and ``moments`` (2, nr, points);
* once per scan geometry: each cell's valid pixels (``static``), and the smallest and largest radius of the
  valid pixels of each radial bin and angle of each cell (``rlo``/``rhi``, ``alo``/``ahi``).

A radial bin k holds the pixels with k·dr <= r < (k+1)·dr. A request is answered from the reduction when
each of its pixel bins is a union of cells: the channel's own bin formula, applied to the smallest and the
largest radius (angle) of every cell, gives the same bin for both. The formulas are monotone in r (in the
angle), so then every pixel of the cell falls in that bin, and the bins' sums are the cells' sums: integers,
added exactly in any order, so the answer equals the raw pass's bit for bit (while sums stay below 2**53).
Radii on the grid (multiples of dr) always pass; many others do too, as pixel radii are discrete.

Each section is bit-shuffled and LZ4-compressed (bitshuffle, the frames' own codec: several times faster than
zstd on these counts, and smaller), with a checksum of its bytes: counts' high bits are mostly zero and compress
to almost nothing.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cached_property

import bitshuffle
import numpy as np
import xxhash

from dada.stxm.channel import Partial

log = logging.getLogger("dada.reduction")

MAGIC = b"DADR"
FORMAT = 2  # enters every key of these records: bump when their meaning changes
HEAD = struct.Struct("<4sHI")  # magic, format, header length
CELLS_HELD = 1 << 30  # bytes of cumulative cells a view holds by default (beyond, each block's are read)
SECTORS = 48  # fine sectors: 1, 2, 3, 4, 6, 8, 12, 16, 24 and 48 sectors are unions of them


class ReductionError(ValueError):
    """Bytes that are not a reduction record of this format."""


@dataclass(frozen=True)
class Spec:
    """The reduction's grid: radial bins of ``dr`` px (integer: its edges are exact), ``nr`` of them, ``ns`` sectors."""

    dr: int
    nr: int
    ns: int = SECTORS

    @property
    def reach(self) -> float:
        """Pixels with r below this are in the reduction."""
        return float(self.dr * self.nr)

    @property
    def cells(self) -> int:
        return self.nr * self.ns

    def query(self) -> str:
        return f"{self.dr},{self.nr},{self.ns}"

    @classmethod
    def parse(cls, text: str) -> Spec:
        dr, nr, ns = (int(v) for v in text.split(","))
        if dr < 1 or nr < 1 or ns < 1 or nr * ns > 2**24:
            raise ValueError(f"not a reduction grid: {text}")
        return cls(dr, nr, ns)


def spec_for(shape: tuple[int, int], cx: float, cy: float, dr: int, max_cells: int) -> Spec | None:
    """The grid a scan's reduction uses: radial bins out to the largest circle inside the frame (every
    channel's default outer radius), at most ``max_cells`` cells per point; None without a beam centre."""
    if math.isnan(cx) or math.isnan(cy):
        return None
    h, w = shape
    inside = max(1.0, min(cx + 0.5, w - 0.5 - cx, cy + 0.5, h - 0.5 - cy))
    nr = min(math.ceil(math.ceil(inside) / dr), max_cells // SECTORS)
    return Spec(dr, nr) if nr >= 1 else None


# -- records: named sections, each bit-shuffled and compressed ---------------------------------------

SPLIT = 8192  # elements: a multiple of bitshuffle's default block at every item size (8 KiB / item size)


def compress(a: np.ndarray, pool: Executor | None = None) -> bytes:
    """``a`` bit-shuffled and LZ4-compressed; with ``pool``, its second half on another thread: bitshuffle
    compresses block by block, so two pieces cut at a multiple of its block are the whole's stream, byte for
    byte."""
    flat = np.ascontiguousarray(a).reshape(-1)
    cut = flat.size // 2 // SPLIT * SPLIT
    if pool is None or cut == 0:
        return bitshuffle.compress_lz4(flat).tobytes()
    later = pool.submit(bitshuffle.compress_lz4, flat[cut:])
    return bitshuffle.compress_lz4(flat[:cut]).tobytes() + later.result().tobytes()


def encode(meta: dict, sections: dict[str, np.ndarray], pool: Executor | None = None) -> bytes:
    """A record: header (JSON: ``meta`` and each section's dtype, shape, compressed length and checksum), then
    the sections (compressed two threads at a time with ``pool``)."""
    parts = {k: compress(a, pool) for k, a in sections.items()}
    head = json.dumps({"meta": meta, "sections": [[k, a.dtype.str, list(a.shape), len(parts[k]),
                                                   xxhash.xxh3_64_hexdigest(parts[k])]
                                                  for k, a in sections.items()]}).encode()
    return b"".join([HEAD.pack(MAGIC, FORMAT, len(head)), head, *parts.values()])


# names a block record is read by, r-major: views of its point-major sections
VIEWS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "cells": ("counts", lambda a: a.transpose(1, 2, 0)),  # (nr, ns, n)
    "rings": ("radial", lambda a: a[..., 0].T),  # (nr, n)
    "moments": ("radial", lambda a: a[..., 1:].transpose(2, 1, 0)),  # (2, nr, n)
}


class Record:
    """A record read lazily: its header at once, each section when asked (and then kept)."""

    def __init__(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        if len(mv) < HEAD.size:
            raise ReductionError("a reduction record shorter than its header")
        magic, fmt, n = HEAD.unpack_from(mv)
        if magic != MAGIC or fmt != FORMAT:
            raise ReductionError(f"not a reduction record of format {FORMAT} ({magic!r}, {fmt})")
        try:
            head = json.loads(bytes(mv[HEAD.size:HEAD.size + n]))
        except ValueError:
            raise ReductionError("a reduction record's header is not JSON") from None
        self.meta = head["meta"]
        self._where: dict[str, tuple[np.dtype, tuple[int, ...], memoryview, str]] = {}
        pos = HEAD.size + n
        for name, dt, shape, size, digest in head["sections"]:
            if pos + size > len(mv):
                raise ReductionError(f"a reduction record ends inside its section {name!r}")
            self._where[name] = (np.dtype(dt), tuple(shape), mv[pos:pos + size], digest)
            pos += size
        self._got: dict[str, np.ndarray] = {}

    def dtype(self, name: str) -> np.dtype:
        """A section's dtype (or the dtype of the section a view reads), without reading it."""
        if name in VIEWS and name not in self._where:
            name = VIEWS[name][0]
        return self._where[name][0]

    def __getitem__(self, name: str) -> np.ndarray:
        if name in VIEWS and name not in self._where:
            base, view = VIEWS[name]
            return view(self[base])
        if name not in self._got:
            dt, shape, raw, digest = self._where[name]
            if xxhash.xxh3_64_hexdigest(raw) != digest:
                raise ReductionError(f"a reduction record's section {name!r} fails its checksum")
            try:
                self._got[name] = bitshuffle.decompress_lz4(np.frombuffer(raw, dtype=np.uint8), shape, dt)
            except (RuntimeError, ValueError) as exc:
                raise ReductionError(f"a reduction record's section {name!r} does not decompress: {exc}") from None
        return self._got[name]


def narrow(counts: np.ndarray) -> np.ndarray:
    """Counts in the smallest unsigned integer that holds them (uint16 or uint32)."""
    top = int(counts.max(initial=0))
    return counts.astype(np.uint16 if top < 2**16 else np.uint32, copy=False)


def block_record(counts: np.ndarray, radial: np.ndarray, saturated: np.ndarray, pool: Executor | None = None
                 ) -> bytes:
    """One block's reduction: ``counts`` (n, nr, ns) Σv per cell (non-negative integers below 2**32),
    ``radial`` (n, nr, 3) int64 Σv, Σv·col, Σv·row per radial bin, ``saturated`` (3, k) int64 rows of
    (point, cell, pixels)."""
    return encode({"points": int(counts.shape[0])}, {"counts": narrow(counts),
                                                     "radial": radial.astype(np.int64, copy=False),
                                                     "saturated": saturated.astype(np.int64, copy=False)}, pool)


def join(records: list[bytes]) -> bytes:
    """The record of a block from its pieces' records (in point order)."""
    rs = [Record(r) for r in records]
    offsets = np.cumsum([0] + [r.meta["points"] for r in rs])
    sat = [r["saturated"] + np.array([[o], [0], [0]]) for r, o in zip(rs, offsets[:-1].tolist(), strict=True)]
    counts = np.concatenate([r["counts"].astype(np.uint32, copy=False) for r in rs])
    return block_record(counts, np.concatenate([r["radial"] for r in rs]), np.concatenate(sat, axis=1))


# -- answering from it -----------------------------------------------------------------------------

Classify = Callable[[np.ndarray], np.ndarray]


@dataclass
class Geometry:
    """What a reduction's grid is, once per scan geometry: valid pixels per cell and their radius and angle
    ranges (NaN where a cell has no valid pixel)."""

    spec: Spec
    static: np.ndarray  # (nr, ns) int64
    rlo: np.ndarray  # (nr,) float64
    rhi: np.ndarray
    alo: np.ndarray  # (nr, ns) float64: the azimuth as the sector bins see it, [0, 2π)
    ahi: np.ndarray

    @classmethod
    def read(cls, data: bytes | memoryview) -> Geometry:
        r = Record(data)
        return cls(Spec(*r.meta["spec"]), r["static"], r["rlo"], r["rhi"], r["alo"], r["ahi"])

    def record(self) -> bytes:
        s = self.spec
        return encode({"spec": [s.dr, s.nr, s.ns]}, {"static": self.static, "rlo": self.rlo, "rhi": self.rhi,
                                                       "alo": self.alo, "ahi": self.ahi})

    def ring_labels(self, classify: Classify, reach: float) -> np.ndarray | None:
        """Per radial bin the channel bin all its valid pixels fall in (-1: none); empty radial bins take
        their neighbour's, as they add nothing. None when a radial bin's pixels fall in different bins, or
        when the channel takes pixels beyond the reduction's reach."""
        if reach > self.spec.reach:
            return None
        full = ~np.isnan(self.rlo)
        lo, hi = np.asarray(classify(self.rlo[full])), np.asarray(classify(self.rhi[full]))
        if (lo != hi).any():
            return None
        labels = np.full(self.spec.nr, -1, dtype=np.int64)
        labels[full] = lo
        ahead = np.maximum.accumulate(np.where(full, np.arange(self.spec.nr), -1))  # last full bin so far
        return np.where(ahead >= 0, labels[np.maximum(ahead, 0)], labels[np.argmax(full)] if full.any() else -1)


@dataclass
class View:
    """A scan's reduction over a request's points (flat, in the request's order), read from its blocks'
    records: rings and moments as cumulative sums over r (an annulus is two rows), cells when a sector request
    first needs them (``cumulative``)."""

    geometry: Geometry
    rings: np.ndarray  # (nr + 1, n) int64: Σv over r < k·dr
    moments: np.ndarray  # (2, nr + 1, n) int64
    saturated: np.ndarray  # (3, k) int64 rows of (position, cell, pixels)
    # per block: its record, and the request's positions and the block's rows of its points (slices when runs)
    blocks: list[tuple[Callable[[], Record], np.ndarray | slice, np.ndarray | slice]]
    narrow: bool = False  # every block's cells are uint16
    held: int = CELLS_HELD  # bytes of cumulative cells the view may hold (configuration: reduction_held_bytes)

    @property
    def npoints(self) -> int:
        return self.rings.shape[1]

    def partial(self, arrays: dict[str, np.ndarray]) -> Partial:
        """A channel's partial of these points (every frame present: only whole blocks are reduced)."""
        return Partial(arrays, np.ones(self.npoints, dtype=bool))

    def _runs(self, labels: np.ndarray, nlabels: int) -> list[tuple[int, int, int]]:
        """(label, first radial bin, one past the last) of each run of equal labels in 0..nlabels-1."""
        cuts = np.flatnonzero(np.diff(labels)) + 1
        starts, stops = np.r_[0, cuts], np.r_[cuts, labels.size]
        return [(int(labels[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)
                if 0 <= labels[a] < nlabels]

    def ring_sums(self, labels: np.ndarray, nlabels: int, moments: bool = False) -> dict[str, np.ndarray]:
        """Per point and label (n, nlabels): ``sum`` and ``count`` (float64 like the partials' arrays), and
        with ``moments`` Σv·col, Σv·row about pixel (0, 0). Made label-major and handed over transposed (views:
        a (n, nlabels) copy of a 256×256 scan's 20 labels took longer than the sums)."""
        n = self.npoints
        names = ("sum", "col", "row") if moments else ("sum",)
        out = {k: np.zeros((nlabels, n)) for k in names}
        static = np.zeros(nlabels, dtype=np.int64)
        ring_static = self.geometry.static.sum(axis=1)
        for lab, a, b in self._runs(labels, nlabels):
            out["sum"][lab] += self.rings[b] - self.rings[a]  # integers below 2**53: exact in float64
            if moments:
                d = self.moments[:, b] - self.moments[:, a]
                out["col"][lab] += d[0]
                out["row"][lab] += d[1]
            static[lab] += ring_static[a:b].sum()
        pos, cell, k = self.saturated
        return {**{k: a.T for k, a in out.items()},
                "count": self._counts(static, labels[cell // self.geometry.spec.ns], pos, k).T}

    def _counts(self, static: np.ndarray, lab: np.ndarray, pos: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Valid pixels per label and point (nlabels, n): each label's ``static`` less the saturated pixels
        ``k`` of label ``lab`` at point ``pos``."""
        count = np.empty((static.size, self.npoints))
        count[:] = static[:, None]
        keep = (lab >= 0) & (lab < static.size)
        np.subtract.at(count, (lab[keep], pos[keep]), k[keep])
        return count

    def cell_sums(self, labels: np.ndarray, nlabels: int) -> dict[str, np.ndarray]:
        """Per point and label (n, nlabels): ``sum`` and ``count`` over cells labelled by ``labels`` (nr, ns)
        (-1: none). The ring's radial bins are added first (one pass over their cells), then the fine
        sectors into labels, when each fine sector's cells on the ring take one label (empty cells, which add
        nothing, any); else cell by cell."""
        n = self.npoints
        flat = labels.reshape(-1)
        used = np.flatnonzero(flat >= 0)
        total = np.zeros((nlabels, n))  # integers below 2**53: exact
        if used.size:
            rows = np.flatnonzero((labels >= 0).any(axis=1))
            r0, r1 = int(rows[0]), int(rows[-1]) + 1
            sub = labels[r0:r1]
            empty = self.geometry.static[r0:r1] == 0
            per_sector = np.where(empty, -1, sub).max(axis=0)  # each sector's label (-1: none)
            simple = bool(((sub == per_sector[None]) | empty).all())
            for cells, positions in self._cells(r0, r1, simple):
                if simple:  # cells: (ns, points) summed over the ring's radial bins
                    for lab in range(nlabels):
                        which = np.flatnonzero(per_sector == lab)
                        if which.size:
                            total[lab, positions] = cells[which].sum(axis=0, dtype=np.int64)
                else:
                    flat_cells = cells.reshape(-1, cells.shape[-1])
                    for lab in range(nlabels):
                        which = np.flatnonzero(sub.reshape(-1) == lab)
                        if which.size:
                            total[lab, positions] = flat_cells[which].sum(axis=0, dtype=np.int64)
        static = np.bincount(flat[used], weights=self.geometry.static.reshape(-1)[used], minlength=nlabels)
        pos, cell, k = self.saturated
        return {"sum": total.T, "count": self._counts(static, flat[cell] if cell.size else cell, pos, k).T}

    @cached_property
    def cumulative(self) -> np.ndarray | None:
        """The points' cells summed over r < k·dr, (nr + 1, ns, n), when they fit in ``held``; None when they
        do not in the dtype they need (sector requests then read each block's cells). In uint16 while every
        sector's sum over the whole reach (the largest of them) stays below 2**16, as it does on frames of
        modest counts: exact, and half the memory; widened when a block's do not, to uint32 when every block's
        cells are uint16 (no ring's sum then reaches 2**32: differences modulo 2**32 are exact), else uint64.
        Built when a sector request first needs them (darkfield, dpc and radial never do), a block at a time:
        its cells summed over r in a small array, then copied in (numpy's cumsum over the first axis of the
        whole, and copies through index arrays, took seconds on a 256×256 scan)."""
        spec, n = self.geometry.spec, self.npoints
        wide = np.dtype(np.uint32 if self.narrow and spec.nr * 2**16 < 2**32 else np.uint64)
        if (spec.nr + 1) * spec.ns * n * 2 > self.held:
            return self._not_held((spec.nr + 1) * spec.ns * n * 2)
        out = np.empty((spec.nr + 1, spec.ns, n), dtype=np.uint16)
        out[0] = 0
        for load, positions, rows in self.blocks:
            cells = load()["cells"][:, :, rows].astype(wide)  # the block's points' (nr, ns, points)
            for k in range(1, spec.nr):
                np.add(cells[k], cells[k - 1], out=cells[k])
            if out.dtype == np.uint16 and cells[-1].max(initial=0) >= 2**16:
                if out.size * wide.itemsize > self.held:
                    return self._not_held(out.size * wide.itemsize)
                out = out.astype(wide)  # the rows not yet filled are filled below
            out[1:, :, positions] = cells
        return out

    def _not_held(self, need: int) -> None:
        log.info("sector requests over these %d points read every block's cells: their cumulative cells need "
                 "%d MB, reduction_held_bytes allows %d MB", self.npoints, need >> 20, self.held >> 20)

    def _cells(self, r0: int, r1: int, ring: bool) -> Iterator[tuple[np.ndarray, np.ndarray | slice]]:
        """The cells of radial bins r0..r1-1, (r1 - r0, ns, points), or with ``ring`` their sum over those
        bins (ns, points); and which of the request's points they are: all at once when the view holds the
        cumulative cells (two rows make a ring: modulo 2**64, or 2**32 when no ring can reach it, so exact),
        else block by block from the kept records."""
        c = self.cumulative
        if c is not None:
            yield (c[r1] - c[r0]) if ring else np.diff(c[r0:r1 + 1], axis=0), slice(None)
            return
        for load, positions, block_rows in self.blocks:
            cells = load()["cells"][r0:r1][:, :, block_rows]
            yield (cells.sum(axis=0, dtype=np.int64) if ring else cells), positions
