"""The server's SSD fragment cache: fixed-size pieces of source files, LRU within a byte bound.

A fragment's cache name hashes the file's path, size, mtime and inode with the
fragment index, so a changed source file simply has other names: nothing
stale can be found, and old pieces age out of the LRU. Two requests for the
same missing fragment read the source once (the second waits for the first).
Writing a fragment to the cache happens on a writer thread, after the reader
has its bytes: a cold read costs one source read, not a source read plus a
disk write; fragments waiting to be written are served from memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass

from dadafs.singleflight import SingleFlight

log = logging.getLogger("dadafs.server")


@dataclass
class StoreStats:
    hits: int = 0
    misses: int = 0
    source_reads: int = 0
    evictions: int = 0


class FragmentStore:
    def __init__(self, directory: str, max_bytes: int, fragment_size: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fragment_size = fragment_size
        self.stats = StoreStats()
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self._flight = SingleFlight()
        self._writing: dict[str, bytes] = {}
        self._queue: queue.Queue[str] = queue.Queue(maxsize=64)
        os.makedirs(directory, exist_ok=True)
        self._load()
        threading.Thread(target=self._writer, name="dadafs-cache-writer", daemon=True).start()

    def _load(self) -> None:
        """Adopt fragments left by an earlier run, oldest first; drop half-written ones."""
        found = []
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if name.endswith(".tmp"):
                os.unlink(path)
                continue
            st = os.stat(path)
            found.append((st.st_mtime, name, st.st_size))
        for _, name, size in sorted(found):
            self._lru[name] = size
            self._bytes += size
        self._evict()

    @property
    def bytes(self) -> int:
        return self._bytes

    def key(self, relpath: str, st: os.stat_result, index: int) -> str:
        ident = f"{relpath}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{index}\0{self.fragment_size}"
        return hashlib.sha256(ident.encode()).hexdigest()

    def get(self, source: str, relpath: str, st: os.stat_result, index: int) -> tuple[bytes, bool]:
        """Fragment ``index`` of ``source`` as it was when ``st`` was taken (the last one may be short),
        and whether it came from the cache."""
        name = self.key(relpath, st, index)
        data = self._lookup(name)
        if data is not None:
            return data, True

        def read_and_keep() -> tuple[bytes, bool]:
            again = self._lookup(name)  # cached by another request since our lookup
            if again is not None:
                return again, True
            self.stats.misses += 1
            got = self._read_source(source, index)
            self._put(name, got)
            return got, False

        (data, cached), shared = self._flight.run(name, read_and_keep)
        if shared:
            self.stats.hits += 1
        return data, cached or shared

    def _lookup(self, name: str) -> bytes | None:
        """A fragment from memory (being written) or the cache folder; counts a hit."""
        with self._lock:
            data = self._writing.get(name)
            on_disk = data is None and name in self._lru
            if on_disk:
                self._lru.move_to_end(name)
        if on_disk:
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:  # evicted between lookup and open
                return None
        if data is not None:
            self.stats.hits += 1
        return data

    def _read_source(self, source: str, index: int) -> bytes:
        self.stats.source_reads += 1
        with open(source, "rb") as f:
            return os.pread(f.fileno(), self.fragment_size, index * self.fragment_size)

    def _put(self, name: str, data: bytes) -> None:
        """Hand a fragment to the writer; if it is behind, the fragment is simply not cached."""
        if len(data) > self.max_bytes:
            return
        with self._lock:
            self._writing[name] = data
        try:
            self._queue.put_nowait(name)
        except queue.Full:
            with self._lock:
                self._writing.pop(name, None)

    def _writer(self) -> None:
        while True:
            name = self._queue.get()
            try:
                with self._lock:
                    data = self._writing[name]
                tmp = os.path.join(self.dir, name + ".tmp")
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, os.path.join(self.dir, name))
                with self._lock:
                    if name not in self._lru:
                        self._lru[name] = len(data)
                        self._bytes += len(data)
                    self._evict()
            except OSError as exc:  # a full or failing cache disk must not stop serving
                log.warning("fragment cache write failed: %s", exc)
            finally:
                with self._lock:
                    self._writing.pop(name, None)
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every fragment handed to the writer is on disk."""
        self._queue.join()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._lru:
            name, size = self._lru.popitem(last=False)
            self._bytes -= size
            self.stats.evictions += 1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dir, name))
