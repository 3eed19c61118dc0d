"""Partials computed in this process by its engine: what a node (or a single process) does with frames.

Kept apart from ``partials`` so that importing the seam does not load the kernels: a front imports
``partials``, only a node this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from dada.memo import Memo
from dada.sources.scan import Scan
from dada.stxm.channel import Partial
from dada.stxm.engine import Bulk, Engine
from dada.stxm.partials import REDUCTION, REDUCTION_GEOMETRY, BlockListener, Pass
from dada.stxm.pixelmaps import PixelMaps, fuse
from dada.stxm.reducing import block_bytes, cell_map, geometry_of, with_cells
from dada.stxm.reduction import Spec, join

if TYPE_CHECKING:
    from dada.stxm.outputs import Outputs

MAPS = Memo(16)


def pixel_maps(p: Pass) -> PixelMaps:
    """The fused pixel maps of a pass, built once per geometry and channel parameters."""
    return MAPS.get((p.geo.key, p.keys), lambda: fuse([c.bins(p.geo, a) for c, a in p.channels],
                                                      [c.accumulators for c, _ in p.channels], p.geo))


REDUCE_BYTES = 256 * 2**20  # a node's per-point arrays of one run of frames, at most, while it also reduces
SLOT = {"sum": 0, "sx": 1, "sy": 2, "max": 3, "sq": 4}  # where the engine's values hold each accumulator


def per_channel(bulk: Bulk, maps: PixelMaps, names: Sequence[str]) -> dict[str, Partial]:
    """An engine run cut into each channel's named arrays (views: no copy), exactly those it declared."""
    out = {}
    for i, name in enumerate(names):
        lo, hi = maps.offsets[i], maps.offsets[i + 1]
        out[name] = Partial({k: bulk.valid[:, lo:hi] if k == "count" else bulk.values[:, lo:hi, SLOT[k]]
                             for k in maps.accumulators[i]}, bulk.present)
    return out


class LocalPartials:
    """Partials computed in this process by its engine: what a node does with a block."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, scan: Scan, frames: np.ndarray, p: Pass, listener: BlockListener | None = None,
                 outputs: Outputs | None = None, reduce: bool = False) -> dict[str, Partial]:
        """(A reduction is kept only through a front's block cache: ``reduce`` is ignored here.)"""
        maps = pixel_maps(p)
        out = per_channel(self.engine.run(scan, frames, maps, p.geo), maps, [c.name for c, _ in p.channels])
        if listener is not None:
            listener.start(1)
            listener.block(np.arange(len(frames)), out)
        for name in outputs.channels if outputs is not None else ():
            everything = slice(0, len(frames))
            outputs.place(everything, everything, name, out.pop(name))
        return out

    def reduced(self, scan: Scan, frames: np.ndarray, p: Pass, spec: Spec, geometry: bool
                ) -> tuple[dict[str, Partial], dict[str, bytes]]:
        """The pass's partials, and in the same pass the frames' polar reduction as records (see
        ``reduction``): the block's, unless a frame is absent or a sum not an integer; with ``geometry`` the
        per-geometry one too. Frames go through in runs whose per-point arrays stay within REDUCE_BYTES (the
        cells are many: a block of small frames at once could hold gigabytes)."""
        cells = cell_map(p.geo, spec)
        maps = MAPS.get((p.geo.key, p.keys, spec), lambda: with_cells(pixel_maps(p), cells))
        per_point = spec.cells * 4 + spec.nr * 24 + maps.offsets[-1] * 8 * (maps.kernel.slots + 2)
        run = max(1, REDUCE_BYTES // per_point)
        names = [c.name for c, _ in p.channels]
        parts, records = [], []
        for lo in range(0, len(frames), run):
            bulk = self.engine.run(scan, frames[lo:lo + run], maps, p.geo, cells)
            records.append(block_bytes(bulk.reduced, bulk.present, spec, self.engine.pool))
            parts.append(per_channel(bulk, maps, names))
        out = parts[0] if len(parts) == 1 else {
            name: Partial({k: np.concatenate([q[name][k] for q in parts]) for k in parts[0][name].arrays},
                          np.concatenate([q[name].present for q in parts])) for name in parts[0]}
        kept = {}
        if all(r is not None for r in records):
            kept[REDUCTION] = records[0] if len(records) == 1 else join(records)
        if geometry:
            kept[REDUCTION_GEOMETRY] = geometry_of(p.geo, spec).record()
        return out, kept
