"""Tomography preview: dada's slice and auto-centre against scikit-image and algotom, in one run.

    python benchmarks/tomo.py [--quick]

Sinograms are exact line integrals of a Shepp–Logan phantom (dada.demo.tomo) averaged over each
detector pixel (4 samples), as a detector integrates them; every reconstruction is compared with
the true slice averaged over each image pixel (relative L2 error inside the object's disc).
Sizes: 1024² from 900 angles and 2048² from 1800 angles (--quick: only the first). dada's times
are medians of 3 after a warm-up, with the sinogram in memory; the peers run once at 2048
(they take tens of seconds). Orientation and half-pixel conventions differ between packages:
each peer's image is compared on its own pixel grid, in the orientation that fits it best.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import median_time  # noqa: E402

from dada.demo.tomo import TomoSpec, line_integrals, phantom_slice  # noqa: E402
from dada.tomo.fbp import reconstruct  # noqa: E402
from dada.tomo.prep import find_center  # noqa: E402


def detector_sinogram(spec: TomoSpec, angles: np.ndarray, sub: int = 4) -> np.ndarray:
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    t = ((np.arange(spec.cols) - spec.center)[:, None] + offsets[None, :]).ravel() / spec.radius
    p = line_integrals(0.0, angles, t).reshape(len(angles), spec.cols, sub).mean(axis=2)
    return (p * spec.mu * spec.radius).astype(np.float32)


def disc(n: int, radius: float) -> np.ndarray:
    y, x = np.indices((n, n)) - n // 2
    return np.hypot(x, y) < radius


def error(image: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(np.linalg.norm((image - truth)[mask]) / np.linalg.norm(truth[mask]))


def best_error(image: np.ndarray, truths: list[np.ndarray], mask: np.ndarray) -> float:
    variants = [image, image[::-1], image[:, ::-1], image.T, image[::-1].T, image[:, ::-1].T, image[::-1, ::-1]]
    return min(error(v, t, mask) for v in variants for t in truths)


def row(what: str, seconds: float, err: float | None, base: float | None = None) -> None:
    ratio = f"{base / seconds:8.1f}× faster" if base else ""
    e = f"{err:.4f}" if err is not None else ""
    print(f"| {what:46s} | {seconds:8.3f} s | {e:>10s} | {ratio:15s} |", flush=True)


def case(n: int, nang: int, peers: bool) -> None:
    spec = TomoSpec(1, n, nang, center_offset=0.0)
    angles = np.arange(nang) * 180.0 / nang
    sino = detector_sinogram(spec, angles)
    truth = phantom_slice(spec, 0)
    truth_half = phantom_slice(spec, 0, origin=(n - 1) / 2)  # the same slice on algotom's grid
    mask = disc(n, spec.radius * 1.02)
    print(f"\n## {n}×{n} from {nang} angles (sinogram in memory)\n")
    print(f"| {'what':46s} | {'time':10s} | {'rel. L2':>10s} | {'':15s} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 12}|{'-' * 17}|")
    ours = median_time(lambda: reconstruct(sino, angles, spec.center))
    image = reconstruct(sino, angles, spec.center)
    row("dada slice (Fourier-gridding FBP, ramp)", ours, error(image, truth, mask))
    if peers:
        from skimage.transform import iradon

        t0 = time.perf_counter()
        ir = iradon(sino.T, theta=angles, filter_name="ramp", circle=True)
        row("scikit-image iradon (ramp)", time.perf_counter() - t0, best_error(ir, [truth], mask))
        print(f"|   → dada is {(time.perf_counter() - t0) / ours:.0f}× faster than iradon |")
        from algotom.rec.reconstruction import fbp_reconstruction

        t0 = time.perf_counter()
        al = fbp_reconstruction(sino, spec.center, angles=np.radians(angles), apply_log=False, gpu=False,
                                filter_name=None)
        ta = time.perf_counter() - t0
        row("algotom fbp_reconstruction (CPU, no window)", ta, best_error(al, [truth, truth_half], mask))
        print(f"|   → dada is {ta / ours:.0f}× faster than algotom (target ≥ 10×); 2048/1800 target ≤ 1.5 s |")


def centre_case(peers: bool) -> None:
    n, nang, offset = 1024, 900, 7.3
    spec = TomoSpec(1, n, nang, center_offset=offset)
    angles = np.arange(nang) * 180.0 / nang
    rng = np.random.default_rng(0)
    sino = detector_sinogram(spec, angles)
    sino = (sino + rng.normal(0, 0.01 * sino.max(), sino.shape)).astype(np.float32)
    print(f"\n## auto centre, {nang}×{n} sinogram, axis planted at {spec.center} px\n")
    print(f"| {'what':46s} | {'time':10s} | {'error px':>10s} | {'':15s} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 12}|{'-' * 17}|")
    ours = median_time(lambda: find_center(sino))
    found, _ = find_center(sino)
    row("dada find_center (Vo's metric, 0.25 px)", ours, abs(found - spec.center))
    if peers:
        from algotom.prep.calculation import find_center_vo

        t0 = time.perf_counter()
        theirs = find_center_vo(sino, step=0.25)
        ta = time.perf_counter() - t0
        row("algotom find_center_vo (step 0.25)", ta, abs(theirs - spec.center))
        print(f"|   → dada is {ta / ours:.0f}× faster (target: auto centre ≤ 0.5 s) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1024² only")
    p.add_argument("--no-peers", action="store_true", help="dada only")
    args = p.parse_args()
    t0 = time.perf_counter()
    case(1024, 900, not args.no_peers)
    if not args.quick:
        case(2048, 1800, not args.no_peers)
    centre_case(not args.no_peers)
    print(f"\n(total {time.perf_counter() - t0:.0f} s; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
