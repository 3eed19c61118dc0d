"""Pixel maps of a fresh parameter: what every node computes before reading a frame when a request brings
a new beam centre (or radii, or usermask), against numpy's formulas, measured in one run.

    python benchmarks/pixelmaps.py [--pairs 7] [--rows 2167] [--cols 2070] [--baseline main]

On an Eiger 4M frame (2167×2070, a noisy mask: dead pixels, panel gaps) each pair builds the pixel maps of
darkfield, dpc, azimuthal (16 sectors) and radial (100 bins) twice, each time for a beam centre no call used
before (a new geometry: radius and azimuth recomputed): once with numpy's formulas and the previous fusing
(``tests/maps_reference.py``: float64 radius and azimuth arrays, each channel's bins by numpy, a stacked
copy of the bins, keys in one numba loop, classes by fancy indexing, bincount and packbits) and once with
dada's code (``BeamGeometry``'s key, the channels' ``bins``, ``fuse``: what ``local.pixel_maps`` runs), and in
between by the code of git ref ``--baseline`` (``git archive`` of its ``dada`` into a temporary folder, run in a
child process that builds the same maps when told and answers its time and the maps' digest; "" for none).
The calls are interleaved; every pair's times and ratios are printed, then the medians. Then the same with all
six channels (maxpixel and contrast: one annulus each). Every answer is held to the other, every array of
the pixel maps equal, or the benchmark stops. glibc's mmap threshold is fixed as a daemon fixes it
(``dada.server.heap``): every array of a frame's size is fresh memory, as on a node.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def digest(maps: PixelMaps) -> str:
    """Every array and number of the maps, hashed: what the baseline's process answers to be compared."""
    h = hashlib.sha256()
    for field in maps.kernel._fields:
        v = getattr(maps.kernel, field)
        h.update(f"{field}{np.asarray(v).dtype}{np.asarray(v).shape}".encode())
        h.update(np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v).encode())
    h.update(maps.static_valid.tobytes() + repr((maps.offsets, maps.accumulators)).encode())
    return h.hexdigest()


# The baseline's process: the same geometry and channels as ``pairs`` gives, built by the ref's code.
CHILD = f"""
import sys, time, hashlib
import numpy as np
from dada.registry import CHANNELS
from dada.server.heap import return_freed_memory
from dada.stxm.beam import BeamGeometry
from dada.stxm.engine import warm_up
from dada.stxm.pixelmaps import PixelMaps, fuse
CH = {{c.name: c for c in CHANNELS}}
ARGS = {ARGS!r}
good = np.load(sys.argv[1])
shape = good.shape
return_freed_memory()
warm_up()
exec({inspect.getsource(digest)!r}, globals())
print("ready", flush=True)
for line in sys.stdin:
    k, *names = line.split()
    geo = BeamGeometry(shape, shape[1] / 2 - 0.5 + 0.37 * int(k), shape[0] / 2 - 0.5 - 0.29 * int(k), good,
                       75e-6, 2.0, 1.0)
    t0 = time.perf_counter()
    geo.key
    maps = fuse([CH[n].bins(geo, ARGS) for n in names], [CH[n].accumulators for n in names], geo)
    t = time.perf_counter() - t0
    print(t, digest(maps), flush=True)
"""


class Baseline:
    """The pixel maps by another git ref's code, in a child process."""

    def __init__(self, ref: str, good: np.ndarray) -> None:
        self.folder = tempfile.mkdtemp(prefix="dada-pixelmaps-")
        root = os.path.join(os.path.dirname(__file__), "..")
        archive = subprocess.run(["git", "-C", root, "archive", ref, "dada"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", self.folder], input=archive, check=True)
        np.save(os.path.join(self.folder, "good.npy"), good)
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, os.path.join(self.folder, "good.npy")],
                                     cwd=self.folder, env={**os.environ, "PYTHONPATH": self.folder},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def build(self, k: int, names: tuple[str, ...]) -> tuple[float, str]:
        self.proc.stdin.write(f"{k} {' '.join(names)}\n")
        self.proc.stdin.flush()
        t, h = self.proc.stdout.readline().split()
        return float(t), h

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        shutil.rmtree(self.folder)


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


def pairs(names: tuple[str, ...], shape: tuple[int, int], good: np.ndarray, count: int, first: int,
          base: Baseline | None, ref: str) -> None:
    """``count`` interleaved (numpy, baseline, ours) calls after a warm-up of each, a new centre for every call."""

    def geo(k: int) -> BeamGeometry:
        return BeamGeometry(shape, shape[1] / 2 - 0.5 + 0.37 * k, shape[0] / 2 - 0.5 - 0.29 * k, good,
                            75e-6, 2.0, 1.0)

    warm = ours(geo(first), names)
    same(warm, numpys(geo(first), names))  # warm-up, checked
    if base is not None and base.build(first, names)[1] != digest(warm):
        raise SystemExit(f"pixel maps of {ref} differ from dada's")
    label = " + ".join(names)
    print(f"\n## pixel maps of {label}, {shape[0]}×{shape[1]}, a new beam centre per call ({THREADS} threads)\n")
    print(f"| pair | numpy's formulas (ms) | {ref or '-'} (ms) | dada (ms) | × numpy's | × {ref or '-'} |")
    print("|-----:|------:|------:|------:|------:|------:|")
    old, mid, new = [], [], []
    for i in range(count):
        k = first + 2 + 2 * i
        t0 = time.perf_counter()
        want = numpys(geo(k), names)
        old.append(time.perf_counter() - t0)
        if base is not None:
            t, h = base.build(k, names)
            mid.append(t)
        t1 = time.perf_counter()
        got = ours(geo(k), names)
        new.append(time.perf_counter() - t1)
        same(got, want)
        if base is not None and h != digest(got):
            raise SystemExit(f"pixel maps of {ref} differ from dada's")
        other = f"{mid[-1] * 1e3:.0f} | " if mid else "- | "
        vs = f"{mid[-1] / new[-1]:.2f}" if mid else "-"
        print(f"| {i + 1} | {old[-1] * 1e3:.0f} | {other}{new[-1] * 1e3:.0f} | {old[-1] / new[-1]:.2f} | {vs} |",
              flush=True)
    ratios = [o / n for o, n in zip(old, new, strict=True)]
    versus = [m / n for m, n in zip(mid, new, strict=False)]
    med = statistics.median
    print(f"| median | {med(old) * 1e3:.0f} | {f'{med(mid) * 1e3:.0f}' if mid else '-'} | {med(new) * 1e3:.0f} | "
          f"{med(ratios):.2f} | {f'{med(versus):.2f}' if versus else '-'} |")
    print(f"\n{label}: median {med(new) * 1e3:.0f} ms (numpy's formulas {med(old) * 1e3:.0f} ms"
          + (f", {ref} {med(mid) * 1e3:.0f} ms" if mid else "") + "), ratio per pair to numpy's "
          + ", ".join(f"{r:.2f}" for r in ratios)
          + (f"; to {ref} " + ", ".join(f"{r:.2f}" for r in versus) if versus else "")
          + "; every pair's maps identical", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--rows", type=int, default=2167)
    p.add_argument("--cols", type=int, default=2070)
    p.add_argument("--baseline", default="main", help="git ref whose code builds the maps too (\"\": none)")
    args = p.parse_args()
    return_freed_memory()  # as a daemon runs: every large array its own mapping, its pages touched fresh
    warm_up()
    polarbins.warm_up()
    shape = (args.rows, args.cols)
    good = mask(shape)
    base = Baseline(args.baseline, good) if args.baseline else None
    try:
        pairs(FOUR, shape, good, args.pairs, 0, base, args.baseline)
        pairs(SIX, shape, good, args.pairs, 1000, base, args.baseline)
    finally:
        if base is not None:
            base.close()
    print(f"\n(machine: {os.cpu_count()} cores, shared with other work)")


if __name__ == "__main__":
    main()
