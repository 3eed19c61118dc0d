"""TIFF: integers keep their dtype, floating point becomes float32; 3-D arrays are pages."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import tifffile

from dada.endpoint import Result

NAME = "tiff"
CONTENT_TYPE = "image/tiff"


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    a = result.primary
    if a.dtype.kind == "f":
        a = a.astype(np.float32)
    elif a.dtype.kind == "b":
        a = a.astype(np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(a), photometric="minisblack")
    return buf.getvalue()
