"""Pixel maps as numpy builds them, formula by formula: every channel's bins from float64 radius and azimuth
arrays, and the fusing of bins into pixel classes with a plain numba loop over pixels. The tests hold the
code's pixel maps to these, array for array; the benchmark times the code against them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from dada.stxm.beam import BeamGeometry, ring
from dada.stxm.channel import Bins
from dada.stxm.pixelmaps import PixelMaps, assemble, check_accumulators, layout
from dada.stxm.radial import q_of_r

_POLAR: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def polar(geo: BeamGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Radius and azimuth in [0, 2π) of every pixel centre about the beam centre (once per geometry, as the
    code computes them)."""
    if geo.key not in _POLAR:
        _POLAR.clear()
        _POLAR[geo.key] = _polar(geo)
    return _POLAR[geo.key]


def _polar(geo: BeamGeometry) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(geo.shape[0], dtype=np.float64)[:, None] - geo.cy
    x = np.arange(geo.shape[1], dtype=np.float64)[None, :] - geo.cx
    return np.hypot(x, y), np.mod(np.arctan2(y, x), 2 * np.pi)


def bins(name: str, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
    """A built-in channel's bins, by its formula."""
    r, phi = polar(geo)
    if name == "darkfield":
        rmin, rmax = ring(geo, args)
        return Bins(np.where(r < rmin, 1, np.where(r < rmax, 0, -1)).astype(np.int32), 2)
    if name in ("maxpixel", "contrast"):
        rmin, rmax = ring(geo, args)
        return Bins(np.where((r >= rmin) & (r < rmax), 0, -1).astype(np.int32), 1)
    if name == "dpc":
        return Bins(np.where(r < args["rdpc"], 0, -1).astype(np.int32), 1)
    if name == "azimuthal":
        rmin, rmax = ring(geo, args)
        n = args["nsectors"]
        sector = np.minimum((phi / (2 * np.pi) * n).astype(np.int32), n - 1)
        return Bins(np.where((r >= rmin) & (r < rmax), sector, -1).astype(np.int32), n)
    if name == "radial":
        rmin, rmax = ring(geo, args)
        n = args["nbins"]
        if args["unit"] == "q":
            edges = np.linspace(q_of_r(rmin, geo), q_of_r(rmax, geo), n + 1)
            u = q_of_r(r, geo)
        else:
            edges, u = np.linspace(rmin, rmax, n + 1), r
        idx = np.floor((u - edges[0]) / (edges[-1] - edges[0]) * n).astype(np.int64)
        inside = (u >= edges[0]) & (u < edges[-1]) & (idx >= 0) & (idx < n)
        return Bins(np.where(inside, idx, -1).astype(np.int32), n)
    raise ValueError(name)


@numba.njit(nogil=True)
def _keys(index, counts, offsets, good, seen, static):
    """Per pixel its class key, one pass: mixed radix over the channels' bins (digit 0 for none), so 0 is
    "no bin anywhere" and masked pixels get it. Marks the keys seen (when ``seen`` is a dense table)
    and counts the valid pixels of every global bin."""
    nch, n = index.shape
    key = np.zeros(n, dtype=np.int64)
    for p in range(n):
        if not good[p]:
            continue
        x = 0
        for c in range(nch):
            i = index[c, p]
            x = x * (counts[c] + 1)
            if i >= 0:
                x += i + 1
                static[offsets[c] + i] += 1
        key[p] = x
        if seen.size > 1:
            seen[x] = True
    return key


def fuse(bins: Sequence[Bins], accumulators: Sequence[Sequence[str]], geo: BeamGeometry) -> PixelMaps:
    """Keys from a stacked copy of the bins, classes by fancy indexing, their pixels by bincount, the
    wanted-pixel mask by packbits; the order of classes from the code's (per class, not per pixel)."""
    check_accumulators(accumulators)
    counts = np.array([b.count for b in bins], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    index = np.stack([np.asarray(b.index, dtype=np.int32).ravel() for b in bins])
    top = int(np.prod(counts + 1, dtype=np.float64))
    dense = top <= 1 << 26
    seen = np.zeros(top if dense else 1, dtype=np.bool_)
    static = np.zeros(int(offsets[-1]), dtype=np.int64)
    key = _keys(index, counts, offsets, np.ascontiguousarray(geo.good).ravel(), seen, static)
    used = np.flatnonzero(key)
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    if dense:
        seen[0] = True
        keys = np.flatnonzero(seen)
        table, at = np.cumsum(seen, dtype=np.int64) - 1, key
    else:
        keys, inverse = np.unique(np.concatenate([[0], key]), return_inverse=True)
        table, at = inverse.ravel()[1:], slice(None)
    lay = layout(keys, counts, accumulators)
    cls = lay.renumber.astype(lay.narrow)[table][at]
    cls_pixels = np.bincount(cls.astype(np.int64), minlength=keys.size).astype(np.float64)
    want = np.packbits(cls != 0, bitorder="little")
    want = np.concatenate([want, np.zeros(-want.size % 8, dtype=np.uint8)]).view("<u8").astype(np.uint64)
    return assemble(lay, cls, cls_pixels, static.astype(np.float64), want, geo.shape[1], first, last, counts,
                    accumulators)
