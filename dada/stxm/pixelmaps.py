"""Every requested channel's pixel bins fused into the pixel classes the kernels walk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Bins


@dataclass(frozen=True)
class PixelMaps:
    """Every requested channel's bins fused into pixel classes the kernel walks.

    A class is a distinct combination of bins (one per channel) that pixels fall in; the hot loop
    adds each pixel to its class only (one lookup, one add), and classes are spread into bins once
    per frame. Class 0 is "no bin anywhere".
    """

    cls: np.ndarray  # (H*W,) class per pixel: uint8/uint16/int32, the smallest that holds them (cache)
    cls_bins: np.ndarray  # (nclasses, K) int32 global bin per class and channel (those needing Σv·x, Σv·y first), or -1
    mom_end: int  # classes 1..mom_end-1 feed a channel that needs Σv·x, Σv·y
    mom_cols: int  # how many channels need them: the first columns of cls_bins
    want: np.ndarray  # (ceil(H*W / 64),) uint64: bit p % 64 of word p // 64 set where pixel p has a class
    width: int  # frame columns
    static_valid: np.ndarray  # (nbins,) float64 valid pixels per bin before per-frame exclusions
    offsets: tuple[int, ...]  # first global bin of each channel, plus the total at the end
    first: int  # first flat pixel any channel needs
    last: int  # one past the last
    moments: tuple[bool, ...]  # per channel, whether it takes Σv·x, Σv·y (its partials carry them)

    @property
    def nclasses(self) -> int:
        return self.cls_bins.shape[0]

    @property
    def kernel(self) -> tuple:
        """The maps as the kernels take them (see ``kernels``)."""
        return self.cls, self.mom_end, self.cls_bins, self.mom_cols, self.want, self.width, self.first, self.last


@numba.njit(nogil=True, cache=True)
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


def fuse(bins: Sequence[Bins], geo: BeamGeometry) -> PixelMaps:
    counts = np.array([b.count for b in bins], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    index = np.stack([np.asarray(b.index, dtype=np.int32).ravel() for b in bins])
    top = int(np.prod(counts + 1, dtype=np.float64))
    dense = top <= 1 << 26  # a dense table of keys: linear time, no sort
    seen = np.zeros(top if dense else 1, dtype=np.bool_)
    static = np.zeros(int(offsets[-1]), dtype=np.int64)
    key = _keys(index, counts, offsets, np.ascontiguousarray(geo.good).ravel(), seen, static)
    used = np.flatnonzero(key)
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    if dense:
        seen[0] = True  # class 0 is "no bin anywhere", even when every pixel has one
        keys = np.flatnonzero(seen)
        table, at = np.cumsum(seen, dtype=np.int64) - 1, key  # the class of every key, then of every pixel
    else:
        keys, inverse = np.unique(np.concatenate([[0], key]), return_inverse=True)
        table, at = inverse.ravel()[1:], slice(None)
    combos = np.empty((keys.size, len(bins)), dtype=np.int32)
    rest = keys.copy()
    for k in reversed(range(len(bins))):
        rest, digit = np.divmod(rest, bins[k].count + 1)
        combos[:, k] = np.where(digit > 0, digit - 1 + offsets[k], -1)
    mom = np.array([b.moments for b in bins])
    takes_moments = ((combos >= 0) & mom[None, :]).any(axis=1)
    # Classes that take moments first (after class 0), so the kernels test a bound, not a table.
    order = np.concatenate([[0], 1 + np.flatnonzero(takes_moments[1:]), 1 + np.flatnonzero(~takes_moments[1:])])
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.size)
    narrow = np.uint8 if keys.size <= 256 else np.uint16 if keys.size <= 65536 else np.int32
    cls = renumber.astype(narrow)[table][at]
    # Channels that take moments first among the columns too: their bins alone get Σv·x, Σv·y.
    columns = np.concatenate([np.flatnonzero(mom), np.flatnonzero(~mom)])
    combos = combos[order][:, columns]
    mom_end = 1 + int(takes_moments[1:].sum())
    want = np.packbits(cls != 0, bitorder="little")
    want = np.concatenate([want, np.zeros(-want.size % 8, dtype=np.uint8)]).view("<u8").astype(np.uint64)
    return PixelMaps(cls, np.ascontiguousarray(combos), mom_end, int(mom.sum()), want, geo.shape[1],
                     static.astype(np.float64), tuple(int(o) for o in offsets), first, last,
                     tuple(bool(b.moments) for b in bins))
