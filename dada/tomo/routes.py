"""Tomography preview routes: /tomo/sinogram, /tomo/slice, /tomo/center.

One pipeline per requested row: read a band of rows for every projection (cached, so
neighbouring slices reuse it), flat/dark-correct, optionally Paganin-filter the intensities,
-log, optionally remove rings, then reconstruct by Fourier-gridding FBP about the given or
estimated rotation axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dada.encoders.render import RENDER, RENDER_NAMES
from dada.endpoint import Context, Endpoint, Plan, Result, Target
from dada.errors import BadParameter, TooLarge
from dada.memo import Memo
from dada.params import Model, Param, ascii_float
from dada.sources.catalog import Catalog
from dada.sources.tomo import TomoScan
from dada.tomo.fbp import FILTERS, reconstruct
from dada.tomo.fbp import work_bytes as fbp_bytes
from dada.tomo.prep import (
    find_center,
    flat_field,
    flat_for_projections,
    minus_log,
    paganin,
    paganin_bytes,
    paganin_margin,
    reduce_stack,
    remove_rings,
)

BAND = 16  # rows read together: neighbouring slices come from the same pass over the projections

PREP = (
    Param("reduce", "How flats and darks are combined.", choices=("mean", "median"), default="mean"),
    Param("every", "Use every n-th projection (speed).", type="integer", default=1, minimum=1, maximum=64),
    Param("bin", "Average b×b detector pixels (speed); the row in the path counts binned rows.", type="integer",
          default=1, minimum=1, maximum=16),
    Param("angles", "Projection angles: from the file, or evenly spaced over 180° or 360°.",
          choices=("file", "180", "360"), default="file"),
    Param("rings", "Remove ring artefacts (Vo's sorting-based stripe removal).", type="boolean", default=False),
    Param("ring_size", "Median filter width across columns for ring removal.", type="integer", default=21,
          minimum=3, maximum=201),
    Param("paganin", "Single-distance Paganin phase retrieval on the intensities before -log.", type="boolean",
          default=False),
    # Physical ranges, wide enough for any beamline, narrow enough that λ·distance·δ/β, the Paganin margin
    # and its FFT grid stay finite: δ/β from 1e-3 (dense metals near absorption edges) to 1e6 (far past
    # light tissue at high energy, ~1e4); 0.1 keV (soft X-rays) to 1 MeV; 0.1 mm (contact) to 1 km (the
    # longest beamlines); pixels from 1 nm (nano-tomography) to 1 cm.
    Param("delta_beta", "δ/β of the sample, for Paganin.", type="number", default=100.0, minimum=1e-3,
          maximum=1e6),
    Param("energy", "Photon energy for Paganin; default from the file.", type="number", minimum=0.1,
          maximum=1000.0, unit="keV"),
    Param("distance", "Sample-detector distance for Paganin; default from the file.", type="number",
          minimum=1e-4, maximum=1000.0, unit="m"),
    Param("pixel_size", "Detector pixel size for Paganin; default from the file.", type="number", minimum=1e-9,
          maximum=1e-2, unit="m"),
)
PREP_PARAMS = Model.of(PREP).by_name


def _center(raw: str) -> str | float:
    """The word auto or a finite number; whether the number lies on the detector depends on the file (check)."""
    if raw == "auto":
        return raw
    try:
        return ascii_float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is neither auto nor a finite number of pixels") from None


CENTER = Param("center", "Rotation axis in (binned) detector columns, or auto.", default="auto", parser=_center,
               syntax="auto or a number of pixels")
ROW = Param("row", "Detector row (after binning).", type="integer", minimum=0)

SINOGRAMS = Memo(32)

# 413 above this much working memory for one request, estimated before reading (work_bytes). A constant,
# not a Config field: plan() gets the catalog only, and the config does not reach the endpoints.
MAX_WORK_BYTES = 2 * 2**30
REACH = 4  # a Paganin margin past this many detector sizes pads with nothing but edge copies: a 400
# float32 copies of the band of every image at the peak of reading it (raw slab, float32, projections, flat
# per projection, flat-field temporaries; measured 4-5), and those alive while Paganin runs
READ_COPIES, KEPT_COPIES = 6, 4
ADVICE = {"read": "the band of rows read from every image makes it large; use a larger bin",
          "paganin": "Paganin's padding makes it large (it grows as distance·delta_beta/energy over "
                     "pixel_size²); use a smaller distance or delta_beta, or a larger energy, bin or every",
          "fbp": "the reconstruction grid makes it large; use a larger bin or every"}


def paganin_geometry(tomo: TomoScan, args: dict[str, Any]) -> tuple[float, float, float]:
    """(binned pixel, distance, energy) from the query or the file; a file's value outside the parameter's
    range (a unit lost, a placeholder 0) is a 400 as well, not a slice of NaN."""
    values = {}
    for name, from_file in (("energy", tomo.energy), ("distance", tomo.distance), ("pixel_size", tomo.pixel_size)):
        v = args[name] if args[name] is not None else from_file
        p = PREP_PARAMS[name]
        if v is None:
            raise BadParameter(name, "Paganin needs it and the file does not record it", p.allowed())
        lo, hi = p.minimum, p.maximum
        if lo is not None and hi is not None and not lo <= v <= hi:
            raise BadParameter(name, f"the file records {v}, out of range: give it in the query", p.allowed())
        values[name] = v
    return values["pixel_size"] * args["bin"], values["distance"], values["energy"]


def paganin_pad(tomo: TomoScan, args: dict[str, Any]) -> int:
    """Binned pixels of margin Paganin needs on each side (0 without it). Past REACH detector sizes the
    filter only averages edge copies while its FFT grid grows without bound: a 400 then."""
    if not args["paganin"]:
        return 0
    pixel, distance, energy = paganin_geometry(tomo, args)
    pad = paganin_margin(pixel, distance, energy, args["delta_beta"])
    size = max(tomo.shape[1:]) // args["bin"]
    if pad > REACH * size:
        name = next((k for k in ("pixel_size", "distance", "energy") if args[k] is not None), "delta_beta")
        raise BadParameter(name, f"Paganin's filter would reach {pad} px, over {REACH} times the {size} px "
                           "detector", "a smaller distance or delta_beta, or a larger energy, pixel_size or bin")
    return pad


def band_rows(tomo: TomoScan, args: dict[str, Any], band: int, pad: int) -> tuple[int, int, int, int]:
    """Binned rows lo..hi of a band, and r0..r1 read for them (with the Paganin margin)."""
    rows = tomo.shape[1] // args["bin"]
    lo, hi = band * BAND, min(rows, (band + 1) * BAND)
    return lo, hi, max(0, lo - pad), min(rows, hi + pad)


def work_bytes(tomo: TomoScan, args: dict[str, Any], pad: int, fbp: bool) -> dict[str, int]:
    """Peak working memory of each stage for the widest band (so every row of a file costs the same).

    With S = images × rows read × cols × 4 (the band of every image as float32): read = READ_COPIES·S;
    paganin = KEPT_COPIES·S + prep.paganin_bytes; fbp = fbp.work_bytes.
    """
    n, _, cols = tomo.shape
    b = args["bin"]
    rows = min(tomo.shape[1] // b, BAND + 2 * pad)
    stack = (n + tomo.flat.size + tomo.dark.size) * rows * b * cols * 4
    angles = len(angles_of(tomo, args))
    parts = {"read": READ_COPIES * stack}
    if pad:
        parts["paganin"] = KEPT_COPIES * stack + paganin_bytes(angles, rows, cols // b, pad)
    if fbp:
        parts["fbp"] = fbp_bytes(angles, cols // b)
    return parts


def check(tomo: TomoScan, args: dict[str, Any], row: int | None, fbp: bool = False) -> int:
    """Validate against the file, and refuse (413) what would need over MAX_WORK_BYTES: nothing is read.
    The working memory it needs, for the server's budget."""
    n, rows, cols = tomo.shape
    b = args["bin"]
    if rows // b < 1 or cols // b < 8:
        raise BadParameter("bin", f"{b} leaves nothing of the {rows}x{cols} detector", f"an integer <= {rows}")
    if row is not None and not 0 <= row < rows // b:
        raise BadParameter("row", f"row {row} does not exist", f"an integer in [0, {rows // b - 1}]")
    if (n + args["every"] - 1) // args["every"] < 8:
        raise BadParameter("every", f"{args['every']} leaves fewer than 8 of {n} projections",
                           f"an integer <= {max(1, n // 8)}")
    center = args.get("center")
    if isinstance(center, float) and not 0 <= center <= cols // b - 1:
        raise BadParameter("center", f"{center} lies outside the {cols // b} columns",
                           f"auto or a number in [0, {cols // b - 1}]")
    parts = work_bytes(tomo, args, paganin_pad(tomo, args), fbp)
    worst = max(parts, key=parts.__getitem__)  # the stages run one after another: the peak is the largest
    if parts[worst] > MAX_WORK_BYTES:
        raise TooLarge(f"this would need about {parts[worst]} bytes of working memory, over the limit of "
                       f"{MAX_WORK_BYTES}: {ADVICE[worst]}", limit="max_work_bytes", estimate=parts[worst])
    return parts[worst]


def angles_of(tomo: TomoScan, args: dict[str, Any]) -> np.ndarray:
    n = tomo.shape[0]
    if args["angles"] == "file" and tomo.angles is not None:
        a = tomo.angles
    else:
        span = 360.0 if args["angles"] == "360" else 180.0
        a = np.arange(n) * span / n
    return a[:: args["every"]]


def _bin(a: np.ndarray, b: int) -> np.ndarray:
    if b == 1:
        return a
    n, h, w = a.shape
    return a[:, : h // b * b, : w // b * b].reshape(n, h // b, b, w // b, b).mean(axis=(2, 4))


def sinograms(tomo: TomoScan, args: dict[str, Any], band: int) -> np.ndarray:
    """-log sinograms (rows, angles, cols) of one band of binned rows, cached."""
    keys = ("reduce", "every", "bin", "paganin", "delta_beta", "energy", "distance", "pixel_size")
    key = (tomo.identity, band, tuple(args[k] for k in keys))

    def make() -> np.ndarray:
        b = args["bin"]
        lo, hi, r0, r1 = band_rows(tomo, args, band, paganin_pad(tomo, args))
        proj, flats, darks, ppos, fpos = tomo.rows(r0 * b, r1 * b)
        step = args["every"]
        proj, ppos = proj[::step], ppos[::step]
        flat = flat_for_projections(flats, fpos, ppos, args["reduce"])
        dark = reduce_stack(darks, args["reduce"])[None] if darks.shape[0] else np.zeros_like(proj[:1])
        trans = _bin(flat_field(proj, flat, dark), b)
        if args["paganin"]:
            trans = paganin(trans, *paganin_geometry(tomo, args), args["delta_beta"])
        return np.ascontiguousarray(np.transpose(minus_log(trans[:, lo - r0:hi - r0]), (1, 0, 2)))

    return SINOGRAMS.get(key, make)


def sinogram(tomo: TomoScan, args: dict[str, Any], row: int) -> np.ndarray:
    s = sinograms(tomo, args, row // BAND)[row % BAND]
    return remove_rings(s, args["ring_size"]) if args["rings"] else s


class TomoEndpoint(Endpoint):
    target = "tomo"
    render_only = RENDER_NAMES

    def resolve(self, catalog: Catalog, path: str, item: int | None) -> Target:
        return Target(tomo=catalog.tomo(path), item=item)

    def attrs(self, tomo: TomoScan, args: dict[str, Any]) -> dict[str, Any]:
        return {"scan": tomo.name, "scan_identity": tomo.identity,
                **{k: v for k, v in args.items() if k not in RENDER_NAMES and v is not None}}


class Sinogram(TomoEndpoint):
    name = "tomo-sinogram"
    prefix = "/tomo/sinogram"
    summary = "Flat/dark-corrected -log sinogram (angles × columns) of one detector row, float32."
    model = Model.of(PREP, RENDER)
    item = ROW

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        tomo = target.tomo
        work = check(tomo, args, target.item)
        n = len(angles_of(tomo, args))
        return Plan((n, tomo.shape[2] // args["bin"]), np.dtype("float32"), tomo.shape[0], work=work)

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        s = sinogram(target.tomo, args, target.item).astype(np.float32)
        return Result({"sinogram": s, "angles": angles_of(target.tomo, args)},
                      {**self.attrs(target.tomo, args), "row": target.item}, unit="-ln(I/I0)")


class Slice(TomoEndpoint):
    name = "tomo-slice"
    prefix = "/tomo/slice"
    summary = "Reconstructed slice of one detector row (filtered back-projection by Fourier gridding), float32."
    model = Model.of(PREP, [CENTER, Param("filter", "FBP filter.", choices=FILTERS, default="ramp")], RENDER)
    item = ROW

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        tomo = target.tomo
        work = check(tomo, args, target.item, fbp=True)
        w = tomo.shape[2] // args["bin"]
        return Plan((w, w), np.dtype("float32"), tomo.shape[0], work=work)

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        tomo = target.tomo
        s = sinogram(tomo, args, target.item)
        center = args["center"]
        if center == "auto":
            center, _ = find_center(s)
        image = reconstruct(s, angles_of(tomo, args), float(center), filter_name=args["filter"])
        # line integrals over (binned) detector pixels back-project to attenuation per slice pixel
        return Result({"slice": image}, {**self.attrs(tomo, args), "row": target.item, "center": center},
                      unit="1/px")


class Center(TomoEndpoint):
    name = "tomo-center"
    prefix = "/tomo/center"
    summary = "Rotation-axis estimate (Vo's Fourier metric on the -log sinogram of a row, to 0.25 px)."
    formats = ("json",)
    model = Model.of(PREP, [Param("row", "Detector row (after binning); default the middle.", type="integer",
                                  minimum=0)])

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        work = check(target.tomo, args, args["row"])
        return Plan((), np.dtype("float64"), target.tomo.shape[0], work=work)

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        tomo = target.tomo
        row = args["row"] if args["row"] is not None else tomo.shape[1] // args["bin"] // 2
        center, metric = find_center(sinogram(tomo, args, row))
        return Result(document={"scan": tomo.name, "row": row, "center": center, "metric": metric,
                                "unit": "px (binned columns)" if args["bin"] > 1 else "px",
                                "method": "vo-fourier", "columns": tomo.shape[2] // args["bin"]})


SINOGRAM, SLICE, CENTER_EP = Sinogram(), Slice(), Center()
