"""The numba kernels of ``polar``: radius, the azimuth's wrap, and the ring, sector and shell bins, each over a
part of the frame (``lo``..``hi``) so that ``parts`` runs them on every core. Same operations in the same order
as the numpy formulas they replace (numba does not reassociate or fuse float64 operations unless asked to).
"""

from __future__ import annotations

import math

import numba
import numpy as np

TWO_PI = 2 * np.pi


@numba.njit(nogil=True, cache=True)
def radius_part(cx, cy, out, lo, hi):
    for i in range(lo, hi):
        y = i - cy
        for j in range(out.shape[1]):
            out[i, j] = math.hypot(j - cx, y)


@numba.njit(nogil=True, cache=True)
def wrap(a, lo, hi):
    """np.mod(a, 2π) for a = arctan2(...) in [-π, π]: fmod leaves it, a negative one gains 2π, a zero is +0."""
    for i in range(lo, hi):
        for j in range(a.shape[1]):
            v = a[i, j]
            a[i, j] = v + TWO_PI if v < 0 else (0.0 if v == 0 else v)


@numba.njit(nogil=True, cache=True)
def rings_part(r, e0, e1, e2, l0, l1, out, lo, hi):
    """l0 on e0 <= r < e1, l1 on e1 <= r < e2, -1 elsewhere (a loop over edges would not vectorise)."""
    for p in range(lo, hi):
        v = r[p]
        out[p] = (l0 if v < e1 else l1) if e0 <= v < e2 else -1


@numba.njit(nogil=True, cache=True)
def block_sectors(a, r, rmin, rmax, n, out):
    """Rows of arctan2 ``a`` wrapped as np.mod wraps them, then binned; r and out the same rows."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = a[i, j]
            v = v + TWO_PI if v < 0 else v
            out[i, j] = min(np.int32(v / TWO_PI * n), n - 1) if rmin <= r[i, j] < rmax else -1


@numba.njit(nogil=True, cache=True)
def shells_part(u, e0, e1, n, out, lo, hi):
    width = e1 - e0
    for p in range(lo, hi):
        v = u[p]
        k = math.floor((v - e0) / width * n)
        out[p] = np.int32(k) if e0 <= v < e1 and 0 <= k < n else -1
