"""The server's SSD fragment cache: fixed-size pieces of source files, LRU within a byte bound.

A fragment's cache name hashes the file's path, size, mtime and inode with the
fragment index, so a changed source file simply has other names: nothing
stale can be found, and old pieces age out of the LRU. A source read is
checked against the version asked for before it is kept, so a file that
changes mid-read never lands in the cache under its old name. Two requests
for the same missing fragment read the source once (the second waits for the
first).

Writing a fragment to the cache happens on a writer thread, after the reader
has its bytes, and bypasses the page cache (O_DIRECT where the cache folder's
filesystem allows it): filling the cache then costs the CPU almost nothing,
where a buffered write of every fragment would cost as much as serving it.
Fragments waiting to be written are served from memory; cached ones are read
into a pooled buffer on the calling (worker) thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO

from dadafs.buffers import ALIGN, Buffer, BufferPool
from dadafs.singleflight import SingleFlight

log = logging.getLogger("dadafs.server")


class SourceChanged(Exception):
    """The source file is not the version asked for any more."""


@dataclass
class StoreStats:
    hits: int = 0
    misses: int = 0
    source_reads: int = 0
    evictions: int = 0


@dataclass
class Piece:
    """One fragment's bytes, in a pinned buffer. A fragment just read from the source also carries the
    source file, open, and where the fragment starts in it: those pages are in memory, so the server can
    send them with sendfile instead of copying the buffer into the socket. Close the piece when done."""

    memory: memoryview
    buffer: Buffer
    source: BinaryIO | None = None
    offset: int = 0

    @property
    def size(self) -> int:
        return len(self.memory)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        self.buffer.unpin()


def identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


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
        self._writing: dict[str, tuple[Buffer, int]] = {}  # name -> (pinned buffer, bytes used)
        self._pool = BufferPool(fragment_size)
        self._queue: queue.Queue[str] = queue.Queue(maxsize=64)
        self._direct = getattr(os, "O_DIRECT", 0)
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

    def get(self, source: str, relpath: str, st: os.stat_result, index: int) -> tuple[Piece, bool]:
        """Fragment ``index`` of ``source`` as it was when ``st`` was taken (the last one may be short),
        and whether it came from the cache. SourceChanged if the file is another version now.
        The caller closes the piece."""
        name = self.key(relpath, st, index)
        while True:
            piece = self._lookup(name)
            if piece is not None:
                return piece, True
            piece, shared = self._flight.run(name, lambda: self._fill(name, source, st, index))
            if piece is not None and not shared:
                return piece, False
            # another request read it (the piece is theirs) or had cached it: look it up, pinned

    def _fill(self, name: str, source: str, st: os.stat_result, index: int) -> Piece | None:
        """Read a missing fragment and hand it to the writer; None if another request cached it meanwhile."""
        with self._lock:
            if name in self._writing or name in self._lru:
                return None
        self.stats.misses += 1
        buf, n, f = self._read_source(source, st, index)
        self._put(name, buf, n)
        return Piece(buf.view[:n], buf, f, index * self.fragment_size)

    def _lookup(self, name: str) -> Piece | None:
        """A fragment from memory (being written) or the cache folder; counts a hit. A cached fragment
        is read here, on the caller's thread, so that disk reads never stall the server's event loop."""
        with self._lock:
            pending = self._writing.get(name)
            if pending is not None:
                pending[0].pin()
            on_disk = pending is None and name in self._lru
            if on_disk:
                self._lru.move_to_end(name)
        if pending is not None:
            buf, n = pending
        elif on_disk:
            buf = self._pool.take(self.fragment_size)
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    n = os.preadv(f.fileno(), [buf.view], 0)
            except FileNotFoundError:  # evicted between lookup and open
                buf.unpin()
                return None
        else:
            return None
        self.stats.hits += 1
        return Piece(buf.view[:n], buf)

    def _read_source(self, source: str, st: os.stat_result, index: int) -> tuple[Buffer, int, BinaryIO]:
        """Read one fragment of the version ``st`` into a pinned buffer; the source stays open."""
        self.stats.source_reads += 1
        buf = self._pool.take(self.fragment_size)
        f = open(source, "rb")  # noqa: SIM115 - handed on in the piece, which closes it
        try:
            if identity(os.fstat(f.fileno())) != identity(st):
                raise SourceChanged(source)
            n = os.preadv(f.fileno(), [buf.view], index * self.fragment_size)
            if identity(os.fstat(f.fileno())) != identity(st):
                raise SourceChanged(source)
        except BaseException:
            f.close()
            buf.unpin()
            raise
        return buf, n, f

    def _put(self, name: str, buf: Buffer, n: int) -> None:
        """Hand a fragment to the writer; if it is behind, the fragment is simply not cached."""
        if n > self.max_bytes:
            return
        with self._lock:
            self._writing[name] = (buf.pin(), n)
        try:
            self._queue.put_nowait(name)
        except queue.Full:
            self._done_writing(name)

    def _done_writing(self, name: str) -> None:
        with self._lock:
            buf, _ = self._writing.pop(name)
        buf.unpin()

    def _write_file(self, path: str, buf: Buffer, n: int) -> None:
        """Write ``buf[:n]`` to a new file, bypassing the page cache when the filesystem allows."""
        if self._direct:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | self._direct, 0o644)
                try:
                    os.write(fd, buf.block[:-(-n // ALIGN) * ALIGN])
                    os.ftruncate(fd, n)
                finally:
                    os.close(fd)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                log.info("the fragment cache's filesystem refuses O_DIRECT; writing through the page cache")
                self._direct = 0
        with open(path, "wb") as f:
            f.write(buf.view[:n])

    def _writer(self) -> None:
        while True:
            name = self._queue.get()
            try:
                with self._lock:
                    buf, n = self._writing[name]
                    self._evict(room=n)  # make room first: the folder never holds more than the bound
                tmp = os.path.join(self.dir, name + ".tmp")
                self._write_file(tmp, buf, n)
                os.replace(tmp, os.path.join(self.dir, name))
                with self._lock:
                    if name not in self._lru:
                        self._lru[name] = n
                        self._bytes += n
                    self._evict()
            except OSError as exc:  # a full or failing cache disk must not stop serving
                log.warning("fragment cache write failed: %s", exc)
            finally:
                self._done_writing(name)
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every fragment handed to the writer is on disk."""
        self._queue.join()

    def _evict(self, room: int = 0) -> None:
        while self._bytes + room > self.max_bytes and self._lru:
            name, size = self._lru.popitem(last=False)
            self._bytes -= size
            self.stats.evictions += 1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dir, name))
