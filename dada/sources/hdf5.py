"""Generic HDF5: any file holding a 3-D stack of frames.

The stack is the dataset at a configured path (first match of
``dataset_paths``) or, failing that, the one 3-D dataset in the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import h5py
import numpy as np

from dada.errors import Unprocessable
from dada.sources.handles import HandleCache
from dada.sources.scan import FileStamp, Scan, Segment, find_mask, read_geometry, read_grid, written_frames


def find_stack(f: h5py.File, dataset_paths: Sequence[str]) -> str:
    for p in dataset_paths:
        obj = f.get(p)
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
            return p
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
            found.append(name)

    f.visititems(visit)
    base = os.path.basename(f.filename)
    if not found:
        raise Unprocessable(f"{base} holds no 3-D dataset of frames")
    if len(found) > 1:
        raise Unprocessable(
            f"{base} holds several 3-D datasets ({', '.join(found)}); name one in the config's dataset_paths"
        )
    return found[0]


def open_hdf5(
    name: str,
    path: str,
    handles: HandleCache,
    dataset_paths: Sequence[str],
    stamp: Callable[[str], FileStamp],
) -> Scan:
    f = handles.get(path)
    dset_path = find_stack(f, dataset_paths)
    dset = f[dset_path]
    count = written_frames(dset)
    st = stamp(path)
    return Scan(
        name=name,
        kind="hdf5",
        segments=[Segment(path, dset_path, 0, count, st)],
        frame_shape=(int(dset.shape[1]), int(dset.shape[2])),
        dtype=np.dtype(dset.dtype),
        expected_frames=int(dset.shape[0]),
        grid=read_grid(f),
        geometry=read_geometry(f),
        stamps=(st,),
        handles=handles,
        mask_source=find_mask(f, path),
    )
