"""What channels reducing one annulus per point share: its parameters, overlay, checks and bin."""

from __future__ import annotations

from typing import Any

from dada.params import Param
from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Channel
from dada.stxm.polarbins import ring_bins
from dada.views import Overlay


def annulus_params(rmin: float) -> tuple[Param, ...]:
    """``rmin`` (defaulting to ``rmin``) and ``rmax`` (to the largest circle inside the frame)."""
    return (radius_param("rmin", "Inner radius of the annulus.", rmin),
            radius_param("rmax", "Outer radius (excluded); default: the largest circle inside the frame.", None))


class AnnulusChannel(Channel):
    """A channel on the annulus rmin <= r < rmax, per point: one bin by default (darkfield adds the disc
    inside it, azimuthal cuts it into sectors)."""

    overlays = (Overlay("annulus", ("rmin", "rmax")),)

    def pointwise(self, args: dict[str, Any]) -> bool:
        return True

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        ring(geo, args)

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        rmin, rmax = ring(geo, args)
        return ring_bins(geo, (rmin, rmax), (0,))
