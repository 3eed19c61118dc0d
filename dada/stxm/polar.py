"""Each pixel's radius and azimuth about the beam centre, and the radius and sector bins channels build
from them, exactly as the float64 numpy formulas give them, in nogil passes over rows on the node's cores.

Exact means bit for bit: a pixel on a bin's edge falls on the same side whichever code computes it. The
radius is ``math.hypot`` (the C library's, which ``np.hypot`` calls too). The azimuth stays numpy's
``arctan2`` (numpy may use SIMD routines whose last bit differs from the C library's); only its wrap into
[0, 2π), which costs numpy three times the arctan2 itself, and the bins are computed here, with the same
operations in the same order as the numpy formulas they replace (numba does not reassociate or fuse
float64 operations unless asked to).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dada.stxm.parts import in_parts

BLOCK_ROWS = 16  # rows of azimuth at a time: 16 × 2070 float64 is 265 KiB, in L2 cache


def kernels():
    """The numba kernels, imported when first needed: a front imports this module (through the channels)
    but never bins pixels, and numba alone is some 60 MB of a process's resident memory."""
    from dada.stxm import polar_kernels

    return polar_kernels


def _arctan2_rows(y: np.ndarray, x: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    np.arctan2(y[lo:hi], x, out=out[lo:hi])
    kernels().wrap(out, lo, hi)


def radius(shape: tuple[int, int], cx: float, cy: float) -> np.ndarray:
    """np.hypot(col - cx, row - cy) per pixel, float64 (H, W)."""
    out = np.empty(shape)
    in_parts(kernels().radius_part, shape[0], cx, cy, out, per=shape[1])
    return out


def angle(shape: tuple[int, int], cx: float, cy: float) -> np.ndarray:
    """np.mod(np.arctan2(row - cy, col - cx), 2π) per pixel, float64 (H, W)."""
    y = np.arange(shape[0], dtype=np.float64)[:, None] - cy
    x = np.arange(shape[1], dtype=np.float64)[None, :] - cx
    out = np.empty(shape)
    in_parts(_arctan2_rows, shape[0], y, x, out, per=shape[1])
    return out


def _sector_rows(y, x, r, rmin, rmax, n, out, lo, hi):
    """The azimuth a block of rows at a time, in cache, never a frame of it in memory."""
    a = np.empty((BLOCK_ROWS, x.shape[1]))
    for i in range(lo, hi, BLOCK_ROWS):
        j = min(hi, i + BLOCK_ROWS)
        np.arctan2(y[i:j], x, out=a[:j - i])
        kernels().block_sectors(a[:j - i], r[i:j], rmin, rmax, n, out[i:j])


def _bins(kernel, first: np.ndarray, *args: object) -> np.ndarray:
    out = np.empty(first.shape, dtype=np.int32)
    in_parts(kernel, first.size, *args, out.reshape(-1))
    return out


def _flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def rings(r: np.ndarray, edges: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    """``labels[k]`` where edges[k] <= r < edges[k + 1] (two or three increasing edges), -1 elsewhere: int32
    like r. The bins of discs and annuli: ``rings(r, (-inf, rmin, rmax), (1, 0))`` is
    ``np.where(r < rmin, 1, np.where(r < rmax, 0, -1))``."""
    return _bins(kernels().rings_part, r, _flat(r), *ring_edges(edges, labels))


def ring_edges(edges: Sequence[float], labels: Sequence[int]) -> tuple[float, float, float, int, int]:
    """(e0, e1, e2, l0, l1) of :func:`rings`: one ring's upper edge twice."""
    e = [float(x) for x in edges]
    if len(e) not in (2, 3) or len(labels) != len(e) - 1 or not (np.diff(e) > 0).all():
        raise ValueError(f"rings takes two or three increasing edges, one more than labels: {edges}, {labels}")
    if len(e) == 2:
        e, labels = [*e, e[1]], [*labels, labels[0]]
    return e[0], e[1], e[2], int(labels[0]), int(labels[1])


def sectors(r: np.ndarray, cx: float, cy: float, rmin: float, rmax: float, n: int) -> np.ndarray:
    """On the ring rmin <= r < rmax, ``min(int32(angle / (2π) · n), n - 1)`` with the azimuth ``angle`` as
    :func:`angle` gives it; -1 off the ring. int32 (H, W) like r."""
    y = np.arange(r.shape[0], dtype=np.float64)[:, None] - cy
    x = np.arange(r.shape[1], dtype=np.float64)[None, :] - cx
    out = np.empty(r.shape, dtype=np.int32)
    in_parts(_sector_rows, r.shape[0], y, x, np.ascontiguousarray(r, dtype=np.float64), float(rmin), float(rmax),
             int(n), out, per=r.shape[1])
    return out


def shells(u: np.ndarray, e0: float, e1: float, n: int) -> np.ndarray:
    """``floor((u - e0) / (e1 - e0) · n)`` where e0 <= u < e1 and it lies in 0..n-1; -1 elsewhere."""
    return _bins(kernels().shells_part, u, _flat(u), float(e0), float(e1), int(n))
