"""Synthetic full-field tomography with ground truth: a 3-D Shepp–Logan phantom of ellipsoids.

Projections are exact line integrals of the ellipsoids (no discretisation error), so a
reconstruction can be compared with the rasterised phantom slice. The detector adds what real
data have: a beam profile with per-pixel gains (flats, taken before and after the projections,
with the beam drifting 5 % in between), a dark current, a few columns whose gain drifts between
the flats and the projections (ring artefacts), Poisson noise, and a rotation axis off the
detector's centre.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

# Modified Shepp–Logan: density, semi-axes a, b (x, y), centre x0, y0, angle (deg); in units of the
# object radius; plus the half-height c of each ellipsoid along the rotation axis.
ELLIPSES = np.array([
    [1.0, 0.69, 0.92, 0.0, 0.0, 0.0, 0.90],
    [-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0, 0.88],
    [-0.2, 0.11, 0.31, 0.22, 0.0, -18.0, 0.50],
    [-0.2, 0.16, 0.41, -0.22, 0.0, 18.0, 0.60],
    [0.1, 0.21, 0.25, 0.0, 0.35, 0.0, 0.40],
    [0.1, 0.046, 0.046, 0.0, 0.1, 0.0, 0.30],
    [0.1, 0.046, 0.046, 0.0, -0.1, 0.0, 0.30],
    [0.1, 0.046, 0.023, -0.08, -0.605, 0.0, 0.20],
    [0.1, 0.023, 0.023, 0.0, -0.606, 0.0, 0.20],
    [0.1, 0.023, 0.046, 0.06, -0.605, 0.0, 0.20],
])


@dataclass(frozen=True)
class TomoSpec:
    rows: int
    cols: int
    projections: int
    center_offset: float = 3.3  # rotation axis: cols/2 + offset (pixels)
    mu: float = 0.01  # attenuation per pixel of density 1
    flux: float = 20000.0
    seed: int = 0

    @property
    def center(self) -> float:
        return self.cols / 2 + self.center_offset

    @property
    def radius(self) -> float:
        """Object radius in pixels."""
        return 0.42 * self.cols

    def z(self, row: int) -> float:
        """Height of a detector row in object radii (rows span ±0.8)."""
        return (row - (self.rows - 1) / 2) / max(self.rows - 1, 1) * 1.6


def _slice_ellipses(z: float) -> np.ndarray:
    """The ellipses the phantom cuts at height z (axes shrink towards the ellipsoid's poles)."""
    scale = np.sqrt(np.clip(1 - (z / ELLIPSES[:, 6]) ** 2, 0, None))
    e = ELLIPSES[:, :6].copy()
    e[:, 1] *= scale
    e[:, 2] *= scale
    return e[scale > 0]


def line_integrals(z: float, angles_deg: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Exact projections (angles, t) of the slice at height z; t in object radii, t = x cosθ + y sinθ."""
    th = np.radians(angles_deg)[:, None]
    out = np.zeros((th.shape[0], t.size))
    for rho, a, b, x0, y0, phi in _slice_ellipses(z):
        ang = th - np.radians(phi)
        s2 = (a * np.cos(ang)) ** 2 + (b * np.sin(ang)) ** 2
        tau = t[None, :] - (x0 * np.cos(th) + y0 * np.sin(th))
        inside = tau**2 < s2
        out += np.where(inside, 2 * rho * a * b * np.sqrt(np.where(inside, s2 - tau**2, 0)) / s2, 0)
    return out


def phantom_slice(spec: TomoSpec, row: int, size: int | None = None, oversample: int = 4,
                  origin: float | None = None) -> np.ndarray:
    """The phantom's attenuation (per pixel) on the reconstruction grid of a row, averaged over each
    pixel (``oversample``² samples): pixel (i, j) at x = j - origin, y = origin - i pixels from the axis
    (origin default size//2, dada's and scikit-image's grid; (size-1)/2 is algotom's)."""
    size = size or spec.cols
    origin = size // 2 if origin is None else origin
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    j = ((np.arange(size) - origin)[:, None] + sub[None, :]).ravel() / spec.radius
    x, y = np.meshgrid(j, -j)
    img = np.zeros((size * oversample, size * oversample))
    for rho, a, b, x0, y0, phi in _slice_ellipses(spec.z(row)):
        c, s = np.cos(np.radians(phi)), np.sin(np.radians(phi))
        xr, yr = (x - x0) * c + (y - y0) * s, -(x - x0) * s + (y - y0) * c
        img += rho * ((xr / a) ** 2 + (yr / b) ** 2 <= 1)
    return img.reshape(size, oversample, size, oversample).mean(axis=(1, 3)) * spec.mu


def simulate(spec: TomoSpec) -> dict[str, np.ndarray]:
    """Projections, flats (before, after), darks and angles, as a detector would record them."""
    rng = np.random.default_rng(spec.seed)
    angles = np.arange(spec.projections) * 180.0 / spec.projections
    t = (np.arange(spec.cols) - spec.center) / spec.radius
    beam = np.exp(-(((np.arange(spec.rows) - spec.rows / 2) / spec.rows) ** 2))[:, None]
    gain = rng.normal(1.0, 0.05, (spec.rows, spec.cols))
    flat0 = spec.flux * beam * gain
    proj_gain = gain.copy()
    bad = rng.choice(spec.cols, size=max(2, spec.cols // 40), replace=False)
    proj_gain[:, bad] *= 1 + rng.choice([-1, 1], bad.size) * rng.uniform(0.02, 0.05, bad.size)
    dark = 100.0
    drift = np.linspace(1.0, 1.05, spec.projections)[:, None, None]
    p = np.stack([line_integrals(spec.z(r), angles, t) for r in range(spec.rows)], axis=1)  # (n, rows, cols)
    clean = spec.flux * beam[None] * proj_gain[None] * drift * np.exp(-p * spec.mu * spec.radius)
    proj = rng.poisson(clean) + dark
    flats_before = rng.poisson(np.repeat(flat0[None], 10, axis=0)) + dark
    flats_after = rng.poisson(np.repeat(flat0[None] * 1.05, 10, axis=0)) + dark
    darks = rng.poisson(np.full((5, spec.rows, spec.cols), dark))
    return {"proj": proj.astype(np.uint16), "flats_before": flats_before.astype(np.uint16),
            "flats_after": flats_after.astype(np.uint16), "darks": darks.astype(np.uint16), "angles": angles}


def _geometry(f: h5py.Group) -> None:
    d = f.require_group("entry/instrument/detector")
    d.create_dataset("x_pixel_size", data=1.0e-6).attrs["units"] = "m"
    d.create_dataset("distance", data=0.05).attrs["units"] = "m"
    f.require_group("entry/instrument/source").create_dataset("energy", data=20.0).attrs["units"] = "keV"


def write_nxtomo(path: str, spec: TomoSpec) -> None:
    s = simulate(spec)
    stack = np.concatenate([s["darks"], s["flats_before"], s["proj"], s["flats_after"]])
    key = np.concatenate([np.full(5, 2), np.full(10, 1), np.zeros(spec.projections, int), np.full(10, 1)])
    angle = np.concatenate([np.zeros(15), s["angles"], np.full(10, s["angles"][-1])])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["NX_class"] = "NXroot"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("definition", data="NXtomo")
        det = entry.require_group("instrument/detector")
        det.create_dataset("data", data=stack, chunks=(1, spec.rows, spec.cols), compression="gzip",
                           compression_opts=1)
        det.create_dataset("image_key", data=key)
        entry.require_group("sample").create_dataset("rotation_angle", data=angle).attrs["units"] = "degree"
        data = entry.create_group("data")
        data["data"] = h5py.SoftLink("/entry/instrument/detector/data")
        data["image_key"] = h5py.SoftLink("/entry/instrument/detector/image_key")
        data["rotation_angle"] = h5py.SoftLink("/entry/sample/rotation_angle")
        _geometry(f)
    np.savez(path.replace(".h5", "_truth.npz"), center=spec.center, rows=spec.rows, cols=spec.cols,
             projections=spec.projections, center_offset=spec.center_offset, mu=spec.mu, seed=spec.seed)


def write_tdf(path: str, spec: TomoSpec) -> None:
    """TDF (SYRMEP) layout: sinogram-major data, data_white, data_dark at the root; angles over 180°."""
    s = simulate(spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.transpose(s["proj"], (1, 0, 2)), chunks=(1, spec.projections, spec.cols))
        f.create_dataset("data_white", data=np.transpose(s["flats_before"], (1, 0, 2)))
        f.create_dataset("data_dark", data=np.transpose(s["darks"], (1, 0, 2)))
    np.savez(path.replace(".h5", "_truth.npz"), center=spec.center, rows=spec.rows, cols=spec.cols,
             projections=spec.projections, center_offset=spec.center_offset, mu=spec.mu, seed=spec.seed)
