"""The per-pixel passes of fusing channels' bins into pixel classes, in nogil parts on the node's cores.

Fusing is a few linear passes over the frame (a key per pixel from every channel's bin, then its class
and the bit of the wanted-pixel mask): on a 4 Mpixel detector numpy's version of them (a stacked copy of
every channel's bins, fancy indexing, packbits over a temporary) cost more than computing the bins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from dada.stxm.channel import Bins
from dada.stxm.parts import in_parts
from dada.stxm.polarbins import PolarBins, rule_keys

GROUP = 4  # channels whose digits one pass adds: one pass for the built-in four


@numba.njit(nogil=True, cache=True)
def _digits(i0, i1, i2, i3, weights, key, first, last, good, seen, lo, hi):
    """Up to four channels' bins added to every pixel's key as their mixed-radix digits (bin + 1, 0 for none)
    times the digits' weights (0 for an unused slot). On the ``last`` pass a masked pixel's key becomes 0
    ("no bin anywhere") and the keys seen are marked in the dense table ``seen`` (when it has more than one
    entry; 0 is always marked), without a branch."""
    w0, w1, w2, w3 = weights[0], weights[1], weights[2], weights[3]
    mark = last and seen.size > 1
    for p in range(lo, hi):
        k = 0 if first else np.int64(key[p])
        k += (i0[p] + 1) * w0 + (i1[p] + 1) * w1 + (i2[p] + 1) * w2 + (i3[p] + 1) * w3
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


def keys(bins: Sequence[Bins], counts: np.ndarray, good: np.ndarray, seen: np.ndarray
         ) -> tuple[np.ndarray, int, int]:
    """Per pixel its class key (mixed radix over the channels' bins, digit 0 for none, 0 for masked pixels),
    with the keys seen marked in ``seen`` when it is a dense table; and the first pixel with a nonzero key
    and one past the last (0, 0 when none). Bins that are rules of the radius about the pixel maps' centre
    (``polarbins``) are added in one pass; the others from their index, up to four per pass."""
    n = good.size
    top = np.prod(counts + 1, dtype=np.float64)
    key = np.empty(n, dtype=np.uint16 if top <= 2**16 else np.int32 if top < 2**31 else np.int64)  # less to move
    weights = np.concatenate([np.cumprod((counts + 1)[:0:-1])[::-1], [1]]).astype(np.int64)
    centres = {b.centre for b in bins if isinstance(b, PolarBins)}
    rules = [c for c, b in enumerate(bins) if isinstance(b, PolarBins) and len(centres) == 1]
    rest = [c for c in range(len(bins)) if c not in rules]
    if rules:
        shape, cx, cy = centres.pop()
        last = not rest
        rule_keys(shape, cx, cy, [bins[c].rule for c in rules], weights[rules], 0, key, good if last else None,
                  seen if last else None)
    elif not rest:
        key[:] = 0
    for g in range(0, len(rest), GROUP):
        group = rest[g:g + GROUP]
        flat = [np.ascontiguousarray(bins[c].index, dtype=np.int32).reshape(-1) for c in group]
        w = np.zeros(GROUP, dtype=np.int64)
        w[:len(group)] = weights[group]
        flat += [flat[0]] * (GROUP - len(group))  # weight 0: adds nothing
        in_parts(_digits, n, *flat, w, key, g == 0 and not rules, g + GROUP >= len(rest), good, seen)
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
