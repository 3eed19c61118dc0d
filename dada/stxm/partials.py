"""Partial results of the STXM pass: per-point bin accumulators, the seam between nodes and the front.

A node answers a block of frames with every requested channel's :class:`Partial` (``pack``, bytes
laid out by ``wire``); the front folds the blocks of a selection into its arrays and finalises
once, so sums over points, whole-scan references and percentile clipping are exact however the
scan was cut. Whatever computes partials (this process's engine, ``local``, or the cluster) is a
:class:`PartialSource`. Nothing here runs the kernels: a front that only glues partials never loads
them (nor numba).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dada.params import canon
from dada.sources.scan import Scan
from dada.stxm import wire
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Channel, Partial

if TYPE_CHECKING:
    from dada.stxm.outputs import Outputs
    from dada.stxm.reduction import View


@dataclass(frozen=True)
class Pass:
    """One fused pass over frames: the beam geometry and the channels it feeds, with their arguments."""

    geo: BeamGeometry
    channels: tuple[tuple[Channel, dict[str, Any]], ...]

    @cached_property
    def keys(self) -> tuple[tuple[str, ...], ...]:
        """Per channel, exactly what its partials depend on besides the frames: name, version, own
        computational parameters (never the selection, the output or png settings)."""
        return tuple((c.name, c.version, *(f"{p.name}={canon(a[p.name])}" for p in c.params if not p.presentation))
                     for c, a in self.channels)

    def only(self, names: set[str]) -> Pass:
        return Pass(self.geo, tuple(ca for ca in self.channels if ca[0].name in names))


class BlockListener(Protocol):
    """Told how many blocks a request needs, then each block's partials as they arrive."""

    def start(self, total: int) -> None: ...

    def block(self, positions: np.ndarray, partials: dict[str, Partial]) -> None:
        """``positions``: indices into the request's flat frame list that this block covers."""

    def cancelled(self) -> bool:
        """Whether the listener asked to stop: no more blocks are worth computing."""


class PartialSource(Protocol):
    def __call__(self, scan: Scan, frames: np.ndarray, p: Pass, listener: BlockListener | None = None,
                 outputs: Outputs | None = None, reduce: bool = False) -> dict[str, Partial]:
        """Every channel's partial over ``frames``; the channels of ``outputs`` go there instead, block by
        block as they come, and are not returned. With ``reduce``, the scan's polar reduction is kept
        too, where there is somewhere to keep it (``reduction``)."""


REDUCE = "reduce"  # a block job's query: also compute the polar reduction on this grid (``reduction.Spec``)
REDUCE_GEOMETRY = "reduce_geometry"  # and answer the reduction's per-geometry record
REDUCTION = "_polar"  # in a node's answer: the block's reduction record, behind this name
REDUCTION_GEOMETRY = "_polar_geometry"  # the reduction's per-geometry record, when asked


class ReductionSource(Protocol):
    """Where scans' polar reductions are kept (``reduction``): the grid's radial bin, and a scan's reduction
    over some of its points when every block holding them has one."""

    dr: int

    def reduction(self, scan: Scan, frames: np.ndarray, geo: BeamGeometry) -> View | None: ...


def pack(partials: dict[str, Partial], records: dict[str, bytes] | None = None) -> bytearray:
    """What a node answers for a block: every channel's record (see ``wire``), then other named records."""
    return wire.bundle(partials, records or {})
