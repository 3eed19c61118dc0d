"""The local second cache level: one checksummed file per result, bounded by total size (LRU).

A file is written under a temporary name in its final folder and renamed into place, so a reader
(this process or another sharing the folder) sees either the whole old file or the whole new one.
Nothing is fsynced: a file a crash left incomplete fails its checksum, is deleted and counts as a
miss, which for a cache is cheaper than an fsync per result. Recency is the file's mtime (touched on
every hit), so processes sharing the folder agree on it; each process indexes the folder at start
and again every ``RESCAN_EVERY`` seconds, and evicts the least recently used files it knows of.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import suppress

from dada.cache.checksum import checksum
from dada.cache.stats import Stats

HEADER = struct.Struct(">4sQ16s")  # magic, payload length, xxh3-128 of the payload
MAGIC = b"DAC2"  # 2: xxh3 checksums
TEMP_PREFIX = ".tmp-"
STALE_TEMP = 3600.0  # seconds after which a temporary file is a crashed writer's leftover
RESCAN_EVERY = 60.0  # seconds between two indexings of the folder (files other processes wrote)




class DiskCache:
    """Results as files below ``directory`` (fanned out into 256 folders), at most ``max_bytes`` in all.

    Never raises: a folder that cannot be created disables the cache, a failed write (disk full,
    read-only) is counted under ``errors`` and dropped while reads go on."""

    name = "disk"
    keeps_objects = False  # takes bytes

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # file name -> size, least recently used first
        self._bytes = 0
        self._scanned = 0.0
        self._stats = Stats(self.name, "hits", "misses", "puts", "errors", "corrupt", "evictions", "disabled")
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            self.enabled = False
            self._stats.add("disabled")
            self._stats.error(f"disk cache disabled, cannot create {directory}", e)
            return
        self.enabled = True
        with self._lock:
            self._scan()

    def path(self, key: str) -> str:
        """The file of ``key``: named by a digest of the key, so any key is a safe file name."""
        name = hashlib.sha256(key.encode()).hexdigest()
        return os.path.join(self.directory, name[:2], name)

    def get(self, key: str) -> bytes | None:
        if not self.enabled:
            self._stats.add("misses")
            return None
        path = self.path(key)
        try:
            value = self._read(path)
        except FileNotFoundError:
            value = None
        except OSError as e:
            self._stats.error(f"cannot read {path}", e)
            value = None
        if value is None:
            self._forget(path)
            self._stats.add("misses")
            return None
        with suppress(OSError):
            os.utime(path)  # the recency other processes and the next indexing see
        with self._lock:
            name = os.path.basename(path)
            if name not in self._index:  # written by another process since the last indexing
                self._index[name] = HEADER.size + len(value)
                self._bytes += HEADER.size + len(value)
            self._index.move_to_end(name)
        self._stats.add("hits")
        return value

    def put(self, key: str, value: bytes | bytearray | memoryview) -> None:
        if not self.enabled:
            return
        self._stats.add("puts")
        size = HEADER.size + len(value)
        if size > self.max_bytes:
            return
        path = self.path(key)
        try:
            self._write(path, value)
        except OSError as e:
            self._stats.error(f"cannot write below {self.directory}", e)
            return
        with self._lock:
            if time.monotonic() - self._scanned > RESCAN_EVERY:
                self._scan()
            name = os.path.basename(path)
            self._bytes += size - self._index.pop(name, 0)
            self._index[name] = size
            victims = []
            while self._bytes > self.max_bytes:
                victim, victim_size = self._index.popitem(last=False)
                self._bytes -= victim_size
                victims.append(victim)
        for victim in victims:
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, victim[:2], victim))
        if victims:
            self._stats.add("evictions", len(victims))

    def stats(self) -> dict[str, int]:
        with self._lock:
            size = {"bytes": self._bytes, "entries": len(self._index)}
        return {**self._stats.snapshot(), **size}

    def _read(self, path: str) -> bytes | None:
        """The payload of ``path``, or None (and the file deleted) when it is truncated or corrupt."""
        with open(path, "rb") as f:
            header = f.read(HEADER.size)
            payload = f.read()
        if len(header) == HEADER.size:
            magic, length, digest = HEADER.unpack(header)
            if magic == MAGIC and length == len(payload) and checksum(payload) == digest:
                return payload
        self._stats.add("corrupt")
        with suppress(FileNotFoundError):
            os.unlink(path)
        return None

    def _write(self, path: str, value: bytes | bytearray | memoryview) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(HEADER.pack(MAGIC, len(value), checksum(value)))
                f.write(value)
            os.replace(temp, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp)
            raise

    def _forget(self, path: str) -> None:
        with self._lock:
            size = self._index.pop(os.path.basename(path), None)
            if size is not None:
                self._bytes -= size

    def _scan(self) -> None:
        """Rebuild the index from the folder, oldest mtime first; delete crashed writers' temporary files.
        Called with the lock held."""
        self._scanned = time.monotonic()
        found: list[tuple[float, str, int]] = []
        try:
            folders = [e.path for e in os.scandir(self.directory) if e.is_dir(follow_symlinks=False)]
        except OSError as e:
            self._stats.error(f"cannot list {self.directory}", e)
            return
        now = time.time()
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue  # vanished or unreadable: its files are not ours to count
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # evicted by another process meanwhile
                if entry.name.startswith(TEMP_PREFIX):
                    if now - st.st_mtime > STALE_TEMP:
                        with suppress(OSError):
                            os.unlink(entry.path)
                    continue
                found.append((st.st_mtime, entry.name, st.st_size))
        found.sort()
        self._index = OrderedDict((name, size) for _mtime, name, size in found)
        self._bytes = sum(self._index.values())
