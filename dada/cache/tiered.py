"""Cache levels stacked: the fastest first, every put to all of them, a lower hit copied upwards.

The memory level keeps values as given (a computed result as its arrays, a node's record as a view of
its answer); the levels below keep bytes, made once per put by the value's ``encode`` (the result's
serialisation) only when such a level exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dada.cache.aerospike_store import AerospikeStore, parse_hosts
from dada.cache.disk import DiskCache
from dada.cache.memory import MemoryCache


class Level(Protocol):
    name: str
    keeps_objects: bool  # True: keeps the value as given; False: takes bytes

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def stats(self) -> dict[str, int]: ...


class ResultCache:
    """Results (opaque bytes) by key through ``levels``, e.g. memory → disk → Aerospike.

    Called from worker threads: the disk and the network block. No level ever raises."""

    def __init__(self, levels: list[Level]) -> None:
        self.levels = levels

    def get(self, key: str) -> Any:
        """The value: as put, from the memory level; bytes from the others."""
        for i, level in enumerate(self.levels):
            value = level.get(key)
            if value is not None:
                for upper in self.levels[:i]:
                    upper.put(key, value)
                return value
        return None

    def put(self, key: str, value: Any, encode: Callable[[Any], bytes | bytearray] | None = None) -> None:
        """``value`` to every level: as it is to those keeping objects, ``encode(value)`` (else the value, a
        buffer) to the others."""
        data = None
        for level in self.levels:
            if level.keeps_objects:
                level.put(key, value)
                continue
            if data is None:
                data = value if encode is None else encode(value)
            level.put(key, data)

    @property
    def empty(self) -> bool:
        """No level at all: puts cost nothing and are skipped."""
        return not self.levels

    def stats(self) -> dict[str, dict[str, int]]:
        return {level.name: level.stats() for level in self.levels}

    def close(self) -> None:
        for level in self.levels:
            if isinstance(level, AerospikeStore):
                level.close()


def make_cache(
    memory_bytes: int,
    disk_dir: str | None,
    disk_bytes: int,
    aerospike: str | None = None,
    namespace: str = "dada",
    set_name: str = "results",
    ttl: int = 7 * 86400,
    timeout_ms: int = 200,
) -> ResultCache:
    """The levels configured: RAM if ``memory_bytes``, a folder if ``disk_dir`` and ``disk_bytes``, and
    an Aerospike cluster if ``aerospike`` is ``host:port[,host:port…]``."""
    levels: list[Level] = []
    if memory_bytes > 0:
        levels.append(MemoryCache(memory_bytes))
    if disk_dir and disk_bytes > 0:
        levels.append(DiskCache(disk_dir, disk_bytes))
    if aerospike:
        levels.append(AerospikeStore(parse_hosts(aerospike), namespace, set_name, ttl, timeout_ms))
    return ResultCache(levels)
