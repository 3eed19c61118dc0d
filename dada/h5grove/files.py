"""HDF5 files as h5grove sees them, confined: no link, external storage or virtual dataset out of bounds.

h5grove's content functions look entities up by path on the file object they are given
(``h5file.get(path, getlink=True)``, ``h5file[path]``) and let HDF5 follow soft and external links.
:class:`ConfinedFile` is that file object with the lookups walked link by link first: an external
link counts only if its target is a regular file that ``admits`` (inside the data root, granted to
the request's token); otherwise the link stays unresolved, as a dangling one does for h5grove.
Data are read only from datasets whose storage lies inside the file or admitted files.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from typing import Any

import h5py

from dada.errors import Unprocessable
from dada.sources.scan import stored_inside

MAX_SOFT_LINKS = 16  # a chain longer than this (or a loop) counts as unresolved


class ConfinedFile(h5py.File):
    """An open file (shared with dada's handle cache) whose path lookups never leave the admitted files."""

    def __init__(self, handle: h5py.File, admits: Callable[[str], str | None]) -> None:
        super().__init__(handle.id)
        self.admits = admits

    def __getitem__(self, name: Any) -> Any:
        if not isinstance(name, str):
            return super().__getitem__(name)
        return self._walk(self, name, 0)

    def get(self, name: Any, default: Any = None, getclass: bool = False, getlink: bool = False) -> Any:
        if not isinstance(name, str):
            return super().get(name, default, getclass, getlink)
        head, tail = posixpath.split(name.rstrip("/") or "/")
        try:
            parent = self._walk(self, head, 0)
        except KeyError:
            return default
        if not tail:
            return h5py.HardLink() if getlink else parent
        if not isinstance(parent, h5py.Group):
            return default
        if getlink:
            return h5py.Group.get(parent, tail, default, getclass, getlink=True)
        try:
            return self._walk(parent, tail, 0)
        except KeyError:
            return default

    def _walk(self, start: h5py.Group, path: str, depth: int) -> Any:
        """The object at ``path`` from ``start``, each link checked before HDF5 follows it; KeyError if one
        is dangling, loops, or leads to a file not admitted."""
        obj: Any = h5py.File(start.file.id)["/"] if path.startswith("/") else start
        for part in (p for p in path.split("/") if p):
            if not isinstance(obj, h5py.Group):
                raise KeyError(f"{path}: {obj.name} is not a group")
            link = h5py.Group.get(obj, part, getlink=True)
            if isinstance(link, h5py.SoftLink):
                if depth >= MAX_SOFT_LINKS:
                    raise KeyError(f"{path}: too many soft links")
                obj = self._walk(obj, link.path, depth + 1)
            elif isinstance(link, h5py.ExternalLink):
                # HDF5 opens an absolute name as is, a relative one next to the linking file (once no prefix
                # from the environment comes first): the file checked here is the one it opens
                here = os.path.dirname(obj.file.filename)
                target = self.admits(os.path.join(here, link.filename))  # join keeps an absolute name as is
                if target is None or not os.path.isfile(target) or os.environ.get("HDF5_EXT_PREFIX"):
                    raise KeyError(f"{path}: the external link {part} leads to no file served here")
                obj = h5py.Group.__getitem__(obj, part)
            elif isinstance(link, h5py.HardLink):
                obj = h5py.Group.__getitem__(obj, part)
            else:
                raise KeyError(f"{path}: no such object")
        return obj


def readable(dset: h5py.Dataset, admits: Callable[[str], str | None]) -> None:
    """422 unless the dataset's values lie in its file or admitted files (not external raw storage, nor a
    virtual dataset's sources elsewhere)."""
    if not stored_inside(dset, admits):
        raise Unprocessable(f"{os.path.basename(dset.file.filename)}:{dset.name} keeps its data outside "
                            "the files served here")
