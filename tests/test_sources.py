"""Readers and catalog against what the generator wrote, read back independently with h5py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from dada.demo import SIZES
from dada.demo.sample import Detector
from dada.errors import BadParameter, NotFound, Unprocessable
from dada.selection import GridShape
from dada.sources.catalog import Catalog

V, H, ROWS, COLS, PER_FILE = SIZES["tiny"]


def via_links(master: str) -> np.ndarray:
    """All frames by following the master's external links with h5py itself."""
    with h5py.File(master, "r") as f:
        keys = sorted(k for k in f["entry/data"] if k.startswith("data_"))
        return np.concatenate([f["entry/data"][k][()] for k in keys])


@pytest.mark.parametrize(("scan", "dtype"), [("eiger/u16/scan_0001", "uint16"), ("eiger/u32/scan_0002", "uint32")])
def test_eiger_multifile_index(demo_root, scan, dtype):
    cat = Catalog({"": demo_root})
    s = cat.scan(scan)
    frames = via_links(os.path.join(demo_root, scan + "_master.h5"))
    assert len(s.segments) == -(-V * H // PER_FILE) > 1
    assert s.nframes == frames.shape[0] == V * H
    assert s.dtype == np.dtype(dtype) and s.frame_shape == (ROWS, COLS)
    for n in range(s.nframes):
        np.testing.assert_array_equal(s.read_frame(n), frames[n])
    assert s.complete


def test_eiger_metadata_and_mask(demo_root):
    s = Catalog({"": demo_root}).scan("eiger/u32/scan_0002")
    det = Detector(ROWS, COLS, "uint32")
    g = s.geometry
    assert (g.beam_center_x, g.beam_center_y) == pytest.approx(det.beam_center)
    assert g.x_pixel_size == g.y_pixel_size == pytest.approx(det.pixel_size)
    assert g.detector_distance == pytest.approx(det.distance)
    assert g.wavelength == pytest.approx(det.wavelength)
    assert g.energy == pytest.approx(12.398, abs=1e-3)
    assert g.saturation == det.saturation
    assert s.grid.vert == V and s.grid.horz == H and s.grid.snake
    with h5py.File(os.path.join(demo_root, "eiger/u32/scan_0002_master.h5")) as f:
        mask = f["entry/instrument/detector/detectorSpecific/pixel_mask"][()]
    np.testing.assert_array_equal(s.bad_pixels(), mask != 0)
    assert (mask & 1).any() and (mask & 8).any()  # gaps and hot pixels were planted
    frame = s.read_frame(0)
    assert (frame[mask != 0] == np.iinfo(np.uint32).max).all()  # the detector's masking convention
    assert (frame >= det.saturation).sum() >= 1  # saturated pixels planted


def test_generic_hdf5_found_without_config(demo_root):
    cat = Catalog({"": demo_root})
    s = cat.scan("generic/stack_0001")
    with h5py.File(os.path.join(demo_root, "generic/stack_0001.h5")) as f:
        data = f["measurement/frames"][()]
    assert s.kind == "hdf5" and s.nframes == data.shape[0]
    np.testing.assert_array_equal(s.read_frame(5), data[5])
    assert s.grid is None
    with pytest.raises(BadParameter) as e:
        s.grid_for(None)
    assert e.value.details["parameter"] == "grid"
    g = s.grid_for(GridShape(3, 8))
    assert (g.vert, g.horz) == (3, 8)
    with pytest.raises(BadParameter):
        s.grid_for(GridShape(10, 10))  # more points than frames


def test_generic_with_two_stacks_needs_config(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((2, 3, 4))
        f["b"] = np.ones((2, 3, 4))
    with pytest.raises(Unprocessable, match="several 3-D datasets"):
        Catalog({"": tmp_path}).scan("two")
    s = Catalog({"": tmp_path}, dataset_paths=("b",)).scan("two")
    assert s.read_frame(1).sum() == 12


def test_incomplete_scan(demo_root):
    s = Catalog({"": demo_root}).scan("live/scan_0003")
    written = V * H // 2 + 1
    assert not s.complete
    assert s.nframes == written and s.expected_frames == V * H
    s.read_frame(written - 1)
    with pytest.raises(NotFound, match="not written yet"):
        s.check_frame(written)


def write_elsewhere(folder, written: int | None) -> None:
    """The detector writes from another process, as at the beamline."""
    code = (
        "from dada.demo.sample import Detector; from dada.demo.writer import ScanSpec, write_eiger; "
        f"write_eiger({str(folder)!r}, 'g', ScanSpec(2, 5, Detector(32, 32, 'uint16'), 4), written={written!r}, "
        "progress=lambda m: None)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_growing_scan_is_reread(tmp_path):
    """A scan being written: the catalog sees new frames as files appear and grow."""
    write_elsewhere(tmp_path, 3)
    cat = Catalog({"": tmp_path})
    assert cat.scan("g").nframes == 3
    write_elsewhere(tmp_path, 6)
    assert cat.scan("g").nframes == 6
    write_elsewhere(tmp_path, None)
    s = cat.scan("g")
    assert s.nframes == 10 and s.complete
    np.testing.assert_array_equal(s.read_frame(9), via_links(str(tmp_path / "g_master.h5"))[9])


def test_folder_holding_one_scan_and_file_names(demo_root):
    cat = Catalog({"": demo_root})
    assert cat.scan("eiger/u16").name == "eiger/u16"
    assert cat.scan("eiger/u16").kind == "eiger"
    assert cat.scan("generic/stack_0001.h5").kind == "hdf5"
    assert cat.scan("eiger/u16/scan_0001_master.h5").nframes == V * H
    with pytest.raises(NotFound):
        cat.scan("eiger")  # two sub-folders, no scan


def test_links_and_symlinks_out_of_root_are_not_followed(tmp_path, demo_root):
    outside = tmp_path / "outside"
    root = tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    shutil.copy(os.path.join(demo_root, "generic/stack_0001.h5"), outside / "secret.h5")
    os.symlink(outside / "secret.h5", root / "escape.h5")
    os.symlink(outside, root / "door")
    cat = Catalog({"": root})
    for path in ("escape", "escape.h5", "door/secret", "../outside/secret", "/etc/passwd"):
        with pytest.raises(NotFound):
            cat.scan(path)
    # A master whose external link points outside the root: that data file counts as missing.
    src = os.path.join(demo_root, "eiger/u16")
    for name in os.listdir(src):
        shutil.copy(os.path.join(src, name), outside / name)
    shutil.copy(outside / "scan_0001_master.h5", root / "evil_master.h5")
    with h5py.File(root / "evil_master.h5", "a") as f:
        del f["entry/data/data_000001"]
        f["entry/data/data_000001"] = h5py.ExternalLink(str(outside / "scan_0001_data_000001.h5"),
                                                        "/entry/data/data")
    with pytest.raises(Unprocessable, match="links to no data file"):
        cat.scan("evil")


def test_handle_cache_reuses_open_files(demo_root):
    cat = Catalog({"": demo_root})
    s = cat.scan("eiger/u16/scan_0001")
    for n in range(s.nframes):
        s.read_frame(n)
    opens = cat.handles.opens
    for n in range(s.nframes):
        s.read_frame(n)
    assert cat.handles.opens == opens
    assert cat.scan("eiger/u16/scan_0001") is s  # unchanged files: the parsed scan is reused
