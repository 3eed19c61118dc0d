"""The per-pixel passes of fusing channels' bins into pixel classes, in nogil parts on the node's cores.

Fusing is a few linear passes over the frame (a key per pixel from every channel's bin, then its class
and the bit of the wanted-pixel mask): on a 4 Mpixel detector numpy's version of them (a stacked copy of
every channel's bins, fancy indexing, packbits over a temporary) cost more than computing the bins.
"""

from __future__ import annotations

import numba
import numpy as np

from dada.stxm.parts import in_parts

GROUP = 4  # channels whose digits one pass adds: one pass for the built-in four


@numba.njit(nogil=True, cache=True)
def _digits(i0, i1, i2, i3, radices, key, first, last, good, seen, lo, hi):
    """Up to four channels' bins as the next mixed-radix digits of every pixel's key (0 for none; a slot
    whose radix is 1 adds nothing). On the ``last`` group a masked pixel's key becomes 0 ("no bin anywhere")
    and the keys seen are marked in the dense table ``seen`` (when it has more than one entry; 0 is always
    marked), without a branch."""
    r0, r1, r2, r3 = radices[0], radices[1], radices[2], radices[3]
    u0, u1, u2, u3 = r0 > 1, r1 > 1, r2 > 1, r3 > 1
    mark = last and seen.size > 1
    for p in range(lo, hi):
        k = 0 if first else np.int64(key[p])
        k = k * r0 + (i0[p] + 1) * u0
        k = k * r1 + (i1[p] + 1) * u1
        k = k * r2 + (i2[p] + 1) * u2
        k = k * r3 + (i3[p] + 1) * u3
        if last:
            k *= np.int64(good[p])
        if mark:
            seen[k] = True
        key[p] = k


@numba.njit(nogil=True, cache=True)
def _used(key):
    """The first pixel with a nonzero key and one past the last (0, 0 when none): a scan from each end."""
    n = key.size
    first = 0
    while first < n and key[first] == 0:
        first += 1
    if first == n:
        return 0, 0
    last = n
    while key[last - 1] == 0:
        last -= 1
    return first, last


@numba.njit(nogil=True, cache=True)
def _classes(code, table, nclasses, cls, want, lo, hi):
    """Every pixel's class ``table[code]`` and the wanted-pixel bits (lo a multiple of 64, so this part owns
    its words); returns the pixels of each class in lo..hi."""
    count = np.zeros(nclasses, dtype=np.int64)
    for w in range(lo // 64, (hi + 63) // 64):
        bits = np.uint64(0)
        for p in range(w * 64, min(hi, w * 64 + 64)):
            c = table[code[p]]
            cls[p] = c
            count[c] += 1
            if c != 0:
                bits |= np.uint64(1) << np.uint64(p - w * 64)
        want[w] = bits
    return count


def keys(indexes: list[np.ndarray], counts: np.ndarray, good: np.ndarray, seen: np.ndarray
         ) -> tuple[np.ndarray, int, int]:
    """Per pixel its class key (mixed radix over the channels' bins, digit 0 for none, 0 for masked pixels),
    with the keys seen marked in ``seen`` when it is a dense table; and the first pixel with a nonzero key
    and one past the last (0, 0 when none)."""
    n = good.size
    top = np.prod(counts + 1, dtype=np.float64)
    key = np.empty(n, dtype=np.uint16 if top <= 2**16 else np.int32 if top < 2**31 else np.int64)  # less to move
    if not indexes:
        key[:] = 0
        return key, 0, 0
    for g in range(0, len(indexes), GROUP):
        group = list(indexes[g:g + GROUP])
        radices = np.ones(GROUP, dtype=np.int64)
        radices[:len(group)] = counts[g:g + GROUP] + 1
        group += [group[0]] * (GROUP - len(group))  # radix 1: adds nothing
        in_parts(_digits, n, *group, radices, key, g == 0, g + GROUP >= len(indexes), good, seen)
    first, last = _used(key)
    return key, int(first), int(last)


def classes(code: np.ndarray, table: np.ndarray, nclasses: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``table[code]`` per pixel (table's dtype), the pixels of each class (float64), and the pixels whose
    class is not 0 as bits (bit p % 64 of word p // 64)."""
    n = code.size
    cls = np.empty(n, dtype=table.dtype)
    want = np.empty((n + 63) // 64, dtype=np.uint64)
    pixels = in_parts(_classes, n, code, table, nclasses, cls, want, align=64)
    return cls, np.sum(pixels, axis=0).astype(np.float64), want
