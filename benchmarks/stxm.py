"""STXM throughput: dada's fused pass against decoding alone, LiberTEM and pyFAI, measured in one run.

    python benchmarks/stxm.py [--dir DIR] [--quick] [--pairs 5] [--no-peers]

Three Eiger-like files (bitshuffle-LZ4, one frame per chunk, sparse SAXS frames with masked gaps):
1065×1030 uint32 and 512×512 uint16 (32×32 points), and an Eiger 4M, 2070×2167 uint32 (16×16).
For each it prints frames/s, decompressed GB/s and the ratio to decoding alone:

* baselines: h5py reading every frame into a preallocated (touched) array, and ``read_direct_chunk``
  + bitshuffle-LZ4 decode (bitshuffle's own C routines) into reused buffers, on 1 and 2 threads;
* pairs: (decode-only on 2 threads, dada's node path with all four channels fused on 2 threads),
  repeated ``--pairs`` times interleaved, each pair's ratio printed, then the median and the lowest;
  the same pairs with ``/stxm`` over HTTP on a real daemon whose result caches are off: the same URL
  each time (the nodes keep their pixel maps), and a fresh parameter each time (pixel maps rebuilt);
* dada per channel, on one thread (frames/s per core), and radial + sectors;
* LiberTEM 0.16 at its best on this machine (sparse masks as ``scipy.sparse`` factories multiplied
  with ``sparse.pydata``, inline and local dask executors): ring + centre of mass as 4 masks, and all
  four quantities as one ApplyMasksUDF with 120 masks; pyFAI at its best (one ``integrate2d``, 100
  radial (+4 spare) × 16 azimuthal bins, no pixel splitting, CSC, frames already in memory).

Every tool's numbers are checked against the slow numpy reference of the tests (``stxm_reference``)
on the frames it processed before its speed is printed. Single figures are medians of 3 runs after
a warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from common import Table, eiger_file, median_time  # noqa: E402
from stxm_reference import reference  # noqa: E402

from dada.registry import CHANNELS  # noqa: E402
from dada.sources.catalog import Catalog  # noqa: E402
from dada.stxm.beam import geometry  # noqa: E402
from dada.stxm.decode import MAX_BLOCK_BYTES, decode_into  # noqa: E402
from dada.stxm.engine import Engine, warm_up  # noqa: E402
from dada.stxm.pixelmaps import fuse  # noqa: E402

CH = {c.name: c for c in CHANNELS}
FOUR = ("darkfield", "dpc", "azimuthal", "radial")
RMIN, RDPC, NSECTORS, NBINS = 10.0, 10.0, 16, 100
ARGS = {"cx": None, "cy": None, "usermask": None, "rmin": RMIN, "rmax": None, "rdpc": RDPC, "nsectors": NSECTORS,
        "nbins": NBINS, "unit": "px", "reduce": "none", "reference": "beam", "rotation": 0.0, "flip": False}
CHECKED = 8  # frames each tool's numbers are checked on


def data_files(master: str) -> list[h5py.Dataset]:
    f = h5py.File(master, "r")
    out = []
    for k in sorted(f["entry/data"]):
        link = f["entry/data"].get(k, getlink=True)
        out.append(h5py.File(os.path.join(os.path.dirname(master), link.filename), "r")["entry/data/data"])
    return out


def h5py_baseline(dsets: list[h5py.Dataset], out: np.ndarray) -> None:
    i = 0
    for d in dsets:
        d.read_direct(out, np.s_[:], np.s_[i:i + d.shape[0]])
        i += d.shape[0]


def h5py_time(dsets: list[h5py.Dataset], shape: tuple[int, ...], dtype: str) -> float:
    out = np.zeros(shape, dtype=dtype)  # touched: first writes into fresh memory are slow here
    return median_time(lambda: h5py_baseline(dsets, out))


def direct_baseline(dsets: list[h5py.Dataset], threads: int, shape, dtype) -> None:
    """Decoding alone: every chunk read raw and decoded into a reused frame, threads taking frames in turn."""
    jobs = [(d, k) for d in dsets for k in range(d.shape[0])]

    def work(part):
        out = np.empty(shape, dtype=dtype).reshape(-1).view(np.uint8)
        scratch = np.empty(MAX_BLOCK_BYTES, dtype=np.uint8)
        for d, k in part:
            raw = np.frombuffer(d.id.read_direct_chunk((k, 0, 0))[1], dtype=np.uint8)
            if not decode_into(raw, out, np.dtype(dtype).itemsize, scratch):
                raise RuntimeError("corrupt chunk")

    ts = [threading.Thread(target=work, args=(jobs[t::threads],)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pairs(table: Table, what: str, n: int, base: Callable[[], object], ours: Callable[[], object], count: int
          ) -> tuple[float, float, list[float]]:
    """(decode-only, ours) timed ``count`` times interleaved after a warm-up of each; prints every pair.
    Returns the medians of both frames/s and every pair's ratio."""
    base()
    ours()
    ratios, base_fps, our_fps = [], [], []
    for i in range(count):
        tb, to = timed(base), timed(ours)
        base_fps.append(n / tb)
        our_fps.append(n / to)
        ratios.append(tb / to)
        print(f"|   pair {i + 1}: decode-only {n / tb:8.0f} frames/s, {what} {n / to:8.0f} frames/s"
              f" → {tb / to:.2f}×", flush=True)
    table.add(f"{what} (median of {count} pairs)", statistics.median(our_fps), statistics.median(base_fps))
    print(f"|   {what}: ratio per pair {', '.join(f'{r:.2f}' for r in ratios)}; median "
          f"{statistics.median(ratios):.2f}×, lowest {min(ratios):.2f}×", flush=True)
    return statistics.median(base_fps), statistics.median(our_fps), ratios


def check(tool: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray], tol: float = 1e-9) -> None:
    """Stop the benchmark if a tool's numbers differ from the numpy reference: a fast wrong answer is no figure.
    The peers add in float32 (LiberTEM: ``tol`` 1e-4) or bin by float32 radii (pyFAI: a few pixels at bin edges
    fall in the neighbouring bin, 1e-3); dada's sums are exact."""
    worst = 0.0
    for k, g in got.items():
        w = want[k]
        ok = np.isfinite(w)
        worst = max(worst, float(np.max(np.abs(g[ok] - w[ok]) / np.maximum(np.abs(w[ok]), 1e-9), initial=0.0)))
    print(f"|   check {tool}: {', '.join(got)} match the numpy reference to {worst:.1e} (relative)", flush=True)
    if worst > tol:
        raise SystemExit(f"{tool} differs from the numpy reference by {worst:.1e}")


def references(dsets, geo, cutoff: float, rmax: float) -> tuple[dict, dict]:
    """The numpy reference on the first frames: with the saturation cutoff (dada's definition) and without
    (the peers keep saturated pixels)."""
    frames = dsets[0][:CHECKED]
    kw = dict(rmin=RMIN, rmax=rmax, rdpc=RDPC, nsectors=NSECTORS, nbins=NBINS, radial_rmin=RMIN)
    return (reference(frames, ~geo.good, cutoff, geo.cx, geo.cy, **kw),
            reference(frames, ~geo.good, np.inf, geo.cx, geo.cy, **kw))


def dada_outputs(engine: Engine, scan, geo, maps) -> dict[str, np.ndarray]:
    m = engine.run(scan, np.arange(CHECKED), maps, geo)
    out = {}
    for i, name in enumerate(FOUR):
        ch = CH[name]
        out[name] = ch.finalize(m.slice(maps.offsets[i], maps.offsets[i + 1]), geo, ARGS)
    return {"darkfield": out["darkfield"]["darkfield"], "com": out["dpc"]["dpc"].T,
            "sectors": out["azimuthal"]["sectors"].T, "radial": out["radial"]["radial"].T}


def run_case(folder: str, name: str, rows: int, cols: int, dtype: str, side: int, count: int, peers: bool,
             ) -> dict[str, float]:
    t0 = time.perf_counter()
    master = eiger_file(folder, name, side, side, rows, cols, dtype)
    print(f"\n(file {name}: {side}x{side} frames of {rows}x{cols} {dtype}, ready in {time.perf_counter() - t0:.1f} s)")
    n = side * side
    table = Table(f"{rows}×{cols} {dtype}, {n} frames", rows * cols * np.dtype(dtype).itemsize)
    dsets = data_files(master)
    r: dict[str, float] = {}
    r["h5py"] = table.add("baseline h5py read into a preallocated array", n / h5py_time(dsets, (n, rows, cols), dtype),
                          None)
    r["direct1"] = table.add("baseline read_direct_chunk + decode, 1 thread", n / median_time(
        lambda: direct_baseline(dsets, 1, (rows, cols), dtype)), None)

    scan = Catalog({"": folder}).scan(name)
    geo = geometry(scan, ARGS, None)
    rmax = geo.r_inside()
    t0 = time.perf_counter()
    maps = fuse([CH[c].bins(geo, ARGS) for c in FOUR], geo)
    print(f"|   (pixel maps of all four built in {(time.perf_counter() - t0) * 1e3:.0f} ms: {maps.nclasses} classes)")
    with_cutoff, without = references(dsets, geo, scan.geometry.saturation or np.inf, rmax)
    engine, one = Engine(2), Engine(1)
    check("dada", dada_outputs(engine, scan, geo, maps), with_cutoff)
    frames = np.arange(n)

    def decode2():
        return direct_baseline(dsets, 2, (rows, cols), dtype)

    r["direct2"], r["fused2"], r["pairs"] = pairs(table, "dada all four fused, 2 threads", n, decode2,
                                     lambda: engine.run(scan, frames, maps, geo), count)
    base = r["direct2"]
    r["fused1"] = table.add("dada all four fused, 1 thread (per core)", n / median_time(
        lambda: one.run(scan, frames, maps, geo)), base)
    for names in (["darkfield"], ["dpc"], ["azimuthal"], ["radial"], ["darkfield", "dpc"], ["radial", "azimuthal"]):
        alone = fuse([CH[c].bins(geo, ARGS) for c in names], geo)
        label = " + ".join(names)
        r[label] = table.add(f"dada {label}, 2 threads", n / median_time(
            lambda alone=alone: engine.run(scan, frames, alone, geo)), base)
    http = http_pairs(table, folder, name, n, decode2, count)
    _, r["http"], r["http pairs"] = http["no result cache"]
    _, r["http cold"], r["http cold pairs"] = http["fresh parameter"]
    if peers:
        r.update(libertem_rows(table, master, side, geo, rmax, base, without))
        r["pyfai"] = pyfai_row(table, dsets, geo, scan, rmax, base, without)
    print()
    fused, hot, cold = (statistics.median(r[k]) for k in ("pairs", "http pairs", "http cold pairs"))
    print(f"targets: all four fused ≥ 0.8× decode-only: median {fused:.2f}×, lowest pair {min(r['pairs']):.2f}× "
          f"(≥ 0.7); /stxm over HTTP ≥ 0.75×: median {hot:.2f}×, lowest {min(r['http pairs']):.2f}× "
          f"(fresh parameter, pixel maps rebuilt: {cold:.2f}×); per core {r['fused1']:.0f} frames/s")
    if peers:
        print(f"against peers: all four {r['fused2']:.0f} vs LiberTEM {r['libertem all four']:.1f} frames/s "
              f"({r['fused2'] / r['libertem all four']:.0f}×); ring + CoM (dada darkfield + dpc in one "
              f"pass) vs LiberTEM {r['libertem ring+com']:.1f} ({r['darkfield + dpc'] / r['libertem ring+com']:.0f}×); "
              f"radial + sectors vs pyFAI {r['pyfai']:.0f} ({r['radial + azimuthal'] / r['pyfai']:.0f}×)")
    return r


def http_pairs(table: Table, folder: str, name: str, n: int, decode2: Callable[[], object], count: int
               ) -> dict[str, tuple[float, float, list[float]]]:
    """/stxm over HTTP on a real daemon with its result caches off, so every answer is computed: the same
    URL (the nodes keep their pixel maps, as for a user's next scan), and a fresh parameter each time
    (pixel maps rebuilt on every node: the first request after a parameter change)."""
    from helpers import Daemon

    config = os.path.join(folder, "no-cache.toml")
    with open(config, "w") as f:
        f.write("cache_memory_bytes = 0\ncache_disk_bytes = 0\nanswer_cache_bytes = 0\n")
    d = Daemon(["serve", folder, "--max-frames", "10000000", "--config", config])
    try:
        counter = iter(range(1, 10**6))

        def ask(fresh: bool) -> None:
            rmin = RMIN + next(counter) * 1e-6 if fresh else RMIN
            r = d.get(f"/stxm/{name}.npy?darkfield.rmin={rmin}", timeout=600)
            assert r.status == 200, r.body[:300]

        return {kind: pairs(table, f"dada over HTTP: /stxm all four, npy, {kind}", n, decode2,
                            lambda fresh=fresh: ask(fresh), count)
                for kind, fresh in (("no result cache", False), ("fresh parameter", True))}
    finally:
        d.stop()


def peer_masks(geo, rmax: float) -> list:
    """The peers' masks as scipy.sparse matrices, on exactly the reference's pixel bins: ring, CoM disc
    (1, x, y), 16 sectors on the ring, 100 radial shells from RMIN to rmax."""
    import scipy.sparse

    r, phi, good = geo.radius(), geo.angle(), geo.good
    rows, cols = np.indices(geo.shape)
    ring = good & (r >= RMIN) & (r < rmax)
    disc = good & (r < RDPC)
    sector = np.minimum((phi / (2 * np.pi) * NSECTORS).astype(int), NSECTORS - 1)
    edges = np.linspace(RMIN, rmax, NBINS + 1)
    dense = [ring, disc, disc * (cols - geo.cx), disc * (rows - geo.cy)]
    dense += [ring & (sector == k) for k in range(NSECTORS)]
    dense += [good & (r >= edges[k]) & (r < edges[k + 1]) for k in range(NBINS)]
    return [scipy.sparse.csr_matrix(m.astype(np.float32)) for m in dense]


def mask_outputs(intensity: np.ndarray, masks: list) -> dict[str, np.ndarray]:
    """Per-frame mask sums as the reference's quantities (sums over counts for means)."""
    counts = np.array([m.sum() for m in masks])
    out = {"darkfield": intensity[:, 0], "com": intensity[:, 2:4] / intensity[:, 1:2]}
    if intensity.shape[1] > 4:
        out["sectors"] = intensity[:, 4:4 + NSECTORS] / counts[4:4 + NSECTORS]
        out["radial"] = intensity[:, 4 + NSECTORS:] / counts[4 + NSECTORS:]
    return out


def libertem_rows(table: Table, master: str, side: int, geo, rmax: float, base: float, want: dict
                  ) -> dict[str, float]:
    from libertem.api import Context
    from libertem.udf.masks import ApplyMasksUDF

    masks = peer_masks(geo, rmax)
    sub = 128  # LiberTEM is slow: a subset of frames, reported per frame
    roi = np.zeros((side, side), dtype=bool)
    roi.ravel()[:sub] = True
    data = os.path.join(os.path.dirname(master), os.path.basename(master).replace("_master", "_data_000001"))
    out: dict[str, float] = {}
    for kind in ("inline", "dask"):
        t0 = time.perf_counter()
        ctx = Context.make_with("inline") if kind == "inline" else Context.make_with("dask", cpus=2)
        start = time.perf_counter() - t0
        ds = ctx.load("hdf5", path=data, ds_path="/entry/data/data", nav_shape=(side, side))
        for label, chosen in (("ring+com", masks[:4]), ("all four", masks)):
            def udf(chosen=chosen):
                return ApplyMasksUDF(mask_factories=[(lambda m=m: m) for m in chosen], use_sparse="sparse.pydata")

            res = ctx.run_udf(ds, udf(), roi=roi)
            got = mask_outputs(np.asarray(res["intensity"].data).reshape(side * side, -1)[:CHECKED], chosen)
            check(f"LiberTEM {label} ({kind})", got, want, 1e-4)
            t = median_time(lambda ctx=ctx, ds=ds, udf=udf: ctx.run_udf(ds, udf(), roi=roi))
            what = ("ring + CoM as 4 sparse masks" if label == "ring+com" else "all four, 120 sparse masks")
            exe = "inline" if kind == "inline" else f"local dask, 2 workers (start {start:.1f} s)"
            out[f"libertem {label} {kind}"] = table.add(f"LiberTEM {what}, {exe}", sub / t, base)
        ctx.close()
    for label in ("ring+com", "all four"):
        out[f"libertem {label}"] = max(out[f"libertem {label} inline"], out[f"libertem {label} dask"])
    return out


def pyfai_row(table: Table, dsets, geo, scan, rmax: float, base: float, want: dict) -> float:
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    pix = scan.geometry.x_pixel_size
    ai = AzimuthalIntegrator(dist=scan.geometry.detector_distance, poni1=(geo.cy + 0.5) * pix,
                             poni2=(geo.cx + 0.5) * pix, pixel1=pix, pixel2=pix)
    ai.setChiDiscAtZero()  # azimuths in [0, 360) like dada's sectors
    sub = 128
    frames = [dsets[0][k] for k in range(sub)]
    # Two spare bins each side: pyFAI keeps pixels whose corners reach into the range, their centres
    # outside it clipped into the end bins; the spare bins take them, the rest have dada's edges.
    dw = (rmax - RMIN) / NBINS
    kw = dict(unit="r_mm", method=("no", "csc", "cython"), correctSolidAngle=False, mask=~geo.good,
              polarization_factor=None, radial_range=((RMIN - 2 * dw) * pix * 1e3, (rmax + 2 * dw) * pix * 1e3),
              azimuth_range=(0, 360))

    def integrate(f):
        res = ai.integrate2d(f, NBINS + 4, NSECTORS, **kw)
        s, c = np.asarray(res.sum_signal)[:, 2:-2], np.asarray(res.count)[:, 2:-2]
        return s.sum(axis=1) / c.sum(axis=1), s.sum(axis=0) / c.sum(axis=0)  # sectors, radial

    got = [integrate(f) for f in frames[:CHECKED]]
    check("pyFAI", {"sectors": np.array([g[0] for g in got]), "radial": np.array([g[1] for g in got])}, want, 1e-3)
    return table.add("pyFAI integrate2d 100 × 16, no splitting, csc (frames in memory)", sub / median_time(
        lambda: [integrate(f) for f in frames]), base)


CASES = (("eiger1m_u32", 1065, 1030, "uint32", 32), ("eiger_512_u16", 512, 512, "uint16", 32),
         ("eiger4m_u32", 2070, 2167, "uint32", 16))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="where the test files go (kept and reused); default: a temporary folder")
    p.add_argument("--quick", action="store_true", help="16x16 points (8x8 for the 4M), 3 pairs, no peers")
    p.add_argument("--pairs", type=int, default=5, help="interleaved (decode-only, dada) pairs per target")
    p.add_argument("--no-peers", action="store_true", help="skip LiberTEM and pyFAI")
    args = p.parse_args()
    warm_up()
    folder = args.dir or tempfile.mkdtemp(prefix="dada-bench-")
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    for name, rows, cols, dtype, side in CASES:
        side = side // 2 if args.quick else side
        peers = not (args.quick or args.no_peers) and rows < 2000
        run_case(folder, name + ("_quick" if args.quick else ""), rows, cols, dtype, side,
                 3 if args.quick else args.pairs, peers)
    print(f"\n(total {time.perf_counter() - t0:.0f} s; machine: {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
