"""HDF5: every array as a dataset, parameters and provenance as attributes of the root."""

from __future__ import annotations

import json
import uuid
from typing import Any

import h5py
import numpy as np

from dada.endpoint import Result

NAME = "h5"
CONTENT_TYPE = "application/x-hdf5"


def attr_value(v: Any) -> Any:
    """HDF5 attributes take numbers, strings and arrays; anything else is stored as JSON text."""
    if isinstance(v, bool | int | float | str | np.generic):
        return v
    if isinstance(v, np.ndarray) and v.dtype.kind in "iufb":
        return v
    return json.dumps(v, default=str)


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    # An in-memory file, yet HDF5 refuses a second one of the same name open at once: one name per answer.
    # Its buffer is sized for the arrays up front: grown by small increments it is reallocated (and for
    # a moment held twice) many times over.
    size = sum(a.nbytes for a in result.arrays.values()) + 2**20
    with h5py.File(f"answer-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False, block_size=size) as f:
        for name, a in result.arrays.items():
            f.create_dataset(name, data=a)
        for k, v in result.attrs.items():
            if v is not None:
                f.attrs[k] = attr_value(v)
        f.flush()
        return f.id.get_file_image()
