"""Every requested channel's pixel bins fused into the pixel classes the kernels walk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dada.stxm import classkeys
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
    # classes ext[0]..ext[1]-1 take max and Σv²; None when no channel needs them: a type of its own, so numba
    # compiles the kernels without that per-pixel test (it cost ~5 % on sparse frames)
    ext: tuple[int, int] | None
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


def check_accumulators(accumulators: Sequence[Sequence[str]]) -> None:
    for acc in accumulators:
        if set(acc) - set(ACCUMULATORS):
            raise ValueError(f"unknown accumulators {sorted(set(acc) - set(ACCUMULATORS))}; the kernels know "
                             f"{', '.join(ACCUMULATORS)}")


class Layout(NamedTuple):
    """The order of a pass's classes and channel columns, from the keys seen (per class, no pixel)."""

    renumber: np.ndarray  # per key seen (in increasing order), its class
    narrow: type  # the class dtype
    combos: np.ndarray  # (nclasses, K) int32 global bin per class and column, or -1
    mom_end: int
    ext: tuple[int, int] | None  # the classes taking max and Σv², or None
    cols: tuple[int, int, int]  # mom_cols, ext_col_start, ext_col_end


def layout(keys: np.ndarray, counts: np.ndarray, accumulators: Sequence[Sequence[str]]) -> Layout:
    """Classes ordered [0][first moments only][both][max and Σv² only][neither], columns likewise."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    combos = np.empty((keys.size, counts.size), dtype=np.int32)
    rest = keys.copy()
    for k in reversed(range(counts.size)):
        rest, digit = np.divmod(rest, counts[k] + 1)
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
    col_rank = np.where(mom, np.where(ext, 1, 0), np.where(ext, 2, 3))
    counts_of = np.bincount(rank[1:], minlength=4)
    col_counts = np.bincount(col_rank, minlength=4)
    ext_classes = (1 + int(counts_of[0]), 1 + int(counts_of[:3].sum())) if ext.any() else None
    cols = (int(col_counts[:2].sum()), int(col_counts[0]), int(col_counts[:3].sum()))
    combos = np.ascontiguousarray(combos[order][:, np.argsort(col_rank, kind="stable")])
    return Layout(renumber, narrow, combos, 1 + int(counts_of[:2].sum()), ext_classes, cols)


def assemble(lay: Layout, cls: np.ndarray, cls_pixels: np.ndarray, static: np.ndarray, want: np.ndarray,
             width: int, first: int, last: int, counts: np.ndarray, accumulators: Sequence[Sequence[str]]
             ) -> PixelMaps:
    """The pixel maps from the per-pixel passes' results and the layout of the classes."""
    has_ext = lay.ext is not None
    k = KernelMaps(cls, lay.combos, cls_pixels, want, width, first, last, lay.mom_end, lay.ext, *lay.cols,
                   5 if has_ext else 3, 7 if has_ext else 4)
    offsets = (0, *(int(o) for o in np.cumsum(counts)))
    declared = tuple(("count", *(a for a in ACCUMULATORS if a != "count" and a in set(acc))) for acc in accumulators)
    return PixelMaps(k, static, offsets, declared)


def fuse(bins: Sequence[Bins], accumulators: Sequence[Sequence[str]], geo: BeamGeometry) -> PixelMaps:
    """Fuse the channels' bins (with what each accumulates per bin) into the pixel classes of one pass."""
    check_accumulators(accumulators)
    counts = np.array([b.count for b in bins], dtype=np.int64)
    top = int(np.prod(counts + 1, dtype=np.float64))
    dense = top <= 1 << 26  # a dense table of keys: linear time, no sort
    seen = np.zeros(top if dense else 1, dtype=np.bool_)
    key, first, last = classkeys.keys(bins, counts, np.ascontiguousarray(geo.good).reshape(-1), seen)
    if dense:
        seen[0] = True  # class 0 is "no bin anywhere", even when every pixel has one
        keys = np.flatnonzero(seen)
        table, code = np.cumsum(seen, dtype=np.int64) - 1, key  # the class of every key, then of every pixel
    else:
        keys = np.unique(np.concatenate([[0], key]))
        table, code = np.arange(keys.size), np.searchsorted(keys, key)
    lay = layout(keys, counts, accumulators)
    cls, cls_pixels, want = classkeys.classes(code, lay.renumber.astype(lay.narrow)[table], keys.size)
    # A bin's valid pixels are those of the classes that hold it (masked pixels are in class 0, which holds none).
    static = np.zeros(int(counts.sum()))
    for col in range(lay.combos.shape[1]):
        has = lay.combos[:, col] >= 0
        static += np.bincount(lay.combos[has, col], weights=cls_pixels[has], minlength=static.size)
    return assemble(lay, cls, cls_pixels, static, want, geo.shape[1], first, last, counts, accumulators)
