"""What an STXM analysis declares: its parameters, its pixel bins, the accumulators it needs per bin, and
how those become maps.

This is the whole interface an analysis author reads. Every STXM channel reduces a frame to a few
accumulators over *bins* of pixels (the darkfield annulus, the DPC disc, azimuthal sectors, radial
shells): a channel says which bin each pixel falls in (:meth:`Channel.bins`, -1 for none), which
accumulators it needs per bin (:attr:`Channel.accumulators`, from the closed set :data:`ACCUMULATORS`
the kernels implement once) and turns a per-point :class:`Partial` into its maps
(:meth:`Channel.finalize`). The engine (``engine.py``, with its kernels in ``kernels.py``) owns reading,
decoding, threads and buffers, and computes only what the requested channels declare.

Partial results are the per-point accumulators: a node answers a block of points with them, and the
front glues the blocks of a selection and finalises once. How a channel's answer merges across
blocks follows from that: per-point outputs are placed per point, ``reduce=sum`` style outputs merge
the selection's accumulators inside ``finalize`` (:meth:`Partial.merged`), and a whole-scan reference
(:meth:`Channel.whole_scan`, e.g. DPC's median) is derived from the partials of every block of the scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dada.params import Param
from dada.stxm.beam import BeamGeometry
from dada.views import Drawing, Overlay

if TYPE_CHECKING:
    from dada.stxm.reduction import View


@dataclass(frozen=True)
class Accumulator:
    """One kind of per-bin accumulator: what it holds, its dtype on the wire and in the caches, and how two
    of its values merge (across the pixels of a bin, and across points for a selection's total)."""

    name: str
    doc: str
    dtype: str
    merge: str  # "sum" or "max"


#: The closed set the kernels implement. A bin's saturated (>= cutoff) and masked pixels enter none of them.
ACCUMULATORS: dict[str, Accumulator] = {a.name: a for a in (
    Accumulator("count", "valid pixels of the bin (integers below 2**24: exact in float32)", "<f4", "sum"),
    Accumulator("sum", "Σv of the valid counts", "<f8", "sum"),
    Accumulator("sx", "Σv·x, x the column about the beam centre (px)", "<f8", "sum"),
    Accumulator("sy", "Σv·y, y the row about the beam centre (px)", "<f8", "sum"),
    Accumulator("max", "largest valid count (-inf before any)", "<f8", "max"),
    Accumulator("sq", "Σv² of the valid counts (exact for integers while below 2**53)", "<f8", "sum"),
)}


@dataclass(frozen=True)
class Bins:
    """A channel's pixel map: bin index per pixel (-1: none) and how many bins."""

    index: np.ndarray  # (H, W) int32
    count: int


@dataclass
class Partial:
    """Per point and bin, the accumulators a channel declared (each (npoints, nbins), by name; ``count``
    always), and which points' frames existed (an absent frame's rows are NaN)."""

    arrays: dict[str, np.ndarray]
    present: np.ndarray  # (npoints,) bool

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def npoints(self) -> int:
        return self.present.shape[0]

    def merged(self) -> dict[str, np.ndarray]:
        """Every accumulator merged over the present points (1, nbins), in float64: a selection's total."""
        out = {}
        for name, a in self.arrays.items():
            rows = np.asarray(a[self.present], dtype=np.float64)
            merge = np.max if ACCUMULATORS[name].merge == "max" else np.sum
            out[name] = merge(rows, axis=0, initial=-np.inf if merge is np.max else 0.0)[None]
        return out


class Channel:
    """An STXM analysis: its parameters, its pixel bins, the accumulators it needs and how they become maps."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    doc: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    outputs: ClassVar[tuple[str, ...]]  # output names; the first is the default for single-array formats
    overlays: ClassVar[tuple[Overlay, ...]] = ()  # its pixel bins' shapes, drawn on frames by the GUI
    # Per bin, from ACCUMULATORS (``count`` always comes): the kernels compute only what a pass's channels declare.
    accumulators: ClassVar[tuple[str, ...]] = ("sum",)
    # Whether its bins depend on the beam centre: a channel that does not (a box) runs on scans that record none.
    centred: ClassVar[bool] = True
    # Its radius parameters (px) that ``snap=true`` moves to the polar reduction's grid; a channel naming any
    # is one that can be answered from the reduction (:meth:`reduced`).
    radii: ClassVar[tuple[str, ...]] = ()

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        """Raise BadParameter for impossible parameters (before any frame is read)."""

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        raise NotImplementedError

    def output_shape(self, args: dict[str, Any], points: tuple[int, int]) -> dict[str, tuple[int, ...]]:
        """Shape of every output for a selection of ``points`` = (lines, points per line)."""
        return {name: points for name in self.outputs}

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        """Per-point outputs, flat over points (npoints last); ``context`` is :meth:`whole_scan`'s answer."""
        raise NotImplementedError

    def reduced(self, view: View, geo: BeamGeometry, args: dict[str, Any]) -> Partial | None:
        """The partial the frames would give, from the scan's polar reduction (``reduction``), exactly; None
        when its bins are not unions of the reduction's cells (then the frames are read)."""
        return None

    def pointwise(self, args: dict[str, Any]) -> bool:
        """Whether each point's outputs depend on that point's partial alone (and :meth:`whole_scan`'s
        context): then the front finalises blocks as they arrive and never holds the whole selection's
        partials. False (the safe default) for outputs that merge points, like ``reduce=sum``."""
        return False

    def needs_whole_scan(self, args: dict[str, Any]) -> bool:
        """Whether a selection's answer depends on the whole scan (e.g. dpc's median reference)."""
        return False

    def whole_scan(self, m: Partial) -> Any:
        """Reduce the whole scan's partial to what finalize needs as context."""
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
