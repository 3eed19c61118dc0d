"""Raw frames and reductions of a selection's frames: /frame, /sum, /composite."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from dada.encoders.render import RENDER, RENDER_NAMES, render_params
from dada.endpoint import Context, Endpoint, Plan, Result, Target
from dada.errors import BadParameter
from dada.frames.pixels import MASK, bin_shape, bin_sum, valid_pixels
from dada.params import Model, Param
from dada.selection import GRID, SELECTION, Point, count_selected, provenance, select, select_or_all, select_ranges
from dada.sources.catalog import Catalog
from dada.sources.scan import Scan


def binned(scan: Scan, b: int) -> tuple[int, int]:
    """A frame's shape binned b×b, or 400 naming ``bin`` when a bin is larger than the frame (an empty image)."""
    th, tw = bin_shape(scan.frame_shape, b)
    if th == 0 or tw == 0:
        raise BadParameter("bin", f"{b} is larger than the {scan.frame_shape} frame",
                           f"an integer in [1, {min(scan.frame_shape)}]")
    return th, tw


BIN = Param("bin", "Bin b×b pixels into one (edge rows/columns that do not fill a bin are dropped).",
            type="integer", default=1, minimum=1, maximum=256)


class Frame(Endpoint):
    name = "frame"
    prefix = "/frame"
    summary = "One raw detector frame, as stored (dtype and values unchanged; png marks masked pixels)."
    model = Model.of(
        [Param("at", "Grid point line,point instead of a frame number in the path.", parser=Point.parse,
               syntax="row,col (line, point along the line)", example="3,5"), GRID],
        RENDER,
    )
    item = Param("n", "Frame number in acquisition order, from 0.", type="integer", minimum=0)
    item_optional = True
    render_only = RENDER_NAMES

    def frame_number(self, target: Target, args: dict[str, Any]) -> int:
        scan = target.scan
        if target.item is not None and args["at"] is not None:
            raise BadParameter("at", "give either a frame number in the path or at=, not both",
                               "/frame/{scan}/{n}.{fmt} or /frame/{scan}.{fmt}?at=row,col")
        if target.item is not None:
            return target.item
        if args["at"] is None:
            raise BadParameter("at", "a frame number in the path or at=row,col is needed", "row,col")
        grid = scan.grid_for(args["grid"])
        at: Point = args["at"]
        if at.vert >= grid.vert or at.horz >= grid.horz:
            raise BadParameter("at", f"{at} is outside the {grid.vert}x{grid.horz} grid",
                               f"row in [0, {grid.vert - 1}], col in [0, {grid.horz - 1}]")
        return int(grid.frame_index(at.vert, at.horz))

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        scan = target.scan
        n = self.frame_number(target, args)
        scan.check_frame(n, "n" if target.item is not None else "at")
        return Plan(scan.frame_shape, scan.dtype, 1)

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        scan = target.scan
        n = self.frame_number(target, args)
        frame = scan.read_frame(n)
        attrs = {"scan": scan.name, "scan_identity": scan.identity, "frame": n}
        return Result({"frame": frame}, attrs, invalid=~valid_pixels(scan, frame), unit="counts")


REDUCE = Param("reduce", "sum: total counts per (binned) pixel; mean: mean count per valid pixel and frame.",
               choices=("sum", "mean"),
               default="sum")


class Sum(Endpoint):
    name = "sum"
    prefix = "/sum"
    summary = ("Sum or mean of the selected frames (all frames when no selection is given); "
               "masked pixels excluded; frames not yet written are skipped and counted in the attributes.")
    model = Model.of(SELECTION, [REDUCE, BIN, MASK], RENDER)
    render_only = RENDER_NAMES

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        scan = target.scan
        dtype = np.dtype("float64") if args["reduce"] == "mean" else _total_dtype(scan)
        return Plan(binned(scan, args["bin"]), dtype, count_selected(scan, args))

    def selected(self, scan: Scan, args: dict[str, Any]) -> np.ndarray:
        return select_or_all(scan, args).ravel()

    def partial(self, scan: Scan, frames: np.ndarray, args: dict[str, Any]) -> np.ndarray:
        """(2, H, W): the sum of the written frames among ``frames`` and, per pixel, how many were valid."""
        out = np.zeros((2, *scan.frame_shape), dtype=_total_dtype(scan))
        total, count = out
        buf = np.empty(scan.frame_shape, dtype=scan.dtype)
        good = np.empty(scan.frame_shape, dtype=bool)
        for n in frames[frames < scan.nframes].tolist():
            scan.read_frame(n, buf)
            if args["mask"]:
                valid_pixels(scan, buf, out=good)
                np.add(total, buf, out=total, where=good)
                count += good
            else:
                total += buf
                count += 1
        return out

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        scan = target.scan
        frames = self.selected(scan, args)
        total, count = sum(part for _, part in ctx.frames(scan, frames, self, args))
        used = int(np.count_nonzero(frames < scan.nframes))
        b = args["bin"]
        total, count = bin_sum(total, b), bin_sum(count, b)
        if args["reduce"] == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        else:
            out = total
        attrs = {**provenance(scan, frames), "frames_used": used,
                 "frames_missing": int(frames.size - used), "reduce": args["reduce"], "bin": b}
        unit = "counts" if args["reduce"] == "sum" else "counts/px/frame"  # a mean is per detector pixel, not bin
        return Result({args["reduce"]: out}, attrs, invalid=count == 0, unit=unit)


class Composite(Endpoint):
    name = "composite"
    prefix = "/composite"
    summary = ("Mosaic of the selected frames, binned, laid out on the scan grid, for browsing; "
               "each tile is the mean count per valid pixel of b×b bins (NaN where nothing is valid "
               "or the frame is not written yet).")
    model = Model.of(SELECTION, [replace(BIN, default=8), MASK], render_params(log=True))  # beam and halo at once
    render_only = RENDER_NAMES

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        scan = target.scan
        vert, horz = select_ranges(scan, args)
        th, tw = binned(scan, args["bin"])
        return Plan((len(vert) * th, len(horz) * tw), np.dtype("float32"), len(vert) * len(horz))

    def selected(self, scan: Scan, args: dict[str, Any]) -> np.ndarray:
        return select(scan, args)[0].ravel()

    def partial(self, scan: Scan, frames: np.ndarray, args: dict[str, Any]) -> np.ndarray:
        """(n, th, tw) float32: each frame's tile, the mean count per valid pixel of its bins (NaN where
        nothing is valid or the frame is not written yet)."""
        b = args["bin"]
        th, tw = bin_shape(scan.frame_shape, b)
        out = np.full((frames.size, th, tw), np.nan, dtype=np.float32)
        buf = np.empty(scan.frame_shape, dtype=scan.dtype)
        good = np.ones(scan.frame_shape, dtype=bool)
        for i, n in enumerate(frames.tolist()):
            if n >= scan.nframes:
                continue
            scan.read_frame(n, buf)
            if args["mask"]:
                valid_pixels(scan, buf, out=good)
            total = bin_sum(np.where(good, buf, 0).astype(np.float64), b)
            count = bin_sum(good, b)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i] = np.where(count > 0, total / count, np.nan)
        return out

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        scan = target.scan
        frames, vert, horz = select(scan, args)
        b = args["bin"]
        th, tw = bin_shape(scan.frame_shape, b)
        tiles = np.empty((frames.size, th, tw), dtype=np.float32)
        for positions, part in ctx.frames(scan, frames.ravel(), self, args):
            tiles[positions] = part
        lines, points = frames.shape
        out = tiles.reshape(lines, points, th, tw).transpose(0, 2, 1, 3).reshape(lines * th, points * tw)
        attrs = {**provenance(scan, frames), "bin": b, "tile_shape": [th, tw],
                 "vert": [vert.start, vert.stop, vert.step], "horz": [horz.start, horz.stop, horz.step]}
        return Result({"composite": out}, attrs, unit="counts/px")  # mean per detector pixel of a bin


def _total_dtype(scan: Scan) -> np.dtype:
    """What sums of the scan's frames are kept in: exact integers, or float64 for frames of floats."""
    return np.dtype("float64") if scan.dtype.kind == "f" else np.dtype("int64")


FRAME, SUM, COMPOSITE = Frame(), Sum(), Composite()
