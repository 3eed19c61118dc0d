"""PNG: a 2-D array rendered through a colormap, enlarged and with a legend on request (see ``render``)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from dada.encoders.render import image
from dada.endpoint import Result

NAME = "png"
CONTENT_TYPE = "image/png"


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image(result, render_args), mode="RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
