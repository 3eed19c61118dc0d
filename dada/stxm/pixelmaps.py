"""Every requested channel's pixel bins fused into the pixel classes the kernels walk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import ACCUMULATORS, Bins

MOMENTS = frozenset({"sx", "sy"})  # taken together, by the classes of channels that declare either
EXTREMES = frozenset({"max", "sq"})  # likewise


class KernelMaps(NamedTuple):
    """A pass's pixel maps as the kernels take them (numba reads a named tuple's fields by name).

    Classes are ordered [0][first moments only][both][max and Σv² only][neither], and channels' columns
    of ``cls_bins`` likewise, so that which accumulators a class or a column takes is two bound tests,
    not a table lookup: a pass whose channels declare no max or Σv² runs the instructions it always ran.
    """

    cls: np.ndarray  # (H*W,) class per pixel: uint8/uint16/int32, the smallest that holds them (cache)
    cls_bins: np.ndarray  # (nclasses, K) int32 global bin per class and channel column, or -1
    cls_pixels: np.ndarray  # (nclasses,) float64 pixels of each class (all valid before per-frame exclusions)
    want: np.ndarray  # (ceil(H*W / 64),) uint64: bit p % 64 of word p // 64 set where pixel p has a class
    width: int  # frame columns
    first: int  # first flat pixel any channel needs
    last: int  # one past the last
    mom_end: int  # classes 1..mom_end-1 take Σv·x, Σv·y
    ext_start: int  # classes ext_start..ext_end-1 take max and Σv² (an empty range when no channel needs them)
    ext_end: int
    mom_cols: int  # columns 0..mom_cols-1 are channels taking Σv·x, Σv·y
    ext_col_start: int  # columns ext_col_start..ext_col_end-1 are channels taking max and Σv²
    ext_col_end: int
    slots: int  # float64 slots per bin of the kernels' values: Σv, Σv·x, Σv·y[, max, Σv²]
    acc_width: int  # columns of the per-class accumulator: Σv, Σv·x, Σv·y, saturated[, max, Σv², visited]


@dataclass(frozen=True)
class PixelMaps:
    """Every requested channel's bins fused into pixel classes the kernel walks.

    A class is a distinct combination of bins (one per channel) that pixels fall in; the hot loop
    adds each pixel to its class only (one lookup, one add), and classes are spread into bins once
    per frame. Class 0 is "no bin anywhere".
    """

    kernel: KernelMaps
    static_valid: np.ndarray  # (nbins,) float64 valid pixels per bin before per-frame exclusions
    offsets: tuple[int, ...]  # first global bin of each channel, plus the total at the end
    accumulators: tuple[tuple[str, ...], ...]  # per channel, what its partials carry (``count`` first)

    @property
    def nclasses(self) -> int:
        return self.kernel.cls_bins.shape[0]

    def new_acc(self) -> np.ndarray:
        """A thread's per-class accumulator, cleared (the kernels clear it again after every frame)."""
        acc = np.zeros((self.nclasses, self.kernel.acc_width))
        if self.kernel.acc_width > 4:
            acc[:, 4] = -np.inf
        return acc

    def new_values(self, n: int) -> np.ndarray:
        """Per point, bin and slot, what the kernels add into (a max starts at -inf)."""
        values = np.zeros((n, self.offsets[-1], self.kernel.slots))
        if self.kernel.slots > 3:
            values[..., 3] = -np.inf
        return values


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


def fuse(bins: Sequence[Bins], accumulators: Sequence[Sequence[str]], geo: BeamGeometry) -> PixelMaps:
    """Fuse the channels' bins (with what each accumulates per bin) into the pixel classes of one pass."""
    for acc in accumulators:
        if set(acc) - set(ACCUMULATORS):
            raise ValueError(f"unknown accumulators {sorted(set(acc) - set(ACCUMULATORS))}; the kernels know "
                             f"{', '.join(ACCUMULATORS)}")
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
    mom = np.array([bool(MOMENTS & set(a)) for a in accumulators])
    ext = np.array([bool(EXTREMES & set(a)) for a in accumulators])
    # Per class (and per channel column) its rank in [first moments only][both][extremes only][neither].
    takes_mom = ((combos >= 0) & mom[None, :]).any(axis=1)
    takes_ext = ((combos >= 0) & ext[None, :]).any(axis=1)
    rank = np.where(takes_mom, np.where(takes_ext, 1, 0), np.where(takes_ext, 2, 3))
    rank[0] = -1
    order = np.argsort(rank, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.size)
    narrow = np.uint8 if keys.size <= 256 else np.uint16 if keys.size <= 65536 else np.int32
    cls = renumber.astype(narrow)[table][at]
    col_rank = np.where(mom, np.where(ext, 1, 0), np.where(ext, 2, 3))
    columns = np.argsort(col_rank, kind="stable")
    combos = combos[order][:, columns]
    counts_of = np.bincount(rank[1:], minlength=4)
    col_counts = np.bincount(col_rank, minlength=4)
    has_ext = bool(ext.any())
    cls_pixels = np.bincount(cls.astype(np.int64), minlength=keys.size).astype(np.float64)
    want = np.packbits(cls != 0, bitorder="little")
    want = np.concatenate([want, np.zeros(-want.size % 8, dtype=np.uint8)]).view("<u8").astype(np.uint64)
    k = KernelMaps(cls, np.ascontiguousarray(combos), cls_pixels, want, geo.shape[1], first, last,
                   1 + int(counts_of[:2].sum()), 1 + int(counts_of[0]), 1 + int(counts_of[:3].sum()),
                   int(col_counts[:2].sum()), int(col_counts[0]), int(col_counts[:3].sum()),
                   5 if has_ext else 3, 7 if has_ext else 4)
    declared = tuple(("count", *(a for a in ACCUMULATORS if a != "count" and a in set(acc))) for acc in accumulators)
    return PixelMaps(k, static.astype(np.float64), tuple(int(o) for o in offsets), declared)
