"""dadafs throughput and latency against reading directly and plain HTTP, measured in one run.

    python benchmarks/dadafs.py [--dir DIR] [--size-mib 512]

Starts real ``dadafs serve`` processes and FUSE mounts on loopback. "Cold"
means dadafs's caches are empty (a fresh server cache folder and a fresh
mount); the source files sit in the OS page cache for every contender, so
the comparison is of the paths, not of the disk. The plain-HTTP baseline is
the leanest Python client we know: one keep-alive connection, 4 MiB ranges
received with ``readinto`` into one reused buffer, against a fresh server.
Medians of --runs runs; each cold run gets its own fresh server and mount.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from common import eiger_file  # noqa: E402
from helpers import FsServer, Mount  # noqa: E402

CHUNK = 1 << 20
FRAGMENT = 4 << 20


def read_all(path: str) -> int:
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return n
            n += len(b)


def http_read(port: int, rel: str, size: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    buf = memoryview(bytearray(FRAGMENT))
    for start in range(0, size, FRAGMENT):
        stop = min(start + FRAGMENT, size)
        conn.request("GET", f"/data/{rel}", headers={"Range": f"bytes={start}-{stop - 1}"})
        r = conn.getresponse()
        assert r.status == 206 and r.length == stop - start
        got = 0
        while got < stop - start:
            got += r.readinto(buf[got:stop - start])
    conn.close()


def fresh(src: str, tmp: str, tag: str, *flags: str) -> tuple[FsServer, Mount]:
    server = FsServer(src, tempfile.mkdtemp(prefix=f"cache-{tag}-", dir=tmp), 8 << 30, FRAGMENT)
    mount = Mount(server.url, tempfile.mkdtemp(prefix=f"mnt-{tag}-", dir=tmp), *flags)
    return server, mount


def done(server: FsServer, mount: Mount | None = None) -> None:
    """Stop a mount and its server and drop the server's cache folder (runs would fill the disk)."""
    if mount is not None:
        mount.stop()
    server.stop()
    shutil.rmtree(server.cache_dir, ignore_errors=True)


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def row(what: str, value: float, unit: str, baseline: float | None = None, base_name: str = "") -> None:
    ratio = f"{value / baseline:.2f}× {base_name}" if baseline else ""
    print(f"| {what:52s} | {value:10.3f} {unit:8s} | {ratio:24s} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="work folder (default: a temporary one)")
    p.add_argument("--size-mib", type=int, default=512, help="size of the large file")
    p.add_argument("--runs", type=int, default=5, help="runs per sequential figure (median)")
    args = p.parse_args()
    tmp = args.dir or tempfile.mkdtemp(prefix="dadafs-bench-")
    src = os.path.join(tmp, "src")
    os.makedirs(src, exist_ok=True)
    big = os.path.join(src, "big.bin")
    size = args.size_mib << 20
    if not os.path.exists(big) or os.path.getsize(big) != size:
        with open(big, "wb") as f:
            for _ in range(size // CHUNK):
                f.write(os.urandom(CHUNK))
    eiger_file(os.path.join(src, "eiger"), "scan", 32, 32, 512, 512, "uint16")
    for k in range(200):
        with open(os.path.join(src, f"small_{k:03d}.txt"), "w") as f:
            f.write(str(k))
    read_all(big)  # the source in the page cache for everyone
    print(f"\n## dadafs, {args.size_mib} MiB file, fragments {FRAGMENT >> 20} MiB\n")
    print(f"| {'what':52s} | {'value':19s} | {'ratio':24s} |")
    print(f"|{'-' * 54}|{'-' * 21}|{'-' * 26}|")

    direct = statistics.median(timed(lambda: read_all(big)) for _ in range(3))
    row("sequential read, directly from the source", gbps(size, direct), "GB/s")
    times: dict[str, list[float]] = {k: [] for k in ("http", "cold", "cold_imm", "warm_imm", "warm_mut")}
    ram = ("--cache-bytes", str(size + (64 << 20)))  # the mutable warm re-read needs the file in RAM
    for _ in range(args.runs):
        server = FsServer(src, tempfile.mkdtemp(prefix="cache-http-", dir=tmp), 8 << 30, FRAGMENT)
        times["http"].append(timed(lambda s=server: http_read(s.port, "big.bin", size)))
        done(server)
        for tag, flags, cold, warm in (("def", (), "cold", None), ("ram", ram, None, "warm_mut"),
                                       ("imm", ("--immutable",), "cold_imm", "warm_imm")):
            server, mount = fresh(src, tmp, tag, *flags)
            path = os.path.join(mount.mountpoint, "big.bin")
            first = timed(lambda p=path: read_all(p))
            if cold:
                times[cold].append(first)
            if warm:
                times[warm].append(timed(lambda p=path: read_all(p)))
            done(server, mount)
    rate = {k: gbps(size, statistics.median(v)) for k, v in times.items()}
    row("sequential read, plain HTTP range reads (cold server)", rate["http"], "GB/s")
    row("sequential read through the mount, cold (default mount)", rate["cold"], "GB/s", rate["http"],
        "plain HTTP (target ≥ 0.7)")
    row("sequential read through the mount, cold (--immutable)", rate["cold_imm"], "GB/s", rate["http"],
        "plain HTTP")
    paired = [h / c for h, c in zip(times["http"], times["cold"], strict=True)]
    print(f"|   cold default mount ÷ plain HTTP, run by run: {' '.join(f'{r:.2f}' for r in paired)}"
          f" (median {statistics.median(paired):.2f})")
    row("sequential re-read, warm (default mount: direct_io, RAM cache)", rate["warm_mut"], "GB/s")
    row("sequential re-read, warm (--immutable: kernel page cache)", rate["warm_imm"], "GB/s")
    row("  (target ≥ 1 GB/s)", 1.0, "GB/s")

    server, mount = fresh(src, tmp, "rand", "--immutable")
    path = os.path.join(mount.mountpoint, "big.bin")
    rng = random.Random(1)
    offsets = [rng.randrange(0, size - 65536) for _ in range(400)]

    def random_reads(p: str) -> None:
        fd = os.open(p, os.O_RDONLY)
        try:
            for off in offsets:
                os.pread(fd, 65536, off)
        finally:
            os.close(fd)

    cold_rand = timed(lambda: random_reads(path))
    warm_rand = timed(lambda: random_reads(path))
    direct_rand = statistics.median(timed(lambda: random_reads(big)) for _ in range(3))
    row("random 64 KiB reads, directly", len(offsets) / direct_rand, "reads/s")
    row("random 64 KiB reads through the mount, cold (--immutable)", len(offsets) / cold_rand, "reads/s")
    row("random 64 KiB reads through the mount, cached (--immutable)", len(offsets) / warm_rand, "reads/s")

    names = [os.path.join(mount.mountpoint, f"small_{k:03d}.txt") for k in range(200)]
    os.listdir(mount.mountpoint)
    lat = []
    for _ in range(5):
        t0 = time.perf_counter()
        for n in names:
            os.stat(n)
        lat.append((time.perf_counter() - t0) / len(names))
    direct_lat = []
    for _ in range(5):
        t0 = time.perf_counter()
        for k in range(200):
            os.stat(os.path.join(src, f"small_{k:03d}.txt"))
        direct_lat.append((time.perf_counter() - t0) / 200)
    row("stat() directly", statistics.median(direct_lat) * 1e6, "µs")
    row("stat() through the mount, cached (target ≤ 100 µs)", statistics.median(lat) * 1e6, "µs")

    def frames(master: str) -> int:
        with h5py.File(master, "r") as f:
            data = f["entry/data/data_000001"]
            buf = np.empty(data.shape[1:], dtype=data.dtype)
            for i in range(data.shape[0]):
                data.read_direct(buf, np.s_[i])
            return data.shape[0]

    n = frames(os.path.join(src, "eiger/scan_master.h5"))
    t_direct = statistics.median(timed(lambda: frames(os.path.join(src, "eiger/scan_master.h5"))) for _ in range(3))
    master = os.path.join(mount.mountpoint, "eiger/scan_master.h5")
    t_cold = timed(lambda: frames(master))
    t_warm = statistics.median(timed(lambda: frames(master)) for _ in range(3))
    row("h5py frames (512² uint16) directly", n / t_direct, "frames/s")
    row("h5py frames through the mount, cold (--immutable)", n / t_cold, "frames/s", n / t_direct, "direct")
    row("h5py frames through the mount, warm (--immutable)", n / t_warm, "frames/s", n / t_direct, "direct")
    done(server, mount)
    server, mount = fresh(src, tmp, "h5mut")
    master = os.path.join(mount.mountpoint, "eiger/scan_master.h5")
    frames(master)
    t_mut = statistics.median(timed(lambda: frames(master)) for _ in range(3))
    row("h5py frames, warm, mutable files (direct_io)", n / t_mut, "frames/s", n / t_direct, "direct")
    done(server, mount)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
