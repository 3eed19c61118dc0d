"""Tomography preprocessing: flat/dark correction, -log, ring removal, Paganin, rotation centre.

Formulas (see the README): flat field (P - D) / max(F - D, eps), flats before and after the
projections interpolated by image index; -log after clipping to [1e-6, 10]; Vo's sorting-based
ring removal; Paganin's single-distance filter H(f) = 1 / (1 + π λ D (δ/β) |f|²) on intensities,
with edge padding; Vo's Fourier metric for the centre (coarse on a downsampled sinogram, fine to
0.25 px).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

HC_KEV_NM = 1.2398419843320026  # λ[nm] = HC / E[keV]
EPS = 1e-6


def reduce_stack(stack: np.ndarray, how: str) -> np.ndarray:
    if stack.shape[0] == 0:
        raise ValueError("no images to reduce")
    return np.median(stack, axis=0) if how == "median" else stack.mean(axis=0)


def flat_for_projections(flats: np.ndarray, flat_pos: np.ndarray, proj_pos: np.ndarray, how: str) -> np.ndarray:
    """A flat per projection: flats in runs before and after the projections are each reduced and
    interpolated linearly by image index; a single run (or unknown positions) gives one flat."""
    if flats.shape[0] == 0:
        return np.ones((1, *flats.shape[1:]), dtype=np.float32)
    before = flat_pos < proj_pos.min() if flat_pos.size and (flat_pos >= 0).all() else np.ones(len(flats), bool)
    after = ~before
    if not after.any() or not before.any():
        return reduce_stack(flats, how)[None]
    f0, f1 = reduce_stack(flats[before], how), reduce_stack(flats[after], how)
    p0, p1 = flat_pos[before].mean(), flat_pos[after].mean()
    w = ((proj_pos - p0) / (p1 - p0)).astype(np.float32)[:, None, None]
    return (1 - w) * f0[None] + w * f1[None]


def flat_field(proj: np.ndarray, flat: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """(P - D) / (F - D) with the denominator clamped to at least 1e-3 of its median."""
    den = flat - dark
    floor = max(float(np.median(den)) * 1e-3, EPS)
    return (proj - dark) / np.maximum(den, floor)


def minus_log(x: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(x, EPS, 10.0))


def remove_rings(sino: np.ndarray, size: int = 21) -> np.ndarray:
    """Vo's sorting-based stripe removal: sort each detector column along angle, median-filter
    across columns, put the values back in their original order."""
    order = np.argsort(sino, axis=0)
    sorted_ = np.take_along_axis(sino, order, axis=0)
    smooth = ndimage.median_filter(sorted_, size=(1, size), mode="reflect")
    out = np.empty_like(sino)
    np.put_along_axis(out, order, smooth, axis=0)
    return out


def paganin_filter(shape: tuple[int, int], pixel: float, distance: float, energy_kev: float,
                   delta_beta: float) -> np.ndarray:
    """H(f) on the rfft2 grid of ``shape`` (already padded), f in 1/m."""
    lam = HC_KEV_NM / energy_kev * 1e-9
    fy = np.fft.fftfreq(shape[0], d=pixel)
    fx = np.fft.rfftfreq(shape[1], d=pixel)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    return 1.0 / (1.0 + np.pi * lam * distance * delta_beta * f2)


def paganin_margin(pixel: float, distance: float, energy_kev: float, delta_beta: float) -> int:
    """Rows/columns the filter reaches in practice: 4 decay lengths of its kernel."""
    lam = HC_KEV_NM / energy_kev * 1e-9
    return int(np.ceil(4 * np.sqrt(lam * distance * delta_beta / np.pi) / pixel)) + 2


def padded_shape(h: int, w: int, pad: int) -> tuple[int, int]:
    """The FFT grid an (h, w) image is edge-padded to: the margin on each side, then a fast length."""
    return scipy.fft.next_fast_len(h + 2 * pad, real=True), scipy.fft.next_fast_len(w + 2 * pad, real=True)


def paganin_bytes(n: int, h: int, w: int, pad: int) -> int:
    """Peak memory of :func:`paganin` on n (h, w) images, for limits checked before reading: 36 B per
    padded pixel (measured 34-37) for the float32 stack, its complex64 spectrum, the complex128 filtered
    spectrum, the inverse FFT's complex128 pass and its float64 result."""
    ph, pw = padded_shape(h, w, pad)
    return 36 * n * ph * pw


def paganin(images: np.ndarray, pixel: float, distance: float, energy_kev: float, delta_beta: float) -> np.ndarray:
    """Apply the filter to each (rows, cols) intensity image of a stack, edge-padded against wrap-around."""
    n, h, w = images.shape
    shape = padded_shape(h, w, paganin_margin(pixel, distance, energy_kev, delta_beta))
    py, px = shape[0] - h, shape[1] - w
    padded = np.pad(images, ((0, 0), (py // 2, py - py // 2), (px // 2, px - px // 2)), mode="edge")
    filt = paganin_filter(shape, pixel, distance, energy_kev, delta_beta)
    spec = scipy.fft.rfft2(padded, axes=(1, 2), workers=-1)
    out = scipy.fft.irfft2(spec * filt[None], s=shape, axes=(1, 2), workers=-1)
    return out[:, py // 2:py // 2 + h, px // 2:px // 2 + w].astype(np.float32)


# -- rotation centre ------------------------------------------------------------------------------


def _wedge_mask(height: int, width: int, radius: float, drop: int) -> np.ndarray:
    """Vo's inverse double-wedge: where a well-centred 360° sinogram's spectrum holds nothing."""
    du = 1.0 / width
    dv = (height - 1.0) / (height * 2.0 * np.pi)
    ch, cv = int(np.ceil(width / 2.0) - 1), int(np.ceil(height / 2.0) - 1)
    i = np.arange(height)[:, None]
    j = np.arange(width)[None, :]
    half = np.abs(np.round((i - cv) * dv / radius / du))
    mask = (np.abs(j - ch) <= half).astype(np.float32)
    mask[max(cv - 1, 0):cv + 2, :] = 0
    mask[:, max(ch - drop, 0):ch + drop + 1] = 0
    return mask


def _score(sino: np.ndarray, moved: np.ndarray, mask: np.ndarray) -> float:
    spec = np.abs(scipy.fft.fftshift(scipy.fft.fft2(np.vstack([sino, moved]), workers=-1)))
    return float(np.mean(spec * mask))


def _roll(a: np.ndarray, shift: int) -> np.ndarray:
    """Shift columns by a whole number, repeating the edge values (no wrap-around)."""
    if shift == 0:
        return a
    out = np.empty_like(a)
    if shift > 0:
        out[:, shift:] = a[:, :-shift]
        out[:, :shift] = a[:, :1]
    else:
        out[:, :shift] = a[:, -shift:]
        out[:, shift:] = a[:, -1:]
    return out


class _FourierShifter:
    """Sub-pixel column shifts of one image by phase ramps, edge-padded: one FFT, then one per shift."""

    def __init__(self, a: np.ndarray, pad: int) -> None:
        self.pad = pad
        self.width = a.shape[1]
        padded = np.pad(a, ((0, 0), (pad, pad)), mode="edge")
        self.n = padded.shape[1]
        self.spec = scipy.fft.rfft(padded, axis=1, workers=-1)
        self.freq = np.fft.rfftfreq(self.n)

    def __call__(self, shift: float) -> np.ndarray:
        moved = scipy.fft.irfft(self.spec * np.exp(-2j * np.pi * self.freq * shift)[None, :], n=self.n, axis=1,
                                workers=-1)
        return moved[:, self.pad:self.pad + self.width]


def find_center(sino: np.ndarray, search: float | None = None, ratio: float = 0.5) -> tuple[float, float]:
    """Rotation axis (column pixels) of a 180° sinogram of -log data, and the metric at it.

    The sinogram and its mirror image shifted by 2(c - mid) form a 360° sinogram whose spectrum is
    empty outside a double wedge when c is right (Vo et al. 2014). Coarse: whole steps on a copy
    of at most 256 columns and 128 angles (integer shifts); then whole and quarter pixels around
    it at full width and at most 180 angles (Fourier shifts).
    """
    # Noise at high frequencies swamps the metric on real data; a small symmetric blur does not
    # move the axis.
    sino = ndimage.gaussian_filter(np.asarray(sino, dtype=np.float32), (2, 1))
    nang, ncol = sino.shape
    search = search if search is not None else ncol / 4
    cb = max(1, int(np.ceil(ncol / 256)))
    small = sino[:: max(1, nang // 128)]
    if cb > 1:
        small = small[:, : (ncol // cb) * cb].reshape(small.shape[0], -1, cb).mean(axis=2)
    sw = small.shape[1]
    mask = _wedge_mask(2 * small.shape[0], sw, 0.5 * ratio * sw, max(1, int(0.05 * sw)))
    mid_small = (sw - 1) / 2.0
    flip = small[:, ::-1]
    # whole-pixel candidates in the small sinogram: shifts 2(c - mid) are integers
    cands = np.arange(np.ceil(mid_small - search / cb), np.floor(mid_small + search / cb) + 1)
    cands = cands + (mid_small % 1)
    scores = [_score(small, _roll(flip, int(round(2 * (c - mid_small)))), mask) for c in cands]
    best_small = float(cands[int(np.argmin(scores))])
    best = (best_small + 0.5) * cb - 0.5
    fine_sino = sino[:: max(1, nang // 180)]
    mask = _wedge_mask(2 * fine_sino.shape[0], ncol, 0.5 * ratio * ncol, max(1, int(0.05 * ncol)))
    shifter = _FourierShifter(fine_sino[:, ::-1], pad=int(2 * search) + 8)
    mid = (ncol - 1) / 2.0
    score = 0.0
    for step, reach in ((1.0, cb // 2 + 1), (0.25, 0.75)):  # whole pixels around the coarse answer, then quarters
        cands = np.arange(best - reach, best + reach + 1e-9, step)
        scores = [_score(fine_sino, shifter(2 * (c - mid)), mask) for c in cands]
        k = int(np.argmin(scores))
        best, score = float(cands[k]), float(scores[k])
    return best, score
