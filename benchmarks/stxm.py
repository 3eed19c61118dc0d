"""STXM throughput: dada's fused pass vs reading the data, LiberTEM and pyFAI, measured in one run.

    python benchmarks/stxm.py [--dir DIR] [--quick]

For each file (1065×1030 uint32 and 512×512 uint16, 32×32 points, Eiger-like,
bitshuffle-LZ4, one frame per chunk) it prints frames/s, decompressed GB/s
and the ratio to the faster of the two baselines:

* h5py: every frame read with h5py into a preallocated (touched) array;
* direct: ``read_direct_chunk`` + bitshuffle-LZ4 decode (bitshuffle's own C
  routines) into reused buffers on both cores (threads, GIL released).

Then dada's node path (the engine a node runs for a patch URL; both cores,
threads) per channel and all four fused, the same through HTTP on a real
daemon, LiberTEM 0.16 (ring + CoM, and all four quantities with sparse masks;
inline and its default local dask executor, whose start-up is timed apart)
and pyFAI ``integrate1d`` (csr, same bins) per frame. Medians of 3 runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import Table, eiger_file, median_time  # noqa: E402

from dada.registry import CHANNELS  # noqa: E402
from dada.sources.catalog import Catalog  # noqa: E402
from dada.stxm.beam import geometry  # noqa: E402
from dada.stxm.decode import MAX_BLOCK_BYTES, decode_into  # noqa: E402
from dada.stxm.engine import Engine, warm_up
from dada.stxm.pixelmaps import fuse  # noqa: E402

CH = {c.name: c for c in CHANNELS}
ARGS = {"cx": None, "cy": None, "usermask": None, "rmin": 10.0, "rmax": None, "rdpc": 10.0, "nsectors": 16,
        "nbins": 100, "unit": "px", "reduce": "none", "reference": "beam", "rotation": 0.0, "flip": False}


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


def run_case(folder: str, name: str, rows: int, cols: int, dtype: str, quick: bool) -> dict[str, float]:
    v = h = 16 if quick else 32
    t0 = time.perf_counter()
    master = eiger_file(folder, name, v, h, rows, cols, dtype)
    print(f"\n(file {name}: {v}x{h} frames of {rows}x{cols} {dtype}, ready in {time.perf_counter() - t0:.1f} s)")
    n = v * h
    frame_bytes = rows * cols * np.dtype(dtype).itemsize
    table = Table(f"{rows}×{cols} {dtype}, {n} frames", frame_bytes)
    dsets = data_files(master)
    r: dict[str, float] = {}
    r["h5py"] = table.add("baseline h5py read into a preallocated array", n / h5py_time(dsets, (n, rows, cols), dtype),
                          None)
    r["direct1"] = table.add("baseline read_direct_chunk + decode, 1 thread", n / median_time(
        lambda: direct_baseline(dsets, 1, (rows, cols), dtype)), None)
    r["direct2"] = table.add("baseline read_direct_chunk + decode, 2 threads", n / median_time(
        lambda: direct_baseline(dsets, 2, (rows, cols), dtype)), None)
    base = max(r["h5py"], r["direct2"])

    scan = Catalog({"": folder}).scan(name)
    geo = geometry(scan, ARGS, None)
    engine = Engine(2)
    frames = np.arange(n)
    for names in (["darkfield"], ["dpc"], ["azimuthal"], ["radial"], ["darkfield", "dpc", "azimuthal", "radial"]):
        maps = fuse([CH[c].bins(geo, ARGS) for c in names], geo)
        label = "all four fused" if len(names) == 4 else names[0]
        r[label] = table.add(f"dada node path (2 threads): {label}", n / median_time(
            lambda maps=maps: engine.run(scan, frames, maps, geo)), base)
    maps = fuse([CH["radial"].bins(geo, ARGS), CH["azimuthal"].bins(geo, ARGS)], geo)
    r["radial+sectors"] = table.add("dada node path: radial + sectors", n / median_time(
        lambda: engine.run(scan, frames, maps, geo)), base)
    r["http"] = table.add("dada over HTTP: /stxm all four, npy", n / http_time(folder, name), base)
    r.update(libertem_rows(table, master, v, h, geo, base, quick))
    r["pyfai"] = pyfai_row(table, dsets, geo, scan, base, quick)
    print()
    print(f"targets: all four ≥ 0.8× baseline: {r['all four fused'] / base:.2f}×; "
          f"≥ 5× LiberTEM all four: {r['all four fused'] / r['libertem all four']:.1f}×; "
          f"≥ 3× LiberTEM ring + CoM: {r['darkfield'] / r['libertem ring+com']:.1f}× (dada darkfield or dpc "
          f"alone each do more than either); radial + sectors ≥ 5× pyFAI csr: "
          f"{r['radial+sectors'] / r['pyfai']:.1f}×")
    return r


def http_time(folder: str, name: str) -> float:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from helpers import Daemon

    d = Daemon(["serve", folder, "--max-frames", "10000000"])
    try:
        url = f"/stxm/{name}.npy"
        # a new parameter each time: nothing may be answered from a cache
        counter = iter(range(10**6))
        return median_time(lambda: d.get(f"{url}?darkfield.rmin={10 + next(counter) * 1e-6}", timeout=600))
    finally:
        d.stop()


def libertem_rows(table: Table, master: str, v: int, h: int, geo, base: float, quick: bool) -> dict[str, float]:
    from libertem import masks
    from libertem.api import Context
    from libertem.udf.com import CoMUDF
    from libertem.udf.masks import ApplyMasksUDF

    shape = geo.shape
    cx, cy = geo.cx, geo.cy
    rmax = geo.r_inside()
    sub = 64 if quick else 128  # LiberTEM is slow: a subset of frames, reported per frame
    roi = np.zeros((v, h), dtype=bool)
    roi.ravel()[:sub] = True
    ring = [lambda: masks.ring(centerX=cx, centerY=cy, imageSizeX=shape[1], imageSizeY=shape[0], radius=rmax,
                               radius_inner=10)]
    r = geo.radius()
    phi = geo.angle()
    good = geo.good

    def sector(k):
        return lambda: ((r >= 10) & (r < rmax) & (np.floor(phi / (2 * np.pi) * 16) == k) & good).astype(np.float32)

    def shell(k):
        lo, hi = rmax * k / 100, rmax * (k + 1) / 100
        return lambda: ((r >= lo) & (r < hi) & good).astype(np.float32)

    all_masks = ring + [sector(k) for k in range(16)] + [shell(k) for k in range(100)]
    data = os.path.join(os.path.dirname(master), os.path.basename(master).replace("_master", "_data_000001"))
    out: dict[str, float] = {}
    for kind in ("inline", "dask"):
        t0 = time.perf_counter()
        ctx = Context.make_with("inline") if kind == "inline" else Context()
        start = time.perf_counter() - t0
        ds = ctx.load("hdf5", path=data, ds_path="/entry/data/data", nav_shape=(v, h))
        com = CoMUDF.with_params(cy=cy, cx=cx, r=10.0)
        t = median_time(lambda ctx=ctx, ds=ds, com=com: ctx.run_udf(
            ds, [ApplyMasksUDF(mask_factories=ring, use_sparse=True), com], roi=roi))
        label = "LiberTEM ring + CoM, " + ("inline" if kind == "inline" else f"local dask (start {start:.1f} s)")
        out[f"libertem ring+com {kind}"] = table.add(label, sub / t, base)
        t = median_time(lambda ctx=ctx, ds=ds, com=com: ctx.run_udf(
            ds, [ApplyMasksUDF(mask_factories=all_masks, use_sparse=True), com], roi=roi), repeats=1)
        out[f"libertem all four {kind}"] = table.add(f"LiberTEM all four (sparse masks), {kind}", sub / t, base)
        ctx.close()
    out["libertem ring+com"] = max(out["libertem ring+com inline"], out["libertem ring+com dask"])
    out["libertem all four"] = max(out["libertem all four inline"], out["libertem all four dask"])
    return out


def pyfai_row(table: Table, dsets, geo, scan, base: float, quick: bool) -> float:
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    pix = scan.geometry.x_pixel_size
    ai = AzimuthalIntegrator(dist=scan.geometry.detector_distance, poni1=(geo.cy + 0.5) * pix,
                             poni2=(geo.cx + 0.5) * pix, pixel1=pix, pixel2=pix)
    mask = ~geo.good
    rmax = geo.r_inside()
    sub = 64 if quick else 128
    frames = [dsets[0][k] for k in range(sub)]
    kw = dict(unit="r_mm", method=("bbox", "csr", "cython"), correctSolidAngle=False, mask=mask,
              polarization_factor=None)

    def run():
        for f in frames:
            ai.integrate1d(f, 100, radial_range=(0, rmax * pix * 1e3), **kw)
            ai.integrate2d(f, 1, 16, radial_range=(10 * pix * 1e3, rmax * pix * 1e3), **kw)

    return table.add("pyFAI csr integrate1d + 16 sectors per frame (frames in memory)", sub / median_time(run),
                     base)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="where the test files go (kept and reused); default: a temporary folder")
    p.add_argument("--quick", action="store_true", help="16x16 points, fewer peer frames")
    args = p.parse_args()
    warm_up()
    folder = args.dir or tempfile.mkdtemp(prefix="dada-bench-")
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    run_case(folder, "eiger1m_u32", 1065, 1030, "uint32", args.quick)
    run_case(folder, "eiger_512_u16", 512, 512, "uint16", args.quick)
    print(f"\n(total {time.perf_counter() - t0:.0f} s; machine: {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
