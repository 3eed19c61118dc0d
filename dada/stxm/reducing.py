"""Computing the polar reduction on a node, in the same fused pass as the request's channels.

The reduction joins the pass as its cells (radial bin x fine sector), each pixel's count and moments added to
its cell beside the channels' classes (``kernels``); the radial bins' sums and moments are the cells' summed
over sectors (integers: exact). See ``reduction`` for what is kept.
"""

from __future__ import annotations

import numpy as np

from dada.memo import Memo
from dada.stxm import polar
from dada.stxm.beam import BeamGeometry
from dada.stxm.reduction import Geometry, Spec, block_record

GEOMETRIES = Memo(4)


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


def integral(a: np.ndarray) -> np.ndarray | None:
    """``a`` as int64 when every value is an integer (integer frames), else None."""
    out = a.astype(np.int64)
    return out if np.array_equal(out, a) else None


def block_bytes(values: np.ndarray, valid: np.ndarray, present: np.ndarray, static: np.ndarray, spec: Spec
                ) -> bytes | None:
    """A block's reduction record from the engine's arrays of the cells: ``values`` (n, cells, 3) Σv, Σv·col,
    Σv·row about pixel (0, 0), ``valid`` (n, cells) valid pixels, and the cells' valid pixels before per-frame
    exclusions; None when some frame is absent or a sum is not an integer (the radial bins' sums are checked:
    float frames fail there; the cells hold the same pixels). Each array is read once, in its own layout."""
    if not present.all():
        return None
    n = values.shape[0]
    per_ring = [integral(values[..., k].reshape(n, spec.nr, spec.ns).sum(axis=2).T) for k in range(3)]  # (nr, n)
    if any(r is None for r in per_ring):
        return None
    pos, cell = np.nonzero(valid != static[None, :])  # saturated pixels: few
    lost = np.rint(static[cell] - valid[pos, cell]).astype(np.int64)
    sums = values[..., 0]
    top = float(sums.max(initial=0))
    cells = np.empty((spec.nr, spec.ns, n), dtype=np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.int64)
    cells[...] = sums.reshape(n, spec.nr, spec.ns).transpose(1, 2, 0)
    return block_record(per_ring[0], np.stack(per_ring[1:]), cells, np.stack([pos, cell, lost]).astype(np.int64))
