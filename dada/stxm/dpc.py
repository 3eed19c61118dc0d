"""DPC: centre of mass of the counts within rdpc of the beam centre, as x and y maps."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dada.errors import BadParameter
from dada.params import Param
from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Channel, Partial
from dada.stxm.polarbins import ring_bins
from dada.views import Overlay

if TYPE_CHECKING:
    from dada.stxm.reduction import View


def centre_of_mass(m: Partial) -> np.ndarray:
    """(2, npoints): COM x, y in px about the beam centre; NaN where no counts."""
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(m["sum"][:, 0] > 0, m["sum"][:, 0], np.nan)
        return np.stack([m["sx"][:, 0] / total, m["sy"][:, 0] / total])


class Dpc(Channel):
    name = "dpc"
    doc = ("Differential phase contrast: centre of mass of the valid counts with r < rdpc, minus the reference, "
           "optionally rotated and flipped; (2, V, H) = (x, y).")
    params = (
        replace(radius_param("rdpc", "Radius of the disc whose centre of mass is taken.", 10.0),
                exclusive_minimum=True),
        Param("reference", "Zero of the shift: the beam centre, or the median centre of mass over the scan.",
              choices=("beam", "median"), default="beam"),
        Param("rotation", "Rotate (x, y) counter-clockwise by this angle (scan vs detector axes).", type="number",
              default=0.0, minimum=-360, maximum=360, unit="deg"),
        Param("flip", "Mirror the y component (after rotation).", type="boolean", default=False),
        Param("unit", "px, or mrad (needs pixel size and detector distance).", choices=("px", "mrad"),
              default="px"),
        Param("component", "What png and csv show: x, y, magnitude or angle (deg).",
              choices=("x", "y", "magnitude", "angle"), default="magnitude", presentation=True),
    )
    outputs = ("dpc",)
    overlays = (Overlay("circle", ("rdpc",)),)
    accumulators = ("sum", "sx", "sy")
    radii = ("rdpc",)

    def pointwise(self, args: dict[str, Any]) -> bool:
        return True

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        ring(geo, {"r0": 0.0, "rdpc": args["rdpc"]}, "r0", "rdpc")
        if args["unit"] == "mrad" and not (geo.pixel_size and geo.distance):
            raise BadParameter("unit", "mrad needs the pixel size and detector distance, which the scan does "
                               "not record", "px")

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        return ring_bins(geo, (-np.inf, args["rdpc"]), (0,))

    def reduced(self, view: View, geo: BeamGeometry, args: dict[str, Any]) -> Partial | None:
        """The disc's sums and moments; its moments about the beam centre as the engine turns them (Σv·col -
        cx·Σv, of integers: the same numbers)."""
        rdpc = args["rdpc"]
        labels = view.geometry.ring_labels(lambda r: np.where(r < rdpc, 0, 1), rdpc)
        if labels is None:
            return None
        s = view.ring_sums(labels, 1, moments=True)
        return view.partial({"count": s["count"], "sum": s["sum"], "sx": s["col"] - geo.cx * s["sum"],
                             "sy": s["row"] - geo.cy * s["sum"]})

    def output_shape(self, args: dict[str, Any], points: tuple[int, int]) -> dict[str, tuple[int, ...]]:
        return {"dpc": (2, *points)}

    def needs_whole_scan(self, args: dict[str, Any]) -> bool:
        return args["reference"] == "median"

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        com = centre_of_mass(m)
        if args["reference"] == "median":
            com = com - np.asarray(context)[:, None]
        a = np.radians(args["rotation"])
        x = np.cos(a) * com[0] - np.sin(a) * com[1]
        y = np.sin(a) * com[0] + np.cos(a) * com[1]
        if args["flip"]:
            y = -y
        out = np.stack([x, y])
        if args["unit"] == "mrad":
            out = out * (geo.pixel_size / geo.distance * 1e3)
        return {"dpc": out}

    def whole_scan(self, m: Partial) -> np.ndarray:
        """The median centre of mass over the scan's points (x, y)."""
        return np.nanmedian(centre_of_mass(m), axis=1)

    def plane(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> np.ndarray:
        dpc, which = arrays["dpc"], args["component"]
        if which == "x":
            return dpc[0]
        if which == "y":
            return dpc[1]
        if which == "magnitude":
            return np.hypot(dpc[0], dpc[1])
        return np.degrees(np.arctan2(dpc[1], dpc[0]))

    def unit(self, output: str, args: dict[str, Any]) -> str:
        return "deg" if args["component"] == "angle" else args["unit"]
