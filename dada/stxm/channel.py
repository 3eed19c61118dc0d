"""What an STXM analysis declares: its parameters, its pixel bins, how bin moments become maps.

This is the whole interface an analysis author reads. Every STXM channel reduces a frame to sums
over *bins* of pixels (the darkfield annulus, the DPC disc, azimuthal sectors, radial shells): a
channel says which bin each pixel falls in (:meth:`Channel.bins`, -1 for none) and turns per-point
bin :class:`Moments` into its maps (:meth:`Channel.finalize`). The engine (``engine.py``, with its
kernels in ``kernels.py``) owns reading, decoding, threads and buffers.

Partial results are the per-point moments: a node answers a block of points with them, and the
front glues the blocks of a selection and finalises once. How a channel's answer merges across
blocks follows from that: per-point outputs are placed per point, ``reduce=sum`` style outputs sum
the selection's moments inside ``finalize``, and a whole-scan reference (:meth:`Channel.whole_scan`,
e.g. DPC's median) is derived from the moments of every block of the scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dada.params import Param
from dada.stxm.beam import BeamGeometry
from dada.views import Drawing, Overlay

SUM, SX, SY = 0, 1, 2  # moment slots


@dataclass(frozen=True)
class Bins:
    """A channel's pixel map: bin index per pixel (-1: none), how many bins, whether it needs Σv·x, Σv·y."""

    index: np.ndarray  # (H, W) int32
    count: int
    moments: bool = False


class Channel:
    """An STXM analysis: its parameters, its pixel bins and how bin moments become maps."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    doc: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    outputs: ClassVar[tuple[str, ...]]  # output names; the first is the default for single-array formats
    overlays: ClassVar[tuple[Overlay, ...]] = ()  # its pixel bins' shapes, drawn on frames by the GUI

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        """Raise BadParameter for impossible parameters (before any frame is read)."""

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        raise NotImplementedError

    def output_shape(self, args: dict[str, Any], points: tuple[int, int]) -> dict[str, tuple[int, ...]]:
        """Shape of every output for a patch of ``points`` = (lines, points per line)."""
        return {name: points for name in self.outputs}

    def finalize(self, m: Moments, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        """Per-point outputs, flat over points (npoints last); ``context`` is :meth:`whole_scan`'s answer."""
        raise NotImplementedError

    def needs_whole_scan(self, args: dict[str, Any]) -> bool:
        """Whether a patch's answer depends on the whole scan (e.g. dpc's median reference)."""
        return False

    def whole_scan(self, m: Moments) -> Any:
        """Reduce the whole scan's moments to what finalize needs as context."""
        return None

    def plane(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> np.ndarray | None:
        """The 2-D view png and csv show of an output, or None when it has none."""
        a = arrays[output]
        return a if a.ndim == 2 else None

    def drawing(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> Drawing | None:
        """A png of the channel's own, when a colormap does not fit (e.g. orientation as hue)."""
        return None

    def unit(self, output: str, args: dict[str, Any]) -> str | None:
        """Unit of the values an output's 2-D view shows, for the png's legend ("" dimensionless, None unknown)."""
        return None



@dataclass
class Moments:
    """Per point and bin: Σv (and Σv·x, Σv·y about the beam centre, for bins that take them) and
    valid-pixel counts."""

    values: np.ndarray  # (npoints, nbins, slots) float64: slots 3 (Σv, Σv·x, Σv·y) where bins take moments, else 1
    valid: np.ndarray  # (npoints, nbins) integer counts as float64 or float32 (exact): sum them in float64
    present: np.ndarray  # (npoints,) bool: frame existed

    def slice(self, lo: int, hi: int, slots: int = 3) -> Moments:
        return Moments(self.values[:, lo:hi, :slots], self.valid[:, lo:hi], self.present)

