"""A raw 1 Mpixel frame through /h5grove/data/?format=bin (what h5web asks) vs dada's own /frame/…npy.

    python benchmarks/h5grove_api.py [--dir DIR] [--pairs 15] [--rows 1024] [--cols 1024]

One daemon (result and answer caches off, so every answer reads and decodes its frame) serves an
Eiger-like scan (bitshuffle-LZ4, one frame per chunk, uint32). Each pair asks both routes for the same
frame, a new frame each pair, the order alternating; each answer is checked against h5py's read of that
frame before it counts. Printed: every pair's times and ratio (frame route time / h5grove time: > 1 means
h5grove is faster), then the median.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from common import eiger_file  # noqa: E402
from helpers import Daemon  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="where the scan is written (reused if present); default: a temporary folder")
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cols", type=int, default=1024)
    args = ap.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="dada-bench-h5grove-")
    os.makedirs(folder, exist_ok=True)
    side = int(np.ceil(np.sqrt(args.pairs + 1)))
    name = f"frames_{args.rows}x{args.cols}_{side}x{side}"
    eiger_file(folder, name, side, side, args.rows, args.cols, "uint32")
    with h5py.File(os.path.join(folder, f"{name}_data_000001.h5")) as f:
        stack = f["entry/data/data"]
        filters = ", ".join(f"filter {k}" for k in stack._filters)  # 32008: bitshuffle (LZ4)
        print(f"{stack.shape[1]}x{stack.shape[2]} {stack.dtype} frames, {filters}, {stack.chunks} chunks; "
              f"{args.pairs} pairs", flush=True)
        truth = [stack[i] for i in range(args.pairs + 1)]
    config = os.path.join(folder, "no-cache.toml")
    with open(config, "w") as f:
        f.write("cache_memory_bytes = 0\ncache_disk_bytes = 0\nanswer_cache_bytes = 0\n")
    d = Daemon(["serve", folder, "--config", config, "--local-nodes", "1"])
    try:
        def frame(i: int) -> np.ndarray:
            r = d.get(f"/frame/{name}/{i}.npy")
            assert r.status == 200, r.body[:300]
            return np.load(io.BytesIO(r.body))

        def grove(i: int) -> np.ndarray:
            r = d.get(f"/h5grove/data/?file={name}_master.h5&path=/entry/data/data_000001&selection={i}"
                      "&format=bin&dtype=safe")
            assert r.status == 200, r.body[:300]
            return np.frombuffer(r.body, dtype=truth[i].dtype).reshape(truth[i].shape)

        def timed(fn, i: int) -> float:
            t0 = time.perf_counter()
            value = fn(i)
            elapsed = time.perf_counter() - t0
            assert np.array_equal(value, truth[i]), f"{fn.__name__} answered frame {i} wrong"
            return elapsed

        frame(args.pairs)  # warm-up: the file handles, the first connection
        grove(args.pairs)
        ratios = []
        print("| pair | /frame/…npy ms | /h5grove/data bin ms | ratio |\n|---:|---:|---:|---:|")
        for i in range(args.pairs):
            if i % 2:
                g, fr = timed(grove, i), timed(frame, i)
            else:
                fr, g = timed(frame, i), timed(grove, i)
            ratios.append(fr / g)
            print(f"| {i} | {fr * 1e3:.1f} | {g * 1e3:.1f} | {fr / g:.2f} |", flush=True)
        print(f"\nratios: {' '.join(f'{r:.2f}' for r in ratios)}")
        print(f"median ratio (h5grove speed / frame route speed; target >= 0.9): {statistics.median(ratios):.2f}; "
              f"lowest {min(ratios):.2f}")
    finally:
        d.stop()


if __name__ == "__main__":
    main()
