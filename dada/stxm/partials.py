"""Partial results of the STXM pass: per-point bin accumulators, the seam between nodes and the front.

A node answers a block of frames with every requested channel's :class:`Partial` (``pack``, bytes
laid out by ``wire``); the front folds the blocks of a selection into its arrays and finalises
once, so sums over points, whole-scan references and percentile clipping are exact however the
scan was cut. Whatever computes partials (this process's engine, or the cluster) is a
:class:`PartialSource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from dada.memo import Memo
from dada.params import canon
from dada.sources.scan import Scan
from dada.stxm import wire
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Channel, Partial
from dada.stxm.engine import Bulk, Engine
from dada.stxm.pixelmaps import PixelMaps, fuse


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
    def __call__(self, scan: Scan, frames: np.ndarray, p: Pass, listener: BlockListener | None = None
                 ) -> dict[str, Partial]: ...


MAPS = Memo(16)


def pixel_maps(p: Pass) -> PixelMaps:
    """The fused pixel maps of a pass, built once per geometry and channel parameters."""
    return MAPS.get((p.geo.key, p.keys), lambda: fuse([c.bins(p.geo, a) for c, a in p.channels],
                                                      [c.accumulators for c, _ in p.channels], p.geo))


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

    def __call__(self, scan: Scan, frames: np.ndarray, p: Pass, listener: BlockListener | None = None
                 ) -> dict[str, Partial]:
        maps = pixel_maps(p)
        out = per_channel(self.engine.run(scan, frames, maps, p.geo), maps, [c.name for c, _ in p.channels])
        if listener is not None:
            listener.start(1)
            listener.block(np.arange(len(frames)), out)
        return out


def pack(partials: dict[str, Partial]) -> bytearray:
    """What a node answers for a block: every channel's record (see ``wire``)."""
    return wire.bundle(partials)
