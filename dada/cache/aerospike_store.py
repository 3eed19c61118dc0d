"""The cluster-wide cache level: results in an Aerospike namespace, shared by every daemon.

Aerospike limits the size of a record (1 MiB by default), so a larger value goes in pieces under
derived keys, then a manifest (piece count, length, checksum) under the key itself, written last so
that a reader never finds a manifest before its pieces. Piece keys carry the value's checksum: two
writers of different values for one key never mix their pieces, and the reader verifies what it
joined. Pieces orphaned by a rewrite expire with their TTL.

A server that is away or slow must not slow the daemon: short timeouts, no retries, and after a
failure the server is left alone for ``RETRY_AFTER`` seconds, during which gets are misses and puts
are dropped at once. The client's own tending finds the server again when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dada.cache.checksum import checksum
from dada.cache.stats import Stats

log = logging.getLogger("dada.cache.aerospike")

HEADROOM = 16 * 1024  # bytes of a record left to its overhead (digest, set name, bin names, metadata)
RETRY_AFTER = 1.0  # seconds without calls to the server after a failure


def parse_hosts(spec: str) -> list[tuple[str, int]]:
    """``host:port[,host:port…]`` (IPv6 as ``[addr]:port``) as the client wants it."""
    hosts = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Aerospike host {item!r} is not host:port")
        hosts.append((host.removeprefix("[").removesuffix("]"), int(port)))
    if not hosts:
        raise ValueError(f"no Aerospike host in {spec!r}")
    return hosts


def piece_key(key: str, digest: bytes, index: int) -> str:
    """The key of piece ``index`` of the value under ``key`` whose checksum is ``digest``."""
    return f"{key}.{digest.hex()}.{index}"




class AerospikeStore:
    """Get and put of opaque values in ``namespace``/``set_name``; never raises once constructed."""

    name = "aerospike"
    keeps_objects = False  # takes bytes

    def __init__(
        self,
        hosts: list[tuple[str, int]],
        namespace: str = "dada",
        set_name: str = "results",
        ttl: int = 7 * 86400,
        timeout_ms: int = 200,
        max_record_bytes: int = 1 << 20,
    ) -> None:
        try:
            import aerospike
        except ImportError as e:
            raise RuntimeError(
                "an Aerospike cache is configured but the 'aerospike' package is missing: pip install 'dada[cluster]'"
            ) from e
        if max_record_bytes <= 2 * HEADROOM:
            raise ValueError(f"max_record_bytes {max_record_bytes} leaves no room for data in a record")
        self._aerospike = aerospike
        self._errors = aerospike.exception
        self.namespace, self.set_name = namespace, set_name
        self.piece_bytes = max_record_bytes - HEADROOM
        self._config = {"hosts": hosts, "connect_timeout": timeout_ms}
        self._read_policy = {"socket_timeout": timeout_ms, "total_timeout": timeout_ms, "max_retries": 0}
        self._write_policy = {**self._read_policy, "ttl": ttl}
        self._client: Any = None
        self._connecting = threading.Lock()
        self._away_until = 0.0  # time.monotonic() before which the server is not tried
        self._failing = False
        self._stats = Stats(self.name, "hits", "misses", "puts", "errors", "corrupt", "skipped")
        self._usable_client()

    def get(self, key: str) -> bytes | None:
        client = self._usable_client()
        value = None
        if client is not None:
            try:
                value = self._get(client, key)
                self._ok()
            except self._errors.AerospikeError as e:
                self._failed(f"get from Aerospike {self._config['hosts']}", e)
        self._stats.add("hits" if value is not None else "misses")
        return value

    def put(self, key: str, value: bytes | bytearray | memoryview) -> None:
        client = self._usable_client()
        if client is None:
            return
        value = value if isinstance(value, bytes | bytearray) else bytes(value)  # the client takes bytes only
        self._stats.add("puts")
        try:
            if len(value) <= self.piece_bytes:
                self._put(client, key, {"v": value})
            else:
                digest = checksum(value)
                step = self.piece_bytes
                count = -(-len(value) // step)
                for i in range(count):
                    self._put(client, piece_key(key, digest, i), {"v": value[i * step : (i + 1) * step]})
                self._put(client, key, {"n": count, "len": len(value), "sum": digest})
            self._ok()
        except self._errors.AerospikeError as e:
            self._failed(f"put to Aerospike {self._config['hosts']}", e)

    def stats(self) -> dict[str, int]:
        return self._stats.snapshot()

    def close(self) -> None:
        """Stop the client's tending thread and close its connections."""
        with self._connecting:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _get(self, client: Any, key: str) -> bytes | None:
        bins = self._bins(client, key)
        if bins is None:
            return None
        if "v" in bins:
            return bins["v"]
        count, length, digest = bins.get("n"), bins.get("len"), bins.get("sum")
        if isinstance(count, int) and isinstance(length, int) and isinstance(digest, bytes):
            pieces = []
            for i in range(count):
                piece = self._bins(client, piece_key(key, digest, i))
                if piece is None or not isinstance(piece.get("v"), bytes):
                    break
                pieces.append(piece["v"])
            else:
                value = b"".join(pieces)
                if len(value) == length and checksum(value) == digest:
                    return value
        self._stats.add("corrupt")
        return None

    def _bins(self, client: Any, key: str) -> dict[str, Any] | None:
        try:
            _key, _meta, bins = client.get((self.namespace, self.set_name, key), policy=self._read_policy)
        except self._errors.RecordNotFound:
            return None
        return bins

    def _put(self, client: Any, key: str, bins: dict[str, Any]) -> None:
        client.put((self.namespace, self.set_name, key), bins, policy=self._write_policy)

    def _usable_client(self) -> Any:
        """The client, or None while the server is left alone or another thread is connecting."""
        if self._client is not None and time.monotonic() >= self._away_until:
            return self._client
        if time.monotonic() < self._away_until or not self._connecting.acquire(blocking=False):
            self._stats.add("skipped")
            return None
        try:
            if self._client is None:
                self._client = self._aerospike.client(self._config)
        except self._errors.AerospikeError as e:
            self._failed(f"connect to Aerospike {self._config['hosts']}", e)
        finally:
            self._connecting.release()
        return self._client

    def _failed(self, what: str, exc: Exception) -> None:
        self._stats.error(what, exc)
        if not isinstance(exc, self._errors.RecordError):  # not about one record: the server is in trouble
            self._failing = True
            self._away_until = time.monotonic() + RETRY_AFTER

    def _ok(self) -> None:
        if self._failing:
            self._failing = False
            log.info("Aerospike %s answers again", self._config["hosts"])
