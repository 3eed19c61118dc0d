"""Computing the polar reduction on a node, in the same fused pass as the request's channels.

The reduction joins the pass as its ``CellMap``: each pixel's cell (radial bin x fine sector), which the kernels
add its count into, straight into its point's row of integer counts, and its count and moments into its point's
radial bin (``kernels.Cells``); the block's record is those rows, compressed. See ``reduction`` for what is kept.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from dada.memo import Memo
from dada.stxm import polar
from dada.stxm.beam import BeamGeometry
from dada.stxm.pixelmaps import PixelMaps
from dada.stxm.reduction import Geometry, Spec, block_record

GEOMETRIES = Memo(4)
CELL_MAPS = Memo(4)


def radial_bins(r: np.ndarray, spec: Spec) -> np.ndarray:
    """k with k·dr <= r < (k+1)·dr (exact comparisons: dr is an integer), -1 beyond the reach. int32."""
    k = np.floor(r / spec.dr)
    k -= k * spec.dr > r
    k += (k + 1) * spec.dr <= r
    return np.where(r < spec.reach, k, -1).astype(np.int32)


def cell_bins(geo: BeamGeometry, spec: Spec) -> np.ndarray:
    """Radial bin x ns + fine sector per pixel (the sector exactly as ``polar.sectors`` bins it), -1 beyond."""
    r = geo.radius()
    k = radial_bins(r, spec)
    s = polar.sectors(r, geo.cx, geo.cy, 0.0, spec.reach, spec.ns)
    return np.where((k >= 0) & (s >= 0), k * spec.ns + s, -1).astype(np.int32)


def sector_angle(geo: BeamGeometry) -> np.ndarray:
    """The azimuth as ``polar.sectors`` sees it before binning: numpy's arctan2 of the same rows, a negative
    one plus 2π (its kernel's wrap)."""
    h, w = geo.shape
    y = np.arange(h, dtype=np.float64)[:, None] - geo.cy
    x = np.arange(w, dtype=np.float64)[None, :] - geo.cx
    a = np.arctan2(y, x)
    return np.where(a < 0, a + 2 * np.pi, a)


def geometry_of(geo: BeamGeometry, spec: Spec) -> Geometry:
    """Valid pixels per cell and the radius and angle ranges of each cell's valid pixels (once per geometry)."""

    def make() -> Geometry:
        cell = cell_bins(geo, spec).reshape(-1)
        valid = (cell >= 0) & geo.good.reshape(-1)
        c = cell[valid]
        r, a = geo.radius().reshape(-1)[valid], sector_angle(geo).reshape(-1)[valid]
        static = np.bincount(c, minlength=spec.cells).astype(np.int64).reshape(spec.nr, spec.ns)
        k = c // spec.ns
        rlo, rhi = np.full(spec.nr, np.inf), np.full(spec.nr, -np.inf)
        np.minimum.at(rlo, k, r)
        np.maximum.at(rhi, k, r)
        alo, ahi = np.full(spec.cells, np.inf), np.full(spec.cells, -np.inf)
        np.minimum.at(alo, c, a)
        np.maximum.at(ahi, c, a)
        empty_r, empty_c = static.sum(axis=1) == 0, static.reshape(-1) == 0
        rlo[empty_r] = rhi[empty_r] = np.nan
        alo[empty_c] = ahi[empty_c] = np.nan
        return Geometry(spec, static, rlo, rhi, alo.reshape(spec.nr, spec.ns), ahi.reshape(spec.nr, spec.ns))

    return GEOMETRIES.get((geo.key, spec), make)


@dataclass(frozen=True)
class CellMap:
    """A reduction's cells as the kernels take them (``kernels.Cells``): per pixel in the reduction (valid, within
    its reach) ``radial bin << shift | sector``, elsewhere 0xFFFF as uint16 where every entry fits below it, else
    -1 as int32."""

    spec: Spec
    table: np.ndarray  # (H*W,) uint16 or int32
    shift: int  # bits of the sector
    pixels: int  # pixels in the reduction: the most a frame can log as saturated

    def inside(self) -> np.ndarray:
        """(H*W,) bool: the pixels in the reduction."""
        return self.table != (0xFFFF if self.table.dtype == np.uint16 else -1)


def cell_map(geo: BeamGeometry, spec: Spec) -> CellMap:
    """The reduction's cells of a geometry (once per geometry and grid)."""

    def make() -> CellMap:
        cell = cell_bins(geo, spec).reshape(-1)
        inside = (cell >= 0) & geo.good.reshape(-1)
        shift = int(spec.ns - 1).bit_length()
        k, s = np.divmod(cell, spec.ns)
        narrow = spec.nr << shift <= 0xFFFF
        table = np.where(inside, (k << shift) | s, 0xFFFF if narrow else -1).astype(np.uint16 if narrow else np.int32)
        return CellMap(spec, table, shift, int(np.count_nonzero(inside)))

    return CELL_MAPS.get((geo.key, spec), make)


def with_cells(maps: PixelMaps, cells: CellMap) -> PixelMaps:
    """A pass's maps widened to the reduction's pixels: the kernels then visit them too (those no channel
    needs are in class 0, which feeds no bin)."""
    k = maps.kernel
    has = cells.inside()
    if not has.any():
        return maps
    want = k.want | np.packbits(np.pad(has, (0, (-has.size) % 64)), bitorder="little").view(np.uint64)
    where = np.flatnonzero(has)
    first, last = int(where[0]), int(where[-1]) + 1
    if k.first < k.last:  # some channel's pixels too
        first, last = min(first, k.first), max(last, k.last)
    return dataclasses.replace(maps, kernel=k._replace(want=want, first=first, last=last))


@dataclass
class Reduced:
    """What a run of the engine computed of the reduction, per point of the run (see ``kernels.Cells``)."""

    counts: np.ndarray  # (n, cells) uint32
    radial: np.ndarray  # (n, nr, 3) int64: Σv, Σv·col, Σv·row about pixel (0, 0)
    saturated: np.ndarray  # (3, k) int64 rows of (point, cell, pixels)
    exact: bool  # every count a non-negative integer and every cell's sum within uint32


def fits_uint32(radial: np.ndarray) -> bool:
    """Whether every cell's sum fits the kernels' uint32 counts (they add modulo 2**32, untested per pixel): it
    does when every ring's Σv does (``radial``'s exact int64 sums), a cell's pixels being part of its ring's."""
    return int(radial[..., 0].max(initial=0)) < 2**32


def saturated_cells(logs: list[np.ndarray], cells: int) -> np.ndarray:
    """(point, cell, pixels) rows from the kernels' logs of (point, cell), one entry per saturated pixel."""
    log = np.concatenate(logs) if logs else np.zeros((0, 2), dtype=np.int32)
    keys, counts = np.unique(log[:, 0].astype(np.int64) * cells + log[:, 1], return_counts=True)
    return np.stack([keys // cells, keys % cells, counts]).astype(np.int64)


def block_bytes(reduced: Reduced, present: np.ndarray, spec: Spec, pool: Executor | None = None) -> bytes | None:
    """A run's reduction record (compressed two threads at a time with ``pool``); None when some frame is absent
    or some count was not an exact integer."""
    if not present.all() or not reduced.exact:
        return None
    n = reduced.counts.shape[0]
    return block_record(reduced.counts.reshape(n, spec.nr, spec.ns), reduced.radial, reduced.saturated, pool)
