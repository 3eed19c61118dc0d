"""PNG: a 2-D array rendered through a colormap (see ``render``)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from dada.encoders.render import draw, to_rgba
from dada.endpoint import Result

NAME = "png"
CONTENT_TYPE = "image/png"


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    if result.drawing is not None:
        rgba = draw(result.drawing, render_args)
    else:
        rgba = to_rgba(result.view, result.invalid, render_args)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
