"""A hostile data root for tests/test_hostile.py, and what /proc says about the daemon's processes.

Next to the root lies ``outside/``: a marker file, a FIFO and HDF5 files that every trick aims at.
Opening the FIFO for reading blocks, so a request that tried would never be answered; the marker's
bytes must never come back in an answer.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import site
import sys
from dataclasses import dataclass

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle, to rewrite demo data files)
import numpy as np
from numpy.lib import format as npy_format

MARKER = b"HOSTILE-MARKER-7f3a9c-OUTSIDE-THE-ROOT"
U16 = "eiger/u16/scan_0001"  # 6x8 points of 64x72 uint16 frames, 20 per data file
FRAME_SHAPE = (64, 72)


@dataclass(frozen=True)
class World:
    base: str
    root: str
    outside: str
    fifo: str
    cache: str


def _h5(path: str, **datasets: object) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name.replace("__", "/")] = value


def _eiger_copy(root: str, name: str) -> str:
    """A copy of the u16 demo scan in ``bad/NAME/``; returns the folder."""
    folder = os.path.join(root, "bad", name)
    shutil.copytree(os.path.join(root, "eiger/u16"), folder)
    return folder


def _flip_bits(path: str, index: int, seed: int = 1, count: int = 20) -> None:
    with h5py.File(path, "r") as f:
        info = f["entry/data/data"].id.get_chunk_info(index)
    data = bytearray(open(path, "rb").read())  # noqa: SIM115
    rng = random.Random(seed)
    for _ in range(count):
        data[info.byte_offset + rng.randrange(info.size)] ^= 1 << rng.randrange(8)
    with open(path, "wb") as fh:
        fh.write(bytes(data))


def _outside(outside: str) -> str:
    """The targets outside the root; returns the FIFO."""
    os.makedirs(outside)
    with open(os.path.join(outside, "marker.txt"), "wb") as fh:
        fh.write(MARKER * 4)
    stack = np.frombuffer(MARKER, dtype=np.uint8).reshape(1, 1, -1).repeat(4, axis=0)
    _h5(os.path.join(outside, "secret.h5"), entry__data__data=stack)
    shutil.copy(os.path.join(outside, "secret.h5"), os.path.join(outside, "scan_0009_master.h5"))
    np.save(os.path.join(outside, "mask.npy"), np.zeros(FRAME_SHAPE, dtype=bool))
    fifo = os.path.join(outside, "fifo")
    os.mkfifo(fifo)
    for name in ("fifo.h5", "fifo_master.h5", "fifo.npy"):
        os.symlink(fifo, os.path.join(outside, name))
    return fifo


def _links(root: str, outside: str, fifo: str) -> None:
    """Symlinks and HDF5 links inside the root that point out of it."""
    links = os.path.join(root, "links")
    os.makedirs(links)
    for name, target in {"secret.h5": "secret.h5", "escape_master.h5": "scan_0009_master.h5",
                         "pipe.h5": "fifo", "pipe_master.h5": "fifo", "door": "", "marker.h5": "marker.txt"}.items():
        os.symlink(os.path.join(outside, target), os.path.join(links, name))
    os.symlink("../../outside/secret.h5", os.path.join(links, "relative.h5"))
    os.mkfifo(os.path.join(links, "local_pipe.h5"))  # a FIFO inside the root, named like a scan
    secret = os.path.join(outside, "secret.h5")
    with h5py.File(os.path.join(links, "elink.h5"), "w") as f:
        f["entry/data/data"] = h5py.ExternalLink(secret, "/entry/data/data")
    with h5py.File(os.path.join(links, "elink_fifo.h5"), "w") as f:
        f["entry/data/data"] = h5py.ExternalLink(fifo, "/entry/data/data")
    with h5py.File(os.path.join(links, "vds.h5"), "w") as f:
        layout = h5py.VirtualLayout((4, 1, len(MARKER)), np.uint8)
        layout[:] = h5py.VirtualSource(secret, "entry/data/data", (4, 1, len(MARKER)))
        f.create_virtual_dataset("entry/data/data", layout)
    with h5py.File(os.path.join(links, "external.h5"), "w") as f:
        f.create_dataset("entry/data/data", (1, 1, len(MARKER)), dtype=np.uint8,
                         external=[(os.path.join(outside, "marker.txt"), 0, len(MARKER))])
    folder = _eiger_copy(root, "geometry_link")
    with h5py.File(os.path.join(folder, "scan_0001_master.h5"), "a") as f:
        det = f["entry/instrument/detector"]
        del det["beam_center_x"], det["detectorSpecific/pixel_mask"]
        det["beam_center_x"] = h5py.ExternalLink(fifo, "/x")
        det["detectorSpecific/pixel_mask"] = h5py.ExternalLink(secret, "/entry/data/data")
    masks = os.path.join(root, "masks")
    os.makedirs(masks)
    np.save(os.path.join(masks, "ok.npy"), np.zeros(FRAME_SHAPE, dtype=bool))
    for name, target in {"out.npy": "mask.npy", "pipe.npy": "fifo", "marker.npy": "marker.txt"}.items():
        os.symlink(os.path.join(outside, target), os.path.join(masks, name))
    os.mkfifo(os.path.join(masks, "local_pipe.npy"))
    with h5py.File(os.path.join(masks, "elink.h5"), "w") as f:
        f["mask"] = h5py.ExternalLink(os.path.join(outside, "secret.h5"), "/entry/data/data")


def _bad_masks(root: str) -> None:
    masks = os.path.join(root, "masks")
    open(os.path.join(masks, "empty.npy"), "wb").close()
    np.save(os.path.join(masks, "struct.npy"), np.zeros(FRAME_SHAPE, dtype=[("a", "i4")]))
    np.save(os.path.join(masks, "text.npy"), np.full(FRAME_SHAPE, "x"))
    np.save(os.path.join(masks, "shape.npy"), np.zeros((3, 3)))
    with open(os.path.join(masks, "huge.npy"), "wb") as fh:  # a header promising 320 GB
        npy_format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (200000, 200000)})
        fh.write(b"\0" * 64)
    _h5(os.path.join(masks, "compound.h5"), mask=np.zeros(FRAME_SHAPE, dtype=[("a", "i4")]))
    _h5(os.path.join(masks, "two.h5"), a=np.zeros(FRAME_SHAPE), b=np.zeros((500, 500)))
    with open(os.path.join(masks, "text.h5"), "w") as fh:
        fh.write("not HDF5\n")


def _corrupt(root: str) -> None:
    """Truncated, corrupted and ill-formed scans below ``bad/``."""
    master = _eiger_copy(root, "master_half") + "/scan_0001_master.h5"
    os.truncate(master, os.path.getsize(master) // 2)
    data = _eiger_copy(root, "data_half") + "/scan_0001_data_000002.h5"
    os.truncate(data, os.path.getsize(data) // 2)
    _flip_bits(_eiger_copy(root, "flipped") + "/scan_0001_data_000001.h5", 2)
    with h5py.File(_eiger_copy(root, "ndim") + "/scan_0001_data_000002.h5", "w") as f:
        f["entry/data/data"] = np.zeros(FRAME_SHAPE, dtype=np.uint16)
    with h5py.File(_eiger_copy(root, "shape") + "/scan_0001_data_000002.h5", "w") as f:
        f["entry/data/data"] = np.zeros((20, 32, 72), dtype=np.uint16)
    with h5py.File(_eiger_copy(root, "dtype") + "/scan_0001_data_000002.h5", "w") as f:
        f["entry/data/data"] = np.zeros((20, *FRAME_SHAPE), dtype=np.float64)
    with h5py.File(_eiger_copy(root, "metadata") + "/scan_0001_master.h5", "a") as f:
        spec = f["entry/instrument/detector/detectorSpecific"]
        del spec["nimages"], f["entry/scan/grid_shape"]
        spec["nimages"] = np.nan
        f["entry/scan/grid_shape"] = "six by eight"
    bad = os.path.join(root, "bad")
    open(os.path.join(bad, "zero_master.h5"), "wb").close()
    open(os.path.join(bad, "zero.h5"), "wb").close()
    with open(os.path.join(bad, "text.h5"), "w") as fh:
        fh.write("this is not HDF5\n" * 64)
    frames = {"flat": np.zeros((4, 64), dtype=np.uint16), "strings": np.full((4, 8, 8), b"ab"),
              "compound": np.zeros((4, 8, 8), dtype=[("a", "i4"), ("b", "f4")]),
              "complex": np.zeros((4, 8, 8), dtype=complex), "half": np.zeros((4, 8, 8), dtype=np.float16),
              "no_pixels": np.zeros((4, 0, 8), dtype=np.uint16), "floats": np.ones((4, 8, 8), dtype=np.float32)}
    for name, stack in frames.items():
        _h5(os.path.join(bad, f"{name}.h5"), entry__data__data=stack)
    grids = {"huge_grid": [1_000_000, 1_000_000], "negative_grid": [-2, -2], "one_number_grid": [4]}
    for name, grid in grids.items():
        _h5(os.path.join(bad, f"{name}.h5"), entry__data__data=np.zeros((4, 8, 8), dtype=np.uint16),
            entry__scan__grid_shape=np.array(grid))


def _bad_tomography(root: str) -> None:
    """NXtomo and TDF files whose stacks, keys or angles do not fit together, below ``badtomo/``."""
    folder = os.path.join(root, "badtomo")
    os.makedirs(folder)
    nxtomo = os.path.join(root, "tomo/nxtomo_0001.h5")
    with h5py.File(nxtomo, "r") as f:
        images, rows, cols = f["entry/data/data"].shape
    changes = {"strings": ("data", np.full((images, 4, 4), b"a")), "complex": ("data", np.zeros((4, 4, 4), complex)),
               "few_keys": ("image_key", np.zeros(3, dtype=int)), "no_projections": ("image_key", np.ones(images)),
               "text_keys": ("image_key", np.array([b"x"] * images)), "two_angles": ("rotation_angle", np.zeros(2)),
               "nan_angles": ("rotation_angle", np.full(images, np.nan))}
    for name, (dataset, value) in changes.items():
        path = os.path.join(folder, f"{name}.h5")
        shutil.copy(nxtomo, path)
        with h5py.File(path, "a") as f:
            del f[f"entry/data/{dataset}"]
            f[f"entry/data/{dataset}"] = value
    _h5(os.path.join(folder, "flat_shape.h5"), data=np.ones((rows, 16, cols), np.float32),
        data_white=np.ones((rows, 2, cols // 2), np.float32))


def build(base: str, demo_root: str) -> World:
    """The demo data plus everything hostile, below ``base``."""
    root, outside = os.path.join(base, "root"), os.path.join(base, "outside")
    shutil.copytree(demo_root, root)
    fifo = _outside(outside)
    _links(root, outside, fifo)
    _bad_masks(root)
    _corrupt(root)
    _bad_tomography(root)
    return World(base, os.path.realpath(root), os.path.realpath(outside), fifo, os.path.join(base, "cache"))


def fifo_has_reader(fifo: str) -> bool:
    """Whether some process holds the FIFO open for reading; if so it is released (it reads EOF)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody reads it
        return False
    os.close(fd)
    return True


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the local nodes, HDF5 reader processes), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for path in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                with open(path) as fh:
                    todo += [int(c) for c in fh.read().split()]
            except OSError:
                continue
    return out


def open_files(pids: list[int]) -> dict[int, list[str]]:
    """What each process's file descriptors point at; not 0-2, which whoever started it chose (the tests
    send a daemon's log to a temporary file)."""
    out: dict[int, list[str]] = {}
    for p in pids:
        targets = []
        for fd in glob.glob(f"/proc/{p}/fd/*"):
            if int(os.path.basename(fd)) <= 2:
                continue
            try:
                targets.append(os.readlink(fd))
            except OSError:
                continue
        out[p] = targets
    return out


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def allowed_places(world: World) -> tuple[str, ...]:
    """Where the daemon's descriptors may point: the data root, its cache, devices, Python itself."""
    import dada

    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    return (world.root + os.sep, os.path.realpath(world.cache) + os.sep, "/dev/", "/proc/",
            os.path.dirname(os.path.realpath(dada.__file__)) + os.sep,
            *(os.path.realpath(p) + os.sep for p in python))


def foreign(world: World, pids: list[int]) -> list[tuple[int, str]]:
    """Descriptors pointing anywhere but the allowed places (sockets, pipes and the like aside)."""
    places = allowed_places(world)
    kinds = ("socket:", "pipe:", "anon_inode:", "/memfd:")
    return [(p, t) for p, targets in open_files(pids).items() for t in targets
            if not t.startswith(kinds) and not t.startswith(places)]
