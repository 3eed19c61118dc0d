"""The front's memory: freed arrays go back to the system (a daemon does not keep every request's peak), a
large answer is sent from its own buffer, and the kernels (numba) are never loaded where they never run.

The threshold cases run in fresh interpreters: glibc's threshold is process-wide and moves as memory is freed.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys

import aiohttp
import numpy as np
from aiohttp import web
from helpers import Daemon

from dada.server.routing import SEND_PIECE, _send

SCRIPT = """
import json, sys
import numpy as np
from dada.server.heap import return_freed_memory

big = np.ones(40 * 2**20 // 8)


def rss():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) * 1024

fixed = return_freed_memory() if sys.argv[1] == "fixed" else None
del big  # one large answer freed first (glibc then raises its threshold to that size, up to 32 MiB)
base, rounds, kept = rss(), [], []
for _ in range(3):  # a request's worth of 24 MiB arrays (a selection's maps, an encoded answer)...
    held = []
    for i in range(14):
        held.append(np.ones(3 * 2**20 + i * 100))
        kept.append(np.ones(1000 + i))  # ...between small objects that outlive the request
    peak = rss()
    del held
    rounds.append((peak - base, rss() - base))
print(json.dumps({"fixed": fixed, "rounds": rounds}))
"""


def run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_fixed_threshold_gives_every_request_s_arrays_back():
    fixed, default = run("fixed"), run("default")
    assert fixed["fixed"] is True
    for peak, after in fixed["rounds"]:
        assert peak > 250 * 2**20 and after < 32 * 2**20, fixed
    # the failure it prevents: with glibc's moving threshold the second round's arrays stay resident
    assert default["rounds"][1][1] > 200 * 2**20, default


REUSE = """
import ctypes, json, resource, sys
import numpy as np
from dada.server import heap

heap.small_pages()  # as the front: 4 KiB pages, so the faults are counted alike on every machine
if sys.argv[1] == "kept":  # as a front keeping reductions
    assert heap.return_freed_memory(heap.KEPT)
else:  # the threshold alone: glibc then gives back all but 128 KiB of a heap's free top
    ctypes.CDLL("libc.so.6").mallopt(heap.M_MMAP_THRESHOLD, heap.LARGE)
faults = []
for _ in range(6):  # a request's maps (8 MB, below the threshold), written and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.empty(8 * 2**20 // 8)
    a.fill(1.0)
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def test_freed_memory_below_the_threshold_is_reused_not_faulted_in_again():
    """In a front keeping reductions, a request's arrays below the mmap threshold come back from the heap at the
    next request: the pages are not given back and faulted in again one at a time (half the time of an answer
    from a polar reduction)."""
    def faults(mode: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", REUSE, mode], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    kept, given = faults("kept"), faults("given")
    assert max(kept[1:]) < 100, kept  # 2048 pages written each round
    assert min(given[1:]) > 1500, given  # the failure it prevents


def mapped(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_the_front_never_loads_the_kernels(demo_root):
    """The embedded default's front glues partials and finalises: its nodes run the numba kernels, the front
    never maps numba's compiler (some 60 MB resident), not even after a full-scan map, a sum and a frame.
    (The tomography preview does load it when it reconstructs: it runs in the front.)"""
    daemon = Daemon(["serve", demo_root])
    try:
        for url in ("/stxm/eiger/u16/scan_0001.npy?darkfield.rmin=3", "/sum/eiger/u16/scan_0001.npy",
                    "/frame/eiger/u16/scan_0001/0.npy"):
            r = daemon.get(url)
            assert r.status == 200, (url, r.body[:200])
            assert np.load(io.BytesIO(r.body)).size > 0
        assert "libllvmlite" not in mapped(daemon.proc.pid)
        nodes = json.loads(daemon.get("/healthz").body)["local_nodes"]
        assert nodes and all("libllvmlite" in mapped(n["pid"]) for n in nodes)  # the nodes do run them
    finally:
        daemon.stop()


def test_a_large_answer_goes_out_whole_from_its_own_buffer():
    """Over real HTTP: a body of many send pieces arrives whole, with its length, and the transport's
    buffer never holds more than about a piece (a body handed over whole is copied into it)."""
    body = memoryview(np.random.default_rng(1).integers(0, 255, 9 * SEND_PIECE + 12345, dtype=np.uint8).tobytes())
    buffered: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        original = transport.write

        def write(data: bytes) -> None:
            original(data)
            buffered.append(transport.get_write_buffer_size())

        transport.write = write
        return await _send(request, body, {"Content-Type": "application/octet-stream"})

    async def main() -> bytes:
        app = web.Application()
        app.router.add_get("/big", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/big") as r:
                assert r.headers["Content-Length"] == str(len(body))
                await asyncio.sleep(0.2)  # a slow reader: the server must wait, not buffer the rest
                return await r.read()
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == bytes(body)
    assert max(buffered) <= 2 * SEND_PIECE, max(buffered)


PAGES = """
import sys
import numpy as np
from dada.server.heap import small_pages

switched = small_pages() if sys.argv[1] == "small" else None
a = np.empty(64 * 2**20 // 8)
a[:] = 1.0  # touched: every page mapped
start, stop = a.ctypes.data, a.ctypes.data + a.nbytes
with open("/proc/self/smaps") as f:
    lines = f.read().splitlines()
huge = 0
for i, line in enumerate(lines):  # the advice splits the array's mapping: every piece it overlaps
    head = line.split()[0]
    if "-" in head and ":" not in head:
        lo, hi = (int(x, 16) for x in head.split("-"))
        if lo < stop and hi > start:
            huge += next(int(x.split()[1]) for x in lines[i + 1:] if x.startswith("AnonHugePages:"))
print(switched, huge)
"""


def test_the_front_asks_for_small_pages_for_its_answers():
    """Without numpy's huge-page advice an answer's fresh array is backed by 4 KiB pages (the front's CPU per
    point no longer alternates with the kernel's huge-page faults); with it, where the kernel honours the
    advice, by 2 MiB pages."""
    small = subprocess.run([sys.executable, "-c", PAGES, "small"], capture_output=True, text=True, check=True)
    default = subprocess.run([sys.executable, "-c", PAGES, "default"], capture_output=True, text=True, check=True)
    switched, huge = small.stdout.split()
    assert switched == "True" and huge == "0", small.stdout
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        honoured = "[never]" not in f.read()
    assert (int(default.stdout.split()[1]) > 0) == honoured, default.stdout  # the advice is what small_pages stops
