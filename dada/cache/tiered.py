"""Cache levels stacked: the fastest first, every put to all of them, a lower hit copied upwards."""

from __future__ import annotations

from typing import Protocol

from dada.cache.aerospike_store import AerospikeStore, parse_hosts
from dada.cache.disk import DiskCache
from dada.cache.memory import MemoryCache


class Level(Protocol):
    name: str

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def stats(self) -> dict[str, int]: ...


class ResultCache:
    """Results (opaque bytes) by key through ``levels``, e.g. memory → disk → Aerospike.

    Called from worker threads: the disk and the network block. No level ever raises."""

    def __init__(self, levels: list[Level]) -> None:
        self.levels = levels

    def get(self, key: str) -> bytes | None:
        for i, level in enumerate(self.levels):
            value = level.get(key)
            if value is not None:
                for upper in self.levels[:i]:
                    upper.put(key, value)
                return value
        return None

    def put(self, key: str, value: bytes) -> None:
        for level in self.levels:
            level.put(key, value)

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
