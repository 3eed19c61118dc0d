"""Dectris Eiger master + data files.

The master ``*_master.h5`` holds metadata and external links
``/entry/data/data_000001``, ``_000002``, … to data files of ``(n, H, W)``
frames. Data files are opened directly (not through the links) so that a
missing one marks the scan incomplete instead of failing, and so that a link
pointing outside the data root is never followed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

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
    read_scalar,
    written_frames,
)

DATA_LINK = re.compile(r"^data_(\d{6})$")
DATA_FILE = re.compile(r"_data_\d{6}\.h5$")


def open_eiger(
    name: str,
    master: str,
    handles: HandleCache,
    confine: Callable[[str], str | None],
    stamp: Callable[[str], FileStamp],
) -> Scan:
    """Build a Scan from a master file.

    ``confine`` maps a data file path to its real path inside the data root, or
    None when it lies outside (then it is treated as missing); ``stamp`` gives
    a file's identity entry.
    """
    f = handles.get(master)
    data = local_get(f, "entry/data")
    if not isinstance(data, h5py.Group):
        raise Unprocessable(f"{os.path.basename(master)} has no /entry/data group")
    segments: list[Segment] = []
    stamps = [stamp(master)]
    missing: list[str] = []
    like = None
    first = 0
    for key in sorted(k for k in data if DATA_LINK.match(k)):
        link = data.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            target = os.path.join(os.path.dirname(master), link.filename)
            real = confine(target)
            if real is None or not os.path.isfile(real):
                missing.append(link.filename)
                break  # frames after a gap have no place in the continuous index
            path, dset_path = real, link.path
        else:
            path, dset_path = master, f"entry/data/{key}"
        try:
            dset = local_get(handles.get(path), dset_path, confine)
        except OSError as exc:
            raise Unprocessable(f"data file {os.path.basename(path)} cannot be opened: {exc}") from None
        if not isinstance(dset, h5py.Dataset):
            raise Unprocessable(f"{os.path.basename(path)} has no dataset {dset_path}")
        check_stack(dset, like)
        like = like or (dset.shape[1:], dset.dtype)
        count = written_frames(dset)
        st = stamp(path)
        if path != master:
            stamps.append(st)
        segments.append(Segment(path, dset_path, first, count, st))
        first += count
        if count < dset.shape[0]:
            break  # this file is still being written
    if like is None:
        raise Unprocessable(f"{os.path.basename(master)} links to no data file that exists yet")
    nimages = read_scalar(f, ("entry/instrument/detector/detectorSpecific/nimages",))
    ntrigger = read_scalar(f, ("entry/instrument/detector/detectorSpecific/ntrigger",))
    total = nimages * (ntrigger or 1) if nimages else math.nan
    expected = int(total) if math.isfinite(total) and total >= 1 else None
    shape, dtype = like
    return Scan(
        name=name,
        kind="eiger",
        segments=segments,
        frame_shape=(int(shape[0]), int(shape[1])),
        dtype=np.dtype(dtype),
        expected_frames=expected,
        grid=read_grid(f),
        geometry=read_geometry(f),
        stamps=tuple(stamps),
        handles=handles,
        mask_source=find_mask(f, master),
        missing_files=tuple(missing),
    )
