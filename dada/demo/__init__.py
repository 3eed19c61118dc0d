"""``dada demo``: a data root of synthetic scans with planted truth.

Layout below the root::

    eiger/u16/scan_0001_master.h5 (+ data files, truth)   uint16, raster
    eiger/u32/scan_0002_master.h5 (+ data files, truth)   uint32, snake
    generic/stack_0001.h5                                 plain HDF5, no grid, no geometry
    live/scan_0003_master.h5                              being written: half the frames exist
    tomo/nxtomo_0001.h5, tomo/tdf_0001.h5                  tomography: Shepp–Logan phantom, off-centre axis
"""

from __future__ import annotations

import os
import time

from dada.demo.sample import Detector
from dada.demo.tomo import TomoSpec, write_nxtomo, write_tdf
from dada.demo.writer import Progress, ScanSpec, to_stderr, write_eiger, write_stack

# (vert, horz, rows, cols, frames per data file)
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (6, 8, 64, 72, 20),
    "small": (32, 40, 256, 240, 400),
    "medium": (64, 64, 512, 512, 1000),
    "realistic": (100, 100, 1065, 1030, 1000),
}

# tomography: (rows, cols, projections)
TOMO_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (16, 96, 120),
    "small": (32, 256, 360),
    "medium": (64, 512, 720),
    "realistic": (128, 1024, 900),
}

SCANS = ("eiger/u16/scan_0001", "eiger/u32/scan_0002", "generic/stack_0001", "live/scan_0003")


def make_demo(root: str, size: str = "small", progress: Progress = to_stderr) -> None:
    """Generate every demo scan below ``root`` (overwriting those of the same names)."""
    v, h, rows, cols, per_file = SIZES[size]
    t0 = time.monotonic()
    progress(f"dada demo: {size} scans ({v}x{h} points of {rows}x{cols}) into {root}")
    u16 = Detector(rows, cols, "uint16")
    u32 = Detector(rows, cols, "uint32")
    write_eiger(os.path.join(root, "eiger/u16"), "scan_0001", ScanSpec(v, h, u16, per_file, seed=1),
                progress=progress)
    write_eiger(os.path.join(root, "eiger/u32"), "scan_0002", ScanSpec(v, h, u32, per_file, snake=True, seed=2),
                progress=progress)
    write_stack(os.path.join(root, "generic/stack_0001.h5"), ScanSpec(v // 2 or 1, h, u16, per_file, seed=3))
    live = ScanSpec(v, h, u16, per_file, seed=4)
    write_eiger(os.path.join(root, "live"), "scan_0003", live, written=(v * h) // 2 + 1, progress=progress)
    rows, cols, nproj = TOMO_SIZES[size]
    write_nxtomo(os.path.join(root, "tomo/nxtomo_0001.h5"), TomoSpec(rows, cols, nproj, seed=5))
    write_tdf(os.path.join(root, "tomo/tdf_0001.h5"), TomoSpec(rows, cols, nproj, center_offset=-2.6, seed=6))
    progress(f"  tomo/nxtomo_0001.h5, tomo/tdf_0001.h5: {nproj} projections of {rows}x{cols}")
    progress(f"dada demo: done in {time.monotonic() - t0:.1f} s")


def demo_exists(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "eiger/u16/scan_0001_master.h5"))
