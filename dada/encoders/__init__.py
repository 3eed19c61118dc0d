"""Every output format in one place: a Result in, bytes and a content type out.

Each encoder module has ``CONTENT_TYPE`` and ``encode(result, render_args)``.
Numbers keep their dtype except where a format cannot hold it (tiff and png
say so in the README).
"""

from __future__ import annotations

from typing import Any

from dada.encoders import csv, h5, json, mat, npy, png, tiff
from dada.endpoint import Result
from dada.errors import NotAcceptable

ENCODERS = {m.NAME: m for m in (npy, png, tiff, json, csv, h5, mat)}
CONTENT_TYPES = {name: m.CONTENT_TYPE for name, m in ENCODERS.items()}


def encode(result: Result, fmt: str, render_args: dict[str, Any]) -> bytes:
    return ENCODERS[fmt].encode(result, render_args)


def negotiate(accept: str | None, allowed: tuple[str, ...]) -> str:
    """Pick a format from an Accept header (no extension in the URL); the route's first is the default."""
    if not accept:
        return allowed[0]
    prefs: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        mime, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        prefs.append((-q, i, mime.strip().lower()))
    for negq, _, mime in sorted(prefs):
        if negq == 0:
            continue
        if mime in ("*/*", ""):
            return allowed[0]
        for fmt in allowed:
            ct = CONTENT_TYPES[fmt]
            if mime == ct or (mime.endswith("/*") and ct.startswith(mime[:-1])):
                return fmt
    raise NotAcceptable(
        f"none of {accept!r} can be produced here",
        allowed=[CONTENT_TYPES[f] for f in allowed],
    )
