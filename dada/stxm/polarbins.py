"""Bins that are a rule of each pixel's radius (and azimuth) about the beam centre, and one pass that adds
every such channel's bin to the pixels' class keys at once.

A new beam centre on a 4 Mpixel detector is the whole wait of the first request after it: computing a frame
of radii, then each channel's int32 bins from it, then the keys from those, moved some 300 MB through memory.
Here each pixel's radius (``math.hypot``, as ``polar.radius``) is computed once, in registers, and every
rule's bin goes straight into the key. The sectors take a polynomial azimuth (the C library's atan2 costs
four times the rest of the pass); a pixel whose approximate azimuth lies within its error of a sector's edge
is redone with numpy's arctan2, so every bin is exactly the one ``polar.rings``, ``polar.sectors`` and
``polar.shells`` give (``tests/test_pixelmaps.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Bins
from dada.stxm.parts import bounds, in_parts
from dada.stxm.polar import kernels, ring_edges

RINGS, SECTORS, SHELLS = 0, 1, 2  # as polar_kernels numbers them


class PolarBins(Bins):
    """A channel's bins as a rule of the radius (and azimuth): ``index`` computes them when asked; fusing
    (``classkeys.keys``) takes the rule instead, with the other channels' rules in one pass."""

    def __init__(self, geo: BeamGeometry, rule: tuple[float, ...], count: int) -> None:
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "centre", (geo.shape, geo.cx, geo.cy))
        object.__setattr__(self, "rule", rule)

    @cached_property
    def index(self) -> np.ndarray:  # type: ignore[override]
        shape, cx, cy = self.centre
        out = np.empty(shape, dtype=np.int32)
        rule_keys(shape, cx, cy, [self.rule], np.ones(1, dtype=np.int64), -1, out.reshape(-1))
        return out


def ring_bins(geo: BeamGeometry, edges: Sequence[float], labels: Sequence[int]) -> PolarBins:
    """``polar.rings(geo.radius(), edges, labels)`` as a rule: ``labels[k]`` on edges[k] <= r < edges[k + 1]."""
    e0, e1, e2, l0, l1 = ring_edges(edges, labels)
    return PolarBins(geo, (RINGS, e0, e1, e2, float(l0), float(l1), 0.0, 0.0), max(l0, l1) + 1)


def sector_bins(geo: BeamGeometry, rmin: float, rmax: float, n: int) -> PolarBins:
    """``polar.sectors(geo.radius(), geo.cx, geo.cy, rmin, rmax, n)`` as a rule."""
    eps = kernels().ANGLE_TOL * n / (2 * np.pi)  # the approximate azimuth's error, in sectors
    return PolarBins(geo, (SECTORS, float(rmin), float(rmax), 0.0, 0.0, 0.0, float(n), eps), int(n))


def shell_bins(geo: BeamGeometry, e0: float, e1: float, n: int) -> PolarBins:
    """``polar.shells(geo.radius(), e0, e1, n)`` as a rule."""
    return PolarBins(geo, (SHELLS, float(e0), float(e1), 0.0, 0.0, 0.0, float(n), 0.0), int(n))


def rule_keys(shape: tuple[int, int], cx: float, cy: float, rules: Sequence[tuple[float, ...]],
              weights: np.ndarray, base: int, key: np.ndarray, good: np.ndarray | None = None,
              seen: np.ndarray | None = None) -> None:
    """``key`` (flat, any integer dtype) = Σ (bin + 1) · weight over the rules, plus ``base``, per pixel. With
    ``good`` this is the keys' last pass: masked pixels' keys are 0, and the keys seen are marked in ``seen``
    when it is a dense table (more than one entry)."""
    h, w = shape
    table = np.array(rules, dtype=np.float64).reshape(len(rules), 8)
    last = good is not None
    good = good if good is not None else np.ones(1, dtype=np.bool_)
    seen = seen if seen is not None else np.zeros(1, dtype=np.bool_)
    k = kernels()
    near = np.empty(h * w, dtype=np.int64)  # pages touched only where pixels are in doubt
    counts = in_parts(k.rule_keys_part, h, cx, cy, w, table, weights, base, good, last, seen, key, near, per=w)
    doubt = np.concatenate([near[lo * w:lo * w + c] for (lo, _), c in zip(bounds(h), counts, strict=True)])
    angle = np.arctan2((doubt // w).astype(np.float64) - cy, (doubt % w).astype(np.float64) - cx)
    k.rule_keys_fix(cx, cy, w, table, weights, base, last, seen, key, doubt, angle)


def warm_up() -> None:
    """Compile (or load) the pass's kernels for the keys' dtypes and the bins' int32, before a first request."""
    geo = BeamGeometry((32, 32), 15.5, 15.5, np.ones((32, 32), dtype=np.bool_), None, None, None)
    rules = [ring_bins(geo, (-np.inf, 4.0, 9.0), (1, 0)).rule, sector_bins(geo, 4.0, 9.0, 8).rule,
             shell_bins(geo, 0.0, 20.0, 10).rule]
    for dtype in (np.uint16, np.int32, np.int64):
        key = np.empty(32 * 32, dtype=dtype)
        rule_keys(geo.shape, geo.cx, geo.cy, rules, np.array([99, 11, 1]), 0, key, geo.good.reshape(-1),
                  np.zeros(300, dtype=np.bool_))
    ring_bins(geo, (4.0, 9.0), (0,)).index  # noqa: B018
