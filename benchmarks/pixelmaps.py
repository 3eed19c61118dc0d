"""Pixel maps of a fresh parameter: what every node computes before reading a frame when a request brings
a new beam centre (or radii, or usermask), against numpy's formulas, measured in one run.

    python benchmarks/pixelmaps.py [--pairs 7] [--rows 2167] [--cols 2070]

On an Eiger 4M frame (2167×2070, a noisy mask: dead pixels, panel gaps) each pair builds the pixel maps of
darkfield, dpc, azimuthal (16 sectors) and radial (100 bins) twice, each time for a beam centre no call used
before (a new geometry: radius and azimuth recomputed): once with numpy's formulas and the previous fusing
(``tests/maps_reference.py``: float64 radius and azimuth arrays, each channel's bins by numpy, a stacked
copy of the bins, keys in one numba loop, classes by fancy indexing, bincount and packbits) and once with
dada's code (``BeamGeometry``'s key, the channels' ``bins``, ``fuse``: what ``local.pixel_maps`` runs). The
pairs are interleaved; every pair's times and ratio are printed, then the medians. Then the same with all
six channels (maxpixel and contrast: one annulus each). Every answer is held to the other, every array of
the pixel maps equal, or the benchmark stops. glibc's mmap threshold is fixed as a daemon fixes it
(``dada.server.heap``): every array of a frame's size is fresh memory, as on a node.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import maps_reference  # noqa: E402

from dada.registry import CHANNELS  # noqa: E402
from dada.server.heap import return_freed_memory  # noqa: E402
from dada.stxm import polarbins  # noqa: E402
from dada.stxm.beam import BeamGeometry  # noqa: E402
from dada.stxm.engine import warm_up  # noqa: E402
from dada.stxm.parts import THREADS  # noqa: E402
from dada.stxm.pixelmaps import PixelMaps, fuse  # noqa: E402

CH = {c.name: c for c in CHANNELS}
FOUR = ("darkfield", "dpc", "azimuthal", "radial")
SIX = (*FOUR, "maxpixel", "contrast")
ARGS = {"rmin": 10.0, "rmax": None, "rdpc": 10.0, "nsectors": 16, "nbins": 100, "unit": "px", "reduce": "none"}


def mask(shape: tuple[int, int]) -> np.ndarray:
    """Valid pixels: 0.1 % dead at random, and an Eiger's horizontal and vertical gaps between modules."""
    good = np.random.default_rng(3).random(shape) > 1e-3
    good[np.arange(shape[0]) % 551 >= 514] = False
    good[:, np.arange(shape[1]) % 1040 >= 1030] = False
    return good


def ours(geo: BeamGeometry, names: tuple[str, ...]) -> PixelMaps:
    geo.key  # noqa: B018  (the maps' memo key, as local.pixel_maps computes it)
    return fuse([CH[n].bins(geo, ARGS) for n in names], [CH[n].accumulators for n in names], geo)


def numpys(geo: BeamGeometry, names: tuple[str, ...]) -> PixelMaps:
    geo.key  # noqa: B018
    return maps_reference.fuse([maps_reference.bins(n, geo, ARGS) for n in names],
                               [CH[n].accumulators for n in names], geo)


def same(got: PixelMaps, want: PixelMaps) -> None:
    for field in want.kernel._fields:
        g, w = getattr(got.kernel, field), getattr(want.kernel, field)
        if np.asarray(g).dtype != np.asarray(w).dtype or not np.array_equal(g, w):
            raise SystemExit(f"pixel maps differ from numpy's in {field}")
    if not (np.array_equal(got.static_valid, want.static_valid) and got.offsets == want.offsets
            and got.accumulators == want.accumulators):
        raise SystemExit("pixel maps differ from numpy's in their bins' valid pixels or layout")


def pairs(names: tuple[str, ...], shape: tuple[int, int], good: np.ndarray, count: int, first: int) -> None:
    """``count`` interleaved (numpy, ours) pairs after a warm-up of each, a new centre for every call."""

    def geo(k: int) -> BeamGeometry:
        return BeamGeometry(shape, shape[1] / 2 - 0.5 + 0.37 * k, shape[0] / 2 - 0.5 - 0.29 * k, good,
                            75e-6, 2.0, 1.0)

    same(ours(geo(first), names), numpys(geo(first), names))  # warm-up, checked
    label = " + ".join(names)
    print(f"\n## pixel maps of {label}, {shape[0]}×{shape[1]}, a new beam centre per call ({THREADS} threads)\n")
    print("| pair | numpy's formulas (ms) | dada (ms) | × faster |")
    print("|-----:|----------------------:|----------:|---------:|")
    old, new = [], []
    for i in range(count):
        k = first + 2 + 2 * i
        t0 = time.perf_counter()
        want = numpys(geo(k), names)
        t1 = time.perf_counter()
        got = ours(geo(k), names)
        t2 = time.perf_counter()
        same(got, want)
        old.append(t1 - t0)
        new.append(t2 - t1)
        print(f"| {i + 1} | {old[-1] * 1e3:.0f} | {new[-1] * 1e3:.0f} | {old[-1] / new[-1]:.2f} |", flush=True)
    ratios = [o / n for o, n in zip(old, new, strict=True)]
    print(f"| median | {statistics.median(old) * 1e3:.0f} | {statistics.median(new) * 1e3:.0f} | "
          f"{statistics.median(ratios):.2f} |")
    print(f"\n{label}: median {statistics.median(new) * 1e3:.0f} ms (numpy's formulas "
          f"{statistics.median(old) * 1e3:.0f} ms), ratio per pair {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"every pair's maps identical", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--rows", type=int, default=2167)
    p.add_argument("--cols", type=int, default=2070)
    args = p.parse_args()
    return_freed_memory()  # as a daemon runs: every large array its own mapping, its pages touched fresh
    warm_up()
    polarbins.warm_up()
    shape = (args.rows, args.cols)
    good = mask(shape)
    pairs(FOUR, shape, good, args.pairs, 0)
    pairs(SIX, shape, good, args.pairs, 1000)
    print(f"\n(machine: {os.cpu_count()} cores, shared with other work)")


if __name__ == "__main__":
    main()
