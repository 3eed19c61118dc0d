"""A slow, obviously-correct numpy version of every STXM channel, for the tests to hold the code to."""

from __future__ import annotations

import numpy as np


def reference(frames, bad, cutoff, cx, cy, *, rmin, rmax, rdpc, nsectors, nbins, radial_rmin=0.0):
    """Per frame: darkfield, transmission, COM (x, y), sector means, orientation, anisotropy, radial means."""
    h, w = frames.shape[1:]
    rows, cols = np.indices((h, w))
    x, y = cols - cx, rows - cy
    r = np.hypot(x, y)
    phi = np.mod(np.arctan2(y, x), 2 * np.pi)
    sector = np.minimum((phi / (2 * np.pi) * nsectors).astype(int), nsectors - 1)
    edges = np.linspace(radial_rmin, rmax, nbins + 1)
    out = {k: [] for k in ("darkfield", "transmission", "com", "sectors", "orientation", "anisotropy", "radial")}
    for f in frames.astype(np.float64):
        ok = ~bad & (f < cutoff)
        out["darkfield"].append(f[ok & (r >= rmin) & (r < rmax)].sum())
        out["transmission"].append(f[ok & (r < rmin)].sum())
        disc = ok & (r < rdpc)
        total = f[disc].sum()
        out["com"].append([(f[disc] * x[disc]).sum() / total, (f[disc] * y[disc]).sum() / total])
        ring = ok & (r >= rmin) & (r < rmax)
        s = np.array([f[ring & (sector == k)].mean() if (ring & (sector == k)).any() else np.nan
                      for k in range(nsectors)])
        out["sectors"].append(s)
        c2 = 0j
        for k in range(nsectors):
            if np.isfinite(s[k]):
                c2 += s[k] * np.exp(2j * (k + 0.5) * 2 * np.pi / nsectors)
        out["orientation"].append(np.degrees(np.angle(c2)) / 2 % 180)
        out["anisotropy"].append(abs(c2) / np.nansum(s))
        prof = []
        for k in range(nbins):
            sel = ok & (r >= edges[k]) & (r < edges[k + 1])
            prof.append(f[sel].mean() if sel.any() else np.nan)
        out["radial"].append(prof)
    return {k: np.array(v) for k, v in out.items()}


def annulus(frames, bad, cutoff, cx, cy, *, rmin, rmax):
    """Per frame, over the valid counts (not masked, below the cutoff) with rmin <= r < rmax: the largest and
    the speckle contrast σ/μ (population σ); NaN where none is valid (and the contrast where μ is 0)."""
    h, w = frames.shape[1:]
    rows, cols = np.indices((h, w))
    r = np.hypot(cols - cx, rows - cy)
    out = {"maxpixel": [], "contrast": []}
    for f in frames.astype(np.float64):
        v = f[~bad & (f < cutoff) & (r >= rmin) & (r < rmax)]
        out["maxpixel"].append(v.max() if v.size else np.nan)
        out["contrast"].append(v.std() / v.mean() if v.size and v.mean() > 0 else np.nan)
    return {k: np.array(x) for k, x in out.items()}
