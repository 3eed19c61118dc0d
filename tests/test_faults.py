"""Faults as real processes: a cache disk read-only or full, a node that crash-loops, Aerospike down when the
front starts, the dadafs server stopped under a daemon's data. Answers stay complete and equal, byte for byte,
to those of a healthy node (which computes public routes in-process, with no cache); each test first checks
that its fault really happened.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress

import pytest
from helpers import Daemon, FsServer, Mount, Response, free_port, http_get, missing, require_module
from test_cache import files_below
from test_cluster import jobs_done, metric, urls

from dada.cache.disk import HEADER, MAGIC, TEMP_PREFIX, checksum

SCANS = ("eiger/u16/scan_0001", "eiger/u32/scan_0002")


@pytest.fixture(scope="module")
def healthy(demo_root):
    """Two nodes that stay up; the first one's own routes are the reference answers."""
    ds = [Daemon(["node", demo_root, "--threads", "1"]) for _ in range(2)]
    yield ds
    for d in ds:
        d.stop()


def config(tmp_path, **settings: float) -> str:
    """A TOML file with settings that have no flag."""
    path = tmp_path / f"dada-{time.monotonic_ns()}.toml"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    return str(path)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def same(d: Daemon, reference: Daemon, path: str) -> float:
    """Assert ``d`` answers ``path`` 200 with the reference's bytes; the seconds ``d`` took."""
    t0 = time.monotonic()
    got = d.get(path)
    took = time.monotonic() - t0
    assert got.status == 200, (path, got.body[:300])
    assert got.body == reference.get(path).body, path
    return took


def log_of(d: Daemon) -> str:
    """Stop the daemon; what it logged."""
    text = d.output()
    d.stop()
    return text


# -- 1. the disk cache's folder refuses writes -----------------------------------------------------


class BrokenDisk:
    """A cache folder that refuses writes, ``read-only`` or ``full``, until :meth:`heal`. As root (whom
    permission bits do not stop) a tmpfs mount, mounted read-only or filled to the brim; else mode 0555."""

    REFUSAL = {"read-only": {errno.EROFS, errno.EACCES}, "full": {errno.ENOSPC}}

    def __init__(self, path: str, fault: str) -> None:
        self.path, self.fault, self.mounted = path, fault, False
        self.filler = os.path.join(path, "filler")
        os.makedirs(path)
        if os.geteuid() != 0:
            if fault == "full":
                missing("a full filesystem needs root here (a tiny tmpfs mount)")
            os.chmod(path, 0o555)
            return
        opts = "size=4m,ro" if fault == "read-only" else "size=4m"  # room for every entry once healed
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], capture_output=True, text=True)
        if mounted.returncode:
            missing(f"cannot mount a tmpfs as root: {mounted.stderr.strip()}")
        self.mounted = True
        if fault == "full":
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
            try:
                for chunk in (b"\0" * 65536, b"\0"):  # big writes, then byte by byte to the last one
                    with suppress(OSError):
                        while True:
                            os.write(fd, chunk)
            finally:
                os.close(fd)

    def write_error(self) -> int | None:
        """The errno a 4 KiB file written into the folder fails with; None if it is written."""
        probe = os.path.join(self.path, "probe")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT)
            try:
                os.write(fd, b"x" * 4096)
            finally:
                os.close(fd)
        except OSError as e:
            return e.errno
        finally:
            with suppress(OSError):
                os.unlink(probe)
        return None

    def heal(self) -> None:
        if self.fault == "full":
            os.unlink(self.filler)
        elif self.mounted:
            subprocess.run(["mount", "-o", "remount,rw", self.path], check=True)
        else:
            os.chmod(self.path, 0o755)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", self.path], check=False)
            if os.path.ismount(self.path):
                subprocess.run(["umount", "-l", self.path], check=False)


def intact_entries(directory: str) -> int:
    """How many cache files lie below ``directory``; each must be whole (checksum) and none temporary."""
    entries = [p for p in files_below(directory) if os.path.dirname(p) != directory]  # not the filler
    for path in entries:
        assert not os.path.basename(path).startswith(TEMP_PREFIX), path
        with open(path, "rb") as f:
            data = f.read()
        magic, length, digest = HEADER.unpack(data[:HEADER.size])
        payload = data[HEADER.size:]
        assert magic == MAGIC and length == len(payload) and checksum(payload) == digest, path
    return len(entries)


CACHED = ("/darkfield/eiger/u16/scan_0001.npy?rmin=8", "/dpc/eiger/u32/scan_0002.npy?reference=median",
          "/radial/eiger/u16/scan_0001.npy?reduce=sum&nbins=24", "/frame/eiger/u32/scan_0002/25.npy",
          "/sum/eiger/u16/scan_0001.npy?vert=1:3")


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_cache_disk_that_refuses_writes_only_means_no_caching(fault, demo_root, healthy, tmp_path):
    disk = BrokenDisk(str(tmp_path / "cache"), fault)
    # no RAM levels: every request goes down to the disk
    args = ["serve", demo_root, "--nodes", urls(healthy), "--block-frames", "8", "--cache-dir", disk.path,
            "--config", config(tmp_path, cache_memory_bytes=0, answer_cache_bytes=0)]
    f = None

    def disk_count(counter: str) -> float:
        return metric(f, "dada_cache", level="disk", counter=counter)

    try:
        assert disk.write_error() in BrokenDisk.REFUSAL[fault]
        f = Daemon(args)
        for _ in range(3):
            for case in CACHED:
                same(f, healthy[0], case)
        assert f.alive()
        assert disk_count("errors") == disk_count("puts") > 0  # every write tried, failed and counted
        assert disk_count("entries") == disk_count("hits") == 0
        disk.heal()
        assert disk.write_error() is None
        for _ in range(2):  # stored now, then read back from the disk
            for case in CACHED:
                same(f, healthy[0], case)
        assert disk_count("hits") > 0 and disk_count("entries") > 0
        log = log_of(f)
        assert "cannot write below" in log and "Traceback" not in log
        f.stop()  # its cache writes, made after the answers, are all on disk once it has stopped
        assert intact_entries(disk.path) > 0
        f = Daemon(args)  # a fresh process: the maps from the disk, nothing computed, nothing corrupt
        maps = [case for case in CACHED if not case.startswith("/sum/")]  # a sum's parts are not cached
        for case in maps:
            same(f, healthy[0], case)
        assert jobs_done(f) == 0 and disk_count("corrupt") == 0 and disk_count("hits") > 0
    finally:
        if f is not None:
            f.stop()
        disk.close()


# -- 2. a node that crash-loops --------------------------------------------------------------------


class CrashLoop(threading.Thread):
    """``dada node`` on one port, killed with SIGKILL ``life`` s after each time it comes up, started again."""

    def __init__(self, root: str, life: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "dada.cli", "node", root, "--threads", "1", "--host", "127.0.0.1",
                    "--port", str(self.port)]
        self.life = life
        self.deaths = 0  # kills of a node that was up
        self.halt = threading.Event()

    def up(self) -> bool:
        try:
            return http_get(self.port, "/healthz", timeout=1).status == 200
        except OSError:
            return False

    def run(self) -> None:
        while not self.halt.is_set():
            proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while proc.poll() is None and not self.halt.is_set() and not self.up():
                    time.sleep(0.05)
                served = proc.poll() is None and not self.halt.is_set()
                self.halt.wait(self.life)
            finally:
                proc.kill()
                proc.wait()
            self.deaths += served


JOB_TIMEOUT = 2.0


def test_a_crash_looping_node_changes_no_answer(demo_root, healthy, tmp_path):
    crashing = CrashLoop(demo_root)
    crashing.start()
    f = Daemon(["serve", demo_root, "--nodes", f"{urls(healthy)},{crashing.url}", "--block-frames", "8",
                "--cache-dir", "none", "--config", config(tmp_path, job_timeout=JOB_TIMEOUT)])
    states: list[dict] = []  # the crashing node as the front's /healthz shows it after each request
    took: list[float] = []
    try:
        deadline = time.monotonic() + 60
        for k in itertools.count():  # uncached requests (a new rmin each) on 6 blocks of 8 frames, ~10/s
            if k >= 30 and crashing.deaths >= 3 and any(not s["up"] for s in states):
                break
            assert time.monotonic() < deadline, (k, crashing.deaths, states[-3:])
            took.append(same(f, healthy[0], f"/darkfield/{SCANS[k % 2]}.npy?rmin={4 + k / 20}"))
            states.append(next(n for n in f.get("/healthz").json()["nodes"] if n["url"] == crashing.url))
            time.sleep(0.05)
        assert f.alive()
    finally:
        crashing.halt.set()
        crashing.join()
        f.stop()
    assert max(took) < 2 * JOB_TIMEOUT, sorted(took)[-5:]  # no request waited out job timeouts
    assert max(s["failures"] for s in states) >= 3 and states[-1]["done"] > 0  # it failed and it served


# -- 3. Aerospike down when the front starts -------------------------------------------------------


def test_a_front_started_while_aerospike_is_down_answers_and_takes_it_up_later(demo_root, healthy):
    require_module("aerospike", "pip install -e '.[cluster]'")
    from test_cache import ServerProcess

    server = ServerProcess(free_port())
    assert refused(server.port)
    args = ["serve", demo_root, "--nodes", urls(healthy), "--block-frames", "8", "--cache-dir", "none",
            "--aerospike", f"127.0.0.1:{server.port}"]
    fronts = [Daemon(args)]

    def count(d: Daemon, counter: str) -> float:
        return metric(d, "dada_cache", level="aerospike", counter=counter)

    try:
        a = fronts[0]
        for k in range(3):
            assert same(a, healthy[0], f"/darkfield/eiger/u16/scan_0001.npy?rmin={8 + k}") < 3
        assert count(a, "errors") + count(a, "skipped") > 0 and count(a, "puts") == 0
        server.start()  # the server comes up: the front connects by itself
        deadline = time.monotonic() + 15
        for k in itertools.count():
            same(a, healthy[0], f"/darkfield/eiger/u32/scan_0002.npy?rmin={8 + k}")
            if count(a, "puts") > 0:
                break
            assert time.monotonic() < deadline, "the front never took Aerospike up"
            time.sleep(0.3)
        case = "/dpc/eiger/u16/scan_0001.npy?rdpc=7"
        same(a, healthy[0], case)
        fronts.append(Daemon(args))  # another front: nothing in its memory, the answer from Aerospike
        same(fronts[1], healthy[0], case)
        assert jobs_done(fronts[1]) == 0 and count(fronts[1], "hits") > 0
    finally:
        for d in fronts:
            d.stop()
        if server.proc is not None:
            server.kill()


# -- 4. the dadafs server stops under a daemon's data ----------------------------------------------


def test_a_daemon_on_a_dadafs_mount_whose_server_stops(demo_root, healthy, tmp_path):
    # 4 KiB fragments: a file read in part is cached in part
    server = FsServer(demo_root, str(tmp_path / "fscache"), 24 << 20, 4096)
    m = Mount(server.url, str(tmp_path / "mnt"), "--retry", "1.5", "--attr-ttl", "0.5", "--cache-bytes", str(8 << 20))
    f = None
    read = ("/darkfield/eiger/u16/scan_0001.npy?rmin=8", "/frame/eiger/u16/scan_0001/5.npy",
            "/frame/eiger/u32/scan_0002/0.npy")
    cached = (*read, "/darkfield/eiger/u16/scan_0001.npy?rmin=9", "/frame/eiger/u16/scan_0001/40.npy")
    partly = ("/frame/eiger/u32/scan_0002/30.npy", "/darkfield/eiger/u32/scan_0002.npy?rmin=8")
    never = "/frame/generic/stack_0001/0.npy"
    meta = "/meta/eiger/u32/scan_0002.json"  # reads the master and every data file's first bytes
    try:
        f = Daemon(["serve", m.mountpoint, "--local-nodes", "1", "--block-frames", "8", "--cache-dir", "none"])
        for case in read:
            same(f, healthy[0], case)
        assert f.get(meta).status == 200
        server.stop()
        assert refused(server.port)
        for case in cached:  # what the mount holds (the README's promise) and what dada holds
            assert same(f, healthy[0], case) < 5, case
        assert f.get(meta).status == 200
        answers: dict[str, Response] = {}
        for case in (*partly, never):
            t0 = time.monotonic()
            answers[case] = r = f.get(case)
            assert time.monotonic() - t0 < 5, case  # the mount's --retry, once, not per file looked at
            assert r.content_type == "application/json" and r.json()["status"] == r.status, (case, r.body)
            assert "Traceback" not in r.body.decode()
        assert {answers[c].status for c in partly} <= {422, 502, 503, 504}, {c: answers[c].body for c in partly}
        assert answers[never].status != 500 and f.alive()
        server.start()
        for case in (*partly, never, *cached[:2]):
            same(f, healthy[0], case)
        assert answers[never].status == 503 and answers[never].json()["error"] == "unavailable", answers[never].body
    finally:
        if f is not None:
            f.stop()
        m.stop()
        server.stop()
