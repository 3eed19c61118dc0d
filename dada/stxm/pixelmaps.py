"""Every requested channel's pixel bins fused into the pixel classes the kernels walk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

    @property
    def nclasses(self) -> int:
        return self.cls_bins.shape[0]

    @property
    def kernel(self) -> tuple:
        """The maps as the kernels take them (see ``kernels``)."""
        return self.cls, self.mom_end, self.cls_bins, self.mom_cols, self.want, self.width, self.first, self.last


def fuse(bins: Sequence[Bins], geo: BeamGeometry) -> PixelMaps:
    offsets = [0]
    cols = []
    for b in bins:
        idx = np.where(geo.good & (b.index >= 0), b.index + offsets[-1], -1).astype(np.int32).ravel()
        cols.append(idx)
        offsets.append(offsets[-1] + b.count)
    lut = np.stack(cols, axis=1)
    used = np.flatnonzero((lut >= 0).any(axis=1))
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    # One int64 key per pixel (mixed radix over the channels' bins, -1 -> 0), so classes come from a 1-D
    # unique: sorting rows with np.unique(axis=0) would take a second for a 1 Mpixel frame.
    key = np.zeros(lut.shape[0], dtype=np.int64)
    for k in range(len(bins)):
        key = key * (bins[k].count + 1) + (lut[:, k] - offsets[k] + 1) * (lut[:, k] >= 0)
    top = int(np.prod([b.count + 1 for b in bins], dtype=np.float64))
    if top <= 1 << 26:  # a dense table of keys: linear time, no sort
        seen = np.zeros(top, dtype=bool)
        seen[0] = True  # class 0 is "no bin anywhere", even when every pixel has one
        seen[key] = True
        keys = np.flatnonzero(seen)
        rank = np.cumsum(seen, dtype=np.int64) - 1
        cls = rank[key]
    else:
        keys, inverse = np.unique(np.concatenate([[0], key]), return_inverse=True)
        cls = inverse.ravel()[1:]
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
    cls = renumber[cls].astype(np.uint8 if keys.size <= 256 else np.uint16 if keys.size <= 65536 else np.int32)
    # Channels that take moments first among the columns too: their bins alone get Σv·x, Σv·y.
    columns = np.concatenate([np.flatnonzero(mom), np.flatnonzero(~mom)])
    combos = combos[order][:, columns]
    mom_end = 1 + int(takes_moments[1:].sum())
    static = np.bincount(lut[lut >= 0], minlength=offsets[-1]).astype(np.float64)
    want = np.packbits(cls != 0, bitorder="little")
    want = np.concatenate([want, np.zeros(-want.size % 8, dtype=np.uint8)]).view("<u8").astype(np.uint64)
    return PixelMaps(cls, np.ascontiguousarray(combos), mom_end, int(mom.sum()), want, geo.shape[1], static,
                     tuple(offsets), first, last)
