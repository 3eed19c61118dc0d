"""STXM throughput: dada's fused pass against decoding alone, LiberTEM and pyFAI, measured in one run.

    python benchmarks/stxm.py [--dir DIR] [--quick] [--pairs 5] [--no-peers]

Three Eiger-like files (bitshuffle-LZ4, one frame per chunk, sparse SAXS frames with masked gaps; every frame
simulated with its own Poisson noise): 1065×1030 uint32 and 512×512 uint16 (32×32 points), and an Eiger 4M,
2070×2167 uint32 (16×16). For each it prints frames/s, the cores the tool ran on and frames/s per core,
decompressed GB/s and the ratio to decoding alone:

* baselines: h5py reading every frame into a preallocated (touched) array, and ``read_direct_chunk``
  + bitshuffle-LZ4 decode (bitshuffle's own C routines) into reused buffers, on 1 and 2 threads;
* pairs: (decode-only on 2 threads, dada's node path with all four channels fused on 2 threads),
  repeated ``--pairs`` times interleaved, each pair's ratio printed, then the median and the lowest; the
  same pairs with all six channels fused (the four, and maxpixel and contrast: a max and Σv² per bin);
  the same pairs with ``/stxm`` (h5: every channel's outputs) over HTTP on a real daemon whose result
  caches are off: the same URL each time (the nodes keep their pixel maps), and a fresh parameter each
  time (pixel maps rebuilt);
* dada on one thread, each of the six channels alone, darkfield + dpc and radial + sectors;
* the peers at their best on the same 2 cores, over 128 frames spread evenly over the first data file
  (1000 of the scan's frames), reported per frame: LiberTEM 0.16 (sparse masks as ``scipy.sparse``
  factories multiplied with ``sparse.pydata``; inline on one core, and local dask with 2 workers, whose
  partitions and CPU seconds are printed to show both work): ring + centre of mass as 4 masks, and all
  four quantities as one ApplyMasksUDF with 120 masks; pyFAI's sparse-matrix engines (what
  ``integrate2d`` runs without pixel splitting; 100 radial (+4 spare) × 16 azimuthal bins, frames already
  in memory): CSC on one thread, CSR (OpenMP) on 2 threads, and CSC with the frames shared by 2 threads
  (GIL released); the fastest of each peer is compared.

Every answer of every timed run (warm-ups included), of every tool, is checked against the slow numpy
reference of the tests (``stxm_reference``) on 12 points spread over the scan (the peers: those of
their frames), every output it carries: a difference beyond the tool's tolerance, or NaN where the
reference has a number (or a number where it has NaN), stops the benchmark. Single figures are medians
of 3 runs after a warm-up.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from common import Table, eiger_file, median_time  # noqa: E402
from stxm_reference import annulus, reference  # noqa: E402

from dada.registry import CHANNELS  # noqa: E402
from dada.sources.catalog import Catalog  # noqa: E402
from dada.stxm import polarbins  # noqa: E402
from dada.stxm.beam import geometry  # noqa: E402
from dada.stxm.decode import MAX_BLOCK_BYTES, decode_into  # noqa: E402
from dada.stxm.engine import Engine, warm_up  # noqa: E402
from dada.stxm.local import per_channel  # noqa: E402
from dada.stxm.pixelmaps import fuse  # noqa: E402

CH = {c.name: c for c in CHANNELS}
FOUR = ("darkfield", "dpc", "azimuthal", "radial")
SIX = (*FOUR, "maxpixel", "contrast")  # with the two that are not sums (a max; Σv² beside Σv)
RMIN, RDPC, NSECTORS, NBINS = 10.0, 10.0, 16, 100
ARGS = {"cx": None, "cy": None, "usermask": None, "rmin": RMIN, "rmax": None, "rdpc": RDPC, "nsectors": NSECTORS,
        "nbins": NBINS, "unit": "px", "reduce": "none", "reference": "beam", "rotation": 0.0, "flip": False}
SAMPLED = 12  # points of the scan every answer is checked on
PEER_FRAMES = 128  # the peers are slow: this many frames spread over the first data file, reported per frame
# Each channel's outputs under the reference's names.
AS_REFERENCE = {("darkfield", "darkfield"): "darkfield", ("darkfield", "transmission"): "transmission",
                ("dpc", "dpc"): "com", ("azimuthal", "sectors"): "sectors", ("azimuthal", "orientation"): "orientation",
                ("azimuthal", "anisotropy"): "anisotropy", ("radial", "radial"): "radial",
                ("maxpixel", "maxpixel"): "maxpixel", ("contrast", "contrast"): "contrast"}


def spread(n: int, k: int) -> np.ndarray:
    """``k`` of the numbers ``0 … n-1`` evenly spread, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def data_files(master: str) -> list[h5py.Dataset]:
    f = h5py.File(master, "r")
    out = []
    for k in sorted(f["entry/data"]):
        link = f["entry/data"].get(k, getlink=True)
        out.append(h5py.File(os.path.join(os.path.dirname(master), link.filename), "r")["entry/data/data"])
    return out


def read_frames(dsets: list[h5py.Dataset], frames: np.ndarray) -> np.ndarray:
    """Frames by their number in the scan, across the data files."""
    starts = np.cumsum([0] + [d.shape[0] for d in dsets])
    out = []
    for k in frames:
        i = int(np.searchsorted(starts, k, side="right")) - 1
        out.append(dsets[i][int(k - starts[i])])
    return np.stack(out)


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


class Check:
    """One tool's answers held to the numpy reference at the sampled points: every answer of a timed run
    goes through it, after its time is taken. ``pick`` turns an answer into the reference's quantities at
    the points ``want`` holds, every one of them. LiberTEM adds in float32 (``tol`` 1e-4); dada's and
    pyFAI's sums are exact."""

    def __init__(self, tool: str, want: dict[str, np.ndarray], pick: Callable[[object], dict[str, np.ndarray]],
                 tol: float = 1e-9) -> None:
        self.tool, self.want, self.pick, self.tol = tool, want, pick, tol
        self.answers, self.worst, self.values = 0, 0.0, 0

    def __call__(self, answer: object) -> None:
        got = self.pick(answer)
        if set(got) != set(self.want):
            raise SystemExit(f"{self.tool}: the answer holds {sorted(got)}, the reference {sorted(self.want)}")
        for k, g in got.items():
            g, w = np.asarray(g, dtype=np.float64), self.want[k]
            if g.shape != w.shape:
                raise SystemExit(f"{self.tool}: {k} has shape {g.shape}, the reference {w.shape}")
            nan = np.isnan(g) != np.isnan(w)
            if nan.any():
                raise SystemExit(f"{self.tool}: {k} is NaN where the reference is not, or a number where it is "
                                 f"NaN, at {int(nan.sum())} of {w.size} values")
            ok = ~np.isnan(w)
            diff = np.abs(g[ok] - w[ok])
            if k == "orientation":  # degrees modulo 180, relative to the half turn
                err = np.abs((g[ok] - w[ok] + 90) % 180 - 90) / 180
            else:  # a centre of mass about the beam centre is near 0 px at some points: compared in px there
                err = diff / np.maximum(np.abs(w[ok]), 1.0 if k == "com" else 1e-9)
            worst = float(np.max(err, initial=0.0))  # NaN (e.g. an infinite answer) fails below
            if not worst <= self.tol:
                raise SystemExit(f"{self.tool}: {k} differs from the numpy reference by {worst:.1e} (relative; "
                                 f"tolerance {self.tol:.0e})")
            self.worst = max(self.worst, worst)
            self.values += w.size
        self.answers += 1

    def report(self) -> None:
        points = len(next(iter(self.want.values())))
        print(f"|   checked {self.tool}: {self.answers} answers so far, {self.values} values at {points} points, "
              f"worst {self.worst:.1e} (relative), NaN where the reference has NaN only", flush=True)


class Reference:
    """The numpy reference at the sampled frames: with the saturation cutoff (dada's definition) and without
    (the peers keep saturated pixels; computed only when they run)."""

    def __init__(self, dsets, geo, cutoff: float, rmax: float, frames: np.ndarray, peers: bool) -> None:
        t0 = time.perf_counter()
        self.frames = frames
        data = read_frames(dsets, frames)
        kw = dict(rmin=RMIN, rmax=rmax, rdpc=RDPC, nsectors=NSECTORS, nbins=NBINS, radial_rmin=RMIN)
        self.cut = reference(data, ~geo.good, cutoff, geo.cx, geo.cy, **kw)
        self.cut.update(annulus(data, ~geo.good, cutoff, geo.cx, geo.cy, rmin=RMIN, rmax=rmax))
        self.uncut = reference(data, ~geo.good, np.inf, geo.cx, geo.cy, **kw) if peers else {}
        print(f"|   (numpy reference at frames {', '.join(map(str, frames))}: {time.perf_counter() - t0:.0f} s)")

    def at(self, frames: np.ndarray, cut: bool = True) -> dict[str, np.ndarray]:
        rows = np.searchsorted(self.frames, frames)
        return {k: v[rows] for k, v in (self.cut if cut else self.uncut).items()}


def as_reference(channel: str, outputs: dict[str, np.ndarray], at: np.ndarray, npoints: int
                 ) -> dict[str, np.ndarray]:
    """A channel's outputs (points last, flat or as a map) at the points ``at``, under the reference's names."""
    out = {}
    for name, a in outputs.items():
        if (channel, name) in AS_REFERENCE:
            v = np.asarray(a).reshape(-1, npoints)[:, at].T
            out[AS_REFERENCE[channel, name]] = v[:, 0] if v.shape[1] == 1 else v
    return out


def dada_check(tool: str, names, maps, geo, ref: Reference, n: int) -> Check:
    """Finalises every channel of the engine's run, as a node's answer becomes maps."""

    def pick(bulk) -> dict[str, np.ndarray]:
        out = {}
        for name, m in per_channel(bulk, maps, names).items():
            out.update(as_reference(name, CH[name].finalize(m, geo, ARGS), ref.frames, n))
        return out

    want = ref.at(ref.frames)
    return Check(tool, {want_key: want[want_key] for (c, _), want_key in AS_REFERENCE.items() if c in names}, pick)


def http_check(tool: str, ref: Reference, n: int, names=FOUR) -> Check:
    """Reads every array of an h5 answer of ``/stxm`` (of the channels ``names``)."""

    def pick(body: bytes) -> dict[str, np.ndarray]:
        out = {}
        with h5py.File(io.BytesIO(body), "r") as f:
            for key in f:
                channel, _, name = key.partition(".")
                out.update(as_reference(channel, {name: f[key][()]}, ref.frames, n))
        return out

    want = ref.at(ref.frames)
    return Check(tool, {k: want[k] for (c, _), k in AS_REFERENCE.items() if c in names}, pick)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    answer = fn()
    return time.perf_counter() - t0, answer


def pairs(table: Table, what: str, n: int, base: Callable[[], object], ours: Callable[[], object], count: int,
          check: Check) -> tuple[float, float, list[float]]:
    """(decode-only, ours) timed ``count`` times interleaved after a warm-up of each; prints every pair, checks
    every answer of ours. Returns the medians of both frames/s and every pair's ratio."""
    base()
    check(ours())
    ratios, base_fps, our_fps = [], [], []
    for i in range(count):
        tb, _ = timed(base)
        to, answer = timed(ours)
        check(answer)
        base_fps.append(n / tb)
        our_fps.append(n / to)
        ratios.append(tb / to)
        print(f"|   pair {i + 1}: decode-only {n / tb:8.0f} frames/s, {what} {n / to:8.0f} frames/s"
              f" → {tb / to:.2f}×", flush=True)
    table.add(f"{what} (median of {count} pairs)", statistics.median(our_fps), statistics.median(base_fps), 2)
    print(f"|   {what}: ratio per pair {', '.join(f'{r:.2f}' for r in ratios)}; median "
          f"{statistics.median(ratios):.2f}×, lowest {min(ratios):.2f}×", flush=True)
    check.report()
    return statistics.median(base_fps), statistics.median(our_fps), ratios


def run_case(folder: str, name: str, rows: int, cols: int, dtype: str, side: int, count: int, peers: bool,
             ) -> dict[str, float]:
    t0 = time.perf_counter()
    master = eiger_file(folder, name, side, side, rows, cols, dtype)
    print(f"\n(file {name}: {side}x{side} frames of {rows}x{cols} {dtype}, every frame simulated; ready in "
          f"{time.perf_counter() - t0:.1f} s)")
    n = side * side
    table = Table(f"{rows}×{cols} {dtype}, {n} frames", rows * cols * np.dtype(dtype).itemsize)
    dsets = data_files(master)
    r: dict[str, float] = {}
    r["h5py"] = table.add("baseline h5py read into a preallocated array", n / h5py_time(dsets, (n, rows, cols), dtype),
                          None, 1)
    r["direct1"] = table.add("baseline read_direct_chunk + decode, 1 thread", n / median_time(
        lambda: direct_baseline(dsets, 1, (rows, cols), dtype)), None, 1)

    scan = Catalog({"": folder}).scan(name)
    geo = geometry(scan, ARGS, None)
    rmax = geo.r_inside()
    t0 = time.perf_counter()
    maps = fuse([CH[c].bins(geo, ARGS) for c in FOUR], [CH[c].accumulators for c in FOUR], geo)
    print(f"|   (pixel maps of all four built in {(time.perf_counter() - t0) * 1e3:.0f} ms: {maps.nclasses} classes)")
    peer_frames = spread(dsets[0].shape[0], PEER_FRAMES)
    sample = np.union1d(peer_frames[spread(peer_frames.size, SAMPLED - 1)], [n - 1])
    ref = Reference(dsets, geo, scan.geometry.saturation or np.inf, rmax, sample, peers)
    engine, one = Engine(2), Engine(1)
    frames = np.arange(n)

    def decode2():
        return direct_baseline(dsets, 2, (rows, cols), dtype)

    fused = dada_check("dada all four fused", FOUR, maps, geo, ref, n)
    r["direct2"], r["fused2"], r["pairs"] = pairs(table, "dada all four fused, 2 threads", n, decode2,
                                                  lambda: engine.run(scan, frames, maps, geo), count, fused)
    base = r["direct2"]
    r["fused1"] = table.add("dada all four fused, 1 thread", n / median_time(
        lambda: one.run(scan, frames, maps, geo), check=fused), base, 1)
    fused.report()
    six = fuse([CH[c].bins(geo, ARGS) for c in SIX], [CH[c].accumulators for c in SIX], geo)
    _, r["six2"], r["six pairs"] = pairs(table, "dada all six fused, 2 threads", n, decode2,
                                         lambda: engine.run(scan, frames, six, geo), count,
                                         dada_check("dada all six fused", SIX, six, geo, ref, n))
    for names in (["darkfield"], ["dpc"], ["azimuthal"], ["radial"], ["maxpixel"], ["contrast"], ["darkfield", "dpc"],
                  ["radial", "azimuthal"]):
        alone = fuse([CH[c].bins(geo, ARGS) for c in names], [CH[c].accumulators for c in names], geo)
        label = " + ".join(names)
        check = dada_check(f"dada {label}", names, alone, geo, ref, n)
        r[label] = table.add(f"dada {label}, 2 threads", n / median_time(
            lambda alone=alone: engine.run(scan, frames, alone, geo), check=check), base, 2)
        check.report()
    radius = geo.radius()
    below = RMIN - float(radius[radius < RMIN].max())  # rmin may move this far down: no pixel changes side
    http = http_pairs(table, folder, name, n, decode2, count, ref, below / (count + 2))
    _, r["http"], r["http pairs"] = http["no result cache"]
    _, r["http cold"], r["http cold pairs"] = http["fresh parameter"]
    if peers:
        at = np.intersect1d(sample, peer_frames)
        r.update(libertem_rows(table, dsets, peer_frames, at, geo, rmax, base, ref.at(at, cut=False)))
        r.update(pyfai_rows(table, read_frames(dsets, peer_frames), peer_frames, at, geo, rmax, base,
                            ref.at(at, cut=False)))
    print()
    fused_r, hot, cold = (statistics.median(r[k]) for k in ("pairs", "http pairs", "http cold pairs"))
    six_r = statistics.median(r["six pairs"])
    print(f"targets: all four fused ≥ 0.8× decode-only: median {fused_r:.2f}×, lowest pair {min(r['pairs']):.2f}× "
          f"(≥ 0.7); all six fused (with maxpixel and contrast) ≥ 0.8×: median {six_r:.2f}×, lowest pair "
          f"{min(r['six pairs']):.2f}×; /stxm over HTTP ≥ 0.75×: median {hot:.2f}×, lowest {min(r['http pairs']):.2f}× "
          f"(fresh parameter, pixel maps rebuilt: {cold:.2f}×); per core {r['fused1']:.0f} frames/s")
    if peers:
        print("against the peers at their best on the same 2 cores (frames/s; per core: frames/s / cores used):")
        for ours, label, peer, tool in (("fused2", "all four", "libertem all four", "LiberTEM"),
                                        ("darkfield + dpc", "ring + CoM (dada darkfield + dpc in one pass)",
                                         "libertem ring+com", "LiberTEM"),
                                        ("radial + azimuthal", "radial + sectors", "pyfai", "pyFAI")):
            fps, pfps, pcores = r[ours], r[peer], r[f"{peer} cores"]
            print(f"  {label}: dada {fps:.0f} on 2 cores ({fps / 2:.0f} per core) vs {tool} {pfps:.1f} on "
                  f"{pcores:.0f} core{'s' if pcores > 1 else ''} ({pfps / pcores:.1f} per core): {fps / pfps:.1f}× "
                  f"(per core {fps / 2 / (pfps / pcores):.1f}×)")
    return r


def http_pairs(table: Table, folder: str, name: str, n: int, decode2: Callable[[], object], count: int,
               ref: Reference, step: float) -> dict[str, tuple[float, float, list[float]]]:
    """/stxm over HTTP on a real daemon with its result caches off, so every answer is computed: the same
    URL (the nodes keep their pixel maps, as for a user's next scan), and a fresh parameter each time
    (pixel maps rebuilt on every node: the first request after a parameter change). The fresh parameter
    moves darkfield's rmin down by ``step``s that no pixel's radius lies between, so every answer has the
    same reference."""
    from helpers import Daemon

    config = os.path.join(folder, "no-cache.toml")
    with open(config, "w") as f:
        f.write("cache_memory_bytes = 0\ncache_disk_bytes = 0\nanswer_cache_bytes = 0\n")
    d = Daemon(["serve", folder, "--max-frames", "10000000", "--config", config])
    try:
        counter = iter(range(1, count + 2))

        def ask(fresh: bool) -> bytes:
            rmin = RMIN - next(counter) * step if fresh else RMIN
            r = d.get(f"/stxm/{name}.h5?channels={','.join(FOUR)}&darkfield.rmin={rmin!r}&radial.rmin={RMIN!r}",
                      timeout=600)
            assert r.status == 200, r.body[:300]
            return r.body

        return {kind: pairs(table, f"dada over HTTP: /stxm all four, h5, {kind}", n, decode2,
                            lambda fresh=fresh: ask(fresh), count, http_check(f"/stxm over HTTP, {kind}", ref, n))
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


def worker_cpu(ctx) -> dict[str, float]:
    """CPU seconds each dask worker process has used so far."""
    return ctx.executor.client.run(time.process_time)


def libertem_rows(table: Table, dsets, frames: np.ndarray, at: np.ndarray, geo, rmax: float, base: float,
                  want: dict) -> dict[str, float]:
    """LiberTEM on the first data file with a ROI of ``frames`` spread over it, the file in two partitions
    (one per dask worker): with its default ~256 MiB partitions each partition costs a task's overhead (the
    masks go with every task), several times slower here on 1 Mpixel frames. Both dask workers work: their
    partitions' ROI frames and CPU seconds are printed, and the run stops if one idles."""
    from libertem.api import Context
    from libertem.udf.masks import ApplyMasksUDF

    masks = peer_masks(geo, rmax)
    nfile = dsets[0].shape[0]
    roi = np.zeros(nfile, dtype=bool)
    roi[frames] = True
    out: dict[str, float] = {}
    for kind in ("inline", "dask"):
        t0 = time.perf_counter()
        ctx = Context.make_with("inline") if kind == "inline" else Context.make_with("dask", cpus=2)
        start = time.perf_counter() - t0
        ds = ctx.load("hdf5", path=dsets[0].file.filename, ds_path="/entry/data/data", nav_shape=(nfile,),
                      target_size=-(-dsets[0].nbytes // 2))
        if kind == "dask":
            parts = [(p.slice.origin[0], p.slice.origin[0] + p.slice.shape[0]) for p in ds.get_partitions()]
            print(f"|   (LiberTEM: the first data file in {len(parts)} partitions, holding "
                  f"{', '.join(str(int(roi[lo:hi].sum())) for lo, hi in parts)} of the ROI's frames)")
        for label, chosen in (("ring+com", masks[:4]), ("all four", masks)):
            def udf(chosen=chosen):
                return ApplyMasksUDF(mask_factories=[(lambda m=m: m) for m in chosen], use_sparse="sparse.pydata")

            def pick(res, chosen=chosen):
                return mask_outputs(np.asarray(res["intensity"].data).reshape(nfile, -1)[at], chosen)

            check = Check(f"LiberTEM {label} ({kind})", {k: want[k] for k in ("darkfield", "com", "sectors",
                          "radial")[:2 if label == "ring+com" else 4]}, pick, 1e-4)
            cpu = worker_cpu(ctx) if kind == "dask" else {}
            t = median_time(lambda ctx=ctx, ds=ds, udf=udf: ctx.run_udf(ds, udf(), roi=roi), check=check)
            cores = 1 if kind == "inline" else 2
            what = ("ring + CoM as 4 sparse masks" if label == "ring+com" else "all four, 120 sparse masks")
            exe = "inline" if kind == "inline" else f"local dask, 2 workers (start {start:.1f} s)"
            out[f"libertem {label} {kind}"] = table.add(f"LiberTEM {what}, {exe}", frames.size / t, base, cores)
            check.report()
            if kind == "dask":
                used = sorted((v - cpu[w] for w, v in worker_cpu(ctx).items()), reverse=True)
                print(f"|   dask workers' CPU seconds in those 4 runs: {', '.join(f'{u:.1f}' for u in used)}",
                      flush=True)
                if len(used) < 2 or used[1] < 0.25 * used[0]:
                    raise SystemExit("LiberTEM's second dask worker idled: the timed work is not on both cores")
        ctx.close()
    for label in ("ring+com", "all four"):
        best = max(("inline", "dask"), key=lambda k: out[f"libertem {label} {k}"])
        out[f"libertem {label}"] = out[f"libertem {label} {best}"]
        out[f"libertem {label} cores"] = 1 if best == "inline" else 2
    return out


def pyfai_rows(table: Table, frames: np.ndarray, numbers: np.ndarray, at: np.ndarray, geo, rmax: float,
               base: float, want: dict) -> dict[str, float]:
    """pyFAI's sparse-matrix engines without pixel splitting (what ``integrate2d`` runs for
    ``method=("no", "csc"/"csr", "cython")``), built once per geometry and called on each frame (no per-frame
    geometry or Python set-up); ``frames`` (in memory) are the scan's frames ``numbers``. CSC runs on one
    thread (also with the frames shared by 2 threads: it releases the GIL), CSR is pyFAI's OpenMP engine.

    pyFAI bins float32 positions: from radii, a pixel within ~3e-5 px of a bin edge lands in either bin
    (four such pixels move a radial mean by 3 %). So each pixel's position is its bin in the reference
    (radial bin + 0.5, sector + 0.5), from the same float64 radii and edges: pyFAI's bins are then the
    reference's exactly, and its cost (a sparse matrix per bin population) is the same."""
    from pyFAI.ext import splitBBoxCSC, splitBBoxCSR
    from threadpoolctl import threadpool_limits

    r, phi = geo.radius().ravel(), geo.angle().ravel()
    radial = np.searchsorted(np.linspace(RMIN, rmax, NBINS + 1), r, side="right") - 1  # -1 inside, NBINS outside
    sector = np.minimum((phi / (2 * np.pi) * NSECTORS).astype(int), NSECTORS - 1)
    # Two spare bins each side take the pixels inside RMIN and beyond rmax; the rest are the reference's bins.
    engines = {name: module.HistoBBox2d(radial + 0.5, None, sector + 0.5, None, bins=(NBINS + 4, NSECTORS),
                                        pos0_range=(-2, NBINS + 2), pos1_range=(0, NSECTORS),
                                        mask=(~geo.good).ravel().astype(np.int8), allow_pos0_neg=True,
                                        pos1_period=0)
               for name, module in (("csc", splitBBoxCSC), ("csr", splitBBoxCSR))}
    flat = [f.ravel() for f in frames]

    def integrate(engine, f):
        res = engine.integrate_ng(f)
        s, c = np.asarray(res.signal)[:, 2:-2], np.asarray(res.count)[:, 2:-2]  # (sectors, radial bins)
        return s.sum(axis=1) / c.sum(axis=1), s.sum(axis=0) / c.sum(axis=0)

    rows = np.searchsorted(numbers, at)

    def pick(answers):
        return {"sectors": np.array([answers[i][0] for i in rows]), "radial": np.array([answers[i][1] for i in rows])}

    # OpenMP's thread count is per calling thread: each pool thread limits its own.
    pool = ThreadPoolExecutor(2, initializer=lambda: threadpool_limits(1, user_api="openmp"))
    out: dict[str, float] = {}
    # (CSR called from two threads at once gives wrong sums, which the check catches: not a configuration.)
    for name, omp, threads, what in (("csc", 1, 1, "CSC, 1 thread"), ("csr", 2, 1, "CSR, OpenMP on 2 threads"),
                                     ("csc", 1, 2, "CSC, frames shared by 2 threads")):
        def run(engine=engines[name], threads=threads):
            if threads == 1:
                return [integrate(engine, f) for f in flat]
            return list(pool.map(lambda f: integrate(engine, f), flat))

        check = Check(f"pyFAI {what}", {k: want[k] for k in ("sectors", "radial")}, pick)
        with threadpool_limits(omp, user_api="openmp"):
            fps = len(flat) / median_time(run, check=check)
        cores = max(omp, threads)
        out[f"pyfai {what}"] = table.add(f"pyFAI 104 × 16 bins, no splitting, {what}", fps, base, cores)
        check.report()
        if fps > out.get("pyfai", 0.0):
            out["pyfai"], out["pyfai cores"] = fps, cores
    pool.shutdown()
    return out


CASES = (("eiger1m_u32", 1065, 1030, "uint32", 32), ("eiger_512_u16", 512, 512, "uint16", 32),
         ("eiger4m_u32", 2070, 2167, "uint32", 16), ("roi64_u16", 64, 64, "uint16", 128))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="where the test files go (kept and reused); default: a temporary folder")
    p.add_argument("--quick", action="store_true", help="16x16 points (8x8 for the 4M), 3 pairs")
    p.add_argument("--pairs", type=int, default=5, help="interleaved (decode-only, dada) pairs per target")
    p.add_argument("--no-peers", action="store_true", help="skip LiberTEM and pyFAI")
    p.add_argument("--only", action="append", choices=[c[0] for c in CASES], help="these files only")
    args = p.parse_args()
    warm_up()
    polarbins.warm_up()
    folder = args.dir or tempfile.mkdtemp(prefix="dada-bench-")
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    for name, rows, cols, dtype, side in CASES:
        if args.only and name not in args.only:
            continue
        side = side // 2 if args.quick else side
        peers = not args.no_peers and rows < 2000
        run_case(folder, name + ("_quick" if args.quick else ""), rows, cols, dtype, side,
                 3 if args.quick else args.pairs, peers)
    print(f"\n(total {time.perf_counter() - t0:.0f} s; machine: {os.cpu_count()} cores, shared with other work)")


if __name__ == "__main__":
    main()
