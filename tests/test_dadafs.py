"""dadafs on real FUSE mounts, against reading the source folder directly."""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from helpers import Daemon, FsServer, Mount

from dadafs.fragments import FragmentStore, SourceChanged
from dadafs.ramcache import FragmentCache

FRAGMENT = 1 << 20  # small fragments keep the tests quick and multi-fragment
SERVER_CACHE = 24 << 20
CLIENT_CACHE = 8 << 20
BIG = 40 << 20  # larger than both caches
TTL = 0.5


@pytest.fixture(scope="module")
def src(tmp_path_factory, demo_root):
    root = tmp_path_factory.mktemp("fs") / "src"
    shutil.copytree(demo_root, root)
    rng = np.random.default_rng(5)
    (root / "big").mkdir()
    for k in range(2):
        (root / "big" / f"blob{k}.bin").write_bytes(rng.integers(0, 256, BIG // 2, dtype=np.uint8).tobytes())
    (root / "odd.bin").write_bytes(rng.integers(0, 256, 3 * FRAGMENT + 12345, dtype=np.uint8).tobytes())
    (root / "empty.bin").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def server(src, tmp_path_factory):
    s = FsServer(str(src), str(tmp_path_factory.mktemp("fscache")), SERVER_CACHE, FRAGMENT)
    yield s
    s.stop()


def mount(server, tmp_path, name="mnt", *flags):
    return Mount(server.url, str(tmp_path / name), "--attr-ttl", str(TTL), "--cache-bytes", str(CLIENT_CACHE),
                 "--retry", "1.5", *flags)


@pytest.fixture
def mnt(server, tmp_path):
    m = mount(server, tmp_path)
    yield m
    m.stop()


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# -- the server on its own -------------------------------------------------------------------------


def test_ranges_etags_and_confinement(server, src):
    blob = (src / "odd.bin").read_bytes()
    st = server.get("/stat/odd.bin").json()
    assert st["size"] == len(blob) and st["type"] == "file"
    r = server.get("/data/odd.bin", {"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == blob[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(blob)}"
    assert server.get("/data/odd.bin", {"Range": "bytes=-5"}).body == blob[-5:]
    across = server.get("/data/odd.bin", {"Range": f"bytes={FRAGMENT - 3}-{2 * FRAGMENT + 3}"})
    assert across.body == blob[FRAGMENT - 3:2 * FRAGMENT + 4]
    assert server.get("/data/odd.bin").body == blob  # first reads: sent from the source's pages
    deadline = time.monotonic() + 10
    while server.metric("dadafs_cache_bytes") < len(blob) and time.monotonic() < deadline:
        time.sleep(0.05)  # the writer puts the fragments on disk
    hits = server.metric('dadafs_fragment_requests_total{result="hit"}')
    assert server.get("/data/odd.bin").body == blob  # now read back from the cache files
    assert server.get("/data/odd.bin", {"Range": f"bytes={FRAGMENT - 3}-{2 * FRAGMENT + 3}"}).body == across.body
    assert server.metric('dadafs_fragment_requests_total{result="hit"}') - hits == 4 + 3  # every fragment of both
    whole = server.get("/data/big/blob1.bin")  # 20 fragments, streamed two at a time
    assert whole.status == 200 and whole.body == (src / "big/blob1.bin").read_bytes()
    empty = server.get("/data/empty.bin")
    assert empty.status == 200 and empty.body == b""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("HEAD", "/data/odd.bin", headers={"Range": "bytes=5-"})
    head = conn.getresponse()
    assert head.status == 206 and head.getheader("Content-Length") == str(len(blob) - 5) and head.read() == b""
    conn.close()
    for bad in (f"bytes={len(blob)}-", "bytes=5-2", "bytes=x-y", "bytes=-0", "lines=1-2"):
        assert server.get("/data/odd.bin", {"Range": bad}).status == 416, bad
    tag = r.headers["etag"]
    assert server.get("/data/odd.bin", {"Range": "bytes=0-9", "If-Range": tag}).status == 206
    other = server.get("/data/odd.bin", {"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert other.status == 200 and other.body == blob  # a changed file answers whole, never a mixed range
    listing = server.get("/list/eiger/u16").json()["entries"]
    assert {e["name"] for e in listing} == set(os.listdir(src / "eiger/u16"))
    assert all("size" in e and "mtime_ns" in e for e in listing)
    os.symlink("/etc", src / "etc-link")
    try:
        for path in ("/stat/../..", "/data/%2e%2e/%2e%2e/etc/passwd", "/data/etc-link/passwd", "/stat/etc-link",
                     "/list/..", "/data//etc/passwd"):
            assert server.get(path).status == 404, path
        assert "etc-link" not in {e["name"] for e in server.get("/list/").json()["entries"]}
    finally:
        os.unlink(src / "etc-link")


def fetched(store: FragmentStore, path, st: os.stat_result, index: int) -> tuple[bytes, bool]:
    """A fragment's bytes from the store, and whether it was a cache hit (the piece is closed)."""
    piece, hit = store.get(str(path), "f", st, index)
    try:
        return bytes(piece.memory), hit
    finally:
        piece.close()


def test_ram_cache_never_reuses_a_buffer_a_reader_holds():
    cache = FragmentCache(2 * 4096, 4096)
    fills = []

    def fill(value: int):
        def write(buf: memoryview) -> None:
            fills.append(value)
            buf[:] = bytes([value]) * len(buf)
        return write

    with cache.pinned("a", 4096, fill(1)) as a:
        for k in range(2, 12):  # evicts "a" many times over while we hold it
            with cache.pinned(str(k), 4096, fill(k)) as b:
                assert bytes(b.view) == bytes([k]) * 4096 and b is not a
        assert bytes(a.view) == b"\x01" * 4096
    assert cache.bytes <= 2 * 4096 and fills == list(range(1, 12))
    with cache.pinned("11", 4096, fill(99)) as again:  # still cached: no new fill
        assert bytes(again.view) == bytes([11]) * 4096
    with cache.pinned("x", 100, fill(7)) as short:  # a short last fragment: exact size
        assert short.size == 100 and bytes(short.view) == b"\x07" * 100
    with pytest.raises(OSError), cache.pinned("bad", 4096, lambda buf: (_ for _ in ()).throw(OSError("away"))):
        pass
    assert not cache.peek("bad")


def test_fragment_store_reads_source_once_and_stays_bounded(tmp_path):
    data = os.urandom(10 * 4096 - 123)  # a short last fragment: written unaligned-length, read back exact
    (tmp_path / "f").write_bytes(data)
    store = FragmentStore(str(tmp_path / "c"), 5 * 4096, 4096)
    st = os.stat(tmp_path / "f")
    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda _: fetched(store, tmp_path / "f", st, 3)[0], range(64)))
    assert all(g == data[3 * 4096:4 * 4096] for g in got)
    assert store.stats.source_reads == 1
    for i in range(10):
        assert fetched(store, tmp_path / "f", st, i)[0] == data[i * 4096:(i + 1) * 4096]
    store.flush()
    assert store.bytes <= 5 * 4096
    assert sum(p.stat().st_size for p in (tmp_path / "c").iterdir()) <= 5 * 4096
    # a changed file has other fragment names: nothing stale is found
    (tmp_path / "f").write_bytes(data[::-1])
    st2 = os.stat(tmp_path / "f")
    assert fetched(store, tmp_path / "f", st2, 9)[0] == data[::-1][9 * 4096:]
    with pytest.raises(SourceChanged):  # asked for the old version: refused, nothing cached under its name
        fetched(store, tmp_path / "f", st, 0)
    store.flush()
    cached = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
    assert cached[store.key("f", st2, 9)] == data[::-1][9 * 4096:]
    assert store.key("f", st, 0) not in cached
    # an earlier run's fragments are adopted, within the bound
    again = FragmentStore(str(tmp_path / "c"), 5 * 4096, 4096)
    assert again.bytes == store.bytes and fetched(again, tmp_path / "f", st2, 9)[1]


def test_fragment_store_writes_through_the_page_cache_where_o_direct_is_refused(tmp_path, monkeypatch):
    real_open = os.open

    def refusing_open(path, flags, *args):  # what a filesystem without O_DIRECT answers
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    data = os.urandom(3 * 4096 + 5)
    (tmp_path / "f").write_bytes(data)
    st = os.stat(tmp_path / "f")
    store = FragmentStore(str(tmp_path / "c"), 10 * 4096, 4096)
    assert [fetched(store, tmp_path / "f", st, i)[0] for i in range(4)] == [data[i * 4096:(i + 1) * 4096]
                                                                           for i in range(4)]
    store.flush()
    assert sorted(p.read_bytes() for p in (tmp_path / "c").iterdir()) == sorted(
        data[i * 4096:(i + 1) * 4096] for i in range(4))


# -- through the mount -----------------------------------------------------------------------------


def test_h5py_through_mount_equals_direct(mnt, src):
    for scan in ("eiger/u16/scan_0001", "eiger/u32/scan_0002"):
        with h5py.File(src / f"{scan}_master.h5") as a, h5py.File(f"{mnt.mountpoint}/{scan}_master.h5") as b:
            for key in a["entry/data"]:
                np.testing.assert_array_equal(a["entry/data"][key][()], b["entry/data"][key][()])
            np.testing.assert_array_equal(a["entry/instrument/detector/detectorSpecific/pixel_mask"][()],
                                          b["entry/instrument/detector/detectorSpecific/pixel_mask"][()])


def test_listing_and_attributes_match_source(mnt, src):
    def run(cmd, where):
        return subprocess.run(cmd, cwd=where, capture_output=True, text=True, check=True).stdout

    find = ["find", ".", "-printf", "%p %y %s %m %T@ %U %G\n"]
    assert sorted(run(find, mnt.mountpoint).splitlines()) == sorted(run(find, src).splitlines())
    ls = ["ls", "-lR", "--time-style=full-iso"]
    assert run(ls, mnt.mountpoint) == run(ls, src)
    for rel in ("eiger/u16/scan_0001_master.h5", "big/blob0.bin", "eiger"):
        a, b = os.stat(src / rel), os.stat(f"{mnt.mountpoint}/{rel}")
        assert (a.st_size, a.st_mtime_ns, a.st_mode, a.st_nlink) == (b.st_size, b.st_mtime_ns, b.st_mode, b.st_nlink)
    with pytest.raises(OSError) as e:
        os.open(f"{mnt.mountpoint}/odd.bin", os.O_RDWR)
    assert e.value.errno == errno.EROFS
    assert not os.path.exists(f"{mnt.mountpoint}/nothing-here")


def test_dada_serves_the_same_through_the_mount(mnt, src):
    direct, through = Daemon(["serve", str(src)]), Daemon(["serve", mnt.mountpoint])
    try:
        for url in ("/frame/eiger/u32/scan_0002/25.npy", "/sum/eiger/u16/scan_0001.npy?vert=1:3",
                    "/darkfield/eiger/u16/scan_0001.npy?rmin=6&rmax=24", "/stxm/eiger/u32/scan_0002.h5",
                    "/meta/eiger/u16/scan_0001.json"):
            a, b = direct.get(url), through.get(url)
            assert a.status == b.status == 200, url
            if url.endswith(".h5"):
                with h5py.File(io.BytesIO(a.body)) as fa, h5py.File(io.BytesIO(b.body)) as fb:
                    for k in fa:
                        np.testing.assert_array_equal(fa[k][()], fb[k][()])
            elif url.endswith(".json"):
                ja, jb = a.json(), b.json()
                assert ja["identity"] == jb["identity"] and ja["frames"] == jb["frames"]
            else:
                assert a.body == b.body, url
    finally:
        direct.stop()
        through.stop()


def test_server_away_then_back(server, src, tmp_path):
    m = mount(server, tmp_path, "away")
    try:
        cached = f"{m.mountpoint}/odd.bin"
        want = digest(str(src / "odd.bin"))
        assert digest(cached) == want
        os.listdir(f"{m.mountpoint}/big")
        server.stop()
        assert digest(cached) == want  # everything read before is still there
        t0 = time.monotonic()
        with pytest.raises(OSError) as e, open(f"{m.mountpoint}/big/blob1.bin", "rb") as f:
            f.read(4096)
        assert e.value.errno == errno.EIO
        assert time.monotonic() - t0 < 8  # bounded: no hang
        server.start()
        with open(f"{m.mountpoint}/big/blob1.bin", "rb") as f:
            assert f.read(4096) == (src / "big/blob1.bin").read_bytes()[:4096]
    finally:
        if not server.proc.alive():
            server.start()
        m.stop()


def test_changed_source_is_served_after_the_ttl_never_mixed(mnt, src):
    path = src / "changing.bin"
    v1 = os.urandom(3 * FRAGMENT)
    v2 = os.urandom(3 * FRAGMENT)
    path.write_bytes(v1)
    time.sleep(TTL + 0.3)
    seen = {hashlib.sha256(v1).hexdigest(): "v1", hashlib.sha256(v2).hexdigest(): "v2"}
    assert seen[digest(f"{mnt.mountpoint}/changing.bin")] == "v1"
    stop = threading.Event()
    results: list[str] = []

    def reader():
        while not stop.is_set():
            try:
                results.append(seen.get(digest(f"{mnt.mountpoint}/changing.bin"), "MIXED"))
            except OSError as exc:
                results.append(f"errno {exc.errno}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    tmp = src / "changing.tmp"
    tmp.write_bytes(v2)
    os.replace(tmp, path)
    time.sleep(TTL + 1.0)
    stop.set()
    for t in threads:
        t.join()
    assert "MIXED" not in results
    assert set(results) <= {"v1", "v2", f"errno {errno.EIO}"}
    assert seen[digest(f"{mnt.mountpoint}/changing.bin")] == "v2"


READER = """
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    print(hashlib.sha256(f.read()).hexdigest())
"""


def test_concurrent_readers_fetch_each_fragment_once(server, src, tmp_path):
    m = mount(server, tmp_path, "conc", "--cache-bytes", str(64 << 20))  # room for everything read
    try:
        files = ["odd.bin", "big/blob0.bin", "eiger/u32/scan_0002_data_000001.h5"]
        want = {f: digest(str(src / f)) for f in files}
        before = server.metric('dadafs_requests_total{kind="data",status="206"}')
        jobs = [files[k % len(files)] for k in range(12)]
        with ThreadPoolExecutor(8) as ex:
            futures = [ex.submit(digest, f"{m.mountpoint}/{f}") for f in jobs]
            procs = [subprocess.Popen([sys.executable, "-c", READER, f"{m.mountpoint}/{f}"], stdout=subprocess.PIPE,
                                      text=True) for f in files]
            got = [fut.result() for fut in futures]
            outs = [p.communicate()[0].strip() for p in procs]
        assert got == [want[f] for f in jobs]
        assert outs == [want[f] for f in files]
        fragments = sum(-(-os.path.getsize(src / f) // FRAGMENT) for f in files)
        status = m.status()
        assert status["data"]["fetches"] == fragments
        assert server.metric('dadafs_requests_total{kind="data",status="206"}') - before == fragments
    finally:
        m.stop()


def test_status_counts_bytes_read_and_fetched(server, src, tmp_path):
    """read_bytes counts what readers got, fetched_bytes what came from the server: a second read of a file
    the cache holds fetches nothing (the share the cache served is what the cluster benchmark reports)."""
    m = mount(server, tmp_path, "bytes", "--cache-bytes", str(16 << 20))
    try:
        size = os.path.getsize(src / "odd.bin")
        before = server.metric('dadafs_requests_total{kind="data",status="206"}')
        assert digest(f"{m.mountpoint}/odd.bin") == digest(str(src / "odd.bin"))
        first = m.status()["data"]
        assert (first["read_bytes"], first["fetched_bytes"]) == (size, size)
        assert server.metric('dadafs_requests_total{kind="data",status="206"}') - before == -(-size // FRAGMENT)
        with open(f"{m.mountpoint}/odd.bin", "rb", buffering=0) as f:  # unbuffered: exactly the 1000 bytes
            f.seek(FRAGMENT + 7)
            assert f.read(1000) == (src / "odd.bin").read_bytes()[FRAGMENT + 7:FRAGMENT + 1007]
        again = m.status()["data"]
        assert (again["read_bytes"], again["fetched_bytes"]) == (size + 1000, size)
    finally:
        m.stop()


def test_cache_bounds_hold_on_both_sides(mnt, server, src):
    for name in ("big/blob0.bin", "big/blob1.bin", "odd.bin"):
        assert digest(f"{mnt.mountpoint}/{name}") == digest(str(src / name))
    status = mnt.status()
    assert 0 < status["data"]["cached_bytes"] <= CLIENT_CACHE
    assert server.metric("dadafs_cache_bytes") <= SERVER_CACHE
    on_disk = sum(p.stat().st_size for p in os.scandir(server.cache_dir))
    assert 0 < on_disk <= SERVER_CACHE


def test_sequential_reads_ahead_random_does_not(server, tmp_path):
    m = mount(server, tmp_path, "ra")
    try:
        with open(f"{m.mountpoint}/big/blob0.bin", "rb", buffering=0) as f:
            for _ in range(4):
                f.read(1 << 20)
        ahead = m.status()["data"]["readaheads"]
        assert ahead >= 2
        with open(f"{m.mountpoint}/big/blob1.bin", "rb", buffering=0) as f:
            for off in (15, 3, 11, 7):
                f.seek(off * FRAGMENT + 100)
                f.read(1000)
        assert m.status()["data"]["readaheads"] == ahead
    finally:
        m.stop()


def test_status_command_and_clean_unmount_on_signals(server, tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        m = mount(server, tmp_path, f"sig{int(sig)}")
        digest(f"{m.mountpoint}/odd.bin")
        digest(f"{m.mountpoint}/odd.bin")
        out = subprocess.run([sys.executable, "-m", "dadafs.cli", "status", m.mountpoint], capture_output=True,
                             text=True, check=True).stdout
        assert "hit rate" in out and server.url in out
        m.proc.signal(sig)
        assert m.proc.proc.wait(10) == 0
        assert not os.path.ismount(m.mountpoint)


def test_background_mount_and_help(server, tmp_path):
    mp = tmp_path / "bg"
    mp.mkdir()
    out = subprocess.run([sys.executable, "-m", "dadafs.cli", "mount", server.url, str(mp)], capture_output=True,
                         text=True, timeout=30)
    try:
        assert out.returncode == 0, out.stderr
        assert os.path.ismount(mp) and "odd.bin" in os.listdir(mp)
    finally:
        subprocess.run(["fusermount3", "-u", str(mp)], check=False)
    for args in ([], ["serve"], ["mount"], ["status"]):
        h = subprocess.run([sys.executable, "-m", "dadafs.cli", *args, "--help"], capture_output=True, text=True)
        assert h.returncode == 0 and "usage: dadafs" in h.stdout
