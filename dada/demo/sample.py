"""A synthetic scanned sample with planted truth, and the detector frames it makes.

Each scan point's frame is Poisson noise around an expected image:

* the direct beam, a Gaussian spot of ``flux * transmission`` counts centred
  at the beam centre shifted by the point's DPC truth ``(dpc_x, dpc_y)``;
* small-angle scattering about the same (shifted) centre,
  ``flux * scatter * B(r) * (1 + m*cos(2(phi - theta)))``, where ``B`` is a
  power law, ``theta`` the fibre orientation and ``m`` its modulation.

Angles follow the analyses' convention: ``phi = atan2(row - cy, col - cx)``,
counted from +x (columns) towards +y (rows). With sector means
``s_k ∝ 1 + m*cos(2(phi_k - theta))`` the anisotropy |c2|/Σs_k is ``m/2``, which
is what ``anisotropy`` truth holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Scattered counts per pixel relative to the beam's flux, at scatter strength 1 and r = 10 px / 0.12.
SCATTER_GAIN = 0.04


@dataclass(frozen=True)
class Detector:
    rows: int
    cols: int
    dtype: str  # "uint16" or "uint32"
    pixel_size: float = 75e-6  # m
    distance: float = 2.0  # m
    wavelength: float = 1.0  # Å (12.4 keV)

    @property
    def beam_center(self) -> tuple[float, float]:
        """(cx, cy) in pixels: off-centre and off-grid, clear of the module gaps."""
        return 0.41 * self.cols + 0.3, 0.43 * self.rows + 0.2

    @property
    def saturation(self) -> int:
        """Count cutoff: counts at or above it are invalid."""
        return 50_000 if self.dtype == "uint16" else 2_000_000

    @property
    def flux(self) -> float:
        """Counts in the direct beam through empty space."""
        return 2.0e4 if self.dtype == "uint16" else 2.0e5

    def pixel_mask(self, rng: np.random.Generator) -> np.ndarray:
        """Eiger-style uint32 mask: 1 gap, 2 dead, 8 hot."""
        mask = np.zeros((self.rows, self.cols), dtype=np.uint32)
        g = max(2, self.rows // 40)
        r0 = int(0.70 * self.rows)
        mask[r0 : r0 + g, :] |= 1  # horizontal module gap
        c0 = int(0.72 * self.cols)
        mask[:, c0 : c0 + 2] |= 1  # vertical chip gap
        n_bad = max(3, self.rows * self.cols // 5000)
        cx, cy = self.beam_center
        for bit in (2, 8):
            rr = rng.integers(0, self.rows, n_bad)
            cc = rng.integers(0, self.cols, n_bad)
            far = np.hypot(rr - cy, cc - cx) > 6  # keep the direct beam's pixels good
            mask[rr[far], cc[far]] |= bit
        return mask


@dataclass(frozen=True)
class Truth:
    """Per-point maps of shape (V, H) planted into the data."""

    transmission: np.ndarray  # fraction of the beam transmitted
    scatter: np.ndarray  # scattering strength (darkfield contrast)
    dpc_x: np.ndarray  # beam shift along columns, px
    dpc_y: np.ndarray  # beam shift along rows, px
    orientation: np.ndarray  # deg in [0, 180)
    anisotropy: np.ndarray  # |c2| / sum of sectors, in [0, 0.5]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def make_truth(vert: int, horz: int) -> Truth:
    """A sample: a cell-like blob of strong contrast, a fibre bundle, a phase bump."""
    y, x = np.mgrid[0:vert, 0:horz].astype(float)
    y = (y + 0.5) / vert - 0.5
    x = (x + 0.5) / horz - 0.5
    blob = np.exp(-((x + 0.15) ** 2 + (y - 0.1) ** 2) / (2 * 0.12**2))
    fibre = np.exp(-((x - 0.15) ** 2 + (y + 0.05) ** 2) / (2 * 0.2**2))
    transmission = 0.95 - 0.55 * blob
    scatter = 0.02 + 0.4 * fibre + 0.15 * blob
    # Phase: a Gaussian bump; the beam shifts along its gradient.
    phase = np.exp(-((x - 0.05) ** 2 + (y - 0.05) ** 2) / (2 * 0.18**2))
    gy, gx = np.gradient(phase, 1.0 / vert, 1.0 / horz)
    scale = 1.5 / max(np.abs(gx).max(), np.abs(gy).max(), 1e-12)
    orientation = np.degrees(np.arctan2(y, x) + np.pi / 2) % 180.0  # tangential swirl
    anisotropy = 0.5 * 0.8 * fibre  # modulation up to 0.8
    return Truth(transmission, scatter, gx * scale, gy * scale, orientation, anisotropy)


class FrameModel:
    """Expected detector images for the points of a Truth."""

    def __init__(self, det: Detector, truth: Truth, beam_sigma: float = 1.2) -> None:
        self.det = det
        self.truth = truth
        self.sigma = beam_sigma
        self.rows = np.arange(det.rows, dtype=np.float64)[:, None]
        self.cols = np.arange(det.cols, dtype=np.float64)[None, :]
        self._terms: list[np.ndarray] | None = None  # quick_frame's scattering images, made on first use

    def expected(self, v: int, h: int) -> np.ndarray:
        t, det = self.truth, self.det
        cx, cy = det.beam_center
        cx += t.dpc_x[v, h]
        cy += t.dpc_y[v, h]
        dy = self.rows - cy
        dx = self.cols - cx
        r2 = dx * dx + dy * dy
        beam = np.exp(-r2 / (2 * self.sigma**2)) / (2 * np.pi * self.sigma**2)
        r = np.sqrt(r2)
        base = 0.12 * (np.maximum(r, 3.0) / 10.0) ** -2.5
        phi = np.arctan2(dy, dx)
        m = 2.0 * t.anisotropy[v, h]
        ring = base * (1.0 + m * np.cos(2.0 * (phi - np.radians(t.orientation[v, h]))))
        tr = t.transmission[v, h]
        return det.flux * tr * (beam + SCATTER_GAIN * t.scatter[v, h] * ring)

    def frame(self, v: int, h: int, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
        """One noisy frame: Poisson counts, masked pixels at the dtype's maximum, a few saturated."""
        return self._noisy(self.expected(v, h), rng, mask)

    def quick_frame(self, v: int, h: int, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
        """:meth:`frame` about three times faster, for benchmarks that write thousands of distinct frames: the
        scattering stays about the unshifted beam centre, a sum of three images computed once (the fibre's
        ``cos 2(phi - theta)`` split into ``cos 2phi`` and ``sin 2phi`` terms); only the beam spot moves."""
        t, det = self.truth, self.det
        if self._terms is None:
            cx, cy = det.beam_center
            dy, dx = self.rows - cy, self.cols - cx
            base = 0.12 * (np.maximum(np.hypot(dx, dy), 3.0) / 10.0) ** -2.5
            phi = np.arctan2(dy, dx)
            self._terms = [(base * w).astype(np.float32) for w in (1.0, np.cos(2 * phi), np.sin(2 * phi))]
        m, theta = 2.0 * t.anisotropy[v, h], np.radians(t.orientation[v, h])
        gain = np.float32(det.flux * t.transmission[v, h] * SCATTER_GAIN * t.scatter[v, h])
        b, c, s = self._terms
        lam = gain * b
        lam += (gain * m * np.cos(2 * theta)) * c
        lam += (gain * m * np.sin(2 * theta)) * s
        cx, cy = det.beam_center
        cx, cy = cx + t.dpc_x[v, h], cy + t.dpc_y[v, h]
        w = int(np.ceil(10 * self.sigma)) + 2  # the spot's counts beyond 10 sigma are nil
        r0, c0 = max(0, int(cy) - w), max(0, int(cx) - w)
        rr, cc = self.rows[r0:int(cy) + w + 1], self.cols[:, c0:int(cx) + w + 1]
        spot = np.exp(-((rr - cy) ** 2 + (cc - cx) ** 2) / (2 * self.sigma**2)) / (2 * np.pi * self.sigma**2)
        lam[r0:r0 + spot.shape[0], c0:c0 + spot.shape[1]] += det.flux * t.transmission[v, h] * spot
        return self._noisy(lam, rng, mask)

    def _noisy(self, expected: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
        det = self.det
        counts = rng.poisson(expected)
        info = np.iinfo(det.dtype)
        counts = np.minimum(counts, info.max - 1)
        n_sat = 2
        rr = rng.integers(0, det.rows, n_sat)
        cc = rng.integers(0, det.cols, n_sat)
        counts[rr, cc] = det.saturation + rng.integers(0, 100, n_sat)
        out = counts.astype(det.dtype)
        out[mask != 0] = info.max
        return out
