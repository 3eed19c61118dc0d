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
from dada.sources.scan import (
    FileStamp,
    Scan,
    Segment,
    check_stack,
    find_mask,
    local_get,
    read_geometry,
    read_grid,
    written_frames,
)


def find_stack(f: h5py.File, dataset_paths: Sequence[str], confine: Callable[[str], str | None] | None = None
               ) -> h5py.Dataset:
    for p in dataset_paths:
        obj = local_get(f, p, confine)
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
            return obj
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
    return local_get(f, found[0], confine)


def open_hdf5(
    name: str,
    path: str,
    handles: HandleCache,
    dataset_paths: Sequence[str],
    stamp: Callable[[str], FileStamp],
    confine: Callable[[str], str | None] | None = None,
) -> Scan:
    """``confine`` admits the files a virtual dataset may read (those inside the data root)."""
    f = handles.get(path)
    dset = find_stack(f, dataset_paths, confine)
    check_stack(dset)
    count = written_frames(dset)
    st = stamp(path)
    return Scan(
        name=name,
        kind="hdf5",
        segments=[Segment(path, dset.name, 0, count, st)],
        frame_shape=(int(dset.shape[1]), int(dset.shape[2])),
        dtype=np.dtype(dset.dtype),
        expected_frames=int(dset.shape[0]),
        grid=read_grid(f),
        geometry=read_geometry(f),
        stamps=(st,),
        handles=handles,
        mask_source=find_mask(f, path),
    )
