"""The polar reduction: what it costs in the pass, what it weighs, and how fast it answers new radii.

    python benchmarks/reduce.py [--dir DIR] [--side 256] [--frame 128 | --frame 1065x1030] [--dtype uint16]
                                [--pairs 5]

A ``side``×``side`` scan of ``frame`` frames (square, or rows x cols; Eiger-like, bitshuffle-LZ4, every frame
with its own Poisson noise; the defaults, a 256×256 scan of 128×128 uint16 frames, take about two minutes to
write on a 2-core machine and a few seconds per raw pass; 512×512 frames about 9 minutes, 1065×1030 uint32
(Eiger 1M, 5 GB) about 25 minutes, kept in ``--dir`` for later runs). Two real daemons
(two local nodes each, blocks of 1024 frames) on the same cores: ``raw`` keeps no reduction, ``kept`` keeps
it (and may hold ``HELD`` bytes of cumulative cells per view). Every figure is a median over ``--pairs``
interleaved pairs, each pair's times and ratio printed:

* the pass: ``/stxm`` (all four channels, h5) with a fresh beam centre each pair (pixel maps rebuilt, every
  block computed) on ``raw``, and on ``kept``, which also writes the reduction: the ratio kept / raw;
* new radii: after one whole-scan ``/stxm`` on ``kept``, darkfield, radial and azimuthal maps with fresh
  radii (on the grid) each pair, from the frames on ``raw`` and from the reduction on ``kept``: the ratio
  raw / kept, and kept's time end to end over HTTP (its first answer, which assembles the reduction of the
  scan's points in the front's memory, is printed apart);
* size: the reduction's bytes per point on this scan and on a 8×16 scan of 1065×1030 uint32 frames, and
  what that makes for 256×256 points.

Every timed answer is checked: the two daemons' arrays must be equal (NaN included) and name their source
(``X-Dada-Source``); the pass's darkfield and radial maps are also checked against the tests' slow numpy
reference at 12 points.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from common import eiger_file  # noqa: E402
from stxm_reference import reference  # noqa: E402

SAMPLED = 12
# cumulative cells for sector answers in milliseconds: a 256×256 scan needs 1.6 GB of them on 512×512 frames,
# 2.7 GB on 1065×1030
HELD = 2**32


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def arrays(body: bytes) -> dict[str, np.ndarray]:
    with h5py.File(io.BytesIO(body)) as f:
        return {k: f[k][()] for k in f}


def get(d, url: str, source: str | None = None) -> bytes:
    r = d.get(url, timeout=3600)
    assert r.status == 200, (url, r.body[:300])
    if source is not None:
        assert r.headers.get("x-dada-source") == source, (url, r.headers.get("x-dada-source"), source)
    return r.body


def same(a: bytes, b: bytes, what: str) -> None:
    x, y = arrays(a), arrays(b)
    assert x.keys() == y.keys(), what
    for k in x:
        assert np.array_equal(x[k], y[k], equal_nan=True), (what, k)


def pairs(title: str, n: int, first: Callable[[int], float], second: Callable[[int], float],
          ratio: Callable[[float, float], float]) -> tuple[float, list[tuple[float, float]]]:
    """``n`` interleaved pairs (the order alternating), each printed; the median ratio."""
    print(f"\n{title}")
    got = []
    for i in range(n):
        if i % 2:
            b = second(i)
            a = first(i)
        else:
            a = first(i)
            b = second(i)
        got.append((a, b))
        print(f"  pair {i + 1}: {a * 1e3:9.1f} ms  {b * 1e3:9.1f} ms  ratio {ratio(a, b):8.2f}", flush=True)
    med = statistics.median(ratio(a, b) for a, b in got)
    first, second = (statistics.median(x[k] for x in got) * 1e3 for k in (0, 1))
    print(f"  median: {first:.1f} ms, {second:.1f} ms; ratio {med:.2f}")
    return med, got


def check_reference(master: str, body: bytes, cx: float, cy: float, side: int) -> None:
    """The pass's darkfield and radial maps at SAMPLED points against the tests' numpy reference."""
    got = arrays(body)
    with h5py.File(master) as f:
        d = f["entry/instrument/detector"]
        bad = d["detectorSpecific/pixel_mask"][()] != 0
        cutoff = float(d["detectorSpecific/countrate_correction_count_cutoff"][()])
        files = sorted(k for k in f["entry/data"] if k.startswith("data_"))
        dsets = [f["entry/data"][k] for k in files]
        starts = np.cumsum([0] + [ds.shape[0] for ds in dsets])
        points = np.unique(np.linspace(0, side * side - 1, SAMPLED).round().astype(int))
        frames = []
        for p in points:
            i = int(np.searchsorted(starts, p, side="right")) - 1
            frames.append(dsets[i][int(p - starts[i])])
    ref = reference(np.stack(frames), bad, cutoff, cx, cy, rmin=RMIN, rmax=RMAX, rdpc=10.0, nsectors=16, nbins=100)
    v, h = np.divmod(points, side)  # a raster scan: frame number = v * side + h
    np.testing.assert_allclose(got["darkfield.darkfield"][v, h], ref["darkfield"], rtol=1e-12)
    np.testing.assert_allclose(got["azimuthal.sectors"][:, v, h].T, ref["sectors"], rtol=1e-12)


RMIN, RMAX = 10.0, 40.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "dada-bench-reduce"))
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--frame", default="128", help="frame size: N (N×N) or ROWSxCOLS")
    ap.add_argument("--dtype", default="uint16", choices=["uint16", "uint32"])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--node-only", action="store_true", help="only the in-process node pairs and the sizes")
    a = ap.parse_args()
    from helpers import Daemon

    rows, _, cols = a.frame.partition("x")
    rows, cols = int(rows), int(cols or rows)
    # the folder of a scan: its points, frame size and dtype (square uint16 frames by their side alone)
    folder = os.path.join(a.dir, f"s{a.side}f{a.frame}" + ("" if a.dtype == "uint16" else a.dtype))
    os.makedirs(folder, exist_ok=True)
    t, master = timed(lambda: eiger_file(folder, "scan", a.side, a.side, rows, cols, a.dtype))
    if a.node_only:
        sizes(a.dir, folder, a.pairs)
        return
    print(f"# polar reduction: {a.side}×{a.side} points of {rows}×{cols} {a.dtype} frames (written in {t:.0f} s); "
          f"the kept front holds up to {HELD / 2**30:g} GiB of cumulative cells per view")
    with h5py.File(master) as f:
        det = f["entry/instrument/detector"]
        cx0, cy0 = float(det["beam_center_x"][()]), float(det["beam_center_y"][()])
    caches = tempfile.mkdtemp(dir=a.dir)
    raw_toml = os.path.join(caches, "raw.toml")
    with open(raw_toml, "w") as f:
        f.write("reduction_cells = 0\nanswer_cache_bytes = 0\n")
    kept_toml = os.path.join(caches, "kept.toml")
    with open(kept_toml, "w") as f:
        f.write(f"reduction_cells = 25000\nanswer_cache_bytes = 0\nreduction_held_bytes = {HELD}\n")
    common = ["--max-frames", "10000000", "--block-frames", "1024", "--max-output-bytes", str(2**31)]
    raw = Daemon(["serve", folder, *common, "--cache-dir", os.path.join(caches, "raw"), "--config", raw_toml])
    kept = Daemon(["serve", folder, *common, "--cache-dir", os.path.join(caches, "kept"), "--config", kept_toml])
    try:
        stxm = "/stxm/scan.h5?channels=darkfield,dpc,azimuthal,radial&darkfield.rmin={rmin}&darkfield.rmax={rmax}" \
               "&azimuthal.rmin={rmin}&azimuthal.rmax={rmax}&radial.rmax={rmax}&cx={cx}&cy={cy}"
        bodies: dict[tuple[str, int], bytes] = {}

        def pass_on(d, name: str, source: str) -> Callable[[int], float]:
            def run(i: int) -> float:
                cx, cy = cx0 + 0.01 * (i + 1), cy0
                t, body = timed(lambda: get(d, stxm.format(rmin=RMIN, rmax=RMAX, cx=cx, cy=cy), source))
                bodies[(name, i)] = body
                if (("raw", i) in bodies) and (("kept", i) in bodies):
                    same(bodies.pop(("raw", i)), bodies.pop(("kept", i)), f"pass {i}")
                    check_reference(master, body, cx, cy, a.side)
                return t
            return run

        get(raw, stxm.format(rmin=RMIN, rmax=RMAX, cx=cx0, cy=cy0), "raw")  # warm: files opened, kernels loaded
        get(kept, stxm.format(rmin=RMIN, rmax=RMAX, cx=cx0, cy=cy0), "raw")  # and this one keeps the reduction
        pass_ratio, _ = pairs("## the pass: /stxm all four, fresh beam centre (raw, kept: kept / raw)", a.pairs,
                              pass_on(raw, "raw", "raw"), pass_on(kept, "kept", "raw"), lambda x, y: y / x)
        cases = {
            "darkfield": lambda i: f"/darkfield/scan.h5?rmin={4 + i}&rmax={40 - i}&cx={cx0}&cy={cy0}",
            "radial": lambda i: f"/radial/scan.h5?rmin={i}&rmax={i + 40}&nbins=20&cx={cx0}&cy={cy0}",
            "azimuthal": lambda i: f"/azimuthal/scan.h5?rmin={6 + i}&rmax={30 + i}&nsectors=16&cx={cx0}&cy={cy0}",
        }
        summary = {}
        for name, url in cases.items():
            t, first = timed(lambda url=url: get(kept, url(a.pairs), "reduction"))
            same(first, get(raw, url(a.pairs), "raw"), f"{name} first")
            print(f"\n{name}: first answer from the reduction (the scan's points assembled): {t * 1e3:.0f} ms")
            bodies.clear()

            def on(d, who: str, source: str, url=url, name=name) -> Callable[[int], float]:
                def run(i: int) -> float:
                    t, body = timed(lambda: get(d, url(i), source))
                    bodies[(who, i)] = body
                    if ("raw", i) in bodies and ("kept", i) in bodies:
                        same(bodies.pop(("raw", i)), bodies.pop(("kept", i)), f"{name} {i}")
                    return t
                return run

            ratio, got = pairs(f"## {name}, new radii: frames (raw) vs reduction (kept): raw / kept", a.pairs,
                               on(raw, "raw", "raw"), on(kept, "kept", "reduction"), lambda x, y: x / y)
            summary[name] = (ratio, statistics.median(b for _, b in got))
        print("\n## summary")
        print(f"pass with the reduction / without: {pass_ratio:.2f}× (target <= 1.25)")
        for name, (ratio, t) in summary.items():
            print(f"{name}: {ratio:.0f}× faster from the reduction (target >= 100), {t * 1e3:.0f} ms over HTTP "
                  "(target <= 100)")
    finally:
        kept.stop()
        raw.stop()
    sizes(a.dir, folder, a.pairs)


def sizes(root: str, folder: str, npairs: int) -> None:
    """The node's pass in this process, the four channels without and with the reduction (interleaved pairs;
    the partials of both held equal), and the reduction's bytes per point: on the benchmark's scan (its first
    1024 frames) and on 128 frames of 1065×1030 uint32."""
    from dada.registry import CHANNELS
    from dada.sources.catalog import Catalog
    from dada.sources.handles import HandleCache
    from dada.stxm.beam import geometry
    from dada.stxm.engine import Engine
    from dada.stxm.local import LocalPartials
    from dada.stxm.partials import REDUCTION, Pass
    from dada.stxm.reduction import spec_for

    big = os.path.join(root, "eiger1m")
    os.makedirs(big, exist_ok=True)
    eiger_file(big, "scan", 8, 16, 1065, 1030, "uint32")
    local = LocalPartials(Engine(2))
    ch = {c.name: c for c in CHANNELS}
    args = {"rmin": RMIN, "rmax": None, "rdpc": 10.0, "nsectors": 16, "nbins": 100, "unit": "px", "reduce": "none",
            "reference": "beam", "rotation": 0.0, "flip": False}
    for where, n in ((folder, 1024), (big, 128)):
        cat = Catalog({"": where}, HandleCache(8), ("entry/data/data",), 0.0)
        scan = cat.scan("scan")
        geo = geometry(scan, {"cx": None, "cy": None, "usermask": None}, cat)
        spec = spec_for(geo.shape, geo.cx, geo.cy, 1, 25000)
        p = Pass(geo, tuple((ch[k], args) for k in ("darkfield", "dpc", "azimuthal", "radial")))
        frames = np.arange(n, dtype=np.int64)
        got: dict[str, object] = {}

        def plain(_i: int, p=p, frames=frames, scan=scan, got=got) -> float:
            t, got["plain"] = timed(lambda: local(scan, frames, p))
            return t

        def reduced(_i: int, p=p, frames=frames, scan=scan, spec=spec, got=got) -> float:
            t, (got["reduced"], got["records"]) = timed(lambda: local.reduced(scan, frames, p, spec, False))
            for name, m in got["plain"].items():
                for k in m.arrays:
                    assert np.array_equal(m[k], got["reduced"][name][k], equal_nan=True), (name, k)
            return t

        plain(0)
        reduced(0)  # warm: pixel maps built
        print(f"\nload average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        pairs(f"## node pass in this process, {n} frames of {scan.frame_shape[0]}×{scan.frame_shape[1]} {scan.dtype}, "
              "2 threads: four channels (plain), and with the reduction: reduced / plain", npairs, plain, reduced,
              lambda x, y: y / x)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        records = got["records"]
        per = len(records[REDUCTION]) / n
        print(f"size: {spec.nr} radial bins × {spec.ns} sectors, {per / 1024:.1f} KiB per point; 256×256 points: "
              f"{per * 65536 / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
