"""Load: many concurrent clients on cached and uncached routes for minutes; errors, latency, memory.

``dada serve`` (front + local nodes, on-disk cache) on generated demo data, driven by ``--clients``
concurrent HTTP clients for ``--seconds``. Each client picks its next request from a mix:

* cached: the same map, frame, metadata and listing URLs again and again (hot answers);
* uncached: maps with parameters no request used before, sums and composites of random selections,
  tomography slices about random centres;
* heavy but valid: big png enlargements with colour bars, Paganin slices, and the Paganin request a
  hostile-input probe found (on data of the small demo's size and larger it is refused, 413, before
  anything is read: counted as planned, not as an error).

Printed: requests and errors by kind, p50/p99 latency, requests/s; the daemon's memory (RSS of the
front and its nodes together) after warm-up, at the end, and its peak, each checked against the bound
the configuration states (its caches' sizes and the working-memory budget). ``--json`` prints the
figures as one JSON object (the smoke test in tests/test_load_smoke.py reads it).

    python benchmarks/load.py [--seconds 180] [--clients 32] [--size small] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import aiohttp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from helpers import Daemon  # noqa: E402

from dada.demo import demo_exists, make_demo  # noqa: E402

MiB = 2**20
RETRIES = 5
retried: dict[str, int] = defaultdict(int)  # 503 answers (busy: the working-memory budget is taken) asked again
# What the benchmark's daemon may hold beyond its state after warm-up: its caches, bounded by their
# configured sizes, one working-memory budget of requests in flight, and allocator slack.
CACHE_BYTES, ANSWER_BYTES, BUDGET_BYTES, SLACK = 256 * MiB, 64 * MiB, 1024 * MiB, 300 * MiB
U16, U32, TOMO = "eiger/u16/scan_0001", "eiger/u32/scan_0002", "tomo/nxtomo_0001"


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the front and its local nodes)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total


class Sampler(threading.Thread):
    """The tree's RSS every 0.2 s: its peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak = max(self.peak, tree_rss(self.pid))


def mix(s: dict[str, int]) -> list[tuple[str, float, Callable[[random.Random], tuple[str, tuple[int, ...]]]]]:
    """(kind, weight, make a URL and the statuses it may answer), for the data's sizes ``s``."""
    ok = (200,)
    frames, rows, mid = s["frames"], s["rows"], s["cols"] / 2

    def selection(route: str, r: random.Random) -> str:
        v0, h0 = r.randrange(s["vert"]), r.randrange(s["horz"])
        return f"{route}/{U16}.npy?vert={v0}:{min(s['vert'], v0 + 4)}&horz={h0}:{min(s['horz'], h0 + 4)}"

    return [
        ("cached map", 30, lambda r: (f"/darkfield/{U16}.png?rmin={r.choice((8, 10, 12))}", ok)),
        ("cached npy", 15, lambda r: (f"/dpc/{U16}.npy?rdpc={r.choice((8, 10))}", ok)),
        ("frame", 10, lambda r: (f"/frame/{U16}/{r.randrange(frames)}.png?log=true", ok)),
        ("meta/browse", 10, lambda r: (r.choice((f"/meta/{U16}.json", "/browse/eiger/u16", "/api")), ok)),
        ("uncached map", 12, lambda r: (f"/stxm/{U32}.h5?darkfield.rmin={r.uniform(4, 16):.6f}"
                                        f"&azimuthal.rmin={r.uniform(4, 16):.6f}&channels=darkfield,azimuthal", ok)),
        ("sum", 6, lambda r: (selection("/sum", r) + "&bin=2", ok)),
        ("composite", 5, lambda r: (selection("/composite", r), ok)),
        ("tomo slice", 6, lambda r: (f"/tomo/slice/{TOMO}/{r.randrange(rows)}.png?center="
                                     f"{r.uniform(mid - 8, mid + 8):.3f}", ok)),
        ("big png", 3, lambda r: (f"/frame/{U16}/{r.randrange(frames)}.png?scale=8&colorbar=true&log=true", ok)),
        ("paganin", 2, lambda r: (f"/tomo/slice/{TOMO}/{r.randrange(rows)}.npy?paganin=true&energy=20"
                                  f"&distance={r.uniform(0.05, 0.2):.4f}&pixel_size=1e-6&delta_beta=100", ok)),
        # refused before reading on the small demo and larger (413), computed on the tiny one
        ("probe's paganin", 1, lambda r: (f"/tomo/slice/{TOMO}/0.npy?paganin=true&energy=20&distance=1"
                                          "&pixel_size=1e-6&delta_beta=100", (200, 413))),
    ]


async def drive(base: str, seconds: float, clients: int, sizes: dict[str, int], seed: int) -> dict[str, list]:
    """Run the clients; per kind: [latency, status, expected] per request."""
    kinds = mix(sizes)
    weights = [w for _, w, _ in kinds]
    seen: dict[str, list] = defaultdict(list)
    deadline = time.monotonic() + seconds

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        rnd = random.Random(seed * 1000 + k)
        while time.monotonic() < deadline:
            kind, _, make = rnd.choices(kinds, weights)[0]
            url, expected = make(rnd)
            t0 = time.perf_counter()
            for _ in range(RETRIES + 1):  # as dada.client does: a busy server (503) is asked again
                try:
                    async with session.get(base + url) as resp:
                        await resp.read()
                        status = resp.status
                        wait = float(resp.headers.get("Retry-After", "1"))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, wait = f"{type(exc).__name__}", 0.0
                if status != 503:
                    break
                retried[kind] += 1
                await asyncio.sleep(wait)
            seen[kind].append((time.perf_counter() - t0, status, status in expected))

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(client(k, session) for k in range(clients)))
    return seen


def report(seen: dict[str, list], seconds: float) -> dict:
    out: dict = {"kinds": {}, "requests": 0, "errors": 0}
    for kind, rows in sorted(seen.items()):
        lat = np.array([r[0] for r in rows])
        bad = [r[1] for r in rows if not r[2]]
        codes = defaultdict(int)
        for r in rows:
            codes[str(r[1])] += 1
        out["kinds"][kind] = {"requests": len(rows), "errors": len(bad), "unexpected": sorted(set(map(str, bad))),
                              "codes": dict(codes), "retried_503": retried[kind],
                              "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1),
                              "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1)}
        out["requests"] += len(rows)
        out["errors"] += len(bad)
    everything = np.array([r[0] for rows in seen.values() for r in rows])
    out["p50_ms"] = round(float(np.percentile(everything, 50)) * 1e3, 1)
    out["p99_ms"] = round(float(np.percentile(everything, 99)) * 1e3, 1)
    out["requests_per_s"] = round(out["requests"] / seconds, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--size", default="small", help="demo size (tiny for a smoke run)")
    ap.add_argument("--dir", help="demo data folder (made if absent; default: a temporary one)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = ap.parse_args()
    say = (lambda *_: None) if args.json else print
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dada-load-"))
        root = args.dir or os.path.join(tmp, "demo")
        if not demo_exists(root):
            say(f"generating {args.size} demo data into {root}")
            make_demo(root, args.size, progress=lambda _m: None)
        config = os.path.join(tmp, "load.toml")
        with open(config, "w") as f:
            f.write(f"cache_memory_bytes = {CACHE_BYTES}\nanswer_cache_bytes = {ANSWER_BYTES}\n"
                    f"work_budget_bytes = {BUDGET_BYTES}\n")
        d = Daemon(["serve", root, "--config", config, "--cache-dir", os.path.join(tmp, "cache")])
        stack.callback(d.stop)
        scan, tomo = d.get(f"/meta/{U16}.json").json(), d.get(f"/meta/{TOMO}.json").json()
        sizes = {"frames": scan["frames"]["available"], "vert": scan["grid"]["vert"], "horz": scan["grid"]["horz"],
                 "rows": tomo["rows"], "cols": tomo["cols"]}
        say(f"warming up ({args.clients} clients, 10 s)")
        asyncio.run(drive(d.base, min(10.0, args.seconds / 4), args.clients, sizes, seed=0))
        rss_warm = tree_rss(d.proc.pid)
        sampler = Sampler(d.proc.pid)
        sampler.start()
        say(f"load: {args.clients} clients for {args.seconds:g} s")
        seen = asyncio.run(drive(d.base, args.seconds, args.clients, sizes, seed=args.seed))
        sampler.done.set()
        sampler.join()
        time.sleep(1)
        rss_end = tree_rss(d.proc.pid)
        alive = d.alive()
    out = report(seen, args.seconds)
    margin = CACHE_BYTES + ANSWER_BYTES + SLACK
    out["memory"] = {"after_warm_up_MiB": rss_warm // MiB, "end_MiB": rss_end // MiB,
                     "peak_MiB": max(sampler.peak, rss_end) // MiB,
                     "end_bound_MiB": (rss_warm + margin) // MiB,
                     "peak_bound_MiB": (rss_warm + margin + BUDGET_BYTES) // MiB}
    m = out["memory"]
    out["ok"] = bool(alive and out["errors"] == 0 and m["end_MiB"] <= m["end_bound_MiB"]
                     and m["peak_MiB"] <= m["peak_bound_MiB"])
    if args.json:
        print(json.dumps(out))
        return 0 if out["ok"] else 1
    print(f"\n{'kind':<18}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}  codes (503s asked again)")
    for kind, k in out["kinds"].items():
        print(f"{kind:<18}{k['requests']:>9}{k['errors']:>8}{k['p50_ms']:>9}{k['p99_ms']:>9}  {k['codes']}"
              + (f" ({k['retried_503']})" if k["retried_503"] else "")
              + (f"  unexpected: {k['unexpected']}" if k["unexpected"] else ""))
    print(f"{'all':<18}{out['requests']:>9}{out['errors']:>8}{out['p50_ms']:>9}{out['p99_ms']:>9}"
          f"   {out['requests_per_s']} requests/s")
    print(f"\nRSS of front + nodes: after warm-up {m['after_warm_up_MiB']} MiB, end {m['end_MiB']} MiB "
          f"(bound {m['end_bound_MiB']}: warm-up + caches {margin // MiB}), peak {m['peak_MiB']} MiB "
          f"(bound {m['peak_bound_MiB']}: + work budget {BUDGET_BYTES // MiB})")
    print("OK" if out["ok"] else "NOT OK: see above")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
