"""Darkfield: summed counts in the annulus rmin <= r < rmax; transmission (r < rmin) alongside."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dada.stxm.annulus import AnnulusChannel
from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Partial
from dada.stxm.polarbins import ring_bins

if TYPE_CHECKING:
    from dada.stxm.reduction import View


class Darkfield(AnnulusChannel):
    name = "darkfield"
    doc = "STXM darkfield: summed valid counts with rmin <= r < rmax; transmission: counts with r < rmin."
    params = (
        radius_param("rmin", "Inner radius of the annulus; also the transmission disc's radius.", 10.0),
        radius_param("rmax", "Outer radius (excluded); default: the largest circle inside the frame.", None),
    )
    outputs = ("darkfield", "transmission")
    radii = ("rmin", "rmax")

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        rmin, rmax = ring(geo, args)
        return ring_bins(geo, (-np.inf, rmin, rmax), (1, 0))

    def reduced(self, view: View, geo: BeamGeometry, args: dict[str, Any]) -> Partial | None:
        rmin, rmax = ring(geo, args)
        labels = view.geometry.ring_labels(lambda r: np.where(r < rmin, 1, np.where(r < rmax, 0, -1)), rmax)
        return None if labels is None else view.partial(view.ring_sums(labels, 2))

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        return {"darkfield": m["sum"][:, 0], "transmission": m["sum"][:, 1]}

    def unit(self, output: str, args: dict[str, Any]) -> str:
        return "counts"
