"""The gridding kernel of the filtered back-projection (``fbp``), in numba: its own module, so that a
daemon loads numba only when it reconstructs (a front that never does keeps some 60 MB less resident).
"""

from __future__ import annotations

import numba
import numpy as np


def threads() -> int:
    """Threads numba runs ``spread`` on."""
    return numba.get_num_threads()


@numba.njit(parallel=True, cache=True, nogil=True)
def spread(values, cos_t, sin_t, grid, table, width, per_cell, nbands):
    """Add each sample values[a, m] (frequency m along angle a) and its Hermitian mirror onto the
    half-plane grid (columns 0 .. g/2, what a real inverse FFT needs).

    Parallel over bands of grid rows (outputs): no two threads write the same cell.
    """
    g = grid.shape[0]
    ncol = grid.shape[1]
    half = width / 2.0
    nw = int(width) + 1
    nm = values.shape[1]
    rows_per_band = (g + nbands - 1) // nbands
    for band in numba.prange(nbands):
        r0 = band * rows_per_band
        r1 = min(g, r0 + rows_per_band)
        wu = np.empty(nw, dtype=np.float32)
        for a in range(values.shape[0]):
            ca = cos_t[a]
            sa = sin_t[a]
            for m in range(nm):
                val = values[a, m]
                for sign in (1.0, -1.0):
                    if sign < 0 and (m == 0 or 2 * m == g):
                        continue
                    u = sign * m * ca
                    lo_u = int(np.ceil(u - half))
                    hi_u = min(int(np.floor(u + half)), ncol - 1)
                    if hi_u < 0:
                        continue  # wholly in the mirrored half-plane
                    lo_u = max(lo_u, 0)
                    v = sign * m * sa
                    lo_v = int(np.ceil(v - half))
                    hi_v = int(np.floor(v + half))
                    inside = False
                    for kv in range(lo_v, hi_v + 1):
                        row = kv % g
                        if r0 <= row < r1:
                            inside = True
                    if not inside:
                        continue
                    for i in range(hi_u - lo_u + 1):
                        wu[i] = table[int(abs(lo_u + i - u) * per_cell)]
                    vv = val if sign > 0 else np.conj(val)
                    for kv in range(lo_v, hi_v + 1):
                        row = kv % g
                        if row < r0 or row >= r1:
                            continue
                        cv = vv * table[int(abs(kv - v) * per_cell)]
                        for i in range(hi_u - lo_u + 1):
                            grid[row, lo_u + i] += cv * wu[i]
