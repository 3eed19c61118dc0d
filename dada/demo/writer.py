"""Write synthetic scans as Eiger-like master + data files or plain HDF5 stacks.

The layout follows the Dectris Eiger files (see the README's "Data layout"):
bitshuffle-LZ4 frames one per chunk in ``*_data_NNNNNN.h5``, linked from
``*_master.h5`` with the geometry, pixel mask and count cutoff. The truth maps
go next to the data as ``NAME_truth.npz``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import h5py
import hdf5plugin
import numpy as np

from dada.demo.sample import Detector, FrameModel, Truth, make_truth
from dada.selection import ScanGrid

Progress = Callable[[str], None]


def to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ScanSpec:
    vert: int
    horz: int
    detector: Detector
    frames_per_file: int
    snake: bool = False
    seed: int = 0
    quick: bool = False  # benchmarks: every frame distinct and noisy, made faster (FrameModel.quick_frame)


def _frames(spec: ScanSpec, truth: Truth, mask: np.ndarray, rng: np.random.Generator):
    """Frames in acquisition order."""
    grid = ScanGrid(spec.vert, spec.horz, "horz", spec.snake)
    model = FrameModel(spec.detector, truth)
    order = np.empty(grid.npoints, dtype=np.int64)
    vv, hh = np.meshgrid(np.arange(spec.vert), np.arange(spec.horz), indexing="ij")
    order[grid.frame_index(vv, hh).ravel()] = np.arange(grid.npoints)
    make = model.quick_frame if spec.quick else model.frame
    for k in order:
        v, h = divmod(int(k), spec.horz)
        yield make(v, h, rng, mask)


def _scalar(g: h5py.Group, name: str, value: float, units: str | None = None) -> None:
    d = g.create_dataset(name, data=value)
    if units:
        d.attrs["units"] = units


def write_eiger(
    folder: str,
    name: str,
    spec: ScanSpec,
    written: int | None = None,
    progress: Progress = to_stderr,
) -> Truth:
    """Write ``name_master.h5`` and its data files; only the first ``written`` frames if given."""
    os.makedirs(folder, exist_ok=True)
    det = spec.detector
    rng = np.random.default_rng(spec.seed)
    truth = make_truth(spec.vert, spec.horz)
    mask = det.pixel_mask(rng)
    total = spec.vert * spec.horz
    written = total if written is None else written
    nfiles = -(-total // spec.frames_per_file)
    frames = _frames(spec, truth, mask, rng)
    master = os.path.join(folder, f"{name}_master.h5")
    with h5py.File(master, "w") as m:
        m.attrs["NX_class"] = "NXroot"
        entry = m.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        d = entry.create_group("instrument/detector")
        d.attrs["NX_class"] = "NXdetector"
        cx, cy = det.beam_center
        _scalar(d, "beam_center_x", cx, "pixel")
        _scalar(d, "beam_center_y", cy, "pixel")
        _scalar(d, "x_pixel_size", det.pixel_size, "m")
        _scalar(d, "y_pixel_size", det.pixel_size, "m")
        _scalar(d, "detector_distance", det.distance, "m")
        _scalar(d, "count_time", 0.01, "s")
        _scalar(d, "bit_depth_image", np.dtype(det.dtype).itemsize * 8)
        s = d.create_group("detectorSpecific")
        s.create_dataset("pixel_mask", data=mask, compression="gzip")
        _scalar(s, "nimages", total)
        _scalar(s, "ntrigger", 1)
        _scalar(s, "countrate_correction_count_cutoff", det.saturation, "counts")
        _scalar(s, "x_pixels_in_detector", det.cols)
        _scalar(s, "y_pixels_in_detector", det.rows)
        _scalar(entry.create_group("instrument/beam"), "incident_wavelength", det.wavelength, "angstrom")
        sc = entry.create_group("scan")
        sc.create_dataset("grid_shape", data=np.array([spec.vert, spec.horz]))
        sc.create_dataset("fast_axis", data="horz")
        sc.create_dataset("snake", data=int(spec.snake))
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        for i in range(nfiles):
            lo = i * spec.frames_per_file
            n = min(spec.frames_per_file, total - lo)
            fname = f"{name}_data_{i + 1:06d}.h5"
            data[f"data_{i + 1:06d}"] = h5py.ExternalLink(fname, "/entry/data/data")
            if lo >= written:
                continue  # not yet written: the link dangles, as during a live scan
            with h5py.File(os.path.join(folder, fname), "w") as f:
                ds = f.create_dataset(
                    "entry/data/data",
                    shape=(n, det.rows, det.cols),
                    dtype=det.dtype,
                    chunks=(1, det.rows, det.cols),
                    **hdf5plugin.Bitshuffle(cname="lz4"),
                )
                ds.attrs["image_nr_low"] = lo + 1
                ds.attrs["image_nr_high"] = lo + n
                for j in range(min(n, written - lo)):
                    ds[j] = next(frames)
            progress(f"  {fname}: {min(n, written - lo)} of {n} frames")
    np.savez(os.path.join(folder, f"{name}_truth.npz"), **truth.as_dict(), beam_center=np.array([cx, cy]))
    return truth


def write_stack(path: str, spec: ScanSpec, dataset: str = "measurement/frames") -> Truth:
    """A plain HDF5 file with one 3-D dataset, no grid and no geometry: the generic case."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    truth = make_truth(spec.vert, spec.horz)
    mask = np.zeros((spec.detector.rows, spec.detector.cols), dtype=np.uint32)
    total = spec.vert * spec.horz
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            dataset,
            shape=(total, spec.detector.rows, spec.detector.cols),
            dtype=spec.detector.dtype,
            chunks=(1, spec.detector.rows, spec.detector.cols),
            compression="gzip",
            compression_opts=1,
        )
        for i, frame in enumerate(_frames(spec, truth, mask, rng)):
            ds[i] = frame
    return truth
