"""A request's moments, filled block by block into arrays allocated once.

The front never keeps a block's partial result after placing it: its memory is the answer's (plus
the blocks in flight), and its cost per block is a few array copies — slices where the block's
points are a run of the request (a raster selection), one gather-scatter otherwise. No Python
loop or object per point.
"""

from __future__ import annotations

import numpy as np

from dada.stxm.channel import Moments


def as_run(index: np.ndarray) -> slice | np.ndarray:
    """``index`` as a slice when it is a run of consecutive integers (then copies are memcpy), else itself."""
    if index.size and int(index[-1]) - int(index[0]) == index.size - 1 and (
            index.size < 2 or bool((np.diff(index) == 1).all())):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


class Assembly:
    """Every channel's moments for ``n`` points, placed as blocks (or pieces of blocks) arrive."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.present = np.zeros(n, dtype=bool)
        self.out: dict[str, Moments] = {}

    def _target(self, name: str, m: Moments) -> Moments:
        g = self.out.get(name)
        if g is None:
            nbins, slots = m.values.shape[1:]
            # valid counts are integers below 2**24 (the wire's float32): exact, in half the memory
            g = Moments(np.empty((self.n, nbins, slots)), np.empty((self.n, nbins), dtype=np.float32), self.present)
            self.out[name] = g
        return g

    def place(self, positions: slice | np.ndarray, rows: slice | np.ndarray, moments: dict[str, Moments]) -> None:
        """Rows ``rows`` of each channel's block moments are the request's points ``positions``."""
        for name, m in moments.items():
            g = self._target(name, m)
            g.values[positions] = m.values[rows]
            g.valid[positions] = m.valid[rows]
            self.present[positions] = m.present[rows]

    def view(self, positions: slice | np.ndarray) -> dict[str, Moments]:
        """The placed moments of some points (for progress events)."""
        return {name: Moments(g.values[positions], g.valid[positions], self.present[positions])
                for name, g in self.out.items()}
