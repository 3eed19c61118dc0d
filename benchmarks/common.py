"""Shared by the benchmarks: timing by medians, table printing, Eiger-like test files."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from dada.demo.sample import Detector
from dada.demo.writer import ScanSpec, write_eiger


def median_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def eiger_file(folder: str, name: str, vert: int, horz: int, rows: int, cols: int, dtype: str,
               unique: int = 64) -> str:
    """An Eiger-like scan (master + data files, bitshuffle-LZ4, one frame per chunk); reused if present."""
    master = os.path.join(folder, f"{name}_master.h5")
    if not os.path.exists(master):
        spec = ScanSpec(vert, horz, Detector(rows, cols, dtype), frames_per_file=1000, seed=11, unique=unique)
        write_eiger(folder, name, spec, progress=lambda m: None)
    return master


class Table:
    """Rows of (what, frames/s, GB/s, ratio to the baseline) printed as they come."""

    def __init__(self, title: str, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self.rows: list[tuple[str, float]] = []
        print(f"\n## {title}\n")
        print(f"| {'what':58s} | frames/s | GB/s (decompressed) | × baseline |")
        print(f"|{'-' * 60}|---------:|--------------------:|-----------:|")

    def add(self, what: str, fps: float, baseline: float | None) -> float:
        ratio = f"{fps / baseline:10.2f}" if baseline else " " * 10
        print(f"| {what:58s} | {fps:8.0f} | {fps * self.frame_bytes / 1e9:19.2f} | {ratio} |", flush=True)
        self.rows.append((what, fps))
        return fps
