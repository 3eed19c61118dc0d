"""PNG: a 2-D array rendered through a colormap, enlarged and with a legend on request (see ``render``)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from dada.encoders.render import picture
from dada.endpoint import Result

NAME = "png"
CONTENT_TYPE = "image/png"


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    return save(picture(result, render_args)[0])


def save(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
