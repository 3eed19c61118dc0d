"""Pixel validity and binning for the raw-frame routes (frame, sum, composite)."""

from __future__ import annotations

import numpy as np

from dada.params import Param
from dada.sources.scan import Scan

MASK = Param("mask", "Exclude pixels flagged by the detector's pixel mask or at/above the count cutoff.",
             type="boolean", default=True)

def valid_pixels(scan: Scan, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """True where a pixel of this frame may contribute: not masked, below the count cutoff."""
    good = np.logical_not(scan.bad_pixels(), out=out)
    cutoff = scan.geometry.saturation
    if cutoff is not None:
        good &= frame < cutoff
    return good


def bin_shape(shape: tuple[int, int], b: int) -> tuple[int, int]:
    return shape[0] // b, shape[1] // b


def bin_sum(a: np.ndarray, b: int) -> np.ndarray:
    """Sum over b×b blocks; the rows and columns left over at the far edges are dropped."""
    h, w = bin_shape(a.shape, b)
    return a[: h * b, : w * b].reshape(h, b, w, b).sum(axis=(1, 3))
