"""HDF5: every array as a dataset, parameters and provenance as attributes of the root."""

from __future__ import annotations

import io
import json
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


class _ImageFile(io.RawIOBase):
    """A file in one buffer allocated at the answer's size (zeroed pages cost nothing until written), so
    the answer is sent from the very memory HDF5 wrote: the core driver's image would be copied out once
    more, a third copy of the arrays at the peak."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.buf, self.pos, self.end = bytearray(size), 0, 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.end - self.pos))
        b[:n] = self.buf[self.pos:self.pos + n]
        self.pos += n
        return n

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        stop = self.pos + data.nbytes
        if stop > len(self.buf):  # HDF5 needed more than planned: grow (a copy, rare)
            self.buf.extend(bytes(stop - len(self.buf)))
        self.buf[self.pos:stop] = data
        self.pos, self.end = stop, max(self.end, stop)
        return data.nbytes

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = offset + (0 if whence == io.SEEK_SET else self.pos if whence == io.SEEK_CUR else self.end)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def truncate(self, size: int | None = None) -> int:
        self.end = self.pos if size is None else size
        return self.end

    def image(self) -> memoryview:
        return memoryview(self.buf)[:self.end]


def encode(result: Result, render_args: dict[str, Any]) -> memoryview:
    out = _ImageFile(sum(a.nbytes for a in result.arrays.values()) + 2**20)
    with h5py.File(out, "w") as f:
        for name, a in result.arrays.items():
            f.create_dataset(name, data=a)
        for k, v in result.attrs.items():
            if v is not None:
                f.attrs[k] = attr_value(v)
    return out.image()
