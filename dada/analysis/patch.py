"""Patch selection and pixel validity shared by the routes that read many frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from dada.params import Param
from dada.selection import Span
from dada.sources.scan import Scan

MASK = Param("mask", "Exclude pixels flagged by the detector's pixel mask or at/above the count cutoff.",
             type="boolean", default=True)

ALL = Span(None, None)


def select(scan: Scan, args: dict[str, Any]) -> tuple[np.ndarray, range, range]:
    """Frame numbers of the selected patch as a (lines, points) array, with the two ranges."""
    grid = scan.grid_for(args.get("grid"))
    vert = (args.get("vert") or ALL).resolve("vert", grid.vert)
    horz = (args.get("horz") or ALL).resolve("horz", grid.horz)
    return grid.patch(vert, horz), vert, horz


def select_or_all(scan: Scan, args: dict[str, Any]) -> np.ndarray:
    """Like :func:`select`, but with no selection and no grid given, every frame (1-D)."""
    if args.get("vert") is None and args.get("horz") is None and args.get("grid") is None:
        return np.arange(scan.expected_frames or scan.nframes, dtype=np.int64)
    return select(scan, args)[0]


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


def provenance(scan: Scan, frames: np.ndarray) -> dict[str, Any]:
    return {
        "scan": scan.name,
        "scan_identity": scan.identity,
        "frames_selected": int(frames.size),
    }
