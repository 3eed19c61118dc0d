"""Cluster throughput and cached-hit latency, each figure against a baseline measured in the same run.

1. Node scaling: a front over 2 nodes (``--threads 1`` each) against the same front over 1 node.
2. Proxy overhead: the embedded default (front + 2 local nodes) against one process computing
   in-process on both cores (``dada node --threads 2`` answering ``/stxm`` itself).
3. Load balancer: the front through HAProxy (the shipped deploy/haproxy.cfg) against a direct node list.
4. Cached hit: a 256x256 float64 map as npy under 32 concurrent connections (wrk) against a bare
   aiohttp handler returning the same bytes: requests/s and p99.

Full-scan ``/stxm`` with all four channels; every timed request changes every channel's parameters
slightly, so nothing comes from a cache. Pairs (baseline, ours) are interleaved and repeated; each
pair's ratio and the median are printed.

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
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from balancers import start_balancer  # noqa: E402
from common import eiger_file  # noqa: E402
from helpers import Daemon, free_port  # noqa: E402

STXM = "/stxm/{name}.npy"
_counter = itertools.count(1)


def fresh_query() -> str:
    """All four channels with parameters no earlier request used (no cache can answer)."""
    e = next(_counter) * 1e-6
    return (f"?darkfield.rmin={10 + e}&dpc.rdpc={12 + e}&azimuthal.rmin={20 + e}&radial.rmin={e}"
            "&radial.nbins=64&output=darkfield.darkfield")


def seconds(d: Daemon, url: str) -> float:
    t0 = time.perf_counter()
    r = d.get(url + fresh_query(), timeout=900)
    if r.status != 200:
        raise RuntimeError(f"{url}: {r.status} {r.body[:300]!r}")
    return time.perf_counter() - t0


def pairs(title: str, base_name: str, ours_name: str, base, ours, repeats: int, frames: int,
          higher_is_better: bool = True) -> float:
    """Interleaved (baseline, ours) timings; prints frames/s of each and every ratio; returns the median."""
    base(), ours()  # warm: kernels, pixel maps, page cache
    ratios, tb, to = [], [], []
    for _ in range(repeats):
        b, o = base(), ours()
        tb.append(b)
        to.append(o)
        ratios.append(b / o if higher_is_better else o / b)
    print(f"\n## {title}\n")
    print(f"| pair | {base_name} frames/s | {ours_name} frames/s | ratio |")
    print("|---:|---:|---:|---:|")
    for i, (b, o, r) in enumerate(zip(tb, to, ratios, strict=True)):
        print(f"| {i + 1} | {frames / b:.0f} | {frames / o:.0f} | {r:.3f} |")
    med = statistics.median(ratios)
    print(f"| median | {frames / statistics.median(tb):.0f} | {frames / statistics.median(to):.0f} | **{med:.3f}** |",
          flush=True)
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


def front(root: str, cache: str, block: int, *flags: str) -> Daemon:
    return Daemon(["serve", root, "--block-frames", str(block), "--cache-dir", cache, *flags])


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="where the test files go (kept and reused); default: a temporary folder")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--block-frames", type=int, default=256, help="frames per block (256: ~0.2 s of one core)")
    p.add_argument("--only", choices=("scaling", "overhead", "haproxy", "hits"), action="append")
    args = p.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="dada-bench-cluster-")
    os.makedirs(folder, exist_ok=True)
    only = set(args.only or ("scaling", "overhead", "haproxy", "hits"))
    name, v, h = "cluster512", 64, 64
    eiger_file(folder, name, v, h, 512, 512, "uint32")
    frames, url = v * h, STXM.format(name=name)
    cache = tempfile.mkdtemp(prefix="cache-", dir=folder)  # fresh: no earlier run's results
    print(f"{frames} frames of 512x512 uint32, blocks of {args.block_frames}, {os.cpu_count()} cores")
    t0 = time.perf_counter()
    if "scaling" in only or "haproxy" in only:
        two = nodes(folder, 2)
        f1 = front(folder, cache, args.block_frames, "--nodes", two[0].base)
        f2 = front(folder, cache, args.block_frames, "--nodes", ",".join(n.base for n in two))
        with stopped_after(f1, f2, *two):
            if "scaling" in only:
                pairs("1. Two nodes (--threads 1) against one", "1 node", "2 nodes",
                      lambda: seconds(f1, url), lambda: seconds(f2, url), args.repeats, frames)
            if "haproxy" in only:
                lb = start_balancer("haproxy", [n.port for n in two])
                # as deploy/README.md says: as many patches in flight as the nodes' slots (maxconn 2 x 2 nodes)
                f3 = front(folder, cache, args.block_frames, "--lb", lb.url, "--lb-concurrency", "4")
                with stopped_after(f3, lb):
                    pairs("3. Through HAProxy against a direct node list (2 nodes)", "direct", "HAProxy",
                          lambda: seconds(f2, url), lambda: seconds(f3, url), args.repeats, frames)
    if "overhead" in only:
        solo = Daemon(["node", folder, "--threads", "2"])
        embedded = front(folder, cache, args.block_frames)
        with stopped_after(solo, embedded):
            pairs("2. Front + 2 local nodes against one process on both cores", "in-process", "front",
                  lambda: seconds(solo, url), lambda: seconds(embedded, url), args.repeats, frames)
    if "hits" in only:
        cached_hits(folder, args.repeats, 5)
    shutil.rmtree(cache, ignore_errors=True)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
