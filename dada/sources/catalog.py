"""Map URL paths below the data root(s) to scans, and never anywhere else.

A scan path names, below a data root, an Eiger master (``name`` for
``name_master.h5``), a plain HDF5 file (with or without its extension), or a
folder holding exactly one of those. Every path is checked segment by segment
and again after resolving symlinks: whatever would land outside the root is a
404 and is never opened.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dada.confine import inside, segments
from dada.errors import BadParameter, DadaError, NotFound, Unavailable
from dada.sources.eiger import DATA_FILE, open_eiger
from dada.sources.handles import HandleCache
from dada.sources.hdf5 import open_hdf5
from dada.sources.scan import FileStamp, Scan
from dada.sources.tomo import TomoScan, is_tomo, open_tomo

HDF5_EXTS = (".h5", ".hdf5", ".nxs", ".hdf")
MASTER = "_master.h5"
# A name the file system cannot hold names nothing: absent (404), not a storage that does not answer (503).
ABSENT = (errno.ENAMETOOLONG, errno.ELOOP)


class Catalog:
    def __init__(
        self,
        roots: Mapping[str, str | os.PathLike[str]],
        handles: HandleCache | None = None,
        dataset_paths: Sequence[str] = ("entry/data/data",),
        recheck: float = 0.05,
    ) -> None:
        if not roots:
            raise ValueError("at least one data root is needed")
        self.recheck = recheck  # s: a complete scan's files are stat'ed again at most this often
        if "" in roots and len(roots) > 1:
            raise ValueError("an unnamed data root cannot be combined with named ones")
        self.roots = {k: os.path.realpath(v) for k, v in roots.items()}
        for k, v in self.roots.items():
            if not os.path.isdir(v):
                raise ValueError(f"data root {k or '(default)'} is not a folder: {v}")
        self._name_max = {v: _pathconf(v, "PC_NAME_MAX", 255) for v in self.roots.values()}
        self.handles = handles or HandleCache()
        self.dataset_paths = tuple(dataset_paths)
        self._lock = threading.Lock()
        self._scans: dict[str, tuple[Scan, float]] = {}  # by master file: the scan, when its files were checked
        self._tomos: dict[tuple[str, int, int], TomoScan] = {}

    # -- paths ----------------------------------------------------------------

    def _split(self, urlpath: str) -> tuple[str, list[str]]:
        """(real root, checked segments) for a URL path; 404 for anything suspicious."""
        parts = segments(urlpath)
        if parts is None:
            raise NotFound(f"no such path: {urlpath!r}")
        if "" in self.roots:
            root = self.roots[""]
        elif not parts or parts[0] not in self.roots:
            raise NotFound(f"no data root named {parts[0] if parts else ''!r}", roots=sorted(self.roots))
        else:
            root, parts = self.roots[parts[0]], parts[1:]
        limit = self._name_max[root]
        for p in parts:
            if len(os.fsencode(p)) > limit:
                raise NotFound(f"no such path: the name {p[:40]!r}… is {len(os.fsencode(p))} bytes long, longer "
                               f"than the storage allows ({limit}), so nothing has it")
        return root, parts

    @staticmethod
    def _inside(root: str, path: str) -> str | None:
        return inside(root, path)

    def _stamper(self, root: str):
        def stamp(path: str) -> FileStamp:
            st = os.stat(path)
            return FileStamp(os.path.relpath(path, root), st.st_size, st.st_mtime_ns, path)

        return stamp

    def locate(self, urlpath: str) -> tuple[str, str, str]:
        """(root, kind, real file) of the scan a URL path names; 404 if none."""
        root, parts = self._split(urlpath)
        base = os.path.join(root, *parts)
        candidates = [base + MASTER]
        if base.endswith(HDF5_EXTS):
            candidates.append(base)
        candidates += [base + ext for ext in HDF5_EXTS]
        for c in candidates:
            real = self._inside(root, c)
            if real and _is(real, stat.S_ISREG):
                return root, _kind(real), real
        real = self._inside(root, base)
        if real and _is(real, stat.S_ISDIR) and parts:
            scans = [e for e in _scan_entries(real)]
            if len(scans) == 1:
                inner = self._inside(root, os.path.join(real, scans[0]))
                if inner:
                    return root, _kind(inner), inner
            if len(scans) > 1:
                raise NotFound(
                    f"folder {urlpath!r} holds {len(scans)} scans; name one",
                    scans=[scan_name(s) for s in scans][:50],
                )
        raise NotFound(f"no scan at {urlpath!r}")

    def resolve_file(self, urlpath: str, parameter: str) -> str:
        """A plain file below a data root named by a parameter (e.g. a mask); 400 if there is none."""
        try:
            root, parts = self._split(urlpath)
        except NotFound:
            raise BadParameter(parameter, f"no file at {urlpath!r}", "a file path below the data root") from None
        real = self._inside(root, os.path.join(root, *parts))
        if real is None or not os.path.isfile(real):
            raise BadParameter(parameter, f"no file at {urlpath!r}", "a file path below the data root")
        return real

    def file_stamp(self, urlpath: str, parameter: str) -> FileStamp:
        """The identity (path below the root, size, mtime) of the file a parameter names; 400 if there is none."""
        real = self.resolve_file(urlpath, parameter)
        root, _ = self._split(urlpath)
        try:
            return self._stamper(root)(real)
        except OSError:
            raise BadParameter(parameter, f"no file at {urlpath!r}", "a file path below the data root") from None

    def names(self, urlpath: str, scan: Scan) -> bool:
        """Whether a URL path still leads to this scan's master file (a retargeted symlink, a new
        ``X_master.h5`` beside ``X.h5``, a folder with a second scan: no longer); a few stats, no HDF5."""
        try:
            return self.locate(urlpath)[2] == scan.stamps[0].real
        except DadaError:
            return False

    def file(self, urlpath: str) -> tuple[str, str]:
        """(real root, real path) of the regular file a URL path names below a data root; 404 if there is
        none there (checked before anything is opened: a FIFO or a symlink out of the root is no file)."""
        root, parts = self._split(urlpath)
        real = self._inside(root, os.path.join(root, *parts))
        if real is None or not _is(real, stat.S_ISREG):
            raise NotFound(f"no file at {urlpath!r}")
        return root, real

    def urlpath(self, root: str, real: str) -> str:
        """The URL path of a real path below ``root`` (one of the real roots): what grants name."""
        name = next(k for k, v in self.roots.items() if v == root)
        rel = os.path.relpath(real, root).replace(os.sep, "/")
        return "/".join(p for p in (name, "" if rel == "." else rel) if p)

    # -- scans ----------------------------------------------------------------

    def scan(self, urlpath: str) -> Scan:
        """The scan at a URL path, reusing the parsed scan while its files are unchanged."""
        name = urlpath.strip("/")
        root, kind, real = self.locate(urlpath)
        with self._lock:
            cached, checked = self._scans.get(real, (None, 0.0))
        now = time.monotonic()
        if cached is not None and cached.complete and (now - checked < self.recheck or _unchanged(cached)):
            if now - checked >= self.recheck:
                with self._lock:
                    self._scans[real] = (cached, now)
            return cached
        stamp = self._stamper(root)
        if kind == "eiger":
            scan = open_eiger(name, real, self.handles, lambda p: self._inside(root, p), stamp)
        else:
            scan = open_hdf5(name, real, self.handles, self.dataset_paths, stamp, lambda p: self._inside(root, p))
        with self._lock:
            self._scans[real] = (scan, now)
        return scan

    def fresh(self, scan: Scan) -> bool:
        """Whether this scan object is still the current one: its files checked a moment ago, or now
        (a stat per file, no HDF5 opened: cheap enough for the event loop's hot-answer path)."""
        real = scan.stamps[0].real
        with self._lock:
            cached, checked = self._scans.get(real, (None, 0.0))
        if cached is not scan:
            return False
        now = time.monotonic()
        if now - checked < self.recheck:
            return True
        if not _unchanged(scan):
            return False
        with self._lock:
            self._scans[real] = (scan, now)
        return True

    def tomo(self, urlpath: str) -> TomoScan:
        """The tomography file (NXtomo or TDF) at a URL path, reused while it is unchanged."""
        root, _, real = self.locate(urlpath)
        st = os.stat(real)
        key = (real, st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._tomos.get(key)
        if cached is None:
            cached = open_tomo(urlpath.strip("/"), real, root, self.handles)
            with self._lock:
                self._tomos[key] = cached
        return cached

    def holds_tomography(self, urlpath: str) -> bool:
        """Whether the scan file at a URL path is a tomography file (NXtomo or TDF), not a scan of frames."""
        _, kind, real = self.locate(urlpath)
        return kind != "eiger" and is_tomo(self.handles.get(real))

    def browse(self, urlpath: str) -> dict[str, Any]:
        """Folders and scans directly below a folder of the data root(s)."""
        if "" not in self.roots and not urlpath.strip("/"):
            return {"path": "", "folders": sorted(self.roots), "scans": []}
        root, parts = self._split(urlpath)
        real = self._inside(root, os.path.join(root, *parts))
        if real is None or not _is(real, stat.S_ISDIR):
            raise NotFound(f"no folder at {urlpath!r}")
        prefix = urlpath.strip("/")
        folders, scans = [], []
        with os.scandir(real) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name.startswith("."):
                continue
            inside = self._inside(root, e.path)
            if inside is None:
                continue
            if os.path.isdir(inside):
                folders.append(e.name)
            elif _is_scan_file(e.name) and _is(inside, stat.S_ISREG):  # not a FIFO or device named *.h5
                st = os.stat(inside)
                name = scan_name(e.name)
                scans.append({
                    "name": name,
                    "path": f"{prefix}/{name}".strip("/"),
                    "kind": _kind(e.name),
                    "size": st.st_size,
                    "mtime": st.st_mtime,
                })
        return {"path": prefix, "folders": folders, "scans": scans}


def _is(path: str, kind: Callable[[int], bool]) -> bool:
    """``os.path.isfile``/``isdir`` (``kind``: ``stat.S_ISREG``/``S_ISDIR``), except that storage which cannot
    answer (EIO, a dead network mount) is a 503 to retry, not a 404 saying the scan does not exist."""
    try:
        return kind(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False
    except OSError as exc:
        if exc.errno in ABSENT:
            return False
        raise Unavailable(f"the storage holding {os.path.basename(path)!r} does not answer ({exc.strerror}); "
                          "try again shortly") from None


def _pathconf(path: str, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def _kind(path: str) -> str:
    return "eiger" if path.endswith(MASTER) else "hdf5"


def _is_scan_file(name: str) -> bool:
    return name.endswith(HDF5_EXTS) and not DATA_FILE.search(name)


def _scan_entries(folder: str) -> list[str]:
    names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and _is_scan_file(n))
    masters = [n for n in names if n.endswith(MASTER)]
    return masters or names


def scan_name(filename: str) -> str:
    """The scan a file belongs to: ``x`` for ``x_master.h5``, its data files and ``x.h5``."""
    filename = DATA_FILE.sub(MASTER, filename)
    if filename.endswith(MASTER):
        return filename[: -len(MASTER)]
    return str(Path(filename).with_suffix(""))


def _unchanged(scan: Scan) -> bool:
    for st in scan.stamps:
        try:
            s = os.stat(st.real)
        except OSError:
            return False
        if s.st_size != st.size or s.st_mtime_ns != st.mtime_ns:
            return False
    return True
