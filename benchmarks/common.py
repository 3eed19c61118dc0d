"""Shared by the benchmarks: timing by medians, table printing, Eiger-like test files."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from dada.demo.sample import Detector
from dada.demo.writer import ScanSpec, write_eiger


def median_time(fn: Callable[[], object], repeats: int = 3,
                check: Callable[[object], None] | None = None) -> float:
    """Median wall time of ``repeats`` runs after one warm-up run; ``check`` sees every run's answer, warm-up
    included, after its time is taken (a fast wrong answer is no figure)."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        answer = fn()
        if i:
            times.append(time.perf_counter() - t0)
        if check is not None:
            check(answer)
    return statistics.median(times)


def eiger_file(folder: str, name: str, vert: int, horz: int, rows: int, cols: int, dtype: str) -> str:
    """An Eiger-like scan (master + data files, bitshuffle-LZ4, one frame per chunk); reused if present.
    Every frame is simulated with its own Poisson noise (no frame repeats another)."""
    master = os.path.join(folder, f"{name}_master.h5")
    if not os.path.exists(master):
        spec = ScanSpec(vert, horz, Detector(rows, cols, dtype), frames_per_file=1000, seed=11, quick=True)
        write_eiger(folder, name, spec, progress=lambda m: None)
    return master


class Table:
    """Rows of (what, frames/s, frames/s per core used, GB/s, ratio to the baseline) printed as they come."""

    def __init__(self, title: str, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self.rows: list[tuple[str, float]] = []
        print(f"\n## {title}\n")
        print(f"| {'what':76s} | frames/s | cores | per core | GB/s (decompressed) | × baseline |")
        print(f"|{'-' * 78}|---------:|------:|---------:|--------------------:|-----------:|")

    def add(self, what: str, fps: float, baseline: float | None, cores: int) -> float:
        """``cores``: the cores the tool ran on (its threads, processes or workers)."""
        ratio = f"{fps / baseline:10.2f}" if baseline else " " * 10
        print(f"| {what:76s} | {fps:8.0f} | {cores:5d} | {fps / cores:8.0f} | {fps * self.frame_bytes / 1e9:19.2f}"
              f" | {ratio} |", flush=True)
        self.rows.append((what, fps))
        return fps
