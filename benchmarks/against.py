"""This tree's STXM pass against another commit's, on the files of stxm.py, measured in one run.

    python benchmarks/against.py REV [--dir DIR] [--pairs 7] [--only NAME]

Says whether a change kept the speed of the four channels (darkfield, dpc, azimuthal, radial) fused.
REV is checked out into a temporary git worktree. For each file of ``stxm.py``:

* **fused, in process**: each tree's pass on 2 threads over the whole scan, in a process of its own
  (its kernels compiled and warmed first, then the median of 5 runs is one figure); the two trees'
  processes alternate, ``--pairs`` times, and every pair's ratio is printed, then the median;
* **over HTTP**: ``/stxm`` (h5, every output) from a ``dada serve`` of each tree with its result caches
  off, the same URL asked of each in turn, ``--pairs`` times after a warm-up. Every answer of both is
  read back and compared array by array: NaN where the other has NaN, numbers equal to 1e-9
  (a change may add in another order).

Ratios are REV's time over ours: above 1 we are faster.
"""

from __future__ import annotations

import argparse
import inspect
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TREE, "tests"))

FOUR = ("darkfield", "dpc", "azimuthal", "radial")
ARGS = {"cx": None, "cy": None, "usermask": None, "rmin": 10.0, "rmax": None, "rdpc": 10.0, "nsectors": 16,
        "nbins": 100, "unit": "px", "reduce": "none", "reference": "beam", "rotation": 0.0, "flip": False}
RUNS = 5  # timed runs per worker process


def worker(folder: str, name: str) -> None:
    """In a process whose PYTHONPATH is one tree: print the median seconds of that tree's fused pass."""
    from dada.registry import CHANNELS
    from dada.sources.catalog import Catalog
    from dada.stxm.beam import geometry
    from dada.stxm.engine import Engine
    from dada.stxm.pixelmaps import fuse

    channels = {c.name: c for c in CHANNELS}
    scan = Catalog({"": folder}).scan(name)
    geo = geometry(scan, ARGS, None)
    bins = [channels[c].bins(geo, ARGS) for c in FOUR]
    if "accumulators" in inspect.signature(fuse).parameters:
        maps = fuse(bins, [channels[c].accumulators for c in FOUR], geo)
    else:  # commits before channels declared their accumulators
        maps = fuse(bins, geo)
    engine = Engine(2)
    frames = np.arange(scan.nframes)
    engine.run(scan, frames, maps, geo)
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        engine.run(scan, frames, maps, geo)
        times.append(time.perf_counter() - t0)
    print(statistics.median(times))


def in_process(tree: str, folder: str, name: str) -> float:
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", folder, name], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def arrays(body: bytes) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(body), "r") as f:
        f.visititems(lambda path, obj: found.__setitem__(path, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


SAME = 1e-9  # relative: a change may add in another order (last bits), never change a result


def same(theirs: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> None:
    """Every output REV answers, ours answers too, equal to ``SAME`` and NaN exactly where it has NaN; stops the
    benchmark otherwise."""
    for path, a in theirs.items():
        b = ours.get(path)
        if b is None or a.shape != b.shape:
            raise SystemExit(f"the answers differ at {path}: shape {a.shape} against {None if b is None else b.shape}")
        if a.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                raise SystemExit(f"the answers differ at {path}")
        elif not (np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(a, b, rtol=SAME, atol=SAME, equal_nan=True)):
            raise SystemExit(f"the answers differ at {path} by up to {np.nanmax(np.abs(a - b)):.3g}")


def ratios(label: str, pairs: list[tuple[float, float]]) -> float:
    for i, (theirs, ours) in enumerate(pairs, 1):
        print(f"|   pair {i}: REV {theirs * 1e3:8.1f} ms, ours {ours * 1e3:8.1f} ms → {theirs / ours:.3f}×")
    r = [t / o for t, o in pairs]
    print(f"| {label}: median {statistics.median(r):.3f}× (lowest {min(r):.3f}, highest {max(r):.3f}); "
          f"REV {statistics.median(t for t, _ in pairs) * 1e3:.1f} ms, ours "
          f"{statistics.median(o for _, o in pairs) * 1e3:.1f} ms", flush=True)
    return statistics.median(r)


def over_http(old: str, folder: str, name: str, count: int) -> float:
    from helpers import Daemon

    config = os.path.join(folder, "no-cache.toml")
    with open(config, "w") as f:
        f.write("cache_memory_bytes = 0\ncache_disk_bytes = 0\nanswer_cache_bytes = 0\n")
    args = ["serve", folder, "--max-frames", "10000000", "--config", config]
    # PYTHONSAFEPATH: no current directory first on the path, so each daemon imports its own tree
    theirs, ours = (Daemon(args, env={"PYTHONPATH": tree, "PYTHONSAFEPATH": "1"}) for tree in (old, TREE))
    url = f"/stxm/{name}.h5?channels={','.join(FOUR)}"
    try:
        def ask(d: Daemon) -> tuple[float, dict[str, np.ndarray]]:
            t0 = time.perf_counter()
            r = d.get(url, timeout=600)
            took = time.perf_counter() - t0
            if r.status != 200:
                raise SystemExit(f"{url}: {r.status} {r.body[:300]!r}")
            return took, arrays(r.body)

        pairs = []
        for i in range(count + 1):  # the first pair warms both up (pixel maps built), and is not counted
            t_theirs, a_theirs = ask(theirs)
            t_ours, a_ours = ask(ours)
            same(a_theirs, a_ours)
            if i:
                pairs.append((t_theirs, t_ours))
        return ratios(f"{name}: /stxm over HTTP, result caches off", pairs)
    finally:
        theirs.stop()
        ours.stop()


def main() -> None:
    from common import eiger_file
    from stxm import CASES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rev", help="the commit to compare with (anything git rev-parse takes)")
    p.add_argument("--dir", help="where the test files go (kept and reused); default: a temporary folder")
    p.add_argument("--pairs", type=int, default=7, help="interleaved (REV, ours) pairs per figure")
    p.add_argument("--only", action="append", choices=[c[0] for c in CASES], help="these files only")
    a = p.parse_args()
    folder = a.dir or tempfile.mkdtemp(prefix="dada-against-")
    os.makedirs(folder, exist_ok=True)
    sha = subprocess.run(["git", "-C", TREE, "rev-parse", a.rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    old = tempfile.mkdtemp(prefix="dada-rev-")
    subprocess.run(["git", "-C", TREE, "worktree", "add", "--detach", old, sha], check=True, capture_output=True)
    print(f"REV = {a.rev} ({sha[:10]}), ours = the working tree at {TREE}; load average {os.getloadavg()}")
    summary = []
    try:
        for name, rows, cols, dtype, side in CASES:
            if a.only and name not in a.only:
                continue
            eiger_file(folder, name, side, side, rows, cols, dtype)
            print(f"\n{name}: {side}×{side} frames of {rows}×{cols} {dtype}, four channels fused on 2 threads")
            in_process(old, folder, name), in_process(TREE, folder, name)  # numba's caches written, once
            pairs = [(in_process(old, folder, name), in_process(TREE, folder, name)) for _ in range(a.pairs)]
            summary.append((name, "fused, in process", ratios(f"{name}: fused, in process", pairs)))
            summary.append((name, "/stxm over HTTP", over_http(old, folder, name, a.pairs)))
    finally:
        subprocess.run(["git", "-C", TREE, "worktree", "remove", "--force", old], check=False, capture_output=True)
    print(f"\nSummary (REV's time over ours, median of {a.pairs} pairs; above 1 we are faster):")
    for name, what, r in summary:
        print(f"  {name:14s} {what:20s} {r:.3f}×")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(*sys.argv[2:4])
    else:
        main()
