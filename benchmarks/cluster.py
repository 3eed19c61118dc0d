"""Cluster throughput and cached-hit latency, each figure against a baseline measured in the same run.

1. Node scaling: a front over 2 nodes (``--threads 1`` each) against the same front over 1 node.
2. Proxy overhead: the embedded default (front + 2 local nodes) against one process computing
   in-process on both cores (``dada node --threads 2`` answering ``/stxm`` itself).
3. Load balancer: the front through HAProxy (the shipped deploy/haproxy.cfg) against a direct node list.
4. Cached hit: a 256x256 float64 map as npy under 32 concurrent connections (wrk) against a bare
   aiohttp handler returning the same bytes: requests/s and p99.

5. Small frames: a 192x192-point scan of 64x64 uint16 frames, front + 2 local nodes against one process.
6. Front memory: peak RSS of a fresh embedded default answering 102,400 points, against the answer.
7. Lanes: a 1 Mpixel /frame idle and while three full-scan /stxm requests run (p99 ratio).

Full-scan ``/stxm`` with all four channels; every timed request changes every channel's parameters
slightly, so nothing comes from a cache; both daemons of a pair answer the same URL and their
answers must be byte-identical. Pairs (baseline, ours) are interleaved and repeated; each pair's
ratio, the median, and the front's own CPU per scan point are printed.

    python benchmarks/cluster.py [--dir DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from balancers import start_balancer  # noqa: E402
from common import eiger_file  # noqa: E402
from helpers import Daemon, free_port  # noqa: E402

STXM = "/stxm/{name}.npy"
_counter = itertools.count(1)


def fresh_query() -> str:
    """All four channels with parameters no earlier request used (no cache can answer)."""
    e = next(_counter) * 1e-6
    return (f"?channels=darkfield,dpc,azimuthal,radial&darkfield.rmin={10 + e}&dpc.rdpc={12 + e}"
            f"&azimuthal.rmin={20 + e}&radial.rmin={e}&radial.nbins=64&output=darkfield.darkfield")


def answer(d: Daemon, url: str) -> tuple[float, float, bytes]:
    """(wall seconds, CPU seconds of the daemon's own process, body) of one request."""
    c0, t0 = cpu_seconds(d.proc.pid), time.perf_counter()
    r = d.get(url, timeout=900)
    t, c = time.perf_counter() - t0, cpu_seconds(d.proc.pid) - c0
    if r.status != 200:
        raise RuntimeError(f"{url}: {r.status} {r.body[:300]!r}")
    return t, c, r.body


def cpu_seconds(pid: int) -> float:
    """CPU seconds of one process so far, its children not included: the scheduler's nanosecond count of
    every live thread (``/proc/{pid}/task/*/schedstat``; the ``stat`` ticks are 10 ms, a quarter of a µs
    per point on a 36,864-point request). The daemons' threads live in pools, so none is lost by exiting."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that ended just now
            continue
    return total / 1e9


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def pairs(title: str, base_name: str, ours_name: str, base: Daemon, ours: Daemon, url: str, repeats: int,
          frames: int, cpu_of: Daemon | None = None) -> float:
    """Interleaved (baseline, ours) timings of the same fresh URL; both answers must be byte-identical.
    Prints frames/s of each and every ratio (and, with ``cpu_of``, that daemon's CPU µs per point);
    returns the median ratio."""
    for d in (base, ours):  # warm: kernels, pixel maps, page cache
        answer(d, url + fresh_query())
    ratios, tb, to, cpu = [], [], [], []
    for _ in range(repeats):
        q = url + fresh_query()
        b, cb, body_b = answer(base, q)
        o, co, body_o = answer(ours, q)
        if body_b != body_o:
            raise RuntimeError(f"{q}: {base_name} and {ours_name} answered differently")
        tb.append(b)
        to.append(o)
        ratios.append(b / o)
        cpu.append((cb if cpu_of is base else co) / frames * 1e6)
    who = "" if cpu_of is None else f" {base_name if cpu_of is base else ours_name} CPU µs/point |"
    print(f"\n## {title}\n")
    print(f"| pair | {base_name} frames/s | {ours_name} frames/s | ratio |{who}")
    print("|---:|---:|---:|---:|" + ("---:|" if who else ""))
    for i, (b, o, r, c) in enumerate(zip(tb, to, ratios, cpu, strict=True)):
        print(f"| {i + 1} | {frames / b:.0f} | {frames / o:.0f} | {r:.3f} |" + (f" {c:.2f} |" if who else ""))
    med = statistics.median(ratios)
    print(f"| median | {frames / statistics.median(tb):.0f} | {frames / statistics.median(to):.0f} | **{med:.3f}** |"
          + (f" **{statistics.median(cpu):.2f}** |" if who else ""), flush=True)
    return med


@contextlib.contextmanager
def stopped_after(*procs) -> Iterator[None]:
    """Stop these daemons and balancers however the block ends."""
    try:
        yield
    finally:
        for p in procs:
            p.stop()


def nodes(root: str, n: int, threads: int = 1) -> list[Daemon]:
    return [Daemon(["node", root, "--threads", str(threads)]) for _ in range(n)]


def front(root: str, block: int | None, *flags: str) -> Daemon:
    """A front with no disk cache (each daemon's memory cache is its own: the same fresh URL asked of two
    daemons is computed by both)."""
    return Daemon(["serve", root, "--cache-dir", "none", *(["--block-frames", str(block)] if block else []), *flags])


def wrk(url: str, seconds: int) -> tuple[float, float]:
    """(requests/s, p99 in ms) of 32 connections on 2 threads."""
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url], capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return rps, p99


BARE = """
import sys
from aiohttp import web
body = open(sys.argv[1], "rb").read()
async def handler(_):
    return web.Response(body=body, content_type="application/x-npy")
app = web.Application()
app.router.add_get("/{tail:.*}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def cached_hits(folder: str, repeats: int, seconds_each: int) -> None:
    if shutil.which("wrk") is None:
        print("\n(cached-hit benchmark skipped: needs wrk — apt-get install wrk)")
        return
    eiger_file(folder, "map256", 256, 256, 16, 16, "uint16")
    d = Daemon(["serve", folder, "--cache-dir", "none"])
    bare = None
    try:
        url = "/darkfield/map256.npy?rmin=3"
        r = d.get(url, timeout=600)
        assert r.status == 200 and len(r.body) == 256 * 256 * 8 + 128, (r.status, len(r.body))
        body = os.path.join(folder, "map256.npy")
        with open(body, "wb") as f:
            f.write(r.body)
        port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE, body, str(port)])
        time.sleep(1.5)
        rows = []
        for _ in range(repeats):
            rows.append((wrk(f"http://127.0.0.1:{port}{url}", seconds_each), wrk(d.base + url, seconds_each)))
        print("\n## Cached hit: 256x256 float64 npy, 32 connections (wrk)\n")
        print("| pair | bare aiohttp req/s | dada req/s | ratio | bare p99 ms | dada p99 ms | p99 ratio |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for i, ((br, bp), (dr, dp)) in enumerate(rows):
            print(f"| {i + 1} | {br:.0f} | {dr:.0f} | {dr / br:.2f} | {bp:.2f} | {dp:.2f} | {dp / bp:.2f} |")
        print(f"| median | | | **{statistics.median(d_[0] / b[0] for b, d_ in rows):.2f}** | | | "
              f"**{statistics.median(d_[1] / b[1] for b, d_ in rows):.2f}** |", flush=True)
    finally:
        d.stop()
        if bare is not None:
            bare.terminate()
            bare.wait()


def frame_latency(d: Daemon, urls: list[str]) -> list[float]:
    out = []
    for u in urls:
        t0 = time.perf_counter()
        r = d.get(u, timeout=120)
        out.append(time.perf_counter() - t0)
        if r.status != 200:
            raise RuntimeError(f"{u}: {r.status}")
    return out


def lanes(folder: str, url: str, repeats: int) -> None:
    """A 1 Mpixel /frame idle, and while three full-scan /stxm requests run (each looping, fresh parameters)."""
    eiger_file(folder, "frame1m", 4, 4, 1065, 1030, "uint32")
    d = front(folder, None)
    try:
        frames = [f"/frame/frame1m/{k % 16}.npy" for k in range(40 * repeats)]
        want = {k: d.get(f"/frame/frame1m/{k}.npy").body for k in range(16)}
        frame_latency(d, frames[:16])  # warm
        idle = frame_latency(d, frames)
        stop = threading.Event()

        def heavy() -> None:
            while not stop.is_set():
                answer(d, url + fresh_query())

        workers = [threading.Thread(target=heavy) for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        try:
            busy = frame_latency(d, frames)
        finally:
            stop.set()
            for w in workers:
                w.join()
        for k in range(16):
            assert d.get(f"/frame/frame1m/{k}.npy").body == want[k]
    finally:
        d.stop()

    def p99(x: list[float]) -> float:
        return float(np.percentile(x, 99))

    print("\n## 7. A 1 Mpixel /frame, idle and while three full-scan /stxm requests run (embedded default)\n")
    print("| | idle ms | under load ms | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| median | {1e3 * statistics.median(idle):.1f} | {1e3 * statistics.median(busy):.1f} | "
          f"{statistics.median(busy) / statistics.median(idle):.2f} |")
    print(f"| p99 | {1e3 * p99(idle):.1f} | {1e3 * p99(busy):.1f} | **{p99(busy) / p99(idle):.2f}** |", flush=True)


def cached_bytes(d: Daemon) -> int:
    """What the daemon's in-memory caches hold now (result level and encoded answers), from /metrics."""
    total = 0
    for line in d.get("/metrics").body.decode().splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith("dada_cache{") and 'counter="bytes"' in head and (
                'level="memory"' in head or 'level="answers"' in head):
            total += int(float(value))
    return total


def memory(folder: str) -> None:
    """A fresh embedded default answers /stxm (all four, h5: every output) on 102,400 points of 64x64 frames,
    twice with new parameters: its peak RSS against the answer's size, with the default in-memory caches
    (bounded by their own settings: 512 MiB of results and blocks, 128 MiB of encoded answers; what they
    hold after the requests is printed, and the peak without it) and without them; the first request of
    the scan against the second."""
    name = "roi64_320"
    eiger_file(folder, name, 320, 320, 64, 64, "uint16")
    bare = os.path.join(folder, "no-memory-caches.toml")
    with open(bare, "w") as f:
        f.write("cache_memory_bytes = 0\nanswer_cache_bytes = 0\n")
    print("\n## 6. Front memory and first request, 320x320 points of 64x64 uint16 (embedded default)\n")
    print("| in-memory caches | answer (h5, every output) | front peak RSS | held by the caches | peak - caches | "
          "2 x answer + 300 MB | first request | second (new parameters) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, flags in (("default (512 + 128 MiB)", ()), ("off", ("--config", bare))):
        d = front(folder, None, *flags)
        try:
            url = f"/stxm/{name}.h5"
            first, _, body = answer(d, url + fresh_query())
            second, _, _ = answer(d, url + fresh_query())
            peak, held = peak_rss(d.proc.pid), cached_bytes(d)
        finally:
            d.stop()
        bound = 2 * len(body) + 300 * 2**20
        print(f"| {label} | {len(body) / 1e6:.0f} MB | {peak / 1e6:.0f} MB | {held / 1e6:.0f} MB | "
              f"{(peak - held) / 1e6:.0f} MB | {bound / 1e6:.0f} MB ({'within' if peak - held <= bound else 'over'}) "
              f"| {first:.2f} s | {second:.2f} s |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="where the test files go (kept and reused); default: a temporary folder")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--block-frames", type=int, default=None, help="frames per block (default: the data's grid)")
    parts = ("scaling", "overhead", "haproxy", "hits", "small", "memory", "lanes")
    p.add_argument("--only", choices=parts, action="append")
    args = p.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="dada-bench-cluster-")
    os.makedirs(folder, exist_ok=True)
    only = set(args.only or parts)
    name, v, h = "cluster512", 64, 64
    eiger_file(folder, name, v, h, 512, 512, "uint32")
    frames, url = v * h, STXM.format(name=name)
    print(f"{frames} frames of 512x512 uint32, blocks of {args.block_frames or 'the data grid'}, "
          f"{os.cpu_count()} cores; result caches: memory only (each daemon its own)")
    t0 = time.perf_counter()
    b = args.block_frames
    if "scaling" in only or "haproxy" in only:
        two = nodes(folder, 2)
        f1 = front(folder, b, "--nodes", two[0].base)
        f2 = front(folder, b, "--nodes", ",".join(n.base for n in two))
        with stopped_after(f1, f2, *two):
            if "scaling" in only:
                pairs("1. Two nodes (--threads 1) against one", "1 node", "2 nodes", f1, f2, url, args.repeats,
                      frames, cpu_of=f2)
            if "haproxy" in only:
                lb = start_balancer("haproxy", [n.port for n in two])
                # as deploy/README.md says: as many jobs in flight as the nodes' slots (maxconn 2 x 2 nodes)
                f3 = front(folder, b, "--lb", lb.url, "--lb-concurrency", "4")
                with stopped_after(f3, lb):
                    pairs("3. Through HAProxy against a direct node list (2 nodes)", "direct", "HAProxy", f2, f3,
                          url, args.repeats, frames)
    if "overhead" in only:
        solo = Daemon(["node", folder, "--threads", "2"])
        embedded = front(folder, b)
        with stopped_after(solo, embedded):
            pairs("2. Front + 2 local nodes against one process on both cores", "in-process", "front", solo,
                  embedded, url, args.repeats, frames, cpu_of=embedded)
    if "small" in only:
        small = "roi64_192"
        eiger_file(folder, small, 192, 192, 64, 64, "uint16")
        solo = Daemon(["node", folder, "--threads", "2"])
        embedded = front(folder, b)
        with stopped_after(solo, embedded):
            pairs("5. Small frames: 192x192 points of 64x64 uint16, front + 2 local nodes against one process",
                  "in-process", "front", solo, embedded, STXM.format(name=small), args.repeats, 192 * 192,
                  cpu_of=embedded)
    if "memory" in only:
        memory(folder)
    if "lanes" in only:
        lanes(folder, url, max(1, args.repeats // 2))
    if "hits" in only:
        cached_hits(folder, args.repeats, 5)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
