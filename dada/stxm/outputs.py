"""Per-point outputs finalised as blocks arrive: the front never holds a whole selection's partials.

A channel whose outputs at a point depend only on that point's partial (and the whole-scan context)
says so (:meth:`Channel.pointwise`). Its blocks' rows are staged, and every few megabytes finalised
straight into the answer's arrays, so a request holds its answer and a stage per channel, never the
partials of every point (about a kilobyte a point for the four channels: more than the answer). The
stage is memory reused by the thread's later requests: rows copied into memory written before cost
a copy, into fresh memory a page fault per 4 KiB as well. Finalising a run of points or all of them
at once gives the same numbers, point by point.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dada.stxm.channel import ACCUMULATORS, Channel, Partial

if TYPE_CHECKING:
    from dada.stxm.partials import Pass

STAGE_BYTES = 2 * 2**20  # per channel: rows staged before they are finalised (larger blocks skip the stage)
_arena = threading.local()


def _arena_bytes(channel: str, nbytes: int) -> bytearray:
    """This thread's stage memory for a channel, at least ``nbytes``, kept for its next request."""
    held = _arena.__dict__.setdefault("bufs", {})
    if len(held.get(channel, b"")) < nbytes:
        held[channel] = bytearray(nbytes)
    return held[channel]


def _count(positions: slice | np.ndarray) -> int:
    return positions.stop - positions.start if isinstance(positions, slice) else positions.size


def _part(index: slice | np.ndarray, lo: int, hi: int) -> slice | np.ndarray:
    """Entries lo..hi of a run (slice) or of an index array."""
    return slice(index.start + lo, index.start + hi) if isinstance(index, slice) else index[lo:hi]


class _Stage:
    """One channel's staged rows, each accumulator in its wire dtype, and where in the answer they go."""

    def __init__(self, channel: str, partial: Partial, capacity: int) -> None:
        self.name, self.capacity, self.fill, self.segments = channel, capacity, 0, []
        self.arrays: dict[str, np.ndarray] = {}
        buf, offset = _arena_bytes(channel, capacity * self.row_bytes(partial)), 0
        for name, a in partial.arrays.items():
            dt = np.dtype(ACCUMULATORS[name].dtype)
            shape = (capacity, a.shape[1])
            self.arrays[name] = np.frombuffer(buf, dtype=dt, count=shape[0] * shape[1], offset=offset).reshape(shape)
            offset += self.arrays[name].nbytes
        self.present = np.empty(capacity, dtype=bool)

    @staticmethod
    def row_bytes(partial: Partial) -> int:
        return sum(np.dtype(ACCUMULATORS[k].dtype).itemsize * a.shape[1] for k, a in partial.arrays.items())


class Outputs:
    """The outputs of a pass's pointwise channels for a selection of ``points``, filled as blocks arrive."""

    def __init__(self, p: Pass, contexts: Sequence[Any], points: tuple[int, int]) -> None:
        self.geo, self.n = p.geo, points[0] * points[1]
        self.channels: dict[str, tuple[Channel, dict[str, Any], Any]] = {
            c.name: (c, a, ctx) for (c, a), ctx in zip(p.channels, contexts, strict=True) if c.pointwise(a)}
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self._flat: dict[str, dict[str, np.ndarray | None]] = {}  # per point: (..., n) views; else None
        for name, (c, a, _) in self.channels.items():
            shapes, one, two = c.output_shape(a, points), c.output_shape(a, (1, 1)), c.output_shape(a, (1, 2))
            self.arrays[name] = {k: np.empty(s) for k, s in shapes.items()}
            self._flat[name] = {k: v.reshape(v.shape[:-2] + (self.n,)) if one[k] != two[k] else None
                                for k, v in self.arrays[name].items()}
        self.present = np.zeros(self.n, dtype=bool)
        self._stages: dict[str, _Stage] = {}

    def place(self, positions: slice | np.ndarray, rows: slice | np.ndarray, name: str, m: Partial) -> None:
        """Rows ``rows`` of a block's partial of channel ``name`` are the request's points ``positions``."""
        k = _count(positions)
        self.present[positions] = m.present[rows]
        stage = self._stages.get(name)
        if stage is None:
            capacity = max(1, min(self.n, STAGE_BYTES // max(1, _Stage.row_bytes(m))))
            stage = self._stages[name] = _Stage(name, m, capacity)
        declared = all(v.dtype == ACCUMULATORS[a].dtype for a, v in m.arrays.items())
        if k >= stage.capacity and declared:  # as many rows as a stage: finalised straight from the block's arrays
            self._finalize(name, Partial({a: v[rows] for a, v in m.arrays.items()}, m.present[rows]),
                           [(positions, 0, k)])
            return
        for lo in range(0, k, stage.capacity):  # staged (and so cast to the declared dtypes) a stage at a time
            hi = min(k, lo + stage.capacity)
            self._stage(stage, _part(positions, lo, hi), _part(rows, lo, hi), hi - lo, m)

    def _stage(self, stage: _Stage, positions: slice | np.ndarray, rows: slice | np.ndarray, k: int,
               m: Partial) -> None:
        """``k`` rows into the stage, which is finalised first when they would not fit."""
        if stage.fill + k > stage.capacity:
            self.flush(stage.name)
        at = slice(stage.fill, stage.fill + k)
        for a, v in m.arrays.items():
            stage.arrays[a][at] = v[rows]
        stage.present[at] = m.present[rows]
        stage.segments.append((positions, stage.fill, stage.fill + k))
        stage.fill += k

    def flush(self, name: str) -> None:
        stage = self._stages.get(name)
        if stage is None or not stage.fill:
            return
        partial = Partial({a: v[:stage.fill] for a, v in stage.arrays.items()}, stage.present[:stage.fill])
        self._finalize(name, partial, stage.segments)
        stage.fill, stage.segments = 0, []

    def _finalize(self, name: str, m: Partial, segments: list[tuple[slice | np.ndarray, int, int]]) -> None:
        c, a, context = self.channels[name]
        for key, v in c.finalize(m, self.geo, a, context).items():
            flat, v = self._flat[name][key], np.asarray(v, dtype=np.float64)
            if flat is None:  # not per point (an axis): the same from every run
                self.arrays[name][key][...] = v
                continue
            for positions, s0, s1 in segments:
                flat[..., positions] = v[..., s0:s1]

    def at(self, name: str, positions: slice | np.ndarray) -> dict[str, np.ndarray]:
        """A channel's outputs at some points, its staged rows finalised first (for progress events)."""
        self.flush(name)
        return {k: v if self._flat[name][k] is None else self._flat[name][k][..., positions]
                for k, v in self.arrays[name].items()}

    def finish(self) -> dict[str, dict[str, np.ndarray]]:
        for name in self.channels:
            self.flush(name)
        return self.arrays
