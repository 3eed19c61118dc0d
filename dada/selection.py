"""Scan grids and selections of their points in the beamline's words.

A scan visits ``vert`` lines of ``horz`` points each. Frames are numbered in
acquisition order; ``ScanGrid`` maps grid points (line, point) to frame
numbers, honouring the fast axis and snake scans. ``horz``/``vert`` in a URL
select points: an index or a half-open range ``start:stop[:step]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dada.errors import BadParameter
from dada.params import Param, ascii_int

if TYPE_CHECKING:
    from dada.sources.scan import Scan


@dataclass(frozen=True)
class Span:
    """A parsed index or ``start:stop[:step]`` range; bounds are checked later against the grid."""

    start: int | None
    stop: int | None
    step: int = 1
    single: bool = False

    @classmethod
    def parse(cls, raw: str) -> Span:
        parts = raw.split(":")
        if len(parts) == 1:
            return cls(_nonneg(parts[0]), None, 1, single=True)
        if len(parts) > 3:
            raise ValueError(f"{raw!r} has too many ':'")
        start = _nonneg(parts[0]) if parts[0] else None
        stop = _nonneg(parts[1]) if parts[1] else None
        step = _nonneg(parts[2]) if len(parts) == 3 and parts[2] else 1
        if step < 1:
            raise ValueError("step must be >= 1")
        return cls(start, stop, step)

    def resolve(self, name: str, length: int) -> range:
        """The selected indices for an axis of ``length``; 400 if out of bounds or empty."""
        allowed = f"an index in [0, {length - 1}] or a range start:stop[:step] with 0 <= start < stop <= {length}"
        if self.single:
            if self.start is None or not 0 <= self.start < length:
                raise BadParameter(name, f"index {self.start} is outside the scan's {length} {name} points", allowed)
            return range(self.start, self.start + 1)
        start = 0 if self.start is None else self.start
        stop = length if self.stop is None else self.stop
        if stop > length:
            raise BadParameter(name, f"stop {stop} exceeds the scan's {length} {name} points", allowed)
        if start >= stop:
            raise BadParameter(name, f"range {start}:{stop} is empty", allowed)
        return range(start, stop, self.step)

    def __str__(self) -> str:
        if self.single:
            return str(self.start)
        s = f"{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}"
        return s if self.step == 1 else f"{s}:{self.step}"


@dataclass(frozen=True)
class GridShape:
    """``grid=VxH``: lines × points per line, optionally with fast axis and snake flags."""

    vert: int
    horz: int

    @classmethod
    def parse(cls, raw: str) -> GridShape:
        parts = raw.lower().replace("*", "x").split("x")
        if len(parts) != 2:
            raise ValueError(f"{raw!r} is not of the form VxH")
        v, h = (_nonneg(p) for p in parts)
        if v < 1 or h < 1:
            raise ValueError("both sizes must be >= 1")
        return cls(v, h)

    def __str__(self) -> str:
        return f"{self.vert}x{self.horz}"


@dataclass(frozen=True)
class Point:
    """``at=row,col``: one grid point (line, point along the line)."""

    vert: int
    horz: int

    @classmethod
    def parse(cls, raw: str) -> Point:
        parts = raw.split(",")
        if len(parts) != 2:
            raise ValueError(f"{raw!r} is not of the form row,col")
        return cls(*(_nonneg(p) for p in parts))

    def __str__(self) -> str:
        return f"{self.vert},{self.horz}"


@dataclass(frozen=True)
class ScanGrid:
    """Where each grid point's frame sits in acquisition order."""

    vert: int
    horz: int
    fast_axis: str = "horz"  # the axis scanned within one line
    snake: bool = False

    @property
    def npoints(self) -> int:
        return self.vert * self.horz

    def frame_index(self, v: np.ndarray | int, h: np.ndarray | int) -> np.ndarray:
        """Frame numbers of grid points (v, h); arrays broadcast."""
        v, h = np.asarray(v), np.asarray(h)
        if self.fast_axis == "horz":
            line, pos, n = v, h, self.horz
        else:
            line, pos, n = h, v, self.vert
        if self.snake:
            pos = np.where(line % 2 == 1, n - 1 - pos, pos)
        return line * n + pos

    def frames(self, vert: range, horz: range) -> np.ndarray:
        """Frame numbers of a selection as a (len(vert), len(horz)) int64 array."""
        vv, hh = np.meshgrid(np.asarray(vert), np.asarray(horz), indexing="ij")
        return self.frame_index(vv, hh).astype(np.int64)


def _nonneg(s: str) -> int:
    value = ascii_int(s)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


SPAN_SYNTAX = "an index i or a half-open range start:stop[:step] (either end may be omitted)"

VERT = Param("vert", "Lines of the scan to select (slow axis).", parser=Span.parse, syntax=SPAN_SYNTAX,
             example="10:20")
HORZ = Param("horz", "Points along each line to select (fast axis).", parser=Span.parse, syntax=SPAN_SYNTAX,
             example="0:256")
GRID = Param("grid", "Scan shape lines x points, where the files do not record it.", parser=GridShape.parse,
             syntax="VxH, e.g. 100x200", example="100x200")
SELECTION = (VERT, HORZ, GRID)


ALL = Span(None, None)


def select_ranges(scan: Scan, args: dict[str, Any]) -> tuple[range, range]:
    """The selected lines and points, checked against the grid; no frame numbers built."""
    grid = scan.grid_for(args.get("grid"))
    return (args.get("vert") or ALL).resolve("vert", grid.vert), (args.get("horz") or ALL).resolve("horz", grid.horz)


def select(scan: Scan, args: dict[str, Any]) -> tuple[np.ndarray, range, range]:
    """Frame numbers of the selected points as a (lines, points) array, with the two ranges."""
    vert, horz = select_ranges(scan, args)
    return scan.grid_for(args.get("grid")).frames(vert, horz), vert, horz


def _everything(args: dict[str, Any]) -> bool:
    return args.get("vert") is None and args.get("horz") is None and args.get("grid") is None


def select_or_all(scan: Scan, args: dict[str, Any]) -> np.ndarray:
    """Like :func:`select`, but with no selection and no grid given, every frame (1-D)."""
    if _everything(args):
        return np.arange(scan.expected_frames or scan.nframes, dtype=np.int64)
    return select(scan, args)[0]


def count_selected(scan: Scan, args: dict[str, Any]) -> int:
    """How many frames :func:`select_or_all` names, without building their numbers."""
    if _everything(args):
        return scan.expected_frames or scan.nframes
    vert, horz = select_ranges(scan, args)
    return len(vert) * len(horz)


def provenance(scan: Scan, frames: np.ndarray) -> dict[str, Any]:
    return {
        "scan": scan.name,
        "scan_identity": scan.identity,
        "frames_selected": int(frames.size),
    }
