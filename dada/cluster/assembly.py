"""A request's partials, filled block by block into arrays allocated once.

The front never keeps a block's partial result after placing it: its memory is the answer's (plus
the blocks in flight), and its cost per block is a few array copies — slices where the block's
points are a run of the request (a raster selection), one gather-scatter otherwise. No Python
loop or object per point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dada.stxm.channel import ACCUMULATORS, Partial

if TYPE_CHECKING:
    from dada.stxm.outputs import Outputs


def as_run(index: np.ndarray) -> slice | np.ndarray:
    """``index`` as a slice when it is a run of consecutive integers (then copies are memcpy), else itself."""
    if index.size and int(index[-1]) - int(index[0]) == index.size - 1 and (
            index.size < 2 or bool((np.diff(index) == 1).all())):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


class Assembly:
    """Every channel's partial for ``n`` points, placed as blocks (or pieces of blocks) arrive; the
    channels of ``outputs`` are handed there instead (finalised as they come, never held whole)."""

    def __init__(self, n: int, outputs: Outputs | None = None) -> None:
        self.n, self.outputs = n, outputs
        self.present = np.zeros(n, dtype=bool)
        self.out: dict[str, Partial] = {}

    def _target(self, name: str, m: Partial) -> Partial:
        g = self.out.get(name)
        if g is None:
            nbins = m["count"].shape[1]
            # each array in its wire dtype: valid counts are integers below 2**24, exact in float32's half memory
            g = Partial({k: np.empty((self.n, nbins), dtype=ACCUMULATORS[k].dtype) for k in m.arrays}, self.present)
            self.out[name] = g
        return g

    def place(self, positions: slice | np.ndarray, rows: slice | np.ndarray, partials: dict[str, Partial]) -> None:
        """Rows ``rows`` of each channel's block partial are the request's points ``positions``."""
        for name, m in partials.items():
            if self.outputs is not None and name in self.outputs.channels:
                self.outputs.place(positions, rows, name, m)
                continue
            g = self._target(name, m)
            for k, a in m.arrays.items():
                g.arrays[k][positions] = a[rows]
            self.present[positions] = m.present[rows]

    def view(self, positions: slice | np.ndarray) -> dict[str, Partial]:
        """The placed partials of some points (for progress events): not those handed to ``outputs``."""
        return {name: Partial({k: a[positions] for k, a in g.arrays.items()}, self.present[positions])
                for name, g in self.out.items()}
