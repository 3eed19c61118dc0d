"""The result cache: RAM LRU, checksummed disk files, Aerospike through the real client, and their stack.

The Aerospike tests run against ``tests/aerospike_server.py`` (a wire-protocol server on loopback),
or against a real server when ``DADA_TEST_AEROSPIKE=host:port`` is set (namespace from
``DADA_TEST_AEROSPIKE_NAMESPACE``, default ``dada``); killing and restarting the server needs ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest
from aerospike_server import AerospikeTestServer
from helpers import free_port, require_module

from dada.cache import ResultCache, make_cache
from dada.cache.aerospike_store import AerospikeStore, parse_hosts, piece_key
from dada.cache.disk import HEADER, TEMP_PREFIX, DiskCache, checksum
from dada.cache.memory import MemoryCache

MiB = 1 << 20
REAL_SERVER = os.environ.get("DADA_TEST_AEROSPIKE")
SERVER_SCRIPT = os.path.join(os.path.dirname(__file__), "aerospike_server.py")
T = TypeVar("T")


def files_below(directory: str) -> list[str]:
    return [os.path.join(root, name) for root, _dirs, names in os.walk(directory) for name in names]


def timed(call: Callable[..., T], *args: object) -> tuple[T, float]:
    start = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - start


# -- memory --------------------------------------------------------------------------------------------------


def test_the_stack_keeps_values_in_memory_as_given_and_bytes_below(tmp_path):
    """No copy into RAM (a node's record stays a view of its answer; a result stays its arrays); the disk
    level gets the bytes ``encode`` makes, once, and a lower hit comes back as those bytes."""
    import numpy as np

    from dada.cache.writer import CacheWriter
    from dada.encoders import stored
    from dada.endpoint import Result

    answer = bytes(range(256)) * 16
    view = memoryview(answer)[100:900]
    result = Result({"a": np.arange(12.0).reshape(3, 4)}, {"route": "test"})
    encoded = []

    def encode(r: Result) -> bytearray:
        encoded.append(r)
        return stored.dump(r)

    stack = make_cache(MiB, str(tmp_path), MiB)
    writer = CacheWriter(stack)
    writer.put("record", view)
    writer.put("result", result, encode)
    writer.close()
    assert stack.levels[0].get("record") is view and stack.levels[0].get("result") is result
    assert stack.levels[0].stats()["bytes"] == view.nbytes + result.nbytes
    assert encoded == [result]
    below = make_cache(0, str(tmp_path), MiB)
    assert bytes(below.get("record")) == answer[100:900]
    again = stored.load(below.get("result"))
    assert again.attrs == result.attrs and np.array_equal(again.arrays["a"], result.arrays["a"])
    with pytest.raises(ValueError):
        again.arrays["a"][0, 0] = 1  # a stored result is never written again: read-only views


def test_no_level_means_no_work():
    """Without any level a put is skipped: nothing is queued, nothing encoded."""
    from dada.cache.writer import CacheWriter

    writer = CacheWriter(make_cache(0, None, 0))
    writer.put("k", object(), lambda _: pytest.fail("encoded with no level to keep it"))
    assert writer.get("k") is None
    writer.close()


def test_memory_keeps_at_most_max_bytes_and_evicts_the_least_recently_used():
    cache = MemoryCache(1000)
    for i in range(3):
        cache.put(f"k{i}", bytes([i]) * 300)
    assert cache.get("k0") == bytes([0]) * 300  # k0 is now the most recent, k1 the least
    cache.put("k3", b"\x03" * 300)
    assert cache.get("k1") is None
    assert [cache.get(k) is not None for k in ("k0", "k2", "k3")] == [True, True, True]
    cache.put("huge", b"x" * 1001)  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.get("huge") is None
    cache.put("k0", b"\x00" * 500)  # a replaced value's bytes are given back
    stats = cache.stats()
    assert stats["bytes"] == 800 and stats["entries"] == 2 and stats["bytes"] <= 1000
    assert stats["evictions"] == 2  # k1, then k2 to make room for the bigger k0


def test_memory_bound_holds_under_threads():
    cache = MemoryCache(10_000)

    def work(t: int) -> None:
        for i in range(2000):
            cache.put(f"{t}-{i % 50}", bytes([t]) * (100 + i % 400))
            value = cache.get(f"{t}-{(i * 7) % 50}")
            assert value is None or set(value) == {t}

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert 0 < stats["bytes"] <= 10_000
    kept = [cache.get(f"{t}-{i}") for t in range(4) for i in range(50)]
    assert stats["bytes"] == sum(len(v) for v in kept if v is not None)


# -- disk ----------------------------------------------------------------------------------------------------


def test_disk_bound_holds_across_many_puts_and_a_restart(tmp_path):
    limit = 60_000
    cache = DiskCache(str(tmp_path), limit)
    for i in range(300):
        cache.put(f"key{i}", os.urandom(200 + (i * 37) % 3000))
        if i % 10 == 0:
            assert cache.get("key0") is not None  # read often: never the least recently used
        on_disk = sum(os.path.getsize(p) for p in files_below(str(tmp_path)))
        assert on_disk <= limit
    stats = cache.stats()
    assert stats["bytes"] == on_disk and stats["evictions"] > 200 and stats["errors"] == 0
    assert cache.get("key299") is not None and cache.get("key1") is None
    again = DiskCache(str(tmp_path), limit)  # the index rebuilt from the folder
    assert again.stats()["entries"] == stats["entries"] and again.stats()["bytes"] == on_disk
    assert again.get("key0") == cache.get("key0")


def test_disk_writes_are_atomic_under_concurrent_writers(tmp_path):
    """Writers race on the same keys with different values: a reader only ever sees one whole value."""
    cache = DiskCache(str(tmp_path), 100 * MiB)
    torn = []

    def write(t: int) -> None:
        for i in range(60):
            key = f"shared{i % 5}"
            cache.put(key, bytes([t]) * (20_000 + 1000 * t))
            value = cache.get(f"shared{(i + 2) % 5}")
            if value is not None and (len(set(value)) != 1 or len(value) != 20_000 + 1000 * value[0]):
                torn.append(value[:16])

    threads = [threading.Thread(target=write, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torn == []
    names = [os.path.basename(p) for p in files_below(str(tmp_path))]
    assert len(names) == 5 and not any(n.startswith(TEMP_PREFIX) for n in names)
    assert cache.stats()["corrupt"] == 0


def test_disk_tolerates_files_another_process_removed(tmp_path):
    mine, other = DiskCache(str(tmp_path), MiB), DiskCache(str(tmp_path), MiB)
    mine.put("a", b"1" * 100)
    mine.put("b", b"2" * 100)
    assert other.get("a") == b"1" * 100  # a file the other one did not index at its start
    os.unlink(other.path("a"))
    assert mine.get("a") is None
    assert mine.stats()["entries"] == 1 and mine.stats()["errors"] == 0
    mine.put("a", b"3" * 100)
    assert other.get("a") == b"3" * 100


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), id="flipped-payload"),
        pytest.param(lambda data: data[:9] + bytes([data[9] ^ 0x01]) + data[10:], id="flipped-length"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:3], id="header-cut"),
    ],
)
def test_disk_corrupt_entry_is_a_miss_and_deleted(tmp_path, damage):
    cache = DiskCache(str(tmp_path), MiB)
    value = os.urandom(5000)
    cache.put("k", value)
    path = cache.path("k")
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == HEADER.size + len(value) and checksum(value) in data[: HEADER.size]
    with open(path, "wb") as f:
        f.write(damage(data))
    assert cache.get("k") is None
    assert not os.path.exists(path)
    stats = cache.stats()
    assert stats["corrupt"] == 1 and stats["entries"] == 0 and stats["bytes"] == 0
    cache.put("k", value)  # recomputed and stored again
    assert cache.get("k") == value


def test_disk_folder_that_cannot_be_created_disables_the_cache(tmp_path):
    # Root ignores permission bits, so a mode-0500 folder would still be writable in these tests; a path
    # below a regular file cannot be created by anyone (ENOTDIR).
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    cache = DiskCache(str(blocker / "cache"), MiB)
    cache.put("k", b"v")
    assert cache.get("k") is None
    stats = cache.stats()
    assert stats["disabled"] == 1 and stats["errors"] == 1 and stats["puts"] == 0


FULL_DISK_CHILD = """
import json, resource, signal, sys
from dada.cache.disk import DiskCache
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
cache = DiskCache(sys.argv[1], 1 << 20)
cache.put("new", b"n" * 65536)
cache.put("old", b"o" * 65536)
print(json.dumps({"old": cache.get("old") == b"o" * 100, "new": cache.get("new"), "stats": cache.stats()}))
"""


def test_disk_write_failure_is_counted_and_reads_go_on(tmp_path):
    # Root writes into read-only-moded folders, so the tests make writes fail another way that holds for
    # root too: a child process whose file size limit (RLIMIT_FSIZE, 4 KiB) makes write() fail with EFBIG,
    # as a full disk fails it with ENOSPC. Entries written before stay readable.
    DiskCache(str(tmp_path), MiB).put("old", b"o" * 100)
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["old"] is True and out["new"] is None
    assert out["stats"]["errors"] == 2 and out["stats"]["puts"] == 2 and out["stats"]["hits"] == 1
    assert "cannot write" in child.stderr  # logged once, the second failure only counted
    assert child.stderr.count("cannot write") == 1
    assert files_below(str(tmp_path)) == [DiskCache(str(tmp_path), MiB).path("old")]  # no temporary file left


# -- Aerospike -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aerospike():
    return require_module("aerospike", "pip install -e '.[cluster]'")


@dataclass
class Target:
    hosts: list[tuple[str, int]]
    namespace: str
    server: AerospikeTestServer | None  # None: a real server


@pytest.fixture(scope="module", params=[REAL_SERVER or "test-server"])
def target(request, aerospike) -> Iterator[Target]:
    if request.param != "test-server":
        yield Target(parse_hosts(request.param), os.environ.get("DADA_TEST_AEROSPIKE_NAMESPACE", "dada"), None)
        return
    with AerospikeTestServer(max_record_bytes=MiB) as server:
        yield Target([("127.0.0.1", server.port)], "dada", server)
        assert server.unknown_info == set()  # the server answered everything the client asked


@pytest.fixture
def store_of(target) -> Iterator:
    stores: list[AerospikeStore] = []

    def make(**kw) -> AerospikeStore:
        stores.append(AerospikeStore(target.hosts, namespace=target.namespace, **kw))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def client(aerospike, target):
    c = aerospike.client({"hosts": target.hosts})
    yield c
    c.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"  # tests may share a real server: never reuse a key


def test_client_roundtrip(aerospike, client, target):
    """The real client's put, get, exists and remove, with the kinds of bins the cache uses and more."""
    key = (target.namespace, "results", unique("raw"))
    client.put(key, {"blob": b"\x00\xffdata", "text": "héllo", "number": -7}, policy={"ttl": 3600})
    _key, meta, bins = client.get(key)
    assert bins == {"blob": b"\x00\xffdata", "text": "héllo", "number": -7}
    assert meta["gen"] == 1 and 3590 <= meta["ttl"] <= 3600
    assert client.exists(key)[1]["gen"] == 1
    client.put(key, {"number": 8})
    assert client.get(key)[2] == {"blob": b"\x00\xffdata", "text": "héllo", "number": 8}
    client.remove(key)
    assert client.exists(key)[1] is None
    with pytest.raises(aerospike.exception.RecordNotFound):
        client.get(key)
    with pytest.raises(aerospike.exception.RecordNotFound):
        client.remove(key)
    if target.server is not None:  # compressed requests and answers (a feature of the Enterprise server)
        client.put(key, {"blob": b"z" * 100_000}, policy={"compress": True})
        assert client.get(key, policy={"compress": True})[2] == {"blob": b"z" * 100_000}


def test_store_put_get(store_of):
    store = store_of()
    key = unique("small")
    assert store.get(key) is None
    store.put(key, b"result bytes")
    assert store.get(key) == b"result bytes"
    assert store.stats() == {"hits": 1, "misses": 1, "puts": 1, "errors": 0, "corrupt": 0, "skipped": 0}


def test_store_ttl_expires_records(store_of):
    store = store_of(ttl=1)
    key = unique("ttl")
    store.put(key, b"short-lived")
    written = time.monotonic()
    assert store.get(key) == b"short-lived"
    while store.get(key) is not None:
        assert time.monotonic() - written < 3, "a record with ttl=1 outlived 3 s"
        time.sleep(0.1)
    assert time.monotonic() - written >= 0.9


def test_store_splits_a_large_value_and_verifies_it(store_of, client, target):
    store = store_of()
    key = unique("large")
    value = os.urandom(3 * MiB)
    store.put(key, value)
    assert store.get(key) == value
    digest = checksum(value)
    count = -(-len(value) // store.piece_bytes)
    manifest = client.get((target.namespace, "results", key))[2]
    assert manifest == {"n": count, "len": len(value), "sum": digest} and count == 4
    if target.server is not None:
        assert target.server.too_big == 0 and target.server.largest_record <= MiB
    # a piece replaced by other bytes of the same length: the checksum catches it
    piece = (target.namespace, "results", piece_key(key, digest, 2))
    original = client.get(piece)[2]["v"]
    client.put(piece, {"v": bytes(len(original))})
    assert store.get(key) is None
    # a missing piece
    client.remove(piece)
    assert store.get(key) is None
    assert store.stats()["corrupt"] == 2 and store.stats()["errors"] == 0
    store.put(key, value)  # recomputed
    assert store.get(key) == value


def test_store_record_too_big_is_an_error_not_an_outage(aerospike):
    """A server whose limit is below what the store was told: the write fails, the server is not shunned."""
    with AerospikeTestServer(max_record_bytes=64 * 1024) as server:
        store = AerospikeStore([("127.0.0.1", server.port)])
        try:
            store.put("big", b"x" * 200_000)
            store.put("small", b"y")
            assert store.get("small") == b"y" and store.get("big") is None
            assert server.too_big == 1
            assert store.stats()["errors"] == 1 and store.stats()["skipped"] == 0
        finally:
            store.close()


def test_store_slow_server_costs_one_timeout_then_nothing(aerospike):
    with AerospikeTestServer() as server:
        store = AerospikeStore([("127.0.0.1", server.port)], timeout_ms=200)
        try:
            store.put("k", b"v")
            server.stall = 2.0
            for _ in range(5):
                value, took = timed(store.get, "k")
                assert value is None and took < 0.5
                _, took = timed(store.put, "k2", b"w")
                assert took < 0.5
            server.stall = 0.0
            deadline = time.monotonic() + 3
            while store.get("k") is None:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert store.stats()["errors"] >= 1 and store.stats()["skipped"] >= 1
        finally:
            store.close()


class ServerProcess:
    """``tests/aerospike_server.py`` as its own process, on a fixed port it can be restarted on."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SERVER_SCRIPT, "--port", str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline() == f"ready {self.port}\n"

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no goodbye to the client
        self.proc.wait()


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    server = ServerProcess(free_port())
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def wait_until_back(store: AerospikeStore, within: float) -> float:
    start = time.monotonic()
    key = unique("back")
    while store.get(key) is None:
        assert time.monotonic() - start < within, "the store did not reconnect"
        store.put(key, b"again")
        time.sleep(0.1)
    return time.monotonic() - start


def test_store_survives_a_killed_server_and_reconnects(aerospike, server_process):
    server_process.start()
    store = AerospikeStore([("127.0.0.1", server_process.port)], timeout_ms=200)
    try:
        store.put("before", b"1")
        assert store.get("before") == b"1"
        server_process.kill()
        down = time.monotonic()
        while time.monotonic() - down < 2.5:  # past the client's tending noticing the node is gone
            value, took = timed(store.get, "before")
            assert value is None and took < 0.5
            _, took = timed(store.put, "during", b"2")
            assert took < 0.5
            time.sleep(0.05)
        server_process.start()  # same port, empty
        wait_until_back(store, within=5)
        store.put("after", b"3")
        assert store.get("after") == b"3"
        stats = store.stats()
        assert stats["skipped"] > 10 and stats["errors"] < 10  # backed off, not hammering
    finally:
        store.close()


def test_store_started_before_its_server(aerospike, server_process):
    store, took = timed(AerospikeStore, [("127.0.0.1", server_process.port)])
    try:
        assert took < 0.5 and store.get("k") is None and store.stats()["errors"] == 1
        server_process.start()
        wait_until_back(store, within=5)
    finally:
        store.close()


# -- the stack -----------------------------------------------------------------------------------------------


def test_result_cache_promotes_lower_hits(tmp_path, target):
    spec = ",".join(f"{h}:{p}" for h, p in target.hosts)
    key, value = unique("stack"), os.urandom(10_000)
    first = make_cache(MiB, str(tmp_path / "a"), MiB, aerospike=spec, namespace=target.namespace)
    try:
        first.put(key, value)
        assert {name: s["puts"] for name, s in first.stats().items()} == {"memory": 1, "disk": 1, "aerospike": 1}
    finally:
        first.close()
    # the same disk, fresh RAM: a disk hit, copied into RAM
    second = make_cache(MiB, str(tmp_path / "a"), MiB)
    assert second.get(key) == value and second.get(key) == value
    assert second.stats()["disk"]["hits"] == 1 and second.stats()["memory"]["hits"] == 1
    # another machine: only Aerospike has it, then RAM and disk do
    third = make_cache(MiB, str(tmp_path / "b"), MiB, aerospike=spec, namespace=target.namespace)
    try:
        assert third.get(key) == value
        stats = third.stats()
        assert stats["aerospike"]["hits"] == 1 and stats["disk"]["puts"] == 1 and stats["memory"]["puts"] == 1
        assert third.get(key) == value and third.stats()["memory"]["hits"] == 1
        assert third.get(unique("absent")) is None
        assert {name: s["misses"] for name, s in third.stats().items()} == {"memory": 2, "disk": 2, "aerospike": 1}
    finally:
        third.close()


def test_make_cache_levels_and_host_lists(tmp_path):
    assert make_cache(0, None, 0).stats() == {}
    assert list(make_cache(MiB, str(tmp_path), MiB).stats()) == ["memory", "disk"]
    assert isinstance(make_cache(MiB, None, 0), ResultCache)
    assert parse_hosts("a:3000, 10.0.0.2:3100,[::1]:3000") == [("a", 3000), ("10.0.0.2", 3100), ("::1", 3000)]
    for bad in ("", "host", "host:", ":3000", "host:port"):
        with pytest.raises(ValueError):
            parse_hosts(bad)


NO_AEROSPIKE_CHILD = """
import sys
sys.modules["aerospike"] = None  # as if the cluster extra were not installed
from dada.cache import make_cache
cache = make_cache(1 << 20, None, 0)
cache.put("k", b"v")
assert cache.get("k") == b"v"
try:
    make_cache(1 << 20, None, 0, aerospike="127.0.0.1:3000")
except RuntimeError as e:
    print(e)
"""


def test_dada_works_without_the_aerospike_package():
    child = subprocess.run([sys.executable, "-c", NO_AEROSPIKE_CHILD], capture_output=True, text=True, timeout=30)
    assert child.returncode == 0, child.stderr
    assert "aerospike" in child.stdout and "dada[cluster]" in child.stdout
