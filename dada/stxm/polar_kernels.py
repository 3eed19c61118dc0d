"""The numba kernels of ``polar``: radius, the azimuth's wrap, and the ring, sector and shell bins, each over a
part of the frame (``lo``..``hi``) so that ``parts`` runs them on every core; and of ``polarbins``: every rule's
bin added to the class keys in one pass. Same operations in the same order
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


# The polar rules' single pass: each rule a row [kind, e0, e1, e2, l0, l1, n, eps] of float64.
RINGS, SECTORS, SHELLS = 0, 1, 2
HALF_PI, PI = np.pi / 2, np.pi
# atan(q) ≈ q·P(q²) on [0, 1], P fitted by least squares: within 2.7e-7 rad of atan (``tests/test_pixelmaps``
# holds it to numpy's arctan2 on every direction of a frame); ANGLE_TOL bounds it with a margin.
ATAN = (0.9999966342941838, -0.3331830143346226, 0.19813199515207486, -0.13247467497205273, 0.07981016611308706,
        -0.03372501480654268, 0.006842312794508207)
ANGLE_TOL = 1e-6
R_DOUBT = 1e-14  # relative: sqrt(x² + y²) is within 2 ulp (4.4e-16) of math.hypot, correctly rounded or nearly


@numba.njit(nogil=True, cache=True, inline="always")
def approx_angle(x, y):
    """The azimuth of (x, y) in [0, 2π), within ANGLE_TOL of numpy's arctan2 wrapped as ``sectors`` wraps it:
    a polynomial without a branch, which a loop vectorises (the C library's atan2, whose last bits numpy's do
    not follow anyway, cost four times the rest of the pass)."""
    ax, ay = abs(x), abs(y)
    hi = ax if ax > ay else ay
    lo = ay if ax > ay else ax
    q = lo / (hi if hi > 1e-300 else 1e-300)  # 0 at the centre itself
    s = q * q
    a = q * (ATAN[0] + s * (ATAN[1] + s * (ATAN[2] + s * (ATAN[3] + s * (ATAN[4] + s * (ATAN[5] + s * ATAN[6]))))))
    a = HALF_PI - a if ay > ax else a
    a = PI - a if x < 0 else a
    return TWO_PI - a if y < 0 else a


@numba.njit(nogil=True, cache=True, inline="always")
def straddles(v, e):
    """Whether the radius ``math.hypot`` gives may lie on the other side of edge ``e`` than ``v``, the radius by
    sqrt(x² + y²) (a few ulp apart at most; R_DOUBT allows a hundred)."""
    return (v * (1.0 - R_DOUBT) < e) & (e <= v * (1.0 + R_DOUBT))


@numba.njit(nogil=True, cache=True)
def row_keys(rules, weights, xs, ys, r, k, doubt):
    """A row's keys, Σ (bin + 1) · weight over the rules, for pixels at ``xs``, ``ys`` about the centre and
    radius ``r`` = sqrt(x² + y²), each rule's bin as ``rings_part``, ``block_sectors`` and ``shells_part``
    give it, but for the pixels in ``doubt``: where hypot's radius may be in another bin (``straddles``), or
    numpy's azimuth (the polynomial's lies within the rule's eps of a sector's edge); ``pixel_key`` does them.
    One rule at a time over the row, and no call: loops that vectorise (hypot and atan2 do not)."""
    m = xs.size
    k[:] = 0
    doubt[:] = False
    for c in range(rules.shape[0]):
        kind, e0, e1, e2 = rules[c, 0], rules[c, 1], rules[c, 2], rules[c, 3]
        w = weights[c]
        if kind == RINGS:
            l0, l1 = (np.int64(rules[c, 4]) + 1) * w, (np.int64(rules[c, 5]) + 1) * w
            for j in range(m):
                v = r[j]
                k[j] += (l0 if v < e1 else l1) if (e0 <= v) & (v < e2) else 0
                doubt[j] |= straddles(v, e0) | straddles(v, e1) | straddles(v, e2)
        elif kind == SHELLS:
            n = np.int64(rules[c, 6])
            width = e1 - e0
            scale = n / width
            for j in range(m):
                v = r[j]
                t = (v - e0) / width * n
                b = math.floor(t)
                k[j] += (np.int64(b) + 1) * w if (e0 <= v) & (v < e1) & (b >= 0) & (b < n) else 0
                # hypot's t differs by at most R_DOUBT · v · n / width from a few ulp of t: within tol of it
                tol = R_DOUBT * (v * scale + abs(t) + 1.0)
                doubt[j] |= (math.floor(t - tol) != math.floor(t + tol)) | straddles(v, e0) | straddles(v, e1)
        else:  # SECTORS on the ring e0 <= r < e1
            n = np.int64(rules[c, 6])
            eps, scale = rules[c, 7], n / TWO_PI
            for j in range(m):
                v = r[j]
                t = approx_angle(xs[j], ys[j]) * scale
                f = t - math.floor(t)
                on = (e0 <= v) & (v < e1)
                doubt[j] |= (on & ((f < eps) | (f > 1.0 - eps))) | straddles(v, e0) | straddles(v, e1)
                b = np.int64(t)
                k[j] += ((b if b < n - 1 else n - 1) + 1) * w if on else 0


@numba.njit(nogil=True, cache=True)
def pixel_key(rules, weights, x, y, angle):
    """One pixel's key exactly: its radius by ``math.hypot``, its azimuth numpy's arctan2 ``angle``."""
    r = math.hypot(x, y)
    k = np.int64(0)
    for c in range(rules.shape[0]):
        kind, e0, e1, e2 = rules[c, 0], rules[c, 1], rules[c, 2], rules[c, 3]
        n = np.int64(rules[c, 6])
        d = -1
        if kind == RINGS:
            if e0 <= r < e2:
                d = np.int64(rules[c, 4]) if r < e1 else np.int64(rules[c, 5])
        elif kind == SHELLS:
            b = math.floor((r - e0) / (e1 - e0) * n)
            if e0 <= r < e1 and 0 <= b < n:
                d = np.int64(b)
        elif e0 <= r < e1:
            v = angle + TWO_PI if angle < 0 else angle
            d = min(np.int64(np.int32(v / TWO_PI * n)), n - 1)
        k += (d + 1) * weights[c]
    return k


@numba.njit(nogil=True, cache=True)
def rule_keys_part(cx, cy, width, rules, weights, base, good, last, seen, key, near, lo, hi):
    """Rows lo..hi of the flat ``key``: each pixel's key from ``row_keys`` plus ``base``; on the ``last`` pass a
    masked pixel's key is 0 and the keys seen are marked in the dense table ``seen`` (when it has more than one
    entry). The pixels in doubt are listed in ``near`` from lo · width on (neither marked nor final:
    ``rule_keys_fix`` does them); returns how many."""
    mark = last and seen.size > 1
    xs = np.arange(width) - cx
    ys = np.empty(width)
    r = np.empty(width)
    k = np.empty(width, dtype=np.int64)
    doubt = np.empty(width, dtype=np.bool_)
    count = 0
    for i in range(lo, hi):
        ys[:] = i - cy
        for j in range(width):
            r[j] = math.sqrt(xs[j] * xs[j] + ys[j] * ys[j])
        row_keys(rules, weights, xs, ys, r, k, doubt)
        row = i * width
        some = False
        for j in range(width):
            kept = good[row + j] if last else True
            v = (k[j] + base) * kept
            key[row + j] = v
            k[j] = 0 if doubt[j] else v  # what is marked seen: a pixel in doubt's key is not known yet
            some |= doubt[j] & kept
        if mark:
            for j in range(width):
                seen[k[j]] = True
        if some:
            for j in range(width):
                if doubt[j] and (good[row + j] or not last):
                    near[lo * width + count] = row + j
                    count += 1
    return count


@numba.njit(nogil=True, cache=True)
def rule_keys_fix(cx, cy, width, rules, weights, base, last, seen, key, near, angle):
    """The pixels ``near`` in doubt: their keys by ``pixel_key`` with numpy's arctan2 ``angle`` of each, marked
    in ``seen`` if ``last``."""
    mark = last and seen.size > 1
    for q in range(near.size):
        p = near[q]
        k = pixel_key(rules, weights, p % width - cx, p // width - cy, angle[q]) + base
        key[p] = k
        if mark:
            seen[k] = True
