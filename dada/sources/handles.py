"""A bounded cache of open HDF5 files, so repeated frame reads skip the open.

Entries are keyed by path, size and mtime: a file that grows or is rewritten
gets a fresh handle (HDF5 caches metadata per open file), and a stale one is
released when evicted.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4 filters with HDF5)

from dada.errors import Unprocessable


class HandleCache:
    def __init__(self, capacity: int = 64) -> None:
        self.capacity = max(1, capacity)
        self._lock = threading.Lock()
        self._files: OrderedDict[tuple[str, int, int], h5py.File] = OrderedDict()
        self.opens = 0

    def get(self, path: str) -> h5py.File:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        with self._lock:
            f = self._files.get(key)
            if f is not None:
                self._files.move_to_end(key)
                return f
            # HDF5 shares one open file per path within a process: a stale handle would hand its old
            # metadata to the new open, so a changed file's old handle is closed first.
            for old in [k for k in self._files if k[0] == path]:
                self._files.pop(old).close()
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise Unprocessable(f"{os.path.basename(path)} cannot be opened as HDF5: {exc}") from None
        with self._lock:
            if key in self._files:  # another thread opened it meanwhile
                f.close()
                return self._files[key]
            self.opens += 1
            self._files[key] = f
            while len(self._files) > self.capacity:
                # Not closed explicitly: a reader may still hold it; HDF5 closes it
                # when the last reference goes.
                self._files.popitem(last=False)
            return f

    def __len__(self) -> int:
        return len(self._files)

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()
