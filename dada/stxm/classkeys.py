"""The per-pixel passes of fusing channels' bins into pixel classes, in nogil parts on the node's cores.

Fusing is a few linear passes over the frame (a key per pixel from every channel's bin, then its class
and the bit of the wanted-pixel mask): on a 4 Mpixel detector numpy's version of them (a stacked copy of
every channel's bins, fancy indexing, packbits over a temporary) cost more than computing the bins.
"""

from __future__ import annotations

import numba
import numpy as np

from dada.stxm.parts import in_parts


@numba.njit(nogil=True, cache=True)
def _digit(index, radix, key, first, lo, hi):
    """A channel's bin as the next mixed-radix digit of every pixel's key (0 for none). Masks wait for the
    last digit: no branch, so the loop vectorises."""
    for p in range(lo, hi):
        key[p] = (0 if first else np.int64(key[p]) * radix) + index[p] + 1


@numba.njit(nogil=True, cache=True)
def _last_digit(index, radix, good, key, alone, seen, lo, hi):
    """The last channel's digit, a masked pixel's key 0 ("no bin anywhere"), the keys seen marked in the
    dense table ``seen`` (when it has more than one entry); returns the first and one past the last pixel
    with a nonzero key in lo..hi (hi, lo when none)."""
    dense = seen.size > 1
    first, last = hi, lo
    for p in range(lo, hi):
        k = ((0 if alone else np.int64(key[p]) * radix) + index[p] + 1) * np.int64(good[p])
        key[p] = k
        if k != 0:
            if dense:
                seen[k] = True
            first = min(first, p)
            last = p + 1
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
    for c, index in enumerate(indexes[:-1]):
        in_parts(_digit, n, index, int(counts[c] + 1), key, c == 0)
    spans = in_parts(_last_digit, n, indexes[-1], int(counts[-1] + 1), good, key, len(indexes) == 1, seen)
    first = min((f for f, last in spans if last > f), default=0)
    last = max((last for f, last in spans if last > f), default=0)
    return key, first, last


def classes(code: np.ndarray, table: np.ndarray, nclasses: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``table[code]`` per pixel (table's dtype), the pixels of each class (float64), and the pixels whose
    class is not 0 as bits (bit p % 64 of word p // 64)."""
    n = code.size
    cls = np.empty(n, dtype=table.dtype)
    want = np.empty((n + 63) // 64, dtype=np.uint64)
    pixels = in_parts(_classes, n, code, table, nclasses, cls, want, align=64)
    return cls, np.sum(pixels, axis=0).astype(np.float64), want
