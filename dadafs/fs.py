"""The FUSE filesystem: a read-only view of a dadafs server with RAM caches and read-ahead.

Attributes and listings are cached for ``attr_ttl`` seconds (missing paths
for ``negative_ttl``); file data in fragments aligned with the server's,
keyed by the file's ETag (size, mtime, inode) so a changed file never mixes
old and new bytes. An open file keeps the version it was opened with.
When the server is away, cached attributes (even expired) and fragments are
served; anything else fails with EIO after the remote's bounded retry.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mfusepy import FuseOSError, Operations

from dadafs.buffers import Buffer
from dadafs.ramcache import FragmentCache
from dadafs.remote import Changed, Remote, ServerAway

log = logging.getLogger("dadafs.fs")
STATUS = "/.dadafs-status"
MAX_READ = 1 << 20
STATUS_SIZE = 4096


@dataclass
class Handle:
    path: str
    etag: str
    size: int
    next_offset: int = 0  # where a sequential reader reads next
    window: int = 0  # read-ahead in fragments: grows with each sequential read, 0 on random access


class DadaFS(Operations):
    use_ns = True

    def __init__(self, remote: Remote, attr_ttl: float = 1.0, negative_ttl: float = 0.5,
                 cache_bytes: int = 128 * 2**20, readahead: int = 4, immutable: bool = False) -> None:
        self.remote = remote
        self.attr_ttl = attr_ttl
        self.negative_ttl = negative_ttl
        self.fragment = remote.fragment_size()
        self.cache = FragmentCache(cache_bytes, self.fragment)
        self.readahead_max = readahead
        self.immutable = immutable
        self._attrs: dict[str, tuple[dict[str, Any] | None, float]] = {}
        self._lists: dict[str, tuple[list[str], float]] = {}
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}
        self._fh = itertools.count(1)
        self._ahead = ThreadPoolExecutor(8, thread_name_prefix="dadafs-readahead")
        self.meta_hits = self.meta_misses = self.readaheads = self.stale_served = 0
        self.read_bytes = 0  # file bytes handed to readers: with the cache's fetched bytes, the share it served

    # -- setup -----------------------------------------------------------------------------------

    def init_with_config(self, conn, config) -> None:
        """Ask the kernel for 1 MiB reads and read-ahead (the mount option max_read says the same)."""
        if conn is not None:
            for field in ("max_read", "max_readahead"):
                if hasattr(conn, field):
                    setattr(conn, field, MAX_READ)

    # -- metadata --------------------------------------------------------------------------------

    def _attr(self, path: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._attrs.get(path)
        if cached is not None and cached[1] > now:
            self.meta_hits += 1
            if cached[0] is None:
                raise FuseOSError(errno.ENOENT)
            return cached[0]
        self.meta_misses += 1
        try:
            a = self.remote.stat(path)
        except ServerAway:
            if cached is not None and cached[0] is not None:
                self.stale_served += 1
                return cached[0]
            raise FuseOSError(errno.EIO) from None
        with self._lock:
            self._attrs[path] = (a, now + (self.attr_ttl if a is not None else self.negative_ttl))
        if a is None:
            raise FuseOSError(errno.ENOENT)
        return a

    @staticmethod
    def _st(a: dict[str, Any]) -> dict[str, Any]:
        """The source's attributes as they are (writes fail with EROFS whatever the mode bits say)."""
        kind = stat.S_IFDIR if a["type"] == "dir" else stat.S_IFREG
        return {"st_mode": kind | a["mode"], "st_size": a["size"], "st_nlink": a["nlink"], "st_mtime": a["mtime_ns"],
                "st_ctime": a["mtime_ns"], "st_atime": a["mtime_ns"], "st_uid": a["uid"], "st_gid": a["gid"],
                "st_blocks": a["blocks"]}

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        if path == STATUS:  # fresh mtime each time, so the kernel never keeps an old copy
            return {"st_mode": stat.S_IFREG | 0o444, "st_size": STATUS_SIZE, "st_nlink": 1, "st_mtime": time.time_ns()}
        return self._st(self._attr(path))

    def readdir(self, path: str, fh: int) -> list[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._lists.get(path)
        if cached is not None and cached[1] > now:
            self.meta_hits += 1
            return [".", "..", *cached[0]]
        try:
            entries = self.remote.list(path)
        except ServerAway:
            if cached is not None:
                self.stale_served += 1
                return [".", "..", *cached[0]]
            raise FuseOSError(errno.EIO) from None
        if entries is None:
            raise FuseOSError(errno.ENOENT)
        names = [e["name"] for e in entries]
        with self._lock:
            self._lists[path] = (names, now + self.attr_ttl)
            base = path.rstrip("/")
            for e in entries:
                self._attrs[f"{base}/{e['name']}"] = (e, now + self.attr_ttl)
        return [".", "..", *names]

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": self.fragment, "f_frsize": 4096, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0,
                "f_namemax": 255}

    # -- data ------------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise FuseOSError(errno.EROFS)
        if path == STATUS:
            return 0
        a = self._attr(path)
        if a["type"] != "file":
            raise FuseOSError(errno.EISDIR)
        fh = next(self._fh)
        with self._lock:
            self._handles[fh] = Handle(path, a["etag"], a["size"])
        return fh

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._handles.pop(fh, None)
        return 0

    @contextlib.contextmanager
    def _fragment(self, h: Handle, index: int) -> Iterator[Buffer]:
        """Fragment ``index`` of the version ``h`` opened, pinned in the RAM cache while in use."""
        start = index * self.fragment

        def fill(buf: memoryview) -> None:
            self.remote.read_into(h.path, h.etag, start, buf)

        with self.cache.pinned((h.path, h.etag, index), min(self.fragment, h.size - start), fill) as frag:
            yield frag

    def read_into(self, path: str, buf: int, size: int, offset: int, fh: int) -> int:
        """Copy up to ``size`` bytes at ``offset`` to the address ``buf`` (libfuse's reply buffer),
        straight from the cached fragments; the copy runs without the GIL. Returns the count."""
        if path == STATUS:
            data = self.status_bytes()[offset:offset + size]
            ctypes.memmove(buf, data, len(data))
            return len(data)
        with self._lock:
            h = self._handles.get(fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        stop = min(offset + size, h.size)
        if offset >= stop:
            return 0
        first, last = offset // self.fragment, (stop - 1) // self.fragment
        h.window = min(max(1, h.window * 2), self.readahead_max) if offset == h.next_offset else 0
        h.next_offset = stop
        for i in range(last + 1, min(last + 1 + h.window, (h.size - 1) // self.fragment + 1)):
            if not self.cache.peek((h.path, h.etag, i)):
                self.readaheads += 1
                self._ahead.submit(self._prefetch, h, i)
        try:
            for i in range(first, last + 1):
                lo = max(offset - i * self.fragment, 0)
                hi = min(stop - i * self.fragment, self.fragment)
                with self._fragment(h, i) as frag:
                    ctypes.memmove(buf + i * self.fragment + lo - offset, frag.address + lo, hi - lo)
        except ServerAway:
            raise FuseOSError(errno.EIO) from None
        except Changed:
            with self._lock:
                self._attrs.pop(h.path, None)
            log.warning("%s changed while open; reopen it to read the new version", h.path)
            raise FuseOSError(errno.EIO) from None
        with self._lock:
            self.read_bytes += stop - offset
        return stop - offset

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """mfusepy's read, for a plain ``mfusepy.FUSE`` (its presence is also what makes mfusepy register
        the read callback); dadafs's own FUSE calls read_into instead and saves a copy."""
        out = ctypes.create_string_buffer(size)
        return out.raw[:self.read_into(path, ctypes.addressof(out), size, offset, fh)]

    def _prefetch(self, h: Handle, index: int) -> None:
        with contextlib.suppress(ServerAway, Changed), self._fragment(h, index):
            pass  # the read that needs it will say what went wrong

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        c = self.cache
        lookups = c.hits + c.misses
        meta = self.meta_hits + self.meta_misses
        return {
            "server": self.remote.base,
            "fragment_size": self.fragment,
            "data": {"hits": c.hits, "misses": c.misses, "hit_rate": c.hits / lookups if lookups else None,
                     "fetches": c.fetches, "cached_bytes": c.bytes, "max_bytes": c.max_bytes,
                     "readaheads": self.readaheads, "read_bytes": self.read_bytes, "fetched_bytes": c.fetched_bytes},
            "metadata": {"hits": self.meta_hits, "misses": self.meta_misses,
                         "hit_rate": self.meta_hits / meta if meta else None, "stale_served": self.stale_served},
            "remote": {"requests": self.remote.requests, "failures": self.remote.failures},
        }

    def status_bytes(self) -> bytes:
        """The status as JSON, padded with spaces to a fixed size (the file's size cannot change under a reader)."""
        text = json.dumps(self.status(), indent=1).encode()
        return text[:STATUS_SIZE].ljust(STATUS_SIZE)
